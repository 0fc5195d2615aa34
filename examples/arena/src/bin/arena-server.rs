//! `arena-server [HOST:PORT] [--seed N] [--redis URL]`: runs the game at 20 ticks a second.
//! Prints `arena-server listening on ADDR`, then joins, leaves and coins taken. Ctrl-C stops
//! it. With `--redis`, several servers share one arena (see `arena::server`).

use std::time::{Duration, Instant};

use arena::server::{turn, ArenaServer, TICK};
use clap::Parser;
use netlib::{FixedStep, Server, ServerConfig};
use netlib_redis::{RedisAdapter, RedisConfig};

/// The arena server.
#[derive(Debug, Parser)]
struct Args {
    /// The address to listen on (port 0 picks a free one).
    #[arg(default_value = netlib::DEFAULT_ADDR)]
    addr: String,
    /// Decides where players and coins appear.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share one arena with the other arena-servers on this Redis server
    /// (`redis://HOST:PORT`, or `redis://:PASSWORD@HOST:PORT`; logs show `***`).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Seconds a node's presence lasts in Redis without a refresh: players of a node that
    /// died leave within this plus 2 s.
    #[arg(long, default_value_t = 10, value_name = "SECS", requires = "redis")]
    presence_ttl: u64,
}

fn main() -> netlib::Result<()> {
    env_logger::init();
    let args = Args::parse();
    // Each client learns its id, the key of its player in the state, from `connected`.
    let config = ServerConfig::default().announce_id(true);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let game = ArenaServer::new(args.seed, started);
    let mut joined = None;
    let mut server = match &args.redis {
        None => Server::new(game, config)?,
        Some(url) => {
            let redis = RedisConfig::new(url)
                .prefix("arena")
                .presence_ttl(Duration::from_secs(args.presence_ttl.max(1)));
            let shown = redis.shown_url();
            let adapter = match RedisAdapter::connect(redis) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("arena-server: --redis {shown}: {e}");
                    std::process::exit(2);
                }
            };
            joined = Some(format!(
                "arena-server node {} joins the cluster at {shown}",
                netlib::Adapter::node(&adapter)
            ));
            Server::with_adapter(game, config, Box::new(adapter))?
        }
    };
    server.bind_tcp(&args.addr, None)?;
    println!("arena-server listening on {}", server.local_addrs()[0]);
    if let Some(line) = joined {
        println!("{line}");
    }
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
