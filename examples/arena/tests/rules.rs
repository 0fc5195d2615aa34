//! The rules, first on the world model alone, then through netlib's in-memory transport: a
//! server and its clients pumped in one thread on a manual clock. No sockets, no sleeps.

use std::time::{Duration, Instant};

use arena::bot::Bot;
use arena::server::{tick, turn, ArenaServer, TICK};
use arena::world::{Input, World, HEIGHT, RADIUS, REACH, SPEED, WIDTH};
use netlib::{ClientConfig, FixedStep, ManualClock, Message, Server, ServerConfig};

const DT: f64 = 0.05;

#[test]
fn a_player_moves_by_its_input_and_stops_at_the_walls() {
    let mut w = World::new(7);
    w.join(1);
    let (x0, y0) = (w.players[&1].x, w.players[&1].y);
    w.input(1, Input { dx: 0.6, dy: -0.8 }).unwrap();
    w.step(DT);
    let p = &w.players[&1];
    assert!((p.x - (x0 + 0.6 * SPEED * DT)).abs() < 1e-9, "{p:?}");
    assert!((p.y - (y0 - 0.8 * SPEED * DT)).abs() < 1e-9, "{p:?}");
    for _ in 0..200 {
        w.step(DT);
    }
    let p = &w.players[&1];
    assert_eq!(
        (p.x, p.y),
        (WIDTH - RADIUS, RADIUS),
        "in the top right corner"
    );
    w.input(1, Input { dx: -0.6, dy: 0.8 }).unwrap();
    for _ in 0..200 {
        w.step(DT);
    }
    let p = &w.players[&1];
    assert_eq!(
        (p.x, p.y),
        (RADIUS, HEIGHT - RADIUS),
        "in the bottom left corner"
    );
}

#[test]
fn input_longer_than_one_or_for_nobody_is_refused() {
    let mut w = World::new(7);
    w.join(1);
    let fast = Input { dx: 3.0, dy: 4.0 };
    assert_eq!(w.input(1, fast), Err("direction 5 is longer than 1".into()));
    let nan = Input {
        dx: f64::NAN,
        dy: 0.0,
    };
    assert_eq!(
        w.input(1, nan),
        Err("direction NaN is longer than 1".into())
    );
    assert_eq!(w.input(2, Input::default()), Err("no player 2".into()));
    assert_eq!(
        (w.players[&1].dx, w.players[&1].dy),
        (0.0, 0.0),
        "unchanged"
    );
}

#[test]
fn touching_the_coin_scores_and_moves_the_coin() {
    let mut w = World::new(7);
    w.join(1);
    w.join(2);
    let p = &w.players[&1];
    w.coin = [p.x + REACH, p.y];
    assert_eq!(w.step(DT), Some(1), "within reach, standing still");
    assert_eq!(w.players[&1].score, 1);
    assert_ne!(w.coin, [w.players[&1].x + REACH, w.players[&1].y]);
    let p = &w.players[&2];
    w.coin = [p.x + REACH + SPEED * DT, p.y];
    w.input(2, Input { dx: 1.0, dy: 0.0 }).unwrap();
    assert_eq!(w.step(DT), Some(2), "moves into reach");
    assert_eq!((w.players[&1].score, w.players[&2].score), (1, 1));
    assert_eq!(w.step(DT), None);
    assert_eq!(w.state().tick, 3);
}

#[test]
fn the_same_seed_and_inputs_give_the_same_game() {
    let play = |seed| {
        let mut w = World::new(seed);
        for id in 1..=3 {
            w.join(id);
        }
        for t in 0..500u32 {
            let a = f64::from(t) * 0.1;
            let _ = w.input(
                1 + u64::from(t % 3),
                Input {
                    dx: a.cos(),
                    dy: a.sin(),
                },
            );
            w.step(DT);
        }
        w.state()
    };
    assert_eq!(play(42), play(42));
    assert_ne!(play(42), play(43));
}

#[test]
fn the_fixed_step_keeps_a_fixed_rate_and_skips_a_stall() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut t = FixedStep::new(ms(50), t0);
    assert_eq!(t.wait(t0 + ms(20)), ms(30));
    assert!(!t.due(t0 + ms(49)));
    assert!(t.due(t0 + ms(53)), "a late tick still runs");
    assert_eq!(t.wait(t0 + ms(53)), ms(47), "and the next keeps the rate");
    assert!(t.due(t0 + ms(400)));
    assert!(!t.due(t0 + ms(400)), "no burst after a stall");
    assert_eq!(t.wait(t0 + ms(400)), ms(50));
}

/// A server on a manual clock, with its fixed step.
fn game(clock: &ManualClock) -> (Server<ArenaServer>, FixedStep) {
    let config = ServerConfig::default()
        .announce_id(true)
        .clock(clock.clone());
    let server = Server::new(ArenaServer::new(7, 0), config).unwrap();
    (server, FixedStep::new(TICK, clock.now()))
}

