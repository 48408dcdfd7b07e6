//! Hooks: synchronous, cheap observers of every occurrence in a run (HOOK-1…5).
//!
//! A [`Hook<S>`] has one method per occurrence, each with an empty default, so an
//! implementation overrides only what it needs — the shape of `tracing_subscriber::Layer`.
//! Hooks compose: tuples (up to 8), `Vec<H>`, `Option<H>`, `Arc<H>` and `Box<dyn Hook<S>>` are
//! hooks that call their elements left to right.
//!
//! Hooks run inline on the note's path, inside the run's or the note's `tracing` span (HOOK-2).
//! They must be cheap: anything slow (I/O, network) belongs behind an event emitter's queue.
//!
//! A panicking hook is caught per leaf hook, logged at error level with the method name, and
//! counted in [`Cadence::hook_panics`](crate::Cadence::hook_panics); the run goes on, and that
//! hook is not called again for the same occurrence (HOOK-4).
//!
//! ```
//! use cadence_core::{Cadence, Hook, HookContext, note};
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! #[derive(Default)]
//! struct CountNotes(AtomicUsize);
//!
//! impl<S> Hook<S> for CountNotes {
//!     fn on_note_start(&self, _cx: &HookContext<'_>, _path: &str, _attempt: u32, _score: &S) {
//!         self.0.fetch_add(1, Ordering::Relaxed);
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let counter = Arc::new(CountNotes::default());
//! let cadence = Cadence::<u32>::new("count")
//!     .then("one", note::from_fn(|n: &mut u32| Box::pin(async move { *n += 1; Ok::<_, cadence_core::BoxError>(()) })))
//!     .then("two", note::from_fn(|n: &mut u32| Box::pin(async move { *n += 1; Ok::<_, cadence_core::BoxError>(()) })))
//!     .with_hooks(counter.clone())
//!     .build()
//!     .unwrap();
//! assert_eq!(cadence.run(0).await.unwrap(), 2);
//! assert_eq!(counter.0.load(Ordering::Relaxed), 2);
//! # });
//! ```

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::checkpoint::session::RunFlags;
use crate::clock::{RunTree, Stamp};
use crate::error::{CadenceError, panic_message};
use crate::event::Timestamp;
use crate::options::{RunId, RunInfo};
use crate::policy::circuit_breaker::CircuitState;

/// Who and when an occurrence is: passed to every hook method (HOOK-1).
///
/// `seq` numbers the occurrences of one run tree from 0 (EVT-3); every hook and emitter of
/// that occurrence sees the same value.
#[derive(Debug)]
pub struct HookContext<'a> {
    ids: Ids<'a>,
    pub(crate) seq: u64,
    /// [`timestamp`](Self::timestamp) once worked out (a `Cell`: a context is `!Sync` anyway,
    /// and a `OnceCell` costs an out-of-line initialisation per occurrence).
    pub(crate) at: Cell<Option<Timestamp>>,
    /// The run tree (for its wall-clock anchor), when the engine made this context.
    pub(crate) tree: Option<&'a RunTree>,
    /// The engine's reading of tokio's clock at the occurrence, when it made one.
    pub(crate) now: Option<Stamp>,
    /// A key unique to the note of a note occurrence for the life of the process (0 if none):
    /// lets the event emitter find its copy of the path without comparing text.
    pub(crate) key: u64,
}

/// Who the run of an occurrence is: the engine's own record of the run, read when a hook asks
/// (an occurrence costs two words, not eight, and most hooks read only some of them), or
/// given as text.
#[derive(Debug, Clone, Copy)]
enum Ids<'a> {
    Run {
        info: &'a RunInfo<'a>,
        flags: Option<&'a RunFlags>,
    },
    Given {
        run_id: &'a str,
        root_run_id: &'a str,
        parent_run_id: Option<&'a str>,
        cadence: &'a str,
        resumed: bool,
        replayed: bool,
    },
}

impl<'a> Ids<'a> {
    /// As text (for the builder methods, which rewrite what a context made by the engine
    /// would otherwise read from its run).
    fn given(self) -> Ids<'a> {
        match self {
            Ids::Run { info, flags } => Ids::Given {
                run_id: info.run_id.get(),
                root_run_id: info.root_run_id.get(),
                parent_run_id: info.parent_run_id.map(RunId::get),
                cadence: info.cadence,
                resumed: flags.is_some_and(|f| f.resumed.load(Ordering::Relaxed)),
                replayed: flags.is_some_and(|f| f.replayed.load(Ordering::Relaxed)),
            },
            given => given,
        }
    }
}

impl<'a> HookContext<'a> {
    /// A context for tests and for adapters that replay occurrences.
    pub fn new(run_id: &'a str, cadence: &'a str, seq: u64) -> Self {
        HookContext {
            ids: Ids::Given {
                run_id,
                root_run_id: run_id,
                parent_run_id: None,
                cadence,
                resumed: false,
                replayed: false,
            },
            seq,
            at: Cell::new(None),
            tree: None,
            now: None,
            key: 0,
        }
    }

