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
