//! Notes: the steps of a cadence (NOTE-1…8).
//!
//! A note is an async function over the run's score, `(&mut S) -> Result<O, E>` or
//! `(&mut S, &NoteContext) -> Result<O, E>`, where `E: Into<BoxError>` and `O` is `()` or
//! [`Control`]. There are three ways to make one, all giving a [`Note<S>`] value:
//!
//! - `#[note]` on an `async fn` (the usual way; the `Send` check happens at your definition),
//!   or on a plain `fn` for a blocking note;
//! - [`from_fn`] / [`from_fn_with_context`] for closures, which return a boxed future
//!   (`Box::pin(async move { … })`) so that the future's type is known;
//! - [`blocking`] / [`blocking_with_context`] for CPU-bound or blocking code, run on tokio's
//!   blocking pool (NOTE-6).
//!
//! ```
//! use cadence_core::{BoxError, Cadence, note};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let double = note::from_fn(|n: &mut u64| Box::pin(async move {
//!     *n *= 2;
//!     Ok::<_, BoxError>(())
//! }));
//! let hash = note::blocking(|n: &mut u64| {
//!     *n = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60;
//!     Ok::<_, BoxError>(())
//! });
//! let cadence = Cadence::new("math").then("double", double).then("hash", hash).build().unwrap();
//! let out = cadence.run(21).await.unwrap();
//! assert!(out < 16);
//! # });
//! ```
//!
//! A note's policies (retry, timeout, deadline, fallback, circuit breaker) are part of the note
//! value (NOTE-8) and compose in one fixed order (see [`crate::policy`]).

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

use crate::error::BoxError;
use crate::hash;
use crate::options::{RunId, RunInfo};

/// The boxed future a note call returns: it borrows the score and the context.
pub type NoteFuture<'a> = Pin<Box<dyn Future<Output = NoteResult> + Send + 'a>>;

/// What a note call yields once its output is normalised.
pub type NoteResult = Result<Control, BoxError>;

/// Tells the engine whether to go on after a note (NOTE-5).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Control {
    /// Go on with the next note.
    #[default]
    Continue,
    /// End the run early and cleanly (RUN-8), with an optional reason.
    Stop(Option<Cow<'static, str>>),
}

impl Control {
    /// Stop the run, without a reason.
    pub fn stop() -> Self {
        Control::Stop(None)
    }

    /// Stop the run because of `reason`.
    pub fn stop_because(reason: impl Into<Cow<'static, str>>) -> Self {
        Control::Stop(Some(reason.into()))
    }

    /// Whether this is a stop.
    pub fn is_stop(&self) -> bool {
        matches!(self, Control::Stop(_))
    }
}

/// An error value that means "stop the run cleanly" (NOTE-5), so notes returning `BoxError`
/// can stop with `?` or `Err(Stop::new().into())`. Only a `Stop` that *is* the note's error
/// counts; one nested in another error's source chain is an ordinary failure.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    reason: Option<Cow<'static, str>>,
}

impl Stop {
    /// A stop without a reason.
    pub fn new() -> Self {
        Stop { reason: None }
    }

    /// A stop with a reason.
    pub fn because(reason: impl Into<Cow<'static, str>>) -> Self {
        Stop {
            reason: Some(reason.into()),
        }
    }

    /// The reason, if any.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            Some(r) => write!(f, "stop: {r}"),
            None => f.write_str("stop"),
        }
    }
}

impl std::error::Error for Stop {}

/// Normalises what a note returns (`Result<(), E>` or `Result<Control, E>`) into a
/// [`NoteResult`]. Implemented for you; you never call it.
pub trait IntoNoteResult {
    /// The normalised result.
    fn into_note_result(self) -> NoteResult;
}

impl<E: Into<BoxError>> IntoNoteResult for Result<(), E> {
    #[inline]
    fn into_note_result(self) -> NoteResult {
        match self {
            Ok(()) => Ok(Control::Continue),
            Err(e) => Err(e.into()),
        }
    }
}

impl<E: Into<BoxError>> IntoNoteResult for Result<Control, E> {
    #[inline]
    fn into_note_result(self) -> NoteResult {
        self.map_err(Into::into)
    }
}

