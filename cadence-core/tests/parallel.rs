//! Parallel groups: `#[derive(Score)]`, `.sync`, merge strategies (PAR-1…12).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cadence_core::score::FieldClass;
use cadence_core::testing::RecordingHook;
use cadence_core::{
    BoxError, Cadence, CadenceError, Control, MergeConflict, MergeStrategy, Note, Outcome,
    RunOptions, Score, Shared, note,
};

#[derive(Debug, Clone, Default, PartialEq, Score)]
struct Doc {
    title: String,
    total: u32,
    tags: Vec<String>,
    meta: BTreeMap<String, u32>,
    seen: BTreeSet<u32>,
    #[score(skip)]
    scratch: u32,
    log: Shared<Vec<String>>,
}

fn n(f: impl Fn(&mut Doc) + Send + Sync + 'static) -> Note<Doc> {
    let f = Arc::new(f);
    note::from_fn(move |d: &mut Doc| {
        let f = f.clone();
        Box::pin(async move {
            f(d);
            Ok::<_, BoxError>(())
        })
    })
}

fn sleeper(ms: u64, f: impl Fn(&mut Doc) + Send + Sync + 'static) -> Note<Doc> {
    let f = Arc::new(f);
    note::from_fn(move |d: &mut Doc| {
        let f = f.clone();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            f(d);
            Ok::<_, BoxError>(())
        })
    })
}

fn failing(ms: u64) -> Note<Doc> {
    note::from_fn(move |_: &mut Doc| {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Err::<(), BoxError>("member failed".into())
        })
    })
}

#[test]
fn derive_classes_fields_by_type() {
    // PAR-1, PAR-2, PAR-3: skip and Shared are left out; classes by declared type.
    let fields: Vec<_> = Doc::FIELDS.iter().map(|f| (f.name, f.class)).collect();
    assert_eq!(
        fields,
        [
            ("title", FieldClass::Value),
            ("total", FieldClass::Value),
            ("tags", FieldClass::Sequence),
            ("meta", FieldClass::Map),
            ("seen", FieldClass::Set),
        ]
    );

    #[derive(Clone, Score)]
    struct Overrides {
        #[score(merge = "value")]
        whole: Vec<u8>,
        #[score(merge = "sequence")]
        queue: std::collections::VecDeque<u8>,
    }
    let classes: Vec<_> = Overrides::FIELDS.iter().map(|f| f.class).collect();
    assert_eq!(classes, [FieldClass::Value, FieldClass::Sequence]);
}

#[tokio::test(start_paused = true)]
async fn members_never_see_each_others_writes() {
    // PAR-4
    let c = Cadence::<Doc>::new("g")
        .sync(
            "enrich",
            [
                note::named(
                    "a",
                    sleeper(5, |d| {
                        assert_eq!(d.total, 0, "a must not see b's write");
                        d.title = "from a".into();
                    }),
                ),
                note::named(
                    "b",
                    n(|d| {
                        assert!(d.title.is_empty(), "b must not see a's write");
                        d.total = 7;
                    }),
                ),
            ],
        )
        .build()
        .unwrap();
    let d = c.run(Doc::default()).await.unwrap();
    assert_eq!((d.title.as_str(), d.total), ("from a", 7));
}

#[tokio::test(start_paused = true)]
async fn hundred_sleeping_members_take_the_time_of_one() {
    // PAR-4: 100 members sleeping 10 ms finish in 10 ms of (paused) time.
    let members: Vec<Note<Doc>> = (0..100)
        .map(|i| {
            note::named(
                format!("m{i}"),
                sleeper(10, move |d| {
                    d.tags.push(format!("t{i}"));
                }),
            )
        })
        .collect();
    let c = Cadence::<Doc>::new("g")
        .sync_with("fan", members, MergeStrategy::SmartMerge)
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let d = c.run(Doc::default()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(10));
    // PAR-7: merged in declaration order, not completion order.
    let expected: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
    assert_eq!(d.tags, expected);
}

