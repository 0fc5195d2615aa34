//! The terminal client's logic, apart from the terminal: command parsing ([`Command`]) and the
//! listener ([`ChatView`]) that turns server events into printed lines. Every string received
//! goes through [`sanitize`](crate::sanitize::sanitize()) before it is printed.

use std::io::Write;

use chrono::{Local, TimeZone};
use netlib::{handler, ClientContext, Listener, Message};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::protocol::{RoomEntry, WhoEntry};
use crate::sanitize::sanitize;

/// The help text for `/help`.
pub const HELP: &str = "\
Commands:
  TEXT                    say TEXT to your room (start with // to say a line beginning with /)
  /nick NAME              change your nickname
  /msg NICK TEXT          private message to NICK
  /who [ROOM]             list users (everyone, or one room's members)
  /join ROOM              go to ROOM (made if new)
  /part                   go back to the default room
  /rooms                  list rooms with member counts
  /op PASSWORD            become an operator
  /kick NICK [REASON]     disconnect NICK (operators only)
  /quit [REASON]          leave (end of input does the same)
  /help                   this text";

/// One line of user input, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A plain line: a message to the room.
    Say(String),
    /// `/nick NAME`.
    Nick(String),
    /// `/msg NICK TEXT`.
    Private {
        /// Recipient.
        to: String,
        /// Text.
        text: String,
    },
    /// `/who [ROOM]`.
    Who(Option<String>),
    /// `/join ROOM`.
    Join(String),
    /// `/part`.
    Part,
    /// `/rooms`.
    Rooms,
    /// `/op PASSWORD`.
    Op(String),
    /// `/kick NICK [REASON]`.
    Kick {
        /// Who.
        nick: String,
        /// Why.
        reason: Option<String>,
    },
    /// `/quit [REASON]`.
    Quit(Option<String>),
    /// `/help`.
    Help,
    /// A command used wrongly or unknown: the text to show.
    Invalid(String),
}

fn rest(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

impl Command {
    /// Parses one input line; `None` for a blank line.
    pub fn parse(line: &str) -> Option<Command> {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return None;
        }
        if let Some(text) = line.strip_prefix("//") {
            return Some(Command::Say(format!("/{text}")));
        }
        let Some(cmd) = line.strip_prefix('/') else {
            return Some(Command::Say(line.to_owned()));
        };
        let (name, args) = cmd.split_once(char::is_whitespace).unwrap_or((cmd, ""));
        let args = args.trim();
        let usage = |u: &str| Some(Command::Invalid(format!("usage: {u}")));
        match name {
            "nick" => match rest(args) {
                Some(n) => Some(Command::Nick(n)),
                None => usage("/nick NAME"),
            },
            "msg" => match args.split_once(char::is_whitespace) {
                Some((to, text)) if !text.trim().is_empty() => Some(Command::Private {
                    to: to.to_owned(),
                    text: text.trim().to_owned(),
                }),
                _ => usage("/msg NICK TEXT"),
            },
            "who" => Some(Command::Who(rest(args))),
            "join" => match rest(args) {
                Some(r) => Some(Command::Join(r.trim_start_matches('#').to_owned())),
                None => usage("/join ROOM"),
            },
            "part" => Some(Command::Part),
            "rooms" => Some(Command::Rooms),
            "op" => match rest(args) {
                Some(p) => Some(Command::Op(p)),
                None => usage("/op PASSWORD"),
            },
            "kick" => {
                let (nick, reason) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
                match rest(nick) {
                    Some(nick) => Some(Command::Kick {
                        nick,
                        reason: rest(reason),
                    }),
                    None => usage("/kick NICK [REASON]"),
                }
            }
            "quit" => Some(Command::Quit(rest(args))),
            "help" => Some(Command::Help),
            other => Some(Command::Invalid(format!(
                "unknown command /{other}; /help lists them"
            ))),
        }
    }

    /// The message this command sends, if it sends one.
    pub fn to_message(&self) -> Option<Value> {
        Some(match self {
            Command::Say(text) => json!({"action": "message", "message": text}),
            Command::Nick(n) => json!({"action": "nickname", "nickname": n}),
            Command::Private { to, text } => {
                json!({"action": "private", "to": to, "message": text})
            }
            Command::Who(None) => json!({"action": "who"}),
            Command::Who(Some(r)) => json!({"action": "who", "room": r}),
            Command::Join(r) => json!({"action": "join", "room": r}),
            Command::Part => json!({"action": "part"}),
            Command::Rooms => json!({"action": "rooms"}),
            Command::Op(p) => json!({"action": "op", "password": p}),
            Command::Kick { nick, reason } => {
                json!({"action": "kick", "nickname": nick, "reason": reason})
            }
            Command::Quit(reason) => json!({"action": "quit", "reason": reason}),
            Command::Help | Command::Invalid(_) => return None,
        })
    }
}

/// How the client should end, decided by what the network said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The server closed the connection (or we quit): exit 0.
    Disconnected,
    /// The connection failed (e.g. refused): exit 1.
    Failed,
}

