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
//! At most [`LANES`] batches are in flight per store: operations submitted while they are in
//! flight queue up and go together in the next one, so an idle store sends each operation at
//! once (a batch of one) and a busy one sends as few calls as the round trips allow. Two
//! lanes rather than one let the client build and answer one batch while Redis runs the
//! other (with one, client and server took turns: the bench's commit rate rose by half with
//! the second lane, and more lanes only made batches smaller). Operations of one run never
//! overtake each other: a run has at most one operation in flight, and Redis runs the calls
//! of one connection in order. A batch holds at most [`MAX_BATCH`] operations.
//!
//! A batch spans runs, so its keys span hash tags: it needs the one Redis node that
//! [`ConnectionManager`](redis::aio::ConnectionManager) talks to (every key is passed in
//! `KEYS`, as scripts must).

use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use redis::{ErrorKind, RedisError, RedisResult, Script, ServerErrorKind, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::connection::{Redis, unix_millis_now};
use crate::keys::{Part, Stem};

/// Most operations in one batch.
pub(crate) const MAX_BATCH: usize = 128;

/// Most batches in flight at once.
pub(crate) const LANES: usize = 2;

/// The group-commit script. `ARGV[1]` holds the batch's op codes, one byte per operation,
/// `ARGV[2]` the store's record TTL, `ARGV[3]` its index TTL (milliseconds) and `ARGV[4]` the
/// batch's time (milliseconds since the Unix epoch: the score of its index updates); then
/// come the operations' own arguments, and `KEYS` holds their keys, both in the order of the
/// codes. Per op (keys; arguments → reply):
///
/// - `S` fenced save keeping the record's TTL (lease, record; token, JSON → 1, or 0 when the
///   token is stale): `SET XX KEEPTTL`, or, if the record is gone, `SET PX` with the record
///   TTL, so no record is ever left without one
/// - `T` fenced save setting the TTL (lease, record; token, JSON, TTL → 1 or 0)
/// - `I` fenced save with the record TTL and an index update (lease, record, index; token,
///   JSON, run id → 1 or 0); the index is updated only when the record was written
/// - `J` as `I` with its own TTL (token, JSON, TTL, run id)
/// - `E` fenced last save, releasing the lease (as `J`, and the lease is deleted)
/// - `C` fenced clear, releasing the lease (lease, record, index; token, run id → 1 or 0):
///   the record and lease are deleted and the run leaves the index
/// - `K` fenced release (lease; token → 1 or 0)
/// - `A` lease acquisition with load (lease, fence, record; lease TTL, fence TTL →
///   `{token, record or nil}`, or `{-1}` when the lease is held): the lease is set only if
///   absent (`SET NX`), with a token one higher than any before: a new fence starts at 1
///   (`SET NX PX`, one call), an existing one is incremented (a refused acquisition then uses
///   up a token number: tokens still only grow)
///
/// The codes travel as one argument, and the values that are the same for every operation
/// once per batch, because the script's cost grows with its argument count (Redis makes a Lua
/// string of each argument): a save costs the server four arguments, as a lone
/// compare-and-set does. The script is written for the server's cost per call too: no
/// tables or closures are made per call but the one function each operation runs in under
/// `pcall`, and the index bookkeeping only when the batch updates an index (a call's setup
/// cost a few microseconds otherwise, as much as a save). What the operations read first —
/// a fenced operation's lease, an acquisition's record — is read with one `MGET` before any
/// is applied, not one `GET` each; a key that an earlier operation of the same batch wrote
/// (one run's operations are never in one batch when the engine drives the store, but direct
/// callers may submit them concurrently) is read again, so each operation sees the state its
/// predecessors left. A lease or record key that is not a string reads as absent: the
/// operation is refused as with a stale token (`LeaseLost`), or the acquisition finds no
/// record.
///
/// Index updates (`I`, `J`, `E`, `C`) are gathered per index key and applied after the
/// operations, one `ZADD` and/or one `ZREM` with every member and one `PEXPIRE` per index (a
/// run has at most one operation in a batch, so no member is both added and removed). An
/// operation that fails replies with its own error as `{'!', message}` (not an error reply:
/// the client would fail the whole reply for it), as do the operations whose index update
/// failed (e.g. an index key of the wrong type: their record was written, as with a failed
/// pipelined `ZADD`); the others are applied as usual.
static BATCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- Op codes as bytes: A 65, C 67, E 69, I 73, J 74, K 75, S 83, T 84.
local codes, record_ttl, index_ttl, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if #codes == 0 or string.find(codes, '[^ACEIJKST]') then
  return redis.error_reply('bad batch ops: ' .. codes)
end
-- What each operation reads first, with one MGET: a fenced operation's lease, an
-- acquisition's record. A key an earlier operation of the batch wrote is read again.
local reads, k = {}, 1
for i = 1, #codes do
  local op = string.byte(codes, i)
  if op == 65 then reads[i] = KEYS[k + 2] else reads[i] = KEYS[k] end
  if op == 83 or op == 84 then k = k + 2 elseif op == 75 then k = k + 1 else k = k + 3 end
end
local read = redis.call('MGET', unpack(reads))
local changed = {}
local zadd, zrem, users
local function apply(op, k, a, value)
  if op == 65 then -- A
    changed[KEYS[k]] = true
    -- A new fence starts at 1 in one call; an existing one is incremented.
    local t = 1
    if not redis.call('SET', KEYS[k + 1], 1, 'NX', 'PX', ARGV[a + 1]) then
      t = redis.call('INCR', KEYS[k + 1])
      redis.call('PEXPIRE', KEYS[k + 1], ARGV[a + 1])
    end
    if not redis.call('SET', KEYS[k], t, 'NX', 'PX', ARGV[a]) then return {-1} end
    if changed[KEYS[k + 2]] then value = redis.call('GET', KEYS[k + 2]) end
    return {t, value}
  end
  if changed[KEYS[k]] then value = redis.call('GET', KEYS[k]) end
  if value ~= ARGV[a] then return 0 end
  if op == 75 then -- K
    changed[KEYS[k]] = true
    redis.call('DEL', KEYS[k])
    return 1
  end
  changed[KEYS[k + 1]] = true
  if op == 83 then -- S
    if not redis.call('SET', KEYS[k + 1], ARGV[a + 1], 'XX', 'KEEPTTL') then
      redis.call('SET', KEYS[k + 1], ARGV[a + 1], 'PX', record_ttl)
    end
    return 1
  end
  if op == 67 then -- C
    changed[KEYS[k]] = true
    redis.call('DEL', KEYS[k + 1], KEYS[k])
    return 1
  end
  if op == 73 then -- I
    redis.call('SET', KEYS[k + 1], ARGV[a + 1], 'PX', record_ttl)
    return 1
  end
  redis.call('SET', KEYS[k + 1], ARGV[a + 1], 'PX', ARGV[a + 2])
  if op == 69 then -- E
    changed[KEYS[k]] = true
    redis.call('DEL', KEYS[k])
  end
  return 1
end
local out, a = {}, 5
k = 1
for i = 1, #codes do
  local op = string.byte(codes, i)
  local ok, r = pcall(apply, op, k, a, read[i])
  if not ok then
    if type(r) == 'table' and r.err then r = {'!', r.err} else r = {'!', tostring(r)} end
  elseif r == 1 and (op == 73 or op == 74 or op == 69 or op == 67) then -- index later
    if users == nil then zadd, zrem, users = {}, {}, {} end
    local key = KEYS[k + 2]
    local l
    if op == 67 then
      l = zrem[key]
      if l == nil then l = {}; zrem[key] = l end
      l[#l + 1] = ARGV[a + 1]
    else
      l = zadd[key]
      if l == nil then l = {}; zadd[key] = l end
      l[#l + 1] = now
      if op == 73 then l[#l + 1] = ARGV[a + 2] else l[#l + 1] = ARGV[a + 3] end
    end
    local u = users[key]
    if u == nil then u = {}; users[key] = u end
    u[#u + 1] = i
  end
  out[i] = r
  if op == 83 then k = k + 2; a = a + 2
  elseif op == 84 then k = k + 2; a = a + 3
  elseif op == 73 then k = k + 3; a = a + 3
  elseif op == 74 or op == 69 then k = k + 3; a = a + 4
  elseif op == 67 then k = k + 3; a = a + 2
  elseif op == 75 then k = k + 1; a = a + 1
  else k = k + 3; a = a + 2 end -- A
end
if users ~= nil then
  for key, members in pairs(users) do
    local r = zadd[key] and redis.pcall('ZADD', key, unpack(zadd[key]))
    if not (type(r) == 'table' and r.err) and zrem[key] then r = redis.pcall('ZREM', key, unpack(zrem[key])) end
    if not (type(r) == 'table' and r.err) then r = redis.pcall('PEXPIRE', key, index_ttl) end
    if type(r) == 'table' and r.err then
      for _, i in ipairs(members) do out[i] = {'!', r.err} end
    end
  end
end
return out
",
    )
});

/// One operation of a batch (see [`BATCH`]). Keys and arguments are owned: an operation
/// outlives its caller if the caller stops waiting after the batch was taken. Its keys are
/// written from its run's [`Stem`] (one string per operation, not one per key).
#[derive(Debug)]
pub(crate) enum Op {
    /// `S` (`ttl` is `None`: keep the record's TTL) or `T`.
    Save {
        stem: Stem,
        token: u64,
        json: Vec<u8>,
        ttl: Option<u64>,
    },
    /// `E` when `end`, else `I` (`ttl` is `None`: the record TTL) or `J`.
    SaveIndexed {
        end: bool,
        stem: Stem,
        token: u64,
        json: Vec<u8>,
        ttl: Option<u64>,
        run_id: String,
    },
    /// `C`.
    Clear {
        stem: Stem,
        token: u64,
        run_id: String,
    },
    /// `K`.
    Release { stem: Stem, token: u64 },
    /// `A`.
    AcquireLoad {
        stem: Stem,
        lease_ttl: u64,
        fence_ttl: u64,
    },
}

impl Op {
    /// A fenced save; `ttl`: `None` keeps the record's TTL (see [`BATCH`]'s `S`).
    pub(crate) fn save(stem: Stem, token: u64, json: Vec<u8>, ttl: Option<u64>) -> Op {
        Op::Save {
            stem,
            token,
            json,
            ttl,
        }
    }

    /// A fenced save with an index update (scored with the batch's time); `end`: the last
    /// one, releasing the lease; `ttl`: `None` is the store's record TTL.
    pub(crate) fn save_indexed(
        end: bool,
        stem: Stem,
        token: u64,
        json: Vec<u8>,
        ttl: Option<u64>,
        run_id: &str,
    ) -> Op {
        Op::SaveIndexed {
            end,
            stem,
            token,
            json,
            ttl,
            run_id: run_id.to_owned(),
        }
    }

    /// A fenced clear that releases the lease.
    pub(crate) fn clear(stem: Stem, token: u64, run_id: &str) -> Op {
        Op::Clear {
            stem,
            token,
            run_id: run_id.to_owned(),
        }
    }

    /// A fenced release.
    pub(crate) fn release(stem: Stem, token: u64) -> Op {
        Op::Release { stem, token }
    }

    /// A lease acquisition that reads the record.
    pub(crate) fn acquire_load(stem: Stem, lease_ttl: u64, fence_ttl: u64) -> Op {
        Op::AcquireLoad {
            stem,
            lease_ttl,
            fence_ttl,
        }
    }

    /// The run's stem.
    fn stem(&self) -> &Stem {
        match self {
            Op::Save { stem, .. }
            | Op::SaveIndexed { stem, .. }
            | Op::Clear { stem, .. }
            | Op::Release { stem, .. }
            | Op::AcquireLoad { stem, .. } => stem,
        }
    }

    /// Its keys, in the order the script reads them.
    fn keys(&self) -> &'static [Part] {
        match self {
            Op::Save { .. } => &[Part::Lease, Part::Record],
            Op::SaveIndexed { .. } | Op::Clear { .. } => &[Part::Lease, Part::Record, Part::Index],
            Op::Release { .. } => &[Part::Lease],
            Op::AcquireLoad { .. } => &[Part::Lease, Part::Fence, Part::Record],
        }
    }

    /// Appends its keys to `cmd`.
    fn write_keys(&self, cmd: &mut redis::Cmd) {
        for &part in self.keys() {
            self.stem().write(cmd, part);
        }
    }

    /// The bytes its keys take.
    fn keys_size(&self) -> usize {
        self.keys().iter().map(|&p| self.stem().len_of(p)).sum()
    }

    /// The op code.
    fn code(&self) -> u8 {
        match self {
            Op::Save { ttl: None, .. } => b'S',
            Op::Save { ttl: Some(_), .. } => b'T',
            Op::SaveIndexed { end: true, .. } => b'E',
            Op::SaveIndexed { ttl: None, .. } => b'I',
            Op::SaveIndexed { ttl: Some(_), .. } => b'J',
            Op::Clear { .. } => b'C',
            Op::Release { .. } => b'K',
            Op::AcquireLoad { .. } => b'A',
        }
    }

    /// How many arguments (besides keys), and about how many bytes they take.
    fn args_size(&self) -> (usize, usize) {
        match self {
            Op::Save { json, ttl, .. } => (2 + usize::from(ttl.is_some()), json.len() + 40),
            Op::SaveIndexed {
                json,
                run_id,
                end,
                ttl,
                ..
            } => (
                3 + usize::from(*end || ttl.is_some()),
                json.len() + run_id.len() + 40,
            ),
            Op::Clear { run_id, .. } => (2, run_id.len() + 20),
            Op::Release { .. } => (1, 20),
            Op::AcquireLoad { .. } => (2, 40),
        }
    }

    /// Appends the arguments to `cmd` (`record_ttl`: the store's, for a last save without a
    /// TTL of its own).
    fn write_args(&self, cmd: &mut redis::Cmd, record_ttl: u64) {
        match self {
            Op::Save {
                token, json, ttl, ..
            } => {
                cmd.arg(token).arg(json);
                if let Some(ttl) = ttl {
                    cmd.arg(ttl);
                }
            }
            Op::SaveIndexed {
                end,
                token,
                json,
                ttl,
                run_id,
                ..
            } => {
                cmd.arg(token).arg(json);
                match (end, ttl) {
                    (false, None) => {}
                    (_, ttl) => {
                        cmd.arg(ttl.unwrap_or(record_ttl));
                    }
                }
                cmd.arg(run_id);
            }
            Op::Clear { token, run_id, .. } => {
                cmd.arg(token).arg(run_id);
            }
            Op::Release { token, .. } => {
                cmd.arg(token);
            }
            Op::AcquireLoad {
                lease_ttl,
                fence_ttl,
                ..
            } => {
                cmd.arg(lease_ttl).arg(fence_ttl);
            }
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

/// What the error of an operation that got no answer within the command timeout says.
const NO_ANSWER: &str = "no answer within the command timeout";

/// The error of an operation that got no answer within the command timeout.
fn no_answer() -> RedisError {
    RedisError::from((ErrorKind::Io, NO_ANSWER))
}

/// Whether `e` is the error of an operation that got no answer within the command timeout.
pub(crate) fn is_no_answer(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Io && e.detail().is_none() && e.to_string().starts_with(NO_ANSWER)
}

type Reply = oneshot::Sender<RedisResult<Value>>;

/// An operation waiting for its batch, with where its reply goes and when it was submitted.
type Waiting = (Op, Reply, Instant);

/// The queue of operations waiting for the next batch.
#[derive(Debug)]
pub(crate) struct Batcher {
    state: Mutex<State>,
    /// The store's record TTL and index TTL (ms), sent once per batch.
    ttls: (u64, u64),
}

#[derive(Debug, Default)]
struct State {
    queue: Vec<Waiting>,
    /// Flush tasks running (each takes the queue until it finds it empty), at most
    /// [`LANES`].
    lanes: usize,
}

/// Resets the batcher if a flush task ends abnormally (panic, or its runtime shutting down):
/// the waiting operations are dropped (their callers see an error at once), and the next
/// submission starts a new flush task.
struct Armed<'a>(&'a Batcher);

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.lanes -= 1;
        s.queue.clear();
    }
}

impl Batcher {
    /// A batcher for a store whose records live `record_ttl` ms and whose index lives
    /// `index_ttl` ms.
    pub(crate) fn new(record_ttl: u64, index_ttl: u64) -> Batcher {
        Batcher {
            state: Mutex::default(),
            ttls: (record_ttl, index_ttl),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `op` for the next batch (starting a flush task if fewer than [`LANES`] run) and
    /// returns where its reply will come. An operation whose caller stopped waiting before
    /// its batch was taken is not sent; once sent, it is applied whether or not anyone waits.
    ///
    /// The reply comes within the command timeout of this call, so callers need no timer of
    /// their own: an operation still queued when its timeout has passed is answered with the
    /// timeout error and not sent, and a batch waits for Redis only until the timeout of its
    /// oldest operation. (A queued operation waits only for the batches in flight, all of
    /// older operations, so for less than its own timeout.)
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
            s.queue.push((op, tx, Instant::now()));
            let start = s.lanes < LANES;
            s.lanes += usize::from(start);
            start
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
        let mut batch: Vec<Waiting> = Vec::new();
        let timeout = redis.command_timeout();
        loop {
            {
                let mut s = self.state();
                if s.queue.is_empty() {
                    s.lanes -= 1;
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
            let now = Instant::now();
            let mut i = 0;
            while i < batch.len() {
                let (_, tx, since) = &batch[i];
                if tx.is_closed() {
                    batch.remove(i);
                } else if now.duration_since(*since) >= timeout {
                    let (_, tx, _) = batch.remove(i);
                    let _ = tx.send(Err(no_answer()));
                } else {
                    i += 1;
                }
            }
            let Some(oldest) = batch.iter().map(|(_, _, since)| *since).min() else {
                continue;
            };
            // EVALSHA, the hash, the key count, the codes, two TTLs and the time, then the
            // operations.
            let (mut count, mut size) = (7, 160 + batch.len());
            for (op, _, _) in &batch {
                let (args, bytes) = op.args_size();
                count += op.keys().len() + args;
                size += bytes + op.keys_size();
            }
            let codes: Vec<u8> = batch.iter().map(|(op, _, _)| op.code()).collect();
            let mut cmd = redis::Cmd::with_capacity(count, size);
            cmd.arg("EVALSHA").arg(BATCH.get_hash()).arg(
                batch
                    .iter()
                    .map(|(op, _, _)| op.keys().len())
                    .sum::<usize>(),
            );
            for (op, _, _) in &batch {
                op.write_keys(&mut cmd);
            }
            cmd.arg(codes)
                .arg(self.ttls.0)
                .arg(self.ttls.1)
                .arg(unix_millis_now());
            for (op, _, _) in &batch {
                op.write_args(&mut cmd, self.ttls.0);
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
            let left = timeout.saturating_sub(now.duration_since(oldest));
            let reply = match tokio::time::timeout(left, sent).await {
                Ok(reply) => reply,
                Err(_) => Err(no_answer()),
            };
            match reply {
                Ok(Value::Array(values)) if values.len() == batch.len() => {
                    for ((_, tx, _), value) in batch.drain(..).zip(values) {
                        let _ = tx.send(op_reply(value));
                    }
                }
                Ok(other) => {
                    let e = RedisError::from((
                        ErrorKind::UnexpectedReturnType,
                        "unexpected reply to a batch",
                        format!("{other:?}"),
                    ));
                    for (_, tx, _) in batch.drain(..) {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
                Err(e) => {
                    for (_, tx, _) in batch.drain(..) {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}
