//! Notes: NOTE-1…7, GEN-4.

mod common;

use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use cadence_core::hash::fnv1a_128_hex;
use cadence_core::{
    BoxError, Cadence, CadenceError, CancellationToken, Control, Hook, HookContext, Note,
    NoteContext, Outcome, RunOptions, RunOutcome, Stop, note, testing::RecordingHook,
};
use common::*;

// ---------------------------------------------------------------- NOTE-1

#[derive(Debug)]
struct MyError;
impl std::fmt::Display for MyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("my error")
    }
}
impl std::error::Error for MyError {}

#[tokio::test]
async fn note_shapes() {
    // NOTE-1: `(&mut S) -> Result<O, E>` and `(&mut S, &NoteContext) -> Result<O, E>`, E any
    // `Into<BoxError>`, O `()` or `Control`; blocking notes likewise.
    let unit_custom_err = note::from_fn(|l: &mut Log| {
        Box::pin(async move {
            l.push("unit".into());
            Ok::<(), MyError>(())
        })
    });
    let control = note::from_fn(|l: &mut Log| {
        Box::pin(async move {
            l.push("control".into());
            Ok::<_, std::io::Error>(Control::Continue)
        })
    });
    let with_cx = note::from_fn_with_context(|l: &mut Log, cx| {
        Box::pin(async move {
            l.push(format!("cx {}", cx.path()));
            Ok::<_, &'static str>(())
        })
    });
    let blocking_control = note::blocking(|l: &mut Log| {
        l.push("blocking".into());
        Ok::<_, String>(Control::Continue)
    });
    let c = Cadence::<Log>::new("shapes")
        .then("a", unit_custom_err)
        .then("b", control)
        .then("c", with_cx)
        .then("d", blocking_control)
        .build()
        .unwrap();
    assert_eq!(
        c.run(vec![]).await.unwrap(),
        ["unit", "control", "cx c", "blocking"]
    );
}

#[tokio::test]
async fn note_errors_of_any_type_become_note_errors() {
    // NOTE-1: E: Into<BoxError>; the note's own error is kept (ERR-5).
    let c = Cadence::<Log>::new("errs")
        .then(
            "custom",
            note::from_fn(|_: &mut Log| Box::pin(async move { Err::<(), _>(MyError) })),
        )
        .build()
        .unwrap();
    let e = c.run(vec![]).await.unwrap_err();
    assert!(matches!(&e, CadenceError::Note { path, .. } if path == "custom"));
    assert!(e.find_source::<MyError>().is_some());

    let c = Cadence::<Log>::new("errs")
        .then(
            "io",
            note::blocking(|_: &mut Log| Err::<(), _>(std::io::Error::other("disk full"))),
        )
        .build()
        .unwrap();
    let e = c.run(vec![]).await.unwrap_err();
    assert!(matches!(&e, CadenceError::Note { path, .. } if path == "io"));
    assert_eq!(
        e.find_source::<std::io::Error>().unwrap().to_string(),
        "disk full"
    );
}

// ---------------------------------------------------------------- NOTE-2

