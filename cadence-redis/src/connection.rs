//! [`Redis`]: one configured connection (URL, key prefix, TTLs, command timeout) that the
//! store, the event sink and the circuit state share, and the error mapping of REDIS-4.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cadence_core::{CadenceError, CheckpointErrorKind};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::{RedisCircuitState, RedisEventReader, RedisEventSink, RedisStore, keys};

/// The default key prefix (REDIS-1).
pub const DEFAULT_PREFIX: &str = "cadence";
/// The default time to live of every key a write touches (REDIS-1): 7 days.
pub const DEFAULT_RECORD_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The default lease time to live (REDIS-1): 30 s.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);
/// The default command timeout (REDIS-1): 2 s.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// A configured Redis connection: the URL, the key prefix, the TTLs and the command timeout,
/// over one [`ConnectionManager`] that reconnects by itself after a Redis restart (REDIS-1).
///
/// Clones share the connection. [`store`](Self::store), [`event_sink`](Self::event_sink),
/// [`circuit_state`](Self::circuit_state) and [`event_reader`](Self::event_reader) build the
/// adapters on it, all under the same prefix and TTL.
///
/// Supported URLs: `redis://[<user>][:<password>@]<host>[:<port>][/<db>]` (AUTH with the
/// password, or ACL user and password), `rediss://…` (TLS: needs the crate feature `tls`),
/// and `redis+unix:///path/to/socket[?db=<db>&pass=<password>]`. Messages and
/// [`url`](Self::url) never show the credentials ([`redact_url`]).
///
/// ```no_run
/// use std::time::Duration;
/// use cadence_redis::Redis;
///
/// # async fn demo() -> Result<(), cadence_core::CadenceError> {
/// let redis = Redis::builder("redis://:secret@127.0.0.1:6379/0")
///     .with_prefix("shop")
///     .with_record_ttl(Duration::from_secs(24 * 3600))
///     .with_command_timeout(Duration::from_millis(500))
///     .connect()
///     .await?;
/// assert_eq!(redis.url(), "redis://127.0.0.1:6379/0");
/// let store = redis.store();
/// # let _ = store;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    manager: ConnectionManager,
    url: String,
    prefix: String,
    record_ttl: Duration,
    lease_ttl: Duration,
    command_timeout: Duration,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.inner.url)
            .field("prefix", &self.inner.prefix)
            .field("record_ttl", &self.inner.record_ttl)
            .field("lease_ttl", &self.inner.lease_ttl)
            .field("command_timeout", &self.inner.command_timeout)
            .finish()
    }
}

/// Builds a [`Redis`] connection: `Redis::builder(url).with_…(…).connect().await`.
#[must_use]
#[derive(Debug, Clone)]
pub struct RedisBuilder {
    url: String,
    prefix: String,
    record_ttl: Duration,
    lease_ttl: Duration,
    command_timeout: Duration,
}

impl RedisBuilder {
    /// The key prefix (default `cadence`). Every key is `<prefix>:…`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The time to live set on every key a write touches (default 7 days). It cannot be
    /// disabled: zero is a validation error, as is more than 100 years; a record of a run that
    /// never ends disappears this long after its last save.
    pub fn with_record_ttl(mut self, ttl: Duration) -> Self {
        self.record_ttl = ttl;
        self
    }

    /// The lease time to live the engine should use (default 30 s), see
    /// [`RedisStore::lease_ttl`]: from 1 ms to 100 years.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How long one command (or one pipeline) may take, connecting included (default 2 s).
    /// Past it the operation fails with `Checkpoint` kind `Unavailable` (REDIS-4).
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    fn validate(&self) -> Result<(), CadenceError> {
        let mut problems = Vec::new();
        if self.record_ttl < Duration::from_millis(1) {
            problems.push("the record TTL must be at least 1 ms (TTLs cannot be disabled)");
        }
        if self.lease_ttl < Duration::from_millis(1) {
            problems.push("the lease TTL must be at least 1 ms");
        }
        // The core's bound on checkpoint TTLs (Redis refuses expiries past what its clock holds).
        use cadence_core::checkpoint::MAX_TTL;
        if self.record_ttl > MAX_TTL {
            problems.push("the record TTL must be at most 100 years");
        }
        if self.lease_ttl > MAX_TTL {
            problems.push("the lease TTL must be at most 100 years");
        }
        if self.command_timeout.is_zero() {
            problems.push("the command timeout must not be zero");
        }
        if self.prefix.is_empty() {
            problems.push("the key prefix must not be empty");
        }
        match problems.is_empty() {
            true => Ok(()),
            false => Err(CadenceError::Validation {
                problems: problems
                    .into_iter()
                    .map(|p| cadence_core::Problem::new("", p))
                    .collect(),
            }),
        }
    }

