//! [`Bus`]: an in-process cluster backplane, so that several [`Server`](netlib::Server)s in one
//! test process share rooms, sends, names and presence in memory, through the public
//! [`Adapter`] seam only.
//!
//! ```
//! use std::time::Duration;
//! use netlib::{ManualClock, Server, ServerConfig};
//! # use netlib::{ChannelId, ServerContext, ServerHandler};
//! # struct Game;
//! # impl ServerHandler for Game { type Channel = ();
//! #   fn connected(&mut self, _: &mut ServerContext<'_, ()>, _: ChannelId, _: std::net::SocketAddr) {} }
//! use netlib_tests::bus::Bus;
//!
//! let clock = ManualClock::new();
//! let bus = Bus::new(Duration::from_secs(10));
//! let config = || ServerConfig::default().clock(clock.clone());
//! let mut a = Server::with_adapter(Game, config(), bus.adapter())?; // node 1
//! let mut b = Server::with_adapter(Game, config(), bus.adapter())?; // node 2
//! let (id, _client) = b.connect_local(Default::default())?;
//! assert_eq!(id.node(), 2);
//! # let _ = &mut a;
//! # Ok::<(), netlib::Error>(())
//! ```
//!
//! The model, as a backplane such as Redis gives it:
//! - Every call is applied at once, under one lock: what a node sends is queued for the other
//!   nodes in the order it was sent, and taken by their next [`poll`](Adapter::poll); the
//!   node's waker (from [`set_waker`](Adapter::set_waker)) is woken whenever something is
//!   queued for it.
//! - Presence: each `poll(now, ..)` refreshes the polling node's presence at `now`. A node whose
//!   last poll is `presence_ttl` or more behind the latest `now` any node passed is dead (all
//!   nodes of a test share one [`ManualClock`](netlib::ManualClock), so advance it in steps
//!   shorter than the TTL, pumping in between): its channels depart, its names and
//!   memberships are released. A dead node stays dead (fenced): if it polls again it gets
//!   nothing and what it does is ignored.
//! - [`Bus::kill`] stops a node as SIGKILL would: it no longer refreshes its presence and gets
//!   nothing more, but the others only learn it when its presence expires. Dropping a node's
//!   adapter (dropping its server) does the same.
//! - A new node gets `ClusterEvent::Up` first. A node whose presence expired is
//!   `ClusterEvent::NodeGone` to the others, after its channels' departures. Node-to-node
//!   messages ([`Adapter::emit`]) are queued like room sends, in order with them.
//! - [`Bus::set_available`]`(false)` is an outage of the backplane: every running node gets
//!   `ClusterEvent::Down` (and `Up` when it ends); room sends are held and reach the other
//!   nodes, in order, after their `Up` when it ends (as netlib-redis holds them); sends to
//!   other nodes and node messages fail with [`ClusterError::Unavailable`], claims are answered with it, and
//!   members queries wait until it is back (an adapter may answer `ClusterEvent::QueryFailed`
//!   instead; the bus answers late rather than not at all).
//!   Membership changes, releases and departures are state, not traffic: they are still
//!   applied, as an adapter would replay them once the backplane is back.
//!
//! What the bus knows of a node's channels comes from the seam: a channel is known once it
//! joined a room or claimed a name, until it closes. A node that dies is departed for its
//! known channels only (the bus does not use the seam's `opened` call).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use netlib::{Adapter, ChannelId, ClusterError, ClusterEvent, ClusterInbound, NodeNumber};

