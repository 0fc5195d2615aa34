//! `lagtime-client [HOST:PORT]`: echoes the server's pings; closes after ping 10.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use lagtime::{LagClient, LAST_PING};
use netlib::{Client, ClientConfig};

fn main() -> ExitCode {
    env_logger::init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| netlib::DEFAULT_ADDR.to_owned());
    let mut client = Client::connect(&addr, ClientConfig::default()).expect("poller");
    let mut l = LagClient::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !l.done && Instant::now() < deadline {
        client
            .pump_timeout(&mut l, Duration::from_millis(100))
            .expect("pump");
    }
    if l.pings.last() == Some(&LAST_PING) {
        ExitCode::SUCCESS
    } else {
        eprintln!("lagtime-client: got pings {:?}", l.pings);
        ExitCode::FAILURE
    }
}