    /// The context of an occurrence of the engine's run `info`, numbered `seq`.
    #[inline(always)]
    pub(crate) fn of_run(
        info: &'a RunInfo<'a>,
        flags: Option<&'a RunFlags>,
        seq: u64,
        tree: &'a RunTree,
        now: Option<Stamp>,
        key: u64,
    ) -> Self {
        HookContext {
            ids: Ids::Run { info, flags },
            seq,
            at: Cell::new(None),
            tree: Some(tree),
            now,
            key,
        }
    }

    /// With the resumed/replayed flags of the run (for adapters replaying occurrences).
    pub fn with_flags(mut self, resumed: bool, replayed: bool) -> Self {
        self.ids = self.ids.given();
        if let Ids::Given {
            resumed: r,
            replayed: p,
            ..
        } = &mut self.ids
        {
            (*r, *p) = (resumed, replayed);
        }
        self
    }

    /// Whether this run resumed from a checkpoint (CKP-5; `cadence.started {resumed}`).
    pub fn resumed(&self) -> bool {
        match self.ids {
            Ids::Run { flags, .. } => flags.is_some_and(|f| f.resumed.load(Ordering::Relaxed)),
            Ids::Given { resumed, .. } => resumed,
        }
    }

    /// Whether this run returned a retained outcome without running (CKP-7).
    pub fn replayed(&self) -> bool {
        match self.ids {
            Ids::Run { flags, .. } => flags.is_some_and(|f| f.replayed.load(Ordering::Relaxed)),
            Ids::Given { replayed, .. } => replayed,
        }
    }

    /// With a parent (for child runs): the root run id and the parent run id.
    pub fn with_parent(mut self, root_run_id: &'a str, parent_run_id: &'a str) -> Self {
        self.ids = self.ids.given();
        if let Ids::Given {
            root_run_id: root,
            parent_run_id: parent,
            ..
        } = &mut self.ids
        {
            *root = root_run_id;
            *parent = Some(parent_run_id);
        }
        self
    }

    /// The id of the run this occurrence belongs to (`<parent>/<measure>` for child runs).
    pub fn run_id(&self) -> &'a str {
        match self.ids {
            Ids::Run { info, .. } => info.run_id.get(),
            Ids::Given { run_id, .. } => run_id,
        }
    }

    /// The id of the outermost run of this run tree.
    pub fn root_run_id(&self) -> &'a str {
        match self.ids {
            Ids::Run { info, .. } => info.root_run_id.get(),
            Ids::Given { root_run_id, .. } => root_run_id,
        }
    }

    /// The parent run's id, for child runs.
    pub fn parent_run_id(&self) -> Option<&'a str> {
        match self.ids {
            Ids::Run { info, .. } => info.parent_run_id.map(RunId::get),
            Ids::Given { parent_run_id, .. } => parent_run_id,
        }
    }

    /// The name of the cadence the occurrence happened in (the child's name for child runs).
    pub fn cadence(&self) -> &'a str {
        match self.ids {
            Ids::Run { info, .. } => info.cadence,
            Ids::Given { cadence, .. } => cadence,
        }
    }

    /// The occurrence's sequence number within the run tree (EVT-3).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The run tree's serial when `run_id` is its root run's id (so the id is recognised
    /// without comparing text), else 0.
    #[inline]
    pub(crate) fn run_serial(&self) -> u64 {
        // Only the engine's contexts have a run tree and know that their run is its root (a
        // context whose ids were rewritten with `with_parent` or `with_flags` is `Given`).
        match (self.tree, self.ids) {
            (Some(tree), Ids::Run { info, .. }) if info.parent_run_id.is_none() => tree.serial(),
            _ => 0,
        }
    }

    /// The note this occurrence is about, on [`Hook::on_note_start`] and [`Hook::on_note_end`]
    /// (`None` on other methods and on contexts made with [`HookContext::new`]).
    ///
    /// A [`NoteId`] names one note of one built cadence for the life of the process, so a hook
    /// can keep per-note state (a metric handle, a path copy) in a table keyed by it, without
    /// hashing or comparing the path; the same note always comes with the same cadence name
    /// and path.
    ///
    /// ```
    /// # use cadence_core::HookContext;
    /// assert_eq!(HookContext::new("r1", "checkout", 0).note_id(), None);
    /// ```
    pub fn note_id(&self) -> Option<NoteId> {
        std::num::NonZeroU64::new(self.key).map(NoteId)
    }

    /// Wall-clock time (UTC) of the occurrence, to the microsecond: worked out on first use
    /// and then shared by every hook of the occurrence.
    ///
    /// In a run, this is the wall-clock time at which the run tree began plus the time elapsed
    /// since on tokio's clock, from the engine's own reading when it measured a duration (so
    /// it costs no clock read of its own). Times of one run tree therefore never go backwards
    /// and are spaced exactly as the durations say — `at` of a `note_end` minus `at` of its
    /// `note_start` is the note's duration — and on paused tokio time they advance with the
    /// paused clock. A context made with [`HookContext::new`] reads the wall clock.
    ///
    /// ```
    /// # use cadence_core::HookContext;
    /// let cx = HookContext::new("r1", "checkout", 0);
    /// assert_eq!(cx.at(), cx.at());
    /// ```
    #[inline]
    pub fn at(&self) -> SystemTime {
        self.timestamp().to_system_time()
    }

    /// [`at`](Self::at) as a [`Timestamp`] (what events carry: one addition to the run's
    /// anchor, no `SystemTime` arithmetic).
    ///
    /// ```
    /// # use cadence_core::HookContext;
    /// let cx = HookContext::new("r1", "checkout", 0);
    /// assert_eq!(cx.timestamp().to_system_time(), cx.at());
    /// ```
    #[inline]
    pub fn timestamp(&self) -> Timestamp {
        if let Some(at) = self.at.get() {
            return at;
        }
        let at = match self.tree {
            Some(tree) => Timestamp::from_unix_micros(tree.wall_micros(self.now)),
            None => Timestamp::now(),
        };
        self.at.set(Some(at));
        at
    }
}

