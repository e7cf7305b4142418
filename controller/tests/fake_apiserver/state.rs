//! The fake API server's storage: objects, a global resourceVersion, the event history.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde_json::{Value, json};

use super::Kind;
use super::selector::{FieldSelector, LabelSelector};

/// The type of a stored change, as a watch reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Modified,
    Deleted,
}

/// One entry of the history: the object after the change (for a delete: the last state,
/// with the deletion's resourceVersion) and the object before it.
#[derive(Debug, Clone)]
pub struct HistoryEvent {
    pub rv: u64,
    pub kind: Kind,
    pub change: Change,
    pub object: Value,
    pub previous: Option<Value>,
}

/// The remaining pages of a paginated list, served from the state of its first page.
#[derive(Debug)]
pub struct Pages {
    pub kind: Kind,
    pub rv: u64,
    pub items: VecDeque<Value>,
}

/// Requests received per kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub lists: u64,
    pub watches: u64,
    pub open_watches: u64,
    pub bookmarks_sent: u64,
}

/// Everything the server knows; guarded by one mutex, never held across an await.
#[derive(Debug, Default)]
pub struct State {
    /// The last resourceVersion handed out (etcd's revision: one counter for all kinds).
    pub rv: u64,
    pub objects: BTreeMap<(Kind, String, String), Value>,
    /// Changes with resourceVersion greater than `compacted`, oldest first.
    pub history: VecDeque<HistoryEvent>,
    /// A watch may start from this resourceVersion or later; older ones get 410 Gone.
    pub compacted: u64,
    pub stalled: bool,
    pub unavailable: bool,
    /// The server process is gone: nothing listens, every connection is cut.
    pub gone: bool,
    pub unavailable_kinds: BTreeSet<Kind>,
    pub not_served: BTreeSet<Kind>,
    /// Incremented by every drop of all connections; a watch started before it ends.
    pub drops: u64,
    /// Incremented by every request for bookmarks.
    pub bookmark_requests: u64,
    pub counters: BTreeMap<Kind, Counters>,
    pub pages: HashMap<String, Pages>,
    next_token: u64,
    /// Created events.k8s.io/v1 Events, oldest first.
    pub events: Vec<Value>,
    /// POST requests for Events received (refused ones too).
    pub event_posts: u64,
    /// What every request asked for, as the API server's authorizer sees it.
    pub requests: BTreeSet<Access>,
}

/// A request's authorization attributes: verb, API group (`""` for core) and resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Access {
    pub verb: String,
    pub group: String,
    pub resource: String,
}

impl Access {
    /// The attributes of `method` on `path` (`/api/v1/...` or `/apis/GROUP/VERSION/...`,
    /// optionally `namespaces/NS/` before the resource), `watch` from the query; the verb
    /// as RBAC names it. `None` for paths that name no resource (discovery).
    pub fn of(method: &str, path: &str, watch: bool) -> Option<Access> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, rest) = match parts.as_slice() {
            ["api", _version, rest @ ..] => ("", rest),
            ["apis", group, _version, rest @ ..] => (*group, rest),
            _ => return None,
        };
        let rest = match rest {
            ["namespaces", _namespace, rest @ ..] if !rest.is_empty() => rest,
            rest => rest,
        };
        let (resource, named) = match rest {
            [resource] => (*resource, false),
            [resource, _name, ..] => (*resource, true),
            _ => return None,
        };
        let verb = match (method, named, watch) {
            ("GET", _, true) => "watch",
            ("GET", true, false) => "get",
            ("GET", false, false) => "list",
            ("POST", _, _) => "create",
            ("PUT", _, _) => "update",
            ("PATCH", _, _) => "patch",
            ("DELETE", true, _) => "delete",
            ("DELETE", false, _) => "deletecollection",
            (other, _, _) => other,
        };
        Some(Access {
            verb: verb.to_lowercase(),
            group: group.to_owned(),
            resource: resource.to_owned(),
        })
    }
}

impl State {
    pub fn counters(&mut self, kind: Kind) -> &mut Counters {
        self.counters.entry(kind).or_default()
    }

