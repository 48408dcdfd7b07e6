//! The engine's side of checkpointing: one [`Session`] per checkpointed run (CKP-4…9, CKP-12).
//!
//! It owns the in-process guard and the store lease, knows what the loaded record says was
//! completed, counts attempts, and writes the whole record after each completed measure and
//! after each successful member of a parallel group. Saves of one run are serialized by the
//! record's async mutex.
//!
//! Round trips: a run starts with one [`CheckpointStore::acquire_and_load`] and ends with one
//! [`CheckpointStore::end_run`] (which releases the lease). The save of the *last* top-level
//! measure is folded into that end write: nothing runs between the two (the measure is the
//! last thing the body does, and the body returns in the same poll), so a crash before the
//! end write re-runs at most that measure — exactly as a crash before its own save would
//! (CKP-14). The end write carries it: a cleared record drops it with the rest, a retained,
//! failed, partial or cancelled one contains it. So that measure's score is encoded only when
//! the end write writes it, from the run's final score (the same score: nothing ran since);
//! a succeeded or stopped run without `retain_outcome` encodes it never. `on_checkpoint_saved`
//! for that measure is reported once the end write succeeded; if the end write (or that
//! encoding) fails, it is handled as that save's failure (CKP-8: `Fail` fails the run at that
//! measure and writes the failed status without it, `Continue` reports it and writes the end
//! again).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::{
    CheckpointStore, Lease, OnCheckpointError, RawJson, Record, RecordStatus, RunEnd,
    stamp_rfc3339_micros,
};
use crate::error::{CadenceError, CheckpointErrorKind};
use crate::hook::TraceContext;

/// How a score travels to and from JSON, captured where `S: Serialize + DeserializeOwned`.
pub(crate) struct Codec<S> {
    pub(crate) encode: fn(&S) -> Result<RawJson, serde_json::Error>,
    pub(crate) decode: fn(&RawJson) -> Result<S, serde_json::Error>,
}

impl<S> Clone for Codec<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Codec<S> {}

impl<S: serde::Serialize + serde::de::DeserializeOwned> Codec<S> {
    pub(crate) fn new() -> Self {
        Codec {
            encode: |s| serde_json::value::to_raw_value(s),
            decode: |raw| serde_json::from_str(raw.get()),
        }
    }
}

/// A cadence's checkpoint configuration.
pub(crate) struct Checkpointing<S> {
    pub(crate) store: Arc<dyn CheckpointStore>,
    pub(crate) codec: Codec<S>,
    pub(crate) on_error: OnCheckpointError,
    pub(crate) lease_ttl: Duration,
}

/// The run options that matter to a checkpointed run.
#[derive(Debug, Default)]
pub(crate) struct CheckpointRunOptions {
    pub(crate) allow_fingerprint_mismatch: bool,
    pub(crate) trace: Option<TraceContext>,
    pub(crate) retain_outcome: Option<Duration>,
}

/// Flags of a root run that hooks and the report read (EVT-2 `cadence.started`).
#[derive(Debug, Default)]
pub(crate) struct RunFlags {
    pub(crate) resumed: AtomicBool,
    pub(crate) replayed: AtomicBool,
}

/// The in-process ownership guard (CKP-9): one per (store, cadence, run id).
///
/// The keys held live in one process-wide set split into [`HELD_SHARDS`] shards by the key's
/// hash, each behind a mutex of its own: runs of different keys rarely take the same lock
/// (every run takes one twice, at its start and at its end). A key is hashed once, with the
/// process's randomly keyed SipHash (run ids may come from outside: no chosen collisions),
/// and is one allocation, shared by the guard and its shard's set.
pub(crate) struct HeldKey {
    shard: &'static HeldShard,
    held: Held,
}

/// Shards of the set of held keys.
const HELD_SHARDS: usize = 64;

type HeldShard = Mutex<HashSet<Held, BuildHasherDefault<KeyHasher>>>;

/// A held key: its bytes (see [`HeldKey::take`]) and their hash, which is all the set hashes.
#[derive(Clone, PartialEq, Eq)]
struct Held {
    hash: u64,
    key: Arc<[u8]>,
}

