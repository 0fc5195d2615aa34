//! `chat-server [HOST:PORT]... [--codec json|rencode] [--framing terminator|length]
//! [--text ADDR]... [--rencode ADDR]... [--web ADDR]... [--allowed-origin ORIGIN]... [--op-password-env VAR]
//! [--metrics ADDR] [--tls-cert PATH --tls-key PATH] [--proxy-protocol CIDR,...]`: the netlib
//! chat server.

use std::process::ExitCode;
use std::time::Duration;

use chat::limits::ChatLimits;
use chat::protocol::RoomPolicy;
use chat::server::{Chat, Settings};
use chat::text::TextCodec;
use chat::{CodecArg, FramingArg};
use clap::Parser;
use netlib::transport::proxy::{Network, ProxyProtocol};
use netlib::transport::tls::TlsServer;
use netlib::{Codec, Framing, Server, ServerConfig, Wire};
use netlib_redis::{RedisAdapter, RedisConfig, RedisError};

/// The netlib chat server: rooms, private messages, operators; PodSixNet's chat clients can join.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on; repeat for several (e.g. `127.0.0.1:31425 [::1]:31425`). Port 0 picks a
    /// free port; the real address is printed.
    #[arg(default_value = netlib::DEFAULT_ADDR)]
    addrs: Vec<String>,
    /// Payload codec.
    #[arg(long, value_enum, default_value = "json")]
    codec: CodecArg,
    /// Framing on the main listeners: PodSixNet's terminator, or a 4-byte big-endian length
    /// prefix.
    #[arg(long, value_enum, default_value = "terminator")]
    framing: FramingArg,
    /// Also listen for the classic line protocol (`nc`, telnet) on this address, e.g.
    /// `[::]:7777`; repeat for several.
    #[arg(long, value_name = "ADDR")]
    text: Vec<String>,
    /// Also serve the chat page and its WebSocket (`ws://ADDR/ws`) on this address, e.g.
    /// `127.0.0.1:8080`, then open `http://ADDR/`; repeat for several.
    #[arg(long, value_name = "ADDR")]
    web: Vec<String>,
    /// Pages from this origin (e.g. `https://chat.example.com`) may open the WebSocket too;
    /// the page's own origin always may. Repeat for several.
    #[arg(long, value_name = "ORIGIN", requires = "web")]
    allowed_origin: Vec<String>,
    /// Also answer web requests whose `Host` is this name (e.g. `chat.example.com`, no port).
    /// Against DNS rebinding, a `--web` listener bound to loopback answers only loopback
    /// names (`localhost`, `127.0.0.1`, `[::1]`) and these; one bound elsewhere answers IP
    /// addresses and, once any is given, only these names. Others get 421. Repeat for
    /// several.
    #[arg(long, value_name = "HOST", requires = "web")]
    allowed_host: Vec<String>,
    /// Also listen for stock PodSixNet clients in their default encoding (rencode, terminator
    /// framing) on this address, beside the main listeners' codec; repeat for several.
    #[arg(long, value_name = "ADDR")]
    rencode: Vec<String>,
    /// Name of the environment variable holding the operator password (never pass it in argv).
    /// Without it, nobody can become an operator.
    #[arg(long, value_name = "VAR")]
    op_password_env: Option<String>,
    /// Most clients at once.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Most connections from one address at once (an IPv4 address, or an IPv6 /64), on all
    /// listeners together, handshakes in progress included: far above what a household or an
    /// office behind one NAT address opens, far below `--max-connections`. Over it, a
    /// connection is closed as soon as it is accepted. 0 turns it off.
    #[arg(long, default_value_t = 256, value_name = "N")]
    max_connections_per_address: usize,
    /// Most web connections from one address still in their handshake (an HTTP request not
    /// read or answered yet, for at most 10 s). 0 turns it off.
    #[arg(long, default_value_t = 32, value_name = "N")]
    max_handshakes_per_address: usize,
    /// New connections per second from one address (a burst of five times that). 0 turns it
    /// off.
    #[arg(long, default_value_t = 20, value_name = "N")]
    connect_rate_per_address: u32,
    /// Messages per second read from each connection (a burst of twice that), and the chat's
    /// per-user limits on messages, private messages, renames, joins, `who`/`rooms` and
    /// operator logins. 0 turns every rate limit off.
    #[arg(long, default_value_t = 20, value_name = "N")]
    rate_limit: u32,
    /// Bytes per second read from each connection (a burst of four times that), with
    /// `--rate-limit` above 0.
    #[arg(long, default_value_t = 128 << 10, value_name = "BYTES")]
    byte_rate_limit: u32,
    /// Total bytes held in unfinished inbound frames and outbound queues, all connections
    /// together; over it, the connections holding the most unfinished input are closed first.
    /// 0 turns it off.
    #[arg(long, default_value_t = 512, value_name = "MIB")]
    memory_budget: usize,
    /// How long a netlib client's session waits after its connection is lost (the terminal
    /// client and the web page ask for one): coming back within it, the user keeps its name
    /// and room and gets every message it missed; after it, the user leaves. 0 turns sessions
    /// off (a lost connection is a departure at once).
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    resume_window: u64,
    /// A connection's outbound queue may stay over this many bytes for 10 s at most (the hard
    /// limit, 8 MiB, closes at once). 0 turns it off.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    outbound_soft_limit: usize,
    /// Seconds a frame may stay unfinished. 0 turns it off.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    frame_timeout: u64,
    /// Seconds a connection may go without sending a message (netlib clients' heartbeat
    /// answers count). 0 turns it off.
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    idle_timeout: u64,
    /// Join a cluster of chat-server nodes sharing rooms through Redis (`redis://HOST:PORT`, or
    /// `redis://:PASSWORD@HOST:PORT` for a Redis server with a password; logs show `***`).
    /// Without it, this node is the whole chat.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Serve metrics, health and readiness over HTTP on this address (off by default):
    /// `GET /metrics` (Prometheus text, or OpenMetrics when asked), `/healthz`, `/readyz`. No
    /// authentication: bind it to loopback or a private network, e.g. `127.0.0.1:9100`.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Serve every listener over TLS (`--web` as https:// and wss://) with this certificate
    /// chain (PEM, the server's certificate first); with `--tls-key`. Reloaded on SIGHUP and
    /// when the files change (established connections keep theirs; a bad file is logged and
    /// the old certificate stays).
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Behind a load balancer: every listener (the main ones, `--text`, `--rencode`, `--web`)
    /// reads the PROXY protocol (v1 or v2: HAProxy's `send-proxy` / `send-proxy-v2`, nginx's
    /// `proxy_protocol on`) from the balancers in these networks (e.g. `10.0.0.0/8`, or one
    /// address such as `127.0.0.1`); comma-separated or repeated. Under TLS: the balancer
    /// passes TLS through. Every connection must then come from one of them and start with a
    /// header; the per-address limits and the logs see the client's address in it. Trust only
    /// the balancers' own addresses.
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    proxy_protocol: Vec<Network>,
    /// This node's id in the cluster, shown to the other nodes' users; default `node-PID`. A
    /// given id belongs to one live process: a node refuses to start while a live node holds
    /// it (a restart after a crash waits until the dead one's presence expires), and needs
    /// Redis at start to take it. Without it, a node starts even if Redis is unreachable.
    #[arg(long, value_name = "NAME", requires = "redis")]
    node_id: Option<String>,
    /// Seconds a node's presence lives in Redis without a refresh: a node that dies is noticed
    /// by the others within this plus 2 s.
    #[arg(long, default_value_t = 10, value_name = "SECS", requires = "redis")]
    presence_ttl: u64,
    /// With `--redis`: keep about this many of each room's last messages in a Redis stream
    /// (netlib's room streams). Every node then serves a room's scrollback, and a terminal or
    /// web client whose node dies or whose balancer sends it elsewhere resumes on any node
    /// with its nickname, its room and every message it missed. Room messages go through
    /// Redis first, also to this node's own users. 0: scrollback from each node's memory, and
    /// sessions resume only on their own node.
    #[arg(long, default_value_t = 1000, value_name = "N", requires = "redis")]
    room_streams: usize,
    /// Rooms up to this size get full player lists and a notice per join/leave/rename.
    #[arg(long, default_value_t = chat::protocol::DEFAULT_FULL_LIST_MAX)]
    full_list_max: usize,
    /// Rooms up to this size get one compact membership delta per pump; larger rooms get none.
    #[arg(long, default_value_t = chat::protocol::DEFAULT_NOTICE_MAX)]
    notice_max: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let op_password = match &args.op_password_env {
        None => None,
        Some(var) => match std::env::var(var) {
            Ok(p) if !p.is_empty() => Some(p),
            _ => {
                eprintln!("chat-server: environment variable {var} is not set or empty (--op-password-env)");
                return ExitCode::from(2);
            }
        },
    };
    // Each client is a file descriptor: allow as many as the hard limit permits.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => log::debug!("file descriptor limit: {n}"),
        Err(e) => log::warn!("cannot raise the file descriptor limit: {e}"),
    }
    let settings = Settings {
        op_password,
        rooms: RoomPolicy {
            full_list_max: args.full_list_max,
            notice_max: args.notice_max,
        },
        limits: (args.rate_limit > 0).then(ChatLimits::default),
        clock: netlib::Clock::System,
    };
    // `announce_id`: clients learn their channel id, so notices about them are recognised
    // whatever the nicknames.
    let mut config = ServerConfig::default()
        .max_connections(args.max_connections)
        .codec(args.codec.into())
        .framing(args.framing.into())
        .announce_id(true)
        // A user who enters a room sees its last messages (chat::rules::SCROLLBACK).
        .room_history(chat::rules::SCROLLBACK);
    if args.resume_window > 0 {
        // A client whose connection is lost gets its user back, with every message it missed.
        config = config.sessions(Duration::from_secs(args.resume_window));
    }
    if args.rate_limit > 0 {
        config = config
            .rate_limit(args.rate_limit, args.rate_limit.saturating_mul(2))
            .byte_rate_limit(
                args.byte_rate_limit.max(1),
                args.byte_rate_limit.max(1).saturating_mul(4),
            );
    }
    if args.memory_budget > 0 {
        config = config.memory_budget(args.memory_budget << 20);
    }
    if args.max_connections_per_address > 0 {
        config = config.max_connections_per_address(args.max_connections_per_address);
    }
    if args.max_handshakes_per_address > 0 {
        config = config.max_handshakes_per_address(args.max_handshakes_per_address);
    }
    if args.connect_rate_per_address > 0 {
        let rate = args.connect_rate_per_address;
        config = config.connect_rate_per_address(rate, rate.saturating_mul(5));
    }
    if args.outbound_soft_limit > 0 {
        config = config.outbound_soft_limit(args.outbound_soft_limit, Duration::from_secs(10));
    }
    if args.frame_timeout > 0 {
        config = config.frame_timeout(Duration::from_secs(args.frame_timeout));
    }
    if args.idle_timeout > 0 {
        config = config.idle_timeout(Duration::from_secs(args.idle_timeout));
    }
    // Printed after the listening lines (tools read the first line for the address).
    let mut joined = None;
    let made = match &args.redis {
        None => Server::new(Chat::new(settings), config).map_err(|e| e.to_string()),
        Some(url) => {
            let node = args
                .node_id
                .clone()
                .unwrap_or_else(|| format!("node-{}", std::process::id()));
            let mut redis = RedisConfig::new(url)
                .prefix("chat")
                .presence_ttl(Duration::from_secs(args.presence_ttl.max(1)))
                .room_streams(args.room_streams);
            // A given id is this process's alone (claimed before listening; that needs Redis).
            // The default, `node-PID`, is not claimed: without Redis at start the node serves
            // its own users and joins the cluster once Redis answers.
            if args.node_id.is_some() {
                redis = redis.node_name(&node);
            }
            let shown = redis.shown_url();
            // Before listening: a node id a live node uses is refused (see the README's
            // "Several nodes").
            let adapter = match RedisAdapter::connect(redis) {
                Ok(a) => a,
                Err(e @ RedisError::NameInUse { .. }) => {
                    eprintln!("chat-server: node id {node:?} is already in use by a live chat-server ({e})");
                    return ExitCode::FAILURE;
                }
                Err(e) => {
                    eprintln!("chat-server: --redis {shown}: {e}");
                    return ExitCode::from(2);
                }
            };
            joined = Some(format!(
                "chat-server node {node} joins the cluster at {shown} (node number {})",
                netlib::Adapter::node(&adapter)
            ));
            Server::with_adapter(Chat::clustered(settings, &node), config, Box::new(adapter))
                .map_err(|e| e.to_string())
        }
    };
    let mut server = match made {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chat-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match TlsServer::from_pem_files(cert, key) {
            Ok(tls) => Some(tls),
            Err(e) => {
                eprintln!("chat-server: --tls-cert/--tls-key: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    if !args.proxy_protocol.is_empty() {
        // Under every listener bound from here on, below TLS.
        let trusted = ProxyProtocol::trusting(args.proxy_protocol.iter().copied());
        server.set_proxy_protocol(Some(trusted));
    }
    // A TCP listener, over TLS when asked.
    let bind = |server: &mut Server<Chat>, addr: &str, wire: Option<Wire>| match &tls {
        Some(tls) => server.bind_tls(addr, wire, tls),
        None => server.bind_tcp(addr, wire),
    };
    for addr in &args.addrs {
        if let Err(e) = bind(&mut server, addr, None) {
            eprintln!("chat-server: {e}");
            return ExitCode::FAILURE;
        }
    }
    for a in server.local_addrs() {
        println!("chat-server listening on {a}");
    }
    if let Some(line) = joined.take() {
        println!("{line}");
    }
    let text = Wire {
        framing: Framing::Line,
        codec: Codec::custom(TextCodec),
    };
    let rencode = Wire {
        framing: Framing::Terminator,
        codec: Codec::Rencode,
    };
    let mut page = chat::web::options();
    for origin in &args.allowed_origin {
        page = page.allow_origin(origin);
    }
    for host in &args.allowed_host {
        page = page.allow_host(host);
    }
    for addr in &args.web {
        let (bound, scheme) = match &tls {
            Some(tls) => (server.bind_wss(addr, page.clone(), tls), "https"),
            None => (server.bind_ws(addr, page.clone()), "http"),
        };
        match bound {
            Ok(bound) => {
                for a in bound {
                    println!("chat-server listening for web clients on {scheme}://{a}/");
                }
            }
            Err(e) => {
                eprintln!("chat-server: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let extra = (args.text.iter().map(|a| (a, "line", &text)))
        .chain(args.rencode.iter().map(|a| (a, "rencode", &rencode)));
    for (addr, kind, wire) in extra {
        match bind(&mut server, addr, Some(wire.clone())) {
            Ok(bound) => {
                for a in bound {
                    println!("chat-server listening for {kind} clients on {a}");
                }
            }
            Err(e) => {
                eprintln!("chat-server: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // Kept until the server stops; dropping it stops the admin listener.
    let mut _admin = None;
    if let Some(addr) = &args.metrics {
        let metrics = server.metrics();
        server.state_mut().count_into(&metrics);
        match server.serve_metrics(addr) {
            Ok(admin) => {
                println!(
                    "chat-server listening for metrics clients on {}",
                    admin.local_addr()
                );
                _admin = Some(admin);
            }
            Err(e) => {
                eprintln!("chat-server: --metrics: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(tls) = &tls {
        if let Err(e) = watch_certificate(tls.clone()) {
            eprintln!("chat-server: cannot watch the certificate: {e}");
            return ExitCode::FAILURE;
        }
    }
    let stop = server.stop_handle();
    server.state_mut().stop_when_fenced(stop.clone());
    // SIGINT and SIGTERM stop, and SIGHUP too unless it reloads the certificate (see
    // `watch_certificate`).
    if let Err(e) = on_stop_signals(stop, tls.is_none()) {
        eprintln!("chat-server: cannot install the Ctrl-C/SIGTERM handler: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = server.run() {
        eprintln!("chat-server: {e}");
        return ExitCode::FAILURE;
    }
    let fenced = server.state().fenced().map(str::to_owned);
    log::info!("stopping: closing {} connection(s)", server.channel_count());
    let shutdown = server.shutdown(Duration::from_secs(5));
    // The users' `left` went out with the shutdown, which dropped the server and its adapter:
    // the node left the cluster at once (the others need not wait for its presence to expire).
    if let Some(why) = fenced {
        eprintln!("chat-server: fenced out of the cluster ({why}); stopped");
        return ExitCode::FAILURE;
    }
    match shutdown {
        Ok(_) => {
            println!("chat-server stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chat-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reloads `tls`'s certificate and key on SIGHUP, and when either file's modification time
/// changes (looked at every second), on a thread of its own: new handshakes take the new
/// certificate, established connections keep theirs. A file that does not load is logged and
/// the certificate in use stays.
fn watch_certificate(tls: TlsServer) -> std::io::Result<()> {
    use signal_hook::consts::SIGHUP;
    let hup = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(SIGHUP, hup.clone())?;
    let modified = |tls: &TlsServer| {
        let (cert, key) = tls.files();
        [cert, key].map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    };
    std::thread::Builder::new()
        .name("tls-reload".into())
        .spawn(move || {
            let mut seen = modified(&tls);
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let now = modified(&tls);
                let signalled = hup.swap(false, std::sync::atomic::Ordering::Relaxed);
                if !signalled && now == seen {
                    continue;
                }
                seen = now;
                let why = if signalled {
                    "SIGHUP"
                } else {
                    "the files changed"
                };
                match tls.reload() {
                    Ok(()) => log::info!("TLS certificate reloaded ({why})"),
                    Err(e) => {
                        log::error!("TLS certificate not reloaded ({why}): {e}; the old one stays")
                    }
                }
            }
        })?;
    Ok(())
}

/// Calls `stop` on SIGINT or SIGTERM (and SIGHUP if `hup`), from a thread of its own.
fn on_stop_signals(stop: netlib::StopHandle, hup: bool) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    if hup {
        signals.add_signal(SIGHUP)?;
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                stop.stop();
            }
        })?;
    Ok(())
}
