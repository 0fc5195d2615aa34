//! TLS over loopback, with certificates made in the test (`rcgen`): a client and a server
//! talk over `tls://`; a certificate for another name is refused by the client; plaintext on
//! a TLS port is closed at once and harms nobody; a certificate reloaded while clients stay
//! connected serves new handshakes, and a bad new file keeps the old one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use netlib::transport::tls::{TlsClient, TlsServer};
use netlib::{Client, ClientConfig, Exposition, ManualClock, Message, Server, ServerConfig};
use netlib_tests::{until, Echo, TestCa, TIMEOUT};

/// A TLS server on loopback with a certificate for `localhost` signed by `ca`.
fn tls_server(ca: &TestCa) -> (Server<Echo>, SocketAddr, TlsServer) {
    let (cert, key) = (ca.dir.join("server.pem"), ca.dir.join("server.key"));
    ca.issue(&["localhost"], &cert, &key);
    let tls = TlsServer::from_pem_files(&cert, &key).unwrap();
    let mut server = Server::new(Echo, ServerConfig::default()).unwrap();
    let addr = server.bind_tls("127.0.0.1:0", None, &tls).unwrap()[0];
    (server, addr, tls)
}

fn client(host: &str, addr: SocketAddr, ca: &std::path::Path) -> Client {
    let config = ClientConfig::default().tls(TlsClient::from_ca_file(ca).unwrap());
    Client::connect(&format!("tls://{host}:{}", addr.port()), config).unwrap()
}

/// Pumps `server` and `client` until the client got a message with `action` (returned), or
/// fails after [`TIMEOUT`].
fn until_action(server: &mut Server<Echo>, client: &mut Client, action: &str) -> Message {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        server.pump_timeout(Duration::from_millis(2)).unwrap();
        for m in client.pump_messages().unwrap() {
            if m.action() == action {
                return m;
            }
        }
        assert!(Instant::now() < deadline, "no {action:?} in time");
    }
}

/// An echo through `client`, numbered `n`.
fn echo(server: &mut Server<Echo>, client: &mut Client, n: u32) {
    client.send(&Message::new("echo").with("n", n)).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        server.pump_timeout(Duration::from_millis(2)).unwrap();
        let got = client.pump_messages().unwrap();
        if got
            .iter()
            .any(|m| m.action() == "echo" && m.get("n") == Some(&n.into()))
        {
            return;
        }
        assert!(Instant::now() < deadline, "no echo {n} in time");
    }
}

#[test]
fn a_client_and_a_server_talk_over_tls() {
    let ca = TestCa::new("talk");
    let (mut server, addr, _tls) = tls_server(&ca);
    let mut c = client("localhost", addr, &ca.ca);
    until_action(&mut server, &mut c, "connected");
    for n in 0..3 {
        echo(&mut server, &mut c, n);
    }
    let text = server.metrics_text(Exposition::Prometheus);
    assert!(
        text.contains("netlib_connections{transport=\"tls\"} 1"),
        "{text}"
    );
}

#[test]
fn a_certificate_for_another_name_is_refused_by_the_client() {
    let ca = TestCa::new("mismatch");
    let (mut server, addr, _tls) = tls_server(&ca);
    // The certificate names `localhost`, not 127.0.0.1.
    let mut c = client("127.0.0.1", addr, &ca.ca);
    let error = until_action(&mut server, &mut c, "error");
    let text = format!("{error:?}");
    assert!(text.contains("certificate"), "{text}");
    assert!(!c.is_connected());
    assert_eq!(
        server.channel_count(),
        0,
        "no channel for a failed handshake"
    );
}

#[test]
fn plaintext_on_a_tls_port_is_closed_at_once_and_harms_nobody() {
    let ca = TestCa::new("plaintext");
    let (mut server, addr, _tls) = tls_server(&ca);
    let mut good = client("localhost", addr, &ca.ca);
    until_action(&mut server, &mut good, "connected");
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.write_all(b"{\"action\": \"echo\"}\0---\0").unwrap();
    raw.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut answer = Vec::new();
    loop {
        server.pump_timeout(Duration::from_millis(2)).unwrap();
        let mut buf = [0; 1024];
        match raw.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break, // reset: closed too
        }
        assert!(
            Instant::now() < deadline,
            "the plaintext peer was not closed"
        );
    }
    // At most a TLS alert (content type 21), never a message.
    assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");
    echo(&mut server, &mut good, 7);
    assert_eq!(server.channel_count(), 1);
    let text = server.metrics_text(Exposition::Prometheus);
    assert!(
        text.contains("netlib_connections_refused_total{reason=\"handshake_failed\"} 1"),
        "{text}"
    );
}

