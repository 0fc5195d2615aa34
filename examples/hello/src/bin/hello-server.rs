//! `hello-server [HOST:PORT]`: greets every client that says hello. Ctrl-C stops it.

use netlib::{Server, ServerConfig};

fn main() -> netlib::Result<()> {
    env_logger::init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| netlib::DEFAULT_ADDR.to_owned());
    let mut server = Server::bind(
        hello::HelloServer::default(),
        &[addr],
        ServerConfig::default(),
    )?;
    println!("hello-server listening on {}", server.local_addrs()[0]);
    let stop = server.stop_handle();
    ctrlc::set_handler(move || stop.stop()).expect("Ctrl-C handler");
    server.run()?;
    let state = server.shutdown(std::time::Duration::from_secs(2))?;
    println!("hello-server stopped after {} greeting(s)", state.greeted);
    Ok(())
}
