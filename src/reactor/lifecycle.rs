//! The reactor's own life: graceful shutdown, signals, and the deadline.
//!
//! Shutdown, the way nginx and Go's `http.Server.Shutdown` do it: stop
//! accepting, tell the handler (it may say goodbye), close every
//! connection once its output is flushed (with a lingering close, so the
//! last bytes are not destroyed by a RST), and cut whatever is left at the
//! deadline. A second SIGINT/SIGTERM cuts at once.

use std::io;

use mio::Interest;
use signal_hook_mio::v1_0::Signals;

use super::core::{Lifecycle, TimerEvent};
use super::{id_of, Reactor, Status, SIGNALS};
use crate::conn::{CloseReason, ConnId};
use crate::handler::{Context, Handler};
use crate::sys::{SIGINT, SIGTERM};

impl<H: Handler> Reactor<H> {
    /// Routes SIGINT and SIGTERM into the loop: the first begins graceful
    /// shutdown, a second stops at once. Opt-in, because a program that
    /// embeds the reactor may own its signals itself.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        self.core
            .poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Stops without draining: every connection is cut at the end of this
    /// turn (what a second signal does).
    pub fn stop(&mut self) {
        self.stop_now = true;
    }

    /// The signal pipe became readable.
    pub(super) fn on_signals(&mut self) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        for signal in signals.pending() {
            let name = if signal == SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            if self.core.lifecycle == super::Lifecycle::Running && !self.core.shutdown_requested {
                log::info!("{name}: shutting down gracefully (again to stop at once)");
                self.core.shutdown_requested = true;
            } else {
                log::warn!("{name} again: stopping now");
                self.stop_now = true;
            }
        }
    }

    /// Step 9: begin a requested shutdown, cut if asked, report when done.
    pub(super) fn check_shutdown(&mut self) -> Status {
        if (self.core.shutdown_requested || self.stop_now)
            && self.core.lifecycle == Lifecycle::Running
        {
            self.begin_shutdown();
        }
        if self.stop_now {
            self.stop_now = false;
            self.cut_remaining();
        }
        if self.core.lifecycle == Lifecycle::Draining && self.core.conns.is_empty() {
            let stats = &mut self.core.stats;
            stats.shutdown_drained = (self.draining_from as u64).saturating_sub(stats.shutdown_cut);
            log::info!(
                "shutdown complete: {} connections drained, {} cut",
                stats.shutdown_drained,
                stats.shutdown_cut
            );
            self.core.lifecycle = Lifecycle::Stopped;
        }
        match self.core.lifecycle {
            Lifecycle::Stopped => Status::Stopped,
            _ => Status::Running,
        }
    }

    /// Stop accepting, tell the handler, close every connection once its
    /// output is flushed, and set the deadline.
    fn begin_shutdown(&mut self) {
        self.core.shutdown_requested = false;
        self.core.lifecycle = Lifecycle::Draining;
        self.listeners.clear();
        let mut cx = Context {
            core: &mut self.core,
        };
        self.handler.on_shutdown(&mut cx);
        let ids = self.all_conns();
        for &id in &ids {
            self.core.close(id, CloseReason::Shutdown);
        }
        self.draining_from = ids.len();
        let timeout = self.core.config.shutdown_timeout;
        let at = self.core.now.saturating_add(timeout.as_millis() as u64);
        self.core.wheel.insert(at, TimerEvent::ShutdownDeadline);
        log::info!(
            "shutting down: draining {} connections (deadline {timeout:?})",
            ids.len()
        );
    }

    /// The deadline passed, or a second signal came: close what is left.
    pub(super) fn cut_remaining(&mut self) {
        let ids = self.all_conns();
        if !ids.is_empty() {
            log::warn!(
                "shutdown: cutting {} of {} connections",
                ids.len(),
                self.draining_from
            );
        }
        self.core.stats.shutdown_cut += ids.len() as u64;
        for id in ids {
            self.core.kill(id, CloseReason::Shutdown);
        }
    }

    fn all_conns(&self) -> Vec<ConnId> {
        self.core
            .conns
            .iter()
            .filter(|(_, c)| !c.state().is_closed())
            .map(|(i, c)| id_of(i, c))
            .collect()
    }
}
