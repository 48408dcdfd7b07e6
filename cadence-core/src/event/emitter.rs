//! [`EventEmitter`]: turns hook calls into [`Event`]s and delivers them to listeners and sinks
//! (EVT-4…8).
//!
//! Hot path (a hook call on the note's path): one atomic load of the *interest mask* (which
//! kinds any listener, async listener or sink wants); if nobody wants the kind, nothing else
//! happens — no event is built, no clock is read. Otherwise the event is built once, sync
//! listeners run inline on a snapshot of the listener table, and the event is offered to the
//! bounded queue with `try_send`, never waiting: a full queue drops it and counts it.
//!
//! What a thread keeps to make that cheap (see [`Local`]), so that delivering an event to a sync
//! listener takes no lock, no allocation and no atomic read-modify-write on a line other runs
//! share:
//!
//! - the event handed to sync listeners is reused from one occurrence to the next: its run id,
//!   parent run id and cadence (`Arc<str>`s) are left as they are while the occurrences are of
//!   one root run (recognised by its run tree's serial), and otherwise replaced only when they
//!   change (compared by content); its kind is replaced by the next occurrence's, or updated in
//!   place when both are `note.completed` (which has a path of its own, without the general
//!   event builder);
//! - note and measure paths become `Arc<str>`s through a map keyed by the path's address and
//!   length (the engine's paths stay at one address for a cadence's lifetime), confirmed by
//!   comparing the text, so a reused address is never taken for another path; a note's path
//!   is found by the note's key instead, and *moved* into the event (and back when the event
//!   moves on to another note), so its reference count is not touched;
//! - the sync listener tables of the last few emitters used, checked against the emitter's
//!   current table id (one atomic load). A removed listener is never called again, but a
//!   thread that delivered its events keeps it alive until that thread's next event of the
//!   same emitter; the listeners of a dropped emitter live until the thread needs the slot
//!   for other emitters ([`TABLE_SLOTS`]) or exits. Sinks and async listeners are not kept.
//!
//! Off the path, a dispatcher task (spawned on the current tokio runtime the first time it is
//! needed, or by [`EventEmitter::start`]) receives queued events and runs async listeners,
//! then sinks, then broadcast subscribers, one event at a time, in queue order. It flushes
//! sinks a second after they received something, on [`EventEmitter::flush`] and on
//! [`EventEmitter::shutdown`]. It needs a runtime with time enabled (for that periodic flush).
//! If its runtime goes away, the next event needing the queue starts a new one on the
//! then-current runtime.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::sink::{BoxFuture, Sink};
use super::{Event, EventError, EventKind, MeasureStatus, SLOTS, Timestamp, UNKNOWN, kind};
use crate::clock::truncate;
use crate::error::{BoxError, CadenceError, panic_message};
use crate::hook::{
    Hook, HookContext, HookMethod, Interest, MeasureKind, MeasureOutcome, NoteOutcome, RunOutcome,
    SkipReason,
};
use crate::policy::circuit_breaker::CircuitState;

/// The default queue capacity between the hot path and the dispatcher (EVT-6).
pub const DEFAULT_CAPACITY: usize = 1024;

/// The largest queue an [`EventEmitter`] takes (16 Mi events); see
/// [`EventEmitter::with_capacity`].
pub const MAX_CAPACITY: usize = 1 << 24;

/// The largest broadcast channel an [`EventEmitter`] makes for its subscribers (64 Ki events).
pub const MAX_BROADCAST: usize = 1 << 16;

/// How long [`EventEmitter::shutdown`] waits for the queue to drain.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the dispatcher flushes sinks that received events (EVT-8).
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// How many queued messages the dispatcher takes per wake-up.
const BATCH: usize = 64;

/// The log target of listener and sink failures (EVT-7).
const TARGET: &str = "cadence::events";

type SyncFn = dyn Fn(&Event) -> Result<(), BoxError> + Send + Sync;
type AsyncFn = dyn Fn(Event) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync;

/// Identifies a listener or sink, for [`EventEmitter::off`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(u64);

impl fmt::Display for ListenerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "listener#{}", self.0)
    }
}

/// What a listener may return: `()`, or `Result<(), E>` whose error is logged (EVT-7).
pub trait ListenerOutput {
    /// Normalised.
    fn into_result(self) -> Result<(), BoxError>;
}

impl ListenerOutput for () {
    fn into_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError>> ListenerOutput for Result<(), E> {
    fn into_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}

/// A listener pattern (EVT-5): an exact name, a prefix `note.*`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(Box<str>),
    /// The prefix including its trailing dot (`note.`).
    Prefix(Box<str>),
    Any,
}

impl Pattern {
    fn parse(p: &str) -> Self {
        if p == "*" {
            Pattern::Any
        } else if let Some(prefix) = p.strip_suffix('*').filter(|x| x.ends_with('.')) {
            Pattern::Prefix(prefix.into())
        } else {
            Pattern::Exact(p.into())
        }
    }

    /// Dispatch rank for `name` (exact 0, prefix 1, any 2), or `None` if it does not match.
    fn rank(&self, name: &str) -> Option<u8> {
        match self {
            Pattern::Exact(e) => (**e == *name).then_some(0),
            Pattern::Prefix(p) => name.starts_with(&**p).then_some(1),
            Pattern::Any => Some(2),
        }
    }

    /// Whether it can match a kind this version does not know.
    fn matches_unknown(&self) -> bool {
        match self {
            Pattern::Exact(e) => !EventKind::NAMES.contains(&&**e),
            Pattern::Prefix(_) | Pattern::Any => true,
        }
    }
}

struct Entry<F: ?Sized> {
    id: ListenerId,
    pattern: Pattern,
    f: Arc<F>,
}

impl<F: ?Sized> Clone for Entry<F> {
    fn clone(&self) -> Self {
        Entry {
            id: self.id,
            pattern: self.pattern.clone(),
            f: self.f.clone(),
        }
    }
}

/// Every registration, in registration order: the source the [`Table`] is built from.
#[derive(Default)]
struct Registry {
    next_id: u64,
    sync: Vec<Entry<SyncFn>>,
    asyncs: Vec<Entry<AsyncFn>>,
    sinks: Vec<(ListenerId, Arc<dyn Sink>)>,
    /// Whether `subscribe()` receivers may exist.
    broadcast: bool,
}

/// The sync listeners of each kind, in dispatch order.
type SyncTable = [Box<[Entry<SyncFn>]>; SLOTS];

/// Hands out [`Table::id`]s (from 1; never reused, so a thread's cached table is never taken
/// for another emitter's).
static NEXT_TABLE: AtomicU64 = AtomicU64::new(1);

/// The listeners of each kind in dispatch order (exact, prefix, `*`; registration order
/// within each), rebuilt on every registration change and read through a snapshot.
struct Table {
    id: u64,
    /// Shared with the threads that cache it (see [`Local`]).
    sync: Arc<SyncTable>,
    asyncs: [Box<[Entry<AsyncFn>]>; SLOTS],
    sinks: Box<[(ListenerId, Arc<dyn Sink>)]>,
    broadcast: bool,
}

/// Entries matching `name`, in dispatch order.
fn ordered<'a, F: ?Sized>(
    name: &str,
    entries: impl Iterator<Item = &'a Entry<F>>,
) -> Vec<&'a Entry<F>> {
    let mut v: Vec<(u8, &Entry<F>)> = entries
        .filter_map(|e| e.pattern.rank(name).map(|r| (r, e)))
        .collect();
    v.sort_by_key(|(r, _)| *r); // stable: registration order within a rank
    v.into_iter().map(|(_, e)| e).collect()
}

impl Table {
    fn build(reg: &Registry) -> Table {
        fn per_kind<F: ?Sized>(entries: &[Entry<F>]) -> [Box<[Entry<F>]>; SLOTS] {
            std::array::from_fn(|k| {
                if k == UNKNOWN {
                    // Matched by name at dispatch time; kept in registration order.
                    entries
                        .iter()
                        .filter(|e| e.pattern.matches_unknown())
                        .cloned()
                        .collect()
                } else {
                    ordered(EventKind::NAMES[k], entries.iter())
                        .into_iter()
                        .cloned()
                        .collect()
                }
            })
        }
        Table {
            id: NEXT_TABLE.fetch_add(1, Ordering::Relaxed),
            sync: Arc::new(per_kind(&reg.sync)),
            asyncs: per_kind(&reg.asyncs),
            sinks: reg.sinks.clone().into_boxed_slice(),
            broadcast: reg.broadcast,
        }
    }

    /// The interest mask: bit `k` when sync listeners want kind `k`, bit `32 + k` when the
    /// queue does (async listeners, sinks, subscribers).
    fn interest(&self) -> u64 {
        let all_queue = !self.sinks.is_empty() || self.broadcast;
        let mut mask = 0;
        for k in 0..SLOTS {
            if !self.sync[k].is_empty() {
                mask |= sync_bit(k);
            }
            if all_queue || !self.asyncs[k].is_empty() {
                mask |= queue_bit(k);
            }
        }
        mask
    }
}

