//! The chat's side of a cluster: other nodes' users as their events describe them, and what
//! this node does with each [`Incoming`] its backplane hands over (at the end of a pump).

use std::collections::HashMap;

use netlib::ChannelId;

use super::{c, send, unavailable, Chat, Hub, Refusal, ServerMsg};
use crate::cluster::{Cmd, Event, Incoming, Presence, UserRef};
use crate::protocol::{name_keys, ANONYMOUS};

/// A user on another node.
#[derive(Debug, Clone)]
pub(super) struct RemoteUser {
    pub(super) nick: String,
    pub(super) room: String,
}

/// Every user on other nodes, and their nickname keys.
#[derive(Debug, Default)]
pub(super) struct Remote {
    pub(super) users: HashMap<UserRef, RemoteUser>,
    /// Nickname keys ([`name_keys`]) held on other nodes.
    pub(super) nicks: HashMap<String, UserRef>,
}

impl Remote {
    pub(super) fn nick(&self, u: &UserRef) -> Option<&str> {
        self.users.get(u).map(|r| r.nick.as_str())
    }

    fn claim(&mut self, u: &UserRef, nick: &str) {
        if nick != ANONYMOUS {
            for k in name_keys(nick) {
                self.nicks.insert(k, u.clone());
            }
        }
    }

    fn unclaim(&mut self, u: &UserRef, nick: &str) {
        for k in name_keys(nick) {
            if self.nicks.get(&k) == Some(u) {
                self.nicks.remove(&k);
            }
        }
    }
}

/// The channel id a remote user is shown with in notices: the top bit set, so that it is never
/// a local channel's (a client compares notice ids with its own), and stable for the user.
pub(super) fn shown_id(u: &UserRef) -> ChannelId {
    // FNV-1a of the node id, 31 bits, above the serial's low 32 bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in u.node.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    ChannelId::from_serial((1 << 63) | ((h & 0x7fff_ffff) << 32) | (u.id & 0xffff_ffff))
}

impl Chat {
    /// Takes in everything the backplane handed over since the last pump.
    pub(super) fn take_incoming(&mut self, hub: &mut Hub<'_>) {
        let Some(b) = &self.backplane else {
            return;
        };
        let incoming: Vec<Incoming> = b.rx.try_iter().collect();
        for i in incoming {
            match i {
                Incoming::Event(e) => self.on_event(hub, e),
                Incoming::Claimed { id, nick, ok } => self.on_claimed(hub, id, nick, ok),
                Incoming::Snapshot(nodes) => {
                    for (node, users) in nodes {
                        self.replace_node(&node, users);
                    }
                }
                Incoming::NodesGone(nodes) => {
                    for node in nodes {
                        log::info!("node {node} is gone");
                        let reason = format!("connection lost: node {node} is gone");
                        self.drop_node(hub, &node, &reason);
                    }
                }
                Incoming::Up => {
                    let list = self.local_presence();
                    if let Some(b) = &mut self.backplane {
                        b.up = true;
                        b.send(Cmd::Resync(list));
                    }
                }
                Incoming::Down => {
                    if let Some(b) = &mut self.backplane {
                        b.up = false;
                    }
                }
            }
        }
    }

    /// This node's users, with the nickname keys they hold.
    fn local_presence(&self) -> Vec<(Presence, Vec<String>)> {
        self.users
            .iter()
            .map(|(id, u)| {
                let keys = if u.nick == ANONYMOUS {
                    Vec::new()
                } else {
                    name_keys(&u.nick).to_vec()
                };
                (
                    Presence {
                        id: id.serial(),
                        nick: u.nick.clone(),
                        room: u.room.clone(),
                    },
                    keys,
                )
            })
            .collect()
    }

    fn on_claimed(&mut self, hub: &mut Hub<'_>, serial: u64, nick: String, ok: bool) {
        let id = ChannelId::from_serial(serial);
        if self.pending_claims.get(&id) != Some(&nick) || !self.users.contains_key(&id) {
            // The user left meanwhile: give the name back.
            if ok {
                if let Some(b) = &self.backplane {
                    b.send(Cmd::Release {
                        id: serial,
                        keys: name_keys(&nick).to_vec(),
                    });
                }
            }
            return;
        }
        self.pending_claims.remove(&id);
        if ok {
            self.apply_rename(hub, id, nick);
        } else if self.backplane.as_ref().is_some_and(|b| b.up) {
            let r = Refusal::new("nickname-taken", format!("nickname {nick:?} is taken"));
            self.refuse(hub, id, "nickname", r);
        } else {
            self.refuse(hub, id, "nickname", unavailable());
        }
    }

