//! One sync: compile the cluster, diff against what the kernel holds, apply one transaction.
//!
//! A [`Syncer`] compiles incrementally (only the Services that changed) and remembers the
//! ruleset it last applied, patched after each success with just what the transaction
//! touched. An incremental sync diffs against that memory and never lists the kernel; a full sync (the first one, every one after a failure,
//! and whenever the loop asks for one) lists nftproxy's tables once and diffs against the
//! listing, which repairs drift and makes a restart adopt the previous instance's rules
//! without touching what is already right. A transaction the kernel refuses changes nothing
//! (one netlink batch is all or nothing); the syncer then forgets its memory so the next
//! sync is full.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nftproxy_compiler::{ClusterSnapshot, CompileConfig, Compiled, IncrementalCompiler};
use nftproxy_rules::{Op, Ruleset, Transaction, diff};
use thiserror::Error;

/// The kernel as a sync sees it: nftproxy's tables, listed and changed atomically.
pub trait Target {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Applies `transaction` as one batch: all of it or nothing.
    fn apply(&mut self, transaction: &Transaction) -> Result<(), Self::Error>;

    /// Applies the transaction of a partial sync, which turns `current` (what the kernel
    /// holds) into `desired`. A target may take a faster route for these; by default the
    /// same as [`Target::apply`].
    fn apply_partial(
        &mut self,
        transaction: &Transaction,
        current: &Ruleset,
        desired: &Ruleset,
    ) -> Result<Route, Self::Error> {
        let _ = (current, desired);
        self.apply(transaction).map(|()| Route::Libnftables)
    }

    /// nftproxy's tables as the kernel holds them (absent tables are simply missing).
    /// `expected` is what the sync is about to apply, which a restart usually finds in
    /// place already; a target may use it to read the kernel faster, never to return
    /// anything the kernel does not hold.
    /// `Ok(None)` when the tables exist but their content cannot be read back into the
    /// model (someone added something nftproxy never writes): the sync then replaces them.
    fn list(&mut self, expected: &Ruleset) -> Result<Option<Ruleset>, Self::Error>;
}

/// How a transaction reached the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Through libnftables (the `nftproxy-nft` helper).
    Libnftables,
    /// As a netlink batch nftproxy encoded itself.
    Netlink,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Libnftables => "libnftables",
            Route::Netlink => "netlink",
        }
    }
}

/// Full (listed the kernel first) or partial (diffed against the last applied ruleset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    Full,
    Partial,
}

impl SyncKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncKind::Full => "full",
            SyncKind::Partial => "partial",
        }
    }
}

/// What one successful sync did.
#[derive(Debug, Clone)]
pub struct SyncReport {
    pub kind: SyncKind,
    /// Object-level operations of the transaction (0 when nothing changed).
    pub operations: usize,
    /// nft commands sent (0 when nothing changed: no batch is sent at all).
    pub commands: usize,
    /// Whether the tables were unreadable and so replaced as a whole.
    pub replaced: bool,
    /// How the transaction was sent (`None` when nothing changed).
    pub route: Option<Route>,
    /// Copying the cluster out of the sources (set by the loop, which takes the snapshot).
    pub snapshot_time: Duration,
    pub compile_time: Duration,
    pub apply_time: Duration,
    pub total_time: Duration,
    /// What was applied (empty when nothing changed), for `/debug/transaction`. Whoever
    /// keeps it should free a large one off the sync's path.
    pub transaction: Arc<Transaction>,
}

