//! `nftproxy run`: keeps this node's nftables equal to the cluster until SIGTERM or SIGINT.
//!
//! The cluster comes from a manifest directory (`--manifests`) or the API server; the kernel
//! is reached through the nftables helper. On a signal the loop finishes the sync in
//! progress and returns, leaving the rules in place: the next instance adopts them with a
//! full sync that changes only what differs.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nftproxy_compiler::{ClusterSnapshot, CompileConfig, UdpPort};
use nftproxy_rules::{Ruleset, Transaction};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::addresses::AddressWatcher;
use crate::cli::PartialApply;
use crate::cli::{CleanupArgs, RunArgs};
use crate::conntrack;
use crate::events::EventPublisher;
use crate::kernel::{Kernel, KernelError};
use crate::manifest_source::ManifestSource;
use crate::settings::Settings;
use crate::sources::{ClusterSources, SourcesConfig};
use crate::sync::{Route, Syncer, Target};
use crate::sync_loop::{self, Changes, Outcome, Source, Timing};

/// How often a manifest directory is checked for changes.
const MANIFEST_POLL: Duration = Duration::from_millis(200);

/// The kernel as the syncer uses it: a listing that the model cannot represent means
/// "replace the tables", any other failure is an error. Partial syncs go as netlink
/// batches of nftproxy's own when `batches` is set and the encoder covers them.
#[derive(Debug)]
pub struct KernelTarget {
    pub kernel: Kernel,
    pub batches: bool,
}

impl Target for KernelTarget {
    type Error = KernelError;

    fn apply(&mut self, transaction: &Transaction) -> Result<(), KernelError> {
        self.kernel.apply(transaction)
    }

    fn apply_partial(
        &mut self,
        transaction: &Transaction,
        current: &Ruleset,
        desired: &Ruleset,
    ) -> Result<Route, KernelError> {
        if !self.batches {
            return self.apply(transaction).map(|()| Route::Libnftables);
        }
        match self.kernel.apply_batch(transaction, &[desired, current]) {
            Ok(()) => Ok(Route::Netlink),
            Err(err) if err.not_sent() => {
                // Nothing reached nf_tables: the same transaction can go the other way.
                tracing::debug!(%err, "partial sync through libnftables");
                self.apply(transaction).map(|()| Route::Libnftables)
            }
            Err(err) => Err(KernelError::Refused {
                message: err.to_string(),
            }),
        }
    }

    fn list(&mut self) -> Result<Option<nftproxy_rules::Ruleset>, KernelError> {
        match self.kernel.list() {
            Ok(ruleset) => Ok(Some(ruleset)),
            Err(KernelError::ParseListing { source }) => {
                tracing::warn!(
                    "nftproxy's tables hold something it never writes ({source}); replacing them"
                );
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }
}

/// Runs `run`. Returns when stopped by a signal.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(args.node.config.as_deref(), args.node.hostname.as_deref())?;
    let config = settings.compile;
    let timing = Timing::new(
        settings.kube_proxy.min_sync_period(),
        settings.kube_proxy.sync_period(),
    );
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
    let local = watch_local_addresses(&config, &changes)?;
    let node_ips = |cluster| NodeIps {
        cluster,
        node_ips: args.node.node_ips.clone(),
        local: local.as_ref(),
    };
    let target = KernelTarget {
        kernel,
        batches: args.partial_apply == PartialApply::Netlink,
    };
    let mut syncer = Syncer::new(target, config);
    if let Some(dir) = &args.manifests {
        let source = Arc::new(ManifestSource::new(dir));
        source.refresh();
        Arc::clone(&source)
            .watch(Arc::clone(&changes), MANIFEST_POLL)
            .context("cannot start the manifest watcher")?;
        tracing::info!(manifests = %dir.display(), "reading the cluster from manifests");
        run_loop(&mut syncer, &node_ips(&*source), &changes, timing, None);
    } else {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("watch")
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let client = runtime.block_on(kube_client(args.kubeconfig.as_deref()))?;
        let node = syncer_hostname(&syncer);
        let (source, events) = runtime.block_on(async {
            let sources = ClusterSources::start(client.clone(), SourcesConfig::new(&node));
            forward_changes(sources.changes(), Arc::clone(&changes));
            let events = EventPublisher::start(client, &node, sources.object_stores());
            (ApiSource(sources), events)
        });
        tracing::info!("watching the API server");
        run_loop(
            &mut syncer,
            &node_ips(&source),
            &changes,
            timing,
            Some(&events),
        );
        runtime.shutdown_timeout(Duration::from_secs(1));
    }
    tracing::info!("stopped; nftproxy's rules stay in place for the next instance");
    Ok(ExitCode::SUCCESS)
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

/// The loop, logging every sync and each new diagnostic once (and handing them to the
/// Event publisher, if any), and deleting the UDP conntrack entries each successful sync
/// made stale.
fn run_loop(
    syncer: &mut Syncer<KernelTarget>,
    source: &dyn Source,
    changes: &Changes,
    timing: Timing,
    events: Option<&EventPublisher>,
) {
    let mut reported = BTreeSet::new();
    // The UDP ports of the last successful sync; none before the first one.
    let mut udp_ports: Option<Vec<UdpPort>> = None;
    sync_loop::run(syncer, source, changes, timing, |syncer, outcome| {
        match outcome {
            Outcome::Synced(report) => {
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
                    "synced"
                );
                if let Some(compiled) = syncer.last_compiled() {
                    clean_conntrack(udp_ports.as_deref(), &compiled.udp_ports);
                    udp_ports = Some(compiled.udp_ports.clone());
                }
            }
            Outcome::Failed {
                error,
                failures,
                retry_in,
            } => {
                tracing::error!(
                    failures,
                    ?retry_in,
                    "sync failed: {error}; the next sync is full"
                );
            }
        }
        let Some(compiled) = syncer.last_compiled() else {
            return;
        };
        let current: BTreeSet<String> = compiled
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect();
        for line in current.difference(&reported) {
            tracing::warn!("{line}");
        }
        if let Some(events) = events.filter(|_| current != reported) {
            events.diagnostics(&compiled.diagnostics);
        }
        reported = current;
    });
}

/// Deletes the UDP conntrack entries that going from `previous` to `current` made stale
/// (with no previous sync: every entry that leads nowhere `current` sends to). Never fails
/// the sync: a failure is a warning, and the entries time out on their own.
fn clean_conntrack(previous: Option<&[UdpPort]>, current: &[UdpPort]) {
    let filters = match previous {
        Some(previous) => conntrack::stale(previous, current),
        None => conntrack::unserved(current),
    };
    if filters.is_empty() {
        return;
    }
    match conntrack::clean(&filters) {
        Ok(cleaned) => tracing::info!(
            deleted = cleaned.deleted,
            listed = cleaned.listed,
            filters = filters.len(),
            duration_ms = cleaned.duration.as_secs_f64() * 1e3,
            "stale UDP conntrack entries deleted"
        ),
        Err(err) => tracing::warn!("stale UDP conntrack cleanup failed: {err}"),
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
    let kernel = Kernel::start(args.nft_helper.as_deref())?;
    kernel.delete_tables()?;
    tracing::info!("nftproxy's tables are removed");
    Ok(ExitCode::SUCCESS)
}
