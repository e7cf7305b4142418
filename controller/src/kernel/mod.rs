//! The kernel's nftables, reached through the `nftproxy-nft` helper: apply, list, delete.
//!
//! nftproxy does not link libnftables, which is GPL-2.0-only. A separate program,
//! `nftproxy-nft` (crate `nftproxy-nft`), links it; [`Kernel`] runs that program and sends it
//! nft JSON through its stdin, in the frames of the `nftproxy-wire` crate, and reads nft's
//! output or error text back from its stdout. Every transaction is one request, which the
//! helper runs as one libnftables call: one netlink batch, all or nothing.
//!
//! One helper process at a time belongs to a dedicated thread; every call goes through that
//! thread, so calls never interleave. The helper, and any restart of it, is started from
//! that thread, which inherits the network namespace of the thread that called
//! [`Kernel::start`]: the helper always programs that namespace. When the helper has died,
//! the next call starts a new one (once per call; see [`helper`] for when a request is
//! sent again).

pub(crate) mod adopt;
pub mod batch;
mod canonical;
pub mod counters;
pub mod direct;
mod helper;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};

use nftproxy_rules::{Family, Op, ParseError, Ruleset, TableId, Transaction};
use nftproxy_wire::{Format, Request, WireError};
use serde_json::json;

use self::helper::{Helper, Outgoing, Replay};

/// The name of nftproxy's main tables (one per family, `ip` and `ip6`).
/// The helper program's file name.
pub const HELPER: &str = "nftproxy-nft";

/// This build's tables (main tables, then shards). [`Kernel`] lists and deletes these and
/// any other table named like them (`nftproxy-N`, from a build with more shards), nothing else.
pub fn tables() -> Vec<TableId> {
    nftproxy_compiler::table_ids()
}

/// Why a kernel operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// No helper path was given and none was found next to this program or in `$PATH`.
    #[error("cannot find the nftables helper `{HELPER}` next to {beside} or in $PATH")]
    FindHelper { beside: String },
    /// The helper program could not be started.
    #[error("cannot start the nftables helper {}: {source}", path.display())]
    StartHelper { path: PathBuf, source: io::Error },
    /// The helper exited or stopped answering; `stderr` is what it wrote there last.
    #[error("the nftables helper died ({status}){}", stderr_note(stderr))]
    HelperDied { status: String, stderr: String },
    /// The helper answered something that is not a valid frame; it was stopped.
    #[error("the nftables helper broke the protocol: {source}")]
    Protocol { source: WireError },
    /// nft or the kernel refused the commands; nothing changed. nft's own message.
    #[error("the kernel refused the transaction: {message}")]
    Refused { message: String },
    /// nft's listing is not JSON.
    #[error("nft's listing is not JSON: {source}")]
    ReadListing { source: serde_json::Error },
    /// nft's listing holds something the ruleset model cannot represent.
    #[error("cannot parse nft's listing: {source}")]
    ParseListing { source: ParseError },
    /// The thread that owns the helper is gone (it panicked).
    #[error("the thread that talks to the nftables helper is gone")]
    ThreadGone,
    /// The netlink dump of the namespace's tables failed.
    #[error("cannot list the tables over netlink: {0}")]
    ListTables(io::Error),
}

fn stderr_note(stderr: &str) -> String {
    let stderr = stderr.trim_end();
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; its stderr:\n{stderr}")
    }
}

/// How [`Kernel::list_expecting`] read the tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Listed {
    /// Tables found equal to the expected ones by netlink dumps.
    pub checked: usize,
    /// Tables listed through libnftables.
    pub listed: usize,
}

/// One call for the helper thread.
enum Call {
    Exchange {
        request: Outgoing,
        replay: Replay,
        reply: mpsc::SyncSender<Result<String, KernelError>>,
    },
    Pid {
        reply: mpsc::SyncSender<Option<u32>>,
    },
}

/// nftproxy's access to the kernel's nftables, through one helper process.
#[derive(Debug)]
pub struct Kernel {
    calls: Option<mpsc::Sender<Call>>,
    thread: Option<JoinHandle<()>>,
    helper: PathBuf,
    /// Sends partial syncs and finds which tables exist, in the namespace of the thread
    /// that started the kernel.
    netfilter: Mutex<direct::Netfilter>,
}

impl Kernel {
    /// Starts the helper (`helper`, else [`find_helper`]) on a dedicated thread and checks
    /// that it answers. The helper works in the calling thread's network namespace.
    pub fn start(helper: Option<&Path>) -> Result<Kernel, KernelError> {
        let path = find_helper(helper)?;
        let netfilter = direct::Netfilter::open().map_err(KernelError::ListTables)?;
        let (calls, queue) = mpsc::channel();
        let mut process = Helper::new(path.clone());
        let thread = thread::Builder::new()
            .name("nftproxy-kernel".into())
            .spawn(move || {
                for call in queue {
                    serve(&mut process, call);
                }
                process.stop();
            })
            .map_err(|source| KernelError::StartHelper {
                path: path.clone(),
                source,
            })?;
        let kernel = Kernel {
            calls: Some(calls),
            thread: Some(thread),
            helper: path,
            netfilter: Mutex::new(netfilter),
        };
        kernel.ping()?;
        Ok(kernel)
    }

