//! The http example's request path (`examples/http/request.rs`), fed the
//! way a socket feeds it: what is left unconsumed is kept and offered
//! again with the next read.
//!
//! Checks, beyond "never panics":
//! - a stream split into reads at any points gets exactly the answers it
//!   gets sent whole, and keeps the same bytes unconsumed;
//! - input left unconsumed, offered again with nothing new, is neither
//!   answered nor consumed (the reactor re-offers it);
//! - a call consumes no more than it was given, and a refusal closes.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../examples/http/chunked.rs"]
mod chunked;
#[allow(dead_code)]
#[path = "../../examples/http/request.rs"]
mod request;
mod split;

use request::{After, Progress, Requests, Waiting};

/// Body limits, chosen by bits 4 and 5 of the input's first byte (its
/// low 4 bits count the cuts): small, so the fuzzer reaches 413 and
/// bodies that span reads quickly; none; a megabyte; and the largest a
/// configuration can say, where any unchecked sum overflows.
const MAX_BODIES: [usize; 4] = [64, 0, 1 << 20, usize::MAX];
const DATE: &str = "Sat, 28 Nov 2026 23:00:00 GMT";
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[derive(Debug, PartialEq)]
struct Outcome {
    /// Every answer, in order.
    out: Vec<u8>,
    /// Unconsumed bytes at the end (when the connection stayed).
    left: Vec<u8>,
    closed: bool,
}

fn feed(chunks: &[&[u8]], max_body: usize) -> Outcome {
    let mut requests = Requests::new(max_body, DATE);
    let mut progress = Progress::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        loop {
            requests.out.clear();
            let before = progress;
            let served = requests.serve(&pending, &mut progress);
            assert!(
                served.used <= pending.len(),
                "{served:?} of {}",
                pending.len()
            );
            // Sent in this call: for a request that was not waiting with
            // it already, or after answering the one that was.
            if progress.continued() && (!before.continued() || served.answered > 0) {
                // `100 Continue` is sent only when the body has not come
                // with the head, so whether it is sent depends on the
                // split: it is checked here and left out of the comparison.
                let interim = requests
                    .out
                    .strip_suffix(CONTINUE)
                    .expect("100 Continue ends the output");
                out.extend_from_slice(interim);
            } else {
                out.extend_from_slice(&requests.out);
            }
            if served.after == After::Close {
                // A refusal ends with `Connection: close`, as does a
                // request that asked for it.
                assert!(!requests.out.is_empty(), "closed without an answer");
                return Outcome {
                    out,
                    left: Vec::new(),
                    closed: true,
                };
            }
            pending.drain(..served.used);
            if let Some(stream) = served.stream {
                // The chunks are main.rs's to write; the fuzzer notes the
                // stream and serves what follows, as main.rs does once the
                // stream is sent.
                out.extend_from_slice(format!("[stream {stream:?}]").as_bytes());
                if stream.after == After::Close {
                    return Outcome {
                        out,
                        left: Vec::new(),
                        closed: true,
                    };
                }
                continue;
            }
            match served.waiting {
                Waiting::Nothing => assert!(pending.is_empty(), "{served:?} left bytes"),
                Waiting::Head | Waiting::Body(_) => {
                    assert!(!pending.is_empty(), "{served:?} on nothing")
                }
            }
            break;
        }
        // The reactor offers what is left again, with no new bytes: a
        // partial request must stay partial, and say nothing new.
        requests.out.clear();
        let mut again_progress = progress;
        let again = requests.serve(&pending, &mut again_progress);
        assert_eq!(again.used, 0, "re-offered partial input was consumed");
        assert!(
            requests.out.is_empty(),
            "re-offered partial input was answered"
        );
        assert_eq!(
            again_progress, progress,
            "re-offered input moved the progress"
        );
    }
    Outcome {
        out,
        left: pending,
        closed: false,
    }
}

fuzz_target!(|data: &[u8]| {
    let (cuts, stream) = split::input(data);
    let max_body = MAX_BODIES[usize::from(data.first().map_or(0, |b| (b >> 4) & 3))];
    let whole = feed(&[stream], max_body);
    let split = feed(&split::chunks(stream, &cuts), max_body);
    assert_eq!(
        whole, split,
        "the answer depends on how the stream was split"
    );
});
