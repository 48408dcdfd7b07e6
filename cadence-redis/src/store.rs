//! [`RedisStore`]: the checkpoint store (REDIS-1…4, CKP-9, CKP-10).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cadence_core::checkpoint::{CheckpointStore, Lease, Record, RunSummary, StoreFuture};
use cadence_core::{CadenceError, CheckpointErrorKind};
use redis::aio::ConnectionManager;
use redis::{ErrorKind, Pipeline, RedisError, RedisResult, Script, ServerErrorKind, Value};

use crate::connection::{Redis, millis};
use crate::keys::RunKeys;

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

/// Fenced save (REDIS-3): write the record only if the lease holds this token.
/// KEYS: record, lease. ARGV: token, record JSON, record TTL ms. Returns 1, or 0 (lost).
static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
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
/// Bound on the leases a store tracks (stale entries are dropped beyond it).
const MAX_TRACKED: usize = 100_000;

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
///   [`expires_at`](Record::expires_at) if sooner). `list` skips and prunes index entries
///   whose record expired.
/// - **Leases** (REDIS-3): acquisition is a Lua script that sets the lease only if absent and
///   increments the fence counter, whose new value is the token. Saves with a lease, renewals
///   and releases are Lua scripts that compare the token with the lease's and do nothing but
///   report `LeaseLost` (release: nothing at all) on mismatch. The fence counter lives for
///   the record TTL plus the lease TTL after each acquisition or renewal, so it outlives every
///   record saved under it and tokens never repeat while a record exists.
/// - **Round trips**: a save is one pipeline (the script or `SET`, then the index update).
///   `acquire_lease` reads the record in its round trip, and the `load` of that run that
///   follows within 1 s uses it (the engine acquires, then loads). A `clear` of a run whose
///   lease this store holds is fenced like a save and releases the lease in the same round
///   trip (the engine clears at the end of a run, then releases: that release costs nothing).
///   So an engine run of n measures costs n + 2 round trips. `list` reads records and lease
///   flags in pipelines of 256.
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
    held: Arc<Mutex<HashMap<(String, String), Held>>>,
}

/// A lease this store acquired and has not released.
#[derive(Debug)]
struct Held {
    token: u64,
    /// The record as read in the acquisition's round trip, for the `load` that follows.
    prefetched: Option<(Instant, Option<Vec<u8>>)>,
    /// The lease was released by a fenced `clear`: `release_lease` has nothing left to do.
    released: bool,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("redis", &self.redis)
            .finish()
    }
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether `e` says a script is not in Redis's cache (after a restart or `SCRIPT FLUSH`).
fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

