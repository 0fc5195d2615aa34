//! The server processes the benchmarks start: pinned to CPU 0 (the generator runs on CPU 1),
//! their first lines of output read for the addresses they print, the rest drained; and
//! `room-relay`, netlib's rooms alone, which several benchmarks measure.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts `program args` on CPU 0 and returns it with its first `lines` lines of standard
/// output; the rest is read and dropped on a thread (a server that prints a line per
/// connection must not hit a closed pipe).
///
/// # Panics
/// If it cannot start or prints fewer lines.
pub fn start_pinned(
    name: &str,
    program: &Path,
    args: &[&str],
    lines: usize,
) -> (Child, Vec<String>) {
    let mut child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut read = Vec::with_capacity(lines);
    for _ in 0..lines {
        let mut line = String::new();
        out.read_line(&mut line)
            .unwrap_or_else(|e| panic!("{name}'s output: {e}"));
        read.push(line.trim().to_owned());
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (child, read)
}

/// The address a line ends with (`... listening on ADDR`).
///
/// # Panics
/// If the line does not end with one.
pub fn addr_at_end(name: &str, line: &str) -> SocketAddr {
    line.rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{name}: {line:?}"))
}

/// The median of `v` (the upper one of an even count).
///
/// # Panics
/// If `v` is empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A `room-relay` process (`target/release/room-relay`, or another build's), stopped when
/// dropped.
#[derive(Debug)]
pub struct RoomRelay {
    /// The process.
    pub child: Child,
    /// Where clients connect.
    pub addr: SocketAddr,
    /// Its metrics' address, when started with `--metrics`.
    pub admin: Option<SocketAddr>,
}

impl RoomRelay {
    /// Starts `program` (a `room-relay`) on `127.0.0.1:0` with `args` (`--metrics ADDR`,
    /// `--tls-cert PATH --tls-key PATH`, `--sessions`).
    ///
    /// # Panics
    /// If it cannot start or does not print its addresses.
    pub fn start(program: &Path, args: &[&str]) -> Self {
        let metrics = args.contains(&"--metrics");
        let mut all = vec!["127.0.0.1:0"];
        all.extend_from_slice(args);
        let (child, lines) = start_pinned("room-relay", program, &all, 1 + usize::from(metrics));
        RoomRelay {
            child,
            addr: addr_at_end("room-relay", &lines[0]),
            admin: metrics.then(|| addr_at_end("room-relay", &lines[1])),
        }
    }

    /// This workspace's release build of `room-relay`.
    pub fn program() -> std::path::PathBuf {
        netlib_tests::target_dir().join("release/room-relay")
    }
}

impl Drop for RoomRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
