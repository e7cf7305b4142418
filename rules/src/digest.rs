//! Content digests and [`DigestMap`], the sharded map that lets `diff` skip what is equal.
//!
//! `diff(old, new)` must be fast when almost nothing changed, yet `old` and `new` are two
//! independent compiles: equality has to come from the data. Every object therefore keeps a
//! 128-bit digest of its content, updated by the only methods that change it, and huge
//! collections are split into shards that each keep the digest of their entries. `diff`
//! compares digests and walks only the shards (and objects) whose digests differ.
//!
//! # Hash choice
//!
//! A digest is two 64-bit foldhash (quality variant) values under two independent random
//! seeds drawn once per process. Service names and addresses are user data, so the hash
//! must resist crafted collisions: a collision would make `diff` silently skip an update.
//! foldhash is not a cryptographic PRF, but with secret seeds an attacker must find inputs
//! that collide in both halves without ever seeing an output: the seeds and the digests
//! never leave the process (they are not stored, sent, logged or printed), so there is
//! nothing to search against offline. Equal digests are then taken to mean equal content: a
//! probabilistic assumption (about 2^-128 per comparison for unrelated contents). SipHash-1-3
//! (std's `RandomState`, a real PRF) was measured first: hashing took about 17 % of the
//! compile of 10k services, against about 5 % with foldhash fed in chunks (see [`digest`]).
//!
//! Digests of collections are wrapping sums of entry digests (AdHash): independent of
//! insertion order, updatable in O(1) on insert and remove. Ordered collections (the rules
//! of a chain) are digested as one sequence, once, when first needed after a change.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::collections::btree_map;
use std::hash::{BuildHasher, Hash, Hasher};
use std::marker::PhantomData;
use std::ops::{Bound, Index};
use std::sync::{Arc, OnceLock};

use foldhash::quality::RandomState;

/// The per-process keys of [`digest`]: two independently seeded foldhash builders.
fn keys() -> &'static (RandomState, RandomState) {
    static KEYS: OnceLock<(RandomState, RandomState)> = OnceLock::new();
    // Each `RandomState` draws its own random per-hasher seed (and shares foldhash's random
    // per-process seed), so the two halves of a digest are independently keyed.
    KEYS.get_or_init(|| (RandomState::default(), RandomState::default()))
}

/// A hasher that gathers the fixed-width bytes a `Hash` impl writes into a stack buffer
/// and feeds them to `H` in large chunks: derived `Hash` impls make many tiny writes
/// (discriminants, octets, lengths), and one long write hashes far faster than many short
/// ones. The chunking is a fixed function of the byte stream, so equal values still give
/// equal hashes, and distinct byte streams (which `Hash` impls guarantee for distinct
/// values: lengths before slices, a terminator after strings) reach `H` as such.
struct Chunked<H> {
    buf: [u8; CHUNK],
    len: usize,
    hashers: H,
}

const CHUNK: usize = 256;

/// The hashers that take whole chunks.
trait Sink {
    fn absorb(&mut self, bytes: &[u8]);
}

impl<H: Hasher> Sink for (H, H) {
    fn absorb(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
        self.1.write(bytes);
    }
}

impl<H: Sink> Chunked<H> {
    fn new(hashers: H) -> Self {
        Chunked {
            buf: [0; CHUNK],
            len: 0,
            hashers,
        }
    }

    /// Feeds what is buffered and returns the hashers (by reference: moving the buffer
    /// out would copy it).
    fn flush(&mut self) -> &H {
        self.hashers.absorb(&self.buf[..self.len]);
        self.len = 0;
        &self.hashers
    }
}

impl<H: Sink> Chunked<H> {
    /// Appends a fixed-width value: a constant-length copy, no `memcpy` call.
    #[inline]
    fn put<const N: usize>(&mut self, bytes: [u8; N]) {
        if self.len + N > CHUNK {
            self.hashers.absorb(&self.buf[..self.len]);
            self.len = 0;
        }
        self.buf[self.len..self.len + N].copy_from_slice(&bytes);
        self.len += N;
    }
}

