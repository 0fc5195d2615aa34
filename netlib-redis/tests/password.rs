//! (d) The Redis password appears in no log line, error or `Debug` output: a capturing logger
//! (this test binary's only test, so that it sees every log line of the adapter) records
//! everything while nodes start, fail, lose Redis, come back, and leave.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{config, Node};
use netlib::ClusterEvent;
use netlib_redis::{RedisAdapter, RedisConfig, RedisError};
use netlib_tests::redis::RedisServer;

struct Capture(Arc<Mutex<Vec<String>>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        self.0.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

#[test]
fn the_password_is_never_shown() {
    let lines = Arc::new(Mutex::new(Vec::new()));
    log::set_logger(Box::leak(Box::new(Capture(lines.clone())))).expect("the only logger");
    log::set_max_level(log::LevelFilter::Trace);

    let redis = RedisServer::start();
    let password = redis.password.clone();
    let mut shown = Vec::new();
    let ttl = Duration::from_secs(1);

    // Nodes that start, claim a name, lose Redis and get it back.
    let named = config(&redis, "pw", ttl).node_name("alpha");
    shown.push(format!("{named:?}"));
    shown.push(named.shown_url());
    let mut a = Node::start(named.clone());
    let mut b = Node::start(config(&redis, "pw", ttl));
    shown.push(format!("{:?} {:?}", a.handle, b.handle));
    match RedisAdapter::connect(named) {
        Err(e @ RedisError::NameInUse { .. }) => shown.push(format!("{e} {e:?}")),
        other => panic!("{other:?}"),
    }
    // A wrong password: refused (with a node name, an error; without, a node that starts
    // down and logs why).
    let wrong = format!("redis://:{password}x@127.0.0.1:{}", redis.port);
    match RedisAdapter::connect(RedisConfig::new(&wrong).node_name("beta")) {
        Err(e @ RedisError::Redis(_)) => shown.push(format!("{e} {e:?}")),
        other => panic!("{other:?}"),
    }
    let refused = RedisAdapter::connect(RedisConfig::new(&wrong).presence_ttl(ttl)).unwrap();
    shown.push(format!("{refused:?}"));
    // An unparsable URL.
    match RedisAdapter::connect(RedisConfig::new(&format!("redis://:{password}@[::1"))) {
        Err(e) => shown.push(format!("{e} {e:?}")),
        Ok(a) => panic!("{a:?}"),
    }

    let port = redis.port;
    redis.kill();
    for n in [&mut a, &mut b] {
        n.pump_until("Down", |n| !n.server.state().events.is_empty());
        for e in n.events() {
            shown.push(format!("{e:?}"));
        }
    }
    let again = RedisServer::start_on(port, &password);
    for n in [&mut a, &mut b] {
        n.pump_until("Up", |n| n.handle.is_up());
        n.pump_until("the event", |n| !n.server.state().events.is_empty());
        assert_eq!(n.events(), [ClusterEvent::Up]);
    }
    drop(refused);
    drop(a);
    drop(b);
    drop(again);

    let lines = lines.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.contains("joined the cluster")),
        "the logger caught the adapter's lines: {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("reachable again")),
        "and the outage's: {lines:#?}"
    );
    for text in lines.iter().chain(&shown) {
        assert!(!text.contains(&password), "the password shows in {text:?}");
    }
}
