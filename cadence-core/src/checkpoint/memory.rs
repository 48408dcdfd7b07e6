//! [`MemoryStore`]: records in process memory, with leases (CKP-11).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{CheckpointStore, Lease, Record, RecordStatus, RunEnd, RunSummary, StoreFuture};
use crate::error::{CadenceError, CheckpointErrorKind};
use crate::hook::TraceContext;

/// One stored run: a copy of its record (readers never share state with writers) and the
/// current lease. A slot holding neither is removed.
#[derive(Default)]
struct Slot {
    bytes: Option<Stored>,
    lease: Option<(u64, Instant)>,
}

/// What a slot holds: a copy of the last saved record, or bytes planted with
/// [`MemoryStore::put_raw`] (decoded on load, as any store decodes what it reads).
enum Stored {
    Kept(Box<Kept>),
    Bytes(Vec<u8>),
}

/// A copy of a saved record in buffers that later saves overwrite in place (CKP-11 "records
/// copied"). Lists are kept with their unused tail: strings past `len` keep their memory for
/// the next save, or the next run that reuses this copy, so that in a steady state a save
/// copies bytes without allocating.
struct Kept {
    version: u32,
    cadence: String,
    run_id: String,
    fingerprint: String,
    status: RecordStatus,
    completed: Reuse<String>,
    /// Member path and result JSON, in the map's order.
    members: Reuse<(String, String)>,
    /// The score's JSON text.
    score: String,
    /// Note path and count, in the map's order.
    attempts: Reuse<(String, u32)>,
    trace: Option<TraceContext>,
    fence: u64,
    created_at: String,
    updated_at: String,
    expires_at: Option<String>,
}

/// A list whose first `len` items are live; the rest are spare buffers.
#[derive(Default)]
struct Reuse<T> {
    items: Vec<T>,
    len: usize,
}

impl<T: Default> Reuse<T> {
    /// Overwrites the list with one item per element of `src`, through `set`.
    fn assign<I: ExactSizeIterator>(&mut self, src: I, mut set: impl FnMut(&mut T, I::Item)) {
        self.len = src.len();
        for (i, x) in src.enumerate() {
            if i == self.items.len() {
                self.items.push(T::default());
            }
            set(&mut self.items[i], x);
        }
    }

    fn live(&self) -> &[T] {
        &self.items[..self.len]
    }
}

/// Copies `src` into `dst` unless it already holds it: most of a run's record (names, paths
/// of earlier measures, attempt keys) is the same at every save, and comparing reads what
/// copying would write.
#[inline]
fn set(dst: &mut String, src: &str) {
    if *dst != *src {
        dst.clear();
        dst.push_str(src);
    }
}

impl Kept {
    fn new(r: &Record) -> Box<Kept> {
        let mut k = Box::new(Kept {
            version: 0,
            cadence: String::new(),
            run_id: String::new(),
            fingerprint: String::new(),
            status: RecordStatus::Running,
            completed: Reuse::default(),
            members: Reuse::default(),
            score: String::new(),
            attempts: Reuse::default(),
            trace: None,
            fence: 0,
            created_at: String::new(),
            updated_at: String::new(),
            expires_at: None,
        });
        k.update(r);
        k
    }

    /// Overwrites the copy with `r`, reusing its buffers.
    fn update(&mut self, r: &Record) {
        // Destructured so that a new field of Record cannot be forgotten here.
        let Record {
            version,
            cadence,
            run_id,
            fingerprint,
            status,
            completed,
            members,
            score,
            attempts,
            trace,
            fence,
            created_at,
            updated_at,
            expires_at,
        } = r;
        self.version = *version;
        set(&mut self.cadence, cadence);
        set(&mut self.run_id, run_id);
        set(&mut self.fingerprint, fingerprint);
        self.status = *status;
        self.completed.assign(completed.iter(), |k, p| set(k, p));
        self.members.assign(members.iter(), |(kp, kv), (p, v)| {
            set(kp, p);
            kv.clear();
            kv.push_str(v.get());
        });
        self.score.clear();
        self.score.push_str(score.get());
        self.attempts.assign(attempts.iter(), |(kp, kn), (p, n)| {
            set(kp, p);
            *kn = *n;
        });
        self.trace.clone_from(trace);
        self.fence = *fence;
        set(&mut self.created_at, created_at);
        set(&mut self.updated_at, updated_at);
        self.expires_at.clone_from(expires_at);
    }

