//! Sessions across the nodes of a cluster, case by case: real `jitter-node` processes (netlib
//! servers with sessions, through a real Redis with room streams) and netlib clients. A
//! session resumes on another node with the room messages it missed, in order and once; a
//! node without members serves a room's history from its stream; after Redis lost its data
//! a resume on another node is refused for the epoch, never silently short; a send to several
//! rooms reaches a member of several of them once, live and after a resume on another node;
//! messages to one channel alone reach it on another node after its first node was SIGKILLed.

use std::path::Path;

use netlib::{protocol, Client, ClientConfig, Message};
use netlib_tests::redis::RedisServer;
use netlib_tests::{spawn_listening, until, ChildGuard, TIMEOUT};

/// A Redis server and `n` nodes.
struct Cluster {
    redis: RedisServer,
    nodes: Vec<(ChildGuard, String)>,
}

fn cluster(n: usize) -> Cluster {
    let redis = RedisServer::start();
    let url = redis.url();
    let exe = Path::new(env!("CARGO_BIN_EXE_jitter-node"));
    let nodes = (0..n)
        .map(|_| {
            let (child, addr, _) = spawn_listening(exe.to_str().unwrap(), &["--redis", &url]);
            (child, addr)
        })
        .collect();
    Cluster { redis, nodes }
}

/// A client and the messages it received that no check took yet, in order.
struct Peer {
    c: Client,
    got: std::collections::VecDeque<Message>,
}

impl Peer {
    fn new(addr: &str, session: bool) -> Self {
        Peer {
            c: Client::connect(addr, ClientConfig::default().session(session)).expect("client"),
            got: Default::default(),
        }
    }

    /// The first message with `action` (those before it with other actions are dropped; those
    /// after it stay for the next check).
    fn expect(&mut self, action: &str) -> Message {
        let mut found = None;
        until(action, || {
            self.got.extend(self.c.pump_messages().expect("poller"));
            while let Some(m) = self.got.pop_front() {
                if m.action() == action {
                    found = Some(m);
                    return true;
                }
            }
            false
        });
        found.expect("found")
    }

    /// The next `n` messages with `action`.
    fn take(&mut self, action: &str, n: usize) -> Vec<Message> {
        (0..n).map(|_| self.expect(action)).collect()
    }
}

fn join(p: &mut Peer, room: &str) {
    p.c.send(&Message::new("join").with("room", room)).unwrap();
    p.expect("joined");
}

/// Says `n` in room `r`, written at once (a client writes when pumped or flushed).
fn say(p: &mut Peer, n: u64) {
    say_in(p, "r", n);
}

/// Says `n` in `room`, written at once.
fn say_in(p: &mut Peer, room: &str, n: u64) {
    p.c.send(&Message::new("say").with("room", room).with("n", n))
        .unwrap();
    assert!(p.c.flush(TIMEOUT).expect("flush"), "written");
}

/// Says `n` to rooms `r` and `s` in one send (one stream entry per room), written at once.
fn say_all(p: &mut Peer, n: u64) {
    p.c.send(
        &Message::new("say_all")
            .with("rooms", vec!["r", "s"])
            .with("n", n),
    )
    .unwrap();
    assert!(p.c.flush(TIMEOUT).expect("flush"), "written");
}

fn numbers(got: &[Message]) -> Vec<u64> {
    got.iter()
        .map(|m| m.get("n").and_then(|v| v.as_u64()).unwrap_or(0))
        .collect()
}

/// Waits until the stream of `room` holds `n` entries (what was sent reached Redis).
fn stream_holds(redis: &RedisServer, room: &str, n: usize) {
    let mut con = redis.connection();
    until(&format!("{n} entries in the stream of {room}"), || {
        let len: usize = ::redis::cmd("XLEN")
            .arg(format!("jitter:stream:{room}"))
            .query(&mut con)
            .unwrap_or(0);
        len >= n
    });
}

