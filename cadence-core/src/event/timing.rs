//! [`TimingHooks`]: per-run note durations, readable after the run (HOOK-7).

use std::collections::{HashMap, VecDeque};
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::hook::{Hook, HookContext, NoteOutcome, Outcome, RunOutcome};

/// How many runs a [`TimingHooks`] keeps by default.
const DEFAULT_RUNS: usize = 100;

/// Keeps, per run id, each note path's attempt durations and the run's total (HOOK-7), for
/// the last [`with_capacity`](Self::with_capacity) runs (100 by default; the oldest run is
/// forgotten first). Durations are measured by the engine on `tokio::time`, so they are exact
/// on paused time. Child runs are kept under their own run ids. A [`Hook<S>`] for every `S`;
/// cheap to clone (clones share the record).
///
/// ```
/// use cadence_core::{BoxError, Cadence, RunOptions, note};
/// use cadence_core::event::TimingHooks;
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let timing = TimingHooks::new();
/// let c = Cadence::<()>::new("timed")
///     .then("nap", note::from_fn(|_: &mut ()| Box::pin(async {
///         tokio::time::sleep(Duration::from_millis(20)).await;
///         Ok::<_, BoxError>(())
///     })))
///     .with_hooks(timing.clone())
///     .build()
///     .unwrap();
/// c.run_with((), RunOptions::default().with_run_id("r1")).await.unwrap();
///
/// let t = timing.timings("r1").unwrap();
/// assert_eq!(t.note("nap").unwrap().attempts, [Duration::from_millis(20)]);
/// assert_eq!(t.total, Some(Duration::from_millis(20)));
/// println!("{}", timing.report("r1").unwrap());
/// # });
/// ```
#[derive(Clone)]
pub struct TimingHooks {
    inner: Arc<Mutex<Runs>>,
}

impl fmt::Debug for TimingHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let runs = self.lock();
        f.debug_struct("TimingHooks")
            .field("capacity", &runs.capacity)
            .field("runs", &runs.order.len())
            .finish()
    }
}

impl Default for TimingHooks {
    fn default() -> Self {
        TimingHooks::new()
    }
}

struct Runs {
    capacity: usize,
    /// Run ids, oldest first.
    order: VecDeque<String>,
    runs: HashMap<String, Entry>,
}

struct Entry {
    timings: RunTimings,
    /// Note path → index in `timings.notes`.
    index: HashMap<String, usize>,
}

/// The timings of one run (HOOK-7).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTimings {
    /// The run id.
    pub run_id: String,
    /// The cadence's name.
    pub cadence: String,
    /// Each note path with its attempts, in the order the notes first started.
    pub notes: Vec<NoteTimings>,
    /// The run's total duration; `None` while it runs.
    pub total: Option<Duration>,
    /// How the run ended; `None` while it runs.
    pub outcome: Option<Outcome>,
}

impl RunTimings {
    /// The timings of the note at `path`.
    pub fn note(&self, path: &str) -> Option<&NoteTimings> {
        self.notes.iter().find(|n| n.path == path)
    }
}

/// The attempts of one note in one run (HOOK-7).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteTimings {
    /// The note's path.
    pub path: String,
    /// The duration of each attempt, in order (failed and cancelled ones included).
    pub attempts: Vec<Duration>,
}

impl NoteTimings {
    /// The sum of the attempts' durations (waits between attempts excluded).
    pub fn total(&self) -> Duration {
        self.attempts.iter().sum()
    }
}

impl TimingHooks {
    /// Keeps the last 100 runs.
    pub fn new() -> Self {
        TimingHooks {
            inner: Arc::new(Mutex::new(Runs {
                capacity: DEFAULT_RUNS,
                order: VecDeque::new(),
                runs: HashMap::new(),
            })),
        }
    }

    /// Keeps at most `runs` runs (at least 1), forgetting the oldest first.
    #[must_use]
    pub fn with_capacity(self, runs: usize) -> Self {
        {
            let mut r = self.lock();
            r.capacity = runs.max(1);
            r.evict(0);
        }
        self
    }

    /// The timings of run `run_id`, if it is still kept.
    pub fn timings(&self, run_id: &str) -> Option<RunTimings> {
        self.lock().runs.get(run_id).map(|e| e.timings.clone())
    }