    /// Builds the connection without any I/O: the first command connects. Use it to start
    /// while Redis is down (commands fail with `Unavailable` until it is up).
    ///
    /// Must be called within a tokio runtime with its IO and time drivers (`enable_all()`):
    /// otherwise, on an invalid URL or option, or on a `rediss://` URL without the `tls`
    /// feature, it fails with an error saying so.
    pub fn connect_lazy(self) -> Result<Redis, CadenceError> {
        self.validate()?;
        check_runtime()?;
        let url = redact_url(&self.url);
        if is_tls(&self.url) && !cfg!(feature = "tls") {
            return Err(CadenceError::checkpoint(
                CheckpointErrorKind::Unsupported,
                format!("{url}: TLS (rediss://) needs cadence-redis built with the feature `tls`"),
            ));
        }
        #[cfg(feature = "tls")]
        if is_tls(&self.url) && rustls::crypto::CryptoProvider::get_default().is_none() {
            // Another crate may have raced us to it: either provider is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(self.url.as_str()).map_err(|e| {
            CadenceError::checkpoint(
                CheckpointErrorKind::Other,
                format!("invalid Redis URL {url}: {}", describe_error(&e)),
            )
        })?;
        let manager = ConnectionManager::new_lazy_with_config(
            client.clone(),
            // redis-rs's own response timeout is only a backstop: the command timeout
            // (`Redis::run`) fires first, with a clearer message.
            manager_config(self.command_timeout, self.command_timeout.saturating_mul(2)),
        )
        .map_err(|e| {
            CadenceError::checkpoint(
                CheckpointErrorKind::Other,
                format!("Redis at {url}: {}", describe_error(&e)),
            )
        })?;
        Ok(Redis {
            inner: Arc::new(Inner {
                client,
                manager,
                url,
                prefix: self.prefix,
                record_ttl: self.record_ttl,
                lease_ttl: self.lease_ttl,
                command_timeout: self.command_timeout,
            }),
        })
    }

    /// Builds the connection and checks it with a `PING` within the command timeout
    /// (`Unavailable` naming the URL and the cause if Redis cannot be reached or refuses the
    /// credentials).
    pub async fn connect(self) -> Result<Redis, CadenceError> {
        let redis = self.connect_lazy()?;
        redis.ping().await?;
        Ok(redis)
    }
}

/// The tokio drivers the connection needs (IO for its socket, time for the command timeout),
/// checked before anything is built: without them tokio panics inside the first command.
/// tokio cannot be asked whether a driver is on, so each is tried once, its panic caught (the
/// panic hook still prints it).
fn check_runtime() -> Result<(), CadenceError> {
    let problem = |what: &str| {
        Err(CadenceError::Validation {
            problems: vec![cadence_core::Problem::new(
                "",
                format!(
                    "{what}: Redis needs a tokio runtime with its IO and time drivers; build it \
                     with `enable_all()` (as `#[tokio::main]` does)"
                ),
            )],
        })
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return problem("not inside a tokio runtime");
    }
    if std::panic::catch_unwind(|| drop(tokio::time::sleep(Duration::ZERO))).is_err() {
        return problem("the runtime has no time driver");
    }
    // A loopback UDP socket registered with the IO driver and dropped at once; if none can
    // be bound, the check is skipped (the first command then reports what is wrong).
    if let Ok(socket) = std::net::UdpSocket::bind("127.0.0.1:0")
        && socket.set_nonblocking(true).is_ok()
        && std::panic::catch_unwind(move || drop(tokio::net::UdpSocket::from_std(socket))).is_err()
    {
        return problem("the runtime has no IO driver");
    }
    Ok(())
}

/// Reconnection: a few quick retries with a short backoff, so that commands find Redis again
/// soon after it restarts; each failed round is retried on the next command.
pub(crate) fn manager_config(connect: Duration, response: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect))
        .set_response_timeout(Some(response))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
        .set_pipeline_buffer_size(1024)
}

fn is_tls(url: &str) -> bool {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("valkeys")
}

