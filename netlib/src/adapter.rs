//! The cluster adapter seam (Socket.IO's `Adapter`): what a server tells the other nodes of a
//! cluster and what it hears from them. Without one (the default) a server is a cluster of
//! one: rooms, sends and name claims are local. An adapter carries:
//! - room sends to the other nodes' members ([`Adapter::broadcast`]);
//! - sends to one channel of another node ([`Adapter::send`]), named by a [`ChannelId`] whose
//!   [`node`](ChannelId::node) is that node's;
//! - membership, so that any node can list a room's members cluster-wide, a page at a time
//!   ([`Adapter::members`]);
//! - the departure of other nodes' channels, those of a node that died included
//!   ([`ClusterEvent::Departed`]);
//! - cluster-wide unique names ([`Adapter::claim`]), released when their channel closes or its
//!   node dies;
//! - messages from node to node, for the servers' own use ([`Adapter::emit`], Socket.IO's
//!   `serverSideEmit`): e.g. a chat tells the other nodes who its users are;
//! - the backplane's state ([`ClusterEvent::Up`], [`ClusterEvent::Down`]) and the end of other
//!   nodes ([`ClusterEvent::NodeGone`]).
//!
//! An adapter does no I/O on the event loop: calls only queue work, and what arrives is taken
//! by [`Adapter::poll`] once per pump (an adapter with threads wakes the server through the
//! waker it is given). Payloads travel as JSON messages; each node encodes them for its own
//! wires.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::id::{ChannelId, NodeNumber};

/// Why a cross-node operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The cluster's backplane cannot be reached now (e.g. Redis is down): local traffic goes
    /// on; cross-node operations are refused until it is back.
    #[error("the cluster is unavailable: {0}")]
    Unavailable(String),
    /// This node no longer takes part in the cluster, for good: the others declared it dead
    /// (it stalled past its presence TTL), or another process holds its number or name. Its
    /// channels are gone for the other nodes; restart the process to join again under a new
    /// number.
    #[error("this node is fenced out of the cluster: {0}")]
    Fenced(String),
    /// The name is held by another channel.
    #[error("the name is taken")]
    Taken,
    /// No such channel on any node.
    #[error("no such channel")]
    NoChannel,
}

/// What other nodes did, as [`ServerHandler::cluster`](crate::ServerHandler::cluster) gets it.
/// Room sends and sends to local channels from other nodes are delivered by netlib itself.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClusterEvent {
    /// A channel of another node closed, or its node died (its presence expired).
    Departed {
        /// The channel.
        id: ChannelId,
    },
    /// The answer to [`ServerContext::claim`](crate::ServerContext::claim).
    Claimed {
        /// The channel the names were claimed for.
        id: ChannelId,
        /// The names, as claimed.
        names: Vec<String>,
        /// `Ok` if the channel now holds every one of them (also those it held already);
        /// otherwise it took none.
        result: Result<(), ClusterError>,
    },
    /// A message another node sent with
    /// [`ServerContext::emit_nodes`](crate::ServerContext::emit_nodes) or
    /// [`emit_node`](crate::ServerContext::emit_node). Each node's messages arrive in the order
    /// it sent them, and in order with its room sends and sends by id.
    Message {
        /// The node that sent it.
        from: NodeNumber,
        /// The message.
        message: crate::Message,
    },
    /// This node is connected to the cluster's backplane: once at start, then after each
    /// [`Down`](Self::Down). What other nodes learned of this node while it was away may be
    /// lost (e.g. Redis restarted empty): a server that keeps a directory of the other nodes'
    /// users announces its own again here (see [`emit_nodes`](crate::ServerContext::emit_nodes)).
    Up,
    /// The backplane cannot be reached: cross-node operations are refused with
    /// [`ClusterError::Unavailable`] until [`Up`](Self::Up); local traffic goes on.
    Down {
        /// Why.
        error: ClusterError,
    },
    /// Names a channel of this node held were lost: after an outage in which the backplane
    /// lost its data, another node's channel claimed them first. The channel holds none of
    /// `names` any more (all or none, as claimed); the application tells its user (the chat
    /// makes it anonymous again).
    NamesLost {
        /// The channel.
        id: ChannelId,
        /// The names it no longer holds.
        names: Vec<String>,
    },
    /// Another node left the cluster: it stopped, or its presence expired (it died). Its
    /// channels are gone: each that joined a room or claimed a name was reported
    /// [`Departed`](Self::Departed), before or after this event; a server that keeps a
    /// directory of that node's channels drops them all here.
    NodeGone {
        /// The node.
        node: NodeNumber,
    },
    /// A page of the answer to [`ServerContext::query_members`](crate::ServerContext::query_members).
    Members {
        /// The token the query was made with.
        token: u64,
        /// The room.
        room: String,
        /// Members on every node, in a stable order (by id).
        page: Vec<ChannelId>,
        /// The cursor of the next page, if there is one.
        next: Option<ChannelId>,
    },
    /// A [`query_members`](crate::ServerContext::query_members) that cannot be answered now
    /// (the backplane is unavailable); ask again later.
    QueryFailed {
        /// The token the query was made with.
        token: u64,
        /// The room.
        room: String,
        /// Why.
        error: ClusterError,
    },
}

