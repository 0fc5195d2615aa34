//! [`ServerConfig`] and [`ClientConfig`]: the wire format, limits and clock of a server or a
//! client. Fields are private: the builder methods check every value, so a config is always
//! valid.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::codec::Codec;
use crate::frame::{Framing, DEFAULT_MAX_FRAME_SIZE};

use crate::limits::Rate;

/// The default of [`ServerConfig::max_line_length`]: 8 KiB.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 8 << 10;

/// The resume window of Socket.IO's connection state recovery, a good default for
/// [`ServerConfig::sessions`]: 2 minutes.
pub const DEFAULT_RESUME_WINDOW: Duration = Duration::from_secs(120);

/// The longest a new connection's `connected` hook waits for its first frame on a server with
/// [sessions](ServerConfig::sessions) (the frame may ask to resume another channel): 2 s,
/// enough for a WebSocket client's first message one round trip after its upgrade. Any frame
/// ends the wait at once.
pub const HELLO_WAIT: Duration = Duration::from_secs(2);

/// The default of [`ServerConfig::max_kept_bytes`] and [`ClientConfig::max_kept_bytes`]: 1 MiB.
pub const DEFAULT_MAX_KEPT_BYTES: usize = 1 << 20;

/// Most channel slots a server may hold (`max_connections`), so that a [`ChannelId`]'s table
/// index fits its 24 bits.
///
/// [`ChannelId`]: crate::ChannelId
pub(crate) const MAX_SLOTS: usize = 1 << 24;

/// A client's TLS trust settings (set by `ClientConfig::tls`, in `transport::tls`), compared by
/// identity.
#[derive(Clone)]
pub(crate) struct Trust(pub(crate) Arc<rustls::ClientConfig>);

impl PartialEq for Trust {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Trust {}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Trust(..)")
    }
}

/// The settings behind [`ServerConfig`] and [`ClientConfig`], read by the drivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    framing: Framing,
    codec: Codec,
    max_frame_size: usize,
    max_line_length: usize,
    max_outbound_bytes: usize,
    max_connections: usize,
    read_budget: usize,
    listen_backlog: u32,
    heartbeat: Option<Heartbeat>,
    clock: Clock,
    announce_id: bool,
    reply_invalid: bool,
    inbound_messages: Option<Rate>,
    inbound_bytes: Option<Rate>,
    outbound_soft: Option<(usize, Duration)>,
    memory_budget: Option<usize>,
    frame_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    handshake_timeout: Duration,
    max_connections_per_address: Option<usize>,
    max_handshakes_per_address: Option<usize>,
    connect_rate_per_address: Option<Rate>,
    max_rooms_per_channel: usize,
    room_history: usize,
    resume_window: Option<Duration>,
    max_kept_bytes: usize,
    ask_session: bool,
    reconnect: Option<(Duration, Duration)>,
    tls: Option<Trust>,
}

/// The server's heartbeat: a channel that sent nothing for `interval` is sent
/// `{"action": "netlib.ping"}`; netlib clients answer `{"action": "netlib.pong"}` by themselves
/// (neither reaches handlers). A channel silent for `timeout` is closed with
/// [`CloseReason::Timeout`](crate::CloseReason::Timeout). Any data from the peer counts as a sign
/// of life. On a WebSocket channel the ping is a WebSocket Ping frame, which browsers answer by
/// themselves (see [`transport::ws`](crate::transport::ws)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Silence after which a ping is sent.
    pub interval: Duration,
    /// Silence after which the channel is closed; longer than `interval`.
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            framing: Framing::Terminator,
            codec: Codec::Json,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            max_outbound_bytes: 8 << 20,
            max_connections: 10_000,
            read_budget: 256 << 10,
            listen_backlog: 4096,
            heartbeat: None,
            clock: Clock::System,
            announce_id: false,
            reply_invalid: true,
            inbound_messages: None,
            inbound_bytes: None,
            outbound_soft: None,
            memory_budget: None,
            frame_timeout: None,
            idle_timeout: None,
            handshake_timeout: Duration::from_secs(10),
            max_connections_per_address: None,
            max_handshakes_per_address: None,
            connect_rate_per_address: None,
            max_rooms_per_channel: 64,
            room_history: 0,
            resume_window: None,
            max_kept_bytes: DEFAULT_MAX_KEPT_BYTES,
            ask_session: false,
            reconnect: None,
            tls: None,
        }
    }
}

