//! The engine: how one run executes its measures (RUN-3…10), reports every occurrence to the
//! hooks in the order of HOOK-5, and reports cancellation when its future is dropped (RUN-5).
//!
//! Hot-path rules kept here: a run formats no strings and allocates no paths (all computed at
//! `build()`); with no hooks anywhere in the run tree, no hook context is built and no clock is
//! read; per-run counters live in the run's own state.

use std::any::Any;
use std::borrow::Cow;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::field::Empty;

use crate::cadence::{CompiledNote, GroupOps, Inner, Measure, MeasureBody};
use crate::checkpoint::session::{
    CheckpointRunOptions, Checkpointing, Finished, Opened, RunFlags, Session,
};
use crate::checkpoint::{OnCheckpointError, RecordStatus};
use crate::clock::{RunTree, Stamp};
use crate::cond::EvalFn;
use crate::error::CheckpointErrorKind;
use crate::error::TimeoutScope;
use crate::error::{BoxError, CadenceError, ErrorKind, panic_message};
use crate::event::BoxFuture;
use crate::fallback::{Fallback, FallbackKind};
use crate::handler::{Handler, HandlerFn, OnError};
use crate::hook::{
    Hook, HookContext, HookMethod, Interest, MeasureKind, MeasureOutcome, NoteOutcome, RunOutcome,
    SkipReason, isolate,
};
use crate::note::{BlockingImpl, Body, Control, NoteContext, NoteFuture, NoteResult, normalise};
use crate::options::{RunId, RunInfo};
use crate::policy::circuit_breaker::{Admission, CircuitBreaker, CircuitState};
use crate::policy::timeout::bounded::{Bounded, Bounds, Hit};
use crate::score::MergeStrategy;
use crate::timer::NoTimeDriver;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

type Panic = Box<dyn Any + Send>;

/// One attempt of a note on the lean path (see `RunCtx::is_lean`), as its raw result
/// (`Result<NoteResult, Panic>`), inside an `async fn` of `RunCtx`: the context `$cx` (a
/// `NoteContext` of the caller, re-pointed at the note) lives in the caller's future, and the
/// note's future is awaited directly, so no engine future is created per note.
macro_rules! lean_attempt {
    ($n:expr, $score:expr, $cx:expr) => {{
        let n = $n;
        $cx.path = &n.path;
        let r = match RunCtx::start_note(n, &mut *$score, &$cx) {
            Ok(fut) => CatchUnwind::new(fut).await,
            Err(p) => Err(p),
        };
        $cx.next_attempt();
        r
    }};
}

/// [`lean_attempt!`] as a `Result<Flow, CadenceError>`.
macro_rules! lean_note {
    ($rc:expr, $n:expr, $score:expr, $cx:expr) => {{
        let (rc, n) = ($rc, $n);
        match lean_attempt!(n, $score, $cx) {
            // Moved out by value: no out-of-line drop of the whole result per note.
            Ok(Ok(c)) => match c {
                Control::Continue => Ok(Flow::Continue),
                c => rc.lean_outcome(n, Ok(Ok(c))),
            },
            other => rc.lean_outcome(n, other),
        }
    }};
}

/// One attempt of a note without policies that hooks may observe, inline like
/// [`lean_note!`], as a `Result<Control, CadenceError>`: `note_start` (when `$announce`; a
/// parallel member's belongs to its group), the attempt in `$span` (a [`NoteSpan`]), `note_end`;
/// a drop mid-attempt reports `Cancelled` through the guard (HOOK-5, RUN-5).
macro_rules! observed_note {
    ($rc:expr, $n:expr, $score:expr, $cx:expr, $span:expr, $announce:expr) => {{
        let (rc, n, span) = ($rc, $n, $span);
        let (observe, announce) = (rc.observe(), $announce);
        if observe && announce {
            span.in_scope(|| rc.emit(Occ::NoteStart(&n.path, 1, n.key), Some(&*$score)));
        }
        let mut guard = NoteGuard {
            rc,
            path: &n.path,
            key: n.key,
            attempt: 1,
            t0: observe.then(|| rc.tree.now()),
            score: &mut *$score,
            armed: observe && announce,
        };
        $cx.path = &n.path;
        let r = match RunCtx::start_note(n, &mut *guard.score, &$cx) {
            Ok(fut) => span.around(CatchUnwind::new(fut)).await,
            Err(p) => Err(p),
        };
        $cx.next_attempt();
        guard.armed = false;
        // Success typed here, with its own report; everything else out of line.
        match r {
            Ok(Ok(Control::Continue)) => {
                if observe {
                    span.in_scope(|| {
                        rc.note_ended(n, guard.t0, &NoteOutcome::Succeeded, &*guard.score)
                    });
                }
                Ok(Control::Continue)
            }
            r => {
                let r = rc.note_result(n, r);
                if observe {
                    span.in_scope(|| rc.note_ended(n, guard.t0, &note_outcome(&r), &*guard.score));
                }
                r
            }
        }
    }};
}

/// How an attempt ended, as `on_note_end` reports it.
#[inline]
fn note_outcome(r: &Result<Control, CadenceError>) -> NoteOutcome<'_> {
    match r {
        Ok(Control::Continue) => NoteOutcome::Succeeded,
        Ok(Control::Stop(_)) => NoteOutcome::Stopped,
        Err(e) => NoteOutcome::Failed(e),
    }
}

/// A note's control as the flow of its measure; a stop keeps the note's path relative to its
/// cadence, as hooks and events use (cadence, path) (GEN-2).
#[inline]
fn flow_of<S>(n: &CompiledNote<S>, c: Control) -> Flow {
    match c {
        Control::Continue => Flow::Continue,
        Control::Stop(reason) => Flow::Stop {
            path: String::from(&*n.path),
            reason,
        },
    }
}

pin_project_lite::pin_project! {
    /// Polls a future, turning a panic into `Err(payload)` (GEN-5).
    pub(crate) struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

impl<F> CatchUnwind<F> {
    pub(crate) fn new(inner: F) -> Self {
        CatchUnwind { inner }
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Panic>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(p) => Poll::Ready(Err(p)),
        }
    }
}

/// A span that takes one word in a future while no subscriber wants it (the usual case on the
/// hot path), and is boxed when one does (then a span costs ≈ 100 ns anyway).
pub(crate) struct LiveSpan(Option<Box<tracing::Span>>);

impl LiveSpan {
    #[inline]
    pub(crate) fn new(span: tracing::Span) -> Self {
        if span.is_disabled() {
            LiveSpan(None)
        } else {
            LiveSpan(Some(Box::new(span)))
        }
    }

    #[inline]
    pub(crate) fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.0 {
            Some(span) => span.in_scope(f),
            None => f(),
        }
    }

    #[inline]
    fn get(&self) -> Option<&tracing::Span> {
        self.0.as_deref()
    }
}

/// Where an observed note's attempt runs: in a [`LiveSpan`], or in [`NoSpan`] where no span is
/// ever made (then nothing is checked per poll or per report).
pub(crate) trait NoteSpan {
    /// The attempt's future, in the span.
    type Around<'s, F: Future>: Future<Output = F::Output>
    where
        Self: 's;

    fn around<F: Future>(&self, inner: F) -> Self::Around<'_, F>;

    fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R;
}

impl NoteSpan for LiveSpan {
    type Around<'s, F: Future> = InSpan<'s, F>;

    #[inline]
    fn around<F: Future>(&self, inner: F) -> InSpan<'_, F> {
        InSpan::new(self, inner)
    }

    #[inline]
    fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        LiveSpan::in_scope(self, f)
    }
}

/// No span, known when the engine is compiled (see [`NoteSpan`]).
pub(crate) struct NoSpan;

impl NoteSpan for NoSpan {
    type Around<'s, F: Future> = F;

    #[inline(always)]
    fn around<F: Future>(&self, inner: F) -> F {
        inner
    }

    #[inline(always)]
    fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        f()
    }
}

pin_project_lite::pin_project! {
    /// Enters a borrowed span around every poll: `Instrumented` without owning a second copy
    /// of the span (the hot path keeps futures small).
    pub(crate) struct InSpan<'s, F> {
        span: &'s LiveSpan,
        #[pin]
        inner: F,
    }
}

impl<'s, F> InSpan<'s, F> {
    pub(crate) fn new(span: &'s LiveSpan, inner: F) -> Self {
        InSpan { span, inner }
    }
}

impl<F: Future> Future for InSpan<'_, F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.get().map(tracing::Span::enter);
        this.inner.poll(cx)
    }
}

