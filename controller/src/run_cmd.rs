//! `nftproxy run`: keeps this node's nftables equal to the cluster until SIGTERM or SIGINT.
//!
//! The cluster comes from a manifest directory (`--manifests`) or the API server; the kernel
//! is reached through the nftables helper. On a signal the loop finishes the sync in
//! progress and returns, leaving the rules in place: the next instance adopts them with a
//! full sync that changes only what differs.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use nftproxy_compiler::kube_proxy_config::KubeProxyConfiguration;
use nftproxy_compiler::{ClusterSnapshot, CompileConfig, UdpPort};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::addresses::AddressWatcher;
use crate::change_log::ChangeLog;
use crate::cli::PartialApply;
use crate::cli::{CleanupArgs, RunArgs};
use crate::collectors;
use crate::conntrack;
use crate::events::EventPublisher;
use crate::http::{self, HealthCheckServers};
use crate::instance_lock::InstanceLock;
use crate::kernel::Kernel;
use crate::kernel::counters::CounterReader;
use crate::kernel_target::KernelTarget;
use crate::manifest_source::ManifestSource;
use crate::metrics::{Metrics, RulesetSize};
use crate::settings;
use crate::settings::Settings;
use crate::sources::{ClusterSources, SourcesConfig};
use crate::status::{KEPT_TRANSACTION, LastSync, Status};
use crate::sync::{SyncReport, Syncer};
use crate::sync_loop::{self, Changes, Outcome, Source, Timing};

/// How often a manifest directory is checked for changes.
const MANIFEST_POLL: Duration = Duration::from_millis(200);

/// Runs `run`. Returns when stopped by a signal.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let _instance = InstanceLock::acquire()?;
    let settings = Settings::load(args.node.config.as_deref(), args.node.hostname.as_deref())?;
    let kube_proxy = &settings.kube_proxy;
    let timing = Timing::new(kube_proxy.min_sync_period(), kube_proxy.sync_period());
    let addresses = HttpAddresses::of(args, kube_proxy)?;
    let config = settings.compile;
    let kernel = Kernel::start(args.nft_helper.as_deref())?;
    tracing::info!(
        helper = %kernel.helper_path().display(),
        pid = kernel.helper_pid().unwrap_or_default(),
        "nftables helper started"
    );
    let changes = Arc::new(Changes::new());
    stop_on_signals(Arc::clone(&changes))?;

    tracing::info!(
        hostname = %config.hostname,
        min_sync_period = ?timing.min_sync_period,
        sync_period = ?timing.sync_period,
        "starting"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("async")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let local = watch_local_addresses(&config, &changes)?;
    let target = KernelTarget {
        kernel,
        batches: args.partial_apply == PartialApply::Netlink,
    };
    let mut syncer = Syncer::new(target, config);
    let hostname = syncer_hostname(&syncer);
    let (source, events) = start_source(args, &runtime, &changes, &hostname)?;
    // kube-proxy's health timeout: twice the sync period.
    let status = Arc::new(Status::new(
        timing.sync_period.saturating_mul(2),
        Arc::clone(&changes),
    ));
    let state = http::State {
        metrics: Arc::new(metrics(&*source, &status, &changes, events.as_ref())?),
        status: Arc::clone(&status),
    };
    let _health_server = http::start_health(runtime.handle(), addresses.healthz, state.clone())?;
    let _metrics_server = http::start_metrics(runtime.handle(), addresses.metrics, state.clone())?;
    let mut reporter = Reporter {
        health_checks: HealthCheckServers::new(runtime.handle().clone(), status),
        state,
        events,
        reported: BTreeSet::new(),
        udp_ports: None,
    };
    let node_ips = NodeIps {
        cluster: &*source,
        node_ips: args.node.node_ips.clone(),
        local: local.as_ref(),
    };
    run_loop(&mut syncer, &node_ips, &changes, timing, &mut reporter);
    drop(source);
    runtime.shutdown_timeout(Duration::from_secs(1));
    tracing::info!("stopped; nftproxy's rules stay in place for the next instance");
    Ok(ExitCode::SUCCESS)
}

