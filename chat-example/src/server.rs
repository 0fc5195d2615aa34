//! The chat server: a thin [`ServerHandler`] around the pure [`Rules`]. Each netlib hook
//! becomes one [`Input`]; the [`Effect`]s the rules return are applied here with netlib's
//! rooms, sends, name claims and node messages. What only the I/O side knows stays here: who
//! lags behind (their queue), and the clocks.

use std::net::SocketAddr;

use netlib::{
    handler, ChannelId, Clock, CloseReason, Closed, ClusterEvent, InboundError, Message, Migration,
    OutOfBand, Room as ToRoom, ServerContext, ServerHandler,
};

use crate::limits::ChatLimits;
use crate::metrics::ChatMetrics;
use crate::protocol::{
    now_ms, Join, Kick, Op, Quit, Refusal, Request, RoomPolicy, Rooms, Say, SayPrivately,
    ServerMsg, SetNickname, Who,
};
use crate::rules::{Effect, Input, Note, Now, RuleSettings, Rules};
pub use crate::rules::{DELTA_CHUNK, MAX_REASON_CHARS};

/// All chat state lives in the [`Rules`], keyed by channel id: channels carry none.
type Hub<'a> = ServerContext<'a, ()>;

/// Server settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The operator password; `None` disables `op`.
    pub op_password: Option<String>,
    /// Which rooms get which membership traffic.
    pub rooms: RoomPolicy,
    /// Per-user request limits; `None` turns them off. Default: [`ChatLimits::default`].
    pub limits: Option<ChatLimits>,
    /// The clock the request limits read: give the server's
    /// [`ServerConfig::clock`](netlib::ServerConfig::clock) the same one (tests use a
    /// [`ManualClock`](netlib::ManualClock) for both). Default: the system's clock.
    pub clock: Clock,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            op_password: None,
            rooms: RoomPolicy::default(),
            limits: Some(ChatLimits::default()),
            clock: Clock::System,
        }
    }
}

/// A recipient with more than this many bytes waiting is lagging: it gets no membership
/// notices or player lists (they would only pile up) until its queue is under half of this,
/// then one fresh `players` list of its room instead.
pub const LAGGING_BYTES: usize = 256 << 10;

/// The chat server: the rules, and the lagging users owed a `players` list.
#[derive(Debug)]
pub struct Chat {
    rules: Rules,
    clock: Clock,
    /// Lagging users who missed membership traffic and are owed a `players` list.
    stale: std::collections::HashSet<ChannelId>,
    /// The effects of the input being handled (kept to reuse its allocation).
    effects: Vec<Effect>,
    /// Stops the server if this node is fenced out of its cluster ([`Chat::stop_when_fenced`]).
    stop: Option<netlib::StopHandle>,
    /// Why this node was fenced out of its cluster, if it was.
    fenced: Option<String>,
    /// The chat's metrics, once registered ([`Chat::count_into`]).
    metrics: Option<ChatMetrics>,
}

fn send(hub: &mut Hub<'_>, id: ChannelId, msg: &ServerMsg<'_>) {
    if let Err(e) = hub.send_to(id, msg) {
        log::debug!("cannot send to {id}: {e}");
    }
}

impl Chat {
    /// A chat on one node.
    pub fn new(settings: Settings) -> Self {
        Chat::with_rules(settings, false, "local")
    }

    /// A chat node of a cluster, named `node_name` (e.g. `--node-id`): give the server an
    /// adapter ([`Server::with_adapter`](netlib::Server::with_adapter)); nicknames are then
    /// claimed cluster-wide and the nodes tell each other who their users are.
    pub fn clustered(settings: Settings, node_name: &str) -> Self {
        Chat::with_rules(settings, true, node_name)
    }

    fn with_rules(settings: Settings, cluster: bool, node_name: &str) -> Self {
        let rules = Rules::new(RuleSettings {
            op_password: settings.op_password,
            rooms: settings.rooms,
            limits: settings.limits,
            cluster,
            node_name: node_name.to_owned(),
        });
        Chat {
            rules,
            clock: settings.clock,
            stale: Default::default(),
            effects: Vec::new(),
            stop: None,
            fenced: None,
            metrics: None,
        }
    }

    /// Registers the chat's metrics ([`ChatMetrics`]) in `metrics` (the server's, from
    /// [`Server::metrics`](netlib::Server::metrics)) and keeps them up to date from now on.
    pub fn count_into(&mut self, metrics: &netlib::Metrics) {
        self.metrics = Some(ChatMetrics::register(metrics));
    }

    /// Stops the server with `stop` if the cluster fences this node out (another process took
    /// its number or name, or the others declared it dead after a stall): its users must
    /// reconnect to a live node, and a supervisor restarts it under a new number. See
    /// [`fenced`](Self::fenced).
    pub fn stop_when_fenced(&mut self, stop: netlib::StopHandle) {
        self.stop = Some(stop);
    }