    /// A new record equal to the copy.
    fn record(&self) -> Result<Record, CadenceError> {
        let json = |text: &str| {
            serde_json::value::RawValue::from_string(text.to_owned()).map_err(|e| {
                CadenceError::checkpoint(
                    CheckpointErrorKind::Corrupt,
                    format!("the stored record holds invalid JSON: {e}"),
                )
            })
        };
        let mut members = BTreeMap::new();
        for (path, v) in self.members.live() {
            members.insert(path.clone(), json(v)?);
        }
        Ok(Record {
            version: self.version,
            cadence: self.cadence.clone(),
            run_id: self.run_id.clone(),
            fingerprint: self.fingerprint.clone(),
            status: self.status,
            completed: self.completed.live().to_vec(),
            members,
            score: json(&self.score)?,
            attempts: self.attempts.live().iter().cloned().collect(),
            trace: self.trace.clone(),
            fence: self.fence,
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
            expires_at: self.expires_at.clone(),
        })
    }
}

impl Stored {
    /// A copy of the record, or the decoding of the planted bytes (CKP-8 errors).
    fn record(&self) -> Result<Record, CadenceError> {
        match self {
            Stored::Kept(k) => k.record(),
            Stored::Bytes(b) => Record::from_json(b),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            Stored::Kept(k) => k.record().map(|r| r.to_json()).unwrap_or_default(),
            Stored::Bytes(b) => b.clone(),
        }
    }

    /// Stores `r`, in place when this already holds a copy, else in the `spare` copy a
    /// cleared run left (so a new run's first save reuses its buffers too).
    fn put(slot: &mut Option<Stored>, spare: &mut Option<Box<Kept>>, r: &Record) {
        match slot {
            Some(Stored::Kept(k)) => k.update(r),
            _ => {
                let kept = match spare.take() {
                    Some(mut k) => {
                        k.update(r);
                        k
                    }
                    None => Kept::new(r),
                };
                *slot = Some(Stored::Kept(kept));
            }
        }
    }
}

/// An in-process store (CKP-11): records are copied in and out, leases and
/// fencing tokens work as in a shared store, so it serves tests of lease logic too.
///
/// Clones share one store.
///
/// ```
/// use std::sync::Arc;
/// use cadence_core::checkpoint::{CheckpointStore, MemoryStore, Record};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let record = Record::new("checkout", "order-1", "f00d", serde_json::json!({"total": 3}));
/// store.save(&record, None).await.unwrap();
/// assert_eq!(store.load("checkout", "order-1").await.unwrap(), Some(record));
/// # });
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// cadence → run id → slot (nested, so lookups by `&str` allocate nothing).
    slots: Slots,
    /// The last fencing token handed out. Store-wide, so that the tokens of a run id keep
    /// increasing after its empty slot was removed (CKP-9).
    fence: u64,
    /// The copy of a cleared record, whose buffers the next new record reuses.
    spare: Option<Box<Kept>>,
}

type Slots = HashMap<String, HashMap<String, Slot>>;

/// The slot of (cadence, run id), created if missing (allocating only then).
fn slot_mut<'m>(slots: &'m mut Slots, cadence: &str, run_id: &str) -> &'m mut Slot {
    if !slots.contains_key(cadence) {
        slots.insert(cadence.to_owned(), HashMap::new());
    }
    let runs = slots.get_mut(cadence).expect("inserted above");
    if !runs.contains_key(run_id) {
        runs.insert(run_id.to_owned(), Slot::default());
    }
    runs.get_mut(run_id).expect("inserted above")
}

