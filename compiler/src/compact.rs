//! Trims decoded Kubernetes objects to what nftproxy keeps: no spare capacity, no fields it never reads.
//!
//! A decoder grows its vectors by doubling, so a list of 10 holds room for 16. Both
//! readers (`--manifests` and the API server) hold every object for as long as it exists,
//! so they trim each one once, as it arrives. EndpointSlices, a node's bulk, are converted
//! instead (see `compact_slice`).

use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::networking::v1::ServiceCIDR;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The annotation in which `kubectl apply` keeps the last applied object.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// An object that can give back what the compiler does not need.
pub trait Compact {
    /// Drops managed fields and `kubectl apply`'s copy of the object (nothing reads
    /// them; together they are often bigger than the object) and spare capacity.
    fn compact(&mut self);
}

pub(crate) fn compact_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
    }
}

impl Compact for Service {
    fn compact(&mut self) {
        compact_meta(&mut self.metadata);
        if let Some(spec) = &mut self.spec {
            for list in [
                &mut spec.cluster_ips,
                &mut spec.external_ips,
                &mut spec.ip_families,
                &mut spec.load_balancer_source_ranges,
            ]
            .into_iter()
            .flatten()
            {
                list.shrink_to_fit();
            }
            if let Some(ports) = &mut spec.ports {
                ports.shrink_to_fit();
            }
        }
    }
}

impl Compact for Endpoints {
    fn compact(&mut self) {
        compact_meta(&mut self.metadata);
        for subset in self.subsets.iter_mut().flatten() {
            for list in [&mut subset.addresses, &mut subset.not_ready_addresses]
                .into_iter()
                .flatten()
            {
                list.shrink_to_fit();
            }
        }
    }
}

impl Compact for Node {
    fn compact(&mut self) {
        compact_meta(&mut self.metadata);
        // A node's status lists its container images, often hundreds of names.
        if let Some(status) = &mut self.status {
            status.images = None;
        }
    }
}

impl Compact for ServiceCIDR {
    fn compact(&mut self) {
        compact_meta(&mut self.metadata);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Object, decode};

    #[test]
    fn compacting_a_node_drops_its_image_list_and_keeps_its_addresses() {
        let yaml = "apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {topology.kubernetes.io/zone: a}}
status:
  addresses: [{type: InternalIP, address: 192.168.0.1}]
  images: [{names: [registry/app:1], sizeBytes: 10}]
";
        let Object::Node(mut node) = decode(yaml).unwrap().remove(0).object else {
            panic!("not a node");
        };
        let before = node.clone();
        node.compact();
        let status = node.status.as_ref().unwrap();
        assert_eq!(status.images, None);
        assert_eq!(status.addresses, before.status.unwrap().addresses);
        assert_eq!(node.metadata.labels, before.metadata.labels);
    }
}
