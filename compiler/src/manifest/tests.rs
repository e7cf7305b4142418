//! Decoding tests: documents, lists, JSON, comments and error positions.

#![allow(clippy::unwrap_used)]

use super::*;

fn kinds(decoded: &[Decoded]) -> Vec<(usize, String)> {
    decoded
        .iter()
        .map(|d| {
            let kind = match &d.object {
                Object::Service(s) => {
                    format!("Service {}", s.metadata.name.as_deref().unwrap_or(""))
                }
                Object::EndpointSlice(s) => {
                    format!("EndpointSlice {}", s.metadata.name.as_deref().unwrap_or(""))
                }
                Object::Endpoints(_) => "Endpoints".to_owned(),
                Object::Node(_) => "Node".to_owned(),
                Object::ServiceCidr(_) => "ServiceCIDR".to_owned(),
                Object::Other(o) => format!("Other {}", o.kind),
            };
            (d.line, kind)
        })
        .collect()
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  clusterIP: 198.19.0.10\n  ports:\n  - port: 80\n";

#[test]
fn multi_document_yaml_decodes_every_object_with_its_line() {
    let text = format!(
        "# a comment\n---\n{SERVICE}---\n\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\naddressType: IPv4\nendpoints: []\n"
    );
    let decoded = decode(&text).unwrap();
    assert_eq!(
        kinds(&decoded),
        [
            (3, "Service web".to_owned()),
            (14, "EndpointSlice web-1".to_owned())
        ]
    );
}

#[test]
fn kubectl_lists_are_expanded_with_item_lines() {
    let text = "apiVersion: v1\nitems:\n- apiVersion: v1\n  kind: Node\n  metadata:\n    name: node-1\n- apiVersion: networking.k8s.io/v1\n  kind: ServiceCIDR\n  metadata:\n    name: kubernetes\nkind: List\nmetadata: {}\n";
    let decoded = decode(text).unwrap();
    assert_eq!(
        kinds(&decoded),
        [(3, "Node".to_owned()), (7, "ServiceCIDR".to_owned())]
    );
}

#[test]
fn typed_lists_are_expanded_too() {
    let text = "apiVersion: v1\nkind: ServiceList\nitems: [{apiVersion: v1, kind: Service, metadata: {name: a}}]\n";
    let decoded = decode(text).unwrap();
    assert_eq!(kinds(&decoded), [(1, "Service a".to_owned())]);
}

#[test]
fn json_documents_decode_with_their_lines() {
    let text = "\n{\"apiVersion\": \"v1\", \"kind\": \"Endpoints\", \"metadata\": {\"name\": \"web\"}}\n\n{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [{\"apiVersion\": \"v1\", \"kind\": \"Node\", \"metadata\": {\"name\": \"n\"}}]}\n";
    let decoded = decode(text).unwrap();
    assert_eq!(
        kinds(&decoded),
        [(2, "Endpoints".to_owned()), (4, "Node".to_owned())]
    );
}

#[test]
fn empty_and_comment_only_documents_are_skipped() {
    assert_eq!(decode("").unwrap(), []);
    assert_eq!(decode("---\n# nothing\n---\n...\n").unwrap(), []);
}

#[test]
fn other_kinds_come_back_with_their_value() {
    let text = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nclusterCIDR: 198.18.0.0/16\n";
    let decoded = decode(text).unwrap();
    let Object::Other(other) = &decoded[0].object else {
        panic!("{decoded:?}")
    };
    assert_eq!(other.api_version, "kubeproxy.config.k8s.io/v1alpha1");
    assert_eq!(other.name, None);
    assert_eq!(other.value["clusterCIDR"], "198.18.0.0/16");
}

#[test]
fn unknown_api_versions_of_known_kinds_are_other() {
    let text =
        "apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata:\n  name: old\n";
    let decoded = decode(text).unwrap();
    assert_eq!(kinds(&decoded), [(1, "Other EndpointSlice".to_owned())]);
}

#[test]
fn syntax_error_in_the_third_document_reports_the_whole_text_line() {
    let text = format!(
        "{SERVICE}---\n{SERVICE}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: x\n   bad: [\n"
    );
    let err = decode(&text).unwrap_err();
    assert_eq!(err.line, 23, "{err}");
    assert!(err.column.is_some());
}

#[test]
fn shape_error_in_the_third_document_reports_the_field_and_line() {
    let text = format!(
        "{SERVICE}---\n{SERVICE}---\n{}",
        SERVICE.replace("port: 80", "port: eighty")
    );
    let err = decode(&text).unwrap_err();
    assert_eq!((err.line, err.column), (26, Some(11)), "{err}");
    assert!(
        err.message.starts_with("spec.ports[0].port: invalid type"),
        "{err}"
    );
    assert!(!err.message.contains("at line"), "{err}");
}

#[test]
fn json_syntax_errors_carry_line_and_column() {
    let err = decode("{\"apiVersion\": \"v1\",\n \"kind\": }\n").unwrap_err();
    assert_eq!(err.line, 2, "{err}");
}

#[test]
fn documents_without_kind_are_errors() {
    let err = decode("a: 1\n---\nb: 2\n").unwrap_err();
    assert_eq!(err.line, 1);
    assert!(err.message.contains("not a Kubernetes object"));
}

#[test]
fn yaml_flow_style_is_not_mistaken_for_json() {
    let text = "{apiVersion: v1, kind: Node, metadata: {name: n}}\n";
    assert_eq!(kinds(&decode(text).unwrap()), [(1, "Node".to_owned())]);
}

#[test]
fn syntax_error_message_names_only_whole_text_lines() {
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\n\
                kind: Service\nmetadata:\n  name: b\nspec:\n  ports: [ {port: 80}\n";
    let err = decode(text).expect_err("unterminated flow sequence");
    assert_eq!(err.line, 11);
    assert!(
        err.message.contains("flow sequence at line 10 column 10"),
        "message should name the opening bracket by its line in the whole text: {}",
        err.message
    );
    assert!(
        !err.message.contains("line 6 "),
        "document-relative line leaked: {}",
        err.message
    );
}