impl State {
    /// The slot of (cadence, run id), created if missing (allocating only then).
    fn slot_mut(&mut self, cadence: &str, run_id: &str) -> &mut Slot {
        slot_mut(&mut self.slots, cadence, run_id)
    }

    /// The slot of (cadence, run id), if any.
    fn slot_of(&mut self, cadence: &str, run_id: &str) -> Option<&mut Slot> {
        self.slots.get_mut(cadence)?.get_mut(run_id)
    }

    /// The next fencing token.
    fn next_fence(&mut self) -> u64 {
        self.fence += 1;
        self.fence
    }

    /// Removes the record of (cadence, run id), keeping its copy as the spare.
    fn clear(&mut self, cadence: &str, run_id: &str) {
        if let Some(slot) = self.slots.get_mut(cadence).and_then(|r| r.get_mut(run_id))
            && let Some(Stored::Kept(k)) = slot.bytes.take()
            && self.spare.is_none()
        {
            self.spare = Some(k);
        }
        self.tidy(cadence, run_id);
    }

    /// Removes the slot of (cadence, run id) if it holds neither a record nor a lease (the
    /// cadence's map stays: cadences are few, run ids are not).
    fn tidy(&mut self, cadence: &str, run_id: &str) {
        if let Some(runs) = self.slots.get_mut(cadence)
            && runs
                .get(run_id)
                .is_some_and(|s| s.bytes.is_none() && s.lease.is_none())
        {
            runs.remove(run_id);
        }
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self
            .lock()
            .slots
            .values()
            .flat_map(|runs| runs.values())
            .filter(|s| s.bytes.is_some())
            .count();
        f.debug_struct("MemoryStore").field("records", &n).finish()
    }
}

fn lease_error(kind: CheckpointErrorKind, run_id: &str) -> CadenceError {
    let what = match kind {
        CheckpointErrorKind::LeaseHeld => "is held by another worker",
        _ => "was lost (expired and taken over)",
    };
    CadenceError::checkpoint(kind, format!("the lease of run '{run_id}' {what}"))
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores raw bytes as the record of (cadence, run id) — for tests of corrupt data.
    pub fn put_raw(&self, cadence: &str, run_id: &str, bytes: Vec<u8>) {
        self.lock().slot_mut(cadence, run_id).bytes = Some(Stored::Bytes(bytes));
    }

    /// The raw bytes of a record, if any (a saved record as its JSON).
    pub fn get_raw(&self, cadence: &str, run_id: &str) -> Option<Vec<u8>> {
        self.lock()
            .slot_of(cadence, run_id)
            .and_then(|s| s.bytes.as_ref())
            .map(Stored::bytes)
    }

    fn check_fence(slot: &Slot, lease: Option<&Lease>, run_id: &str) -> Result<(), CadenceError> {
        if let Some(lease) = lease {
            let current = slot
                .lease
                .filter(|(_, until)| Instant::now() < *until)
                .map(|(t, _)| t);
            if current != Some(lease.token) {
                return Err(lease_error(CheckpointErrorKind::LeaseLost, run_id));
            }
        }
        Ok(())
    }
}

