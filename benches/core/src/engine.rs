//! Figures of the engine's hot path: `core.seq_note`, `core.run3`, `core.mem_per_run`,
//! `core.sync1000`, `core.sync_sleep100`, `core.retry3` and `core.policy_note`, over the score
//! and notes of [`crate::fixtures`].

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cadence_core::circuit_breaker::CircuitBreaker;
use cadence_core::note::NoteFuture;
use cadence_core::retry::{Backoff, Jitter, Retry};
use cadence_core::{BoxError, Cadence, Control, MergeStrategy, Note, NoteContext, note};

use crate::fixtures::{Small, bump, bump_note, flaky_note, twice_then_ok};
use crate::harness::{
    Config, CountingAlloc, Outcome, current_thread_runtime, interleave_async,
    interleave_async_with, interleave_async_with_on,
};

fn sequence_of(n: usize) -> Cadence<Small> {
    Cadence::new("seq")
        .sequence("notes", (0..n).map(|i| bump_note().named(format!("n{i}"))))
        .build()
        .expect("a valid cadence")
}

/// `core.seq_note`: per note, a 1000-note cadence of no-op notes, definition reused.
pub(crate) fn seq_note(config: &Config) -> Outcome {
    const NOTES: u64 = 1000;
    let cadence = sequence_of(NOTES as usize);
    let runs = config.scale(20);
    let plan = config.plan(runs);
    let p = interleave_async(
        &plan,
        async |iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(cadence.run(Small::default()).await.expect("runs"));
            }
            t.elapsed() / NOTES as u32
        },
        async |iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let mut s = Small::default();
                for _ in 0..NOTES {
                    bump(&mut s).await.expect("runs");
                }
                black_box(s);
            }
            t.elapsed() / NOTES as u32
        },
    );
    p.into()
}

/// `core.run3`: per run, 3 no-op notes, definition reused, a new score each run.
pub(crate) fn run3(config: &Config) -> Outcome {
    let cadence = Cadence::new("run3")
        .then("a", bump_note())
        .then("b", bump_note())
        .then("c", bump_note())
        .build()
        .expect("valid");
    let plan = config.plan(20_000);
    interleave_async(
        &plan,
        async |iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(cadence.run(Small::default()).await.expect("runs"));
            }
            t.elapsed()
        },
        async |iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let mut s = Small::default();
                bump(&mut s).await.expect("runs");
                bump(&mut s).await.expect("runs");
                bump(&mut s).await.expect("runs");
                black_box(s);
            }
            t.elapsed()
        },
    )
    .into()
}

/// `core.mem_per_run`: bytes per in-flight run, 10 000 concurrent 3-note runs parked on a
/// gate in the middle note, against hand-written futures doing the same.
pub(crate) fn mem_per_run(config: &Config) -> Outcome {
    if !CountingAlloc::is_installed() {
        return Outcome::skipped("the counting allocator is not installed");
    }
    // Both sides park their runs under one guard (no other figure runs meanwhile).
    let _counting = CountingAlloc::count();
    let runs = config.scale(10_000) as usize;
    let plan = config.plan(1);
    let rt = current_thread_runtime();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let parked = Arc::new(AtomicUsize::new(0));
    let middle = {
        let (gate, parked) = (gate.clone(), parked.clone());
        note::from_fn(move |s: &mut Small| {
            let (gate, parked) = (gate.clone(), parked.clone());
            Box::pin(async move {
                parked.fetch_add(1, Ordering::SeqCst);
                let _permit = gate.acquire().await?;
                s.counter += 1;
                Ok::<_, BoxError>(())
            })
        })
    };
    let cadence = Cadence::new("parked")
        .then("a", bump_note())
        .then("gate", middle)
        .then("c", bump_note())
        .build()
        .expect("valid");

    async fn park_all<F, Fut>(
        runs: usize,
        parked: &AtomicUsize,
        gate: &tokio::sync::Semaphore,
        spawn: F,
    ) -> f64
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        parked.store(0, Ordering::SeqCst);
        let before = CountingAlloc::snapshot();
        let mut handles = Vec::with_capacity(runs);
        for _ in 0..runs {
            handles.push(tokio::spawn(spawn()));
        }
        while parked.load(Ordering::SeqCst) < runs {
            tokio::task::yield_now().await;
        }
        let after = CountingAlloc::snapshot();
        let handles_bytes = (runs * std::mem::size_of::<tokio::task::JoinHandle<()>>()) as isize;
        let per_run = (after.bytes_since(&before) - handles_bytes) as f64 / runs as f64;
        gate.add_permits(runs);
        for h in handles {
            h.await.expect("task finished");
        }
        per_run
    }

    let (c, g, pk) = (cadence, gate, parked);
    let p = interleave_async_with_on(
        &rt,
        &plan,
        async || {
            let c = c.clone();
            park_all(runs, &pk, &g, || {
                let c = c.clone();
                async move {
                    black_box(c.run(Small::default()).await.expect("runs"));
                }
            })
            .await
        },
        async || {
            let (g2, pk2) = (g.clone(), pk.clone());
            park_all(runs, &pk, &g, || {
                let (g2, pk2) = (g2.clone(), pk2.clone());
                async move {
                    let mut s = Small::default();
                    bump(&mut s).await.expect("runs");
                    pk2.fetch_add(1, Ordering::SeqCst);
                    let _permit = g2.acquire().await.expect("open");
                    s.counter += 1;
                    bump(&mut s).await.expect("runs");
                    black_box(s);
                }
            })
            .await
        },
    );
    p.into()
}

