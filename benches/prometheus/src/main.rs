//! `cadence-bench-prometheus`: the `prom.*` figures of `BENCHMARKS.md`, measured with the
//! harness of `cadence-bench-core` and written in its JSON-lines format.
//!
//! ```text
//! cadence-bench-prometheus [--only <id-prefix>] [--quick] [--out <path>] [--append] [--list]
//! ```
//!
//! A crate of its own so that the core figures keep a dependency graph of cadence-core only.
//! `cargo xtask bench` runs it after the core bench, with `--append`, into the same file. The
//! command line and exit status are [`cadence_bench_core::cli`]'s.

mod prom;

use std::process::ExitCode;

use cadence_bench_core::harness::{Figure, Goal};

/// Every figure of this crate, in the order they run.
const FIGURES: &[Figure] = &[
    Figure {
        id: "prom.note",
        unit: "ns",
        baseline: "no hooks",
        goal: Goal::OverheadAtMost(150.0),
        run: prom::note,
    },
    // Not in BENCHMARKS.md: the hook's own share of prom.note, against a hook that does
    // nothing (what the engine costs once any hook is attached). The goal is ours.
    Figure {
        id: "prom.note_vs_noop_hook",
        unit: "ns",
        baseline: "no-op hook",
        goal: Goal::OverheadAtMost(100.0),
        run: prom::note_vs_noop_hook,
    },
];

fn main() -> ExitCode {
    cadence_bench_core::cli::main("cadence-bench-prometheus", FIGURES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cadence_bench_core::harness::{Config, Outcome};

    #[test]
    fn ids_are_in_the_prom_area() {
        for f in FIGURES {
            assert!(f.id.starts_with("prom."), "{}", f.id);
        }
    }

    #[test]
    fn figures_measure_in_quick_mode() {
        for f in FIGURES {
            match (f.run)(&Config { quick: true }) {
                Outcome::Measured {
                    value,
                    baseline_value,
                } => assert!(value > 0.0 && baseline_value > 0.0, "{}", f.id),
                other => panic!("{}: {other:?}", f.id),
            }
        }
    }
}