impl RedisStore {
    /// A store on `redis` (see also [`Redis::store`]).
    pub fn new(redis: Redis) -> Self {
        RedisStore {
            redis,
            held: Arc::default(),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Held>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets a prefetched record of (cadence, run id): it was written since.
    fn invalidate(&self, cadence: &str, run_id: &str) {
        let mut held = self.held();
        if held.is_empty() {
            return;
        }
        if let Some(h) = held.get_mut(&(cadence.to_owned(), run_id.to_owned())) {
            h.prefetched = None;
        }
    }

    /// The token of the lease this store holds on (cadence, run id), if any.
    fn held_token(&self, cadence: &str, run_id: &str) -> Option<u64> {
        self.held()
            .get(&(cadence.to_owned(), run_id.to_owned()))
            .filter(|h| !h.released)
            .map(|h| h.token)
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
        self.invalidate(cadence, run_id);
        let keys = self.redis.keys();
        let key = keys.run(cadence, run_id).record;
        let index = keys.index(cadence);
        let ttl = self.redis.record_ttl_ms();
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&key)
            .arg(bytes)
            .arg("PX")
            .arg(ttl)
            .ignore()
            .cmd("ZADD")
            .arg(&index)
            .arg(unix_millis(SystemTime::now()))
            .arg(run_id)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&index)
            .arg(ttl)
            .ignore();
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
            let key = self.redis.keys().run(cadence, run_id).record;
            let prefetched = self
                .held()
                .get_mut(&(cadence.to_owned(), run_id.to_owned()))
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

    fn save<'a>(&'a self, record: &'a Record, lease: Option<&'a Lease>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.invalidate(&record.cadence, &record.run_id);
            let keys = self.redis.keys();
            let run = keys.run(&record.cadence, &record.run_id);
            let index = keys.index(&record.cadence);
            let payload = record.to_json();
            let ttl = self.ttl_of(record);
            let index_ttl = self.redis.record_ttl_ms();
            let mut pipe = redis::pipe();
            let mut fenced = SAVE.prepare_invoke();
            match lease {
                Some(lease) => {
                    fenced
                        .key(&run.record)
                        .key(&run.lease)
                        .arg(lease.token)
                        .arg(&payload)
                        .arg(ttl);
                    pipe.invoke_script(&fenced)
                }
                None => pipe
                    .cmd("SET")
                    .arg(&run.record)
                    .arg(&payload)
                    .arg("PX")
                    .arg(ttl),
            };
            pipe.cmd("ZADD")
                .arg(&index)
                .arg(unix_millis(SystemTime::now()))
                .arg(&record.run_id)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&index)
                .arg(index_ttl)
                .ignore();
            let mut conn = self.redis.connection();
            let (written,): (Value,) = self
                .redis
                .run(
                    || {
                        format!(
                            "saving the checkpoint of run '{}' of '{}'",
                            record.run_id, record.cadence
                        )
                    },
                    Self::query_scripted(&mut conn, &pipe, &[&SAVE]),
                )
                .await?;
            match (lease, written) {
                (Some(lease), Value::Int(0)) => Err(self.lease_lost(lease)),
                _ => Ok(()),
            }
        })
    }

    fn clear<'a>(&'a self, cadence: &'a str, run_id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let keys = self.redis.keys();
            let run = keys.run(cadence, run_id);
            let index = keys.index(cadence);
            self.invalidate(cadence, run_id);
            let token = self.held_token(cadence, run_id);
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
                .arg(self.redis.record_ttl_ms())
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
                .held()
                .get_mut(&(cadence.to_owned(), run_id.to_owned()))
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
                let ids: Vec<String> = self
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
                let mut gone = Vec::new();
                for chunk in ids.chunks(LIST_BATCH) {
                    let mut pipe = redis::pipe();
                    for id in chunk {
                        let run = keys.run_escaped(&escaped, &crate::keys::escape(id));
                        pipe.cmd("GET")
                            .arg(&run.record)
                            .cmd("EXISTS")
                            .arg(&run.lease);
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
            let run = self.redis.keys().run(cadence, run_id);
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
                    let mut held = self.held();
                    if held.len() >= MAX_TRACKED {
                        held.retain(|_, h| !h.released);
                        if held.len() >= MAX_TRACKED {
                            held.clear();
                        }
                    }
                    held.insert(
                        (cadence.to_owned(), run_id.to_owned()),
                        Held {
                            token,
                            prefetched: Some((Instant::now(), record)),
                            released: false,
                        },
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
            let key = (lease.cadence.clone(), lease.run_id.clone());
            let was = {
                let mut held = self.held();
                match held.get(&key) {
                    Some(h) if h.token == lease.token => held.remove(&key),
                    _ => None,
                }
            };
            if was.is_some_and(|h| h.released) {
                // A fenced clear released it already.
                return Ok(());
            }
            let run = self.redis.keys().run(&lease.cadence, &lease.run_id);
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
                            .key(&run.lease)
                            .arg(lease.token)
                            .invoke_async(&mut conn)
                            .await
                    },
                )
                .await?;
            Ok(())
        })
    }

    fn describe(&self) -> String {
        self.redis.url().to_owned()
    }
}
