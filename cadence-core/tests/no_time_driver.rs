//! A runtime built without tokio's time driver: what needs a timer fails with a clear error
//! naming the note and the fix, instead of panicking out of `run` (GEN-5: no panic unwinds
//! through the engine; ERR-1: every way a run can fail is a `CadenceError`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cadence_core::checkpoint::FileStore;
use cadence_core::circuit_breaker::{CircuitBreaker, CircuitState};
use cadence_core::event::{Event, EventEmitter};
use cadence_core::fallback::Fallback;
use cadence_core::retry::{Backoff, Jitter, Retry};
use cadence_core::testing::RecordingHook;
use cadence_core::{BoxError, Cadence, CadenceError, ErrorKind, Note, RunOptions, note};

/// A runtime without timers (no `enable_time`).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
}

/// Counts its calls; yields once (so a timeout or deadline must be watched), then succeeds.
fn waits(calls: Arc<AtomicU32>) -> Note<u32> {
    note::from_fn(move |n: &mut u32| {
        let calls = calls.clone();
        Box::pin(async move {
            calls.fetch_add(1, Ordering::Relaxed);
            tokio::task::yield_now().await;
            *n += 1;
            Ok::<_, BoxError>(())
        })
    })
}

/// Counts its calls; fails.
fn fails(calls: Arc<AtomicU32>) -> Note<u32> {
    note::from_fn(move |_: &mut u32| {
        let calls = calls.clone();
        Box::pin(async move {
            calls.fetch_add(1, Ordering::Relaxed);
            Err::<(), BoxError>("down".into())
        })
    })
}

fn assert_no_time_driver(e: &CadenceError, path: &str, what: &str) {
    assert_eq!(e.kind(), ErrorKind::Validation, "{e}");
    let CadenceError::Validation { problems } = e else {
        panic!("not a validation error: {e}")
    };
    assert_eq!(problems.len(), 1, "{e}");
    assert_eq!(problems[0].path, path);
    assert!(problems[0].message.contains(what), "{e}");
    assert!(problems[0].message.contains("enable_time()"), "{e}");
}

// CB-4 on a runtime without timers: the failure is the runtime's, not the callee's, so it does
// not count and the circuit never hides the fix behind `CircuitOpen`.
#[test]
fn a_breaker_does_not_count_a_missing_time_driver() {
    let breaker = CircuitBreaker::builder("t")
        .consecutive_failures(1)
        .build()
        .unwrap();
    let c = Cadence::<u32>::new("t")
        .then(
            "slow",
            waits(Arc::default())
                .with_timeout(Duration::from_secs(1))
                .with_circuit_breaker(breaker.clone()),
        )
        .build()
        .unwrap();
    let rt = runtime();
    for _ in 0..3 {
        let e = rt.block_on(c.run(0)).unwrap_err();
        assert_no_time_driver(&e, "slow", "its timeout or deadline");
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
}

// TMO-1 on a runtime without timers: the attempt that waits fails at once, is not retried.
#[test]
fn a_timeout_that_must_be_watched_fails_with_the_fix() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = Cadence::<u32>::new("t")
        .then(
            "slow",
            waits(calls.clone())
                .with_timeout(Duration::from_secs(1))
                .with_retry(Retry::new(3).with_backoff(Backoff::fixed(Duration::ZERO))),
        )
        .build()
        .unwrap();
    let e = runtime().block_on(c.run(0)).unwrap_err();
    assert_no_time_driver(&e, "slow", "its timeout or deadline");
    assert_eq!(calls.load(Ordering::Relaxed), 1, "not retried");
}

