//! The jitter test on a cluster, short: 3 nodes (processes) and a real Redis, 100 clients in 5
//! rooms whose connections are dropped every 2-5 s for 0.2-2 s and come back to a node picked
//! at random; once more with one node SIGKILLed mid-run. Every client gets every message of
//! its room once and in order, and the killed node's sessions resume on the others. The long
//! runs with their figures are the `jitter` bench's `--nodes 3` (BENCHMARKS.md).

use std::path::Path;
use std::time::Duration;

use netlib_bench::cluster::run_cluster;
use netlib_tests::jitter::{Plan, Report};

fn plan(seconds: u64) -> Plan {
    Plan {
        clients: 100,
        rooms: 5,
        duration: Duration::from_secs(seconds),
        period: Duration::from_millis(250),
        seed: 0x5eed,
    }
}

fn show(r: &Report) {
    eprintln!("{}", r.summary());
}

fn node() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_jitter-node"))
}

fn every_message_once_and_in_order(r: &Report) {
    assert!(
        r.reconnects >= 100,
        "the run dropped connections: {}",
        r.reconnects
    );
    assert!(r.sent > 2000, "the run sent messages: {}", r.sent);
    assert_eq!(r.duplicates, 0);
    assert_eq!(r.out_of_order, 0);
    assert_eq!(
        r.delivered, r.expected,
        "every message, to every other member"
    );
}

#[test]
fn clients_that_come_back_to_any_node_get_every_message_once_and_in_order() {
    let r = run_cluster(&plan(8), node(), 3, None);
    show(&r);
    every_message_once_and_in_order(&r);
    assert_eq!(
        r.resumed, r.reconnects,
        "every drop resumed, on whichever node"
    );
}

#[test]
fn the_sessions_of_a_node_killed_mid_run_resume_on_the_others_with_nothing_lost() {
    let r = run_cluster(&plan(10), node(), 3, Some(Duration::from_secs(4)));
    show(&r);
    every_message_once_and_in_order(&r);
    assert!(
        r.killed_sessions >= 20,
        "the killed node held sessions: {}",
        r.killed_sessions
    );
    assert_eq!(
        r.killed_resumed, r.killed_sessions,
        "every session of the killed node resumed on another"
    );
}

#[test]
fn one_node_with_room_streams_delivers_every_message_once_and_in_order() {
    // Room sends reach this node's own members only when they come back from Redis.
    let r = run_cluster(&plan(8), node(), 1, None);
    show(&r);
    every_message_once_and_in_order(&r);
    assert_eq!(r.resumed, r.reconnects, "every drop resumed");
}
