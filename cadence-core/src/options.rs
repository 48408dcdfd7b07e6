//! [`RunOptions`] (what a caller may say about one run) and [`RunReport`] (what it returns).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::checkpoint::MAX_TTL;
use crate::error::{CadenceError, Problem};
use crate::hook::{Outcome, TraceContext};

/// Options for one run (RUN-1). Build with `RunOptions::default()` and the `with_*` setters.
///
/// ```
/// use cadence_core::{RunOptions, CancellationToken};
/// let token = CancellationToken::new();
/// let opts = RunOptions::default()
///     .with_run_id("order-42")
///     .with_cancellation(token.clone());
/// assert_eq!(opts.run_id(), Some("order-42"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub(crate) run_id: Option<String>,
    pub(crate) trace: Option<TraceContext>,
    pub(crate) allow_fingerprint_mismatch: bool,
    pub(crate) cancellation: Option<CancellationToken>,
    pub(crate) retain_outcome: Option<Duration>,
}

impl RunOptions {
    /// The run id (RUN-2): 1–255 bytes of printable ASCII. Required when the cadence
    /// checkpoints; generated (32 random hex digits) otherwise.
    #[must_use]
    pub fn with_run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// The incoming W3C trace context the run continues (OTEL-3).
    #[must_use]
    pub fn with_trace_context(mut self, trace: TraceContext) -> Self {
        self.trace = Some(trace);
        self
    }

    /// Resume even if the stored checkpoint was written by a structurally different cadence
    /// (CKP-6).
    #[must_use]
    pub fn with_allow_fingerprint_mismatch(mut self, allow: bool) -> Self {
        self.allow_fingerprint_mismatch = allow;
        self
    }

    /// A token that cancels the run when fired (RUN-6).
    #[must_use]
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancellation = Some(token);
        self
    }

    /// Keep the outcome of a successful or stopped run for `ttl`, so that a repeat with the same
    /// run id returns it without running (CKP-7). A `ttl` longer than 100 years fails the run
    /// with `Validation` before it starts (RUN-2).
    #[must_use]
    pub fn with_retain_outcome(mut self, ttl: Duration) -> Self {
        self.retain_outcome = Some(ttl);
        self
    }

    /// The run id, if set.
    pub fn run_id(&self) -> Option<&str> {
        self.run_id.as_deref()
    }

    /// The incoming trace context, if set.
    pub fn trace_context(&self) -> Option<&TraceContext> {
        self.trace.as_ref()
    }
}

/// The problem with a TTL longer than [`MAX_TTL`], if it is.
pub(crate) fn check_ttl(what: &str, ttl: Duration) -> Option<Problem> {
    (ttl > MAX_TTL).then(|| {
        Problem::new(
            "",
            format!("the {what} ({ttl:?}) is longer than 100 years; give it a shorter duration"),
        )
    })
}

/// RUN-2: 1–255 bytes of printable ASCII.
pub(crate) fn check_run_id(id: &str) -> Result<(), CadenceError> {
    if id.is_empty() || id.len() > 255 || !id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(CadenceError::Validation {
            problems: vec![Problem::new(
                "",
                format!(
                    "run id {id:?} is invalid: use 1 to 255 bytes of printable ASCII (got {} bytes)",
                    id.len()
                ),
            )],
        });
    }
    Ok(())
}

/// 32 random lowercase hex digits.
pub(crate) fn generate_run_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut x = fastrand::u128(..);
    let mut out = String::with_capacity(32);
    for _ in 0..32 {
        out.push(HEX[(x & 0xf) as usize] as char);
        x >>= 4;
    }
    out
}

/// A run id that is generated only when something reads it (RUN-2): a run that nobody
/// observes never pays for formatting one.
#[derive(Debug, Default)]
pub(crate) struct RunId {
    cell: std::sync::OnceLock<String>,
}

impl RunId {
    /// A given id.
    pub(crate) fn given(id: String) -> Self {
        let cell = std::sync::OnceLock::new();
        let _ = cell.set(id);
        RunId { cell }
    }

    /// An id generated on first read.
    pub(crate) fn lazy() -> Self {
        RunId::default()
    }

    /// The id.
    #[inline]
    pub(crate) fn get(&self) -> &str {
        self.cell.get_or_init(generate_run_id)
    }

    /// The id, generating it if nobody read it yet.
    pub(crate) fn into_string(self) -> String {
        match self.cell.into_inner() {
            Some(id) => id,
            None => generate_run_id(),
        }
    }
}

/// Everything a run ended with (RUN-1): the score in every case, the outcome, and the error for
/// `Failed` and `Cancelled` runs.
#[derive(Debug)]
#[non_exhaustive]
pub struct RunReport<S> {
    /// The final live score (for failed runs: with the writes made before the failure).
    pub score: S,
    /// The run id (given or generated).
    pub run_id: String,
    /// How the run ended.
    pub outcome: Outcome,
    /// Paths of measures that failed and were absorbed by `OnError::Continue`, or the failed
    /// measure of a failed run.
    pub failed_measures: Vec<String>,
    /// Whether the run resumed from a checkpoint.
    pub resumed: bool,
    /// Whether a retained outcome was returned without running (CKP-7).
    pub replayed: bool,
    /// The error, for `Failed` and `Cancelled`.
    pub error: Option<CadenceError>,
}

impl<S> RunReport<S> {
    /// `Ok(score)` for succeeded, partial and stopped runs; `Err` otherwise (RUN-4).
    pub fn into_result(self) -> Result<S, CadenceError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.score),
        }
    }
}

/// Who a run is, as its notes see it: shared by reference with every [`NoteContext`]
/// (crate::NoteContext) of the run, so a context is a few words.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunInfo<'a> {
    pub(crate) run_id: &'a RunId,
    pub(crate) root_run_id: &'a RunId,
    pub(crate) parent_run_id: Option<&'a RunId>,
    pub(crate) cadence: &'a str,
    /// Full path of the enclosing child measure, for child runs.
    pub(crate) prefix: Option<&'a str>,
    pub(crate) token: Option<&'a CancellationToken>,
}
