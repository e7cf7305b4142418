//! `nftproxy run --manifests DIR`: the cluster read from a directory, re-read when it changes.
//!
//! For standalone hosts, demos and tests without an API server. The directory is polled
//! (file list, sizes and modification times); on a change the files whose size or
//! modification time changed are read again, and the others keep the objects they gave. A
//! file that no longer decodes keeps contributing what it held when it last decoded, and
//! the error is logged with its file and line, so a broken edit never removes rules.
//! Objects are otherwise treated exactly as `nftproxy compile` treats them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use nftproxy_compiler::ClusterSnapshot;

use kube::Resource;

use crate::change_log::ChangeLog;
use crate::inputs::{self, Source as InputSource};
use crate::sync_loop::{Changes, Source};

/// One file's identity for change detection.
type Stamp = (PathBuf, u64, Option<SystemTime>);

/// The directory's objects, and what is needed to notice changes.
#[derive(Debug)]
pub struct ManifestSource {
    dir: PathBuf,
    state: Mutex<State>,
    log: Arc<ChangeLog>,
}

#[derive(Debug, Default)]
struct State {
    snapshot: Option<ClusterSnapshot>,
    stamps: Option<Vec<Stamp>>,
    files: inputs::FileCache,
}

impl ManifestSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ManifestSource {
            dir: dir.into(),
            state: Mutex::new(State::default()),
            log: Arc::default(),
        }
    }

    /// Reads the directory again if anything in it changed since the last read; returns
    /// whether the snapshot was replaced. An unreadable directory keeps the last snapshot.
    pub fn refresh(&self) -> bool {
        let stamps = match stamps(&self.dir) {
            Ok(stamps) => stamps,
            Err(err) => {
                tracing::error!(dir = %self.dir.display(), "cannot list the manifests: {err}");
                return false;
            }
        };
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.stamps.as_ref() == Some(&stamps) {
            return false;
        }
        let args = [self.dir.clone()];
        match inputs::load_keeping(&args, &mut state.files) {
            Ok((loaded, errors)) => {
                for error in errors {
                    tracing::error!("{error}; the file's previous content stays in use");
                }
                for warning in &loaded.warnings {
                    tracing::warn!("{warning}");
                }
                count_changes(&self.log, state.snapshot.as_ref(), &loaded.snapshot);
                state.snapshot = Some(loaded.snapshot);
                state.stamps = Some(stamps);
                true
            }
            Err(err) => {
                tracing::error!("cannot read the manifests: {err}");
                false
            }
        }
    }

    /// Polls the directory every `interval` on a thread of its own, bumping `changes` after
    /// each re-read, until the loop is stopped (checked at each poll).
    pub fn watch(
        self: Arc<Self>,
        changes: Arc<Changes>,
        interval: Duration,
    ) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("manifests".into())
            .spawn(move || {
                while !changes.stopped() {
                    if self.refresh() {
                        changes.bump();
                    }
                    std::thread::sleep(interval);
                }
            })
    }
}

impl Source for ManifestSource {
    fn snapshot(&self) -> Option<ClusterSnapshot> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.snapshot.clone()
    }

    fn change_log(&self) -> Option<Arc<ChangeLog>> {
        Some(Arc::clone(&self.log))
    }
}

/// Counts the Services and EndpointSlices that differ between `old` and `new` (added,
/// changed or removed), as watch events would have.
fn count_changes(log: &ChangeLog, old: Option<&ClusterSnapshot>, new: &ClusterSnapshot) {
    fn keyed<T: Resource>(objects: &[Arc<T>]) -> BTreeMap<(String, String), &Arc<T>> {
        let key = |o: &T| {
            (
                o.meta().namespace.clone().unwrap_or_default(),
                o.meta().name.clone().unwrap_or_default(),
            )
        };
        objects.iter().map(|o| (key(o), o)).collect()
    }
    fn differing<'a, T: PartialEq>(
        old: &BTreeMap<(String, String), &'a Arc<T>>,
        new: &BTreeMap<(String, String), &'a Arc<T>>,
    ) -> Vec<(Option<&'a T>, Option<&'a T>)> {
        let removed = old.iter().filter(|(k, _)| !new.contains_key(*k));
        let removed = removed.map(|(_, o)| (Some(Arc::as_ref(o)), None));
        // An unchanged file gives the same objects again: equal without a comparison.
        let same = |a: &Arc<T>, b: &Arc<T>| Arc::ptr_eq(a, b) || a == b;
        let changed = new
            .iter()
            .filter(|(k, n)| !old.get(*k).is_some_and(|o| same(o, n)));
        changed
            .map(|(k, n)| (old.get(k).map(|o| Arc::as_ref(o)), Some(Arc::as_ref(n))))
            .chain(removed)
            .collect()
    }
    let empty = ClusterSnapshot::default();
    let old = old.unwrap_or(&empty);
    let services = differing(&keyed(&old.services), &keyed(&new.services));
    services.iter().for_each(|_| log.service_changed());
    for (_, slice) in differing(&keyed(&old.endpoint_slices), &keyed(&new.endpoint_slices)) {
        log.endpoints_changed(slice.and_then(|s| s.trigger_time.as_deref()));
    }
}

/// The manifest files below `dir` with their sizes and modification times.
fn stamps(dir: &Path) -> Result<Vec<Stamp>, inputs::InputError> {
    let files = inputs::expand(&[dir.to_path_buf()])?;
    Ok(files
        .into_iter()
        .filter_map(|source| match source {
            InputSource::File(path) => {
                let meta = std::fs::metadata(&path).ok();
                let len = meta.as_ref().map_or(0, std::fs::Metadata::len);
                let modified = meta.and_then(|m| m.modified().ok());
                Some((path, len, modified))
            }
            InputSource::Stdin => None,
        })
        .collect())
}
