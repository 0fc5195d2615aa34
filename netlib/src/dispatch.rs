//! Handler registration (with `inventory`) and dispatch tables: PodSixNet's `Network_<action>`
//! lookup, done once per type at start-up instead of once per message.
//!
//! Users register a method with the [`handler!`](crate::handler) macro, one line per action;
//! nothing here needs to be called directly. Each registration becomes a [`HandlerEntry`] in a
//! link-time list; [`check_handlers`] validates them all (duplicates, signatures) and each server
//! or client builds a per-type [`Table`] from them on first use.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Mutex, OnceLock};

use serde::de::DeserializeOwned;

use crate::client::{ClientContext, Listener};
use crate::error::{Error, Result};
use crate::message::Message;
use crate::server::{Channel, ChannelContext};

/// One registered handler, collected by `inventory`. Built by [`handler!`](crate::handler);
/// its fields are public only so the macro can build it in a `static`.
#[doc(hidden)]
pub struct HandlerEntry {
    /// The action, `None` for the catch-all `network` handler.
    pub action: Option<&'static str>,
    /// `TypeId` of the type the handler is registered on.
    pub target: fn() -> TypeId,
    /// Name of that type, for errors.
    pub target_name: &'static str,
    /// Builds the type-erased handler (a `ChannelFn<C>` or `ListenerFn<L>` in a box).
    pub make: fn() -> Box<dyn Any + Send + Sync>,
    /// `file:line` of the registration, for errors.
    pub location: &'static str,
}

inventory::collect!(HandlerEntry);

/// A channel handler after type erasure of its message argument.
pub type ChannelFn<C> =
    Box<dyn for<'a> Fn(&mut C, &mut ChannelContext<'a, C>, &Message) -> Result<()> + Send + Sync>;

/// A listener handler after type erasure of its message argument.
pub type ListenerFn<L> =
    Box<dyn for<'a> Fn(&mut L, &mut ClientContext<'a>, &Message) -> Result<()> + Send + Sync>;

/// Marker: the handler runs on a server-side [`Channel`].
#[doc(hidden)]
pub struct OnChannel<C>(PhantomData<C>);
/// Marker: the handler runs on a client-side [`Listener`].
#[doc(hidden)]
pub struct OnListener<L>(PhantomData<L>);
/// Marker: the handler takes `&Message`.
#[doc(hidden)]
pub struct Raw;
/// Marker: the handler takes a typed struct deserialized from the message.
#[doc(hidden)]
pub struct Typed<M>(PhantomData<M>);

/// Turns a handler method into a type-erased handler. Implemented for the four method shapes
/// netlib accepts (`Kind` tells them apart):
///
/// - `fn(&mut C, &mut ChannelContext<'_, C>, &Message)` and `fn(&mut C, &mut ChannelContext<'_, C>, T)`
///   for a [`Channel`] `C`;
/// - `fn(&mut L, &mut ClientContext<'_>, &Message)` and `fn(&mut L, &mut ClientContext<'_>, T)`
///   for a [`Listener`] `L`,
///
/// where `T: DeserializeOwned` is deserialized from the message before the call.
pub trait IntoHandler<Kind> {
    /// Boxes the handler as a `ChannelFn<C>` or `ListenerFn<L>`.
    fn erase(self) -> Box<dyn Any + Send + Sync>;
}

