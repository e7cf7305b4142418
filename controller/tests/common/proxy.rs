//! `nftproxy run --manifests DIR` as a child process inside a test's network namespace,
//! with its JSON log lines collected so tests can wait for syncs and read what they did.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nftproxy_rules::Ruleset;
use serde_json::Value as Json;

use super::netns::NetNs;

/// One `synced` or `sync failed` log event.
#[derive(Debug, Clone)]
pub struct SyncEvent {
    /// `true` for "synced", `false` for "sync failed".
    pub ok: bool,
    /// `full` or `partial` (successes only).
    pub kind: String,
    pub operations: u64,
    /// How the transaction reached the kernel: `netlink`, `libnftables`, or `-` (none).
    pub via: String,
    /// The error text (failures only).
    pub error: String,
    /// When the test read the log line (the sync ended just before).
    pub seen: Instant,
    /// The sync's own snapshot, compile and apply times in milliseconds (successes only).
    pub snapshot_ms: f64,
    pub compile_ms: f64,
    pub apply_ms: f64,
    /// What reporting the sync (status, metrics, health checks) took before the log line.
    pub report_ms: f64,
}

pub use super::generated::nft_helper;

#[derive(Debug, Default)]
struct Log {
    lines: Vec<Json>,
    syncs: Vec<SyncEvent>,
    closed: bool,
}

/// A running `nftproxy run`; stopped with SIGTERM (and waited for) on drop.
#[derive(Debug)]
pub struct Proxy {
    child: Option<Child>,
    log: Arc<(Mutex<Log>, Condvar)>,
}

impl Proxy {
    /// Starts `nftproxy --log-format json run --manifests DIR --hostname node-1` in `ns`,
    /// with `extra` arguments (e.g. `--config FILE`).
    pub fn start(ns: &NetNs, manifests: &Path, extra: &[&str]) -> Proxy {
        let manifests = manifests.to_str().expect("UTF-8 path");
        let mut args = vec!["--manifests", manifests];
        args.extend(extra);
        Proxy::spawn(ns, &args)
    }

    /// Starts `nftproxy --log-format json run --hostname node-1 ARGS…` in `ns`.
    pub fn spawn(ns: &NetNs, args: &[&str]) -> Proxy {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_nftproxy")])
            .args(["--log-format", "json", "run", "--hostname", "node-1"])
            .args(args)
            .arg("--nft-helper")
            .arg(nft_helper())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("cannot start nftproxy run");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new((Mutex::new(Log::default()), Condvar::new()));
        let reader_log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let (lock, cv) = &*reader_log;
                let mut log = lock.lock().unwrap();
                let json: Json = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({"fields": {"message": line}}));
                if let Some(event) = sync_event(&json) {
                    log.syncs.push(event);
                }
                log.lines.push(json);
                cv.notify_all();
            }
            let (lock, cv) = &*reader_log;
            lock.lock().unwrap().closed = true;
            cv.notify_all();
        });
        Proxy {
            child: Some(child),
            log,
        }
    }

    /// Waits until at least `n` sync attempts were logged; panics with the log after
    /// `timeout`. Returns all attempts so far.
    pub fn wait_syncs(&self, n: usize, timeout: Duration) -> Vec<SyncEvent> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.log;
        let mut log = lock.lock().unwrap();
        while log.syncs.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero() && !log.closed,
                "waited for {n} syncs, got {:?}; log:\n{}",
                log.syncs,
                render(&log.lines)
            );
            log = cv.wait_timeout(log, left).unwrap().0;
        }
        log.syncs.clone()
    }

    /// Every sync attempt logged so far.
    pub fn syncs(&self) -> Vec<SyncEvent> {
        self.log.0.lock().unwrap().syncs.clone()
    }

    /// The log so far, one JSON object per line, for assertion messages.
    pub fn log_text(&self) -> String {
        render(&self.log.0.lock().unwrap().lines)
    }

    /// Log messages so far (the `message` field of each line).
    pub fn messages(&self) -> Vec<String> {
        let log = self.log.0.lock().unwrap();
        log.lines
            .iter()
            .filter_map(|l| l["fields"]["message"].as_str().map(str::to_owned))
            .collect()
    }

    /// Field `field` of the first log line whose message is `message`.
    pub fn field_of(&self, message: &str, field: &str) -> Option<Json> {
        let log = self.log.0.lock().unwrap();
        log.lines
            .iter()
            .find(|l| l["fields"]["message"] == message)
            .map(|l| l["fields"][field].clone())
    }

    /// The process id of `nftproxy` (`ip netns exec` execs it, keeping its own).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Waits up to `timeout` for the process to exit by itself; its exit status, or `None`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                // The log reader sees the pipe close right after; let it finish.
                let (lock, cv) = &*self.log;
                let log = lock.lock().unwrap();
                let _ = cv.wait_timeout_while(log, Duration::from_secs(2), |l| !l.closed);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends SIGTERM and waits for the process; returns whether it exited with status 0.
    pub fn stop(mut self) -> bool {
        self.terminate()
    }

    /// SIGKILL: the process dies wherever it is.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn sync_event(json: &Json) -> Option<SyncEvent> {
    let fields = &json["fields"];
    let message = fields["message"].as_str()?;
    if message == "synced" {
        return Some(SyncEvent {
            ok: true,
            kind: fields["kind"].as_str().unwrap_or_default().to_owned(),
            operations: fields["operations"].as_u64().unwrap_or_default(),
            via: fields["via"].as_str().unwrap_or_default().to_owned(),
            error: String::new(),
            seen: Instant::now(),
            snapshot_ms: fields["snapshot_ms"].as_f64().unwrap_or_default(),
            compile_ms: fields["compile_ms"].as_f64().unwrap_or_default(),
            apply_ms: fields["apply_ms"].as_f64().unwrap_or_default(),
            report_ms: fields["report_ms"].as_f64().unwrap_or_default(),
        });
    }
    let error = message.strip_prefix("sync failed: ")?;
    Some(SyncEvent {
        ok: false,
        kind: String::new(),
        operations: 0,
        via: String::new(),
        error: error.to_owned(),
        seen: Instant::now(),
        snapshot_ms: 0.0,
        compile_ms: 0.0,
        apply_ms: 0.0,
        report_ms: 0.0,
    })
}

