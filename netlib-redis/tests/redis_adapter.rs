//! RedisAdapter on a real `redis-server` (one per test, started on a free port and stopped by
//! its PID): what the seam's contract suite (tests/adapter_contract.rs) does not show. Every
//! wait has a deadline; no timing assertion.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{calls, config, pump_all_until, say, Node};
use netlib::{ClusterError, ClusterEvent, Message, Rooms, SendError};
use netlib_redis::{RedisAdapter, RedisError};
use netlib_tests::redis::RedisServer;
use netlib_tests::TIMEOUT;

const TTL: Duration = Duration::from_secs(1);

/// (a) A room send is one PUBLISH, whatever the number of nodes and of rooms: the cluster's
/// bus carries exactly one message per send while three nodes' members get every one.
#[test]
fn a_room_send_is_one_publish_whatever_the_nodes() {
    let redis = RedisServer::start();
    let mut nodes: Vec<Node> = (0..3)
        .map(|_| Node::start(config(&redis, "pubcount", TTL)))
        .collect();
    let sender = nodes[0].connect();
    for n in &mut nodes {
        let c = n.connect();
        n.join(c, "lobby");
        n.join(c, "side");
    }
    nodes[0].join(sender, "lobby");
    {
        let mut all: Vec<&mut Node> = nodes.iter_mut().collect();
        pump_all_until(&mut all, "the joins in Redis", |ns| {
            ns.iter().all(|n| n.handle.is_idle())
        });
    }
    // A listener of the bus (Redis's count of PUBLISH calls would also count each node's
    // probe of its round trip, once a second, on its own channel).
    let client = redis::Client::open(redis.url()).unwrap();
    let mut listener = client.get_connection_with_timeout(TIMEOUT).unwrap();
    listener.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut bus = listener.as_pubsub();
    bus.subscribe(&["pubcount:bus", "pubcount:test-end"])
        .unwrap();
    const SENDS: usize = 40;
    for i in 0..SENDS / 2 {
        nodes[0].clients[sender]
            .1
            .send(&say("lobby", &format!("m{i}")))
            .unwrap();
    }
    {
        let mut all: Vec<&mut Node> = nodes.iter_mut().collect();
        pump_all_until(&mut all, "the client's sends", |ns| {
            ns[1..].iter().all(|n| n.heard[0].len() >= SENDS / 2)
        });
    }
    for i in SENDS / 2..SENDS {
        // Two rooms at once: still one publish, each member gets it once.
        let m = Message::new("said").with("text", format!("m{i}"));
        let local = nodes[0]
            .server
            .context()
            .send_to(Rooms(&["lobby", "side"]), &m);
        assert_eq!(local.unwrap(), 2, "this node's members");
    }
    let expected: Vec<String> = (0..SENDS).map(|i| format!("m{i}")).collect();
    {
        let mut all: Vec<&mut Node> = nodes.iter_mut().collect();
        pump_all_until(&mut all, "every send on every node", |ns| {
            ns[1..].iter().all(|n| n.heard[0].len() >= SENDS)
        });
    }
    for n in &nodes[1..] {
        assert_eq!(n.heard[0], expected, "in order, each once");
    }
    // Every send reached every node, so its PUBLISH ran before this one: what the bus carried
    // comes first, in order.
    let _: () = redis::cmd("PUBLISH")
        .arg("pubcount:test-end")
        .arg("end")
        .query(&mut redis.connection())
        .unwrap();
    let mut carried = 0;
    loop {
        let m = bus.get_message().expect("the end marker");
        if m.get_channel_name() == "pubcount:test-end" {
            break;
        }
        carried += 1;
    }
    assert_eq!(carried, SENDS, "one PUBLISH per room send");
}

/// Fails the process if a pump runs for 10 s: a hang detector (the pump never waits on
/// Redis), not a timing assertion.
struct Watchdog {
    /// When the pump in progress started (ms since `epoch`), 0 when none is.
    started: Arc<AtomicU64>,
    epoch: Instant,
}

impl Watchdog {
    fn new() -> Self {
        let started = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let watched = started.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            let s = watched.load(Ordering::SeqCst);
            if s != 0 && epoch.elapsed().as_millis() as u64 > s + 10_000 {
                eprintln!("a pump blocked for 10 s: the adapter waits on Redis on the loop");
                std::process::exit(101);
            }
        });
        Watchdog { started, epoch }
    }

    fn pump(&self, node: &mut Node) {
        self.started.store(
            self.epoch.elapsed().as_millis() as u64 + 1,
            Ordering::SeqCst,
        );
        node.pump();
        self.started.store(0, Ordering::SeqCst);
    }
}

