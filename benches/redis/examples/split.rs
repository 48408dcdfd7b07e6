//! Diagnostic: runs the value and the baseline of `redis.ckpt_commits` separately and prints,
//! for each, the rate and the CPU per operation of this process and of redis-server
//! (`INFO cpu`), to see which side a change helps. Needs `CADENCE_REDIS_URL`.
//!
//! `cargo run --release -p cadence-bench-redis --example split [rounds] [value|baseline]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use cadence_core::{BoxError, Cadence, RunOptions, note};
use cadence_redis::Redis;
use serde::{Deserialize, Serialize};

const TASKS: usize = 64;
const NOTES: usize = 5;
const RUNS: usize = 40;

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

/// This process's CPU seconds (user + system).
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

async fn server_cpu(redis: &Redis) -> f64 {
    let mut conn = redis.connection();
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(&mut conn)
        .await
        .expect("INFO cpu");
    info.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            matches!(k, "used_cpu_sys" | "used_cpu_user").then(|| v.parse::<f64>().ok())?
        })
        .sum()
}

fn main() {
    let url = std::env::var("CADENCE_REDIS_URL").expect("CADENCE_REDIS_URL");
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3)
        .min(20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let prefix = format!("split-{}", std::process::id());
    let redis = rt
        .block_on(
            Redis::builder(url)
                .with_prefix(prefix.clone())
                .with_record_ttl(Duration::from_secs(600))
                .connect(),
        )
        .expect("Redis");
    let cadence = cadence(&redis);
    let payload: Arc<[u8]> = vec![b'x'; 330].into();
    let script = Arc::new(redis::Script::new(
        "if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0",
    ));
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
                .expect("setup");
        }
    });
    let only = std::env::args().nth(2);
    for round in 0..rounds {
        for side in ["value", "baseline"] {
            if only.as_deref().is_some_and(|o| o != side) {
                continue;
            }
            let (c0, s0) = (own_cpu(), rt.block_on(server_cpu(&redis)));
            let start = Instant::now();
            let ops = rt.block_on(async {
                let tasks: Vec<_> = (0..TASKS)
                    .map(|t| {
                        let cadence = cadence.clone();
                        let (mut conn, script, payload) =
                            (redis.connection(), script.clone(), payload.clone());
                        let (record, lease) = (
                            format!("{prefix}:{{cas:{t}}}:record"),
                            format!("{prefix}:{{cas:{t}}}:lease"),
                        );
                        let value = side == "value";
                        tokio::spawn(async move {
                            if value {
                                for r in 0..RUNS {
                                    let id = format!("x{round}-t{t:02}-r{r:04}");
                                    cadence
                                        .run_with(
                                            Order::default(),
                                            RunOptions::default().with_run_id(id),
                                        )
                                        .await
                                        .expect("a run");
                                }
                            } else {
                                for _ in 0..RUNS * NOTES {
                                    let ok: i64 = script
                                        .key(&record)
                                        .key(&lease)
                                        .arg(1)
                                        .arg(&*payload)
                                        .invoke_async(&mut conn)
                                        .await
                                        .expect("cas");
                                    assert_eq!(ok, 1);
                                }
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("a task");
                }
                TASKS * RUNS * NOTES
            });
            let wall = start.elapsed().as_secs_f64();
            let (c1, s1) = (own_cpu(), rt.block_on(server_cpu(&redis)));
            println!(
                "{side:8} {:7.0} ops/s  client {:5.2} us/op  server {:5.2} us/op",
                ops as f64 / wall,
                (c1 - c0) * 1e6 / ops as f64,
                (s1 - s0) * 1e6 / ops as f64,
            );
        }
    }
}
