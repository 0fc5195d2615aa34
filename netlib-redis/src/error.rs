//! [`RedisError`]: why [`RedisAdapter::connect`](crate::RedisAdapter::connect) failed.

/// Why [`RedisAdapter::connect`](crate::RedisAdapter::connect) failed. No variant ever holds
/// the Redis password (URLs are shown as [`RedisConfig::shown_url`](crate::RedisConfig::shown_url)
/// gives them, and Redis's error texts have it replaced by `***`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// A live node holds the [`node_name`](crate::RedisConfig::node_name): its presence was
    /// refreshed, or its key changed hands, while this node watched it; or it did not expire
    /// within its remaining TTL plus 2 s.
    #[error(
        "node name {name:?} is in use by a live node ({why}); stop that node or choose another name"
    )]
    NameInUse {
        /// The name.
        name: String,
        /// How that was found out.
        why: String,
    },
    /// The URL cannot be used (unparsable, or an unsupported scheme such as `rediss://`).
    #[error("invalid Redis URL {url}: {reason}")]
    InvalidUrl {
        /// The URL, its password hidden.
        url: String,
        /// Why.
        reason: String,
    },
    /// Redis could not be asked (unreachable, refused the password, answered an error); only
    /// when a [`node_name`](crate::RedisConfig::node_name) must be taken (without one,
    /// `connect` starts down and retries on its own).
    #[error("Redis: {0}")]
    Redis(String),
    /// No node number (1 to 65 535) was free after many random draws: the cluster has about
    /// 65 535 live or recently retired nodes.
    #[error("no free node number after {0} draws")]
    NoNodeNumber(u32),
}
