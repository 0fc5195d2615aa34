//! [`Config`]: the wire format and the limits of a server or client, in one place.

use std::time::Duration;

use crate::codec::Codec;
use crate::frame::{Framing, DEFAULT_MAX_FRAME_SIZE};

/// Wire format and resource limits, shared by [`Server`](crate::Server) and
/// [`Client`](crate::Client). `Config::default()` speaks PodSixNet's JSON mode.
///
/// ```
/// use netlib::{Config, Framing};
/// let config = Config::default()
///     .framing(Framing::LengthPrefix)
///     .max_frame_size(64 * 1024);
/// assert_eq!(config.max_frame_size, 65536);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// How frames are delimited. Default: [`Framing::Terminator`] (PodSixNet's `\0---\0`).
    pub framing: Framing,
    /// How payloads are encoded. Default: [`Codec::Json`].
    pub codec: Codec,
    /// Largest frame payload accepted or sent, in bytes. Default 1 MiB (1 048 576).
    /// A peer that sends a larger frame is sent an `error` frame and closed; nothing beyond the
    /// limit is buffered. Sending a larger message fails with `Error::FrameTooLarge`.
    pub max_frame_size: usize,
    /// Most unwritten bytes queued for one peer. Default 8 MiB. A peer that does not read is
    /// closed with `CloseReason::OutboundOverflow` when its queue passes this.
    pub max_outbound_bytes: usize,
    /// Server only: most channels at once. Default 10 000. A client over the limit is sent an
    /// `error` frame and closed.
    pub max_connections: usize,
    /// Bytes read from one connection per pump before the others get their turn. Default
    /// 256 KiB. The rest is read on the next pump, so one flooding peer cannot starve others.
    pub read_budget: usize,
    /// Server only: the listen backlog, connections the kernel holds before they are accepted.
    /// Default 4096 (Linux caps it at `net.core.somaxconn`). The standard library's 128 drops
    /// connections during bursts of connects, which then wait a 1 s SYN retry.
    pub listen_backlog: u32,
    /// Server only: ping idle clients and close silent ones. Default `None` (off), since
    /// PodSixNet clients do not answer pings.
    pub heartbeat: Option<Heartbeat>,
}

/// The server's heartbeat: a channel that sent nothing for `interval` is sent
/// `{"action": "netlib.ping"}`; netlib clients answer `{"action": "netlib.pong"}` by themselves
/// (neither reaches handlers). A channel silent for `timeout` is closed with
/// [`CloseReason::Timeout`](crate::CloseReason::Timeout). Any data from the peer counts as a sign
/// of life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Silence after which a ping is sent.
    pub interval: Duration,
    /// Silence after which the channel is closed; should be a few times `interval`.
    pub timeout: Duration,
}

/// The ping a server sends (see [`Heartbeat`]).
pub const PING_ACTION: &str = "netlib.ping";
/// The answer netlib clients send to [`PING_ACTION`].
pub const PONG_ACTION: &str = "netlib.pong";

impl Default for Config {
    fn default() -> Self {
        Config {
            framing: Framing::Terminator,
            codec: Codec::Json,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_outbound_bytes: 8 << 20,
            max_connections: 10_000,
            read_budget: 256 << 10,
            listen_backlog: 4096,
            heartbeat: None,
        }
    }
}

impl Config {
    /// Sets the framing.
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Sets the codec.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Sets the largest frame payload in bytes.
    ///
    /// # Panics
    /// Panics if `bytes` is 0 or does not fit the 4-byte length prefix (over `u32::MAX`).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        assert!(
            bytes > 0 && bytes <= u32::MAX as usize,
            "max_frame_size out of range"
        );
        self.max_frame_size = bytes;
        self
    }

    /// Sets the most unwritten bytes queued per peer.
    pub fn max_outbound_bytes(mut self, bytes: usize) -> Self {
        self.max_outbound_bytes = bytes;
        self
    }

    /// Sets the most channels a server holds at once.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Turns the server's heartbeat on (see [`Heartbeat`]).
    ///
    /// # Panics
    /// Panics if `interval` is zero or `timeout` is not longer than `interval`.
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        assert!(
            !interval.is_zero() && timeout > interval,
            "heartbeat: need 0 < interval < timeout"
        );
        self.heartbeat = Some(Heartbeat { interval, timeout });
        self
    }

    /// Sets the listen backlog (connections).
    pub fn listen_backlog(mut self, n: u32) -> Self {
        self.listen_backlog = n;
        self
    }

    /// Sets the bytes read from one connection per pump.
    ///
    /// # Panics
    /// Panics if `bytes` is 0.
    pub fn read_budget(mut self, bytes: usize) -> Self {
        assert!(bytes > 0, "read_budget must be positive");
        self.read_budget = bytes;
        self
    }
}
