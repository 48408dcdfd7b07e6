//! `cadence-bench-core`: runs the registered figures and writes `results.jsonl`.
//!
//! ```text
//! cadence-bench-core [--only <id-prefix>] [--quick] [--out <path>] [--list]
//! ```
//!
//! Exit status: 0 when every selected figure ran or was skipped (a missed goal is not an
//! error), 1 when a figure panicked or the output could not be written, 2 on a usage error.

#![deny(unsafe_code)]

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;

use cadence_bench_core::figures::FIGURES;
use cadence_bench_core::harness::{self, Config, CountingAlloc};

/// Counts allocations for memory figures (see [`CountingAlloc`]).
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Printed by `--help` and after a usage error.
const USAGE: &str = "\
usage: cadence-bench-core [--only <id-prefix>] [--quick] [--out <path>] [--list]
  --only <prefix>  run only figures whose id starts with <prefix>
  --quick          smoke run: every figure shortened to well under a second
  --out <path>     JSON lines output (default: target/cadence-bench/results.jsonl);
                   parent directories are created, the file is truncated
  --list           print the figure ids and exit";

/// Parsed command line.
#[derive(Debug)]
struct Args {
    /// `--only`.
    only: Option<String>,
    /// `--quick`.
    quick: bool,
    /// `--out`.
    out: PathBuf,
    /// `--list`.
    list: bool,
}

/// `<workspace>/target/cadence-bench/results.jsonl`, from the `CARGO_MANIFEST_DIR` that
/// `cargo run` sets at run time (else the one seen at compile time).
fn default_out() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir.join("../../target/cadence-bench/results.jsonl")
}

/// Parses the command line; `Err(None)` for `--help`, `Err(Some(msg))` for a usage error.
fn parse_args() -> Result<Args, Option<String>> {
    let mut args = Args {
        only: None,
        quick: false,
        out: default_out(),
        list: false,
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let arg = arg
            .into_string()
            .map_err(|a| Some(format!("argument is not UTF-8: {a:?}")))?;
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--list" => args.list = true,
            "--only" => {
                let prefix = it
                    .next()
                    .ok_or_else(|| Some("--only needs a value".into()))?;
                args.only = Some(
                    prefix
                        .into_string()
                        .map_err(|a| Some(format!("argument is not UTF-8: {a:?}")))?,
                );
            }
            "--out" => {
                args.out = it
                    .next()
                    .ok_or_else(|| Some("--out needs a path".into()))?
                    .into();
            }
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
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty())
        && let Err(e) = fs::create_dir_all(dir)
    {
        eprintln!("error: could not create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let file = match File::create(&args.out) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("error: could not create {}: {e}", args.out.display());
            return ExitCode::FAILURE;
        }
    };
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
    let config = Config { quick: args.quick };
    println!(
        "cadence-bench-core: {} run{}, writing {}",
        if config.quick { "quick" } else { "full" },
        prefix.map(|p| format!(" of `{p}*`")).unwrap_or_default(),
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
