//! `netlib-bench`: runs the same workloads, in one run, against netlib's chat-server, PodSixNet's
//! chat server (JSON mode, the real PodSixNet 0.11.0) and a raw relay with no JSON, then over
//! WebSocket against Socket.IO 4, and with two nodes through Redis, and prints Markdown tables
//! with ratios. Servers run pinned to CPU 0 (`taskset`), the generator should run
//! on CPU 1 (`bench/run.sh` does both).
//!
//! Expects `target/release/{chat-server,raw-relay}` built and the PodSixNet virtualenv at
//! `target/podsixnet-venv` (`bench/run.sh` prepares all of it).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use netlib_bench::load::{self, ChatResult, Wire, Workload};
use netlib_bench::process::{addr_at_end, start_pinned};
use netlib_bench::ws::Proto;

/// The benchmark run.
#[derive(Debug, Parser)]
struct Args {
    /// Seconds measured per chat workload (after a 1 s warm-up).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Runs of every chat workload per server (interleaved); the table shows medians, since
    /// a shared machine's speed drifts between runs.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Idle connections for the memory workload.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// The workspace's target directory.
    #[arg(long, default_value = "target")]
    target: PathBuf,
}

struct Server {
    child: Child,
    /// Where clients connect: one address, or one per node of a cluster.
    addrs: Vec<SocketAddr>,
    /// A cluster's other processes (its other nodes, then Redis), stopped after `child`.
    others: Vec<Server>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.others.clear();
    }
}

/// A `redis-server` on a free port, pinned to CPU 0 with the servers, without persistence.
fn redis() -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("taskset")
        .args(["-c", "0", "redis-server", "--port", &port.to_string()])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Server {
        child,
        addrs: vec![addr],
        others: Vec::new(),
    }
}

/// chat-server with its page and WebSocket (`--web`); `addrs` holds the web listener.
fn start_web(program: &Path) -> Server {
    let mut child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(program)
        .args(["127.0.0.1:0", "--web", "127.0.0.1:0", "--rate-limit", "0"])
        .args(["--max-connections", "20000"])
        // Every client comes from 127.0.0.1: no per-address limits.
        .args(["--max-connections-per-address", "0"])
        .args(["--max-handshakes-per-address", "0"])
        .args(["--connect-rate-per-address", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chat-server --web");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let prefix = "chat-server listening for web clients on http://";
    let addr = loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).expect("read") > 0,
            "no web address"
        );
        if let Some(rest) = line.trim().strip_prefix(prefix) {
            break rest.trim_end_matches('/').parse().expect("web address");
        }
    };
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Server {
        child,
        addrs: vec![addr],
        others: Vec::new(),
    }
}

/// One Socket.IO 4 node (`bench/socketio/server.mjs`, Node), alone (`redis: None`) or sharing
/// the room through Redis with `@socket.io/redis-adapter`.
fn socketio(redis: Option<&str>) -> Server {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("socketio/server.mjs");
    let mut args = vec![script.to_str().unwrap()];
    args.extend(redis);
    start("Socket.IO", Path::new("node"), &args)
}

/// Two Socket.IO 4 nodes sharing the room through Redis: the same layout as [`cluster`].
fn socketio_cluster() -> Server {
    let redis = redis();
    let url = format!("redis://{}", redis.addrs[0]);
    let node = || socketio(Some(&url));
    let (a, b) = (node(), node());
    Server {
        addrs: vec![a.addrs[0], b.addrs[0]],
        child: Command::new("true").spawn().expect("true"),
        others: vec![a, b, redis],
    }
}