impl std::hash::Hash for Held {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl HeldKey {
    pub(crate) fn take(
        store: &Arc<dyn CheckpointStore>,
        cadence: &str,
        run_id: &str,
    ) -> Option<Self> {
        static SHARDS: std::sync::OnceLock<[HeldShard; HELD_SHARDS]> = std::sync::OnceLock::new();
        static KEYS: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
        // The store's address and the cadence's length, then the cadence and the run id: no
        // two (store, cadence, run id) give the same bytes. Written on the stack when short,
        // so that the key is one allocation.
        let store = (Arc::as_ptr(store) as *const () as usize).to_le_bytes();
        let len = cadence.len().to_le_bytes();
        let parts = [&store[..], &len, cadence.as_bytes(), run_id.as_bytes()];
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let key: Arc<[u8]> = if total <= 128 {
            let mut buf = [0u8; 128];
            let mut at = 0;
            for part in parts {
                buf[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            Arc::from(&buf[..total])
        } else {
            Arc::from(parts.concat())
        };
        let hash = std::hash::BuildHasher::hash_one(KEYS.get_or_init(Default::default), &*key);
        let held = Held { hash, key };
        // The shard from bits 32 and up, so that the keys of one shard still differ in the
        // low bits, from which the shard's set picks buckets. The remainder is below
        // HELD_SHARDS, so it fits in usize.
        let shard = &SHARDS.get_or_init(|| std::array::from_fn(|_| Mutex::default()))
            [((hash >> 32) % HELD_SHARDS as u64) as usize];
        let inserted = shard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(held.clone());
        // Built only when taken: a dropped HeldKey removes its key.
        inserted.then_some(HeldKey { shard, held })
    }
}

impl Drop for HeldKey {
    fn drop(&mut self) {
        self.shard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.held);
    }
}

/// What opening a checkpointed run found.
pub(crate) enum Opened<S> {
    /// Run (fresh or resumed).
    Run(Box<Session<S>>),
    /// A retained terminal outcome: return it without running (CKP-7).
    Replay(S, RecordStatus),
}

/// What [`Session::finish`] did, for the engine's hooks and outcome.
#[derive(Default)]
pub(crate) struct Finished {
    /// The last measure whose save the end write carried, and the completed count: report
    /// `on_checkpoint_saved` for it.
    pub(crate) saved: Option<(String, usize)>,
    /// That save failed under `on_checkpoint_error(Fail)`: the run fails with this error at
    /// this measure (its failed status was written, or its failure is in `errors`).
    pub(crate) failed: Option<(CadenceError, String)>,
    /// Failures to report with `on_checkpoint_error` (already logged), in order.
    pub(crate) errors: Vec<CadenceError>,
}

/// The attempt counters of a run (CKP-12): one entry per note that started an attempt in
/// this execution, found by the note's key (no text hashed or compared per attempt), and the
/// entries changed since the last save (so a save merges only those, not every counter).
#[derive(Default)]
struct Attempts {
    notes: Vec<NoteAttempts>,
    /// Position in `notes` by [`CompiledNote::key`](crate::cadence::CompiledNote).
    index: HashMap<u64, usize, BuildHasherDefault<KeyHasher>>,
    /// Positions in `notes` changed since the last save.
    dirty: Vec<usize>,
}

/// The attempts of one note.
struct NoteAttempts {
    path: Arc<str>,
    /// Attempts started so far, earlier executions' included.
    total: u32,
    /// Attempts of earlier executions (CKP-12 `prior_attempts`).
    prior: u32,
    /// Listed in [`Attempts::dirty`].
    dirty: bool,
    /// The record holds an entry for this path (updated in place by a merge).
    in_record: bool,
}

/// Hashes note keys, integers unique in the process, with one multiplication (an odd
/// constant: distinct keys keep distinct low bits, which pick the bucket).
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// One checkpointed run.
pub(crate) struct Session<S> {
    pub(crate) store: Arc<dyn CheckpointStore>,
    pub(crate) codec: Codec<S>,
    pub(crate) on_error: OnCheckpointError,
    pub(crate) lease_ttl: Duration,
    pub(crate) lease: Option<Lease>,
    _held: HeldKey,
    /// The record this run writes; its lock serializes saves.
    record: tokio::sync::Mutex<Record>,
    /// Completed measure paths from the loaded record (skipped on resume).
    pub(crate) completed: HashSet<String>,
    /// Stored results of finished members of an unfinished group.
    pub(crate) members: BTreeMap<String, RawJson>,
    /// Attempts recorded by earlier executions (CKP-12).
    prior: HashMap<String, u32>,
    /// Attempts of each note started so far (earlier executions' included) and which changed
    /// since the last save: only those are merged into the record.
    attempts: Mutex<Attempts>,
    /// The last top-level measure, completed and applied to the record but not yet written:
    /// the end write carries it.
    deferred: Mutex<Option<String>>,
    pub(crate) resumed: bool,
    pub(crate) forced: bool,
    released: AtomicBool,
    /// The second `updated_at` of the record was last stamped with (see
    /// [`stamp_rfc3339_micros`]); saves are serialized by the record's lock.
    stamped: AtomicU64,
}

/// A run that does not go on after its record was loaded (a replay or an error), as the
/// synchronous part of [`Session::open`] hands it back: `open` releases the lease, then drops
/// the in-process guard, then returns `exit`.
struct Stop<S> {
    held: HeldKey,
    lease: Option<Lease>,
    exit: Result<Opened<S>, CadenceError>,
}

impl<S> Session<S> {
    /// CKP-5, CKP-6, CKP-8, CKP-9: guard, lease, load, fingerprint check. Replaces `score`
    /// with the stored one on resume.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn open(
        cfg: &Checkpointing<S>,
        cadence: &str,
        run_id: &str,
        fingerprint: &str,
        allow_mismatch: bool,
        trace: Option<TraceContext>,
        valid_paths: &[&str],
        score: &mut S,
    ) -> Result<Opened<S>, CadenceError> {
        let Some(held) = HeldKey::take(&cfg.store, cadence, run_id) else {
            return Err(CadenceError::checkpoint(
                CheckpointErrorKind::LeaseHeld,
                format!("run '{run_id}' of cadence '{cadence}' is already running in this process"),
            ));
        };
        // One round trip with a shared store (acquire_and_load releases on a failed load).
        let (lease, loaded) = if cfg.store.supports_leases() {
            let (lease, loaded) = cfg
                .store
                .acquire_and_load(cadence, run_id, cfg.lease_ttl)
                .await?;
            (Some(lease), loaded)
        } else {
            (None, cfg.store.load(cadence, run_id).await?)
        };
        // The rest is synchronous but for releasing the lease of a run that does not go on,
        // which awaits holding nothing else. This keeps the future small: it is part of the
        // future every checkpointed run allocates (inline, the record, the stored score and
        // the maps were held across each release: 1424 bytes instead of 728). The in-process
        // guard is dropped only after the release.
        let started = Self::start(
            cfg,
            (cadence, run_id, fingerprint),
            allow_mismatch,
            trace,
            valid_paths,
            (held, lease, loaded),
            score,
        );
        match started {
            Ok(session) => Ok(Opened::Run(session)),
            Err(stop) => {
                if let Some(lease) = &stop.lease {
                    let _ = cfg.store.release_lease(lease).await;
                }
                drop(stop.held);
                stop.exit
            }
        }
    }

