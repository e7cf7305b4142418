//! A fake Kubernetes API server for the watch layer's tests: real HTTP, real list/watch protocol.
//!
//! It serves what kube-rs's `watcher` uses, for Services, EndpointSlices, Nodes and
//! ServiceCIDRs, plain HTTP on 127.0.0.1 with a random port and no authentication:
//!
//! - **LIST** `GET /api/v1/services` (and `/apis/discovery.k8s.io/v1/endpointslices`,
//!   `/api/v1/nodes`, `/apis/networking.k8s.io/v1/servicecidrs`) with `labelSelector`
//!   (`key`, `!key`, `key=value`, `key==value`, `key!=value`, comma-joined), `fieldSelector`
//!   (`metadata.name`, `metadata.namespace`), `limit` and `continue`. A list is a
//!   `<Kind>List` with `metadata.resourceVersion`; later pages come from the first page's
//!   snapshot, and a continue token older than a compaction gets 410 Expired.
//! - **WATCH** `?watch=true&resourceVersion=N&allowWatchBookmarks=true&timeoutSeconds=T`:
//!   newline-delimited `{"type":…,"object":…}` events after N, in order. An object that
//!   starts or stops matching the selector is ADDED or DELETED for that watch. A watch
//!   from before the last [`FakeApiServer::compact`] gets one ERROR event carrying a 410
//!   `Expired` Status and ends, as the real API server does. Without a resourceVersion (or
//!   with "0") the watch starts with ADDED events for the current objects. The server
//!   ends a watch cleanly after `timeoutSeconds`.
//!
//! Like etcd, one resourceVersion counter covers every kind, so a watch that only sees
//! Nodes falls behind when Services change; bookmarks are what keep it current.
//!
//! Test controls: [`FakeApiServer::apply`], [`FakeApiServer::delete`],
//! [`FakeApiServer::send_bookmarks`], [`FakeApiServer::compact`],
//! [`FakeApiServer::drop_connections`] (open watches end without the final chunk),
//! [`FakeApiServer::stall`] (open and new watches send nothing and never time out, a black
//! hole; lifting it sends what was held back), [`FakeApiServer::set_unavailable`] (every
//! request gets 503 and open watches are dropped), per-kind unavailability and
//! "not served" (404), and counters of LIST/WATCH requests, open watches and bookmarks sent.
//!
//! Events: `POST /apis/events.k8s.io/v1/namespaces/NS/events` creates an Event (see
//! `events.rs`); [`FakeApiServer::events`] returns them. Other Event requests get 405.
// The test files use different parts of it.
#![allow(dead_code)]

mod events;
mod http;
mod on_thread;
mod selector;
mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[allow(
    unused_imports,
    reason = "the watch-layer tests serve from their own runtime"
)]
pub use on_thread::OnThread;
pub use selector::{FieldSelector, LabelSelector};
pub use state::Access;
use state::State;

/// The kinds the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Service,
    EndpointSlice,
    Node,
    ServiceCidr,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Node,
        Kind::ServiceCidr,
    ];

    /// The collection path, as `Api::all` requests it.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Service => "/api/v1/services",
            Kind::EndpointSlice => "/apis/discovery.k8s.io/v1/endpointslices",
            Kind::Node => "/api/v1/nodes",
            Kind::ServiceCidr => "/apis/networking.k8s.io/v1/servicecidrs",
        }
    }

    fn from_path(path: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.path() == path)
    }

    /// The `kind` field of objects.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Node => "Node",
            Kind::ServiceCidr => "ServiceCIDR",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Service | Kind::Node => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::ServiceCidr => "networking.k8s.io/v1",
        }
    }

    pub fn namespaced(self) -> bool {
        matches!(self, Kind::Service | Kind::EndpointSlice)
    }

    /// The kind of a JSON object, by its `kind` field.
    fn of(object: &Value) -> Kind {
        let name = object["kind"].as_str().unwrap_or("");
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .unwrap_or_else(|| panic!("the fake API server does not serve kind {name:?}"))
    }
}

/// State shared by the server's tasks and the test.
struct Inner {
    state: Mutex<State>,
    /// Bumped after every change, to wake the open watches.
    wake: watch::Sender<u64>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes the state and wakes every watch.
    fn change<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let result = f(&mut self.lock());
        self.wake.send_modify(|n| *n += 1);
        result
    }
}

