//! The chat's rules, in memory: a real `Chat` server and real netlib clients connected through
//! netlib's in-memory transport (`Server::connect_local`). No sockets, no ports, no sleeps:
//! every test pumps server and clients a bounded number of rounds.

use std::io::Write;
use std::sync::{Arc, Mutex};

use chat::client::ChatView;
use chat::protocol::{
    Join, Kick, Op, Quit, Request, Rooms, Say, SayPrivately, ServerMsg, SetNickname, Who,
};
use chat::server::{Chat, Settings};
use std::time::Duration;

use netlib::{ChannelId, Client, ClientConfig, ManualClock, Server, ServerConfig};

/// A chat server and its users, pumped together.
struct Room {
    clock: ManualClock,
    server: Server<Chat>,
    users: Vec<(ChannelId, Client)>,
    inbox: Vec<Vec<ServerMsg<'static>>>,
}

impl Room {
    fn new(op_password: Option<&str>) -> Self {
        Room::with(Settings {
            op_password: op_password.map(str::to_owned),
            ..Settings::default()
        })
    }

    fn with(settings: Settings) -> Self {
        Room::configured(settings, |c| c)
    }

    /// A room whose server config `config` adjusts (after the harness's own settings).
    fn configured(settings: Settings, config: impl FnOnce(ServerConfig) -> ServerConfig) -> Self {
        let clock = ManualClock::new();
        let config = config(
            ServerConfig::default()
                .announce_id(true)
                .clock(clock.clone()),
        );
        // The chat's request limits read the same clock as the server.
        let settings = Settings {
            clock: clock.clone().into(),
            ..settings
        };
        Room {
            clock,
            server: Server::new(Chat::new(settings), config).unwrap(),
            users: Vec::new(),
            inbox: Vec::new(),
        }
    }

    /// Connects a user (anonymous); returns its index.
    fn connect(&mut self) -> usize {
        let (id, client) = self.server.connect_local(ClientConfig::default()).unwrap();
        self.users.push((id, client));
        self.inbox.push(Vec::new());
        self.pump();
        self.users.len() - 1
    }

    /// Connects a user and names it.
    fn join(&mut self, nick: &str) -> usize {
        let u = self.connect();
        self.send(
            u,
            Request::Nickname(SetNickname {
                nickname: nick.into(),
            }),
        );
        self.inbox[u].clear();
        u
    }

    fn id(&self, u: usize) -> ChannelId {
        self.users[u].0
    }

    /// Sends and pumps until everything is delivered.
    fn send(&mut self, u: usize, r: Request) {
        self.users[u].1.send(&r).unwrap();
        self.pump();
    }

    /// Pumps the server and everyone until nothing moves; every message received lands in
    /// the user's inbox.
    fn pump(&mut self) {
        let mut clients: Vec<&mut Client> = self.users.iter_mut().map(|(_, c)| c).collect();
        self.server.settle(&mut clients).unwrap();
        for (i, (_, c)) in self.users.iter_mut().enumerate() {
            for m in c.pump_messages().unwrap() {
                if let Ok(sm) = m.parse::<ServerMsg<'static>>() {
                    self.inbox[i].push(sm);
                }
            }
        }
    }

    /// Takes user `u`'s messages.
    fn take(&mut self, u: usize) -> Vec<ServerMsg<'static>> {
        std::mem::take(&mut self.inbox[u])
    }

    /// The refusal codes user `u` got.
    fn refusals(&mut self, u: usize) -> Vec<String> {
        self.take(u)
            .into_iter()
            .filter_map(|m| match m {
                ServerMsg::Refused { code, .. } => Some(code.into_owned()),
                _ => None,
            })
            .collect()
    }
}

