//! The measuring harness: figure definitions, goals, interleaved A/B measurement, the JSON
//! line format of `BENCHMARKS.md`, and a counting global allocator.
//!
//! A figure compares a *value* (cadence doing something) with a *baseline* (hand-written code
//! doing the same) measured in the same process, interleaved A B A B… after a warm-up, so
//! that the drift of a shared machine hits both; each side reports the median of its
//! repetitions. See [`interleave`] and its variants.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt;
use std::future::Future;
use std::io::{self, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

/// The goal a figure must meet; [`Goal::met`] decides, [`Goal::describe`] words it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// `value - baseline_value <= x` (in the figure's unit).
    OverheadAtMost(f64),
    /// `value <= x` (in the figure's unit); the baseline is given for scale only.
    AtMost(f64),
    /// `value / baseline_value <= x`.
    RatioAtMost(f64),
    /// `value / baseline_value >= x` (for throughputs).
    RatioAtLeast(f64),
}

impl Goal {
    /// Whether `value` against `baseline_value` meets the goal. Any NaN, and a ratio goal
    /// against a baseline that is not positive, never meets it.
    pub fn met(self, value: f64, baseline_value: f64) -> bool {
        match self {
            Goal::OverheadAtMost(x) => value - baseline_value <= x,
            Goal::AtMost(x) => value <= x,
            Goal::RatioAtMost(x) => baseline_value > 0.0 && value / baseline_value <= x,
            Goal::RatioAtLeast(x) => baseline_value > 0.0 && value / baseline_value >= x,
        }
    }

    /// The goal as text, e.g. `overhead <= 50 ns`, `<= 1024 B`, `ratio <= 1.5`.
    pub fn describe(self, unit: &str) -> String {
        match self {
            Goal::OverheadAtMost(x) => format!("overhead <= {x} {unit}"),
            Goal::AtMost(x) => format!("<= {x} {unit}"),
            Goal::RatioAtMost(x) => format!("ratio <= {x}"),
            Goal::RatioAtLeast(x) => format!("ratio >= {x}"),
        }
    }
}

/// What a figure's run function returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Both sides measured (medians).
    Measured {
        /// The figure itself.
        value: f64,
        /// The baseline, measured in the same run.
        baseline_value: f64,
    },
    /// The figure could not run, e.g. because a service is missing.
    Skipped {
        /// Why, for the `reason` field.
        reason: String,
    },
}

impl Outcome {
    /// A skipped outcome.
    pub fn skipped(reason: impl Into<String>) -> Self {
        Outcome::Skipped {
            reason: reason.into(),
        }
    }
}

/// One benchmark figure. Registered in [`crate::figures::FIGURES`].
#[derive(Debug, Clone, Copy)]
pub struct Figure {
    /// Stable id, `<area>.<name>`, e.g. `core.seq_note`; `--only` matches its prefix.
    pub id: &'static str,
    /// Unit of `value` and `baseline_value`: `ns`, `B`, `ms` or `ops/s`.
    pub unit: &'static str,
    /// Name of the baseline, e.g. `handwritten`.
    pub baseline: &'static str,
    /// The goal, from which `met` is computed.
    pub goal: Goal,
    /// Measures the figure. Should honour [`Config::quick`] (use [`Config::plan`]).
    pub run: fn(&Config) -> Outcome,
}

/// Settings of a bench run, handed to every figure.
#[derive(Debug, Clone, Copy, Default)]
pub struct Config {
    /// `--quick`: a smoke run, every figure shortened to well under a second.
    pub quick: bool,
}

impl Config {
    /// `n` in a full run, `n / 20` (at least 1) in a quick one: for sizes a figure scales
    /// by itself (task counts, payloads…).
    pub fn scale(&self, n: u64) -> u64 {
        if self.quick { (n / 20).max(1) } else { n }
    }

    /// The repetition plan for a figure whose full run times `iters` iterations per sample.
    ///
    /// Full: 3 warm-up rounds and 15 measured rounds per side; quick: 1 and 3, with
    /// [`Config::scale`]d iterations. Choose `iters` so that one full sample takes some
    /// 5–50 ms.
    pub fn plan(&self, iters: u64) -> Plan {
        if self.quick {
            Plan {
                warmup: 1,
                reps: 3,
                iters: self.scale(iters),
            }
        } else {
            Plan {
                warmup: 3,
                reps: 15,
                iters,
            }
        }
    }
}

