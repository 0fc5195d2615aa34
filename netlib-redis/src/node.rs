//! A node's identity in Redis: its number (drawn at every start, never one of a live or
//! recently retired node), its optional name, and its presence (refreshed, or found taken:
//! then the node is fenced).

use std::time::{Duration, Instant};

use netlib::NodeNumber;
use redis::Connection;

use crate::backoff::Rng;
use crate::keys::{Keys, Scripts};

/// How many random numbers are tried before giving up.
pub(crate) const DRAWS: u32 = 1000;

/// How often a newcomer looks at a held node name's key.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// How much longer than the held key's remaining TTL a newcomer waits for it to expire.
const WATCH_MARGIN: Duration = Duration::from_secs(2);

/// Who this process is in the cluster.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) node: NodeNumber,
    /// A random number of this start, in hex: what its keys hold.
    pub(crate) token: String,
    pub(crate) name: Option<String>,
    pub(crate) ttl: Duration,
}

impl Identity {
    pub(crate) fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }
}

/// Takes node number `n` for `me`: whether it was free (neither live, retired nor listed).
pub(crate) fn register(
    con: &mut Connection,
    keys: &Keys,
    scripts: &Scripts,
    me: &Identity,
    n: NodeNumber,
) -> redis::RedisResult<bool> {
    let taken: i64 = scripts
        .register
        .key(keys.node(n))
        .key(keys.retired(n))
        .key(keys.nodes())
        .arg(&me.token)
        .arg(me.ttl_ms())
        .arg(n)
        .invoke(con)?;
    Ok(taken == 1)
}

/// Draws random numbers until one is free and takes it; `None` after [`DRAWS`] tries.
pub(crate) fn draw(
    con: &mut Connection,
    keys: &Keys,
    scripts: &Scripts,
    me: &Identity,
) -> redis::RedisResult<Option<NodeNumber>> {
    let mut rng = Rng::new();
    for _ in 0..DRAWS {
        let n = rng.node_number();
        if register(con, keys, scripts, me, n)? {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// What a presence refresh found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    /// Refreshed.
    Kept,
    /// Taken again after it expired (this process or Redis stalled past the TTL, or Redis
    /// restarted empty): the other nodes' presence may have expired too.
    Retaken,
    /// Another process holds this node's number, or the number was retired (this node was
    /// declared dead): fenced.
    NumberLost,
    /// Another process holds this node's name: fenced.
    NameLost,
}

impl Presence {
    /// Why the node is fenced, if it is.
    pub(crate) fn fenced(self, me: &Identity) -> Option<String> {
        match self {
            Presence::Kept | Presence::Retaken => None,
            Presence::NumberLost => Some(format!(
                "node number {} was taken by another process or declared dead (this process \
                 stalled past its presence TTL, or Redis lost its data meanwhile)",
                me.node
            )),
            Presence::NameLost => Some(format!(
                "node name {:?} is held by another process",
                me.name.as_deref().unwrap_or("")
            )),
        }
    }
}

/// Refreshes `me`'s presence (and name).
pub(crate) fn refresh(
    con: &mut Connection,
    keys: &Keys,
    scripts: &Scripts,
    me: &Identity,
) -> redis::RedisResult<Presence> {
    let mut inv = scripts.refresh.prepare_invoke();
    inv.key(keys.node(me.node))
        .key(keys.retired(me.node))
        .key(keys.nodes());
    if let Some(name) = &me.name {
        inv.key(keys.node_name(name));
    }
    inv.arg(&me.token).arg(me.ttl_ms()).arg(me.node);
    let r: i64 = inv.invoke(con)?;
    Ok(match r {
        1 => Presence::Kept,
        2 => Presence::Retaken,
        -1 => Presence::NameLost,
        _ => Presence::NumberLost,
    })
}

/// Why a node name could not be taken.
#[derive(Debug)]
pub(crate) enum NameError {
    /// A live process holds it; how that was found out.
    InUse(String),
    Redis(redis::RedisError),
}

impl From<redis::RedisError> for NameError {
    fn from(e: redis::RedisError) -> Self {
        NameError::Redis(e)
    }
}

/// Takes node name `name` for `me` (`SET NX` with the presence TTL), or finds it in use by a
/// live process. Blocking, up to the holder's remaining TTL plus 2 s. The rule (as
/// chat-server's `--node-id`): a held name is in use while its key is refreshed (its TTL goes
/// up) or changes hands; it is free once the key expires (its holder died: a restart waits at
/// most one TTL).
pub(crate) fn acquire_name(
    con: &mut Connection,
    keys: &Keys,
    me: &Identity,
    name: &str,
) -> Result<(), NameError> {
    let key = keys.node_name(name);
    // What the key held when first seen, its last remaining TTL (ms), and the deadline.
    let mut seen: Option<(String, i64, Instant)> = None;
    loop {
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&me.token)
            .arg("NX")
            .arg("PX")
            .arg(me.ttl_ms())
            .query(con)?;
        if set.is_some() {
            if seen.is_some() {
                log::info!("node name {name:?}: the earlier holder's presence expired; taken");
            }
            return Ok(());
        }
        let (value, pttl): (Option<String>, i64) =
            redis::pipe().atomic().get(&key).pttl(&key).query(con)?;
        let Some(value) = value else {
            continue; // expired meanwhile: try again
        };
        if value == me.token {
            return Ok(());
        }
        if pttl < 0 {
            return Err(NameError::InUse("its key never expires".to_owned()));
        }
        let now = Instant::now();
        let left = Duration::from_millis(pttl as u64);
        match &seen {
            None => {
                log::warn!(
                    "node name {name:?} is held: waiting up to {:.1} s to see whether its holder \
                     is alive (refreshes it) or dead (it expires)",
                    (left + WATCH_MARGIN).as_secs_f64()
                );
                seen = Some((value, pttl, now + left + WATCH_MARGIN));
            }
            Some((first, last, deadline)) => {
                if *first != value {
                    return Err(NameError::InUse(
                        "another process took it meanwhile".to_owned(),
                    ));
                }
                // Without a refresh the remaining TTL only goes down.
                if pttl > last + 20 {
                    return Err(NameError::InUse("its holder refreshed it".to_owned()));
                }
                if now >= *deadline {
                    return Err(NameError::InUse("its presence did not expire".to_owned()));
                }
                seen = Some((value, pttl, *deadline));
            }
        }
        std::thread::sleep(WATCH_EVERY.min(left + Duration::from_millis(1)));
    }
}

/// Gives node name `name` up if `me` holds it.
pub(crate) fn release_name(
    con: &mut Connection,
    keys: &Keys,
    scripts: &Scripts,
    me: &Identity,
    name: &str,
) -> redis::RedisResult<()> {
    scripts
        .delete_if
        .key(keys.node_name(name))
        .arg(&me.token)
        .invoke::<i64>(con)
        .map(drop)
}
