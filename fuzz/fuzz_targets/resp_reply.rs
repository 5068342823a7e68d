//! Differential target for the Redis proxy's reply parser
//! (`examples/resp_proxy/reply.rs`): the same bytes fed whole, and split
//! into reads at any points, must give the same replies, the same
//! replies found too large (and skipped past with `Skip`), and end the
//! same way, as the proxy's `replies` loop reads them. This proves that
//! `check` resumes from `Progress`, and `Skip` from where it stopped,
//! however the stream is cut.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../examples/resp_proxy/reply.rs"]
mod reply;
#[allow(dead_code)]
#[path = "../../examples/kv/resp.rs"]
mod resp;
mod split;

use reply::{check, Check, Progress, Skip};

#[derive(Debug, PartialEq)]
enum Seen {
    Reply(Vec<u8>),
    TooLarge,
}

#[derive(Debug, PartialEq)]
struct Outcome {
    seen: Vec<Seen>,
    /// The refusal that ended the stream, if one did.
    invalid: Option<&'static str>,
    /// Still walking past a reply too large to hold.
    skipping: bool,
    /// Bytes of a reply still arriving (when not skipping).
    left: Vec<u8>,
}

fn feed(chunks: &[&[u8]]) -> Outcome {
    let mut seen = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut progress = Progress::default();
    let mut skip: Option<Skip> = None;
    let invalid = |seen, why| Outcome {
        seen,
        invalid: Some(why),
        skipping: false,
        left: Vec::new(),
    };
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        loop {
            if let Some(walk) = skip.as_mut() {
                match walk.feed(&pending) {
                    Ok((n, ended)) => {
                        pending.drain(..n);
                        if !ended {
                            break;
                        }
                        skip = None;
                    }
                    Err(why) => return invalid(seen, why),
                }
            }
            match check(&pending, &mut progress) {
                Check::Frame(n) => {
                    assert_eq!(progress, Progress::default(), "a reply resets progress");
                    seen.push(Seen::Reply(pending.drain(..n).collect()));
                }
                Check::TooLarge => {
                    seen.push(Seen::TooLarge);
                    progress = Progress::default();
                    skip = Some(Skip::default());
                }
                Check::Incomplete => break,
                Check::Invalid(why) => return invalid(seen, why),
            }
        }
    }
    let skipping = skip.is_some();
    Outcome {
        seen,
        invalid: None,
        skipping,
        left: if skipping { Vec::new() } else { pending },
    }
}

fuzz_target!(|data: &[u8]| {
    let (cuts, stream) = split::input(data);
    let whole = feed(&[stream]);
    let split = feed(&split::chunks(stream, &cuts));
    assert_eq!(
        whole, split,
        "the replies depend on how the stream was split"
    );
    // Every reply found is whole RESP on its own.
    for s in &whole.seen {
        if let Seen::Reply(r) = s {
            assert_eq!(check(r, &mut Progress::default()), Check::Frame(r.len()));
        }
    }
});
