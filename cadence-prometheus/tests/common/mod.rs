//! Shared helpers: reading samples out of a text exposition, and `promtool check metrics`.
#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::process::{Command, Stdio};

/// The value of the sample whose name and labels are exactly `series`
/// (`cadence_runs_total{cadence="c",outcome="success"}`), if the exposition has it.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.parse().expect("a sample value"))
    })
}

/// [`sample`], panicking with the exposition when the series is missing.
pub fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// Every sample line (not comments) of the exposition.
pub fn samples(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
}

/// The label names of a sample line.
pub fn label_names(line: &str) -> Vec<&str> {
    let Some((_, rest)) = line.split_once('{') else {
        return Vec::new();
    };
    let labels = &rest[..rest.rfind('}').expect("closing brace")];
    // Label values here hold no `",` sequence, so splitting on it is safe.
    labels
        .split("\",")
        .map(|pair| pair.split_once('=').expect("name=value").0)
        .collect()
}

/// Whether tests that need a service must fail rather than skip when it is missing: under CI
/// or when `cargo xtask test` says every service is provided.
pub fn services_required() -> bool {
    let set = |name: &str| {
        std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
    };
    set("CADENCE_SERVICES_REQUIRED") || set("CI")
}

/// The path in `var`, or `None` (after printing a notice) when it is unset and services are
/// not required; panics when they are.
pub fn service_bin(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(path) if !path.is_empty() => Some(path),
        _ if services_required() => {
            panic!("{var} is not set, but CI / CADENCE_SERVICES_REQUIRED requires the real service")
        }
        _ => {
            eprintln!("skipped: {var} is not set (run through `cargo xtask test`)");
            None
        }
    }
}

/// Runs `promtool check metrics` on `exposition` (on stdin); returns its combined output, or
/// `None` when promtool is not available and not required.
pub fn promtool_check(exposition: &str) -> Option<Result<String, String>> {
    let bin = service_bin("CADENCE_PROMTOOL_BIN")?;
    let mut child = Command::new(&bin)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(exposition.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("waiting for promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    })
}
