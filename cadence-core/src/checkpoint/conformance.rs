//! The checkpoint-store conformance suite (CKP-13, feature `test-util`).
//!
//! One public async function per contract of [`CheckpointStore`]; each panics with a message
//! naming the contract when the store breaks it. [`run_all`] runs them all, so a store in
//! another crate passes the whole suite with one call:
//!
//! ```
//! use cadence_core::checkpoint::MemoryStore;
//! use cadence_core::checkpoint::conformance::{self, Options};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! conformance::run_all(&store, &store, &Options::default()).await;
//! # });
//! ```
//!
//! Every function uses cadence names made unique per call (a random suffix), so the suite can
//! share a store (a Redis server) with other tests and earlier runs of itself. Names contain
//! spaces, `..`, `%`, braces and non-ASCII letters, as GEN-1 and RUN-2 allow.
//!
//! Lease contracts are skipped (after checking that the lease methods say `Unsupported`) when
//! [`CheckpointStore::supports_leases`] is `false`. Lease expiry waits for real: with
//! [`Options::lease_ttl`] (100 ms by default) the wait is twice that. On paused tokio time
//! (`#[tokio::test(start_paused = true)]`) a store timing leases with `tokio::time` (like
//! [`MemoryStore`]) does not wait at all.
//!
//! The corrupt-data contract needs to write bytes behind the store's back and read them back:
//! that is [`RawAccess`], implemented here for [`MemoryStore`] and
//! [`FileStore`].

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use super::{CheckpointStore, FileStore, MemoryStore, Record, RecordStatus, RunEnd, RunSummary};
use crate::error::{CadenceError, CheckpointErrorKind};
use crate::hook::TraceContext;

/// The boxed future a [`RawAccess`] method returns.
pub type RawFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Raw access to a store's bytes, for planting corrupt records and checking that the store
/// left them untouched (CKP-8). Implementations panic on failure (they serve tests).
pub trait RawAccess: Send + Sync {
    /// Stores `bytes` as the record of (cadence, run id), exactly as the store would keep a
    /// serialized record there.
    fn plant<'a>(&'a self, cadence: &'a str, run_id: &'a str, bytes: Vec<u8>) -> RawFuture<'a, ()>;

    /// The stored bytes of (cadence, run id), if any.
    fn read_raw<'a>(&'a self, cadence: &'a str, run_id: &'a str) -> RawFuture<'a, Option<Vec<u8>>>;
}

impl RawAccess for MemoryStore {
    fn plant<'a>(&'a self, cadence: &'a str, run_id: &'a str, bytes: Vec<u8>) -> RawFuture<'a, ()> {
        self.put_raw(cadence, run_id, bytes);
        Box::pin(async {})
    }

    fn read_raw<'a>(&'a self, cadence: &'a str, run_id: &'a str) -> RawFuture<'a, Option<Vec<u8>>> {
        let bytes = self.get_raw(cadence, run_id);
        Box::pin(async move { bytes })
    }
}

impl RawAccess for FileStore {
    fn plant<'a>(&'a self, cadence: &'a str, run_id: &'a str, bytes: Vec<u8>) -> RawFuture<'a, ()> {
        let path = self.record_path(cadence, run_id);
        Box::pin(async move {
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir)
                    .await
                    .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
            }
            tokio::fs::write(&path, bytes)
                .await
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        })
    }

    fn read_raw<'a>(&'a self, cadence: &'a str, run_id: &'a str) -> RawFuture<'a, Option<Vec<u8>>> {
        let path = self.record_path(cadence, run_id);
        Box::pin(async move {
            match tokio::fs::read(&path).await {
                Ok(b) => Some(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => panic!("cannot read {}: {e}", path.display()),
            }
        })
    }
}

/// Settings of the suite.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// The lease time-to-live used by the lease-expiry contracts (default 100 ms; they wait
    /// twice that).
    pub lease_ttl: Duration,
    /// How many concurrent saves [`concurrent_saves_never_torn`] makes (default 32).
    pub concurrent_saves: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lease_ttl: Duration::from_millis(100),
            concurrent_saves: 32,
        }
    }
}

impl Options {
    /// With another lease time-to-live (for stores with a coarse lease clock).
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// With another number of concurrent saves.
    pub fn with_concurrent_saves(mut self, n: usize) -> Self {
        self.concurrent_saves = n.max(2);
        self
    }
}

