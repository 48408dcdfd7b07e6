//! Events: one serializable record per occurrence of a run, the data contract that
//! dashboards, live HTTP feeds and Redis streams consume (EVT-1…9), plus the ready-made
//! [`LoggingHooks`] (HOOK-6) and [`TimingHooks`] (HOOK-7).
//!
//! An [`EventEmitter`] is a [`Hook`](crate::Hook) for every score type: attach it with
//! `with_hooks(emitter.clone())` and it turns hook calls into [`Event`] values. Sync listeners
//! run inline; async listeners and [`Sink`]s run on the emitter's dispatcher task, fed by a
//! bounded queue that drops (and counts) rather than block a note (EVT-6).
//!
//! ```
//! use cadence_core::{BoxError, Cadence, note};
//! use cadence_core::event::{Event, EventEmitter, EventKind};
//! use std::sync::{Arc, Mutex};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let emitter = EventEmitter::new();
//! let names = Arc::new(Mutex::new(Vec::new()));
//! let seen = names.clone();
//! emitter.on("note.*", move |e: &Event| seen.lock().unwrap().push(e.name().to_owned()));
//!
//! let cadence = Cadence::<u32>::new("count")
//!     .then("one", note::from_fn(|n: &mut u32| Box::pin(async move { *n += 1; Ok::<_, BoxError>(()) })))
//!     .with_hooks(emitter.clone())
//!     .build()
//!     .unwrap();
//! cadence.run(0).await.unwrap();
//! assert_eq!(*names.lock().unwrap(), ["note.started", "note.completed"]);
//!
//! // Events serialize flat, with the kind's name in "type" (EVT-1).
//! let e = Event::new("r1", "count", 3, EventKind::NoteStarted { path: "one".into(), attempt: 1 });
//! let json = serde_json::to_string(&e).unwrap();
//! assert!(json.contains(r#""type":"note.started","path":"one","attempt":1"#));
//! assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
//! emitter.shutdown().await;
//! # });
//! ```
//!
//! Events hold strings as `Arc<str>` so that fanning one event out to several consumers
//! (broadcast subscribers, sinks) clones pointers, not text. Timestamps and durations are
//! kept to the microsecond, the precision of their serialized form, so a round trip through
//! JSON is lossless.

mod emitter;
mod logging;
mod sink;
mod timestamp;
mod timing;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::CadenceError;
use crate::hook::{MeasureKind, SkipReason};
use crate::policy::circuit_breaker::CircuitState;

pub use emitter::{
    DEFAULT_CAPACITY, DEFAULT_SHUTDOWN_TIMEOUT, EventEmitter, ListenerId, ListenerOutput,
    MAX_BROADCAST, MAX_CAPACITY, ScoredEmitter,
};
pub use logging::LoggingHooks;
pub use sink::{BoxFuture, ChannelSink, JsonLinesSink, Sink, read_events};
pub use timestamp::Timestamp;
pub use timing::{NoteTimings, RunTimings, TimingHooks};