fn said(msgs: &[ServerMsg<'_>]) -> Vec<(String, String)> {
    msgs.iter()
        .filter_map(|m| match m {
            ServerMsg::Message { who, message, .. } => Some((who.to_string(), message.to_string())),
            _ => None,
        })
        .collect()
}

fn say(text: &str) -> Request {
    Request::Message(Say {
        message: text.into(),
    })
}

#[test]
fn a_nickname_is_announced_to_the_room_and_cannot_be_taken_twice() {
    let mut r = Room::new(None);
    let alice = r.join("alice");
    let bob = r.connect();
    r.take(alice);
    r.send(
        bob,
        Request::Nickname(SetNickname {
            nickname: "bob".into(),
        }),
    );
    let seen = r.take(alice);
    assert!(
        seen.iter()
            .any(|m| matches!(m, ServerMsg::Renamed { from, to, id, .. }
            if from == "anonymous" && to == "bob" && *id == r.id(bob))),
        "{seen:?}"
    );
    r.take(bob);
    for taken in ["alice", "ALICE", "anonymous"] {
        r.clock.advance(Duration::from_secs(10)); // one rename's worth of budget
        r.send(
            bob,
            Request::Nickname(SetNickname {
                nickname: taken.into(),
            }),
        );
    }
    r.clock.advance(Duration::from_secs(10));
    r.send(
        bob,
        Request::Nickname(SetNickname {
            nickname: "two words".into(),
        }),
    );
    assert_eq!(
        r.refusals(bob),
        [
            "nickname-taken",
            "nickname-taken",
            "nickname-reserved",
            "bad-name"
        ]
    );
}

#[test]
fn a_message_reaches_its_room_only_with_the_senders_name_and_the_server_time() {
    let mut r = Room::new(None);
    let alice = r.join("alice");
    let bob = r.join("bob");
    let carol = r.join("carol");
    r.send(
        carol,
        Request::Join(Join {
            room: "games".into(),
        }),
    );
    r.take(alice);
    r.take(bob);
    r.take(carol);
    let before = chat::protocol::now_ms();
    r.send(alice, say("hello lobby"));
    let at_bob = r.take(bob);
    assert_eq!(said(&at_bob), [("alice".into(), "hello lobby".into())]);
    assert!(
        matches!(&at_bob[0], ServerMsg::Message { room, time, .. } if room == "lobby" && *time >= before)
    );
    assert_eq!(
        said(&r.take(alice)).len(),
        1,
        "the sender sees its own message"
    );
    assert!(said(&r.take(carol)).is_empty(), "not another room");
}

#[test]
fn a_sender_cannot_spoof_who_or_time() {
    let mut r = Room::new(None);
    let alice = r.join("alice");
    let bob = r.join("bob");
    r.take(bob);
    let spoof =
        serde_json::json!({"action": "message", "message": "hi", "who": "mallory", "time": 1});
    r.users[alice].1.send(&spoof).unwrap();
    r.pump();
    let got = r.take(bob);
    assert!(
        matches!(&got[0], ServerMsg::Message { who, time, .. } if who == "alice" && *time > 1),
        "{got:?}"
    );
}

#[test]
fn a_private_message_reaches_its_recipient_and_an_unknown_one_is_refused() {
    let mut r = Room::new(None);
    let alice = r.join("alice");
    let bob = r.join("bob");
    let carol = r.join("carol");
    r.take(bob);
    r.take(carol);
    r.send(
        alice,
        Request::Private(SayPrivately {
            to: "BOB".into(),
            message: "psst".into(),
        }),
    );
    let private = |m: &ServerMsg<'_>| {
        matches!(m, ServerMsg::Private { who, to, message, .. }
        if who == "alice" && to == "bob" && message == "psst")
    };
    assert!(r.take(bob).iter().any(private));
    assert!(r.take(alice).iter().any(private), "echoed to the sender");
    assert!(!r.take(carol).iter().any(private), "nobody else");
    r.send(
        alice,
        Request::Private(SayPrivately {
            to: "ghost".into(),
            message: "boo".into(),
        }),
    );
    assert_eq!(r.refusals(alice), ["unknown-nickname"]);
}

