//! The score and notes the engine figures run, public so that `examples/hotpath.rs` (fixed
//! workloads for callgrind and perf) profiles exactly what the figures measure.
//!
//! Notes are built the way `#[note]` builds them (one function pointer, one boxed future per
//! call), so the figures measure the engine, not closure plumbing.

use std::hint::black_box;

use cadence_core::note::NoteFuture;
use cadence_core::{BoxError, Control, Note, NoteContext, Score};

/// A small score, as a service would carry.
#[derive(Debug, Clone, Default, PartialEq, Score)]
pub struct Small {
    /// Bumped by every note.
    pub counter: u64,
    /// A string field, as real scores have.
    pub name: String,
    /// A sequence field, as real scores have.
    pub tags: Vec<String>,
}

/// The hand-written baseline note: an `async fn` over `&mut S`.
pub async fn bump(s: &mut Small) -> Result<(), BoxError> {
    s.counter = black_box(s.counter + 1);
    Ok(())
}

/// What `#[note] async fn bump(..)` expands to.
pub fn bump_note() -> Note<Small> {
    fn call<'a>(s: &'a mut Small, _cx: &'a NoteContext<'a>) -> NoteFuture<'a> {
        Box::pin(async move {
            bump(s).await?;
            Ok(Control::Continue)
        })
    }
    Note::__from_macro("bump", call, None)
}

/// Fails unless the counter, bumped first, is a multiple of 3: from a default score, fails
/// twice then succeeds.
pub async fn twice_then_ok(s: &mut Small) -> Result<(), BoxError> {
    s.counter += 1;
    if !s.counter.is_multiple_of(3) {
        return Err("transient".into());
    }
    Ok(())
}

/// What `#[note] async fn twice_then_ok(..)` expands to.
pub fn flaky_note() -> Note<Small> {
    fn call<'a>(s: &'a mut Small, _cx: &'a NoteContext<'a>) -> NoteFuture<'a> {
        Box::pin(async move {
            twice_then_ok(s).await?;
            Ok(Control::Continue)
        })
    }
    Note::__from_macro("flaky", call, None)
}
