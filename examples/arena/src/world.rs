//! The rules, with no I/O: players move in a walled arena and race for a coin. The same seed,
//! joins, inputs and steps always give the same states.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The arena's width, in world units.
pub const WIDTH: f64 = 640.0;
/// The arena's height, in world units.
pub const HEIGHT: f64 = 480.0;
/// A player's radius: its centre stays this far from the walls.
pub const RADIUS: f64 = 12.0;
/// How far a player moves in a second at full input.
pub const SPEED: f64 = 160.0;
/// A player whose centre comes this close to the coin takes it.
pub const REACH: f64 = 20.0;

/// Client to server: `{"action": "input", "dx": 1.0, "dy": 0.0}`, the direction to move in, at
/// most 1 long (`0, 0` stands still). It holds from the next step until the next input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename = "input")]
pub struct Input {
    /// Rightwards, -1 to 1.
    pub dx: f64,
    /// Downwards, -1 to 1.
    pub dy: f64,
}

impl Input {
    /// Whether the direction is at most 1 long.
    ///
    /// # Errors
    /// Why not: `direction 5 is longer than 1` (also for NaN).
    pub fn check(&self) -> Result<(), String> {
        let len = self.dx.hypot(self.dy);
        if len.is_nan() || len > 1.0 + 1e-9 {
            return Err(format!("direction {len} is longer than 1"));
        }
        Ok(())
    }
}

/// One player, as snapshots show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Player {
    /// The player's id: its channel's serial number.
    pub id: u64,
    /// Centre, from the left wall.
    pub x: f64,
    /// Centre, from the top wall.
    pub y: f64,
    /// The input in force.
    pub dx: f64,
    /// The input in force.
    pub dy: f64,
    /// Coins taken.
    pub score: u32,
}

/// Server to clients after every step: `{"action": "state", "tick": 7, "coin": [x, y],
/// "players": [{"id": 1, "x": ..., "y": ..., "dx": ..., "dy": ..., "score": 0}, ...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename = "state")]
pub struct State {
    /// Steps taken so far.
    pub tick: u64,
    /// Where the coin is.
    pub coin: [f64; 2],
    /// Every player, by id.
    pub players: Vec<Player>,
}

/// The whole game.
#[derive(Debug, Clone)]
pub struct World {
    /// Steps taken so far.
    pub tick: u64,
    /// Where the coin is.
    pub coin: [f64; 2],
    /// The players, by id.
    pub players: BTreeMap<u64, Player>,
    rng: u64,
}

impl World {
    /// An empty arena; `seed` decides where players and coins appear.
    pub fn new(seed: u64) -> Self {
        let mut w = World {
            tick: 0,
            coin: [0.0; 2],
            players: BTreeMap::new(),
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, // odd: never zero
        };
        w.coin = w.random_spot();
        w
    }

    /// A spot inside the walls (xorshift64: deterministic and dependency-free).
    fn random_spot(&mut self) -> [f64; 2] {
        let mut next = |span: f64| {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            RADIUS + (self.rng >> 11) as f64 / (1u64 << 53) as f64 * (span - 2.0 * RADIUS)
        };
        [next(WIDTH), next(HEIGHT)]
    }

    /// Player `id` appears at a random spot, standing still; a player already in stays as it
    /// is (a join may be told twice, e.g. again to a new leader).
    pub fn join(&mut self, id: u64) {
        if self.players.contains_key(&id) {
            return;
        }
        let mut p = Player::default();
        [p.x, p.y] = self.random_spot();
        p.id = id;
        self.players.insert(id, p);
    }

    /// Player `id` leaves; returns it if it was there.
    pub fn leave(&mut self, id: u64) -> Option<Player> {
        self.players.remove(&id)
    }

    /// Player `id` moves in `input`'s direction from the next step on.
    ///
    /// # Errors
    /// Why not, when the direction is longer than 1 or there is no player `id`; the server
    /// sends it back in an `error` message.
    pub fn input(&mut self, id: u64, input: Input) -> Result<(), String> {
        input.check()?;
        let p = self.players.get_mut(&id).ok_or(format!("no player {id}"))?;
        (p.dx, p.dy) = (input.dx, input.dy);
        Ok(())
    }

    /// Advances `dt` seconds: everyone moves (stopped by the walls), then the first player (by
    /// id) within reach of the coin takes it and the coin reappears elsewhere. Returns the id of
    /// the player who took it, if any.
    pub fn step(&mut self, dt: f64) -> Option<u64> {
        self.tick += 1;
        for p in self.players.values_mut() {
            p.x = (p.x + p.dx * SPEED * dt).clamp(RADIUS, WIDTH - RADIUS);
            p.y = (p.y + p.dy * SPEED * dt).clamp(RADIUS, HEIGHT - RADIUS);
        }
        let [cx, cy] = self.coin;
        let taker = self
            .players
            .values_mut()
            .find(|p| (p.x - cx).hypot(p.y - cy) <= REACH)?;
        taker.score += 1;
        let id = taker.id;
        self.coin = self.random_spot();
        Some(id)
    }

    /// The snapshot sent to clients.
    pub fn state(&self) -> State {
        State {
            tick: self.tick,
            coin: self.coin,
            players: self.players.values().cloned().collect(),
        }
    }
}