#[test]
fn an_input_moves_the_player_in_the_next_snapshot() {
    let clock = ManualClock::new();
    let (mut server, mut step) = game(&clock);
    let (id, mut client) = server.connect_local(ClientConfig::default()).unwrap();
    let mut bot = Bot::default();
    let now = || clock.now();
    server.settle(&mut [&mut client]).unwrap();
    client.pump(&mut bot).unwrap();
    assert_eq!(bot.id, Some(id.serial()), "announced in `connected`");
    assert_eq!(bot.snapshots, 0, "no tick before the clock says so");
    clock.advance(TICK);
    assert!(turn(&mut server, &mut step, now).unwrap());
    server.settle(&mut [&mut client]).unwrap();
    client.pump(&mut bot).unwrap();
    assert_eq!(bot.snapshots, 1);
    let before = bot.me().unwrap().clone();
    let dx = if before.x < WIDTH / 2.0 { 1.0 } else { -1.0 };
    client.send(&Input { dx, dy: 0.0 }).unwrap();
    server.settle(&mut [&mut client]).unwrap();
    clock.advance(TICK);
    assert!(turn(&mut server, &mut step, now).unwrap());
    server.settle(&mut [&mut client]).unwrap();
    client.pump(&mut bot).unwrap();
    assert_eq!(bot.snapshots, 2);
    let after = bot.me().unwrap();
    assert_eq!(bot.state.as_ref().unwrap().tick, 2);
    assert!(
        (after.x - (before.x + dx * SPEED * DT)).abs() < 1e-9,
        "{before:?} {after:?}"
    );
    assert_eq!((after.y, after.dx), (before.y, dx));
}

#[test]
fn two_players_see_each_other_and_a_leaver_disappears() {
    let clock = ManualClock::new();
    let (mut server, _) = game(&clock);
    let (a, mut ca) = server.connect_local(ClientConfig::default()).unwrap();
    let (b, mut cb) = server.connect_local(ClientConfig::default()).unwrap();
    let (mut ba, mut bb) = (Bot::default(), Bot::default());
    tick(&mut server).unwrap();
    server.settle(&mut [&mut ca, &mut cb]).unwrap();
    ca.pump(&mut ba).unwrap();
    cb.pump(&mut bb).unwrap();
    assert_eq!((ba.snapshots, bb.snapshots), (1, 1));
    assert_eq!(ba.others.iter().collect::<Vec<_>>(), [&b.serial()]);
    assert_eq!(bb.others.iter().collect::<Vec<_>>(), [&a.serial()]);
    assert_eq!(ba.state, bb.state, "one snapshot for all");

    cb.close();
    server.settle(&mut [&mut ca, &mut cb]).unwrap();
    ca.pump(&mut ba).unwrap();
    cb.pump(&mut bb).unwrap();
    assert!(bb.disconnected);
    assert_eq!(server.state().world.players.len(), 1);
    tick(&mut server).unwrap();
    server.settle(&mut [&mut ca]).unwrap();
    ca.pump(&mut ba).unwrap();
    assert_eq!(ba.snapshots, 2);
    let ids: Vec<u64> = ba
        .state
        .as_ref()
        .unwrap()
        .players
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, [a.serial()]);
    let news = &server.state().news;
    assert_eq!(
        news[..2],
        ["#1 joined from 0.0.0.0:0", "#2 joined from 0.0.0.0:0"]
    );
    assert!(
        news[2].starts_with("#2 left (") && news.len() == 3,
        "{news:?}"
    );
}

#[test]
fn invalid_input_is_answered_with_an_error() {
    let clock = ManualClock::new();
    let (mut server, _) = game(&clock);
    let (id, mut client) = server.connect_local(ClientConfig::default()).unwrap();
    client.send(&Input { dx: 3.0, dy: 4.0 }).unwrap();
    client.send(&Message::new("input").with("dx", 1.0)).unwrap();
    server.settle(&mut [&mut client]).unwrap();
    let got = client.pump_messages().unwrap();
    let errors: Vec<Message> = got.into_iter().filter(|m| m.action() == "error").collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    let text = |m: &Message| m.get("error").unwrap().to_string();
    assert!(
        text(&errors[0]).contains("direction 5 is longer than 1"),
        "{errors:?}"
    );
    assert!(
        text(&errors[1]).contains("missing field `dy`"),
        "{errors:?}"
    );
    assert!(errors.iter().all(|m| m.get_str("for") == Some("input")));
    assert_eq!(server.state().world.players[&id.serial()].dx, 0.0);
    assert_eq!(
        server.stats().out_of_band,
        2,
        "both reached the out-of-band hook"
    );
}

