//! End-to-end tests: the real `chat-server` process on a free port, driven by several clients
//! (netlib clients, raw sockets, the real `chat-client` binary, and PodSixNet's Python client).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use chat::protocol::{Join, Kick, Op, Quit, Request, Rooms, Say, SayPrivately, SetNickname, Who};
use common::{chat_client, now_ms, wire, ChatServer, Lines, Network, Peer, SERVER};
use netlib::protocol::{CONNECTED, DISCONNECTED};
use netlib::{ClientConfig, Codec, Framing, Message};
use netlib_tests::{podsixnet_python, podsixnet_scripts, until, ChildGuard, RawPeer};
use serde_json::{json, Value};

#[test]
fn messages_reach_the_room_with_the_servers_who_and_time() {
    let server = ChatServer::start(&[], &[]);
    let mut alice = Peer::join(&server.addr, "alice");
    let mut bob = Peer::join(&server.addr, "bob");
    alice.expect_where("players", |m| {
        m.get("players") == Some(&json!(["alice", "bob"]))
    });

    let before = now_ms();
    alice.send(json!({"action": "message", "message": "hi all", "who": "mallory", "time": 1}));
    for p in [&mut alice, &mut bob] {
        let m = p.expect("message");
        assert_eq!(m.get_str("message"), Some("hi all"));
        assert_eq!(
            m.get_str("who"),
            Some("alice"),
            "the client cannot choose who"
        );
        assert_eq!(m.get_str("room"), Some("lobby"));
        let t = m.get("time").and_then(Value::as_u64).unwrap();
        assert!(
            t >= before - 60_000 && t <= now_ms() + 60_000,
            "server clock in ms, not the client's 1: {t}"
        );
    }
    server.stop();
}

#[test]
fn private_messages_go_to_one_nickname_only() {
    let server = ChatServer::start(&[], &[]);
    let mut alice = Peer::join(&server.addr, "alice");
    let mut bob = Peer::join(&server.addr, "Bob");
    let mut carol = Peer::join(&server.addr, "carol");
    alice.send(Request::Private(SayPrivately {
        to: "bob".into(),
        message: "psst".into(),
    }));
    for p in [&mut bob, &mut alice] {
        let m = p.expect("private");
        assert_eq!(m.get_str("who"), Some("alice"));
        assert_eq!(
            m.get_str("to"),
            Some("Bob"),
            "nicknames match case-insensitively"
        );
        assert_eq!(m.get_str("message"), Some("psst"));
        assert!(m.get("time").unwrap().is_u64());
    }
    carol.sync();
    assert!(!carol.has("private", |_| true));
    let r = alice.refused(Request::Private(SayPrivately {
        to: "nobody".into(),
        message: "hello?".into(),
    }));
    assert_eq!(r.get_str("code"), Some("unknown-nickname"));
    assert_eq!(r.get_str("request"), Some("private"));
    server.stop();
}

#[test]
fn rooms_scope_messages_and_player_lists() {
    let server = ChatServer::start(&[], &[]);
    let mut alice = Peer::join(&server.addr, "alice");
    let mut bob = Peer::join(&server.addr, "bob");
    alice.send(Request::Join(Join {
        room: "games".into(),
    }));
    let w = alice.expect_where("welcome", |m| m.get_str("room") == Some("games"));
    assert_eq!(w.get("members"), Some(&json!(1)));
    let left = bob.expect("left");
    assert_eq!(left.get_str("nickname"), Some("alice"));
    assert_eq!(left.get_str("reason"), Some("went to games"));
    bob.expect_where("players", |m| m.get("players") == Some(&json!(["bob"])));

    alice.send(Request::Message(Say {
        message: "in games".into(),
    }));
    alice.expect_where("message", |m| m.get_str("room") == Some("games"));
    bob.send(Request::Message(Say {
        message: "in lobby".into(),
    }));
    bob.expect("message");
    bob.sync();
    assert!(
        !bob.has("message", |m| m.get_str("message") == Some("in games")),
        "rooms are isolated"
    );
    alice.sync();
    assert!(!alice.has("message", |m| m.get_str("message") == Some("in lobby")));

    alice.send(Request::Rooms(Rooms::default()));
    let rooms = alice.expect("rooms");
    assert_eq!(
        rooms.get("rooms"),
        Some(&json!([{"name": "games", "members": 1}, {"name": "lobby", "members": 1}]))
    );
    let who = alice.sync();
    assert_eq!(
        who.get("users"),
        Some(
            &json!([{"nickname": "alice", "room": "games"}, {"nickname": "bob", "room": "lobby"}])
        )
    );
    alice.send(Request::Who(Who {
        room: Some("lobby".into()),
        page: None,
    }));
    assert_eq!(
        alice.expect("who").get("users"),
        Some(&json!([{"nickname": "bob", "room": "lobby"}]))
    );

    alice.send(Request::Part);
    alice.expect_where("welcome", |m| m.get_str("room") == Some("lobby"));
    assert_eq!(bob.expect("joined").get_str("nickname"), Some("alice"));
    assert_eq!(
        alice.refused(Request::Part).get_str("code"),
        Some("not-in-a-room")
    );
    assert_eq!(
        alice
            .refused(Request::Join(Join {
                room: "lobby".into()
            }))
            .get_str("code"),
        Some("already-in-room")
    );
    assert_eq!(
        alice
            .refused(Request::Join(Join {
                room: "two words".into()
            }))
            .get_str("code"),
        Some("bad-name")
    );
    server.stop();
}

