//! `chat-server --proxy-protocol`, as a real process: a socket from 127.0.0.1 plays the load
//! balancer and sends a PROXY v1 header before the chat's own bytes; the chat greets the
//! user and logs the client's address from the header. A connection without a header is
//! closed at once.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::ChatServer;
use netlib_tests::{until, TIMEOUT};

/// Reads from `s` until `want` is in what arrived, or the stream ends; returns what arrived.
fn read_until(s: &mut TcpStream, want: &str) -> String {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(want) {
        assert!(Instant::now() < deadline, "no {want:?} in time: {got:?}");
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn the_chat_behind_a_proxy_sees_the_client_in_the_header() {
    let server = ChatServer::start(
        &[
            "--text",
            "127.0.0.1:0",
            "--proxy-protocol",
            "10.0.0.0/8,127.0.0.1",
        ],
        &[],
    );
    let text = server.listening("line")[0].clone();
    let mut nc = TcpStream::connect(&text).unwrap();
    nc.write_all(b"PROXY TCP4 203.0.113.9 192.0.2.1 5555 7777\r\nNICK ada\n")
        .unwrap();
    let got = read_until(&mut nc, "is now known as ada");
    assert!(got.contains("Welcome to Chat Server"), "{got}");
    until("the client's address in the log", || {
        server
            .stderr
            .any(|l| l.contains("connected from 203.0.113.9:5555"))
    });
    // The main listener reads the header too: a netlib frame without one is closed at once.
    let mut plain = TcpStream::connect(&server.addr).unwrap();
    plain
        .write_all(b"{\"action\": \"nickname\", \"nickname\": \"bob\"}\0---\0")
        .unwrap();
    assert_eq!(
        read_until(&mut plain, "never"),
        "",
        "closed, nothing answered"
    );
    let (_, stderr) = server.stop();
    assert!(
        !stderr.any(|l| l.contains("connected from 127.0.0.1")),
        "no channel under the proxy's address: {:?}",
        stderr.all()
    );
}