#[test]
fn who_and_rooms_answer_with_everyone_sorted() {
    let mut r = Room::new(None);
    let bob = r.join("bob");
    let alice = r.join("alice");
    r.send(
        bob,
        Request::Join(Join {
            room: "games".into(),
        }),
    );
    r.take(alice);
    r.send(
        alice,
        Request::Who(Who {
            room: None,
            page: None,
        }),
    );
    r.send(alice, Request::Rooms(Rooms::default()));
    r.send(
        alice,
        Request::Who(Who {
            room: Some("nowhere".into()),
            page: None,
        }),
    );
    let got = r.take(alice);
    let users = got.iter().find_map(|m| match m {
        ServerMsg::Who { users, .. } => Some(
            users
                .iter()
                .map(|u| (u.nickname.clone(), u.room.clone()))
                .collect::<Vec<_>>(),
        ),
        _ => None,
    });
    assert_eq!(
        users.unwrap(),
        [
            ("alice".into(), "lobby".into()),
            ("bob".into(), "games".into())
        ]
    );
    let rooms = got.iter().find_map(|m| match m {
        ServerMsg::Rooms { rooms, .. } => Some(
            rooms
                .iter()
                .map(|r| (r.name.clone(), r.members))
                .collect::<Vec<_>>(),
        ),
        _ => None,
    });
    assert_eq!(rooms.unwrap(), [("games".into(), 1), ("lobby".into(), 1)]);
    assert!(got
        .iter()
        .any(|m| matches!(m, ServerMsg::Refused { code, .. } if code == "unknown-room")));
}

#[test]
fn joining_and_parting_tell_both_rooms() {
    let mut r = Room::new(None);
    let alice = r.join("alice");
    let bob = r.join("bob");
    r.take(alice);
    r.send(
        bob,
        Request::Join(Join {
            room: "games".into(),
        }),
    );
    assert!(r
        .take(alice)
        .iter()
        .any(|m| matches!(m, ServerMsg::Left { nickname, reason, id, .. }
        if nickname == "bob" && reason == "went to games" && *id == r.id(bob))));
    assert!(r
        .take(bob)
        .iter()
        .any(|m| matches!(m, ServerMsg::Welcome { room, .. } if room == "games")));
    r.send(bob, Request::Part);
    assert!(r
        .take(alice)
        .iter()
        .any(|m| matches!(m, ServerMsg::Joined { nickname, .. } if nickname == "bob")));
    r.send(bob, Request::Part);
    assert_eq!(r.refusals(bob), ["not-in-a-room"]);
}

#[test]
fn only_an_operator_with_the_right_password_can_kick() {
    let mut r = Room::new(Some("sesame"));
    let alice = r.join("alice");
    let bob = r.join("bob");
    let kick = || {
        Request::Kick(Kick {
            nickname: "alice".into(),
            reason: Some("spam".into()),
        })
    };
    r.send(bob, kick());
    r.send(
        bob,
        Request::Op(Op {
            password: "guess".into(),
        }),
    );
    assert_eq!(r.refusals(bob), ["not-operator", "bad-password"]);
    r.send(
        bob,
        Request::Op(Op {
            password: "sesame".into(),
        }),
    );
    assert!(r
        .take(bob)
        .iter()
        .any(|m| matches!(m, ServerMsg::Op { granted: true })));
    r.take(alice);
    r.send(bob, kick());
    assert!(r.take(alice).iter().any(
        |m| matches!(m, ServerMsg::Kicked { by, reason, .. } if by == "bob" && reason == "spam")
    ));
    assert!(r
        .take(bob)
        .iter()
        .any(|m| matches!(m, ServerMsg::Left { nickname, reason, .. }
        if nickname == "alice" && reason == "kicked by bob: spam")));
    assert_eq!(r.server.state().user_count(), 1, "alice is gone");
}

#[test]
fn a_quit_reason_is_relayed_to_the_room() {
    let mut r = Room::new(None);
    let alice = r.join("alice");
    let bob = r.join("bob");
    r.take(alice);
    r.send(
        bob,
        Request::Quit(Quit {
            reason: Some("dinner".into()),
        }),
    );
    assert!(r
        .take(alice)
        .iter()
        .any(|m| matches!(m, ServerMsg::Left { nickname, reason, .. }
        if nickname == "bob" && reason == "quit: dinner")));
    // The nickname is free again.
    let carol = r.connect();
    r.send(
        carol,
        Request::Nickname(SetNickname {
            nickname: "bob".into(),
        }),
    );
    assert!(r.refusals(carol).is_empty());
}

