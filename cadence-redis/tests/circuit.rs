//! RedisCircuitState against a real redis-server (REDIS-6, CB-8).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use cadence_core::circuit_breaker::{
    CircuitBreaker, CircuitState, RemoteCircuitState, RemoteSnapshot,
};
use cadence_core::{BoxError, Cadence, CadenceError, Note, note};
use cadence_redis::Redis;

// REDIS-6: one hash per breaker under the prefix, with the TTL; epochs never go back.
#[tokio::test]
async fn publish_and_fetch_one_hash_per_breaker() {
    let Some(redis) = common::shared("circuit").await else {
        return;
    };
    let state = redis.circuit_state();
    assert_eq!(state.fetch("bank").await.unwrap(), None);
    let opened = SystemTime::now();
    state
        .publish(
            "bank",
            RemoteSnapshot::new(CircuitState::Open, Some(opened), 5),
        )
        .await
        .unwrap();
    let got = state.fetch("bank").await.unwrap().unwrap();
    assert_eq!((got.state, got.epoch), (CircuitState::Open, 5));
    let at = got.opened_at.unwrap();
    let diff = at.duration_since(opened).unwrap_or_else(|e| e.duration());
    assert!(diff < Duration::from_millis(1), "{diff:?}");
    // Another process, with a lower local epoch: the stored epoch still increases.
    state
        .publish("bank", RemoteSnapshot::new(CircuitState::Closed, None, 2))
        .await
        .unwrap();
    let got = state.fetch("bank").await.unwrap().unwrap();
    assert_eq!(
        (got.state, got.opened_at, got.epoch),
        (CircuitState::Closed, None, 6)
    );

    let key = state.key("bank");
    assert_eq!(key, format!("{}:circuit:{{bank}}", redis.prefix()));
    let mut conn = redis.connection();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 7 * 24 * 3600 * 1000, "{ttl}");
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut fields = fields;
    fields.sort();
    assert_eq!(fields, ["epoch", "opened_at", "state"]);
    // Garbage in the hash is an error, not a panic.
    let () = redis::cmd("HSET")
        .arg(&key)
        .arg("state")
        .arg("ajar")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(state.fetch("bank").await.is_err());
}

fn failing(calls: Arc<AtomicU32>) -> Note<()> {
    note::from_fn(move |_: &mut ()| {
        let calls = calls.clone();
        Box::pin(async move {
            calls.fetch_add(1, Ordering::Relaxed);
            Err::<(), BoxError>("bank down".into())
        })
    })
}

fn succeeding(calls: Arc<AtomicU32>) -> Note<()> {
    note::from_fn(move |_: &mut ()| {
        let calls = calls.clone();
        Box::pin(async move {
            calls.fetch_add(1, Ordering::Relaxed);
            Ok::<(), BoxError>(())
        })
    })
}

// CB-8 through Redis: a breaker opened in one process is adopted by a breaker of the same
// name in another (its own connection), which then rejects calls without running the note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_is_shared_across_processes() {
    let Some(url) = common::redis_url("circuit-shared") else {
        return;
    };
    let prefix = common::unique_prefix("circuit-shared");
    let connect = || {
        Redis::builder(url.clone())
            .with_prefix(prefix.clone())
            .connect()
    };
    let (a, b) = (connect().await.unwrap(), connect().await.unwrap());
    let poll = Duration::from_millis(50);
    let breaker = |redis: &Redis| {
        CircuitBreaker::builder("bank")
            .consecutive_failures(1)
            .recovery_timeout(Duration::from_secs(30))
            .with_remote_state(Arc::new(redis.circuit_state()), poll)
            .build()
            .unwrap()
    };
    let (in_a, in_b) = (breaker(&a), breaker(&b));
    let (calls_a, calls_b) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let ca = Cadence::<()>::new("pay")
        .then(
            "charge",
            failing(calls_a.clone()).with_circuit_breaker(in_a.clone()),
        )
        .build()
        .unwrap();
    let cb = Cadence::<()>::new("pay")
        .then(
            "charge",
            succeeding(calls_b.clone()).with_circuit_breaker(in_b.clone()),
        )
        .build()
        .unwrap();
    // B runs once (closed), which also starts its poller.
    cb.run(()).await.unwrap();
    assert_eq!(calls_b.load(Ordering::Relaxed), 1);
    // A fails once and opens.
    assert!(ca.run(()).await.is_err());
    assert_eq!(in_a.state(), CircuitState::Open);
    // B adopts the open state within a few polls.
    let deadline = Instant::now() + Duration::from_secs(5);
    while in_b.state() != CircuitState::Open {
        assert!(
            Instant::now() < deadline,
            "B never adopted A's open breaker"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let e = cb.run(()).await.unwrap_err();
    assert!(e.is_circuit_open(), "{e}");
    assert!(matches!(e, CadenceError::CircuitOpen { .. }), "{e:?}");
    assert_eq!(calls_b.load(Ordering::Relaxed), 1, "B did not run the note");
}
