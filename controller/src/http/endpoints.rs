//! The routes of the health server (`healthzBindAddress`) and of the metrics server
//! (`metricsBindAddress`, which also serves the debug endpoints and, like kube-proxy's,
//! the health routes).
//!
//! - `/healthz`: 200 when no change has waited longer than 2 x `syncPeriod` and this node
//!   is not being deleted; else 503. JSON body as kube-proxy's.
//! - `/livez`: the same without the node check.
//! - `/readyz`: 200 once a sync has succeeded.
//! - `/metrics`: Prometheus text format.
//! - `/debug/ruleset`: the last applied ruleset as an nft script.
//! - `/debug/transaction`: the last applied transaction as an nft script.
//! - `/debug/services[?service=NAMESPACE/NAME]`: what each Service was compiled into
//!   (JSON): addresses, ports, endpoints per family, local endpoints, diagnostics.
//!
//! The debug views are computed from the inputs of the last successful sync, on a
//! blocking thread, never on the sync loop's.

use std::sync::Arc;
use std::time::SystemTime;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::server::{Body, json, respond, text};
use crate::metrics::Metrics;
use crate::status::{KEPT_TRANSACTION, LastSync, Status};

/// What the routes read.
#[derive(Debug, Clone)]
pub struct State {
    pub status: Arc<Status>,
    pub metrics: Arc<Metrics>,
}

/// The health server's routes.
pub async fn health_routes(state: State, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match req.uri().path() {
        "/healthz" => healthz(&state, false),
        "/livez" => healthz(&state, true),
        "/readyz" => readyz(&state),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The metrics server's routes (the health ones too).
pub async fn metrics_routes(state: State, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    let query = req.uri().query().unwrap_or_default().to_owned();
    match req.uri().path() {
        "/metrics" => blocking(move || metrics(&state.metrics)).await,
        "/debug/ruleset" => blocking(move || debug_ruleset(&state.status)).await,
        "/debug/transaction" => debug_transaction(&state.status),
        "/debug/services" => blocking(move || debug_services(&state.status, &query)).await,
        _ => health_routes(state, req).await,
    }
}

fn healthz(state: &State, livez: bool) -> Response<Body> {
    let health = state.status.health();
    let healthy = health.proxy_healthy && (livez || health.node_eligible);
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    state.metrics.health_answered(livez, code.as_u16());
    let mut body = json!({
        "lastUpdated": health.last_updated.map(rfc3339),
        "currentTime": rfc3339(SystemTime::now()),
    });
    if !livez {
        body["nodeEligible"] = json!(health.node_eligible);
    }
    json(code, &body)
}

fn readyz(state: &State) -> Response<Body> {
    if state.status.ready() {
        text(StatusCode::OK, "ok\n")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "no successful sync yet\n")
    }
}

fn metrics(metrics: &Metrics) -> Response<Body> {
    match metrics.encode() {
        Ok(body) => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body,
        ),
        Err(err) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")),
    }
}

fn no_sync_yet() -> Response<Body> {
    text(StatusCode::SERVICE_UNAVAILABLE, "no successful sync yet\n")
}

fn debug_ruleset(status: &Status) -> Response<Body> {
    let Some(LastSync {
        snapshot, config, ..
    }) = status.last_sync()
    else {
        return no_sync_yet();
    };
    // Compiling is deterministic: the same inputs give the ruleset that was applied.
    let compiled = nftproxy_compiler::compile(&snapshot, &config);
    text(StatusCode::OK, compiled.ruleset.to_string())
}

fn debug_transaction(status: &Status) -> Response<Body> {
    let Some(last) = status.last_sync() else {
        return no_sync_yet();
    };
    let header = format!(
        "# {} sync at {}: {} operations\n",
        last.kind,
        rfc3339(last.at),
        last.operations
    );
    let body = match &last.transaction {
        Some(transaction) => transaction.to_string(),
        None => format!(
            "# not kept: more than {KEPT_TRANSACTION} commands (/debug/ruleset shows the result)\n"
        ),
    };
    text(StatusCode::OK, header + &body)
}

fn debug_services(status: &Status, query: &str) -> Response<Body> {
    let Some(LastSync {
        snapshot, config, ..
    }) = status.last_sync()
    else {
        return no_sync_yet();
    };
    let mut description = nftproxy_compiler::describe(&snapshot, &config);
    if let Some(wanted) = query_value(query, "service") {
        description
            .services
            .retain(|s| format!("{}/{}", s.namespace, s.name) == wanted);
        if description.services.is_empty() {
            return text(
                StatusCode::NOT_FOUND,
                format!("no proxied Service {wanted}\n"),
            );
        }
    }
    match serde_json::to_value(&description) {
        Ok(body) => json(StatusCode::OK, &body),
        Err(err) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")),
    }
}

/// The value of `key` in a query string (no percent-decoding needed: names are DNS labels
/// and `/` is allowed in queries).
fn query_value<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Runs `work` on tokio's blocking pool (compiling a large cluster takes a while).
async fn blocking(work: impl FnOnce() -> Response<Body> + Send + 'static) -> Response<Body> {
    match tokio::task::spawn_blocking(work).await {
        Ok(response) => response,
        Err(err) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")),
    }
}

fn rfc3339(at: SystemTime) -> String {
    k8s_openapi::jiff::Timestamp::try_from(at)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_found_by_key() {
        assert_eq!(query_value("service=ns/web", "service"), Some("ns/web"));
        assert_eq!(query_value("a=1&service=x/y", "service"), Some("x/y"));
        assert_eq!(query_value("", "service"), None);
    }
}
