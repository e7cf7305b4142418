//! Issue 6 ("Scale"), data path: the rate of new TCP connections from a pod to a ClusterIP
//! with 1, 10k and 30k services programmed on its node. A benchmark that prints figures
//! (BENCHMARKS.md), never a timed assertion.
//!
//! The client is a pod on node-1 and the endpoint another pod on node-1: the SYN enters
//! node-1 from the client's veth, so it takes the prerouting NAT path of real pod-to-service
//! traffic (every base chain of the main table and of each shard table), then forwarding and
//! postrouting. That is the most common service traffic; a NodePort from an external
//! client would add the LAN hop and masquerading but run the same shard chains.
//!
//! One thread drives both ends (see [`one_thread_connection_rate`]) and the server resets
//! each connection (see [`abort`]): the lab's own server (a thread answering with its name)
//! and a threaded accept-and-close server are measured once beside it, to the pod's address,
//! and are slower because every connection waits for a thread to be woken on this busy VM.
//!
//! The target service always has the same identity (so the same shard), and every service
//! has that same pod as its one endpoint, so that any service can be the target: the run at
//! the largest size also connects to a service in the first and in the last shard that
//! netfilter runs, which is what the shard layout costs per new connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod lab;

use std::fmt::Write as _;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::netns::{NetNs, kernel_tests_enabled};
use lab::{Format, Lab, Member, Node, at, cluster_cidr_config};

/// The port of the endpoint pod's listener that the measuring thread accepts from.
const SERVER_PORT: u16 = 9090;
/// The port of the threaded accept-and-close server (the lab's server keeps 8080).
const THREADED_PORT: u16 = 9191;
/// The target's ClusterIP, outside the range the filler services use (198.19.0–119.x).
const TARGET_VIP: &str = "198.19.200.1";
const SIZES: [usize; 3] = [1, 10_000, 30_000];
const ROUNDS: usize = 9;
const SHARD_ROUNDS: usize = 30;
const SHARD_MEASURE: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(2);

/// An accept-and-close server: one thread in the pod's namespace that accepts connections
/// and resets them at once (see [`abort`]), until dropped.
struct AcceptAndClose<'a> {
    ns: &'a NetNs,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl<'a> AcceptAndClose<'a> {
    fn start(ns: &'a NetNs) -> AcceptAndClose<'a> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = ns.spawn(move || {
            let listener = TcpListener::bind(("0.0.0.0", THREADED_PORT)).unwrap();
            ready_tx.send(()).unwrap();
            while !stopping.load(Ordering::Relaxed) {
                if let Ok((stream, _)) = listener.accept() {
                    abort(stream);
                }
            }
        });
        ready_rx
            .recv()
            .expect("the accept-and-close server started");
        AcceptAndClose {
            ns,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for AcceptAndClose<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // One more connection wakes the blocked accept.
        let _ = self
            .ns
            .run_inside(|| TcpStream::connect(("127.0.0.1", THREADED_PORT)).is_ok());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Closes `stream` with a reset (`SO_LINGER` 0) instead of a FIN, so the server keeps no
/// TIME_WAIT socket. Without this, a connection through the ClusterIP whose port matches a
/// TIME_WAIT socket left by a connection to the pod's own address is refused by PAWS (the
/// client's TCP timestamps are offset per destination address) and waits for a SYN
/// retransmission, 1 s: the first runs of this benchmark measured that, at ~200 conn/s.
#[allow(unsafe_code)]
fn abort(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the option value points to a live `linger` and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    drop(stream);
}

/// New connections per second from the calling thread's namespace to `to` during
/// `duration` with a separate server thread: connect, read until the server closes, close.
/// Returns (rate, failures).
fn connection_rate(to: SocketAddr, duration: Duration) -> (f64, usize) {
    let mut done = 0usize;
    let mut failures = 0usize;
    let mut buf = Vec::with_capacity(64);
    let start = Instant::now();
    while start.elapsed() < duration {
        match TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
            Ok(mut stream) => {
                buf.clear();
                let _ = stream.read_to_end(&mut buf);
                done += 1;
            }
            Err(_) => failures += 1,
        }
    }
    (done as f64 / start.elapsed().as_secs_f64(), failures)
}

/// Like [`connection_rate`], but the calling thread is also the server: it connects to
/// `to`, accepts the connection from `listener` (a socket of the endpoint pod, which the
/// SYN reached within the `connect` call: on veths the whole path runs in the sender's
/// softirq), resets the accepted socket (see [`abort`]) and closes its own. No thread has to be woken per connection, so the rate is the kernel's work for one
/// connection through the lab, not the scheduler's latency on a busy VM.
fn one_thread_connection_rate(
    listener: &TcpListener,
    to: SocketAddr,
    duration: Duration,
) -> (f64, usize) {
    listener.set_nonblocking(true).unwrap();
    let mut done = 0usize;
    let mut failures = 0usize;
    let start = Instant::now();
    while start.elapsed() < duration {
        let Ok(stream) = TcpStream::connect_timeout(&to, Duration::from_secs(1)) else {
            failures += 1;
            continue;
        };
        let waited = Instant::now();
        loop {
            match listener.accept() {
                Ok((accepted, _)) => {
                    abort(accepted);
                    done += 1;
                    break;
                }
                Err(_) if waited.elapsed() < Duration::from_secs(1) => std::thread::yield_now(),
                Err(_) => {
                    failures += 1;
                    break;
                }
            }
        }
        drop(stream);
    }
    (done as f64 / start.elapsed().as_secs_f64(), failures)
}

fn service(name: &str, vip: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: bench}}
spec:
  clusterIP: {vip}
  ports: [{{name: http, protocol: TCP, port: 80, targetPort: {SERVER_PORT}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: bench, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: http, protocol: TCP, port: {SERVER_PORT}}}]
