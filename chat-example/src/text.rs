//! The classic line protocol, for `nc` and telnet users: one command per line in, one readable
//! line per event out. [`TextCodec`] is a netlib [`PayloadCodec`] on a
//! [`Framing::Line`](netlib::Framing::Line) listener (`chat-server --text ADDR`): it turns
//! `NICK bob` into the same `nickname` request a JSON client sends, and the server's messages
//! into lines such as `[alice] hello`, so the chat's handlers and rules serve line users
//! unchanged.
//!
//! | line in                        | request                                   |
//! |--------------------------------|-------------------------------------------|
//! | `NICK name`                    | `nickname`                                |
//! | `MSG text`, or any other line  | `message`                                 |
//! | `PRIV nick text`               | `private`                                 |
//! | `WHO [room]`                   | `who`                                     |
//! | `JOIN room`, `PART`, `ROOMS`   | `join`, `part`, `rooms`                   |
//! | `OPER password`                | `op`                                      |
//! | `KILL nick reason`             | `kick` (operators only)                   |
//! | `QUIT [reason]`                | `quit`                                    |
//! | `HELP`                         | `help`                                    |
//!
//! Lines are parsed by the chat's one command parser, [`command`], which also parses
//! chat-client's slash commands: here in its [`Dialect::Line`], where the words above are
//! commands without `/` too. Command names are case-insensitive and may start with `/`; with
//! it they are chat-client's commands, so `/msg nick text` is a private message and `/op` and
//! `/kick nick [reason]` work too, and `//text` says `/text`. `WHO`, `PART`, `ROOMS` and `HELP`
//! are commands only when alone on their line (`who is here?` is a message); to send a line
//! that begins with another command word, use `MSG`. A known command without its arguments is
//! answered `[server] Invalid command ! Usage: ...`, as is a line starting with `/` and no
//! command. Empty lines are ignored.
//!
//! Where chat-client prints the same thing, both use the phrases of [`render`].

use std::fmt::Write as _;

use netlib::{EncodeError, InboundError, Message, PayloadCodec};

use crate::command::{self, Dialect, ParseError};
use crate::protocol::{Request, ServerMsg, DEFAULT_ROOM, MAX_MESSAGE_CHARS};
use crate::render::{self, list, page_of};
use crate::sanitize::sanitize;

/// The one-line help a line user gets for `HELP`.
pub const TEXT_HELP: &str = "[server] Commands: NICK name | MSG text (or just the text) | \
PRIV nick text | WHO [room] | JOIN room | PART | ROOMS | OPER password | KILL nick reason | \
QUIT [reason] | HELP";

/// What a line user is told for a line that is no command (and the start of the reply to a
/// command used without its arguments): the classic chat servers' words.
pub const INVALID_COMMAND: &str = "[server] Invalid command !";

/// The line protocol's codec: lines to requests, server messages to lines. Stateless, so one
/// instance serves every line channel.
#[derive(Debug, Default, Clone, Copy)]
pub struct TextCodec;

/// The action of the request a blank line stands for: nothing is handled for it and nothing is
/// answered (see the chat's `unhandled`).
pub const IGNORED_LINE: &str = "noop";

impl TextCodec {
    /// The request for one line (without its line ending), `Ok(None)` for a blank line: the
    /// chat's one parser ([`command::parse`]) in the line protocol's [`Dialect::Line`].
    ///
    /// # Errors
    /// A known command without its arguments (`Usage: KILL nick reason`) or an unknown
    /// `/command`.
    pub fn parse(line: &str) -> Result<Option<Request>, ParseError> {
        command::parse(line, Dialect::Line)
    }

