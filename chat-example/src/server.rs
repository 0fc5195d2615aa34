//! The chat server: [`Chat`] holds users and rooms, keyed by channel id, and handles every
//! request itself (one handler per action on the server type, registered with
//! `netlib::handler!`), so channels carry no state of their own.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use indexmap::IndexSet;
use subtle::ConstantTimeEq;

use netlib::{
    handler, ChannelId, Clock, CloseReason, Closed, InboundError, Message, OutOfBand,
    ServerContext, ServerHandler,
};

use crate::cluster::{Backplane, Cmd, Event, UserRef};
use crate::limits::{AddressAttempts, ChatLimits, Kind, UserLimits};
use crate::protocol::{
    c, check_message, check_name, name_key, name_keys, now_ms, Join, Kick, Op, Quit, Refusal,
    RoomEntry, RoomPolicy, Rooms, Say, SayPrivately, ServerMsg, SetNickname, Tier, Who, WhoEntry,
    ACTIONS, ANONYMOUS, DEFAULT_ROOM, PAGE_SIZE, RESERVED_NICKNAMES,
};

mod remote;

/// All chat state lives in [`Chat`], keyed by channel id: channels carry none.
type Hub<'a> = ServerContext<'a, ()>;

/// Server settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The operator password; `None` disables `op`.
    pub op_password: Option<String>,
    /// Which rooms get which membership traffic.
    pub rooms: RoomPolicy,
    /// Per-user request limits; `None` turns them off. Default: [`ChatLimits::default`].
    pub limits: Option<ChatLimits>,
    /// The clock the request limits read: give the server's
    /// [`ServerConfig::clock`](netlib::ServerConfig::clock) the same one (tests use a
    /// [`ManualClock`](netlib::ManualClock) for both). Default: the system's clock.
    pub clock: Clock,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            op_password: None,
            rooms: RoomPolicy::default(),
            limits: Some(ChatLimits::default()),
            clock: Clock::System,
        }
    }
}

/// Most names in one `members` delta; larger deltas are split.
pub const DELTA_CHUNK: usize = 500;

/// Longest quit or kick reason relayed, in characters; longer ones are cut.
pub const MAX_REASON_CHARS: usize = 200;

/// A recipient with more than this many bytes waiting is lagging: it gets no membership
/// notices or player lists (they would only pile up) until its queue is under half of this,
/// then one fresh `players` list of its room instead.
pub const LAGGING_BYTES: usize = 256 << 10;

#[derive(Debug)]
struct User {
    nick: String,
    room: String,
    op: bool,
    /// The peer's address (operator logins are limited per IP address too).
    addr: SocketAddr,
    /// Request budgets, made at the first limited request (an idle user costs nothing).
    limits: Option<Box<UserLimits>>,
    /// Set by quit or kick: the reason the room is told when the channel closes.
    leaving: Option<String>,
}

#[derive(Debug, Default)]
struct Room {
    /// Members on this node, iterated densely for broadcasts (insertion order, O(1) removal).
    members: IndexSet<ChannelId>,
    /// Members on other nodes (a cluster).
    remote: IndexSet<UserRef>,
    /// Membership changed since the last `players` list (small rooms).
    list_dirty: bool,
    joined: Vec<String>,
    left: Vec<String>,
    renamed: Vec<(String, String)>,
}

impl Room {
    /// Members here and on other nodes.
    fn size(&self) -> usize {
        self.members.len() + self.remote.len()
    }
}

/// Refused because the cluster's backplane is unreachable.
fn unavailable() -> Refusal {
    Refusal::new(
        "cluster-unavailable",
        "the chat cluster is unreachable; try again shortly (messages to your room still work)",
    )
}

