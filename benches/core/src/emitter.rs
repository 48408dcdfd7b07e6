//! `core.emitter1`: the cost of an `EventEmitter` holding one sync listener on
//! `note.completed`, per note, against the same cadence with no hooks.
//!
//! The cadence is the shape of `core.seq_note` (one `.sequence` of 1000 no-op notes,
//! definition reused), so per note the emitter sees `note.started` (nobody listens: skipped
//! after one atomic load) and `note.completed` (built and handed to the listener). The figure
//! includes what the engine does once any hook is attached (an occurrence context, `seq`, the
//! clock read for each attempt's duration), since that is what attaching the emitter costs.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cadence_core::event::{Event, EventEmitter};
use cadence_core::note::NoteFuture;
use cadence_core::{BoxError, Cadence, Control, Note, NoteContext};

use crate::harness::{Config, Outcome, interleave_async};

const NOTES: u64 = 1000;

/// The note body: bump the counter.
async fn bump(s: &mut u64) -> Result<(), BoxError> {
    *s = black_box(*s + 1);
    Ok(())
}

/// What `#[note] async fn bump(..)` expands to.
fn bump_note() -> Note<u64> {
    fn call<'a>(s: &'a mut u64, _cx: &'a NoteContext<'a>) -> NoteFuture<'a> {
        Box::pin(async move {
            bump(s).await?;
            Ok(Control::Continue)
        })
    }
    Note::__from_macro("bump", call, None)
}

fn cadence(emitter: Option<EventEmitter>) -> Cadence<u64> {
    let b = Cadence::new("emitter1").sequence(
        "notes",
        (0..NOTES).map(|i| bump_note().named(format!("n{i}"))),
    );
    match emitter {
        Some(e) => b.with_hooks(e),
        None => b,
    }
    .build()
    .expect("a valid cadence")
}

/// `core.emitter1`: ns per note with the emitter, against ns per note with no hooks.
pub(crate) fn emitter1(config: &Config) -> Outcome {
    let emitter = EventEmitter::new();
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    emitter.on("note.completed", move |e: &Event| {
        black_box(e);
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let with = cadence(Some(emitter.clone()));
    let without = cadence(None);
    let runs = config.scale(20);
    let plan = config.plan(runs);
    let p = interleave_async(
        &plan,
        async |iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(with.run(0).await.expect("runs"));
            }
            t.elapsed() / NOTES as u32
        },
        async |iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(without.run(0).await.expect("runs"));
            }
            t.elapsed() / NOTES as u32
        },
    );
    let expected = (plan.warmup + plan.reps) as u64 * plan.iters * NOTES;
    assert_eq!(
        seen.load(Ordering::Relaxed),
        expected,
        "the listener saw every note"
    );
    assert_eq!(emitter.dropped(), 0);
    p.into()
}
