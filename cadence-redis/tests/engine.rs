//! The engine checkpointing to Redis while Redis is killed and restarted (REDIS-4, CKP-8,
//! CKP-9, CKP-14): runs fail cleanly with a `Checkpoint` error or continue, per the
//! builder's `on_checkpoint_error`; no panic, no hang, no corrupt record, and failed runs
//! resume once Redis is back.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cadence_core::checkpoint::{CheckpointStore, OnCheckpointError};
use cadence_core::{BoxError, Cadence, CadenceError, CheckpointErrorKind, RunOptions, note};
use cadence_redis::Redis;
use serde::{Deserialize, Serialize};

const STEPS: usize = 8;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Steps {
    done: Vec<String>,
}

fn cadence(
    store: Arc<dyn CheckpointStore>,
    policy: OnCheckpointError,
    lease_ttl: Duration,
    started: Arc<AtomicU64>,
) -> Cadence<Steps> {
    let mut b = Cadence::<Steps>::new("outage");
    for i in 0..STEPS {
        let started = started.clone();
        b = b.then(
            format!("s{i}"),
            note::from_fn_with_context(move |s: &mut Steps, cx| {
                started.fetch_add(1, Ordering::Relaxed);
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    s.done.push(cx.path().to_owned());
                    Ok::<_, BoxError>(())
                })
            }),
        );
    }
    b.with_checkpoint(store)
        .on_checkpoint_error(policy)
        .with_lease_ttl(lease_ttl)
        .build()
        .unwrap()
}

fn all_steps() -> Vec<String> {
    (0..STEPS).map(|i| format!("s{i}")).collect()
}

// Fail: runs caught by the outage fail with a clean `Checkpoint` error; once Redis is back,
// running each again resumes from its checkpoint and ends with every step done exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fail_runs_fail_cleanly_and_resume_after_a_restart() {
    let Some(bin) = common::server_bin("engine-fail") else {
        return;
    };
    let mut server = common::Throwaway::start_with(
        bin,
        &[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ],
        None,
    );
    let redis = Redis::builder(server.url())
        .with_command_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let started = Arc::new(AtomicU64::new(0));
    let c = cadence(
        Arc::new(redis.store()),
        OnCheckpointError::Fail,
        Duration::from_secs(1),
        started.clone(),
    );
    let failures = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for r in 0..16 {
        let (c, failures) = (c.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let run_id = format!("run-{r}");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                assert!(Instant::now() < deadline, "{run_id} never finished");
                match c
                    .run_with(Steps::default(), RunOptions::default().with_run_id(&run_id))
                    .await
                {
                    Ok(s) => return s,
                    Err(CadenceError::Checkpoint { kind, source }) => {
                        assert!(
                            matches!(
                                kind,
                                CheckpointErrorKind::Unavailable
                                    | CheckpointErrorKind::LeaseLost
                                    | CheckpointErrorKind::LeaseHeld
                            ),
                            "{kind:?}: {source}"
                        );
                        failures.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("{run_id}: not a clean checkpoint error: {e:?}"),
                }
            }
        }));
    }
    // Kill Redis once the runs are under way, restart it a little later.
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.load(Ordering::Relaxed) < 32 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    tokio::time::sleep(Duration::from_millis(600)).await;
    server.restart();
    for t in tasks {
        let s = t.await.unwrap();
        assert_eq!(s.done, all_steps(), "every step once, in order");
    }
    assert!(failures.load(Ordering::Relaxed) > 0, "the outage was seen");
    // Succeeded runs cleared their records.
    let store = redis.store();
    for r in 0..16 {
        assert_eq!(
            store.load("outage", &format!("run-{r}")).await.unwrap(),
            None
        );
    }
}

// Continue: runs already under way when Redis dies go on without checkpoints and succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_continue_runs_under_way_go_on_without_redis() {
    let Some(bin) = common::server_bin("engine-continue") else {
        return;
    };
    let mut server = common::Throwaway::start(bin);
    let redis = Redis::builder(server.url())
        .with_command_timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let started = Arc::new(AtomicU64::new(0));
    let c = cadence(
        Arc::new(redis.store()),
        OnCheckpointError::Continue,
        // Long enough to outlast the outage: a lease that cannot be renewed before it
        // expires is lost (CKP-9), whatever the save policy.
        Duration::from_secs(20),
        started.clone(),
    );
    let mut tasks = Vec::new();
    for r in 0..8 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.run_with(
                Steps::default(),
                RunOptions::default().with_run_id(format!("run-{r}")),
            )
            .await
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.load(Ordering::Relaxed) < 8 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    for t in tasks {
        let s = t.await.unwrap().expect("the run continues without Redis");
        assert_eq!(s.done, all_steps());
    }
    // A new run cannot start without Redis (its load and lease fail): a clean error.
    let e = c
        .run_with(Steps::default(), RunOptions::default().with_run_id("late"))
        .await
        .unwrap_err();
    match &e {
        CadenceError::Checkpoint { kind, .. } => {
            assert_eq!(*kind, CheckpointErrorKind::Unavailable, "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains(&server.url()), "{e}");
    server.restart();
}
