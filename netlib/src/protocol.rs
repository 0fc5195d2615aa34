//! The actions netlib itself puts on the wire, and the codes of its `error` messages: one place
//! for each name and number (PodSixNet's event names, Linux errno values as PodSixNet reports
//! socket errors). Handlers match on these, e.g. `handler!(Bot, "socketConnect" => on_open)`.

use serde_json::json;

use crate::message::Message;

/// Sent by a server to each new channel (as PodSixNet's `handle_accept`), with `"id"` when
/// the server [announces ids](crate::ServerConfig::announce_id).
pub const CONNECTED: &str = "connected";
/// Delivered to a client's listeners when its connection opens (PodSixNet's).
pub const SOCKET_CONNECT: &str = "socketConnect";
/// Delivered to a client's listeners when its connection closes (PodSixNet's).
pub const DISCONNECTED: &str = "disconnected";
/// An error: `{"action": "error", "error": [code, "text"]}` (PodSixNet's shape), sent by a
/// server about a message, or delivered to a client's listeners about the connection.
pub const ERROR: &str = "error";
/// A server's heartbeat ping (never reaches handlers).
pub const PING: &str = "netlib.ping";
/// A netlib client's answer to [`PING`] (never reaches handlers).
pub const PONG: &str = "netlib.pong";

/// A resumable session's set-up (see the README's "Sessions"): a netlib client asks for one
/// (`{"action": "netlib.session"}`, or with `token`, `received` and `next` to resume) and the
/// server answers with `token`, `id`, `recovered`, `received` and `next`. Never reaches
/// server handlers; a client's listeners get the server's answer.
pub const SESSION: &str = "netlib.session";
/// `{"action": "netlib.ack", "received": n}`: the sender of this frame received every
/// application frame up to number `n` of its session (never reaches handlers).
pub const ACK: &str = "netlib.ack";
/// A session's end on purpose, either way: a netlib client that closes sends it (its session
/// ends with the connection instead of waiting to be resumed; never reaches server handlers),
/// and a server that closes a session's channel (a kick, a shutdown) sends it before closing
/// (a client's listeners get it as an event before `disconnected`; the client does not resume).
pub const BYE: &str = "netlib.bye";

/// `"netlib.at": [room, offset]`, added to a room message for a session's client when the
/// server keeps rooms in streams (a cluster with room streams): the room and the message's
/// offset in its stream (`"<ms>-<seq>"`). The client keeps the last offset per room and
/// sends them when it resumes on another node (as Centrifugo's recovery by epoch and
/// offset); netlib's clients strip it before listeners see the message.
pub const AT: &str = "netlib.at";

/// `error` code: a message that does not fit its handler, or whose handler failed (EINVAL).
pub const EINVAL: i32 = 22;
/// `error` code: the server is full (EUSERS).
pub const EUSERS: i32 = 87;
/// `error` code: a frame over the size limit (EMSGSIZE).
pub const EMSGSIZE: i32 = 90;
/// `error` code, client side: the server does not read and the outbound queue passed its
/// limit (ENOBUFS).
pub const ENOBUFS: i32 = 105;
/// `error` code, client side: the server's name does not resolve (PodSixNet's -2).
pub const ENONAME: i32 = -2;

/// `{"action": "error", "error": [code, text]}`.
pub(crate) fn error(code: i32, text: &str) -> Message {
    Message::from_value(json!({"action": ERROR, "error": [code, text]}))
        .expect("an object with a string action")
}

/// `{"action": "netlib.ack", "received": n}`.
pub(crate) fn ack(received: u64) -> Message {
    Message::from_value(json!({"action": ACK, "received": received}))
        .expect("an object with a string action")
}

/// A server's answer to [`SESSION`]: the session's `token` (32 hex digits), the channel's
/// `id`, whether it was `recovered`, the number of the last frame the server `received` from
/// the client, and the number of the `next` frame it sends; `reason` says why a resume was
/// refused; `epoch` is the cluster's epoch, with room streams.
pub(crate) fn session_reply(
    token: u128,
    id: u64,
    recovered: bool,
    (received, next): (u64, u64),
    reason: Option<&str>,
    epoch: Option<&str>,
) -> Message {
    let mut m = json!({
        "action": SESSION,
        "token": format!("{token:032x}"),
        "id": id,
        "recovered": recovered,
        "received": received,
        "next": next,
    });
    if let Some(r) = reason {
        m["reason"] = r.into();
    }
    if let Some(e) = epoch {
        m["epoch"] = e.into();
    }
    Message::from_value(m).expect("an object with a string action")
}

/// A server without sessions answers a session request so: `{"action": "netlib.session",
/// "off": true}` (the client keeps nothing for a resume).
pub(crate) fn sessions_off() -> Message {
    Message::from_value(json!({"action": SESSION, "off": true}))
        .expect("an object with a string action")
}