/// One message of a room's stream, as [`Adapter::fetch`] reads it (the fields of
/// [`Inbound::Streamed`] but the room, which the fetch named).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// Its place in the room's stream.
    pub offset: Offset,
    /// A channel the send left out (the sender, on any node).
    pub except: Option<ChannelId>,
    /// The rooms of the same send listed before this one: a send to several rooms is one
    /// stream entry per room, and a replay skips this one for a member of any of them, which
    /// gets it from there (as live delivery does).
    pub before: Vec<String>,
    /// The message, as JSON.
    pub payload: Bytes,
}

/// A message's place in its room's stream in the backplane, with [room
/// streams](Adapter::streams): a Redis stream id, `ms-seq`, ordered (as Centrifugo's
/// publication offset). Written and parsed as `"<ms>-<seq>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset {
    /// The milliseconds part.
    pub ms: u64,
    /// The sequence within that millisecond.
    pub seq: u64,
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl std::str::FromStr for Offset {
    type Err = ClusterError;
    /// Parses `"<ms>-<seq>"`.
    ///
    /// # Errors
    /// [`ClusterError::Unavailable`] naming the text, if it is not two unsigned integers
    /// joined by `-`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ClusterError::Unavailable(format!("not a stream offset: {s:?}"));
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        Ok(Offset {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// The session a room send was made for, so that an adapter with room streams records, in
/// the same step as the send, that the sender's message number `received` was handled (a
/// session resumed on another node then never has that message handled twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cause {
    /// The sender's session token.
    pub token: u128,
    /// The number of the sender's message being handled (its session's count).
    pub received: u64,
}

/// A request to take over a resumable session that another node holds or held (it may be
/// dead): made by [`Adapter::resume`] for a client that came back to this node with a token
/// this node does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionClaim {
    /// The session's token.
    pub token: u128,
    /// The backplane epoch the client's offsets belong to (`None`: it has none).
    pub epoch: Option<String>,
    /// The channel this node made for the connection: the session's new channel.
    pub id: ChannelId,
    /// The last offset the client received, per room.
    pub rooms: Vec<(String, Offset)>,
    /// The number of the last message the client received (its session's count).
    pub received: u64,
}

/// What a node that takes over a session needs of it: its old channel, how many of the
/// client's messages were handled, and where to replay each of its rooms from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The channel the session had (on the node that held it).
    pub previous: ChannelId,
    /// Every channel the session had (the last few, `previous` last): room sends made by
    /// the client through any of them are not sent back to it.
    pub earlier: Vec<ChannelId>,
    /// Messages of the client handled so far (at least: see [`Cause`]).
    pub received: u64,
    /// The messages to the session's channel alone (not a room's, see
    /// [`Adapter::session_sent`]) that the client did not receive, oldest first, as JSON.
    pub direct: Vec<Bytes>,
    /// The names (see [`Adapter::claim`]) `previous` held, now the new channel's: they
    /// travel with the session.
    pub names: Vec<String>,
    /// The session's rooms, each with the offset after which the client lacks messages.
    pub rooms: Vec<(String, Offset)>,
}

