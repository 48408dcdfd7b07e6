//! Checkpoints and resume in the engine (CKP-1…14, CHILD-5, NOTE-4, RUN-2/5/6).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cadence_core::checkpoint::{
    CheckpointStore, Lease, MemoryStore, OnCheckpointError, Record, RecordStatus, RunSummary,
    StoreFuture,
};
use cadence_core::testing::{Call, RecordingHook};
use cadence_core::{
    BoxError, Cadence, CadenceError, CheckpointErrorKind, MergeStrategy, Note, Outcome, RunOptions,
    Score, SkipReason, note,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Score)]
struct Job {
    log: Vec<String>,
    total: u32,
}

/// Counts executions per note name in a shared log, and fails `fail_name` while `fail` is set.
#[derive(Clone, Default)]
struct World {
    runs: Arc<Mutex<Vec<String>>>,
    fail: Arc<AtomicBool>,
}

impl World {
    fn step(&self, name: &'static str) -> Note<Job> {
        let w = self.clone();
        note::from_fn(move |j: &mut Job| {
            let w = w.clone();
            Box::pin(async move {
                w.runs.lock().unwrap().push(name.to_owned());
                if name == "boom" && w.fail.load(Ordering::SeqCst) {
                    return Err::<(), BoxError>("crash".into());
                }
                j.log.push(name.to_owned());
                j.total += 1;
                Ok(())
            })
        })
        .named(name)
    }

    fn executed(&self) -> Vec<String> {
        self.runs.lock().unwrap().clone()
    }
}

fn cadence(w: &World, store: Arc<dyn CheckpointStore>, rec: &RecordingHook) -> Cadence<Job> {
    Cadence::new("job")
        .then("a", w.step("a"))
        .sequence("b", [w.step("b1"), w.step("b2")])
        .then("c", w.step("boom"))
        .then("d", w.step("d"))
        .with_checkpoint(store)
        .with_hooks(rec.clone())
        .build()
        .unwrap()
}

fn id(run: &str) -> RunOptions {
    RunOptions::default().with_run_id(run)
}

#[tokio::test]
async fn a_failed_run_resumes_and_skips_completed_measures() {
    // CKP-4, CKP-5, CKP-7, HOOK-5 resume
    let w = World::default();
    w.fail.store(true, Ordering::SeqCst);
    let store = Arc::new(MemoryStore::new());
    let rec = RecordingHook::new();
    let c = cadence(&w, store.clone(), &rec);
    let r = c.run_with_report(Job::default(), id("r1")).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(!r.resumed);
    let stored = store
        .load("job", "r1")
        .await
        .unwrap()
        .expect("kept after failure");
    assert_eq!(stored.status, RecordStatus::Failed);
    assert_eq!(stored.completed, ["a", "b"]);
    assert_eq!(stored.score_value()["total"], 3);
    assert!(rec.lines().contains(&"checkpoint_saved b".to_owned()));

    w.fail.store(false, Ordering::SeqCst);
    rec.clear();
    w.runs.lock().unwrap().clear();
    let r = c.run_with_report(Job::default(), id("r1")).await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert!(r.resumed);
    assert_eq!(
        w.executed(),
        ["boom", "d"],
        "completed measures did not run again"
    );
    assert_eq!(
        r.score.log,
        ["a", "b1", "b2", "boom", "d"],
        "the stored score was restored"
    );
    assert_eq!(
        rec.lines()[..5],
        [
            "cadence_start",
            "checkpoint_loaded",
            "note_skipped a Checkpoint",
            "note_skipped b Checkpoint",
            "measure_start c",
        ]
    );
    assert!(rec.calls().contains(&Call::CheckpointLoaded(2, false)));
    // CKP-7: a succeeded run clears its record.
    assert_eq!(store.load("job", "r1").await.unwrap(), None);
}

#[tokio::test]
async fn checkpointing_requires_a_run_id() {
    // RUN-2
    let w = World::default();
    let rec = RecordingHook::new();
    let c = cadence(&w, Arc::new(MemoryStore::new()), &rec);
    let e = c.run(Job::default()).await.unwrap_err();
    assert!(e.to_string().contains("RunOptions::with_run_id"), "{e}");
    assert!(rec.calls().is_empty(), "rejected before any hook");
}

