//! [`LoggingHooks`]: every occurrence as a `tracing` event (HOOK-6).

use std::time::Duration;

use tracing::Level;

use crate::error::CadenceError;
use crate::hook::{Hook, HookContext, NoteOutcome, RunOutcome, SkipReason};
use crate::policy::circuit_breaker::CircuitState;

/// `tracing::event!` at a level known only at run time (the macros need a constant).
macro_rules! log_at {
    ($level:expr, $($rest:tt)+) => {
        match $level {
            Level::ERROR => tracing::event!(target: "cadence", Level::ERROR, $($rest)+),
            Level::WARN => tracing::event!(target: "cadence", Level::WARN, $($rest)+),
            Level::INFO => tracing::event!(target: "cadence", Level::INFO, $($rest)+),
            Level::DEBUG => tracing::event!(target: "cadence", Level::DEBUG, $($rest)+),
            _ => tracing::event!(target: "cadence", Level::TRACE, $($rest)+),
        }
    };
}

/// Logs runs through `tracing` (HOOK-6), target `cadence`, with the fields `cadence`,
/// `run_id`, `path`, `attempt`, `duration_ms` and `error` where they apply:
///
/// - starts and successes (runs, notes, branches, skips, checkpoints) at
///   [`with_level`](Self::with_level) (INFO);
/// - retries, timeouts, fallbacks, circuit changes, cancellations and runs that ended
///   `Partial` at [`with_warn_level`](Self::with_warn_level) (WARN);
/// - failures (notes, runs, checkpoint saves) at [`with_error_level`](Self::with_error_level)
///   (ERROR).
///
/// Measures are not logged on their own: their notes are. A [`Hook<S>`] for every `S`.
///
/// ```
/// use cadence_core::{BoxError, Cadence, note};
/// use cadence_core::event::LoggingHooks;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let c = Cadence::<()>::new("logged")
///     .then("a", note::from_fn(|_: &mut ()| Box::pin(async { Ok::<_, BoxError>(()) })))
///     .with_hooks(LoggingHooks::new().with_level(tracing::Level::DEBUG))
///     .build()
///     .unwrap();
/// c.run(()).await.unwrap();
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggingHooks {
    level: Level,
    warn_level: Level,
    error_level: Level,
}

impl Default for LoggingHooks {
    fn default() -> Self {
        LoggingHooks::new()
    }
}

impl LoggingHooks {
    /// INFO, WARN and ERROR.
    pub fn new() -> Self {
        LoggingHooks {
            level: Level::INFO,
            warn_level: Level::WARN,
            error_level: Level::ERROR,
        }
    }

