//! Circuit breaker: stop calling a dependency that keeps failing (CB-1…8).
//!
//! A [`CircuitBreaker`] is a value you hold and clone: clones share one state, so notes share a
//! breaker by holding clones of it. There is no global registry — two breakers with one name
//! are independent (CB-1). Sitting inside retry and outside the timeout (RES-1), it sees each
//! attempt: a timeout is a failure, a rejection is an attempt that retry does not retry.
//!
//! ```text
//!   Closed ──(threshold / failure rate)──▶ Open ──(recovery_timeout)──▶ HalfOpen
//!     ▲                                      ▲                            │
//!     └──────(half_open_max_calls successes)─┼────────────────────────────┤
//!                                            └──────(any probe failure)───┘
//! ```
//!
//! ```
//! use std::time::Duration;
//! use cadence_core::circuit_breaker::{CircuitBreaker, CircuitState};
//!
//! let bank = CircuitBreaker::builder("bank")
//!     .consecutive_failures(3)
//!     .recovery_timeout(Duration::from_secs(10))
//!     .half_open_max_calls(2)
//!     .build()
//!     .unwrap();
//! assert_eq!(bank.state(), CircuitState::Closed);
//! let shared = bank.clone(); // same state
//! # let _ = shared;
//! ```
//!
//! # Cost
//!
//! The state lives behind one lock, shared by every run that holds the breaker. The common
//! case does not take it: a closed breaker that counts consecutive failures (without a
//! slow-call threshold or a remote state) publishes, in one atomic word, its generation and
//! whether its failure count is zero. While it is, admitting a call and recording a success
//! (or an excluded or cancelled call) are one atomic load each, with no write any other run
//! has to see; a failure, a probe and every other mode take the lock.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::error::{BoxError, CadenceError, Problem};

/// The state of a circuit breaker (CB-3).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls pass; failures are counted.
    Closed,
    /// A limited number of probe calls pass to test recovery.
    HalfOpen,
    /// Every call is rejected at once.
    Open,
}

impl CircuitState {
    /// `closed`, `half_open` or `open`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Open => "open",
        }
    }

    /// 0 closed, 1 half-open, 2 open (the Prometheus gauge's encoding, PROM-2).
    pub fn as_gauge(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        }
    }
}

/// Which calls a failure-rate breaker looks at (CB-2).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `n` calls.
    Count(u32),
    /// Calls that finished within this long.
    Time(Duration),
}

/// When a breaker opens (CB-2).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// After `threshold` failures in a row; a success resets the count.
    ConsecutiveFailures {
        /// Failures in a row that open the breaker.
        threshold: u32,
    },
    /// When the window holds at least `minimum_calls` calls and failures/calls ≥ `rate`.
    FailureRate {
        /// In (0, 1].
        rate: f64,
        /// Which calls count.
        window: Window,
        /// Calls needed before the rate is judged.
        minimum_calls: u32,
    },
}

/// A point-in-time view of a breaker (CB-7).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The state.
    pub state: CircuitState,
    /// Failures in a row (consecutive mode).
    pub consecutive_failures: u32,
    /// Calls in the window (rate mode).
    pub calls: u32,
    /// Failed calls in the window (rate mode).
    pub failures: u32,
    /// failures / calls, 0 when no calls.
    pub failure_rate: f64,
}

/// What another process published about a breaker (CB-8).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteSnapshot {
    /// The published state.
    pub state: CircuitState,
    /// When it opened (wall clock), for `Open`.
    pub opened_at: Option<SystemTime>,
    /// A counter increasing with every published transition.
    pub epoch: u64,
}

impl RemoteSnapshot {
    /// A snapshot.
    pub fn new(state: CircuitState, opened_at: Option<SystemTime>, epoch: u64) -> Self {
        RemoteSnapshot {
            state,
            opened_at,
            epoch,
        }
    }
}

/// A boxed future returned by [`RemoteCircuitState`].
pub type RemoteFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send + 'a>>;

