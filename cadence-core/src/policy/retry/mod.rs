//! Retry: run a failing note again after a delay (RET-1…10).
//!
//! [`Retry`] is the policy (attempts, [`Backoff`], cap, [`Jitter`], predicate, optional shared
//! [`Budget`]); this module also holds the error markers a note uses to steer retries:
//! [`Permanent`] (never retry this) and [`RetryAfter`] (retry after the server's hint).
//!
//! ```
//! use std::time::Duration;
//! use cadence_core::retry::{Backoff, Jitter, Retry};
//!
//! let retry = Retry::new(5)
//!     .with_backoff(Backoff::exponential(Duration::from_millis(100), 2.0))
//!     .with_max_delay(Duration::from_secs(2))
//!     .with_jitter(Jitter::Equal)
//!     .with_jitter_seed(7);
//! // Backoff is an iterator of delays (before jitter and cap):
//! let delays: Vec<_> = Backoff::exponential(Duration::from_millis(100), 2.0).iter().take(4).collect();
//! assert_eq!(delays, [100, 200, 400, 800].map(Duration::from_millis));
//! # let _ = retry;
//! ```

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{BoxError, CadenceError, Problem};

/// How the delay grows between attempts (RET-4), before the cap and jitter.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backoff {
    /// The same delay every time.
    Fixed(Duration),
    /// `base · k` before attempt k+1.
    Linear(Duration),
    /// `base · factor^(k-1)` before attempt k+1.
    Exponential {
        /// The first delay.
        base: Duration,
        /// The growth factor (≥ 1).
        factor: f64,
    },
}

impl Backoff {
    /// `Fixed(d)`.
    pub fn fixed(d: Duration) -> Self {
        Backoff::Fixed(d)
    }

    /// `Linear(base)`.
    pub fn linear(base: Duration) -> Self {
        Backoff::Linear(base)
    }

    /// `Exponential { base, factor }`.
    pub fn exponential(base: Duration, factor: f64) -> Self {
        Backoff::Exponential { base, factor }
    }

    /// The base delay.
    pub fn base(&self) -> Duration {
        match *self {
            Backoff::Fixed(d) | Backoff::Linear(d) => d,
            Backoff::Exponential { base, .. } => base,
        }
    }

    /// The delay before attempt `failed + 1`, after `failed` failed attempts (1-based),
    /// uncapped and saturating.
    pub fn delay(&self, failed: u32) -> Duration {
        let k = failed.max(1);
        match *self {
            Backoff::Fixed(d) => d,
            Backoff::Linear(base) => base.saturating_mul(k),
            Backoff::Exponential { base, factor } => {
                let secs = base.as_secs_f64() * factor.powi(k as i32 - 1);
                Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
            }
        }
    }

    /// The delays as an iterator: before attempt 2, 3, …
    pub fn iter(&self) -> impl Iterator<Item = Duration> + '_ {
        (1u32..).map(move |k| self.delay(k))
    }
}

/// Randomisation of delays (RET-5). None of them ever exceeds `max_delay`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// The capped delay itself.
    None,
    /// Uniform in `[0, c]` (the default).
    #[default]
    Full,
    /// `c/2` plus uniform in `[0, c/2]`.
    Equal,
    /// `min(max_delay, uniform in [base, 3·previous])`, `previous` starting at `base`.
    Decorrelated,
}

/// A retry budget shared by many notes and runs (RET-8): over any `ttl` window, retries may be
/// at most `min_per_sec · ttl + ratio · first attempts`.
///
/// Clones share one budget.
#[derive(Clone)]
pub struct Budget {
    inner: Arc<BudgetInner>,
}

struct BudgetInner {
    ttl: Duration,
    min_per_sec: u32,
    ratio: f64,
    state: Mutex<BudgetWindow>,
}

/// Ten slots over `ttl`, each counting first attempts and retries.
struct BudgetWindow {
    slots: [(u64, u64); 10],
    slot_start: Option<Instant>,
    current: usize,
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("ttl", &self.inner.ttl)
            .field("min_per_sec", &self.inner.min_per_sec)
            .field("ratio", &self.inner.ratio)
            .finish()
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(Duration::from_secs(10), 10, 0.2)
    }
}

impl Budget {
    /// A budget (defaults: `ttl` 10 s, `min_per_sec` 10, `ratio` 0.2). A zero `ttl` is a
    /// validation error at `build()` (DSL-4).
    pub fn new(ttl: Duration, min_per_sec: u32, ratio: f64) -> Self {
        Budget {
            inner: Arc::new(BudgetInner {
                ttl,
                min_per_sec,
                ratio,
                state: Mutex::new(BudgetWindow {
                    slots: [(0, 0); 10],
                    slot_start: None,
                    current: 0,
                }),
            }),
        }
    }

