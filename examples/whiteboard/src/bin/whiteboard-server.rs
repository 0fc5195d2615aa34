//! `whiteboard-server [HOST:PORT]`: the shared board's server. Ctrl-C stops it.

use netlib::{Server, ServerConfig};
use whiteboard::server::Whiteboard;

fn main() -> netlib::Result<()> {
    env_logger::init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| netlib::DEFAULT_ADDR.to_owned());
    let mut server = Server::bind(Whiteboard::default(), &[addr], ServerConfig::default())?;
    println!("whiteboard-server listening on {}", server.local_addrs()[0]);
    let stop = server.stop_handle();
    ctrlc::set_handler(move || stop.stop()).expect("Ctrl-C handler");
    server.run()?;
    server.shutdown(std::time::Duration::from_secs(2))?;
    Ok(())
}
