//! `chat-server --metrics`: a scripted session (connect, rename, messages, a refused request, a
//! kick, a disconnect) then a scrape whose counters are exact, read with the Prometheus
//! project's own Python parser; and `/readyz` following a real `redis-server` that stops and
//! comes back (started here on a free port, stopped by PID).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use chat::protocol::{Kick, Op, Request, Say, SetNickname};
use common::{ChatServer, Peer, RedisServer};
use netlib_tests::{http_get, parse_exposition, until};

fn admin(server: &ChatServer) -> SocketAddr {
    server.listening("metrics")[0].parse().unwrap()
}

/// `/metrics` as the Python parser reads it.
fn scrape(at: SocketAddr) -> HashMap<String, f64> {
    let (status, _, body) = http_get(at, "GET", "/metrics", None);
    assert_eq!(status, 200, "{body}");
    parse_exposition(&body, false)
}

#[test]
fn a_scripted_session_scrapes_to_exact_counters() {
    let server = ChatServer::start(
        &[
            "--metrics",
            "127.0.0.1:0",
            "--op-password-env",
            "CHAT_OP",
            "--resume-window",
            "0",
        ],
        &[("CHAT_OP", "s3cret")],
    );
    let at = admin(&server);
    let mut alice = Peer::join(&server.addr, "alice");
    let mut bob = Peer::join(&server.addr, "bob");
    for i in 0..3 {
        alice.send(Request::Message(Say {
            message: format!("hello {i}"),
        }));
    }
    for i in 0..3 {
        let text = format!("hello {i}");
        bob.expect_where("message", |m| m.get_str("message") == Some(&text));
    }
    let refused = bob.refused(Request::Nickname(SetNickname {
        nickname: "alice".into(),
    }));
    assert_eq!(refused.get_str("code"), Some("nickname-taken"));
    alice.send(Request::Op(Op {
        password: "s3cret".into(),
    }));
    alice.expect("op");
    alice.send(Request::Kick(Kick {
        nickname: "bob".into(),
        reason: Some("testing".into()),
    }));
    bob.expect("kicked");
    let carol = Peer::join(&server.addr, "carol");
    drop(carol); // a disconnect

    // Settled once alice alone is left: bob kicked, carol gone.
    let mut samples = HashMap::new();
    until("alice alone on the server", || {
        samples = scrape(at);
        samples.get("chat_users") == Some(&1.0)
            && samples.get("netlib_connections{transport=\"tcp\"}") == Some(&1.0)
    });
    let expected = [
        ("chat_users", 1.0),
        ("chat_messages_total", 3.0),
        ("chat_kicks_total", 1.0),
        ("chat_refused_total{code=\"nickname-taken\"}", 1.0),
        ("netlib_connections_accepted_total{transport=\"tcp\"}", 3.0),
        ("netlib_connections_closed_total{reason=\"local\"}", 1.0),
        (
            "netlib_connections_closed_total{reason=\"peer_closed\"}",
            1.0,
        ),
        (
            "netlib_connections_refused_total{reason=\"server_full\"}",
            0.0,
        ),
        // alice: nickname, 3 messages, op, kick; bob: nickname twice; carol: nickname.
        ("netlib_messages_received_total{transport=\"tcp\"}", 9.0),
        ("netlib_handler_seconds_count{action=\"message\"}", 3.0),
        ("netlib_handler_seconds_count{action=\"nickname\"}", 4.0),
        ("netlib_handler_seconds_count{action=\"kick\"}", 1.0),
        ("netlib_messages_dropped_total{reason=\"out_of_band\"}", 0.0),
        ("netlib_sessions_waiting", 0.0),
    ];
    for (name, value) in expected {
        assert_eq!(samples.get(name), Some(&value), "{name} in {samples:#?}");
    }
    // Every sample name is netlib's, the chat's, or a histogram's parts; no label is an id.
    for name in samples.keys() {
        assert!(
            name.starts_with("netlib_") || name.starts_with("chat_"),
            "{name}"
        );
        assert!(
            !name.contains("alice") && !name.contains("channel"),
            "{name}"
        );
    }
    let (status, _, body) = http_get(at, "GET", "/readyz", None);
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    server.stop();
}

#[test]
fn readyz_turns_unready_while_redis_is_stopped_and_ready_when_it_returns() {
    let redis = RedisServer::start();
    let (port, password) = (redis.port, redis.password.clone());
    let url = redis.url();
    let server = ChatServer::start(&["--redis", &url, "--metrics", "127.0.0.1:0"], &[]);
    let at = admin(&server);
    until("ready with redis up", || {
        http_get(at, "GET", "/readyz", None).0 == 200
    });
    until("a probe's round trip through redis", || {
        scrape(at)
            .get("netlib_adapter_round_trip_seconds")
            .is_some_and(|s| *s > 0.0)
    });
    assert_eq!(scrape(at).get("netlib_adapter_up"), Some(&1.0));

    redis.kill();
    let mut why = String::new();
    until("unready with redis stopped", || {
        let (status, _, body) = http_get(at, "GET", "/readyz", None);
        why = body;
        status == 503
    });
    assert!(why.starts_with("redis: "), "{why}");
    assert!(
        !why.contains(&password),
        "the password is never shown: {why}"
    );
    assert_eq!(scrape(at).get("netlib_adapter_up"), Some(&0.0));
    // Alive all along.
    assert_eq!(http_get(at, "GET", "/healthz", None).0, 200);

    let _redis = RedisServer::start_on(port, &password);
    until("ready again with redis back", || {
        http_get(at, "GET", "/readyz", None).0 == 200
    });
    let samples = scrape(at);
    assert_eq!(samples.get("netlib_adapter_up"), Some(&1.0));
    assert!(samples["netlib_adapter_outages_total"] >= 1.0);

    // Every metric the Grafana dashboard charts is one this node exports (a refusal first,
    // so that the refusal family has a sample).
    let mut peer = Peer::connect(&server.addr);
    peer.refused(Request::Nickname(SetNickname {
        nickname: String::new(),
    }));
    let samples = scrape(at);
    let charted = dashboard_metrics();
    assert!(charted.len() > 20, "{charted:?}");
    for name in &charted {
        assert!(
            samples
                .keys()
                .any(|s| s == name || s.starts_with(&format!("{name}{{"))),
            "the dashboard charts {name}, which the chat does not export"
        );
    }
    server.stop();
}

/// The metric names in the dashboard's queries (histograms by their `_bucket` and `_count`).
fn dashboard_metrics() -> std::collections::BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/netlib-chat.json");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .expect("the dashboard's JSON");
    let mut names = std::collections::BTreeSet::new();
    let panels = json["panels"].as_array().expect("panels");
    for target in panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
    {
        let expr = target["expr"].as_str().expect("a query");
        let words = expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
        for word in words {
            if word.starts_with("netlib_") || word.starts_with("chat_") {
                names.insert(word.to_owned());
            }
        }
    }
    names
}
