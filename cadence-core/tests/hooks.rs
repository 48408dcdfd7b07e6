//! Hooks: HOOK-1…5 (retry, timeout, fallback, circuit, checkpoint and parallel orders are out
//! of scope).

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cadence_core::testing::{Call, RecordingHook};
use cadence_core::{
    BoxError, Cadence, CadenceError, Hook, HookContext, MeasureKind, MeasureOutcome, NoteOutcome,
    OnError, RunOptions, RunOutcome, note,
};
use common::*;

// ---------------------------------------------------------------- HOOK-1

struct Nop;
impl<S> Hook<S> for Nop {}

#[tokio::test]
async fn every_hook_method_has_an_empty_default() {
    // HOOK-1: every method has an empty default; `()` is a hook too.
    let c = Cadence::<Log>::new("nop")
        .then("a", push("a"))
        .split("s", |_: &Log| true, [push("t")], none())
        .with_hooks(Nop)
        .with_hooks(())
        .build()
        .unwrap();
    assert_eq!(c.run(vec![]).await.unwrap(), ["a", "t"]);
    assert_eq!(c.hook_panics(), 0);
}

#[derive(Debug, Clone, PartialEq)]
struct Occurrence {
    tag: &'static str,
    seq: u64,
    run_id: String,
    root: String,
    parent: Option<String>,
    cadence: String,
    what: String,
}

/// Records each call's occurrence context.
#[derive(Clone)]
struct CtxHook {
    tag: &'static str,
    out: Arc<Mutex<Vec<Occurrence>>>,
}

impl CtxHook {
    fn rec(&self, cx: &HookContext<'_>, what: String) {
        // HOOK-1: `at` is read once and shared.
        assert_eq!(cx.at(), cx.at());
        self.out.lock().unwrap().push(Occurrence {
            tag: self.tag,
            seq: cx.seq(),
            run_id: cx.run_id().to_owned(),
            root: cx.root_run_id().to_owned(),
            parent: cx.parent_run_id().map(str::to_owned),
            cadence: cx.cadence().to_owned(),
            what,
        });
    }
}

impl<S> Hook<S> for CtxHook {
    fn on_cadence_start(&self, cx: &HookContext<'_>, _: &S) {
        self.rec(cx, "cadence_start".into());
    }
    fn on_cadence_end(&self, cx: &HookContext<'_>, _: &S, _: Duration, _: &RunOutcome<'_>) {
        self.rec(cx, "cadence_end".into());
    }
    fn on_measure_start(&self, cx: &HookContext<'_>, p: &str, _: MeasureKind) {
        self.rec(cx, format!("measure_start {p}"));
    }
    fn on_measure_end(&self, cx: &HookContext<'_>, p: &str, _: Duration, _: &MeasureOutcome<'_>) {
        self.rec(cx, format!("measure_end {p}"));
    }
    fn on_note_start(&self, cx: &HookContext<'_>, p: &str, _: u32, _: &S) {
        self.rec(cx, format!("note_start {p}"));
    }
    fn on_note_end(
        &self,
        cx: &HookContext<'_>,
        p: &str,
        _: u32,
        _: Duration,
        _: &NoteOutcome<'_>,
        _: &S,
    ) {
        self.rec(cx, format!("note_end {p}"));
    }
    fn on_branch_taken(&self, cx: &HookContext<'_>, p: &str, b: &str, _: &str) {
        self.rec(cx, format!("branch_taken {p} {b}"));
    }
}

#[tokio::test]
async fn seq_numbers_the_whole_run_tree_and_is_shared_per_occurrence() {
    // HOOK-1 (EVT-3): seq counts occurrences of one run tree from 0 by 1, a child continuing
    // the parent's sequence; every hook of one occurrence sees the same seq and context.
    let out = Arc::new(Mutex::new(Vec::new()));
    let h = |tag| CtxHook {
        tag,
        out: out.clone(),
    };
    let child = Cadence::<Log>::new("kid")
        .then("c", push("c"))
        .with_hooks(h("child"))
        .build()
        .unwrap();
    let c = Cadence::<Log>::new("root")
        .then("a", push("a"))
        .child("sub", child, |_: &Log| vec![], |l, c| l.extend(c))
        .split("s", |_: &Log| true, [push("t")], none())
        .with_hooks((h("p1"), h("p2")))
        .build()
        .unwrap();
    c.run_with(vec![], RunOptions::default().with_run_id("R"))
        .await
        .unwrap();
    let all = out.lock().unwrap().clone();
    // Group by seq: each seq has p1, p2 (and child for child occurrences), identical context.
    let max = all.iter().map(|o| o.seq).max().unwrap();
    let mut expected_seq = 0;
    let mut i = 0;
    while i < all.len() {
        let seq = all[i].seq;
        assert_eq!(seq, expected_seq, "seq must increase by 1: {all:#?}");
        let group: Vec<&Occurrence> = all.iter().filter(|o| o.seq == seq).collect();
        let tags: Vec<&str> = group.iter().map(|o| o.tag).collect();
        let is_child = group[0].cadence == "kid";
        if is_child {
            assert_eq!(tags, ["p1", "p2", "child"], "seq {seq}");
        } else {
            assert_eq!(tags, ["p1", "p2"], "seq {seq}");
        }
        for o in &group {
            assert_eq!(
                (&o.run_id, &o.root, &o.parent, &o.cadence, &o.what),
                (
                    &group[0].run_id,
                    &group[0].root,
                    &group[0].parent,
                    &group[0].cadence,
                    &group[0].what
                )
            );
            assert_eq!(o.root, "R");
            if is_child {
                assert_eq!(o.run_id, "R/sub");
                assert_eq!(o.parent.as_deref(), Some("R"));
            } else {
                assert_eq!(o.run_id, "R");
                assert_eq!(o.parent, None);
            }
        }
        i += group.len();
        expected_seq += 1;
    }
    assert_eq!(max + 1, expected_seq);
    // 1 + 4 (a) + 1 (measure_start sub) + 6 (child run) + 1 + 5 (split) + 1 (end)
    assert_eq!(expected_seq, 19);

    // A second run starts again at 0.
    out.lock().unwrap().clear();
    c.run(vec![]).await.unwrap();
    assert_eq!(out.lock().unwrap()[0].seq, 0);
}