/// The hook methods whose occurrences make the kinds of interest mask `mask`. A run's start
/// and end are always wanted (cheap, once per run).
fn hook_interest(mask: u64) -> Interest {
    use HookMethod as M;
    let wanted = |k: usize| mask & (sync_bit(k) | queue_bit(k)) != 0;
    let mut i = Interest::NONE.with(M::CadenceStart).with(M::CadenceEnd);
    for (k, m) in [
        (kind::MEASURE_STARTED, M::MeasureStart),
        (kind::MEASURE_FINISHED, M::MeasureEnd),
        (kind::NOTE_STARTED, M::NoteStart),
        (kind::NOTE_COMPLETED, M::NoteEnd),
        (kind::NOTE_FAILED, M::NoteEnd),
        (kind::NOTE_CANCELLED, M::NoteEnd),
        (kind::NOTE_RETRYING, M::Retry),
        (kind::NOTE_SKIPPED, M::NoteSkipped),
        (kind::NOTE_FALLBACK_USED, M::Fallback),
        (kind::BRANCH_TAKEN, M::BranchTaken),
        (kind::CIRCUIT_STATE_CHANGED, M::CircuitStateChange),
        (kind::CHECKPOINT_SAVED, M::CheckpointSaved),
        (kind::CHECKPOINT_LOADED, M::CheckpointLoaded),
        (kind::CHECKPOINT_FAILED, M::CheckpointError),
    ] {
        if wanted(k) {
            i = i.with(m);
        }
    }
    i
}

const fn sync_bit(k: usize) -> u64 {
    1 << k
}

const fn queue_bit(k: usize) -> u64 {
    1 << (32 + k)
}

const _: () = assert!(SLOTS <= 32, "the interest mask holds 32 kinds per half");

enum Msg {
    Event(Event),
    /// Acknowledged once everything queued before it is dispatched and sinks are flushed.
    Flush(oneshot::Sender<()>),
}

/// What the dispatcher task shares with the emitters (everything but the queue's sender, so
/// that the task ends when the last emitter is dropped).
struct Shared {
    /// See [`Table::interest`].
    interest: AtomicU64,
    /// The current table's [`Table::id`].
    table_id: AtomicU64,
    table: RwLock<Arc<Table>>,
    registry: Mutex<Registry>,
    /// Every event dropped so far (queue full, or a subscriber lagging).
    dropped: AtomicU64,
    /// Drops not yet reported by an `events.dropped` event.
    unreported: AtomicU64,
    /// `seq` of the next `events.dropped` event.
    reports: AtomicU64,
    /// Whether a dispatcher task owns the receiver.
    running: AtomicBool,
    /// The queue's receiver while no dispatcher task runs.
    rx: Mutex<Option<mpsc::Receiver<Msg>>>,
    broadcast: broadcast::Sender<Event>,
    /// The broadcast channel's real capacity (a power of two).
    broadcast_capacity: usize,
}

struct Inner {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Msg>,
    capacity: usize,
}

/// Turns hook calls into [`Event`]s and delivers them to listeners, sinks and subscribers
/// (EVT-4…8). A [`Hook<S>`] for every `S`; cheap to clone (an `Arc` inside): attach a clone
/// with `with_hooks(emitter.clone())` and keep one to register listeners and shut down.
///
/// - [`on`](Self::on) registers a sync listener, run inline on the note's path — keep it
///   cheap; [`on_async`](Self::on_async) an async one, run on the dispatcher task.
/// - [`add_sink`](Self::add_sink) / [`with_sink`](Self::with_sink) add a [`Sink`] (a
///   [`JsonLinesSink`](super::JsonLinesSink), an adapter's stream…); [`subscribe`](Self::subscribe)
///   returns a broadcast receiver.
/// - The queue between the note's path and the dispatcher holds [`DEFAULT_CAPACITY`] events
///   ([`with_capacity`](Self::with_capacity)); when it is full the event is dropped and
///   counted ([`dropped`](Self::dropped)), and an `events.dropped` event with the count is
///   queued once there is room again.
/// - A listener or sink that panics or returns an error is logged (target `cadence::events`,
///   WARN) and skipped for that event (EVT-7).
/// - The dispatcher task starts on the current tokio runtime (with time enabled) when the
///   first event needs the queue. Events emitted outside any runtime wait in the queue (and
///   are dropped once it is full) until one starts it ([`start`](Self::start), `flush`…).
///
/// ```
/// use cadence_core::{BoxError, Cadence, note};
/// use cadence_core::event::{Event, EventEmitter};
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let emitter = EventEmitter::with_capacity(64);
/// let completed = Arc::new(AtomicUsize::new(0));
/// let n = completed.clone();
/// emitter.on("note.completed", move |_: &Event| { n.fetch_add(1, Ordering::Relaxed); });
/// let mut events = emitter.subscribe();
///
/// let cadence = Cadence::<()>::new("hello")
///     .then("a", note::from_fn(|_: &mut ()| Box::pin(async { Ok::<_, BoxError>(()) })))
///     .then("b", note::from_fn(|_: &mut ()| Box::pin(async { Ok::<_, BoxError>(()) })))
///     .with_hooks(emitter.clone())
///     .build()
///     .unwrap();
/// cadence.run(()).await.unwrap();
/// assert_eq!(completed.load(Ordering::Relaxed), 2); // sync listeners ran inline
///
/// emitter.flush().await; // the dispatcher has handed everything to subscribers
/// assert_eq!(events.recv().await.unwrap().name(), "cadence.started");
/// assert!(emitter.shutdown().await);
/// assert_eq!(emitter.dropped(), 0);
/// # });
/// ```
#[derive(Clone)]
pub struct EventEmitter {
    inner: Arc<Inner>,
}

impl Default for EventEmitter {
    fn default() -> Self {
        EventEmitter::new()
    }
}

impl fmt::Debug for EventEmitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reg = self.inner.shared.registry();
        f.debug_struct("EventEmitter")
            .field("capacity", &self.inner.capacity)
            .field("listeners", &reg.sync.len())
            .field("async_listeners", &reg.asyncs.len())
            .field("sinks", &reg.sinks.len())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn table(&self) -> Arc<Table> {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Publishes a new table and interest mask; called with the registry locked.
    fn rebuild(&self, reg: &Registry) {
        let table = Table::build(reg);
        let interest = table.interest();
        let id = table.id;
        *self.table.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
        self.table_id.store(id, Ordering::Release);
        let before = self.interest.swap(interest, Ordering::AcqRel);
        if hook_interest(before) != hook_interest(interest) {
            // Cadences with this emitter ask it again (see `Interest`).
            crate::hook::rebuild_interest_cache();
        }
    }

    fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.unreported.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops offering events to the broadcast channel once its last receiver is gone.
    fn forget_subscribers(&self) {
        let mut reg = self.registry();
        if reg.broadcast && self.broadcast.receiver_count() == 0 {
            reg.broadcast = false;
            self.rebuild(&reg);
        }
    }
}

impl EventEmitter {
    /// An emitter with the default queue capacity ([`DEFAULT_CAPACITY`]).
    pub fn new() -> Self {
        EventEmitter::with_capacity(DEFAULT_CAPACITY)
    }

