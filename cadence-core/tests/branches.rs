//! Branches and routes: BR-1…3.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cadence_core::testing::{Call, RecordingHook};
use cadence_core::{BoxError, Cadence, CadenceError, Outcome, RunOptions, cond};
use common::*;

fn lines_of(rec: &RecordingHook) -> Vec<String> {
    rec.lines()
}

// ---------------------------------------------------------------- BR-1

#[tokio::test]
async fn split_runs_the_chosen_branch_in_order() {
    // BR-1: the chosen branch's notes run in order on the live score; branch_taken fires
    // with true/false before the first branch note.
    let rec = RecordingHook::new();
    let c = Cadence::<Log>::new("s")
        .then("seed", push("seed"))
        .split(
            "sp",
            |l: &Log| l.len() == 1,
            [push("t0"), push("t1")],
            [push("f0")],
        )
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    assert_eq!(c.run(vec![]).await.unwrap(), ["seed", "t0", "t1"]);
    assert_eq!(
        lines_of(&rec)[5..],
        [
            "measure_start sp",
            "branch_taken sp true",
            "note_start sp/true/0#1",
            "note_end sp/true/0#1 Succeeded",
            "note_start sp/true/1#1",
            "note_end sp/true/1#1 Succeeded",
            "measure_end sp Succeeded",
            "cadence_end Succeeded",
        ]
    );

    rec.clear();
    assert_eq!(
        c.run(vec!["pre".into()]).await.unwrap(),
        ["pre", "seed", "f0"]
    );
    assert!(rec.calls().contains(&Call::BranchTaken(
        "sp".into(),
        "false".into(),
        "false".into()
    )));
    assert!(rec.lines().contains(&"note_start sp/false/0#1".to_owned()));
}

#[tokio::test]
async fn empty_false_branch_does_nothing() {
    // BR-1: an empty branch does nothing.
    let rec = RecordingHook::new();
    let c = Cadence::<Log>::new("s")
        .split("sp", |_: &Log| false, [push("t")], none())
        .then("after", push("after"))
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    assert_eq!(c.run(vec![]).await.unwrap(), ["after"]);
    assert_eq!(
        lines_of(&rec)[..4],
        [
            "cadence_start",
            "measure_start sp",
            "branch_taken sp false",
            "measure_end sp Succeeded",
        ]
    );
}

#[tokio::test]
async fn async_and_fallible_conditions() {
    // BR-1: async predicates (cond::from_async) and predicates returning Result<bool, E>.
    let c = Cadence::<Log>::new("s")
        .split(
            "async",
            cond::from_async(|l: &Log| {
                Box::pin(async move {
                    tokio::task::yield_now().await;
                    Ok::<_, BoxError>(l.is_empty())
                })
            }),
            [push("async-true")],
            [push("async-false")],
        )
        .split(
            "result",
            |l: &Log| -> Result<bool, std::io::Error> { Ok(l.len() == 5) },
            [push("result-true")],
            [push("result-false")],
        )
        .split(
            "async-bool",
            cond::from_async(|_: &Log| Box::pin(async move { true })),
            [push("ab-true")],
            none(),
        )
        .build()
        .unwrap();
    assert_eq!(
        c.run(vec![]).await.unwrap(),
        ["async-true", "result-false", "ab-true"]
    );
}

#[test]
fn condition_labels() {
    // BR-1: `cond::named` gives a label for diagrams; the default label is `condition`.
    let c = Cadence::<Log>::new("s")
        .split(
            "named",
            cond::named("is_premium", |_: &Log| true),
            [push("t")],
            none(),
        )
        .split("plain", |_: &Log| true, [push("t")], none())
        .split(
            "async",
            cond::from_async(|_: &Log| Box::pin(async { true })).named("async_label"),
            [push("t")],
            none(),
        )
        .build()
        .unwrap();
    let d = c.describe();
    assert_eq!(d.measures[0].condition.as_deref(), Some("is_premium"));
    assert_eq!(d.measures[1].condition.as_deref(), Some("condition"));
    assert_eq!(d.measures[2].condition.as_deref(), Some("async_label"));
    assert!(c.to_mermaid().contains("is_premium"));
}

// ---------------------------------------------------------------- BR-2

