//! The helper process: start it, exchange one frame each way, notice its death, restart it.
//!
//! A request goes to the helper at most twice. If the helper is found dead before the
//! request, a new one is started (that is the one restart of this call). If it dies during
//! the request, the request is sent again to a new helper only when that cannot apply
//! anything twice: when the helper cannot have read it whole (the write failed), or when
//! the request is harmless to repeat ([`Replay::Safe`]: pings, listings, deleting the
//! tables). A transaction that may or may not have been committed is never sent again; the
//! caller gets [`KernelError::HelperDied`] and its next full sync lists the kernel.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nftproxy_wire::{
    Format, Request, Response, WireError, read_response, write_request, write_run_with,
};

use super::KernelError;

/// How much of the helper's stderr is kept for an error report.
const STDERR_TAIL: usize = 16 * 1024;

/// How long a helper that closed its pipes (or was asked to stop) may take to exit before
/// it is killed.
const GRACE: Duration = Duration::from_secs(2);

/// What the kernel thread sends the helper: a request, or a `Run` whose commands are
/// rendered as they are sent (a full ruleset's script is never held as one string).
pub(super) enum Outgoing {
    Request(Request),
    Rendered {
        format: Format,
        commands: Arc<dyn fmt::Display + Send + Sync>,
    },
}

/// Whether a request may be sent again to a new helper after the first one died with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replay {
    /// Running it twice changes nothing more than running it once.
    Safe,
    /// Only if the dead helper cannot have read it (it may have been committed otherwise).
    OnlyIfUnsent,
}

/// How one exchange with a running helper failed.
enum Failure {
    /// Writing the request failed: the helper never had all of it.
    Unsent(WireError),
    /// The request was sent, but no (whole) response came back.
    Unanswered(WireError),
    /// The response is not a valid frame.
    Garbled(WireError),
}

/// A running helper process and its pipes.
struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Drains stderr (so the helper never blocks on it); returns its last bytes.
    stderr: Option<JoinHandle<String>>,
}

/// The helper program and, while one runs, its process.
#[derive(Debug)]
pub(super) struct Helper {
    path: PathBuf,
    process: Option<Process>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl Helper {
    pub(super) fn new(path: PathBuf) -> Helper {
        Helper {
            path,
            process: None,
        }
    }

    pub(super) fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.child.id())
    }

    /// Sends `request` and returns nft's output, restarting the helper at most once.
    pub(super) fn exchange(
        &mut self,
        request: &Outgoing,
        replay: Replay,
    ) -> Result<String, KernelError> {
        let mut restarted = false;
        if !self.is_running() {
            self.start()?;
            restarted = true;
        }
        loop {
            let failure = match self.send_receive(request) {
                Ok(Response::Ok(output)) => return Ok(output),
                Ok(Response::Err(message)) => return Err(KernelError::Refused { message }),
                Err(failure) => failure,
            };
            let (may_replay, error) = match failure {
                Failure::Unsent(e) => {
                    tracing::warn!("the nftables helper did not take the request: {e}");
                    (true, self.bury(GRACE))
                }
                Failure::Unanswered(e) => {
                    tracing::warn!("the nftables helper did not answer: {e}");
                    (replay == Replay::Safe, self.bury(GRACE))
                }
                Failure::Garbled(source) => {
                    self.bury(Duration::ZERO);
                    (false, KernelError::Protocol { source })
                }
            };
            if restarted || !may_replay {
                return Err(error);
            }
            tracing::warn!(%error, "nftables helper died during a request; sending it again");
            self.start()?;
            restarted = true;
        }
    }

    /// Whether a helper process is running (a dead one is reaped here).
    fn is_running(&mut self) -> bool {
        let Some(process) = self.process.as_mut() else {
            return false;
        };
        match process.child.try_wait() {
            Ok(None) => true,
            Ok(Some(_)) | Err(_) => {
                let error = self.bury(Duration::ZERO);
                tracing::warn!(%error, "nftables helper is gone; starting a new one");
                false
            }
        }
    }

    fn start(&mut self) -> Result<(), KernelError> {
        let start_error = |source| KernelError::StartHelper {
            path: self.path.clone(),
            source,
        };
        let mut child = Command::new(&self.path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(start_error)?;
        let pid = child.id();
        let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (Some(stdin), Some(stdout), Some(stderr)) = pipes else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(start_error(std::io::Error::other("a pipe is missing")));
        };
        let stderr = thread::Builder::new()
            .name("nftproxy-nft-stderr".into())
            .spawn(move || drain_stderr(stderr, pid))
            .ok();
        tracing::debug!(pid, path = %self.path.display(), "started the nftables helper");
        self.process = Some(Process {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            stderr,
        });
        Ok(())
    }

    fn send_receive(&mut self, request: &Outgoing) -> Result<Response, Failure> {
        let Some(process) = self.process.as_mut() else {
            return Err(Failure::Unsent(WireError::Closed));
        };
        let sent = match request {
            Outgoing::Request(request) => write_request(&mut process.stdin, request),
            // The helper runs nothing before the end marker, so a stream cut short is unsent.
            Outgoing::Rendered { format, commands } => {
                write_run_with(&mut process.stdin, *format, |out| write!(out, "{commands}"))
            }
        };
        sent.map_err(Failure::Unsent)?;
        read_response(&mut process.stdout).map_err(|e| match e {
            WireError::Closed | WireError::Truncated { .. } | WireError::Read(_) => {
                Failure::Unanswered(e)
            }
            other => Failure::Garbled(other),
        })
    }

    /// Ends the current process (killing it after `grace`) and describes its death.
    fn bury(&mut self, grace: Duration) -> KernelError {
        let Some(process) = self.process.take() else {
            return KernelError::HelperDied {
                status: "not running".into(),
                stderr: String::new(),
            };
        };
        let Process {
            mut child,
            stdin,
            stdout,
            stderr,
        } = process;
        drop((stdin, stdout));
        let status = reap(&mut child, grace);
        let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        KernelError::HelperDied { status, stderr }
    }

    /// Closes the helper's stdin, so that it exits, and waits for it.
    pub(super) fn stop(&mut self) {
        if self.process.is_some() {
            self.bury(GRACE);
        }
    }
}

/// Waits up to `grace` for `child` to exit, then kills it; describes how it ended.
fn reap(child: &mut Child, grace: Duration) -> String {
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.to_string(),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Ok(None) | Err(_) => break,
        }
    }
    let _ = child.kill();
    match child.wait() {
        Ok(status) => status.to_string(),
        Err(e) => format!("cannot wait for it: {e}"),
    }
}

/// Reads the helper's stderr to its end, logging each line; returns the last bytes.
fn drain_stderr(stderr: impl Read, pid: u32) -> String {
    let mut reader = BufReader::new(stderr);
    let mut tail = String::new();
    let mut bytes = Vec::new();
    loop {
        bytes.clear();
        match reader.read_until(b'\n', &mut bytes) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        let line = String::from_utf8_lossy(&bytes);
        let line = line.trim_end_matches('\n');
        tracing::warn!(pid, "nftproxy-nft: {line}");
        tail.push_str(line);
        tail.push('\n');
        if tail.len() > 2 * STDERR_TAIL {
            let cut = tail.len() - STDERR_TAIL;
            let cut = (cut..tail.len())
                .find(|&i| tail.is_char_boundary(i))
                .unwrap_or(tail.len());
            tail.drain(..cut);
        }
    }
    tail
}
