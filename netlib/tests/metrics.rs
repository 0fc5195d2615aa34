//! The server's metrics in memory: counters that follow a scripted session exactly. The admin
//! listener over loopback is tested in the workspace's `tests/metrics_http.rs`.

use std::net::SocketAddr;

use netlib::{
    handler, ChannelId, ClientConfig, Exposition, Message, Server, ServerConfig, ServerContext,
    ServerHandler,
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
    // Handlers and pumps are timed from here on.
    let _metrics = server.metrics();
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
}

/// Every counter of `before` is at most its value in `after` (Prometheus reads a decrease as
/// a restart).
fn never_decrease(before: &str, after: &str) {
    for line in before.lines().filter(|l| !l.starts_with('#')) {
        let (name, v) = line.rsplit_once(' ').unwrap();
        if name.contains("_total") || name.contains("_count") || name.contains("_bucket") {
            let v: f64 = v.parse().unwrap();
            assert!(
                value(after, name) >= v,
                "{name} went from {v} to {}",
                value(after, name)
            );
        }
    }
}

#[test]
fn a_lost_connection_and_its_resume_are_counted_once_each() {
    let config = ServerConfig::default().sessions(std::time::Duration::from_secs(60));
    let mut server = Server::new(Echo, config).unwrap();
    let _metrics = server.metrics();
    let (_, mut client) = server
        .connect_local(ClientConfig::default().session(true))
        .unwrap();
    client.send(&Message::new("echo")).unwrap();
    server.settle(&mut [&mut client]).unwrap();
    let first = server.metrics_text(Exposition::Prometheus);
    assert_eq!(
        value(&first, "netlib_connections{transport=\"memory\"}"),
        1.0
    );

    client.disconnect();
    server.settle(&mut [&mut client]).unwrap();
    let lost = server.metrics_text(Exposition::Prometheus);
    let m = |name: &str| value(&lost, name);
    assert_eq!(m("netlib_connections{transport=\"memory\"}"), 0.0);
    assert_eq!(m("netlib_sessions_waiting"), 1.0);
    assert_eq!(m("netlib_sessions_detached_total"), 1.0);
    assert_eq!(
        m("netlib_connections_closed_total{reason=\"peer_closed\"}"),
        1.0
    );
    never_decrease(&first, &lost);

    client.reconnect();
    server.settle(&mut [&mut client]).unwrap();
    client.send(&Message::new("echo")).unwrap();
    server.settle(&mut [&mut client]).unwrap();
    let back = server.metrics_text(Exposition::Prometheus);
    let m = |name: &str| value(&back, name);
    assert_eq!(m("netlib_connections{transport=\"memory\"}"), 1.0);
    assert_eq!(m("netlib_sessions_waiting"), 0.0);
    assert_eq!(m("netlib_session_resumes_total{outcome=\"resumed\"}"), 1.0);
    assert_eq!(m("netlib_session_resumes_total{outcome=\"refused\"}"), 0.0);
    // Two connections accepted (the second resumed the channel), one closed so far.
    assert_eq!(
        m("netlib_connections_accepted_total{transport=\"memory\"}"),
        2.0
    );
    assert_eq!(
        m("netlib_connections_closed_total{reason=\"peer_closed\"}"),
        1.0
    );
    assert_eq!(m("netlib_handler_seconds_count{action=\"echo\"}"), 2.0);
    never_decrease(&lost, &back);
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
