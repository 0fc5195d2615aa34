//! `tag-bot [HOST:PORT]`: a bot that plays tag (default 127.0.0.1:31425) until the server goes
//! away. Run several for a game.

use std::time::Duration;

use netlib::{Client, ClientConfig};
use tag::Bot;

fn main() -> netlib::Result<()> {
    env_logger::init();
    let addr = std::env::args().nth(1).unwrap_or(netlib::DEFAULT_ADDR.into());
    let mut client = Client::connect(&addr, ClientConfig::default())?;
    let mut bot = Bot::default();
    while client.state() != netlib::ConnectionState::Closed {
        client.pump_timeout(&mut bot, Duration::from_millis(50))?;
    }
    Ok(())
}
