//! Codec micro-benchmarks (criterion): decode + dispatch of a 60-byte message through a real
//! server's dispatch table to a typed handler, and encoding one broadcast frame.
//! Run: `cargo bench -p netlib --bench codec`.

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use netlib::transport::memory::LocalAcceptor;
use netlib::transport::{Connector, Transport};
use netlib::{
    handler, ChannelId, Client, ClientConfig, Codec, Framing, Server, ServerConfig, ServerContext,
    ServerHandler,
};
use serde::Deserialize;

#[derive(Default)]
struct Counter {
    said: usize,
    chars: usize,
}
impl ServerHandler for Counter {
    type Channel = ();
    fn connected(&mut self, _: &mut ServerContext<'_, ()>, _: ChannelId, _: SocketAddr) {}
}

#[derive(Deserialize)]
struct Say {
    message: String,
}

impl Counter {
    fn network_message(&mut self, _: &mut ServerContext<'_, ()>, _: ChannelId, m: Say) {
        self.said += 1;
        self.chars += m.message.len();
    }
}
handler!(Counter, "message" => network_message);

/// 60 bytes of JSON payload.
const PAYLOAD: &[u8] = br#"{"action":"message","message":"hello there, how are you?!!"}"#;

fn server_with_one_channel(codec: Codec) -> (Server<Counter>, ChannelId, Client) {
    let config = ServerConfig::default().codec(codec.clone());
    let mut server = Server::new(Counter::default(), config).unwrap();
    let (id, client) = server
        .connect_local(ClientConfig::default().codec(codec))
        .unwrap();
    (server, id, client)
}

/// A JSON server with one channel whose peer is a raw in-memory pipe: what is written to the
/// pipe goes through the server's whole read path (framing, decoding, dispatch) on its pump.
fn server_with_a_raw_pipe() -> (Server<Counter>, Box<dyn Transport>) {
    let mut server = Server::new(Counter::default(), ServerConfig::default()).unwrap();
    let acceptor = LocalAcceptor::default();
    server.add_listener(Box::new(acceptor.clone())).unwrap();
    let pipe = acceptor.connector().next_attempt().unwrap().unwrap();
    server.pump().unwrap();
    assert_eq!(server.channel_count(), 1);
    (server, pipe)
}

fn decode_dispatch(c: &mut Criterion) {
    assert_eq!(PAYLOAD.len(), 60);
    let mut g = c.benchmark_group("decode+dispatch");
    g.throughput(Throughput::Elements(1));
    let (mut server, id, _peer) = server_with_one_channel(Codec::Json);
    let payload = Bytes::from_static(PAYLOAD);
    g.bench_function("json, typed handler", |b| {
        b.iter(|| server.deliver_payload(id, black_box(payload.clone())))
    });
    assert!(server.state().said > 0);

    let rencoded = Codec::Rencode
        .encode(
            Framing::LengthPrefix,
            &Codec::Json.decode(PAYLOAD).unwrap(),
            1 << 20,
        )
        .unwrap()
        .slice(4..);
    let (mut server, id, _peer) = server_with_one_channel(Codec::Rencode);
    g.bench_function("rencode, typed handler", |b| {
        b.iter(|| server.deliver_payload(id, black_box(rencoded.clone())))
    });

    // The whole read path: 64 frames arrive in one read, are cut out, decoded and dispatched
    // by one pump.
    let mut stream = Vec::new();
    for _ in 0..64 {
        stream.extend_from_slice(&Framing::Terminator.frame(PAYLOAD, 1 << 20).unwrap());
    }
    let (mut server, mut pipe) = server_with_a_raw_pipe();
    let mut connected = [0u8; 64];
    let _ = pipe.read(&mut connected); // the server's `connected` frame, all it ever sends
    let pump = |server: &mut Server<Counter>, pipe: &mut Box<dyn Transport>| {
        pipe.write_all(black_box(&stream)).unwrap();
        server.pump().unwrap();
    };
    pump(&mut server, &mut pipe);
    assert_eq!(
        server.state().said,
        64,
        "one pump reads and dispatches all 64"
    );
    g.throughput(Throughput::Elements(64));
    g.bench_function("json, 64 frames from one read", |b| {
        b.iter(|| pump(&mut server, &mut pipe))
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    let msg = serde_json::json!({"action": "message", "message": "hello there, how are you?", "who": "alice", "time": 1795312585608u64});
    g.bench_function("json frame (once per broadcast)", |b| {
        b.iter(|| {
            Codec::Json
                .encode(Framing::Terminator, black_box(&msg), 1 << 20)
                .unwrap()
        })
    });
    g.bench_function("rencode frame (once per broadcast)", |b| {
        b.iter(|| {
            Codec::Rencode
                .encode(Framing::Terminator, black_box(&msg), 1 << 20)
                .unwrap()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = decode_dispatch, encode
}
criterion_main!(benches);