    /// The level of starts and successes (INFO by default).
    #[must_use]
    pub fn with_level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }

    /// The level of retries, timeouts, fallbacks, circuit changes and cancellations (WARN by
    /// default).
    #[must_use]
    pub fn with_warn_level(mut self, level: Level) -> Self {
        self.warn_level = level;
        self
    }

    /// The level of failures (ERROR by default).
    #[must_use]
    pub fn with_error_level(mut self, level: Level) -> Self {
        self.error_level = level;
        self
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl<S> Hook<S> for LoggingHooks {
    fn on_cadence_start(&self, cx: &HookContext<'_>, _score: &S) {
        log_at!(
            self.level,
            cadence = cx.cadence(),
            run_id = cx.run_id(),
            parent_run_id = cx.parent_run_id(),
            "cadence started"
        );
    }

    fn on_cadence_end(
        &self,
        cx: &HookContext<'_>,
        _score: &S,
        duration: Duration,
        outcome: &RunOutcome<'_>,
    ) {
        let (cadence, run_id, duration_ms) = (cx.cadence(), cx.run_id(), ms(duration));
        match *outcome {
            RunOutcome::Succeeded => {
                log_at!(
                    self.level,
                    cadence,
                    run_id,
                    duration_ms,
                    "cadence completed"
                )
            }
            RunOutcome::Partial { failed_measures } => log_at!(
                self.warn_level,
                cadence,
                run_id,
                duration_ms,
                failed_measures = ?failed_measures,
                "cadence completed with handled failures"
            ),
            RunOutcome::Stopped { path, reason } => log_at!(
                self.level,
                cadence,
                run_id,
                path,
                duration_ms,
                reason,
                "cadence stopped by a note"
            ),
            RunOutcome::Failed(error) => log_at!(
                self.error_level,
                cadence,
                run_id,
                duration_ms,
                error = %error,
                error.kind = error.kind().as_str(),
                "cadence failed"
            ),
            RunOutcome::Cancelled => log_at!(
                self.warn_level,
                cadence,
                run_id,
                duration_ms,
                "cadence cancelled"
            ),
        }
    }

    fn on_note_start(&self, cx: &HookContext<'_>, path: &str, attempt: u32, _score: &S) {
        log_at!(
            self.level,
            cadence = cx.cadence(),
            run_id = cx.run_id(),
            path,
            attempt,
            "note started"
        );
    }

    fn on_note_end(
        &self,
        cx: &HookContext<'_>,
        path: &str,
        attempt: u32,
        duration: Duration,
        outcome: &NoteOutcome<'_>,
        _score: &S,
    ) {
        let (cadence, run_id, duration_ms) = (cx.cadence(), cx.run_id(), ms(duration));
        match *outcome {
            NoteOutcome::Succeeded => log_at!(
                self.level,
                cadence,
                run_id,
                path,
                attempt,
                duration_ms,
                "note completed"
            ),
            NoteOutcome::Stopped => log_at!(
                self.level,
                cadence,
                run_id,
                path,
                attempt,
                duration_ms,
                "note completed and stopped the run"
            ),
            NoteOutcome::WillRetry(error) => log_at!(
                self.warn_level,
                cadence,
                run_id,
                path,
                attempt,
                duration_ms,
                error = %error,
                "note attempt failed; it will be retried"
            ),
            NoteOutcome::Failed(error) => log_at!(
                self.error_level,
                cadence,
                run_id,
                path,
                attempt,
                duration_ms,
                error = %error,
                error.kind = error.kind().as_str(),
                "note failed"
            ),
            NoteOutcome::Cancelled => log_at!(
                self.warn_level,
                cadence,
                run_id,
                path,
                attempt,
                duration_ms,
                "note cancelled"
            ),
        }
    }

    fn on_retry(
        &self,
        cx: &HookContext<'_>,
        path: &str,
        attempt: u32,
        delay: Duration,
        error: &CadenceError,
    ) {
        log_at!(
            self.warn_level,
            cadence = cx.cadence(),
            run_id = cx.run_id(),
            path,
            attempt,
            delay_ms = ms(delay),
            error = %error,
            "retrying note"
        );
    }

    fn on_timeout(&self, cx: &HookContext<'_>, path: &str, attempt: u32, after: Duration) {
        log_at!(
            self.warn_level,
            cadence = cx.cadence(),
            run_id = cx.run_id(),
            path,
            attempt,
            duration_ms = ms(after),
            "note attempt timed out"
        );
    }

    fn on_fallback(&self, cx: &HookContext<'_>, path: &str, error: &CadenceError) {
        log_at!(
            self.warn_level,
            cadence = cx.cadence(),
            run_id = cx.run_id(),
            path,
            error = %error,
            "using the fallback of a failed note"
        );
    }

    fn on_circuit_state_change(
        &self,
        cx: &HookContext<'_>,
        circuit: &str,
        from: CircuitState,
        to: CircuitState,
    ) {
        log_at!(
            self.warn_level,
            cadence = cx.cadence(),
            run_id = cx.run_id(),
            circuit,
            from = from.as_str(),
            to = to.as_str(),
            "circuit state changed"
        );
    }

    fn on_checkpoint_loaded(&self, cx: &HookContext<'_>, completed: usize, forced: bool) {
        log_at!(
            self.level,
            cadence = cx.cadence(),
            run_id = cx.run_id(),
            completed,
            forced,
            "checkpoint loaded"
        );
    }

    fn on_checkpoint_saved(&self, cx: &HookContext<'_>, path: &str, completed: usize) {
        log_at!(
            self.level,
            cadence = cx.cadence(),
            run_id = cx.run_id(),
            path,
            completed,
            "checkpoint saved"
        );
    }

    fn on_checkpoint_error(&self, cx: &HookContext<'_>, error: &CadenceError) {
        log_at!(
            self.error_level,
            cadence = cx.cadence(),
            run_id = cx.run_id(),
            error = %error,
            "checkpoint save failed; the run goes on"
        );
    }

    fn on_note_skipped(&self, cx: &HookContext<'_>, path: &str, reason: SkipReason) {
        log_at!(
            self.level,
            cadence = cx.cadence(),
            run_id = cx.run_id(),
            path,
            reason = ?reason,
            "note skipped"
        );
    }

    fn on_branch_taken(&self, cx: &HookContext<'_>, path: &str, branch: &str, key: &str) {
        log_at!(
            self.level,
            cadence = cx.cadence(),
            run_id = cx.run_id(),
            path,
            branch,
            key,
            "branch taken"
        );
    }
}
