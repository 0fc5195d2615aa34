//! One node of the cluster jitter run (`netlib_bench::cluster`): the jitter relay (`join` a
//! room, `say` to the room but the sender, `say_all` to several rooms, `whisper` to one channel, `history` of a room) as a netlib server with
//! sessions, in a cluster through Redis with room streams. Prints `jitter-node listening on
//! ADDR` once bound, then runs until killed (the run SIGKILLs one node mid-way).
//!
//! ```text
//! jitter-node --redis redis://:PASSWORD@127.0.0.1:6379
//! ```

use std::time::Duration;

use clap::Parser;
use netlib::{
    handler, ChannelId, Message, RoomBut, Rooms, Server, ServerConfig, ServerContext, ServerHandler,
};
use netlib_redis::{RedisAdapter, RedisConfig};

#[derive(Parser)]
struct Args {
    /// The Redis server.
    #[arg(long)]
    redis: String,
    /// Room streams' length (entries kept per room).
    #[arg(long, default_value_t = 100_000)]
    streams: usize,
    /// Key prefix.
    #[arg(long, default_value = "jitter")]
    prefix: String,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

/// The relay: joins rooms, sends `say` to the sender's room but the sender.
struct Relay;

impl ServerHandler for Relay {
    type Channel = ();
    fn connected(&mut self, _: &mut ServerContext<'_, ()>, _: ChannelId, _: std::net::SocketAddr) {}
}

impl Relay {
    fn network_join(&mut self, ctx: &mut ServerContext<'_, ()>, from: ChannelId, m: &Message) {
        let _ = ctx.join(from, m.get_str("room").unwrap_or_default());
        let _ = ctx.send_to(from, &Message::new("joined"));
    }
    fn network_say(&mut self, ctx: &mut ServerContext<'_, ()>, from: ChannelId, m: &Message) {
        let _ = ctx.send_to(RoomBut(m.get_str("room").unwrap_or_default(), from), m);
    }
    /// `say` to every room of `rooms` (each member once) but the sender.
    fn network_say_all(&mut self, ctx: &mut ServerContext<'_, ()>, from: ChannelId, m: &Message) {
        let rooms: Vec<String> = m
            .get("rooms")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
        let say = Message::new("say").with("n", m.get("n").cloned().unwrap_or_default());
        let _ = ctx.send_to(Rooms(&rooms), &say);
        let _ = from;
    }
    /// `say` to the channel `to` (its id's serial) alone, on whichever node it is.
    fn network_whisper(&mut self, ctx: &mut ServerContext<'_, ()>, _: ChannelId, m: &Message) {
        let to = ChannelId::from_serial(m.get("to").and_then(|v| v.as_u64()).unwrap_or(0));
        let say = Message::new("say").with("n", m.get("n").cloned().unwrap_or_default());
        let _ = ctx.send_to(to, &say);
    }
    /// The last `n` messages of `room`, from its stream (the chat's scrollback).
    fn network_history(&mut self, ctx: &mut ServerContext<'_, ()>, from: ChannelId, m: &Message) {
        let n = m.get("n").and_then(|v| v.as_u64()).unwrap_or(50).min(1000) as usize;
        ctx.send_history(from, m.get_str("room").unwrap_or_default(), n);
    }
}
handler!(Relay, "join" => network_join);
handler!(Relay, "say" => network_say);
handler!(Relay, "history" => network_history);
handler!(Relay, "say_all" => network_say_all);
handler!(Relay, "whisper" => network_whisper);

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let a = Args::parse();
    let redis = RedisConfig::new(&a.redis)
        .prefix(&a.prefix)
        .presence_ttl(Duration::from_secs(2))
        .room_streams(a.streams);
    let adapter = RedisAdapter::connect(redis).expect("redis");
    let config = ServerConfig::default()
        .sessions(netlib::DEFAULT_RESUME_WINDOW)
        .max_connections(10_000);
    let mut server = Server::with_adapter(Relay, config, Box::new(adapter)).expect("server");
    server.bind_tcp(&a.listen, None).expect("bind");
    println!("jitter-node listening on {}", server.local_addrs()[0]);
    server.run().expect("run");
}