/// One note of one built cadence, unique for the life of the process: see
/// [`HookContext::note_id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NoteId(std::num::NonZeroU64);

impl NoteId {
    /// The id as a number (never 0; ids of one cadence's notes are consecutive).
    pub fn get(self) -> u64 {
        self.0.get()
    }
}

/// The kind of a measure (what diagrams, events and checkpoints call it).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureKind {
    /// One note, from `then`.
    Note,
    /// Notes in order, from `sequence`.
    Sequence,
    /// A parallel group, from `sync`/`sync_with`.
    Sync,
    /// An if/else, from `split`.
    Split,
    /// An n-way branch, from `route`/`route_or`.
    Route,
    /// A child cadence, from `child`.
    Child,
}

impl MeasureKind {
    /// The stable name (`note`, `sequence`, `sync`, `split`, `route`, `child`).
    pub fn as_str(self) -> &'static str {
        match self {
            MeasureKind::Note => "note",
            MeasureKind::Sequence => "sequence",
            MeasureKind::Sync => "sync",
            MeasureKind::Split => "split",
            MeasureKind::Route => "route",
            MeasureKind::Child => "child",
        }
    }
}

/// How a run ended, as hooks see it (RUN-4).
#[non_exhaustive]
#[derive(Debug, Clone, Copy)]
pub enum RunOutcome<'a> {
    /// Every measure succeeded.
    Succeeded,
    /// Some measures failed and an `OnError::Continue` handler absorbed them.
    Partial {
        /// Paths of the failed measures, relative to the cadence (GEN-2).
        failed_measures: &'a [String],
    },
    /// A note stopped the run (RUN-8).
    Stopped {
        /// Path of the stopping note, relative to the cadence (GEN-2).
        path: &'a str,
        /// The reason given, if any.
        reason: Option<&'a str>,
    },
    /// The run failed with this error.
    Failed(&'a CadenceError),
    /// The run was cancelled (token fired or future dropped).
    Cancelled,
}

impl RunOutcome<'_> {
    /// The plain outcome.
    pub fn kind(&self) -> Outcome {
        match self {
            RunOutcome::Succeeded => Outcome::Succeeded,
            RunOutcome::Partial { .. } => Outcome::Partial,
            RunOutcome::Stopped { .. } => Outcome::Stopped,
            RunOutcome::Failed(_) => Outcome::Failed,
            RunOutcome::Cancelled => Outcome::Cancelled,
        }
    }
}

/// How a run ended, without details (RUN-4). Reported in [`RunReport`](crate::RunReport).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every measure succeeded (`run` returns `Ok`).
    Succeeded,
    /// At least one failure was absorbed by `OnError::Continue` (`Ok`).
    Partial,
    /// A note stopped the run (`Ok`).
    Stopped,
    /// The run failed (`Err`).
    Failed,
    /// The run was cancelled (`Err(Cancelled)`, or the future was dropped).
    Cancelled,
}

