//! The state machine, edge by edge and state by state, with no sockets.
//! Grouped by state, as smoltcp groups its TCP tests: each test names a
//! state, checks what it allows, and checks every edge out of it.

use super::{Action, Event, State, TABLE};
use crate::conn::CloseReason;

use Action::*;
use CloseReason::{Closed as ByHandler, PeerClosed, Reset, Shutdown};
use Event::*;
use State::*;

/// The states the table covers: every state, with one sample reason.
pub(crate) const STATES: &[State] = &[
    Connecting,
    Handshaking,
    Open,
    ReadClosed,
    WriteClosing,
    WriteClosed,
    Closing(ByHandler),
    Lingering(ByHandler),
    Closed(ByHandler),
];

/// The events the table covers: every event, `Close` with the handler's
/// reason (which the machine treats apart) and another.
pub(crate) const EVENTS: &[Event] = &[
    Connected { tls: false },
    Connected { tls: true },
    Secured,
    PeerFin,
    ShutdownWrite,
    Flushed { fin_read: false },
    Flushed { fin_read: true },
    Close(ByHandler),
    Close(Shutdown),
    Abort(Reset),
];

/// Every reason, for the check that reasons pass through.
const REASONS: &[CloseReason] = &[
    PeerClosed,
    Reset,
    CloseReason::IdleTimeout,
    CloseReason::WriteTimeout,
    CloseReason::ConnectFailed(std::io::ErrorKind::ConnectionRefused),
    CloseReason::ConnectTimeout,
    CloseReason::SlowConsumer,
    CloseReason::InputTooLarge,
    Shutdown,
    ByHandler,
    CloseReason::Aborted,
    CloseReason::Io(std::io::ErrorKind::Other),
    CloseReason::OverBudget,
    CloseReason::HandlerPanic,
    CloseReason::Tls(crate::conn::TlsFailure::Timeout),
];

fn listed(from: State, event: Event) -> Option<(State, Action)> {
    TABLE
        .iter()
        .find(|row| row.0 == from && row.1 == event)
        .map(|row| (row.2, row.3))
}

/// Checks every edge out of `from` against the table, and returns how
/// many there are.
fn edges_match(from: State) -> usize {
    let mut edges = 0;
    for &event in EVENTS {
        let made = from.on(event);
        assert_eq!(
            made,
            listed(from, event),
            "{from:?} on {event:?}: the machine and the table disagree"
        );
        edges += usize::from(made.is_some());
    }
    edges
}

fn allows(state: State) -> (bool, bool, bool) {
    (state.may_read(), state.may_write(), state.accepts_output())
}

#[test]
fn the_connecting_state() {
    // Not readable or writable yet; output may be queued for later.
    assert_eq!(allows(Connecting), (false, false, true));
    assert_eq!(
        Connecting.on(Connected { tls: false }),
        Some((Open, TellOpen))
    );
    // A TLS client's connect opens nothing yet: its handshake begins.
    assert_eq!(
        Connecting.on(Connected { tls: true }),
        Some((Handshaking, Nothing))
    );
    // Closing a connect in progress has nothing to flush.
    assert_eq!(
        Connecting.on(Close(ByHandler)),
        Some((Closed(ByHandler), Nothing))
    );
    assert_eq!(Connecting.on(PeerFin), None);
    assert_eq!(edges_match(Connecting), 5);
}

#[test]
fn the_handshaking_state() {
    // The transport reads and writes records; the handler may queue
    // output, which waits for the handshake.
    assert_eq!(allows(Handshaking), (true, true, true));
    assert_eq!(Handshaking.on(Secured), Some((Open, TellOpen)));
    assert_eq!(
        Handshaking.on(Close(Shutdown)),
        Some((Closed(Shutdown), Nothing))
    );
    // A FIN mid-handshake is the transport's failure, not the handler's
    // news; a plain connect's edge is not this one's.
    assert_eq!(Handshaking.on(PeerFin), None);
    assert_eq!(Handshaking.on(Connected { tls: true }), None);
    assert_eq!(Connecting.on(Secured), None);
    assert_eq!(edges_match(Handshaking), 4);
}

#[test]
fn the_open_state() {
    assert_eq!(allows(Open), (true, true, true));
    assert_eq!(Open.on(PeerFin), Some((ReadClosed, TellReadClosed)));
    assert_eq!(Open.on(ShutdownWrite), Some((WriteClosing, Flush)));
    assert_eq!(
        Open.on(Close(ByHandler)),
        Some((Closing(ByHandler), StopReading))
    );
    // Output written with nothing special waiting changes nothing.
    assert_eq!(Open.on(Flushed { fin_read: false }), None);
    assert_eq!(Open.on(Connected { tls: false }), None);
    assert_eq!(edges_match(Open), 5);
}

