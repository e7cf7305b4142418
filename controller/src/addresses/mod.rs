//! The host's own addresses, kept current: listed at start, listed again on every change.
//!
//! kube-proxy's nftables mode takes the node addresses that `nodePortAddresses` CIDRs select
//! from the local interfaces, not only from the Node object, and re-syncs when they change.
//! The [`AddressWatcher`] lists the interface addresses of its network namespace (IPv4 and
//! IPv6, without loopback and link-local ones) and then waits for address events on a
//! route netlink socket on its own thread. On any event it lists them again and, when the
//! sorted, deduplicated list differs, stores it and calls its `on_change` (which wakes the
//! sync loop). Should the subscription fail, it lists them every [`POLL_FALLBACK`] instead.
//!
//! Both sockets are opened by [`AddressWatcher::start`] before its thread exists, so the
//! watcher acts in the network namespace of the thread that starts it.

pub mod netlink;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use self::netlink::AddressError;
use self::netlink::RouteSocket;

/// How often addresses are listed when address events cannot be subscribed to.
pub const POLL_FALLBACK: Duration = Duration::from_secs(5);
/// How long the thread blocks before it checks whether it should stop.
const WAKE: Duration = Duration::from_millis(250);
/// How long a dump may take before it is given up (and retried on the next event).
const DUMP_TIMEOUT: Duration = Duration::from_secs(5);

/// Watches the addresses of the network namespace it was started in; stops on drop.
#[derive(Debug)]
pub struct AddressWatcher {
    current: Arc<Mutex<Vec<IpAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How the thread learns that addresses may have changed.
#[derive(Debug)]
enum Trigger {
    Events(RouteSocket),
    Poll(Duration),
}

impl AddressWatcher {
    /// Lists the addresses, then watches them; `on_change` runs (on the watcher's thread)
    /// after each change has been stored.
    pub fn start(on_change: impl Fn() + Send + 'static) -> Result<Self, AddressError> {
        let trigger = match RouteSocket::subscribe(WAKE) {
            Ok(events) => Trigger::Events(events),
            Err(err) => {
                tracing::warn!(
                    "{err}; listing the local addresses every {POLL_FALLBACK:?} instead"
                );
                Trigger::Poll(POLL_FALLBACK)
            }
        };
        Self::start_with(trigger, on_change)
    }

    /// Like [`AddressWatcher::start`] without a subscription: lists every `interval`.
    #[cfg(test)]
    pub fn start_polling(
        interval: Duration,
        on_change: impl Fn() + Send + 'static,
    ) -> Result<Self, AddressError> {
        Self::start_with(Trigger::Poll(interval), on_change)
    }

    fn start_with(
        trigger: Trigger,
        on_change: impl Fn() + Send + 'static,
    ) -> Result<Self, AddressError> {
        // `trigger` is subscribed before this first listing: no change between them is missed.
        let mut dump = RouteSocket::open(DUMP_TIMEOUT)?;
        let current = Arc::new(Mutex::new(usable(dump.dump()?)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let current = Arc::clone(&current);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("addresses".into())
                .spawn(move || watch(trigger, dump, &current, &stop, &on_change))
                .map_err(AddressError::Thread)?
        };
        Ok(AddressWatcher {
            current,
            stop,
            thread: Some(thread),
        })
    }

    /// The current addresses: sorted, deduplicated, without loopback and link-local ones.
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for AddressWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The watcher thread: waits for a trigger, lists, stores and reports changes.
fn watch(
    mut trigger: Trigger,
    mut dump: RouteSocket,
    current: &Mutex<Vec<IpAddr>>,
    stop: &AtomicBool,
    on_change: &dyn Fn(),
) {
    let span = tracing::info_span!("addresses");
    let _entered = span.enter();
    while !stop.load(Ordering::Relaxed) {
        let maybe_changed = match &mut trigger {
            Trigger::Events(events) => match events.wait_for_events() {
                Ok(changed) => changed,
                Err(err) => {
                    tracing::warn!(
                        "{err}; listing the local addresses every {POLL_FALLBACK:?} instead"
                    );
                    trigger = Trigger::Poll(POLL_FALLBACK);
                    true
                }
            },
            Trigger::Poll(interval) => {
                sleep_unless_stopped(*interval, stop);
                true
            }
        };
        if !maybe_changed || stop.load(Ordering::Relaxed) {
            continue;
        }
        match dump.dump() {
            Ok(listed) => {
                let listed = usable(listed);
                if replace(current, &listed) {
                    tracing::info!(addresses = ?listed, "local addresses changed");
                    on_change();
                }
            }
            Err(err) => tracing::warn!("cannot list the local addresses: {err}"),
        }
    }
}

fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) {
    let deadline = Instant::now() + duration;
    while !stop.load(Ordering::Relaxed) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(WAKE));
    }
}

/// The addresses a node can be reached at: sorted, deduplicated, without loopback,
/// link-local, unspecified and multicast addresses.
pub fn usable(addresses: impl IntoIterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = addresses
        .into_iter()
        .filter(|ip| {
            !ip.is_loopback() && !ip.is_unspecified() && !ip.is_multicast() && !is_link_local(ip)
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_link_local(),
        IpAddr::V6(ip) => (ip.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Stores `listed` unless it equals what is stored; returns whether it changed.
fn replace(current: &Mutex<Vec<IpAddr>>, listed: &[IpAddr]) -> bool {
    let mut current = current.lock().unwrap_or_else(PoisonError::into_inner);
    if current.as_slice() == listed {
        return false;
    }
    *current = listed.to_vec();
    true
}

#[cfg(test)]
mod tests;
