//! EndpointSlices as nftproxy keeps them: what the compiler reads, in a sixth of the API type's memory.
//!
//! The API's `Endpoint` is a 352-byte struct before its strings (a target reference of
//! seven optional strings, deprecated topology, hostname, zone…), and a node holds one
//! per endpoint of every proxied Service: at 100k endpoints, some 45 MB. A proxy reads an
//! endpoint's first address, its conditions, its node name and its hints, and of the
//! slice's labels (a copy of all its Service's labels) only the Service's name. So both readers
//! (manifests and the API server) convert each slice as it arrives into a
//! [`CompactSlice`], whose endpoints take under a sixth of that with their address inline
//! and their node's name shared (see `compact_text`), and keep only that.
//!
//! A `CompactSlice` is an EndpointSlice to everything that handles API objects
//! (`k8s_openapi::Resource` and `Metadata`, hence kube's `Resource` too): it has the same
//! kind, group, version and metadata.

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointHints, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use std::sync::Arc;

use crate::compact::compact_meta;
use crate::compact_text::{InlineStr, node_name};

/// The label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The annotation holding when the change behind an EndpointSlice update happened (set by
/// the EndpointSlice controller; network programming latency is measured from it).
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// An EndpointSlice reduced to what the compiler reads (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactSlice {
    /// Without managed fields, annotations and labels: the one label and the one
    /// annotation read are in `service_name` and `trigger_time`.
    pub metadata: ObjectMeta,
    /// The `kubernetes.io/service-name` label: the Service the slice belongs to.
    pub service_name: Option<Box<str>>,
    /// The [`TRIGGER_TIME_ANNOTATION`], as written.
    pub trigger_time: Option<Box<str>>,
    pub address_type: InlineStr,
    /// `ports`; absent and empty are the same to a proxy (no port matches).
    pub ports: Box<[CompactPort]>,
    pub endpoints: Box<[CompactEndpoint]>,
}

/// One port of a [`CompactSlice`]: name, number and protocol, without `appProtocol`
/// (which a proxy does not read) and with its strings inline (a port name has at most 15
/// characters).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactPort {
    pub name: Option<InlineStr>,
    pub port: Option<i32>,
    pub protocol: Option<InlineStr>,
}

impl From<EndpointPort> for CompactPort {
    fn from(port: EndpointPort) -> Self {
        CompactPort {
            name: port.name.map(InlineStr::from),
            port: port.port,
            protocol: port.protocol.map(InlineStr::from),
        }
    }
}

/// One endpoint of a [`CompactSlice`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactEndpoint {
    /// `addresses[0]`: the API says its addresses are fungible and consumers may use the
    /// first alone, as kube-proxy does. `None` when the list is empty.
    pub address: Option<InlineStr>,
    /// `conditions.ready`, `.serving`, `.terminating`, unset when the API left them unset.
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
    /// Shared with every endpoint on the same node (see [`node_name`]).
    pub node_name: Option<Arc<str>>,
    pub hints: Option<Box<EndpointHints>>,
}

impl From<EndpointSlice> for CompactSlice {
    fn from(slice: EndpointSlice) -> Self {
        let mut metadata = slice.metadata;
        compact_meta(&mut metadata);
        let trigger_time = metadata
            .annotations
            .take()
            .and_then(|mut annotations| annotations.remove(TRIGGER_TIME_ANNOTATION))
            .map(String::into_boxed_str);
        let service_name = metadata
            .labels
            .take()
            .and_then(|mut labels| labels.remove(SERVICE_NAME_LABEL))
            .map(String::into_boxed_str);
        CompactSlice {
            metadata,
            service_name,
            trigger_time,
            address_type: slice.address_type.into(),
            ports: slice
                .ports
                .into_iter()
                .flatten()
                .map(CompactPort::from)
                .collect(),
            endpoints: slice
                .endpoints
                .into_iter()
                .map(CompactEndpoint::from)
                .collect(),
        }
    }
}

