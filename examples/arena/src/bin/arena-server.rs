//! `arena-server [HOST:PORT] [--seed N]`: runs the game at 20 ticks a second. Prints
//! `arena-server listening on ADDR`, then joins, leaves and coins taken. Ctrl-C stops it.

use std::time::{Duration, Instant};

use arena::server::{turn, ArenaServer, TICK};
use clap::Parser;
use netlib::{FixedStep, Server, ServerConfig};

/// The arena server.
#[derive(Debug, Parser)]
struct Args {
    /// The address to listen on (port 0 picks a free one).
    #[arg(default_value = netlib::DEFAULT_ADDR)]
    addr: String,
    /// Decides where players and coins appear.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> netlib::Result<()> {
    env_logger::init();
    let args = Args::parse();
    // Each client learns its id, the key of its player in the state, from `connected`.
    let config = ServerConfig::default().announce_id(true);
    let mut server = Server::bind(ArenaServer::new(args.seed), &[args.addr], config)?;
    println!("arena-server listening on {}", server.local_addrs()[0]);
    let stop = server.stop_handle();
    ctrlc::set_handler(move || stop.stop()).expect("Ctrl-C handler");
    let stop = server.stop_handle();
    let mut step = FixedStep::new(TICK, Instant::now());
    while !stop.is_stopped() {
        turn(&mut server, &mut step, Instant::now)?;
        for line in server.state_mut().news.drain(..) {
            println!("{line}");
        }
    }
    let game = server.shutdown(Duration::from_secs(2))?;
    println!("arena-server stopped after {} ticks", game.world.tick);
    Ok(())
}
