//! The chat page in real headless Chromium (Debian's `chromium`), driven through the DevTools
//! protocol (`headless_chrome`), against the real `chat-server --web`. Fails, never skips, when
//! Chromium cannot start.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat::protocol::{Request, Say};
use common::{chat_client, ChatServer, Peer};
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use netlib_tests::{until, TestCa, TIMEOUT};

/// Headless Chromium from the system (`/usr/bin/chromium`), without the sandbox (tests run as
/// root in CI), with `args` besides.
fn launch(args: &[&str]) -> Browser {
    let path = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .expect("Chromium must be installed (Debian package chromium)");
    let options = LaunchOptions::default_builder()
        .path(Some(path))
        .headless(true)
        .sandbox(false)
        .window_size(Some((1100, 700)))
        .idle_browser_timeout(Duration::from_secs(120))
        .args(args.iter().map(std::ffi::OsStr::new).collect())
        .build()
        .expect("launch options");
    Browser::new(options).expect("start headless Chromium")
}

fn chromium() -> Browser {
    launch(&[])
}

/// Headless Chromium that trusts the certificates `ca` signs (their chain's CA key is on
/// `--ignore-certificate-errors-spki-list`), as a browser that has the CA installed.
fn chromium_trusting(ca: &TestCa) -> Browser {
    launch(&[&format!(
        "--ignore-certificate-errors-spki-list={}",
        ca.spki_sha256()
    )])
}

/// A page of the chat at `url`, once it has been welcomed.
fn open(browser: &Browser, url: &str) -> Arc<Tab> {
    let tab = browser.new_tab().expect("a tab");
    tab.navigate_to(url).expect("navigate");
    tab.wait_until_navigated().expect("page loaded");
    wait_js(
        &tab,
        "window.chat && window.chat.state.id !== null",
        "the welcome",
    );
    tab
}

/// Evaluates `expr` in the page.
fn js(tab: &Tab, expr: &str) -> serde_json::Value {
    tab.evaluate(expr, false)
        .expect("evaluate")
        .value
        .unwrap_or(serde_json::Value::Null)
}

/// Waits until `expr` is true in the page.
fn wait_js(tab: &Tab, expr: &str, what: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while js(tab, expr) != serde_json::Value::Bool(true) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} ({expr}); log: {}",
            js(tab, "document.getElementById('log').innerText")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fills `form`'s input `input` with `text` and submits the form, as pressing Enter does (by
/// script: a background tab gets no key events).
fn submit(tab: &Tab, form: &str, input: &str, text: &str) {
    let done = js(
        tab,
        &format!(
            "(() => {{ document.getElementById({input:?}).value = {text:?}; \
             document.getElementById({form:?}).requestSubmit(); return true; }})()"
        ),
    );
    assert_eq!(done, serde_json::Value::Bool(true));
}

fn say(tab: &Tab, text: &str) {
    submit(tab, "say-form", "say", text);
}

fn set_nick(tab: &Tab, nick: &str) {
    submit(tab, "nick-form", "nick", nick);
    wait_js(
        tab,
        &format!("window.chat.state.nick === {nick:?}"),
        "the new nickname",
    );
}

/// JS: whether a log line holds `who` and `text`.
fn log_has(who: &str, text: &str) -> String {
    format!(
        "[...document.querySelectorAll('#log li')].some(li => \
         li.querySelector('.who')?.textContent === {who:?} && li.textContent.endsWith({text:?}))"
    )
}

fn web_url(server: &ChatServer) -> String {
    server.listening("web")[0].clone()
}

#[test]
fn two_pages_and_a_terminal_client_chat_in_one_room() {
    let server = ChatServer::start(&["--web", "127.0.0.1:0"], &[]);
    let url = web_url(&server);
    let browser = chromium();
    let ann = open(&browser, &url);
    set_nick(&ann, "ann");
    let bea = open(&browser, &url);
    set_nick(&bea, "bea");
    let (mut term, out) = chat_client(&server.addr, &["--nick", "term"]);
    for tab in [&ann, &bea] {
        wait_js(
            tab,
            "['ann','bea','term'].every(n => window.chat.state.members.has(n))",
            "all three members listed",
        );
    }
    say(&ann, "hello from ann");
    wait_js(
        &bea,
        &log_has("ann", "hello from ann"),
        "ann's message on bea's page",
    );
    until("ann's message on the terminal", || {
        out.any(|l| l.contains("<ann> hello from ann"))
    });
    term.0
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"hello from the terminal\n")
        .unwrap();
    for tab in [&ann, &bea] {
        wait_js(
            tab,
            &log_has("term", "hello from the terminal"),
            "the terminal's message",
        );
    }
    say(&bea, "/msg ann just for you");
    wait_js(
        &ann,
        &log_has("bea → you", "just for you"),
        "a private message",
    );
    say(&bea, "hi all");
    wait_js(&ann, &log_has("bea", "hi all"), "bea's message");
    // Own messages are set apart.
    assert_eq!(
        js(
            &bea,
            "[...document.querySelectorAll('#log li.own')].some(li => li.textContent.endsWith('hi all'))"
        ),
        serde_json::Value::Bool(true)
    );
    if let Some(path) = std::env::var_os("CHAT_SCREENSHOT") {
        let png = ann
            .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
            .expect("screenshot");
        std::fs::write(path, png).expect("write the screenshot");
    }
    common::quit(&mut term);
    server.stop();
}

