//! [`FileStore`]: one JSON file per run, written atomically (CKP-11).

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::{CheckpointStore, Lease, Record, RunSummary, StoreFuture};
use crate::error::{CadenceError, CheckpointErrorKind};

/// Record files end with this.
const RECORD_SUFFIX: &str = ".json";
/// Temporary files start with this (no encoded name does: `~` is always escaped)…
const TEMP_PREFIX: &str = "~tmp-";
/// …and end with this.
const TEMP_SUFFIX: &str = ".tmp";
/// Encoded names longer than this are shortened (and made unique with a hash), so that a file
/// name stays well under the usual 255-byte limit.
const MAX_ENCODED: usize = 200;
/// How many bytes of a long encoded name are kept before its hash.
const KEEP_ENCODED: usize = 160;
/// Temporary files older than this are removed by [`FileStore::list`].
const STALE_TEMP_AGE: Duration = Duration::from_secs(60);

/// A store keeping one JSON file per run on the local file system (CKP-11).
///
/// The record of run `order-1` of cadence `checkout` is `<dir>/checkout/order-1.json`.
/// Cadence names and run ids are percent-encoded (uppercase hex, byte by byte in UTF-8)
/// except for the characters `A-Z a-z 0-9 . _ -`, so any name is a safe single path
/// segment: `a/b` becomes `a%2Fb`, `é` becomes `%C3%A9`. The names `.` and `..` are written
/// `%2E` and `%2E%2E`, the empty name `%`, and an encoded name longer than 200 bytes is cut to
/// 160 bytes followed by `~` and the 32-hex-digit FNV-1a hash of the full name (GEN-4).
/// [`FileStore::record_path`] computes the path.
///
/// **Crash safety.** A save writes the record to a temporary file in the same directory,
/// fsyncs it, renames it over the record file and fsyncs the directory, so after a crash
/// (`kill -9`, power loss) at any instant the record is either the old or the new one, never a
/// mix. A crash can leave a temporary file (`~tmp-….tmp`) behind: loads and lists ignore such
/// files and [`list`](CheckpointStore::list) removes those older than a minute (see also
/// [`FileStore::remove_temp_files`]).
///
/// **One process per directory.** The store has no leases
/// ([`supports_leases`](CheckpointStore::supports_leases) is `false`;
/// the lease methods return `Unsupported`). The engine still refuses two concurrent runs with
/// the same key *within* one process, but two processes sharing a directory could run the same
/// run id twice and overwrite each other's records; give each process its own directory, or use
/// a store with leases (`RedisStore`) for many workers. Reading from another process (e.g.
/// `cadence runs list`) is fine. Within a process, share one `FileStore` (one `Arc`) per
/// directory among the cadences using it: the engine's guard against two concurrent runs with
/// the same key is kept per store instance.
///
/// The directory is created on the first save. All file I/O runs on tokio's blocking pool,
/// never on an async worker thread, so the store must be used inside a tokio runtime. I/O
/// failures are [`CheckpointErrorKind::Unavailable`] errors naming the path; a file that
/// cannot be decoded is [`CheckpointErrorKind::Corrupt`] (or `UnsupportedVersion`) and is
/// never changed or removed by the store. A retained terminal record whose expiry has passed
/// reads as `None` and is removed.
///
/// ```
/// use cadence_core::checkpoint::{CheckpointStore, FileStore, Record};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let dir = std::env::temp_dir().join(format!("cadence-doc-filestore-{}", std::process::id()));
/// let store = FileStore::new(&dir);
///
/// let record = Record::new("checkout", "order/1", "f00d", serde_json::json!({"total": 3}));
/// store.save(&record, None).await?;
/// assert_eq!(store.load("checkout", "order/1").await?, Some(record));
/// assert_eq!(store.record_path("checkout", "order/1"), dir.join("checkout").join("order%2F1.json"));
///
/// store.clear("checkout", "order/1").await?;
/// assert_eq!(store.load("checkout", "order/1").await?, None);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<_, cadence_core::CadenceError>(())
/// # }).unwrap();
/// ```
///
/// With the engine (`Cadence::with_checkpoint` takes any `Arc<dyn CheckpointStore>`):
///
/// ```
/// use std::sync::Arc;
/// use cadence_core::checkpoint::{CheckpointStore, FileStore};
///
/// let store: Arc<dyn CheckpointStore> = Arc::new(FileStore::new("/var/lib/my-service/checkpoints"));
/// assert_eq!(store.describe(), "file:/var/lib/my-service/checkpoints");
/// assert!(!store.supports_leases());
/// ```
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: Arc<PathBuf>,
}

