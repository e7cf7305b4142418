//! Prometheus metrics: kube-proxy's names where kube-proxy has the metric (prefix
//! `kubeproxy_`, so existing dashboards and alerts keep working), `nftproxy_` otherwise.
//!
//! The sync loop records into [`Metrics`]; `/metrics` encodes the registry. Values that
//! cost something to compute (per-Service traffic counters, the Local-policy gauge) are
//! read or computed at scrape time by collectors registered here by the caller.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::sync::SyncReport;

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric nftproxy exports, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    sync_duration: Histogram,
    full_sync_duration: Histogram,
    partial_sync_duration: Histogram,
    network_programming: Histogram,
    last_sync_timestamp: FloatGauge,
    sync_failures: Counter,
    conntrack_duration: Histogram,
    conntrack_deleted: Counter,
    healthz: Family<Labels, Counter>,
    livez: Family<Labels, Counter>,
    operations: Histogram,
    syncs: Family<Labels, Counter>,
    ruleset_objects: Family<Labels, Gauge>,
}

/// Sizes of the applied ruleset. Rules are not counted: that walks every chain (2 ms at
/// 10k services, more than the rest of a partial sync's bookkeeping), while every count
/// here is a length the model keeps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RulesetSize {
    pub tables: usize,
    pub chains: usize,
    pub sets: usize,
    pub elements: usize,
    pub counters: usize,
}

impl RulesetSize {
    pub fn of(ruleset: &nftproxy_rules::Ruleset) -> Self {
        let mut size = RulesetSize::default();
        for table in ruleset.tables.values() {
            size.tables += 1;
            size.chains += table.chains.len();
            size.sets += table.sets.len();
            size.elements += table.sets.values().map(|s| s.elements.len()).sum::<usize>();
            size.counters += table.counters.len();
        }
        size
    }
}

