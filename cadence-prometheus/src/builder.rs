//! [`PrometheusHookBuilder`]: registry, buckets and emitters; [`BuildError`].

use std::fmt;
use std::sync::Arc;

use cadence_core::EventEmitter;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::handle::{DroppedEvents, MetricsHandle};
use crate::histogram::DurationFamily;
use crate::hook::{Families, PrometheusHook};

/// Default buckets of `cadence_run_duration_seconds`, in seconds (PROM-5).
pub const DEFAULT_RUN_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Default buckets of `cadence_note_duration_seconds`, in seconds (PROM-5): finer at the low
/// end than the run buckets, and up to 30 s.
pub const DEFAULT_NOTE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Configures a [`PrometheusHook`]; from [`PrometheusHook::builder`].
///
/// ```
/// use cadence_core::EventEmitter;
/// use cadence_prometheus::PrometheusHook;
/// use prometheus::Registry;
///
/// let registry = Registry::new(); // shared with the application's own metrics
/// let emitter = EventEmitter::new();
/// let (hook, metrics) = PrometheusHook::builder()
///     .with_registry(registry.clone())
///     .with_run_buckets([0.1, 1.0, 10.0])
///     .with_note_buckets([0.01, 0.1, 1.0])
///     .with_emitter(&emitter)
///     .build()
///     .unwrap();
/// assert!(metrics.render().contains("cadence_events_dropped_total 0"));
/// # let _ = hook;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct PrometheusHookBuilder {
    registry: Option<Registry>,
    run_buckets: Vec<f64>,
    note_buckets: Vec<f64>,
    emitters: Vec<EventEmitter>,
}

impl Default for PrometheusHookBuilder {
    fn default() -> Self {
        PrometheusHookBuilder {
            registry: None,
            run_buckets: DEFAULT_RUN_BUCKETS.to_vec(),
            note_buckets: DEFAULT_NOTE_BUCKETS.to_vec(),
            emitters: Vec::new(),
        }
    }
}

impl PrometheusHookBuilder {
    /// A builder with the defaults: a registry of its own, [`DEFAULT_RUN_BUCKETS`] and
    /// [`DEFAULT_NOTE_BUCKETS`], no emitters.
    pub fn new() -> Self {
        PrometheusHookBuilder::default()
    }

    /// Records into `registry` (a clone shares the same metrics) instead of a new one, so that
    /// one `/metrics` endpoint serves the application's metrics and cadence's together. The
    /// registry must not hold `cadence_*` metrics yet: build one hook per registry and clone
    /// it (PROM-1).
    pub fn with_registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Upper bounds (seconds) of the `cadence_run_duration_seconds` buckets: finite and
    /// strictly increasing (`+Inf` is implicit). Default [`DEFAULT_RUN_BUCKETS`] (PROM-5).
    pub fn with_run_buckets(mut self, buckets: impl IntoIterator<Item = f64>) -> Self {
        self.run_buckets = buckets.into_iter().collect();
        self
    }

    /// Upper bounds (seconds) of the `cadence_note_duration_seconds` buckets, as for
    /// [`with_run_buckets`](Self::with_run_buckets). Default [`DEFAULT_NOTE_BUCKETS`].
    pub fn with_note_buckets(mut self, buckets: impl IntoIterator<Item = f64>) -> Self {
        self.note_buckets = buckets.into_iter().collect();
        self
    }

    /// Adds `emitter`'s [`dropped`](EventEmitter::dropped) count to
    /// `cadence_events_dropped_total`, read whenever the registry is gathered (rendered). May
    /// be called for several emitters; their counts add up. Without emitters the counter
    /// stays at 0.
    pub fn with_emitter(mut self, emitter: &EventEmitter) -> Self {
        self.emitters.push(emitter.clone());
        self
    }

    /// Registers the metrics and returns the hook (attach it with
    /// [`with_hooks`](cadence_core::CadenceBuilder::with_hooks); clones share its metrics) and
    /// the handle that renders the registry (PROM-1).
    ///
    /// Fails when a bucket list is empty, not finite or not strictly increasing, or when the
    /// registry already holds a `cadence_*` metric.
    pub fn build(self) -> Result<(PrometheusHook, MetricsHandle), BuildError> {
        let run_buckets = check_buckets("cadence_run_duration_seconds", self.run_buckets)?;
        let note_buckets = check_buckets("cadence_note_duration_seconds", self.note_buckets)?;
        let registry = self.registry.unwrap_or_default();
        let families = Families {
            runs: IntCounterVec::new(
                Opts::new(
                    "cadence_runs_total",
                    "Runs of a cadence that ended, by outcome \
                     (success, partial, stopped, failure, cancelled).",
                ),
                &["cadence", "outcome"],
            )?,
            run_duration: HistogramVec::new(
                HistogramOpts::new(
                    "cadence_run_duration_seconds",
                    "Duration of the runs of a cadence in seconds, whatever their outcome.",
                )
                .buckets(run_buckets),
                &["cadence"],
            )?,
            in_flight: IntGaugeVec::new(
                Opts::new(
                    "cadence_runs_in_flight",
                    "Runs of a cadence that started and have not ended yet.",
                ),
                &["cadence"],
            )?,
            note_duration: Arc::new(DurationFamily::new(
                "cadence_note_duration_seconds",
                "Duration of one attempt of a note in seconds, by outcome \
                 (success, failure, retry, stopped, cancelled).",
                &["cadence", "note", "outcome"],
                note_buckets,
            )?),
            retries: IntCounterVec::new(
                Opts::new(
                    "cadence_note_retries_total",
                    "Failed attempts of a note that were retried.",
                ),
                &["cadence", "note"],
            )?,
            fallbacks: IntCounterVec::new(
                Opts::new(
                    "cadence_fallbacks_total",
                    "Times a note's fallback acted for the failed note.",
                ),
                &["cadence", "note"],
            )?,
            circuit_state: IntGaugeVec::new(
                Opts::new(
                    "cadence_circuit_state",
                    "State of a circuit breaker: 0 closed, 1 half-open, 2 open.",
                ),
                &["circuit"],
            )?,
        };
        let dropped = DroppedEvents::new(self.emitters)?;
        let collectors: [Box<dyn prometheus::core::Collector>; 8] = [
            Box::new(families.runs.clone()),
            Box::new(families.run_duration.clone()),
            Box::new(families.in_flight.clone()),
            Box::new(SharedCollector(families.note_duration.clone())),
            Box::new(families.retries.clone()),
            Box::new(families.fallbacks.clone()),
            Box::new(families.circuit_state.clone()),
            Box::new(dropped),
        ];
        for collector in collectors {
            registry.register(collector).map_err(BuildError::Register)?;
        }
        Ok((PrometheusHook::new(families), MetricsHandle::new(registry)))
    }
}