/// The chat server's state: every user and room.
#[derive(Debug)]
pub struct Chat {
    settings: Settings,
    users: HashMap<ChannelId, User>,
    /// Claimed nicknames by [`name_key`] (confusable skeleton), to their user.
    nicks: HashMap<String, ChannelId>,
    rooms: HashMap<String, Room>,
    /// Rooms with membership updates to send at the end of the pump.
    dirty_rooms: HashSet<String>,
    /// Operator login attempts per IP address.
    op_attempts: AddressAttempts,
    /// Lagging users who missed membership traffic and are owed a `players` list.
    stale: HashSet<ChannelId>,
    /// The cluster's backplane; `None` for a single node.
    backplane: Option<Backplane>,
    /// Users on other nodes, as their events said.
    remote: remote::Remote,
    /// Nickname changes waiting for the backplane's claim.
    pending_claims: HashMap<ChannelId, String>,
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

fn send(hub: &mut Hub<'_>, id: ChannelId, msg: &ServerMsg<'_>) {
    if let Err(e) = hub.send_to(id, msg) {
        log::debug!("cannot send to {id}: {e}");
    }
}

impl Chat {
    /// A chat with `settings`.
    pub fn new(settings: Settings) -> Self {
        Chat {
            settings,
            users: HashMap::new(),
            nicks: HashMap::new(),
            rooms: HashMap::new(),
            dirty_rooms: HashSet::new(),
            op_attempts: AddressAttempts::default(),
            stale: HashSet::new(),
            backplane: None,
            remote: remote::Remote::default(),
            pending_claims: HashMap::new(),
        }
    }

    /// A chat node that shares its rooms with others through `backplane` (see
    /// [`crate::cluster`]).
    pub fn with_backplane(settings: Settings, backplane: Backplane) -> Self {
        Chat {
            backplane: Some(backplane),
            ..Chat::new(settings)
        }
    }

    /// Publishes the event `make` builds, if in a cluster.
    fn publish(&self, make: impl FnOnce(&Backplane) -> Event) {
        if let Some(b) = &self.backplane {
            b.send(Cmd::Publish(make(b)));
        }
    }

    /// Frees `nick`'s keys if `id` holds them.
    fn release_nick(&mut self, id: ChannelId, nick: &str) {
        for k in name_keys(nick) {
            if self.nicks.get(&k) == Some(&id) {
                self.nicks.remove(&k);
            }
        }
    }

    /// `id`'s budgets (made full on first use), or `None` when limits are off.
    fn user_limits(&mut self, id: ChannelId, now: std::time::Instant) -> Option<&mut UserLimits> {
        let settings = self.settings.limits?;
        let user = self.users.get_mut(&id)?;
        Some(
            user.limits
                .get_or_insert_with(|| Box::new(UserLimits::new(&settings, now))),
        )
    }

    /// Runs `handle` for `id`'s request if its budget for that kind of request allows; refuses
    /// it (`rate-limited`) otherwise.
    fn limited(
        &mut self,
        hub: &mut Hub<'_>,
        id: ChannelId,
        (kind, action): (Kind, &str),
        handle: impl FnOnce(&mut Self, &mut Hub<'_>),
    ) {
        if self.allow(hub, id, kind, action) {
            handle(self, hub);
        }
    }

    /// Whether `id` may make a request of `kind` now; if not, it is refused (`rate-limited`).
    fn allow(&mut self, hub: &mut Hub<'_>, id: ChannelId, kind: Kind, request: &str) -> bool {
        let now = self.settings.clock.now();
        let Some(limits) = self.user_limits(id, now) else {
            return true;
        };
        match limits.take(kind, now) {
            Ok(()) => true,
            Err(r) => {
                self.refuse(hub, id, request, r);
                false
            }
        }
    }

    /// Number of connected users.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    fn tier(&self, size: usize) -> Tier {
        self.settings.rooms.tier(size)
    }

    fn refuse(&self, hub: &mut Hub<'_>, id: ChannelId, request: &str, r: Refusal) {
        let who = self.users.get(&id).map_or(ANONYMOUS, |u| u.nick.as_str());
        log::debug!(
            "refused {request:?} from {who} ({id}): {} ({})",
            r.text,
            r.code
        );
        send(
            hub,
            id,
            &ServerMsg::Refused {
                request: c(request),
                code: c(r.code),
                text: c(&r.text),
            },
        );
    }

    /// Sends one encoded message to every member of `room` except `except`.
    fn to_room(
        &self,
        hub: &mut Hub<'_>,
        room: &str,
        except: Option<ChannelId>,
        msg: &ServerMsg<'_>,
    ) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        match hub.encode(msg) {
            Ok(frame) => {
                hub.send_frame_to(
                    r.members.iter().copied().filter(|&m| Some(m) != except),
                    &frame,
                );
            }
            Err(e) => log::error!("cannot encode a message for {room}: {e}"),
        }
    }