/// Several servers' shared cluster, in memory (see the [module docs](self)). Cheap to clone:
/// clones are the same bus.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Mutex<State>>,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state();
        f.debug_struct("Bus")
            .field("presence_ttl", &s.ttl)
            .field("available", &s.available)
            .field("live", &s.live().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A members query waiting for the bus to be available again.
struct Query {
    node: NodeNumber,
    room: String,
    after: Option<ChannelId>,
    limit: usize,
    token: u64,
}

/// One node, from its start on (dead ones are kept, so that their numbers are never reused).
#[derive(Default)]
struct Node {
    /// Stopped by [`Bus::kill`] (or its adapter dropped): gets nothing, does nothing.
    killed: bool,
    /// Its presence expired: its channels departed.
    dead: bool,
    /// Its last poll's `now` (`None` until the bus has seen any time).
    seen: Option<Instant>,
    inbox: Vec<ClusterInbound>,
    waker: Option<Arc<mio::Waker>>,
    /// Its channels the bus knows of (in a room or holding a name).
    channels: BTreeSet<ChannelId>,
}

impl Node {
    /// Whether it takes part: neither killed nor dead.
    fn running(&self) -> bool {
        !self.killed && !self.dead
    }
}

struct State {
    ttl: Duration,
    available: bool,
    /// Every node ever made, by number.
    nodes: BTreeMap<NodeNumber, Node>,
    /// The latest `now` any node polled with.
    latest: Option<Instant>,
    /// Cluster-wide membership, both ways.
    rooms: BTreeMap<String, BTreeSet<ChannelId>>,
    rooms_of: HashMap<ChannelId, BTreeSet<String>>,
    /// Cluster-wide names, both ways.
    names: HashMap<String, ChannelId>,
    names_of: HashMap<ChannelId, BTreeSet<String>>,
    /// Members queries made while unavailable.
    deferred: Vec<Query>,
    /// Room sends made while unavailable, with their node: delivered when it is back.
    held: Vec<(NodeNumber, ClusterInbound)>,
}

impl State {
    /// The nodes not dead, in number order.
    fn live(&self) -> impl Iterator<Item = NodeNumber> + '_ {
        self.nodes
            .iter()
            .filter(|(_, n)| !n.dead)
            .map(|(&number, _)| number)
    }

    fn running(&self, node: NodeNumber) -> bool {
        self.nodes.get(&node).is_some_and(Node::running)
    }

    /// Queues `item` for `node` if it is running, and wakes it.
    fn push(&mut self, node: NodeNumber, item: ClusterInbound) {
        let Some(n) = self.nodes.get_mut(&node).filter(|n| n.running()) else {
            return;
        };
        n.inbox.push(item);
        if let Some(waker) = &n.waker {
            let _ = waker.wake(); // the server is gone if this fails: nothing to wake
        }
    }

    /// Queues `item` for every running node but `but`.
    fn push_others(&mut self, but: Option<NodeNumber>, item: &ClusterInbound) {
        let others: Vec<NodeNumber> = self.live().filter(|&n| Some(n) != but).collect();
        for node in others {
            self.push(node, item.clone());
        }
    }

    /// Channel `id` is gone: out of its rooms, its names released, the other nodes told.
    fn depart(&mut self, id: ChannelId) {
        if let Some(node) = self.nodes.get_mut(&id.node()) {
            node.channels.remove(&id);
        }
        for room in self.rooms_of.remove(&id).unwrap_or_default() {
            self.leave(id, &room);
        }
        for name in self.names_of.remove(&id).unwrap_or_default() {
            self.names.remove(&name);
        }
        let departed = ClusterInbound::Event(ClusterEvent::Departed { id });
        self.push_others(Some(id.node()), &departed);
    }

    fn leave(&mut self, id: ChannelId, room: &str) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.remove(&id);
            if members.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    /// Declares dead every node whose presence is `ttl` or more behind `latest`.
    fn expire(&mut self) {
        let Some(latest) = self.latest else {
            return;
        };
        let ttl = self.ttl;
        let mut expired = Vec::new();
        for (&number, node) in &mut self.nodes {
            let seen = *node.seen.get_or_insert(latest);
            if !node.dead && latest.saturating_duration_since(seen) >= ttl {
                node.dead = true;
                node.inbox.clear();
                node.waker = None;
                expired.push(number);
            }
        }
        for number in expired {
            let channels =
                std::mem::take(&mut self.nodes.get_mut(&number).expect("listed").channels);
            for id in channels {
                self.depart(id);
            }
            let gone = ClusterInbound::Event(ClusterEvent::NodeGone { node: number });
            self.push_others(Some(number), &gone);
        }
    }

    /// Answers a members query to its node.
    fn answer(&mut self, q: Query) {
        let members = self.rooms.get(&q.room);
        let mut page: Vec<ChannelId> = members
            .into_iter()
            .flat_map(|m| match q.after {
                Some(after) => {
                    m.range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                }
                None => m.range(..),
            })
            .copied()
            .take(q.limit.saturating_add(1))
            .collect();
        let next = (page.len() > q.limit).then(|| page[q.limit - 1]);
        page.truncate(q.limit);
        let event = ClusterEvent::Members {
            token: q.token,
            room: q.room,
            page,
            next,
        };
        self.push(q.node, ClusterInbound::Event(event));
    }
}