endpoints:
- {{addresses: [198.18.1.10], conditions: {{ready: true}}, nodeName: node-1}}
---
"
    )
}

/// The filler services' ClusterIP: `198.19.(i / 250).(i % 250 + 1)`.
fn filler_vip(i: usize) -> String {
    format!("198.19.{}.{}", i / 250, i % 250 + 1)
}

/// `n` services: `n - 1` fillers and the target, all with the endpoint pod as endpoint.
fn manifests(n: usize) -> String {
    let mut text = String::new();
    for i in 0..n - 1 {
        text.push_str(&service(&format!("svc-{i}"), &filler_vip(i)));
    }
    text.push_str(&service("target", TARGET_VIP));
    text
}

/// The shard table whose `service-ips` holds `vip` port 80, read from the nft script.
fn shard_of(script: &str, vip: &str) -> String {
    let needle = format!("{vip} . tcp . 80 ");
    let mut table = String::new();
    for line in script.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("table ip ") {
            table = rest.trim_end_matches(" {").trim().to_owned();
        }
        if trimmed.starts_with("table ip6 ") {
            table.clear();
        }
        if trimmed.contains(&needle) && table.starts_with("nftproxy-") {
            return table;
        }
    }
    panic!("no shard holds {vip}:80")
}

/// The IPv4 shard tables in the order netfilter runs their NAT chains: the reverse of the
/// order the script creates them. A new hook is inserted *before* the hooks of the same
/// priority (`nf_hook_entries_grow`), so the chain registered last runs first. Checked on
/// this kernel with three tables whose NAT chains each count and `dnat`: only the last
/// created counted the SYN. (This kernel has no `nft list hooks` support to read it back.)
fn shard_run_order(script: &str) -> Vec<String> {
    let mut order = Vec::new();
    for line in script.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("table ip nftproxy-") {
            let table = format!("nftproxy-{}", rest.trim_end_matches(" {").trim());
            if !order.contains(&table) {
                order.push(table);
            }
        }
    }
    order.reverse();
    order
}

fn flush_conntrack(node: &NetNs) {
    let _ = node.exec(&["conntrack", "-F"]);
}

fn median_and_spread(samples: &mut [f64]) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    (
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1],
    )
}

/// Connections per second from pod `client` to `to`, with a server thread in pod `server`.
fn measure_threaded(lab: &Lab, to: SocketAddr) -> f64 {
    flush_conntrack(lab.node1());
    lab.ns(Member::Pod("client"))
        .run_inside(move || connection_rate(to, MEASURE))
        .0
}

/// Connections per second from pod `client` to `to`, one thread driving both ends
/// (`listener` is pod `server`'s socket on [`SERVER_PORT`]).
fn measure(lab: &Lab, listener: &Arc<TcpListener>, to: SocketAddr) -> (f64, usize) {
    measure_for(lab, listener, to, MEASURE)
}

/// [`measure`] during `duration`.
fn measure_for(
    lab: &Lab,
    listener: &Arc<TcpListener>,
    to: SocketAddr,
    duration: Duration,
) -> (f64, usize) {
    let listener = Arc::clone(listener);
    flush_conntrack(lab.node1());
    std::thread::sleep(Duration::from_millis(100));
    lab.ns(Member::Pod("client"))
        .run_inside(move || one_thread_connection_rate(&listener, to, duration))
}

