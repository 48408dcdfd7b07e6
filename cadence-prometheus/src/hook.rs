//! [`PrometheusHook`]: the [`Hook`] that records runs, notes, retries, fallbacks and circuit
//! states (PROM-2…4).

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cadence_core::circuit_breaker::CircuitState;
use cadence_core::{
    CadenceError, Hook, HookContext, HookMethod, Interest, NoteOutcome, RunOutcome,
};
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use crate::builder::PrometheusHookBuilder;
use crate::cache::Table;
use crate::histogram::{DurationFamily, Series};

/// `outcome` label values of `cadence_runs_total`, indexed by [`run_outcome`].
const RUN_OUTCOMES: [&str; 5] = ["success", "partial", "stopped", "failure", "cancelled"];

/// `outcome` label values of `cadence_note_duration_seconds`, indexed by [`note_outcome`].
const NOTE_OUTCOMES: [&str; 5] = ["success", "failure", "retry", "stopped", "cancelled"];

/// The metric families, as registered by the builder.
pub(crate) struct Families {
    pub(crate) runs: IntCounterVec,
    pub(crate) run_duration: HistogramVec,
    pub(crate) in_flight: IntGaugeVec,
    /// Observed on every note attempt: a family of its own (see [`crate::histogram`]).
    pub(crate) note_duration: Arc<DurationFamily>,
    pub(crate) retries: IntCounterVec,
    pub(crate) fallbacks: IntCounterVec,
    pub(crate) circuit_state: IntGaugeVec,
}

/// A [`Hook`] recording cadence runs into Prometheus metrics (PROM-1…5).
///
/// Build it with [`PrometheusHook::builder`], attach it (or clones of it: they share the same
/// metrics) with [`with_hooks`](cadence_core::CadenceBuilder::with_hooks) to the cadences you
/// run, and serve [`MetricsHandle::render`](crate::MetricsHandle::render). It is a hook for
/// every score type. See the [crate docs](crate) for the metrics and their labels.
///
/// ```
/// use std::time::Duration;
/// use cadence_core::retry::{Backoff, Jitter, Retry};
/// use cadence_core::{BoxError, Cadence, note};
/// use cadence_prometheus::PrometheusHook;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let (hook, metrics) = PrometheusHook::builder().build()?;
///
/// // A payment child cadence whose note fails once, then succeeds.
/// let payment = Cadence::<u32>::new("payment")
///     .then(
///         "charge",
///         note::from_fn(|tries: &mut u32| Box::pin(async move {
///             *tries += 1;
///             if *tries == 1 { Err::<(), BoxError>("card network busy".into()) } else { Ok(()) }
///         }))
///         .with_retry(Retry::new(3).with_backoff(Backoff::fixed(Duration::ZERO)).with_jitter(Jitter::None)),
///     )
///     .build()?;
/// let checkout = Cadence::<u32>::new("checkout")
///     .child("pay", payment, |_: &u32| 0, |n: &mut u32, tries: u32| *n = tries)
///     .with_hooks(hook) // attached once, at the root: it sees the child run too
///     .build()?;
/// assert_eq!(checkout.run(0).await?, 2);
///
/// let text = metrics.render();
/// // Child runs count under the child's name, notes by their path in their own cadence.
/// assert!(text.contains(r#"cadence_runs_total{cadence="checkout",outcome="success"} 1"#));
/// assert!(text.contains(r#"cadence_runs_total{cadence="payment",outcome="success"} 1"#));
/// assert!(text.contains(r#"cadence_note_retries_total{cadence="payment",note="charge"} 1"#));
/// assert!(text.contains(
///     r#"cadence_note_duration_seconds_count{cadence="payment",note="charge",outcome="retry"} 1"#
/// ));
/// assert!(text.contains(r#"cadence_runs_in_flight{cadence="payment"} 0"#));
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct PrometheusHook {
    inner: Arc<Inner>,
}

impl fmt::Debug for PrometheusHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusHook")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

struct Inner {
    families: Families,
    /// Per cadence: run counters, duration and in-flight gauge.
    cadences: Table<CadenceEntry>,
    /// Per (cadence, note path): attempt durations, retries, fallbacks.
    notes: Table<NoteEntry>,
    /// Distinguishes hooks in the per-thread duplicate filter ([`Inner::first_delivery`]).
    id: usize,
}