/// Two chat-server nodes sharing rooms through Redis; clients are spread over both.
fn cluster(program: &Path) -> Server {
    let redis = redis();
    let url = format!("redis://{}", redis.addrs[0]);
    let node = |id: &str| {
        start(
            "chat-server",
            program,
            &[
                "127.0.0.1:0",
                "--max-connections",
                "20000",
                "--max-connections-per-address",
                "0",
                "--connect-rate-per-address",
                "0",
                "--rate-limit",
                "0",
                "--redis",
                &url,
                "--node-id",
                id,
            ],
        )
    };
    let (a, b) = (node("a"), node("b"));
    Server {
        addrs: vec![a.addrs[0], b.addrs[0]],
        child: Command::new("true").spawn().expect("true"),
        others: vec![a, b, redis],
    }
}

fn start(name: &str, program: &Path, args: &[&str]) -> Server {
    let (child, lines) = start_pinned(name, program, args, 1);
    Server {
        child,
        addrs: vec![addr_at_end(name, &lines[0])],
        others: Vec::new(),
    }
}

/// The processes of a server whose CPU time is reported: (name, pid).
fn processes(server: &Server) -> Vec<(String, u32)> {
    if server.others.is_empty() {
        return vec![("server".into(), server.child.id())];
    }
    ["node a", "node b", "redis-server"]
        .iter()
        .zip(&server.others)
        .map(|(n, s)| (n.to_string(), s.child.id()))
        .collect()
}