/// Cross-process breaker state (CB-8), implemented by stores such as cadence-redis.
///
/// A breaker configured with one publishes its transitions and polls the remote state; a
/// remote *open* is adopted locally with its remaining recovery time. Local admission never
/// waits on these calls.
pub trait RemoteCircuitState: Send + Sync + 'static {
    /// Publishes a local transition.
    fn publish<'a>(&'a self, circuit: &'a str, snapshot: RemoteSnapshot) -> RemoteFuture<'a, ()>;
    /// Reads the shared state, if any.
    fn fetch<'a>(&'a self, circuit: &'a str) -> RemoteFuture<'a, Option<RemoteSnapshot>>;
}

type Exclude = Arc<dyn Fn(&CadenceError) -> bool + Send + Sync>;

/// Builds a [`CircuitBreaker`] (CB-1).
#[must_use]
pub struct CircuitBreakerBuilder {
    name: String,
    mode: Mode,
    recovery_timeout: Duration,
    half_open_max_calls: u32,
    slow_call: Option<Duration>,
    exclude: Option<Exclude>,
    remote: Option<(Arc<dyn RemoteCircuitState>, Duration)>,
}

impl fmt::Debug for CircuitBreakerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl CircuitBreakerBuilder {
    /// Opens after `threshold` consecutive failures (the default mode, threshold 5).
    pub fn consecutive_failures(mut self, threshold: u32) -> Self {
        self.mode = Mode::ConsecutiveFailures { threshold };
        self
    }

    /// Opens when at least `minimum_calls` calls in `window` failed at `rate` or more.
    pub fn failure_rate(mut self, rate: f64, window: Window, minimum_calls: u32) -> Self {
        self.mode = Mode::FailureRate {
            rate,
            window,
            minimum_calls,
        };
        self
    }

    /// How long it stays open before admitting probes (default 30 s).
    pub fn recovery_timeout(mut self, d: Duration) -> Self {
        self.recovery_timeout = d;
        self
    }

    /// Probes admitted while half-open, and successes needed to close (default 1).
    pub fn half_open_max_calls(mut self, n: u32) -> Self {
        self.half_open_max_calls = n;
        self
    }

    /// A success taking at least `t` counts as a failure for the breaker only.
    pub fn slow_call(mut self, t: Duration) -> Self {
        self.slow_call = Some(t);
        self
    }

    /// Errors `f` accepts count as neither success nor failure.
    pub fn exclude(mut self, f: impl Fn(&CadenceError) -> bool + Send + Sync + 'static) -> Self {
        self.exclude = Some(Arc::new(f));
        self
    }

    /// Shares state across processes through `remote`, polled every `poll` (default 1 s when
    /// given as zero).
    pub fn with_remote_state(
        mut self,
        remote: Arc<dyn RemoteCircuitState>,
        poll: Duration,
    ) -> Self {
        let poll = if poll.is_zero() {
            Duration::from_secs(1)
        } else {
            poll
        };
        self.remote = Some((remote, poll));
        self
    }

