//! [`Cadence`]: a built, immutable, shareable workflow definition, and how to run it.

use std::future::Future;

use futures_util::FutureExt as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::builder::CadenceBuilder;
use crate::checkpoint::session::{CheckpointRunOptions, Checkpointing, RunFlags};
use crate::clock::RunTree;
use crate::cond::{Condition, Selector};
use crate::describe::Description;
use crate::engine::{End, Flow, ParentLink, RunCtx};
use crate::error::{CadenceError, MergeConflict, Problem, panic_message};
use crate::handler::{Handler, OnError};
use crate::hook::{Hook, Interest, MeasureKind, Outcome};
use crate::note::{Body, Note};
use crate::options::{RunId, RunInfo, RunOptions, RunReport, check_run_id, check_ttl};
use crate::policy::Policies;
use crate::score::{MergeStrategy, Score};

/// A note compiled into its place: name, path and policy stack fixed at `build()`.
pub(crate) struct CompiledNote<S> {
    pub(crate) name: Arc<str>,
    pub(crate) path: Arc<str>,
    pub(crate) body: Body<S>,
    pub(crate) policies: Policies<S>,
    /// The alternative note of a `Fallback::note`, compiled at `<path>/fallback`.
    pub(crate) fallback_note: Option<Box<CompiledNote<S>>>,
    /// No policies and an async body: the engine's fast path.
    pub(crate) fast: bool,
    /// Unique to this note for the life of the process, never 0 (hook occurrences carry it).
    pub(crate) key: u64,
}

impl<S> CompiledNote<S> {
    pub(crate) fn new(name: Arc<str>, path: Arc<str>, note: Note<S>) -> Self {
        let policies = note.resolved_policies();
        let fallback_note = match policies.fallback.as_ref().map(|f| &f.kind) {
            Some(crate::fallback::FallbackKind::Note(n)) => {
                let fb_path: Arc<str> = Arc::from(format!("{path}/fallback"));
                Some(Box::new(CompiledNote::new(
                    Arc::from("fallback"),
                    fb_path,
                    (**n).clone(),
                )))
            }
            _ => None,
        };
        CompiledNote {
            name,
            path,
            fast: policies.is_empty() && !note.body.is_blocking(),
            body: note.body,
            policies,
            fallback_note,
            key: next_note_key(),
        }
    }
}

/// A fresh [`CompiledNote::key`].
fn next_note_key() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub(crate) enum MeasureBody<S> {
    Note(CompiledNote<S>),
    Sequence(Box<[CompiledNote<S>]>),
    Split {
        cond: Condition<S>,
        if_true: Box<[CompiledNote<S>]>,
        if_false: Box<[CompiledNote<S>]>,
    },
    Route {
        selector: Selector<S>,
        routes: Box<[Branch<S>]>,
        default: Option<Box<[CompiledNote<S>]>>,
    },
    Child(Arc<dyn ChildRunner<S>>),
    Sync {
        notes: Box<[CompiledNote<S>]>,
        strategy: MergeStrategy<S>,
        ops: GroupOps<S>,
    },
}

/// What a parallel group needs from `S: Score`, captured where that bound is known.
pub(crate) struct GroupOps<S> {
    pub(crate) clone: fn(&S) -> S,
    pub(crate) merge: MergeFn<S>,
}

impl<S: Score> GroupOps<S> {
    pub(crate) fn new() -> Self {
        GroupOps {
            clone: S::clone,
            merge: crate::score::merge::<S>,
        }
    }
}

/// A route's key and its notes.
pub(crate) type Branch<S> = (Arc<str>, Box<[CompiledNote<S>]>);

/// Merges a group's results into the live score (PAR-7…12), monomorphized for `S: Score`.
pub(crate) type MergeFn<S> =
    fn(&MergeStrategy<S>, &mut S, Vec<S>, &[&str]) -> Result<(), MergeConflict>;

pub(crate) struct Measure<S> {
    pub(crate) name: Arc<str>,
    pub(crate) path: Arc<str>,
    pub(crate) kind: MeasureKind,
    pub(crate) body: MeasureBody<S>,
}