/// One occurrence of a run, as every consumer sees it (EVT-1).
///
/// Serialized flat: the envelope (`run_id`, `parent_run_id`, `cadence`, `seq`, `at`), then
/// `"type"` with the kind's name, then the kind's fields:
///
/// ```text
/// {"run_id":"r1","parent_run_id":null,"cadence":"checkout","seq":4,
///  "at":"2026-05-01T12:00:00.000123Z","type":"note.completed",
///  "path":"enrich/profile","attempt":1,"duration":0.0102,"stopped":false}
/// ```
///
/// ```
/// use cadence_core::event::{Event, EventKind};
/// use std::time::Duration;
///
/// let at = cadence_core::event::parse_timestamp("2026-05-01T12:00:00.000123Z").unwrap();
/// let e = Event::new("r1", "checkout", 4, EventKind::NoteCompleted {
///     path: "enrich/profile".into(),
///     attempt: 1,
///     duration: Duration::from_micros(10_200),
///     stopped: false,
/// })
/// .with_at(at);
/// assert_eq!(
///     serde_json::to_string(&e).unwrap(),
///     r#"{"run_id":"r1","parent_run_id":null,"cadence":"checkout","seq":4,"at":"2026-05-01T12:00:00.000123Z","type":"note.completed","path":"enrich/profile","attempt":1,"duration":0.0102,"stopped":false}"#
/// );
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The run the occurrence belongs to (`<parent>/<measure>` for child runs). Empty for
    /// emitter-level events (`events.dropped`).
    pub run_id: Arc<str>,
    /// The parent run, for child runs.
    pub parent_run_id: Option<Arc<str>>,
    /// The cadence the occurrence happened in (the child's name for child runs).
    pub cadence: Arc<str>,
    /// The occurrence's number in its run tree, from 0 (EVT-3).
    pub seq: u64,
    /// Wall-clock time of the occurrence, UTC, to the microsecond (RFC 3339 with `Z`).
    pub at: Timestamp,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// An event at the current time (truncated to the microsecond), with no parent run.
    pub fn new(
        run_id: impl Into<Arc<str>>,
        cadence: impl Into<Arc<str>>,
        seq: u64,
        kind: EventKind,
    ) -> Self {
        Event {
            run_id: run_id.into(),
            parent_run_id: None,
            cadence: cadence.into(),
            seq,
            at: Timestamp::now(),
            kind,
        }
    }

    /// With a parent run id (for child runs).
    #[must_use]
    pub fn with_parent(mut self, parent_run_id: impl Into<Arc<str>>) -> Self {
        self.parent_run_id = Some(parent_run_id.into());
        self
    }

    /// With this timestamp (a `SystemTime` is truncated to the microsecond).
    #[must_use]
    pub fn with_at(mut self, at: impl Into<Timestamp>) -> Self {
        self.at = at.into();
        self
    }

    /// The kind's stable name, e.g. `note.completed` (the raw name for unknown kinds).
    pub fn name(&self) -> &str {
        self.kind.name()
    }

    /// The measure or note path the event is about, if any.
    pub fn path(&self) -> Option<&str> {
        self.kind.path()
    }

    /// The duration the event reports (a run, measure or attempt), if any.
    pub fn duration(&self) -> Option<Duration> {
        self.kind.duration()
    }

    /// The error the event reports, if any.
    pub fn error(&self) -> Option<&EventError> {
        self.kind.error()
    }
}

