//! The sync loop: waits for changes, debounces them, syncs, and retries failures.
//!
//! Timing follows kube-proxy's nftables mode: a change is synced as soon as `minSyncPeriod`
//! has passed since the previous sync started (changes arriving meanwhile are coalesced into
//! one sync); a full sync runs every `syncPeriod`; after a failure the next (full) sync waits
//! for an exponential backoff. Nothing is applied until the source has synced once. The loop
//! runs on its own thread, so compiling and applying never block the watchers that feed it.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use nftproxy_compiler::{ClusterSnapshot, CompileConfig};

use crate::change_log::ChangeLog;
use crate::sync::{SyncError, SyncReport, Syncer, Target};

/// A generation counter that sources bump on every change, the loop's stop switch, and
/// since when a change has waited to be programmed (for health).
#[derive(Debug)]
pub struct Changes {
    state: Mutex<ChangeState>,
    wake: Condvar,
}

#[derive(Debug, Clone, Copy)]
struct ChangeState {
    generation: u64,
    stopped: bool,
    /// Since when the oldest change not yet programmed has waited (start-up counts as
    /// one: nothing is programmed yet); `None` when nothing waits.
    pending_since: Option<Instant>,
    /// When the last change arrived.
    last_queued: Option<SystemTime>,
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            state: Mutex::new(ChangeState {
                generation: 0,
                stopped: false,
                pending_since: Some(Instant::now()),
                last_queued: None,
            }),
            wake: Condvar::new(),
        }
    }
}