    /// The line for one server message (without its `\n`), or `None` for what a line user is
    /// not shown: full player lists (the notices say the same) and netlib's `connected`.
    /// User-supplied text (messages, names, rooms, reasons, refusal texts) is passed through
    /// [`sanitize`], so nobody can start a new line (a line break, U+2028 and U+2029 included,
    /// shows as U+FFFD) or drive the reader's terminal; and no name holds the brackets and
    /// arrows that frame these lines ([`crate::protocol::framing_char`]), so `[nick]` and
    /// `[nick -> you]` are always who they say.
    pub fn render(msg: &ServerMsg<'_>) -> Option<String> {
        let s = |t: &str| sanitize(t);
        Some(match msg {
            ServerMsg::Message { message, who, .. } => format!("[{}] {}", s(who), s(message)),
            ServerMsg::Private {
                message,
                who,
                to,
                echo: false,
                ..
            } if who != to => format!("[{} -> you] {}", s(who), s(message)),
            ServerMsg::Private {
                message, to, echo, ..
            } => {
                let to = if *echo { s(to) } else { "you".to_owned() };
                format!("[you -> {to}] {}", s(message))
            }
            ServerMsg::Players { .. } => return None,
            ServerMsg::Members {
                room,
                count,
                joined,
                left,
                renamed,
                ..
            } => {
                let mut line = format!("[server] {} ({count} members):", s(room));
                if !joined.is_empty() {
                    let _ = write!(line, " joined {};", list(joined));
                }
                if !left.is_empty() {
                    let _ = write!(line, " left {};", list(left));
                }
                for (a, b) in renamed {
                    let _ = write!(line, " {} is now {};", s(a), s(b));
                }
                line.pop();
                line
            }
            ServerMsg::Joined { nickname, room, .. } => {
                format!("[server] {} is connected to {}", s(nickname), s(room))
            }
            ServerMsg::Left {
                nickname,
                room,
                reason,
                ..
            } => format!("[server] {}", render::left(nickname, "", room, reason)),
            ServerMsg::Renamed { from, to, .. } => {
                format!("[server] {}", render::renamed(from, to))
            }
            ServerMsg::Welcome {
                nickname,
                room,
                members,
                ..
            } if room == DEFAULT_ROOM => format!(
                "[server] Welcome to Chat Server ! You are {} in {} ({members} members). \
                 Type HELP for the commands.",
                s(nickname),
                s(room)
            ),
            ServerMsg::Welcome {
                nickname,
                room,
                members,
                ..
            } => format!(
                "[server] You are now in {} as {} ({members} members)",
                s(room),
                s(nickname)
            ),
            ServerMsg::Who {
                users,
                room,
                page,
                pages,
                total,
            } => {
                let names: Vec<String> = users
                    .iter()
                    .map(|u| match room {
                        Some(_) => s(&u.nickname),
                        None => format!("{} ({})", s(&u.nickname), s(&u.room)),
                    })
                    .collect();
                let place = room.as_deref().map(|r| format!(" in {}", s(r)));
                format!(
                    "[server] {total} user(s){}{}: {}",
                    place.unwrap_or_default(),
                    page_of(*page, *pages),
                    names.join(", ")
                )
            }
            ServerMsg::Rooms {
                rooms,
                page,
                pages,
                total,
            } => {
                let list: Vec<String> = rooms
                    .iter()
                    .map(|r| format!("{} ({})", s(&r.name), r.members))
                    .collect();
                format!(
                    "[server] {total} room(s){}: {}",
                    page_of(*page, *pages),
                    list.join(", ")
                )
            }
            ServerMsg::Op { .. } => "[server] You are an operator now".to_owned(),
            ServerMsg::Kicked { by, reason, .. } => {
                format!("[server] You were {}", render::kicked_by(by, reason))
            }
            ServerMsg::Help { .. } => TEXT_HELP.to_owned(),
            ServerMsg::Refused { code, text, .. } => match code.as_ref() {
                "message-too-long" => format!(
                    "[server] The message must be less than {MAX_MESSAGE_CHARS} characters !"
                ),
                "unknown-action" | "bad-request" => {
                    format!("{INVALID_COMMAND} {}", s(text))
                }
                _ => format!("[server] {}", s(text)),
            },
        })
    }
}

