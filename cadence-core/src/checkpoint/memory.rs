//! [`MemoryStore`]: records in process memory, with leases (CKP-11).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{CheckpointStore, Lease, Record, RunEnd, RunSummary, StoreFuture};
use crate::error::{CadenceError, CheckpointErrorKind};

/// One stored run: the record as bytes (so readers never share state with writers, and a
/// corrupt record can be planted by tests), the fence counter and the current lease.
#[derive(Default)]
struct Slot {
    bytes: Option<Vec<u8>>,
    fence: u64,
    lease: Option<(u64, Instant)>,
}

/// An in-process store (CKP-11): records are copied in and out (as JSON bytes), leases and
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
        slot_mut(&mut self.lock(), cadence, run_id).bytes = Some(bytes);
    }

    /// The raw bytes of a record, if any.
    pub fn get_raw(&self, cadence: &str, run_id: &str) -> Option<Vec<u8>> {
        slot_of(&mut self.lock(), cadence, run_id).and_then(|s| s.bytes.clone())
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
            let bytes = self.get_raw(cadence, run_id);
            match bytes {
                None => Ok(None),
                Some(b) => {
                    let r = Record::from_json(&b)?;
                    Ok((!r.is_expired(SystemTime::now())).then_some(r))
                }
            }
        })
    }

    fn save<'a>(&'a self, record: &'a Record, lease: Option<&'a Lease>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let bytes = record.to_json();
            let mut slots = self.lock();
            let slot = slot_mut(&mut slots, &record.cadence, &record.run_id);
            Self::check_fence(slot, lease, &record.run_id)?;
            slot.bytes = Some(bytes);
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
                let Some(bytes) = &slot.bytes else { continue };
                let Ok(r) = Record::from_json(bytes) else {
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
                (slot.fence, slot.bytes.clone())
            };
            let lease = Lease::new(cadence, run_id, token);
            let record = match bytes.map(|b| Record::from_json(&b)).transpose() {
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
            let bytes = match end {
                RunEnd::Save(record) => Some(record.to_json()),
                _ => None,
            };
            let mut slots = self.lock();
            let slot = slot_mut(&mut slots, cadence, run_id);
            Self::check_fence(slot, lease, run_id)?;
            match end {
                RunEnd::Clear => slot.bytes = None,
                RunEnd::Save(_) => slot.bytes = bytes,
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
