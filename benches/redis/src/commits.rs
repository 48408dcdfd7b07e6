//! `redis.ckpt_commits`: note commits per second with 64 concurrent runs of 5 notes, each
//! checkpointing to a local `redis-server` through [`RedisStore`](cadence_redis::RedisStore),
//! against the floor of a fenced write: `EVALSHA` of a minimal Lua compare-and-set of the same payload from 64
//! concurrent tasks over one shared connection.
//!
//! A commit is one note whose completion the engine saved (a fenced save). Each run also
//! takes its lease and loads its checkpoint (one operation), and ends with one fenced operation
//! that clears the record and releases the lease — carrying the save of the last note — so a
//! run of 5 notes is 6 fenced operations, all counted in the value's time; the baseline does
//! one compare-and-set per commit and nothing else. The store's group commit sends the
//! operations that the 64 runs submit together as one `EVALSHA` (see `RedisStore`).
//!
//! The workload itself is `cadence_bench_redis::workload`, shared with `examples/split.rs`,
//! which runs each side alone and prints the CPU per operation of this process and of
//! redis-server, to see which side a change helps; `tools/server_ir.py` replays batches
//! captured from it against a redis-server under callgrind and prints the server's
//! instructions per commit, a reading the VM's phases do not move (for changes to the
//! group-commit script).
//!
//! What the ratio measures on a shared 2-core machine is, in effect, total CPU per commit
//! (client + redis-server) against the baseline's: with the work split between the bench
//! process and redis-server, each side's CPU per commit counts.

use std::time::Instant;

use cadence_bench_core::harness::{Config, Outcome, interleave_async_with_on};
use cadence_bench_redis::workload::{self, NOTES, Workload};

/// `redis.ckpt_commits` (ops/s, higher is better).
pub(crate) fn ckpt_commits(config: &Config) -> Outcome {
    let Ok(url) = std::env::var("CADENCE_REDIS_URL") else {
        return Outcome::skipped("CADENCE_REDIS_URL is not set (run `cargo xtask bench`)");
    };
    let rt = workload::runtime();
    let prefix = format!("bench-{}", std::process::id());
    let work = match rt.block_on(Workload::connect(url, prefix)) {
        Ok(work) => work,
        Err(e) => return Outcome::skipped(format!("cannot reach Redis: {e}")),
    };
    let runs_per_task = config.scale(40) as usize;
    let writes_per_task = runs_per_task * NOTES;
    let mut sample = 0u64;
    let plan = config.plan(1);
    let paired = interleave_async_with_on(
        &rt,
        &plan,
        async || {
            sample += 1;
            let start = Instant::now();
            let commits = work.value(&format!("s{sample}"), runs_per_task).await;
            commits as f64 / start.elapsed().as_secs_f64()
        },
        async || {
            let start = Instant::now();
            let writes = work.baseline(writes_per_task).await;
            writes as f64 / start.elapsed().as_secs_f64()
        },
    );
    // Leave nothing behind but expiring fence counters and run index.
    rt.block_on(work.clean_up());
    paired.into()
}
