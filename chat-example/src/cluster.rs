//! The backplane seam: what one chat-server node says to the others, and the two channels
//! between the chat (on the mio loop) and a backplane thread (e.g. [`crate::redis_backplane`]).
//!
//! The chat never does backplane I/O itself. It sends [`Cmd`]s down an `mpsc` channel (never
//! blocks) and, at the end of each pump, takes the [`Incoming`]s the thread handed over; the
//! thread wakes the server's poller (`Server::wake_handle`) after each hand-over. Without a
//! backplane (`None`), the chat is one node, as before.

use std::sync::mpsc::{self, Receiver, Sender};

use serde::{Deserialize, Serialize};

/// A user anywhere in the cluster: its node, the node's incarnation (one per start of the
/// process) and its channel's serial number there. A restarted node counts its channels from 1
/// again: the incarnation keeps an old process's channel 5 apart from the new one's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UserRef {
    /// The node's id (`--node-id`).
    pub node: String,
    /// The node's incarnation: a random number drawn at each start.
    pub inc: u64,
    /// The channel's serial number on that node.
    pub id: u64,
}

/// One user as a node publishes it: for the presence hash and for snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// Channel serial on its node.
    pub id: u64,
    /// Nickname.
    pub nick: String,
    /// Room.
    pub room: String,
}

/// What one node tells all others, in publish order (one publish per event, whatever the
/// number of recipients).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A user entered `room` (a new user is `anonymous` in the default room).
    Joined {
        /// Who.
        user: UserRef,
        /// Their nickname.
        nick: String,
        /// The room.
        room: String,
    },
    /// A user left `room` (to another room, or the chat).
    Left {
        /// Who.
        user: UserRef,
        /// Their nickname.
        nick: String,
        /// The room.
        room: String,
        /// Why, as in the `left` notice.
        reason: String,
        /// Whether they left the chat (not only the room).
        gone: bool,
    },
    /// A user changed nickname.
    Renamed {
        /// Who.
        user: UserRef,
        /// The old nickname.
        from: String,
        /// The new one.
        to: String,
        /// Their room.
        room: String,
    },
    /// A room message.
    Message {
        /// The sender.
        user: UserRef,
        /// The sender's nickname.
        nick: String,
        /// The room.
        room: String,
        /// The text.
        text: String,
        /// Server time (ms).
        time: u64,
    },
    /// A private message for one user.
    Private {
        /// The sender.
        from: UserRef,
        /// The sender's nickname.
        from_nick: String,
        /// The recipient.
        to: UserRef,
        /// The recipient's nickname.
        to_nick: String,
        /// The text.
        text: String,
        /// Server time (ms).
        time: u64,
    },
    /// A private message could not be delivered: its recipient is gone.
    PrivateFailed {
        /// The sender, to be told.
        sender: UserRef,
        /// The nickname it was for.
        to_nick: String,
    },
    /// An operator kicked a user.
    Kick {
        /// Who is kicked.
        target: UserRef,
        /// The operator's nickname.
        by: String,
        /// Why.
        reason: String,
    },
    /// A node (re)joined the bus: the others reload its users from the backplane, and forget
    /// the users of its earlier incarnations (a restart).
    Hello {
        /// The node.
        node: String,
        /// Its incarnation.
        inc: u64,
    },
}

/// What the chat asks of the backplane thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    /// Publish an event and update the shared presence it implies (users hash).
    Publish(Event),
    /// Claim `keys` for channel `id` (releasing `old_keys` it held), all or nothing; answered
    /// with [`Incoming::Claimed`].
    Claim {
        /// The channel.
        id: u64,
        /// The nickname asked for.
        nick: String,
        /// Its keys ([`crate::protocol::name_keys`]).
        keys: Vec<String>,
        /// The keys of the nickname it had, released on success.
        old_keys: Vec<String>,
    },
    /// Release `keys` held by channel `id` (it left or took another name).
    Release {
        /// The channel.
        id: u64,
        /// The keys.
        keys: Vec<String>,
    },
    /// After a reconnect: this node's users now, to write back (presence, nickname claims).
    Resync(Vec<(Presence, Vec<String>)>),
    /// The process is stopping (its users have left): give the node id up at once, so that a
    /// restart need not wait for the presence to expire. The thread ends after it.
    Leave,
}

/// What the backplane thread hands the chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// An event another node published.
    Event {
        /// The node that published it.
        node: String,
        /// That node's incarnation.
        inc: u64,
        /// The event.
        event: Event,
    },
    /// The answer to a [`Cmd::Claim`]: whether channel `id` now holds `nick`.
    Claimed {
        /// The channel.
        id: u64,
        /// The nickname.
        nick: String,
        /// Claimed (false: taken elsewhere, or the backplane is down).
        ok: bool,
    },
    /// Every other live node's users, read from the backplane (at start and after a
    /// reconnect): the chat replaces its picture of remote users with it.
    Snapshot(Vec<NodeUsers>),
    /// Node incarnations found dead (presence expired, or the node id now held by a newer
    /// incarnation): their users are gone.
    NodesGone(Vec<(String, u64)>),
    /// The backplane is reachable again; the chat answers with [`Cmd::Resync`].
    Up,
    /// The backplane is unreachable: cross-node traffic stops until [`Incoming::Up`].
    Down,
}

/// One live node's users, as read from the backplane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUsers {
    /// The node's id.
    pub node: String,
    /// Its live incarnation.
    pub inc: u64,
    /// Its users.
    pub users: Vec<Presence>,
}

/// The chat's end of a backplane.
#[derive(Debug)]
pub struct Backplane {
    /// This node's id.
    pub node: String,
    /// This process's incarnation of it.
    pub inc: u64,
    /// Commands to the thread.
    pub tx: Sender<Cmd>,
    /// What the thread handed over.
    pub rx: Receiver<Incoming>,
    /// Whether the backplane is reachable (as last reported).
    pub up: bool,
}

/// The thread's end of a backplane.
#[derive(Debug)]
pub struct BackplaneThreadEnd {
    /// Commands from the chat.
    pub rx: Receiver<Cmd>,
    /// Hand-overs to the chat (wake the server after each).
    pub tx: Sender<Incoming>,
}

impl Backplane {
    /// A connected pair of ends for incarnation `inc` of node `node`.
    pub fn pair(node: &str, inc: u64) -> (Backplane, BackplaneThreadEnd) {
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let (in_tx, in_rx) = mpsc::channel();
        (
            Backplane {
                node: node.to_owned(),
                inc,
                tx: cmd_tx,
                rx: in_rx,
                up: true,
            },
            BackplaneThreadEnd {
                rx: cmd_rx,
                tx: in_tx,
            },
        )
    }

    /// Sends a command; a thread that is gone is logged, never a panic.
    pub fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).is_err() {
            log::error!("the backplane thread is gone");
        }
    }

    /// This node's reference for channel `id`.
    pub fn user(&self, id: u64) -> UserRef {
        UserRef {
            node: self.node.clone(),
            inc: self.inc,
            id,
        }
    }

    /// Whether `u` is a user of this process (not of another incarnation of this node).
    pub fn is_mine(&self, u: &UserRef) -> bool {
        u.node == self.node && u.inc == self.inc
    }
}
