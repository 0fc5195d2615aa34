//! `arena-bot [HOST:PORT] [--ticks N] [--players N] [--duration SECS]`: a player that runs at the
//! coin. Its loop runs at 60 frames a second: pump, then every sixth frame send an input. Prints
//! a line a second; once it has seen N states since the first with `--players` players, prints
//! `done id=.. snapshots=.. others=..,.. moved=.. score=..` and exits 0. Exits 1 on its deadline
//! or a lost connection.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use arena::bot::Bot;
use clap::Parser;
use netlib::{Client, ClientConfig, ConnectionState, FixedStep};

/// Frames between inputs (10 a second).
const INPUT_EVERY: u64 = 6;

/// A bot player.
#[derive(Debug, Parser)]
struct Args {
    /// The server's address.
    #[arg(default_value = netlib::DEFAULT_ADDR)]
    addr: String,
    /// Stop after this many states (20 a second)...
    #[arg(long, default_value_t = 200)]
    ticks: u64,
    /// ...counted from the first with at least this many players.
    #[arg(long, default_value_t = 1)]
    players: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
}

fn main() -> netlib::Result<ExitCode> {
    env_logger::init();
    let args = Args::parse();
    let mut client = Client::connect(&args.addr, ClientConfig::default())?;
    let mut bot = Bot::default();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let mut frames = FixedStep::per_second(60, start);
    let (mut frame, mut counted, mut seen) = (0, 0, 0);
    while counted < args.ticks && Instant::now() < deadline {
        let now = Instant::now();
        if !frames.due(now) {
            client.wait(frames.wait(now))?; // in the poller: returns early when data arrives
            continue;
        }
        frame += 1;
        client.pump(&mut bot)?;
        if client.state() == ConnectionState::Closed {
            break;
        }
        if frame % INPUT_EVERY == 0 {
            if let Some(input) = bot.steer() {
                client.send(&input)?;
            }
        }
        let players = bot.state.as_ref().map_or(0, |s| s.players.len());
        if counted > 0 || players >= args.players {
            counted += bot.snapshots - seen;
        }
        seen = bot.snapshots;
        if let (Some(me), Some(s)) = (bot.me(), &bot.state) {
            if frame % 60 == 0 {
                let (x, y, n) = (me.x, me.y, s.players.len());
                println!(
                    "tick {}: #{} at ({x:.0}, {y:.0}), score {}, {n} players",
                    s.tick, me.id, me.score
                );
            }
        }
    }
    let _ = client.shutdown(Duration::from_secs(2));
    if counted < args.ticks {
        let why = bot.errors.last().cloned().unwrap_or("timed out".into());
        eprintln!("arena-bot: gave up after {counted} states: {why}");
        return Ok(ExitCode::FAILURE);
    }
    let others: Vec<String> = bot.others.iter().map(u64::to_string).collect();
    let (id, n, others) = (bot.id.unwrap_or(0), bot.snapshots, others.join(","));
    let (moved, score) = (bot.moved, bot.me().map_or(0, |p| p.score));
    println!("done id={id} snapshots={n} others={others} moved={moved:.1} score={score}");
    Ok(ExitCode::SUCCESS)
}