/// What happened, with the kind's fields (EVT-2). Serialized with its name in `"type"`.
///
/// `#[non_exhaustive]`: new kinds may be added; consumers reading events written by a newer
/// version get [`EventKind::Unknown`] for kinds they do not know (EVT-9).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventKind {
    /// `cadence.started`: a run started.
    #[serde(rename = "cadence.started")]
    CadenceStarted {
        /// Whether the run resumed from a checkpoint.
        resumed: bool,
        /// Whether the run replays a recorded run.
        replayed: bool,
    },
    /// `cadence.completed`: a run ended `Succeeded` or `Partial`.
    #[serde(rename = "cadence.completed")]
    CadenceCompleted {
        /// How long the run took.
        #[serde(with = "secs")]
        duration: Duration,
        /// Full paths of the measures whose failures an `OnError::Continue` handler absorbed
        /// (empty when the run succeeded).
        failed_measures: Vec<String>,
        /// The score, through [`EventEmitter::with_score`] only (EVT-4).
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        score: Option<serde_json::Value>,
    },
    /// `cadence.failed`: a run failed.
    #[serde(rename = "cadence.failed")]
    CadenceFailed {
        /// How long the run took.
        #[serde(with = "secs")]
        duration: Duration,
        /// Why.
        error: EventError,
        /// The score, through [`EventEmitter::with_score`] only (EVT-4).
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        score: Option<serde_json::Value>,
    },
    /// `cadence.stopped`: a note stopped the run (RUN-8).
    #[serde(rename = "cadence.stopped")]
    CadenceStopped {
        /// How long the run took.
        #[serde(with = "secs")]
        duration: Duration,
        /// Full path of the stopping note.
        path: Arc<str>,
        /// The reason given, if any.
        reason: Option<String>,
        /// The score, through [`EventEmitter::with_score`] only (EVT-4).
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        score: Option<serde_json::Value>,
    },
    /// `cadence.cancelled`: a run was cancelled.
    #[serde(rename = "cadence.cancelled")]
    CadenceCancelled {
        /// How long the run took.
        #[serde(with = "secs")]
        duration: Duration,
        /// The score, through [`EventEmitter::with_score`] only (EVT-4).
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        score: Option<serde_json::Value>,
    },
    /// `measure.started`: a top-level measure started.
    #[serde(rename = "measure.started")]
    MeasureStarted {
        /// The measure's path.
        path: Arc<str>,
        /// What kind of measure.
        kind: MeasureKind,
    },
    /// `measure.finished`: a top-level measure ended.
    #[serde(rename = "measure.finished")]
    MeasureFinished {
        /// The measure's path.
        path: Arc<str>,
        /// How long it took.
        #[serde(with = "secs")]
        duration: Duration,
        /// How it ended.
        outcome: MeasureStatus,
        /// Why it failed, when it did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<EventError>,
    },
    /// `note.started`: an attempt of a note started.
    #[serde(rename = "note.started")]
    NoteStarted {
        /// The note's path.
        path: Arc<str>,
        /// The attempt, from 1.
        attempt: u32,
    },
    /// `note.completed`: an attempt succeeded (or stopped the run).
    #[serde(rename = "note.completed")]
    NoteCompleted {
        /// The note's path.
        path: Arc<str>,
        /// The attempt, from 1.
        attempt: u32,
        /// How long the attempt took.
        #[serde(with = "secs")]
        duration: Duration,
        /// Whether the note returned `Control::Stop`.
        stopped: bool,
    },
    /// `note.failed`: a note failed for good (after its retries).
    #[serde(rename = "note.failed")]
    NoteFailed {
        /// The note's path.
        path: Arc<str>,
        /// The last attempt.
        attempt: u32,
        /// How long the attempt took.
        #[serde(with = "secs")]
        duration: Duration,
        /// Why.
        error: EventError,
    },
    /// `note.cancelled`: an attempt was cancelled.
    #[serde(rename = "note.cancelled")]
    NoteCancelled {
        /// The note's path.
        path: Arc<str>,
        /// The attempt.
        attempt: u32,
        /// How long it ran before being cancelled.
        #[serde(with = "secs")]
        duration: Duration,
    },
    /// `note.retrying`: a failed attempt will be retried after `delay` (it also stands for
    /// that attempt's end and any timeout, which have no event of their own).
    #[serde(rename = "note.retrying")]
    NoteRetrying {
        /// The note's path.
        path: Arc<str>,
        /// The attempt that failed.
        attempt: u32,
        /// The wait before the next attempt.
        #[serde(with = "secs")]
        delay: Duration,
        /// Why the attempt failed.
        error: EventError,
    },
    /// `note.skipped`: a measure or note was skipped.
    #[serde(rename = "note.skipped")]
    NoteSkipped {
        /// Its path.
        path: Arc<str>,
        /// Why.
        reason: SkipReason,
    },
    /// `note.fallback_used`: a fallback acts for a failed note.
    #[serde(rename = "note.fallback_used")]
    NoteFallbackUsed {
        /// The note's path.
        path: Arc<str>,
        /// The failure the fallback replaces.
        error: EventError,
    },
    /// `branch.taken`: a split or route chose a branch.
    #[serde(rename = "branch.taken")]
    BranchTaken {
        /// The measure's path.
        path: Arc<str>,
        /// `true`/`false`, the route key matched, or `*` for the default branch.
        branch: String,
        /// The condition's or selector's value.
        key: String,
    },
    /// `circuit.state_changed`: a circuit breaker changed state.
    #[serde(rename = "circuit.state_changed")]
    CircuitStateChanged {
        /// The breaker's name.
        circuit: Arc<str>,
        /// The old state.
        from: CircuitState,
        /// The new state.
        to: CircuitState,
    },
    /// `checkpoint.saved`: a checkpoint was saved after `path` completed.
    #[serde(rename = "checkpoint.saved")]
    CheckpointSaved {
        /// The measure (or member) that completed.
        path: Arc<str>,
        /// How many measures the checkpoint records as completed.
        completed: usize,
    },
    /// `checkpoint.loaded`: a checkpoint was loaded on resume.
    #[serde(rename = "checkpoint.loaded")]
    CheckpointLoaded {
        /// How many completed measures will be skipped.
        completed: usize,
        /// Whether a fingerprint mismatch was overridden.
        forced: bool,
    },
    /// `checkpoint.failed`: saving a checkpoint failed and the run goes on.
    #[serde(rename = "checkpoint.failed")]
    CheckpointFailed {
        /// Why.
        error: EventError,
    },
    /// `events.dropped`: the emitter dropped `count` events since its last report (EVT-6).
    ///
    /// Emitter-level: its `run_id` and `cadence` are empty and its `seq` numbers the
    /// emitter's drop reports.
    #[serde(rename = "events.dropped")]
    EventsDropped {
        /// Events dropped since the previous report.
        count: u64,
    },
    /// A kind this version does not know (EVT-9), kept whole so it can be passed on.
    #[serde(untagged)]
    Unknown(UnknownKind),
}