pub(crate) struct Inner<S> {
    pub(crate) name: Arc<str>,
    pub(crate) measures: Box<[Measure<S>]>,
    pub(crate) hooks: Option<Box<[Box<dyn Hook<S>>]>>,
    /// What the hooks want called (`Interest::NONE` without hooks), cached per interest epoch:
    /// read it with [`Inner::interest`].
    pub(crate) interest: crate::hook::InterestCache,
    pub(crate) on_error: Option<(Handler<S>, OnError)>,
    pub(crate) fingerprint: String,
    pub(crate) checkpoint: Option<Checkpointing<S>>,
    pub(crate) note_spans: bool,
    pub(crate) hook_panics: AtomicU64,
    pub(crate) warnings: Vec<Problem>,
}

impl<S> Inner<S> {
    /// What this cadence's hooks want called, as of `epoch` (see [`Interest`]).
    #[inline]
    pub(crate) fn interest(&self, epoch: u32) -> Interest {
        match self.interest.get(epoch) {
            Some(i) => i,
            None => self.reread_interest(epoch),
        }
    }

    /// Asks the hooks again. A panicking `interest` was counted when the cadence was built;
    /// asking again logs it but does not count it again.
    #[cold]
    fn reread_interest(&self, epoch: u32) -> Interest {
        let interest = match &self.hooks {
            Some(hooks) => crate::hook::interest_of(hooks).0,
            None => Interest::NONE,
        };
        self.interest.set(epoch, interest);
        interest
    }
}

/// A built workflow definition (DSL-1): immutable, cheap to clone (an `Arc` inside),
/// `Send + Sync`, holding no score. One definition serves any number of concurrent runs.
///
/// ```
/// use cadence_core::{BoxError, Cadence, note};
///
/// #[derive(Debug, Default)]
/// struct Order { items: Vec<u32>, total: u32 }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let checkout = Cadence::<Order>::new("checkout")
///     .then("fetch", note::from_fn(|o: &mut Order| Box::pin(async move {
///         o.items = vec![3, 4];
///         Ok::<_, BoxError>(())
///     })))
///     .then("total", note::from_fn(|o: &mut Order| Box::pin(async move {
///         o.total = o.items.iter().sum();
///         Ok::<_, BoxError>(())
///     })))
///     .build()?;
///
/// let order = checkout.run(Order::default()).await?;
/// assert_eq!(order.total, 7);
/// # Ok::<_, cadence_core::CadenceError>(())
/// # }).unwrap();
/// ```
pub struct Cadence<S> {
    pub(crate) inner: Arc<Inner<S>>,
}

