//! Checkpoint stores: the conformance suite (CKP-13) against `MemoryStore` and `FileStore`,
//! and what is specific to `FileStore` (CKP-11).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cadence_core::checkpoint::conformance::{self, Options};
use cadence_core::checkpoint::{CheckpointStore, FileStore, Record, RecordStatus};
use cadence_core::{CadenceError, CheckpointErrorKind};

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cadence-ckp-{tag}-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn kind(e: &CadenceError) -> Option<CheckpointErrorKind> {
    match e {
        CadenceError::Checkpoint { kind, .. } => Some(*kind),
        _ => None,
    }
}

/// Every file under `dir`, as paths relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

// ------------------------------------------------------------ CKP-13: the conformance suite

/// One test per contract and store, so a failure names both.
macro_rules! contracts {
    ($store:ident, [$($flavor:tt)*], $make:expr) => {
        mod $store {
            use super::*;

            #[tokio::test($($flavor)*)]
            async fn missing_is_none() {
                let (_dir, store) = $make;
                conformance::missing_is_none(&store).await;
            }

            #[tokio::test($($flavor)*)]
            async fn round_trip() {
                let (_dir, store) = $make;
                conformance::round_trip(&store).await;
            }

            #[tokio::test($($flavor)*)]
            async fn overwrite() {
                let (_dir, store) = $make;
                conformance::overwrite(&store).await;
            }

            #[tokio::test($($flavor)*)]
            async fn clear_is_idempotent() {
                let (_dir, store) = $make;
                conformance::clear_is_idempotent(&store).await;
            }

            #[tokio::test($($flavor)*)]
            async fn list_and_filter() {
                let (_dir, store) = $make;
                conformance::list_and_filter(&store).await;
            }

            #[tokio::test($($flavor)*)]
            async fn terminal_expiry() {
                let (_dir, store) = $make;
                conformance::terminal_expiry(&store).await;
            }

            #[tokio::test($($flavor)*)]
            async fn concurrent_saves_never_torn() {
                let (_dir, store) = $make;
                conformance::concurrent_saves_never_torn(&store, &Options::default()).await;
            }

            #[tokio::test($($flavor)*)]
            async fn lease_exclusivity() {
                let (_dir, store) = $make;
                conformance::lease_exclusivity(&store).await;
            }

            #[tokio::test($($flavor)*)]
            async fn lease_expiry_gives_higher_token() {
                let (_dir, store) = $make;
                conformance::lease_expiry_gives_higher_token(&store, &Options::default()).await;
            }

            #[tokio::test($($flavor)*)]
            async fn stale_lease_rejected() {
                let (_dir, store) = $make;
                conformance::stale_lease_rejected(&store, &Options::default()).await;
            }

            #[tokio::test($($flavor)*)]
            async fn lease_release_and_reacquire() {
                let (_dir, store) = $make;
                conformance::lease_release_and_reacquire(&store).await;
            }

            #[tokio::test($($flavor)*)]
            async fn corrupt_data_reported_and_untouched() {
                let (_dir, store) = $make;
                conformance::corrupt_data_reported_and_untouched(&store, &store).await;
            }

            // CKP-5, CKP-9, CKP-10
            #[tokio::test($($flavor)*)]
            async fn acquire_and_load() {
                let (_dir, store) = $make;
                conformance::acquire_and_load(&store, &store).await;
            }

            // CKP-7, CKP-9, CKP-10
            #[tokio::test($($flavor)*)]
            async fn end_run() {
                let (_dir, store) = $make;
                conformance::end_run(&store).await;
            }

            #[tokio::test($($flavor)*)]
            async fn run_all() {
                let (_dir, store) = $make;
                conformance::run_all(&store, &store, &Options::default()).await;
            }
        }
    };
}

// MemoryStore times leases with tokio::time: on paused time the expiry waits take no time.
contracts!(
    memory_store,
    [start_paused = true],
    ((), cadence_core::checkpoint::MemoryStore::new())
);

contracts!(file_store, [flavor = "multi_thread", worker_threads = 2], {
    let dir = TempDir::new("conformance");
    let store = FileStore::new(dir.path().join("store"));
    (dir, store)
});

