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
        ] {
            s.load(con)?;
        }
        Ok(())
    }
}
