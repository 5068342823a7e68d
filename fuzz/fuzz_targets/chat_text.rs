//! The chat example's line cleaning and name rules
//! (`examples/chat/text.rs`).
//!
//! Checks: a cleaned line holds no control character, no escape, no
//! bidirectional format or separator character, so nothing a member
//! relays can act on another member's terminal; cleaning is idempotent
//! and never lengthens a line; a valid name is printable ASCII without
//! spaces.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../examples/chat/text.rs"]
mod text;

fuzz_target!(|data: &[u8]| {
    // What the server does with a line: lossy UTF-8, then clean.
    let line = String::from_utf8_lossy(data);
    let cleaned = text::clean(&line);
    for c in cleaned.chars() {
        assert!(
            !c.is_control() && !text::is_bidi_or_separator(c),
            "{c:?} survived cleaning"
        );
    }
    assert!(cleaned.len() <= line.len());
    assert_eq!(text::clean(&cleaned), cleaned, "cleaning is not idempotent");
    if text::valid_name(&line) {
        assert!(line.len() <= text::MAX_NAME);
        assert!(line.bytes().all(|b| b.is_ascii_graphic()));
    }
});
