//! Conditions for `split` and selectors for `route` (BR-1, BR-2).
//!
//! A condition is a sync predicate over `&S` returning `bool` or `Result<bool, E>`, or an async
//! one made with [`from_async`]. [`named`] gives it a label for diagrams (default label
//! `condition`). A selector returns the route key: `&'static str`, `String`, or a `Result` of
//! either; [`select_async`] makes an async one.
//!
//! ```
//! use cadence_core::cond;
//! #[derive(Clone)]
//! struct Order { premium: bool }
//! let is_premium = cond::named("is_premium", |o: &Order| o.premium);
//! assert_eq!(is_premium.label(), "is_premium");
//! ```

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::BoxError;

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type SyncEval<S, T> = Arc<dyn Fn(&S) -> Result<T, BoxError> + Send + Sync>;
type AsyncEval<S, T> = Arc<dyn for<'a> Fn(&'a S) -> BoxFut<'a, Result<T, BoxError>> + Send + Sync>;

/// A function of the score that conditions and selectors share: sync or async, fallible.
pub(crate) enum EvalFn<S, T> {
    Sync(SyncEval<S, T>),
    Async(AsyncEval<S, T>),
}

impl<S, T> Clone for EvalFn<S, T> {
    fn clone(&self) -> Self {
        match self {
            EvalFn::Sync(f) => EvalFn::Sync(f.clone()),
            EvalFn::Async(f) => EvalFn::Async(f.clone()),
        }
    }
}

impl<S: 'static, T: 'static> EvalFn<S, T> {
    /// Wraps an async user function whose output `convert` normalises.
    fn from_async<F, R>(f: F, convert: fn(R) -> Result<T, BoxError>) -> Self
    where
        F: for<'a> Fn(&'a S) -> BoxFut<'a, R> + Send + Sync + 'static,
        R: 'static,
    {
        EvalFn::Async(Arc::new(move |s: &S| {
            let fut = f(s);
            Box::pin(async move { convert(fut.await) }) as BoxFut<'_, _>
        }))
    }
}

pub(crate) type CondFn<S> = EvalFn<S, bool>;
pub(crate) type SelFn<S> = EvalFn<S, String>;

/// A split's predicate with its diagram label.
pub struct Condition<S> {
    pub(crate) label: Cow<'static, str>,
    pub(crate) f: CondFn<S>,
}