/// Which messages of a room stream [`Adapter::fetch`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// Every message after this offset, oldest first (a resume's replay).
    After(Offset),
    /// The last `n` messages, oldest first (a room's history).
    Last(usize),
}

/// What an adapter received for this node, taken by the server at each pump.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Inbound {
    /// A room send made on another node: deliver `payload` (a JSON message) to this node's
    /// members of any of `rooms` (each once), but `except`.
    Broadcast {
        /// The rooms.
        rooms: Vec<String>,
        /// A channel left out (the sender, on any node).
        except: Option<ChannelId>,
        /// The message, as JSON.
        payload: Bytes,
    },
    /// A send from another node to a channel of this node.
    Send {
        /// The channel.
        to: ChannelId,
        /// The message, as JSON.
        payload: Bytes,
    },
    /// A message another node emitted for this one
    /// ([`Adapter::emit`]): handed to the server's [`cluster`](crate::ServerHandler::cluster)
    /// hook as [`ClusterEvent::Message`].
    Message {
        /// The node that sent it.
        from: NodeNumber,
        /// The message, as JSON.
        payload: Bytes,
    },
    /// A room send kept in `room`'s stream at `offset` (an adapter with [room
    /// streams](Adapter::streams)): this node's own sends come back this way too, and are
    /// delivered to its members only then, so that every member sees the room in the
    /// stream's order.
    Streamed {
        /// The room.
        room: String,
        /// The rooms of the same send listed before `room`: a send to several rooms is one
        /// stream entry per room, and a member of several of them gets it once, from the
        /// first.
        before: Vec<String>,
        /// Its place in the room's stream.
        offset: Offset,
        /// A channel left out (the sender, on any node).
        except: Option<ChannelId>,
        /// The message, as JSON.
        payload: Bytes,
    },
    /// The answer to [`Adapter::resume`]: the session's record, or why it cannot be taken
    /// over (unknown token, window over, another epoch, messages trimmed).
    Resumed {
        /// The session's token.
        token: u128,
        /// The record, or the reason of the refusal.
        result: Result<SessionRecord, String>,
    },
    /// The answer to [`Adapter::fetch`] made with `token`: the messages, oldest first;
    /// `complete` is false if some were trimmed from the stream already or the backplane
    /// could not be read.
    Fetched {
        /// The token the fetch was made with.
        token: u64,
        /// The messages, oldest first.
        entries: Vec<StreamEntry>,
        /// Whether every message asked for is there.
        complete: bool,
    },
    /// Another node took over session `token` of this node (its client came back there): the
    /// channel here ends, without a goodbye to the client.
    Moved {
        /// The session's token.
        token: u128,
        /// The channel it had here, if known: a newer channel of the session is left alone.
        id: Option<ChannelId>,
        /// Its channel on the node that took it, if known.
        to: Option<ChannelId>,
    },
    /// Something for the server's [`cluster`](crate::ServerHandler::cluster) hook.
    Event(ClusterEvent),
}

/// The seam between a server and its cluster (see the module docs). Implemented by the
/// Redis adapter (the `netlib-redis` crate) and by the in-process bus of the tests
/// (`netlib_tests::bus`); set with
/// [`Server::with_adapter`](crate::Server::with_adapter). An adapter keeps its node's presence
/// alive from its own thread: a server with no traffic may not pump for long (`Server::run`
/// waits in the poller), and [`poll`](Self::poll) is only called when it does.
pub trait Adapter: Send + fmt::Debug {
    /// This node's number (1 to 65 535, new at every start): the high bits of its channels'
    /// ids.
    fn node(&self) -> NodeNumber;

    /// The server's waker, for an adapter whose messages arrive on other threads: wake it
    /// when there is something to [`poll`](Self::poll). Default: ignored.
    fn set_waker(&mut self, waker: Arc<mio::Waker>) {
        let _ = waker;
    }

