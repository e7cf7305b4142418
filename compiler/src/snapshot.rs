//! The compiler's input: the Kubernetes objects a node's proxy needs, as the API serves them.

use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceCIDR;

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
