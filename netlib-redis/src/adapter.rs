//! [`RedisAdapter`]: the [`Adapter`] a server is made with. Its methods only queue work for
//! the command thread or read atomics: no Redis I/O on the server's loop.

use std::fmt;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use netlib::{
    Adapter, Cause, ChannelId, ClusterError, ClusterInbound, Fetch, NodeNumber, SessionClaim,
};
use redis::ConnectionAddr;

use crate::backoff::{random_u64, Rng};
use crate::commands::{Cmd, Commander, Target};
use crate::config::{self, RedisConfig, Scrub};
use crate::envelope;
use crate::error::RedisError;
use crate::keys::{Keys, Scripts};
use crate::node::{self, Identity, NameError};
use crate::shared::{AdapterHandle, Shared};
use crate::subscriber::{Subscriber, POLL};

/// How long dropping the adapter waits for its clean leave.
const LEAVE_WAIT: Duration = Duration::from_secs(1);

/// The Redis implementation of netlib's cluster [`Adapter`] seam: several servers, each with
/// one, share rooms, sends by id, node-to-node messages, unique names and presence through
/// one Redis server (see the [crate docs](crate) for the keys, the guarantees and the
/// threads). Made by [`connect`](Self::connect), then handed to
/// [`Server::with_adapter`](netlib::Server::with_adapter):
///
/// ```no_run
/// use netlib::{Server, ServerConfig};
/// use netlib_redis::{RedisAdapter, RedisConfig};
/// # use netlib::{ChannelId, ServerContext, ServerHandler};
/// # struct Game;
/// # impl ServerHandler for Game { type Channel = ();
/// #   fn connected(&mut self, _: &mut ServerContext<'_, ()>, _: ChannelId, _: std::net::SocketAddr) {} }
///
/// let adapter = RedisAdapter::connect(RedisConfig::new("redis://127.0.0.1:6379"))?;
/// let mut server = Server::with_adapter(Game, ServerConfig::default(), Box::new(adapter))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Dropping it (with its server) leaves the cluster at once: see the
/// [crate docs](crate#leaving-and-dying).
pub struct RedisAdapter {
    shared: Arc<Shared>,
    /// Room sends made so far: each one's number orders those held during an outage.
    sends: u64,
    shown_url: String,
    prefix: String,
    /// Room streams' length (0: none; see [`RedisConfig::room_streams`]).
    streams: usize,
}

