//! Resilience policies, each a module in the tower shape: its configuration, its logic and its
//! one error type.
//!
//! Policies are *note configuration*, not wrappers (NOTE-8): set them on a note with
//! `with_retry`, `with_timeout`, `with_deadline`, `with_fallback` and
//! `with_circuit_breaker`. Whatever the order they were set in, they compose in one fixed order
//! (RES-1), outermost first:
//!
//! ```text
//! fallback( deadline( retry( circuit_breaker( timeout( note ) ) ) ) )
//! ```

pub mod circuit_breaker;
pub mod retry;

use std::marker::PhantomData;

/// The policies configured on one note (NOTE-8). Empty by default; an empty set costs nothing
/// on the hot path.
pub struct Policies<S> {
    _score: PhantomData<fn(&mut S)>,
}

impl<S> Policies<S> {
    /// No policies.
    pub const NONE: Self = Policies {
        _score: PhantomData,
    };

    /// Whether no policy is configured.
    pub fn is_empty(&self) -> bool {
        true
    }

    /// `self` with every policy that `over` sets replacing this one's ("setting one twice keeps
    /// the last", NOTE-8).
    pub(crate) fn overlay(self, _over: &Policies<S>) -> Self {
        self
    }

    /// One-line summaries for descriptions (`retry(3)`, `timeout(5s)`).
    pub(crate) fn summaries(&self) -> Vec<String> {
        Vec::new()
    }
}

impl<S> Clone for Policies<S> {
    fn clone(&self) -> Self {
        Policies {
            _score: PhantomData,
        }
    }
}

impl<S> Default for Policies<S> {
    fn default() -> Self {
        Self::NONE
    }
}
