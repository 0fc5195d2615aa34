//! The jitter test, short: 100 clients in 5 rooms, each connection dropped every 2-5 s for
//! 0.2-2 s, for 8 s; every client gets every message of its room once and in order, and every
//! drop is resumed. The 60 s run with its figures is `bench/`'s `jitter` (BENCHMARKS.md).

use std::time::Duration;

use netlib_tests::jitter::{run, Plan};

#[test]
fn every_message_arrives_once_and_in_order_through_random_drops() {
    let plan = Plan {
        clients: 100,
        rooms: 5,
        duration: Duration::from_secs(8),
        period: Duration::from_millis(250),
        seed: 0x5eed,
    };
    let r = run(&plan);
    eprintln!("{}", r.summary());
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
    assert_eq!(r.resumed, r.reconnects, "every drop resumed");
}