#[test]
fn the_read_closed_state() {
    // The peer's FIN is read: we may still write.
    assert_eq!(allows(ReadClosed), (false, true, true));
    // A close after the peer's FIN is the peer's close.
    assert_eq!(
        ReadClosed.on(Close(ByHandler)),
        Some((Closing(PeerClosed), StopReading))
    );
    assert_eq!(
        ReadClosed.on(Close(Shutdown)),
        Some((Closing(Shutdown), StopReading))
    );
    // Our FIN would end both directions: that is a close.
    assert_eq!(
        ReadClosed.on(ShutdownWrite),
        Some((Closing(PeerClosed), Flush))
    );
    assert_eq!(ReadClosed.on(PeerFin), None);
    assert_eq!(edges_match(ReadClosed), 4);
}

#[test]
fn the_write_closing_state() {
    // Our FIN is queued: no more output, the rest still flushes.
    assert_eq!(allows(WriteClosing), (true, true, false));
    assert_eq!(
        WriteClosing.on(Flushed { fin_read: false }),
        Some((WriteClosed, SendFin))
    );
    assert_eq!(
        WriteClosing.on(PeerFin),
        Some((Closing(PeerClosed), TellReadClosed))
    );
    assert_eq!(WriteClosing.on(ShutdownWrite), None);
    assert_eq!(edges_match(WriteClosing), 6);
}

#[test]
fn the_write_closed_state() {
    assert_eq!(allows(WriteClosed), (true, false, false));
    // Both FINs exchanged: done, once the handler has heard.
    assert_eq!(
        WriteClosed.on(PeerFin),
        Some((Closed(PeerClosed), TellReadClosedThenClose))
    );
    assert_eq!(WriteClosed.on(Flushed { fin_read: true }), None);
    assert_eq!(edges_match(WriteClosed), 4);
}

#[test]
fn the_closing_state() {
    assert_eq!(allows(Closing(ByHandler)), (false, true, false));
    // Flushed before the peer's FIN: send ours and linger.
    assert_eq!(
        Closing(ByHandler).on(Flushed { fin_read: false }),
        Some((Lingering(ByHandler), Linger))
    );
    // Flushed with the peer's FIN read: nothing left unread, close now.
    assert_eq!(
        Closing(ByHandler).on(Flushed { fin_read: true }),
        Some((Closed(ByHandler), Nothing))
    );
    // Asking again changes nothing.
    assert_eq!(Closing(ByHandler).on(Close(Shutdown)), None);
    assert_eq!(Closing(ByHandler).on(PeerFin), None);
    assert_eq!(edges_match(Closing(ByHandler)), 3);
}

#[test]
fn the_lingering_state() {
    // It reads, to discard; it writes nothing.
    assert_eq!(allows(Lingering(ByHandler)), (true, false, false));
    assert_eq!(
        Lingering(ByHandler).on(PeerFin),
        Some((Closed(ByHandler), Nothing))
    );
    assert_eq!(Lingering(ByHandler).on(Close(ByHandler)), None);
    assert_eq!(edges_match(Lingering(ByHandler)), 2);
}

#[test]
fn the_closed_state() {
    assert_eq!(allows(Closed(ByHandler)), (false, false, false));
    assert!(Closed(ByHandler).is_closed());
    // No way out, not even an abort.
    assert_eq!(edges_match(Closed(ByHandler)), 0);
}

#[test]
fn the_machine_makes_exactly_the_listed_edges() {
    let mut made = 0;
    for &from in STATES {
        made += edges_match(from);
    }
    assert_eq!(made, TABLE.len(), "the table lists an edge twice");
    for row in TABLE {
        assert!(
            STATES.contains(&row.0) && EVENTS.contains(&row.1),
            "{row:?}"
        );
    }
}

#[test]
fn abort_closes_every_state_but_closed() {
    for &from in STATES {
        for &reason in REASONS {
            let expected = (!from.is_closed()).then_some((Closed(reason), Nothing));
            assert_eq!(from.on(Abort(reason)), expected, "{from:?}");
        }
    }
}