/// Where the health and metrics servers listen (`None`: not at all).
struct HttpAddresses {
    healthz: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
}

impl HttpAddresses {
    /// The flags, else the configuration's fields, else kube-proxy's defaults.
    fn of(args: &RunArgs, config: &KubeProxyConfiguration) -> anyhow::Result<Self> {
        let healthz = args.healthz_bind_address.as_deref();
        let metrics = args.metrics_bind_address.as_deref();
        Ok(HttpAddresses {
            healthz: settings::bind_address(
                "healthzBindAddress",
                healthz.unwrap_or(&config.healthz_bind_address),
                settings::DEFAULT_HEALTHZ_BIND_ADDRESS,
            )?,
            metrics: settings::bind_address(
                "metricsBindAddress",
                metrics.unwrap_or(&config.metrics_bind_address),
                settings::DEFAULT_METRICS_BIND_ADDRESS,
            )?,
        })
    }
}

/// The cluster source: the manifest directory, or the API server's watchers together with
/// the Event publisher (Events need an API server).
fn start_source(
    args: &RunArgs,
    runtime: &tokio::runtime::Runtime,
    changes: &Arc<Changes>,
    hostname: &str,
) -> anyhow::Result<(Box<dyn Source>, Option<EventPublisher>)> {
    if let Some(dir) = &args.manifests {
        let source = Arc::new(ManifestSource::new(dir));
        source.refresh();
        Arc::clone(&source)
            .watch(Arc::clone(changes), MANIFEST_POLL)
            .context("cannot start the manifest watcher")?;
        tracing::info!(manifests = %dir.display(), "reading the cluster from manifests");
        return Ok((Box::new(source), None));
    }
    let client = runtime.block_on(kube_client(args.kubeconfig.as_deref()))?;
    let (source, publisher) = runtime.block_on(async {
        let sources = ClusterSources::start(client.clone(), SourcesConfig::new(hostname));
        forward_changes(sources.changes(), Arc::clone(changes));
        let publisher = EventPublisher::start(client, hostname, sources.object_stores());
        (ApiSource(sources), publisher)
    });
    tracing::info!("watching the API server");
    Ok((Box::new(source), Some(publisher)))
}

/// The metrics registry with its scrape-time collectors.
fn metrics(
    source: &dyn Source,
    status: &Arc<Status>,
    changes: &Arc<Changes>,
    events: Option<&EventPublisher>,
) -> anyhow::Result<Metrics> {
    let mut metrics = Metrics::new();
    if let Some(log) = source.change_log() {
        metrics.register_collector(Box::new(collectors::Changes(log)));
    }
    metrics.register_collector(Box::new(collectors::NoLocal::new(Arc::clone(status))));
    metrics.register_collector(Box::new(collectors::LastQueued(Arc::clone(changes))));
    let counters = CounterReader::open().context("cannot open a netfilter socket")?;
    metrics.register_collector(Box::new(collectors::Traffic(counters)));
    if let Some(publisher) = events {
        metrics.register_collector(Box::new(collectors::Events(publisher.counters())));
    }
    Ok(metrics)
}

/// Starts watching the host's addresses when `nodePortAddresses` lists CIDRs: kube-proxy
/// then matches them against the local interfaces' addresses. With `primary` (the default)
/// only the Node's primary addresses and `--node-ip` count, so nothing is watched.
fn watch_local_addresses(
    config: &CompileConfig,
    changes: &Arc<Changes>,
) -> anyhow::Result<Option<AddressWatcher>> {
    if config.node_ports_on_primary_addresses() {
        return Ok(None);
    }
    let changes = Arc::clone(changes);
    let watcher =
        AddressWatcher::start(move || changes.bump()).context("cannot read the local addresses")?;
    tracing::info!(addresses = ?watcher.addresses(), "watching the local addresses");
    Ok(Some(watcher))
}