/// Hands out [`Inner::id`]s.
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

impl PrometheusHook {
    /// A builder: registry, buckets, emitters (PROM-1, PROM-5).
    pub fn builder() -> PrometheusHookBuilder {
        PrometheusHookBuilder::new()
    }

    pub(crate) fn new(families: Families) -> Self {
        PrometheusHook {
            inner: Arc::new(Inner {
                families,
                cadences: Table::default(),
                notes: Table::default(),
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            }),
        }
    }
}

/// Label-resolved handles of one cadence.
struct CadenceEntry {
    /// `cadence_runs_total`, by [`RUN_OUTCOMES`]; all five exist from the first sight on.
    runs: [IntCounter; 5],
    duration: Histogram,
    in_flight: IntGauge,
    /// Runs this hook saw start and not yet end: the gauge never goes below it (PROM-4).
    live: AtomicU64,
}

impl CadenceEntry {
    fn new(f: &Families, cadence: &str) -> Self {
        CadenceEntry {
            runs: RUN_OUTCOMES.map(|o| f.runs.with_label_values(&[cadence, o])),
            duration: f.run_duration.with_label_values(&[cadence]),
            in_flight: f.in_flight.with_label_values(&[cadence]),
            live: AtomicU64::new(0),
        }
    }

    fn start(&self) {
        self.live.fetch_add(1, Ordering::Relaxed);
        self.in_flight.inc();
    }

    fn end(&self, duration: Duration, outcome: Option<usize>) {
        // Decrement only for a run this hook saw start (PROM-4).
        if self
            .live
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            self.in_flight.dec();
        }
        if let Some(i) = outcome {
            self.runs[i].inc();
        }
        self.duration.observe(duration.as_secs_f64());
    }
}

/// Label-resolved handles of one note of one cadence; the series of an outcome, the retry
/// and fallback counters are created when they first happen.
#[derive(Default)]
struct NoteEntry {
    durations: [OnceLock<Series>; 5],
    retries: OnceLock<IntCounter>,
    fallbacks: OnceLock<IntCounter>,
}

/// The index of a run outcome in [`RUN_OUTCOMES`]; `None` for kinds added to cadence-core
/// after this version (not counted in `cadence_runs_total`, but still ending the run).
fn run_outcome(outcome: &RunOutcome<'_>) -> Option<usize> {
    match outcome {
        RunOutcome::Succeeded => Some(0),
        RunOutcome::Partial { .. } => Some(1),
        RunOutcome::Stopped { .. } => Some(2),
        RunOutcome::Failed(_) => Some(3),
        RunOutcome::Cancelled => Some(4),
        _ => None,
    }
}

/// The index of a note outcome in [`NOTE_OUTCOMES`]; `None` for kinds added later.
fn note_outcome(outcome: &NoteOutcome<'_>) -> Option<usize> {
    match outcome {
        NoteOutcome::Succeeded => Some(0),
        NoteOutcome::Failed(_) => Some(1),
        NoteOutcome::WillRetry(_) => Some(2),
        NoteOutcome::Stopped => Some(3),
        NoteOutcome::Cancelled => Some(4),
        _ => None,
    }
}

/// One occurrence as one hook saw it, for [`Inner::first_delivery`].
#[derive(Clone, Copy, PartialEq, Eq)]
struct Seen {
    hook: usize,
    cx: usize,
    run_id: usize,
    run_id_len: usize,
    seq: u64,
}

impl Seen {
    const NONE: Seen = Seen {
        hook: usize::MAX,
        cx: 0,
        run_id: 0,
        run_id_len: 0,
        seq: 0,
    };
}

/// Slots of the duplicate filter: hooks whose ids differ modulo this never evict each other.
const SLOTS: usize = 8;

thread_local! {
    /// The last child occurrence each hook (by id modulo [`SLOTS`]) saw on this thread.
    static LAST_SEEN: [Cell<Seen>; SLOTS] = const { [const { Cell::new(Seen::NONE) }; SLOTS] };
}

