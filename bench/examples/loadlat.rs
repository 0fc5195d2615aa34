//! Runs only the fan-out latency workload (K=100, S=1, W=1) against one address:
//! `cargo run --release -p netlib-bench --example loadlat -- ADDR [SECONDS]`.

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: std::net::SocketAddr = args.next().expect("ADDR").parse().expect("address");
    let secs: f64 = args.next().map_or(3.0, |s| s.parse().expect("seconds"));
    let d = std::time::Duration::from_secs_f64(secs);
    let load = netlib_bench::load::Workload {
        k: 100,
        s: 1,
        w: 1,
        warmup: std::time::Duration::from_secs(1),
        duration: d,
        pad: 0,
        session: false,
    };
    let r = netlib_bench::load::chat(netlib_bench::load::Wire::Tcp, &[addr], load, &[]);
    println!(
        "p50 {} us, p99 {} us, {} samples",
        r.p50_us, r.p99_us, r.samples
    );
}
