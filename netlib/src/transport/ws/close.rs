//! Close codes (RFC 6455 §7.4): the status this side puts in its Close frame for each
//! [`CloseReason`], which codes may be sent or received, and the [`CloseReason`] a peer's
//! Close frame, a protocol violation or a vanished peer is reported as. Codes are
//! `tungstenite`'s [`CloseCode`]; the frames that carry them are built elsewhere
//! ([`frame`](super::frame) on the server side, `tungstenite` on the client side).
//!
//! Why not `tungstenite`'s [`CloseCode::is_allowed`] for the checks: it refuses 1014 (Bad
//! Gateway, registered with IANA after RFC 6455) and lets 1010 through, which only a client
//! may send (§7.4.1). [`receivable`] and [`sendable`] spell out the ranges instead.

use tungstenite::protocol::frame::coding::CloseCode;

use crate::error::CloseReason;

/// Longest close reason text, in bytes: a Close frame's payload is at most 125 bytes (§5.5),
/// two of them the code.
pub(crate) const MAX_CLOSE_REASON: usize = 123;

/// `text` cut to at most [`MAX_CLOSE_REASON`] bytes, on a character boundary.
pub(crate) fn fit_reason(text: &str) -> &str {
    let mut end = text.len().min(MAX_CLOSE_REASON);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The Close frame this side sends when it closes for `reason` (§7.4.1): 1000 for a normal
/// close, 1001 on shutdown, 1008 (policy) for the limits and timeouts, 1009 for size, 1011
/// for an internal error; a peer's or a violation's own code when it may be sent, else 1000.
pub(crate) fn close_status(reason: &CloseReason) -> (CloseCode, String) {
    match reason {
        CloseReason::PeerClosed | CloseReason::Local | CloseReason::Moved { .. } => {
            (CloseCode::Normal, String::new())
        }
        CloseReason::Shutdown => (CloseCode::Away, reason.to_string()),
        CloseReason::FrameTooLarge { .. } => (CloseCode::Size, reason.to_string()),
        CloseReason::OutboundOverflow { .. }
        | CloseReason::ServerFull
        | CloseReason::Timeout
        | CloseReason::Idle
        | CloseReason::FrameTimeout
        | CloseReason::MemoryBudget => (CloseCode::Policy, reason.to_string()),
        CloseReason::HandlerPanic(_) | CloseReason::Io { .. } => {
            (CloseCode::Error, "internal error".to_owned())
        }
        // Only codes an endpoint may send (§7.4.1: never 1005, 1006 or 1015; 1010 is a
        // client's).
        CloseReason::WebSocket { code, reason, .. } if sendable(*code) => {
            (CloseCode::from(*code), reason.clone())
        }
        CloseReason::WebSocket { .. } => (CloseCode::Normal, String::new()),
    }
}

/// Whether a server may put `code` in a Close frame (§7.4.1, §7.4.2; 1012 to 1014 as
/// registered with IANA since): 1000 to 1003, 1007 to 1009, 1011 to 1014, 3000 to 4999.
pub(crate) fn sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1009 | 1011..=1014 | 3000..=4999)
}

/// Whether a Close frame received from a client may carry `code` (§7.4.1, §7.4.2): as
/// [`sendable`], and 1010 (a client's: an extension the server did not negotiate).
pub(crate) fn receivable(code: u16) -> bool {
    code == 1010 || sendable(code)
}

/// What a peer's Close frame reports: [`CloseReason::PeerClosed`] for 1000, 1001 or no code
/// (`None`; 1005 on the wire, §7.1.5), else [`CloseReason::WebSocket`] with `remote: true`.
pub(crate) fn peer_closed(status: Option<(u16, String)>) -> CloseReason {
    match status {
        None | Some((1000 | 1001 | 1005, _)) => CloseReason::PeerClosed,
        Some((code, reason)) => CloseReason::WebSocket {
            code,
            reason,
            remote: true,
        },
    }
}