impl CheckpointStore for MemoryStore {
    fn load<'a>(&'a self, cadence: &'a str, run_id: &'a str) -> StoreFuture<'a, Option<Record>> {
        Box::pin(async move {
            let stored = self
                .lock()
                .slot_of(cadence, run_id)
                .and_then(|s| s.bytes.as_ref())
                .map(Stored::record);
            match stored {
                None => Ok(None),
                Some(r) => {
                    let r = r?;
                    Ok((!r.is_expired(SystemTime::now())).then_some(r))
                }
            }
        })
    }

    fn save<'a>(&'a self, record: &'a Record, lease: Option<&'a Lease>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut state = self.lock();
            let State { slots, spare, .. } = &mut *state;
            // The run's slot, looked up once (two hashes) on the path every save takes.
            if let Some(slot) = slots
                .get_mut(record.cadence.as_str())
                .and_then(|runs| runs.get_mut(record.run_id.as_str()))
            {
                Self::check_fence(slot, lease, &record.run_id)?;
                Stored::put(&mut slot.bytes, spare, record);
                return Ok(());
            }
            let slot = slot_mut(slots, &record.cadence, &record.run_id);
            if let Err(e) = Self::check_fence(slot, lease, &record.run_id) {
                state.tidy(&record.cadence, &record.run_id);
                return Err(e);
            }
            // Into the run's own copy: each save of a run reuses the same memory.
            Stored::put(&mut slot.bytes, spare, record);
            Ok(())
        })
    }

    fn clear<'a>(&'a self, cadence: &'a str, run_id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.lock().clear(cadence, run_id);
            Ok(())
        })
    }

    fn list<'a>(&'a self, cadence: Option<&'a str>) -> StoreFuture<'a, Vec<RunSummary>> {
        Box::pin(async move {
            let now = Instant::now();
            let state = self.lock();
            let mut out: BTreeMap<(String, String), RunSummary> = BTreeMap::new();
            let runs = state
                .slots
                .iter()
                .flat_map(|(c, runs)| runs.iter().map(move |(id, slot)| ((c, id), slot)));
            for ((c, id), slot) in runs {
                if cadence.is_some_and(|want| want != c) {
                    continue;
                }
                let Some(stored) = &slot.bytes else { continue };
                let Ok(r) = stored.record() else {
                    continue;
                };
                if r.is_expired(SystemTime::now()) {
                    continue;
                }
                let held = slot.lease.is_some_and(|(_, until)| now < until);
                out.insert((c.clone(), id.clone()), RunSummary::of(&r, Some(held)));
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
            let now = Instant::now();
            let mut state = self.lock();
            if state
                .slot_of(cadence, run_id)
                .is_some_and(|s| s.lease.is_some_and(|(_, until)| now < until))
            {
                return Err(lease_error(CheckpointErrorKind::LeaseHeld, run_id));
            }
            let token = state.next_fence();
            state.slot_mut(cadence, run_id).lease = Some((token, crate::timer::after(now, ttl)));
            Ok(Lease::new(cadence, run_id, token))
        })
    }

    fn renew_lease<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut state = self.lock();
            let Some(slot) = state.slot_of(&lease.cadence, &lease.run_id) else {
                return Err(lease_error(CheckpointErrorKind::LeaseLost, &lease.run_id));
            };
            Self::check_fence(slot, Some(lease), &lease.run_id)?;
            slot.lease = Some((lease.token, crate::timer::after(Instant::now(), ttl)));
            Ok(())
        })
    }

    fn release_lease<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut state = self.lock();
            if let Some(slot) = state.slot_of(&lease.cadence, &lease.run_id)
                && slot.lease.is_some_and(|(t, _)| t == lease.token)
            {
                slot.lease = None;
                state.tidy(&lease.cadence, &lease.run_id);
            }
            Ok(())
        })
    }

    /// Acquisition and read under one lock (CKP-5, CKP-9).
    fn acquire_and_load<'a>(
        &'a self,
        cadence: &'a str,
        run_id: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, (Lease, Option<Record>)> {
        Box::pin(async move {
            let now = Instant::now();
            let (token, bytes) = {
                let mut state = self.lock();
                let token = state.fence + 1;
                let slot = state.slot_mut(cadence, run_id);
                if slot.lease.is_some_and(|(_, until)| now < until) {
                    return Err(lease_error(CheckpointErrorKind::LeaseHeld, run_id));
                }
                slot.lease = Some((token, crate::timer::after(now, ttl)));
                let bytes = slot.bytes.as_ref().map(Stored::record);
                state.fence = token;
                (token, bytes)
            };
            let lease = Lease::new(cadence, run_id, token);
            let record = match bytes.transpose() {
                Ok(r) => r.filter(|r| !r.is_expired(SystemTime::now())),
                Err(e) => {
                    let _ = self.release_lease(&lease).await;
                    return Err(e);
                }
            };
            Ok((lease, record))
        })
    }

    /// The end write and the release under one lock; with a lease, a clear is fenced too
    /// (CKP-7, CKP-9).
    fn end_run<'a>(
        &'a self,
        cadence: &'a str,
        run_id: &'a str,
        end: RunEnd<'a>,
        lease: Option<&'a Lease>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut state = self.lock();
            let State { slots, spare, .. } = &mut *state;
            let slot = slot_mut(slots, cadence, run_id);
            if let Err(e) = Self::check_fence(slot, lease, run_id) {
                state.tidy(cadence, run_id);
                return Err(e);
            }
            match end {
                RunEnd::Clear => {
                    if let Some(Stored::Kept(k)) = slot.bytes.take()
                        && spare.is_none()
                    {
                        *spare = Some(k);
                    }
                }
                RunEnd::Save(record) => Stored::put(&mut slot.bytes, spare, record),
                RunEnd::Keep => {}
            }
            if let Some(lease) = lease
                && slot.lease.is_some_and(|(t, _)| t == lease.token)
            {
                slot.lease = None;
            }
            state.tidy(cadence, run_id);
            Ok(())
        })
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(run_id: &str, n: usize, score: serde_json::Value) -> Record {
        let mut r = Record::new("c", run_id, "f", score);
        for i in 0..n {
            r.completed.push(format!("m{i}"));
            r.attempts
                .insert(format!("m{i}"), u32::try_from(i).unwrap_or(0) + 1);
            r.members.insert(
                format!("g/{i}"),
                super::super::raw_json(&serde_json::json!([i])),
            );
        }
        r
    }

    #[tokio::test]
    async fn copies_reuse_buffers_and_stay_exact() {
        // CKP-11: in-place copies shrink, grow and move to another run without leftovers.
        let store = MemoryStore::new();
        let big = record("a", 5, serde_json::json!({"s": "x".repeat(100)}));
        let small = record("a", 2, serde_json::json!(1));
        let grown = record("a", 3, serde_json::json!([1, 2]));
        for r in [&big, &small, &grown, &small] {
            store.save(r, None).await.unwrap();
            assert_eq!(store.load("c", "a").await.unwrap().as_ref(), Some(r));
        }
        store.clear("c", "a").await.unwrap();
        assert_eq!(store.load("c", "a").await.unwrap(), None);
        // The cleared copy is reused by another run.
        let other = record("b", 1, serde_json::json!("b"));
        store.save(&other, None).await.unwrap();
        assert_eq!(store.load("c", "b").await.unwrap(), Some(other));
        assert_eq!(store.load("c", "a").await.unwrap(), None);
    }

    #[tokio::test]
    async fn tokens_keep_increasing_after_an_empty_slot_is_removed() {
        // CKP-9: a released, empty run's slot goes, its next token is still higher.
        let store = MemoryStore::new();
        let ttl = Duration::from_secs(60);
        let first = store.acquire_lease("c", "a", ttl).await.unwrap();
        store.release_lease(&first).await.unwrap();
        assert!(
            store
                .lock()
                .slots
                .get("c")
                .is_none_or(|runs| runs.is_empty())
        );
        let second = store.acquire_lease("c", "a", ttl).await.unwrap();
        assert!(second.token > first.token);
        // A stale token neither saves nor leaves a slot behind.
        let mut r = record("z", 1, serde_json::json!(0));
        r.fence = first.token;
        let stale = Lease::new("c", "z", first.token);
        assert!(store.save(&r, Some(&stale)).await.is_err());
        assert!(
            store
                .lock()
                .slots
                .get("c")
                .is_some_and(|runs| !runs.contains_key("z"))
        );
    }
}
