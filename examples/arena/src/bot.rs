//! The bot: a [`Listener`] that keeps the latest state and steers its player at the coin.

use std::collections::BTreeSet;

use netlib::{handler, ClientContext, Listener, Message};
use serde::Deserialize;

use crate::world::{Input, Player, State};

/// What a bot has seen of the game.
#[derive(Debug, Default)]
pub struct Bot {
    /// Its own id, from the server's `connected` message.
    pub id: Option<u64>,
    /// The latest state.
    pub state: Option<State>,
    /// States received.
    pub snapshots: u64,
    /// Every other player seen in a state.
    pub others: BTreeSet<u64>,
    /// Where it was first seen.
    pub start: Option<[f64; 2]>,
    /// The farthest it has been from `start`.
    pub moved: f64,
    /// `error` messages received (a refused input, or a failed connection).
    pub errors: Vec<String>,
    /// Whether the connection ended.
    pub disconnected: bool,
}

/// `{"action": "connected", "id": 3}` (the server announces ids).
#[derive(Deserialize)]
struct Connected {
    id: u64,
}

impl Listener for Bot {}

impl Bot {
    /// Its own player in the latest state.
    pub fn me(&self) -> Option<&Player> {
        let id = self.id?;
        self.state.as_ref()?.players.iter().find(|p| p.id == id)
    }

    /// Where to go: straight at the coin at full speed; nothing before it knows where it is.
    pub fn steer(&self) -> Option<Input> {
        let (me, [cx, cy]) = (self.me()?, self.state.as_ref()?.coin);
        let (dx, dy) = (cx - me.x, cy - me.y);
        let d = dx.hypot(dy).max(1.0);
        Some(Input {
            dx: dx / d,
            dy: dy / d,
        })
    }

    fn network_connected(&mut self, _: &mut ClientContext<'_>, c: Connected) {
        self.id = Some(c.id);
    }

    fn network_state(&mut self, _: &mut ClientContext<'_>, state: State) {
        self.snapshots += 1;
        let me = self.id;
        let others = state
            .players
            .iter()
            .map(|p| p.id)
            .filter(|&p| Some(p) != me);
        self.others.extend(others);
        self.state = Some(state);
        if let Some(&Player { x, y, .. }) = self.me() {
            let [x0, y0] = *self.start.get_or_insert([x, y]);
            self.moved = self.moved.max((x - x0).hypot(y - y0));
        }
    }

    fn network_error(&mut self, _: &mut ClientContext<'_>, msg: &Message) {
        self.errors.push(msg.as_value()["error"].to_string());
    }

    fn network_disconnected(&mut self, _: &mut ClientContext<'_>, _: &Message) {
        self.disconnected = true;
    }
}
handler!(Bot, "connected" => network_connected);
handler!(Bot, "state" => network_state);
handler!(Bot, "error" => network_error);
handler!(Bot, "disconnected" => network_disconnected);
