//! The chat protocol: every action, its payload, and the rules the server enforces.
//!
//! Client to server: `nickname`, `message`, `private`, `who`, `join`, `part`, `rooms`, `op`,
//! `kick`, `quit`, `help`. Server to client: `message`, `private`, `players`, `members`,
//! `joined`, `left`, `renamed`, `welcome`, `who`, `rooms`, `op`, `kicked`, `help`, `refused`. The first two of
//! each list and `players` are PodSixNet's chat example, unchanged.

use std::borrow::Cow;

use netlib::ChannelId;
use serde::{Deserialize, Serialize};

use crate::sanitize::has_visible;

/// The room everyone starts in.
pub const DEFAULT_ROOM: &str = "lobby";
/// The nickname of a user who has not set one (as in PodSixNet's example). It cannot be claimed.
pub const ANONYMOUS: &str = "anonymous";
/// Nicknames nobody can take (compared in lower case): [`ANONYMOUS`], and `server` and `you`,
/// which the line protocol's `[server] ...` and `[you -> nick] ...` lines use (the brackets and
/// arrows of those lines are refused in every name: see [`framing_char`]).
pub const RESERVED_NICKNAMES: &[&str] = &[ANONYMOUS, "server", "you"];
/// Longest chat message, in characters (Unicode scalar values).
pub const MAX_MESSAGE_CHARS: usize = 2000;
/// Longest nickname or room name, in characters.
pub const MAX_NAME_CHARS: usize = 32;
/// Rooms up to this many members get PodSixNet's full `players` list after every change
/// (coalesced to one per room per pump) and one `joined`/`left`/`renamed` notice per change.
pub const DEFAULT_FULL_LIST_MAX: usize = 50;
/// Rooms above [`DEFAULT_FULL_LIST_MAX`] and up to this many members get one compact `members`
/// delta per room per pump instead; larger rooms get no membership traffic (ask with `who`).
pub const DEFAULT_NOTICE_MAX: usize = 1000;

/// How much membership traffic a room gets, by its size: the one place the room-size policy
/// lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomPolicy {
    /// Rooms up to this size get full `players` lists and per-change notices.
    pub full_list_max: usize,
    /// Rooms up to this size (and above `full_list_max`) get `members` deltas; larger ones none.
    pub notice_max: usize,
}

/// What [`RoomPolicy::tier`] decides for a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// PodSixNet's behaviour: a `players` list (one per pump) and a notice per change.
    FullList,
    /// One `members` delta per pump.
    Deltas,
    /// Nothing; ask with `who`.
    Quiet,
}

impl Default for RoomPolicy {
    fn default() -> Self {
        RoomPolicy {
            full_list_max: DEFAULT_FULL_LIST_MAX,
            notice_max: DEFAULT_NOTICE_MAX,
        }
    }
}

impl RoomPolicy {
    /// The traffic a room of `size` members gets.
    pub fn tier(&self, size: usize) -> Tier {
        if size <= self.full_list_max {
            Tier::FullList
        } else if size <= self.notice_max {
            Tier::Deltas
        } else {
            Tier::Quiet
        }
    }
}

/// Milliseconds since the Unix epoch, the `time` of every relayed message.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// ---------------------------------------------------------------- client to server

/// `{"action": "nickname", "nickname": S}`: set or change your nickname (PodSixNet's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetNickname {
    /// The new nickname.
    pub nickname: String,
}

/// `{"action": "message", "message": S}`: say something to your room (PodSixNet's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Say {
    /// The text; 1 to 2000 characters.
    pub message: String,
}

/// `{"action": "private", "to": NICK, "message": S}`: a message only `to` (and you) see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SayPrivately {
    /// The recipient's nickname (case-insensitive).
    pub to: String,
    /// The text; 1 to 2000 characters.
    pub message: String,
}

/// `{"action": "who"}` or `{"action": "who", "room": R}`: list users (all, or one room's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Who {
    /// Only this room's members, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// Which page of [`PAGE_SIZE`] entries, from 1 (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<usize>,
}

