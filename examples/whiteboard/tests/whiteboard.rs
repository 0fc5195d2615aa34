//! Runs the real whiteboard-server; draws with the headless client binary and with netlib
//! clients holding the board model, and checks what a user would see.

use std::process::Command;
use std::time::Duration;

use netlib::{Client, ClientConfig};
use netlib_tests::{spawn_listening, until};
use serde_json::json;
use whiteboard::board::Board;
use whiteboard::figure::figure;
use whiteboard::server::color_of;

struct Viewer {
    client: Client,
    board: Board,
}

impl Viewer {
    fn join(addr: &str) -> Self {
        let mut v = Viewer {
            client: Client::connect(addr, ClientConfig::default()).unwrap(),
            board: Board::default(),
        };
        v.until("the initial board", |b| b.ready);
        v
    }
    fn pump(&mut self) {
        self.client.wait(Duration::from_millis(5)).unwrap();
        for m in self.client.pump_messages().unwrap() {
            self.board.apply(&m);
        }
    }
    fn until(&mut self, what: &str, pred: impl Fn(&Board) -> bool) {
        until(what, || {
            self.pump();
            pred(&self.board)
        });
    }
}

#[test]
fn late_joiners_see_every_stroke_and_live_strokes_arrive_in_order() {
    let (_server, addr, _lines) =
        spawn_listening(env!("CARGO_BIN_EXE_whiteboard-server"), &["127.0.0.1:0"]);

    // Player 1: the headless client binary draws a square and leaves.
    let out = Command::new(env!("CARGO_BIN_EXE_whiteboard-client"))
        .args([
            addr.as_str(),
            "--headless",
            "--figure",
            "square",
            "--offset",
            "40,40",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let square = figure("square", [40, 40]).unwrap();
    let n: usize = square.iter().map(Vec::len).sum();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("player 1 drew square ({n} points); board has 1 player(s)")
    );

    // Player 2 joins late: the square is there, in player 1's colour.
    let mut late = Viewer::join(&addr);
    assert_eq!(
        late.board.strokes["1"].lines, square,
        "every earlier stroke, in order"
    );
    assert_eq!(late.board.strokes["1"].color, color_of(1));
    late.until("the players list", |b| b.players.contains_key("2"));
    assert_eq!(
        late.board.players.keys().collect::<Vec<_>>(),
        ["2"],
        "player 1 left"
    );

    // Player 3 draws live; player 2 sees it in order, with id 3 and its colour.
    let mut drawer = Viewer::join(&addr);
    late.until("player 3 joined", |b| b.players.contains_key("3"));
    assert_eq!(late.board.players["3"], color_of(3));
    let zigzag = figure("zigzag", [300, 200]).unwrap();
    for line in &zigzag {
        drawer
            .client
            .send(&json!({"action": "startline", "point": line[0]}))
            .unwrap();
        for p in &line[1..] {
            drawer
                .client
                .send(&json!({"action": "drawpoint", "point": p}))
                .unwrap();
        }
    }
    let total: usize = zigzag.iter().map(Vec::len).sum();
    drawer.pump();
    late.until("the live zigzag", |b| b.points_of("3") == total);
    assert_eq!(late.board.strokes["3"].lines, zigzag);
    assert_eq!(late.board.strokes["3"].color, color_of(3));
    assert_ne!(color_of(3), color_of(2));

    // Player 3 leaves: the players list shrinks, the drawing stays.
    drawer.client.shutdown(Duration::from_secs(5)).unwrap();
    late.until("player 3 left", |b| !b.players.contains_key("3"));
    assert_eq!(late.board.points_of("3"), total);
}

#[test]
fn podsixnets_own_whiteboard_client_draws_on_a_netlib_board() {
    let (_server, addr, _lines) =
        spawn_listening(env!("CARGO_BIN_EXE_whiteboard-server"), &["127.0.0.1:0"]);
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new(netlib_tests::podsixnet_python())
        .current_dir(netlib_tests::podsixnet_scripts())
        .args(["whiteboard_client.py", "json", host, port])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let initial: serde_json::Value =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert_eq!(
        initial["lines"]["1"]["color"],
        json!(color_of(1)),
        "PodSixNet's client got its board"
    );
    let late = Viewer::join(&addr);
    assert_eq!(
        late.board.strokes["1"].lines,
        vec![vec![[5, 5], [50, 5], [50, 50]]]
    );
}