    /// The breaker, or `Validation` for zero thresholds, windows, minimum calls, permits or
    /// durations, or a rate outside (0, 1].
    pub fn build(self) -> Result<CircuitBreaker, CadenceError> {
        let path = format!("circuit '{}'", self.name);
        let mut problems = Vec::new();
        let mut bad = |m: &str| problems.push(Problem::new(&path, m));
        match self.mode {
            Mode::ConsecutiveFailures { threshold: 0 } => {
                bad("the failure threshold must be at least 1")
            }
            Mode::FailureRate {
                rate,
                window,
                minimum_calls,
            } => {
                if !(rate > 0.0 && rate <= 1.0) {
                    bad("the failure rate must be in (0, 1]");
                }
                if minimum_calls == 0 {
                    bad("minimum_calls must be at least 1");
                }
                match window {
                    Window::Count(0) => bad("a count window must hold at least 1 call"),
                    Window::Time(d) if d.is_zero() => bad("a time window must not be zero"),
                    _ => {}
                }
            }
            _ => {}
        }
        if self.recovery_timeout.is_zero() {
            bad("recovery_timeout must not be zero");
        }
        if self.half_open_max_calls == 0 {
            bad("half_open_max_calls must be at least 1");
        }
        if self.slow_call.is_some_and(|d| d.is_zero()) {
            bad("the slow-call threshold must not be zero");
        }
        if self.name.is_empty() {
            bad("the circuit needs a name");
        }
        if !problems.is_empty() {
            return Err(CadenceError::Validation { problems });
        }
        Ok(CircuitBreaker {
            inner: Arc::new(BreakerInner {
                name: self.name,
                mode: self.mode,
                recovery_timeout: self.recovery_timeout,
                half_open_max_calls: self.half_open_max_calls,
                slow_call: self.slow_call,
                exclude: self.exclude,
                lock_free: matches!(self.mode, Mode::ConsecutiveFailures { .. })
                    && self.slow_call.is_none()
                    && self.remote.is_none(),
                remote: self.remote,
                state: Mutex::new(BreakerState::new()),
                // Generation 0, closed and clean (see `BreakerInner::clean`).
                clean: AtomicU64::new(1),
            }),
        })
    }
}

struct BreakerState {
    state: CircuitState,
    generation: u64,
    consecutive: u32,
    calls: VecDeque<(Instant, bool)>,
    opened_at: Option<Instant>,
    probes_in_flight: u32,
    probe_successes: u32,
    epoch: u64,
    remote_seen: u64,
    poller_started: bool,
}

impl BreakerState {
    fn new() -> Self {
        BreakerState {
            state: CircuitState::Closed,
            generation: 0,
            consecutive: 0,
            calls: VecDeque::new(),
            opened_at: None,
            probes_in_flight: 0,
            probe_successes: 0,
            epoch: 0,
            remote_seen: 0,
            poller_started: false,
        }
    }
}

struct BreakerInner {
    name: String,
    mode: Mode,
    recovery_timeout: Duration,
    half_open_max_calls: u32,
    slow_call: Option<Duration>,
    exclude: Option<Exclude>,
    remote: Option<(Arc<dyn RemoteCircuitState>, Duration)>,
    state: Mutex<BreakerState>,
    /// Whether calls may be admitted and successes recorded without the lock: consecutive
    /// failures, no slow-call threshold (which needs the clock), no remote state (whose
    /// poller starts on an admission).
    lock_free: bool,
    /// `generation << 1 | 1` while the breaker is closed with no failure counted, else
    /// `generation << 1`: written under the lock after every change of either (see
    /// [`CircuitBreaker::publish_clean`]), read without it.
    clean: AtomicU64,
}

/// A circuit breaker (CB-1…8). Clones share one state.
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<BreakerInner>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.name)
            .field("state", &self.state())
            .finish()
    }
}

/// A state change: (from, to).
pub(crate) type Transition = (CircuitState, CircuitState);

/// How an admitted call ended, for the breaker's accounting (CB-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallResult {
    Success,
    Failure,
    Excluded,
    Cancelled,
}

/// An admitted call. Dropping it unrecorded counts as cancelled (CB-4: not counted, probe
/// permit released). It borrows its breaker (the note's policy outlives its attempts), so
/// admitting a call shares no counter with other runs but the breaker's own state.
pub(crate) struct Permit<'b> {
    breaker: &'b CircuitBreaker,
    generation: u64,
    probe: bool,
    /// When the call started, if a slow-call threshold needs it.
    started: Option<Instant>,
    done: bool,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            let _ = self.breaker.finish(
                self.generation,
                self.probe,
                self.started,
                CallResult::Cancelled,
            );
        }
    }
}

impl Permit<'_> {
    /// Records how the call ended; returns the transition it caused, if any.
    pub(crate) fn record(mut self, result: CallResult) -> Option<Transition> {
        self.done = true;
        self.breaker
            .finish(self.generation, self.probe, self.started, result)
    }
}