/// A running fake API server; stops accepting connections when dropped.
pub struct FakeApiServer {
    inner: Arc<Inner>,
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl FakeApiServer {
    /// Binds 127.0.0.1 on a random port and starts serving on the current runtime.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (wake, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            wake,
        });
        let accept = tokio::spawn(http::serve(listener, Arc::clone(&inner)));
        Self {
            inner,
            addr,
            accept,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for this server: `kube::Config::new(url)`, no authentication.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().expect("server URL"));
        kube::Client::try_from(config).expect("kube client")
    }

    /// Creates or replaces an object (any serializable Kubernetes object of a served kind);
    /// returns its new resourceVersion.
    pub fn apply<T: Serialize>(&self, object: &T) -> u64 {
        let value = serde_json::to_value(object).expect("object serializes");
        self.inner.change(|s| s.apply(value))
    }

    /// Deletes an object (`namespace` is ignored for cluster-scoped kinds); returns whether
    /// it existed.
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) -> bool {
        let namespace = if kind.namespaced() { namespace } else { "" };
        self.inner.change(|s| s.delete(kind, namespace, name))
    }

    /// Every open watch that allowed bookmarks gets a BOOKMARK at the current resourceVersion.
    pub fn send_bookmarks(&self) {
        self.inner.change(|s| s.bookmark_requests += 1);
    }

    /// Drops the event history: watches (and list continuations) from an older
    /// resourceVersion get 410 Gone.
    pub fn compact(&self) {
        self.inner.change(State::compact);
    }

    /// Ends every open watch abruptly (no final chunk: the client sees an unexpected EOF).
    pub fn drop_connections(&self) {
        self.inner.change(|s| s.drops += 1);
    }

    /// While on, watches stay open but send nothing (events are held back, not lost).
    pub fn stall(&self, on: bool) {
        self.inner.change(|s| s.stalled = on);
    }

    /// While on, every request gets 503 and open watches are dropped.
    pub fn set_unavailable(&self, on: bool) {
        self.inner.change(|s| s.unavailable = on);
    }

    /// While on, the server is gone as if its process had exited: its port refuses
    /// connections and every open connection is cut (watches end without a final chunk,
    /// requests on kept-alive connections get no answer). Off: it listens again on the
    /// same port, with its state (and event history) intact.
    pub fn set_gone(&self, on: bool) {
        self.inner.change(|s| s.gone = on);
    }

    /// Like [`FakeApiServer::set_unavailable`], for one kind.
    pub fn set_kind_unavailable(&self, kind: Kind, on: bool) {
        self.inner.change(|s| {
            if on {
                s.unavailable_kinds.insert(kind);
            } else {
                s.unavailable_kinds.remove(&kind);
            }
        });
    }

    /// Whether the API serves `kind` at all; when not, its requests get 404 NotFound.
    pub fn set_served(&self, kind: Kind, served: bool) {
        self.inner.change(|s| {
            if served {
                s.not_served.remove(&kind);
            } else {
                s.not_served.insert(kind);
            }
        });
    }

    /// The events.k8s.io/v1 Events created so far, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.inner.lock().events.clone()
    }

    /// POST requests for Events received, accepted or not.
    pub fn event_posts(&self) -> u64 {
        self.inner.lock().event_posts
    }

    /// The authorization attributes of every request received so far.
    pub fn requests(&self) -> BTreeSet<Access> {
        self.inner.lock().requests.clone()
    }

    /// The last resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.inner.lock().rv
    }

    /// LIST requests received for `kind` (every page counts, so do refused ones).
    pub fn list_requests(&self, kind: Kind) -> u64 {
        self.inner.lock().counters(kind).lists
    }

    /// WATCH requests received for `kind` (refused ones too).
    pub fn watch_requests(&self, kind: Kind) -> u64 {
        self.inner.lock().counters(kind).watches
    }

    /// Watches of `kind` open right now.
    pub fn open_watches(&self, kind: Kind) -> u64 {
        self.inner.lock().counters(kind).open_watches
    }

    /// BOOKMARK events sent for `kind`.
    pub fn bookmarks_sent(&self, kind: Kind) -> u64 {
        self.inner.lock().counters(kind).bookmarks_sent
    }

    /// What a client selecting with these selectors sees now: `namespace/name` (just `name`
    /// for cluster-scoped kinds) to resourceVersion.
    pub fn visible(&self, kind: Kind, labels: &str, fields: &str) -> BTreeMap<String, String> {
        let labels = LabelSelector::parse(labels).expect("label selector");
        let fields = FieldSelector::parse(fields).expect("field selector");
        let state = self.inner.lock();
        state
            .matching(kind, &labels, &fields)
            .iter()
            .map(|o| {
                (
                    object_key(o),
                    o["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// `namespace/name`, or `name` without a namespace.
pub fn object_key(object: &Value) -> String {
    let meta = &object["metadata"];
    let name = meta["name"].as_str().unwrap_or("");
    match meta["namespace"].as_str() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}
