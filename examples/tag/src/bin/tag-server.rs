//! `tag-server [HOST:PORT]`: the game of tag at 20 Hz (default 127.0.0.1:31425).

use netlib::{Server, ServerConfig};
use tag::{Tag, TICK_HZ};

fn main() -> netlib::Result<()> {
    env_logger::init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or(netlib::DEFAULT_ADDR.into());
    let config = ServerConfig::default().announce_id(true);
    let mut server = Server::bind(Tag::default(), &[addr], config)?;
    println!("tag-server listening on {}", server.local_addrs()[0]);
    server.run_at(TICK_HZ, |game, ctx, dt| game.step(ctx, dt.as_secs_f32()))?;
    Ok(())
}
