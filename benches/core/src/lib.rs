//! The cadence core bench harness: measures the figures of `BENCHMARKS.md` and writes them
//! as JSON lines. Run it through `cargo xtask bench [--only PREFIX] [--quick]`.
//!
//! - [`harness`]: goals, interleaved measurement, output format, counting allocator;
//! - [`figures`]: the registry, and how to add a figure;
//! - [`checkpoint`]: the checkpoint figures, whose score and cadence `examples/hotpath.rs` runs too;
//! - [`fixtures`]: the score and notes of the engine figures (also used by `examples/hotpath.rs`);
//! - [`cli`]: the command line of every bench binary (this one and the adapters' bench crates).

#![deny(unsafe_code)]

pub mod checkpoint;
pub mod cli;
mod emitter;
mod engine;
pub mod figures;
pub mod fixtures;
pub mod harness;

/// The unit tests count allocations too (the bench binary installs its own).
#[cfg(test)]
#[global_allocator]
static ALLOC: harness::CountingAlloc = harness::CountingAlloc;