/// Why this side closed a WebSocket whose peer broke the protocol: code `code`, said in its
/// Close frame with `reason`. A message over the size limit is
/// [`CloseReason::FrameTooLarge`] instead (see [`too_large`]).
pub(crate) fn violated(code: CloseCode, reason: &str) -> CloseReason {
    CloseReason::WebSocket {
        code: code.into(),
        reason: reason.to_owned(),
        remote: false,
    }
}

/// A message over the size limit of `limit` bytes (closed with 1009, §7.4.1).
pub(crate) fn too_large(limit: usize) -> CloseReason {
    CloseReason::FrameTooLarge { limit }
}

/// A peer gone without a Close frame: 1006 (§7.1.5), reported, never sent.
pub(crate) fn abnormal() -> CloseReason {
    CloseReason::WebSocket {
        code: CloseCode::Abnormal.into(),
        reason: "closed without a Close frame".into(),
        remote: true,
    }
}

/// Whether a WebSocket's input ended, and why (the first reason known wins): what
/// [`Transport::close_reason`](crate::transport::Transport::close_reason) reports.
#[derive(Debug, Default)]
pub(crate) struct Ending {
    /// Why the WebSocket ended, once known.
    pub(crate) reason: Option<CloseReason>,
    /// Input ended: `read` reports end-of-stream once what was received is read, once.
    pub(crate) eof: bool,
}

impl Ending {
    /// Input ended, for `reason` if given.
    pub(crate) fn end(&mut self, reason: Option<CloseReason>) {
        if let Some(r) = reason {
            self.note(r);
        }
        self.eof = true;
    }

    /// Notes why the WebSocket ended, unless a reason is known already.
    pub(crate) fn note(&mut self, reason: CloseReason) {
        self.reason.get_or_insert(reason);
    }

    /// Whether end-of-stream is to be reported now; reported once, so that what arrives later
    /// (the answer to a Close) is read on.
    pub(crate) fn report(&mut self) -> bool {
        std::mem::take(&mut self.eof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_follow_the_reason() {
        let code = |r: CloseReason| u16::from(close_status(&r).0);
        assert_eq!(code(CloseReason::Local), 1000);
        assert_eq!(code(CloseReason::Shutdown), 1001);
        assert_eq!(code(CloseReason::FrameTooLarge { limit: 1 }), 1009);
        assert_eq!(code(CloseReason::OutboundOverflow { limit: 1 }), 1008);
        assert_eq!(code(CloseReason::Timeout), 1008);
        assert_eq!(code(CloseReason::FrameTimeout), 1008);
        assert_eq!(code(CloseReason::HandlerPanic("x".into())), 1011);
        let ws = |code| CloseReason::WebSocket {
            code,
            reason: String::new(),
            remote: true,
        };
        assert_eq!(code(ws(1006)), 1000, "1006 is never sent");
        assert_eq!(code(ws(1010)), 1000, "a client's code");
        assert_eq!(code(ws(1014)), 1014);
        assert_eq!(code(ws(4001)), 4001);
    }

    #[test]
    fn codes_a_peer_may_send_and_how_they_are_reported() {
        for ok in [1000, 1003, 1007, 1010, 1014, 3000, 4999] {
            assert!(receivable(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(!receivable(bad), "{bad}");
        }
        assert_eq!(peer_closed(None), CloseReason::PeerClosed);
        assert_eq!(
            peer_closed(Some((1001, "x".into()))),
            CloseReason::PeerClosed
        );
        assert_eq!(
            peer_closed(Some((4000, "bye".into()))),
            CloseReason::WebSocket {
                code: 4000,
                reason: "bye".into(),
                remote: true
            }
        );
    }

    #[test]
    fn a_reason_is_cut_to_fit_on_a_character_boundary() {
        let long = "é".repeat(100);
        let cut = fit_reason(&long);
        assert!(cut.len() <= MAX_CLOSE_REASON && cut.len() >= MAX_CLOSE_REASON - 1);
        assert_eq!(fit_reason("short"), "short");
    }
}
