//! Interop with the real PodSixNet 0.11.0 (from PyPI, in a virtualenv), in both of its codecs
//! (stock rencode, and JSON mode): a PodSixNet client against a netlib server, and a netlib
//! client against a PodSixNet server, exchanging a rich payload (`tests/podsixnet/payload.py`).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use netlib::{
    handler, ChannelContext, ChannelId, Client, ClientConfig, ClientContext, Codec, Listener,
    Message, Server, ServerConfig, ServerContext, ServerHandler,
};
use netlib_tests::{podsixnet_python, podsixnet_scripts, until, ChildGuard, TIMEOUT};
use serde_json::{json, Value};

const CODECS: [(Codec, &str); 2] = [(Codec::Json, "json"), (Codec::Rencode, "rencode")];

/// The Rust side of `payload.py`'s PAYLOAD.
fn payload(text: &str) -> Value {
    json!({
        "action": "echo",
        "text": text,
        "nested": {"list": [1, -2, 2.5, null, true, false, {"deep": []}], "empty": {}, "e": []},
        "unicode": "h\u{e9}llo \u{2713} \u{1F600}",
        "ints": [0, 43, -32, -33, 1000, -70000, 1u64 << 40, -(1i64 << 62), i64::MAX, u64::MAX],
        "floats": [2.5, -0.75, 1024.125, 0.0],
        "blob": "z".repeat(200_000),
    })
}

#[derive(Default)]
struct Echo {
    received: Vec<Message>,
}
struct EchoChannel;

impl ServerHandler for Echo {
    type Channel = EchoChannel;
    fn connected(
        &mut self,
        _: &mut ServerContext<'_, EchoChannel>,
        _: ChannelId,
        _: SocketAddr,
    ) -> EchoChannel {
        EchoChannel
    }
}
impl EchoChannel {
    fn network_echo(&mut self, ctx: &mut ChannelContext<'_, Echo>, msg: &Message) {
        ctx.server().received.push(msg.clone());
        let reply = msg.clone().with("who", "netlib");
        ctx.send(&reply).unwrap();
    }
}
handler!(EchoChannel, "echo" => network_echo);

fn python(script: &str, args: &[&str]) -> ChildGuard {
    let child = Command::new(podsixnet_python())
        .current_dir(podsixnet_scripts())
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    ChildGuard(child)
}

/// JSON lines (PodSixNet itself prints plain text such as "connection"; those are skipped).
fn json_lines(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn podsixnet_clients_talk_to_a_netlib_server() {
    for (codec, mode) in CODECS {
        let config = ServerConfig::default().codec(codec);
        let mut server = Server::bind(Echo::default(), &["127.0.0.1:0"], config).unwrap();
        let port = server.local_addrs()[0].port().to_string();
        let mut child = python("echo_client.py", &[mode, "127.0.0.1", &port]);
        let status = child.wait_with(|| server.pump_timeout(Duration::from_millis(2)).unwrap());
        let (mut out, mut err) = (String::new(), String::new());
        child
            .0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child
            .0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(
            status.success(),
            "{mode}: PodSixNet client failed: {status}\nstdout:\n{out}\nstderr:\n{err}"
        );

        let lines: Vec<String> = out.lines().map(str::to_owned).collect();
        let events = json_lines(&lines);
        let actions: Vec<&str> = events
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            ["socketConnect", "connected", "echo"],
            "{mode}: {out}"
        );
        assert_eq!(events[2]["who"], "netlib");
        assert_eq!(events[2]["blob"], 200_000);

        // What the netlib server decoded from the Python client: exactly the payload.
        let got = server.state().received[0].as_value();
        assert_eq!(got, &payload("from python"), "{mode}");
    }
}

#[derive(Default)]
struct Recorder {
    events: Vec<Message>,
}
impl Listener for Recorder {}
impl Recorder {
    fn network_connected(&mut self, ctx: &mut ClientContext<'_>, _: &Message) {
        ctx.send(&payload("from netlib")).unwrap();
    }
    fn network(&mut self, _: &mut ClientContext<'_>, msg: &Message) {
        self.events.push(msg.clone());
    }
}
handler!(Recorder, "connected" => network_connected);
handler!(Recorder, * => network);

#[test]
fn netlib_clients_talk_to_a_podsixnet_server() {
    for (codec, mode) in CODECS {
        let mut child = python("echo_server.py", &[mode]);
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(TIMEOUT)
            .expect("PodSixNet server prints its port");
        let port = first
            .strip_prefix("PORT ")
            .unwrap_or_else(|| panic!("unexpected: {first}"));

        let config = ClientConfig::default().codec(codec);
        let mut client = Client::connect(&format!("127.0.0.1:{port}"), config).unwrap();
        let mut rec = Recorder::default();
        until("the echo from PodSixNet", || {
            client
                .pump_timeout(&mut rec, Duration::from_millis(2))
                .unwrap();
            rec.events.iter().any(|m| m.action() == "echo")
        });
        let actions: Vec<&str> = rec.events.iter().map(|m| m.action()).collect();
        assert_eq!(actions, ["socketConnect", "connected", "echo"], "{mode}");
        let mut echo = rec.events[2].as_value().clone();
        assert_eq!(echo["who"], "python");
        echo.as_object_mut().unwrap().remove("who");
        assert_eq!(
            echo,
            payload("from netlib"),
            "{mode}: PodSixNet echoed every value intact"
        );

        assert!(client.shutdown(TIMEOUT).unwrap(), "closes cleanly");
        let status = child.wait_with(|| {});
        assert!(
            status.success(),
            "{mode}: PodSixNet server saw the close: {status}"
        );
        let seen: Vec<String> = rx.try_iter().collect();
        let seen = json_lines(&seen);
        assert_eq!(
            seen[0]["text"], "from netlib",
            "{mode}: what the PodSixNet channel received: {seen:?}"
        );
        assert_eq!(seen[0]["blob"], 200_000);
    }
}
