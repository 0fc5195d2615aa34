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

/// Logs at `level` through the gate: `peer_log!(log::Level::Warn, "...", args)`.
macro_rules! peer_log {
    ($level:expr, $($arg:tt)+) => {
        if log::log_enabled!($level) {
            if let Some(suppressed) = $crate::peerlog::gate() {
                if suppressed > 0 {
                    log::log!($level, "{} ({suppressed} similar lines suppressed)", format_args!($($arg)+));
                } else {
                    log::log!($level, $($arg)+);
                }
            }
        }
    };
}
pub(crate) use peer_log;

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
