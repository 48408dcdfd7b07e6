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
    pub(crate) retry_attempts: Option<u32>,
    pub(crate) timeout: Option<std::time::Duration>,
    pub(crate) deadline: Option<std::time::Duration>,
    _score: PhantomData<fn(&mut S)>,
}

impl<S> Policies<S> {
    /// No policies.
    pub const NONE: Self = Policies {
        retry_attempts: None,
        timeout: None,
        deadline: None,
        _score: PhantomData,
    };

    /// Used by `#[note(retry = n)]`. Not for direct use.
    #[doc(hidden)]
    #[must_use]
    pub fn __macro_retry(mut self, attempts: u32) -> Self {
        self.retry_attempts = Some(attempts);
        self
    }

    /// Used by `#[note(timeout = "…")]`. Not for direct use.
    #[doc(hidden)]
    #[must_use]
    pub fn __macro_timeout(mut self, after: std::time::Duration) -> Self {
        self.timeout = Some(after);
        self
    }

    /// Used by `#[note(deadline = "…")]`. Not for direct use.
    #[doc(hidden)]
    #[must_use]
    pub fn __macro_deadline(mut self, after: std::time::Duration) -> Self {
        self.deadline = Some(after);
        self
    }

    /// Whether no policy is configured.
    pub fn is_empty(&self) -> bool {
        self.retry_attempts.is_none() && self.timeout.is_none() && self.deadline.is_none()
    }

    /// `self` with every policy that `over` sets replacing this one's ("setting one twice keeps
    /// the last", NOTE-8).
    pub(crate) fn overlay(self, over: &Policies<S>) -> Self {
        Policies {
            retry_attempts: over.retry_attempts.or(self.retry_attempts),
            timeout: over.timeout.or(self.timeout),
            deadline: over.deadline.or(self.deadline),
            _score: PhantomData,
        }
    }

    /// One-line summaries for descriptions (`retry(3)`, `timeout(5s)`).
    pub(crate) fn summaries(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(n) = self.retry_attempts {
            out.push(format!("retry({n})"));
        }
        if let Some(t) = self.timeout {
            out.push(format!("timeout({})", crate::error::HumanDuration(t)));
        }
        if let Some(d) = self.deadline {
            out.push(format!("deadline({})", crate::error::HumanDuration(d)));
        }
        out
    }
}

impl<S> Clone for Policies<S> {
    fn clone(&self) -> Self {
        Policies {
            retry_attempts: self.retry_attempts,
            timeout: self.timeout,
            deadline: self.deadline,
            _score: PhantomData,
        }
    }
}

impl<S> Default for Policies<S> {
    fn default() -> Self {
        Self::NONE
    }
}
