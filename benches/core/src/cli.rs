//! The command line every bench binary shares: [`main`] parses the arguments, runs the
//! selected figures through [`harness::run`] and writes the JSON lines.
//!
//! ```text
//! <bench> [--only <id-prefix>] [--quick] [--out <path>] [--append] [--list]
//! ```
//!
//! Exit status: 0 when every selected figure ran or was skipped (a missed goal is not an
//! error), 1 when a figure panicked or the output could not be written, 2 on a usage error,
//! including an `--only` prefix that selects none of the binary's figures (reported with
//! [`NO_FIGURE`] on stderr, which `cargo xtask bench` looks for to pass such a binary over).

use std::fs::{self, OpenOptions};
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::harness::{self, Config, Figure};

/// The start of the error printed when `--only` selects no figure of the binary.
pub const NO_FIGURE: &str = "no figure id starts with";

/// Parsed command line.
#[derive(Debug)]
struct Args {
    /// `--only`.
    only: Option<String>,
    /// `--quick`.
    quick: bool,
    /// `--out`.
    out: PathBuf,
    /// `--append`.
    append: bool,
    /// `--list`.
    list: bool,
}

/// The usage text of the binary `name`.
fn usage(name: &str) -> String {
    format!(
        "usage: {name} [--only <id-prefix>] [--quick] [--out <path>] [--append] [--list]
  --only <prefix>  run only figures whose id starts with <prefix>
  --quick          smoke run: every figure shortened to well under a second
  --out <path>     JSON lines output (default: target/cadence-bench/results.jsonl);
                   parent directories are created, the file is truncated
  --append         append to the output instead of truncating it (for a second binary)
  --list           print the figure ids and exit"
    )
}

/// `<workspace>/target/cadence-bench/results.jsonl`, from the `CARGO_MANIFEST_DIR` that
/// `cargo run` sets at run time (else the one seen at compile time). Every bench crate sits
/// two levels below the workspace root (`benches/<name>`).
fn default_out() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir.join("../../target/cadence-bench/results.jsonl")
}

/// Parses `args`; `Err(None)` for `--help`, `Err(Some(msg))` for a usage error.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, Option<String>> {
    let mut parsed = Args {
        only: None,
        quick: false,
        out: default_out(),
        append: false,
        list: false,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => parsed.quick = true,
            "--append" => parsed.append = true,
            "--list" => parsed.list = true,
            "--only" => parsed.only = Some(it.next().ok_or(Some("--only needs a value".into()))?),
            "--out" => parsed.out = it.next().ok_or(Some("--out needs a path".into()))?.into(),
            "-h" | "--help" => return Err(None),
            other => return Err(Some(format!("unknown argument `{other}`"))),
        }
    }
    Ok(parsed)
}

/// The whole `main` of a bench binary called `name` holding `figures`: see the module docs.
///
/// The output is opened (created, and truncated unless `--append`) before `--only` is
/// checked, so that a run selecting nothing never leaves a previous run's figures behind.
pub fn main(name: &str, figures: &[Figure]) -> ExitCode {
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    let args = match args {
        Ok(args) => parse_args(args),
        Err(bad) => Err(Some(format!("argument is not UTF-8: {bad:?}"))),
    };
    let args = match args {
        Ok(args) => args,
        Err(None) => {
            println!("{}", usage(name));
            return ExitCode::SUCCESS;
        }
        Err(Some(msg)) => {
            eprintln!("error: {msg}\n{}", usage(name));
            return ExitCode::from(2);
        }
    };
    if args.list {
        for f in figures {
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
    let prefix = args.only.as_deref();
    if !figures
        .iter()
        .any(|f| prefix.is_none_or(|p| f.id.starts_with(p)))
    {
        let ids: Vec<&str> = figures.iter().map(|f| f.id).collect();
        eprintln!(
            "error: {NO_FIGURE} `{}`; figures: {}",
            prefix.unwrap_or_default(),
            ids.join(", ")
        );
        return ExitCode::from(2);
    }
    let config = Config { quick: args.quick };
    println!(
        "{name}: {} run{}, {} {}",
        if config.quick { "quick" } else { "full" },
        prefix.map(|p| format!(" of `{p}*`")).unwrap_or_default(),
        if args.append {
            "appending to"
        } else {
            "writing"
        },
        args.out.display()
    );
    let summary = match harness::run(figures, &config, prefix, &mut BufWriter::new(file)) {
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

    fn parse(list: &[&str]) -> Result<Args, Option<String>> {
        parse_args(list.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn parses_every_option() {
        let a = parse(&["--quick", "--only", "prom.", "--out", "x.jsonl", "--append"]).unwrap();
        assert_eq!(a.only.as_deref(), Some("prom."));
        assert!(a.quick && a.append && !a.list);
        assert_eq!(a.out, PathBuf::from("x.jsonl"));
        let a = parse(&[]).unwrap();
        assert!(!a.append && a.out.ends_with("target/cadence-bench/results.jsonl"));
        assert!(parse(&["--list"]).unwrap().list);
    }

    #[test]
    fn rejects_bad_usage() {
        assert!(matches!(parse(&["--help"]), Err(None)));
        assert!(matches!(parse(&["--only"]), Err(Some(_))));
        assert!(matches!(parse(&["--out"]), Err(Some(_))));
        assert!(matches!(parse(&["--slow"]), Err(Some(_))));
    }
}
