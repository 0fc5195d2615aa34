//! The chat server: [`Chat`] holds users and rooms, keyed by channel id, and handles every
//! request itself (one handler per action on the server type, registered with
//! `netlib::handler!`), so channels carry no state of their own.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use indexmap::IndexSet;

use netlib::{
    handler, ChannelId, CloseReason, Error, Message, OutOfBand, ServerContext, ServerHandler,
};

use crate::protocol::{
    c, check_message, check_name, now_ms, Join, Kick, Op, Quit, Refusal, RoomEntry, RoomPolicy,
    Say, SayPrivately, ServerMsg, SetNickname, Tier, Who, WhoEntry, ACTIONS, ANONYMOUS,
    DEFAULT_ROOM, RESERVED_NICKNAMES,
};

/// All chat state lives in [`Chat`], keyed by channel id: channels carry none.
type Hub<'a> = ServerContext<'a, ()>;

/// Server settings.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The operator password; `None` disables `op`.
    pub op_password: Option<String>,
    /// Which rooms get which membership traffic.
    pub rooms: RoomPolicy,
}

#[derive(Debug)]
struct User {
    nick: String,
    room: String,
    op: bool,
    /// Set by quit or kick: the reason the room is told when the channel closes.
    leaving: Option<String>,
}

#[derive(Debug, Default)]
struct Room {
    /// Members, iterated densely for broadcasts (insertion order, O(1) removal).
    members: IndexSet<ChannelId>,
    /// Membership changed since the last `players` list (small rooms).
    list_dirty: bool,
    joined: Vec<String>,
    left: Vec<String>,
    renamed: Vec<(String, String)>,
}

/// The chat server's state: every user and room.
#[derive(Debug, Default)]
pub struct Chat {
    settings: Settings,
    users: HashMap<ChannelId, User>,
    /// Lower-cased claimed nickname to its user.
    nicks: HashMap<String, ChannelId>,
    rooms: HashMap<String, Room>,
    /// Rooms with membership updates to send at the end of the pump.
    dirty_rooms: HashSet<String>,
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
            ..Chat::default()
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
        log::info!(
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

    fn enter(&mut self, hub: &mut Hub<'_>, id: ChannelId, room_name: &str) {
        let nick = self.users[&id].nick.clone();
        let room = self.rooms.entry(room_name.to_owned()).or_default();
        room.members.insert(id);
        let size = room.members.len();
        let time = now_ms();
        match self.tier(size) {
            Tier::FullList => {
                self.to_room(
                    hub,
                    room_name,
                    Some(id),
                    &ServerMsg::Joined {
                        nickname: c(&nick),
                        id,
                        room: c(room_name),
                        time,
                    },
                );
                self.rooms.get_mut(room_name).expect("just made").list_dirty = true;
                self.dirty_rooms.insert(room_name.to_owned());
            }
            Tier::Deltas => {
                self.rooms
                    .get_mut(room_name)
                    .expect("just made")
                    .joined
                    .push(nick.clone());
                self.dirty_rooms.insert(room_name.to_owned());
                send(
                    hub,
                    id,
                    &ServerMsg::Players {
                        players: self.member_nicks(room_name),
                        room: c(room_name),
                    },
                );
            }
            Tier::Quiet => {}
        }
        self.users.get_mut(&id).expect("user").room = room_name.to_owned();
        send(
            hub,
            id,
            &ServerMsg::Welcome {
                nickname: c(&nick),
                id,
                room: c(room_name),
                members: size,
                time,
            },
        );
    }

    fn leave(&mut self, hub: &mut Hub<'_>, id: ChannelId, reason: &str) {
        let Some(user) = self.users.get(&id) else {
            return;
        };
        let (nick, room_name) = (user.nick.clone(), user.room.clone());
        let Some(room) = self.rooms.get_mut(&room_name) else {
            return;
        };
        room.members.swap_remove(&id);
        let size = room.members.len();
        if size == 0 && room_name != DEFAULT_ROOM {
            self.rooms.remove(&room_name);
            self.dirty_rooms.remove(&room_name);
            return;
        }
        match self.tier(size + 1) {
            Tier::FullList => {
                let time = now_ms();
                self.to_room(
                    hub,
                    &room_name,
                    None,
                    &ServerMsg::Left {
                        nickname: c(&nick),
                        id,
                        room: c(&room_name),
                        reason: c(reason),
                        time,
                    },
                );
                self.rooms.get_mut(&room_name).expect("exists").list_dirty = true;
                self.dirty_rooms.insert(room_name);
            }
            Tier::Deltas => {
                self.rooms
                    .get_mut(&room_name)
                    .expect("exists")
                    .left
                    .push(nick);
                self.dirty_rooms.insert(room_name);
            }
            Tier::Quiet => {}
        }
    }

    fn member_nicks(&self, room: &str) -> Vec<Cow<'_, str>> {
        let mut v: Vec<Cow<'_, str>> = self.rooms[room]
            .members
            .iter()
            .map(|m| c(&self.users[m].nick))
            .collect();
        v.sort_unstable_by_key(|n| n.to_lowercase());
        v
    }

