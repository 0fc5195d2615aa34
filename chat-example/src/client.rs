//! The terminal client's logic, apart from the terminal: the listener ([`ChatView`]) that turns
//! server events into printed lines, and the help for its commands ([`HELP`]). Typed lines are
//! parsed by the chat's one command parser, [`crate::command`], in its
//! [`Dialect::Slash`](crate::command::Dialect::Slash) (the line protocol uses the same parser),
//! and what both front ends print alike comes from [`crate::render`]. Every string received
//! goes through [`sanitize`](crate::sanitize::sanitize()) before it is printed.

use std::io::Write;

use chrono::{Local, TimeZone};
use netlib::{handler, ChannelId, ClientContext, Listener, Message};
use serde::Deserialize;

use crate::protocol::{Join, Request, ServerMsg, SetNickname};
use crate::render::{self, list, page_of};
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
    /// The server gave us a resumable session: a lost connection is resumed, not the end.
    session: bool,
    /// The server ended the session on purpose (`netlib.bye`: a kick, a shutdown).
    bye: bool,
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
            session: false,
            bye: false,
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
        if !self.reconnecting() {
            self.ending = Some(Ending::Failed);
        }
    }
    fn network_disconnected(&mut self, _: &mut ClientContext<'_>, _: &Message) {
        if self.reconnecting() {
            self.line(
                None,
                "* connection lost; reconnecting (nothing will be lost)",
            );
            return;
        }
        self.line(
            None,
            "* disconnected: the connection to the server is closed",
        );
        self.ending.get_or_insert(Ending::Disconnected);
    }
    /// Whether a lost connection is being resumed rather than ending the client.
    fn reconnecting(&self) -> bool {
        self.session && !self.bye && self.ending.is_none()
    }
    /// The server's answer to the session request (see netlib's README, "Sessions").
    fn network_session(&mut self, ctx: &mut ClientContext<'_>, m: &Message) {
        if m.get("off").and_then(|v| v.as_bool()) == Some(true) {
            return; // a server without sessions: a lost connection ends the client
        }
        let recovered = m.get("recovered").and_then(|v| v.as_bool()) == Some(true);
        self.me = m
            .get("id")
            .and_then(|v| v.as_u64())
            .map(ChannelId::from_serial);
        if !std::mem::replace(&mut self.session, true) {
            return; // the first connection's session
        }
        if recovered {
            self.line(None, "* reconnected: nothing was lost");
            return;
        }
        let why = m
            .get_str("reason")
            .unwrap_or("the server forgot the session");
        self.line(
            None,
            &format!(
                "* reconnected as a new session ({}); some messages may be missing",
                s(why)
            ),
        );
        // The new channel is anonymous in the lobby: take our name and room back.
        if self.nick != crate::protocol::ANONYMOUS {
            let _ = ctx.send(&Request::Nickname(SetNickname {
                nickname: self.nick.clone(),
            }));
        }
        if !self.room.is_empty() && self.room != crate::protocol::DEFAULT_ROOM {
            let _ = ctx.send(&Request::Join(Join {
                room: self.room.clone(),
            }));
        }
    }
    fn network_bye(&mut self, _: &mut ClientContext<'_>, _: &Message) {
        self.bye = true;
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
                self.line(None, &format!("* in {room}: {}", list(&players)));
            }
            ServerMsg::Members {
                room,
                count,
                joined,
                left,
                renamed,
                time,
            } => {
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
                &format!("* {}", render::left(&nickname, "#", &room, &reason)),
            ),
            ServerMsg::Renamed {
                from, to, id, time, ..
            } => {
                if Some(id) == self.me {
                    self.nick = to.to_string();
                    self.line(Some(time), &format!("* you are now known as {}", s(&to)));
                } else {
                    self.line(Some(time), &format!("* {}", render::renamed(&from, &to)));
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
                self.line(None, &format!("* {total} user(s){}:", page_of(page, pages)));
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
                self.line(None, &format!("* the server's actions: {}", list(&actions)));
            }
            ServerMsg::Op { .. } => self.line(None, "* you are an operator now"),
            ServerMsg::Kicked { by, reason, time } => self.line(
                Some(time),
                &format!("! you were {}", render::kicked_by(&by, &reason)),
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
handler!(ChatView, netlib::protocol::SESSION => network_session);
handler!(ChatView, netlib::protocol::BYE => network_bye);

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