impl<S> Clone for Cadence<S> {
    fn clone(&self) -> Self {
        Cadence {
            inner: self.inner.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Cadence<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cadence")
            .field("name", &self.inner.name)
            .field("measures", &self.inner.measures.len())
            .field("fingerprint", &self.inner.fingerprint)
            .finish_non_exhaustive()
    }
}

impl<S: Send + 'static> Cadence<S> {
    /// Starts building a cadence named `name` (DSL-1).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(name: impl Into<String>) -> CadenceBuilder<S> {
        CadenceBuilder::new(name)
    }

    /// The cadence's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The structural fingerprint (CKP-3): 32 hex digits.
    pub fn fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    /// Warnings found at `build()` (DSL-5).
    pub fn warnings(&self) -> &[Problem] {
        &self.inner.warnings
    }

    /// How many hook panics were caught in runs of this cadence (HOOK-4).
    pub fn hook_panics(&self) -> u64 {
        self.inner.hook_panics.load(Ordering::Relaxed)
    }

    /// A serializable description of the structure (DIAG-5).
    pub fn describe(&self) -> Description {
        crate::describe::describe(&self.inner)
    }

    /// A Mermaid flowchart (DIAG-1), top-down.
    pub fn to_mermaid(&self) -> String {
        self.describe().to_mermaid()
    }

    /// A Graphviz DOT digraph (DIAG-1), top-down.
    pub fn to_dot(&self) -> String {
        self.describe().to_dot()
    }

    /// A Mermaid flowchart in `direction` (DIAG-4).
    pub fn to_mermaid_with(&self, direction: crate::Direction) -> String {
        self.describe().to_mermaid_with(direction)
    }

    /// A DOT digraph with `rankdir` from `direction` (DIAG-4).
    pub fn to_dot_with(&self, direction: crate::Direction) -> String {
        self.describe().to_dot_with(direction)
    }

    /// Runs the cadence on `score` with default options (RUN-1).
    pub fn run(&self, score: S) -> impl Future<Output = Result<S, CadenceError>> + Send + '_ {
        self.run_with(score, RunOptions::default())
    }

    /// Runs the cadence on `score` with `options` (RUN-1).
    pub fn run_with(
        &self,
        score: S,
        options: RunOptions,
    ) -> impl Future<Output = Result<S, CadenceError>> + Send + '_ {
        // A combinator, not an async block: awaiting a captured future would store it twice.
        // No report either: a run id nobody read is never generated.
        self.start(score, options)
            .map(|(score, _, end, _)| match end {
                End::Succeeded | End::Partial(_) | End::Stopped { .. } => Ok(score),
                End::Failed { error, .. } => Err(error),
                End::Cancelled => Err(CadenceError::Cancelled),
            })
    }

    /// Runs the cadence and reports everything about how it ended (RUN-1, RUN-4).
    ///
    /// The future is `Send` and borrows the cadence; clone the cadence (cheap) to move a run
    /// into `tokio::spawn`.
    pub fn run_with_report(
        &self,
        score: S,
        options: RunOptions,
    ) -> impl Future<Output = RunReport<S>> + Send + '_ {
        self.start(score, options)
            .map(|(score, run_id, end, flags)| {
                let mut r = report(score, run_id.into_string(), end);
                r.resumed = flags.resumed.into_inner();
                r.replayed = flags.replayed.into_inner();
                r
            })
    }

    /// One run, from the options a caller gave to how it ended.
    fn start(
        &self,
        mut score: S,
        options: RunOptions,
    ) -> impl Future<Output = (S, RunId, End, RunFlags)> + Send + '_ {
        // Only what the run needs is kept in its future (the hot path keeps futures small),
        // and nothing captured is moved again inside it (that would store it twice).
        let RunOptions {
            run_id,
            trace,
            allow_fingerprint_mismatch,
            cancellation,
            retain_outcome,
        } = options;
        let checkpointing = self.inner.checkpoint.is_some();
        let (run_id, invalid) = match run_id {
            None if checkpointing => (
                RunId::given(String::new()),
                Some(Box::new(CadenceError::validation(
                    "",
                    "this cadence checkpoints; pass a run id via RunOptions::with_run_id",
                ))),
            ),
            None => (RunId::lazy(), None),
            Some(id) => {
                let invalid = check_run_id(&id).err().map(Box::new);
                (RunId::given(id), invalid)
            }
        };
        let invalid = invalid.or_else(|| {
            let problem = check_ttl("retained outcome's ttl", retain_outcome?)?;
            Some(Box::new(CadenceError::Validation {
                problems: vec![problem],
            }))
        });
        let ckpt_opts = checkpointing.then(|| {
            Box::new(CheckpointRunOptions {
                allow_fingerprint_mismatch,
                trace,
                retain_outcome,
            })
        });
        async move {
            let flags = RunFlags::default();
            if let Some(e) = invalid {
                // RUN-2: before any hook.
                return (score, run_id, End::failed(*e), flags);
            }
            let epoch = crate::hook::interest_epoch();
            let tree = RunTree::default();
            let end = {
                let rc = RunCtx {
                    inner: &self.inner,
                    info: RunInfo {
                        run_id: &run_id,
                        root_run_id: &run_id,
                        parent_run_id: None,
                        cadence: &self.inner.name,
                        prefix: None,
                        token: cancellation.as_ref(),
                    },
                    tree: &tree,
                    upstream: None,
                    interest: self.inner.interest(epoch),
                    epoch,
                    ckpt: None,
                    flags: Some(&flags),
                };
                match (&self.inner.checkpoint, ckpt_opts) {
                    (Some(cfg), Some(mut opts)) => {
                        let run: Pin<Box<dyn Future<Output = End> + Send + '_>> =
                            Box::pin(rc.execute_checkpointed(cfg, &mut score, &mut opts));
                        run.await
                    }
                    _ => rc.execute(&mut score).await,
                }
            };
            (score, run_id, end, flags)
        }
    }
}

