//! One nftproxy per network namespace: `run` and `cleanup` hold an abstract UNIX socket.
//!
//! Two instances on one node would each believe they own nftproxy's tables and undo each
//! other's syncs. An abstract socket name belongs to the network namespace it was bound in
//! (a DaemonSet pod with `hostNetwork` binds it in the node's), so binding it is the lock:
//! the second bind fails with `EADDRINUSE`. The kernel releases the name when the holder
//! exits, however it exits (SIGKILL included), so no stale lock file is ever left behind.
//! The holder answers every connection with its process id, so the refusal can name it.

use std::io::{self, Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::time::Duration;

/// The abstract socket name (shown as `@nftproxy.instance` by `ss -xl`).
const NAME: &[u8] = b"nftproxy.instance";

/// How long the refusal waits for the holder to say who it is.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// Why this process may not run.
#[derive(Debug, thiserror::Error)]
pub enum InstanceLockError {
    #[error(
        "another nftproxy ({holder}) is already running in this network namespace; two \
         instances would undo each other's syncs. Stop it first (it leaves its rules in \
         place for the next instance)"
    )]
    Held { holder: String },
    #[error("cannot take the one-instance lock (abstract socket @{name}): {source}")]
    Io {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// The lock: held until the process exits (the answering thread keeps the socket open).
#[derive(Debug)]
pub struct InstanceLock {
    _listener: UnixListener,
}

impl InstanceLock {
    /// Takes the lock, or says which process holds it.
    pub fn acquire() -> Result<InstanceLock, InstanceLockError> {
        let address = address()?;
        match UnixListener::bind_addr(&address) {
            Ok(listener) => {
                answer_with_pid(listener.try_clone().map_err(io_error)?);
                Ok(InstanceLock {
                    _listener: listener,
                })
            }
            Err(err) if err.kind() == io::ErrorKind::AddrInUse => Err(InstanceLockError::Held {
                holder: holder_of(&address),
            }),
            Err(err) => Err(io_error(err)),
        }
    }
}

fn address() -> Result<SocketAddr, InstanceLockError> {
    SocketAddr::from_abstract_name(NAME).map_err(io_error)
}

fn io_error(source: io::Error) -> InstanceLockError {
    InstanceLockError::Io {
        name: String::from_utf8_lossy(NAME).into_owned(),
        source,
    }
}

/// Answers each connection with `pid N\n` on a thread of its own, for as long as the
/// process lives (the thread is never joined; the listener closes with the process).
fn answer_with_pid(listener: UnixListener) {
    let spawned = std::thread::Builder::new()
        .name("instance-lock".into())
        .spawn(move || {
            let answer = format!("pid {}\n", std::process::id());
            for mut stream in listener.incoming().flatten() {
                // A peer that does not read is not our problem: nothing waits on it.
                let _ = stream.set_write_timeout(Some(ASK_TIMEOUT));
                let _ = stream.write_all(answer.as_bytes());
            }
        });
    if let Err(err) = spawned {
        tracing::warn!("the one-instance lock cannot answer who holds it: {err}");
    }
}

/// What the holder says of itself (`pid N`), or why it could not be asked.
fn holder_of(address: &SocketAddr) -> String {
    let asked = UnixStream::connect_addr(address).and_then(|stream| {
        stream.set_read_timeout(Some(ASK_TIMEOUT))?;
        let mut answer = String::new();
        stream.take(64).read_to_string(&mut answer)?;
        Ok(answer)
    });
    match asked {
        Ok(answer) if answer.starts_with("pid ") => answer.trim().to_owned(),
        Ok(_) | Err(_) => "its process id is unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lock is per network namespace: a second acquire, even from the same process,
    /// is refused and names the holder. (That the name is freed when the holder is
    /// killed is shown by `controller/tests/run_manifests.rs`.)
    #[test]
    fn a_second_acquire_is_refused_naming_the_holder() {
        let _first = InstanceLock::acquire().expect("the lock is free in the test process");
        let message = InstanceLock::acquire()
            .expect_err("the lock is held")
            .to_string();
        assert!(
            message.contains(&format!("(pid {})", std::process::id())),
            "{message}"
        );
        assert!(message.contains("already running"), "{message}");
    }
}