#[test]
fn join_leave_rename_and_quit_notices() {
    let server = ChatServer::start(&[], &[]);
    let mut alice = Peer::join(&server.addr, "alice");
    let mut carol = Peer::connect(&server.addr);
    assert_eq!(
        alice.expect("joined").get_str("nickname"),
        Some("anonymous")
    );
    alice.expect_where("players", |m| {
        m.get("players") == Some(&json!(["alice", "anonymous"]))
    });
    carol.send(Request::Nickname(SetNickname {
        nickname: "carol".into(),
    }));
    let r = alice.expect("renamed");
    assert_eq!(
        (r.get_str("from"), r.get_str("to")),
        (Some("anonymous"), Some("carol"))
    );
    alice.expect_where("players", |m| {
        m.get("players") == Some(&json!(["alice", "carol"]))
    });
    carol.send(Request::Quit(Quit {
        reason: Some("dinner".into()),
    }));
    carol.expect(DISCONNECTED);
    let left = alice.expect("left");
    assert_eq!(left.get_str("nickname"), Some("carol"));
    assert_eq!(left.get_str("reason"), Some("quit: dinner"));
    alice.expect_where("players", |m| m.get("players") == Some(&json!(["alice"])));
    // The nickname is free again.
    let _carol2 = Peer::join(&server.addr, "carol");
    server.stop();
}

#[test]
fn kick_needs_an_operator_who_knows_the_password() {
    let server = ChatServer::start(
        &["--op-password-env", "CHAT_TEST_OP"],
        &[("CHAT_TEST_OP", "sesame")],
    );
    let mut alice = Peer::join(&server.addr, "alice");
    let mut bob = Peer::join(&server.addr, "bob");
    let mut carol = Peer::join(&server.addr, "carol");
    let r = bob.refused(Request::Kick(Kick {
        nickname: "alice".into(),
        reason: Some("spam".into()),
    }));
    assert_eq!(r.get_str("code"), Some("not-operator"));
    let r = bob.refused(Request::Op(Op {
        password: "guess".into(),
    }));
    assert_eq!(r.get_str("code"), Some("bad-password"));
    bob.send(Request::Op(Op {
        password: "sesame".into(),
    }));
    assert_eq!(bob.expect("op").get("granted"), Some(&json!(true)));
    let r = bob.refused(Request::Kick(Kick {
        nickname: "zed".into(),
        reason: None,
    }));
    assert_eq!(r.get_str("code"), Some("unknown-nickname"));
    bob.send(Request::Kick(Kick {
        nickname: "ALICE".into(),
        reason: Some("spam".into()),
    }));
    let k = alice.expect("kicked");
    assert_eq!(
        (k.get_str("by"), k.get_str("reason")),
        (Some("bob"), Some("spam"))
    );
    alice.expect(DISCONNECTED);
    let left = carol.expect_where("left", |m| m.get_str("nickname") == Some("alice"));
    assert_eq!(left.get_str("reason"), Some("kicked by bob: spam"));
    let (_, stderr) = server.stop();
    assert!(
        stderr.any(|l| l.contains("bob kicked alice") && l.contains("spam")),
        "{:?}",
        stderr.all()
    );
    assert!(
        !stderr.any(|l| l.contains("sesame")),
        "the password is never logged"
    );

    // Without a password nobody can become an operator.
    let server = ChatServer::start(&[], &[]);
    let mut dave = Peer::join(&server.addr, "dave");
    assert_eq!(
        dave.refused(Request::Op(Op {
            password: "".into()
        }))
        .get_str("code"),
        Some("op-disabled")
    );
    server.stop();
}

