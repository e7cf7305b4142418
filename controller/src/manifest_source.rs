//! `nftproxy run --manifests DIR`: the cluster read from a directory, re-read when it changes.
//!
//! For standalone hosts, demos and tests without an API server. The directory is polled
//! (file list, sizes and modification times); on a change the files whose size or
//! modification time changed are read again, and the others keep the objects they gave. A
//! file that no longer decodes keeps contributing what it held when it last decoded, and
//! the error is logged with its file and line, so a broken edit never removes rules.
//! Objects are otherwise treated exactly as `nftproxy compile` treats them.

use std::cmp::Ordering;
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
    let empty = ClusterSnapshot::default();
    let old = old.unwrap_or(&empty);
    differing(&old.services, &new.services, |_| log.service_changed());
    differing(&old.endpoint_slices, &new.endpoint_slices, |slice| {
        log.endpoints_changed(slice.and_then(|s| s.trigger_time.as_deref()));
    });
}

/// An object's namespace and name, as the snapshot's lists are sorted by them.
fn identity<T: Resource>(object: &T) -> (&str, &str) {
    let meta = object.meta();
    let namespace = meta.namespace.as_deref().unwrap_or("default");
    (namespace, meta.name.as_deref().unwrap_or_default())
}

/// Calls `changed` with the new object (`None` when removed) of every identity that was
/// added, changed or removed from `old` to `new`: both lists sorted by identity without
/// duplicates, as `inputs` makes them, so one walk side by side finds them without an
/// index of either (20k entries at 10k Services, at each change).
fn differing<T: Resource + PartialEq>(
    old: &[Arc<T>],
    new: &[Arc<T>],
    mut changed: impl FnMut(Option<&T>),
) {
    debug_assert!(old.is_sorted_by_key(|o| identity(&**o)));
    debug_assert!(new.is_sorted_by_key(|n| identity(&**n)));
    let (mut old, mut new) = (old.iter().peekable(), new.iter().peekable());
    loop {
        let order = match (old.peek(), new.peek()) {
            (Some(o), Some(n)) => identity(&***o).cmp(&identity(&***n)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => return,
        };
        match order {
            Ordering::Less => {
                old.next();
                changed(None);
            }
            Ordering::Greater => changed(new.next().map(|n| &**n)),
            Ordering::Equal => {
                let (Some(o), Some(n)) = (old.next(), new.next()) else {
                    return;
                };
                // An unchanged file gives the same objects again: equal without a comparison.
                if !(Arc::ptr_eq(o, n) || o == n) {
                    changed(Some(&**n));
                }
            }
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use k8s_openapi::api::core::v1::{Service, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn service(namespace: &str, name: &str, ip: &str) -> Arc<Service> {
        Arc::new(Service {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        })
    }

    fn name(s: Option<&Service>) -> String {
        s.map_or("removed".into(), |s| s.metadata.name.clone().unwrap())
    }

    #[test]
    fn added_changed_and_removed_objects_are_found_by_walking_both_sorted_lists() {
        let kept = service("a", "kept", "10.0.0.1");
        let old = vec![
            service("a", "edited", "10.0.0.3"),
            Arc::clone(&kept),
            service("a", "same", "10.0.0.2"),
            service("b", "gone", "10.0.0.4"),
        ];
        let new = vec![
            service("a", "edited", "10.0.0.9"),
            kept,
            service("a", "same", "10.0.0.2"),
            service("a", "zadded", "10.0.0.5"),
            service("c", "added", "10.0.0.6"),
        ];
        let mut seen = Vec::new();
        differing(&old, &new, |s| seen.push(name(s)));
        assert_eq!(seen, ["edited", "zadded", "removed", "added"]);
        let mut none = Vec::new();
        differing(&new, &new, |s| none.push(name(s)));
        assert!(none.is_empty());
        let mut all = Vec::new();
        differing(&[], &new, |s| all.push(name(s)));
        assert_eq!(all.len(), new.len());
    }
}
