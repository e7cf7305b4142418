//! Which conntrack entries a change of UDP service ports makes stale.
#![allow(clippy::unwrap_used)]

use super::netlink::{Entry, IPPROTO_UDP, Tuple};
use super::sample_ports::{dns, dns6, sa};
use super::*;

fn dns_destinations() -> Vec<Destination> {
    vec![
        Destination::Address(sa("198.19.0.10:53")),
        Destination::Address(sa("192.0.2.1:53")),
        Destination::NodePort {
            ipv6: false,
            port: 30053,
        },
    ]
}

/// A UDP entry from `client` to `to`, answered by `from`.
fn entry(client: &str, to: &str, from: &str) -> Entry {
    Entry {
        proto: IPPROTO_UDP,
        original: Tuple {
            src: sa(client),
            dst: sa(to),
        },
        reply: Tuple {
            src: sa(from),
            dst: sa(client),
        },
        id: None,
        zone: None,
    }
}

#[test]
fn a_removed_endpoint_makes_entries_leading_to_it_stale() {
    let filters = stale(
        &[dns(&["198.18.1.10:53", "198.18.2.10:53"])],
        &[dns(&["198.18.2.10:53"])],
    );
    assert_eq!(
        filters,
        [ConntrackFilter {
            destinations: dns_destinations(),
            reply: Reply::From(sa("198.18.1.10:53")),
        }]
    );
    let matcher = Matcher::new(&filters);
    let client = "198.18.1.20:4000";
    assert!(matcher.matches(&entry(client, "198.19.0.10:53", "198.18.1.10:53")));
    assert!(matcher.matches(&entry(client, "192.0.2.1:53", "198.18.1.10:53")));
    assert!(
        matcher.matches(&entry(client, "198.51.100.1:30053", "198.18.1.10:53")),
        "NodePort on any address"
    );
    assert!(
        !matcher.matches(&entry(client, "198.19.0.10:53", "198.18.2.10:53")),
        "kept endpoint"
    );
    assert!(
        !matcher.matches(&entry(client, "198.19.0.11:53", "198.18.1.10:53")),
        "other VIP"
    );
    assert!(
        !matcher.matches(&entry(client, "198.19.0.10:54", "198.18.1.10:53")),
        "other port"
    );
    let tcp = Entry {
        proto: 6,
        ..entry(client, "198.19.0.10:53", "198.18.1.10:53")
    };
    assert!(!matcher.matches(&tcp), "UDP only");
}

#[test]
fn an_endpoint_whose_port_changed_is_stale() {
    let filters = stale(&[dns(&["198.18.1.10:53"])], &[dns(&["198.18.1.10:5353"])]);
    assert_eq!(filters.len(), 1);
    assert_eq!(filters[0].reply, Reply::From(sa("198.18.1.10:53")));
}

#[test]
fn scaling_to_zero_and_back_deletes_the_old_endpoint_then_everything_not_dnated_to_the_new() {
    let (before, zero, after) = (dns(&["198.18.1.10:53"]), dns(&[]), dns(&["198.18.2.10:53"]));
    let down = stale(std::slice::from_ref(&before), std::slice::from_ref(&zero));
    assert_eq!(down.len(), 1);
    assert_eq!(down[0].reply, Reply::From(sa("198.18.1.10:53")));
    let up = stale(&[zero], &[after]);
    assert_eq!(
        up,
        [ConntrackFilter {
            destinations: dns_destinations(),
            reply: Reply::NotFrom(vec![sa("198.18.2.10:53")]),
        }]
    );
    let matcher = Matcher::new(&up);
    let client = "198.18.1.20:4000";
    assert!(
        matcher.matches(&entry(client, "198.19.0.10:53", "198.19.0.10:53")),
        "an un-DNATed entry from the time the port rejected"
    );
    assert!(!matcher.matches(&entry(client, "198.19.0.10:53", "198.18.2.10:53")));
}

