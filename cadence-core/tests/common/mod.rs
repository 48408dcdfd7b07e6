//! Shared helpers for the behaviour tests: short note constructors over a `Log` score
//! (a `Vec<String>` each note appends to) and a hook that records calls with tags.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cadence_core::{BoxError, Control, Hook, HookContext, Note, NoteOutcome, note};

/// The score most tests use: every note appends what it did.
pub type Log = Vec<String>;

/// A note that runs `f` on the score and succeeds.
pub fn step<S, F>(f: F) -> Note<S>
where
    S: Send + 'static,
    F: Fn(&mut S) + Send + Sync + 'static,
{
    note::from_fn(move |s: &mut S| {
        f(s);
        Box::pin(async move { Ok::<_, BoxError>(()) })
    })
}

/// A note that appends `tag`.
pub fn push(tag: &'static str) -> Note<Log> {
    note::from_fn(move |l: &mut Log| {
        Box::pin(async move {
            l.push(tag.to_owned());
            Ok::<_, BoxError>(())
        })
    })
}

/// A note that appends `tag`, then fails with `msg`.
pub fn fail(tag: &'static str, msg: &'static str) -> Note<Log> {
    note::from_fn(move |l: &mut Log| {
        Box::pin(async move {
            l.push(tag.to_owned());
            Err::<(), BoxError>(msg.into())
        })
    })
}

/// A note that appends `tag`, then stops the run with `reason`.
pub fn stop(tag: &'static str, reason: &'static str) -> Note<Log> {
    note::from_fn(move |l: &mut Log| {
        Box::pin(async move {
            l.push(tag.to_owned());
            Ok::<_, BoxError>(Control::stop_because(reason))
        })
    })
}

/// A note that appends `tag`, then panics with `msg`.
pub fn panics(tag: &'static str, msg: &'static str) -> Note<Log> {
    note::from_fn(move |l: &mut Log| {
        Box::pin(async move {
            l.push(tag.to_owned());
            if std::hint::black_box(true) {
                panic!("{msg}");
            }
            Ok::<_, BoxError>(())
        })
    })
}

/// A note that appends `tag`, sleeps `ms` (tokio time), then appends `tag` + `!`.
pub fn sleeps(tag: &'static str, ms: u64) -> Note<Log> {
    note::from_fn(move |l: &mut Log| {
        Box::pin(async move {
            l.push(tag.to_owned());
            tokio::time::sleep(Duration::from_millis(ms)).await;
            l.push(format!("{tag}!"));
            Ok::<_, BoxError>(())
        })
    })
}

/// A shared, ordered log of strings that hooks, handlers and notes can all write to.
#[derive(Clone, Default, Debug)]
pub struct Shared(pub Arc<Mutex<Vec<String>>>);

impl Shared {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    pub fn get(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A hook that writes `<tag> <method> <path>` lines into a [`Shared`] log.
#[derive(Clone)]
pub struct Tagged {
    pub tag: &'static str,
    pub log: Shared,
}

impl Tagged {
    pub fn new(tag: &'static str, log: &Shared) -> Self {
        Tagged {
            tag,
            log: log.clone(),
        }
    }
}

impl<S> Hook<S> for Tagged {
    fn on_cadence_start(&self, cx: &HookContext<'_>, _: &S) {
        self.log
            .push(format!("{} cadence_start {}", self.tag, cx.cadence()));
    }
    fn on_cadence_end(
        &self,
        cx: &HookContext<'_>,
        _: &S,
        _: Duration,
        o: &cadence_core::RunOutcome<'_>,
    ) {
        self.log.push(format!(
            "{} cadence_end {} {}",
            self.tag,
            cx.cadence(),
            o.kind().as_str()
        ));
    }
    fn on_measure_start(&self, _: &HookContext<'_>, path: &str, _: cadence_core::MeasureKind) {
        self.log.push(format!("{} measure_start {path}", self.tag));
    }
    fn on_note_start(&self, _: &HookContext<'_>, path: &str, _: u32, _: &S) {
        self.log.push(format!("{} note_start {path}", self.tag));
    }
    fn on_note_end(
        &self,
        _: &HookContext<'_>,
        path: &str,
        _: u32,
        _: Duration,
        o: &NoteOutcome<'_>,
        _: &S,
    ) {
        let o = match o {
            NoteOutcome::Succeeded => "Succeeded",
            NoteOutcome::Stopped => "Stopped",
            NoteOutcome::Failed(_) => "Failed",
            NoteOutcome::Cancelled => "Cancelled",
            _ => "other",
        };
        self.log.push(format!("{} note_end {path} {o}", self.tag));
    }
}

/// Compile-time check that a value is `Send`.
pub fn assert_send<T: Send>(_: &T) {}

/// An empty note list (for empty branches).
pub fn none<S>() -> Vec<Note<S>> {
    Vec::new()
}