    fn on_event(&mut self, hub: &mut Hub<'_>, e: Event) {
        match e {
            Event::Joined { user, nick, room } => {
                // A room change is a `left` then a `joined`; a first `joined` is a new user.
                self.remote.claim(&user, &nick);
                self.remote.users.insert(
                    user.clone(),
                    super::remote::RemoteUser {
                        nick: nick.clone(),
                        room: room.clone(),
                    },
                );
                self.rooms
                    .entry(room.clone())
                    .or_default()
                    .remote
                    .insert(user.clone());
                self.announce_joined(hub, &room, &nick, shown_id(&user));
            }
            Event::Left {
                user,
                nick,
                room,
                reason,
                gone,
            } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.remote.swap_remove(&user);
                }
                if gone {
                    self.remote.users.remove(&user);
                    self.remote.unclaim(&user, &nick);
                }
                self.announce_left(hub, &room, &nick, shown_id(&user), &reason);
            }
            Event::Renamed {
                user,
                from,
                to,
                room,
            } => {
                self.remote.unclaim(&user, &from);
                self.remote.claim(&user, &to);
                if let Some(u) = self.remote.users.get_mut(&user) {
                    u.nick = to.clone();
                }
                if self.rooms.contains_key(&room) {
                    self.announce_renamed(hub, &room, (&from, &to), shown_id(&user), None);
                }
            }
            Event::Message {
                nick,
                room,
                text,
                time,
                ..
            } => {
                let msg = ServerMsg::Message {
                    message: c(&text),
                    who: c(&nick),
                    room: c(&room),
                    time,
                };
                self.to_room(hub, &room, None, &msg);
            }
            Event::Private {
                from,
                from_nick,
                to,
                to_nick,
                text,
                time,
            } => {
                let me = self.backplane.as_ref().map(|b| b.node.clone());
                if me.as_deref() != Some(to.node.as_str()) {
                    return;
                }
                let id = ChannelId::from_serial(to.id);
                if self.users.get(&id).is_some_and(|u| u.nick == to_nick) {
                    let msg = ServerMsg::Private {
                        message: c(&text),
                        who: c(&from_nick),
                        to: c(&to_nick),
                        time,
                        echo: false,
                    };
                    send(hub, id, &msg);
                } else if let Some(b) = &self.backplane {
                    b.send(Cmd::Publish(Event::PrivateFailed {
                        sender: from,
                        to_nick,
                    }));
                }
            }
            Event::PrivateFailed { sender, to_nick } => {
                if self.is_mine(&sender) {
                    let id = ChannelId::from_serial(sender.id);
                    let r = Refusal::new(
                        "undelivered",
                        format!("{to_nick:?} left before the private message reached them"),
                    );
                    if self.users.contains_key(&id) {
                        self.refuse(hub, id, "private", r);
                    }
                }
            }
            Event::Kick { target, by, reason } => {
                if self.is_mine(&target) {
                    let id = ChannelId::from_serial(target.id);
                    self.kick_local(hub, id, &by, &reason);
                }
            }
            Event::Hello { node } => {
                // Its users come with a snapshot the backplane reads on its next check; until
                // then, what its events said stands.
                log::info!("node {node} joined the cluster");
            }
        }
    }

    fn is_mine(&self, u: &UserRef) -> bool {
        self.backplane.as_ref().is_some_and(|b| b.node == u.node)
    }

    /// Removes `node`'s users from what this node knows (and from their rooms).
    fn take_node(&mut self, node: &str) -> Vec<(UserRef, RemoteUser)> {
        let refs: Vec<UserRef> = self
            .remote
            .users
            .keys()
            .filter(|u| u.node == node)
            .cloned()
            .collect();
        let mut taken = Vec::with_capacity(refs.len());
        for u in refs {
            if let Some(r) = self.remote.users.remove(&u) {
                self.remote.unclaim(&u, &r.nick);
                if let Some(room) = self.rooms.get_mut(&r.room) {
                    room.remote.swap_remove(&u);
                }
                taken.push((u, r));
            }
        }
        taken
    }

    /// Replaces what this node knows of `node`'s users with `users`, quietly (a resync, not
    /// news): the rooms' players lists are refreshed.
    fn replace_node(&mut self, node: &str, users: Vec<Presence>) {
        for (_, r) in self.take_node(node) {
            if let Some(room) = self.rooms.get_mut(&r.room) {
                room.list_dirty = true;
                self.dirty_rooms.insert(r.room);
            }
        }
        for p in users {
            let u = UserRef {
                node: node.to_owned(),
                id: p.id,
            };
            self.remote.claim(&u, &p.nick);
            let room = self.rooms.entry(p.room.clone()).or_default();
            room.remote.insert(u.clone());
            room.list_dirty = true;
            self.dirty_rooms.insert(p.room.clone());
            self.remote.users.insert(
                u,
                RemoteUser {
                    nick: p.nick,
                    room: p.room,
                },
            );
        }
        let empty: Vec<String> = self
            .rooms
            .iter()
            .filter(|(name, r)| r.size() == 0 && name.as_str() != crate::protocol::DEFAULT_ROOM)
            .map(|(n, _)| n.clone())
            .collect();
        for n in empty {
            self.rooms.remove(&n);
            self.dirty_rooms.remove(&n);
        }
    }

    /// `node`'s users are gone: each leaves its room with `reason`.
    fn drop_node(&mut self, hub: &mut Hub<'_>, node: &str, reason: &str) {
        for (u, r) in self.take_node(node) {
            self.announce_left(hub, &r.room, &r.nick, shown_id(&u), reason);
        }
    }
}