impl Bus {
    /// A bus with no node yet, on which a node is dead once it has not polled for
    /// `presence_ttl` (see the [module docs](self)).
    pub fn new(presence_ttl: Duration) -> Bus {
        Bus {
            inner: Arc::new(Mutex::new(State {
                ttl: presence_ttl,
                available: true,
                nodes: BTreeMap::new(),
                latest: None,
                rooms: BTreeMap::new(),
                rooms_of: HashMap::new(),
                names: HashMap::new(),
                names_of: HashMap::new(),
                deferred: Vec::new(),
                held: Vec::new(),
            })),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new node, for [`Server::with_adapter`](netlib::Server::with_adapter): numbered 1, 2,
    /// 3, ... in the order they are made, a number never used again (a restarted server is a
    /// new node, so that old ids never name its channels). Its presence starts at the latest
    /// time the bus has seen.
    ///
    /// # Panics
    /// After 65 535 nodes.
    pub fn adapter(&self) -> Box<dyn Adapter> {
        let mut s = self.state();
        let number = s
            .nodes
            .keys()
            .next_back()
            .map_or(Some(1), |&n| n.checked_add(1))
            .expect("a bus has 65 535 nodes at most");
        let node = Node {
            seen: s.latest,
            inbox: vec![ClusterInbound::Event(ClusterEvent::Up)],
            ..Node::default()
        };
        s.nodes.insert(number, node);
        Box::new(BusNode {
            bus: self.clone(),
            node: number,
        })
    }

    /// Stops `node` as SIGKILL would: it no longer refreshes its presence and gets nothing
    /// more (what was queued for it is dropped); the other nodes see its channels depart once
    /// its presence expires.
    pub fn kill(&self, node: NodeNumber) {
        if let Some(n) = self.state().nodes.get_mut(&node) {
            n.killed = true;
            n.inbox.clear();
            n.waker = None;
        }
    }

    /// Makes the backplane unavailable (`false`: an outage) or available again (`true`: members
    /// queries made meanwhile are answered now).
    pub fn set_available(&self, available: bool) {
        let mut s = self.state();
        if s.available == available {
            return;
        }
        s.available = available;
        let event = if available {
            ClusterEvent::Up
        } else {
            ClusterEvent::Down {
                error: ClusterError::Unavailable("the bus is down".to_owned()),
            }
        };
        s.push_others(None, &ClusterInbound::Event(event));
        if available {
            for q in std::mem::take(&mut s.deferred) {
                s.answer(q);
            }
            for (from, item) in std::mem::take(&mut s.held) {
                if s.running(from) {
                    s.push_others(Some(from), &item);
                }
            }
        }
    }

    /// Whether the backplane is available (see [`set_available`](Self::set_available)).
    pub fn is_available(&self) -> bool {
        self.state().available
    }

    /// How long a node's presence lasts without a poll.
    pub fn presence_ttl(&self) -> Duration {
        self.state().ttl
    }

    /// The numbers of the nodes whose presence has not expired (killed ones included until
    /// then), in order.
    pub fn live_nodes(&self) -> Vec<NodeNumber> {
        self.state().live().collect()
    }

    /// How many items are queued for running nodes and not yet polled: 0 when the cluster is
    /// quiet.
    pub fn queued(&self) -> usize {
        let s = self.state();
        s.nodes
            .values()
            .filter(|n| n.running())
            .map(|n| n.inbox.len())
            .sum()
    }
}

/// One node of a [`Bus`]: the [`Adapter`] a server is made with.
struct BusNode {
    bus: Bus,
    node: NodeNumber,
}

impl fmt::Debug for BusNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BusNode({})", self.node)
    }
}

