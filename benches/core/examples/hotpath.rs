//! A fixed amount of one hot-path workload, for instruction-level profiling with callgrind:
//!
//! ```text
//! cargo build --release -p cadence-bench-core --example hotpath
//! HOTPATH_SETTLE_MS=3000 valgrind --tool=callgrind target/release/examples/hotpath seq 200
//! ```
//!
//! For a per-note figure, count two run counts (say 60 and 110) with
//! `--toggle-collect='*exec_notes*'` (so the time-stamp counter's calibration thread is not
//! counted) and divide the difference by the notes between them.
//!
//! Workloads: `seq` (1000-note sequence), `hook` (same with a no-op hook), `emitter`
//! (same with an `EventEmitter` holding one sync listener on `note.completed`), `run3`, `retry3`,
//! `policy` (100 notes with retry + timeout + breaker), `sync` (a 1000-member group), `ckpt`
//! (the runs of `core.ckpt_mem`: 20 measures checkpointed to a `MemoryStore`, a new run id
//! each) and `ckpt_base` (its baseline: the same notes, `serde_json::to_vec` after each).

use std::hint::black_box;
use std::time::Duration;

use cadence_bench_core::fixtures::{Small, bump, bump_note, flaky_note};
use cadence_core::circuit_breaker::CircuitBreaker;
use cadence_core::event::{Event, EventEmitter};
use cadence_core::retry::{Backoff, Jitter, Retry};
use cadence_core::{BoxError, Cadence, Control, Hook, MergeStrategy};

struct Noop;
impl Hook<Small> for Noop {}

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "seq".into());
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    if what == "floor" {
        // The floor of any engine with boxed note futures: 1000 boxed calls per run.
        type Boxed = for<'a> fn(
            &'a mut Small,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Control, BoxError>> + Send + 'a>,
        >;
        fn boxed(
            s: &mut Small,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Control, BoxError>> + Send + '_>,
        > {
            Box::pin(async move {
                bump(s).await?;
                Ok(Control::Continue)
            })
        }
        let notes: Vec<Boxed> = (0..1000).map(|_| boxed as Boxed).collect();
        rt.block_on(async {
            for _ in 0..runs {
                let mut s = Small::default();
                for f in black_box(&notes) {
                    if let Err(e) = std::panic::AssertUnwindSafe(f(&mut s)).await {
                        panic!("{e}");
                    }
                }
                black_box(s);
            }
        });
        return;
    }
    if what == "ckpt" || what == "ckpt_base" {
        use cadence_bench_core::checkpoint::{MEASURES, bump, checkpointed, doc};
        let cadence = checkpointed(std::sync::Arc::new(
            cadence_core::checkpoint::MemoryStore::new(),
        ));
        rt.block_on(async {
            for i in 0..runs {
                if what == "ckpt" {
                    let opts = cadence_core::RunOptions::default().with_run_id(format!("run-{i}"));
                    black_box(cadence.run_with(doc(), opts).await.expect("runs"));
                } else {
                    let mut s = doc();
                    for _ in 0..MEASURES {
                        bump(&mut s).await.expect("runs");
                        black_box(serde_json::to_vec(&s).expect("serializes"));
                    }
                    black_box(s);
                }
            }
        });
        return;
    }
    let cadence = match what.as_str() {
        "seq" | "hook" | "emitter" => {
            let b = Cadence::new("seq").sequence(
                "notes",
                (0..1000).map(|i| bump_note().named(format!("n{i}"))),
            );
            if what == "hook" {
                b.with_hooks(Noop)
            } else if what == "emitter" {
                let emitter = EventEmitter::new();
                emitter.on("note.completed", |e: &Event| {
                    black_box(e);
                });
                b.with_hooks(emitter)
            } else {
                b
            }
        }
        "run3" => Cadence::new("run3")
            .then("a", bump_note())
            .then("b", bump_note())
            .then("c", bump_note()),
        "retry3" => Cadence::new("retry").then(
            "flaky",
            flaky_note().with_retry(
                Retry::new(3)
                    .with_backoff(Backoff::fixed(Duration::ZERO))
                    .with_jitter(Jitter::None),
            ),
        ),
        "policy" => {
            let breaker = CircuitBreaker::builder("bench").build().expect("valid");
            Cadence::new("guarded").sequence(
                "notes",
                (0..100).map(|i| {
                    bump_note()
                        .named(format!("n{i}"))
                        .with_retry(Retry::new(3))
                        .with_timeout(Duration::from_secs(5))
                        .with_circuit_breaker(breaker.clone())
                }),
            )
        }
        "sync" => Cadence::new("sync").sync_with(
            "fan",
            (0..1000).map(|i| bump_note().named(format!("m{i}"))),
            MergeStrategy::LastWriteWins,
        ),
        other => panic!("unknown workload {other}"),
    }
    .build()
    .expect("valid");
    if std::env::var_os("HOTPATH_SIZE").is_some() {
        eprintln!(
            "run future: {} B",
            std::mem::size_of_val(&cadence.run(Small::default()))
        );
    }
    // `HOTPATH_SETTLE_MS`: wait before the runs, so that under valgrind the time-stamp
    // counter's calibration (started when a cadence with hooks is built) is done and every
    // run reads the same clock.
    if let Some(ms) = std::env::var("HOTPATH_SETTLE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
    rt.block_on(async {
        for _ in 0..runs {
            black_box(cadence.run(Small::default()).await.expect("runs"));
        }
    });
}