impl<C, F> IntoHandler<(OnChannel<C>, Raw)> for F
where
    C: Channel,
    F: Fn(&mut C, &mut ChannelContext<'_, C>, &Message) + Send + Sync + 'static,
{
    fn erase(self) -> Box<dyn Any + Send + Sync> {
        let f: ChannelFn<C> = Box::new(move |c, ctx, m| {
            self(c, ctx, m);
            Ok(())
        });
        Box::new(f)
    }
}

impl<C, M, F> IntoHandler<(OnChannel<C>, Typed<M>)> for F
where
    C: Channel,
    M: DeserializeOwned + 'static,
    F: Fn(&mut C, &mut ChannelContext<'_, C>, M) + Send + Sync + 'static,
{
    fn erase(self) -> Box<dyn Any + Send + Sync> {
        let f: ChannelFn<C> = Box::new(move |c, ctx, m| {
            self(c, ctx, m.parse::<M>()?);
            Ok(())
        });
        Box::new(f)
    }
}

impl<L, F> IntoHandler<(OnListener<L>, Raw)> for F
where
    L: Listener,
    F: Fn(&mut L, &mut ClientContext<'_>, &Message) + Send + Sync + 'static,
{
    fn erase(self) -> Box<dyn Any + Send + Sync> {
        let f: ListenerFn<L> = Box::new(move |l, ctx, m| {
            self(l, ctx, m);
            Ok(())
        });
        Box::new(f)
    }
}

impl<L, M, F> IntoHandler<(OnListener<L>, Typed<M>)> for F
where
    L: Listener,
    M: DeserializeOwned + 'static,
    F: Fn(&mut L, &mut ClientContext<'_>, M) + Send + Sync + 'static,
{
    fn erase(self) -> Box<dyn Any + Send + Sync> {
        let f: ListenerFn<L> = Box::new(move |l, ctx, m| {
            self(l, ctx, m.parse::<M>()?);
            Ok(())
        });
        Box::new(f)
    }
}

/// Erases a handler method; called by [`handler!`](crate::handler).
#[doc(hidden)]
pub fn erase<K, F: IntoHandler<K>>(f: F) -> Box<dyn Any + Send + Sync> {
    f.erase()
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

/// The handlers of one type: by action, plus the catch-all.
pub struct Table<H> {
    actions: HashMap<&'static str, H, FnvBuild>,
    catch_all: Option<H>,
}

impl<H> Table<H> {
    /// The handler for `action`, if one is registered.
    pub fn get(&self, action: &str) -> Option<&H> {
        self.actions.get(action)
    }

    /// The catch-all handler (`network`), if registered.
    pub fn catch_all(&self) -> Option<&H> {
        self.catch_all.as_ref()
    }

    /// Number of actions with a specific handler (the catch-all not counted).
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// Whether no specific handler and no catch-all is registered.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.catch_all.is_none()
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
/// [`Error::DuplicateHandler`] naming the type, the action and both registrations.
pub fn check_handlers() -> Result<()> {
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
        Err((a, b)) => Err(Error::DuplicateHandler {
            target: entries[b].target_name,
            action: label(entries[b].action),
            first: entries[a].location,
            second: entries[b].location,
        }),
    }
}

/// The dispatch table of type `T` whose handlers have the erased type `H`, built once per
/// program and then shared.
///
/// # Errors
/// [`Error::DuplicateHandler`] if an action is registered twice on `T`, or
/// [`Error::HandlerSignature`] when a handler registered on `T` is of
/// the other endpoint kind (e.g. a listener-shaped method on a channel type).
pub(crate) fn table<T: 'static, H: Send + Sync + 'static>() -> Result<&'static Table<H>> {
    type Cache = Mutex<HashMap<TypeId, &'static (dyn Any + Send + Sync)>>;
    static TABLES: OnceLock<Cache> = OnceLock::new();
    let mut cache = TABLES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(t) = cache.get(&TypeId::of::<T>()) {
        return Ok(t
            .downcast_ref::<Table<H>>()
            .expect("one handler shape per type"));
    }
    let mut table = Table {
        actions: HashMap::default(),
        catch_all: None,
    };
    let mut seen: HashMap<Option<&'static str>, &'static str> = HashMap::new();
    for e in inventory::iter::<HandlerEntry> {
        if (e.target)() != TypeId::of::<T>() {
            continue;
        }
        if let Some(first) = seen.insert(e.action, e.location) {
            return Err(Error::DuplicateHandler {
                target: e.target_name,
                action: label(e.action),
                first,
                second: e.location,
            });
        }
        let h = (e.make)()
            .downcast::<H>()
            .map_err(|_| Error::HandlerSignature {
                target: e.target_name,
                action: label(e.action),
                location: e.location,
            })?;
        match e.action {
            Some(a) => {
                table.actions.insert(a, *h);
            }
            None => table.catch_all = Some(*h),
        }
    }
    let leaked: &'static Table<H> = Box::leak(Box::new(table));
    cache.insert(TypeId::of::<T>(), leaked);
    Ok(leaked)
}
