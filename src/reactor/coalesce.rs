//! Wake-up coalescing ([`Config::coalesce`]): whether the next poll
//! naps first.
//!
//! A reactor that sleeps until the first event wakes once per event when
//! its peers are busy elsewhere, and every wake-up costs both sides: the
//! waker a cross-CPU interrupt, the sleeper a context switch (about 8 us
//! of CPU each on this project's VM). A nap before the poll takes what
//! arrived meanwhile in one wake-up, and output to a shared backend
//! leaves in fewer, larger writes. The price is latency: what arrives
//! during the nap waits for its end.
//!
//! Which wins depends on the peers, so the reactor measures instead of
//! guessing. Two rules:
//!
//! - **Crowded:** a nap is taken only after a turn that handled
//!   [`COALESCE_MIN_EVENTS`] or more events, and a nap that gathered
//!   fewer stops the naps until such a turn comes again. A quiet server
//!   never naps, and a lone client in request and reply (one event a
//!   turn) waits for a nap at most once after a turn that happened to
//!   bring two events.
//! - **Worth it:** the reactor runs a stretch ([`COALESCE_STRETCH`]) in
//!   one mode, napping or not, then a probe ([`COALESCE_PROBE`]) in the
//!   other, and naps in the next stretch only on evidence: naps were
//!   taken, both modes moved bytes, and napping moved more per second by
//!   a margin ([`COALESCE_MARGIN_DIVISOR`]) for the latency the bytes do
//!   not show. A few clients in lockstep with the reactor lose from a nap
//!   (each request waits for it, and nothing else runs meanwhile: their
//!   rate falls), a crowd whose other work fills the CPU gains (their
//!   rate rises), and the probe tells them apart. A gap between turns
//!   longer than a probe is a quiet spell: it says nothing of either
//!   mode, so measuring starts again with a stretch without naps. Load
//!   in bursts separated by quiet spells never naps. The gap is measured
//!   from one turn's clock reading to the next, so one turn longer than
//!   a probe (or the thread kept off the CPU that long) counts as quiet
//!   too: it fails safe, with fewer naps.
//!
//! A peer can steer the mode (send more while naps are on), but what it
//! buys is bounded: each wake-up waits at most the nap plus the thread's
//! timer slack, and [`MAX_COALESCE`] bounds the nap.
//!
//! [`Config::coalesce`]: crate::Config::coalesce
//! [`MAX_COALESCE`]: crate::MAX_COALESCE

use std::time::{Duration, Instant};

use crate::config::{
    COALESCE_MARGIN_DIVISOR, COALESCE_MIN_EVENTS, COALESCE_PROBE, COALESCE_STRETCH,
};

/// Whether naps are on, and the measurements that decide it.
pub(super) struct Coalesce {
    /// The nap configured; zero: never.
    configured: Duration,
    /// This stretch or probe naps.
    napping: bool,
    /// Several events came in one turn, and no nap since came back with
    /// fewer.
    crowded: bool,
    /// The poll of this turn came after a nap.
    napped: bool,
    /// A probe runs now (else a stretch).
    probing: bool,
    /// When this stretch or probe began, and the bytes moved by then.
    began: Option<(Instant, u64)>,
    /// Naps taken in this stretch or probe.
    naps: u64,
    /// The last poll's time: a longer gap than a probe is a quiet spell.
    last: Option<Instant>,
    /// The last stretch: bytes per second, naps taken.
    stretch: (u64, u64),
}

impl Coalesce {
    pub(super) fn new(configured: Duration) -> Self {
        Coalesce {
            configured,
            napping: false,
            crowded: false,
            napped: false,
            probing: false,
            began: None,
            naps: 0,
            last: None,
            stretch: (0, 0),
        }
    }

    /// Coalescing is configured at all.
    pub(super) fn is_on(&self) -> bool {
        !self.configured.is_zero()
    }

    /// How long to nap before this poll, if at all: never longer than
    /// `wait`, the time the poll may take.
    pub(super) fn nap(&self, wait: Option<Duration>) -> Option<Duration> {
        let nap = self.configured.min(wait.unwrap_or(Duration::MAX));
        (self.napping && self.crowded && !nap.is_zero()).then_some(nap)
    }