/// Turns an error that *is* a [`Stop`] into `Control::Stop` (NOTE-5).
#[inline]
pub(crate) fn normalise(r: NoteResult) -> NoteResult {
    match r {
        Err(e) if e.is::<Stop>() => match e.downcast::<Stop>() {
            Ok(stop) => Ok(Control::Stop(stop.reason)),
            Err(e) => Err(e),
        },
        other => other,
    }
}

/// What a running note may know about itself (NOTE-3).
///
/// Borrowed from the engine for the duration of one attempt.
pub struct NoteContext<'a> {
    pub(crate) run: &'a RunInfo<'a>,
    pub(crate) path: &'a std::sync::Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) prior_attempts: u32,
    pub(crate) token: OnceLock<CancellationToken>,
    pub(crate) done: AtomicBool,
}

impl fmt::Debug for NoteContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteContext")
            .field("run_id", &self.run.run_id.get())
            .field("cadence", &self.run.cadence)
            .field("path", &&**self.path)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl<'a> NoteContext<'a> {
    /// The id of this run (`<parent run id>/<child measure path>` inside a child cadence).
    pub fn run_id(&self) -> &'a str {
        self.run.run_id.get()
    }

    /// The id of the outermost run.
    pub fn root_run_id(&self) -> &'a str {
        self.run.root_run_id.get()
    }

    /// The parent run's id, inside a child cadence.
    pub fn parent_run_id(&self) -> Option<&'a str> {
        self.run.parent_run_id.map(RunId::get)
    }

    /// The name of the cadence this note belongs to.
    pub fn cadence(&self) -> &'a str {
        self.run.cadence
    }

    /// The note's path relative to its cadence (GEN-2).
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The note's full path, prefixed by enclosing child measures (`pay/charge`).
    pub fn full_path(&self) -> Cow<'a, str> {
        match self.run.prefix {
            None => Cow::Borrowed(&**self.path),
            Some(p) => Cow::Owned(format!("{p}/{}", self.path)),
        }
    }

    /// This attempt's number, from 1, within this execution of the run (CKP-12).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Attempts of this note recorded by earlier executions of this run (0 on a fresh run).
    pub fn prior_attempts(&self) -> u32 {
        self.prior_attempts
    }

    /// A key that is the same for every attempt and every resume of this note in this run
    /// (NOTE-4): pass it to external services so they can deduplicate.
    pub fn idempotency_key(&self) -> String {
        let mut h = hash::Fnv128::new();
        h.write(self.run.root_run_id.get().as_bytes());
        h.write(&[0]);
        if let Some(p) = self.run.prefix {
            h.write(p.as_bytes());
            h.write(b"/");
        }
        h.write(self.path.as_bytes());
        h.hex()
    }

    /// A token that fires when this attempt is abandoned: timed out, cancelled with its run,
    /// or dropped because a sibling failed. Created on first use.
    pub fn cancellation(&self) -> &CancellationToken {
        self.token.get_or_init(|| match self.run.token {
            Some(t) => t.child_token(),
            None => CancellationToken::new(),
        })
    }

    /// Makes a finished context ready for the next attempt of the lean path: a token handed
    /// out for the finished attempt is let go without firing (the attempt ended normally).
    #[inline]
    pub(crate) fn next_attempt(&mut self) {
        drop(self.token.take());
    }

    /// Marks the attempt finished, so dropping the context does not fire the token.
    #[inline]
    pub(crate) fn finish(&self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

impl Drop for NoteContext<'_> {
    #[inline]
    fn drop(&mut self) {
        // Taken so that the usual case (no token was ever asked for) costs one load here and
        // nothing in the `OnceLock`'s own drop.
        if let Some(t) = self.token.take()
            && !*self.done.get_mut()
        {
            t.cancel();
        }
    }
}

/// A note body that runs on the async worker: one call, one boxed future.
pub trait AsyncBody<S>: Send + Sync + 'static {
    /// Starts one attempt.
    fn call<'a>(&'a self, score: &'a mut S, cx: &'a NoteContext<'a>) -> NoteFuture<'a>;
}

/// A note body that runs on tokio's blocking pool.
pub trait BlockingBody<S>: Send + Sync + 'static {
    /// Runs one attempt to completion.
    fn call(&self, score: &mut S, cx: &NoteContext<'_>) -> NoteResult;
}