fn report<S>(score: S, run_id: String, end: End) -> RunReport<S> {
    let (outcome, failed_measures, error) = match end {
        End::Succeeded => (Outcome::Succeeded, Vec::new(), None),
        End::Partial(failed) => (Outcome::Partial, failed, None),
        End::Stopped { .. } => (Outcome::Stopped, Vec::new(), None),
        End::Failed { error, measure } => {
            (Outcome::Failed, measure.into_iter().collect(), Some(error))
        }
        End::Cancelled => (
            Outcome::Cancelled,
            Vec::new(),
            Some(CadenceError::Cancelled),
        ),
    };
    RunReport {
        score,
        run_id,
        outcome,
        failed_measures,
        resumed: false,
        replayed: false,
        error,
    }
}

pub(crate) type ChildFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Flow, CadenceError>> + Send + 'a>>;

/// A child measure, type-erased over the child's score type.
pub(crate) trait ChildRunner<P>: Send + Sync {
    fn run<'a>(&'a self, rc: &'a RunCtx<'a, P>, path: &'a str, score: &'a mut P)
    -> ChildFuture<'a>;
    fn has_own_checkpoint(&self) -> bool;
    fn describe(&self) -> Description;
}

pub(crate) struct ChildMeasure<C, I, M> {
    pub(crate) cadence: Cadence<C>,
    pub(crate) into_child: I,
    pub(crate) merge: M,
}

impl<P, C, I, M> ChildRunner<P> for ChildMeasure<C, I, M>
where
    P: Send + Sync + 'static,
    C: Send + 'static,
    I: Fn(&P) -> C + Send + Sync + 'static,
    M: Fn(&mut P, C) + Send + Sync + 'static,
{
    fn run<'a>(
        &'a self,
        rc: &'a RunCtx<'a, P>,
        path: &'a str,
        score: &'a mut P,
    ) -> ChildFuture<'a> {
        Box::pin(async move {
            let panicked = |payload: Box<dyn std::any::Any + Send>| CadenceError::Panicked {
                path: rc.full_path(path).into_owned(),
                message: panic_message(payload.as_ref()),
            };
            // CHILD-1: every execution starts from into_child. CHILD-6: a panic fails the measure.
            let mut child = {
                let parent: &P = score;
                catch_unwind(AssertUnwindSafe(|| (self.into_child)(parent))).map_err(panicked)?
            };
            let child_run_id = RunId::given(format!("{}/{}", rc.info.run_id.get(), path));
            let prefix = rc.full_path(path).into_owned();
            let epoch = crate::hook::interest_epoch();
            let own = self.cadence.inner.interest(epoch);
            let end = {
                let link = ParentLink {
                    inner: rc.inner,
                    score: &*score,
                    up: rc.upstream,
                };
                let crc = RunCtx {
                    inner: &self.cadence.inner,
                    info: RunInfo {
                        run_id: &child_run_id,
                        root_run_id: rc.info.root_run_id,
                        parent_run_id: Some(rc.info.run_id),
                        cadence: &self.cadence.inner.name,
                        prefix: Some(&prefix),
                        token: rc.info.token,
                    },
                    tree: rc.tree,
                    upstream: Some(&link),
                    interest: rc.interest_at(epoch).union(own),
                    epoch,
                    // CHILD-5: a child is one unit of its parent's checkpoint.
                    ckpt: None,
                    flags: None,
                };
                crc.execute(&mut child).await
            };
            match end {
                // CHILD-4: a stop inside the child ends only the child.
                End::Succeeded | End::Partial(_) | End::Stopped { .. } => {
                    catch_unwind(AssertUnwindSafe(|| (self.merge)(score, child)))
                        .map_err(panicked)?;
                    Ok(Flow::Continue)
                }
                End::Failed { error, .. } => Err(error),
                End::Cancelled => Err(CadenceError::Cancelled),
            }
        })
    }

    fn has_own_checkpoint(&self) -> bool {
        self.cadence.inner.checkpoint.is_some()
    }

    fn describe(&self) -> Description {
        self.cadence.describe()
    }
}