impl Config {
    pub(crate) fn get_resume_window(&self) -> Option<Duration> {
        self.resume_window
    }

    pub(crate) fn get_max_kept_bytes(&self) -> usize {
        self.max_kept_bytes
    }

    pub(crate) fn get_ask_session(&self) -> bool {
        self.ask_session
    }

    pub(crate) fn get_tls(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.tls.as_ref().map(|t| &t.0)
    }

    pub(crate) fn set_tls(&mut self, tls: Arc<rustls::ClientConfig>) {
        self.tls = Some(Trust(tls));
    }

    pub(crate) fn get_reconnect(&self) -> Option<(Duration, Duration)> {
        self.reconnect
    }

    pub(crate) fn get_max_rooms_per_channel(&self) -> usize {
        self.max_rooms_per_channel
    }

    pub(crate) fn get_room_history(&self) -> usize {
        self.room_history
    }

    /// The most connections per client address (channels and handshakes), if limited.
    pub(crate) fn get_max_connections_per_address(&self) -> Option<usize> {
        self.max_connections_per_address
    }

    /// The most handshakes in progress per client address, if limited.
    pub(crate) fn get_max_handshakes_per_address(&self) -> Option<usize> {
        self.max_handshakes_per_address
    }

    /// The rate of new connections per client address (per second, burst), if limited.
    pub(crate) fn get_connect_rate_per_address(&self) -> Option<Rate> {
        self.connect_rate_per_address
    }

    /// The handshake timeout.
    pub(crate) fn get_handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The inbound message rate limit, if on.
    pub(crate) fn get_rate_limit(&self) -> Option<Rate> {
        self.inbound_messages
    }

    /// The inbound byte rate limit, if on.
    pub(crate) fn get_byte_rate_limit(&self) -> Option<Rate> {
        self.inbound_bytes
    }

    /// The soft outbound limit and its grace period, if on.
    pub(crate) fn get_outbound_soft_limit(&self) -> Option<(usize, Duration)> {
        self.outbound_soft
    }

    /// The total memory budget in bytes, if on.
    pub(crate) fn get_memory_budget(&self) -> Option<usize> {
        self.memory_budget
    }

    /// The unfinished-frame timeout, if on.
    pub(crate) fn get_frame_timeout(&self) -> Option<Duration> {
        self.frame_timeout
    }

    /// The idle timeout, if on.
    pub(crate) fn get_idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// The framing.
    pub(crate) fn get_framing(&self) -> Framing {
        self.framing
    }

    /// The codec.
    pub(crate) fn get_codec(&self) -> Codec {
        self.codec.clone()
    }

    /// The largest frame payload in bytes.
    pub(crate) fn get_max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// The longest line accepted from a line peer, in bytes.
    pub(crate) fn get_max_line_length(&self) -> usize {
        self.max_line_length
    }

    /// The most unwritten bytes queued per peer.
    pub(crate) fn get_max_outbound_bytes(&self) -> usize {
        self.max_outbound_bytes
    }

    /// The most channels a server holds at once.
    pub(crate) fn get_max_connections(&self) -> usize {
        self.max_connections
    }

    /// Bytes read from one connection per pump.
    pub(crate) fn get_read_budget(&self) -> usize {
        self.read_budget
    }

    /// The listen backlog (connections).
    pub(crate) fn get_listen_backlog(&self) -> u32 {
        self.listen_backlog
    }

    /// The heartbeat, if on.
    pub(crate) fn get_heartbeat(&self) -> Option<Heartbeat> {
        self.heartbeat
    }

    /// The clock.
    pub(crate) fn get_clock(&self) -> &Clock {
        &self.clock
    }

    /// Whether `connected` carries the channel id.
    pub(crate) fn get_announce_id(&self) -> bool {
        self.announce_id
    }