    /// An emitter whose queue holds `capacity` events (from 1 to [`MAX_CAPACITY`]; values
    /// outside are clamped), as does its broadcast channel for [`subscribe`](Self::subscribe),
    /// rounded up to a power of two and at most [`MAX_BROADCAST`] (its ring is allocated
    /// up front, the queue's memory only as events wait in it).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let (tx, rx) = mpsc::channel(capacity);
        let broadcast_capacity = capacity.min(MAX_BROADCAST).next_power_of_two();
        let (broadcast, _) = broadcast::channel(broadcast_capacity);
        let reg = Registry::default();
        let table = Table::build(&reg);
        let shared = Arc::new(Shared {
            interest: AtomicU64::new(table.interest()),
            table_id: AtomicU64::new(table.id),
            table: RwLock::new(Arc::new(table)),
            registry: Mutex::new(reg),
            dropped: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
            reports: AtomicU64::new(0),
            running: AtomicBool::new(false),
            rx: Mutex::new(Some(rx)),
            broadcast,
            broadcast_capacity,
        });
        EventEmitter {
            inner: Arc::new(Inner {
                shared,
                tx,
                capacity,
            }),
        }
    }

    /// The queue's capacity.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Registers a sync listener for `pattern`: an exact name (`note.completed`), a prefix
    /// (`note.*`) or `*` (EVT-5). It runs inline, on the note's path, so keep it cheap; it may
    /// return `()` or a `Result`, whose error is logged.
    ///
    /// Dispatch order: listeners on the exact name, then on a prefix, then on `*`, each in
    /// registration order.
    pub fn on<F, R>(&self, pattern: &str, listener: F) -> ListenerId
    where
        F: Fn(&Event) -> R + Send + Sync + 'static,
        R: ListenerOutput,
    {
        let f: Arc<SyncFn> = Arc::new(move |e: &Event| listener(e).into_result());
        self.register(|reg, id| {
            reg.sync.push(Entry {
                id,
                pattern: Pattern::parse(pattern),
                f,
            })
        })
    }

    /// Registers an async listener for `pattern` (as in [`on`](Self::on)). It runs on the
    /// dispatcher task, one event at a time; a slow one makes the queue fill up and drop,
    /// never a note wait (EVT-6).
    pub fn on_async<F, Fut>(&self, pattern: &str, listener: F) -> ListenerId
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: ListenerOutput,
    {
        let f: Arc<AsyncFn> = Arc::new(move |e: Event| {
            let fut = listener(e);
            Box::pin(async move { fut.await.into_result() }) as BoxFuture<'static, _>
        });
        self.register(|reg, id| {
            reg.asyncs.push(Entry {
                id,
                pattern: Pattern::parse(pattern),
                f,
            })
        })
    }

    /// Adds a sink: it receives every event, on the dispatcher task, after async listeners.
    /// Returns an id for [`off`](Self::off).
    pub fn add_sink(&self, sink: impl Sink) -> ListenerId {
        let sink: Arc<dyn Sink> = Arc::new(sink);
        self.register(|reg, id| reg.sinks.push((id, sink)))
    }

    /// With a sink (builder form of [`add_sink`](Self::add_sink)).
    #[must_use]
    pub fn with_sink(self, sink: impl Sink) -> Self {
        self.add_sink(sink);
        self
    }

    /// A receiver of every event, through a `broadcast` channel as large as the queue.
    /// Events a lagging receiver misses are counted as drops.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        let mut reg = self.inner.shared.registry();
        let rx = self.inner.shared.broadcast.subscribe();
        if !reg.broadcast {
            reg.broadcast = true;
            self.inner.shared.rebuild(&reg);
        }
        rx
    }

    /// Removes a listener or sink; returns whether it was registered.
    pub fn off(&self, id: ListenerId) -> bool {
        let shared = &self.inner.shared;
        let mut reg = shared.registry();
        let before = reg.sync.len() + reg.asyncs.len() + reg.sinks.len();
        reg.sync.retain(|e| e.id != id);
        reg.asyncs.retain(|e| e.id != id);
        reg.sinks.retain(|(i, _)| *i != id);
        let removed = reg.sync.len() + reg.asyncs.len() + reg.sinks.len() < before;
        if removed {
            shared.rebuild(&reg);
        }
        removed
    }

    fn register(&self, add: impl FnOnce(&mut Registry, ListenerId)) -> ListenerId {
        let shared = &self.inner.shared;
        let mut reg = shared.registry();
        reg.next_id += 1;
        let id = ListenerId(reg.next_id);
        add(&mut reg, id);
        shared.rebuild(&reg);
        id
    }

    /// How many events were dropped so far: offered to a full queue, or missed by a lagging
    /// subscriber (EVT-6).
    pub fn dropped(&self) -> u64 {
        self.inner.shared.dropped.load(Ordering::Relaxed)
    }

    /// A typed companion that also adds the score, as `f` renders it, to `cadence.*` end
    /// events (EVT-4). `f` is the redaction point: return only what may leave the process.
    ///
    /// The emitter itself is a hook for every score type and never sees scores; the returned
    /// [`ScoredEmitter<S>`] shares this emitter (listeners, queue, counters) and is the hook to
    /// attach instead of it.
    ///
    /// ```
    /// use cadence_core::{BoxError, Cadence, note};
    /// use cadence_core::event::{Event, EventEmitter};
    /// use std::sync::{Arc, Mutex};
    ///
    /// struct Login { user: String, password: String }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let emitter = EventEmitter::new();
    /// let last = Arc::new(Mutex::new(None));
    /// let l = last.clone();
    /// emitter.on("cadence.completed", move |e: &Event| *l.lock().unwrap() = e.kind.score().cloned());
    ///
    /// let c = Cadence::<Login>::new("login")
    ///     .then("check", note::from_fn(|_: &mut Login| Box::pin(async { Ok::<_, BoxError>(()) })))
    ///     .with_hooks(emitter.with_score(|l: &Login| serde_json::json!({ "user": l.user })))
    ///     .build()
    ///     .unwrap();
    /// c.run(Login { user: "ada".into(), password: "secret".into() }).await.unwrap();
    /// assert_eq!(*last.lock().unwrap(), Some(serde_json::json!({ "user": "ada" })));
    /// # });
    /// ```
    pub fn with_score<S, F>(&self, f: F) -> ScoredEmitter<S>
    where
        F: Fn(&S) -> serde_json::Value + Send + Sync + 'static,
    {
        ScoredEmitter {
            emitter: self.clone(),
            score: Arc::new(f),
        }
    }

    /// Delivers an event built elsewhere (an adapter relaying a stream, a replay): sync
    /// listeners inline, then the queue, exactly as for the emitter's own events.
    pub fn emit(&self, event: Event) {
        let k = event.kind.index();
        self.deliver(k, event);
    }

    /// Starts the dispatcher task on the current tokio runtime, if it is not running.
    /// Returns whether a dispatcher runs now (false outside a runtime).
    ///
    /// Not needed in general: the first event that needs the queue starts it.
    pub fn start(&self) -> bool {
        let shared = &self.inner.shared;
        if shared.running.load(Ordering::Acquire) {
            return true;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let mut slot = shared.rx.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rx) = slot.take() {
            shared.running.store(true, Ordering::Release);
            drop(slot);
            handle.spawn(dispatch(ReceiverGuard {
                shared: shared.clone(),
                rx: Some(rx),
            }));
        }
        true
    }

    /// Waits until every event queued so far has been handed to listeners and sinks, and
    /// sinks are flushed. Reports pending drops first (waiting for room in the queue).
    pub async fn flush(&self) {
        if !self.start() {
            return;
        }
        self.report_drops_waiting().await;
        let (ack, done) = oneshot::channel();
        if self.inner.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// [`shutdown_timeout`](Self::shutdown_timeout) with [`DEFAULT_SHUTDOWN_TIMEOUT`].
    pub async fn shutdown(&self) -> bool {
        self.shutdown_timeout(DEFAULT_SHUTDOWN_TIMEOUT).await
    }

    /// Drains the queue (reporting pending drops) and flushes sinks, waiting at most
    /// `timeout` (EVT-8): call it before the process exits. Returns whether it finished in
    /// time; if not, the dispatcher goes on draining in the background.
    ///
    /// The emitter stays usable: its dispatcher idles (no timer) until events come again, and
    /// ends, flushing its sinks, when the last clone of the emitter is dropped.
    ///
    /// On a runtime without tokio's time driver the wait cannot be bounded: it then waits
    /// until the queue is drained and says so in a warning.
    pub async fn shutdown_timeout(&self, timeout: Duration) -> bool {
        let Ok(timer) = crate::timer::sleep(timeout) else {
            tracing::warn!(
                target: "cadence",
                "EventEmitter::shutdown_timeout waits without a bound: {}",
                crate::timer::NoTimeDriver::fix()
            );
            self.flush().await;
            return true;
        };
        tokio::select! {
            biased;
            () = self.flush() => true,
            () = timer => false,
        }
    }

    // ------------------------------------------------------------------ hot path

    /// Whether anyone wants events of kind `k`.
    #[inline(always)]
    fn wants(&self, k: usize) -> bool {
        self.inner.shared.interest.load(Ordering::Acquire) & (sync_bit(k) | queue_bit(k)) != 0
    }

    /// Builds the event of an occurrence of kind `k` and delivers it, if anyone wants it.
    #[inline(always)]
    fn occur<B>(&self, cx: &HookContext<'_>, k: usize, build: B)
    where
        B: FnOnce(&mut Strings<'_>) -> EventKind,
    {
        if self.wants(k) {
            self.occur_slow(cx, k, |strings: &mut Strings<'_>, kind: &mut EventKind| {
                strings.set(kind, build);
            });
        }
    }

    #[inline(never)]
    fn occur_slow<B>(&self, cx: &HookContext<'_>, k: usize, build: B)
    where
        B: FnOnce(&mut Strings<'_>, &mut EventKind),
    {
        let mut build = Some(build);
        let _ = LOCAL.try_with(|local| {
            if let Ok(mut local) = local.try_borrow_mut()
                && let Some(build) = build.take()
            {
                self.deliver_local(&mut local, cx, k, build);
            }
        });
        if let Some(build) = build {
            // A listener's own events (this thread's event is in use), or a thread being torn
            // down: an event of its own.
            let mut kind = BLANK_KIND;
            build(
                &mut Strings {
                    cache: None,
                    key: cx.key,
                    lent: 0,
                },
                &mut kind,
            );
            let event = Event {
                run_id: cx.run_id().into(),
                parent_run_id: cx.parent_run_id().map(Into::into),
                cadence: cx.cadence().into(),
                seq: cx.seq(),
                at: cx.timestamp(),
                kind,
            };
            self.deliver(k, event);
        }
    }

    /// Delivers an occurrence through this thread's reused event (see the module docs).
    #[inline(always)]
    fn deliver_local<B>(&self, local: &mut Local, cx: &HookContext<'_>, k: usize, build: B)
    where
        B: FnOnce(&mut Strings<'_>, &mut EventKind),
    {
        debug_assert_ne!(k, UNKNOWN, "hook occurrences are of known kinds");
        let Local {
            event,
            run_serial,
            tables,
            strings,
            lent,
        } = local;
        let event = event.get_or_insert_with(Local::blank_event);
        // The previous occurrence's kind is replaced (or updated in place).
        let mut with = Strings {
            cache: Some(strings),
            key: cx.key,
            lent: *lent,
        };
        build(&mut with, &mut event.kind);
        *lent = with.lent;
        self.deliver_reused(event, run_serial, tables, cx, k);
        if event.kind.score().is_some() {
            // Keep no score past its occurrence.
            event.kind = BLANK_KIND;
        }
    }

    /// Dates and numbers this thread's reused `event` (whose kind is set) for the occurrence of
    /// `cx`, and delivers it.
    #[inline(always)]
    fn deliver_reused(
        &self,
        event: &mut Event,
        run_serial: &mut u64,
        tables: &mut TableCache,
        cx: &HookContext<'_>,
        k: usize,
    ) {
        // A root run is recognised by its run tree's serial: its id, cadence and (absent)
        // parent are those of the previous event when the serial is; other runs by their text.
        let serial = cx.run_serial();
        if serial == 0 || *run_serial != serial {
            set_str(&mut event.run_id, cx.run_id());
            *run_serial = serial;
            match (cx.parent_run_id(), &mut event.parent_run_id) {
                (None, parent) => *parent = None,
                (Some(p), Some(parent)) if same_text(parent, p) => {}
                (Some(p), parent) => *parent = Some(p.into()),
            }
            set_str(&mut event.cadence, cx.cadence());
        }
        event.seq = cx.seq();
        event.at = cx.timestamp();
        let interest = self.inner.shared.interest.load(Ordering::Acquire);
        if interest & sync_bit(k) != 0 {
            for e in self.sync_table(tables)[k].iter() {
                call_sync(e, event);
            }
        }
        if interest & queue_bit(k) != 0 {
            self.enqueue(event.clone());
        }
    }

    /// `note.completed`, the most frequent occurrence, through this thread's reused event
    /// without the general builder: most often the previous event was a `note.completed` too,
    /// and is updated in place. Inlined into `on_note_end`, its only caller.
    #[inline(always)]
    fn note_completed(
        &self,
        cx: &HookContext<'_>,
        path: &str,
        attempt: u32,
        duration: Duration,
        stopped: bool,
    ) {
        const K: usize = kind::NOTE_COMPLETED;
        let delivered = LOCAL
            .try_with(|local| {
                let Ok(mut local) = local.try_borrow_mut() else {
                    return false;
                };
                let Local {
                    event,
                    run_serial,
                    tables,
                    strings,
                    lent,
                } = &mut *local;
                let event = event.get_or_insert_with(Local::blank_event);
                let mut with = Strings {
                    cache: Some(strings),
                    key: cx.key,
                    lent: *lent,
                };
                match &mut event.kind {
                    EventKind::NoteCompleted {
                        path: p,
                        attempt: a,
                        duration: d,
                        stopped: s,
                    } => {
                        with.renew_note_path(p, path);
                        (*a, *d, *s) = (attempt, duration, stopped);
                    }
                    kind => with.set(kind, |strings: &mut Strings<'_>| EventKind::NoteCompleted {
                        path: strings.note_path(path),
                        attempt,
                        duration,
                        stopped,
                    }),
                }
                *lent = with.lent;
                self.deliver_reused(event, run_serial, tables, cx, K);
                true
            })
            .unwrap_or(false);
        if !delivered {
            // A listener's own event, or a thread being torn down.
            self.occur_slow(cx, K, |strings: &mut Strings<'_>, kind: &mut EventKind| {
                strings.set(kind, |strings: &mut Strings<'_>| EventKind::NoteCompleted {
                    path: strings.note_path(path),
                    attempt,
                    duration,
                    stopped,
                })
            });
        }
    }

    /// The current sync listeners, from this thread's cache when it has them.
    #[inline(always)]
    fn sync_table<'l>(&self, cache: &'l mut TableCache) -> &'l SyncTable {
        let id = self.inner.shared.table_id.load(Ordering::Acquire);
        let i = match cache.slots.iter().position(|s| s.table == id) {
            Some(i) => i,
            None => self.cache_table(cache),
        };
        &cache.slots[i].sync
    }

    /// Puts the emitter's current sync listeners in a slot of this thread's cache; returns the
    /// slot.
    #[cold]
    #[inline(never)]
    fn cache_table(&self, cache: &mut TableCache) -> usize {
        let shared = &self.inner.shared;
        let table = shared.table();
        // This emitter's previous table, if the thread has it (so a removed listener is let
        // go now); else the next slot in turn. The address only picks the slot to replace: a
        // hit is decided by the table id alone.
        let emitter = Arc::as_ptr(shared).addr();
        let i = match cache.slots.iter().position(|s| s.emitter == emitter) {
            Some(i) => i,
            None => {
                let i = cache.next;
                cache.next = (i + 1) % TABLE_SLOTS;
                i
            }
        };
        cache.slots[i] = CachedTable {
            emitter,
            table: table.id,
            sync: table.sync.clone(),
        };
        i
    }

    fn deliver(&self, k: usize, event: Event) {
        let interest = self.inner.shared.interest.load(Ordering::Acquire);
        if interest & sync_bit(k) != 0 {
            self.run_sync(k, &event);
        }
        if interest & queue_bit(k) != 0 {
            self.enqueue(event);
        }
    }

    fn run_sync(&self, k: usize, event: &Event) {
        let table = self.inner.shared.table();
        if k == UNKNOWN {
            for e in ordered(event.name(), table.sync[k].iter()) {
                call_sync(e, event);
            }
        } else {
            for e in table.sync[k].iter() {
                call_sync(e, event);
            }
        }
    }

    fn enqueue(&self, event: Event) {
        let shared = &self.inner.shared;
        if !shared.running.load(Ordering::Acquire) {
            self.start();
        }
        if shared.unreported.load(Ordering::Relaxed) != 0 {
            self.report_drops();
        }
        if self.inner.tx.try_send(Msg::Event(event)).is_err() {
            shared.count_drop();
        }
    }

    /// The `events.dropped` event for `count` drops (emitter-level: empty run and cadence).
    fn dropped_event(&self, count: u64) -> Event {
        Event {
            run_id: "".into(),
            parent_run_id: None,
            cadence: "".into(),
            seq: self.inner.shared.reports.fetch_add(1, Ordering::Relaxed),
            at: Timestamp::now(),
            kind: EventKind::EventsDropped { count },
        }
    }

    /// Reports unreported drops if the queue has room now (EVT-6).
    fn report_drops(&self) {
        if let Ok(permit) = self.inner.tx.try_reserve() {
            self.send_drops(permit);
        }
    }

    /// Reports unreported drops, waiting for room in the queue.
    async fn report_drops_waiting(&self) {
        if self.inner.shared.unreported.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Ok(permit) = self.inner.tx.reserve().await {
            self.send_drops(permit);
        }
    }

    /// With room in the queue reserved: takes the unreported drop count and, if any, reports
    /// it as one `events.dropped` event to the listeners that want it.
    fn send_drops(&self, permit: tokio::sync::mpsc::Permit<'_, Msg>) {
        let shared = &self.inner.shared;
        let count = shared.unreported.swap(0, Ordering::AcqRel);
        if count == 0 {
            return;
        }
        let event = self.dropped_event(count);
        let interest = shared.interest.load(Ordering::Acquire);
        if interest & sync_bit(kind::EVENTS_DROPPED) != 0 {
            self.run_sync(kind::EVENTS_DROPPED, &event);
        }
        if interest & queue_bit(kind::EVENTS_DROPPED) != 0 {
            permit.send(Msg::Event(event));
        }
    }

    // ------------------------------------------------------------------ hook calls

    fn cadence_end(
        &self,
        cx: &HookContext<'_>,
        duration: Duration,
        outcome: &RunOutcome<'_>,
        score: Option<&dyn Fn() -> serde_json::Value>,
    ) {
        let k = match outcome {
            RunOutcome::Succeeded | RunOutcome::Partial { .. } => kind::CADENCE_COMPLETED,
            RunOutcome::Failed(_) => kind::CADENCE_FAILED,
            RunOutcome::Stopped { .. } => kind::CADENCE_STOPPED,
            RunOutcome::Cancelled => kind::CADENCE_CANCELLED,
        };
        self.occur(cx, k, |strings: &mut Strings<'_>| {
            let duration = truncate(duration);
            let score = score.and_then(render_score);
            match *outcome {
                RunOutcome::Succeeded => EventKind::CadenceCompleted {
                    duration,
                    failed_measures: Vec::new(),
                    score,
                },
                RunOutcome::Partial { failed_measures } => EventKind::CadenceCompleted {
                    duration,
                    failed_measures: failed_measures.to_vec(),
                    score,
                },
                RunOutcome::Failed(e) => EventKind::CadenceFailed {
                    duration,
                    error: e.into(),
                    score,
                },
                RunOutcome::Stopped { path, reason } => EventKind::CadenceStopped {
                    duration,
                    path: strings.get(path),
                    reason: reason.map(str::to_owned),
                    score,
                },
                RunOutcome::Cancelled => EventKind::CadenceCancelled { duration, score },
            }
        });
    }
}

