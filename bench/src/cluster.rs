//! The jitter run on a cluster: a real `redis-server`, `nodes` processes of `jitter-node`
//! (netlib servers with sessions, in a cluster through Redis with room streams), clients that
//! reconnect to a node picked at random, and, if asked, one node SIGKILLed mid-run. Used by
//! the test `cluster_jitter` (short) and by the `jitter` bench's `--nodes` (long).

use std::path::Path;
use std::time::Duration;

use netlib_tests::jitter::{run_on, Plan, Report, Target};
use netlib_tests::redis::RedisServer;
use netlib_tests::{spawn_listening, ChildGuard};

/// Runs `plan` on `nodes` processes of `node_exe` (the `jitter-node` binary) through a Redis
/// server started here; with `kill_at`, the first node is SIGKILLed (by its PID) that long
/// into the run. Everything started here is stopped by its PID when this returns.
///
/// # Panics
/// If redis-server or a node does not start (the run needs them: it fails, never skips).
pub fn run_cluster(
    plan: &Plan,
    node_exe: &Path,
    nodes: usize,
    kill_at: Option<Duration>,
) -> Report {
    let redis = RedisServer::start();
    let url = redis.url();
    let exe = node_exe.to_str().expect("a UTF-8 path");
    let mut children: Vec<ChildGuard> = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..nodes.max(1) {
        let (child, addr, _lines) = spawn_listening(exe, &["--redis", &url]);
        children.push(child);
        addrs.push(addr);
    }
    let mut first = children.remove(0);
    let target: &mut ChildGuard = &mut first;
    let kill: Option<(Duration, Box<dyn FnOnce() -> usize + '_>)> = match kill_at {
        Some(at) => Some((
            at,
            Box::new(move || {
                // SIGKILL: no goodbye, no clean leave; its sessions must come back elsewhere.
                let _ = target.0.kill();
                let _ = target.0.wait();
                0
            }),
        )),
        None => None,
    };
    let report = run_on(plan, Target::Nodes { addrs, kill });
    drop(children);
    drop(redis);
    report
}
