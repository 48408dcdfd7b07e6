//! Building a cadence: DSL-1…6, GEN-1.

mod common;

use std::cell::Cell;

use cadence_core::{
    BoxError, Cadence, CadenceError, MeasureKind, OnError, Problem, cond, note,
    testing::RecordingHook,
};
use common::*;

fn problems<S>(r: Result<Cadence<S>, CadenceError>) -> Vec<Problem> {
    match r {
        Err(CadenceError::Validation { problems }) => problems,
        Err(other) => panic!("expected Validation, got {other:?}"),
        Ok(_) => panic!("expected Validation, got a cadence"),
    }
}

fn paths(ps: &[Problem]) -> Vec<&str> {
    ps.iter().map(|p| p.path.as_str()).collect()
}

fn one_measure() -> cadence_core::CadenceBuilder<Log> {
    Cadence::<Log>::new("c").then("a", push("a"))
}

// ---------------------------------------------------------------- DSL-1

fn assert_clone_send_sync<T: Clone + Send + Sync + 'static>() {}

#[test]
fn cadence_is_clone_send_sync_static() {
    // DSL-1: a Cadence<S> is Clone + Send + Sync.
    assert_clone_send_sync::<Cadence<Log>>();
    // DSL-1 "holds no score": even a score that is not Sync gives a Sync cadence.
    assert_clone_send_sync::<Cadence<Cell<u32>>>();
}

#[tokio::test]
async fn cadence_clone_is_shared_and_reusable() {
    // DSL-1: cheap, shared clone; immutable definition serves many runs.
    let c = one_measure().then("b", push("b")).build().unwrap();
    let c2 = c.clone();
    assert!(std::ptr::eq(c.fingerprint(), c2.fingerprint()));
    assert_eq!(c.run(vec![]).await.unwrap(), ["a", "b"]);
    assert_eq!(c2.run(vec!["x".into()]).await.unwrap(), ["x", "a", "b"]);
    assert_eq!(c.run(vec![]).await.unwrap(), ["a", "b"]);
}

#[tokio::test]
async fn verbs_append_measures_in_call_order() {
    // DSL-1, DSL-2: each verb appends one measure in call order; RUN-3 runs them in order.
    let child = Cadence::<Log>::new("inner")
        .then("i", push("i"))
        .build()
        .unwrap();
    let c = Cadence::<Log>::new("c")
        .then("t", push("t"))
        .sequence("seq", [push("s0"), push("s1")])
        .split("sp", |_: &Log| true, [push("yes")], [push("no")])
        .route("r", |_: &Log| "k", [("k", [push("rk")])])
        .route_or("ro", |_: &Log| "zzz", [("k", [push("rok")])], [push("rod")])
        .child(
            "ch",
            child,
            |l: &Log| l.clone(),
            |l: &mut Log, c: Log| *l = c,
        )
        .build()
        .unwrap();
    let d = c.describe();
    let kinds: Vec<(MeasureKind, &str)> = d
        .measures
        .iter()
        .map(|m| (m.kind, m.name.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (MeasureKind::Note, "t"),
            (MeasureKind::Sequence, "seq"),
            (MeasureKind::Split, "sp"),
            (MeasureKind::Route, "r"),
            (MeasureKind::Route, "ro"),
            (MeasureKind::Child, "ch"),
        ]
    );
    assert_eq!(
        c.run(vec![]).await.unwrap(),
        ["t", "s0", "s1", "yes", "rk", "rod", "i"]
    );
}

#[tokio::test]
async fn note_lists_accept_arrays_vecs_and_iterators() {
    // DSL-2: note lists are arrays, Vecs or iterators.
    let c = Cadence::<Log>::new("c")
        .sequence("arr", [push("a0"), push("a1")])
        .sequence("vec", vec![push("v0"), push("v1")])
        .sequence("iter", ["i0", "i1"].into_iter().map(push))
        .split(
            "sp",
            |_: &Log| false,
            vec![push("t")],
            ["f0", "f1"].into_iter().map(push),
        )
        .build()
        .unwrap();
    assert_eq!(
        c.run(vec![]).await.unwrap(),
        ["a0", "a1", "v0", "v1", "i0", "i1", "f0", "f1"]
    );
}

