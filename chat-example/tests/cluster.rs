//! Several chat-server nodes sharing rooms through a real `redis-server` (started here on a free
//! port, stopped by PID): clients spread over the nodes see one chat. Fails, never skips, when
//! redis-server cannot start.

mod common;

use std::io::Write;
use std::time::Instant;

use chat::protocol::{Join, Kick, Op, Request, Say, SayPrivately, SetNickname, Who};
use common::{chat_client, ChatServer, Lines, Network, Peer, RedisServer};
use netlib::protocol::CONNECTED;
use netlib::Message;
use netlib_tests::{podsixnet_python, podsixnet_scripts, until, ChildGuard, TIMEOUT};

fn node(redis: &RedisServer, id: &str, extra: &[&str]) -> ChatServer {
    let url = redis.url();
    let mut args = vec![
        "--redis",
        &url,
        "--node-id",
        id,
        "--presence-ttl",
        "3",
        "--rate-limit",
        "0",
    ];
    args.extend_from_slice(extra);
    let server = ChatServer::start(&args, &[("CHAT_OP", "s3cret")]);
    // It joined with the password in the URL, and never prints it.
    until("the node says it joined", || {
        server
            .stdout
            .any(|l| l.contains("joins the cluster at redis://:***@"))
    });
    assert!(!server.stdout.any(|l| l.contains(&redis.password)));
    assert!(!server.stderr.any(|l| l.contains(&redis.password)));
    server
}

fn say(p: &mut Peer, text: &str) {
    p.send(Request::Message(Say {
        message: text.into(),
    }));
}

fn heard(p: &mut Peer, who: &str, text: &str) -> Message {
    p.expect_where("message", |m| {
        m.get_str("who") == Some(who) && m.get_str("message") == Some(text)
    })
}

/// The nicknames in a `who` reply (all pages fit: small tests).
fn who(p: &mut Peer) -> Vec<String> {
    p.send(Request::Who(Who {
        room: None,
        page: None,
    }));
    let m = p.expect("who");
    let mut v: Vec<String> = m
        .get("users")
        .and_then(|u| u.as_array())
        .unwrap()
        .iter()
        .map(|u| u["nickname"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

/// Waits until `p`'s `who` lists exactly `nicks`.
fn who_is(p: &mut Peer, nicks: &[&str]) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let got = who(p);
        if got == nicks {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "who: {got:?}, expected {nicks:?}"
        );
        p.pump();
    }
}

#[test]
fn three_nodes_share_rooms_messages_privates_who_and_kicks() {
    let redis = RedisServer::start();
    let a = node(&redis, "a", &["--op-password-env", "CHAT_OP"]);
    let b = node(&redis, "b", &[]);
    let c = node(&redis, "c", &[]);
    let mut alice = Peer::join(&a.addr, "alice");
    let mut bob = Peer::join(&b.addr, "bob");
    let mut carol = Peer::join(&c.addr, "carol");
    for p in [&mut alice, &mut bob, &mut carol] {
        who_is(p, &["alice", "bob", "carol"]);
    }
    // A room message reaches every member on every node.
    say(&mut alice, "hello from a");
    heard(&mut bob, "alice", "hello from a");
    heard(&mut carol, "alice", "hello from a");
    heard(&mut alice, "alice", "hello from a");
    // Players lists span the nodes.
    carol.expect_where("players", |m| {
        m.get("players") == Some(&serde_json::json!(["alice", "bob", "carol"]))
    });
    // A private message across nodes, echoed to the sender.
    alice.send(Request::Private(SayPrivately {
        to: "CAROL".into(),
        message: "psst".into(),
    }));
    let m = carol.expect("private");
    assert_eq!(
        (m.get_str("who"), m.get_str("message")),
        (Some("alice"), Some("psst"))
    );
    alice.expect_where("private", |m| m.get("echo") == Some(&true.into()));
    assert!(!bob.has("private", |_| true));
    // Nicknames are unique cluster-wide (confusables too).
    bob.send(Request::Nickname(SetNickname {
        nickname: "Alice".into(),
    }));
    assert_eq!(
        bob.expect("refused").get_str("code"),
        Some("nickname-taken")
    );
    // Rooms: a room on one node, seen from another.
    bob.send(Request::Join(chat::protocol::Join {
        room: "games".into(),
    }));
    alice.expect_where("left", |m| m.get_str("nickname") == Some("bob"));
    let want =
        serde_json::json!([{"name": "games", "members": 1}, {"name": "lobby", "members": 2}]);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        carol.send(Request::Rooms(chat::protocol::Rooms::default()));
        let rooms = carol.expect("rooms");
        if rooms.get("rooms") == Some(&want) {
            break;
        }
        assert!(Instant::now() < deadline, "rooms: {:?}", rooms.get("rooms"));
        carol.pump();
    }
    // An operator on a kicks a user on c.
    alice.send(Request::Op(Op {
        password: "s3cret".into(),
    }));
    alice.expect("op");
    alice.send(Request::Kick(Kick {
        nickname: "carol".into(),
        reason: Some("testing".into()),
    }));
    carol.expect("kicked");
    alice.expect_where("left", |m| {
        m.get_str("nickname") == Some("carol")
            && m.get_str("reason")
                .is_some_and(|r| r.contains("kicked by alice"))
    });
    who_is(&mut bob, &["alice", "bob"]);
    for n in [a, b, c] {
        n.stop();
    }
}

