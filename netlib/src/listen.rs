//! The server's listeners, and the connections they accepted that are still in their
//! transport's handshake (a WebSocket upgrade, or a page fetch that never becomes a channel):
//! accepting, the per-address limits (see `addresses`) and the `max_connections` check
//! (connections in their handshake count), the handshake timeout, and handing established
//! connections to [`serve`](crate::serve) to become channels.
//!
//! A connection whose peer address comes in its handshake (from a trusted proxy, through the
//! PROXY protocol: [`Transport::peer_pending`]) is left out of the per-address limits until
//! it has come; it is then admitted under the client's address as a new connection would be
//! (turned away if that address is over a limit), counted under it, and becomes a channel
//! from that address.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token, Waker};
use slab::Slab;

use crate::addresses::Refusal;
use crate::error::CloseReason;
use crate::handler::ServerHandler;
use crate::hub::Hub;
use crate::metrics::Refused;
use crate::serve::{refuse, Handlers};
use crate::transport::{Acceptor, Transport};

/// Tokens from here on are connections in their handshake (key plus this); below
/// [`FIRST_CONN`](crate::hub::FIRST_CONN) are listeners, between the two channels.
pub(crate) const FIRST_PENDING: usize = 1 << 30;
/// How long accepting pauses after an accept error such as EMFILE (ms).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

struct Listening {
    acceptor: Box<dyn Acceptor>,
    /// Index of its wire in the hub.
    wire: u8,
    sourced: bool,
}

/// A connection whose handshake is not done.
struct Pending {
    transport: Box<dyn Transport>,
    /// Its peer's address: the client's once known (a proxy's before, see `counted`).
    addr: SocketAddr,
    wire: u8,
    deadline: Instant,
    sourced: bool,
    /// Counted under `addr` by the per-address limits; false while its peer address is
    /// still to come ([`Transport::peer_pending`]).
    counted: bool,
}

/// Listeners and connections in their handshake.
pub(crate) struct Listeners {
    list: Vec<Listening>,
    pending: Slab<Pending>,
    /// `(deadline, key)` of pending connections in deadline order (every deadline is accept
    /// time plus one timeout, so they only grow); entries of connections already gone are
    /// skipped when their time comes.
    order: VecDeque<(Instant, usize)>,
    /// After an accept error: when to try accepting again.
    retry_at: Option<Instant>,
    /// Connections accepted so far (whatever became of them).
    accepted: u64,
}

/// Makes a channel of an established connection; it is read on the next round, since its
/// transport may already hold input (a WebSocket's first frames read with its request).
fn establish<S: ServerHandler>(
    state: &mut S,
    hub: &mut Hub<S::Channel>,
    handlers: &Handlers<S>,
    transport: Box<dyn Transport>,
    addr: SocketAddr,
    wire: u8,
) {
    if let Some(id) = handlers.open(state, hub, transport, addr, wire) {
        if let Some(key) = hub.key(id) {
            hub.read_ready.push(key);
        }
    }
}

/// Turns a connection away because its address is over a per-address limit: closed at once,
/// nothing read or written (dropping the transport closes its socket); counted, and logged
/// once per address per period.
fn turn_away<C>(hub: &mut Hub<C>, transport: Box<dyn Transport>, addr: SocketAddr, why: Refusal) {
    hub.stats.refused += 1;
    hub.stats.refused_per_address += 1;
    hub.counters.refused(match why {
        Refusal::Connections(_) => Refused::AddressConnections,
        Refusal::Handshakes(_) => Refused::AddressHandshakes,
        Refusal::Rate(_) => Refused::AddressRate,
    });
    hub.addresses.refused(addr, why, hub.now);
    drop(transport);
}

/// The address a connection whose peer address came in its handshake is from: admitted (a
/// token taken) under it as a new connection, and, when `handshake` (still in its
/// handshake), checked against its handshake cap. `Err` with that address and the refusal
/// when it is over a limit (turn the connection away).
fn claim<C>(
    hub: &mut Hub<C>,
    transport: &dyn Transport,
    proxy: SocketAddr,
    handshake: bool,
) -> Result<SocketAddr, (SocketAddr, Refusal)> {
    let addr = transport.peer_addr().unwrap_or(proxy);
    if addr != proxy {
        log::debug!("{proxy}: PROXY protocol: the client is {addr}");
    }
    hub.addresses
        .admit(addr, hub.now)
        .and_then(|()| {
            if handshake {
                hub.addresses.may_handshake(addr)
            } else {
                Ok(())
            }
        })
        .map(|()| addr)
        .map_err(|why| (addr, why))
}

impl Listeners {
    pub(crate) fn new() -> Self {
        Listeners {
            list: Vec::new(),
            pending: Slab::new(),
            order: VecDeque::new(),
            retry_at: None,
            accepted: 0,
        }
    }