impl BusNode {
    /// The bus's state, if this node is running (a killed or dead node does nothing).
    fn running(&self) -> Option<MutexGuard<'_, State>> {
        let s = self.bus.state();
        s.running(self.node).then_some(s)
    }

    /// The state for a cross-node operation: refused while unavailable or stopped.
    fn reach(&self) -> Result<MutexGuard<'_, State>, ClusterError> {
        let s = self
            .running()
            .ok_or_else(|| ClusterError::Unavailable(format!("node {} is stopped", self.node)))?;
        if !s.available {
            return Err(ClusterError::Unavailable("the bus is down".to_owned()));
        }
        Ok(s)
    }
}

impl Drop for BusNode {
    /// Its server is gone: as [`Bus::kill`].
    fn drop(&mut self) {
        self.bus.kill(self.node);
    }
}

impl Adapter for BusNode {
    fn node(&self) -> NodeNumber {
        self.node
    }

    fn set_waker(&mut self, waker: Arc<mio::Waker>) {
        if let Some(mut s) = self.running() {
            let n = s.nodes.get_mut(&self.node).expect("running");
            if !n.inbox.is_empty() {
                let _ = waker.wake();
            }
            n.waker = Some(waker);
        }
    }

    fn joined(&mut self, id: ChannelId, room: &str) {
        let Some(mut s) = self.running() else { return };
        s.nodes
            .get_mut(&self.node)
            .expect("running")
            .channels
            .insert(id);
        s.rooms.entry(room.to_owned()).or_default().insert(id);
        s.rooms_of.entry(id).or_default().insert(room.to_owned());
    }

    fn left(&mut self, id: ChannelId, room: &str) {
        let Some(mut s) = self.running() else { return };
        s.leave(id, room);
        if let Some(rooms) = s.rooms_of.get_mut(&id) {
            rooms.remove(room);
            if rooms.is_empty() {
                s.rooms_of.remove(&id);
            }
        }
    }

    fn closed(&mut self, id: ChannelId) {
        if let Some(mut s) = self.running() {
            s.depart(id);
        }
    }

    fn broadcast(
        &mut self,
        rooms: &[&str],
        except: Option<ChannelId>,
        payload: &Bytes,
    ) -> Result<(), ClusterError> {
        let item = ClusterInbound::Broadcast {
            rooms: rooms.iter().map(|&r| r.to_owned()).collect(),
            except,
            payload: payload.clone(),
        };
        let mut s = self
            .running()
            .ok_or_else(|| ClusterError::Unavailable(format!("node {} is stopped", self.node)))?;
        if s.available {
            s.push_others(Some(self.node), &item);
        } else {
            s.held.push((self.node, item)); // for when the bus is back
        }
        Ok(())
    }

    /// Queues the message for `to`'s node; [`ClusterError::NoChannel`] if that node is not
    /// live (dead, or never made). A killed node not yet expired takes it and loses it.
    fn send(&mut self, to: ChannelId, payload: &Bytes) -> Result<(), ClusterError> {
        let mut s = self.reach()?;
        let node = to.node();
        if node == self.node || s.nodes.get(&node).is_none_or(|n| n.dead) {
            return Err(ClusterError::NoChannel);
        }
        let item = ClusterInbound::Send {
            to,
            payload: payload.clone(),
        };
        s.push(node, item);
        Ok(())
    }

