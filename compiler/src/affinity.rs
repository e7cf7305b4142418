//! Session affinity (`sessionAffinity: ClientIP`): a client keeps its endpoint until it has
//! opened no new connection to the service port for `timeoutSeconds`.
//!
//! As in kube-proxy's nftables mode, each endpoint of an affinity port has a set of the
//! client addresses that stick to it (`affinity-…`, see `naming`), with `flags timeout` and
//! the Service's timeout. Only a connection's first packet traverses the NAT chains, so
//! every rule that DNATs a new connection also does `update @set { ip saddr }`, which adds
//! the client or restarts its timer: the timeout counts from the client's last new
//! connection. A dnat chain of an affinity port is then:
//!
//! 1. per endpoint, `ip saddr @SET meta l4proto P update @SET { ip saddr } dnat to E:PORT`
//!    (a known client goes back to its endpoint);
//! 2. the usual uniform cascade, each rule with `update @SET { ip saddr }` before the dnat;
//! 3. the plain cascade again, without updates. An `update` that cannot add an element (the
//!    set is full: nft gives a dynamic set 65535 elements) ends its rule without a DNAT;
//!    these rules then still spread the client over the endpoints, without affinity,
//!    instead of letting the connection through un-NATed.
//!
//! The sets belong to the service port, not to a chain: the `service-`, `local-` and
//! `cluster-` chains of one port share them, so a client keeps its endpoint whichever path
//! it comes by.

use k8s_openapi::api::core::v1::ServiceSpec;
use nftproxy_rules::{CmpOp, Expr, MetaKey, Rule, Set, SetFlag, Stmt, Value};

use crate::family::IpFamily;
use crate::naming::AffinityNames;
use crate::protocol::Protocol;
use crate::select::Target;

/// `timeoutSeconds` when the Service gives none (3 hours, the API's default).
pub const DEFAULT_TIMEOUT_SECS: u32 = 10800;
/// The largest `timeoutSeconds` the API accepts (one day).
pub const MAX_TIMEOUT_SECS: u32 = 86400;

/// The validated session affinity of a Service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionAffinity {
    /// `Some(timeout in seconds)` for `ClientIP`, `None` for no affinity.
    pub client_ip: Option<u32>,
    /// Warnings about values that were replaced (reported by the compile loop).
    pub notes: Vec<String>,
}

impl SessionAffinity {
    /// Reads `spec.sessionAffinity` and `spec.sessionAffinityConfig`. Never fails: an
    /// unknown affinity counts as `None` and an out-of-range timeout as the default, each
    /// with a note.
    pub fn parse(spec: &ServiceSpec) -> Self {
        let mut notes = Vec::new();
        let client_ip = match spec.session_affinity.as_deref() {
            None | Some("" | "None") => None,
            Some("ClientIP") => Some(timeout(spec, &mut notes)),
            Some(other) => {
                notes.push(format!(
                    "spec.sessionAffinity {other:?} is not None or ClientIP; treated as None"
                ));
                None
            }
        };
        SessionAffinity { client_ip, notes }
    }
}

/// `sessionAffinityConfig.clientIP.timeoutSeconds`, or the default.
fn timeout(spec: &ServiceSpec, notes: &mut Vec<String>) -> u32 {
    let configured = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds);
    let Some(seconds) = configured else {
        return DEFAULT_TIMEOUT_SECS;
    };
    match u32::try_from(seconds) {
        Ok(s) if (1..=MAX_TIMEOUT_SECS).contains(&s) => s,
        _ => {
            notes.push(format!(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds {seconds} is out of range \
                 1-{MAX_TIMEOUT_SECS}; using {DEFAULT_TIMEOUT_SECS}"
            ));
            DEFAULT_TIMEOUT_SECS
        }
    }
}

/// The affinity of one service port, as the dnat chains of the port need it.
#[derive(Debug, Clone, Copy)]
pub struct Affinity<'a> {
    pub names: &'a AffinityNames,
    pub timeout_secs: u32,
}