    /// Whether invalid messages are answered with an `error` message.
    pub(crate) fn get_reply_invalid(&self) -> bool {
        self.reply_invalid
    }
}

/// The settings a server and a client share (wire format, frame and queue sizes, read budget,
/// clock, timeouts on unfinished frames and full queues), as builder methods on both
/// [`ServerConfig`] and [`ClientConfig`].
macro_rules! shared_settings {
    () => {
        /// Sets the most bytes of sent messages a resumable session keeps until the other end
        /// acknowledges them ([`ServerConfig::sessions`], [`ClientConfig::session`]). Default
        /// 1 MiB. Past it the oldest are let go, and a resume that needs them is refused: the
        /// client starts a new session, told `"recovered": false`.
        ///
        /// # Panics
        /// If `bytes` is 0.
        #[must_use]
        pub fn max_kept_bytes(mut self, bytes: usize) -> Self {
            assert!(bytes > 0, "max_kept_bytes must be positive");
            self.0.max_kept_bytes = bytes;
            self
        }

        /// Sets how frames are delimited. Default: [`Framing::Terminator`] (PodSixNet's `\0---\0`).
        #[must_use]
        pub fn framing(mut self, framing: Framing) -> Self {
            self.0.framing = framing;
            self
        }

        /// Sets how payloads are encoded. Default: [`Codec::Json`] (PodSixNet's JSON mode).
        #[must_use]
        pub fn codec(mut self, codec: Codec) -> Self {
            self.0.codec = codec;
            self
        }

        /// Sets the largest frame payload accepted or sent, in bytes. Default 1 MiB (1 048 576).
        /// A peer that sends a larger frame is sent an `error` frame and closed; nothing beyond the
        /// limit is buffered. Sending a larger message fails with `EncodeError::FrameTooLarge`.
        ///
        /// # Panics
        /// If `bytes` is 0 or does not fit the 4-byte length prefix (over `u32::MAX`).
        #[must_use]
        pub fn max_frame_size(mut self, bytes: usize) -> Self {
            assert!(
                bytes > 0 && bytes <= u32::MAX as usize,
                "max_frame_size out of range"
            );
            self.0.max_frame_size = bytes;
            self
        }

        /// Sets the longest line accepted from a [`Framing::Line`] peer, in bytes without its line
        /// ending. Default 8 KiB (8192). A longer line is answered as an invalid frame (the
        /// out-of-band hook) and skipped up to its end without being buffered; a peer that sends
        /// several is closed (see [`Framing::Line`]). Lines sent are bounded by
        /// [`max_frame_size`](Self::max_frame_size).
        ///
        /// # Panics
        /// If `bytes` is 0.
        #[must_use]
        pub fn max_line_length(mut self, bytes: usize) -> Self {
            assert!(bytes > 0, "max_line_length must be positive");
            self.0.max_line_length = bytes;
            self
        }

        /// Sets the most unwritten bytes queued for one peer. Default 8 MiB. A peer that does not
        /// read is closed with `CloseReason::OutboundOverflow` when its queue passes this (on a
        /// client: the connection to the server).
        ///
        /// # Panics
        /// If `bytes` is 0.
        #[must_use]
        pub fn max_outbound_bytes(mut self, bytes: usize) -> Self {
            assert!(bytes > 0, "max_outbound_bytes must be positive");
            self.0.max_outbound_bytes = bytes;
            self
        }

        /// Sets the bytes read from one connection per pump before the others get their turn.
        /// Default 256 KiB. The rest is read on the next pump, so one flooding peer cannot starve
        /// others.
        ///
        /// # Panics
        /// If `bytes` is 0.
        #[must_use]
        pub fn read_budget(mut self, bytes: usize) -> Self {
            assert!(bytes > 0, "read_budget must be positive");
            self.0.read_budget = bytes;
            self
        }

        /// Sets the clock deadlines are measured on. Default [`Clock::System`]; tests pass a
        /// [`ManualClock`](crate::ManualClock).
        #[must_use]
        pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
            self.0.clock = clock.into();
            self
        }

        /// A soft outbound limit, as Redis's `client-output-buffer-limit`: a peer whose queue stays
        /// over `bytes` for longer than `grace` is closed with `CloseReason::OutboundOverflow`
        /// (`max_outbound_bytes` is the hard limit, closing at once). Default off.
        ///
        /// # Panics
        /// If `bytes` is 0.
        #[must_use]
        pub fn outbound_soft_limit(mut self, bytes: usize, grace: Duration) -> Self {
            assert!(bytes > 0, "outbound_soft_limit must be positive");
            self.0.outbound_soft = Some((bytes, grace));
            self
        }

        /// Closes a connection whose frame stays unfinished for longer than `timeout`
        /// (`CloseReason::FrameTimeout`): a peer cannot hold a buffer by sending half a frame.
        /// Default off.
        ///
        /// # Panics
        /// If `timeout` is zero.
        #[must_use]
        pub fn frame_timeout(mut self, timeout: Duration) -> Self {
            assert!(!timeout.is_zero(), "frame_timeout must be positive");
            self.0.frame_timeout = Some(timeout);
            self
        }
    };
}