/// One occurrence, independent of the score type, so it can travel to ancestors' hooks.
pub(crate) enum Occ<'a> {
    CadenceStart,
    CadenceEnd(Duration, &'a RunOutcome<'a>),
    MeasureStart(&'a str, MeasureKind),
    MeasureEnd(&'a str, Duration, &'a MeasureOutcome<'a>),
    /// Path, attempt and the note's [`key`](crate::cadence::CompiledNote::key).
    NoteStart(&'a str, u32, u64),
    NoteEnd(&'a str, u32, Duration, &'a NoteOutcome<'a>, u64),
    Retry(&'a str, u32, Duration, &'a CadenceError),
    Timeout(&'a str, u32, Duration),
    Fallback(&'a str, &'a CadenceError),
    Circuit(&'a str, CircuitState, CircuitState),
    CheckpointLoaded(usize, bool),
    CheckpointSaved(&'a str, usize),
    CheckpointError(&'a CadenceError),
    Skipped(&'a str, SkipReason),
    Branch(&'a str, &'a str, &'a str),
}

impl Occ<'_> {
    /// The key of the note this occurrence is about (0 if none).
    #[inline]
    fn key(&self) -> u64 {
        match *self {
            Occ::NoteStart(.., key) | Occ::NoteEnd(.., key) => key,
            _ => 0,
        }
    }

    /// The hook method this occurrence calls.
    #[inline]
    fn hook_method(&self) -> HookMethod {
        match self {
            Occ::CadenceStart => HookMethod::CadenceStart,
            Occ::CadenceEnd(..) => HookMethod::CadenceEnd,
            Occ::MeasureStart(..) => HookMethod::MeasureStart,
            Occ::MeasureEnd(..) => HookMethod::MeasureEnd,
            Occ::NoteStart(..) => HookMethod::NoteStart,
            Occ::NoteEnd(..) => HookMethod::NoteEnd,
            Occ::Retry(..) => HookMethod::Retry,
            Occ::Timeout(..) => HookMethod::Timeout,
            Occ::Fallback(..) => HookMethod::Fallback,
            Occ::Circuit(..) => HookMethod::CircuitStateChange,
            Occ::CheckpointLoaded(..) => HookMethod::CheckpointLoaded,
            Occ::CheckpointSaved(..) => HookMethod::CheckpointSaved,
            Occ::CheckpointError(..) => HookMethod::CheckpointError,
            Occ::Skipped(..) => HookMethod::NoteSkipped,
            Occ::Branch(..) => HookMethod::BranchTaken,
        }
    }

    fn method(&self) -> &'static str {
        match self {
            Occ::CadenceStart => "on_cadence_start",
            Occ::CadenceEnd(..) => "on_cadence_end",
            Occ::MeasureStart(..) => "on_measure_start",
            Occ::MeasureEnd(..) => "on_measure_end",
            Occ::NoteStart(..) => "on_note_start",
            Occ::NoteEnd(..) => "on_note_end",
            Occ::Retry(..) => "on_retry",
            Occ::Timeout(..) => "on_timeout",
            Occ::Fallback(..) => "on_fallback",
            Occ::Circuit(..) => "on_circuit_state_change",
            Occ::CheckpointLoaded(..) => "on_checkpoint_loaded",
            Occ::CheckpointSaved(..) => "on_checkpoint_saved",
            Occ::CheckpointError(..) => "on_checkpoint_error",
            Occ::Skipped(..) => "on_note_skipped",
            Occ::Branch(..) => "on_branch_taken",
        }
    }

    fn call<S>(&self, h: &dyn Hook<S>, cx: &HookContext<'_>, score: Option<&S>) {
        match *self {
            Occ::CadenceStart => {
                if let Some(s) = score {
                    h.on_cadence_start(cx, s)
                }
            }
            Occ::CadenceEnd(d, o) => {
                if let Some(s) = score {
                    h.on_cadence_end(cx, s, d, o)
                }
            }
            Occ::MeasureStart(p, k) => h.on_measure_start(cx, p, k),
            Occ::MeasureEnd(p, d, o) => h.on_measure_end(cx, p, d, o),
            Occ::NoteStart(p, a, _) => {
                if let Some(s) = score {
                    h.on_note_start(cx, p, a, s)
                }
            }
            Occ::NoteEnd(p, a, d, o, _) => {
                if let Some(s) = score {
                    h.on_note_end(cx, p, a, d, o, s)
                }
            }
            Occ::Retry(p, a, d, e) => h.on_retry(cx, p, a, d, e),
            Occ::Timeout(p, a, d) => h.on_timeout(cx, p, a, d),
            Occ::Fallback(p, e) => h.on_fallback(cx, p, e),
            Occ::Circuit(c, f, t) => h.on_circuit_state_change(cx, c, f, t),
            Occ::CheckpointLoaded(n, f) => h.on_checkpoint_loaded(cx, n, f),
            Occ::CheckpointSaved(p, n) => h.on_checkpoint_saved(cx, p, n),
            Occ::CheckpointError(e) => h.on_checkpoint_error(cx, e),
            Occ::Skipped(p, r) => h.on_note_skipped(cx, p, r),
            Occ::Branch(p, b, k) => h.on_branch_taken(cx, p, b, k),
        }
    }
}

/// Records the run's outcome on its span, when a subscriber wants it.
fn record_run_span(span: &LiveSpan, end: &End) {
    if let Some(span) = span.get() {
        span.record("cadence.outcome", end.as_outcome().kind().as_str());
    }
}

/// Records the note's outcome on its span, when a subscriber wants it.
fn record_note_span(span: &tracing::Span, r: &Result<Flow, CadenceError>) {
    if !span.is_disabled() {
        span.record(
            "cadence.outcome",
            match r {
                Ok(Flow::Continue) => "succeeded",
                Ok(Flow::Stop { .. }) => "stopped",
                Err(CadenceError::Cancelled) => "cancelled",
                Err(_) => "failed",
            },
        );
    }
}

/// The next occurrence number of a run tree (EVT-3).
///
/// A load and a store, not a read-modify-write: every occurrence of a run tree is emitted by
/// the one task that polls the run (parallel members and child runs are polled inside it, and a
/// task moving between threads is ordered by the executor), so no two emits race.
#[inline]
fn next_seq(seq: &AtomicU64) -> u64 {
    let n = seq.load(Ordering::Relaxed);
    seq.store(n + 1, Ordering::Relaxed);
    n
}

/// Calls every hook of a cadence for one occurrence, isolating panics (HOOK-4).
fn dispatch<S>(inner: &Inner<S>, cx: &HookContext<'_>, occ: &Occ<'_>, score: Option<&S>) {
    each_hook(inner, occ.method(), |h| occ.call(h, cx, score));
}

/// Calls `call` with each hook of `inner`, each isolated from the others' panics, which are
/// counted (HOOK-4).
#[inline(always)]
fn each_hook<S>(inner: &Inner<S>, method: &'static str, call: impl Fn(&dyn Hook<S>)) {
    if let Some(hooks) = &inner.hooks {
        let mut panics = 0;
        for h in hooks.iter() {
            panics += isolate(method, || call(&**h));
        }
        if panics > 0 {
            inner.hook_panics.fetch_add(panics, Ordering::Relaxed);
        }
    }
}

/// The hooks of the enclosing runs of a child run, with their scores (CHILD-3).
pub(crate) trait Upstream: Sync {
    fn deliver(&self, cx: &HookContext<'_>, occ: &Occ<'_>);
    /// What the enclosing runs' hooks want as of interest epoch `epoch`.
    fn interest(&self, epoch: u32) -> Interest;
}

pub(crate) struct ParentLink<'a, P> {
    pub(crate) inner: &'a Inner<P>,
    pub(crate) score: &'a P,
    pub(crate) up: Option<&'a dyn Upstream>,
}

impl<P: Sync> Upstream for ParentLink<'_, P> {
    fn deliver(&self, cx: &HookContext<'_>, occ: &Occ<'_>) {
        if let Some(up) = self.up {
            up.deliver(cx, occ);
        }
        dispatch(self.inner, cx, occ, Some(self.score));
    }

    fn interest(&self, epoch: u32) -> Interest {
        let own = self.inner.interest(epoch);
        match self.up {
            Some(up) => own.union(up.interest(epoch)),
            None => own,
        }
    }
}

/// What a checkpointed or preset run adds to [`RunCtx::execute_with`].
pub(crate) struct Extras<'a, S> {
    /// An ending decided before running (a failed open, a replayed outcome).
    preset: Option<End>,
    session: Option<&'a Session<S>>,
    retain: Option<Duration>,
}

/// How a measure (or note) let the run go on.
pub(crate) enum Flow {
    Continue,
    Stop {
        path: String,
        reason: Option<Cow<'static, str>>,
    },
}

/// How a run ended.
pub(crate) enum End {
    Succeeded,
    Partial(Vec<String>),
    Stopped {
        path: String,
        reason: Option<Cow<'static, str>>,
    },
    Failed {
        error: CadenceError,
        measure: Option<String>,
    },
    Cancelled,
}

impl End {
    pub(crate) fn failed(error: CadenceError) -> Self {
        End::Failed {
            error,
            measure: None,
        }
    }

    fn as_outcome(&self) -> RunOutcome<'_> {
        match self {
            End::Succeeded => RunOutcome::Succeeded,
            End::Partial(f) => RunOutcome::Partial { failed_measures: f },
            End::Stopped { path, reason } => RunOutcome::Stopped {
                path,
                reason: reason.as_deref(),
            },
            End::Failed { error, .. } => RunOutcome::Failed(error),
            End::Cancelled => RunOutcome::Cancelled,
        }
    }
}

/// The state of one run (or child run), borrowed by everything that executes in it.
pub(crate) struct RunCtx<'r, S> {
    pub(crate) inner: &'r Inner<S>,
    /// Who this run is, as notes see it.
    pub(crate) info: RunInfo<'r>,
    /// The run tree's occurrence counter (EVT-3) and wall-clock anchor, owned by the root run.
    pub(crate) tree: &'r RunTree,
    pub(crate) upstream: Option<&'r dyn Upstream>,
    /// Which occurrences the run tree's hooks want (the union of their `Interest`s), as of
    /// interest epoch `epoch` (see [`crate::hook::rebuild_interest_cache`]).
    pub(crate) interest: Interest,
    pub(crate) epoch: u32,
    /// The checkpoint session of a checkpointed root run.
    pub(crate) ckpt: Option<&'r Session<S>>,
    /// Resumed/replayed flags of the root run.
    pub(crate) flags: Option<&'r RunFlags>,
}

impl<S> Clone for RunCtx<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for RunCtx<'_, S> {}

/// Reports `on_cadence_end(Cancelled)` if the run future is dropped mid-run (RUN-5).
struct RunGuard<'a, 'r, S> {
    rc: &'a RunCtx<'r, S>,
    score: &'a mut S,
    t0: Option<Stamp>,
    armed: bool,
}

impl<S> Drop for RunGuard<'_, '_, S> {
    fn drop(&mut self) {
        if self.armed {
            let (d, now) = self.rc.tree.lap(self.t0);
            self.rc.emit_at(
                Occ::CadenceEnd(d, &RunOutcome::Cancelled),
                Some(&*self.score),
                now,
            );
        }
    }
}

/// Reports `on_measure_end(Cancelled)` if dropped mid-measure.
struct MeasureGuard<'a, 'r, S> {
    rc: &'a RunCtx<'r, S>,
    path: &'a Arc<str>,
    t0: Option<Stamp>,
    armed: bool,
}

impl<S> Drop for MeasureGuard<'_, '_, S> {
    fn drop(&mut self) {
        if self.armed {
            let (d, now) = self.rc.tree.lap(self.t0);
            self.rc.emit_at(
                Occ::MeasureEnd(self.path, d, &MeasureOutcome::Cancelled),
                None,
                now,
            );
        }
    }
}

/// The members of a parallel group and which are finished. Reports `on_note_end(Cancelled)`
/// for unfinished members if dropped mid-group (RUN-5) or told to after a failure (PAR-5).
struct GroupGuard<'a, 'r, S> {
    rc: &'a RunCtx<'r, S>,
    notes: &'a [CompiledNote<S>],
    /// The live score; members own their clones, so a cancelled member is reported with the
    /// pre-group score it started from.
    live: &'a mut S,
    attempts: Vec<AtomicU32>,
    finished: Vec<bool>,
    t0: Option<Stamp>,
    armed: bool,
}

impl<S> GroupGuard<'_, '_, S> {
    fn report_cancelled(&mut self) {
        if !self.armed {
            return;
        }
        self.armed = false;
        let (d, now) = self.rc.tree.lap(self.t0);
        for (j, n) in self.notes.iter().enumerate() {
            if !self.finished[j] {
                let attempt = self.attempts[j].load(Ordering::Relaxed);
                self.rc.emit_at(
                    Occ::NoteEnd(&n.path, attempt, d, &NoteOutcome::Cancelled, n.key),
                    Some(&*self.live),
                    now,
                );
            }
        }
    }
}

impl<S> Drop for GroupGuard<'_, '_, S> {
    fn drop(&mut self) {
        self.report_cancelled();
    }
}

/// Reports `on_note_end(Cancelled)` if dropped mid-attempt. Owns the score borrow so it can
/// still show the score to hooks after the note future is gone.
struct NoteGuard<'a, 'r, S> {
    rc: &'a RunCtx<'r, S>,
    path: &'a Arc<str>,
    key: u64,
    attempt: u32,
    t0: Option<Stamp>,
    score: &'a mut S,
    armed: bool,
}

impl<S> Drop for NoteGuard<'_, '_, S> {
    fn drop(&mut self) {
        if self.armed {
            let (d, now) = self.rc.tree.lap(self.t0);
            self.rc.emit_at(
                Occ::NoteEnd(
                    self.path,
                    self.attempt,
                    d,
                    &NoteOutcome::Cancelled,
                    self.key,
                ),
                Some(&*self.score),
                now,
            );
        }
    }
}

impl<'r, S> RunCtx<'r, S> {
    /// Delivers one occurrence to the ancestors' hooks, then this cadence's hooks.
    #[inline]
    pub(crate) fn emit(&self, occ: Occ<'_>, score: Option<&S>) {
        self.emit_at(occ, score, None);
    }

    /// Whether any hook in the run tree sees this run's occurrences (decided when the run
    /// started; see [`Interest`]).
    #[inline(always)]
    pub(crate) fn observe(&self) -> bool {
        self.interest != Interest::NONE
    }

    /// [`emit`](Self::emit) of an occurrence the engine read tokio's clock for (`now`).
    #[inline(always)]
    pub(crate) fn emit_at(&self, occ: Occ<'_>, score: Option<&S>, now: Option<Stamp>) {
        if self.observe()
            && (self.interest.contains(occ.hook_method()) || self.gained(occ.hook_method()))
        {
            self.emit_slow(&occ, score, now);
        }
    }

    /// Whether a hook of the run tree came to want `m` since the run started.
    #[inline]
    fn gained(&self, m: HookMethod) -> bool {
        let epoch = crate::hook::interest_epoch();
        epoch != self.epoch && self.interest_at(epoch).contains(m)
    }

    /// What the run tree's hooks want as of interest epoch `epoch`.
    pub(crate) fn interest_at(&self, epoch: u32) -> Interest {
        if epoch == self.epoch {
            return self.interest;
        }
        let own = self.inner.interest(epoch);
        match self.upstream {
            Some(up) => own.union(up.interest(epoch)),
            None => own,
        }
    }

    /// The end of the first attempt of note `n`, started at `t0`, reported to the hooks that
    /// want it (the most frequent occurrence): the clock is read only then, and the hooks'
    /// `on_note_end` is called directly rather than through [`Occ`].
    #[inline(always)]
    fn note_ended(
        &self,
        n: &CompiledNote<S>,
        t0: Option<Stamp>,
        outcome: &NoteOutcome<'_>,
        score: &S,
    ) {
        if self.interest.contains(HookMethod::NoteEnd) || self.gained(HookMethod::NoteEnd) {
            self.note_ended_slow(n, t0, outcome, score);
        }
    }

    #[inline(never)]
    fn note_ended_slow(
        &self,
        n: &CompiledNote<S>,
        t0: Option<Stamp>,
        outcome: &NoteOutcome<'_>,
        score: &S,
    ) {
        let (d, now) = self.tree.lap(t0);
        let cx = self.hook_context(n.key, now);
        if let Some(up) = self.upstream {
            up.deliver(&cx, &Occ::NoteEnd(&n.path, 1, d, outcome, n.key));
        }
        each_hook(self.inner, "on_note_end", |h| {
            h.on_note_end(&cx, &n.path, 1, d, outcome, score)
        });
    }

    #[inline(never)]
    fn emit_slow(&self, occ: &Occ<'_>, score: Option<&S>, now: Option<Stamp>) {
        let cx = self.hook_context(occ.key(), now);
        if let Some(up) = self.upstream {
            up.deliver(&cx, occ);
        }
        dispatch(self.inner, &cx, occ, score);
    }

    /// The context of an occurrence, numbered (EVT-3).
    #[inline(always)]
    fn hook_context(&self, key: u64, now: Option<Stamp>) -> HookContext<'_> {
        HookContext::of_run(
            &self.info,
            self.flags,
            next_seq(self.tree.seq()),
            self.tree,
            now,
            key,
        )
    }

    /// The full path of `path` in this run (GEN-2).
    pub(crate) fn full_path<'p>(&self, path: &'p str) -> Cow<'p, str> {
        match self.info.prefix {
            None => Cow::Borrowed(path),
            Some(p) => Cow::Owned(format!("{p}/{path}")),
        }
    }
}

