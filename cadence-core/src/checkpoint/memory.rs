//! [`MemoryStore`]: records in process memory, with leases (CKP-11).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{CheckpointStore, Lease, Record, RunEnd, RunSummary, StoreFuture};
use crate::error::{CadenceError, CheckpointErrorKind};

/// One stored run: a copy of its record (readers never share state with writers), the fence
/// counter and the current lease.
#[derive(Default)]
struct Slot {
    bytes: Option<Stored>,
    fence: u64,
    lease: Option<(u64, Instant)>,
}

/// What a slot holds: a copy of the last saved record, or bytes planted with
/// [`MemoryStore::put_raw`] (decoded on load, as any store decodes what it reads).
enum Stored {
    Kept(Box<Kept>),
    Bytes(Vec<u8>),
}

/// A copy of a saved record in buffers that the run's next save overwrites in place: once a
/// run's paths are known, a save copies without allocating (CKP-11 "records copied").
struct Kept {
    /// Every field but the score (whose field holds `null`).
    record: Record,
    /// The score's JSON text.
    score: String,
}

impl Kept {
    fn new(r: &Record) -> Box<Kept> {
        let mut record = r.clone();
        record.score = super::raw_json(&serde_json::Value::Null);
        Box::new(Kept {
            record,
            score: r.score.get().to_owned(),
        })
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
        let k = &mut self.record;
        k.version = *version;
        k.cadence.clone_from(cadence);
        k.run_id.clone_from(run_id);
        k.fingerprint.clone_from(fingerprint);
        k.status = *status;
        k.completed.clone_from(completed);
        if !(k.members.is_empty() && members.is_empty()) {
            k.members = members.clone();
        }
        for (path, n) in attempts {
            match k.attempts.get_mut(path) {
                Some(v) => *v = *n,
                None => {
                    k.attempts.insert(path.clone(), *n);
                }
            }
        }
        if k.attempts.len() != attempts.len() {
            k.attempts.retain(|path, _| attempts.contains_key(path));
        }
        k.trace.clone_from(trace);
        k.fence = *fence;
        k.created_at.clone_from(created_at);
        k.updated_at.clone_from(updated_at);
        k.expires_at.clone_from(expires_at);
        self.score.clear();
        self.score.push_str(score.get());
    }

    fn record(&self) -> Result<Record, CadenceError> {
        let mut r = self.record.clone();
        r.score = serde_json::value::RawValue::from_string(self.score.clone()).map_err(|e| {
            CadenceError::checkpoint(
                CheckpointErrorKind::Corrupt,
                format!("the stored score is not valid JSON: {e}"),
            )
        })?;
        Ok(r)
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

    /// Stores `r`, in place when this already holds a copy.
    fn put(slot: &mut Option<Stored>, r: &Record) {
        match slot {
            Some(Stored::Kept(k)) => k.update(r),
            _ => *slot = Some(Stored::Kept(Kept::new(r))),
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
    /// cadence → run id → slot (nested, so lookups by `&str` allocate nothing).
    slots: Arc<Mutex<Slots>>,
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

/// The slot of (cadence, run id), if any.
fn slot_of<'m>(slots: &'m mut Slots, cadence: &str, run_id: &str) -> Option<&'m mut Slot> {
    slots.get_mut(cadence)?.get_mut(run_id)
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self
            .lock()
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores raw bytes as the record of (cadence, run id) — for tests of corrupt data.
    pub fn put_raw(&self, cadence: &str, run_id: &str, bytes: Vec<u8>) {
        slot_mut(&mut self.lock(), cadence, run_id).bytes = Some(Stored::Bytes(bytes));
    }

    /// The raw bytes of a record, if any (a saved record as its JSON).
    pub fn get_raw(&self, cadence: &str, run_id: &str) -> Option<Vec<u8>> {
        slot_of(&mut self.lock(), cadence, run_id)
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
            let stored = slot_of(&mut self.lock(), cadence, run_id)
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
            let mut slots = self.lock();
            let slot = slot_mut(&mut slots, &record.cadence, &record.run_id);
            Self::check_fence(slot, lease, &record.run_id)?;
            // Into the run's own copy: each save of a run reuses the same memory.
            Stored::put(&mut slot.bytes, record);
            Ok(())
        })
    }

    fn clear<'a>(&'a self, cadence: &'a str, run_id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if let Some(slot) = slot_of(&mut self.lock(), cadence, run_id) {
                slot.bytes = None;
            }
            Ok(())
        })
    }

    fn list<'a>(&'a self, cadence: Option<&'a str>) -> StoreFuture<'a, Vec<RunSummary>> {
        Box::pin(async move {
            let now = Instant::now();
            let slots = self.lock();
            let mut out: BTreeMap<(String, String), RunSummary> = BTreeMap::new();
            let runs = slots
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
            let mut slots = self.lock();
            let slot = slot_mut(&mut slots, cadence, run_id);
            if slot.lease.is_some_and(|(_, until)| now < until) {
                return Err(lease_error(CheckpointErrorKind::LeaseHeld, run_id));
            }
            slot.fence += 1;
            slot.lease = Some((slot.fence, now + ttl));
            Ok(Lease::new(cadence, run_id, slot.fence))
        })
    }

    fn renew_lease<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut slots = self.lock();
            let slot = slot_mut(&mut slots, &lease.cadence, &lease.run_id);
            Self::check_fence(slot, Some(lease), &lease.run_id)?;
            slot.lease = Some((lease.token, Instant::now() + ttl));
            Ok(())
        })
    }

    fn release_lease<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if let Some(slot) = slot_of(&mut self.lock(), &lease.cadence, &lease.run_id)
                && slot.lease.is_some_and(|(t, _)| t == lease.token)
            {
                slot.lease = None;
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
                let mut slots = self.lock();
                let slot = slot_mut(&mut slots, cadence, run_id);
                if slot.lease.is_some_and(|(_, until)| now < until) {
                    return Err(lease_error(CheckpointErrorKind::LeaseHeld, run_id));
                }
                slot.fence += 1;
                slot.lease = Some((slot.fence, now + ttl));
                (slot.fence, slot.bytes.as_ref().map(Stored::record))
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
            let mut slots = self.lock();
            let slot = slot_mut(&mut slots, cadence, run_id);
            Self::check_fence(slot, lease, run_id)?;
            match end {
                RunEnd::Clear => slot.bytes = None,
                RunEnd::Save(record) => Stored::put(&mut slot.bytes, record),
                RunEnd::Keep => {}
            }
            if let Some(lease) = lease
                && slot.lease.is_some_and(|(t, _)| t == lease.token)
            {
                slot.lease = None;
            }
            Ok(())
        })
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}