/// (b) With redis-server stopped (SIGSTOP), a server keeps pumping and serving its own
/// channels: the adapter finds Redis unreachable on its threads and reports `Down`; room
/// sends reach the local members all along. After SIGCONT it is up again.
#[test]
fn pumping_never_blocks_on_a_stalled_redis() {
    let redis = RedisServer::start();
    let watchdog = Watchdog::new();
    let mut node = Node::start(config(&redis, "stall", Duration::from_secs(3)));
    let (a, b) = (node.connect(), node.connect());
    node.join(a, "lobby");
    node.join(b, "lobby");
    node.events();
    redis.signal("STOP");
    let deadline = Instant::now() + TIMEOUT;
    let mut sent = 0;
    let mut down_at = None;
    // Until the adapter is down, and 50 local sends more.
    while down_at.is_none_or(|d| sent < d + 50) {
        assert!(
            Instant::now() < deadline,
            "the adapter never found Redis stalled"
        );
        node.clients[a]
            .1
            .send(&say("lobby", &sent.to_string()))
            .unwrap();
        sent += 1;
        watchdog.pump(&mut node);
        if down_at.is_none() && !node.handle.is_up() {
            down_at = Some(sent);
        }
    }
    let refused = node.server.context().emit_nodes(&Message::new("x"));
    assert!(
        matches!(
            refused,
            Err(SendError::Cluster(ClusterError::Unavailable(_)))
        ),
        "{refused:?}"
    );
    node.pump_until("every local send", |n| n.heard[b].len() == sent);
    let expected: Vec<String> = (0..sent).map(|i| i.to_string()).collect();
    assert_eq!(node.heard[b], expected);
    let events = node.events();
    assert!(
        matches!(
            &events[..],
            [ClusterEvent::Down {
                error: ClusterError::Unavailable(_)
            }]
        ),
        "{events:?}"
    );
    redis.signal("CONT");
    node.pump_until("the node up again", |n| n.handle.is_up());
    node.pump_until("Up", |n| !n.server.state().events.is_empty());
    assert_eq!(node.events(), [ClusterEvent::Up]);
    assert!(!node.handle.is_fenced());
    drop(node);
    drop(redis); // stopped by its PID
}

/// (c) A node name has one live holder: a second node with it is refused (its holder
/// refreshes it), and once the holder is halted (as SIGKILL would) a newcomer takes it as soon
/// as it expires (connect waits at most the remaining TTL plus 2 s).
#[test]
fn a_node_name_has_one_live_holder() {
    let redis = RedisServer::start();
    let named = || config(&redis, "names", TTL).node_name("alpha");
    let first = RedisAdapter::connect(named()).expect("the name is free");
    match RedisAdapter::connect(named()) {
        Err(RedisError::NameInUse { name, why }) => {
            assert_eq!(name, "alpha");
            assert!(why.contains("refreshed"), "{why}");
        }
        other => panic!("a second holder: {other:?}"),
    }
    let other = RedisAdapter::connect(config(&redis, "names", TTL).node_name("beta"))
        .expect("another name is free");
    first.handle().halt();
    let next = RedisAdapter::connect(named()).expect("free once its holder's presence expired");
    assert_ne!(next.handle().node(), first.handle().node());
    drop(first);
    // A clean leave gives the name up at once (no TTL to wait: the key is gone).
    drop(other);
    let mut con = redis.connection();
    let held: bool = redis::cmd("EXISTS")
        .arg("names:nodename:beta")
        .query(&mut con)
        .unwrap();
    assert!(!held, "beta given up");
}

