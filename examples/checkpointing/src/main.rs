//! Checkpointing with a `FileStore`: a sign-up run that crashes on purpose the first time and
//! resumes where it stopped the second time.
//!
//! ```text
//! cargo run -p example-checkpointing     # crashes in `provision` (exit code 1)
//! cargo run -p example-checkpointing     # resumes: skips the measures completed before
//! ```
//!
//! The checkpoints live in `$TMPDIR/cadence-example-checkpointing` (or the directory given as
//! the first argument). The crash is `std::process::exit(1)` in the middle of a note — as
//! abrupt as a `kill -9`: no destructor runs, nothing is flushed. What was completed before
//! survives because the `FileStore` wrote (and fsynced) a checkpoint after each measure. A
//! marker file makes the crash happen only once; a successful run removes it, so the next
//! start crashes again.
//!
//! Re-running a note that was in flight at the crash is the guarantee (at least once,
//! CKP-14); notes with external effects pass `NoteContext::idempotency_key` to the service
//! they call, as `send_welcome` shows.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cadence_core::checkpoint::{CheckpointStore, FileStore};
use cadence_core::{
    BoxError, Cadence, CadenceError, Hook, HookContext, NoteContext, RunOptions, SkipReason, note,
};

/// The run's score. Checkpointing stores it as JSON, hence `Serialize` and `Deserialize`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Signup {
    email: String,
    account_id: Option<u64>,
    welcome_sent_with_key: Option<String>,
    provisioned: bool,
    notified: bool,
}

/// Prints what the checkpoint machinery does.
struct Narrator;

impl Hook<Signup> for Narrator {
    fn on_checkpoint_loaded(&self, _cx: &HookContext<'_>, completed: usize, _forced: bool) {
        println!("resuming from a checkpoint: {completed} measures completed before");
    }

    fn on_note_skipped(&self, _cx: &HookContext<'_>, path: &str, _reason: SkipReason) {
        println!("  {path}: skipped (completed before the crash)");
    }

    fn on_note_start(&self, _cx: &HookContext<'_>, path: &str, attempt: u32, _s: &Signup) {
        println!("  {path}: running (attempt {attempt})");
    }

    fn on_checkpoint_saved(&self, _cx: &HookContext<'_>, path: &str, completed: usize) {
        println!("  checkpoint saved after {path} ({completed} completed)");
    }
}

fn signup(
    store: Arc<dyn CheckpointStore>,
    crash_marker: PathBuf,
) -> Result<Cadence<Signup>, CadenceError> {
    Cadence::<Signup>::new("signup")
        .then(
            "create_account",
            note::from_fn(|s: &mut Signup| {
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    s.account_id = Some(4242);
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .then(
            "send_welcome",
            note::from_fn_with_context(|s: &mut Signup, cx: &NoteContext<'_>| {
                Box::pin(async move {
                    // The same key on every attempt and every resume of this run: a mail
                    // service deduplicating on it sends one mail, whatever happens here.
                    s.welcome_sent_with_key = Some(cx.idempotency_key());
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .then(
            "provision",
            note::from_fn(move |s: &mut Signup| {
                let marker = crash_marker.clone();
                Box::pin(async move {
                    if !marker.exists() {
                        std::fs::write(&marker, b"crashed once\n")?;
                        println!(
                            "  provision: simulated crash (exit code 1); run me again to resume"
                        );
                        std::process::exit(1);
                    }
                    s.provisioned = true;
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .then(
            "notify",
            note::from_fn(|s: &mut Signup| {
                Box::pin(async move {
                    s.notified = true;
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .with_hooks(Narrator)
        .with_checkpoint(store)
        .build()
}

fn store_dir() -> PathBuf {
    std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("cadence-example-checkpointing"))
}

async fn run(dir: &Path) -> Result<Signup, BoxError> {
    let store: Arc<dyn CheckpointStore> = Arc::new(FileStore::new(dir.join("checkpoints")));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let marker = dir.join("crashed-once");
    let cadence = signup(store, marker.clone())?;
    println!(
        "run user-42 of cadence 'signup', checkpoints in {}",
        dir.join("checkpoints").display()
    );
    let score = Signup {
        email: "ada@example.com".into(),
        ..Signup::default()
    };
    let done = cadence
        .run_with(score, RunOptions::default().with_run_id("user-42"))
        .await?;
    // Succeeded: the checkpoint is gone; crash again next time.
    let _ = std::fs::remove_file(&marker);
    Ok(done)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = store_dir();
    match run(&dir).await {
        Ok(s) => println!("done: {s:?}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
