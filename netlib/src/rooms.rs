//! Rooms: named groups of a server's channels, for sends to many at once (Socket.IO's
//! `socket.join(room)` and `io.to(room).emit`). A pure table of channel keys, no I/O: the hub
//! keeps one and resolves a room send through it. Empty rooms are freed, and a server whose
//! channels join no room holds nothing for them. With a history
//! ([`ServerConfig::room_history`](crate::ServerConfig::room_history)), each room keeps its
//! last messages as sent (frames shared with the send, not copied), until it is freed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::error::RoomError;
use crate::frame::Frame;

/// Longest room name, in bytes.
pub(crate) const MAX_ROOM_NAME: usize = 255;

/// Which channels (by slab key) are in which room, both ways. A room's name is held once,
/// shared by its members' entries; a channel in one room (the usual case) costs one table
/// entry and no allocation of its own.
#[derive(Debug, Default)]
pub(crate) struct RoomTable {
    rooms: HashMap<Arc<str>, Members>,
    /// The rooms each channel is in, for channels in any.
    of: HashMap<usize, Joined>,
    /// The last messages sent to each room that has any (with a history configured).
    history: HashMap<Arc<str>, VecDeque<Frame>>,
}

/// A room's members: a dense list, iterated by every room send, and each one's place in it
/// (for removal in constant time).
#[derive(Debug, Default)]
struct Members {
    keys: Vec<usize>,
    at: HashMap<usize, usize>,
}

impl Members {
    fn insert(&mut self, key: usize) -> bool {
        if self.at.contains_key(&key) {
            return false;
        }
        self.at.insert(key, self.keys.len());
        self.keys.push(key);
        true
    }

    fn remove(&mut self, key: usize) -> bool {
        let Some(i) = self.at.remove(&key) else {
            return false;
        };
        self.keys.swap_remove(i);
        if let Some(&moved) = self.keys.get(i) {
            self.at.insert(moved, i);
        }
        true
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The rooms of one channel, in the order it joined them.
#[derive(Debug)]
enum Joined {
    One(Arc<str>),
    Many(Vec<Arc<str>>),
}

impl Joined {
    fn as_slice(&self) -> &[Arc<str>] {
        match self {
            Joined::One(room) => std::slice::from_ref(room),
            Joined::Many(rooms) => rooms,
        }
    }

    fn push(&mut self, room: Arc<str>) {
        match self {
            Joined::One(first) => *self = Joined::Many(vec![first.clone(), room]),
            Joined::Many(rooms) => rooms.push(room),
        }
    }

    /// Removes the `i`th room; whether none is left.
    fn remove(&mut self, i: usize) -> bool {
        let Joined::Many(rooms) = self else {
            return true;
        };
        rooms.remove(i);
        match &rooms[..] {
            [] => true,
            [only] => {
                *self = Joined::One(only.clone());
                false
            }
            _ => false,
        }
    }
}

impl RoomTable {
    /// Puts channel `key` in `room`; `Ok(false)` if it was in it already.
    ///
    /// # Errors
    /// [`RoomError::BadName`] for an empty name or one over 255 bytes;
    /// [`RoomError::TooManyRooms`] if the channel is in `cap` rooms already.
    pub(crate) fn join(&mut self, key: usize, room: &str, cap: usize) -> Result<bool, RoomError> {
        if room.is_empty() || room.len() > MAX_ROOM_NAME {
            return Err(RoomError::BadName {
                len: room.len(),
                limit: MAX_ROOM_NAME,
            });
        }
        let mine = self.of.get(&key).map_or(&[][..], Joined::as_slice);
        if mine.iter().any(|r| &**r == room) {
            return Ok(false);
        }
        if mine.len() >= cap {
            return Err(RoomError::TooManyRooms { limit: cap });
        }
        let name = match self.rooms.get_key_value(room) {
            Some((name, _)) => name.clone(),
            None => Arc::from(room),
        };
        match self.of.get_mut(&key) {
            Some(mine) => mine.push(name.clone()),
            None => {
                self.of.insert(key, Joined::One(name.clone()));
            }
        }
        self.rooms.entry(name).or_default().insert(key);
        Ok(true)
    }

    /// Takes channel `key` out of `room`; whether it was in it. An emptied room is freed.
    pub(crate) fn leave(&mut self, key: usize, room: &str) -> bool {
        let Some(mine) = self.of.get_mut(&key) else {
            return false;
        };
        let Some(i) = mine.as_slice().iter().position(|r| &**r == room) else {
            return false;
        };
        if mine.remove(i) {
            self.of.remove(&key);
        }
        self.remove_member(room, key);
        true
    }

    /// Takes channel `key` out of every room (it closed).
    pub(crate) fn leave_all(&mut self, key: usize) {
        if let Some(mine) = self.of.remove(&key) {
            for room in mine.as_slice() {
                self.remove_member(room, key);
            }
        }
    }

    fn remove_member(&mut self, room: &str, key: usize) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.remove(key);
            if members.is_empty() {
                self.rooms.remove(room);
                self.history.remove(room);
            }
        }
    }

    /// The rooms channel `key` is in, in the order it joined them (but for leaves).
    pub(crate) fn rooms_of(&self, key: usize) -> &[Arc<str>] {
        self.of.get(&key).map_or(&[], Joined::as_slice)
    }

