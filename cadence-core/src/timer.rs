//! Tokio timers that report a runtime without a time driver instead of panicking.
//!
//! tokio panics when a timer is made on a runtime built without its time driver
//! (`runtime::Builder::enable_time`, which `enable_all` and `#[tokio::main]` include). The
//! engine makes a timer only when something must wait — an attempt with a timeout or a
//! deadline that returned `Pending`, a retry delay, a periodic flush — and a panic there would
//! come out of `Cadence::run` from the library's own code. These functions turn it into
//! [`NoTimeDriver`], which the engine reports as a [`CadenceError::Validation`] naming the note
//! and the fix, and which the background tasks log.
//!
//! tokio has no way to ask whether the driver is on, so its panic is caught where the timer is
//! made (before any of tokio's state changes): the process's panic hook still prints it once per
//! failed timer. Outside any tokio runtime (a caller driving `run` with another executor) the
//! same errors say that a runtime is needed ([`NO_RUNTIME`]); plain notes still run there,
//! and the other parts that need tokio — blocking notes, `FileStore`'s I/O — fail with that
//! message too instead of panicking in `spawn_blocking`.
//!
//! ```
//! use std::time::Duration;
//! use cadence_core::{BoxError, Cadence, note};
//!
//! let cadence = Cadence::<u32>::new("slow")
//!     .then("waits", note::from_fn(|n: &mut u32| Box::pin(async move {
//!         tokio::task::yield_now().await; // not ready at its first poll: the timeout is armed
//!         *n += 1;
//!         Ok::<_, BoxError>(())
//!     })).with_timeout(Duration::from_secs(1)))
//!     .build()?;
//! // No `enable_time()`: the run fails with a validation error instead of panicking.
//! let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! let err = rt.block_on(cadence.run(0)).unwrap_err();
//! assert!(err.to_string().contains("enable_time"), "{err}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::panic::catch_unwind;
use std::time::Duration;

use tokio::time::{Instant, Interval, Sleep};

use crate::error::{CadenceError, Problem};

/// The current tokio runtime has no time driver (or there is no current runtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NoTimeDriver;

impl NoTimeDriver {
    /// The error of note `path`, which cannot wait for `what` (e.g. "its timeout").
    pub(crate) fn error(self, path: impl Into<String>, what: &str) -> CadenceError {
        CadenceError::Validation {
            problems: vec![Problem::new(
                path,
                format!("cannot wait for {what}: {}", Self::fix()),
            )],
        }
    }

    /// What is wrong and how to fix it, for messages.
    const FIX: &'static str = "the tokio runtime has no time driver; \
         build it with `enable_time()` or `enable_all()` (as `#[tokio::main]` does)";

    /// [`FIX`](Self::FIX), or, outside any tokio runtime, that one is needed.
    pub(crate) fn fix() -> &'static str {
        match tokio::runtime::Handle::try_current() {
            Ok(_) => Self::FIX,
            Err(_) => NO_RUNTIME,
        }
    }
}

/// What is wrong outside any tokio runtime, for messages.
pub(crate) const NO_RUNTIME: &str = "this is not running inside a tokio runtime, which Cadence's \
     timers and blocking work need; run it on one built with `enable_all()` (as \
     `#[tokio::main]` does)";

/// `now + d`, or about 30 years from `now` when that is past what an [`Instant`] can hold:
/// tokio's own stand-in for "never" (as `tokio::time::timeout(Duration::MAX, …)` does), so a
/// bound of `Duration::MAX` means no bound rather than an overflow panic.
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| far_future(now))
}

/// About 30 years from `now`.
pub(crate) fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(86_400 * 365 * 30)
}

/// `tokio::time::sleep_until(at)`, or [`NoTimeDriver`].
pub(crate) fn sleep_until(at: Instant) -> Result<Sleep, NoTimeDriver> {
    catch_unwind(|| tokio::time::sleep_until(at)).map_err(|_| NoTimeDriver)
}

/// `tokio::time::sleep(after)`, or [`NoTimeDriver`].
pub(crate) fn sleep(after: Duration) -> Result<Sleep, NoTimeDriver> {
    catch_unwind(|| tokio::time::sleep(after)).map_err(|_| NoTimeDriver)
}

/// `tokio::time::interval(every)`, or [`NoTimeDriver`].
pub(crate) fn interval(every: Duration) -> Result<Interval, NoTimeDriver> {
    catch_unwind(|| tokio::time::interval(every)).map_err(|_| NoTimeDriver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_without_timers_is_reported_not_a_panic() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(sleep(Duration::from_millis(1)).err(), Some(NoTimeDriver));
            assert_eq!(sleep_until(Instant::now()).err(), Some(NoTimeDriver));
            assert!(interval(Duration::from_millis(1)).is_err());
            let e = NoTimeDriver.error("a/b", "its timeout");
            assert!(
                matches!(&e, CadenceError::Validation { problems } if problems[0].path == "a/b")
            );
            assert!(e.to_string().contains("enable_time()"), "{e}");
        });
        // Outside any runtime the message says that one is needed.
        assert!(sleep(Duration::from_millis(1)).is_err());
        let e = NoTimeDriver.error("a/b", "its timeout");
        assert!(
            e.to_string().contains("not running inside a tokio runtime"),
            "{e}"
        );
    }

    #[test]
    fn a_bound_past_what_an_instant_holds_is_far_away_not_a_panic() {
        let now = Instant::now();
        assert_eq!(
            after(now, Duration::from_secs(3)),
            now + Duration::from_secs(3)
        );
        assert_eq!(after(now, Duration::MAX), far_future(now));
        assert!(far_future(now) > now + Duration::from_secs(86_400 * 365 * 29));
    }

    #[tokio::test(start_paused = true)]
    async fn a_runtime_with_timers_gets_its_timer() {
        let start = Instant::now();
        sleep(Duration::from_millis(5)).unwrap().await;
        sleep_until(start + Duration::from_millis(8)).unwrap().await;
        assert_eq!(start.elapsed(), Duration::from_millis(8));
    }
}