#[tokio::test]
async fn a_changed_cadence_refuses_to_resume_unless_allowed() {
    // CKP-3, CKP-6
    let w = World::default();
    w.fail.store(true, Ordering::SeqCst);
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let rec = RecordingHook::new();
    let _ = cadence(&w, store.clone(), &rec).run(Job::default()).await;
    let _ = cadence(&w, store.clone(), &rec)
        .run_with(Job::default(), id("r2"))
        .await;
    let before = store.load("job", "r2").await.unwrap().unwrap();

    let changed = Cadence::<Job>::new("job")
        .then("a", w.step("a"))
        .then("x", w.step("x"))
        .with_checkpoint(store.clone())
        .build()
        .unwrap();
    w.runs.lock().unwrap().clear();
    let e = changed
        .run_with(Job::default(), id("r2"))
        .await
        .unwrap_err();
    match &e {
        CadenceError::CheckpointMismatch {
            run_id,
            stored,
            current,
        } => {
            assert_eq!(run_id, "r2");
            assert_eq!(stored, &before.fingerprint);
            assert_eq!(current, changed.fingerprint());
        }
        e => panic!("{e:?}"),
    }
    assert!(e.to_string().contains("allow_fingerprint_mismatch"));
    assert!(w.executed().is_empty(), "refused before any note");
    assert_eq!(
        store.load("job", "r2").await.unwrap().unwrap(),
        before,
        "record untouched"
    );

    // Allowed: completed paths that still exist are skipped, others ignored.
    let r = changed
        .run_with_report(
            Job::default(),
            id("r2").with_allow_fingerprint_mismatch(true),
        )
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert_eq!(w.executed(), ["x"], "'a' still exists and was skipped");
}

#[tokio::test]
async fn retained_outcomes_replay_without_running() {
    // CKP-7
    let w = World::default();
    let store = Arc::new(MemoryStore::new());
    let rec = RecordingHook::new();
    let c = cadence(&w, store.clone(), &rec);
    let opts = id("r3").with_retain_outcome(Duration::from_secs(60));
    let first = c.run_with_report(Job::default(), opts.clone()).await;
    assert_eq!(first.outcome, Outcome::Succeeded);
    let stored = store.load("job", "r3").await.unwrap().unwrap();
    assert_eq!(stored.status, RecordStatus::Succeeded);
    assert!(stored.expires_at.is_some());

    w.runs.lock().unwrap().clear();
    rec.clear();
    let again = c.run_with_report(Job::default(), opts).await;
    assert!(again.replayed);
    assert_eq!(again.outcome, Outcome::Succeeded);
    assert_eq!(again.score, first.score);
    assert!(w.executed().is_empty());
    assert_eq!(rec.lines(), ["cadence_start", "cadence_end Succeeded"]);
}

