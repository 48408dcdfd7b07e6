//! Retry: run a failing note again after a delay (RET-1…10).
//!
//! This module also holds the error markers a note uses to steer retries: [`Permanent`] (never
//! retry this) and [`RetryAfter`] (retry after the server's hint).

use std::fmt;
use std::time::Duration;

use crate::error::BoxError;

/// Marks an error as not worth retrying (RET-3). Retry finds it anywhere in the source chain.
///
/// ```
/// use cadence_core::{BoxError, retry::Permanent};
/// fn check(card: &str) -> Result<(), BoxError> {
///     if card.is_empty() {
///         return Err(Permanent::new("card number missing").into());
///     }
///     Ok(())
/// }
/// assert!(check("").is_err());
/// ```
#[derive(Debug)]
pub struct Permanent {
    inner: BoxError,
}

impl Permanent {
    /// Wraps `err` as permanent.
    pub fn new(err: impl Into<BoxError>) -> Self {
        Permanent { inner: err.into() }
    }

    /// The wrapped error.
    pub fn into_inner(self) -> BoxError {
        self.inner
    }
}

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for Permanent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.inner.as_ref())
    }
}

/// Carries a server's hint of when to retry (HTTP `Retry-After`, RET-6).
#[derive(Debug)]
pub struct RetryAfter {
    after: Duration,
    inner: BoxError,
}

impl RetryAfter {
    /// `err`, to be retried after `after` (capped at the policy's `max_delay`).
    pub fn new(after: Duration, err: impl Into<BoxError>) -> Self {
        RetryAfter {
            after,
            inner: err.into(),
        }
    }

    /// The hinted delay.
    pub fn after(&self) -> Duration {
        self.after
    }
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for RetryAfter {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.inner.as_ref())
    }
}
