//! Codec micro-benchmarks (criterion): decode + dispatch of a 60-byte message through a real
//! server's dispatch table to a typed handler, and encoding one broadcast frame.
//! Run: `cargo bench -p netlib --bench codec`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use netlib::frame::FrameDecoder;
use netlib::{
    handler, ChannelId, Client, Codec, Config, Framing, Server, ServerContext, ServerHandler,
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
    let config = Config::default().codec(codec);
    let mut server = Server::new(Counter::default(), config.clone()).unwrap();
    let (id, client) = server.connect_local(config).unwrap();
    (server, id, client)
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

    // The whole read path: frames cut out of a received buffer of 64 messages, then dispatched.
    let mut stream = Vec::new();
    for _ in 0..64 {
        stream.extend_from_slice(&Framing::Terminator.frame(PAYLOAD, 1 << 20).unwrap());
    }
    let (mut server, id, _peer) = server_with_one_channel(Codec::Json);
    g.throughput(Throughput::Elements(64));
    g.bench_function("json, 64 frames from one read", |b| {
        b.iter(|| {
            let mut d = FrameDecoder::new(Framing::Terminator, 1 << 20);
            d.push(black_box(&stream));
            while let Some(p) = d.next_frame().unwrap() {
                server.deliver_payload(id, p).unwrap();
            }
        })
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
