//! Two worker processes share one Redis; one is SIGKILLed mid-run and the other resumes the
//! run (CKP-9, CKP-14, REDIS-1…3).
//!
//! ```text
//! redis-workers demo <redis-url>                 two workers, kill the first, check the log
//! redis-workers worker <redis-url> <run-id> <log>  one worker (run it in two terminals)
//! ```
//!
//! A worker runs the cadence `batch` (ten measures `step-0`…`step-9`, 300 ms each) with the
//! run id it is given, checkpointing to Redis with a 2 s lease. While another worker holds
//! the lease, the run fails at once with `LeaseHeld` and the worker retries every 200 ms; so
//! the second worker takes over about 2 s after the first dies, resumes from the checkpoint
//! and skips every committed measure. Each note appends `<pid> start <path>` and
//! `<pid> end <path>` to the shared log, which `demo` reads to prove it.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cadence_core::checkpoint::CheckpointStore;
use cadence_core::{BoxError, Cadence, CadenceError, CheckpointErrorKind, RunOptions, note};
use cadence_redis::Redis;
use serde::{Deserialize, Serialize};

/// Measures in the cadence.
const STEPS: usize = 10;
/// How long each note works.
const STEP_TIME: Duration = Duration::from_millis(300);
/// The lease: a dead worker's run is free again this long after its last renewal.
const LEASE_TTL: Duration = Duration::from_secs(2);
/// A worker gives up retrying a held run after this long.
const WORKER_PATIENCE: Duration = Duration::from_secs(60);

/// The score: what the run has processed, in order.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Batch {
    processed: Vec<String>,
}

/// Appends one line to the shared log (O_APPEND: whole lines, whichever process writes).
fn log_line(log: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("opening the log");
    file.write_all(format!("{line}\n").as_bytes())
        .expect("writing the log");
    file.sync_data().expect("syncing the log");
}

fn batch(store: Arc<dyn CheckpointStore>, log: PathBuf) -> Cadence<Batch> {
    let pid = std::process::id();
    let mut builder = Cadence::<Batch>::new("batch");
    for i in 0..STEPS {
        let log = log.clone();
        builder = builder.then(
            format!("step-{i}"),
            note::from_fn_with_context(move |b: &mut Batch, cx| {
                let log = log.clone();
                Box::pin(async move {
                    log_line(&log, &format!("{pid} start {}", cx.path()));
                    tokio::time::sleep(STEP_TIME).await;
                    b.processed.push(cx.path().to_owned());
                    log_line(&log, &format!("{pid} end {}", cx.path()));
                    Ok::<_, BoxError>(())
                })
            }),
        );
    }
    builder
        .with_checkpoint(store)
        .with_lease_ttl(LEASE_TTL)
        .build()
        .expect("a valid cadence")
}

