//! One parser for every typed line: the terminal client's slash commands (`/nick bob`) and the
//! line protocol's classic commands (`NICK bob`) are one grammar, turned into one
//! [`Request`] by one match ([`parse`]). The two front ends differ in a single thing, their
//! [`Dialect`]: whether a command word counts without its `/`.
//!
//! | typed                                  | request                  | usage when arguments are missing |
//! |----------------------------------------|--------------------------|----------------------------------|
//! | any other line                         | `message` (the line)     |                                  |
//! | `//text`                               | `message` `/text`        |                                  |
//! | `NICK name`                            | `nickname`               | `NICK name`                      |
//! | `MSG text` (bare)                      | `message`                | `MSG text`                       |
//! | `/msg nick text`, `PRIV nick text`     | `private`                | `/msg NICK TEXT`                 |
//! | `WHO [room]`                           | `who`                    |                                  |
//! | `JOIN room`                            | `join`                   | `JOIN room`                      |
//! | `PART`, `ROOMS`, `HELP`                | `part`, `rooms`, `help`  |                                  |
//! | `/op password`, `OPER password`        | `op`                     | `OPER password`                  |
//! | `/kick nick [reason]`                  | `kick`                   | `/kick NICK [REASON]`            |
//! | `KILL nick reason`                     | `kick` (reason required) | `KILL nick reason`               |
//! | `QUIT [reason]`                        | `quit`                   |                                  |
//!
//! - Command words are case-insensitive and may start with `/`; leading white space is skipped.
//!   In [`Dialect::Slash`] (chat-client) only `/word` is a command and every other line is a
//!   message. In [`Dialect::Line`] (`nc` users) the classic words are commands without `/`
//!   too: `NICK`, `MSG`, `PRIV`, `WHO`, `JOIN`, `PART`, `ROOMS`, `OPER`, `KILL`, `QUIT` and
//!   `HELP`; `op` and `kick` need their `/`, so `kick the ball` stays a message.
//! - `msg` is the one word whose meaning depends on its `/`: `/msg nick text` is a private
//!   message (IRC's and chat-client's), bare `MSG text` says `text` to the room (the classic
//!   line chat's way to say a line that starts with a command word).
//! - Bare `WHO`, `PART`, `ROOMS` and `HELP` are commands only alone on their line
//!   (`who is here?` is a message); `/part`, `/rooms` and `/help` ignore what follows them,
//!   and `/who room` lists one room.
//! - `#` before a room name is dropped (`/join #games`).
//! - `/word` that is no command is an error; a lone `/` (or `/` then a space) is a message.
//!
//! A client handles [`Request::Help`] and [`Request::Quit`] itself (chat-client prints its own
//! help and shuts down); the line protocol sends every request to the server.

use std::fmt;

use crate::protocol::{self, Request};

/// Where a line was typed: the one thing in which the two front ends' grammars differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// chat-client: a line is a command only with its `/` (`/nick bob`); every other line is a
    /// message.
    Slash,
    /// The line protocol (`nc`, telnet): the classic command words count without `/` too
    /// (`NICK bob`).
    Line,
}

/// A typed line that is no request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Where it was typed: how [`Display`](fmt::Display) phrases the error.
    pub dialect: Dialect,
    /// What was wrong.
    pub kind: ParseErrorKind,
}

/// What was wrong with a typed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// A command without the arguments it needs; the usage to show, e.g. `KILL nick reason` or
    /// `/kick NICK [REASON]`.
    Usage(String),
    /// A `/word` that is no command, as typed (e.g. `/frobnicate`).
    Unknown(String),
}

