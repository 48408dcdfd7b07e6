//! [`RedisStore`]: the checkpoint store (REDIS-1…4, CKP-9, CKP-10).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

use cadence_core::checkpoint::{CheckpointStore, Lease, Record, RunEnd, RunSummary, StoreFuture};
use cadence_core::{CadenceError, CheckpointErrorKind};
use redis::aio::ConnectionManager;
use redis::{ErrorKind, Pipeline, RedisError, RedisResult, Script, ServerErrorKind, Value};

use crate::batch::{Batcher, Op};
use crate::connection::{Redis, millis, unix_millis_now};
use crate::keys::{INDEX_ANCHOR, Part, RunKeys, Stem};

/// Lease acquisition (REDIS-3): set the lease only if absent, with a fencing token one
/// higher than any before. KEYS: lease, fence. ARGV: lease TTL ms, fence TTL ms.
/// Returns the token, or -1 when the lease is held.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local token = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
return token
",
    )
});

/// Fenced renewal (REDIS-3). KEYS: lease, fence. ARGV: token, lease TTL ms, fence TTL ms.
/// Returns 1, or 0 (lost).
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
",
    )
});

/// Fenced release (REDIS-3): delete the lease only if it holds this token. KEYS: lease.
/// ARGV: token. Returns 1, or 0 (stale token: nothing done).
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
",
    )
});

/// Fenced clear at the end of a run: delete the record and release the lease, only if the
/// lease holds this token. KEYS: record, lease. ARGV: token. Returns 1, or 0 (lost).
static CLEAR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
",
    )
});

/// How long a record read with a lease acquisition serves the `load` that follows it.
const PREFETCH_FOR: Duration = Duration::from_secs(1);
/// Bound on the leases a store tracks (stale entries are dropped beyond it), split evenly among
/// the shards of its map.
const MAX_TRACKED: usize = 100_000;

/// How stale a run's index entry may get while its lease is held (see `RedisStore`'s docs):
/// saves within this time of the run's last index update leave the index alone.
const INDEX_EVERY: Duration = Duration::from_secs(1);

/// How many runs `list` reads per pipeline.
const LIST_BATCH: usize = 256;

