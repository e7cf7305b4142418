//! One watcher task: kube's `watcher` feeding a `reflector` store, with backoff and logging.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use nftproxy_compiler::{Compact, CompactSlice};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use super::{Shared, Source};

/// The longest pause between two failed attempts, before jitter.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);

/// The pause after each failed list or watch: 0.8 s doubling up to [`MAX_RETRY_DELAY`],
/// each plus a random part of up to as much again; back to 0.8 s after two minutes
/// without failure. kube's default (client-go's too) stops doubling at 30 s, so after an
/// outage of a minute the watchers came back up to 60 s after the API server did (measured:
/// 67 s); with 10 s (at most 20 s with jitter) they come back within about 21 s (measured:
/// 12-21 s), and a node's four watchers still ask only about once every 15 s each while the
/// server is away.
fn retry_backoff() -> ResetTimerBackoff<watcher::ExponentialBackoff> {
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(800))
        .with_max_delay(MAX_RETRY_DELAY)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(exponential.into(), Duration::from_secs(120))
}

/// Spawns the watcher of `source` and returns its store and task. Each object is kept as
/// `keep` makes it (trimmed, or converted to what the compiler reads) as it arrives.
///
/// The task runs until aborted: kube's watcher never ends, it recovers from every error
/// (resume the watch, or re-list after 410 Gone), pausing with [`retry_backoff`] after each.
pub(super) fn spawn<S, K>(
    api: Api<S>,
    config: watcher::Config,
    source: Source,
    shared: &Arc<Shared>,
    keep: fn(S) -> K,
) -> (Store<K>, JoinHandle<()>)
where
    S: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K: Resource<DynamicType = ()> + TriggerTime + Clone + Debug + Send + Sync + 'static,
{
    let writer = reflector::store::Writer::<K>::default();
    let store = writer.as_reader();
    let events = watcher(api, config).map_ok(move |event| kept(event, keep));
    let mut stream = reflector::reflector(writer, events)
        .backoff(retry_backoff())
        .boxed();
    let shared = Arc::clone(shared);
    let reader = store.clone();
    let task = async move {
        let mut log = ErrorLog::default();
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => on_event(&event, source, &shared, &reader, &mut log),
                Err(err) => log.on_error(&err, source, &shared),
            }
        }
    };
    let handle = tokio::spawn(task.instrument(info_span!("watch", resource = %source)));
    (store, handle)
}

/// An object trimmed of what nobody reads (managed fields, `kubectl apply`'s copy, spare
/// capacity): the store keeps every object as long as it exists.
pub(super) fn compacted<K: Compact>(mut object: K) -> K {
    object.compact();
    object
}

/// The EndpointSlice trigger time an object carries (see `change_log`); other kinds
/// carry none.
pub(super) trait TriggerTime {
    fn trigger_time(&self) -> Option<&str> {
        None
    }
}

impl TriggerTime for Service {}
impl TriggerTime for Node {}
impl TriggerTime for ServiceCIDR {}

impl TriggerTime for CompactSlice {
    fn trigger_time(&self) -> Option<&str> {
        self.trigger_time.as_deref()
    }
}

/// `event` with its object as `keep` makes it.
fn kept<S, K>(event: watcher::Event<S>, keep: fn(S) -> K) -> watcher::Event<K> {
    match event {
        watcher::Event::Apply(object) => watcher::Event::Apply(keep(object)),
        watcher::Event::Delete(object) => watcher::Event::Delete(keep(object)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(object) => watcher::Event::InitApply(keep(object)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// Records what an event did to the store (already applied by the reflector).
fn on_event<K>(
    event: &watcher::Event<K>,
    source: Source,
    shared: &Shared,
    store: &Store<K>,
    log: &mut ErrorLog,
) where
    K: Resource<DynamicType = ()> + TriggerTime + Clone + 'static,
{
    match event {
        watcher::Event::Init => debug!("listing"),
        watcher::Event::InitApply(object) => count(source, shared, object.trigger_time()),
        watcher::Event::InitDone => {
            if !shared.is_synced(source) {
                info!(objects = store.len(), "initial list done");
            } else {
                info!(objects = store.len(), "re-listed");
            }
            log.recovered();
            shared.mark_synced(source);
            shared.poke();
        }
        watcher::Event::Apply(object) | watcher::Event::Delete(object) => {
            log.recovered();
            debug!(
                namespace = object.namespace().unwrap_or_default(),
                name = object.name_any(),
                deleted = matches!(event, watcher::Event::Delete(_)),
                "changed"
            );
            let applied = matches!(event, watcher::Event::Apply(_));
            count(
                source,
                shared,
                applied.then(|| object.trigger_time()).flatten(),
            );
            shared.poke();
        }
    }
}

/// Counts a Service or EndpointSlice change; `trigger_time` of an applied slice.
fn count(source: Source, shared: &Shared, trigger_time: Option<&str>) {
    match source {
        Source::Services => shared.log.service_changed(),
        Source::EndpointSlices => shared.log.endpoints_changed(trigger_time),
        Source::Node | Source::ServiceCidrs => {}
    }
}

/// Keeps repeated failures of one watcher from flooding the log.
#[derive(Debug, Default)]
struct ErrorLog {
    /// The API server answered 404 to the list: the resource is not served.
    absent: bool,
    /// Errors since the last success.
    failures: u32,
}

impl ErrorLog {
    fn recovered(&mut self) {
        if self.failures > 0 {
            info!(failures = self.failures, "watch recovered");
        }
        self.failures = 0;
        self.absent = false;
    }

    fn on_error(&mut self, err: &watcher::Error, source: Source, shared: &Shared) {
        self.failures = self.failures.saturating_add(1);
        if source == Source::ServiceCidrs && is_not_found(err) {
            if !self.absent {
                warn!(
                    "the API server does not serve networking.k8s.io/v1 ServiceCIDRs (404); \
                     treating them as none and checking again with backoff"
                );
                self.absent = true;
            }
            if !shared.is_synced(source) {
                shared.mark_synced(source);
                shared.poke();
            }
            return;
        }
        match err {
            watcher::Error::WatchError(status) if status.code == 410 => {
                info!(error = %err, "watch expired (410 Gone); re-listing");
            }
            _ if self.failures == 1 || self.failures.is_power_of_two() => {
                warn!(error = %err, failures = self.failures, "watch failed; retrying with backoff");
            }
            _ => debug!(error = %err, failures = self.failures, "watch failed again"),
        }
    }
}

/// Whether the list or watch request was answered 404 (resource not served).
fn is_not_found(err: &watcher::Error) -> bool {
    match err {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.is_not_found(),
        _ => false,
    }
}
