//! What changed between two lists of objects: the ones removed and the ones added.
//!
//! Reflector stores hand out the same `Arc` for an object that did not change, usually at
//! the same position (a store is a hash map: an insert or a delete shifts the positions
//! after it by one). So the lists are first walked side by side, comparing pointers and
//! resynchronising over short runs of inserted or deleted objects: for an unchanged list
//! of 10k objects that is 10k pointer comparisons. Whatever is left unpaired is paired by
//! identity (namespace and name) and content, so a new `Arc` with equal content (a
//! re-list, a manifest read again) counts as unchanged, in any order.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use foldhash::quality::RandomState;
use k8s_openapi::Metadata;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// How far the side-by-side walk looks ahead for the other list's object.
const LOOK_AHEAD: usize = 8;

/// Up to how many unpaired runs a stored list is patched in place rather than copied.
const MAX_SPLICES: usize = 16;

/// The difference between an old and a new list of objects, as multisets (objects equal
/// by pointer or content are interchangeable).
#[derive(Debug)]
pub struct Changes<T> {
    /// Objects of the old list that the new one lacks, in old-list order.
    pub removed: Vec<Arc<T>>,
    /// Objects of the new list that the old one lacks, in new-list order.
    pub added: Vec<Arc<T>>,
    /// Whether the lists are the same pointers in the same order (nothing to store).
    pub identical: bool,
    /// The runs of the old list that the walk did not pair, with the runs of the new
    /// list in their place, in list order: replacing each old run by its new run turns
    /// the old list into the new one.
    runs: Vec<(Range<usize>, Range<usize>)>,
}

impl<T> Changes<T> {
    /// Whether the lists hold the same objects (perhaps as other pointers, or in another order).
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty()
    }

    /// Turns `stored` (the old list these changes were found from) into `new`: in place
    /// when a few runs differ (a store's insert, delete or replacement), which spares
    /// cloning and dropping every `Arc` of a large list.
    pub fn store(&self, stored: &mut Vec<Arc<T>>, new: &[Arc<T>]) {
        if self.runs.len() > MAX_SPLICES {
            *stored = new.to_vec();
            return;
        }
        for (old, new_run) in self.runs.iter().rev() {
            stored.splice(old.clone(), new[new_run.clone()].iter().cloned());
        }
        debug_assert!(stored.len() == new.len());
    }
}

/// The changes from `old` to `new`.
pub fn changes<T>(old: &[Arc<T>], new: &[Arc<T>]) -> Changes<T>
where
    T: Metadata<Ty = ObjectMeta> + PartialEq,
{
    let mut runs: Vec<(Range<usize>, Range<usize>)> = Vec::new();
    let mut unpaired = |old_run: Range<usize>, new_run: Range<usize>| match runs.last_mut() {
        Some((o, n)) if o.end == old_run.start && n.end == new_run.start => {
            o.end = old_run.end;
            n.end = new_run.end;
        }
        _ => runs.push((old_run, new_run)),
    };
    let (mut i, mut j) = (0, 0);
    while i < old.len() && j < new.len() {
        if Arc::ptr_eq(&old[i], &new[j]) {
            i += 1;
            j += 1;
            continue;
        }
        let (skip_old, skip_new) = resync(old, new, i, j).unwrap_or((1, 1));
        unpaired(i..i + skip_old, j..j + skip_new);
        i += skip_old;
        j += skip_new;
    }
    if i < old.len() || j < new.len() {
        unpaired(i..old.len(), j..new.len());
    }
    let identical = runs.is_empty();
    if identical {
        return Changes {
            removed: Vec::new(),
            added: Vec::new(),
            identical,
            runs,
        };
    }
    let old_left = runs.iter().flat_map(|(o, _)| o.clone());
    let new_left: Vec<usize> = runs.iter().flat_map(|(_, n)| n.clone()).collect();
    // Pair what is left by identity, then by pointer or content.
    let mut by_key: HashMap<(&str, Option<&str>), Vec<usize>, RandomState> = HashMap::default();
    for i in old_left {
        by_key.entry(key(&*old[i])).or_default().push(i);
    }
    let mut added = Vec::new();
    for &j in &new_left {
        let object = &new[j];
        let paired = by_key.get_mut(&key(&**object)).and_then(|candidates| {
            let same = |&i: &usize| Arc::ptr_eq(&old[i], object);
            let equal = |&i: &usize| *old[i] == **object;
            let found = candidates
                .iter()
                .position(same)
                .or_else(|| candidates.iter().position(equal))?;
            Some(candidates.swap_remove(found))
        });
        if paired.is_none() {
            added.push(Arc::clone(object));
        }
    }
    let mut removed: Vec<usize> = by_key.into_values().flatten().collect();
    removed.sort_unstable();
    Changes {
        removed: removed.into_iter().map(|i| Arc::clone(&old[i])).collect(),
        added,
        identical,
        runs,
    }
}