#[tokio::test]
async fn corrupt_and_newer_records_fail_and_stay_untouched() {
    // CKP-8
    let w = World::default();
    let store = Arc::new(MemoryStore::new());
    let rec = RecordingHook::new();
    let c = cadence(&w, store.clone(), &rec);
    store.put_raw("job", "bad", b"{not json".to_vec());
    let e = c.run_with(Job::default(), id("bad")).await.unwrap_err();
    assert!(
        matches!(
            e,
            CadenceError::Checkpoint {
                kind: CheckpointErrorKind::Corrupt,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(store.get_raw("job", "bad").unwrap(), b"{not json");
    assert!(w.executed().is_empty());

    let newer = br#"{"version": 99, "anything": true}"#.to_vec();
    store.put_raw("job", "new", newer.clone());
    let e = c.run_with(Job::default(), id("new")).await.unwrap_err();
    assert!(matches!(
        e,
        CadenceError::Checkpoint {
            kind: CheckpointErrorKind::UnsupportedVersion,
            ..
        }
    ));
    assert_eq!(store.get_raw("job", "new").unwrap(), newer);

    // A score that does not deserialize into this type is corrupt for this cadence.
    let mut r = Record::new(
        "job",
        "wrong",
        c.fingerprint(),
        serde_json::json!({"log": 5}),
    );
    r.status = RecordStatus::Failed;
    store.save(&r, None).await.unwrap();
    let before = store.get_raw("job", "wrong").unwrap();
    let e = c.run_with(Job::default(), id("wrong")).await.unwrap_err();
    assert!(matches!(
        e,
        CadenceError::Checkpoint {
            kind: CheckpointErrorKind::Corrupt,
            ..
        }
    ));
    assert_eq!(store.get_raw("job", "wrong").unwrap(), before);
}

/// A store whose saves fail on demand.
#[derive(Clone)]
struct Flaky {
    inner: MemoryStore,
    fail_saves: Arc<AtomicBool>,
}

impl CheckpointStore for Flaky {
    fn load<'a>(&'a self, c: &'a str, r: &'a str) -> StoreFuture<'a, Option<Record>> {
        self.inner.load(c, r)
    }
    fn save<'a>(&'a self, rec: &'a Record, lease: Option<&'a Lease>) -> StoreFuture<'a, ()> {
        if self.fail_saves.load(Ordering::SeqCst) {
            return Box::pin(async {
                Err(CadenceError::checkpoint(
                    CheckpointErrorKind::Unavailable,
                    "disk on fire",
                ))
            });
        }
        self.inner.save(rec, lease)
    }
    fn clear<'a>(&'a self, c: &'a str, r: &'a str) -> StoreFuture<'a, ()> {
        self.inner.clear(c, r)
    }
    fn list<'a>(&'a self, c: Option<&'a str>) -> StoreFuture<'a, Vec<RunSummary>> {
        self.inner.list(c)
    }
    fn describe(&self) -> String {
        "flaky".into()
    }
}

#[tokio::test]
async fn save_failures_fail_the_run_or_continue() {
    // CKP-8, RUN-9 (handler not called for checkpoint errors)
    let w = World::default();
    let flaky = Flaky {
        inner: MemoryStore::new(),
        fail_saves: Arc::new(AtomicBool::new(true)),
    };
    let handled = Arc::new(AtomicU32::new(0));
    let h = handled.clone();
    let build = |mode| {
        let h = h.clone();
        Cadence::<Job>::new("job")
            .then("a", w.step("a"))
            .then("b", w.step("b"))
            .with_checkpoint(Arc::new(flaky.clone()))
            .on_checkpoint_error(mode)
            .on_error(
                move |_: &mut Job, _: &CadenceError| {
                    h.fetch_add(1, Ordering::SeqCst);
                },
                cadence_core::OnError::Continue,
            )
            .build()
            .unwrap()
    };
    let e = build(OnCheckpointError::Fail)
        .run_with(Job::default(), id("f1"))
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        CadenceError::Checkpoint {
            kind: CheckpointErrorKind::Unavailable,
            ..
        }
    ));
    assert_eq!(w.executed(), ["a"]);
    assert_eq!(handled.load(Ordering::SeqCst), 0);

    let rec = RecordingHook::new();
    let c = Cadence::<Job>::new("job")
        .then("a", w.step("a"))
        .then("b", w.step("b"))
        .with_checkpoint(Arc::new(flaky.clone()))
        .on_checkpoint_error(OnCheckpointError::Continue)
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let r = c.run_with_report(Job::default(), id("f2")).await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert!(rec.calls().contains(&Call::CheckpointError));

    // CKP-7, CKP-8: the last measure's save is carried by the end write; with
    // `retain_outcome` that write is a save, and its failure is that save's.
    let retained = |mode| {
        Cadence::<Job>::new("job")
            .then("a", w.step("a"))
            .with_checkpoint(Arc::new(flaky.clone()))
            .on_checkpoint_error(mode)
            .with_hooks(rec.clone())
            .build()
            .unwrap()
    };
    rec.clear();
    let opts = || id("f3").with_retain_outcome(Duration::from_secs(60));
    let r = retained(OnCheckpointError::Fail)
        .run_with_report(Job::default(), opts())
        .await;
    assert_eq!(r.outcome, Outcome::Failed, "the carried save failed");
    assert!(
        !rec.lines()
            .iter()
            .any(|l| l.starts_with("checkpoint_saved")),
        "{:?}",
        rec.lines()
    );
    // The failed status could not be written either: reported, not hidden.
    assert!(rec.calls().contains(&Call::CheckpointError));
    rec.clear();
    let r = retained(OnCheckpointError::Continue)
        .run_with_report(Job::default(), opts())
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert!(rec.calls().contains(&Call::CheckpointError));
    // Whatever failed, no lease is left behind: the key can run again at once.
    flaky.fail_saves.store(false, Ordering::SeqCst);
    let r = retained(OnCheckpointError::Fail)
        .run_with_report(Job::default(), opts())
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded);
}

