//! Counts of Service and endpoint changes as the sources see them, and the EndpointSlice
//! trigger times that network programming latency is measured from.
//!
//! kube-proxy reports `sync_proxy_rules_{service,endpoint}_changes_{total,pending}` and
//! `network_programming_duration_seconds`: the time from the change that triggered an
//! EndpointSlice update (the `endpoints.kubernetes.io/last-change-trigger-time`
//! annotation the EndpointSlice controller sets) until the rules are programmed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Instant, SystemTime};

/// Cumulative change counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChangeCounts {
    pub services: u64,
    pub endpoints: u64,
}

/// What the sources record and the sync loop reads.
#[derive(Debug, Default)]
pub struct ChangeLog {
    services: AtomicU64,
    endpoints: AtomicU64,
    /// Trigger times of EndpointSlice changes not yet programmed, with when they arrived.
    triggers: Mutex<Vec<(Instant, SystemTime)>>,
    /// The counts as of the snapshot of the last successful sync.
    programmed: Mutex<ChangeCounts>,
}

impl ChangeLog {
    /// A Service was added, changed or deleted.
    pub fn service_changed(&self) {
        self.services.fetch_add(1, Ordering::Relaxed);
    }

    /// An EndpointSlice was added, changed or deleted; `trigger_time` is its
    /// [`TRIGGER_TIME_ANNOTATION`](nftproxy_compiler::compact_slice::TRIGGER_TIME_ANNOTATION)
    /// when it was added or changed.
    pub fn endpoints_changed(&self, trigger_time: Option<&str>) {
        self.endpoints.fetch_add(1, Ordering::Relaxed);
        let trigger =
            trigger_time.and_then(|text| text.parse::<k8s_openapi::jiff::Timestamp>().ok());
        if let Some(trigger) = trigger {
            let trigger = SystemTime::from(trigger);
            let mut triggers = self.triggers.lock().unwrap_or_else(PoisonError::into_inner);
            triggers.push((Instant::now(), trigger));
        }
    }

    pub fn counts(&self) -> ChangeCounts {
        ChangeCounts {
            services: self.services.load(Ordering::Relaxed),
            endpoints: self.endpoints.load(Ordering::Relaxed),
        }
    }

    /// A sync whose snapshot was taken when the counts were `counts` succeeded.
    pub fn programmed(&self, counts: ChangeCounts) {
        *self
            .programmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = counts;
    }

    /// Changes seen but not yet programmed.
    pub fn pending(&self) -> ChangeCounts {
        let now = self.counts();
        let done = *self
            .programmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        ChangeCounts {
            services: now.services.saturating_sub(done.services),
            endpoints: now.endpoints.saturating_sub(done.endpoints),
        }
    }

    /// Removes and returns the trigger times of changes that arrived before `before` (the
    /// ones a sync that took its snapshot at `before` programmed).
    pub fn take_triggers(&self, before: Instant) -> Vec<SystemTime> {
        let mut triggers = self.triggers.lock().unwrap_or_else(PoisonError::into_inner);
        let (taken, kept): (Vec<_>, Vec<_>) = triggers.drain(..).partition(|(at, _)| *at <= before);
        *triggers = kept;
        taken.into_iter().map(|(_, trigger)| trigger).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn changes_are_counted_by_kind() {
        let log = ChangeLog::default();
        log.service_changed();
        log.endpoints_changed(None);
        log.endpoints_changed(None);
        assert_eq!(
            log.counts(),
            ChangeCounts {
                services: 1,
                endpoints: 2
            }
        );
    }

    #[test]
    fn changes_after_the_programmed_snapshot_are_pending() {
        let log = ChangeLog::default();
        log.service_changed();
        log.endpoints_changed(None);
        let seen = log.counts();
        log.endpoints_changed(None);
        log.programmed(seen);
        assert_eq!(
            log.pending(),
            ChangeCounts {
                services: 0,
                endpoints: 1
            }
        );
    }

    #[test]
    fn trigger_times_are_taken_once_by_the_sync_that_saw_them() {
        let log = ChangeLog::default();
        log.endpoints_changed(Some("2026-11-22T10:00:00Z"));
        log.endpoints_changed(Some("not a time"));
        let sync_start = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        log.endpoints_changed(Some("2026-11-22T10:00:01Z"));
        let first = log.take_triggers(sync_start);
        let expected = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_341_600);
        assert_eq!(first, [expected]);
        assert_eq!(log.take_triggers(sync_start), []);
        assert_eq!(log.take_triggers(Instant::now()).len(), 1, "the later one");
    }
}
