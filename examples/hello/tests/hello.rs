//! Runs the real hello-server and hello-client binaries.

use std::process::Command;

use netlib_tests::{spawn_listening, TIMEOUT};

#[test]
fn the_client_is_welcomed_by_name() {
    let (mut server, addr, lines) =
        spawn_listening(env!("CARGO_BIN_EXE_hello-server"), &["127.0.0.1:0"]);
    for (name, n) in [("ada", 1), ("grace", 2)] {
        let out = Command::new(env!("CARGO_BIN_EXE_hello-client"))
            .args([&addr, name])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("hello, {name} (guest number {n})\n")
        );
    }
    let mut greeted = Vec::new();
    while greeted.len() < 2 {
        let l = lines
            .recv_timeout(TIMEOUT)
            .expect("the server logs both greetings");
        if l.starts_with("greeted") {
            greeted.push(l);
        }
    }
    assert_eq!(
        greeted,
        ["greeted ada (guest 1)", "greeted grace (guest 2)"]
    );
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = server.wait_with(|| {});
    assert!(status.success());
    let rest: Vec<String> = lines.iter().collect();
    assert_eq!(
        rest.last().map(String::as_str),
        Some("hello-server stopped after 2 greeting(s)")
    );
}

#[test]
fn the_client_reports_a_refused_connection() {
    let port = netlib_tests::refusing_port();
    let out = Command::new(env!("CARGO_BIN_EXE_hello-client"))
        .arg(format!("127.0.0.1:{}", port.port))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("Connection refused (errno 111)"), "{err}");
}
