//! `prom.note`: the cost of a [`PrometheusHook`] per note, against the same cadence with no
//! hooks; `prom.note_vs_noop_hook`: the same against a hook that does nothing.
//!
//! The cadence is the shape of `core.seq_note` and `core.emitter1` (one `.sequence` of 1000
//! no-op notes, definition reused), so per note the hook sees `on_note_start` (not
//! overridden) and `on_note_end` (one cache lookup and one histogram observation), and per run
//! `on_cadence_start`/`on_cadence_end`, spread over the 1000 notes. `prom.note` includes what
//! the engine does once any hook is attached (an occurrence context, `seq`, a run id, the clock
//! read for each attempt's duration), since that is what attaching the hook costs; the second
//! figure isolates the hook's own share.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cadence_bench_core::harness::{Config, Outcome, interleave_async};
use cadence_core::note::NoteFuture;
use cadence_core::{BoxError, Cadence, Control, Hook, Note, NoteContext};
use cadence_prometheus::PrometheusHook;

const NOTES: u64 = 1000;

/// The note body: bump the counter.
async fn bump(s: &mut u64) -> Result<(), BoxError> {
    *s = black_box(*s + 1);
    Ok(())
}

/// What `#[note] async fn bump(..)` expands to.
fn bump_note() -> Note<u64> {
    fn call<'a>(s: &'a mut u64, _cx: &'a NoteContext<'a>) -> NoteFuture<'a> {
        Box::pin(async move {
            bump(s).await?;
            Ok(Control::Continue)
        })
    }
    Note::__from_macro("bump", call, None)
}

fn cadence(hook: Option<Box<dyn Hook<u64>>>) -> Cadence<u64> {
    let b = Cadence::new("prom_note").sequence(
        "notes",
        (0..NOTES).map(|i| bump_note().named(format!("n{i}"))),
    );
    match hook {
        Some(h) => b.with_hooks(h),
        None => b,
    }
    .build()
    .expect("a valid cadence")
}

/// Interleaves runs of `with` and `baseline`, reporting ns per note of each.
fn per_note(config: &Config, with: &Cadence<u64>, baseline: &Cadence<u64>) -> Outcome {
    async fn time(c: &Cadence<u64>, iters: u64) -> Duration {
        let t = Instant::now();
        for _ in 0..iters {
            black_box(c.run(0).await.expect("runs"));
        }
        t.elapsed() / NOTES as u32
    }
    let plan = config.plan(config.scale(20));
    interleave_async(
        &plan,
        async |iters| time(with, iters).await,
        async |iters| time(baseline, iters).await,
    )
    .into()
}

/// `prom.note`: ns per note with the hook, against ns per note with no hooks.
pub(crate) fn note(config: &Config) -> Outcome {
    let (hook, metrics) = PrometheusHook::builder().build().expect("a hook");
    let with = cadence(Some(Box::new(hook)));
    let without = cadence(None);
    let outcome = per_note(config, &with, &without);
    check(&metrics.render());
    outcome
}

/// `prom.note_vs_noop_hook`: ns per note with the hook, against ns per note with a hook
/// that does nothing.
pub(crate) fn note_vs_noop_hook(config: &Config) -> Outcome {
    let (hook, metrics) = PrometheusHook::builder().build().expect("a hook");
    let with = cadence(Some(Box::new(hook)));
    let noop = cadence(Some(Box::new(())));
    let outcome = per_note(config, &with, &noop);
    check(&metrics.render());
    outcome
}

/// The hook recorded what was measured: every run succeeded, none is left in flight.
fn check(text: &str) {
    assert!(
        text.contains(r#"cadence_runs_in_flight{cadence="prom_note"} 0"#),
        "no run left in flight"
    );
    assert!(
        text.contains(r#"cadence_runs_total{cadence="prom_note",outcome="failure"} 0"#),
        "no failed run"
    );
    assert!(
        text.contains(r#"cadence_note_duration_seconds_count{cadence="prom_note",note="notes/n999",outcome="success"}"#),
        "the last note was recorded"
    );
}
