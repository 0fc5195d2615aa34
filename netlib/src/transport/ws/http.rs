//! The HTTP/1.1 side of a WebSocket listener, sans-IO: the bytes of a request head in (parsed
//! with `httparse`), the answer out: a `101 Switching Protocols` upgrade (RFC 6455 §4.2.2), a
//! static asset, or an error status. Every answer but the upgrade closes the connection. What
//! to answer comes from the listener's [`WsOptions`] ([`options`](super::options)); the
//! connection ([`stream`](super::stream)) reads the request and writes the answer. Nothing
//! else of the WebSocket transport is used here.

use std::io::{self, Write};

use super::options::WsOptions;

/// Most bytes of a request head (request line and headers) read; a longer head is answered
/// `431 Request Header Fields Too Large`.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// Most header lines parsed (more: 431).
const MAX_HEADERS: usize = 64;
/// The `Cache-Control` of every answer: browsers check back every time. There is no validator
/// (ETag), so they fetch the asset again; assets are small and served from memory.
const CACHE_CONTROL: &str = "no-cache";

/// An HTTP response ready to be written: its head, then a static body.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The status code.
    pub(crate) status: u16,
    head: Vec<u8>,
    body: &'static [u8],
    /// Bytes written so far (head, then body).
    written: usize,
}

