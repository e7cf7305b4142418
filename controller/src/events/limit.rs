//! Rate limits of the Event publisher: once per (object, message) per interval, a global token bucket.
//!
//! Time is passed in (`now`), so the tests drive a clock of their own.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use nftproxy_compiler::{Diagnostic, ObjectRef};

/// What identifies one event: the object a diagnostic names and its message. The severity
/// is left out: a message does not change meaning with it.
pub type Key = (ObjectRef, String);

/// The limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// At most one event per (object, message) within this interval.
    pub per_key_interval: Duration,
    /// Global token bucket: this many events at once…
    pub burst: u32,
    /// …then this many per second.
    pub per_second: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_key_interval: Duration::from_secs(5 * 60),
            burst: 25,
            per_second: 1.0,
        }
    }
}

/// Why a diagnostic did not become an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The same (object, message) was posted less than `per_key_interval` ago.
    Repeated,
    /// The global token bucket was empty.
    Global,
}

/// A token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(burst: u32, per_second: f64, now: Instant) -> Self {
        let burst = f64::from(burst);
        Self {
            tokens: burst,
            burst,
            per_second,
            last: now,
        }
    }

    /// Takes a token if there is one at `now`.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Decides which diagnostics of each sync become events: those that are new (not in the
/// previous sync's set) and pass both limits. A diagnostic that persists is not posted
/// again; one that goes away and comes back is, once the interval has passed.
#[derive(Debug)]
pub struct EventLimiter {
    limits: Limits,
    bucket: TokenBucket,
    /// The keys of the previous call.
    present: HashSet<Key>,
    /// When each key was last posted (entries older than the interval are forgotten).
    posted: HashMap<Key, Instant>,
}

impl EventLimiter {
    pub fn new(limits: Limits, now: Instant) -> Self {
        Self {
            limits,
            bucket: TokenBucket::new(limits.burst, limits.per_second, now),
            present: HashSet::new(),
            posted: HashMap::new(),
        }
    }

    /// Takes the diagnostics of one sync at `now`. Returns those to post now and those
    /// dropped by a limit, in the order given (a diagnostic listed twice counts once).
    pub fn admit<'d>(
        &mut self,
        current: impl IntoIterator<Item = &'d Diagnostic>,
        now: Instant,
    ) -> (Vec<&'d Diagnostic>, Vec<(&'d Diagnostic, Dropped)>) {
        let interval = self.limits.per_key_interval;
        self.posted
            .retain(|_, at| now.saturating_duration_since(*at) < interval);
        let mut present = HashSet::new();
        let mut post = Vec::new();
        let mut dropped = Vec::new();
        for diagnostic in current {
            let key = (diagnostic.object.clone(), diagnostic.message.clone());
            if present.contains(&key) {
                continue;
            }
            if !self.present.contains(&key) {
                if self.posted.contains_key(&key) {
                    dropped.push((diagnostic, Dropped::Repeated));
                } else if self.bucket.take(now) {
                    self.posted.insert(key.clone(), now);
                    post.push(diagnostic);
                } else {
                    dropped.push((diagnostic, Dropped::Global));
                }
            }
            present.insert(key);
        }
        self.present = present;
        (post, dropped)
    }
}

