//! `redis.ckpt_commits`: note commits per second with 64 concurrent runs of 5 notes, each
//! checkpointing to a local `redis-server` through [`RedisStore`](cadence_redis::RedisStore), against the floor of a
//! fenced write: `EVALSHA` of a minimal Lua compare-and-set of the same payload from 64
//! concurrent tasks over one shared connection.
//!
//! A commit is one note whose completion the engine saved (a fenced save). Each run also
//! takes its lease and loads its checkpoint (one operation), and ends with one fenced operation
//! that clears the record and releases the lease — carrying the save of the last note — so a
//! run of 5 notes is 6 fenced operations, all counted in the value's time; the baseline does
//! one compare-and-set per commit and nothing else. The store's group commit sends the
//! operations that the 64 runs submit together as one `EVALSHA` (see `RedisStore`).
//!
//! `examples/split.rs` runs each side alone and prints the CPU per operation of this process
//! and of redis-server, to see which side a change helps.
//!
//! What the ratio measures on a shared 2-core machine is, in effect, total CPU per commit
//! (client + redis-server) against the baseline's: with the work split between the bench
//! process and redis-server, each side's CPU per commit counts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cadence_bench_core::harness::{Config, Outcome, interleave_async_with_on};
use cadence_core::checkpoint::Record;
use cadence_core::{BoxError, Cadence, RunOptions, note};
use cadence_redis::Redis;
use serde::{Deserialize, Serialize};

/// Concurrent runs (value) and tasks (baseline).
const TASKS: usize = 64;
/// Notes per run.
const NOTES: usize = 5;

/// A small, typical score.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Order {
    id: u64,
    total_cents: u64,
    lines: Vec<String>,
    status: String,
}

fn cadence(redis: &Redis) -> Cadence<Order> {
    let mut b = Cadence::<Order>::new("bench_ckpt");
    for i in 0..NOTES {
        b = b.then(
            format!("n{i}"),
            note::from_fn(move |o: &mut Order| {
                Box::pin(async move {
                    o.total_cents += 100;
                    o.lines.push(format!("line {i}"));
                    Ok::<_, BoxError>(())
                })
            }),
        );
    }
    b.with_checkpoint(Arc::new(redis.store()))
        .build()
        .expect("a valid cadence")
}

/// The record the engine writes after the third note, as the baseline's payload.
fn payload() -> Vec<u8> {
    let score = Order {
        id: 42,
        total_cents: 300,
        lines: (0..3).map(|i| format!("line {i}")).collect(),
        status: "open".into(),
    };
    let mut r = Record::new(
        "bench_ckpt",
        "s0-t00-r0000",
        "0123456789abcdef0123456789abcdef",
        serde_json::to_value(&score).expect("a JSON score"),
    );
    r.completed = (0..3).map(|i| format!("n{i}")).collect();
    r.attempts = (0..4).map(|i| (format!("n{i}"), 1)).collect();
    r.fence = 1;
    r.to_json()
}

/// The baseline's script: a minimal fenced write.
const CAS: &str = "if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0";

/// `redis.ckpt_commits` (ops/s, higher is better).
pub(crate) fn ckpt_commits(config: &Config) -> Outcome {
    let Ok(url) = std::env::var("CADENCE_REDIS_URL") else {
        return Outcome::skipped("CADENCE_REDIS_URL is not set (run `cargo xtask bench`)");
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let prefix = format!("bench-{}", std::process::id());
    let redis = match rt.block_on(
        Redis::builder(url)
            .with_prefix(prefix.clone())
            .with_record_ttl(Duration::from_secs(600))
            .connect(),
    ) {
        Ok(redis) => redis,
        Err(e) => return Outcome::skipped(format!("cannot reach Redis: {e}")),
    };
    let cadence = cadence(&redis);
    let runs_per_task = config.scale(40) as usize;
    let writes_per_task = runs_per_task * NOTES;
    let payload: Arc<[u8]> = payload().into();
    let script = Arc::new(redis::Script::new(CAS));
    // The baseline's lease keys hold the token its writes compare with.
    rt.block_on(async {
        let mut conn = redis.connection();
        for t in 0..TASKS {
            redis::cmd("SET")
                .arg(format!("{prefix}:{{cas:{t}}}:lease"))
                .arg(1)
                .arg("EX")
                .arg(600)
                .exec_async(&mut conn)
                .await
                .expect("setting up the baseline");
        }
    });
    let mut sample = 0u64;
    let plan = config.plan(1);
    let paired = interleave_async_with_on(
        &rt,
        &plan,
        async || {
            sample += 1;
            let start = Instant::now();
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let cadence = cadence.clone();
                    tokio::spawn(async move {
                        for r in 0..runs_per_task {
                            let id = format!("s{sample}-t{t:02}-r{r:04}");
                            cadence
                                .run_with(Order::default(), RunOptions::default().with_run_id(id))
                                .await
                                .expect("a checkpointed run");
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("a bench task");
            }
            (TASKS * runs_per_task * NOTES) as f64 / start.elapsed().as_secs_f64()
        },
        async || {
            let start = Instant::now();
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let (mut conn, script, payload) =
                        (redis.connection(), script.clone(), payload.clone());
                    let (record, lease) = (
                        format!("{prefix}:{{cas:{t}}}:record"),
                        format!("{prefix}:{{cas:{t}}}:lease"),
                    );
                    tokio::spawn(async move {
                        for _ in 0..writes_per_task {
                            let ok: i64 = script
                                .key(&record)
                                .key(&lease)
                                .arg(1)
                                .arg(&*payload)
                                .invoke_async(&mut conn)
                                .await
                                .expect("a compare-and-set");
                            assert_eq!(ok, 1);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("a bench task");
            }
            (TASKS * writes_per_task) as f64 / start.elapsed().as_secs_f64()
        },
    );
    // Leave nothing behind but expiring fence counters.
    rt.block_on(async {
        let mut conn = redis.connection();
        for t in 0..TASKS {
            let _ = redis::cmd("DEL")
                .arg(format!("{prefix}:{{cas:{t}}}:record"))
                .arg(format!("{prefix}:{{cas:{t}}}:lease"))
                .exec_async(&mut conn)
                .await;
        }
    });
    paired.into()
}