#[tokio::test]
async fn route_runs_the_notes_of_the_key() {
    // BR-2: the notes registered for the selector's key run in order; branch_taken reports
    // the branch and the key.
    let rec = RecordingHook::new();
    let c = Cadence::<Log>::new("r")
        .route(
            "ship",
            |l: &Log| if l.is_empty() { "ground" } else { "air" },
            [
                ("air", vec![push("air0")]),
                ("ground", vec![push("g0"), push("g1")]),
            ],
        )
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    assert_eq!(c.run(vec![]).await.unwrap(), ["g0", "g1"]);
    assert_eq!(
        lines_of(&rec),
        [
            "cadence_start",
            "measure_start ship",
            "branch_taken ship ground",
            "note_start ship/ground/0#1",
            "note_end ship/ground/0#1 Succeeded",
            "note_start ship/ground/1#1",
            "note_end ship/ground/1#1 Succeeded",
            "measure_end ship Succeeded",
            "cadence_end Succeeded",
        ]
    );
    assert!(rec.calls().contains(&Call::BranchTaken(
        "ship".into(),
        "ground".into(),
        "ground".into()
    )));
    assert_eq!(c.run(vec!["x".into()]).await.unwrap(), ["x", "air0"]);
}

#[tokio::test]
async fn unknown_key_without_default_fails_with_route_error() {
    // BR-2: an unknown key without a default fails with `CadenceError::Route { path, key }`.
    let rec = RecordingHook::new();
    let c = Cadence::<Log>::new("r")
        .then("before", push("before"))
        .route("ship", |_: &Log| "teleport", [("air", [push("air")])])
        .then("after", push("after"))
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let r = c.run_with_report(vec![], RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.score, ["before"]);
    match r.error.unwrap() {
        CadenceError::Route { path, key } => {
            assert_eq!(path, "ship");
            assert_eq!(key, "teleport");
        }
        other => panic!("expected Route, got {other:?}"),
    }
    assert!(!rec.lines().iter().any(|l| l.starts_with("branch_taken")));
    assert!(rec.lines().contains(&"measure_end ship Failed".to_owned()));
}

#[tokio::test]
async fn unknown_key_runs_the_default_branch() {
    // BR-2: an unknown key runs the default branch (`*` in paths and in branch_taken, with
    // the selector's key).
    let rec = RecordingHook::new();
    let c = Cadence::<Log>::new("r")
        .route_or(
            "ship",
            |_: &Log| "teleport".to_string(),
            [("air", [push("air")])],
            [push("d0"), push("d1")],
        )
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    assert_eq!(c.run(vec![]).await.unwrap(), ["d0", "d1"]);
    assert_eq!(
        lines_of(&rec)[1..7],
        [
            "measure_start ship",
            "branch_taken ship *",
            "note_start ship/*/0#1",
            "note_end ship/*/0#1 Succeeded",
            "note_start ship/*/1#1",
            "note_end ship/*/1#1 Succeeded",
        ]
    );
    assert!(rec.calls().contains(&Call::BranchTaken(
        "ship".into(),
        "*".into(),
        "teleport".into()
    )));
}

#[tokio::test]
async fn known_key_with_default_runs_the_key() {
    // BR-2: the default is only for unknown keys.
    let c = Cadence::<Log>::new("r")
        .route_or(
            "ship",
            |_: &Log| "air",
            [("air", [push("air")])],
            [push("default")],
        )
        .build()
        .unwrap();
    assert_eq!(c.run(vec![]).await.unwrap(), ["air"]);
}

#[tokio::test]
async fn empty_default_does_nothing() {
    // BR-2: an empty default does nothing.
    let rec = RecordingHook::new();
    let c = Cadence::<Log>::new("r")
        .route_or("ship", |_: &Log| "x", [("air", [push("air")])], none())
        .then("after", push("after"))
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    assert_eq!(c.run(vec![]).await.unwrap(), ["after"]);
    assert_eq!(
        lines_of(&rec)[1..4],
        [
            "measure_start ship",
            "branch_taken ship *",
            "measure_end ship Succeeded"
        ]
    );
}