/// Calls the redaction function, isolating a panic (the event then has no score).
fn render_score(f: &dyn Fn() -> serde_json::Value) -> Option<serde_json::Value> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(p) => {
            tracing::warn!(
                target: TARGET,
                "the score function of an event emitter panicked: {}; the event has no score",
                panic_message(p.as_ref())
            );
            None
        }
    }
}

#[inline(always)]
fn call_sync(e: &Entry<SyncFn>, event: &Event) {
    match catch_unwind(AssertUnwindSafe(|| (e.f)(event))) {
        Ok(Ok(())) => {}
        Ok(Err(err)) => listener_failed(e.id, event, &*err),
        Err(p) => listener_panicked(e.id, event, &panic_message(p.as_ref())),
    }
}

fn listener_failed(id: ListenerId, event: &Event, err: &dyn std::error::Error) {
    tracing::warn!(
        target: TARGET,
        listener = id.0,
        event = event.name(),
        seq = event.seq,
        "an event listener failed: {err}; it is skipped for this event"
    );
}

fn listener_panicked(id: ListenerId, event: &Event, msg: &str) {
    tracing::warn!(
        target: TARGET,
        listener = id.0,
        event = event.name(),
        seq = event.seq,
        "an event listener panicked: {msg}; it is skipped for this event"
    );
}