impl Reply {
    fn new(status: u16, headers: &[(&str, &str)], body: &'static [u8]) -> Self {
        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status)).into_bytes();
        for (name, value) in headers {
            head.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if status != 101 {
            head.extend_from_slice(
                format!(
                    "Content-Length: {}\r\nCache-Control: {CACHE_CONTROL}\r\n\
                     X-Content-Type-Options: nosniff\r\nConnection: close\r\n",
                    body.len()
                )
                .as_bytes(),
            );
        }
        head.extend_from_slice(b"\r\n");
        Reply {
            status,
            head,
            body,
            written: 0,
        }
    }

    /// An error answer with a plain-text body naming the status, and `headers`.
    pub(crate) fn error(status: u16, headers: &[(&str, &str)]) -> Self {
        let mut all = vec![("Content-Type", "text/plain; charset=utf-8")];
        all.extend_from_slice(headers);
        Reply::new(status, &all, error_body(status))
    }

    /// Writes what is left; `Ok(true)` once everything is written, `Ok(false)` if `w` would
    /// block.
    ///
    /// # Errors
    /// Any other error of `w`.
    pub(crate) fn write_to<W: Write + ?Sized>(&mut self, w: &mut W) -> io::Result<bool> {
        loop {
            let rest = if self.written < self.head.len() {
                &self.head[self.written..]
            } else if self.written < self.head.len() + self.body.len() {
                &self.body[self.written - self.head.len()..]
            } else {
                return Ok(true);
            };
            match w.write(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The whole response, for tests.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> Vec<u8> {
        [&self.head[..], self.body].concat()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        421 => "Misdirected Request",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn error_body(status: u16) -> &'static [u8] {
    match status {
        400 => b"400 Bad Request\n",
        403 => b"403 Forbidden: this origin may not open a WebSocket here\n",
        404 => b"404 Not Found\n",
        405 => b"405 Method Not Allowed\n",
        408 => b"408 Request Timeout\n",
        421 => b"421 Misdirected Request: this server does not answer for this Host\n",
        426 => b"426 Upgrade Required: this path speaks WebSocket (RFC 6455)\n",
        431 => b"431 Request Header Fields Too Large\n",
        503 => b"503 Service Unavailable\n",
        _ => b"error\n",
    }
}

/// What to do with the bytes of a request received so far.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The head is not complete: read more.
    Partial,
    /// Write `reply` (101), then speak WebSocket; input from byte `consumed` on is already
    /// WebSocket data.
    Upgrade {
        /// The 101 response.
        reply: Reply,
        /// Length of the request head.
        consumed: usize,
    },
    /// Write `reply`, then close.
    Close(Reply),
}

/// Answers the request whose first bytes are `input`; `about` is set to a short description
/// of it for the log (`GET /ws`).
pub(crate) fn answer(
    input: &[u8],
    options: &WsOptions,
    about: &mut String,
    loopback: bool,
) -> Answer {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if input.len() >= MAX_HEAD => {
            return Answer::Close(Reply::error(431, &[]))
        }
        Ok(httparse::Status::Partial) => return Answer::Partial,
        Err(httparse::Error::TooManyHeaders) => return Answer::Close(Reply::error(431, &[])),
        Err(_) => return Answer::Close(Reply::error(400, &[])),
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Answer::Close(Reply::error(400, &[]));
    };
    *about = format!("{method} {target}");
    if method != "GET" {
        return Answer::Close(Reply::error(405, &[("Allow", "GET")]));
    }
    match single(&req, "Host") {
        Ok(Some(host)) if !options.host_allowed(host, loopback) => {
            return Answer::Close(Reply::error(421, &[]))
        }
        Ok(_) => {}
        Err(()) => return Answer::Close(Reply::error(400, &[])),
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    if path == options.upgrade_path() {
        return match upgrade(&req, options) {
            Ok(reply) => Answer::Upgrade { reply, consumed },
            Err(reply) => Answer::Close(reply),
        };
    }
    match options.find_asset(path) {
        Some(asset) => Answer::Close(Reply::new(
            200,
            &[("Content-Type", asset.content_type.as_str())],
            asset.body,
        )),
        None => Answer::Close(Reply::error(404, &[])),
    }
}

/// The value of header `name`, if the request has it exactly once and it is text.
fn single<'a>(req: &httparse::Request<'_, 'a>, name: &str) -> Result<Option<&'a str>, ()> {
    let mut found = None;
    for h in req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
    {
        if found.is_some() {
            return Err(());
        }
        found = Some(std::str::from_utf8(h.value).map_err(|_| ())?.trim());
    }
    Ok(found)
}

/// Whether a comma-separated header (every occurrence) lists `token`, ignoring case.
fn lists(req: &httparse::Request<'_, '_>, name: &str, token: &str) -> bool {
    req.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A `Sec-WebSocket-Key`: the base64 encoding of 16 bytes (RFC 6455 §4.1), 24 characters.
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        && &b[22..] == b"=="
}

/// Checks an upgrade request (RFC 6455 §4.2.1) and its `Origin` (§10.2); returns the 101
/// response, or the error response.
fn upgrade(req: &httparse::Request<'_, '_>, options: &WsOptions) -> Result<Reply, Reply> {
    let bad = || Reply::error(400, &[]);
    if req.version != Some(1) {
        return Err(bad());
    }
    if !lists(req, "Upgrade", "websocket") {
        // §4.2.2: a plain request for the WebSocket path; RFC 9110 §15.5.22 asks for `Upgrade`.
        return Err(Reply::error(
            426,
            &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
        ));
    }
    let host = single(req, "Host").map_err(|_| bad())?.ok_or_else(bad)?;
    if !lists(req, "Connection", "upgrade") {
        return Err(bad());
    }
    let key = single(req, "Sec-WebSocket-Key").map_err(|_| bad())?;
    let key = key.filter(|k| valid_key(k)).ok_or_else(bad)?;
    if single(req, "Sec-WebSocket-Version").map_err(|_| bad())? != Some("13") {
        // §4.4: name the version this server speaks.
        return Err(Reply::error(
            426,
            &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
        ));
    }
    let origin = single(req, "Origin").map_err(|_| bad())?;
    if let Some(origin) = origin {
        if !options.origin_allowed(origin, host) {
            return Err(Reply::error(403, &[]));
        }
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    Ok(Reply::new(
        101,
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", &accept),
        ],
        b"",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn ask(request: &str, options: &WsOptions) -> (u16, String) {
        let mut about = String::new();
        match answer(request.as_bytes(), options, &mut about, false) {
            Answer::Partial => (0, String::new()),
            Answer::Upgrade { reply, consumed } => {
                assert_eq!(consumed, request.find("\r\n\r\n").unwrap() + 4);
                (101, String::from_utf8(reply.bytes()).unwrap())
            }
            Answer::Close(reply) => (reply.status, String::from_utf8(reply.bytes()).unwrap()),
        }
    }

    fn upgrade_request(extra: &str) -> String {
        format!(
            "GET /ws HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\n\
             Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
             Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    #[test]
    fn the_rfc_example_key_gets_the_rfc_accept_value() {
        let (status, text) = ask(&upgrade_request(""), &WsOptions::new());
        assert_eq!(status, 101);
        // RFC 6455 §1.3's example.
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.ends_with("\r\n\r\n"), "no body after a 101");
    }

    #[test]
    fn origins_are_checked_against_the_host_and_the_allow_list() {
        let options = WsOptions::new().allow_origin("https://game.example/");
        let cases = [
            ("", 101),
            ("Origin: http://example.com:8080\r\n", 101),
            ("Origin: HTTP://Example.com:8080\r\n", 101),
            ("Origin: https://game.example\r\n", 101),
            ("Origin: http://evil.example\r\n", 403),
            ("Origin: http://example.com\r\n", 403),
            ("Origin: null\r\n", 403),
        ];
        for (header, want) in cases {
            assert_eq!(ask(&upgrade_request(header), &options).0, want, "{header}");
        }
    }

    #[test]
    fn bad_upgrades_are_refused_with_the_status_the_rfc_names() {
        let o = WsOptions::new();
        let plain = "GET /ws HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(ask(plain, &o).0, 426);
        let old = upgrade_request("").replace("Version: 13", "Version: 8");
        let (status, text) = ask(&old, &o);
        assert_eq!(status, 426);
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
        for broken in [
            upgrade_request("").replace(KEY, "short=="),
            upgrade_request("").replace("Connection: keep-alive, Upgrade", "Connection: close"),
            upgrade_request("").replace("Host: example.com:8080\r\n", ""),
            upgrade_request("").replace("HTTP/1.1", "HTTP/1.0"),
            upgrade_request(&format!("Sec-WebSocket-Key: {KEY}\r\n")),
        ] {
            assert_eq!(ask(&broken, &o).0, 400, "{broken}");
        }
    }

    #[test]
    fn pages_methods_and_malformed_requests() {
        let o = WsOptions::new().asset("/", "text/html; charset=utf-8", b"<p>hi</p>");
        let (status, text) = ask("GET /?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", &o);
        assert_eq!(status, 200);
        assert!(text.contains("Content-Type: text/html; charset=utf-8\r\n"));
        assert!(text.contains("Content-Length: 9\r\n"));
        assert!(text.contains("Cache-Control: no-cache\r\n"));
        assert!(text.ends_with("\r\n\r\n<p>hi</p>"));
        assert_eq!(ask("GET /nope HTTP/1.1\r\n\r\n", &o).0, 404);
        let (status, text) = ask("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &o);
        assert_eq!(status, 405);
        assert!(text.contains("Allow: GET\r\n"));
        assert_eq!(ask("GARBAGE\0\r\n\r\n", &o).0, 400);
        assert_eq!(ask("GET / HTTP/1.1\r\nHost: a\r\n", &o).0, 0, "partial");
    }

    #[test]
    fn an_oversize_head_is_431_whether_complete_or_not() {
        let o = WsOptions::new();
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(ask(&long[..MAX_HEAD], &o).0, 431);
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X{i}: y\r\n"))
            .collect();
        assert_eq!(ask(&format!("GET / HTTP/1.1\r\n{many}\r\n"), &o).0, 431);
    }
}