    /// The window.
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    fn with_window<R>(&self, f: impl FnOnce(&mut BudgetWindow, u64, u64) -> R) -> R {
        let mut w = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let slot = (self.inner.ttl / 10).max(Duration::from_nanos(1));
        match w.slot_start {
            None => w.slot_start = Some(now),
            Some(start) => {
                let passed =
                    (now.saturating_duration_since(start).as_nanos() / slot.as_nanos()) as usize;
                if passed > 0 {
                    for i in 1..=passed.min(10) {
                        let idx = (w.current + i) % 10;
                        w.slots[idx] = (0, 0);
                    }
                    w.current = (w.current + passed) % 10;
                    w.slot_start = Some(start + slot * passed as u32);
                }
            }
        }
        let (firsts, retries) = w.slots.iter().fold((0, 0), |(a, b), (f, r)| (a + f, b + r));
        f(&mut w, firsts, retries)
    }

    /// Records a first attempt (a deposit).
    pub fn deposit(&self) {
        self.with_window(|w, _, _| w.slots[w.current].0 += 1);
    }

    /// Tries to spend one retry; `false` when the budget is exhausted.
    pub fn try_withdraw(&self) -> bool {
        let ttl_secs = self.inner.ttl.as_secs_f64();
        let (min, ratio) = (self.inner.min_per_sec as f64, self.inner.ratio);
        self.with_window(|w, firsts, retries| {
            let allowed = min * ttl_secs + ratio * firsts as f64;
            if (retries + 1) as f64 <= allowed {
                w.slots[w.current].1 += 1;
                true
            } else {
                false
            }
        })
    }
}

type RetryIf = Arc<dyn Fn(&CadenceError) -> bool + Send + Sync>;

/// The retry policy of one note (RET-1…10). `Retry::new(n)` has the defaults of RET-10:
/// exponential backoff from 100 ms doubling, `max_delay` 10 s, full jitter, the default
/// predicate (retry `Note` and `Timeout` errors, not panics), no budget.
#[derive(Clone)]
pub struct Retry {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) max_delay: Duration,
    pub(crate) jitter: Jitter,
    pub(crate) rng: Option<Arc<Mutex<fastrand::Rng>>>,
    pub(crate) retry_if: Option<RetryIf>,
    pub(crate) budget: Option<Budget>,
}

impl fmt::Debug for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("max_delay", &self.max_delay)
            .field("jitter", &self.jitter)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl Retry {
    /// At most `max_attempts` attempts in all (≥ 1; checked at `build()`), with the RET-10
    /// defaults.
    pub fn new(max_attempts: u32) -> Self {
        Retry {
            max_attempts,
            backoff: Backoff::exponential(Duration::from_millis(100), 2.0),
            max_delay: Duration::from_secs(10),
            jitter: Jitter::Full,
            rng: None,
            retry_if: None,
            budget: None,
        }
    }

    /// The delay schedule.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The cap on every delay (RET-5).
    #[must_use]
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// The jitter.
    #[must_use]
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Seeds this policy's random generator, for deterministic tests (RET-5).
    #[must_use]
    pub fn with_jitter_seed(mut self, seed: u64) -> Self {
        self.rng = Some(Arc::new(Mutex::new(fastrand::Rng::with_seed(seed))));
        self
    }

    /// Which errors to retry (RET-2). Replaces the default (`Note` and `Timeout` errors) but
    /// cannot make stops, cancellation, open circuits or `Permanent` errors retryable.
    #[must_use]
    pub fn retry_if(mut self, f: impl Fn(&CadenceError) -> bool + Send + Sync + 'static) -> Self {
        self.retry_if = Some(Arc::new(f));
        self
    }

    /// A shared budget limiting retries across notes and runs (RET-8).
    #[must_use]
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The attempt limit.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// DSL-4 checks.
    pub(crate) fn problems(&self, path: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.max_attempts < 1 {
            out.push(Problem::new(path, "retry needs max_attempts >= 1"));
        }
        if let Backoff::Exponential { factor, .. } = self.backoff
            && !(factor.is_finite() && factor >= 1.0)
        {
            out.push(Problem::new(
                path,
                format!("exponential backoff factor {factor} must be >= 1.0"),
            ));
        }
        if self.max_delay < self.backoff.base() {
            out.push(Problem::new(
                path,
                "retry max_delay is below the base delay; raise max_delay or lower the base",
            ));
        }
        if let Some(b) = &self.budget {
            if b.ttl().is_zero() {
                out.push(Problem::new(
                    path,
                    "retry budget window (ttl) must not be zero",
                ));
            }
            if !(b.inner.ratio.is_finite() && b.inner.ratio >= 0.0) {
                out.push(Problem::new(
                    path,
                    "retry budget ratio must be a finite number >= 0",
                ));
            }
        }
        out
    }

    /// RET-2: whether `e`, whose first marker is `marker` (see [`marker`]), may be retried.
    pub(crate) fn is_retryable_marked(&self, e: &CadenceError, marker: &Option<Marker>) -> bool {
        if matches!(
            e,
            CadenceError::Cancelled | CadenceError::CircuitOpen { .. }
        ) || matches!(marker, Some(Marker::Permanent))
        {
            return false;
        }
        match &self.retry_if {
            Some(f) => f(e),
            None => matches!(e, CadenceError::Note { .. } | CadenceError::Timeout { .. }),
        }
    }

    fn uniform(&self, lo: Duration, hi: Duration) -> Duration {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo).as_nanos().min(u64::MAX as u128) as u64;
        let x = match &self.rng {
            Some(rng) => rng.lock().unwrap_or_else(|p| p.into_inner()).u64(0..=span),
            None => fastrand::u64(0..=span),
        };
        lo + Duration::from_nanos(x)
    }

    /// RET-4…6: the delay after failed attempt `failed`; `previous` is the last delay (for
    /// decorrelated jitter), `hint` a `RetryAfter` from the error.
    pub(crate) fn next_delay(
        &self,
        failed: u32,
        previous: Option<Duration>,
        hint: Option<Duration>,
    ) -> Duration {
        if let Some(h) = hint {
            return h.min(self.max_delay);
        }
        let c = self.backoff.delay(failed).min(self.max_delay);
        match self.jitter {
            Jitter::None => c,
            Jitter::Full => self.uniform(Duration::ZERO, c),
            Jitter::Equal => c / 2 + self.uniform(Duration::ZERO, c - c / 2),
            Jitter::Decorrelated => {
                let base = self.backoff.base();
                let prev = previous.unwrap_or(base);
                self.uniform(base, prev.saturating_mul(3))
                    .min(self.max_delay)
            }
        }
    }

    pub(crate) fn summary(&self) -> String {
        format!("retry({})", self.max_attempts)
    }
}