/// How to repeat an interleaved measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Unrecorded rounds (one sample per side each) before measuring.
    pub warmup: usize,
    /// Recorded rounds; each side's median over these is reported.
    pub reps: usize,
    /// Iterations per sample, handed to timing closures.
    pub iters: u64,
}

/// Result of an interleaved measurement: the median of each side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    /// Median of the measured side (A).
    pub value: f64,
    /// Median of the baseline side (B).
    pub baseline_value: f64,
}

impl From<Paired> for Outcome {
    fn from(p: Paired) -> Self {
        Outcome::Measured {
            value: p.value,
            baseline_value: p.baseline_value,
        }
    }
}

/// Median of `samples` (mean of the middle two for an even count); NaN when empty.
pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => samples[n / 2],
        _ => (samples[n / 2 - 1] + samples[n / 2]) / 2.0,
    }
}

/// Nanoseconds per iteration of `elapsed` spent on `iters` iterations.
pub fn ns_per_iter(elapsed: Duration, iters: u64) -> f64 {
    elapsed.as_nanos() as f64 / iters.max(1) as f64
}

/// Times `iters` calls of `f`.
pub fn timed(iters: u64, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed()
}

/// Interleaves two sides that return any per-sample figure (bytes, ops/s, ms…): warm-up,
/// then A B A B… for `plan.reps` rounds; returns each side's median.
pub fn interleave_with(
    plan: &Plan,
    mut a: impl FnMut() -> f64,
    mut b: impl FnMut() -> f64,
) -> Paired {
    let (mut sa, mut sb) = (Vec::with_capacity(plan.reps), Vec::with_capacity(plan.reps));
    for round in 0..plan.warmup + plan.reps {
        let (va, vb) = (a(), b());
        if round >= plan.warmup {
            sa.push(va);
            sb.push(vb);
        }
    }
    Paired {
        value: median(&mut sa),
        baseline_value: median(&mut sb),
    }
}

/// Interleaves two timing closures: each gets `plan.iters` and returns how long that many
/// iterations took; reports median nanoseconds per iteration of each side.
///
/// ```
/// use cadence_bench_core::harness::{interleave, timed, Config};
/// let plan = Config { quick: true }.plan(1000);
/// let p = interleave(
///     &plan,
///     |iters| timed(iters, || { std::hint::black_box(1 + 1); }),
///     |iters| timed(iters, || {}),
/// );
/// assert!(p.value >= 0.0 && p.baseline_value >= 0.0);
/// ```
pub fn interleave(
    plan: &Plan,
    mut a: impl FnMut(u64) -> Duration,
    mut b: impl FnMut(u64) -> Duration,
) -> Paired {
    let iters = plan.iters;
    interleave_with(
        plan,
        || ns_per_iter(a(iters), iters),
        || ns_per_iter(b(iters), iters),
    )
}

/// A tokio current-thread runtime with time and I/O enabled, as the async helpers use.
pub fn current_thread_runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a current-thread tokio runtime")
}

/// [`interleave`] for async closures, on a fresh [`current_thread_runtime`].
///
/// Each closure gets `plan.iters` and returns the time those iterations took (time inside
/// the closure, so setup outside the timed region is free). The closures may borrow their
/// captures mutably (`AsyncFnMut`), e.g. a score reused across samples.
///
/// ```
/// use std::time::Instant;
/// use cadence_bench_core::harness::{interleave_async, Config};
/// async fn noop() {}
/// let plan = Config { quick: true }.plan(1000);
/// let p = interleave_async(
///     &plan,
///     async |iters| {
///         let t = Instant::now();
///         for _ in 0..iters { noop().await }
///         t.elapsed()
///     },
///     async |iters| {
///         let t = Instant::now();
///         for _ in 0..iters { std::hint::black_box(()); }
///         t.elapsed()
///     },
/// );
/// assert!(p.value.is_finite());
/// ```
pub fn interleave_async(
    plan: &Plan,
    a: impl AsyncFnMut(u64) -> Duration,
    b: impl AsyncFnMut(u64) -> Duration,
) -> Paired {
    interleave_async_on(&current_thread_runtime(), plan, a, b)
}

/// [`interleave_async`] on a given runtime, for figures that set things up (connections,
/// spawned servers) on that runtime first.
pub fn interleave_async_on(
    rt: &Runtime,
    plan: &Plan,
    mut a: impl AsyncFnMut(u64) -> Duration,
    mut b: impl AsyncFnMut(u64) -> Duration,
) -> Paired {
    let iters = plan.iters;
    interleave_async_with_on(
        rt,
        plan,
        async || ns_per_iter(a(iters).await, iters),
        async || ns_per_iter(b(iters).await, iters),
    )
}