/// The listener that prints what happens, one line per event: `[HH:MM:SS] <nick> text`.
pub struct ChatView {
    out: Box<dyn Write>,
    /// Set when the connection ends.
    pub ending: Option<Ending>,
    /// Our nickname as the server last confirmed it.
    pub nick: String,
    /// Our room as the server last confirmed it.
    pub room: String,
}

impl ChatView {
    /// A view printing to `out`.
    pub fn new(out: Box<dyn Write>) -> Self {
        ChatView {
            out,
            ending: None,
            nick: crate::protocol::ANONYMOUS.into(),
            room: String::new(),
        }
    }

    /// Prints a line stamped with `time` (ms since the epoch; `None` = now). The line must
    /// already be sanitized.
    pub fn line(&mut self, time: Option<u64>, text: &str) {
        let t = time
            .and_then(|ms| Local.timestamp_millis_opt(ms as i64).single())
            .unwrap_or_else(Local::now);
        let _ = writeln!(self.out, "[{}] {text}", t.format("%H:%M:%S"));
        let _ = self.out.flush();
    }

    /// Prints a line without a time stamp (help, prompts).
    pub fn plain(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }
}

/// `s` sanitized, for printing.
fn s(text: &str) -> String {
    sanitize(text)
}

#[derive(Deserialize)]
struct Said {
    message: String,
    who: String,
    #[serde(default)]
    time: Option<u64>,
}

#[derive(Deserialize)]
struct Private {
    message: String,
    who: String,
    to: String,
    #[serde(default)]
    time: Option<u64>,
}

#[derive(Deserialize)]
struct Players {
    players: Vec<String>,
    #[serde(default)]
    room: Option<String>,
}

#[derive(Deserialize)]
struct Members {
    room: String,
    count: usize,
    joined: Vec<String>,
    left: Vec<String>,
    renamed: Vec<(String, String)>,
    time: Option<u64>,
}

#[derive(Deserialize)]
struct Joined {
    nickname: String,
    room: String,
    time: Option<u64>,
}

#[derive(Deserialize)]
struct Left {
    nickname: String,
    room: String,
    reason: String,
    time: Option<u64>,
}

#[derive(Deserialize)]
struct Renamed {
    from: String,
    to: String,
    time: Option<u64>,
}

#[derive(Deserialize)]
struct Welcome {
    nickname: String,
    room: String,
    members: usize,
    time: Option<u64>,
}

#[derive(Deserialize)]
struct WhoReply {
    users: Vec<WhoEntry>,
}

#[derive(Deserialize)]
struct RoomsReply {
    rooms: Vec<RoomEntry>,
}

#[derive(Deserialize)]
struct Kicked {
    by: String,
    reason: String,
    time: Option<u64>,
}

#[derive(Deserialize)]
struct Refused {
    request: String,
    text: String,
}

#[derive(Deserialize)]
struct NetError {
    error: (i64, String),
}