impl EventKind {
    /// The name of every kind this version knows, in declaration order.
    pub const NAMES: &'static [&'static str] = &[
        "cadence.started",
        "cadence.completed",
        "cadence.failed",
        "cadence.stopped",
        "cadence.cancelled",
        "measure.started",
        "measure.finished",
        "note.started",
        "note.completed",
        "note.failed",
        "note.cancelled",
        "note.retrying",
        "note.skipped",
        "note.fallback_used",
        "branch.taken",
        "circuit.state_changed",
        "checkpoint.saved",
        "checkpoint.loaded",
        "checkpoint.failed",
        "events.dropped",
    ];

    /// The stable name, e.g. `note.completed` (the raw `type` for unknown kinds).
    pub fn name(&self) -> &str {
        match self {
            EventKind::Unknown(u) => &u.type_name,
            known => EventKind::NAMES[known.index()],
        }
    }

    /// Whether this version knows the kind.
    pub fn is_known(&self) -> bool {
        !matches!(self, EventKind::Unknown(_))
    }

    /// The index of a known kind in [`NAMES`](Self::NAMES); [`UNKNOWN`] for unknown ones.
    pub(crate) fn index(&self) -> usize {
        match self {
            EventKind::CadenceStarted { .. } => kind::CADENCE_STARTED,
            EventKind::CadenceCompleted { .. } => kind::CADENCE_COMPLETED,
            EventKind::CadenceFailed { .. } => kind::CADENCE_FAILED,
            EventKind::CadenceStopped { .. } => kind::CADENCE_STOPPED,
            EventKind::CadenceCancelled { .. } => kind::CADENCE_CANCELLED,
            EventKind::MeasureStarted { .. } => kind::MEASURE_STARTED,
            EventKind::MeasureFinished { .. } => kind::MEASURE_FINISHED,
            EventKind::NoteStarted { .. } => kind::NOTE_STARTED,
            EventKind::NoteCompleted { .. } => kind::NOTE_COMPLETED,
            EventKind::NoteFailed { .. } => kind::NOTE_FAILED,
            EventKind::NoteCancelled { .. } => kind::NOTE_CANCELLED,
            EventKind::NoteRetrying { .. } => kind::NOTE_RETRYING,
            EventKind::NoteSkipped { .. } => kind::NOTE_SKIPPED,
            EventKind::NoteFallbackUsed { .. } => kind::NOTE_FALLBACK_USED,
            EventKind::BranchTaken { .. } => kind::BRANCH_TAKEN,
            EventKind::CircuitStateChanged { .. } => kind::CIRCUIT_STATE_CHANGED,
            EventKind::CheckpointSaved { .. } => kind::CHECKPOINT_SAVED,
            EventKind::CheckpointLoaded { .. } => kind::CHECKPOINT_LOADED,
            EventKind::CheckpointFailed { .. } => kind::CHECKPOINT_FAILED,
            EventKind::EventsDropped { .. } => kind::EVENTS_DROPPED,
            EventKind::Unknown(_) => UNKNOWN,
        }
    }

    /// The measure or note path the event is about, if any.
    pub fn path(&self) -> Option<&str> {
        match self {
            EventKind::CadenceStopped { path, .. }
            | EventKind::MeasureStarted { path, .. }
            | EventKind::MeasureFinished { path, .. }
            | EventKind::NoteStarted { path, .. }
            | EventKind::NoteCompleted { path, .. }
            | EventKind::NoteFailed { path, .. }
            | EventKind::NoteCancelled { path, .. }
            | EventKind::NoteRetrying { path, .. }
            | EventKind::NoteSkipped { path, .. }
            | EventKind::NoteFallbackUsed { path, .. }
            | EventKind::BranchTaken { path, .. }
            | EventKind::CheckpointSaved { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The duration the event reports (a run, a measure or an attempt), if any. A retry's
    /// delay is not a duration of work and is not reported here.
    pub fn duration(&self) -> Option<Duration> {
        match self {
            EventKind::CadenceCompleted { duration, .. }
            | EventKind::CadenceFailed { duration, .. }
            | EventKind::CadenceStopped { duration, .. }
            | EventKind::CadenceCancelled { duration, .. }
            | EventKind::MeasureFinished { duration, .. }
            | EventKind::NoteCompleted { duration, .. }
            | EventKind::NoteFailed { duration, .. }
            | EventKind::NoteCancelled { duration, .. } => Some(*duration),
            _ => None,
        }
    }

    /// The error the event reports, if any.
    pub fn error(&self) -> Option<&EventError> {
        match self {
            EventKind::CadenceFailed { error, .. }
            | EventKind::NoteFailed { error, .. }
            | EventKind::NoteRetrying { error, .. }
            | EventKind::NoteFallbackUsed { error, .. }
            | EventKind::CheckpointFailed { error } => Some(error),
            EventKind::MeasureFinished { error, .. } => error.as_ref(),
            _ => None,
        }
    }

    /// The score a [`ScoredEmitter`] attached, on `cadence.*` end events (EVT-4).
    pub fn score(&self) -> Option<&serde_json::Value> {
        match self {
            EventKind::CadenceCompleted { score, .. }
            | EventKind::CadenceFailed { score, .. }
            | EventKind::CadenceStopped { score, .. }
            | EventKind::CadenceCancelled { score, .. } => score.as_ref(),
            _ => None,
        }
    }
}

/// Indices of the known kinds in [`EventKind::NAMES`], for masks and tables.
pub(crate) mod kind {
    pub(crate) const CADENCE_STARTED: usize = 0;
    pub(crate) const CADENCE_COMPLETED: usize = 1;
    pub(crate) const CADENCE_FAILED: usize = 2;
    pub(crate) const CADENCE_STOPPED: usize = 3;
    pub(crate) const CADENCE_CANCELLED: usize = 4;
    pub(crate) const MEASURE_STARTED: usize = 5;
    pub(crate) const MEASURE_FINISHED: usize = 6;
    pub(crate) const NOTE_STARTED: usize = 7;
    pub(crate) const NOTE_COMPLETED: usize = 8;
    pub(crate) const NOTE_FAILED: usize = 9;
    pub(crate) const NOTE_CANCELLED: usize = 10;
    pub(crate) const NOTE_RETRYING: usize = 11;
    pub(crate) const NOTE_SKIPPED: usize = 12;
    pub(crate) const NOTE_FALLBACK_USED: usize = 13;
    pub(crate) const BRANCH_TAKEN: usize = 14;
    pub(crate) const CIRCUIT_STATE_CHANGED: usize = 15;
    pub(crate) const CHECKPOINT_SAVED: usize = 16;
    pub(crate) const CHECKPOINT_LOADED: usize = 17;
    pub(crate) const CHECKPOINT_FAILED: usize = 18;
    pub(crate) const EVENTS_DROPPED: usize = 19;
}

/// The table slot of unknown kinds (after every known one).
pub(crate) const UNKNOWN: usize = EventKind::NAMES.len();
/// Table slots: every known kind, then unknown kinds.
pub(crate) const SLOTS: usize = UNKNOWN + 1;

/// An event kind this version does not know (EVT-9): its raw `type` and its other fields,
/// kept so that relaying it (to a file, a stream, a dashboard) loses nothing.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownKind {
    /// The raw `type` name.
    pub type_name: String,
    /// The fields besides the envelope and `type`.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl UnknownKind {
    /// An unknown kind named `type_name` with `fields`.
    pub fn new(
        type_name: impl Into<String>,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        UnknownKind {
            type_name: type_name.into(),
            fields,
        }
    }
}

impl Serialize for UnknownKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.fields.len() + 1))?;
        map.serialize_entry("type", &self.type_name)?;
        for (k, v) in &self.fields {
            if k != "type" {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for UnknownKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut fields = serde_json::Map::deserialize(deserializer)?;
        let type_name = match fields.remove("type") {
            Some(serde_json::Value::String(t)) => t,
            Some(_) => return Err(D::Error::custom("event `type` is not a string")),
            None => return Err(D::Error::missing_field("type")),
        };
        // A known name whose fields do not parse is an error, not an unknown kind.
        if EventKind::NAMES.contains(&type_name.as_str()) {
            return Err(D::Error::custom(format_args!(
                "invalid fields for a `{type_name}` event"
            )));
        }
        Ok(UnknownKind { type_name, fields })
    }
}

