//! Tag at 20 Hz on netlib: players run around a square field; whoever is "it" tags the first
//! player within reach, who becomes "it" (no tag-backs). The server steps the world at a fixed
//! rate and sends everyone its state; bots steer toward or away from "it".
//!
//! The game as a PodSixNet newcomer writes it (`podsixnet/` holds that version, the
//! yardstick), in netlib: a [`ServerHandler`] with one handler, a [`Listener`] with two, and a
//! [`FixedStep`](netlib::FixedStep) loop in the server.
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use netlib::{handler, All, ChannelId, ClientContext, Closed, Listener, Message};
use netlib::{ServerContext as Ctx, ServerHandler};
use serde::{Deserialize, Serialize};

/// Steps per second.
pub const TICK_HZ: u32 = 20;
/// The field's side, how fast a player runs (per second) and how close "it" must come, in
/// units.
pub const FIELD: f32 = 400.0;
const SPEED: f32 = 120.0;
const REACH: f32 = 12.0;

/// A point `[x, y]` on the field, or a heading (each axis -1 to 1).
pub type Xy = [f32; 2];

fn dist(a: Xy, b: Xy) -> f32 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

/// The server's state: where everyone is and heads, who is "it", and who was before (who
/// cannot be tagged back at once).
#[derive(Debug, Default)]
pub struct Tag {
    /// Position and heading per player.
    pub players: BTreeMap<ChannelId, (Xy, Xy)>,
    /// Who is "it".
    pub it: Option<ChannelId>,
    last_it: Option<ChannelId>,
    /// Tags so far.
    pub tags: u32,
}

/// `{"action": "steer", "dx": .., "dy": ..}` from a player; `{"action": "state", ..}` from the
/// server every step.
#[derive(Deserialize)]
struct Steer {
    dx: f32,
    dy: f32,
}
#[derive(Serialize, Deserialize)]
#[serde(tag = "action", rename = "state")]
struct State {
    it: Option<ChannelId>,
    players: Vec<(ChannelId, Xy)>,
}

impl ServerHandler for Tag {
    type Channel = ();
    fn connected(&mut self, _: &mut Ctx<'_, ()>, id: ChannelId, _: SocketAddr) {
        let n = id.serial() as f32;
        self.players
            .insert(id, ([n * 97.0 % FIELD, n * 61.0 % FIELD], [0.0; 2]));
        self.it.get_or_insert(id);
    }
    fn closed(&mut self, _: &mut Ctx<'_, ()>, gone: Closed<()>) {
        self.players.remove(&gone.id);
        if self.it == Some(gone.id) {
            self.it = self.players.keys().next().copied();
        }
    }
}

impl Tag {
    fn network_steer(&mut self, _: &mut Ctx<'_, ()>, from: ChannelId, s: Steer) {
        if let Some(p) = self.players.get_mut(&from) {
            p.1 = [s.dx.clamp(-1.0, 1.0), s.dy.clamp(-1.0, 1.0)];
        }
    }

    /// Moves everyone by `dt` seconds, lets "it" tag, and sends everyone the state.
    pub fn step(&mut self, ctx: &mut Ctx<'_, ()>, dt: f32) {
        for (at, heading) in self.players.values_mut() {
            for i in 0..2 {
                at[i] = (at[i] + heading[i] * SPEED * dt).clamp(0.0, FIELD);
            }
        }
        if let Some(it) = self.it {
            let me = self.players[&it].0;
            let tagged = self
                .players
                .iter()
                .map(|(id, p)| (*id, p.0))
                .find(|&(id, at)| id != it && Some(id) != self.last_it && dist(at, me) < REACH);
            if let Some((id, _)) = tagged {
                (self.it, self.last_it, self.tags) = (Some(id), Some(it), self.tags + 1);
                let _ = ctx.send_to(All, &Message::new("tagged").with("it", id));
            }
        }
        let players = self.players.iter().map(|(id, p)| (*id, p.0)).collect();
        let _ = ctx.send_to(
            All,
            &State {
                it: self.it,
                players,
            },
        );
    }
}
handler!(Tag, "steer" => network_steer);

/// A bot: runs from "it", or chases the nearest player when it is "it".
#[derive(Debug, Default)]
pub struct Bot {
    /// Its channel id, from the server's `connected`; and the states received.
    pub me: Option<ChannelId>,
    /// States received.
    pub states: u32,
}
impl Listener for Bot {}

impl Bot {
    fn network_connected(&mut self, _: &mut ClientContext<'_>, m: &Message) {
        self.me = m
            .get("id")
            .and_then(|id| serde::Deserialize::deserialize(id).ok());
    }

    fn network_state(&mut self, ctx: &mut ClientContext<'_>, s: State) {
        self.states += 1;
        let pos = |id| s.players.iter().find(|p| p.0 == id).map(|p| p.1);
        let (Some(me), Some(it)) = (self.me, s.it) else {
            return;
        };
        let Some(at) = pos(me) else { return };
        let others = s.players.iter().filter(|p| p.0 != me).map(|p| p.1);
        let chase = others.min_by(|a, b| dist(*a, at).total_cmp(&dist(*b, at)));
        let (target, away) = if it == me {
            (chase, 1.0)
        } else {
            (pos(it), -1.0)
        };
        if let Some(t) = target {
            let d = |i: usize| away * (t[i] - at[i]).signum();
            let _ = ctx.send(&Message::new("steer").with("dx", d(0)).with("dy", d(1)));
        }
    }
}
handler!(Bot, "connected" => network_connected);
handler!(Bot, "state" => network_state);
