//! The admin listener over loopback: `/metrics` in Prometheus text and OpenMetrics (both
//! checked with the Prometheus project's own Python parsers), `/healthz`, `/readyz`, and the
//! answers to what it does not serve.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use netlib::{Client, ClientConfig, Exposition, Message, Server, ServerConfig};
use netlib_tests::{http_get as get, parse_exposition, Echo, TIMEOUT};

/// Runs `request` on a thread while this one pumps `server`, until it is answered (at most
/// [`TIMEOUT`]).
fn while_pumping<T: Send + 'static>(
    server: &mut Server<Echo>,
    request: impl FnOnce() -> T + Send + 'static,
) -> T {
    let thread = std::thread::spawn(request);
    let deadline = Instant::now() + TIMEOUT;
    while !thread.is_finished() {
        assert!(Instant::now() < deadline, "no answer in time");
        server.pump_timeout(Duration::from_millis(5)).unwrap();
    }
    thread.join().unwrap()
}

#[test]
fn the_admin_listener_serves_metrics_health_and_readiness_over_loopback() {
    let mut server = Server::new(Echo, ServerConfig::default()).unwrap();
    let admin = server.serve_metrics("127.0.0.1:0").unwrap();
    let at = admin.local_addr();
    assert!(at.ip().is_loopback());

    // No listener yet: alive, not ready.
    let (status, _, body) = while_pumping(&mut server, move || get(at, "GET", "/readyz", None));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no listener"), "{body}");
    let (status, _, body) = while_pumping(&mut server, move || get(at, "GET", "/healthz", None));
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    let addr = server.bind_tcp("127.0.0.1:0", None).unwrap()[0];
    let mut client = Client::connect(&addr.to_string(), ClientConfig::default()).unwrap();
    client.send(&Message::new("echo")).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        server.pump_timeout(Duration::from_millis(5)).unwrap();
        client.pump_messages().unwrap();
        if server.stats().opened == 1
            && server
                .metrics_text(Exposition::Prometheus)
                .contains("netlib_handler_seconds_count{action=\"echo\"} 1")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the echo did not arrive");
    }

    let (status, _, body) = while_pumping(&mut server, move || get(at, "GET", "/readyz", None));
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (status, content_type, body) =
        while_pumping(&mut server, move || get(at, "GET", "/metrics", None));
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let samples = parse_exposition(&body, false);
    assert_eq!(samples["netlib_connections{transport=\"tcp\"}"], 1.0);
    assert_eq!(
        samples["netlib_messages_received_total{transport=\"tcp\"}"],
        1.0
    );
    assert_eq!(
        samples["netlib_handler_seconds_count{action=\"echo\"}"],
        1.0
    );
    assert!(!body.contains("# EOF"));
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let (status, content_type, body) = while_pumping(&mut server, move || {
        get(at, "GET", "/metrics", Some(accept))
    });
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    let samples = parse_exposition(&body, true);
    assert_eq!(
        samples["netlib_connections_accepted_total{transport=\"tcp\"}"],
        1.0
    );
    assert_eq!(
        samples["netlib_handler_seconds_count{action=\"echo\"}"],
        1.0
    );

    let (status, _, _) = while_pumping(&mut server, move || get(at, "GET", "/nothing", None));
    assert_eq!(status, 404);
    let (status, _, _) = while_pumping(&mut server, move || get(at, "POST", "/metrics", None));
    assert_eq!(status, 405);

    // A loop that does not pump does not answer: not ready, and says why.
    let (status, _, body) = get(at, "GET", "/readyz", None);
    assert_eq!(status, 503);
    assert!(body.contains("did not answer"), "{body}");
    drop(admin);
    // Its accept thread lets the socket go just after the drop returns.
    let deadline = Instant::now() + TIMEOUT;
    while TcpStream::connect(at).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the admin listener is still open"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn refusals_over_loopback_are_counted_by_reason() {
    let config = ServerConfig::default()
        .max_connections_per_address(1)
        .max_connections(2);
    let mut server = Server::new(Echo, config).unwrap();
    let addr = server.bind_tcp("127.0.0.1:0", None).unwrap()[0];
    // One from 127.0.0.1 is let in; a second from there is over its address's cap.
    let _first = TcpStream::connect(addr).unwrap();
    let _second = TcpStream::connect(addr).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let text = loop {
        server.pump_timeout(Duration::from_millis(5)).unwrap();
        let text = server.metrics_text(Exposition::Prometheus);
        if server.stats().refused_per_address == 1 && server.stats().opened == 1 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the second connection was not refused"
        );
    };
    let samples = parse_exposition(&text, false);
    let refused =
        |reason: &str| samples[&format!("netlib_connections_refused_total{{reason=\"{reason}\"}}")];
    assert_eq!(refused("address_connections"), 1.0);
    assert_eq!(refused("server_full"), 0.0);
    assert_eq!(
        samples["netlib_connections_accepted_total{transport=\"tcp\"}"],
        1.0
    );
}

#[test]
fn websocket_bytes_sent_count_frame_headers() {
    let mut server = Server::new(Echo, ServerConfig::default()).unwrap();
    let _metrics = server.metrics();
    let addr = server
        .bind_ws("127.0.0.1:0", netlib::transport::ws::WsOptions::new())
        .unwrap()[0];
    let mut client = Client::connect(&format!("ws://{addr}/ws"), ClientConfig::default()).unwrap();
    client.send(&Message::new("echo").with("n", 1)).unwrap();
    let mut got: Vec<Message> = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while !got.iter().any(|m| m.action() == "echo") {
        assert!(Instant::now() < deadline, "no echo over WebSocket");
        server.pump_timeout(Duration::from_millis(5)).unwrap();
        got.extend(client.pump_messages().unwrap());
    }
    server.pump().unwrap();
    // `socketConnect` is the client's own event, not a frame.
    got.retain(|m| m.action() != "socketConnect");
    let samples = parse_exposition(&server.metrics_text(Exposition::Prometheus), false);
    // Each message went out as one text frame with a 2-byte header (payloads under 126
    // bytes, RFC 6455 §5.2); the HTTP upgrade is not counted.
    let expected: usize = got
        .iter()
        .map(|m| serde_json::to_vec(m).unwrap().len() + 2)
        .sum();
    assert_eq!(got.len(), 2, "connected and the echo: {got:?}");
    assert_eq!(
        samples["netlib_sent_bytes_total{transport=\"websocket\"}"],
        expected as f64
    );
    assert_eq!(
        samples["netlib_messages_sent_total{transport=\"websocket\"}"],
        2.0
    );
}
