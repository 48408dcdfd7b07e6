//! Running: RUN-1…10 (RUN-2's checkpoint clause is out of scope).

mod common;

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cadence_core::testing::{Call, RecordingHook};
use cadence_core::{
    BoxError, Cadence, CadenceError, CancellationToken, ErrorKind, OnError, Outcome, RunOptions,
    TraceContext, handler, note,
};
use common::*;

fn is_lower_hex_32(s: &str) -> bool {
    s.len() == 32 && s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
}

fn simple() -> Cadence<Log> {
    Cadence::<Log>::new("simple")
        .then("a", push("a"))
        .then("b", push("b"))
        .build()
        .unwrap()
}

// ---------------------------------------------------------------- RUN-1

#[tokio::test]
async fn run_run_with_and_run_with_report_agree() {
    // RUN-1: run(score) = run_with(score, default); run_with_report returns a RunReport.
    let c = simple();
    assert_eq!(c.run(vec![]).await.unwrap(), ["a", "b"]);
    assert_eq!(
        c.run_with(vec![], RunOptions::default()).await.unwrap(),
        ["a", "b"]
    );
    let r = c
        .run_with_report(vec!["x".into()], RunOptions::default().with_run_id("given"))
        .await;
    assert_eq!(r.score, ["x", "a", "b"]);
    assert_eq!(r.run_id, "given");
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert!(r.failed_measures.is_empty());
    assert!(!r.resumed);
    assert!(!r.replayed);
    assert!(r.error.is_none());
    assert_eq!(r.into_result().unwrap(), ["x", "a", "b"]);
}