#[tokio::test(start_paused = true)]
async fn merge_follows_declaration_order_not_completion_order() {
    // PAR-7, PAR-9
    let c = Cadence::<Doc>::new("g")
        .sync_with(
            "g",
            [
                note::named("slow", sleeper(20, |d| d.title = "slow".into())),
                note::named("fast", sleeper(1, |d| d.title = "fast".into())),
            ],
            MergeStrategy::LastWriteWins,
        )
        .build()
        .unwrap();
    assert_eq!(c.run(Doc::default()).await.unwrap().title, "fast");
}

#[tokio::test]
async fn fail_on_conflict_names_field_and_members_but_no_values() {
    // PAR-8, PAR-12
    let c = Cadence::<Doc>::new("c")
        .then("seed", n(|d| d.title = "before".into()))
        .sync(
            "enrich",
            [
                note::named("a", n(|d| d.title = "secret-a".into())),
                note::named("b", n(|d| d.total = 1)),
                note::named("c", n(|d| d.title = "secret-c".into())),
            ],
        )
        .build()
        .unwrap();
    let report = c
        .run_with_report(Doc::default(), RunOptions::default())
        .await;
    let err = report.error.as_ref().unwrap();
    match err {
        CadenceError::MergeConflict(MergeConflict {
            group,
            field,
            notes,
            ..
        }) => {
            assert_eq!(group, "enrich");
            assert_eq!(field, "title");
            assert_eq!(notes, &["a", "c"]);
        }
        other => panic!("expected a merge conflict, got {other:?}"),
    }
    let text = err.to_string();
    assert!(!text.contains("secret"), "values must never appear: {text}");
    assert!(
        text.contains("'title'") && text.contains("'a' and 'c'"),
        "{text}"
    );
    // PAR-12: atomic — b's change to `total` was not applied either.
    assert_eq!(report.score.title, "before");
    assert_eq!(report.score.total, 0);
}

#[tokio::test]
async fn equal_new_values_are_not_a_conflict() {
    // PAR-8
    let c = Cadence::<Doc>::new("c")
        .sync(
            "g",
            [
                note::named("a", n(|d| d.total = 5)),
                note::named("b", n(|d| d.total = 5)),
            ],
        )
        .build()
        .unwrap();
    assert_eq!(c.run(Doc::default()).await.unwrap().total, 5);
}

#[tokio::test]
async fn last_write_wins_never_conflicts() {
    // PAR-9
    let c = Cadence::<Doc>::new("c")
        .sync_with(
            "g",
            [
                note::named("a", n(|d| d.total = 1)),
                note::named("b", n(|d| d.total = 2)),
                note::named("c", n(|d| d.title = "c".into())),
            ],
            MergeStrategy::LastWriteWins,
        )
        .build()
        .unwrap();
    let d = c.run(Doc::default()).await.unwrap();
    assert_eq!((d.total, d.title.as_str()), (2, "c"));
}

fn smart(members: Vec<Note<Doc>>, seed: Doc) -> (Doc, Option<CadenceError>) {
    let c = Cadence::<Doc>::new("c")
        .sync_with("g", members, MergeStrategy::SmartMerge)
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let r = rt.block_on(c.run_with_report(seed, RunOptions::default()));
    (r.score, r.error)
}

#[test]
fn smart_merge_sequences() {
    // PAR-10: appends concatenate in declaration order; a rewrite conflicts.
    let seed = Doc {
        tags: vec!["x".into()],
        ..Doc::default()
    };
    let (d, e) = smart(
        vec![
            note::named("a", n(|d| d.tags.push("a".into()))),
            note::named("b", n(|d| d.tags.extend(["b1".into(), "b2".into()]))),
        ],
        seed.clone(),
    );
    assert!(e.is_none());
    assert_eq!(d.tags, ["x", "a", "b1", "b2"]);

    let (d, e) = smart(
        vec![
            note::named("a", n(|d| d.tags.push("a".into()))),
            note::named("b", n(|d| d.tags.clear())),
        ],
        seed.clone(),
    );
    match e {
        Some(CadenceError::MergeConflict(c)) => {
            assert_eq!(c.field, "tags");
            assert_eq!(c.notes, ["a", "b"]);
        }
        other => panic!("expected conflict, got {other:?}"),
    }
    assert_eq!(d.tags, ["x"], "PAR-12: untouched on conflict");
}

