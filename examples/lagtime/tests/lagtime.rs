//! Runs the real lagtime-server and lagtime-client binaries: ten round trips are reported.

use std::process::Command;

use netlib_tests::{spawn_listening, TIMEOUT};

#[test]
fn a_client_gets_ten_round_trips_measured() {
    let (_server, addr, rx) =
        spawn_listening(env!("CARGO_BIN_EXE_lagtime-server"), &["127.0.0.1:0"]);

    let out = Command::new(env!("CARGO_BIN_EXE_lagtime-client"))
        .arg(&addr)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let expected: Vec<String> = (0..=10).map(|n| format!("got ping {n}")).collect();
    assert_eq!(
        got, expected,
        "the client echoes pings 0-9 and closes on 10"
    );

    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("round trips,")) {
        lines.push(rx.recv_timeout(TIMEOUT).expect("the server's summary"));
    }
    let trips: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("round trip ") && l.contains(" ms"))
        .collect();
    assert_eq!(trips.len(), 10, "{lines:?}");
    for (n, l) in trips.iter().enumerate() {
        assert!(l.contains(&format!("ping {n} round trip ")), "{l}");
        let ms: f64 = l.rsplit(' ').nth(1).unwrap().parse().unwrap();
        assert!(ms >= 0.0);
    }
    let summary = lines.last().unwrap();
    assert!(
        summary.contains(": 10 round trips, min ")
            && summary.contains(" median ")
            && summary.contains(" max "),
        "{summary}"
    );
}

#[test]
fn podsixnets_own_lagtime_client_gets_the_same_ten_round_trips() {
    let (_server, addr, rx) =
        spawn_listening(env!("CARGO_BIN_EXE_lagtime-server"), &["127.0.0.1:0"]);
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new(netlib_tests::podsixnet_python())
        .current_dir(netlib_tests::podsixnet_scripts())
        .args(["lagtime_client.py", "json", host, port])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let got = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        got.lines().count(),
        11,
        "pings 0-10 reached PodSixNet's client:\n{got}"
    );
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("round trips,")) {
        lines.push(rx.recv_timeout(TIMEOUT).expect("the server's summary"));
    }
    assert_eq!(
        lines.iter().filter(|l| l.contains(" round trip ")).count(),
        10,
        "{lines:?}"
    );
    assert!(lines.last().unwrap().contains(": 10 round trips, min "));
}
