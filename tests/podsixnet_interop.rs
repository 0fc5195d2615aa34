//! Interop with the real PodSixNet 0.11.0 (from PyPI, in a virtualenv) in its JSON mode: a
//! PodSixNet client against a netlib server, and a netlib client against a PodSixNet server.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use netlib::{
    handler, Channel, ChannelContext, ChannelId, Client, ClientContext, Config, Listener, Message,
    Server, ServerContext, ServerHandler,
};
use netlib_tests::{podsixnet_python, podsixnet_scripts, until, ChildGuard, TIMEOUT};
use serde_json::{json, Value};

#[derive(Default)]
struct Echo {
    received: Vec<Message>,
    connects: usize,
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
        self.connects += 1;
        EchoChannel
    }
}
impl Channel for EchoChannel {
    type Server = Echo;
}
impl EchoChannel {
    fn network_echo(&mut self, ctx: &mut ChannelContext<'_, Self>, msg: &Message) {
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

fn lines(v: &str) -> Vec<Value> {
    v.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect()
}

#[test]
fn podsixnet_client_talks_to_a_netlib_server() {
    let mut server = Server::bind(Echo::default(), &["127.0.0.1:0"], Config::default()).unwrap();
    let port = server.local_addrs()[0].port().to_string();
    let mut child = python("echo_client.py", &["127.0.0.1", &port]);
    let status = child.wait_with(|| server.pump_timeout(Duration::from_millis(2)).unwrap());
    let mut out = String::new();
    let mut err = String::new();
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
        "PodSixNet client failed: {status}\nstdout:\n{out}\nstderr:\n{err}"
    );

    let events = lines(&out);
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["socketConnect", "connected", "echo"], "{out}");
    assert_eq!(events[2]["who"], "netlib");
    assert_eq!(events[2]["unicode"], "h\u{e9}llo \u{2713} \u{1F600}");

    // What the netlib server decoded from the Python client.
    let got = &server.state().received[0];
    assert_eq!(got.get_str("text"), Some("from python"));
    assert_eq!(
        got.get("nested"),
        Some(&json!({"list": [1, -2, 3.5, null, true, false, {"deep": []}], "empty": {}}))
    );
    assert_eq!(server.state().connects, 1);
}

#[derive(Default)]
struct Recorder {
    events: Vec<Message>,
}
impl Listener for Recorder {}
impl Recorder {
    fn network_connected(&mut self, ctx: &mut ClientContext<'_>, _: &Message) {
        let msg = json!({"action": "echo", "text": "from netlib", "n": [1, 2.5, -3, null, true], "u": "\u{e9}\u{2713}"});
        ctx.send(&msg).unwrap();
    }
    fn network(&mut self, _: &mut ClientContext<'_>, msg: &Message) {
        self.events.push(msg.clone());
    }
}
handler!(Recorder, "connected" => network_connected);
handler!(Recorder, * => network);

#[test]
fn netlib_client_talks_to_a_podsixnet_server() {
    let mut child = python("echo_server.py", &[]);
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

    let mut client = Client::connect(&format!("127.0.0.1:{port}"), Config::default()).unwrap();
    let mut rec = Recorder::default();
    until("the echo from PodSixNet", || {
        client
            .pump_timeout(&mut rec, Duration::from_millis(2))
            .unwrap();
        rec.events.iter().any(|m| m.action() == "echo")
    });
    let actions: Vec<&str> = rec.events.iter().map(|m| m.action()).collect();
    assert_eq!(actions, ["socketConnect", "connected", "echo"]);
    let echo = rec.events[2].as_value();
    assert_eq!(echo["who"], "python");
    assert_eq!(echo["n"], json!([1, 2.5, -3, null, true]));
    assert_eq!(echo["u"], "\u{e9}\u{2713}");

    assert!(client.shutdown(TIMEOUT).unwrap(), "closes cleanly");
    let status = child.wait_with(|| {});
    assert!(status.success(), "PodSixNet server saw the close: {status}");
    let seen: Vec<String> = rx.try_iter().collect();
    // PodSixNet itself prints "connection" on accept; keep the JSON lines.
    let seen: Vec<String> = seen.into_iter().filter(|l| l.starts_with('{')).collect();
    let seen = lines(&seen.join("\n"));
    assert_eq!(
        seen[0]["text"], "from netlib",
        "what the PodSixNet channel received: {seen:?}"
    );
}
