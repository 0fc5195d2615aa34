//! The jitter run, long (BENCHMARKS.md): clients in rooms whose connections are dropped every
//! 2-5 s for 0.2-2 s while everyone sends numbered messages; prints what was delivered, the
//! resume rate and the replay times. The harness is `netlib_tests::jitter` (the test
//! `sessions_jitter` runs it for 8 s).
//!
//! With `--nodes N`, the run is on a cluster: a real `redis-server`, N `jitter-node`
//! processes with room streams, clients that come back to a node picked at random, and with
//! `--kill-at S` the first node SIGKILLed S seconds into the run.
//!
//! ```text
//! cargo run --release -p netlib-bench --bin jitter -- --seconds 60
//! cargo run --release -p netlib-bench --bin jitter -- --seconds 60 --nodes 3 --kill-at 30
//! ```

use std::time::Duration;

use clap::Parser;
use netlib_bench::cluster::run_cluster;
use netlib_tests::jitter::{run, Plan};

#[derive(Parser)]
struct Args {
    /// Clients.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Rooms.
    #[arg(long, default_value_t = 5)]
    rooms: usize,
    /// How long clients send and are dropped, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Each client's time between two messages, in ms.
    #[arg(long, default_value_t = 250)]
    period_ms: u64,
    /// Seed of the drop schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Nodes of a cluster through Redis (processes of `jitter-node`); 0: one server in this
    /// process, without Redis.
    #[arg(long, default_value_t = 0)]
    nodes: usize,
    /// With `--nodes`: SIGKILL the first node this many seconds into the run.
    #[arg(long)]
    kill_at: Option<u64>,
}

fn main() {
    let a = Args::parse();
    let plan = Plan {
        clients: a.clients,
        rooms: a.rooms,
        duration: Duration::from_secs(a.seconds),
        period: Duration::from_millis(a.period_ms),
        seed: a.seed,
    };
    let r = if a.nodes == 0 {
        run(&plan)
    } else {
        let exe = std::env::current_exe().expect("this program's path");
        let node = exe.with_file_name("jitter-node");
        let kill = a.kill_at.map(Duration::from_secs);
        run_cluster(&plan, &node, a.nodes, kill)
    };
    println!(
        "jitter clients={} rooms={} seconds={} nodes={} killed_sessions={} killed_resumed={} sent={} delivered={}/{} ({:.3}%) duplicates={} out_of_order={} reconnects={} resumed={} ({:.2}%) replay_ms p50={:.1} p99={:.1} max={:.1}",
        a.clients,
        a.rooms,
        a.seconds,
        a.nodes,
        r.killed_sessions,
        r.killed_resumed,
        r.sent,
        r.delivered,
        r.expected,
        100.0 * r.delivered as f64 / r.expected.max(1) as f64,
        r.duplicates,
        r.out_of_order,
        r.reconnects,
        r.resumed,
        100.0 * r.resume_rate(),
        r.replay_percentile(50.0),
        r.replay_percentile(99.0),
        r.replay_percentile(100.0),
    );
    let ok = r.duplicates == 0 && r.out_of_order == 0 && r.delivered == r.expected;
    std::process::exit(if ok { 0 } else { 1 });
}