#[test]
fn run_options_setters() {
    // RUN-1: RunOptions `with_*` setters.
    let token = CancellationToken::new();
    let o = RunOptions::default()
        .with_run_id("id-1")
        .with_trace_context(
            TraceContext::new("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
                .with_tracestate("k=v"),
        )
        .with_allow_fingerprint_mismatch(true)
        .with_cancellation(token)
        .with_retain_outcome(Duration::from_secs(60));
    assert_eq!(o.run_id(), Some("id-1"));
    let t = o.trace_context().unwrap();
    assert_eq!(
        t.traceparent,
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(t.tracestate.as_deref(), Some("k=v"));
    assert_eq!(RunOptions::default().run_id(), None);
}

#[test]
fn run_futures_are_send() {
    // RUN-1: run futures are Send.
    let c = simple();
    let f1 = c.run(vec![]);
    let f2 = c.run_with(vec![], RunOptions::default());
    let f3 = c.run_with_report(vec![], RunOptions::default());
    assert_send(&f1);
    assert_send(&f2);
    assert_send(&f3);
    drop((f1, f2, f3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_can_be_spawned_on_a_multi_thread_runtime() {
    // RUN-1: a run future (with hooks, a child, branches and a blocking note) can be spawned.
    let rec = RecordingHook::new();
    let child = simple();
    let c = Cadence::<Log>::new("mt")
        .then("first", push("first"))
        .split("sp", |_: &Log| true, [push("t")], none())
        .child("ch", child, |_: &Log| vec![], |l, c| l.extend(c))
        .then(
            "blocking",
            note::blocking(|l: &mut Log| {
                l.push("blocking".into());
                Ok::<_, BoxError>(())
            }),
        )
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let out = tokio::spawn(async move { c.run(vec![]).await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out, ["first", "t", "a", "b", "blocking"]);
    assert_eq!(rec.lines().last().unwrap(), "cadence_end Succeeded");
}

// ---------------------------------------------------------------- RUN-2

#[tokio::test]
async fn invalid_run_ids_fail_before_any_hook() {
    // RUN-2: caller run ids are 1–255 bytes of printable ASCII, else Validation before any
    // hook.
    let long = "a".repeat(256);
    for bad in [
        "",
        long.as_str(),
        "a\nb",
        "tab\there",
        "caf\u{e9}",
        "del\u{7f}",
        "nul\0",
    ] {
        let rec = RecordingHook::new();
        let c = Cadence::<Log>::new("ids")
            .then("a", push("a"))
            .with_hooks(rec.clone())
            .build()
            .unwrap();
        let r = c
            .run_with_report(vec![], RunOptions::default().with_run_id(bad))
            .await;
        assert_eq!(r.outcome, Outcome::Failed, "{bad:?}");
        assert!(r.score.is_empty(), "{bad:?}: a note ran");
        let e = r.error.unwrap();
        assert_eq!(e.kind(), ErrorKind::Validation, "{bad:?}: {e:?}");
        assert!(
            rec.lines().is_empty(),
            "{bad:?}: hooks called: {:?}",
            rec.lines()
        );
        let e = c
            .run_with(vec![], RunOptions::default().with_run_id(bad))
            .await
            .unwrap_err();
        assert!(matches!(e, CadenceError::Validation { .. }));
    }
}

#[tokio::test]
async fn valid_run_ids_are_used_as_given() {
    // RUN-2: 1 and 255 bytes, any printable ASCII.
    let rec = RecordingHook::new();
    let c = Cadence::<Log>::new("ids")
        .then("a", push("a"))
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let max = "z".repeat(255);
    for good in ["x", max.as_str(), "order-42/retry:1 ~!@#$%^&*()_+{}|\"<>?"] {
        rec.clear();
        let r = c
            .run_with_report(vec![], RunOptions::default().with_run_id(good))
            .await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{good:?}: {:?}", r.error);
        assert_eq!(r.run_id, good);
        assert!(rec.entries().iter().all(|e| e.run_id == good));
    }
}

#[tokio::test]
async fn missing_run_id_is_generated() {
    // RUN-2: without checkpointing a missing id is generated: 32 random lowercase hex digits;
    // hooks and notes see the same id.
    let rec = RecordingHook::new();
    let c = Cadence::<Log>::new("gen")
        .then(
            "a",
            note::from_fn_with_context(|l: &mut Log, cx| {
                Box::pin(async move {
                    l.push(cx.run_id().to_owned());
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let r1 = c.run_with_report(vec![], RunOptions::default()).await;
    let r2 = c.run_with_report(vec![], RunOptions::default()).await;
    assert!(is_lower_hex_32(&r1.run_id), "{}", r1.run_id);
    assert!(is_lower_hex_32(&r2.run_id), "{}", r2.run_id);
    assert_ne!(r1.run_id, r2.run_id);
    assert_eq!(r1.score.len(), 1);
    assert_eq!(r1.score[0], r1.run_id);
    let entries = rec.entries();
    assert_eq!(entries[0].run_id, r1.run_id);
    assert_eq!(entries.last().unwrap().run_id, r2.run_id);
}

// ---------------------------------------------------------------- RUN-3, RUN-4

#[tokio::test(start_paused = true)]
async fn measures_run_one_at_a_time_in_order_on_one_score() {
    // RUN-3: one at a time, in declaration order, on one live score.
    let t0 = tokio::time::Instant::now();
    let c = Cadence::<Log>::new("order")
        .then("a", sleeps("a", 10))
        .sequence("s", [sleeps("s0", 10), sleeps("s1", 10)])
        .then(
            "b",
            step(|l: &mut Log| l.push(format!("b saw {}", l.len()))),
        )
        .build()
        .unwrap();
    let out = c.run(vec![]).await.unwrap();
    assert_eq!(out, ["a", "a!", "s0", "s0!", "s1", "s1!", "b saw 6"]);
    assert_eq!(t0.elapsed(), Duration::from_millis(30));
}

#[tokio::test]
async fn outcomes_and_results() {
    // RUN-4: Succeeded → Ok; Partial → Ok; Stopped → Ok; Failed → Err; Cancelled → Err.
    let ok = simple();
    assert_eq!(
        ok.run_with_report(vec![], RunOptions::default())
            .await
            .outcome,
        Outcome::Succeeded
    );

    let partial = Cadence::<Log>::new("p")
        .then("bad", fail("bad", "x"))
        .then("good", push("good"))
        .on_error(|_: &mut Log, _: &CadenceError| (), OnError::Continue)
        .build()
        .unwrap();
    let r = partial.run_with_report(vec![], RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Partial);
    assert!(r.error.is_none());
    assert!(partial.run(vec![]).await.is_ok());

    let stopped = Cadence::<Log>::new("s")
        .then("halt", stop("halt", "r"))
        .build()
        .unwrap();
    let r = stopped.run_with_report(vec![], RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Stopped);
    assert_eq!(stopped.run(vec![]).await.unwrap(), ["halt"]);

    let failed = Cadence::<Log>::new("f")
        .then("bad", fail("bad", "x"))
        .build()
        .unwrap();
    let r = failed.run_with_report(vec![], RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.failed_measures, ["bad"]);
    assert!(failed.run(vec![]).await.is_err());

    let token = CancellationToken::new();
    token.cancel();
    let r = ok
        .run_with_report(
            vec![],
            RunOptions::default().with_cancellation(token.clone()),
        )
        .await;
    assert_eq!(r.outcome, Outcome::Cancelled);
    assert!(matches!(
        ok.run_with(vec![], RunOptions::default().with_cancellation(token))
            .await,
        Err(CadenceError::Cancelled)
    ));
    assert_eq!(Outcome::Partial.as_str(), "partial");
}

// ---------------------------------------------------------------- RUN-5

fn count(lines: &[String], line: &str) -> usize {
    lines.iter().filter(|l| *l == line).count()
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_future_mid_note_reports_cancelled() {
    // RUN-5: dropping the run future mid-run synchronously reports note_end(Cancelled) for
    // the in-flight note, measure_end(Cancelled) and cadence_end(Cancelled), once each.
    // NOTE-3: the abandoned attempt's token fires.
    let rec = RecordingHook::new();
    let tokens = Arc::new(Mutex::new(Vec::<CancellationToken>::new()));
    let t = tokens.clone();
    let c = Cadence::<Log>::new("drop")
        .then("a", push("a"))
        .then(
            "slow",
            note::from_fn_with_context(move |l: &mut Log, cx| {
                t.lock().unwrap().push(cx.cancellation().clone());
                Box::pin(async move {
                    l.push("slow".into());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    l.push("slow done".into());
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .then("never", push("never"))
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let r = tokio::time::timeout(Duration::from_millis(10), c.run(vec![])).await;
    assert!(
        r.is_err(),
        "the run should have been dropped by the timeout"
    );
    let lines = rec.lines();
    assert_eq!(
        lines,
        [
            "cadence_start",
            "measure_start a",
            "note_start a#1",
            "note_end a#1 Succeeded",
            "measure_end a Succeeded",
            "measure_start slow",
            "note_start slow#1",
            "note_end slow#1 Cancelled",
            "measure_end slow Cancelled",
            "cadence_end Cancelled",
        ]
    );
    assert!(tokens.lock().unwrap()[0].is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn dropping_mid_sequence_and_mid_child_pairs_every_start() {
    // RUN-5: every start has its end, also for a composite measure and a child run.
    let rec = RecordingHook::new();
    let child = Cadence::<Log>::new("inner")
        .sequence("cs", [push("c0"), sleeps("c1", 100)])
        .build()
        .unwrap();
    let c = Cadence::<Log>::new("outer")
        .sequence("s", [push("s0"), sleeps("s1", 5)])
        .child("sub", child, |_: &Log| vec![], |l, c| l.extend(c))
        .then("never", push("never"))
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let r = tokio::time::timeout(Duration::from_millis(20), c.run(vec![])).await;
    assert!(r.is_err());
    let lines = rec.lines();
    assert_eq!(
        lines[lines.len() - 6..],
        [
            "note_start cs/1#1",
            "note_end cs/1#1 Cancelled",
            "measure_end cs Cancelled",
            "cadence_end Cancelled",
            "measure_end sub Cancelled",
            "cadence_end Cancelled",
        ]
    );
    assert_eq!(count(&lines, "cadence_start"), 2);
    assert_eq!(count(&lines, "cadence_end Cancelled"), 2);
    assert_eq!(count(&lines, "note_end cs/1#1 Cancelled"), 1);
    assert!(!lines.iter().any(|l| l.contains("never")));
}

#[tokio::test]
async fn dropping_mid_blocking_note_reports_cancelled_and_fires_its_token() {
    // RUN-5, NOTE-6: a dropped run detaches its blocking note and fires the note's token.
    let rec = RecordingHook::new();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = Mutex::new(Some(started_tx));
    let (saw_tx, saw_rx) = tokio::sync::oneshot::channel::<bool>();
    let saw_tx = Mutex::new(Some(saw_tx));
    let c = Cadence::<Log>::new("drop-blocking")
        .then(
            "spin",
            note::blocking_with_context(move |_: &mut Log, cx: &cadence_core::NoteContext<'_>| {
                if let Some(tx) = started_tx.lock().unwrap().take() {
                    let _ = tx.send(());
                }
                let give_up = std::time::Instant::now() + Duration::from_secs(20);
                while !cx.cancellation().is_cancelled() && std::time::Instant::now() < give_up {
                    std::thread::yield_now();
                }
                if let Some(tx) = saw_tx.lock().unwrap().take() {
                    let _ = tx.send(cx.cancellation().is_cancelled());
                }
                Ok::<_, BoxError>(())
            }),
        )
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let run = c.run(vec![]);
    tokio::select! {
        _ = run => panic!("the run finished before it was dropped"),
        _ = started_rx => {}
    }
    assert_eq!(
        rec.lines(),
        [
            "cadence_start",
            "measure_start spin",
            "note_start spin#1",
            "note_end spin#1 Cancelled",
            "measure_end spin Cancelled",
            "cadence_end Cancelled",
        ]
    );
    assert!(
        saw_rx.await.unwrap(),
        "the blocking note's token did not fire"
    );
}

// ---------------------------------------------------------------- RUN-6

#[tokio::test(start_paused = true)]
async fn cancellation_token_cancels_the_run() {
    // RUN-6: when the token fires, in-flight notes are dropped, their tokens fired, hooks
    // report Cancelled as in RUN-5, and the run returns Err(Cancelled). RUN-9: no handler.
    let rec = RecordingHook::new();
    let tokens = Arc::new(Mutex::new(Vec::<CancellationToken>::new()));
    let handled = Shared::new();
    let (t, h) = (tokens.clone(), handled.clone());
    let c = Cadence::<Log>::new("cancel")
        .then("a", push("a"))
        .then(
            "slow",
            note::from_fn_with_context(move |l: &mut Log, cx| {
                t.lock().unwrap().push(cx.cancellation().clone());
                Box::pin(async move {
                    l.push("slow".into());
                    tokio::time::sleep(Duration::from_secs(100)).await;
                    l.push("slow done".into());
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .then("never", push("never"))
        .on_error(
            move |_: &mut Log, e: &CadenceError| h.push(e.to_string()),
            OnError::Continue,
        )
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
    let t0 = tokio::time::Instant::now();
    let r = c
        .run_with_report(vec![], RunOptions::default().with_cancellation(token))
        .await;
    canceller.await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_secs(1));
    assert_eq!(r.outcome, Outcome::Cancelled);
    assert!(matches!(r.error, Some(CadenceError::Cancelled)));
    assert_eq!(r.score, ["a", "slow"]);
    assert!(
        handled.get().is_empty(),
        "handler called: {:?}",
        handled.get()
    );
    assert!(tokens.lock().unwrap()[0].is_cancelled());
    assert_eq!(
        rec.lines()[5..],
        [
            "measure_start slow",
            "note_start slow#1",
            "note_end slow#1 Cancelled",
            "measure_end slow Cancelled",
            "cadence_end Cancelled",
        ]
    );
}

#[tokio::test]
async fn already_cancelled_token_runs_nothing() {
    // RUN-6, RUN-5: a token fired before the run: Err(Cancelled), no note runs, one start
    // and one end.
    let rec = RecordingHook::new();
    let c = Cadence::<Log>::new("pre")
        .then("a", push("a"))
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let token = CancellationToken::new();
    token.cancel();
    let r = c
        .run_with_report(vec![], RunOptions::default().with_cancellation(token))
        .await;
    assert_eq!(r.outcome, Outcome::Cancelled);
    assert!(r.score.is_empty());
    let lines = rec.lines();
    assert_eq!(count(&lines, "cadence_start"), 1);
    assert_eq!(count(&lines, "cadence_end Cancelled"), 1);
    assert_eq!(lines.last().unwrap(), "cadence_end Cancelled");
    assert!(!lines.iter().any(|l| l.starts_with("note_start")));
}

#[tokio::test]
async fn token_fired_after_the_run_changes_nothing() {
    // RUN-6: only an in-flight run is cancelled.
    let token = CancellationToken::new();
    let r = simple()
        .run_with_report(
            vec![],
            RunOptions::default().with_cancellation(token.clone()),
        )
        .await;
    token.cancel();
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert_eq!(r.score, ["a", "b"]);
}

// ---------------------------------------------------------------- RUN-7

#[tokio::test(start_paused = true)]
async fn many_concurrent_runs_each_get_their_own_score() {
    // RUN-7: any number of runs of one cadence may run concurrently; they share only what the
    // user shares on purpose (here: one RecordingHook).
    let rec = RecordingHook::new();
    let c = Cadence::<Vec<u32>>::new("many")
        .then("tag", step(|v: &mut Vec<u32>| v.push(v[0] * 2)))
        .then(
            "wait",
            note::from_fn(|v: &mut Vec<u32>| {
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    v.push(v[0] * 3);
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let t0 = tokio::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100u32 {
        let c = c.clone();
        set.spawn(async move { c.run(vec![i]).await.unwrap() });
    }
    let mut seen = Vec::new();
    while let Some(out) = set.join_next().await {
        let out = out.unwrap();
        assert_eq!(out, [out[0], out[0] * 2, out[0] * 3]);
        seen.push(out[0]);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..100).collect::<Vec<_>>());
    assert_eq!(
        t0.elapsed(),
        Duration::from_millis(10),
        "runs did not overlap"
    );
    let mut per_run: HashMap<String, (usize, usize)> = HashMap::new();
    for e in rec.entries() {
        let slot = per_run.entry(e.run_id.clone()).or_default();
        match e.call {
            Call::CadenceStart => slot.0 += 1,
            Call::CadenceEnd(_) => slot.1 += 1,
            _ => {}
        }
    }
    assert_eq!(per_run.len(), 100);
    assert!(per_run.values().all(|v| *v == (1, 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_on_a_multi_thread_runtime() {
    // RUN-7, RUN-1: spawned runs of one cadence on several threads.
    let c = Cadence::<u64>::new("mt")
        .then("double", step(|n: &mut u64| *n *= 2))
        .then(
            "yield",
            note::from_fn(|n: &mut u64| {
                Box::pin(async move {
                    tokio::task::yield_now().await;
                    *n += 1;
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .build()
        .unwrap();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100u64 {
        let c = c.clone();
        set.spawn(async move { (i, c.run(i).await.unwrap()) });
    }
    while let Some(r) = set.join_next().await {
        let (i, out) = r.unwrap();
        assert_eq!(out, i * 2 + 1);
    }
}

// ---------------------------------------------------------------- RUN-8

#[tokio::test]
async fn stop_ends_the_run_cleanly() {
    // RUN-8: the stopping note's writes stay; no further note or measure runs and nothing is
    // reported for them; no handler; Ok(score) with outcome Stopped.
    let rec = RecordingHook::new();
    let handled = Shared::new();
    let h = handled.clone();
    let c = Cadence::<Log>::new("stop")
        .then("a", push("a"))
        .sequence("s", [push("s0"), stop("s1", "enough"), push("s2")])
        .then("b", push("b"))
        .on_error(
            move |_: &mut Log, e: &CadenceError| h.push(e.to_string()),
            OnError::Continue,
        )
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let r = c.run_with_report(vec![], RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Stopped);
    assert!(r.error.is_none());
    assert!(r.failed_measures.is_empty());
    assert_eq!(r.score, ["a", "s0", "s1"]);
    assert!(handled.get().is_empty());
    assert_eq!(
        rec.lines()[5..],
        [
            "measure_start s",
            "note_start s/0#1",
            "note_end s/0#1 Succeeded",
            "note_start s/1#1",
            "note_end s/1#1 Stopped",
            "measure_end s Stopped",
            "cadence_end Stopped",
        ]
    );
    assert_eq!(c.run(vec![]).await.unwrap(), ["a", "s0", "s1"]);
}

// ---------------------------------------------------------------- RUN-9

#[tokio::test]
async fn handler_stop_returns_the_original_error_after_the_handler() {
    // RUN-9: the handler is called once per failed measure, after the failure's hooks, with
    // the live score (the failed note's partial writes included). OnError::Stop: the run
    // ends and returns Err with the original error.
    let rec = RecordingHook::new();
    let calls = Arc::new(Mutex::new(Vec::<(Log, Vec<String>, String)>::new()));
    let (r2, c2) = (rec.clone(), calls.clone());
    let c = Cadence::<Log>::new("h")
        .then("a", push("a"))
        .then("bad", fail("bad partial", "boom"))
        .then("never", push("never"))
        .on_error(
            move |l: &mut Log, e: &CadenceError| {
                c2.lock()
                    .unwrap()
                    .push((l.clone(), r2.lines(), e.to_string()));
                l.push("repaired".into());
            },
            OnError::Stop,
        )
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let r = c.run_with_report(vec![], RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.score, ["a", "bad partial", "repaired"]);
    assert_eq!(r.failed_measures, ["bad"]);
    let e = r.error.unwrap();
    assert!(
        matches!(&e, CadenceError::Note { path, source } if path == "bad" && source.to_string() == "boom"),
        "{e:?}"
    );
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 1);
    let (score, lines_then, msg) = &calls[0];
    assert_eq!(score, &["a", "bad partial"]);
    assert_eq!(msg, &e.to_string());
    // HOOK-5 handler: … measure_end a Failed · ⟨handler⟩ · Stop: cadence_end Failed
    assert_eq!(lines_then.last().unwrap(), "measure_end bad Failed");
    assert_eq!(rec.lines().last().unwrap(), "cadence_end Failed");
    assert_eq!(rec.lines().len(), lines_then.len() + 1);
}

#[tokio::test]
async fn handler_continue_goes_on_and_ends_partial() {
    // RUN-9: OnError::Continue: the next measure runs (seeing the partial writes), the
    // handler runs once per failed measure, and the run returns Ok with outcome Partial.
    let rec = RecordingHook::new();
    let calls = Shared::new();
    let c2 = calls.clone();
    let c = Cadence::<Log>::new("h")
        .then("bad1", fail("bad1 partial", "first"))
        .then(
            "mid",
            step(|l: &mut Log| l.push(format!("mid saw {}", l.len()))),
        )
        .sequence("s", [push("s0"), fail("s1 partial", "second"), push("s2")])
        .then("last", push("last"))
        .on_error(
            move |l: &mut Log, e: &CadenceError| {
                c2.push(format!("{} at {}", e.kind(), e.path().unwrap_or("")));
                l.push("handled".into());
            },
            OnError::Continue,
        )
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let r = c.run_with_report(vec![], RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Partial);
    assert!(r.error.is_none());
    assert_eq!(r.failed_measures, ["bad1", "s"]);
    assert_eq!(
        r.score,
        [
            "bad1 partial",
            "handled",
            "mid saw 2",
            "s0",
            "s1 partial",
            "handled",
            "last"
        ]
    );
    assert_eq!(calls.get(), ["note at bad1", "note at s/1"]);
    let lines = rec.lines();
    assert_eq!(lines.last().unwrap(), "cadence_end Partial");
    // The rest of the failed sequence does not run.
    assert!(!lines.contains(&"note_start s/2#1".to_owned()));
    // HOOK-5: … measure_end a Failed · ⟨handler⟩ · Continue: measure_start b …
    let i = lines
        .iter()
        .position(|l| l == "measure_end bad1 Failed")
        .unwrap();
    assert_eq!(lines[i + 1], "measure_start mid");
}

#[tokio::test]
async fn async_handler() {
    // RUN-9: the handler may be async (handler::from_async) and fallible (Ok here).
    let c = Cadence::<Log>::new("h")
        .then("bad", fail("bad", "x"))
        .then("after", push("after"))
        .on_error(
            handler::from_async(|l: &mut Log, e: &CadenceError| {
                let kind = e.kind();
                Box::pin(async move {
                    tokio::task::yield_now().await;
                    l.push(format!("async handled {kind}"));
                    Ok::<(), BoxError>(())
                })
            }),
            OnError::Continue,
        )
        .build()
        .unwrap();
    assert_eq!(
        c.run(vec![]).await.unwrap(),
        ["bad", "async handled note", "after"]
    );
}

#[tokio::test]
async fn handler_is_not_called_for_stops() {
    // RUN-9, RUN-8: not called for stops.
    let handled = Shared::new();
    let h = handled.clone();
    let c = Cadence::<Log>::new("h")
        .then("halt", stop("halt", "why"))
        .on_error(
            move |_: &mut Log, e: &CadenceError| h.push(e.to_string()),
            OnError::Stop,
        )
        .build()
        .unwrap();
    assert_eq!(c.run(vec![]).await.unwrap(), ["halt"]);
    assert!(handled.get().is_empty());
}

// ---------------------------------------------------------------- RUN-10

async fn handler_failed(mode: OnError, panics: bool, is_async: bool) {
    let rec = RecordingHook::new();
    let b = Cadence::<Log>::new("hf")
        .then("bad", fail("bad", "original problem"))
        .then("after", push("after"))
        .with_hooks(rec.clone());
    let b = match (is_async, panics) {
        (false, false) => b.on_error(
            |_: &mut Log, _: &CadenceError| Err::<(), _>("handler problem"),
            mode,
        ),
        (false, true) => b.on_error(
            |l: &mut Log, _: &CadenceError| {
                if std::hint::black_box(!l.is_empty()) {
                    panic!("handler problem");
                }
            },
            mode,
        ),
        (true, false) => b.on_error(
            handler::from_async(|_: &mut Log, _: &CadenceError| {
                Box::pin(async { Err::<(), BoxError>("handler problem".into()) })
            }),
            mode,
        ),
        (true, true) => b.on_error(
            handler::from_async(|l: &mut Log, _: &CadenceError| {
                Box::pin(async move {
                    tokio::task::yield_now().await;
                    if std::hint::black_box(!l.is_empty()) {
                        panic!("handler problem");
                    }
                })
            }),
            mode,
        ),
    };
    let c = b.build().unwrap();
    let ctx = format!("mode {mode:?}, panics {panics}, async {is_async}");
    let r = c.run_with_report(vec![], RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Failed, "{ctx}");
    assert_eq!(r.score, ["bad"], "{ctx}: the run must end");
    let e = r.error.unwrap();
    assert_eq!(e.kind(), ErrorKind::HandlerFailed, "{ctx}");
    let text = e.to_string();
    assert!(text.contains("original problem"), "{ctx}: {text}");
    assert!(text.contains("handler problem"), "{ctx}: {text}");
    match &e {
        CadenceError::HandlerFailed { original, handler } => {
            assert!(
                matches!(&**original, CadenceError::Note { path, .. } if path == "bad"),
                "{ctx}"
            );
            assert!(handler.to_string().contains("handler problem"), "{ctx}");
        }
        other => panic!("{ctx}: expected HandlerFailed, got {other:?}"),
    }
    // ERR-5: source() is the original; handler() the handler's error.
    let src = e.source().unwrap().to_string();
    assert!(src.contains("original problem"), "{ctx}: {src}");
    assert!(
        e.handler().unwrap().to_string().contains("handler problem"),
        "{ctx}"
    );
    assert_eq!(rec.lines().last().unwrap(), "cadence_end Failed", "{ctx}");
}

#[tokio::test]
async fn failing_or_panicking_handler_ends_the_run_with_handler_failed() {
    // RUN-10: if the handler fails or panics, the run ends (Stop and Continue alike) with
    // HandlerFailed { original, handler }; both errors appear in Display. GEN-5: handler
    // panics are caught.
    for mode in [OnError::Stop, OnError::Continue] {
        for panics in [false, true] {
            for is_async in [false, true] {
                handler_failed(mode, panics, is_async).await;
            }
        }
    }
}
