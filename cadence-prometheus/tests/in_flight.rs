//! PROM-4: `cadence_runs_in_flight` returns to zero after runs ending in every way — success,
//! failure, note panic, stop, partial, a dropped run future and a fired cancellation token —
//! and counts the runs that are really in flight meanwhile.

mod common;

use std::time::Duration;

use cadence_core::retry::{Backoff, Jitter, Permanent, Retry};
use cadence_core::{
    BoxError, Cadence, CadenceError, CancellationToken, Control, ErrorKind, OnError, RunOptions,
};
use cadence_prometheus::{MetricsHandle, PrometheusHook};
use common::value;
use tokio::task::JoinSet;

/// How a run of the mix ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Kind {
    #[default]
    Succeed,
    /// Fails once, is retried, then succeeds.
    Flaky,
    Fail,
    Panic,
    Stop,
    /// Fails on the lenient cadence, whose `OnError::Continue` handler absorbs it.
    Partial,
    /// Hangs until its run future is dropped by a timeout.
    Dropped,
    /// Hangs until the run's cancellation token fires.
    Token,
}

const KINDS: [Kind; 8] = [
    Kind::Succeed,
    Kind::Flaky,
    Kind::Fail,
    Kind::Panic,
    Kind::Stop,
    Kind::Partial,
    Kind::Dropped,
    Kind::Token,
];

#[derive(Debug, Default, Clone)]
struct Job {
    kind: Kind,
    attempts: u32,
}

#[cadence_core::note]
async fn prepare(job: &mut Job) -> Result<(), BoxError> {
    tokio::task::yield_now().await;
    job.attempts = 0;
    Ok(())
}

#[cadence_core::note]
async fn work(job: &mut Job) -> Result<Control, BoxError> {
    job.attempts += 1;
    match job.kind {
        Kind::Succeed => Ok(Control::Continue),
        Kind::Flaky if job.attempts == 1 => Err("try again".into()),
        Kind::Flaky => Ok(Control::Continue),
        Kind::Fail | Kind::Partial => Err(Permanent::new("declined").into()),
        Kind::Panic => panic!("the note panicked"),
        Kind::Stop => Ok(Control::stop_because("done early")),
        Kind::Dropped | Kind::Token => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Control::Continue)
        }
    }
}

fn cadences(hook: &PrometheusHook) -> (Cadence<Job>, Cadence<Job>) {
    // Only `Flaky` is retried: `Fail` errors are permanent, panics are not retried.
    let retry = || {
        Retry::new(3)
            .with_backoff(Backoff::fixed(Duration::ZERO))
            .with_jitter(Jitter::None)
            .retry_if(|e| e.kind() != ErrorKind::Panicked)
    };
    let jobs = Cadence::new("jobs")
        .then("prepare", prepare)
        .then("work", work.with_retry(retry()))
        .with_hooks(hook.clone())
        .build()
        .unwrap();
    let lenient = Cadence::new("lenient")
        .then("prepare", prepare)
        .then("work", work)
        .on_error(|_: &mut Job, _: &CadenceError| (), OnError::Continue)
        .with_hooks(hook.clone())
        .build()
        .unwrap();
    (jobs, lenient)
}

/// Spawns one run of `kind`; dropped runs are wrapped in a timeout, token runs get `token`.
fn spawn_run(
    set: &mut JoinSet<()>,
    (jobs, lenient): &(Cadence<Job>, Cadence<Job>),
    kind: Kind,
    token: &CancellationToken,
) {
    let job = Job { kind, attempts: 0 };
    let (jobs, lenient, token) = (jobs.clone(), lenient.clone(), token.clone());
    set.spawn(async move {
        match kind {
            Kind::Partial => {
                lenient.run(job).await.unwrap();
            }
            Kind::Dropped => {
                let timed = tokio::time::timeout(Duration::from_millis(10), jobs.run(job)).await;
                assert!(timed.is_err(), "the run hangs until dropped");
            }
            Kind::Token => {
                let err = jobs
                    .run_with(job, RunOptions::default().with_cancellation(token))
                    .await
                    .unwrap_err();
                assert!(matches!(err, CadenceError::Cancelled), "{err:?}");
            }
            Kind::Succeed | Kind::Flaky | Kind::Stop => {
                jobs.run(job).await.unwrap();
            }
            Kind::Fail | Kind::Panic => {
                jobs.run(job).await.unwrap_err();
            }
        }
    });
}

