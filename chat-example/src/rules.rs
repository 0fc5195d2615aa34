//! The chat's rules as a pure core: [`Rules::handle`] takes one [`Input`] (a request, a
//! connection opening or closing, what the cluster reported, the end of a pump) and the time,
//! and returns [`Effect`]s; it does no I/O and reads no clock. The thin
//! [`ServerHandler`](netlib::ServerHandler) in [`crate::server`] turns netlib's hooks into
//! inputs and applies the effects. Model: mini-redis's `cmd/`, one enum and one `match`.
//!
//! The rules keep a directory of every user, on this node and (in a cluster) on the others,
//! so `who`, `rooms`, private messages and kicks by nickname are answered at once. The other
//! nodes' users are learnt from the [`Note`]s the nodes send each other through netlib's
//! adapter ([`Effect::Emit`]): a `hello` with all of a node's users when it comes up (answered
//! by the others with theirs), then each join, departure and rename. A node that dies is
//! reported by the adapter ([`Input::NodeGone`], [`Input::Departed`]). Nicknames are unique
//! cluster-wide through netlib's name claims ([`Effect::Claim`]).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use indexmap::IndexSet;
use netlib::{ChannelId, ClusterError, NodeNumber};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::limits::{AddressAttempts, ChatLimits, Kind, UserLimits};
use crate::protocol::{
    check_message, check_name, name_key, name_keys, Join, Kick, Op, Quit, Refusal, Request,
    RoomEntry, RoomPolicy, Rooms, Say, SayPrivately, ServerMsg, SetNickname, Tier, Who, WhoEntry,
    ACTIONS, ANONYMOUS, DEFAULT_ROOM, PAGE_SIZE, RESERVED_NICKNAMES,
};

/// Most names in one `members` delta; larger deltas are split.
pub const DELTA_CHUNK: usize = 500;

/// How many of a room's last messages a user who enters it gets (its scrollback), if the
/// server keeps them ([`ServerConfig::room_history`](netlib::ServerConfig::room_history)).
pub const SCROLLBACK: usize = 50;

/// Longest quit or kick reason relayed, in characters; longer ones are cut.
pub const MAX_REASON_CHARS: usize = 200;

/// The rules' settings.
#[derive(Debug, Clone)]
pub struct RuleSettings {
    /// The operator password; `None` disables `op`.
    pub op_password: Option<String>,
    /// Which rooms get which membership traffic.
    pub rooms: RoomPolicy,
    /// Per-user request limits; `None` turns them off.
    pub limits: Option<ChatLimits>,
    /// Whether this node is one of a cluster (nicknames are then claimed through the adapter,
    /// and cross-node requests are refused while it is down).
    pub cluster: bool,
    /// This node's name, as other nodes show it (`--node-id`).
    pub node_name: String,
}

impl Default for RuleSettings {
    fn default() -> Self {
        RuleSettings {
            op_password: None,
            rooms: RoomPolicy::default(),
            limits: Some(ChatLimits::default()),
            cluster: false,
            node_name: "local".to_owned(),
        }
    }
}

/// The time an input happens at: the monotonic instant the request limits count with, and the
/// wall clock (ms since the Unix epoch) messages are stamped with.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// For the request limits.
    pub instant: Instant,
    /// For `time` fields, in ms since the Unix epoch.
    pub ms: u64,
}

/// What a node tells the others (netlib's `emit_nodes`), as JSON messages with an `"action"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Note {
    /// All of a node's users: sent when it comes up (`reply: false`), and as the answer to
    /// another's (`reply: true`). The receiver replaces what it knew of that node.
    Hello {
        /// The node's name.
        name: String,
        /// Its users.
        users: Vec<Presence>,
        /// An answer (not to be answered).
        reply: bool,
    },
    /// A user entered a room (a new user enters the default room).
    Joined {
        /// The user.
        id: ChannelId,
        /// Its nickname.
        nick: String,
        /// The room.
        room: String,
    },
    /// A user left a room; `gone` if it left the chat.
    Left {
        /// The user.
        id: ChannelId,
        /// Its nickname.
        nick: String,
        /// The room.
        room: String,
        /// Why.
        reason: String,
        /// It left the chat.
        gone: bool,
    },
    /// A user changed its nickname.
    Renamed {
        /// The user.
        id: ChannelId,
        /// The old nickname.
        from: String,
        /// The new one.
        to: String,
        /// Its room.
        room: String,
    },
    /// An operator kicked a user of the receiving node.
    Kick {
        /// The user.
        target: ChannelId,
        /// The operator's nickname.
        by: String,
        /// The operator's channel.
        by_id: ChannelId,
        /// Why.
        reason: String,
    },
    /// A private message for a user of the receiving node.
    Private {
        /// The sender's channel.
        from: ChannelId,
        /// The sender's nickname.
        from_nick: String,
        /// The recipient's channel.
        to: ChannelId,
        /// The recipient's nickname, as the sender's node knew it.
        to_nick: String,
        /// The text.
        text: String,
        /// When it was sent (ms since the Unix epoch).
        time: u64,
    },
    /// A user's netlib session moved from one node to another ([`Input::Migrated`]), with
    /// its nickname and room; sent by both (the node it left may be dead), the first one
    /// received counts. Quiet where the room stays the same: only its channel changed.
    Moved {
        /// Its channel on the node it left.
        previous: ChannelId,
        /// Its channel now, on the sending node.
        id: ChannelId,
        /// Its nickname.
        nick: String,
        /// Its room.
        room: String,
    },
    /// The answer to a [`Note::Private`] whose recipient had left.
    Undelivered {
        /// The sender's channel.
        sender: ChannelId,
        /// The recipient's nickname.
        to_nick: String,
    },
}

/// A user as a `hello` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// Its channel.
    pub id: ChannelId,
    /// Its nickname.
    pub nick: String,
    /// Its room.
    pub room: String,
}

/// What happened, for [`Rules::handle`].
#[derive(Debug)]
pub enum Input {
    /// A client connected (its channel is open).
    Connected {
        /// Its channel.
        id: ChannelId,
        /// Its address.
        addr: SocketAddr,
    },
    /// A user's netlib session, held by channel `previous` on another node, was resumed here
    /// as channel `id` (netlib's [`migrated`](netlib::ServerHandler::migrated) hook): the
    /// user comes back with its nickname and room, quietly, if this node knew `previous`;
    /// otherwise it starts anonymous in the room it was in.
    Migrated {
        /// Its channel now.
        id: ChannelId,
        /// Its address.
        addr: SocketAddr,
        /// Its channel on the other node.
        previous: ChannelId,
        /// The names netlib moved from `previous` to `id` ([`netlib::Migration::names`]).
        names: Vec<String>,
        /// The netlib rooms `id` was put back in.
        rooms: Vec<String>,
    },
    /// A local user's session moved to another node (netlib's
    /// [`CloseReason::Moved`](netlib::CloseReason::Moved)): no goodbye; this node and the
    /// new one tell the others where it went ([`Note::Moved`]). Where unknown (`to` is
    /// `None`), it leaves as a closed channel does.
    MovedAway {
        /// The user's channel here.
        id: ChannelId,
        /// Its channel on the other node, if known.
        to: Option<ChannelId>,
    },
    /// A request from a local user.
    Request {
        /// The user.
        from: ChannelId,
        /// The request.
        request: Request,
    },
    /// A request that could not be read: refused with `refusal`.
    Bad {
        /// The user.
        from: ChannelId,
        /// The action, if known (`""` otherwise).
        request: String,
        /// The refusal.
        refusal: Refusal,
    },
    /// A local user's connection closed, for `reason` (unless a quit or kick gave one).
    Closed {
        /// The user.
        id: ChannelId,
        /// Why, e.g. `disconnected`.
        reason: String,
    },
    /// The answer to an [`Effect::Claim`].
    Claimed {
        /// The user.
        id: ChannelId,
        /// The answer.
        result: Result<(), ClusterError>,
    },
    /// A note from node `from`.
    Note {
        /// The node.
        from: NodeNumber,
        /// The note.
        note: Note,
    },
    /// A channel of another node is gone.
    Departed {
        /// The channel.
        id: ChannelId,
    },
    /// Another node is gone, with all its users.
    NodeGone {
        /// The node.
        node: NodeNumber,
    },
    /// A local user's nickname was claimed by a user of another node while the cluster's
    /// backplane had lost its data: it is anonymous again.
    NamesLost {
        /// The user.
        id: ChannelId,
    },
    /// The cluster's backplane is reachable (at start, and after an outage).
    Up,
    /// The cluster's backplane is unreachable.
    Down,
    /// A note of an [`Effect::Emit`] could not be handed to the cluster (its backplane is
    /// unreachable): the request behind it is refused.
    Undeliverable {
        /// The note.
        note: Note,
    },
    /// The end of a pump: membership lists and deltas go out.
    Flush,
}

