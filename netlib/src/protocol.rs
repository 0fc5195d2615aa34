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
