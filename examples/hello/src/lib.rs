//! The smallest netlib server and client: the client says `hello` with its name, the server
//! answers `welcome`. Both messages are typed (serde structs); the binaries `hello-server` and
//! `hello-client` wrap these types.
#![deny(missing_docs, rust_2018_idioms)]

use std::net::SocketAddr;

use netlib::{handler, ChannelId, ClientContext, Listener, ServerContext, ServerHandler};
use serde::{Deserialize, Serialize};

/// Client to server: `{"action": "hello", "name": "ada"}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "action", rename = "hello")]
pub struct Hello {
    /// Who is saying hello.
    pub name: String,
}

/// Server to client: `{"action": "welcome", "text": "hello, ada", "guests": 1}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "action", rename = "welcome")]
pub struct Welcome {
    /// The greeting.
    pub text: String,
    /// How many guests the server has greeted so far.
    pub guests: usize,
}

/// The server state: how many guests were greeted.
#[derive(Debug, Default)]
pub struct HelloServer {
    /// Guests greeted so far.
    pub greeted: usize,
}

// All state lives in the server, so a channel needs none: `type Channel = ()`.
impl ServerHandler for HelloServer {
    type Channel = ();
    fn connected(&mut self, _: &mut ServerContext<'_, ()>, id: ChannelId, addr: SocketAddr) {
        println!("{id} connected from {addr}");
    }
}

impl HelloServer {
    fn network_hello(&mut self, ctx: &mut ServerContext<'_, ()>, from: ChannelId, hello: Hello) {
        self.greeted += 1;
        println!("greeted {} (guest {})", hello.name, self.greeted);
        let welcome = Welcome {
            text: format!("hello, {}", hello.name),
            guests: self.greeted,
        };
        let _ = ctx.send_to(from, &welcome);
    }
}
handler!(HelloServer, "hello" => network_hello);

/// The client's listener: says hello once connected, keeps the welcome.
#[derive(Debug)]
pub struct Visitor {
    /// The name to send.
    pub name: String,
    /// The server's answer, once it came.
    pub welcome: Option<Welcome>,
    /// A connection error, as PodSixNet's `[errno, "text"]`.
    pub error: Option<(i32, String)>,
}

#[derive(Deserialize)]
struct NetError {
    error: (i32, String),
}

impl Listener for Visitor {}

impl Visitor {
    fn network_connected(&mut self, ctx: &mut ClientContext<'_>, _: &netlib::Message) {
        let _ = ctx.send(&Hello {
            name: self.name.clone(),
        });
    }
    fn network_welcome(&mut self, _: &mut ClientContext<'_>, w: Welcome) {
        self.welcome = Some(w);
    }
    fn network_error(&mut self, _: &mut ClientContext<'_>, e: NetError) {
        self.error = Some(e.error);
    }
}
handler!(Visitor, "connected" => network_connected);
handler!(Visitor, "welcome" => network_welcome);
handler!(Visitor, "error" => network_error);