    /// The synchronous part of [`open`](Self::open) once the record is loaded (with the
    /// guard and lease taken for it): CKP-5…8.
    fn start(
        cfg: &Checkpointing<S>,
        (cadence, run_id, fingerprint): (&str, &str, &str),
        allow_mismatch: bool,
        trace: Option<TraceContext>,
        valid_paths: &[&str],
        (held, lease, loaded): (HeldKey, Option<Lease>, Option<Record>),
        score: &mut S,
    ) -> Result<Box<Session<S>>, Box<Stop<S>>> {
        let stop = |held, lease, exit| Box::new(Stop { held, lease, exit });
        let mut forced = false;
        let mut completed = HashSet::new();
        let mut members = BTreeMap::new();
        let mut prior = HashMap::new();
        let resumed = loaded.is_some();
        let record = match loaded {
            Some(rec) => {
                let stored_score = match (cfg.codec.decode)(&rec.score) {
                    Ok(s) => s,
                    Err(e) => {
                        return Err(stop(
                            held,
                            lease,
                            Err(CadenceError::checkpoint(
                                CheckpointErrorKind::Corrupt,
                                format!(
                                    "the stored score of run '{run_id}' does not deserialize into this score type: {e}"
                                ),
                            )),
                        ));
                    }
                };
                if rec.status.is_terminal() {
                    return Err(stop(
                        held,
                        lease,
                        Ok(Opened::Replay(stored_score, rec.status)),
                    ));
                }
                if rec.fingerprint != fingerprint {
                    if !allow_mismatch {
                        return Err(stop(
                            held,
                            lease,
                            Err(CadenceError::CheckpointMismatch {
                                run_id: run_id.to_owned(),
                                stored: rec.fingerprint.clone(),
                                current: fingerprint.to_owned(),
                            }),
                        ));
                    }
                    forced = true;
                    tracing::warn!(
                        target: "cadence",
                        cadence, run_id,
                        "resuming a checkpoint written by a different version of this cadence (allow_fingerprint_mismatch)"
                    );
                }
                *score = stored_score;
                for path in &rec.completed {
                    if valid_paths.contains(&path.as_str()) {
                        completed.insert(path.clone());
                    }
                }
                members = rec.members.clone();
                prior = rec.attempts.iter().map(|(k, v)| (k.clone(), *v)).collect();
                let mut rec = rec;
                rec.fingerprint = fingerprint.to_owned();
                rec.status = RecordStatus::Running;
                if trace.is_some() {
                    rec.trace = trace;
                }
                rec
            }
            None => {
                let encoded = match (cfg.codec.encode)(score) {
                    Ok(v) => v,
                    Err(e) => {
                        return Err(stop(
                            held,
                            lease,
                            Err(CadenceError::checkpoint(
                                CheckpointErrorKind::Other,
                                format!("the score does not serialize: {e}"),
                            )),
                        ));
                    }
                };
                let mut rec = Record::with_raw_score(cadence, run_id, fingerprint, encoded);
                rec.trace = trace;
                rec
            }
        };
        let mut record = record;
        record.fence = lease.as_ref().map_or(0, |l| l.token);
        // Sized once for a run's top-level measures (a hint for the notes too), rather than
        // regrown as they complete.
        let measures = valid_paths.len();
        record
            .completed
            .reserve(measures.saturating_sub(record.completed.len()));
        let attempts = Attempts {
            notes: Vec::with_capacity(measures),
            index: HashMap::with_capacity_and_hasher(measures, BuildHasherDefault::default()),
            dirty: Vec::with_capacity(measures),
        };
        Ok(Box::new(Session {
            store: cfg.store.clone(),
            codec: cfg.codec,
            on_error: cfg.on_error,
            lease_ttl: cfg.lease_ttl,
            lease,
            _held: held,
            record: tokio::sync::Mutex::new(record),
            completed,
            members,
            prior,
            attempts: Mutex::new(attempts),
            deferred: Mutex::new(None),
            resumed,
            forced,
            released: AtomicBool::new(false),
            stamped: AtomicU64::new(u64::MAX),
        }))
    }

