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

/// The longest TTL a checkpoint lease, a retained outcome or a store's record may have: a
/// century, so that every expiry is a date that stores can write (RFC 3339 has four-digit
/// years) and that no clock arithmetic overflows. Longer ones are validation errors.
pub const MAX_TTL: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);

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

/// Whether JSON writes `s` as it is between quotes: no control character, `"` or `\`
/// (non-ASCII is written as it is). Eight bytes at a time (the "has a byte less than"
/// and "has a zero byte" word tricks, both exact for whether any byte matches).
fn needs_no_escape(s: &[u8]) -> bool {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES * 0x80;
    let has = |x: u64, byte: u8| {
        let y = x ^ (ONES * u64::from(byte));
        y.wrapping_sub(ONES) & !y & HIGH != 0
    };
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0;
        if control || has(x, b'"') || has(x, b'\\') {
            return false;
        }
    }
    chunks
        .remainder()
        .iter()
        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
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
        Record::with_raw_score(cadence, run_id, fingerprint, raw_json(&score))
    }

    /// A fresh `running` record with an already serialized score (a checkpointed run's first
    /// record: its score is encoded once, not as a `Value` first).
    pub(crate) fn with_raw_score(
        cadence: impl Into<String>,
        run_id: impl Into<String>,
        fingerprint: impl Into<String>,
        score: RawJson,
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
            score,
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

    /// Serializes to JSON bytes (into a buffer sized for the record up front: the score is
    /// copied once, never regrown).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_json(&mut out);
        out
    }

    /// Serializes into `out` (cleared first), reusing its capacity: a store that keeps one
    /// buffer per run writes each save into the same memory.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        out.clear();
        let paths: usize = self.completed.iter().map(|p| p.len() + 3).sum::<usize>()
            + self.attempts.keys().map(|p| p.len() + 16).sum::<usize>()
            + self
                .members
                .iter()
                .map(|(p, v)| p.len() + v.get().len() + 4)
                .sum::<usize>();
        out.reserve(
            256 + self.score.get().len()
                + paths
                + self.cadence.len()
                + self.run_id.len()
                + self.fingerprint.len(),
        );
        self.write_fields(out);
    }

    /// Writes the record as serde's derived `Serialize` would (same fields, order and
    /// escaping: `serde_json::to_vec` of it gives the same bytes, as a test checks), by hand:
    /// a save writes the whole record, and most of its strings (names, paths, times) need no
    /// escape, which this checks for and copies at once instead of byte by byte.
    fn write_fields(&self, out: &mut Vec<u8>) {
        fn string(out: &mut Vec<u8>, s: &str) {
            if needs_no_escape(s.as_bytes()) {
                out.push(b'"');
                out.extend_from_slice(s.as_bytes());
                out.push(b'"');
            } else {
                // Writing a string into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, s);
            }
        }
        // `,"<name>":`; names need no escape.
        fn field(out: &mut Vec<u8>, name: &str) {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
        }
        fn number(out: &mut Vec<u8>, mut n: u64) {
            let mut digits = [0u8; 20];
            let mut at = digits.len();
            loop {
                at -= 1;
                digits[at] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            out.extend_from_slice(&digits[at..]);
        }
        out.extend_from_slice(b"{\"version\":");
        number(out, u64::from(self.version));
        field(out, "cadence");
        string(out, &self.cadence);
        field(out, "run_id");
        string(out, &self.run_id);
        field(out, "fingerprint");
        string(out, &self.fingerprint);
        field(out, "status");
        string(out, self.status.as_str());
        field(out, "completed");
        out.push(b'[');
        for (i, path) in self.completed.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, path);
        }
        out.push(b']');
        // A JSON object of `entries`, each value written by `value`.
        fn object<'e, V>(
            out: &mut Vec<u8>,
            entries: impl Iterator<Item = (&'e String, V)>,
            value: impl Fn(&mut Vec<u8>, V),
        ) {
            out.push(b'{');
            for (i, (key, v)) in entries.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, key);
                out.push(b':');
                value(out, v);
            }
            out.push(b'}');
        }
        field(out, "members");
        object(out, self.members.iter(), |out, result| {
            out.extend_from_slice(result.get().as_bytes());
        });
        field(out, "score");
        out.extend_from_slice(self.score.get().as_bytes());
        field(out, "attempts");
        object(out, self.attempts.iter(), |out, n| {
            number(out, u64::from(*n))
        });
        if let Some(trace) = &self.trace {
            field(out, "trace");
            let _ = serde_json::to_writer(&mut *out, trace);
        }
        field(out, "fence");
        number(out, self.fence);
        field(out, "created_at");
        string(out, &self.created_at);
        field(out, "updated_at");
        string(out, &self.updated_at);
        if let Some(at) = &self.expires_at {
            field(out, "expires_at");
            string(out, at);
        }
        out.push(b'}');
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
    let mut out = String::with_capacity(27);
    write_rfc3339_micros(SystemTime::now(), &mut out);
    out
}

