//! Errors: ERR-1…5.

mod common;

use std::error::Error as StdError;
use std::time::Duration;

use cadence_core::retry::Permanent;
use cadence_core::{
    BoxError, Cadence, CadenceError, CheckpointErrorKind, ErrorKind, MergeConflict, OnError,
    Problem, RunOptions, TimeoutScope, note,
};
use common::*;

fn io(msg: &str) -> BoxError {
    Box::new(std::io::Error::other(msg.to_owned()))
}

fn note_err(path: &str, msg: &str) -> CadenceError {
    CadenceError::Note {
        path: path.into(),
        source: io(msg),
    }
}

fn timeout(path: &str, scope: TimeoutScope, last: Option<CadenceError>) -> CadenceError {
    CadenceError::Timeout {
        path: path.into(),
        after: Duration::from_secs(5),
        scope,
        message: None,
        last: last.map(Box::new),
    }
}

fn circuit_open() -> CadenceError {
    CadenceError::CircuitOpen {
        path: "charge".into(),
        circuit: "bank".into(),
        retry_after: Duration::from_secs(30),
    }
}

fn conflict(notes: &[&str]) -> MergeConflict {
    let mut c = MergeConflict::new("total", notes.iter().map(|n| n.to_string()).collect());
    c.group = "enrich".into();
    c
}

fn parallel(source: CadenceError) -> CadenceError {
    CadenceError::Parallel {
        group: "enrich".into(),
        note: "profile".into(),
        index: 1,
        source: Box::new(source),
    }
}

fn exhausted(last: CadenceError) -> CadenceError {
    CadenceError::RetryExhausted {
        path: "charge".into(),
        attempts: 3,
        last: Box::new(last),
    }
}

fn handler_failed(original: CadenceError) -> CadenceError {
    CadenceError::HandlerFailed {
        original: Box::new(original),
        handler: io("handler broke"),
    }
}

fn mismatch() -> CadenceError {
    CadenceError::CheckpointMismatch {
        run_id: "r1".into(),
        stored: "0".repeat(32),
        current: "f".repeat(32),
    }
}

/// One value of every variant.
fn every_variant() -> Vec<(CadenceError, &'static str)> {
    vec![
        (note_err("charge", "declined"), "note"),
        (parallel(note_err("enrich/profile", "x")), "parallel"),
        (timeout("charge", TimeoutScope::Attempt, None), "timeout"),
        (circuit_open(), "circuit_open"),
        (exhausted(note_err("charge", "x")), "retry_exhausted"),
        (
            CadenceError::MergeConflict(conflict(&["a", "b"])),
            "merge_conflict",
        ),
        (
            CadenceError::Route {
                path: "ship".into(),
                key: "mars".into(),
            },
            "route",
        ),
        (
            CadenceError::checkpoint(CheckpointErrorKind::Unavailable, "store down"),
            "checkpoint",
        ),
        (mismatch(), "checkpoint_mismatch"),
        (CadenceError::validation("a", "bad"), "validation"),
        (
            CadenceError::Panicked {
                path: "charge".into(),
                message: "boom".into(),
            },
            "panicked",
        ),
        (CadenceError::Cancelled, "cancelled"),
        (handler_failed(note_err("charge", "x")), "handler_failed"),
    ]
}

// ---------------------------------------------------------------- ERR-1

fn assert_error_send_sync_static<E: StdError + Send + Sync + 'static>() {}

#[test]
fn cadence_error_is_a_send_sync_static_error() {
    // ERR-1: Send + Sync + 'static (and a std error, so `?` into BoxError works).
    assert_error_send_sync_static::<CadenceError>();
    let b: BoxError = CadenceError::Cancelled.into();
    assert!(b.downcast_ref::<CadenceError>().is_some());
}

#[tokio::test]
async fn errors_from_runs_carry_full_paths() {
    // ERR-1: paths are full paths.
    let grandchild = Cadence::<Log>::new("g")
        .then("charge", fail("x", "declined"))
        .build()
        .unwrap();
    let child = Cadence::<Log>::new("c")
        .child("card", grandchild, |_: &Log| vec![], |l, c| l.extend(c))
        .build()
        .unwrap();
    let c = Cadence::<Log>::new("p")
        .child("pay", child, |_: &Log| vec![], |l, c| l.extend(c))
        .build()
        .unwrap();
    let e = c.run(vec![]).await.unwrap_err();
    assert_eq!(e.path(), Some("pay/card/charge"));
    assert!(e.to_string().contains("pay/card/charge"), "{e}");
}

// ---------------------------------------------------------------- ERR-2