    /// The kept run ids, oldest first.
    pub fn run_ids(&self) -> Vec<String> {
        self.lock().order.iter().cloned().collect()
    }

    /// A human-readable table of run `run_id`'s timings, if it is still kept:
    ///
    /// ```text
    /// run r1 of cadence checkout: succeeded in 12.300 ms
    ///   fetch_items     1 attempt     2.100 ms
    ///   charge          3 attempts   10.000 ms  (4.000, 3.000, 3.000)
    /// ```
    pub fn report(&self, run_id: &str) -> Option<String> {
        let t = self.timings(run_id)?;
        let mut out = String::new();
        let _ = write!(out, "run {} of cadence {}: ", t.run_id, t.cadence);
        match (t.outcome, t.total) {
            (Some(o), Some(d)) => {
                let _ = writeln!(out, "{} in {}", o.as_str(), fmt_ms(d));
            }
            _ => out.push_str("running\n"),
        }
        let width = t.notes.iter().map(|n| n.path.chars().count()).max();
        let width = width.unwrap_or(0);
        for n in &t.notes {
            let attempts = n.attempts.len();
            let _ = write!(
                out,
                "  {:<width$}  {attempts} attempt{}  {:>12}",
                n.path,
                if attempts == 1 { " " } else { "s" },
                fmt_ms(n.total()),
            );
            if attempts > 1 {
                let each: Vec<String> = n
                    .attempts
                    .iter()
                    .map(|d| format!("{:.3}", d.as_secs_f64() * 1e3))
                    .collect();
                let _ = write!(out, "  ({})", each.join(", "));
            }
            out.push('\n');
        }
        Some(out)
    }

    fn lock(&self) -> MutexGuard<'_, Runs> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn fmt_ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

impl Runs {
    /// Forgets the oldest runs until `room` more fit.
    fn evict(&mut self, room: usize) {
        while self.order.len() + room > self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.runs.remove(&old);
                }
                None => break,
            }
        }
    }

    /// The entry of `cx`'s run, created (evicting the oldest) if new.
    fn entry(&mut self, cx: &HookContext<'_>) -> &mut Entry {
        if !self.runs.contains_key(cx.run_id()) {
            self.evict(1);
            self.order.push_back(cx.run_id().to_owned());
            self.runs.insert(
                cx.run_id().to_owned(),
                Entry {
                    timings: RunTimings {
                        run_id: cx.run_id().to_owned(),
                        cadence: cx.cadence().to_owned(),
                        notes: Vec::new(),
                        total: None,
                        outcome: None,
                    },
                    index: HashMap::new(),
                },
            );
        }
        self.runs
            .get_mut(cx.run_id())
            .expect("the entry was just inserted")
    }
}

impl Entry {
    /// The timings of the note at `path`, created if new.
    fn note(&mut self, path: &str) -> &mut NoteTimings {
        let i = match self.index.get(path) {
            Some(&i) => i,
            None => {
                self.timings.notes.push(NoteTimings {
                    path: path.to_owned(),
                    attempts: Vec::new(),
                });
                let i = self.timings.notes.len() - 1;
                self.index.insert(path.to_owned(), i);
                i
            }
        };
        &mut self.timings.notes[i]
    }
}

impl<S> Hook<S> for TimingHooks {
    fn on_cadence_start(&self, cx: &HookContext<'_>, _score: &S) {
        self.lock().entry(cx);
    }

    fn on_cadence_end(
        &self,
        cx: &HookContext<'_>,
        _score: &S,
        duration: Duration,
        outcome: &RunOutcome<'_>,
    ) {
        let mut runs = self.lock();
        let e = runs.entry(cx);
        e.timings.total = Some(duration);
        e.timings.outcome = Some(outcome.kind());
    }

    fn on_note_start(&self, cx: &HookContext<'_>, path: &str, _attempt: u32, _score: &S) {
        self.lock().entry(cx).note(path);
    }

    fn on_note_end(
        &self,
        cx: &HookContext<'_>,
        path: &str,
        _attempt: u32,
        duration: Duration,
        _outcome: &NoteOutcome<'_>,
        _score: &S,
    ) {
        self.lock().entry(cx).note(path).attempts.push(duration);
    }
}