#[tokio::test]
async fn the_last_measure_is_saved_by_the_end_write() {
    // CKP-4, CKP-7, CKP-14: one end write clears the record and releases the lease; the last
    // measure's `checkpoint_saved` is reported once that write is done, before the end hook.
    let w = World::default();
    let store = Arc::new(MemoryStore::new());
    let rec = RecordingHook::new();
    let c = cadence(&w, store.clone(), &rec);
    let r = c.run_with_report(Job::default(), id("e1")).await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    let lines = rec.lines();
    let tail = &lines[lines.len() - 3..];
    assert_eq!(
        tail,
        [
            "measure_end d Succeeded",
            "checkpoint_saved d",
            "cadence_end Succeeded"
        ]
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("checkpoint_saved"))
            .count(),
        4
    );
    assert_eq!(store.load("job", "e1").await.unwrap(), None);
    assert!(
        store
            .acquire_lease("job", "e1", Duration::from_secs(1))
            .await
            .is_ok()
    );

    // Retained: the terminal record is written by that one write.
    let r = c
        .run_with_report(
            Job::default(),
            id("e2").with_retain_outcome(Duration::from_secs(60)),
        )
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    let stored = store.load("job", "e2").await.unwrap().expect("retained");
    assert_eq!(stored.status, RecordStatus::Succeeded);
    assert_eq!(stored.score_value()["total"], 5);
    assert_eq!(stored.attempts.len(), 5, "{:?}", stored.attempts);

    // Partial: the failed status is written with the last measure completed.
    let partial = Cadence::<Job>::new("job")
        .then("c", w.step("boom"))
        .then("d", w.step("d"))
        .with_checkpoint(store.clone())
        .on_error(
            |_: &mut Job, _: &CadenceError| {},
            cadence_core::OnError::Continue,
        )
        .build()
        .unwrap();
    w.fail.store(true, Ordering::SeqCst);
    let r = partial.run_with_report(Job::default(), id("e3")).await;
    assert_eq!(r.outcome, Outcome::Partial);
    let stored = store.load("job", "e3").await.unwrap().expect("kept");
    assert_eq!(stored.status, RecordStatus::Partial);
    assert_eq!(stored.completed, ["d"]);
    assert_eq!(stored.score_value()["total"], 1);
}

#[tokio::test]
async fn attempts_accumulate_across_executions() {
    // CKP-12, NOTE-4 (the idempotency key is the same on every resume)
    let store = Arc::new(MemoryStore::new());
    let seen: Arc<Mutex<Vec<(u32, u32, String)>>> = Arc::default();
    let s2 = seen.clone();
    let flaky = note::from_fn_with_context(move |_: &mut Job, cx| {
        let s2 = s2.clone();
        Box::pin(async move {
            s2.lock()
                .unwrap()
                .push((cx.attempt(), cx.prior_attempts(), cx.idempotency_key()));
            Err::<(), BoxError>("always".into())
        })
    })
    .with_retry(
        cadence_core::retry::Retry::new(2)
            .with_backoff(cadence_core::retry::Backoff::fixed(Duration::ZERO))
            .with_jitter(cadence_core::retry::Jitter::None),
    );
    let c = Cadence::<Job>::new("job")
        .then("f", flaky)
        .with_checkpoint(store.clone())
        .build()
        .unwrap();
    let _ = c.run_with(Job::default(), id("att")).await;
    let _ = c.run_with(Job::default(), id("att")).await;
    let seen = seen.lock().unwrap().clone();
    let tuples: Vec<(u32, u32)> = seen.iter().map(|(a, p, _)| (*a, *p)).collect();
    assert_eq!(
        tuples,
        [(1, 0), (2, 0), (1, 2), (2, 2)],
        "max_attempts applies per execution"
    );
    assert!(seen.iter().all(|(_, _, k)| *k == seen[0].2));
    assert_eq!(seen[0].2, cadence_core::hash::fnv1a_128_hex(b"att\0f"));
    let stored = store.load("job", "att").await.unwrap().unwrap();
    assert_eq!(stored.attempts.get("f"), Some(&4));
}

