//! The two sides of `redis.ckpt_commits` (see `commits.rs` in the bench binary):
//!
//! - the value: [`TASKS`] tasks each running checkpointed runs of [`NOTES`] notes through a
//!   [`RedisStore`](cadence_redis::RedisStore);
//! - the baseline: [`TASKS`] tasks each doing `EVALSHA` of a minimal Lua compare-and-set
//!   ([`CAS`]) of the same payload over one shared connection.

use std::sync::Arc;
use std::time::Duration;

use cadence_core::checkpoint::Record;
use cadence_core::{BoxError, Cadence, RunOptions, note};
use cadence_redis::Redis;
use serde::{Deserialize, Serialize};

/// Concurrent runs (value) and tasks (baseline).
pub const TASKS: usize = 64;
/// Notes per run.
pub const NOTES: usize = 5;

/// The baseline's script: a minimal fenced write.
pub const CAS: &str = "if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0";

/// The runtime both sides run on: multi-threaded, 2 workers (this machine's cores).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

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

/// Both sides, connected to one Redis under one key prefix.
pub struct Workload {
    /// The connection both sides share.
    pub redis: Redis,
    prefix: String,
    cadence: Cadence<Order>,
    script: Arc<redis::Script>,
    payload: Arc<[u8]>,
}

impl Workload {
    /// Connects under `prefix` and sets the baseline's lease keys (which hold the token its
    /// writes compare with).
    pub async fn connect(
        url: String,
        prefix: String,
    ) -> Result<Workload, cadence_core::CadenceError> {
        let redis = Redis::builder(url)
            .with_prefix(prefix.clone())
            .with_record_ttl(Duration::from_secs(600))
            .connect()
            .await?;
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
        Ok(Workload {
            cadence: cadence(&redis),
            redis,
            prefix,
            script: Arc::new(redis::Script::new(CAS)),
            payload: payload().into(),
        })
    }

    /// The value: `runs_per_task` runs in each of [`TASKS`] tasks, run ids tagged with `tag`
    /// (unique per call); returns the commits made.
    pub async fn value(&self, tag: &str, runs_per_task: usize) -> usize {
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let cadence = self.cadence.clone();
                let tag = tag.to_owned();
                tokio::spawn(async move {
                    for r in 0..runs_per_task {
                        let id = format!("{tag}-t{t:02}-r{r:04}");
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
        TASKS * runs_per_task * NOTES
    }

    /// The baseline: `writes_per_task` compare-and-sets in each of [`TASKS`] tasks; returns
    /// the writes made.
    pub async fn baseline(&self, writes_per_task: usize) -> usize {
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let (mut conn, script, payload) = (
                    self.redis.connection(),
                    self.script.clone(),
                    self.payload.clone(),
                );
                let (record, lease) = self.cas_keys(t);
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
        TASKS * writes_per_task
    }

    /// Removes the baseline's keys (the value's runs clear their own records).
    pub async fn clean_up(&self) {
        let mut conn = self.redis.connection();
        for t in 0..TASKS {
            let (record, lease) = self.cas_keys(t);
            let _ = redis::cmd("DEL")
                .arg(record)
                .arg(lease)
                .exec_async(&mut conn)
                .await;
        }
    }

    /// The record and lease keys of baseline task `t`.
    fn cas_keys(&self, t: usize) -> (String, String) {
        let prefix = &self.prefix;
        (
            format!("{prefix}:{{cas:{t}}}:record"),
            format!("{prefix}:{{cas:{t}}}:lease"),
        )
    }
}
