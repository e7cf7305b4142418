//! Targeted cases.