/// `{"action": "rooms"}` or `{"action": "rooms", "page": N}`: list the rooms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rooms {
    /// Which page of [`PAGE_SIZE`] entries, from 1 (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<usize>,
}

/// Most entries in one `who` or `rooms` reply; the rest are on later pages.
pub const PAGE_SIZE: usize = 500;

/// `{"action": "join", "room": R}`: leave your room and enter `room` (made if new).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    /// The room's name.
    pub room: String,
}

/// `{"action": "quit"}` or `{"action": "quit", "reason": S}`: leave; the others see the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quit {
    /// Why, shown to the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `{"action": "op", "password": S}`: become an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The operator password the server was started with.
    pub password: String,
}

/// `{"action": "kick", "nickname": NICK, "reason": S}`: disconnect a user (operators only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kick {
    /// Who to kick.
    pub nickname: String,
    /// Why, shown to them and to their room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Every request a client sends, tagged by its action: what the terminal client, the tests and
/// any Rust bot build and send (`client.send(&Request::Part)`), and what the server's handlers
/// take apart (each handler takes the variant's payload type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Request {
    /// `nickname`.
    Nickname(SetNickname),
    /// `message`.
    Message(Say),
    /// `private`.
    Private(SayPrivately),
    /// `who`.
    Who(Who),
    /// `join`.
    Join(Join),
    /// `{"action": "part"}`: back to the default room.
    Part,
    /// `rooms`.
    Rooms(Rooms),
    /// `op`.
    Op(Op),
    /// `kick`.
    Kick(Kick),
    /// `quit`.
    Quit(Quit),
    /// `{"action": "help"}`: the list of actions.
    Help,
}

// ---------------------------------------------------------------- server to client

/// One user in a `who` reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WhoEntry {
    /// The nickname.
    pub nickname: String,
    /// The room they are in.
    pub room: String,
}

/// One room in a `rooms` reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoomEntry {
    /// The room's name.
    pub name: String,
    /// How many users are in it.
    pub members: usize,
}

