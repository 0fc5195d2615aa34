//! The chat's own metrics, in the server's registry beside netlib's (`chat-server --metrics`):
//! users on this node, rooms, room messages relayed, kicks, and refusals by code. No label
//! is per user or room: a refusal's `code` is one of the chat's stable codes (the README's
//! list).

use std::collections::HashMap;

use netlib::prometheus_client::metrics::counter::Counter;
use netlib::prometheus_client::metrics::family::Family;
use netlib::prometheus_client::metrics::gauge::Gauge;

use crate::protocol::ServerMsg;
use crate::rules::Effect;

/// The chat's metrics, registered with [`ChatMetrics::register`] and updated by the
/// [`Chat`](crate::server::Chat) as it applies its rules' effects.
#[derive(Debug, Clone, Default)]
pub struct ChatMetrics {
    users: Gauge,
    rooms: Gauge,
    messages: Counter,
    kicks: Counter,
    refused: Family<Vec<(String, String)>, Counter>,
    /// The refusal family's counters by code, so that counting one allocates nothing.
    by_code: HashMap<String, Counter>,
}

impl ChatMetrics {
    /// Registers the chat's metrics in `metrics` (a server's, see
    /// [`Server::metrics`](netlib::Server::metrics)):
    ///
    /// | metric | type | what |
    /// |---|---|---|
    /// | `chat_users` | gauge | users connected to this node |
    /// | `chat_rooms` | gauge | rooms with a member (on this node or another) |
    /// | `chat_messages_total` | counter | room messages this node relayed from its users |
    /// | `chat_kicks_total` | counter | users of this node kicked by an operator (of any node) |
    /// | `chat_refused_total{code}` | counter | requests refused, by the refusal's code (e.g. `nickname-taken`, `rate-limited`) |
    pub fn register(metrics: &netlib::Metrics) -> Self {
        let m = ChatMetrics::default();
        metrics.register(
            "chat_users",
            "Users connected to this node",
            m.users.clone(),
        );
        metrics.register(
            "chat_rooms",
            "Rooms with a member, on this node or another",
            m.rooms.clone(),
        );
        metrics.register(
            "chat_messages",
            "Room messages this node relayed from its users",
            m.messages.clone(),
        );
        metrics.register(
            "chat_kicks",
            "Users of this node kicked by an operator (of any node)",
            m.kicks.clone(),
        );
        metrics.register(
            "chat_refused",
            "Requests refused, by the refusal's code",
            m.refused.clone(),
        );
        m
    }

    /// Counts what `effect` does.
    pub(crate) fn count(&mut self, effect: &Effect) {
        match effect {
            Effect::Room {
                msg: ServerMsg::Message { .. },
                ..
            } => {
                self.messages.inc();
            }
            Effect::Send {
                msg: ServerMsg::Refused { code, .. },
                ..
            } => {
                if let Some(counter) = self.by_code.get(&**code) {
                    counter.inc();
                } else {
                    let labels = vec![("code".to_owned(), code.to_string())];
                    let counter = self.refused.get_or_create(&labels).clone();
                    counter.inc();
                    self.by_code.insert(code.to_string(), counter);
                }
            }
            Effect::Send {
                msg: ServerMsg::Kicked { .. },
                ..
            } => {
                self.kicks.inc();
            }
            _ => {}
        }
    }

    /// Sets the gauges.
    pub(crate) fn set(&self, users: usize, rooms: usize) {
        self.users.set(i64::try_from(users).unwrap_or(i64::MAX));
        self.rooms.set(i64::try_from(rooms).unwrap_or(i64::MAX));
    }
}