#[test]
fn a_page_reconnects_after_the_server_restarts() {
    let port = netlib_tests::restart_port();
    let web = format!("127.0.0.1:{port}");
    let server = ChatServer::start(&["--web", &web], &[]);
    let url = web_url(&server);
    let browser = chromium();
    let tab = open(&browser, &url);
    set_nick(&tab, "phoenix");
    server.stop();
    wait_js(
        &tab,
        "document.getElementById('status').textContent.includes('reconnecting') \
         || document.getElementById('status').textContent.includes('disconnected')",
        "the page to notice",
    );
    let server = ChatServer::start(&["--web", &web], &[]);
    wait_js(
        &tab,
        "document.getElementById('status').textContent === 'connected' \
         && window.chat.state.nick === 'anonymous'",
        "the page to reconnect (a new session: anonymous again)",
    );
    let mut peer = Peer::join(&server.addr, "watcher");
    say(&tab, "back again");
    peer.expect_where("message", |m| m.get_str("message") == Some("back again"));
    server.stop();
}

#[test]
fn user_text_renders_as_text_never_as_html() {
    let server = ChatServer::start(&["--web", "127.0.0.1:0"], &[]);
    let browser = chromium();
    let tab = open(&browser, &web_url(&server));
    let evil = "<img src=x onerror=alert(1)>";
    let mut mallory = Peer::join(&server.addr, "mallory");
    mallory.send(Request::Message(Say {
        message: evil.into(),
    }));
    wait_js(&tab, &log_has("mallory", evil), "the message, as typed");
    assert_eq!(
        js(&tab, "document.querySelectorAll('#log img').length"),
        serde_json::json!(0),
        "no element was made from the text"
    );
    server.stop();
}

#[test]
fn a_page_loses_nothing_across_a_network_drop() {
    let server = ChatServer::start(&["--web", "127.0.0.1:0"], &[]);
    let browser = chromium();
    let tab = open(&browser, &web_url(&server));
    set_nick(&tab, "ann");
    let mut bob = Peer::join(&server.addr, "bob");
    // The socket goes as a lost network takes it (no goodbye), and the page waits about
    // 1.5 s before it reconnects.
    js(
        &tab,
        "window.chat.conn.options.minDelay = 1500; window.chat.conn.options.random = () => 0.99; \
         window.chat.conn._socket.close(4000, 'network gone'); true",
    );
    wait_js(
        &tab,
        "document.getElementById('status').textContent.includes('reconnecting')",
        "the page to notice",
    );
    for n in 1..=5 {
        bob.send(Request::Message(Say {
            message: format!("while you were away {n}"),
        }));
    }
    bob.expect_where("message", |m| {
        m.get_str("message") == Some("while you were away 5")
    });
    wait_js(
        &tab,
        &log_has("bob", "while you were away 5"),
        "the missed messages",
    );
    wait_js(
        &tab,
        "document.getElementById('log').innerText.includes('Reconnected: nothing was lost')",
        "the resume notice",
    );
    for n in 1..=5 {
        let count = js(
            &tab,
            &format!(
                "[...document.querySelectorAll('#log li')].filter(li => \
                 li.textContent.endsWith('while you were away {n}')).length"
            ),
        );
        assert_eq!(count, serde_json::json!(1), "message {n} once");
    }
    assert_eq!(js(&tab, "window.chat.state.nick"), serde_json::json!("ann"));
    say(&tab, "back again");
    let m = bob.expect_where("message", |m| m.get_str("message") == Some("back again"));
    assert_eq!(m.get_str("who"), Some("ann"), "the same user");
    server.stop();
}

#[test]
fn the_page_chats_over_https_and_wss_with_a_certificate_of_the_test_ca() {
    let ca = TestCa::new("browser");
    let (cert, key) = (ca.dir.join("server.pem"), ca.dir.join("server.key"));
    ca.issue(&["localhost"], &cert, &key);
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let server = ChatServer::start(
        &["--web", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key],
        &[],
    );
    let url = web_url(&server);
    let port = url
        .strip_prefix("https://127.0.0.1:")
        .unwrap_or_else(|| panic!("an https:// listener: {url}"))
        .trim_end_matches('/');
    let browser = chromium_trusting(&ca);
    let tab = open(&browser, &format!("https://localhost:{port}/"));
    assert_eq!(js(&tab, "location.protocol"), "https:");
    set_nick(&tab, "webby");
    // A netlib client over TLS on the main port, in the same room.
    let main_port = server.addr.rsplit(':').next().unwrap();
    let config = netlib::ClientConfig::default()
        .tls(netlib::transport::tls::TlsClient::from_ca_file(&ca.ca).unwrap());
    let mut bob = Peer::join_with(&format!("tls://localhost:{main_port}"), "bob", config);
    say(&tab, "hello over wss");
    bob.expect_where("message", |m| {
        m.get_str("message") == Some("hello over wss")
    });
    bob.send(Request::Message(Say {
        message: "hi page".into(),
    }));
    wait_js(
        &tab,
        &log_has("bob", "hi page"),
        "bob's message on the page",
    );
    server.stop();
}
