//! Errors: [`CadenceError`], its [`ErrorKind`], and the pieces it is made of.
//!
//! Every failure a run can end with is one typed variant of [`CadenceError`] (ERR-1). Paths in
//! errors are *full* paths (GEN-2): a note `charge` inside a child measure `pay` is `pay/charge`.
//! `Display` says what happened, where, and what to do about it (ERR-4); `source()` keeps the
//! chain (ERR-5), so `anyhow`/`eyre` reports show the note's own error underneath.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// The error type notes, handlers and conditions may return: any boxed error (GEN-6).
///
/// Notes return `Result<_, E>` with `E: Into<BoxError>`, so `?` works with any error type and
/// with plain strings (`Err("out of stock".into())`).
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Which bound a [`CadenceError::Timeout`] broke.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutScope {
    /// The per-attempt timeout (`with_timeout`, TMO-1).
    Attempt,
    /// The total deadline over all attempts and waits (`with_deadline`, RET-7).
    Deadline,
}

impl TimeoutScope {
    /// `"attempt"` or `"deadline"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutScope::Attempt => "attempt",
            TimeoutScope::Deadline => "deadline",
        }
    }
}

/// What went wrong with a checkpoint store (CKP-8, CKP-9, REDIS-4).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckpointErrorKind {
    /// The store could not be reached or answered with an I/O error.
    Unavailable,
    /// A stored record could not be decoded (it is left untouched).
    Corrupt,
    /// A stored record has a newer format version than this library understands.
    UnsupportedVersion,
    /// Another run (in this process or another) holds this run id.
    LeaseHeld,
    /// This run's lease expired or was taken over; its work was cancelled.
    LeaseLost,
    /// The store does not implement this operation (e.g. leases on a file store).
    Unsupported,
    /// Anything else, described by the source.
    Other,
}

impl CheckpointErrorKind {
    /// A stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointErrorKind::Unavailable => "unavailable",
            CheckpointErrorKind::Corrupt => "corrupt",
            CheckpointErrorKind::UnsupportedVersion => "unsupported_version",
            CheckpointErrorKind::LeaseHeld => "lease_held",
            CheckpointErrorKind::LeaseLost => "lease_lost",
            CheckpointErrorKind::Unsupported => "unsupported",
            CheckpointErrorKind::Other => "other",
        }
    }
}

/// One problem found by validation (DSL-4, DSL-5, RUN-2): where, and what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Problem {
    /// The path of the offending measure or note (empty for the cadence itself).
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names may hold control characters (they are errors themselves): escape them, so one
        // problem is always one line (ERR-4).
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path.escape_debug(), self.message)
        }
    }
}

/// A parallel group's members changed one field in incompatible ways (PAR-8, PAR-12).
///
/// It names the field and the members, never the values: scores may hold secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MergeConflict {
    /// The group's full path.
    pub group: String,
    /// The conflicting field.
    pub field: String,
    /// Every member that changed the field, in declaration order.
    pub notes: Vec<String>,
}

impl MergeConflict {
    /// A conflict on `field` between `notes` (the group path is filled in by the engine).
    pub fn new(field: impl Into<String>, notes: Vec<String>) -> Self {
        MergeConflict {
            group: String::new(),
            field: field.into(),
            notes,
        }
    }
}

impl fmt::Display for MergeConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "merge conflict in group '{}': field '{}' changed differently by notes ",
            self.group, self.field
        )?;
        for (i, n) in self.notes.iter().enumerate() {
            if i > 0 {
                f.write_str(if i + 1 == self.notes.len() {
                    " and "
                } else {
                    ", "
                })?;
            }
            write!(f, "'{n}'")?;
        }
        f.write_str(
            "; write different fields or choose LastWriteWins, SmartMerge or a custom merge",
        )
    }
}

impl StdError for MergeConflict {}

