//! Group commit: fenced operations of many runs, submitted concurrently, applied by one
//! `EVALSHA` of one Lua script (REDIS-3).
//!
//! Each operation is still fenced by its own run's lease and token, still atomic (a Lua script
//! runs atomically, and each operation of it runs under its own `pcall`), and its caller still
//! gets its own result — a stale token gets `0` ("lease lost") for its own operation and
//! nothing else is affected. What the batch saves is the per-call cost of a script on the
//! server (lookup, argument tables, reply) and the per-command cost on the client, which for
//! small checkpoints is most of the cost of a save.
//!
//! At most one batch is in flight per store: operations submitted while it is in flight queue
//! up and go together in the next one, so an idle store sends each operation at once (a batch
//! of one) and a busy one sends as few calls as the round trips allow. A batch holds at most
//! [`MAX_BATCH`] operations.
//!
//! A batch spans runs, so its keys span hash tags: it needs the one Redis node that
//! [`ConnectionManager`](redis::aio::ConnectionManager) talks to (every key is passed in
//! `KEYS`, as scripts must).

use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use redis::{ErrorKind, RedisError, RedisResult, Script, ServerErrorKind, Value};
use tokio::sync::oneshot;

use crate::connection::Redis;

/// Most operations in one batch.
pub(crate) const MAX_BATCH: usize = 128;

/// The group-commit script. `ARGV` is a sequence of operations, each an op code followed by
/// its arguments; `KEYS` holds their keys in the same order. Per op (keys; arguments → reply):
///
/// - `S` fenced save (lease, record; token, JSON, TTL ms → 1, or 0 when the token is stale)
/// - `I` fenced save with an index update (lease, record, index; token, JSON, TTL ms, score,
///   run id, index TTL ms → 1 or 0); the index is updated only when the record was written
/// - `E` fenced last save, releasing the lease (as `I`, and the lease is deleted)
/// - `C` fenced clear, releasing the lease (lease, record, index; token, run id, index TTL ms
///   → 1 or 0): the record and lease are deleted and the run leaves the index
/// - `K` fenced release (lease; token → 1 or 0)
/// - `A` lease acquisition with load (lease, fence, record; lease TTL ms, fence TTL ms →
///   `{token, record or nil}`, or `{-1}` when the lease is held): the lease is set only if
///   absent (`SET NX`), with a token one higher than any before (a refused acquisition
///   uses up a token number: tokens still only grow)
///
/// Index updates (`I`, `E`, `C`) are gathered per index key and applied after the operations,
/// one `ZADD` and/or one `ZREM` with every member and one `PEXPIRE` per index (a run has at
/// most one operation in a batch, so no member is both added and removed). An operation that
/// fails (e.g. a key of the wrong type) replies with its own error as `{'!', message}` (not
/// an error reply: the client would fail the whole reply for it), as do the operations whose
/// index update failed (their record was written, as with a failed pipelined `ZADD`); the
/// others are applied as usual.
static BATCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local nkeys = {S = 2, I = 3, E = 3, C = 3, K = 1, A = 3}
local nargs = {S = 4, I = 7, E = 7, C = 4, K = 2, A = 3}
local zadd, zrem, zttl, users = {}, {}, {}, {}
local function failed(r)
  if type(r) == 'table' and r.err then return {'!', r.err} end
  return {'!', tostring(r)}