impl ChatView {
    fn network_socket_connect(&mut self, _: &mut ClientContext<'_>, _: &Message) {
        self.line(None, "* connected");
    }
    fn network_error(&mut self, _: &mut ClientContext<'_>, e: NetError) {
        self.line(
            None,
            &format!(
                "! connection error: {} (errno {})",
                s(&e.error.1),
                e.error.0
            ),
        );
        self.ending = Some(Ending::Failed);
    }
    fn network_disconnected(&mut self, _: &mut ClientContext<'_>, _: &Message) {
        self.line(
            None,
            "* disconnected: the connection to the server is closed",
        );
        self.ending.get_or_insert(Ending::Disconnected);
    }
    fn network_message(&mut self, _: &mut ClientContext<'_>, m: Said) {
        self.line(m.time, &format!("<{}> {}", s(&m.who), s(&m.message)));
    }
    fn network_private(&mut self, _: &mut ClientContext<'_>, m: Private) {
        self.line(
            m.time,
            &format!("*{}* -> {}: {}", s(&m.who), s(&m.to), s(&m.message)),
        );
    }
    fn network_players(&mut self, _: &mut ClientContext<'_>, m: Players) {
        let room = m
            .room
            .map(|r| format!("#{}", s(&r)))
            .unwrap_or_else(|| "the room".into());
        let names: Vec<String> = m.players.iter().map(|p| s(p)).collect();
        self.line(None, &format!("* in {room}: {}", names.join(", ")));
    }
    fn network_members(&mut self, _: &mut ClientContext<'_>, m: Members) {
        let mut parts = vec![format!("{} members", m.count)];
        if !m.joined.is_empty() {
            parts.push(format!(
                "joined: {}",
                m.joined.iter().map(|n| s(n)).collect::<Vec<_>>().join(", ")
            ));
        }
        if !m.left.is_empty() {
            parts.push(format!(
                "left: {}",
                m.left.iter().map(|n| s(n)).collect::<Vec<_>>().join(", ")
            ));
        }
        for (a, b) in &m.renamed {
            parts.push(format!("{} is now {}", s(a), s(b)));
        }
        self.line(m.time, &format!("* #{}: {}", s(&m.room), parts.join("; ")));
    }
    fn network_joined(&mut self, _: &mut ClientContext<'_>, m: Joined) {
        self.line(
            m.time,
            &format!("* {} joined #{}", s(&m.nickname), s(&m.room)),
        );
    }
    fn network_left(&mut self, _: &mut ClientContext<'_>, m: Left) {
        self.line(
            m.time,
            &format!(
                "* {} left #{} ({})",
                s(&m.nickname),
                s(&m.room),
                s(&m.reason)
            ),
        );
    }
    fn network_renamed(&mut self, _: &mut ClientContext<'_>, m: Renamed) {
        if m.from == self.nick {
            self.nick = m.to.clone();
            self.line(m.time, &format!("* you are now known as {}", s(&m.to)));
        } else {
            self.line(
                m.time,
                &format!("* {} is now known as {}", s(&m.from), s(&m.to)),
            );
        }
    }
    fn network_welcome(&mut self, _: &mut ClientContext<'_>, m: Welcome) {
        self.nick = m.nickname;
        self.room = m.room;
        let text = format!(
            "* you are {} in #{} ({} members)",
            s(&self.nick),
            s(&self.room),
            m.members
        );
        self.line(m.time, &text);
    }
    fn network_who(&mut self, _: &mut ClientContext<'_>, m: WhoReply) {
        self.line(None, &format!("* {} user(s):", m.users.len()));
        for u in m.users {
            self.plain(&format!("    {} (#{})", s(&u.nickname), s(&u.room)));
        }
    }
    fn network_rooms(&mut self, _: &mut ClientContext<'_>, m: RoomsReply) {
        self.line(None, &format!("* {} room(s):", m.rooms.len()));
        for r in m.rooms {
            self.plain(&format!("    #{} ({} members)", s(&r.name), r.members));
        }
    }
    fn network_op(&mut self, _: &mut ClientContext<'_>, _: &Message) {
        self.line(None, "* you are an operator now");
    }
    fn network_kicked(&mut self, _: &mut ClientContext<'_>, m: Kicked) {
        self.line(
            m.time,
            &format!("! you were kicked by {}: {}", s(&m.by), s(&m.reason)),
        );
    }
    fn network_refused(&mut self, _: &mut ClientContext<'_>, m: Refused) {
        let what = if m.request.is_empty() {
            "request".to_owned()
        } else {
            s(&m.request)
        };
        self.line(None, &format!("! {what} refused: {}", s(&m.text)));
    }
}

