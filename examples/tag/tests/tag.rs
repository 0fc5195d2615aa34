//! The game in memory (local clients, a manual clock, `settle`) and the binaries over loopback.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netlib::{Client, ClientConfig, ManualClock, Message, Server, ServerConfig};
use netlib_tests::{ChildGuard, TIMEOUT};
use tag::{Bot, Tag, TICK_HZ};

#[test]
fn bots_play_and_it_changes_hands_without_tag_backs() {
    let clock = ManualClock::new();
    let config = ServerConfig::default()
        .announce_id(true)
        .clock(clock.clone());
    let mut server = Server::new(Tag::default(), config).unwrap();
    let mut bots: Vec<(Client, Bot)> = (0..3)
        .map(|_| {
            let (_, c) = server.connect_local(ClientConfig::default()).unwrap();
            (c, Bot::default())
        })
        .collect();
    let dt = 1.0 / TICK_HZ as f32;
    let mut holders = Vec::new();
    for _ in 0..30 * TICK_HZ {
        clock.advance(Duration::from_secs(1) / TICK_HZ);
        let (game, mut ctx) = server.split();
        game.step(&mut ctx, dt);
        holders.push(game.it);
        let mut clients: Vec<&mut Client> = bots.iter_mut().map(|b| &mut b.0).collect();
        server.settle(&mut clients).unwrap();
        for (client, bot) in &mut bots {
            client.pump(bot).unwrap();
        }
    }
    let game = server.state();
    assert!(game.tags >= 2, "{} tags in 30 s", game.tags);
    holders.dedup();
    assert!(holders.len() > 2, "it changed hands: {holders:?}");
    for pair in holders.windows(3) {
        assert_ne!(pair[0], pair[2], "a tag-back: {holders:?}");
    }
    for (_, bot) in &bots {
        assert_eq!(bot.states, 30 * TICK_HZ, "every state reached every bot");
        assert!(bot.me.is_some());
    }
}

#[test]
fn the_binaries_play_over_loopback() {
    let (_server, addr) = tag_server(); // stopped when dropped, at the end
    let bot = || {
        ChildGuard(
            Command::new(env!("CARGO_BIN_EXE_tag-bot"))
                .arg(&addr)
                .spawn()
                .unwrap(),
        )
    };
    let _bots = [bot(), bot()];
    // A watcher sees the two bots (and itself) in the state, and the bots move.
    let mut watcher = Client::connect(&addr, ClientConfig::default()).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut first: Option<String> = None;
    loop {
        assert!(Instant::now() < deadline, "the bots never moved");
        watcher.wait(Duration::from_millis(50)).unwrap();
        let states: Vec<Message> = watcher
            .pump_messages()
            .unwrap()
            .into_iter()
            .filter(|m| m.action() == "state")
            .collect();
        let Some(last) = states.last() else { continue };
        let players = last.get("players").unwrap().as_array().unwrap();
        if players.len() < 3 {
            continue;
        }
        let now = last.get("players").unwrap().to_string();
        match &first {
            None => first = Some(now),
            Some(f) if *f != now => break,
            Some(_) => {}
        }
    }
}

/// The `tag-server` binary on a free loopback port, and its address.
fn tag_server() -> (ChildGuard, String) {
    let mut server = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_tag-server"))
            .arg("127.0.0.1:0")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let addr = listening(&mut server);
    (server, addr)
}

/// Reads `PROGRAM listening on HOST:PORT` from a child's stdout, and drains the rest (a closed
/// pipe would fail the child's next print).
fn listening(child: &mut ChildGuard) -> String {
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    line.trim().rsplit(' ').next().unwrap().to_owned()
}

#[test]
fn podsixnet_and_netlib_bots_play_on_each_others_servers() {
    let python = netlib_tests::podsixnet_python();
    let scripts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("podsixnet");
    // PodSixNet's bot on netlib's server.
    let (server, addr) = tag_server();
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new(&python)
        .arg(scripts.join("tag_bot.py"))
        .args([host, port, "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(server);
    // netlib's bot on PodSixNet's server.
    let mut server = ChildGuard(
        Command::new(&python)
            .arg(scripts.join("tag_server.py"))
            .args(["127.0.0.1", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let addr = listening(&mut server);
    let mut client = Client::connect(&addr, ClientConfig::default()).unwrap();
    let mut bot = Bot::default();
    let deadline = Instant::now() + TIMEOUT;
    while bot.states < 10 || bot.me.is_none() {
        assert!(
            Instant::now() < deadline,
            "{} states from PodSixNet's server",
            bot.states
        );
        client
            .pump_timeout(&mut bot, Duration::from_millis(50))
            .unwrap();
    }
}
