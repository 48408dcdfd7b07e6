//! The DSL: [`CadenceBuilder`], returned by [`Cadence::new`](crate::Cadence::new) (DSL-1…6).
//!
//! Each verb appends one measure in call order; [`build`](CadenceBuilder::build) validates the
//! whole definition (reporting *every* problem at once) and compiles it: paths, fingerprint and
//! policy stacks are computed here, once, so a run formats no strings.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::cadence::GroupOps;
use crate::cadence::{
    Cadence, ChildMeasure, ChildRunner, CompiledNote, Inner, Measure, MeasureBody,
};
use crate::checkpoint::session::{Checkpointing, Codec};
use crate::checkpoint::{CheckpointStore, OnCheckpointError};
use crate::cond::{IntoCondition, IntoSelector, Selector};
use crate::error::{CadenceError, Problem};
use crate::handler::{Handler, IntoHandler, OnError};
use crate::hook::{Hook, MeasureKind};
use crate::note::Note;
use crate::score::{MergeStrategy, Score};
use std::time::Duration;

pub(crate) enum SpecBody<S> {
    Note(Note<S>),
    Sequence(Vec<Note<S>>),
    Split {
        cond: crate::cond::Condition<S>,
        if_true: Vec<Note<S>>,
        if_false: Vec<Note<S>>,
    },
    Route {
        selector: Selector<S>,
        routes: Vec<(String, Vec<Note<S>>)>,
        default: Option<Vec<Note<S>>>,
    },
    Child(Arc<dyn ChildRunner<S>>),
    Sync {
        notes: Vec<Note<S>>,
        strategy: MergeStrategy<S>,
        ops: GroupOps<S>,
    },
}

pub(crate) struct MeasureSpec<S> {
    pub(crate) name: String,
    pub(crate) body: SpecBody<S>,
}

/// The result of [`CadenceBuilder::validate`]: errors fail `build()`, warnings never do (DSL-6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Validation {
    /// Problems that make `build()` fail, in declaration order.
    pub errors: Vec<Problem>,
    /// Problems worth knowing about that do not fail `build()`.
    pub warnings: Vec<Problem>,
}

impl Validation {
    /// Whether there are no errors.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Builds a [`Cadence`]. Create it with [`Cadence::new`].
#[must_use = "a builder does nothing until build() is called"]
pub struct CadenceBuilder<S> {
    pub(crate) name: String,
    pub(crate) measures: Vec<MeasureSpec<S>>,
    pub(crate) hooks: Vec<Box<dyn Hook<S>>>,
    pub(crate) on_error: Vec<(Handler<S>, OnError)>,
    pub(crate) checkpoint: Vec<Checkpointing<S>>,
    pub(crate) on_checkpoint_error: OnCheckpointError,
    pub(crate) lease_ttl: Duration,
    pub(crate) note_spans: bool,
}

impl<S> std::fmt::Debug for CadenceBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CadenceBuilder")
            .field("name", &self.name)
            .field("measures", &self.measures.len())
            .finish_non_exhaustive()
    }
}