impl<S> Clone for Condition<S> {
    fn clone(&self) -> Self {
        Condition {
            label: self.label.clone(),
            f: self.f.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Condition<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl<S> Condition<S> {
    /// The diagram label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The same condition with another label.
    #[must_use]
    pub fn named(mut self, label: impl Into<Cow<'static, str>>) -> Self {
        self.label = label.into();
        self
    }
}

/// What a condition may return: `bool` or `Result<bool, E>`.
pub trait CondOutput {
    /// Normalised.
    fn into_result(self) -> Result<bool, BoxError>;
}

impl CondOutput for bool {
    fn into_result(self) -> Result<bool, BoxError> {
        Ok(self)
    }
}

impl<E: Into<BoxError>> CondOutput for Result<bool, E> {
    fn into_result(self) -> Result<bool, BoxError> {
        self.map_err(Into::into)
    }
}

/// Anything usable as a split condition: a [`Condition`] or a closure `Fn(&S) -> bool` (or
/// `Result<bool, E>`).
pub trait IntoCondition<S> {
    /// Converts.
    fn into_condition(self) -> Condition<S>;
}

impl<S> IntoCondition<S> for Condition<S> {
    fn into_condition(self) -> Condition<S> {
        self
    }
}

impl<S, F, R> IntoCondition<S> for F
where
    F: Fn(&S) -> R + Send + Sync + 'static,
    R: CondOutput,
{
    fn into_condition(self) -> Condition<S> {
        Condition {
            label: Cow::Borrowed("condition"),
            f: EvalFn::Sync(Arc::new(move |s: &S| self(s).into_result())),
        }
    }
}

/// A labelled condition: `cond::named("is_premium", |o: &Order| o.premium)`.
pub fn named<S>(label: impl Into<Cow<'static, str>>, f: impl IntoCondition<S>) -> Condition<S> {
    f.into_condition().named(label)
}

/// An async condition; the future may borrow the score (so the score must be `Sync`).
///
/// ```
/// use cadence_core::{BoxError, cond};
/// let c = cond::from_async(|n: &u32| Box::pin(async move { Ok::<_, BoxError>(*n > 3) }));
/// # let _: cond::Condition<u32> = c;
/// ```
pub fn from_async<S, F, R>(f: F) -> Condition<S>
where
    S: Sync + 'static,
    F: for<'a> Fn(&'a S) -> BoxFut<'a, R> + Send + Sync + 'static,
    R: CondOutput + 'static,
{
    Condition {
        label: Cow::Borrowed("condition"),
        f: EvalFn::from_async(f, R::into_result),
    }
}

/// A route's key function.
pub struct Selector<S> {
    pub(crate) label: Cow<'static, str>,
    pub(crate) f: SelFn<S>,
}

impl<S> std::fmt::Debug for Selector<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selector")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl<S> Selector<S> {
    /// The diagram label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The same selector with another label.
    #[must_use]
    pub fn named(mut self, label: impl Into<Cow<'static, str>>) -> Self {
        self.label = label.into();
        self
    }
}

/// What a selector may return: a key (`&'static str`, `String`, `Cow<'static, str>`) or a
/// `Result` of one.
pub trait KeyOutput {
    /// Normalised.
    fn into_key(self) -> Result<String, BoxError>;
}

impl KeyOutput for &'static str {
    fn into_key(self) -> Result<String, BoxError> {
        Ok(self.to_owned())
    }
}

impl KeyOutput for String {
    fn into_key(self) -> Result<String, BoxError> {
        Ok(self)
    }
}

impl KeyOutput for Cow<'static, str> {
    fn into_key(self) -> Result<String, BoxError> {
        Ok(self.into_owned())
    }
}

impl<E: Into<BoxError>> KeyOutput for Result<&'static str, E> {
    fn into_key(self) -> Result<String, BoxError> {
        self.map(str::to_owned).map_err(Into::into)
    }
}

impl<E: Into<BoxError>> KeyOutput for Result<String, E> {
    fn into_key(self) -> Result<String, BoxError> {
        self.map_err(Into::into)
    }
}

/// Anything usable as a route selector: a [`Selector`] or a closure `Fn(&S) -> key`.
pub trait IntoSelector<S> {
    /// Converts.
    fn into_selector(self) -> Selector<S>;
}

impl<S> IntoSelector<S> for Selector<S> {
    fn into_selector(self) -> Selector<S> {
        self
    }
}

impl<S, F, R> IntoSelector<S> for F
where
    F: Fn(&S) -> R + Send + Sync + 'static,
    R: KeyOutput,
{
    fn into_selector(self) -> Selector<S> {
        Selector {
            label: Cow::Borrowed("selector"),
            f: EvalFn::Sync(Arc::new(move |s: &S| self(s).into_key())),
        }
    }
}

/// A labelled selector.
pub fn selector<S>(label: impl Into<Cow<'static, str>>, f: impl IntoSelector<S>) -> Selector<S> {
    f.into_selector().named(label)
}

/// An async selector; the future may borrow the score (so the score must be `Sync`).
pub fn select_async<S, F, R>(f: F) -> Selector<S>
where
    S: Sync + 'static,
    F: for<'a> Fn(&'a S) -> BoxFut<'a, R> + Send + Sync + 'static,
    R: KeyOutput + 'static,
{
    Selector {
        label: Cow::Borrowed("selector"),
        f: EvalFn::from_async(f, R::into_key),
    }
}