    /// The server's metrics were made ([`Server::metrics`](crate::Server::metrics)): an adapter
    /// registers its own there (messages published and received, connection state, lag) and
    /// adds a readiness check for its backplane ([`Metrics::add_check`](crate::Metrics::add_check)).
    /// Called once, on the server's thread. Default: nothing.
    fn register_metrics(&mut self, metrics: &crate::Metrics) {
        let _ = metrics;
    }

    /// A channel of this node opened (before its `connected` hook). Default: nothing.
    fn opened(&mut self, id: ChannelId) {
        let _ = id;
    }

    /// A channel of this node joined `room`.
    fn joined(&mut self, id: ChannelId, room: &str);

    /// A channel of this node left `room`.
    fn left(&mut self, id: ChannelId, room: &str);

    /// A channel of this node closed: it left its rooms, and its names are released.
    fn closed(&mut self, id: ChannelId);

    /// A room send made on this node, for the other nodes' members of any of `rooms` (each
    /// once) but `except`; `payload` is the message as JSON. One call per send, whatever the
    /// number of nodes; each sender's order is kept. While the backplane is down an adapter
    /// may hold the send and deliver it when it is back, in order (netlib-redis does, up to a
    /// cap), rather than refuse it.
    ///
    /// # Errors
    /// [`ClusterError::Unavailable`] if it cannot reach the other nodes now (and does not
    /// hold the send for later).
    fn broadcast(
        &mut self,
        rooms: &[&str],
        except: Option<ChannelId>,
        payload: &Bytes,
    ) -> Result<(), ClusterError>;

    /// A send to `to`, a channel of another node; `payload` is the message as JSON.
    ///
    /// # Errors
    /// [`ClusterError::Unavailable`] if it cannot reach the other nodes now.
    fn send(&mut self, to: ChannelId, payload: &Bytes) -> Result<(), ClusterError>;

    /// Claims every one of `names` for `id` (a channel of this node) on every node,
    /// atomically (all or none); the answer comes as [`ClusterEvent::Claimed`].
    fn claim(&mut self, id: ChannelId, names: &[String]);

    /// Gives up `name` if `id` holds it.
    fn release(&mut self, id: ChannelId, name: &str);

    /// Asks for up to `limit` members of `room` on every node, from the id after `after` on;
    /// the answer comes as [`ClusterEvent::Members`] with `token`, or as
    /// [`ClusterEvent::QueryFailed`] if it cannot be given now.
    fn members(&mut self, room: &str, after: Option<ChannelId>, limit: usize, token: u64);

    /// A message from this server to the `cluster` hook of node `to`, or of every other node
    /// (`None`), as [`ClusterEvent::Message`]; `payload` is the message as JSON. Kept in order
    /// with this node's room sends and sends by id.
    ///
    /// # Errors
    /// [`ClusterError::Unavailable`] if it cannot reach the other nodes now.
    fn emit(&mut self, to: Option<NodeNumber>, payload: &Bytes) -> Result<(), ClusterError>;

    /// Whether room sends are kept in per-room streams with offsets (Redis Streams in
    /// netlib-redis, with `RedisConfig::room_streams`): then a room send is not delivered to
    /// this node's members at once but when it comes back as [`Inbound::Streamed`], resumable
    /// sessions move between nodes ([`resume`](Self::resume)), and a room's history is read
    /// from its stream ([`fetch`](Self::fetch)). Default: false.
    fn streams(&self) -> bool {
        false
    }

    /// The backplane's epoch with room streams: it changes whenever the backplane lost data,
    /// so that offsets of another epoch are never trusted. Default: `None`.
    fn epoch(&self) -> Option<String> {
        None
    }

    /// As [`broadcast`](Self::broadcast), made while handling message `cause.received` of
    /// session `cause.token` (see [`Cause`]). Default: [`broadcast`](Self::broadcast).
    ///
    /// # Errors
    /// As [`broadcast`](Self::broadcast).
    fn broadcast_caused(
        &mut self,
        rooms: &[&str],
        except: Option<ChannelId>,
        payload: &Bytes,
        cause: Option<Cause>,
    ) -> Result<(), ClusterError> {
        let _ = cause;
        self.broadcast(rooms, except, payload)
    }