impl<S: Send + 'static> CadenceBuilder<S> {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        CadenceBuilder {
            name: name.into(),
            measures: Vec::new(),
            hooks: Vec::new(),
            on_error: Vec::new(),
            checkpoint: Vec::new(),
            on_checkpoint_error: OnCheckpointError::Fail,
            lease_ttl: Duration::from_secs(30),
            note_spans: true,
        }
    }

    fn push(mut self, name: impl Into<String>, body: SpecBody<S>) -> Self {
        self.measures.push(MeasureSpec {
            name: name.into(),
            body,
        });
        self
    }

    /// One note as one measure; its path is the measure name.
    pub fn then(self, name: impl Into<String>, note: impl Into<Note<S>>) -> Self {
        self.push(name, SpecBody::Note(note.into()))
    }

    /// Notes in order, as one measure (`<measure>/<note>` paths).
    pub fn sequence<I>(self, name: impl Into<String>, notes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<Note<S>>,
    {
        self.push(
            name,
            SpecBody::Sequence(notes.into_iter().map(Into::into).collect()),
        )
    }

    /// A parallel group (PAR-4): every member runs concurrently on its own clone of the score,
    /// then the members' changes are merged field by field with
    /// [`MergeStrategy::FailOnConflict`] (PAR-8).
    pub fn sync<I>(self, name: impl Into<String>, notes: I) -> Self
    where
        S: Score,
        I: IntoIterator,
        I::Item: Into<Note<S>>,
    {
        self.sync_with(name, notes, MergeStrategy::FailOnConflict)
    }

    /// A parallel group merged with `strategy` (PAR-8…11).
    pub fn sync_with<I>(self, name: impl Into<String>, notes: I, strategy: MergeStrategy<S>) -> Self
    where
        S: Score,
        I: IntoIterator,
        I::Item: Into<Note<S>>,
    {
        self.push(
            name,
            SpecBody::Sync {
                notes: notes.into_iter().map(Into::into).collect(),
                strategy,
                ops: GroupOps::new(),
            },
        )
    }

    /// If/else (BR-1): `condition` picks `if_true` or `if_false` (which may be empty).
    pub fn split<C, T, F>(
        self,
        name: impl Into<String>,
        condition: C,
        if_true: T,
        if_false: F,
    ) -> Self
    where
        C: IntoCondition<S>,
        T: IntoIterator,
        T::Item: Into<Note<S>>,
        F: IntoIterator,
        F::Item: Into<Note<S>>,
    {
        self.push(
            name,
            SpecBody::Split {
                cond: condition.into_condition(),
                if_true: if_true.into_iter().map(Into::into).collect(),
                if_false: if_false.into_iter().map(Into::into).collect(),
            },
        )
    }

    /// N-way branch (BR-2): `selector` returns a key; its notes run. An unknown key fails the
    /// run with `CadenceError::Route`; use [`route_or`](Self::route_or) for a default.
    pub fn route<Sel, R, K, N>(self, name: impl Into<String>, selector: Sel, routes: R) -> Self
    where
        Sel: IntoSelector<S>,
        R: IntoIterator<Item = (K, N)>,
        K: Into<String>,
        N: IntoIterator,
        N::Item: Into<Note<S>>,
    {
        self.route_impl(name, selector, routes, None)
    }

    /// Like [`route`](Self::route), with a default branch for unknown keys (`*` in paths).
    pub fn route_or<Sel, R, K, N, D>(
        self,
        name: impl Into<String>,
        selector: Sel,
        routes: R,
        default: D,
    ) -> Self
    where
        Sel: IntoSelector<S>,
        R: IntoIterator<Item = (K, N)>,
        K: Into<String>,
        N: IntoIterator,
        N::Item: Into<Note<S>>,
        D: IntoIterator,
        D::Item: Into<Note<S>>,
    {
        let default = default.into_iter().map(Into::into).collect();
        self.route_impl(name, selector, routes, Some(default))
    }

    fn route_impl<Sel, R, K, N>(
        self,
        name: impl Into<String>,
        selector: Sel,
        routes: R,
        default: Option<Vec<Note<S>>>,
    ) -> Self
    where
        Sel: IntoSelector<S>,
        R: IntoIterator<Item = (K, N)>,
        K: Into<String>,
        N: IntoIterator,
        N::Item: Into<Note<S>>,
    {
        let routes = routes
            .into_iter()
            .map(|(k, n)| (k.into(), n.into_iter().map(Into::into).collect()))
            .collect();
        self.push(
            name,
            SpecBody::Route {
                selector: selector.into_selector(),
                routes,
                default,
            },
        )
    }

    /// A child cadence with its own score type `C` (CHILD-1…6): `into_child` makes the child's
    /// score from the parent's, the child runs, then `merge` writes its result back.
    ///
    /// The parent score must be `Sync` here: while the child runs, the parent's hooks observe
    /// the child's occurrences together with the parent's score (CHILD-3).
    pub fn child<C, I, M>(
        self,
        name: impl Into<String>,
        child: Cadence<C>,
        into_child: I,
        merge: M,
    ) -> Self
    where
        S: Sync,
        C: Send + 'static,
        I: Fn(&S) -> C + Send + Sync + 'static,
        M: Fn(&mut S, C) + Send + Sync + 'static,
    {
        self.push(
            name,
            SpecBody::Child(Arc::new(ChildMeasure {
                cadence: child,
                into_child,
                merge,
            })),
        )
    }

    /// The run's error handler (RUN-9). Call at most once.
    pub fn on_error(mut self, handler: impl IntoHandler<S>, mode: OnError) -> Self {
        self.on_error.push((handler.into_handler(), mode));
        self
    }

    /// Checkpoints every run to `store` (CKP-1), so a crashed run resumes where it stopped when
    /// run again with the same run id. Runs then need a run id (RUN-2). Call at most once.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cadence_core::{BoxError, Cadence, RunOptions, note, checkpoint::MemoryStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let store = Arc::new(MemoryStore::new());
    /// let cadence = Cadence::<u32>::new("counted")
    ///     .then("bump", note::from_fn(|n: &mut u32| Box::pin(async move { *n += 1; Ok::<_, BoxError>(()) })))
    ///     .with_checkpoint(store)
    ///     .build()
    ///     .unwrap();
    /// let n = cadence.run_with(0, RunOptions::default().with_run_id("job-1")).await.unwrap();
    /// assert_eq!(n, 1);
    /// # });
    /// ```
    pub fn with_checkpoint(mut self, store: Arc<dyn CheckpointStore>) -> Self
    where
        S: serde::Serialize + serde::de::DeserializeOwned,
    {
        self.checkpoint.push(Checkpointing {
            store,
            codec: Codec::new(),
            on_error: OnCheckpointError::Fail,
            lease_ttl: Duration::from_secs(30),
        });
        self
    }

    /// What a run does when a checkpoint save fails (CKP-8; default `Fail`).
    pub fn on_checkpoint_error(mut self, mode: OnCheckpointError) -> Self {
        self.on_checkpoint_error = mode;
        self
    }

    /// How long a checkpoint lease lasts before it must be renewed (default 30 s; renewed every
    /// third of it; CKP-9). Only stores with leases use it. Zero, or longer than 100 years, is a
    /// validation error at `build()` (DSL-4).
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Adds hooks; repeatable, accumulating in call order (HOOK-3).
    pub fn with_hooks(mut self, hooks: impl Hook<S> + 'static) -> Self {
        self.hooks.push(Box::new(hooks));
        self
    }

    /// Whether each note gets its own `cadence.note` span (default `true`).
    ///
    /// With a `tracing` subscriber installed, a span costs ≈ 100 ns per note; with none, ≈ 4 ns.
    /// Turn note spans off for very hot, tiny notes when you only need run spans; the run span
    /// and measure spans remain.
    pub fn with_note_spans(mut self, on: bool) -> Self {
        self.note_spans = on;
        self
    }

    /// Reports every error and warning without building (DSL-6).
    pub fn validate(&self) -> Validation {
        let mut v = Validation::default();
        check_name(&mut v, "", "cadence", &self.name);
        if self.measures.is_empty() {
            v.errors.push(Problem::new(
                "",
                "the cadence has no measures; add one with then, sequence, sync, split, route or child",
            ));
        }
        let mut seen = HashSet::new();
        for m in &self.measures {
            check_name(&mut v, &m.name, "measure", &m.name);
            if !seen.insert(m.name.as_str()) {
                v.errors.push(Problem::new(
                    &m.name,
                    "two top-level measures share this name; names must be unique",
                ));
            }
            match &m.body {
                SpecBody::Note(n) => check_notes(&mut v, &m.name, std::slice::from_ref(n), false),
                SpecBody::Sequence(ns) => {
                    if ns.is_empty() {
                        v.errors.push(Problem::new(
                            &m.name,
                            "the sequence is empty; give it at least one note",
                        ));
                    }
                    check_notes(&mut v, &m.name, ns, true);
                }
                SpecBody::Sync { notes, .. } => {
                    if notes.is_empty() {
                        v.errors.push(Problem::new(
                            &m.name,
                            "the parallel group is empty; give it at least one note",
                        ));
                    } else if notes.len() == 1 {
                        v.warnings.push(Problem::new(
                            &m.name,
                            "the parallel group has one note; a then() would do the same without cloning the score",
                        ));
                    }
                    check_notes(&mut v, &m.name, notes, true);
                }
                SpecBody::Split {
                    if_true, if_false, ..
                } => {
                    if if_true.is_empty() {
                        v.errors.push(Problem::new(
                            &m.name,
                            "the split's if_true branch is empty; give it at least one note (if_false may be empty)",
                        ));
                    }
                    check_notes(&mut v, &format!("{}/true", m.name), if_true, true);
                    check_notes(&mut v, &format!("{}/false", m.name), if_false, true);
                }
                SpecBody::Route {
                    routes, default, ..
                } => {
                    if routes.is_empty() {
                        v.errors.push(Problem::new(
                            &m.name,
                            "the route has no routes; add at least one key",
                        ));
                    }
                    let mut keys = HashSet::new();
                    for (k, notes) in routes {
                        let kpath = format!("{}/{k}", m.name);
                        if k == "*" {
                            v.errors.push(Problem::new(
                                &kpath,
                                "'*' is reserved for the default branch; use route_or for a default",
                            ));
                        } else {
                            check_name(&mut v, &kpath, "route key", k);
                        }
                        if !keys.insert(k.as_str()) {
                            v.errors.push(Problem::new(&kpath, "duplicate route key"));
                        }
                        check_notes(&mut v, &kpath, notes, true);
                    }
                    if let Some(d) = default {
                        check_notes(&mut v, &format!("{}/*", m.name), d, true);
                    }
                }
                SpecBody::Child(c) => {
                    if c.has_own_checkpoint() {
                        v.warnings.push(Problem::new(
                            &m.name,
                            "the child cadence has its own checkpoint store, which is ignored when it runs as a child (CHILD-5)",
                        ));
                    }
                }
            }
        }
        let mut breakers = Vec::new();
        for m in &self.measures {
            for n in spec_notes(&m.body) {
                collect_breakers(n, &mut breakers);
            }
        }
        for (i, (name, b)) in breakers.iter().enumerate() {
            if breakers[..i]
                .iter()
                .any(|(n2, b2)| n2 == name && !b2.ptr_eq(b))
                && !breakers[..i]
                    .iter()
                    .any(|(n2, b2)| n2 == name && b2.ptr_eq(b))
            {
                v.warnings.push(Problem::new(
                    "",
                    format!(
                        "two distinct circuit breakers are both named '{name}'; they do not share state — clone one breaker to share it"
                    ),
                ));
            }
        }
        if self.checkpoint.len() > 1 {
            v.errors.push(Problem::new(
                "",
                "with_checkpoint is called more than once; keep one store",
            ));
        }
        if self.lease_ttl.is_zero() {
            v.errors.push(Problem::new(
                "",
                "the checkpoint lease ttl is zero; give it a positive duration",
            ));
        }
        v.errors.extend(crate::options::check_ttl(
            "checkpoint lease ttl",
            self.lease_ttl,
        ));
        if self.on_error.len() > 1 {
            v.errors.push(Problem::new(
                "",
                "on_error is called more than once; keep one handler",
            ));
        }
        v
    }

    /// Validates and compiles the cadence (DSL-4).
    pub fn build(self) -> Result<Cadence<S>, CadenceError> {
        let v = self.validate();
        if !v.errors.is_empty() {
            return Err(CadenceError::Validation { problems: v.errors });
        }
        for w in &v.warnings {
            tracing::warn!(target: "cadence", cadence = %self.name, "{w}");
        }
        let measures: Vec<Measure<S>> = self.measures.into_iter().map(compile_measure).collect();
        let name: Arc<str> = Arc::from(self.name);
        let fingerprint = crate::describe::fingerprint_of(&measures);
        // A hook whose `interest` panics is asked for everything (HOOK-4: isolated, counted).
        let epoch = crate::hook::interest_epoch();
        let (interest, interest_panics) = crate::hook::interest_of(&self.hooks);
        let interest_cache = crate::hook::InterestCache::default();
        interest_cache.set(epoch, interest);
        let hooks = if self.hooks.is_empty() {
            None
        } else {
            // Observed runs measure durations: have the fast clock ready by the first one.
            crate::clock::prepare();
            Some(self.hooks.into_boxed_slice())
        };
        let on_error = self.on_error.into_iter().next();
        let (on_checkpoint_error, lease_ttl) = (self.on_checkpoint_error, self.lease_ttl);
        let checkpoint = self.checkpoint.into_iter().next().map(|mut c| {
            c.on_error = on_checkpoint_error;
            c.lease_ttl = lease_ttl;
            c
        });
        Ok(Cadence {
            inner: Arc::new(Inner {
                name,
                measures: measures.into_boxed_slice(),
                hooks,
                interest: interest_cache,
                on_error,
                fingerprint,
                checkpoint,
                note_spans: self.note_spans,
                hook_panics: AtomicU64::new(interest_panics),
                warnings: v.warnings,
            }),
        })
    }
}