impl RedisAdapter {
    /// Joins the cluster: draws this start's node number (1 to 65 535, never one of a live
    /// node or of one that left in the last hour) and registers it, and with a
    /// [`node_name`](RedisConfig::node_name) takes the name first. Blocking (call it before
    /// the server runs): a few round trips, and until the adapter is up (subscribed, its
    /// presence written; at most twice the I/O timeout), but up to the holder's remaining
    /// presence TTL plus 2 s when the name is held (to tell a live holder from a dead one).
    ///
    /// Without a node name, an unreachable Redis is not an error: the number is drawn locally,
    /// the adapter starts down ([`ClusterEvent::Down`](netlib::ClusterEvent::Down) first) and
    /// registers it once Redis is reachable (if another node took it meanwhile, the adapter
    /// is fenced).
    ///
    /// # Errors
    /// [`RedisError::InvalidUrl`] if the URL cannot be used; with a node name,
    /// [`RedisError::NameInUse`] if a live node holds it and [`RedisError::Redis`] if Redis
    /// cannot be reached; [`RedisError::NoNodeNumber`] if no number is free.
    pub fn connect(config: RedisConfig) -> Result<RedisAdapter, RedisError> {
        let shown_url = config.shown_url();
        let invalid = |reason: String| RedisError::InvalidUrl {
            url: shown_url.clone(),
            reason,
        };
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| invalid(Scrub::all(password_in(&config.url)).text(e)))?;
        let info = client.get_connection_info();
        // The password as the crate decoded it, and as the URL spells it.
        let scrub = Scrub::all(
            info.redis
                .password
                .iter()
                .cloned()
                .chain(password_in(&config.url)),
        );
        match &info.addr {
            ConnectionAddr::Tcp(..) => {}
            #[cfg(unix)]
            ConnectionAddr::Unix(..) => {}
            _ => return Err(invalid("TLS (rediss://) is not supported".to_owned())),
        }
        let keys = Keys::new(&config.prefix);
        let scripts = Scripts::new();
        let io = config.io_timeout();
        let mut me = Identity {
            node: 0,
            token: format!("{:016x}", random_u64()),
            name: config.node_name.clone(),
            ttl: config.presence_ttl,
        };
        let opened = client.get_connection_with_timeout(io).and_then(|mut c| {
            c.set_read_timeout(Some(io))?;
            c.set_write_timeout(Some(io))?;
            scripts.load(&mut c)?;
            Ok(c)
        });
        let redis_error = |e: redis::RedisError| RedisError::Redis(scrub.text(e));
        let con = match opened {
            Ok(mut con) => {
                if let Some(name) = &config.node_name {
                    match node::acquire_name(&mut con, &keys, &me, name) {
                        Ok(()) => {}
                        Err(NameError::InUse(why)) => {
                            return Err(RedisError::NameInUse {
                                name: name.clone(),
                                why,
                            })
                        }
                        Err(NameError::Redis(e)) => return Err(redis_error(e)),
                    }
                }
                let drawn = node::draw(&mut con, &keys, &scripts, &me);
                match drawn {
                    Ok(Some(n)) => me.node = n,
                    other => {
                        if let Some(name) = &config.node_name {
                            let _ = node::release_name(&mut con, &keys, &scripts, &me, name);
                        }
                        return Err(match other {
                            Err(e) => redis_error(e),
                            _ => RedisError::NoNodeNumber(node::DRAWS),
                        });
                    }
                }
                log::info!(
                    "joined the cluster at {shown_url} (prefix {:?}) as node {}",
                    config.prefix,
                    me.node
                );
                Some(con)
            }
            Err(e) if config.node_name.is_some() => return Err(redis_error(e)),
            Err(e) => {
                me.node = Rng::new().node_number();
                log::info!(
                    "Redis at {shown_url} cannot be reached now: node {} starts down, with a \
                     number drawn here, and registers it once Redis is reachable",
                    me.node
                );
                log::debug!("Redis at {shown_url}: {}", scrub.text(e));
                None
            }
        };
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared::new(me.node, io, tx, config.outage_backlog));
        let subscriber = Subscriber {
            shared: shared.clone(),
            channels: [keys.bus(), keys.to(me.node)],
            scrub: scrub.clone(),
            client: client.clone(),
            log: keys.departed(),
            last_log: std::cell::Cell::new(None),
            streams: (config.room_streams > 0).then(|| keys.stream("")),
            seen: Default::default(),
            floor: std::cell::Cell::new(None),
            epoch_key: keys.epoch(),
            epoch: Default::default(),
            catching: Default::default(),
        };
        let commander_has_connection = con.is_some();
        let commander = Commander::new(shared.clone(), rx, client, keys, me, scrub, con)
            .with_streams(config.room_streams);
        let spawn_error =
            |e: std::io::Error| RedisError::Redis(format!("cannot start a thread: {e}"));
        // A panic in a thread ends it with a `Down` (fenced: see `Shared::panicked`), never
        // silently.
        let guarded = |thread: &'static str, shared: Arc<Shared>, run: Box<dyn FnOnce() + Send>| {
            move || {
                if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
                    shared.panicked(thread, p.as_ref());
                }
            }
        };
        std::thread::Builder::new()
            .name("netlib-redis-commands".into())
            .spawn(guarded(
                "command",
                shared.clone(),
                Box::new(move || commander.run()),
            ))
            .map_err(spawn_error)?;
        let reachable = commander_has_connection;
        if let Err(e) = std::thread::Builder::new()
            .name("netlib-redis-subscriber".into())
            .spawn(guarded(
                "subscriber",
                shared.clone(),
                Box::new(move || subscriber.run()),
            ))
        {
            shared.halt();
            return Err(spawn_error(e));
        }
        // With Redis reachable, the adapter is up (subscribed, presence written) before the
        // server runs, so that the first clients' cross-node requests (a nickname claim) are
        // not refused for a start still under way. Bounded: a Redis that stalls now is an
        // outage like any other, reported by `Down`.
        if reachable {
            let deadline = std::time::Instant::now() + 2 * io;
            while !shared.is_up() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        Ok(RedisAdapter {
            shared,
            sends: 0,
            shown_url,
            prefix: config.prefix,
            streams: config.room_streams,
        })
    }

    /// A handle on this adapter's state, kept once the adapter is moved into its server:
    /// whether it is up, and [`halt`](AdapterHandle::halt) for tests.
    pub fn handle(&self) -> AdapterHandle {
        AdapterHandle {
            shared: self.shared.clone(),
        }
    }
}