/// A `Write` shared with the test.
#[derive(Clone, Default)]
struct Screen(Arc<Mutex<Vec<u8>>>);
impl Write for Screen {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn when_one_of_two_anonymous_users_renames_the_other_is_not_told_it_was_them() {
    let mut r = Room::new(None);
    let first = r.connect();
    // The second user's terminal view sees everything from its connection on.
    let (second, mut client) = r.server.connect_local(ClientConfig::default()).unwrap();
    let screen = Screen::default();
    let mut view = ChatView::new(Box::new(screen.clone()));
    let pump = |r: &mut Room, client: &mut Client, view: &mut ChatView| {
        for _ in 0..4 {
            r.pump();
            client.pump(view).unwrap();
        }
    };
    pump(&mut r, &mut client, &mut view);
    r.users[first]
        .1
        .send(&Request::Nickname(SetNickname {
            nickname: "zed".into(),
        }))
        .unwrap();
    pump(&mut r, &mut client, &mut view);
    let text = String::from_utf8(screen.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("* anonymous is now known as zed"), "{text}");
    assert!(!text.contains("you are now known as"), "{text}");
    assert_eq!(view.nick, "anonymous");
    assert_eq!(view.me, Some(second));
}

#[test]
fn membership_changes_in_one_pump_make_one_player_list() {
    let mut r = Room::new(None);
    let watcher = r.join("watcher");
    r.take(watcher);
    // Three newcomers connect before the server pumps again.
    for _ in 0..3 {
        let (id, client) = r.server.connect_local(ClientConfig::default()).unwrap();
        r.users.push((id, client));
        r.inbox.push(Vec::new());
    }
    r.pump();
    let got = r.take(watcher);
    let lists: Vec<usize> = got
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Players { players, .. } => Some(players.len()),
            _ => None,
        })
        .collect();
    assert_eq!(lists, [4], "one list for three joins: {got:?}");
    let joined = got
        .iter()
        .filter(|m| matches!(m, ServerMsg::Joined { .. }))
        .count();
    assert_eq!(joined, 3, "but a notice each");
}

#[test]
fn a_request_that_does_not_fit_is_refused_naming_the_field() {
    let mut r = Room::new(None);
    let alice = r.join("alice");
    let bad = serde_json::json!({"action": "private", "to": ["bob"], "message": "x"});
    r.users[alice].1.send(&bad).unwrap();
    r.pump();
    let got = r.take(alice);
    let text = got.iter().find_map(|m| match m {
        ServerMsg::Refused {
            code,
            text,
            request,
        } if code == "bad-request" => Some((request.to_string(), text.to_string())),
        _ => None,
    });
    let (request, text) = text.expect("refused");
    assert_eq!(request, "private");
    assert!(text.contains("invalid type"), "{text}");
    r.users[alice]
        .1
        .send(&serde_json::json!({"action": "dance"}))
        .unwrap();
    r.pump();
    assert_eq!(r.refusals(alice), ["unknown-action"]);
}

#[test]
fn messages_are_checked_for_length_and_emptiness() {
    let mut r = Room::new(None);
    let alice = r.join("alice");
    let bob = r.join("bob");
    r.take(bob);
    r.send(alice, say(&"x".repeat(2001)));
    r.send(alice, say("   "));
    r.send(alice, say(&"é".repeat(2000)));
    assert_eq!(r.refusals(alice), ["message-too-long", "empty-message"]);
    assert_eq!(said(&r.take(bob)).len(), 1, "only the valid one is relayed");
}

fn nick(n: &str) -> Request {
    Request::Nickname(SetNickname { nickname: n.into() })
}

