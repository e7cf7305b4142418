//! What the HTTP endpoints report, shared between the sync loop (which writes it) and the
//! servers (which read it): health, readiness and what the last successful sync applied.
//!
//! Health follows kube-proxy's proxier health server: nftproxy is unhealthy when a change
//! has been waiting to be programmed for longer than the health timeout (2 x `syncPeriod`).
//! Start-up counts as such a change (nothing is programmed yet), and so does a failed sync
//! (the kernel is not what the cluster asks for until a sync succeeds). `/healthz` is also
//! unhealthy while this node is being deleted or is tainted `ToBeDeletedByClusterAutoscaler`,
//! so that load balancers drain it; `/livez` is not, so the pod is not restarted for it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Node;
use nftproxy_compiler::{ClusterSnapshot, CompileConfig};
use nftproxy_rules::Transaction;

use crate::sync_loop::Changes;

/// Commands above which a sync's transaction is not kept for `/debug/transaction`.
pub const KEPT_TRANSACTION: usize = crate::sync::LARGE_TRANSACTION;

/// Services and slices above which an old snapshot is freed on a thread of its own.
const LARGE_SNAPSHOT: usize = 1_000;

/// The taint the cluster autoscaler puts on a node it is about to remove.
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

/// The inputs and result of the last successful sync, kept for the debug endpoints. The
/// snapshot shares its objects with the sources, so keeping it costs a few pointers.
#[derive(Debug, Clone)]
pub struct LastSync {
    pub snapshot: ClusterSnapshot,
    pub config: CompileConfig,
    /// The sync's transaction, unless it was larger than [`KEPT_TRANSACTION`] commands
    /// (a full sync of a large cluster: as big as the ruleset, and no use to read).
    pub transaction: Option<Arc<Transaction>>,
    /// Its object operations, kept whatever its size.
    pub operations: usize,
    pub kind: &'static str,
    pub at: SystemTime,
}

/// Health as kube-proxy's `/healthz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// No change has waited longer than the timeout.
    pub proxy_healthy: bool,
    /// The node is neither being deleted nor tainted for deletion.
    pub node_eligible: bool,
    /// When the last successful sync finished (`None` before the first one).
    pub last_updated: Option<SystemTime>,
}

/// The shared status. Cheap to read: every method takes one short lock.
#[derive(Debug)]
pub struct Status {
    timeout: Duration,
    /// Knows since when a change has waited to be programmed.
    changes: Arc<Changes>,
    /// The last successful sync; everything else is derived from it.
    last_sync: Mutex<Option<LastSync>>,
}

impl Status {
    /// A status for a proxy that has not synced yet: unhealthy once a change (start-up
    /// included) has waited in `changes` for longer than `timeout`.
    pub fn new(timeout: Duration, changes: Arc<Changes>) -> Self {
        Status {
            timeout,
            changes,
            last_sync: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<LastSync>> {
        self.last_sync
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a successful sync.
    pub fn synced(&self, last: LastSync) {
        let old = self.lock().replace(last);
        // A full sync's transaction can hold the whole ruleset, and a large cluster's
        // snapshot is tens of thousands of shared pointers: free them off the sync's path.
        let large = old.filter(|o| {
            let objects = o.snapshot.services.len() + o.snapshot.endpoint_slices.len();
            objects > LARGE_SNAPSHOT
        });
        crate::sync::drop_in_background(large);
    }

    /// Health now. The node's deletion state is read from the Node object (named like the
    /// compile configuration's hostname) of the last successful sync; none: eligible.
    pub fn health(&self) -> Health {
        let waited = self.changes.pending_since().map(|since| since.elapsed());
        let last = self.lock();
        let node = last.as_ref().and_then(|l| {
            let named = |n: &&Arc<Node>| n.metadata.name.as_deref() == Some(&l.config.hostname);
            l.snapshot.nodes.iter().find(named)
        });
        Health {
            proxy_healthy: waited.is_none_or(|w| w <= self.timeout),
            node_eligible: node.is_none_or(|n| node_eligible(n)),
            last_updated: last.as_ref().map(|l| l.at),
        }
    }

    /// Whether a sync has succeeded since start.
    pub fn ready(&self) -> bool {
        self.lock().is_some()
    }

    /// The last successful sync, if any.
    pub fn last_sync(&self) -> Option<LastSync> {
        self.lock().clone()
    }
}

/// A node is eligible for traffic unless it is being deleted or the cluster autoscaler
/// tainted it for deletion.
fn node_eligible(node: &Node) -> bool {
    let deleting = node.metadata.deletion_timestamp.is_some();
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    let tainted = taints
        .into_iter()
        .flatten()
        .any(|t| t.key == TO_BE_DELETED_TAINT);
    !deleting && !tainted
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeSpec, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn last() -> LastSync {
        LastSync {
            snapshot: ClusterSnapshot::default(),
            config: CompileConfig::default(),
            transaction: Some(Arc::new(Transaction::new())),
            operations: 0,
            kind: "full",
            at: SystemTime::now(),
        }
    }

    #[test]
    fn start_up_is_healthy_until_the_timeout_passes_without_a_sync() {
        let status = Status::new(Duration::from_millis(30), Arc::new(Changes::new()));
        assert!(status.health().proxy_healthy);
        assert!(!status.ready());
        std::thread::sleep(Duration::from_millis(40));
        assert!(
            !status.health().proxy_healthy,
            "no sync for longer than the timeout"
        );
        status.synced(last());
        assert!(status.ready(), "ready once a sync succeeded");
    }

    /// A last sync whose snapshot holds `node`, named like the configuration's hostname.
    fn with_node(node: Node) -> LastSync {
        let mut node = node;
        node.metadata.name = Some("node-1".into());
        let mut last = last();
        last.config.hostname = "node-1".into();
        last.snapshot.nodes = vec![Arc::new(node)];
        last
    }

    #[test]
    fn a_node_being_deleted_or_tainted_for_deletion_is_not_eligible() {
        let status = Status::new(Duration::from_secs(60), Arc::new(Changes::new()));
        assert!(status.health().node_eligible, "no sync yet: eligible");
        status.synced(with_node(Node::default()));
        assert!(status.health().node_eligible);
        let tainted = Node {
            spec: Some(NodeSpec {
                taints: Some(vec![Taint {
                    key: TO_BE_DELETED_TAINT.into(),
                    effect: "NoSchedule".into(),
                    ..Taint::default()
                }]),
                ..NodeSpec::default()
            }),
            ..Node::default()
        };
        status.synced(with_node(tainted));
        assert!(!status.health().node_eligible);
        let mut deleting = Node::default();
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        status.synced(with_node(deleting.clone()));
        assert!(!status.health().node_eligible);
        deleting.metadata.name = Some("another-node".into());
        let mut other = last();
        other.config.hostname = "node-1".into();
        other.snapshot.nodes = vec![Arc::new(deleting)];
        status.synced(other);
        assert!(
            status.health().node_eligible,
            "another node being deleted is not ours"
        );
    }
}
