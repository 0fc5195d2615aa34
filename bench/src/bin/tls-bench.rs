//! `tls-bench [--seconds S] [--runs N] [--idle N]`: what TLS costs (issue 21), on loopback,
//! the server on CPU 0 and this program on CPU 1, with a certificate made here (`rcgen`).
//!
//! 1. Fan-out, K=100 S=100 W=1, through `room-relay` over plain TCP and over TLS
//!    (`room-relay --tls-cert --tls-key`; the clients speak TLS with netlib's `TlsStream`),
//!    `--runs` runs of each, interleaved. Prints the medians and their ratio.
//! 2. Idle connections: `--idle` of them held over TCP, then over TLS: the server's RSS per
//!    connection.
//! 3. Full handshakes: the TLS run of 2 opens its connections 256 at a time; the handshakes
//!    done per second, and per second of the server's CPU time (one core).

use clap::Parser;
use netlib::transport::tls::TlsClient;
use netlib_bench::load::{self, Wire, Workload};
use netlib_bench::process::{median, RoomRelay};
use netlib_tests::TestCa;

#[derive(Parser)]
struct Args {
    /// Measured seconds of each fan-out run (after 1 s of warm-up).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Fan-out runs over TCP, and as many over TLS.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Idle connections held (each way).
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
}

fn relay(tls: Option<(&str, &str)>) -> RoomRelay {
    let args = match tls {
        Some((cert, key)) => vec!["--tls-cert", cert, "--tls-key", key],
        None => Vec::new(),
    };
    RoomRelay::start(&RoomRelay::program(), &args)
}

fn main() {
    let args = Args::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let ca = TestCa::new("bench");
    let (cert, key) = (ca.dir.join("server.pem"), ca.dir.join("server.key"));
    ca.issue(&["localhost"], &cert, &key);
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let trust = || {
        Some((
            // Every handshake a full one.
            TlsClient::from_ca_file(&ca.ca)
                .expect("the test CA")
                .resumption(false),
            "localhost".to_owned(),
        ))
    };
    let workload = Workload::fan_out(args.seconds);
    let (mut plain, mut tls) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        for secure in [false, true] {
            let r = relay(secure.then_some((cert, key)));
            let over = if secure { trust() } else { None };
            let result = load::chat_over(Wire::Tcp, &[r.addr], workload, &[r.child.id()], over);
            eprintln!(
                "run {} {}: {:.0} deliveries/s, server CPU {:.0}%, generator {:.0}%",
                run + 1,
                if secure { "TLS" } else { "TCP" },
                result.deliveries_per_sec,
                100.0 * result.cpu[0],
                100.0 * result.generator_cpu
            );
            if secure {
                tls.push(result.deliveries_per_sec);
            } else {
                plain.push(result.deliveries_per_sec);
            }
        }
    }
    if args.runs > 0 {
        let (p, t) = (median(plain), median(tls));
        println!(
        "fan-out K=100 S=100 W=1 (room-relay), {} runs each, interleaved: TCP {:.2} M/s, TLS {:.2} M/s: TLS/TCP {:.2}x",
        args.runs,
        p / 1e6,
        t / 1e6,
        t / p
        );
    }

    let r = relay(None);
    let idle_tcp = load::idle(Wire::Tcp, r.addr, r.child.id(), args.idle, false);
    drop(r);
    let r = relay(Some((cert, key)));
    let pid = r.child.id();
    let ticks = load::cpu_ticks(pid);
    let idle_tls = load::idle_over(Wire::Tcp, r.addr, pid, args.idle, false, trust());
    let server_cpu = (load::cpu_ticks(pid) - ticks) as f64 / 100.0;
    println!(
        "idle, N={}: server RSS per connection: TCP {:.0} B, TLS {:.0} B (round trip at the end: {})",
        args.idle,
        idle_tcp.rss_per_connection,
        idle_tls.rss_per_connection,
        if idle_tls.round_trip_ok { "works" } else { "FAILED" }
    );
    println!(
        "full TLS handshakes: {} in {:.2} s ({:.0}/s, 256 at a time), {:.2} s of server CPU: {:.0} per CPU-second",
        args.idle,
        idle_tls.connect_time.as_secs_f64(),
        args.idle as f64 / idle_tls.connect_time.as_secs_f64(),
        server_cpu,
        args.idle as f64 / server_cpu.max(0.01)
    );
}
