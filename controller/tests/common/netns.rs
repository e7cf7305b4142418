//! Throwaway network namespaces for kernel tests: created per test, deleted on drop.
//!
//! Every kernel test works inside namespaces it made itself, never on the host's ruleset or
//! network. Code that must run *inside* a namespace (servers, clients) runs on a thread
//! that switched its own network namespace with `setns`, so no helper binary is needed.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Whether kernel tests can run. Without root they are skipped with a message, unless
/// `NFTPROXY_REQUIRE_ROOT_TESTS=1` (CI), where skipping is a failure.
pub fn kernel_tests_enabled(test: &str) -> bool {
    let required = std::env::var("NFTPROXY_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1");
    let missing = missing_prerequisite();
    match missing {
        None => true,
        Some(why) if required => {
            panic!("{test}: kernel test cannot run ({why}) but NFTPROXY_REQUIRE_ROOT_TESTS=1")
        }
        Some(why) => {
            eprintln!("skipping {test}: {why} (set NFTPROXY_REQUIRE_ROOT_TESTS=1 to fail instead)");
            false
        }
    }
}

fn missing_prerequisite() -> Option<String> {
    if !is_root() {
        return Some("needs root for network namespaces and nftables".into());
    }
    for tool in ["ip", "nft"] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// A network namespace that exists for the lifetime of this value.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace named `nftp-TAG-PID-N` with loopback up.
    pub fn new(tag: &str) -> NetNs {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("nftp-{tag}-{}-{n}", std::process::id());
        run_checked(Command::new("ip").args(["netns", "add", &name]));
        let ns = NetNs { name };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace and returns its output, whatever its status.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {args:?} in {}: {e}", self.name))
    }

    /// Runs a command inside the namespace; panics with its stderr if it fails.
    pub fn exec_ok(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        run_checked(&mut cmd)
    }

    /// Feeds `input` to `nft -f -` (or `nft -j -f -` when `json`) inside the namespace.
    pub fn nft_load(&self, input: &str, json: bool) -> Result<(), String> {
        self.nft_from_stdin(&[], input, json)
    }

    /// `nft -c -f -`: checks the input against the kernel without committing it.
    pub fn nft_check(&self, input: &str, json: bool) -> Result<(), String> {
        self.nft_from_stdin(&["-c"], input, json)
    }

    fn nft_from_stdin(&self, flags: &[&str], input: &str, json: bool) -> Result<(), String> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, "nft"]).args(flags);
        if json {
            cmd.arg("-j");
        }
        cmd.args(["-f", "-"]);
        let output = run_with_stdin(&mut cmd, input);
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// `nft -j list ruleset` inside the namespace, parsed.
    pub fn nft_list_json(&self) -> serde_json::Value {
        let out = self.exec_ok(&["nft", "-j", "list", "ruleset"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("nft -j output is not JSON: {e}"))
    }

    /// Runs `f` on a new thread whose network namespace is this one.
    pub fn spawn<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            enter_netns(&path);
            f()
        })
    }

    /// Runs `f` inside this namespace (on a helper thread) and waits for its result.
    pub fn run_inside<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        match self.spawn(f).join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Moves the calling thread into the network namespace at `path`.
#[allow(unsafe_code)]
fn enter_netns(path: &str) {
    let file = File::open(path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
    // SAFETY: `file` is an open namespace file descriptor that outlives the call; setns
    // only changes the calling thread's network namespace and reads no memory of ours.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "setns({path}) failed: {}",
        std::io::Error::last_os_error()
    );
}

fn run_checked(cmd: &mut Command) -> String {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("cannot write to {cmd:?}: {e}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("cannot wait for {cmd:?}: {e}"))
}
