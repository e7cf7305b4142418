//! Kubernetes Events for the diagnostics that concern Services and EndpointSlices, rate-limited.
//!
//! [`EventPublisher::start`] spawns one task on the tokio runtime. After each sync the sync
//! loop hands it the current diagnostics with [`EventPublisher::diagnostics`], which only
//! replaces the value of a `tokio::sync::watch` channel: it never blocks and never waits
//! on the API server (a slow task just sees the latest set). The task posts an
//! `events.k8s.io/v1` Event for each new diagnostic that [`EventLimiter`] admits:
//!
//! - a diagnostic of a Service regards that Service;
//! - a diagnostic of an EndpointSlice regards the Service named by the slice's
//!   `kubernetes.io/service-name` label (the slice is the Event's `related` object), or the
//!   slice itself when the label or the slice is not in the store;
//! - other objects (Node, ServiceCIDR, the configuration) get no Event: they stay in the log.
//!
//! The uids come from the reflector stores, so `kubectl describe` (which selects Events by
//! uid) shows them. Events are created one at a time; each request gives up after 10 s. A
//! failed post is logged (a warning at most once a minute, the others at debug level) and
//! is not retried.

mod limit;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use nftproxy_compiler::{Diagnostic, Severity};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use limit::{EventLimiter, Limits, WarnLimiter};

use crate::sources::ObjectStores;

/// `reportingController` of every Event.
pub const REPORTING_CONTROLLER: &str = "nftproxy";
/// `action` of every Event: what nftproxy was doing when it found the problem.
pub const ACTION: &str = "Sync";
/// How long one create request may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// At most one warning about failed posts per this interval.
const FAILURE_WARN_INTERVAL: Duration = Duration::from_secs(60);
/// The API server's limit on `note`.
const NOTE_MAX_BYTES: usize = 1024;
/// The API server's limit on object names.
const NAME_MAX_BYTES: usize = 253;

/// What the publisher needs to know about objects: uids and a slice's Service.
pub trait Lookup: Send + Sync + 'static {
    /// The uid of Service `namespace/name`, when known.
    fn service_uid(&self, namespace: &str, name: &str) -> Option<String>;
    /// The uid of EndpointSlice `namespace/name` and the Service its
    /// `kubernetes.io/service-name` label names; `None` when the slice is not known.
    fn endpoint_slice(&self, namespace: &str, name: &str) -> Option<SliceInfo>;
}

/// What [`Lookup::endpoint_slice`] knows about a slice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SliceInfo {
    pub uid: Option<String>,
    pub service: Option<String>,
}

impl Lookup for ObjectStores {
    fn service_uid(&self, namespace: &str, name: &str) -> Option<String> {
        self.service(namespace, name)?.metadata.uid.clone()
    }

    fn endpoint_slice(&self, namespace: &str, name: &str) -> Option<SliceInfo> {
        let slice = self.endpoint_slice(namespace, name)?;
        Some(SliceInfo {
            uid: slice.metadata.uid.clone(),
            service: slice.service_name.as_deref().map(str::to_owned),
        })
    }
}

/// Counters of what the publisher did, shared with its task (and the metrics).
#[derive(Debug, Default)]
pub struct Counters {
    posted: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    /// Events created so far.
    pub fn posted(&self) -> u64 {
        self.posted.load(Ordering::Relaxed)
    }

    /// Events not posted because of a rate limit.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events the API server did not accept (or that timed out).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// Posts Events for diagnostics in the background; stops when dropped.
#[derive(Debug)]
pub struct EventPublisher {
    diagnostics: watch::Sender<Arc<Vec<Diagnostic>>>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl EventPublisher {
    /// Starts the publishing task on the current tokio runtime (panics outside one, like
    /// `tokio::spawn`), reporting as `nftproxy-<node>`, with the default [`Limits`].
    pub fn start(client: kube::Client, node: &str, lookup: impl Lookup) -> Self {
        Self::start_with(client, node, lookup, Limits::default())
    }

    /// [`EventPublisher::start`] with other limits.
    pub fn start_with(
        client: kube::Client,
        node: &str,
        lookup: impl Lookup,
        limits: Limits,
    ) -> Self {
        let (diagnostics, receiver) = watch::channel(Arc::new(Vec::new()));
        let counters = Arc::new(Counters::default());
        let task = Task {
            client,
            instance: format!("{REPORTING_CONTROLLER}-{node}"),
            lookup: Box::new(lookup),
            limiter: EventLimiter::new(limits, Instant::now()),
            failures: WarnLimiter::new(FAILURE_WARN_INTERVAL),
            counters: Arc::clone(&counters),
        };
        let task = tokio::spawn(task.run(receiver));
        Self {
            diagnostics,
            counters,
            task,
        }
    }

    /// Hands over the diagnostics of the latest sync. Never blocks: the task reads the
    /// latest value when it gets to it.
    pub fn diagnostics(&self, diagnostics: &[Diagnostic]) {
        let concerned: Vec<Diagnostic> = diagnostics
            .iter()
            .filter(|d| concerns_services(d))
            .cloned()
            .collect();
        self.diagnostics.send_replace(Arc::new(concerned));
    }

    /// What the publisher has done so far (`nftproxy_events_*_total`).
    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }
}

impl Drop for EventPublisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether a diagnostic gets an Event at all.
fn concerns_services(diagnostic: &Diagnostic) -> bool {
    matches!(diagnostic.object.kind.as_str(), "Service" | "EndpointSlice")
        && diagnostic.object.namespace.is_some()
}

/// The publishing task's state.
struct Task {
    client: kube::Client,
    instance: String,
    lookup: Box<dyn Lookup>,
    limiter: EventLimiter,
    failures: WarnLimiter,
    counters: Arc<Counters>,
}

impl Task {
    async fn run(mut self, mut receiver: watch::Receiver<Arc<Vec<Diagnostic>>>) {
        while receiver.changed().await.is_ok() {
            let current = Arc::clone(&receiver.borrow_and_update());
            let (post, dropped) = self.limiter.admit(current.iter(), Instant::now());
            for (diagnostic, why) in dropped {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    object = %diagnostic.object,
                    limit = ?why,
                    "event dropped by the rate limit: {}",
                    diagnostic.message
                );
            }
            for diagnostic in post {
                self.post(diagnostic).await;
            }
        }
    }