/// A cluster source that also sets the node's extra addresses before each sync:
/// `--node-ip` values plus the current local addresses (when watched).
struct NodeIps<'a> {
    cluster: &'a dyn Source,
    node_ips: Vec<IpAddr>,
    local: Option<&'a AddressWatcher>,
}

impl Source for NodeIps<'_> {
    fn snapshot(&self) -> Option<ClusterSnapshot> {
        self.cluster.snapshot()
    }

    fn change_log(&self) -> Option<Arc<ChangeLog>> {
        self.cluster.change_log()
    }

    fn configure(&self, config: &mut CompileConfig) {
        let mut ips = self.node_ips.clone();
        ips.extend(
            self.local
                .map(AddressWatcher::addresses)
                .unwrap_or_default(),
        );
        config.extra_node_ips = ips;
    }
}

/// The API server's objects, as the sync loop reads them.
struct ApiSource(ClusterSources);

impl Source for ApiSource {
    fn snapshot(&self) -> Option<ClusterSnapshot> {
        self.0.synced().then(|| self.0.snapshot())
    }

    fn change_log(&self) -> Option<Arc<ChangeLog>> {
        Some(self.0.change_log())
    }
}

fn syncer_hostname(syncer: &Syncer<KernelTarget>) -> String {
    syncer.config().hostname.clone()
}

/// Bumps the loop's change counter whenever a store changes (many changes, one bump).
fn forward_changes(mut from: tokio::sync::watch::Receiver<u64>, to: Arc<Changes>) {
    tokio::spawn(async move {
        while from.changed().await.is_ok() {
            from.borrow_and_update();
            to.bump();
        }
    });
}

/// A client from `--kubeconfig`, else the in-cluster configuration, else `$KUBECONFIG` or
/// `~/.kube/config`. Requests are not retried by the client itself: the watchers have their
/// own backoff, and a retrying request would hide an outage for minutes.
async fn kube_client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    let mut config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("{}: cannot read the kubeconfig", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("{}: unusable kubeconfig", path.display()))?
        }
        None => kube::Config::infer().await.context(
            "no Kubernetes configuration found (in-cluster, $KUBECONFIG or ~/.kube/config)",
        )?,
    };
    config.default_retry = false;
    kube::Client::try_from(config).context("cannot build the Kubernetes client")
}

/// What the loop reports to after each sync: logs, metrics, the HTTP status, the
/// health-check node ports, Events and stale conntrack entries.
struct Reporter {
    state: http::State,
    health_checks: HealthCheckServers,
    /// Posts diagnostics as Kubernetes Events (API server mode only).
    events: Option<EventPublisher>,
    /// Diagnostics already logged.
    reported: BTreeSet<String>,
    /// The UDP ports of the last successful sync; none before the first one.
    udp_ports: Option<Vec<UdpPort>>,
}

impl Reporter {
    fn synced(
        &mut self,
        syncer: &Syncer<KernelTarget>,
        source: &dyn Source,
        report: &SyncReport,
        snapshot: ClusterSnapshot,
        started: Instant,
    ) {
        let finished = SystemTime::now();
        let reporting = Instant::now();
        let metrics = &self.state.metrics;
        if let Some(log) = source.change_log() {
            metrics.programmed(&log.take_triggers(started), finished);
        }
        self.state.status.synced(LastSync {
            snapshot,
            config: syncer.config().clone(),
            transaction: (report.transaction.len() <= KEPT_TRANSACTION)
                .then(|| Arc::clone(&report.transaction)),
            operations: report.operations,
            kind: report.kind.as_str(),
            at: finished,
        });
        if let Some(compiled) = syncer.last_compiled() {
            metrics.synced(report, RulesetSize::of(&compiled.ruleset), finished);
            self.health_checks.update(&compiled.health_checks);
        }
        // Logged once what the HTTP side reports is up to date (tests wait for this line).
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::info!(
            kind = report.kind.as_str(),
            operations = report.operations,
            commands = report.commands,
            replaced = report.replaced,
            via = report.route.map_or("-", |r| r.as_str()),
            snapshot_ms = ms(report.snapshot_time),
            compile_ms = ms(report.compile_time),
            apply_ms = ms(report.apply_time),
            total_ms = ms(report.total_time),
            report_ms = ms(reporting.elapsed()),
            "synced"
        );
        if let Some(compiled) = syncer.last_compiled() {
            let cleaned = clean_conntrack(self.udp_ports.as_deref(), &compiled.udp_ports);
            if let Some(cleaned) = cleaned {
                metrics.conntrack_cleaned(cleaned.duration, cleaned.deleted as u64);
            }
            self.udp_ports = Some(compiled.udp_ports.clone());
        }
    }

