//! Events in a Redis stream (REDIS-5): [`RedisEventSink`] appends, [`RedisEventReader`]
//! reads.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cadence_core::event::{BoxFuture, Event, Sink};
use cadence_core::{BoxError, CadenceError};
use redis::Value;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use crate::connection::{Redis, manager_config};

/// The default approximate length bound of the stream (REDIS-5).
pub const DEFAULT_MAX_LEN: u64 = 100_000;
/// Events buffered between the emitter's dispatcher and the writer task; more are dropped.
pub const DEFAULT_BUFFER: usize = 8192;
/// Events per pipeline.
const BATCH: usize = 512;

enum Msg {
    Event(Vec<u8>),
    Flush(oneshot::Sender<()>),
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
}

/// Appends every event to the stream `<prefix>:events` with `XADD … MAXLEN ~ N * event
/// <json>` (REDIS-5; N defaults to 100 000), for dashboards in other processes.
///
/// Add it to an `EventEmitter` with `with_sink`. `send` only serializes the event and hands
/// it to a writer task through a bounded buffer (8192 events by default), so it never waits
/// on Redis; the writer appends what accumulated in one pipeline (up to 512 events, with a
/// `PEXPIRE` of the stream to the connection's TTL). A full buffer, an error or a timeout
/// drops the events concerned and counts them ([`dropped`](Self::dropped)), logged at WARN
/// (target `cadence::events`) at most once per batch; nothing blocks and nothing is
/// retried. `flush` (the emitter calls it about every second and on shutdown) waits,
/// within the command timeout, until what was sent before it is written or dropped.
///
/// The writer task ends when the sink is dropped.
///
/// ```no_run
/// use cadence_core::EventEmitter;
/// use cadence_redis::Redis;
///
/// # async fn demo() -> Result<(), cadence_core::CadenceError> {
/// let redis = Redis::connect("redis://127.0.0.1:6379/").await?;
/// let emitter = EventEmitter::new().with_sink(redis.event_sink().with_max_len(10_000));
/// # let _ = emitter;
/// # Ok(()) }
/// ```
pub struct RedisEventSink {
    tx: mpsc::Sender<Msg>,
    counters: Arc<Counters>,
    max_len: Arc<AtomicU64>,
    redis: Redis,
}

impl fmt::Debug for RedisEventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisEventSink")
            .field("url", &self.redis.url())
            .field("stream", &self.redis.keys().events())
            .field("max_len", &self.max_len.load(Ordering::Relaxed))
            .field("written", &self.written())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl RedisEventSink {
    /// A sink on `redis` with the default buffer (see also [`Redis::event_sink`]). Starts
    /// the writer task: must be called within a tokio runtime.
    pub fn new(redis: Redis) -> Self {
        Self::with_buffer(redis, DEFAULT_BUFFER)
    }

    /// A sink buffering at most `capacity` events between the emitter and Redis.
    pub fn with_buffer(redis: Redis, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let counters = Arc::new(Counters::default());
        let max_len = Arc::new(AtomicU64::new(DEFAULT_MAX_LEN));
        tokio::spawn(write_loop(
            redis.clone(),
            rx,
            counters.clone(),
            max_len.clone(),
        ));
        RedisEventSink {
            tx,
            counters,
            max_len,
            redis,
        }
    }

    /// Bounds the stream to about `max_len` entries (`MAXLEN ~`; default 100 000).
    #[must_use]
    pub fn with_max_len(self, max_len: u64) -> Self {
        self.max_len.store(max_len.max(1), Ordering::Relaxed);
        self
    }

    /// The stream key.
    pub fn stream_key(&self) -> String {
        self.redis.keys().events()
    }

    /// Events appended so far.
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Events dropped so far (full buffer, Redis errors or timeouts).
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }
}

impl Sink for RedisEventSink {
    fn send<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), BoxError>> {
        let sent = serde_json::to_vec(event)
            .map_err(BoxError::from)
            .map(|json| {
                if self.tx.try_send(Msg::Event(json)).is_err() {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            });
        Box::pin(std::future::ready(sent))
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            let (ack, done) = oneshot::channel();
            let wait = async {
                self.tx.send(Msg::Flush(ack)).await.ok()?;
                done.await.ok()
            };
            // The writer itself gives up on a batch after the command timeout.
            let limit = self.redis.command_timeout().saturating_mul(2);
            match tokio::time::timeout(limit, wait).await {
                Ok(Some(())) => Ok(()),
                Ok(None) => Err("the Redis event writer has stopped".into()),
                Err(_) => Err(format!(
                    "flushing events to Redis at {} took longer than {limit:?}",
                    self.redis.url()
                )
                .into()),
            }
        })
    }

    fn name(&self) -> &str {
        "RedisEventSink"
    }
}