impl<H: Sink> Hasher for Chunked<H> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > CHUNK {
            self.hashers.absorb(&self.buf[..self.len]);
            self.len = 0;
        }
        if bytes.len() > CHUNK {
            self.hashers.absorb(bytes);
        } else {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.put([i]);
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.put(i.to_ne_bytes());
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.put(i.to_ne_bytes());
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.put(i.to_ne_bytes());
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.put(i.to_ne_bytes());
    }

    #[inline]
    fn write_isize(&mut self, i: isize) {
        self.put(i.to_ne_bytes());
    }

    /// Not meaningful mid-stream; [`digest`] uses `flush`.
    fn finish(&self) -> u64 {
        0
    }
}

/// The keyed 128-bit digest of a value (see the module documentation).
pub fn digest<T: Hash + ?Sized>(value: &T) -> u128 {
    let (a, b) = keys();
    let mut sink = Chunked::new((a.build_hasher(), b.build_hasher()));
    value.hash(&mut sink);
    let (a, b) = sink.flush();
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// A value whose content digest, as an entry of a [`DigestMap`], is cheap.
pub trait EntryDigest<K> {
    /// The digest of the entry `(key, self)`, given `key_digest = digest(key)` (which the
    /// map computes anyway to pick the shard): equal iff key and content are equal.
    fn entry_digest(&self, key_digest: u128) -> u128;
}

/// Number of shards of a [`DigestMap`]. More shards localise a change better; each costs
/// 32 bytes once the map holds anything, and one digest compare in `diff`.
pub const SHARDS: usize = 1 << SHARD_BITS;
const SHARD_BITS: u32 = 7;

/// One shard: entries in key order and the wrapping sum of their entry digests.
///
/// The entries are shared between clones of the map and copied when one clone first
/// changes them (copy on write, one shard at a time): a clone of a whole ruleset costs a
/// pointer per shard, and two rulesets that mostly agree (what the compiler holds and what
/// the kernel was last given) share what they agree on. An empty shard allocates nothing.
#[derive(Debug, Clone)]
struct Shard<K, V> {
    /// `None` when empty.
    map: Option<Arc<BTreeMap<K, V>>>,
    digest: u128,
}

impl<K: Ord + Clone, V: Clone> Shard<K, V> {
    fn entries(&self) -> Option<&BTreeMap<K, V>> {
        self.map.as_deref()
    }

    fn len(&self) -> usize {
        self.entries().map_or(0, BTreeMap::len)
    }

    /// The entries to change, copied first if another clone shares them.
    fn entries_mut(&mut self) -> &mut BTreeMap<K, V> {
        Arc::make_mut(self.map.get_or_insert_with(Arc::default))
    }

    /// Frees the entries' allocation once the last entry is gone.
    fn drop_if_empty(&mut self) {
        if self.entries().is_some_and(BTreeMap::is_empty) {
            self.map = None;
        }
    }
}

impl<K: Ord + Clone + Hash, V: EntryDigest<K> + Clone> Shard<K, V> {
    /// Recomputes the digest from the entries.
    fn recompute(&mut self) {
        self.digest = self
            .entries()
            .into_iter()
            .flatten()
            .fold(0, |d: u128, (k, v)| {
                d.wrapping_add(v.entry_digest(digest(k)))
            });
    }
}

impl<K, V> Default for Shard<K, V> {
    fn default() -> Self {
        Shard {
            map: None,
            digest: 0,
        }
    }
}

/// A map split into [`SHARDS`] shards by a hash of the key, each with a content digest.
///
/// Mutation goes through methods that keep every digest right ([`insert`](Self::insert),
/// [`remove`](Self::remove), [`update`](Self::update)), so `digest()` is always the digest
/// of the content, independent of insertion order. Iteration is in key order (collected
/// and sorted: O(n log n), for rendering; never on the hot path). The shard of a key is
/// taken from its keyed digest, which the entry digest reuses (one hash of the key per
/// insert): shard layouts differ between processes, which nothing observes (iteration is
/// sorted), and nobody can aim keys at one shard.
#[derive(Clone)]
pub struct DigestMap<K, V> {
    /// Empty (no allocation) until the map first holds an entry, then [`SHARDS`] long.
    shards: Box<[Shard<K, V>]>,
    len: usize,
    /// What [`DigestMap::shard_pairs`] gives for a shard that holds nothing.
    empty: BTreeMap<K, V>,
}

impl<K: Ord + Hash + Clone, V: EntryDigest<K> + Clone> Default for DigestMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a key lives: its shard (the top bits of its digest) and its digest.
fn locate<Q: Hash + ?Sized>(key: &Q) -> (usize, u128) {
    let key_digest = digest(key);
    // The shift leaves a value below SHARDS.
    ((key_digest >> (128 - SHARD_BITS)) as usize, key_digest)
}

impl<K: Ord + Hash + Clone, V: EntryDigest<K> + Clone> DigestMap<K, V> {
    pub fn new() -> Self {
        DigestMap {
            shards: Box::default(),
            len: 0,
            empty: BTreeMap::new(),
        }
    }

    /// Shard `index`, with all the shards allocated first if none is.
    fn shard_mut(&mut self, index: usize) -> &mut Shard<K, V> {
        if self.shards.is_empty() {
            self.shards = (0..SHARDS).map(|_| Shard::default()).collect();
        }
        &mut self.shards[index]
    }

    /// Shard `index`, if the shards are allocated.
    fn shard(&self, index: usize) -> Option<&Shard<K, V>> {
        self.shards.get(index)
    }

    /// Builds the map from entries (any order; a later duplicate key replaces an earlier).
    pub fn from_entries(entries: impl IntoIterator<Item = (K, V)>) -> Self {
        let entries = entries.into_iter();
        // Room for an even spread plus slack, so that few parts grow (and copy) later;
        // small inputs allocate only the parts they use.
        let hint = entries.size_hint().0;
        let per_shard = if hint >= SHARDS {
            hint / SHARDS * 5 / 4 + 4
        } else {
            0
        };
        let mut parts: Vec<Vec<(K, V)>> =
            (0..SHARDS).map(|_| Vec::with_capacity(per_shard)).collect();
        let mut map = DigestMap::new();
        for (k, v) in entries {
            let (index, key_digest) = locate(&k);
            let shard = map.shard_mut(index);
            shard.digest = shard.digest.wrapping_add(v.entry_digest(key_digest));
            parts[index].push((k, v));
        }
        for (shard, part) in map.shards.iter_mut().zip(parts) {
            let pushed = part.len();
            if pushed == 0 {
                continue;
            }
            // `BTreeMap::from_iter` sorts (stably: the last duplicate wins) and bulk-builds.
            let entries: BTreeMap<K, V> = part.into_iter().collect();
            map.len += entries.len();
            let deduplicated = entries.len() != pushed;
            shard.map = Some(Arc::new(entries));
            if deduplicated {
                // Duplicate keys: the sum above counted the replaced entries too. (Order
                // does not matter: the sum is order-independent.)
                shard.recompute();
            }
        }
        map
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of the whole content: the wrapping sum of the shard digests.
    pub fn digest(&self) -> u128 {
        self.shards
            .iter()
            .fold(0, |d: u128, s| d.wrapping_add(s.digest))
    }

    /// The value under `key`. `Borrow` guarantees that `Q` hashes as `K` does, so the
    /// shard is the same.
    pub fn get<Q: Ord + Hash + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.shard(locate(key).0)?.entries()?.get(key)
    }

    pub fn contains_key<Q: Ord + Hash + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.get(key).is_some()
    }

    /// Inserts an entry, returning the one it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let (index, key_digest) = locate(&key);
        let shard = self.shard_mut(index);
        let added = value.entry_digest(key_digest);
        let mut len = 0;
        let old = match shard.entries_mut().entry(key) {
            btree_map::Entry::Vacant(e) => {
                e.insert(value);
                len = 1;
                None
            }
            btree_map::Entry::Occupied(mut e) => {
                let old = std::mem::replace(e.get_mut(), value);
                shard.digest = shard.digest.wrapping_sub(old.entry_digest(key_digest));
                Some(old)
            }
        };
        shard.digest = shard.digest.wrapping_add(added);
        self.len += len;
        old
    }

    pub fn remove<Q: Ord + Hash + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let (index, key_digest) = locate(key);
        if !self.contains_key(key) {
            return None;
        }
        let shard = self.shard_mut(index);
        let (_, old) = shard.entries_mut().remove_entry(key)?;
        shard.drop_if_empty();
        shard.digest = shard.digest.wrapping_sub(old.entry_digest(key_digest));
        self.len -= 1;
        Some(old)
    }

    /// A guard giving mutable access to the value under `key`; the shard digest is
    /// brought up to date when the guard drops.
    pub fn get_mut<Q: Ord + Hash + ?Sized>(&mut self, key: &Q) -> Option<EntryMut<'_, K, V>>
    where
        K: Borrow<Q>,
    {
        let (index, key_digest) = locate(key);
        if !self.contains_key(key) {
            return None;
        }
        let shard = self.shard_mut(index);
        let bounds = (Bound::Included(key), Bound::Included(key));
        let map = Arc::make_mut(shard.map.as_mut()?);
        let digest = &mut shard.digest;
        let (_, value) = map.range_mut::<Q, _>(bounds).next()?;
        *digest = digest.wrapping_sub(value.entry_digest(key_digest));
        Some(EntryMut {
            key_digest,
            value,
            digest,
            key: PhantomData,
        })
    }

    pub fn clear(&mut self) {
        self.shards = Box::default();
        self.len = 0;
    }

    /// Changes an entry in place with `f`, keeping the digest right; `None` if absent.
    pub fn update<Q: Ord + Hash + ?Sized, R>(
        &mut self,
        key: &Q,
        f: impl FnOnce(&mut V) -> R,
    ) -> Option<R>
    where
        K: Borrow<Q>,
    {
        self.get_mut(key).map(|mut entry| f(&mut entry))
    }

    /// Keeps the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        for shard in self.shards.iter_mut() {
            let drops = shard
                .entries()
                .into_iter()
                .flatten()
                .any(|(k, v)| !keep(k, v));
            if !drops {
                continue;
            }
            let Shard { map, digest: sum } = shard;
            if let Some(map) = map {
                Arc::make_mut(map).retain(|k, v| {
                    let kept = keep(k, v);
                    if !kept {
                        *sum = sum.wrapping_sub(v.entry_digest(digest(k)));
                    }
                    kept
                });
            }
            shard.drop_if_empty();
        }
        self.len = self.shards.iter().map(Shard::len).sum();
    }

    /// Changes every entry in place with `f`, then recomputes the digests.
    pub fn update_each(&mut self, mut f: impl FnMut(&K, &mut V)) {
        for shard in self.shards.iter_mut() {
            let Shard { map, digest: sum } = shard;
            let Some(map) = map else {
                continue;
            };
            *sum = 0;
            for (k, v) in Arc::make_mut(map).iter_mut() {
                f(k, v);
                *sum = sum.wrapping_add(v.entry_digest(digest(k)));
            }
        }
    }

    /// Entries in key order.
    pub fn iter(&self) -> std::vec::IntoIter<(&K, &V)> {
        let mut all: Vec<(&K, &V)> = Vec::with_capacity(self.len);
        for shard in self.shards.iter() {
            all.extend(shard.entries().into_iter().flatten());
        }
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
    }

    /// Keys in key order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    /// Values in key order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// Pairs of corresponding shards of `self` and `other`, as sorted maps: those whose
    /// digests differ, or all of them when `all`. Every key that is in one map only, or
    /// whose entries differ, is in a differing pair (up to the digest assumption).
    pub fn shard_pairs<'a>(
        &'a self,
        other: &'a Self,
        all: bool,
    ) -> impl Iterator<Item = (&'a BTreeMap<K, V>, &'a BTreeMap<K, V>)> {
        let digest_of = |s: Option<&Shard<K, V>>| s.map_or(0, |s| s.digest);
        let shards = if self.shards.is_empty() && other.shards.is_empty() {
            0
        } else {
            SHARDS
        };
        (0..shards).filter_map(move |index| {
            let (a, b) = (self.shard(index), other.shard(index));
            (all || digest_of(a) != digest_of(b)).then(|| {
                (
                    a.and_then(Shard::entries).unwrap_or(&self.empty),
                    b.and_then(Shard::entries).unwrap_or(&other.empty),
                )
            })
        })
    }
}