fn sink_failed(sink: &dyn Sink, what: &str, event: Option<&Event>, msg: &dyn fmt::Display) {
    tracing::warn!(
        target: TARGET,
        sink = sink.name(),
        event = event.map(Event::name),
        seq = event.map(|e| e.seq),
        "an event sink {what}: {msg}; it is skipped for this event"
    );
}

// ---------------------------------------------------------------------- per-thread state

/// How many listener tables a thread keeps (emitters it delivers for in turn).
const TABLE_SLOTS: usize = 4;

/// How many path strings a thread keeps at first, and at most (powers of two): see
/// [`PathCache`].
const PATHS_MIN: usize = 64;
const PATHS_MAX: usize = 4096;

/// The kind a thread's event holds between occurrences (owns nothing).
const BLANK_KIND: EventKind = EventKind::EventsDropped { count: 0 };

/// A thread's recently used listener tables, by [`Table::id`].
struct TableCache {
    slots: [CachedTable; TABLE_SLOTS],
    /// The slot to replace next.
    next: usize,
}

/// One emitter's sync listeners, as a thread last saw them.
struct CachedTable {
    /// The address of the emitter's shared state (to replace its own slot on a change).
    emitter: usize,
    /// [`Table::id`]: the slot is current while the emitter's table id is this.
    table: u64,
    sync: Arc<SyncTable>,
}

/// What a thread keeps so that delivering to sync listeners is cheap (see the module docs).
struct Local {
    /// The event handed to sync listeners, reused (`None` until the first one).
    event: Option<Event>,
    /// The run serial (see `HookContext`) whose root run id `event` holds, or 0.
    run_serial: u64,
    tables: TableCache,
    strings: PathCache,
    /// The key of the note whose path `event`'s kind holds, moved out of `strings` (0 if
    /// none; see [`PathCache::take_keyed`]).
    lent: u64,
}

impl Local {
    fn new() -> Self {
        let empty: Arc<SyncTable> = Arc::new(std::array::from_fn(|_| Box::default()));
        Local {
            event: None,
            run_serial: 0,
            tables: TableCache {
                // Id 0 is never a table's: these slots never match.
                slots: std::array::from_fn(|_| CachedTable {
                    emitter: 0,
                    table: 0,
                    sync: empty.clone(),
                }),
                next: 0,
            },
            strings: PathCache::default(),
            lent: 0,
        }
    }

    fn blank_event() -> Event {
        Event {
            run_id: "".into(),
            parent_run_id: None,
            cadence: "".into(),
            seq: 0,
            at: Timestamp::UNIX_EPOCH,
            kind: BLANK_KIND,
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local::new());
}

/// Turns the paths of an occurrence into `Arc<str>`s: through this thread's cache when it is
/// available, else by allocating.
struct Strings<'a> {
    cache: Option<&'a mut PathCache>,
    /// The occurrence's note key (see [`HookContext`]), 0 if none.
    key: u64,
    /// The key of the note whose path the event's kind holds, lent by the cache (see
    /// [`Local::lent`]); 0 if none.
    lent: u64,
}

impl Strings<'_> {
    #[inline]
    fn get(&mut self, s: &str) -> Arc<str> {
        match &mut self.cache {
            Some(cache) => cache.get(s),
            None => Arc::from(s),
        }
    }

    /// Replaces `kind` with what `build` makes, after giving back a note path it holds.
    #[inline(always)]
    fn set(&mut self, kind: &mut EventKind, build: impl FnOnce(&mut Self) -> EventKind) {
        if self.lent != 0 {
            let previous = std::mem::replace(kind, BLANK_KIND);
            if let Some(cache) = &mut self.cache {
                cache.give_back(self.lent, previous);
            }
            self.lent = 0;
        }
        *kind = build(self);
    }

    /// The path of the note of a note occurrence: found by the note's key when it has one,
    /// and then lent by the cache until the event's kind is replaced.
    #[inline]
    fn note_path(&mut self, s: &str) -> Arc<str> {
        debug_assert_eq!(self.lent, 0, "the previous note path was given back");
        match &mut self.cache {
            Some(cache) if self.key != 0 => {
                self.lent = self.key;
                cache.take_keyed(self.key, s)
            }
            Some(cache) => cache.get(s),
            None => Arc::from(s),
        }
    }

    /// Makes `path`, the path of the note kind being updated in place, the occurrence's note
    /// path `s`: nothing to do for the same note; else the paths trade places with the cache
    /// (moves only, when both notes have their slots).
    #[inline]
    fn renew_note_path(&mut self, path: &mut Arc<str>, s: &str) {
        let (lent, key) = (self.lent, self.key);
        if key != 0 && lent == key {
            debug_assert_eq!(&**path, s, "a note key names one path");
            return;
        }
        if let Some(cache) = &mut self.cache
            && key != 0
            && lent != 0
            && cache.trade_keyed(lent, key, path)
        {
            self.lent = key;
            return;
        }
        self.lent = 0;
        let previous = std::mem::replace(path, self.note_path(s));
        if lent != 0
            && let Some(cache) = &mut self.cache
        {
            cache.put_back(lent, previous);
        }
    }
}

/// Paths as `Arc<str>`s, by the address and length of the text they were made from: the
/// engine's paths and names stay at one address for a cadence's lifetime, so an event reuses
/// the `Arc` of the previous event with the same path instead of allocating. A hit is confirmed
/// by comparing the text, so a reused address is never taken for another path.
///
/// Four-way set associative, allocated on first use with [`PATHS_MIN`] entries and doubled
/// (up to [`PATHS_MAX`]) whenever it has missed as many times as it has entries: it grows
/// with the number of paths a thread keeps seeing, not with how many it ever saw. A lookup is
/// one multiply, up to four compares and the text comparison; a miss allocates and replaces
/// one entry of its set.
#[derive(Default)]
struct PathCache {
    /// `(address, length, text)`; entries `4i..4i + 4` form set `i`.
    slots: Vec<(usize, usize, Option<Arc<str>>)>,
    /// Misses since the last resize (also picks the way a miss replaces).
    misses: usize,
    /// Note paths by note key (unique for the life of the process, so a hit needs no text
    /// comparison): direct-mapped at `key mod len`, sized like `slots`. The keys of one
    /// cadence's notes are consecutive, so they do not collide until the table is full.
    notes: Vec<(u64, Option<Arc<str>>)>,
    /// Misses of `notes` since its last resize.
    note_misses: usize,
}

/// Ways per set of a [`PathCache`].
const WAYS: usize = 4;

impl PathCache {
    /// The path `s` of the note with key `key` (not 0), moved out of its slot: the slot keeps
    /// the key and waits for the path to be given back.
    #[inline]
    fn take_keyed(&mut self, key: u64, s: &str) -> Arc<str> {
        let mask = self.notes.len().wrapping_sub(1);
        if let Some((k, slot)) = self.notes.get_mut(key as usize & mask)
            && *k == key
            && let Some(text) = slot.take()
        {
            debug_assert_eq!(&*text, s, "a note key names one path");
            return text;
        }
        let text = self.keyed_miss(key, s);
        let mask = self.notes.len() - 1;
        self.notes[key as usize & mask].1 = None;
        text
    }

    /// `path` (lent for note `lent`) becomes the path of note `key`, and goes back to
    /// `lent`'s slot: moves only. False (and nothing done) unless `key`'s slot holds its path.
    #[inline]
    fn trade_keyed(&mut self, lent: u64, key: u64, path: &mut Arc<str>) -> bool {
        let mask = self.notes.len().wrapping_sub(1);
        let Some((k, slot)) = self.notes.get_mut(key as usize & mask) else {
            return false;
        };
        if *k != key {
            return false;
        }
        let Some(text) = slot.as_mut() else {
            return false;
        };
        std::mem::swap(path, text);
        let back = slot.take();
        // Usually the slot that waits for it; when two notes share a slot, the last one in.
        self.notes[lent as usize & mask] = (lent, back);
        true
    }

    /// Gives back the path of note `key` that `kind` holds (lent by
    /// [`take_keyed`](Self::take_keyed)); drops the rest of `kind`.
    fn give_back(&mut self, key: u64, kind: EventKind) {
        match kind {
            EventKind::NoteStarted { path, .. }
            | EventKind::NoteCompleted { path, .. }
            | EventKind::NoteCancelled { path, .. } => self.put_back(key, path),
            EventKind::NoteFailed { path, error, .. } => {
                drop(error);
                self.put_back(key, path);
            }
            // Only note kinds hold a lent path.
            other => drop(other),
        }
    }

