//! Fallback: what a note does when everything below it failed (FB-1…4).
//!
//! The outermost policy (RES-1): it sees every failure of the note after retries, deadline,
//! breaker and timeout — except stops and cancellation, which pass through untouched (RES-2).
//! It calls `on_fallback` (event `note.fallback_used`) and then either writes score fields
//! ([`Fallback::set`]) or runs an alternative note ([`Fallback::note`], path
//! `<note>/fallback`, with its own policies). On success the note counts as succeeded.
//!
//! ```
//! use cadence_core::{BoxError, CadenceError, fallback::Fallback, note};
//! #[derive(Default)]
//! struct Quote { price: Option<u32>, stale: bool }
//! let cached = Fallback::set(|q: &mut Quote, _e: &CadenceError| {
//!     q.price = Some(100);
//!     q.stale = true;
//! })
//! .when(|e| e.is_timeout());
//! let fetch = note::from_fn(|_: &mut Quote| Box::pin(async { Err::<(), BoxError>("down".into()) }))
//!     .with_fallback(cached);
//! # let _ = fetch;
//! ```

use std::sync::Arc;

use crate::error::{BoxError, CadenceError};
use crate::handler::HandlerOutput;
use crate::note::Note;

type SetFn<S> = Arc<dyn Fn(&mut S, &CadenceError) -> Result<(), BoxError> + Send + Sync>;
type When = Arc<dyn Fn(&CadenceError) -> bool + Send + Sync>;

pub(crate) enum FallbackKind<S> {
    Set(SetFn<S>),
    Note(Box<Note<S>>),
}

/// A note's fallback (FB-1).
pub struct Fallback<S> {
    pub(crate) kind: FallbackKind<S>,
    pub(crate) when: Option<When>,
}

impl<S> Clone for Fallback<S> {
    fn clone(&self) -> Self {
        Fallback {
            kind: match &self.kind {
                FallbackKind::Set(f) => FallbackKind::Set(f.clone()),
                FallbackKind::Note(n) => FallbackKind::Note(n.clone()),
            },
            when: self.when.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Fallback<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            FallbackKind::Set(_) => "set",
            FallbackKind::Note(_) => "note",
        };
        f.debug_struct("Fallback")
            .field("kind", &kind)
            .field("filtered", &self.when.is_some())
            .finish()
    }
}

impl<S> Fallback<S> {
    /// Writes score fields from the error; returns `()` or `Result<(), E>` (an error, or a
    /// panic, becomes the note's error, FB-4).
    pub fn set<F, R>(f: F) -> Self
    where
        F: Fn(&mut S, &CadenceError) -> R + Send + Sync + 'static,
        R: HandlerOutput,
    {
        Fallback {
            kind: FallbackKind::Set(Arc::new(move |s: &mut S, e: &CadenceError| {
                f(s, e).into_result()
            })),
            when: None,
        }
    }

    /// Runs an alternative note at `<note>/fallback`, with its own policies.
    pub fn note(note: impl Into<Note<S>>) -> Self {
        Fallback {
            kind: FallbackKind::Note(Box::new(note.into())),
            when: None,
        }
    }

    /// Only for errors `f` accepts; others propagate unchanged (FB-2).
    #[must_use]
    pub fn when(mut self, f: impl Fn(&CadenceError) -> bool + Send + Sync + 'static) -> Self {
        self.when = Some(Arc::new(f));
        self
    }

    pub(crate) fn applies(&self, e: &CadenceError) -> bool {
        !matches!(e, CadenceError::Cancelled) && self.when.as_ref().is_none_or(|w| w(e))
    }
}
