//! Health-check node ports: one HTTP listener per `externalTrafficPolicy: Local`
//! LoadBalancer Service, on its `healthCheckNodePort`, that tells the cloud load balancer
//! whether to send this node traffic.
//!
//! As kube-proxy's: 200 when the node has at least one ready local endpoint of the Service
//! and nftproxy is healthy, else 503; a JSON body naming the Service with its local endpoint
//! count, and the count again in `X-Load-Balancing-Endpoint-Weight`. Listeners are opened
//! and closed after each sync as Services come and go; the counts are updated in place.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use hyper::StatusCode;
use hyper::header::HeaderValue;
use nftproxy_compiler::HealthCheck;
use serde_json::json;
use tokio::runtime::Handle;

use super::server::{self, Server};
use crate::status::Status;

/// What each port reports, shared with its listener.
type Checks = Arc<Mutex<BTreeMap<u16, HealthCheck>>>;

/// The open listeners.
#[derive(Debug)]
pub struct HealthCheckServers {
    runtime: Handle,
    status: Arc<Status>,
    checks: Checks,
    servers: BTreeMap<u16, Server>,
    /// Ports that could not be opened, so the failure is logged once.
    failed: BTreeSet<u16>,
}

impl HealthCheckServers {
    pub fn new(runtime: Handle, status: Arc<Status>) -> Self {
        HealthCheckServers {
            runtime,
            status,
            checks: Arc::default(),
            servers: BTreeMap::new(),
            failed: BTreeSet::new(),
        }
    }

    /// Makes the listeners those of `checks` (sorted by Service): opens new ports, closes
    /// gone ones, and updates the counts. When two Services claim one port, the first wins.
    pub fn update(&mut self, checks: &[HealthCheck]) {
        let mut wanted: BTreeMap<u16, HealthCheck> = BTreeMap::new();
        for check in checks {
            if let Some(owner) = wanted.get(&check.node_port) {
                tracing::warn!(
                    port = check.node_port,
                    "Service {}/{}: healthCheckNodePort already used by {}/{}",
                    check.namespace,
                    check.name,
                    owner.namespace,
                    owner.name
                );
                continue;
            }
            wanted.insert(check.node_port, check.clone());
        }
        self.servers.retain(|port, _| wanted.contains_key(port));
        self.failed.retain(|port| wanted.contains_key(port));
        for port in wanted.keys() {
            if !self.servers.contains_key(port) {
                self.open(*port);
            }
        }
        *self.checks.lock().unwrap_or_else(PoisonError::into_inner) = wanted;
    }

    fn open(&mut self, port: u16) {
        let listener = {
            let _runtime = self.runtime.enter();
            bind_any(port)
        };
        let (checks, status) = (Arc::clone(&self.checks), Arc::clone(&self.status));
        let served = listener.and_then(|listener| {
            let _runtime = self.runtime.enter();
            server::serve(listener, move |_req| {
                let response = answer(&checks, &status, port);
                async move { response }
            })
        });
        match served {
            Ok(server) => {
                tracing::info!(port, "health-check node port open");
                self.failed.remove(&port);
                self.servers.insert(port, server);
            }
            Err(err) => {
                if self.failed.insert(port) {
                    tracing::warn!(port, "cannot open the health-check node port: {err}");
                }
            }
        }
    }
}

/// Binds `port` on every address: IPv6 (which also accepts IPv4 unless the host forbids
/// it), else IPv4 alone.
fn bind_any(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
    let listener = std::net::TcpListener::bind(v6).or_else(|_| std::net::TcpListener::bind(v4))?;
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

fn answer(checks: &Checks, status: &Status, port: u16) -> hyper::Response<server::Body> {
    let check = checks
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&port)
        .cloned();
    let Some(check) = check else {
        return server::text(StatusCode::SERVICE_UNAVAILABLE, "no service\n");
    };
    let healthy = status.health().proxy_healthy;
    let code = if check.local_endpoints > 0 && healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "service": {"namespace": check.namespace, "name": check.name},
        "localEndpoints": check.local_endpoints,
        "serviceProxyHealthy": healthy,
    });
    let mut response = server::json(code, &body);
    response.headers_mut().insert(
        "X-Load-Balancing-Endpoint-Weight",
        HeaderValue::from(check.local_endpoints),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sync_loop::Changes;

    fn check(local_endpoints: usize) -> HealthCheck {
        HealthCheck {
            namespace: "ns".into(),
            name: "web".into(),
            node_port: 32000,
            local_endpoints,
        }
    }

    #[test]
    fn answers_200_only_with_a_local_endpoint_and_a_healthy_proxy() {
        let status = Status::new(Duration::from_secs(60), Arc::new(Changes::new()));
        let checks: Checks = Arc::default();
        let answer = |checks: &Checks| {
            let response = super::answer(checks, &status, 32000);
            let weight = response.headers().get("X-Load-Balancing-Endpoint-Weight");
            (
                response.status().as_u16(),
                weight.map(|w| w.to_str().unwrap().to_owned()),
            )
        };
        assert_eq!(answer(&checks).0, 503, "no service on the port");
        checks.lock().unwrap().insert(32000, check(2));
        assert_eq!(answer(&checks), (200, Some("2".into())));
        checks.lock().unwrap().insert(32000, check(0));
        assert_eq!(answer(&checks), (503, Some("0".into())));
    }

    #[test]
    fn an_unhealthy_proxy_answers_503_even_with_local_endpoints() {
        let status = Status::new(Duration::ZERO, Arc::new(Changes::new()));
        std::thread::sleep(Duration::from_millis(2));
        let checks: Checks = Arc::default();
        checks.lock().unwrap().insert(32000, check(1));
        let response = answer(&checks, &status, 32000);
        assert_eq!(response.status().as_u16(), 503);
    }
}