    fn set_nickname(&mut self, hub: &mut Hub<'_>, id: ChannelId, m: SetNickname) {
        let new = m.nickname;
        if let Err(r) = check_name("nickname", &new) {
            return self.refuse(hub, id, "nickname", r);
        }
        let key = new.to_lowercase();
        if RESERVED_NICKNAMES.contains(&key.as_str()) {
            let r = Refusal::new(
                "nickname-reserved",
                format!("{new:?} is reserved (users without a nickname, and the line protocol's [server] and [you -> ...])"),
            );
            return self.refuse(hub, id, "nickname", r);
        }
        if let Some(&owner) = self.nicks.get(&key) {
            if owner != id {
                let r = Refusal::new("nickname-taken", format!("nickname {new:?} is taken"));
                return self.refuse(hub, id, "nickname", r);
            }
        }
        let user = self.users.get_mut(&id).expect("user");
        let old = std::mem::replace(&mut user.nick, new.clone());
        let room_name = user.room.clone();
        self.nicks.remove(&old.to_lowercase());
        self.nicks.insert(key, id);
        log::info!("{id}: {old} is now known as {new}");
        let time = now_ms();
        let size = self.rooms[&room_name].members.len();
        let notice = ServerMsg::Renamed {
            from: c(&old),
            to: c(&new),
            id,
            room: c(&room_name),
            time,
        };
        match self.tier(size) {
            Tier::FullList => {
                self.to_room(hub, &room_name, None, &notice);
                self.rooms.get_mut(&room_name).expect("room").list_dirty = true;
                self.dirty_rooms.insert(room_name.clone());
            }
            tier => {
                send(hub, id, &notice);
                if tier == Tier::Deltas {
                    self.rooms
                        .get_mut(&room_name)
                        .expect("room")
                        .renamed
                        .push((old.clone(), new.clone()));
                    self.dirty_rooms.insert(room_name.clone());
                }
            }
        }
    }

    fn say(&mut self, hub: &mut Hub<'_>, id: ChannelId, m: Say) {
        if let Err(r) = check_message(&m.message) {
            return self.refuse(hub, id, "message", r);
        }
        let user = &self.users[&id];
        let msg = ServerMsg::Message {
            message: c(&m.message),
            who: c(&user.nick),
            room: c(&user.room),
            time: now_ms(),
        };
        self.to_room(hub, &user.room, None, &msg);
    }