    /// Puts `path`, lent for note `key`, back into its slot if the slot still waits for it.
    #[inline]
    fn put_back(&mut self, key: u64, path: Arc<str>) {
        let mask = self.notes.len().wrapping_sub(1);
        if let Some((k, slot @ None)) = self.notes.get_mut(key as usize & mask)
            && *k == key
        {
            *slot = Some(path);
        }
    }

    #[cold]
    #[inline(never)]
    fn keyed_miss(&mut self, key: u64, s: &str) -> Arc<str> {
        if self.notes.is_empty() {
            self.notes = vec![(0, None); PATHS_MIN];
        } else if self.note_misses >= self.notes.len() && self.notes.len() < PATHS_MAX {
            let entries = 2 * self.notes.len();
            let old = std::mem::replace(&mut self.notes, vec![(0, None); entries]);
            for (k, text) in old.into_iter().filter(|(_, t)| t.is_some()) {
                self.notes[k as usize & (entries - 1)] = (k, text);
            }
            self.note_misses = 0;
        }
        self.note_misses += 1;
        let text = self.get(s);
        let mask = self.notes.len() - 1;
        self.notes[key as usize & mask] = (key, Some(text.clone()));
        text
    }

    #[inline]
    fn get(&mut self, s: &str) -> Arc<str> {
        let (addr, len) = (s.as_ptr().addr(), s.len());
        let set = Self::set_of(addr, len, self.slots.len());
        if let Some(ways) = self.slots.get(WAYS * set..WAYS * set + WAYS) {
            for (a, l, text) in ways {
                if let Some(text) = text
                    && (*a, *l) == (addr, len)
                    && same_text(text, s)
                {
                    return text.clone();
                }
            }
        }
        self.miss(addr, len, s)
    }

    #[cold]
    #[inline(never)]
    fn miss(&mut self, addr: usize, len: usize, s: &str) -> Arc<str> {
        if self.slots.is_empty() {
            self.slots = vec![(0, 0, None); PATHS_MIN];
        } else if self.misses >= self.slots.len() && self.slots.len() < PATHS_MAX {
            self.grow();
        }
        self.misses += 1;
        let text: Arc<str> = Arc::from(s);
        let set = Self::set_of(addr, len, self.slots.len());
        let way = self.misses % WAYS;
        self.slots[WAYS * set + way] = (addr, len, Some(text.clone()));
        text
    }

    /// Doubles the entries, keeping what fits.
    fn grow(&mut self) {
        let entries = 2 * self.slots.len();
        let old = std::mem::replace(&mut self.slots, vec![(0, 0, None); entries]);
        self.misses = 0;
        for (addr, len, text) in old {
            if text.is_none() {
                continue;
            }
            let set = Self::set_of(addr, len, self.slots.len());
            if let Some(free) = self.slots[WAYS * set..WAYS * set + WAYS]
                .iter_mut()
                .find(|e| e.2.is_none())
            {
                *free = (addr, len, text);
            }
        }
    }

    /// The set of `(addr, len)` in a cache of `entries` entries (a power of two, or 0).
    #[inline]
    fn set_of(addr: usize, len: usize, entries: usize) -> usize {
        let sets = entries / WAYS;
        if sets <= 1 {
            return 0;
        }
        let h = (addr as u64 ^ (len as u64).rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> (64 - sets.trailing_zeros())) as usize
    }
}

/// Replaces `slot` with `s` unless it already holds that text.
#[inline(always)]
fn set_str(slot: &mut Arc<str>, s: &str) {
    if !same_text(slot, s) {
        *slot = Arc::from(s);
    }
}

/// `a == b`: up to 16 bytes inline (two words, overlapping when shorter), `memcmp` beyond.
#[inline(always)]
fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let w8 = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    let w4 = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().expect("4 bytes"));
    if n > 16 {
        a == b
    } else if n >= 8 {
        w8(a, 0) == w8(b, 0) && w8(a, n - 8) == w8(b, n - 8)
    } else if n >= 4 {
        w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4)
    } else {
        // 0 to 3 bytes: first, middle and last (overlapping when shorter).
        n == 0 || (a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1])
    }
}

// ---------------------------------------------------------------------- dispatcher

/// Owns the queue's receiver while the dispatcher runs, and gives it back when the task ends
/// (shutdown, or its runtime going away), so that a later event can start a new one.
struct ReceiverGuard {
    shared: Arc<Shared>,
    rx: Option<mpsc::Receiver<Msg>>,
}

impl Drop for ReceiverGuard {
    fn drop(&mut self) {
        let mut slot = self
            .shared
            .rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *slot = self.rx.take();
        self.shared.running.store(false, Ordering::Release);
    }
}

/// The dispatcher task: async listeners, sinks and subscribers, one event at a time. It
/// flushes sinks one second after the first event they received since the last flush (no
/// timer while idle), and ends, flushing, when every emitter is gone. On a runtime without
/// tokio's time driver sinks are flushed only then and by [`EventEmitter::flush`] (with a
/// warning when the dispatcher starts).
async fn dispatch(mut guard: ReceiverGuard) {
    let shared = guard.shared.clone();
    let Some(rx) = guard.rx.as_mut() else { return };
    let timer = crate::timer::sleep(FLUSH_EVERY).ok();
    if timer.is_none() {
        tracing::warn!(
            target: "cadence",
            "event sinks are flushed only on flush, shutdown and drop, not every {FLUSH_EVERY:?}: {}",
            crate::timer::NoTimeDriver::fix()
        );
    }
    tokio::pin!(timer);
    let mut armed = false;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            biased;
            () = async {
                match timer.as_mut().as_pin_mut() {
                    Some(t) => t.await,
                    None => std::future::pending().await,
                }
            }, if armed => {
                armed = false;
                flush_sinks(&shared).await;
            }
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    flush_sinks(&shared).await;
                    return;
                }
                for msg in batch.drain(..) {
                    match msg {
                        Msg::Event(event) => {
                            if dispatch_one(&shared, event).await
                                && !armed
                                && let Some(t) = timer.as_mut().as_pin_mut()
                            {
                                t.reset(tokio::time::Instant::now() + FLUSH_EVERY);
                                armed = true;
                            }
                        }
                        Msg::Flush(ack) => {
                            armed = false;
                            flush_sinks(&shared).await;
                            let _ = ack.send(());
                        }
                    }
                }
            }
        }
    }
}

/// Delivers one queued event; returns whether a sink received it.
async fn dispatch_one(shared: &Shared, event: Event) -> bool {
    let table = shared.table();
    let k = event.kind.index();
    let listeners = if k == UNKNOWN {
        ordered(event.name(), table.asyncs[k].iter())
    } else {
        table.asyncs[k].iter().collect()
    };
    for e in listeners {
        match catch_unwind(AssertUnwindSafe(|| (e.f)(event.clone()))) {
            Ok(fut) => match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => listener_failed(e.id, &event, &*err),
                Err(p) => listener_panicked(e.id, &event, &panic_message(p.as_ref())),
            },
            Err(p) => listener_panicked(e.id, &event, &panic_message(p.as_ref())),
        }
    }
    for (_, sink) in table.sinks.iter() {
        let sent = catch_unwind(AssertUnwindSafe(|| sink.send(&event)));
        match sent {
            Ok(fut) => match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => sink_failed(&**sink, "failed", Some(&event), &err),
                Err(p) => sink_failed(
                    &**sink,
                    "panicked",
                    Some(&event),
                    &panic_message(p.as_ref()),
                ),
            },
            Err(p) => sink_failed(
                &**sink,
                "panicked",
                Some(&event),
                &panic_message(p.as_ref()),
            ),
        }
    }
    if table.broadcast {
        if shared.broadcast.receiver_count() == 0 {
            shared.forget_subscribers();
        } else {
            // A full channel evicts its oldest value, which some receiver has not seen.
            if shared.broadcast.len() >= shared.broadcast_capacity {
                shared.count_drop();
            }
            let _ = shared.broadcast.send(event);
        }
    }
    !table.sinks.is_empty()
}

async fn flush_sinks(shared: &Shared) {
    let table = shared.table();
    for (_, sink) in table.sinks.iter() {
        match catch_unwind(AssertUnwindSafe(|| sink.flush())) {
            Ok(fut) => match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => sink_failed(&**sink, "failed to flush", None, &err),
                Err(p) => sink_failed(
                    &**sink,
                    "panicked while flushing",
                    None,
                    &panic_message(p.as_ref()),
                ),
            },
            Err(p) => sink_failed(
                &**sink,
                "panicked while flushing",
                None,
                &panic_message(p.as_ref()),
            ),
        }
    }
}

// ---------------------------------------------------------------------- Hook

impl<S> Hook<S> for EventEmitter {
    /// What the listeners, sinks and subscribers want right now; changes are announced with
    /// [`rebuild_interest_cache`](crate::hook::rebuild_interest_cache).
    fn interest(&self) -> Interest {
        hook_interest(self.inner.shared.interest.load(Ordering::Acquire))
    }

