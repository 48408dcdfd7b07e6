//! # cadence-redis
//!
//! Redis for [cadence](cadence_core): how Cadence scales past one machine. Many app processes
//! share one Redis; a crashed process's run is resumed by another; a stale process can never
//! overwrite a newer owner's progress.
//!
//! - [`RedisStore`]: the checkpoint store (REDIS-1…4), with leases whose every acquisition
//!   increments a fencing token and whose every save is checked atomically by a Lua script.
//! - [`RedisEventSink`] / [`RedisEventReader`]: events through a Redis stream (REDIS-5), for
//!   dashboards in other processes.
//! - [`RedisCircuitState`]: circuit breakers shared across processes (REDIS-6).
//!
//! All of them run over one [`Redis`] connection (a `redis::aio::ConnectionManager` that
//! reconnects by itself), under one key prefix and TTL, with every command bounded by the
//! command timeout.
//!
//! ```no_run
//! use std::sync::Arc;
//! use cadence_core::{BoxError, Cadence, EventEmitter, RunOptions, note};
//! use cadence_redis::Redis;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let redis = Redis::builder("redis://127.0.0.1:6379/").with_prefix("shop").connect().await?;
//! let events = EventEmitter::new().with_sink(redis.event_sink());
//! let checkout = Cadence::<u32>::new("checkout")
//!     .then("reserve", note::from_fn(|n: &mut u32| Box::pin(async move {
//!         *n += 1;
//!         Ok::<_, BoxError>(())
//!     })))
//!     .with_checkpoint(Arc::new(redis.store()))
//!     .with_hooks(events)
//!     .build()?;
//! // Another process running the same run id after a crash resumes where this one stopped.
//! checkout.run_with(0, RunOptions::default().with_run_id("order-42")).await?;
//! # Ok(()) }
//! ```
//!
//! ## Modules
//!
//! Everything is re-exported at the root: [`Redis`] and [`RedisBuilder`] (the connection and
//! its options), [`RedisStore`], [`RedisEventSink`], [`RedisEventReader`] with [`StartAt`],
//! [`RedisCircuitState`], [`redact_url`], and [`INDEX_ANCHOR`] (the one member of a
//! cadence's run index that is not a run).
//!
//! ## Features
//!
//! - `tls`: `rediss://` URLs, through rustls with the ring crypto provider. Without it such a
//!   URL is refused with a message naming the feature.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod batch;
mod circuit;
mod connection;
mod events;
mod keys;
mod store;

pub use circuit::RedisCircuitState;
pub use connection::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_LEASE_TTL, DEFAULT_PREFIX, DEFAULT_RECORD_TTL, Redis,
    RedisBuilder, redact_url,
};
pub use events::{DEFAULT_BUFFER, DEFAULT_MAX_LEN, RedisEventReader, RedisEventSink, StartAt};
pub use keys::INDEX_ANCHOR;
pub use store::RedisStore;

/// The README's code blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