    /// Sends membership traffic (notices, lists, deltas) to `room` except `except`, skipping
    /// lagging members ([`LAGGING_BYTES`]): they are owed one fresh `players` list instead.
    fn notify_room(
        &mut self,
        hub: &mut Hub<'_>,
        room: &str,
        except: Option<ChannelId>,
        msg: &ServerMsg<'_>,
    ) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        let frame = match hub.encode(msg) {
            Ok(frame) => frame,
            Err(e) => return log::error!("cannot encode a notice for {room}: {e}"),
        };
        let mut lagging = Vec::new();
        let current: Vec<ChannelId> = r
            .members
            .iter()
            .copied()
            .filter(|&m| Some(m) != except)
            .filter(|&m| {
                let lags = hub.queued_bytes(m).unwrap_or(0) > LAGGING_BYTES;
                if lags {
                    lagging.push(m);
                }
                !lags
            })
            .collect();
        hub.send_frame_to(current, &frame);
        self.stale.extend(lagging);
    }

    /// Lagging users whose queue has drained get one `players` list of their room.
    fn resync_stale(&mut self, hub: &mut Hub<'_>) {
        let ready: Vec<ChannelId> = self
            .stale
            .iter()
            .copied()
            .filter(|&id| hub.queued_bytes(id).unwrap_or(0) < LAGGING_BYTES / 2)
            .collect();
        for id in ready {
            self.stale.remove(&id);
            let Some(room) = self.users.get(&id).map(|u| u.room.clone()) else {
                continue;
            };
            if self.rooms.contains_key(&room) {
                let players = self.member_nicks(&room);
                send(
                    hub,
                    id,
                    &ServerMsg::Players {
                        players,
                        room: c(&room),
                    },
                );
            }
        }
    }

    /// Membership traffic for `nick` (channel id `id`, local or remote) having entered
    /// `room_name`, by the room's tier.
    fn announce_joined(&mut self, hub: &mut Hub<'_>, room_name: &str, nick: &str, id: ChannelId) {
        let size = self.rooms[room_name].size();
        match self.tier(size) {
            Tier::FullList => {
                let notice = ServerMsg::Joined {
                    nickname: c(nick),
                    id,
                    room: c(room_name),
                    time: now_ms(),
                };
                self.notify_room(hub, room_name, Some(id), &notice);
                self.rooms.get_mut(room_name).expect("room").list_dirty = true;
                self.dirty_rooms.insert(room_name.to_owned());
            }
            Tier::Deltas => {
                let room = self.rooms.get_mut(room_name).expect("room");
                room.joined.push(nick.to_owned());
                self.dirty_rooms.insert(room_name.to_owned());
            }
            Tier::Quiet => {}
        }
    }

    /// Membership traffic for `nick` having left `room_name` (already removed); an empty room
    /// other than the default one is forgotten.
    fn announce_left(
        &mut self,
        hub: &mut Hub<'_>,
        room_name: &str,
        nick: &str,
        id: ChannelId,
        reason: &str,
    ) {
        let Some(room) = self.rooms.get(room_name) else {
            return;
        };
        let size = room.size();
        if size == 0 && room_name != DEFAULT_ROOM {
            self.rooms.remove(room_name);
            self.dirty_rooms.remove(room_name);
            return;
        }
        match self.tier(size + 1) {
            Tier::FullList => {
                let notice = ServerMsg::Left {
                    nickname: c(nick),
                    id,
                    room: c(room_name),
                    reason: c(reason),
                    time: now_ms(),
                };
                self.notify_room(hub, room_name, None, &notice);
                self.rooms.get_mut(room_name).expect("room").list_dirty = true;
                self.dirty_rooms.insert(room_name.to_owned());
            }
            Tier::Deltas => {
                let room = self.rooms.get_mut(room_name).expect("room");
                room.left.push(nick.to_owned());
                self.dirty_rooms.insert(room_name.to_owned());
            }
            Tier::Quiet => {}
        }
    }

    /// Membership traffic for a rename in `room_name`; `own` is the renamed user's channel if
    /// local (it is told in every tier).
    fn announce_renamed(
        &mut self,
        hub: &mut Hub<'_>,
        room_name: &str,
        (old, new): (&str, &str),
        id: ChannelId,
        own: Option<ChannelId>,
    ) {
        let size = self.rooms.get(room_name).map_or(0, Room::size);
        let notice = ServerMsg::Renamed {
            from: c(old),
            to: c(new),
            id,
            room: c(room_name),
            time: now_ms(),
        };
        match self.tier(size) {
            Tier::FullList => {
                self.notify_room(hub, room_name, None, &notice);
                self.rooms.get_mut(room_name).expect("room").list_dirty = true;
                self.dirty_rooms.insert(room_name.to_owned());
            }
            tier => {
                if let Some(own) = own {
                    send(hub, own, &notice);
                }
                if tier == Tier::Deltas {
                    let room = self.rooms.get_mut(room_name).expect("room");
                    room.renamed.push((old.to_owned(), new.to_owned()));
                    self.dirty_rooms.insert(room_name.to_owned());
                }
            }
        }
    }

    fn enter(&mut self, hub: &mut Hub<'_>, id: ChannelId, room_name: &str) {
        let nick = self.users[&id].nick.clone();
        let room = self.rooms.entry(room_name.to_owned()).or_default();
        room.members.insert(id);
        let size = room.size();
        self.users.get_mut(&id).expect("user").room = room_name.to_owned();
        self.announce_joined(hub, room_name, &nick, id);
        if self.tier(size) == Tier::Deltas {
            let players = self.member_nicks(room_name);
            send(
                hub,
                id,
                &ServerMsg::Players {
                    players,
                    room: c(room_name),
                },
            );
        }
        send(
            hub,
            id,
            &ServerMsg::Welcome {
                nickname: c(&nick),
                id,
                room: c(room_name),
                members: size,
                time: now_ms(),
            },
        );
        self.publish(|b| Event::Joined {
            user: b.user(id.serial()),
            nick: nick.clone(),
            room: room_name.to_owned(),
        });
    }

    /// `id` leaves its room: for another one, or the chat (`gone`).
    fn leave(&mut self, hub: &mut Hub<'_>, id: ChannelId, reason: &str, gone: bool) {
        let Some(user) = self.users.get(&id) else {
            return;
        };
        let (nick, room_name) = (user.nick.clone(), user.room.clone());
        let Some(room) = self.rooms.get_mut(&room_name) else {
            return;
        };
        room.members.swap_remove(&id);
        self.announce_left(hub, &room_name, &nick, id, reason);
        self.publish(|b| Event::Left {
            user: b.user(id.serial()),
            nick: nick.clone(),
            room: room_name.clone(),
            reason: reason.to_owned(),
            gone,
        });
    }

    fn member_nicks(&self, room: &str) -> Vec<Cow<'_, str>> {
        let r = &self.rooms[room];
        let mut v: Vec<Cow<'_, str>> = r
            .members
            .iter()
            .map(|m| c(&self.users[m].nick))
            .chain(r.remote.iter().filter_map(|u| self.remote.nick(u).map(c)))
            .collect();
        v.sort_unstable_by_key(|n| n.to_lowercase());
        v
    }

    fn set_nickname(&mut self, hub: &mut Hub<'_>, id: ChannelId, m: SetNickname) {
        let new = match check_name("nickname", &m.nickname) {
            Ok(name) => name,
            Err(r) => return self.refuse(hub, id, "nickname", r),
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
            return self.refuse(hub, id, "nickname", r);
        }
        let taken_here = keys
            .iter()
            .find_map(|k| self.nicks.get(k))
            .is_some_and(|&owner| owner != id);
        if taken_here || keys.iter().any(|k| self.remote.nicks.contains_key(k)) {
            let r = Refusal::new("nickname-taken", format!("nickname {new:?} is taken"));
            return self.refuse(hub, id, "nickname", r);
        }
        let Some(b) = &self.backplane else {
            return self.apply_rename(hub, id, new);
        };
        // Cluster-wide: claimed atomically in the backplane first; `apply_rename` when the
        // answer comes (see `remote.rs`).
        if !b.up {
            return self.refuse(hub, id, "nickname", unavailable());
        }
        if self.pending_claims.contains_key(&id) {
            let r = Refusal::new("rate-limited", "a nickname change is already under way");
            return self.refuse(hub, id, "nickname", r);
        }
        let old_keys = name_keys(&self.users[&id].nick).to_vec();
        let old_keys = if self.users[&id].nick == ANONYMOUS {
            Vec::new()
        } else {
            old_keys
        };
        b.send(Cmd::Claim {
            id: id.serial(),
            nick: new.clone(),
            keys: keys.to_vec(),
            old_keys,
        });
        self.pending_claims.insert(id, new);
    }

    /// `id` is `new` from now on (checked, and claimed cluster-wide if in a cluster).
    fn apply_rename(&mut self, hub: &mut Hub<'_>, id: ChannelId, new: String) {
        let Some(user) = self.users.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut user.nick, new.clone());
        let room_name = user.room.clone();
        self.release_nick(id, &old);
        for k in name_keys(&new) {
            self.nicks.insert(k, id);
        }
        log::info!("{id}: {old} is now known as {new}");
        self.announce_renamed(hub, &room_name, (&old, &new), id, Some(id));
        self.publish(|b| Event::Renamed {
            user: b.user(id.serial()),
            from: old.clone(),
            to: new.clone(),
            room: room_name.clone(),
        });
    }

    fn say(&mut self, hub: &mut Hub<'_>, id: ChannelId, m: Say) {
        if let Err(r) = check_message(&m.message) {
            return self.refuse(hub, id, "message", r);
        }
        let user = &self.users[&id];
        let time = now_ms();
        let msg = ServerMsg::Message {
            message: c(&m.message),
            who: c(&user.nick),
            room: c(&user.room),
            time,
        };
        self.to_room(hub, &user.room, None, &msg);
        // One publish for the other nodes, whatever the number of their members.
        self.publish(|b| Event::Message {
            user: b.user(id.serial()),
            nick: user.nick.clone(),
            room: user.room.clone(),
            text: m.message.clone(),
            time,
        });
    }

    fn private(&mut self, hub: &mut Hub<'_>, id: ChannelId, m: SayPrivately) {
        if let Err(r) = check_message(&m.message) {
            return self.refuse(hub, id, "private", r);
        }
        let key = name_key(&m.to);
        let time = now_ms();
        let to = match (self.nicks.get(&key), self.remote.nicks.get(&key)) {
            (Some(&to), _) => to,
            (None, Some(user)) => {
                // On another node: one event for it; refused now if the cluster is down,
                // and later (`private_failed`) if that node no longer has the user.
                let Some(b) = self.backplane.as_ref().filter(|b| b.up) else {
                    return self.refuse(hub, id, "private", unavailable());
                };
                let to_nick = self.remote.nick(user).unwrap_or_default().to_owned();
                let from_nick = self.users[&id].nick.clone();
                b.send(Cmd::Publish(Event::Private {
                    from: b.user(id.serial()),
                    from_nick: from_nick.clone(),
                    to: user.clone(),
                    to_nick: to_nick.clone(),
                    text: m.message.clone(),
                    time,
                }));
                let echo = ServerMsg::Private {
                    message: c(&m.message),
                    who: c(&from_nick),
                    to: c(&to_nick),
                    time,
                    echo: true,
                };
                return send(hub, id, &echo);
            }
            (None, None) => {
                let r = Refusal::new("unknown-nickname", format!("nobody is called {:?}", m.to));
                return self.refuse(hub, id, "private", r);
            }
        };
        let mut msg = ServerMsg::Private {
            message: c(&m.message),
            who: c(&self.users[&id].nick),
            to: c(&self.users[&to].nick),
            time,
            echo: false,
        };
        send(hub, to, &msg);
        if to != id {
            if let ServerMsg::Private { echo, .. } = &mut msg {
                *echo = true;
            }
            send(hub, id, &msg);
        }
    }

    fn who(&self, hub: &mut Hub<'_>, id: ChannelId, m: Who) {
        let entry = |nick: &str, room: &str| WhoEntry {
            nickname: nick.to_owned(),
            room: room.to_owned(),
        };
        let mut users: Vec<WhoEntry> = match &m.room {
            None => self
                .users
                .values()
                .map(|u| entry(&u.nick, &u.room))
                .chain(self.remote.users.values().map(|u| entry(&u.nick, &u.room)))
                .collect(),
            Some(room) => match self.rooms.get(room) {
                Some(r) => r
                    .members
                    .iter()
                    .map(|m| entry(&self.users[m].nick, room))
                    .chain(
                        r.remote
                            .iter()
                            .filter_map(|u| self.remote.nick(u))
                            .map(|n| entry(n, room)),
                    )
                    .collect(),
                None => {
                    let r = Refusal::new("unknown-room", format!("there is no room {room:?}"));
                    return self.refuse(hub, id, "who", r);
                }
            },
        };
        users.sort_by_key(|u| (u.nickname.to_lowercase(), u.room.clone()));
        let (users, page, pages, total) = one_page(users, m.page);
        send(
            hub,
            id,
            &ServerMsg::Who {
                users,
                room: m.room.as_deref().map(c),
                page,
                pages,
                total,
            },
        );
    }

    fn rooms(&self, hub: &mut Hub<'_>, id: ChannelId, m: Rooms) {
        let mut rooms: Vec<RoomEntry> = self
            .rooms
            .iter()
            .map(|(name, r)| RoomEntry {
                name: name.clone(),
                members: r.size(),
            })
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        let (rooms, page, pages, total) = one_page(rooms, m.page);
        send(
            hub,
            id,
            &ServerMsg::Rooms {
                rooms,
                page,
                pages,
                total,
            },
        );
    }

    fn join(&mut self, hub: &mut Hub<'_>, id: ChannelId, m: Join) {
        let m = match check_name("room name", &m.room) {
            Ok(room) => Join { room },
            Err(r) => return self.refuse(hub, id, "join", r),
        };
        if self.users[&id].room == m.room {
            let r = Refusal::new(
                "already-in-room",
                format!("you are in {:?} already", m.room),
            );
            return self.refuse(hub, id, "join", r);
        }
        let reason = format!("went to {}", m.room);
        self.leave(hub, id, &reason, false);
        self.enter(hub, id, &m.room);
    }

    fn part(&mut self, hub: &mut Hub<'_>, id: ChannelId) {
        let room = self.users[&id].room.clone();
        if room == DEFAULT_ROOM {
            let r = Refusal::new(
                "not-in-a-room",
                format!("you are in the default room {DEFAULT_ROOM:?}; it cannot be left"),
            );
            return self.refuse(hub, id, "part", r);
        }
        self.leave(hub, id, &format!("left {room}"), false);
        self.enter(hub, id, DEFAULT_ROOM);
    }

    fn op(&mut self, hub: &mut Hub<'_>, id: ChannelId, m: Op) {
        let now = self.settings.clock.now();
        let ip = self.users.get(&id).map(|u| u.addr.ip());
        if let Some(limits) = self.settings.limits {
            let mut attempts = std::mem::take(&mut self.op_attempts);
            let verdict = self
                .user_limits(id, now)
                .map(|user_limits| attempts.take(&limits, user_limits, ip, now));
            self.op_attempts = attempts;
            if let Some(Err(r)) = verdict {
                return self.refuse(hub, id, "op", r);
            }
        }
        // Constant time in the password's bytes (the `subtle` crate): a guesser learns nothing
        // from how long a wrong guess takes, beyond whether its length is right.
        let right = |p: &String| bool::from(p.as_bytes().ct_eq(m.password.as_bytes()));
        match &self.settings.op_password {
            None => {
                let r = Refusal::new("op-disabled", "this server has no operator password");
                self.refuse(hub, id, "op", r)
            }
            Some(p) if right(p) => {
                let user = self.users.get_mut(&id).expect("user");
                user.op = true;
                log::info!("{id}: {} is now an operator", user.nick);
                send(hub, id, &ServerMsg::Op { granted: true });
            }
            Some(_) => self.refuse(
                hub,
                id,
                "op",
                Refusal::new("bad-password", "wrong operator password"),
            ),
        }
    }

    fn kick(&mut self, hub: &mut Hub<'_>, id: ChannelId, m: Kick) {
        if !self.users[&id].op {
            let r = Refusal::new(
                "not-operator",
                "only operators can kick; authenticate with op first",
            );
            return self.refuse(hub, id, "kick", r);
        }
        let by = self.users[&id].nick.clone();
        let reason = m
            .reason
            .as_deref()
            .map(cap_reason)
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "no reason given".to_owned());
        let key = name_key(&m.nickname);
        let target = match (self.nicks.get(&key), self.remote.nicks.get(&key)) {
            (Some(&target), _) => target,
            (None, Some(user)) => {
                let Some(b) = self.backplane.as_ref().filter(|b| b.up) else {
                    return self.refuse(hub, id, "kick", unavailable());
                };
                log::info!("{by} kicked {} on node {}: {reason}", m.nickname, user.node);
                return b.send(Cmd::Publish(Event::Kick {
                    target: user.clone(),
                    by,
                    reason,
                }));
            }
            (None, None) => {
                let r = Refusal::new(
                    "unknown-nickname",
                    format!("nobody is called {:?}", m.nickname),
                );
                return self.refuse(hub, id, "kick", r);
            }
        };
        self.kick_local(hub, target, &by, &reason);
    }

    /// Kicks local user `target` on behalf of operator `by` (here or on another node).
    fn kick_local(&mut self, hub: &mut Hub<'_>, target: ChannelId, by: &str, reason: &str) {
        let Some(victim) = self.users.get_mut(&target) else {
            return;
        };
        log::info!("{by} kicked {} ({target}): {reason}", victim.nick);
        victim.leaving = Some(format!("kicked by {by}: {reason}"));
        send(
            hub,
            target,
            &ServerMsg::Kicked {
                by: c(by),
                reason: c(reason),
                time: now_ms(),
            },
        );
        hub.close_channel(target);
    }

    fn quit(&mut self, hub: &mut Hub<'_>, id: ChannelId, m: Quit) {
        let reason = match m.reason.as_deref().map(cap_reason) {
            Some(r) if !r.is_empty() => format!("quit: {r}"),
            _ => "quit".to_owned(),
        };
        self.users.get_mut(&id).expect("user").leaving = Some(reason);
        hub.close_channel(id);
    }
}

