//! Crash test of checkpointing (CKP-11, CKP-14).
//!
//! The `crash-worker` binary runs a six-measure cadence against a `FileStore`, logging
//! every note start and every committed checkpoint to an append-only log; the `sigkill`
//! integration test kills it with SIGKILL at random points, reruns it, and checks the log with
//! [`check_log`].
//!
//! Log lines are `<run id> <path> <event>`, where event is `start` (a note began; its note
//! path), `commit` (a checkpoint was saved after that measure or group member), `skipped` (a
//! resumed run skipped it), `clearing` (the run succeeded and its record is about to be
//! removed, path `-`; the same run id would then start afresh) or `done:<total>` (the run
//! returned, path `-`). Run ids contain no spaces; paths contain none either.
//!
//! The save of a run's last measure is carried by the write that ends the run (CKP-7: here
//! the clear), so its `commit` is logged after `clearing`: such a commit belongs to a run
//! whose record is gone, and does not forbid a fresh start of the same run id.

use std::collections::{BTreeMap, BTreeSet};

/// The final `total` of every run (see the worker's cadence).
pub const EXPECTED_TOTAL: u64 = 387;

/// The final `steps` of every run, in order.
pub const EXPECTED_STEPS: &[&str] = &[
    "load",
    "prepare/double",
    "prepare/add",
    "fan/a",
    "fan/b",
    "fan/c",
    "check/true/bonus",
    "sum",
    "finish",
];

/// The measure (or group member) a commit of `committed` covers `note` with: the path
/// itself, or a prefix followed by `/`.
fn covers(committed: &str, note: &str) -> bool {
    note == committed
        || note
            .strip_prefix(committed)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// What the log says about one run id.
#[derive(Debug, Default)]
pub struct RunLog {
    /// `start` lines, per note path.
    pub starts: BTreeMap<String, usize>,
    /// Committed paths, in order.
    pub commits: Vec<String>,
    /// Skipped paths.
    pub skipped: usize,
    /// Totals of `done` lines.
    pub done: Vec<u64>,
}

/// Parses the log and checks the checkpoint guarantee: for each run id, no note starts after
/// a checkpoint covering it was committed. Returns the runs by id, or the violations.
pub fn check_log(text: &str) -> Result<BTreeMap<String, RunLog>, Vec<String>> {
    let mut runs: BTreeMap<String, RunLog> = BTreeMap::new();
    let mut committed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Runs whose record was cleared and that have not started again since.
    let mut cleared: BTreeSet<String> = BTreeSet::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let parts: Vec<&str> = line.split(' ').collect();
        let [run, path, event] = parts[..] else {
            problems.push(format!("line {}: malformed: {line:?}", n + 1));
            continue;
        };
        let log = runs.entry(run.to_owned()).or_default();
        let done = committed.entry(run.to_owned()).or_default();
        match event {
            "start" => {
                if let Some(c) = done.iter().find(|c| covers(c, path)) {
                    problems.push(format!(
                        "line {}: run {run}: note {path} started again after checkpoint {c} was committed",
                        n + 1
                    ));
                }
                *log.starts.entry(path.to_owned()).or_default() += 1;
                cleared.remove(run);
            }
            "commit" => {
                // After `clearing`: the last measure, saved by the clear itself.
                if !cleared.contains(run) {
                    done.insert(path.to_owned());
                }
                log.commits.push(path.to_owned());
            }
            "skipped" => log.skipped += 1,
            // Logged before the record is removed: from here on a fresh start is legitimate.
            "clearing" => {
                done.clear();
                cleared.insert(run.to_owned());
            }
            e => match e.strip_prefix("done:").map(str::parse::<u64>) {
                Some(Ok(total)) => log.done.push(total),
                _ => problems.push(format!("line {}: unknown event: {line:?}", n + 1)),
            },
        }
    }
    if problems.is_empty() {
        Ok(runs)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_after_its_commit_is_a_violation() {
        let ok = "r1 load start\nr1 load commit\nr1 load skipped\nr1 fan/a start\nr1 fan/a start\nr1 fan/a commit\nr1 fan/b start\nr1 - clearing\nr1 load start\nr1 - done:387\n";
        let runs = check_log(ok).unwrap();
        assert_eq!(runs["r1"].starts["fan/a"], 2);
        assert_eq!(
            runs["r1"].starts["load"], 2,
            "a fresh start after clearing is fine"
        );
        assert_eq!(runs["r1"].done, [387]);

        let bad = "r1 prepare start\nr1 prepare commit\nr1 prepare/add start\n";
        let err = check_log(bad).unwrap_err();
        assert!(
            err[0].contains("prepare/add started again after checkpoint prepare"),
            "{err:?}"
        );
        // Other runs and other measures are independent; `fan` does not cover `fanout`.
        assert!(check_log("r1 a commit\nr2 a start\nr1 fan commit\nr1 fanout start\n").is_ok());
        // The last measure's commit comes with the clear; a fresh start may follow.
        let last =
            "r1 finish start\nr1 - clearing\nr1 finish commit\nr1 load start\nr1 finish start\n";
        assert!(check_log(last).is_ok());
        let again = "r1 - clearing\nr1 load start\nr1 load commit\nr1 load start\n";
        assert!(check_log(again).is_err(), "a start ends the cleared state");
        assert!(check_log("r1 a\n").is_err());
    }
}