/// The admission decision.
pub(crate) enum Admission<'b> {
    Admitted(Permit<'b>, Option<Transition>),
    Rejected {
        retry_after: Duration,
        transition: Option<Transition>,
    },
}

impl CircuitBreaker {
    /// Starts building a breaker named `name`.
    pub fn builder(name: impl Into<String>) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder {
            name: name.into(),
            mode: Mode::ConsecutiveFailures { threshold: 5 },
            recovery_timeout: Duration::from_secs(30),
            half_open_max_calls: 1,
            slow_call: None,
            exclude: None,
            remote: None,
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether two handles share one state.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When a breaker opened at `at` admits a probe (a `recovery_timeout` past what an
    /// `Instant` holds: never, in effect).
    fn reopens(&self, at: Instant) -> Instant {
        crate::timer::after(at, self.inner.recovery_timeout)
    }

    /// Moves an open breaker whose recovery time has passed to half-open.
    fn refresh(&self, st: &mut BreakerState, now: Instant) -> Option<Transition> {
        if st.state == CircuitState::Open && st.opened_at.is_some_and(|at| now >= self.reopens(at))
        {
            return Some(self.transition(st, CircuitState::HalfOpen, now));
        }
        None
    }

    fn transition(&self, st: &mut BreakerState, to: CircuitState, now: Instant) -> Transition {
        let from = st.state;
        st.state = to;
        st.generation += 1;
        st.epoch += 1;
        st.probes_in_flight = 0;
        st.probe_successes = 0;
        match to {
            CircuitState::Open => st.opened_at = Some(now),
            CircuitState::Closed => {
                st.consecutive = 0;
                st.calls.clear();
                st.opened_at = None;
            }
            CircuitState::HalfOpen => {}
        }
        self.publish_clean(st);
        self.publish(st);
        (from, to)
    }

    /// Publishes whether the breaker is closed with no failure counted, and its generation,
    /// for the lock-free path; called under the lock after every change of either.
    fn publish_clean(&self, st: &BreakerState) {
        let clean = st.state == CircuitState::Closed && st.consecutive == 0;
        self.inner
            .clean
            .store(st.generation << 1 | u64::from(clean), Ordering::Release);
    }

    /// Sends the new state to the remote store in the background (CB-8).
    fn publish(&self, st: &BreakerState) {
        let Some((remote, _)) = &self.inner.remote else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let opened_at = st
            .opened_at
            .map(|at| SystemTime::now() - Instant::now().saturating_duration_since(at));
        let snap = RemoteSnapshot::new(st.state, opened_at, st.epoch);
        let remote = remote.clone();
        let name = self.inner.name.clone();
        handle.spawn(async move {
            if let Err(e) = remote.publish(&name, snap).await {
                tracing::warn!(target: "cadence", circuit = %name, "publishing circuit state failed: {e}");
            }
        });
    }

    /// Starts the background poll of the remote state once (CB-8).
    fn ensure_poller(&self, st: &mut BreakerState) {
        if st.poller_started {
            return;
        }
        let Some((remote, every)) = &self.inner.remote else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        st.poller_started = true;
        let weak: Weak<BreakerInner> = Arc::downgrade(&self.inner);
        let (remote, every) = (remote.clone(), *every);
        let name = self.inner.name.clone();
        handle.spawn(async move {
            let Ok(mut tick) = crate::timer::interval(every) else {
                tracing::warn!(
                    target: "cadence",
                    circuit = %name,
                    "not polling the shared circuit state: {}",
                    crate::timer::NoTimeDriver::fix()
                );
                return;
            };
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let breaker = CircuitBreaker { inner };
                match remote.fetch(&name).await {
                    Ok(Some(snap)) => breaker.adopt(&snap),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(target: "cadence", circuit = %name, "reading circuit state failed: {e}")
                    }
                }
            }
        });
    }

