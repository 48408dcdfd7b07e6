//! RedisStore against a real redis-server (REDIS-1…4, CKP-9, CKP-10).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cadence_core::checkpoint::{CheckpointStore, Lease, Record, RecordStatus};
use cadence_core::{CadenceError, CheckpointErrorKind};
use cadence_redis::{Redis, RedisStore};
use serde_json::json;

fn record(cadence: &str, run_id: &str, n: u64) -> Record {
    let mut r = Record::new(cadence, run_id, "f00d", json!({ "n": n }));
    r.completed = (0..n).map(|i| format!("m{i}")).collect();
    r
}

fn kind(e: &CadenceError) -> Option<CheckpointErrorKind> {
    match e {
        CadenceError::Checkpoint { kind, .. } => Some(*kind),
        _ => None,
    }
}

async fn store(test: &str) -> Option<RedisStore> {
    Some(common::shared(test).await?.store())
}

// REDIS-2: the key layout, one hash tag per run, and a TTL on every key a write touches.
#[tokio::test]
async fn keys_share_a_hash_tag_and_every_key_has_a_ttl() {
    let Some(redis) = common::shared("layout").await else {
        return;
    };
    let prefix = redis.prefix().to_owned();
    let store = redis.store();
    let [rec, lease_key, fence] = store.run_keys("checkout", "order-1");
    assert_eq!(rec, format!("{prefix}:{{checkout:order-1}}:record"));
    assert_eq!(lease_key, format!("{prefix}:{{checkout:order-1}}:lease"));
    assert_eq!(fence, format!("{prefix}:{{checkout:order-1}}:fence"));
    let index = store.index_key("checkout");
    assert_eq!(index, format!("{prefix}:index:checkout"));

    let ttl = |key: String| {
        let store = store.clone();
        async move { store.pttl(&key).await.unwrap() }
    };
    let lease = store
        .acquire_lease("checkout", "order-1", Duration::from_secs(30))
        .await
        .unwrap();
    let week = 7 * 24 * 3600 * 1000;
    let lease_ttl = ttl(lease_key.clone()).await;
    assert!(lease_ttl > 25_000 && lease_ttl <= 30_000, "{lease_ttl}");
    let fence_ttl = ttl(fence.clone()).await;
    assert!(
        fence_ttl > week && fence_ttl <= week + 30_000,
        "{fence_ttl}"
    );

    let mut r = record("checkout", "order-1", 1);
    r.fence = lease.token;
    store.save(&r, Some(&lease)).await.unwrap();
    let t = ttl(rec.clone()).await;
    assert!(t > week - 60_000 && t <= week, "{rec}: {t}");
    // The index outlives its records by the 1 s its update times may lag.
    let t = ttl(index.clone()).await;
    assert!(t > week - 60_000 && t <= week + 1_000, "{index}: {t}");
    // Saves soon after under the same lease keep the record's TTL (it is refreshed with the
    // index entry); a record that vanished meanwhile gets one again, never none.
    store.save(&r, Some(&lease)).await.unwrap();
    let t = ttl(rec.clone()).await;
    assert!(t > week - 60_000 && t <= week, "{rec}: {t}");
    let _: () = redis::cmd("DEL")
        .arg(&rec)
        .query_async(&mut redis.connection())
        .await
        .unwrap();
    store.save(&r, Some(&lease)).await.unwrap();
    let t = ttl(rec.clone()).await;
    assert!(t > week - 60_000 && t <= week, "{rec} saved again: {t}");
    // Under the lease too, a terminal record to retain expires at its expiry.
    let mut retained = r.clone();
    retained.expires_at = Some(cadence_core::event::format_timestamp(
        std::time::SystemTime::now() + Duration::from_secs(60),
    ));
    store.save(&retained, Some(&lease)).await.unwrap();
    let t = ttl(rec.clone()).await;
    assert!(t > 55_000 && t <= 60_000, "{rec} retained: {t}");
    store
        .renew_lease(&lease, Duration::from_secs(60))
        .await
        .unwrap();
    let renewed = ttl(lease_key.clone()).await;
    assert!(renewed > 55_000 && renewed <= 60_000, "{renewed}");

    // A retained terminal record expires at its expiry, if sooner than the record TTL.
    let mut done = record("checkout", "order-2", 2);
    done.status = RecordStatus::Succeeded;
    done.expires_at = Some(cadence_core::event::format_timestamp(
        std::time::SystemTime::now() + Duration::from_secs(60),
    ));
    store.save(&done, None).await.unwrap();
    let t = ttl(store.run_keys("checkout", "order-2")[0].clone()).await;
    assert!(t > 55_000 && t <= 60_000, "{t}");

    store.release_lease(&lease).await.unwrap();
    assert_eq!(ttl(lease_key).await, -2, "released");

    // The group commit's acquisition (REDIS-3): a new fence starts at 1, an existing one
    // goes up; both carry the fence TTL.
    let [_, lease3, fence3] = store.run_keys("checkout", "order-3");
    for expected in [1, 2] {
        let (lease, _) = store
            .acquire_and_load("checkout", "order-3", Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(lease.token, expected);
        let t = ttl(fence3.clone()).await;
        assert!(t > week && t <= week + 30_000, "{fence3}: {t}");
        let t = ttl(lease3.clone()).await;
        assert!(t > 25_000 && t <= 30_000, "{lease3}: {t}");
        if expected == 2 {
            // A lease's first save (it updates the index) of a record to retain: its own TTL.
            let mut retained = record("checkout", "order-3", 1);
            retained.fence = lease.token;
            retained.expires_at = Some(cadence_core::event::format_timestamp(
                std::time::SystemTime::now() + Duration::from_secs(60),
            ));
            store.save(&retained, Some(&lease)).await.unwrap();
            let [rec3, _, _] = store.run_keys("checkout", "order-3");
            let t = ttl(rec3.clone()).await;
            assert!(t > 55_000 && t <= 60_000, "{rec3}: {t}");
            let listed = store.list(Some("checkout")).await.unwrap();
            assert!(listed.iter().any(|r| r.run_id == "order-3"), "{listed:?}");
        }
        store
            .end_run(
                "checkout",
                "order-3",
                cadence_core::checkpoint::RunEnd::Keep,
                Some(&lease),
            )
            .await
            .unwrap();
    }
}

// CKP-10 basics, with names that need escaping.
#[tokio::test]
async fn round_trip_overwrite_clear_with_awkward_names() {
    let Some(store) = store("basics").await else {
        return;
    };
    let (c, id) = ("pay:ment {eu}", "order:1}{%");
    assert_eq!(store.load(c, id).await.unwrap(), None);
    let r1 = record(c, id, 1);
    store.save(&r1, None).await.unwrap();
    assert_eq!(store.load(c, id).await.unwrap(), Some(r1));
    // A different pair that would collide without escaping.
    assert_eq!(
        store.load("pay", "ment {eu}:order:1}{%").await.unwrap(),
        None
    );
    let r2 = record(c, id, 2);
    store.save(&r2, None).await.unwrap();
    assert_eq!(store.load(c, id).await.unwrap(), Some(r2));
    let listed = store.list(Some(c)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].run_id.as_str(), listed[0].completed), (id, 2));
    store.clear(c, id).await.unwrap();
    store.clear(c, id).await.unwrap();
    assert_eq!(store.load(c, id).await.unwrap(), None);
    assert!(store.list(Some(c)).await.unwrap().is_empty());
}