/// The passwords of a URL, as well as they can be found (also when the `redis` crate could
/// not parse it), to hide them from errors and logs: see [`config::passwords_in`].
fn password_in(url: &str) -> Vec<String> {
    config::passwords_in(url)
}

impl fmt::Debug for RedisAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAdapter")
            .field("node", &self.shared.node)
            .field("url", &self.shown_url)
            .field("prefix", &self.prefix)
            .field("up", &self.shared.is_up())
            .field("fenced", &self.shared.is_fenced())
            .finish()
    }
}

impl Drop for RedisAdapter {
    /// Leaves the cluster at once (waiting up to 1 s): see the
    /// [crate docs](crate#leaving-and-dying). Nothing after [`AdapterHandle::halt`].
    fn drop(&mut self) {
        if self.shared.halted() {
            return;
        }
        self.shared.command(Cmd::Leave);
        let deadline = Instant::now() + LEAVE_WAIT;
        if !self.shared.wait_ended(1, deadline) {
            log::warn!("the Redis adapter did not finish leaving within {LEAVE_WAIT:?}");
        }
        self.shared.stop();
        // The subscriber notices within one read timeout.
        self.shared
            .wait_ended(2, Instant::now() + POLL + Duration::from_millis(100));
    }
}

impl Adapter for RedisAdapter {
    fn node(&self) -> NodeNumber {
        self.shared.node
    }

    fn set_waker(&mut self, waker: Arc<mio::Waker>) {
        self.shared.set_waker(waker);
    }

    /// Adds `netlib_adapter_…` (connection state, envelopes published and received, traffic
    /// refused, outages, queues, and the lag: a probe's round trip through Redis, timed once a
    /// second) and the readiness check `redis` (connected, or why not).
    fn register_metrics(&mut self, metrics: &netlib::Metrics) {
        crate::metrics::register(&self.shared, metrics);
    }

    fn joined(&mut self, id: ChannelId, room: &str) {
        self.shared.command(Cmd::Joined {
            id: id.serial(),
            room: room.to_owned(),
        });
    }

    fn left(&mut self, id: ChannelId, room: &str) {
        self.shared.command(Cmd::Left {
            id: id.serial(),
            room: room.to_owned(),
        });
    }

    fn closed(&mut self, id: ChannelId) {
        self.shared.command(Cmd::Closed { id: id.serial() });
    }

