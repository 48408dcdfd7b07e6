//! The crash test's worker: `crash-worker <store dir> <run id> <log path>`.
//!
//! Runs (or resumes) one run of a checkpointing cadence with six measures — a note, a
//! sequence, a parallel group of three merged with SmartMerge, a split, and two more notes —
//! against a `FileStore` in `<store dir>`. Every note appends `<run id> <note path> start` to
//! the log before doing anything, and sleeps 1–5 ms so kills land mid-run; a hook appends
//! `<run id> <path> commit` after each checkpoint save and `<run id> <path> skipped` for each
//! measure or member a resume skips (the last measure's `commit` comes after `clearing`: the
//! clear carries its save). The store is wrapped to append `<run id> - clearing`
//! *before* the record of a finished run is removed (after which the same run id legitimately
//! starts afresh). When the run returns, the worker checks the final score and appends
//! `<run id> - done:<total>` (or `wrong:<score JSON>`). Each line is one `write`
//! on a file opened with `O_APPEND`, followed by `fsync`, so the log survives `kill -9`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cadence_core::checkpoint::{
    CheckpointStore, FileStore, Lease, Record, RunSummary, StoreFuture,
};
use cadence_core::{
    BoxError, Cadence, CadenceError, Hook, HookContext, MergeStrategy, Note, NoteContext,
    RunOptions, SkipReason, cond, note,
};
use cadence_crash_test::{EXPECTED_STEPS, EXPECTED_TOTAL};

/// The run's score.
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, cadence_core::Score,
)]
struct Tally {
    total: u64,
    steps: Vec<String>,
    fanned: Vec<u64>,
}

/// The append-only, fsynced log.
#[derive(Clone)]
struct Log(Arc<Mutex<File>>);

impl Log {
    fn open(path: &Path) -> Self {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("cannot open the log {}: {e}", path.display()));
        Log(Arc::new(Mutex::new(f)))
    }

    fn line(&self, run_id: &str, path: &str, event: &str) {
        let line = format!("{run_id} {path} {event}\n");
        let f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // One write per line: O_APPEND makes it land whole at the end.
        (&*f).write_all(line.as_bytes()).expect("write the log");
        f.sync_data().expect("fsync the log");
    }
}

impl Hook<Tally> for Log {
    fn on_checkpoint_saved(&self, cx: &HookContext<'_>, path: &str, _completed: usize) {
        self.line(cx.run_id(), path, "commit");
    }

    fn on_note_skipped(&self, cx: &HookContext<'_>, path: &str, _reason: SkipReason) {
        self.line(cx.run_id(), path, "skipped");
    }
}

/// The file store, logging `clearing` before a record is removed.
struct LoggedStore {
    inner: FileStore,
    log: Log,
}

impl CheckpointStore for LoggedStore {
    fn load<'a>(&'a self, cadence: &'a str, run_id: &'a str) -> StoreFuture<'a, Option<Record>> {
        self.inner.load(cadence, run_id)
    }

    fn save<'a>(&'a self, record: &'a Record, lease: Option<&'a Lease>) -> StoreFuture<'a, ()> {
        self.inner.save(record, lease)
    }

    fn clear<'a>(&'a self, cadence: &'a str, run_id: &'a str) -> StoreFuture<'a, ()> {
        self.log.line(run_id, "-", "clearing");
        self.inner.clear(cadence, run_id)
    }

    fn list<'a>(&'a self, cadence: Option<&'a str>) -> StoreFuture<'a, Vec<RunSummary>> {
        self.inner.list(cadence)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// A note that logs its start, sleeps 1–5 ms, then applies `f`.
fn step(log: &Log, f: fn(&mut Tally)) -> Note<Tally> {
    let log = log.clone();
    note::from_fn_with_context(move |t: &mut Tally, cx: &NoteContext<'_>| {
        let log = log.clone();
        Box::pin(async move {
            log.line(cx.run_id(), cx.path(), "start");
            tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=5))).await;
            f(t);
            t.steps.push(cx.path().to_owned());
            Ok::<_, BoxError>(())
        })
    })
}

fn cadence(store: Arc<dyn CheckpointStore>, log: &Log) -> Result<Cadence<Tally>, CadenceError> {
    Cadence::<Tally>::new("crash")
        .then("load", step(log, |t| t.total = 10))
        .sequence(
            "prepare",
            [
                note::named("double", step(log, |t| t.total *= 2)),
                note::named("add", step(log, |t| t.total += 3)),
            ],
        )
        .sync_with(
            "fan",
            [
                note::named("a", step(log, |t| t.fanned.push(1))),
                note::named("b", step(log, |t| t.fanned.push(2))),
                note::named("c", step(log, |t| t.fanned.push(3))),
            ],
            MergeStrategy::SmartMerge,
        )
        .split(
            "check",
            cond::named("big", |t: &Tally| t.total > 20),
            [note::named("bonus", step(log, |t| t.total += 100))],
            [note::named("none", step(log, |_| {}))],
        )
        .then(
            "sum",
            step(log, |t| t.total += t.fanned.iter().sum::<u64>()),
        )
        .then("finish", step(log, |t| t.total *= 3))
        .with_hooks(log.clone())
        .with_checkpoint(store)
        .build()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, run_id, log_path] = &args[..] else {
        eprintln!("usage: crash-worker <store dir> <run id> <log path>");
        std::process::exit(2);
    };
    let log = Log::open(Path::new(log_path));
    let store: Arc<dyn CheckpointStore> = Arc::new(LoggedStore {
        inner: FileStore::new(dir),
        log: log.clone(),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let result = rt.block_on(async {
        let c = cadence(store, &log)?;
        c.run_with(
            Tally::default(),
            RunOptions::default().with_run_id(run_id.as_str()),
        )
        .await
    });
    match result {
        Ok(t) => {
            let right =
                t.total == EXPECTED_TOTAL && t.steps == EXPECTED_STEPS && t.fanned == [1, 2, 3];
            if right {
                log.line(run_id, "-", &format!("done:{}", t.total));
            } else {
                let json = serde_json::to_string(&t)
                    .unwrap_or_default()
                    .replace(' ', "_");
                log.line(run_id, "-", &format!("wrong:{json}"));
                std::process::exit(3);
            }
        }
        Err(e) => {
            eprintln!("crash-worker: the run failed: {e}");
            std::process::exit(1);
        }
    }
}