// REDIS-2: list filters by cadence, reports lease flags, skips and prunes expired records.
#[tokio::test]
async fn list_filters_and_prunes_expired_entries() {
    let Some(redis) = common::shared("list").await else {
        return;
    };
    let store = redis.store();
    // A retained outcome expiring soon: Redis drops the record then, the index keeps the id.
    let mut soon = record("a", "1", 1);
    soon.status = RecordStatus::Succeeded;
    soon.expires_at = Some(cadence_core::event::format_timestamp(
        std::time::SystemTime::now() + Duration::from_millis(1500),
    ));
    store.save(&soon, None).await.unwrap();
    store.save(&record("a", "3", 1), None).await.unwrap();
    store.save(&record("b", "2", 1), None).await.unwrap();
    let lease = store
        .acquire_lease("b", "2", Duration::from_secs(10))
        .await
        .unwrap();
    let all = store.list(None).await.unwrap();
    let got: Vec<(&str, &str, Option<bool>)> = all
        .iter()
        .map(|s| (s.cadence.as_str(), s.run_id.as_str(), s.lease_held))
        .collect();
    assert_eq!(
        got,
        [
            ("a", "1", Some(false)),
            ("a", "3", Some(false)),
            ("b", "2", Some(true))
        ]
    );
    assert_eq!(store.list(Some("b")).await.unwrap().len(), 1);
    store.release_lease(&lease).await.unwrap();

    tokio::time::sleep(Duration::from_millis(1700)).await;
    let members = |redis: Redis, key: String| async move {
        let mut conn = redis.connection();
        redis::cmd("ZRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query_async::<Vec<String>>(&mut conn)
            .await
            .unwrap()
    };
    let index = store.index_key("a");
    // The anchor sorts first and keeps the index a skiplist (O(log n) updates) even this
    // small; `list` does not report it.
    assert_eq!(
        members(redis.clone(), index.clone()).await,
        [cadence_redis::INDEX_ANCHOR, "1", "3"]
    );
    let mut conn = redis.connection();
    let encoding: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(&index)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(encoding, "skiplist");
    let listed = store.list(Some("a")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].run_id, "3");
    assert_eq!(
        members(redis.clone(), index).await,
        [cadence_redis::INDEX_ANCHOR, "3"],
        "list pruned the expired entry and kept the anchor"
    );
}