    /// Why this node was fenced out of its cluster, if it was.
    pub fn fenced(&self) -> Option<&str> {
        self.fenced.as_deref()
    }

    /// Number of users connected to this node.
    pub fn user_count(&self) -> usize {
        self.rules.user_count()
    }

    /// Handles `input` and applies its effects.
    fn run(&mut self, hub: &mut Hub<'_>, input: Input) {
        let now = Now {
            instant: self.clock.now(),
            ms: now_ms(),
        };
        let mut effects = std::mem::take(&mut self.effects);
        self.rules.handle(now, input, &mut effects);
        for effect in effects.drain(..) {
            self.apply(hub, effect);
        }
        self.effects = effects;
    }

    fn apply(&mut self, hub: &mut Hub<'_>, effect: Effect) {
        if let Some(m) = self.metrics.as_mut() {
            m.count(&effect);
        }
        match effect {
            Effect::Send { to, msg } => send(hub, to, &msg),
            Effect::Room { room, msg } => {
                if let Err(e) = hub.send_to(ToRoom(&room), &msg) {
                    log::error!("cannot send to room {room}: {e}");
                }
            }
            Effect::Notify { room, except, msg } => self.notify(hub, &room, except, &msg),
            Effect::Join { id, room } => {
                if let Err(e) = hub.join(id, &room) {
                    log::warn!("{id} cannot join {room}: {e}");
                }
            }
            Effect::History { id, room } => {
                hub.send_history(id, &room, crate::rules::SCROLLBACK);
            }
            Effect::Leave { id, room } => {
                hub.leave(id, &room);
            }
            Effect::Claim { id, keys } => {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                hub.claim(id, &keys);
            }
            Effect::Release { id, keys } => {
                for k in keys {
                    hub.release(id, &k);
                }
            }
            Effect::Close { id } => hub.close_channel(id),
            Effect::Emit { node, note } => {
                let sent = match node {
                    Some(node) => hub.emit_node(node, &note),
                    None => hub.emit_nodes(&note),
                };
                if let Err(e) = sent {
                    log::warn!("the other nodes missed a note: {e}");
                    // The request behind it (a private message, a kick) is refused.
                    self.run(hub, Input::Undeliverable { note });
                }
            }
        }
    }

    /// Sends membership traffic to this node's members of `room` but `except`, skipping
    /// lagging members ([`LAGGING_BYTES`]): they are owed one fresh `players` list instead.
    fn notify(
        &mut self,
        hub: &mut Hub<'_>,
        room: &str,
        except: Option<ChannelId>,
        msg: &ServerMsg<'_>,
    ) {
        let frame = match hub.encode(msg) {
            Ok(frame) => frame,
            Err(e) => return log::error!("cannot encode a notice for {room}: {e}"),
        };
        let mut lagging = Vec::new();
        let current: Vec<ChannelId> = hub
            .members(room)
            .filter(|&m| Some(m) != except)
            .filter(|&m| {
                let lags = hub.queued_bytes(m).unwrap_or(0) > LAGGING_BYTES;
                if lags {
                    lagging.push(m);
                }
                !lags
            })
            .collect();
        hub.send_frame_to(current, &frame);
        self.stale.extend(lagging);
    }

    /// Lagging users whose queue has drained get one `players` list of their room.
    fn resync_stale(&mut self, hub: &mut Hub<'_>) {
        let ready: Vec<ChannelId> = self
            .stale
            .iter()
            .copied()
            .filter(|&id| hub.queued_bytes(id).unwrap_or(0) < LAGGING_BYTES / 2)
            .collect();
        for id in ready {
            self.stale.remove(&id);
            let players = self.rules.room_of(id).and_then(|r| self.rules.players(r));
            if let Some(players) = players {
                send(hub, id, &players);
            }
        }
    }

    fn request(&mut self, hub: &mut Hub<'_>, from: ChannelId, request: Request) {
        self.run(hub, Input::Request { from, request });
    }
}

impl ServerHandler for Chat {
    type Channel = ();

    fn connected(&mut self, hub: &mut Hub<'_>, id: ChannelId, addr: SocketAddr) {
        self.run(hub, Input::Connected { id, addr });
    }

    /// The user comes back with its nickname and room ([`Input::Migrated`]).
    fn migrated(&mut self, hub: &mut Hub<'_>, id: ChannelId, addr: SocketAddr, from: &Migration) {
        let rooms = hub.rooms_of(id).map(str::to_owned).collect();
        self.run(
            hub,
            Input::Migrated {
                id,
                addr,
                previous: from.previous,
                names: from.names.clone(),
                rooms,
            },
        );
    }

    fn closed(&mut self, hub: &mut Hub<'_>, gone: Closed<()>) {
        self.stale.remove(&gone.id);
        if let CloseReason::Moved { to } = gone.reason {
            return self.run(hub, Input::MovedAway { id: gone.id, to });
        }
        let reason = match gone.reason {
            CloseReason::PeerClosed => "disconnected".to_owned(),
            other => format!("connection lost: {other}"),
        };
        self.run(
            hub,
            Input::Closed {
                id: gone.id,
                reason,
            },
        );
    }