impl Redis {
    /// A builder with the defaults: prefix `cadence`, record TTL 7 days, lease TTL 30 s,
    /// command timeout 2 s.
    pub fn builder(url: impl Into<String>) -> RedisBuilder {
        RedisBuilder {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            record_ttl: DEFAULT_RECORD_TTL,
            lease_ttl: DEFAULT_LEASE_TTL,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }

    /// Connects with the defaults (see [`RedisBuilder::connect`]).
    pub async fn connect(url: impl Into<String>) -> Result<Redis, CadenceError> {
        Self::builder(url).connect().await
    }

    /// The URL without credentials.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The TTL set on every key a write touches.
    pub fn record_ttl(&self) -> Duration {
        self.inner.record_ttl
    }

    /// The configured lease TTL.
    pub fn lease_ttl(&self) -> Duration {
        self.inner.lease_ttl
    }

    /// The command timeout.
    pub fn command_timeout(&self) -> Duration {
        self.inner.command_timeout
    }

    /// The checkpoint store on this connection.
    pub fn store(&self) -> RedisStore {
        RedisStore::new(self.clone())
    }

    /// An event sink appending to `<prefix>:events` on this connection (REDIS-5). Starts
    /// its writer task: must be called within a tokio runtime.
    pub fn event_sink(&self) -> RedisEventSink {
        RedisEventSink::new(self.clone())
    }

    /// A reader of `<prefix>:events` on its own connection (REDIS-5), starting with the
    /// events appended after its first read. Must be called within a tokio runtime.
    pub fn event_reader(&self) -> RedisEventReader {
        RedisEventReader::new(self.clone())
    }

    /// Shared circuit-breaker state on this connection (REDIS-6).
    pub fn circuit_state(&self) -> RedisCircuitState {
        RedisCircuitState::new(self.clone())
    }

    /// The shared connection, for commands of your own.
    pub fn connection(&self) -> ConnectionManager {
        self.inner.manager.clone()
    }

    /// Sends `PING`.
    pub async fn ping(&self) -> Result<(), CadenceError> {
        let mut conn = self.connection();
        self.run(|| "PING".to_owned(), async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await
        .map(drop)
    }

    pub(crate) fn client(&self) -> &redis::Client {
        &self.inner.client
    }

    pub(crate) fn keys(&self) -> keys::Keys<'_> {
        keys::Keys::new(&self.inner.prefix)
    }

    /// The TTL in milliseconds (at least 1).
    pub(crate) fn record_ttl_ms(&self) -> u64 {
        millis(self.inner.record_ttl)
    }

    /// Runs `fut` (one command or pipeline) within the command timeout, mapping failures to
    /// `Checkpoint` errors naming the URL and `what` was being done (REDIS-4).
    pub(crate) async fn run<T>(
        &self,
        what: impl FnOnce() -> String,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, CadenceError> {
        match tokio::time::timeout(self.inner.command_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.error(what(), &e)),
            Err(_) => Err(self.timed_out(what())),
        }
    }

    /// The `Unavailable` error of a command (`what`) that got no answer within the command
    /// timeout.
    pub(crate) fn timed_out(&self, what: impl fmt::Display) -> CadenceError {
        CadenceError::checkpoint(
            CheckpointErrorKind::Unavailable,
            format!(
                "Redis at {} is unavailable: {what}: no answer within {:?} (the command timeout)",
                self.inner.url, self.inner.command_timeout
            ),
        )
    }

    /// A `Checkpoint` error for a failed command.
    pub(crate) fn error(&self, what: impl fmt::Display, e: &RedisError) -> CadenceError {
        let kind = error_kind(e);
        let url = &self.inner.url;
        let msg = match kind {
            CheckpointErrorKind::Unavailable => {
                format!(
                    "Redis at {url} is unavailable: {what}: {}",
                    describe_error(e)
                )
            }
            _ => format!("Redis at {url}: {what}: {}", describe_error(e)),
        };
        CadenceError::checkpoint(kind, msg)
    }

    /// A checkpoint error of `kind`, naming the URL.
    pub(crate) fn fail(&self, kind: CheckpointErrorKind, msg: impl fmt::Display) -> CadenceError {
        CadenceError::checkpoint(kind, format!("{msg} (Redis at {})", self.inner.url))
    }
}

/// Milliseconds since the Unix epoch, now (0 before it): index scores.
pub(crate) fn unix_millis_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Milliseconds of `d`, at least 1 (Redis rejects a zero expiry).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// `Unavailable` for anything that means "cannot use Redis now" (network, timeouts,
/// authentication, loading, read-only replicas, cluster trouble); `Other` for the rest.
fn error_kind(e: &RedisError) -> CheckpointErrorKind {
    let unavailable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::AuthenticationFailed
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::ReadOnly
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::NoPerm
                )
        )
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"));
    match unavailable {
        true => CheckpointErrorKind::Unavailable,
        false => CheckpointErrorKind::Other,
    }
}