fn runs(metrics: &MetricsHandle, cadence: &str, outcome: &str) -> f64 {
    value(
        &metrics.render(),
        &format!(r#"cadence_runs_total{{cadence="{cadence}",outcome="{outcome}"}}"#),
    )
}

fn in_flight(metrics: &MetricsHandle, cadence: &str) -> f64 {
    value(
        &metrics.render(),
        &format!(r#"cadence_runs_in_flight{{cadence="{cadence}"}}"#),
    )
}

#[tokio::test(start_paused = true)]
async fn in_flight_is_zero_after_1000_runs_of_every_outcome() {
    // PROM-4
    let (hook, metrics) = PrometheusHook::builder().build().unwrap();
    let cadences = cadences(&hook);
    let token = CancellationToken::new();
    let mut set = JoinSet::new();
    for i in 0..1000 {
        spawn_run(&mut set, &cadences, KINDS[i % KINDS.len()], &token);
    }
    // Every run that does not hang has ended by now; the 250 hanging ones are in flight.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(in_flight(&metrics, "jobs"), 250.0);
    assert_eq!(in_flight(&metrics, "lenient"), 0.0);

    // The timeouts (10 ms) drop 125 run futures.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(in_flight(&metrics, "jobs"), 125.0);
    token.cancel();
    while let Some(joined) = set.join_next().await {
        joined.expect("a run task");
    }

    assert_eq!(in_flight(&metrics, "jobs"), 0.0);
    assert_eq!(in_flight(&metrics, "lenient"), 0.0);
    assert_eq!(runs(&metrics, "jobs", "success"), 250.0);
    assert_eq!(runs(&metrics, "jobs", "failure"), 250.0);
    assert_eq!(runs(&metrics, "jobs", "stopped"), 125.0);
    assert_eq!(runs(&metrics, "jobs", "cancelled"), 250.0);
    assert_eq!(runs(&metrics, "lenient", "partial"), 125.0);
    let text = metrics.render();
    assert_eq!(
        value(
            &text,
            r#"cadence_note_retries_total{cadence="jobs",note="work"}"#
        ),
        125.0
    );
    assert_eq!(
        value(
            &text,
            r#"cadence_note_duration_seconds_count{cadence="jobs",note="work",outcome="cancelled"}"#
        ),
        250.0
    );
    // Every run that started ended, and the engine counted no hook panic.
    assert_eq!(
        value(
            &text,
            r#"cadence_run_duration_seconds_count{cadence="jobs"}"#
        ),
        875.0
    );
    assert_eq!(cadences.0.hook_panics(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_is_zero_after_concurrent_runs_on_many_threads() {
    // PROM-4 with real threads: runs move between workers; the gauge still returns to zero.
    let (hook, metrics) = PrometheusHook::builder().build().unwrap();
    let cadences = cadences(&hook);
    let token = CancellationToken::new();
    let mut set = JoinSet::new();
    for i in 0..400 {
        spawn_run(&mut set, &cadences, KINDS[i % KINDS.len()], &token);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    token.cancel();
    while let Some(joined) = set.join_next().await {
        joined.expect("a run task");
    }
    assert_eq!(in_flight(&metrics, "jobs"), 0.0);
    assert_eq!(in_flight(&metrics, "lenient"), 0.0);
    assert_eq!(runs(&metrics, "jobs", "cancelled"), 100.0);
    assert_eq!(runs(&metrics, "jobs", "success"), 100.0);
}

#[tokio::test(start_paused = true)]
async fn child_runs_cancelled_with_their_parent_leave_no_run_in_flight() {
    // PROM-4 with children, the hook on parent and child both (the duplicate filter must
    // drop the second delivery of the child's start and of its end alike).
    let (hook, metrics) = PrometheusHook::builder().build().unwrap();
    let (jobs, _) = cadences(&hook);
    let parent = Cadence::<Job>::new("parent")
        .child(
            "inner",
            jobs,
            |j: &Job| j.clone(),
            |j: &mut Job, c: Job| *j = c,
        )
        .with_hooks(hook.clone())
        .build()
        .unwrap();
    let token = CancellationToken::new();
    let mut set = JoinSet::new();
    for i in 0..80 {
        let kind = [Kind::Succeed, Kind::Dropped, Kind::Token, Kind::Panic][i % 4];
        let (parent, token) = (parent.clone(), token.clone());
        set.spawn(async move {
            let job = Job { kind, attempts: 0 };
            // Only `Token` runs get the token: `Dropped` ones hang until the timeout.
            let opts = if kind == Kind::Token {
                RunOptions::default().with_cancellation(token)
            } else {
                RunOptions::default()
            };
            let run = parent.run_with(job, opts);
            let _ = tokio::time::timeout(Duration::from_millis(10), async {
                if kind == Kind::Dropped {
                    run.await.ok();
                    unreachable!("a dropped run hangs");
                } else {
                    run.await.ok();
                    std::future::pending::<()>().await;
                }
            })
            .await;
        });
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(in_flight(&metrics, "parent"), 40.0);
    assert_eq!(in_flight(&metrics, "jobs"), 40.0);
    token.cancel();
    while let Some(joined) = set.join_next().await {
        joined.expect("a run task");
    }
    assert_eq!(in_flight(&metrics, "parent"), 0.0);
    assert_eq!(in_flight(&metrics, "jobs"), 0.0);
    assert_eq!(runs(&metrics, "jobs", "success"), 20.0);
    assert_eq!(runs(&metrics, "jobs", "failure"), 20.0);
    // Token-cancelled children (20) and children dropped with their parent (20).
    assert_eq!(runs(&metrics, "jobs", "cancelled"), 40.0);
    assert_eq!(runs(&metrics, "parent", "cancelled"), 40.0);
}