impl PayloadCodec for TextCodec {
    fn decode(&self, payload: &[u8]) -> Result<Message, InboundError> {
        let line = std::str::from_utf8(payload).map_err(InboundError::InvalidUtf8)?;
        match TextCodec::parse(line) {
            // Every `Request` serializes to an object with its action (`#[serde(tag)]`), so
            // this fails only if serde does.
            Ok(Some(request)) => {
                Message::from_serialize(&request).map_err(|e| InboundError::Decode(e.to_string()))
            }
            Ok(None) => Ok(Message::new(IGNORED_LINE)),
            Err(e) => Err(InboundError::Decode(e.to_string())),
        }
    }

    fn encode(&self, msg: &Message) -> Result<Option<Vec<u8>>, EncodeError> {
        Ok(match msg.parse::<ServerMsg<'_>>() {
            Ok(m) => TextCodec::render(&m).map(String::into_bytes),
            // netlib's `connected` (the channel id) and anything else not in the protocol.
            Err(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{c, Kick, Quit, Say, SayPrivately, SetNickname, Who};

    fn req(line: &str) -> Request {
        TextCodec::parse(line).unwrap().unwrap()
    }

    #[test]
    fn commands_are_case_insensitive_and_bare_lines_are_messages() {
        assert_eq!(
            req("nick bob"),
            Request::Nickname(SetNickname {
                nickname: "bob".into()
            })
        );
        assert_eq!(req("NiCk bob"), req("NICK bob"));
        assert_eq!(
            req("hello there"),
            Request::Message(Say {
                message: "hello there".into()
            })
        );
        assert_eq!(
            req("MSG NICK is a command word"),
            Request::Message(Say {
                message: "NICK is a command word".into()
            })
        );
        assert_eq!(
            req("who"),
            Request::Who(Who {
                room: None,
                page: None
            })
        );
        assert_eq!(
            req("who is here?"),
            Request::Message(Say {
                message: "who is here?".into()
            })
        );
        assert_eq!(
            req("/who games"),
            Request::Who(Who {
                room: Some("games".into()),
                page: None
            })
        );
        assert_eq!(
            req("KILL eve spamming the room"),
            Request::Kick(Kick {
                nickname: "eve".into(),
                reason: Some("spamming the room".into())
            })
        );
        assert_eq!(req("quit"), Request::Quit(Quit { reason: None }));
        assert_eq!(
            req("PRIV bob  hi  you"),
            Request::Private(SayPrivately {
                to: "bob".into(),
                message: "hi  you".into()
            })
        );
        assert_eq!(TextCodec::parse("   ").unwrap(), None);
    }

    #[test]
    fn commands_without_arguments_are_invalid() {
        for line in [
            "NICK", "KILL bob", "PRIV bob", "JOIN", "OPER", "MSG", "/frob",
        ] {
            assert!(
                TextCodec::parse(line).is_err(),
                "{line:?} should be refused"
            );
        }
    }

    /// The codec parses with the chat's one parser: chat-client's `/msg` is private here too,
    /// and a usage error becomes the decode error the server answers with.
    #[test]
    fn lines_decode_with_the_shared_parser() {
        let m = TextCodec.decode(b"/msg bob hi there").unwrap();
        assert_eq!(
            (m.action(), m.get_str("to"), m.get_str("message")),
            ("private", Some("bob"), Some("hi there"))
        );
        let m = TextCodec.decode(b"MSG bob hi there").unwrap();
        assert_eq!(
            (m.action(), m.get_str("message")),
            ("message", Some("bob hi there"))
        );
        assert_eq!(TextCodec.decode(b"  ").unwrap().action(), IGNORED_LINE);
        assert!(matches!(
            TextCodec.decode(b"KILL bob"),
            Err(InboundError::Decode(u)) if u == "Usage: KILL nick reason"
        ));
        assert!(matches!(
            TextCodec.decode(b"/frob"),
            Err(InboundError::Decode(u)) if u == "type HELP for the commands"
        ));
    }

    #[test]
    fn server_messages_render_as_classic_lines() {
        let line = |m: ServerMsg<'_>| TextCodec::render(&m).unwrap();
        assert_eq!(
            line(ServerMsg::Message {
                message: c("hello\n[server] fake"),
                who: c("alice"),
                room: c("lobby"),
                time: 0
            }),
            "[alice] hello\u{fffd}[server] fake",
            "a newline cannot start a forged line"
        );
        let private = |echo| ServerMsg::Private {
            message: c("psst"),
            who: c("alice"),
            to: c("bob"),
            time: 0,
            echo,
        };
        assert_eq!(line(private(false)), "[alice -> you] psst");
        assert_eq!(line(private(true)), "[you -> bob] psst");
        assert_eq!(
            line(ServerMsg::Refused {
                request: c("message"),
                code: c("message-too-long"),
                text: c("...")
            }),
            "[server] The message must be less than 2000 characters !"
        );
        assert_eq!(
            line(ServerMsg::Message {
                message: c("hi\u{2028}[server] you are kicked\u{2029}\u{85}x\u{b}y\u{c}z\rw\n"),
                who: c("mallory"),
                room: c("lobby"),
                time: 0
            }),
            "[mallory] hi\u{fffd}[server] you are kicked\u{fffd}x\u{fffd}y\u{fffd}z\u{fffd}w",
        );
        assert!(TextCodec::render(&ServerMsg::Players {
            players: vec![c("a")],
            room: c("lobby")
        })
        .is_none());
    }

    /// Every field a line user reads, each holding every kind of line break: one line out.
    #[test]
    fn no_field_can_break_a_line() {
        let brk = "a\u{2028}b\u{2029}c\u{85}d\u{b}e\u{c}f\rg\nh\u{1c}i\u{84}j";
        let b = || c(brk);
        let msgs = [
            ServerMsg::Message {
                message: b(),
                who: b(),
                room: b(),
                time: 0,
            },
            ServerMsg::Private {
                message: b(),
                who: b(),
                to: c("x"),
                time: 0,
                echo: false,
            },
            ServerMsg::Private {
                message: b(),
                who: c("x"),
                to: b(),
                time: 0,
                echo: true,
            },
            ServerMsg::Members {
                room: b(),
                count: 1,
                joined: vec![brk.into()],
                left: vec![brk.into()],
                renamed: vec![(brk.into(), brk.into())],
                time: 0,
            },
            ServerMsg::Joined {
                nickname: b(),
                id: netlib::ChannelId::from_serial(1),
                room: b(),
                time: 0,
            },
            ServerMsg::Left {
                nickname: b(),
                id: netlib::ChannelId::from_serial(1),
                room: b(),
                reason: b(),
                time: 0,
            },
            ServerMsg::Renamed {
                from: b(),
                id: netlib::ChannelId::from_serial(1),
                to: b(),
                room: b(),
                time: 0,
            },
            ServerMsg::Welcome {
                nickname: b(),
                id: netlib::ChannelId::from_serial(1),
                room: b(),
                members: 1,
                time: 0,
            },
            ServerMsg::Who {
                users: vec![crate::protocol::WhoEntry {
                    nickname: brk.into(),
                    room: brk.into(),
                }],
                room: None,
                page: 1,
                pages: 1,
                total: 1,
            },
            ServerMsg::Who {
                users: vec![],
                room: Some(b()),
                page: 1,
                pages: 1,
                total: 0,
            },
            ServerMsg::Rooms {
                rooms: vec![crate::protocol::RoomEntry {
                    name: brk.into(),
                    members: 1,
                }],
                page: 1,
                pages: 1,
                total: 1,
            },
            ServerMsg::Kicked {
                by: b(),
                reason: b(),
                time: 0,
            },
            ServerMsg::Refused {
                request: b(),
                code: c("bad-name"),
                text: b(),
            },
            ServerMsg::Refused {
                request: b(),
                code: c("bad-request"),
                text: b(),
            },
        ];
        for m in msgs {
            let line = TextCodec::render(&m).unwrap();
            assert!(
                !line.contains(crate::sanitize::is_line_break),
                "{m:?} -> {line:?}"
            );
            assert!(line.contains("a\u{fffd}b\u{fffd}c"), "{m:?} -> {line:?}");
        }
    }
}
