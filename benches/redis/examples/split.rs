//! Diagnostic: runs the value and the baseline of `redis.ckpt_commits` separately and prints,
//! for each, the rate and the CPU per operation of this process and of redis-server
//! (`INFO cpu`), to see which side a change helps; with `SPLIT_ALLOCS=1`, also the allocations
//! per operation of this process (counting them adds two atomic operations to each allocation,
//! so the client's CPU then reads higher). Needs `CADENCE_REDIS_URL`.
//!
//! `cargo run --release -p cadence-bench-redis --example split [rounds] [value|baseline]`

use std::time::Instant;

use cadence_bench_core::harness::CountingAlloc;
use cadence_bench_redis::workload::{self, NOTES, Workload};
use cadence_redis::Redis;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Runs per task of the value side (the baseline does as many writes as it commits).
const RUNS: usize = 40;

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
    let rt = workload::runtime();
    let prefix = format!("split-{}", std::process::id());
    let work = rt.block_on(Workload::connect(url, prefix)).expect("Redis");
    let only = std::env::args().nth(2);
    let count_allocs = std::env::var_os("SPLIT_ALLOCS").is_some();
    for round in 0..rounds {
        for side in ["value", "baseline"] {
            if only.as_deref().is_some_and(|o| o != side) {
                continue;
            }
            let (c0, s0) = (own_cpu(), rt.block_on(server_cpu(&work.redis)));
            let counting = count_allocs.then(CountingAlloc::count);
            let a0 = CountingAlloc::snapshot();
            let start = Instant::now();
            let ops = rt.block_on(async {
                if side == "value" {
                    work.value(&format!("x{round}"), RUNS).await
                } else {
                    work.baseline(RUNS * NOTES).await
                }
            });
            let wall = start.elapsed().as_secs_f64();
            let allocs = CountingAlloc::snapshot().allocations_since(&a0);
            let (c1, s1) = (own_cpu(), rt.block_on(server_cpu(&work.redis)));
            let allocs = match counting {
                Some(_) => format!("  {:5.1} allocs/op", allocs as f64 / ops as f64),
                None => String::new(),
            };
            println!(
                "{side:8} {:7.0} ops/s  client {:5.2} us/op  server {:5.2} us/op{allocs}",
                ops as f64 / wall,
                (c1 - c0) * 1e6 / ops as f64,
                (s1 - s0) * 1e6 / ops as f64,
            );
        }
    }
    rt.block_on(work.clean_up());
}
