//! `spec.loadBalancerSourceRanges`: which sources may open connections to a Service's
//! LoadBalancer ingress IPs (kube-proxy's firewall chains).
//!
//! Entries are read as kube-proxy reads them: surrounding spaces are trimmed, IPv4
//! octets with leading zeros are read as decimal and host bits are cleared, each with a
//! warning; anything else that is not a CIDR is ignored with a warning. Ranges apply to
//! the table of their family. A family whose LB IPs have ranges listed but no valid range
//! of that family drops every new connection to them (the allowed set is empty).
//!
//! The firewall chain of a service port holds one `return` rule per allowed prefix
//! (nested ones folded away), then `drop`. When a range contains one of the node's
//! addresses, the LB IPs themselves are allowed too: a VIP-style load balancer can loop
//! node-originated traffic back with the VIP as its source.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use nftproxy_rules::{Chain, Expr, Rule, Stmt, Value, Verdict};

use crate::cidrs;
use crate::family::IpFamily;

/// The validated `spec.loadBalancerSourceRanges` of a LoadBalancer Service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceRanges {
    /// Whether the spec lists any entry at all (valid or not).
    pub listed: bool,
    /// Valid prefixes per family ([`IpFamily::index`]), sorted, nested ones folded.
    pub nets: [Vec<IpNet>; 2],
    /// What was normalised or ignored, for warnings naming the Service.
    pub notes: Vec<String>,
}

impl SourceRanges {
    /// Reads the raw entries; never fails.
    pub fn parse(raw: &[String]) -> Self {
        let mut notes = Vec::new();
        let mut nets = Vec::new();
        for text in raw {
            match parse_entry(text) {
                Ok((net, exact)) => {
                    if !exact {
                        notes.push(format!(
                            "spec.loadBalancerSourceRanges entry {text:?} is read as {net}"
                        ));
                    }
                    nets.push(net);
                }
                Err(()) => notes.push(format!(
                    "spec.loadBalancerSourceRanges entry {text:?} is not a CIDR; ignored"
                )),
            }
        }
        SourceRanges {
            listed: !raw.is_empty(),
            nets: cidrs::fold_nested(nets),
            notes,
        }
    }
}

/// One entry as a prefix with host bits cleared, and whether it was written exactly so.
fn parse_entry(text: &str) -> Result<(IpNet, bool), ()> {
    let trimmed = text.trim();
    let (net, strict) = match trimmed.parse::<IpNet>() {
        Ok(net) => (net, true),
        Err(_) => (sloppy_ipv4(trimmed).ok_or(())?, false),
    };
    let truncated = net.trunc();
    // An IPv4 prefix has one canonical spelling; anything else (leading zeros) is noted.
    let canonical = matches!(net, IpNet::V6(_)) || net.to_string() == trimmed;
    Ok((
        truncated,
        strict && canonical && truncated == net && trimmed == text,
    ))
}

/// `a.b.c.d/len` with octets that may carry leading zeros, read as decimal (as Go's
/// `ParseCIDRSloppy` does).
fn sloppy_ipv4(text: &str) -> Option<IpNet> {
    let (addr, len) = text.split_once('/')?;
    let octets: Vec<u8> = addr
        .split('.')
        .map(|o| {
            let digits = !o.is_empty() && o.len() <= 3 && o.bytes().all(|b| b.is_ascii_digit());
            digits.then(|| o.parse::<u8>().ok()).flatten()
        })
        .collect::<Option<_>>()?;
    let [a, b, c, d] = <[u8; 4]>::try_from(octets).ok()?;
    let len = len.parse::<u8>().ok()?;
    let net = Ipv4Net::new(Ipv4Addr::new(a, b, c, d), len).ok()?;
    Some(IpNet::V4(net))
}

