//! The fake API server's wire behaviour, through kube-rs's client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake_apiserver;

use std::future::Future;
use std::time::Duration;

use fake_apiserver::FakeApiServer;
use kube::ResourceExt;
use serde_json::{Value, json};

fn labels(pairs: &[(&str, &str)]) -> Value {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn service(ns: &str, name: &str, port: u16, extra: &[(&str, &str)]) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": ns, "name": name, "labels": labels(extra)},
        "spec": {"clusterIP": "198.19.0.10", "ports": [{"name": "http", "port": port, "protocol": "TCP"}]},
    })
}

/// Runs a test body with a deadline, so nothing hangs CI.
async fn within<F: Future<Output = ()>>(limit: Duration, body: F) {
    tokio::time::timeout(limit, body)
        .await
        .expect("test timed out");
}

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_server_answers_a_watch_from_before_a_compaction_with_410_expired() {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Service;
    use kube::api::{Api, WatchEvent, WatchParams};

    within(LIMIT, async {
        let server = FakeApiServer::start().await;
        let first = server.apply(&service("demo", "a", 80, &[]));
        server.apply(&service("demo", "b", 80, &[]));
        server.compact();
        let api: Api<Service> = Api::all(server.client());
        let mut old = api
            .watch(&WatchParams::default(), &first.to_string())
            .await
            .expect("watch")
            .boxed();
        match old.next().await {
            Some(Ok(WatchEvent::Error(status))) => {
                assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            }
            other => panic!("expected a 410 ERROR event, got {other:?}"),
        }
        assert!(old.next().await.is_none(), "the watch ends after the error");

        let current = server.resource_version().to_string();
        let mut fresh = api
            .watch(&WatchParams::default(), &current)
            .await
            .expect("watch")
            .boxed();
        server.apply(&service("demo", "c", 80, &[]));
        match fresh.next().await {
            Some(Ok(WatchEvent::Added(s))) => assert_eq!(s.name_any(), "c"),
            other => panic!("expected ADDED c, got {other:?}"),
        }
    })
    .await;
}