#[tokio::test]
async fn with_hooks_accumulates_in_call_order() {
    // DSL-2: with_hooks is repeatable, accumulating in call order.
    let log = Shared::new();
    let c = one_measure()
        .with_hooks(Tagged::new("first", &log))
        .with_hooks(Tagged::new("second", &log))
        .build()
        .unwrap();
    c.run(vec![]).await.unwrap();
    let lines = log.get();
    assert_eq!(lines[0], "first cadence_start c");
    assert_eq!(lines[1], "second cadence_start c");
    assert_eq!(lines.len(), 2 * 5);
    for pair in lines.chunks(2) {
        assert!(pair[0].starts_with("first "));
        assert_eq!(pair[1], pair[0].replacen("first", "second", 1));
    }
}

// ---------------------------------------------------------------- DSL-3

/// Neither Clone, Default nor Sync.
struct Plain {
    n: Cell<u32>,
}

#[tokio::test]
async fn score_needs_only_send_static() {
    // DSL-3: a cadence needs only `S: Send + 'static`; a child score `C` only `Send + 'static`.
    let c = Cadence::<Plain>::new("plain")
        .then("inc", step(|p: &mut Plain| p.n.set(p.n.get() + 1)))
        .build()
        .unwrap();
    let out = c.run(Plain { n: Cell::new(1) }).await.unwrap();
    assert_eq!(out.n.get(), 2);

    let child = Cadence::<Plain>::new("child")
        .then("inc", step(|p: &mut Plain| p.n.set(p.n.get() * 10)))
        .build()
        .unwrap();
    let parent = Cadence::<u32>::new("parent")
        .child(
            "ch",
            child,
            |n: &u32| Plain { n: Cell::new(*n) },
            |n: &mut u32, p: Plain| *n = p.n.get(),
        )
        .build()
        .unwrap();
    assert_eq!(parent.run(4).await.unwrap(), 40);
}

// ---------------------------------------------------------------- DSL-4, GEN-1

#[test]
fn no_measures_is_an_error() {
    // DSL-4: the cadence has no measures.
    let ps = problems(Cadence::<Log>::new("empty").build());
    assert_eq!(paths(&ps), [""]);
    assert!(ps[0].message.contains("no measures"), "{}", ps[0].message);
}

#[test]
fn cadence_name_must_follow_gen1() {
    // DSL-4, GEN-1: non-empty, no '/', no control characters.
    for bad in ["", "a/b", "a\nb", "tab\there", "nul\0"] {
        let ps = problems(Cadence::<Log>::new(bad).then("a", push("a")).build());
        assert_eq!(ps.len(), 1, "{bad:?}: {ps:?}");
        assert_eq!(ps[0].path, "", "{bad:?}");
    }
}

#[test]
fn measure_name_must_follow_gen1() {
    // DSL-4, GEN-1, for every kind of measure.
    for bad in ["a/b", "a\nb", "x\u{7f}", "c1\u{85}"] {
        let ps = problems(Cadence::<Log>::new("c").then(bad, push("a")).build());
        assert_eq!(ps.len(), 1, "{bad:?}: {ps:?}");
        let ps = problems(Cadence::<Log>::new("c").sequence(bad, [push("a")]).build());
        assert_eq!(ps.len(), 1, "{bad:?}: {ps:?}");
        let ps = problems(
            Cadence::<Log>::new("c")
                .split(bad, |_: &Log| true, [push("a")], none())
                .build(),
        );
        assert_eq!(ps.len(), 1, "{bad:?}: {ps:?}");
    }
    let ps = problems(Cadence::<Log>::new("c").then("", push("a")).build());
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert!(ps[0].message.contains("empty"), "{}", ps[0].message);
}

#[test]
fn any_other_unicode_is_a_valid_name() {
    // GEN-1: any other Unicode is allowed.
    let c = Cadence::<Log>::new("café ☕ 注文 \"quoted\" <tag>")
        .then("mesure été", push("a"))
        .sequence("🎵", [note::named("ノート", push("b")), push("c")])
        .route("路由", |_: &Log| "clé", [("clé", [push("d")])])
        .build();
    assert!(c.is_ok(), "{c:?}");
}

#[test]
fn duplicate_top_level_measure_names() {
    // DSL-4: two top-level measures share a name (whatever their kinds).
    let ps = problems(
        Cadence::<Log>::new("c")
            .then("a", push("a"))
            .sequence("b", [push("b")])
            .then("a", push("a2"))
            .split("b", |_: &Log| true, [push("t")], none())
            .build(),
    );
    assert_eq!(paths(&ps), ["a", "b"]);
    assert!(ps.iter().all(|p| p.message.contains("share")), "{ps:?}");
}