    /// A nap was taken before this turn's poll.
    pub(super) fn took_nap(&mut self) {
        self.napped = true;
        self.naps += 1;
    }

    /// After each poll: it returned `events`; `moved` is every byte read
    /// and written so far, and `now` this turn's clock reading.
    pub(super) fn after_poll(&mut self, events: usize, moved: u64, now: Instant) {
        if events >= COALESCE_MIN_EVENTS {
            self.crowded = true;
        } else if self.napped {
            self.crowded = false;
        }
        self.napped = false;
        let quiet = self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) > COALESCE_PROBE);
        self.last = Some(now);
        let Some((began, moved_then)) = self.began.filter(|_| !quiet) else {
            // The first turn, or after a quiet spell (whose rate says
            // nothing of either mode): a stretch without naps, from here.
            self.restart(now, moved, false);
            return;
        };
        let elapsed = now.saturating_duration_since(began);
        let length = if self.probing {
            COALESCE_PROBE
        } else {
            COALESCE_STRETCH
        };
        if elapsed < length {
            return;
        }
        let rate = per_second(moved.saturating_sub(moved_then), elapsed);
        if self.probing {
            let (stretch_rate, stretch_naps) = self.stretch;
            let (nap, plain) = if self.napping {
                ((rate, self.naps), stretch_rate)
            } else {
                ((stretch_rate, stretch_naps), rate)
            };
            // Naps go on only on evidence: naps were taken, both modes
            // moved bytes, and napping moved clearly more.
            let margin = plain / COALESCE_MARGIN_DIVISOR;
            let napping = nap.1 > 0 && plain > 0 && nap.0 > plain.saturating_add(margin);
            self.restart(now, moved, napping);
        } else {
            self.stretch = (rate, self.naps);
            self.restart(now, moved, !self.napping);
            self.probing = true;
        }
    }

    /// A stretch (a probe, if the caller says so after) begins at `now`,
    /// napping or not.
    fn restart(&mut self, now: Instant, moved: u64, napping: bool) {
        self.napping = napping;
        self.probing = false;
        self.began = Some((now, moved));
        self.naps = 0;
    }
}

