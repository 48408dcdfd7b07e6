//! Resilience policies, each a module in the tower shape: its configuration, its logic and the
//! error variant it produces.
//!
//! Policies are *note configuration*, not wrappers (NOTE-8): set them on a note with
//! [`Note::with_retry`](crate::Note::with_retry), [`with_timeout`](crate::Note::with_timeout),
//! [`with_deadline`](crate::Note::with_deadline), [`with_fallback`](crate::Note::with_fallback)
//! and [`with_circuit_breaker`](crate::Note::with_circuit_breaker), or with
//! `#[note(retry = 3, timeout = "5s", deadline = "1m")]`. Setting one twice keeps the last.
//! Whatever the order they were set in, they compose in one fixed order (RES-1), outermost
//! first:
//!
//! ```text
//! fallback( deadline( retry( circuit_breaker( timeout( note ) ) ) ) )
//!
//!  ┌ fallback ─────────────────────────────────────────────────────┐
//!  │ ┌ deadline ─────────────────────────────────────────────────┐ │
//!  │ │ ┌ retry: attempt 1 … n, waits between ──────────────────┐ │ │
//!  │ │ │ ┌ circuit breaker: admit / reject, count ───────────┐ │ │ │
//!  │ │ │ │ ┌ timeout ──────┐                                 │ │ │ │
//!  │ │ │ │ │     note      │                                 │ │ │ │
//! ```
//!
//! So each attempt has its own timeout; a timeout is a breaker failure; a rejection is an
//! attempt that retry does not retry; the deadline bounds all attempts and waits; fallback sees
//! every failure below it. A stop passes through every layer untouched and cancellation is
//! never retried or caught (RES-2).

pub mod circuit_breaker;
pub mod fallback;
pub mod retry;
pub mod timeout;

use std::time::Duration;

use crate::error::{HumanDuration, Problem};
use circuit_breaker::CircuitBreaker;
use fallback::Fallback;
use retry::Retry;
use timeout::Timeout;

/// The policies configured on one note (NOTE-8). Empty by default; an empty set costs one
/// branch on the hot path.
pub struct Policies<S> {
    pub(crate) retry: Option<Retry>,
    pub(crate) timeout: Option<Timeout>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) fallback: Option<Fallback<S>>,
    pub(crate) breaker: Option<CircuitBreaker>,
}

impl<S> Policies<S> {
    /// No policies.
    pub const NONE: Self = Policies {
        retry: None,
        timeout: None,
        deadline: None,
        fallback: None,
        breaker: None,
    };

    /// Used by `#[note(retry = n)]`. Not for direct use.
    #[doc(hidden)]
    #[must_use]
    pub fn __macro_retry(mut self, attempts: u32) -> Self {
        self.retry = Some(Retry::new(attempts));
        self
    }

    /// Used by `#[note(timeout = "…")]`. Not for direct use.
    #[doc(hidden)]
    #[must_use]
    pub fn __macro_timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(Timeout::new(after));
        self
    }

    /// Used by `#[note(deadline = "…")]`. Not for direct use.
    #[doc(hidden)]
    #[must_use]
    pub fn __macro_deadline(mut self, after: Duration) -> Self {
        self.deadline = Some(after);
        self
    }

    /// Whether no policy is configured.
    pub fn is_empty(&self) -> bool {
        self.retry.is_none()
            && self.timeout.is_none()
            && self.deadline.is_none()
            && self.fallback.is_none()
            && self.breaker.is_none()
    }

    /// `self` with every policy that `over` sets replacing this one's ("setting one twice keeps
    /// the last", NOTE-8).
    pub(crate) fn overlay(self, over: &Policies<S>) -> Self {
        Policies {
            retry: over.retry.clone().or(self.retry),
            timeout: over.timeout.clone().or(self.timeout),
            deadline: over.deadline.or(self.deadline),
            fallback: over.fallback.clone().or(self.fallback),
            breaker: over.breaker.clone().or(self.breaker),
        }
    }

    /// One-line summaries for descriptions (`retry(3)`, `timeout(5s)`), in RES-1 order from
    /// the outside in.
    pub(crate) fn summaries(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.fallback.is_some() {
            out.push("fallback".to_owned());
        }
        if let Some(d) = self.deadline {
            out.push(format!("deadline({})", HumanDuration(d)));
        }
        if let Some(r) = &self.retry {
            out.push(r.summary());
        }
        if let Some(b) = &self.breaker {
            out.push(format!("circuit_breaker({})", b.name()));
        }
        if let Some(t) = &self.timeout {
            out.push(format!("timeout({})", HumanDuration(t.after)));
        }
        out
    }

    /// DSL-4 errors and DSL-5 warnings of these policies at `path`.
    pub(crate) fn check(&self, path: &str, errors: &mut Vec<Problem>, warnings: &mut Vec<Problem>) {
        if let Some(r) = &self.retry {
            errors.extend(r.problems(path));
        }
        if let Some(t) = &self.timeout
            && t.after.is_zero()
        {
            errors.push(Problem::new(
                path,
                "the timeout is zero; give it a positive duration",
            ));
        }
        if let Some(d) = self.deadline
            && d.is_zero()
        {
            errors.push(Problem::new(
                path,
                "the deadline is zero; give it a positive duration",
            ));
        }
        if let (Some(t), Some(d)) = (&self.timeout, self.deadline)
            && !t.after.is_zero()
            && t.after >= d
        {
            warnings.push(Problem::new(
                path,
                "the per-attempt timeout is not below the deadline, so it can never fire before it",
            ));
        }
    }
}

impl<S> Clone for Policies<S> {
    fn clone(&self) -> Self {
        Policies {
            retry: self.retry.clone(),
            timeout: self.timeout.clone(),
            deadline: self.deadline,
            fallback: self.fallback.clone(),
            breaker: self.breaker.clone(),
        }
    }
}

impl<S> Default for Policies<S> {
    fn default() -> Self {
        Self::NONE
    }
}

impl<S> std::fmt::Debug for Policies<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.summaries()).finish()
    }
}
