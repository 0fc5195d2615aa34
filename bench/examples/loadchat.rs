//! Runs only the throughput workload against one address, or several nodes of one chat split
//! with commas (for profiling a server):
//! `cargo run --release -p netlib-bench --example loadchat -- ADDR[,ADDR...] [SECONDS [PAD [session]]]`
//! (PAD: bytes of padding in each message's text; `session`: clients ask for resumable sessions).
//! `ws://ADDR` speaks netlib over WebSocket (`chat-server --web`), `socketio://ADDR`
//! Socket.IO 4 (`bench/socketio/server.mjs`). Every connection comes from 127.0.0.1: start
//! chat-server with `--max-connections-per-address 0 --connect-rate-per-address 0`, as
//! `netlib-bench` does.

use netlib_bench::load::Wire;

fn main() {
    let mut args = std::env::args().skip(1);
    let (wire, addrs) = Wire::parse_target(&args.next().expect("ADDR"));
    let secs: f64 = args.next().map_or(5.0, |s| s.parse().expect("seconds"));
    let pad: usize = args.next().map_or(0, |s| s.parse().expect("padding bytes"));
    // `session`: every client asks for a resumable session and acknowledges (netlib, TCP).
    let session = args.next().as_deref() == Some("session");
    let load = netlib_bench::load::Workload {
        k: 100,
        s: 100,
        w: 1,
        warmup: std::time::Duration::from_secs(1),
        duration: std::time::Duration::from_secs_f64(secs),
        pad,
        session,
    };
    let r = netlib_bench::load::chat(wire, &addrs, load, &[]);
    println!("{r:?}");
}
