//! Input manifests: expanding INPUT arguments into files, decoding them, and remembering
//! where every object came from (file and line) so diagnostics can point at it.
//!
//! Directories are walked recursively; only `*.yaml`, `*.yml` and `*.json` files are read,
//! in sorted path order, and hidden entries (`.git`, a ConfigMap volume's `..data`) are
//! skipped. A file named explicitly is read whatever its extension; `-` is stdin.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::networking::v1::ServiceCIDR;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use nftproxy_compiler::CompactSlice;
use nftproxy_compiler::manifest::{self, Decoded, Object, OtherObject};
use nftproxy_compiler::{ClusterSnapshot, ObjectRef};

/// Where an object was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file as the user named it (or `<stdin>`), shared by its objects.
    pub file: Arc<str>,
    /// 1-based line of the object's first line.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Everything read from the INPUT arguments.
#[derive(Debug, Default)]
pub struct Inputs {
    pub snapshot: ClusterSnapshot,
    /// Where each object of the snapshot was decoded ([`load`] only; empty from
    /// [`load_keeping`]).
    pub origins: BTreeMap<ObjectRef, Origin>,
    /// Formatted warning lines about the input itself (unknown kinds, duplicates).
    pub warnings: Vec<String>,
}

/// Why the input cannot be used (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("<stdin>: cannot read: {0}")]
    Stdin(std::io::Error),
    #[error("`-` (stdin) can be given only once")]
    StdinTwice,
    #[error("{file}:{line}: {message}")]
    Decode {
        file: String,
        line: usize,
        message: String,
    },
}

/// One source of manifest text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

impl Source {
    /// The name used in messages.
    pub fn display_name(&self) -> String {
        match self {
            Source::Stdin => "<stdin>".to_owned(),
            Source::File(p) => p.display().to_string(),
        }
    }

    fn read(&self) -> Result<String, InputError> {
        match self {
            Source::Stdin => {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(InputError::Stdin)?;
                Ok(text)
            }
            Source::File(p) => std::fs::read_to_string(p).map_err(|source| InputError::Read {
                path: p.clone(),
                source,
            }),
        }
    }

    /// A file's size and modification time (`None` for stdin, or when unknown).
    fn stamp(&self) -> Option<Stamp> {
        let Source::File(path) = self else {
            return None;
        };
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.len(), meta.modified().ok()?))
    }

    /// Reads and decodes the source.
    fn decode(&self, file: &str) -> Result<Vec<(usize, Shared)>, InputError> {
        let text = self.read()?;
        let decoded = manifest::decode(&text).map_err(|e| InputError::Decode {
            file: file.to_owned(),
            line: e.line,
            message: e.message,
        })?;
        Ok(decoded
            .into_iter()
            .map(|Decoded { line, object }| (line, Shared::from(object)))
            .collect())
    }
}

/// A file's size and modification time, taken before it is read.
type Stamp = (u64, SystemTime);

/// A decoded object as the snapshot holds it: shared, so a file that did not change
/// contributes the very objects it gave before, not copies.
#[derive(Debug, Clone)]
enum Shared {
    Service(Arc<Service>),
    EndpointSlice(Arc<CompactSlice>),
    Endpoints(Arc<Endpoints>),
    Node(Arc<Node>),
    ServiceCidr(Arc<ServiceCIDR>),
    Other(Arc<OtherObject>),
}

impl From<Object> for Shared {
    fn from(object: Object) -> Self {
        match object {
            Object::Service(o) => Shared::Service(Arc::from(o)),
            Object::EndpointSlice(o) => Shared::EndpointSlice(Arc::from(o)),
            Object::Endpoints(o) => Shared::Endpoints(Arc::from(o)),
            Object::Node(o) => Shared::Node(Arc::from(o)),
            Object::ServiceCidr(o) => Shared::ServiceCidr(Arc::from(o)),
            Object::Other(o) => Shared::Other(Arc::new(o)),
        }
    }
}

/// What each file held when it last decoded, with the stamp it had when it was read: a
/// long-running reader reads again only the files whose stamp changed.
#[derive(Debug, Default)]
pub struct FileCache {
    files: BTreeMap<String, CachedFile>,
}

#[derive(Debug)]
struct CachedFile {
    stamp: Option<Stamp>,
    objects: Vec<(usize, Shared)>,
}