    /// Adopts a remote *open* with its remaining recovery time (CB-8).
    pub(crate) fn adopt(&self, snap: &RemoteSnapshot) {
        if snap.state != CircuitState::Open {
            return;
        }
        let mut st = self.lock();
        if snap.epoch <= st.remote_seen {
            return;
        }
        st.remote_seen = snap.epoch;
        if st.state == CircuitState::Open {
            return;
        }
        let now = Instant::now();
        let age = snap
            .opened_at
            .and_then(|at| SystemTime::now().duration_since(at).ok())
            .unwrap_or_default();
        if age >= self.inner.recovery_timeout {
            return;
        }
        let from = st.state;
        st.state = CircuitState::Open;
        st.generation += 1;
        st.epoch = st.epoch.max(snap.epoch);
        st.probes_in_flight = 0;
        st.probe_successes = 0;
        st.opened_at = Some(now.checked_sub(age).unwrap_or(now));
        self.publish_clean(&st);
        tracing::info!(target: "cadence", circuit = %self.inner.name, from = from.as_str(), "adopted a remote open circuit");
    }

    /// CB-3, CB-5: admits a call or rejects it at once.
    ///
    /// The clock is read only when the answer needs it: for a breaker that is not closed (its
    /// recovery time), or one with a slow-call threshold (the call's start). A closed breaker
    /// that counts consecutive failures admits a call with one atomic load while its count is
    /// zero, and with its lock otherwise (see the module's "Cost").
    pub(crate) fn acquire(&self) -> Admission<'_> {
        if self.inner.lock_free {
            let word = self.inner.clean.load(Ordering::Acquire);
            if word & 1 == 1 {
                // Closed: admitted as of this generation, with nothing to start.
                let permit = Permit {
                    breaker: self,
                    generation: word >> 1,
                    probe: false,
                    started: None,
                    done: false,
                };
                return Admission::Admitted(permit, None);
            }
        }
        let mut st = self.lock();
        self.ensure_poller(&mut st);
        let now =
            (st.state != CircuitState::Closed || self.inner.slow_call.is_some()).then(Instant::now);
        let transition = now.and_then(|now| self.refresh(&mut st, now));
        match st.state {
            CircuitState::Closed => Admission::Admitted(self.permit(&st, false, now), transition),
            CircuitState::Open => Admission::Rejected {
                retry_after: match (st.opened_at, now) {
                    (Some(at), Some(now)) => self.reopens(at).saturating_duration_since(now),
                    _ => Duration::ZERO,
                },
                transition,
            },
            CircuitState::HalfOpen => {
                if st.probes_in_flight < self.inner.half_open_max_calls {
                    st.probes_in_flight += 1;
                    Admission::Admitted(self.permit(&st, true, now), transition)
                } else {
                    Admission::Rejected {
                        retry_after: Duration::ZERO,
                        transition,
                    }
                }
            }
        }
    }

    fn permit(&self, st: &BreakerState, probe: bool, now: Option<Instant>) -> Permit<'_> {
        Permit {
            breaker: self,
            generation: st.generation,
            probe,
            started: now.filter(|_| self.inner.slow_call.is_some()),
            done: false,
        }
    }

    /// Whether `e` is excluded from the accounting.
    pub(crate) fn classify(&self, r: Result<(), &CadenceError>) -> CallResult {
        match r {
            Ok(()) => CallResult::Success,
            Err(CadenceError::Cancelled) => CallResult::Cancelled,
            Err(e) if self.inner.exclude.as_ref().is_some_and(|x| x(e)) => CallResult::Excluded,
            Err(_) => CallResult::Failure,
        }
    }

    /// Accounts for a call (CB-4). Reads the clock only for a slow-call threshold, a
    /// failure-rate window or a state change.
    fn finish(
        &self,
        generation: u64,
        probe: bool,
        started: Option<Instant>,
        mut result: CallResult,
    ) -> Option<Transition> {
        if self.inner.lock_free && !probe {
            match result {
                // Not counted in any state (CB-4), and only probes hold anything to release.
                CallResult::Cancelled | CallResult::Excluded => return None,
                // Closed with no failure counted, of this generation: nothing changes.
                CallResult::Success
                    if self.inner.clean.load(Ordering::Acquire) == generation << 1 | 1 =>
                {
                    return None;
                }
                CallResult::Success | CallResult::Failure => {}
            }
        }
        let timed = started.is_some() || matches!(self.inner.mode, Mode::FailureRate { .. });
        let clock = timed.then(Instant::now);
        let now = || clock.unwrap_or_else(Instant::now);
        let mut st = self.lock();
        if generation != st.generation {
            // CB-4: a result from before the last state change is ignored.
            return None;
        }
        if result == CallResult::Success
            && let (Some(t), Some(started)) = (self.inner.slow_call, started)
            && now().saturating_duration_since(started) >= t
        {
            result = CallResult::Failure;
        }
        if probe {
            st.probes_in_flight = st.probes_in_flight.saturating_sub(1);
        }
        match (st.state, result) {
            (_, CallResult::Cancelled | CallResult::Excluded) => None,
            (CircuitState::HalfOpen, CallResult::Success) => {
                st.probe_successes += 1;
                (st.probe_successes >= self.inner.half_open_max_calls)
                    .then(|| self.transition(&mut st, CircuitState::Closed, now()))
            }
            (CircuitState::HalfOpen, CallResult::Failure) => {
                Some(self.transition(&mut st, CircuitState::Open, now()))
            }
            (CircuitState::Closed, r) => {
                let failed = r == CallResult::Failure;
                match self.inner.mode {
                    Mode::ConsecutiveFailures { threshold } => {
                        st.consecutive = if failed { st.consecutive + 1 } else { 0 };
                        self.publish_clean(&st);
                        (st.consecutive >= threshold)
                            .then(|| self.transition(&mut st, CircuitState::Open, now()))
                    }
                    Mode::FailureRate {
                        rate,
                        window,
                        minimum_calls,
                    } => {
                        let now = now();
                        st.calls.push_back((now, failed));
                        trim(&mut st.calls, window, now);
                        let calls = st.calls.len() as u32;
                        let failures = st.calls.iter().filter(|c| c.1).count() as u32;
                        (calls >= minimum_calls && failures as f64 / calls as f64 >= rate)
                            .then(|| self.transition(&mut st, CircuitState::Open, now))
                    }
                }
            }
            (CircuitState::Open, _) => None,
        }
    }

    /// The current state; an open breaker past its recovery time reads as half-open (CB-3).
    ///
    /// Reading does not record the transition: the next call that asks for admission makes it
    /// and reports it to its run's hooks (CB-6), so observers never miss the half-open step.
    pub fn state(&self) -> CircuitState {
        let st = self.lock();
        self.effective(&st, Instant::now())
    }

    fn effective(&self, st: &BreakerState, now: Instant) -> CircuitState {
        match (st.state, st.opened_at) {
            (CircuitState::Open, Some(at)) if now >= self.reopens(at) => CircuitState::HalfOpen,
            (state, _) => state,
        }
    }

    /// Closes the breaker and clears its counts (CB-7).
    pub fn reset(&self) {
        let mut st = self.lock();
        let _ = self.transition(&mut st, CircuitState::Closed, Instant::now());
    }

    /// State and counts (CB-7).
    pub fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let mut st = self.lock();
        if let Mode::FailureRate { window, .. } = self.inner.mode {
            trim(&mut st.calls, window, now);
        }
        let state = self.effective(&st, now);
        let calls = st.calls.len() as u32;
        let failures = st.calls.iter().filter(|c| c.1).count() as u32;
        Snapshot {
            state,
            consecutive_failures: st.consecutive,
            calls,
            failures,
            failure_rate: if calls == 0 {
                0.0
            } else {
                failures as f64 / calls as f64
            },
        }
    }
}

