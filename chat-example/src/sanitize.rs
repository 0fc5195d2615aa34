//! Makes received text safe to print: another user must not be able to drive your terminal.

/// Removes terminal escape sequences (CSI `ESC [ ... final`, OSC `ESC ] ... BEL|ESC \`, DCS/PM/
/// APC/SOS strings, and two-byte `ESC x`), C0 and C1 control characters (tab becomes a space;
/// newlines are removed too, since one message is one line) and Unicode bidirectional
/// overrides, which can reorder what is displayed.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates, then one final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC, DCS, SOS, PM, APC: up to BEL or ST (ESC \).
                Some(']' | 'P' | 'X' | '^' | '_') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || c == '\u{9c}' {
                            break;
                        }
                        if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                // Any other escape: drop ESC and the next character.
                _ => {}
            },
            // C1 CSI/OSC introducers: drop up to a final byte or terminator conservatively.
            '\u{9b}' => {
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
            '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => {
                for c in chars.by_ref() {
                    if c == '\u{7}' || c == '\u{9c}' {
                        break;
                    }
                }
            }
            '\t' => out.push(' '),
            c if c.is_control() => {}
            '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{61c}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn plain_text_is_kept() {
        assert_eq!(sanitize("héllo wörld ✓ 😀 [1] ~"), "héllo wörld ✓ 😀 [1] ~");
    }

    #[test]
    fn escape_sequences_are_removed_whole() {
        assert_eq!(sanitize("\u{1b}[31mred\u{1b}[0m"), "red");
        assert_eq!(sanitize("a\u{1b}[2J\u{1b}[Hb"), "ab");
        assert_eq!(sanitize("\u{1b}]0;evil title\u{7}x"), "x");
        assert_eq!(
            sanitize("\u{1b}]8;;http://e\u{1b}\\link\u{1b}]8;;\u{1b}\\"),
            "link"
        );
        assert_eq!(sanitize("\u{1b}Pq#0;2\u{1b}\\y"), "y");
        assert_eq!(sanitize("\u{1b}cz"), "z", "RIS reset");
        assert_eq!(sanitize("\u{9b}31mq"), "q", "C1 CSI");
    }

    #[test]
    fn controls_and_bidi_overrides_are_removed() {
        assert_eq!(sanitize("a\rb\nc\u{7}d\u{8}e\u{0}f\u{7f}g"), "abcdefg");
        assert_eq!(sanitize("a\tb"), "a b");
        assert_eq!(sanitize("x\u{202e}gnp.exe"), "xgnp.exe");
        assert_eq!(sanitize("unterminated \u{1b}[31"), "unterminated ");
    }
}