/// What the rules want done.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A message to one channel (of this node, or of another through the adapter).
    Send {
        /// The channel.
        to: ChannelId,
        /// The message.
        msg: ServerMsg<'static>,
    },
    /// A message to every member of a room, on every node.
    Room {
        /// The room.
        room: String,
        /// The message.
        msg: ServerMsg<'static>,
    },
    /// Membership traffic to this node's members of a room but `except`; members that lag
    /// (too much queued) are skipped and get a fresh `players` list once they catch up.
    Notify {
        /// The room.
        room: String,
        /// Left out.
        except: Option<ChannelId>,
        /// The message.
        msg: ServerMsg<'static>,
    },
    /// Puts a local channel in a netlib room (where room messages reach it).
    Join {
        /// The channel.
        id: ChannelId,
        /// The room.
        room: String,
    },
    /// Sends a local channel the last [`SCROLLBACK`] messages of a room, oldest first.
    History {
        /// The channel.
        id: ChannelId,
        /// The room.
        room: String,
    },
    /// Takes a local channel out of a netlib room.
    Leave {
        /// The channel.
        id: ChannelId,
        /// The room.
        room: String,
    },
    /// Claims nickname keys for a channel cluster-wide (all or none); answered with
    /// [`Input::Claimed`].
    Claim {
        /// The channel.
        id: ChannelId,
        /// The keys.
        keys: Vec<String>,
    },
    /// Gives up nickname keys.
    Release {
        /// The channel.
        id: ChannelId,
        /// The keys.
        keys: Vec<String>,
    },
    /// Closes a local channel (after what is queued for it).
    Close {
        /// The channel.
        id: ChannelId,
    },
    /// A note to node `node`, or to every other node (`None`).
    Emit {
        /// The node.
        node: Option<NodeNumber>,
        /// The note.
        note: Note,
    },
}

/// A user of this node. Kept small: 10 000 idle users cost about 2 KB each in all.
#[derive(Debug)]
struct User {
    nick: String,
    /// Shared with the room's entry ([`Room::name`]).
    room: Arc<str>,
    op: bool,
    /// The peer's IP address (operator logins are limited per IP address too).
    ip: IpAddr,
    /// Request budgets, made at the first limited request (an idle user costs nothing).
    limits: Option<Box<UserLimits>>,
}

/// A user of another node.
#[derive(Debug, Clone)]
struct RemoteUser {
    nick: String,
    room: String,
}

#[derive(Debug)]
struct Room {
    /// The room's name, shared by its local members' entries.
    name: Arc<str>,
    /// Members here and on other nodes, in the order they came.
    members: IndexSet<ChannelId>,
    /// Membership changed since the last `players` list (small rooms).
    list_dirty: bool,
    joined: Vec<String>,
    left: Vec<String>,
    renamed: Vec<(String, String)>,
}

/// A membership change, as a medium room's next delta lists it.
#[derive(Debug)]
enum Change {
    Joined(String),
    Left(String),
    Renamed(String, String),
}

/// The chat's state and rules (see the module docs).
#[derive(Debug)]
pub struct Rules {
    settings: RuleSettings,
    users: HashMap<ChannelId, User>,
    remote: HashMap<ChannelId, RemoteUser>,
    /// Nickname keys ([`name_keys`]) of every named user, here and elsewhere.
    nicks: HashMap<String, ChannelId>,
    rooms: HashMap<String, Room>,
    /// Rooms with membership updates to send at the next [`Input::Flush`].
    dirty_rooms: HashSet<String>,
    /// Operator login attempts per IP address.
    op_attempts: AddressAttempts,
    /// Nickname changes waiting for their claim.
    pending_claims: HashMap<ChannelId, String>,
    /// Set by quit or kick: the reason the room is told when the channel closes.
    leaving: HashMap<ChannelId, String>,
    /// Other nodes' names, from their `hello`.
    nodes: HashMap<NodeNumber, String>,
    /// Whether the cluster's backplane is reachable, as its last `Up` or `Down` said.
    up: bool,
}

/// An owned string for a [`ServerMsg`] field.
fn o(s: &str) -> Cow<'static, str> {
    Cow::Owned(s.to_owned())
}

/// Refused because the cluster's backplane is unreachable.
fn unavailable() -> Refusal {
    Refusal::new(
        "cluster-unavailable",
        "the chat cluster is unreachable; try again shortly (messages to your room still work)",
    )
}

/// Page `page` (from 1; `None` is 1) of `all`, [`PAGE_SIZE`] entries a page, with the page
/// number, the number of pages (at least 1) and the total. A page past the end is empty.
fn one_page<T>(mut all: Vec<T>, page: Option<usize>) -> (Vec<T>, usize, usize, usize) {
    let total = all.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = page.unwrap_or(1).max(1);
    let start = (page - 1).saturating_mul(PAGE_SIZE).min(total);
    let end = (start + PAGE_SIZE).min(total);
    all.truncate(end);
    (all.split_off(start), page, pages, total)
}

/// The first `n` items of `v`, removed.
fn drain_up_to<T>(v: &mut Vec<T>, n: usize) -> Vec<T> {
    v.drain(..n.min(v.len())).collect()
}

/// A quit or kick reason as relayed: trimmed, at most [`MAX_REASON_CHARS`] characters; empty
/// (as if none was given) when it has nothing visible in it, which would show as `()`.
fn cap_reason(reason: &str) -> String {
    let reason = reason.trim();
    if !crate::sanitize::has_visible(reason) {
        return String::new();
    }
    match reason.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => format!("{}...", &reason[..cut]),
        None => reason.to_owned(),
    }
}

/// Where effects go while one input is handled.
type Out = Vec<Effect>;

impl Rules {
    /// Rules with `settings` and no user.
    pub fn new(settings: RuleSettings) -> Self {
        Rules {
            // Until the adapter says otherwise (`Down`): it is up when the server starts, or
            // reports `Down` first.
            up: true,
            settings,
            users: HashMap::new(),
            remote: HashMap::new(),
            nicks: HashMap::new(),
            rooms: HashMap::new(),
            dirty_rooms: HashSet::new(),
            op_attempts: AddressAttempts::default(),
            pending_claims: HashMap::new(),
            leaving: HashMap::new(),
            nodes: HashMap::new(),
        }
    }

    /// Handles `input` at `now`; appends what is to be done to `out`, in order.
    pub fn handle(&mut self, now: Now, input: Input, out: &mut Vec<Effect>) {
        match input {
            Input::Connected { id, addr } => self.connected(now, out, id, addr),
            Input::Migrated {
                id,
                addr,
                previous,
                names,
                rooms,
            } => self.migrated(now, out, id, addr, previous, names, rooms),
            Input::MovedAway { id, to } => self.moved_away(now, out, id, to),
            Input::Request { from, request } => {
                if self.users.contains_key(&from) {
                    self.request(now, out, from, request);
                }
            }
            Input::Bad {
                from,
                request,
                refusal,
            } => self.refuse(out, from, &request, refusal),
            Input::Closed { id, reason } => self.closed(now, out, id, reason),
            Input::Claimed { id, result } => self.claimed(now, out, id, result),
            Input::Note { from, note } => self.note(now, out, from, note),
            Input::Departed { id } => {
                let reason = format!("connection lost: {} is gone", self.node_name(id.node()));
                self.drop_remote(now, out, id, &reason);
            }
            Input::NodeGone { node } => {
                let reason = format!("connection lost: {} is gone", self.node_name(node));
                log::info!("{} left the cluster", self.node_name(node));
                let ids: Vec<ChannelId> = self
                    .remote
                    .keys()
                    .copied()
                    .filter(|id| id.node() == node)
                    .collect();
                for id in ids {
                    self.drop_remote(now, out, id, &reason);
                }
                self.nodes.remove(&node);
            }
            Input::Up => {
                self.up = true;
                let note = self.hello(false);
                out.push(Effect::Emit { node: None, note });
            }
            Input::Down => self.up = false,
            Input::NamesLost { id } => {
                let Some(nick) = self.users.get(&id).map(|u| u.nick.clone()) else {
                    return;
                };
                if nick == ANONYMOUS {
                    return;
                }
                let r = Refusal::new(
                    "nickname-taken",
                    format!(
                        "your nickname {nick:?} was taken on another node while the cluster was \
                         unreachable; you are {ANONYMOUS} again"
                    ),
                );
                self.refuse(out, id, "nickname", r);
                self.apply_rename(now, out, id, ANONYMOUS.to_owned());
            }
            Input::Undeliverable { note } => match note {
                Note::Private { from, .. } => self.refuse(out, from, "private", unavailable()),
                Note::Kick { by_id, .. } => self.refuse(out, by_id, "kick", unavailable()),
                _ => {}
            },
            Input::Flush => self.flush(now, out),
        }
    }

    /// Number of users connected to this node.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Number of rooms with a member, on this node or another.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// The room local user `id` is in.
    pub fn room_of(&self, id: ChannelId) -> Option<&str> {
        self.users.get(&id).map(|u| &*u.room)
    }

