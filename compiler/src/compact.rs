//! Trims decoded Kubernetes objects to what nftproxy keeps: no spare capacity, no fields it never reads.
//!
//! A decoder grows its vectors by doubling, so a list of 10 holds room for 16. Both
//! readers (`--manifests` and the API server) hold every object for as long as it exists,
//! so they trim each one once, as it arrives. EndpointSlices, a node's bulk, are converted
//! instead (see `compact_slice`).

use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::networking::v1::ServiceCIDR;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::service::SERVICE_PROXY_NAME_LABEL;

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
    /// Also drops what a proxy never reads of a Service: its selector (the EndpointSlice
    /// controller reads it; a proxy reads the slices), its annotations, its labels but
    /// the one that hands it to another proxy, and its status conditions. A selector
    /// alone is a B-tree node of some 540 bytes.
    fn compact(&mut self) {
        compact_meta(&mut self.metadata);
        self.metadata.annotations = None;
        if let Some(labels) = &mut self.metadata.labels {
            labels.retain(|key, _| key == SERVICE_PROXY_NAME_LABEL);
            if labels.is_empty() {
                self.metadata.labels = None;
            }
        }
        if let Some(status) = &mut self.status {
            status.conditions = None;
        }
        if let Some(spec) = &mut self.spec {
            spec.selector = None;
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
    use crate::service::{ServiceDef, is_proxied};

    fn service(yaml: &str) -> Service {
        let Object::Service(service) = decode(yaml).unwrap().remove(0).object else {
            panic!("not a service");
        };
        *service
    }

    #[test]
    fn compacting_a_service_drops_what_a_proxy_never_reads_and_keeps_its_definition() {
        let mut full = service(
            "apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  labels: {app: web, tier: front}
  annotations: {team: a, kubectl.kubernetes.io/last-applied-configuration: '{}'}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.10
  selector: {app: web}
  externalIPs: [192.0.2.7]
  sessionAffinity: ClientIP
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30080}]
status:
  conditions: [{type: Ready, status: 'True', reason: Ok, message: ok, lastTransitionTime: '2026-01-01T00:00:00Z'}]
  loadBalancer: {ingress: [{ip: 203.0.113.9}]}
",
        );
        let before = ServiceDef::try_from(&full).unwrap();
        full.compact();
        assert_eq!(full.metadata.labels, None);
        assert_eq!(full.metadata.annotations, None);
        let (spec, status) = (full.spec.as_ref().unwrap(), full.status.as_ref().unwrap());
        assert_eq!(spec.selector, None);
        assert_eq!(status.conditions, None);
        assert!(status.load_balancer.is_some());
        assert_eq!(ServiceDef::try_from(&full).unwrap(), before);
        assert!(is_proxied(&full));
    }

    #[test]
    fn compacting_a_service_of_another_proxy_keeps_the_label_that_says_so() {
        let mut foreign = service(
            "apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {app: web, service.kubernetes.io/service-proxy-name: other}
spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}
",
        );
        assert!(!is_proxied(&foreign));
        foreign.compact();
        let labels = foreign.metadata.labels.as_ref().unwrap();
        assert_eq!(
            labels.keys().collect::<Vec<_>>(),
            [SERVICE_PROXY_NAME_LABEL]
        );
        assert!(!is_proxied(&foreign));
    }

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
