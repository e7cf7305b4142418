//! nftproxy's HTTP side: the health and metrics servers and the health-check node ports.

pub mod endpoints;
pub mod health_check;
pub mod server;

use std::net::SocketAddr;

use anyhow::Context;
use tokio::runtime::Handle;

pub use endpoints::State;
pub use health_check::HealthCheckServers;
pub use server::Server;

/// Starts the health server on `addr` (none when `None`).
pub fn start_health(
    runtime: &Handle,
    addr: Option<SocketAddr>,
    state: State,
) -> anyhow::Result<Option<Server>> {
    start(runtime, addr, "health", move |req| {
        endpoints::health_routes(state.clone(), req)
    })
}

/// Starts the metrics and debug server on `addr` (none when `None`).
pub fn start_metrics(
    runtime: &Handle,
    addr: Option<SocketAddr>,
    state: State,
) -> anyhow::Result<Option<Server>> {
    start(runtime, addr, "metrics", move |req| {
        endpoints::metrics_routes(state.clone(), req)
    })
}

fn start<H, F>(
    runtime: &Handle,
    addr: Option<SocketAddr>,
    what: &str,
    handler: H,
) -> anyhow::Result<Option<Server>>
where
    H: Fn(hyper::Request<hyper::body::Incoming>) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = hyper::Response<server::Body>> + Send + 'static,
{
    let Some(addr) = addr else {
        tracing::info!("{what} server disabled");
        return Ok(None);
    };
    let _runtime = runtime.enter();
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr} for the {what} server"))?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let server = server::serve(listener, handler)?;
    tracing::info!(addr = %server.addr, "{what} server listening");
    Ok(Some(server))
}