/// Runs every contract, in the order of CKP-13.
pub async fn run_all(store: &dyn CheckpointStore, raw: &dyn RawAccess, options: &Options) {
    missing_is_none(store).await;
    round_trip(store).await;
    overwrite(store).await;
    clear_is_idempotent(store).await;
    list_and_filter(store).await;
    terminal_expiry(store).await;
    concurrent_saves_never_torn(store, options).await;
    lease_exclusivity(store).await;
    lease_expiry_gives_higher_token(store, options).await;
    stale_lease_rejected(store, options).await;
    lease_release_and_reacquire(store).await;
    corrupt_data_reported_and_untouched(store, raw).await;
    acquire_and_load(store, raw).await;
    end_run(store).await;
}

/// A cadence name unique to this call, with characters that need escaping in files and keys.
fn unique_cadence(contract: &str) -> String {
    format!("conformance {contract} ünï.. %{:016x}", fastrand::u64(..))
}

/// A run id with characters that need escaping (RUN-2 allows any printable ASCII).
fn odd_run_id(n: usize) -> String {
    format!("run {n}/../%41{{x}}")
}

fn record(cadence: &str, run_id: &str, score: serde_json::Value) -> Record {
    Record::new(cadence, run_id, "0123456789abcdef0123456789abcdef", score)
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

fn kind_of(e: &CadenceError) -> Option<CheckpointErrorKind> {
    match e {
        CadenceError::Checkpoint { kind, .. } => Some(*kind),
        _ => None,
    }
}

async fn must_load(store: &dyn CheckpointStore, cadence: &str, run_id: &str) -> Option<Record> {
    store.load(cadence, run_id).await.unwrap_or_else(|e| {
        panic!(
            "[{}] load({cadence:?}, {run_id:?}) failed: {e}",
            store.describe()
        )
    })
}

async fn must_save(store: &dyn CheckpointStore, r: &Record) {
    store.save(r, None).await.unwrap_or_else(|e| {
        panic!(
            "[{}] save({:?}, {:?}) failed: {e}",
            store.describe(),
            r.cadence,
            r.run_id
        )
    })
}

async fn must_list(store: &dyn CheckpointStore, cadence: Option<&str>) -> Vec<RunSummary> {
    let mut l = store
        .list(cadence)
        .await
        .unwrap_or_else(|e| panic!("[{}] list({cadence:?}) failed: {e}", store.describe()));
    l.sort_by(|a, b| (&a.cadence, &a.run_id).cmp(&(&b.cadence, &b.run_id)));
    l
}

/// Missing → `None`: loading a key never saved reads `None`, for a known and an unknown
/// cadence.
pub async fn missing_is_none(store: &dyn CheckpointStore) {
    let cadence = unique_cadence("missing");
    assert_eq!(
        must_load(store, &cadence, "never-saved").await,
        None,
        "missing → None: a run id never saved must load as None"
    );
    must_save(store, &record(&cadence, "saved", serde_json::json!(1))).await;
    assert_eq!(
        must_load(store, &cadence, "never-saved").await,
        None,
        "missing → None: another run id of the same cadence must not be returned"
    );
    assert_eq!(
        must_load(store, &cadence, "saved ").await,
        None,
        "missing → None: run ids must match exactly"
    );
    store.clear(&cadence, "saved").await.expect("clear");
}

/// A record with every field set, for the round trip.
fn full_record(cadence: &str, run_id: &str) -> Record {
    let mut r = record(
        cadence,
        run_id,
        serde_json::json!({
            "total": 12.5,
            "items": ["a", "b", "ü"],
            "nested": {"null": null, "flag": true, "big": u64::MAX},
        }),
    );
    r.status = RecordStatus::Failed;
    r.completed = vec!["fetch".into(), "price".into(), "fan out".into()];
    r.members.insert(
        "group/left".into(),
        super::raw_json(&serde_json::json!({"total": 1, "items": []})),
    );
    r.members.insert(
        "group/ríght".into(),
        super::raw_json(&serde_json::json!("any json")),
    );
    r.attempts.insert("fetch".into(), 3);
    r.attempts.insert("group/left".into(), 1);
    r.trace = Some(
        TraceContext::new("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .with_tracestate("vendor=value"),
    );
    r.fence = 7;
    r.created_at = "2024-01-02T03:04:05.000006Z".into();
    r.updated_at = "2024-01-02T03:04:06.000007Z".into();
    r.expires_at = Some(rfc3339(SystemTime::now() + Duration::from_secs(3600)));
    r
}

/// Round trip: what is saved loads back equal in every field (CKP-2).
pub async fn round_trip(store: &dyn CheckpointStore) {
    let cadence = unique_cadence("round trip");
    let run_id = odd_run_id(1);
    let r = full_record(&cadence, &run_id);
    must_save(store, &r).await;
    let back = must_load(store, &cadence, &run_id)
        .await
        .unwrap_or_else(|| panic!("round trip: the saved record {run_id:?} loads as None"));
    assert_eq!(
        back, r,
        "round trip: the loaded record differs from the saved one"
    );

    // A minimal record too: defaults (no trace, no expiry, empty maps) survive.
    let minimal = record(&cadence, "minimal", serde_json::Value::Null);
    must_save(store, &minimal).await;
    assert_eq!(
        must_load(store, &cadence, "minimal").await.as_ref(),
        Some(&minimal),
        "round trip: a minimal record differs after loading"
    );
    store.clear(&cadence, &run_id).await.expect("clear");
    store.clear(&cadence, "minimal").await.expect("clear");
}

/// Overwrite: a second save replaces the whole record (no merge with the first).
pub async fn overwrite(store: &dyn CheckpointStore) {
    let cadence = unique_cadence("overwrite");
    let run_id = odd_run_id(2);
    let first = full_record(&cadence, &run_id);
    must_save(store, &first).await;
    let mut second = record(&cadence, &run_id, serde_json::json!({"other": "score"}));
    second.completed = vec!["only".into()];
    must_save(store, &second).await;
    assert_eq!(
        must_load(store, &cadence, &run_id).await,
        Some(second),
        "overwrite: after two saves the second record must load, entirely (no field of the first)"
    );
    store.clear(&cadence, &run_id).await.expect("clear");
}

/// Idempotent clear: clearing removes the record; clearing again, or clearing a key never
/// saved, succeeds; other records stay.
pub async fn clear_is_idempotent(store: &dyn CheckpointStore) {
    let cadence = unique_cadence("clear");
    let keep = record(&cadence, "keep", serde_json::json!("kept"));
    must_save(store, &keep).await;
    must_save(store, &record(&cadence, "gone", serde_json::json!(1))).await;
    for i in 0..2 {
        store.clear(&cadence, "gone").await.unwrap_or_else(|e| {
            panic!("idempotent clear: clear #{} of a record failed: {e}", i + 1)
        });
        assert_eq!(
            must_load(store, &cadence, "gone").await,
            None,
            "idempotent clear: a cleared record must load as None"
        );
    }
    store
        .clear(&unique_cadence("never"), "never")
        .await
        .unwrap_or_else(|e| panic!("idempotent clear: clearing a key never saved failed: {e}"));
    assert_eq!(
        must_load(store, &cadence, "keep").await,
        Some(keep),
        "idempotent clear: clearing one run id must not touch another"
    );
    store.clear(&cadence, "keep").await.expect("clear");
}

/// List and filter: `list(Some(c))` returns exactly the runs of `c`, with correct summaries;
/// `list(None)` includes the runs of every cadence; cleared runs disappear.
pub async fn list_and_filter(store: &dyn CheckpointStore) {
    let a = unique_cadence("list a");
    let b = unique_cadence("list b");
    let mut ra1 = record(&a, &odd_run_id(1), serde_json::json!(1));
    ra1.completed = vec!["x".into(), "y".into()];
    ra1.status = RecordStatus::Partial;
    let ra2 = record(&a, "two", serde_json::json!(2));
    let rb = record(&b, "three", serde_json::json!(3));
    for r in [&ra1, &ra2, &rb] {
        must_save(store, r).await;
    }

    let la = must_list(store, Some(&a)).await;
    let ids: Vec<_> = la.iter().map(|s| s.run_id.as_str()).collect();
    let mut want = vec![ra1.run_id.as_str(), "two"];
    want.sort();
    assert_eq!(
        ids, want,
        "list and filter: list(Some(cadence)) must return exactly its runs"
    );
    let s1 = la.iter().find(|s| s.run_id == ra1.run_id).expect("listed");
    assert_eq!(
        (
            s1.cadence.as_str(),
            s1.status,
            s1.completed,
            s1.updated_at.as_str()
        ),
        (
            a.as_str(),
            RecordStatus::Partial,
            2,
            ra1.updated_at.as_str()
        ),
        "list and filter: a summary must carry the record's cadence, status, completed count and update time"
    );
    let lb = must_list(store, Some(&b)).await;
    assert_eq!(
        lb.iter().map(|s| s.run_id.as_str()).collect::<Vec<_>>(),
        ["three"],
        "list and filter: list(Some(other cadence)) must return only its runs"
    );
    assert!(
        must_list(store, Some(&unique_cadence("list none")))
            .await
            .is_empty(),
        "list and filter: an unknown cadence lists nothing"
    );

    let all = must_list(store, None).await;
    for r in [&ra1, &ra2, &rb] {
        assert!(
            all.iter()
                .any(|s| s.cadence == r.cadence && s.run_id == r.run_id),
            "list and filter: list(None) must include {:?}/{:?}",
            r.cadence,
            r.run_id
        );
    }

    store.clear(&a, "two").await.expect("clear");
    let la = must_list(store, Some(&a)).await;
    assert_eq!(
        la.iter().map(|s| s.run_id.as_str()).collect::<Vec<_>>(),
        [ra1.run_id.as_str()],
        "list and filter: a cleared run must not be listed"
    );
    store.clear(&a, &ra1.run_id).await.expect("clear");
    store.clear(&b, "three").await.expect("clear");
}

/// Terminal expiry (CKP-7): a retained record whose `expires_at` has passed reads as `None`
/// and is not listed; one expiring in the future loads back and is listed.
pub async fn terminal_expiry(store: &dyn CheckpointStore) {
    let cadence = unique_cadence("expiry");
    let now = SystemTime::now();
    let mut expired = record(&cadence, "expired", serde_json::json!("old"));
    expired.status = RecordStatus::Succeeded;
    expired.expires_at = Some(rfc3339(now - Duration::from_secs(1)));
    let mut live = record(&cadence, "live", serde_json::json!("new"));
    live.status = RecordStatus::Stopped;
    live.expires_at = Some(rfc3339(now + Duration::from_secs(3600)));
    must_save(store, &expired).await;
    must_save(store, &live).await;

    assert_eq!(
        must_load(store, &cadence, "expired").await,
        None,
        "terminal expiry: a record whose expires_at has passed must load as None"
    );
    assert_eq!(
        must_load(store, &cadence, "live").await,
        Some(live),
        "terminal expiry: a record expiring in the future must load back"
    );
    let listed = must_list(store, Some(&cadence)).await;
    assert_eq!(
        listed.iter().map(|s| s.run_id.as_str()).collect::<Vec<_>>(),
        ["live"],
        "terminal expiry: an expired record must not be listed, a live one must"
    );
    assert!(
        !must_list(store, None)
            .await
            .iter()
            .any(|s| s.cadence == cadence && s.run_id == "expired"),
        "terminal expiry: an expired record must not be listed by list(None)"
    );
    store.clear(&cadence, "expired").await.expect("clear");
    store.clear(&cadence, "live").await.expect("clear");
}

/// Concurrent saves never torn: many saves of different large records to one key, racing
/// with loads; every load, and the final one, returns exactly one of the saved records.
pub async fn concurrent_saves_never_torn(store: &dyn CheckpointStore, options: &Options) {
    let cadence = unique_cadence("torn");
    let run_id = odd_run_id(3);
    let n = options.concurrent_saves.max(2);
    let records: Vec<Record> = (0..n)
        .map(|i| {
            // ~64 KiB each, every byte depending on i, so a mix of two is detectable.
            let fill = char::from(b'a' + (i % 26) as u8)
                .to_string()
                .repeat(64 * 1024);
            let mut r = record(
                &cadence,
                &run_id,
                serde_json::json!({ "i": i, "fill": fill }),
            );
            r.completed = (0..=i).map(|k| format!("m{i}-{k}")).collect();
            r.attempts.insert(format!("n{i}"), i as u32 + 1);
            r
        })
        .collect();
    let check = |got: Option<Record>, when: &str| {
        if let Some(got) = got {
            assert!(
                records.contains(&got),
                "concurrent saves never torn: {when}, the loaded record is none of the saved ones \
                 (a torn or mixed write; score.i = {})",
                got.score_value()["i"]
            );
        }
    };
    for round in 0..2 {
        let saves = records.iter().map(|r| store.save(r, None));
        let loads = (0..n / 2).map(|_| store.load(&cadence, &run_id));
        let (saved, loaded) = futures_util::future::join(
            futures_util::future::join_all(saves),
            futures_util::future::join_all(loads),
        )
        .await;
        for (i, s) in saved.into_iter().enumerate() {
            s.unwrap_or_else(|e| {
                panic!("concurrent saves never torn: round {round}, save #{i} failed: {e}")
            });
        }
        for l in loaded {
            let l = l.unwrap_or_else(|e| {
                panic!("concurrent saves never torn: a load racing with saves failed: {e}")
            });
            check(l, "while saving");
        }
        let last = must_load(store, &cadence, &run_id).await;
        assert!(
            last.is_some(),
            "concurrent saves never torn: after the saves the record must exist"
        );
        check(last, "after the saves");
    }
    store.clear(&cadence, &run_id).await.expect("clear");
}

/// Returns `true` if the store has leases; otherwise checks that the lease methods say
/// `Unsupported` and returns `false`.
async fn has_leases(store: &dyn CheckpointStore, contract: &str) -> bool {
    if store.supports_leases() {
        return true;
    }
    let err = store
        .acquire_lease("c", "r", Duration::from_secs(1))
        .await
        .err()
        .unwrap_or_else(|| {
            panic!("{contract}: supports_leases() is false but acquire_lease succeeded")
        });
    assert_eq!(
        kind_of(&err),
        Some(CheckpointErrorKind::Unsupported),
        "{contract}: a store without leases must answer acquire_lease with Unsupported, not {err}"
    );
    false
}

fn expect_kind<T: std::fmt::Debug>(
    got: Result<T, CadenceError>,
    want: CheckpointErrorKind,
    what: &str,
) {
    match got {
        Ok(v) => panic!("{what}: expected a {} error, got Ok({v:?})", want.as_str()),
        Err(e) => assert_eq!(
            kind_of(&e),
            Some(want),
            "{what}: expected a {} error, got: {e}",
            want.as_str()
        ),
    }
}

/// Lease exclusivity (CKP-9): while a lease is held, a second acquire fails with `LeaseHeld`;
/// the holder can save and renew. Skipped for stores without leases.
pub async fn lease_exclusivity(store: &dyn CheckpointStore) {
    if !has_leases(store, "lease exclusivity").await {
        return;
    }
    let cadence = unique_cadence("lease held");
    let run_id = odd_run_id(4);
    let ttl = Duration::from_secs(30);
    let lease = store
        .acquire_lease(&cadence, &run_id, ttl)
        .await
        .unwrap_or_else(|e| panic!("lease exclusivity: the first acquire failed: {e}"));
    assert_eq!(
        (lease.cadence.as_str(), lease.run_id.as_str()),
        (cadence.as_str(), run_id.as_str()),
        "lease exclusivity: the lease must name its key"
    );
    expect_kind(
        store.acquire_lease(&cadence, &run_id, ttl).await,
        CheckpointErrorKind::LeaseHeld,
        "lease exclusivity: a second acquire while the lease is held",
    );
    // Another key is independent.
    let other = store
        .acquire_lease(&cadence, "other run", ttl)
        .await
        .unwrap_or_else(|e| panic!("lease exclusivity: the lease of another run id failed: {e}"));
    let mut r = record(&cadence, &run_id, serde_json::json!("held"));
    r.fence = lease.token;
    store
        .save(&r, Some(&lease))
        .await
        .unwrap_or_else(|e| panic!("lease exclusivity: the holder's save failed: {e}"));
    store
        .renew_lease(&lease, ttl)
        .await
        .unwrap_or_else(|e| panic!("lease exclusivity: the holder's renew failed: {e}"));
    expect_kind(
        store.acquire_lease(&cadence, &run_id, ttl).await,
        CheckpointErrorKind::LeaseHeld,
        "lease exclusivity: an acquire after a renew",
    );
    assert_eq!(
        must_load(store, &cadence, &run_id).await,
        Some(r),
        "lease exclusivity: the holder's save must be stored"
    );
    store.release_lease(&lease).await.expect("release");
    store.release_lease(&other).await.expect("release");
    store.clear(&cadence, &run_id).await.expect("clear");
}

/// Lease expiry (CKP-9): a lease not renewed within its ttl can be acquired again, with a
/// higher fencing token. Skipped for stores without leases.
pub async fn lease_expiry_gives_higher_token(store: &dyn CheckpointStore, options: &Options) {
    if !has_leases(store, "lease expiry").await {
        return;
    }
    let cadence = unique_cadence("lease expiry");
    let ttl = options.lease_ttl;
    let first = store
        .acquire_lease(&cadence, "r", ttl)
        .await
        .unwrap_or_else(|e| panic!("lease expiry: acquire failed: {e}"));
    tokio::time::sleep(ttl * 2).await;
    let second = store
        .acquire_lease(&cadence, "r", Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| {
            panic!("lease expiry: acquiring a lease whose ttl ({ttl:?}) passed failed: {e}")
        });
    assert!(
        second.token > first.token,
        "lease expiry: the new fencing token ({}) must be higher than the expired one ({})",
        second.token,
        first.token
    );
    store.release_lease(&second).await.expect("release");
    let third = store
        .acquire_lease(&cadence, "r", Duration::from_secs(30))
        .await
        .expect("acquire after release");
    assert!(
        third.token > second.token,
        "lease expiry: every acquisition must get a higher token ({} then {})",
        second.token,
        third.token
    );
    store.release_lease(&third).await.expect("release");
}

/// Stale token rejected (CKP-9): after a lease expired and was taken over, the old holder's
/// save and renew fail with `LeaseLost` and change nothing, and its release does not release
/// the new holder. Skipped for stores without leases.
pub async fn stale_lease_rejected(store: &dyn CheckpointStore, options: &Options) {
    if !has_leases(store, "stale token rejected").await {
        return;
    }
    let cadence = unique_cadence("lease stale");
    let run_id = odd_run_id(5);
    let ttl = options.lease_ttl;
    let old = store
        .acquire_lease(&cadence, &run_id, ttl)
        .await
        .expect("acquire");
    let mut mine = record(&cadence, &run_id, serde_json::json!("old holder"));
    mine.fence = old.token;
    store
        .save(&mine, Some(&old))
        .await
        .expect("save by the holder");
    tokio::time::sleep(ttl * 2).await;
    let new = store
        .acquire_lease(&cadence, &run_id, Duration::from_secs(30))
        .await
        .expect("acquire after expiry");
    let mut theirs = record(&cadence, &run_id, serde_json::json!("new holder"));
    theirs.fence = new.token;
    store
        .save(&theirs, Some(&new))
        .await
        .expect("save by the new holder");

    let mut late = record(&cadence, &run_id, serde_json::json!("late write"));
    late.fence = old.token;
    expect_kind(
        store.save(&late, Some(&old)).await,
        CheckpointErrorKind::LeaseLost,
        "stale token rejected: a save with the old token",
    );
    assert_eq!(
        must_load(store, &cadence, &run_id).await,
        Some(theirs.clone()),
        "stale token rejected: a rejected save must not change the record"
    );
    expect_kind(
        store.renew_lease(&old, Duration::from_secs(30)).await,
        CheckpointErrorKind::LeaseLost,
        "stale token rejected: a renew with the old token",
    );
    store.release_lease(&old).await.unwrap_or_else(|e| {
        panic!("stale token rejected: releasing a stale lease must do nothing, not fail: {e}")
    });
    expect_kind(
        store
            .acquire_lease(&cadence, &run_id, Duration::from_secs(30))
            .await,
        CheckpointErrorKind::LeaseHeld,
        "stale token rejected: after the old holder released its stale lease, the new holder's lease",
    );
    store
        .save(&theirs, Some(&new))
        .await
        .unwrap_or_else(|e| panic!("stale token rejected: the new holder's save failed: {e}"));
    store.release_lease(&new).await.expect("release");
    store.clear(&cadence, &run_id).await.expect("clear");
}

/// Release then re-acquire (CKP-9): a released lease can be acquired at once, with a higher
/// token; the released token is stale. Skipped for stores without leases.
pub async fn lease_release_and_reacquire(store: &dyn CheckpointStore) {
    if !has_leases(store, "release and re-acquire").await {
        return;
    }
    let cadence = unique_cadence("lease release");
    let ttl = Duration::from_secs(30);
    let first = store
        .acquire_lease(&cadence, "r", ttl)
        .await
        .expect("acquire");
    store
        .release_lease(&first)
        .await
        .unwrap_or_else(|e| panic!("release and re-acquire: release failed: {e}"));
    store
        .release_lease(&first)
        .await
        .unwrap_or_else(|e| panic!("release and re-acquire: a second release failed: {e}"));
    let second = store
        .acquire_lease(&cadence, "r", ttl)
        .await
        .unwrap_or_else(|e| {
            panic!("release and re-acquire: acquiring a released lease failed: {e}")
        });
    assert!(
        second.token > first.token,
        "release and re-acquire: the new token ({}) must be higher than the released one ({})",
        second.token,
        first.token
    );
    expect_kind(
        store
            .save(&record(&cadence, "r", serde_json::json!(0)), Some(&first))
            .await,
        CheckpointErrorKind::LeaseLost,
        "release and re-acquire: a save with the released token",
    );
    store.release_lease(&second).await.expect("release");
    store.clear(&cadence, "r").await.expect("clear");
}

/// Corrupt data reported and untouched (CKP-8): undecodable bytes load as `Corrupt`, a newer
/// format version as `UnsupportedVersion`; loading and listing leave the bytes exactly as
/// they were; `list` still works (and lists the good records); `clear` removes a corrupt
/// record.
pub async fn corrupt_data_reported_and_untouched(store: &dyn CheckpointStore, raw: &dyn RawAccess) {
    let cadence = unique_cadence("corrupt");
    let good = record(&cadence, "good", serde_json::json!("fine"));
    must_save(store, &good).await;
    let mut newer = serde_json::to_value(&good).expect("record to JSON");
    newer["version"] = serde_json::json!(super::FORMAT_VERSION + 1);
    newer["run_id"] = serde_json::json!("newer");
    let cases: [(&str, Vec<u8>, CheckpointErrorKind); 4] = [
        (
            "not json",
            b"{ this is not json".to_vec(),
            CheckpointErrorKind::Corrupt,
        ),
        (
            "truncated",
            good.to_json()[..20].to_vec(),
            CheckpointErrorKind::Corrupt,
        ),
        (
            "wrong shape",
            br#"{"version":1,"cadence":5}"#.to_vec(),
            CheckpointErrorKind::Corrupt,
        ),
        (
            "newer",
            serde_json::to_vec(&newer).expect("JSON"),
            CheckpointErrorKind::UnsupportedVersion,
        ),
    ];
    for (run_id, bytes, _) in &cases {
        raw.plant(&cadence, run_id, bytes.clone()).await;
    }
    for (run_id, bytes, kind) in &cases {
        for _ in 0..2 {
            expect_kind(
                store.load(&cadence, run_id).await,
                *kind,
                &format!("corrupt data reported: loading the {run_id:?} record"),
            );
        }
        assert_eq!(
            raw.read_raw(&cadence, run_id).await.as_ref(),
            Some(bytes),
            "corrupt data untouched: loading the {run_id:?} record changed or removed its bytes"
        );
    }
    let listed = store.list(Some(&cadence)).await.unwrap_or_else(|e| {
        panic!("corrupt data: list must not fail because of corrupt records: {e}")
    });
    assert!(
        listed.iter().any(|s| s.run_id == "good"),
        "corrupt data: list must still return the good records"
    );
    store.list(None).await.unwrap_or_else(|e| {
        panic!("corrupt data: list(None) must not fail because of corrupt records: {e}")
    });
    for (run_id, bytes, _) in &cases {
        assert_eq!(
            raw.read_raw(&cadence, run_id).await.as_ref(),
            Some(bytes),
            "corrupt data untouched: listing changed or removed the {run_id:?} record"
        );
    }
    for (run_id, _, _) in &cases {
        store
            .clear(&cadence, run_id)
            .await
            .unwrap_or_else(|e| panic!("corrupt data: clearing a corrupt record failed: {e}"));
        assert_eq!(
            must_load(store, &cadence, run_id).await,
            None,
            "corrupt data: a cleared corrupt record must load as None"
        );
    }
    store.clear(&cadence, "good").await.expect("clear");
}

/// Acquire and load (CKP-5, CKP-9, CKP-10): one call takes the lease and returns the record
/// (`None` when missing); a held lease fails it with `LeaseHeld`; each call's token is higher
/// than the last; a corrupt record fails it (`Corrupt`, bytes untouched) and leaves the lease
/// free. Stores without leases say `Unsupported`.
pub async fn acquire_and_load(store: &dyn CheckpointStore, raw: &dyn RawAccess) {
    let cadence = unique_cadence("acquire and load");
    let run_id = odd_run_id(6);
    let ttl = Duration::from_secs(30);
    if !store.supports_leases() {
        expect_kind(
            store.acquire_and_load(&cadence, &run_id, ttl).await,
            CheckpointErrorKind::Unsupported,
            "acquire and load on a store without leases",
        );
        return;
    }
    let (first, loaded) = store
        .acquire_and_load(&cadence, &run_id, ttl)
        .await
        .unwrap_or_else(|e| panic!("acquire and load: a free run failed: {e}"));
    assert_eq!(
        loaded, None,
        "acquire and load: a missing record must load as None"
    );
    expect_kind(
        store.acquire_and_load(&cadence, &run_id, ttl).await,
        CheckpointErrorKind::LeaseHeld,
        "acquire and load: a held lease",
    );
    let mut r = record(&cadence, &run_id, serde_json::json!({"step": 1}));
    r.fence = first.token;
    store
        .save(&r, Some(&first))
        .await
        .unwrap_or_else(|e| panic!("acquire and load: saving with its lease failed: {e}"));
    store.release_lease(&first).await.expect("release");
    let (second, loaded) = store
        .acquire_and_load(&cadence, &run_id, ttl)
        .await
        .unwrap_or_else(|e| panic!("acquire and load: a released run failed: {e}"));
    assert_eq!(
        loaded,
        Some(r),
        "acquire and load: the record must load as saved"
    );
    assert!(
        second.token > first.token,
        "acquire and load: the new token ({}) must be higher than the last ({})",
        second.token,
        first.token
    );
    store.release_lease(&second).await.expect("release");

    let bad = b"{ not a record".to_vec();
    raw.plant(&cadence, "corrupt", bad.clone()).await;
    expect_kind(
        store.acquire_and_load(&cadence, "corrupt", ttl).await,
        CheckpointErrorKind::Corrupt,
        "acquire and load: a corrupt record",
    );
    assert_eq!(
        raw.read_raw(&cadence, "corrupt").await,
        Some(bad),
        "acquire and load: a corrupt record must be left untouched"
    );
    let lease = store
        .acquire_lease(&cadence, "corrupt", ttl)
        .await
        .unwrap_or_else(|e| {
            panic!("acquire and load: a failed call must not keep the lease, but: {e}")
        });
    store.release_lease(&lease).await.expect("release");
    store.clear(&cadence, "corrupt").await.expect("clear");
    store.clear(&cadence, &run_id).await.expect("clear");
}

/// End of a run (CKP-7, CKP-9, CKP-10): `end_run` writes (`Save`), removes (`Clear`, also
/// idempotent) or keeps (`Keep`) the record; with a lease it releases it (the run can be
/// acquired again at once), and with a stale lease it fails with `LeaseLost` and changes
/// nothing.
pub async fn end_run(store: &dyn CheckpointStore) {
    let cadence = unique_cadence("end run");
    let run_id = odd_run_id(7);
    let mut r = record(&cadence, &run_id, serde_json::json!({"step": 2}));
    r.status = RecordStatus::Failed;
    let must = |what: &'static str| move |e: CadenceError| panic!("end run: {what} failed: {e}");
    store
        .end_run(&cadence, &run_id, RunEnd::Save(&r), None)
        .await
        .unwrap_or_else(must("Save without a lease"));
    assert_eq!(
        must_load(store, &cadence, &run_id).await,
        Some(r.clone()),
        "end run: Save must write the record"
    );
    store
        .end_run(&cadence, &run_id, RunEnd::Keep, None)
        .await
        .unwrap_or_else(must("Keep without a lease"));
    assert_eq!(
        must_load(store, &cadence, &run_id).await,
        Some(r.clone()),
        "end run: Keep must leave the record"
    );
    for _ in 0..2 {
        store
            .end_run(&cadence, &run_id, RunEnd::Clear, None)
            .await
            .unwrap_or_else(must("Clear without a lease"));
        assert_eq!(
            must_load(store, &cadence, &run_id).await,
            None,
            "end run: Clear must remove the record (and be idempotent)"
        );
    }
    if !store.supports_leases() {
        return;
    }
    let ttl = Duration::from_secs(30);
    for end in ["save", "clear", "keep"] {
        let lease = store
            .acquire_lease(&cadence, &run_id, ttl)
            .await
            .expect("acquire");
        let mut mine = r.clone();
        mine.fence = lease.token;
        store.save(&mine, Some(&lease)).await.expect("save");
        let mut last = mine.clone();
        last.status = RecordStatus::Partial;
        let how = match end {
            "save" => RunEnd::Save(&last),
            "clear" => RunEnd::Clear,
            _ => RunEnd::Keep,
        };
        store
            .end_run(&cadence, &run_id, how, Some(&lease))
            .await
            .unwrap_or_else(|e| panic!("end run: {end} with the lease failed: {e}"));
        let expected = match end {
            "save" => Some(last.clone()),
            "clear" => None,
            _ => Some(mine.clone()),
        };
        assert_eq!(
            must_load(store, &cadence, &run_id).await,
            expected,
            "end run: {end} with the lease wrote the wrong thing"
        );
        let next = store
            .acquire_lease(&cadence, &run_id, ttl)
            .await
            .unwrap_or_else(|e| panic!("end run: {end} must release the lease, but: {e}"));
        assert!(next.token > lease.token, "end run: tokens must increase");
        store.release_lease(&next).await.expect("release");
    }
    // A stale lease: released, and the run taken by someone else.
    let old = store
        .acquire_lease(&cadence, &run_id, ttl)
        .await
        .expect("acquire");
    store.release_lease(&old).await.expect("release");
    let new = store
        .acquire_lease(&cadence, &run_id, ttl)
        .await
        .expect("acquire");
    let mut theirs = r.clone();
    theirs.fence = new.token;
    store.save(&theirs, Some(&new)).await.expect("save");
    let mut late = r.clone();
    late.status = RecordStatus::Succeeded;
    for how in [RunEnd::Save(&late), RunEnd::Clear] {
        expect_kind(
            store.end_run(&cadence, &run_id, how, Some(&old)).await,
            CheckpointErrorKind::LeaseLost,
            &format!("end run: {how:?} with a stale lease"),
        );
        assert_eq!(
            must_load(store, &cadence, &run_id).await,
            Some(theirs.clone()),
            "end run: a rejected end write must not change the record"
        );
    }
    expect_kind(
        store.acquire_lease(&cadence, &run_id, ttl).await,
        CheckpointErrorKind::LeaseHeld,
        "end run: a stale end write must not release the new holder's lease",
    );
    store.release_lease(&new).await.expect("release");
    store.clear(&cadence, &run_id).await.expect("clear");
}