/// Appends `t` as RFC 3339 with microseconds and `Z` (`2026-11-27T06:10:23.123456Z`, the
/// format of `humantime::format_rfc3339_micros`) without allocating beyond `out`'s growth:
/// saves stamp `updated_at` in place. Times before 1970 or after 9999 are clamped.
pub(crate) fn write_rfc3339_micros(t: SystemTime, out: &mut String) {
    const MAX_SECS: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let (secs, micros) = match d.as_secs() {
        s if s > MAX_SECS => (MAX_SECS, 999_999),
        s => (s, d.subsec_micros()),
    };
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm), in unsigned arithmetic
    // shifted to the era starting 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    put(20, 6, u64::from(micros));
    // Only ASCII digits and separators were written.
    out.push_str(std::str::from_utf8(&buf).unwrap_or("1970-01-01T00:00:00.000000Z"));
}

/// Stamps `out` (cleared first) with `t` as [`write_rfc3339_micros`] does. `secs` remembers
/// the second `out` was last stamped with: within the same second only the six digits of
/// the microseconds are rewritten. Times outside what the formatter writes exactly (before
/// 1970, after 9999) always go through it.
pub(crate) fn stamp_rfc3339_micros(t: SystemTime, out: &mut String, secs: &mut u64) {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let s = d.as_secs();
    if s == *secs && out.len() == 27 && s <= 253_402_300_799 && d != Duration::ZERO {
        let mut digits = *b"000000";
        let mut v = d.subsec_micros();
        for b in digits.iter_mut().rev() {
            *b = b'0' + (v % 10) as u8;
            v /= 10;
        }
        // Digits are ASCII; positions 20..26 of a stamp are its microseconds, then `Z`.
        out.truncate(20);
        out.push_str(std::str::from_utf8(&digits).unwrap_or("000000"));
        out.push('Z');
        return;
    }
    out.clear();
    write_rfc3339_micros(t, out);
    *secs = if d == Duration::ZERO { u64::MAX } else { s };
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

    /// Takes the lease of (cadence, run id) and loads its record, as the engine does when a
    /// run starts (CKP-5, CKP-9). A shared store does both in one round trip; the default
    /// calls [`acquire_lease`](Self::acquire_lease) then [`load`](Self::load), and releases
    /// the lease again if loading fails (so a failed call holds nothing).
    fn acquire_and_load<'a>(
        &'a self,
        cadence: &'a str,
        run_id: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, (Lease, Option<Record>)> {
        Box::pin(async move {
            let lease = self.acquire_lease(cadence, run_id, ttl).await?;
            match self.load(cadence, run_id).await {
                Ok(record) => Ok((lease, record)),
                Err(e) => {
                    let _ = self.release_lease(&lease).await;
                    Err(e)
                }
            }
        })
    }

    /// Writes the end of a run (CKP-7) and releases its lease, as the engine does when a run
    /// ends: [`RunEnd::Clear`] removes the record, [`RunEnd::Save`] writes a last record (a
    /// retained outcome, a failed or partial status), [`RunEnd::Keep`] leaves it. With a
    /// lease, the write is fenced like a save (`LeaseLost`, and nothing written, if `lease`
    /// is stale).
    ///
    /// On success the lease is released; on failure it is left held so that the caller may
    /// write again, then release it. A shared store does write and release in one round
    /// trip; the default calls [`clear`](Self::clear) or [`save`](Self::save), then
    /// [`release_lease`](Self::release_lease) (whose failure is ignored: an unreleased lease
    /// expires).
    fn end_run<'a>(
        &'a self,
        cadence: &'a str,
        run_id: &'a str,
        end: RunEnd<'a>,
        lease: Option<&'a Lease>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            match end {
                RunEnd::Clear => self.clear(cadence, run_id).await?,
                RunEnd::Save(record) => self.save(record, lease).await?,
                RunEnd::Keep => {}
            }
            if let Some(lease) = lease {
                let _ = self.release_lease(lease).await;
            }
            Ok(())
        })
    }

    /// A description for messages and logs (a URL without credentials, a directory).
    fn describe(&self) -> String;
}