    /// Counts a started attempt of the note with `key` and `path` (CKP-12); returns the
    /// attempts of that note recorded by earlier executions.
    pub(crate) fn attempt_started(&self, key: u64, path: &Arc<str>) -> u32 {
        let mut guard = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let a = &mut *guard;
        let i = match a.index.get(&key) {
            Some(&i) => {
                a.notes[i].total += 1;
                i
            }
            None => {
                let prior = if self.prior.is_empty() {
                    None
                } else {
                    self.prior.get(&**path).copied()
                };
                let i = a.notes.len();
                a.notes.push(NoteAttempts {
                    path: path.clone(),
                    total: prior.unwrap_or(0) + 1,
                    prior: prior.unwrap_or(0),
                    dirty: false,
                    in_record: prior.is_some(),
                });
                a.index.insert(key, i);
                i
            }
        };
        let note = &mut a.notes[i];
        if !note.dirty {
            note.dirty = true;
            a.dirty.push(i);
        }
        note.prior
    }

    /// Merges the attempt counters that changed since the last save into `rec` (CKP-12).
    fn merge_attempts(&self, rec: &mut Record) {
        let mut guard = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let Attempts { notes, dirty, .. } = &mut *guard;
        for i in dirty.drain(..) {
            let note = &mut notes[i];
            note.dirty = false;
            if note.in_record
                && let Some(n) = rec.attempts.get_mut(&*note.path)
            {
                *n = note.total;
                continue;
            }
            rec.attempts.insert(String::from(&*note.path), note.total);
            note.in_record = true;
        }
    }

