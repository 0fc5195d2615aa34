//! The names of the keys and pub/sub channels under a prefix (the table in the
//! [crate docs](crate#keys-and-channels)), and the Lua scripts that change several keys at
//! once.

use netlib::NodeNumber;
use redis::Script;

/// Key and channel names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The set of registered node numbers.
    pub(crate) fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
    /// A node's presence: its token, with the presence TTL.
    pub(crate) fn node(&self, n: NodeNumber) -> String {
        format!("{}:node:{n}", self.prefix)
    }
    /// A node number that left or was reaped, for an hour: never drawn again meanwhile.
    pub(crate) fn retired(&self, n: NodeNumber) -> String {
        format!("{}:retired:{n}", self.prefix)
    }
    /// The lock of the node that reaps a dead one.
    pub(crate) fn reap(&self, n: NodeNumber) -> String {
        format!("{}:reap:{n}", self.prefix)
    }
    /// A node's channels: serial to `{"rooms":[..],"names":[..]}`.
    pub(crate) fn chans(&self, n: NodeNumber) -> String {
        format!("{}:chans:{n}", self.prefix)
    }
    /// A room's members cluster-wide: a sorted set of serials, scored by serial.
    pub(crate) fn room(&self, room: &str) -> String {
        format!("{}:room:{room}", self.prefix)
    }
    /// A channel name's holder: its serial.
    pub(crate) fn name(&self, name: &str) -> String {
        format!("{}:name:{name}", self.prefix)
    }
    /// A node name's holder: its token, with the presence TTL.
    pub(crate) fn node_name(&self, name: &str) -> String {
        format!("{}:nodename:{name}", self.prefix)
    }
    /// The departures log: a stream of departure envelopes, read by a node whose subscriber
    /// reconnected, for what it missed.
    pub(crate) fn departed(&self) -> String {
        format!("{}:departed", self.prefix)
    }
    /// A marker of Redis's data set (`SET NX`, no TTL): a node that finds it changed or gone
    /// after a reconnect knows that Redis lost its data.
    pub(crate) fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }
    /// A room's stream of messages (with room streams).
    pub(crate) fn stream(&self, room: &str) -> String {
        format!("{}:stream:{room}", self.prefix)
    }
    /// A resumable session's record (with room streams).
    pub(crate) fn session(&self, token: u128) -> String {
        format!("{}:sess:{token:032x}", self.prefix)
    }
    /// A resumable session's messages to its channel alone (with room streams).
    pub(crate) fn session_out(&self, token: u128) -> String {
        format!("{}:sess:{token:032x}:out", self.prefix)
    }
    /// The prefix, for scripts that name keys from what they read.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }
    /// The pub/sub channel every node reads: room sends, messages to all nodes, departures.
    pub(crate) fn bus(&self) -> String {
        format!("{}:bus", self.prefix)
    }
    /// The pub/sub channel of node `n`: sends to its channels, messages to it.
    pub(crate) fn to(&self, n: NodeNumber) -> String {
        format!("{}:to:{n}", self.prefix)
    }
}

/// How long a number that left stays retired (1 h), in ms.
pub(crate) const RETIRE_MS: u64 = 3_600_000;

/// How many entries the departures log keeps (about: trimmed with `MAXLEN ~`).
pub(crate) const LOG_LENGTH: u64 = 100_000;

/// How long a reaper's lock lasts (30 s), in ms.
pub(crate) const REAP_LOCK_MS: u64 = 30_000;

/// Registers a drawn node number: `KEYS` = node, retired, nodes; `ARGV` = token, TTL (ms),
/// number. 1 if taken; 0 (nothing done) if the number is live, retired or still listed (a dead
/// node not yet reaped).
const REGISTER: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1
   or redis.call('SISMEMBER', KEYS[3], ARGV[3]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
return 1
";

/// Refreshes presence: `KEYS` = node, retired, nodes[, node name]; `ARGV` = token, TTL (ms),
/// number. 1 if refreshed; 2 if the key had expired (this process or Redis stalled, or Redis
/// lost its data) and was taken again; 0 (nothing done) if the number was retired (this node
/// was declared dead, whatever the node key holds) or another token holds the node key; -1 if
/// another token holds the node name.
const REFRESH: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
if KEYS[4] then
  local w = redis.call('GET', KEYS[4])
  if w and w ~= ARGV[1] then return -1 end
  redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[2])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
if v then return 1 end
return 2
";