/// Records the score each hook sees (its length), durations and outcome details.
#[derive(Clone, Default)]
struct Detail(Shared);

impl Hook<Log> for Detail {
    fn on_cadence_start(&self, _: &HookContext<'_>, s: &Log) {
        self.0.push(format!("cadence_start len={}", s.len()));
    }
    fn on_cadence_end(&self, _: &HookContext<'_>, s: &Log, d: Duration, o: &RunOutcome<'_>) {
        let o = match o {
            RunOutcome::Succeeded => "succeeded".to_owned(),
            RunOutcome::Partial { failed_measures } => format!("partial {failed_measures:?}"),
            RunOutcome::Stopped { path, reason } => format!("stopped {path} {reason:?}"),
            RunOutcome::Failed(e) => format!("failed {}", e.path().unwrap_or("")),
            RunOutcome::Cancelled => "cancelled".to_owned(),
            _ => "other".to_owned(),
        };
        self.0.push(format!(
            "cadence_end len={} {}ms {o}",
            s.len(),
            d.as_millis()
        ));
    }
    fn on_measure_start(&self, _: &HookContext<'_>, p: &str, k: MeasureKind) {
        self.0.push(format!("measure_start {p} {}", k.as_str()));
    }
    fn on_measure_end(&self, _: &HookContext<'_>, p: &str, d: Duration, o: &MeasureOutcome<'_>) {
        let o = match o {
            MeasureOutcome::Failed(e) => format!("failed {}", e.kind()),
            MeasureOutcome::Succeeded => "succeeded".into(),
            other => format!("{other:?}"),
        };
        self.0
            .push(format!("measure_end {p} {}ms {o}", d.as_millis()));
    }
    fn on_note_start(&self, _: &HookContext<'_>, p: &str, a: u32, s: &Log) {
        self.0.push(format!("note_start {p}#{a} len={}", s.len()));
    }
    fn on_note_end(
        &self,
        _: &HookContext<'_>,
        p: &str,
        a: u32,
        d: Duration,
        o: &NoteOutcome<'_>,
        s: &Log,
    ) {
        let o = match o {
            NoteOutcome::Failed(e) => format!("failed at {}", e.path().unwrap_or("")),
            NoteOutcome::Succeeded => "succeeded".into(),
            other => format!("{other:?}"),
        };
        self.0.push(format!(
            "note_end {p}#{a} {}ms len={} {o}",
            d.as_millis(),
            s.len()
        ));
    }
    fn on_branch_taken(&self, _: &HookContext<'_>, p: &str, b: &str, k: &str) {
        self.0.push(format!("branch_taken {p} {b} {k}"));
    }
}

#[tokio::test(start_paused = true)]
async fn hooks_get_scores_durations_kinds_and_outcomes() {
    // HOOK-1: arguments: scores (before/after), kinds, durations (tokio time, GEN-3),
    // outcomes with their errors.
    let d = Detail::default();
    let c = Cadence::<Log>::new("detail")
        .then("a", sleeps("a", 10))
        .sequence("s", [push("s0"), sleeps("s1", 5)])
        .route_or("r", |_: &Log| "x", [("k", [push("k")])], [push("d")])
        .then("bad", fail("bad", "boom"))
        .on_error(|_: &mut Log, _: &CadenceError| (), OnError::Continue)
        .with_hooks(d.clone())
        .build()
        .unwrap();
    c.run(vec!["seed".into()]).await.unwrap();
    assert_eq!(
        d.0.get(),
        [
            "cadence_start len=1",
            "measure_start a note",
            "note_start a#1 len=1",
            "note_end a#1 10ms len=3 succeeded",
            "measure_end a 10ms succeeded",
            "measure_start s sequence",
            "note_start s/0#1 len=3",
            "note_end s/0#1 0ms len=4 succeeded",
            "note_start s/1#1 len=4",
            "note_end s/1#1 5ms len=6 succeeded",
            "measure_end s 5ms succeeded",
            "measure_start r route",
            "branch_taken r * x",
            "note_start r/*/0#1 len=6",
            "note_end r/*/0#1 0ms len=7 succeeded",
            "measure_end r 0ms succeeded",
            "measure_start bad note",
            "note_start bad#1 len=7",
            "note_end bad#1 0ms len=8 failed at bad",
            "measure_end bad 0ms failed note",
            "cadence_end len=8 15ms partial [\"bad\"]",
        ]
    );
}