/// The function pointer `#[note]` generates for an async fn.
pub type AsyncFnPtr<S> = for<'a> fn(&'a mut S, &'a NoteContext<'a>) -> NoteFuture<'a>;

/// The function pointer `#[note]` generates for a blocking fn.
pub type BlockingFnPtr<S> = fn(&mut S, &NoteContext<'_>) -> NoteResult;

pub(crate) enum BlockingImpl<S> {
    Ptr(BlockingFnPtr<S>),
    Dyn(Arc<dyn BlockingBody<S>>),
}

impl<S> Clone for BlockingImpl<S> {
    fn clone(&self) -> Self {
        match self {
            BlockingImpl::Ptr(f) => BlockingImpl::Ptr(*f),
            BlockingImpl::Dyn(b) => BlockingImpl::Dyn(b.clone()),
        }
    }
}

impl<S: 'static> BlockingImpl<S> {
    pub(crate) fn call(&self, score: &mut S, cx: &NoteContext<'_>) -> NoteResult {
        match self {
            BlockingImpl::Ptr(f) => f(score, cx),
            BlockingImpl::Dyn(b) => b.call(score, cx),
        }
    }
}

pub(crate) enum Body<S> {
    AsyncFn(AsyncFnPtr<S>),
    Async(Arc<dyn AsyncBody<S>>),
    /// `take` moves the score out (leaving `S::default()`) so it can travel to the blocking
    /// pool; it is captured where `S: Default` is known (NOTE-6).
    Blocking {
        imp: BlockingImpl<S>,
        take: fn(&mut S) -> S,
        clone: fn(&S) -> S,
    },
}

impl<S> Clone for Body<S> {
    fn clone(&self) -> Self {
        match self {
            Body::AsyncFn(f) => Body::AsyncFn(*f),
            Body::Async(b) => Body::Async(b.clone()),
            Body::Blocking { imp, take, clone } => Body::Blocking {
                imp: imp.clone(),
                take: *take,
                clone: *clone,
            },
        }
    }
}

impl<S> Body<S> {
    pub(crate) fn is_blocking(&self) -> bool {
        matches!(self, Body::Blocking { .. })
    }
}

/// One step of a cadence: a body, an optional name, and its policies (NOTE-1, NOTE-8).
///
/// Cheap to clone. Build one with `#[note]`, [`from_fn`], [`from_fn_with_context`],
/// [`blocking`] or [`blocking_with_context`]; rename it with [`Note::named`].
pub struct Note<S> {
    pub(crate) name: Option<Cow<'static, str>>,
    pub(crate) body: Body<S>,
    pub(crate) macro_config: Option<fn() -> crate::policy::Policies<S>>,
    pub(crate) policies: crate::policy::Policies<S>,
}

impl<S> Clone for Note<S> {
    fn clone(&self) -> Self {
        Note {
            name: self.name.clone(),
            body: self.body.clone(),
            macro_config: self.macro_config,
            policies: self.policies.clone(),
        }
    }
}

impl<S> fmt::Debug for Note<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Note")
            .field("name", &self.name)
            .field("blocking", &self.body.is_blocking())
            .finish_non_exhaustive()
    }
}

impl<S> Note<S> {
    /// Used by `#[note]`: a note from a generated function pointer. Not for direct use.
    #[doc(hidden)]
    pub const fn __from_macro(
        name: &'static str,
        body: AsyncFnPtr<S>,
        config: Option<fn() -> crate::policy::Policies<S>>,
    ) -> Self {
        Note {
            name: Some(Cow::Borrowed(name)),
            body: Body::AsyncFn(body),
            macro_config: config,
            policies: crate::policy::Policies::NONE,
        }
    }

    /// Used by `#[note]` on a plain `fn`. Not for direct use.
    #[doc(hidden)]
    pub const fn __from_macro_blocking(
        name: &'static str,
        body: BlockingFnPtr<S>,
        config: Option<fn() -> crate::policy::Policies<S>>,
    ) -> Self
    where
        S: Default + Clone,
    {
        Note {
            name: Some(Cow::Borrowed(name)),
            body: Body::Blocking {
                imp: BlockingImpl::Ptr(body),
                take: std::mem::take::<S>,
                clone: S::clone,
            },
            macro_config: config,
            policies: crate::policy::Policies::NONE,
        }
    }