/// Expands INPUT arguments into sources, in argument order (directory contents sorted).
pub fn expand(args: &[PathBuf]) -> Result<Vec<Source>, InputError> {
    let mut sources = Vec::new();
    let mut stdin_seen = false;
    for arg in args {
        if arg.as_os_str() == "-" {
            if stdin_seen {
                return Err(InputError::StdinTwice);
            }
            stdin_seen = true;
            sources.push(Source::Stdin);
            continue;
        }
        let meta = std::fs::metadata(arg).map_err(|source| InputError::Read {
            path: arg.clone(),
            source,
        })?;
        if meta.is_dir() {
            let mut files = Vec::new();
            walk(arg, &mut files)?;
            files.sort();
            sources.extend(files.into_iter().map(Source::File));
        } else {
            sources.push(Source::File(arg.clone()));
        }
    }
    Ok(sources)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), InputError> {
    let read_err = |source| InputError::Read {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        // `metadata` follows symlinks, as a user listing the directory would expect.
        let meta = std::fs::metadata(&path).map_err(|source| InputError::Read {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(&path, files)?;
        } else if is_manifest(&path) {
            files.push(path);
        }
    }
    Ok(())
}

fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
}

/// Reads every source and decodes it into one snapshot, recording where objects came from.
pub fn load(args: &[PathBuf]) -> Result<Inputs, InputError> {
    let mut collector = Collector::default();
    for source in expand(args)? {
        let text = source.read()?;
        let name = source.display_name();
        let decoded = manifest::decode(&text).map_err(|e| InputError::Decode {
            file: name.clone(),
            line: e.line,
            message: e.message,
        })?;
        let file = Arc::from(name);
        for Decoded { line, object } in decoded {
            collector.add(&file, line, object);
        }
    }
    Ok(collector.finish(Origins::Keep))
}

/// Like [`load`] for a long-running reader. A file whose size and modification time are
/// those it had when it last decoded is not read again: it contributes the objects it gave
/// then (`cache`, updated here). A file that cannot be read or decoded does not stop the
/// others: it contributes what it held when it last decoded, and its error is returned
/// beside the inputs, so one broken edit never removes what the file programmed before.
/// Leaves [`Inputs::origins`] empty.
pub fn load_keeping(
    args: &[PathBuf],
    cache: &mut FileCache,
) -> Result<(Inputs, Vec<InputError>), InputError> {
    let mut collector = Collector::default();
    let mut errors = Vec::new();
    let sources = expand(args)?;
    let names: Vec<String> = sources.iter().map(Source::display_name).collect();
    cache.files.retain(|file, _| names.contains(file));
    for (source, file) in sources.iter().zip(names) {
        // Taken before reading: a write after it changes the stamp, so it is read next time.
        let stamp = source.stamp();
        let cached = cache.files.get(&file);
        let objects = match cached.filter(|c| stamp.is_some() && c.stamp == stamp) {
            Some(unchanged) => unchanged.objects.clone(),
            None => match source.decode(&file) {
                Ok(objects) => {
                    let kept = CachedFile {
                        stamp,
                        objects: objects.clone(),
                    };
                    cache.files.insert(file.clone(), kept);
                    objects
                }
                Err(err) => {
                    errors.push(err);
                    cached.map(|c| c.objects.clone()).unwrap_or_default()
                }
            },
        };
        let file = Arc::from(file);
        collector.objects.reserve(objects.len());
        for (line, object) in objects {
            collector.add_shared(&file, line, object);
        }
    }
    // `run` logs diagnostics by object and never looks an origin up: building the map
    // of every object's FILE:LINE at each change would be work for nothing.
    Ok((collector.finish(Origins::Drop), errors))
}

/// Whether [`Inputs::origins`] is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origins {
    Keep,
    Drop,
}

/// Objects gathered from all sources, in input order; [`Collector::finish`] keeps one per
/// identity (a later duplicate wins, with a warning) and sorts them, so the snapshot does
/// not depend on input order. Nothing is copied per object: `run --manifests` gathers
/// every object again at each change (a map keyed by owned names cost some 5 MB at 10k
/// Services, each time).
#[derive(Debug, Default)]
struct Collector {
    objects: Vec<(Origin, &'static str, Shared)>,
    warnings: Vec<String>,
}

impl Shared {
    /// The object's metadata; `None` for a kind nftproxy does not read.
    fn metadata(&self) -> Option<&ObjectMeta> {
        match self {
            Shared::Service(o) => Some(&o.metadata),
            Shared::EndpointSlice(o) => Some(&o.metadata),
            Shared::Endpoints(o) => Some(&o.metadata),
            Shared::Node(o) => Some(&o.metadata),
            Shared::ServiceCidr(o) => Some(&o.metadata),
            Shared::Other(_) => None,
        }
    }
}

/// An object's kind and metadata, as the collector holds it.
type Identity<'a> = (&'static str, Option<&'a str>, Option<&'a str>);

