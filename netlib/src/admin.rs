//! The admin listener: a small HTTP server on a thread of its own (on `tiny_http`) that serves a
//! server's [`Metrics`], its liveness and its readiness to an operator or an orchestrator. It
//! never runs on, or waits in, the server's event loop: a scrape asks the loop for its figures
//! and takes the previous ones if the loop does not answer within
//! [`SCRAPE_WAIT`](crate::SCRAPE_WAIT).

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tiny_http::{Header, Method, Request, Response};

use crate::error::ListenError;
use crate::metrics::{Exposition, Metrics};

/// An HTTP listener for operators, serving one server's [`Metrics`]:
///
/// | request | answer |
/// |---|---|
/// | `GET /metrics` | 200, the exposition: Prometheus text 0.0.4, or OpenMetrics when the `Accept` header asks for `application/openmetrics-text` |
/// | `GET /healthz` | 200 `ok`: the process is alive and answers HTTP |
/// | `GET /readyz` | 200 `ready`, or 503 with one line per failing check: the server's loop answers, a listener is bound, it is not shutting down, and every [check](Metrics::add_check) passes (with the Redis adapter: Redis is connected) |
/// | anything else | 404 (405 for a method other than `GET` or `HEAD`) |
///
/// Made by [`Server::serve_metrics`](crate::Server::serve_metrics). Each request is answered on
/// a thread of its own, at most [`ADMIN_MAX_IN_FLIGHT`] at once (more get 503 at once), so a client
/// that stops reading holds up only its own answer. Keep it off the internet: it has no
/// authentication (bind it to loopback or a private network). Dropping it stops the listener
/// and joins its accepting thread (answers under way finish on their own).
pub struct AdminServer {
    addr: SocketAddr,
    http: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl AdminServer {
    /// Listens on the first address `addr` (`"host:port"`, port 0 for any) resolves to and
    /// serves `metrics` there on a new thread.
    ///
    /// # Errors
    /// [`ListenError::Resolve`] if `addr` does not resolve, [`ListenError::Bind`] if it cannot
    /// be listened on, [`ListenError::Io`] if the HTTP server or its thread cannot start.
    pub fn bind(addr: &str, metrics: Metrics) -> Result<AdminServer, ListenError> {
        let addr = crate::net::resolve(addr)?[0];
        let listener =
            TcpListener::bind(addr).map_err(|source| ListenError::Bind { addr, source })?;
        let addr = listener.local_addr()?;
        let http = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| ListenError::Io(std::io::Error::other(e.to_string())))?;
        let http = Arc::new(http);
        let serving = http.clone();
        let thread = std::thread::Builder::new()
            .name("netlib-admin".into())
            .spawn(move || {
                let in_flight = Arc::new(AtomicUsize::new(0));
                // `recv` fails once `unblock` is called (on drop).
                while let Ok(request) = serving.recv() {
                    if in_flight.fetch_add(1, Ordering::AcqRel) >= ADMIN_MAX_IN_FLIGHT {
                        in_flight.fetch_sub(1, Ordering::AcqRel);
                        busy(request);
                        continue;
                    }
                    let (metrics, done) = (metrics.clone(), in_flight.clone());
                    let spawned = std::thread::Builder::new()
                        .name("netlib-admin-answer".into())
                        .spawn(move || {
                            answer(request, &metrics);
                            done.fetch_sub(1, Ordering::AcqRel);
                        });
                    if let Err(e) = spawned {
                        in_flight.fetch_sub(1, Ordering::AcqRel);
                        log::error!("admin: cannot start a thread for a request: {e}");
                    }
                }
            })?;
        log::info!("metrics, health and readiness on http://{addr}");
        Ok(AdminServer {
            addr,
            http,
            thread: Some(thread),
        })
    }

    /// The address it listens on (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.http.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How many requests an [`AdminServer`] answers at once; more are answered 503 at once.
pub const ADMIN_MAX_IN_FLIGHT: usize = 8;

/// Answers 503 to a request over [`ADMIN_MAX_IN_FLIGHT`].
fn busy(request: Request) {
    let response = Response::from_string("busy: too many requests in flight\n")
        .with_status_code(503)
        .with_header(header("Retry-After", "1"));
    if let Err(e) = request.respond(response) {
        log::debug!("admin: cannot answer: {e}");
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

/// Answers one request (see [`AdminServer`]); a client that went away is only logged.
fn answer(request: Request, metrics: &Metrics) {
    let text = |status: u16, body: String| {
        Response::from_string(body)
            .with_status_code(status)
            .with_header(header("Content-Type", "text/plain; charset=utf-8"))
    };
    let response = if !matches!(request.method(), Method::Get | Method::Head) {
        text(405, "only GET and HEAD\n".into()).with_header(header("Allow", "GET, HEAD"))
    } else {
        let path = request.url().split('?').next().unwrap_or("");
        match path {
            "/metrics" => {
                let accept = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Accept"))
                    .map(|h| h.value.as_str());
                let format = Exposition::from_accept(accept);
                Response::from_string(metrics.encode(format))
                    .with_header(header("Content-Type", format.content_type()))
            }
            "/healthz" => text(200, "ok\n".into()),
            "/readyz" => match metrics.readiness() {
                Ok(()) => text(200, "ready\n".into()),
                Err(why) => text(503, format!("{why}\n")),
            },
            _ => text(404, "not found: try /metrics, /healthz or /readyz\n".into()),
        }
    };
    if let Err(e) = request.respond(response) {
        log::debug!("admin: cannot answer: {e}");
    }
}
