//! [`RedisCircuitState`]: circuit-breaker state shared across processes (REDIS-6, CB-8).

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use cadence_core::BoxError;
use cadence_core::circuit_breaker::{
    CircuitState, RemoteCircuitState, RemoteFuture, RemoteSnapshot,
};
use redis::Script;

use crate::connection::Redis;

/// Publishes a snapshot, keeping the stored epoch increasing: a publish never lowers it, and
/// one whose epoch is not above the stored one gets the stored one plus 1, so that every
/// published transition is new to every reader, whichever process published it.
/// KEYS: the hash. ARGV: state, opened-at ('' if none), epoch, TTL ms. Returns the epoch.
static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') or 0
local epoch = tonumber(ARGV[3])
if epoch <= current then epoch = current + 1 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'opened_at', ARGV[2], 'epoch', epoch)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return epoch
",
    )
});

/// Circuit-breaker state shared across processes through Redis (REDIS-6): one hash per
/// breaker, `<prefix>:circuit:{<name>}`, with the fields `state` (`closed`, `half_open`,
/// `open`), `opened_at` (RFC 3339, empty unless open) and `epoch`, under the connection's
/// prefix and TTL (refreshed on every publish).
///
/// Give it to a breaker with `with_remote_state`: the breaker publishes its transitions and
/// polls the hash (CB-8); a remote *open* is adopted locally with its remaining recovery
/// time. Local admission never waits on Redis; a failing Redis only delays the sharing.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cadence_core::circuit_breaker::CircuitBreaker;
/// use cadence_redis::Redis;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let redis = Redis::connect("redis://127.0.0.1:6379/").await?;
/// let bank = CircuitBreaker::builder("bank")
///     .consecutive_failures(5)
///     .with_remote_state(Arc::new(redis.circuit_state()), Duration::from_secs(1))
///     .build()?;
/// # let _ = bank;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisCircuitState {
    redis: Redis,
}

impl fmt::Debug for RedisCircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCircuitState")
            .field("redis", &self.redis)
            .finish()
    }
}

impl RedisCircuitState {
    /// Shared breaker state on `redis` (see also [`Redis::circuit_state`]).
    pub fn new(redis: Redis) -> Self {
        RedisCircuitState { redis }
    }

    /// The key of a breaker's hash.
    pub fn key(&self, circuit: &str) -> String {
        self.redis.keys().circuit(circuit)
    }
}

fn parse(fields: &HashMap<String, String>) -> Result<RemoteSnapshot, BoxError> {
    let state = fields.get("state").ok_or("the hash has no `state` field")?;
    let state: CircuitState = serde_json::from_value(serde_json::Value::String(state.clone()))
        .map_err(|_| format!("unknown circuit state `{state}`"))?;
    let opened_at = match fields.get("opened_at").map(String::as_str) {
        None | Some("") => None,
        Some(at) => Some(
            cadence_core::event::parse_timestamp(at)
                .map_err(|e| format!("bad `opened_at` `{at}`: {e}"))?,
        ),
    };
    let epoch = fields
        .get("epoch")
        .ok_or("the hash has no `epoch` field")?
        .parse::<u64>()
        .map_err(|e| format!("bad `epoch`: {e}"))?;
    Ok(RemoteSnapshot::new(state, opened_at, epoch))
}

impl RemoteCircuitState for RedisCircuitState {
    fn publish<'a>(&'a self, circuit: &'a str, snapshot: RemoteSnapshot) -> RemoteFuture<'a, ()> {
        Box::pin(async move {
            let key = self.key(circuit);
            let opened_at = snapshot
                .opened_at
                .map(cadence_core::event::format_timestamp)
                .unwrap_or_default();
            let ttl = self.redis.record_ttl_ms();
            let mut conn = self.redis.connection();
            let _epoch: i64 = self
                .redis
                .run(
                    || format!("publishing the state of circuit '{circuit}'"),
                    async {
                        PUBLISH
                            .key(&key)
                            .arg(snapshot.state.as_str())
                            .arg(&opened_at)
                            .arg(snapshot.epoch)
                            .arg(ttl)
                            .invoke_async(&mut conn)
                            .await
                    },
                )
                .await?;
            Ok(())
        })
    }

    fn fetch<'a>(&'a self, circuit: &'a str) -> RemoteFuture<'a, Option<RemoteSnapshot>> {
        Box::pin(async move {
            let key = self.key(circuit);
            let mut conn = self.redis.connection();
            let fields: HashMap<String, String> = self
                .redis
                .run(
                    || format!("reading the state of circuit '{circuit}'"),
                    async { redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await },
                )
                .await?;
            if fields.is_empty() {
                return Ok(None);
            }
            parse(&fields)
                .map(Some)
                .map_err(|e| format!("circuit '{circuit}' at {key}: {e}").into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_hash() {
        let fields: HashMap<String, String> = [
            ("state", "open"),
            ("opened_at", "2026-05-01T12:00:00.000123Z"),
            ("epoch", "7"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let snap = parse(&fields).unwrap();
        assert_eq!(snap.state, CircuitState::Open);
        assert_eq!(snap.epoch, 7);
        assert!(snap.opened_at.is_some());

        let mut closed = fields.clone();
        closed.insert("state".into(), "half_open".into());
        closed.insert("opened_at".into(), String::new());
        let snap = parse(&closed).unwrap();
        assert_eq!((snap.state, snap.opened_at), (CircuitState::HalfOpen, None));

        let mut bad = fields;
        bad.insert("state".into(), "ajar".into());
        assert!(parse(&bad).unwrap_err().to_string().contains("ajar"));
    }
}
