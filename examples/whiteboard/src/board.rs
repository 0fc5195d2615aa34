//! The board as a client sees it: every player's colour and lines, updated by
//! [`Board::apply`] from the server's messages. It knows nothing of windows.

use std::collections::BTreeMap;

use netlib::Message;
use serde::Deserialize;

/// A point in board coordinates (pixels of a 640 x 480 board).
pub type Point = [i32; 2];
/// An RGB colour.
pub type Color = [u8; 3];

/// One player's drawing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Strokes {
    /// The player's colour.
    pub color: Color,
    /// Lines, each a list of points.
    pub lines: Vec<Vec<Point>>,
}

/// Everything on the board, by player id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Board {
    /// Connected players and their colours (from `players`).
    pub players: BTreeMap<String, Color>,
    /// Every player's lines, including players who left (their lines stay drawn).
    pub strokes: BTreeMap<String, Strokes>,
    /// Whether `initial` has arrived.
    pub ready: bool,
}

#[derive(Deserialize)]
struct Initial {
    lines: BTreeMap<String, Strokes>,
}

#[derive(Deserialize)]
struct Players {
    players: BTreeMap<String, Color>,
}

#[derive(Deserialize)]
struct Stroke {
    id: String,
    point: Point,
}

impl Board {
    /// Applies one server message; other actions are ignored. Returns whether the board
    /// changed.
    pub fn apply(&mut self, msg: &Message) -> bool {
        match msg.action() {
            "initial" => {
                let Ok(i) = msg.parse::<Initial>() else {
                    return false;
                };
                self.strokes = i.lines;
                self.ready = true;
            }
            "players" => {
                let Ok(p) = msg.parse::<Players>() else {
                    return false;
                };
                for (id, color) in &p.players {
                    self.strokes.entry(id.clone()).or_default().color = *color;
                }
                self.players = p.players;
            }
            "startline" | "drawpoint" => {
                let Ok(s) = msg.parse::<Stroke>() else {
                    return false;
                };
                let color = self.players.get(&s.id).copied();
                let entry = self.strokes.entry(s.id).or_default();
                if let Some(c) = color {
                    entry.color = c;
                }
                match (msg.action(), entry.lines.last_mut()) {
                    ("drawpoint", Some(line)) => line.push(s.point),
                    _ => entry.lines.push(vec![s.point]),
                }
            }
            _ => return false,
        }
        true
    }

    /// Total points drawn by `id`.
    pub fn points_of(&self, id: &str) -> usize {
        self.strokes
            .get(id)
            .map_or(0, |s| s.lines.iter().map(Vec::len).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(v: serde_json::Value) -> Message {
        Message::from_value(v).unwrap()
    }

    #[test]
    fn messages_build_the_board() {
        let mut b = Board::default();
        b.apply(&m(json!({"action": "initial", "lines": {"1": {"color": [168, 0, 84], "lines": [[[1, 2], [3, 4]]]}}})));
        assert!(b.ready);
        b.apply(&m(
            json!({"action": "players", "players": {"1": [168, 0, 84], "2": [0, 84, 168]}}),
        ));
        b.apply(&m(
            json!({"action": "startline", "point": [10, 10], "id": "2"}),
        ));
        b.apply(&m(
            json!({"action": "drawpoint", "point": [11, 12], "id": "2"}),
        ));
        b.apply(&m(
            json!({"action": "drawpoint", "point": [5, 6], "id": "1"}),
        ));
        assert_eq!(b.strokes["1"].lines, vec![vec![[1, 2], [3, 4], [5, 6]]]);
        assert_eq!(
            b.strokes["2"],
            Strokes {
                color: [0, 84, 168],
                lines: vec![vec![[10, 10], [11, 12]]]
            }
        );
        assert_eq!(b.points_of("2"), 2);
        assert!(!b.apply(&m(json!({"action": "unknown"}))));
    }
}