#[test]
fn a_session_resumes_on_another_node_with_the_room_messages_it_missed_once_and_in_order() {
    let c = cluster(2);
    let (a, b) = (&c.nodes[0].1, &c.nodes[1].1);
    let mut alice = Peer::new(a, true);
    let answer = alice.expect(protocol::SESSION);
    let epoch = answer
        .get_str("epoch")
        .expect("a cluster with room streams names its epoch");
    join(&mut alice, "r");
    let mut bob = Peer::new(b, true);
    join(&mut bob, "r");

    say(&mut bob, 1);
    let first = alice.take("say", 1);
    assert_eq!(numbers(&first), [1]);
    assert!(
        first[0].get(protocol::AT).is_none(),
        "the offset tag is the client's, not the application's"
    );

    alice.c.disconnect();
    for n in 2..=4 {
        say(&mut bob, n);
    }
    stream_holds(&c.redis, "r", 4);
    alice.c.reconnect_to(b).unwrap();
    let answer = alice.expect(protocol::SESSION);
    assert_eq!(answer.get("recovered"), Some(&true.into()), "{answer:?}");
    assert_eq!(answer.get_str("epoch"), Some(epoch));
    assert_eq!(
        numbers(&alice.take("say", 3)),
        [2, 3, 4],
        "what it missed, in order"
    );

    // Its own sends go on from the new node, and it never gets them back.
    say(&mut alice, 10);
    assert_eq!(numbers(&bob.take("say", 1)), [10]);
    say(&mut bob, 5);
    assert_eq!(
        numbers(&alice.take("say", 1)),
        [5],
        "live, after the replay, once"
    );
}

#[test]
fn a_node_without_members_serves_a_rooms_history_from_its_stream() {
    let c = cluster(2);
    let mut bob = Peer::new(&c.nodes[0].1, false);
    join(&mut bob, "r");
    for n in 1..=5 {
        say(&mut bob, n);
    }
    stream_holds(&c.redis, "r", 5);
    // A PodSixNet-style client (no session) on the other node, which has no member in "r".
    let mut carol = Peer::new(&c.nodes[1].1, false);
    carol
        .c
        .send(&Message::new("history").with("room", "r").with("n", 3))
        .unwrap();
    assert!(carol.c.flush(TIMEOUT).expect("flush"), "written");
    let got = carol.take("say", 3);
    assert_eq!(numbers(&got), [3, 4, 5], "the last 3, oldest first");
    assert!(
        got.iter().all(|m| m.get(protocol::AT).is_none()),
        "no tag without a session"
    );
}

#[test]
fn after_redis_lost_its_data_a_resume_on_another_node_is_refused_for_the_epoch() {
    let c = cluster(2);
    let (a, b) = (c.nodes[0].1.clone(), c.nodes[1].1.clone());
    let mut alice = Peer::new(&a, true);
    let answer = alice.expect(protocol::SESSION);
    let epoch = answer.get_str("epoch").expect("an epoch").to_owned();
    join(&mut alice, "r");

    let Cluster { redis, nodes } = c;
    let (port, password) = (redis.port, redis.password.clone());
    redis.kill();
    // Started again empty: its data is lost.
    let redis = RedisServer::start_on(port, &password);
    // Both nodes subscribed again, and node A wrote its session back under the new epoch.
    let mut con = redis.connection();
    until(
        "both nodes back and the session written back under a new epoch",
        || {
            let subscribed: (String, u64) = ::redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("jitter:bus")
                .query(&mut con)
                .unwrap_or_default();
            if subscribed.1 < 2 {
                return false;
            }
            let keys: Vec<String> = ::redis::cmd("KEYS")
                .arg("jitter:sess:*")
                .query(&mut con)
                .unwrap_or_default();
            keys.iter().any(|k| {
                let e: Option<String> = ::redis::cmd("HGET")
                    .arg(k)
                    .arg("epoch")
                    .query(&mut con)
                    .unwrap_or(None);
                e.is_some_and(|e| e != epoch)
            })
        },
    );
    alice.c.disconnect();
    alice.c.reconnect_to(&b).unwrap();
    let answer = alice.expect(protocol::SESSION);
    assert_eq!(answer.get("recovered"), Some(&false.into()), "{answer:?}");
    assert_eq!(answer.get_str("reason"), Some("epoch"));
    let new_epoch = answer.get_str("epoch").expect("the new epoch");
    assert_ne!(new_epoch, epoch, "the client learns the new epoch");
    drop(nodes);
}

