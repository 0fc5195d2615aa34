//! Runs only the idle workload (N connections in one room, the server's RSS growth per
//! connection) against one address and the server's process id:
//! `cargo run --release -p netlib-bench --example loadidle -- ADDR PID [N] [--named]`
//! (`--named`: each connection sets a nickname).
//! `ws://ADDR` speaks netlib over WebSocket (`chat-server --web`), `socketio://ADDR`
//! Socket.IO 4 (`bench/socketio/server.mjs`). Every connection comes from 127.0.0.1: start
//! chat-server with `--max-connections-per-address 0 --connect-rate-per-address 0` (and
//! `--max-connections` above N), as `netlib-bench` does.

use netlib_bench::load::Wire;

fn main() {
    let mut args = std::env::args().skip(1);
    let (wire, addrs) = Wire::parse_target(&args.next().expect("ADDR"));
    let pid: u32 = args.next().expect("PID").parse().expect("pid");
    let n: usize = args.next().map_or(10_000, |s| s.parse().expect("N"));
    let named = args.next().as_deref() == Some("--named");
    let r = netlib_bench::load::idle(wire, addrs[0], pid, n, named);
    println!("{r:?}");
}