impl From<Endpoint> for CompactEndpoint {
    fn from(endpoint: Endpoint) -> Self {
        let conditions = endpoint.conditions.unwrap_or_default();
        CompactEndpoint {
            address: endpoint.addresses.into_iter().next().map(InlineStr::from),
            ready: conditions.ready,
            serving: conditions.serving,
            terminating: conditions.terminating,
            node_name: endpoint.node_name.map(node_name),
            hints: endpoint.hints.map(Box::new),
        }
    }
}

impl k8s_openapi::Resource for CompactSlice {
    const API_VERSION: &'static str = <EndpointSlice as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <EndpointSlice as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <EndpointSlice as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <EndpointSlice as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str =
        <EndpointSlice as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = <EndpointSlice as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for CompactSlice {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::discovery::v1::{EndpointConditions, ForZone};

    use super::*;
    use crate::compact::LAST_APPLIED;

    #[test]
    fn an_endpoint_keeps_its_first_address_conditions_node_and_hints_in_a_sixth_of_the_room() {
        let hints = EndpointHints {
            for_zones: Some(vec![ForZone { name: "a".into() }]),
            for_nodes: None,
        };
        let endpoint = Endpoint {
            addresses: vec!["10.0.0.1".into(), "10.0.0.2".into()],
            conditions: Some(EndpointConditions {
                ready: Some(false),
                serving: Some(true),
                terminating: None,
            }),
            node_name: Some("node-1".into()),
            hints: Some(hints.clone()),
            hostname: Some("pod-1".into()),
            zone: Some("a".into()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                name: Some("pod-1".into()),
                ..ObjectReference::default()
            }),
            ..Endpoint::default()
        };
        let compact = CompactEndpoint::from(endpoint);
        assert_eq!(
            compact,
            CompactEndpoint {
                address: Some("10.0.0.1".into()),
                ready: Some(false),
                serving: Some(true),
                terminating: None,
                node_name: Some("node-1".into()),
                hints: Some(Box::new(hints)),
            }
        );
        assert_eq!(
            CompactEndpoint::from(Endpoint::default()),
            CompactEndpoint::default()
        );
        assert!(
            size_of::<CompactEndpoint>() * 6 <= size_of::<Endpoint>(),
            "{} bytes against {}",
            size_of::<CompactEndpoint>(),
            size_of::<Endpoint>()
        );
    }

    #[test]
    fn a_slice_keeps_its_identity_ports_and_endpoints_and_drops_what_nobody_reads() {
        let mut metadata = ObjectMeta {
            name: Some("web-1".into()),
            namespace: Some("default".into()),
            uid: Some("u-1".into()),
            labels: Some(
                [
                    ("kubernetes.io/service-name".into(), "web".into()),
                    ("app".into(), "web".into()),
                ]
                .into(),
            ),
            annotations: Some(
                [
                    (LAST_APPLIED.into(), "{}".into()),
                    (
                        TRIGGER_TIME_ANNOTATION.into(),
                        "2026-11-23T10:00:00Z".into(),
                    ),
                    ("other".into(), "dropped".into()),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        };
        let port = EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            app_protocol: None,
        };
        let slice = EndpointSlice {
            metadata: metadata.clone(),
            address_type: "IPv4".into(),
            ports: Some(vec![port.clone()]),
            endpoints: vec![Endpoint {
                addresses: vec!["10.0.0.1".into()],
                ..Endpoint::default()
            }],
        };
        let compact = CompactSlice::from(slice);
        metadata.annotations = None;
        metadata.labels = None;
        assert_eq!(compact.metadata, metadata);
        assert_eq!(compact.service_name.as_deref(), Some("web"));
        assert_eq!(
            compact.trigger_time.as_deref(),
            Some("2026-11-23T10:00:00Z")
        );
        assert_eq!(compact.address_type, "IPv4");
        assert_eq!(
            &*compact.ports,
            [CompactPort {
                name: Some("http".into()),
                port: Some(8080),
                protocol: Some("TCP".into()),
            }]
        );
        assert!(
            compact.ports[0]
                .name
                .as_ref()
                .is_some_and(InlineStr::is_inline)
        );
        assert_eq!(compact.endpoints.len(), 1);
        assert_eq!(compact.endpoints[0].address.as_deref(), Some("10.0.0.1"));
        assert_eq!(
            <CompactSlice as k8s_openapi::Resource>::KIND,
            "EndpointSlice"
        );
    }
}
