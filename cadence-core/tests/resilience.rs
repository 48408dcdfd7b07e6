//! Resilience: retry, timeout, deadline, fallback, circuit breaker (RES, RET, TMO, FB, CB,
//! NOTE-8). Everything runs on paused tokio time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use cadence_core::circuit_breaker::{
    CircuitBreaker, CircuitState, RemoteCircuitState, RemoteFuture, RemoteSnapshot, Window,
};
use cadence_core::fallback::Fallback;
use cadence_core::retry::{Backoff, Budget, Jitter, Permanent, Retry, RetryAfter};
use cadence_core::testing::{Call, RecordingHook};
use cadence_core::timeout::Timeout;
use cadence_core::{
    BoxError, Cadence, CadenceError, Control, Note, Outcome, RunOptions, TimeoutScope, note,
};

const MS: Duration = Duration::from_millis(1);

/// A note failing its first `fail` calls (counted in `calls`), sleeping `sleep` each call.
fn flaky(calls: Arc<AtomicU32>, fail: u32, sleep: Duration) -> Note<u32> {
    note::from_fn(move |s: &mut u32| {
        let calls = calls.clone();
        Box::pin(async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(sleep).await;
            if n <= fail {
                return Err::<(), BoxError>(format!("failure {n}").into());
            }
            *s += 1;
            Ok(())
        })
    })
}

fn err_note(make: impl Fn() -> BoxError + Send + Sync + 'static) -> (Note<u32>, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let make = Arc::new(make);
    let n = note::from_fn(move |_: &mut u32| {
        let (c, make) = (c.clone(), make.clone());
        Box::pin(async move {
            c.fetch_add(1, Ordering::SeqCst);
            Err::<(), BoxError>(make())
        })
    });
    (n, calls)
}

fn one(n: Note<u32>, rec: &RecordingHook) -> Cadence<u32> {
    Cadence::new("c")
        .then("a", n)
        .with_hooks(rec.clone())
        .build()
        .unwrap()
}

fn no_jitter(n: u32, d: Duration) -> Retry {
    Retry::new(n)
        .with_backoff(Backoff::fixed(d))
        .with_jitter(Jitter::None)
}