/// kube-proxy's sync duration buckets: 1 ms doubling to about 16 s.
fn sync_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 15)
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let metrics = Metrics {
            sync_duration: Histogram::new(sync_buckets()),
            full_sync_duration: Histogram::new(sync_buckets()),
            partial_sync_duration: Histogram::new(sync_buckets()),
            // 1 ms doubling to about 4.5 minutes.
            network_programming: Histogram::new(exponential_buckets(0.001, 2.0, 19)),
            last_sync_timestamp: FloatGauge::default(),
            sync_failures: Counter::default(),
            conntrack_duration: Histogram::new(sync_buckets()),
            conntrack_deleted: Counter::default(),
            healthz: Family::default(),
            livez: Family::default(),
            // 1 operation, 4, 16, ... about 4 million.
            operations: Histogram::new(exponential_buckets(1.0, 4.0, 12)),
            syncs: Family::default(),
            ruleset_objects: Family::default(),
            registry: Registry::default(),
        };
        let kube = registry.sub_registry_with_prefix("kubeproxy");
        kube.register(
            "sync_proxy_rules_duration_seconds",
            "Time one sync took: compile, diff and apply",
            metrics.sync_duration.clone(),
        );
        kube.register(
            "sync_full_proxy_rules_duration_seconds",
            "Time one full sync took (listing the kernel first)",
            metrics.full_sync_duration.clone(),
        );
        kube.register(
            "sync_partial_proxy_rules_duration_seconds",
            "Time one partial sync took",
            metrics.partial_sync_duration.clone(),
        );
        kube.register(
            "network_programming_duration_seconds",
            "Time from an EndpointSlice's last-change-trigger-time to its rules being programmed",
            metrics.network_programming.clone(),
        );
        kube.register(
            "sync_proxy_rules_last_timestamp_seconds",
            "When the last successful sync finished (Unix time)",
            metrics.last_sync_timestamp.clone(),
        );
        kube.register(
            "sync_proxy_rules_nftables_sync_failures",
            "Syncs whose transaction the kernel refused or whose listing failed",
            metrics.sync_failures.clone(),
        );
        kube.register(
            "conntrack_reconciler_sync_duration_seconds",
            "Time one stale UDP conntrack cleanup took",
            metrics.conntrack_duration.clone(),
        );
        kube.register(
            "conntrack_reconciler_deleted_entries",
            "Stale UDP conntrack entries deleted",
            metrics.conntrack_deleted.clone(),
        );
        kube.register(
            "proxy_healthz",
            "/healthz answers by HTTP status code",
            metrics.healthz.clone(),
        );
        kube.register(
            "proxy_livez",
            "/livez answers by HTTP status code",
            metrics.livez.clone(),
        );
        let own = registry.sub_registry_with_prefix("nftproxy");
        own.register(
            "sync_operations",
            "Object-level operations per applied transaction",
            metrics.operations.clone(),
        );
        own.register(
            "syncs",
            "Successful syncs by kind (full, partial) and route (libnftables, netlink, none)",
            metrics.syncs.clone(),
        );
        own.register(
            "ruleset_objects",
            "Objects in the applied ruleset by kind (tables, chains, sets, elements, counters)",
            metrics.ruleset_objects.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Adds a collector whose metrics are computed at scrape time.
    pub fn register_collector(&mut self, collector: Box<dyn Collector>) {
        self.registry.register_collector(collector);
    }

    /// Records a successful sync and the applied ruleset's size.
    pub fn synced(&self, report: &SyncReport, size: RulesetSize, finished: SystemTime) {
        let seconds = report.total_time.as_secs_f64();
        self.sync_duration.observe(seconds);
        match report.kind {
            crate::sync::SyncKind::Full => self.full_sync_duration.observe(seconds),
            crate::sync::SyncKind::Partial => self.partial_sync_duration.observe(seconds),
        }
        if report.operations > 0 {
            self.operations.observe(report.operations as f64);
        }
        self.last_sync_timestamp.set(unix_seconds(finished));
        let route = report.route.map_or("none", |r| r.as_str());
        let labels = vec![
            ("kind", report.kind.as_str().to_owned()),
            ("route", route.to_owned()),
        ];
        self.syncs.get_or_create(&labels).inc();
        let kinds = [
            ("tables", size.tables),
            ("chains", size.chains),
            ("sets", size.sets),
            ("elements", size.elements),
            ("counters", size.counters),
        ];
        for (kind, count) in kinds {
            let gauge = self
                .ruleset_objects
                .get_or_create(&vec![("kind", kind.to_owned())]);
            gauge.set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Records a failed sync.
    pub fn sync_failed(&self) {
        self.sync_failures.inc();
    }

    /// Records the network programming latency of changes triggered at `triggers` and
    /// programmed at `programmed`.
    pub fn programmed(&self, triggers: &[SystemTime], programmed: SystemTime) {
        for trigger in triggers {
            let latency = programmed
                .duration_since(*trigger)
                .unwrap_or(Duration::ZERO);
            self.network_programming.observe(latency.as_secs_f64());
        }
    }

    /// Records one stale conntrack cleanup.
    pub fn conntrack_cleaned(&self, duration: Duration, deleted: u64) {
        self.conntrack_duration.observe(duration.as_secs_f64());
        self.conntrack_deleted.inc_by(deleted);
    }

    /// Counts a `/healthz` (`livez` false) or `/livez` answer.
    pub fn health_answered(&self, livez: bool, code: u16) {
        let family = if livez { &self.livez } else { &self.healthz };
        family
            .get_or_create(&vec![("code", code.to_string())])
            .inc();
    }

    /// The registry in the Prometheus text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::SyncKind;

    fn report(kind: SyncKind, operations: usize) -> SyncReport {
        SyncReport {
            kind,
            operations,
            commands: operations,
            replaced: false,
            route: None,
            snapshot_time: Duration::ZERO,
            compile_time: Duration::ZERO,
            apply_time: Duration::ZERO,
            total_time: Duration::from_millis(3),
            transaction: Default::default(),
        }
    }

    fn line_value(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn a_sync_moves_the_kube_proxy_named_metrics() {
        let metrics = Metrics::new();
        let size = RulesetSize {
            chains: 7,
            ..RulesetSize::default()
        };
        metrics.synced(&report(SyncKind::Partial, 3), size, SystemTime::now());
        let text = metrics.encode().unwrap();
        assert_eq!(
            line_value(&text, "kubeproxy_sync_proxy_rules_duration_seconds_count"),
            Some(1.0)
        );
        assert_eq!(
            line_value(
                &text,
                "kubeproxy_sync_partial_proxy_rules_duration_seconds_count"
            ),
            Some(1.0)
        );
        assert_eq!(
            line_value(
                &text,
                "kubeproxy_sync_full_proxy_rules_duration_seconds_count"
            ),
            Some(0.0)
        );
        assert_eq!(
            line_value(&text, "nftproxy_ruleset_objects{kind=\"chains\"}"),
            Some(7.0)
        );
        assert!(
            line_value(&text, "kubeproxy_sync_proxy_rules_last_timestamp_seconds").unwrap() > 1e9
        );
    }

    #[test]
    fn network_programming_latency_is_measured_from_the_trigger_time() {
        let metrics = Metrics::new();
        let programmed = SystemTime::now();
        metrics.programmed(&[programmed - Duration::from_millis(1500)], programmed);
        let text = metrics.encode().unwrap();
        let sum = line_value(&text, "kubeproxy_network_programming_duration_seconds_sum");
        assert_eq!(sum, Some(1.5));
    }
}
