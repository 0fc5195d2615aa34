//! Several consumers of one client's events, as PodSixNet's listeners each call `Pump()`: a
//! log of events kept until every consumer has seen them.

use std::collections::VecDeque;
use std::time::Duration;

use crate::connection::Event;
use crate::error::Result;

use super::{AnyListener, Client};

/// Identifies one consumer of a client's events for [`Client::pump_subscription`]: each
/// subscription gets every event from its creation on, whoever pumps first.
#[derive(Debug, PartialEq, Eq)]
pub struct Subscription(pub(super) usize);

/// Events kept until every consumer has seen them: the plain pumps (`pump`, `pump_messages`,
/// one consumer together, active from their first use) and each [`Subscription`]. Each
/// consumer has a cursor, the sequence number of the next event it gets.
#[derive(Debug, Default)]
pub(super) struct EventLog {
    pub(super) events: VecDeque<Event>,
    /// Sequence number of `events[0]`.
    pub(super) start: u64,
    pub(super) plain: Option<u64>,
    pub(super) subs: Vec<Option<u64>>,
}

impl EventLog {
    pub(super) fn end(&self) -> u64 {
        self.start + self.events.len() as u64
    }

    pub(super) fn since(&self, cursor: u64) -> impl Iterator<Item = &Event> {
        self.events
            .iter()
            .skip((cursor.max(self.start) - self.start) as usize)
    }

    /// Drops the events every active consumer has seen.
    pub(super) fn trim(&mut self) {
        let min = self
            .plain
            .iter()
            .chain(self.subs.iter().flatten())
            .min()
            .copied()
            .unwrap_or(self.end());
        while self.start < min {
            self.events.pop_front();
            self.start += 1;
        }
    }
}

impl Client {
    /// A new consumer of this client's events: [`pump_subscription`](Self::pump_subscription)
    /// gives it every event from now on, however many other consumers pump, in any order. Use
    /// it when several objects pump the connection separately, as PodSixNet's listeners each
    /// call `Pump()`. Events are kept until every subscription has seen them, so pump every
    /// subscription, or [`unsubscribe`](Self::unsubscribe) it.
    pub fn subscribe(&mut self) -> Subscription {
        self.log.events.extend(std::mem::take(&mut self.conn.inbox));
        let cursor = Some(self.log.end());
        match self.log.subs.iter().position(Option::is_none) {
            Some(i) => {
                self.log.subs[i] = cursor;
                Subscription(i)
            }
            None => {
                self.log.subs.push(cursor);
                Subscription(self.log.subs.len() - 1)
            }
        }
    }

    /// Ends a subscription: events are no longer kept for it.
    pub fn unsubscribe(&mut self, sub: Subscription) {
        if let Some(c) = self.log.subs.get_mut(sub.0) {
            *c = None;
        }
        self.log.trim();
    }

    /// As [`pump`](Self::pump), delivering to `listener` the events `sub` has not seen yet.
    ///
    /// # Errors
    /// As [`pump`](Self::pump).
    ///
    /// # Panics
    /// If `sub` was unsubscribed or belongs to another client.
    pub fn pump_subscription<L: AnyListener + ?Sized>(
        &mut self,
        sub: &Subscription,
        listener: &mut L,
    ) -> Result<()> {
        self.io(Some(Duration::ZERO))?;
        self.log.events.extend(std::mem::take(&mut self.conn.inbox));
        let from = self
            .log
            .subs
            .get(sub.0)
            .copied()
            .flatten()
            .expect("a live subscription of this client");
        self.log.subs[sub.0] = Some(self.log.end());
        self.deliver_from(from, listener)
    }
}