#[test]
fn each_kind_of_request_has_its_own_budget_refilled_by_the_clock() {
    let mut r = Room::new(None);
    let alice = r.join("alice"); // one rename of 3 spent
    r.send(alice, nick("alice2"));
    r.send(alice, nick("alice3"));
    r.send(alice, nick("alice4"));
    assert_eq!(r.refusals(alice), ["rate-limited"]);
    for i in 0..11 {
        r.send(alice, say(&format!("m{i}")));
    }
    let got = r.take(alice);
    assert_eq!(said(&got).len(), 10, "a burst of 10 messages");
    assert!(got
        .iter()
        .any(|m| matches!(m, ServerMsg::Refused { code, text, .. }
        if code == "rate-limited" && text.contains("try again in"))));
    r.clock.advance(Duration::from_secs(10));
    r.send(alice, nick("alice4"));
    r.send(alice, say("later"));
    let got = r.take(alice);
    assert!(got
        .iter()
        .any(|m| matches!(m, ServerMsg::Renamed { to, .. } if to == "alice4")));
    assert_eq!(said(&got), [("alice4".into(), "later".into())]);
}

#[test]
fn limits_off_means_off() {
    let mut r = Room::with(Settings {
        limits: None,
        ..Settings::default()
    });
    let alice = r.join("alice");
    for i in 0..50 {
        r.send(alice, nick(&format!("a{i}")));
    }
    assert!(r.refusals(alice).is_empty());
}

#[test]
fn operator_logins_stop_after_three_a_minute_even_with_the_right_password() {
    let mut r = Room::new(Some("s3cret"));
    let eve = r.join("eve");
    let op = |p: &str| Request::Op(Op { password: p.into() });
    for guess in ["a", "b", "c"] {
        r.send(eve, op(guess));
    }
    r.send(eve, op("s3cret"));
    assert_eq!(
        r.refusals(eve),
        [
            "bad-password",
            "bad-password",
            "bad-password",
            "too-many-attempts"
        ]
    );
    r.clock.advance(Duration::from_secs(20));
    r.send(eve, op("s3cret"));
    assert!(r
        .take(eve)
        .iter()
        .any(|m| matches!(m, ServerMsg::Op { granted: true })));
}

#[test]
fn look_alike_nicknames_are_taken_or_refused() {
    let mut r = Room::new(None);
    let _alice = r.join("alice");
    let mallory = r.join("mallory");
    for (name, code) in [
        ("ALICE", "nickname-taken"),
        ("\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}", "nickname-taken"),
        ("aIice", "nickname-taken"),
        ("\u{430}lice", "bad-name"),
        ("alice\u{200e}", "bad-name"),
        ("\u{3164}", "bad-name"),
        ("Server", "nickname-reserved"),
    ] {
        r.clock.advance(Duration::from_secs(10)); // one rename's worth
        r.send(mallory, nick(name));
        assert_eq!(r.refusals(mallory), [code], "{name:?}");
    }
}

#[test]
fn quit_reasons_are_capped() {
    let mut r = Room::new(None);
    let alice = r.join("alice");
    let bob = r.join("bob");
    r.take(alice);
    r.send(
        bob,
        Request::Quit(Quit {
            reason: Some("x".repeat(100_000)),
        }),
    );
    let reason = r
        .take(alice)
        .into_iter()
        .find_map(|m| match m {
            ServerMsg::Left { reason, .. } => Some(reason.into_owned()),
            _ => None,
        })
        .expect("alice saw bob leave");
    assert_eq!(reason.chars().count(), "quit: ".len() + 200 + "...".len());
}

