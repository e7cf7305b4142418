//! Address filtering and change detection, and the watcher against the kernel (root, in
//! throwaway network namespaces).
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicUsize;

use super::*;

fn ips(values: &[&str]) -> Vec<IpAddr> {
    values.iter().map(|v| v.parse().unwrap()).collect()
}

#[test]
fn loopback_link_local_and_unusable_addresses_are_left_out() {
    let listed = ips(&[
        "127.0.0.1",
        "127.0.1.1",
        "::1",
        "169.254.3.4",
        "fe80::1",
        "febf::1",
        "0.0.0.0",
        "224.0.0.1",
        "ff02::1",
        "198.51.100.1",
        "2001:db8:51::1",
        "fec0::1",
    ]);
    assert_eq!(
        usable(listed),
        ips(&["198.51.100.1", "2001:db8:51::1", "fec0::1"])
    );
}

#[test]
fn addresses_are_sorted_and_deduplicated() {
    let listed = ips(&[
        "2001:db8::2",
        "198.51.100.11",
        "198.51.100.1",
        "198.51.100.11",
    ]);
    assert_eq!(
        usable(listed),
        ips(&["198.51.100.1", "198.51.100.11", "2001:db8::2"])
    );
}

#[test]
fn only_a_different_list_counts_as_a_change() {
    let current = Mutex::new(ips(&["198.51.100.1"]));
    assert!(!replace(&current, &ips(&["198.51.100.1"])));
    assert!(replace(&current, &ips(&["198.51.100.1", "198.51.100.11"])));
    assert_eq!(
        *current.lock().unwrap(),
        ips(&["198.51.100.1", "198.51.100.11"])
    );
    assert!(replace(&current, &[]));
    assert!(current.lock().unwrap().is_empty());
}

/// Whether the kernel tests can run: root and `ip`. Without them they are skipped, unless
/// `NFTPROXY_REQUIRE_ROOT_TESTS=1`, where that is a failure.
fn kernel_tests_enabled(test: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    });
    let ip = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok();
    if root && ip {
        return true;
    }
    let required = std::env::var("NFTPROXY_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: needs root and `ip`, and NFTPROXY_REQUIRE_ROOT_TESTS=1"
    );
    eprintln!("skipping {test}: needs root and `ip`");
    false
}

/// A network namespace with a veth pair `v0`/`v1`, both up; deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let ns = Netns(format!("nftp-addr-{}-{n}", std::process::id()));
        ip(&["netns", "add", &ns.0]);
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
        ns.ip(&["link", "set", "v0", "up"]);
        ns.ip(&["link", "set", "v1", "up"]);
        ns
    }

    /// `ip -n NS ARGS…`; panics unless it succeeds.
    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend(args);
        ip(&all);
    }

    /// Starts a watcher inside this namespace (from a thread that entered it).
    fn watcher(&self, trigger: Option<Duration>) -> (AddressWatcher, Arc<AtomicUsize>) {
        let path = format!("/run/netns/{}", self.0);
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let on_change = move || {
            counter.fetch_add(1, Ordering::SeqCst);
        };
        let watcher = std::thread::spawn(move || {
            let file = File::open(&path).unwrap();
            // SAFETY: `file` is an open namespace descriptor that outlives the call; setns
            // only changes this thread's network namespace and reads no memory of ours.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            match trigger {
                None => AddressWatcher::start(on_change),
                Some(interval) => AddressWatcher::start_polling(interval, on_change),
            }
        })
        .join()
        .unwrap()
        .unwrap();
        (watcher, calls)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits up to `within` for the watcher to hold `expected`; returns how long it took.
fn wait_for(watcher: &AddressWatcher, expected: &[IpAddr], within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let got = watcher.addresses();
        if got == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "after {within:?} the watcher holds {got:?}, not {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_watcher_reports_an_added_and_a_removed_address_within_a_second() {
    if !kernel_tests_enabled("the_watcher_reports_an_added_and_a_removed_address_within_a_second") {
        return;
    }
    let ns = Netns::new();
    // The links' fe80:: addresses exist already and are left out.
    let (watcher, calls) = ns.watcher(None);
    assert!(watcher.addresses().is_empty());
    ns.ip(&["addr", "add", "198.51.100.11/24", "dev", "v0"]);
    wait_for(&watcher, &ips(&["198.51.100.11"]), Duration::from_secs(1));
    ns.ip(&["addr", "add", "2001:db8:51::11/64", "dev", "v1", "nodad"]);
    wait_for(
        &watcher,
        &ips(&["198.51.100.11", "2001:db8:51::11"]),
        Duration::from_secs(1),
    );
    ns.ip(&["addr", "del", "198.51.100.11/24", "dev", "v0"]);
    wait_for(&watcher, &ips(&["2001:db8:51::11"]), Duration::from_secs(1));
    assert_eq!(calls.load(Ordering::SeqCst), 3, "one call per change");
}

#[test]
fn the_watcher_ignores_addresses_of_another_namespace() {
    if !kernel_tests_enabled("the_watcher_ignores_addresses_of_another_namespace") {
        return;
    }
    let watched = Netns::new();
    let other = Netns::new();
    let (watcher, calls) = watched.watcher(None);
    other.ip(&["addr", "add", "198.51.100.12/24", "dev", "v0"]);
    other.ip(&["addr", "add", "2001:db8:51::12/64", "dev", "v0", "nodad"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(watcher.addresses().is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // The watcher is alive: its own namespace's change is seen.
    watched.ip(&["addr", "add", "198.51.100.11/24", "dev", "v0"]);
    wait_for(&watcher, &ips(&["198.51.100.11"]), Duration::from_secs(1));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn without_a_subscription_the_watcher_polls() {
    if !kernel_tests_enabled("without_a_subscription_the_watcher_polls") {
        return;
    }
    let ns = Netns::new();
    ns.ip(&["addr", "add", "198.51.100.11/24", "dev", "v0"]);
    let (watcher, calls) = ns.watcher(Some(Duration::from_millis(100)));
    assert_eq!(
        watcher.addresses(),
        ips(&["198.51.100.11"]),
        "listed at start"
    );
    ns.ip(&["addr", "add", "198.51.100.12/24", "dev", "v0"]);
    wait_for(
        &watcher,
        &ips(&["198.51.100.11", "198.51.100.12"]),
        Duration::from_secs(1),
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