#[test]
fn kind_names() {
    // ERR-2: kind() and its stable as_str() names, for every variant.
    for (e, name) in every_variant() {
        assert_eq!(e.kind().as_str(), name, "{e:?}");
        assert_eq!(e.kind().to_string(), name);
    }
    assert_eq!(ErrorKind::Note.as_str(), "note");
    assert_eq!(ErrorKind::HandlerFailed.as_str(), "handler_failed");
}

#[tokio::test]
async fn kinds_of_errors_produced_by_runs() {
    // ERR-2 on errors the engine produces.
    let c = Cadence::<Log>::new("k")
        .then("bad", fail("bad", "x"))
        .build()
        .unwrap();
    assert_eq!(c.run(vec![]).await.unwrap_err().kind(), ErrorKind::Note);
    let c = Cadence::<Log>::new("k")
        .then("p", panics("p", "x"))
        .build()
        .unwrap();
    assert_eq!(c.run(vec![]).await.unwrap_err().kind(), ErrorKind::Panicked);
    let c = Cadence::<Log>::new("k")
        .route("r", |_: &Log| "x", [("y", [push("y")])])
        .build()
        .unwrap();
    assert_eq!(c.run(vec![]).await.unwrap_err().kind(), ErrorKind::Route);
    let e = Cadence::<Log>::new("k").build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Validation);
    let e = c
        .run_with(vec![], RunOptions::default().with_run_id(""))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Validation);
    let token = cadence_core::CancellationToken::new();
    token.cancel();
    let e = c
        .run_with(vec![], RunOptions::default().with_cancellation(token))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
    let c = Cadence::<Log>::new("k")
        .then("bad", fail("bad", "x"))
        .on_error(
            |_: &mut Log, _: &CadenceError| Err::<(), _>("no"),
            OnError::Stop,
        )
        .build()
        .unwrap();
    assert_eq!(
        c.run(vec![]).await.unwrap_err().kind(),
        ErrorKind::HandlerFailed
    );
}

// ---------------------------------------------------------------- ERR-3

#[test]
fn is_timeout_looks_through_wrappers() {
    // ERR-3: root engine cause, looking through HandlerFailed, Parallel and RetryExhausted.
    let t = || timeout("charge", TimeoutScope::Attempt, None);
    assert!(t().is_timeout());
    assert!(timeout("charge", TimeoutScope::Deadline, None).is_timeout());
    assert!(handler_failed(t()).is_timeout());
    assert!(parallel(t()).is_timeout());
    assert!(exhausted(t()).is_timeout());
    assert!(handler_failed(parallel(exhausted(t()))).is_timeout());
    assert!(!note_err("a", "x").is_timeout());
    assert!(!handler_failed(note_err("a", "x")).is_timeout());
    assert!(!circuit_open().is_timeout());
}

#[test]
fn is_circuit_open_looks_through_wrappers() {
    // ERR-3.
    assert!(circuit_open().is_circuit_open());
    assert!(handler_failed(circuit_open()).is_circuit_open());
    assert!(parallel(circuit_open()).is_circuit_open());
    assert!(exhausted(circuit_open()).is_circuit_open());
    assert!(handler_failed(parallel(exhausted(circuit_open()))).is_circuit_open());
    assert!(!note_err("a", "x").is_circuit_open());
    assert!(!timeout("a", TimeoutScope::Attempt, None).is_circuit_open());
}

#[test]
fn is_retryable_classification() {
    // ERR-3: false for panics, open circuits, conflicts, routes, validation, mismatches,
    // cancellation and Permanent; true for note errors and timeouts.
    assert!(note_err("a", "x").is_retryable());
    assert!(timeout("a", TimeoutScope::Attempt, None).is_retryable());
    assert!(handler_failed(note_err("a", "x")).is_retryable());
    assert!(exhausted(note_err("a", "x")).is_retryable());
    assert!(parallel(note_err("a", "x")).is_retryable());

    let not = [
        CadenceError::Panicked {
            path: "a".into(),
            message: "m".into(),
        },
        circuit_open(),
        CadenceError::MergeConflict(conflict(&["a", "b"])),
        CadenceError::Route {
            path: "r".into(),
            key: "k".into(),
        },
        CadenceError::validation("", "bad"),
        mismatch(),
        CadenceError::Cancelled,
        CadenceError::Note {
            path: "a".into(),
            source: Box::new(Permanent::new("card stolen")),
        },
    ];
    for e in not {
        assert!(!e.is_retryable(), "{e:?}");
        assert!(!handler_failed_from(e).is_retryable());
    }
    // Permanent anywhere in the chain, through wrappers.
    let deep = parallel(exhausted(CadenceError::Note {
        path: "a".into(),
        source: Box::new(Permanent::new(std::io::Error::other("gone"))),
    }));
    assert!(!deep.is_retryable());
}