#[test]
fn duplicate_note_names_in_a_group_or_branch() {
    // DSL-4: two notes of one group or branch share a name. NOTE-2: an explicit name may
    // collide with a default index name.
    let ps = problems(
        Cadence::<Log>::new("c")
            .sequence(
                "seq",
                [note::named("x", push("1")), note::named("x", push("2"))],
            )
            .sequence("idx", [note::named("1", push("1")), push("2")])
            .split(
                "sp",
                |_: &Log| true,
                [push("t")],
                [note::named("y", push("1")), note::named("y", push("2"))],
            )
            .route_or(
                "r",
                |_: &Log| "k",
                [(
                    "k",
                    [note::named("z", push("1")), note::named("z", push("2"))],
                )],
                [note::named("w", push("1")), note::named("w", push("2"))],
            )
            .build(),
    );
    assert_eq!(
        paths(&ps),
        ["seq/x", "idx/1", "sp/false/y", "r/k/z", "r/*/w"]
    );
}

#[test]
fn same_note_name_in_different_groups_is_fine() {
    // DSL-4 only forbids duplicates within one group or branch.
    let c = Cadence::<Log>::new("c")
        .sequence("a", [note::named("x", push("1"))])
        .sequence("b", [note::named("x", push("2"))])
        .split(
            "s",
            |_: &Log| true,
            [note::named("x", push("3"))],
            [note::named("x", push("4"))],
        )
        .build();
    assert!(c.is_ok(), "{c:?}");
}

#[test]
fn note_names_in_groups_must_follow_gen1() {
    // DSL-4, GEN-1: a note name in a sequence or branch.
    let ps = problems(
        Cadence::<Log>::new("c")
            .sequence("seq", [note::named("a/b", push("1"))])
            .sequence("seq2", [note::named("", push("1"))])
            .split(
                "sp",
                |_: &Log| true,
                [note::named("x\ny", push("1"))],
                none(),
            )
            .build(),
    );
    assert_eq!(ps.len(), 3, "{ps:?}");
}

#[test]
fn then_note_name_must_follow_gen1() {
    // DSL-4, GEN-1: note names (explicit ones too) are non-empty, without '/' or controls,
    // also on a `.then` note.
    for bad in ["a/b", "", "x\ny"] {
        let r = Cadence::<Log>::new("c")
            .then("m", note::named(bad, push("1")))
            .build();
        let ps = problems(r);
        assert_eq!(ps.len(), 1, "{bad:?}: {ps:?}");
        assert_eq!(ps[0].path, "m", "{bad:?}");
    }
}

#[test]
fn empty_sequence_is_an_error() {
    // DSL-4: a sequence is empty.
    let ps = problems(Cadence::<Log>::new("c").sequence("seq", none()).build());
    assert_eq!(paths(&ps), ["seq"]);
}

#[test]
fn split_if_true_must_not_be_empty_but_if_false_may() {
    // DSL-4: a split's if_true is empty (if_false may be empty).
    let ps = problems(
        Cadence::<Log>::new("c")
            .split("sp", |_: &Log| true, none(), [push("f")])
            .build(),
    );
    assert_eq!(paths(&ps), ["sp"]);
    let ok = Cadence::<Log>::new("c")
        .split("sp", |_: &Log| true, [push("t")], none())
        .build();
    assert!(ok.is_ok());
}

#[test]
fn route_rules() {
    // DSL-4: a route has no routes, a duplicate key, or the key `*`; GEN-1 applies to keys.
    let none: Vec<(&str, Vec<cadence_core::Note<Log>>)> = Vec::new();
    let ps = problems(
        Cadence::<Log>::new("c")
            .route("r", |_: &Log| "k", none.clone())
            .build(),
    );
    assert_eq!(paths(&ps), ["r"]);
    let ps = problems(
        Cadence::<Log>::new("c")
            .route_or("r", |_: &Log| "k", none, [push("d")])
            .build(),
    );
    assert_eq!(paths(&ps), ["r"], "a default does not replace the routes");

    let ps = problems(
        Cadence::<Log>::new("c")
            .route("r", |_: &Log| "k", [("k", [push("1")]), ("k", [push("2")])])
            .build(),
    );
    assert_eq!(paths(&ps), ["r/k"]);
    assert!(ps[0].message.contains("duplicate"), "{}", ps[0].message);

    let ps = problems(
        Cadence::<Log>::new("c")
            .route_or("r", |_: &Log| "k", [("*", [push("1")])], [push("d")])
            .build(),
    );
    assert_eq!(paths(&ps), ["r/*"]);

    for bad in ["", "a/b", "a\tb"] {
        let ps = problems(
            Cadence::<Log>::new("c")
                .route("r", |_: &Log| "k", [(bad, [push("1")])])
                .build(),
        );
        assert_eq!(ps.len(), 1, "{bad:?}: {ps:?}");
    }
}