// RET-7 on a runtime without timers: a deadline is a bound like a timeout.
#[test]
fn a_deadline_that_must_be_watched_fails_with_the_fix() {
    let c = Cadence::<u32>::new("t")
        .then(
            "slow",
            waits(Arc::default()).with_deadline(Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    let e = runtime().block_on(c.run(0)).unwrap_err();
    assert_no_time_driver(&e, "slow", "its timeout or deadline");
}

// TMO-1: an attempt ready at its first poll needs no timer, so it runs anywhere.
#[test]
fn a_timed_note_that_never_waits_needs_no_timer() {
    let c = Cadence::<u32>::new("t")
        .then(
            "quick",
            note::from_fn(|n: &mut u32| {
                Box::pin(async move {
                    *n += 1;
                    Ok::<_, BoxError>(())
                })
            })
            .with_timeout(Duration::from_millis(1)),
        )
        .build()
        .unwrap();
    assert_eq!(runtime().block_on(c.run(0)).unwrap(), 1);
}

// RET-4 on a runtime without timers: a retry that must wait ends the note with the fix, for a
// quiet retry (nobody observes) and for an observed one, which reports the attempt as failed,
// not as retried.
#[test]
fn a_retry_delay_fails_with_the_fix_and_is_reported_as_the_end() {
    let retry = || {
        Retry::new(3)
            .with_backoff(Backoff::fixed(Duration::from_millis(5)))
            .with_jitter(Jitter::None)
    };
    let calls = Arc::new(AtomicU32::new(0));
    let quiet = Cadence::<u32>::new("q")
        .then("flaky", fails(calls.clone()).with_retry(retry()))
        .build()
        .unwrap();
    let e = runtime().block_on(quiet.run(0)).unwrap_err();
    assert_no_time_driver(&e, "flaky", "its retry delay");
    assert_eq!(calls.load(Ordering::Relaxed), 1);

    let rec = RecordingHook::new();
    let calls = Arc::new(AtomicU32::new(0));
    let observed = Cadence::<u32>::new("o")
        .then("flaky", fails(calls.clone()).with_retry(retry()))
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let e = runtime().block_on(observed.run(0)).unwrap_err();
    assert_no_time_driver(&e, "flaky", "its retry delay");
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    let lines = rec.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("note_end flaky#1 Failed")),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("retry")), "{lines:?}");
}

// EVT-5, EVT-8 on a runtime without timers: the dispatcher still delivers to async
// listeners (no periodic flush), and a bounded shutdown drains instead of panicking.
#[test]
fn the_emitter_dispatches_and_shuts_down_without_timers() {
    let seen = Arc::new(AtomicU32::new(0));
    let emitter = EventEmitter::new();
    let counter = seen.clone();
    emitter.on_async("note.completed", move |_e: Event| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let c = Cadence::<u32>::new("e")
        .then("a", waits(Arc::default()))
        .then("b", waits(Arc::default()))
        .with_hooks(emitter.clone())
        .build()
        .unwrap();
    runtime().block_on(async {
        assert_eq!(c.run(0).await.unwrap(), 2);
        assert!(emitter.shutdown_timeout(Duration::from_secs(5)).await);
    });
    assert_eq!(seen.load(Ordering::Relaxed), 2);
}

/// Runs `f` to completion on this thread with no tokio runtime at all (as a caller using
/// another executor would).
fn block_on_without_tokio<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

// GEN-5, ERR-1 outside any tokio runtime: plain notes run; what needs tokio (a watched bound,
// the blocking pool, FileStore's I/O) fails with an error that says so, never a panic.
#[test]
fn outside_any_tokio_runtime_what_needs_tokio_fails_clearly() {
    let plain = Cadence::<u32>::new("p")
        .then("a", waits(Arc::default()))
        .build()
        .unwrap();
    assert_eq!(block_on_without_tokio(plain.run(0)).unwrap(), 1);

    let timed = Cadence::<u32>::new("t")
        .then(
            "slow",
            waits(Arc::default()).with_timeout(Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    let e = block_on_without_tokio(timed.run(0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Validation, "{e}");
    assert!(
        e.to_string().contains("not running inside a tokio runtime"),
        "{e}"
    );

    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let blocking = Cadence::<u32>::new("b")
        .then(
            "heavy",
            note::blocking(move |n: &mut u32| {
                counter.fetch_add(1, Ordering::Relaxed);
                *n += 1;
                Ok::<_, BoxError>(())
            })
            .with_retry(Retry::new(3).with_backoff(Backoff::fixed(Duration::ZERO))),
        )
        .build()
        .unwrap();
    let e = block_on_without_tokio(blocking.run(0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Note, "{e}");
    assert!(e.to_string().contains("tokio runtime"), "{e}");
    assert_eq!(calls.load(Ordering::Relaxed), 0, "the body never ran");
    // FB-1: the failed attempt leaves the score where it was (not moved out to the pool).
    let kept = Cadence::<u32>::new("k")
        .then(
            "heavy",
            note::blocking(|n: &mut u32| {
                *n += 100;
                Ok::<_, BoxError>(())
            })
            .with_fallback(Fallback::set(|n: &mut u32, _: &CadenceError| *n += 1)),
        )
        .build()
        .unwrap();
    assert_eq!(block_on_without_tokio(kept.run(41)).unwrap(), 42);

    let dir = std::env::temp_dir().join(format!("cadence-no-tokio-{}", std::process::id()));
    let stored = Cadence::<u32>::new("f")
        .then("a", waits(Arc::default()))
        .with_checkpoint(Arc::new(FileStore::new(&dir)))
        .build()
        .unwrap();
    let e = block_on_without_tokio(stored.run_with(0, RunOptions::default().with_run_id("r1")))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Checkpoint, "{e}");
    assert!(e.to_string().contains("tokio runtime"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
