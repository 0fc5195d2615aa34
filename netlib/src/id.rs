//! [`ChannelId`]: a channel's name for its whole life, on its server and across a cluster.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bits of a [`ChannelId`]'s serial number that count channels; the bits above them name the
/// node (0 without a cluster). 53 bits in all, so that ids stay exact in JavaScript.
pub const NODE_SHIFT: u32 = 37;

/// A cluster node's number, as its channels' ids carry it: 1 to 65 535, unique among the live
/// nodes and new at every start (an incarnation), so that an id of a process that died never
/// names a channel of its successor. 0 without a cluster.
pub type NodeNumber = u16;

/// The key of an id made from a serial number alone.
pub(crate) const NO_KEY: u32 = u32::MAX;

/// Identifies one channel of a server for its whole life. Never reused, even after the channel
/// closes, so a stale id cannot reach a newer client.
///
/// It serializes as its serial number (a JSON integer: a count from 1, with a cluster node's
/// number in the bits from [`NODE_SHIFT`] up; below 2^53, so exact in JavaScript), so a server can tell
/// a client who it is ([`ServerConfig::announce_id`](crate::ServerConfig::announce_id) puts it in the `connected` message) and
/// clients can name each other; a deserialized id finds its channel through that number.
#[derive(Clone, Copy)]
pub struct ChannelId {
    pub(crate) key: u32,
    pub(crate) serial: u64,
}

impl ChannelId {
    /// The number unique to this channel within its cluster: its node's number in the high
    /// bits (0 without a cluster adapter), then a count from 1. At most 2^53, so exact in
    /// JavaScript.
    pub fn serial(self) -> u64 {
        self.serial
    }

    /// The number of the cluster node the channel is on (0 without a cluster adapter; see
    /// [`Adapter`](crate::Adapter)).
    pub fn node(self) -> NodeNumber {
        (self.serial >> NODE_SHIFT) as NodeNumber
    }

    /// The id with serial number `serial`, as a peer names it (see the type's docs).
    pub fn from_serial(serial: u64) -> Self {
        ChannelId {
            key: NO_KEY,
            serial,
        }
    }
}

impl PartialEq for ChannelId {
    fn eq(&self, other: &Self) -> bool {
        self.serial == other.serial
    }
}
impl Eq for ChannelId {}
impl std::hash::Hash for ChannelId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.serial.hash(state)
    }
}
impl PartialOrd for ChannelId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ChannelId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.serial.cmp(&other.serial)
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelId(#{})", self.serial)
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.serial)
    }
}

impl Serialize for ChannelId {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u64(self.serial)
    }
}

impl<'de> Deserialize<'de> for ChannelId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        u64::deserialize(d).map(ChannelId::from_serial)
    }
}

impl From<ChannelId> for serde_json::Value {
    /// The serial number, as it serializes.
    fn from(id: ChannelId) -> Self {
        serde_json::Value::from(id.serial)
    }
}