impl FileStore {
    /// A store in `dir` (created, with its parents, on the first save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileStore {
            dir: Arc::new(dir.into()),
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding the record of (cadence, run id): `<dir>/<cadence>/<run id>.json`, both
    /// names encoded as described on [`FileStore`].
    ///
    /// ```
    /// use std::path::Path;
    /// use cadence_core::checkpoint::FileStore;
    ///
    /// let store = FileStore::new("/data");
    /// assert_eq!(store.record_path("checkout", "a b/c"), Path::new("/data/checkout/a%20b%2Fc.json"));
    /// assert_eq!(store.record_path("..", "é"), Path::new("/data/%2E%2E/%C3%A9.json"));
    /// ```
    pub fn record_path(&self, cadence: &str, run_id: &str) -> PathBuf {
        let mut file = encode_name(run_id);
        file.push_str(RECORD_SUFFIX);
        self.cadence_dir(cadence).join(file)
    }

    fn cadence_dir(&self, cadence: &str) -> PathBuf {
        self.dir.join(encode_name(cadence))
    }

    /// Removes temporary files (left by a crash in the middle of a save) older than
    /// `older_than` from every cadence directory, returning how many were removed.
    ///
    /// [`list`](CheckpointStore::list) does this with one minute; a shorter age can remove the
    /// temporary file of a save in progress, which then fails (and the record stays as it
    /// was).
    pub async fn remove_temp_files(&self, older_than: Duration) -> Result<usize, CadenceError> {
        let dir = Arc::clone(&self.dir);
        blocking(move || remove_temp_files_in(&dir, older_than)).await
    }
}

/// Runs blocking file I/O on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CadenceError> + Send + 'static,
) -> Result<T, CadenceError> {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return Err(CadenceError::checkpoint(
            CheckpointErrorKind::Other,
            format!(
                "FileStore cannot do its file I/O: {}",
                crate::timer::NO_RUNTIME
            ),
        ));
    };
    match rt.spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(CadenceError::checkpoint(
            CheckpointErrorKind::Other,
            format!("a file store task did not finish: {e}"),
        )),
    }
}

/// Percent-encodes one name into a single safe path segment (see [`FileStore`]).
fn encode_name(name: &str) -> String {
    match name {
        "" => return "%".to_owned(),
        "." => return "%2E".to_owned(),
        ".." => return "%2E%2E".to_owned(),
        _ => {}
    }
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    if out.len() > MAX_ENCODED {
        let mut cut = KEEP_ENCODED;
        // Never cut inside an escape: `%` is at most two bytes back.
        if let Some(i) = out[cut - 2..cut].find('%') {
            cut = cut - 2 + i;
        }
        out.truncate(cut);
        out.push('~');
        out.push_str(&crate::hash::fnv1a_128_hex(name.as_bytes()));
    }
    out
}

fn io_error(what: &str, path: &Path, e: &io::Error) -> CadenceError {
    CadenceError::checkpoint(
        CheckpointErrorKind::Unavailable,
        format!("{what} {}: {e}", path.display()),
    )
}

fn is_temp_name(name: &OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| n.starts_with(TEMP_PREFIX) && n.ends_with(TEMP_SUFFIX))
}

