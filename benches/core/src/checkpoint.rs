//! Figures of checkpointing: `core.ckpt_mem` and `core.ckpt_file`.
//!
//! Both run a cadence of [`MEASURES`] one-note measures on a score holding a 100-string `Vec`,
//! checkpointing after every measure, a new run id per run (so each run also loads, finds
//! nothing, and clears its record at the end: amortized over the measures).
//!
//! - `core.ckpt_mem`: per note, with a `MemoryStore` (which also takes and releases a lease
//!   per run), against what a checkpoint cannot avoid: `serde_json::to_vec` of the score
//!   (after the same no-op note).
//! - `core.ckpt_file`: per committed measure, with a `FileStore` (temp file, write, fsync,
//!   rename, fsync of the directory; the blocking I/O on tokio's blocking pool), against the
//!   same file operations on the same record bytes, done inline. The directory is
//!   `$CADENCE_BENCH_CKPT_DIR` if set, else under the system temp dir: on tmpfs fsync is free
//!   and the figure shows only the CPU side.
//!
//! The score, note and cadence are public so that `examples/hotpath.rs` (workloads `ckpt` and
//! `ckpt_base`) profiles exactly what `core.ckpt_mem` measures.

use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cadence_core::checkpoint::{CheckpointStore, FileStore, MemoryStore, Record};
use cadence_core::note::NoteFuture;
use cadence_core::{BoxError, Cadence, Control, Note, NoteContext, RunOptions};

use crate::harness::{Config, Outcome, interleave_async};

/// Measures per run.
pub const MEASURES: u32 = 20;

/// The score: a counter and 100 strings (serde's tuple impls, no derive needed).
pub type Doc = (u64, Vec<String>);

/// A fresh score.
pub fn doc() -> Doc {
    (
        0,
        (0..100)
            .map(|i| format!("item {i:04}: a line of text"))
            .collect(),
    )
}

/// The note every measure runs (what `#[note]` expands to).
pub async fn bump(s: &mut Doc) -> Result<(), BoxError> {
    s.0 = black_box(s.0 + 1);
    Ok(())
}

fn bump_note() -> Note<Doc> {
    fn call<'a>(s: &'a mut Doc, _cx: &'a NoteContext<'a>) -> NoteFuture<'a> {
        Box::pin(async move {
            bump(s).await?;
            Ok(Control::Continue)
        })
    }
    Note::__from_macro("bump", call, None)
}

/// The cadence of both figures: [`MEASURES`] one-note measures, checkpointing to `store`.
pub fn checkpointed(store: Arc<dyn CheckpointStore>) -> Cadence<Doc> {
    (0..MEASURES)
        .fold(Cadence::new("ckpt"), |c, i| {
            c.then(format!("m{i}"), bump_note())
        })
        .with_checkpoint(store)
        .build()
        .expect("a valid cadence")
}

/// Runs `iters` checkpointed runs with fresh ids; the time per measure.
async fn run_many(cadence: &Cadence<Doc>, next_id: &mut u64, iters: u64) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        *next_id += 1;
        let opts = RunOptions::default().with_run_id(format!("run-{next_id}"));
        black_box(cadence.run_with(doc(), opts).await.expect("runs"));
    }
    t.elapsed() / MEASURES
}

/// `core.ckpt_mem`: per note, `MemoryStore`, against `serde_json::to_vec` of the score.
pub(crate) fn ckpt_mem(config: &Config) -> Outcome {
    let cadence = checkpointed(Arc::new(MemoryStore::new()));
    let mut next_id = 0;
    interleave_async(
        &config.plan(200),
        async |iters| run_many(&cadence, &mut next_id, iters).await,
        async |iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let mut s = doc();
                for _ in 0..MEASURES {
                    bump(&mut s).await.expect("runs");
                    black_box(serde_json::to_vec(&s).expect("serializes"));
                }
                black_box(s);
            }
            t.elapsed() / MEASURES
        },
    )
    .into()
}

/// A directory for the file figure, removed when dropped.
struct BenchDir(PathBuf);

impl Drop for BenchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What `FileStore` does for one save, inline: temp file, write, fsync, rename, fsync dir.
fn raw_save(dir: &Path, temp: &Path, target: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)
        .expect("create the temp file");
    f.write_all(bytes).expect("write");
    f.sync_all().expect("fsync");
    drop(f);
    fs::rename(temp, target).expect("rename");
    File::open(dir)
        .and_then(|d| d.sync_all())
        .expect("fsync the directory");
}

/// `core.ckpt_file`: per committed measure, `FileStore` with fsync, against raw write +
/// fsync + rename + directory fsync of the same bytes.
pub(crate) fn ckpt_file(config: &Config) -> Outcome {
    let base = std::env::var_os("CADENCE_BENCH_CKPT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let root = BenchDir(base.join(format!("cadence-bench-ckpt-{}", std::process::id())));
    let store_dir = root.0.join("store");
    let raw_dir = root.0.join("raw");
    fs::create_dir_all(&raw_dir).expect("create the bench directory");

    let cadence = checkpointed(Arc::new(FileStore::new(&store_dir)));
    // The bytes a save writes: the record of this score.
    let mut record = Record::new(
        "ckpt",
        "run-1",
        cadence.fingerprint(),
        serde_json::to_value(doc()).expect("serializes"),
    );
    record.completed = (0..MEASURES / 2).map(|i| format!("m{i}")).collect();
    let bytes = record.to_json();
    let (temp, target) = (raw_dir.join("~tmp.tmp"), raw_dir.join("run-1.json"));

    let mut next_id = 0;
    interleave_async(
        &config.plan(2),
        async |iters| run_many(&cadence, &mut next_id, iters).await,
        async |iters| {
            let t = Instant::now();
            for _ in 0..iters * u64::from(MEASURES) {
                raw_save(&raw_dir, &temp, &target, black_box(&bytes));
            }
            t.elapsed() / MEASURES
        },
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_figures_measure_in_quick_mode() {
        for f in [ckpt_mem, ckpt_file] {
            match f(&Config { quick: true }) {
                Outcome::Measured {
                    value,
                    baseline_value,
                } => assert!(value > 0.0 && baseline_value > 0.0),
                other => panic!("{other:?}"),
            }
        }
    }
}