fn is_namespaced(kind: &str) -> bool {
    !matches!(kind, "Node" | "ServiceCIDR")
}

/// An object's identity: kind, namespace (namespaced kinds only) and name, as written.
fn identity<'a>(kind: &'static str, object: &'a Shared) -> Identity<'a> {
    let Some(meta) = object.metadata() else {
        return (kind, None, None);
    };
    let namespace = is_namespaced(kind).then(|| meta.namespace.as_deref().unwrap_or("default"));
    (kind, namespace, meta.name.as_deref())
}

/// The compiler's reference to an object (names escaped as its diagnostics print them).
fn reference(kind: &'static str, object: &Shared) -> Option<ObjectRef> {
    let meta = object.metadata()?;
    Some(nftproxy_compiler::object_ref(
        kind,
        meta,
        is_namespaced(kind),
    ))
}

impl Collector {
    fn add(&mut self, file: &Arc<str>, line: usize, object: Object) {
        self.add_shared(file, line, Shared::from(object));
    }

    fn add_shared(&mut self, file: &Arc<str>, line: usize, object: Shared) {
        let origin = Origin {
            file: Arc::clone(file),
            line,
        };
        let kind = match &object {
            Shared::Service(_) => "Service",
            Shared::EndpointSlice(_) => "EndpointSlice",
            Shared::Endpoints(_) => "Endpoints",
            Shared::Node(_) => "Node",
            Shared::ServiceCidr(_) => "ServiceCIDR",
            Shared::Other(other) => {
                self.warnings.push(other_kind_warning(&origin, other));
                return;
            }
        };
        self.objects.push((origin, kind, object));
    }

    fn finish(mut self, origins: Origins) -> Inputs {
        // Stable: the objects of one identity stay in input order, the last one wins.
        self.objects
            .sort_by(|(_, a, x), (_, b, y)| identity(a, x).cmp(&identity(b, y)));
        let mut inputs = Inputs::default();
        let warnings = &mut self.warnings;
        // `dedup_by` keeps the first of a run and hands the closure (later, earlier): the
        // later one is swapped into the kept place.
        self.objects.dedup_by(|later, earlier| {
            if identity(later.1, &later.2) != identity(earlier.1, &earlier.2) {
                return false;
            }
            if let Some(key) = reference(later.1, &later.2) {
                warnings.push(format!(
                    "warning: {}: {key}: duplicate of the object at {}; this one is used",
                    later.0, earlier.0
                ));
            }
            std::mem::swap(later, earlier);
            true
        });
        inputs.warnings = self.warnings;
        let snapshot = &mut inputs.snapshot;
        for (origin, kind, object) in self.objects {
            if origins == Origins::Keep
                && let Some(key) = reference(kind, &object)
            {
                inputs.origins.insert(key, origin);
            }
            match object {
                Shared::Service(o) => snapshot.services.push(o),
                Shared::EndpointSlice(o) => snapshot.endpoint_slices.push(o),
                Shared::Endpoints(o) => snapshot.endpoints.push(o),
                Shared::Node(o) => snapshot.nodes.push(o),
                Shared::ServiceCidr(o) => snapshot.service_cidrs.push(o),
                Shared::Other(_) => {}
            }
        }
        inputs
    }
}