    /// With room streams: channel `id` of this node has resumable session `token`, which
    /// waits `window` to be resumed once its connection is lost: the adapter records it (its
    /// rooms, with the offset each was joined at) for another node to take over. Default:
    /// nothing.
    fn session_opened(&mut self, token: u128, id: ChannelId, window: std::time::Duration) {
        let _ = (token, id, window);
    }

    /// With room streams: session `token`, channel `id`, was resumed on this node (after
    /// [`session_detached`](Self::session_detached), or before the loss was noticed): its
    /// record lives on, unless another node took the session over meanwhile (then
    /// [`Inbound::Moved`] follows). Default: nothing.
    fn session_reattached(&mut self, token: u128, id: ChannelId, window: std::time::Duration) {
        let _ = (token, id, window);
    }

    /// With room streams: message number `n` of session `token` (channel `id`), `payload` as
    /// JSON, went to that channel alone (not a room's): the adapter keeps it, so that a node
    /// that takes the session over sends it if the client lacks it. Default: nothing.
    fn session_sent(&mut self, token: u128, id: ChannelId, n: u64, payload: &Bytes) {
        let _ = (token, id, n, payload);
    }

    /// With room streams: session `token` lost its connection; it can be taken over until
    /// its window ends. Default: nothing.
    fn session_detached(&mut self, token: u128) {
        let _ = token;
    }

    /// With room streams: session `token` ended for good (its window ended, or either side
    /// closed it on purpose). Default: nothing.
    fn session_ended(&mut self, token: u128) {
        let _ = token;
    }

    /// With room streams: takes over the session `claim` names for this node; the answer
    /// comes as [`Inbound::Resumed`]. The node that held it gets [`Inbound::Moved`]. Default:
    /// refused at once.
    fn resume(&mut self, claim: SessionClaim, into: &mut Vec<Inbound>) {
        into.push(Inbound::Resumed {
            token: claim.token,
            result: Err("sessions are kept on one node (no room streams)".into()),
        });
    }

    /// With room streams: reads `room`'s stream; the answer comes as [`Inbound::Fetched`]
    /// with `token`. Default: an empty, incomplete answer at once.
    fn fetch(&mut self, room: &str, range: Fetch, token: u64, into: &mut Vec<Inbound>) {
        let _ = (room, range);
        into.push(Inbound::Fetched {
            token,
            entries: Vec::new(),
            complete: false,
        });
    }

    /// Appends what arrived for this node since the last call; `now` is the server's clock
    /// (presence deadlines are measured on it).
    fn poll(&mut self, now: Instant, into: &mut Vec<Inbound>);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::NODE_SHIFT;

    #[test]
    fn an_offset_reads_and_writes_as_ms_dash_seq_and_orders_by_ms_then_seq() {
        let o: Offset = "1700000000000-12".parse().unwrap();
        assert_eq!(
            o,
            Offset {
                ms: 1_700_000_000_000,
                seq: 12
            }
        );
        assert_eq!(o.to_string(), "1700000000000-12");
        assert!("5-10".parse::<Offset>().unwrap() > "5-9".parse().unwrap());
        assert!("10-0".parse::<Offset>().unwrap() > "9-99".parse().unwrap());
        for bad in ["", "5", "5-", "-5", "a-1", "1-b", "1-2-3", "-1-2"] {
            assert!(bad.parse::<Offset>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_id_names_its_node_in_its_high_bits() {
        let id = ChannelId::from_serial((7 << NODE_SHIFT) | 42);
        assert_eq!(id.node(), 7);
        assert_eq!(ChannelId::from_serial(42).node(), 0);
        let largest = ((u64::from(NodeNumber::MAX)) << NODE_SHIFT) | ((1 << NODE_SHIFT) - 1);
        assert!(largest < 1 << 53, "exact in JavaScript");
    }
}
