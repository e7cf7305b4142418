//! The snapshot, indexed once: validated Services (sorted by identity) and, per Service,
//! its EndpointSlices (or, failing those, its legacy Endpoints).
//!
//! Indexing is linear: every slice is filed under `(namespace, service-name)` once, and a
//! Service finds its slices with one lookup. Slices are validated only when a handled
//! Service asks for them, so another proxy's slices never produce diagnostics. The hash
//! maps are only looked up, never iterated, so they cannot influence output order.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::diagnostic::{Diagnostic, ObjectRef, Severity};
use crate::endpoints::{LegacySlices, SliceDef};
use crate::meta;
use crate::service::{self, ServiceDef, ServiceError, ServiceId};
use crate::snapshot::ClusterSnapshot;

/// The label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

type Key<'a> = (&'a str, &'a str);

/// Validated Services and the raw endpoint objects filed under them.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// Handled Services, sorted by `namespace/name`, each identity once.
    pub services: Vec<ServiceDef>,
    slices: HashMap<Key<'a>, Vec<&'a EndpointSlice>>,
    legacy: HashMap<Key<'a>, Vec<&'a Endpoints>>,
}

impl<'a> Inputs<'a> {
    pub fn build(snapshot: &'a ClusterSnapshot, diagnostics: &mut Vec<Diagnostic>) -> Self {
        let mut slices: HashMap<Key<'a>, Vec<&'a EndpointSlice>> = HashMap::new();
        for slice in &snapshot.endpoint_slices {
            let labels = slice.metadata.labels.as_ref();
            match labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) {
                Some(service) => {
                    let key = (meta::namespace(&slice.metadata), service.as_str());
                    slices.entry(key).or_default().push(slice);
                }
                None => diagnostics.push(Diagnostic {
                    severity: Severity::Warning,
                    object: meta::object_ref("EndpointSlice", &slice.metadata, true),
                    message: format!("has no {SERVICE_NAME_LABEL} label; ignored"),
                }),
            }
        }
        let mut legacy: HashMap<Key<'a>, Vec<&'a Endpoints>> = HashMap::new();
        for endpoints in &snapshot.endpoints {
            if let Some(name) = endpoints.metadata.name.as_deref() {
                let key = (meta::namespace(&endpoints.metadata), name);
                legacy.entry(key).or_default().push(endpoints);
            }
        }
        Inputs {
            services: services(&snapshot.services, diagnostics),
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
        let key = (id.namespace.as_str(), id.name.as_str());
        let mut out = Vec::new();
        if let Some(raw) = self.slices.get(&key) {
            for slice in raw.iter().filter(|s| s.address_type != "FQDN") {
                match SliceDef::try_from(*slice) {
                    Ok(def) => out.push(def),
                    Err(err) => diagnostics.push(Diagnostic {
                        severity: Severity::Error,
                        object: meta::object_ref("EndpointSlice", &slice.metadata, true),
                        message: format!("{err}; skipped"),
                    }),
                }
            }
        } else if let Some(raw) = self.legacy.get(&key) {
            for endpoints in raw {
                match LegacySlices::try_from(*endpoints) {
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
fn services(raw: &[Service], diagnostics: &mut Vec<Diagnostic>) -> Vec<ServiceDef> {
    let mut by_id: BTreeMap<ServiceId, (&Service, ServiceDef)> = BTreeMap::new();
    let mut ambiguous = BTreeSet::new();
    for object in raw.iter().filter(|s| service::is_proxied(s)) {
        let def = match ServiceDef::try_from(object) {
            Ok(def) => def,
            Err(err) => {
                diagnostics.push(service_diagnostic(object, &err));
                continue;
            }
        };
        if ambiguous.contains(&def.id) {
            continue;
        }
        match by_id.get(&def.id) {
            Some((first, _)) if *first == object => {}
            Some(_) => {
                let id = def.id.clone();
                by_id.remove(&id);
                diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    object: ObjectRef::new("Service", Some(&id.namespace), id.name.as_str()),
                    message: "is defined more than once with different contents; skipped".into(),
                });
                ambiguous.insert(id);
            }
            None => {
                by_id.insert(def.id.clone(), (object, def));
            }
        }
    }
    by_id.into_values().map(|(_, def)| def).collect()
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
