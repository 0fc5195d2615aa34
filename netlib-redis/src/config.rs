//! [`RedisConfig`]: where the Redis server is and how this node joins the cluster.

use std::fmt;
use std::time::Duration;

/// The default presence TTL (see [`RedisConfig::presence_ttl`]).
pub const DEFAULT_PRESENCE_TTL: Duration = Duration::from_secs(10);

/// The default cap on room sends held while Redis is down (see
/// [`RedisConfig::outage_backlog`]): 16 MiB.
pub const DEFAULT_OUTAGE_BACKLOG: usize = 16 << 20;

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
    pub(crate) outage_backlog: usize,
    pub(crate) room_streams: usize,
}

impl RedisConfig {
    /// A configuration for the Redis server at `url`: `redis://HOST:PORT`, or
    /// `redis://:PASSWORD@HOST:PORT` (`redis://USER:PASSWORD@HOST:PORT` with an ACL user) for
    /// a server with `requirepass`, as the `redis` crate reads it; `redis+unix:///PATH` for a
    /// Unix socket (`redis+unix:///PATH?pass=PASSWORD` with a password). TLS (`rediss://`) is
    /// not supported. The URL is checked by
    /// [`RedisAdapter::connect`](crate::RedisAdapter::connect).
    pub fn new(url: &str) -> Self {
        RedisConfig {
            url: url.to_owned(),
            prefix: "netlib".to_owned(),
            presence_ttl: DEFAULT_PRESENCE_TTL,
            node_name: None,
            outage_backlog: DEFAULT_OUTAGE_BACKLOG,
            room_streams: 0,
        }
    }

    /// How many bytes of room sends (their envelopes) this node holds while Redis is down, to
    /// publish when it is back, in order (default [`DEFAULT_OUTAGE_BACKLOG`], 16 MiB). Past
    /// it, room sends are refused with
    /// [`ClusterError::Unavailable`](netlib::ClusterError::Unavailable) (the sender's own
    /// node still delivers them), as all of them are with 0.
    pub fn outage_backlog(mut self, bytes: usize) -> Self {
        self.outage_backlog = bytes;
        self
    }

    /// Keeps every room's messages in a Redis stream, `{p}:stream:{room}`, of about `length`
    /// entries (`XADD ... MAXLEN ~ length`; 0, the default, keeps none), as Centrifugo keeps
    /// channel history. Each room send is added to its room's stream and published in one
    /// step, and its stream id is its offset: every node, the sender's included, delivers it
    /// to its members when it comes back from Redis, so every member of a room sees it in the
    /// stream's order. With it:
    /// - resumable sessions are kept in Redis too (`{p}:sess:{token}`), and a client may
    ///   resume its session on any node, its first node dead (SIGKILL) or alive: it gets the
    ///   room messages it missed from the streams, then live ones, each once and in order;
    /// - a room's history (`ServerContext::send_history`) is read from its stream, so every
    ///   node has it, whether or not it has members in the room;
    /// - while Redis is down, room sends are held (see
    ///   [`outage_backlog`](Self::outage_backlog)) and reach every member, local ones too, when
    ///   it is back.
    ///
    /// Nodes of one cluster must agree on it.
    pub fn room_streams(mut self, length: usize) -> Self {
        self.room_streams = length;
        self
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

    /// The URL, for logs: any password in it is shown as `***` (the user info's, found up to
    /// the last `@` so that an unencoded `/` in it changes nothing, and the values of `pass=`
    /// and `password=` query parameters); a URL without `scheme://` is shown as `***` whole.
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
            .field("outage_backlog", &self.outage_backlog)
            .finish()
    }
}

/// The query parameters that carry a password (`redis+unix:///path?pass=...`).
const PASSWORD_PARAMS: [&str; 2] = ["pass", "password"];

/// `url`'s scheme, its user info (everything before the last `@` of what follows `://`, so
/// that a password with an unencoded `/`, `?` or `@` stays in it; none for a URL whose path
/// starts at once, `redis+unix:///...`), and the rest. `None` if it has no `scheme://`.
fn parts(url: &str) -> Option<(&str, Option<&str>, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if rest.starts_with('/') {
        return Some((scheme, None, rest));
    }
    Some(match rest.rsplit_once('@') {
        Some((user_info, after)) => (scheme, Some(user_info), after),
        None => (scheme, None, rest),
    })
}

/// `rest` (what follows the user info) with the values of its password query parameters shown
/// as `***`.
fn masked_query(rest: &str) -> String {
    let Some((before, query)) = rest.split_once('?') else {
        return rest.to_owned();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if PASSWORD_PARAMS.iter().any(|p| key.eq_ignore_ascii_case(p)) => {
                format!("{key}=***")
            }
            _ => param.to_owned(),
        })
        .collect();
    format!("{before}?{}", params.join("&"))
}