impl Changes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a change and wakes the loop.
    pub fn bump(&self) {
        self.update(|s| {
            s.generation += 1;
            s.pending_since.get_or_insert_with(Instant::now);
            s.last_queued = Some(SystemTime::now());
        });
    }

    /// Since when a change has waited to be programmed, if one waits.
    pub fn pending_since(&self) -> Option<Instant> {
        self.now().pending_since
    }

    /// When the last change arrived.
    pub fn last_queued(&self) -> Option<SystemTime> {
        self.now().last_queued
    }

    /// A sync of `generation` that started at `started` succeeded: what arrived since
    /// still waits, counted from the sync's start.
    fn programmed(&self, generation: u64, started: Instant) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.pending_since = (state.generation != generation).then_some(started);
    }

    /// A sync that started at `started` failed: the kernel is not what the cluster asks.
    fn failed(&self, started: Instant) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.pending_since.get_or_insert(started);
    }

    /// Asks the loop to return (after the sync in progress, if any).
    pub fn stop(&self) {
        self.update(|s| s.stopped = true);
    }

    /// Whether [`Changes::stop`] was called.
    pub fn stopped(&self) -> bool {
        self.now().stopped
    }

    fn update(&self, change: impl FnOnce(&mut ChangeState)) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut state);
        self.wake.notify_all();
    }

    fn now(&self) -> ChangeState {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the generation differs from `seen`, the loop is stopped, or `deadline`.
    fn wait(&self, seen: u64, deadline: Instant) {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let timeout = deadline.saturating_duration_since(Instant::now());
        let _ = self
            .wake
            .wait_timeout_while(state, timeout, |s| s.generation == seen && !s.stopped)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// Where the loop gets the cluster from.
pub trait Source {
    /// The cluster as of now; `None` until every store has been listed once.
    fn snapshot(&self) -> Option<ClusterSnapshot>;

    /// Brings the parts of the compile configuration that the source follows (the node's
    /// local addresses) up to date; called right before each sync. Nothing by default.
    fn configure(&self, _config: &mut CompileConfig) {}

    /// The source's count of Service and endpoint changes, if it keeps one.
    fn change_log(&self) -> Option<Arc<ChangeLog>> {
        None
    }
}

/// A source shared with the thread that keeps it current (a manifest directory's poller).
impl<S: Source + ?Sized> Source for Arc<S> {
    fn snapshot(&self) -> Option<ClusterSnapshot> {
        S::snapshot(self)
    }

    fn configure(&self, config: &mut CompileConfig) {
        S::configure(self, config);
    }

    fn change_log(&self) -> Option<Arc<ChangeLog>> {
        S::change_log(self)
    }
}

/// The loop's periods.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// At most one sync per this period (`nftables.minSyncPeriod`, may be zero).
    pub min_sync_period: Duration,
    /// A full sync at least this often (`nftables.syncPeriod`).
    pub sync_period: Duration,
    /// The first retry delay after a failure; doubled per failure up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Timing {
    /// kube-proxy-like periods: backoff from 1 s (or less when the sync period is shorter)
    /// up to the sync period.
    pub fn new(min_sync_period: Duration, sync_period: Duration) -> Self {
        Timing {
            min_sync_period,
            sync_period,
            initial_backoff: Duration::from_secs(1).min(sync_period),
            max_backoff: sync_period.max(Duration::from_secs(1)),
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// What the loop tells its observer after each sync attempt.
#[derive(Debug)]
pub enum Outcome<'a, E: std::error::Error + 'static> {
    Synced {
        report: &'a SyncReport,
        /// The cluster the sync programmed (handed over: the loop is done with it).
        snapshot: ClusterSnapshot,
        /// When the sync started (its snapshot was taken right after).
        started: Instant,
    },
    Failed {
        error: &'a SyncError<E>,
        /// Consecutive failures so far, this one included.
        failures: u32,
        retry_in: Duration,
    },
}

/// Runs syncs until [`Changes::stop`]. `observe` sees every attempt (for logs and metrics)
/// together with the syncer, so it can read the last compile and transaction.
pub fn run<T: Target, S: Source + ?Sized>(
    syncer: &mut Syncer<T>,
    source: &S,
    changes: &Changes,
    timing: Timing,
    mut observe: impl FnMut(&Syncer<T>, Outcome<'_, T::Error>),
) {
    let mut seen = None;
    let mut last_start: Option<Instant> = None;
    let mut next_full = Instant::now();
    let mut retry_at: Option<Instant> = None;
    let mut failures = 0u32;
    loop {
        let state = changes.now();
        if state.stopped {
            return;
        }
        let now = Instant::now();
        let dirty = seen != Some(state.generation);
        let earliest = last_start.map_or(now, |t| t + timing.min_sync_period);
        let allowed = earliest.max(retry_at.unwrap_or(now));
        let retry_due = retry_at.is_some_and(|r| now >= r);
        let full_due = now >= next_full;
        if (dirty || full_due || retry_due) && now >= allowed {
            let snapshot_started = Instant::now();
            let change_log = source.change_log();
            let counts = change_log.as_ref().map(|log| log.counts());
            let Some(snapshot) = source.snapshot() else {
                // Not synced yet: wait for the source to report a change.
                changes.wait(state.generation, now + timing.sync_period);
                continue;
            };
            seen = Some(state.generation);
            last_start = Some(now);
            source.configure(syncer.config_mut());
            let full = full_due || syncer.next_is_full();
            let kind = if full { "full" } else { "partial" };
            let span = tracing::info_span!("sync", kind, operations = tracing::field::Empty);
            let _entered = span.enter();
            let snapshot_time = snapshot_started.elapsed();
            match syncer.sync(&snapshot, full) {
                Ok(mut report) => {
                    report.snapshot_time = snapshot_time;
                    span.record("operations", report.operations);
                    failures = 0;
                    retry_at = None;
                    if report.kind == crate::sync::SyncKind::Full {
                        next_full = now + timing.sync_period;
                    }
                    changes.programmed(state.generation, now);
                    if let (Some(log), Some(counts)) = (&change_log, counts) {
                        log.programmed(counts);
                    }
                    let full = report.kind == crate::sync::SyncKind::Full;
                    let outcome = Outcome::Synced {
                        report: &report,
                        snapshot,
                        started: now,
                    };
                    observe(syncer, outcome);
                    if full {
                        crate::memory::release_freed();
                    }
                }
                Err(error) => {
                    changes.failed(now);
                    failures += 1;
                    let retry_in = timing.backoff(failures);
                    retry_at = Some(now + retry_in);
                    observe(
                        syncer,
                        Outcome::Failed {
                            error: &error,
                            failures,
                            retry_in,
                        },
                    );
                }
            }
            continue;
        }
        let mut deadline = next_full.max(allowed);
        if dirty || retry_at.is_some() {
            deadline = deadline.min(allowed);
        }
        changes.wait(state.generation, deadline);
    }
}

#[cfg(test)]
mod tests {
    use nftproxy_rules::{ApplyError, Ruleset, Transaction};

    use super::*;

    /// The rules crate's strict simulation of the kernel, which can be told to refuse.
    #[derive(Debug, Default)]
    struct Simulated {
        ruleset: Ruleset,
        refuse: u32,
        applied: u32,
        listed: u32,
    }

    #[derive(Debug, thiserror::Error)]
    enum SimError {
        #[error("refused on purpose")]
        Refused,
        #[error(transparent)]
        Apply(#[from] ApplyError),
    }

    impl Target for Simulated {
        type Error = SimError;

        fn apply(&mut self, transaction: &Transaction) -> Result<(), SimError> {
            if self.refuse > 0 {
                self.refuse -= 1;
                return Err(SimError::Refused);
            }
            self.ruleset = transaction.apply_to(&self.ruleset)?;
            self.applied += 1;
            Ok(())
        }

        fn list(&mut self, _expected: &Ruleset) -> Result<Option<Ruleset>, SimError> {
            self.listed += 1;
            Ok(Some(self.ruleset.clone()))
        }
    }

    /// A source whose snapshot the test sets.
    #[derive(Default)]
    struct Manual(Mutex<Option<ClusterSnapshot>>);

    impl Source for Manual {
        fn snapshot(&self) -> Option<ClusterSnapshot> {
            self.0.lock().unwrap().clone()
        }
    }

    fn config() -> CompileConfig {
        CompileConfig {
            hostname: "node-1".into(),
            ..CompileConfig::default()
        }
    }

    fn timing(min: u64) -> Timing {
        Timing {
            min_sync_period: Duration::from_millis(min),
            sync_period: Duration::from_secs(3600),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
        }
    }

    /// Runs the loop on a thread until `until` holds for the observed attempts (or 5 s),
    /// then stops it; returns the attempts as (ok, full) pairs and the target.
    fn run_until(
        target: Simulated,
        source: Arc<Manual>,
        changes: Arc<Changes>,
        timing: Timing,
        act: impl FnOnce(&Changes, &Manual) + Send + 'static,
        until: impl Fn(&[(bool, bool)]) -> bool + Send + 'static,
    ) -> (Vec<(bool, bool)>, Simulated) {
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let loop_changes = Arc::clone(&changes);
        let loop_attempts = Arc::clone(&attempts);
        let loop_source = Arc::clone(&source);
        let handle = std::thread::spawn(move || {
            let mut syncer = Syncer::new(target, config());
            run(
                &mut syncer,
                &*loop_source,
                &loop_changes,
                timing,
                |_, outcome| {
                    let attempt = match outcome {
                        Outcome::Synced { report, .. } => {
                            (true, report.kind == crate::sync::SyncKind::Full)
                        }
                        Outcome::Failed { .. } => (false, true),
                    };
                    loop_attempts.lock().unwrap().push(attempt);
                },
            );
            syncer
        });
        act(&changes, &source);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !until(&attempts.lock().unwrap()) {
            std::thread::sleep(Duration::from_millis(10));
        }
        changes.stop();
        let mut syncer = handle.join().unwrap();
        let attempts = attempts.lock().unwrap().clone();
        (attempts, std::mem::take(syncer.target_mut()))
    }

    #[test]
    fn a_change_waits_from_its_arrival_until_a_sync_that_saw_it_succeeds() {
        let changes = Changes::new();
        assert!(
            changes.pending_since().is_some(),
            "start-up waits for the first sync"
        );
        changes.programmed(0, Instant::now());
        assert_eq!(changes.pending_since(), None);
        changes.bump();
        let first = changes.pending_since().unwrap();
        changes.bump();
        assert_eq!(
            changes.pending_since(),
            Some(first),
            "the oldest change counts"
        );
        let started = Instant::now();
        changes.programmed(1, started);
        assert_eq!(
            changes.pending_since(),
            Some(started),
            "generation 2 arrived meanwhile"
        );
        changes.programmed(2, Instant::now());
        changes.failed(started);
        assert_eq!(
            changes.pending_since(),
            Some(started),
            "a failed sync leaves work"
        );
    }

    #[test]
    fn nothing_is_applied_until_the_source_has_synced() {
        let source = Arc::new(Manual::default());
        let changes = Arc::new(Changes::new());
        let (attempts, target) = run_until(
            Simulated::default(),
            source,
            changes,
            timing(0),
            |changes, source| {
                std::thread::sleep(Duration::from_millis(200));
                changes.bump();
                std::thread::sleep(Duration::from_millis(100));
                *source.0.lock().unwrap() = Some(ClusterSnapshot::default());
                changes.bump();
            },
            |attempts| !attempts.is_empty(),
        );
        // Had the loop synced before the source was ready, there would be more attempts.
        assert_eq!(attempts, [(true, true)], "one full sync once synced");
        assert_eq!(target.applied, 1);
        assert_eq!(
            target.ruleset.tables.len(),
            2,
            "both nftproxy tables created"
        );
    }

    #[test]
    fn changes_within_min_sync_period_are_coalesced_into_one_sync() {
        let source = Arc::new(Manual(Mutex::new(Some(ClusterSnapshot::default()))));
        let changes = Arc::new(Changes::new());
        let (attempts, _) = run_until(
            Simulated::default(),
            source,
            changes,
            timing(400),
            |changes, _| {
                // The first (full) sync starts at once; these land inside its min period.
                std::thread::sleep(Duration::from_millis(50));
                for _ in 0..20 {
                    changes.bump();
                    std::thread::sleep(Duration::from_millis(5));
                }
            },
            |attempts| attempts.len() >= 2,
        );
        assert_eq!(attempts, [(true, true), (true, false)]);
    }

    #[test]
    fn a_refused_transaction_is_retried_as_a_full_sync_after_a_backoff() {
        let source = Arc::new(Manual(Mutex::new(Some(ClusterSnapshot::default()))));
        let changes = Arc::new(Changes::new());
        let target = Simulated {
            refuse: 2,
            ..Simulated::default()
        };
        let started = Instant::now();
        let (attempts, target) = run_until(
            target,
            source,
            changes,
            timing(0),
            |_, _| {},
            |attempts| attempts.iter().any(|(ok, _)| *ok),
        );
        assert_eq!(attempts, [(false, true), (false, true), (true, true)]);
        // Backoffs of 50 ms then 100 ms separate the three attempts.
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert_eq!(target.listed, 3, "every retry lists the kernel again");
        assert_eq!(target.applied, 1);
    }
}
