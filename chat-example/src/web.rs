//! The chat as a web page: `index.html`, `chat.js` and `chat.css` (in `chat-example/web/`),
//! embedded in the binary and served with netlib.js by the same listener as the WebSocket
//! (`chat-server --web ADDR`). The page speaks the same actions as every other client.

use netlib::transport::ws::WsOptions;

/// The page.
pub const INDEX_HTML: &[u8] = include_bytes!("../web/index.html");
/// Its script (an ES module using `/netlib.js`).
pub const CHAT_JS: &[u8] = include_bytes!("../web/chat.js");
/// Its style sheet: the system font, light and dark themes, phone width.
pub const CHAT_CSS: &[u8] = include_bytes!("../web/chat.css");

/// WebSocket listener options serving the page at `/` (and `/index.html`), its assets and
/// `/netlib.js`, with the socket at `/ws`.
pub fn options() -> WsOptions {
    WsOptions::new()
        .asset("/", "text/html; charset=utf-8", INDEX_HTML)
        .asset("/index.html", "text/html; charset=utf-8", INDEX_HTML)
        .asset("/chat.js", "text/javascript; charset=utf-8", CHAT_JS)
        .asset("/chat.css", "text/css; charset=utf-8", CHAT_CSS)
        .netlib_js()
}
