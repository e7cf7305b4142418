//! Tests of `DigestMap`: digests follow content, not history, and sharded diffs miss nothing.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// A plain value for the tests: its entry digest is the digest of the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct V(u16);

impl EntryDigest<u32> for V {
    fn entry_digest(&self, key_digest: u128) -> u128 {
        digest(&(key_digest, self.0))
    }
}

fn build(entries: &[(u32, u16)]) -> DigestMap<u32, V> {
    let mut map = DigestMap::new();
    for &(k, v) in entries {
        map.insert(k, V(v));
    }
    map
}

/// Keys that differ between two maps, by shard digests, then a merge of differing shards.
fn fast_diff(a: &DigestMap<u32, V>, b: &DigestMap<u32, V>) -> Vec<u32> {
    let mut keys = Vec::new();
    for (x, y) in a.shard_pairs(b, false) {
        keys.extend(
            x.iter()
                .filter(|(k, v)| y.get(k) != Some(v))
                .map(|(k, _)| *k),
        );
        keys.extend(y.keys().filter(|k| !x.contains_key(k)).copied());
    }
    keys.sort_unstable();
    keys
}

/// The same, by reading both maps in full.
fn naive_diff(a: &BTreeMap<u32, u16>, b: &BTreeMap<u32, u16>) -> Vec<u32> {
    let mut keys: Vec<u32> = a
        .iter()
        .filter(|(k, v)| b.get(k) != Some(v))
        .map(|(k, _)| *k)
        .chain(b.keys().filter(|k| !a.contains_key(k)).copied())
        .collect();
    keys.sort_unstable();
    keys
}

#[test]
fn digest_is_independent_of_insertion_order_and_history() {
    let forward = build(&[(1, 10), (2, 20), (3, 30)]);
    let mut backward = build(&[(3, 30), (2, 99), (1, 10), (4, 40)]);
    assert_ne!(forward.digest(), backward.digest());
    backward.insert(2, V(20));
    backward.remove(&4);
    assert_eq!(forward.digest(), backward.digest());
    assert_eq!(forward, backward);
    assert_eq!(
        DigestMap::<u32, V>::new().digest(),
        build(&[(5, 5)]).tap_remove(5)
    );
}

trait TapRemove {
    fn tap_remove(self, key: u32) -> u128;
}

impl TapRemove for DigestMap<u32, V> {
    fn tap_remove(mut self, key: u32) -> u128 {
        self.remove(&key);
        self.digest()
    }
}

#[test]
fn update_keeps_the_digest_of_the_content() {
    let mut map = build(&[(1, 10), (2, 20)]);
    assert_eq!(map.update(&2, |v| v.0 = 21), Some(()));
    assert_eq!(map.digest(), build(&[(2, 21), (1, 10)]).digest());
    assert_eq!(map.update(&3, |v| v.0 = 1), None);
}

#[test]
fn iteration_is_in_key_order_and_from_entries_equals_inserts() {
    let entries: Vec<(u32, u16)> = (0..1000u32).rev().map(|k| (k * 7919 % 1000, 1)).collect();
    let map = build(&entries);
    let keys: Vec<u32> = map.keys().copied().collect();
    assert_eq!(keys, (0..1000).collect::<Vec<_>>());
    let collected: DigestMap<u32, V> = entries.iter().map(|&(k, v)| (k, V(v))).collect();
    assert_eq!(collected, map);
    assert_eq!(collected.digest(), map.digest());
    assert_eq!(map.len(), 1000);
}

#[test]
fn from_entries_keeps_the_last_duplicate_and_its_digest() {
    let collected: DigestMap<u32, V> = [(1, V(1)), (2, V(2)), (1, V(3))].into_iter().collect();
    let inserted = build(&[(2, 2), (1, 3)]);
    assert_eq!(collected, inserted);
    assert_eq!(collected.digest(), inserted.digest());
    assert_eq!(collected.len(), 2);
}