/// Retires a node number seen alive before and no longer listed (Redis lost its data):
/// `KEYS` = node, retired, nodes; `ARGV` = number, retirement (ms). 1 if retired; 0 (nothing
/// done) if the number is listed again or its key exists (it registered again meanwhile).
const RETIRE_UNLISTED: &str = r"
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 or redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return 1
";

/// Claims names for a channel, all or none, and records them: `KEYS` = name keys..., the
/// node's channel hash; `ARGV` = serial, the channel's record with the names. 1 if the channel
/// holds them all now (names it held already count); 0 (nothing done) if another holds one.
pub(crate) const CLAIM: &str = r"
local n = #KEYS - 1
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  if v and v ~= ARGV[1] then return 0 end
end
for i = 1, n do redis.call('SET', KEYS[i], ARGV[1]) end
redis.call('HSET', KEYS[#KEYS], ARGV[1], ARGV[2])
return 1
";

/// Deletes each of `KEYS` (name keys) that `ARGV[1]` (a serial) holds.
pub(crate) const RELEASE: &str = r"
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end
end
return 1
";

/// Declares a node whose presence expired dead, for good: `KEYS` = node, retired, reap lock;
/// `ARGV` = this node's token, lock (ms), retirement (ms). 0 if it is alive after all; else its
/// number is retired (it can never refresh again) and 2 if this node took the lock to reap it,
/// 1 if another did.
const DECLARE_DEAD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return 2 end
return 1
";

/// The end of a node, after its channels left their rooms and names: `KEYS` = node, retired,
/// nodes, channel hash[, node name]; `ARGV` = its token (or '' for a reaper), number,
/// retirement (ms). Deletes the node key and name if they hold the token, the hash and the
/// number's membership, and retires the number.
pub(crate) const FINISH: &str = r"
if ARGV[1] ~= '' then
  if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
  if KEYS[5] and redis.call('GET', KEYS[5]) == ARGV[1] then redis.call('DEL', KEYS[5]) end
end
redis.call('DEL', KEYS[4])
redis.call('SREM', KEYS[3], ARGV[2])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
return 1
";

/// Publishes a departure: appends envelope `ARGV[1]` to the departures log `KEYS[1]` (trimmed
/// to about `ARGV[2]` entries) and publishes it on `KEYS[2]` with the entry's id appended (so
/// that a node reading the log after a reconnect skips what it already got). The entry's id.
pub(crate) const DEPART: &str = r"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[1] .. id)
return id
";

/// Room sends with room streams, several in one call: `KEYS` = the bus; `ARGV` = stream
/// length, this node's number, then for each send, in order: its room's stream, its
/// envelope, the sender's session record (or ''), the sender's message number. Each is
/// appended to its stream (trimmed to about the length) and published with the entry's id
/// appended, and the sender's message is recorded as handled in the same step (if this node
/// still owns the session). The entries' ids.
pub(crate) const ROOM: &str = r"
local ids = {}
for i = 3, #ARGV, 4 do
  local id = redis.call('XADD', ARGV[i], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i + 1])
  redis.call('PUBLISH', KEYS[1], ARGV[i + 1] .. id)
  local s = ARGV[i + 2]
  if s ~= '' and redis.call('HGET', s, 'owner') == ARGV[2] then
    local r = tonumber(redis.call('HGET', s, 'received') or '0')
    if tonumber(ARGV[i + 3]) > r then redis.call('HSET', s, 'received', ARGV[i + 3]) end
  end
  ids[#ids + 1] = id
end
return ids
";

/// A session's record (re)made by its owner: `KEYS` = the record; `ARGV` = node, serial,
/// epoch, TTL (ms), and '1' to make it only if it is missing or still this channel's (a
/// resynchronisation, or a resume on this node: another node may have taken it meanwhile).
/// Keeps the count of handled messages and the rooms it has. 1 if written, 0 if another
/// channel owns it.
pub(crate) const SESSION_OPEN: &str = r"
if ARGV[5] == '1' then
  local o = redis.call('HGET', KEYS[1], 'owner')
  if o and (o ~= ARGV[1] or redis.call('HGET', KEYS[1], 'serial') ~= ARGV[2]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'serial', ARGV[2], 'epoch', ARGV[3])
redis.call('HSETNX', KEYS[1], 'received', '0')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
";

/// A session's channel joined a room: `KEYS` = the record, the room's stream; `ARGV` = room,
/// node. Records the stream's last id as where the session's messages of the room begin,
/// unless the record has the room already (a session taken over keeps its offsets).
pub(crate) const SESSION_JOIN: &str = r"
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return 0 end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local at = '0-0'
if last[1] then at = last[1][1] end
return redis.call('HSETNX', KEYS[1], 'r:' .. ARGV[1], at)
";

/// Runs a command on a session's record and its messages (`KEYS` = the record, the stream
/// of its messages to its channel alone) if this node owns it; `ARGV` = node, then the
/// command and its arguments (each key goes first, the command runs once per key).
pub(crate) const SESSION_IF_OWNER: &str = r"
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
local args = {}
for i = 3, #ARGV do args[#args + 1] = ARGV[i] end
for _, k in ipairs(KEYS) do redis.call(ARGV[2], k, unpack(args)) end
return 1
";

/// A message to a session's channel alone: `KEYS` = the record, its messages' stream; `ARGV`
/// = node, serial, number, payload, TTL (ms). Kept (about the last `DIRECT_KEPT`) if this
/// node owns the session.
pub(crate) const SESSION_SENT: &str = r"
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 's', ARGV[2], 'n', ARGV[3], 'p', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 1
";

/// Lua helpers for stream ids: `cmp(a, b)` (-1, 0, 1) and `trimmed(stream)`, the stream's
/// largest deleted id (`0-0` if none, or no stream).
const IDS: &str = r"
local function parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms or '0'), tonumber(seq or '0')
end
local function cmp(a, b)
  local am, as = parts(a)
  local bm, bs = parts(b)
  if am ~= bm then if am < bm then return -1 else return 1 end end
  if as ~= bs then if as < bs then return -1 else return 1 end end
  return 0
end
local function trimmed(stream)
  local info = redis.pcall('XINFO', 'STREAM', stream)
  if type(info) ~= 'table' or info.err then return '0-0' end
  for i = 1, #info, 2 do
    if info[i] == 'max-deleted-entry-id' then return info[i + 1] end
  end
  return '0-0'
end
";

/// Takes a session over for this node: `KEYS` = the record, the epoch marker, the stream of
/// its messages to its channel alone (read, then deleted: the new owner keeps those the
/// client lacks again); `ARGV` = the client's epoch (or ''), this node, the new serial, the
/// prefix, the TTL (ms), the
/// `moved` envelope for the old owner (the script appends the old channel's serial), the
/// client's last received number, then room and offset pairs (the client's). The names the
/// old channel held (its record in the old owner's channel hash) become the new serial's,
/// recorded in this node's channel hash. Returns `{'ok', old owner, the session's earlier
/// serials (comma-separated, the last 8, the latest last), handled count, the count of
/// messages to the channel alone the client lacks, the count of names taken over, those
/// messages, those names, room, from, room, from, ...}` (each room of the record, replayed
/// from the later of the client's offset and the join's), or `{'no', why}`: no such record,
/// another epoch, or messages the client lacks were trimmed.
pub(crate) fn session_claim() -> String {
    format!(
        "{IDS}{}",
        r#"
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {'no', 'no such session (its window may be over)'} end
local rec = {}
for i = 1, #h, 2 do rec[h[i]] = h[i + 1] end
local epoch = redis.call('GET', KEYS[2])
if not epoch or rec['epoch'] ~= epoch or (ARGV[1] ~= '' and ARGV[1] ~= epoch) then
  return {'no', 'epoch'}
end
local client = {}
for i = 8, #ARGV, 2 do client[ARGV[i]] = ARGV[i + 1] end
local direct = {}
local out = redis.call('XRANGE', KEYS[3], '-', '+')
for _, e in ipairs(out) do
  local f = {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  if f['s'] == rec['serial'] and tonumber(f['n']) > tonumber(ARGV[7]) then
    direct[#direct + 1] = f['p']
  end
end
if #out > 0 and #direct == 0 and cmp(trimmed(KEYS[3]), '0-0') > 0 then
  local first = {}
  for i = 1, #out[1][2], 2 do first[out[1][2][i]] = out[1][2][i + 1] end
  if first['s'] == rec['serial'] and tonumber(first['n']) > tonumber(ARGV[7]) + 1 then
    return {'no', 'messages to the channel were let go'}
  end
end
redis.call('DEL', KEYS[3])
local ids = rec['serial']
if rec['ids'] then ids = rec['ids'] .. ',' .. rec['serial'] end
local kept = {}
for id in string.gmatch(ids, '%d+') do kept[#kept + 1] = id end
while #kept > 8 do table.remove(kept, 1) end
ids = table.concat(kept, ',')
local names = {}
local was = redis.call('HGET', ARGV[4] .. ':chans:' .. rec['owner'], rec['serial'])
if was then
  local ok, e = pcall(cjson.decode, was)
  if ok and type(e) == 'table' and type(e['names']) == 'table' then
    for _, n in ipairs(e['names']) do
      local k = ARGV[4] .. ':name:' .. n
      if redis.call('GET', k) == rec['serial'] then
        redis.call('SET', k, ARGV[3])
        names[#names + 1] = n
      end
    end
  end
end
if #names > 0 then
  local quoted = {}
  for i, n in ipairs(names) do quoted[i] = cjson.encode(n) end
  redis.call('HSET', ARGV[4] .. ':chans:' .. ARGV[2], ARGV[3],
    '{"rooms":[],"names":[' .. table.concat(quoted, ',') .. ']}')
end
local reply = {'ok', rec['owner'], ids, rec['received'] or '0', tostring(#direct),
  tostring(#names)}
for _, p in ipairs(direct) do reply[#reply + 1] = p end
for _, n in ipairs(names) do reply[#reply + 1] = n end
for k, v in pairs(rec) do
  if string.sub(k, 1, 2) == 'r:' then
    local room = string.sub(k, 3)
    local from = v
    local c = client[room]
    if c and string.match(c, '^%d+-%d+$') and cmp(c, from) > 0 then from = c end
    if cmp(trimmed(ARGV[4] .. ':stream:' .. room), from) > 0 then
      return {'no', 'messages of room ' .. room .. ' were trimmed from its stream'}
    end
    reply[#reply + 1] = room
    reply[#reply + 1] = from
  end
end
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'serial', ARGV[3], 'ids', ids)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if rec['owner'] ~= ARGV[2] then
  redis.call('PUBLISH', ARGV[4] .. ':to:' .. rec['owner'], ARGV[6] .. rec['serial'])
end
return reply
"#
    )
}

/// Reads a room's stream: `KEYS` = the stream; `ARGV` = 'after' and an id, or 'last' and a
/// count, then the most entries. Returns `{complete, id, envelope, id, envelope, ...}`,
/// oldest first; `complete` is 0 if entries after the id were trimmed already.
pub(crate) fn stream_fetch() -> String {
    format!(
        "{IDS}{}",
        r"
local out = {'1'}
local entries
if ARGV[1] == 'after' then
  if cmp(trimmed(KEYS[1]), ARGV[2]) > 0 then out[1] = '0' end
  entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[2], '+', 'COUNT', ARGV[3])
else
  entries = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[2])
  local n = #entries
  for i = 1, math.floor(n / 2) do
    entries[i], entries[n + 1 - i] = entries[n + 1 - i], entries[i]
  end
end
for _, e in ipairs(entries) do
  out[#out + 1] = e[1]
  out[#out + 1] = e[2][2]
end
return out
"
    )
}

/// Deletes `KEYS[1]` if it holds `ARGV[1]`.
const DELETE_IF: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
";

/// The scripts, hashed once (they are loaded on every connection: a Redis that restarted has
/// none).
pub(crate) struct Scripts {
    pub(crate) register: Script,
    pub(crate) refresh: Script,
    pub(crate) claim: Script,
    pub(crate) release: Script,
    pub(crate) declare_dead: Script,
    pub(crate) retire_unlisted: Script,
    pub(crate) finish: Script,
    pub(crate) delete_if: Script,
    pub(crate) depart: Script,
    /// [`ROOM`]: called by its hash (EVALSHA), one call per batch of room sends.
    pub(crate) room: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            register: Script::new(REGISTER),
            refresh: Script::new(REFRESH),
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
            declare_dead: Script::new(DECLARE_DEAD),
            retire_unlisted: Script::new(RETIRE_UNLISTED),
            finish: Script::new(FINISH),
            delete_if: Script::new(DELETE_IF),
            depart: Script::new(DEPART),
            room: Script::new(ROOM),
        }
    }

    /// Loads every script on `con` (so that a pipeline can call them by hash).
    pub(crate) fn load(&self, con: &mut redis::Connection) -> redis::RedisResult<()> {
        for s in [
            &self.register,
            &self.refresh,
            &self.claim,
            &self.release,
            &self.declare_dead,
            &self.retire_unlisted,
            &self.finish,
            &self.delete_if,
            &self.depart,
            &self.room,
        ] {
            s.load(con)?;
        }
        Ok(())
    }
}