    /// Logs each diagnostic of the last compile once, when it first appears, and hands
    /// a changed set to the Event publisher.
    fn log_new_diagnostics(&mut self, syncer: &Syncer<KernelTarget>) {
        let Some(compiled) = syncer.last_compiled() else {
            return;
        };
        let current: BTreeSet<String> = compiled
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect();
        for line in current.difference(&self.reported) {
            tracing::warn!("{line}");
        }
        if let Some(events) = self.events.as_ref().filter(|_| current != self.reported) {
            events.diagnostics(&compiled.diagnostics);
        }
        self.reported = current;
    }
}

/// The loop, reporting every sync attempt to `reporter`.
fn run_loop(
    syncer: &mut Syncer<KernelTarget>,
    source: &dyn Source,
    changes: &Changes,
    timing: Timing,
    reporter: &mut Reporter,
) {
    sync_loop::run(syncer, source, changes, timing, |syncer, outcome| {
        match outcome {
            Outcome::Synced {
                report,
                snapshot,
                started,
            } => reporter.synced(syncer, source, report, snapshot, started),
            Outcome::Failed {
                error,
                failures,
                retry_in,
            } => {
                reporter.state.metrics.sync_failed();
                tracing::error!(
                    failures,
                    ?retry_in,
                    "sync failed: {error}; the next sync is full"
                );
            }
        }
        reporter.log_new_diagnostics(syncer);
    });
}

/// Deletes the UDP conntrack entries that going from `previous` to `current` made stale
/// (with no previous sync: every entry that leads nowhere `current` sends to). Never fails
/// the sync: a failure is a warning, and the entries time out on their own. Returns what
/// a cleanup that ran did.
fn clean_conntrack(
    previous: Option<&[UdpPort]>,
    current: &[UdpPort],
) -> Option<conntrack::Cleaned> {
    let filters = match previous {
        Some(previous) => conntrack::stale(previous, current),
        None => conntrack::unserved(current),
    };
    if filters.is_empty() {
        return None;
    }
    match conntrack::clean(&filters) {
        Ok(cleaned) => {
            tracing::info!(
                deleted = cleaned.deleted,
                listed = cleaned.listed,
                filters = filters.len(),
                duration_ms = cleaned.duration.as_secs_f64() * 1e3,
                "stale UDP conntrack entries deleted"
            );
            Some(cleaned)
        }
        Err(err) => {
            tracing::warn!("stale UDP conntrack cleanup failed: {err}");
            None
        }
    }
}

/// Stops the loop on SIGTERM or SIGINT (a second signal exits at once).
fn stop_on_signals(changes: Arc<Changes>) -> anyhow::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT]).context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if changes.stopped() {
                    tracing::warn!(signal, "second signal; exiting now");
                    std::process::exit(1);
                }
                tracing::info!(signal, "stopping after the sync in progress");
                changes.stop();
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Runs `cleanup`: removes nftproxy's tables, nothing else.
pub fn cleanup(args: &CleanupArgs) -> anyhow::Result<ExitCode> {
    // A running instance would put the tables back at its next sync.
    let _instance = InstanceLock::acquire()?;
    let kernel = Kernel::start(args.nft_helper.as_deref())?;
    kernel.delete_tables()?;
    tracing::info!("nftproxy's tables are removed");
    Ok(ExitCode::SUCCESS)
}
