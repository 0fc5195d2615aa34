//! The server: a [`ServerHandler`] that owns the [`World`], and the fixed-tick loop that steps
//! it and broadcasts its state.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use netlib::{
    handler, All, ChannelId, Closed, EncodeError, FixedStep, Server, ServerContext, ServerHandler,
};

use crate::world::{Input, World};

/// The server's fixed step: 20 ticks a second.
pub const TICK: Duration = Duration::from_millis(50);

/// The server state: the world, and news for the log. Players are channels' serial numbers,
/// so no per-channel state is needed (`type Channel = ()`).
#[derive(Debug)]
pub struct ArenaServer {
    /// The game.
    pub world: World,
    /// Joins, leaves and coins taken since the caller last drained it, one line each.
    pub news: Vec<String>,
}

impl ArenaServer {
    /// A server for an empty arena made with `seed`.
    pub fn new(seed: u64) -> Self {
        let (world, news) = (World::new(seed), Vec::new());
        ArenaServer { world, news }
    }

    fn network_input(
        &mut self,
        _: &mut ServerContext<'_, ()>,
        from: ChannelId,
        input: Input,
    ) -> Result<(), String> {
        // An `Err` is answered with {"action": "error", "error": [22, "..."], "for": "input"}.
        self.world.input(from.serial(), input)
    }
}
handler!(ArenaServer, "input" => network_input);

impl ServerHandler for ArenaServer {
    type Channel = ();

    fn connected(&mut self, _: &mut ServerContext<'_, ()>, id: ChannelId, addr: SocketAddr) {
        self.world.join(id.serial());
        self.news.push(format!("{id} joined from {addr}"));
    }

    fn closed(&mut self, _: &mut ServerContext<'_, ()>, gone: Closed<()>) {
        let Closed { id, reason, .. } = gone;
        self.world.leave(id.serial());
        self.news.push(format!("{id} left ({reason})"));
    }
}

/// One tick: steps the world by [`TICK`] and queues its state for every client, encoded once.
///
/// # Errors
/// If the state cannot be encoded (it is larger than the config's frame size).
pub fn tick(server: &mut Server<ArenaServer>) -> Result<(), EncodeError> {
    let (game, mut ctx) = server.split();
    if let Some(id) = game.world.step(TICK.as_secs_f64()) {
        game.news.push(format!("#{id} took the coin"));
    }
    let frame = ctx.encode(&game.world.state())?;
    ctx.send_frame_to(All, &frame);
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