fn render(lines: &[Json]) -> String {
    lines
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// What `compile` makes of the `*.yaml` files in `dir` for `hostname`, with the
/// KubeProxyConfiguration `config_text`: what `nftproxy run --manifests DIR` must program.
pub fn compiled_manifests(dir: &Path, config_text: &str, hostname: &str) -> Ruleset {
    use nftproxy_compiler::kube_proxy_config::KubeProxyConfiguration;
    use nftproxy_compiler::{ClusterSnapshot, compile, manifest};
    let mut snapshot = ClusterSnapshot::default();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        for decoded in manifest::decode(&text).expect("valid test manifests") {
            assert!(snapshot.push(decoded.object).is_none());
        }
    }
    let kube_proxy = KubeProxyConfiguration::from_yaml(config_text).unwrap();
    compile(&snapshot, &kube_proxy.compile_config(hostname).unwrap()).ruleset
}

/// nftproxy's tables as the kernel in `ns` lists them.
pub fn kernel_tables(ns: &NetNs) -> Ruleset {
    let tables = nftproxy_compiler::table_ids();
    Ruleset::from_nft_json(&ns.nft_list_json(), &tables).expect("the listing parses")
}

/// Waits (up to 15 s) until the kernel in `ns` holds `expected`; panics with both rulesets
/// and the proxy's log.
pub fn wait_kernel_equal(ns: &NetNs, expected: &Ruleset, proxy: &Proxy, what: &str) {
    wait_kernel_equal_within(ns, expected, proxy, what, Duration::from_secs(15));
}

/// [`wait_kernel_equal`] with a time limit of `limit`.
pub fn wait_kernel_equal_within(
    ns: &NetNs,
    expected: &Ruleset,
    proxy: &Proxy,
    what: &str,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        let kernel = kernel_tables(ns);
        if &kernel == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the kernel does not hold the compiled ruleset\n--- kernel ---\n{kernel}\n--- compiled ---\n{expected}\n--- log ---\n{}",
            proxy.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `nft delete element ip TABLE SET { ELEMENT }` inside `ns`, as someone tampering by hand,
/// in whichever of nftproxy's IPv4 tables (main or shard) holds it.
pub fn delete_element_by_hand(ns: &NetNs, set: &str, element: &str) {
    let element = format!("{{ {element} }}");
    for table in nftproxy_compiler::table_names() {
        let done = ns.exec(&["nft", "delete", "element", "ip", &table, set, &element]);
        if done.status.success() {
            return;
        }
    }
    panic!("no nftproxy table holds {element} in {set}");
}