/// [`interleave_with`] for async closures (any per-sample figure), on a fresh
/// [`current_thread_runtime`].
pub fn interleave_async_with(
    plan: &Plan,
    a: impl AsyncFnMut() -> f64,
    b: impl AsyncFnMut() -> f64,
) -> Paired {
    interleave_async_with_on(&current_thread_runtime(), plan, a, b)
}

/// [`interleave_async_with`] on a given runtime.
pub fn interleave_async_with_on(
    rt: &Runtime,
    plan: &Plan,
    mut a: impl AsyncFnMut() -> f64,
    mut b: impl AsyncFnMut() -> f64,
) -> Paired {
    rt.block_on(async {
        let (mut sa, mut sb) = (Vec::with_capacity(plan.reps), Vec::with_capacity(plan.reps));
        for round in 0..plan.warmup + plan.reps {
            let va = a().await;
            let vb = b().await;
            if round >= plan.warmup {
                sa.push(va);
                sb.push(vb);
            }
        }
        Paired {
            value: median(&mut sa),
            baseline_value: median(&mut sb),
        }
    })
}

/// Runs `fut` to completion on a fresh [`current_thread_runtime`].
pub fn block_on<F: Future>(fut: F) -> F::Output {
    current_thread_runtime().block_on(fut)
}

/// Rounds to 4 significant digits, for the JSON output (the machines are far noisier).
fn round_sig(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let shift = 3 - v.abs().log10().floor() as i32;
    if shift >= 0 {
        let f = 10f64.powi(shift);
        (v * f).round() / f
    } else {
        let f = 10f64.powi(-shift);
        (v / f).round() * f
    }
}

/// The reported line of one figure: what goes into `results.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Figure id.
    pub id: &'static str,
    /// The figure, `None` when skipped.
    pub value: Option<f64>,
    /// Unit of value and baseline.
    pub unit: &'static str,
    /// Baseline name.
    pub baseline: &'static str,
    /// The baseline, `None` when skipped.
    pub baseline_value: Option<f64>,
    /// `value / baseline_value`, `None` when skipped or not finite.
    pub ratio: Option<f64>,
    /// [`Goal::describe`].
    pub goal: String,
    /// [`Goal::met`]; false when skipped.
    pub met: bool,
    /// Why the figure was skipped.
    pub reason: Option<String>,
}

impl Record {
    /// The record of `figure` for `outcome`.
    pub fn new(figure: &Figure, outcome: Outcome) -> Self {
        let goal = figure.goal.describe(figure.unit);
        let (value, baseline_value, ratio, met, reason) = match outcome {
            Outcome::Measured {
                value,
                baseline_value,
            } => {
                let ratio = value / baseline_value;
                (
                    Some(round_sig(value)).filter(|v| v.is_finite()),
                    Some(round_sig(baseline_value)).filter(|v| v.is_finite()),
                    Some(round_sig(ratio)).filter(|v| v.is_finite()),
                    figure.goal.met(value, baseline_value),
                    None,
                )
            }
            Outcome::Skipped { reason } => (None, None, None, false, Some(reason)),
        };
        Record {
            id: figure.id,
            value,
            unit: figure.unit,
            baseline: figure.baseline,
            baseline_value,
            ratio,
            goal,
            met,
            reason,
        }
    }

    /// The JSON line, keys in the order of `BENCHMARKS.md`
    /// (`id, value, unit, baseline, baseline_value, ratio, goal, met[, reason]`), no newline.
    pub fn to_json_line(&self) -> String {
        fn s(text: &str) -> String {
            serde_json::Value::from(text).to_string()
        }
        fn n(v: Option<f64>) -> String {
            v.map_or(serde_json::Value::Null, serde_json::Value::from)
                .to_string()
        }
        let mut line = format!(
            "{{\"id\":{},\"value\":{},\"unit\":{},\"baseline\":{},\"baseline_value\":{},\
             \"ratio\":{},\"goal\":{},\"met\":{}",
            s(self.id),
            n(self.value),
            s(self.unit),
            s(self.baseline),
            n(self.baseline_value),
            n(self.ratio),
            s(&self.goal),
            self.met,
        );
        if let Some(reason) = &self.reason {
            line.push_str(&format!(",\"reason\":{}", s(reason)));
        }
        line.push('}');
        line
    }
}