    fn broadcast(
        &mut self,
        rooms: &[&str],
        except: Option<ChannelId>,
        payload: &Bytes,
    ) -> Result<(), ClusterError> {
        let mut bytes = Vec::new();
        envelope::broadcast(&mut bytes, self.shared.node, rooms, except, payload)
            .map_err(|e| ClusterError::Unavailable(e.to_string()))?;
        self.sends += 1;
        let held = match self.shared.traffic_epoch() {
            Ok(epoch) => {
                self.shared.command(Cmd::Publish {
                    epoch,
                    to: Target::Bus,
                    bytes,
                    seq: Some(self.sends),
                });
                Ok(())
            }
            // Down: held for when Redis is back (see the crate docs' guarantees).
            Err(refusal) => self.shared.hold(self.sends, bytes, refusal),
        };
        if held.is_err() {
            self.shared.count_refused();
        }
        held
    }

    fn streams(&self) -> bool {
        self.streams > 0
    }

    /// The `{p}:epoch` marker: it changes when Redis lost its data.
    fn epoch(&self) -> Option<String> {
        (self.streams > 0).then(|| self.shared.marker()).flatten()
    }

    /// With room streams, one stream entry per room (see [`RedisConfig::room_streams`]);
    /// otherwise as [`broadcast`](Adapter::broadcast).
    fn broadcast_caused(
        &mut self,
        rooms: &[&str],
        except: Option<ChannelId>,
        payload: &Bytes,
        cause: Option<Cause>,
    ) -> Result<(), ClusterError> {
        if self.streams == 0 {
            return self.broadcast(rooms, except, payload);
        }
        for (i, room) in rooms.iter().enumerate() {
            let mut bytes = Vec::new();
            envelope::streamed(
                &mut bytes,
                self.shared.node,
                room,
                &rooms[..i],
                except,
                payload,
            )
            .map_err(|e| ClusterError::Unavailable(e.to_string()))?;
            self.sends += 1;
            let held = match self.shared.traffic_epoch() {
                Ok(epoch) => {
                    self.shared.command(Cmd::Stream {
                        epoch,
                        room: (*room).to_owned(),
                        bytes,
                        seq: self.sends,
                        cause,
                    });
                    Ok(())
                }
                Err(refusal) => self.shared.hold(self.sends, bytes, refusal),
            };
            if let Err(e) = held {
                self.shared.count_refused();
                return Err(e);
            }
        }
        Ok(())
    }

    fn session_opened(&mut self, token: u128, id: ChannelId, window: Duration) {
        if self.streams > 0 {
            self.shared.command(Cmd::SessionOpened {
                token,
                id: id.serial(),
                window,
                again: false,
            });
        }
    }

    fn session_reattached(&mut self, token: u128, id: ChannelId, window: Duration) {
        if self.streams > 0 {
            self.shared.command(Cmd::SessionOpened {
                token,
                id: id.serial(),
                window,
                again: true,
            });
        }
    }

    fn session_sent(&mut self, token: u128, id: ChannelId, n: u64, payload: &Bytes) {
        if self.streams > 0 {
            self.shared.command(Cmd::SessionSent {
                token,
                id: id.serial(),
                n,
                payload: payload.to_vec(),
            });
        }
    }

    fn session_detached(&mut self, token: u128) {
        if self.streams > 0 {
            self.shared.command(Cmd::SessionDetached { token });
        }
    }

    fn session_ended(&mut self, token: u128) {
        if self.streams > 0 {
            self.shared.command(Cmd::SessionEnded { token });
        }
    }

    fn resume(&mut self, claim: SessionClaim, into: &mut Vec<ClusterInbound>) {
        if self.streams == 0 {
            into.push(ClusterInbound::Resumed {
                token: claim.token,
                result: Err("sessions are kept on one node (no room streams)".into()),
            });
            return;
        }
        self.shared.command(Cmd::Resume { claim });
    }

    fn fetch(&mut self, room: &str, range: Fetch, token: u64, into: &mut Vec<ClusterInbound>) {
        if self.streams == 0 {
            into.push(ClusterInbound::Fetched {
                token,
                entries: Vec::new(),
                complete: false,
            });
            return;
        }
        self.shared.command(Cmd::Fetch {
            room: room.to_owned(),
            range,
            token,
        });
    }