    /// The `players` list of `room` (sorted nicknames, on every node), if it exists.
    pub fn players(&self, room: &str) -> Option<ServerMsg<'static>> {
        self.rooms.contains_key(room).then(|| ServerMsg::Players {
            players: self.member_nicks(room),
            room: o(room),
        })
    }

    fn node_name(&self, node: NodeNumber) -> String {
        match self.nodes.get(&node) {
            Some(name) => format!("node {name}"),
            None => format!("node #{node}"),
        }
    }

    fn hello(&self, reply: bool) -> Note {
        Note::Hello {
            name: self.settings.node_name.clone(),
            users: self
                .users
                .iter()
                .map(|(&id, u)| Presence {
                    id,
                    nick: u.nick.clone(),
                    room: u.room.to_string(),
                })
                .collect(),
            reply,
        }
    }

    fn tier(&self, size: usize) -> Tier {
        self.settings.rooms.tier(size)
    }

    fn refuse(&self, out: &mut Out, id: ChannelId, request: &str, r: Refusal) {
        let who = self.users.get(&id).map_or(ANONYMOUS, |u| u.nick.as_str());
        log::debug!(
            "refused {request:?} from {who} ({id}): {} ({})",
            r.text,
            r.code
        );
        out.push(Effect::Send {
            to: id,
            msg: ServerMsg::Refused {
                request: o(request),
                code: Cow::Borrowed(r.code),
                text: Cow::Owned(r.text),
            },
        });
    }

    fn send(out: &mut Out, to: ChannelId, msg: ServerMsg<'static>) {
        out.push(Effect::Send { to, msg });
    }

    fn notify(
        &mut self,
        out: &mut Out,
        room: &str,
        except: Option<ChannelId>,
        msg: ServerMsg<'static>,
    ) {
        out.push(Effect::Notify {
            room: room.to_owned(),
            except,
            msg,
        });
    }

    fn mark_dirty(&mut self, room: &str) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.list_dirty = true;
            self.dirty_rooms.insert(room.to_owned());
        }
    }

    // ------------------------------------------------------------ requests

    fn request(&mut self, now: Now, out: &mut Out, from: ChannelId, request: Request) {
        let limited = |kind: Kind, action: &'static str| Some((kind, action));
        let budget = match &request {
            Request::Nickname(_) => limited(Kind::Rename, "nickname"),
            Request::Message(_) => limited(Kind::Message, "message"),
            Request::Private(_) => limited(Kind::Private, "private"),
            Request::Who(_) => limited(Kind::Query, "who"),
            Request::Rooms(_) => limited(Kind::Query, "rooms"),
            Request::Join(_) => limited(Kind::Join, "join"),
            Request::Part => limited(Kind::Join, "part"),
            Request::Op(_) | Request::Kick(_) | Request::Quit(_) | Request::Help => None,
        };
        if let Some((kind, action)) = budget {
            if !self.allow(now, out, from, kind, action) {
                return;
            }
        }
        match request {
            Request::Nickname(m) => self.set_nickname(now, out, from, m),
            Request::Message(m) => self.say(now, out, from, m),
            Request::Private(m) => self.private(now, out, from, m),
            Request::Who(m) => self.who(out, from, m),
            Request::Rooms(m) => self.list_rooms(out, from, m),
            Request::Join(m) => self.join(now, out, from, m),
            Request::Part => self.part(now, out, from),
            Request::Op(m) => self.op(now, out, from, m),
            Request::Kick(m) => self.kick(now, out, from, m),
            Request::Quit(m) => self.quit(out, from, m),
            Request::Help => {
                let actions = ACTIONS.iter().map(|a| Cow::Borrowed(*a)).collect();
                Self::send(out, from, ServerMsg::Help { actions });
            }
        }
    }

    /// `id`'s budgets (made full on first use), or `None` when limits are off.
    fn user_limits(&mut self, id: ChannelId, now: Instant) -> Option<&mut UserLimits> {
        let settings = self.settings.limits?;
        let user = self.users.get_mut(&id)?;
        Some(
            user.limits
                .get_or_insert_with(|| Box::new(UserLimits::new(&settings, now))),
        )
    }

    /// Whether `id` may make a request of `kind` now; if not, it is refused (`rate-limited`).
    fn allow(&mut self, now: Now, out: &mut Out, id: ChannelId, kind: Kind, request: &str) -> bool {
        let Some(limits) = self.user_limits(id, now.instant) else {
            return true;
        };
        match limits.take(kind, now.instant) {
            Ok(()) => true,
            Err(r) => {
                self.refuse(out, id, request, r);
                false
            }
        }
    }

    fn connected(&mut self, now: Now, out: &mut Out, id: ChannelId, addr: SocketAddr) {
        log::info!("{id} connected from {addr}");
        self.connected_in(now, out, id, addr, DEFAULT_ROOM);
    }

    /// A new anonymous user `id` enters `room`.
    fn connected_in(
        &mut self,
        now: Now,
        out: &mut Out,
        id: ChannelId,
        addr: SocketAddr,
        room: &str,
    ) {
        self.users.insert(
            id,
            User {
                nick: ANONYMOUS.to_owned(),
                room: Arc::from(""),
                op: false,
                ip: addr.ip(),
                limits: None,
            },
        );
        self.enter(now, out, id, room);
    }

    /// See [`Input::Migrated`].
    #[allow(clippy::too_many_arguments)] // one input's fields
    fn migrated(
        &mut self,
        now: Now,
        out: &mut Out,
        id: ChannelId,
        addr: SocketAddr,
        previous: ChannelId,
        names: Vec<String>,
        rooms: Vec<String>,
    ) {
        // The directory's entry: `previous`, or `id` if the old node's note came first. Its
        // nickname is the user's only if netlib moved the nickname's claim with the session
        // (not if the old node had let it go, e.g. found dead already).
        let held = |u: &RemoteUser| {
            u.nick == ANONYMOUS || name_keys(&u.nick).iter().all(|k| names.contains(k))
        };
        let known = [previous, id]
            .into_iter()
            .find(|k| self.remote.get(k).is_some_and(held))
            .and_then(|k| self.remote.remove(&k));
        let Some(u) = known else {
            // Never learnt (e.g. this node came up after the other died), or its nickname
            // did not travel: anonymous, in the room the session was in.
            log::info!("{id} resumed the session of {previous} from {addr}, as a new user");
            for listed in [previous, id] {
                self.drop_remote(now, out, listed, "reconnected");
            }
            if !names.is_empty() {
                out.push(Effect::Release {
                    id,
                    keys: names.clone(),
                });
            }
            let room = rooms
                .first()
                .map_or(DEFAULT_ROOM, String::as_str)
                .to_owned();
            for other in rooms.iter().skip(1) {
                out.push(Effect::Leave {
                    id,
                    room: other.clone(),
                });
            }
            return self.connected_in(now, out, id, addr, &room);
        };
        log::info!(
            "{id} ({}) resumed the session of {previous} from {addr}",
            u.nick
        );
        let keys = name_keys(&u.nick);
        let extra: Vec<String> = names.into_iter().filter(|n| !keys.contains(n)).collect();
        if !extra.is_empty() {
            // E.g. a rename the old node had claimed but not made yet.
            out.push(Effect::Release { id, keys: extra });
        }
        self.forget_keys(previous, &u.nick);
        self.learn_keys(id, &u.nick);
        let room = self.room_entry(&u.room);
        room.members.swap_remove(&previous);
        room.members.insert(id);
        let name = room.name.clone();
        self.users.insert(
            id,
            User {
                nick: u.nick.clone(),
                room: name,
                // An operator logs in again.
                op: false,
                ip: addr.ip(),
                limits: None,
            },
        );
        for other in rooms.iter().filter(|r| **r != u.room) {
            out.push(Effect::Leave {
                id,
                room: other.clone(),
            });
        }
        if !rooms.contains(&u.room) {
            out.push(Effect::Join {
                id,
                room: u.room.clone(),
            });
        }
        // The old node says so too, if it is alive: the first note wins, the other is a
        // no-op.
        out.push(Effect::Emit {
            node: None,
            note: Note::Moved {
                previous,
                id,
                nick: u.nick,
                room: u.room,
            },
        });
    }

    /// See [`Input::MovedAway`]: its entry here becomes the new channel's, quietly, and the
    /// other nodes are told ([`Note::Moved`]). Where it went unknown, it leaves as if closed.
    fn moved_away(&mut self, now: Now, out: &mut Out, id: ChannelId, to: Option<ChannelId>) {
        let Some(to) = to else {
            return self.closed(now, out, id, "moved to another node".to_owned());
        };
        self.pending_claims.remove(&id);
        self.leaving.remove(&id);
        let Some(u) = self.users.remove(&id) else {
            return; // the new node's note came first
        };
        log::info!("{id} ({}) moved to {to}", u.nick);
        let room = u.room.to_string();
        self.forget_keys(id, &u.nick);
        if let Some(r) = self.rooms.get_mut(&room) {
            r.members.swap_remove(&id);
        }
        if self.remote.contains_key(&to) {
            return;
        }
        self.list_remote(to, &u.nick, &room);
        out.push(Effect::Emit {
            node: None,
            note: Note::Moved {
                previous: id,
                id: to,
                nick: u.nick,
                room,
            },
        });
    }

    /// [`Note::Moved`] from node `from`: `previous` (here or elsewhere) is `id` now.
    fn moved(
        &mut self,
        now: Now,
        out: &mut Out,
        from: NodeNumber,
        note: Presence,
        previous: ChannelId,
    ) {
        let Presence { id, nick, room } = note;
        // Said by the node it came to, or by the node it left while it still lists the user
        // (a late note must not bring back a user gone since); the second of the two is a
        // no-op.
        let listed = self.users.contains_key(&previous) || self.remote.contains_key(&previous);
        if !(id.node() == from || previous.node() == from && listed)
            || self.users.contains_key(&id)
            || self.remote.contains_key(&id)
        {
            return;
        }
        let was = match self.users.remove(&previous) {
            // Ours still (its channel closes soon): it goes without a goodbye.
            Some(u) => {
                self.pending_claims.remove(&previous);
                self.leaving.remove(&previous);
                Some((u.nick, u.room.to_string()))
            }
            None => self.remote.remove(&previous).map(|u| (u.nick, u.room)),
        };
        if let Some((old, _)) = &was {
            self.forget_keys(previous, old);
        }
        if let Some(r) = was.as_ref().and_then(|(_, r)| self.rooms.get_mut(r)) {
            r.members.swap_remove(&previous);
        }
        self.list_remote(id, &nick, &room);
        match was {
            Some((old, r)) if r == room => {
                if old != nick {
                    self.announce_renamed(now, out, &room, (&old, &nick), id, false);
                }
            }
            Some((old, r)) => {
                self.announce_left(now, out, &r, &old, previous, "moved");
                self.announce_joined(now, out, &room, &nick, id);
            }
            None => self.announce_joined(now, out, &room, &nick, id),
        }
    }

    fn closed(&mut self, now: Now, out: &mut Out, id: ChannelId, reason: String) {
        let why = self.leaving.remove(&id).unwrap_or(reason);
        self.leave(now, out, id, &why, true);
        self.pending_claims.remove(&id);
        if let Some(user) = self.users.remove(&id) {
            log::info!("{id} ({}) disconnected: {why}", user.nick);
            self.forget_keys(id, &user.nick);
            // The adapter releases its claims as the channel closes.
        }
    }

    /// Forgets `nick`'s keys if `id` holds them.
    fn forget_keys(&mut self, id: ChannelId, nick: &str) {
        for k in name_keys(nick) {
            if self.nicks.get(&k) == Some(&id) {
                self.nicks.remove(&k);
            }
        }
    }

    fn learn_keys(&mut self, id: ChannelId, nick: &str) {
        if nick != ANONYMOUS {
            for k in name_keys(nick) {
                self.nicks.insert(k, id);
            }
        }
    }

    fn set_nickname(&mut self, now: Now, out: &mut Out, id: ChannelId, m: SetNickname) {
        let new = match check_name("nickname", &m.nickname) {
            Ok(name) => name,
            Err(r) => return self.refuse(out, id, "nickname", r),
        };
        let keys = name_keys(&new);
        if RESERVED_NICKNAMES
            .iter()
            .any(|r| name_keys(r).iter().any(|k| keys.contains(k)))
        {
            let r = Refusal::new(
                "nickname-reserved",
                format!("{new:?} is reserved (users without a nickname, and the line protocol's [server] and [you -> ...])"),
            );
            return self.refuse(out, id, "nickname", r);
        }
        let taken = keys
            .iter()
            .find_map(|k| self.nicks.get(k))
            .is_some_and(|&owner| owner != id);
        if taken {
            let r = Refusal::new("nickname-taken", format!("nickname {new:?} is taken"));
            return self.refuse(out, id, "nickname", r);
        }
        if !self.settings.cluster {
            return self.apply_rename(now, out, id, new);
        }
        // Cluster-wide: claimed atomically through the adapter first; renamed when the answer
        // comes (`claimed`).
        if !self.up {
            return self.refuse(out, id, "nickname", unavailable());
        }
        if self.pending_claims.contains_key(&id) {
            let r = Refusal::new("rate-limited", "a nickname change is already under way");
            return self.refuse(out, id, "nickname", r);
        }
        let mut keys = keys.to_vec();
        keys.dedup();
        out.push(Effect::Claim { id, keys });
        self.pending_claims.insert(id, new);
    }

    fn claimed(
        &mut self,
        now: Now,
        out: &mut Out,
        id: ChannelId,
        result: Result<(), ClusterError>,
    ) {
        let Some(new) = self.pending_claims.remove(&id) else {
            return;
        };
        if !self.users.contains_key(&id) {
            return;
        }
        match result {
            Ok(()) => {
                let old = self.users[&id].nick.clone();
                if old != ANONYMOUS {
                    let old_keys = name_keys(&old);
                    let new_keys = name_keys(&new);
                    let mut keys: Vec<String> = old_keys
                        .into_iter()
                        .filter(|k| !new_keys.contains(k))
                        .collect();
                    keys.dedup();
                    if !keys.is_empty() {
                        out.push(Effect::Release { id, keys });
                    }
                }
                // Taken here meanwhile by a user of another node whose note came first: the
                // claim says the name is this user's.
                self.apply_rename(now, out, id, new);
            }
            Err(ClusterError::Taken) => {
                let r = Refusal::new("nickname-taken", format!("nickname {new:?} is taken"));
                self.refuse(out, id, "nickname", r);
            }
            Err(_) => self.refuse(out, id, "nickname", unavailable()),
        }
    }

    /// `id` is `new` from now on (checked, and claimed cluster-wide if in a cluster).
    fn apply_rename(&mut self, now: Now, out: &mut Out, id: ChannelId, new: String) {
        let Some(user) = self.users.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut user.nick, new.clone());
        let room = user.room.clone();
        self.forget_keys(id, &old);
        self.learn_keys(id, &new);
        log::info!("{id}: {old} is now known as {new}");
        self.announce_renamed(now, out, &room, (&old, &new), id, true);
        out.push(Effect::Emit {
            node: None,
            note: Note::Renamed {
                id,
                from: old,
                to: new,
                room: room.to_string(),
            },
        });
    }

    fn say(&mut self, now: Now, out: &mut Out, id: ChannelId, m: Say) {
        if let Err(r) = check_message(&m.message) {
            return self.refuse(out, id, "message", r);
        }
        let user = &self.users[&id];
        out.push(Effect::Room {
            room: user.room.to_string(),
            msg: ServerMsg::Message {
                message: Cow::Owned(m.message),
                who: o(&user.nick),
                room: o(&user.room),
                time: now.ms,
            },
        });
    }

    fn private(&mut self, now: Now, out: &mut Out, id: ChannelId, m: SayPrivately) {
        if let Err(r) = check_message(&m.message) {
            return self.refuse(out, id, "private", r);
        }
        let Some(to) = self.named(&m.to) else {
            let r = Refusal::new("unknown-nickname", format!("nobody is called {:?}", m.to));
            return self.refuse(out, id, "private", r);
        };
        let from_nick = self.users[&id].nick.clone();
        let to_nick = match (self.users.get(&to), self.remote.get(&to)) {
            (Some(u), _) => u.nick.clone(),
            (None, Some(_)) if !self.up => return self.refuse(out, id, "private", unavailable()),
            (None, Some(u)) => {
                // On another node: a note to it, which answers `undelivered` if the user left
                // meanwhile.
                let to_nick = u.nick.clone();
                out.push(Effect::Emit {
                    node: Some(to.node()),
                    note: Note::Private {
                        from: id,
                        from_nick: from_nick.clone(),
                        to,
                        to_nick: to_nick.clone(),
                        text: m.message.clone(),
                        time: now.ms,
                    },
                });
                let echo = ServerMsg::Private {
                    message: Cow::Owned(m.message),
                    who: Cow::Owned(from_nick),
                    to: Cow::Owned(to_nick),
                    time: now.ms,
                    echo: true,
                };
                return Self::send(out, id, echo);
            }
            // named() finds only users this node knows.
            (None, None) => return,
        };
        let mut msg = ServerMsg::Private {
            message: Cow::Owned(m.message),
            who: Cow::Owned(from_nick),
            to: Cow::Owned(to_nick),
            time: now.ms,
            echo: false,
        };
        Self::send(out, to, msg.clone());
        if to != id {
            if let ServerMsg::Private { echo, .. } = &mut msg {
                *echo = true;
            }
            Self::send(out, id, msg);
        }
    }

    /// The user, here or on another node, whose nickname has `nick`'s key. A key left behind
    /// by a user this node no longer knows (its note was lost) is dropped.
    fn named(&mut self, nick: &str) -> Option<ChannelId> {
        let key = name_key(nick);
        let id = *self.nicks.get(&key)?;
        if self.users.contains_key(&id) || self.remote.contains_key(&id) {
            return Some(id);
        }
        self.nicks.remove(&key);
        None
    }

    fn who(&self, out: &mut Out, id: ChannelId, m: Who) {
        let entry = |nick: &str, room: &str| WhoEntry {
            nickname: nick.to_owned(),
            room: room.to_owned(),
        };
        let mut users: Vec<WhoEntry> = match &m.room {
            None => self
                .users
                .values()
                .map(|u| entry(&u.nick, &u.room))
                .chain(self.remote.values().map(|u| entry(&u.nick, &u.room)))
                .collect(),
            Some(room) => match self.rooms.get(room) {
                Some(r) => r
                    .members
                    .iter()
                    .filter_map(|m| self.nick_of(*m))
                    .map(|n| entry(n, room))
                    .collect(),
                None => {
                    let r = Refusal::new("unknown-room", format!("there is no room {room:?}"));
                    return self.refuse(out, id, "who", r);
                }
            },
        };
        users.sort_by_key(|u| (u.nickname.to_lowercase(), u.room.clone()));
        let (users, page, pages, total) = one_page(users, m.page);
        let msg = ServerMsg::Who {
            users,
            room: m.room.map(Cow::Owned),
            page,
            pages,
            total,
        };
        Self::send(out, id, msg);
    }

    fn list_rooms(&self, out: &mut Out, id: ChannelId, m: Rooms) {
        let mut rooms: Vec<RoomEntry> = self
            .rooms
            .iter()
            .map(|(name, r)| RoomEntry {
                name: name.clone(),
                members: r.members.len(),
            })
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        let (rooms, page, pages, total) = one_page(rooms, m.page);
        let msg = ServerMsg::Rooms {
            rooms,
            page,
            pages,
            total,
        };
        Self::send(out, id, msg);
    }

    fn join(&mut self, now: Now, out: &mut Out, id: ChannelId, m: Join) {
        let room = match check_name("room name", &m.room) {
            Ok(room) => room,
            Err(r) => return self.refuse(out, id, "join", r),
        };
        if *self.users[&id].room == *room {
            let r = Refusal::new("already-in-room", format!("you are in {room:?} already"));
            return self.refuse(out, id, "join", r);
        }
        let reason = format!("went to {room}");
        self.leave(now, out, id, &reason, false);
        self.enter(now, out, id, &room);
    }

    fn part(&mut self, now: Now, out: &mut Out, id: ChannelId) {
        let room = self.users[&id].room.to_string();
        if room == DEFAULT_ROOM {
            let r = Refusal::new(
                "not-in-a-room",
                format!("you are in the default room {DEFAULT_ROOM:?}; it cannot be left"),
            );
            return self.refuse(out, id, "part", r);
        }
        self.leave(now, out, id, &format!("left {room}"), false);
        self.enter(now, out, id, DEFAULT_ROOM);
    }

    fn op(&mut self, now: Now, out: &mut Out, id: ChannelId, m: Op) {
        let ip = self.users.get(&id).map(|u| u.ip);
        if let Some(limits) = self.settings.limits {
            let mut attempts = std::mem::take(&mut self.op_attempts);
            let verdict = self
                .user_limits(id, now.instant)
                .map(|user_limits| attempts.take(&limits, user_limits, ip, now.instant));
            self.op_attempts = attempts;
            if let Some(Err(r)) = verdict {
                return self.refuse(out, id, "op", r);
            }
        }
        // Constant time in the password's bytes (the `subtle` crate): a guesser learns nothing
        // from how long a wrong guess takes, beyond whether its length is right.
        let right = |p: &String| bool::from(p.as_bytes().ct_eq(m.password.as_bytes()));
        match &self.settings.op_password {
            None => {
                let r = Refusal::new("op-disabled", "this server has no operator password");
                self.refuse(out, id, "op", r)
            }
            Some(p) if right(p) => {
                let user = self.users.get_mut(&id).expect("user");
                user.op = true;
                log::info!("{id}: {} is now an operator", user.nick);
                Self::send(out, id, ServerMsg::Op { granted: true });
            }
            Some(_) => {
                let r = Refusal::new("bad-password", "wrong operator password");
                self.refuse(out, id, "op", r)
            }
        }
    }

    fn kick(&mut self, now: Now, out: &mut Out, id: ChannelId, m: Kick) {
        if !self.users[&id].op {
            let r = Refusal::new(
                "not-operator",
                "only operators can kick; authenticate with op first",
            );
            return self.refuse(out, id, "kick", r);
        }
        let by = self.users[&id].nick.clone();
        let reason = m
            .reason
            .as_deref()
            .map(cap_reason)
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "no reason given".to_owned());
        let Some(target) = self.named(&m.nickname) else {
            let r = Refusal::new(
                "unknown-nickname",
                format!("nobody is called {:?}", m.nickname),
            );
            return self.refuse(out, id, "kick", r);
        };
        if self.users.contains_key(&target) {
            return self.kick_local(now, out, target, &by, &reason);
        }
        if !self.up {
            return self.refuse(out, id, "kick", unavailable());
        }
        log::info!(
            "{by} kicked {} on {}: {reason}",
            m.nickname,
            self.node_name(target.node())
        );
        out.push(Effect::Emit {
            node: Some(target.node()),
            note: Note::Kick {
                target,
                by,
                by_id: id,
                reason,
            },
        });
    }

    /// Kicks local user `target` on behalf of operator `by` (here or on another node).
    fn kick_local(&mut self, now: Now, out: &mut Out, target: ChannelId, by: &str, reason: &str) {
        let Some(victim) = self.users.get_mut(&target) else {
            return;
        };
        log::info!("{by} kicked {} ({target}): {reason}", victim.nick);
        self.leaving
            .insert(target, format!("kicked by {by}: {reason}"));
        let msg = ServerMsg::Kicked {
            by: o(by),
            reason: o(reason),
            time: now.ms,
        };
        Self::send(out, target, msg);
        out.push(Effect::Close { id: target });
    }

    fn quit(&mut self, out: &mut Out, id: ChannelId, m: Quit) {
        let reason = match m.reason.as_deref().map(cap_reason) {
            Some(r) if !r.is_empty() => format!("quit: {r}"),
            _ => "quit".to_owned(),
        };
        self.leaving.insert(id, reason);
        out.push(Effect::Close { id });
    }

    // ------------------------------------------------------------ rooms

    fn nick_of(&self, id: ChannelId) -> Option<&str> {
        match self.users.get(&id) {
            Some(u) => Some(&u.nick),
            None => self.remote.get(&id).map(|u| u.nick.as_str()),
        }
    }

    fn member_nicks(&self, room: &str) -> Vec<Cow<'static, str>> {
        let Some(r) = self.rooms.get(room) else {
            return Vec::new();
        };
        let mut v: Vec<Cow<'static, str>> = r
            .members
            .iter()
            .filter_map(|&m| self.nick_of(m).map(o))
            .collect();
        v.sort_unstable_by_key(|n| n.to_lowercase());
        v
    }

    /// Room `name`, made if there is none.
    fn room_entry(&mut self, name: &str) -> &mut Room {
        if !self.rooms.contains_key(name) {
            let room = Room {
                name: Arc::from(name),
                members: IndexSet::new(),
                list_dirty: false,
                joined: Vec::new(),
                left: Vec::new(),
                renamed: Vec::new(),
            };
            self.rooms.insert(name.to_owned(), room);
        }
        self.rooms.get_mut(name).expect("made")
    }

    /// Local user `id` enters `room`.
    fn enter(&mut self, now: Now, out: &mut Out, id: ChannelId, room_name: &str) {
        let nick = self.users[&id].nick.clone();
        let room = self.room_entry(room_name);
        room.members.insert(id);
        let size = room.members.len();
        let name = room.name.clone();
        self.users.get_mut(&id).expect("user").room = name;
        out.push(Effect::Join {
            id,
            room: room_name.to_owned(),
        });
        self.announce_joined(now, out, room_name, &nick, id);
        if self.tier(size) == Tier::Deltas {
            let players = self.member_nicks(room_name);
            let msg = ServerMsg::Players {
                players,
                room: o(room_name),
            };
            Self::send(out, id, msg);
        }
        let welcome = ServerMsg::Welcome {
            nickname: o(&nick),
            id,
            room: o(room_name),
            members: size,
            time: now.ms,
        };
        Self::send(out, id, welcome);
        out.push(Effect::History {
            id,
            room: room_name.to_owned(),
        });
        out.push(Effect::Emit {
            node: None,
            note: Note::Joined {
                id,
                nick,
                room: room_name.to_owned(),
            },
        });
    }

    /// Local user `id` leaves its room: for another one, or the chat (`gone`).
    fn leave(&mut self, now: Now, out: &mut Out, id: ChannelId, reason: &str, gone: bool) {
        let Some(user) = self.users.get(&id) else {
            return;
        };
        let (nick, room_name) = (user.nick.clone(), user.room.to_string());
        let Some(room) = self.rooms.get_mut(&room_name) else {
            return;
        };
        room.members.swap_remove(&id);
        if !gone {
            out.push(Effect::Leave {
                id,
                room: room_name.clone(),
            });
        }
        self.announce_left(now, out, &room_name, &nick, id, reason);
        out.push(Effect::Emit {
            node: None,
            note: Note::Left {
                id,
                nick,
                room: room_name,
                reason: reason.to_owned(),
                gone,
            },
        });
    }

    /// Membership traffic for `nick` (channel `id`, here or elsewhere) having entered
    /// `room_name`, by the room's tier.
    fn announce_joined(
        &mut self,
        now: Now,
        out: &mut Out,
        room_name: &str,
        nick: &str,
        id: ChannelId,
    ) {
        let size = self.rooms[room_name].members.len();
        let notice = ServerMsg::Joined {
            nickname: o(nick),
            id,
            room: o(room_name),
            time: now.ms,
        };
        let change = Change::Joined(nick.to_owned());
        self.announce(out, room_name, size, (notice, Some(id)), change, None);
    }

    /// Membership traffic for `nick` having left `room_name` (already removed); an empty room
    /// other than the default one is forgotten.
    fn announce_left(
        &mut self,
        now: Now,
        out: &mut Out,
        room_name: &str,
        nick: &str,
        id: ChannelId,
        reason: &str,
    ) {
        let Some(room) = self.rooms.get(room_name) else {
            return;
        };
        let size = room.members.len();
        if size == 0 && room_name != DEFAULT_ROOM {
            self.rooms.remove(room_name);
            self.dirty_rooms.remove(room_name);
            return;
        }
        let notice = ServerMsg::Left {
            nickname: o(nick),
            id,
            room: o(room_name),
            reason: o(reason),
            time: now.ms,
        };
        let change = Change::Left(nick.to_owned());
        self.announce(out, room_name, size + 1, (notice, None), change, None);
    }

    /// Membership traffic for a rename in `room_name`; `own` if the renamed user is local (it
    /// is told in every tier).
    fn announce_renamed(
        &mut self,
        now: Now,
        out: &mut Out,
        room_name: &str,
        (old, new): (&str, &str),
        id: ChannelId,
        own: bool,
    ) {
        let size = self.rooms.get(room_name).map_or(0, |r| r.members.len());
        let notice = ServerMsg::Renamed {
            from: o(old),
            to: o(new),
            id,
            room: o(room_name),
            time: now.ms,
        };
        let change = Change::Renamed(old.to_owned(), new.to_owned());
        let own = own.then_some(id);
        self.announce(out, room_name, size, (notice, None), change, own);
    }

    /// One membership change in `room_name`, a room of `size` members for its tier: small
    /// rooms get `notice` (but for the channel it names) and a fresh list at the next flush;
    /// medium rooms get `change` in the next delta; `own`, the local user it is about, gets
    /// `notice` in every tier but the small one (where the notice reaches it anyway).
    fn announce(
        &mut self,
        out: &mut Out,
        room_name: &str,
        size: usize,
        (notice, except): (ServerMsg<'static>, Option<ChannelId>),
        change: Change,
        own: Option<ChannelId>,
    ) {
        let tier = self.tier(size);
        if tier == Tier::FullList {
            self.notify(out, room_name, except, notice);
            return self.mark_dirty(room_name);
        }
        if let Some(own) = own {
            Self::send(out, own, notice);
        }
        if tier == Tier::Deltas {
            let Some(room) = self.rooms.get_mut(room_name) else {
                return;
            };
            match change {
                Change::Joined(nick) => room.joined.push(nick),
                Change::Left(nick) => room.left.push(nick),
                Change::Renamed(old, new) => room.renamed.push((old, new)),
            }
            self.dirty_rooms.insert(room_name.to_owned());
        }
    }

    /// Membership lists and deltas of the rooms that changed.
    fn flush(&mut self, now: Now, out: &mut Out) {
        for name in std::mem::take(&mut self.dirty_rooms) {
            let Some(room) = self.rooms.get_mut(&name) else {
                continue;
            };
            let (mut joined, mut left, mut renamed) = (
                std::mem::take(&mut room.joined),
                std::mem::take(&mut room.left),
                std::mem::take(&mut room.renamed),
            );
            let list_dirty = std::mem::take(&mut room.list_dirty);
            let count = room.members.len();
            let changed =
                list_dirty || !joined.is_empty() || !left.is_empty() || !renamed.is_empty();
            if !changed {
                continue;
            }
            match self.tier(count) {
                Tier::FullList => {
                    let players = self.member_nicks(&name);
                    let msg = ServerMsg::Players {
                        players,
                        room: o(&name),
                    };
                    self.notify(out, &name, None, msg);
                }
                Tier::Deltas if joined.is_empty() && left.is_empty() && renamed.is_empty() => {
                    // The list changed with no news to tell (another node's users reloaded
                    // after an outage): one fresh list instead of a delta.
                    let players = self.member_nicks(&name);
                    let msg = ServerMsg::Players {
                        players,
                        room: o(&name),
                    };
                    self.notify(out, &name, None, msg);
                }
                Tier::Deltas => {
                    // Split so that no delta comes near the frame limit (32-character names:
                    // a chunk is at most about 40 KB).
                    while !(joined.is_empty() && left.is_empty() && renamed.is_empty()) {
                        let j: Vec<String> = drain_up_to(&mut joined, DELTA_CHUNK);
                        let l: Vec<String> = drain_up_to(&mut left, DELTA_CHUNK - j.len());
                        let r = drain_up_to(&mut renamed, (DELTA_CHUNK - j.len() - l.len()) / 2);
                        let msg = ServerMsg::Members {
                            room: o(&name),
                            count,
                            joined: j,
                            left: l,
                            renamed: r,
                            time: now.ms,
                        };
                        self.notify(out, &name, None, msg);
                    }
                }
                Tier::Quiet => {}
            }
        }
    }

    // ------------------------------------------------------------ other nodes

    fn note(&mut self, now: Now, out: &mut Out, from: NodeNumber, note: Note) {
        if !self.settings.cluster || from == 0 {
            return;
        }
        match note {
            Note::Hello { name, users, reply } => {
                log::info!(
                    "node {name} (#{from}) is in the cluster with {} users",
                    users.len()
                );
                self.nodes.insert(from, name);
                self.replace_node(from, users);
                if !reply {
                    let note = self.hello(true);
                    out.push(Effect::Emit {
                        node: Some(from),
                        note,
                    });
                }
            }
            Note::Joined { id, nick, room } => {
                if id.node() != from {
                    return;
                }
                // A room change is a `left` then a `joined`; a first `joined` is a new user. A
                // user known elsewhere (a note was lost) moves.
                if let Some(old) = self.remote.remove(&id) {
                    self.forget_keys(id, &old.nick);
                    if let Some(r) = self.rooms.get_mut(&old.room) {
                        r.members.swap_remove(&id);
                    }
                }
                self.list_remote(id, &nick, &room);
                self.announce_joined(now, out, &room, &nick, id);
            }
            Note::Left {
                id,
                nick,
                room,
                reason,
                gone,
            } => {
                if id.node() != from || !self.remote.contains_key(&id) {
                    return;
                }
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.members.swap_remove(&id);
                }
                if gone {
                    if let Some(u) = self.remote.remove(&id) {
                        self.forget_keys(id, &u.nick);
                    }
                }
                self.announce_left(now, out, &room, &nick, id, &reason);
            }
            Note::Renamed {
                id,
                from: old,
                to,
                room,
            } => {
                if id.node() != from {
                    return;
                }
                let Some(u) = self.remote.get_mut(&id) else {
                    return;
                };
                let known = std::mem::replace(&mut u.nick, to.clone());
                self.forget_keys(id, &known);
                self.learn_keys(id, &to);
                if self.rooms.contains_key(&room) {
                    self.announce_renamed(now, out, &room, (&old, &to), id, false);
                }
            }
            Note::Kick {
                target, by, reason, ..
            } => {
                if self.users.contains_key(&target) {
                    self.kick_local(now, out, target, &by, &reason);
                }
            }
            Note::Private {
                from: sender,
                from_nick,
                to,
                to_nick,
                text,
                time,
            } => {
                if sender.node() != from {
                    return;
                }
                match self.users.get(&to) {
                    Some(u) if u.nick == to_nick => {
                        let msg = ServerMsg::Private {
                            message: Cow::Owned(text),
                            who: Cow::Owned(from_nick),
                            to: Cow::Owned(to_nick),
                            time,
                            echo: false,
                        };
                        Self::send(out, to, msg);
                    }
                    _ => out.push(Effect::Emit {
                        node: Some(from),
                        note: Note::Undelivered { sender, to_nick },
                    }),
                }
            }
            Note::Moved {
                previous,
                id,
                nick,
                room,
            } => self.moved(now, out, from, Presence { id, nick, room }, previous),
            Note::Undelivered { sender, to_nick } => {
                if self.users.contains_key(&sender) {
                    let r = Refusal::new(
                        "undelivered",
                        format!("{to_nick:?} left before the private message reached them"),
                    );
                    self.refuse(out, sender, "private", r);
                }
            }
        }
    }

    /// Lists `id`, a user of another node, as `nick` in `room` (its nickname's keys, its
    /// place among the room's members).
    fn list_remote(&mut self, id: ChannelId, nick: &str, room: &str) {
        self.learn_keys(id, nick);
        self.room_entry(room).members.insert(id);
        self.remote.insert(
            id,
            RemoteUser {
                nick: nick.to_owned(),
                room: room.to_owned(),
            },
        );
    }

    /// A user of another node left the chat with its node (or without a goodbye).
    fn drop_remote(&mut self, now: Now, out: &mut Out, id: ChannelId, reason: &str) {
        let Some(u) = self.remote.remove(&id) else {
            return;
        };
        self.forget_keys(id, &u.nick);
        if let Some(r) = self.rooms.get_mut(&u.room) {
            r.members.swap_remove(&id);
        }
        self.announce_left(now, out, &u.room, &u.nick, id, reason);
    }

    /// Replaces what this node knows of node `node`'s users with `users`, quietly (a resync,
    /// not news): the rooms' players lists are refreshed.
    fn replace_node(&mut self, node: NodeNumber, users: Vec<Presence>) {
        let old: Vec<ChannelId> = self
            .remote
            .keys()
            .copied()
            .filter(|id| id.node() == node)
            .collect();
        for id in old {
            if let Some(u) = self.remote.remove(&id) {
                self.forget_keys(id, &u.nick);
                if let Some(r) = self.rooms.get_mut(&u.room) {
                    r.members.swap_remove(&id);
                }
                self.mark_dirty(&u.room);
            }
        }
        for p in users {
            if p.id.node() != node {
                continue;
            }
            self.list_remote(p.id, &p.nick, &p.room);
            self.mark_dirty(&p.room);
        }
        let empty: Vec<String> = self
            .rooms
            .iter()
            .filter(|(name, r)| r.members.is_empty() && name.as_str() != DEFAULT_ROOM)
            .map(|(n, _)| n.clone())
            .collect();
        for n in empty {
            self.rooms.remove(&n);
            self.dirty_rooms.remove(&n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Who, DEFAULT_ROOM};

    const NODE: u64 = 1 << netlib::NODE_SHIFT;

    fn id(node: u64, n: u64) -> ChannelId {
        ChannelId::from_serial(node * NODE + n)
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    /// Rules and a manual time: nothing here reads a clock.
    struct Core {
        rules: Rules,
        now: Now,
    }

    impl Core {
        fn new(cluster: bool) -> Self {
            let settings = RuleSettings {
                cluster,
                node_name: "a".into(),
                ..RuleSettings::default()
            };
            Core {
                rules: Rules::new(settings),
                now: Now {
                    instant: Instant::now(),
                    ms: 1_700_000_000_000,
                },
            }
        }

        /// A minute later: request budgets refill.
        fn later(&mut self) {
            self.now.instant += std::time::Duration::from_secs(60);
            self.now.ms += 60_000;
        }

        fn handle(&mut self, input: Input) -> Vec<Effect> {
            let mut out = Vec::new();
            self.rules.handle(self.now, input, &mut out);
            out
        }

        fn request(&mut self, from: ChannelId, request: Request) -> Vec<Effect> {
            self.handle(Input::Request { from, request })
        }

        /// Node `from` says its user `who`, `nick`, entered the default room.
        fn learn(&mut self, from: NodeNumber, who: ChannelId, nick: &str) -> Vec<Effect> {
            let note = Note::Joined {
                id: who,
                nick: nick.into(),
                room: DEFAULT_ROOM.into(),
            };
            self.handle(Input::Note { from, note })
        }

        fn connect(&mut self, who: ChannelId) -> Vec<Effect> {
            self.handle(Input::Connected {
                id: who,
                addr: addr(),
            })
        }

        /// The nicknames `who` lists (all rooms), as `from` asks.
        fn who(&mut self, from: ChannelId) -> Vec<String> {
            let out = self.request(
                from,
                Request::Who(Who {
                    room: None,
                    page: None,
                }),
            );
            match &out[..] {
                [Effect::Send {
                    msg: ServerMsg::Who { users, .. },
                    ..
                }] => users.iter().map(|u| u.nickname.clone()).collect(),
                other => panic!("{other:?}"),
            }
        }
    }

    fn nick(n: &str) -> Request {
        Request::Nickname(SetNickname { nickname: n.into() })
    }

    fn refusal(out: &[Effect]) -> Option<&str> {
        out.iter().find_map(|e| match e {
            Effect::Send {
                msg: ServerMsg::Refused { code, .. },
                ..
            } => Some(&**code),
            _ => None,
        })
    }

    #[test]
    fn a_connection_joins_the_default_room_and_is_welcomed_and_announced() {
        let mut core = Core::new(true);
        let alice = id(1, 1);
        let out = core.connect(alice);
        assert_eq!(
            out[0],
            Effect::Join {
                id: alice,
                room: DEFAULT_ROOM.into()
            }
        );
        assert!(out.iter().any(|e| matches!(e,
            Effect::Send { to, msg: ServerMsg::Welcome { members: 1, .. } } if *to == alice)));
        assert!(out.iter().any(|e| matches!(e,
            Effect::Emit { node: None, note: Note::Joined { id, .. } } if *id == alice)));
    }

    #[test]
    fn a_message_goes_to_the_whole_room_on_every_node_once() {
        let mut core = Core::new(true);
        let alice = id(1, 1);
        core.connect(alice);
        let out = core.request(
            alice,
            Request::Message(Say {
                message: "hi".into(),
            }),
        );
        assert_eq!(
            out,
            [Effect::Room {
                room: DEFAULT_ROOM.into(),
                msg: ServerMsg::Message {
                    message: "hi".into(),
                    who: ANONYMOUS.into(),
                    room: DEFAULT_ROOM.into(),
                    time: core.now.ms,
                },
            }]
        );
    }

    #[test]
    fn on_one_node_a_rename_is_at_once_and_on_a_cluster_after_the_claim() {
        let mut single = Core::new(false);
        let a = id(0, 1);
        single.connect(a);
        let out = single.request(a, nick("ada"));
        assert!(out.iter().all(|e| !matches!(e, Effect::Claim { .. })));
        assert_eq!(single.who(a), ["ada"]);

        let mut core = Core::new(true);
        let a = id(1, 1);
        core.connect(a);
        core.handle(Input::Down);
        assert_eq!(
            refusal(&core.request(a, nick("ada"))),
            Some("cluster-unavailable"),
            "not while the cluster is down"
        );
        core.handle(Input::Up);
        core.later();
        let out = core.request(a, nick("ada"));
        assert_eq!(
            out,
            [Effect::Claim {
                id: a,
                keys: vec!["ada".to_owned()]
            }]
        );
        assert_eq!(refusal(&core.request(a, nick("eve"))), Some("rate-limited"));
        let out = core.handle(Input::Claimed {
            id: a,
            result: Ok(()),
        });
        assert!(out.iter().any(|e| matches!(e,
            Effect::Emit { note: Note::Renamed { to, .. }, .. } if to == "ada")));
        assert_eq!(core.who(a), ["ada"]);
        // The next rename gives the old keys up once the new ones are claimed.
        core.later();
        core.request(a, nick("bea"));
        let out = core.handle(Input::Claimed {
            id: a,
            result: Ok(()),
        });
        assert_eq!(
            out[0],
            Effect::Release {
                id: a,
                keys: vec![name_key("ada")]
            }
        );
        core.later();
        core.request(a, nick("cid"));
        let out = core.handle(Input::Claimed {
            id: a,
            result: Err(ClusterError::Taken),
        });
        assert_eq!(refusal(&out), Some("nickname-taken"));
        assert_eq!(core.who(a), ["bea"]);
    }

    /// Whether `out` tells anyone that a user came or went.
    fn announces(out: &[Effect]) -> bool {
        out.iter().any(|e| {
            matches!(
                e,
                Effect::Notify { .. }
                    | Effect::Emit {
                        note: Note::Left { .. } | Note::Joined { .. },
                        ..
                    }
            )
        })
    }

    #[test]
    fn a_user_whose_session_moved_here_comes_back_as_itself_quietly() {
        let mut core = Core::new(true);
        core.handle(Input::Up);
        let (dave, there, here) = (id(1, 1), id(2, 1), id(1, 2));
        core.connect(dave);
        core.learn(2, there, "carol");
        core.handle(Input::Flush);
        // Her nickname did not travel (her node had let it go): she starts anonymous.
        let mut other = Core::new(true);
        other.connect(dave);
        other.learn(2, there, "carol");
        let out = other.handle(Input::Migrated {
            id: here,
            addr: addr(),
            previous: there,
            names: Vec::new(),
            rooms: vec![DEFAULT_ROOM.into()],
        });
        assert!(out.iter().any(|e| matches!(e,
            Effect::Send { to, msg: ServerMsg::Welcome { nickname, .. } }
                if *to == here && nickname == ANONYMOUS)));
        let mut names = other.who(dave);
        names.sort();
        assert_eq!(names, [ANONYMOUS, ANONYMOUS]);
        // Her old entry is gone with its name and its place in the room: the room counts
        // two, and the name is free here (a claim is asked for, not refused).
        assert_eq!(other.rules.rooms[DEFAULT_ROOM].members.len(), 2);
        other.handle(Input::Up);
        let out = other.request(dave, nick("carol"));
        assert_eq!(
            out,
            [Effect::Claim {
                id: dave,
                keys: vec!["carol".to_owned()]
            }]
        );
        // It did: no notices, no welcome, no claim; the other nodes are told where she is.
        let out = core.handle(Input::Migrated {
            id: here,
            addr: addr(),
            previous: there,
            names: vec!["carol".into()],
            rooms: vec![DEFAULT_ROOM.into()],
        });
        assert_eq!(
            out,
            [Effect::Emit {
                node: None,
                note: Note::Moved {
                    previous: there,
                    id: here,
                    nick: "carol".into(),
                    room: DEFAULT_ROOM.into(),
                },
            }]
        );
        let mut names = core.who(dave);
        names.sort();
        assert_eq!(names, [ANONYMOUS, "carol"]);
        // She is this node's user now, under her name; her old node's death keeps her.
        let out = core.request(
            here,
            Request::Message(Say {
                message: "back".into(),
            }),
        );
        assert!(matches!(&out[..],
            [Effect::Room { msg: ServerMsg::Message { who, .. }, .. }] if who == "carol"));
        assert!(!announces(&core.handle(Input::NodeGone { node: 2 })));
        let mut names = core.who(dave);
        names.sort();
        assert_eq!(names, [ANONYMOUS, "carol"]);
        assert!(!announces(&core.handle(Input::Flush)));
    }

    #[test]
    fn a_third_node_hears_a_move_from_both_nodes_and_shows_nothing() {
        let mut core = Core::new(true);
        core.handle(Input::Up);
        let (dave, old, new) = (id(1, 1), id(2, 1), id(3, 1));
        core.connect(dave);
        core.learn(2, old, "carol");
        core.handle(Input::Flush);
        let moved = Note::Moved {
            previous: old,
            id: new,
            nick: "carol".into(),
            room: DEFAULT_ROOM.into(),
        };
        let mut out = Vec::new();
        // From the node it left, then from the node it came to; a third node may not speak
        // for either.
        for from in [2, 3, 4] {
            out.extend(core.handle(Input::Note {
                from,
                note: moved.clone(),
            }));
        }
        out.extend(core.handle(Input::Flush));
        assert!(!announces(&out), "{out:?}");
        let mut names = core.who(dave);
        names.sort();
        assert_eq!(names, [ANONYMOUS, "carol"]);
        // The old channel's departure, late, changes nothing; the new one's is a goodbye.
        assert!(!announces(&core.handle(Input::Departed { id: old })));
        assert!(announces(&core.handle(Input::Departed { id: new })));
        assert_eq!(core.who(dave), [ANONYMOUS]);
        // A note of the old node that comes later still does not bring her back.
        let late = core.handle(Input::Note {
            from: 2,
            note: moved.clone(),
        });
        assert!(!announces(&late));
        assert_eq!(core.who(dave), [ANONYMOUS]);
    }

    #[test]
    fn a_user_who_moved_where_nobody_knows_leaves_as_if_closed() {
        let mut core = Core::new(true);
        let (dave, carol) = (id(1, 1), id(1, 2));
        core.connect(dave);
        core.connect(carol);
        core.handle(Input::Flush);
        let out = core.handle(Input::MovedAway {
            id: carol,
            to: None,
        });
        assert!(announces(&out), "{out:?}");
        assert_eq!(core.who(dave), [ANONYMOUS]);
    }

    #[test]
    fn a_session_from_an_unknown_channel_starts_anonymous_in_its_room() {
        let mut core = Core::new(true);
        let here = id(1, 2);
        let out = core.handle(Input::Migrated {
            id: here,
            addr: addr(),
            previous: id(2, 1),
            names: vec!["ghost".into()],
            rooms: vec!["games".into(), "extra".into()],
        });
        assert!(out.contains(&Effect::Leave {
            id: here,
            room: "extra".into()
        }));
        // The names that came with the session are let go: nobody shown holds them.
        assert!(out.contains(&Effect::Release {
            id: here,
            keys: vec!["ghost".into()]
        }));
        assert!(out.iter().any(|e| matches!(e,
            Effect::Send { to, msg: ServerMsg::Welcome { nickname, room, .. } }
                if *to == here && nickname == ANONYMOUS && room == "games")));
    }

    #[test]
    fn a_user_who_moved_away_is_listed_under_its_new_channel_without_a_goodbye() {
        // Its old channel here may close before or after its new node's note arrives.
        for note_first in [false, true] {
            let mut core = Core::new(true);
            core.handle(Input::Up);
            let (dave, carol, there) = (id(1, 1), id(1, 2), id(2, 7));
            core.connect(dave);
            core.connect(carol);
            core.request(carol, nick("carol"));
            core.handle(Input::Claimed {
                id: carol,
                result: Ok(()),
            });
            core.handle(Input::Flush);
            let moved = Input::Note {
                from: 2,
                note: Note::Moved {
                    previous: carol,
                    id: there,
                    nick: "carol".into(),
                    room: DEFAULT_ROOM.into(),
                },
            };
            let mut out = Vec::new();
            let away = Input::MovedAway {
                id: carol,
                to: Some(there),
            };
            if note_first {
                out.extend(core.handle(moved));
                out.extend(core.handle(away));
            } else {
                let told = core.handle(away);
                // This node tells the others (node 2 may be the only other to know).
                assert!(told.iter().any(|e| matches!(e,
                    Effect::Emit { node: None, note: Note::Moved { previous, id, .. } }
                        if *previous == carol && *id == there)));
                out.extend(told);
                // Gone from here: what its old channel still sends is ignored.
                assert!(core.request(carol, nick("eve")).is_empty());
                out.extend(core.handle(moved));
            }
            out.extend(core.handle(Input::Flush));
            assert!(!announces(&out), "{out:?}");
            let mut names = core.who(dave);
            names.sort();
            assert_eq!(names, [ANONYMOUS, "carol"], "note first: {note_first}");
            // Her nickname leads to her new channel.
            let out = core.request(
                dave,
                Request::Private(SayPrivately {
                    to: "carol".into(),
                    message: "psst".into(),
                }),
            );
            assert!(
                matches!(&out[0], Effect::Emit { node: Some(2), note: Note::Private { to, .. } } if *to == there),
                "{out:?}"
            );
        }
    }

    #[test]
    fn other_nodes_users_are_learnt_from_hello_and_notes_and_dropped_with_their_node() {
        let mut core = Core::new(true);
        let alice = id(1, 1);
        core.connect(alice);
        let up = core.handle(Input::Up);
        assert!(
            matches!(&up[..], [Effect::Emit { node: None, note: Note::Hello { reply: false, users, .. } }] if users.len() == 1)
        );
        let (bob, carol) = (id(2, 1), id(2, 2));
        let hello = Note::Hello {
            name: "b".into(),
            users: vec![Presence {
                id: bob,
                nick: "bob".into(),
                room: DEFAULT_ROOM.into(),
            }],
            reply: false,
        };
        let out = core.handle(Input::Note {
            from: 2,
            note: hello,
        });
        assert!(matches!(
            &out[..],
            [Effect::Emit {
                node: Some(2),
                note: Note::Hello { reply: true, .. }
            }]
        ));
        let joined = Note::Joined {
            id: carol,
            nick: "carol".into(),
            room: DEFAULT_ROOM.into(),
        };
        core.handle(Input::Note {
            from: 2,
            note: joined,
        });
        // A note about a channel of another node than its sender is ignored.
        let forged = Note::Joined {
            id: id(3, 1),
            nick: "mallory".into(),
            room: DEFAULT_ROOM.into(),
        };
        core.handle(Input::Note {
            from: 2,
            note: forged,
        });
        let mut names = core.who(alice);
        names.sort();
        assert_eq!(names, [ANONYMOUS, "bob", "carol"]);
        // A private message to a user of node 2 goes to its channel; refused while down.
        let psst = || {
            Request::Private(SayPrivately {
                to: "BOB".into(),
                message: "psst".into(),
            })
        };
        let out = core.request(alice, psst());
        assert!(
            matches!(&out[0], Effect::Emit { node: Some(2), note: Note::Private { to, .. } } if *to == bob)
        );
        assert!(
            matches!(&out[1], Effect::Send { to, msg: ServerMsg::Private { echo: true, .. } } if *to == alice)
        );
        // Bob's node answers that bob left meanwhile.
        let gone = Note::Undelivered {
            sender: alice,
            to_nick: "bob".into(),
        };
        let out = core.handle(Input::Note {
            from: 2,
            note: gone,
        });
        assert_eq!(refusal(&out), Some("undelivered"));
        // A note that cannot reach the cluster refuses its request.
        let lost = Note::Private {
            from: alice,
            from_nick: ANONYMOUS.into(),
            to: bob,
            to_nick: "bob".into(),
            text: "psst".into(),
            time: 0,
        };
        let out = core.handle(Input::Undeliverable { note: lost });
        assert_eq!(refusal(&out), Some("cluster-unavailable"));
        core.handle(Input::Down);
        assert_eq!(
            refusal(&core.request(alice, psst())),
            Some("cluster-unavailable")
        );
        core.handle(Input::Up);
        // Node 2 dies: its users leave, with a reason naming it.
        let out = core.handle(Input::NodeGone { node: 2 });
        let reasons: Vec<&str> = out
            .iter()
            .filter_map(|e| match e {
                Effect::Notify {
                    msg: ServerMsg::Left { reason, .. },
                    ..
                } => Some(&**reason),
                _ => None,
            })
            .collect();
        assert_eq!(reasons, ["connection lost: node b is gone"; 2]);
        assert_eq!(core.who(alice), [ANONYMOUS]);
        // Their names are free.
        core.request(alice, nick("bob"));
        let out = core.handle(Input::Claimed {
            id: alice,
            result: Ok(()),
        });
        assert!(refusal(&out).is_none());
    }

    #[test]
    fn a_medium_room_reloaded_from_another_node_gets_one_fresh_list() {
        let mut core = Core::new(true);
        core.rules.settings.rooms = RoomPolicy {
            full_list_max: 1,
            notice_max: 100,
        };
        let alice = id(1, 1);
        core.connect(alice);
        core.handle(Input::Flush);
        let users = (1..=3)
            .map(|n| Presence {
                id: id(2, n),
                nick: format!("b{n}"),
                room: DEFAULT_ROOM.into(),
            })
            .collect();
        let hello = Note::Hello {
            name: "b".into(),
            users,
            reply: true,
        };
        core.handle(Input::Note {
            from: 2,
            note: hello,
        });
        let out = core.handle(Input::Flush);
        let lists: Vec<usize> = out
            .iter()
            .filter_map(|e| match e {
                Effect::Notify {
                    msg: ServerMsg::Players { players, .. },
                    ..
                } => Some(players.len()),
                _ => None,
            })
            .collect();
        assert_eq!(lists, [4], "one list of everyone, no delta");
    }

    #[test]
    fn a_nickname_lost_in_an_outage_makes_its_user_anonymous_again() {
        let mut core = Core::new(true);
        let a = id(1, 1);
        core.connect(a);
        core.request(a, nick("ada"));
        core.handle(Input::Claimed {
            id: a,
            result: Ok(()),
        });
        let out = core.handle(Input::NamesLost { id: a });
        assert_eq!(refusal(&out), Some("nickname-taken"));
        assert!(out.iter().any(|e| matches!(e,
            Effect::Emit { note: Note::Renamed { from, to, .. }, .. } if from == "ada" && to == ANONYMOUS)));
        assert_eq!(core.who(a), [ANONYMOUS]);
        assert_eq!(core.handle(Input::NamesLost { id: a }), [], "once");
    }

    #[test]
    fn a_kick_from_another_node_closes_the_local_user_once() {
        let mut core = Core::new(true);
        let dave = id(1, 1);
        core.connect(dave);
        let kick = |target| Note::Kick {
            target,
            by: "alice".into(),
            by_id: id(2, 9),
            reason: "spam".into(),
        };
        // For a channel this node does not have (an old node's id): nothing.
        assert_eq!(
            core.handle(Input::Note {
                from: 2,
                note: kick(id(3, 1))
            }),
            []
        );
        let out = core.handle(Input::Note {
            from: 2,
            note: kick(dave),
        });
        assert!(
            matches!(&out[..], [Effect::Send { msg: ServerMsg::Kicked { .. }, .. }, Effect::Close { id }] if *id == dave)
        );
        let out = core.handle(Input::Closed {
            id: dave,
            reason: "disconnected".into(),
        });
        assert!(out.iter().any(|e| matches!(e,
            Effect::Emit { note: Note::Left { reason, gone: true, .. }, .. } if reason == "kicked by alice: spam")));
    }
}
