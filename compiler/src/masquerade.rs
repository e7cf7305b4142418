//! The one masquerade-marking rule at the top of `services`, chosen per family from the
//! configuration (`masqueradeAll`, `detectLocalMode`) as `docs/ruleset.md` specifies.
//!
//! One rule per table instead of one per service (kube-proxy's choice): no chain grows with
//! the number of services and nothing is evaluated twice. A detector that knows nothing
//! about a family (no cluster CIDR of it, no pod CIDR of it) gives no rule in that family.

use ipnet::IpNet;
use nftproxy_rules::{BitOp, Expr, MetaKey, Rule, Stmt, Value};

use crate::config::{CompileConfig, DetectLocal};
use crate::diagnostic::{Diagnostic, ObjectRef, Severity};
use crate::family::IpFamily;
use crate::layout::{self, CLUSTER_IPS};

/// Linux limits interface names to 15 bytes.
const IFNAME_MAX: usize = 15;

/// The per-family outcome of the configuration, indexed by [`IpFamily::index`].
#[derive(Debug, Clone, Default)]
pub struct Masquerade {
    /// The masquerade-marking rule at the top of `services`.
    pub rules: [Option<Rule>; 2],
    /// The local-traffic detector as a positive match (`ip saddr CIDR`, `iifname "br0"`):
    /// what `externalTrafficPolicy: Local` short-circuits as pod traffic.
    pub local: [Option<Stmt>; 2],
}

/// The masquerade rule and local-traffic detector of each family.
/// `pod_cidrs` are this node's `spec.podCIDRs` (for `NodeCIDR`).
pub fn rules(
    config: &CompileConfig,
    pod_cidrs: &[IpNet],
    mark: u32,
    diagnostics: &mut Vec<Diagnostic>,
) -> Masquerade {
    let mut interface = |name: &str, wildcard: bool, field: &str| {
        let valid = valid_ifname(name);
        if !valid {
            diagnostics.push(config_error(format!(
                "detectLocal.{field} {name:?} is not a valid interface name; ClusterIP traffic is not masqueraded"
            )));
        }
        valid.then(|| Value::ifname(name, wildcard))
    };
    let iif = match &config.detect_local {
        DetectLocal::BridgeInterface(name) => interface(name, false, "bridgeInterface"),
        DetectLocal::InterfaceNamePrefix(prefix) => interface(prefix, true, "interfaceNamePrefix"),
        _ => None,
    };
    let local = IpFamily::ALL.map(|family| match &config.detect_local {
        DetectLocal::None => None,
        DetectLocal::ClusterCidr(cidrs) => source_in(family, cidrs),
        DetectLocal::NodeCidr => source_in(family, pod_cidrs),
        DetectLocal::BridgeInterface(_) | DetectLocal::InterfaceNamePrefix(_) => iif
            .clone()
            .map(|name| Stmt::eq(Expr::Meta(MetaKey::Iifname), Expr::Literal(name))),
    });
    let rules = IpFamily::ALL.map(|family| {
        let condition = if config.masquerade_all {
            Some(None)
        } else {
            local[family.index()]
                .clone()
                .map(|stmt| Some(negated(stmt)))
        };
        condition.map(|condition| rule(family, condition, mark))
    });
    Masquerade { rules, local }
}

/// `left != right` from `left == right` (or `left right-set`).
fn negated(stmt: Stmt) -> Stmt {
    match stmt {
        Stmt::Match { left, right, .. } => Stmt::ne(left, right),
        other => other,
    }
}

/// `ip daddr @cluster-ips [CONDITION] meta mark set meta mark | MARK`
fn rule(family: IpFamily, condition: Option<Stmt>, mark: u32) -> Rule {
    let mut stmts = vec![Stmt::is_in(
        Expr::Payload(family.daddr()),
        Expr::SetRef(CLUSTER_IPS.into()),
    )];
    stmts.extend(condition);
    stmts.push(layout::set_mark(BitOp::Or, mark));
    Rule::new(stmts)
}

/// `ip saddr CIDR` (or `ip saddr { CIDR, … }`), from the CIDRs of `family`; `None` if none.
fn source_in(family: IpFamily, cidrs: &[IpNet]) -> Option<Stmt> {
    let mut values: Vec<Value> = cidrs
        .iter()
        .filter(|net| IpFamily::of_net(net) == family)
        .map(|net| Value::Prefix(Box::new(net.trunc())))
        .collect();
    values.sort();
    values.dedup();
    let saddr = Expr::Payload(family.saddr());
    match values.len() {
        0 => None,
        1 => Some(Stmt::eq(saddr, Expr::Literal(values.remove(0)))),
        _ => Some(Stmt::is_in(saddr, Expr::anon_set(values))),
    }
}

/// Whether `name` can be an interface name (or a prefix of one) that renders safely
/// inside nft's double quotes.
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b'+'))
}

fn config_error(message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        object: ObjectRef::new("KubeProxyConfiguration", None, "config"),
        message,
    }
}
