//! Makes received text safe to print: another user must not be able to drive your terminal,
//! start a line of their own, or send a message with nothing to read in it.

/// What a line break in received text is shown as: one message is one line, so every line
/// break (see [`is_line_break`]) inside a text becomes this visible mark instead (a run of
/// them, such as `\r\n`, becomes one; a line break at the end of a text is dropped).
pub const LINE_BREAK_MARK: char = char::REPLACEMENT_CHARACTER;

/// Whether a terminal or a line-splitting reader may take `c` as the end of a line: LF, CR,
/// VT, FF, the information separators FS/GS/RS (Python's `splitlines` splits on them), C1
/// IND and NEL, and Unicode's LINE SEPARATOR and PARAGRAPH SEPARATOR (U+2028, U+2029).
pub fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{1c}'
            ..='\u{1e}' | '\u{84}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// Removes terminal escape sequences (CSI `ESC [ ... final`, OSC `ESC ] ... BEL|ESC \`, DCS/PM/
/// APC/SOS strings, and two-byte `ESC x`), C0 and C1 control characters (tab becomes a space)
/// and Unicode bidirectional overrides, which can reorder what is displayed. Line breaks
/// ([`is_line_break`], and the 7-bit `ESC D`/`ESC E`) inside the text become one
/// [`LINE_BREAK_MARK`] per run, so the text stays on one line and the reader sees where a
/// break was; trailing ones are dropped.
pub fn sanitize(text: &str) -> String {
    scrub(text, LINE_BREAK_MARK)
}

/// Whether `text` shows anything once [sanitized](sanitize): at least one character that is
/// not white space, a line break, a control, a default-ignorable code point (zero-width
/// spaces and joiners, U+2060, U+FEFF, bidi controls, variation selectors, Hangul fillers,
/// tags, ...), a noncharacter, a combining mark with nothing to sit on, or otherwise blank
/// (U+2800 BRAILLE PATTERN BLANK, the interlinear annotation and Egyptian format controls).
pub fn has_visible(text: &str) -> bool {
    scrub(text, ' ').chars().any(|c| !is_blank(c))
}

/// Whether `c` draws nothing of its own (see [`has_visible`]).
pub fn is_blank(c: char) -> bool {
    use unicode_normalization::char::is_combining_mark;
    c.is_whitespace()
        || c.is_control()
        || is_default_ignorable(c)
        || is_noncharacter(c)
        || is_combining_mark(c)
        || matches!(c, '\u{2800}' | '\u{fff9}'..='\u{fffb}' | '\u{13430}'..='\u{1343f}')
}

/// Unicode's `Default_Ignorable_Code_Point` (DerivedCoreProperties.txt, stable since 5.2):
/// characters a renderer shows as nothing when it does not support them.
pub fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{34f}'
            | '\u{61c}'
            | '\u{115f}'..='\u{1160}'
            | '\u{17b4}'..='\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff0}'..='\u{fff8}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e0fff}'
    )
}

/// Unicode's noncharacters: U+FDD0..U+FDEF and the last two code points of every plane.
fn is_noncharacter(c: char) -> bool {
    matches!(c, '\u{fdd0}'..='\u{fdef}') || (c as u32) & 0xfffe == 0xfffe
}

/// [`sanitize`] with line breaks shown as `mark`.
fn scrub(text: &str, mark: char) -> String {
    let mut out = String::with_capacity(text.len());
    // A line break was seen and not shown yet: shown before the next character kept, so that
    // breaks at the end are dropped and a run of them (e.g. `\r\n`) is one mark.
    let mut pending_break = false;
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
                // IND and NEL in their 7-bit form: line breaks.
                Some('D' | 'E') => pending_break = true,
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
            c if is_line_break(c) => pending_break = true,
            c if c.is_control() && c != '\t' => {}
            '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{61c}' => {}
            c => {
                if std::mem::take(&mut pending_break) {
                    out.push(mark);
                }
                out.push(if c == '\t' { ' ' } else { c });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{has_visible, sanitize};

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
        assert_eq!(sanitize("a\u{7}b\u{8}c\u{0}d\u{7f}e\u{80}f"), "abcdef");
        assert_eq!(sanitize("a\tb"), "a b");
        assert_eq!(sanitize("x\u{202e}gnp.exe"), "xgnp.exe");
        assert_eq!(sanitize("unterminated \u{1b}[31"), "unterminated ");
    }

    #[test]
    fn every_line_break_becomes_one_visible_mark_on_the_same_line() {
        for brk in [
            "\n",
            "\r",
            "\r\n",
            "\u{b}",
            "\u{c}",
            "\u{1c}",
            "\u{1d}",
            "\u{1e}",
            "\u{84}",
            "\u{85}",
            "\u{2028}",
            "\u{2029}",
            "\u{1b}E",
            "\u{1b}D",
            "\n\n\u{2028}",
        ] {
            assert_eq!(
                sanitize(&format!("hi{brk}[server] fake")),
                "hi\u{fffd}[server] fake",
                "{brk:?}"
            );
        }
        assert_eq!(
            sanitize("\u{2029}x"),
            "\u{fffd}x",
            "a leading break is shown"
        );
        assert_eq!(
            sanitize("evil text\r\n"),
            "evil text",
            "a trailing one is dropped"
        );
        assert_eq!(sanitize("a\n\u{1b}[0m\nb"), "a\u{fffd}b");
        assert!(!sanitize("a\u{2028}b\u{85}c\u{b}d\u{c}e\rf").contains(super::is_line_break));
    }

    #[test]
    fn only_text_with_something_to_see_is_visible() {
        for text in [
            "hi",
            "x\u{200b}",
            "\u{fffd}",
            "e\u{301}",
            "[\u{2028}]",
            "\u{5c0f}",
            "\u{1f600}",
        ] {
            assert!(has_visible(text), "{text:?}");
        }
        for text in [
            "",
            " \t\n",
            "\u{200b}\u{200c}\u{200d}\u{2060}\u{feff}",
            "\u{2028}\u{2029}\u{85}\u{b}\u{c}\r",
            "\u{a0}\u{3000}\u{2003}",
            "\u{202e}\u{2066}\u{200e}\u{61c}",
            "\u{301}\u{302}\u{20dd}",
            "\u{3164}\u{ffa0}\u{115f}\u{2800}",
            "\u{fe0f}\u{e0041}\u{ad}\u{34f}",
            "\u{1b}[31m\u{1b}]0;title\u{7}\u{7}",
            "\u{fdd0}\u{ffff}",
        ] {
            assert!(!has_visible(text), "{text:?}");
        }
    }
}
