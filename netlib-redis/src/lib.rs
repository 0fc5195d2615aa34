//! The Redis implementation of netlib's cluster [`Adapter`](netlib::Adapter) seam: several
//! netlib servers (nodes), each made with a [`RedisAdapter`], share room sends, sends by
//! channel id, node-to-node messages, cluster-wide unique names, room membership queries and
//! presence through one Redis server, as Socket.IO's Redis adapter does for Socket.IO
//! servers. What every adapter must give is the seam's contract (netlib's `adapter` module
//! docs, and the model of the tests' in-process bus); this crate's own test suite runs that
//! contract against a real `redis-server`.
//!
//! ```no_run
//! use std::time::Duration;
//! use netlib::{Server, ServerConfig};
//! use netlib_redis::{RedisAdapter, RedisConfig};
//! # use netlib::{ChannelId, ServerContext, ServerHandler};
//! # struct Game;
//! # impl ServerHandler for Game { type Channel = ();
//! #   fn connected(&mut self, _: &mut ServerContext<'_, ()>, _: ChannelId, _: std::net::SocketAddr) {} }
//!
//! let config = RedisConfig::new("redis://:password@10.0.0.5:6379")
//!     .prefix("game")
//!     .presence_ttl(Duration::from_secs(10));
//! let adapter = RedisAdapter::connect(config)?;
//! let handle = adapter.handle(); // its state, once the adapter is the server's
//! let mut server = Server::with_adapter(Game, ServerConfig::default(), Box::new(adapter))?;
//! # let _ = (handle, &mut server);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Keys and channels
//!
//! Everything lives under a prefix `{p}` ([`RedisConfig::prefix`], default `netlib`), so
//! that clusters can share a Redis server. `{n}` is a node number, a serial is a channel id's
//! [`serial`](netlib::ChannelId::serial) in decimal.
//!
//! | key or channel | type | what |
//! |---|---|---|
//! | `{p}:nodes` | set | the registered node numbers (a dead one until it is reaped) |
//! | `{p}:node:{n}` | string, TTL | node `n`'s presence: a random token of its start, refreshed every third of the [presence TTL](RedisConfig::presence_ttl) |
//! | `{p}:retired:{n}` | string, 1 h | number `n` left or was declared dead: it is drawn by no one, and its old holder can never refresh it (fenced while this key exists, whatever its node key holds) |
//! | `{p}:reap:{n}` | string, 30 s | the lock of the node that reaps dead node `n` (`SET NX PX`) |
//! | `{p}:chans:{n}` | hash | node `n`'s channels that joined a room or hold a name: serial → `{"rooms":[..],"names":[..]}` (what a reaper needs) |
//! | `{p}:room:{room}` | sorted set | the room's members on every node: member = serial, score = serial (below 2⁵³, exact as a double), so pages come in id order |
//! | `{p}:name:{name}` | string | the serial of the channel that holds the name |
//! | `{p}:nodename:{name}` | string, TTL | the token of the node that holds [node name](RedisConfig::node_name) `name`, refreshed with its presence |
//! | `{p}:epoch` | string | a marker set with `SET NX` by the first node: a node that finds it changed or gone after a reconnect knows Redis lost its data |
//! | `{p}:departed` | stream | the log: every departure envelope and every room send held during an outage (trimmed to about 100 000 entries), for a node that subscribes again to read what it missed |
//! | `{p}:stream:{room}` | stream | with [room streams](RedisConfig::room_streams): the room's sends, each a room-send envelope (field `e`); the entry id is the send's offset |
//! | `{p}:sess:{token}` | hash, TTL | with room streams: a resumable session's record: `owner` (node), `serial`, `ids` (its earlier serials), `epoch`, `received` (the client's messages handled), `r:{room}` (the offset each room was joined at); TTL: the resume window past its owner's last refresh |
//! | `{p}:sess:{token}:out` | stream, TTL | with room streams: the session's messages to its channel alone (fields `s` serial, `n` number, `p` payload; about the last 1 000), read and deleted by a node that takes the session over |
//! | `{p}:bus` | pub/sub | room sends, messages to every node, departures (with their `{p}:departed` id appended), "node gone" notices |
//! | `{p}:to:{n}` | pub/sub | sends to channels of node `n`, messages to node `n` |
//!
//! Changes that must be atomic are Lua scripts: taking a number (only if it is neither live,
//! retired nor still listed), refreshing presence (only if the number is not retired and the
//! keys still hold this start's token, or expired), claiming names (all or none, recorded in the
//! node's hash in the same step), releasing names (only those the channel holds), declaring a
//! node dead (retiring its number in the same step), retiring a number no longer listed (only
//! if it is still neither listed nor has a key), a node's end, publishing a departure
//! (appended to the departures log and published with its entry's id, in one step), and with
//! room streams: a room send (added to its stream, published with its offset, and the sender's
//! handled count recorded, in one step), a session's record changed only by its owner, and a
//! session taken over (epoch and trimming checked, the owner changed, the old owner told).
//!
//! # The envelope
//!
//! One PUBLISH carries one envelope, in a compact binary format (integers big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version: 1 |
//! | 1 | kind: 1 room send, 2 send, 3 node message, 4 departures, 5 node gone, 6 probe, 7 logged, 8 streamed room send, 9 session moved |
//! | 2 | origin: the node it speaks for (the sender, or the dead node a reaper speaks for) |
//!
//! then, by kind: a room send has the excepted channel's serial (u64, 0 for none), the
//! number of rooms (u16), each room as its length (u16) and UTF-8 bytes, then the payload; a
//! send, the channel's serial (u64) then the payload; a node message, the node it is for
//! (u16, 0 for every other node) then the payload; departures, their count (u32) then each
//! serial (u64), then, as published on `{p}:bus`, the id of its entry in `{p}:departed`
//! (`MS-SEQ`, ASCII); node gone, the node (u16); a probe, its number (u64), published once a
//! second on the node's own `{p}:to:{n}` to time its round trip through Redis (the
//! `netlib_adapter_round_trip_seconds` metric); logged, the length of the envelope it carries
//! (u32, a room send of its origin's) and that envelope, then, as published, its entry's id
//! in the log; a streamed room send (with room streams), the excepted channel's serial (u64),
//! its room's length (u16) and UTF-8 bytes, the payload's length (u32) and the payload, then,
//! as published, its entry's id in the room's stream (its offset); session moved, the
//! session's token (u128), sent on the old owner's `{p}:to:{n}`. The payload is netlib's JSON
//! message, as the
//! sending server encoded it, unescaped and last: a receiving node copies a message's bytes
//! once out of the `redis` crate's message and hands its server a slice of that copy, with no
//! re-encoding.
//!
//! # Guarantees
//!
//! - **One publish per room send**, whatever the number of nodes and rooms: `{p}:bus`, read by
//!   every node, which delivers to its own members (and ignores what it published itself).
//! - **Order**: each node publishes from one connection and subscribes to both of its
//!   channels on one connection, and Redis delivers in publish order, so a node's room sends,
//!   sends by id and node messages arrive everywhere in the order it sent them.
//! - **No Redis I/O on the server's loop**: the adapter's methods only hand work to its
//!   command thread or read atomics; what arrives is put in an inbox and the server woken.
//!   Sends by id and node messages are refused with
//!   [`ClusterError::Unavailable`](netlib::ClusterError::Unavailable) while the adapter is
//!   down (or fenced, or too far behind), and what was refused is never sent later.
//! - **Room sends outlive an outage**: made while Redis is down (or handed over before it
//!   and not sent yet), they are held, up to [`RedisConfig::outage_backlog`] bytes and
//!   10 000 sends (past it, refused), and published once this node reports `Up` again, in
//!   the order they were made and before any room send made after; they go through the log
//!   (`{p}:departed`, as departures), so that a node that subscribes again only after they
//!   were published reads them there, once (a log Redis restored from an older snapshot is
//!   not read twice). Room sends in flight when the connection broke may be lost: whether
//!   Redis got them is unknown. Every node of a cluster must run a version that reads
//!   held sends (envelope kind 7): an older one drops them with a warning.
//! - **Numbers are never reused while it matters**: a node number is drawn at random at
//!   every start among those neither live, listed, nor retired in the last hour; a dead
//!   node's ids never reach its successor's channels.
//! - **Names have one holder**: claims are all or none, atomic in Redis; a name is freed when
//!   its channel closes or its node dies.
//! - **Departures are not lost to a reconnect**: pub/sub delivers only to who is subscribed,
//!   so departures also go to the `{p}:departed` log; a node whose subscriber connects again
//!   reads the entries after the last it got before it reports `Up` (each departure is
//!   reported once). A node away while more than the log's length (about 100 000 entries,
//!   departures and held room sends of every node together) were written misses the oldest.
//!
//! # Presence, death and reaping
//!
//! Each node refreshes its key every third of the presence TTL. Every min(1 s, TTL/3) each
//! node reads `{p}:nodes`: a listed node whose key is gone is dead. The first node to see it
//! retires its number (a script: the dead node can never refresh again) and every live node
//! reports [`ClusterEvent::NodeGone`](netlib::ClusterEvent::NodeGone) to its server, once per
//! node; the one node that takes the reap lock removes the dead node's channels from their
//! rooms, frees their names, deletes its hash and number, and publishes one departure in the
//! dead node's name, which every other node (the reaper too) reports as
//! [`ClusterEvent::Departed`](netlib::ClusterEvent::Departed) per channel. A record of its
//! hash that cannot be read is skipped (logged), never a reason to stop. A node found gone
//! stays gone for the node that found it until its number is seen listed and alive again
//! (a new start drew it after its retirement), or for an hour at most. A node killed
//! with SIGKILL has departed everywhere within the presence TTL plus about 2 s.
//!
//! # Outages
//!
//! Both connections reconnect with capped exponential backoff and full jitter (up to 2 s).
//! An outage is reported once ([`ClusterEvent::Down`](netlib::ClusterEvent::Down), logged
//! once); what this node's channels do meanwhile (joins, leaves, releases, closings) is
//! state: kept in a mirror, and replayed when Redis is back. Back up, the node takes its
//! presence again, rewrites its hash, room memberships and names from the mirror (removing
//! what is stale first: Redis may have restarted empty), publishes the departures made
//! meanwhile, and only then, with its subscriber subscribed again, reports
//! [`ClusterEvent::Up`](netlib::ClusterEvent::Up). Claims are answered with `Unavailable`
//! and members queries with [`QueryFailed`](netlib::ClusterEvent::QueryFailed) while down.
//! When Redis may have lost the others' presence, a node gives them one presence TTL (plus
//! the longest backoff) to register again before it counts them gone: after a reconnect that
//! finds the `{p}:epoch` marker changed or gone (Redis restarted empty), or when it had to
//! take its own presence key again (it had expired: Redis stalled). An outage of this node's
//! own connections (its subscriber's alone, say) does not pause death detection. The
//! reconnection backoff is reset only once the node has resynchronised. If Redis loses its data while a
//! node dies, the others still report it gone, but no one knows its channels any more: they
//! get no `Departed` for them (a server that keeps a directory of other nodes' channels drops
//! that node's on `NodeGone`).
//!
//! # Fencing
//!
//! If a refresh finds this node's key held by another token, or its number retired (this
//! process stalled past its TTL and was declared dead, or Redis restarted empty and a
//! newcomer drew the number), or its name held by another node, the adapter is fenced: it
//! stops touching Redis for good (its subscriber unsubscribes and its thread ends), logs an
//! error once, reports `Down` with `ClusterError::Fenced("fenced: ...")`, and refuses all
//! cross-node work from then on. Nothing received from other nodes reaches its server after
//! that `Down` (what was received and not yet polled is dropped too); only the answers to its
//! own claims and members queries (refusals) still come. Restart the process to rejoin under
//! a new number. A panic in one of the adapter's threads fences it the same way (`Down` with
//! `Fenced("fenced: the ... thread panicked")`).
//!
//! # Leaving and dying
//!
//! Dropping a [`RedisAdapter`] (dropping its server) leaves at once, waiting up to 1 s: its
//! channels' departures are published, their names freed and rooms cleaned, a "node gone"
//! notice published (the others report `NodeGone` at once), its key deleted and its number
//! retired; then its threads end. [`AdapterHandle::halt`] stops it as SIGKILL would instead,
//! for tests: the others find it dead once its presence expires.
//!
//! # Threads
//!
//! Two per adapter, each with its own connection, and all their Redis I/O goes through the
//! [`redis`] crate (RESP is its business, not this crate's). The command thread carries
//! everything the server hands over to Redis, draining its queue and sending up to 1 024
//! operations in one pipelined round trip, in order: a `redis::Pipeline` of `redis::cmd`s and
//! `EVAL`s of the short scripts (not `EVALSHA`: a flushed script cache, `SCRIPT FLUSH`, is no
//! outage; the one exception, the room-stream script of every room send, goes by its hash,
//! and a send Redis refuses with `NOSCRIPT` is held and sent again once the connection is
//! made again and the scripts loaded), written at once on a `redis::Connection`, its replies read one by one (each
//! operation gets its own answer, and a timeout ends the round trip at once); a claim is a
//! `Script::invoke` (which loads the script again on `NOSCRIPT`). It also refreshes presence
//! (also between the claims and round trips of a long batch, so that a burst cannot starve
//! it), finds dead nodes, reaps, resynchronises and leaves. The subscriber thread reads
//! `{p}:bus` and `{p}:to:{n}` with the crate's `PubSub::get_message` (and the departures log
//! with `XRANGE`, on a second connection, when it subscribes): its reads time out every
//! 50 ms so that it notices the adapter's end, and a connection quiet for one I/O timeout is
//! checked with a `PING`. A message costs the crate's parsing and one copy of its bytes.
//! Logs go through `log`; they never show the Redis password (URLs are shown as
//! [`RedisConfig::shown_url`] gives them, with the user info's password and `pass=` or
//! `password=` query parameters hidden, and the texts of the `redis` crate's and Redis's
//! errors have it replaced by `***`).
//!
//! # Layout
//!
//! - `config.rs`: [`RedisConfig`], and hiding the password.
//! - `error.rs`: [`RedisError`].
//! - `adapter.rs`: [`RedisAdapter`], the seam's methods (no I/O) and `connect`.
//! - `shared.rs`: what the adapter and its threads share (inbox, flags), [`AdapterHandle`].
//! - `node.rs`: the node's number, name and presence.
//! - `keys.rs`: key and channel names, the Lua scripts.
//! - `envelope.rs`: the envelope's encoding and decoding.
//! - `commands.rs`: the command thread (pipeline, mirror, reaping, resync, leave), on the
//!   `redis` crate's pipelines and scripts.
//! - `subscriber.rs`: the subscriber thread, on the `redis` crate's `PubSub`.
//! - `backoff.rs`: reconnection backoff, random numbers.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod adapter;
mod backoff;
mod commands;
mod config;
mod envelope;
mod error;
mod keys;
mod metrics;
mod node;
mod shared;
mod subscriber;

pub use adapter::RedisAdapter;
pub use config::{RedisConfig, DEFAULT_OUTAGE_BACKLOG, DEFAULT_PRESENCE_TTL};
pub use error::RedisError;
pub use shared::AdapterHandle;