/// Registers a collector the hook also holds.
struct SharedCollector<C>(Arc<C>);

impl<C: prometheus::core::Collector> prometheus::core::Collector for SharedCollector<C> {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.0.collect()
    }
}

/// Checks a bucket list (PROM-5): non-empty, finite, strictly increasing. A trailing `+Inf`
/// is accepted and dropped (it is implicit).
fn check_buckets(histogram: &'static str, mut buckets: Vec<f64>) -> Result<Vec<f64>, BuildError> {
    if buckets.last() == Some(&f64::INFINITY) {
        buckets.pop();
    }
    let invalid = |reason: String| BuildError::InvalidBuckets { histogram, reason };
    if buckets.is_empty() {
        return Err(invalid("no bucket bounds given".into()));
    }
    if let Some(b) = buckets.iter().find(|b| !b.is_finite()) {
        return Err(invalid(format!("bound {b} is not a finite number")));
    }
    if let Some(w) = buckets.windows(2).find(|w| w[0] >= w[1]) {
        return Err(invalid(format!(
            "bounds must be strictly increasing, but {} is followed by {}",
            w[0], w[1]
        )));
    }
    Ok(buckets)
}

/// Why [`PrometheusHookBuilder::build`] failed.
#[non_exhaustive]
#[derive(Debug)]
pub enum BuildError {
    /// A histogram's bucket bounds are unusable.
    InvalidBuckets {
        /// The histogram (`cadence_run_duration_seconds` or `cadence_note_duration_seconds`).
        histogram: &'static str,
        /// What is wrong with them.
        reason: String,
    },
    /// The registry refused a metric: usually because it already holds the `cadence_*`
    /// metrics of another hook.
    Register(prometheus::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::InvalidBuckets { histogram, reason } => write!(
                f,
                "invalid buckets for {histogram}: {reason}; give finite upper bounds in \
                 strictly increasing order (+Inf is implicit)"
            ),
            BuildError::Register(prometheus::Error::AlreadyReg) => f.write_str(
                "the registry already holds cadence metrics: build one PrometheusHook per \
                 registry and clone it for every cadence",
            ),
            BuildError::Register(e) => write!(f, "could not register the cadence metrics: {e}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Register(e) => Some(e),
            BuildError::InvalidBuckets { .. } => None,
        }
    }
}

impl From<prometheus::Error> for BuildError {
    fn from(e: prometheus::Error) -> Self {
        BuildError::Register(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_buckets_follow_prom_5() {
        // PROM-5
        assert_eq!(DEFAULT_RUN_BUCKETS.len(), 15);
        assert_eq!(DEFAULT_RUN_BUCKETS.last(), Some(&300.0));
        assert_eq!(&DEFAULT_NOTE_BUCKETS[..2], &[0.001, 0.0025]);
        assert_eq!(&DEFAULT_NOTE_BUCKETS[2..], &DEFAULT_RUN_BUCKETS[..12]);
        assert_eq!(DEFAULT_NOTE_BUCKETS.last(), Some(&30.0));
        for b in [DEFAULT_RUN_BUCKETS, DEFAULT_NOTE_BUCKETS] {
            assert!(check_buckets("x", b.to_vec()).is_ok());
        }
    }

    #[test]
    fn bucket_checks() {
        assert_eq!(
            check_buckets("x", vec![1.0, 2.0, f64::INFINITY]).unwrap(),
            [1.0, 2.0]
        );
        for bad in [
            vec![],
            vec![f64::INFINITY],
            vec![1.0, f64::NAN],
            vec![2.0, 1.0],
            vec![1.0, 1.0],
            vec![f64::NEG_INFINITY, 1.0],
        ] {
            let e = check_buckets("cadence_run_duration_seconds", bad.clone()).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("invalid buckets for cadence_run_duration_seconds"),
                "{bad:?}: {e}"
            );
        }
    }
}
