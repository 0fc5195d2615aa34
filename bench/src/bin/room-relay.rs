//! `room-relay ADDR`: netlib's room fan-out alone, to set beside the raw relay at equal frame
//! size. Every client joins the room `all`; every message a client sends goes back, as the
//! same message (the same JSON, so the same frame size as the raw relay's), to every member of
//! the room through `ctx.send_to(Room("all"), &msg)`, encoded once. No chat rules, no limits.
//! Prints `room-relay listening on ADDR`. `room-relay ADDR --sessions` turns on resumable
//! sessions (for clients that ask), to measure what they cost; `--metrics ADDR` serves the
//! server's metrics on `http://ADDR/metrics` (and prints `room-relay metrics on ADDR` as its
//! second line), to measure what they cost; `--tls-cert PATH --tls-key PATH` listens over TLS.

use std::net::SocketAddr;

use netlib::{ChannelId, Message, Room, Server, ServerConfig, ServerContext, ServerHandler};

struct Relay;

impl ServerHandler for Relay {
    type Channel = ();

    fn connected(&mut self, ctx: &mut ServerContext<'_, ()>, id: ChannelId, _: SocketAddr) {
        ctx.join(id, "all").expect("a new channel joins");
    }

    /// Every message (no action has a handler): to the whole room, the sender too, as the raw
    /// relay does.
    fn unhandled(&mut self, ctx: &mut ServerContext<'_, ()>, _: ChannelId, msg: &Message) {
        let _ = ctx.send_to(Room("all"), msg);
    }
}

/// The value after `name` in `args`, if `name` is there.
fn flag_value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .map(|i| args.get(i + 1).cloned().expect("a value"))
}

fn main() -> netlib::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut config = ServerConfig::default().max_connections(20_000);
    if args.iter().any(|a| a == "--sessions") {
        config = config.sessions(netlib::DEFAULT_RESUME_WINDOW);
    }
    let metrics = flag_value(&args, "--metrics");
    let flag = |name: &str| flag_value(&args, name);
    let mut server = match (flag("--tls-cert"), flag("--tls-key")) {
        (Some(cert), Some(key)) => {
            let tls = netlib::transport::tls::TlsServer::from_pem_files(cert, key)
                .expect("the certificate and key");
            let mut server = Server::new(Relay, config)?;
            server.bind_tls(&addr, None, &tls)?;
            server
        }
        _ => Server::bind(Relay, &[addr], config)?,
    };
    println!("room-relay listening on {}", server.local_addrs()[0]);
    let _admin = match metrics {
        Some(at) => {
            let admin = server.serve_metrics(&at)?;
            println!("room-relay metrics on {}", admin.local_addr());
            Some(admin)
        }
        None => None,
    };
    server.run()?;
    Ok(())
}