#[tokio::test]
async fn notes_without_policies_count_attempts_too() {
    // CKP-12: a top-level note without policies in a run no hook observes runs on the lean
    // path; its attempts are still counted, saved and reported as prior attempts on resume.
    let store = Arc::new(MemoryStore::new());
    let seen: Arc<Mutex<Vec<(String, u32, u32)>>> = Arc::default();
    let fail = Arc::new(AtomicBool::new(true));
    let step = |name: &'static str, fails: bool| {
        let (seen, fail) = (seen.clone(), fail.clone());
        note::from_fn_with_context(move |j: &mut Job, cx| {
            let (seen, fail) = (seen.clone(), fail.clone());
            Box::pin(async move {
                let entry = (name.to_owned(), cx.attempt(), cx.prior_attempts());
                seen.lock().unwrap().push(entry);
                if fails && fail.load(Ordering::SeqCst) {
                    return Err::<(), BoxError>("not yet".into());
                }
                j.total += 1;
                Ok(())
            })
        })
    };
    let c = Cadence::<Job>::new("job")
        .then("a", step("a", false))
        .then("b", step("b", true))
        .then("c", step("c", false))
        .with_checkpoint(store.clone())
        .build()
        .unwrap();
    for _ in 0..2 {
        assert!(c.run_with(Job::default(), id("lean")).await.is_err());
    }
    let stored = store.load("job", "lean").await.unwrap().unwrap();
    assert_eq!(stored.status, RecordStatus::Failed);
    assert_eq!(stored.completed, ["a"]);
    let counts: Vec<(&str, u32)> = stored.attempts.iter().map(|(k, v)| (&**k, *v)).collect();
    assert_eq!(counts, [("a", 1), ("b", 2)]);
    fail.store(false, Ordering::SeqCst);
    let done = c.run_with(Job::default(), id("lean")).await.unwrap();
    assert_eq!(done.total, 3);
    let seen = seen.lock().unwrap().clone();
    let expected = [
        ("a", 1, 0),
        ("b", 1, 0),
        ("b", 1, 1),
        ("b", 1, 2),
        ("c", 1, 0),
    ];
    let seen: Vec<(&str, u32, u32)> = seen.iter().map(|(n, a, p)| (&**n, *a, *p)).collect();
    assert_eq!(seen, expected);
}

/// A score that refuses to serialize once poisoned.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Score)]
struct Picky {
    total: u32,
    poisoned: bool,
}

impl Serialize for Picky {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        use serde::ser::{Error, SerializeStruct};
        if self.poisoned {
            return Err(Ser::Error::custom("poisoned"));
        }
        let mut st = s.serialize_struct("Picky", 2)?;
        st.serialize_field("total", &self.total)?;
        st.serialize_field("poisoned", &self.poisoned)?;
        st.end()
    }
}

#[tokio::test]
async fn the_last_measure_is_encoded_only_when_the_end_write_writes_it() {
    // CKP-4, CKP-7, CKP-8: the last measure's save is carried by the end write. A cleared
    // record never needs its score; a written one does, and an encoding failure there is that
    // save's failure: the run fails at that measure, its record without it.
    let store = Arc::new(MemoryStore::new());
    let c = Cadence::<Picky>::new("picky")
        .then(
            "a",
            note::from_fn(|p: &mut Picky| {
                p.total += 1;
                Box::pin(async { Ok::<_, BoxError>(()) })
            }),
        )
        .then(
            "b",
            note::from_fn(|p: &mut Picky| {
                p.poisoned = true;
                Box::pin(async { Ok::<_, BoxError>(()) })
            }),
        )
        .with_checkpoint(store.clone())
        .build()
        .unwrap();
    let done = c.run_with(Picky::default(), id("p1")).await.unwrap();
    assert!(done.poisoned);
    assert_eq!(store.load("picky", "p1").await.unwrap(), None);

    let retained = id("p2").with_retain_outcome(Duration::from_secs(60));
    let r = c.run_with_report(Picky::default(), retained).await;
    assert_eq!(r.outcome, Outcome::Failed);
    let err = c
        .run_with(
            Picky::default(),
            id("p3").with_retain_outcome(Duration::from_secs(60)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CadenceError::Checkpoint { .. }), "{err:?}");
    for run in ["p2", "p3"] {
        let stored = store.load("picky", run).await.unwrap().expect("kept");
        assert_eq!(stored.status, RecordStatus::Failed);
        assert_eq!(stored.completed, ["a"]);
        assert_eq!(stored.score_value()["total"], 1);
        assert_eq!(stored.score_value()["poisoned"], false);
    }
}

