//! The compiler's input: the Kubernetes objects a node's proxy needs, as the API serves them.

use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceCIDR;

use crate::manifest::{Object, OtherObject};

/// Everything the compiler reads from the cluster. Order of the vectors does not matter:
/// the compiler sorts what it needs, so the output depends only on the set of objects.
#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot {
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    /// Legacy `v1/Endpoints`; converted to slices for services that have no EndpointSlice.
    pub endpoints: Vec<Endpoints>,
    /// Nodes; the one named `CompileConfig::hostname` is this node.
    pub nodes: Vec<Node>,
    pub service_cidrs: Vec<ServiceCIDR>,
}

impl ClusterSnapshot {
    /// Adds a decoded object to the snapshot. Objects of other kinds are handed back, for
    /// the caller to use (a `KubeProxyConfiguration`) or warn about.
    pub fn push(&mut self, object: Object) -> Option<OtherObject> {
        match object {
            Object::Service(o) => self.services.push(*o),
            Object::EndpointSlice(o) => self.endpoint_slices.push(*o),
            Object::Endpoints(o) => self.endpoints.push(*o),
            Object::Node(o) => self.nodes.push(*o),
            Object::ServiceCidr(o) => self.service_cidrs.push(*o),
            Object::Other(other) => return Some(other),
        }
        None
    }
}