impl fmt::Display for ParseError {
    /// chat-client's `usage: /nick NAME` and `unknown command /frob; /help lists them`; the
    /// line protocol's `Usage: NICK name` and `type HELP for the commands` (which the server
    /// prefixes with `Invalid command !`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.dialect, &self.kind) {
            (Dialect::Slash, ParseErrorKind::Usage(u)) => write!(f, "usage: {u}"),
            (Dialect::Slash, ParseErrorKind::Unknown(w)) => {
                write!(f, "unknown command {w}; /help lists them")
            }
            (Dialect::Line, ParseErrorKind::Usage(u)) => write!(f, "Usage: {u}"),
            (Dialect::Line, ParseErrorKind::Unknown(_)) => {
                f.write_str("type HELP for the commands")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// What a command word does: one variant per request it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Nickname,
    Message,
    Private,
    Who,
    Join,
    Part,
    Rooms,
    Op,
    /// `/kick nick [reason]`.
    Kick,
    /// `KILL nick reason`: a kick whose reason is required.
    Kill,
    Quit,
    Help,
}

impl Verb {
    /// The verb `word` (lower case) names, typed with its `/` or bare; `None` when it is no
    /// command in that form (bare: the line is a message).
    fn of(word: &str, slash: bool, alone: bool) -> Option<Verb> {
        use Verb::*;
        Some(match word {
            "nick" => Nickname,
            "msg" if !slash => Message,
            "msg" | "priv" => Private,
            "who" | "part" | "rooms" | "help" if !slash && !alone => return None,
            "who" => Who,
            "part" => Part,
            "rooms" => Rooms,
            "help" => Help,
            "join" => Join,
            "op" if slash => Op,
            "oper" => Op,
            "kick" if slash => Kick,
            "kill" => Kill,
            "quit" => Quit,
            _ => return None,
        })
    }

    /// The arguments, as a usage line names them.
    fn args(self) -> &'static str {
        match self {
            Verb::Nickname => "name",
            Verb::Message => "text",
            Verb::Private => "nick text",
            Verb::Who => "[room]",
            Verb::Join => "room",
            Verb::Op => "password",
            Verb::Kick => "nick [reason]",
            Verb::Kill => "nick reason",
            Verb::Quit => "[reason]",
            Verb::Part | Verb::Rooms | Verb::Help => "",
        }
    }

    /// The request for `args` (trimmed), or `None` when an argument it needs is missing.
    fn request(self, args: &str) -> Option<Request> {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let room = |s: &str| s.trim_start_matches('#').to_owned();
        // The first word, and the rest (trimmed), which must not be empty.
        let two = || {
            args.split_once(char::is_whitespace)
                .map(|(a, b)| (a.to_owned(), b.trim().to_owned()))
                .filter(|(_, b)| !b.is_empty())
        };
        Some(match self {
            Verb::Nickname => Request::Nickname(protocol::SetNickname {
                nickname: some(args)?,
            }),
            Verb::Message => Request::Message(protocol::Say {
                message: some(args)?,
            }),
            Verb::Private => {
                let (to, message) = two()?;
                Request::Private(protocol::SayPrivately { to, message })
            }
            Verb::Who => Request::Who(protocol::Who {
                room: some(args).map(|r| room(&r)),
                page: None,
            }),
            Verb::Join => Request::Join(protocol::Join {
                room: room(&some(args)?),
            }),
            Verb::Part => Request::Part,
            Verb::Rooms => Request::Rooms(protocol::Rooms::default()),
            Verb::Help => Request::Help,
            Verb::Op => Request::Op(protocol::Op {
                password: some(args)?,
            }),
            Verb::Kick => {
                let (nick, reason) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
                Request::Kick(protocol::Kick {
                    nickname: some(nick)?,
                    reason: some(reason.trim()),
                })
            }
            Verb::Kill => {
                let (nickname, reason) = two()?;
                Request::Kick(protocol::Kick {
                    nickname,
                    reason: Some(reason),
                })
            }
            Verb::Quit => Request::Quit(protocol::Quit { reason: some(args) }),
        })
    }

    /// The usage of `word` (lower case, as typed): chat-client's `/nick NAME`, the line
    /// protocol's `NICK name` (`/NICK name` when typed with `/`).
    fn usage(self, word: &str, slash: bool, dialect: Dialect) -> String {
        let usage = match dialect {
            Dialect::Slash => format!("/{word} {}", self.args().to_uppercase()),
            Dialect::Line => format!(
                "{}{} {}",
                if slash { "/" } else { "" },
                word.to_uppercase(),
                self.args()
            ),
        };
        usage.trim_end().to_owned()
    }
}