impl fmt::Display for Record {
    /// The human-readable line printed to stdout.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        match (&self.reason, self.value) {
            (None, Some(value)) => write!(
                f,
                "{:<24} {:>10} {:<5} {} {} {}, ratio {}   goal {}: {}",
                self.id,
                value,
                self.unit,
                self.baseline,
                num(self.baseline_value),
                self.unit,
                num(self.ratio),
                self.goal,
                if self.met { "met" } else { "MISSED" }
            ),
            (reason, _) => write!(
                f,
                "{:<24} SKIPPED: {}   (goal {})",
                self.id,
                reason.as_deref().unwrap_or("no value"),
                self.goal
            ),
        }
    }
}

/// Counts of a bench run, see [`run`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Figures that ran.
    pub measured: usize,
    /// Of those, meeting their goal.
    pub met: usize,
    /// Figures skipped (service missing…), including panicked ones.
    pub skipped: usize,
    /// Figures whose run function panicked: a crash, which fails the bench run.
    pub panicked: usize,
}

/// Runs the `figures` whose id starts with `only` (all when `None`), in order.
///
/// Writes one JSON line per figure to `out` (flushed after each, so a crash leaves the
/// figures before it) and one human line to stdout. A panicking figure is caught, recorded
/// as skipped with a `panicked: …` reason, and counted in [`Summary::panicked`].
pub fn run(
    figures: &[Figure],
    config: &Config,
    only: Option<&str>,
    out: &mut dyn Write,
) -> io::Result<Summary> {
    let mut summary = Summary::default();
    for figure in figures
        .iter()
        .filter(|f| only.is_none_or(|p| f.id.starts_with(p)))
    {
        let outcome = match panic::catch_unwind(AssertUnwindSafe(|| (figure.run)(config))) {
            Ok(outcome) => outcome,
            Err(payload) => {
                summary.panicked += 1;
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_owned());
                Outcome::skipped(format!("panicked: {msg}"))
            }
        };
        let record = Record::new(figure, outcome);
        if record.reason.is_some() {
            summary.skipped += 1;
        } else {
            summary.measured += 1;
            summary.met += usize::from(record.met);
        }
        println!("{record}");
        writeln!(out, "{}", record.to_json_line())?;
        out.flush()?;
    }
    Ok(summary)
}

/// Bytes allocated through [`CountingAlloc`] while counting (allocations minus frees).
static CURRENT_BYTES: AtomicIsize = AtomicIsize::new(0);
/// Allocation calls (`alloc`, `alloc_zeroed`, `realloc`) through [`CountingAlloc`] while counting.
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

/// A global allocator forwarding to [`System`] while counting bytes currently allocated and
/// allocation calls, for memory figures such as bytes per parked run.
///
/// The bench binary installs it:
///
/// ```standalone_crate
/// use cadence_bench_core::harness::CountingAlloc;
///
/// #[global_allocator]
/// static ALLOC: CountingAlloc = CountingAlloc;
///
/// fn main() {
///     assert!(CountingAlloc::is_installed());
///     let _counting = CountingAlloc::count();
///     let before = CountingAlloc::snapshot();
///     let kept = vec![0u8; 4096];
///     assert!(CountingAlloc::snapshot().bytes_since(&before) >= 4096);
///     drop(kept);
/// }
/// ```
///
/// The counters are process-wide statics, so figures read them with
/// [`CountingAlloc::snapshot`] wherever the allocator is declared. They move only while a
/// [`CountingAlloc::count`] guard lives: counting costs two atomic read-modify-writes per call
/// (≈ 10–30 ns per allocation and free on the machines we measure on), which would otherwise be
/// charged to every figure whose code allocates, and never to a baseline that does not. Outside
/// a guard an allocation costs one relaxed load more than [`System`]'s.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

/// How many [`Counting`] guards live.
static COUNTING: AtomicUsize = AtomicUsize::new(0);

/// Counts allocations while it lives: see [`CountingAlloc::count`].
#[derive(Debug)]
#[must_use = "allocations are counted only while the guard lives"]
pub struct Counting(());

impl Drop for Counting {
    fn drop(&mut self) {
        COUNTING.fetch_sub(1, Ordering::Relaxed);
    }
}