/// Opens a directory and fsyncs it, so that entries created, renamed or removed in it are
/// durable. Platforms that cannot open directories (Windows) skip this.
fn sync_dir(dir: &Path) -> Result<(), CadenceError> {
    #[cfg(unix)]
    {
        let d =
            File::open(dir).map_err(|e| io_error("cannot open checkpoint directory", dir, &e))?;
        d.sync_all()
            .map_err(|e| io_error("cannot sync checkpoint directory", dir, &e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Reads and decodes one record file; `None` if it does not exist.
fn read_record(path: &Path) -> Result<Option<Record>, CadenceError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("cannot read checkpoint", path, &e)),
    };
    match Record::from_json(&bytes) {
        Ok(r) => Ok(Some(r)),
        Err(CadenceError::Checkpoint { kind, source }) => Err(CadenceError::checkpoint(
            kind,
            format!("{}: {source}", path.display()),
        )),
        Err(e) => Err(e),
    }
}

/// Removes an expired record, best effort (a failure leaves it to be skipped again).
fn remove_expired(path: &Path) {
    if fs::remove_file(path).is_ok()
        && let Some(parent) = path.parent()
    {
        let _ = sync_dir(parent);
    }
}

fn load_blocking(path: &Path) -> Result<Option<Record>, CadenceError> {
    match read_record(path)? {
        Some(r) if r.is_expired(SystemTime::now()) => {
            remove_expired(path);
            Ok(None)
        }
        other => Ok(other),
    }
}

/// A temporary file name unique within this process and very likely across processes.
fn temp_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{TEMP_PREFIX}{}-{}-{:08x}{TEMP_SUFFIX}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    )
}

/// Creates `dir` (and its parents) if needed; when it had to, fsyncs the parents so the new
/// entries are durable.
fn ensure_dir(root: &Path, dir: &Path) -> Result<(), CadenceError> {
    if dir.is_dir() {
        return Ok(());
    }
    let root_existed = root.is_dir();
    fs::create_dir_all(dir).map_err(|e| io_error("cannot create checkpoint directory", dir, &e))?;
    sync_dir(root)?;
    if !root_existed && let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

fn save_blocking(root: &Path, dir: &Path, target: &Path, bytes: &[u8]) -> Result<(), CadenceError> {
    ensure_dir(root, dir)?;
    let temp = dir.join(temp_name());
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&temp);
        return Err(io_error("cannot write checkpoint", &temp, &e));
    }
    if let Err(e) = fs::rename(&temp, target) {
        let _ = fs::remove_file(&temp);
        return Err(io_error("cannot replace checkpoint", target, &e));
    }
    sync_dir(dir)
}

fn clear_blocking(dir: &Path, target: &Path) -> Result<(), CadenceError> {
    match fs::remove_file(target) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("cannot remove checkpoint", target, &e)),
    }
}

/// The entries of a directory; none if it does not exist.
fn entries(dir: &Path) -> Result<Vec<fs::DirEntry>, CadenceError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("cannot read checkpoint directory", dir, &e)),
    };
    rd.collect::<io::Result<Vec<_>>>()
        .map_err(|e| io_error("cannot read checkpoint directory", dir, &e))
}

/// The cadence directories to look at: one, or all.
fn cadence_dirs(root: &Path, one: Option<PathBuf>) -> Result<Vec<PathBuf>, CadenceError> {
    if let Some(d) = one {
        return Ok(vec![d]);
    }
    Ok(entries(root)?
        .into_iter()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect())
}

fn remove_temp_files_in(root: &Path, older_than: Duration) -> Result<usize, CadenceError> {
    let now = SystemTime::now();
    let mut removed = 0;
    for dir in cadence_dirs(root, None)? {
        let mut any = false;
        for e in entries(&dir)? {
            if !is_temp_name(&e.file_name()) {
                continue;
            }
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|m| now.duration_since(m).unwrap_or_default() >= older_than);
            if old && fs::remove_file(e.path()).is_ok() {
                removed += 1;
                any = true;
            }
        }
        if any {
            sync_dir(&dir)?;
        }
    }
    Ok(removed)
}

fn list_blocking(
    root: &Path,
    cadence: Option<&str>,
    one: Option<PathBuf>,
) -> Result<Vec<RunSummary>, CadenceError> {
    // Best effort: a crash long ago may have left temporary files.
    let _ = remove_temp_files_in(root, STALE_TEMP_AGE);
    let now = SystemTime::now();
    let mut out = Vec::new();
    for dir in cadence_dirs(root, one)? {
        for e in entries(&dir)? {
            let name = e.file_name();
            let is_record = name.to_str().is_some_and(|n| n.ends_with(RECORD_SUFFIX));
            if !is_record || !e.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let path = e.path();
            // Undecodable records are skipped here (load reports them), as are files that
            // vanished since the directory was read.
            let Ok(Some(r)) = read_record(&path) else {
                continue;
            };
            if cadence.is_some_and(|c| c != r.cadence) {
                continue;
            }
            if r.is_expired(now) {
                remove_expired(&path);
                continue;
            }
            out.push(RunSummary::of(&r, None));
        }
    }
    out.sort_by(|a, b| (&a.cadence, &a.run_id).cmp(&(&b.cadence, &b.run_id)));
    Ok(out)
}

