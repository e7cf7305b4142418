//! Metrics computed at scrape time: change counts from the sources' [`ChangeLog`], and
//! kube-proxy's gauge of Local-policy service ports without a local endpoint.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use nftproxy_compiler::NoLocalEndpoints;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::change_log::ChangeLog;
use crate::events;
use crate::kernel::counters::CounterReader;
use crate::metrics::unix_seconds;
use crate::status::Status;
use crate::sync_loop;

/// `kubeproxy_sync_proxy_rules_{service,endpoint}_changes_{total,pending}`.
#[derive(Debug)]
pub struct Changes(pub Arc<ChangeLog>);

impl Collector for Changes {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (seen, pending) = (self.0.counts(), self.0.pending());
        let as_gauge = |n: u64| ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
        let kinds = [
            ("service", "Service", seen.services, pending.services),
            (
                "endpoint",
                "EndpointSlice",
                seen.endpoints,
                pending.endpoints,
            ),
        ];
        for (name, kind, seen, pending) in kinds {
            let total = ConstCounter::new(seen);
            let help = format!("{kind} changes seen");
            let metric = format!("kubeproxy_sync_proxy_rules_{name}_changes");
            total.encode(encoder.encode_descriptor(
                &metric,
                &help,
                None,
                MetricType::Counter,
            )?)?;
            let help = format!("{kind} changes not yet programmed");
            let metric = format!("kubeproxy_sync_proxy_rules_{name}_changes_pending");
            let gauge = as_gauge(pending);
            gauge.encode(encoder.encode_descriptor(&metric, &help, None, MetricType::Gauge)?)?;
        }
        Ok(())
    }
}

/// `kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy}`, computed from the
/// last successful sync's inputs once per sync (on the first scrape after it).
#[derive(Debug)]
pub struct NoLocal {
    status: Arc<Status>,
    cache: Mutex<Option<(SystemTime, NoLocalEndpoints)>>,
}

impl NoLocal {
    pub fn new(status: Arc<Status>) -> Self {
        NoLocal {
            status,
            cache: Mutex::new(None),
        }
    }

    fn counts(&self) -> NoLocalEndpoints {
        let Some(last) = self.status.last_sync() else {
            return NoLocalEndpoints::default();
        };
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        match *cache {
            Some((at, counts)) if at == last.at => counts,
            _ => {
                let counts =
                    nftproxy_compiler::describe(&last.snapshot, &last.config).no_local_endpoints;
                *cache = Some((last.at, counts));
                counts
            }
        }
    }
}

impl Collector for NoLocal {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.counts();
        let mut family = encoder.encode_descriptor(
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
            "Service ports with a Local traffic policy and no usable local endpoint",
            None,
            MetricType::Gauge,
        )?;
        for (policy, count) in [("internal", counts.internal), ("external", counts.external)] {
            let labels = [("traffic_policy", policy)];
            let gauge = ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX));
            gauge.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// `kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds`: when the last change arrived.
#[derive(Debug)]
pub struct LastQueued(pub Arc<sync_loop::Changes>);

impl Collector for LastQueued {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(at) = self.0.last_queued() else {
            return Ok(());
        };
        let gauge = ConstGauge::new(unix_seconds(at));
        gauge.encode(encoder.encode_descriptor(
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "When the last change was queued for a sync (Unix time)",
            None,
            MetricType::Gauge,
        )?)
    }
}

/// `nftproxy_events_{posted,dropped,failed}_total`: what the Event publisher did.
#[derive(Debug)]
pub struct Events(pub Arc<events::Counters>);

impl Collector for Events {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let kinds = [
            ("posted", "Events created for diagnostics", self.0.posted()),
            (
                "dropped",
                "Events not posted because of a rate limit",
                self.0.dropped(),
            ),
            (
                "failed",
                "Events the API server did not accept",
                self.0.failed(),
            ),
        ];
        for (name, help, value) in kinds {
            let name = format!("nftproxy_events_{name}");
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(&name, help, None, MetricType::Counter)?)?;
        }
        Ok(())
    }
}

/// `nftproxy_service_{packets,bytes}_total{namespace,service,protocol,port}`: the kernel's
/// per-service-port counters (client-to-service direction, both families summed), read
/// with one netlink dump per scrape.
#[derive(Debug)]
pub struct Traffic(pub CounterReader);

impl Collector for Traffic {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters = match self.0.read() {
            Ok(counters) => counters,
            Err(err) => {
                tracing::warn!("cannot read the service counters: {err}");
                return Ok(());
            }
        };
        let mut sums: BTreeMap<[String; 4], (u64, u64)> = BTreeMap::new();
        for counter in &counters {
            let Some(l) = counter.labels() else { continue };
            let sum = sums
                .entry([l.namespace, l.service, l.protocol, l.port])
                .or_default();
            sum.0 += counter.packets;
            sum.1 += counter.bytes;
        }
        let names = ["namespace", "service", "protocol", "port"];
        let kinds = [
            (
                "nftproxy_service_packets",
                "Packets sent to the service port through this node",
            ),
            (
                "nftproxy_service_bytes",
                "Bytes sent to the service port through this node",
            ),
        ];
        for (index, (name, help)) in kinds.into_iter().enumerate() {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, (packets, bytes)) in &sums {
                let labels: Vec<(&str, &str)> = names
                    .iter()
                    .copied()
                    .zip(labels.iter().map(String::as_str))
                    .collect();
                let value = if index == 0 { *packets } else { *bytes };
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