/// Every way a run can fail (ERR-1). `#[non_exhaustive]`: match on [`CadenceError::kind`] or
/// use the helpers ([`is_timeout`](Self::is_timeout), [`is_retryable`](Self::is_retryable), …)
/// rather than on every variant.
#[non_exhaustive]
#[derive(Debug)]
pub enum CadenceError {
    /// A note (or a condition, selector or fallback) returned an error.
    Note {
        /// Full path of the note.
        path: String,
        /// The note's own error.
        source: BoxError,
    },
    /// A member of a parallel group failed; its siblings were cancelled.
    Parallel {
        /// Full path of the group.
        group: String,
        /// The failing member's name.
        note: String,
        /// The failing member's 0-based index in the group.
        index: usize,
        /// The member's error.
        source: Box<CadenceError>,
    },
    /// An engine timer fired: a per-attempt timeout or a deadline.
    Timeout {
        /// Full path of the note.
        path: String,
        /// The configured bound.
        after: Duration,
        /// Which bound.
        scope: TimeoutScope,
        /// A custom message replacing the default text (TMO-3).
        message: Option<String>,
        /// For a deadline, the last attempt's error, if any (ERR-5).
        last: Option<Box<CadenceError>>,
    },
    /// A circuit breaker rejected the call without running the note (CB-5).
    CircuitOpen {
        /// Full path of the note.
        path: String,
        /// The breaker's name.
        circuit: String,
        /// Time until the breaker admits a probe (zero when half-open is full).
        retry_after: Duration,
    },
    /// Every allowed attempt failed (RET-1).
    RetryExhausted {
        /// Full path of the note.
        path: String,
        /// Attempts that ran.
        attempts: u32,
        /// The last attempt's error.
        last: Box<CadenceError>,
    },
    /// A parallel group's results could not be merged (PAR-8).
    MergeConflict(MergeConflict),
    /// A route's selector returned a key with no route and there is no default (BR-2).
    Route {
        /// Full path of the route measure.
        path: String,
        /// The key the selector returned.
        key: String,
    },
    /// A checkpoint store failed (CKP-8).
    Checkpoint {
        /// What kind of failure.
        kind: CheckpointErrorKind,
        /// The store's error.
        source: BoxError,
    },
    /// A stored checkpoint was written by a structurally different cadence (CKP-6).
    CheckpointMismatch {
        /// The run id.
        run_id: String,
        /// Fingerprint in the record.
        stored: String,
        /// Fingerprint of this cadence.
        current: String,
    },
    /// A definition or an input is invalid; every problem is listed (DSL-4, RUN-2).
    Validation {
        /// The problems, in declaration order.
        problems: Vec<Problem>,
    },
    /// User code panicked (NOTE-7, GEN-5).
    Panicked {
        /// Full path where it panicked.
        path: String,
        /// The panic message (string payloads as text).
        message: String,
    },
    /// The run was cancelled through its cancellation token (RUN-6).
    Cancelled,
    /// The `on_error` handler failed or panicked while handling `original` (RUN-10).
    HandlerFailed {
        /// The error the handler was handling.
        original: Box<CadenceError>,
        /// The handler's own error.
        handler: BoxError,
    },
}

/// The kind of a [`CadenceError`], with a stable name for events and problem types (ERR-2).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// [`CadenceError::Note`]
    Note,
    /// [`CadenceError::Parallel`]
    Parallel,
    /// [`CadenceError::Timeout`]
    Timeout,
    /// [`CadenceError::CircuitOpen`]
    CircuitOpen,
    /// [`CadenceError::RetryExhausted`]
    RetryExhausted,
    /// [`CadenceError::MergeConflict`]
    MergeConflict,
    /// [`CadenceError::Route`]
    Route,
    /// [`CadenceError::Checkpoint`]
    Checkpoint,
    /// [`CadenceError::CheckpointMismatch`]
    CheckpointMismatch,
    /// [`CadenceError::Validation`]
    Validation,
    /// [`CadenceError::Panicked`]
    Panicked,
    /// [`CadenceError::Cancelled`]
    Cancelled,
    /// [`CadenceError::HandlerFailed`]
    HandlerFailed,
}