/// The firewall chain of one service port in `family`: sources in `ranges` (and, when a
/// range holds a node address, the LB IPs) return; the rest is dropped.
pub fn chain(
    name: &str,
    family: IpFamily,
    ranges: &SourceRanges,
    lb_ips: &[IpAddr],
    node_addresses: &[IpAddr],
) -> Chain {
    let nets = &ranges.nets[family.index()];
    let from_node = nets
        .iter()
        .any(|net| node_addresses.iter().any(|ip| net.contains(ip)));
    let mut allowed: Vec<IpNet> = nets.clone();
    if from_node {
        let uncovered = lb_ips
            .iter()
            .filter(|ip| !nets.iter().any(|net| net.contains(*ip)));
        allowed.extend(uncovered.map(|ip| IpNet::from(*ip)));
    }
    let mut chain = Chain::regular(name);
    for net in allowed {
        let source = Stmt::eq(
            Expr::Payload(family.saddr()),
            Expr::Literal(Value::prefix(net)),
        );
        chain.push(Rule::new(vec![source, Stmt::Verdict(Verdict::Return)]));
    }
    chain.push(Rule::new(vec![Stmt::Verdict(Verdict::Drop)]));
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> SourceRanges {
        let raw: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        SourceRanges::parse(&raw)
    }

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn exact_ranges_are_split_by_family_without_notes() {
        let ranges = parse(&["203.0.113.0/25", "2001:db8:113::/64"]);
        assert!(ranges.listed);
        assert_eq!(
            ranges.nets,
            [vec![net("203.0.113.0/25")], vec![net("2001:db8:113::/64")]]
        );
        assert!(ranges.notes.is_empty());
    }

    #[test]
    fn stray_spaces_leading_zeros_and_host_bits_are_normalised_with_a_note() {
        let ranges = parse(&[" 203.0.113.0/25 ", "198.051.100.0/24", "192.0.2.7/24"]);
        let expected = vec![
            net("192.0.2.0/24"),
            net("198.51.100.0/24"),
            net("203.0.113.0/25"),
        ];
        assert_eq!(ranges.nets[0], expected);
        assert_eq!(ranges.notes.len(), 3, "{:?}", ranges.notes);
        assert!(ranges.notes[1].contains("is read as 198.51.100.0/24"));
    }

    #[test]
    fn entries_that_are_not_cidrs_are_ignored_with_a_note_but_still_count_as_listed() {
        let ranges = parse(&["everywhere", "300.0.0.0/8", "10.0.0.0/33"]);
        assert!(ranges.listed);
        assert_eq!(ranges.nets, [vec![], vec![]]);
        assert_eq!(ranges.notes.len(), 3);
    }

    #[test]
    fn nested_ranges_fold_into_their_container() {
        let ranges = parse(&["203.0.113.0/28", "203.0.113.0/24"]);
        assert_eq!(ranges.nets[0], vec![net("203.0.113.0/24")]);
    }

    fn rules_of(chain: &Chain) -> Vec<String> {
        chain.rules.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn chain_returns_for_allowed_sources_and_drops_the_rest() {
        let ranges = parse(&["203.0.113.0/25", "2001:db8:113::/64"]);
        let chain = chain("fw", IpFamily::V4, &ranges, &[ip("192.0.2.11")], &[]);
        assert_eq!(rules_of(&chain), ["ip saddr 203.0.113.0/25 return", "drop"]);
    }

    #[test]
    fn chain_allows_the_lb_ips_when_a_range_contains_a_node_address() {
        let ranges = parse(&["198.51.100.0/24"]);
        let node = [ip("198.51.100.1")];
        let chain = chain("fw", IpFamily::V4, &ranges, &[ip("192.0.2.11")], &node);
        assert_eq!(
            rules_of(&chain),
            [
                "ip saddr 198.51.100.0/24 return",
                "ip saddr 192.0.2.11 return",
                "drop"
            ]
        );
    }

    #[test]
    fn chain_of_a_family_without_valid_ranges_drops_everything() {
        let ranges = parse(&["203.0.113.0/25"]);
        let chain = chain("fw", IpFamily::V6, &ranges, &[ip("2001:db8:2::11")], &[]);
        assert_eq!(rules_of(&chain), ["drop"]);
    }
}
