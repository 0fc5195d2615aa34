//! Runs only the idle workload (N connections in one room, the server's RSS growth per
//! connection) against one address and the server's process id:
//! `cargo run --release -p netlib-bench --example loadidle -- ADDR PID [N]`.
//! `ws://ADDR` speaks netlib over WebSocket (`chat-server --web`), `socketio://ADDR`
//! Socket.IO 4 (`bench/socketio/server.mjs`).

use netlib_bench::load::Wire;
use netlib_bench::ws::Proto;

fn main() {
    let mut args = std::env::args().skip(1);
    let arg = args.next().expect("ADDR");
    let (wire, addr) = match arg.split_once("://") {
        Some(("ws", rest)) => (Wire::Ws(Proto::Netlib), rest.to_owned()),
        Some(("socketio", rest)) => (Wire::Ws(Proto::SocketIo), rest.to_owned()),
        Some((scheme, _)) => panic!("unknown scheme {scheme}"),
        None => (Wire::Tcp, arg),
    };
    let pid: u32 = args.next().expect("PID").parse().expect("pid");
    let n: usize = args.next().map_or(10_000, |s| s.parse().expect("N"));
    let r = netlib_bench::load::idle(wire, addr.parse().expect("address"), pid, n);
    println!("{r:?}");
}