    async fn post(&mut self, diagnostic: &Diagnostic) {
        let Some(event) = build_event(
            diagnostic,
            self.lookup.as_ref(),
            &self.instance,
            Timestamp::now(),
        ) else {
            return;
        };
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let result =
            tokio::time::timeout(POST_TIMEOUT, events.create(&PostParams::default(), &event)).await;
        let error = match result {
            Ok(Ok(_)) => {
                self.counters.posted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(object = %diagnostic.object, "event posted");
                return;
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no answer within {POST_TIMEOUT:?}"),
        };
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        match self.failures.allow(Instant::now()) {
            Some(suppressed) => tracing::warn!(
                object = %diagnostic.object,
                suppressed,
                "cannot post an event: {error}"
            ),
            None => tracing::debug!(object = %diagnostic.object, "cannot post an event: {error}"),
        }
    }
}

/// The Event for `diagnostic` created at `now`, or `None` for objects that get none.
pub fn build_event(
    diagnostic: &Diagnostic,
    lookup: &dyn Lookup,
    instance: &str,
    now: Timestamp,
) -> Option<Event> {
    if !concerns_services(diagnostic) {
        return None;
    }
    let object = &diagnostic.object;
    let namespace = object.namespace.clone()?;
    let service_ref = |name: &str| ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Service".into()),
        namespace: Some(namespace.clone()),
        name: Some(name.to_owned()),
        uid: lookup.service_uid(&namespace, name),
        ..ObjectReference::default()
    };
    let (regarding, related, note) = if object.kind == "Service" {
        (service_ref(&object.name), None, diagnostic.message.clone())
    } else {
        let slice = lookup.endpoint_slice(&namespace, &object.name);
        let slice_ref = ObjectReference {
            api_version: Some("discovery.k8s.io/v1".into()),
            kind: Some("EndpointSlice".into()),
            namespace: Some(namespace.clone()),
            name: Some(object.name.clone()),
            uid: slice.as_ref().and_then(|s| s.uid.clone()),
            ..ObjectReference::default()
        };
        match slice.and_then(|s| s.service) {
            Some(service) => (
                service_ref(&service),
                Some(slice_ref),
                format!("EndpointSlice {}: {}", object.name, diagnostic.message),
            ),
            None => (slice_ref, None, diagnostic.message.clone()),
        }
    };
    let regarding_name = regarding.name.clone().unwrap_or_default();
    Some(Event {
        metadata: ObjectMeta {
            name: Some(event_name(&regarding_name, now)),
            namespace: Some(namespace),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some("Warning".into()),
        reason: Some(reason(diagnostic).into()),
        action: Some(ACTION.into()),
        note: Some(truncate(note, NOTE_MAX_BYTES)),
        regarding: Some(regarding),
        related,
        reporting_controller: Some(REPORTING_CONTROLLER.into()),
        reporting_instance: Some(instance.to_owned()),
        ..Event::default()
    })
}

/// The Event's reason: an error means the object was skipped, a warning that part of it
/// was ignored or replaced.
pub fn reason(diagnostic: &Diagnostic) -> &'static str {
    match (diagnostic.severity, diagnostic.object.kind.as_str()) {
        (Severity::Error, "EndpointSlice") => "InvalidEndpointSlice",
        (Severity::Error, _) => "InvalidService",
        (Severity::Warning, _) => "ServiceProxyWarning",
    }
}

/// `<object>.<nanoseconds in hex>`, as client-go names Events.
fn event_name(object: &str, now: Timestamp) -> String {
    let suffix = format!(".{:x}", now.as_nanosecond());
    let base = truncate(object.to_owned(), NAME_MAX_BYTES - suffix.len());
    format!("{}{suffix}", base.trim_end_matches(['.', '-']))
}