/// (e) A node whose presence key another process took is fenced: `Down` with "fenced", and
/// no cross-node work any more, nor any write to Redis.
#[test]
fn a_fenced_node_reports_down_and_refuses_cross_node_work() {
    let redis = RedisServer::start();
    let mut a = Node::start(config(&redis, "fence", TTL));
    let mut b = Node::start(config(&redis, "fence", TTL));
    let (a1, b1) = (a.connect(), b.connect());
    // A member of "hall" on A before the fence: it must hear nothing from B after it.
    a.join(a1, "hall");
    a.pump_until("A's join in Redis", |n| n.handle.is_idle());
    a.events();
    let mut con = redis.connection();
    let key = format!("fence:node:{}", a.handle.node());
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("another-process")
        .arg("PX")
        .arg(60_000)
        .query(&mut con)
        .unwrap();
    a.pump_until("the node fenced", |n| n.handle.is_fenced());
    a.pump_until("Down", |n| !n.server.state().events.is_empty());
    let events = a.events();
    let [ClusterEvent::Down {
        error: ClusterError::Fenced(why),
    }] = &events[..]
    else {
        panic!("{events:?}");
    };
    assert!(why.starts_with("fenced: "), "{why}");
    assert!(!a.handle.is_up());
    let refused = a.server.context().emit_nodes(&Message::new("x"));
    assert!(
        matches!(&refused, Err(SendError::Cluster(ClusterError::Fenced(w))) if w.starts_with("fenced")),
        "{refused:?}"
    );
    let id = a.id(a1);
    a.server.context().claim(id, &["ada"]);
    let token = a.server.context().query_members("lobby", None, 10);
    a.join(a1, "after-fence");
    a.pump_until("the answers", |n| n.server.state().events.len() >= 2);
    let events = a.events();
    assert!(
        matches!(&events[0], ClusterEvent::Claimed { result: Err(ClusterError::Fenced(w)), .. } if w.starts_with("fenced")),
        "{events:?}"
    );
    assert!(
        matches!(&events[1], ClusterEvent::QueryFailed { token: t, .. } if *t == token),
        "{events:?}"
    );
    a.pump_until("the join handled", |n| n.handle.is_idle());
    let written: bool = redis::cmd("EXISTS")
        .arg("fence:room:after-fence")
        .query(&mut con)
        .unwrap();
    assert!(!written, "a fenced node writes nothing");
    let holder: String = redis::cmd("GET").arg(&key).query(&mut con).unwrap();
    assert_eq!(holder, "another-process", "nor takes its key back");
    // A fenced node's subscriber ends: it no longer subscribes to its channels.
    let deadline = Instant::now() + TIMEOUT;
    let to_a = format!("fence:to:{}", a.handle.node());
    loop {
        let (_, subscribers): (String, u64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&to_a)
            .query(&mut con)
            .unwrap();
        if subscribers == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "A still subscribed");
        a.pump();
    }
    // A room send from B after the fence reaches Redis (B's member hears it, B's publish is
    // done) but not A's member.
    let b2 = b.connect();
    b.join(b1, "hall");
    b.join(b2, "hall");
    let publishes = calls(&redis, "publish");
    b.clients[b2].1.send(&say("hall", "after-fence")).unwrap();
    b.pump_until("B's member hears it", |n| {
        n.heard[b1].contains(&"after-fence".to_owned())
    });
    b.pump_until("B's publish done", |n| n.handle.is_idle());
    assert!(calls(&redis, "publish") > publishes, "B published the send");
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        a.pump();
    }
    assert!(
        a.heard[a1].is_empty(),
        "a fenced node delivers nothing: {:?}",
        a.heard[a1]
    );
    assert!(a.events().is_empty(), "nor reports anything more");
    // The other node is not affected.
    b.join(b1, "lobby");
    let token = b.server.context().query_members("lobby", None, 10);
    b.pump_until("B's answer", |n| !n.server.state().events.is_empty());
    assert_eq!(
        b.events(),
        [ClusterEvent::Members {
            token,
            room: "lobby".to_owned(),
            page: vec![b.id(b1)],
            next: None
        }]
    );
}

