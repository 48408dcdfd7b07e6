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

use std::fs::{self, OpenOptions};
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;

use cadence_bench_core::harness::{self, Config, Figure, Goal};

/// Every figure of this crate, in the order they run.
const FIGURES: &[Figure] = &[Figure {
    id: "redis.ckpt_commits",
    unit: "ops/s",
    baseline: "fenced EVALSHA",
    goal: Goal::RatioAtLeast(0.7),
    run: commits::ckpt_commits,
}];

const USAGE: &str = "\
usage: cadence-bench-redis [--only <id-prefix>] [--quick] [--out <path>] [--append] [--list]
  --only <prefix>  run only figures whose id starts with <prefix>
  --quick          smoke run: every figure shortened to well under a second
  --out <path>     JSON lines output (default: target/cadence-bench/results.jsonl)
  --append         append to the output instead of truncating it
  --list           print the figure ids and exit";

/// Parsed command line.
#[derive(Debug)]
struct Args {
    only: Option<String>,
    quick: bool,
    out: PathBuf,
    append: bool,
    list: bool,
}

/// Parses the command line; `Err(None)` for `--help`, `Err(Some(msg))` for a usage error.
fn parse_args() -> Result<Args, Option<String>> {
    // `cargo run` sets CARGO_MANIFEST_DIR at run time; else the one seen at compile time.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let mut args = Args {
        only: None,
        quick: false,
        out: manifest_dir.join("../../target/cadence-bench/results.jsonl"),
        append: false,
        list: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--append" => args.append = true,
            "--list" => args.list = true,
            "--only" => args.only = Some(it.next().ok_or(Some("--only needs a value".into()))?),
            "--out" => args.out = it.next().ok_or(Some("--out needs a path".into()))?.into(),
            "-h" | "--help" => return Err(None),
            other => return Err(Some(format!("unknown argument `{other}`"))),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(Some(msg)) => {
            eprintln!("error: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.list {
        for f in FIGURES {
            println!("{}  [{}]  goal {}", f.id, f.unit, f.goal.describe(f.unit));
        }
        return ExitCode::SUCCESS;
    }
    let prefix = args.only.as_deref();
    if !FIGURES
        .iter()
        .any(|f| prefix.is_none_or(|p| f.id.starts_with(p)))
    {
        let ids: Vec<&str> = FIGURES.iter().map(|f| f.id).collect();
        eprintln!(
            "error: no figure id starts with `{}`; figures: {}",
            prefix.unwrap_or_default(),
            ids.join(", ")
        );
        return ExitCode::from(2);
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty())
        && let Err(e) = fs::create_dir_all(dir)
    {
        eprintln!("error: could not create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(args.append)
        .truncate(!args.append)
        .open(&args.out);
    let file = match file {
        Ok(file) => file,
        Err(e) => {
            eprintln!("error: could not open {}: {e}", args.out.display());
            return ExitCode::FAILURE;
        }
    };
    let config = Config { quick: args.quick };
    println!(
        "cadence-bench-redis: {} run{}, {} {}",
        if config.quick { "quick" } else { "full" },
        prefix.map(|p| format!(" of `{p}*`")).unwrap_or_default(),
        if args.append {
            "appending to"
        } else {
            "writing"
        },
        args.out.display()
    );
    let summary = match harness::run(FIGURES, &config, prefix, &mut BufWriter::new(file)) {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!("error: writing {}: {e}", args.out.display());
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{} measured ({} met, {} missed), {} skipped, {} panicked",
        summary.measured,
        summary.met,
        summary.measured - summary.met,
        summary.skipped - summary.panicked,
        summary.panicked
    );
    if summary.panicked > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_in_the_redis_area() {
        for f in FIGURES {
            assert!(f.id.starts_with("redis."), "{}", f.id);
        }
    }

    #[test]
    fn figures_measure_in_quick_mode_or_say_why_not() {
        for f in FIGURES {
            match (f.run)(&Config { quick: true }) {
                harness::Outcome::Measured {
                    value,
                    baseline_value,
                } => assert!(value > 0.0 && baseline_value > 0.0, "{}", f.id),
                harness::Outcome::Skipped { reason } => {
                    assert!(
                        std::env::var_os("CADENCE_REDIS_URL").is_none(),
                        "{}: {reason}",
                        f.id
                    );
                    assert!(reason.contains("CADENCE_REDIS_URL"), "{reason}");
                }
            }
        }
    }
}