/// A server's settings: its wire format, resource limits and clock. `ServerConfig::default()`
/// speaks PodSixNet's JSON mode with netlib's default limits.
///
/// Set values with the builder methods; each checks its value and panics on one that makes no
/// sense (e.g. a zero frame size), so a config is always valid. A client's settings are a
/// [`ClientConfig`]: the two cannot be mixed up.
///
/// ```
/// use netlib::{Framing, ServerConfig};
/// use std::time::Duration;
/// let config = ServerConfig::default()
///     .framing(Framing::LengthPrefix)
///     .max_frame_size(64 * 1024)
///     .heartbeat(Duration::from_secs(5), Duration::from_secs(15));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerConfig(pub(crate) Config);

/// A client's settings: its wire format, queue and frame limits and clock. `ClientConfig::default()`
/// speaks PodSixNet's JSON mode, as `ServerConfig::default()` does.
///
/// ```
/// use netlib::{ClientConfig, Codec};
/// let config = ClientConfig::default().codec(Codec::Rencode);
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientConfig(pub(crate) Config);

impl ClientConfig {
    shared_settings!();

    /// Asks the server for a resumable session (see the README's "Sessions"): after a lost
    /// connection, [`Client::reconnect`](crate::Client::reconnect) (or the automatic
    /// [`reconnect`](Self::reconnect)) gets the same channel back, with every message sent
    /// meanwhile, each once and in order, both ways. The server's answer reaches listeners as
    /// [`protocol::SESSION`](crate::protocol::SESSION) with `"recovered"` (false: a new
    /// session; the application resynchronises). A server without sessions, or PodSixNet,
    /// ignores the request. Default: off (the wire is PodSixNet's).
    #[must_use]
    pub fn session(mut self, on: bool) -> Self {
        self.0.ask_session = on;
        self
    }

    /// Connects again by itself after a lost connection (not after [`Client::close`](crate::Client::close)),
    /// waiting an exponential backoff with full jitter first: a random delay between 0 and
    /// `min(max, min * 2^attempt)`, `attempt` counting failures since the last connection that
    /// opened; as netlib.js. Default: off (call [`Client::reconnect`](crate::Client::reconnect)).
    ///
    /// # Panics
    /// If `min` is zero or `max` is less than `min`.
    #[must_use]
    pub fn reconnect(mut self, min: Duration, max: Duration) -> Self {
        assert!(!min.is_zero() && max >= min, "reconnect: 0 < min <= max");
        self.0.reconnect = Some((min, max));
        self
    }
}

impl ServerConfig {
    shared_settings!();

    /// Sets the most channels at once. Default 10 000. A client over the limit is
    /// sent `{"action": "error", "error": [87, "server full"]}` and closed. Connections still in
    /// their transport's handshake (a WebSocket upgrade, a page fetch) count too; one refused
    /// then is answered HTTP 503.
    ///
    /// # Panics
    /// If `n` is 0 or over 2^24 (16 777 216).
    #[must_use]
    pub fn max_connections(mut self, n: usize) -> Self {
        assert!(n > 0 && n <= MAX_SLOTS, "max_connections out of range");
        self.0.max_connections = n;
        self
    }

