//! Durations at the edges: `Duration::MAX` as a bound means "never" (as with tokio's own
//! timeout), not an overflow panic out of the engine (GEN-5, ERR-1); TTLs that no store could
//! write as a date are refused before anything runs (DSL-4, RUN-2).

use std::sync::Arc;
use std::time::Duration;

use cadence_core::checkpoint::{CheckpointStore, MemoryStore};
use cadence_core::circuit_breaker::CircuitBreaker;
use cadence_core::retry::{Jitter, Retry, RetryAfter};
use cadence_core::{BoxError, Cadence, CadenceError, ErrorKind, RunOptions, TimeoutScope, note};

fn waits() -> cadence_core::Note<u32> {
    note::from_fn(|n: &mut u32| {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            *n += 1;
            Ok::<_, BoxError>(())
        })
    })
}

fn fails_with(e: fn() -> BoxError) -> cadence_core::Note<u32> {
    note::from_fn(move |n: &mut u32| {
        Box::pin(async move {
            *n += 1;
            Err::<(), BoxError>(e())
        })
    })
}

// TMO-1, RET-7: a timeout and a deadline of Duration::MAX never fire.
#[tokio::test(start_paused = true)]
async fn bounds_of_duration_max_never_fire() {
    let c = Cadence::<u32>::new("edges")
        .then(
            "slow",
            waits()
                .with_timeout(Duration::MAX)
                .with_deadline(Duration::MAX),
        )
        .build()
        .unwrap();
    assert_eq!(c.run(0).await.unwrap(), 1);
}

// RET-3, RET-7: a RetryAfter of Duration::MAX (with no cap) passes any deadline: the note ends
// with the deadline's error after one attempt.
#[tokio::test(start_paused = true)]
async fn a_retry_delay_of_duration_max_ends_at_the_deadline() {
    let c = Cadence::<u32>::new("edges")
        .then(
            "flaky",
            fails_with(|| Box::new(RetryAfter::new(Duration::MAX, "come back later")))
                .with_retry(
                    Retry::new(3)
                        .with_max_delay(Duration::MAX)
                        .with_jitter(Jitter::None),
                )
                .with_deadline(Duration::from_secs(5)),
        )
        .build()
        .unwrap();
    let e = c.run(0).await.unwrap_err();
    assert!(
        matches!(
            &e,
            CadenceError::Timeout {
                scope: TimeoutScope::Deadline,
                last: Some(_),
                ..
            }
        ),
        "{e:?}"
    );
}

// CB-5: an open breaker whose recovery_timeout is Duration::MAX stays open, and says so.
#[tokio::test(start_paused = true)]
async fn a_breaker_that_never_recovers_stays_open() {
    let breaker = CircuitBreaker::builder("edges")
        .consecutive_failures(1)
        .recovery_timeout(Duration::MAX)
        .build()
        .unwrap();
    let c = Cadence::<u32>::new("edges")
        .then(
            "down",
            fails_with(|| "down".into()).with_circuit_breaker(breaker.clone()),
        )
        .build()
        .unwrap();
    assert_eq!(c.run(0).await.unwrap_err().kind(), ErrorKind::Note);
    tokio::time::advance(Duration::from_secs(86_400 * 365)).await;
    match c.run(0).await.unwrap_err() {
        CadenceError::CircuitOpen { retry_after, .. } => {
            assert!(
                retry_after > Duration::from_secs(86_400 * 365 * 20),
                "{retry_after:?}"
            )
        }
        e => panic!("not rejected: {e:?}"),
    }
    assert_eq!(
        breaker.state(),
        cadence_core::circuit_breaker::CircuitState::Open
    );
}

// CKP-9, CKP-11: a lease of Duration::MAX taken from a MemoryStore directly is held, not an
// overflow.
#[tokio::test]
async fn a_memory_lease_of_duration_max_is_held() {
    let store = MemoryStore::new();
    let lease = store.acquire_lease("c", "r1", Duration::MAX).await.unwrap();
    store.renew_lease(&lease, Duration::MAX).await.unwrap();
    let e = store
        .acquire_lease("c", "r1", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("held"), "{e}");
}

// DSL-4: a lease TTL over a century is refused at build; RUN-2: so is a retained outcome's,
// before the run starts.
#[tokio::test]
async fn ttls_over_a_century_are_refused() {
    let e = Cadence::<u32>::new("edges")
        .then("a", waits())
        .with_checkpoint(Arc::new(MemoryStore::new()))
        .with_lease_ttl(Duration::MAX)
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Validation);
    assert!(e.to_string().contains("100 years"), "{e}");

    let c = Cadence::<u32>::new("edges")
        .then("a", waits())
        .with_checkpoint(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    let opts = RunOptions::default()
        .with_run_id("r1")
        .with_retain_outcome(Duration::MAX);
    let e = c.run_with(0, opts).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Validation);
    assert!(e.to_string().contains("100 years"), "{e}");
    // A century is fine.
    let opts = RunOptions::default()
        .with_run_id("r2")
        .with_retain_outcome(Duration::from_secs(100 * 365 * 86_400));
    assert_eq!(c.run_with(0, opts).await.unwrap(), 1);
}