/// The first retry marker of an error's source chain.
pub(crate) enum Marker {
    Permanent,
    RetryAfter(Duration),
}

/// The first marker in `e`'s source chain (RET-3: first found wins).
pub(crate) fn marker(e: &CadenceError) -> Option<Marker> {
    marker_in(e)
}

/// [`marker`] of any error (for a note's own error before it is typed).
pub(crate) fn marker_in(e: &(dyn std::error::Error + 'static)) -> Option<Marker> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<Permanent>() {
            return Some(Marker::Permanent);
        }
        if let Some(r) = err.downcast_ref::<RetryAfter>() {
            return Some(Marker::RetryAfter(r.after()));
        }
        cur = err.source();
    }
    None
}

/// The hint of a [`RetryAfter`] marker, if it is the first marker in an error's chain
/// (RET-3, RET-6).
pub(crate) fn hint_of(marker: &Option<Marker>) -> Option<Duration> {
    match marker {
        Some(Marker::RetryAfter(d)) => Some(*d),
        _ => None,
    }
}

/// Marks an error as not worth retrying (RET-3). Retry finds it anywhere in the source chain.
///
/// ```
/// use cadence_core::{BoxError, retry::Permanent};
/// fn check(card: &str) -> Result<(), BoxError> {
///     if card.is_empty() {
///         return Err(Permanent::new("card number missing").into());
///     }
///     Ok(())
/// }
/// assert!(check("").is_err());
/// ```
#[derive(Debug)]
pub struct Permanent {
    inner: BoxError,
}

impl Permanent {
    /// Wraps `err` as permanent.
    pub fn new(err: impl Into<BoxError>) -> Self {
        Permanent { inner: err.into() }
    }

    /// The wrapped error.
    pub fn into_inner(self) -> BoxError {
        self.inner
    }
}

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for Permanent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.inner.as_ref())
    }
}

/// Carries a server's hint of when to retry (HTTP `Retry-After`, RET-6).
#[derive(Debug)]
pub struct RetryAfter {
    after: Duration,
    inner: BoxError,
}

impl RetryAfter {
    /// `err`, to be retried after `after` (capped at the policy's `max_delay`).
    pub fn new(after: Duration, err: impl Into<BoxError>) -> Self {
        RetryAfter {
            after,
            inner: err.into(),
        }
    }

    /// The hinted delay.
    pub fn after(&self) -> Duration {
        self.after
    }
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for RetryAfter {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.inner.as_ref())
    }
}
