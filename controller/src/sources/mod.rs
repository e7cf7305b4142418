//! The cluster as `nftproxy run` sees it: kube-rs reflectors for the objects the compiler reads.
//!
//! [`ClusterSources::start`] spawns one `kube::runtime::watcher` + `reflector` per kind, as
//! kube-proxy does:
//!
//! | store | request | why |
//! | --- | --- | --- |
//! | Services | all namespaces, label selector [`PROXIED_SELECTOR`] | services labelled `service.kubernetes.io/service-proxy-name` belong to another proxy |
//! | EndpointSlices | all namespaces, label selector [`PROXIED_SELECTOR`] | the EndpointSlice controller copies a Service's labels onto its slices and labels the slices of a headless Service `service.kubernetes.io/headless` |
//! | Node | field selector `metadata.name=<node>` | only this node's labels (zone) and addresses matter |
//! | ServiceCIDRs | all (networking.k8s.io/v1) | an API server that does not serve them (404) counts as "none" |
//!
//! kube-proxy uses the same selector for Services and EndpointSlices (one label-filtered
//! informer factory). A headless Service itself normally carries no
//! `service.kubernetes.io/headless` label, so it *is* in the Service store; the compiler
//! skips it (`clusterIP: None`). Its slices are not. Legacy `v1/Endpoints` are not watched
//! (kube-proxy stopped reading them); the snapshot's `endpoints` stays empty.
//!
//! # The interface for the sync loop
//!
//! ```text
//! let sources = ClusterSources::start(client, SourcesConfig::new(node_name));
//! let mut changes = sources.changes();
//! sources.wait_synced().await;            // nothing may be applied before every store listed once
//! loop {
//!     let snapshot = sources.snapshot();   // compile + diff + apply
//!     changes.changed().await?;            // woken by any store change (coalesced)
//!     tokio::time::sleep(min_sync_period).await;  // debounce: later pokes are absorbed
//!     changes.borrow_and_update();
//! }
//! ```
//!
//! - [`ClusterSources::synced`] is true once every store has had its initial list (or, for
//!   ServiceCIDRs, the API server answered 404). It never goes back to false: after a re-list
//!   a store swaps its contents atomically, so it is never half-filled.
//! - [`ClusterSources::snapshot`] puts the stores' current objects into a
//!   [`ClusterSnapshot`] in the stores' order (the compiler's output does not depend on
//!   it, so sorting here would only cost time on every sync). The objects are shared with
//!   the stores (`Arc`s), not copied; managed fields were dropped once, when they were
//!   stored. Stores are read one after the other, so a snapshot may show a Service a moment
//!   before its EndpointSlice, exactly as kube-proxy's informers do; the next change
//!   triggers another sync.
//! - [`ClusterSources::changes`] is a `tokio::sync::watch` receiver of a counter bumped
//!   after every change to a store (an object applied or deleted, a list finished). Pokes
//!   never get lost and many pokes wake the loop once, which is what a debounce needs.
//!
//! Watch errors (dropped connections, 410 Gone after compaction, an unavailable API server)
//! are handled by kube's watcher: it resumes the watch from the last resourceVersion, or
//! re-lists when that is too old, with `default_backoff()` between failed attempts. The
//! stores keep their last contents meanwhile. Errors are logged with `tracing` in a `watch`
//! span naming the resource. The module holds no compile or diff logic.

mod reflect;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use nftproxy_compiler::{ClusterSnapshot, CompactSlice};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::change_log::ChangeLog;

/// kube-proxy's label selector for Services and EndpointSlices: not headless (a label the
/// EndpointSlice controller sets on the slices of headless Services) and not claimed by
/// another service proxy.
pub const PROXIED_SELECTOR: &str =
    "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name";

/// Page size of lists, client-go's default.
pub const DEFAULT_PAGE_SIZE: u32 = 500;

/// What to watch and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcesConfig {
    /// This node's name: the one Node object watched.
    pub node_name: String,
    /// Server-side timeout of each watch request in seconds (`None`: kube's 290 s). The
    /// watcher treats a watch that stayed silent for this long plus 5 s as dead and reconnects.
    pub watch_timeout: Option<u32>,
    /// Objects per list page for the initial list and re-lists.
    pub page_size: u32,
}

impl SourcesConfig {
    /// Defaults for the node called `node_name`.
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            watch_timeout: None,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

/// One of the watched kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Services,
    EndpointSlices,
    Node,
    ServiceCidrs,
}

impl Source {
    /// Every source, in the order of the `synced` flags.
    pub const ALL: [Source; 4] = [
        Source::Services,
        Source::EndpointSlices,
        Source::Node,
        Source::ServiceCidrs,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Services => "services",
            Source::EndpointSlices => "endpointslices",
            Source::Node => "node",
            Source::ServiceCidrs => "servicecidrs",
        })
    }
}

/// State the watcher tasks share with [`ClusterSources`].
#[derive(Debug)]
struct Shared {
    /// Per [`Source::index`]: the store has had its initial list.
    synced: [AtomicBool; 4],
    /// Bumped after every change to a store.
    changes: watch::Sender<u64>,
    /// Service and EndpointSlice changes counted, with their trigger times.
    log: Arc<ChangeLog>,
}

