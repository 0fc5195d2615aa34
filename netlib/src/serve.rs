//! What the server does for one channel besides I/O: open it (queue `connected`, run the
//! `connected` hook), deliver its messages to the handlers (the channel type's, then the server
//! type's), and end it (the `closed` hook). The driver in [`server`](crate::server) only moves
//! bytes and readiness.

use std::io::Write;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use mio::Token;

use crate::dispatch::{self, deliver, Endpoint, OutOfBand, Table};
use crate::error::{panic_text, CloseReason, InboundError, StartError};
use crate::frame::Frame;
use crate::handler::{ChannelContext, ChannelFn, Closed, ServerFn, ServerHandler};
use crate::hub::{ChannelId, Hub, ServerContext, FIRST_CONN};
use crate::link::Link;
use crate::message::Message;
use crate::protocol;
use crate::session::{Phase, Session, Side};
use crate::transport::Transport;

/// A server's handler tables and its pre-encoded `connected` frame.
pub(crate) struct Handlers<S: ServerHandler> {
    channel: &'static Table<ChannelFn<S::Channel, S>>,
    server: &'static Table<ServerFn<S>>,
    /// `{"action": "connected"}` in every wire the server speaks.
    pub(crate) connected: Frame,
}

impl<S: ServerHandler> Handlers<S> {
    /// Builds (or fetches) the tables of `S` and its channel type.
    ///
    /// # Errors
    /// Registration errors, including an action handled on both types.
    pub(crate) fn new(hub: &Hub<S::Channel>) -> Result<Self, StartError> {
        dispatch::check_handlers()?;
        let channel = dispatch::table::<S::Channel, ChannelFn<S::Channel, S>>()?;
        let server = dispatch::table::<S, ServerFn<S>>()?;
        if let Some((action, first, second)) = channel.clash(server) {
            return Err(StartError::DuplicateHandler {
                target: std::any::type_name::<S>(),
                action,
                first,
                second,
            });
        }
        Ok(Handlers {
            channel,
            server,
            connected: hub
                .encode(&Message::new(protocol::CONNECTED))
                .expect("a plain message encodes in every wire"),
        })
    }

    pub(crate) fn open(
        &self,
        state: &mut S,
        hub: &mut Hub<S::Channel>,
        transport: Box<dyn Transport>,
        addr: SocketAddr,
        wire: u8,
    ) -> Option<ChannelId> {
        if hub.slots.len() >= hub.config.get_max_connections() {
            refuse(hub, transport, addr, wire);
            return None;
        }
        let session = Session::new(
            hub.wires[wire as usize].clone(),
            &hub.config,
            Side::Server,
            hub.now,
        );
        let mut link = Link::new(session, transport);
        let key = hub.slots.vacant_key();
        if let Err(e) = link.register(&hub.registry, Token(key + FIRST_CONN), &hub.waker, false) {
            log::error!("cannot register {addr}: {e}");
            return None;
        }
        let sourced = link.is_sourced();
        let (key, id) = hub.insert(link, addr, wire);
        if !sourced {
            hub.polled.push(key);
        }
        log::debug!("channel {id} connected from {addr}");
        if hub.config.get_announce_id() {
            let m = ServerContext { hub: &mut *hub }.connected_message(id);
            let _ = hub.send_one(key, &m);
        } else {
            let bytes = self.connected.for_wire(wire as usize).clone();
            hub.queue_bytes(key, &bytes);
        }
        let made = catch_unwind(AssertUnwindSafe(|| {
            state.connected(&mut ServerContext { hub: &mut *hub }, id, addr)
        }));
        match made {
            Ok(channel) => match hub.key(id) {
                Some(key) => hub.slots[key].channel = Some(channel),
                None => return None,
            },
            Err(p) => {
                let text = panic_text(&*p);
                crate::peerlog::report!(
                    log::Level::Error,
                    "connected hook panicked for {addr}: {text}"
                );
                hub.abort(key, CloseReason::HandlerPanic(text));
                return None;
            }
        }
        Some(id)
    }

    /// Hands one decoded frame of channel `key` to its handlers; a panic closes only that
    /// channel.
    pub(crate) fn dispatch(
        &self,
        state: &mut S,
        hub: &mut Hub<S::Channel>,
        key: usize,
        decoded: Result<Message, InboundError>,
        payload: Bytes,
    ) {
        let slot = &mut hub.slots[key];
        let (id, addr) = (slot.id, slot.addr);
        let Some(mut channel) = slot.channel.take() else {
            return;
        };
        let mut endpoint = ServerEndpoint {
            channel: &mut channel,
            server: &mut *state,
            hub: &mut *hub,
            id,
            key,
            addr,
            channel_table: self.channel,
            server_table: self.server,
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            deliver(&mut endpoint, decoded, payload)
        }));
        if let Some(slot) = hub.slots.get_mut(key).filter(|s| s.id == id) {
            slot.channel = Some(channel);
        }
        if let Err(p) = outcome {
            let text = panic_text(&*p);
            crate::peerlog::report!(
                log::Level::Error,
                "channel {id} ({addr}): handler panicked: {text}; closing the channel"
            );
            hub.abort(key, CloseReason::HandlerPanic(text));
        }
    }
}

