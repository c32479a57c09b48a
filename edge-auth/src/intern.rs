//! Names given at run time as owned strings, kept once each for the life of the process, so the types
//! that carry them (a `Quota`, a `Validation`'s required claims) can keep `&'static str` and stay cheap
//! on the hot path. Bounded: a program that makes up names without end gets a refusal, not a leak.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

/// Distinct names one process keeps.
pub(crate) const MAX_NAMES: usize = 4096;

/// The one kept copy of `name`; `None` once [`MAX_NAMES`] others are kept.
pub(crate) fn intern(name: String) -> Option<&'static str> {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(kept) = names.get(name.as_str()) {
        return Some(kept);
    }
    if names.len() >= MAX_NAMES {
        return None;
    }
    let kept: &'static str = Box::leak(name.into_boxed_str());
    names.insert(kept);
    Some(kept)
}
