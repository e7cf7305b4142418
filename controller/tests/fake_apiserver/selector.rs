//! Label and field selectors, in the equality-based forms the API server accepts.

use serde_json::Value;

/// One term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelTerm {
    Exists(String),
    NotExists(String),
    Equals(String, String),
    NotEquals(String, String),
}

/// A parsed `labelSelector`: terms joined by commas, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<LabelTerm>);

impl LabelSelector {
    /// Parses `key`, `!key`, `key=value`, `key==value` and `key!=value` terms joined by
    /// commas. Set-based terms (`key in (a,b)`) are refused, as this fake does not model them.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for raw in text.split(',') {
            let term = raw.trim();
            if term.is_empty() {
                continue;
            }
            if term.contains(['(', ')', ' ']) {
                return Err(format!("unsupported label selector term {term:?}"));
            }
            let parsed = if let Some(key) = term.strip_prefix('!') {
                LabelTerm::NotExists(key.to_string())
            } else if let Some((k, v)) = term.split_once("!=") {
                LabelTerm::NotEquals(k.to_string(), v.to_string())
            } else if let Some((k, v)) = term.split_once("==") {
                LabelTerm::Equals(k.to_string(), v.to_string())
            } else if let Some((k, v)) = term.split_once('=') {
                LabelTerm::Equals(k.to_string(), v.to_string())
            } else {
                LabelTerm::Exists(term.to_string())
            };
            let key = match &parsed {
                LabelTerm::Exists(k)
                | LabelTerm::NotExists(k)
                | LabelTerm::Equals(k, _)
                | LabelTerm::NotEquals(k, _) => k,
            };
            if key.is_empty() {
                return Err(format!("label selector term {term:?} has no key"));
            }
            terms.push(parsed);
        }
        Ok(Self(terms))
    }

    /// Whether an object (JSON, with `metadata.labels`) matches. `key!=value` also matches
    /// objects without the label, as in Kubernetes.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |key: &str| labels.get(key).and_then(Value::as_str);
        self.0.iter().all(|term| match term {
            LabelTerm::Exists(k) => label(k).is_some(),
            LabelTerm::NotExists(k) => label(k).is_none(),
            LabelTerm::Equals(k, v) => label(k) == Some(v.as_str()),
            LabelTerm::NotEquals(k, v) => label(k) != Some(v.as_str()),
        })
    }
}

/// A parsed `fieldSelector` over `metadata.name` and `metadata.namespace`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses `field=value`, `field==value` and `field!=value` terms joined by commas; any
    /// field but `metadata.name` and `metadata.namespace` is refused, as the API server
    /// refuses fields a kind does not index.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for raw in text.split(',') {
            let term = raw.trim();
            if term.is_empty() {
                continue;
            }
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!("invalid field selector term {term:?}"));
            };
            if field != "metadata.name" && field != "metadata.namespace" {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push((field.to_string(), equal, value.to_string()));
        }
        Ok(Self(terms))
    }

    /// Whether an object matches every term.
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let key = field.trim_start_matches("metadata.");
            let actual = object["metadata"][key].as_str().unwrap_or("");
            (actual == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labelled(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn kube_proxy_selector_excludes_headless_and_foreign_objects() {
        let s = LabelSelector::parse(
            "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name",
        )
        .unwrap();
        assert!(s.matches(&labelled(json!({"app": "web"}))));
        assert!(s.matches(&json!({"metadata": {"name": "unlabelled"}})));
        assert!(!s.matches(&labelled(json!({"service.kubernetes.io/headless": ""}))));
        assert!(!s.matches(&labelled(
            json!({"service.kubernetes.io/service-proxy-name": "other"})
        )));
    }

    #[test]
    fn equality_terms_follow_kubernetes_semantics() {
        let s = LabelSelector::parse("app=web,tier!=db,zone").unwrap();
        assert!(s.matches(&labelled(json!({"app": "web", "zone": "a"}))));
        assert!(s.matches(&labelled(json!({"app": "web", "zone": "a", "tier": "fe"}))));
        assert!(!s.matches(&labelled(json!({"app": "web", "zone": "a", "tier": "db"}))));
        assert!(!s.matches(&labelled(json!({"app": "web"}))));
        assert!(!s.matches(&labelled(json!({"app": "api", "zone": "a"}))));
        assert_eq!(
            LabelSelector::parse("app==web").unwrap(),
            LabelSelector::parse("app=web").unwrap()
        );
    }

    #[test]
    fn set_based_label_terms_are_refused() {
        assert!(LabelSelector::parse("app in (a,b)").is_err());
        assert!(LabelSelector::parse("=x").is_err());
    }

    #[test]
    fn field_selector_matches_name_and_refuses_other_fields() {
        let s = FieldSelector::parse("metadata.name=node-1").unwrap();
        assert!(s.matches(&json!({"metadata": {"name": "node-1"}})));
        assert!(!s.matches(&json!({"metadata": {"name": "node-2"}})));
        let not = FieldSelector::parse("metadata.namespace!=kube-system").unwrap();
        assert!(not.matches(&json!({"metadata": {"name": "a", "namespace": "default"}})));
        assert!(FieldSelector::parse("spec.nodeName=node-1").is_err());
    }
}