/// One worker: runs (or resumes) `run_id` until it succeeds, retrying while the lease is
/// held elsewhere.
async fn worker(url: &str, run_id: &str, log: PathBuf) -> Result<(), String> {
    let pid = std::process::id();
    let redis = Redis::connect(url).await.map_err(|e| e.to_string())?;
    let cadence = batch(Arc::new(redis.store()), log.clone());
    let started = Instant::now();
    let mut waited = false;
    loop {
        let report = cadence
            .run_with_report(Batch::default(), RunOptions::default().with_run_id(run_id))
            .await;
        match report.error {
            None => {
                log_line(
                    &log,
                    &format!(
                        "{pid} finished resumed={} processed={}",
                        report.resumed,
                        report.score.processed.join(",")
                    ),
                );
                println!(
                    "worker {pid}: run '{run_id}' finished (resumed: {}): {}",
                    report.resumed,
                    report.score.processed.join(", ")
                );
                return Ok(());
            }
            Some(CadenceError::Checkpoint {
                kind: CheckpointErrorKind::LeaseHeld,
                ..
            }) if started.elapsed() < WORKER_PATIENCE => {
                if !waited {
                    println!("worker {pid}: run '{run_id}' is held by another worker; waiting");
                    waited = true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Some(e) => return Err(format!("worker {pid}: run '{run_id}' failed: {e}")),
        }
    }
}

/// What the log says one process did.
#[derive(Debug, Default)]
struct Activity {
    started: Vec<String>,
    ended: Vec<String>,
    finished: Option<String>,
}

fn activity(log: &Path, pid: u32) -> Activity {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut a = Activity::default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ' ');
        let (Some(who), Some(what), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if who != pid.to_string() {
            continue;
        }
        match what {
            "start" => a.started.push(rest.to_owned()),
            "end" => a.ended.push(rest.to_owned()),
            "finished" => a.finished = Some(rest.to_owned()),
            _ => {}
        }
    }
    a
}

/// Two workers on one run; the first is SIGKILLed after three committed measures.
async fn demo(url: &str) -> Result<(), String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let run_id = format!("batch-{}-{nanos}", std::process::id());
    let log = std::env::temp_dir().join(format!("{run_id}.log"));
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let spawn = || {
        tokio::process::Command::new(&exe)
            .args(["worker", url, &run_id])
            .arg(&log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting a worker: {e}"))
    };
    let redis = Redis::connect(url).await.map_err(|e| e.to_string())?;
    let store = redis.store();

    let mut first = spawn()?;
    let first_pid = first.id().unwrap_or_default();
    // Let the first worker take the lease before the second asks for it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while activity(&log, first_pid).started.is_empty() {
        if Instant::now() > deadline {
            return Err("the first worker never started a measure".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut second = spawn()?;
    let second_pid = second.id().unwrap_or_default();
    println!(
        "demo: run '{run_id}', workers {first_pid} and {second_pid}, log {}",
        log.display()
    );

    // Kill the first once three measures are committed (in the checkpoint).
    loop {
        let committed = store
            .load("batch", &run_id)
            .await
            .map_err(|e| e.to_string())?
            .map_or(0, |r| r.completed.len());
        if committed >= 3 {
            break;
        }
        if Instant::now() > deadline {
            return Err("the first worker never committed three measures".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.start_kill().map_err(|e| e.to_string())?;
    first.wait().await.map_err(|e| e.to_string())?;
    // Whatever the dead worker had sent is processed by now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let at_kill = store
        .load("batch", &run_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no checkpoint after the kill")?;
    let committed: BTreeSet<String> = at_kill.completed.iter().cloned().collect();
    let killed = activity(&log, first_pid);
    println!(
        "demo: SIGKILLed worker {first_pid}; committed: {}; in flight: {}",
        at_kill.completed.join(", "),
        killed
            .started
            .iter()
            .filter(|s| !committed.contains(*s))
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );

    let status = tokio::time::timeout(Duration::from_secs(60), second.wait())
        .await
        .map_err(|_| "the second worker did not finish within 60 s")?
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("the second worker failed: {status}"));
    }

    // The proof, from the log.
    let resumed = activity(&log, second_pid);
    let all: Vec<String> = (0..STEPS).map(|i| format!("step-{i}")).collect();
    let mut problems = Vec::new();
    for step in &committed {
        if !killed.ended.contains(step) {
            problems.push(format!(
                "{step} is committed but the first worker never ended it"
            ));
        }
        if resumed.started.contains(step) {
            problems.push(format!("{step} was committed and ran again"));
        }
    }
    for step in all.iter().filter(|s| !committed.contains(*s)) {
        if resumed.started.iter().filter(|s| *s == step).count() != 1 {
            problems.push(format!(
                "{step} was not run exactly once by the second worker"
            ));
        }
    }
    let expected = format!("resumed=true processed={}", all.join(","));
    if resumed.finished.as_deref() != Some(expected.as_str()) {
        problems.push(format!(
            "the second worker finished with {:?}, expected {expected:?}",
            resumed.finished
        ));
    }
    if store
        .load("batch", &run_id)
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        problems.push("the checkpoint was not cleared after success".into());
    }
    let _ = std::fs::remove_file(&log);
    if problems.is_empty() {
        println!(
            "demo: OK: worker {second_pid} resumed and ran {} measure(s); no committed measure \
             re-ran ({} committed before the kill)",
            resumed.started.len(),
            committed.len()
        );
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

const USAGE: &str = "usage: redis-workers demo <redis-url>\n       redis-workers worker <redis-url> <run-id> <log-file>";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["demo", url] => demo(url).await,
        ["demo"] => match std::env::var("CADENCE_REDIS_URL") {
            Ok(url) => demo(&url).await,
            Err(_) => Err(format!(
                "no Redis URL given and CADENCE_REDIS_URL unset\n{USAGE}"
            )),
        },
        ["worker", url, run_id, log] => worker(url, run_id, PathBuf::from(log)).await,
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
