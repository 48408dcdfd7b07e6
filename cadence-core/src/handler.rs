//! The run's error handler: `on_error(handler, OnError)` (RUN-9, RUN-10).
//!
//! The handler is called once per failed measure, after the failure's hooks, with the live
//! score and the error. It may repair the score; [`OnError`] decides whether the run then stops
//! (returning the original error) or continues (ending `Partial`). It is not called for stops,
//! cancellation or checkpoint errors. A handler that fails or panics ends the run with
//! `HandlerFailed`.
//!
//! ```
//! use cadence_core::{Cadence, CadenceError, OnError, note, BoxError, Outcome, RunOptions};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let cadence = Cadence::<Vec<String>>::new("h")
//!     .then("boom", note::from_fn(|_: &mut Vec<String>| Box::pin(async { Err::<(), BoxError>("boom".into()) })))
//!     .then("after", note::from_fn(|v: &mut Vec<String>| Box::pin(async move { v.push("after".into()); Ok::<_, BoxError>(()) })))
//!     .on_error(|v: &mut Vec<String>, e: &CadenceError| v.push(format!("handled {}", e.kind())), OnError::Continue)
//!     .build()
//!     .unwrap();
//! let report = cadence.run_with_report(Vec::new(), RunOptions::default()).await;
//! assert_eq!(report.outcome, Outcome::Partial);
//! assert_eq!(report.score, ["handled note", "after"]);
//! # });
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::{BoxError, CadenceError};

/// What the run does after the handler succeeded.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// End the run with the original error.
    Stop,
    /// Go on with the next measure; the run ends `Partial`.
    Continue,
}

impl OnError {
    /// `stop` or `continue`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Stop => "stop",
            OnError::Continue => "continue",
        }
    }
}

type BoxFut<'a> = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'a>>;

type SyncHandler<S> = Arc<dyn Fn(&mut S, &CadenceError) -> Result<(), BoxError> + Send + Sync>;
type AsyncHandler<S> = Arc<dyn for<'a> Fn(&'a mut S, &'a CadenceError) -> BoxFut<'a> + Send + Sync>;

pub(crate) enum HandlerFn<S> {
    Sync(SyncHandler<S>),
    Async(AsyncHandler<S>),
}

/// An error handler (sync or async).
pub struct Handler<S> {
    pub(crate) f: HandlerFn<S>,
}

impl<S> std::fmt::Debug for Handler<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler").finish_non_exhaustive()
    }
}

/// What a handler may return: `()` or `Result<(), E>`.
pub trait HandlerOutput {
    /// Normalised.
    fn into_result(self) -> Result<(), BoxError>;
}

impl HandlerOutput for () {
    fn into_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError>> HandlerOutput for Result<(), E> {
    fn into_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}

/// Anything usable as a handler: a [`Handler`] or a closure `Fn(&mut S, &CadenceError)`
/// returning `()` or `Result<(), E>`.
pub trait IntoHandler<S> {
    /// Converts.
    fn into_handler(self) -> Handler<S>;
}

impl<S> IntoHandler<S> for Handler<S> {
    fn into_handler(self) -> Handler<S> {
        self
    }
}

impl<S, F, R> IntoHandler<S> for F
where
    F: Fn(&mut S, &CadenceError) -> R + Send + Sync + 'static,
    R: HandlerOutput,
{
    fn into_handler(self) -> Handler<S> {
        Handler {
            f: HandlerFn::Sync(Arc::new(move |s: &mut S, e: &CadenceError| {
                self(s, e).into_result()
            })),
        }
    }
}

/// An async handler; the closure returns `Box::pin(async move { … })`.
pub fn from_async<S, F, R>(f: F) -> Handler<S>
where
    S: 'static,
    F: for<'a> Fn(&'a mut S, &'a CadenceError) -> Pin<Box<dyn Future<Output = R> + Send + 'a>>
        + Send
        + Sync
        + 'static,
    R: HandlerOutput + 'static,
{
    let f = Arc::new(f);
    Handler {
        f: HandlerFn::Async(Arc::new(move |s: &mut S, e: &CadenceError| {
            let fut = f(s, e);
            Box::pin(async move { fut.await.into_result() }) as BoxFut<'_>
        })),
    }
}
