//! Issue 6 ("Scale"), memory: the peak resident set of `nftproxy run --manifests DIR` at
//! 10k services × 10 endpoints, through the first full sync and a few endpoint changes, and
//! that of its `nftproxy-nft` helper. A benchmark that prints figures (BENCHMARKS.md),
//! never a timed assertion.
//!
//! A sampler reads the process's `VmRSS` every 20 ms, so the peak can be placed in a phase
//! of the first sync: reading the manifests, then the sync's snapshot, compile and apply
//! (their durations come from the sync's log line, which ends them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::netns::{NetNs, kernel_tests_enabled};
use common::process::status_kib;
use common::proxy::Proxy;

const SERVICES: usize = 10_000;
const ENDPOINTS: usize = 10;
const CHANGES: usize = 5;

const NODE: &str = "apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDRs: [198.18.1.0/24]}
status:
  addresses: [{type: InternalIP, address: 198.51.100.1}]
";

const CONFIG: &str = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: nftables\ndetectLocalMode: ClusterCIDR\nclusterCIDR: 198.18.0.0/16\nnftables: {minSyncPeriod: 0s, syncPeriod: 1h}\n";

/// Service `name` at `vip` port 80 -> 8080 with the given endpoint addresses.
fn service(name: &str, vip: &str, endpoints: &[String]) -> String {
    let mut text = format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: bench}}
spec:
  clusterIP: {vip}
  selector: {{app: {name}}}
  ports: [{{name: http, protocol: TCP, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: bench, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: http, protocol: TCP, port: 8080}}]
endpoints:
"
    );
    for (j, address) in endpoints.iter().enumerate() {
        let node = if j == 0 { "node-1" } else { "node-2" };
        writeln!(
            text,
            "- {{addresses: [{address}], conditions: {{ready: true}}, nodeName: {node}}}"
        )
        .unwrap();
    }
    text.push_str("---\n");
    text
}

/// Pod address number `k` in 198.18.0.0/16 (1..=250 in each /24, wrapping).
fn pod_ip(k: usize) -> String {
    format!("198.18.{}.{}", (k / 250) % 256, k % 250 + 1)
}

/// The 10k services, in one file.
fn services() -> String {
    let mut text = String::new();
    for i in 0..SERVICES {
        let vip = format!("198.19.{}.{}", i / 250, i % 250 + 1);
        let endpoints: Vec<String> = (0..ENDPOINTS).map(|j| pod_ip(i * ENDPOINTS + j)).collect();
        text.push_str(&service(&format!("svc-{i}"), &vip, &endpoints));
    }
    text
}

/// The service the test changes, with `n` endpoints.
fn churn(n: usize) -> String {
    let endpoints: Vec<String> = (0..n).map(|j| format!("198.18.250.{}", j + 1)).collect();
    service("churn", "198.19.250.1", &endpoints)
}

/// `VmHWM` and `VmRSS` of `pid`, in KiB.
fn memory_of(pid: u32) -> (u64, u64) {
    let field = |name| status_kib(pid, name).expect("the process is running");
    (field("VmHWM"), field("VmRSS"))
}