/// Everything the server sends. Serialized with `"action"` as the tag, e.g.
/// `{"action": "message", "message": "hi", "who": "alice", "room": "lobby", "time": 1700000000000}`.
/// `time` is always the server's clock in milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ServerMsg<'a> {
    /// A room message (PodSixNet's, plus `room` and `time`). `who` is the sender's nickname as
    /// the server knows it.
    Message {
        /// The text.
        message: Cow<'a, str>,
        /// The sender.
        who: Cow<'a, str>,
        /// The room it was said in.
        room: Cow<'a, str>,
        /// Server time (ms).
        time: u64,
    },
    /// A private message, sent to the recipient and echoed to the sender.
    Private {
        /// The text.
        message: Cow<'a, str>,
        /// The sender.
        who: Cow<'a, str>,
        /// The recipient.
        to: Cow<'a, str>,
        /// Server time (ms).
        time: u64,
        /// True on the copy sent back to the sender (absent, i.e. false, on the recipient's).
        #[serde(default, skip_serializing_if = "is_false")]
        echo: bool,
    },
    /// The full member list of your room (PodSixNet's, plus `room`), sorted by nickname.
    Players {
        /// Nicknames.
        players: Vec<Cow<'a, str>>,
        /// The room (PodSixNet's own server sends none).
        #[serde(default)]
        room: Cow<'a, str>,
    },
    /// Membership changes of a large room since the last update, sent at most once per pump.
    Members {
        /// The room.
        room: Cow<'a, str>,
        /// Members now.
        count: usize,
        /// Nicknames that joined.
        joined: Vec<String>,
        /// Nicknames that left.
        left: Vec<String>,
        /// `[old, new]` nickname pairs.
        renamed: Vec<(String, String)>,
        /// Server time (ms).
        time: u64,
    },
    /// Someone entered your room.
    Joined {
        /// Their nickname.
        nickname: Cow<'a, str>,
        /// Their channel id (a client knows its own from `welcome`).
        id: ChannelId,
        /// The room.
        room: Cow<'a, str>,
        /// Server time (ms).
        time: u64,
    },
    /// Someone left your room (quit, disconnected, kicked or went to another room).
    Left {
        /// Their nickname.
        nickname: Cow<'a, str>,
        /// Their channel id.
        id: ChannelId,
        /// The room.
        room: Cow<'a, str>,
        /// Why.
        reason: Cow<'a, str>,
        /// Server time (ms).
        time: u64,
    },
    /// Someone in your room (or you) changed nickname.
    Renamed {
        /// The old nickname.
        from: Cow<'a, str>,
        /// Whose nickname it is: a client compares it with its own id, never nicknames (two
        /// users may both be `anonymous`).
        id: ChannelId,
        /// The new nickname.
        to: Cow<'a, str>,
        /// The room.
        room: Cow<'a, str>,
        /// Server time (ms).
        time: u64,
    },
    /// You are in `room` now, as `nickname`.
    Welcome {
        /// Your nickname.
        nickname: Cow<'a, str>,
        /// Your channel id, as in the `connected` message.
        id: ChannelId,
        /// The room.
        room: Cow<'a, str>,
        /// Members of the room, you included.
        members: usize,
        /// Server time (ms).
        time: u64,
    },
    /// Reply to `who`, sorted by nickname: one page of at most [`PAGE_SIZE`] users.
    Who {
        /// The users on this page.
        users: Vec<WhoEntry>,
        /// The room asked about, if any.
        #[serde(default)]
        room: Option<Cow<'a, str>>,
        /// This page, from 1.
        #[serde(default)]
        page: usize,
        /// How many pages there are.
        #[serde(default)]
        pages: usize,
        /// How many users there are on all pages.
        #[serde(default)]
        total: usize,
    },
    /// Reply to `rooms`, sorted by name: one page of at most [`PAGE_SIZE`] rooms.
    Rooms {
        /// The rooms on this page.
        rooms: Vec<RoomEntry>,
        /// This page, from 1.
        #[serde(default)]
        page: usize,
        /// How many pages there are.
        #[serde(default)]
        pages: usize,
        /// How many rooms there are on all pages.
        #[serde(default)]
        total: usize,
    },
    /// You are an operator now.
    Op {
        /// Always true (a wrong password is refused).
        granted: bool,
    },
    /// You were kicked; the server closes the connection after this.
    Kicked {
        /// The operator.
        by: Cow<'a, str>,
        /// Why.
        reason: Cow<'a, str>,
        /// Server time (ms).
        time: u64,
    },
    /// Reply to `help`: every action a client may send.
    Help {
        /// The action names.
        actions: Vec<Cow<'a, str>>,
    },
    /// A request was refused; nothing was relayed and the connection stays usable.
    Refused {
        /// The action that was refused (empty when the frame was not a message at all).
        request: Cow<'a, str>,
        /// A stable code, e.g. `nickname-taken` (see the crate README for the list).
        code: Cow<'a, str>,
        /// A human-readable explanation.
        text: Cow<'a, str>,
    },
}

/// Why a request is refused: a stable code and a text for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// e.g. `nickname-taken`.
    pub code: &'static str,
    /// e.g. `nickname "bob" is taken`.
    pub text: String,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// Every action a client may send, for `help` replies.
pub const ACTIONS: &[&str] = &[
    "nickname", "message", "private", "who", "join", "part", "rooms", "op", "kick", "quit", "help",
];

