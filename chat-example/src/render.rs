//! What the terminal client ([`crate::client`]) and the line protocol ([`crate::text`]) print
//! alike for server messages: the phrases both use, which each front end decorates its own way
//! (chat-client with a time stamp and `* `, the line protocol with `[server] `). Every string
//! from the network goes through [`sanitize`] here, so a caller cannot forget it.

use crate::sanitize::sanitize;

/// Names (nicknames, rooms, actions), each sanitized, joined with `, `.
pub fn list<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| sanitize(n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// ` (page 2 of 3)` when a `who` or `rooms` reply has several pages, else nothing.
pub fn page_of(page: usize, pages: usize) -> String {
    if pages > 1 {
        format!(" (page {page} of {pages})")
    } else {
        String::new()
    }
}

/// `from is now known as to`.
pub fn renamed(from: &str, to: &str) -> String {
    format!("{} is now known as {}", sanitize(from), sanitize(to))
}

/// `nick left ROOM (reason)`, the room written after `sigil` (chat-client's `#`, or nothing).
pub fn left(nick: &str, sigil: &str, room: &str, reason: &str) -> String {
    format!(
        "{} left {sigil}{} ({})",
        sanitize(nick),
        sanitize(room),
        sanitize(reason)
    )
}

/// `kicked by op: reason`.
pub fn kicked_by(by: &str, reason: &str) -> String {
    format!("kicked by {}: {}", sanitize(by), sanitize(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_phrases_are_sanitized_and_on_one_line() {
        let brk = "a\u{2028}b\u{1b}[2J\nc";
        assert_eq!(list(&["x", brk]), "x, a\u{fffd}b\u{fffd}c");
        assert_eq!(list::<&str>(&[]), "");
        assert_eq!(page_of(1, 1), "");
        assert_eq!(page_of(2, 3), " (page 2 of 3)");
        assert_eq!(renamed(brk, "b"), "a\u{fffd}b\u{fffd}c is now known as b");
        assert_eq!(left("bob", "#", "games", "quit"), "bob left #games (quit)");
        assert_eq!(left(brk, "", brk, brk).matches('\u{fffd}').count(), 6);
        assert_eq!(kicked_by("op", brk), "kicked by op: a\u{fffd}b\u{fffd}c");
        for phrase in [
            list(&[brk]),
            renamed(brk, brk),
            left(brk, "", brk, brk),
            kicked_by(brk, brk),
        ] {
            assert!(
                !phrase.contains(crate::sanitize::is_line_break),
                "{phrase:?}"
            );
            assert!(!phrase.contains('\u{1b}'), "{phrase:?}");
        }
    }
}