/// `text` cut to at most `max` bytes at a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use nftproxy_compiler::ObjectRef;

    /// Service `default/web` (uid `svc-uid`), slice `default/web-1` of it, slice
    /// `default/orphan` without the label.
    struct Fake;

    impl Lookup for Fake {
        fn service_uid(&self, namespace: &str, name: &str) -> Option<String> {
            (namespace == "default" && name == "web").then(|| "svc-uid".into())
        }

        fn endpoint_slice(&self, namespace: &str, name: &str) -> Option<SliceInfo> {
            match (namespace, name) {
                ("default", "web-1") => Some(SliceInfo {
                    uid: Some("slice-uid".into()),
                    service: Some("web".into()),
                }),
                ("default", "orphan") => Some(SliceInfo {
                    uid: Some("orphan-uid".into()),
                    service: None,
                }),
                _ => None,
            }
        }
    }

    fn diag(severity: Severity, kind: &str, name: &str, message: &str) -> Diagnostic {
        Diagnostic {
            severity,
            object: ObjectRef::new(kind, Some("default"), name),
            message: message.into(),
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn event(d: &Diagnostic) -> Option<Event> {
        build_event(d, &Fake, "nftproxy-node-1", now())
    }

    #[test]
    fn a_service_diagnostic_regards_the_service_with_its_uid() {
        let d = diag(
            Severity::Error,
            "Service",
            "web",
            "spec.ports is empty; skipped",
        );
        let e = event(&d).unwrap();
        let regarding = e.regarding.unwrap();
        assert_eq!(regarding.kind.as_deref(), Some("Service"));
        assert_eq!(regarding.api_version.as_deref(), Some("v1"));
        assert_eq!(regarding.name.as_deref(), Some("web"));
        assert_eq!(regarding.uid.as_deref(), Some("svc-uid"));
        assert_eq!(e.related, None);
        assert_eq!(e.metadata.namespace.as_deref(), Some("default"));
        assert!(e.metadata.name.unwrap().starts_with("web."));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.reason.as_deref(), Some("InvalidService"));
        assert_eq!(e.action.as_deref(), Some("Sync"));
        assert_eq!(e.note.as_deref(), Some("spec.ports is empty; skipped"));
        assert_eq!(e.reporting_controller.as_deref(), Some("nftproxy"));
        assert_eq!(e.reporting_instance.as_deref(), Some("nftproxy-node-1"));
        assert_eq!(e.event_time, Some(MicroTime(now())));
    }

    #[test]
    fn a_slice_diagnostic_regards_its_service_or_else_the_slice() {
        let d = diag(Severity::Warning, "EndpointSlice", "web-1", "address bad");
        let e = event(&d).unwrap();
        assert_eq!(e.regarding.unwrap().uid.as_deref(), Some("svc-uid"));
        let related = e.related.unwrap();
        assert_eq!(related.kind.as_deref(), Some("EndpointSlice"));
        assert_eq!(related.uid.as_deref(), Some("slice-uid"));
        assert_eq!(e.note.as_deref(), Some("EndpointSlice web-1: address bad"));
        assert_eq!(e.reason.as_deref(), Some("ServiceProxyWarning"));

        for (name, uid) in [("orphan", Some("orphan-uid")), ("unknown", None)] {
            let d = diag(Severity::Error, "EndpointSlice", name, "bad; skipped");
            let e = event(&d).unwrap();
            let regarding = e.regarding.unwrap();
            assert_eq!(regarding.kind.as_deref(), Some("EndpointSlice"));
            assert_eq!(
                regarding.api_version.as_deref(),
                Some("discovery.k8s.io/v1")
            );
            assert_eq!(regarding.uid.as_deref(), uid);
            assert_eq!(e.related, None);
            assert_eq!(e.note.as_deref(), Some("bad; skipped"));
            assert_eq!(e.reason.as_deref(), Some("InvalidEndpointSlice"));
        }
    }

    #[test]
    fn other_objects_get_no_event() {
        for kind in ["Node", "ServiceCIDR", "KubeProxyConfiguration", "Endpoints"] {
            assert!(
                event(&diag(Severity::Error, kind, "x", "bad")).is_none(),
                "{kind}"
            );
        }
        let cluster_scoped = Diagnostic {
            object: ObjectRef::new("Service", None, "web"),
            ..diag(Severity::Error, "Service", "web", "bad")
        };
        assert!(event(&cluster_scoped).is_none());
    }

    #[test]
    fn long_notes_and_names_are_cut_to_the_api_limits() {
        let long = "é".repeat(NOTE_MAX_BYTES);
        let e = event(&diag(Severity::Warning, "Service", "web", &long)).unwrap();
        let note = e.note.unwrap();
        assert!(note.len() <= NOTE_MAX_BYTES && note.len() > NOTE_MAX_BYTES - 2);
        let name = event_name(&"a".repeat(300), now());
        assert_eq!(name.len(), NAME_MAX_BYTES);
    }
}