    /// Stores `object` (created or replaced) and records the change; returns its new
    /// resourceVersion.
    pub fn apply(&mut self, mut object: Value) -> u64 {
        let kind = Kind::of(&object);
        let (namespace, name) = key_of(kind, &object);
        self.rv += 1;
        let rv = self.rv;
        let meta = &mut object["metadata"];
        meta["resourceVersion"] = json!(rv.to_string());
        let key = (kind, namespace, name);
        let previous = self.objects.get(&key).cloned();
        if meta.get("uid").is_none() {
            let uid = match &previous {
                Some(p) => p["metadata"]["uid"].clone(),
                None => json!(format!("00000000-0000-0000-0000-{rv:012}")),
            };
            meta["uid"] = uid;
        }
        let change = if previous.is_some() {
            Change::Modified
        } else {
            Change::Added
        };
        self.objects.insert(key, object.clone());
        self.history.push_back(HistoryEvent {
            rv,
            kind,
            change,
            object,
            previous,
        });
        rv
    }

    /// Deletes an object; returns whether it existed.
    pub fn delete(&mut self, kind: Kind, namespace: &str, name: &str) -> bool {
        let key = (kind, namespace.to_string(), name.to_string());
        let Some(mut object) = self.objects.remove(&key) else {
            return false;
        };
        self.rv += 1;
        let previous = object.clone();
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.history.push_back(HistoryEvent {
            rv: self.rv,
            kind,
            change: Change::Deleted,
            object,
            previous: Some(previous),
        });
        true
    }

    /// Forgets the history: watches from an older resourceVersion get 410 Gone, and so do
    /// the continue tokens of lists started before.
    pub fn compact(&mut self) {
        self.compacted = self.rv;
        self.history.clear();
        let compacted = self.compacted;
        self.pages.retain(|_, p| p.rv >= compacted);
    }

    /// The objects of `kind` matching both selectors, by namespace/name.
    pub fn matching(
        &self,
        kind: Kind,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((k, _, _), o)| *k == kind && labels.matches(o) && fields.matches(o))
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Parks the items after a first page; returns the continue token.
    pub fn park_pages(&mut self, kind: Kind, rv: u64, items: VecDeque<Value>) -> String {
        self.next_token += 1;
        let token = format!("page-{}", self.next_token);
        self.pages.insert(token.clone(), Pages { kind, rv, items });
        token
    }
}

/// The namespace ("" for cluster-scoped kinds) and name of an object.
pub fn key_of(kind: Kind, object: &Value) -> (String, String) {
    let meta = &object["metadata"];
    let name = meta["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{kind:?} without metadata.name: {object}"))
        .to_string();
    let namespace = if kind.namespaced() {
        meta["namespace"]
            .as_str()
            .unwrap_or_else(|| panic!("{kind:?} {name} without metadata.namespace"))
            .to_string()
    } else {
        String::new()
    };
    (namespace, name)
}

/// A Kubernetes `Status` object, as error responses and ERROR watch events carry.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

#[cfg(test)]
mod tests {
    use super::Access;

    fn verb_group_resource(method: &str, path: &str, watch: bool) -> (String, String, String) {
        let a = Access::of(method, path, watch).expect("a resource path");
        (a.verb, a.group, a.resource)
    }

    #[test]
    fn access_attributes_are_read_off_the_request_as_an_authorizer_does() {
        let cases = [
            ("GET", "/api/v1/services", false, ("list", "", "services")),
            ("GET", "/api/v1/nodes", true, ("watch", "", "nodes")),
            ("GET", "/api/v1/nodes/node-1", false, ("get", "", "nodes")),
            (
                "GET",
                "/apis/discovery.k8s.io/v1/namespaces/a/endpointslices",
                false,
                ("list", "discovery.k8s.io", "endpointslices"),
            ),
            (
                "POST",
                "/apis/events.k8s.io/v1/namespaces/a/events",
                false,
                ("create", "events.k8s.io", "events"),
            ),
            (
                "PATCH",
                "/api/v1/namespaces/a/services/web",
                false,
                ("patch", "", "services"),
            ),
            (
                "DELETE",
                "/api/v1/namespaces/a/pods",
                false,
                ("deletecollection", "", "pods"),
            ),
        ];
        for (method, path, watch, (verb, group, resource)) in cases {
            assert_eq!(
                verb_group_resource(method, path, watch),
                (verb.to_owned(), group.to_owned(), resource.to_owned()),
                "{method} {path}"
            );
        }
        assert_eq!(Access::of("GET", "/apis", false), None);
    }
}
