//! Handler registration (with `inventory`), per-type dispatch tables, and `deliver`: the one
//! routine that hands a received message to its handlers, for server and client alike.
//! PodSixNet looks `Network_<action>` up on every message; netlib builds a table per type once.
//!
//! Users register a method with the [`handler!`](macro@crate::handler) macro, one line per action;
//! nothing here needs to be called directly. Each registration becomes a `HandlerEntry` in a
//! link-time list; [`check_handlers`] validates them all, and each server or client builds the
//! tables of its types from them when it starts.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;

use crate::error::{InboundError, StartError};
use crate::message::Message;

/// One registered handler, collected by `inventory`. Built by [`handler!`](macro@crate::handler);
/// public only so the macro can build it in a `static`.
#[doc(hidden)]
#[derive(Debug)]
pub struct HandlerEntry {
    /// The action, `None` for the catch-all.
    pub action: Option<&'static str>,
    /// `TypeId` of the type the handler is registered on.
    pub target: fn() -> TypeId,
    /// Name of that type, for errors.
    pub target_name: &'static str,
    /// Builds the type-erased handler (a boxed closure, downcast by the table builder).
    pub make: fn() -> Box<dyn Any + Send + Sync>,
    /// `file:line` of the registration, for errors.
    pub location: &'static str,
}

inventory::collect!(HandlerEntry);

/// A handler method netlib can call. Implemented for the method shapes it accepts; `Kind` tells
/// them apart and is inferred. The shapes, where `M` is `&Message` (raw) or any
/// `T: serde::de::DeserializeOwned` (typed), and `R` is `()` or `Result<(), E>` with
/// `E: Display` (an `Err` goes to the out-of-band hook, naming the action):
///
/// - on a channel state type `C` of a server `S`:
///   `fn(&mut self, ctx: &mut ChannelContext<'_, S>, msg: M) -> R`;
/// - on the server type `S` itself: `fn(&mut self, ctx: &mut ServerContext<'_, S::Channel>,
///   from: ChannelId, msg: M) -> R`;
/// - on a client [`Listener`](crate::Listener) `L`:
///   `fn(&mut self, ctx: &mut ClientContext<'_>, msg: M) -> R`.
///
/// A method of another shape does not compile, and the error lists these shapes. The usual
/// mistakes: a typed message taken by reference,
///
/// ```compile_fail
/// # use netlib::{handler, ChannelContext, ChannelId, ServerContext, ServerHandler};
/// # struct Game; struct Player;
/// # impl ServerHandler for Game { type Channel = Player;
/// #     fn connected(&mut self, _: &mut ServerContext<'_, Player>, _: ChannelId, _: std::net::SocketAddr) -> Player { Player } }
/// #[derive(serde::Deserialize)]
/// struct Move { x: i32 }
/// impl Player {
///     fn network_move(&mut self, ctx: &mut ChannelContext<'_, Game>, m: &Move) {} // `m: Move`
/// }
/// handler!(Player, "move" => network_move);
/// ```
///
/// a client-side type without `impl Listener`,
///
/// ```compile_fail
/// # use netlib::{handler, ClientContext, Message};
/// struct Bot;
/// impl Bot {
///     fn network_hi(&mut self, ctx: &mut ClientContext<'_>, m: &Message) {}
/// }
/// handler!(Bot, "hi" => network_hi); // needs `impl netlib::Listener for Bot {}`
/// ```
///
/// and a handler returning something other than `()` or `Result<(), E: Display>`:
///
/// ```compile_fail
/// # use netlib::{handler, ClientContext, Listener, Message};
/// struct Bot;
/// impl Listener for Bot {}
/// impl Bot {
///     fn network_hi(&mut self, ctx: &mut ClientContext<'_>, m: &Message) -> bool { true }
/// }
/// handler!(Bot, "hi" => network_hi);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a handler netlib can call",
    label = "registered with handler!",
    note = "a handler is a method taking (&mut self, ctx, msg) where msg is `&Message` or a typed `T: Deserialize` by value (not `&T`), and returning `()` or `Result<(), E: Display>`:",
    note = "  channel state:  fn(&mut self, ctx: &mut ChannelContext<'_, Server>, msg: M)",
    note = "  server state:   fn(&mut self, ctx: &mut ServerContext<'_, Self::Channel>, from: ChannelId, msg: M)",
    note = "  client:         fn(&mut self, ctx: &mut ClientContext<'_>, msg: M), on a type with `impl Listener`"
)]
pub trait IntoHandler<Kind> {
    /// Boxes the handler with its message argument erased.
    fn erase(self) -> Box<dyn Any + Send + Sync>;
}

