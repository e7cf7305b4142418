//! The compiler's input: the Kubernetes objects a node's proxy needs, as the API serves them.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::networking::v1::ServiceCIDR;

use crate::compact_slice::CompactSlice;
use crate::manifest::{Object, OtherObject};

/// Everything the compiler reads from the cluster. Order of the vectors does not matter:
/// the compiler sorts what it needs, so the output depends only on the set of objects.
///
/// The objects are shared (`Arc`): a controller's reflector stores hand them out that way, so
/// taking a snapshot copies pointers, not objects, and cloning a snapshot is cheap too.
#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot {
    pub services: Vec<Arc<Service>>,
    /// EndpointSlices, as kept (see [`CompactSlice`]).
    pub endpoint_slices: Vec<Arc<CompactSlice>>,
    /// Legacy `v1/Endpoints`; converted to slices for services that have no EndpointSlice.
    pub endpoints: Vec<Arc<Endpoints>>,
    /// Nodes; the one named `CompileConfig::hostname` is this node.
    pub nodes: Vec<Arc<Node>>,
    pub service_cidrs: Vec<Arc<ServiceCIDR>>,
}

impl ClusterSnapshot {
    /// Adds a decoded object to the snapshot. Objects of other kinds are handed back, for
    /// the caller to use (a `KubeProxyConfiguration`) or warn about.
    pub fn push(&mut self, object: Object) -> Option<OtherObject> {
        match object {
            Object::Service(o) => self.services.push(Arc::from(o)),
            Object::EndpointSlice(o) => self.endpoint_slices.push(Arc::from(o)),
            Object::Endpoints(o) => self.endpoints.push(Arc::from(o)),
            Object::Node(o) => self.nodes.push(Arc::from(o)),
            Object::ServiceCidr(o) => self.service_cidrs.push(Arc::from(o)),
            Object::Other(other) => return Some(other),
        }
        None
    }
}