/// What [`CheckpointStore::end_run`] writes when a run ends (CKP-7).
#[non_exhaustive]
#[derive(Debug, Clone, Copy)]
pub enum RunEnd<'a> {
    /// Succeeded or stopped without `retain_outcome`: remove the record.
    Clear,
    /// Write this record: a retained terminal outcome, or the status of a failed or partial
    /// run (or the last progress of a cancelled one).
    Save(&'a Record),
    /// Cancelled with nothing left to write: keep the record as it is.
    Keep,
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn needs_no_escape_agrees_with_serde_for_every_byte_at_every_position() {
        for len in 1..20 {
            for pos in 0..len {
                for byte in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[pos] = byte;
                    let Ok(text) = std::str::from_utf8(&s) else {
                        continue;
                    };
                    let plain = serde_json::to_string(text).unwrap() == format!("\"{text}\"");
                    assert_eq!(super::needs_no_escape(&s), plain, "{s:?}");
                }
            }
        }
        assert!(super::needs_no_escape(
            "café ☕ ünïcode, long enough".as_bytes()
        ));
        // Random mixes of plain, special and multi-byte characters.
        let alphabet = [
            'a',
            'Z',
            '0',
            ' ',
            '~',
            '"',
            '\\',
            '\n',
            '\u{0}',
            '\u{1f}',
            '\u{7f}',
            'é',
            '☕',
            '\u{80}',
            '\u{10ffff}',
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let text: String = (0..len)
                .map(|i| alphabet[((seed >> (i % 60)) as usize + i * 7) % alphabet.len()])
                .collect();
            let plain = serde_json::to_string(&text).unwrap() == format!("\"{text}\"");
            assert_eq!(super::needs_no_escape(text.as_bytes()), plain, "{text:?}");
        }
    }

    // CKP-2: the hand-written record writer gives exactly what serde's derived `Serialize`
    // gives, for plain and awkward strings, every status, and every optional field.
    #[test]
    fn the_record_writer_writes_what_serde_writes() {
        use super::{Record, RecordStatus, raw_json};
        let awkward = "quote\" back\\ nl\n tab\t nul\u{0} del\u{7f} café ☕ \u{1f}";
        let mut r = Record::new("plain", "run-1", "f00d", serde_json::json!({"n": 1}));
        let check = |r: &Record| {
            let expected = serde_json::to_vec(r).unwrap();
            assert_eq!(
                String::from_utf8(r.to_json()).unwrap(),
                String::from_utf8(expected).unwrap()
            );
            let back = Record::from_json(&r.to_json()).unwrap();
            assert_eq!(back.to_json(), r.to_json());
        };
        check(&r);
        r.cadence = awkward.into();
        r.run_id = format!("{awkward}/run");
        r.completed = vec!["a".into(), awkward.into(), String::new()];
        r.members
            .insert("g/m1".into(), raw_json(&serde_json::json!([1, "x"])));
        r.members
            .insert(awkward.into(), raw_json(&serde_json::json!(null)));
        r.attempts.insert("a".into(), 3);
        r.attempts.insert(awkward.into(), u32::MAX);
        r.fence = u64::MAX;
        r.trace = Some(crate::TraceContext::new(awkward));
        r.expires_at = Some(awkward.into());
        for status in [
            RecordStatus::Running,
            RecordStatus::Failed,
            RecordStatus::Partial,
            RecordStatus::Succeeded,
            RecordStatus::Stopped,
        ] {
            r.status = status;
            check(&r);
        }
        r.trace.as_mut().unwrap().tracestate = Some("k=v".into());
        check(&r);
    }

    #[test]
    fn timestamps_match_humantime() {
        // GEN-3: the in-place formatter writes what humantime writes.
        let mut t = UNIX_EPOCH;
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut out = String::new();
            super::write_rfc3339_micros(t, &mut out);
            assert_eq!(out, humantime::format_rfc3339_micros(t).to_string());
            t = UNIX_EPOCH + Duration::from_micros(seed % 253_402_300_799_000_000);
        }
        // The stamp that rewrites only the microseconds within a second writes the same.
        let (mut stamped, mut secs) = (String::from("old"), u64::MAX);
        let mut t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for step in [0, 1, 999_999, 1, 5, 1_000_000, 3, 86_400_000_000, 7] {
            t += Duration::from_micros(step);
            super::stamp_rfc3339_micros(t, &mut stamped, &mut secs);
            assert_eq!(stamped, humantime::format_rfc3339_micros(t).to_string());
        }
        super::stamp_rfc3339_micros(UNIX_EPOCH, &mut stamped, &mut secs);
        assert_eq!(stamped, "1970-01-01T00:00:00.000000Z");
        super::stamp_rfc3339_micros(
            UNIX_EPOCH + Duration::from_micros(5),
            &mut stamped,
            &mut secs,
        );
        assert_eq!(stamped, "1970-01-01T00:00:00.000005Z");
        let mut out = String::from("old");
        out.clear();
        super::write_rfc3339_micros(UNIX_EPOCH + Duration::from_secs(951_782_400), &mut out);
        assert_eq!(out, "2000-02-29T00:00:00.000000Z");
        let now = SystemTime::now();
        assert_eq!(
            {
                let mut s = String::new();
                super::write_rfc3339_micros(now, &mut s);
                s
            },
            humantime::format_rfc3339_micros(now).to_string()
        );
    }
}