impl<'r, S: Send + 'static> RunCtx<'r, S> {
    /// Runs the cadence on `score`: hooks, span, cancellation, body (RUN-3…6).
    ///
    /// This is the lean path of every run that does not checkpoint (and of child runs); a
    /// checkpointed root run goes through [`execute_checkpointed`](Self::execute_checkpointed).
    pub(crate) async fn execute(&self, score: &mut S) -> End {
        let span = self.run_span(false);
        let end = async {
            self.emit(Occ::CadenceStart, Some(&*score));
            let mut guard = RunGuard {
                rc: self,
                score,
                t0: self.observe().then(|| self.tree.now()),
                armed: self.observe(),
            };
            let end = match self.info.token {
                None => self.run_body(&mut *guard.score).await,
                Some(token) => {
                    // Boxed: the waiter is large and only runs with a token pay for it.
                    let cancelled = Box::pin(token.cancelled());
                    tokio::select! {
                        biased;
                        _ = cancelled => End::Cancelled,
                        end = self.run_body(&mut *guard.score) => end,
                    }
                }
            };
            guard.armed = false;
            let (d, now) = self.tree.lap(guard.t0);
            self.emit_at(
                Occ::CadenceEnd(d, &end.as_outcome()),
                Some(&*guard.score),
                now,
            );
            end
        };
        let end = InSpan::new(&span, end).await;
        record_run_span(&span, &end);
        end
    }

    fn run_span(&self, resumed: bool) -> LiveSpan {
        LiveSpan::new(tracing::info_span!(
            target: "cadence",
            "cadence.run",
            cadence.name = &*self.inner.name,
            cadence.run_id = self.info.run_id.get(),
            cadence.parent_run_id = self.info.parent_run_id.map(RunId::get),
            cadence.resumed = resumed,
            cadence.outcome = Empty,
        ))
    }

    /// A checkpointed root run (CKP-4…9): open the session, then run or replay.
    ///
    /// The options come by reference (the trace context is taken out of them): an async fn
    /// keeps its arguments for as long as it runs, and this future is allocated by every
    /// checkpointed run, so it is kept under the allocator's small-size limit (1 KiB).
    pub(crate) async fn execute_checkpointed(
        &self,
        cfg: &Checkpointing<S>,
        score: &mut S,
        opts: &mut CheckpointRunOptions,
    ) -> End {
        let valid: Vec<&str> = self.inner.measures.iter().map(|m| &*m.path).collect();
        let retain_outcome = opts.retain_outcome;
        let trace = opts.trace.take().or_else(|| {
            self.inner
                .hooks
                .iter()
                .flat_map(|hs| hs.iter())
                .find_map(|h| h.trace_context())
        });
        let opened = Session::open(
            cfg,
            &self.inner.name,
            self.info.run_id.get(),
            &self.inner.fingerprint,
            opts.allow_fingerprint_mismatch,
            trace,
            &valid,
            score,
        )
        .await;
        // Not held across the run: it would only make this future larger.
        drop(valid);
        match opened {
            Err(e) => {
                let extras = Extras {
                    preset: Some(End::failed(e)),
                    session: None,
                    retain: None,
                };
                self.execute_with(score, Some(Box::new(extras))).await
            }
            Ok(Opened::Replay(stored, status)) => {
                // CKP-7: a retained outcome is returned without running (start and end only).
                *score = stored;
                if let Some(f) = self.flags {
                    f.replayed.store(true, Ordering::Relaxed);
                }
                let end = match status {
                    RecordStatus::Stopped => End::Stopped {
                        path: String::new(),
                        reason: None,
                    },
                    _ => End::Succeeded,
                };
                let extras = Extras {
                    preset: Some(end),
                    session: None,
                    retain: None,
                };
                self.execute_with(score, Some(Box::new(extras))).await
            }
            Ok(Opened::Run(session)) => {
                if let Some(f) = self.flags {
                    f.resumed.store(session.resumed, Ordering::Relaxed);
                }
                let rc = RunCtx {
                    ckpt: Some(&*session),
                    ..*self
                };
                let extras = Extras {
                    preset: None,
                    session: Some(&*session),
                    retain: retain_outcome,
                };
                rc.execute_with(score, Some(Box::new(extras))).await
            }
        }
    }

    /// A run whose ending was decided before running (a failed open, a replayed outcome): its
    /// start and end hooks only (RUN-5, CKP-7).
    fn preset_run(&self, score: &mut S, end: End) -> End {
        let span = tracing::info_span!(
            target: "cadence",
            "cadence.run",
            cadence.name = &*self.inner.name,
            cadence.run_id = self.info.run_id.get(),
            cadence.outcome = end.as_outcome().kind().as_str(),
        );
        span.in_scope(|| {
            self.emit(Occ::CadenceStart, Some(&*score));
            self.emit(
                Occ::CadenceEnd(Duration::ZERO, &end.as_outcome()),
                Some(&*score),
            );
        });
        end
    }

    /// The run itself between its start and end hooks, with a checkpoint session's loading,
    /// lease keeping and final write when it has one.
    async fn execute_with(&self, score: &mut S, extras: Option<Box<Extras<'_, S>>>) -> End {
        let (session, retain) = match extras {
            Some(x) => match x.preset {
                Some(end) => return self.preset_run(score, end),
                None => (x.session, x.retain),
            },
            None => (None, None),
        };
        let span = self.run_span(session.is_some_and(|s| s.resumed));
        let end = async {
            let t0 = self.observe().then(|| self.tree.now());
            self.emit(Occ::CadenceStart, Some(&*score));
            if let Some(s) = session
                && s.resumed
            {
                self.emit(Occ::CheckpointLoaded(s.completed.len(), s.forced), None);
            }
            let mut guard = RunGuard {
                rc: self,
                score,
                t0,
                armed: self.observe(),
            };
            let lease = session.filter(|s| s.lease.is_some());
            let mut end = match (self.info.token, lease) {
                (None, None) => self.run_body(&mut *guard.score).await,
                (token, lease) => {
                    // Boxed: the waiters are large and only runs that need them pay for them.
                    let watch: BoxFuture<'_, End> = Box::pin(async move {
                        let cancelled = async {
                            match token {
                                Some(t) => t.cancelled().await,
                                None => std::future::pending().await,
                            }
                        };
                        let lost = async {
                            match lease {
                                // A store that panics while renewing cannot renew leases: the
                                // run goes on and the lease is left to the store's expiry (as
                                // on a runtime without timers, see `keep_lease`).
                                Some(s) => match CatchUnwind::new(s.keep_lease()).await {
                                    Ok(e) => e,
                                    Err(p) => {
                                        tracing::warn!(
                                            target: "cadence",
                                            "cannot renew the checkpoint lease: the store panicked: {}",
                                            panic_message(p.as_ref())
                                        );
                                        std::future::pending().await
                                    }
                                },
                                None => std::future::pending().await,
                            }
                        };
                        tokio::select! {
                            biased;
                            _ = cancelled => End::Cancelled,
                            e = lost => End::failed(e),
                        }
                    });
                    // The body is built inside select!: a named local would be stored twice.
                    tokio::select! {
                        biased;
                        end = watch => end,
                        end = self.run_body(&mut *guard.score) => end,
                    }
                }
            };
            if let Some(s) = session {
                let status = match &end {
                    End::Succeeded => Some(RecordStatus::Succeeded),
                    End::Partial(_) => Some(RecordStatus::Partial),
                    End::Stopped { .. } => Some(RecordStatus::Stopped),
                    End::Failed { .. } => Some(RecordStatus::Failed),
                    End::Cancelled => None,
                };
                // One end write, carrying the last measure's save (see checkpoint::session);
                // the final score is encoded only if it writes it.
                let encoded = s
                    .needs_final_score(status, retain)
                    .then(|| s.encode(&*guard.score));
                let finish: BoxFuture<'_, Finished> = Box::pin(s.finish(status, encoded, retain));
                let done = finish.await;
                if let Some((path, n)) = &done.saved {
                    self.emit(Occ::CheckpointSaved(path, *n), None);
                }
                if let Some((error, measure)) = done.failed {
                    end = End::Failed {
                        error,
                        measure: Some(measure),
                    };
                }
                for e in &done.errors {
                    self.emit(Occ::CheckpointError(e), None);
                }
            }
            guard.armed = false;
            let (d, now) = self.tree.lap(t0);
            self.emit_at(
                Occ::CadenceEnd(d, &end.as_outcome()),
                Some(&*guard.score),
                now,
            );
            end
        };
        let end = InSpan::new(&span, end).await;
        record_run_span(&span, &end);
        end
    }

    async fn run_body(&self, score: &mut S) -> End {
        let mut failed: Vec<String> = Vec::new();
        for m in self.inner.measures.iter() {
            if let Some(session) = self.ckpt
                && session.completed.contains(&*m.path)
            {
                // CKP-5: completed before a crash.
                self.emit(Occ::Skipped(&m.path, SkipReason::Checkpoint), None);
                continue;
            }
            let r = match &m.body {
                // Nobody observes the measure: its note on the lean path, inline; in a
                // checkpointed run its attempt is counted first (CKP-12).
                MeasureBody::Note(n) if n.fast && self.unobserved() => {
                    let mut cx = self.lean_context(n);
                    if let Some(session) = self.ckpt {
                        cx.prior_attempts = Self::attempt_recorded(session, n);
                    }
                    lean_note!(self, n, score, cx)
                }
                // Nobody observes the measure and its note has policies: straight to them,
                // in one allocation.
                MeasureBody::Note(n) if !n.fast && !self.observe() && self.ckpt.is_none() => {
                    self.exec_note_spanned(n, score, None).await
                }
                _ => {
                    // Boxed: observed, checkpointed, spanned and composite measures pay one
                    // allocation so that every run's future stays small (core.mem_per_run).
                    let measure: BoxFuture<'_, Result<Flow, CadenceError>> =
                        Box::pin(self.exec_measure(m, score));
                    measure.await
                }
            };
            match r {
                Ok(Flow::Continue) => {
                    if let Some(session) = self.ckpt {
                        // The last measure's save is carried by the run's end write.
                        if self
                            .inner
                            .measures
                            .last()
                            .is_some_and(|l| std::ptr::eq(l, m))
                        {
                            session.defer_last(&m.path);
                            continue;
                        }
                        let saved = match session.encode(score) {
                            Ok(encoded) => {
                                let save: BoxFuture<'_, Result<usize, CadenceError>> =
                                    Box::pin(session.measure_completed(&m.path, encoded));
                                save.await
                            }
                            Err(e) => Err(e),
                        };
                        let saved = match saved {
                            Ok(n) => {
                                self.emit(Occ::CheckpointSaved(&m.path, n), None);
                                Ok(())
                            }
                            Err(e) => self.checkpoint_failed(session, e),
                        };
                        if let Err(e) = saved {
                            return End::Failed {
                                error: e,
                                measure: Some(m.path.to_string()),
                            };
                        }
                    }
                }
                Ok(Flow::Stop { path, reason }) => return End::Stopped { path, reason },
                Err(CadenceError::Cancelled) => return End::Cancelled,
                Err(error) => {
                    let measure = m.path.to_string();
                    let handled = !matches!(
                        error.kind(),
                        ErrorKind::Checkpoint | ErrorKind::CheckpointMismatch
                    );
                    match &self.inner.on_error {
                        Some((handler, mode)) if handled => {
                            if let Err(h) = call_handler(handler, score, &error).await {
                                return End::Failed {
                                    error: CadenceError::HandlerFailed {
                                        original: Box::new(error),
                                        handler: h,
                                    },
                                    measure: Some(measure),
                                };
                            }
                            match mode {
                                OnError::Continue => failed.push(measure),
                                OnError::Stop => {
                                    return End::Failed {
                                        error,
                                        measure: Some(measure),
                                    };
                                }
                            }
                        }
                        _ => {
                            return End::Failed {
                                error,
                                measure: Some(measure),
                            };
                        }
                    }
                }
            }
        }
        if failed.is_empty() {
            End::Succeeded
        } else {
            End::Partial(failed)
        }
    }

    async fn exec_measure(&self, m: &Measure<S>, score: &mut S) -> Result<Flow, CadenceError> {
        // The start time lives only in the guard: every byte here is in every run's future.
        let mut guard = MeasureGuard {
            rc: self,
            path: &m.path,
            t0: self.observe().then(|| self.tree.now()),
            armed: self.observe(),
        };
        self.emit(Occ::MeasureStart(&m.path, m.kind), None);
        let r = match &m.body {
            MeasureBody::Note(n) => self.exec_note(n, score).await,
            _ => {
                let span = tracing::info_span!(
                    target: "cadence",
                    "cadence.measure",
                    cadence.measure.path = &*m.path,
                    cadence.measure.kind = m.kind.as_str(),
                );
                // Boxed: composite measures are rarer, and inlining their (large) futures would
                // make every plain note's future as big as a parallel group's.
                let fut: BoxFuture<'_, Result<Flow, CadenceError>> =
                    Box::pin(self.exec_composite(m, score).instrument(span));
                fut.await
            }
        };
        guard.armed = false;
        let outcome = match &r {
            Ok(Flow::Continue) => MeasureOutcome::Succeeded,
            Ok(Flow::Stop { .. }) => MeasureOutcome::Stopped,
            Err(CadenceError::Cancelled) => MeasureOutcome::Cancelled,
            Err(e) => MeasureOutcome::Failed(e),
        };
        let (d, now) = self.tree.lap(guard.t0);
        self.emit_at(Occ::MeasureEnd(&m.path, d, &outcome), None, now);
        r
    }

    async fn exec_composite(&self, m: &Measure<S>, score: &mut S) -> Result<Flow, CadenceError> {
        match &m.body {
            MeasureBody::Note(n) => self.exec_note(n, score).await,
            MeasureBody::Sequence(notes) => self.exec_notes(notes, score).await,
            MeasureBody::Split {
                cond,
                if_true,
                if_false,
            } => {
                let taken = self.eval(&cond.f, &m.path, score).await?;
                let branch = if taken { "true" } else { "false" };
                self.emit(Occ::Branch(&m.path, branch, branch), None);
                self.exec_notes(if taken { if_true } else { if_false }, score)
                    .await
            }
            MeasureBody::Route {
                selector,
                routes,
                default,
            } => {
                let key = self.eval(&selector.f, &m.path, score).await?;
                match routes.iter().find(|(k, _)| **k == *key) {
                    Some((k, notes)) => {
                        self.emit(Occ::Branch(&m.path, k, &key), None);
                        self.exec_notes(notes, score).await
                    }
                    None => match default {
                        Some(notes) => {
                            self.emit(Occ::Branch(&m.path, "*", &key), None);
                            self.exec_notes(notes, score).await
                        }
                        None => Err(CadenceError::Route {
                            path: self.full_path(&m.path).into_owned(),
                            key,
                        }),
                    },
                }
            }
            MeasureBody::Child(child) => child.run(self, &m.path, score).await,
            MeasureBody::Sync {
                notes,
                strategy,
                ops,
            } => self.exec_sync(&m.path, notes, strategy, ops, score).await,
        }
    }

    /// A parallel group (PAR-4…12): clones first, `note_start` for every member in declaration
    /// order, members polled concurrently on this task, the first failure cancels the rest,
    /// then an atomic merge in declaration order.
    async fn exec_sync(
        &self,
        path: &str,
        notes: &[CompiledNote<S>],
        strategy: &MergeStrategy<S>,
        ops: &GroupOps<S>,
        score: &mut S,
    ) -> Result<Flow, CadenceError> {
        if self.ckpt.is_none() && notes.iter().all(|n| self.is_lean(n)) {
            return self.exec_sync_lean(path, notes, strategy, ops, score).await;
        }
        let count = notes.len();
        // CKP-5: members whose results a checkpoint holds are not run again.
        let mut results: Vec<Option<S>> = Vec::with_capacity(count);
        for n in notes {
            let stored = self
                .ckpt
                .and_then(|s| s.members.get(&*n.path).map(|v| (s, v)));
            results.push(match stored {
                Some((s, v)) => match (s.codec.decode)(v) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        return Err(CadenceError::checkpoint(
                            CheckpointErrorKind::Corrupt,
                            format!(
                                "the stored result of member '{}' does not deserialize: {e}",
                                n.path
                            ),
                        ));
                    }
                },
                None => None,
            });
        }
        let mut group = GroupGuard {
            rc: self,
            notes,
            live: score,
            attempts: notes.iter().map(|_| AtomicU32::new(1)).collect(),
            finished: results.iter().map(Option::is_some).collect(),
            t0: self.observe().then(|| self.tree.now()),
            armed: self.observe(),
        };
        // PAR-4: every clone is taken before any member runs.
        let clones: Vec<Option<S>> = results
            .iter()
            .map(|r| r.is_none().then(|| (ops.clone)(group.live)))
            .collect();
        if self.observe() {
            for (j, n) in notes.iter().enumerate() {
                match &clones[j] {
                    Some(clone) => self.emit(Occ::NoteStart(&n.path, 1, n.key), Some(clone)),
                    None => self.emit(Occ::Skipped(&n.path, SkipReason::Checkpoint), None),
                }
            }
        }
        let members = clones
            .into_iter()
            .enumerate()
            .filter_map(|(j, c)| c.map(|c| (j, c)));
        let attempts = &group.attempts;
        let set: FuturesUnordered<_> = members
            .map(|(j, mut clone)| async move {
                let r = self
                    .exec_note_as(&notes[j], &mut clone, Some(&attempts[j]))
                    .await;
                (j, clone, r)
            })
            .collect();
        let (failure, stop) = self
            .drive_members(set, notes, &mut group.finished, &mut results)
            .await;
        if let Some((j, source)) = failure {
            group.report_cancelled();
            if matches!(source, CadenceError::Checkpoint { .. }) {
                return Err(source);
            }
            return Err(self.member_failed(path, notes, j, source));
        }
        group.armed = false;
        let results: Vec<S> = results.into_iter().flatten().collect();
        debug_assert_eq!(results.len(), count);
        self.merge_group(path, notes, strategy, ops, group.live, results)
            .map(|()| stop.unwrap_or(Flow::Continue))
    }

    /// PAR-5: the error of a group whose member `j` failed with `source`.
    fn member_failed(
        &self,
        path: &str,
        notes: &[CompiledNote<S>],
        j: usize,
        source: CadenceError,
    ) -> CadenceError {
        CadenceError::Parallel {
            group: self.full_path(path).into_owned(),
            note: notes[j].name.to_string(),
            index: j,
            source: Box::new(source),
        }
    }

    /// PAR-2/3: merges the members' `results` (in declaration order) into `live`, atomically;
    /// a conflict names the group, a panicking merge fails it.
    fn merge_group(
        &self,
        path: &str,
        notes: &[CompiledNote<S>],
        strategy: &MergeStrategy<S>,
        ops: &GroupOps<S>,
        live: &mut S,
        results: Vec<S>,
    ) -> Result<(), CadenceError> {
        let names: Vec<&str> = notes.iter().map(|n| &*n.name).collect();
        match catch_unwind(AssertUnwindSafe(|| {
            (ops.merge)(strategy, live, results, &names)
        })) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(mut conflict)) => {
                conflict.group = self.full_path(path).into_owned();
                Err(CadenceError::MergeConflict(conflict))
            }
            Err(p) => Err(self.panicked(path, p)),
        }
    }

    /// [`exec_sync`](Self::exec_sync) of a group whose members are all on the lean path, in a
    /// run without checkpoints: nothing observes the members, so the group keeps no per-member
    /// bookkeeping, and each member future borrows its clone from one vector that is merged
    /// as it stands (PAR-1…6 as in the general path).
    async fn exec_sync_lean(
        &self,
        path: &str,
        notes: &[CompiledNote<S>],
        strategy: &MergeStrategy<S>,
        ops: &GroupOps<S>,
        score: &mut S,
    ) -> Result<Flow, CadenceError> {
        // PAR-4: every clone is taken before any member runs.
        let live: &S = score;
        let mut clones: Vec<S> = notes.iter().map(|_| (ops.clone)(live)).collect();
        let mut stop: Option<Flow> = None;
        {
            let mut set: FuturesUnordered<_> = clones
                .iter_mut()
                .zip(notes)
                .enumerate()
                .map(|(j, (clone, n))| async move {
                    let mut cx = self.lean_context(n);
                    (j, lean_note!(self, n, clone, cx))
                })
                .collect();
            while let Some((j, r)) = set.next().await {
                match r {
                    Ok(Flow::Continue) => {}
                    // PAR-6: siblings run to completion; the first stop is reported.
                    Ok(flow) => {
                        stop.get_or_insert(flow);
                    }
                    // PAR-5: dropping `set` cancels the unfinished siblings; nothing merges.
                    Err(source) => {
                        drop(set);
                        return Err(self.member_failed(path, notes, j, source));
                    }
                }
            }
        }
        self.merge_group(path, notes, strategy, ops, score, clones)
            .map(|()| stop.unwrap_or(Flow::Continue))
    }

    /// Polls a group's members until all finished, the first failure, or a failed member save;
    /// returns the failure and the first stop (PAR-5, PAR-6). Dropping `set` (on return)
    /// cancels every unfinished member.
    async fn drive_members<F>(
        &self,
        mut set: FuturesUnordered<F>,
        notes: &[CompiledNote<S>],
        finished: &mut [bool],
        results: &mut [Option<S>],
    ) -> (Option<(usize, CadenceError)>, Option<Flow>)
    where
        F: Future<Output = (usize, S, Result<Flow, CadenceError>)>,
    {
        let mut stop: Option<Flow> = None;
        while let Some((j, result, r)) = set.next().await {
            finished[j] = true;
            match r {
                Ok(flow) => {
                    if let Some(session) = self.ckpt
                        && let Err(e) = self
                            .member_saved(session, &notes[j].path, session.encode(&result))
                            .await
                    {
                        return (Some((j, e)), stop);
                    }
                    results[j] = Some(result);
                    if let Flow::Stop { .. } = flow {
                        // PAR-6: siblings run to completion; the first stop is reported.
                        stop.get_or_insert(flow);
                    }
                }
                Err(e) => return (Some((j, e)), stop),
            }
        }
        (None, stop)
    }

    /// CKP-4 inside a group: saves a member's result and reports it, or applies
    /// `on_checkpoint_error` (an `Err` fails the group).
    async fn member_saved(
        &self,
        session: &Session<S>,
        path: &str,
        encoded: Result<crate::checkpoint::RawJson, CadenceError>,
    ) -> Result<(), CadenceError> {
        match session.member_completed(path, encoded).await {
            Ok(n) => {
                self.emit(Occ::CheckpointSaved(path, n), None);
                Ok(())
            }
            Err(e) => self.checkpoint_failed(session, e),
        }
    }

    /// CKP-8: a failed save fails the run, or is logged and reported with `Continue`.
    fn checkpoint_failed(&self, session: &Session<S>, e: CadenceError) -> Result<(), CadenceError> {
        match session.on_error {
            OnCheckpointError::Fail => Err(e),
            _ => {
                tracing::warn!(target: "cadence", "checkpoint save failed, continuing: {e}");
                self.emit(Occ::CheckpointError(&e), None);
                Ok(())
            }
        }
    }

    async fn exec_notes(
        &self,
        notes: &[CompiledNote<S>],
        score: &mut S,
    ) -> Result<Flow, CadenceError> {
        let Some(first) = notes.first() else {
            return Ok(Flow::Continue);
        };
        if self.ckpt.is_some() || self.spans_wanted() {
            for n in notes {
                if let Flow::Stop { path, reason } = self.exec_note(n, score).await? {
                    return Ok(Flow::Stop { path, reason });
                }
            }
            return Ok(Flow::Continue);
        }
        // Notes without policies run inline (the lean path, see `is_lean`, or its observed
        // twin): no note future nested in this one, and one context for the whole sequence,
        // pointed at each note in turn.
        let mut cx = self.lean_context(first);
        for n in notes {
            let flow = if n.fast && self.observe() {
                flow_of(n, observed_note!(self, n, score, cx, &NoSpan, true)?)
            } else if n.fast {
                // As `lean_note!`, with the error returned from here: the common case then
                // moves no `Result` through the loop.
                match lean_attempt!(n, score, cx) {
                    Ok(Ok(c)) => match c {
                        Control::Continue => Flow::Continue,
                        c => self.lean_outcome(n, Ok(Ok(c)))?,
                    },
                    other => self.lean_outcome(n, other)?,
                }
            } else {
                self.exec_note(n, score).await?
            };
            if let Flow::Stop { path, reason } = flow {
                return Ok(Flow::Stop { path, reason });
            }
        }
        Ok(Flow::Continue)
    }

    fn panicked(&self, path: &str, payload: Panic) -> CadenceError {
        CadenceError::Panicked {
            path: self.full_path(path).into_owned(),
            message: panic_message(payload.as_ref()),
        }
    }

    /// BR-1, BR-3: evaluates a condition or selector once; errors and panics fail the measure
    /// at its path.
    async fn eval<T>(
        &self,
        f: &EvalFn<S, T>,
        path: &str,
        score: &mut S,
    ) -> Result<T, CadenceError> {
        let r = match f {
            EvalFn::Sync(f) => catch_unwind(AssertUnwindSafe(|| f(&*score))),
            EvalFn::Async(f) => {
                let fut = {
                    let s: &S = score;
                    catch_unwind(AssertUnwindSafe(move || f(s)))
                };
                match fut {
                    Ok(fut) => CatchUnwind::new(fut).await,
                    Err(p) => Err(p),
                }
            }
        };
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(CadenceError::Note {
                path: self.full_path(path).into_owned(),
                source,
            }),
            Err(p) => Err(self.panicked(path, p)),
        }
    }

    /// One note with its `cadence.note` span.
    ///
    /// Not an `async fn` itself: one less state machine around every note.
    pub(crate) fn exec_note<'a>(
        &'a self,
        n: &'a CompiledNote<S>,
        score: &'a mut S,
    ) -> impl Future<Output = Result<Flow, CadenceError>> + Send + 'a {
        self.exec_note_as(n, score, None)
    }

    /// One note; `member` is set for parallel members, whose first `note_start` and whose
    /// cancellation report belong to the group (HOOK-5).
    ///
    /// Notes without policies that run on the async worker take the fast path: one attempt,
    /// inlined here, with the note's own future the only allocation. Everything else runs
    /// boxed, so its machinery does not grow the future of every plain note.
    async fn exec_note_as(
        &self,
        n: &CompiledNote<S>,
        score: &mut S,
        member: Option<&AtomicU32>,
    ) -> Result<Flow, CadenceError> {
        if !n.fast {
            return self.exec_note_spanned(n, score, member).await;
        }
        if self.is_lean(n) {
            let mut cx = self.lean_context(n);
            return lean_note!(self, n, score, cx);
        }
        let span = LiveSpan::new(self.note_span(n));
        let mut cx = self.note_context(n, 1);
        let flow =
            observed_note!(self, n, score, cx, &span, member.is_none()).map(|c| flow_of(n, c));
        if let Some(span) = span.get() {
            record_note_span(span, &flow);
        }
        flow
    }

    /// Whether a `cadence.note` span could be recorded right now (a subscriber is installed
    /// and this cadence has note spans on).
    #[inline]
    fn spans_wanted(&self) -> bool {
        self.inner.note_spans && tracing::level_enabled!(tracing::Level::INFO)
    }

    /// Whether `n` can take the lean path: an async note without policies, in a run that no
    /// hook observes, that does not checkpoint, and whose note span nobody would record. Then
    /// one attempt is the note's own future and nothing else (see [`lean_note!`]).
    #[inline]
    fn is_lean(&self, n: &CompiledNote<S>) -> bool {
        n.fast && self.run_is_lean()
    }

    /// The run-wide half of [`is_lean`](Self::is_lean).
    #[inline]
    fn run_is_lean(&self) -> bool {
        self.unobserved() && self.ckpt.is_none()
    }

    /// Whether no hook observes this run and no note span would be recorded: a top-level
    /// note without policies then takes the lean path even in a checkpointed run, whose
    /// session counts its attempt (CKP-12) and saves after it as after any measure.
    #[inline]
    fn unobserved(&self) -> bool {
        !self.observe() && !self.spans_wanted()
    }

    /// The context of the lean path's one attempt.
    #[inline]
    fn lean_context<'a>(&'a self, n: &'a CompiledNote<S>) -> NoteContext<'a> {
        NoteContext {
            run: &self.info,
            path: &n.path,
            attempt: 1,
            prior_attempts: 0,
            token: OnceLock::new(),
            done: AtomicBool::new(false),
        }
    }

    /// Calls an async note body (a panic while building its future is caught).
    #[inline]
    fn start_note<'a>(
        n: &'a CompiledNote<S>,
        score: &'a mut S,
        cx: &'a NoteContext<'a>,
    ) -> Result<NoteFuture<'a>, Panic> {
        catch_unwind(AssertUnwindSafe(move || {
            let score = score;
            match &n.body {
                Body::AsyncFn(f) => f(score, cx),
                Body::Async(b) => b.call(score, cx),
                // `fast` notes are never blocking; answer rather than panic if that changes.
                Body::Blocking { .. } => {
                    Box::pin(async { Err("a blocking note cannot take the lean path".into()) })
                }
            }
        }))
    }

    /// Every outcome of the lean path but plain success.
    #[cold]
    #[inline(never)]
    fn lean_outcome(
        &self,
        n: &CompiledNote<S>,
        r: Result<NoteResult, Panic>,
    ) -> Result<Flow, CadenceError> {
        self.note_result(n, r).map(|c| flow_of(n, c))
    }

    fn note_span(&self, n: &CompiledNote<S>) -> tracing::Span {
        if !self.inner.note_spans {
            return tracing::Span::none();
        }
        tracing::info_span!(
            target: "cadence",
            "cadence.note",
            cadence.note.path = &*n.path,
            cadence.note.attempts = 1u32,
            cadence.outcome = Empty,
        )
    }

    /// The slow path of [`exec_note_as`]: policies or a blocking body, in the note's span.
    fn exec_note_spanned<'a>(
        &'a self,
        n: &'a CompiledNote<S>,
        score: &'a mut S,
        member: Option<&'a AtomicU32>,
    ) -> BoxFuture<'a, Result<Flow, CadenceError>> {
        let span = self.note_span(n);
        if span.is_disabled() {
            // No wrapper to move the (large) policy future into: it goes to the heap once.
            return Box::pin(self.exec_note_inner(n, score, member));
        }
        Box::pin(async move {
            let r = self
                .exec_note_inner(n, score, member)
                .instrument(span.clone())
                .await;
            record_note_span(&span, &r);
            r
        })
    }

    async fn exec_note_inner(
        &self,
        n: &CompiledNote<S>,
        score: &mut S,
        member: Option<&AtomicU32>,
    ) -> Result<Flow, CadenceError> {
        let r = if n.policies.is_empty() {
            self.run_plain(n, score, member).await
        } else {
            // Inline: this future is itself boxed by every caller (`exec_note_as`, `run_body`).
            let r = self.run_policies(n, score, member).await;
            match (r, &n.policies.fallback) {
                (Err(e), Some(fb)) if fb.applies(&e) => {
                    let fallback: BoxFuture<'_, Result<Control, CadenceError>> =
                        Box::pin(self.run_fallback(n, fb, e, score));
                    fallback.await
                }
                (r, _) => r,
            }
        };
        r.map(|c| flow_of(n, c))
    }

    /// A note without policies: one attempt, reported (HOOK-5).
    async fn run_plain(
        &self,
        n: &CompiledNote<S>,
        score: &mut S,
        member: Option<&AtomicU32>,
    ) -> Result<Control, CadenceError> {
        if member.is_none() {
            self.emit(Occ::NoteStart(&n.path, 1, n.key), Some(&*score));
        }
        let t0 = self.observe().then(|| self.tree.now());
        let mut guard = NoteGuard {
            rc: self,
            path: &n.path,
            key: n.key,
            attempt: 1,
            t0,
            score,
            armed: self.observe() && member.is_none(),
        };
        let r = self.attempt(n, &mut *guard.score, 1, false).await;
        guard.armed = false;
        if self.observe() {
            self.note_ended(n, t0, &note_outcome(&r), &*guard.score);
        }
        r
    }

    /// FB-1…4: reports the failure, then writes fields or runs the alternative note.
    async fn run_fallback(
        &self,
        n: &CompiledNote<S>,
        fb: &Fallback<S>,
        error: CadenceError,
        score: &mut S,
    ) -> Result<Control, CadenceError> {
        self.emit(Occ::Fallback(&n.path, &error), None);
        match (&fb.kind, &n.fallback_note) {
            (FallbackKind::Set(f), _) => {
                match catch_unwind(AssertUnwindSafe(|| f(score, &error))) {
                    Ok(Ok(())) => Ok(Control::Continue),
                    Ok(Err(source)) => Err(CadenceError::Note {
                        path: self.full_path(&n.path).into_owned(),
                        source,
                    }),
                    Err(p) => Err(self.panicked(&n.path, p)),
                }
            }
            (FallbackKind::Note(_), Some(alt)) => {
                // The alternative note runs with its own retry, deadline, breaker and timeout;
                // a fallback of a fallback is refused at build() (no unbounded chains).
                let span = tracing::info_span!(
                    target: "cadence",
                    "cadence.note",
                    cadence.note.path = &*alt.path,
                    cadence.note.attempts = Empty,
                    cadence.outcome = Empty,
                );
                self.run_policies(alt, score, None).instrument(span).await
            }
            (FallbackKind::Note(_), None) => Err(error),
        }
    }

    /// Retry, deadline, circuit breaker and timeout around the attempts (RES-1), reporting each
    /// attempt in the order of HOOK-5.
    async fn run_policies(
        &self,
        n: &CompiledNote<S>,
        score: &mut S,
        member: Option<&AtomicU32>,
    ) -> Result<Control, CadenceError> {
        let p = &n.policies;
        let on_clone = p.timeout.is_some() || p.deadline.is_some();
        let deadline = p
            .deadline
            .map(|d| (crate::timer::after(Instant::now(), d), d));
        if let Some(budget) = p.retry.as_ref().and_then(|r| r.budget.as_ref()) {
            budget.deposit();
        }
        let mut guard = NoteGuard {
            rc: self,
            path: &n.path,
            key: n.key,
            attempt: 1,
            t0: None,
            score,
            armed: false,
        };
        let mut previous_delay = None;
        let mut last_error: Option<CadenceError> = None;
        // A retry that nobody watches and nothing else decides (no hooks, breaker, predicate,
        // budget, timeout or deadline) can drop a failed attempt's error without typing it.
        let quiet_retry = p.retry.as_ref().filter(|r| {
            !self.observe()
                && r.retry_if.is_none()
                && r.budget.is_none()
                && p.breaker.is_none()
                && p.timeout.is_none()
                && p.deadline.is_none()
        });
        loop {
            let attempt = guard.attempt;
            if attempt > 1 && self.spans_wanted() {
                let span = tracing::Span::current();
                if !span.is_disabled() {
                    span.record("cadence.note.attempts", attempt);
                }
            }
            if member.is_none() || attempt > 1 {
                self.emit(Occ::NoteStart(&n.path, attempt, n.key), Some(&*guard.score));
            }
            if let Some(cell) = member {
                cell.store(attempt, Ordering::Relaxed);
            }
            let t0 = self.observe().then(|| self.tree.now());
            guard.t0 = t0;
            guard.armed = self.observe() && member.is_none();

            // Circuit breaker admission (CB-3, CB-5).
            let mut permit = None;
            let mut rejected = None;
            if let Some(b) = &p.breaker {
                match b.acquire() {
                    Admission::Admitted(pm, transition) => {
                        self.report_transition(b, transition);
                        permit = Some(pm);
                    }
                    Admission::Rejected {
                        retry_after,
                        transition,
                    } => {
                        self.report_transition(b, transition);
                        rejected = Some(CadenceError::CircuitOpen {
                            path: self.full_path(&n.path).into_owned(),
                            circuit: b.name().to_owned(),
                            retry_after,
                        });
                    }
                }
            }

            // The attempt, bounded by its timeout and the deadline (TMO-1, RET-7).
            let mut timed_out = None;
            // A deadline that passed, or a bound that cannot be watched: not retried.
            let mut deadline_hit = false;
            // A bound that cannot be watched (no time driver): the breaker does not count it.
            let mut no_timer = false;
            let r = match rejected {
                Some(e) => Err(e),
                None => {
                    // The attempt future is built where it is awaited: a named local would be
                    // stored twice in this (boxed) future. Its timeout counts from its start
                    // as hooks see it (`t0`), else from a reading of the run tree's clock
                    // (only a timeout needs one); tokio's clock and a timer only if it waits
                    // (see `Bounded`).
                    let bound = (p.timeout.is_some() || deadline.is_some()).then(|| Bounds {
                        tree: self.tree,
                        timeout: p
                            .timeout
                            .as_ref()
                            .map(|t| (t0.unwrap_or_else(|| self.tree.now()), t.after)),
                        deadline: deadline.map(|(d, _)| d),
                    });
                    match bound {
                        None => {
                            let raw = self
                                .attempt_raw(n, &mut *guard.score, attempt, on_clone)
                                .await;
                            if let (Some(r), Ok(Err(e))) = (quiet_retry, &raw)
                                && attempt < r.max_attempts
                                && !e.is::<crate::note::Stop>()
                                && crate::retry::marker_in(&**e).is_none()
                            {
                                // RET-2's default: a note error without markers is retried.
                                let delay = r.next_delay(attempt, previous_delay, None);
                                tracing::info!(
                                    name: "cadence.retry",
                                    target: "cadence",
                                    attempt,
                                    delay_ms = delay.as_millis() as u64,
                                    "cadence.retry"
                                );
                                drop(raw);
                                previous_delay = Some(delay);
                                if let Some(wait) = self.retry_wait(n, delay)? {
                                    wait.await;
                                }
                                guard.attempt = attempt + 1;
                                continue;
                            }
                            self.note_result(n, raw)
                        }
                        Some(bounds) => match Bounded::new(
                            self.attempt(n, &mut *guard.score, attempt, on_clone),
                            bounds,
                        )
                        .await
                        {
                            Ok(r) => r,
                            Err(Hit::Deadline) => {
                                deadline_hit = true;
                                Err(self.deadline_error(n, deadline, last_error.take()))
                            }
                            Err(Hit::NoTimer) => {
                                (deadline_hit, no_timer) = (true, true);
                                Err(NoTimeDriver
                                    .error(self.full_path(&n.path), "its timeout or deadline"))
                            }
                            Err(Hit::Timeout) => {
                                let t = p.timeout.as_ref().map(|t| (t.after, t.message.clone()));
                                let (after, message) = t.unwrap_or_default();
                                timed_out = Some(after);
                                Err(CadenceError::Timeout {
                                    path: self.full_path(&n.path).into_owned(),
                                    after,
                                    scope: TimeoutScope::Attempt,
                                    message,
                                    last: None,
                                })
                            }
                        },
                    }
                }
            };
            guard.armed = false;

            // Breaker accounting (CB-4): stops are successes, cancellation is not counted, nor
            // is a runtime without timers (a misconfiguration, not the callee's failure: it must
            // not open the circuit and hide its own error behind `CircuitOpen`).
            if no_timer {
                drop(permit);
            } else if let (Some(pm), Some(b)) = (permit, &p.breaker) {
                let result = b.classify(r.as_ref().map(|_| ()));
                let transition = pm.record(result);
                self.report_transition(b, transition);
            }
            if let Some(after) = timed_out {
                self.emit(Occ::Timeout(&n.path, attempt, after), None);
            }

            let error = match r {
                Ok(control) => {
                    let outcome = if control.is_stop() {
                        NoteOutcome::Stopped
                    } else {
                        NoteOutcome::Succeeded
                    };
                    let (d, now) = self.tree.lap(t0);
                    self.emit_at(
                        Occ::NoteEnd(&n.path, attempt, d, &outcome, n.key),
                        Some(&*guard.score),
                        now,
                    );
                    return Ok(control);
                }
                Err(e) => e,
            };

            // Retry decision (RET-1, RET-2, RET-7, RET-8).
            let retry = p.retry.as_ref();
            let marker = retry.and_then(|_| crate::retry::marker(&error));
            let retryable =
                !deadline_hit && retry.is_some_and(|r| r.is_retryable_marked(&error, &marker));
            let final_error = match retry {
                Some(r) if retryable && attempt < r.max_attempts => {
                    if r.budget.as_ref().is_some_and(|b| !b.try_withdraw()) {
                        tracing::warn!(
                            target: "cadence",
                            path = %self.full_path(&n.path),
                            "retry budget exhausted; not retrying"
                        );
                        Some(self.exhausted(n, attempt, error))
                    } else {
                        let delay =
                            r.next_delay(attempt, previous_delay, crate::retry::hint_of(&marker));
                        let past_deadline = deadline.is_some_and(|(at, _)| {
                            crate::timer::after(Instant::now(), delay) >= at
                        });
                        // The timer is made before the attempt is reported as retried, and
                        // only for a retry that will happen.
                        let wait = (!past_deadline).then(|| self.retry_wait(n, delay));
                        match wait {
                            None => Some(self.deadline_error(n, deadline, Some(error))),
                            Some(Err(e)) => Some(e),
                            Some(Ok(wait)) => {
                                let (d, now) = self.tree.lap(t0);
                                self.emit_at(
                                    Occ::NoteEnd(
                                        &n.path,
                                        attempt,
                                        d,
                                        &NoteOutcome::WillRetry(&error),
                                        n.key,
                                    ),
                                    Some(&*guard.score),
                                    now,
                                );
                                self.emit(Occ::Retry(&n.path, attempt, delay, &error), None);
                                tracing::info!(
                                    name: "cadence.retry",
                                    target: "cadence",
                                    attempt,
                                    delay_ms = delay.as_millis() as u64,
                                    "cadence.retry"
                                );
                                previous_delay = Some(delay);
                                last_error = Some(error);
                                if let Some(wait) = wait {
                                    wait.await;
                                }
                                guard.attempt = attempt + 1;
                                None
                            }
                        }
                    }
                }
                Some(_) if retryable => Some(self.exhausted(n, attempt, error)),
                _ => Some(error),
            };
            if let Some(e) = final_error {
                let (d, now) = self.tree.lap(t0);
                self.emit_at(
                    Occ::NoteEnd(&n.path, attempt, d, &NoteOutcome::Failed(&e), n.key),
                    Some(&*guard.score),
                    now,
                );
                return Err(e);
            }
        }
    }

    /// The timer of a retry `delay` (none for zero), made before the retry is reported or
    /// waited for: on a runtime without tokio's time driver the note fails instead (see
    /// [`crate::timer`]).
    fn retry_wait(
        &self,
        n: &CompiledNote<S>,
        delay: Duration,
    ) -> Result<Option<tokio::time::Sleep>, CadenceError> {
        if delay.is_zero() {
            return Ok(None);
        }
        crate::timer::sleep(delay)
            .map(Some)
            .map_err(|no| no.error(self.full_path(&n.path), "its retry delay"))
    }

    fn exhausted(&self, n: &CompiledNote<S>, attempts: u32, last: CadenceError) -> CadenceError {
        CadenceError::RetryExhausted {
            path: self.full_path(&n.path).into_owned(),
            attempts,
            last: Box::new(last),
        }
    }

    fn deadline_error(
        &self,
        n: &CompiledNote<S>,
        deadline: Option<(Instant, Duration)>,
        last: Option<CadenceError>,
    ) -> CadenceError {
        CadenceError::Timeout {
            path: self.full_path(&n.path).into_owned(),
            after: deadline.map(|d| d.1).unwrap_or_default(),
            scope: TimeoutScope::Deadline,
            message: None,
            last: last.map(Box::new),
        }
    }

    fn report_transition(&self, b: &CircuitBreaker, t: Option<(CircuitState, CircuitState)>) {
        if let Some((from, to)) = t {
            self.emit(Occ::Circuit(b.name(), from, to), None);
        }
    }

    /// One attempt of a note's body: panics caught, errors typed, stops recognised.
    pub(crate) async fn attempt(
        &self,
        n: &CompiledNote<S>,
        score: &mut S,
        attempt: u32,
        on_clone: bool,
    ) -> Result<Control, CadenceError> {
        let r = self.attempt_raw(n, score, attempt, on_clone).await;
        self.note_result(n, r)
    }

    /// One attempt, its result not yet typed (see [`note_result`](Self::note_result)).
    async fn attempt_raw(
        &self,
        n: &CompiledNote<S>,
        score: &mut S,
        attempt: u32,
        on_clone: bool,
    ) -> Result<NoteResult, Panic> {
        match &n.body {
            Body::AsyncFn(_) | Body::Async(_) => {
                let cx = self.note_context(n, attempt);
                let r = match Self::start_note(n, score, &cx) {
                    Ok(fut) => CatchUnwind::new(fut).await,
                    Err(p) => Err(p),
                };
                cx.finish();
                r
            }
            Body::Blocking { imp, take, clone } => {
                let mover = if on_clone {
                    Mover::Clone(*clone)
                } else {
                    Mover::Take(*take)
                };
                self.run_blocking(n, imp, mover, score, attempt).await
            }
        }
    }

    /// Types a caught attempt result: stops recognised (NOTE-5), errors and panics given the
    /// note's full path (NOTE-7).
    fn note_result(
        &self,
        n: &CompiledNote<S>,
        r: Result<NoteResult, Panic>,
    ) -> Result<Control, CadenceError> {
        match r {
            Ok(result) => match normalise(result) {
                Ok(c) => Ok(c),
                Err(source) => Err(CadenceError::Note {
                    path: self.full_path(&n.path).into_owned(),
                    source,
                }),
            },
            Err(p) => Err(self.panicked(&n.path, p)),
        }
    }

    #[inline]
    fn note_context<'a>(&'a self, n: &'a CompiledNote<S>, attempt: u32) -> NoteContext<'a> {
        let prior_attempts = match self.ckpt {
            Some(session) => Self::attempt_recorded(session, n),
            None => 0,
        };
        NoteContext {
            run: &self.info,
            path: &n.path,
            attempt,
            prior_attempts,
            token: OnceLock::new(),
            done: AtomicBool::new(false),
        }
    }

    /// CKP-12: counts an attempt in the session; the attempts of earlier executions.
    #[inline(never)]
    fn attempt_recorded(session: &Session<S>, n: &CompiledNote<S>) -> u32 {
        session.attempt_started(n.key, &n.path)
    }

    /// NOTE-6: moves the score to the blocking pool and back (also after a panic). If this
    /// future is dropped, the attempt's token fires and the blocking call runs on detached.
    async fn run_blocking(
        &self,
        n: &CompiledNote<S>,
        imp: &BlockingImpl<S>,
        mover: Mover<S>,
        score: &mut S,
        attempt: u32,
    ) -> Result<NoteResult, Panic> {
        let token = match self.info.token {
            Some(t) => t.child_token(),
            None => CancellationToken::new(),
        };
        let owned = OwnedContext {
            run_id: RunId::given(self.info.run_id.get().to_owned()),
            root_run_id: RunId::given(self.info.root_run_id.get().to_owned()),
            parent_run_id: self
                .info
                .parent_run_id
                .map(|p| RunId::given(p.get().to_owned())),
            cadence: self.info.cadence.to_owned(),
            path: n.path.clone(),
            prefix: self.info.prefix.map(str::to_owned),
            attempt,
            token: token.clone(),
        };
        // Before the score is moved out: without a runtime, `spawn_blocking` would panic, and
        // the attempt fails instead, for good (no retry), with the score left in place.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            let why = format!("a blocking note cannot run: {}", crate::timer::NO_RUNTIME);
            return Ok(Err(Box::new(crate::retry::Permanent::new(why))));
        };
        let imp = imp.clone();
        let mut moved = match mover {
            Mover::Take(take) => take(score),
            Mover::Clone(clone) => clone(score),
        };
        let span = tracing::Span::current();
        let handle = rt.spawn_blocking(move || {
            let _entered = span.enter();
            let info = owned.info();
            let cx = owned.context(&info);
            let r = catch_unwind(AssertUnwindSafe(|| imp.call(&mut moved, &cx)));
            cx.finish();
            (moved, r)
        });
        let abandon = token.drop_guard();
        let joined = handle.await;
        let _ = abandon.disarm();
        match joined {
            Ok((back, r)) => {
                *score = back;
                r
            }
            Err(e) => Err(Box::new(format!("the blocking task could not finish: {e}"))),
        }
    }
}

