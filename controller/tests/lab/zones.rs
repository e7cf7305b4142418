//! Clusters whose nodes carry a `topology.kubernetes.io/zone` label, compiled by the real
//! `nftproxy compile` as node-1 and loaded into node-1 in place of whatever it ran before.
//!
//! [`BASE`] has no zone labels, and a second `node-1` object in a test's manifests would
//! make the Node ambiguous (the compiler ignores it), so the labels go into a copy of
//! [`BASE`] instead. Loading replaces nftproxy's tables, so a test can reload a changed
//! cluster.

use super::Lab;
use super::cluster::{BASE, Compiled, Format};
use super::plan::Node;

/// The Node label holding a node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// [`BASE`] with `zones[0]` as node-1's zone label and `zones[1]` as node-2's (`None`: no
/// label).
pub fn zoned_base(zones: [Option<&str>; 2]) -> String {
    let mut base = BASE.to_owned();
    for (node, zone) in [Node::One, Node::Two].into_iter().zip(zones) {
        let Some(zone) = zone else { continue };
        let name_line = format!("  name: {}\n", node.name());
        assert_eq!(
            base.matches(&name_line).count(),
            1,
            "BASE no longer names {} once",
            node.name()
        );
        let labelled = format!("{name_line}  labels: {{{ZONE_LABEL}: {zone}}}\n");
        base = base.replacen(&name_line, &labelled, 1);
    }
    base
}

impl Lab {
    /// Compiles [`zoned_base`]`(zones)` plus `manifests` as node-1 and loads the nft
    /// script into node-1, replacing nftproxy's tables if they are already loaded. Panics
    /// with the CLI's stderr unless it exits 0.
    pub fn load_zoned_cluster(
        &self,
        zones: [Option<&str>; 2],
        manifests: &str,
        config: Option<&str>,
    ) -> Compiled {
        let base = zoned_base(zones);
        let compiled = super::cluster::compile_on(&base, manifests, config, Format::Nft, &[]);
        self.load_ruleset(&compiled.output);
        compiled
    }
}