#[test]
fn unchanged_ports_make_nothing_stale() {
    let ports = [
        dns(&["198.18.1.10:53"]),
        dns6(&["[2001:db8:1::10]:53"]),
        dns(&[]),
    ];
    assert!(stale(&ports[..2], &ports[..2]).is_empty());
    assert!(
        stale(&ports[2..], &ports[2..]).is_empty(),
        "still no endpoints"
    );
    assert!(stale(&[], &[]).is_empty());
}

#[test]
fn a_removed_service_makes_all_its_endpoints_stale() {
    let filters = stale(&[dns(&["198.18.1.10:53", "198.18.2.10:53"])], &[]);
    let replies: Vec<&Reply> = filters.iter().map(|f| &f.reply).collect();
    assert_eq!(
        replies,
        [
            &Reply::From(sa("198.18.1.10:53")),
            &Reply::From(sa("198.18.2.10:53"))
        ]
    );
    assert!(filters.iter().all(|f| f.destinations == dns_destinations()));
}

#[test]
fn a_new_service_with_endpoints_is_cleaned_like_one_that_had_none_and_one_without_is_not() {
    let filters = stale(&[], &[dns(&["198.18.1.10:53"])]);
    assert_eq!(filters.len(), 1);
    assert_eq!(filters[0].reply, Reply::NotFrom(vec![sa("198.18.1.10:53")]));
    assert!(stale(&[], &[dns(&[])]).is_empty());
}

#[test]
fn a_moved_cluster_ip_is_a_removed_port_and_a_new_one() {
    let moved = UdpPort {
        cluster_ip: sa("198.19.0.11:53"),
        ..dns(&["198.18.1.10:53"])
    };
    let filters = stale(&[dns(&["198.18.1.10:53"])], &[moved]);
    let replies: Vec<&Reply> = filters.iter().map(|f| &f.reply).collect();
    assert_eq!(
        replies,
        [
            &Reply::From(sa("198.18.1.10:53")),
            &Reply::NotFrom(vec![sa("198.18.1.10:53")]),
        ]
    );
}

#[test]
fn families_are_kept_apart() {
    let old = [
        dns(&["198.18.1.10:53"]),
        dns6(&["[2001:db8:1::10]:53", "[2001:db8:2::10]:53"]),
    ];
    let new = [dns(&["198.18.1.10:53"]), dns6(&["[2001:db8:2::10]:53"])];
    let filters = stale(&old, &new);
    assert_eq!(
        filters,
        [ConntrackFilter {
            destinations: vec![Destination::Address(sa("[2001:db8::10]:53"))],
            reply: Reply::From(sa("[2001:db8:1::10]:53")),
        }]
    );
    let matcher = Matcher::new(&filters);
    assert_eq!(matcher.families(), BTreeSet::from([true]));
    // An IPv4 NodePort filter never selects an IPv6 entry to the same port number.
    let v4 = stale(&[dns(&["198.18.1.10:53"])], &[dns(&[])]);
    let matcher = Matcher::new(&v4);
    assert_eq!(matcher.families(), BTreeSet::from([false]));
    let v6_entry = entry(
        "[2001:db8:1::20]:4000",
        "[2001:db8:100::1]:30053",
        "198.18.1.10:53",
    );
    assert!(!matcher.matches(&v6_entry));
}

#[test]
fn without_a_previous_sync_entries_not_leading_to_a_current_endpoint_are_unserved() {
    let filters = unserved(&[dns(&["198.18.2.10:53"]), dns6(&[])]);
    let matcher = Matcher::new(&filters);
    let client = "198.18.1.20:4000";
    assert!(matcher.matches(&entry(client, "198.19.0.10:53", "198.18.1.10:53")));
    assert!(matcher.matches(&entry(client, "198.51.100.1:30053", "198.51.100.1:30053")));
    assert!(!matcher.matches(&entry(client, "198.19.0.10:53", "198.18.2.10:53")));
    assert!(
        matcher.matches(&entry(
            "[2001:db8:1::20]:4000",
            "[2001:db8::10]:53",
            "[2001:db8:1::10]:53"
        )),
        "a port without endpoints has no entry worth keeping"
    );
    assert!(Matcher::new(&unserved(&[])).is_empty());
}