impl ServerHandler for Chat {
    type Channel = ();

    fn connected(&mut self, hub: &mut Hub<'_>, id: ChannelId, addr: SocketAddr) {
        log::info!("{id} connected from {addr}");
        self.users.insert(
            id,
            User {
                nick: ANONYMOUS.to_owned(),
                room: String::new(),
                op: false,
                addr,
                limits: None,
                leaving: None,
            },
        );
        self.enter(hub, id, DEFAULT_ROOM);
    }

    fn closed(&mut self, hub: &mut Hub<'_>, gone: Closed<()>) {
        let id = gone.id;
        let why = match self.users.get(&id).and_then(|u| u.leaving.clone()) {
            Some(r) => r,
            None => match gone.reason {
                CloseReason::PeerClosed => "disconnected".to_owned(),
                other => format!("connection lost: {other}"),
            },
        };
        self.leave(hub, id, &why, true);
        self.pending_claims.remove(&id);
        if let Some(user) = self.users.remove(&id) {
            log::info!("{id} ({}) disconnected: {why}", user.nick);
            self.release_nick(id, &user.nick);
            if let Some(b) = &self.backplane {
                if user.nick != ANONYMOUS {
                    b.send(Cmd::Release {
                        id: id.serial(),
                        keys: name_keys(&user.nick).to_vec(),
                    });
                }
            }
        }
    }

