//! `cargo xtask`: project automation for the cadence workspace.
//!
//! Run `cargo xtask --help` for the subcommands. Std only; every external step is a child
//! process whose output streams through (see [`cmd`]), and every service started for a run
//! is stopped again when the run ends, successful or not (see [`services`]).

mod cmd;
mod services;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cmd::{Error, Result};
use services::Services;

/// Printed by `--help` and after a usage error.
const USAGE: &str = "\
cargo xtask: cadence project automation

USAGE:
    cargo xtask test [-- <cargo test args>...]
        Ensure redis-server / prometheus / promtool (apt-get install when root), start a
        throwaway redis-server on a free loopback port, then run
            cargo test --workspace --all-features --all-targets [args]
            cargo test --workspace --all-features --doc [args]
        (`--workspace` is dropped when args select packages with -p/--package).
        Exported to the tests:
            CADENCE_REDIS_URL=redis://127.0.0.1:<port>/
            CADENCE_REDIS_SERVER_BIN, CADENCE_PROMETHEUS_BIN, CADENCE_PROMTOOL_BIN
            CADENCE_SERVICES_REQUIRED=1   (all services present: missing means fail)
        With CI set, a service that cannot be provided is an error.

    cargo xtask bench [--only <id-prefix>] [--quick]
        Same services, then `cargo run --release -p <bench>` for each bench crate
        (cadence-bench-core, then cadence-bench-prometheus and cadence-bench-redis with
        --append), writing target/cadence-bench/results.jsonl (printed at the end). With --only, a bench
        holding no matching figure is passed over; none holding one is an error.

    cargo xtask ci
        cargo fmt --check, clippy -D warnings, rustdoc -D warnings, then `test`.
        Stops at the first failure.

    cargo xtask --help
";

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
enum Task {
    /// `test [-- args]`.
    Test {
        /// Extra arguments for both `cargo test` invocations.
        extra: Vec<String>,
    },
    /// `bench [--only P] [--quick]`.
    Bench {
        /// Only run figures whose id starts with this.
        only: Option<String>,
        /// Short smoke run.
        quick: bool,
    },
    /// `ci`.
    Ci,
    /// `--help`.
    Help,
}

/// Parses the arguments after `cargo xtask`; `Err` holds a usage error message.
fn parse(args: Vec<String>) -> std::result::Result<Task, String> {
    let mut args = args.into_iter();
    let Some(sub) = args.next() else {
        return Err("missing subcommand".into());
    };
    match sub.as_str() {
        "-h" | "--help" | "help" => Ok(Task::Help),
        "test" => {
            let mut extra: Vec<String> = args.collect();
            match extra.first().map(String::as_str) {
                Some("--") => {
                    extra.remove(0);
                }
                Some("-h" | "--help") => return Ok(Task::Help),
                _ => {}
            }
            Ok(Task::Test { extra })
        }
        "bench" => {
            let (mut only, mut quick) = (None, false);
            while let Some(arg) = args.next() {
                match arg.as_str() {
                    "--quick" => quick = true,
                    "--only" => {
                        only = Some(args.next().ok_or("--only needs an id prefix")?);
                    }
                    "-h" | "--help" => return Ok(Task::Help),
                    other => match other.strip_prefix("--only=") {
                        Some(prefix) => only = Some(prefix.to_owned()),
                        None => return Err(format!("unknown bench argument `{other}`")),
                    },
                }
            }
            Ok(Task::Bench { only, quick })
        }
        "ci" => match args.next() {
            None => Ok(Task::Ci),
            Some(arg) if arg == "-h" || arg == "--help" => Ok(Task::Help),
            Some(arg) => Err(format!("`ci` takes no arguments, got `{arg}`")),
        },
        other => Err(format!("unknown subcommand `{other}`")),
    }
}

fn main() -> ExitCode {
    let args: std::result::Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    let task = match args {
        Ok(args) => parse(args),
        Err(bad) => Err(format!("argument is not UTF-8: {bad:?}")),
    };
    let task = match task {
        Ok(task) => task,
        Err(msg) => {
            eprintln!("error: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let root = workspace_root();
    let result = match task {
        Task::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Task::Test { extra } => test(&root, &extra),
        Task::Bench { only, quick } => bench(&root, only.as_deref(), quick),
        Task::Ci => ci(&root),
    };
    // Services were dropped (stopped) inside the task functions before we get here.
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's directory.
///
/// Taken from the `CARGO_MANIFEST_DIR` that `cargo run` sets at run time, falling back to
/// the one seen at compile time (a binary reused from a copy of the workspace elsewhere must
/// not send the steps there).
fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.clone(), Path::to_path_buf)
}

/// Whether cargo arguments (before any `--`) select packages themselves.
fn selects_packages(extra: &[String]) -> bool {
    extra
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a.starts_with("-p") || a == "--package" || a.starts_with("--package="))
}

/// `cargo xtask test`: services, then the test and doctest runs; both always run.
fn test(root: &Path, extra: &[String]) -> Result {
    let mut services = Services::start(services::is_ci())?;
    let test_cmd = |kind: &str| {
        let mut cargo = cmd::cargo(root);
        cargo.arg("test");
        if !selects_packages(extra) {
            cargo.arg("--workspace");
        }
        cargo.args(["--all-features", kind]).args(extra);
        services.apply(&mut cargo);
        cargo
    };
    let mut failures = Vec::new();
    if let Err(e) = cmd::run(&mut test_cmd("--all-targets")) {
        eprintln!("xtask: {e}");
        failures.push(e.to_string());
    }
    // `--doc` fails when the selected packages have no library (e.g. `-p xtask`): that
    // only means there are no doctests to run.
    const NO_LIB: &str = "no library targets found";
    match cmd::run_watching_stderr(&mut test_cmd("--doc"), NO_LIB) {
        (Ok(()), _) => {}
        (Err(_), true) => eprintln!("xtask: no library in the selected packages: no doctests"),
        (Err(e), false) => {
            eprintln!("xtask: {e}");
            failures.push(e.to_string());
        }
    }
    if let Err(e) = services.check() {
        failures.push(format!("service died during the tests: {e}"));
    }
    drop(services);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::new(failures.join("\n")))
    }
}

