//! The classic line protocol end to end: the real `chat-server --text ADDR` process, driven by a
//! raw socket that behaves exactly like `nc` (bytes as typed, lines as they come), and one room
//! shared by a line user, the terminal chat-client, and PodSixNet clients in JSON and rencode.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chat::protocol::{Quit, Request, Say, SayPrivately, SetNickname};
use common::{chat_client, ChatServer, Lines, Peer};
use netlib::ClientConfig;
use netlib_tests::{podsixnet_python, podsixnet_scripts, ChildGuard, TIMEOUT};

/// An `nc` stand-in: writes bytes as given, reads lines as they arrive.
struct Nc {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Every line received so far, in order.
    seen: Vec<String>,
    /// Where the next `expect` starts looking in `seen`.
    cursor: usize,
    closed: bool,
}

impl Nc {
    fn connect(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut nc = Nc {
            stream,
            buf: Vec::new(),
            seen: Vec::new(),
            cursor: 0,
            closed: false,
        };
        nc.expect(|l| l.starts_with("[server] Welcome to Chat Server !"));
        nc
    }

    /// Connects and takes `nick`.
    fn join(addr: &str, nick: &str) -> Self {
        let mut nc = Nc::connect(addr);
        nc.type_line(&format!("NICK {nick}"));
        nc.expect(|l| l.ends_with(&format!(" is now known as {nick}")));
        nc
    }

    fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn type_line(&mut self, line: &str) {
        self.write(format!("{line}\n").as_bytes());
    }

    /// Reads what has arrived within one short read timeout.
    fn read_some(&mut self) {
        let mut chunk = [0u8; 64 << 10];
        match self.stream.read(&mut chunk) {
            Ok(0) => self.closed = true,
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => self.closed = true,
        }
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let line = String::from_utf8(line[..i].to_vec()).expect("the server sends UTF-8");
            assert!(!line.contains('\r'), "lines end in a bare \\n: {line:?}");
            self.seen.push(line);
        }
    }

    /// The first line after the last one `expect` matched that matches `pred`: lines that
    /// must come in this order. Lines skipped stay in `seen`.
    #[track_caller]
    fn expect(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let from = self.cursor;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(i) = self.seen[from..].iter().position(|l| pred(l)) {
                self.cursor = from + i + 1;
                return self.seen[from + i].clone();
            }
            assert!(
                !self.closed && Instant::now() < deadline,
                "no matching line (closed: {}); got {:?}",
                self.closed,
                &self.seen[from..]
            );
            self.read_some();
        }
    }

    /// Waits until some line received so far, or from now on, matches `pred`.
    #[track_caller]
    fn saw(&mut self, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.seen.iter().any(|l| pred(l)) {
            assert!(
                !self.closed && Instant::now() < deadline,
                "no matching line (closed: {}); got {:?}",
                self.closed,
                self.seen
            );
            self.read_some();
        }
    }

    /// Sends `HELP` and waits for its answer: every line the server sent before is in `seen`.
    fn sync(&mut self) {
        self.type_line("HELP");
        self.expect(|l| l.starts_with("[server] Commands:"));
    }

    /// Waits for the server to close the connection.
    #[track_caller]
    fn expect_closed(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.closed {
            assert!(Instant::now() < deadline, "still open; got {:?}", self.seen);
            self.read_some();
        }
    }
}