/// How a blocking attempt gets its score: moved (the live score travels and comes back), or
/// cloned (with a timeout or deadline: adopted only if the attempt finishes in time, NOTE-6).
enum Mover<S> {
    Take(fn(&mut S) -> S),
    Clone(fn(&S) -> S),
}

/// The context data a blocking attempt owns on its thread.
struct OwnedContext {
    run_id: RunId,
    root_run_id: RunId,
    parent_run_id: Option<RunId>,
    cadence: String,
    path: Arc<str>,
    prefix: Option<String>,
    attempt: u32,
    token: CancellationToken,
}

impl OwnedContext {
    fn info(&self) -> RunInfo<'_> {
        RunInfo {
            run_id: &self.run_id,
            root_run_id: &self.root_run_id,
            parent_run_id: self.parent_run_id.as_ref(),
            cadence: &self.cadence,
            prefix: self.prefix.as_deref(),
            token: None,
        }
    }

    fn context<'a>(&'a self, info: &'a RunInfo<'a>) -> NoteContext<'a> {
        let token = OnceLock::new();
        let _ = token.set(self.token.clone());
        NoteContext {
            run: info,
            path: &self.path,
            attempt: self.attempt,
            prior_attempts: 0,
            token,
            done: AtomicBool::new(false),
        }
    }
}