impl CountingAlloc {
    /// Counts allocations until the guard is dropped (guards nest). Bytes freed meanwhile that
    /// were allocated before count as freed, so measure growth between two snapshots taken
    /// under one guard.
    pub fn count() -> Counting {
        COUNTING.fetch_add(1, Ordering::Relaxed);
        Counting(())
    }

    /// The current counters.
    pub fn snapshot() -> AllocSnapshot {
        AllocSnapshot {
            current_bytes: CURRENT_BYTES.load(Ordering::Relaxed),
            allocations: ALLOCATIONS.load(Ordering::Relaxed),
        }
    }

    /// Whether a `CountingAlloc` is the global allocator of this process (otherwise the
    /// counters never move and memory figures must be skipped).
    pub fn is_installed() -> bool {
        let _counting = CountingAlloc::count();
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        drop(std::hint::black_box(Box::new(0u64)));
        ALLOCATIONS.load(Ordering::Relaxed) != before
    }
}

/// The [`CountingAlloc`] counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocSnapshot {
    /// Bytes allocated and not yet freed (process-wide, so other threads count too).
    pub current_bytes: isize,
    /// Allocation calls so far.
    pub allocations: usize,
}

impl AllocSnapshot {
    /// Growth of allocated bytes since `earlier` (negative if memory was freed).
    pub fn bytes_since(&self, earlier: &AllocSnapshot) -> isize {
        self.current_bytes - earlier.current_bytes
    }

    /// Allocation calls since `earlier`.
    pub fn allocations_since(&self, earlier: &AllocSnapshot) -> usize {
        self.allocations.wrapping_sub(earlier.allocations)
    }
}

/// Whether a [`Counting`] guard lives.
#[inline]
fn counting() -> bool {
    COUNTING.load(Ordering::Relaxed) != 0
}