/// GEN-1: non-empty, no `/`, no control characters.
fn check_name(v: &mut Validation, path: &str, what: &str, name: &str) {
    if name.is_empty() {
        v.errors.push(Problem::new(
            path,
            format!("the {what} name is empty; give it a name"),
        ));
    } else if name.contains('/') {
        v.errors.push(Problem::new(
            path,
            format!(
                "the {what} name '{name}' contains '/', which separates path segments; remove it"
            ),
        ));
    } else if name.chars().any(char::is_control) {
        v.errors.push(Problem::new(
            path,
            format!("the {what} name {name:?} contains control characters; remove them"),
        ));
    }
}

fn note_name<S>(n: &Note<S>, index: usize) -> Cow<'static, str> {
    match &n.name {
        Some(name) => name.clone(),
        None => Cow::Owned(index.to_string()),
    }
}

fn check_policies<S>(v: &mut Validation, path: &str, n: &Note<S>) {
    let p = n.resolved_policies();
    p.check(path, &mut v.errors, &mut v.warnings);
    if let Some(crate::fallback::Fallback {
        kind: crate::fallback::FallbackKind::Note(fb),
        ..
    }) = &p.fallback
    {
        let fb_path = format!("{path}/fallback");
        if fb.resolved_policies().fallback.is_some() {
            v.errors.push(Problem::new(
                &fb_path,
                "a fallback note cannot have a fallback of its own; put the second alternative inside the first",
            ));
        }
        check_policies(v, &fb_path, fb);
    }
}