    fn from_body(body: Body<S>) -> Self {
        Note {
            name: None,
            body,
            macro_config: None,
            policies: crate::policy::Policies::NONE,
        }
    }

    /// A note from any [`AsyncBody`] implementation.
    pub fn from_body_impl(body: impl AsyncBody<S>) -> Self {
        Self::from_body(Body::Async(Arc::new(body)))
    }

    /// The same note under another name (NOTE-2).
    #[must_use]
    pub fn named(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Retries failed attempts (RET-1…10). Setting it again replaces it (NOTE-8).
    ///
    /// ```
    /// use cadence_core::{BoxError, note, retry::Retry};
    /// let n = note::from_fn(|x: &mut u8| Box::pin(async move { *x += 1; Ok::<_, BoxError>(()) }))
    ///     .with_retry(Retry::new(3));
    /// # let _ = n;
    /// ```
    #[must_use]
    pub fn with_retry(mut self, retry: crate::retry::Retry) -> Self {
        self.policies.retry = Some(retry);
        self
    }

    /// Bounds each attempt (TMO-1): a `Duration` or a [`Timeout`](crate::timeout::Timeout)
    /// with a message.
    #[must_use]
    pub fn with_timeout(mut self, timeout: impl Into<crate::timeout::Timeout>) -> Self {
        self.policies.timeout = Some(timeout.into());
        self
    }

    /// Bounds all attempts and waits of one execution (RET-7).
    #[must_use]
    pub fn with_deadline(mut self, deadline: std::time::Duration) -> Self {
        self.policies.deadline = Some(deadline);
        self
    }

    /// What to do when everything below failed (FB-1…4).
    #[must_use]
    pub fn with_fallback(mut self, fallback: crate::fallback::Fallback<S>) -> Self {
        self.policies.fallback = Some(fallback);
        self
    }

    /// Guards the note with a (shared) circuit breaker (CB-1…8).
    #[must_use]
    pub fn with_circuit_breaker(mut self, breaker: crate::circuit_breaker::CircuitBreaker) -> Self {
        self.policies.breaker = Some(breaker);
        self
    }

    /// The explicit or function name, if any (the engine falls back to the index, NOTE-2).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether the note runs on the blocking pool.
    pub fn is_blocking(&self) -> bool {
        self.body.is_blocking()
    }

    /// The note's policies: macro-given ones first, then the ones set with `with_*`.
    pub(crate) fn resolved_policies(&self) -> crate::policy::Policies<S> {
        match self.macro_config {
            Some(f) => f().overlay(&self.policies),
            None => self.policies.clone(),
        }
    }
}

/// Gives a note a name (NOTE-2): `note::named("charge", n)`.
pub fn named<S>(name: impl Into<Cow<'static, str>>, note: impl Into<Note<S>>) -> Note<S> {
    note.into().named(name)
}

struct FnBody<F>(F);

impl<S, F, R> AsyncBody<S> for FnBody<F>
where
    S: 'static,
    F: for<'a> Fn(&'a mut S) -> Pin<Box<dyn Future<Output = R> + Send + 'a>>
        + Send
        + Sync
        + 'static,
    R: IntoNoteResult + 'static,
{
    fn call<'a>(&'a self, score: &'a mut S, _cx: &'a NoteContext<'a>) -> NoteFuture<'a> {
        let fut = (self.0)(score);
        Box::pin(async move { fut.await.into_note_result() })
    }
}

/// A note from a closure returning a boxed future (NOTE-1).
///
/// The closure returns `Box::pin(async move { … })`; the future may borrow the score.
///
/// ```
/// use cadence_core::{BoxError, note};
/// let n = note::from_fn(|total: &mut u32| Box::pin(async move {
///     *total += 1;
///     Ok::<_, BoxError>(())
/// }));
/// # let _: cadence_core::Note<u32> = n;
/// ```
///
/// Each call costs two boxed futures; `#[note]` costs one.
pub fn from_fn<S, F, R>(f: F) -> Note<S>
where
    S: 'static,
    F: for<'a> Fn(&'a mut S) -> Pin<Box<dyn Future<Output = R> + Send + 'a>>
        + Send
        + Sync
        + 'static,
    R: IntoNoteResult + 'static,
{
    Note::from_body(Body::Async(Arc::new(FnBody(f))))
}

