//! `hello-client [HOST:PORT] [NAME]`: says hello, prints the server's welcome, exits.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use hello::Visitor;
use netlib::{Client, ClientConfig};

fn main() -> ExitCode {
    env_logger::init();
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .unwrap_or_else(|| netlib::DEFAULT_ADDR.to_owned());
    let name = args.next().unwrap_or_else(|| "world".to_owned());
    let mut client = Client::connect(&addr, ClientConfig::default()).expect("poller");
    let mut visitor = Visitor {
        name,
        welcome: None,
        error: None,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    // A game would call pump() once per frame; this program has nothing else to do, so it waits
    // in the poller between pumps.
    while visitor.welcome.is_none() && visitor.error.is_none() && Instant::now() < deadline {
        client
            .pump_timeout(&mut visitor, Duration::from_millis(100))
            .expect("pump");
    }
    match (visitor.welcome, visitor.error) {
        (Some(w), _) => {
            println!("{} (guest number {})", w.text, w.guests);
            let _ = client.shutdown(Duration::from_secs(2));
            ExitCode::SUCCESS
        }
        (None, Some((errno, text))) => {
            eprintln!("hello-client: cannot connect to {addr}: {text} (errno {errno})");
            ExitCode::FAILURE
        }
        (None, None) => {
            eprintln!("hello-client: no welcome from {addr} within 10 s");
            ExitCode::FAILURE
        }
    }
}