/// An error in an event: its stable kind name and its message (EVT-1).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EventError {
    /// The error's kind, e.g. `note`, `timeout` (see [`ErrorKind::as_str`]).
    ///
    /// [`ErrorKind::as_str`]: crate::ErrorKind::as_str
    pub kind: String,
    /// The error's message (its `Display`).
    pub message: String,
}

impl EventError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        EventError {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

impl From<&CadenceError> for EventError {
    fn from(e: &CadenceError) -> Self {
        EventError {
            kind: e.kind().as_str().to_owned(),
            message: e.to_string(),
        }
    }
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// How a measure ended, in `measure.finished`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureStatus {
    /// It completed.
    Succeeded,
    /// A note inside it stopped the run.
    Stopped,
    /// It failed.
    Failed,
    /// It was cancelled.
    Cancelled,
}

impl MeasureStatus {
    /// `succeeded`, `stopped`, `failed` or `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            MeasureStatus::Succeeded => "succeeded",
            MeasureStatus::Stopped => "stopped",
            MeasureStatus::Failed => "failed",
            MeasureStatus::Cancelled => "cancelled",
        }
    }
}

/// Formats a timestamp as events do: RFC 3339, UTC, microseconds, `Z`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_micros(1_777_636_800_000_123);
/// assert_eq!(cadence_core::event::format_timestamp(t), "2026-05-01T12:00:00.000123Z");
/// ```
pub fn format_timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// Parses an RFC 3339 UTC timestamp (`2026-05-01T12:00:00.000123Z`), as written in events.
pub fn parse_timestamp(s: &str) -> Result<SystemTime, humantime::TimestampError> {
    humantime::parse_rfc3339(s)
}