/// Erases a handler method; called by [`handler!`](macro@crate::handler).
#[doc(hidden)]
pub fn erase<K, F: IntoHandler<K>>(f: F) -> Box<dyn Any + Send + Sync> {
    f.erase()
}

/// What a handler may return: `()`, or `Result<(), E>` whose error is reported through the
/// out-of-band hook as [`InboundError::Handler`].
pub trait HandlerReturn {
    /// `Err` with the error's text when the handler failed.
    fn into_outcome(self) -> std::result::Result<(), String>;
}

impl HandlerReturn for () {
    fn into_outcome(self) -> std::result::Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display> HandlerReturn for std::result::Result<(), E> {
    fn into_outcome(self) -> std::result::Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// Runs a handler's outcome into netlib's error for `msg`.
pub(crate) fn outcome(r: impl HandlerReturn, msg: &Message) -> Result<(), InboundError> {
    r.into_outcome().map_err(|message| InboundError::Handler {
        action: msg.action().to_owned(),
        message,
    })
}

/// A message that could not be dispatched, given to the out-of-band hooks
/// ([`ServerHandler::out_of_band`](crate::ServerHandler::out_of_band),
/// [`Listener::out_of_band`](crate::Listener::out_of_band)).
#[derive(Debug)]
pub struct OutOfBand {
    /// Why: bad UTF-8 or JSON, not an object, no string action ([`InboundError::InvalidJson`] and
    /// friends), a payload that does not fit a typed handler ([`InboundError::Payload`]), or a handler
    /// that returned an error ([`InboundError::Handler`]).
    pub error: InboundError,
    /// The frame's payload as received (empty for client-side synthetic events).
    pub payload: Bytes,
}

impl OutOfBand {
    /// Logs it at error with at most 200 bytes of the payload (PodSixNet prints "OOB data"),
    /// through a process-wide gate of 20 such lines per second: the rest are counted, and the
    /// count is logged with the next line that passes. Error, so that what is dropped shows at
    /// `env_logger`'s default level; to stderr when no logger is installed.
    pub fn log(&self, who: &dyn fmt::Display) {
        crate::peerlog::peer_log!(
            log::Level::Error,
            "{who}: out-of-band data dropped ({}): {:?}",
            self.error,
            crate::peerlog::shown(&self.payload)
        );
    }
}

/// FNV-1a: action names are short and chosen by the program, so a simple fast hash beats the
/// default SipHash on the per-message lookup.
#[derive(Default, Clone, Copy)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvBuild = std::hash::BuildHasherDefault<Fnv>;

/// The handlers of one type: by action (each with its index in [`names`](Self::names)), plus
/// the catch-all.
pub(crate) struct Table<H> {
    actions: HashMap<&'static str, (H, u16), FnvBuild>,
    /// The actions, in index order.
    names: Vec<&'static str>,
    catch_all: Option<H>,
    /// Where each action was registered, to report clashes between two tables.
    locations: HashMap<&'static str, &'static str>,
}

impl<H> Table<H> {
    pub(crate) fn get(&self, action: &str) -> Option<&H> {
        self.actions.get(action).map(|(h, _)| h)
    }

    /// The handler for `action` and the action's index in [`names`](Self::names).
    pub(crate) fn get_indexed(&self, action: &str) -> Option<(&H, u16)> {
        self.actions.get(action).map(|(h, i)| (h, *i))
    }

    /// The actions with a handler of their own, in index order.
    pub(crate) fn names(&self) -> &[&'static str] {
        &self.names
    }

    pub(crate) fn catch_all(&self) -> Option<&H> {
        self.catch_all.as_ref()
    }

    /// An action both tables handle, with both registrations: (action, here, there).
    pub(crate) fn clash<G>(
        &self,
        other: &Table<G>,
    ) -> Option<(&'static str, &'static str, &'static str)> {
        self.locations
            .iter()
            .find_map(|(a, here)| Some((*a, *here, *other.locations.get(a)?)))
    }
}

fn label(action: Option<&'static str>) -> &'static str {
    action.unwrap_or("*")
}

/// Checks every registered handler in the program: fails on the first action registered twice
/// on the same type. Servers and clients call this when they start, so a duplicate is an error
/// at start-up, not a surprise at run time.
///
/// # Errors
/// [`StartError::DuplicateHandler`] naming the type, the action and both registrations.
pub fn check_handlers() -> Result<(), StartError> {
    static CHECKED: OnceLock<std::result::Result<(), (usize, usize)>> = OnceLock::new();
    let entries: Vec<&'static HandlerEntry> = inventory::iter::<HandlerEntry>.into_iter().collect();
    let outcome = CHECKED.get_or_init(|| {
        let mut seen: HashMap<(TypeId, Option<&str>), usize> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            if let Some(&first) = seen.get(&((e.target)(), e.action)) {
                return Err((first, i));
            }
            seen.insert(((e.target)(), e.action), i);
        }
        Ok(())
    });
    match *outcome {
        Ok(()) => Ok(()),
        Err((a, b)) => Err(StartError::DuplicateHandler {
            target: entries[b].target_name,
            action: label(entries[b].action),
            first: entries[a].location,
            second: entries[b].location,
        }),
    }
}

/// The dispatch table of type `T` whose handlers have the erased type `H`, built once per
/// program and then shared. A type with no registrations gets an empty table.
///
/// # Errors
/// [`StartError::DuplicateHandler`] if an action is registered twice on `T`, or
/// [`StartError::HandlerSignature`] when a handler registered on `T` is of another shape (e.g. a
/// listener-shaped method on a channel type).
pub(crate) fn table<T: 'static, H: Send + Sync + 'static>() -> Result<&'static Table<H>, StartError>
{
    type Cache = Mutex<HashMap<(TypeId, TypeId), &'static (dyn Any + Send + Sync)>>;
    static TABLES: OnceLock<Cache> = OnceLock::new();
    let key = (TypeId::of::<T>(), TypeId::of::<H>());
    let mut cache = TABLES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(t) = cache.get(&key) {
        return Ok(t.downcast_ref::<Table<H>>().expect("keyed by type"));
    }
    let mut table = Table {
        actions: HashMap::default(),
        names: Vec::new(),
        catch_all: None,
        locations: HashMap::new(),
    };
    let mut seen: HashMap<Option<&'static str>, &'static str> = HashMap::new();
    for e in inventory::iter::<HandlerEntry> {
        if (e.target)() != TypeId::of::<T>() {
            continue;
        }
        if let Some(first) = seen.insert(e.action, e.location) {
            return Err(StartError::DuplicateHandler {
                target: e.target_name,
                action: label(e.action),
                first,
                second: e.location,
            });
        }
        let h = (e.make)()
            .downcast::<H>()
            .map_err(|_| StartError::HandlerSignature {
                target: e.target_name,
                action: label(e.action),
                location: e.location,
            })?;
        match e.action {
            Some(a) => {
                let index = u16::try_from(table.names.len()).unwrap_or(u16::MAX);
                table.actions.insert(a, (*h, index));
                table.names.push(a);
                table.locations.insert(a, e.location);
            }
            None => table.catch_all = Some(*h),
        }
    }
    let leaked: &'static Table<H> = Box::leak(Box::new(table));
    cache.insert(key, leaked);
    Ok(leaked)
}

/// One side's handlers and hooks, as [`deliver`] sees them.
pub(crate) trait Endpoint {
    /// Calls the handler registered for `msg`'s action; `None` if there is none.
    fn specific(&mut self, msg: &Message) -> Option<Result<(), InboundError>>;
    /// Calls the catch-all handlers, reporting each error to `failed`.
    fn catch_all(&mut self, msg: &Message, failed: &mut dyn FnMut(InboundError));
    /// A valid message with no specific handler.
    fn unhandled(&mut self, msg: &Message);
    /// A frame that is not a message, or whose handler failed.
    fn out_of_band(&mut self, oob: OutOfBand);
}

/// Hands one received frame to `e`: the handler for its action (or `unhandled`), then the
/// catch-all (PodSixNet's `Network_<action>`, then `Network`); decoding and handler errors go
/// to the out-of-band hook with the payload.
pub(crate) fn deliver<E: Endpoint>(
    e: &mut E,
    decoded: Result<Message, InboundError>,
    payload: Bytes,
) {
    let msg = match decoded {
        Ok(msg) => msg,
        Err(error) => return e.out_of_band(OutOfBand { error, payload }),
    };
    match e.specific(&msg) {
        None => e.unhandled(&msg),
        Some(Ok(())) => {}
        Some(Err(error)) => e.out_of_band(OutOfBand {
            error,
            payload: payload.clone(),
        }),
    }
    let mut errors = Vec::new();
    e.catch_all(&msg, &mut |error| errors.push(error));
    for error in errors {
        e.out_of_band(OutOfBand {
            error,
            payload: payload.clone(),
        });
    }
}
