//! Object identity (namespace and name) read from `metadata`, validated, and named in
//! diagnostics.
//!
//! A manifest without `metadata.namespace` lands in `default`, as `kubectl apply` would put it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use thiserror::Error;

use crate::diagnostic::ObjectRef;
use crate::names::{self, NameError};

/// The namespace of an object whose manifest names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Why an object's identity is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdentityError {
    #[error("metadata.name is missing")]
    MissingName,
    #[error("metadata.name {name:?} is invalid: {source}")]
    Name { name: String, source: NameError },
    #[error("metadata.namespace {namespace:?} is invalid: {source}")]
    Namespace {
        namespace: String,
        source: NameError,
    },
}

/// The namespace of an object (`default` when absent).
pub fn namespace(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
}

/// Validated `(namespace, name)` of a namespaced object; `check` is the rule for its name.
pub fn identity(
    meta: &ObjectMeta,
    check: fn(&str) -> Result<(), NameError>,
) -> Result<(&str, &str), IdentityError> {
    let name = meta.name.as_deref().ok_or(IdentityError::MissingName)?;
    check(name).map_err(|source| IdentityError::Name {
        name: name.to_owned(),
        source,
    })?;
    let namespace = namespace(meta);
    names::dns1123_label(namespace).map_err(|source| IdentityError::Namespace {
        namespace: namespace.to_owned(),
        source,
    })?;
    Ok((namespace, name))
}

/// The reference a diagnostic prints for an object. Names are printed as given when they
/// are plain, and escaped otherwise, so a diagnostic always stays on one line.
pub fn object_ref(kind: &str, meta: &ObjectMeta, namespaced: bool) -> ObjectRef {
    let name = meta
        .name
        .as_deref()
        .map_or_else(|| "<unnamed>".to_owned(), printable);
    let namespace = namespaced.then(|| printable(namespace(meta)));
    ObjectRef {
        kind: kind.to_owned(),
        namespace,
        name,
    }
}

/// `value` itself when it is a plain Kubernetes name, else its escaped, quoted form.
pub fn printable(value: &str) -> String {
    if names::dns1123_subdomain(value).is_ok() {
        value.to_owned()
    } else {
        format!("{value:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(namespace: Option<&str>, name: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            namespace: namespace.map(str::to_owned),
            name: name.map(str::to_owned),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn missing_namespace_means_default() {
        let meta = meta(None, Some("web"));
        assert_eq!(
            identity(&meta, names::dns1035_label),
            Ok(("default", "web"))
        );
    }

    #[test]
    fn missing_name_is_an_identity_error() {
        let meta = meta(Some("ns"), None);
        assert_eq!(
            identity(&meta, names::dns1035_label),
            Err(IdentityError::MissingName)
        );
    }

    #[test]
    fn diagnostics_escape_names_with_special_characters() {
        let meta = meta(Some("ns"), Some("a\"b\nc"));
        let object = object_ref("Service", &meta, true);
        assert_eq!(object.to_string(), r#"Service ns/"a\"b\nc""#);
    }
}
