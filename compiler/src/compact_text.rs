//! Strings as the compact API objects keep them: short ones inline, node names shared.
//!
//! A node holds one address and one node name per endpoint of every proxied Service. As a
//! `Box<str>` each is a separate allocation of at least 32 bytes with glibc's header, for
//! ten bytes of text. [`InlineStr`] keeps up to [`INLINE_CAPACITY`] bytes (every IPv4
//! address, most IPv6 ones) inside itself, and [`node_name`] hands out one shared copy of
//! each node name, of which a cluster has as many as it has nodes.

use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};

/// Bytes an [`InlineStr`] holds without allocating.
pub const INLINE_CAPACITY: usize = 22;

/// An immutable string stored inline when it fits in [`INLINE_CAPACITY`] bytes, else on
/// the heap; 24 bytes either way. Read it as a `&str`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct InlineStr(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    /// Invariant: `bytes[..len]` is UTF-8 and `len <= INLINE_CAPACITY`.
    Inline {
        len: u8,
        bytes: [u8; INLINE_CAPACITY],
    },
    Heap(Box<str>),
}

impl InlineStr {
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Always UTF-8: the bytes were copied whole from a `str` (never the empty
            // fallback).
            Repr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Heap(text) => text,
        }
    }

    /// Whether the text is stored inline (no allocation).
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline { .. })
    }
}

impl From<&str> for InlineStr {
    fn from(text: &str) -> Self {
        match u8::try_from(text.len()) {
            Ok(len) if text.len() <= INLINE_CAPACITY => {
                let mut bytes = [0; INLINE_CAPACITY];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                InlineStr(Repr::Inline { len, bytes })
            }
            _ => InlineStr(Repr::Heap(text.into())),
        }
    }
}

impl From<String> for InlineStr {
    fn from(text: String) -> Self {
        if text.len() <= INLINE_CAPACITY {
            InlineStr::from(text.as_str())
        } else {
            InlineStr(Repr::Heap(text.into_boxed_str()))
        }
    }
}

impl Default for InlineStr {
    /// The empty string (inline).
    fn default() -> Self {
        InlineStr::from("")
    }
}

impl PartialEq<str> for InlineStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for InlineStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Deref for InlineStr {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for InlineStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The node names handed out so far, and how many were kept at the last sweep.
struct NodeNames {
    names: HashSet<Arc<str>>,
    swept_at: usize,
}

static NODE_NAMES: Mutex<Option<NodeNames>> = Mutex::new(None);

/// Names kept before the first sweep for names no endpoint holds any more.
const FIRST_SWEEP: usize = 1024;

/// The shared copy of node name `name`: equal names give the same allocation. Names no
/// endpoint holds any more are dropped whenever the table has doubled since it was last
/// swept, so a cluster's node churn does not accumulate.
pub fn node_name(name: String) -> Arc<str> {
    let mut guard = NODE_NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    let table = guard.get_or_insert_with(|| NodeNames {
        names: HashSet::new(),
        swept_at: FIRST_SWEEP / 2,
    });
    if let Some(shared) = table.names.get(name.as_str()) {
        return Arc::clone(shared);
    }
    if table.names.len() >= 2 * table.swept_at {
        table.names.retain(|n| Arc::strong_count(n) > 1);
        table.swept_at = table.names.len().max(FIRST_SWEEP / 2);
    }
    let shared: Arc<str> = name.into();
    table.names.insert(Arc::clone(&shared));
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_inline_long_text_on_the_heap_and_both_read_back() {
        for text in [
            "",
            "10.0.0.1",
            "255.255.255.255",
            "2001:db8::1",
            "x".repeat(22).as_str(),
        ] {
            let short = InlineStr::from(text);
            assert!(short.is_inline(), "{text:?}");
            assert_eq!(&*short, text);
            assert_eq!(InlineStr::from(text.to_owned()), short);
        }
        let long = "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff";
        let heap = InlineStr::from(long.to_owned());
        assert!(!heap.is_inline());
        assert_eq!(heap.as_str(), long);
        assert_eq!(InlineStr::from(long), heap);
        assert_eq!(format!("{heap:?}"), format!("{long:?}"));
        assert_eq!(size_of::<Option<InlineStr>>(), 24);
        assert!(InlineStr::default().is_inline());
        assert_eq!(InlineStr::default(), "");
        let family = InlineStr::from("IPv4");
        assert_eq!(family, "IPv4");
        assert!(family != "IPv6");
    }

    #[test]
    fn multibyte_text_round_trips_at_the_inline_limit() {
        let text = "é".repeat(11); // 22 bytes
        let short = InlineStr::from(text.as_str());
        assert!(short.is_inline());
        assert_eq!(&*short, text);
        let longer = "é".repeat(12);
        assert!(!InlineStr::from(longer.as_str()).is_inline());
    }

    #[test]
    fn equal_node_names_share_one_allocation_and_unheld_ones_are_swept() {
        let a = node_name("intern-test-node-a".to_owned());
        let b = node_name(String::from("intern-test-node-a"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, "intern-test-node-a");
        // Enough unheld names to force sweeps: the table stays bounded.
        for i in 0..10 * FIRST_SWEEP {
            drop(node_name(format!("intern-test-churn-{i}")));
        }
        let kept = NODE_NAMES.lock().unwrap().as_ref().unwrap().names.len();
        assert!(kept <= 2 * FIRST_SWEEP + 1, "{kept} names kept");
        // A held name survives every sweep.
        assert!(Arc::ptr_eq(&a, &node_name("intern-test-node-a".to_owned())));
    }
}