fn text_server(extra: &[&str], envs: &[(&str, &str)]) -> (ChatServer, String) {
    let mut args = vec!["--text", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = ChatServer::start(&args, envs);
    let addr = server.listening("line")[0].clone();
    (server, addr)
}

#[test]
fn nc_users_chat_with_the_classic_commands() {
    let (server, addr) = text_server(&[], &[]);
    let mut alice = Nc::join(&addr, "alice");
    let mut bob = Nc::join(&addr, "bob");
    alice.expect(|l| l == "[server] anonymous is now known as bob");

    // A bare line and MSG are both messages; everyone sees `[nick] text`, the sender too.
    alice.type_line("hello bob");
    bob.type_line("MSG hi alice");
    for nc in [&mut alice, &mut bob] {
        nc.saw(|l| l == "[alice] hello bob");
        nc.saw(|l| l == "[bob] hi alice");
    }
    // Command names are case-insensitive.
    bob.type_line("priv alice psst");
    alice.expect(|l| l == "[bob -> you] psst");
    bob.expect(|l| l == "[you -> alice] psst");
    alice.type_line("Who");
    alice.expect(|l| l == "[server] 2 user(s): alice (lobby), bob (lobby)");
    alice.type_line("who is here?");
    bob.expect(|l| l == "[alice] who is here?");

    bob.type_line("JOIN games");
    alice.expect(|l| l == "[server] bob left lobby (went to games)");
    bob.expect(|l| l == "[server] You are now in games as bob (1 members)");
    alice.type_line("ROOMS");
    alice.expect(|l| l == "[server] 2 room(s): games (1), lobby (1)");
    bob.type_line("PART");
    alice.expect(|l| l == "[server] bob is connected to lobby");

    // Nothing a line user sees is raw JSON (player lists and netlib's `connected` are not sent).
    bob.sync();
    assert!(
        !alice.seen.iter().chain(&bob.seen).any(|l| l.contains('{')),
        "{:?} {:?}",
        alice.seen,
        bob.seen
    );

    bob.type_line("QUIT see you");
    alice.expect(|l| l == "[server] bob left lobby (quit: see you)");
    bob.expect_closed();
    server.stop();
}

#[test]
fn the_line_listener_takes_bytes_exactly_as_nc_sends_them() {
    let (server, addr) = text_server(&[], &[]);
    let mut nc = Nc::join(&addr, "carol");

    // A line in three writes (three segments: no Nagle), and three lines (one CRLF) in one.
    nc.write(b"MS");
    nc.write(b"G split ");
    nc.write(b"line\n");
    nc.sync();
    let carol: Vec<_> = nc
        .seen
        .iter()
        .filter(|l| l.starts_with("[carol]"))
        .collect();
    assert_eq!(carol, ["[carol] split line"]);
    nc.write(b"one\r\ntwo\nthree\n");
    nc.expect(|l| l == "[carol] one");
    nc.expect(|l| l == "[carol] two");
    nc.expect(|l| l == "[carol] three");

    // Bad UTF-8: an error line, and the connection goes on.
    nc.write(b"caf\xe9\n");
    nc.expect(|l| l.starts_with("[server] ") && l.contains("UTF-8"));
    nc.type_line("still here");
    nc.expect(|l| l == "[carol] still here");

    // A message over 2000 characters, and a line over the 8 KiB line limit.
    nc.type_line(&format!("MSG {}", "x".repeat(2001)));
    nc.expect(|l| l == "[server] The message must be less than 2000 characters !");
    nc.type_line(&"y".repeat(10_000));
    nc.expect(|l| l.starts_with("[server] ") && l.contains("line too long"));
    nc.type_line("after the long line");
    nc.expect(|l| l == "[carol] after the long line");

    // Invalid commands, and KILL without operator rights.
    nc.type_line("KILL");
    nc.expect(|l| l == "[server] Invalid command ! Usage: KILL nick reason");
    nc.type_line("/frobnicate");
    nc.expect(|l| l.starts_with("[server] Invalid command !"));
    nc.type_line("KILL carol bye");
    nc.expect(|l| l.starts_with("[server] only operators can kick"));
    nc.type_line("still not kicked");
    nc.expect(|l| l == "[carol] still not kicked");

    // Overlong lines again and again: the fourth closes the connection.
    for _ in 0..3 {
        nc.type_line(&"z".repeat(9000));
    }
    nc.expect_closed();
    server.stop();
}

#[test]
fn operators_kill_from_a_line_and_ipv6_works() {
    let server = ChatServer::start(
        &["--text", "[::1]:0", "--op-password-env", "CHAT_OP"],
        &[("CHAT_OP", "s3cret")],
    );
    let addr = server.listening("line")[0].clone();
    assert!(addr.starts_with("[::1]:"), "{addr}");
    let mut op = Nc::join(&addr, "op");
    let mut eve = Nc::join(&addr, "eve");
    op.type_line("OPER wrong");
    op.expect(|l| l == "[server] wrong operator password");
    op.type_line("oper s3cret");
    op.expect(|l| l == "[server] You are an operator now");
    op.type_line("KILL eve flooding the room");
    eve.expect(|l| l == "[server] You were kicked by op: flooding the room");
    eve.expect_closed();
    op.expect(|l| l == "[server] eve left lobby (kicked by op: flooding the room)");
    server.stop();
}

/// A stock PodSixNet client (`chat_peer.py`) that says `text` once all of `expect` are in the
/// room, then waits until each of them said something.
fn podsixnet_peer(mode: &str, addr: &str, nick: &str, text: &str, expect: &str) -> ChildGuard {
    let (host, port) = addr.rsplit_once(':').unwrap();
    ChildGuard(
        Command::new(podsixnet_python())
            .current_dir(podsixnet_scripts())
            .args(["chat_peer.py", mode, host, port, nick, text, expect])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn one_room_for_nc_the_terminal_client_and_podsixnet_in_json_and_rencode() {
    let (server, line_addr) = text_server(&["--rencode", "127.0.0.1:0"], &[]);
    let rencode_addr = server.listening("rencode")[0].clone();
    let mut nc = Nc::join(&line_addr, "ncuser");
    let (mut term, term_out) = chat_client(&server.addr, &["--nick", "term"]);
    let mut pyjson = podsixnet_peer(
        "json",
        &server.addr,
        "pyjson",
        "hello from json",
        "ncuser,term,pyrenc",
    );
    let mut pyrenc = podsixnet_peer(
        "rencode",
        &rencode_addr,
        "pyrenc",
        "hello from rencode",
        "ncuser,term,pyjson",
    );
    let py_out = [&mut pyjson, &mut pyrenc].map(|p| {
        (
            Lines::collect(p.0.stdout.take().unwrap()),
            Lines::collect(p.0.stderr.take().unwrap()),
        )
    });
    // Everyone is in once the line user has seen the other three take their names.
    for nick in ["term", "pyjson", "pyrenc"] {
        nc.saw(|l| l.ends_with(&format!(" is now known as {nick}")));
    }
    nc.type_line("hello from nc");
    term.0
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"hello from the terminal\n")
        .unwrap();

    // The line user sees everyone's messages as lines ...
    nc.saw(|l| l == "[term] hello from the terminal");
    nc.saw(|l| l == "[pyjson] hello from json");
    nc.saw(|l| l == "[pyrenc] hello from rencode");
    // ... the PodSixNet clients each heard the three others (or they exit 1) ...
    for (p, (out, err)) in [&mut pyjson, &mut pyrenc].into_iter().zip(&py_out) {
        let status = p.wait_with(|| {});
        out.finish();
        err.finish();
        assert!(
            status.success(),
            "{status}: {:?} {:?}",
            out.all(),
            err.all()
        );
        assert!(out.any(|l| l.contains("\"hello from nc\"") && l.contains("\"ncuser\"")));
    }
    // ... and the terminal client prints them its own way.
    for line in [
        "<ncuser> hello from nc",
        "<pyjson> hello from json",
        "<pyrenc> hello from rencode",
    ] {
        netlib_tests::until(line, || term_out.any(|l| l.contains(line)));
    }
    common::quit(&mut term);
    server.stop();
}

#[test]
fn length_prefixed_chat_server_and_client_with_timestamps() {
    let server = ChatServer::start(&["--framing", "length"], &[]);
    let mut watcher = Peer::join_with(
        &server.addr,
        "watcher",
        ClientConfig::default().framing(netlib::Framing::LengthPrefix),
    );
    let (mut term, out) = chat_client(&server.addr, &["--framing", "length", "--nick", "lp"]);
    term.0
        .stdin
        .take()
        .unwrap()
        .write_all(b"framed by length\n/quit\n")
        .unwrap();
    assert!(term.wait_with(|| {}).success(), "{:?}", out.all());
    out.finish();
    let m = watcher.expect_where("message", |m| m.get_str("who") == Some("lp"));
    assert_eq!(m.get_str("message"), Some("framed by length"));
    assert!(m.get("time").and_then(|t| t.as_u64()).is_some());
    // chat-client stamps each relayed message with the server's `time`: `[HH:MM:SS] <lp> ...`.
    let line = out
        .all()
        .into_iter()
        .find(|l| l.contains("<lp> framed by length"))
        .expect("the client printed its message");
    let stamp = line
        .split_once(']')
        .map(|(s, _)| s.trim_start_matches('['))
        .unwrap();
    assert!(
        stamp.len() == 8 && stamp.chars().filter(|&c| c == ':').count() == 2,
        "{line:?}"
    );
    server.stop();
}

/// Issue 17: no name can hold the brackets and arrows that frame a line (`[nick]`,
/// `[nick -> you]`), for line users and JSON users alike, nor can a room's.
#[test]
fn names_that_would_forge_a_line_are_refused_for_every_client() {
    let (server, addr) = text_server(&["--rate-limit", "0"], &[]);
    let mut nc = Nc::join(&addr, "watcher");
    let mut json = Peer::join(&server.addr, "mallory");
    let forged = [
        "[server",
        "alice->you",
        "you]",
        "[alice]",
        "bob<-alice",
        "a=>b",
        "\u{ff3b}server\u{ff3d}",
        "alice\u{2192}you",
        "\u{27e6}x\u{27e7}",
        "\u{1438}x\u{1433}",
    ];
    for name in forged {
        // A JSON client gets the `bad-name` code and a text naming the character.
        let r = json.refused(Request::Nickname(SetNickname {
            nickname: name.into(),
        }));
        assert_eq!(r.get_str("code"), Some("bad-name"), "{name:?}: {r:?}");
        let text = r.get_str("text").unwrap();
        assert!(
            text.contains("brackets and arrows") && text.contains("U+"),
            "{text}"
        );
        // A line user is told the same text as a `[server]` line.
        nc.type_line(&format!("NICK {name}"));
        nc.expect(|l| {
            l.starts_with("[server] the nickname \"") && l.contains("brackets and arrows")
        });
    }
    let r = json.refused(Request::Nickname(SetNickname {
        nickname: "alice->you".into(),
    }));
    assert!(r.get_str("text").unwrap().contains("'>' (U+003E)"), "{r:?}");
    // Rooms are shown in the same lines: the same rule.
    nc.type_line("JOIN [server]");
    nc.expect(|l| l.starts_with("[server] the room name \"[server]\"") && l.contains("'['"));
    nc.type_line("JOIN #games->x");
    nc.expect(|l| l.starts_with("[server] the room name") && l.contains("'>'"));
    // Nobody got renamed, and the ordinary punctuation still works.
    nc.type_line("NICK wat-cher_(1)");
    nc.expect(|l| l == "[server] watcher is now known as wat-cher_(1)");
    nc.sync();
    let renames: Vec<&String> = nc
        .seen
        .iter()
        .filter(|l| l.contains(" is now known as "))
        .collect();
    assert_eq!(
        renames,
        [
            "[server] anonymous is now known as watcher",
            "[server] anonymous is now known as mallory",
            "[server] watcher is now known as wat-cher_(1)",
        ],
        "{:?}",
        nc.seen
    );
    assert!(
        !nc.seen
            .iter()
            .any(|l| l.starts_with("[server] You are now in")),
        "{:?}",
        nc.seen
    );
    server.stop();
}

/// Issue 17: U+2028, U+2029 and every other line break from a JSON client reach a line user
/// replaced, on one line; and a message with nothing visible is refused for everyone.
#[test]
fn line_breaks_stay_on_one_line_and_invisible_messages_are_refused() {
    let (server, addr) = text_server(&[], &[]);
    let mut nc = Nc::join(&addr, "reader");
    let mut json = Peer::join(&server.addr, "mallory");
    nc.saw(|l| l == "[server] anonymous is now known as mallory");

    json.send(Request::Message(Say {
        message: "hi\u{2028}[server] you were kicked\u{2029}[alice] x\u{85}y\u{b}z\u{c}w\rv".into(),
    }));
    let line = nc.expect(|l| l.starts_with("[mallory] hi"));
    assert_eq!(
        line,
        "[mallory] hi\u{fffd}[server] you were kicked\u{fffd}[alice] x\u{fffd}y\u{fffd}z\u{fffd}w\u{fffd}v"
    );
    json.send(Request::Private(SayPrivately {
        to: "reader".into(),
        message: "psst\u{2028}[server] fake".into(),
    }));
    nc.expect(|l| l == "[mallory -> you] psst\u{fffd}[server] fake");
    nc.sync();
    for l in &nc.seen {
        assert!(
            !l.contains(['\u{2028}', '\u{2029}', '\u{85}', '\u{b}', '\u{c}']),
            "{l:?}"
        );
        assert!(
            !l.starts_with("[server] you were") && !l.starts_with("[alice]"),
            "{l:?}"
        );
    }

    json.sync();
    json.inbox.clear();

    // Zero-width only: refused `empty-message` for a JSON client, room and private alike ...
    let invisible = "\u{200b}\u{200c}\u{200d}\u{2060}\u{feff}";
    for request in [
        Request::Message(Say {
            message: invisible.into(),
        }),
        Request::Message(Say {
            message: "\u{2028}\u{3164}\u{202e}\u{301}".into(),
        }),
        Request::Private(SayPrivately {
            to: "reader".into(),
            message: invisible.into(),
        }),
    ] {
        let r = json.refused(request);
        assert_eq!(r.get_str("code"), Some("empty-message"), "{r:?}");
    }
    // ... and for a line user, who reads the refusal.
    nc.type_line(&format!("MSG {invisible}"));
    nc.expect(|l| l.starts_with("[server] the message has nothing visible"));
    nc.type_line(&format!("PRIV mallory {invisible}"));
    nc.expect(|l| l.starts_with("[server] the message has nothing visible"));
    nc.type_line(invisible);
    nc.expect(|l| l.starts_with("[server] the message has nothing visible"));
    // Nobody received any of them.
    nc.sync();
    json.sync();
    assert!(
        !nc.seen.iter().any(|l| l.starts_with("[mallory] \u{200b}")
            || l == "[mallory] "
            || l.starts_with("[mallory -> you] \u{200b}")
            || l.starts_with("[reader]")),
        "{:?}",
        nc.seen
    );
    assert!(
        !json.has("message", |_| true) && !json.has("private", |_| true),
        "{:?}",
        json.inbox
    );

    // An invisible quit reason is no reason.
    json.send(Request::Quit(Quit {
        reason: Some(invisible.into()),
    }));
    nc.expect(|l| l == "[server] mallory left lobby (quit)");
    server.stop();
}
