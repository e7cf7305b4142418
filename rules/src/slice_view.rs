//! [`SliceView`]: a short list borrowed from its owner, or made on the spot from an
//! inline form (rule statements, set element keys).

use std::ops::Deref;

/// A slice of `T`: borrowed, or made from a value kept inline (at most three items).
#[derive(Debug)]
pub enum SliceView<'a, T> {
    Borrowed(&'a [T]),
    /// The items and how many of them are the list's (the rest are filler).
    Made([T; 3], usize),
}

impl<T> Deref for SliceView<'_, T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            SliceView::Borrowed(items) => items,
            SliceView::Made(items, len) => &items[..*len],
        }
    }
}