#[tokio::test]
async fn note_names_explicit_or_index() {
    // NOTE-2: explicit name (`note::named`, `Note::named`), otherwise the 0-based index in its
    // group/branch; the path of a `.then` note is the measure name. GEN-2: paths `<measure>`,
    // `<measure>/<note>`, `<measure>/true/<note>`, `<measure>/*/<note>`.
    let rec = RecordingHook::new();
    let n: Note<Log> = push("x");
    assert_eq!(n.name(), None);
    assert_eq!(push("x").named("given").name(), Some("given"));
    let c = Cadence::<Log>::new("names")
        .then("single", note::named("inner", push("t")))
        .sequence(
            "seq",
            [
                push("s0"),
                note::named("explicit", push("s1")),
                push("s2").named("other"),
            ],
        )
        .sequence("idx", [push("i0"), push("i1"), push("i2")])
        .split("sp", |_: &Log| true, [push("t0"), push("t1")], none())
        .route_or("r", |_: &Log| "nope", [("k", [push("k0")])], [push("d0")])
        .with_hooks(rec.clone())
        .build()
        .unwrap();
    c.run(vec![]).await.unwrap();
    let starts: Vec<String> = rec
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("note_start "))
        .collect();
    assert_eq!(
        starts,
        [
            "note_start single#1",
            "note_start seq/0#1",
            "note_start seq/explicit#1",
            "note_start seq/other#1",
            "note_start idx/0#1",
            "note_start idx/1#1",
            "note_start idx/2#1",
            "note_start sp/true/0#1",
            "note_start sp/true/1#1",
            "note_start r/*/0#1",
        ]
    );
    // The `then` note keeps its own name in the description; its path is the measure's.
    let d = c.describe();
    assert_eq!(d.measures[0].notes[0].name, "inner");
    assert_eq!(d.measures[1].notes[1].name, "explicit");
    assert_eq!(d.measures[2].notes[2].name, "2");
}

// ---------------------------------------------------------------- NOTE-3, NOTE-4, GEN-4

#[derive(Debug, Clone, PartialEq, Default)]
struct Seen {
    run_id: String,
    root: String,
    parent: Option<String>,
    cadence: String,
    path: String,
    full_path: String,
    attempt: u32,
    prior: u32,
    key: String,
    cancelled: bool,
}

fn seen(cx: &NoteContext<'_>) -> Seen {
    Seen {
        run_id: cx.run_id().to_owned(),
        root: cx.root_run_id().to_owned(),
        parent: cx.parent_run_id().map(str::to_owned),
        cadence: cx.cadence().to_owned(),
        path: cx.path().to_owned(),
        full_path: cx.full_path().into_owned(),
        attempt: cx.attempt(),
        prior: cx.prior_attempts(),
        key: cx.idempotency_key(),
        cancelled: cx.cancellation().is_cancelled(),
    }
}

fn capture() -> Note<Vec<Seen>> {
    note::from_fn_with_context(|v: &mut Vec<Seen>, cx| {
        Box::pin(async move {
            v.push(seen(cx));
            Ok::<_, BoxError>(())
        })
    })
}

fn capture_blocking() -> Note<Vec<Seen>> {
    note::blocking_with_context(|v: &mut Vec<Seen>, cx: &NoteContext<'_>| {
        v.push(seen(cx));
        Ok::<_, BoxError>(())
    })
}

fn key(root: &str, full_path: &str) -> String {
    fnv1a_128_hex(format!("{root}\0{full_path}").as_bytes())
}

fn expect(
    run_id: &str,
    root: &str,
    parent: Option<&str>,
    cadence: &str,
    path: &str,
    full: &str,
) -> Seen {
    Seen {
        run_id: run_id.into(),
        root: root.into(),
        parent: parent.map(Into::into),
        cadence: cadence.into(),
        path: path.into(),
        full_path: full.into(),
        attempt: 1,
        prior: 0,
        key: key(root, full),
        cancelled: false,
    }
}

#[tokio::test]
async fn note_context_at_top_level() {
    // NOTE-3: run id, root run id, cadence, path, full path, attempt 1, prior attempts 0,
    // idempotency key; NOTE-4 key = GEN-4 hash of root run id, 0x00, full path.
    let c = Cadence::<Vec<Seen>>::new("ctx")
        .then("one", capture())
        .sequence("seq", [capture(), capture_blocking()])
        .split("sp", |_: &Vec<Seen>| false, [capture()], [capture()])
        .build()
        .unwrap();
    let out = c
        .run_with(vec![], RunOptions::default().with_run_id("run-1"))
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            expect("run-1", "run-1", None, "ctx", "one", "one"),
            expect("run-1", "run-1", None, "ctx", "seq/0", "seq/0"),
            expect("run-1", "run-1", None, "ctx", "seq/1", "seq/1"),
            expect("run-1", "run-1", None, "ctx", "sp/false/0", "sp/false/0"),
        ]
    );
}