    /// Attempt counters and `updated_at`, before a write (stamped in place, no allocation).
    fn stamp(&self, rec: &mut Record) {
        self.merge_attempts(rec);
        let mut secs = self.stamped.load(Ordering::Relaxed);
        stamp_rfc3339_micros(SystemTime::now(), &mut rec.updated_at, &mut secs);
        self.stamped.store(secs, Ordering::Relaxed);
    }

    /// Stamps `rec` and saves it: the store's own future, not one wrapping it, so a caller's
    /// future holds only that pointer while the save is in flight.
    fn write<'a>(&'a self, rec: &'a mut Record) -> super::StoreFuture<'a, ()> {
        self.stamp(rec);
        self.store.save(rec, self.lease.as_ref())
    }

    /// Encodes a score (synchronously: the engine never holds `&S` across an await, so scores
    /// need not be `Sync`).
    pub(crate) fn encode(&self, score: &S) -> Result<RawJson, CadenceError> {
        (self.codec.encode)(score).map_err(|e| {
            CadenceError::checkpoint(
                CheckpointErrorKind::Other,
                format!("the score does not serialize: {e}"),
            )
        })
    }

    /// Whether the end write of a run ending with `status` needs its final score encoded
    /// (see [`finish`](Self::finish)): for a retained outcome, and to carry a deferred last
    /// measure into any record that is written rather than cleared.
    pub(crate) fn needs_final_score(
        &self,
        status: Option<RecordStatus>,
        retain: Option<Duration>,
    ) -> bool {
        match status {
            Some(RecordStatus::Succeeded | RecordStatus::Stopped) => retain.is_some(),
            _ => self
                .deferred
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some(),
        }
    }

    /// CKP-4: after a completed top-level measure but the last; returns the completed count
    /// once saved.
    ///
    /// Takes the encoded score, not the encoding's `Result`: an async fn keeps its arguments
    /// for its whole life, and an error would make every save's future the larger.
    pub(crate) async fn measure_completed(
        &self,
        path: &str,
        encoded: RawJson,
    ) -> Result<usize, CadenceError> {
        // Uncontended unless a parallel group's member is saving; the wait for the lock is
        // boxed, so that this future holds a pointer, not tokio's wait node, on the common
        // path (this future is boxed once per save: small, it is a cheap allocation).
        let mut rec = match self.record.try_lock() {
            Ok(rec) => rec,
            Err(_) => Box::pin(self.record.lock()).await,
        };
        rec.score = encoded;
        rec.completed.push(path.to_owned());
        rec.members.clear();
        self.write(&mut rec).await?;
        Ok(rec.completed.len())
    }

    /// CKP-4: the last top-level measure completed. Its save is carried by the end write
    /// ([`finish`](Self::finish); see the module docs), which encodes its score if it writes
    /// it.
    pub(crate) fn defer_last(&self, path: &str) {
        *self.deferred.lock().unwrap_or_else(|p| p.into_inner()) = Some(path.to_owned());
    }

    /// CKP-4: after a successful member of a parallel group (score still the pre-group one).
    pub(crate) async fn member_completed(
        &self,
        member_path: &str,
        encoded: Result<RawJson, CadenceError>,
    ) -> Result<usize, CadenceError> {
        let encoded = encoded?;
        let mut rec = self.record.lock().await;
        rec.members.insert(member_path.to_owned(), encoded);
        self.write(&mut rec).await?;
        Ok(rec.completed.len())
    }