#[test]
fn every_bad_request_gets_a_clear_refusal_and_nothing_is_relayed() {
    let server = ChatServer::start(&["--rate-limit", "0"], &[("RUST_LOG", "debug")]); // validation alone (tests/abuse.rs has the limits); refusals log at debug
    let mut alice = Peer::join(&server.addr, "alice");
    let mut bob = Peer::join(&server.addr, "bob");
    let cases = [
        (
            wire(Request::Message(Say {
                message: "x".repeat(2001),
            })),
            "message",
            "message-too-long",
        ),
        (
            wire(Request::Message(Say { message: "".into() })),
            "message",
            "empty-message",
        ),
        (
            wire(Request::Nickname(SetNickname {
                nickname: "bob".into(),
            })),
            "nickname",
            "nickname-taken",
        ),
        (
            wire(Request::Nickname(SetNickname {
                nickname: "BOB".into(),
            })),
            "nickname",
            "nickname-taken",
        ),
        (
            wire(Request::Nickname(SetNickname {
                nickname: "".into(),
            })),
            "nickname",
            "empty-name",
        ),
        (
            wire(Request::Nickname(SetNickname {
                nickname: "n".repeat(33),
            })),
            "nickname",
            "name-too-long",
        ),
        (
            wire(Request::Nickname(SetNickname {
                nickname: "two words".into(),
            })),
            "nickname",
            "bad-name",
        ),
        (
            wire(Request::Nickname(SetNickname {
                nickname: "bell\u{7}".into(),
            })),
            "nickname",
            "bad-name",
        ),
        (
            wire(Request::Nickname(SetNickname {
                nickname: "anonymous".into(),
            })),
            "nickname",
            "nickname-reserved",
        ),
        (
            wire(Request::Private(SayPrivately {
                to: "ghost".into(),
                message: "boo".into(),
            })),
            "private",
            "unknown-nickname",
        ),
        (json!({"action": "dance"}), "dance", "unknown-action"),
        (json!({"action": "message"}), "message", "bad-request"),
        (
            json!({"action": "message", "message": 5}),
            "message",
            "bad-request",
        ),
        (
            json!({"action": "private", "to": ["bob"], "message": "x"}),
            "private",
            "bad-request",
        ),
        (
            wire(Request::Kick(Kick {
                nickname: "bob".into(),
                reason: None,
            })),
            "kick",
            "not-operator",
        ),
    ];
    for (request, action, code) in cases {
        let r = alice.refused(request.clone());
        assert_eq!(r.get_str("request"), Some(action), "{request}");
        assert_eq!(r.get_str("code"), Some(code), "{request} -> {r:?}");
        assert!(!r.get_str("text").unwrap().is_empty());
        alice.sync(); // the connection is still usable
    }
    // A frame that is not even JSON.
    let mut raw = RawPeer::connect(server.addr.parse().unwrap(), Framing::Terminator);
    raw.write(b"{oops\0---\0");
    let r = raw.recv_action("refused");
    assert_eq!(r.get_str("code"), Some("bad-frame"));
    raw.send(&Request::Rooms(Rooms::default()));
    raw.recv_action("rooms");

    bob.sync();
    let relayed: Vec<&Message> = bob
        .inbox
        .iter()
        .filter(|m| matches!(m.action(), "message" | "private" | "renamed" | "left"))
        .collect();
    assert!(relayed.is_empty(), "nothing was relayed: {relayed:?}");
    let (_, stderr) = server.stop();
    for code in [
        "message-too-long",
        "empty-message",
        "nickname-taken",
        "unknown-action",
        "bad-request",
        "bad-frame",
    ] {
        assert!(
            stderr.any(|l| l.contains("refused") && l.contains(code)),
            "server logs {code}"
        );
    }
}