#[test]
#[ignore = "benchmark: cargo test --release -p nftproxy --test scale_datapath -- --ignored --nocapture (root)"]
fn new_connection_rate_to_a_cluster_ip_stays_flat_from_1_to_30k_services() {
    if !kernel_tests_enabled(
        "new_connection_rate_to_a_cluster_ip_stays_flat_from_1_to_30k_services",
    ) {
        return;
    }
    let lab = Lab::builder()
        .pod("server", Node::One, 10)
        .pod("client", Node::One, 11)
        .build();
    let server = AcceptAndClose::start(lab.ns(Member::Pod("server")));
    let listener = Arc::new(
        lab.ns(Member::Pod("server"))
            .run_inside(|| TcpListener::bind(("0.0.0.0", SERVER_PORT)))
            .unwrap(),
    );
    let config = cluster_cidr_config();
    let scripts: Vec<(usize, String)> = SIZES
        .iter()
        .map(|&n| {
            let started = Instant::now();
            let compiled = lab::compile(&manifests(n), Some(&config), Format::Nft);
            println!(
                "{n} services: compiled in {:?}, {} bytes of nft script",
                started.elapsed(),
                compiled.output.len()
            );
            (n, compiled.output)
        })
        .collect();
    let target = at(&format!("{TARGET_VIP}:80"));

    // Which server limits the rate, 1 service loaded: the lab's server, a threaded
    // accept-and-close server and one thread driving both ends, straight to the pod.
    lab.load_ruleset(&scripts[0].1);
    let pod = lab.pod_ipv4("server");
    let lab_server = measure_threaded(&lab, SocketAddr::from((pod, 8080)));
    let threaded = measure_threaded(&lab, SocketAddr::from((pod, THREADED_PORT)));
    let (direct, _) = measure(&lab, &listener, SocketAddr::from((pod, SERVER_PORT)));
    let (via_vip, _) = measure(&lab, &listener, target);
    println!(
        "1 service loaded, to the pod's IP (no service NAT): lab server {lab_server:.0}/s, threaded accept-and-close server {threaded:.0}/s, one thread driving both ends {direct:.0}/s; to the ClusterIP, one thread: {via_vip:.0}/s"
    );

    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); SIZES.len()];
    let mut failures = vec![0usize; SIZES.len()];
    for round in 0..ROUNDS {
        for (k, (n, script)) in scripts.iter().enumerate() {
            let started = Instant::now();
            lab.load_ruleset(script);
            let load = started.elapsed();
            let (rate, failed) = measure(&lab, &listener, target);
            assert!(
                rate > 0.0,
                "no connection reached the target at {n} services"
            );
            println!(
                "round {round}: {n} services (loaded in {load:?}): {rate:.0} conn/s, {failed} failed"
            );
            rates[k].push(rate);
            failures[k] += failed;
        }
    }
    let (base, _, _) = median_and_spread(&mut rates[0].clone());
    let mut summary = String::new();
    for (k, n) in SIZES.iter().enumerate() {
        let (median, min, max) = median_and_spread(&mut rates[k]);
        writeln!(
            summary,
            "{n:>6} services: median {median:.0} conn/s (min {min:.0}, max {max:.0}, {ROUNDS} x {MEASURE:?}), ratio to 1 service {:.3}, {} failed",
            median / base,
            failures[k]
        )
        .unwrap();
    }
    println!("{summary}");

    // What the shards cost: at the largest size, a service in the shard netfilter runs
    // first against one in the shard it runs last.
    let (n, script) = scripts.last().unwrap();
    lab.load_ruleset(script);
    let order = shard_run_order(script);
    println!("shards in the order their NAT chains run: {order:?}");
    let target_shard = shard_of(script, TARGET_VIP);
    println!(
        "the target is in {target_shard}, run position {:?} (0-based) of {}",
        order.iter().position(|t| *t == target_shard),
        order.len()
    );
    let in_shard = |table: &str| {
        (0..n - 1)
            .map(filler_vip)
            .find(|vip| shard_of_fast(script, vip, table))
            .unwrap_or_else(|| panic!("no service in {table}"))
    };
    let shards: Vec<&String> = order.iter().collect();
    if shards.len() >= 2 {
        let first = in_shard(shards[0]);
        let last = in_shard(shards[shards.len() - 1]);
        let mut by_position = [Vec::new(), Vec::new()];
        // Same ruleset, nothing to reload: many short alternations.
        // Each pair in turn starts with the other, so neither gets a systematic head start.
        for round in 0..SHARD_ROUNDS {
            let pair = if round % 2 == 0 {
                [(0, &first), (1, &last)]
            } else {
                [(1, &last), (0, &first)]
            };
            for (k, vip) in pair {
                let to = at(&format!("{vip}:80"));
                let (rate, _) = measure_for(&lab, &listener, to, SHARD_MEASURE);
                by_position[k].push(rate);
            }
        }
        let (f, fmin, fmax) = median_and_spread(&mut by_position[0]);
        let (l, lmin, lmax) = median_and_spread(&mut by_position[1]);
        let per_conn_us = 1e6 / l - 1e6 / f;
        println!(
            "{n} services: {first} in the shard run first ({}) {f:.0} conn/s (min {fmin:.0}, max {fmax:.0}); {last} in the shard run last ({}) {l:.0} conn/s (min {lmin:.0}, max {lmax:.0}); medians of {SHARD_ROUNDS} x {SHARD_MEASURE:?}; {} more shard chains: {per_conn_us:+.2} us per connection ({:+.3} us per shard)",
            shards[0],
            shards[shards.len() - 1],
            shards.len() - 1,
            per_conn_us / (shards.len() - 1) as f64
        );
    }
    drop(server);
}

/// Whether `table` is the shard whose `service-ips` holds `vip` port 80.
fn shard_of_fast(script: &str, vip: &str, table: &str) -> bool {
    let header = format!("table ip {table} {{");
    let Some(start) = script.find(&header) else {
        return false;
    };
    let body = &script[start..];
    let end = body[header.len()..]
        .find("\ntable ")
        .map_or(body.len(), |e| e + header.len());
    body[..end].contains(&format!("{vip} . tcp . 80 "))
}