/// DSL-5: two distinct breakers sharing one name in a cadence.
fn collect_breakers<S>(
    n: &Note<S>,
    out: &mut Vec<(String, crate::circuit_breaker::CircuitBreaker)>,
) {
    let p = n.resolved_policies();
    if let Some(b) = &p.breaker {
        out.push((b.name().to_owned(), b.clone()));
    }
    if let Some(crate::fallback::Fallback {
        kind: crate::fallback::FallbackKind::Note(fb),
        ..
    }) = &p.fallback
    {
        collect_breakers(fb, out);
    }
}

fn spec_notes<S>(body: &SpecBody<S>) -> Vec<&Note<S>> {
    match body {
        SpecBody::Note(n) => vec![n],
        SpecBody::Sequence(ns) | SpecBody::Sync { notes: ns, .. } => ns.iter().collect(),
        SpecBody::Split {
            if_true, if_false, ..
        } => if_true.iter().chain(if_false).collect(),
        SpecBody::Route {
            routes, default, ..
        } => routes
            .iter()
            .flat_map(|(_, ns)| ns.iter())
            .chain(default.iter().flatten())
            .collect(),
        SpecBody::Child(_) => Vec::new(),
    }
}

fn check_notes<S>(v: &mut Validation, base: &str, notes: &[Note<S>], in_group: bool) {
    let mut seen = HashSet::new();
    for (i, n) in notes.iter().enumerate() {
        let name = note_name(n, i);
        let path = if in_group {
            format!("{base}/{name}")
        } else {
            base.to_owned()
        };
        check_policies(v, &path, n);
        if in_group || n.name.is_some() {
            check_name(v, &path, "note", &name);
            if !seen.insert(name.clone()) {
                v.errors.push(Problem::new(
                    &path,
                    "two notes of this group share this name; rename one with note::named",
                ));
            }
        }
    }
}