/// Records a successful allocation of `size` bytes.
#[inline]
fn count_alloc(size: usize) {
    if counting() {
        CURRENT_BYTES.fetch_add(size as isize, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards its arguments unchanged to `System`, which implements
// `GlobalAlloc` correctly, and returns `System`'s result unchanged; so the contract of
// `GlobalAlloc` holds exactly as for `System`. The bookkeeping only touches atomics (it never
// allocates, so it cannot recurse into the allocator) and never panics.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, forwarded as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count_alloc(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract, forwarded as is.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count_alloc(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract; `ptr` came from
        // this allocator, hence from `System`.
        unsafe { System.dealloc(ptr, layout) };
        if counting() {
            CURRENT_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract; `ptr` came from
        // this allocator, hence from `System`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() && counting() {
            CURRENT_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_are_met_and_described() {
        assert!(Goal::OverheadAtMost(50.0).met(60.0, 10.0));
        assert!(!Goal::OverheadAtMost(50.0).met(61.0, 10.0));
        assert!(Goal::AtMost(1024.0).met(1024.0, 3000.0));
        assert!(Goal::RatioAtMost(1.5).met(1.5, 1.0));
        assert!(!Goal::RatioAtMost(1.5).met(1.0, 0.0));
        assert!(Goal::RatioAtLeast(0.7).met(70.0, 100.0));
        assert!(!Goal::RatioAtLeast(0.7).met(69.0, 100.0));
        assert!(!Goal::AtMost(1.0).met(f64::NAN, 1.0));
        assert_eq!(
            Goal::OverheadAtMost(50.0).describe("ns"),
            "overhead <= 50 ns"
        );
        assert_eq!(Goal::AtMost(1024.0).describe("B"), "<= 1024 B");
        assert_eq!(Goal::RatioAtMost(1.5).describe("ns"), "ratio <= 1.5");
        assert_eq!(Goal::RatioAtLeast(0.7).describe("ops/s"), "ratio >= 0.7");
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn rounds_to_four_significant_digits() {
        assert_eq!(round_sig(21.43789), 21.44);
        assert_eq!(round_sig(140_123.7), 140_100.0);
        assert_eq!(round_sig(0.000_123_456), 0.000_123_5);
        assert_eq!(round_sig(0.0), 0.0);
    }

    const FIG: Figure = Figure {
        id: "core.seq_note",
        unit: "ns",
        baseline: "handwritten",
        goal: Goal::OverheadAtMost(50.0),
        run: |_| Outcome::skipped("unused"),
    };

    #[test]
    fn json_line_matches_benchmarks_md() {
        let r = Record::new(
            &FIG,
            Outcome::Measured {
                value: 21.4,
                baseline_value: 2.1,
            },
        );
        assert_eq!(
            r.to_json_line(),
            r#"{"id":"core.seq_note","value":21.4,"unit":"ns","baseline":"handwritten","baseline_value":2.1,"ratio":10.19,"goal":"overhead <= 50 ns","met":true}"#
        );
        let v: serde_json::Value = serde_json::from_str(&r.to_json_line()).unwrap();
        assert_eq!(v["met"], true);
    }

    #[test]
    fn skipped_line_has_null_value_and_reason() {
        let r = Record::new(&FIG, Outcome::skipped("CADENCE_REDIS_URL not set \"x\""));
        assert_eq!(
            r.to_json_line(),
            r#"{"id":"core.seq_note","value":null,"unit":"ns","baseline":"handwritten","baseline_value":null,"ratio":null,"goal":"overhead <= 50 ns","met":false,"reason":"CADENCE_REDIS_URL not set \"x\""}"#
        );
        assert!(r.to_string().contains("SKIPPED"));
    }

    #[test]
    fn zero_baseline_gives_null_ratio() {
        let fig = Figure {
            goal: Goal::AtMost(5.0),
            ..FIG
        };
        let r = Record::new(
            &fig,
            Outcome::Measured {
                value: 1.0,
                baseline_value: 0.0,
            },
        );
        assert_eq!(r.ratio, None);
        assert!(r.met);
        assert!(r.to_json_line().contains(r#""ratio":null"#));
    }

    #[test]
    fn interleaves_a_b_a_b() {
        let log = std::cell::RefCell::new(Vec::new());
        let plan = Plan {
            warmup: 1,
            reps: 3,
            iters: 7,
        };
        let p = interleave_with(
            &plan,
            || {
                log.borrow_mut().push('A');
                1.0
            },
            || {
                log.borrow_mut().push('B');
                2.0
            },
        );
        assert_eq!(log.into_inner().iter().collect::<String>(), "ABABABAB");
        assert_eq!(
            p,
            Paired {
                value: 1.0,
                baseline_value: 2.0
            }
        );
    }

    #[test]
    fn interleave_reports_ns_per_iter() {
        let plan = Plan {
            warmup: 0,
            reps: 1,
            iters: 4,
        };
        let p = interleave(
            &plan,
            |iters| Duration::from_nanos(100 * iters),
            |iters| Duration::from_nanos(10 * iters),
        );
        assert_eq!(p.value, 100.0);
        assert_eq!(p.baseline_value, 10.0);
    }

    #[test]
    fn interleave_async_runs_on_current_thread_with_timers() {
        let plan = Config { quick: true }.plan(40);
        let mut calls = 0;
        let p = interleave_async(
            &plan,
            async |iters| {
                calls += 1;
                let t = Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                assert_eq!(iters, 2);
                t.elapsed()
            },
            async |_| Duration::ZERO,
        );
        assert_eq!(calls, plan.warmup + plan.reps);
        assert!(p.value >= 1e6 / 2.0, "{p:?}");
        assert_eq!(p.baseline_value, 0.0);
    }

    #[test]
    fn run_filters_records_and_catches_panics() {
        let figs = [
            Figure {
                id: "a.one",
                run: |_| Outcome::Measured {
                    value: 1.0,
                    baseline_value: 1.0,
                },
                ..FIG
            },
            Figure {
                id: "a.boom",
                run: |_| panic!("kaboom"),
                ..FIG
            },
            Figure {
                id: "b.other",
                ..FIG
            },
        ];
        let mut out = Vec::new();
        let s = run(&figs, &Config::default(), Some("a."), &mut out).unwrap();
        assert_eq!(
            s,
            Summary {
                measured: 1,
                met: 1,
                skipped: 1,
                panicked: 1
            }
        );
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[1].contains(r#""reason":"panicked: kaboom""#),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn counting_alloc_counts() {
        // The unit-test binary installs CountingAlloc (see lib.rs).
        assert!(CountingAlloc::is_installed());
        let _counting = CountingAlloc::count();
        let before = CountingAlloc::snapshot();
        let v = std::hint::black_box(vec![0u8; 1 << 20]);
        let during = CountingAlloc::snapshot();
        assert!(during.allocations_since(&before) >= 1);
        // Other test threads allocate too; a 1 MiB block dominates their noise.
        assert!(during.bytes_since(&before) >= (1 << 20) - (64 << 10));
        drop(v);
    }
}