handler!(ChatView, "socketConnect" => network_socket_connect);
handler!(ChatView, "error" => network_error);
handler!(ChatView, "disconnected" => network_disconnected);
handler!(ChatView, "message" => network_message);
handler!(ChatView, "private" => network_private);
handler!(ChatView, "players" => network_players);
handler!(ChatView, "members" => network_members);
handler!(ChatView, "joined" => network_joined);
handler!(ChatView, "left" => network_left);
handler!(ChatView, "renamed" => network_renamed);
handler!(ChatView, "welcome" => network_welcome);
handler!(ChatView, "who" => network_who);
handler!(ChatView, "rooms" => network_rooms);
handler!(ChatView, "op" => network_op);
handler!(ChatView, "kicked" => network_kicked);
handler!(ChatView, "refused" => network_refused);

impl Listener for ChatView {
    fn out_of_band(&mut self, _: &mut ClientContext<'_>, oob: netlib::OutOfBand) {
        self.line(
            None,
            &format!(
                "! unreadable message from the server: {}",
                s(&oob.error.to_string())
            ),
        );
    }

    fn unhandled(&mut self, _: &mut ClientContext<'_>, msg: &Message) {
        if msg.action() != "connected" {
            self.line(None, &format!("* {}", s(&msg.as_value().to_string())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(
            Command::parse("hello there"),
            Some(Command::Say("hello there".into()))
        );
        assert_eq!(Command::parse("   "), None);
        assert_eq!(
            Command::parse("//me waves"),
            Some(Command::Say("/me waves".into()))
        );
        assert_eq!(
            Command::parse("/nick bob"),
            Some(Command::Nick("bob".into()))
        );
        assert_eq!(
            Command::parse("/msg bob hi there"),
            Some(Command::Private {
                to: "bob".into(),
                text: "hi there".into()
            })
        );
        assert!(matches!(
            Command::parse("/msg bob"),
            Some(Command::Invalid(_))
        ));
        assert_eq!(Command::parse("/who"), Some(Command::Who(None)));
        assert_eq!(
            Command::parse("/who games"),
            Some(Command::Who(Some("games".into())))
        );
        assert_eq!(
            Command::parse("/join #games"),
            Some(Command::Join("games".into()))
        );
        assert_eq!(Command::parse("/part"), Some(Command::Part));
        assert_eq!(Command::parse("/rooms"), Some(Command::Rooms));
        assert_eq!(
            Command::parse("/op secret"),
            Some(Command::Op("secret".into()))
        );
        assert_eq!(
            Command::parse("/kick bob being rude"),
            Some(Command::Kick {
                nick: "bob".into(),
                reason: Some("being rude".into())
            })
        );
        assert_eq!(
            Command::parse("/kick bob"),
            Some(Command::Kick {
                nick: "bob".into(),
                reason: None
            })
        );
        assert_eq!(
            Command::parse("/quit bye all"),
            Some(Command::Quit(Some("bye all".into())))
        );
        assert_eq!(Command::parse("/quit"), Some(Command::Quit(None)));
        assert_eq!(Command::parse("/help"), Some(Command::Help));
        assert!(
            matches!(Command::parse("/frobnicate"), Some(Command::Invalid(t)) if t.contains("/frobnicate"))
        );
    }

    #[test]
    fn commands_become_protocol_messages() {
        assert_eq!(
            Command::Say("hi".into()).to_message(),
            Some(json!({"action": "message", "message": "hi"}))
        );
        assert_eq!(
            Command::Nick("bob".into()).to_message(),
            Some(json!({"action": "nickname", "nickname": "bob"}))
        );
        assert_eq!(Command::Help.to_message(), None);
    }
}