    fn private(&mut self, hub: &mut Hub<'_>, id: ChannelId, m: SayPrivately) {
        if let Err(r) = check_message(&m.message) {
            return self.refuse(hub, id, "private", r);
        }
        let Some(&to) = self.nicks.get(&m.to.to_lowercase()) else {
            let r = Refusal::new("unknown-nickname", format!("nobody is called {:?}", m.to));
            return self.refuse(hub, id, "private", r);
        };
        let mut msg = ServerMsg::Private {
            message: c(&m.message),
            who: c(&self.users[&id].nick),
            to: c(&self.users[&to].nick),
            time: now_ms(),
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
        let mut users: Vec<WhoEntry> = match &m.room {
            None => self
                .users
                .values()
                .map(|u| WhoEntry {
                    nickname: u.nick.clone(),
                    room: u.room.clone(),
                })
                .collect(),
            Some(room) => match self.rooms.get(room) {
                Some(r) => r
                    .members
                    .iter()
                    .map(|m| WhoEntry {
                        nickname: self.users[m].nick.clone(),
                        room: room.clone(),
                    })
                    .collect(),
                None => {
                    let r = Refusal::new("unknown-room", format!("there is no room {room:?}"));
                    return self.refuse(hub, id, "who", r);
                }
            },
        };
        users.sort_by_key(|u| (u.nickname.to_lowercase(), u.room.clone()));
        send(
            hub,
            id,
            &ServerMsg::Who {
                users,
                room: m.room.as_deref().map(c),
            },
        );
    }

    fn rooms(&self, hub: &mut Hub<'_>, id: ChannelId) {
        let mut rooms: Vec<RoomEntry> = self
            .rooms
            .iter()
            .map(|(name, r)| RoomEntry {
                name: name.clone(),
                members: r.members.len(),
            })
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        send(hub, id, &ServerMsg::Rooms { rooms });
    }

    fn join(&mut self, hub: &mut Hub<'_>, id: ChannelId, m: Join) {
        if let Err(r) = check_name("room name", &m.room) {
            return self.refuse(hub, id, "join", r);
        }
        if self.users[&id].room == m.room {
            let r = Refusal::new(
                "already-in-room",
                format!("you are in {:?} already", m.room),
            );
            return self.refuse(hub, id, "join", r);
        }
        let reason = format!("went to {}", m.room);
        self.leave(hub, id, &reason);
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
        self.leave(hub, id, &format!("left {room}"));
        self.enter(hub, id, DEFAULT_ROOM);
    }

    fn op(&mut self, hub: &mut Hub<'_>, id: ChannelId, m: Op) {
        match &self.settings.op_password {
            None => {
                let r = Refusal::new("op-disabled", "this server has no operator password");
                self.refuse(hub, id, "op", r)
            }
            Some(p) if *p == m.password => {
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
        let Some(&target) = self.nicks.get(&m.nickname.to_lowercase()) else {
            let r = Refusal::new(
                "unknown-nickname",
                format!("nobody is called {:?}", m.nickname),
            );
            return self.refuse(hub, id, "kick", r);
        };
        let by = self.users[&id].nick.clone();
        let reason = m.reason.unwrap_or_else(|| "no reason given".to_owned());
        let victim = self.users.get_mut(&target).expect("user");
        log::info!("{by} kicked {} ({target}): {reason}", victim.nick);
        victim.leaving = Some(format!("kicked by {by}: {reason}"));
        send(
            hub,
            target,
            &ServerMsg::Kicked {
                by: c(&by),
                reason: c(&reason),
                time: now_ms(),
            },
        );
        hub.close_channel(target);
    }

    fn quit(&mut self, hub: &mut Hub<'_>, id: ChannelId, m: Quit) {
        let reason = match m.reason.as_deref().map(str::trim) {
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
                leaving: None,
            },
        );
        self.enter(hub, id, DEFAULT_ROOM);
    }

    fn closed(&mut self, hub: &mut Hub<'_>, id: ChannelId, _channel: (), reason: &CloseReason) {
        let why = match self.users.get(&id).and_then(|u| u.leaving.clone()) {
            Some(r) => r,
            None => match reason {
                CloseReason::PeerClosed => "disconnected".to_owned(),
                other => format!("connection lost: {other}"),
            },
        };
        self.leave(hub, id, &why);
        if let Some(user) = self.users.remove(&id) {
            log::info!("{id} ({}) disconnected: {why}", user.nick);
            if self.nicks.get(&user.nick.to_lowercase()) == Some(&id) {
                self.nicks.remove(&user.nick.to_lowercase());
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
            let count = room.members.len();
            match self.tier(count) {
                Tier::FullList
                    if list_dirty
                        || !joined.is_empty()
                        || !left.is_empty()
                        || !renamed.is_empty() =>
                {
                    let players = self.member_nicks(&name);
                    self.to_room(
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
                    let msg = ServerMsg::Members {
                        room: c(&name),
                        count,
                        joined,
                        left,
                        renamed,
                        time,
                    };
                    self.to_room(hub, &name, None, &msg);
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
        self.set_nickname(hub, from, m);
    }
    fn network_message(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: Say) {
        self.say(hub, from, m);
    }
    fn network_private(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: SayPrivately) {
        self.private(hub, from, m);
    }
    fn network_who(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: Who) {
        self.who(hub, from, m);
    }
    fn network_rooms(&mut self, hub: &mut Hub<'_>, from: ChannelId, _m: &Message) {
        self.rooms(hub, from);
    }
    fn network_join(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: Join) {
        self.join(hub, from, m);
    }
    fn network_part(&mut self, hub: &mut Hub<'_>, from: ChannelId, _m: &Message) {
        self.part(hub, from);
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
            Error::Payload { action, source } => (
                action.as_str(),
                Refusal::new("bad-request", format!("{action}: {source}")),
            ),
            // A line that is no command (line protocol): the usage.
            Error::Decode(usage) => ("", Refusal::new("bad-request", usage.clone())),
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