fn handler_failed_from(e: CadenceError) -> CadenceError {
    handler_failed(e)
}

#[tokio::test]
async fn permanent_from_a_note_is_not_retryable() {
    // ERR-3 on an engine-produced error.
    let c = Cadence::<Log>::new("perm")
        .then(
            "charge",
            note::from_fn(|_: &mut Log| {
                Box::pin(async { Err::<(), _>(Permanent::new("card stolen")) })
            }),
        )
        .build()
        .unwrap();
    let e = c.run(vec![]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Note);
    assert!(!e.is_retryable());
    assert!(e.find_source::<Permanent>().is_some());
}

#[test]
fn find_source_returns_the_first_match_in_the_chain() {
    // ERR-3: find_source::<E>() returns the first E in the source chain.
    let e = handler_failed(parallel(exhausted(note_err("a", "disk full"))));
    assert_eq!(
        e.find_source::<std::io::Error>().unwrap().to_string(),
        "disk full"
    );
    assert!(e.find_source::<MergeConflict>().is_none());
    let m = CadenceError::MergeConflict(conflict(&["a", "b"]));
    assert_eq!(m.find_source::<MergeConflict>().unwrap().field, "total");
    // The first CadenceError in the chain is the error itself.
    let first = e.find_source::<CadenceError>().unwrap();
    assert_eq!(first.kind(), ErrorKind::HandlerFailed);
}

// ---------------------------------------------------------------- ERR-4

#[test]
fn display_timeout_per_attempt_exact() {
    // ERR-4 example, verbatim.
    assert_eq!(
        timeout("charge", TimeoutScope::Attempt, None).to_string(),
        "note 'charge' timed out after 5s (per attempt); raise the timeout or make the note faster"
    );
    let d = timeout("charge", TimeoutScope::Deadline, None).to_string();
    assert!(
        d.contains("'charge'") && d.contains("deadline") && d.contains("5s"),
        "{d}"
    );
}

#[test]
fn display_merge_conflict_exact() {
    // ERR-4 example, verbatim; PAR-12: never values.
    let expected = "merge conflict in group 'enrich': field 'total' changed differently by notes 'a' and 'b'; write different fields or choose LastWriteWins, SmartMerge or a custom merge";
    assert_eq!(conflict(&["a", "b"]).to_string(), expected);
    assert_eq!(
        CadenceError::MergeConflict(conflict(&["a", "b"])).to_string(),
        expected
    );
    assert_eq!(
        conflict(&["a", "b", "c"]).to_string(),
        "merge conflict in group 'enrich': field 'total' changed differently by notes 'a', 'b' and 'c'; write different fields or choose LastWriteWins, SmartMerge or a custom merge"
    );
}

#[test]
fn display_checkpoint_mismatch() {
    // ERR-4: what happened (run id, different version), what to do. The SPEC example also
    // names the cadence ("… of cadence 'checkout'"), which the variant's fields (ERR-1:
    // run_id, stored, current) cannot carry; see the test report.
    let text = mismatch().to_string();
    assert!(
        text.starts_with("checkpoint for run 'r1' was written by a different version of"),
        "{text}"
    );
    assert!(
        text.ends_with(
            "; use a new run id, run 'cadence runs delete', or set allow_fingerprint_mismatch"
        ),
        "{text}"
    );
}

#[test]
fn display_says_what_and_where() {
    // ERR-4: each Display names what happened and where.
    let cases: Vec<(CadenceError, Vec<&str>)> = vec![
        (
            note_err("pay/charge", "card declined"),
            vec!["'pay/charge'", "card declined"],
        ),
        (
            parallel(note_err("enrich/profile", "no profile")),
            vec!["'enrich'", "'profile'", "no profile"],
        ),
        (circuit_open(), vec!["'bank'", "'charge'", "30s"]),
        (
            exhausted(note_err("charge", "still failing")),
            vec!["'charge'", "3 attempts", "still failing"],
        ),
        (
            CadenceError::Route {
                path: "ship".into(),
                key: "mars".into(),
            },
            vec!["'ship'", "'mars'", "route_or"],
        ),
        (
            CadenceError::checkpoint(CheckpointErrorKind::LeaseHeld, "held by 7"),
            vec!["lease_held", "held by 7"],
        ),
        (
            CadenceError::Panicked {
                path: "pay/charge".into(),
                message: "index out of bounds".into(),
            },
            vec!["'pay/charge'", "panicked", "index out of bounds"],
        ),
        (CadenceError::Cancelled, vec!["cancelled"]),
        (
            handler_failed(note_err("a", "original")),
            vec!["handler broke", "original", "'a'"],
        ),
    ];
    for (e, parts) in cases {
        let text = e.to_string();
        for p in parts {
            assert!(text.contains(p), "{p:?} missing in {text:?}");
        }
    }
}

