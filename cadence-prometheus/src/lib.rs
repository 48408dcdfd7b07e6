//! # cadence-prometheus
//!
//! Prometheus metrics for [cadence](cadence_core) runs: [`PrometheusHook`] is a
//! [`Hook`](cadence_core::Hook) that records every run, note attempt, retry, fallback and
//! circuit-breaker change into a [`prometheus::Registry`], and [`MetricsHandle::render`] turns
//! that registry into the text exposition a Prometheus server scrapes (PROM-1).
//!
//! ```
//! use cadence_core::{BoxError, Cadence, note};
//! use cadence_prometheus::PrometheusHook;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let (hook, metrics) = PrometheusHook::builder().build()?;
//! let checkout = Cadence::<u32>::new("checkout")
//!     .then("fetch", note::from_fn(|n: &mut u32| Box::pin(async move {
//!         *n += 1;
//!         Ok::<_, BoxError>(())
//!     })))
//!     .with_hooks(hook.clone())
//!     .build()?;
//! checkout.run(0).await?;
//!
//! let text = metrics.render(); // serve this on /metrics
//! assert!(text.contains(r#"cadence_runs_total{cadence="checkout",outcome="success"} 1"#));
//! assert!(text.contains(r#"cadence_runs_in_flight{cadence="checkout"} 0"#));
//! assert!(text.contains(
//!     r#"cadence_note_duration_seconds_count{cadence="checkout",note="fetch",outcome="success"} 1"#
//! ));
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! ## Metrics (PROM-2)
//!
//! | name | type | labels |
//! |---|---|---|
//! | `cadence_runs_total` | counter | `cadence`, `outcome` (`success`, `partial`, `stopped`, `failure`, `cancelled`) |
//! | `cadence_run_duration_seconds` | histogram | `cadence` |
//! | `cadence_runs_in_flight` | gauge | `cadence` |
//! | `cadence_note_duration_seconds` | histogram, per attempt | `cadence`, `note`, `outcome` (`success`, `failure`, `retry`, `stopped`, `cancelled`) |
//! | `cadence_note_retries_total` | counter | `cadence`, `note` |
//! | `cadence_fallbacks_total` | counter | `cadence`, `note` |
//! | `cadence_circuit_state` | gauge (0 closed, 1 half-open, 2 open) | `circuit` |
//! | `cadence_events_dropped_total` | counter, read at render time | — |
//!
//! Durations are in seconds and counters end in `_total`, so the exposition passes
//! `promtool check metrics`. Label values are names from cadence *definitions* only: `cadence`
//! is the name of the cadence an occurrence happened in (a child run counts under the child's
//! name), `note` the note's path relative to that cadence (`enrich/profile`), `circuit` the
//! breaker's name. No label carries a run id or anything else that varies per request, so the
//! number of series is bounded by the definitions (PROM-3).
//!
//! The five `cadence_runs_total` series of a cadence exist (at 0) from its first run on, so
//! `rate(cadence_runs_total{outcome="failure"}[5m])` is defined before the first failure; note
//! series appear when they first happen.
//!
//! ## Attach once, at the root
//!
//! The engine delivers an occurrence inside a child cadence to the parent's hooks and then to
//! the child's own (CHILD-3), with the child's name, so a hook attached to the root already
//! sees every child run. Attach the hook to the cadences you run, not also to the ones you
//! only use as children. If the same hook (or a clone of it) does end up on both, the second
//! delivery of each child occurrence is recognised and ignored, so nothing is counted twice;
//! attaching it twice to the *same* cadence (`.with_hooks(h.clone()).with_hooks(h)`) is not
//! detected and counts everything twice.
//!
//! ## In-flight runs (PROM-4)
//!
//! `cadence_runs_in_flight` goes up at `on_cadence_start` and down at `on_cadence_end`, which
//! the engine reports exactly once per started run, including runs that fail, panic, stop, are
//! cancelled by their token or whose future is dropped (RUN-5). As a second line of defence,
//! the hook never decrements a cadence's gauge below the number of runs it saw start, so the
//! gauge cannot go negative.
//!
//! ## Cost
//!
//! Hooks run inline on the note's path (HOOK-2). Label lookups (`with_label_values`: building
//! the label key, hashing it, a lock) happen once per cadence and note: the resolved handles
//! are cached in read-mostly tables keyed by the label values, so recording a note attempt is
//! one read lock, one short hash and one histogram observation. `cargo xtask bench --only
//! prom` measures the overhead per note (`prom.note` in `BENCHMARKS.md`).
//!
//! ## Modules
//!
//! - [`PrometheusHook`], [`PrometheusHookBuilder`]: the hook and its configuration;
//! - [`MetricsHandle`]: the registry and its text exposition;
//! - [`BuildError`]: what `build()` refuses;
//! - [`DEFAULT_RUN_BUCKETS`], [`DEFAULT_NOTE_BUCKETS`]: histogram buckets (PROM-5).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod builder;
mod cache;
mod handle;
mod histogram;
mod hook;

pub use builder::{BuildError, DEFAULT_NOTE_BUCKETS, DEFAULT_RUN_BUCKETS, PrometheusHookBuilder};
pub use handle::MetricsHandle;
pub use hook::PrometheusHook;

/// Re-export of the `prometheus` crate this adapter records into, so that users name the same
/// version of [`Registry`](prometheus::Registry).
pub use prometheus;

/// This crate's README, compiled as doctests so that its example stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