/// A present `score`, `null` included, is `Some` (absent is `None`, by `default`), so that
/// every score a redaction function returns survives a round trip.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// Durations as seconds (`f64`), read back to the nearest microsecond.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(serde::de::Error::custom(format_args!(
                "invalid duration {secs}: expected a non-negative number of seconds"
            )));
        }
        let micros = (secs * 1e6).round();
        Ok(if micros >= u64::MAX as f64 {
            Duration::MAX
        } else {
            Duration::from_micros(micros as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_indices() {
        assert_eq!(EventKind::NAMES.len(), kind::EVENTS_DROPPED + 1);
        let k = EventKind::EventsDropped { count: 1 };
        assert_eq!(k.name(), "events.dropped");
        let k = EventKind::NoteCompleted {
            path: "a".into(),
            attempt: 1,
            duration: Duration::ZERO,
            stopped: false,
        };
        assert_eq!(k.name(), "note.completed");
    }

    #[test]
    fn durations_round_to_the_microsecond() {
        for micros in [0u64, 1, 999, 10_200, 1_000_001, 86_400_000_000_123] {
            let d = Duration::from_micros(micros);
            let json = serde_json::to_string(&d.as_secs_f64()).unwrap();
            let back = secs::deserialize(&mut serde_json::Deserializer::from_str(&json)).unwrap();
            assert_eq!(back, d, "{json}");
        }
    }
}