    /// CKP-7: at the end of the run, one [`CheckpointStore::end_run`] (clear, or a last
    /// record) that also releases the lease and carries the deferred save of the last
    /// measure, if any. `status` is `None` for a cancelled run. `final_score` is the run's
    /// final score, encoded when [`needs_final_score`](Self::needs_final_score) says so.
    /// Errors are logged here and returned in [`Finished`] for the engine's hooks.
    pub(crate) async fn finish(
        &self,
        status: Option<RecordStatus>,
        final_score: Option<Result<RawJson, CadenceError>>,
        retain: Option<Duration>,
    ) -> Finished {
        let mut rec = self.record.lock().await;
        let deferred = self
            .deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let mut done = Finished::default();
        // The deferred last measure joins the record: its score is the final one.
        let carried = match (&deferred, final_score) {
            (None, final_score) => Ok(final_score),
            (Some(path), final_score) => {
                let carried = match final_score {
                    Some(Ok(score)) => {
                        let copy = retain.is_some().then(|| score.clone());
                        rec.score = score;
                        Ok(copy.map(Ok))
                    }
                    Some(Err(e)) => Err(e),
                    // Not written: the record is cleared.
                    None => Ok(None),
                };
                if carried.is_ok() {
                    rec.completed.push(path.clone());
                    rec.members.clear();
                }
                carried
            }
        };
        let (first, final_score) = match carried {
            Ok(final_score) => {
                let r = self
                    .write_end(&mut rec, status, &final_score, retain, deferred.is_some())
                    .await;
                (r, final_score)
            }
            Err(e) => (Err(e), None),
        };
        match (first, deferred) {
            (Ok(()), deferred) => {
                done.saved = deferred.map(|path| (path, rec.completed.len()));
                return done;
            }
            (Err(e), None) => {
                tracing::warn!(target: "cadence", "writing the final checkpoint failed: {e}");
                done.errors.push(e);
            }
            // The end write carried the last measure's save: its failure is that save's
            // (CKP-8).
            (Err(e), Some(path)) => {
                let again = match self.on_error {
                    OnCheckpointError::Fail => {
                        done.failed = Some((e, path));
                        // As after any failed save: the run fails, its status is written.
                        Some(RecordStatus::Failed)
                    }
                    _ => {
                        tracing::warn!(target: "cadence", "checkpoint save failed, continuing: {e}");
                        done.errors.push(e);
                        status
                    }
                };
                // Boxed: only a failed end write gets here, and inline this second write
                // would make every run's `finish` future (which the engine boxes) larger, as
                // it holds `done` as well: 1080 bytes instead of 952, over the 1 KiB above
                // which glibc's allocator takes its slow path.
                let retry: crate::event::BoxFuture<'_, _> =
                    Box::pin(self.write_end(&mut rec, again, &final_score, retain, true));
                match retry.await {
                    Ok(()) => return done,
                    Err(e) => {
                        tracing::warn!(target: "cadence", "writing the final checkpoint failed: {e}");
                        done.errors.push(e);
                    }
                }
            }
        }
        // end_run keeps the lease when it fails: release it now.
        if let Some(lease) = &self.lease {
            self.released.store(true, Ordering::Relaxed);
            let _ = self.store.release_lease(lease).await;
        }
        done
    }

