//! `cadence-bench-redis`: the `redis.*` figures of `BENCHMARKS.md`, measured with the
//! harness of `cadence-bench-core` and written in its JSON-lines format.
//!
//! ```text
//! cadence-bench-redis [--only <id-prefix>] [--quick] [--out <path>] [--append] [--list]
//! ```
//!
//! A crate of its own so that the core figures keep a dependency graph of cadence-core only.
//! `cargo xtask bench` runs it after the core bench, with `--append`, into the same file.
//! Exit status as for `cadence-bench-core`: 0 when every selected figure ran or was skipped,
//! 1 when a figure panicked or the output could not be written, 2 on a usage error
//! (including an `--only` prefix that selects no figure here).

mod commits;

use std::process::ExitCode;

use cadence_bench_core::harness::{Figure, Goal};

/// Every figure of this crate, in the order they run.
const FIGURES: &[Figure] = &[Figure {
    id: "redis.ckpt_commits",
    unit: "ops/s",
    baseline: "fenced EVALSHA",
    goal: Goal::RatioAtLeast(0.7),
    run: commits::ckpt_commits,
}];

fn main() -> ExitCode {
    cadence_bench_core::cli::main("cadence-bench-redis", FIGURES)
}