    fn unhandled(&mut self, hub: &mut Hub<'_>, id: ChannelId, msg: &Message) {
        self.unknown_action(hub, id, msg);
    }

    fn out_of_band(&mut self, hub: &mut Hub<'_>, id: ChannelId, oob: OutOfBand) {
        self.bad_input(hub, id, oob);
    }

    fn after_pump(&mut self, hub: &mut Hub<'_>) {
        if self.backplane.is_some() {
            self.take_incoming(hub);
        }
        if !self.stale.is_empty() {
            self.resync_stale(hub);
        }
        if self.dirty_rooms.is_empty() {
            return;
        }
        let time = now_ms();
        for name in std::mem::take(&mut self.dirty_rooms) {
            let Some(room) = self.rooms.get_mut(&name) else {
                continue;
            };
            let (joined, left, renamed) = (
                std::mem::take(&mut room.joined),
                std::mem::take(&mut room.left),
                std::mem::take(&mut room.renamed),
            );
            let list_dirty = std::mem::take(&mut room.list_dirty);
            let count = room.size();
            match self.tier(count) {
                Tier::FullList
                    if list_dirty
                        || !joined.is_empty()
                        || !left.is_empty()
                        || !renamed.is_empty() =>
                {
                    let players = self.member_nicks(&name);
                    let players: Vec<Cow<'static, str>> = players
                        .into_iter()
                        .map(|p| Cow::Owned(p.into_owned()))
                        .collect();
                    self.notify_room(
                        hub,
                        &name,
                        None,
                        &ServerMsg::Players {
                            players,
                            room: c(&name),
                        },
                    );
                }
                Tier::Deltas
                    if list_dirty
                        || !joined.is_empty()
                        || !left.is_empty()
                        || !renamed.is_empty() =>
                {
                    // Split so that no delta comes near the frame limit (32-character names:
                    // a chunk is at most about 40 KB).
                    let (mut joined, mut left, mut renamed) = (joined, left, renamed);
                    while !(joined.is_empty() && left.is_empty() && renamed.is_empty()) {
                        let j: Vec<String> = drain_up_to(&mut joined, DELTA_CHUNK);
                        let l: Vec<String> = drain_up_to(&mut left, DELTA_CHUNK - j.len());
                        let r = drain_up_to(&mut renamed, (DELTA_CHUNK - j.len() - l.len()) / 2);
                        let msg = ServerMsg::Members {
                            room: c(&name),
                            count,
                            joined: j,
                            left: l,
                            renamed: r,
                            time,
                        };
                        self.notify_room(hub, &name, None, &msg);
                    }
                }
                _ => {}
            }
        }
    }
}