    fn claim(&mut self, id: ChannelId, names: &[String]) {
        let Some(mut s) = self.running() else { return };
        let result = if !s.available {
            Err(ClusterError::Unavailable("the bus is down".to_owned()))
        } else if names
            .iter()
            .any(|n| s.names.get(n).is_some_and(|holder| *holder != id))
        {
            Err(ClusterError::Taken)
        } else {
            for name in names {
                s.names.insert(name.clone(), id);
                s.names_of.entry(id).or_default().insert(name.clone());
            }
            s.nodes
                .get_mut(&self.node)
                .expect("running")
                .channels
                .insert(id);
            Ok(())
        };
        let event = ClusterEvent::Claimed {
            id,
            names: names.to_vec(),
            result,
        };
        s.push(self.node, ClusterInbound::Event(event));
    }

    fn emit(&mut self, to: Option<NodeNumber>, payload: &Bytes) -> Result<(), ClusterError> {
        let mut s = self.reach()?;
        let item = ClusterInbound::Message {
            from: self.node,
            payload: payload.clone(),
        };
        match to {
            Some(node) if node != self.node => s.push(node, item),
            Some(_) => {}
            None => s.push_others(Some(self.node), &item),
        }
        Ok(())
    }

    fn release(&mut self, id: ChannelId, name: &str) {
        let Some(mut s) = self.running() else { return };
        if s.names.get(name) == Some(&id) {
            s.names.remove(name);
            if let Some(names) = s.names_of.get_mut(&id) {
                names.remove(name);
                if names.is_empty() {
                    s.names_of.remove(&id);
                }
            }
        }
    }

    fn members(&mut self, room: &str, after: Option<ChannelId>, limit: usize, token: u64) {
        let Some(mut s) = self.running() else { return };
        let q = Query {
            node: self.node,
            room: room.to_owned(),
            after,
            limit: limit.max(1),
            token,
        };
        if s.available {
            s.answer(q);
        } else {
            s.deferred.push(q);
        }
    }