/// Lease expiry on real time too (what a store timing leases with the wall clock sees).
#[tokio::test]
async fn memory_store_lease_expiry_on_real_time() {
    let store = cadence_core::checkpoint::MemoryStore::new();
    let options = Options::default().with_lease_ttl(Duration::from_millis(50));
    conformance::lease_expiry_gives_higher_token(&store, &options).await;
    conformance::stale_lease_rejected(&store, &options).await;
}

// ------------------------------------------------------------------- CKP-11: FileStore

#[tokio::test]
async fn file_store_file_names_are_percent_encoded() {
    let tmp = TempDir::new("names");
    let root = tmp.path().join("store");
    let store = FileStore::new(&root);
    let cases = [
        ("checkout", "order-1.A_z", "checkout/order-1.A_z.json"),
        ("a/b ü", "../x y%", "a%2Fb%20%C3%BC/..%2Fx%20y%25.json"),
        ("..", ".", "%2E%2E/%2E.json"),
        (".", "..", "%2E/%2E%2E.json"),
        ("c", "...", "c/....json"),
        ("c", "~tmp-1.tmp", "c/%7Etmp-1.tmp.json"),
        ("c", "a\\b:c*?\"<>|", "c/a%5Cb%3Ac%2A%3F%22%3C%3E%7C.json"),
    ];
    for (cadence, run_id, file) in cases {
        let r = Record::new(cadence, run_id, "f", serde_json::json!([cadence, run_id]));
        store.save(&r, None).await.unwrap();
        assert_eq!(store.record_path(cadence, run_id), root.join(file));
        assert_eq!(store.load(cadence, run_id).await.unwrap(), Some(r));
    }
    let mut want: Vec<String> = cases.iter().map(|c| c.2.to_owned()).collect();
    want.sort();
    assert_eq!(
        files_under(&root),
        want,
        "one file per run, no temp files left"
    );
    // Nothing escaped the store's directory.
    assert_eq!(files_under(tmp.path()).len(), cases.len());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);

    // The file is the record's JSON.
    let bytes = std::fs::read(root.join("checkout/order-1.A_z.json")).unwrap();
    assert_eq!(
        Record::from_json(&bytes).unwrap().run_id,
        "order-1.A_z",
        "the file holds the JSON record"
    );

    // The longest run id (255 bytes, RUN-2), all escaped, still fits in one file name.
    let long_id = "/".repeat(255);
    let long = Record::new("checkout", long_id.as_str(), "f", serde_json::json!(1));
    store.save(&long, None).await.unwrap();
    assert_eq!(store.load("checkout", &long_id).await.unwrap(), Some(long));
    let name = store.record_path("checkout", &long_id);
    let name = name.file_name().unwrap().to_str().unwrap();
    assert!(name.len() < 255 && name.contains('~'), "{name}");
    // ...and differs from a similar one.
    assert_ne!(
        store.record_path("checkout", &long_id),
        store.record_path("checkout", &"/".repeat(254))
    );
    assert_eq!(store.list(Some("checkout")).await.unwrap().len(), 2);
}

#[tokio::test]
async fn file_store_stray_temp_files_are_ignored_and_cleaned() {
    let tmp = TempDir::new("temp");
    let store = FileStore::new(tmp.path());
    let r = Record::new("c", "run", "f", serde_json::json!("ok"));
    store.save(&r, None).await.unwrap();
    let dir = tmp.path().join("c");
    // What a crash between creating and renaming the temporary file leaves behind.
    let old = dir.join("~tmp-999999-0-deadbeef.tmp");
    let fresh = dir.join("~tmp-999999-1-cafebabe.tmp");
    std::fs::write(&old, b"{\"version\":1,\"cadence\":\"c\",\"run_id\":\"x").unwrap();
    std::fs::write(&fresh, r.to_json()).unwrap();
    let f = std::fs::File::options().write(true).open(&old).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(120))
        .unwrap();
    drop(f);

    assert_eq!(store.load("c", "run").await.unwrap(), Some(r.clone()));
    let listed = store.list(None).await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.run_id.as_str()).collect::<Vec<_>>(),
        ["run"],
        "temp files are not records"
    );
    assert!(!old.exists(), "list removes temp files older than a minute");
    assert!(
        fresh.exists(),
        "list keeps recent temp files (a save may be in progress)"
    );
    assert_eq!(store.list(Some("c")).await.unwrap().len(), 1);
    assert_eq!(store.remove_temp_files(Duration::ZERO).await.unwrap(), 1);
    assert!(!fresh.exists());
    assert_eq!(files_under(tmp.path()), ["c/run.json"]);
    assert_eq!(store.load("c", "run").await.unwrap(), Some(r));
}