#[tokio::test(start_paused = true)]
async fn retry_until_success_reports_in_hook5_order() {
    // RET-1, RET-9, HOOK-5 retry
    let calls = Arc::new(AtomicU32::new(0));
    let rec = RecordingHook::new();
    let c = one(
        flaky(calls.clone(), 2, Duration::ZERO).with_retry(no_jitter(5, 10 * MS)),
        &rec,
    );
    let t0 = tokio::time::Instant::now();
    assert_eq!(c.run(0).await.unwrap(), 1);
    assert_eq!(t0.elapsed(), 20 * MS, "two waits of 10 ms");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        rec.lines(),
        [
            "cadence_start",
            "measure_start a",
            "note_start a#1",
            "note_end a#1 WillRetry",
            "retry a#1",
            "note_start a#2",
            "note_end a#2 WillRetry",
            "retry a#2",
            "note_start a#3",
            "note_end a#3 Succeeded",
            "measure_end a Succeeded",
            "cadence_end Succeeded",
        ]
    );
    // RET-9: the failed attempt's number and the actual delay.
    assert!(rec.calls().contains(&Call::Retry("a".into(), 1, 10 * MS)));
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_wrap_the_last_error() {
    // RET-1
    let calls = Arc::new(AtomicU32::new(0));
    let c = one(
        flaky(calls.clone(), 10, Duration::ZERO).with_retry(no_jitter(3, MS)),
        &RecordingHook::new(),
    );
    match c.run(0).await.unwrap_err() {
        CadenceError::RetryExhausted {
            path,
            attempts,
            last,
        } => {
            assert_eq!((path.as_str(), attempts), ("a", 3));
            assert!(last.to_string().contains("failure 3"), "{last}");
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn without_retry_errors_are_never_wrapped() {
    // RET-1
    let (n, calls) = err_note(|| "boom".into());
    let e = one(n, &RecordingHook::new()).run(0).await.unwrap_err();
    assert!(matches!(e, CadenceError::Note { .. }), "{e:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn non_retryable_errors_pass_through_unwrapped() {
    // RET-2, RET-3: Permanent anywhere in the chain; panics; a user predicate.
    let (n, calls) = err_note(|| Permanent::new("card declined").into());
    let e = one(n.with_retry(no_jitter(5, MS)), &RecordingHook::new())
        .run(0)
        .await
        .unwrap_err();
    assert!(matches!(e, CadenceError::Note { .. }), "{e:?}");
    assert!(!e.is_retryable());
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let panicky = note::from_fn(|_: &mut u32| {
        Box::pin(async {
            if true {
                panic!("bug");
            }
            Ok::<_, BoxError>(())
        })
    });
    let e = one(panicky.with_retry(no_jitter(5, MS)), &RecordingHook::new())
        .run(0)
        .await
        .unwrap_err();
    assert!(
        matches!(e, CadenceError::Panicked { .. }),
        "NOTE-7: panics are not retried by default"
    );

    let (n, calls) = err_note(|| "transient".into());
    let pred = no_jitter(5, MS).retry_if(|e| !e.to_string().contains("transient"));
    let e = one(n.with_retry(pred), &RecordingHook::new())
        .run(0)
        .await
        .unwrap_err();
    assert!(matches!(e, CadenceError::Note { .. }));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A user predicate cannot make Permanent retryable.
    let (n, calls) = err_note(|| Permanent::new("no").into());
    let always = no_jitter(5, MS).retry_if(|_| true);
    let _ = one(n.with_retry(always), &RecordingHook::new())
        .run(0)
        .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_after_hint_replaces_the_delay_capped() {
    // RET-6
    let (n, calls) = err_note(|| RetryAfter::new(Duration::from_secs(3), "429").into());
    let rec = RecordingHook::new();
    let retry = Retry::new(3)
        .with_backoff(Backoff::fixed(MS))
        .with_max_delay(Duration::from_secs(2));
    let _ = one(n.with_retry(retry), &rec).run(0).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let delays: Vec<Duration> = rec
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Retry(_, _, d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [Duration::from_secs(2); 2]);
}

#[tokio::test(start_paused = true)]
async fn per_attempt_timeout_drops_the_attempt_and_is_retried() {
    // TMO-1, RES-1 (each attempt has its own timeout), HOOK-5 [timeout a#1]
    let calls = Arc::new(AtomicU32::new(0));
    let slow_then_fast = {
        let calls = calls.clone();
        note::from_fn(move |s: &mut u32| {
            let calls = calls.clone();
            Box::pin(async move {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n == 0 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    *s = 999; // never reached: the attempt is dropped
                }
                *s += 1;
                Ok::<_, BoxError>(())
            })
        })
    };
    let rec = RecordingHook::new();
    let c = one(
        slow_then_fast
            .with_timeout(50 * MS)
            .with_retry(no_jitter(2, 10 * MS)),
        &rec,
    );
    let t0 = tokio::time::Instant::now();
    assert_eq!(c.run(0).await.unwrap(), 1);
    assert_eq!(t0.elapsed(), 60 * MS);
    let lines = rec.lines();
    assert_eq!(
        &lines[2..7],
        [
            "note_start a#1",
            "timeout a#1",
            "note_end a#1 WillRetry",
            "retry a#1",
            "note_start a#2"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn timeout_error_says_what_to_do_and_honours_a_message() {
    // TMO-1, TMO-3, ERR-4
    let sleepy = || {
        note::from_fn(|_: &mut u32| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<_, BoxError>(())
            })
        })
    };
    let e = one(
        sleepy().with_timeout(Duration::from_secs(5)),
        &RecordingHook::new(),
    )
    .run(0)
    .await
    .unwrap_err();
    assert!(e.is_timeout());
    assert!(matches!(
        e,
        CadenceError::Timeout {
            scope: TimeoutScope::Attempt,
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        "note 'a' timed out after 5s (per attempt); raise the timeout or make the note faster"
    );
    let e = one(
        sleepy().with_timeout(Timeout::new(Duration::from_secs(1)).with_message("bank too slow")),
        &RecordingHook::new(),
    )
    .run(0)
    .await
    .unwrap_err();
    assert_eq!(e.to_string(), "bank too slow");
}

#[tokio::test(start_paused = true)]
async fn a_notes_own_io_timeout_stays_a_note_error() {
    // TMO-2
    let own = note::from_fn(|_: &mut u32| {
        Box::pin(async {
            let r = tokio::time::timeout(MS, tokio::time::sleep(Duration::from_secs(1))).await;
            r.map_err(|e| -> BoxError { Box::new(e) })?;
            Ok::<_, BoxError>(())
        })
    });
    let e = one(own, &RecordingHook::new()).run(0).await.unwrap_err();
    assert!(matches!(e, CadenceError::Note { .. }), "{e:?}");
    assert!(!e.is_timeout());
}

#[tokio::test(start_paused = true)]
async fn deadline_bounds_attempts_and_waits() {
    // RET-7: an expiring deadline cancels the running attempt; the last error is the source.
    let calls = Arc::new(AtomicU32::new(0));
    let c = one(
        flaky(calls.clone(), 100, 30 * MS)
            .with_retry(no_jitter(10, 5 * MS))
            .with_deadline(100 * MS),
        &RecordingHook::new(),
    );
    let t0 = tokio::time::Instant::now();
    let e = c.run(0).await.unwrap_err();
    assert_eq!(
        t0.elapsed(),
        100 * MS,
        "the running attempt was cancelled at the deadline"
    );
    match &e {
        CadenceError::Timeout {
            scope: TimeoutScope::Deadline,
            after,
            last: Some(last),
            ..
        } => {
            assert_eq!(*after, 100 * MS);
            assert!(last.to_string().contains("failure 3"), "{last}");
        }
        e => panic!("{e:?}"),
    }
    // ERR-5: source() is the last error.
    assert!(std::error::Error::source(&e).is_some());

    // A wait that would end at or past the deadline is not started.
    let calls = Arc::new(AtomicU32::new(0));
    let c = one(
        flaky(calls.clone(), 100, Duration::ZERO)
            .with_retry(no_jitter(10, 60 * MS))
            .with_deadline(100 * MS),
        &RecordingHook::new(),
    );
    let t0 = tokio::time::Instant::now();
    let e = c.run(0).await.unwrap_err();
    assert_eq!(
        t0.elapsed(),
        60 * MS,
        "the second wait (to 120 ms) was not started"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(matches!(
        e,
        CadenceError::Timeout {
            scope: TimeoutScope::Deadline,
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn budget_denies_retries_beyond_its_allowance() {
    // RET-8: min_per_sec 0, ratio 0.5 → one retry per two first attempts.
    let budget = Budget::new(Duration::from_secs(10), 0, 0.5);
    let (n, calls) = err_note(|| "down".into());
    let c = Cadence::<u32>::new("c")
        .then(
            "a",
            n.with_retry(no_jitter(3, MS).with_budget(budget.clone())),
        )
        .build()
        .unwrap();
    // First run: 1 deposit, allowance 0.5 → no retry.
    let e = c.run(0).await.unwrap_err();
    assert!(
        matches!(e, CadenceError::RetryExhausted { attempts: 1, .. }),
        "{e:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Second run: 2 deposits, allowance 1 → one retry, then denied.
    let e = c.run(0).await.unwrap_err();
    assert!(
        matches!(e, CadenceError::RetryExhausted { attempts: 2, .. }),
        "{e:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn retry_defaults() {
    // RET-10
    let r = Retry::new(4);
    assert_eq!(r.max_attempts(), 4);
    let d = format!("{r:?}");
    assert!(
        d.contains("Exponential { base: 100ms, factor: 2.0 }"),
        "{d}"
    );
    assert!(
        d.contains("max_delay: 10s") && d.contains("jitter: Full"),
        "{d}"
    );
}

mod backoff_properties {
    use super::*;
    use proptest::prelude::*;

    fn jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![
            Just(Jitter::None),
            Just(Jitter::Full),
            Just(Jitter::Equal),
            Just(Jitter::Decorrelated)
        ]
    }

    proptest! {
        #[test]
        fn delays_never_exceed_the_cap(
            base_ms in 1u64..1000, factor in 1.0f64..4.0, cap_extra in 0u64..5000,
            j in jitter(), seed in any::<u64>(), attempts in 2u32..12,
        ) {
            // RET-5: no delay ever exceeds max_delay; RET-1: stops after max attempts.
            let base = Duration::from_millis(base_ms);
            let cap = base + Duration::from_millis(cap_extra);
            let retry = Retry::new(attempts)
                .with_backoff(Backoff::exponential(base, factor))
                .with_max_delay(cap)
                .with_jitter(j)
                .with_jitter_seed(seed);
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            let rec = RecordingHook::new();
            let calls = Arc::new(AtomicU32::new(0));
            let c = one(flaky(calls.clone(), 1000, Duration::ZERO).with_retry(retry), &rec);
            let _ = rt.block_on(c.run(0));
            prop_assert_eq!(calls.load(Ordering::SeqCst), attempts);
            for call in rec.calls() {
                if let Call::Retry(_, _, d) = call {
                    prop_assert!(d <= cap, "{:?} > {:?}", d, cap);
                }
            }
        }

        #[test]
        fn schedules_are_monotone_before_jitter(base_ms in 1u64..1000, factor in 1.0f64..4.0) {
            // RET-4
            let base = Duration::from_millis(base_ms);
            for b in [Backoff::fixed(base), Backoff::linear(base), Backoff::exponential(base, factor)] {
                let v: Vec<Duration> = b.iter().take(10).collect();
                prop_assert!(v.windows(2).all(|w| w[0] <= w[1]));
                prop_assert_eq!(v[0], base);
            }
            prop_assert_eq!(Backoff::linear(base).delay(3), base * 3);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn jitter_kinds_are_deterministic_with_a_seed() {
    // RET-5
    async fn delays(j: Jitter) -> Vec<Duration> {
        let rec = RecordingHook::new();
        let retry = Retry::new(6)
            .with_backoff(Backoff::exponential(10 * MS, 2.0))
            .with_max_delay(100 * MS)
            .with_jitter(j)
            .with_jitter_seed(42);
        let calls = Arc::new(AtomicU32::new(0));
        let _ = one(flaky(calls, 100, Duration::ZERO).with_retry(retry), &rec)
            .run(0)
            .await;
        rec.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Retry(_, _, d) => Some(d),
                _ => None,
            })
            .collect()
    }
    assert_eq!(
        delays(Jitter::None).await,
        [10, 20, 40, 80, 100].map(|m| m * MS)
    );
    for j in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
        let a = delays(j).await;
        assert_eq!(a, delays(j).await, "{j:?} is seedable");
        assert!(a.iter().all(|d| *d <= 100 * MS));
    }
    let equal = delays(Jitter::Equal).await;
    let caps = [10, 20, 40, 80, 100].map(|m| m * MS);
    for (d, c) in equal.iter().zip(caps) {
        assert!(*d >= c / 2 && *d <= c, "{d:?} within [c/2, c]");
    }
    for d in delays(Jitter::Decorrelated).await {
        assert!(d >= 10 * MS, "decorrelated never below base");
    }
}

#[tokio::test(start_paused = true)]
async fn fallback_set_writes_fields_and_the_note_succeeds() {
    // FB-1, FB-3, HOOK-5 fallback
    let (n, _) = err_note(|| "down".into());
    let rec = RecordingHook::new();
    let c = Cadence::<u32>::new("c")
        .then(
            "a",
            n.with_retry(no_jitter(2, MS)).with_fallback(Fallback::set(
                |s: &mut u32, e: &CadenceError| {
                    assert!(matches!(e, CadenceError::RetryExhausted { .. }));
                    *s = 42;
                },
            )),
        )
        .then(
            "b",
            note::from_fn(|s: &mut u32| {
                Box::pin(async move {
                    *s += 1;
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let r = c.run_with_report(0, RunOptions::default()).await;
    assert_eq!((r.outcome, r.score), (Outcome::Succeeded, 43));
    let lines = rec.lines();
    let i = lines
        .iter()
        .position(|l| l == "note_end a#2 Failed")
        .unwrap();
    assert_eq!(
        &lines[i..i + 3],
        [
            "note_end a#2 Failed",
            "fallback a",
            "measure_end a Succeeded"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn fallback_note_runs_at_its_own_path_with_its_own_policies() {
    // FB-1, FB-4, NOTE-8 (policies on fallback notes)
    let calls = Arc::new(AtomicU32::new(0));
    let (primary, _) = err_note(|| "down".into());
    let rec = RecordingHook::new();
    let alt = flaky(calls.clone(), 1, Duration::ZERO).with_retry(no_jitter(2, MS));
    let c = one(primary.with_fallback(Fallback::note(alt)), &rec);
    assert_eq!(c.run(0).await.unwrap(), 1);
    let lines = rec.lines();
    assert!(
        lines.contains(&"note_start a/fallback#2".to_owned()),
        "{lines:#?}"
    );
    assert!(lines.contains(&"fallback a".to_owned()));

    // FB-4: the alternative's error becomes the note's error.
    let (primary, _) = err_note(|| "primary".into());
    let (alt, _) = err_note(|| "alternative".into());
    let e = one(
        primary.with_fallback(Fallback::note(alt)),
        &RecordingHook::new(),
    )
    .run(0)
    .await
    .unwrap_err();
    assert!(e.to_string().contains("alternative"), "{e}");
    assert_eq!(e.path(), Some("a/fallback"));
    // FB-4: a panicking set closure is the note's error.
    let (primary, _) = err_note(|| "primary".into());
    let e = one(
        primary.with_fallback(Fallback::set(
            |_: &mut u32, _: &CadenceError| -> Result<(), BoxError> { panic!("fb bug") },
        )),
        &RecordingHook::new(),
    )
    .run(0)
    .await
    .unwrap_err();
    assert!(matches!(e, CadenceError::Panicked { .. }), "{e:?}");
}

#[tokio::test(start_paused = true)]
async fn fallback_filter_and_stops_pass_through() {
    // FB-2, RES-2
    let (n, _) = err_note(|| "other".into());
    let e = one(
        n.with_fallback(
            Fallback::set(|s: &mut u32, _: &CadenceError| *s = 1).when(|e| e.is_timeout()),
        ),
        &RecordingHook::new(),
    )
    .run(0)
    .await
    .unwrap_err();
    assert!(matches!(e, CadenceError::Note { .. }));

    // A stop is never retried, caught by fallback or turned into a timeout.
    let calls = Arc::new(AtomicU32::new(0));
    let c2 = calls.clone();
    let stopper = note::from_fn(move |s: &mut u32| {
        let c2 = c2.clone();
        Box::pin(async move {
            c2.fetch_add(1, Ordering::SeqCst);
            *s = 7;
            Ok::<_, BoxError>(Control::stop())
        })
    });
    let breaker = CircuitBreaker::builder("b")
        .consecutive_failures(1)
        .build()
        .unwrap();
    let rec = RecordingHook::new();
    let r = one(
        stopper
            .with_retry(no_jitter(3, MS))
            .with_timeout(Duration::from_secs(1))
            .with_fallback(Fallback::set(|s: &mut u32, _: &CadenceError| *s = 0))
            .with_circuit_breaker(breaker.clone()),
        &rec,
    )
    .run_with_report(0, RunOptions::default())
    .await;
    assert_eq!((r.outcome, r.score), (Outcome::Stopped, 7));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "a stop is a breaker success"
    );
}

fn breaker(threshold: u32) -> CircuitBreaker {
    CircuitBreaker::builder("bank")
        .consecutive_failures(threshold)
        .recovery_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_rejects_recovers() {
    // CB-2 consecutive, CB-3, CB-5, CB-6
    let b = breaker(2);
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let calls = Arc::new(AtomicU32::new(0));
    let n = {
        let (fail, calls) = (fail.clone(), calls.clone());
        note::from_fn(move |_: &mut u32| {
            let (fail, calls) = (fail.clone(), calls.clone());
            Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                if fail.load(Ordering::SeqCst) {
                    Err::<(), BoxError>("down".into())
                } else {
                    Ok(())
                }
            })
        })
    };
    let rec = RecordingHook::new();
    let c = one(n.with_circuit_breaker(b.clone()), &rec);
    let _ = c.run(0).await;
    assert_eq!(b.state(), CircuitState::Closed);
    let _ = c.run(0).await;
    assert_eq!(b.state(), CircuitState::Open);
    assert!(rec.calls().contains(&Call::CircuitStateChange(
        "bank".into(),
        CircuitState::Closed,
        CircuitState::Open
    )));
    let e = c.run(0).await.unwrap_err();
    match &e {
        CadenceError::CircuitOpen {
            circuit,
            retry_after,
            ..
        } => {
            assert_eq!(circuit, "bank");
            assert_eq!(*retry_after, Duration::from_secs(10));
        }
        e => panic!("{e:?}"),
    }
    assert!(e.is_circuit_open() && !e.is_retryable());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "rejected without running the note"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        b.state(),
        CircuitState::HalfOpen,
        "CB-3: a state() read moves it"
    );
    fail.store(false, Ordering::SeqCst);
    rec.clear();
    c.run(0).await.unwrap();
    assert_eq!(b.state(), CircuitState::Closed);
    assert!(rec.calls().contains(&Call::CircuitStateChange(
        "bank".into(),
        CircuitState::HalfOpen,
        CircuitState::Closed
    )));
}

#[tokio::test(start_paused = true)]
async fn retry_does_not_retry_rejections() {
    // RES-1, CB-5
    let b = breaker(1);
    let (n, calls) = err_note(|| "down".into());
    let c = one(
        n.with_circuit_breaker(b.clone())
            .with_retry(no_jitter(5, MS)),
        &RecordingHook::new(),
    );
    let e = c.run(0).await.unwrap_err();
    // Attempt 1 fails and opens the breaker; attempt 2 is rejected and not retried.
    assert!(e.is_circuit_open(), "{e:?}");
    assert!(
        matches!(e, CadenceError::CircuitOpen { .. }),
        "not wrapped: {e:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn timeouts_and_panics_are_breaker_failures_excluded_errors_are_neutral() {
    // CB-4, RES-1
    let b = breaker(2);
    let sleepy = note::from_fn(|_: &mut u32| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, BoxError>(())
        })
    });
    let c = one(
        sleepy.with_timeout(MS).with_circuit_breaker(b.clone()),
        &RecordingHook::new(),
    );
    let _ = c.run(0).await;
    assert_eq!(b.snapshot().consecutive_failures, 1);
    let panicky = note::from_fn(|_: &mut u32| {
        Box::pin(async {
            if true {
                panic!("x");
            }
            Ok::<_, BoxError>(())
        })
    });
    let _ = one(
        panicky.with_circuit_breaker(b.clone()),
        &RecordingHook::new(),
    )
    .run(0)
    .await;
    assert_eq!(b.state(), CircuitState::Open);

    let b = CircuitBreaker::builder("x")
        .consecutive_failures(1)
        .exclude(|e| e.to_string().contains("404"))
        .build()
        .unwrap();
    let (n, _) = err_note(|| "404 not found".into());
    let _ = one(n.with_circuit_breaker(b.clone()), &RecordingHook::new())
        .run(0)
        .await;
    assert_eq!(
        b.state(),
        CircuitState::Closed,
        "excluded errors count as nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn failure_rate_windows_and_slow_calls() {
    // CB-2: count window, time window, minimum calls, slow-call threshold.
    let b = CircuitBreaker::builder("r")
        .failure_rate(0.5, Window::Count(4), 4)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let alternating = {
        let calls = calls.clone();
        note::from_fn(move |_: &mut u32| {
            let calls = calls.clone();
            Box::pin(async move {
                if calls.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                    Err::<(), BoxError>("x".into())
                } else {
                    Ok(())
                }
            })
        })
    };
    let c = one(
        alternating.with_circuit_breaker(b.clone()),
        &RecordingHook::new(),
    );
    for _ in 0..3 {
        let _ = c.run(0).await;
    }
    assert_eq!(b.state(), CircuitState::Closed, "below minimum_calls");
    let _ = c.run(0).await;
    assert_eq!(b.state(), CircuitState::Open, "2 of 4 failed = 0.5");

    let b = CircuitBreaker::builder("t")
        .failure_rate(1.0, Window::Time(Duration::from_secs(1)), 2)
        .build()
        .unwrap();
    let (n, _) = err_note(|| "x".into());
    let c = one(n.with_circuit_breaker(b.clone()), &RecordingHook::new());
    let _ = c.run(0).await;
    tokio::time::advance(Duration::from_secs(2)).await;
    let _ = c.run(0).await;
    assert_eq!(
        b.state(),
        CircuitState::Closed,
        "the first failure left the time window"
    );
    let _ = c.run(0).await;
    assert_eq!(b.state(), CircuitState::Open);

    let b = CircuitBreaker::builder("slow")
        .consecutive_failures(1)
        .slow_call(100 * MS)
        .build()
        .unwrap();
    let slow = note::from_fn(|_: &mut u32| {
        Box::pin(async {
            tokio::time::sleep(200 * MS).await;
            Ok::<_, BoxError>(())
        })
    });
    let r = one(slow.with_circuit_breaker(b.clone()), &RecordingHook::new())
        .run(0)
        .await;
    assert!(r.is_ok(), "a slow success is still a success for the note");
    assert_eq!(
        b.state(),
        CircuitState::Open,
        "but a failure for the breaker"
    );
}

#[test]
fn breaker_validation_and_handle() {
    // CB-1, CB-7
    for bad in [
        CircuitBreaker::builder("x").consecutive_failures(0).build(),
        CircuitBreaker::builder("x")
            .failure_rate(0.0, Window::Count(3), 1)
            .build(),
        CircuitBreaker::builder("x")
            .failure_rate(1.5, Window::Count(3), 1)
            .build(),
        CircuitBreaker::builder("x")
            .failure_rate(0.5, Window::Count(0), 1)
            .build(),
        CircuitBreaker::builder("x")
            .failure_rate(0.5, Window::Time(Duration::ZERO), 1)
            .build(),
        CircuitBreaker::builder("x")
            .failure_rate(0.5, Window::Count(3), 0)
            .build(),
        CircuitBreaker::builder("x").half_open_max_calls(0).build(),
        CircuitBreaker::builder("x")
            .recovery_timeout(Duration::ZERO)
            .build(),
    ] {
        assert!(
            matches!(bad, Err(CadenceError::Validation { .. })),
            "{bad:?}"
        );
    }
    let a = CircuitBreaker::builder("same").build().unwrap();
    let b = CircuitBreaker::builder("same").build().unwrap();
    assert!(
        !a.ptr_eq(&b),
        "no global registry: same name, independent state"
    );
    assert!(a.ptr_eq(&a.clone()));
    let s = a.snapshot();
    assert_eq!(
        (s.state, s.calls, s.failure_rate),
        (CircuitState::Closed, 0, 0.0)
    );
    a.reset();
    assert_eq!(a.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn reset_closes_and_clears() {
    // CB-7
    let b = breaker(1);
    let (n, _) = err_note(|| "x".into());
    let _ = one(n.with_circuit_breaker(b.clone()), &RecordingHook::new())
        .run(0)
        .await;
    assert_eq!(b.state(), CircuitState::Open);
    b.reset();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.snapshot().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_at_most_the_configured_probes_across_64_runs() {
    // CB-3: a breaker shared by 64 concurrent runs never admits more half-open probes than
    // configured.
    let b = CircuitBreaker::builder("shared")
        .consecutive_failures(1)
        .recovery_timeout(20 * MS)
        .half_open_max_calls(3)
        .build()
        .unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let probe = {
        let (in_flight, max_seen) = (in_flight.clone(), max_seen.clone());
        note::from_fn(move |_: &mut u32| {
            let (in_flight, max_seen) = (in_flight.clone(), max_seen.clone());
            Box::pin(async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                max_seen.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(30 * MS).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, BoxError>(())
            })
        })
    };
    // Open it with one failure.
    let (fail, _) = err_note(|| "x".into());
    let _ = one(fail.with_circuit_breaker(b.clone()), &RecordingHook::new())
        .run(0)
        .await;
    assert_eq!(b.state(), CircuitState::Open);
    tokio::time::sleep(25 * MS).await;
    let c = Cadence::<u32>::new("c")
        .then("p", probe.with_circuit_breaker(b.clone()))
        .build()
        .unwrap();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let c = c.clone();
        set.spawn(async move { c.run(0).await });
    }
    let mut ok = 0;
    let mut rejected = 0;
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok(_) => ok += 1,
            Err(e) if e.is_circuit_open() => rejected += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(
        max_seen.load(Ordering::SeqCst) <= 3,
        "at most 3 probes at once"
    );
    assert_eq!(ok, 3, "exactly the probes ran");
    assert_eq!(rejected, 61);
    assert_eq!(
        b.state(),
        CircuitState::Closed,
        "3 probe successes close it"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_releases_its_permit() {
    // CB-4
    let b = CircuitBreaker::builder("p")
        .consecutive_failures(1)
        .recovery_timeout(MS)
        .build()
        .unwrap();
    let (fail, _) = err_note(|| "x".into());
    let _ = one(fail.with_circuit_breaker(b.clone()), &RecordingHook::new())
        .run(0)
        .await;
    tokio::time::advance(2 * MS).await;
    let hang = note::from_fn(|_: &mut u32| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(100)).await;
            Ok::<_, BoxError>(())
        })
    });
    let c = one(hang.with_circuit_breaker(b.clone()), &RecordingHook::new());
    let dropped = tokio::time::timeout(10 * MS, c.run(0)).await;
    assert!(dropped.is_err());
    assert_eq!(b.state(), CircuitState::HalfOpen);
    let ok = note::from_fn(|_: &mut u32| Box::pin(async { Ok::<_, BoxError>(()) }));
    one(ok.with_circuit_breaker(b.clone()), &RecordingHook::new())
        .run(0)
        .await
        .expect("the probe permit was released, so this probe is admitted");
    assert_eq!(b.state(), CircuitState::Closed);
}

#[derive(Default)]
struct FakeRemote {
    published: std::sync::Mutex<Vec<RemoteSnapshot>>,
    shared: std::sync::Mutex<Option<RemoteSnapshot>>,
}

impl RemoteCircuitState for FakeRemote {
    fn publish<'a>(&'a self, _: &'a str, snap: RemoteSnapshot) -> RemoteFuture<'a, ()> {
        Box::pin(async move {
            self.published.lock().unwrap().push(snap);
            Ok(())
        })
    }
    fn fetch<'a>(&'a self, _: &'a str) -> RemoteFuture<'a, Option<RemoteSnapshot>> {
        Box::pin(async move { Ok(self.shared.lock().unwrap().clone()) })
    }
}

#[tokio::test(start_paused = true)]
async fn remote_state_is_published_and_a_remote_open_adopted() {
    // CB-8
    let remote = Arc::new(FakeRemote::default());
    let b = CircuitBreaker::builder("r")
        .consecutive_failures(1)
        .recovery_timeout(Duration::from_secs(30))
        .with_remote_state(remote.clone(), Duration::from_secs(1))
        .build()
        .unwrap();
    let (fail, _) = err_note(|| "x".into());
    let _ = one(fail.with_circuit_breaker(b.clone()), &RecordingHook::new())
        .run(0)
        .await;
    tokio::task::yield_now().await;
    tokio::time::sleep(MS).await;
    let published = remote.published.lock().unwrap().clone();
    assert_eq!(published.last().map(|s| s.state), Some(CircuitState::Open));

    // Another process opened it 10 s ago: adopted with 20 s left.
    let b2 = CircuitBreaker::builder("r")
        .with_remote_state(remote.clone(), Duration::from_secs(1))
        .recovery_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    *remote.shared.lock().unwrap() = Some(RemoteSnapshot::new(
        CircuitState::Open,
        Some(std::time::SystemTime::now() - Duration::from_secs(10)),
        99,
    ));
    assert_eq!(b2.state(), CircuitState::Closed);
    let ok = note::from_fn(|_: &mut u32| Box::pin(async { Ok::<_, BoxError>(()) }));
    let c = one(ok.with_circuit_breaker(b2.clone()), &RecordingHook::new());
    c.run(0).await.unwrap(); // first admission starts the poller; never waits on it
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(b2.state(), CircuitState::Open);
    match c.run(0).await.unwrap_err() {
        CadenceError::CircuitOpen { retry_after, .. } => {
            assert!(
                retry_after <= Duration::from_secs(20) && retry_after > Duration::from_secs(18),
                "{retry_after:?}"
            )
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn policy_validation_and_warnings() {
    // DSL-4, DSL-5 for policies
    let n = || note::from_fn(|_: &mut u32| Box::pin(async { Ok::<_, BoxError>(()) }));
    let e = Cadence::<u32>::new("c")
        .then("a", n().with_retry(Retry::new(0)))
        .then(
            "b",
            n().with_retry(Retry::new(2).with_backoff(Backoff::exponential(MS, 0.5))),
        )
        .then(
            "c",
            n().with_retry(
                Retry::new(2)
                    .with_backoff(Backoff::fixed(Duration::from_secs(1)))
                    .with_max_delay(MS),
            ),
        )
        .then("d", n().with_timeout(Duration::ZERO))
        .then("e", n().with_deadline(Duration::ZERO))
        .then(
            "f",
            n().with_retry(Retry::new(2).with_budget(Budget::new(Duration::ZERO, 1, 0.1))),
        )
        .build()
        .unwrap_err();
    let CadenceError::Validation { problems } = e else {
        panic!()
    };
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["a", "b", "c", "d", "e", "f"]);

    let c = Cadence::<u32>::new("c")
        .then(
            "a",
            n().with_timeout(Duration::from_secs(5))
                .with_deadline(Duration::from_secs(5)),
        )
        .then(
            "b",
            n().with_circuit_breaker(CircuitBreaker::builder("dup").build().unwrap()),
        )
        .then(
            "c",
            n().with_circuit_breaker(CircuitBreaker::builder("dup").build().unwrap()),
        )
        .build()
        .unwrap();
    assert_eq!(c.warnings().len(), 2, "{:?}", c.warnings());
}

#[tokio::test(start_paused = true)]
async fn setting_a_policy_twice_keeps_the_last_and_describe_shows_order() {
    // NOTE-8, RES-1
    let (n, calls) = err_note(|| "x".into());
    let n = n
        .with_retry(no_jitter(5, MS))
        .with_timeout(Duration::from_secs(1))
        .with_retry(no_jitter(2, MS))
        .with_fallback(Fallback::set(|_: &mut u32, _: &CadenceError| ()))
        .with_deadline(Duration::from_secs(9))
        .with_circuit_breaker(CircuitBreaker::builder("cb").build().unwrap());
    let c = one(n, &RecordingHook::new());
    c.run(0).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        c.describe().measures[0].notes[0].policies,
        [
            "fallback",
            "deadline(9s)",
            "retry(2)",
            "circuit_breaker(cb)",
            "timeout(1s)"
        ]
    );
}

// Real time: paused time does not auto-advance while a blocking task runs.
#[tokio::test]
async fn blocking_note_with_timeout_runs_on_a_clone() {
    // NOTE-6: the abandoned attempt's writes never reach the live score.
    let n = note::blocking_with_context(|s: &mut Vec<u32>, cx| {
        s.push(1);
        while !cx.cancellation().is_cancelled() {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok::<_, BoxError>(())
    });
    let c = Cadence::<Vec<u32>>::new("c")
        .then("b", n.with_timeout(Duration::from_millis(20)))
        .on_error(
            |_: &mut Vec<u32>, _: &CadenceError| (),
            cadence_core::OnError::Continue,
        )
        .build()
        .unwrap();
    let r = c.run_with_report(vec![0], RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Partial);
    assert_eq!(r.score, [0], "the clone was abandoned");
}

#[tokio::test(start_paused = true)]
async fn reading_the_state_does_not_hide_the_half_open_transition() {
    // CB-3, CB-6: a state() read shows half-open; the next admission reports the transition.
    let b = CircuitBreaker::builder("peek")
        .consecutive_failures(1)
        .recovery_timeout(100 * MS)
        .build()
        .unwrap();
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let n = {
        let fail = fail.clone();
        note::from_fn(move |_: &mut u32| {
            let fail = fail.clone();
            Box::pin(async move {
                if fail.load(Ordering::SeqCst) {
                    Err::<(), BoxError>("down".into())
                } else {
                    Ok(())
                }
            })
        })
    };
    let rec = RecordingHook::new();
    let c = one(n.with_circuit_breaker(b.clone()), &rec);
    c.run(0).await.unwrap_err();
    tokio::time::sleep(100 * MS).await;
    assert_eq!(b.state(), CircuitState::HalfOpen);
    let _ = format!("{b:?}");
    fail.store(false, Ordering::SeqCst);
    c.run(0).await.unwrap();
    let changes: Vec<(CircuitState, CircuitState)> = rec
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::CircuitStateChange(_, from, to) => Some((from, to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            (CircuitState::Closed, CircuitState::Open),
            (CircuitState::Open, CircuitState::HalfOpen),
            (CircuitState::HalfOpen, CircuitState::Closed),
        ]
    );
}

fn bare(n: Note<u32>) -> Cadence<u32> {
    Cadence::new("c").then("a", n).build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn retries_without_hooks_behave_as_with_them() {
    // RET-1…3, RET-6 on the engine's quiet retry path (no hooks, breaker, predicate, budget,
    // timeout or deadline): same attempts, delays, markers and errors as when observed.
    let calls = Arc::new(AtomicU32::new(0));
    let t0 = tokio::time::Instant::now();
    let c = bare(flaky(calls.clone(), 2, Duration::ZERO).with_retry(no_jitter(3, 10 * MS)));
    assert_eq!(c.run(0).await.unwrap(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(t0.elapsed(), 20 * MS, "two waits of 10 ms");

    let calls = Arc::new(AtomicU32::new(0));
    let e = bare(flaky(calls.clone(), 9, Duration::ZERO).with_retry(no_jitter(3, MS)))
        .run(0)
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    match &e {
        CadenceError::RetryExhausted {
            path,
            attempts,
            last,
        } => {
            assert_eq!((path.as_str(), *attempts), ("a", 3));
            assert_eq!(last.to_string(), "note 'a' failed: failure 3", "{last}");
        }
        other => panic!("{other:?}"),
    }

    let (n, calls) = err_note(|| Permanent::new("card declined").into());
    let e = bare(n.with_retry(no_jitter(5, MS)))
        .run(0)
        .await
        .unwrap_err();
    assert!(matches!(e, CadenceError::Note { .. }), "{e:?}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "RET-3: Permanent is not retried"
    );

    let (n, calls) = err_note(|| RetryAfter::new(Duration::from_secs(3), "429").into());
    let t0 = tokio::time::Instant::now();
    let retry = Retry::new(3)
        .with_backoff(Backoff::fixed(MS))
        .with_max_delay(Duration::from_secs(2));
    let _ = bare(n.with_retry(retry)).run(0).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(4),
        "RET-6: the hint, capped, twice"
    );

    // A stop returned as an error is a stop, not a failure to retry (NOTE-5).
    let stops = Arc::new(AtomicU32::new(0));
    let s2 = stops.clone();
    let stopping = note::from_fn(move |_: &mut u32| {
        let s2 = s2.clone();
        Box::pin(async move {
            s2.fetch_add(1, Ordering::SeqCst);
            Err::<(), BoxError>(cadence_core::Stop::because("enough").into())
        })
    });
    let r = bare(stopping.with_retry(no_jitter(5, MS)))
        .run_with_report(0, RunOptions::default())
        .await;
    assert_eq!(r.outcome, Outcome::Stopped);
    assert_eq!(stops.load(Ordering::SeqCst), 1);
}
