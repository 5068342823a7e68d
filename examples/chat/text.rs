//! What members may say and be called: the chat example's only parsing,
//! kept apart from the sockets so the fuzzer (`fuzz/fuzz_targets/chat_text.rs`)
//! can drive it.

/// Longest name.
pub const MAX_NAME: usize = 32;

/// Format characters that reorder or break a line on other members'
/// screens: bidirectional marks, embeddings, overrides and isolates, and
/// the Unicode line and paragraph separators.
pub fn is_bidi_or_separator(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// `line` with every control character removed: C0 controls (a tab
/// becomes a space), DEL, C1 controls, whole terminal escape sequences
/// (`ESC [ ... final`), which could otherwise move the cursor, erase a
/// line or recolour the screen of everyone in the room, and the format
/// characters of [`is_bidi_or_separator`].
pub fn clean(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // CSI: `[` then parameters up to a final byte @..~; other
                // escapes are ESC and one character.
                if chars.next_if_eq(&'[').is_some() {
                    for p in chars.by_ref() {
                        if ('@'..='~').contains(&p) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\t' => out.push(' '),
            c if c.is_control() || is_bidi_or_separator(c) => {}
            c => out.push(c),
        }
    }
    out
}

/// A name is 1 to `MAX_NAME` ASCII letters, digits, `_` or `-`: nothing
/// a terminal would act on, nothing that looks like another name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
