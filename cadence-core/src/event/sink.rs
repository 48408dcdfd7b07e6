//! Sinks: where an [`EventEmitter`](super::EventEmitter)'s dispatcher hands every event
//! (EVT-8). Core ships [`JsonLinesSink`] (a file, one event per line) and [`ChannelSink`]
//! (a tokio `mpsc` channel); adapters implement [`Sink`] for their streams.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use super::Event;
use crate::error::BoxError;

/// A boxed `Send` future, as [`Sink`] methods and async listeners return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A destination for events, run on the emitter's dispatcher task, one event at a time, in
/// queue order. An error or panic is logged (target `cadence::events`, WARN) and the sink is
/// skipped for that event (EVT-7). Taking long makes the emitter's queue fill up and drop
/// events; it never slows a note.
///
/// ```
/// use cadence_core::BoxError;
/// use cadence_core::event::{BoxFuture, Event, Sink};
/// use std::sync::Mutex;
///
/// /// Keeps the names of the events it sees.
/// #[derive(Default)]
/// struct Names(Mutex<Vec<String>>);
///
/// impl Sink for Names {
///     fn send<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), BoxError>> {
///         Box::pin(async move {
///             self.0.lock().unwrap().push(event.name().to_owned());
///             Ok(())
///         })
///     }
/// }
/// ```
pub trait Sink: Send + Sync + 'static {
    /// Handles one event.
    fn send<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), BoxError>>;

    /// Makes what was sent durable or visible: called about every second after events were
    /// sent, and by [`flush`](super::EventEmitter::flush) and
    /// [`shutdown`](super::EventEmitter::shutdown). Does nothing by default.
    fn flush(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// A name for logs (the type name by default).
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }
}

impl<T: Sink + ?Sized> Sink for Arc<T> {
    fn send<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), BoxError>> {
        (**self).send(event)
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        (**self).flush()
    }

    fn name(&self) -> &str {
        (**self).name()
    }
}

impl<T: Sink + ?Sized> Sink for Box<T> {
    fn send<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), BoxError>> {
        (**self).send(event)
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        (**self).flush()
    }

    fn name(&self) -> &str {
        (**self).name()
    }
}

/// Appends events to a file, one JSON object per line (EVT-8), buffered and flushed about
/// every second and on [`shutdown`](super::EventEmitter::shutdown). Read the file back with
/// [`read_events`].
///
/// ```
/// use cadence_core::{BoxError, Cadence, note};
/// use cadence_core::event::{EventEmitter, JsonLinesSink, read_events};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let path = std::env::temp_dir().join(format!("cadence-doc-{}.jsonl", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let emitter = EventEmitter::new().with_sink(JsonLinesSink::open(&path).unwrap());
/// let c = Cadence::<()>::new("audited")
///     .then("a", note::from_fn(|_: &mut ()| Box::pin(async { Ok::<_, BoxError>(()) })))
///     .with_hooks(emitter.clone())
///     .build()
///     .unwrap();
/// c.run(()).await.unwrap();
/// assert!(emitter.shutdown().await);
///
/// let events = read_events(&path).unwrap();
/// let names: Vec<&str> = events.iter().map(|e| e.name()).collect();
/// assert_eq!(names, [
///     "cadence.started", "measure.started", "note.started", "note.completed",
///     "measure.finished", "cadence.completed",
/// ]);
/// # std::fs::remove_file(&path).unwrap();
/// # });
/// ```
pub struct JsonLinesSink {
    path: PathBuf,
    file: tokio::sync::Mutex<BufWriter<tokio::fs::File>>,
}

impl fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl JsonLinesSink {
    /// Opens `path` for appending, creating it if needed (its directory must exist).
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(JsonLinesSink {
            path,
            file: tokio::sync::Mutex::new(BufWriter::new(tokio::fs::File::from_std(file))),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the events of a JSON-lines file ([`read_events`]).
    pub fn read(path: impl AsRef<Path>) -> io::Result<Vec<Event>> {
        read_events(path)
    }
}

impl Sink for JsonLinesSink {
    fn send<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let mut line = serde_json::to_vec(event)?;
            line.push(b'\n');
            self.file.lock().await.write_all(&line).await?;
            Ok(())
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            self.file.lock().await.flush().await?;
            Ok(())
        })
    }

    fn name(&self) -> &str {
        "JsonLinesSink"
    }
}

/// Reads the events of a JSON-lines file, as [`JsonLinesSink`] writes it: one event per
/// line, blank lines ignored. A last line without its newline that does not parse (a write
/// cut short by a crash) is ignored; any other line that does not parse is an
/// `InvalidData` error naming its line number.
pub fn read_events(path: impl AsRef<Path>) -> io::Result<Vec<Event>> {
    let text = std::fs::read_to_string(path.as_ref())?;
    let complete = text.is_empty() || text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut events = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(line) {
            Ok(e) => events.push(e),
            Err(_) if !complete && i + 1 == lines.len() => {}
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: line {}: not an event: {e}",
                        path.as_ref().display(),
                        i + 1
                    ),
                ));
            }
        }
    }
    Ok(events)
}

/// Sends every event into a tokio `mpsc` channel, waiting for room (so a slow receiver
/// makes the emitter's queue, not a note, absorb the delay). A closed channel is an error.
#[derive(Debug, Clone)]
pub struct ChannelSink {
    tx: mpsc::Sender<Event>,
}

impl ChannelSink {
    /// A sink feeding `tx`.
    pub fn new(tx: mpsc::Sender<Event>) -> Self {
        ChannelSink { tx }
    }

    /// A sink and the receiver of a new channel holding `capacity` events (from 1 to
    /// [`MAX_CAPACITY`](super::MAX_CAPACITY); values outside are clamped).
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(capacity.clamp(1, super::MAX_CAPACITY));
        (ChannelSink { tx }, rx)
    }
}

impl Sink for ChannelSink {
    fn send<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            self.tx
                .send(event.clone())
                .await
                .map_err(|_| "the channel's receiver is closed")?;
            Ok(())
        })
    }

    fn name(&self) -> &str {
        "ChannelSink"
    }
}