    /// [`ClusterError::NoChannel`] if `to`'s node is this one, or one found gone.
    fn send(&mut self, to: ChannelId, payload: &Bytes) -> Result<(), ClusterError> {
        let node = to.node();
        if node == self.shared.node || node == 0 || self.shared.is_gone(node) {
            return Err(ClusterError::NoChannel);
        }
        let epoch = self
            .shared
            .traffic_epoch()
            .inspect_err(|_| self.shared.count_refused())?;
        let mut bytes = Vec::new();
        envelope::send(&mut bytes, self.shared.node, to, payload);
        self.shared.command(Cmd::Publish {
            epoch,
            to: Target::Node(node),
            bytes,
            seq: None,
        });
        Ok(())
    }

    fn claim(&mut self, id: ChannelId, names: &[String]) {
        self.shared.command(Cmd::Claim {
            id: id.serial(),
            names: names.to_vec(),
        });
    }

    fn release(&mut self, id: ChannelId, name: &str) {
        self.shared.command(Cmd::Release {
            id: id.serial(),
            name: name.to_owned(),
        });
    }

    fn members(&mut self, room: &str, after: Option<ChannelId>, limit: usize, token: u64) {
        self.shared.command(Cmd::Members {
            room: room.to_owned(),
            after: after.map(ChannelId::serial),
            limit,
            token,
        });
    }

    fn emit(&mut self, to: Option<NodeNumber>, payload: &Bytes) -> Result<(), ClusterError> {
        if to == Some(self.shared.node) {
            return Ok(()); // to itself: nothing, as for every other node
        }
        let epoch = self
            .shared
            .traffic_epoch()
            .inspect_err(|_| self.shared.count_refused())?;
        let mut bytes = Vec::new();
        envelope::emit(&mut bytes, self.shared.node, to, payload);
        self.shared.command(Cmd::Publish {
            epoch,
            to: to.map_or(Target::Bus, Target::Node),
            bytes,
            seq: None,
        });
        Ok(())
    }

    /// Takes what the threads received; `now` is not used (presence runs on real time, in
    /// the threads).
    fn poll(&mut self, _now: Instant, into: &mut Vec<ClusterInbound>) {
        self.shared.take(into);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_found_for_hiding() {
        assert_eq!(password_in("redis://:s3cret@h:1/0"), ["s3cret"]);
        assert_eq!(password_in("redis://u:s3cret@h"), ["s3cret"]);
        assert!(password_in("redis://h:1").is_empty());
        // An unencoded `/` in the password, password query parameters, no URL at all.
        assert_eq!(password_in("redis://:s3/cr?et@h:1/0"), ["s3/cr?et"]);
        assert_eq!(password_in("redis+unix:///p?db=1&pass=s3cret"), ["s3cret"]);
        assert_eq!(password_in("redis://h?password=s3cret"), ["s3cret"]);
        assert_eq!(password_in("x:s3cret@h"), ["x:s3cret@h"]);
        assert!(password_in("redis://h:1/0?pass=s3@cret").contains(&"s3@cret".to_owned()));
    }

    #[test]
    fn an_unusable_url_is_an_error_without_its_password() {
        for url in [
            "redis://:s3cret@[::1:bad",
            "rediss://:s3cret@127.0.0.1:1",
            "nope://:s3cret@x",
            "redis://:s3/cret@[::1:bad",
            "nope+unix:///p?pass=s3cret",
            "rediss://:s3cret@h:1?pass=s3cret2",
            ":s3cret@127.0.0.1:1",
        ] {
            match RedisAdapter::connect(RedisConfig::new(url)) {
                Err(e) => {
                    let text = format!("{e} {e:?}");
                    assert!(!text.contains("s3cret"), "{text}");
                    assert!(matches!(e, RedisError::InvalidUrl { .. }), "{text}");
                }
                Ok(a) => panic!("{url}: {a:?}"),
            }
        }
    }
}