end
local function later(t, key, ttl, i, x, y)
  local l = t[key]
  if l == nil then l = {}; t[key] = l end
  l[#l + 1] = x
  if y ~= nil then l[#l + 1] = y end
  if zttl[key] == nil or tonumber(ttl) > tonumber(zttl[key]) then zttl[key] = ttl end
  local u = users[key]
  if u == nil then u = {}; users[key] = u end
  u[#u + 1] = i
end
local function apply(op, k, a, i)
  if op == 'A' then
    local token = redis.call('INCR', KEYS[k + 1])
    redis.call('PEXPIRE', KEYS[k + 1], ARGV[a + 2])
    if not redis.call('SET', KEYS[k], token, 'NX', 'PX', ARGV[a + 1]) then return {-1} end
    return {token, redis.call('GET', KEYS[k + 2])}
  end
  if redis.call('GET', KEYS[k]) ~= ARGV[a + 1] then return 0 end
  if op == 'K' then
    redis.call('DEL', KEYS[k])
    return 1
  end
  if op == 'C' then
    redis.call('DEL', KEYS[k + 1], KEYS[k])
    later(zrem, KEYS[k + 2], ARGV[a + 3], i, ARGV[a + 2])
    return 1
  end
  redis.call('SET', KEYS[k + 1], ARGV[a + 2], 'PX', ARGV[a + 3])
  if op == 'S' then return 1 end
  if op == 'E' then redis.call('DEL', KEYS[k]) end
  later(zadd, KEYS[k + 2], ARGV[a + 6], i, ARGV[a + 4], ARGV[a + 5])
  return 1
end
local out, k, a = {}, 1, 1
while a <= #ARGV do
  local op = ARGV[a]
  if nkeys[op] == nil then return redis.error_reply('unknown batch op ' .. tostring(op)) end
  local i = #out + 1
  local ok, r = pcall(apply, op, k, a, i)
  if ok then out[i] = r else out[i] = failed(r) end
  k = k + nkeys[op]
  a = a + nargs[op]
end
local function index(key)
  if zadd[key] then redis.call('ZADD', key, unpack(zadd[key])) end
  if zrem[key] then redis.call('ZREM', key, unpack(zrem[key])) end
  redis.call('PEXPIRE', key, zttl[key])
end
for key in pairs(zttl) do
  local ok, r = pcall(index, key)
  if not ok then
    r = failed(r)
    for _, i in ipairs(users[key]) do out[i] = r end
  end
end
return out
",
    )
});

/// An argument of an operation.
#[derive(Debug)]
pub(crate) enum Arg {
    Bytes(Vec<u8>),
    Str(String),
    Int(u64),
}

/// One operation of a batch: its op code, keys and arguments (see [`BATCH`]).
#[derive(Debug)]
pub(crate) struct Op {
    code: &'static str,
    keys: Vec<String>,
    args: Vec<Arg>,
}

impl Op {
    /// A fenced save.
    pub(crate) fn save(lease: String, record: String, token: u64, json: Vec<u8>, ttl: u64) -> Op {
        Op {
            code: "S",
            keys: vec![lease, record],
            args: vec![Arg::Int(token), Arg::Bytes(json), Arg::Int(ttl)],
        }
    }

    /// A fenced save with an index update; `end`: the last one, releasing the lease.
    pub(crate) fn save_indexed(
        end: bool,
        [lease, record, index]: [String; 3],
        token: u64,
        json: Vec<u8>,
        ttl: u64,
        (score, run_id, index_ttl): (u64, &str, u64),
    ) -> Op {
        Op {
            code: if end { "E" } else { "I" },
            keys: vec![lease, record, index],
            args: vec![
                Arg::Int(token),
                Arg::Bytes(json),
                Arg::Int(ttl),
                Arg::Int(score),
                Arg::Str(run_id.to_owned()),
                Arg::Int(index_ttl),
            ],
        }
    }

    /// A fenced clear that releases the lease.
    pub(crate) fn clear(keys: [String; 3], token: u64, run_id: &str, index_ttl: u64) -> Op {
        Op {
            code: "C",
            keys: keys.into(),
            args: vec![
                Arg::Int(token),
                Arg::Str(run_id.to_owned()),
                Arg::Int(index_ttl),
            ],
        }
    }

    /// A fenced release.
    pub(crate) fn release(lease: String, token: u64) -> Op {
        Op {
            code: "K",
            keys: vec![lease],
            args: vec![Arg::Int(token)],
        }
    }

    /// A lease acquisition that reads the record.
    pub(crate) fn acquire_load(keys: [String; 3], lease_ttl: u64, fence_ttl: u64) -> Op {
        Op {
            code: "A",
            keys: keys.into(),
            args: vec![Arg::Int(lease_ttl), Arg::Int(fence_ttl)],
        }
    }
}

/// One operation's reply: `{'!', message}` is its own error.
fn op_reply(value: Value) -> RedisResult<Value> {
    match value {
        Value::Array(items) if matches!(items.first(), Some(Value::BulkString(b)) if b.as_slice() == b"!") =>
        {
            let message = match items.get(1) {
                Some(Value::BulkString(m)) => String::from_utf8_lossy(m).into_owned(),
                other => format!("{other:?}"),
            };
            Err(RedisError::from((
                ErrorKind::Extension,
                "a batched operation failed",
                message,
            )))
        }
        other => Ok(other),
    }
}