    /// The helper program this kernel runs.
    pub fn helper_path(&self) -> &Path {
        &self.helper
    }

    /// The process id of the running helper, if one is running.
    pub fn helper_pid(&self) -> Option<u32> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Call::Pid { reply }).ok()?;
        answer.recv().ok().flatten()
    }

    /// A round trip through the helper (restarting it if it died).
    pub fn ping(&self) -> Result<(), KernelError> {
        self.exchange(Outgoing::Request(Request::Ping), Replay::Safe)
            .map(drop)
    }

    /// Sends `tx` as a netlink batch of nftproxy's own, without libnftables (see `batch`):
    /// every operation, or (on error) none. `declared` holds the declarations of the sets
    /// `tx` touches, searched in order.
    pub fn apply_batch(
        &self,
        tx: &Transaction,
        declared: &[&Ruleset],
    ) -> Result<(), direct::DirectError> {
        self.netfilter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(tx, declared)
    }

    /// Runs `tx` as one nft batch: every operation, or (on error) none. It goes to
    /// libnftables as an nft script: for a full ruleset libnftables reads that two to
    /// three times faster than the same commands as JSON (BENCHMARKS.md, "Scale").
    ///
    /// The script is rendered as it is sent, in chunks, from a copy of `tx` that shares its
    /// tables (see `Op::CreateTable`): nftproxy never holds the whole text.
    pub fn apply(&self, tx: &Transaction) -> Result<(), KernelError> {
        let request = Outgoing::Rendered {
            format: Format::Script,
            commands: Arc::new(tx.clone()),
        };
        self.exchange(request, Replay::OnlyIfUnsent).map(drop)
    }

    /// [`Kernel::apply`] with the commands as libnftables JSON (the scale harness
    /// measures both inputs).
    #[allow(dead_code, reason = "the scale harness compares the two inputs")]
    pub fn apply_json(&self, tx: &Transaction) -> Result<(), KernelError> {
        self.run_json(tx.to_json().to_string(), Replay::OnlyIfUnsent)
            .map(drop)
    }

    /// nftproxy's tables as the kernel has them; a table that does not exist is absent
    /// from the result (no tables: an empty ruleset). Other tables are never listed.
    #[allow(
        dead_code,
        reason = "tests and the scale harness list without expectations"
    )]
    pub fn list(&self) -> Result<Ruleset, KernelError> {
        self.list_expecting(&Ruleset::new())
            .map(|(ruleset, _)| ruleset)
    }

    /// [`Kernel::list`] for a kernel that probably holds `expected`: every table that
    /// netlink dumps show to be exactly as in `expected` is taken from there, and only the
    /// others are listed through libnftables (see `adopt`). Also says how many tables
    /// went which way.
    pub fn list_expecting(&self, expected: &Ruleset) -> Result<(Ruleset, Listed), KernelError> {
        let existing = self.existing_tables()?;
        // This build's tables in layout order, then any other table named like nftproxy's:
        // the shards of a build with more of them, which the diff then deletes.
        let mut ours: Vec<TableId> = tables()
            .into_iter()
            .filter(|id| existing.contains(id))
            .collect();
        let mut others: Vec<TableId> = existing
            .into_iter()
            .filter(|id| !ours.contains(id))
            .collect();
        others.sort();
        ours.extend(others);
        let checked = {
            let mut netfilter = self
                .netfilter
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            adopt::unchanged_tables(&mut netfilter, &ours, expected)
        };
        let mut ruleset = Ruleset::new();
        let mut listed = Listed::default();
        let mut unchecked = Vec::new();
        for id in ours {
            let unchanged = checked.iter().find(|u| u.table == id);
            let table = expected.table(&id).filter(|table| {
                unchanged.is_some_and(|u| self.interval_sets_unchanged(table, &u.interval_sets))
            });
            match table {
                Some(table) => {
                    ruleset.insert_table(table.clone());
                    listed.checked += 1;
                }
                None => unchecked.push(id),
            }
        }
        for id in unchecked {
            // nft 1.0.6 cannot list two tables in one call.
            let list = json!({"nftables": [{"list": {"table": {
                "family": id.family.keyword(), "name": id.name}}}]});
            let listing = self.run_json(list.to_string(), Replay::Safe)?;
            let table = parse_listing(&listing, std::slice::from_ref(&id))?;
            ruleset.tables.extend(table.tables);
            listed.listed += 1;
        }
        Ok((ruleset, listed))
    }

    /// Whether each of `table`'s interval sets `names` (which the netlink check leaves out)
    /// is in the kernel as in `table`: each set is listed alone through libnftables.
    fn interval_sets_unchanged(&self, table: &nftproxy_rules::Table, names: &[String]) -> bool {
        let id = table.id();
        names.iter().all(|name| {
            let list = json!({"nftables": [{"list": {"set": {
                "family": id.family.keyword(), "table": id.name, "name": name}}}]});
            let listed = self
                .run_json(list.to_string(), Replay::Safe)
                .and_then(|listing| parse_set_listing(&listing, &id));
            match listed {
                Ok(ruleset) => {
                    let held = ruleset.table(&id).and_then(|t| t.sets.get(name));
                    let same = held.is_some() && held == table.sets.get(name);
                    if !same {
                        tracing::debug!(table = %id, set = %name, "an interval set differs");
                    }
                    same
                }
                Err(err) => {
                    tracing::debug!(table = %id, set = %name, %err, "cannot list an interval set");
                    false
                }
            }
        })
    }

    /// Which of the namespace's `ip` and `ip6` tables are nftproxy's (any number of
    /// shards), from a netlink dump of the table names.
    pub fn existing_tables(&self) -> Result<Vec<TableId>, KernelError> {
        let mut netfilter = self
            .netfilter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let names = netfilter.table_names().map_err(KernelError::ListTables)?;
        Ok(names
            .into_iter()
            .filter_map(|(family, name)| {
                let family = match i32::from(family) {
                    libc::NFPROTO_IPV4 => Family::Ip,
                    libc::NFPROTO_IPV6 => Family::Ip6,
                    _ => return None,
                };
                nftproxy_compiler::is_table_name(&name).then(|| TableId::new(family, name))
            })
            .collect())
    }

    /// Deletes nftproxy's tables and nothing else (`nftproxy cleanup`); no error when there
    /// are none. One batch.
    pub fn delete_tables(&self) -> Result<(), KernelError> {
        let existing = self.existing_tables()?;
        if existing.is_empty() {
            return Ok(());
        }
        let mut tx = Transaction::new();
        for id in existing {
            tx.push(Op::DeleteTable(id));
        }
        self.run_json(tx.to_json().to_string(), Replay::Safe)
            .map(drop)
    }

    fn run_json(&self, commands: String, replay: Replay) -> Result<String, KernelError> {
        let request = Request::Run {
            format: Format::Json,
            commands,
        };
        self.exchange(Outgoing::Request(request), replay)
    }

    fn exchange(&self, request: Outgoing, replay: Replay) -> Result<String, KernelError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Call::Exchange {
            request,
            replay,
            reply,
        })?;
        answer.recv().map_err(|_| KernelError::ThreadGone)?
    }

    fn send(&self, call: Call) -> Result<(), KernelError> {
        let calls = self.calls.as_ref().ok_or(KernelError::ThreadGone)?;
        calls.send(call).map_err(|_| KernelError::ThreadGone)
    }
}

