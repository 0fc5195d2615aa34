//! One server, several listeners with different wires (framing + codec), one channel table:
//! a line peer (`nc`-style, through a custom codec), a JSON client and a rencode client see each
//! other's broadcasts, each in its own form. Over loopback TCP.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use netlib::{
    handler, All, ChannelId, Client, ClientConfig, Codec, EncodeError, Framing, InboundError,
    Message, PayloadCodec, Server, ServerConfig, ServerContext, ServerHandler, Wire,
};
use netlib_tests::until;

/// Lines: `SAY text` → `{"action": "say", "text": ...}`; `said` messages render as
/// `<who> text`; everything else is not sent to line peers.
#[derive(Debug)]
struct Lines;

impl PayloadCodec for Lines {
    fn decode(&self, payload: &[u8]) -> Result<Message, InboundError> {
        let line = std::str::from_utf8(payload).map_err(InboundError::InvalidUtf8)?;
        match line.strip_prefix("SAY ") {
            Some(text) => Ok(Message::new("say").with("text", text)),
            None => Ok(Message::new("unknown").with("line", line)),
        }
    }
    fn encode(&self, msg: &Message) -> Result<Option<Vec<u8>>, EncodeError> {
        Ok(match msg.action() {
            "said" => Some(
                format!(
                    "<{}> {}",
                    msg.get("who").map(|v| v.to_string()).unwrap_or_default(),
                    msg.get_str("text").unwrap_or("")
                )
                .into_bytes(),
            ),
            _ => None,
        })
    }
}

#[derive(Default)]
struct Room {
    joined: usize,
}

impl ServerHandler for Room {
    type Channel = ();
    fn connected(&mut self, _: &mut ServerContext<'_, ()>, _: ChannelId, _: SocketAddr) {
        self.joined += 1;
    }
}

impl Room {
    fn network_say(&mut self, ctx: &mut ServerContext<'_, ()>, from: ChannelId, m: &Message) {
        let said = Message::new("said")
            .with("who", from)
            .with("text", m.get_str("text").unwrap_or(""));
        ctx.send_to(All, &said).unwrap();
    }
}
handler!(Room, "say" => network_say);

#[test]
fn line_json_and_rencode_peers_share_one_room_each_in_its_own_form() {
    let mut server =
        Server::bind(Room::default(), &["127.0.0.1:0"], ServerConfig::default()).unwrap();
    let line_addr = server
        .bind_tcp(
            "127.0.0.1:0",
            Some(Wire {
                framing: Framing::Line,
                codec: Codec::custom(Lines),
            }),
        )
        .unwrap()[0];
    let rencode_addr = server
        .bind_tcp(
            "127.0.0.1:0",
            Some(Wire {
                framing: Framing::Terminator,
                codec: Codec::Rencode,
            }),
        )
        .unwrap()[0];
    let json_addr = server.local_addrs()[0];
    let mut json = Client::connect(&json_addr.to_string(), ClientConfig::default()).unwrap();
    let mut ren = Client::connect(
        &rencode_addr.to_string(),
        ClientConfig::default().codec(Codec::Rencode),
    )
    .unwrap();
    let mut nc = TcpStream::connect(line_addr).unwrap();
    nc.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    until("three channels", || {
        server.pump_timeout(Duration::from_millis(2)).unwrap();
        json.pump_messages().unwrap();
        ren.pump_messages().unwrap();
        server.state().joined == 3
    });
    // The line peer got no `connected` line: the codec sends nothing for it.
    nc.write_all(b"SAY hello from nc\r\n").unwrap();
    json.send(&Message::new("say").with("text", "hello from json"))
        .unwrap();
    let (mut got_json, mut got_ren) = (Vec::new(), Vec::new());
    until("both broadcasts at the message clients", || {
        server.pump_timeout(Duration::from_millis(2)).unwrap();
        got_json.extend(json.pump_messages().unwrap());
        got_ren.extend(ren.pump_messages().unwrap());
        let said = |v: &Vec<Message>| v.iter().filter(|m| m.action() == "said").count();
        said(&got_json) == 2 && said(&got_ren) == 2
    });
    let texts = |v: &Vec<Message>| -> Vec<String> {
        let mut t: Vec<String> = v
            .iter()
            .filter(|m| m.action() == "said")
            .map(|m| m.get_str("text").unwrap().to_owned())
            .collect();
        t.sort();
        t
    };
    assert_eq!(texts(&got_json), ["hello from json", "hello from nc"]);
    assert_eq!(
        texts(&got_ren),
        texts(&got_json),
        "rencode peers see the same"
    );
    let mut lines = BufReader::new(nc);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let mut l = String::new();
        lines.read_line(&mut l).unwrap();
        seen.push(l);
    }
    seen.sort();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].ends_with("> hello from json\n"), "{seen:?}");
    assert!(seen[1].ends_with("> hello from nc\n"), "{seen:?}");
}