#[test]
fn podsixnets_own_chat_client_joins_and_chats_in_both_codecs() {
    for (codec, mode) in [(Codec::Json, "json"), (Codec::Rencode, "rencode")] {
        let server = ChatServer::start(&["--codec", mode], &[]);
        let mut alice =
            Peer::join_with(&server.addr, "alice", ClientConfig::default().codec(codec));
        let (host, port) = server.addr.rsplit_once(':').unwrap();
        let mut py = ChildGuard(
            Command::new(podsixnet_python())
                .current_dir(podsixnet_scripts())
                .args([
                    "chat_client.py",
                    mode,
                    host,
                    port,
                    "pyuser",
                    "hello from PodSixNet",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let out = Lines::collect(py.0.stdout.take().unwrap());
        let err = Lines::collect(py.0.stderr.take().unwrap());
        let status = py.wait_with(|| {});
        out.finish();
        err.finish();
        assert!(
            status.success(),
            "{mode}: PodSixNet chat client: {status}\n{:?}\n{:?}",
            out.all(),
            err.all()
        );
        let m = alice.expect_where("message", |m| m.get_str("who") == Some("pyuser"));
        assert_eq!(m.get_str("message"), Some("hello from PodSixNet"));
        assert!(out.any(|l| l.contains("\"players\"") && l.contains("pyuser")));
        server.stop();
    }
}

#[test]
fn the_terminal_client_speaks_rencode_too() {
    let server = ChatServer::start(&["--codec", "rencode"], &[]);
    let mut watcher = Peer::join_with(
        &server.addr,
        "watcher",
        ClientConfig::default().codec(Codec::Rencode),
    );
    let (mut client, out) = chat_client(&server.addr, &["--codec", "rencode", "--nick", "renc"]);
    client
        .0
        .stdin
        .take()
        .unwrap()
        .write_all("h\u{e9}llo\n/quit\n".as_bytes())
        .unwrap();
    let status = client.wait_with(|| {});
    out.finish();
    assert!(status.success(), "{:?}", out.all());
    let m = watcher.expect("message");
    assert_eq!(
        (m.get_str("who"), m.get_str("message")),
        (Some("renc"), Some("h\u{e9}llo"))
    );
    assert!(
        out.any(|l| l.contains("<renc> h\u{e9}llo")),
        "{:?}",
        out.all()
    );
    server.stop();
}

#[test]
fn the_terminal_client_can_be_scripted() {
    let server = ChatServer::start(&[], &[]);
    let mut watcher = Peer::join(&server.addr, "watcher");
    let (mut client, out) = chat_client(&server.addr, &[]);
    client
        .0
        .stdin
        .take()
        .unwrap()
        .write_all(b"alice\nhello\n/quit see you\n")
        .unwrap();
    let status = client.wait_with(|| {});
    out.finish();
    assert!(status.success(), "{status}: {:?}", out.all());
    let m = watcher.expect("message");
    assert_eq!(
        (m.get_str("who"), m.get_str("message")),
        (Some("alice"), Some("hello"))
    );
    let left = watcher.expect_where("left", |m| m.get_str("nickname") == Some("alice"));
    assert_eq!(left.get_str("reason"), Some("quit: see you"));
    let lines = out.all();
    assert!(
        lines.iter().any(|l| l.contains("Nickname:")),
        "asks for a nickname: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('[') && l.contains("] <alice> hello")),
        "{lines:?}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("* bye"), "{lines:?}");

    // End of input without /quit also leaves cleanly, after sending what was typed.
    let (mut client, out) = chat_client(&server.addr, &["--nick", "bob"]);
    client
        .0
        .stdin
        .take()
        .unwrap()
        .write_all(b"/join side\nlast words\n")
        .unwrap();
    let status = client.wait_with(|| {});
    out.finish();
    assert!(status.success(), "{status}: {:?}", out.all());
    assert!(
        out.any(|l| l.contains("<bob> last words")),
        "{:?}",
        out.all()
    );
    assert!(out.any(|l| l.contains("end of input")));
    server.stop();
}

#[test]
fn the_terminal_client_strips_escape_sequences_and_prints_refusals() {
    let server = ChatServer::start(&[], &[]);
    let (mut client, out) = chat_client(&server.addr, &["--nick", "carol"]);
    let mut stdin = client.0.stdin.take().unwrap();
    // Carol is in before mallory joins, so that mallory's messages reach her.
    until("carol is in", || {
        out.any(|l| l.contains("you are now known as carol"))
    });
    let mut mallory = Peer::connect(&server.addr);
    mallory.send(Request::Nickname(SetNickname {
        nickname: "mal\u{1b}[31m".into(),
    }));
    mallory.expect("refused");
    mallory.send(Request::Message(Say {
        message: "\u{1b}[2J\u{1b}]0;pwned\u{7}evil\u{202e} text\u{9b}31m\r\n".into(),
    }));
    until("carol's client prints the message", || {
        out.any(|l| l.contains("evil"))
    });
    let line = out.all().into_iter().find(|l| l.contains("evil")).unwrap();
    assert!(line.ends_with("<anonymous> evil text"), "{line:?}");
    for bad in ['\u{1b}', '\u{7}', '\u{202e}', '\u{9b}', '\r'] {
        assert!(!line.contains(bad), "{line:?} holds {bad:?}");
    }
    stdin.write_all(b"/nick two words\n").unwrap();
    until("the refusal is printed", || {
        out.any(|l| l.contains("! nickname refused:"))
    });
    drop(stdin);
    let status = client.wait_with(|| {});
    out.finish();
    assert!(status.success());
    server.stop();
}

#[test]
fn server_stops_cleanly_on_sigterm_and_clients_exit_with_a_message() {
    let server = ChatServer::start(&[], &[]);
    let (mut client, out) = chat_client(&server.addr, &["--nick", "dora"]);
    let _stdin = client.0.stdin.take().unwrap(); // kept open: the client waits for input
    until("dora is connected", || {
        out.any(|l| l.contains("you are now known as dora"))
    });
    let (stdout, stderr) = server.stop();
    assert!(stdout.any(|l| l == "chat-server stopped"));
    assert!(
        stderr.any(|l| l.contains("dora") && l.contains("disconnected")),
        "{:?}",
        stderr.all()
    );
    let status = client.wait_with(|| {});
    out.finish();
    assert!(status.success(), "{status}");
    assert!(out.any(|l| l.contains("* disconnected")), "{:?}", out.all());
}

#[test]
fn the_client_reports_a_refused_connection() {
    let port = netlib_tests::refusing_port();
    let (mut client, out) = chat_client(&format!("127.0.0.1:{}", port.port), &["--nick", "x"]);
    let _stdin = client.0.stdin.take().unwrap();
    let status = client.wait_with(|| {});
    out.finish();
    assert_eq!(status.code(), Some(1));
    assert!(
        out.any(|l| l.contains("Connection refused")),
        "{:?}",
        out.all()
    );
}

#[test]
fn a_room_of_ten_thousand_fills_and_a_message_reaches_everyone() {
    const N: usize = 10_000;
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(
        limit as usize > N + 100,
        "this test needs {N} sockets; the limit is {limit}"
    );
    // All from 127.0.0.1: the per-address limits (tests/addresses.rs) are turned off.
    let server = ChatServer::start(
        &[
            "--max-connections",
            "10000",
            "--max-connections-per-address",
            "0",
            "--connect-rate-per-address",
            "0",
        ],
        &[],
    );
    let addr = server.addr.parse().unwrap();
    let mut idle: Vec<RawPeer> = (0..N - 1)
        .map(|_| RawPeer::connect(addr, Framing::Terminator))
        .collect();
    let mut sender = Peer::join(&server.addr, "sender");
    sender.send(Request::Rooms(Rooms::default()));
    let rooms = sender.expect("rooms");
    assert_eq!(
        rooms.get("rooms"),
        Some(&json!([{"name": "lobby", "members": N}]))
    );
    sender.send(Request::Message(Say {
        message: "hello, everyone".into(),
    }));
    for (i, p) in idle.iter_mut().enumerate() {
        let m = p.recv_action("message");
        assert_eq!(m.get_str("message"), Some("hello, everyone"), "member {i}");
    }
    sender.expect("message");
    // Members of a room this large get no player lists; they ask with who.
    assert!(!sender.has("players", |_| true));
    server.stop();
}

#[test]
fn out_of_file_descriptors_the_server_waits_and_accepts_later_without_spinning() {
    let mut cmd = Command::new(SERVER);
    cmd.arg("127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ChildGuard(cmd.spawn().unwrap());
    // 40 descriptors, soft and hard, set on the running server with prlimit(2) (the workspace
    // forbids the unsafe code a `pre_exec` hook needs). The server raises its soft limit to the
    // hard one when it starts, so the limit is 40 whether this runs before or after that, and
    // it opens a handful of descriptors before it listens.
    let pid = i32::try_from(child.0.id()).unwrap();
    rlimit::prlimit(pid, rlimit::Resource::NOFILE, Some((40, 40)), None).unwrap();
    let stdout = Lines::collect(child.0.stdout.take().unwrap());
    let stderr = Lines::collect(child.0.stderr.take().unwrap());
    let mut addr = String::new();
    until("the server's address", || {
        if let Some(l) = stdout
            .all()
            .iter()
            .find(|l| l.starts_with("chat-server listening on "))
        {
            addr = l.trim_start_matches("chat-server listening on ").to_owned();
        }
        !addr.is_empty()
    });
    let mut peer = Peer::join(&addr, "keeper");
    let sock_addr: std::net::SocketAddr = addr.parse().unwrap();
    // Each says something first, as PodSixNet clients do: a server with sessions (the chat's
    // default) runs a connection's `connected` hook at its first frame, or after
    // `netlib::HELLO_WAIT` for a silent one.
    let mut raws: Vec<RawPeer> = (0..60)
        .map(|_| {
            let mut raw = RawPeer::connect(sock_addr, Framing::Terminator);
            raw.send(&serde_json::json!({"action": "who"}));
            raw
        })
        .collect();
    until("the server runs out of file descriptors", || {
        stderr.any(|l| l.contains("Too many open files"))
    });
    peer.send(Request::Rooms(Rooms::default()));
    let accepted = peer.expect("rooms").get("rooms").unwrap()[0]["members"]
        .as_u64()
        .unwrap() as usize;
    assert!(accepted > 1 && accepted < 61, "{accepted}");
    // The first accepted - 1 raw sockets are in (accept order is connect order); free ten.
    let first_waiting = accepted - 1;
    raws.drain(..10);
    let waiting = &mut raws[first_waiting - 10];
    assert_eq!(
        waiting.recv().action(),
        CONNECTED,
        "accepted once descriptors were free"
    );
    let errors = stderr
        .all()
        .iter()
        .filter(|l| l.contains("accept on"))
        .count();
    assert!(
        errors < 200,
        "accept errors are retried every 100 ms, not in a busy loop: {errors} log lines"
    );
    drop(child);
}

#[test]
fn membership_traffic_shrinks_as_rooms_grow() {
    // Full lists up to 2 members, compact deltas up to 4, nothing above.
    let server = ChatServer::start(&["--full-list-max", "2", "--notice-max", "4"], &[]);
    let mut a = Peer::join(&server.addr, "a");
    let mut b = Peer::join(&server.addr, "b");
    // Two members: PodSixNet's behaviour, a players list and a notice.
    a.expect_where("players", |m| m.get("players") == Some(&json!(["a", "b"])));
    assert_eq!(a.expect("joined").get_str("nickname"), Some("anonymous"));
    // Three and four members: one `members` delta, no list, no per-join notice.
    let mut c = Peer::connect(&server.addr);
    let d = a.expect("members");
    assert_eq!(
        (d.get("count"), d.get("joined")),
        (Some(&json!(3)), Some(&json!(["anonymous"])))
    );
    assert!(
        c.expect("players")
            .get("players")
            .unwrap()
            .as_array()
            .unwrap()
            .len()
            == 3,
        "a newcomer still gets the list"
    );
    c.send(Request::Nickname(SetNickname {
        nickname: "c".into(),
    }));
    let d = b.expect_where("members", |m| {
        m.get("renamed").is_some_and(|r| r != &json!([]))
    });
    assert_eq!(d.get("renamed"), Some(&json!([["anonymous", "c"]])));
    let _d4 = Peer::join(&server.addr, "d");
    a.expect_where("members", |m| m.get("count") == Some(&json!(4)));
    // Five members: nothing at all; the newcomer is told the count and can ask with who.
    for p in [&mut a, &mut b] {
        p.sync();
        p.inbox.clear();
    }
    let mut e = Peer::connect(&server.addr);
    assert_eq!(
        e.inbox.iter().filter(|m| m.action() == "players").count(),
        0
    );
    e.send(Request::Who(Who {
        room: Some("lobby".into()),
        page: None,
    }));
    assert_eq!(
        e.expect("who")
            .get("users")
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        5
    );
    for p in [&mut a, &mut b] {
        p.sync();
        let traffic: Vec<&Message> = p
            .inbox
            .iter()
            .filter(|m| matches!(m.action(), "players" | "members" | "joined"))
            .collect();
        assert!(
            traffic.is_empty(),
            "no membership traffic in a room of 5: {traffic:?}"
        );
    }
    // Messages still reach everyone at every size.
    e.send(Request::Message(Say {
        message: "hi all".into(),
    }));
    for p in [&mut a, &mut b, &mut c, &mut e] {
        assert_eq!(p.expect("message").get_str("message"), Some("hi all"));
    }
    server.stop();
}

#[test]
fn membership_updates_are_coalesced_to_one_list_per_pump() {
    let server = ChatServer::start(&[], &[]);
    let mut watcher = Peer::join(&server.addr, "watcher");
    let mut x = RawPeer::connect(server.addr.parse().unwrap(), Framing::Terminator);
    x.recv_action("welcome");
    watcher.expect_where("players", |m| {
        m.get("players").unwrap().as_array().unwrap().len() == 2
    });
    watcher.sync();
    watcher.inbox.clear();
    // Three renames in one write: handled in one pump.
    let mut burst = Vec::new();
    for n in ["x1", "x2", "x3"] {
        burst.extend(
            netlib::Codec::Json
                .encode(
                    Framing::Terminator,
                    &Request::Nickname(SetNickname { nickname: n.into() }),
                    1 << 20,
                )
                .unwrap(),
        );
    }
    x.write(&burst);
    watcher.expect_where("renamed", |m| m.get_str("to") == Some("x3"));
    watcher.sync();
    let renames = watcher
        .inbox
        .iter()
        .filter(|m| m.action() == "renamed")
        .count();
    let lists: Vec<&Message> = watcher
        .inbox
        .iter()
        .filter(|m| m.action() == "players")
        .collect();
    assert_eq!(
        renames, 2,
        "x1 and x2 (x3 was taken out above): one notice per change"
    );
    assert_eq!(
        lists.len(),
        1,
        "one players list for the three changes: {lists:?}"
    );
    assert_eq!(lists[0].get("players"), Some(&json!(["watcher", "x3"])));
    server.stop();
}

#[test]
fn the_terminal_client_loses_nothing_across_a_network_drop() {
    let server = ChatServer::start(&[], &[]);
    let net = Network::to(&server.addr);
    let (mut client, out) = chat_client(&net.addr.to_string(), &["--nick", "carol"]);
    let mut dave = Peer::join(&server.addr, "dave");
    until("carol is connected", || {
        out.any(|l| l.contains("you are now known as carol"))
    });
    net.fail();
    until("carol's client notices", || {
        out.any(|l| l.contains("connection lost; reconnecting"))
    });
    for n in 1..=5 {
        dave.send(Request::Message(Say {
            message: format!("while you were away {n}"),
        }));
    }
    dave.expect_where("message", |m| {
        m.get_str("message") == Some("while you were away 5")
    });
    net.restore();
    common::resumed_with(&out, "dave", "while you were away", 5);
    // Still carol, in the same session: what she says reaches dave under her name.
    client
        .0
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"back again\n")
        .unwrap();
    let m = dave.expect_where("message", |m| m.get_str("message") == Some("back again"));
    assert_eq!(m.get_str("who"), Some("carol"));
    common::quit(&mut client);
    server.stop();
}