impl Outcome {
    /// `succeeded`, `partial`, `stopped`, `failed` or `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Partial => "partial",
            Outcome::Stopped => "stopped",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// How a measure ended.
#[non_exhaustive]
#[derive(Debug, Clone, Copy)]
pub enum MeasureOutcome<'a> {
    /// It completed.
    Succeeded,
    /// A note inside it stopped the run.
    Stopped,
    /// It failed.
    Failed(&'a CadenceError),
    /// It was cancelled.
    Cancelled,
}

/// How one attempt of a note ended (HOOK-1).
#[non_exhaustive]
#[derive(Debug, Clone, Copy)]
pub enum NoteOutcome<'a> {
    /// It succeeded.
    Succeeded,
    /// It returned `Control::Stop`.
    Stopped,
    /// It failed and will be retried.
    WillRetry(&'a CadenceError),
    /// It failed for good (after retries, before fallback).
    Failed(&'a CadenceError),
    /// It was cancelled (timeout is reported as a failure; this is run cancellation, a sibling's
    /// failure, or a dropped run future).
    Cancelled,
}

/// Why a measure or note was skipped.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A checkpoint records it as completed (CKP-5).
    Checkpoint,
}

/// A W3C trace context (`traceparent` and optional `tracestate`), carried by runs and stored in
/// checkpoints (OTEL-3).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct TraceContext {
    /// The `traceparent` header value.
    pub traceparent: String,
    /// The `tracestate` header value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// A context from a `traceparent` value.
    pub fn new(traceparent: impl Into<String>) -> Self {
        TraceContext {
            traceparent: traceparent.into(),
            tracestate: None,
        }
    }

    /// With a `tracestate` value.
    pub fn with_tracestate(mut self, tracestate: impl Into<String>) -> Self {
        self.tracestate = Some(tracestate.into());
        self
    }
}

/// One method of [`Hook`], for [`Interest`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookMethod {
    /// [`Hook::on_cadence_start`].
    CadenceStart,
    /// [`Hook::on_cadence_end`].
    CadenceEnd,
    /// [`Hook::on_measure_start`].
    MeasureStart,
    /// [`Hook::on_measure_end`].
    MeasureEnd,
    /// [`Hook::on_note_start`].
    NoteStart,
    /// [`Hook::on_note_end`].
    NoteEnd,
    /// [`Hook::on_retry`].
    Retry,
    /// [`Hook::on_timeout`].
    Timeout,
    /// [`Hook::on_fallback`].
    Fallback,
    /// [`Hook::on_circuit_state_change`].
    CircuitStateChange,
    /// [`Hook::on_checkpoint_loaded`].
    CheckpointLoaded,
    /// [`Hook::on_checkpoint_saved`].
    CheckpointSaved,
    /// [`Hook::on_checkpoint_error`].
    CheckpointError,
    /// [`Hook::on_note_skipped`].
    NoteSkipped,
    /// [`Hook::on_branch_taken`].
    BranchTaken,
}

/// Which [`Hook`] methods a hook wants called, in the spirit of `tracing`'s `Interest`.
///
/// The engine asks a cadence's hooks for their interest when the cadence is built and caches
/// the answer; it skips every occurrence that no hook of the run tree wants before building
/// its context (so such an occurrence also takes no [`seq`](HookContext::seq) number). The
/// default is [`Interest::ALL`]; a hook that implements few methods can say so and make every
/// run cheaper.
///
/// A hook whose interest changes over time (the [`EventEmitter`](crate::EventEmitter) wants
/// what its listeners want) calls [`rebuild_interest_cache`] after each change, like
/// `tracing_core::callsite::rebuild_interest_cache`: every cadence asks its hooks again, runs
/// in flight at their next occurrence. One exception keeps runs that nothing observes free:
/// a run whose hooks wanted nothing at all when it started stays unobserved to its end.
///
/// ```
/// use cadence_core::hook::{Hook, HookContext, HookMethod, Interest, NoteOutcome};
/// use std::time::Duration;
///
/// struct SlowNotes;
///
/// impl<S> Hook<S> for SlowNotes {
///     fn on_note_end(
///         &self,
///         cx: &HookContext<'_>,
///         path: &str,
///         _attempt: u32,
///         took: Duration,
///         _outcome: &NoteOutcome<'_>,
///         _score: &S,
///     ) {
///         if took > Duration::from_secs(1) {
///             eprintln!("{}/{path} took {took:?}", cx.cadence());
///         }
///     }
///
///     fn interest(&self) -> Interest {
///         Interest::NONE.with(HookMethod::NoteEnd)
///     }
/// }
///
/// let i = <SlowNotes as Hook<()>>::interest(&SlowNotes);
/// assert!(i.contains(HookMethod::NoteEnd) && !i.contains(HookMethod::NoteStart));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interest(u32);

impl Interest {
    /// Every method.
    pub const ALL: Interest = Interest(u32::MAX);
    /// No method.
    pub const NONE: Interest = Interest(0);

    const fn bit(m: HookMethod) -> u32 {
        1 << (m as u32)
    }

    /// This interest and `m`.
    #[must_use]
    pub const fn with(self, m: HookMethod) -> Self {
        Interest(self.0 | Self::bit(m))
    }

    /// This interest without `m`.
    #[must_use]
    pub const fn without(self, m: HookMethod) -> Self {
        Interest(self.0 & !Self::bit(m))
    }

    /// Both interests.
    #[must_use]
    pub const fn union(self, other: Interest) -> Self {
        Interest(self.0 | other.0)
    }

