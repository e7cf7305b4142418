//! The `external-…` chain of a service port: where NodePort, externalIP and LoadBalancer
//! IP traffic goes before it reaches endpoints (kube-proxy's external traffic chain).
//!
//! - `externalTrafficPolicy: Cluster`: mark for masquerade, then `goto` the cluster-wide
//!   chain.
//! - `Local`: pod traffic (the local-traffic detector, when there is one) and the node's
//!   own traffic (`fib saddr type local`, also masqueraded, since its source is a local
//!   address) short-circuit to the cluster-wide chain; everything else goes to the
//!   `local-…` chain of this node's endpoints, unmasqueraded. Without local endpoints that
//!   last rule is left out: the packet is not DNATed, and `no-endpoint-…` drops it.

use nftproxy_rules::{AddrType, BitOp, Chain, Expr, FibAddr, Rule, Stmt, Value, Verdict};

use crate::layout;

/// The external chain for `externalTrafficPolicy: Cluster`.
pub fn cluster(name: &str, mark: u32, cluster_chain: &str) -> Chain {
    Chain::regular(name)
        .with_rule(Rule::new(vec![layout::set_mark(BitOp::Or, mark)]))
        .with_rule(goto(vec![], cluster_chain))
}

/// The external chain for `externalTrafficPolicy: Local`. `local_chain` is `None` when
/// this node has no usable endpoint.
pub fn local(
    name: &str,
    mark: u32,
    detector: Option<&Stmt>,
    cluster_chain: &str,
    local_chain: Option<&str>,
) -> Chain {
    let from_node = || {
        Stmt::eq(
            Expr::FibType(FibAddr::Saddr),
            Expr::Literal(Value::AddrType(AddrType::Local)),
        )
    };
    let mut chain = Chain::regular(name);
    if let Some(detector) = detector {
        chain.push(goto(vec![detector.clone()], cluster_chain));
    }
    chain.push(Rule::new(vec![
        from_node(),
        layout::set_mark(BitOp::Or, mark),
    ]));
    chain.push(goto(vec![from_node()], cluster_chain));
    if let Some(local_chain) = local_chain {
        chain.push(goto(vec![], local_chain));
    }
    chain
}

fn goto(mut stmts: Vec<Stmt>, target: &str) -> Rule {
    stmts.push(Stmt::Verdict(Verdict::Goto(target.to_owned().into())));
    Rule::new(stmts)
}
