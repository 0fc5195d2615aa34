//! How a WebSocket listener answers HTTP, as data and pure checks: [`WsOptions`] (the upgrade
//! path, the static assets, the allowed origins and hosts), the `Origin` policy (RFC 6455
//! §10.2) and the `Host` policy against DNS rebinding. No I/O and nothing of the rest of the
//! WebSocket transport: the HTTP side ([`http`](super::http)) asks these questions.

/// `netlib.js`, the browser client (an ES module without dependencies), to serve as an asset:
/// `WsOptions::new().asset("/netlib.js", "text/javascript; charset=utf-8", NETLIB_JS)`, or
/// [`WsOptions::netlib_js`].
pub const NETLIB_JS: &[u8] = include_bytes!("../../../js/netlib.js");

/// A static file a WebSocket listener serves.
#[derive(Debug, Clone)]
pub(crate) struct Asset {
    pub(crate) path: String,
    pub(crate) content_type: String,
    pub(crate) body: &'static [u8],
}

/// How a WebSocket listener answers HTTP: the path upgraded to WebSocket, the static assets
/// served beside it, and the origins allowed besides the server's own.
///
/// ```
/// use netlib::transport::ws::WsOptions;
/// let options = WsOptions::new()
///     .asset("/", "text/html; charset=utf-8", b"<!doctype html><title>game</title>")
///     .netlib_js()
///     .allow_origin("https://game.example");
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct WsOptions {
    path: String,
    assets: Vec<Asset>,
    origins: Vec<String>,
    hosts: Vec<String>,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            path: "/ws".to_owned(),
            assets: Vec::new(),
            origins: Vec::new(),
            hosts: Vec::new(),
        }
    }
}

impl WsOptions {
    /// Upgrades on `/ws`, no assets (every other path is 404), no origin but the server's own.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the path whose `GET` is upgraded to a WebSocket (matched exactly, query string
    /// ignored). Default `/ws`. It wins over an asset with the same path.
    ///
    /// # Panics
    /// If `path` does not start with `/`.
    #[must_use]
    pub fn path(mut self, path: &str) -> Self {
        assert!(path.starts_with('/'), "a WebSocket path starts with '/'");
        self.path = path.to_owned();
        self
    }

    /// Serves `body` at `path` (e.g. `/` for the page, with `include_bytes!`) with
    /// `Content-Type: content_type` (e.g. `text/html; charset=utf-8`) and
    /// `Cache-Control: no-cache`. Replaces an asset with the same path.
    ///
    /// # Panics
    /// If `path` does not start with `/`.
    #[must_use]
    pub fn asset(mut self, path: &str, content_type: &str, body: &'static [u8]) -> Self {
        assert!(path.starts_with('/'), "an asset path starts with '/'");
        self.assets.retain(|a| a.path != path);
        self.assets.push(Asset {
            path: path.to_owned(),
            content_type: content_type.to_owned(),
            body,
        });
        self
    }

    /// Serves [`NETLIB_JS`] at `/netlib.js`.
    #[must_use]
    pub fn netlib_js(self) -> Self {
        self.asset("/netlib.js", "text/javascript; charset=utf-8", NETLIB_JS)
    }

    /// Also lets pages from `origin` (`scheme://host[:port]`, as browsers send it in `Origin`,
    /// compared ignoring case) open WebSockets. Pages served by this server itself are always
    /// allowed; requests without an `Origin` (not from a browser) too.
    #[must_use]
    pub fn allow_origin(mut self, origin: &str) -> Self {
        self.origins
            .push(origin.trim_end_matches('/').to_ascii_lowercase());
        self
    }

    /// Also answers requests whose `Host` names `host` (a DNS name, compared ignoring case
    /// and any `:port`; e.g. `chat.example.com`). Against DNS rebinding: a connection that
    /// arrived on a loopback address (a listener bound to `127.0.0.1` or `[::1]`, or one bound
    /// to `0.0.0.0` or `[::]` reached through loopback) is answered only for a loopback
    /// `Host` (`localhost`, a name under `.localhost`, `127.x.y.z`, `[::1]`) and the hosts
    /// given here; one that arrived on another address is answered for an IP-literal `Host`, a
    /// loopback one and, once any host is given here, only those names (with none given, any
    /// name). Other requests get `421 Misdirected Request` (RFC 9110 §15.5.20), WebSocket
    /// upgrades included.
    #[must_use]
    pub fn allow_host(mut self, host: &str) -> Self {
        let host = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        self.hosts
            .push(host.trim_end_matches('.').to_ascii_lowercase());
        self
    }

    /// The upgrade path.
    pub(crate) fn upgrade_path(&self) -> &str {
        &self.path
    }

    /// Whether a request with this `Host` header value is answered on a connection that
    /// arrived on a loopback address (`loopback`) or not (see [`allow_host`](Self::allow_host)).
    pub(crate) fn host_allowed(&self, header: &str, loopback: bool) -> bool {
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        let name = match header.strip_prefix('[') {
            Some(rest) => match rest.split_once(']') {
                Some((ip, "")) => ip,
                Some((ip, port)) if port.starts_with(':') && digits(&port[1..]) => ip,
                _ => return false,
            },
            None => match header.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                Some(_) => return false,
                None => header,
            },
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(ip) = name.parse::<std::net::IpAddr>() {
            return ip.to_canonical().is_loopback() || !loopback;
        }
        if name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        self.hosts.contains(&name) || (!loopback && self.hosts.is_empty())
    }

    pub(crate) fn find_asset(&self, path: &str) -> Option<&Asset> {
        self.assets.iter().find(|a| a.path == path)
    }

    /// Whether a browser page from `origin` may open a WebSocket on a request for `host`: the
    /// same site (`http://` or `https://`, for a proxy that ends TLS, then `host`) or one in
    /// the allow-list.
    pub(crate) fn origin_allowed(&self, origin: &str, host: &str) -> bool {
        let origin = origin.trim_end_matches('/');
        let same = ["http://", "https://"].iter().any(|scheme| {
            origin.len() == scheme.len() + host.len()
                && origin.is_char_boundary(scheme.len())
                && origin[..scheme.len()].eq_ignore_ascii_case(scheme)
                && origin[scheme.len()..].eq_ignore_ascii_case(host)
        });
        same || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_answered_per_the_connection_s_address_and_the_allow_list() {
        let public = WsOptions::new();
        for host in [
            "chat.example",
            "evil.example:80",
            "192.0.2.7",
            "[2001:db8::1]:8080",
        ] {
            assert!(
                public.host_allowed(host, false),
                "{host}: any host without a list"
            );
        }
        let listed = WsOptions::new().allow_host("Chat.Example.:443");
        assert!(listed.host_allowed("chat.example:443", false));
        assert!(
            listed.host_allowed("192.0.2.7", false),
            "an IP literal cannot be rebound"
        );
        assert!(listed.host_allowed("localhost:80", false));
        assert!(!listed.host_allowed("evil.example", false));
        let local = WsOptions::new();
        assert!(local.host_allowed("localhost", true));
        assert!(local.host_allowed("[::1]:8080", true));
        assert!(local.host_allowed("[::ffff:127.0.0.1]", true));
        assert!(!local.host_allowed("evil.example", true));
        assert!(
            !local.host_allowed("192.0.2.7", true),
            "not a loopback address"
        );
        assert!(!local.host_allowed("[::1", true), "malformed");
        assert!(!local.host_allowed("[::1]:abc", true), "malformed port");
        assert!(!local.host_allowed("localhost:x", true), "malformed port");
    }
}