/// Dropping a node leaves at once: its channels depart and the others hear it is gone
/// without waiting for its presence to expire; its keys are gone and its number retired.
#[test]
fn a_dropped_node_leaves_at_once() {
    let redis = RedisServer::start();
    let mut a = Node::start(config(&redis, "leave", Duration::from_secs(60)));
    let mut b = Node::start(config(&redis, "leave", Duration::from_secs(60)));
    let (b1, b2) = (b.connect(), b.connect());
    b.join(b1, "lobby");
    let (id1, id2) = (b.id(b1), b.id(b2));
    b.server.context().claim(id2, &["bob"]);
    b.pump_until("the claim", |n| !n.server.state().events.is_empty());
    let gone = b.handle.node();
    drop(b); // a presence TTL of 60 s: only a clean leave makes this quick
    a.pump_until("the departures and the end", |n| {
        n.server.state().events.len() >= 3
    });
    let mut events = a.events();
    events.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(
        events,
        [
            ClusterEvent::Departed { id: id1 },
            ClusterEvent::Departed { id: id2 },
            ClusterEvent::NodeGone { node: gone },
        ]
    );
    let mut con = redis.connection();
    let exists = |con: &mut redis::Connection, key: String| -> bool {
        redis::cmd("EXISTS").arg(key).query(con).unwrap()
    };
    assert!(!exists(&mut con, format!("leave:node:{gone}")));
    assert!(!exists(&mut con, format!("leave:chans:{gone}")));
    assert!(!exists(&mut con, "leave:room:lobby".to_owned()));
    assert!(!exists(&mut con, "leave:name:bob".to_owned()));
    assert!(exists(&mut con, format!("leave:retired:{gone}")));
    // A later node never gets the number back.
    let next = Node::start(config(&redis, "leave", Duration::from_secs(60)));
    assert_ne!(next.handle.node(), gone);
}

/// Without a node name, a node starts even if Redis is unreachable: down at first, with a
/// number drawn locally, registered and up once Redis is there.
#[test]
fn a_node_starts_down_and_registers_when_redis_comes() {
    let port = netlib_tests::restart_port();
    let password = format!("late-{}", std::process::id());
    let url = format!("redis://:{password}@127.0.0.1:{port}");
    let adapter = RedisAdapter::connect(netlib_redis::RedisConfig::new(&url).prefix("late"))
        .expect("no node name: not an error");
    let handle = adapter.handle();
    let server = netlib::Server::with_adapter(
        common::Recorder::default(),
        netlib::ServerConfig::default(),
        Box::new(adapter),
    )
    .unwrap();
    let mut node = Node {
        server,
        handle,
        clients: Vec::new(),
        heard: Vec::new(),
    };
    node.pump_until("Down", |n| !n.server.state().events.is_empty());
    assert!(matches!(&node.events()[..], [ClusterEvent::Down { .. }]));
    let c = node.connect();
    node.join(c, "lobby");
    let redis = RedisServer::start_on(port, &password);
    node.pump_until("Up", |n| n.handle.is_up());
    node.pump_until("the event", |n| !n.server.state().events.is_empty());
    assert_eq!(node.events(), [ClusterEvent::Up]);
    let mut con = redis.connection();
    let n = node.handle.node();
    let members: Vec<u64> = redis::cmd("ZRANGE")
        .arg("late:room:lobby")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!(
        members,
        [node.id(c).serial()],
        "the join made while down is replayed"
    );
    let listed: bool = redis::cmd("SISMEMBER")
        .arg("late:nodes")
        .arg(n)
        .query(&mut con)
        .unwrap();
    assert!(listed);
}