/// `url` with the password of its user info (`scheme://user:PASSWORD@host`) and of its
/// `pass=`/`password=` query parameters shown as `***`; a URL without `scheme://` (that
/// cannot be parsed at all) is shown as `***` whole.
pub(crate) fn shown_url(url: &str) -> String {
    let Some((scheme, user_info, rest)) = parts(url) else {
        return "***".to_owned();
    };
    let rest = masked_query(rest);
    match user_info {
        Some(user_info) => {
            let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
            format!("{scheme}://{user}:***@{rest}")
        }
        None => format!("{scheme}://{rest}"),
    }
}

/// The passwords in `url`, as well as they can be found (for hiding them in the `redis`
/// crate's errors about a URL it could not parse): the user info's and the password query
/// parameters'; the whole URL if it cannot be parsed at all.
pub(crate) fn passwords_in(url: &str) -> Vec<String> {
    let Some((_, user_info, _)) = parts(url) else {
        return vec![url.to_owned()];
    };
    let mut found = Vec::new();
    if let Some((_, password)) = user_info.and_then(|u| u.split_once(':')) {
        found.push(password.to_owned());
    }
    // Every query parameter of the whole URL (an `@` in a query value would put part of
    // the query in what looks like the user info).
    if let Some((_, query)) = url.split_once('?') {
        for param in query.split(['&', '?']) {
            if let Some((key, value)) = param.split_once('=') {
                if PASSWORD_PARAMS.iter().any(|p| key.eq_ignore_ascii_case(p)) {
                    found.push(value.to_owned());
                }
            }
        }
    }
    found.retain(|p| !p.is_empty());
    found
}

/// Hides passwords in text meant for logs and errors: every occurrence of one becomes `***`.
#[derive(Clone, Default)]
pub(crate) struct Scrub {
    secrets: Vec<String>,
}

impl Scrub {
    /// Hides each of `secrets` (the empty ones are left out).
    pub(crate) fn all(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        // The longest first: a secret that contains another is hidden whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Scrub { secrets }
    }

    /// `text` with the secrets replaced.
    pub(crate) fn text(&self, text: impl fmt::Display) -> String {
        let mut text = text.to_string();
        for s in &self.secrets {
            if text.contains(s.as_str()) {
                text = text.replace(s.as_str(), "***");
            }
        }
        text
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
        // A password with an unencoded `/` (or `?`) is still the user info's.
        assert_eq!(
            shown("redis://:s3/cr?et@10.0.0.1:6379/2"),
            "redis://:***@10.0.0.1:6379/2"
        );
        assert_eq!(
            shown("redis://u:a/b@c@10.0.0.1:6379"),
            "redis://u:***@10.0.0.1:6379"
        );
        // Password query parameters (a Unix socket's).
        assert_eq!(
            shown("redis+unix:///run/redis.sock?db=2&pass=s3cret"),
            "redis+unix:///run/redis.sock?db=2&pass=***"
        );
        assert_eq!(
            shown("redis+unix:///tmp/r.sock?user=u&password=s3cret"),
            "redis+unix:///tmp/r.sock?user=u&password=***"
        );
        assert_eq!(
            shown("redis://u:s3cret@h:1?PASS=other"),
            "redis://u:***@h:1?PASS=***"
        );
        assert_eq!(
            shown("redis+unix:///tmp/r.sock"),
            "redis+unix:///tmp/r.sock"
        );
        // What cannot be parsed at all is hidden whole.
        assert_eq!(shown("not a url"), "***");
        assert_eq!(shown(":s3cret@h:1"), "***");
        for url in [
            "redis://:s3/cr?et@h:1",
            "redis+unix:///p?pass=s3cret",
            "redis://x:s3cret@[::1",
            "s3cret",
        ] {
            assert!(!shown(url).contains("s3"), "{url}: {}", shown(url));
        }
    }

    #[test]
    fn debug_and_scrub_never_show_the_password() {
        let config = RedisConfig::new("redis://u:s3cret@h:1").node_name("n");
        assert!(!format!("{config:?}").contains("s3cret"));
        let scrub = Scrub::all(["s3cret".to_owned()]);
        assert_eq!(scrub.text("auth s3cret failed"), "auth *** failed");
        assert_eq!(Scrub::all([String::new()]).text("x"), "x");
        let scrub = Scrub::all(["ab".to_owned(), "abcd".to_owned(), String::new()]);
        assert_eq!(scrub.text("abcd ab x"), "*** *** x");
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
