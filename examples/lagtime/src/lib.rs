//! PodSixNet's LagTime example on netlib, wire-compatible with PodSixNet's own
//! (`LagTimeServer.py` / `LagTimeClient.py`): the server sends `{"action": "ping", "count": n}`
//! as soon as a client connects, the client echoes every ping back, and the server measures each
//! round trip and pings again. The client closes the connection when it receives ping 10, so each
//! client yields ten round trips; the server prints each one and a summary per client.
#![deny(missing_docs, rust_2018_idioms)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use netlib::{
    handler, ChannelContext, ChannelId, ClientContext, Closed, Listener, ServerContext,
    ServerHandler,
};
use serde::{Deserialize, Serialize};

/// `{"action": "ping", "count": n}`, both ways.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(tag = "action", rename = "ping")]
pub struct Ping {
    /// 0, 1, 2, ...
    pub count: u32,
}

/// The ping the client answers by closing, as in PodSixNet's example.
pub const LAST_PING: u32 = 10;

/// The server: prints to `out` (stdout in the binary).
pub struct LagServer {
    out: Box<dyn FnMut(String) + Send>,
}

impl LagServer {
    /// A server that reports through `out`, one line per call.
    pub fn new(out: impl FnMut(String) + Send + 'static) -> Self {
        LagServer { out: Box::new(out) }
    }
}

/// One client: when each ping went out, and the measured round trips.
pub struct LagChannel {
    sent: Vec<Instant>,
    trips: Vec<Duration>,
}

impl LagChannel {
    fn ping(&mut self, ctx: &mut ServerContext<'_, LagChannel>, id: ChannelId) {
        let count = self.sent.len() as u32;
        self.sent.push(Instant::now());
        let _ = ctx.send_to(id, &Ping { count });
    }

    fn network_ping(&mut self, ctx: &mut ChannelContext<'_, LagServer>, p: Ping) {
        let Some(sent) = self.sent.get(p.count as usize) else {
            return;
        };
        let trip = sent.elapsed();
        self.trips.push(trip);
        let id = ctx.id();
        (ctx.server().out)(format!(
            "channel {id}: ping {} round trip {:.3} ms",
            p.count,
            ms(trip)
        ));
        self.ping(ctx, id);
    }
}
handler!(LagChannel, "ping" => network_ping);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl ServerHandler for LagServer {
    type Channel = LagChannel;

    fn connected(
        &mut self,
        ctx: &mut ServerContext<'_, LagChannel>,
        id: ChannelId,
        addr: SocketAddr,
    ) -> LagChannel {
        (self.out)(format!("channel {id}: connected from {addr}"));
        let mut ch = LagChannel {
            sent: Vec::new(),
            trips: Vec::new(),
        };
        ch.ping(ctx, id);
        ch
    }

    fn closed(&mut self, _: &mut ServerContext<'_, LagChannel>, gone: Closed<LagChannel>) {
        let id = gone.id;
        let mut t = gone.channel.trips;
        t.sort();
        match (t.first(), t.last()) {
            (Some(min), Some(max)) => (self.out)(format!(
                "channel {id}: {} round trips, min {:.3} ms, median {:.3} ms, max {:.3} ms",
                t.len(),
                ms(*min),
                ms(t[t.len() / 2]),
                ms(*max)
            )),
            _ => (self.out)(format!("channel {id}: closed before any round trip")),
        }
    }
}

/// The client: echoes every ping, closes on ping [`LAST_PING`].
#[derive(Debug, Default)]
pub struct LagClient {
    /// Pings received.
    pub pings: Vec<u32>,
    /// The connection ended (`disconnected` or `error`).
    pub done: bool,
}

impl Listener for LagClient {}

impl LagClient {
    fn network_ping(&mut self, ctx: &mut ClientContext<'_>, p: Ping) {
        println!("got ping {}", p.count);
        self.pings.push(p.count);
        if p.count == LAST_PING {
            ctx.close();
        } else {
            let _ = ctx.send(&p);
        }
    }
    fn network_disconnected(&mut self, _: &mut ClientContext<'_>, _: &netlib::Message) {
        self.done = true;
    }
    fn network_error(&mut self, _: &mut ClientContext<'_>, m: &netlib::Message) {
        eprintln!("lagtime-client: {}", m.as_value()["error"]);
        self.done = true;
    }
}
handler!(LagClient, "ping" => network_ping);
handler!(LagClient, "disconnected" => network_disconnected);
handler!(LagClient, "error" => network_error);