#[tokio::test]
async fn measure_kinds_for_split_and_child() {
    // HOOK-1: on_measure_start's kind.
    let rec = RecordingHook::new();
    let c = Cadence::<Log>::new("kinds")
        .split("sp", |_: &Log| true, [push("t")], none())
        .child(
            "ch",
            Cadence::<Log>::new("k")
                .then("x", push("x"))
                .build()
                .unwrap(),
            |_: &Log| vec![],
            |l, c| l.extend(c),
        )
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    c.run(vec![]).await.unwrap();
    let kinds: Vec<(String, MeasureKind)> = rec
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::MeasureStart(p, k) => Some((p, k)),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("sp".to_owned(), MeasureKind::Split),
            ("ch".to_owned(), MeasureKind::Child),
            ("x".to_owned(), MeasureKind::Note),
        ]
    );
}

#[tokio::test]
async fn stopped_outcome_carries_full_path_and_reason() {
    // HOOK-1: RunOutcome::Stopped { path, reason }.
    let d = Detail::default();
    let c = Cadence::<Log>::new("st")
        .sequence("g", [push("a"), stop("b", "because")])
        .with_hooks(d.clone())
        .build()
        .unwrap();
    c.run(vec![]).await.unwrap();
    assert_eq!(
        d.0.get().last().unwrap(),
        "cadence_end len=2 0ms stopped g/1 Some(\"because\")"
    );
}

// ---------------------------------------------------------------- HOOK-2

