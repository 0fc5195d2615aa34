//! Runs the real binaries: an arena-server and two arena-bots, as processes on loopback.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use netlib_tests::{spawn_listening, ChildGuard, TIMEOUT};

/// Starts an arena-bot; returns it and a receiver of its whole standard output.
fn bot(args: &[&str]) -> (ChildGuard, mpsc::Receiver<String>) {
    let mut child = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_arena-bot"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = tx.send(out);
    });
    (child, rx)
}

/// The `key=value` fields of a bot's `done` line.
fn done(out: &str) -> HashMap<String, String> {
    let line = out.lines().find(|l| l.starts_with("done ")).expect(out);
    line.split(' ')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn two_bots_play_and_see_each_other() {
    let (mut server, addr, lines) =
        spawn_listening(env!("CARGO_BIN_EXE_arena-server"), &["127.0.0.1:0"]);
    let args = [
        addr.as_str(),
        "--ticks",
        "40",
        "--players",
        "2",
        "--duration",
        "15",
    ];
    let bots = [bot(&args), bot(&args)];
    let mut results = Vec::new();
    for (mut child, out) in bots {
        // The whole output arrives at exit; the bot's own --duration bounds it too.
        let out = out.recv_timeout(TIMEOUT).expect("the bot finishes");
        let status = child.wait_with(|| {});
        assert!(status.success(), "{status}: {out}");
        assert!(out.lines().any(|l| l.starts_with("tick ")), "{out}");
        results.push(done(&out));
    }
    let (a, b) = (&results[0], &results[1]);
    assert_ne!(a["id"], b["id"]);
    assert!(
        a["others"].split(',').any(|id| id == b["id"]),
        "{a:?} {b:?}"
    );
    assert!(
        b["others"].split(',').any(|id| id == a["id"]),
        "{a:?} {b:?}"
    );
    for r in &results {
        let snapshots: u64 = r["snapshots"].parse().unwrap();
        let moved: f64 = r["moved"].parse().unwrap();
        assert!(snapshots >= 40 && moved > 20.0, "{r:?}");
    }
    // The server logged both joins and both leaves.
    let mut seen = Vec::new();
    while seen
        .iter()
        .filter(|l: &&String| l.contains(" left ("))
        .count()
        < 2
    {
        seen.push(lines.recv_timeout(TIMEOUT).expect("joins and leaves"));
    }
    for r in &results {
        let id = format!("#{} ", r["id"]);
        assert!(seen
            .iter()
            .any(|l| l.starts_with(&id) && l.contains(" joined from 127.0.0.1:")));
        assert!(seen
            .iter()
            .any(|l| l.starts_with(&id) && l.contains(" left (")));
    }
    server.0.kill().unwrap();
    server.wait_with(|| {});
}

#[test]
fn a_bot_reports_a_refused_connection() {
    let port = netlib_tests::refusing_port();
    let addr = format!("127.0.0.1:{}", port.port);
    // Refused at once; --duration bounds it anyway.
    let out = Command::new(env!("CARGO_BIN_EXE_arena-bot"))
        .args([&addr, "--duration", "10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Connection refused"), "{err}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

/// Two arena-servers sharing one arena through a real redis-server (started here on a free
/// loopback port, stopped by its PID), a bot on each: each sees the other's player.
#[test]
fn two_servers_on_redis_share_one_arena() {
    let redis = netlib_tests::redis::RedisServer::start();
    let url = redis.url();
    let server = |_: usize| {
        spawn_listening(
            env!("CARGO_BIN_EXE_arena-server"),
            &["127.0.0.1:0", "--redis", &url, "--presence-ttl", "2"],
        )
    };
    let (mut first, addr_a, lines_a) = server(0);
    // The second starts once the first is in the cluster (the older node leads).
    let joined = lines_a.recv_timeout(TIMEOUT).expect("the node joins");
    assert!(
        joined.contains("joins the cluster at redis://:***@"),
        "{joined}"
    );
    assert!(!joined.contains(&redis.password));
    let (mut second, addr_b, lines_b) = server(1);
    let joined = lines_b.recv_timeout(TIMEOUT).expect("the node joins");
    assert!(joined.contains("joins the cluster"), "{joined}");
    let args = |addr: &str| {
        [
            addr.to_owned(),
            "--ticks".into(),
            "40".into(),
            "--players".into(),
            "2".into(),
            "--duration".into(),
            "20".into(),
        ]
    };
    let (args_a, args_b) = (args(&addr_a), args(&addr_b));
    let (refs_a, refs_b): (Vec<&str>, Vec<&str>) = (
        args_a.iter().map(String::as_str).collect(),
        args_b.iter().map(String::as_str).collect(),
    );
    let bots = [bot(&refs_a), bot(&refs_b)];
    let mut results = Vec::new();
    for (mut child, out) in bots {
        let out = out.recv_timeout(TIMEOUT * 2).expect("the bot finishes");
        let status = child.wait_with(|| {});
        assert!(status.success(), "{status}: {out}");
        results.push(done(&out));
    }
    let (a, b) = (&results[0], &results[1]);
    assert_ne!(a["id"], b["id"]);
    assert!(
        a["others"].split(',').any(|id| id == b["id"]),
        "{a:?} {b:?}"
    );
    assert!(
        b["others"].split(',').any(|id| id == a["id"]),
        "{a:?} {b:?}"
    );
    for r in &results {
        let moved: f64 = r["moved"].parse().unwrap();
        assert!(moved > 20.0, "{r:?}");
    }
    for s in [&mut first, &mut second] {
        s.0.kill().unwrap();
        s.wait_with(|| {});
    }
}
