//! Child cadences: CHILD-1…6.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cadence_core::testing::{Call, RecordingHook};
use cadence_core::{
    BoxError, Cadence, CadenceError, CancellationToken, OnError, Outcome, RunOptions, note,
};
use common::*;

#[derive(Debug, Default, Clone, PartialEq)]
struct Order {
    total: u32,
    receipt: Option<String>,
    steps: Vec<String>,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Payment {
    amount: u32,
    charged: u32,
    log: Vec<String>,
}

fn payment_cadence() -> Cadence<Payment> {
    Cadence::<Payment>::new("payment")
        .then(
            "charge",
            step(|p: &mut Payment| {
                p.charged += p.amount;
                p.log.push(format!("charged {}", p.amount));
            }),
        )
        .build()
        .unwrap()
}

fn into_payment(o: &Order) -> Payment {
    Payment {
        amount: o.total,
        ..Payment::default()
    }
}

fn merge_payment(o: &mut Order, p: Payment) {
    o.receipt = Some(format!("paid {}", p.charged));
    o.steps.extend(p.log);
}

fn order_step(tag: &'static str) -> cadence_core::Note<Order> {
    step(move |o: &mut Order| o.steps.push(tag.into()))
}

// ---------------------------------------------------------------- CHILD-1

#[tokio::test]
async fn child_runs_between_into_child_and_merge() {
    // CHILD-1: into_child(&score), run the child on that C, then merge(&mut score, c).
    let c = Cadence::<Order>::new("checkout")
        .then("price", step(|o: &mut Order| o.total = 42))
        .child("pay", payment_cadence(), into_payment, merge_payment)
        .then("ship", order_step("ship"))
        .build()
        .unwrap();
    let out = c.run(Order::default()).await.unwrap();
    assert_eq!(out.receipt.as_deref(), Some("paid 42"));
    assert_eq!(out.steps, ["charged 42", "ship"]);
}

#[tokio::test]
async fn every_execution_starts_from_into_child() {
    // CHILD-1: no state carries over between runs (the child's score is made afresh each
    // time); one child definition serves several parents.
    let child = payment_cadence();
    let p1 = Cadence::<Order>::new("p1")
        .child("pay", child.clone(), into_payment, merge_payment)
        .build()
        .unwrap();
    let p2 = Cadence::<Order>::new("p2")
        .then("first", order_step("first"))
        .child("pay", child.clone(), into_payment, merge_payment)
        .child("again", child, into_payment, merge_payment)
        .build()
        .unwrap();
    for total in [1, 2, 3] {
        let out = p1
            .run(Order {
                total,
                ..Order::default()
            })
            .await
            .unwrap();
        assert_eq!(out.receipt, Some(format!("paid {total}")));
        assert_eq!(out.steps, [format!("charged {total}")]);
    }
    let out = p2
        .run(Order {
            total: 5,
            ..Order::default()
        })
        .await
        .unwrap();
    assert_eq!(out.steps, ["first", "charged 5", "charged 5"]);
    assert_eq!(out.receipt.as_deref(), Some("paid 5"));
}

#[tokio::test(start_paused = true)]
async fn one_child_definition_serves_concurrent_runs() {
    // CHILD-1, RUN-7: concurrent runs of parents sharing one child definition each get their
    // own child score.
    let child = Cadence::<Payment>::new("payment")
        .then(
            "charge",
            note::from_fn(|p: &mut Payment| {
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    p.charged = p.amount * 2;
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .build()
        .unwrap();
    let a = Cadence::<Order>::new("a")
        .child("pay", child.clone(), into_payment, merge_payment)
        .build()
        .unwrap();
    let b = Cadence::<Order>::new("b")
        .child("pay", child, into_payment, merge_payment)
        .build()
        .unwrap();
    let t0 = tokio::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..50u32 {
        let c = if i % 2 == 0 { a.clone() } else { b.clone() };
        set.spawn(async move {
            let out = c
                .run(Order {
                    total: i,
                    ..Order::default()
                })
                .await
                .unwrap();
            (i, out)
        });
    }
    let mut n = 0;
    while let Some(r) = set.join_next().await {
        let (i, out) = r.unwrap();
        assert_eq!(out.receipt, Some(format!("paid {}", i * 2)));
        n += 1;
    }
    assert_eq!(n, 50);
    assert_eq!(
        t0.elapsed(),
        Duration::from_millis(10),
        "runs were not concurrent"
    );
}

// ---------------------------------------------------------------- CHILD-2

#[tokio::test]
async fn child_run_identity_in_hooks() {
    // CHILD-2: run id `<parent run id>/<child measure path>`, parent_run_id set, the child's
    // own cadence name, paths relative to the child.
    let rec = RecordingHook::new();
    let c = Cadence::<Order>::new("checkout")
        .then("price", order_step("price"))
        .child("pay", payment_cadence(), into_payment, merge_payment)
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    c.run_with(Order::default(), RunOptions::default().with_run_id("r1"))
        .await
        .unwrap();
    let entries = rec.entries();
    let rows: Vec<(String, String, Option<String>, String)> = entries
        .iter()
        .map(|e| {
            (
                e.cadence.clone(),
                e.run_id.clone(),
                e.parent_run_id.clone(),
                e.call.to_string(),
            )
        })
        .collect();
    let top = |s: &str| ("checkout".to_owned(), "r1".to_owned(), None, s.to_owned());
    let sub = |s: &str| {
        (
            "payment".to_owned(),
            "r1/pay".to_owned(),
            Some("r1".to_owned()),
            s.to_owned(),
        )
    };
    assert_eq!(
        rows,
        [
            top("cadence_start"),
            top("measure_start price"),
            top("note_start price#1"),
            top("note_end price#1 Succeeded"),
            top("measure_end price Succeeded"),
            top("measure_start pay"),
            sub("cadence_start"),
            sub("measure_start charge"),
            sub("note_start charge#1"),
            sub("note_end charge#1 Succeeded"),
            sub("measure_end charge Succeeded"),
            sub("cadence_end Succeeded"),
            top("measure_end pay Succeeded"),
            top("cadence_end Succeeded"),
        ]
    );
}

#[tokio::test]
async fn grandchild_run_ids_nest() {
    // CHILD-2: a child of a child has run id `<child run id>/<measure>`; its parent is the
    // child run.
    let rec = RecordingHook::new();
    let grandchild = Cadence::<Log>::new("g")
        .then("leaf", push("leaf"))
        .build()
        .unwrap();
    let child = Cadence::<Log>::new("c")
        .child("inner", grandchild, |l: &Log| l.clone(), |l, c| *l = c)
        .build()
        .unwrap();
    let root = Cadence::<Log>::new("root")
        .child("outer", child, |l: &Log| l.clone(), |l, c| *l = c)
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let out = root
        .run_with(vec![], RunOptions::default().with_run_id("R"))
        .await
        .unwrap();
    assert_eq!(out, ["leaf"]);
    let leaf = rec
        .entries()
        .into_iter()
        .find(|e| e.call == Call::NoteStart("leaf".into(), 1))
        .unwrap();
    assert_eq!(leaf.cadence, "g");
    assert_eq!(leaf.run_id, "R/outer/inner");
    assert_eq!(leaf.parent_run_id.as_deref(), Some("R/outer"));
}

// ---------------------------------------------------------------- CHILD-3

#[tokio::test]
async fn parent_hooks_see_child_occurrences_first() {
    // CHILD-3: a child occurrence is delivered to the parent's hooks first, then the child's.
    let log = Shared::new();
    let child = Cadence::<Payment>::new("payment")
        .then("charge", step(|p: &mut Payment| p.charged = 1))
        .with_hooks(Tagged::new("child", &log))
        .build()
        .unwrap();
    let c = Cadence::<Order>::new("checkout")
        .child("pay", child, into_payment, merge_payment)
        .with_hooks(Tagged::new("parent", &log))
        .build()
        .unwrap();
    c.run(Order::default()).await.unwrap();
    assert_eq!(
        log.get(),
        [
            "parent cadence_start checkout",
            "parent measure_start pay",
            "parent cadence_start payment",
            "child cadence_start payment",
            "parent measure_start charge",
            "child measure_start charge",
            "parent note_start charge",
            "child note_start charge",
            "parent note_end charge Succeeded",
            "child note_end charge Succeeded",
            "parent cadence_end payment succeeded",
            "child cadence_end payment succeeded",
            "parent cadence_end checkout succeeded",
        ]
    );
}

#[tokio::test]
async fn childs_own_handler_applies_inside_the_child() {
    // CHILD-3: the child's on_error handler applies inside the child. With Continue, the
    // child ends Partial, merge runs and the parent goes on as if nothing failed.
    let rec = RecordingHook::new();
    let handled = Shared::new();
    let h = handled.clone();
    let child = Cadence::<Log>::new("inner")
        .then("bad", fail("bad", "child boom"))
        .then("good", push("good"))
        .on_error(
            move |l: &mut Log, e: &CadenceError| {
                h.push(e.to_string());
                l.push("child handled".into());
            },
            OnError::Continue,
        )
        .build()
        .unwrap();
    let parent_calls = Arc::new(AtomicUsize::new(0));
    let pc = parent_calls.clone();
    let c = Cadence::<Log>::new("outer")
        .child("sub", child, |_: &Log| vec![], |l, c| l.extend(c))
        .then("after", push("after"))
        .on_error(
            move |_: &mut Log, _: &CadenceError| {
                pc.fetch_add(1, Ordering::SeqCst);
            },
            OnError::Stop,
        )
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let r = c.run_with_report(vec![], RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert_eq!(r.score, ["bad", "child handled", "good", "after"]);
    assert_eq!(parent_calls.load(Ordering::SeqCst), 0);
    // The child's handler saw the full path (ERR-1: paths in errors are full paths).
    assert_eq!(handled.get().len(), 1);
    assert!(
        handled.get()[0].contains("'sub/bad'"),
        "{:?}",
        handled.get()
    );
    let lines = rec.lines();
    assert!(
        lines.contains(&"cadence_end Partial".to_owned()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"measure_end sub Succeeded".to_owned()),
        "{lines:?}"
    );
    assert_eq!(lines.last().unwrap(), "cadence_end Succeeded");
}

#[tokio::test]
async fn childs_handler_with_stop_fails_the_parent_with_the_original_error() {
    // CHILD-3, CHILD-4: a child handler with OnError::Stop does not absorb: the parent's
    // child measure fails with the child's error.
    let child = Cadence::<Log>::new("inner")
        .then("bad", fail("bad", "child boom"))
        .on_error(|_: &mut Log, _: &CadenceError| (), OnError::Stop)
        .build()
        .unwrap();
    let c = Cadence::<Log>::new("outer")
        .child("sub", child, |_: &Log| vec![], |l, c| l.extend(c))
        .build()
        .unwrap();
    let e = c.run(vec![]).await.unwrap_err();
    assert!(
        matches!(&e, CadenceError::Note { path, .. } if path == "sub/bad"),
        "{e:?}"
    );
}

// ---------------------------------------------------------------- CHILD-4

#[tokio::test]
async fn child_failure_fails_the_parent_and_skips_merge() {
    // CHILD-4: a child failure fails the parent's child measure with the child's error
    // unchanged (full path `pay/charge`); merge does not run.
    let merges = Arc::new(AtomicUsize::new(0));
    let m = merges.clone();
    let rec = RecordingHook::new();
    let child = Cadence::<Payment>::new("payment")
        .then(
            "charge",
            note::from_fn(|p: &mut Payment| {
                Box::pin(async move {
                    p.log.push("tried".into());
                    Err::<(), _>(std::io::Error::other("card declined"))
                })
            }),
        )
        .then("never", step(|p: &mut Payment| p.log.push("never".into())))
        .build()
        .unwrap();
    let c = Cadence::<Order>::new("checkout")
        .then("price", order_step("price"))
        .child("pay", child, into_payment, move |o: &mut Order, p| {
            m.fetch_add(1, Ordering::SeqCst);
            merge_payment(o, p)
        })
        .then("ship", order_step("ship"))
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let r = c
        .run_with_report(Order::default(), RunOptions::default())
        .await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.failed_measures, ["pay"]);
    assert_eq!(r.score.steps, ["price"]);
    assert_eq!(r.score.receipt, None);
    assert_eq!(merges.load(Ordering::SeqCst), 0);
    let e = r.error.unwrap();
    match &e {
        CadenceError::Note { path, source } => {
            assert_eq!(path, "pay/charge");
            assert_eq!(source.to_string(), "card declined");
        }
        other => panic!("expected Note, got {other:?}"),
    }
    assert!(e.find_source::<std::io::Error>().is_some());
    let lines = rec.lines();
    assert_eq!(
        lines[lines.len() - 5..],
        [
            "note_end charge#1 Failed",
            "measure_end charge Failed",
            "cadence_end Failed",
            "measure_end pay Failed",
            "cadence_end Failed",
        ]
    );
}

#[tokio::test]
async fn panic_in_a_child_note_uses_the_full_path() {
    // CHILD-4, NOTE-7: paths in errors are full paths.
    let child = Cadence::<Log>::new("inner")
        .sequence("s", [push("ok"), panics("p", "child panic")])
        .build()
        .unwrap();
    let c = Cadence::<Log>::new("outer")
        .child("sub", child, |_: &Log| vec![], |l, c| l.extend(c))
        .build()
        .unwrap();
    let e = c.run(vec![]).await.unwrap_err();
    assert!(
        matches!(&e, CadenceError::Panicked { path, message } if path == "sub/s/1" && message == "child panic"),
        "{e:?}"
    );
}

#[tokio::test]
async fn stop_inside_a_child_ends_only_the_child() {
    // CHILD-4: a stop inside the child ends only the child: merge runs and the parent
    // continues.
    let rec = RecordingHook::new();
    let child = Cadence::<Log>::new("inner")
        .then("a", push("child a"))
        .then("halt", stop("child halt", "done early"))
        .then("b", push("child b"))
        .build()
        .unwrap();
    let c = Cadence::<Log>::new("outer")
        .child(
            "sub",
            child,
            |_: &Log| vec![],
            |l, c| {
                l.extend(c);
                l.push("merged".into());
            },
        )
        .then("after", push("after"))
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let r = c.run_with_report(vec![], RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert_eq!(r.score, ["child a", "child halt", "merged", "after"]);
    let lines = rec.lines();
    assert!(lines.contains(&"note_end halt#1 Stopped".to_owned()));
    assert!(lines.contains(&"measure_end halt Stopped".to_owned()));
    assert!(lines.contains(&"cadence_end Stopped".to_owned()));
    assert!(!lines.contains(&"measure_start b".to_owned()));
    assert_eq!(lines.last().unwrap(), "cadence_end Succeeded");
}

// ---------------------------------------------------------------- CHILD-5 (cancellation)

#[tokio::test(start_paused = true)]
async fn parent_cancellation_propagates_into_the_child() {
    // CHILD-5: the parent's cancellation propagates into the child. RUN-6: the in-flight
    // note's token fires; each end is reported once, as Cancelled.
    let rec = RecordingHook::new();
    let tokens = Arc::new(std::sync::Mutex::new(Vec::<CancellationToken>::new()));
    let t = tokens.clone();
    let child = Cadence::<Log>::new("inner")
        .then(
            "wait",
            note::from_fn_with_context(move |l: &mut Log, cx| {
                t.lock().unwrap().push(cx.cancellation().clone());
                Box::pin(async move {
                    l.push("waiting".into());
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    l.push("woke".into());
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .build()
        .unwrap();
    let c = Cadence::<Log>::new("outer")
        .child("sub", child, |_: &Log| vec![], |l, c| l.extend(c))
        .then("after", push("after"))
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let token = CancellationToken::new();
    let canceller = {
        let token = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            token.cancel();
        })
    };
    let r = c
        .run_with_report(vec![], RunOptions::default().with_cancellation(token))
        .await;
    canceller.await.unwrap();
    assert_eq!(r.outcome, Outcome::Cancelled);
    assert!(matches!(r.error, Some(CadenceError::Cancelled)));
    let tokens = tokens.lock().unwrap();
    assert_eq!(tokens.len(), 1);
    assert!(
        tokens[0].is_cancelled(),
        "the child note's token did not fire"
    );
    assert_eq!(
        rec.lines(),
        [
            "cadence_start",
            "measure_start sub",
            "cadence_start",
            "measure_start wait",
            "note_start wait#1",
            "note_end wait#1 Cancelled",
            "measure_end wait Cancelled",
            "cadence_end Cancelled",
            "measure_end sub Cancelled",
            "cadence_end Cancelled",
        ]
    );
}

// ---------------------------------------------------------------- CHILD-6

#[tokio::test]
async fn panic_in_into_child_fails_the_measure() {
    // CHILD-6, GEN-5: a panic in into_child fails the measure with Panicked at its path.
    let rec = RecordingHook::new();
    let c = Cadence::<Log>::new("outer")
        .then("before", push("before"))
        .child(
            "sub",
            Cadence::<Log>::new("inner")
                .then("x", push("x"))
                .build()
                .unwrap(),
            |l: &Log| -> Log {
                if std::hint::black_box(!l.is_empty()) {
                    panic!("into_child exploded");
                }
                vec![]
            },
            |l: &mut Log, c| l.extend(c),
        )
        .then("after", push("after"))
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let r = c.run_with_report(vec![], RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.score, ["before"]);
    assert!(
        matches!(&r.error, Some(CadenceError::Panicked { path, message }) if path == "sub" && message == "into_child exploded"),
        "{:?}",
        r.error
    );
    // The child never started.
    assert!(!rec.lines().contains(&"measure_start x".to_owned()));
    assert!(rec.lines().contains(&"measure_end sub Failed".to_owned()));
}

#[tokio::test]
async fn panic_in_merge_fails_the_measure() {
    // CHILD-6, GEN-5: a panic in merge fails the measure with Panicked at its path.
    let c = Cadence::<Log>::new("outer")
        .child(
            "sub",
            Cadence::<Log>::new("inner")
                .then("x", push("x"))
                .build()
                .unwrap(),
            |_: &Log| vec![],
            |_: &mut Log, c: Log| {
                if std::hint::black_box(!c.is_empty()) {
                    panic!("merge exploded");
                }
            },
        )
        .then("after", push("after"))
        .build()
        .unwrap();
    let r = c.run_with_report(vec![], RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(!r.score.contains(&"after".to_owned()));
    assert!(
        matches!(&r.error, Some(CadenceError::Panicked { path, message }) if path == "sub" && message == "merge exploded"),
        "{:?}",
        r.error
    );
}

#[tokio::test]
async fn panic_in_a_nested_into_child_uses_the_full_measure_path() {
    // CHILD-6, GEN-2: the measure path of a grandchild measure is full (`outer/inner`).
    let grandchild = Cadence::<Log>::new("g")
        .then("leaf", push("leaf"))
        .build()
        .unwrap();
    let child = Cadence::<Log>::new("c")
        .child(
            "inner",
            grandchild,
            |l: &Log| -> Log {
                if std::hint::black_box(l.is_empty()) {
                    panic!("deep");
                }
                vec![]
            },
            |l, c| *l = c,
        )
        .build()
        .unwrap();
    let root = Cadence::<Log>::new("root")
        .child("outer", child, |l: &Log| l.clone(), |l, c| *l = c)
        .build()
        .unwrap();
    let e = root.run(vec![]).await.unwrap_err();
    assert!(
        matches!(&e, CadenceError::Panicked { path, message } if path == "outer/inner" && message == "deep"),
        "{e:?}"
    );
}

/// Records the paths a child run's `on_cadence_end` reports.
#[derive(Clone, Default)]
struct EndPaths(Shared);

impl cadence_core::Hook<Log> for EndPaths {
    fn on_cadence_end(
        &self,
        cx: &cadence_core::HookContext<'_>,
        _: &Log,
        _: Duration,
        o: &cadence_core::RunOutcome<'_>,
    ) {
        match o {
            cadence_core::RunOutcome::Stopped { path, .. } => {
                self.0.push(format!("{} stopped {path}", cx.cadence()))
            }
            cadence_core::RunOutcome::Partial { failed_measures } => self.0.push(format!(
                "{} partial {}",
                cx.cadence(),
                failed_measures.join(",")
            )),
            _ => {}
        }
    }
}

#[tokio::test]
async fn child_run_outcome_paths_are_relative_to_the_child() {
    // GEN-2, CHILD-2: hooks use (cadence, path) with paths relative to the cadence that
    // contains them; only errors and idempotency keys use full paths.
    let ends = EndPaths::default();
    let stopping = Cadence::<Log>::new("stopping")
        .then("halt", stop("halt", "r"))
        .build()
        .unwrap();
    let partial = Cadence::<Log>::new("partial")
        .then("bad", fail("bad", "x"))
        .on_error(|_: &mut Log, _: &CadenceError| (), OnError::Continue)
        .build()
        .unwrap();
    let c = Cadence::<Log>::new("outer")
        .child("sub", stopping, |_: &Log| vec![], |l, c| l.extend(c))
        .child("sub2", partial, |_: &Log| vec![], |l, c| l.extend(c))
        .with_hooks(ends.clone())
        .build()
        .unwrap();
    c.run(vec![]).await.unwrap();
    assert_eq!(
        ends.0.get(),
        ["stopping stopped halt", "partial partial bad"]
    );
}