#[tokio::test]
async fn note_context_inside_children() {
    // NOTE-3, CHILD-2, GEN-2: inside a child, run id `<parent>/<measure>`, parent run id, the child's
    // cadence name and relative path; full path and idempotency key use the root run id and
    // the full path (`pay/charge`).
    let grandchild = Cadence::<Vec<Seen>>::new("card")
        .then("auth", capture())
        .build()
        .unwrap();
    let child = Cadence::<Vec<Seen>>::new("payment")
        .then("charge", capture())
        .sequence("s", [capture_blocking()])
        .child(
            "card",
            grandchild,
            |_: &Vec<Seen>| vec![],
            |v, c| v.extend(c),
        )
        .build()
        .unwrap();
    let parent = Cadence::<Vec<Seen>>::new("checkout")
        .then("top", capture())
        .child("pay", child, |_: &Vec<Seen>| vec![], |v, c| v.extend(c))
        .build()
        .unwrap();
    let out = parent
        .run_with(vec![], RunOptions::default().with_run_id("r1"))
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            expect("r1", "r1", None, "checkout", "top", "top"),
            expect(
                "r1/pay",
                "r1",
                Some("r1"),
                "payment",
                "charge",
                "pay/charge"
            ),
            expect("r1/pay", "r1", Some("r1"), "payment", "s/0", "pay/s/0"),
            expect(
                "r1/pay/card",
                "r1",
                Some("r1/pay"),
                "card",
                "auth",
                "pay/card/auth"
            ),
        ]
    );
}

