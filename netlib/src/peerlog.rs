//! Logging what peers cause, without letting one peer grow the log without bound: lines about a
//! peer's bad input or misbehaviour go through a process-wide gate of [`LINES_PER_SECOND`]; the
//! rest are counted and the count is reported by the next line that passes (and by the
//! server's periodic summary). User text in such lines is cut to [`SHOWN`] bytes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Peer-caused log lines allowed per second, process-wide.
pub(crate) const LINES_PER_SECOND: u64 = 20;
/// Bytes of a peer's payload shown in a log line.
pub(crate) const SHOWN: usize = 200;

static WINDOW: AtomicU64 = AtomicU64::new(0);
static USED: AtomicU64 = AtomicU64::new(0);
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
static TOTAL_SUPPRESSED: AtomicU64 = AtomicU64::new(0);

fn second() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs()
}

/// Whether a peer-caused line may be logged now; `Some(n)` with the number of lines suppressed
/// since the last one that passed.
pub(crate) fn gate() -> Option<u64> {
    let now = second();
    if WINDOW.swap(now, Ordering::Relaxed) != now {
        USED.store(0, Ordering::Relaxed);
    }
    if USED.fetch_add(1, Ordering::Relaxed) < LINES_PER_SECOND {
        Some(SUPPRESSED.swap(0, Ordering::Relaxed))
    } else {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        TOTAL_SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Peer-caused lines suppressed since the program started.
pub(crate) fn total_suppressed() -> u64 {
    TOTAL_SUPPRESSED.load(Ordering::Relaxed)
}

/// A peer's payload for a log line: lossy UTF-8, at most [`SHOWN`] bytes, `...` if cut.
pub(crate) fn shown(payload: &[u8]) -> String {
    let cut = &payload[..payload.len().min(SHOWN)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if payload.len() > SHOWN {
        s.push_str("...");
    }
    s
}

/// Logs at `level` through the gate: `peer_log!(log::Level::Warn, "...", args)`. With no logger
/// installed (`log`'s maximum level is `Off`), warnings and errors go to stderr instead, so
/// that what netlib drops is never silent.
macro_rules! peer_log {
    ($level:expr, $($arg:tt)+) => {
        if log::log_enabled!($level) || $crate::peerlog::no_logger($level) {
            if let Some(suppressed) = $crate::peerlog::gate() {
                $crate::peerlog::emit($level, format_args!($($arg)+), suppressed);
            }
        }
    };
}

/// Logs what netlib must not drop silently (a handler panic, data it cannot deliver): as
/// [`peer_log!`] without the gate: `report!(log::Level::Error, "...", args)`.
macro_rules! report {
    ($level:expr, $($arg:tt)+) => {
        $crate::peerlog::emit($level, format_args!($($arg)+), 0)
    };
}

/// Whether no logger is installed and `level` is a warning or an error: such lines go to
/// stderr.
pub(crate) fn no_logger(level: log::Level) -> bool {
    log::max_level() == log::LevelFilter::Off && level <= log::Level::Warn
}

/// Writes one line: to the logger, or to stderr with no logger installed (warnings and errors
/// only).
pub(crate) fn emit(level: log::Level, args: std::fmt::Arguments<'_>, suppressed: u64) {
    let more = if suppressed > 0 {
        format!(" ({suppressed} similar lines suppressed)")
    } else {
        String::new()
    };
    if no_logger(level) {
        eprintln!(
            "netlib: {}: {args}{more}",
            level.as_str().to_ascii_lowercase()
        );
    } else {
        log::log!(target: "netlib", level, "{args}{more}");
    }
}

pub(crate) use {peer_log, report};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_lets_a_few_lines_a_second_through_and_counts_the_rest() {
        let passed = (0..1000).filter(|_| gate().is_some()).count() as u64;
        assert!(passed <= 2 * LINES_PER_SECOND, "{passed} passed");
        assert!(total_suppressed() >= 1000 - 2 * LINES_PER_SECOND);
        assert_eq!(shown(&[b'a'; 300]).len(), SHOWN + 3);
    }
}
