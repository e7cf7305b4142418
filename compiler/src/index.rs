//! The snapshot, indexed once: validated Services (sorted by identity) and, per Service,
//! its EndpointSlices (or, failing those, its legacy Endpoints).
//!
//! Indexing is linear: every slice is filed under `(namespace, service-name)` once, and a
//! Service finds its slices with one lookup. Slices are validated only when a handled
//! Service asks for them, so another proxy's slices never produce diagnostics. The hash
//! maps are only looked up, never iterated, so they cannot influence output order.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::quality::RandomState;

use crate::compact_slice::CompactSlice;
use k8s_openapi::api::core::v1::{Endpoints, Service};

use crate::diagnostic::{Diagnostic, ObjectRef, Severity};
use crate::endpoints::{LegacySlices, SliceDef};
use crate::meta;
use crate::service::{self, ServiceDef, ServiceError, ServiceId};
use crate::snapshot::ClusterSnapshot;

pub use crate::compact_slice::SERVICE_NAME_LABEL;

type Key<'a> = (&'a str, &'a str);

/// Objects filed by `(namespace, service name)`. Keys are user data, so the hash is
/// randomly seeded (foldhash: a fraction of SipHash's cost for these short keys).
type Lookup<'a, T> = HashMap<Key<'a>, Vec<&'a T>, RandomState>;

/// Validated Services and the raw endpoint objects filed under them.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// Handled Services, sorted by `namespace/name`, each identity once.
    pub services: Vec<ServiceDef>,
    slices: Lookup<'a, CompactSlice>,
    legacy: Lookup<'a, Endpoints>,
}

impl<'a> Inputs<'a> {
    pub fn build(snapshot: &'a ClusterSnapshot, diagnostics: &mut Vec<Diagnostic>) -> Self {
        let mut slices: Lookup<'a, CompactSlice> = HashMap::default();
        for slice in &snapshot.endpoint_slices {
            match slice_owner(slice) {
                Ok(key) => slices.entry(key).or_default().push(slice),
                Err(diagnostic) => diagnostics.push(diagnostic),
            }
        }
        let mut legacy: Lookup<'a, Endpoints> = HashMap::default();
        for endpoints in &snapshot.endpoints {
            if let Some(key) = endpoints_owner(endpoints) {
                legacy.entry(key).or_default().push(endpoints);
            }
        }
        Inputs {
            services: services(snapshot.services.iter().map(Arc::as_ref), diagnostics),
            slices,
            legacy,
        }
    }

    /// The validated slices of a Service: its EndpointSlices, or, when it has none, its
    /// legacy Endpoints. Invalid objects and addresses become diagnostics.
    pub fn slices_for(
        &self,
        id: &ServiceId,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Vec<SliceDef<'a>> {
        let key = (&*id.namespace, &*id.name);
        let slices = self.slices.get(&key).into_iter().flatten().copied();
        let legacy = self.legacy.get(&key).into_iter().flatten().copied();
        validate_slices(slices, legacy, diagnostics)
    }
}

/// The validated slices of a Service from its EndpointSlices (`slices`) or, when it has
/// none, its legacy Endpoints (`legacy`). Invalid objects and addresses become diagnostics.
pub fn validate_slices<'a>(
    slices: impl IntoIterator<Item = &'a CompactSlice>,
    legacy: impl IntoIterator<Item = &'a Endpoints>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<SliceDef<'a>> {
    let mut out = Vec::new();
    let mut slices = slices.into_iter().peekable();
    if slices.peek().is_some() {
        for slice in slices.filter(|s| s.address_type != "FQDN") {
            match SliceDef::try_from(slice) {
                Ok(def) => out.push(def),
                Err(err) => diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    object: meta::object_ref("EndpointSlice", &slice.metadata, true),
                    message: format!("{err}; skipped"),
                }),
            }
        }
    } else {
        for endpoints in legacy {
            match LegacySlices::try_from(endpoints) {
                Ok(LegacySlices(defs)) => out.extend(defs),
                Err(err) => diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    object: meta::object_ref("Endpoints", &endpoints.metadata, true),
                    message: format!("{err}; skipped"),
                }),
            }
        }
    }
    for slice in &out {
        report_rejected(slice, diagnostics);
    }
    out
}

/// The `(namespace, service name)` an EndpointSlice belongs to, or the warning that it
/// belongs to none.
pub fn slice_owner(slice: &CompactSlice) -> Result<(&str, &str), Diagnostic> {
    match slice.service_name.as_deref() {
        Some(service) => Ok((meta::namespace(&slice.metadata), service)),
        None => Err(Diagnostic {
            severity: Severity::Warning,
            object: meta::object_ref("EndpointSlice", &slice.metadata, true),
            message: format!("has no {SERVICE_NAME_LABEL} label; ignored"),
        }),
    }
}

/// The `(namespace, name)` a legacy Endpoints object is filed under (that of its
/// Service); `None` without a name.
pub fn endpoints_owner(endpoints: &Endpoints) -> Option<(&str, &str)> {
    let name = endpoints.metadata.name.as_deref()?;
    Some((meta::namespace(&endpoints.metadata), name))
}

fn report_rejected(slice: &SliceDef<'_>, diagnostics: &mut Vec<Diagnostic>) {
    for rejected in &slice.rejected {
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            object: ObjectRef::new(slice.kind, Some(slice.namespace), slice.name),
            message: format!(
                "endpoint address {:?} {}; skipped",
                rejected.address, rejected.reason
            ),
        });
    }
}

/// Validates the Services nftproxy handles, one per identity, sorted by identity.
/// Two different objects with one identity are ambiguous: both are skipped.
pub fn services<'s>(
    raw: impl IntoIterator<Item = &'s Service>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<ServiceDef> {
    let raw = raw.into_iter();
    let mut valid: Vec<(ServiceDef, &Service)> = Vec::with_capacity(raw.size_hint().0);
    for object in raw.filter(|s| service::is_proxied(s)) {
        match ServiceDef::try_from(object) {
            Ok(def) => valid.push((def, object)),
            Err(err) => diagnostics.push(service_diagnostic(object, &err)),
        }
    }
    // Stable: within one identity, input order is kept, so the first object leads.
    valid.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    let mut out: Vec<ServiceDef> = Vec::with_capacity(valid.len());
    let mut sorted = valid.into_iter().peekable();
    while let Some((def, first)) = sorted.next() {
        let mut ambiguous = false;
        while let Some((_, object)) = sorted.next_if(|(d, _)| d.id == def.id) {
            ambiguous |= object != first;
        }
        if ambiguous {
            diagnostics.push(Diagnostic {
                severity: Severity::Error,
                object: ObjectRef::new("Service", Some(&def.id.namespace), &*def.id.name),
                message: "is defined more than once with different contents; skipped".into(),
            });
        } else {
            out.push(def);
        }
    }
    out
}

fn service_diagnostic(object: &Service, err: &ServiceError) -> Diagnostic {
    let severity = match err {
        ServiceError::MissingClusterIp => Severity::Warning,
        _ => Severity::Error,
    };
    let message = match err {
        ServiceError::MissingClusterIp => err.to_string(),
        _ => format!("{err}; skipped"),
    };
    Diagnostic {
        severity,
        object: meta::object_ref("Service", &object.metadata, true),
        message,
    }
}