#[tokio::test]
async fn file_store_creates_its_directory_on_first_save() {
    let tmp = TempDir::new("create");
    let root = tmp.path().join("a").join("b").join("store");
    let store = FileStore::new(&root);
    assert_eq!(store.dir(), root);
    assert_eq!(store.describe(), format!("file:{}", root.display()));
    assert!(!store.supports_leases());
    // Reading a store that does not exist yet is not an error, and creates nothing.
    assert_eq!(store.load("c", "r").await.unwrap(), None);
    assert!(store.list(None).await.unwrap().is_empty());
    assert!(store.list(Some("c")).await.unwrap().is_empty());
    store.clear("c", "r").await.unwrap();
    assert!(
        !tmp.path().join("a").exists(),
        "nothing is created before a save"
    );

    let r = Record::new("c", "r", "f", serde_json::json!(null));
    store.save(&r, None).await.unwrap();
    assert!(root.join("c").join("r.json").is_file());
    assert_eq!(store.load("c", "r").await.unwrap(), Some(r));
}

#[tokio::test]
async fn file_store_unwritable_directory_is_unavailable_naming_the_path() {
    let tmp = TempDir::new("unwritable");
    // A regular file where the directory should be: no permission tricks (tests may run as
    // root), and it fails everywhere.
    let blocker = tmp.path().join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let root = blocker.join("store");
    let store = FileStore::new(&root);

    let r = Record::new("c", "r", "f", serde_json::json!(1));
    let err = store.save(&r, None).await.unwrap_err();
    assert_eq!(kind(&err), Some(CheckpointErrorKind::Unavailable), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&root.join("c").display().to_string()),
        "the error names the path: {msg}"
    );
    assert!(msg.contains("cannot create checkpoint directory"), "{msg}");

    let err = store.load("c", "r").await.unwrap_err();
    assert_eq!(kind(&err), Some(CheckpointErrorKind::Unavailable), "{err}");
    assert!(
        err.to_string()
            .contains(&store.record_path("c", "r").display().to_string()),
        "{err}"
    );
    let err = store.list(None).await.unwrap_err();
    assert_eq!(kind(&err), Some(CheckpointErrorKind::Unavailable), "{err}");
    assert!(
        err.to_string().contains(&root.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn file_store_has_no_leases() {
    let tmp = TempDir::new("leases");
    let store = FileStore::new(tmp.path());
    let err = store
        .acquire_lease("c", "r", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), Some(CheckpointErrorKind::Unsupported));
    let lease = cadence_core::checkpoint::Lease::new("c", "r", 1);
    let r = Record::new("c", "r", "f", serde_json::json!(1));
    let err = store.save(&r, Some(&lease)).await.unwrap_err();
    assert_eq!(kind(&err), Some(CheckpointErrorKind::Unsupported), "{err}");
    assert_eq!(store.load("c", "r").await.unwrap(), None);
}

#[tokio::test]
async fn file_store_corrupt_file_is_reported_with_its_path_and_kept() {
    let tmp = TempDir::new("corrupt");
    let store = FileStore::new(tmp.path());
    let path = store.record_path("c", "r");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"\0\0\0 half a record").unwrap();
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();

    let err = store.load("c", "r").await.unwrap_err();
    assert_eq!(kind(&err), Some(CheckpointErrorKind::Corrupt));
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(store.list(None).await.unwrap().is_empty());
    assert_eq!(std::fs::read(&path).unwrap(), b"\0\0\0 half a record");
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        modified
    );
}

#[tokio::test]
async fn file_store_removes_expired_records() {
    let tmp = TempDir::new("expired");
    let store = FileStore::new(tmp.path());
    let mut r = Record::new("c", "r", "f", serde_json::json!(1));
    r.status = RecordStatus::Succeeded;
    r.expires_at = Some(
        humantime::format_rfc3339_micros(SystemTime::now() - Duration::from_secs(1)).to_string(),
    );
    store.save(&r, None).await.unwrap();
    assert!(store.record_path("c", "r").exists());
    assert_eq!(store.load("c", "r").await.unwrap(), None);
    assert!(!store.record_path("c", "r").exists());
}