/// A checkpoint store in Redis, with leases and fencing tokens (REDIS-1…4): many processes
/// share one Redis, a crashed process's run is resumed by another, and a process that lost
/// its lease can never overwrite the newer owner's progress.
///
/// - **Keys** (REDIS-2): `<prefix>:{<cadence>:<run id>}:record|lease|fence` — one hash tag
///   per run, so one cluster slot — and `<prefix>:index:<cadence>`, a sorted set of run ids
///   by last save time. Every write sets the TTL of every key it touches (the record TTL,
///   default 7 days; a retained terminal record expires at its
///   [`expires_at`](Record::expires_at) if sooner), with one exception: saves under a lease
///   between two index updates (below) keep the TTL the last update set, so a record's TTL
///   is at most that 1 s short of the record TTL (such a save of a record that vanished sets
///   the TTL again: no record is ever left without one). `list` skips and prunes index
///   entries whose record expired.
/// - **Leases** (REDIS-3): acquisition is a Lua script that sets the lease only if absent and
///   increments the fence counter, whose new value is the token. Saves with a lease, renewals
///   and releases are Lua scripts that compare the token with the lease's and do nothing but
///   report `LeaseLost` (release: nothing at all) on mismatch. The fence counter lives for
///   the record TTL plus the lease TTL after each acquisition or renewal, so it outlives every
///   record saved under it and tokens never repeat while a record exists.
/// - **Round trips**: a save without a lease is one pipeline (`SET`, then the index update).
///   Fenced saves, [`acquire_and_load`](CheckpointStore::acquire_and_load) (token and record
///   together) and [`end_run`](CheckpointStore::end_run) under a lease (clear or write the
///   record *and* release the lease) are each one operation of a **group commit**: the
///   operations of concurrent runs submitted while a call is in flight go together in the
///   next `EVALSHA` of one Lua script, each checked against its own token, applied atomically
///   (each command under `redis.pcall`) and answered on its own (see the crate README). These
///   methods submit their operation when they are called, not when their future is first
///   polled: operations are applied in the order of the calls, and a future dropped before
///   its batch is taken withdraws its operation. The engine folds the save of a run's last
///   measure into its end write, so an engine run of n measures costs n + 1 round trips. (`acquire_lease` also reads the record in its round
///   trip, for a `load` of that run that follows within 1 s.) A `clear` of a run whose lease
///   this store holds is fenced like a save and releases the lease in the same round trip.
///   `list` reads records and lease flags in pipelines of 256.
/// - **Index updates** (REDIS-2): a save without a lease, and the first save under a lease,
///   update the run's index entry (`ZADD`, with the [`INDEX_ANCHOR`], and `PEXPIRE`); later
///   saves under the same lease do so only when the last update is 1 s old (or the record
///   TTL, if shorter). Every index update sets the index TTL to the record TTL plus that
///   second, so the index always outlives every record in it; the index's update times are
///   exact to within that second (each record's own `updated_at` is exact). A run's end
///   removes its entry with the same round trip. Under a lease the index update is part of
///   the fenced operation and happens only if the fenced write did.
/// - **Failures** (REDIS-4): every command runs within the command timeout (default 2 s) and
///   fails with `Checkpoint` kind `Unavailable` naming the URL (without credentials) and the
///   cause; the run then fails or continues per the builder's `on_checkpoint_error` (CKP-8).
///   The connection reconnects by itself after a Redis restart; scripts evicted by the
///   restart are loaded again.
///
/// A save without a lease is a plain write (as in every store): only runs that take leases
/// are fenced. `clear` takes no lease (the trait's signature): when this store instance (or a
/// clone) holds the run's lease it is fenced (`LeaseLost` if the lease was taken over, and the
/// record is kept); otherwise it deletes the record whoever holds the lease.
///
/// ```no_run
/// use std::sync::Arc;
/// use cadence_core::checkpoint::CheckpointStore;
/// use cadence_redis::RedisStore;
///
/// # async fn demo() -> Result<(), cadence_core::CadenceError> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379/").await?;
/// let lease = store.acquire_lease("checkout", "order-1", store.lease_ttl()).await?;
/// assert!(store.acquire_lease("checkout", "order-1", store.lease_ttl()).await.is_err());
/// store.release_lease(&lease).await?;
/// let shared: Arc<dyn CheckpointStore> = Arc::new(store);
/// # let _ = shared;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    redis: Redis,
    /// Leases this store acquired, by run ([`RunKey`]), in [`HELD_SHARDS`] maps by the key's
    /// hash, each behind a mutex of its own: saves of different runs, which look their run
    /// up, rarely take the same lock.
    held: Arc<[Mutex<HeldMap>; HELD_SHARDS]>,
    /// Group commit of fenced operations (see [`crate::batch`]).
    batch: Arc<Batcher>,
}

/// Shards of [`RedisStore`]'s map of the leases it holds.
const HELD_SHARDS: usize = 16;

type HeldMap = HashMap<Box<[u8]>, Held, foldhash::fast::RandomState>;

/// A lease this store acquired and has not released.
#[derive(Debug)]
struct Held {
    token: u64,
    /// The record as read in the acquisition's round trip, for the `load` that follows.
    prefetched: Option<(Instant, Option<Vec<u8>>)>,
    /// The lease was released by a fenced `clear`: `release_lease` has nothing left to do.
    released: bool,
    /// When a save under this lease last updated the run's index entry.
    indexed_at: Option<Instant>,
    /// The run's key stem, written once per lease rather than once per save.
    stem: Stem,
}

impl Held {
    fn new(token: u64, stem: Stem, prefetched: Option<(Instant, Option<Vec<u8>>)>) -> Held {
        Held {
            token,
            prefetched,
            released: false,
            indexed_at: None,
            stem,
        }
    }
}

/// A run's key in [`RedisStore`]'s map of held leases: the cadence's length (4 bytes), the
/// cadence and the run id, so no two runs share one; written on the stack when short, so
/// that looking a run up allocates nothing.
struct RunKey {
    short: [u8; 128],
    len: usize,
    long: Vec<u8>,
}