/// `core.sync1000`: per member, a `.sync` of 1000 no-op members (clone + diff + merge
/// included), against `join_all` of 1000 futures on 1000 clones without a merge.
pub(crate) fn sync1000(config: &Config) -> Outcome {
    const MEMBERS: usize = 1000;
    let members: Vec<Note<Small>> = (0..MEMBERS)
        .map(|i| bump_note().named(format!("m{i}")))
        .collect();
    let cadence = Cadence::new("sync")
        .sync_with("fan", members, MergeStrategy::LastWriteWins)
        .build()
        .expect("valid");
    let seed = Small {
        counter: 1,
        name: "order-1".into(),
        tags: vec!["a".into(), "b".into()],
    };
    let plan = config.plan(config.scale(20).max(2));
    interleave_async(
        &plan,
        async |iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(cadence.run(seed.clone()).await.expect("runs"));
            }
            t.elapsed() / MEMBERS as u32
        },
        async |iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let mut clones: Vec<Small> = (0..MEMBERS).map(|_| seed.clone()).collect();
                futures_util::future::join_all(clones.iter_mut().map(bump)).await;
                black_box(clones);
            }
            t.elapsed() / MEMBERS as u32
        },
    )
    .into()
}

/// `core.sync_sleep100`: wall time of a `.sync` of 100 members each sleeping 10 ms, against
/// `join_all` of the same sleeps.
pub(crate) fn sync_sleep100(config: &Config) -> Outcome {
    async fn nap(s: &mut Small) -> Result<(), BoxError> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        s.counter += 1;
        Ok(())
    }
    fn nap_note() -> Note<Small> {
        fn call<'a>(s: &'a mut Small, _cx: &'a NoteContext<'a>) -> NoteFuture<'a> {
            Box::pin(async move {
                nap(s).await?;
                Ok(Control::Continue)
            })
        }
        Note::__from_macro("nap", call, None)
    }
    let cadence = Cadence::new("sleep")
        .sync_with(
            "fan",
            (0..100).map(|i| nap_note().named(format!("m{i}"))),
            MergeStrategy::LastWriteWins,
        )
        .build()
        .expect("valid");
    let plan = config.plan(1);
    interleave_async_with(
        &plan,
        async || {
            let t = Instant::now();
            black_box(cadence.run(Small::default()).await.expect("runs"));
            t.elapsed().as_secs_f64() * 1e3
        },
        async || {
            let t = Instant::now();
            let mut clones: Vec<Small> = (0..100).map(|_| Small::default()).collect();
            futures_util::future::join_all(clones.iter_mut().map(nap)).await;
            black_box(clones);
            t.elapsed().as_secs_f64() * 1e3
        },
    )
    .into()
}

/// `core.retry3`: per run, one note failing twice then succeeding, zero delay, against a
/// hand-written retry loop.
pub(crate) fn retry3(config: &Config) -> Outcome {
    let cadence = Cadence::new("retry")
        .then(
            "flaky",
            flaky_note().with_retry(
                Retry::new(3)
                    .with_backoff(Backoff::fixed(Duration::ZERO))
                    .with_jitter(Jitter::None),
            ),
        )
        .build()
        .expect("valid");
    let plan = config.plan(20_000);
    interleave_async(
        &plan,
        async |iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(
                    cadence
                        .run(Small::default())
                        .await
                        .expect("succeeds on the third"),
                );
            }
            t.elapsed()
        },
        async |iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let mut s = Small::default();
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match twice_then_ok(&mut s).await {
                        Ok(()) => break,
                        Err(e) if attempt < 3 => drop(black_box(e)),
                        Err(e) => panic!("{e}"),
                    }
                }
                black_box(s);
            }
            t.elapsed()
        },
    )
    .into()
}

/// `core.policy_note`: per note, a note with retry + timeout + circuit breaker configured that
/// succeeds first time, against the same bare note.
pub(crate) fn policy_note(config: &Config) -> Outcome {
    const NOTES: usize = 100;
    let breaker = CircuitBreaker::builder("bench").build().expect("valid");
    let guarded = Cadence::new("guarded")
        .sequence(
            "notes",
            (0..NOTES).map(|i| {
                bump_note()
                    .named(format!("n{i}"))
                    .with_retry(Retry::new(3))
                    .with_timeout(Duration::from_secs(5))
                    .with_circuit_breaker(breaker.clone())
            }),
        )
        .build()
        .expect("valid");
    let bare = sequence_of(NOTES);
    let plan = config.plan(200);
    interleave_async(
        &plan,
        async |iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(guarded.run(Small::default()).await.expect("runs"));
            }
            t.elapsed() / NOTES as u32
        },
        async |iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(bare.run(Small::default()).await.expect("runs"));
            }
            t.elapsed() / NOTES as u32
        },
    )
    .into()
}
