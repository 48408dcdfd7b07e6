//! Test helpers: the shared Redis from `CADENCE_REDIS_URL`, throwaway `redis-server`s from
//! `CADENCE_REDIS_SERVER_BIN`, unique key prefixes.
//!
//! A missing variable skips the test with a printed notice, unless
//! `CADENCE_SERVICES_REQUIRED` or `CI` is set: then it fails (a green run must mean the real
//! Redis was exercised).

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cadence_redis::Redis;

fn required() -> bool {
    let set = |name: &str| {
        std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
    };
    set("CADENCE_SERVICES_REQUIRED") || set("CI")
}

fn env_or_skip(name: &str, test: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if required() => panic!(
            "{name} is not set, but CADENCE_SERVICES_REQUIRED or CI is: run the tests with \
             `cargo xtask test`"
        ),
        _ => {
            eprintln!(
                "SKIPPED {test}: {name} is not set (run `cargo xtask test -- -p cadence-redis`)"
            );
            None
        }
    }
}

/// The shared Redis URL, or `None` (skip).
pub fn redis_url(test: &str) -> Option<String> {
    env_or_skip("CADENCE_REDIS_URL", test)
}

/// The `redis-server` binary, or `None` (skip).
pub fn server_bin(test: &str) -> Option<PathBuf> {
    env_or_skip("CADENCE_REDIS_SERVER_BIN", test).map(PathBuf::from)
}

/// A key prefix no other test (or test run) uses.
pub fn unique_prefix(name: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "test-{name}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Connects to the shared Redis under a unique prefix, or `None` (skip).
pub async fn shared(test: &str) -> Option<Redis> {
    let url = redis_url(test)?;
    Some(
        Redis::builder(url)
            .with_prefix(unique_prefix(test))
            .connect()
            .await
            .expect("connecting to CADENCE_REDIS_URL"),
    )
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A throwaway `redis-server` on 127.0.0.1, killed (and its directory removed) on drop.
pub struct Throwaway {
    bin: PathBuf,
    args: Vec<String>,
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    password: Option<String>,
}

impl Throwaway {
    /// Starts one without persistence.
    pub fn start(bin: PathBuf) -> Self {
        Self::start_with(bin, &["--save", "", "--appendonly", "no"], None)
    }

    /// Starts one with extra arguments; `password` is used for the readiness check.
    pub fn start_with(bin: PathBuf, args: &[&str], password: Option<&str>) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(unique_prefix("redis-dir"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut me = Throwaway {
            bin,
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            port,
            dir,
            child: None,
            password: password.map(str::to_owned),
        };
        me.spawn();
        me
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.bin)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let cmd = match &self.password {
            Some(p) => format!("AUTH {p}\r\nPING\r\n"),
            None => "PING\r\n".to_owned(),
        };
        if s.write_all(cmd.as_bytes()).is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        let mut got = String::new();
        while !got.contains("PONG") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
            if got.contains("LOADING") {
                return false;
            }
        }
        true
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILLs the server (no shutdown save).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