impl Drop for Kernel {
    /// Closes the helper's stdin (it exits at end of input) and waits for the thread.
    fn drop(&mut self) {
        drop(self.calls.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One call on the helper thread.
fn serve(helper: &mut Helper, call: Call) {
    match call {
        Call::Exchange {
            request,
            replay,
            reply,
        } => {
            let _ = reply.send(helper.exchange(&request, replay));
        }
        Call::Pid { reply } => {
            let _ = reply.send(helper.pid());
        }
    }
}

/// A `list set` listing of a set of table `id`, as a ruleset of that table (the listing
/// has no table item: one is put before the set).
fn parse_set_listing(listing: &str, id: &TableId) -> Result<Ruleset, KernelError> {
    let table = json!({"table": {"family": id.family.keyword(), "name": id.name}});
    parse_listing_with(listing, Some(table), std::slice::from_ref(id))
}

fn parse_listing(listing: &str, wanted: &[TableId]) -> Result<Ruleset, KernelError> {
    parse_listing_with(listing, None, wanted)
}

/// The tables `wanted` of a JSON listing, with `first` put before its items.
fn parse_listing_with(
    listing: &str,
    first: Option<serde_json::Value>,
    wanted: &[TableId],
) -> Result<Ruleset, KernelError> {
    let mut value: serde_json::Value =
        serde_json::from_str(listing).map_err(|source| KernelError::ReadListing { source })?;
    if let Some(first) = first
        && let Some(items) = value.get_mut("nftables").and_then(|v| v.as_array_mut())
    {
        items.insert(0, first);
    }
    Ruleset::from_nft_json(&value, wanted).map_err(|source| KernelError::ParseListing { source })
}

/// Where the helper is: `explicit` if given; else `nftproxy-nft` in the directory of the
/// running program (how nftproxy is packaged); else the first `nftproxy-nft` in `$PATH`.
pub fn find_helper(explicit: Option<&Path>) -> Result<PathBuf, KernelError> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned));
    if let Some(beside) = dir.as_ref().map(|d| d.join(HELPER)).filter(|p| p.is_file()) {
        return Ok(beside);
    }
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(HELPER))
            .find(|p| p.is_file())
    });
    in_path.ok_or_else(|| KernelError::FindHelper {
        beside: dir.map_or_else(
            || "the running program".to_owned(),
            |d| d.display().to_string(),
        ),
    })
}