impl RunKey {
    fn new(cadence: &str, run_id: &str) -> RunKey {
        // A cadence name longer than 4 GiB shares its key's length bytes with another: it
        // still never shares the whole key unless the texts are equal too.
        let len = u32::try_from(cadence.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes();
        let parts = [&len[..], cadence.as_bytes(), run_id.as_bytes()];
        let total = parts.iter().map(|p| p.len()).sum();
        let mut key = RunKey {
            short: [0; 128],
            len: total,
            long: Vec::new(),
        };
        if total <= key.short.len() {
            let mut at = 0;
            for part in parts {
                key.short[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
        } else {
            key.long = parts.concat();
        }
        key
    }

    fn as_bytes(&self) -> &[u8] {
        match self.long.is_empty() {
            true => &self.short[..self.len],
            false => &self.long,
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("redis", &self.redis)
            .finish()
    }
}

/// Whether `e` says a script is not in Redis's cache (after a restart or `SCRIPT FLUSH`).
fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// How long a run's index entry may go without an update while its lease is held (and, as
/// long, its record's TTL: see `RedisStore`'s docs).
fn index_every(redis: &Redis) -> Duration {
    INDEX_EVERY.min(redis.record_ttl())
}

/// Adds to `pipe` the update of `run_id`'s entry in `index` (scored now), with the
/// [`INDEX_ANCHOR`] (the group-commit script does the same), and the index TTL.
fn index_add(pipe: &mut Pipeline, index: &str, run_id: &str, index_ttl: u64) {
    pipe.cmd("ZADD")
        .arg(index)
        .arg("-inf")
        .arg(INDEX_ANCHOR)
        .arg(unix_millis_now())
        .arg(run_id)
        .ignore()
        .cmd("PEXPIRE")
        .arg(index)
        .arg(index_ttl)
        .ignore();
}

/// The index TTL: the record TTL plus [`index_every`], so the index outlives every record
/// saved since its last update.
fn index_ttl_ms(redis: &Redis) -> u64 {
    millis(redis.record_ttl().saturating_add(index_every(redis)))
}

impl RedisStore {
    /// A store on `redis` (see also [`Redis::store`]).
    pub fn new(redis: Redis) -> Self {
        let batch = Batcher::new(redis.record_ttl_ms(), index_ttl_ms(&redis));
        RedisStore {
            redis,
            held: Arc::default(),
            batch: Arc::new(batch),
        }
    }

    /// The reply to an operation submitted to the group commit (see [`crate::batch`]), its
    /// own, within the command timeout (the batcher keeps that bound, so no timer is set per
    /// operation); `what` names the operation in its error.
    ///
    /// The methods that use the group commit submit their operation when they are called,
    /// not when their future is first polled, so that future holds only this reply's
    /// receiver: operations are applied in the order of the calls.
    async fn answer(
        &self,
        reply: tokio::sync::oneshot::Receiver<RedisResult<Value>>,
        what: impl FnOnce() -> String,
    ) -> Result<Value, CadenceError> {
        let reply = reply.await.unwrap_or_else(|_| {
            Err(RedisError::from((
                ErrorKind::Io,
                "the batch carrying this command was dropped",
            )))
        });
        reply.map_err(|e| match crate::batch::is_no_answer(&e) {
            true => self.redis.timed_out(what()),
            false => self.redis.error(what(), &e),
        })
    }

    /// The shard of the held leases that holds `run`'s.
    fn held(&self, run: &[u8]) -> std::sync::MutexGuard<'_, HeldMap> {
        use std::hash::BuildHasher as _;
        let hash = foldhash::fast::FixedState::default().hash_one(run);
        // The remainder is below HELD_SHARDS, so it fits in usize.
        self.held[(hash % HELD_SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Before a write of a run: forgets its prefetched record (it is being written), and if
    /// this store holds the run's lease with `token`, gives `f` the lease's entry. One lock.
    fn touch<T>(
        &self,
        run: &RunKey,
        token: Option<u64>,
        f: impl FnOnce(&mut Held) -> T,
    ) -> Option<T> {
        let run = run.as_bytes();
        let mut held = self.held(run);
        let h = held.get_mut(run)?;
        h.prefetched = None;
        (Some(h.token) == token).then(|| f(h))
    }

    /// Forgets a prefetched record of a run: it was written since.
    fn invalidate(&self, run: &RunKey) {
        self.touch(run, None, |_| ());
    }

    /// The token of the lease this store holds on a run, if any.
    fn held_token(&self, run: &RunKey) -> Option<u64> {
        let run = run.as_bytes();
        self.held(run)
            .get(run)
            .filter(|h| !h.released)
            .map(|h| h.token)
    }

    /// Forgets a lease this store held, if it is this token's; returns it.
    fn forget(&self, run: &RunKey, token: u64) -> Option<Held> {
        let run = run.as_bytes();
        let mut held = self.held(run);
        if held.get(run).is_some_and(|h| h.token == token) {
            return held.remove(run);
        }
        None
    }

    /// Remembers a lease this store acquired.
    fn track(&self, run: &RunKey, held: Held) {
        let run = run.as_bytes();
        let mut map = self.held(run);
        if map.len() >= MAX_TRACKED / HELD_SHARDS {
            map.retain(|_, h| !h.released);
            if map.len() >= MAX_TRACKED / HELD_SHARDS {
                map.clear();
            }
        }
        map.insert(run.into(), held);
    }

    /// Before a save of `record`: forgets a prefetched record of the run (as
    /// [`invalidate`]); says whether the save must update the run's index entry (noting that
    /// it will): always without a lease, else on the lease's first save, then at most every
    /// [`index_every`]; and gives the run's key stem (a copy of the one kept with the lease,
    /// if this store holds it). One lock.
    ///
    /// [`invalidate`]: Self::invalidate
    fn prepare_save(&self, record: &Record, lease: Option<&Lease>) -> (Stem, bool) {
        let run = RunKey::new(&record.cadence, &record.run_id);
        let held = self.touch(&run, lease.map(|l| l.token), |h| {
            let now = Instant::now();
            let indexed = match h.indexed_at {
                Some(at) if now.duration_since(at) < index_every(&self.redis) => false,
                _ => {
                    h.indexed_at = Some(now);
                    true
                }
            };
            (h.stem.clone(), indexed)
        });
        held.unwrap_or_else(|| {
            (
                self.redis.keys().stem(&record.cadence, &record.run_id),
                true,
            )
        })
    }

    /// Forgets a prefetched record of a run (as [`invalidate`](Self::invalidate)) and gives
    /// a copy of its key stem, if the lease of `token` is this store's.
    fn held_stem(&self, run: &RunKey, token: u64) -> Option<Stem> {
        self.touch(run, Some(token), |h| h.stem.clone())
    }

    /// Connects to `url` with the default options ([`Redis::connect`]).
    pub async fn connect(url: impl Into<String>) -> Result<Self, CadenceError> {
        Ok(Redis::connect(url).await?.store())
    }

    /// The connection and its options.
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// The configured lease TTL (default 30 s), for the engine's `acquire_lease`.
    pub fn lease_ttl(&self) -> Duration {
        self.redis.lease_ttl()
    }

    /// The raw bytes of the record of (cadence, run id), if any — for inspection and tests.
    pub async fn get_raw(
        &self,
        cadence: &str,
        run_id: &str,
    ) -> Result<Option<Vec<u8>>, CadenceError> {
        let key = self.redis.keys().run(cadence, run_id).record;
        let mut conn = self.redis.connection();
        self.redis
            .run(|| format!("reading {key}"), async {
                redis::cmd("GET").arg(&key).query_async(&mut conn).await
            })
            .await
    }

    /// Stores raw bytes as the record of (cadence, run id), with the record TTL — for tests of
    /// corrupt data.
    pub async fn put_raw(
        &self,
        cadence: &str,
        run_id: &str,
        bytes: &[u8],
    ) -> Result<(), CadenceError> {
        let stem = self.redis.keys().stem(cadence, run_id);
        self.invalidate(&RunKey::new(cadence, run_id));
        let key = stem.key(Part::Record);
        let index = stem.key(Part::Index);
        let ttl = self.redis.record_ttl_ms();
        let index_ttl = index_ttl_ms(&self.redis);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&key)
            .arg(bytes)
            .arg("PX")
            .arg(ttl)
            .ignore();
        index_add(&mut pipe, &index, run_id, index_ttl);
        let mut conn = self.redis.connection();
        self.redis
            .run(|| format!("writing {key}"), async {
                pipe.query_async::<()>(&mut conn).await
            })
            .await
    }

    /// The remaining TTL of `key` in milliseconds (-2 missing, -1 none) — for tests.
    #[doc(hidden)]
    pub async fn pttl(&self, key: &str) -> Result<i64, CadenceError> {
        let mut conn = self.redis.connection();
        self.redis
            .run(|| "PTTL".to_owned(), async move {
                redis::cmd("PTTL").arg(key).query_async(&mut conn).await
            })
            .await
    }

    /// The keys of (cadence, run id): record, lease, fence — for tests and inspection.
    pub fn run_keys(&self, cadence: &str, run_id: &str) -> [String; 3] {
        let RunKeys {
            record,
            lease,
            fence,
        } = self.redis.keys().run(cadence, run_id);
        [record, lease, fence]
    }

    /// The index key of a cadence.
    pub fn index_key(&self, cadence: &str) -> String {
        self.redis.keys().index(cadence)
    }

    /// The fence TTL: the record's plus the lease's, so the counter outlives every record
    /// saved under a lease it issued.
    fn fence_ttl_ms(&self, lease_ttl: Duration) -> u64 {
        millis(self.redis.record_ttl().saturating_add(lease_ttl))
    }

    /// The TTL of a record: the record TTL, or less for a retained record expiring sooner.
    fn ttl_of(&self, record: &Record) -> u64 {
        let ttl = self.redis.record_ttl_ms();
        match record
            .expires_at
            .as_deref()
            .map(cadence_core::event::parse_timestamp)
        {
            Some(Ok(at)) => {
                let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                ttl.min(millis(left))
            }
            // An unreadable expiry reads as expired (Record::is_expired): keep it briefly.
            Some(Err(_)) => 1,
            None => ttl,
        }
    }

    /// Runs `pipe` on `conn`; if a script was evicted (NOSCRIPT), loads `scripts` and runs it
    /// once more.
    async fn query_scripted<T: redis::FromRedisValue>(
        conn: &mut ConnectionManager,
        pipe: &Pipeline,
        scripts: &[&Script],
    ) -> RedisResult<T> {
        match pipe.query_async(conn).await {
            Err(e) if is_noscript(&e) => {
                for s in scripts {
                    s.prepare_invoke().load_async(conn).await?;
                }
                pipe.query_async(conn).await
            }
            other => other,
        }
    }

    fn lease_lost(&self, lease: &Lease) -> CadenceError {
        self.redis.fail(
            CheckpointErrorKind::LeaseLost,
            format_args!(
                "the lease of run '{}' of cadence '{}' was lost: token {} is no longer current \
                 (the lease expired and another worker took it over, or it was released)",
                lease.run_id, lease.cadence, lease.token
            ),
        )
    }

    /// `Corrupt`/`UnsupportedVersion` errors of `Record::from_json`, naming the key.
    fn decode(&self, key: &str, bytes: &[u8]) -> Result<Record, CadenceError> {
        Record::from_json(bytes).map_err(|e| match e {
            CadenceError::Checkpoint { kind, source } => {
                self.redis.fail(kind, format_args!("{key}: {source}"))
            }
            other => other,
        })
    }
}

impl CheckpointStore for RedisStore {
    fn load<'a>(&'a self, cadence: &'a str, run_id: &'a str) -> StoreFuture<'a, Option<Record>> {
        Box::pin(async move {
            let stem = self.redis.keys().stem(cadence, run_id);
            let key = stem.key(Part::Record);
            let run = RunKey::new(cadence, run_id);
            let prefetched = self
                .held(run.as_bytes())
                .get_mut(run.as_bytes())
                .and_then(|h| h.prefetched.take())
                .filter(|(at, _)| at.elapsed() < PREFETCH_FOR);
            let bytes: Option<Vec<u8>> = match prefetched {
                Some((_, bytes)) => bytes,
                None => {
                    let mut conn = self.redis.connection();
                    self.redis
                        .run(
                            || format!("loading the checkpoint of run '{run_id}' of '{cadence}'"),
                            async { redis::cmd("GET").arg(&key).query_async(&mut conn).await },
                        )
                        .await?
                }
            };
            match bytes {
                None => Ok(None),
                Some(bytes) => {
                    let record = self.decode(&key, &bytes)?;
                    Ok((!record.is_expired(SystemTime::now())).then_some(record))
                }
            }
        })
    }

    /// A fenced save (with a lease) is submitted to the group commit when this is called, not
    /// when the future is first polled: the future then holds only where the reply comes
    /// (tens of bytes, not the hundreds of the whole save), which matters on a path taken
    /// once per note. Dropping the future before its batch is taken still withdraws the save
    /// (see the group commit in [`RedisStore`]'s docs).
    fn save<'a>(&'a self, record: &'a Record, lease: Option<&'a Lease>) -> StoreFuture<'a, ()> {
        let (stem, indexed) = self.prepare_save(record, lease);
        let payload = record.to_json();
        let ttl = self.ttl_of(record);
        let what = || {
            format!(
                "saving the checkpoint of run '{}' of '{}'",
                record.run_id, record.cadence
            )
        };
        if let Some(lease) = lease {
            // Fenced: one operation of the next group commit. `None`: the record TTL (a save
            // between index updates then keeps the TTL the last one set, so it is at most
            // `index_every` short).
            let own_ttl = (ttl != self.redis.record_ttl_ms()).then_some(ttl);
            let op = match indexed {
                false => Op::save(stem, lease.token, payload, own_ttl),
                true => {
                    Op::save_indexed(false, stem, lease.token, payload, own_ttl, &record.run_id)
                }
            };
            let reply = self.batch.submit(&self.redis, op);
            return Box::pin(async move {
                match self.answer(reply, what).await? {
                    Value::Int(1) => Ok(()),
                    _ => Err(self.lease_lost(lease)),
                }
            });
        }
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(stem.key(Part::Record))
                .arg(&payload)
                .arg("PX")
                .arg(ttl)
                .ignore();
            if indexed {
                let index = stem.key(Part::Index);
                index_add(&mut pipe, &index, &record.run_id, index_ttl_ms(&self.redis));
            }
            let mut conn = self.redis.connection();
            self.redis
                .run(what, pipe.query_async::<()>(&mut conn))
                .await
        })
    }

    fn clear<'a>(&'a self, cadence: &'a str, run_id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let stem = self.redis.keys().stem(cadence, run_id);
            let run = stem.run_keys();
            let index = stem.key(Part::Index);
            let key = RunKey::new(cadence, run_id);
            self.invalidate(&key);
            let token = self.held_token(&key);
            let mut pipe = redis::pipe();
            let mut fenced = CLEAR.prepare_invoke();
            match token {
                Some(token) => {
                    fenced.key(&run.record).key(&run.lease).arg(token);
                    pipe.invoke_script(&fenced)
                }
                None => pipe.cmd("DEL").arg(&run.record),
            };
            pipe.cmd("ZREM")
                .arg(&index)
                .arg(run_id)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&index)
                .arg(index_ttl_ms(&self.redis))
                .ignore();
            let mut conn = self.redis.connection();
            let (done,): (i64,) = self
                .redis
                .run(
                    || format!("clearing the checkpoint of run '{run_id}' of '{cadence}'"),
                    Self::query_scripted(&mut conn, &pipe, &[&CLEAR]),
                )
                .await?;
            let Some(token) = token else {
                return Ok(());
            };
            if let Some(h) = self
                .held(key.as_bytes())
                .get_mut(key.as_bytes())
                .filter(|h| h.token == token)
            {
                h.released = true;
            }
            match done {
                1 => Ok(()),
                _ => Err(self.lease_lost(&Lease::new(cadence, run_id, token))),
            }
        })
    }

    fn list<'a>(&'a self, cadence: Option<&'a str>) -> StoreFuture<'a, Vec<RunSummary>> {
        Box::pin(async move {
            let keys = self.redis.keys();
            let mut conn = self.redis.connection();
            // (index key, escaped cadence name as it appears in run keys)
            let indexes: Vec<(String, String)> = match cadence {
                Some(c) => vec![(keys.index(c), crate::keys::escape(c).into_owned())],
                None => {
                    let (pattern, head) = keys.index_pattern();
                    let mut found = Vec::new();
                    let mut cursor: u64 = 0;
                    loop {
                        let (next, batch): (u64, Vec<String>) = self
                            .redis
                            .run(|| "listing the checkpoint indexes".to_owned(), async {
                                redis::cmd("SCAN")
                                    .arg(cursor)
                                    .arg("MATCH")
                                    .arg(&pattern)
                                    .arg("COUNT")
                                    .arg(1000)
                                    .query_async(&mut conn)
                                    .await
                            })
                            .await?;
                        found.extend(batch);
                        cursor = next;
                        if cursor == 0 {
                            break;
                        }
                    }
                    found.sort();
                    found.dedup();
                    found
                        .into_iter()
                        .map(|k| {
                            let name = k.get(head..).unwrap_or_default().to_owned();
                            (k, name)
                        })
                        .collect()
                }
            };
            let now = SystemTime::now();
            let mut out: BTreeMap<(String, String), RunSummary> = BTreeMap::new();
            for (index, escaped) in indexes {
                let mut ids: Vec<String> = self
                    .redis
                    .run(|| format!("reading {index}"), async {
                        redis::cmd("ZRANGE")
                            .arg(&index)
                            .arg(0)
                            .arg(-1)
                            .query_async(&mut conn)
                            .await
                    })
                    .await?;
                ids.retain(|id| id != INDEX_ANCHOR);
                let mut gone = Vec::new();
                for chunk in ids.chunks(LIST_BATCH) {
                    let mut pipe = redis::pipe();
                    for id in chunk {
                        let stem = keys.stem_escaped(&escaped, &crate::keys::escape(id));
                        pipe.cmd("GET")
                            .arg(stem.key(Part::Record))
                            .cmd("EXISTS")
                            .arg(stem.key(Part::Lease));
                    }
                    let values: Vec<Value> = self
                        .redis
                        .run(|| format!("reading the runs of {index}"), async {
                            pipe.query_async(&mut conn).await
                        })
                        .await?;
                    for (id, pair) in chunk.iter().zip(values.chunks(2)) {
                        let (bytes, held) = match pair {
                            [Value::BulkString(bytes), held] => {
                                (bytes, matches!(held, Value::Int(n) if *n > 0))
                            }
                            _ => {
                                gone.push(id.clone());
                                continue;
                            }
                        };
                        // Corrupt records are left alone (and out of the list), as in
                        // every store; `load` reports them.
                        let Ok(record) = Record::from_json(bytes) else {
                            continue;
                        };
                        if record.is_expired(now) {
                            continue;
                        }
                        let key = (record.cadence.clone(), record.run_id.clone());
                        out.insert(key, RunSummary::of(&record, Some(held)));
                    }
                }
                if !gone.is_empty() {
                    // Prune entries whose record expired (REDIS-2).
                    let mut pipe = redis::pipe();
                    for chunk in gone.chunks(LIST_BATCH) {
                        pipe.cmd("ZREM").arg(&index).arg(chunk).ignore();
                    }
                    self.redis
                        .run(|| format!("pruning {index}"), async {
                            pipe.query_async::<()>(&mut conn).await
                        })
                        .await?;
                }
            }
            Ok(out.into_values().collect())
        })
    }

    fn supports_leases(&self) -> bool {
        true
    }

    fn acquire_lease<'a>(
        &'a self,
        cadence: &'a str,
        run_id: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, Lease> {
        Box::pin(async move {
            let stem = self.redis.keys().stem(cadence, run_id);
            let run = stem.run_keys();
            let mut conn = self.redis.connection();
            let mut acquire = ACQUIRE.prepare_invoke();
            acquire
                .key(&run.lease)
                .key(&run.fence)
                .arg(millis(ttl))
                .arg(self.fence_ttl_ms(ttl));
            // The record comes along in the same round trip, for the `load` that follows.
            let mut pipe = redis::pipe();
            pipe.invoke_script(&acquire).cmd("GET").arg(&run.record);
            let (token, record): (i64, Option<Vec<u8>>) = self
                .redis
                .run(
                    || format!("acquiring the lease of run '{run_id}' of '{cadence}'"),
                    Self::query_scripted(&mut conn, &pipe, &[&ACQUIRE]),
                )
                .await?;
            match u64::try_from(token) {
                Ok(token) if token > 0 => {
                    self.track(
                        &RunKey::new(cadence, run_id),
                        Held::new(token, stem, Some((Instant::now(), record))),
                    );
                    Ok(Lease::new(cadence, run_id, token))
                }
                _ => Err(self.redis.fail(
                    CheckpointErrorKind::LeaseHeld,
                    format_args!(
                        "the lease of run '{run_id}' of cadence '{cadence}' is held by another worker"
                    ),
                )),
            }
        })
    }

    fn renew_lease<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let run = self.redis.keys().run(&lease.cadence, &lease.run_id);
            let mut conn = self.redis.connection();
            let fence_ttl = self.fence_ttl_ms(ttl);
            let renewed: i64 = self
                .redis
                .run(
                    || {
                        format!(
                            "renewing the lease of run '{}' of '{}'",
                            lease.run_id, lease.cadence
                        )
                    },
                    async {
                        RENEW
                            .key(&run.lease)
                            .key(&run.fence)
                            .arg(lease.token)
                            .arg(millis(ttl))
                            .arg(fence_ttl)
                            .invoke_async(&mut conn)
                            .await
                    },
                )
                .await?;
            match renewed {
                1 => Ok(()),
                _ => Err(self.lease_lost(lease)),
            }
        })
    }

    fn release_lease<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let stem = self.redis.keys().stem(&lease.cadence, &lease.run_id);
            let was = self.forget(&RunKey::new(&lease.cadence, &lease.run_id), lease.token);
            if was.is_some_and(|h| h.released) {
                // A fenced clear released it already.
                return Ok(());
            }
            let mut conn = self.redis.connection();
            let _released: i64 = self
                .redis
                .run(
                    || {
                        format!(
                            "releasing the lease of run '{}' of '{}'",
                            lease.run_id, lease.cadence
                        )
                    },
                    async {
                        RELEASE
                            .key(stem.key(Part::Lease))
                            .arg(lease.token)
                            .invoke_async(&mut conn)
                            .await
                    },
                )
                .await?;
            Ok(())
        })
    }

    /// One operation of the group commit: the lease and the record together (REDIS-3, CKP-5).
    fn acquire_and_load<'a>(
        &'a self,
        cadence: &'a str,
        run_id: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, (Lease, Option<Record>)> {
        // Submitted now, as `save` is.
        let stem = self.redis.keys().stem(cadence, run_id);
        let op = Op::acquire_load(stem.clone(), millis(ttl), self.fence_ttl_ms(ttl));
        let reply = self.batch.submit(&self.redis, op);
        Box::pin(async move {
            let reply = self
                .answer(reply, || {
                    format!("acquiring the lease of run '{run_id}' of '{cadence}'")
                })
                .await?;
            let reply = match reply {
                Value::Array(values) => values,
                _ => Vec::new(),
            };
            let mut reply = reply.into_iter();
            let token = match reply.next() {
                Some(Value::Int(t)) if t > 0 => t.unsigned_abs(),
                _ => {
                    return Err(self.redis.fail(
                        CheckpointErrorKind::LeaseHeld,
                        format_args!(
                            "the lease of run '{run_id}' of cadence '{cadence}' is held by another worker"
                        ),
                    ));
                }
            };
            let lease = Lease::new(cadence, run_id, token);
            let bytes = match reply.next() {
                Some(Value::BulkString(b)) => Some(b),
                _ => None,
            };
            let record = match bytes
                .map(|b| {
                    let key = self.redis.keys().stem(cadence, run_id).key(Part::Record);
                    self.decode(&key, &b)
                })
                .transpose()
            {
                Ok(r) => r.filter(|r| !r.is_expired(SystemTime::now())),
                Err(e) => {
                    // Nothing is held after a failed call; the corrupt record stays.
                    let _ = self.release_lease(&lease).await;
                    return Err(e);
                }
            };
            self.track(&RunKey::new(cadence, run_id), Held::new(token, stem, None));
            Ok((lease, record))
        })
    }

    /// One fenced operation of the group commit that writes (or clears) the record, updates
    /// the index and releases the lease (REDIS-2, REDIS-3, CKP-7).
    fn end_run<'a>(
        &'a self,
        cadence: &'a str,
        run_id: &'a str,
        end: RunEnd<'a>,
        lease: Option<&'a Lease>,
    ) -> StoreFuture<'a, ()> {
        let Some(lease) = lease else {
            return match end {
                RunEnd::Clear => self.clear(cadence, run_id),
                RunEnd::Save(record) => self.save(record, None),
                _ => Box::pin(std::future::ready(Ok(()))),
            };
        };
        // Submitted now, as `save` is.
        let run = RunKey::new(cadence, run_id);
        let stem = self
            .held_stem(&run, lease.token)
            .unwrap_or_else(|| self.redis.keys().stem(cadence, run_id));
        let op = match end {
            RunEnd::Save(record) => Op::save_indexed(
                true,
                stem,
                lease.token,
                record.to_json(),
                Some(self.ttl_of(record)),
                run_id,
            ),
            RunEnd::Clear => Op::clear(stem, lease.token, run_id),
            _ => Op::release(stem, lease.token),
        };
        let done = self.batch.submit(&self.redis, op);
        Box::pin(async move {
            let done = self
                .answer(done, || {
                    format!("ending the checkpoint of run '{run_id}' of '{cadence}'")
                })
                .await?;
            if matches!(end, RunEnd::Keep) {
                // A stale release does nothing (REDIS-3), as in `release_lease`.
                self.forget(&run, lease.token);
                return Ok(());
            }
            match done {
                Value::Int(1) => {
                    self.forget(&run, lease.token);
                    Ok(())
                }
                // Rejected: nothing was written, the index entry included.
                _ => Err(self.lease_lost(lease)),
            }
        })
    }

    fn describe(&self) -> String {
        self.redis.url().to_owned()
    }
}