/// A borrowed string for a [`ServerMsg`] field.
pub fn c(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

impl Refusal {
    /// A refusal with `code` and `text`.
    pub fn new(code: &'static str, text: impl Into<String>) -> Self {
        Refusal {
            code,
            text: text.into(),
        }
    }
}

/// Checks a message text (room or private): 1 to [`MAX_MESSAGE_CHARS`] characters, with
/// something visible in it ([`has_visible`]): a text of only white space, line breaks,
/// zero-width, bidi, control or other invisible characters (or lone combining marks, or escape
/// sequences) would show as an empty line, so it is refused like an empty one.
///
/// # Errors
/// `empty-message` or `message-too-long`.
pub fn check_message(text: &str) -> Result<(), Refusal> {
    if text.trim().is_empty() {
        return Err(Refusal::new("empty-message", "the message is empty"));
    }
    let n = text.chars().count();
    if n > MAX_MESSAGE_CHARS {
        return Err(Refusal::new(
            "message-too-long",
            format!("the message is {n} characters long; the limit is {MAX_MESSAGE_CHARS}"),
        ));
    }
    if !has_visible(text) {
        return Err(Refusal::new(
            "empty-message",
            "the message has nothing visible in it (only spaces, line breaks, zero-width, \
             control or other invisible characters)",
        ));
    }
    Ok(())
}

/// The characters the chat's renderers frame a line with, so that a reader can tell who said
/// what: `[nick] text`, `[nick -> you] text` and `[server] ...` on the line protocol
/// ([`crate::text`]), `<nick> text` and `*nick* -> nick: text` in the terminal client. No name
/// may hold one (`->`, `<-` and `=>` are refused for their `<` or `>`).
pub const FRAMING_CHARS: &[char] = &['[', ']', '<', '>'];

/// The first character of `name` that could pass for part of a line's frame, if any: one of
/// [`FRAMING_CHARS`], an arrow or a bracket of any kind (the Unicode arrow blocks, `⟦`, `【`,
/// `«`, ...), or a character that NFKC or the UTS #39 confusable skeleton turns into one of
/// those (fullwidth `［`, small `﹤`, the Canadian syllabics `ᐸ` and `ᐳ`, the runic `ᚲ`).
/// Most of these are refused by PRECIS anyway; the ASCII ones, their fullwidth forms (which
/// PRECIS maps to ASCII) and the letter look-alikes are not.
pub fn framing_char(name: &str) -> Option<char> {
    use unicode_normalization::UnicodeNormalization;
    use unicode_security::confusable_detection::skeleton;
    let frames = |c: char| FRAMING_CHARS.contains(&c) || is_arrow_or_bracket(c);
    name.chars().find(|&c| {
        if frames(c) {
            return true;
        }
        if c.is_ascii() {
            return false;
        }
        let nfkc: String = std::iter::once(c).nfkc().collect();
        nfkc.chars().any(frames) || skeleton(&nfkc).any(frames)
    })
}

/// Arrows and brackets outside ASCII: the arrow blocks (Arrows, Supplemental Arrows-A, -B and
/// -C, the arrows of Dingbats, Miscellaneous Symbols and Arrows and Halfwidth Forms) and the
/// open/close brackets and angle quotation marks of Latin-1, General Punctuation,
/// Miscellaneous Technical, Dingbats, the mathematical symbol blocks, Supplemental
/// Punctuation, CJK Symbols and the small, vertical, fullwidth and halfwidth forms.
fn is_arrow_or_bracket(c: char) -> bool {
    matches!(
        c,
        '\u{ab}'
            | '\u{bb}'
            | '\u{2039}'..='\u{203a}'
            | '\u{2045}'..='\u{2046}'
            | '\u{2190}'..='\u{21ff}'
            | '\u{2308}'..='\u{230b}'
            | '\u{2329}'..='\u{232a}'
            | '\u{239b}'..='\u{23b3}'
            | '\u{2768}'..='\u{2775}'
            | '\u{2794}'..='\u{27bf}'
            | '\u{27c5}'..='\u{27c6}'
            | '\u{27e6}'..='\u{27ff}'
            | '\u{2900}'..='\u{297f}'
            | '\u{2983}'..='\u{2998}'
            | '\u{29d8}'..='\u{29db}'
            | '\u{29fc}'..='\u{29fd}'
            | '\u{2b00}'..='\u{2b11}'
            | '\u{2b30}'..='\u{2b4f}'
            | '\u{2b5a}'..='\u{2bb9}'
            | '\u{2e02}'..='\u{2e05}'
            | '\u{2e09}'..='\u{2e0a}'
            | '\u{2e0c}'..='\u{2e0d}'
            | '\u{2e1c}'..='\u{2e1d}'
            | '\u{2e20}'..='\u{2e29}'
            | '\u{2e55}'..='\u{2e5c}'
            | '\u{3008}'..='\u{3011}'
            | '\u{3014}'..='\u{301b}'
            | '\u{fe35}'..='\u{fe44}'
            | '\u{fe47}'..='\u{fe48}'
            | '\u{fe59}'..='\u{fe5e}'
            | '\u{fe64}'..='\u{fe65}'
            | '\u{ff1c}'
            | '\u{ff1e}'
            | '\u{ff3b}'
            | '\u{ff3d}'
            | '\u{ff5f}'..='\u{ff60}'
            | '\u{ff62}'..='\u{ff63}'
            | '\u{ffe9}'..='\u{ffec}'
            | '\u{1f800}'..='\u{1f8ff}'
    )
}

/// Checks a nickname or room name and returns it in its canonical form. One Unicode policy for
/// both, from well-kept libraries rather than hand-written tables:
///
/// - 1 to [`MAX_NAME_CHARS`] characters;
/// - the PRECIS `UsernameCasePreserved` profile (RFC 8265 §3.3, via `precis-profiles`): letters
///   and digits of any script plus ASCII punctuation; no spaces, controls, zero-width, bidi,
///   format or compatibility characters (`𝐚𝐥𝐢𝐜𝐞`, U+200B, U+200E, U+2066, U+061C, U+3164 are
///   refused); fullwidth letters are mapped to their ASCII forms (`ａｌｉｃｅ` becomes `alice`);
/// - letters from one script only (UTS #39 via `unicode-security`), so `аlice` with a Cyrillic
///   `а` is refused;
/// - nothing that frames the chat's lines ([`framing_char`]): `[server`, `alice->you`, `you]`,
///   `［x］`, `a→b`, `ᐸxᐳ` are refused, so no name can make a line look like another's.
///
/// Uniqueness is decided by [`name_key`]. `what` is `"nickname"` or `"room name"`, for the text.
///
/// # Errors
/// `empty-name`, `name-too-long` or `bad-name`.
pub fn check_name(what: &str, name: &str) -> Result<String, Refusal> {
    use precis_core::profile::Profile;
    use unicode_security::MixedScript;

    if name.is_empty() {
        return Err(Refusal::new("empty-name", format!("the {what} is empty")));
    }
    let n = name.chars().count();
    if n > MAX_NAME_CHARS {
        return Err(Refusal::new(
            "name-too-long",
            format!("the {what} is {n} characters long; the limit is {MAX_NAME_CHARS}"),
        ));
    }
    let shown: String = name.chars().flat_map(char::escape_debug).collect();
    let bad = |why: &str| {
        Refusal::new(
            "bad-name",
            format!("the {what} \"{shown}\" {why}; names are letters and digits of one script, and ASCII punctuation but [ ] < >"),
        )
    };
    if let Some(c) = framing_char(name) {
        return Err(bad(&format!(
            "holds {c:?} (U+{:04X}), which is not allowed: brackets and arrows frame the chat's lines ([nick] text, [nick -> you] text, <nick> text)",
            c as u32
        )));
    }
    let canonical = match precis_profiles::UsernameCasePreserved::new().enforce(name) {
        Ok(c) => c.into_owned(),
        Err(precis_core::Error::BadCodepoint(cp)) => {
            let c = char::from_u32(cp.cp).unwrap_or(char::REPLACEMENT_CHARACTER);
            return Err(bad(&format!("holds {:?} (U+{:04X})", c, cp.cp)));
        }
        Err(_) => return Err(bad("is not allowed")),
    };
    if !canonical.as_str().is_single_script() {
        return Err(bad("mixes scripts"));
    }
    Ok(canonical)
}

/// The keys that decide whether two names are the same, from the UTS #39 confusable skeleton
/// of the name's NFKC form: the skeleton of the lower-cased name (`ALICE` meets `alice`), and
/// the lower-cased skeleton (`aIice` with a capital `I` meets `alice`). Two names are the same
/// when any key of one equals any key of the other; the first key finds a user by name.
pub fn name_keys(name: &str) -> [String; 2] {
    use unicode_normalization::UnicodeNormalization;
    use unicode_security::confusable_detection::skeleton;
    let nfkc: String = name.nfkc().collect();
    let folded_first: String = skeleton(&nfkc.to_lowercase()).collect();
    let skeleton_first = skeleton(&nfkc).collect::<String>().to_lowercase();
    [folded_first, skeleton_first]
}

/// The first of [`name_keys`]: what a user is looked up by.
pub fn name_key(name: &str) -> String {
    let [key, _] = name_keys(name);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_rules() {
        assert!(check_message("hi").is_ok());
        assert_eq!(check_message("").unwrap_err().code, "empty-message");
        assert_eq!(check_message("  \n").unwrap_err().code, "empty-message");
        assert!(
            check_message(&"é".repeat(2000)).is_ok(),
            "characters, not bytes"
        );
        assert_eq!(
            check_message(&"x".repeat(2001)).unwrap_err().code,
            "message-too-long"
        );
    }

    #[test]
    fn names_cannot_impersonate() {
        let alice = name_key(&check_name("nickname", "alice").unwrap());
        assert_eq!(name_keys("alice"), [alice.clone(), alice.clone()]);
        assert!(name_keys("aIice").contains(&alice), "capital I for l");
        // Refused outright: invisible, bidi, format, compatibility and filler characters.
        for evil in [
            "alice\u{200e}",
            "alice\u{2066}",
            "alice\u{61c}",
            "al\u{200b}ice",
            "\u{200b}\u{200b}",
            "\u{3164}",
            "\u{1d41a}\u{1d425}\u{1d422}\u{1d41c}\u{1d41e}",
            "\u{430}lice",
        ] {
            assert_eq!(
                check_name("nickname", evil).map_err(|r| r.code),
                Err("bad-name"),
                "{evil:?}"
            );
        }
        // Mapped to the same name, hence taken while alice is online.
        let wide = check_name("nickname", "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}").unwrap();
        assert_eq!(wide, "alice");
        assert_eq!(name_key("ALICE"), alice);
        // Confusable in one script: the same key.
        assert_eq!(
            name_key("\u{430}\u{43e}"),
            name_key("ao"),
            "Cyrillic look-alikes"
        );
        // Other scripts are welcome.
        assert!(check_name("nickname", "\u{5c0f}\u{660e}").is_ok());
        assert!(check_name("nickname", "J\u{fc}rgen").is_ok());
    }

    #[test]
    fn messages_with_nothing_visible_are_empty() {
        for text in [
            "\u{200b}",
            "\u{200b}\u{200c}\u{200d}\u{2060}\u{feff}",
            "\u{2028}\u{2029}",
            " \u{3164} \u{2800} ",
            "\u{202e}\u{2066}",
            "\u{301}\u{301}",
            "\u{1b}[2J\u{7}",
        ] {
            let r = check_message(text).unwrap_err();
            assert_eq!(r.code, "empty-message", "{text:?}");
        }
        let r = check_message("\u{200b}\u{feff}").unwrap_err();
        assert!(r.text.contains("nothing visible"), "{}", r.text);
        assert!(check_message("\u{200b}hi\u{200b}").is_ok());
        assert!(check_message("caf\u{e9}\u{301}").is_ok());
    }

    #[test]
    fn names_cannot_hold_what_frames_a_line() {
        for evil in [
            "[server",
            "server]",
            "you]",
            "[alice]",
            "alice->you",
            "you<-bob",
            "a=>b",
            "<alice>",
            "\u{ff3b}server\u{ff3d}", // fullwidth brackets: PRECIS maps them to [ and ]
            "\u{ff1c}x\u{ff1e}",
            "alice\u{2192}you",  // →
            "a\u{21d2}b",        // ⇒
            "a\u{27f6}b",        // ⟶
            "\u{27e6}x\u{27e7}", // ⟦x⟧
            "\u{3010}x\u{3011}", // 【x】
            "\u{ab}x\u{bb}",     // «x»
            "\u{1438}\u{1433}",  // ᐸᐳ: Canadian syllabics letters, skeletons < and >
            "\u{16b2}x",         // ᚲ: a runic letter whose skeleton is <
        ] {
            let r = check_name("nickname", evil).unwrap_err();
            assert_eq!(r.code, "bad-name", "{evil:?}");
            assert!(
                r.text.contains("brackets and arrows") && r.text.contains("U+"),
                "{evil:?}: {}",
                r.text
            );
        }
        let r = check_name("nickname", "alice->you").unwrap_err();
        assert!(r.text.contains("'>' (U+003E)"), "{}", r.text);
        let r = check_name("room name", "\u{ff3b}x").unwrap_err();
        assert!(r.text.contains("room name"), "{}", r.text);
        assert_eq!(framing_char("alice-you"), None, "a hyphen alone is fine");
        for ok in ["alice-you", "a=b", "x_(y)", "{z}", "*star*", "#room", "a.b"] {
            assert!(check_name("nickname", ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn name_rules() {
        assert!(check_name("nickname", "alice_1").is_ok());
        assert_eq!(check_name("nickname", "").unwrap_err().code, "empty-name");
        assert_eq!(
            check_name("nickname", &"a".repeat(33)).unwrap_err().code,
            "name-too-long"
        );
        assert!(check_name("nickname", &"ü".repeat(32)).is_ok());
        assert_eq!(check_name("nickname", "a b").unwrap_err().code, "bad-name");
        assert_eq!(
            check_name("nickname", "a\u{1b}b").unwrap_err().code,
            "bad-name"
        );
        assert_eq!(
            check_name("room name", "a\tb").unwrap_err().code,
            "bad-name"
        );
    }

    #[test]
    fn server_messages_have_podsixnet_shapes() {
        let v = serde_json::to_value(ServerMsg::Message {
            message: c("hi"),
            who: c("bob"),
            room: c("lobby"),
            time: 5,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"action": "message", "message": "hi", "who": "bob", "room": "lobby", "time": 5})
        );
        let v = serde_json::to_value(ServerMsg::Players {
            players: vec![c("a"), c("b")],
            room: c("lobby"),
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"action": "players", "players": ["a", "b"], "room": "lobby"})
        );
        // What a client parses is what the server sent.
        let back: ServerMsg<'static> = serde_json::from_value(v).unwrap();
        assert_eq!(
            back,
            ServerMsg::Players {
                players: vec![c("a"), c("b")],
                room: c("lobby")
            }
        );
    }

    #[test]
    fn requests_have_podsixnet_shapes() {
        let wire = |r: &Request| serde_json::to_value(r).unwrap();
        assert_eq!(wire(&Request::Part), serde_json::json!({"action": "part"}));
        assert_eq!(
            serde_json::from_value::<Request>(serde_json::json!({"action": "rooms"})).unwrap(),
            Request::Rooms(Rooms::default())
        );
        assert_eq!(
            wire(&Request::Nickname(SetNickname {
                nickname: "bob".into()
            })),
            serde_json::json!({"action": "nickname", "nickname": "bob"})
        );
        assert_eq!(
            wire(&Request::Who(Who {
                room: None,
                page: None
            })),
            serde_json::json!({"action": "who"})
        );
        let kick = Request::Kick(Kick {
            nickname: "eve".into(),
            reason: Some("spam".into()),
        });
        assert_eq!(
            serde_json::from_value::<Request>(wire(&kick)).unwrap(),
            kick
        );
    }

    #[test]
    fn the_room_policy_has_three_tiers() {
        let p = RoomPolicy {
            full_list_max: 2,
            notice_max: 4,
        };
        assert_eq!(
            [1, 2, 3, 4, 5].map(|n| p.tier(n)),
            [
                Tier::FullList,
                Tier::FullList,
                Tier::Deltas,
                Tier::Deltas,
                Tier::Quiet
            ]
        );
    }
}