/// After a mismatch at `(i, j)`: how many old objects (deleted) or new objects (inserted)
/// to skip so that the walk is back in step, if a short skip does it.
fn resync<T>(old: &[Arc<T>], new: &[Arc<T>], i: usize, j: usize) -> Option<(usize, usize)> {
    for d in 1..=LOOK_AHEAD {
        if old.get(i + d).is_some_and(|o| Arc::ptr_eq(o, &new[j])) {
            return Some((d, 0));
        }
        if new.get(j + d).is_some_and(|n| Arc::ptr_eq(&old[i], n)) {
            return Some((0, d));
        }
    }
    None
}

/// `(namespace, name)` as the object spells them.
fn key<T: Metadata<Ty = ObjectMeta>>(object: &T) -> (&str, Option<&str>) {
    let meta = object.metadata();
    (
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref(),
    )
}

/// Removes one object equal to `object` (the same pointer preferably) from `list`;
/// whether there was one.
pub fn remove_one<T: PartialEq>(list: &mut Vec<Arc<T>>, object: &Arc<T>) -> bool {
    let found = list
        .iter()
        .position(|o| Arc::ptr_eq(o, object))
        .or_else(|| list.iter().position(|o| **o == **object));
    found.map(|i| list.remove(i)).is_some()
}

/// Whether `old` and `new` hold the same objects (by pointer or content), in any order.
pub fn same_objects<T>(old: &[Arc<T>], new: &[Arc<T>]) -> bool
where
    T: Metadata<Ty = ObjectMeta> + PartialEq,
{
    old.len() == new.len() && changes(old, new).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;

    fn svc(name: &str, version: &str) -> Arc<Service> {
        let mut s = Service::default();
        s.metadata.namespace = Some("ns".to_owned());
        s.metadata.name = Some(name.to_owned());
        s.metadata.resource_version = Some(version.to_owned());
        Arc::new(s)
    }

    fn names(list: &[Arc<Service>]) -> Vec<String> {
        let name = |s: &Arc<Service>| {
            let m = &s.metadata;
            format!(
                "{}@{}",
                m.name.clone().unwrap_or_default(),
                m.resource_version.clone().unwrap_or_default()
            )
        };
        list.iter().map(name).collect()
    }

    #[test]
    fn the_same_pointers_are_identical() {
        let old: Vec<_> = (0..20).map(|i| svc(&format!("s{i}"), "1")).collect();
        let c = changes(&old, &old.clone());
        assert!(c.identical && c.is_empty());
    }

    #[test]
    fn an_insert_a_delete_and_a_replacement_are_found_in_a_walk() {
        let old: Vec<_> = (0..30).map(|i| svc(&format!("s{i}"), "1")).collect();
        let mut new = old.clone();
        new.insert(5, svc("new", "1"));
        new.remove(20);
        new[25] = svc("s25", "2");
        let c = changes(&old, &new);
        assert!(!c.identical);
        assert_eq!(names(&c.removed), ["s19@1", "s25@1"]);
        assert_eq!(names(&c.added), ["new@1", "s25@2"]);
        let mut stored = old.clone();
        c.store(&mut stored, &new);
        assert!(stored.iter().zip(&new).all(|(a, b)| Arc::ptr_eq(a, b)));
        assert_eq!(stored.len(), new.len());
    }

    #[test]
    fn equal_content_in_another_order_is_no_change() {
        let old: Vec<_> = (0..30).map(|i| svc(&format!("s{i}"), "1")).collect();
        let mut new: Vec<_> = (0..30).map(|i| svc(&format!("s{i}"), "1")).collect();
        new.reverse();
        let c = changes(&old, &new);
        assert!(!c.identical);
        assert!(c.is_empty());
        assert!(same_objects(&old, &new));
        let mut stored = old.clone();
        c.store(&mut stored, &new);
        assert!(stored.iter().zip(&new).all(|(a, b)| Arc::ptr_eq(a, b)));
    }

    #[test]
    fn duplicates_count() {
        let a = svc("a", "1");
        let old = vec![Arc::clone(&a), Arc::clone(&a)];
        let new = vec![Arc::clone(&a)];
        let c = changes(&old, &new);
        assert_eq!(names(&c.removed), ["a@1"]);
        assert!(c.added.is_empty());
    }
}