struct CtxFnBody<F>(F);

impl<S, F, R> AsyncBody<S> for CtxFnBody<F>
where
    S: 'static,
    F: for<'a> Fn(&'a mut S, &'a NoteContext<'a>) -> Pin<Box<dyn Future<Output = R> + Send + 'a>>
        + Send
        + Sync
        + 'static,
    R: IntoNoteResult + 'static,
{
    fn call<'a>(&'a self, score: &'a mut S, cx: &'a NoteContext<'a>) -> NoteFuture<'a> {
        let fut = (self.0)(score, cx);
        Box::pin(async move { fut.await.into_note_result() })
    }
}

/// A note from a closure that also takes the [`NoteContext`] (NOTE-1, NOTE-3).
///
/// ```
/// use cadence_core::{BoxError, note};
/// let n = note::from_fn_with_context(|log: &mut Vec<String>, cx| Box::pin(async move {
///     log.push(format!("{} attempt {}", cx.path(), cx.attempt()));
///     Ok::<_, BoxError>(())
/// }));
/// # let _: cadence_core::Note<Vec<String>> = n;
/// ```
pub fn from_fn_with_context<S, F, R>(f: F) -> Note<S>
where
    S: 'static,
    F: for<'a> Fn(&'a mut S, &'a NoteContext<'a>) -> Pin<Box<dyn Future<Output = R> + Send + 'a>>
        + Send
        + Sync
        + 'static,
    R: IntoNoteResult + 'static,
{
    Note::from_body(Body::Async(Arc::new(CtxFnBody(f))))
}

struct BlockingFnBody<F>(F);

impl<S, F, R> BlockingBody<S> for BlockingFnBody<F>
where
    S: 'static,
    F: Fn(&mut S) -> R + Send + Sync + 'static,
    R: IntoNoteResult,
{
    fn call(&self, score: &mut S, _cx: &NoteContext<'_>) -> NoteResult {
        (self.0)(score).into_note_result()
    }
}

/// A blocking note, run on tokio's blocking pool (NOTE-6).
///
/// The engine moves the score to the blocking thread and back, also after a panic; `S: Default`
/// provides the placeholder left behind meanwhile (nothing can observe it: the run waits for the
/// note). With a timeout or deadline the attempt runs on a clone (`S: Clone`), adopted only if
/// it finishes in time; an abandoned attempt runs on detached with its token fired, and its
/// result is discarded.
pub fn blocking<S, F, R>(f: F) -> Note<S>
where
    S: Default + Clone + 'static,
    F: Fn(&mut S) -> R + Send + Sync + 'static,
    R: IntoNoteResult,
{
    Note::from_body(Body::Blocking {
        imp: BlockingImpl::Dyn(Arc::new(BlockingFnBody(f))),
        take: std::mem::take::<S>,
        clone: S::clone,
    })
}

struct BlockingCtxFnBody<F>(F);

impl<S, F, R> BlockingBody<S> for BlockingCtxFnBody<F>
where
    S: 'static,
    F: Fn(&mut S, &NoteContext<'_>) -> R + Send + Sync + 'static,
    R: IntoNoteResult,
{
    fn call(&self, score: &mut S, cx: &NoteContext<'_>) -> NoteResult {
        (self.0)(score, cx).into_note_result()
    }
}

/// A blocking note that also takes the [`NoteContext`]; check
/// `cx.cancellation().is_cancelled()` in long loops to stop early when abandoned.
pub fn blocking_with_context<S, F, R>(f: F) -> Note<S>
where
    S: Default + Clone + 'static,
    F: Fn(&mut S, &NoteContext<'_>) -> R + Send + Sync + 'static,
    R: IntoNoteResult,
{
    Note::from_body(Body::Blocking {
        imp: BlockingImpl::Dyn(Arc::new(BlockingCtxFnBody(f))),
        take: std::mem::take::<S>,
        clone: S::clone,
    })
}