/// The request for one typed line, in `dialect`; `Ok(None)` for a blank line. A trailing line
/// ending is ignored.
///
/// # Errors
/// A command without the arguments it needs ([`ParseErrorKind::Usage`]), or a `/word` that is
/// no command ([`ParseErrorKind::Unknown`]).
pub fn parse(line: &str, dialect: Dialect) -> Result<Option<Request>, ParseError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(None);
    }
    let say = |text: String| Ok(Some(Request::Message(protocol::Say { message: text })));
    let body = line.trim_start();
    if let Some(text) = body.strip_prefix("//") {
        return say(format!("/{text}"));
    }
    let (word, args) = body
        .split_once(char::is_whitespace)
        .map_or((body, ""), |(w, a)| (w, a.trim()));
    let (slash, name) = match word.strip_prefix('/') {
        Some("") => return say(line.to_owned()),
        Some(name) => (true, name),
        None if dialect == Dialect::Line => (false, word),
        None => return say(line.to_owned()),
    };
    let name = name.to_ascii_lowercase();
    let error = |kind| Err(ParseError { dialect, kind });
    match Verb::of(&name, slash, args.is_empty()) {
        Some(verb) => match verb.request(args) {
            Some(request) => Ok(Some(request)),
            None => error(ParseErrorKind::Usage(verb.usage(&name, slash, dialect))),
        },
        None if slash => error(ParseErrorKind::Unknown(word.to_owned())),
        None => say(line.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Join, Kick, Op, Quit, Rooms, Say, SayPrivately, SetNickname, Who};

    fn slash(line: &str) -> Option<Request> {
        parse(line, Dialect::Slash).unwrap()
    }

    fn line(line: &str) -> Option<Request> {
        parse(line, Dialect::Line).unwrap()
    }

    fn say(text: &str) -> Option<Request> {
        Some(Request::Message(Say {
            message: text.into(),
        }))
    }

    fn nick(name: &str) -> Option<Request> {
        Some(Request::Nickname(SetNickname {
            nickname: name.into(),
        }))
    }

    fn private(to: &str, text: &str) -> Option<Request> {
        Some(Request::Private(SayPrivately {
            to: to.into(),
            message: text.into(),
        }))
    }

    fn who(room: Option<&str>) -> Option<Request> {
        Some(Request::Who(Who {
            room: room.map(Into::into),
            page: None,
        }))
    }

    fn join(room: &str) -> Option<Request> {
        Some(Request::Join(Join { room: room.into() }))
    }

    fn op(password: &str) -> Option<Request> {
        Some(Request::Op(Op {
            password: password.into(),
        }))
    }

    fn kick(nick: &str, reason: Option<&str>) -> Option<Request> {
        Some(Request::Kick(Kick {
            nickname: nick.into(),
            reason: reason.map(Into::into),
        }))
    }

    fn quit(reason: Option<&str>) -> Option<Request> {
        Some(Request::Quit(Quit {
            reason: reason.map(Into::into),
        }))
    }

    fn rooms() -> Option<Request> {
        Some(Request::Rooms(Rooms::default()))
    }

    /// The error for `line` in `dialect`, as shown.
    fn error(line: &str, dialect: Dialect) -> String {
        match parse(line, dialect) {
            Err(e) => e.to_string(),
            Ok(r) => panic!("{line:?} in {dialect:?} should be refused, got {r:?}"),
        }
    }

    /// chat-client's slash commands (formerly `client::Command::parse`).
    #[test]
    fn commands_parse() {
        assert_eq!(slash("hello there"), say("hello there"));
        assert_eq!(slash("   "), None);
        assert_eq!(slash("//me waves"), say("/me waves"));
        assert_eq!(slash("/nick bob"), nick("bob"));
        assert_eq!(slash("/msg bob hi there"), private("bob", "hi there"));
        assert!(parse("/msg bob", Dialect::Slash).is_err());
        assert_eq!(slash("/who"), who(None));
        assert_eq!(slash("/who games"), who(Some("games")));
        assert_eq!(slash("/join #games"), join("games"));
        assert_eq!(slash("/part"), Some(Request::Part));
        assert_eq!(slash("/rooms"), rooms());
        assert_eq!(slash("/op secret"), op("secret"));
        assert_eq!(
            slash("/kick bob being rude"),
            kick("bob", Some("being rude"))
        );
        assert_eq!(slash("/kick bob"), kick("bob", None));
        assert_eq!(slash("/quit bye all"), quit(Some("bye all")));
        assert_eq!(slash("/quit"), quit(None));
        assert_eq!(slash("/help"), Some(Request::Help));
        assert!(
            matches!(parse("/frobnicate", Dialect::Slash), Err(e) if e.to_string().contains("/frobnicate"))
        );
    }

    /// Lines become the requests they send (formerly `client::Command::to_request`); `/help`
    /// is [`Request::Help`], which chat-client answers itself.
    #[test]
    fn commands_become_requests() {
        assert_eq!(
            slash("hi"),
            Some(Request::Message(Say {
                message: "hi".into()
            }))
        );
        assert_eq!(
            slash("/kick eve"),
            Some(Request::Kick(Kick {
                nickname: "eve".into(),
                reason: None
            }))
        );
        assert_eq!(slash("/help"), Some(Request::Help));
    }

    /// Every command word and alias, in both dialects, with and without `/`, in any case.
    #[test]
    fn every_command_and_alias() {
        for d in [Dialect::Slash, Dialect::Line] {
            let p = |l: &str| parse(l, d).unwrap();
            assert_eq!(p("/nick bob"), nick("bob"));
            assert_eq!(p("/NICK bob"), nick("bob"));
            assert_eq!(p("/nick two words"), nick("two words"));
            assert_eq!(p("/msg bob  hi  you "), private("bob", "hi  you"));
            assert_eq!(p("/priv bob hi"), private("bob", "hi"));
            assert_eq!(p("/PRIV bob hi"), private("bob", "hi"));
            assert_eq!(p("/who"), who(None));
            assert_eq!(p("/who #games"), who(Some("games")));
            assert_eq!(p("/who is here"), who(Some("is here")));
            assert_eq!(p("/join games"), join("games"));
            assert_eq!(p("/JOIN #games"), join("games"));
            assert_eq!(p("/part"), Some(Request::Part));
            assert_eq!(p("/part now"), Some(Request::Part));
            assert_eq!(p("/rooms"), rooms());
            assert_eq!(p("/rooms please"), rooms());
            assert_eq!(p("/op s3cret"), op("s3cret"));
            assert_eq!(p("/oper s3cret"), op("s3cret"));
            assert_eq!(p("/kick eve"), kick("eve", None));
            assert_eq!(p("/kick eve  spam "), kick("eve", Some("spam")));
            assert_eq!(p("/kill eve spam"), kick("eve", Some("spam")));
            assert_eq!(p("/quit"), quit(None));
            assert_eq!(p("/quit see you"), quit(Some("see you")));
            assert_eq!(p("/help"), Some(Request::Help));
            assert_eq!(p("/HeLp me"), Some(Request::Help));
            // Leading white space is skipped, a line ending ignored.
            assert_eq!(p("  /nick bob\r\n"), nick("bob"));
            // `//` says a line starting with `/`; a lone `/` is no command.
            assert_eq!(p("//nick bob"), say("/nick bob"));
            assert_eq!(p("//"), say("/"));
            assert_eq!(p("/"), say("/"));
            assert_eq!(p("/ hi"), say("/ hi"));
            // Blank lines are nothing; other lines are messages, as typed.
            assert_eq!(p(""), None);
            assert_eq!(p(" \t\r\n"), None);
            assert_eq!(p("  hello  "), say("  hello  "));
            assert_eq!(p("kick the ball"), say("kick the ball"));
            assert_eq!(p("op op op"), say("op op op"));
        }
    }

    /// The line protocol's classic words also count without `/` (chat-client: they are
    /// messages there).
    #[test]
    fn bare_words_are_commands_only_in_the_line_protocol() {
        let cases = [
            ("NICK bob", nick("bob")),
            ("nick bob", nick("bob")),
            ("NiCk bob", nick("bob")),
            ("MSG NICK is a command word", say("NICK is a command word")),
            ("PRIV bob  hi  you", private("bob", "hi  you")),
            ("WHO", who(None)),
            ("Who", who(None)),
            ("JOIN #games", join("games")),
            ("PART", Some(Request::Part)),
            ("ROOMS", rooms()),
            ("HELP", Some(Request::Help)),
            ("OPER s3cret", op("s3cret")),
            (
                "KILL eve spamming the room",
                kick("eve", Some("spamming the room")),
            ),
            ("QUIT", quit(None)),
            ("quit see you", quit(Some("see you"))),
        ];
        for (typed, request) in cases {
            assert_eq!(line(typed), request, "{typed:?}");
            assert_eq!(slash(typed), say(typed), "{typed:?} in chat-client");
        }
        // Bare WHO, PART, ROOMS and HELP only alone; OP and KICK only with `/`.
        for typed in [
            "who is here?",
            "part of it",
            "rooms are full",
            "help me",
            "op secret",
            "kick eve",
        ] {
            assert_eq!(line(typed), say(typed), "{typed:?}");
        }
        // `/msg` is private in both; bare MSG says the rest to the room.
        assert_eq!(line("/msg bob hi"), private("bob", "hi"));
        assert_eq!(line("MSG bob hi"), say("bob hi"));
    }

    /// A command without its arguments, or an unknown `/word`: a clear error, in each front
    /// end's words.
    #[test]
    fn bad_input_gives_a_clear_error() {
        let slash_usages = [
            ("/nick", "usage: /nick NAME"),
            ("/nick   ", "usage: /nick NAME"),
            ("/msg", "usage: /msg NICK TEXT"),
            ("/msg bob", "usage: /msg NICK TEXT"),
            ("/msg bob   ", "usage: /msg NICK TEXT"),
            ("/priv bob", "usage: /priv NICK TEXT"),
            ("/join", "usage: /join ROOM"),
            ("/op", "usage: /op PASSWORD"),
            ("/oper", "usage: /oper PASSWORD"),
            ("/kick", "usage: /kick NICK [REASON]"),
            ("/kill eve", "usage: /kill NICK REASON"),
            ("/KICK", "usage: /kick NICK [REASON]"),
            (
                "/frobnicate",
                "unknown command /frobnicate; /help lists them",
            ),
            ("/Frob x", "unknown command /Frob; /help lists them"),
        ];
        for (typed, shown) in slash_usages {
            assert_eq!(error(typed, Dialect::Slash), shown, "{typed:?}");
        }
        let line_usages = [
            ("NICK", "Usage: NICK name"),
            ("nick", "Usage: NICK name"),
            ("MSG", "Usage: MSG text"),
            ("PRIV bob", "Usage: PRIV nick text"),
            ("JOIN", "Usage: JOIN room"),
            ("OPER", "Usage: OPER password"),
            ("KILL", "Usage: KILL nick reason"),
            ("KILL bob", "Usage: KILL nick reason"),
            ("/msg bob", "Usage: /MSG nick text"),
            ("/kick", "Usage: /KICK nick [reason]"),
            ("/op", "Usage: /OP password"),
            ("/frob", "type HELP for the commands"),
        ];
        for (typed, shown) in line_usages {
            assert_eq!(error(typed, Dialect::Line), shown, "{typed:?}");
        }
        assert_eq!(
            parse("/frob x", Dialect::Line).unwrap_err().kind,
            ParseErrorKind::Unknown("/frob".into())
        );
        assert_eq!(
            parse("KILL", Dialect::Line).unwrap_err().kind,
            ParseErrorKind::Usage("KILL nick reason".into())
        );
    }
}
