//! Timeout: bound each attempt of a note (TMO-1…3), and the deadline that bounds all attempts
//! and waits of one execution (RET-7).
//!
//! On expiry the attempt's future is dropped (cancelled), `on_timeout` fires and the attempt
//! fails with `CadenceError::Timeout { scope: Attempt }`, which retry retries by default and a
//! circuit breaker counts as a failure. Only the engine's timers produce `Timeout` (TMO-2): a
//! note's own I/O timeout stays a `Note` error.
//!
//! ```
//! use std::time::Duration;
//! use cadence_core::timeout::Timeout;
//! let t = Timeout::new(Duration::from_secs(5)).with_message("the bank did not answer in time");
//! assert_eq!(t.after(), Duration::from_secs(5));
//! ```

use std::time::Duration;

pub(crate) mod bounded;

/// A per-attempt timeout with an optional message (TMO-3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeout {
    pub(crate) after: Duration,
    pub(crate) message: Option<String>,
}

impl Timeout {
    /// Attempts may take at most `after` (non-zero; checked at `build()`).
    pub fn new(after: Duration) -> Self {
        Timeout {
            after,
            message: None,
        }
    }

    /// Replaces the default text of the error's `Display` (TMO-3).
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// The bound.
    pub fn after(&self) -> Duration {
        self.after
    }
}

impl From<Duration> for Timeout {
    fn from(after: Duration) -> Self {
        Timeout::new(after)
    }
}
