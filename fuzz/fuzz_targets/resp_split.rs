//! Differential target for the kv example's RESP parser: the same bytes
//! checked whole, and split into reads at any points with a `Progress`
//! kept between reads (as the kv handler keeps one per connection), must
//! give the same frames and end the same way. This is what proves that
//! `check` resumes from `Progress` correctly.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../examples/kv/resp.rs"]
mod resp;
mod split;

use resp::{check, Check, Progress};

#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Vec<u8>>,
    /// The refusal that ended the stream, if one did.
    invalid: Option<&'static str>,
    /// Bytes of a frame still arriving.
    left: Vec<u8>,
}

fn feed(chunks: &[&[u8]]) -> Outcome {
    let mut frames = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut progress = Progress::default();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        loop {
            match check(&pending, &mut progress) {
                Check::Frame(n) => {
                    assert_eq!(progress, Progress::default(), "a frame resets progress");
                    frames.push(pending.drain(..n).collect());
                }
                Check::Incomplete => break,
                Check::Invalid(why) => {
                    return Outcome {
                        frames,
                        invalid: Some(why),
                        left: Vec::new(),
                    }
                }
            }
        }
    }
    Outcome {
        frames,
        invalid: None,
        left: pending,
    }
}

fuzz_target!(|data: &[u8]| {
    let (cuts, stream) = split::input(data);
    let whole = feed(&[stream]);
    let split = feed(&split::chunks(stream, &cuts));
    assert_eq!(
        whole, split,
        "the frames depend on how the stream was split"
    );
});