/// `bytes` over `elapsed`, per second (whole numbers: a tie is a tie).
fn per_second(bytes: u64, elapsed: Duration) -> u64 {
    let micros = elapsed.as_micros().max(1);
    u64::try_from(u128::from(bytes) * 1_000_000 / micros).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAP: Duration = Duration::from_micros(20);

    /// A reactor's coalescing under a made-up load: crowded turns, one a
    /// millisecond, each after a nap when the mode naps.
    struct Sim {
        c: Coalesce,
        start: Instant,
        ms: u64,
        moved: u64,
    }

    impl Sim {
        fn new() -> Self {
            let (c, start) = (Coalesce::new(NAP), Instant::now());
            Sim {
                c,
                start,
                ms: 0,
                moved: 0,
            }
        }

        /// One turn, `gap_ms` after the last, moving `bytes`.
        fn turn(&mut self, gap_ms: u64, bytes: u64, nap: bool) {
            if nap && self.c.napping {
                self.c.took_nap();
            }
            self.ms += gap_ms;
            self.moved += bytes;
            let now = self.start + Duration::from_millis(self.ms);
            self.c.after_poll(COALESCE_MIN_EVENTS, self.moved, now);
        }

        /// `windows` stretches or probes, each turn moving
        /// `rate(napping)` bytes; the mode after each window.
        fn run(&mut self, windows: usize, rate: impl Fn(bool) -> u64) -> Vec<bool> {
            let mut modes = Vec::new();
            for _ in 0..windows {
                let probing = self.c.probing;
                while self.c.probing == probing {
                    self.turn(1, rate(self.c.napping), true);
                }
                modes.push(self.c.napping);
            }
            modes
        }
    }

    #[test]
    fn naps_go_on_while_they_move_more_and_stop_when_they_move_less() {
        let mut sim = Sim::new();
        // Stretch (plain), probe (napping wins), stretch (napping), probe
        // (plain loses), stretch (napping).
        let modes = sim.run(4, |napping| if napping { 130 } else { 100 });
        assert_eq!(modes, [true, true, false, true]);
        // The load changes: naps now cost. The next probe (plain) wins.
        let modes = sim.run(3, |napping| if napping { 50 } else { 100 });
        assert_eq!(modes, [false, false, true]);
        let modes = sim.run(1, |napping| if napping { 50 } else { 100 });
        assert_eq!(modes, [false], "a lost probe goes back");
        assert!(sim.c.nap(None).is_none());
    }

    #[test]
    fn a_tie_or_a_small_gain_is_no_reason_to_nap() {
        let mut sim = Sim::new();
        let modes = sim.run(4, |_| 100);
        assert_eq!(modes, [true, false, true, false]);
        // 4% more, under the margin (1/16): not napping either.
        let modes = sim.run(4, |napping| if napping { 104 } else { 100 });
        assert_eq!(modes, [true, false, true, false]);
    }

    #[test]
    fn a_quiet_spell_ends_a_window_without_a_decision() {
        let mut sim = Sim::new();
        let better = |napping| if napping { 200 } else { 100 };
        assert_eq!(sim.run(3, better), [true, true, false], "napping won");
        // Quiet for longer than a probe: back to a plain stretch, and
        // the probe that was running decides nothing.
        sim.turn(COALESCE_PROBE.as_millis() as u64 + 1, 1, true);
        assert!(!sim.c.napping && !sim.c.probing);
        // Naps come back only after a fresh stretch and probe.
        assert_eq!(sim.run(2, better), [true, true]);
    }

    #[test]
    fn bursts_between_quiet_spells_never_start_naps() {
        let mut sim = Sim::new();
        for _ in 0..100 {
            // 10 ms of turns, quiet for 50 (a periodic client).
            for _ in 0..10 {
                sim.turn(1, 1000, true);
            }
            sim.ms += 50;
            assert!(sim.c.nap(None).is_none());
        }
    }

    #[test]
    fn naps_need_evidence() {
        // A napping probe in which no nap was taken (never crowded).
        let mut sim = Sim::new();
        let mut modes = Vec::new();
        for _ in 0..2 {
            let probing = sim.c.probing;
            while sim.c.probing == probing {
                let bytes = if sim.c.napping { 200 } else { 100 };
                sim.turn(1, bytes, false);
            }
            modes.push(sim.c.napping);
        }
        assert_eq!(modes, [true, false], "no naps taken: no evidence");
        // A stretch that moved nothing: any probe would beat it.
        let modes = sim.run(2, |napping| if napping { 100 } else { 0 });
        assert_eq!(
            modes,
            [true, false],
            "nothing moved without naps: no evidence"
        );
    }

    #[test]
    fn no_nap_unless_crowded_and_a_thin_nap_ends_them() {
        let mut c = Coalesce::new(NAP);
        let now = Instant::now();
        c.after_poll(1, 0, now);
        c.napping = true;
        assert_eq!(c.nap(None), None, "one event a turn is no crowd");
        c.after_poll(COALESCE_MIN_EVENTS, 0, now);
        assert_eq!(c.nap(None), Some(NAP));
        let short = Duration::from_micros(5);
        assert_eq!(c.nap(Some(short)), Some(short), "cut to the wait");
        assert_eq!(c.nap(Some(Duration::ZERO)), None, "work waits: no nap");
        // A turn without a nap and one event keeps them on ...
        c.after_poll(1, 0, now);
        assert_eq!(c.nap(None), Some(NAP));
        // ... a nap that gathered one ends them.
        c.took_nap();
        c.after_poll(1, 0, now);
        assert_eq!(c.nap(None), None);
    }

    #[test]
    fn off_means_never() {
        let mut c = Coalesce::new(Duration::ZERO);
        assert!(!c.is_on());
        c.napping = true;
        c.crowded = true;
        assert_eq!(c.nap(None), None);
    }
}
