//! The server: a [`ServerHandler`] that owns the [`World`], and the fixed-tick loop that steps
//! it and broadcasts its state.
//!
//! On several nodes (`arena-server --redis URL`, or any netlib cluster adapter) there is still
//! one arena: the oldest live node is the *leader*. It alone runs the world and sends the state
//! to the room `arena`, which every player joins on whichever node it is, so the state reaches
//! all of them through the adapter (one publish a tick). The other nodes forward their players'
//! joins, inputs and leaves to the leader as node messages ([`Note`]). When the leader dies,
//! the next oldest node takes over with a new world and asks every node for its players
//! ([`Note::RollCall`]); each node also sends its players to the leader again whenever its
//! link to the cluster comes back up. A join told twice changes nothing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use netlib::{
    handler, ChannelId, Closed, ClusterEvent, EncodeError, FixedStep, NodeNumber, Room, Server,
    ServerContext, ServerHandler,
};
use serde::{Deserialize, Serialize};

use crate::world::{Input, World};

/// The server's fixed step: 20 ticks a second.
pub const TICK: Duration = Duration::from_millis(50);

/// The room every player is in: the state of each tick goes to it.
pub const ARENA: &str = "arena";

/// What the nodes of a cluster tell each other (netlib's `emit_node`/`emit_nodes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Note {
    /// A node is up, started at `started` (ms since the Unix epoch): the oldest leads. Answered
    /// once (`reply: true`).
    Hello {
        /// When the node started.
        started: u64,
        /// An answer.
        reply: bool,
    },
    /// A new leader asks every node to send it their players.
    RollCall,
    /// A player of the sending node entered the arena.
    Join {
        /// Its channel id.
        player: ChannelId,
    },
    /// A player of the sending node left.
    Leave {
        /// Its channel id.
        player: ChannelId,
    },
    /// A player's input, checked by its node.
    Input {
        /// Its channel id.
        player: ChannelId,
        /// The input.
        input: Input,
    },
}

/// The server state: the world, and news for the log. Players are channels' serial numbers,
/// so no per-channel state is needed (`type Channel = ()`).
#[derive(Debug)]
pub struct ArenaServer {
    /// The game (played on the leader; empty on the other nodes).
    pub world: World,
    /// Joins, leaves and coins taken since the caller last drained it, one line each.
    pub news: Vec<String>,
    /// When this process started, ms since the Unix epoch: the oldest node leads.
    started: u64,
    /// The other live nodes, and when each started.
    nodes: BTreeMap<NodeNumber, u64>,
    /// The world's seed (a new leader's world is made with it).
    seed: u64,
}

impl ArenaServer {
    /// A server for an empty arena made with `seed`, started at `started` (ms since the Unix
    /// epoch: on a cluster, the oldest node leads; any value on a single node).
    pub fn new(seed: u64, started: u64) -> Self {
        ArenaServer {
            world: World::new(seed),
            news: Vec::new(),
            started,
            nodes: BTreeMap::new(),
            seed,
        }
    }

    /// The node that runs the world: this one (`me`), unless an older live node is known.
    fn leader(&self, me: NodeNumber) -> NodeNumber {
        let oldest = self.nodes.iter().map(|(&n, &started)| (started, n)).min();
        match oldest {
            Some(other) if other < (self.started, me) => other.1,
            _ => me,
        }
    }

    /// Tells the leader, or plays here if this node leads.
    fn play_or_forward(
        &mut self,
        ctx: &mut ServerContext<'_, ()>,
        note: Note,
    ) -> Result<(), String> {
        let leader = self.leader(ctx.node());
        if leader != ctx.node() {
            return ctx.emit_node(leader, &note).map_err(|e| e.to_string());
        }
        match note {
            Note::Join { player } => self.world.join(player.serial()),
            Note::Leave { player } => {
                self.world.leave(player.serial());
            }
            Note::Input { player, input } => {
                // A player the leader does not know yet (its join is on the way, or was lost):
                // in it comes.
                self.world.join(player.serial());
                return self.world.input(player.serial(), input);
            }
            Note::Hello { .. } | Note::RollCall => {}
        }
        Ok(())
    }

    /// Sends this node's players to the leader (a roll call, or this node is back up).
    fn send_players(&mut self, ctx: &mut ServerContext<'_, ()>) {
        let players: Vec<ChannelId> = ctx.members(ARENA).collect();
        for player in players {
            if let Err(e) = self.play_or_forward(ctx, Note::Join { player }) {
                log::warn!("cannot tell the leader of {player}: {e}");
            }
        }
    }

    /// The leader may have changed: the world starts anew, this node's players go to the new
    /// leader, and a new leader asks the others for theirs.
    fn follow(&mut self, ctx: &mut ServerContext<'_, ()>, before: NodeNumber) {
        let (me, leader) = (ctx.node(), self.leader(ctx.node()));
        if leader == before {
            return;
        }
        self.news.push(format!("node {leader} leads the arena"));
        self.world = World::new(self.seed);
        // This node's players go to the new leader (this one, or another); a new leader also
        // asks the others for theirs, in case they learn of it later than it does.
        self.send_players(ctx);
        if leader == me {
            if let Err(e) = ctx.emit_nodes(&Note::RollCall) {
                log::warn!("cannot ask the other nodes for their players: {e}");
            }
        }
    }

