//! `chat-client [HOST:PORT] [--nick NAME] [--codec json|rencode] [--framing terminator|length]
//! [--tls [--ca FILE]]`: the netlib chat's terminal client.
//!
//! Reads lines from standard input on a separate thread, so the network is pumped while the
//! user types; exits on `/quit`, at end of input, or when the server goes away.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use chat::client::{ChatView, Ending, HELP};
use chat::command::{self, Dialect};
use chat::protocol::{Quit, Request, SetNickname};
use chat::{CodecArg, FramingArg};
use clap::Parser;
use netlib::transport::tls::TlsClient;
use netlib::{Client, ClientConfig};

/// The netlib chat's terminal client. Plain lines are messages; /help lists the commands.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The server's address.
    #[arg(default_value = netlib::DEFAULT_ADDR)]
    addr: String,
    /// Nickname; asked for on the first input line when absent.
    #[arg(long)]
    nick: Option<String>,
    /// Payload codec.
    #[arg(long, value_enum, default_value = "json")]
    codec: CodecArg,
    /// Framing: PodSixNet's terminator, or a 4-byte big-endian length prefix (must match the
    /// server's `--framing`).
    #[arg(long, value_enum, default_value = "terminator")]
    framing: FramingArg,
    /// Connect over TLS (to a `chat-server --tls-cert ... --tls-key ...`): the server's
    /// certificate must be valid for HOST and signed by a public authority, or by `--ca`.
    #[arg(long)]
    tls: bool,
    /// Trust only the certificate authorities in this PEM file (a private CA), with `--tls`.
    #[arg(long, value_name = "FILE", requires = "tls")]
    ca: Option<std::path::PathBuf>,
}

/// The automatic reconnect's backoff: from 0-0.5 s, doubling up to 0-30 s (full jitter).
const RECONNECT_MIN: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// How long a quitting client waits for its last lines to be written and the server to close.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chat-client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut config = ClientConfig::default()
        .codec(args.codec.into())
        .framing(args.framing.into())
        // A lost connection is resumed: nothing is lost either way (netlib's sessions).
        .session(true)
        .reconnect(RECONNECT_MIN, RECONNECT_MAX);
    let mut addr = args.addr.clone();
    if args.tls {
        if let Some(ca) = &args.ca {
            config = config.tls(TlsClient::from_ca_file(ca)?);
        }
        addr = format!("tls://{addr}");
    }
    let mut client = Client::connect(&addr, config)?;
    let mut view = ChatView::new(Box::new(std::io::stdout()));

    // Standard input on its own thread; each line wakes the pump.
    let (tx, rx) = mpsc::channel::<Option<String>>();
    let waker = client.wake_handle();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(Some(line)).is_err() {
                return;
            }
            let _ = waker.wake();
        }
        let _ = tx.send(None);
        let _ = waker.wake();
    });

    let mut awaiting_nick = true;
    if let Some(nick) = &args.nick {
        client.send(&nickname(nick))?;
        awaiting_nick = false;
    } else {
        print!("Nickname: ");
        let _ = std::io::stdout().flush();
    }
    view.plain(&format!(
        "* connecting to {} (/help for commands)",
        args.addr
    ));

    loop {
        client.wait(Duration::from_secs(1))?;
        client.pump(&mut view)?;
        match view.ending {
            Some(Ending::Disconnected) => return Ok(ExitCode::SUCCESS),
            Some(Ending::Failed) => return Ok(ExitCode::FAILURE),
            None => {}
        }
        while let Ok(input) = rx.try_recv() {
            let Some(line) = input else {
                view.plain("* end of input; leaving");
                return Ok(quit(&mut client, &mut view, None)?);
            };
            if awaiting_nick {
                let nick = line.trim();
                if !nick.is_empty() {
                    client.send(&nickname(nick))?;
                }
                awaiting_nick = false;
                continue;
            }
            // The chat's one parser (the line protocol's too); help and quit are local.
            match command::parse(&line, Dialect::Slash) {
                Ok(None) => {}
                Ok(Some(Request::Help)) => view.plain(HELP),
                Ok(Some(Request::Quit(Quit { reason }))) => {
                    return Ok(quit(&mut client, &mut view, reason)?)
                }
                Ok(Some(request)) => {
                    if let Err(e) = client.send(&request) {
                        view.plain(&format!("! not sent: {e}"));
                    }
                }
                Err(e) => view.plain(&format!("! {e}")),
            }
        }
    }
}

/// The `nickname` request for `nick`.
fn nickname(nick: &str) -> Request {
    Request::Nickname(SetNickname {
        nickname: nick.to_owned(),
    })
}

/// Sends `quit`, waits until everything queued is written and the server closed the
/// connection, prints what arrived meanwhile, and exits.
fn quit(
    client: &mut Client,
    view: &mut ChatView,
    reason: Option<String>,
) -> netlib::Result<ExitCode> {
    let _ = client.send(&Request::Quit(Quit { reason }));
    let closed = client.shutdown(QUIT_TIMEOUT)?;
    client.pump(view)?;
    if view.ending == Some(Ending::Failed) {
        return Ok(ExitCode::FAILURE);
    }
    if !closed {
        view.plain("! the server did not confirm in time; some lines may be lost");
        return Ok(ExitCode::FAILURE);
    }
    view.plain("* bye");
    Ok(ExitCode::SUCCESS)
}
