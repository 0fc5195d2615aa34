//! `metrics-bench [--seconds S] [--runs N] [--idle N] [--scrapes N] [--every MS]`: what a
//! server's metrics cost (issue 22), on loopback, the server on CPU 0 and this program on CPU 1.
//!
//! 1. Fan-out, K=100 S=100 W=1, through `room-relay` (netlib's rooms alone): metrics off
//!    (`room-relay ADDR`) against metrics on (`room-relay ADDR --metrics 127.0.0.1:0`, every
//!    handler and pump timed, and `/metrics` scraped over HTTP every `--every` ms during the
//!    run), `--runs` runs of each, interleaved (off, on, off, on, ...). Prints each run, the
//!    medians and their ratio, and the ratio of each pair. With `--baseline PATH`, another
//!    build's `room-relay` runs in each round too (metrics off against it: what counting
//!    costs).
//! 2. Scrape time: `room-relay --metrics` holding `--idle` idle TCP connections; `--scrapes`
//!    GETs of `/metrics`, one after another. Prints p50, p99 and the largest, and the size.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use netlib_bench::load::{self, Wire, Workload};
use netlib_bench::process::{median, RoomRelay};
use netlib_tests::http_get;

#[derive(Parser)]
struct Args {
    /// Measured seconds of each fan-out run (after 1 s of warm-up).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Fan-out runs with metrics off, and as many on.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Idle connections held while scraping.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Scrapes timed.
    #[arg(long, default_value_t = 200)]
    scrapes: usize,
    /// How often the fan-out runs with metrics on are scraped (ms).
    #[arg(long, default_value_t = 1000)]
    every: u64,
    /// Another build's `room-relay` (e.g. of the commit before metrics), run as a third
    /// series in each round: what the always-on counting costs.
    #[arg(long)]
    baseline: Option<std::path::PathBuf>,
}

fn relay(program: &Path, metrics: bool) -> RoomRelay {
    let args: &[&str] = if metrics {
        &["--metrics", "127.0.0.1:0"]
    } else {
        &[]
    };
    RoomRelay::start(program, args)
}

/// Scrapes `admin` every `every` until `stop`; returns the scrapes made.
fn scraper(
    admin: SocketAddr,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let (status, _, _) = http_get(admin, "GET", "/metrics", None);
            assert_eq!(status, 200);
            n += 1;
            let until = Instant::now() + every;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        n
    })
}

fn main() {
    let args = Args::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let program = RoomRelay::program();
    assert!(
        program.exists(),
        "build it first: cargo build --release -p netlib-bench"
    );
    let workload = Workload::fan_out(args.seconds);
    let (mut off, mut on, mut base) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.runs {
        if let Some(baseline) = &args.baseline {
            let r = relay(baseline, false);
            let result = load::chat(Wire::Tcp, &[r.addr], workload, &[r.child.id()]);
            eprintln!(
                "run {} baseline: {:.0} deliveries/s, server CPU {:.0}%",
                run + 1,
                result.deliveries_per_sec,
                100.0 * result.cpu[0]
            );
            base.push(result.deliveries_per_sec);
        }
        for metrics in [false, true] {
            let r = relay(&program, metrics);
            let stop = Arc::new(AtomicBool::new(false));
            let scraping = r
                .admin
                .map(|a| scraper(a, Duration::from_millis(args.every), stop.clone()));
            let result = load::chat(Wire::Tcp, &[r.addr], workload, &[r.child.id()]);
            stop.store(true, Ordering::Relaxed);
            let scrapes = scraping.map(|t| t.join().expect("the scraper"));
            eprintln!(
                "run {} metrics {}: {:.0} deliveries/s, server CPU {:.0}%{}",
                run + 1,
                if metrics { "on" } else { "off" },
                result.deliveries_per_sec,
                100.0 * result.cpu[0],
                scrapes.map_or(String::new(), |n| format!(", {n} scrapes"))
            );
            if metrics {
                on.push(result.deliveries_per_sec);
            } else {
                off.push(result.deliveries_per_sec);
            }
        }
    }
    let pairs: Vec<f64> = on.iter().zip(&off).map(|(a, b)| a / b).collect();
    let (lo, hi) = pairs
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &p| (l.min(p), h.max(p)));
    let (m_off, m_on) = (median(off.clone()), median(on.clone()));
    println!(
        "fan-out K=100 S=100 W=1 (room-relay), {} runs each, interleaved: metrics off {:.2} M/s, on {:.2} M/s (scraped every {} ms): on/off {:.3}x; pairs median {:.3}x, range {:.3}-{:.3}",
        args.runs,
        m_off / 1e6,
        m_on / 1e6,
        args.every,
        m_on / m_off,
        median(pairs.clone()),
        lo,
        hi
    );

    if !base.is_empty() {
        let pairs: Vec<f64> = off.iter().zip(&base).map(|(a, b)| a / b).collect();
        println!(
            "fan-out, metrics off against the baseline build: {:.2} M/s against {:.2} M/s: {:.3}x; pairs median {:.3}x",
            m_off / 1e6,
            median(base.clone()) / 1e6,
            m_off / median(base.clone()),
            median(pairs)
        );
    }

    // Scrapes with many idle connections open.
    let r = relay(&program, true);
    let admin = r.admin.expect("metrics on");
    let mut conns = Vec::with_capacity(args.idle);
    for _ in 0..args.idle {
        conns.push(TcpStream::connect(r.addr).expect("connect an idle client"));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let want = format!("netlib_connections{{transport=\"tcp\"}} {}", args.idle);
    loop {
        let (_, _, body) = http_get(admin, "GET", "/metrics", None);
        if body.contains(&want) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server never held every connection"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut times = Vec::with_capacity(args.scrapes);
    let mut size = 0;
    for _ in 0..args.scrapes {
        let t = Instant::now();
        let (status, _, body) = http_get(admin, "GET", "/metrics", None);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(status, 200);
        size = body.len();
    }
    times.sort_by(f64::total_cmp);
    let p = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "scrape of /metrics with {} idle connections: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} scrapes, {} bytes)",
        args.idle,
        p(0.5),
        p(0.99),
        times[times.len() - 1],
        times.len(),
        size
    );
    drop(conns);
}