/// Mutable access to one value of a [`DigestMap`]; re-adds the entry's digest on drop.
#[derive(Debug)]
pub struct EntryMut<'a, K: Ord + Hash, V: EntryDigest<K>> {
    key_digest: u128,
    value: &'a mut V,
    digest: &'a mut u128,
    key: PhantomData<&'a K>,
}

impl<K: Ord + Hash, V: EntryDigest<K>> std::ops::Deref for EntryMut<'_, K, V> {
    type Target = V;

    fn deref(&self) -> &V {
        self.value
    }
}

impl<K: Ord + Hash, V: EntryDigest<K>> std::ops::DerefMut for EntryMut<'_, K, V> {
    fn deref_mut(&mut self) -> &mut V {
        self.value
    }
}

impl<K: Ord + Hash, V: EntryDigest<K>> Drop for EntryMut<'_, K, V> {
    fn drop(&mut self) {
        *self.digest = self
            .digest
            .wrapping_add(self.value.entry_digest(self.key_digest));
    }
}

impl<K: PartialEq, V: PartialEq> PartialEq for DigestMap<K, V> {
    /// Exact content equality: within a process every map uses the same shard function, so
    /// equal maps have equal shards.
    fn eq(&self, other: &Self) -> bool {
        let same = |a: Option<&Shard<K, V>>, b: Option<&Shard<K, V>>| {
            let (a, b) = (
                a.and_then(|s| s.map.as_ref()),
                b.and_then(|s| s.map.as_ref()),
            );
            match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                (Some(one), None) | (None, Some(one)) => one.is_empty(),
                (None, None) => true,
            }
        };
        self.len == other.len && (0..SHARDS).all(|i| same(self.shards.get(i), other.shards.get(i)))
    }
}

impl<K: Eq, V: Eq> Eq for DigestMap<K, V> {}

impl<K: Ord + Hash + Clone + std::fmt::Debug, V: EntryDigest<K> + Clone + std::fmt::Debug>
    std::fmt::Debug for DigestMap<K, V>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Ord + Hash + Clone + Borrow<Q>, V: EntryDigest<K> + Clone, Q: Ord + Hash + ?Sized> Index<&Q>
    for DigestMap<K, V>
{
    type Output = V;

    /// The value under `key`; panics when absent, like `BTreeMap`'s index.
    fn index(&self, key: &Q) -> &V {
        match self.get(key) {
            Some(v) => v,
            None => panic!("key not in DigestMap"),
        }
    }
}

impl<K: Ord + Hash + Clone, V: EntryDigest<K> + Clone> FromIterator<(K, V)> for DigestMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self::from_entries(iter)
    }
}

impl<'a, K: Ord + Hash + Clone, V: EntryDigest<K> + Clone> IntoIterator for &'a DigestMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::vec::IntoIter<(&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
#[path = "digest_tests.rs"]
mod tests;
