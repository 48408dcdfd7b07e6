//! Checkpoints: what a run records so that, after a crash, it resumes where it stopped
//! (CKP-1…14).
//!
//! A [`CheckpointStore`] keeps one [`Record`] per (cadence, run id). The engine saves after
//! each completed top-level measure and after each successful member of a parallel group; on
//! the next run with the same run id it loads the record, refuses to resume if the cadence's
//! structure changed ([`Record::fingerprint`]), and skips what was completed.
//!
//! Stores: [`MemoryStore`] for tests and single processes, [`FileStore`] (atomic write, fsync,
//! rename) as the embedded default that survives a crash on one machine, and `RedisStore` in
//! cadence-redis for many machines, with leases and fencing tokens.
//!
//! The trait is object-safe (stores are used as `Arc<dyn CheckpointStore>`); its methods return
//! boxed futures.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use crate::error::{CadenceError, CheckpointErrorKind};
use crate::hook::TraceContext;

#[cfg(feature = "test-util")]
pub mod conformance;
mod file;
mod memory;
pub(crate) mod session;

pub use file::FileStore;
pub use memory::MemoryStore;

/// The record format version this library writes and reads (CKP-2).
pub const FORMAT_VERSION: u32 = 1;

/// The boxed future a [`CheckpointStore`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CadenceError>> + Send + 'a>>;

/// Where a run stands, as recorded (CKP-2).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    /// In progress, or crashed while in progress.
    Running,
    /// Ended with an error; a later run with the same id resumes.
    Failed,
    /// Ended with absorbed failures; a later run with the same id resumes.
    Partial,
    /// Ended successfully; kept only with `retain_outcome` (CKP-7).
    Succeeded,
    /// Ended by a stop; kept only with `retain_outcome` (CKP-7).
    Stopped,
}

impl RecordStatus {
    /// `running`, `failed`, `partial`, `succeeded` or `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordStatus::Running => "running",
            RecordStatus::Failed => "failed",
            RecordStatus::Partial => "partial",
            RecordStatus::Succeeded => "succeeded",
            RecordStatus::Stopped => "stopped",
        }
    }

    /// Whether this is a retained terminal outcome (succeeded or stopped).
    pub fn is_terminal(self) -> bool {
        matches!(self, RecordStatus::Succeeded | RecordStatus::Stopped)
    }
}

/// A JSON document kept as its text: scores are written into records without being parsed or
/// rebuilt, so a save serializes the score once.
pub type RawJson = Box<serde_json::value::RawValue>;

/// One run's checkpoint (CKP-2). Serialized as JSON by every store.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Record {
    /// Format version ([`FORMAT_VERSION`]).
    pub version: u32,
    /// The cadence's name.
    pub cadence: String,
    /// The run id.
    pub run_id: String,
    /// The structural fingerprint of the cadence that wrote it (CKP-3).
    pub fingerprint: String,
    /// Where the run stands.
    pub status: RecordStatus,
    /// Paths of completed top-level measures, in completion order.
    pub completed: Vec<String>,
    /// Results of finished members of an unfinished parallel group: member path → score.
    #[serde(default)]
    pub members: BTreeMap<String, RawJson>,
    /// The score (serde JSON of `S`) after the last completed measure, as JSON text; read it
    /// with [`Record::score_value`].
    pub score: RawJson,
    /// Attempts started so far, per note path, across executions (CKP-12).
    #[serde(default)]
    pub attempts: BTreeMap<String, u32>,
    /// The trace context of the run that wrote it (OTEL-3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
    /// The fencing token of the lease the writer held (0 without leases).
    #[serde(default)]
    pub fence: u64,
    /// When the run first wrote (RFC 3339, UTC).
    pub created_at: String,
    /// When the record was last written (RFC 3339, UTC).
    pub updated_at: String,
    /// For retained terminal outcomes: when the record expires (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl Record {
    /// A fresh `running` record.
    pub fn new(
        cadence: impl Into<String>,
        run_id: impl Into<String>,
        fingerprint: impl Into<String>,
        score: serde_json::Value,
    ) -> Self {
        let now = now_rfc3339();
        Record {
            version: FORMAT_VERSION,
            cadence: cadence.into(),
            run_id: run_id.into(),
            fingerprint: fingerprint.into(),
            status: RecordStatus::Running,
            completed: Vec::new(),
            members: BTreeMap::new(),
            score: raw_json(&score),
            attempts: BTreeMap::new(),
            trace: None,
            fence: 0,
            created_at: now.clone(),
            updated_at: now,
            expires_at: None,
        }
    }

    /// The score as a JSON value.
    pub fn score_value(&self) -> serde_json::Value {
        serde_json::from_str(self.score.get()).unwrap_or(serde_json::Value::Null)
    }

    /// Whether a retained terminal record has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        match &self.expires_at {
            Some(at) => humantime::parse_rfc3339(at).map_or(true, |at| now >= at),
            None => false,
        }
    }

    /// Serializes to JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses JSON bytes: `Corrupt` for undecodable data, `UnsupportedVersion` for a newer
    /// format (CKP-8).
    pub fn from_json(bytes: &[u8]) -> Result<Record, CadenceError> {
        #[derive(serde::Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version = serde_json::from_slice(bytes).map_err(|e| {
            CadenceError::checkpoint(
                CheckpointErrorKind::Corrupt,
                format!("the checkpoint record is not valid JSON: {e}"),
            )
        })?;
        if v.version > FORMAT_VERSION {
            return Err(CadenceError::checkpoint(
                CheckpointErrorKind::UnsupportedVersion,
                format!(
                    "the checkpoint record has format version {}, newer than {FORMAT_VERSION}; upgrade cadence",
                    v.version
                ),
            ));
        }
        serde_json::from_slice(bytes).map_err(|e| {
            CadenceError::checkpoint(
                CheckpointErrorKind::Corrupt,
                format!("the checkpoint record cannot be decoded: {e}"),
            )
        })
    }
}

impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version
            && self.cadence == other.cadence
            && self.run_id == other.run_id
            && self.fingerprint == other.fingerprint
            && self.status == other.status
            && self.completed == other.completed
            && self.members.len() == other.members.len()
            && self
                .members
                .iter()
                .zip(&other.members)
                .all(|((ka, va), (kb, vb))| ka == kb && va.get() == vb.get())
            && self.score.get() == other.score.get()
            && self.attempts == other.attempts
            && self.trace == other.trace
            && self.fence == other.fence
            && self.created_at == other.created_at
            && self.updated_at == other.updated_at
            && self.expires_at == other.expires_at
    }
}

/// A JSON value as [`RawJson`].
pub fn raw_json(value: &serde_json::Value) -> RawJson {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| {
        serde_json::value::RawValue::from_string("null".to_owned()).expect("null is valid JSON")
    })
}

/// `now` as RFC 3339 with microseconds and `Z` (GEN-3).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

/// One line of [`CheckpointStore::list`] (CKP-10).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RunSummary {
    /// The run id.
    pub run_id: String,
    /// The cadence.
    pub cadence: String,
    /// Where it stands.
    pub status: RecordStatus,
    /// How many top-level measures completed.
    pub completed: usize,
    /// When it was last written (RFC 3339).
    pub updated_at: String,
    /// Whether a lease is held on it, if the store knows.
    pub lease_held: Option<bool>,
}

impl RunSummary {
    /// The summary of a record.
    pub fn of(record: &Record, lease_held: Option<bool>) -> Self {
        RunSummary {
            run_id: record.run_id.clone(),
            cadence: record.cadence.clone(),
            status: record.status,
            completed: record.completed.len(),
            updated_at: record.updated_at.clone(),
            lease_held,
        }
    }
}

/// Exclusive ownership of a run id in a store, with a fencing token (CKP-9).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The cadence.
    pub cadence: String,
    /// The run id.
    pub run_id: String,
    /// Monotonically increasing per run id: every acquisition gets a higher one.
    pub token: u64,
}

impl Lease {
    /// A lease value (stores create them).
    pub fn new(cadence: impl Into<String>, run_id: impl Into<String>, token: u64) -> Self {
        Lease {
            cadence: cadence.into(),
            run_id: run_id.into(),
            token,
        }
    }
}

/// Where checkpoints live (CKP-10). Object-safe and async; `Send + Sync`.
///
/// Errors are [`CadenceError::Checkpoint`] with a [`CheckpointErrorKind`]: `Unavailable` for
/// I/O or network failures, `Corrupt`/`UnsupportedVersion` for undecodable records (which are
/// left untouched), `LeaseHeld`/`LeaseLost` for ownership, `Unsupported` for leases on a store
/// without them.
pub trait CheckpointStore: Send + Sync + 'static {
    /// The record of (cadence, run id), or `None`. An expired retained record reads as `None`.
    fn load<'a>(&'a self, cadence: &'a str, run_id: &'a str) -> StoreFuture<'a, Option<Record>>;

    /// Writes the whole record. With a lease, the store rejects the write with `LeaseLost`
    /// unless `lease.token` is the current fencing token (CKP-9). A retained terminal record
    /// carries its expiry in [`Record::expires_at`].
    fn save<'a>(&'a self, record: &'a Record, lease: Option<&'a Lease>) -> StoreFuture<'a, ()>;

    /// Removes the record (idempotent).
    fn clear<'a>(&'a self, cadence: &'a str, run_id: &'a str) -> StoreFuture<'a, ()>;

    /// Summaries of stored runs, optionally of one cadence.
    fn list<'a>(&'a self, cadence: Option<&'a str>) -> StoreFuture<'a, Vec<RunSummary>>;

    /// Whether this store implements leases.
    fn supports_leases(&self) -> bool {
        false
    }

    /// Takes the lease of (cadence, run id) for `ttl`, with a fencing token higher than any
    /// before; `LeaseHeld` if someone else holds it.
    fn acquire_lease<'a>(
        &'a self,
        cadence: &'a str,
        run_id: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, Lease> {
        let _ = (cadence, run_id, ttl);
        Box::pin(async { Err(unsupported("leases")) })
    }

    /// Extends a held lease; `LeaseLost` if it expired and was taken.
    fn renew_lease<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> StoreFuture<'a, ()> {
        let _ = (lease, ttl);
        Box::pin(async { Err(unsupported("leases")) })
    }

    /// Releases a held lease (a stale token does nothing).
    fn release_lease<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()> {
        let _ = lease;
        Box::pin(async { Err(unsupported("leases")) })
    }

    /// A description for messages and logs (a URL without credentials, a directory).
    fn describe(&self) -> String;
}

fn unsupported(what: &str) -> CadenceError {
    CadenceError::checkpoint(
        CheckpointErrorKind::Unsupported,
        format!("this checkpoint store does not support {what}"),
    )
}

/// What a run does when a checkpoint save fails (CKP-8).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnCheckpointError {
    /// Fail the run (the default).
    #[default]
    Fail,
    /// Log, call `on_checkpoint_error`, and go on.
    Continue,
}

impl fmt::Display for RecordStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