/// Issue 17: the brackets and arrows that frame the line protocol's lines are refused in
/// nicknames and room names (`bad-name`), whatever the client.
#[test]
fn names_cannot_hold_the_frame_of_a_line() {
    let mut r = Room::with(Settings {
        limits: None,
        ..Settings::default()
    });
    let alice = r.join("alice");
    let mallory = r.join("mallory");
    r.take(alice);
    for name in [
        "[server",
        "alice->you",
        "you]",
        "<alice>",
        "\u{ff3b}server",
        "a\u{2192}b",
        "\u{3010}x\u{3011}",
    ] {
        r.send(mallory, nick(name));
        assert_eq!(r.refusals(mallory), ["bad-name"], "{name:?}");
        r.send(
            mallory,
            Request::Join(Join {
                room: name.to_owned(),
            }),
        );
        assert_eq!(r.refusals(mallory), ["bad-name"], "room {name:?}");
    }
    assert!(
        !r.take(alice).iter().any(|m| matches!(
            m,
            ServerMsg::Renamed { .. } | ServerMsg::Left { .. } | ServerMsg::Joined { .. }
        )),
        "nothing happened"
    );
}

/// Issue 17: a message with nothing visible is `empty-message`, in a room or private, and
/// reaches nobody; an invisible quit or kick reason counts as none.
#[test]
fn messages_with_nothing_visible_are_refused_and_invisible_reasons_are_none() {
    let mut r = Room::new(Some("pw"));
    let alice = r.join("alice");
    let bob = r.join("bob");
    let carol = r.join("carol");
    r.take(bob);
    let invisible = "\u{200b}\u{200c}\u{200d}\u{2060}\u{feff}";
    r.send(alice, say(invisible));
    r.send(alice, say("\u{2028}\u{2029}"));
    r.send(alice, say("\u{1b}[31m\u{202e}"));
    r.send(
        alice,
        Request::Private(SayPrivately {
            to: "bob".into(),
            message: invisible.into(),
        }),
    );
    assert_eq!(
        r.refusals(alice),
        [
            "empty-message",
            "empty-message",
            "empty-message",
            "empty-message"
        ]
    );
    assert!(
        !r.take(bob)
            .iter()
            .any(|m| matches!(m, ServerMsg::Message { .. } | ServerMsg::Private { .. })),
        "nothing was relayed"
    );
    r.send(alice, say("\u{200b}hi"));
    assert_eq!(
        said(&r.take(bob)).len(),
        1,
        "visible text around them is fine"
    );

    r.send(
        carol,
        Request::Quit(Quit {
            reason: Some(invisible.into()),
        }),
    );
    assert!(r
        .take(bob)
        .iter()
        .any(|m| matches!(m, ServerMsg::Left { nickname, reason, .. }
        if nickname == "carol" && reason == "quit")));
    r.send(
        alice,
        Request::Op(Op {
            password: "pw".into(),
        }),
    );
    r.send(
        alice,
        Request::Kick(Kick {
            nickname: "bob".into(),
            reason: Some(invisible.into()),
        }),
    );
    assert!(r
        .take(alice)
        .iter()
        .any(|m| matches!(m, ServerMsg::Left { nickname, reason, .. }
        if nickname == "bob" && reason == "kicked by alice: no reason given")));
}

#[test]
fn a_user_who_enters_a_room_gets_its_last_messages_in_order() {
    use chat::rules::SCROLLBACK;
    let mut r = Room::configured(Settings::default(), |c| c.room_history(SCROLLBACK));
    let alice = r.join("alice");
    for i in 0..SCROLLBACK + 5 {
        r.send(alice, say(&format!("m{i}")));
        r.clock.advance(Duration::from_secs(1)); // within alice's message budget
    }
    let bob = r.connect(); // its inbox kept: what it got on entering
    let got: Vec<String> = said(&r.take(bob)).into_iter().map(|(_, m)| m).collect();
    let want: Vec<String> = (5..SCROLLBACK + 5).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want, "the last {SCROLLBACK}, oldest first");
    // A room of its own: its own history.
    r.send(bob, Request::Join(Join { room: "den".into() }));
    r.send(bob, say("in the den"));
    let carol = r.connect();
    assert_eq!(
        said(&r.take(carol)).len(),
        SCROLLBACK,
        "lobby's, not the den's"
    );
    r.send(carol, Request::Join(Join { room: "den".into() }));
    assert_eq!(
        said(&r.take(carol)),
        [("anonymous".to_owned(), "in the den".to_owned())]
    );
}