impl ErrorKind {
    /// The stable snake_case name (`note`, `circuit_open`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Note => "note",
            ErrorKind::Parallel => "parallel",
            ErrorKind::Timeout => "timeout",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::RetryExhausted => "retry_exhausted",
            ErrorKind::MergeConflict => "merge_conflict",
            ErrorKind::Route => "route",
            ErrorKind::Checkpoint => "checkpoint",
            ErrorKind::CheckpointMismatch => "checkpoint_mismatch",
            ErrorKind::Validation => "validation",
            ErrorKind::Panicked => "panicked",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::HandlerFailed => "handler_failed",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl CadenceError {
    /// A validation error with one problem.
    pub fn validation(path: impl Into<String>, message: impl Into<String>) -> Self {
        CadenceError::Validation {
            problems: vec![Problem::new(path, message)],
        }
    }

    /// A checkpoint error of `kind` caused by `source`.
    pub fn checkpoint(kind: CheckpointErrorKind, source: impl Into<BoxError>) -> Self {
        CadenceError::Checkpoint {
            kind,
            source: source.into(),
        }
    }

    /// The kind of this error (ERR-2).
    pub fn kind(&self) -> ErrorKind {
        match self {
            CadenceError::Note { .. } => ErrorKind::Note,
            CadenceError::Parallel { .. } => ErrorKind::Parallel,
            CadenceError::Timeout { .. } => ErrorKind::Timeout,
            CadenceError::CircuitOpen { .. } => ErrorKind::CircuitOpen,
            CadenceError::RetryExhausted { .. } => ErrorKind::RetryExhausted,
            CadenceError::MergeConflict(_) => ErrorKind::MergeConflict,
            CadenceError::Route { .. } => ErrorKind::Route,
            CadenceError::Checkpoint { .. } => ErrorKind::Checkpoint,
            CadenceError::CheckpointMismatch { .. } => ErrorKind::CheckpointMismatch,
            CadenceError::Validation { .. } => ErrorKind::Validation,
            CadenceError::Panicked { .. } => ErrorKind::Panicked,
            CadenceError::Cancelled => ErrorKind::Cancelled,
            CadenceError::HandlerFailed { .. } => ErrorKind::HandlerFailed,
        }
    }

    /// The engine error at the root of this one, looking through `HandlerFailed`, `Parallel`
    /// and `RetryExhausted` (ERR-3).
    pub fn root(&self) -> &CadenceError {
        let mut e = self;
        loop {
            e = match e {
                CadenceError::HandlerFailed { original, .. } => original,
                CadenceError::Parallel { source, .. } => source,
                CadenceError::RetryExhausted { last, .. } => last,
                other => return other,
            };
        }
    }

    /// Whether the root cause is an engine timeout (ERR-3).
    pub fn is_timeout(&self) -> bool {
        matches!(self.root(), CadenceError::Timeout { .. })
    }

    /// Whether the root cause is an open circuit (ERR-3).
    pub fn is_circuit_open(&self) -> bool {
        matches!(self.root(), CadenceError::CircuitOpen { .. })
    }

    /// For [`CircuitOpen`](Self::CircuitOpen) roots: how long until the breaker admits a probe.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.root() {
            CadenceError::CircuitOpen { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Whether trying the same work again could succeed (ERR-3): false for panics, open
    /// circuits, merge conflicts, unknown routes, validation, checkpoint mismatches,
    /// cancellation and errors marked [`Permanent`](crate::retry::Permanent).
    pub fn is_retryable(&self) -> bool {
        if self.find_source::<crate::retry::Permanent>().is_some() {
            return false;
        }
        match self.root() {
            CadenceError::Note { .. } | CadenceError::Timeout { .. } => true,
            CadenceError::Checkpoint { kind, .. } => {
                matches!(
                    kind,
                    CheckpointErrorKind::Unavailable | CheckpointErrorKind::LeaseHeld
                )
            }
            _ => false,
        }
    }

    /// The first error of type `E` in this error's source chain (ERR-3).
    ///
    /// ```
    /// use cadence_core::{CadenceError, BoxError};
    /// let io = std::io::Error::new(std::io::ErrorKind::Other, "disk full");
    /// let e = CadenceError::Note { path: "save".into(), source: Box::new(io) };
    /// assert!(e.find_source::<std::io::Error>().is_some());
    /// ```
    pub fn find_source<E: StdError + 'static>(&self) -> Option<&E> {
        let mut cur: Option<&(dyn StdError + 'static)> = Some(self);
        while let Some(e) = cur {
            if let Some(found) = e.downcast_ref::<E>() {
                return Some(found);
            }
            cur = e.source();
        }
        None
    }

    /// The handler's own error, for [`HandlerFailed`](Self::HandlerFailed) (ERR-5).
    pub fn handler(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        match self {
            CadenceError::HandlerFailed { handler, .. } => Some(handler.as_ref()),
            _ => None,
        }
    }

    /// The full path this error is about, if it is about one.
    pub fn path(&self) -> Option<&str> {
        match self {
            CadenceError::Note { path, .. }
            | CadenceError::Timeout { path, .. }
            | CadenceError::CircuitOpen { path, .. }
            | CadenceError::RetryExhausted { path, .. }
            | CadenceError::Route { path, .. }
            | CadenceError::Panicked { path, .. } => Some(path),
            CadenceError::Parallel { group, .. } => Some(group),
            CadenceError::MergeConflict(c) => Some(&c.group),
            _ => None,
        }
    }
}

/// `5s`, `250ms`, `1m 30s`: short human durations for messages.
pub(crate) struct HumanDuration(pub(crate) Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        // Round to microseconds so paused-time arithmetic does not print nanosecond noise.
        let d = Duration::from_micros(self.0.as_micros() as u64).max(Duration::from_micros(1));
        write!(f, "{}", humantime::format_duration(d))
    }
}

impl fmt::Display for CadenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CadenceError::Note { path, source } => write!(f, "note '{path}' failed: {source}"),
            CadenceError::Parallel {
                group,
                note,
                index,
                source,
            } => write!(
                f,
                "parallel group '{group}' failed in member '{note}' (#{index}); its siblings \
                 were cancelled and nothing was merged: {source}"
            ),
            CadenceError::Timeout {
                path,
                after,
                scope,
                message,
                ..
            } => match (message, scope) {
                (Some(m), _) => write!(f, "{m}"),
                (None, TimeoutScope::Attempt) => write!(
                    f,
                    "note '{path}' timed out after {} (per attempt); raise the timeout or make \
                     the note faster",
                    HumanDuration(*after)
                ),
                (None, TimeoutScope::Deadline) => write!(
                    f,
                    "note '{path}' missed its deadline of {} (all attempts and waits); raise \
                     the deadline or retry less",
                    HumanDuration(*after)
                ),
            },
            CadenceError::CircuitOpen {
                path,
                circuit,
                retry_after,
            } => write!(
                f,
                "circuit '{circuit}' is open, so note '{path}' was not run; try again in {} \
                 or fix the failing dependency",
                HumanDuration(*retry_after)
            ),
            CadenceError::RetryExhausted {
                path,
                attempts,
                last,
            } => write!(
                f,
                "note '{path}' failed after {attempts} attempt{}; last error: {last}",
                if *attempts == 1 { "" } else { "s" }
            ),
            CadenceError::MergeConflict(c) => write!(f, "{c}"),
            CadenceError::Route { path, key } => write!(
                f,
                "route '{path}' has no branch for key '{key}'; add a route for it or a default \
                 with route_or"
            ),
            CadenceError::Checkpoint { kind, source } => {
                write!(f, "checkpoint store error ({}): {source}", kind.as_str())?;
                match kind {
                    CheckpointErrorKind::LeaseHeld => f.write_str(
                        "; another run holds this run id: wait for it or use another run id",
                    ),
                    CheckpointErrorKind::Corrupt | CheckpointErrorKind::UnsupportedVersion => f
                        .write_str(
                            "; the record was left untouched: inspect it with 'cadence runs show' \
                             or delete it",
                        ),
                    _ => Ok(()),
                }
            }
            CadenceError::CheckpointMismatch {
                run_id,
                stored,
                current,
            } => write!(
                f,
                "checkpoint for run '{run_id}' was written by a different version of this \
                 cadence (fingerprint {stored}, now {current}); use a new run id, run 'cadence \
                 runs delete', or set allow_fingerprint_mismatch"
            ),
            CadenceError::Validation { problems } => {
                write!(
                    f,
                    "invalid cadence or input ({} problem{}):",
                    problems.len(),
                    if problems.len() == 1 { "" } else { "s" }
                )?;
                for p in problems {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
            CadenceError::Panicked { path, message } => write!(
                f,
                "'{path}' panicked: {message}; panics are bugs: return an error instead"
            ),
            CadenceError::Cancelled => f.write_str("the run was cancelled"),
            CadenceError::HandlerFailed { original, handler } => write!(
                f,
                "the on_error handler failed ({handler}) while handling: {original}"
            ),
        }
    }
}

impl StdError for CadenceError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            CadenceError::Note { source, .. } | CadenceError::Checkpoint { source, .. } => {
                Some(source.as_ref())
            }
            CadenceError::Parallel { source, .. } => Some(source.as_ref()),
            CadenceError::RetryExhausted { last, .. } => Some(last.as_ref()),
            CadenceError::Timeout { last, .. } => {
                last.as_deref().map(|e| e as &(dyn StdError + 'static))
            }
            CadenceError::MergeConflict(c) => Some(c),
            CadenceError::HandlerFailed { original, .. } => Some(original.as_ref()),
            _ => None,
        }
    }
}

/// Turns a caught panic payload into text (NOTE-7).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