impl CheckpointStore for FileStore {
    fn load<'a>(&'a self, cadence: &'a str, run_id: &'a str) -> StoreFuture<'a, Option<Record>> {
        let path = self.record_path(cadence, run_id);
        Box::pin(blocking(move || load_blocking(&path)))
    }

    fn save<'a>(&'a self, record: &'a Record, lease: Option<&'a Lease>) -> StoreFuture<'a, ()> {
        if lease.is_some() {
            return Box::pin(async {
                Err(CadenceError::checkpoint(
                    CheckpointErrorKind::Unsupported,
                    "the file store has no leases; save without one",
                ))
            });
        }
        let root = Arc::clone(&self.dir);
        let dir = self.cadence_dir(&record.cadence);
        let target = self.record_path(&record.cadence, &record.run_id);
        let bytes = record.to_json();
        Box::pin(blocking(move || {
            save_blocking(&root, &dir, &target, &bytes)
        }))
    }

    fn clear<'a>(&'a self, cadence: &'a str, run_id: &'a str) -> StoreFuture<'a, ()> {
        let dir = self.cadence_dir(cadence);
        let target = self.record_path(cadence, run_id);
        Box::pin(blocking(move || clear_blocking(&dir, &target)))
    }

    fn list<'a>(&'a self, cadence: Option<&'a str>) -> StoreFuture<'a, Vec<RunSummary>> {
        let root = Arc::clone(&self.dir);
        let one = cadence.map(|c| self.cadence_dir(c));
        let cadence = cadence.map(str::to_owned);
        Box::pin(blocking(move || {
            list_blocking(&root, cadence.as_deref(), one)
        }))
    }

    fn describe(&self) -> String {
        format!("file:{}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_into_one_safe_segment() {
        assert_eq!(encode_name("checkout"), "checkout");
        assert_eq!(encode_name("A-z_0.9"), "A-z_0.9");
        assert_eq!(encode_name("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_name("%~"), "%25%7E");
        assert_eq!(encode_name("é"), "%C3%A9");
        assert_eq!(encode_name("\\"), "%5C");
        assert_eq!(encode_name(""), "%");
        assert_eq!(encode_name("."), "%2E");
        assert_eq!(encode_name(".."), "%2E%2E");
        assert_eq!(encode_name("..."), "...");
    }

    #[test]
    fn long_names_are_cut_with_a_hash() {
        let long = "x".repeat(300);
        let e = encode_name(&long);
        assert_eq!(e.len(), KEEP_ENCODED + 1 + 32);
        assert!(e.starts_with(&"x".repeat(KEEP_ENCODED)));
        assert_ne!(e, encode_name(&"x".repeat(301)));
        // Never cut inside an escape, whatever the alignment.
        for pad in 0..3 {
            let name = format!("{}{}", "y".repeat(pad), "/".repeat(200));
            let e = encode_name(&name);
            let head = e.split('~').next().unwrap();
            assert!(head.len() <= KEEP_ENCODED);
            assert!(head.ends_with("%2F") || head.ends_with('y'), "{head}");
        }
        // A run id of 255 bytes that all need escaping still fits one file name.
        let worst = encode_name(&" ".repeat(255));
        assert!(worst.len() + TEMP_PREFIX.len() + RECORD_SUFFIX.len() < 255);
    }

    #[test]
    fn temp_names_are_never_record_names() {
        let t = temp_name();
        assert!(is_temp_name(OsStr::new(&t)));
        assert!(!t.ends_with(RECORD_SUFFIX));
        assert!(!is_temp_name(OsStr::new(&format!(
            "{}{RECORD_SUFFIX}",
            encode_name("~tmp-x.tmp")
        ))));
    }
}
