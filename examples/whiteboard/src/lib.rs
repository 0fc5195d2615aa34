//! PodSixNet's Whiteboard example on netlib, wire-compatible with PodSixNet's own
//! (`WhiteboardServer.py` / `WhiteboardClient.py`, JSON mode).
//!
//! - [`server`]: gives each client an id and a colour, keeps every client's lines (also after
//!   the client leaves, unlike PodSixNet's, so a late joiner sees the whole board), sends a
//!   newcomer `{"action": "initial", "lines": {id: {"color": [r, g, b], "lines": [[[x, y], ...]]}}}`,
//!   relays `startline` and `drawpoint` (with the drawer's `id`) to everyone, and sends
//!   `{"action": "players", "players": {id: [r, g, b]}}` on every join and leave.
//! - [`board`]: the client's model of the board, fed by those messages; no window involved,
//!   so tests and the `--headless` client use it as it is.
//! - [`figure`]: scripted figures for the headless client.
#![deny(missing_docs, rust_2018_idioms)]

pub mod board;
pub mod figure;
pub mod server;