/// The bench crates, in the order they run: the first writes the results file, the others
/// append to it. Each holds the figures of its own dependency graph (core figures are measured
/// without any adapter in the graph).
const BENCHES: [&str; 3] = [
    "cadence-bench-core",
    "cadence-bench-prometheus",
    "cadence-bench-redis",
];

/// What a bench binary prints when `--only` selects none of its figures
/// (`cadence_bench_core::cli::NO_FIGURE`; xtask stays std-only, so it is repeated here).
const NO_FIGURE: &str = "no figure id starts with";

/// `cargo xtask bench`: services, then every bench binary in release mode; prints the JSONL
/// output. Every bench runs even if one fails.
fn bench(root: &Path, only: Option<&str>, quick: bool) -> Result {
    let services = Services::start(services::is_ci())?;
    let out = root.join("target/cadence-bench/results.jsonl");
    // Never print a previous run's figures as this run's.
    match std::fs::remove_file(&out) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::new(format!(
                "could not remove {}: {e}",
                out.display()
            )));
        }
        _ => {}
    }
    let (mut failures, mut selected) = (Vec::new(), 0);
    for (i, package) in BENCHES.into_iter().enumerate() {
        let mut cargo = cmd::cargo(root);
        cargo.args(["run", "--release", "-p", package, "--"]);
        if let Some(prefix) = only {
            cargo.args(["--only", prefix]);
        }
        if quick {
            cargo.arg("--quick");
        }
        cargo.arg("--out").arg(&out);
        if i > 0 {
            cargo.arg("--append");
        }
        services.apply(&mut cargo);
        match cmd::run_watching_stderr(&mut cargo, NO_FIGURE) {
            (Ok(()), _) => selected += 1,
            (Err(_), true) if only.is_some() => {
                eprintln!("xtask: {package} has no figure selected by --only; passed over");
            }
            (Err(e), _) => {
                eprintln!("xtask: {e}");
                failures.push(e.to_string());
            }
        }
    }
    drop(services);
    if selected == 0 && failures.is_empty() {
        failures.push(format!(
            "no bench has a figure whose id starts with `{}`",
            only.unwrap_or_default()
        ));
    }
    match std::fs::read_to_string(&out) {
        Ok(text) if text.is_empty() => {}
        Ok(text) => {
            println!("\n{}:", out.display());
            print!("{text}");
        }
        Err(e) if failures.is_empty() => {
            return Err(Error::new(format!("could not read {}: {e}", out.display())));
        }
        Err(_) => {}
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::new(failures.join("\n")))
    }
}

/// `cargo xtask ci`: fmt, clippy, rustdoc, test; stops at the first failure.
fn ci(root: &Path) -> Result {
    cmd::run(cmd::cargo(root).args(["fmt", "--all", "--", "--check"]))?;
    cmd::run(cmd::cargo(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    cmd::run(cmd::cargo(root).env("RUSTDOCFLAGS", "-Dwarnings").args([
        "doc",
        "--workspace",
        "--no-deps",
        "--all-features",
    ]))?;
    test(root, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_subcommands() {
        assert_eq!(parse(args(&["--help"])), Ok(Task::Help));
        assert_eq!(parse(args(&["ci"])), Ok(Task::Ci));
        assert_eq!(parse(args(&["test"])), Ok(Task::Test { extra: Vec::new() }));
        assert_eq!(
            parse(args(&["test", "--", "-p", "x", "--", "--nocapture"])),
            Ok(Task::Test {
                extra: args(&["-p", "x", "--", "--nocapture"])
            })
        );
        assert_eq!(
            parse(args(&["bench", "--quick", "--only", "core."])),
            Ok(Task::Bench {
                only: Some("core.".into()),
                quick: true
            })
        );
        assert_eq!(
            parse(args(&["bench", "--only=redis"])),
            Ok(Task::Bench {
                only: Some("redis".into()),
                quick: false
            })
        );
    }

    #[test]
    fn rejects_bad_usage() {
        assert!(parse(args(&[])).is_err());
        assert!(parse(args(&["frobnicate"])).is_err());
        assert!(parse(args(&["bench", "--only"])).is_err());
        assert!(parse(args(&["bench", "--slow"])).is_err());
        assert!(parse(args(&["ci", "extra"])).is_err());
    }

    #[test]
    fn detects_package_selection() {
        assert!(selects_packages(&args(&["-p", "x"])));
        assert!(selects_packages(&args(&["-px"])));
        assert!(selects_packages(&args(&["--package=x"])));
        assert!(!selects_packages(&args(&["--", "-p"])));
        assert!(!selects_packages(&args(&["--release"])));
    }

    #[test]
    fn root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("xtask").is_dir());
    }
}