proptest! {
    #[test]
    fn digests_are_equal_iff_contents_are_equal(
        a in prop::collection::btree_map(0u32..64, 0u16..4, 0..40),
        b in prop::collection::btree_map(0u32..64, 0u16..4, 0..40),
    ) {
        let mut reversed: Vec<(u32, u16)> = a.iter().map(|(k, v)| (*k, *v)).collect();
        reversed.reverse();
        let x = build(&reversed);
        let y = build(&b.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
        prop_assert_eq!(x.digest() == y.digest(), a == b);
        prop_assert_eq!(x == y, a == b);
    }

    #[test]
    fn shard_localised_diff_finds_every_change(
        base in prop::collection::btree_map(0u32..5000, 0u16..4, 0..600),
        edits in prop::collection::vec((0u32..5000, prop::option::of(0u16..4)), 0..20),
    ) {
        let mut changed = base.clone();
        for (k, v) in edits {
            match v {
                Some(v) => changed.insert(k, v),
                None => changed.remove(&k),
            };
        }
        let old = build(&base.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
        let mut new = old.clone();
        for k in base.keys().filter(|k| !changed.contains_key(k)) {
            new.remove(k);
        }
        for (k, v) in &changed {
            new.insert(*k, V(*v));
        }
        prop_assert_eq!(fast_diff(&old, &new), naive_diff(&base, &changed));
    }
}

/// How many shards of `a` and `b` hold the very same entries (not copies).
fn shared_shards(a: &DigestMap<u32, V>, b: &DigestMap<u32, V>) -> usize {
    a.shards
        .iter()
        .zip(b.shards.iter())
        .filter(|(x, y)| matches!((&x.map, &y.map), (Some(x), Some(y)) if Arc::ptr_eq(x, y)))
        .count()
}

#[test]
fn an_empty_map_allocates_nothing_and_a_shard_that_empties_frees_its_entries() {
    let mut map: DigestMap<u32, V> = DigestMap::new();
    assert!(map.shards.is_empty(), "no shard before the first entry");
    assert_eq!(map.digest(), 0);
    assert_eq!(map, DigestMap::new());
    map.insert(1, V(1));
    map.insert(2, V(2));
    assert_eq!(map.shards.len(), SHARDS);
    let holding = |m: &DigestMap<u32, V>| m.shards.iter().filter(|s| s.map.is_some()).count();
    assert_eq!(
        holding(&map),
        map.shards.iter().filter(|s| s.len() > 0).count()
    );
    map.remove(&1);
    map.remove(&2);
    assert_eq!(holding(&map), 0, "emptied shards hold no allocation");
    assert_eq!(map.digest(), 0);
    // Empty whether never filled or emptied: equal, and no differing shard.
    assert_eq!(map, DigestMap::new());
    assert_eq!(map.shard_pairs(&DigestMap::new(), false).count(), 0);
    assert!(fast_diff(&map, &DigestMap::new()).is_empty());
    let one = build(&[(5, 5)]);
    assert_eq!(fast_diff(&DigestMap::new(), &one), fast_diff(&map, &one));
    assert_eq!(map.shard_pairs(&one, false).count(), 1);
}

#[test]
fn a_clone_shares_its_entries_until_either_side_changes_them() {
    let entries: Vec<(u32, u16)> = (0..5_000).map(|k| (k, (k % 7) as u16)).collect();
    let original = build(&entries);
    let mut copy = original.clone();
    assert_eq!(
        shared_shards(&original, &copy),
        SHARDS,
        "a clone copies no entry"
    );

    // Each kind of change copies the one shard it touches, and only the copy sees it.
    copy.insert(10_000, V(1));
    copy.remove(&3);
    copy.update(&4, |v| v.0 = 99);
    let touched = [10_000, 3, 4].map(|k| locate(&k).0);
    let distinct = touched
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert_eq!(shared_shards(&original, &copy), SHARDS - distinct);
    assert_eq!(original, build(&entries), "the original is unchanged");
    assert_eq!(copy.get(&4), Some(&V(99)));
    assert_eq!(copy.get(&3), None);
    assert_eq!(original.get(&3), Some(&V(3)));

    // Digests still follow content: undoing the changes gives the original's digest.
    copy.remove(&10_000);
    copy.insert(3, V(3));
    copy.update(&4, |v| v.0 = 4);
    assert_eq!(copy.digest(), original.digest());
    assert_eq!(copy, original);
    assert!(fast_diff(&copy, &original).is_empty());

    // Looking up or removing an absent key, or a retain that keeps everything, copies
    // nothing.
    let mut other = original.clone();
    assert_eq!(other.remove(&77_777), None);
    assert!(other.update(&77_777, |v| v.0 = 1).is_none());
    other.retain(|_, _| true);
    assert_eq!(shared_shards(&original, &other), SHARDS);
}