#[test]
fn smart_merge_maps() {
    // PAR-10: per key; equal values merge, removals apply, different values conflict.
    let seed = Doc {
        meta: BTreeMap::from([("keep".into(), 1), ("drop".into(), 2)]),
        ..Doc::default()
    };
    let (d, e) = smart(
        vec![
            note::named(
                "a",
                n(|d| {
                    let _ = d.meta.insert("new".into(), 3);
                }),
            ),
            note::named(
                "b",
                n(|d| {
                    let _ = d.meta.insert("new".into(), 3);
                }),
            ),
            note::named(
                "c",
                n(|d| {
                    let _ = d.meta.remove("drop");
                }),
            ),
        ],
        seed.clone(),
    );
    assert!(e.is_none(), "{e:?}");
    assert_eq!(
        d.meta,
        BTreeMap::from([("keep".into(), 1), ("new".into(), 3)])
    );
    let (_, e) = smart(
        vec![
            note::named(
                "a",
                n(|d| {
                    let _ = d.meta.insert("drop".into(), 9);
                }),
            ),
            note::named(
                "b",
                n(|d| {
                    let _ = d.meta.remove("drop");
                }),
            ),
        ],
        seed,
    );
    assert!(matches!(e, Some(CadenceError::MergeConflict(ref c)) if c.field == "meta"));
}