    /// Whether `m` is wanted.
    #[inline]
    pub const fn contains(self, m: HookMethod) -> bool {
        self.0 & Self::bit(m) != 0
    }
}

impl Default for Interest {
    /// [`Interest::ALL`].
    fn default() -> Self {
        Interest::ALL
    }
}

/// An observer of runs (HOOK-1). Every method defaults to doing nothing.
///
/// Methods are synchronous and take borrowed arguments; they run inline, so keep them cheap
/// (HOOK-2). `score` on a parallel member's occurrence is that member's clone. For occurrences
/// inside a child cadence, the parent's hooks are called first with the *parent's* score
/// (the only score of their type), then the child's own hooks with the child's score (CHILD-3).
#[allow(unused_variables)]
pub trait Hook<S>: Send + Sync {
    /// A run started (after run-id validation, before any checkpoint is loaded).
    fn on_cadence_start(&self, cx: &HookContext<'_>, score: &S) {}
    /// A run ended. Called exactly once per started run (RUN-5).
    fn on_cadence_end(
        &self,
        cx: &HookContext<'_>,
        score: &S,
        duration: Duration,
        outcome: &RunOutcome<'_>,
    ) {
    }
    /// A top-level measure started.
    fn on_measure_start(&self, cx: &HookContext<'_>, path: &str, kind: MeasureKind) {}
    /// A top-level measure ended.
    fn on_measure_end(
        &self,
        cx: &HookContext<'_>,
        path: &str,
        duration: Duration,
        outcome: &MeasureOutcome<'_>,
    ) {
    }
    /// An attempt of a note started.
    fn on_note_start(&self, cx: &HookContext<'_>, path: &str, attempt: u32, score: &S) {}
    /// An attempt of a note ended.
    fn on_note_end(
        &self,
        cx: &HookContext<'_>,
        path: &str,
        attempt: u32,
        duration: Duration,
        outcome: &NoteOutcome<'_>,
        score: &S,
    ) {
    }
    /// A failed attempt will be retried after `delay` (RET-9).
    fn on_retry(
        &self,
        cx: &HookContext<'_>,
        path: &str,
        attempt: u32,
        delay: Duration,
        error: &CadenceError,
    ) {
    }
    /// An attempt hit its per-attempt timeout (TMO-1).
    fn on_timeout(&self, cx: &HookContext<'_>, path: &str, attempt: u32, after: Duration) {}
    /// A fallback is about to act for a failed note (FB-3).
    fn on_fallback(&self, cx: &HookContext<'_>, path: &str, error: &CadenceError) {}
    /// A circuit breaker changed state because of this run's call (CB-6).
    fn on_circuit_state_change(
        &self,
        cx: &HookContext<'_>,
        circuit: &str,
        from: CircuitState,
        to: CircuitState,
    ) {
    }
    /// A checkpoint was loaded; `completed` measures will be skipped (CKP-5).
    fn on_checkpoint_loaded(&self, cx: &HookContext<'_>, completed: usize, forced: bool) {}
    /// A checkpoint was saved after `path` completed.
    fn on_checkpoint_saved(&self, cx: &HookContext<'_>, path: &str, completed: usize) {}
    /// A checkpoint save failed and the run goes on (`on_checkpoint_error(Continue)`).
    fn on_checkpoint_error(&self, cx: &HookContext<'_>, error: &CadenceError) {}
    /// A measure or member was skipped.
    fn on_note_skipped(&self, cx: &HookContext<'_>, path: &str, reason: SkipReason) {}
    /// A split or route chose a branch (`true`/`false`, a route key, or `*`) for `key`.
    fn on_branch_taken(&self, cx: &HookContext<'_>, path: &str, branch: &str, key: &str) {}
    /// The trace context to store in checkpoints; the first hook returning one wins.
    fn trace_context(&self) -> Option<TraceContext> {
        None
    }
    /// Which methods this hook wants called (default: all). Read when a cadence is built with
    /// this hook and again after [`rebuild_interest_cache`]; see [`Interest`].
    fn interest(&self) -> Interest {
        Interest::ALL
    }
}

/// Bumped by [`rebuild_interest_cache`]; caches of [`Interest`] hold the value they were read at.
static INTEREST_EPOCH: AtomicU32 = AtomicU32::new(0);

/// Tells every cadence that the [`Interest`] of some hook changed: each asks its hooks again
/// before its next run, and runs in flight do at their next occurrence that the old interest
/// skipped. Cheap enough to call on every change of a hook's interest (one atomic add); never
/// needed for hooks whose interest is fixed.
///
/// ```
/// use cadence_core::{Cadence, EventEmitter, hook};
/// // EventEmitter::on and off call it for you.
/// hook::rebuild_interest_cache();
/// ```
pub fn rebuild_interest_cache() {
    INTEREST_EPOCH.fetch_add(1, Ordering::Release);
}

/// The current interest epoch.
#[inline]
pub(crate) fn interest_epoch() -> u32 {
    INTEREST_EPOCH.load(Ordering::Acquire)
}

/// A cadence's cached union of its hooks' interests, with the epoch it was read at.
#[derive(Debug, Default)]
pub(crate) struct InterestCache(AtomicU64);

impl InterestCache {
    /// The cached interest, if it is of `epoch`.
    #[inline]
    pub(crate) fn get(&self, epoch: u32) -> Option<Interest> {
        let v = self.0.load(Ordering::Relaxed);
        ((v >> 32) as u32 == epoch).then_some(Interest(v as u32))
    }

    pub(crate) fn set(&self, epoch: u32, interest: Interest) {
        self.0.store(
            u64::from(epoch) << 32 | u64::from(interest.0),
            Ordering::Relaxed,
        );
    }
}

/// The union of `hooks`' interests, isolating panics: a panicking `interest` is asked for
/// everything (HOOK-4). Returns the interest and the number of panics.
pub(crate) fn interest_of<S>(hooks: &[Box<dyn Hook<S>>]) -> (Interest, u64) {
    let mut panics = 0;
    let interest = hooks.iter().fold(Interest::NONE, |all, h| {
        let mut i = Interest::ALL;
        panics += isolate("interest", || i = h.interest());
        all.union(i)
    });
    (interest, panics)
}

/// The panic payload combinators re-raise after isolating their elements: how many leaf hooks
/// panicked (already logged), so the engine counts each exactly once.
struct LeafPanics(u64);

/// Calls `f`, isolating a panic: logs it and returns how many leaf hooks panicked.
#[inline]
pub(crate) fn isolate(method: &'static str, f: impl FnOnce()) -> u64 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => 0,
        Err(payload) => {
            if let Some(LeafPanics(n)) = payload.downcast_ref::<LeafPanics>() {
                *n
            } else {
                tracing::error!(
                    target: "cadence",
                    method,
                    "a hook panicked: {}; the run goes on without it for this occurrence",
                    panic_message(payload.as_ref())
                );
                1
            }
        }
    }
}

/// Finishes a combinator call: re-raises the count of panicked elements to the caller.
#[inline]
fn reraise(n: u64) {
    if n > 0 {
        resume_unwind(Box::new(LeafPanics(n)));
    }
}

macro_rules! forward_hook_methods {
    (|$this:ident, $h:ident| $each:expr) => {
        fn on_cadence_start(&self, cx: &HookContext<'_>, score: &S) {
            let $this = self;
            let mut n = 0;
            $each(&mut |$h: &dyn Hook<S>| {
                n += isolate("on_cadence_start", || $h.on_cadence_start(cx, score))
            });
            reraise(n);
        }
        fn on_cadence_end(&self, cx: &HookContext<'_>, score: &S, d: Duration, o: &RunOutcome<'_>) {
            let $this = self;
            let mut n = 0;
            $each(&mut |$h: &dyn Hook<S>| {
                n += isolate("on_cadence_end", || $h.on_cadence_end(cx, score, d, o))
            });
            reraise(n);
        }
        fn on_measure_start(&self, cx: &HookContext<'_>, path: &str, kind: MeasureKind) {
            let $this = self;
            let mut n = 0;
            $each(&mut |$h: &dyn Hook<S>| {
                n += isolate("on_measure_start", || $h.on_measure_start(cx, path, kind))
            });
            reraise(n);
        }
        fn on_measure_end(
            &self,
            cx: &HookContext<'_>,
            path: &str,
            d: Duration,
            o: &MeasureOutcome<'_>,
        ) {
            let $this = self;
            let mut n = 0;
            $each(&mut |$h: &dyn Hook<S>| {
                n += isolate("on_measure_end", || $h.on_measure_end(cx, path, d, o))
            });
            reraise(n);
        }
        fn on_note_start(&self, cx: &HookContext<'_>, path: &str, attempt: u32, score: &S) {
            let $this = self;
            let mut n = 0;
            $each(&mut |$h: &dyn Hook<S>| {
                n += isolate("on_note_start", || {
                    $h.on_note_start(cx, path, attempt, score)
                })
            });
            reraise(n);
        }
        fn on_note_end(
            &self,
            cx: &HookContext<'_>,
            path: &str,
            attempt: u32,
            d: Duration,
            o: &NoteOutcome<'_>,
            score: &S,
        ) {
            let $this = self;
            let mut n = 0;
            $each(&mut |$h: &dyn Hook<S>| {
                n += isolate("on_note_end", || {
                    $h.on_note_end(cx, path, attempt, d, o, score)
                })
            });
            reraise(n);
        }
        fn on_retry(
            &self,
            cx: &HookContext<'_>,
            path: &str,
            attempt: u32,
            delay: Duration,
            e: &CadenceError,
        ) {
            let $this = self;
            let mut n = 0;
            $each(&mut |$h: &dyn Hook<S>| {
                n += isolate("on_retry", || $h.on_retry(cx, path, attempt, delay, e))
            });
            reraise(n);
        }
        fn on_timeout(&self, cx: &HookContext<'_>, path: &str, attempt: u32, after: Duration) {
            let $this = self;
            let mut n = 0;
            $each(&mut |$h: &dyn Hook<S>| {
                n += isolate("on_timeout", || $h.on_timeout(cx, path, attempt, after))
            });
            reraise(n);
        }
        fn on_fallback(&self, cx: &HookContext<'_>, path: &str, e: &CadenceError) {
            let $this = self;
            let mut n = 0;
            $each(&mut |$h: &dyn Hook<S>| {
                n += isolate("on_fallback", || $h.on_fallback(cx, path, e))
            });
            reraise(n);
        }
        fn on_circuit_state_change(
            &self,
            cx: &HookContext<'_>,
            circuit: &str,
            from: CircuitState,
            to: CircuitState,
        ) {
            let $this = self;
            let mut n = 0;
            $each(&mut |$h: &dyn Hook<S>| {
                n += isolate("on_circuit_state_change", || {
                    $h.on_circuit_state_change(cx, circuit, from, to)
                })
            });
            reraise(n);
        }
        fn on_checkpoint_loaded(&self, cx: &HookContext<'_>, completed: usize, forced: bool) {
            let $this = self;
            let mut n = 0;
            $each(&mut |$h: &dyn Hook<S>| {
                n += isolate("on_checkpoint_loaded", || {
                    $h.on_checkpoint_loaded(cx, completed, forced)
                })
            });
            reraise(n);
        }
        fn on_checkpoint_saved(&self, cx: &HookContext<'_>, path: &str, completed: usize) {
            let $this = self;
            let mut n = 0;
            $each(&mut |$h: &dyn Hook<S>| {
                n += isolate("on_checkpoint_saved", || {
                    $h.on_checkpoint_saved(cx, path, completed)
                })
            });
            reraise(n);
        }
        fn on_checkpoint_error(&self, cx: &HookContext<'_>, e: &CadenceError) {
            let $this = self;
            let mut n = 0;
            $each(&mut |$h: &dyn Hook<S>| {
                n += isolate("on_checkpoint_error", || $h.on_checkpoint_error(cx, e))
            });
            reraise(n);
        }
        fn on_note_skipped(&self, cx: &HookContext<'_>, path: &str, reason: SkipReason) {
            let $this = self;
            let mut n = 0;
            $each(&mut |$h: &dyn Hook<S>| {
                n += isolate("on_note_skipped", || $h.on_note_skipped(cx, path, reason))
            });
            reraise(n);
        }
        fn on_branch_taken(&self, cx: &HookContext<'_>, path: &str, branch: &str, key: &str) {
            let $this = self;
            let mut n = 0;
            $each(&mut |$h: &dyn Hook<S>| {
                n += isolate("on_branch_taken", || {
                    $h.on_branch_taken(cx, path, branch, key)
                })
            });
            reraise(n);
        }
        fn interest(&self) -> Interest {
            let $this = self;
            let mut all = Interest::NONE;
            $each(&mut |$h: &dyn Hook<S>| all = all.union($h.interest()));
            all
        }
        fn trace_context(&self) -> Option<TraceContext> {
            let $this = self;
            let mut found = None;
            $each(&mut |$h: &dyn Hook<S>| {
                if found.is_none() {
                    let _ = isolate("trace_context", || found = $h.trace_context());
                }
            });
            found
        }
    };
}

impl<S, H: Hook<S>> Hook<S> for Vec<H> {
    forward_hook_methods!(|this, h| |f: &mut dyn FnMut(&dyn Hook<S>)| {
        for h in this.iter() {
            f(h)
        }
    });
}

impl<S, H: Hook<S>> Hook<S> for Option<H> {
    forward_hook_methods!(|this, h| |f: &mut dyn FnMut(&dyn Hook<S>)| {
        if let Some(h) = this {
            f(h)
        }
    });
}

impl<S, H: Hook<S> + ?Sized> Hook<S> for Arc<H> {
    forward_hook_methods!(|this, h| |f: &mut dyn FnMut(&dyn Hook<S>)| f(&Forward(&**this)));
}

impl<S, H: Hook<S> + ?Sized> Hook<S> for Box<H> {
    forward_hook_methods!(|this, h| |f: &mut dyn FnMut(&dyn Hook<S>)| f(&Forward(&**this)));
}

/// Adapts `&H` (possibly unsized) to `&dyn Hook<S>` for the pointer impls.
struct Forward<'a, H: ?Sized>(&'a H);

impl<S, H: Hook<S> + ?Sized> Hook<S> for Forward<'_, H> {
    fn on_cadence_start(&self, cx: &HookContext<'_>, score: &S) {
        self.0.on_cadence_start(cx, score)
    }
    fn on_cadence_end(&self, cx: &HookContext<'_>, s: &S, d: Duration, o: &RunOutcome<'_>) {
        self.0.on_cadence_end(cx, s, d, o)
    }
    fn on_measure_start(&self, cx: &HookContext<'_>, path: &str, kind: MeasureKind) {
        self.0.on_measure_start(cx, path, kind)
    }
    fn on_measure_end(&self, cx: &HookContext<'_>, p: &str, d: Duration, o: &MeasureOutcome<'_>) {
        self.0.on_measure_end(cx, p, d, o)
    }
    fn on_note_start(&self, cx: &HookContext<'_>, path: &str, attempt: u32, score: &S) {
        self.0.on_note_start(cx, path, attempt, score)
    }
    fn on_note_end(
        &self,
        cx: &HookContext<'_>,
        p: &str,
        a: u32,
        d: Duration,
        o: &NoteOutcome<'_>,
        s: &S,
    ) {
        self.0.on_note_end(cx, p, a, d, o, s)
    }
    fn on_retry(&self, cx: &HookContext<'_>, p: &str, a: u32, d: Duration, e: &CadenceError) {
        self.0.on_retry(cx, p, a, d, e)
    }
    fn on_timeout(&self, cx: &HookContext<'_>, path: &str, attempt: u32, after: Duration) {
        self.0.on_timeout(cx, path, attempt, after)
    }
    fn on_fallback(&self, cx: &HookContext<'_>, path: &str, e: &CadenceError) {
        self.0.on_fallback(cx, path, e)
    }
    fn on_circuit_state_change(
        &self,
        cx: &HookContext<'_>,
        c: &str,
        from: CircuitState,
        to: CircuitState,
    ) {
        self.0.on_circuit_state_change(cx, c, from, to)
    }
    fn on_checkpoint_loaded(&self, cx: &HookContext<'_>, completed: usize, forced: bool) {
        self.0.on_checkpoint_loaded(cx, completed, forced)
    }
    fn on_checkpoint_saved(&self, cx: &HookContext<'_>, path: &str, completed: usize) {
        self.0.on_checkpoint_saved(cx, path, completed)
    }
    fn on_checkpoint_error(&self, cx: &HookContext<'_>, e: &CadenceError) {
        self.0.on_checkpoint_error(cx, e)
    }
    fn on_note_skipped(&self, cx: &HookContext<'_>, path: &str, reason: SkipReason) {
        self.0.on_note_skipped(cx, path, reason)
    }
    fn on_branch_taken(&self, cx: &HookContext<'_>, path: &str, branch: &str, key: &str) {
        self.0.on_branch_taken(cx, path, branch, key)
    }
    fn trace_context(&self) -> Option<TraceContext> {
        self.0.trace_context()
    }
    fn interest(&self) -> Interest {
        self.0.interest()
    }
}

macro_rules! tuple_hook {
    ($($name:ident $idx:tt),+) => {
        impl<S, $($name: Hook<S>),+> Hook<S> for ($($name,)+) {
            forward_hook_methods!(|this, h| |f: &mut dyn FnMut(&dyn Hook<S>)| {
                $( f(&this.$idx); )+
            });
        }
    };
}

tuple_hook!(A 0);
tuple_hook!(A 0, B 1);
tuple_hook!(A 0, B 1, C 2);
tuple_hook!(A 0, B 1, C 2, D 3);
tuple_hook!(A 0, B 1, C 2, D 3, E 4);
tuple_hook!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_hook!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_hook!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

/// A hook that does nothing; `()` works too.
impl<S> Hook<S> for () {
    fn interest(&self) -> Interest {
        Interest::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_methods_rewrite_what_an_engine_context_reads_from_its_run() {
        // HOOK-1: an engine context reads who its run is from the run; `with_flags` and
        // `with_parent` (for adapters replaying occurrences) override it, on any context.
        let (id, root) = (RunId::given("r1".into()), RunId::given("r1".into()));
        let info = RunInfo {
            run_id: &id,
            root_run_id: &root,
            parent_run_id: None,
            cadence: "checkout",
            prefix: None,
            token: None,
        };
        let tree = RunTree::default();
        let engine = || HookContext::of_run(&info, None, 3, &tree, None, 0);
        let cx = engine();
        assert_eq!((cx.run_id(), cx.cadence(), cx.seq()), ("r1", "checkout", 3));
        assert_eq!(cx.parent_run_id(), None);
        assert!(!cx.resumed() && !cx.replayed());
        assert_ne!(cx.run_serial(), 0, "the root run of its tree");

        let cx = engine().with_flags(true, true);
        assert!(cx.resumed() && cx.replayed());
        assert_eq!((cx.run_id(), cx.cadence()), ("r1", "checkout"));

        let cx = engine().with_parent("root", "parent");
        assert_eq!(cx.root_run_id(), "root");
        assert_eq!(cx.parent_run_id(), Some("parent"));
        assert_eq!(cx.run_serial(), 0, "no longer a root run");
    }
}
