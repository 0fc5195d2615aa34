//! Runs only the throughput workload against one address (for profiling a server):
//! `cargo run --release -p netlib-bench --example loadchat -- ADDR [SECONDS]`.

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().expect("ADDR").parse().expect("address");
    let secs: f64 = args.next().map_or(5.0, |s| s.parse().expect("seconds"));
    let r = netlib_bench::load::chat(
        addr,
        100,
        100,
        1,
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs_f64(secs),
    );
    println!("{r:?}");
}
