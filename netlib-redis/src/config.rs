//! [`RedisConfig`]: where the Redis server is and how this node joins the cluster.

use std::fmt;
use std::time::Duration;

/// The default presence TTL (see [`RedisConfig::presence_ttl`]).
pub const DEFAULT_PRESENCE_TTL: Duration = Duration::from_secs(10);

/// The shortest presence TTL taken; shorter ones are raised to it (so that a Redis command
/// that times out, after at most 500 ms, cannot outlast a presence).
const MIN_PRESENCE_TTL: Duration = Duration::from_secs(1);

/// How a [`RedisAdapter`](crate::RedisAdapter) reaches Redis and joins the cluster: a builder.
///
/// ```
/// use std::time::Duration;
/// use netlib_redis::RedisConfig;
///
/// let config = RedisConfig::new("redis://:s3cret@10.0.0.5:6379")
///     .prefix("game")
///     .presence_ttl(Duration::from_secs(5))
///     .node_name("eu-1");
/// assert_eq!(config.shown_url(), "redis://:***@10.0.0.5:6379");
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) presence_ttl: Duration,
    pub(crate) node_name: Option<String>,
}

impl RedisConfig {
    /// A configuration for the Redis server at `url`: `redis://HOST:PORT`, or
    /// `redis://:PASSWORD@HOST:PORT` (`redis://USER:PASSWORD@HOST:PORT` with an ACL user) for
    /// a server with `requirepass`, as the `redis` crate reads it; `redis+unix:///PATH` for a
    /// Unix socket. TLS (`rediss://`) is not supported. The URL is checked by
    /// [`RedisAdapter::connect`](crate::RedisAdapter::connect).
    pub fn new(url: &str) -> Self {
        RedisConfig {
            url: url.to_owned(),
            prefix: "netlib".to_owned(),
            presence_ttl: DEFAULT_PRESENCE_TTL,
            node_name: None,
        }
    }

    /// The prefix of every key and pub/sub channel (default `netlib`: keys are `netlib:...`),
    /// so that several clusters can share one Redis server. Nodes of one cluster must use the
    /// same prefix.
    pub fn prefix(mut self, p: &str) -> Self {
        p.clone_into(&mut self.prefix);
        self
    }

    /// How long this node's presence lives in Redis without a refresh (default 10 s; at least
    /// 1 s, shorter values are raised). The node refreshes it every third of the TTL; a node
    /// that dies (SIGKILL, a crash, a network partition) is found dead by the others once it
    /// expires, and its channels depart within the TTL plus 2 s. A node that stalls for
    /// longer than the TTL (e.g. a stopped process) is fenced: it must not come back under
    /// the same number (see the [crate docs](crate#fencing)).
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.presence_ttl = ttl.max(MIN_PRESENCE_TTL);
        self
    }

    /// A name for this node, unique among the live nodes of the cluster (e.g. chat-server's
    /// `--node-id`): [`RedisAdapter::connect`](crate::RedisAdapter::connect) takes it, or fails
    /// with [`RedisError::NameInUse`](crate::RedisError::NameInUse) while a live node holds it.
    /// Optional: a node number is drawn at every start anyway.
    pub fn node_name(mut self, name: &str) -> Self {
        self.node_name = Some(name.to_owned());
        self
    }

    /// The URL, for logs: any password in it is shown as `***`.
    pub fn shown_url(&self) -> String {
        shown_url(&self.url)
    }

    /// How long one Redis command, or a connection attempt, may take before Redis counts as
    /// unreachable: a third of the presence TTL, between 500 ms and 5 s.
    pub(crate) fn io_timeout(&self) -> Duration {
        (self.presence_ttl / 3).clamp(Duration::from_millis(500), Duration::from_secs(5))
    }
}

impl fmt::Debug for RedisConfig {
    /// The URL without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.shown_url())
            .field("prefix", &self.prefix)
            .field("presence_ttl", &self.presence_ttl)
            .field("node_name", &self.node_name)
            .finish()
    }
}

/// `url` with the password of its user info (`scheme://user:PASSWORD@host`) shown as `***`.
pub(crate) fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The user info ends at the last `@` before the path.
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Hides a password in text meant for logs and errors: every occurrence of it becomes `***`.
#[derive(Clone, Default)]
pub(crate) struct Scrub {
    secret: Option<String>,
}

impl Scrub {
    /// Hides `secret` (nothing if `None` or empty).
    pub(crate) fn new(secret: Option<&str>) -> Self {
        Scrub {
            secret: secret.filter(|s| !s.is_empty()).map(str::to_owned),
        }
    }

    /// `text` with the secret replaced.
    pub(crate) fn text(&self, text: impl fmt::Display) -> String {
        let text = text.to_string();
        match &self.secret {
            Some(s) if text.contains(s.as_str()) => text.replace(s.as_str(), "***"),
            _ => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shown_url_hides_the_password() {
        let shown = |url: &str| RedisConfig::new(url).shown_url();
        assert_eq!(
            shown("redis://:s3cret@10.0.0.1:6379"),
            "redis://:***@10.0.0.1:6379"
        );
        assert_eq!(
            shown("redis://chat:s3cret@10.0.0.1:6379/2"),
            "redis://chat:***@10.0.0.1:6379/2"
        );
        assert_eq!(
            shown("redis://:p@ss@10.0.0.1:6379"),
            "redis://:***@10.0.0.1:6379"
        );
        assert_eq!(shown("redis://10.0.0.1:6379"), "redis://10.0.0.1:6379");
        assert_eq!(shown("not a url"), "not a url");
    }

    #[test]
    fn debug_and_scrub_never_show_the_password() {
        let config = RedisConfig::new("redis://u:s3cret@h:1").node_name("n");
        assert!(!format!("{config:?}").contains("s3cret"));
        let scrub = Scrub::new(Some("s3cret"));
        assert_eq!(scrub.text("auth s3cret failed"), "auth *** failed");
        assert_eq!(Scrub::new(Some("")).text("x"), "x");
    }

    #[test]
    fn the_ttl_has_a_floor_and_sets_the_io_timeout() {
        let c = RedisConfig::new("redis://h").presence_ttl(Duration::from_millis(1));
        assert_eq!(c.presence_ttl, MIN_PRESENCE_TTL);
        assert_eq!(c.io_timeout(), Duration::from_millis(500));
        assert!(c.io_timeout() < c.presence_ttl * 2 / 3);
        let c = RedisConfig::new("redis://h").presence_ttl(Duration::from_secs(3));
        assert_eq!(c.io_timeout(), Duration::from_secs(1));
        let c = RedisConfig::new("redis://h").presence_ttl(Duration::from_secs(60));
        assert_eq!(c.io_timeout(), Duration::from_secs(5));
    }
}
