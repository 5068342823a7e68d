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
//! - **Busy:** a nap is taken only after a turn that handled
//!   [`COALESCE_MIN_EVENTS`] or more events, and a nap that gathered
//!   fewer stops the naps until such a turn comes again. A quiet server,
//!   or a lone client in request and reply (one event a turn), never
//!   waits for one.
//! - **Worth it:** the reactor runs a stretch ([`COALESCE_STRETCH`]) in
//!   one mode, napping or not, then a probe ([`COALESCE_PROBE`]) in the
//!   other, and goes on napping only if napping moved more bytes per
//!   second, by a margin ([`COALESCE_MARGIN`]) for the latency the
//!   bytes do not show. A few
//!   clients in lockstep with the reactor lose to a nap (each request
//!   waits for it, and nothing else runs meanwhile: their rate falls), a
//!   crowd whose other work fills the CPU gains from it (their rate
//!   rises), and the probe tells them apart.
//!
//! [`Config::coalesce`]: crate::Config::coalesce

use std::time::{Duration, Instant};

use crate::config::{COALESCE_MARGIN, COALESCE_MIN_EVENTS, COALESCE_PROBE, COALESCE_STRETCH};

/// Whether naps are on, and the measurements that decide it.
pub(super) struct Coalesce {
    /// The configured nap; zero: never.
    nap: Duration,
    /// This stretch or probe naps.
    napping: bool,
    /// The last turn was busy, and no nap since came back with too few
    /// events.
    busy: bool,
    /// The poll of this turn came after a nap.
    napped: bool,
    /// A probe runs now (else a stretch).
    probing: bool,
    /// When this stretch or probe began, and the bytes moved by then.
    began: Option<(Instant, u64)>,
    /// Bytes per second in the last stretch.
    stretch_rate: u64,
}

impl Coalesce {
    pub(super) fn new(nap: Duration) -> Self {
        Coalesce {
            nap,
            napping: false,
            busy: false,
            napped: false,
            probing: false,
            began: None,
            stretch_rate: 0,
        }
    }

    /// How long to nap before this poll, if at all: never longer than
    /// `wait`, the time the poll may take.
    pub(super) fn nap(&self, wait: Option<Duration>) -> Option<Duration> {
        let nap = self.nap.min(wait.unwrap_or(Duration::MAX));
        (self.napping && self.busy && !nap.is_zero()).then_some(nap)
    }

    /// This turn's poll came after a nap (or not).
    pub(super) fn set_napped(&mut self, napped: bool) {
        self.napped = napped;
    }

    /// After each poll: it returned `events`; `moved` is every byte read
    /// and written so far, read at `now`.
    pub(super) fn after_poll(&mut self, events: usize, moved: u64, now: Instant) {
        if self.nap.is_zero() {
            return;
        }
        if events >= COALESCE_MIN_EVENTS {
            self.busy = true;
        } else if self.napped {
            self.busy = false;
        }
        let (began, moved_then) = *self.began.get_or_insert((now, moved));
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
            let (nap_rate, plain_rate) = if self.napping {
                (rate, self.stretch_rate)
            } else {
                (self.stretch_rate, rate)
            };
            self.napping = nap_rate > plain_rate + plain_rate / COALESCE_MARGIN;
        } else {
            self.stretch_rate = rate;
            self.napping = !self.napping;
        }
        self.probing = !self.probing;
        self.began = Some((now, moved));
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

    /// A reactor's coalescing under a made-up load: busy turns, one a
    /// millisecond.
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

        /// `windows` stretches or probes, each turn moving
        /// `rate(napping)` bytes; the mode after each window.
        fn run(&mut self, windows: usize, rate: impl Fn(bool) -> u64) -> Vec<bool> {
            let mut modes = Vec::new();
            for _ in 0..windows {
                let probing = self.c.probing;
                while self.c.probing == probing {
                    self.moved += rate(self.c.napping);
                    self.ms += 1;
                    let now = self.start + Duration::from_millis(self.ms);
                    self.c.after_poll(COALESCE_MIN_EVENTS, self.moved, now);
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
    fn no_nap_unless_busy_and_a_thin_nap_ends_them() {
        let mut c = Coalesce::new(NAP);
        c.napping = true;
        let now = Instant::now();
        c.after_poll(1, 0, now);
        assert_eq!(c.nap(None), None, "one event a turn is not busy");
        c.after_poll(COALESCE_MIN_EVENTS, 0, now);
        assert_eq!(c.nap(None), Some(NAP));
        assert_eq!(
            c.nap(Some(Duration::from_micros(5))),
            Some(Duration::from_micros(5))
        );
        assert_eq!(c.nap(Some(Duration::ZERO)), None, "work waits: no nap");
        // A turn without a nap and one event keeps them on ...
        c.after_poll(1, 0, now);
        assert_eq!(c.nap(None), Some(NAP));
        // ... a nap that gathered one ends them.
        c.set_napped(true);
        c.after_poll(1, 0, now);
        assert_eq!(c.nap(None), None);
    }

    #[test]
    fn off_means_never() {
        let mut c = Coalesce::new(Duration::ZERO);
        c.napping = true;
        c.after_poll(100, 0, Instant::now());
        assert_eq!(c.nap(None), None);
    }
}