/// The warning for an object nftproxy does not read: `warning: FILE:LINE: Kind name: why`.
fn other_kind_warning(origin: &Origin, other: &OtherObject) -> String {
    let kind = &other.kind;
    let object = match &other.name {
        Some(name) => format!("{kind} {name}"),
        None => kind.clone(),
    };
    if kind == "KubeProxyConfiguration" {
        format!(
            "warning: {origin}: {object}: ignored in INPUT; pass the configuration with --config"
        )
    } else {
        format!(
            "warning: {origin}: {object}: kind {kind} ({}) is not read by nftproxy; ignored",
            other.api_version
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;

    #[test]
    fn decode_errors_name_the_file_and_the_line_in_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        let text = "apiVersion: v1\nkind: Node\nmetadata: {name: n}\n---\napiVersion: v1\nkind: Service\nspec:\n  ports: 3\n";
        std::fs::write(&path, text).unwrap();
        let Err(err @ InputError::Decode { line: 8, .. }) = load(std::slice::from_ref(&path))
        else {
            panic!("should fail at line 8");
        };
        assert!(
            err.to_string()
                .starts_with(&format!("{}:8: ", path.display())),
            "{err}"
        );
    }

    #[test]
    fn objects_are_located_and_other_kinds_become_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        let text = "apiVersion: v1\nkind: Node\nmetadata: {name: n}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n";
        std::fs::write(&path, text).unwrap();
        let inputs = load(std::slice::from_ref(&path)).unwrap();
        assert_eq!(inputs.snapshot.nodes.len(), 1);
        assert_eq!(
            inputs.origins[&ObjectRef::new("Node", None, "n")].to_string(),
            format!("{}:1", path.display())
        );
        assert_eq!(inputs.warnings.len(), 1);
        assert!(
            inputs.warnings[0]
                .starts_with(&format!("warning: {}:5: ConfigMap cm:", path.display())),
            "{:?}",
            inputs.warnings
        );
    }

    #[test]
    fn later_duplicate_wins_with_a_warning_naming_both_places() {
        let mut collector = Collector::default();
        for (file, line) in [("a.yaml", 1), ("b.yaml", 9)] {
            let node = Node {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some("n".to_owned()),
                    ..Default::default()
                },
                ..Node::default()
            };
            collector.add(&Arc::from(file), line, Object::Node(Box::new(node)));
        }
        let inputs = collector.finish(Origins::Keep);
        assert_eq!(inputs.snapshot.nodes.len(), 1);
        assert_eq!(
            inputs.origins[&ObjectRef::new("Node", None, "n")].to_string(),
            "b.yaml:9"
        );
        assert!(
            inputs.warnings[0].contains("a.yaml:1"),
            "{:?}",
            inputs.warnings
        );
    }

    #[test]
    fn directories_expand_to_sorted_manifest_files_without_hidden_ones() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.yaml", "a/z.json", "a/y.yml", "notes.txt", ".git/x.yaml"] {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let got = expand(&[dir.path().to_path_buf()]).unwrap();
        let want: Vec<Source> = ["a/y.yml", "a/z.json", "b.yaml"]
            .iter()
            .map(|n| Source::File(dir.path().join(n)))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_long_running_reader_reads_again_only_changed_files_and_keeps_broken_ones() {
        let dir = tempfile::tempdir().unwrap();
        let node = |name: &str| format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\n");
        std::fs::write(dir.path().join("a.yaml"), node("a")).unwrap();
        std::fs::write(dir.path().join("b.yaml"), node("b")).unwrap();
        let args = [dir.path().to_path_buf()];
        let mut cache = FileCache::default();
        let names = |inputs: &Inputs| -> Vec<String> {
            let names = inputs
                .snapshot
                .nodes
                .iter()
                .map(|n| n.metadata.name.clone().unwrap());
            names.collect()
        };
        let (first, errors) = load_keeping(&args, &mut cache).unwrap();
        assert!(errors.is_empty());
        assert_eq!(names(&first), ["a", "b"]);
        assert!(first.origins.is_empty(), "run never looks an origin up");

        // b changes (another size, so the stamp differs whatever the clock's resolution).
        std::fs::write(dir.path().join("b.yaml"), node("b2")).unwrap();
        let (second, errors) = load_keeping(&args, &mut cache).unwrap();
        assert!(errors.is_empty());
        assert_eq!(names(&second), ["a", "b2"]);
        assert!(
            Arc::ptr_eq(&first.snapshot.nodes[0], &second.snapshot.nodes[0]),
            "the unchanged file gives the very object it gave before"
        );

        // A broken edit of a keeps what a held; its error names the file and line.
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: v1\nkind: Node\nspec: [\n",
        )
        .unwrap();
        let (third, errors) = load_keeping(&args, &mut cache).unwrap();
        assert_eq!(names(&third), ["a", "b2"]);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("a.yaml:"), "{}", errors[0]);

        // A removed file takes its objects with it.
        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        let (fourth, errors) = load_keeping(&args, &mut cache).unwrap();
        assert!(errors.is_empty());
        assert_eq!(names(&fourth), ["b2"]);
    }

    #[test]
    fn stdin_may_be_given_once() {
        let dash = PathBuf::from("-");
        assert_eq!(
            expand(std::slice::from_ref(&dash)).unwrap(),
            [Source::Stdin]
        );
        assert!(matches!(
            expand(&[dash.clone(), dash]),
            Err(InputError::StdinTwice)
        ));
    }
}