    /// Adds a listener whose channels speak wire `wire`: registered with `registry` under the
    /// next listener token, or given `waker` if it has no mio source.
    pub(crate) fn add(
        &mut self,
        registry: &Registry,
        waker: &Arc<Waker>,
        mut acceptor: Box<dyn Acceptor>,
        wire: u8,
    ) -> std::io::Result<()> {
        let token = Token(self.list.len());
        let sourced = match acceptor.source() {
            Some(src) => {
                registry.register(src, token, Interest::READABLE)?;
                true
            }
            None => {
                acceptor.set_waker(waker.clone());
                false
            }
        };
        self.list.push(Listening {
            acceptor,
            wire,
            sourced,
        });
        Ok(())
    }

    /// Number of listeners.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Connections in their handshake.
    pub(crate) fn handshakes(&self) -> usize {
        self.pending.len()
    }

    /// Connections accepted so far, refused ones included: a count that moves when a
    /// listener hands over a connection (see [`Server::settle`](crate::Server::settle)).
    pub(crate) fn accepted(&self) -> u64 {
        self.accepted
    }

    /// The addresses listened on.
    pub(crate) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.list
            .iter()
            .filter_map(|l| l.acceptor.local_addr())
            .collect()
    }

    /// When [`poll`](Self::poll) next has something to do: an accept retry or a handshake
    /// deadline (possibly of a connection already gone: an early wake-up, not a late one).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let pending = self.order.front().map(|&(d, _)| d);
        [self.retry_at, pending].into_iter().flatten().min()
    }

    /// Listener `i` is readable: accepts everything it has (unless accepting is paused).
    pub(crate) fn ready<S: ServerHandler>(
        &mut self,
        i: usize,
        state: &mut S,
        hub: &mut Hub<S::Channel>,
        handlers: &Handlers<S>,
    ) {
        if self.retry_at.is_none() && i < self.list.len() {
            self.accept(i, state, hub, handlers);
        }
    }

    fn accept<S: ServerHandler>(
        &mut self,
        i: usize,
        state: &mut S,
        hub: &mut Hub<S::Channel>,
        handlers: &Handlers<S>,
    ) {
        loop {
            match self.list[i].acceptor.accept() {
                Ok(Some((transport, addr))) => {
                    self.accepted += 1;
                    let wire = self.list[i].wire;
                    self.admit(state, hub, handlers, transport, addr, wire);
                }
                Ok(None) => return,
                Err(e) => {
                    // EMFILE and friends: the connection stays in the backlog; try again soon
                    // instead of spinning on an always-ready listener.
                    log::error!(
                        "accept on {:?} failed: {e}; retrying in {ACCEPT_RETRY:?}",
                        self.list[i].acceptor.local_addr()
                    );
                    self.retry_at = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    /// A new connection: refused when its address is over its connection cap or connect rate,
    /// or when the server is full (channels and handshakes); a channel at once when its
    /// transport needs no handshake, otherwise parked until it is done (refused instead when
    /// its address is over its handshake cap). One whose peer address is still to come
    /// ([`Transport::peer_pending`]) is checked under that address once it has come.
    fn admit<S: ServerHandler>(
        &mut self,
        state: &mut S,
        hub: &mut Hub<S::Channel>,
        handlers: &Handlers<S>,
        mut transport: Box<dyn Transport>,
        addr: SocketAddr,
        wire: u8,
    ) {
        let pending = transport.peer_pending();
        if !pending {
            if let Err(why) = hub.addresses.admit(addr, hub.now) {
                return turn_away(hub, transport, addr, why);
            }
        }
        if hub.connections() + self.pending.len() >= hub.config.get_max_connections()
            || hub.ids_left() <= (hub.slots.len() + self.pending.len()) as u64
        {
            return refuse(hub, transport, addr, wire);
        }
        match transport.handshake() {
            Ok(true) => {
                let addr = if pending {
                    match claim(hub, &*transport, addr, false) {
                        Ok(client) => client,
                        Err((client, why)) => return turn_away(hub, transport, client, why),
                    }
                } else {
                    addr
                };
                establish(state, hub, handlers, transport, addr, wire);
            }
            Ok(false) => {
                let (addr, counted) = if !pending {
                    if let Err(why) = hub.addresses.may_handshake(addr) {
                        return turn_away(hub, transport, addr, why);
                    }
                    (addr, true)
                } else if !transport.peer_pending() {
                    match claim(hub, &*transport, addr, true) {
                        Ok(client) => (client, true),
                        Err((client, why)) => return turn_away(hub, transport, client, why),
                    }
                } else {
                    (addr, false)
                };
                let key = self.pending.vacant_key();
                let sourced = match transport.source() {
                    Some(src) => {
                        let token = Token(FIRST_PENDING + key);
                        let interest = Interest::READABLE | Interest::WRITABLE;
                        if let Err(e) = hub.registry.register(src, token, interest) {
                            log::error!("cannot register {addr}: {e}");
                            return;
                        }
                        true
                    }
                    None => {
                        transport.set_waker(hub.waker.clone());
                        false
                    }
                };
                let deadline = hub.now + hub.config.get_handshake_timeout();
                self.pending.insert(Pending {
                    transport,
                    addr,
                    wire,
                    deadline,
                    sourced,
                    counted,
                });
                self.order.push_back((deadline, key));
                if counted {
                    hub.addresses.opened(addr, true, hub.now);
                }
            }
            Err(e) => {
                hub.counters.refused(Refused::HandshakeFailed);
                // The client's address if a PROXY header gave one before the failure.
                let from = transport.peer_addr().unwrap_or(addr);
                log::debug!("{from}: no channel: {e}");
            }
        }
    }

    /// Takes connection `key` out of its handshake, deregistered.
    fn take(&mut self, registry: &Registry, key: usize) -> Pending {
        let mut p = self.pending.remove(key);
        if p.sourced {
            if let Some(src) = p.transport.source() {
                let _ = registry.deregister(src);
            }
        }
        p
    }

    /// As [`take`](Self::take), and uncounts it from its address (if it was counted).
    fn unpark<C>(&mut self, hub: &mut Hub<C>, key: usize) -> Pending {
        let p = self.take(&hub.registry, key);
        if p.counted {
            hub.addresses.closed(p.addr, true, hub.now);
        }
        p
    }

    /// The connection in its handshake with token `FIRST_PENDING + key` is ready: advances its
    /// handshake, making a channel of it once done.
    pub(crate) fn advance<S: ServerHandler>(
        &mut self,
        key: usize,
        state: &mut S,
        hub: &mut Hub<S::Channel>,
        handlers: &Handlers<S>,
    ) {
        let Some(p) = self.pending.get_mut(key) else {
            return;
        };
        let done = p.transport.handshake();
        if !p.counted && done.is_ok() && !p.transport.peer_pending() {
            // Its peer's address has come: admitted and counted under it from now on.
            let still = matches!(done, Ok(false));
            match claim(hub, &*p.transport, p.addr, still) {
                Ok(client) => {
                    p.addr = client;
                    p.counted = true;
                    hub.addresses.opened(client, true, hub.now);
                }
                Err((client, why)) => {
                    let p = self.unpark(hub, key);
                    return turn_away(hub, p.transport, client, why);
                }
            }
        }
        match done {
            Ok(false) => {}
            Ok(true) => {
                let p = self.unpark(hub, key);
                establish(state, hub, handlers, p.transport, p.addr, p.wire);
            }
            Err(e) => {
                let p = self.unpark(hub, key);
                hub.counters.refused(Refused::HandshakeFailed);
                let from = p.transport.peer_addr().unwrap_or(p.addr);
                log::debug!("{from}: no channel: {e}");
            }
        }
    }

    /// Once per pump: retries accepting after an error, accepts from listeners and advances
    /// handshakes that have no mio source, and drops handshakes past their deadline (telling
    /// the transport [`CloseReason::Timeout`]: a WebSocket answers HTTP 408).
    pub(crate) fn poll<S: ServerHandler>(
        &mut self,
        state: &mut S,
        hub: &mut Hub<S::Channel>,
        handlers: &Handlers<S>,
    ) {
        hub.addresses.poll(hub.now);
        if self.retry_at.is_some_and(|at| Instant::now() >= at) {
            self.retry_at = None;
            for i in 0..self.list.len() {
                self.accept(i, state, hub, handlers);
            }
        }
        for i in 0..self.list.len() {
            if !self.list[i].sourced {
                self.accept(i, state, hub, handlers);
            }
        }
        if self.pending.iter().any(|(_, p)| !p.sourced) {
            let keys: Vec<usize> = self
                .pending
                .iter()
                .filter(|(_, p)| !p.sourced)
                .map(|(k, _)| k)
                .collect();
            for key in keys {
                self.advance(key, state, hub, handlers);
            }
        }
        while let Some(&(deadline, key)) = self.order.front() {
            if deadline > hub.now {
                break;
            }
            self.order.pop_front();
            if self
                .pending
                .get(key)
                .is_some_and(|p| p.deadline == deadline)
            {
                let mut p = self.unpark(hub, key);
                hub.counters.refused(Refused::HandshakeTimeout);
                log::debug!(
                    "{}: handshake not done in {:?}; closing",
                    p.addr,
                    hub.config.get_handshake_timeout()
                );
                p.transport.closing(&CloseReason::Timeout);
            }
        }
    }

    /// Stops listening and drops every connection still in its handshake (telling it
    /// [`CloseReason::Shutdown`]).
    pub(crate) fn close(&mut self, registry: &Registry) {
        for mut l in self.list.drain(..) {
            if let Some(src) = l.acceptor.source() {
                let _ = registry.deregister(src);
            }
        }
        let keys: Vec<usize> = self.pending.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.take(registry, key)
                .transport
                .closing(&CloseReason::Shutdown);
        }
        self.order.clear();
    }
}
