//! Behaviour of `compile`, one Kubernetes rule per test.

mod affinity;
mod conflicts;
mod describe;
mod external;
mod health_checks;
mod ruleset;
mod selection;
mod services;
mod topology;
mod udp_ports;

use crate::testing::{EndpointBuilder, ServiceBuilder, SliceBuilder, service, slice};
use nftproxy_rules::Verdict;

fn goto(chain: &str) -> Verdict {
    Verdict::Goto(chain.to_owned().into())
}

/// `ns/web`: ClusterIP 198.19.0.10, port `http` 80/TCP.
fn web() -> ServiceBuilder {
    service("ns/web").cluster_ip("198.19.0.10").port("http", 80)
}

/// `ns/web`'s IPv4 slice `ns/web-1` with these endpoints, `http` -> 8080.
fn web_slice(endpoints: impl IntoIterator<Item = EndpointBuilder>) -> SliceBuilder {
    endpoints
        .into_iter()
        .fold(slice("ns/web-1", "web").port("http", 8080), |s, e| {
            s.endpoint(e)
        })
}