impl Inner {
    /// Whether to record this occurrence: false when it is the repeat delivery of a child
    /// occurrence to a hook that is attached to the parent and the child both (CHILD-3).
    ///
    /// The engine delivers one occurrence to the parent's hooks and then to the child's own,
    /// synchronously, on one thread, with the same context; so a repeat is recognised by this
    /// thread's last child occurrence seen by this hook: same context, run id and `seq`.
    /// Root-run occurrences are delivered once and always recorded.
    #[inline]
    fn first_delivery(&self, cx: &HookContext<'_>) -> bool {
        if cx.parent_run_id().is_none() {
            return true;
        }
        let run_id = cx.run_id();
        let seen = Seen {
            hook: self.id,
            cx: std::ptr::from_ref(cx).addr(),
            run_id: run_id.as_ptr().addr(),
            run_id_len: run_id.len(),
            seq: cx.seq(),
        };
        LAST_SEEN.with(|slots| {
            let slot = &slots[self.id % SLOTS];
            let repeat = slot.get() == seen;
            slot.set(seen);
            !repeat
        })
    }

    #[inline]
    fn with_cadence(&self, cadence: &str, f: impl FnOnce(&CadenceEntry)) {
        self.cadences
            .with(&[cadence], || CadenceEntry::new(&self.families, cadence), f)
    }

    #[inline]
    fn with_note(&self, cadence: &str, note: &str, f: impl FnOnce(&NoteEntry)) {
        self.notes.with(&[cadence, note], NoteEntry::default, f)
    }
}

impl<S> Hook<S> for PrometheusHook {
    /// Only the occurrences that feed a metric: the engine skips note starts, measures,
    /// branches and checkpoints for this hook.
    fn interest(&self) -> Interest {
        Interest::NONE
            .with(HookMethod::CadenceStart)
            .with(HookMethod::CadenceEnd)
            .with(HookMethod::NoteEnd)
            .with(HookMethod::Retry)
            .with(HookMethod::Fallback)
            .with(HookMethod::CircuitStateChange)
    }

    fn on_cadence_start(&self, cx: &HookContext<'_>, _score: &S) {
        let inner = &*self.inner;
        if inner.first_delivery(cx) {
            inner.with_cadence(cx.cadence(), CadenceEntry::start);
        }
    }

    fn on_cadence_end(
        &self,
        cx: &HookContext<'_>,
        _score: &S,
        duration: Duration,
        outcome: &RunOutcome<'_>,
    ) {
        let inner = &*self.inner;
        if inner.first_delivery(cx) {
            let outcome = run_outcome(outcome);
            inner.with_cadence(cx.cadence(), |c| c.end(duration, outcome));
        }
    }

    fn on_note_end(
        &self,
        cx: &HookContext<'_>,
        path: &str,
        _attempt: u32,
        duration: Duration,
        outcome: &NoteOutcome<'_>,
        _score: &S,
    ) {
        let inner = &*self.inner;
        let Some(i) = note_outcome(outcome) else {
            return;
        };
        if !inner.first_delivery(cx) {
            return;
        }
        let cadence = cx.cadence();
        let family = &*inner.families.note_duration;
        let observe = |n: &NoteEntry| {
            n.durations[i]
                .get_or_init(|| family.series(&[cadence, path, NOTE_OUTCOMES[i]]))
                .observe(family.bounds(), duration)
        };
        match cx.note_id() {
            Some(id) => {
                inner
                    .notes
                    .with_note(id.get(), &[cadence, path], NoteEntry::default, observe)
            }
            None => inner.with_note(cadence, path, observe),
        }
    }

    fn on_retry(
        &self,
        cx: &HookContext<'_>,
        path: &str,
        _attempt: u32,
        _delay: Duration,
        _error: &CadenceError,
    ) {
        let inner = &*self.inner;
        if !inner.first_delivery(cx) {
            return;
        }
        let cadence = cx.cadence();
        inner.with_note(cadence, path, |n| {
            n.retries
                .get_or_init(|| inner.families.retries.with_label_values(&[cadence, path]))
                .inc()
        });
    }

    fn on_fallback(&self, cx: &HookContext<'_>, path: &str, _error: &CadenceError) {
        let inner = &*self.inner;
        if !inner.first_delivery(cx) {
            return;
        }
        let cadence = cx.cadence();
        inner.with_note(cadence, path, |n| {
            n.fallbacks
                .get_or_init(|| inner.families.fallbacks.with_label_values(&[cadence, path]))
                .inc()
        });
    }