fn compile_notes<S>(base: &str, notes: Vec<Note<S>>) -> Box<[CompiledNote<S>]> {
    notes
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            let name = note_name(&n, i);
            let path: Arc<str> = Arc::from(format!("{base}/{name}"));
            CompiledNote::new(Arc::from(&*name), path, n)
        })
        .collect()
}

fn compile_measure<S>(spec: MeasureSpec<S>) -> Measure<S> {
    let name: Arc<str> = Arc::from(spec.name.as_str());
    let (kind, body) = match spec.body {
        SpecBody::Note(n) => {
            let note_name: Arc<str> = match &n.name {
                Some(nm) => Arc::from(&**nm),
                None => name.clone(),
            };
            (
                MeasureKind::Note,
                MeasureBody::Note(CompiledNote::new(note_name, name.clone(), n)),
            )
        }
        SpecBody::Sequence(ns) => (
            MeasureKind::Sequence,
            MeasureBody::Sequence(compile_notes(&spec.name, ns)),
        ),
        SpecBody::Split {
            cond,
            if_true,
            if_false,
        } => (
            MeasureKind::Split,
            MeasureBody::Split {
                cond,
                if_true: compile_notes(&format!("{}/true", spec.name), if_true),
                if_false: compile_notes(&format!("{}/false", spec.name), if_false),
            },
        ),
        SpecBody::Route {
            selector,
            routes,
            default,
        } => (
            MeasureKind::Route,
            MeasureBody::Route {
                selector,
                routes: routes
                    .into_iter()
                    .map(|(k, ns)| {
                        let notes = compile_notes(&format!("{}/{k}", spec.name), ns);
                        (Arc::from(k.as_str()), notes)
                    })
                    .collect(),
                default: default.map(|d| compile_notes(&format!("{}/*", spec.name), d)),
            },
        ),
        SpecBody::Child(c) => (MeasureKind::Child, MeasureBody::Child(c)),
        SpecBody::Sync {
            notes,
            strategy,
            ops,
        } => (
            MeasureKind::Sync,
            MeasureBody::Sync {
                notes: compile_notes(&spec.name, notes),
                strategy,
                ops,
            },
        ),
    };
    Measure {
        name: name.clone(),
        path: name,
        kind,
        body,
    }
}