    /// The channels in `room` (none if there is no such room).
    pub(crate) fn members(&self, room: &str) -> impl Iterator<Item = usize> + '_ {
        self.rooms
            .get(room)
            .into_iter()
            .flat_map(|m| m.keys.iter())
            .copied()
    }

    /// How many channels `room` holds.
    pub(crate) fn len(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, Members::len)
    }

    /// Every room with its member count.
    pub(crate) fn names(&self) -> impl Iterator<Item = (&str, usize)> + '_ {
        self.rooms.iter().map(|(name, m)| (&**name, m.len()))
    }

    /// The channels in any of `rooms`, each once.
    pub(crate) fn union(&self, rooms: &[Box<str>]) -> HashSet<usize> {
        rooms.iter().flat_map(|r| self.members(r)).collect()
    }

    /// Keeps `frame` as `room`'s latest message, `cap` at most (the oldest go); nothing for a
    /// room with no member here.
    pub(crate) fn record(&mut self, room: &str, frame: &Frame, cap: usize) {
        if cap == 0 {
            return;
        }
        let Some((name, _)) = self.rooms.get_key_value(room) else {
            return;
        };
        let kept = match self.history.get_mut(room) {
            Some(kept) => kept,
            None => self.history.entry(name.clone()).or_default(),
        };
        if kept.len() >= cap {
            kept.pop_front();
        }
        kept.push_back(frame.clone());
    }

    /// The last `n` messages sent to `room`, oldest first.
    pub(crate) fn history(&self, room: &str, n: usize) -> impl Iterator<Item = &Frame> + '_ {
        let kept = self.history.get(room);
        let skip = kept.map_or(0, |k| k.len().saturating_sub(n));
        kept.into_iter().flatten().skip(skip)
    }

    /// Whether the table holds nothing (no room, no membership, no history).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.rooms.is_empty() && self.of.is_empty() && self.history.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_leaves_both_ways_and_empty_rooms_are_freed() {
        let mut t = RoomTable::default();
        assert_eq!(t.join(1, "lobby", 8), Ok(true));
        assert_eq!(t.join(1, "lobby", 8), Ok(false), "once");
        assert_eq!(t.join(2, "lobby", 8), Ok(true));
        assert_eq!(t.join(1, "red", 8), Ok(true));
        assert_eq!(t.len("lobby"), 2);
        assert_eq!(t.rooms_of(1), [Arc::from("lobby"), Arc::from("red")]);
        let mut both: Vec<usize> = t
            .union(&["lobby".into(), "red".into()])
            .into_iter()
            .collect();
        both.sort();
        assert_eq!(both, [1, 2], "each once");
        assert!(t.leave(1, "red"));
        assert!(!t.leave(1, "red"));
        assert_eq!(t.rooms_of(1), [Arc::from("lobby")], "back to one room");
        assert!(t.leave(1, "lobby"));
        assert!(t.rooms_of(1).is_empty());
        assert_eq!(t.join(1, "lobby", 8), Ok(true));
        assert_eq!(t.names().count(), 1, "red was freed");
        t.leave_all(1);
        t.leave_all(2);
        assert!(t.is_empty(), "nothing held once no channel is in a room");
    }

    #[test]
    fn members_stay_listed_once_through_any_order_of_leaves() {
        let mut t = RoomTable::default();
        for key in 0..6 {
            assert_eq!(t.join(key, "lobby", 8), Ok(true));
        }
        for key in [0, 5, 2] {
            assert!(t.leave(key, "lobby"));
        }
        let mut left: Vec<usize> = t.members("lobby").collect();
        left.sort();
        assert_eq!(left, [1, 3, 4]);
        assert_eq!(t.len("lobby"), 3);
        assert_eq!(t.join(2, "lobby", 8), Ok(true));
        assert!(t.leave(4, "lobby") && t.leave(1, "lobby"));
        let mut left: Vec<usize> = t.members("lobby").collect();
        left.sort();
        assert_eq!(left, [2, 3]);
    }

    #[test]
    fn a_room_keeps_its_last_messages_until_it_is_freed() {
        let frame = |n: u8| Frame::new(bytes::Bytes::from(vec![n]), Vec::new());
        let mut t = RoomTable::default();
        t.record("lobby", &frame(0), 2);
        assert_eq!(t.history("lobby", 10).count(), 0, "no room, no history");
        assert_eq!(t.join(1, "lobby", 8), Ok(true));
        for n in 1..=3 {
            t.record("lobby", &frame(n), 2);
        }
        let kept: Vec<u8> = t.history("lobby", 10).map(|f| f.for_wire(0)[0]).collect();
        assert_eq!(kept, [2, 3], "the last two, oldest first");
        let last: Vec<u8> = t.history("lobby", 1).map(|f| f.for_wire(0)[0]).collect();
        assert_eq!(last, [3]);
        t.record("lobby", &frame(9), 0);
        assert_eq!(
            t.history("lobby", 10).count(),
            2,
            "no history configured: nothing kept"
        );
        t.leave_all(1);
        assert!(t.is_empty(), "freed with its room");
    }

    #[test]
    fn the_cap_and_the_name_are_checked() {
        let mut t = RoomTable::default();
        assert_eq!(t.join(1, "a", 2), Ok(true));
        assert_eq!(t.join(1, "b", 2), Ok(true));
        assert_eq!(t.join(1, "c", 2), Err(RoomError::TooManyRooms { limit: 2 }));
        assert_eq!(t.join(1, "a", 2), Ok(false), "rejoining is no new room");
        assert!(matches!(t.join(2, "", 2), Err(RoomError::BadName { .. })));
        let long = "x".repeat(MAX_ROOM_NAME + 1);
        assert!(matches!(
            t.join(2, &long, 2),
            Err(RoomError::BadName { .. })
        ));
        assert!(t.rooms_of(2).is_empty());
        assert_eq!(t.join(3, "c", 0), Err(RoomError::TooManyRooms { limit: 0 }));
        assert!(t.rooms_of(3).is_empty());
    }
}