#[test]
fn each_senders_order_is_kept_across_nodes() {
    let redis = RedisServer::start();
    let a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);
    let mut alice = Peer::join(&a.addr, "alice");
    let mut bob = Peer::join(&b.addr, "bob");
    let mut carol = Peer::join(&a.addr, "carol");
    who_is(&mut bob, &["alice", "bob", "carol"]);
    for i in 0..300 {
        alice
            .client
            .send(&Request::Message(Say {
                message: format!("a{i}"),
            }))
            .unwrap();
        carol
            .client
            .send(&Request::Message(Say {
                message: format!("c{i}"),
            }))
            .unwrap();
    }
    alice.pump();
    carol.pump();
    let deadline = Instant::now() + TIMEOUT;
    let seen = |p: &Peer, who: &str| -> Vec<String> {
        p.inbox
            .iter()
            .filter(|m| m.action() == "message" && m.get_str("who") == Some(who))
            .map(|m| m.get_str("message").unwrap().to_owned())
            .collect()
    };
    while seen(&bob, "alice").len() < 300 || seen(&bob, "carol").len() < 300 {
        assert!(
            Instant::now() < deadline,
            "bob got {} and {}",
            seen(&bob, "alice").len(),
            seen(&bob, "carol").len()
        );
        alice.pump();
        carol.pump();
        bob.pump();
    }
    let want = |p: &str| (0..300).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
    assert_eq!(seen(&bob, "alice"), want("a"));
    assert_eq!(seen(&bob, "carol"), want("c"));
    a.stop();
    b.stop();
}

#[test]
fn a_nickname_race_across_nodes_has_one_winner() {
    let redis = RedisServer::start();
    let a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);
    for round in 0..5 {
        let nick = format!("zed{round}");
        let mut x = Peer::connect(&a.addr);
        let mut y = Peer::connect(&b.addr);
        let ask = Request::Nickname(SetNickname {
            nickname: nick.clone(),
        });
        x.client.send(&ask).unwrap();
        y.client.send(&ask).unwrap();
        let outcome = |p: &mut Peer| {
            let deadline = Instant::now() + TIMEOUT;
            let me = p
                .inbox
                .iter()
                .find(|m| m.action() == CONNECTED)
                .and_then(|m| m.get("id").cloned())
                .expect("the server announces ids");
            loop {
                p.pump();
                for (i, m) in p.inbox.iter().enumerate() {
                    // Our own rename (the winner's notice reaches the loser too).
                    if m.action() == "renamed"
                        && m.get_str("to") == Some(&nick)
                        && m.get("id") == Some(&me)
                    {
                        p.inbox.remove(i);
                        return true;
                    }
                    if m.action() == "refused" {
                        assert_eq!(m.get_str("code"), Some("nickname-taken"));
                        p.inbox.remove(i);
                        return false;
                    }
                }
                assert!(Instant::now() < deadline, "no answer to the claim");
            }
        };
        let (wx, wy) = (outcome(&mut x), outcome(&mut y));
        assert!(wx ^ wy, "round {round}: exactly one wins ({wx}, {wy})");
    }
    a.stop();
    b.stop();
}

