//! Runs only the throughput workload against one address, or several nodes of one chat split
//! with commas (for profiling a server):
//! `cargo run --release -p netlib-bench --example loadchat -- ADDR[,ADDR...] [SECONDS]`.

fn main() {
    let mut args = std::env::args().skip(1);
    let addrs: Vec<std::net::SocketAddr> = args
        .next()
        .expect("ADDR")
        .split(',')
        .map(|a| a.parse().expect("address"))
        .collect();
    let secs: f64 = args.next().map_or(5.0, |s| s.parse().expect("seconds"));
    let r = netlib_bench::load::chat(
        &addrs,
        100,
        100,
        1,
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs_f64(secs),
    );
    println!("{r:?}");
}