/// The median of each metric over runs.
fn median(runs: &[ChatResult]) -> ChatResult {
    let mid = |f: &dyn Fn(&ChatResult) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let cpu = (0..runs[0].cpu.len()).map(|i| mid(&|r| r.cpu[i])).collect();
    ChatResult {
        deliveries_per_sec: mid(&|r| r.deliveries_per_sec),
        p50_us: mid(&|r| r.p50_us),
        p99_us: mid(&|r| r.p99_us),
        samples: runs.iter().map(|r| r.samples).sum(),
        cpu,
        generator_cpu: mid(&|r| r.generator_cpu),
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else {
        format!("{:.0} k/s", r / 1e3)
    }
}

fn ms(us: f64) -> String {
    format!("{:.3} ms", us / 1000.0)
}

fn main() {
    let args = Args::parse();
    // Servers inherit it: 10 000 idle connections need more than the usual 1024 descriptors.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let t = &args.target;
    let warm = Duration::from_secs(1);
    let dur = Duration::from_secs_f64(args.seconds);
    let python = t.join("podsixnet-venv/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("podsixnet_chat_server.py");

    type Run<'a> = (&'static str, Box<dyn Fn() -> Server + 'a>);
    let servers: Vec<Run<'_>> = vec![
        (
            "netlib",
            Box::new(|| {
                start(
                    "chat-server",
                    &t.join("release/chat-server"),
                    // Rate limits off: 100 senders flat out are the workload, not abuse.
                    // Every client comes from 127.0.0.1: no per-address limits either.
                    &[
                        "127.0.0.1:0",
                        "--max-connections",
                        "20000",
                        "--max-connections-per-address",
                        "0",
                        "--connect-rate-per-address",
                        "0",
                        "--rate-limit",
                        "0",
                    ],
                )
            }),
        ),
        (
            "PodSixNet",
            Box::new(|| start("PodSixNet", &python, &[script.to_str().unwrap(), "0"])),
        ),
        (
            "raw",
            Box::new(|| start("raw-relay", &t.join("release/raw-relay"), &["127.0.0.1:0"])),
        ),
        (
            "netlib, 2 nodes + Redis",
            Box::new(|| cluster(&t.join("release/chat-server"))),
        ),
        (
            "netlib rooms (relay)",
            Box::new(|| {
                start(
                    "room-relay",
                    &t.join("release/room-relay"),
                    &["127.0.0.1:0"],
                )
            }),
        ),
    ];
    let workloads: [(&str, usize, usize, usize); 3] = [
        ("chat K=100 S=100 W=1", 100, 100, 1),
        ("chat K=100 S=1 W=1", 100, 1, 1),
        ("ping, 1 client", 1, 1, 1),
    ];
    let mut results: Vec<Vec<ChatResult>> = Vec::new();
    for (name, k, s, w) in workloads {
        let mut runs: Vec<Vec<ChatResult>> = vec![Vec::new(); servers.len()];
        for rep in 0..args.repeat.max(1) {
            for (i, (server_name, make)) in servers.iter().enumerate() {
                let server = make();
                let procs = processes(&server);
                let pids: Vec<u32> = procs.iter().map(|(_, p)| *p).collect();
                let load = Workload {
                    k,
                    s,
                    w,
                    warmup: warm,
                    duration: dur,
                    pad: 0,
                    session: false,
                };
                let r = load::chat(Wire::Tcp, &server.addrs, load, &pids);
                // Each process's share of a core in the measured window (a cluster's three
                // processes share CPU 0), and the generator's on CPU 1.
                let shares: Vec<String> = procs
                    .iter()
                    .zip(&r.cpu)
                    .map(|((n, _), c)| format!("{n} {:.0}%", 100.0 * c))
                    .collect();
                eprintln!(
                    "{name} / {server_name}: CPU: {}, generator {:.0}%",
                    shares.join(", "),
                    100.0 * r.generator_cpu
                );
                eprintln!("{name} / {server_name} / run {}: {r:?}", rep + 1);
                runs[i].push(r);
            }
        }
        results.push(runs.iter().map(|r| median(r)).collect());
    }
    // The same chat over WebSocket (browsers' transport): netlib against one Socket.IO 4 node,
    // with each server's CPU use and the generator's (to show which one is the limit).
    type WsRun<'a> = (&'static str, Proto, Box<dyn Fn() -> Server + 'a>);
    let ws_servers: [WsRun<'_>; 2] = [
        (
            "netlib over WebSocket",
            Proto::Netlib,
            Box::new(|| start_web(&t.join("release/chat-server"))),
        ),
        (
            "Socket.IO, 1 node",
            Proto::SocketIo,
            Box::new(|| socketio(None)),
        ),
    ];
    // [workload][server] -> runs.
    let mut ws_runs: Vec<Vec<Vec<ChatResult>>> = vec![vec![Vec::new(); 2]; 2];
    for rep in 0..args.repeat.max(1) {
        for (i, (name, s)) in [("chat K=100 S=100 W=1", 100), ("chat K=100 S=1 W=1", 1)]
            .into_iter()
            .enumerate()
        {
            for (j, (server_name, proto, make)) in ws_servers.iter().enumerate() {
                let server = make();
                let load = Workload {
                    k: 100,
                    s,
                    w: 1,
                    warmup: warm,
                    duration: dur,
                    pad: 0,
                    session: false,
                };
                let r = load::chat(Wire::Ws(*proto), &server.addrs, load, &[server.child.id()]);
                eprintln!("{name} / {server_name} / run {}: {r:?}", rep + 1);
                ws_runs[i][j].push(r);
            }
        }
    }
    let ws_median = |i: usize, j: usize| median(&ws_runs[i][j]);
    let ws = [ws_median(0, 0), ws_median(1, 0)];
    let sio1 = [ws_median(0, 1), ws_median(1, 1)];
    // Socket.IO 4 with its Redis adapter, 2 nodes, over WebSocket: the peer to beat.
    let mut sio_runs = Vec::new();
    for rep in 0..args.repeat.max(1) {
        let server = socketio_cluster();
        let load = Workload {
            k: 100,
            s: 100,
            w: 1,
            warmup: warm,
            duration: dur,
            pad: 0,
            session: false,
        };
        let r = load::chat(Wire::Ws(Proto::SocketIo), &server.addrs, load, &[]);
        eprintln!(
            "chat K=100 S=100 W=1 / Socket.IO, 2 nodes + Redis / run {}: {r:?}",
            rep + 1
        );
        sio_runs.push(r);
    }
    let sio = median(&sio_runs);
    // Idle connections: memory per connection, over TCP, WebSocket and Socket.IO.
    let netlib = (servers[0].1)();
    let idle = load::idle(
        Wire::Tcp,
        netlib.addrs[0],
        netlib.child.id(),
        args.idle,
        false,
    );
    eprintln!("idle / netlib: {idle:?}");
    drop(netlib);
    // The same with a nickname per connection (issue 19's goal: at most 2 KiB each).
    let netlib = (servers[0].1)();
    let named = load::idle(
        Wire::Tcp,
        netlib.addrs[0],
        netlib.child.id(),
        args.idle,
        true,
    );
    eprintln!("idle with nicknames / netlib: {named:?}");
    drop(netlib);
    let web = start_web(&t.join("release/chat-server"));
    let idle_ws = load::idle(
        Wire::Ws(Proto::Netlib),
        web.addrs[0],
        web.child.id(),
        args.idle,
        false,
    );
    eprintln!("idle / netlib over WebSocket: {idle_ws:?}");
    drop(web);
    let node = socketio(None);
    let idle_sio = load::idle(
        Wire::Ws(Proto::SocketIo),
        node.addrs[0],
        node.child.id(),
        args.idle,
        false,
    );
    eprintln!("idle / Socket.IO: {idle_sio:?}");
    drop(node);

    println!("| workload | metric | netlib | PodSixNet | raw relay | netlib / raw | netlib / PodSixNet |");
    println!("|---|---|---|---|---|---|---|");
    let tp = &results[0];
    println!(
        "| chat, K=100, S=100, W=1 | deliveries/s | {} | {} | {} | {:.0}% | {:.0}x |",
        fmt_rate(tp[0].deliveries_per_sec),
        fmt_rate(tp[1].deliveries_per_sec),
        fmt_rate(tp[2].deliveries_per_sec),
        100.0 * tp[0].deliveries_per_sec / tp[2].deliveries_per_sec,
        tp[0].deliveries_per_sec / tp[1].deliveries_per_sec,
    );
    let cpu = |r: &ChatResult| {
        format!(
            "{:.0}% / {:.0}%",
            100.0 * r.cpu.first().copied().unwrap_or(f64::NAN),
            100.0 * r.generator_cpu
        )
    };
    println!(
        "| chat, K=100, S=100, W=1 | CPU: server / generator | {} | {} | {} | - | - |",
        cpu(&tp[0]),
        cpu(&tp[1]),
        cpu(&tp[2]),
    );
    let rooms = &results[0][4];
    println!(
        "| room fan-out, K=100, S=100, W=1: netlib's rooms alone (`room-relay`), equal frame size | deliveries/s | {} | - | {} | {:.0}% | - |",
        fmt_rate(rooms.deliveries_per_sec),
        fmt_rate(tp[2].deliveries_per_sec),
        100.0 * rooms.deliveries_per_sec / tp[2].deliveries_per_sec,
    );
    println!(
        "| room fan-out, K=100, S=100, W=1: netlib's rooms alone | CPU: server / generator | {} | - | - | - | - |",
        cpu(rooms),
    );
    let (one, two) = (&results[0][0], &results[0][3]);
    println!(
        "| chat, K=100, S=100, W=1, clients split over 2 nodes + Redis | deliveries/s | {} (2 nodes) | - | - | {:.2}x one node | {:.1}x Socket.IO |",
        fmt_rate(two.deliveries_per_sec),
        two.deliveries_per_sec / one.deliveries_per_sec,
        two.deliveries_per_sec / sio.deliveries_per_sec,
    );
    println!(
        "| same, Socket.IO 4 + @socket.io/redis-adapter, 2 nodes, over WebSocket | deliveries/s | {} | - | - | - | - |",
        fmt_rate(sio.deliveries_per_sec),
    );
    let lat = &results[1][3];
    println!(
        "| chat, K=100, S=1, W=1, 2 nodes + Redis | round trip p50 / p99 | {} / {} | - | - | - | - |",
        ms(lat.p50_us),
        ms(lat.p99_us)
    );
    for (row, label) in [
        (&results[1], "chat, K=100, S=1, W=1"),
        (&results[2], "ping, 1 client"),
    ] {
        println!(
            "| {label} | round trip p50 | {} | {} | {} | {:.2}x | {:.3}x |",
            ms(row[0].p50_us),
            ms(row[1].p50_us),
            ms(row[2].p50_us),
            row[0].p50_us / row[2].p50_us,
            row[0].p50_us / row[1].p50_us,
        );
        println!(
            "| {label} | round trip p99 | {} | {} | {} | {:.2}x | {:.3}x |",
            ms(row[0].p99_us),
            ms(row[1].p99_us),
            ms(row[2].p99_us),
            row[0].p99_us / row[2].p99_us,
            row[0].p99_us / row[1].p99_us,
        );
    }
    println!(
        "| idle, N={} in one room | all connected in | {:.2} s | (cannot exceed ~1 000) | - | - | - |",
        idle.connections,
        idle.connect_time.as_secs_f64()
    );
    println!(
        "| idle, N={} in one room | server RSS per connection | {:.0} B | - | - | - | - |",
        idle.connections, idle.rss_per_connection
    );
    println!(
        "| idle, N={} in one room, each with a nickname | server RSS per connection | {:.0} B | - | - | - | - |",
        named.connections, named.rss_per_connection
    );
    println!(
        "| idle, N={} in one room | round trip at the end | {} | - | - | - | - |",
        idle.connections,
        if idle.round_trip_ok {
            "works"
        } else {
            "FAILED"
        }
    );
    println!();
    println!("| workload | metric | netlib over WebSocket | Socket.IO 4, 1 node | netlib over TCP | WebSocket / TCP | netlib / Socket.IO |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| chat, K=100, S=100, W=1 | deliveries/s | {} | {} | {} | {:.2}x | {:.1}x |",
        fmt_rate(ws[0].deliveries_per_sec),
        fmt_rate(sio1[0].deliveries_per_sec),
        fmt_rate(tp[0].deliveries_per_sec),
        ws[0].deliveries_per_sec / tp[0].deliveries_per_sec,
        ws[0].deliveries_per_sec / sio1[0].deliveries_per_sec,
    );
    println!(
        "| chat, K=100, S=100, W=1 | CPU: server / generator | {:.0}% / {:.0}% | {:.0}% / {:.0}% | - | - | - |",
        100.0 * ws[0].cpu[0],
        100.0 * ws[0].generator_cpu,
        100.0 * sio1[0].cpu[0],
        100.0 * sio1[0].generator_cpu,
    );
    for (label, f) in [
        ("p50", (|r: &ChatResult| r.p50_us) as fn(&ChatResult) -> f64),
        ("p99", |r: &ChatResult| r.p99_us),
    ] {
        println!(
            "| chat, K=100, S=1, W=1 | fan-out round trip {label} | {} | {} | {} | {:.2}x | {:.2}x |",
            ms(f(&ws[1])),
            ms(f(&sio1[1])),
            ms(f(&results[1][0])),
            f(&ws[1]) / f(&results[1][0]),
            f(&ws[1]) / f(&sio1[1]),
        );
    }
    println!(
        "| idle, N={} in one room | server RSS per connection | {:.0} B | {:.0} B | {:.0} B | {:.2}x | {:.2}x |",
        idle.connections,
        idle_ws.rss_per_connection,
        idle_sio.rss_per_connection,
        idle.rss_per_connection,
        idle_ws.rss_per_connection / idle.rss_per_connection,
        idle_ws.rss_per_connection / idle_sio.rss_per_connection,
    );
    println!(
        "| idle, N={} in one room | all connected in / round trip at the end | {:.2} s / {} | {:.2} s / {} | - | - | - |",
        idle.connections,
        idle_ws.connect_time.as_secs_f64(),
        if idle_ws.round_trip_ok { "works" } else { "FAILED" },
        idle_sio.connect_time.as_secs_f64(),
        if idle_sio.round_trip_ok { "works" } else { "FAILED" },
    );
}