#[test]
fn the_bot_steers_to_the_coin_and_takes_it() {
    let clock = ManualClock::new();
    let (mut server, mut step) = game(&clock);
    let (_, mut client) = server.connect_local(ClientConfig::default()).unwrap();
    let mut bot = Bot::default();
    // Corner to corner is 800 units, 8 a tick: 100 ticks at most.
    for _ in 0..120 {
        clock.advance(TICK);
        assert!(turn(&mut server, &mut step, || clock.now()).unwrap());
        let n = bot.snapshots;
        server.settle(&mut [&mut client]).unwrap();
        client.pump(&mut bot).unwrap();
        assert_eq!(bot.snapshots, n + 1, "one state a tick");
        if bot.me().unwrap().score > 0 {
            break;
        }
        if let Some(input) = bot.steer() {
            client.send(&input).unwrap();
        }
    }
    assert_eq!(bot.me().unwrap().score, 1, "{:?}", bot.state);
    assert!(bot.moved > 0.0 && bot.errors.is_empty());
}

/// Two arena servers on one in-process cluster bus (`netlib_tests::bus`), a player on each,
/// all on one manual clock: one arena, led by the older node; when it dies, the other leads.
#[test]
fn two_nodes_share_one_arena_and_the_survivor_leads_when_the_leader_dies() {
    use netlib_tests::bus::Bus;
    let clock = ManualClock::new();
    let ttl = Duration::from_secs(2);
    let bus = Bus::new(ttl);
    let node = |started: u64| {
        let config = ServerConfig::default()
            .announce_id(true)
            .clock(clock.clone());
        Server::with_adapter(ArenaServer::new(7, started), config, bus.adapter()).unwrap()
    };
    let (mut old, mut young) = (node(1_000), node(2_000));
    let (a, mut ca) = old.connect_local(ClientConfig::default()).unwrap();
    let (b, mut cb) = young.connect_local(ClientConfig::default()).unwrap();
    assert_ne!(a.node(), b.node());
    let (mut ba, mut bb) = (Bot::default(), Bot::default());
    // Until nothing moves on either node (the hellos, then the joins sent to the leader).
    let settle = |old: &mut Server<ArenaServer>,
                  young: Option<&mut Server<ArenaServer>>,
                  ca: &mut netlib::Client,
                  cb: &mut netlib::Client| {
        let mut young = young;
        for _ in 0..20 {
            let mut rounds = old.settle(&mut [&mut *ca]).unwrap();
            if let Some(y) = young.as_deref_mut() {
                rounds += y.settle(&mut [&mut *cb]).unwrap();
            }
            if rounds <= 2 && bus.queued() == 0 {
                return;
            }
        }
        panic!("the cluster did not settle");
    };
    settle(&mut old, Some(&mut young), &mut ca, &mut cb);
    assert_eq!(old.state().world.players.len(), 2, "the leader has both");
    assert!(
        young.state().world.players.is_empty(),
        "the follower plays none"
    );

    // One tick on each node: only the leader's goes out, to both players.
    tick(&mut old).unwrap();
    tick(&mut young).unwrap();
    settle(&mut old, Some(&mut young), &mut ca, &mut cb);
    ca.pump(&mut ba).unwrap();
    cb.pump(&mut bb).unwrap();
    assert_eq!((ba.snapshots, bb.snapshots), (1, 1));
    assert_eq!(ba.others.iter().collect::<Vec<_>>(), [&b.serial()]);
    assert_eq!(bb.others.iter().collect::<Vec<_>>(), [&a.serial()]);
    assert_eq!(ba.state, bb.state, "one snapshot for all");

    // An input on the follower moves its player in the leader's world.
    let before = old.state().world.players[&b.serial()].clone();
    let dx = if before.x < WIDTH / 2.0 { 1.0 } else { -1.0 };
    cb.send(&Input { dx, dy: 0.0 }).unwrap();
    settle(&mut old, Some(&mut young), &mut ca, &mut cb);
    tick(&mut old).unwrap();
    settle(&mut old, Some(&mut young), &mut ca, &mut cb);
    cb.pump(&mut bb).unwrap();
    let after = bb.me().unwrap();
    assert!((after.x - (before.x + dx * SPEED * DT)).abs() < 1e-9);

    // The leader dies (SIGKILL: no goodbye). Once its presence expires, the survivor leads,
    // with its own player, and ticks.
    let dead = a.node();
    bus.kill(dead);
    drop(old);
    for _ in 0..4 {
        clock.advance(ttl / 2);
        young.settle(&mut [&mut cb]).unwrap();
    }
    assert!(!bus.live_nodes().contains(&dead));
    let players: Vec<u64> = young.state().world.players.keys().copied().collect();
    assert_eq!(players, [b.serial()], "the new leader plays its own player");
    let seen = bb.snapshots;
    tick(&mut young).unwrap();
    young.settle(&mut [&mut cb]).unwrap();
    cb.pump(&mut bb).unwrap();
    assert_eq!(bb.snapshots, seen + 1);
    assert!(
        bb.others.contains(&a.serial()),
        "it saw the old leader's player before"
    );
    let ids: Vec<u64> = bb
        .state
        .as_ref()
        .unwrap()
        .players
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, [b.serial()]);
}