impl Shared {
    fn mark_synced(&self, source: Source) {
        self.synced[source.index()].store(true, Ordering::Release);
    }

    fn is_synced(&self, source: Source) -> bool {
        self.synced[source.index()].load(Ordering::Acquire)
    }

    fn poke(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The reflector stores of everything the compiler needs, kept current by background tasks.
///
/// Dropping it stops the watchers.
pub struct ClusterSources {
    services: Store<Service>,
    endpoint_slices: Store<CompactSlice>,
    node: Store<Node>,
    service_cidrs: Store<ServiceCIDR>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for ClusterSources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSources")
            .field("pending", &self.pending())
            .field("services", &self.services.len())
            .field("endpoint_slices", &self.endpoint_slices.len())
            .field("node", &self.node.len())
            .field("service_cidrs", &self.service_cidrs.len())
            .finish()
    }
}

impl ClusterSources {
    /// Starts the four watchers on the current tokio runtime (panics outside one, like
    /// `tokio::spawn`). Returns at once; see [`ClusterSources::wait_synced`].
    pub fn start(client: Client, config: SourcesConfig) -> Self {
        let (changes, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            synced: Default::default(),
            changes,
            log: Arc::default(),
        });
        let base = watcher::Config {
            timeout: config.watch_timeout,
            page_size: Some(config.page_size),
            ..watcher::Config::default()
        };
        let proxied = base.clone().labels(PROXIED_SELECTOR);
        let this_node = base
            .clone()
            .fields(&format!("metadata.name={}", config.node_name));

        let (services, t1) = reflect::spawn(
            Api::all(client.clone()),
            proxied.clone(),
            Source::Services,
            &shared,
            reflect::compacted::<Service>,
        );
        let (endpoint_slices, t2) = reflect::spawn(
            Api::<EndpointSlice>::all(client.clone()),
            proxied,
            Source::EndpointSlices,
            &shared,
            CompactSlice::from,
        );
        let (node, t3) = reflect::spawn(
            Api::all(client.clone()),
            this_node,
            Source::Node,
            &shared,
            reflect::compacted::<Node>,
        );
        let (service_cidrs, t4) = reflect::spawn(
            Api::all(client),
            base,
            Source::ServiceCidrs,
            &shared,
            reflect::compacted::<ServiceCIDR>,
        );
        Self {
            services,
            endpoint_slices,
            node,
            service_cidrs,
            shared,
            tasks: vec![t1, t2, t3, t4],
        }
    }

    /// True once every store has had its initial list.
    pub fn synced(&self) -> bool {
        Source::ALL.iter().all(|s| self.shared.is_synced(*s))
    }

    /// The sources whose initial list has not finished yet (for logs and readiness).
    pub fn pending(&self) -> Vec<Source> {
        Source::ALL
            .into_iter()
            .filter(|s| !self.shared.is_synced(*s))
            .collect()
    }

    /// Waits until [`ClusterSources::synced`].
    #[allow(
        dead_code,
        reason = "the sync loop polls `synced`; tests wait with this"
    )]
    pub async fn wait_synced(&self) {
        let mut changes = self.changes();
        while !self.synced() {
            // The sender lives in `self.shared`, so this only fails if `self` is gone.
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Counts of Service and EndpointSlice changes, with EndpointSlice trigger times.
    pub fn change_log(&self) -> Arc<ChangeLog> {
        Arc::clone(&self.shared.log)
    }

    /// A receiver that wakes after any change to a store; see the module documentation.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// The stores' current objects, in no particular order. Only the `Arc`s are cloned: the
    /// objects are shared with the stores, which never mutate them in place.
    pub fn snapshot(&self) -> ClusterSnapshot {
        ClusterSnapshot {
            services: self.services.state(),
            endpoint_slices: self.endpoint_slices.state(),
            endpoints: Vec::new(),
            nodes: self.node.state(),
            service_cidrs: self.service_cidrs.state(),
        }
    }
}

/// Read access to the Service and EndpointSlice stores by name, for whoever needs an
/// object's uid or labels after a sync (the Event publisher). Cheap to clone.
#[derive(Debug, Clone)]
pub struct ObjectStores {
    services: Store<Service>,
    endpoint_slices: Store<CompactSlice>,
}

impl ObjectStores {
    /// The stored Service `namespace/name`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.services.get(&ObjectRef::new(name).within(namespace))
    }

    /// The stored EndpointSlice `namespace/name`.
    pub fn endpoint_slice(&self, namespace: &str, name: &str) -> Option<Arc<CompactSlice>> {
        self.endpoint_slices
            .get(&ObjectRef::new(name).within(namespace))
    }
}

impl ClusterSources {
    /// The Service and EndpointSlice stores, for lookups by name.
    pub fn object_stores(&self) -> ObjectStores {
        ObjectStores {
            services: self.services.clone(),
            endpoint_slices: self.endpoint_slices.clone(),
        }
    }
}

impl Drop for ClusterSources {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
