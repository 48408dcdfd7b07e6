//! Real services for tests and benches.
//!
//! - [`Tools`]: the service binaries (`redis-server`, `prometheus`, `promtool`), found on
//!   `PATH` and installed with `apt-get` when missing and running as root.
//! - [`Services`]: what `cargo xtask test` / `bench` hand to the processes they run: a
//!   throwaway [`Redis`] on a free loopback port plus the paths of the binaries, exported as
//!   `CADENCE_*` environment variables by [`Services::apply`].
//! - [`Redis`]: a guard owning a `redis-server` child and its temporary directory; dropping
//!   it kills the child and removes the directory, on success and on failure alike.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cmd::{self, Error, Result};

/// Environment variable: URL of the redis-server started for the run.
pub(crate) const REDIS_URL: &str = "CADENCE_REDIS_URL";
/// Environment variable: path of `redis-server`, for tests that start their own instance.
pub(crate) const REDIS_SERVER_BIN: &str = "CADENCE_REDIS_SERVER_BIN";
/// Environment variable: path of `prometheus`, for tests that start their own server.
pub(crate) const PROMETHEUS_BIN: &str = "CADENCE_PROMETHEUS_BIN";
/// Environment variable: path of `promtool`.
pub(crate) const PROMTOOL_BIN: &str = "CADENCE_PROMTOOL_BIN";
/// Environment variable: `1` when every service above is provided, so that a test finding
/// one missing must fail rather than skip.
pub(crate) const SERVICES_REQUIRED: &str = "CADENCE_SERVICES_REQUIRED";

/// Debian packages providing the binaries in [`Tools`].
const PACKAGES: [&str; 2] = ["redis-server", "prometheus"];

/// How long a freshly started redis-server may take to answer `PING`.
const REDIS_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether we run under CI (`CI` set to anything but empty, `0` or `false`).
pub(crate) fn is_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Paths of the service binaries, `None` for those not found.
#[derive(Debug, Default)]
pub(crate) struct Tools {
    /// `redis-server`.
    redis_server: Option<PathBuf>,
    /// `prometheus`.
    prometheus: Option<PathBuf>,
    /// `promtool`.
    promtool: Option<PathBuf>,
}

impl Tools {
    /// Looks every binary up on `PATH`.
    fn find() -> Self {
        Self {
            redis_server: find_in_path("redis-server"),
            prometheus: find_in_path("prometheus"),
            promtool: find_in_path("promtool"),
        }
    }

    /// Names of the binaries not found.
    fn missing(&self) -> Vec<&'static str> {
        [
            ("redis-server", &self.redis_server),
            ("prometheus", &self.prometheus),
            ("promtool", &self.promtool),
        ]
        .into_iter()
        .filter(|(_, path)| path.is_none())
        .map(|(name, _)| name)
        .collect()
    }

    /// Finds the binaries, installing the packages when some are missing.
    ///
    /// Installation needs root (`apt-get update` + `apt-get install`). If binaries are still
    /// missing afterwards this fails under CI and only warns otherwise.
    fn ensure(ci: bool) -> Result<Self> {
        let tools = Self::find();
        let missing = tools.missing();
        if missing.is_empty() {
            return Ok(tools);
        }
        eprintln!("xtask: not on PATH: {}", missing.join(", "));
        let install = if is_root() {
            install_packages()
        } else {
            Err(Error::new(format!(
                "not root, so not installing; run: sudo apt-get install {}",
                PACKAGES.join(" ")
            )))
        };
        if let Err(e) = &install {
            eprintln!("xtask: installing services failed: {e}");
        }
        let tools = Self::find();
        let missing = tools.missing();
        if missing.is_empty() {
            Ok(tools)
        } else if ci {
            Err(Error::new(format!(
                "CI is set and services are missing ({}); a CI run must exercise the real \
                 services, so this is a failure",
                missing.join(", ")
            )))
        } else {
            eprintln!(
                "xtask: warning: continuing without {}; tests needing them will not find \
                 their CADENCE_* variables, and {SERVICES_REQUIRED} is not set",
                missing.join(", ")
            );
            Ok(tools)
        }
    }
}

/// The first executable file called `name` in a `PATH` directory.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is a regular file with an execute bit.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether the effective user is root, read from `/proc/self/status` (std has no `geteuid`).
fn is_root() -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