    fn on_cadence_start(&self, cx: &HookContext<'_>, _score: &S) {
        self.occur(cx, kind::CADENCE_STARTED, |_: &mut Strings<'_>| {
            EventKind::CadenceStarted {
                resumed: cx.resumed(),
                replayed: cx.replayed(),
            }
        });
    }

    fn on_cadence_end(
        &self,
        cx: &HookContext<'_>,
        _score: &S,
        duration: Duration,
        outcome: &RunOutcome<'_>,
    ) {
        self.cadence_end(cx, duration, outcome, None);
    }

    fn on_measure_start(&self, cx: &HookContext<'_>, path: &str, kind: MeasureKind) {
        self.occur(cx, kind::MEASURE_STARTED, |strings: &mut Strings<'_>| {
            EventKind::MeasureStarted {
                path: strings.get(path),
                kind,
            }
        });
    }

    fn on_measure_end(
        &self,
        cx: &HookContext<'_>,
        path: &str,
        duration: Duration,
        outcome: &MeasureOutcome<'_>,
    ) {
        self.occur(cx, kind::MEASURE_FINISHED, |strings: &mut Strings<'_>| {
            let (outcome, error) = match outcome {
                MeasureOutcome::Succeeded => (MeasureStatus::Succeeded, None),
                MeasureOutcome::Stopped => (MeasureStatus::Stopped, None),
                MeasureOutcome::Failed(e) => (MeasureStatus::Failed, Some(EventError::from(*e))),
                MeasureOutcome::Cancelled => (MeasureStatus::Cancelled, None),
            };
            EventKind::MeasureFinished {
                path: strings.get(path),
                duration: truncate(duration),
                outcome,
                error,
            }
        });
    }

    fn on_note_start(&self, cx: &HookContext<'_>, path: &str, attempt: u32, _score: &S) {
        self.occur(cx, kind::NOTE_STARTED, |strings: &mut Strings<'_>| {
            EventKind::NoteStarted {
                path: strings.note_path(path),
                attempt,
            }
        });
    }

    fn on_note_end(
        &self,
        cx: &HookContext<'_>,
        path: &str,
        attempt: u32,
        duration: Duration,
        outcome: &NoteOutcome<'_>,
        _score: &S,
    ) {
        let duration = truncate(duration);
        match *outcome {
            NoteOutcome::Succeeded | NoteOutcome::Stopped => {
                if self.wants(kind::NOTE_COMPLETED) {
                    let stopped = matches!(outcome, NoteOutcome::Stopped);
                    self.note_completed(cx, path, attempt, duration, stopped);
                }
            }
            NoteOutcome::Failed(e) => {
                self.occur(cx, kind::NOTE_FAILED, |strings: &mut Strings<'_>| {
                    EventKind::NoteFailed {
                        path: strings.note_path(path),
                        attempt,
                        duration,
                        error: e.into(),
                    }
                })
            }
            NoteOutcome::Cancelled => {
                self.occur(cx, kind::NOTE_CANCELLED, |strings: &mut Strings<'_>| {
                    EventKind::NoteCancelled {
                        path: strings.note_path(path),
                        attempt,
                        duration,
                    }
                })
            }
            // `note.retrying` reports the failed attempt (EVT-2).
            NoteOutcome::WillRetry(_) => {}
        }
    }

    fn on_retry(
        &self,
        cx: &HookContext<'_>,
        path: &str,
        attempt: u32,
        delay: Duration,
        error: &CadenceError,
    ) {
        self.occur(cx, kind::NOTE_RETRYING, |strings: &mut Strings<'_>| {
            EventKind::NoteRetrying {
                path: strings.get(path),
                attempt,
                delay: truncate(delay),
                error: error.into(),
            }
        });
    }

    fn on_fallback(&self, cx: &HookContext<'_>, path: &str, error: &CadenceError) {
        self.occur(cx, kind::NOTE_FALLBACK_USED, |strings: &mut Strings<'_>| {
            EventKind::NoteFallbackUsed {
                path: strings.get(path),
                error: error.into(),
            }
        });
    }

    fn on_circuit_state_change(
        &self,
        cx: &HookContext<'_>,
        circuit: &str,
        from: CircuitState,
        to: CircuitState,
    ) {
        self.occur(
            cx,
            kind::CIRCUIT_STATE_CHANGED,
            |strings: &mut Strings<'_>| EventKind::CircuitStateChanged {
                circuit: strings.get(circuit),
                from,
                to,
            },
        );
    }

    fn on_checkpoint_loaded(&self, cx: &HookContext<'_>, completed: usize, forced: bool) {
        self.occur(cx, kind::CHECKPOINT_LOADED, |_: &mut Strings<'_>| {
            EventKind::CheckpointLoaded { completed, forced }
        });
    }

    fn on_checkpoint_saved(&self, cx: &HookContext<'_>, path: &str, completed: usize) {
        self.occur(cx, kind::CHECKPOINT_SAVED, |strings: &mut Strings<'_>| {
            EventKind::CheckpointSaved {
                path: strings.get(path),
                completed,
            }
        });
    }

    fn on_checkpoint_error(&self, cx: &HookContext<'_>, error: &CadenceError) {
        self.occur(cx, kind::CHECKPOINT_FAILED, |_: &mut Strings<'_>| {
            EventKind::CheckpointFailed {
                error: error.into(),
            }
        });
    }

    fn on_note_skipped(&self, cx: &HookContext<'_>, path: &str, reason: SkipReason) {
        self.occur(cx, kind::NOTE_SKIPPED, |strings: &mut Strings<'_>| {
            EventKind::NoteSkipped {
                path: strings.get(path),
                reason,
            }
        });
    }

    fn on_branch_taken(&self, cx: &HookContext<'_>, path: &str, branch: &str, key: &str) {
        self.occur(cx, kind::BRANCH_TAKEN, |strings: &mut Strings<'_>| {
            EventKind::BranchTaken {
                path: strings.get(path),
                branch: branch.to_owned(),
                key: key.to_owned(),
            }
        });
    }
}

// ---------------------------------------------------------------------- ScoredEmitter

/// An [`EventEmitter`] that also puts the score, rendered by a redaction function, into
/// `cadence.*` end events (EVT-4). Made by [`EventEmitter::with_score`]; a [`Hook<S>`] for its
/// one score type, sharing the emitter's listeners, queue and counters.
pub struct ScoredEmitter<S> {
    emitter: EventEmitter,
    score: Arc<dyn Fn(&S) -> serde_json::Value + Send + Sync>,
}

impl<S> ScoredEmitter<S> {
    /// The shared emitter.
    pub fn emitter(&self) -> &EventEmitter {
        &self.emitter
    }
}

impl<S> Clone for ScoredEmitter<S> {
    fn clone(&self) -> Self {
        ScoredEmitter {
            emitter: self.emitter.clone(),
            score: self.score.clone(),
        }
    }
}

impl<S> fmt::Debug for ScoredEmitter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScoredEmitter")
            .field("emitter", &self.emitter)
            .finish_non_exhaustive()
    }
}

impl<S> Hook<S> for ScoredEmitter<S> {
    fn interest(&self) -> Interest {
        Hook::<S>::interest(&self.emitter)
    }

    fn on_cadence_start(&self, cx: &HookContext<'_>, score: &S) {
        Hook::<S>::on_cadence_start(&self.emitter, cx, score)
    }

    fn on_cadence_end(
        &self,
        cx: &HookContext<'_>,
        score: &S,
        duration: Duration,
        outcome: &RunOutcome<'_>,
    ) {
        let render = || (self.score)(score);
        self.emitter
            .cadence_end(cx, duration, outcome, Some(&render));
    }

    fn on_measure_start(&self, cx: &HookContext<'_>, path: &str, kind: MeasureKind) {
        Hook::<S>::on_measure_start(&self.emitter, cx, path, kind)
    }

    fn on_measure_end(
        &self,
        cx: &HookContext<'_>,
        path: &str,
        duration: Duration,
        outcome: &MeasureOutcome<'_>,
    ) {
        Hook::<S>::on_measure_end(&self.emitter, cx, path, duration, outcome)
    }

    fn on_note_start(&self, cx: &HookContext<'_>, path: &str, attempt: u32, score: &S) {
        Hook::<S>::on_note_start(&self.emitter, cx, path, attempt, score)
    }

    fn on_note_end(
        &self,
        cx: &HookContext<'_>,
        path: &str,
        attempt: u32,
        duration: Duration,
        outcome: &NoteOutcome<'_>,
        score: &S,
    ) {
        Hook::<S>::on_note_end(&self.emitter, cx, path, attempt, duration, outcome, score)
    }

    fn on_retry(
        &self,
        cx: &HookContext<'_>,
        path: &str,
        attempt: u32,
        delay: Duration,
        error: &CadenceError,
    ) {
        Hook::<S>::on_retry(&self.emitter, cx, path, attempt, delay, error)
    }

    fn on_timeout(&self, cx: &HookContext<'_>, path: &str, attempt: u32, after: Duration) {
        Hook::<S>::on_timeout(&self.emitter, cx, path, attempt, after)
    }

    fn on_fallback(&self, cx: &HookContext<'_>, path: &str, error: &CadenceError) {
        Hook::<S>::on_fallback(&self.emitter, cx, path, error)
    }

    fn on_circuit_state_change(
        &self,
        cx: &HookContext<'_>,
        circuit: &str,
        from: CircuitState,
        to: CircuitState,
    ) {
        Hook::<S>::on_circuit_state_change(&self.emitter, cx, circuit, from, to)
    }

    fn on_checkpoint_loaded(&self, cx: &HookContext<'_>, completed: usize, forced: bool) {
        Hook::<S>::on_checkpoint_loaded(&self.emitter, cx, completed, forced)
    }

