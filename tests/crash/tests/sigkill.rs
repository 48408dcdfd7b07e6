//! The crash test (CKP-11, CKP-14): the `crash-worker` binary runs a checkpointing cadence
//! against a `FileStore` and is killed with SIGKILL at random points, then rerun; the log
//! every note and every checkpoint save appends to proves that no measure re-ran after its
//! checkpoint was committed, and every run finished with the right score.
//!
//! `CADENCE_CRASH_ITERATIONS` sets the number of kills (default 50; hundreds work),
//! `CADENCE_CRASH_SECONDS` bounds the kill loop's time (default 120).
//!
//! Each kill comes after a random delay between 0 and the longer of 30 ms and half the duration
//! of one uninterrupted run (measured first; `CADENCE_CRASH_MAX_DELAY_MS` overrides), so kills land
//! anywhere in a run — during process start, in notes, in the middle of checkpoint saves —
//! on fast and slow (fsync-bound) machines alike, and runs still finish now and then.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cadence_crash_test::{EXPECTED_TOTAL, check_log};

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}")),
        Err(_) => default,
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn worker(store: &Path, run_id: &str, log: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crash-worker"));
    c.arg(store)
        .arg(run_id)
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    c
}

fn finished(log: &Path, run_id: &str) -> bool {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let done = format!("{run_id} - done:");
    text.lines().any(|l| l.starts_with(&done))
}

/// Record files (`*.json`) left in the store.
fn records_left(store: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(store) else {
        return out;
    };
    for d in dirs.flatten() {
        for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            if f.file_name().to_string_lossy().ends_with(".json") {
                out.push(f.path());
            }
        }
    }
    out
}

#[test]
fn sigkill_at_random_points_never_reruns_a_committed_measure() {
    let iterations = env_number("CADENCE_CRASH_ITERATIONS", 50);
    let budget = Duration::from_secs(env_number("CADENCE_CRASH_SECONDS", 120));
    let tmp = TempDir(std::env::temp_dir().join(format!(
        "cadence-crash-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    )));
    std::fs::create_dir_all(&tmp.0).unwrap();
    let store = tmp.0.join("store");
    let log = tmp.0.join("log");

    // One uninterrupted run: checks the worker, and times a run.
    let t = Instant::now();
    let status = worker(&store, "calibration", &log)
        .status()
        .expect("run crash-worker");
    assert!(status.success(), "an uninterrupted run failed: {status}");
    let one_run = t.elapsed();
    let max_delay = match std::env::var("CADENCE_CRASH_MAX_DELAY_MS") {
        Ok(_) => Duration::from_millis(env_number("CADENCE_CRASH_MAX_DELAY_MS", 30)),
        Err(_) => (one_run / 2).max(Duration::from_millis(30)),
    };
    let max_delay_us = u64::try_from(max_delay.as_micros()).unwrap_or(u64::MAX);

    let started = Instant::now();
    let (mut run, mut kills, mut finished_alone) = (0u64, 0u64, 0u64);
    while kills < iterations && started.elapsed() < budget {
        let run_id = format!("run-{run}");
        let mut child = worker(&store, &run_id, &log)
            .spawn()
            .expect("spawn crash-worker");
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..=max_delay_us)));
        let status = match child.try_wait().expect("try_wait") {
            Some(status) => status,
            None => {
                // On Unix, kill() is SIGKILL.
                child.kill().expect("kill crash-worker");
                kills += 1;
                child.wait().expect("wait for crash-worker")
            }
        };
        use std::os::unix::process::ExitStatusExt;
        assert!(
            status.success() || status.signal() == Some(9),
            "crash-worker {run_id} failed on its own: {status} (log: {})",
            log.display()
        );
        // Finished (even if killed right after logging it): the next run id starts afresh.
        if finished(&log, &run_id) {
            finished_alone += u64::from(status.success());
            run += 1;
        }
    }
    // The last run resumes to completion.
    let run_id = format!("run-{run}");
    let status = worker(&store, &run_id, &log)
        .status()
        .expect("run crash-worker");
    assert!(
        status.success(),
        "the final rerun of {run_id} failed: {status}"
    );

    let text = std::fs::read_to_string(&log).expect("read the log");
    let runs = check_log(&text).unwrap_or_else(|problems| {
        panic!(
            "the checkpoint guarantee was broken ({} problems; log kept at {}):\n{}",
            problems.len(),
            log.display(),
            problems.join("\n")
        )
    });
    let ids =
        std::iter::once("calibration".to_owned()).chain((0..=run).map(|r| format!("run-{r}")));
    for id in ids {
        let l = runs
            .get(&id)
            .unwrap_or_else(|| panic!("{id} never started (log: {})", log.display()));
        assert!(
            !l.done.is_empty() && l.done.iter().all(|&t| t == EXPECTED_TOTAL),
            "{id} must finish with total {EXPECTED_TOTAL}, log says {:?}",
            l.done
        );
    }
    let left = records_left(&store);
    assert!(
        left.is_empty(),
        "finished runs clear their records: {left:?}"
    );

    let skipped: usize = runs.values().map(|l| l.skipped).sum();
    let commits: usize = runs.values().map(|l| l.commits.len()).sum();
    let reran: usize = runs
        .values()
        .flat_map(|l| l.starts.values())
        .map(|&n| n.saturating_sub(1))
        .sum();
    eprintln!(
        "crash test: {kills} SIGKILLs (after 0–{max_delay:.0?}; one run takes {one_run:.0?}) in {:.1?}, {} runs finished ({finished_alone} without a kill), \
         {commits} checkpoints committed, {skipped} measures/members skipped on resume, \
         {reran} note executions repeated (in flight at a kill, CKP-14)",
        started.elapsed(),
        run + 1
    );
    if kills >= 20 {
        assert!(
            skipped > 0,
            "with {kills} kills some run must have resumed past a checkpoint"
        );
    }
}
