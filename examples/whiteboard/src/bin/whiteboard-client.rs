//! `whiteboard-client [HOST:PORT] [--headless --figure square|circle|zigzag --offset X,Y]`: the
//! shared board in a window (draw with the left mouse button; Esc quits), or, with `--headless`,
//! a client that draws a scripted figure, waits until the server has relayed all of it, and
//! exits.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use minifb::{Key, MouseButton, MouseMode, Window, WindowOptions};
use netlib::{handler, Client, ClientConfig, ClientContext, Listener, Message};
use serde_json::json;
use whiteboard::board::{Board, Point};
use whiteboard::figure;

const W: usize = 640;
const H: usize = 480;

/// The whiteboard client.
#[derive(Debug, Parser)]
struct Args {
    /// The server's address.
    #[arg(default_value = netlib::DEFAULT_ADDR)]
    addr: String,
    /// No window: draw `--figure` and exit once the server has relayed it.
    #[arg(long)]
    headless: bool,
    /// The figure to draw in headless mode: square, circle or zigzag.
    #[arg(long, default_value = "square")]
    figure: String,
    /// Where the figure starts, as X,Y.
    #[arg(long, default_value = "40,40", value_parser = parse_point)]
    offset: Point,
}

fn parse_point(s: &str) -> Result<Point, String> {
    let (x, y) = s.split_once(',').ok_or("expected X,Y")?;
    Ok([
        x.trim().parse().map_err(|e| format!("{e}"))?,
        y.trim().parse().map_err(|e| format!("{e}"))?,
    ])
}

/// Receives the server's messages into the board.
#[derive(Default)]
struct Viewer {
    board: Board,
    /// Our id: the newest (largest) id in `initial`, since we were the last to join.
    me: Option<String>,
    ended: Option<String>,
}

impl Listener for Viewer {}

impl Viewer {
    fn network(&mut self, _: &mut ClientContext<'_>, msg: &Message) {
        let first = !self.board.ready;
        self.board.apply(msg);
        if first && self.board.ready {
            self.me = self
                .board
                .strokes
                .keys()
                .max_by_key(|id| id.parse::<u64>().unwrap_or(0))
                .cloned();
        }
    }
    fn network_error(&mut self, _: &mut ClientContext<'_>, msg: &Message) {
        self.ended = Some(format!("connection error: {}", msg.as_value()["error"]));
    }
    fn network_disconnected(&mut self, _: &mut ClientContext<'_>, _: &Message) {
        self.ended = Some("the server closed the connection".into());
    }
}
handler!(Viewer, * => network);
handler!(Viewer, "error" => network_error);
handler!(Viewer, "disconnected" => network_disconnected);

fn main() -> ExitCode {
    env_logger::init();
    let args = Args::parse();
    let client = match Client::connect(&args.addr, ClientConfig::default()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("whiteboard-client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = if args.headless {
        headless(client, &args)
    } else {
        windowed(client, &args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whiteboard-client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn headless(mut client: Client, args: &Args) -> Result<(), String> {
    let lines = figure::figure(&args.figure, args.offset).ok_or_else(|| {
        format!(
            "unknown figure {:?}; try one of {:?}",
            args.figure,
            figure::NAMES
        )
    })?;
    let total: usize = lines.iter().map(Vec::len).sum();
    let mut v = Viewer::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = false;
    loop {
        client
            .pump_timeout(&mut v, Duration::from_millis(50))
            .map_err(|e| e.to_string())?;
        if let Some(why) = &v.ended {
            return Err(why.clone());
        }
        if Instant::now() > deadline {
            return Err("timed out".into());
        }
        let Some(me) = v.me.clone() else { continue };
        if !sent {
            for line in &lines {
                let _ = client.send(&json!({"action": "startline", "point": line[0]}));
                for p in &line[1..] {
                    let _ = client.send(&json!({"action": "drawpoint", "point": p}));
                }
            }
            sent = true;
        }
        if v.board.points_of(&me) == total {
            println!(
                "player {me} drew {} ({total} points); board has {} player(s)",
                args.figure,
                v.board.players.len()
            );
            client
                .shutdown(Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
    }
}

fn windowed(mut client: Client, args: &Args) -> Result<(), String> {
    let title = format!("netlib whiteboard - {}", args.addr);
    let mut window = Window::new(&title, W, H, WindowOptions::default())
        .map_err(|e| format!("cannot open a window ({e}); without a display, use --headless"))?;
    window.set_target_fps(60);
    let mut buffer = vec![0xFFFF_FFFFu32; W * H];
    let mut v = Viewer::default();
    let mut last: Option<Point> = None;
    while window.is_open() && !window.is_key_down(Key::Escape) {
        client.pump(&mut v).map_err(|e| e.to_string())?;
        if let Some(why) = &v.ended {
            return Err(why.clone());
        }
        let pos = window
            .get_mouse_pos(MouseMode::Discard)
            .map(|(x, y)| [x as i32, y as i32]);
        match (window.get_mouse_down(MouseButton::Left), pos, last) {
            (true, Some(p), None) => {
                let _ = client.send(&json!({"action": "startline", "point": p}));
                last = Some(p);
            }
            (true, Some(p), Some(l)) if p != l => {
                let _ = client.send(&json!({"action": "drawpoint", "point": p}));
                last = Some(p);
            }
            (false, _, _) => last = None,
            _ => {}
        }
        render(&v.board, &mut buffer);
        window
            .update_with_buffer(&buffer, W, H)
            .map_err(|e| e.to_string())?;
    }
    let _ = client.shutdown(Duration::from_secs(2));
    Ok(())
}

/// Draws every player's lines, 3 pixels wide, on white.
fn render(board: &Board, buf: &mut [u32]) {
    buf.fill(0xFFFF_FFFF);
    for s in board.strokes.values() {
        let c = (s.color[0] as u32) << 16 | (s.color[1] as u32) << 8 | s.color[2] as u32;
        for line in &s.lines {
            let mut prev = line[0];
            for &p in line {
                segment(buf, prev, p, c);
                prev = p;
            }
        }
    }
}

fn segment(buf: &mut [u32], a: Point, b: Point, c: u32) {
    let (dx, dy) = ((b[0] - a[0]).abs(), -(b[1] - a[1]).abs());
    let (sx, sy) = (
        if a[0] < b[0] { 1 } else { -1 },
        if a[1] < b[1] { 1 } else { -1 },
    );
    let (mut x, mut y, mut err) = (a[0], a[1], dx + dy);
    loop {
        for oy in -1..=1 {
            for ox in -1..=1 {
                let (px, py) = (x + ox, y + oy);
                if (0..W as i32).contains(&px) && (0..H as i32).contains(&py) {
                    buf[py as usize * W + px as usize] = c;
                }
            }
        }
        if x == b[0] && y == b[1] {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}