#[test]
fn a_reloaded_certificate_serves_new_handshakes_while_old_connections_stay() {
    let (first, second) = (TestCa::new("reload-1"), TestCa::new("reload-2"));
    let (mut server, addr, tls) = tls_server(&first);
    let mut old = client("localhost", addr, &first.ca);
    until_action(&mut server, &mut old, "connected");

    // The files now hold a certificate of the second CA.
    let (cert, key) = tls.files();
    let (cert, key) = (cert.to_owned(), key.to_owned());
    second.issue(&["localhost"], &cert, &key);
    tls.reload().unwrap();
    echo(&mut server, &mut old, 1); // established: untouched
    let mut new = client("localhost", addr, &second.ca);
    until_action(&mut server, &mut new, "connected");
    echo(&mut server, &mut new, 2);
    let mut stale = client("localhost", addr, &first.ca);
    let error = until_action(&mut server, &mut stale, "error");
    assert!(format!("{error:?}").contains("certificate"), "{error:?}");

    // A key that is not the certificate's: refused, and the certificate in use stays.
    let other = first.dir.join("other.key");
    first.issue(&["localhost"], &first.dir.join("other.pem"), &other);
    std::fs::copy(&other, &key).unwrap();
    let refused = tls.reload().unwrap_err().to_string();
    assert!(refused.contains("key"), "{refused}");
    // Nor is a file that holds no key.
    std::fs::write(&key, "not a key").unwrap();
    assert!(tls.reload().is_err());
    let mut after = client("localhost", addr, &second.ca);
    until_action(&mut server, &mut after, "connected");
    echo(&mut server, &mut after, 3);
    echo(&mut server, &mut old, 4);
}

#[test]
fn a_websocket_client_talks_over_wss_and_plain_ws_is_refused() {
    let ca = TestCa::new("wss");
    let (cert, key) = (ca.dir.join("server.pem"), ca.dir.join("server.key"));
    ca.issue(&["localhost"], &cert, &key);
    let tls = TlsServer::from_pem_files(&cert, &key).unwrap();
    let mut server = Server::new(Echo, ServerConfig::default()).unwrap();
    let options = netlib::transport::ws::WsOptions::new();
    let addr = server.bind_wss("127.0.0.1:0", options, &tls).unwrap()[0];
    let config = ClientConfig::default().tls(TlsClient::from_ca_file(&ca.ca).unwrap());
    let url = format!("wss://localhost:{}/ws", addr.port());
    let mut c = Client::connect(&url, config).unwrap();
    until_action(&mut server, &mut c, "connected");
    echo(&mut server, &mut c, 1);
    let text = server.metrics_text(Exposition::Prometheus);
    assert!(
        text.contains("netlib_connections{transport=\"wss\"} 1"),
        "{text}"
    );
    // Plain ws:// to the same port fails the TLS handshake: no channel.
    let mut plain = Client::connect(
        &format!("ws://localhost:{}/ws", addr.port()),
        ClientConfig::default(),
    )
    .unwrap();
    until_action(&mut server, &mut plain, "error");
    assert_eq!(server.channel_count(), 1);
}

/// A burst far larger than the socket buffers and rustls's 64 KiB, to a client that reads
/// late: everything arrives once it reads, with nothing more sent (no write waits for another
/// send to be woken).
fn burst_arrives_whole(mut server: Server<Echo>, mut client: Client) {
    until_action(&mut server, &mut client, "connected");
    const N: u64 = 3000; // about 3 MB
    client.send(&Message::new("burst").with("n", N)).unwrap();
    // The request goes out (the server has not answered: nothing to read yet) ...
    assert!(
        client.flush(TIMEOUT).unwrap(),
        "the request was not written"
    );
    // ... and the server writes until the socket is full; the client does not read yet.
    let quiet = Instant::now() + Duration::from_millis(300);
    while Instant::now() < quiet {
        server.pump_timeout(Duration::from_millis(5)).unwrap();
    }
    let deadline = Instant::now() + TIMEOUT;
    let mut got = 0;
    while got < N {
        assert!(Instant::now() < deadline, "{got} of {N} parts arrived");
        server.pump_timeout(Duration::from_millis(2)).unwrap();
        got += client
            .pump_messages()
            .unwrap()
            .iter()
            .filter(|m| m.action() == "part")
            .count() as u64;
    }
}

