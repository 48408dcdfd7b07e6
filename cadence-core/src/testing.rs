//! Test utilities (feature `test-util`): [`RecordingHook`], which records every hook call as a
//! comparable value (HOOK-8).
//!
//! ```
//! use cadence_core::{BoxError, Cadence, note, testing::RecordingHook};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let rec = RecordingHook::new();
//! let c = Cadence::<u8>::new("c")
//!     .then("a", note::from_fn(|_: &mut u8| Box::pin(async { Ok::<_, BoxError>(()) })))
//!     .with_hooks(rec.clone())
//!     .build()
//!     .unwrap();
//! c.run(0).await.unwrap();
//! assert_eq!(rec.lines(), [
//!     "cadence_start",
//!     "measure_start a",
//!     "note_start a#1",
//!     "note_end a#1 Succeeded",
//!     "measure_end a Succeeded",
//!     "cadence_end Succeeded",
//! ]);
//! # });
//! ```

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::CadenceError;
use crate::hook::{
    Hook, HookContext, MeasureKind, MeasureOutcome, NoteOutcome, Outcome, RunOutcome, SkipReason,
    TraceContext,
};
use crate::policy::circuit_breaker::CircuitState;

/// One recorded hook call, without scores (they are type-specific) and without durations
/// (they vary), except retry delays, which tests assert.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `on_cadence_start`
    CadenceStart,
    /// `on_cadence_end`
    CadenceEnd(Outcome),
    /// `on_measure_start`
    MeasureStart(String, MeasureKind),
    /// `on_measure_end` (`Succeeded`, `Stopped`, `Failed`, `Cancelled`)
    MeasureEnd(String, &'static str),
    /// `on_note_start`
    NoteStart(String, u32),
    /// `on_note_end` (`Succeeded`, `Stopped`, `WillRetry`, `Failed`, `Cancelled`)
    NoteEnd(String, u32, &'static str),
    /// `on_retry` with the delay
    Retry(String, u32, Duration),
    /// `on_timeout`
    Timeout(String, u32),
    /// `on_fallback`
    Fallback(String),
    /// `on_circuit_state_change`
    CircuitStateChange(String, CircuitState, CircuitState),
    /// `on_checkpoint_loaded`
    CheckpointLoaded(usize, bool),
    /// `on_checkpoint_saved`
    CheckpointSaved(String, usize),
    /// `on_checkpoint_error`
    CheckpointError,
    /// `on_note_skipped`
    NoteSkipped(String, SkipReason),
    /// `on_branch_taken` (branch, key)
    BranchTaken(String, String, String),
}

impl fmt::Display for Call {
    /// The notation of HOOK-5: `note_end a#1 Succeeded`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::CadenceStart => write!(f, "cadence_start"),
            Call::CadenceEnd(o) => write!(f, "cadence_end {o:?}"),
            Call::MeasureStart(p, _) => write!(f, "measure_start {p}"),
            Call::MeasureEnd(p, o) => write!(f, "measure_end {p} {o}"),
            Call::NoteStart(p, a) => write!(f, "note_start {p}#{a}"),
            Call::NoteEnd(p, a, o) => write!(f, "note_end {p}#{a} {o}"),
            Call::Retry(p, a, _) => write!(f, "retry {p}#{a}"),
            Call::Timeout(p, a) => write!(f, "timeout {p}#{a}"),
            Call::Fallback(p) => write!(f, "fallback {p}"),
            Call::CircuitStateChange(c, from, to) => {
                write!(
                    f,
                    "circuit_state_change {c} {}->{}",
                    from.as_str(),
                    to.as_str()
                )
            }
            Call::CheckpointLoaded(..) => write!(f, "checkpoint_loaded"),
            Call::CheckpointSaved(p, _) => write!(f, "checkpoint_saved {p}"),
            Call::CheckpointError => write!(f, "checkpoint_error"),
            Call::NoteSkipped(p, r) => write!(f, "note_skipped {p} {r:?}"),
            Call::BranchTaken(p, b, _) => write!(f, "branch_taken {p} {b}"),
        }
    }
}

/// A recorded call with its occurrence context.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recorded {
    /// The occurrence's `seq`.
    pub seq: u64,
    /// The cadence it happened in.
    pub cadence: String,
    /// The run it happened in.
    pub run_id: String,
    /// The parent run, for child runs.
    pub parent_run_id: Option<String>,
    /// The call.
    pub call: Call,
}

/// A hook that records every call (HOOK-8). Clones share one record.
#[derive(Debug, Clone, Default)]
pub struct RecordingHook {
    calls: Arc<Mutex<Vec<Recorded>>>,
    trace: Option<TraceContext>,
}

impl RecordingHook {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A recorder whose `trace_context` returns `trace`.
    pub fn with_trace_context(mut self, trace: TraceContext) -> Self {
        self.trace = Some(trace);
        self
    }

