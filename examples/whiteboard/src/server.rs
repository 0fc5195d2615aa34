//! The whiteboard server (PodSixNet's `WhiteboardServer.py`).

use std::net::SocketAddr;

use netlib::{handler, ChannelContext, ChannelId, Closed, ServerContext, ServerHandler};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::board::{Color, Point};

/// The server state: the next id to give out, and the lines of players who left (they stay
/// on the board for everyone who joins later).
#[derive(Debug, Default)]
pub struct Whiteboard {
    next_id: u32,
    departed: Vec<Drawer>,
}

/// One client: its id, colour and lines.
#[derive(Debug)]
pub struct Drawer {
    id: String,
    color: Color,
    lines: Vec<Vec<Point>>,
}

/// PodSixNet's colour formula: id 1 is [168, 0, 84], id 2 [0, 84, 168], id 3 [84, 168, 0], ...
pub fn color_of(id: u32) -> Color {
    [
        ((id + 1) % 3 * 84) as u8,
        ((id + 2) % 3 * 84) as u8,
        ((id + 3) % 3 * 84) as u8,
    ]
}

#[derive(Deserialize)]
struct At {
    point: Point,
}

fn players(ctx: &ServerContext<'_, Drawer>, extra: Option<&Drawer>) -> Value {
    let mut players = Map::new();
    for (_, d) in ctx.channels() {
        players.insert(d.id.clone(), json!(d.color));
    }
    if let Some(d) = extra {
        players.insert(d.id.clone(), json!(d.color));
    }
    json!({"action": "players", "players": players})
}

impl ServerHandler for Whiteboard {
    type Channel = Drawer;

    fn connected(
        &mut self,
        ctx: &mut ServerContext<'_, Drawer>,
        id: ChannelId,
        addr: SocketAddr,
    ) -> Drawer {
        self.next_id += 1;
        let me = Drawer {
            id: self.next_id.to_string(),
            color: color_of(self.next_id),
            lines: Vec::new(),
        };
        println!(
            "player {} connected from {addr}, colour {:?}",
            me.id, me.color
        );
        let mut lines = Map::new();
        for d in self.departed.iter().chain(ctx.channels().map(|(_, d)| d)) {
            lines.insert(d.id.clone(), json!({"color": d.color, "lines": d.lines}));
        }
        lines.insert(me.id.clone(), json!({"color": me.color, "lines": me.lines}));
        let _ = ctx.send_to(id, &json!({"action": "initial", "lines": lines}));
        // Everyone else, then the newcomer (not yet in the channel list).
        let p = players(ctx, Some(&me));
        let _ = ctx.send_to(netlib::All, &p);
        let _ = ctx.send_to(id, &p);
        me
    }

    fn closed(&mut self, ctx: &mut ServerContext<'_, Drawer>, gone: Closed<Drawer>) {
        let d = gone.channel;
        println!("player {} left", d.id);
        let p = players(ctx, None);
        let _ = ctx.send_to(netlib::All, &p);
        if !d.lines.is_empty() {
            self.departed.push(d);
        }
    }
}

impl Drawer {
    fn pass_on(&self, ctx: &mut ChannelContext<'_, Whiteboard>, action: &str, point: Point) {
        let _ = ctx.send_to(
            netlib::All,
            &json!({"action": action, "point": point, "id": self.id}),
        );
    }

    fn network_startline(&mut self, ctx: &mut ChannelContext<'_, Whiteboard>, at: At) {
        self.lines.push(vec![at.point]);
        self.pass_on(ctx, "startline", at.point);
    }

    fn network_drawpoint(&mut self, ctx: &mut ChannelContext<'_, Whiteboard>, at: At) {
        match self.lines.last_mut() {
            Some(line) => line.push(at.point),
            None => self.lines.push(vec![at.point]),
        }
        self.pass_on(ctx, "drawpoint", at.point);
    }
}
handler!(Drawer, "startline" => network_startline);
handler!(Drawer, "drawpoint" => network_drawpoint);
