//! `lagtime-server [HOST:PORT]`: pings every client and prints each round trip in ms, and a
//! min / median / max summary when the client leaves. Ctrl-C stops it.

use lagtime::LagServer;
use netlib::{Server, ServerConfig};

fn main() -> netlib::Result<()> {
    env_logger::init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| netlib::DEFAULT_ADDR.to_owned());
    let state = LagServer::new(|line| println!("{line}"));
    let mut server = Server::bind(state, &[addr], ServerConfig::default())?;
    println!("lagtime-server listening on {}", server.local_addrs()[0]);
    let stop = server.stop_handle();
    ctrlc::set_handler(move || stop.stop()).expect("Ctrl-C handler");
    server.run()?;
    server.shutdown(std::time::Duration::from_secs(2))?;
    Ok(())
}