/// The error's text. redis-rs never puts the URL or password in it.
fn describe_error(e: &RedisError) -> String {
    e.to_string()
}

/// A Redis URL without its credentials, query and fragment, for messages and logs:
/// `redis://user:secret@host:6379/2?protocol=resp3` → `redis://host:6379/2`,
/// `redis+unix:///run/redis.sock?pass=secret` → `redis+unix:///run/redis.sock`.
///
/// ```
/// use cadence_redis::redact_url;
/// assert_eq!(redact_url("redis://:hunter2@10.0.0.5:6380/1"), "redis://10.0.0.5:6380/1");
/// assert_eq!(redact_url("rediss://app:pw@cache.example:6379"), "rediss://cache.example:6379");
/// assert_eq!(redact_url("redis+unix:///tmp/r.sock?pass=pw"), "redis+unix:///tmp/r.sock");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL: show no more than what precedes a possible `@`.
        return url.rsplit('@').next().unwrap_or_default().to_owned();
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let rest = &rest[..end];
    let auth_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(auth_end);
    let host = authority.rsplit('@').next().unwrap_or_default();
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials_query_and_fragment() {
        assert_eq!(
            redact_url("redis://user:pa@ss@h:1/0?protocol=resp3"),
            "redis://h:1/0"
        );
        assert_eq!(redact_url("redis://h"), "redis://h");
        assert_eq!(redact_url("redis://:p@h/"), "redis://h/");
        assert_eq!(redact_url("rediss://h:1/#insecure"), "rediss://h:1/");
        assert_eq!(redact_url("unix:///s.sock?pass=x&db=1"), "unix:///s.sock");
        assert_eq!(redact_url("user:pw@host"), "host");
    }

    #[test]
    fn recognises_tls_schemes() {
        assert!(is_tls("rediss://h"));
        assert!(is_tls("REDISS://h"));
        assert!(!is_tls("redis://h"));
    }

    // REDIS-4, GEN-5: a runtime without the drivers the connection needs (or no runtime) is
    // a clear error at connect, not tokio's panic in the first command.
    #[test]
    fn a_runtime_without_io_or_time_is_refused_at_connect() {
        let lazy = || Redis::builder("redis://127.0.0.1:1/").connect_lazy();
        let no_io = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let e = no_io.block_on(async { lazy() }).expect_err("refused");
        assert!(e.to_string().contains("no IO driver"), "{e}");
        let no_time = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let e = no_time.block_on(async { lazy() }).expect_err("refused");
        assert!(e.to_string().contains("no time driver"), "{e}");
        let e = lazy().expect_err("refused");
        assert!(e.to_string().contains("not inside a tokio runtime"), "{e}");
        let all = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert!(all.block_on(async { lazy() }).is_ok());
    }

    #[tokio::test]
    async fn rejects_zero_ttls_and_bad_urls() {
        let e = Redis::builder("redis://127.0.0.1/")
            .with_record_ttl(Duration::ZERO)
            .connect_lazy()
            .unwrap_err();
        assert!(e.to_string().contains("TTL"), "{e}");
        let e = Redis::builder("redis://127.0.0.1/")
            .with_record_ttl(Duration::MAX)
            .with_lease_ttl(Duration::MAX)
            .connect_lazy()
            .unwrap_err();
        assert!(
            matches!(&e, CadenceError::Validation { problems } if problems.len() == 2),
            "{e}"
        );
        assert!(e.to_string().contains("at most 100 years"), "{e}");
        let e = Redis::builder("http://:pw@nowhere/")
            .connect_lazy()
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("http://nowhere/") && !msg.contains("pw"),
            "{msg}"
        );
    }

    #[cfg(not(feature = "tls"))]
    #[tokio::test]
    async fn tls_without_the_feature_says_which_feature() {
        let e = Redis::builder("rediss://:pw@h:6379/")
            .connect_lazy()
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("`tls`") && msg.contains("rediss://h:6379/"),
            "{msg}"
        );
        assert!(!msg.contains("pw"), "{msg}");
    }
}