impl Affinity<'_> {
    /// The name of the set of the clients of `target`.
    pub fn set_name(&self, target: &Target) -> String {
        self.names.set(target.addr, target.port)
    }

    /// The (empty) set of the clients of `target`: `type ADDR; flags timeout; timeout Ns`.
    /// The kernel fills it from the packet path; a full sync ignores the elements it lists
    /// (they carry an expiry), so they survive every sync.
    pub fn set(&self, target: &Target, name: String) -> Set {
        let family = IpFamily::of(&target.addr);
        let mut set = Set::set(name, vec![family.addr_type()]).with_flag(SetFlag::Timeout);
        set.timeout_secs = Some(self.timeout_secs);
        set
    }
}

/// `ip saddr @SET meta l4proto P update @SET { ip saddr } dnat to E:PORT`: a client in the
/// set of `target` goes back to it.
pub fn sticky_rule(target: &Target, set: &str, protocol: Protocol) -> Rule {
    let family = IpFamily::of(&target.addr);
    Rule::new(vec![
        Stmt::Match {
            left: Expr::Payload(family.saddr()),
            op: CmpOp::In,
            right: Expr::SetRef(set.into()),
        },
        Stmt::eq(
            Expr::Meta(MetaKey::L4proto),
            Expr::Literal(Value::Proto(protocol.l4())),
        ),
        update(target, set),
        Stmt::Dnat {
            addr: target.addr,
            port: Some(target.port),
        },
    ])
}

/// `update @SET { ip saddr }`: adds the client to the set of `target`, or restarts its timer.
pub fn update(target: &Target, set: &str) -> Stmt {
    Stmt::UpdateSet {
        set: set.to_owned(),
        key: Expr::Payload(IpFamily::of(&target.addr).saddr()),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ClientIPConfig, SessionAffinityConfig};

    use super::*;

    fn spec(affinity: Option<&str>, timeout: Option<i32>) -> ServiceSpec {
        ServiceSpec {
            session_affinity: affinity.map(str::to_owned),
            session_affinity_config: timeout.map(|t| SessionAffinityConfig {
                client_ip: Some(ClientIPConfig {
                    timeout_seconds: Some(t),
                }),
            }),
            ..ServiceSpec::default()
        }
    }

    #[test]
    fn client_ip_without_a_timeout_uses_three_hours() {
        let parsed = SessionAffinity::parse(&spec(Some("ClientIP"), None));
        assert_eq!(parsed.client_ip, Some(10800));
        assert!(parsed.notes.is_empty());
    }

    #[test]
    fn timeouts_at_both_ends_of_the_range_are_kept() {
        for t in [1, 86400] {
            let parsed = SessionAffinity::parse(&spec(Some("ClientIP"), Some(t)));
            assert_eq!(parsed.client_ip, u32::try_from(t).ok());
            assert!(parsed.notes.is_empty());
        }
    }

    #[test]
    fn timeouts_out_of_range_fall_back_to_the_default_with_a_note() {
        for t in [0, -5, 86401] {
            let parsed = SessionAffinity::parse(&spec(Some("ClientIP"), Some(t)));
            assert_eq!(parsed.client_ip, Some(DEFAULT_TIMEOUT_SECS), "{t}");
            assert_eq!(parsed.notes.len(), 1, "{t}");
            assert!(
                parsed.notes[0].contains(&t.to_string()),
                "{:?}",
                parsed.notes
            );
        }
    }

    #[test]
    fn none_and_unknown_affinities_have_no_client_ip_affinity() {
        assert_eq!(
            SessionAffinity::parse(&spec(None, Some(60))).client_ip,
            None
        );
        let none = SessionAffinity::parse(&spec(Some("None"), Some(60)));
        assert_eq!(none, SessionAffinity::default());
        let unknown = SessionAffinity::parse(&spec(Some("Cookie"), None));
        assert_eq!(unknown.client_ip, None);
        assert_eq!(unknown.notes.len(), 1);
        assert!(
            unknown.notes[0].contains("\"Cookie\""),
            "{:?}",
            unknown.notes
        );
    }
}
