//! Events in the fake API server: `POST /apis/events.k8s.io/v1/namespaces/NS/events`, stored for tests.
//!
//! Only creation is modelled, as the API server validates an `events.k8s.io/v1` Event: the
//! object must be an Event of that group, in the path's namespace, with a name (or
//! `generateName`) not taken yet, and with `eventTime`, `reportingController`,
//! `reportingInstance`, `action`, `reason`, `regarding` and `type` set (the API server
//! requires them for Events created through this group). The answer is 201 with the stored
//! object: `resourceVersion` (from the shared counter), `uid`, `creationTimestamp`.

use serde_json::{Value, json};

use super::state::{State, status};

/// The namespace of an Events collection path, if `path` is one.
pub fn namespace_of(path: &str) -> Option<&str> {
    let namespace = path
        .strip_prefix("/apis/events.k8s.io/v1/namespaces/")?
        .strip_suffix("/events")?;
    (!namespace.is_empty() && !namespace.contains('/')).then_some(namespace)
}

/// Creates the Event in `body` in `namespace`; returns the HTTP status and the answer.
pub fn create(state: &mut State, namespace: &str, body: &[u8]) -> (u16, Value) {
    let Ok(mut event) = serde_json::from_slice::<Value>(body) else {
        return (400, status(400, "BadRequest", "the body is not JSON"));
    };
    if event["apiVersion"] != "events.k8s.io/v1" || event["kind"] != "Event" {
        let message = format!(
            "expected an events.k8s.io/v1 Event, got {} {}",
            event["apiVersion"], event["kind"]
        );
        return (400, status(400, "BadRequest", &message));
    }
    match event["metadata"]["namespace"].as_str() {
        None => event["metadata"]["namespace"] = json!(namespace),
        Some(ns) if ns == namespace => {}
        Some(ns) => {
            let message = format!(
                "the namespace of the object ({ns}) does not match the request ({namespace})"
            );
            return (400, status(400, "BadRequest", &message));
        }
    }
    let missing: Vec<&str> = [
        "eventTime",
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
        "regarding",
        "type",
    ]
    .into_iter()
    .filter(|field| event[*field].is_null() || event[*field] == "")
    .collect();
    if !missing.is_empty() {
        let message = format!("Event is invalid: required fields missing: {missing:?}");
        return (422, status(422, "Invalid", &message));
    }
    state.rv += 1;
    let rv = state.rv;
    let name = match (
        event["metadata"]["name"].as_str(),
        event["metadata"]["generateName"].as_str(),
    ) {
        (Some(name), _) if !name.is_empty() => name.to_owned(),
        (_, Some(prefix)) => format!("{prefix}{rv:05x}"),
        _ => {
            return (
                422,
                status(
                    422,
                    "Invalid",
                    "Event is invalid: metadata.name: Required value",
                ),
            );
        }
    };
    if state
        .events
        .iter()
        .any(|e| e["metadata"]["namespace"] == namespace && e["metadata"]["name"] == name)
    {
        let message = format!("events.events.k8s.io \"{name}\" already exists");
        return (409, status(409, "AlreadyExists", &message));
    }
    let meta = &mut event["metadata"];
    meta["name"] = json!(name);
    meta["resourceVersion"] = json!(rv.to_string());
    meta["uid"] = json!(format!("00000000-0000-0000-ffff-{rv:012}"));
    meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    state.events.push(event.clone());
    (201, event)
}