/// Turns a connection away because the server is full: it is sent
/// `{"action": "error", "error": [87, "server full"]}` if its transport takes bytes yet, and
/// told [`CloseReason::ServerFull`] (a WebSocket still in its handshake answers HTTP 503).
pub(crate) fn refuse<C>(
    hub: &mut Hub<C>,
    mut transport: Box<dyn Transport>,
    addr: SocketAddr,
    wire: u8,
) {
    hub.stats.refused += 1;
    crate::peerlog::peer_log!(
        log::Level::Warn,
        "refusing {addr}: server full ({} connections)",
        hub.slots.len()
    );
    let full = protocol::error(protocol::EUSERS, "server full");
    if let Ok(bytes) = hub.wires[wire as usize].encode(&full, usize::MAX >> 1) {
        let _ = transport.write(&bytes);
        let _ = transport.flush();
    }
    transport.closing(&CloseReason::ServerFull);
}

/// Runs the `closed` hook of every channel that ended and removes those no longer lingering.
pub(crate) fn reap<S: ServerHandler>(state: &mut S, hub: &mut Hub<S::Channel>) {
    for key in std::mem::take(&mut hub.ended) {
        let Some(slot) = hub.slots.get_mut(key) else {
            continue;
        };
        let phase = slot.link.session.phase().clone();
        if matches!(phase, Phase::Open | Phase::Closing(_)) {
            continue;
        }
        if !slot.reported {
            slot.reported = true;
            hub.stats.closed += 1;
            hub.lingering += 1;
            let (id, channel) = (slot.id, slot.channel.take());
            let reason = slot
                .link
                .session
                .reason()
                .cloned()
                .unwrap_or(CloseReason::Local);
            if !matches!(
                reason,
                CloseReason::PeerClosed | CloseReason::Local | CloseReason::Shutdown
            ) {
                hub.stats.closed_for_cause += 1;
            }
            log::debug!("channel {id} ({}) closed: {reason}", slot.addr);
            if let Some(channel) = channel {
                let hooked = catch_unwind(AssertUnwindSafe(|| {
                    state.closed(
                        &mut ServerContext { hub: &mut *hub },
                        Closed {
                            id,
                            channel,
                            reason: reason.clone(),
                        },
                    )
                }));
                if let Err(p) = hooked {
                    crate::peerlog::report!(
                        log::Level::Error,
                        "closed hook panicked for channel {id}: {}",
                        panic_text(&*p)
                    );
                }
            }
            // Out of its rooms and names at once, here and on the other nodes: not when its
            // socket is finally gone (up to the linger time later).
            hub.forget(key);
        }
        if phase == Phase::Closed {
            hub.remove(key);
        }
    }
}

/// A channel, its server and both handler tables, as [`deliver`] sees them.
struct ServerEndpoint<'a, S: ServerHandler> {
    channel: &'a mut S::Channel,
    server: &'a mut S,
    hub: &'a mut Hub<S::Channel>,
    id: ChannelId,
    key: usize,
    addr: SocketAddr,
    channel_table: &'static Table<ChannelFn<S::Channel, S>>,
    server_table: &'static Table<ServerFn<S>>,
}

impl<'a, S: ServerHandler> ServerEndpoint<'a, S> {
    /// The channel's state and a context for its handler, borrowed at once.
    fn split(&mut self) -> (&mut S::Channel, ChannelContext<'_, S>) {
        let ctx = ChannelContext {
            server: &mut *self.server,
            hub: ServerContext {
                hub: &mut *self.hub,
            },
            id: self.id,
            key: self.key,
            addr: self.addr,
        };
        (&mut *self.channel, ctx)
    }
}

impl<S: ServerHandler> Endpoint for ServerEndpoint<'_, S> {
    fn specific(&mut self, msg: &Message) -> Option<Result<(), InboundError>> {
        if let Some(h) = self.channel_table.get(msg.action()) {
            let (channel, mut ctx) = self.split();
            return Some(h(channel, &mut ctx, msg));
        }
        let h = self.server_table.get(msg.action())?;
        Some(h(
            self.server,
            &mut ServerContext {
                hub: &mut *self.hub,
            },
            self.id,
            msg,
        ))
    }

    fn catch_all(&mut self, msg: &Message, failed: &mut dyn FnMut(InboundError)) {
        if let Some(h) = self.channel_table.catch_all() {
            let (channel, mut ctx) = self.split();
            if let Err(e) = h(channel, &mut ctx, msg) {
                failed(e);
            }
        }
        if let Some(h) = self.server_table.catch_all() {
            if let Err(e) = h(
                self.server,
                &mut ServerContext {
                    hub: &mut *self.hub,
                },
                self.id,
                msg,
            ) {
                failed(e);
            }
        }
    }

    fn unhandled(&mut self, msg: &Message) {
        self.server.unhandled(
            &mut ServerContext {
                hub: &mut *self.hub,
            },
            self.id,
            msg,
        );
    }

    fn out_of_band(&mut self, oob: OutOfBand) {
        self.hub.stats.out_of_band += 1;
        self.server.out_of_band(
            &mut ServerContext {
                hub: &mut *self.hub,
            },
            self.id,
            oob,
        );
    }
}