/// What a node's channels did while Redis was down is state, replayed once it is back (even
/// empty, after a restart): rooms and names are written again, a departure made meanwhile is
/// published; the other node sees it all.
#[test]
fn state_made_during_an_outage_is_replayed_after_a_restart() {
    let redis = RedisServer::start();
    let (port, password) = (redis.port, redis.password.clone());
    let mut a = Node::start(config(&redis, "replay", TTL));
    let mut b = Node::start(config(&redis, "replay", TTL));
    let (a1, a2, a3) = (a.connect(), a.connect(), a.connect());
    let id3 = a.id(a3);
    let b1 = b.connect();
    a.join(a1, "lobby");
    a.join(a2, "lobby");
    let (id1, id2) = (a.id(a1), a.id(a2));
    a.server.context().claim(id1, &["ada"]);
    a.pump_until("the claim", |n| !n.server.state().events.is_empty());
    assert!(matches!(
        &a.events()[..],
        [ClusterEvent::Claimed { result: Ok(()), .. }]
    ));
    redis.kill();
    for n in [&mut a, &mut b] {
        n.pump_until("Down", |n| !n.server.state().events.is_empty());
        assert!(matches!(&n.events()[..], [ClusterEvent::Down { .. }]));
    }
    // Meanwhile: a2 closes, a3 joins, a1 leaves a room it had joined.
    let (_, mut closing) = a.clients.remove(a2);
    a.heard.remove(a2);
    closing.close();
    assert_eq!(a.server.context().join(id3, "side"), Ok(true));
    assert!(a.server.context().leave(id1, "lobby"));
    a.pump_until("the close handed over", |n| {
        n.server.context().len() == 2 && n.handle.is_idle()
    });
    let redis = RedisServer::start_on(port, &password);
    a.pump_until("Up", |n| !n.server.state().events.is_empty());
    assert_eq!(a.events(), [ClusterEvent::Up]);
    // B may subscribe again before or after A replays its departure: it gets it either way
    // (live, or from the departures log), once.
    b.pump_until("Up and the departure made during the outage", |n| {
        n.server.state().events.len() >= 2
    });
    let mut events = b.events();
    events.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(
        events,
        [ClusterEvent::Departed { id: id2 }, ClusterEvent::Up]
    );
    let bid = b.id(b1);
    b.server.context().claim(bid, &["ada"]);
    let token = b.server.context().query_members("side", None, 10);
    let lobby = b.server.context().query_members("lobby", None, 10);
    b.pump_until("the answers", |n| n.server.state().events.len() >= 3);
    let events = b.events();
    assert!(
        matches!(
            &events[0],
            ClusterEvent::Claimed {
                result: Err(ClusterError::Taken),
                ..
            }
        ),
        "a1 holds its name again: {events:?}"
    );
    assert_eq!(
        events[1..],
        [
            ClusterEvent::Members {
                token,
                room: "side".to_owned(),
                page: vec![id3],
                next: None
            },
            ClusterEvent::Members {
                token: lobby,
                room: "lobby".to_owned(),
                page: vec![],
                next: None
            }
        ]
    );
    drop(redis);
}

/// A node whose number was retired (declared dead) is fenced at its next refresh, even if its
/// presence key still holds its token.
#[test]
fn a_retired_number_fences_its_node_even_with_its_key() {
    let redis = RedisServer::start();
    let mut a = Node::start(config(&redis, "retired", TTL));
    let mut con = redis.connection();
    let _: () = redis::cmd("SET")
        .arg(format!("retired:retired:{}", a.handle.node()))
        .arg(1)
        .arg("PX")
        .arg(60_000)
        .query(&mut con)
        .unwrap();
    a.pump_until("the node fenced", |n| n.handle.is_fenced());
    a.pump_until("Down", |n| !n.server.state().events.is_empty());
    let events = a.events();
    assert!(
        matches!(
            &events[..],
            [ClusterEvent::Down {
                error: ClusterError::Fenced(_)
            }]
        ),
        "{events:?}"
    );
}

/// A record of `{p}:chans:{n}` that cannot be read is skipped: the dead node is still reaped
/// (its readable channels depart).
#[test]
fn a_malformed_record_does_not_stop_a_reap() {
    let redis = RedisServer::start();
    let mut a = Node::start(config(&redis, "malformed", TTL));
    let mut b = Node::start(config(&redis, "malformed", TTL));
    let b1 = b.connect();
    b.join(b1, "lobby");
    b.pump_until("B's join in Redis", |n| n.handle.is_idle());
    let mut con = redis.connection();
    let _: () = redis::cmd("HSET")
        .arg(format!("malformed:chans:{}", b.handle.node()))
        .arg("not-a-serial")
        .arg("{}")
        .arg("12345")
        .arg("not json")
        .query(&mut con)
        .unwrap();
    let (id, gone) = (b.id(b1), b.handle.node());
    b.handle.halt();
    a.pump_until("the reap", |n| n.server.state().events.len() >= 2);
    let mut events = a.events();
    events.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(
        events,
        [
            ClusterEvent::Departed { id },
            ClusterEvent::NodeGone { node: gone }
        ]
    );
}