#[test]
fn a_send_to_several_rooms_reaches_a_member_of_several_of_them_once() {
    let c = cluster(2);
    let mut alice = Peer::new(&c.nodes[0].1, true);
    join(&mut alice, "r");
    join(&mut alice, "s");
    let mut dave = Peer::new(&c.nodes[0].1, true);
    join(&mut dave, "s");
    let mut bob = Peer::new(&c.nodes[1].1, true);
    for n in 1..=2 {
        say_all(&mut bob, n);
    }
    assert_eq!(
        numbers(&dave.take("say", 2)),
        [1, 2],
        "a member of one of them"
    );
    // Then one more to "r" alone: a second copy of 1 or 2 would come before it.
    say(&mut bob, 3);
    assert_eq!(
        numbers(&alice.take("say", 3)),
        [1, 2, 3],
        "each once, in order"
    );
}

#[test]
fn after_a_resume_on_another_node_a_member_of_several_rooms_gets_a_send_to_them_once() {
    let c = cluster(2);
    let (a, b) = (&c.nodes[0].1, &c.nodes[1].1);
    let mut alice = Peer::new(a, true);
    join(&mut alice, "r");
    join(&mut alice, "s");
    let mut bob = Peer::new(b, true);
    // One received live (from "r"; its entry in "s" was skipped), one missed.
    say_all(&mut bob, 1);
    assert_eq!(numbers(&alice.take("say", 1)), [1]);
    alice.c.disconnect();
    say_all(&mut bob, 2);
    stream_holds(&c.redis, "r", 2);
    stream_holds(&c.redis, "s", 2);

    alice.c.reconnect_to(b).unwrap();
    let answer = alice.expect(protocol::SESSION);
    assert_eq!(answer.get("recovered"), Some(&true.into()), "{answer:?}");
    // Then one more to each room alone: a second copy of 1 or 2 (from either room's replay)
    // would come before them.
    say(&mut bob, 3);
    say_in(&mut bob, "s", 4);
    assert_eq!(
        numbers(&alice.take("say", 3)),
        [2, 3, 4],
        "the missed one once, then live"
    );
}

#[test]
fn messages_to_a_channel_alone_reach_it_on_another_node_after_its_node_was_killed() {
    let mut c = cluster(2);
    let b = c.nodes[1].1.clone();
    let mut alice = Peer::new(&c.nodes[0].1, true);
    let answer = alice.expect(protocol::SESSION);
    let id = answer
        .get("id")
        .and_then(|v| v.as_u64())
        .expect("its channel's id");
    join(&mut alice, "r");
    let mut bob = Peer::new(&b, true);
    join(&mut bob, "r");
    let whisper = |bob: &mut Peer, n: u64| {
        bob.c
            .send(&Message::new("whisper").with("to", id).with("n", n))
            .unwrap();
        assert!(bob.c.flush(TIMEOUT).expect("flush"), "written");
    };
    whisper(&mut bob, 1);
    assert_eq!(numbers(&alice.take("say", 1)), [1]);

    alice.c.disconnect();
    whisper(&mut bob, 2);
    whisper(&mut bob, 3);
    // Node A kept them in Redis, with the session, before it is SIGKILLed: the last one is
    // there (the stream holds its `joined` too, so its length alone would not tell).
    let mut con = c.redis.connection();
    until("the messages to alice alone kept in Redis", || {
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg("jitter:sess:*:out")
            .query(&mut con)
            .unwrap_or_default();
        keys.iter().any(|k| {
            let entries: Vec<(String, Vec<(String, String)>)> = ::redis::cmd("XRANGE")
                .arg(k)
                .arg("-")
                .arg("+")
                .query(&mut con)
                .unwrap_or_default();
            entries.iter().any(|(_, fields)| {
                fields
                    .iter()
                    .any(|(f, v)| f == "p" && v.contains(r#""n":3"#))
            })
        })
    });
    let (mut a, _) = c.nodes.remove(0);
    let _ = a.0.kill();
    let _ = a.0.wait();

    alice.c.reconnect_to(&b).unwrap();
    let answer = alice.expect(protocol::SESSION);
    assert_eq!(answer.get("recovered"), Some(&true.into()), "{answer:?}");
    assert_eq!(
        numbers(&alice.take("say", 2)),
        [2, 3],
        "what it missed, once, in order"
    );
    say(&mut bob, 4);
    assert_eq!(numbers(&alice.take("say", 1)), [4], "then live");
}