/// `apt-get update` then a non-interactive install of [`PACKAGES`].
fn install_packages() -> Result {
    cmd::run(Command::new("apt-get").arg("update"))?;
    cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(PACKAGES),
    )
}

/// Services for one xtask run; dropping it stops everything it started.
#[derive(Debug)]
pub(crate) struct Services {
    /// The service binaries found.
    tools: Tools,
    /// The redis-server started for the run, when `redis-server` was found.
    redis: Option<Redis>,
}

impl Services {
    /// Ensures the binaries (see [`Tools`]) and starts a redis-server on a free port.
    ///
    /// Prometheus is not started: tests that need one start their own from
    /// `CADENCE_PROMETHEUS_BIN`.
    pub(crate) fn start(ci: bool) -> Result<Self> {
        let tools = Tools::ensure(ci)?;
        let redis = match &tools.redis_server {
            Some(bin) => Some(Redis::start(bin)?),
            None => None,
        };
        let services = Self { tools, redis };
        for (key, value) in services.env() {
            eprintln!("xtask: export {key}={}", value.to_string_lossy());
        }
        Ok(services)
    }

    /// The `CADENCE_*` variables describing these services.
    ///
    /// `CADENCE_SERVICES_REQUIRED=1` is only set when all services are present.
    pub(crate) fn env(&self) -> Vec<(&'static str, OsString)> {
        let mut env = Vec::new();
        if let Some(redis) = &self.redis {
            env.push((REDIS_URL, redis.url().into()));
        }
        let bins = [
            (REDIS_SERVER_BIN, &self.tools.redis_server),
            (PROMETHEUS_BIN, &self.tools.prometheus),
            (PROMTOOL_BIN, &self.tools.promtool),
        ];
        for (key, path) in bins {
            if let Some(path) = path {
                env.push((key, path.clone().into_os_string()));
            }
        }
        if self.redis.is_some() && self.tools.missing().is_empty() {
            env.push((SERVICES_REQUIRED, "1".into()));
        }
        env
    }

    /// Exports [`Services::env`] to `cmd`, and removes any stale `CADENCE_*` service
    /// variable inherited from our own environment that does not apply to this run.
    pub(crate) fn apply(&self, cmd: &mut Command) {
        for key in [
            REDIS_URL,
            REDIS_SERVER_BIN,
            PROMETHEUS_BIN,
            PROMTOOL_BIN,
            SERVICES_REQUIRED,
        ] {
            cmd.env_remove(key);
        }
        cmd.envs(self.env());
    }

    /// Fails if a service we started has exited in the meantime.
    pub(crate) fn check(&mut self) -> Result {
        match &mut self.redis {
            Some(redis) => redis.check_alive(),
            None => Ok(()),
        }
    }
}

/// A temporary directory, removed with its contents on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory under the system temporary directory.
    fn new(prefix: &str) -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        fs::create_dir(&path)
            .map_err(|e| Error::new(format!("could not create {}: {e}", path.display())))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            eprintln!("xtask: warning: could not remove {}: {e}", self.0.display());
        }
    }
}

/// A `redis-server` child process on `127.0.0.1:<port>`, with persistence off and its
/// working directory (and log) in a temporary directory.
///
/// Dropping it kills the process (whether or not it already exited) and removes the
/// directory.
#[derive(Debug)]
pub(crate) struct Redis {
    /// The running server.
    child: Child,
    /// Its loopback port.
    port: u16,
    /// Its `--dir`, holding `redis.log`; declared last so it is removed after the kill.
    dir: TempDir,
}

impl Redis {
    /// Starts `bin` on a free port and waits until it answers `PING`.
    ///
    /// Picking a free port and the server binding it is racy, so a server that exits early
    /// is retried on another port a few times.
    pub(crate) fn start(bin: &Path) -> Result<Self> {
        const ATTEMPTS: usize = 3;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            match Self::try_start(bin) {
                Ok(redis) => return Ok(redis),
                Err(e) => {
                    eprintln!("xtask: {e}");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::new("redis-server did not start")))
    }