    fn unhandled(&mut self, hub: &mut Hub<'_>, id: ChannelId, msg: &Message) {
        let refusal = Refusal::new(
            "unknown-action",
            format!("unknown action {:?}", msg.action()),
        );
        let request = msg.action().to_owned();
        self.run(
            hub,
            Input::Bad {
                from: id,
                request,
                refusal,
            },
        );
    }

    /// Mistyped or missing fields get `bad-request`; frames that are not messages `bad-frame`.
    fn out_of_band(&mut self, hub: &mut Hub<'_>, id: ChannelId, oob: OutOfBand) {
        let (request, refusal) = match &oob.error {
            InboundError::Payload { action, source } => (
                action.clone(),
                Refusal::new("bad-request", format!("{action}: {source}")),
            ),
            // A line that is no command (line protocol): the usage.
            InboundError::Decode(usage) => {
                (String::new(), Refusal::new("bad-request", usage.clone()))
            }
            other => (String::new(), Refusal::new("bad-frame", other.to_string())),
        };
        self.run(
            hub,
            Input::Bad {
                from: id,
                request,
                refusal,
            },
        );
    }

    fn cluster(&mut self, hub: &mut Hub<'_>, event: ClusterEvent) {
        let input = match event {
            ClusterEvent::Claimed { id, result, .. } => Input::Claimed { id, result },
            ClusterEvent::Message { from, message } => match message.parse::<Note>() {
                Ok(note) => Input::Note { from, note },
                Err(e) => return log::warn!("a note from node #{from} I cannot read: {e}"),
            },
            ClusterEvent::Departed { id } => Input::Departed { id },
            ClusterEvent::NodeGone { node } => Input::NodeGone { node },
            ClusterEvent::NamesLost { id, .. } => Input::NamesLost { id },
            ClusterEvent::Up => {
                log::info!("the cluster is reachable");
                Input::Up
            }
            ClusterEvent::Down {
                error: netlib::ClusterError::Fenced(why),
            } => {
                log::error!("this node is fenced out of the cluster ({why}): stopping");
                self.fenced = Some(why);
                if let Some(stop) = &self.stop {
                    stop.stop();
                }
                Input::Down
            }
            ClusterEvent::Down { error } => {
                log::warn!("{error}: serving this node's users only until it is back");
                Input::Down
            }
            _ => return,
        };
        self.run(hub, input);
    }

    fn after_pump(&mut self, hub: &mut Hub<'_>) {
        if !self.stale.is_empty() {
            self.resync_stale(hub);
        }
        self.run(hub, Input::Flush);
        if let Some(m) = &self.metrics {
            m.set(self.rules.user_count(), self.rules.room_count());
        }
    }
}

// One line per action: each request is a typed payload handed to the rules as a `Request`,
// with the sender's channel id.
impl Chat {
    fn network_nickname(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: SetNickname) {
        self.request(hub, from, Request::Nickname(m));
    }
    fn network_message(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: Say) {
        self.request(hub, from, Request::Message(m));
    }
    fn network_private(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: SayPrivately) {
        self.request(hub, from, Request::Private(m));
    }
    fn network_who(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: Who) {
        self.request(hub, from, Request::Who(m));
    }
    fn network_rooms(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: Rooms) {
        self.request(hub, from, Request::Rooms(m));
    }
    fn network_join(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: Join) {
        self.request(hub, from, Request::Join(m));
    }
    fn network_part(&mut self, hub: &mut Hub<'_>, from: ChannelId, _m: &Message) {
        self.request(hub, from, Request::Part);
    }
    fn network_op(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: Op) {
        self.request(hub, from, Request::Op(m));
    }
    fn network_kick(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: Kick) {
        self.request(hub, from, Request::Kick(m));
    }
    fn network_quit(&mut self, hub: &mut Hub<'_>, from: ChannelId, m: Quit) {
        self.request(hub, from, Request::Quit(m));
    }
    fn network_help(&mut self, hub: &mut Hub<'_>, from: ChannelId, _m: &Message) {
        self.request(hub, from, Request::Help);
    }
    /// What a blank line of the line protocol stands for: nothing to do, nothing to answer.
    fn network_noop(&mut self, _: &mut Hub<'_>, _: ChannelId, _m: &Message) {}
}

handler!(Chat, "nickname" => network_nickname);
handler!(Chat, "message" => network_message);
handler!(Chat, "private" => network_private);
handler!(Chat, "who" => network_who);
handler!(Chat, "rooms" => network_rooms);
handler!(Chat, "join" => network_join);
handler!(Chat, "part" => network_part);
handler!(Chat, "op" => network_op);
handler!(Chat, "kick" => network_kick);
handler!(Chat, "quit" => network_quit);
handler!(Chat, "help" => network_help);
handler!(Chat, "noop" => network_noop); // crate::text::IGNORED_LINE
