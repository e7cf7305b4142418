//! The ClusterRole shipped in `deploy/10-rbac.yaml`, read as an authorizer reads it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use serde_yaml::Value;

/// One rule of the ClusterRole: API groups, resources and verbs it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
}

impl Rule {
    /// Whether this rule grants `verb` on `group`/`resource` (`*` matches anything, as
    /// RBAC's wildcards do).
    pub fn allows(&self, verb: &str, group: &str, resource: &str) -> bool {
        let has = |list: &[String], item: &str| list.iter().any(|x| x == item || x == "*");
        has(&self.verbs, verb) && has(&self.groups, group) && has(&self.resources, resource)
    }
}

/// The documents of `deploy/10-rbac.yaml`.
pub fn documents() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/10-rbac.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

/// The rules of the ClusterRole `nftproxy`.
pub fn cluster_role_rules() -> Vec<Rule> {
    let role = documents()
        .into_iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("deploy/10-rbac.yaml has a ClusterRole");
    let strings = |v: &Value| -> Vec<String> {
        v.as_sequence()
            .map(|s| s.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    role["rules"]
        .as_sequence()
        .expect("rules")
        .iter()
        .map(|r| Rule {
            groups: strings(&r["apiGroups"]),
            resources: strings(&r["resources"]),
            verbs: strings(&r["verbs"]),
        })
        .collect()
}

/// Whether any rule grants `verb` on `group`/`resource`.
pub fn allowed(rules: &[Rule], verb: &str, group: &str, resource: &str) -> bool {
    rules.iter().any(|r| r.allows(verb, group, resource))
}