#[test]
fn a_killed_nodes_users_leave_everywhere_and_free_their_names() {
    let redis = RedisServer::start();
    let a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);
    let mut alice = Peer::join(&a.addr, "alice");
    let _dave = Peer::join(&b.addr, "dave");
    who_is(&mut alice, &["alice", "dave"]);
    // SIGKILL: no goodbye; its presence expires (3 s here) and a survivor notices.
    let mut b = b;
    b.child.0.kill().unwrap();
    b.child.0.wait().unwrap();
    let left = alice.expect_where("left", |m| m.get_str("nickname") == Some("dave"));
    assert!(left
        .get_str("reason")
        .is_some_and(|r| r.contains("node b is gone")));
    who_is(&mut alice, &["alice"]);
    // The name is free again, cluster-wide.
    let mut again = Peer::connect(&a.addr);
    again.send(Request::Nickname(SetNickname {
        nickname: "dave".into(),
    }));
    again.expect_where("renamed", |m| m.get_str("to") == Some("dave"));
    a.stop();
}

/// The terminal client behind a balancer without sticky sessions: its node is SIGKILLed, it
/// reconnects through the balancer to another node and comes back as itself (nickname, room)
/// with every message it missed, once; its nickname stays its own after the dead node's
/// names are freed.
#[test]
fn a_terminal_user_whose_node_dies_resumes_on_another_as_itself() {
    let redis = RedisServer::start();
    let a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);
    let balancer = Network::to(&a.addr);
    let (mut carol, out) = chat_client(&balancer.addr.to_string(), &["--nick", "carol"]);
    until("carol is named", || {
        out.any(|l| l.contains("you are now known as carol"))
    });
    let stdin = |c: &mut ChildGuard, line: &str| {
        c.0.stdin
            .as_mut()
            .unwrap()
            .write_all(line.as_bytes())
            .unwrap();
    };
    stdin(&mut carol, "/join games\n");
    until("carol is in #games", || {
        out.any(|l| l.contains("you are carol in #games"))
    });
    // Another user of node a, without a session to take elsewhere: it goes with its node.
    let _erin = Peer::join(&a.addr, "erin");
    let mut dave = Peer::join(&b.addr, "dave");
    dave.send(Request::Join(Join {
        room: "games".into(),
    }));
    stdin(&mut carol, "hello from node a\n");
    heard(&mut dave, "carol", "hello from node a");
    balancer.switch_to(&b.addr);
    kill(a);
    for n in 1..=5 {
        say(&mut dave, &format!("while you were away {n}"));
    }
    common::resumed_with(&out, "dave", "while you were away", 5);
    // Still carol, in #games, on node b now.
    stdin(&mut carol, "back on node b\n");
    heard(&mut dave, "carol", "back on node b");
    // Node a's death is noticed (erin leaves), its names are freed (erin's can be taken)...
    who_is(&mut dave, &["carol", "dave"]);
    let _erin_again = claim_by(&b.addr, "erin", Instant::now() + TIMEOUT);
    // ...but carol's went with her session, and nobody else's are listed.
    who_is(&mut dave, &["carol", "dave", "erin"]);
    let mut eve = Peer::connect(&b.addr);
    let refused = eve.refused(Request::Nickname(SetNickname {
        nickname: "carol".into(),
    }));
    assert_eq!(refused.get_str("code"), Some("nickname-taken"));
    common::quit(&mut carol);
    b.stop();
}