#[tokio::test]
async fn hooks_run_inline_around_the_note() {
    // HOOK-2: hooks run inline on the note's path: note_start before the body, note_end
    // right after it.
    let log = Shared::new();
    let l2 = log.clone();
    let c = Cadence::<Log>::new("inline")
        .then(
            "a",
            note::from_fn(move |_: &mut Log| {
                let l = l2.clone();
                Box::pin(async move {
                    l.push("body start");
                    tokio::task::yield_now().await;
                    l.push("body end");
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .with_hooks(Tagged::new("hook", &log))
        .build()
        .unwrap();
    c.run(vec![]).await.unwrap();
    assert_eq!(
        log.get(),
        [
            "hook cadence_start inline",
            "hook measure_start a",
            "hook note_start a",
            "body start",
            "body end",
            "hook note_end a Succeeded",
            "hook cadence_end inline succeeded",
        ]
    );
}

/// Records the name of the current tracing span in run-level and note-level hooks.
#[derive(Clone, Default)]
struct SpanHook(Shared);

fn current_span() -> String {
    tracing::Span::current()
        .metadata()
        .map(|m| m.name().to_owned())
        .unwrap_or_else(|| "none".into())
}

impl<S> Hook<S> for SpanHook {
    fn on_cadence_start(&self, _: &HookContext<'_>, _: &S) {
        self.0.push(format!("cadence_start {}", current_span()));
    }
    fn on_cadence_end(&self, _: &HookContext<'_>, _: &S, _: Duration, _: &RunOutcome<'_>) {
        self.0.push(format!("cadence_end {}", current_span()));
    }
    fn on_note_start(&self, _: &HookContext<'_>, p: &str, _: u32, _: &S) {
        self.0.push(format!("note_start {p} {}", current_span()));
    }
    fn on_note_end(
        &self,
        _: &HookContext<'_>,
        p: &str,
        _: u32,
        _: Duration,
        _: &NoteOutcome<'_>,
        _: &S,
    ) {
        self.0.push(format!("note_end {p} {}", current_span()));
    }
}

#[tokio::test]
async fn hooks_run_inside_the_run_and_note_spans() {
    // HOOK-2: run-level hooks inside the run's span, note-level hooks inside the note's span.
    install_capturing_subscriber();
    let h = SpanHook::default();
    let c = Cadence::<Log>::new("spans")
        .then("a", push("a"))
        .sequence("s", [push("b")])
        .with_hooks(h.clone())
        .build()
        .unwrap();
    c.run(vec![]).await.unwrap();
    assert_eq!(
        h.0.get(),
        [
            "cadence_start cadence.run",
            "note_start a cadence.note",
            "note_end a cadence.note",
            "note_start s/0 cadence.note",
            "note_end s/0 cadence.note",
            "cadence_end cadence.run",
        ]
    );
}

// ---------------------------------------------------------------- HOOK-3

#[tokio::test]
async fn composition_calls_elements_left_to_right_in_registration_order() {
    // HOOK-3: tuples, Vec, Option, Arc, Box<dyn Hook<S>>; elements left to right,
    // registrations in with_hooks order.
    let log = Shared::new();
    let t = |tag| Tagged::new(tag, &log);
    let boxed: Box<dyn Hook<Log>> = Box::new(t("box"));
    let arc_dyn: Arc<dyn Hook<Log>> = Arc::new(t("arcdyn"));
    let c = Cadence::<Log>::new("comp")
        .then("a", push("a"))
        .with_hooks((t("t1"), t("t2"), t("t3")))
        .with_hooks(vec![t("v1"), t("v2")])
        .with_hooks(Some(t("some")))
        .with_hooks(None::<Tagged>)
        .with_hooks(Arc::new(t("arc")))
        .with_hooks(boxed)
        .with_hooks(arc_dyn)
        .with_hooks((
            vec![Some(t("n1")), None, Some(t("n2"))],
            Arc::new((t("n3"),)),
        ))
        .build()
        .unwrap();
    c.run(vec![]).await.unwrap();
    let order = [
        "t1", "t2", "t3", "v1", "v2", "some", "arc", "box", "arcdyn", "n1", "n2", "n3",
    ];
    let lines = log.get();
    assert_eq!(lines.len(), order.len() * 5, "{lines:#?}");
    for (i, chunk) in lines.chunks(order.len()).enumerate() {
        let tags: Vec<&str> = chunk.iter().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(tags, order, "occurrence {i}");
        let rest: Vec<&str> = chunk.iter().map(|l| l.split_once(' ').unwrap().1).collect();
        assert!(
            rest.iter().all(|r| *r == rest[0]),
            "occurrence {i}: {chunk:?}"
        );
    }
}

#[tokio::test]
async fn eight_tuples_are_hooks() {
    // HOOK-3: tuples up to 8.
    let log = Shared::new();
    let t = |tag| Tagged::new(tag, &log);
    let c = Cadence::<Log>::new("eight")
        .then("a", push("a"))
        .with_hooks((
            t("1"),
            t("2"),
            t("3"),
            t("4"),
            t("5"),
            t("6"),
            t("7"),
            t("8"),
        ))
        .build()
        .unwrap();
    c.run(vec![]).await.unwrap();
    let first: Vec<String> = log.get().into_iter().take(8).collect();
    assert_eq!(
        first,
        (1..=8)
            .map(|i| format!("{i} cadence_start eight"))
            .collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------- HOOK-4

/// Panics in the chosen methods, counting every call it gets.
#[derive(Clone)]
struct Panicker {
    on: &'static [&'static str],
    calls: Arc<AtomicUsize>,
}

impl Panicker {
    fn new(on: &'static [&'static str]) -> Self {
        Panicker {
            on,
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }
    fn maybe(&self, method: &str) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.on.contains(&method) {
            panic!("hook panic in {method}");
        }
    }
}

impl<S> Hook<S> for Panicker {
    fn on_cadence_start(&self, _: &HookContext<'_>, _: &S) {
        self.maybe("on_cadence_start");
    }
    fn on_cadence_end(&self, _: &HookContext<'_>, _: &S, _: Duration, _: &RunOutcome<'_>) {
        self.maybe("on_cadence_end");
    }
    fn on_measure_start(&self, _: &HookContext<'_>, _: &str, _: MeasureKind) {
        self.maybe("on_measure_start");
    }
    fn on_measure_end(&self, _: &HookContext<'_>, _: &str, _: Duration, _: &MeasureOutcome<'_>) {
        self.maybe("on_measure_end");
    }
    fn on_note_start(&self, _: &HookContext<'_>, _: &str, _: u32, _: &S) {
        self.maybe("on_note_start");
    }
    fn on_note_end(
        &self,
        _: &HookContext<'_>,
        _: &str,
        _: u32,
        _: Duration,
        _: &NoteOutcome<'_>,
        _: &S,
    ) {
        self.maybe("on_note_end");
    }
    fn on_branch_taken(&self, _: &HookContext<'_>, _: &str, _: &str, _: &str) {
        self.maybe("on_branch_taken");
    }
}

const ALL: &[&str] = &[
    "on_cadence_start",
    "on_cadence_end",
    "on_measure_start",
    "on_measure_end",
    "on_note_start",
    "on_note_end",
    "on_branch_taken",
];

#[tokio::test]
async fn a_panicking_hook_does_not_affect_the_run_or_other_hooks() {
    // HOOK-4, GEN-5: a hook panic is caught per leaf hook and counted; the run is unaffected;
    // other hooks in the same tuple are still called; the panicking hook is not called again
    // for the same occurrence.
    let rec = RecordingHook::new();
    let p = Panicker::new(ALL);
    let c = Cadence::<Log>::new("hp")
        .then("a", push("a"))
        .split("s", |_: &Log| true, [push("t")], none())
        .with_hooks((p.clone(), rec.clone()))
        .build()
        .unwrap();
    let out = c.run(vec![]).await.unwrap();
    assert_eq!(out, ["a", "t"]);
    let lines = rec.lines();
    assert_eq!(lines.len(), 11, "{lines:#?}");
    assert_eq!(lines.last().unwrap(), "cadence_end Succeeded");
    assert_eq!(
        p.calls.load(Ordering::SeqCst),
        11,
        "called once per occurrence"
    );
    assert_eq!(c.hook_panics(), 11);
    // Counting accumulates over runs.
    c.run(vec![]).await.unwrap();
    assert_eq!(c.hook_panics(), 22);
}

#[tokio::test]
async fn hook_panics_on_failure_and_stop_paths_do_not_change_the_result() {
    // HOOK-4: also when the run fails or stops.
    let p = Panicker::new(ALL);
    let c = Cadence::<Log>::new("hp")
        .then("bad", fail("bad", "real error"))
        .with_hooks(p.clone())
        .build()
        .unwrap();
    let e = c.run(vec![]).await.unwrap_err();
    assert!(e.to_string().contains("real error"));
    assert_eq!(c.hook_panics(), 6);

    let c = Cadence::<Log>::new("hp")
        .then("halt", stop("halt", "r"))
        .then("never", push("never"))
        .with_hooks(p)
        .build()
        .unwrap();
    assert_eq!(c.run(vec![]).await.unwrap(), ["halt"]);
    assert_eq!(c.hook_panics(), 6);
}

#[tokio::test]
async fn combinators_isolate_and_count_each_leaf_once() {
    // HOOK-4: combinators isolate their elements; each leaf panic is counted exactly once.
    let rec = RecordingHook::new();
    let only_note_start: &'static [&'static str] = &["on_note_start"];
    let c = Cadence::<Log>::new("hp")
        .sequence("s", [push("a"), push("b")])
        .with_hooks(vec![
            Panicker::new(only_note_start),
            Panicker::new(only_note_start),
        ])
        .with_hooks(Arc::new((Panicker::new(only_note_start), rec.clone())))
        .with_hooks(Box::new(Some(Panicker::new(only_note_start))) as Box<dyn Hook<Log>>)
        .build()
        .unwrap();
    assert_eq!(c.run(vec![]).await.unwrap(), ["a", "b"]);
    // 4 panicking leaves × 2 note starts.
    assert_eq!(c.hook_panics(), 8);
    // The recorder sharing a tuple with a panicking hook saw everything.
    assert_eq!(rec.lines().len(), 8);
}

#[tokio::test]
async fn hook_panics_in_child_runs_are_caught() {
    // HOOK-4, CHILD-3: panics in the parent's hooks (on child occurrences) and in the child's
    // own hooks are caught and counted; the run is unaffected.
    let rec = RecordingHook::new();
    let child = Cadence::<Log>::new("kid")
        .then("c", push("c"))
        .with_hooks(Panicker::new(ALL))
        .build()
        .unwrap();
    let c = Cadence::<Log>::new("root")
        .child("sub", child.clone(), |_: &Log| vec![], |l, c| l.extend(c))
        .with_hooks((Panicker::new(ALL), rec.clone()))
        .build()
        .unwrap();
    assert_eq!(c.run(vec![]).await.unwrap(), ["c"]);
    // The parent's hook: 4 own occurrences + 6 child occurrences.
    assert_eq!(rec.lines().len(), 10);
    // The child's hook: 6 child occurrences. Each panic counted once, on one of the two.
    assert_eq!(c.hook_panics() + child.hook_panics(), 16);
    assert!(
        c.hook_panics() >= 10,
        "the parent's own hook panics count on the parent"
    );
}

thread_local! {
    static CAPTURED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A `tracing` writer into the emitting thread's buffer (each test reads its own output).
struct ThreadBuf;

impl Write for ThreadBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        CAPTURED.with(|c| c.borrow_mut().extend_from_slice(b));
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs one global fmt subscriber for this test binary. A global one (rather than
/// per-test `set_default`) keeps tracing's process-wide interest cache consistent while
/// tests run in parallel threads.
fn install_capturing_subscriber() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(|| ThreadBuf)
            .finish();
        tracing::subscriber::set_global_default(sub).unwrap();
    });
    tracing::callsite::rebuild_interest_cache();
    CAPTURED.with(|c| c.borrow_mut().clear());
}

#[tokio::test]
async fn hook_panics_are_logged_at_error_level_with_the_method() {
    // HOOK-4: logged at error level with the method name.
    install_capturing_subscriber();
    let c = Cadence::<Log>::new("logged")
        .then("a", push("a"))
        .with_hooks(Panicker::new(&["on_note_end"]))
        .build()
        .unwrap();
    c.run(vec![]).await.unwrap();
    let text = CAPTURED.with(|c| String::from_utf8(c.borrow().clone()).unwrap());
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("on_note_end"), "{}", lines[0]);
    assert!(
        lines[0].contains("hook panic in on_note_end"),
        "{}",
        lines[0]
    );
}

// ---------------------------------------------------------------- HOOK-5

async fn lines_of(c: &Cadence<Log>, rec: &RecordingHook) -> Vec<String> {
    rec.clear();
    let _ = c.run_with_report(vec![], RunOptions::default()).await;
    rec.lines()
}

#[tokio::test]
async fn call_order_success() {
    // HOOK-5 success.
    let rec = RecordingHook::new();
    let c = Cadence::<Log>::new("ok")
        .then("a", push("a"))
        .sequence("b", [push("b0"), push("b1")])
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    assert_eq!(
        lines_of(&c, &rec).await,
        [
            "cadence_start",
            "measure_start a",
            "note_start a#1",
            "note_end a#1 Succeeded",
            "measure_end a Succeeded",
            "measure_start b",
            "note_start b/0#1",
            "note_end b/0#1 Succeeded",
            "note_start b/1#1",
            "note_end b/1#1 Succeeded",
            "measure_end b Succeeded",
            "cadence_end Succeeded",
        ]
    );
}

#[tokio::test]
async fn call_order_failure() {
    // HOOK-5 failure.
    let rec = RecordingHook::new();
    let c = Cadence::<Log>::new("f")
        .then("a", fail("a", "x"))
        .then("b", push("b"))
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    assert_eq!(
        lines_of(&c, &rec).await,
        [
            "cadence_start",
            "measure_start a",
            "note_start a#1",
            "note_end a#1 Failed",
            "measure_end a Failed",
            "cadence_end Failed",
        ]
    );
}

fn with_handler(
    mode: OnError,
    rec: &RecordingHook,
    marks: &Arc<Mutex<Vec<usize>>>,
) -> Cadence<Log> {
    let (r, m) = (rec.clone(), marks.clone());
    Cadence::<Log>::new("h")
        .then("a", fail("a", "x"))
        .then("b", push("b"))
        .on_error(
            // Marks where the handler ran: how many hook calls had happened by then.
            move |_: &mut Log, _: &CadenceError| m.lock().unwrap().push(r.lines().len()),
            mode,
        )
        .with_hooks(rec.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn call_order_handler_stop_and_continue() {
    // HOOK-5 handler: … measure_end a Failed · ⟨handler⟩ · Stop: cadence_end Failed
    //                                               | Continue: measure_start b … cadence_end Partial
    for (mode, tail) in [
        (OnError::Stop, vec!["cadence_end Failed"]),
        (
            OnError::Continue,
            vec![
                "measure_start b",
                "note_start b#1",
                "note_end b#1 Succeeded",
                "measure_end b Succeeded",
                "cadence_end Partial",
            ],
        ),
    ] {
        let rec = RecordingHook::new();
        let marks = Arc::new(Mutex::new(Vec::new()));
        let c = with_handler(mode, &rec, &marks);
        let mut lines = lines_of(&c, &rec).await;
        let at = marks.lock().unwrap().clone();
        assert_eq!(at.len(), 1, "{mode:?}");
        lines.insert(at[0], "⟨handler⟩".into());
        let mut expected = vec![
            "cadence_start",
            "measure_start a",
            "note_start a#1",
            "note_end a#1 Failed",
            "measure_end a Failed",
            "⟨handler⟩",
        ];
        expected.extend(tail);
        assert_eq!(lines, expected, "{mode:?}");
    }
}

#[tokio::test]
async fn call_order_branch() {
    // HOOK-5 branch: measure_start r · branch_taken r true · note_start r/true/n#1 … ·
    // measure_end r
    let rec = RecordingHook::new();
    let c = Cadence::<Log>::new("br")
        .split("r", |_: &Log| true, [note::named("n", push("n"))], none())
        .route("q", |_: &Log| "k", [("k", [push("k0")])])
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    assert_eq!(
        lines_of(&c, &rec).await,
        [
            "cadence_start",
            "measure_start r",
            "branch_taken r true",
            "note_start r/true/n#1",
            "note_end r/true/n#1 Succeeded",
            "measure_end r Succeeded",
            "measure_start q",
            "branch_taken q k",
            "note_start q/k/0#1",
            "note_end q/k/0#1 Succeeded",
            "measure_end q Succeeded",
            "cadence_end Succeeded",
        ]
    );
}

#[tokio::test]
async fn call_order_child() {
    // HOOK-5 child: measure_start c · ⟨child run: cadence_start … cadence_end⟩ · measure_end c
    let rec = RecordingHook::new();
    let child = Cadence::<Log>::new("kid")
        .then("x", push("x"))
        .build()
        .unwrap();
    let c = Cadence::<Log>::new("parent")
        .child("c", child, |_: &Log| vec![], |l, c| l.extend(c))
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    assert_eq!(
        lines_of(&c, &rec).await,
        [
            "cadence_start",
            "measure_start c",
            "cadence_start",
            "measure_start x",
            "note_start x#1",
            "note_end x#1 Succeeded",
            "measure_end x Succeeded",
            "cadence_end Succeeded",
            "measure_end c Succeeded",
            "cadence_end Succeeded",
        ]
    );
    let cadences: Vec<String> = rec.entries().into_iter().map(|e| e.cadence).collect();
    assert_eq!(
        cadences,
        [
            "parent", "parent", "kid", "kid", "kid", "kid", "kid", "kid", "parent", "parent"
        ]
    );
}

#[tokio::test]
async fn call_order_stop() {
    // HOOK-5 stop: note_end a#1 Stopped · measure_end a Stopped · cadence_end Stopped
    let rec = RecordingHook::new();
    let c = Cadence::<Log>::new("st")
        .then("a", stop("a", "r"))
        .then("b", push("b"))
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    assert_eq!(
        lines_of(&c, &rec).await,
        [
            "cadence_start",
            "measure_start a",
            "note_start a#1",
            "note_end a#1 Stopped",
            "measure_end a Stopped",
            "cadence_end Stopped",
        ]
    );
}

#[test]
fn trace_context_comes_from_the_first_hook_that_has_one() {
    // HOOK-1, HOOK-3: `trace_context()`: the first hook (left to right) returning one wins.
    use cadence_core::TraceContext;
    let tc = |s: &str| TraceContext::new(format!("00-{s}-01"));
    let none = RecordingHook::new();
    let first = RecordingHook::new().with_trace_context(tc("first"));
    let second = RecordingHook::new().with_trace_context(tc("second"));
    let tuple = (none.clone(), first.clone(), second.clone());
    assert_eq!(Hook::<Log>::trace_context(&tuple), Some(tc("first")));
    let v = vec![none.clone(), second.clone(), first.clone()];
    assert_eq!(Hook::<Log>::trace_context(&v), Some(tc("second")));
    assert_eq!(Hook::<Log>::trace_context(&None::<RecordingHook>), None);
    assert_eq!(Hook::<Log>::trace_context(&(none.clone(), Nop)), None);
    let boxed: Box<dyn Hook<Log>> = Box::new((Nop, Arc::new(first)));
    assert_eq!(boxed.trace_context(), Some(tc("first")));
}

#[tokio::test(start_paused = true)]
async fn panicking_hooks_while_a_dropped_run_reports_cancellation() {
    // HOOK-4, RUN-5: the Cancelled ends reported from a dropped run future are isolated too.
    let rec = RecordingHook::new();
    let c = Cadence::<Log>::new("drop")
        .then("slow", sleeps("slow", 100))
        .with_hooks((Panicker::new(ALL), rec.clone()))
        .build()
        .unwrap();
    let r = tokio::time::timeout(Duration::from_millis(10), c.run(vec![])).await;
    assert!(r.is_err());
    assert_eq!(
        rec.lines(),
        [
            "cadence_start",
            "measure_start slow",
            "note_start slow#1",
            "note_end slow#1 Cancelled",
            "measure_end slow Cancelled",
            "cadence_end Cancelled",
        ]
    );
    assert_eq!(c.hook_panics(), 6);
}

/// Counts note starts and ends; wants only note ends (or whatever `interest` says).
struct NoteEnds {
    starts: AtomicUsize,
    ends: AtomicUsize,
    interest: Option<cadence_core::Interest>,
}

impl NoteEnds {
    fn new(interest: Option<cadence_core::Interest>) -> Arc<Self> {
        Arc::new(NoteEnds {
            starts: AtomicUsize::new(0),
            ends: AtomicUsize::new(0),
            interest,
        })
    }
}

impl<S> Hook<S> for NoteEnds {
    fn on_note_start(&self, _: &HookContext<'_>, _: &str, _: u32, _: &S) {
        self.starts.fetch_add(1, Ordering::Relaxed);
    }
    fn on_note_end(
        &self,
        _: &HookContext<'_>,
        _: &str,
        _: u32,
        _: Duration,
        _: &NoteOutcome<'_>,
        _: &S,
    ) {
        self.ends.fetch_add(1, Ordering::Relaxed);
    }
    fn interest(&self) -> cadence_core::Interest {
        match self.interest {
            Some(i) => i,
            None => panic!("interest panics"),
        }
    }
}

#[tokio::test]
async fn hooks_are_called_only_for_what_their_run_tree_wants() {
    // HOOK-1, HOOK-4: `Hook::interest` lets the engine skip occurrences nobody wants; a hook
    // still sees what another hook of the run tree wants; a panicking `interest` means all.
    use cadence_core::{HookMethod, Interest};
    let only_ends = Interest::NONE.with(HookMethod::NoteEnd);
    let three = |h: Arc<NoteEnds>| {
        Cadence::<Log>::new("i")
            .then("a", push("a"))
            .sequence("s", [push("b"), push("c")])
            .with_hooks(h)
    };
    let narrow = NoteEnds::new(Some(only_ends));
    three(narrow.clone())
        .build()
        .unwrap()
        .run(vec![])
        .await
        .unwrap();
    assert_eq!(narrow.ends.load(Ordering::Relaxed), 3);
    assert_eq!(
        narrow.starts.load(Ordering::Relaxed),
        0,
        "not wanted, not called"
    );

    let shared = NoteEnds::new(Some(only_ends));
    let rec = RecordingHook::new();
    three(shared.clone())
        .with_hooks(rec.clone())
        .build()
        .unwrap()
        .run(vec![])
        .await
        .unwrap();
    assert_eq!(
        shared.starts.load(Ordering::Relaxed),
        3,
        "the recorder wants starts"
    );
    let seqs: Vec<u64> = rec.entries().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());

    let panicking = NoteEnds::new(None);
    let c = three(panicking.clone()).build().unwrap();
    c.run(vec![]).await.unwrap();
    assert_eq!(
        panicking.starts.load(Ordering::Relaxed),
        3,
        "a panicking interest is all"
    );
    assert_eq!(c.hook_panics(), 1, "and counted as a hook panic");

    // Combinators want the union; `()` wants nothing.
    let pair = (NoteEnds::new(Some(only_ends)), ());
    let i = <_ as Hook<Log>>::interest(&pair);
    assert!(i.contains(HookMethod::NoteEnd) && !i.contains(HookMethod::NoteStart));
    assert_eq!(<() as Hook<Log>>::interest(&()), Interest::NONE);
}

/// A hook that wants note ends, and note starts too once `starts_wanted` is set.
struct Changing {
    starts_wanted: std::sync::atomic::AtomicBool,
    starts: AtomicUsize,
}

impl<S> Hook<S> for Changing {
    fn on_note_start(&self, _: &HookContext<'_>, _: &str, _: u32, _: &S) {
        self.starts.fetch_add(1, Ordering::Relaxed);
    }
    fn interest(&self) -> cadence_core::Interest {
        use cadence_core::{HookMethod, Interest};
        let i = Interest::NONE.with(HookMethod::NoteEnd);
        if self.starts_wanted.load(Ordering::Relaxed) {
            i.with(HookMethod::NoteStart)
        } else {
            i
        }
    }
}

#[tokio::test]
async fn a_changed_interest_is_read_again_after_rebuild_even_mid_run() {
    // HOOK-1: `rebuild_interest_cache` makes cadences (and runs in flight) ask again.
    let hook = Arc::new(Changing {
        starts_wanted: false.into(),
        starts: AtomicUsize::new(0),
    });
    let flip = hook.clone();
    let c = Cadence::<Log>::new("changing")
        .then("a", push("a"))
        .then(
            "b",
            note::from_fn(move |l: &mut Log| {
                flip.starts_wanted.store(true, Ordering::Relaxed);
                cadence_core::hook::rebuild_interest_cache();
                l.push("b".into());
                Box::pin(async { Ok::<_, BoxError>(()) })
            }),
        )
        .then("c", push("c"))
        .then("d", push("d"))
        .with_hooks(hook.clone())
        .build()
        .unwrap();
    c.run(vec![]).await.unwrap();
    // a and b started before the change; c and d after it, in the same run.
    assert_eq!(hook.starts.load(Ordering::Relaxed), 2);
    c.run(vec![]).await.unwrap();
    assert_eq!(
        hook.starts.load(Ordering::Relaxed),
        6,
        "the next run wants all four"
    );
}

#[tokio::test]
async fn notes_run_inside_their_note_span_without_hooks() {
    // OTEL-1: with a subscriber and no hooks (the engine's lean path is off only because a
    // span would be recorded), spans opened inside a note nest under its `cadence.note`, in
    // `then` measures, sequences and parallel members alike.
    #[derive(Debug, Clone, Default, PartialEq, cadence_core::Score)]
    struct Probe {
        n: u32,
    }
    install_capturing_subscriber();
    let seen = Shared::new();
    let probe = |seen: &Shared| {
        let seen = seen.clone();
        note::from_fn(move |p: &mut Probe| {
            let seen = seen.clone();
            Box::pin(async move {
                seen.push(current_span());
                p.n += 1;
                Ok::<_, BoxError>(())
            })
        })
    };
    let c = Cadence::<Probe>::new("otel")
        .then("a", probe(&seen))
        .sequence("s", [probe(&seen)])
        .sync_with(
            "g",
            [probe(&seen), probe(&seen)],
            cadence_core::MergeStrategy::LastWriteWins,
        )
        .build()
        .unwrap();
    c.run(Probe::default()).await.unwrap();
    assert_eq!(seen.get(), ["cadence.note"; 4]);
}