    /// One end write: what `status` calls for (CKP-7), through `end_run`, which releases the
    /// lease when it succeeds. `carries` says a deferred measure is in `rec`: a cancelled run
    /// then writes it rather than keeping the stored record.
    async fn write_end(
        &self,
        rec: &mut Record,
        status: Option<RecordStatus>,
        final_score: &Option<Result<RawJson, CadenceError>>,
        retain: Option<Duration>,
        carries: bool,
    ) -> Result<(), CadenceError> {
        let terminal;
        let end = match status {
            None if carries => {
                self.stamp(rec);
                RunEnd::Save(&*rec)
            }
            None => RunEnd::Keep,
            Some(s @ (RecordStatus::Succeeded | RecordStatus::Stopped)) => match retain {
                Some(ttl) => {
                    // A copy: if this write fails, `rec` still holds the run's progress.
                    self.stamp(rec);
                    let mut t = rec.clone();
                    t.status = s;
                    t.score = match final_score {
                        Some(Ok(score)) => score.clone(),
                        Some(Err(e)) => {
                            return Err(CadenceError::checkpoint(
                                CheckpointErrorKind::Other,
                                e.to_string(),
                            ));
                        }
                        // Its encoding failed, as the failure of the measure it carried.
                        None => {
                            return Err(CadenceError::checkpoint(
                                CheckpointErrorKind::Other,
                                "the final score does not serialize",
                            ));
                        }
                    };
                    t.completed.clear();
                    t.members.clear();
                    let expires = SystemTime::now() + ttl;
                    t.expires_at = Some(humantime::format_rfc3339_micros(expires).to_string());
                    terminal = t;
                    RunEnd::Save(&terminal)
                }
                None => RunEnd::Clear,
            },
            Some(s) => {
                rec.status = s;
                self.stamp(rec);
                RunEnd::Save(&*rec)
            }
        };
        self.store
            .end_run(&rec.cadence, &rec.run_id, end, self.lease.as_ref())
            .await?;
        if self.lease.is_some() {
            self.released.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// CKP-9: keeps the lease alive; returns when it is lost.
    pub(crate) async fn keep_lease(&self) -> CadenceError {
        let Some(lease) = &self.lease else {
            return std::future::pending().await;
        };
        let every = (self.lease_ttl / 3).max(Duration::from_millis(1));
        let mut last_ok = tokio::time::Instant::now();
        loop {
            let Ok(wait) = crate::timer::sleep(every) else {
                // The run goes on; the lease is left to the store's expiry.
                tracing::warn!(
                    target: "cadence",
                    "cannot renew the checkpoint lease: {}",
                    crate::timer::NoTimeDriver::fix()
                );
                return std::future::pending().await;
            };
            wait.await;
            match self.store.renew_lease(lease, self.lease_ttl).await {
                Ok(()) => last_ok = tokio::time::Instant::now(),
                Err(CadenceError::Checkpoint {
                    kind: CheckpointErrorKind::LeaseLost,
                    source,
                }) => {
                    return CadenceError::Checkpoint {
                        kind: CheckpointErrorKind::LeaseLost,
                        source,
                    };
                }
                Err(e) if last_ok.elapsed() >= self.lease_ttl => {
                    return CadenceError::checkpoint(
                        CheckpointErrorKind::LeaseLost,
                        format!("the lease could not be renewed before it expired: {e}"),
                    );
                }
                Err(e) => {
                    tracing::warn!(target: "cadence", "renewing the checkpoint lease failed, retrying: {e}");
                }
            }
        }
    }
}

impl<S> Drop for Session<S> {
    /// A dropped run releases its lease in the background (RUN-5), or leaves it to expire.
    fn drop(&mut self) {
        if *self.released.get_mut() {
            return;
        }
        if let (Some(lease), Ok(handle)) =
            (self.lease.take(), tokio::runtime::Handle::try_current())
        {
            let store = self.store.clone();
            handle.spawn(async move {
                let _ = store.release_lease(&lease).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::MemoryStore;

    // CKP-9: the in-process guard is per (store, cadence, run id): held once, free again when
    // dropped, and neither another store nor another split of the same text shares it.
    #[test]
    fn a_held_key_is_exclusive_per_store_cadence_and_run_id() {
        let one: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
        let two: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
        let held = HeldKey::take(&one, "ab", "c").expect("free");
        assert!(HeldKey::take(&one, "ab", "c").is_none(), "held twice");
        let other_store = HeldKey::take(&two, "ab", "c").expect("another store");
        let other_split = HeldKey::take(&one, "a", "bc").expect("another cadence and run id");
        let other_run = HeldKey::take(&one, "ab", "d").expect("another run id");
        drop(held);
        let again = HeldKey::take(&one, "ab", "c").expect("free once dropped");
        assert!(HeldKey::take(&two, "ab", "c").is_none());
        drop((again, other_store, other_split, other_run));
        for store in [&one, &two] {
            assert!(HeldKey::take(store, "ab", "c").is_some());
        }
    }
}