#[test]
fn on_error_twice_is_an_error() {
    // DSL-4: on_error is called twice.
    let ps = problems(
        one_measure()
            .on_error(|_: &mut Log, _: &CadenceError| (), OnError::Stop)
            .on_error(|_: &mut Log, _: &CadenceError| (), OnError::Continue)
            .build(),
    );
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert!(ps[0].message.contains("on_error"), "{}", ps[0].message);
}

#[test]
fn build_reports_every_problem_at_once_in_declaration_order() {
    // DSL-4: `build()` lists every problem (path + message), in declaration order.
    let ps = problems(
        Cadence::<Log>::new("bad/name")
            .then("a", push("a"))
            .then("a", push("a"))
            .sequence("s", none())
            .sequence(
                "g",
                [note::named("n", push("1")), note::named("n", push("2"))],
            )
            .split("sp", |_: &Log| true, none(), [push("f")])
            .route("r", |_: &Log| "k", [("k", [push("1")]), ("k", [push("2")])])
            .then("x/y", push("z"))
            .on_error(|_: &mut Log, _: &CadenceError| (), OnError::Stop)
            .on_error(|_: &mut Log, _: &CadenceError| (), OnError::Stop)
            .build(),
    );
    assert_eq!(ps.len(), 8, "{ps:#?}");
    assert_eq!(paths(&ps), ["", "a", "s", "g/n", "sp", "r/k", "x/y", ""]);
    assert!(ps.iter().all(|p| !p.message.is_empty()));
}

// ---------------------------------------------------------------- DSL-5, DSL-6

#[test]
fn validate_reports_without_building() {
    // DSL-6: validate() reports errors (and warnings) without building; build() fails iff
    // there are errors, with the same problems.
    let b = Cadence::<Log>::new("c")
        .then("a", push("a"))
        .then("a", push("b"))
        .sequence("s", none());
    let v = b.validate();
    assert!(!v.is_ok());
    assert_eq!(paths(&v.errors), ["a", "s"]);
    assert!(v.warnings.is_empty());
    // validate() borrows: the builder is still usable, and can be validated again.
    assert_eq!(b.validate(), v);
    assert_eq!(problems(b.build()), v.errors);

    let good = one_measure().then("b", push("b"));
    let v = good.validate();
    assert!(v.is_ok());
    assert!(v.errors.is_empty() && v.warnings.is_empty());
    let c = good.build().unwrap();
    assert!(c.warnings().is_empty()); // DSL-5: no warning for a plain cadence
}

#[tokio::test]
async fn named_condition_and_hooks_do_not_change_validity() {
    // DSL-2: split with a labelled condition, route with a labelled selector; build succeeds
    // and the cadence runs.
    let rec = RecordingHook::new();
    let c = Cadence::<Log>::new("c")
        .split(
            "sp",
            cond::named("always", |_: &Log| true),
            [push("t")],
            none(),
        )
        .route(
            "r",
            cond::selector("pick", |_: &Log| "k".to_string()),
            [("k", [push("k")])],
        )
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    assert_eq!(c.run(vec![]).await.unwrap(), ["t", "k"]);
    assert!(!rec.lines().is_empty());
}

#[tokio::test]
async fn then_accepts_any_note_constructor() {
    // DSL-2: `then(name, note)` takes any note value (async, with context, blocking).
    let c = Cadence::<Log>::new("c")
        .then("a", push("a"))
        .then(
            "b",
            note::from_fn_with_context(|l: &mut Log, cx| {
                Box::pin(async move {
                    l.push(cx.path().to_owned());
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .then(
            "c",
            note::blocking(|l: &mut Log| {
                l.push("blocking".into());
                Ok::<_, BoxError>(())
            }),
        )
        .then(
            "d",
            note::blocking_with_context(|l: &mut Log, cx: &cadence_core::NoteContext<'_>| {
                l.push(cx.path().to_owned());
                Ok::<_, BoxError>(())
            }),
        )
        .build()
        .unwrap();
    assert_eq!(c.run(vec![]).await.unwrap(), ["a", "b", "blocking", "d"]);
}
