//! The kv example's RESP request parser (`examples/kv/resp.rs`): `check`
//! finds a frame, `decode` slices its arguments.
//!
//! Checks, beyond "never panics": a frame `check` accepts is accepted
//! alone too, and its last byte missing makes it incomplete, never
//! invalid; `decode` finds as many arguments as the frame declares, none
//! over a limit; an inline command's arguments are non-empty and hold no
//! whitespace; every refusal says "Protocol error".
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../examples/kv/resp.rs"]
mod resp;

use resp::{check, decode, Check, Progress, MAX_BULK, MAX_COMMAND, MAX_INLINE};

/// The count an array frame declares: the digits between `*` and CRLF.
fn declared(frame: &[u8]) -> usize {
    let end = frame
        .windows(2)
        .position(|w| w == b"\r\n")
        .expect("an accepted frame has a CRLF");
    let text = std::str::from_utf8(&frame[1..end]).expect("an accepted count is ASCII");
    text.parse::<i64>()
        .expect("an accepted count is a number")
        .max(0) as usize
}

fuzz_target!(|data: &[u8]| {
    let mut args = Vec::new();
    let mut at = 0;
    loop {
        let buf = &data[at..];
        match check(buf, &mut Progress::default()) {
            Check::Frame(n) => {
                assert!(n > 0 && n <= buf.len(), "frame of {n} in {}", buf.len());
                let frame = &buf[..n];
                assert_eq!(check(frame, &mut Progress::default()), Check::Frame(n));
                assert_eq!(
                    check(&frame[..n - 1], &mut Progress::default()),
                    Check::Incomplete,
                    "a frame short of its last byte"
                );
                decode(frame, &mut args);
                if frame[0] == b'*' {
                    assert_eq!(args.len(), declared(frame));
                    assert!(args.iter().all(|a| a.len() <= MAX_BULK));
                    assert!(n <= MAX_COMMAND);
                } else {
                    assert!(n <= MAX_INLINE + 2);
                    assert_eq!(frame[n - 1], b'\n');
                    assert!(args
                        .iter()
                        .all(|a| !a.is_empty() && !a.iter().any(u8::is_ascii_whitespace)));
                }
                at += n;
            }
            Check::Incomplete => break,
            Check::Invalid(why) => {
                assert!(why.starts_with("Protocol error"), "{why}");
                break;
            }
        }
    }
});