    fn poll(&mut self, now: Instant, into: &mut Vec<ClusterInbound>) {
        let Some(mut s) = self.running() else { return };
        s.latest = Some(s.latest.map_or(now, |l| l.max(now)));
        let node = s.nodes.get_mut(&self.node).expect("running");
        node.seen = Some(node.seen.map_or(now, |t| t.max(now)));
        s.expire();
        if let Some(node) = s.nodes.get_mut(&self.node).filter(|n| n.running()) {
            into.append(&mut node.inbox);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    fn payload(text: &str) -> Bytes {
        Bytes::from(format!(r#"{{"action":"said","text":"{text}"}}"#))
    }

    fn id(node: NodeNumber, n: u64) -> ChannelId {
        ChannelId::from_serial((u64::from(node) << netlib::NODE_SHIFT) | n)
    }

    fn taken(a: &mut dyn Adapter, now: Instant) -> Vec<ClusterInbound> {
        let mut got = Vec::new();
        a.poll(now, &mut got);
        got
    }

    /// A new node, its first `Up` taken.
    fn node(bus: &Bus) -> Box<dyn Adapter> {
        let mut a = bus.adapter();
        let up = taken(&mut *a, Instant::now());
        assert_eq!(up, [ClusterInbound::Event(ClusterEvent::Up)]);
        a
    }

    #[test]
    fn broadcasts_reach_every_other_node_in_order_and_numbers_are_never_reused() {
        let bus = Bus::new(TTL);
        let (mut a, mut b, mut c) = (node(&bus), node(&bus), node(&bus));
        assert_eq!([a.node(), b.node(), c.node()], [1, 2, 3]);
        let t = Instant::now();
        for text in ["1", "2", "3"] {
            a.broadcast(&["lobby"], Some(id(1, 1)), &payload(text))
                .unwrap();
        }
        assert!(taken(&mut *a, t).is_empty(), "not to the sender's node");
        for node in [&mut b, &mut c] {
            let texts: Vec<Bytes> = taken(&mut **node, t)
                .into_iter()
                .map(|i| match i {
                    ClusterInbound::Broadcast {
                        payload, except, ..
                    } => {
                        assert_eq!(except, Some(id(1, 1)));
                        payload
                    }
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(texts, [payload("1"), payload("2"), payload("3")]);
        }
        drop(c);
        assert_eq!(bus.adapter().node(), 4, "a restart is a new node");
    }

    #[test]
    fn a_node_not_polled_for_the_ttl_is_dead_and_fenced() {
        let bus = Bus::new(TTL);
        let (mut a, mut b) = (node(&bus), node(&bus));
        let t = Instant::now();
        taken(&mut *a, t);
        taken(&mut *b, t);
        b.joined(id(2, 1), "lobby");
        b.claim(id(2, 1), &["bob".to_owned()]);
        assert!(matches!(
            &taken(&mut *b, t)[..],
            [ClusterInbound::Event(ClusterEvent::Claimed {
                result: Ok(()),
                ..
            })]
        ));
        assert!(taken(&mut *a, t + TTL / 2).is_empty());
        assert_eq!(bus.live_nodes(), [1, 2]);
        assert_eq!(
            taken(&mut *a, t + TTL),
            [
                ClusterInbound::Event(ClusterEvent::Departed { id: id(2, 1) }),
                ClusterInbound::Event(ClusterEvent::NodeGone { node: 2 })
            ]
        );
        assert_eq!(bus.live_nodes(), [1]);
        a.claim(id(1, 1), &["bob".to_owned()]);
        assert!(matches!(
            &taken(&mut *a, t + TTL)[..],
            [ClusterInbound::Event(ClusterEvent::Claimed {
                result: Ok(()),
                ..
            })]
        ));
        // Fenced: the dead node hears nothing and changes nothing.
        b.joined(id(2, 2), "lobby");
        a.members("lobby", None, 10, 7);
        assert!(taken(&mut *b, t + TTL).is_empty());
        assert_eq!(
            taken(&mut *a, t + TTL),
            [ClusterInbound::Event(ClusterEvent::Members {
                token: 7,
                room: "lobby".to_owned(),
                page: vec![],
                next: None
            })]
        );
        assert_eq!(
            a.send(id(2, 1), &payload("x")),
            Err(ClusterError::NoChannel)
        );
    }

    #[test]
    fn an_outage_holds_room_sends_refuses_other_traffic_and_defers_queries() {
        let bus = Bus::new(TTL);
        let (mut a, mut b) = (node(&bus), node(&bus));
        let t = Instant::now();
        b.joined(id(2, 1), "lobby");
        bus.set_available(false);
        assert_eq!(a.broadcast(&["lobby"], None, &payload("x")), Ok(()));
        assert!(matches!(
            a.send(id(2, 1), &payload("x")),
            Err(ClusterError::Unavailable(_))
        ));
        a.members("lobby", None, 1, 3);
        let down = ClusterInbound::Event(ClusterEvent::Down {
            error: ClusterError::Unavailable("the bus is down".to_owned()),
        });
        assert_eq!(
            taken(&mut *a, t),
            std::slice::from_ref(&down),
            "answered once it is back"
        );
        assert_eq!(taken(&mut *b, t), [down]);
        bus.set_available(true);
        assert_eq!(
            taken(&mut *a, t),
            [
                ClusterInbound::Event(ClusterEvent::Up),
                ClusterInbound::Event(ClusterEvent::Members {
                    token: 3,
                    room: "lobby".to_owned(),
                    page: vec![id(2, 1)],
                    next: None
                })
            ]
        );
        assert_eq!(
            taken(&mut *b, t),
            [
                ClusterInbound::Event(ClusterEvent::Up),
                ClusterInbound::Broadcast {
                    rooms: vec!["lobby".to_owned()],
                    except: None,
                    payload: payload("x"),
                }
            ],
            "the room send held during the outage, after the Up"
        );
    }
}
