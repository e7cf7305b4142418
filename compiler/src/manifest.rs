//! Manifest decoding: YAML (multi-document) or JSON text in, typed Kubernetes objects out.
//!
//! Pure (text in, objects out, no file I/O) so that the CLI and the snapshot tests read
//! manifests the same way. Every object carries the 1-based line it starts at, counted in
//! the whole text, so a diagnostic can point at `file:line`. `kind: List` (and any `*List`
//! with `items`, as `kubectl get -o yaml` prints) is expanded. Kinds the compiler does not
//! read come back as [`Object::Other`] for the caller to use (a `KubeProxyConfiguration`) or
//! warn about.
//!
//! YAML documents are split on `---` / `...` lines ourselves rather than by the YAML
//! library, because the library does not say where a document starts; the YAML spec
//! forbids those markers at column 0 inside content, so the split is exact.

use crate::compact::Compact;
use crate::compact_slice::CompactSlice;
use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use serde::de::DeserializeOwned;
use serde_json::Value;
use thiserror::Error;

mod lines;

use lines::{Chunk, item_lines, line_of_offset, split_documents};

/// One decoded object and the 1-based line where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub line: usize,
    pub object: Object,
}

impl Decoded {
    /// `object` at `line`, trimmed to what is kept (see [`Compact`]).
    fn compacted(line: usize, mut object: Object) -> Decoded {
        match &mut object {
            Object::Service(o) => o.compact(),
            // Converted to a `CompactSlice` as it was decoded.
            Object::EndpointSlice(_) => {}
            Object::Endpoints(o) => o.compact(),
            Object::Node(o) => o.compact(),
            Object::ServiceCidr(o) => o.compact(),
            Object::Other(_) => {}
        }
        Decoded { line, object }
    }
}

/// A decoded object: one of the kinds the compiler reads, or anything else.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Service(Box<Service>),
    /// Converted as it is decoded: the API type is never kept (see `compact_slice`).
    EndpointSlice(Box<CompactSlice>),
    Endpoints(Box<Endpoints>),
    Node(Box<Node>),
    ServiceCidr(Box<ServiceCIDR>),
    Other(OtherObject),
}

impl Object {
    /// An EndpointSlice, converted to what is kept of it.
    pub fn endpoint_slice(slice: EndpointSlice) -> Object {
        Object::EndpointSlice(Box::new(CompactSlice::from(slice)))
    }
}

/// An object of a kind the compiler does not read (e.g. `KubeProxyConfiguration`).
#[derive(Debug, Clone, PartialEq)]
pub struct OtherObject {
    pub api_version: String,
    pub kind: String,
    /// `metadata.name`, when it has one.
    pub name: Option<String>,
    /// The whole object.
    pub value: Value,
}

/// The text is not a valid manifest; `line` (and `column` when known) is 1-based in the
/// whole text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}{}: {message}", column.map(|c| format!(" column {c}")).unwrap_or_default())]
pub struct ManifestError {
    pub line: usize,
    pub column: Option<usize>,
    pub message: String,
}

/// Decodes every object in `text`: YAML (any number of documents) or JSON (one or more
/// values; a top-level array is a list of objects). Empty documents are skipped.
pub fn decode(text: &str) -> Result<Vec<Decoded>, ManifestError> {
    if matches!(text.trim_start().chars().next(), Some('{' | '[')) {
        let mut out = Vec::new();
        match decode_json(text, &mut out) {
            Ok(()) => return Ok(out),
            // YAML flow style (`{a: 1}`) also starts with a brace: report JSON's error
            // only if the text is not YAML either.
            Err(err) => return decode_yaml(text).map_err(|_| err),
        }
    }
    decode_yaml(text)
}

fn decode_yaml(text: &str) -> Result<Vec<Decoded>, ManifestError> {
    let mut out = Vec::new();
    for chunk in split_documents(text) {
        decode_yaml_document(&chunk, &mut out)?;
    }
    Ok(out)
}

fn decode_yaml_document(chunk: &Chunk<'_>, out: &mut Vec<Decoded>) -> Result<(), ManifestError> {
    let value: Value = serde_yaml::from_str(chunk.text).map_err(|e| yaml_error(&e, chunk))?;
    if value.is_null() {
        return Ok(());
    }
    let line = chunk.content_line;
    let header = Header::read(&value, line)?;
    if let Some(items) = header.list_items(&value) {
        let lines = item_lines(chunk, items.len());
        for (index, item) in items.iter().enumerate() {
            let item_line = lines
                .as_ref()
                .and_then(|l| l.get(index).copied())
                .unwrap_or(line);
            decode_value(item.clone(), item_line, out)?;
        }
        return Ok(());
    }
    // Typed decoding from the text (not the value) keeps the error's position.
    let typed = |e: serde_yaml::Error| yaml_error(&e, chunk);
    let object = match header.known_kind() {
        Some(KnownKind::Service) => {
            Object::Service(serde_yaml::from_str(chunk.text).map_err(typed)?)
        }
        Some(KnownKind::EndpointSlice) => {
            Object::endpoint_slice(serde_yaml::from_str(chunk.text).map_err(typed)?)
        }
        Some(KnownKind::Endpoints) => {
            Object::Endpoints(serde_yaml::from_str(chunk.text).map_err(typed)?)
        }
        Some(KnownKind::Node) => Object::Node(serde_yaml::from_str(chunk.text).map_err(typed)?),
        Some(KnownKind::ServiceCidr) => {
            Object::ServiceCidr(serde_yaml::from_str(chunk.text).map_err(typed)?)
        }
        None => header.other(value),
    };
    out.push(Decoded::compacted(line, object));
    Ok(())
}

