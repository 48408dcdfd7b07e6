//! # Cadence
//!
//! Declarative async orchestration for service and AI-pipeline logic. A **cadence** is a
//! named chain of **notes** (async steps) over one **score** (the run's state): notes in
//! sequence, branches, n-way routes and child cadences, each note with its own policies, every
//! run observable through hooks and `tracing` spans.
//!
//! ```
//! use cadence_core::{BoxError, Cadence, Control, note};
//!
//! #[derive(Debug, Default)]
//! struct Order { items: Vec<u32>, total: u32, premium: bool, shipping: &'static str }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let checkout = Cadence::<Order>::new("checkout")
//!     .then("fetch_items", note::from_fn(|o: &mut Order| Box::pin(async move {
//!         o.items = vec![20, 30];
//!         Ok::<_, BoxError>(())
//!     })))
//!     .then("total", note::from_fn(|o: &mut Order| Box::pin(async move {
//!         o.total = o.items.iter().sum();
//!         o.premium = o.total > 40;
//!         Ok::<_, BoxError>(())
//!     })))
//!     .split(
//!         "shipping",
//!         cadence_core::cond::named("is_premium", |o: &Order| o.premium),
//!         [note::from_fn(|o: &mut Order| Box::pin(async move { o.shipping = "express"; Ok::<_, BoxError>(()) }))],
//!         [note::from_fn(|o: &mut Order| Box::pin(async move { o.shipping = "standard"; Ok::<_, BoxError>(()) }))],
//!     )
//!     .build()?;
//!
//! let order = checkout.run(Order::default()).await?;
//! assert_eq!((order.total, order.shipping), (50, "express"));
//! # Ok::<_, cadence_core::CadenceError>(())
//! # }).unwrap();
//! ```
//!
//! ## Modules
//!
//! - [`builder`]: the DSL ([`CadenceBuilder`]) and its validation.
//! - [`note`](mod@note): notes, [`NoteContext`], [`Control`].
//! - [`cond`]: split conditions and route selectors.
//! - [`handler`]: the `on_error` handler.
//! - [`checkpoint`]: checkpoint records and stores, for resuming crashed runs.
//! - [`hook`]: the [`Hook`] trait and its composition.
//! - [`event`]: [`Event`]s, the [`EventEmitter`] and its sinks, [`LoggingHooks`], [`TimingHooks`].
//! - [`score`]: [`Score`], [`Shared`] and [`MergeStrategy`] for parallel groups.
//! - [`policy`]: per-note resilience (retry markers, circuit states).
//! - [`describe`]: descriptions, Mermaid and DOT diagrams.
//! - [`error`]: [`CadenceError`] and friends.
//! - [`hash`]: the stable FNV-1a hash used for keys and fingerprints.
//!
//! ## Panics
//!
//! User panics (in notes, conditions, selectors, handlers, hooks) are caught and reported as
//! errors or logs (GEN-5); this requires `panic = "unwind"` (the default profile setting).
//!
//! ## Runtime
//!
//! Cadences run on any tokio runtime, current-thread or multi-threaded. Whatever has to wait —
//! an attempt's timeout or deadline once the attempt returns `Pending`, a retry delay, the
//! lease renewal of a checkpointed run, the [`EventEmitter`]'s periodic flush — needs tokio's
//! time driver (`enable_time()`, included in `enable_all()` and `#[tokio::main]`). Without
//! it, a note that must wait fails with a [`CadenceError::Validation`] that names the note and
//! the fix, instead of tokio's panic; the background tasks log a warning and go on without
//! their timer.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod builder;
mod cadence;
pub mod checkpoint;
mod clock;
pub mod cond;
pub mod describe;
mod engine;
pub mod error;
pub mod event;
pub mod handler;
pub mod hash;
pub mod hook;
pub mod note;
mod options;
pub mod policy;
pub mod score;
#[cfg(feature = "test-util")]
pub mod testing;
mod timer;

pub use builder::{CadenceBuilder, Validation};
pub use cadence::Cadence;
pub use describe::{Description, Direction};
pub use error::{
    BoxError, CadenceError, CheckpointErrorKind, ErrorKind, MergeConflict, Problem, TimeoutScope,
};
pub use event::{Event, EventEmitter, EventKind, LoggingHooks, TimingHooks};
pub use handler::OnError;
pub use hook::{
    Hook, HookContext, HookMethod, Interest, MeasureKind, MeasureOutcome, NoteId, NoteOutcome,
    Outcome, RunOutcome, SkipReason, TraceContext,
};
pub use note::{Control, Note, NoteContext, Stop};
pub use options::{RunOptions, RunReport};
pub use policy::{circuit_breaker, fallback, retry, timeout};
pub use score::{MergeStrategy, Score, Shared};
pub use tokio_util::sync::CancellationToken;

#[cfg(feature = "macros")]
pub use cadence_macros::{Score, note};

/// The workspace README's code blocks, compiled as doctests so the quick start stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