    fn on_circuit_state_change(
        &self,
        _cx: &HookContext<'_>,
        circuit: &str,
        _from: CircuitState,
        to: CircuitState,
    ) {
        // Rare, and setting a gauge twice is harmless: no cache, no duplicate filter.
        self.inner
            .families
            .circuit_state
            .with_label_values(&[circuit])
            .set(to.as_gauge());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook() -> (PrometheusHook, crate::MetricsHandle) {
        PrometheusHook::builder().build().unwrap()
    }

    fn runs(h: &PrometheusHook, cadence: &str, outcome: &str) -> u64 {
        h.inner
            .families
            .runs
            .with_label_values(&[cadence, outcome])
            .get()
    }

    fn in_flight(h: &PrometheusHook, cadence: &str) -> i64 {
        h.inner
            .families
            .in_flight
            .with_label_values(&[cadence])
            .get()
    }

    #[test]
    fn outcome_labels_follow_prom_2() {
        // PROM-2: the label values, in the order of the index functions.
        assert_eq!(run_outcome(&RunOutcome::Succeeded), Some(0));
        assert_eq!(run_outcome(&RunOutcome::Cancelled), Some(4));
        assert_eq!(
            RUN_OUTCOMES[run_outcome(&RunOutcome::Cancelled).unwrap()],
            "cancelled"
        );
        assert_eq!(
            NOTE_OUTCOMES[note_outcome(&NoteOutcome::Stopped).unwrap()],
            "stopped"
        );
        assert_eq!(
            NOTE_OUTCOMES[note_outcome(&NoteOutcome::Succeeded).unwrap()],
            "success"
        );
    }

    #[test]
    fn an_end_without_a_start_never_takes_the_gauge_below_zero() {
        // PROM-4: defensive even against an engine that would report an unpaired end.
        let (h, _) = hook();
        let cx = HookContext::new("r1", "c", 0);
        Hook::<()>::on_cadence_end(&h, &cx, &(), Duration::ZERO, &RunOutcome::Succeeded);
        assert_eq!(in_flight(&h, "c"), 0);
        Hook::<()>::on_cadence_start(&h, &cx, &());
        assert_eq!(in_flight(&h, "c"), 1);
        for _ in 0..3 {
            Hook::<()>::on_cadence_end(&h, &cx, &(), Duration::ZERO, &RunOutcome::Cancelled);
        }
        assert_eq!(in_flight(&h, "c"), 0);
        assert_eq!(runs(&h, "c", "cancelled"), 3);
    }

    #[test]
    fn a_repeated_child_delivery_is_recorded_once() {
        let (h, _) = hook();
        let (other, _) = hook();
        let cx = HookContext::new("root/pay", "payment", 7).with_parent("root", "root");
        // Parent's hooks (h, other), then the child's own (h, other): same context.
        for hook in [&h, &other, &h, &other] {
            Hook::<()>::on_cadence_start(hook, &cx, &());
        }
        assert_eq!(in_flight(&h, "payment"), 1);
        assert_eq!(in_flight(&other, "payment"), 1);
        // The next occurrence of the same run is a new one.
        let cx = HookContext::new("root/pay", "payment", 8).with_parent("root", "root");
        for _ in 0..3 {
            Hook::<()>::on_cadence_end(&h, &cx, &(), Duration::ZERO, &RunOutcome::Succeeded);
        }
        assert_eq!(in_flight(&h, "payment"), 0);
        assert_eq!(runs(&h, "payment", "success"), 1);
    }

    #[test]
    fn root_occurrences_are_never_filtered() {
        let (h, _) = hook();
        let cx = HookContext::new("r", "c", 0);
        Hook::<()>::on_cadence_start(&h, &cx, &());
        Hook::<()>::on_cadence_start(&h, &cx, &());
        assert_eq!(in_flight(&h, "c"), 2);
    }

    #[test]
    fn handles_are_resolved_once_per_label_set() {
        let (h, _) = hook();
        let cx = HookContext::new("r", "c", 0);
        for _ in 0..10 {
            Hook::<()>::on_note_end(
                &h,
                &cx,
                "a/b",
                1,
                Duration::from_millis(3),
                &NoteOutcome::Succeeded,
                &(),
            );
        }
        assert_eq!(h.inner.notes.len(), 1);
        let hist = h
            .inner
            .families
            .note_duration
            .series(&["c", "a/b", "success"]);
        assert_eq!(hist.count(), 10);
        assert!((hist.sum() - 0.03).abs() < 1e-9);
    }
}