async fn write_loop(
    redis: Redis,
    mut rx: mpsc::Receiver<Msg>,
    counters: Arc<Counters>,
    max_len: Arc<AtomicU64>,
) {
    let key = redis.keys().events();
    let mut msgs = Vec::with_capacity(BATCH);
    let mut events: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut msgs, BATCH).await > 0 {
        let mut acks = Vec::new();
        for msg in msgs.drain(..) {
            match msg {
                Msg::Event(json) => events.push(json),
                Msg::Flush(ack) => acks.push(ack),
            }
        }
        if !events.is_empty() {
            write_batch(&redis, &key, &events, &counters, &max_len).await;
            events.clear();
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

async fn write_batch(
    redis: &Redis,
    key: &str,
    events: &[Vec<u8>],
    counters: &Counters,
    max_len: &AtomicU64,
) {
    let max_len = max_len.load(Ordering::Relaxed);
    let mut pipe = redis::pipe();
    for json in events {
        pipe.cmd("XADD")
            .arg(key)
            .arg("MAXLEN")
            .arg("~")
            .arg(max_len)
            .arg("*")
            .arg("event")
            .arg(json.as_slice())
            .ignore();
    }
    pipe.cmd("PEXPIRE")
        .arg(key)
        .arg(redis.record_ttl_ms())
        .ignore();
    let mut conn = redis.connection();
    let n = events.len() as u64;
    let written = redis
        .run(|| format!("appending {n} events to {key}"), async {
            pipe.query_async::<()>(&mut conn).await
        })
        .await;
    match written {
        Ok(()) => {
            counters.written.fetch_add(n, Ordering::Relaxed);
        }
        Err(e) => {
            let total = counters.dropped.fetch_add(n, Ordering::Relaxed) + n;
            tracing::warn!(
                target: "cadence::events",
                dropped = n,
                dropped_total = total,
                "RedisEventSink dropped events: {e}"
            );
        }
    }
}

/// Where a [`RedisEventReader`] starts.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    /// After the last entry present at the first read (`$`, resolved to that entry's id so
    /// that a reconnection loses nothing).
    Latest,
    /// From the beginning of the stream.
    Beginning,
    /// After the entry with this id (e.g. the [`last_id`](RedisEventReader::last_id) of an
    /// earlier reader).
    After(String),
}

/// Reads the events that [`RedisEventSink`]s append to `<prefix>:events` (REDIS-5), on a
/// connection of its own (`XREAD BLOCK` holds it while waiting).
///
/// [`next`](Self::next) yields events one at a time, in stream order, waiting for new
/// ones. After a failure (Redis restarted, network error) it returns the error; the next
/// call reconnects and resumes after the last entry it yielded, so nothing is skipped or
/// repeated. Entries that are not events (no `event` field, unparsable JSON) are skipped and
/// counted ([`skipped`](Self::skipped)); unknown event kinds arrive as
/// `EventKind::Unknown` (EVT-9).
///
/// ```no_run
/// use cadence_redis::{Redis, StartAt};
///
/// # async fn demo() -> Result<(), cadence_core::CadenceError> {
/// let redis = Redis::connect("redis://127.0.0.1:6379/").await?;
/// let mut reader = redis.event_reader().starting_at(StartAt::Beginning);
/// while let Ok(event) = reader.next().await {
///     println!("{} {} {}", event.run_id, event.seq, event.name());
/// }
/// # Ok(()) }
/// ```
pub struct RedisEventReader {
    redis: Redis,
    conn: Option<ConnectionManager>,
    key: String,
    start: Option<StartAt>,
    last_id: String,
    block: Duration,
    count: usize,
    /// Entries read and not yet yielded; `None` for entries that hold no event.
    buffered: VecDeque<(String, Option<Event>)>,
    skipped: u64,
}

impl fmt::Debug for RedisEventReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisEventReader")
            .field("url", &self.redis.url())
            .field("stream", &self.key)
            .field("last_id", &self.last_id)
            .field("buffered", &self.buffered.len())
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl RedisEventReader {
    /// A reader of `redis`'s event stream starting at [`StartAt::Latest`], blocking up to 1 s
    /// per `XREAD` (see also [`Redis::event_reader`]). Connects on the first read.
    pub fn new(redis: Redis) -> Self {
        let key = redis.keys().events();
        RedisEventReader {
            redis,
            conn: None,
            key,
            start: Some(StartAt::Latest),
            last_id: "0-0".to_owned(),
            block: Duration::from_secs(1),
            count: 512,
            buffered: VecDeque::new(),
            skipped: 0,
        }
    }

    /// Where to start (before the first read).
    #[must_use]
    pub fn starting_at(mut self, start: StartAt) -> Self {
        self.start = Some(start);
        self
    }

    /// How long one `XREAD` waits for new entries (default 1 s); [`next`](Self::next) keeps
    /// waiting across reads.
    #[must_use]
    pub fn with_block(mut self, block: Duration) -> Self {
        self.block = block.max(Duration::from_millis(1));
        self
    }

    /// The id of the last entry yielded (`0-0` before any).
    pub fn last_id(&self) -> &str {
        &self.last_id
    }

    /// Entries skipped because they held no readable event.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The next event, waiting for one (see the type's docs for failures).
    pub async fn next(&mut self) -> Result<Event, CadenceError> {
        self.next_entry().await.map(|(_, e)| e)
    }

    /// The next event with its stream entry id.
    pub async fn next_entry(&mut self) -> Result<(String, Event), CadenceError> {
        loop {
            while let Some((id, event)) = self.buffered.pop_front() {
                self.last_id.clone_from(&id);
                if let Some(event) = event {
                    return Ok((id, event));
                }
            }
            self.read().await?;
        }
    }

    /// Reads what is there now, waiting at most one block time: the events (possibly none)
    /// with their ids, in order.
    pub async fn poll(&mut self) -> Result<Vec<(String, Event)>, CadenceError> {
        if self.buffered.is_empty() {
            self.read().await?;
        }
        if let Some((id, _)) = self.buffered.back() {
            self.last_id.clone_from(id);
        }
        Ok(self
            .buffered
            .drain(..)
            .filter_map(|(id, event)| Some((id, event?)))
            .collect())
    }

    fn connection(&mut self) -> Result<ConnectionManager, CadenceError> {
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        let timeout = self.redis.command_timeout();
        let conn = ConnectionManager::new_lazy_with_config(
            self.redis.client().clone(),
            manager_config(timeout, timeout.saturating_add(self.block)),
        )
        .map_err(|e| {
            self.redis
                .error("opening the event reader's connection", &e)
        })?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// One `XREAD` into the buffer; resolves the start first.
    async fn read(&mut self) -> Result<(), CadenceError> {
        let mut conn = self.connection()?;
        if let Some(start) = self.start.clone() {
            self.last_id = match start {
                StartAt::Beginning => "0-0".to_owned(),
                StartAt::After(id) => id,
                StartAt::Latest => {
                    let key = self.key.clone();
                    let last: Vec<(String, Value)> = self
                        .redis
                        .run(|| format!("reading the end of {key}"), async {
                            redis::cmd("XREVRANGE")
                                .arg(&key)
                                .arg("+")
                                .arg("-")
                                .arg("COUNT")
                                .arg(1)
                                .query_async(&mut conn)
                                .await
                        })
                        .await?;
                    last.into_iter()
                        .next()
                        .map_or_else(|| "0-0".to_owned(), |(id, _)| id)
                }
            };
            self.start = None;
        }
        let block_ms = u64::try_from(self.block.as_millis()).unwrap_or(u64::MAX);
        let (key, after) = (self.key.clone(), self.last_id.clone());
        let count = self.count;
        let read = async {
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(block_ms)
                .arg("STREAMS")
                .arg(&key)
                .arg(&after)
                .query_async::<Value>(&mut conn)
                .await
        };
        let limit = self.redis.command_timeout().saturating_add(self.block);
        let reply = match tokio::time::timeout(limit, read).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => return Err(self.redis.error(format_args!("reading {key}"), &e)),
            Err(_) => {
                return Err(self.redis.fail(
                    cadence_core::CheckpointErrorKind::Unavailable,
                    format_args!("reading {key}: no answer within {limit:?}"),
                ));
            }
        };
        for (id, fields) in entries(reply) {
            let event = event_of(&fields);
            if event.is_none() {
                self.skipped += 1;
                tracing::debug!(target: "cadence::events", id, "skipped a stream entry that holds no event");
            }
            // Kept as `None`, so that the position still moves past it.
            self.buffered.push_back((id, event));
        }
        Ok(())
    }
}

/// The (id, fields) of the entries of an `XREAD` reply (RESP2 array or RESP3 map form).
fn entries(reply: Value) -> Vec<(String, Vec<Value>)> {
    let streams = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => kv.pop(),
                _ => None,
            })
            .collect::<Vec<_>>(),
        Value::Map(pairs) => pairs.into_iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(items) = stream else {
            continue;
        };
        for item in items {
            let Value::Array(mut parts) = item else {
                continue;
            };
            if parts.len() != 2 {
                continue;
            }
            let fields = match parts.pop() {
                Some(Value::Array(fields)) => fields,
                _ => Vec::new(),
            };
            let id = match parts.pop() {
                Some(Value::BulkString(id)) => String::from_utf8_lossy(&id).into_owned(),
                Some(Value::SimpleString(id)) => id,
                _ => continue,
            };
            out.push((id, fields));
        }
    }
    out
}

/// The event in an entry's `event` field.
fn event_of(fields: &[Value]) -> Option<Event> {
    fields.chunks(2).find_map(|kv| match kv {
        [Value::BulkString(k), Value::BulkString(v)] if k == b"event" => {
            serde_json::from_slice(v).ok()
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_xread_replies() {
        let json = r#"{"run_id":"r1","parent_run_id":null,"cadence":"c","seq":0,"at":"2026-05-01T12:00:00.000123Z","type":"cadence.started","resumed":false,"replayed":false}"#;
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("p:events"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("event"), bulk(json)]),
                ]),
                Value::Array(vec![
                    bulk("2-0"),
                    Value::Array(vec![bulk("other"), bulk("x")]),
                ]),
            ]),
        ])]);
        let got = entries(reply);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "1-0");
        let event = event_of(&got[0].1).unwrap();
        assert_eq!((&*event.run_id, event.name()), ("r1", "cadence.started"));
        assert!(event_of(&got[1].1).is_none());
        assert!(entries(Value::Nil).is_empty());
    }
}
