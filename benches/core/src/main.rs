//! `cadence-bench-core`: runs the registered figures and writes `results.jsonl`.
//!
//! ```text
//! cadence-bench-core [--only <id-prefix>] [--quick] [--out <path>] [--append] [--list]
//! ```
//!
//! The command line is [`cadence_bench_core::cli`]'s, shared by every bench binary. Exit
//! status: 0 when every selected figure ran or was skipped (a missed goal is not an error), 1
//! when a figure panicked or the output could not be written, 2 on a usage error.

#![deny(unsafe_code)]

use std::process::ExitCode;

use cadence_bench_core::figures::FIGURES;
use cadence_bench_core::harness::CountingAlloc;

/// Counts allocations for memory figures (see [`CountingAlloc`]).
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() -> ExitCode {
    cadence_bench_core::cli::main("cadence-bench-core", FIGURES)
}