/// RUN-9, RUN-10: runs the handler; its error or panic becomes the handler error.
async fn call_handler<S>(
    handler: &Handler<S>,
    score: &mut S,
    error: &CadenceError,
) -> Result<(), BoxError> {
    let r = match &handler.f {
        HandlerFn::Sync(f) => catch_unwind(AssertUnwindSafe(|| f(score, error))),
        HandlerFn::Async(f) => match catch_unwind(AssertUnwindSafe(move || {
            let score = score;
            f(score, error)
        })) {
            Ok(fut) => CatchUnwind::new(fut).await,
            Err(p) => Err(p),
        },
    };
    match r {
        Ok(r) => r,
        Err(p) => Err(format!("the handler panicked: {}", panic_message(p.as_ref())).into()),
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::{BoxError, Cadence, note};

    /// The hot path keeps run futures small (core.mem_per_run): a regression here shows up
    /// as bytes per parked run.
    #[test]
    fn run_futures_stay_small() {
        let c = Cadence::<u64>::new("s")
            .then(
                "a",
                note::from_fn(|n: &mut u64| {
                    Box::pin(async move {
                        *n += 1;
                        Ok::<_, BoxError>(())
                    })
                }),
            )
            .build()
            .unwrap();
        let id = RunId::lazy();
        let tree = crate::clock::RunTree::default();
        let rc = RunCtx {
            inner: &c.inner,
            info: RunInfo {
                run_id: &id,
                root_run_id: &id,
                parent_run_id: None,
                cadence: "s",
                prefix: None,
                token: None,
            },
            tree: &tree,
            upstream: None,
            interest: Interest::NONE,
            epoch: 0,
            ckpt: None,
            flags: None,
        };
        let mut s = 0u64;
        let m = &c.inner.measures[0];
        let MeasureBody::Note(n) = &m.body else {
            unreachable!("a then measure")
        };
        let run = std::mem::size_of_val(&c.run(0));
        let note = std::mem::size_of_val(&rc.exec_note(n, &mut s));
        assert!(run <= 1024, "a run future is {run} bytes");
        assert!(note <= 320, "a note future is {note} bytes");
        assert!(std::mem::size_of::<NoteContext<'_>>() <= 64);
    }
}