    fn network_input(
        &mut self,
        ctx: &mut ServerContext<'_, ()>,
        from: ChannelId,
        input: Input,
    ) -> Result<(), String> {
        // An `Err` is answered with {"action": "error", "error": [22, "..."], "for": "input"}.
        input.check()?;
        self.play_or_forward(
            ctx,
            Note::Input {
                player: from,
                input,
            },
        )
    }
}
handler!(ArenaServer, "input" => network_input);

impl ServerHandler for ArenaServer {
    type Channel = ();

    fn connected(&mut self, ctx: &mut ServerContext<'_, ()>, id: ChannelId, addr: SocketAddr) {
        if let Err(e) = ctx.join(id, ARENA) {
            log::error!("{id} cannot join the arena: {e}");
        }
        if let Err(e) = self.play_or_forward(ctx, Note::Join { player: id }) {
            log::warn!("{id} joined, but the leader was not told: {e}");
        }
        self.news.push(format!("{id} joined from {addr}"));
    }

    fn closed(&mut self, ctx: &mut ServerContext<'_, ()>, gone: Closed<()>) {
        let Closed { id, reason, .. } = gone;
        if let Err(e) = self.play_or_forward(ctx, Note::Leave { player: id }) {
            log::warn!("{id} left, but the leader was not told: {e}");
        }
        self.news.push(format!("{id} left ({reason})"));
    }

    fn cluster(&mut self, ctx: &mut ServerContext<'_, ()>, event: ClusterEvent) {
        let before = self.leader(ctx.node());
        match event {
            ClusterEvent::Up => {
                let hello = Note::Hello {
                    started: self.started,
                    reply: false,
                };
                if let Err(e) = ctx.emit_nodes(&hello) {
                    log::warn!("cannot greet the other nodes: {e}");
                }
                // Joins told while the cluster was down were lost: tell them again.
                self.send_players(ctx);
            }
            ClusterEvent::Message { from, message } => {
                let note = message.parse::<Note>();
                let greets = matches!(note, Ok(Note::Hello { .. }));
                if !greets && !self.nodes.contains_key(&from) {
                    // A node this one has not heard greet (its hello was lost): greet it, so
                    // both agree on who leads.
                    let hello = Note::Hello {
                        started: self.started,
                        reply: false,
                    };
                    if let Err(e) = ctx.emit_node(from, &hello) {
                        log::warn!("cannot greet node {from}: {e}");
                    }
                }
                match note {
                    Ok(Note::Hello { started, reply }) => {
                        self.nodes.insert(from, started);
                        if !reply {
                            let hello = Note::Hello {
                                started: self.started,
                                reply: true,
                            };
                            if let Err(e) = ctx.emit_node(from, &hello) {
                                log::warn!("cannot answer node {from}: {e}");
                            }
                        }
                    }
                    Ok(Note::RollCall) => self.send_players(ctx),
                    // Only the leader plays what other nodes send; a note meant for an
                    // earlier leader is dropped (its roll call gathers the players again).
                    Ok(note) if self.leader(ctx.node()) == ctx.node() => {
                        if let Err(e) = self.play_or_forward(ctx, note) {
                            log::debug!("a note from node {from}: {e}");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => log::warn!("a note from node {from} I cannot read: {e}"),
                }
            }
            // A player of a node that died: gone from the world.
            ClusterEvent::Departed { id } => {
                self.world.leave(id.serial());
            }
            ClusterEvent::NodeGone { node } => {
                self.nodes.remove(&node);
                self.news.push(format!("node {node} is gone"));
            }
            _ => {}
        }
        self.follow(ctx, before);
    }
}

/// One tick: steps the world by [`TICK`] and queues its state for every player, encoded once
/// (on a cluster, only the leader ticks; the state reaches the other nodes' players through
/// the adapter).
///
/// # Errors
/// If the state cannot be encoded (it is larger than the config's frame size).
pub fn tick(server: &mut Server<ArenaServer>) -> Result<(), EncodeError> {
    let (game, mut ctx) = server.split();
    if game.leader(ctx.node()) != ctx.node() {
        return Ok(());
    }
    if let Some(id) = game.world.step(TICK.as_secs_f64()) {
        game.news.push(format!("#{id} took the coin"));
    }
    ctx.send_to(Room(ARENA), &game.world.state())?;
    Ok(())
}

/// One turn of the game loop: pumps (handling inputs as they come) until `step`'s next tick
/// is due or something arrives, then runs the tick if it is due. `now` reads the clock the
/// server's config was given (`Instant::now`, or a `ManualClock`'s in tests). The state a tick
/// queues leaves at the start of the next turn's pump, which writes before it waits. Returns
/// whether it ticked.
///
/// # Errors
/// As [`Server::pump`] and [`tick`].
pub fn turn(
    server: &mut Server<ArenaServer>,
    step: &mut FixedStep,
    now: impl Fn() -> Instant,
) -> netlib::Result<bool> {
    server.pump_timeout(step.wait(now()))?;
    if !step.due(now()) {
        return Ok(false);
    }
    tick(server)?;
    Ok(true)
}