    /// Sets the listen backlog, connections the kernel holds before they are
    /// accepted. Default 4096 (Linux caps it at `net.core.somaxconn`); the standard library's
    /// 128 drops connections during bursts of connects, which then wait a 1 s SYN retry.
    ///
    /// # Panics
    /// If `n` is 0.
    #[must_use]
    pub fn listen_backlog(mut self, n: u32) -> Self {
        assert!(n > 0, "listen_backlog must be positive");
        self.0.listen_backlog = n;
        self
    }

    /// Turns the heartbeat on (see [`Heartbeat`]). Default off, since PodSixNet
    /// clients do not answer pings.
    ///
    /// # Panics
    /// If `interval` is zero or `timeout` is not longer than `interval`.
    #[must_use]
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        assert!(
            !interval.is_zero() && timeout > interval,
            "heartbeat: need 0 < interval < timeout"
        );
        self.0.heartbeat = Some(Heartbeat { interval, timeout });
        self
    }

    /// Whether the `connected` message tells the client its channel id, as
    /// `{"action": "connected", "id": 7}` (see [`ChannelId`](crate::ChannelId)). Default off:
    /// PodSixNet's message has no `id`.
    #[must_use]
    pub fn announce_id(mut self, on: bool) -> Self {
        self.0.announce_id = on;
        self
    }

    /// Whether a message that does not fit its typed handler (or whose handler
    /// returned an error) is answered to the peer with
    /// `{"action": "error", "error": [22, "<why>"], "for": "<action>"}` naming the action and
    /// the field. Default on; it is logged at warn either way.
    #[must_use]
    pub fn reply_invalid(mut self, on: bool) -> Self {
        self.0.reply_invalid = on;
        self
    }

    /// Limits the messages read from each connection: `per_second` on average, `burst` at once
    /// after a quiet time. A connection over its budget is not read until it has tokens again:
    /// its messages wait in its socket, and TCP backpressure slows the sender alone. Default off.
    ///
    /// # Panics
    /// If `per_second` or `burst` is 0.
    #[must_use]
    pub fn rate_limit(mut self, per_second: u32, burst: u32) -> Self {
        assert!(
            per_second > 0 && burst > 0,
            "rate_limit: need a positive rate and burst"
        );
        self.0.inbound_messages = Some(Rate { per_second, burst });
        self
    }

    /// Limits the bytes read from each connection (`per_second`, `burst` in bytes), as
    /// [`rate_limit`](Self::rate_limit) does messages. Default off.
    ///
    /// # Panics
    /// If `per_second` or `burst` is 0.
    #[must_use]
    pub fn byte_rate_limit(mut self, per_second: u32, burst: u32) -> Self {
        assert!(
            per_second > 0 && burst > 0,
            "byte_rate_limit: need a positive rate and burst"
        );
        self.0.inbound_bytes = Some(Rate { per_second, burst });
        self
    }

    /// The most bytes held in all partial inbound frames and all outbound queues
    /// together, by memory held (buffer capacity), transports' own buffers included (a
    /// WebSocket message still arriving, WebSocket output the socket has not taken). When it
    /// is reached, the connections holding the most unfinished input are
    /// closed (`CloseReason::MemoryBudget`) until usage is back under 90 % of it; if none holds
    /// input, the largest outbound queues. Default off.
    ///
    /// # Panics
    /// If `bytes` is 0.
    #[must_use]
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        assert!(bytes > 0, "memory_budget must be positive");
        self.0.memory_budget = Some(bytes);
        self
    }

    /// Closes a connection that completes no message for `timeout`
    /// (`CloseReason::Idle`), including one that never finishes its first frame. Default off
    /// (PodSixNet clients may stay quiet for hours).
    ///
    /// # Panics
    /// If `timeout` is zero.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        assert!(!timeout.is_zero(), "idle_timeout must be positive");
        self.0.idle_timeout = Some(timeout);
        self
    }

    /// How long a connection may take over its transport's handshake (a
    /// WebSocket upgrade, or a page fetch on a WebSocket listener: request read, answer
    /// written) before it is dropped without becoming a channel. Default 10 s. Connections in
    /// their handshake count toward [`max_connections`](Self::max_connections). A plain TCP
    /// connection has no handshake.
    ///
    /// # Panics
    /// If `timeout` is zero.
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        assert!(!timeout.is_zero(), "handshake_timeout must be positive");
        self.0.handshake_timeout = timeout;
        self
    }

    /// The most connections one client address may hold at once, established
    /// channels and connections still in their handshake together (channels lingering after a
    /// close count until their socket is closed, as for
    /// [`max_connections`](Self::max_connections)). Default off.
    ///
    /// A client address is an IPv4 address, or an IPv6 address's /64 prefix (one host or
    /// household is given a whole /64, RFC 6177, and may rotate privacy addresses within it,
    /// RFC 8981); an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) counts as its IPv4 address.
    /// In-memory connections ([`Server::connect_local`](crate::Server::connect_local)) have no
    /// address and are exempt. As nginx's `limit_conn` keyed on `$binary_remote_addr`, or
    /// HAProxy's `src_conn_cur`: one address (a flood of silent connections) cannot take
    /// every slot of [`max_connections`](Self::max_connections) from everyone else.
    ///
    /// A connection over it, on any listener, is closed as soon as it is accepted: nothing is
    /// read or written, no channel is made, no `connected` hook runs. It is counted in
    /// [`Stats::refused`](crate::Stats::refused) and
    /// [`Stats::refused_per_address`](crate::Stats::refused_per_address); the server logs one
    /// warn line per address per minute at most, with the count. Set it well above what a
    /// household or an office behind one NAT address opens.
    ///
    /// # Panics
    /// If `n` is 0.
    #[must_use]
    pub fn max_connections_per_address(mut self, n: usize) -> Self {
        assert!(n > 0, "max_connections_per_address must be positive");
        self.0.max_connections_per_address = Some(n);
        self
    }

    /// The most connections from one client address (grouped as
    /// [`max_connections_per_address`](Self::max_connections_per_address) says) that may be in
    /// their transport's handshake at once (a WebSocket upgrade or a page fetch whose request
    /// is not read or whose answer is not written yet; see
    /// [`handshake_timeout`](Self::handshake_timeout)). Default off. Half-sent HTTP requests
    /// from one address then cannot hold every slot until the handshake timeout, as
    /// slowloris does against servers without such a limit. A connection that would go over
    /// it is closed at once, counted and logged as for
    /// [`max_connections_per_address`](Self::max_connections_per_address). A plain TCP
    /// connection has no handshake.
    ///
    /// # Panics
    /// If `n` is 0.
    #[must_use]
    pub fn max_handshakes_per_address(mut self, n: usize) -> Self {
        assert!(n > 0, "max_handshakes_per_address must be positive");
        self.0.max_handshakes_per_address = Some(n);
        self
    }

    /// Limits how fast one client address (grouped as
    /// [`max_connections_per_address`](Self::max_connections_per_address) says) may open
    /// connections: a token bucket ([`Bucket`](crate::Bucket)) per address of `per_second` new
    /// connections a second on average, `burst` at once after a quiet time; measured on the
    /// config's [`clock`](Self::clock). As HAProxy's `src_conn_rate` or nginx's `limit_req`.
    /// Default off. A connection without a token is closed as soon as it is accepted, counted
    /// and logged as for [`max_connections_per_address`](Self::max_connections_per_address);
    /// a connection refused by it or by the per-address cap takes no token (one refused later,
    /// because the server is full or its address is over its handshake cap, has taken one). An address's
    /// bucket is forgotten once it is full again and the address holds no connection.
    ///
    /// # Panics
    /// If `per_second` or `burst` is 0.
    #[must_use]
    pub fn connect_rate_per_address(mut self, per_second: u32, burst: u32) -> Self {
        assert!(
            per_second > 0 && burst > 0,
            "connect_rate_per_address: need a positive rate and burst"
        );
        self.0.connect_rate_per_address = Some(Rate { per_second, burst });
        self
    }

    /// How many rooms one channel may be in at once (see
    /// [`ServerContext::join`](crate::ServerContext::join)). Default 64. A join over it is
    /// refused with [`RoomError::TooManyRooms`](crate::RoomError::TooManyRooms).
    #[must_use]
    pub fn max_rooms_per_channel(mut self, n: usize) -> Self {
        self.0.max_rooms_per_channel = n;
        self
    }

    /// How many of the last messages sent to each room the server keeps, for
    /// [`ServerContext::send_history`](crate::ServerContext::send_history) and
    /// [`history`](crate::ServerContext::history) (a chat's scrollback: what a user who joins
    /// missed). Default 0: none. The frames are the ones sent, shared, not copied: a room
    /// holds at most `n` times the largest message sent to it, and lets them go when it is
    /// freed (its last member on this server leaves). As Centrifugo's channel history.
    #[must_use]
    pub fn room_history(mut self, n: usize) -> Self {
        self.0.room_history = n;
        self
    }

    /// Turns on resumable sessions for netlib clients that ask (see the README's "Sessions"),
    /// kept for `resume_window` after their connection is lost ([`DEFAULT_RESUME_WINDOW`] is
    /// Socket.IO's 2 minutes). A session's channel keeps its id, state and rooms, and the
    /// messages sent to it meanwhile; a client that comes back within the window gets them,
    /// each once and in order, then live traffic, and
    /// [`ServerHandler::resumed`](crate::ServerHandler::resumed) runs;
    /// [`closed`](crate::ServerHandler::closed) runs only when the window ends. A waiting
    /// session holds no connection: the memory budget counts what it keeps, but neither
    /// `max_connections` nor its address's limits count it, so its client can come back.
    ///
    /// With sessions on, a new connection's `connected` hook waits for its first frame (which
    /// may ask to resume another channel), at most [`HELLO_WAIT`](crate::HELLO_WAIT); line
    /// connections ([`Framing::Line`]) never have sessions and never wait. PodSixNet clients
    /// see no change on the wire. Default: off.
    ///
    /// # Panics
    /// If `resume_window` is zero.
    #[must_use]
    pub fn sessions(mut self, resume_window: Duration) -> Self {
        assert!(!resume_window.is_zero(), "resume_window must be positive");
        self.0.resume_window = Some(resume_window);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "max_frame_size out of range")]
    fn a_zero_frame_size_is_refused() {
        let _ = ServerConfig::default().max_frame_size(0);
    }

    #[test]
    #[should_panic(expected = "heartbeat")]
    fn a_timeout_shorter_than_the_interval_is_refused() {
        let _ = ServerConfig::default().heartbeat(Duration::from_secs(2), Duration::from_secs(1));
    }

    #[test]
    fn builders_set_what_getters_read() {
        let c = ServerConfig::default()
            .codec(Codec::Rencode)
            .max_connections(5)
            .announce_id(true);
        assert_eq!(c.0.get_codec(), Codec::Rencode);
        assert_eq!(c.0.get_max_connections(), 5);
        assert!(c.0.get_announce_id() && c.0.get_reply_invalid());
    }

    #[test]
    fn per_address_limits_are_off_by_default_and_read_back() {
        let d = ServerConfig::default();
        assert_eq!(d.0.get_max_connections_per_address(), None);
        assert_eq!(d.0.get_max_handshakes_per_address(), None);
        assert_eq!(d.0.get_connect_rate_per_address(), None);
        let c = d
            .max_connections_per_address(256)
            .max_handshakes_per_address(32)
            .connect_rate_per_address(20, 100);
        assert_eq!(c.0.get_max_connections_per_address(), Some(256));
        assert_eq!(c.0.get_max_handshakes_per_address(), Some(32));
        assert_eq!(
            c.0.get_connect_rate_per_address(),
            Some(Rate {
                per_second: 20,
                burst: 100
            })
        );
    }

    #[test]
    #[should_panic(expected = "max_connections_per_address must be positive")]
    fn a_zero_per_address_cap_is_refused() {
        let _ = ServerConfig::default().max_connections_per_address(0);
    }
}
