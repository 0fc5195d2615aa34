//! The server's metrics: counters that follow a scripted session exactly (in memory), and the
//! admin listener over loopback (`/metrics` in both formats, `/healthz`, `/readyz`, errors).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use netlib::{
    handler, ChannelId, Client, ClientConfig, Exposition, Message, Server, ServerConfig,
    ServerContext, ServerHandler,
};

struct Echo;

impl ServerHandler for Echo {
    type Channel = ();
    fn connected(&mut self, _: &mut ServerContext<'_, ()>, _: ChannelId, _: SocketAddr) {}
}

impl Echo {
    fn network_echo(&mut self, ctx: &mut ServerContext<'_, ()>, from: ChannelId, m: &Message) {
        ctx.send_to(from, m).unwrap();
    }
    fn network_fail(
        &mut self,
        _: &mut ServerContext<'_, ()>,
        _: ChannelId,
        _: &Message,
    ) -> Result<(), String> {
        Err("refused on purpose".into())
    }
}
handler!(Echo, "echo" => network_echo);
handler!(Echo, "fail" => network_fail);

/// The value of the sample `name` (with its labels as written, e.g. `x{a="b"}`), if present.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn value(text: &str, name: &str) -> f64 {
    sample(text, name).unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

#[test]
fn counters_follow_a_scripted_session_exactly() {
    let mut server = Server::new(Echo, ServerConfig::default()).unwrap();
    let before = server.metrics_text(Exposition::Prometheus);
    assert_eq!(
        sample(&before, "netlib_connections{transport=\"memory\"}"),
        None
    );
    let (_, mut a) = server.connect_local(ClientConfig::default()).unwrap();
    let (_, mut b) = server.connect_local(ClientConfig::default()).unwrap();
    for i in 0..3 {
        a.send(&Message::new("echo").with("i", i)).unwrap();
    }
    a.send(&Message::new("fail")).unwrap();
    b.send(&Message::new("nobody_handles_this")).unwrap();
    server.settle(&mut [&mut a, &mut b]).unwrap();
    let echoed: Vec<Message> = a.pump_messages().unwrap();
    assert_eq!(echoed.iter().filter(|m| m.action() == "echo").count(), 3);
    assert_eq!(echoed.iter().filter(|m| m.action() == "error").count(), 1);
    b.close();
    server.settle(&mut [&mut a, &mut b]).unwrap();

    let text = server.metrics_text(Exposition::Prometheus);
    let m = |name: &str| value(&text, name);
    assert_eq!(
        m("netlib_connections_accepted_total{transport=\"memory\"}"),
        2.0
    );
    assert_eq!(m("netlib_connections{transport=\"memory\"}"), 1.0);
    assert_eq!(
        m("netlib_connections_closed_total{reason=\"peer_closed\"}"),
        1.0
    );
    assert_eq!(
        m("netlib_connections_closed_total{reason=\"timeout\"}"),
        0.0
    );
    assert_eq!(
        m("netlib_messages_received_total{transport=\"memory\"}"),
        5.0
    );
    // `connected` to each, three echoes and the `error` answering the failed handler.
    assert_eq!(m("netlib_messages_sent_total{transport=\"memory\"}"), 6.0);
    assert_eq!(
        m("netlib_messages_dropped_total{reason=\"out_of_band\"}"),
        1.0
    );
    assert_eq!(m("netlib_handler_seconds_count{action=\"echo\"}"), 3.0);
    assert_eq!(m("netlib_handler_seconds_count{action=\"fail\"}"), 1.0);
    assert_eq!(m("netlib_handler_seconds_count{action=\"*\"}"), 1.0);
    assert!(m("netlib_received_bytes_total{transport=\"memory\"}") > 0.0);
    assert!(m("netlib_sent_bytes_total{transport=\"memory\"}") > 0.0);
    assert!(m("netlib_event_loop_iteration_seconds_count") > 0.0);
    assert_eq!(
        m("netlib_connections_refused_total{reason=\"server_full\"}"),
        0.0
    );
    // No label names a channel.
    assert!(!text.contains("channel="), "{text}");
}

#[test]
fn a_full_server_counts_its_refusals_by_reason() {
    let mut server = Server::new(Echo, ServerConfig::default().max_connections(1)).unwrap();
    let (_, mut a) = server.connect_local(ClientConfig::default()).unwrap();
    assert!(server.connect_local(ClientConfig::default()).is_err());
    server.settle(&mut [&mut a]).unwrap();
    let text = server.metrics_text(Exposition::Prometheus);
    assert_eq!(
        value(
            &text,
            "netlib_connections_refused_total{reason=\"server_full\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "netlib_connections_accepted_total{transport=\"memory\"}"
        ),
        1.0
    );
}

/// One HTTP/1.1 request with `Connection: close`: (status, content type, body).
fn get(addr: SocketAddr, method: &str, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let status = head[9..12].parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// Runs `request` on a thread while this one pumps `server`, until it is answered (at most
/// 20 s).
fn while_pumping<T: Send + 'static>(
    server: &mut Server<Echo>,
    request: impl FnOnce() -> T + Send + 'static,
) -> T {
    let thread = std::thread::spawn(request);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !thread.is_finished() {
        assert!(Instant::now() < deadline, "no answer in 20 s");
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
    let deadline = Instant::now() + Duration::from_secs(10);
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
    assert_eq!(value(&body, "netlib_connections{transport=\"tcp\"}"), 1.0);
    assert_eq!(
        value(&body, "netlib_messages_received_total{transport=\"tcp\"}"),
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
    assert_eq!(
        value(
            &body,
            "netlib_connections_accepted_total{transport=\"tcp\"}"
        ),
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
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(at).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the admin listener is still open"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