#[tokio::test]
async fn selector_shapes() {
    // BR-2: a sync or async selector returning `impl Into<String>` or a `Result` of it.
    let c = Cadence::<Log>::new("r")
        .route("str", |_: &Log| "a", [("a", [push("str")])])
        .route(
            "string",
            |_: &Log| String::from("a"),
            [("a", [push("string")])],
        )
        .route(
            "cow",
            |_: &Log| std::borrow::Cow::Borrowed("a"),
            [("a", [push("cow")])],
        )
        .route(
            "result",
            |_: &Log| -> Result<String, std::io::Error> { Ok("a".into()) },
            [("a", [push("result")])],
        )
        .route(
            "result-str",
            |_: &Log| -> Result<&'static str, BoxError> { Ok("a") },
            [("a", [push("result-str")])],
        )
        .route(
            "async",
            cond::select_async(|l: &Log| {
                Box::pin(async move {
                    tokio::task::yield_now().await;
                    Ok::<_, BoxError>(format!("k{}", l.len()))
                })
            }),
            [("k5", [push("async")])],
        )
        .route(
            "labelled",
            cond::selector("tier", |_: &Log| "gold"),
            [("gold", [push("labelled")])],
        )
        .build()
        .unwrap();
    assert_eq!(
        c.run(vec![]).await.unwrap(),
        [
            "str",
            "string",
            "cow",
            "result",
            "result-str",
            "async",
            "labelled"
        ]
    );
    let d = c.describe();
    assert_eq!(d.measures[0].condition.as_deref(), Some("selector"));
    assert_eq!(d.measures[6].condition.as_deref(), Some("tier"));
}

// ---------------------------------------------------------------- BR-3

async fn expect_failure(c: Cadence<Log>) -> CadenceError {
    let r = c.run_with_report(vec![], RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.score, ["before"], "no branch note may run");
    r.error.unwrap()
}

#[tokio::test]
async fn condition_error_fails_the_measure_at_its_path() {
    // BR-3: a condition that errs fails the measure with a `Note` error at the measure path.
    let e = expect_failure(
        Cadence::<Log>::new("c")
            .then("before", push("before"))
            .split(
                "sp",
                |_: &Log| -> Result<bool, &'static str> { Err("cannot decide") },
                [push("t")],
                [push("f")],
            )
            .build()
            .unwrap(),
    )
    .await;
    match &e {
        CadenceError::Note { path, source } => {
            assert_eq!(path, "sp");
            assert_eq!(source.to_string(), "cannot decide");
        }
        other => panic!("expected Note, got {other:?}"),
    }

    let e = expect_failure(
        Cadence::<Log>::new("c")
            .then("before", push("before"))
            .split(
                "sp",
                cond::from_async(|_: &Log| {
                    Box::pin(async { Err::<bool, BoxError>("async cannot decide".into()) })
                }),
                [push("t")],
                [push("f")],
            )
            .build()
            .unwrap(),
    )
    .await;
    assert!(
        matches!(&e, CadenceError::Note { path, .. } if path == "sp"),
        "{e:?}"
    );
}

#[tokio::test]
async fn condition_panic_fails_the_measure_at_its_path() {
    // BR-3, GEN-5: a condition that panics fails the measure with `Panicked` at its path.
    let e = expect_failure(
        Cadence::<Log>::new("c")
            .then("before", push("before"))
            .split(
                "sp",
                |l: &Log| -> bool {
                    if std::hint::black_box(!l.is_empty()) {
                        panic!("condition blew up");
                    }
                    true
                },
                [push("t")],
                none(),
            )
            .build()
            .unwrap(),
    )
    .await;
    assert!(
        matches!(&e, CadenceError::Panicked { path, message } if path == "sp" && message == "condition blew up"),
        "{e:?}"
    );

    let e = expect_failure(
        Cadence::<Log>::new("c")
            .then("before", push("before"))
            .split(
                "sp",
                cond::from_async(|l: &Log| {
                    Box::pin(async move {
                        tokio::task::yield_now().await;
                        if std::hint::black_box(!l.is_empty()) {
                            panic!("async condition blew up");
                        }
                        true
                    })
                }),
                [push("t")],
                none(),
            )
            .build()
            .unwrap(),
    )
    .await;
    assert!(
        matches!(&e, CadenceError::Panicked { path, message } if path == "sp" && message == "async condition blew up"),
        "{e:?}"
    );
}