// CKP-8, CKP-13: corrupt data is reported and left untouched.
#[tokio::test]
async fn corrupt_and_newer_records_are_reported_and_untouched() {
    let Some(store) = store("corrupt").await else {
        return;
    };
    store.put_raw("c", "bad", b"{not json").await.unwrap();
    let e = store.load("c", "bad").await.unwrap_err();
    assert_eq!(kind(&e), Some(CheckpointErrorKind::Corrupt), "{e}");
    assert!(e.to_string().contains(":{c:bad}:record"), "{e}");
    assert_eq!(
        store.get_raw("c", "bad").await.unwrap().unwrap(),
        b"{not json"
    );
    store
        .put_raw("c", "newer", br#"{"version": 99}"#)
        .await
        .unwrap();
    let e = store.load("c", "newer").await.unwrap_err();
    assert_eq!(kind(&e), Some(CheckpointErrorKind::UnsupportedVersion));
    // list skips what it cannot read, without pruning it.
    assert!(store.list(Some("c")).await.unwrap().is_empty());
    assert!(store.get_raw("c", "bad").await.unwrap().is_some());
}

// CKP-9, REDIS-3: exclusivity, expiry with a higher token, stale tokens rejected.
#[tokio::test]
async fn leases_fence_stale_tokens() {
    let Some(store) = store("lease").await else {
        return;
    };
    let ttl = Duration::from_millis(300);
    let a = store.acquire_lease("c", "r", ttl).await.unwrap();
    let e = store.acquire_lease("c", "r", ttl).await.unwrap_err();
    assert_eq!(kind(&e), Some(CheckpointErrorKind::LeaseHeld), "{e}");
    let mut ra = record("c", "r", 1);
    ra.fence = a.token;
    store.save(&ra, Some(&a)).await.unwrap();
    store.renew_lease(&a, ttl).await.unwrap();

    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    // Expired: renewal and save fail, and a new acquisition has a higher token.
    let e = store.renew_lease(&a, ttl).await.unwrap_err();
    assert_eq!(kind(&e), Some(CheckpointErrorKind::LeaseLost), "{e}");
    let b = store
        .acquire_lease("c", "r", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(b.token > a.token);
    let mut stale = record("c", "r", 5);
    stale.fence = a.token;
    let e = store.save(&stale, Some(&a)).await.unwrap_err();
    assert_eq!(kind(&e), Some(CheckpointErrorKind::LeaseLost), "{e}");
    assert!(e.to_string().contains("lost"), "{e}");
    assert_eq!(store.load("c", "r").await.unwrap(), Some(ra));
    // A stale release does nothing: b still holds it.
    store.release_lease(&a).await.unwrap();
    let e = store.acquire_lease("c", "r", ttl).await.unwrap_err();
    assert_eq!(kind(&e), Some(CheckpointErrorKind::LeaseHeld));
    store.release_lease(&b).await.unwrap();
    let c = store.acquire_lease("c", "r", ttl).await.unwrap();
    assert!(c.token > b.token);
    // A forged future token is no better than a stale one.
    let forged = Lease::new("c", "r", c.token + 1);
    let e = store.save(&stale, Some(&forged)).await.unwrap_err();
    assert_eq!(kind(&e), Some(CheckpointErrorKind::LeaseLost));
    store.release_lease(&c).await.unwrap();
}

// REDIS-3: two workers (separate connections, as two processes) race for one run. Each round
// the current owner stalls past its lease, the other takes over, and both keep saving: every
// save of the stale worker is rejected, every save of the owner lands, and the record only
// ever holds the owner's progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_racing_the_stale_one_is_rejected_every_time() {
    let Some(url) = common::redis_url("race") else {
        return;
    };
    let prefix = common::unique_prefix("race");
    let connect = || {
        Redis::builder(url.clone())
            .with_prefix(prefix.clone())
            .connect()
    };
    let workers = [
        connect().await.unwrap().store(),
        connect().await.unwrap().store(),
    ];
    let ttl = Duration::from_millis(200);
    let rounds: u32 = 20;
    let saves_per_round: u64 = 15;
    let stale_rejected = Arc::new(AtomicU64::new(0));
    let owner_saved = Arc::new(AtomicU64::new(0));
    let mut previous: Option<(usize, Lease)> = None;
    let started = Instant::now();
    for round in 0..rounds {
        let owner = round as usize % 2;
        // Wait (bounded) until the previous lease has expired, then take it over.
        let lease = loop {
            match workers[owner].acquire_lease("race", "r1", ttl).await {
                Ok(lease) => break lease,
                Err(e) => {
                    assert_eq!(kind(&e), Some(CheckpointErrorKind::LeaseHeld), "{e}");
                    assert!(started.elapsed() < Duration::from_secs(30));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        if let Some((_, old)) = &previous {
            assert!(lease.token > old.token, "tokens increase");
        }
        // Both save concurrently: the new owner with its lease, the stale one with its old one.
        let mut tasks = Vec::new();
        for i in 0..saves_per_round {
            let store = workers[owner].clone();
            let lease = lease.clone();
            let saved = owner_saved.clone();
            tasks.push(tokio::spawn(async move {
                let mut r = Record::new(
                    "race",
                    "r1",
                    "f",
                    json!({ "n": 1000 * u64::from(round) + i }),
                );
                r.fence = lease.token;
                store.save(&r, Some(&lease)).await.unwrap();
                // Keep the lease alive while saving.
                store
                    .renew_lease(&lease, Duration::from_millis(200))
                    .await
                    .unwrap();
                saved.fetch_add(1, Ordering::Relaxed);
            }));
            if let Some((stale_worker, stale_lease)) = previous.clone() {
                let store = workers[stale_worker].clone();
                let rejected = stale_rejected.clone();
                tasks.push(tokio::spawn(async move {
                    let mut r = Record::new("race", "r1", "f", json!({ "n": 999_999 }));
                    r.fence = stale_lease.token;
                    let e = store.save(&r, Some(&stale_lease)).await.unwrap_err();
                    assert_eq!(kind(&e), Some(CheckpointErrorKind::LeaseLost), "{e}");
                    let e = store
                        .renew_lease(&stale_lease, Duration::from_secs(1))
                        .await
                        .unwrap_err();
                    assert_eq!(kind(&e), Some(CheckpointErrorKind::LeaseLost), "{e}");
                    rejected.fetch_add(1, Ordering::Relaxed);
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let now = workers[1 - owner]
            .load("race", "r1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            now.fence, lease.token,
            "the record holds the owner's progress"
        );
        assert!(now.score_value()["n"].as_u64().unwrap() < 999_999);
        previous = Some((owner, lease));
        // The owner now stalls: it stops renewing, and its lease expires.
    }
    assert_eq!(
        stale_rejected.load(Ordering::Relaxed),
        u64::from(rounds - 1) * saves_per_round
    );
    assert_eq!(
        owner_saved.load(Ordering::Relaxed),
        u64::from(rounds) * saves_per_round
    );
}

// CKP-13: concurrent saves of one run are never torn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_saves_are_never_torn() {
    let Some(store) = store("torn").await else {
        return;
    };
    let big = "x".repeat(64 * 1024);
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let store = store.clone();
        let big = big.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25u64 {
                let mut r = Record::new("torn", "r", "f", json!({ "w": w, "i": i, "pad": big }));
                r.completed = vec![format!("{w}-{i}")];
                store.save(&r, None).await.unwrap();
                let got = store.load("torn", "r").await.unwrap().unwrap();
                let (gw, gi) = (
                    got.score_value()["w"].as_u64().unwrap(),
                    got.score_value()["i"].as_u64().unwrap(),
                );
                assert_eq!(got.completed, [format!("{gw}-{gi}")]);
                assert_eq!(got.score_value()["pad"].as_str().unwrap().len(), 64 * 1024);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

// REDIS-4: an unreachable Redis is `Unavailable`, naming the URL without credentials and the
// cause, within the command timeout.
#[tokio::test]
async fn unreachable_redis_is_unavailable_within_the_timeout() {
    let port = common::free_port();
    let redis = Redis::builder(format!("redis://app:s3cret@127.0.0.1:{port}/0"))
        .with_command_timeout(Duration::from_millis(300))
        .connect_lazy()
        .unwrap();
    let store = redis.store();
    assert_eq!(store.describe(), format!("redis://127.0.0.1:{port}/0"));
    for _ in 0..3 {
        let started = Instant::now();
        let e = store.load("c", "r").await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(kind(&e), Some(CheckpointErrorKind::Unavailable), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("redis://127.0.0.1:{port}/0")),
            "{msg}"
        );
        assert!(!msg.contains("s3cret") && !msg.contains("app:"), "{msg}");
        assert!(msg.contains("loading the checkpoint of run 'r'"), "{msg}");
    }
    let e = store.save(&record("c", "r", 1), None).await.unwrap_err();
    assert_eq!(kind(&e), Some(CheckpointErrorKind::Unavailable), "{e}");
    let e = Redis::builder(format!("redis://127.0.0.1:{port}/"))
        .with_command_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(kind(&e), Some(CheckpointErrorKind::Unavailable), "{e}");
}

// A server that stops answering (SIGSTOP) hits the command timeout, not a hang.
#[cfg(unix)]
#[tokio::test]
async fn a_frozen_redis_hits_the_command_timeout() {
    let Some(bin) = common::server_bin("frozen") else {
        return;
    };
    let server = common::Throwaway::start(bin);
    let store = Redis::builder(server.url())
        .with_command_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap()
        .store();
    store.save(&record("c", "r", 1), None).await.unwrap();
    let pid = server.pid().to_string();
    std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    let started = Instant::now();
    let e = store.load("c", "r").await.unwrap_err();
    let took = started.elapsed();
    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap();
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(kind(&e), Some(CheckpointErrorKind::Unavailable), "{e}");
    assert!(e.to_string().contains("no answer within"), "{e}");
}

// REDIS-4 for fenced operations, which go through the group commit: with Redis frozen, every
// one of many concurrent saves fails within its own command timeout, also those queued behind
// the batches in flight (which would otherwise wait for those batches' timeouts first).
#[tokio::test]
async fn fenced_saves_queued_behind_a_frozen_redis_fail_within_their_timeout() {
    let Some(bin) = common::server_bin("frozen-fenced") else {
        return;
    };
    let server = common::Throwaway::start(bin);
    let timeout = Duration::from_millis(1000);
    let store = Redis::builder(server.url())
        .with_command_timeout(timeout)
        .connect()
        .await
        .unwrap()
        .store();
    let mut leases = Vec::new();
    for i in 0..6 {
        let run = format!("r{i}");
        let lease = store
            .acquire_lease("c", &run, Duration::from_secs(30))
            .await
            .unwrap();
        let mut r = record("c", &run, 1);
        r.fence = lease.token;
        store.save(&r, Some(&lease)).await.unwrap();
        leases.push((r, lease));
    }
    let pid = server.pid().to_string();
    std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    let mut saves = tokio::task::JoinSet::new();
    for (i, (r, lease)) in leases.into_iter().enumerate() {
        let store = store.clone();
        saves.spawn(async move {
            // Staggered, so that later saves queue behind the batches in flight.
            tokio::time::sleep(Duration::from_millis(100 * i as u64)).await;
            let started = Instant::now();
            let e = store.save(&r, Some(&lease)).await.unwrap_err();
            (started.elapsed(), e)
        });
    }
    let results = saves.join_all().await;
    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap();
    for (took, e) in results {
        assert_eq!(kind(&e), Some(CheckpointErrorKind::Unavailable), "{e}");
        assert!(e.to_string().contains("no answer within 1s"), "{e}");
        // Its own timeout, not that of a batch ahead of it as well (2 s).
        assert!(took < timeout + Duration::from_millis(700), "{took:?}: {e}");
    }
}

// AUTH: a password in the URL authenticates; a wrong or missing one is `Unavailable`, never
// shown in messages.
#[tokio::test]
async fn auth_with_the_password_in_the_url() {
    let Some(bin) = common::server_bin("auth") else {
        return;
    };
    let server = common::Throwaway::start_with(
        bin,
        &[
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            "s3cret-pw",
        ],
        Some("s3cret-pw"),
    );
    let port = server.port;
    let ok = Redis::connect(format!("redis://:s3cret-pw@127.0.0.1:{port}/"))
        .await
        .unwrap()
        .store();
    ok.save(&record("c", "r", 1), None).await.unwrap();
    assert!(ok.load("c", "r").await.unwrap().is_some());
    // ACL form: the default user with its password.
    let acl = Redis::connect(format!("redis://default:s3cret-pw@127.0.0.1:{port}/"))
        .await
        .unwrap()
        .store();
    assert!(acl.load("c", "r").await.unwrap().is_some());
    for url in [
        format!("redis://:wrong-pw@127.0.0.1:{port}/"),
        format!("redis://127.0.0.1:{port}/"),
    ] {
        let result = match Redis::builder(url)
            .with_command_timeout(Duration::from_millis(500))
            .connect()
            .await
        {
            Err(e) => Err(e),
            Ok(redis) => redis.store().load("c", "r").await.map(drop),
        };
        let e = result.unwrap_err();
        assert_eq!(kind(&e), Some(CheckpointErrorKind::Unavailable), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&format!("redis://127.0.0.1:{port}/")), "{msg}");
        assert!(!msg.contains("wrong-pw"), "{msg}");
    }
}

// REDIS-1: the connection comes back by itself after a Redis restart, and scripts evicted by
// the restart are loaded again (the fenced save is pipelined EVALSHA).
#[tokio::test]
async fn reconnects_after_a_restart_and_reloads_scripts() {
    let Some(bin) = common::server_bin("restart") else {
        return;
    };
    let mut server = common::Throwaway::start(bin);
    let store = Redis::builder(server.url())
        .with_command_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap()
        .store();
    let lease = store
        .acquire_lease("c", "r", Duration::from_secs(10))
        .await
        .unwrap();
    store
        .save(&record("c", "r", 1), Some(&lease))
        .await
        .unwrap();

    server.kill();
    let e = store.load("c", "r").await.unwrap_err();
    assert_eq!(kind(&e), Some(CheckpointErrorKind::Unavailable), "{e}");
    server.restart();

    // Back within a bounded time (the data is gone: the server has no persistence).
    let started = Instant::now();
    loop {
        match store.load("c", "r").await {
            Ok(found) => {
                assert_eq!(found, None);
                break;
            }
            Err(e) => {
                assert_eq!(kind(&e), Some(CheckpointErrorKind::Unavailable), "{e}");
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "never came back: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // The old lease is gone with the data: its save is rejected, not applied.
    let e = store
        .save(&record("c", "r", 2), Some(&lease))
        .await
        .unwrap_err();
    assert_eq!(kind(&e), Some(CheckpointErrorKind::LeaseLost), "{e}");
    assert_eq!(store.load("c", "r").await.unwrap(), None);
    let again = store
        .acquire_lease("c", "r", Duration::from_secs(10))
        .await
        .unwrap();
    let mut conn = store.redis().connection();
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    store
        .save(&record("c", "r", 3), Some(&again))
        .await
        .unwrap();
    assert_eq!(
        store.load("c", "r").await.unwrap().unwrap().completed.len(),
        3
    );
    store
        .renew_lease(&again, Duration::from_secs(10))
        .await
        .unwrap();
    store.release_lease(&again).await.unwrap();
}

// Redis killed and restarted in the middle of a load of fenced saves: every operation either
// succeeds or fails with a clean `Checkpoint` error (no panic, no hang), and afterwards every
// record reads back whole (the server persists with appendfsync always, so records survive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_mid_load_leaves_no_corrupt_record() {
    let Some(bin) = common::server_bin("midload") else {
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
        .with_command_timeout(Duration::from_millis(400))
        .connect()
        .await
        .unwrap();
    let store = redis.store();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for w in 0..16u64 {
        let (store, stop, ok, failed) = (store.clone(), stop.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let run = format!("run-{w}");
            let mut lease = None;
            let mut n = 0u64;
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if lease.is_none() {
                    match store
                        .acquire_lease("load", &run, Duration::from_secs(5))
                        .await
                    {
                        Ok(l) => lease = Some(l),
                        Err(e) => {
                            assert!(kind(&e).is_some(), "{e}");
                            failed.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    }
                }
                n += 1;
                let mut r = Record::new(
                    "load",
                    &run,
                    "f",
                    json!({ "n": n, "pad": "y".repeat(2000) }),
                );
                r.completed = (0..n % 50).map(|i| format!("m{i}")).collect();
                match store.save(&r, lease.as_ref()).await {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        let k = kind(&e).expect("a checkpoint error");
                        assert!(
                            matches!(
                                k,
                                CheckpointErrorKind::Unavailable | CheckpointErrorKind::LeaseLost
                            ),
                            "{e}"
                        );
                        if k == CheckpointErrorKind::LeaseLost {
                            lease = None;
                        }
                        failed.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = ok.load(Ordering::Relaxed);
    assert!(before > 0);
    server.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart();
    // Wait (bounded) for saves to land again.
    let started = Instant::now();
    let after_restart = ok.load(Ordering::Relaxed);
    while ok.load(Ordering::Relaxed) < after_restart + 100 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "saves never resumed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(failed.load(Ordering::Relaxed) > 0, "the outage was seen");
    for w in 0..16 {
        let run = format!("run-{w}");
        if let Some(bytes) = store.get_raw("load", &run).await.unwrap() {
            let r = Record::from_json(&bytes).expect("a whole record");
            assert_eq!(r.run_id, run);
            assert_eq!(r.score_value()["pad"].as_str().unwrap().len(), 2000);
        }
    }
    assert!(!store.list(Some("load")).await.unwrap().is_empty());
}

// A clear by the lease holder is fenced and releases the lease; a clear by a worker whose
// lease was taken over leaves the new owner's record alone.
#[tokio::test]
async fn clear_by_the_lease_holder_is_fenced_and_releases() {
    let Some(url) = common::redis_url("fenced-clear") else {
        return;
    };
    let prefix = common::unique_prefix("fenced-clear");
    let connect = || {
        Redis::builder(url.clone())
            .with_prefix(prefix.clone())
            .connect()
    };
    let (a, b) = (
        connect().await.unwrap().store(),
        connect().await.unwrap().store(),
    );
    let ttl = Duration::from_millis(200);
    let la = a.acquire_lease("c", "r", ttl).await.unwrap();
    // The load after an acquisition is served from the acquisition's round trip.
    assert_eq!(a.load("c", "r").await.unwrap(), None);
    let r1 = record("c", "r", 1);
    a.save(&r1, Some(&la)).await.unwrap();
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let lb = b
        .acquire_lease("c", "r", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(b.load("c", "r").await.unwrap(), Some(r1));
    let r2 = record("c", "r", 2);
    b.save(&r2, Some(&lb)).await.unwrap();
    // A, stale, finishes and clears: rejected, B's record stays.
    let e = a.clear("c", "r").await.unwrap_err();
    assert_eq!(kind(&e), Some(CheckpointErrorKind::LeaseLost), "{e}");
    a.release_lease(&la).await.unwrap();
    assert_eq!(b.load("c", "r").await.unwrap(), Some(r2));
    // B finishes: the clear deletes the record and frees the run at once.
    b.clear("c", "r").await.unwrap();
    assert_eq!(b.load("c", "r").await.unwrap(), None);
    let again = a.acquire_lease("c", "r", ttl).await.unwrap();
    assert!(again.token > lb.token);
    b.release_lease(&lb).await.unwrap();
    // B's late release did not touch A's new lease.
    let e = b.acquire_lease("c", "r", ttl).await.unwrap_err();
    assert_eq!(kind(&e), Some(CheckpointErrorKind::LeaseHeld));
    a.release_lease(&again).await.unwrap();
}

// REDIS-3 with group commit: fenced saves of many runs submitted at once go together in few
// calls, yet each is checked against its own token and answered on its own — the stale
// workers' saves are rejected and change nothing, a run whose lease key was broken fails
// alone, and every other run's save lands and is indexed. (On a current-thread runtime the
// 48 saves are all queued before the flush task first runs, so they share one call; on two
// threads they split across calls in varying ways.)
#[tokio::test]
async fn a_group_commit_fences_and_answers_each_run_on_its_own() {
    group_commit("group").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_commit_on_two_threads_fences_and_answers_each_run_on_its_own() {
    for round in 0..5 {
        group_commit(&format!("group{round}")).await;
    }
}

// REDIS-3 within one group commit: operations of one run submitted together travel in the
// same batch, in that order, and each sees what the earlier ones left (the batch reads leases
// and records up front with one MGET): a save after the run's release is refused and writes
// nothing; an acquisition after the run's last save reads the record that save wrote.
#[tokio::test]
async fn within_one_batch_each_operation_sees_what_the_earlier_ones_left() {
    let Some(store) = store("same-batch").await else {
        return;
    };
    // A run's lease (acquired through the group commit) and a record of `n` measures for it.
    let leased = async |run: &str, n: u64| {
        let (lease, _) = store
            .acquire_and_load("same-batch", run, Duration::from_secs(30))
            .await
            .unwrap();
        let mut r = record("same-batch", run, n);
        r.fence = lease.token;
        (lease, r)
    };
    let (lease, r) = leased("r", 3).await;
    // One thread, and neither future awaits before submitting: both are queued before the
    // batch is taken.
    let (released, saved) = tokio::join!(
        store.end_run(
            "same-batch",
            "r",
            cadence_core::checkpoint::RunEnd::Keep,
            Some(&lease)
        ),
        store.save(&r, Some(&lease)),
    );
    released.unwrap();
    let e = saved.unwrap_err();
    assert_eq!(kind(&e), Some(CheckpointErrorKind::LeaseLost), "{e}");
    assert!(store.load("same-batch", "r").await.unwrap().is_none());

    // An acquisition batched after the run's last save (which releases the lease) takes the
    // lease and reads the record that save wrote.
    let (lease, r) = leased("r2", 4).await;
    let (ended, acquired) = tokio::join!(
        store.end_run(
            "same-batch",
            "r2",
            cadence_core::checkpoint::RunEnd::Save(&r),
            Some(&lease)
        ),
        store.acquire_and_load("same-batch", "r2", Duration::from_secs(30)),
    );
    ended.unwrap();
    let (next, found) = acquired.unwrap();
    assert!(next.token > lease.token);
    assert_eq!(found.expect("the record just written").completed.len(), 4);
}

// REDIS-2 within one group commit: a run removed from the index and added again by later
// operations of the same batch stays indexed (the index updates gathered so far are applied
// before an operation on a run the batch touched already), so `list` finds its record.
#[tokio::test]
async fn within_one_batch_a_run_cleared_then_saved_again_stays_indexed() {
    let Some(store) = store("same-batch-index").await else {
        return;
    };
    let cadence = "same-batch-index";
    let (first, _) = store
        .acquire_and_load(cadence, "r", Duration::from_secs(30))
        .await
        .unwrap();
    let mut r = record(cadence, "r", 1);
    r.fence = first.token;
    store.save(&r, Some(&first)).await.unwrap();
    assert_eq!(store.list(Some(cadence)).await.unwrap().len(), 1);
    // The group commit's index update adds the anchor too: a skiplist from the first entry.
    let mut conn = store.redis().connection();
    let (encoding, anchor): (String, Option<f64>) = redis::pipe()
        .cmd("OBJECT")
        .arg("ENCODING")
        .arg(store.index_key(cadence))
        .cmd("ZSCORE")
        .arg(store.index_key(cadence))
        .arg(cadence_redis::INDEX_ANCHOR)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        (encoding.as_str(), anchor),
        ("skiplist", Some(f64::NEG_INFINITY))
    );
    // One batch: the run's clear (releasing the lease and leaving the index), its acquisition
    // (the next token), and the first save under that token (joining the index again).
    let next = Lease::new(cadence, "r", first.token + 1);
    let mut again = record(cadence, "r", 2);
    again.fence = next.token;
    let (cleared, acquired, saved) = tokio::join!(
        store.end_run(
            cadence,
            "r",
            cadence_core::checkpoint::RunEnd::Clear,
            Some(&first)
        ),
        store.acquire_and_load(cadence, "r", Duration::from_secs(30)),
        store.save(&again, Some(&next)),
    );
    cleared.unwrap();
    let (lease, found) = acquired.unwrap();
    assert_eq!(lease.token, next.token);
    assert!(found.is_none(), "the clear came first");
    saved.unwrap();
    let listed = store.list(Some(cadence)).await.unwrap();
    assert_eq!(listed.len(), 1, "the saved record is indexed");
    assert_eq!(listed[0].completed, 2);
    store
        .end_run(
            cadence,
            "r",
            cadence_core::checkpoint::RunEnd::Clear,
            Some(&lease),
        )
        .await
        .unwrap();
}

// REDIS-3 within one group commit: when a batch's index update fails (the index key holds
// the wrong type), the operations it carried fail on their own — their records were written,
// as with a failed pipelined `ZADD` — and the batch's other operations are answered as usual.
#[tokio::test]
async fn a_failed_index_update_fails_only_the_operations_it_carried() {
    let Some(store) = store("broken-index").await else {
        return;
    };
    let cadence = "broken-index";
    let mut leases = Vec::new();
    for run in ["r1", "r2"] {
        let (lease, _) = store
            .acquire_and_load(cadence, run, Duration::from_secs(30))
            .await
            .unwrap();
        leases.push(lease);
    }
    let index = store.index_key(cadence);
    let mut conn = store.redis().connection();
    let () = redis::cmd("SET")
        .arg(&index)
        .arg("not a sorted set")
        .query_async(&mut conn)
        .await
        .unwrap();
    let records: Vec<Record> = leases
        .iter()
        .map(|l| {
            let mut r = record(cadence, &l.run_id, 1);
            r.fence = l.token;
            r
        })
        .collect();
    // One batch: two first saves (each with an index update) and an acquisition.
    let (one, two, acquired) = tokio::join!(
        store.save(&records[0], Some(&leases[0])),
        store.save(&records[1], Some(&leases[1])),
        store.acquire_and_load(cadence, "r3", Duration::from_secs(30)),
    );
    for (result, run) in [(one, "r1"), (two, "r2")] {
        let e = result.unwrap_err();
        assert!(e.to_string().contains("WRONGTYPE"), "{e}");
        assert!(
            store.get_raw(cadence, run).await.unwrap().is_some(),
            "{run}"
        );
    }
    let (lease, found) = acquired.unwrap();
    assert!(lease.token > 0);
    assert!(found.is_none());
    let () = redis::cmd("DEL")
        .arg(&index)
        .query_async(&mut conn)
        .await
        .unwrap();
    for lease in leases.iter().chain([&lease]) {
        store
            .end_run(
                cadence,
                &lease.run_id,
                cadence_core::checkpoint::RunEnd::Clear,
                Some(lease),
            )
            .await
            .unwrap();
    }
}

// REDIS-3 within one group commit: an operation whose command fails (here an acquisition
// whose fence counter is not a number) stops there and fails on its own — it holds no lease —
// while the batch's other operations are applied and answered as usual.
#[tokio::test]
async fn an_operation_whose_command_fails_fails_alone() {
    let Some(store) = store("broken-fence").await else {
        return;
    };
    let cadence = "broken-fence";
    let [_, lease_key, fence] = store.run_keys(cadence, "r1");
    let mut conn = store.redis().connection();
    let () = redis::cmd("SET")
        .arg(&fence)
        .arg("not a number")
        .arg("EX")
        .arg(60)
        .query_async(&mut conn)
        .await
        .unwrap();
    let (broken, fine) = tokio::join!(
        store.acquire_and_load(cadence, "r1", Duration::from_secs(30)),
        store.acquire_and_load(cadence, "r2", Duration::from_secs(30)),
    );
    let e = broken.unwrap_err();
    assert!(e.to_string().contains("not an integer"), "{e}");
    let held: bool = redis::cmd("EXISTS")
        .arg(&lease_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!held, "no lease for the failed acquisition");
    let (lease, found) = fine.unwrap();
    assert!(found.is_none());
    store
        .end_run(
            cadence,
            "r2",
            cadence_core::checkpoint::RunEnd::Clear,
            Some(&lease),
        )
        .await
        .unwrap();
    let () = redis::cmd("DEL")
        .arg(&fence)
        .query_async(&mut conn)
        .await
        .unwrap();
}

// REDIS-2, REDIS-3 within one group commit: acquisitions with different lease TTLs in one
// batch each get their own (the batch passes its first acquisition's TTLs once, and the
// others carry theirs), and so does each fence counter (record TTL plus lease TTL).
#[tokio::test]
async fn acquisitions_in_one_batch_keep_their_own_ttls() {
    let Some(store) = store("batch-ttls").await else {
        return;
    };
    let cadence = "batch-ttls";
    let (long, short, again) = tokio::join!(
        store.acquire_and_load(cadence, "long", Duration::from_secs(30)),
        store.acquire_and_load(cadence, "short", Duration::from_secs(5)),
        store.acquire_and_load(cadence, "long2", Duration::from_secs(30)),
    );
    let week = 7 * 24 * 3600 * 1000;
    for (run, lease_ttl) in [("long", 30_000), ("short", 5_000), ("long2", 30_000)] {
        let [_, lease_key, fence] = store.run_keys(cadence, run);
        let t = store.pttl(&lease_key).await.unwrap();
        assert!(t > lease_ttl - 5_000 && t <= lease_ttl, "{run}: lease {t}");
        let t = store.pttl(&fence).await.unwrap();
        let want = week + lease_ttl;
        assert!(t > want - 5_000 && t <= want, "{run}: fence {t}");
    }
    for lease in [long, short, again].map(|r| r.unwrap().0) {
        store.release_lease(&lease).await.unwrap();
    }
}

async fn group_commit(cadence: &str) {
    let Some(old) = store(cadence).await else {
        return;
    };
    let new = old.redis().store();
    const RUNS: usize = 48;
    let mut leases = Vec::new();
    for r in 0..RUNS {
        let id = format!("r{r}");
        let (lease, found) = old
            .acquire_and_load(cadence, &id, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(found.is_none());
        leases.push(lease);
    }
    let mut conn = old.redis().connection();
    // Every third run's lease expired and another worker took it over and saved.
    for r in (0..RUNS).step_by(3) {
        let id = format!("r{r}");
        let [_, lease_key, _] = old.run_keys(cadence, &id);
        let () = redis::cmd("DEL")
            .arg(&lease_key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let (taken, _) = new
            .acquire_and_load(cadence, &id, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(taken.token > leases[r].token);
        new.save(&record(cadence, &id, 7), Some(&taken))
            .await
            .unwrap();
    }
    // One run's lease key is not a string any more: its save fails, alone.
    let [_, broken, _] = old.run_keys(cadence, "r1");
    let () = redis::cmd("DEL")
        .arg(&broken)
        .query_async(&mut conn)
        .await
        .unwrap();
    let () = redis::cmd("HSET")
        .arg(&broken)
        .arg("x")
        .arg("y")
        .query_async(&mut conn)
        .await
        .unwrap();
    let saves: Vec<_> = leases
        .iter()
        .map(|lease| {
            let (old, lease) = (old.clone(), lease.clone());
            tokio::spawn(async move {
                let r = record(&lease.cadence, &lease.run_id, 2);
                old.save(&r, Some(&lease)).await
            })
        })
        .collect();
    for (r, save) in saves.into_iter().enumerate() {
        let result = save.await.unwrap();
        let id = format!("r{r}");
        let stored = old.load(cadence, &id).await.unwrap();
        if r % 3 == 0 {
            let e = result.unwrap_err();
            assert_eq!(kind(&e), Some(CheckpointErrorKind::LeaseLost), "{e}");
            assert_eq!(
                stored.unwrap().completed.len(),
                7,
                "{id}: the new owner's record"
            );
        } else if r == 1 {
            let e = result.unwrap_err();
            assert!(kind(&e).is_some(), "{e}");
            assert!(stored.is_none(), "nothing written for the broken run");
        } else {
            result.unwrap();
            assert_eq!(stored.unwrap().completed.len(), 2, "{id}");
        }
    }
    let listed = old.list(Some(cadence)).await.unwrap();
    assert_eq!(listed.len(), RUNS - 1, "every written run is indexed");
    let _ = redis::cmd("DEL")
        .arg(&broken)
        .query_async::<()>(&mut conn)
        .await;
    for lease in &leases {
        let _ = old
            .end_run(
                cadence,
                &lease.run_id,
                cadence_core::checkpoint::RunEnd::Clear,
                Some(lease),
            )
            .await;
    }
}

// REDIS-1, REDIS-3: saves under a lease this store holds use the run's key stem kept with the
// lease (runs are looked up by cadence and run id). Two runs whose (cadence, run id) read the
// same when joined never get each other's, a shorter record after a longer one is written
// whole and alone, and after the lease was taken over the old holder's save is refused.
#[tokio::test]
async fn saves_under_a_lease_write_only_their_own_run() {
    let Some(store) = store("reuse").await else {
        return;
    };
    let ttl = Duration::from_secs(30);
    let (a, b) = (("ab", "c"), ("a", "bc"));
    let lease_a = store.acquire_lease(a.0, a.1, ttl).await.unwrap();
    let lease_b = store.acquire_lease(b.0, b.1, ttl).await.unwrap();
    for round in 0..3u64 {
        // Long, then short, then long again.
        let n = if round == 1 { 1 } else { 40 + round };
        let mut ra = record(a.0, a.1, n);
        ra.fence = lease_a.token;
        let mut rb = record(b.0, b.1, n + 100);
        rb.fence = lease_b.token;
        // One after the other, so that a mix-up of the two runs could not go unseen.
        store.save(&ra, Some(&lease_a)).await.unwrap();
        store.save(&rb, Some(&lease_b)).await.unwrap();
        let got_a = store.load(a.0, a.1).await.unwrap().expect("a's record");
        let got_b = store.load(b.0, b.1).await.unwrap().expect("b's record");
        assert_eq!(got_a.to_json(), ra.to_json(), "round {round}");
        assert_eq!(got_b.to_json(), rb.to_json(), "round {round}");
        assert_eq!(store.get_raw(a.0, a.1).await.unwrap(), Some(ra.to_json()));
    }
    // Taken over: the old lease's save is refused.
    store.release_lease(&lease_a).await.unwrap();
    let newer = store.acquire_lease(a.0, a.1, ttl).await.unwrap();
    assert!(newer.token > lease_a.token);
    let mut stale = record(a.0, a.1, 7);
    stale.fence = lease_a.token;
    let e = store.save(&stale, Some(&lease_a)).await.unwrap_err();
    assert_eq!(kind(&e), Some(CheckpointErrorKind::LeaseLost), "{e}");
    store.clear(a.0, a.1).await.unwrap();
    store.clear(b.0, b.1).await.unwrap();
    store.release_lease(&newer).await.unwrap();
    store.release_lease(&lease_b).await.unwrap();
}