    /// One attempt of [`Redis::start`].
    fn try_start(bin: &Path) -> Result<Self> {
        let dir = TempDir::new("cadence-xtask-redis")?;
        let port = free_port()
            .map_err(|e| Error::new(format!("could not find a free loopback port: {e}")))?;
        let log_path = dir.0.join("redis.log");
        let log = File::create(&log_path)
            .map_err(|e| Error::new(format!("could not create {}: {e}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Error::new(format!("could not duplicate log handle: {e}")))?;
        let mut command = Command::new(bin);
        command
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--dir"])
            .arg(&dir.0)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        eprintln!("$ {}", cmd::display(&command));
        let child = command
            .spawn()
            .map_err(|e| Error::new(format!("could not start {}: {e}", bin.display())))?;
        let mut redis = Self { child, port, dir };
        redis.wait_ready(REDIS_READY_TIMEOUT)?;
        eprintln!("xtask: redis-server ready on 127.0.0.1:{port}");
        Ok(redis)
    }

    /// The `redis://` URL of this server.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Polls `PING` until `+PONG`, the child exits, or `timeout` passes.
    fn wait_ready(&mut self, timeout: Duration) -> Result {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if ping(self.port).unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::new(format!(
                    "redis-server on port {} did not answer PING within {timeout:?}{}",
                    self.port,
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails, quoting the server's log, if the child has exited.
    fn check_alive(&mut self) -> Result {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::new(format!(
                "redis-server on port {} exited early ({status}){}",
                self.port,
                self.log_tail()
            ))),
            Err(e) => Err(Error::new(format!("could not poll redis-server: {e}"))),
        }
    }

    /// The last lines of the server's log, formatted to append to an error message.
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.0.join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(10)..];
        if tail.is_empty() {
            String::new()
        } else {
            format!("; redis.log ends with:\n  {}", tail.join("\n  "))
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // Killing an already-reaped child fails harmlessly; wait() reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("xtask: stopped redis-server on port {}", self.port);
    }
}

/// A loopback TCP port that was free a moment ago (bind port 0, read it, drop the socket).
pub(crate) fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Sends `PING` to a redis on `127.0.0.1:port`; `Ok(true)` if it answered `+PONG`.
fn ping(port: u16) -> io::Result<bool> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.set_write_timeout(Some(Duration::from_millis(500)))?;
    stream.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 64];
    while !reply.ends_with(b"\r\n") && reply.len() < 256 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    Ok(reply.starts_with(b"+PONG"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        // A port is free when asked for; a test running beside this one (such as
        // `redis_starts_and_stops`, which starts a server on a port from `free_port`) may be
        // handed the same port and take it first, so one of a few tries must bind (a CI run
        // failed on a single try).
        let bound = (0..5).any(|_| {
            let port = free_port().unwrap();
            assert_ne!(port, 0);
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        });
        assert!(bound, "no port from free_port could be bound in 5 tries");
    }

    #[test]
    fn ping_on_closed_port_is_an_error() {
        let port = free_port().unwrap();
        assert!(ping(port).is_err());
    }

    #[test]
    fn finds_sh_on_path_and_not_nonsense() {
        assert!(find_in_path("sh").is_some());
        assert!(find_in_path("xtask-surely-not-a-program").is_none());
    }

    #[test]
    fn temp_dir_is_removed_on_drop() {
        let dir = TempDir::new("cadence-xtask-test").unwrap();
        let path = dir.0.clone();
        fs::write(path.join("f"), b"x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }

    /// Starts a real redis-server when one is on PATH (the guard must answer PING, then
    /// stop the process and remove its directory on drop).
    #[test]
    fn redis_starts_and_stops() {
        let Some(bin) = find_in_path("redis-server") else {
            assert!(
                std::env::var_os(SERVICES_REQUIRED).is_none(),
                "redis-server required but not on PATH"
            );
            eprintln!("skipped: redis-server not on PATH");
            return;
        };
        let redis = Redis::start(&bin).unwrap();
        let (port, dir) = (redis.port, redis.dir.0.clone());
        assert!(ping(port).unwrap());
        assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}/"));
        drop(redis);
        assert!(!dir.exists());
        assert!(ping(port).is_err());
    }

    #[test]
    fn early_exit_is_reported_with_the_log() {
        // `sh -c` stands in for a server that dies at once after logging.
        let dir = TempDir::new("cadence-xtask-test").unwrap();
        let log = File::create(dir.0.join("redis.log")).unwrap();
        let child = Command::new("sh")
            .args(["-c", "echo bind failed; exit 3"])
            .stdout(log)
            .spawn()
            .unwrap();
        let mut redis = Redis {
            child,
            port: free_port().unwrap(),
            dir,
        };
        let err = redis
            .wait_ready(Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(err.contains("exited early"), "{err}");
        assert!(err.contains("bind failed"), "{err}");
    }
}