#[tokio::test]
async fn idempotency_key_is_stable_per_run_and_note() {
    // NOTE-4: the same for every execution of that note in that run id; different for
    // another run id or another note. GEN-4: 32 lowercase hex digits.
    let c = Cadence::<Vec<Seen>>::new("k")
        .then("a", capture())
        .then("b", capture())
        .build()
        .unwrap();
    let opts = || RunOptions::default().with_run_id("same");
    let first = c.run_with(vec![], opts()).await.unwrap();
    let second = c.run_with(vec![], opts()).await.unwrap();
    let other = c
        .run_with(vec![], RunOptions::default().with_run_id("other"))
        .await
        .unwrap();
    assert_eq!(first[0].key, second[0].key);
    assert_ne!(first[0].key, first[1].key);
    assert_ne!(first[0].key, other[0].key);
    for k in [&first[0].key, &first[1].key, &other[0].key] {
        assert_eq!(k.len(), 32);
        assert!(k.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')), "{k}");
    }
}

#[test]
fn stable_hash_is_fnv1a_128() {
    // GEN-4: 128-bit FNV-1a over UTF-8 bytes, 32 lowercase hex digits (published vectors).
    assert_eq!(fnv1a_128_hex(b""), "6c62272e07bb014262b821756295c58d");
    assert_eq!(fnv1a_128_hex(b"a"), "d228cb696f1a8caf78912b704e4a8964");
    assert_eq!(
        fnv1a_128_hex("é".as_bytes()),
        fnv1a_128_hex(&[0xc3, 0xa9]),
        "UTF-8 bytes"
    );
}

// ---------------------------------------------------------------- NOTE-5

type Stops = Vec<(String, Option<String>)>;

#[derive(Clone, Default)]
struct StopSeen(Arc<Mutex<Stops>>);

impl<S> Hook<S> for StopSeen {
    fn on_cadence_end(&self, _: &HookContext<'_>, _: &S, _: Duration, o: &RunOutcome<'_>) {
        if let RunOutcome::Stopped { path, reason } = o {
            self.0
                .lock()
                .unwrap()
                .push(((*path).to_owned(), reason.map(str::to_owned)));
        }
    }
}

async fn run_stop(n: Note<Log>) -> (cadence_core::RunReport<Log>, Stops) {
    let seen = StopSeen::default();
    let c = Cadence::<Log>::new("stop")
        .sequence("g", [push("before"), n, push("after")])
        .then("later", push("later"))
        .with_hooks(seen.clone())
        .build()
        .unwrap();
    let report = c.run_with_report(vec![], RunOptions::default()).await;
    let s = seen.0.lock().unwrap().clone();
    (report, s)
}

#[tokio::test]
async fn stop_with_control() {
    // NOTE-5: `Ok(Control::Stop(reason))` ends the run early and cleanly (RUN-8).
    let (r, s) = run_stop(note::from_fn(|l: &mut Log| {
        Box::pin(async move {
            l.push("stopper".into());
            Ok::<_, BoxError>(Control::stop())
        })
    }))
    .await;
    assert_eq!(r.outcome, Outcome::Stopped);
    assert!(r.error.is_none());
    assert_eq!(r.score, ["before", "stopper"]);
    assert_eq!(s, [("g/1".to_owned(), None)]);

    let (r, s) = run_stop(stop("stopper", "enough")).await;
    assert_eq!(r.outcome, Outcome::Stopped);
    assert_eq!(r.score, ["before", "stopper"]);
    assert_eq!(s, [("g/1".to_owned(), Some("enough".to_owned()))]);
}

#[tokio::test]
async fn control_continue_goes_on() {
    // NOTE-5: `Ok(Control::Continue)` and `()` both go on.
    let (r, _) = run_stop(note::from_fn(|l: &mut Log| {
        Box::pin(async move {
            l.push("cont".into());
            Ok::<_, BoxError>(Control::Continue)
        })
    }))
    .await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert_eq!(r.score, ["before", "cont", "after", "later"]);
    assert_eq!(Control::default(), Control::Continue);
    assert!(Control::stop().is_stop() && Control::stop_because("x").is_stop());
    assert!(!Control::Continue.is_stop());
    assert_eq!(Control::stop_because("x"), Control::Stop(Some("x".into())));
}

fn check_quota(ok: bool) -> Result<(), Stop> {
    if ok {
        Ok(())
    } else {
        Err(Stop::because("quota reached"))
    }
}

#[tokio::test]
async fn stop_as_boxed_error_with_question_mark() {
    // NOTE-5: a boxed error that *is* a `Stop` counts as a stop, so BoxError notes can use `?`.
    let (r, s) = run_stop(note::from_fn(|l: &mut Log| {
        Box::pin(async move {
            l.push("stopper".into());
            check_quota(false)?;
            l.push("unreachable".into());
            Ok::<(), BoxError>(())
        })
    }))
    .await;
    assert_eq!(r.outcome, Outcome::Stopped);
    assert!(r.error.is_none());
    assert_eq!(r.score, ["before", "stopper"]);
    assert_eq!(s, [("g/1".to_owned(), Some("quota reached".to_owned()))]);

    // Also from a blocking note.
    let (r, s) = run_stop(note::blocking(|l: &mut Log| {
        l.push("stopper".into());
        Err::<(), BoxError>(Box::new(Stop::new()))
    }))
    .await;
    assert_eq!(r.outcome, Outcome::Stopped);
    assert_eq!(r.score, ["before", "stopper"]);
    assert_eq!(s, [("g/1".to_owned(), None)]);
}

#[derive(Debug)]
struct Wrapper(Stop);
impl std::fmt::Display for Wrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("wrapped")
    }
}
impl std::error::Error for Wrapper {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[tokio::test]
async fn nested_stop_is_a_failure() {
    // NOTE-5: only a Stop that *is* the error counts; one nested in a source chain fails.
    let (r, s) = run_stop(note::from_fn(|l: &mut Log| {
        Box::pin(async move {
            l.push("stopper".into());
            Err::<(), _>(Wrapper(Stop::because("inner")))
        })
    }))
    .await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(s.is_empty());
    let e = r.error.unwrap();
    assert!(
        matches!(&e, CadenceError::Note { path, .. } if path == "g/1"),
        "{e:?}"
    );
    assert!(e.find_source::<Stop>().is_some());
}

#[test]
fn stop_value_api() {
    // NOTE-5: `Stop::new()`, `Stop::because(..)`.
    assert_eq!(Stop::new().reason(), None);
    assert_eq!(Stop::because("why").reason(), Some("why"));
    let b: BoxError = Stop::because("why").into();
    assert!(b.is::<Stop>());
}

// ---------------------------------------------------------------- NOTE-6

#[derive(Default, Debug, Clone)]
struct Threads {
    ids: Vec<(String, ThreadId)>,
    n: u32,
}

#[tokio::test]
async fn blocking_notes_run_off_the_worker_thread() {
    // NOTE-6: blocking notes run on the blocking pool, never on a worker thread. On a
    // current-thread runtime the only worker is the test thread.
    let worker = std::thread::current().id();
    let c = Cadence::<Threads>::new("threads")
        .then(
            "async",
            step(|t: &mut Threads| {
                t.ids.push(("async".into(), std::thread::current().id()));
                t.n += 1;
            }),
        )
        .then(
            "blocking",
            note::blocking(|t: &mut Threads| {
                t.ids.push(("blocking".into(), std::thread::current().id()));
                t.n *= 10;
                Ok::<_, BoxError>(())
            }),
        )
        .then(
            "after",
            step(|t: &mut Threads| {
                t.n += 1; // sees the blocking note's write: the score came back
            }),
        )
        .build()
        .unwrap();
    let out = c.run(Threads { ids: vec![], n: 0 }).await.unwrap();
    assert_eq!(out.n, 11);
    assert_eq!(out.ids[0], ("async".into(), worker));
    assert_eq!(out.ids[1].0, "blocking");
    assert_ne!(
        out.ids[1].1, worker,
        "blocking note ran on the worker thread"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_notes_run_off_the_workers_multi_thread() {
    // NOTE-6: on a multi-thread runtime, a blocking note is not on a worker thread.
    let c = Cadence::<Log>::new("mt")
        .then(
            "b",
            note::blocking(|l: &mut Log| {
                // `Handle::block_on` panics on a runtime worker thread ("Cannot start a
                // runtime from within a runtime"); on a blocking-pool thread it works.
                let h = tokio::runtime::Handle::current();
                let v = h.block_on(async { 7 });
                l.push(format!("got {v}"));
                Ok::<_, BoxError>(())
            }),
        )
        .build()
        .unwrap();
    assert_eq!(c.run(vec![]).await.unwrap(), ["got 7"]);
}

#[tokio::test]
async fn blocking_note_panic_returns_the_score() {
    // NOTE-6: the engine gets the score back also after a panic. NOTE-7: Panicked with the
    // message; earlier writes stay.
    let c = Cadence::<Log>::new("bp")
        .then("first", push("first"))
        .then(
            "boom",
            note::blocking(|l: &mut Log| {
                l.push("written before panic".into());
                if std::hint::black_box(true) {
                    panic!("blocking kaboom {}", 42);
                }
                Ok::<_, BoxError>(())
            }),
        )
        .then("never", push("never"))
        .build()
        .unwrap();
    let r = c.run_with_report(vec![], RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.score, ["first", "written before panic"]);
    match r.error.unwrap() {
        CadenceError::Panicked { path, message } => {
            assert_eq!(path, "boom");
            assert_eq!(message, "blocking kaboom 42");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
}

#[tokio::test]
async fn blocking_note_token_fires_when_the_run_is_cancelled() {
    // NOTE-6, RUN-6: cancelling the run detaches an in-flight blocking note and fires its
    // token; the run returns Err(Cancelled) without waiting for it.
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (saw_tx, mut saw_rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    let c = Cadence::<Log>::new("bc")
        .then(
            "spin",
            note::blocking_with_context(move |l: &mut Log, cx: &NoteContext<'_>| {
                l.push("started".into());
                let _ = started_tx.send(());
                let give_up = std::time::Instant::now() + Duration::from_secs(20);
                while !cx.cancellation().is_cancelled() && std::time::Instant::now() < give_up {
                    std::thread::yield_now();
                }
                let _ = saw_tx.send(cx.cancellation().is_cancelled());
                Ok::<_, BoxError>(())
            }),
        )
        .then("never", push("never"))
        .build()
        .unwrap();
    let token = CancellationToken::new();
    let run = tokio::spawn({
        let c = c.clone();
        let token = token.clone();
        async move {
            c.run_with_report(vec![], RunOptions::default().with_cancellation(token))
                .await
        }
    });
    started_rx.recv().await.unwrap();
    token.cancel();
    let report = run.await.unwrap();
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert!(matches!(report.error, Some(CadenceError::Cancelled)));
    assert!(
        saw_rx.recv().await.unwrap(),
        "the detached blocking note's token never fired"
    );
}

// ---------------------------------------------------------------- NOTE-7

#[tokio::test]
async fn panics_become_panicked_errors_and_keep_earlier_writes() {
    // NOTE-7: a panicking attempt yields `Panicked { path, message }` (string payloads as
    // text); the live score keeps the note's earlier writes. GEN-5: it does not unwind.
    let c = Cadence::<Log>::new("p")
        .then("ok", push("ok"))
        .sequence("seq", [push("s0"), panics("s1 wrote", "static message")])
        .then("never", push("never"))
        .build()
        .unwrap();
    let r = c.run_with_report(vec![], RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.score, ["ok", "s0", "s1 wrote"]);
    assert_eq!(r.failed_measures, ["seq"]);
    match r.error.unwrap() {
        CadenceError::Panicked { path, message } => {
            assert_eq!(path, "seq/1");
            assert_eq!(message, "static message");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }

    // A formatted (String) payload, panicking before the first await.
    let c = Cadence::<Log>::new("p")
        .then(
            "fmt",
            note::from_fn(|l: &mut Log| {
                l.push("sync part".into());
                if std::hint::black_box(true) {
                    panic!("formatted {}", 7);
                }
                Box::pin(async move { Ok::<_, BoxError>(()) })
            }),
        )
        .build()
        .unwrap();
    let r = c.run_with_report(vec![], RunOptions::default()).await;
    assert_eq!(r.score, ["sync part"]);
    match r.error.unwrap() {
        CadenceError::Panicked { path, message } => {
            assert_eq!(path, "fmt");
            assert_eq!(message, "formatted 7");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
}

#[tokio::test]
async fn panic_after_an_await_is_caught() {
    // NOTE-7, GEN-5: a panic in a later poll of the note future is caught too.
    let c = Cadence::<Log>::new("p")
        .then(
            "late",
            note::from_fn(|l: &mut Log| {
                Box::pin(async move {
                    l.push("before await".into());
                    tokio::task::yield_now().await;
                    l.push("after await".into());
                    if std::hint::black_box(true) {
                        panic!("late panic");
                    }
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .build()
        .unwrap();
    let r = c.run_with_report(vec![], RunOptions::default()).await;
    assert_eq!(r.score, ["before await", "after await"]);
    assert!(
        matches!(r.error, Some(CadenceError::Panicked { ref path, ref message }) if path == "late" && message == "late panic")
    );
}

/// What outcome 2 of a [`token_grabber`] note does.
#[derive(Clone, Copy)]
enum Ended {
    Stop,
    Hang,
}

/// A note that pushes its attempt's cancellation token to `tokens`, then: 0 continues, 1
/// fails, 2 stops or never finishes (`two`).
fn token_grabber(
    tokens: &Arc<Mutex<Vec<CancellationToken>>>,
    outcome: u8,
    two: Ended,
) -> Note<Log> {
    let t = tokens.clone();
    note::from_fn_with_context(move |_: &mut Log, cx| {
        t.lock().unwrap().push(cx.cancellation().clone());
        Box::pin(async move {
            match (outcome, two) {
                (0, _) => Ok(Control::Continue),
                (1, _) => Err::<Control, BoxError>("failed".into()),
                (_, Ended::Stop) => Ok(Control::stop()),
                (_, Ended::Hang) => std::future::pending().await,
            }
        })
    })
}

#[tokio::test]
async fn token_of_a_finished_attempt_does_not_fire() {
    // NOTE-3: the token fires when the attempt is *abandoned*; one that finished (succeeded,
    // failed or stopped) is not cancelled, also after the run ended.
    let tokens = Arc::new(Mutex::new(Vec::<CancellationToken>::new()));
    let grab = |outcome: u8| token_grabber(&tokens, outcome, Ended::Stop);
    let ok = Cadence::<Log>::new("t")
        .then("a", grab(0))
        .then("b", grab(0))
        .build()
        .unwrap();
    ok.run_with(
        vec![],
        RunOptions::default().with_cancellation(CancellationToken::new()),
    )
    .await
    .unwrap();
    ok.run(vec![]).await.unwrap();
    let failed = Cadence::<Log>::new("t").then("a", grab(1)).build().unwrap();
    failed.run(vec![]).await.unwrap_err();
    let stopped = Cadence::<Log>::new("t").then("a", grab(2)).build().unwrap();
    stopped.run(vec![]).await.unwrap();
    let tokens = tokens.lock().unwrap();
    assert_eq!(tokens.len(), 6);
    assert!(tokens.iter().all(|t| !t.is_cancelled()));
}

#[tokio::test]
async fn notes_of_a_sequence_get_their_own_tokens() {
    // NOTE-3 on the lean path: the notes of one sequence share the engine's context between
    // attempts, but each attempt's token is its own; finished ones never fire, and the one of
    // an attempt abandoned with its run does.
    let tokens = Arc::new(Mutex::new(Vec::<CancellationToken>::new()));
    let grab = |outcome: u8| token_grabber(&tokens, outcome, Ended::Hang);
    let ok = Cadence::<Log>::new("t")
        .sequence("s", [grab(0), grab(0), grab(0)])
        .build()
        .unwrap();
    ok.run(vec![]).await.unwrap();
    let failed = Cadence::<Log>::new("t")
        .sequence("s", [grab(0), grab(1), grab(0)])
        .build()
        .unwrap();
    failed.run(vec![]).await.unwrap_err();
    {
        let t = tokens.lock().unwrap();
        assert_eq!(t.len(), 5, "the note after the failure never ran");
        assert!(t.iter().all(|t| !t.is_cancelled()));
        for (i, a) in t.iter().enumerate() {
            for b in &t[i + 1..] {
                a.cancel();
                assert!(!b.is_cancelled(), "tokens are not shared between attempts");
            }
        }
    }
    tokens.lock().unwrap().clear();
    let hangs = Cadence::<Log>::new("t")
        .sequence("s", [grab(0), grab(2)])
        .build()
        .unwrap();
    let run = hangs.run(vec![]);
    let r = tokio::time::timeout(Duration::from_millis(20), run).await;
    assert!(r.is_err(), "the second note never finishes");
    let t = tokens.lock().unwrap();
    assert_eq!(t.len(), 2);
    assert!(!t[0].is_cancelled(), "the finished attempt's token");
    assert!(
        t[1].is_cancelled(),
        "the abandoned attempt's token fires when the run is dropped"
    );
}