#[test]
fn display_validation_lists_every_problem_one_per_line() {
    // ERR-4: `Validation` lists every problem, one per line.
    let e = Cadence::<Log>::new("v")
        .then("a", push("a"))
        .then("a", push("a"))
        .sequence("s", none())
        .route("r", |_: &Log| "k", [("*", [push("x")])])
        .build()
        .unwrap_err();
    let problems = match &e {
        CadenceError::Validation { problems } => problems.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(problems.len(), 3);
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + problems.len(), "{text}");
    for (line, p) in lines[1..].iter().zip(&problems) {
        assert!(line.contains(&p.path), "{line}");
        assert!(line.contains(&p.message), "{line}");
    }
    assert_eq!(Problem::new("a/b", "is wrong").to_string(), "a/b: is wrong");
}

// ---------------------------------------------------------------- ERR-5

#[test]
fn source_chains() {
    // ERR-5: Note → the note's error; Parallel → the member's error; RetryExhausted → the
    // last error; Timeout { Deadline } → the last error; HandlerFailed → the original (the
    // handler's error via handler()).
    let e = note_err("a", "disk full");
    let s = e.source().unwrap();
    assert_eq!(
        s.downcast_ref::<std::io::Error>().unwrap().to_string(),
        "disk full"
    );

    let e = parallel(note_err("g/m", "member broke"));
    let s = e.source().unwrap().downcast_ref::<CadenceError>().unwrap();
    assert_eq!(s.path(), Some("g/m"));

    let e = exhausted(note_err("charge", "last one"));
    let s = e.source().unwrap().downcast_ref::<CadenceError>().unwrap();
    assert!(s.to_string().contains("last one"));

    let e = timeout(
        "charge",
        TimeoutScope::Deadline,
        Some(note_err("charge", "slow bank")),
    );
    let s = e.source().unwrap().downcast_ref::<CadenceError>().unwrap();
    assert!(s.to_string().contains("slow bank"));
    assert!(
        timeout("charge", TimeoutScope::Attempt, None)
            .source()
            .is_none()
    );

    let e = handler_failed(note_err("a", "original"));
    let s = e.source().unwrap().downcast_ref::<CadenceError>().unwrap();
    assert_eq!(s.kind(), ErrorKind::Note);
    assert_eq!(e.handler().unwrap().to_string(), "handler broke");
    assert!(note_err("a", "x").handler().is_none());

    // The whole chain, down to the note's own error.
    let e = handler_failed(parallel(exhausted(note_err("a", "root cause"))));
    let mut chain = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(&e);
    while let Some(x) = cur {
        chain.push(x.to_string());
        cur = x.source();
    }
    assert_eq!(chain.len(), 5, "{chain:#?}");
    assert_eq!(chain.last().unwrap(), "root cause");
}

#[tokio::test]
async fn source_chain_of_a_run_error() {
    // ERR-5 on engine-produced errors: Note → the note's own error; HandlerFailed → original.
    let c = Cadence::<Log>::new("chain")
        .then(
            "save",
            note::from_fn(|_: &mut Log| {
                Box::pin(async { Err::<(), _>(std::io::Error::other("disk full")) })
            }),
        )
        .on_error(
            |_: &mut Log, _: &CadenceError| Err::<(), _>("handler broke"),
            OnError::Continue,
        )
        .build()
        .unwrap();
    let e = c.run(vec![]).await.unwrap_err();
    let original = e.source().unwrap().downcast_ref::<CadenceError>().unwrap();
    assert!(matches!(original, CadenceError::Note { path, .. } if path == "save"));
    let io = original.source().unwrap();
    assert_eq!(io.to_string(), "disk full");
    assert!(io.is::<std::io::Error>());
    assert_eq!(e.handler().unwrap().to_string(), "handler broke");
}

#[test]
fn display_validation_is_one_line_per_problem_even_for_bad_names() {
    // ERR-4: `Validation` lists every problem, one per line — also when the offending name
    // itself contains a line break (GEN-1 rejects it, and the report must stay readable).
    let e = Cadence::<Log>::new("v")
        .then("line\nbreak", push("a"))
        .sequence("s", [note::named("x\ry", push("b"))])
        .build()
        .unwrap_err();
    let n = match &e {
        CadenceError::Validation { problems } => problems.len(),
        other => panic!("{other:?}"),
    };
    assert_eq!(n, 2);
    let text = e.to_string();
    assert_eq!(text.lines().count(), 1 + n, "{text}");
}