#[test]
fn smart_merge_sets() {
    // PAR-10: union of additions; a removal conflicts.
    let seed = Doc {
        seen: BTreeSet::from([1]),
        ..Doc::default()
    };
    let (d, e) = smart(
        vec![
            note::named(
                "a",
                n(|d| {
                    let _ = d.seen.insert(2);
                }),
            ),
            note::named(
                "b",
                n(|d| {
                    let _ = d.seen.insert(3);
                }),
            ),
        ],
        seed.clone(),
    );
    assert!(e.is_none());
    assert_eq!(d.seen, BTreeSet::from([1, 2, 3]));
    let (_, e) = smart(
        vec![
            note::named(
                "a",
                n(|d| {
                    let _ = d.seen.insert(2);
                }),
            ),
            note::named(
                "b",
                n(|d| {
                    let _ = d.seen.remove(&1);
                }),
            ),
        ],
        seed,
    );
    match e {
        Some(CadenceError::MergeConflict(c)) => {
            assert_eq!(
                (c.field.as_str(), c.notes.as_slice()),
                ("seen", &["a".to_owned(), "b".to_owned()][..])
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn smart_merge_values_behave_as_fail_on_conflict() {
    // PAR-10 (values as PAR-8)
    let (_, e) = smart(
        vec![
            note::named("a", n(|d| d.total = 1)),
            note::named("b", n(|d| d.total = 2)),
        ],
        Doc::default(),
    );
    assert!(matches!(e, Some(CadenceError::MergeConflict(ref c)) if c.field == "total"));
}

#[tokio::test]
async fn custom_merge_decides_everything() {
    // PAR-11
    let c = Cadence::<Doc>::new("c")
        .sync_with(
            "g",
            [
                note::named("a", n(|d| d.total = 2)),
                note::named("b", n(|d| d.total = 3)),
            ],
            MergeStrategy::custom(|live: &mut Doc, snap: &Doc, results: &[&Doc]| {
                assert_eq!(snap.total, 10);
                live.total = snap.total + results.iter().map(|r| r.total).sum::<u32>();
                Ok(())
            }),
        )
        .build()
        .unwrap();
    let d = c
        .run(Doc {
            total: 10,
            ..Doc::default()
        })
        .await
        .unwrap();
    assert_eq!(d.total, 15);

    let c = Cadence::<Doc>::new("c")
        .sync_with(
            "g",
            [note::named("a", n(|d| d.total = 2))],
            MergeStrategy::custom(|live: &mut Doc, _: &Doc, _: &[&Doc]| {
                live.total = 99;
                Err(MergeConflict::new("total", vec!["a".into()]))
            }),
        )
        .build()
        .unwrap();
    let r = c
        .run_with_report(Doc::default(), RunOptions::default())
        .await;
    assert!(matches!(r.error, Some(CadenceError::MergeConflict(ref m)) if m.group == "g"));
    assert_eq!(
        r.score.total, 0,
        "PAR-12: a failing custom merge leaves the score untouched"
    );
}

#[tokio::test]
async fn shared_state_is_shared_on_purpose() {
    // PAR-3
    let c = Cadence::<Doc>::new("c")
        .sync(
            "g",
            [
                note::named("a", n(|d| d.log.lock().push("a".into()))),
                note::named("b", n(|d| d.log.lock().push("b".into()))),
            ],
        )
        .build()
        .unwrap();
    let d = c.run(Doc::default()).await.unwrap();
    let mut log = d.log.lock().clone();
    log.sort();
    assert_eq!(log, ["a", "b"]);
    // Shared serializes as its content.
    assert_eq!(
        serde_json::to_value(&d.log).unwrap(),
        serde_json::json!(*d.log.lock())
    );
}

/// Increments on drop: proves a member's future was dropped.
struct DropGuard(Arc<AtomicUsize>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The members of a group whose second fails (PAR-5): `slow` sleeps a minute and then counts
/// itself `finished`, holding a [`DropGuard`] that counts `dropped`; `bad` fails at once;
/// `fast` sets the total to 1. With the two counters.
fn slow_bad_fast() -> ([Note<Doc>; 3], Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let dropped = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let slow = {
        let (dropped, finished) = (dropped.clone(), finished.clone());
        note::from_fn(move |_: &mut Doc| {
            let guard = DropGuard(dropped.clone());
            let finished = finished.clone();
            Box::pin(async move {
                let _guard = guard;
                tokio::time::sleep(Duration::from_secs(60)).await;
                finished.fetch_add(1, Ordering::SeqCst);
                Ok::<_, BoxError>(())
            })
        })
    };
    let members = [
        note::named("slow", slow),
        note::named("bad", failing(5)),
        note::named("fast", n(|d| d.total = 1)),
    ];
    (members, dropped, finished)
}

#[tokio::test(start_paused = true)]
async fn a_failing_member_cancels_its_siblings_before_run_returns() {
    // PAR-5
    let (members, dropped, finished) = slow_bad_fast();
    let rec = RecordingHook::new();
    let c = Cadence::<Doc>::new("c")
        .sync("g", members)
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let r = c
        .run_with_report(Doc::default(), RunOptions::default())
        .await;
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the slow sibling was dropped"
    );
    assert_eq!(finished.load(Ordering::SeqCst), 0, "and never acted");
    match r.error.unwrap() {
        CadenceError::Parallel {
            group,
            note,
            index,
            source,
        } => {
            assert_eq!((group.as_str(), note.as_str(), index), ("g", "bad", 1));
            assert!(matches!(*source, CadenceError::Note { ref path, .. } if path == "g/bad"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.score.total, 0, "nothing is merged");
    // HOOK-5 parallel order: all starts first, completions in completion order, the rest
    // reported Cancelled, then measure_end.
    assert_eq!(
        rec.lines(),
        [
            "cadence_start",
            "measure_start g",
            "note_start g/slow#1",
            "note_start g/bad#1",
            "note_start g/fast#1",
            "note_end g/fast#1 Succeeded",
            "note_end g/bad#1 Failed",
            "note_end g/slow#1 Cancelled",
            "measure_end g Failed",
            "cadence_end Failed",
        ]
    );
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "no member outlives the group"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stop_in_a_member_merges_everything_then_stops() {
    // PAR-6
    let stopper = note::from_fn(|d: &mut Doc| {
        Box::pin(async move {
            d.title = "stopper".into();
            Ok::<_, BoxError>(Control::stop_because("enough"))
        })
    });
    let c = Cadence::<Doc>::new("c")
        .sync(
            "g",
            [
                note::named("stop", stopper),
                note::named("slow", sleeper(10, |d| d.total = 3)),
            ],
        )
        .then("after", n(|d| d.total = 100))
        .build()
        .unwrap();
    let r = c
        .run_with_report(Doc::default(), RunOptions::default())
        .await;
    assert_eq!(r.outcome, Outcome::Stopped);
    assert_eq!((r.score.title.as_str(), r.score.total), ("stopper", 3));

    // A stop plus a failing sibling: PAR-5 applies.
    let stopper =
        note::from_fn(|_: &mut Doc| Box::pin(async move { Ok::<_, BoxError>(Control::stop()) }));
    let c = Cadence::<Doc>::new("c")
        .sync(
            "g",
            [note::named("stop", stopper), note::named("bad", failing(1))],
        )
        .build()
        .unwrap();
    let r = c
        .run_with_report(Doc::default(), RunOptions::default())
        .await;
    assert!(matches!(r.error, Some(CadenceError::Parallel { .. })));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_mid_group_reports_cancelled_members() {
    // RUN-5 with a parallel group
    let rec = RecordingHook::new();
    let c = Cadence::<Doc>::new("c")
        .sync(
            "g",
            [
                note::named("a", sleeper(50, |_| {})),
                note::named("b", sleeper(1, |_| {})),
            ],
        )
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    let r = tokio::time::timeout(Duration::from_millis(10), c.run(Doc::default())).await;
    assert!(r.is_err());
    assert_eq!(
        rec.lines(),
        [
            "cadence_start",
            "measure_start g",
            "note_start g/a#1",
            "note_start g/b#1",
            "note_end g/b#1 Succeeded",
            "note_end g/a#1 Cancelled",
            "measure_end g Cancelled",
            "cadence_end Cancelled",
        ]
    );
}

#[test]
fn sync_validation() {
    // DSL-4 / DSL-5 for groups
    let e = Cadence::<Doc>::new("c")
        .sync("g", Vec::<Note<Doc>>::new())
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("parallel group is empty"), "{e}");
    let c = Cadence::<Doc>::new("c")
        .sync("g", [n(|_| {})])
        .build()
        .unwrap();
    assert_eq!(c.warnings().len(), 1, "a sync with one note warns");
    let e = Cadence::<Doc>::new("c")
        .sync(
            "g",
            [note::named("x", n(|_| {})), note::named("x", n(|_| {}))],
        )
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("g/x"), "{e}");
}

#[test]
fn diagrams_show_groups_as_fork_and_join() {
    // DIAG-1 for sync
    let c = Cadence::<Doc>::new("c")
        .sync_with(
            "enrich",
            [note::named("a", n(|_| {})), note::named("b", n(|_| {}))],
            MergeStrategy::SmartMerge,
        )
        .build()
        .unwrap();
    let m = c.to_mermaid();
    for needle in [
        "m0_fork((\"enrich<br/>smart_merge\"))",
        "m0_0[\"a\"]",
        "m0_1[\"b\"]",
        "m0_fork --> m0_0",
        "m0_1 --> m0_join",
    ] {
        assert!(m.contains(needle), "missing {needle} in\n{m}");
    }
    let d = c.to_dot();
    assert!(
        d.contains("m0_fork -> m0_0;") && d.contains("subgraph cluster_m0"),
        "{d}"
    );
    assert_eq!(
        c.describe().measures[0].merge.as_deref(),
        Some("smart_merge")
    );
}

#[tokio::test(start_paused = true)]
async fn without_hooks_a_failing_member_cancels_its_siblings_and_nothing_merges() {
    // PAR-5 on the lean group path (no hooks, no checkpoints), and PAR-6's first stop.
    let (members, dropped, finished) = slow_bad_fast();
    let c = Cadence::<Doc>::new("c").sync("g", members).build().unwrap();
    let r = c
        .run_with_report(Doc::default(), RunOptions::default())
        .await;
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the slow sibling was dropped"
    );
    assert_eq!(finished.load(Ordering::SeqCst), 0, "and never acted");
    assert!(matches!(
        r.error,
        Some(CadenceError::Parallel { ref note, index: 1, .. }) if note == "bad"
    ));
    assert_eq!(r.score.total, 0, "nothing is merged");

    let stops = Cadence::<Doc>::new("s")
        .sync(
            "g",
            [
                note::named("a", n(|d| d.total = 1)),
                note::named(
                    "halt",
                    note::from_fn(|_: &mut Doc| {
                        Box::pin(async { Ok::<_, BoxError>(Control::stop_because("enough")) })
                    }),
                ),
            ],
        )
        .then("after", n(|d| d.total = 99))
        .build()
        .unwrap();
    let r = stops
        .run_with_report(Doc::default(), RunOptions::default())
        .await;
    assert_eq!(r.outcome, Outcome::Stopped);
    assert_eq!(r.score.total, 1, "the group merged, then the run stopped");
}