#[test]
fn nodes_keep_serving_through_a_redis_restart_and_resynchronise() {
    through_a_redis_restart(false);
}

/// With room streams (the default with `--redis`), a room message goes through Redis first:
/// during an outage it is held, and reaches every member, the sender's node's too, once
/// Redis is back, once and in order.
#[test]
fn with_room_streams_messages_of_an_outage_reach_everyone_when_redis_is_back() {
    through_a_redis_restart(true);
}

fn through_a_redis_restart(streams: bool) {
    let redis = RedisServer::start();
    let (port, password) = (redis.port, redis.password.clone());
    let extra: &[&str] = if streams {
        &[]
    } else {
        &["--room-streams", "0"]
    };
    let a = node(&redis, "a", extra);
    let b = node(&redis, "b", extra);
    let mut alice = Peer::join(&a.addr, "alice");
    let mut ann = Peer::join(&a.addr, "ann");
    let mut bob = Peer::join(&b.addr, "bob");
    who_is(&mut bob, &["alice", "ann", "bob"]);
    // Both nodes know everyone before Redis goes (else a name can be unknown, not unavailable).
    who_is(&mut alice, &["alice", "ann", "bob"]);
    redis.kill();
    // Without streams, local users are served: a message reaches the sender's own node.
    say(&mut alice, "during the outage");
    if !streams {
        heard(&mut ann, "alice", "during the outage");
    }
    // Cross-node requests are refused, not lost silently.
    // (Until the node notices the outage, a private message may still be echoed; once it
    // has, it is refused.)
    let deadline = Instant::now() + TIMEOUT;
    loop {
        alice.inbox.clear();
        alice.send(Request::Private(SayPrivately {
            to: "bob".into(),
            message: "are you there?".into(),
        }));
        until("an answer to the private message", || {
            alice.pump();
            alice.has("private", |_| true) || alice.has("refused", |_| true)
        });
        if let Some(m) = alice.inbox.iter().find(|m| m.action() == "refused") {
            assert_eq!(m.get_str("code"), Some("cluster-unavailable"));
            break;
        }
        assert!(Instant::now() < deadline, "the outage was never noticed");
    }
    // A room message while node a knows Redis is down: its own members get it now, the
    // other node's when Redis is back, before anything alice says after.
    say(&mut alice, "while redis is down");
    if !streams {
        heard(&mut ann, "alice", "while redis is down");
    }
    // Redis back (empty: no persistence): the nodes write their users again.
    let _redis = RedisServer::start_on(port, &password);
    who_is(&mut bob, &["alice", "ann", "bob"]);
    who_is(&mut alice, &["alice", "ann", "bob"]);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        say(&mut alice, "after the outage");
        bob.pump();
        if bob.has("message", |m| {
            m.get_str("message") == Some("after the outage")
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no cross-node message after Redis came back"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // What bob got from alice, in order: the held message once, before what she said after;
    // the one said before node a noticed the outage, if it was not lost with the broken
    // connection, once and first.
    let said_by_alice: Vec<&str> = bob
        .inbox
        .iter()
        .filter(|m| m.action() == "message" && m.get_str("who") == Some("alice"))
        .filter_map(|m| m.get_str("message"))
        .collect();
    let at = |text: &str| said_by_alice.iter().position(|t| *t == text);
    let count = |text: &str| said_by_alice.iter().filter(|t| **t == text).count();
    let held = at("while redis is down").expect("the message held while Redis was down");
    assert_eq!(count("while redis is down"), 1, "{said_by_alice:?}");
    assert!(held < at("after the outage").unwrap(), "{said_by_alice:?}");
    if let Some(before) = at("during the outage") {
        assert_eq!(count("during the outage"), 1, "{said_by_alice:?}");
        assert!(before < held, "{said_by_alice:?}");
    }
    if streams {
        // Held, then delivered on her own node too: the same as bob got, once, in the same
        // order (one order for the room), before what she said after.
        until("ann hears what alice said after the outage", || {
            ann.pump();
            ann.has("message", |m| {
                m.get_str("message") == Some("after the outage")
            })
        });
        let ann_got: Vec<&str> = ann
            .inbox
            .iter()
            .filter(|m| m.action() == "message" && m.get_str("who") == Some("alice"))
            .filter_map(|m| m.get_str("message"))
            .filter(|t| *t != "after the outage")
            .collect();
        let bob_got: Vec<&str> = said_by_alice
            .iter()
            .copied()
            .filter(|t| *t != "after the outage")
            .collect();
        assert_eq!(ann_got, bob_got);
    }
    // Names are claimed again: still unique.
    bob.send(Request::Nickname(SetNickname {
        nickname: "alice".into(),
    }));
    assert_eq!(
        bob.expect("refused").get_str("code"),
        Some("nickname-taken")
    );
    a.stop();
    b.stop();
}

#[test]
fn podsixnet_and_terminal_clients_on_different_nodes_talk() {
    let redis = RedisServer::start();
    let a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);
    let (host, port) = a.addr.rsplit_once(':').unwrap();
    let mut py = ChildGuard(
        std::process::Command::new(podsixnet_python())
            .current_dir(podsixnet_scripts())
            .args([
                "chat_peer.py",
                "json",
                host,
                port,
                "pyuser",
                "hello from PodSixNet",
                "term",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let py_out = Lines::collect(py.0.stdout.take().unwrap());
    let py_err = Lines::collect(py.0.stderr.take().unwrap());
    let (mut term, term_out) = chat_client(&b.addr, &["--nick", "term"]);
    // The terminal user speaks once the PodSixNet user is in (its players list shows both).
    until("the PodSixNet user on the terminal", || {
        term_out.any(|l| l.contains("pyuser"))
    });
    term.0
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"hello from the terminal\n")
        .unwrap();
    let status = py.wait_with(|| {});
    py_out.finish();
    py_err.finish();
    assert!(status.success(), "{:?} {:?}", py_out.all(), py_err.all());
    assert!(py_out.any(|l| l.contains("hello from the terminal")));
    until("PodSixNet's message on the terminal", || {
        term_out.any(|l| l.contains("<pyuser> hello from PodSixNet"))
    });
    common::quit(&mut term);
    a.stop();
    b.stop();
}

/// The node number a node printed when it joined: `chat-server node ID joins the cluster at
/// URL (node number N)`. New at every start: the high bits of its channels' ids.
fn incarnation(n: &ChatServer) -> u64 {
    n.stdout
        .all()
        .iter()
        .find_map(|l| {
            let rest = l.split_once("(node number ")?.1;
            rest.split_once(')')?.0.parse().ok()
        })
        .expect("the node prints its node number")
}

/// The channel id the server announced to `p` (`connected`).
fn announced_id(p: &Peer) -> u64 {
    p.inbox
        .iter()
        .find(|m| m.action() == CONNECTED)
        .and_then(|m| m.get("id").and_then(|v| v.as_u64()))
        .expect("the server announces ids")
}

/// SIGKILL: no goodbye.
fn kill(n: ChatServer) {
    let mut n = n;
    n.child.0.kill().unwrap();
    n.child.0.wait().unwrap();
}

/// A new user on `addr` takes `nick`, retried (the name may still be held) until `deadline`.
fn claim_by(addr: &str, nick: &str, deadline: Instant) -> Peer {
    loop {
        let mut p = Peer::connect(addr);
        p.send(Request::Nickname(SetNickname {
            nickname: nick.into(),
        }));
        let deadline_one = Instant::now() + TIMEOUT;
        loop {
            p.pump();
            if p.has("renamed", |m| m.get_str("to") == Some(nick)) {
                return p;
            }
            if let Some(m) = p.inbox.iter().find(|m| m.action() == "refused") {
                assert_eq!(m.get_str("code"), Some("nickname-taken"));
                break;
            }
            assert!(Instant::now() < deadline_one, "no answer to the claim");
        }
        assert!(
            Instant::now() < deadline,
            "{nick:?} was not free again in time"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_second_node_with_a_live_nodes_id_is_refused_and_the_first_keeps_serving() {
    let redis = RedisServer::start();
    let a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);
    let mut alice = Peer::join(&a.addr, "alice");
    let mut bob = Peer::join(&b.addr, "bob");
    who_is(&mut alice, &["alice", "bob"]);
    // The same id again, as `node` starts it: it refuses to start and never listens.
    let url = redis.url();
    let mut dup = ChildGuard(
        std::process::Command::new(common::SERVER)
            .args([
                "127.0.0.1:0",
                "--redis",
                &url,
                "--node-id",
                "a",
                "--presence-ttl",
                "3",
                "--rate-limit",
                "0",
            ])
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = Lines::collect(dup.0.stdout.take().unwrap());
    let err = Lines::collect(dup.0.stderr.take().unwrap());
    let status = dup.wait_with(|| {});
    out.finish();
    err.finish();
    assert!(!status.success(), "a duplicate node id must not start");
    assert!(
        err.any(|l| l.contains("node id \"a\" is already in use by a live chat-server")),
        "{:?}",
        err.all()
    );
    assert!(!out.any(|l| l.contains("listening")), "{:?}", out.all());
    assert!(!out.any(|l| l.contains(&redis.password)));
    assert!(!err.any(|l| l.contains(&redis.password)));
    // The first one keeps serving, in the cluster.
    say(&mut alice, "still here");
    heard(&mut bob, "alice", "still here");
    bob.send(Request::Private(SayPrivately {
        to: "alice".into(),
        message: "and me".into(),
    }));
    alice.expect_where("private", |m| m.get_str("message") == Some("and me"));
    who_is(&mut bob, &["alice", "bob"]);
    // A fresh name claimed on b is seen as taken on a: one cluster, one set of names.
    let mut carol = Peer::join(&b.addr, "carol");
    who_is(&mut alice, &["alice", "bob", "carol"]);
    let mut other = Peer::connect(&a.addr);
    other.send(Request::Nickname(SetNickname {
        nickname: "carol".into(),
    }));
    assert_eq!(
        other.expect("refused").get_str("code"),
        Some("nickname-taken")
    );
    carol.sync();
    let (_, a_err) = a.stop();
    assert!(!a_err.any(|l| l.contains("fenced")), "{:?}", a_err.all());
    b.stop();
}

#[test]
fn a_node_restarted_after_sigkill_drops_its_old_users_and_frees_their_names() {
    let redis = RedisServer::start();
    let a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);
    let mut alice = Peer::join(&a.addr, "alice");
    let _dave = Peer::join(&b.addr, "dave");
    let _erin = Peer::join(&b.addr, "erin");
    who_is(&mut alice, &["alice", "dave", "erin"]);
    let old = incarnation(&b);
    kill(b);
    // A supervisor restarts it with the same id 1 s later.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let b = node(&redis, "b", &[]);
    assert_ne!(incarnation(&b), old);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let got = who(&mut alice);
        if got == ["alice"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old process's users are still listed: {got:?}"
        );
        alice.pump();
    }
    let left = alice.expect_where("left", |m| m.get_str("nickname") == Some("dave"));
    assert!(left.get_str("reason").is_some_and(|r| r.contains("node b")));
    // Their names are free again, on either node.
    let mut dave = claim_by(&a.addr, "dave", deadline);
    let mut erin = claim_by(&b.addr, "erin", deadline);
    who_is(&mut alice, &["alice", "dave", "erin"]);
    who_is(&mut erin, &["alice", "dave", "erin"]);
    say(&mut erin, "new erin");
    heard(&mut dave, "erin", "new erin");
    a.stop();
    b.stop();
}

#[test]
fn an_old_incarnations_channel_id_never_names_the_new_ones_user() {
    let redis = RedisServer::start();
    let a = node(&redis, "a", &["--op-password-env", "CHAT_OP"]);
    let b = node(&redis, "b", &[]);
    let mut alice = Peer::join(&a.addr, "alice");
    // The first channel on b.
    let dave = Peer::join(&b.addr, "dave");
    who_is(&mut alice, &["alice", "dave"]);
    let old = incarnation(&b);
    let old_id = announced_id(&dave);
    kill(b);
    drop(dave);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let b = node(&redis, "b", &[]);
    assert_ne!(incarnation(&b), old, "a restart is a new node number");
    who_is(&mut alice, &["alice"]);
    // A new user takes the same name and, the first channel again, the same local count: its
    // id differs in the node bits, so nothing addressed to the old one (e.g. in flight across
    // the restart) can reach it. The adapter contract suite proves stale ids reach nobody.
    let deadline = Instant::now() + TIMEOUT;
    let mut dave = claim_by(&b.addr, "dave", deadline);
    let new_id = announced_id(&dave);
    let count = |id: u64| id & ((1 << netlib::NODE_SHIFT) - 1);
    assert_eq!(count(new_id), count(old_id), "the same local channel count");
    assert_ne!(new_id, old_id);
    who_is(&mut alice, &["alice", "dave"]);
    // Notices about the new dave carry its new id, and a private and a kick reach it.
    alice.send(Request::Private(SayPrivately {
        to: "dave".into(),
        message: "fresh private".into(),
    }));
    dave.expect_where("private", |m| m.get_str("message") == Some("fresh private"));
    dave.sync();
    alice.send(Request::Op(Op {
        password: "s3cret".into(),
    }));
    alice.expect("op");
    alice.send(Request::Kick(Kick {
        nickname: "dave".into(),
        reason: Some("now for real".into()),
    }));
    dave.expect("kicked");
    // The notice names the new id (the old one's left when its node died).
    let left = alice.expect_where("left", |m| {
        m.get_str("reason")
            .is_some_and(|r| r.contains("kicked by alice"))
    });
    assert_eq!(left.get_str("nickname"), Some("dave"));
    assert_eq!(left.get("id").and_then(|v| v.as_u64()), Some(new_id));
    who_is(&mut alice, &["alice"]);
    a.stop();
    b.stop();
}

#[test]
fn a_node_fenced_out_of_the_cluster_stops_and_says_why() {
    let redis = RedisServer::start();
    let a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);
    let mut alice = Peer::join(&a.addr, "alice");
    let _bob = Peer::join(&b.addr, "bob");
    who_is(&mut alice, &["alice", "bob"]);
    // Another process takes b's node number (as after a stall past its presence TTL): b's next
    // refresh finds it, and b stops rather than serve as a ghost. The key lasts until b is
    // gone (a shorter one could expire before a slow b looks, and b would take it back).
    let number = incarnation(&b);
    let key = format!("chat:node:{number}");
    let mut con = redis.connection();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("another-process")
        .arg("PX")
        .arg(60_000)
        .query(&mut con)
        .unwrap();
    let mut b = b;
    let status = b.child.wait_with(|| {});
    // That other process goes away too.
    let _: () = redis::cmd("DEL").arg(&key).query(&mut con).unwrap();
    assert_eq!(status.code(), Some(1), "{status}");
    b.stderr.finish();
    assert!(
        b.stderr
            .any(|l| l.contains("chat-server: fenced out of the cluster")),
        "{:?}",
        b.stderr.all()
    );
    // The others see its users leave once that process's key is gone too (b is reaped).
    let left = alice.expect_where("left", |m| m.get_str("nickname") == Some("bob"));
    assert!(left.get_str("reason").is_some_and(|r| r.contains("node b")));
    who_is(&mut alice, &["alice"]);
    a.stop();
}
