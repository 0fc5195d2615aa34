//! The chat over TLS, as real processes: `chat-server --tls-cert --tls-key` with a
//! certificate made here (`rcgen`), `chat-client --tls --ca` and a netlib client talking
//! through it; a certificate swapped on disk and picked up on SIGHUP while clients stay
//! connected; plaintext on the TLS port closed without harming the users.

mod common;

use std::io::Write;
use std::process::Command;

use chat::protocol::{Request, Say};
use common::{chat_client, quit, ChatServer, Peer};
use netlib::transport::tls::TlsClient;
use netlib::ClientConfig;
use netlib_tests::{until, TestCa};

/// `localhost:PORT` of a server listening on `127.0.0.1:PORT` (its certificate names
/// `localhost`).
fn localhost(server: &ChatServer) -> String {
    let port = server.addr.rsplit(':').next().unwrap();
    format!("localhost:{port}")
}

fn tls_peer(server: &ChatServer, ca: &TestCa, nick: &str) -> Peer {
    let config = ClientConfig::default().tls(TlsClient::from_ca_file(&ca.ca).unwrap());
    Peer::join_with(&format!("tls://{}", localhost(server)), nick, config)
}

#[test]
fn the_chat_runs_over_tls_and_reloads_its_certificate_on_sighup() {
    let (ca, next) = (TestCa::new("chat"), TestCa::new("chat-next"));
    let (cert, key) = (ca.dir.join("server.pem"), ca.dir.join("server.key"));
    ca.issue(&["localhost"], &cert, &key);
    let server = ChatServer::start(
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    );
    let ca_path = ca.ca.to_str().unwrap().to_owned();
    let (mut alice, alice_out) = chat_client(
        &localhost(&server),
        &["--tls", "--ca", &ca_path, "--nick", "alice"],
    );
    let mut bob = tls_peer(&server, &ca, "bob");
    until("alice in the room", || {
        alice_out.any(|l| l.contains("bob"))
            || bob
                .client
                .pump_messages()
                .unwrap()
                .iter()
                .any(|m| m.action() == "joined" && m.get_str("who") == Some("alice"))
    });
    let stdin = alice.0.stdin.as_mut().unwrap();
    stdin.write_all(b"hello over tls\n").unwrap();
    bob.expect_where("message", |m| {
        m.get_str("message") == Some("hello over tls")
    });
    bob.send(Request::Message(Say {
        message: "hi alice".into(),
    }));
    until("alice sees bob's message", || {
        alice_out.any(|l| l.contains("hi alice"))
    });

    // Plaintext on the TLS port: closed, and nobody else notices.
    let mut plain = std::net::TcpStream::connect(&server.addr).unwrap();
    let _ = plain.write_all(b"{\"action\": \"nickname\", \"nickname\": \"eve\"}\0---\0");

    // A new certificate, from another CA, picked up on SIGHUP: the files keep their
    // modification times, so that only the signal can tell the server.
    let mtime = |p: &std::path::Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let (cert_time, key_time) = (mtime(&cert), mtime(&key));
    next.issue(&["localhost"], &cert, &key);
    for (path, time) in [(&cert, cert_time), (&key, key_time)] {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(time).unwrap();
    }
    let pid = server.child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    until("the server logs the reload", || {
        server
            .stderr
            .any(|l| l.contains("TLS certificate reloaded (SIGHUP)"))
    });
    let mut carol = tls_peer(&server, &next, "carol");
    carol.send(Request::Message(Say {
        message: "new certificate".into(),
    }));
    bob.expect_where("message", |m| {
        m.get_str("message") == Some("new certificate")
    });
    until("alice, connected before the swap, sees it", || {
        alice_out.any(|l| l.contains("new certificate"))
    });
    assert!(
        !alice_out.any(|l| l.contains("eve")),
        "plaintext never got in"
    );
    quit(&mut alice);
    server.stop();
}