/// Redis's script cache flushed (`SCRIPT FLUSH`) is no outage: departures, name releases and
/// claims still go through, and no `Down` is reported.
#[test]
fn a_script_flush_is_no_outage() {
    let redis = RedisServer::start();
    let mut a = Node::start(config(&redis, "flush", TTL));
    let mut b = Node::start(config(&redis, "flush", TTL));
    let (b1, b2) = (b.connect(), b.connect());
    b.join(b1, "lobby");
    let id1 = b.id(b1);
    b.server.context().claim(id1, &["bo"]);
    b.pump_until("the claim", |n| !n.server.state().events.is_empty());
    b.events();
    let mut con = redis.connection();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut con).unwrap();
    let id = b.id(b1);
    let (_, mut closing) = b.clients.remove(b1);
    b.heard.remove(b1);
    closing.close();
    pump_all_until(&mut [&mut a, &mut b], "the departure", |ns| {
        !ns[0].server.state().events.is_empty()
    });
    assert_eq!(a.events(), [ClusterEvent::Departed { id }]);
    b.pump_until("B idle", |n| n.handle.is_idle());
    let held: bool = redis::cmd("EXISTS")
        .arg("flush:name:bo")
        .query(&mut con)
        .unwrap();
    assert!(!held, "the name released");
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut con).unwrap();
    let b2 = b2 - 1; // b1 was removed
    let id2 = b.id(b2);
    b.server.context().claim(id2, &["bo"]);
    b.pump_until("the second claim", |n| !n.server.state().events.is_empty());
    let events = b.events();
    assert!(
        matches!(&events[..], [ClusterEvent::Claimed { result: Ok(()), .. }]),
        "{events:?}"
    );
    assert!(b.handle.is_up() && a.handle.is_up());
}

/// A members query with the largest limit is answered (no overflow in the command thread).
#[test]
fn a_members_query_with_the_largest_limit_is_answered() {
    let redis = RedisServer::start();
    let mut a = Node::start(config(&redis, "limit", TTL));
    let a1 = a.connect();
    a.join(a1, "lobby");
    let token = a.server.context().query_members("lobby", None, usize::MAX);
    a.pump_until("the answer", |n| !n.server.state().events.is_empty());
    assert_eq!(
        a.events(),
        [ClusterEvent::Members {
            token,
            room: "lobby".to_owned(),
            page: vec![a.id(a1)],
            next: None
        }]
    );
    assert!(a.handle.is_up());
}

/// With room streams, a node whose subscription breaks (here Redis kills its pub/sub
/// connection, as a proxy or a network fault would) reads what was published meanwhile from
/// the rooms' streams when it subscribes again, and a script flush (NOSCRIPT) holds the room
/// sends it refused until the scripts are loaded again: a member misses nothing and gets
/// nothing twice, in order.
#[test]
fn with_room_streams_a_broken_subscription_or_a_script_flush_loses_no_room_send() {
    let redis = RedisServer::start();
    let streams = || config(&redis, "gap", TTL).room_streams(10_000);
    let mut a = Node::start(streams());
    let mut b = Node::start(streams());
    let (a1, b1) = (a.connect(), b.connect());
    a.join(a1, "lobby");
    b.join(b1, "lobby");
    let mut con = redis.connection();
    // Node b's subscriber, by the name it gives its connection.
    let name = format!("name=netlib-subscriber-{} ", b.id(b1).node());
    let mut sent = 0usize;
    for round in 0..10 {
        let deadline = Instant::now() + TIMEOUT;
        let subscriber = loop {
            let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut con).unwrap();
            let id = list.lines().find(|l| l.contains(&name)).and_then(|l| {
                l.strip_prefix("id=")?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            });
            if let Some(id) = id {
                break id;
            }
            assert!(
                Instant::now() < deadline,
                "node b's subscriber never came back"
            );
            a.pump();
            b.pump();
        };
        // Node b is unsubscribed for its reconnect (a backoff of 10 ms or more) while node
        // a goes on publishing.
        let killed: u64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(subscriber)
            .query(&mut con)
            .unwrap();
        assert_eq!(killed, 1);
        if round == 5 {
            let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut con).unwrap();
        }
        for _ in 0..20 {
            a.clients[a1]
                .1
                .send(&say("lobby", &sent.to_string()))
                .unwrap();
            sent += 1;
            a.pump();
            b.pump();
        }
    }
    pump_all_until(&mut [&mut a, &mut b], "every room send on node b", |ns| {
        ns[1].heard[b1].len() >= sent
    });
    // One more: a duplicate would come before it.
    a.clients[a1].1.send(&say("lobby", "last")).unwrap();
    pump_all_until(&mut [&mut a, &mut b], "the last one", |ns| {
        ns[1].heard[b1].last().map(String::as_str) == Some("last")
    });
    let expected: Vec<String> = (0..sent)
        .map(|n| n.to_string())
        .chain(["last".into()])
        .collect();
    assert_eq!(b.heard[b1], expected);
}
