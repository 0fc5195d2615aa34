//! The chat's side of a cluster: other nodes' users as their events describe them, and what
//! this node does with each [`Incoming`] its backplane hands over (at the end of a pump).

use std::collections::HashMap;

use netlib::ChannelId;

use super::{c, send, unavailable, Chat, Hub, Refusal, ServerMsg};
use crate::cluster::{Cmd, Event, Incoming, NodeUsers, Presence, UserRef};
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
    /// Each other node's live incarnation, as last learnt (a `hello`, a snapshot, or its first
    /// event): events of any other incarnation of that node are stale and dropped.
    incs: HashMap<String, u64>,
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
    // FNV-1a of the node id and incarnation, 31 bits, above the serial's low 32 bits: a
    // restarted node's channel 5 is not shown as its earlier incarnation's.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in u.node.bytes().chain(u.inc.to_le_bytes()) {
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
                Incoming::Event { node, inc, event } => {
                    if self.current(hub, &node, inc, &event) {
                        self.on_event(hub, event);
                    }
                }
                Incoming::Claimed { id, nick, ok } => self.on_claimed(hub, id, nick, ok),
                Incoming::Snapshot(nodes) => {
                    for NodeUsers { node, inc, users } in nodes {
                        if self.backplane.as_ref().is_some_and(|b| b.node == node) {
                            continue;
                        }
                        self.adopt(hub, &node, inc);
                        self.replace_node(&node, inc, users);
                    }
                }
                Incoming::NodesGone(nodes) => {
                    for (node, inc) in nodes {
                        if self.backplane.as_ref().is_some_and(|b| b.node == node) {
                            continue; // an earlier process of this node: reaped, no users here
                        }
                        if self.remote.incs.get(&node) == Some(&inc) {
                            self.remote.incs.remove(&node);
                        }
                        log::info!("node {node} (incarnation {inc}) is gone");
                        let reason = format!("connection lost: node {node} is gone");
                        self.drop_node(hub, &node, |i| i == inc, &reason);
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
                let Some(b) = &self.backplane else {
                    return;
                };
                if b.node != to.node {
                    return;
                }
                // For this node id but an earlier incarnation: that user is gone, whoever has
                // the same channel number now.
                let id = ChannelId::from_serial(to.id);
                if b.inc == to.inc && self.users.get(&id).is_some_and(|u| u.nick == to_nick) {
                    let msg = ServerMsg::Private {
                        message: c(&text),
                        who: c(&from_nick),
                        to: c(&to_nick),
                        time,
                        echo: false,
                    };
                    send(hub, id, &msg);
                } else {
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
            Event::Hello { node, inc } => {
                // Its users come with a snapshot the subscriber reads right after; until then,
                // what its events said stands (an earlier incarnation's users are gone:
                // `current`).
                log::info!("node {node} (incarnation {inc}) joined the cluster");
            }
        }
    }

    fn is_mine(&self, u: &UserRef) -> bool {
        self.backplane.as_ref().is_some_and(|b| b.is_mine(u))
    }

    /// Whether an event of incarnation `inc` of `node` is current, learning `node`'s live
    /// incarnation on the way: a `hello` of a new one makes the earlier one's users leave (a
    /// restart); any other event of an incarnation that is not the live one is stale (e.g. a
    /// process that lost its node id) and dropped, as is anything from another process with
    /// this node's own id.
    fn current(&mut self, hub: &mut Hub<'_>, node: &str, inc: u64, event: &Event) -> bool {
        if self.backplane.as_ref().is_some_and(|b| b.node == node) {
            log::warn!("ignoring an event of another process with this node's id ({inc})");
            return false;
        }
        match self.remote.incs.get(node) {
            Some(&live) if live != inc => {
                if matches!(event, Event::Hello { .. }) {
                    self.adopt(hub, node, inc);
                    true
                } else {
                    log::debug!("ignoring an event of node {node}'s old incarnation {inc}");
                    false
                }
            }
            Some(_) => true,
            None => {
                self.adopt(hub, node, inc);
                true
            }
        }
    }

    /// `inc` is `node`'s live incarnation: the users of any other leave every room.
    fn adopt(&mut self, hub: &mut Hub<'_>, node: &str, inc: u64) {
        if let Some(old) = self.remote.incs.insert(node.to_owned(), inc) {
            if old != inc {
                log::info!("node {node} restarted (incarnation {old} is gone, {inc} is live)");
            }
        }
        let reason = format!("connection lost: node {node} restarted");
        self.drop_node(hub, node, |i| i != inc, &reason);
    }

    /// Removes the users of `node`'s incarnations that `which` picks from what this node knows
    /// (and from their rooms).
    fn take_node(&mut self, node: &str, which: impl Fn(u64) -> bool) -> Vec<(UserRef, RemoteUser)> {
        let refs: Vec<UserRef> = self
            .remote
            .users
            .keys()
            .filter(|u| u.node == node && which(u.inc))
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

    /// Replaces what this node knows of incarnation `inc` of `node`'s users with `users`,
    /// quietly (a resync, not news): the rooms' players lists are refreshed.
    fn replace_node(&mut self, node: &str, inc: u64, users: Vec<Presence>) {
        for (_, r) in self.take_node(node, |i| i == inc) {
            if let Some(room) = self.rooms.get_mut(&r.room) {
                room.list_dirty = true;
                self.dirty_rooms.insert(r.room);
            }
        }
        for p in users {
            let u = UserRef {
                node: node.to_owned(),
                inc,
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

    /// The users of `node`'s incarnations that `which` picks are gone: each leaves its room
    /// with `reason`.
    fn drop_node(
        &mut self,
        hub: &mut Hub<'_>,
        node: &str,
        which: impl Fn(u64) -> bool,
        reason: &str,
    ) {
        for (u, r) in self.take_node(node, which) {
            self.announce_left(hub, &r.room, &r.nick, shown_id(&u), reason);
        }
    }
}