#[test]
fn reasons_pass_through() {
    for &r in REASONS {
        for from in [Open, WriteClosing, WriteClosed] {
            assert_eq!(from.on(Close(r)), Some((Closing(r), StopReading)));
        }
        let after_fin = if r == ByHandler { PeerClosed } else { r };
        assert_eq!(
            ReadClosed.on(Close(r)),
            Some((Closing(after_fin), StopReading))
        );
        assert_eq!(Connecting.on(Close(r)), Some((Closed(r), Nothing)));
        assert_eq!(Handshaking.on(Close(r)), Some((Closed(r), Nothing)));
        assert_eq!(
            Closing(r).on(Flushed { fin_read: false }),
            Some((Lingering(r), Linger))
        );
        assert_eq!(
            Closing(r).on(Flushed { fin_read: true }),
            Some((Closed(r), Nothing))
        );
        assert_eq!(Lingering(r).on(PeerFin), Some((Closed(r), Nothing)));
    }
}

/// The table as markdown, grouped by state: what the guide shows.
fn markdown() -> String {
    let mut out = String::from("| state | event | next state | the reactor then |\n");
    out.push_str("| --- | --- | --- | --- |\n");
    for &from in STATES {
        for row in TABLE.iter().filter(|row| row.0 == from) {
            out.push_str(&format!(
                "| `{:?}` | `{:?}` | `{:?}` | {} |\n",
                row.0,
                row.1,
                row.2,
                explain(row.3, row.2)
            ));
        }
    }
    out
}

fn explain(action: Action, next: State) -> &'static str {
    match (action, next.is_closed()) {
        (TellOpen, _) => "calls `on_open`",
        (TellReadClosedThenClose, _) => {
            "calls `on_read_closed` first (still in the old state); returns the buffers; reaps"
        }
        (TellReadClosed, _) => "calls `on_read_closed`; flushes",
        (StopReading, _) => "drops held input; flushes",
        (Flush, _) => "flushes (the FIN waits behind the output)",
        (SendFin, _) => "sends FIN",
        (Linger, _) => "sends FIN; arms the linger timeout; reads to discard",
        (Nothing, true) => "returns the buffers; reaps",
        (Nothing, false) => "nothing more",
    }
}

/// The edges as text, one block per state: the drawing in `src/state.rs`.
fn drawing() -> String {
    let mut out = String::from("//! ```text\n");
    for &from in STATES {
        let mut first = true;
        for row in TABLE.iter().filter(|row| row.0 == from) {
            let from = if std::mem::take(&mut first) {
                format!("{from:?}")
            } else {
                String::new()
            };
            let line = format!(
                "{from:<21} {:<28} ─▶ {:<21} {}",
                format!("{:?}", row.1),
                format!("{:?}", row.2),
                explain(row.3, row.2)
            );
            out.push_str(&format!("//! {}\n", line.trim_end()));
        }
    }
    out.push_str("//! ```\n");
    out
}

/// The guide's chapter on a connection's life shows the table, and
/// `src/state.rs` the drawing, both generated here.
/// `EVLOOP_WRITE_DOCS=1 cargo test --lib` rewrites them.
#[test]
fn the_docs_show_the_table() {
    let state_rs = concat!(env!("CARGO_MANIFEST_DIR"), "/src/state.rs");
    let text = std::fs::read_to_string(state_rs).expect("src/state.rs");
    check_region(
        std::path::Path::new(state_rs),
        &text,
        "// state-diagram:begin\n",
        "// state-diagram:end",
        &drawing(),
    );
}

/// `path`'s text between `begin` and `end` must be `want`.
fn check_region(path: &std::path::Path, text: &str, begin: &str, end: &str, want: &str) {
    let start = text.find(begin).expect("begin marker") + begin.len();
    let stop = start + text[start..].find(end).expect("end marker");
    if &text[start..stop] == want {
        return;
    }
    if std::env::var_os("EVLOOP_WRITE_DOCS").is_some() {
        let updated = format!("{}{want}{}", &text[..start], &text[stop..]);
        std::fs::write(path, updated).expect("write the docs");
    } else {
        panic!(
            "{} does not show the state machine's table: run EVLOOP_WRITE_DOCS=1 cargo test --lib",
            path.display()
        );
    }
}

const BEGIN: &str = "<!-- state-table:begin -->\n";
const END: &str = "<!-- state-table:end -->";

/// The guide's chapter on a connection's life shows the table.
#[test]
fn the_guide_shows_the_table() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/guide");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("docs/guide") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains(BEGIN) {
            found.push((path, text));
        }
    }
    assert_eq!(found.len(), 1, "one chapter holds the state table");
    let (path, text) = &found[0];
    check_region(path, text, BEGIN, END, &markdown());
}