    fn on_checkpoint_saved(&self, cx: &HookContext<'_>, path: &str, completed: usize) {
        Hook::<S>::on_checkpoint_saved(&self.emitter, cx, path, completed)
    }

    fn on_checkpoint_error(&self, cx: &HookContext<'_>, error: &CadenceError) {
        Hook::<S>::on_checkpoint_error(&self.emitter, cx, error)
    }

    fn on_note_skipped(&self, cx: &HookContext<'_>, path: &str, reason: SkipReason) {
        Hook::<S>::on_note_skipped(&self.emitter, cx, path, reason)
    }

    fn on_branch_taken(&self, cx: &HookContext<'_>, path: &str, branch: &str, key: &str) {
        Hook::<S>::on_branch_taken(&self.emitter, cx, path, branch, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // EVT-6: any capacity is taken (clamped), none panics; the broadcast ring, allocated up
    // front, stays bounded.
    #[tokio::test]
    async fn capacities_out_of_range_are_clamped() {
        for (asked, queue, ring) in [
            (0, 1, 1),
            (3, 3, 4),
            (MAX_CAPACITY + 1, MAX_CAPACITY, MAX_BROADCAST),
            (usize::MAX, MAX_CAPACITY, MAX_BROADCAST),
        ] {
            let e = EventEmitter::with_capacity(asked);
            assert_eq!(e.inner.tx.max_capacity(), queue, "{asked}");
            assert_eq!(e.capacity(), queue, "{asked}");
            assert_eq!(e.inner.shared.broadcast_capacity, ring, "{asked}");
            let (_sink, rx) = super::super::ChannelSink::channel(asked);
            assert_eq!(rx.max_capacity(), queue, "{asked}");
        }
    }

    #[test]
    fn patterns() {
        assert_eq!(Pattern::parse("*"), Pattern::Any);
        assert_eq!(Pattern::parse("note.*"), Pattern::Prefix("note.".into()));
        assert_eq!(
            Pattern::parse("note.completed"),
            Pattern::Exact("note.completed".into())
        );
        assert_eq!(Pattern::parse("note*"), Pattern::Exact("note*".into()));
        assert_eq!(Pattern::parse("note.*").rank("note.started"), Some(1));
        assert_eq!(Pattern::parse("note.*").rank("notes.x"), None);
        assert!(!Pattern::parse("note.started").matches_unknown());
        assert!(Pattern::parse("custom.thing").matches_unknown());
    }

    #[test]
    fn interest_tracks_registrations() {
        let e = EventEmitter::new();
        assert_eq!(e.inner.shared.interest.load(Ordering::Relaxed), 0);
        let id = e.on("note.completed", |_: &Event| {});
        let mask = e.inner.shared.interest.load(Ordering::Relaxed);
        assert_eq!(mask, sync_bit(kind::NOTE_COMPLETED));
        assert!(e.off(id));
        assert!(!e.off(id));
        assert_eq!(e.inner.shared.interest.load(Ordering::Relaxed), 0);
        let _rx = e.subscribe();
        let mask = e.inner.shared.interest.load(Ordering::Relaxed);
        assert_eq!(mask, (0..SLOTS).map(queue_bit).fold(0, |a, b| a | b));
    }

    #[test]
    fn paths_are_shared_by_address_and_confirmed_by_content() {
        let mut cache = PathCache::default();
        let mut buf = String::from("enrich/profile");
        let a = cache.get(&buf);
        let b = cache.get(&buf);
        assert!(Arc::ptr_eq(&a, &b));
        // Same address and length, other text: not taken for the old path.
        buf.replace_range(.., "enrich/prefers");
        let c = cache.get(&buf);
        assert_eq!(&*c, "enrich/prefers");
        assert_eq!(&*a, "enrich/profile");
        // Same text elsewhere: equal, whether shared or not.
        assert_eq!(&*cache.get("enrich/profile"), "enrich/profile");
        // More paths than the cache holds: still right, whatever it keeps.
        let many: Vec<String> = (0..3 * PATHS_MAX).map(|i| format!("p/{i}")).collect();
        for _ in 0..2 {
            for p in &many {
                assert_eq!(&*cache.get(p), p.as_str());
            }
        }
        assert_eq!(cache.slots.len(), PATHS_MAX);
        // A working set that fits is kept: after a few rounds, no more misses.
        let mut cache = PathCache::default();
        let some: Vec<String> = (0..1000).map(|i| format!("notes/n{i}")).collect();
        for _ in 0..8 {
            for p in &some {
                cache.get(p);
            }
        }
        let before = cache.misses;
        for p in &some {
            assert_eq!(&*cache.get(p), p.as_str());
        }
        assert!(
            cache.misses - before < 20,
            "{} misses",
            cache.misses - before
        );
        for (a, b) in [
            ("", ""),
            ("abc", "abc"),
            ("abcdefgh", "abcdefgh"),
            (
                "0195b3c2-aaaa-7bbb-8ccc-123456789abc",
                "0195b3c2-aaaa-7bbb-8ccc-123456789abc",
            ),
        ] {
            assert!(same_text(a, b));
        }
        for (a, b) in [
            ("a", "b"),
            ("ab", "ax"),
            ("abc", "xbc"),
            ("abc", "axc"),
            ("abc", "abd"),
            ("abcde", "abxde"),
            ("abcdefghij", "abcdefghix"),
            ("run-1", "run-10"),
            (
                "0195b3c2-aaaa-7bbb-8ccc-123456789abc",
                "0195b3c2-aaaa-7bbb-8ccd-123456789abc",
            ),
        ] {
            assert!(!same_text(a, b));
        }
    }

    #[test]
    fn note_paths_lent_to_the_reused_event_stay_right() {
        // EVT-1, EVT-2: whatever the order of note occurrences, keys sharing a slot (1 and 65
        // with 64 slots), a note repeated, a key-less path or another kind in between, every
        // event carries its own note's path, and a note's path is one `Arc` from event to event.
        let e = EventEmitter::new();
        let seen = Arc::new(Mutex::new(Vec::<(String, Arc<str>)>::new()));
        let log = seen.clone();
        e.on("*", move |ev: &Event| {
            let path = match &ev.kind {
                EventKind::NoteStarted { path, .. }
                | EventKind::NoteCompleted { path, .. }
                | EventKind::NoteFailed { path, .. }
                | EventKind::NoteCancelled { path, .. } => path.clone(),
                _ => "".into(),
            };
            log.lock().unwrap().push((ev.name().to_owned(), path));
        });
        let err = CadenceError::Cancelled;
        let steps: [(&str, u64, &str); 12] = [
            ("completed", 1, "a"),
            ("completed", 2, "b"),
            ("completed", 1, "a"),
            ("completed", 1, "a"),
            ("completed", 65, "c"),
            ("completed", 1, "a"),
            ("started", 2, "b"),
            ("completed", 2, "b"),
            ("failed", 65, "c"),
            ("completed", 0, "d"),
            ("cancelled", 1, "a"),
            ("completed", 2, "b"),
        ];
        for (what, key, path) in steps {
            let mut cx = HookContext::new("r", "c", 0);
            cx.key = key;
            let d = Duration::from_millis(1);
            match what {
                "started" => Hook::<()>::on_note_start(&e, &cx, path, 1, &()),
                "completed" => {
                    Hook::<()>::on_note_end(&e, &cx, path, 1, d, &NoteOutcome::Succeeded, &())
                }
                "failed" => {
                    Hook::<()>::on_note_end(&e, &cx, path, 1, d, &NoteOutcome::Failed(&err), &())
                }
                _ => Hook::<()>::on_note_end(&e, &cx, path, 1, d, &NoteOutcome::Cancelled, &()),
            }
        }
        let seen = seen.lock().unwrap();
        let got: Vec<(&str, &str)> = seen.iter().map(|(k, p)| (k.as_str(), &**p)).collect();
        let want: Vec<(String, &str)> = steps
            .iter()
            .map(|(what, _, path)| (format!("note.{what}"), *path))
            .collect();
        let want: Vec<(&str, &str)> = want.iter().map(|(k, p)| (k.as_str(), *p)).collect();
        assert_eq!(got, want);
        assert!(Arc::ptr_eq(&seen[0].1, &seen[2].1), "moved, not copied");
        assert!(Arc::ptr_eq(&seen[2].1, &seen[3].1));
        assert!(Arc::ptr_eq(&seen[1].1, &seen[7].1));
    }

    #[test]
    fn a_thread_picks_up_a_new_table() {
        use std::sync::atomic::AtomicUsize;
        let e = EventEmitter::new();
        let (first, second) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let n = first.clone();
        let id = e.on("note.started", move |_: &Event| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        let cx = HookContext::new("r", "c", 0);
        Hook::<()>::on_note_start(&e, &cx, "a", 1, &());
        assert!(e.off(id));
        let n = second.clone();
        e.on("note.started", move |_: &Event| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        Hook::<()>::on_note_start(&e, &cx, "a", 1, &());
        assert_eq!(first.load(Ordering::Relaxed), 1);
        assert_eq!(second.load(Ordering::Relaxed), 1);
        // The removed listener is let go by this thread's next event of the emitter.
        assert_eq!(Arc::strong_count(&first), 1);
    }
}