#[tokio::test(start_paused = true)]
async fn a_second_run_with_the_same_key_is_refused() {
    // CKP-9, RUN-7
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let slow = note::from_fn(|_: &mut Job| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, BoxError>(())
        })
    });
    let c = Cadence::<Job>::new("job")
        .then("slow", slow)
        .with_checkpoint(store.clone())
        .build()
        .unwrap();
    let (a, b) = tokio::join!(
        c.run_with(Job::default(), id("same")),
        c.run_with(Job::default(), id("same"))
    );
    let errors: Vec<CadenceError> = [a, b].into_iter().filter_map(Result::err).collect();
    assert_eq!(errors.len(), 1);
    assert!(matches!(
        errors[0],
        CadenceError::Checkpoint {
            kind: CheckpointErrorKind::LeaseHeld,
            ..
        }
    ));
    // Another run id is fine.
    c.run_with(Job::default(), id("other")).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_cancels_the_run() {
    // CKP-9: a stale owner stops working and never overwrites the record.
    let store = Arc::new(MemoryStore::new());
    let hang = note::from_fn(|_: &mut Job| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, BoxError>(())
        })
    });
    let c = Cadence::<Job>::new("job")
        .then("hang", hang)
        .with_checkpoint(store.clone())
        .with_lease_ttl(Duration::from_secs(3))
        .build()
        .unwrap();
    let run = tokio::spawn({
        let c = c.clone();
        async move { c.run_with(Job::default(), id("leased")).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    // Another worker steals the run after the lease expired: simulate by expiring time while
    // the renewal cannot happen (take the lease away with a newer token).
    store
        .release_lease(&Lease::new("job", "leased", 1))
        .await
        .unwrap();
    let thief = store
        .acquire_lease("job", "leased", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(thief.token, 2);
    let e = run.await.unwrap().unwrap_err();
    assert!(
        matches!(
            e,
            CadenceError::Checkpoint {
                kind: CheckpointErrorKind::LeaseLost,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn cancelled_and_dropped_runs_keep_their_checkpoint() {
    // RUN-5, RUN-6, CKP-7
    let store = Arc::new(MemoryStore::new());
    let w = World::default();
    let hang = note::from_fn(|_: &mut Job| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, BoxError>(())
        })
    });
    let c = Cadence::<Job>::new("job")
        .then("a", w.step("a"))
        .then("hang", hang)
        .with_checkpoint(store.clone())
        .build()
        .unwrap();
    let token = cadence_core::CancellationToken::new();
    let t2 = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        t2.cancel();
    });
    let e = c
        .run_with(Job::default(), id("cx").with_cancellation(token))
        .await
        .unwrap_err();
    assert!(matches!(e, CadenceError::Cancelled));
    let stored = store.load("job", "cx").await.unwrap().unwrap();
    assert_eq!(stored.completed, ["a"]);

    let dropped =
        tokio::time::timeout(Duration::from_secs(1), c.run_with(Job::default(), id("dr"))).await;
    assert!(dropped.is_err());
    tokio::task::yield_now().await;
    assert_eq!(
        store.load("job", "dr").await.unwrap().unwrap().completed,
        ["a"]
    );
    // The in-process guard is gone: the same run id runs again (and resumes).
    let again = tokio::time::timeout(
        Duration::from_secs(1),
        c.run_with_report(Job::default(), id("dr")),
    )
    .await;
    assert!(
        again.is_err(),
        "still hangs in the same note, but was admitted"
    );
}

#[tokio::test]
async fn unfinished_groups_rerun_only_unfinished_members() {
    // CKP-4, CKP-5 for parallel groups
    let store = Arc::new(MemoryStore::new());
    let w = World::default();
    w.fail.store(true, Ordering::SeqCst);
    let rec = RecordingHook::new();
    let c = Cadence::<Job>::new("job")
        .sync_with(
            "g",
            [w.step("x"), w.step("boom"), w.step("y")],
            MergeStrategy::SmartMerge,
        )
        .with_checkpoint(store.clone())
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let _ = c.run_with(Job::default(), id("grp")).await;
    let stored = store.load("job", "grp").await.unwrap().unwrap();
    assert!(stored.completed.is_empty());
    assert!(
        stored.members.contains_key("g/x"),
        "{:?}",
        stored.members.keys()
    );

    w.fail.store(false, Ordering::SeqCst);
    w.runs.lock().unwrap().clear();
    rec.clear();
    let r = c.run_with_report(Job::default(), id("grp")).await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert!(
        !w.executed().contains(&"x".to_owned()),
        "{:?}",
        w.executed()
    );
    assert!(
        rec.calls()
            .contains(&Call::NoteSkipped("g/x".into(), SkipReason::Checkpoint))
    );
    let mut log = r.score.log.clone();
    log.sort();
    assert_eq!(log, ["boom", "x", "y"], "all results merged");
}

#[tokio::test]
async fn a_childs_own_store_is_not_used_as_a_child() {
    // CHILD-5, DSL-5
    let child_store = Arc::new(MemoryStore::new());
    let w = World::default();
    let child = Cadence::<Job>::new("child")
        .then("inner", w.step("inner"))
        .with_checkpoint(child_store.clone())
        .build()
        .unwrap();
    let parent_store = Arc::new(MemoryStore::new());
    let p = Cadence::<Job>::new("parent")
        .child(
            "c",
            child,
            |_: &Job| Job::default(),
            |p: &mut Job, c: Job| p.total += c.total,
        )
        .then("boom", w.step("boom"))
        .with_checkpoint(parent_store.clone())
        .build()
        .unwrap();
    assert_eq!(p.warnings().len(), 1, "{:?}", p.warnings());
    w.fail.store(true, Ordering::SeqCst);
    let _ = p.run_with(Job::default(), id("pc")).await;
    assert!(child_store.list(None).await.unwrap().is_empty());
    let stored = parent_store.load("parent", "pc").await.unwrap().unwrap();
    assert_eq!(
        stored.completed,
        ["c"],
        "the child is one unit of the parent's checkpoint"
    );
}

#[test]
fn describe_says_checkpointing_and_double_store_is_refused() {
    // DIAG-5, DSL-4
    let w = World::default();
    let c = cadence(&w, Arc::new(MemoryStore::new()), &RecordingHook::new());
    assert!(c.describe().checkpointing);
    let e = Cadence::<Job>::new("job")
        .then("a", w.step("a"))
        .with_checkpoint(Arc::new(MemoryStore::new()))
        .with_checkpoint(Arc::new(MemoryStore::new()))
        .build()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("with_checkpoint is called more than once")
    );
}

#[tokio::test]
async fn started_events_say_resumed_and_replayed() {
    // EVT-2 cadence.started {resumed, replayed}, EVT-3 (a resumed execution starts at seq 0)
    let w = World::default();
    w.fail.store(true, Ordering::SeqCst);
    let emitter = cadence_core::EventEmitter::new();
    let seen: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let s2 = seen.clone();
    emitter.on("cadence.started", move |e: &cadence_core::Event| {
        s2.lock()
            .unwrap()
            .push((e.seq, serde_json::to_string(e).unwrap()));
    });
    let c = Cadence::<Job>::new("job")
        .then("a", w.step("a"))
        .then("c", w.step("boom"))
        .with_checkpoint(Arc::new(MemoryStore::new()))
        .with_hooks(emitter.clone())
        .build()
        .unwrap();
    let _ = c.run_with(Job::default(), id("ev")).await;
    w.fail.store(false, Ordering::SeqCst);
    let _ = c.run_with(Job::default(), id("ev")).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].0, 0);
    assert!(seen[0].1.contains(r#""resumed":false"#), "{}", seen[0].1);
    assert!(seen[1].1.contains(r#""resumed":true"#), "{}", seen[1].1);
}