/// `VmRSS` of `pid` in KiB after asking its C allocator to give back every free page
/// (`malloc_trim(0)` called through gdb, when gdb is installed): what is live, as opposed
/// to what glibc keeps after a peak. `None` without gdb.
fn rss_after_malloc_trim(pid: u32) -> Option<u64> {
    let output = std::process::Command::new("gdb")
        .args(["-p", &pid.to_string(), "-batch", "-nx"])
        .args(["-ex", "call (int) malloc_trim(0)"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    Some(memory_of(pid).1)
}

fn parent_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Samples `VmRSS` of `pid` every 20 ms until stopped.
struct Sampler {
    samples: Arc<Mutex<Vec<(Instant, u64)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&samples), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Some(rss) = status_kib(pid, "VmRSS") else {
                    return;
                };
                s.lock().unwrap().push((Instant::now(), rss));
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Sampler {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    /// The largest sample in `[from, to)` and the last sample before `to`, in KiB.
    fn between(&self, from: Instant, to: Instant) -> (u64, u64) {
        let samples = self.samples.lock().unwrap();
        let mut inside = samples.iter().filter(|(t, _)| *t >= from && *t < to);
        let max = inside.clone().map(|(_, r)| *r).max().unwrap_or_default();
        let last = inside.next_back().map(|(_, r)| *r).unwrap_or_default();
        (max, last)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn wait_for_helper_pid(proxy: &Proxy) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(pid) = proxy
            .field_of("nftables helper started", "pid")
            .and_then(|p| p.as_u64())
            .filter(|p| *p > 0)
        {
            return u32::try_from(pid).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no helper pid logged:\n{}",
            proxy.log_text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
#[ignore = "benchmark: cargo build --release -p nftproxy-nft, then cargo test --release -p nftproxy --test scale_memory -- --ignored --nocapture (root)"]
fn peak_memory_of_run_at_10k_services_times_10_endpoints() {
    if !kernel_tests_enabled("peak_memory_of_run_at_10k_services_times_10_endpoints") {
        return;
    }
    let ns = NetNs::new("scale-mem");
    let dir = tempfile::tempdir().unwrap();
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("config.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    write(dir.path(), "node.yaml", NODE);
    let text = services();
    println!(
        "{SERVICES} services x {ENDPOINTS} endpoints: {} MiB of YAML",
        text.len() / (1 << 20)
    );
    write(dir.path(), "services.yaml", &text);
    drop(text);
    write(dir.path(), "churn.yaml", &churn(ENDPOINTS));

    let started = Instant::now();
    let proxy = Proxy::start(&ns, dir.path(), &["--config", config.to_str().unwrap()]);
    let helper = wait_for_helper_pid(&proxy);
    let pid = parent_of(helper);
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(
        comm.trim(),
        "nftproxy",
        "the helper's parent is not nftproxy"
    );
    let sampler = Sampler::start(pid);

    let first = proxy.wait_syncs(1, Duration::from_secs(600));
    assert!(first[0].ok, "{}", proxy.log_text());
    let sync = &first[0];
    let ms = |v: f64| Duration::from_secs_f64(v / 1000.0);
    let apply_start = sync.seen - ms(sync.report_ms) - ms(sync.apply_ms);
    let compile_start = apply_start - ms(sync.compile_ms);
    let snapshot_start = compile_start - ms(sync.snapshot_ms);
    let (hwm, rss) = memory_of(pid);
    println!(
        "first full sync after {:?} (snapshot {:.0} ms, compile {:.0} ms, apply {:.0} ms): nftproxy VmHWM {:.1} MiB, VmRSS {:.1} MiB",
        sync.seen - started,
        sync.snapshot_ms,
        sync.compile_ms,
        sync.apply_ms,
        mib(hwm),
        mib(rss)
    );
    for (phase, from, to) in [
        ("reading the manifests", started, snapshot_start),
        ("snapshot", snapshot_start, compile_start),
        ("compile", compile_start, apply_start),
        ("apply and report", apply_start, sync.seen),
    ] {
        let (max, last) = sampler.between(from, to);
        println!(
            "  {phase:<22} sampled RSS max {:.1} MiB, at its end {:.1} MiB",
            mib(max),
            mib(last)
        );
    }

    for change in 0..CHANGES {
        let before = proxy.syncs().len();
        // Different sizes, so the directory poll sees a new file size as well as a new mtime.
        write(dir.path(), "churn.yaml", &churn(ENDPOINTS - 1 - change % 3));
        let syncs = proxy.wait_syncs(before + 1, Duration::from_secs(120));
        let sync = &syncs[before];
        assert!(sync.ok, "{}", proxy.log_text());
        let (hwm, rss) = memory_of(pid);
        println!(
            "change {change}: {} sync, {} operations, compile {:.1} ms, apply {:.1} ms: VmHWM {:.1} MiB, VmRSS {:.1} MiB",
            sync.kind,
            sync.operations,
            sync.compile_ms,
            sync.apply_ms,
            mib(hwm),
            mib(rss)
        );
    }
    drop(sampler);
    let (hwm, rss) = memory_of(pid);
    let (helper_hwm, helper_rss) = memory_of(helper);
    println!(
        "nftproxy run at {SERVICES} services x {ENDPOINTS} endpoints, after the first sync and {CHANGES} changes: nftproxy VmHWM {:.1} MiB, VmRSS {:.1} MiB; nftproxy-nft helper VmHWM {:.1} MiB, VmRSS {:.1} MiB",
        mib(hwm),
        mib(rss),
        mib(helper_hwm),
        mib(helper_rss)
    );
    let trimmed = |pid| rss_after_malloc_trim(pid).map(|kib| format!("{:.1} MiB", mib(kib)));
    println!(
        "VmRSS after malloc_trim(0) (gdb): nftproxy {:?}, nftproxy-nft helper {:?}",
        trimmed(pid),
        trimmed(helper)
    );
    assert!(proxy.stop(), "nftproxy did not stop cleanly");
}