/// Why a sync failed. After any of these the next sync is full.
#[derive(Debug, Error)]
pub enum SyncError<E: std::error::Error + 'static> {
    #[error("listing nftproxy's tables failed: {0}")]
    List(#[source] E),
    #[error("the compiled ruleset cannot be diffed: {0}")]
    Diff(#[from] nftproxy_rules::DiffError),
    #[error("the kernel refused the transaction ({operations} operations): {source}")]
    Apply {
        operations: usize,
        #[source]
        source: E,
    },
}

/// What [`converge`] did.
struct Converged {
    kind: SyncKind,
    transaction: Transaction,
    replaced: bool,
    route: Option<Route>,
    apply_time: Duration,
}

/// Compiles, diffs and applies; remembers what the kernel holds after each success.
#[derive(Debug)]
pub struct Syncer<T> {
    target: T,
    config: CompileConfig,
    /// Keeps the last compile's result, so that the next compiles only what changed.
    compiler: IncrementalCompiler,
    /// What the kernel holds, as far as this syncer knows; `None` forces a full sync.
    applied: Option<Ruleset>,
}

impl<T: Target> Syncer<T> {
    pub fn new(target: T, config: CompileConfig) -> Self {
        Syncer {
            target,
            config,
            compiler: IncrementalCompiler::new(),
            applied: None,
        }
    }

    /// The configuration the next compile uses.
    pub fn config(&self) -> &CompileConfig {
        &self.config
    }

    /// The configuration, to change before a sync (the node's addresses, say).
    pub fn config_mut(&mut self) -> &mut CompileConfig {
        &mut self.config
    }

    /// Whether the next sync will be full.
    pub fn next_is_full(&self) -> bool {
        self.applied.is_none()
    }

    /// The last compile's result (diagnostics, health checks) for whoever reports on it.
    pub fn last_compiled(&self) -> Option<&Compiled> {
        self.compiler.current()
    }

    #[cfg(test)]
    pub fn target_mut(&mut self) -> &mut T {
        &mut self.target
    }

    /// One sync of `snapshot`; full when `full` is set or the syncer has no memory.
    pub fn sync(
        &mut self,
        snapshot: &ClusterSnapshot,
        full: bool,
    ) -> Result<SyncReport, SyncError<T::Error>> {
        if full {
            self.applied = None;
        }
        let started = Instant::now();
        let desired = &self.compiler.compile(snapshot, &self.config).ruleset;
        let compile_time = started.elapsed();
        let result = converge(&mut self.target, &mut self.applied, desired);
        let Converged {
            kind,
            transaction,
            replaced,
            route,
            apply_time,
        } = result?;
        let report = SyncReport {
            kind,
            operations: transaction.object_operations(),
            commands: transaction.len(),
            replaced,
            route,
            snapshot_time: Duration::ZERO,
            compile_time,
            apply_time,
            total_time: started.elapsed(),
            transaction: Arc::new(transaction),
        };
        Ok(report)
    }
}

/// Brings the kernel to `desired` and `applied` with it; on failure `applied` is `None`.
fn converge<T: Target>(
    target: &mut T,
    applied: &mut Option<Ruleset>,
    desired: &Ruleset,
) -> Result<Converged, SyncError<T::Error>> {
    let (kind, current) = match applied.take() {
        Some(current) => (SyncKind::Partial, Some(current)),
        None => (
            SyncKind::Full,
            target.list(desired).map_err(SyncError::List)?,
        ),
    };
    let (transaction, replaced) = match &current {
        Some(current) => (diff(current, desired)?, false),
        None => (replace_tables(desired)?, true),
    };
    let started = Instant::now();
    let route = if transaction.is_empty() {
        None
    } else {
        let sent = match (&current, kind) {
            (Some(current), SyncKind::Partial) => {
                target.apply_partial(&transaction, current, desired)
            }
            _ => target.apply(&transaction).map(|()| Route::Libnftables),
        };
        match sent {
            Ok(route) => Some(route),
            Err(source) => {
                drop_in_background(current);
                return Err(SyncError::Apply {
                    operations: transaction.object_operations(),
                    source,
                });
            }
        }
    };
    let apply_time = started.elapsed();
    // The kernel now holds `desired`. A clone shares its tables' contents (copy on write,
    // see `rules::digest`), so what the compiler holds and what the kernel was given cost
    // the memory of one ruleset plus what later compiles change.
    *applied = Some(desired.clone());
    drop_in_background(current.filter(|_| transaction.len() > LARGE_TRANSACTION));
    Ok(Converged {
        kind,
        transaction,
        replaced,
        route,
        apply_time,
    })
}

/// Commands above which a transaction is freed off the sync's path.
pub const LARGE_TRANSACTION: usize = 10_000;

/// Frees `value` on a short-lived thread, off the sync's path (freeing a 10k-service
/// ruleset takes tens of milliseconds). When no thread can be started, the closure and so
/// the value are freed right here.
pub fn drop_in_background<V: Send + 'static>(value: Option<V>) {
    if let Some(value) = value {
        let _ = std::thread::Builder::new()
            .name("free".into())
            .spawn(move || drop(value));
    }
}

/// A transaction that deletes nftproxy's tables whatever they hold (adding each first, so
/// the delete cannot fail on an absent table) and creates `desired`, in one batch.
fn replace_tables(desired: &Ruleset) -> Result<Transaction, nftproxy_rules::DiffError> {
    let mut transaction = Transaction::new();
    for table in desired.tables.values() {
        transaction.push(Op::AddTable(table.declaration()));
        transaction.push(Op::DeleteTable(table.id()));
    }
    let create = diff(&Ruleset::new(), desired)?;
    transaction.ops.extend(create.ops);
    Ok(transaction)
}