#[tokio::test]
async fn selector_error_or_panic_fails_the_measure_at_its_path() {
    // BR-3: a selector that errs (`Note`) or panics (`Panicked`), sync or async.
    let e = expect_failure(
        Cadence::<Log>::new("c")
            .then("before", push("before"))
            .route(
                "r",
                |_: &Log| -> Result<String, BoxError> { Err("no key".into()) },
                [("k", [push("k")])],
            )
            .build()
            .unwrap(),
    )
    .await;
    assert!(
        matches!(&e, CadenceError::Note { path, source } if path == "r" && source.to_string() == "no key"),
        "{e:?}"
    );

    let e = expect_failure(
        Cadence::<Log>::new("c")
            .then("before", push("before"))
            .route_or(
                "r",
                |l: &Log| -> &'static str {
                    if std::hint::black_box(!l.is_empty()) {
                        panic!("selector blew up");
                    }
                    "k"
                },
                [("k", [push("k")])],
                [push("d")],
            )
            .build()
            .unwrap(),
    )
    .await;
    assert!(
        matches!(&e, CadenceError::Panicked { path, message } if path == "r" && message == "selector blew up"),
        "{e:?}"
    );

    let e = expect_failure(
        Cadence::<Log>::new("c")
            .then("before", push("before"))
            .route(
                "r",
                cond::select_async(|_: &Log| {
                    Box::pin(async { Err::<String, BoxError>("async no key".into()) })
                }),
                [("k", [push("k")])],
            )
            .build()
            .unwrap(),
    )
    .await;
    assert!(
        matches!(&e, CadenceError::Note { path, .. } if path == "r"),
        "{e:?}"
    );
}

#[tokio::test]
async fn branch_errors_inside_a_child_use_full_paths() {
    // BR-3, GEN-2: errors use full paths (the child measure prefix).
    let child = Cadence::<Log>::new("inner")
        .route("r", |_: &Log| "nope", [("k", [push("k")])])
        .build()
        .unwrap();
    let c = Cadence::<Log>::new("outer")
        .then("before", push("before"))
        .child("sub", child, |l: &Log| l.clone(), |l, c| *l = c)
        .build()
        .unwrap();
    let e = expect_failure(c).await;
    assert!(
        matches!(&e, CadenceError::Route { path, key } if path == "sub/r" && key == "nope"),
        "{e:?}"
    );
}

#[tokio::test]
async fn conditions_and_selectors_are_evaluated_once_per_execution() {
    // BR-3: conditions are evaluated once per execution.
    let conds = Arc::new(AtomicUsize::new(0));
    let sels = Arc::new(AtomicUsize::new(0));
    let (c1, s1) = (conds.clone(), sels.clone());
    let c = Cadence::<Log>::new("once")
        .split(
            "sp",
            move |_: &Log| {
                c1.fetch_add(1, Ordering::SeqCst);
                true
            },
            [push("t0"), push("t1"), push("t2")],
            none(),
        )
        .route(
            "r",
            move |_: &Log| {
                s1.fetch_add(1, Ordering::SeqCst);
                "k"
            },
            [("k", [push("k0"), push("k1")])],
        )
        .build()
        .unwrap();
    c.run(vec![]).await.unwrap();
    assert_eq!(conds.load(Ordering::SeqCst), 1);
    assert_eq!(sels.load(Ordering::SeqCst), 1);
    c.run(vec![]).await.unwrap();
    assert_eq!(conds.load(Ordering::SeqCst), 2);
    assert_eq!(sels.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn branch_notes_see_earlier_writes_of_the_branch() {
    // BR-1: branch notes run in order on the live score.
    let c = Cadence::<Vec<u32>>::new("live")
        .split(
            "sp",
            |_: &Vec<u32>| true,
            [
                step(|v: &mut Vec<u32>| v.push(1)),
                step(|v: &mut Vec<u32>| {
                    let last = *v.last().unwrap();
                    v.push(last * 10);
                }),
            ],
            none(),
        )
        .build()
        .unwrap();
    assert_eq!(c.run(vec![]).await.unwrap(), [1, 10]);
}