// One line per action: each request is a typed payload handled on the chat state, with the
// sender's channel id.
impl Chat {
    fn network_nickname(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: SetNickname) {
        self.limited(hub, from, (Kind::Rename, "nickname"), |c, h| {
            c.set_nickname(h, from, m)
        });
    }
    fn network_message(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: Say) {
        self.limited(hub, from, (Kind::Message, "message"), |c, h| {
            c.say(h, from, m)
        });
    }
    fn network_private(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: SayPrivately) {
        self.limited(hub, from, (Kind::Private, "private"), |c, h| {
            c.private(h, from, m)
        });
    }
    fn network_who(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: Who) {
        self.limited(hub, from, (Kind::Query, "who"), |c, h| c.who(h, from, m));
    }
    fn network_rooms(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: Rooms) {
        self.limited(hub, from, (Kind::Query, "rooms"), |c, h| {
            c.rooms(h, from, m)
        });
    }
    fn network_join(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: Join) {
        self.limited(hub, from, (Kind::Join, "join"), |c, h| c.join(h, from, m));
    }
    fn network_part(&mut self, hub: &mut Hub<'_>, from: ChannelId, _m: &Message) {
        self.limited(hub, from, (Kind::Join, "part"), |c, h| c.part(h, from));
    }
    fn network_op(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: Op) {
        self.op(hub, from, m);
    }
    fn network_kick(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: Kick) {
        self.kick(hub, from, m);
    }
    fn network_quit(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: Quit) {
        self.quit(hub, from, m);
    }
    fn network_help(&mut self, hub: &mut Hub<'_>, from: ChannelId, _m: &Message) {
        let actions = ACTIONS.iter().map(|a| c(a)).collect();
        send(hub, from, &ServerMsg::Help { actions });
    }
    /// What a blank line of the line protocol stands for: nothing to do, nothing to answer.
    fn network_noop(&mut self, _: &mut Hub<'_>, _: ChannelId, _m: &Message) {}

    /// Unknown actions get a `refused` reply (`unknown-action`).
    fn unknown_action(&mut self, hub: &mut Hub<'_>, id: ChannelId, msg: &Message) {
        let r = Refusal::new(
            "unknown-action",
            format!("unknown action {:?}", msg.action()),
        );
        self.refuse(hub, id, msg.action(), r);
    }

    /// Mistyped or missing fields get `bad-request`; frames that are not messages `bad-frame`.
    fn bad_input(&mut self, hub: &mut Hub<'_>, id: ChannelId, oob: OutOfBand) {
        let (request, r) = match &oob.error {
            InboundError::Payload { action, source } => (
                action.as_str(),
                Refusal::new("bad-request", format!("{action}: {source}")),
            ),
            // A line that is no command (line protocol): the usage.
            InboundError::Decode(usage) => ("", Refusal::new("bad-request", usage.clone())),
            other => ("", Refusal::new("bad-frame", other.to_string())),
        };
        self.refuse(hub, id, request, r);
    }
}

handler!(Chat, "nickname" => network_nickname);
handler!(Chat, "message" => network_message);
handler!(Chat, "private" => network_private);
handler!(Chat, "who" => network_who);
handler!(Chat, "rooms" => network_rooms);
handler!(Chat, "join" => network_join);
handler!(Chat, "part" => network_part);
handler!(Chat, "op" => network_op);
handler!(Chat, "kick" => network_kick);
handler!(Chat, "quit" => network_quit);
handler!(Chat, "help" => network_help);
handler!(Chat, "noop" => network_noop); // crate::text::IGNORED_LINE