type Reply = oneshot::Sender<RedisResult<Value>>;

/// The queue of operations waiting for the next batch.
#[derive(Debug, Default)]
pub(crate) struct Batcher {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    queue: Vec<(Op, Reply)>,
    /// A flush task is running (it takes the queue until it finds it empty).
    flushing: bool,
}

/// Resets the batcher if a flush task ends abnormally (panic, or its runtime shutting down):
/// the waiting operations are dropped (their callers see an error at once), and the next
/// submission starts a new flush task.
struct Armed<'a>(&'a Batcher);

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.flushing = false;
        s.queue.clear();
    }
}

impl Batcher {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `op` for the next batch (starting a flush task if none runs) and returns where
    /// its reply will come. An operation whose caller stopped waiting before its batch was
    /// taken is not sent; once sent, it is applied whether or not anyone waits.
    ///
    /// Must be called within a tokio runtime.
    pub(crate) fn submit(
        self: &Arc<Self>,
        redis: &Redis,
        op: Op,
    ) -> oneshot::Receiver<RedisResult<Value>> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut s = self.state();
            s.queue.push((op, tx));
            !std::mem::replace(&mut s.flushing, true)
        };
        if start {
            tokio::spawn(Arc::clone(self).flush(redis.clone()));
        }
        rx
    }

    /// Sends batches until the queue is empty.
    async fn flush(self: Arc<Self>, redis: Redis) {
        let armed = Armed(&self);
        let mut conn = redis.connection();
        let mut batch: Vec<(Op, Reply)> = Vec::new();
        loop {
            {
                let mut s = self.state();
                if s.queue.is_empty() {
                    s.flushing = false;
                    drop(s);
                    std::mem::forget(armed);
                    return;
                }
                if s.queue.len() <= MAX_BATCH {
                    std::mem::swap(&mut s.queue, &mut batch);
                } else {
                    batch.extend(s.queue.drain(..MAX_BATCH));
                }
            }
            // Callers that stopped waiting (timed out, or cancelled) got their error already:
            // their operations are not sent, so a frozen Redis cannot pile up work.
            batch.retain(|(_, tx)| !tx.is_closed());
            if batch.is_empty() {
                continue;
            }
            let (mut count, mut size) = (2, 64);
            for (op, _) in &batch {
                count += op.keys.len() + op.args.len() + 1;
                size += op.keys.iter().map(String::len).sum::<usize>() + 1;
                for arg in &op.args {
                    size += match arg {
                        Arg::Bytes(b) => b.len(),
                        Arg::Str(s) => s.len(),
                        Arg::Int(_) => 20,
                    };
                }
            }
            let mut cmd = redis::Cmd::with_capacity(count + 1, size);
            cmd.arg("EVALSHA")
                .arg(BATCH.get_hash())
                .arg(batch.iter().map(|(op, _)| op.keys.len()).sum::<usize>());
            for (op, _) in &batch {
                cmd.arg(&op.keys);
            }
            for (op, _) in &batch {
                cmd.arg(op.code);
                for arg in &op.args {
                    match arg {
                        Arg::Bytes(b) => cmd.arg(b),
                        Arg::Str(s) => cmd.arg(s),
                        Arg::Int(n) => cmd.arg(*n),
                    };
                }
            }
            let sent = async {
                match cmd.query_async::<Value>(&mut conn).await {
                    Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                        BATCH.load_async(&mut conn).await?;
                        cmd.query_async::<Value>(&mut conn).await
                    }
                    other => other,
                }
            };
            let reply = match tokio::time::timeout(redis.command_timeout(), sent).await {
                Ok(reply) => reply,
                Err(_) => Err(RedisError::from((
                    ErrorKind::Io,
                    "no answer within the command timeout",
                ))),
            };
            match reply {
                Ok(Value::Array(values)) if values.len() == batch.len() => {
                    for ((_, tx), value) in batch.drain(..).zip(values) {
                        let _ = tx.send(op_reply(value));
                    }
                }
                Ok(other) => {
                    let e = RedisError::from((
                        ErrorKind::UnexpectedReturnType,
                        "unexpected reply to a batch",
                        format!("{other:?}"),
                    ));
                    for (_, tx) in batch.drain(..) {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
                Err(e) => {
                    for (_, tx) in batch.drain(..) {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}
