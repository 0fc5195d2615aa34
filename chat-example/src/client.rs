//! The terminal client's logic, apart from the terminal: command parsing ([`Command`]) and the
//! listener ([`ChatView`]) that turns server events into printed lines. Every string received
//! goes through [`sanitize`](crate::sanitize::sanitize()) before it is printed.

use std::io::Write;

use chrono::{Local, TimeZone};
use netlib::{handler, ChannelId, ClientContext, Listener, Message};
use serde::Deserialize;

use crate::protocol::{
    Join, Kick, Op, Quit, Request, Rooms, Say, SayPrivately, ServerMsg, SetNickname, Who,
};
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

    /// The request this command sends, if it sends one.
    pub fn to_request(&self) -> Option<Request> {
        Some(match self {
            Command::Say(text) => Request::Message(Say {
                message: text.clone(),
            }),
            Command::Nick(n) => Request::Nickname(SetNickname {
                nickname: n.clone(),
            }),
            Command::Private { to, text } => Request::Private(SayPrivately {
                to: to.clone(),
                message: text.clone(),
            }),
            Command::Who(room) => Request::Who(Who {
                room: room.clone(),
                page: None,
            }),
            Command::Join(r) => Request::Join(Join { room: r.clone() }),
            Command::Part => Request::Part,
            Command::Rooms => Request::Rooms(Rooms::default()),
            Command::Op(p) => Request::Op(Op {
                password: p.clone(),
            }),
            Command::Kick { nick, reason } => Request::Kick(Kick {
                nickname: nick.clone(),
                reason: reason.clone(),
            }),
            Command::Quit(reason) => Request::Quit(Quit {
                reason: reason.clone(),
            }),
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
    /// Our channel id, from `connected` (or `welcome`): notices about us carry it.
    pub me: Option<ChannelId>,
}

impl ChatView {
    /// A view printing to `out`.
    pub fn new(out: Box<dyn Write>) -> Self {
        ChatView {
            out,
            ending: None,
            nick: crate::protocol::ANONYMOUS.into(),
            room: String::new(),
            me: None,
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
    fn network_connected(&mut self, _: &mut ClientContext<'_>, m: &Message) {
        self.me = m
            .get("id")
            .and_then(|v| v.as_u64())
            .map(ChannelId::from_serial);
    }

    /// Shows one server message.
    fn show(&mut self, m: ServerMsg<'_>) {
        match m {
            ServerMsg::Message {
                message, who, time, ..
            } => self.line(Some(time), &format!("<{}> {}", s(&who), s(&message))),
            ServerMsg::Private {
                message,
                who,
                to,
                time,
                ..
            } => self.line(
                Some(time),
                &format!("*{}* -> {}: {}", s(&who), s(&to), s(&message)),
            ),
            ServerMsg::Players { players, room } => {
                let room = if room.is_empty() {
                    "the room".to_owned()
                } else {
                    format!("#{}", s(&room))
                };
                let names: Vec<String> = players.iter().map(|p| s(p)).collect();
                self.line(None, &format!("* in {room}: {}", names.join(", ")));
            }
            ServerMsg::Members {
                room,
                count,
                joined,
                left,
                renamed,
                time,
            } => {
                let list = |v: &[String]| v.iter().map(|n| s(n)).collect::<Vec<_>>().join(", ");
                let mut parts = vec![format!("{count} members")];
                if !joined.is_empty() {
                    parts.push(format!("joined: {}", list(&joined)));
                }
                if !left.is_empty() {
                    parts.push(format!("left: {}", list(&left)));
                }
                for (a, b) in &renamed {
                    parts.push(format!("{} is now {}", s(a), s(b)));
                }
                self.line(
                    Some(time),
                    &format!("* #{}: {}", s(&room), parts.join("; ")),
                );
            }
            ServerMsg::Joined {
                nickname,
                room,
                time,
                ..
            } => self.line(
                Some(time),
                &format!("* {} joined #{}", s(&nickname), s(&room)),
            ),
            ServerMsg::Left {
                nickname,
                room,
                reason,
                time,
                ..
            } => self.line(
                Some(time),
                &format!("* {} left #{} ({})", s(&nickname), s(&room), s(&reason)),
            ),
            ServerMsg::Renamed {
                from, to, id, time, ..
            } => {
                if Some(id) == self.me {
                    self.nick = to.to_string();
                    self.line(Some(time), &format!("* you are now known as {}", s(&to)));
                } else {
                    self.line(
                        Some(time),
                        &format!("* {} is now known as {}", s(&from), s(&to)),
                    );
                }
            }
            ServerMsg::Welcome {
                nickname,
                id,
                room,
                members,
                time,
            } => {
                self.me = Some(id);
                self.nick = nickname.into_owned();
                self.room = room.into_owned();
                let text = format!(
                    "* you are {} in #{} ({} members)",
                    s(&self.nick),
                    s(&self.room),
                    members
                );
                self.line(Some(time), &text);
            }
            ServerMsg::Who {
                users,
                page,
                pages,
                total,
                ..
            } => {
                let more = if pages > 1 {
                    format!(" (page {page} of {pages})")
                } else {
                    String::new()
                };
                self.line(None, &format!("* {total} user(s){more}:"));
                for u in users {
                    self.plain(&format!("    {} (#{})", s(&u.nickname), s(&u.room)));
                }
            }
            ServerMsg::Rooms { rooms, total, .. } => {
                self.line(None, &format!("* {total} room(s):"));
                for r in rooms {
                    self.plain(&format!("    #{} ({} members)", s(&r.name), r.members));
                }
            }
            ServerMsg::Help { actions } => {
                let list: Vec<String> = actions.iter().map(|a| s(a)).collect();
                self.line(
                    None,
                    &format!("* the server's actions: {}", list.join(", ")),
                );
            }
            ServerMsg::Op { .. } => self.line(None, "* you are an operator now"),
            ServerMsg::Kicked { by, reason, time } => self.line(
                Some(time),
                &format!("! you were kicked by {}: {}", s(&by), s(&reason)),
            ),
            ServerMsg::Refused { request, text, .. } => {
                let what = if request.is_empty() {
                    "request".to_owned()
                } else {
                    s(&request)
                };
                self.line(None, &format!("! {what} refused: {}", s(&text)));
            }
        }
    }
}

handler!(ChatView, "socketConnect" => network_socket_connect);
handler!(ChatView, "error" => network_error);
handler!(ChatView, "disconnected" => network_disconnected);
handler!(ChatView, "connected" => network_connected);

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

    /// Every server message but the synthetic events: shown if it is one of the protocol's,
    /// printed raw (sanitized) otherwise.
    fn unhandled(&mut self, _: &mut ClientContext<'_>, msg: &Message) {
        match msg.parse::<ServerMsg<'static>>() {
            Ok(m) => self.show(m),
            Err(_) => self.line(None, &format!("* {}", s(&msg.as_value().to_string()))),
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
    fn commands_become_requests() {
        assert_eq!(
            Command::Say("hi".into()).to_request(),
            Some(Request::Message(Say {
                message: "hi".into()
            }))
        );
        assert_eq!(
            Command::Kick {
                nick: "eve".into(),
                reason: None
            }
            .to_request(),
            Some(Request::Kick(Kick {
                nickname: "eve".into(),
                reason: None
            }))
        );
        assert_eq!(Command::Help.to_request(), None);
    }

    /// Prints to a buffer the test reads.
    #[derive(Clone, Default)]
    struct Screen(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
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
    fn a_line_break_in_received_text_cannot_start_a_printed_line() {
        use crate::protocol::c;
        let screen = Screen::default();
        let mut view = ChatView::new(Box::new(screen.clone()));
        view.show(ServerMsg::Message {
            message: c("hi\u{2028}<server> x\u{2029}y\u{85}z\u{b}\u{c}w\rv\n"),
            who: c("mallory"),
            room: c("lobby"),
            time: 0,
        });
        view.show(ServerMsg::Kicked {
            by: c("op\u{2028}"),
            reason: c("a\u{2029}b"),
            time: 0,
        });
        let out = String::from_utf8(screen.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out:?}");
        assert!(
            lines[0]
                .ends_with("<mallory> hi\u{fffd}<server> x\u{fffd}y\u{fffd}z\u{fffd}w\u{fffd}v"),
            "{out:?}"
        );
        assert!(lines[1].ends_with("by op: a\u{fffd}b"), "{out:?}");
        assert!(
            !out.contains(|ch: char| ch != '\n' && crate::sanitize::is_line_break(ch)),
            "{out:?}"
        );
    }
}
