//! `tag-bot [HOST:PORT]`: a bot that plays tag (default 127.0.0.1:31425) until the server goes
//! away. Run several for a game.

use netlib::{Client, ClientConfig};
use tag::Bot;

fn main() -> netlib::Result<()> {
    env_logger::init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or(netlib::DEFAULT_ADDR.into());
    let mut client = Client::connect(&addr, ClientConfig::default())?;
    client.run(&mut Bot::default())
}