/// Lets a repeated warning through at most once per interval, counting the ones held back.
#[derive(Debug)]
pub struct WarnLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a warning may be logged at `now`, with the number held back since the
    /// previous one; `None` when this one is held back.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nftproxy_compiler::Severity;

    fn diag(name: &str, message: &str) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            object: ObjectRef::new("Service", Some("default"), name),
            message: message.into(),
        }
    }

    fn names(post: &[&Diagnostic]) -> Vec<String> {
        post.iter()
            .map(|d| format!("{}:{}", d.object.name, d.message))
            .collect()
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_new_diagnostic_is_posted_once_while_it_persists() {
        let t0 = Instant::now();
        let mut limiter = EventLimiter::new(Limits::default(), t0);
        let a = diag("a", "bad");
        let (post, dropped) = limiter.admit([&a], t0);
        assert_eq!(names(&post), ["a:bad"]);
        assert!(dropped.is_empty());
        for minutes in [1, 10, 60] {
            let (post, dropped) = limiter.admit([&a], t0 + 60 * minutes * SECOND);
            assert!(post.is_empty() && dropped.is_empty(), "{minutes} min");
        }
    }

    #[test]
    fn another_message_or_object_is_another_event() {
        let t0 = Instant::now();
        let mut limiter = EventLimiter::new(Limits::default(), t0);
        let (a, b, c) = (diag("a", "bad"), diag("a", "worse"), diag("b", "bad"));
        assert_eq!(names(&limiter.admit([&a], t0).0), ["a:bad"]);
        let (post, _) = limiter.admit([&a, &b, &c, &c], t0 + SECOND);
        assert_eq!(names(&post), ["a:worse", "b:bad"]);
    }

    #[test]
    fn a_diagnostic_that_comes_back_waits_for_the_interval() {
        let t0 = Instant::now();
        let limits = Limits::default();
        let mut limiter = EventLimiter::new(limits, t0);
        let a = diag("a", "bad");
        assert_eq!(limiter.admit([&a], t0).0.len(), 1);
        assert!(limiter.admit([], t0 + SECOND).0.is_empty());
        let (post, dropped) = limiter.admit([&a], t0 + 2 * SECOND);
        assert!(post.is_empty());
        assert_eq!(dropped, [(&a, Dropped::Repeated)]);
        // Gone and back once more, after the interval: posted again.
        assert!(limiter.admit([], t0 + 3 * SECOND).0.is_empty());
        let later = t0 + limits.per_key_interval;
        assert_eq!(names(&limiter.admit([&a], later).0), ["a:bad"]);
    }

    #[test]
    fn the_global_bucket_allows_a_burst_then_one_per_second() {
        let t0 = Instant::now();
        let limits = Limits {
            burst: 3,
            ..Limits::default()
        };
        let mut limiter = EventLimiter::new(limits, t0);
        let all: Vec<Diagnostic> = (0..5).map(|i| diag(&format!("s{i}"), "bad")).collect();
        let (post, dropped) = limiter.admit(&all, t0);
        assert_eq!(names(&post), ["s0:bad", "s1:bad", "s2:bad"]);
        assert_eq!(
            dropped.iter().map(|d| d.1).collect::<Vec<_>>(),
            [Dropped::Global, Dropped::Global]
        );
        // Dropped ones are not retried while they persist; new ones get the refill.
        let more: Vec<Diagnostic> = (5..8).map(|i| diag(&format!("s{i}"), "bad")).collect();
        let current: Vec<&Diagnostic> = all.iter().chain(&more).collect();
        let (post, dropped) = limiter.admit(current.iter().copied(), t0 + 2 * SECOND);
        assert_eq!(names(&post), ["s5:bad", "s6:bad"]);
        assert_eq!(dropped.len(), 1);
    }

    #[test]
    fn the_bucket_refills_up_to_its_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(2, 1.0, t0);
        assert!(bucket.take(t0) && bucket.take(t0) && !bucket.take(t0));
        assert!(!bucket.take(t0 + SECOND / 2));
        assert!(bucket.take(t0 + SECOND));
        let later = t0 + 3600 * SECOND;
        assert!(bucket.take(later) && bucket.take(later) && !bucket.take(later));
        // A clock that goes backwards takes nothing extra.
        assert!(!bucket.take(t0));
    }

    #[test]
    fn warnings_are_let_through_once_per_interval_with_the_count_held_back() {
        let t0 = Instant::now();
        let mut warn = WarnLimiter::new(60 * SECOND);
        assert_eq!(warn.allow(t0), Some(0));
        assert_eq!(warn.allow(t0 + SECOND), None);
        assert_eq!(warn.allow(t0 + 59 * SECOND), None);
        assert_eq!(warn.allow(t0 + 60 * SECOND), Some(2));
        assert_eq!(warn.allow(t0 + 61 * SECOND), None);
    }
}