    fn push(&self, cx: &HookContext<'_>, call: Call) {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.push(Recorded {
            seq: cx.seq(),
            cadence: cx.cadence().to_owned(),
            run_id: cx.run_id().to_owned(),
            parent_run_id: cx.parent_run_id().map(str::to_owned),
            call,
        });
    }

    /// Every recorded call with its context, in call order.
    pub fn entries(&self) -> Vec<Recorded> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every recorded call, in call order.
    pub fn calls(&self) -> Vec<Call> {
        self.entries().into_iter().map(|r| r.call).collect()
    }

    /// Every recorded call in HOOK-5 notation.
    pub fn lines(&self) -> Vec<String> {
        self.calls().iter().map(ToString::to_string).collect()
    }

    /// Forgets everything recorded.
    pub fn clear(&self) {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

fn note_outcome(o: &NoteOutcome<'_>) -> &'static str {
    match o {
        NoteOutcome::Succeeded => "Succeeded",
        NoteOutcome::Stopped => "Stopped",
        NoteOutcome::WillRetry(_) => "WillRetry",
        NoteOutcome::Failed(_) => "Failed",
        NoteOutcome::Cancelled => "Cancelled",
    }
}

fn measure_outcome(o: &MeasureOutcome<'_>) -> &'static str {
    match o {
        MeasureOutcome::Succeeded => "Succeeded",
        MeasureOutcome::Stopped => "Stopped",
        MeasureOutcome::Failed(_) => "Failed",
        MeasureOutcome::Cancelled => "Cancelled",
    }
}

impl<S> Hook<S> for RecordingHook {
    fn on_cadence_start(&self, cx: &HookContext<'_>, _: &S) {
        self.push(cx, Call::CadenceStart);
    }
    fn on_cadence_end(&self, cx: &HookContext<'_>, _: &S, _: Duration, o: &RunOutcome<'_>) {
        self.push(cx, Call::CadenceEnd(o.kind()));
    }
    fn on_measure_start(&self, cx: &HookContext<'_>, path: &str, kind: MeasureKind) {
        self.push(cx, Call::MeasureStart(path.to_owned(), kind));
    }
    fn on_measure_end(
        &self,
        cx: &HookContext<'_>,
        path: &str,
        _: Duration,
        o: &MeasureOutcome<'_>,
    ) {
        self.push(cx, Call::MeasureEnd(path.to_owned(), measure_outcome(o)));
    }
    fn on_note_start(&self, cx: &HookContext<'_>, path: &str, attempt: u32, _: &S) {
        self.push(cx, Call::NoteStart(path.to_owned(), attempt));
    }
    fn on_note_end(
        &self,
        cx: &HookContext<'_>,
        path: &str,
        attempt: u32,
        _: Duration,
        o: &NoteOutcome<'_>,
        _: &S,
    ) {
        self.push(cx, Call::NoteEnd(path.to_owned(), attempt, note_outcome(o)));
    }
    fn on_retry(
        &self,
        cx: &HookContext<'_>,
        path: &str,
        attempt: u32,
        delay: Duration,
        _: &CadenceError,
    ) {
        self.push(cx, Call::Retry(path.to_owned(), attempt, delay));
    }
    fn on_timeout(&self, cx: &HookContext<'_>, path: &str, attempt: u32, _: Duration) {
        self.push(cx, Call::Timeout(path.to_owned(), attempt));
    }
    fn on_fallback(&self, cx: &HookContext<'_>, path: &str, _: &CadenceError) {
        self.push(cx, Call::Fallback(path.to_owned()));
    }
    fn on_circuit_state_change(
        &self,
        cx: &HookContext<'_>,
        c: &str,
        from: CircuitState,
        to: CircuitState,
    ) {
        self.push(cx, Call::CircuitStateChange(c.to_owned(), from, to));
    }
    fn on_checkpoint_loaded(&self, cx: &HookContext<'_>, completed: usize, forced: bool) {
        self.push(cx, Call::CheckpointLoaded(completed, forced));
    }
    fn on_checkpoint_saved(&self, cx: &HookContext<'_>, path: &str, completed: usize) {
        self.push(cx, Call::CheckpointSaved(path.to_owned(), completed));
    }
    fn on_checkpoint_error(&self, cx: &HookContext<'_>, _: &CadenceError) {
        self.push(cx, Call::CheckpointError);
    }
    fn on_note_skipped(&self, cx: &HookContext<'_>, path: &str, reason: SkipReason) {
        self.push(cx, Call::NoteSkipped(path.to_owned(), reason));
    }
    fn on_branch_taken(&self, cx: &HookContext<'_>, path: &str, branch: &str, key: &str) {
        self.push(
            cx,
            Call::BranchTaken(path.to_owned(), branch.to_owned(), key.to_owned()),
        );
    }
    fn trace_context(&self) -> Option<TraceContext> {
        self.trace.clone()
    }
}