fn decode_json(text: &str, out: &mut Vec<Decoded>) -> Result<(), ManifestError> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let start = stream.byte_offset();
        let Some(next) = stream.next() else {
            return Ok(());
        };
        let value = next.map_err(|e| ManifestError {
            line: e.line(),
            column: Some(e.column()),
            message: strip_location(e.to_string(), e.line(), e.column()),
        })?;
        let skipped = text
            .get(start..)
            .map_or(0, |rest| rest.len() - rest.trim_start().len());
        let line = line_of_offset(text, start + skipped);
        match value {
            Value::Array(items) => {
                for item in items {
                    decode_value(item, line, out)?;
                }
            }
            value => decode_value(value, line, out)?,
        }
    }
}

/// Decodes one object (or list) given as a value, e.g. a list item or a JSON document.
fn decode_value(value: Value, line: usize, out: &mut Vec<Decoded>) -> Result<(), ManifestError> {
    let header = Header::read(&value, line)?;
    if let Some(items) = header.list_items(&value) {
        for item in items.clone() {
            decode_value(item, line, out)?;
        }
        return Ok(());
    }
    let object = match header.known_kind() {
        Some(KnownKind::Service) => Object::Service(typed(value, line)?),
        Some(KnownKind::EndpointSlice) => Object::endpoint_slice(*typed(value, line)?),
        Some(KnownKind::Endpoints) => Object::Endpoints(typed(value, line)?),
        Some(KnownKind::Node) => Object::Node(typed(value, line)?),
        Some(KnownKind::ServiceCidr) => Object::ServiceCidr(typed(value, line)?),
        None => header.other(value),
    };
    out.push(Decoded::compacted(line, object));
    Ok(())
}

fn typed<T: DeserializeOwned>(value: Value, line: usize) -> Result<Box<T>, ManifestError> {
    serde_json::from_value(value).map_err(|e| ManifestError {
        line,
        column: None,
        message: e.to_string(),
    })
}

/// The kinds the compiler reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KnownKind {
    Service,
    EndpointSlice,
    Endpoints,
    Node,
    ServiceCidr,
}

/// `apiVersion` and `kind` of a document.
struct Header {
    api_version: String,
    kind: String,
}

impl Header {
    fn read(value: &Value, line: usize) -> Result<Self, ManifestError> {
        let field = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or_default();
        let header = Header {
            api_version: field("apiVersion").to_owned(),
            kind: field("kind").to_owned(),
        };
        if !value.is_object() || header.api_version.is_empty() || header.kind.is_empty() {
            return Err(ManifestError {
                line,
                column: None,
                message: "not a Kubernetes object (no apiVersion and kind)".to_owned(),
            });
        }
        Ok(header)
    }

    fn known_kind(&self) -> Option<KnownKind> {
        match (self.api_version.as_str(), self.kind.as_str()) {
            ("v1", "Service") => Some(KnownKind::Service),
            ("discovery.k8s.io/v1", "EndpointSlice") => Some(KnownKind::EndpointSlice),
            ("v1", "Endpoints") => Some(KnownKind::Endpoints),
            ("v1", "Node") => Some(KnownKind::Node),
            ("networking.k8s.io/v1", "ServiceCIDR") => Some(KnownKind::ServiceCidr),
            _ => None,
        }
    }

    /// The items of a `List` / `*List`, if this is one.
    fn list_items<'v>(&self, value: &'v Value) -> Option<&'v Vec<Value>> {
        if !self.kind.ends_with("List") {
            return None;
        }
        value.get("items").and_then(Value::as_array)
    }

    fn other(self, value: Value) -> Object {
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Object::Other(OtherObject {
            api_version: self.api_version,
            kind: self.kind,
            name,
            value,
        })
    }
}

/// A YAML error with its position moved from the document to the whole text.
fn yaml_error(err: &serde_yaml::Error, chunk: &Chunk<'_>) -> ManifestError {
    match err.location() {
        Some(loc) => {
            let line = chunk.first_line + loc.line() - 1;
            let message = shift_lines(&err.to_string(), chunk.first_line - 1);
            ManifestError {
                line,
                column: Some(loc.column()),
                message: strip_location(message, line, loc.column()),
            }
        }
        None => ManifestError {
            line: chunk.content_line,
            column: None,
            message: shift_lines(&err.to_string(), chunk.first_line - 1),
        },
    }
}

/// Rewrites every `line N` the library wrote (relative to the document) as a line of the
/// whole text, so a message never names two different numberings.
fn shift_lines(message: &str, offset: usize) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("line ") {
        let (before, after) = rest.split_at(at + "line ".len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&after[..digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// Drops the primary ` at line L column C` (already given as `file:line`), wherever it stands.
fn strip_location(message: String, line: usize, column: usize) -> String {
    let primary = format!(" at line {line} column {column}");
    match message.find(&primary) {
        Some(at) => format!("{}{}", &message[..at], &message[at + primary.len()..]),
        None => message,
    }
}

#[cfg(test)]
mod tests;
