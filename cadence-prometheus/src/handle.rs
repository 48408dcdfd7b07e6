//! [`MetricsHandle`]: the registry the hook records into and its text exposition; the
//! `cadence_events_dropped_total` collector.

use std::sync::{Mutex, PoisonError};

use cadence_core::EventEmitter;
use prometheus::core::{Collector, Desc};
use prometheus::{IntCounter, Registry, TextEncoder, proto::MetricFamily};

/// The registry a [`PrometheusHook`](crate::PrometheusHook) records into, and its text
/// exposition (PROM-1). Cheap to clone.
///
/// ```
/// use cadence_prometheus::PrometheusHook;
///
/// let (_hook, metrics) = PrometheusHook::builder().build().unwrap();
/// let text = metrics.render();
/// assert!(text.contains("# TYPE cadence_events_dropped_total counter"));
/// assert_eq!(metrics.content_type(), "text/plain; version=0.0.4");
/// ```
#[derive(Debug, Clone)]
pub struct MetricsHandle {
    registry: Registry,
}

impl MetricsHandle {
    pub(crate) fn new(registry: Registry) -> Self {
        MetricsHandle { registry }
    }

    /// The registry: the one given to
    /// [`with_registry`](crate::PrometheusHookBuilder::with_registry), or the hook's own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition (format 0.0.4) of everything in the registry, the application's own
    /// metrics included when the registry is shared: `# HELP` and `# TYPE` per family, then
    /// its samples. Suitable as the body of a `/metrics` response with
    /// [`content_type`](Self::content_type).
    ///
    /// Never fails: a family that cannot be encoded (only possible for a faulty collector the
    /// application registered itself) is left out.
    pub fn render(&self) -> String {
        let encoder = TextEncoder::new();
        let mut text = String::new();
        for family in self.registry.gather() {
            // The encoder checks a family before writing any of it, so a refused family
            // leaves nothing behind.
            let _ = encoder.encode_utf8(std::slice::from_ref(&family), &mut text);
        }
        text
    }

    /// The `Content-Type` of [`render`](Self::render)'s output: `text/plain; version=0.0.4`.
    pub fn content_type(&self) -> &'static str {
        prometheus::TEXT_FORMAT
    }
}

/// `cadence_events_dropped_total`: the sum of the emitters' `dropped()` counts, read whenever
/// the registry is gathered (PROM-2).
pub(crate) struct DroppedEvents {
    counter: IntCounter,
    emitters: Vec<EventEmitter>,
    /// Serialises the read-and-catch-up of concurrent gathers.
    update: Mutex<()>,
}

impl DroppedEvents {
    pub(crate) fn new(emitters: Vec<EventEmitter>) -> prometheus::Result<Self> {
        Ok(DroppedEvents {
            counter: IntCounter::new(
                "cadence_events_dropped_total",
                "Events that event emitters dropped: offered to a full queue, or missed by a \
                 lagging subscriber.",
            )?,
            emitters,
            update: Mutex::new(()),
        })
    }
}

impl Collector for DroppedEvents {
    fn desc(&self) -> Vec<&Desc> {
        self.counter.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        {
            let _serial = self.update.lock().unwrap_or_else(PoisonError::into_inner);
            // Each emitter's count only grows, so the counter catches up and never goes back.
            let total: u64 = self.emitters.iter().map(EventEmitter::dropped).sum();
            let seen = self.counter.get();
            if total > seen {
                self.counter.inc_by(total - seen);
            }
        }
        self.counter.collect()
    }
}
