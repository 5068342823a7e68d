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
#[path = "../../examples/http/request.rs"]
mod request;
mod split;

use request::{After, Requests, Waiting};

/// Small, so the fuzzer reaches 413 and bodies that span reads quickly.
const MAX_BODY: usize = 64;
const DATE: &str = "Sat, 28 Nov 2026 23:00:00 GMT";

#[derive(Debug, PartialEq)]
struct Outcome {
    /// Every answer, in order.
    out: Vec<u8>,
    /// Unconsumed bytes at the end (when the connection stayed).
    left: Vec<u8>,
    closed: bool,
}

fn feed(chunks: &[&[u8]]) -> Outcome {
    let mut requests = Requests::new(MAX_BODY, DATE);
    let mut pending: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        requests.out.clear();
        let served = requests.serve(&pending);
        assert!(
            served.used <= pending.len(),
            "{served:?} of {}",
            pending.len()
        );
        out.extend_from_slice(&requests.out);
        if served.after == After::Close {
            // A refusal ends with `Connection: close`, as does a request
            // that asked for it.
            assert!(!requests.out.is_empty(), "closed without an answer");
            return Outcome {
                out,
                left: Vec::new(),
                closed: true,
            };
        }
        pending.drain(..served.used);
        match served.waiting {
            Waiting::Nothing => assert!(pending.is_empty(), "{served:?} left bytes"),
            Waiting::Head | Waiting::Body(_) => {
                assert!(!pending.is_empty(), "{served:?} on nothing")
            }
        }
        // The reactor offers what is left again, with no new bytes: a
        // partial request must stay partial.
        requests.out.clear();
        let again = requests.serve(&pending);
        assert_eq!(again.used, 0, "re-offered partial input was consumed");
        assert!(
            requests.out.is_empty(),
            "re-offered partial input was answered"
        );
        assert_eq!(again.waiting, served.waiting);
    }
    Outcome {
        out,
        left: pending,
        closed: false,
    }
}

fuzz_target!(|data: &[u8]| {
    let (cuts, stream) = split::input(data);
    let whole = feed(&[stream]);
    let split = feed(&split::chunks(stream, &cuts));
    assert_eq!(
        whole, split,
        "the answer depends on how the stream was split"
    );
});
