//! The figure registry: every figure `cargo xtask bench` runs, in order.
//!
//! # Adding a figure
//!
//! 1. Write one function `fn my_figure(config: &Config) -> Outcome` (here, or in a module of
//!    its own for bigger ones). Get the repetition plan from [`Config::plan`] (it honours
//!    `--quick`), measure the figure and its baseline *interleaved* with one of the helpers,
//!    and turn the medians into the outcome with `.into()`:
//!    - [`interleave`]: two sync closures `|iters| -> Duration` (timed over `iters`
//!      iterations), reported as ns per iteration;
//!    - [`interleave_async`]: the same with async closures on a current-thread tokio runtime
//!      (`async |iters| { let t = Instant::now(); …; t.elapsed() }`);
//!    - [`interleave_with`] / [`interleave_async_with`]: closures returning any per-sample
//!      figure (bytes, ops/s, ms), for non-time figures;
//!    - `*_on` variants take a runtime you already set things up on.
//!
//!    Return [`Outcome::skipped`] with a reason when the figure cannot run (a service
//!    variable such as `CADENCE_REDIS_URL` unset, [`CountingAlloc::is_installed`] false):
//!    it is then reported with `"value":null`, never left out.
//! 2. Add one line to [`FIGURES`]: id (`core.<name>`, as in `BENCHMARKS.md`), unit (`ns`,
//!    `B`, `ms`, `ops/s`), baseline name, [`Goal`], and the function.
//!
//! `met`, `ratio` and the goal text are computed by the harness from the [`Goal`].
//!
//! [`Config::plan`]: crate::harness::Config::plan
//! [`interleave`]: crate::harness::interleave
//! [`interleave_async`]: crate::harness::interleave_async
//! [`interleave_with`]: crate::harness::interleave_with
//! [`interleave_async_with`]: crate::harness::interleave_async_with
//! [`CountingAlloc::is_installed`]: crate::harness::CountingAlloc::is_installed

use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::engine;
use crate::harness::{Config, Figure, Goal, Outcome, interleave};

/// Every figure, in the order they run and are reported.
pub const FIGURES: &[Figure] = &[
    Figure {
        id: "harness.selftest",
        unit: "ns",
        baseline: "same loop",
        goal: Goal::RatioAtMost(1.5),
        run: selftest,
    },
    Figure {
        id: "core.seq_note",
        unit: "ns",
        baseline: "handwritten",
        goal: Goal::OverheadAtMost(50.0),
        run: engine::seq_note,
    },
    Figure {
        id: "core.run3",
        unit: "ns",
        baseline: "handwritten",
        goal: Goal::AtMost(500.0),
        run: engine::run3,
    },
    Figure {
        id: "core.mem_per_run",
        unit: "B",
        baseline: "handwritten",
        goal: Goal::AtMost(1024.0),
        run: engine::mem_per_run,
    },
    Figure {
        id: "core.sync1000",
        unit: "ns",
        baseline: "join_all",
        goal: Goal::RatioAtMost(1.5),
        run: engine::sync1000,
    },
    Figure {
        id: "core.sync_sleep100",
        unit: "ms",
        baseline: "join_all",
        goal: Goal::RatioAtMost(1.05),
        run: engine::sync_sleep100,
    },
    Figure {
        id: "core.retry3",
        unit: "ns",
        baseline: "handwritten",
        goal: Goal::AtMost(1000.0),
        run: engine::retry3,
    },
    // Not in BENCHMARKS.md: asked for by the resilience issue; the goal is ours.
    Figure {
        id: "core.policy_note",
        unit: "ns",
        baseline: "bare note",
        goal: Goal::OverheadAtMost(250.0),
        run: engine::policy_note,
    },
    Figure {
        id: "core.emitter1",
        unit: "ns",
        baseline: "no hooks",
        goal: Goal::OverheadAtMost(100.0),
        run: crate::emitter::emitter1,
    },
    Figure {
        id: "core.ckpt_mem",
        unit: "ns",
        baseline: "serde_json::to_vec",
        goal: Goal::RatioAtMost(1.5),
        run: crate::checkpoint::ckpt_mem,
    },
    Figure {
        id: "core.ckpt_file",
        unit: "ns",
        baseline: "raw write+fsync+rename+fsync(dir)",
        goal: Goal::RatioAtMost(1.2),
        run: crate::checkpoint::ckpt_file,
    },
];

/// `harness.selftest`: a `Vec` push loop against itself, exercising the whole pipeline
/// (ratio ≈ 1, showing the noise floor of interleaved medians on this machine).
fn selftest(config: &Config) -> Outcome {
    fn push_loop(iters: u64) -> Duration {
        let mut v = Vec::new();
        let start = Instant::now();
        for i in 0..iters {
            v.push(black_box(i));
        }
        let elapsed = start.elapsed();
        black_box(v);
        elapsed
    }
    interleave(&config.plan(2_000_000), push_loop, push_loop).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let mut ids: Vec<&str> = FIGURES.iter().map(|f| f.id).collect();
        for f in FIGURES {
            assert!(f.id.contains('.') && !f.id.contains(' '), "bad id {}", f.id);
            assert!(
                ["ns", "B", "ms", "ops/s"].contains(&f.unit),
                "{}: unit {}",
                f.id,
                f.unit
            );
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), FIGURES.len(), "duplicate figure ids");
    }

    #[test]
    fn selftest_measures_in_quick_mode() {
        match selftest(&Config { quick: true }) {
            Outcome::Measured {
                value,
                baseline_value,
            } => assert!(value > 0.0 && baseline_value > 0.0),
            other => panic!("{other:?}"),
        }
    }
}