#[test]
fn a_burst_to_a_late_reader_arrives_whole_over_tls_and_wss() {
    let ca = TestCa::new("burst");
    let (server, addr, tls) = tls_server(&ca);
    let client = client("localhost", addr, &ca.ca);
    burst_arrives_whole(server, client);

    let mut server = Server::new(Echo, ServerConfig::default()).unwrap();
    let addr = server
        .bind_wss("127.0.0.1:0", netlib::transport::ws::WsOptions::new(), &tls)
        .unwrap()[0];
    let config = ClientConfig::default().tls(TlsClient::from_ca_file(&ca.ca).unwrap());
    let url = format!("wss://localhost:{}/ws", addr.port());
    burst_arrives_whole(server, Client::connect(&url, config).unwrap());
}

/// The value of the sample `name` (with its labels) in `server`'s metrics, 0 if absent.
fn sample(server: &mut Server<Echo>, name: &str) -> f64 {
    let text = server.metrics_text(Exposition::Prometheus);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// A rustls client on a non-blocking socket: writes what it holds (counted into `sent`),
/// reads what came.
fn client_io(tls: &mut rustls::ClientConnection, sock: &mut TcpStream, sent: &mut usize) {
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(n) => *sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    match tls.read_tls(sock) {
        Ok(_) => {
            tls.process_new_packets().unwrap();
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_tls_record_still_arriving_is_unfinished_input_that_the_frame_timeout_ends() {
    let ca = TestCa::new("partial");
    let (cert, key) = (ca.dir.join("server.pem"), ca.dir.join("server.key"));
    ca.issue(&["localhost"], &cert, &key);
    let tls = TlsServer::from_pem_files(&cert, &key).unwrap();
    let clock = ManualClock::new();
    let config = ServerConfig::default()
        .clock(clock.clone())
        .frame_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(600));
    let mut server = Server::new(Echo, config).unwrap();
    let addr = server.bind_tls("127.0.0.1:0", None, &tls).unwrap()[0];

    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(&ca.ca).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = "localhost".try_into().unwrap();
    let mut tls = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_nonblocking(true).unwrap();
    let mut sent = 0;
    until("the TLS handshake", || {
        server.pump_timeout(Duration::from_millis(2)).unwrap();
        client_io(&mut tls, &mut sock, &mut sent);
        !tls.is_handshaking() && server.channel_count() == 1
    });
    // The server counts the TLS bytes it takes once the connection is a channel.
    let handshake = sent;

    // A whole message is answered.
    tls.writer()
        .write_all(b"{\"action\": \"echo\", \"n\": 1}\0---\0")
        .unwrap();
    let mut answer = Vec::new();
    until("the echo", || {
        server.pump_timeout(Duration::from_millis(2)).unwrap();
        client_io(&mut tls, &mut sock, &mut sent);
        let mut buf = [0; 1024];
        if let Ok(n) = tls.reader().read(&mut buf) {
            answer.extend_from_slice(&buf[..n]);
        }
        answer.ends_with(b"\0---\0")
    });

    // The next record arrives but for its last 3 bytes.
    tls.writer()
        .write_all(b"{\"action\": \"echo\", \"n\": 2}\0---\0")
        .unwrap();
    let mut record = Vec::new();
    tls.write_tls(&mut record).unwrap();
    sock.write_all(&record[..record.len() - 3]).unwrap();
    sent += record.len() - 3;
    until("the server reads the partial record", || {
        server.pump_timeout(Duration::from_millis(2)).unwrap();
        let took = sample(
            &mut server,
            "netlib_received_bytes_total{transport=\"tls\"}",
        );
        took == (sent - handshake) as f64
    });
    clock.advance(Duration::from_secs(4));
    server.pump_timeout(Duration::from_millis(2)).unwrap();
    assert_eq!(server.channel_count(), 1, "not before the frame timeout");

    clock.advance(Duration::from_secs(2));
    until("the frame timeout closes it", || {
        server.pump_timeout(Duration::from_millis(2)).unwrap();
        server.channel_count() == 0
    });
    let closed = "netlib_connections_closed_total{reason=\"frame_timeout\"}";
    assert_eq!(sample(&mut server, closed), 1.0);
}