fn trim(calls: &mut VecDeque<(Instant, bool)>, window: Window, now: Instant) {
    match window {
        Window::Count(n) => {
            while calls.len() > n as usize {
                calls.pop_front();
            }
        }
        Window::Time(d) => {
            while calls
                .front()
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) > d)
            {
                calls.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(b: &CircuitBreaker, result: CallResult) -> Option<Transition> {
        match b.acquire() {
            Admission::Admitted(permit, _) => permit.record(result),
            Admission::Rejected { .. } => panic!("rejected"),
        }
    }

    fn clean(b: &CircuitBreaker) -> (u64, bool) {
        let word = b.inner.clean.load(Ordering::Acquire);
        (word >> 1, word & 1 == 1)
    }

    #[test]
    fn the_lock_free_path_counts_as_the_locked_one_does() {
        // CB-2, CB-4: successes reset the count, cancelled and excluded calls are not
        // counted, `threshold` failures in a row open; the published word follows.
        let b = CircuitBreaker::builder("b")
            .consecutive_failures(3)
            .build()
            .unwrap();
        assert!(b.inner.lock_free);
        assert_eq!(clean(&b), (0, true));
        for _ in 0..3 {
            assert_eq!(record(&b, CallResult::Failure), None);
            assert_eq!(clean(&b), (0, false));
            assert_eq!(record(&b, CallResult::Cancelled), None);
            assert_eq!(record(&b, CallResult::Excluded), None);
            assert_eq!(record(&b, CallResult::Failure), None);
            assert_eq!(record(&b, CallResult::Success), None);
            assert_eq!(clean(&b), (0, true), "a success resets the count");
        }
        assert_eq!(record(&b, CallResult::Failure), None);
        assert_eq!(record(&b, CallResult::Failure), None);
        let opened = record(&b, CallResult::Failure);
        assert_eq!(opened, Some((CircuitState::Closed, CircuitState::Open)));
        assert_eq!(clean(&b), (1, false));
        assert!(matches!(b.acquire(), Admission::Rejected { .. }));
        b.reset();
        assert_eq!(clean(&b), (2, true));
        assert_eq!(record(&b, CallResult::Success), None);
    }

    #[test]
    fn a_result_from_an_earlier_generation_changes_nothing() {
        // CB-4: a permit admitted before the breaker opened (and closed again) is ignored,
        // on the lock-free path too.
        let b = CircuitBreaker::builder("b")
            .consecutive_failures(1)
            .build()
            .unwrap();
        let Admission::Admitted(old, _) = b.acquire() else {
            panic!("closed")
        };
        assert_eq!(
            record(&b, CallResult::Failure).map(|t| t.1),
            Some(CircuitState::Open)
        );
        b.reset();
        assert_eq!(
            record(&b, CallResult::Failure).map(|t| t.1),
            Some(CircuitState::Open)
        );
        assert_eq!(
            old.record(CallResult::Success),
            None,
            "stale: not a success now"
        );
        assert_eq!(b.state(), CircuitState::Open);
    }

    #[test]
    fn other_modes_and_slow_calls_take_the_lock() {
        let rate = CircuitBreaker::builder("r")
            .failure_rate(0.5, Window::Count(10), 2)
            .build()
            .unwrap();
        let slow = CircuitBreaker::builder("s")
            .slow_call(Duration::from_secs(1))
            .build()
            .unwrap();
        assert!(!rate.inner.lock_free && !slow.inner.lock_free);
    }

    #[test]
    fn racing_successes_and_failures_open_only_on_failures_in_a_row() {
        // Threads that only succeed never open the breaker, whatever they race with; one
        // that fails `threshold` times in a row with nobody else recording does.
        let b = CircuitBreaker::builder("race")
            .consecutive_failures(1_000_000)
            .build()
            .unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let b = &b;
                s.spawn(move || {
                    for i in 0..20_000 {
                        let r = if t == 0 && i % 7 == 0 {
                            CallResult::Failure
                        } else {
                            CallResult::Success
                        };
                        assert_eq!(record(b, r), None);
                    }
                });
            }
        });
        assert_eq!(b.state(), CircuitState::Closed);
        let consecutive = b.lock().consecutive;
        assert!(consecutive <= 1, "{consecutive}");
        let (generation, is_clean) = clean(&b);
        assert_eq!((generation, is_clean), (0, consecutive == 0));
    }
}
