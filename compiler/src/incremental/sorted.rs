//! A sorted, duplicate-free output list (diagnostics, health checks, UDP ports) kept as
//! the union of many contributions, each counted, and patched in place when few change.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use crate::diagnostic::Diagnostic;
use crate::health_check::HealthCheck;
use crate::pipeline;
use crate::udp::UdpPort;

/// The order of an output list.
pub trait OutputOrder: Clone + Eq {
    fn output_cmp(&self, other: &Self) -> Ordering;
}

impl OutputOrder for Diagnostic {
    fn output_cmp(&self, other: &Self) -> Ordering {
        pipeline::diagnostic_order(self, other)
    }
}

impl OutputOrder for HealthCheck {
    fn output_cmp(&self, other: &Self) -> Ordering {
        self.cmp(other)
    }
}

impl OutputOrder for UdpPort {
    fn output_cmp(&self, other: &Self) -> Ordering {
        self.cmp(other)
    }
}

/// An item ordered as its output list is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ordered<T>(T);

impl<T: OutputOrder> Ord for Ordered<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.output_cmp(&other.0)
    }
}

impl<T: OutputOrder> PartialOrd for Ordered<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Counted contributions to an output list; [`patch`](Self::patch) brings the list up to
/// date (each item once, in output order).
#[derive(Debug)]
pub struct Counted<T> {
    counts: BTreeMap<Ordered<T>, usize>,
    /// Items that appeared or disappeared since the last patch.
    touched: Vec<T>,
}

impl<T> Default for Counted<T> {
    fn default() -> Self {
        Counted {
            counts: BTreeMap::new(),
            touched: Vec::new(),
        }
    }
}

impl<T: OutputOrder> Counted<T> {
    pub fn add(&mut self, item: T) {
        match self.counts.entry(Ordered(item)) {
            Entry::Occupied(mut entry) => *entry.get_mut() += 1,
            Entry::Vacant(entry) => {
                self.touched.push(entry.key().0.clone());
                entry.insert(1);
            }
        }
    }

    pub fn remove(&mut self, item: T) {
        let key = Ordered(item);
        let Some(count) = self.counts.get_mut(&key) else {
            debug_assert!(false, "removing an item that was never added");
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.counts.remove(&key);
            self.touched.push(key.0);
        }
    }

    /// Brings `out` (the list as of the last patch) up to date: item by item when few
    /// changed, else rebuilt.
    pub fn patch(&mut self, out: &mut Vec<T>) {
        let touched = std::mem::take(&mut self.touched);
        if touched.is_empty() {
            return;
        }
        if touched.len() > 16 + out.len() / 16 {
            *out = self.counts.keys().map(|k| k.0.clone()).collect();
            return;
        }
        for item in touched {
            let key = Ordered(item);
            let position = out.binary_search_by(|o| o.output_cmp(&key.0));
            match (position, self.counts.contains_key(&key)) {
                (Ok(i), false) => {
                    out.remove(i);
                }
                (Err(i), true) => out.insert(i, key.0),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_items_stay_until_their_last_contribution_goes() {
        let mut counted = Counted::<HealthCheck>::default();
        let check = |name: &str| HealthCheck {
            namespace: "ns".to_owned(),
            name: name.to_owned(),
            node_port: 30000,
            local_endpoints: 1,
        };
        let mut out = Vec::new();
        counted.add(check("b"));
        counted.add(check("a"));
        counted.add(check("b"));
        counted.patch(&mut out);
        assert_eq!(out, [check("a"), check("b")]);
        counted.remove(check("b"));
        counted.patch(&mut out);
        assert_eq!(out, [check("a"), check("b")]);
        counted.remove(check("b"));
        counted.add(check("c"));
        counted.remove(check("a"));
        counted.add(check("a"));
        counted.patch(&mut out);
        assert_eq!(out, [check("a"), check("c")]);
    }
}
