//! The reactor's own life: graceful shutdown, signals, and the deadline.
//!
//! Shutdown, the way nginx and Go's `http.Server.Shutdown` do it:
//!
//! 1. accept what already waits in the listen queues (closing a listener
//!    resets every connection still in its queue), then close the
//!    listeners;
//! 2. tell the handler (it may say goodbye);
//! 3. close each connection with FIN once it is *quiet*: no input left, no
//!    output waiting, and the handler owes it nothing
//!    ([`Handler::is_busy`]). Until then it is served as usual, so a
//!    request sent before or during shutdown is answered, even by a
//!    timer or a posted message. The close lingers, so the last bytes are
//!    not destroyed by a RST;
//! 4. at the deadline, cut whatever is left with RST: an answer cut short
//!    must not end in a FIN that makes it look complete. A second
//!    SIGINT/SIGTERM cuts at once.
//!
//! Asking again while shutting down changes nothing; the request flag is
//! cleared every turn, so it can never keep the poll from sleeping.
//!
//! A handler that panics unwinds out of `run_once`; `recover` first makes
//! the reactor consistent for the next call.

use std::io;

use mio::{Events, Interest};
use signal_hook_mio::v1_0::Signals;

use super::core::Lifecycle;
use super::timeouts::TimerEvent;
use super::{Reactor, Status, SIGNALS};
use crate::config::EVENTS_CAPACITY;
use crate::conn::{CloseReason, ConnId};
use crate::handle::Command;
use crate::handler::Handler;
use crate::state::State;
use crate::sys::{SIGINT, SIGTERM};

impl<H: Handler> Reactor<H> {
    /// Routes SIGINT and SIGTERM into the loop: the first begins graceful
    /// shutdown, a second stops at once. Opt-in, because a program that
    /// embeds the reactor may own its signals itself.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        self.core
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Stops without waiting for quiet: every connection is cut at the end of this
    /// turn (what a second signal does).
    pub fn stop(&mut self) {
        self.stop_now = true;
    }

    /// Joins a `Server`: `max_conns` and the per-address cap count every
    /// shard's connections (see `src/server.rs`).
    pub(crate) fn join_server(
        &mut self,
        census: std::sync::Arc<crate::server::Census>,
        per_ip: std::sync::Arc<
            std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
        >,
    ) {
        self.core.join_census(census);
        self.core.admission().share_per_ip(per_ip);
    }

    /// Leaves the server it joined: the connections still in the slab
    /// (none after a clean `run`; some after a panic) give back their
    /// places in the server's count and their per-address counts.
    pub(crate) fn leave_server(&mut self) {
        self.core.leave_census();
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
            if self.core.lifecycle() == Lifecycle::Running && !self.core.shutdown_requested() {
                log::info!("{name}: shutting down gracefully (again to stop at once)");
                self.core.request_shutdown();
            } else {
                log::warn!("{name} again: stopping now");
                self.stop_now = true;
            }
        }
    }

    /// Step 9: begin a requested shutdown, cut if asked, report when done.
    pub(super) fn check_shutdown(&mut self) -> Status {
        // Cleared whatever the lifecycle: a request while shutting down changes
        // nothing, and must not keep the next poll from sleeping.
        let requested = self.core.take_shutdown_request();
        if (requested || self.stop_now) && self.core.lifecycle() == Lifecycle::Running {
            self.begin_shutdown();
        }
        if !self.queued.is_empty() {
            // Left by a handler that panicked while they were admitted.
            self.admit_backlog();
        }
        if self.stop_now {
            self.stop_now = false;
            self.cut_remaining();
        }
        if self.core.lifecycle() == Lifecycle::ShuttingDown && self.core.len() == 0 {
            self.finish_shutdown();
        }
        match self.core.lifecycle() {
            Lifecycle::Stopped => Status::Stopped,
            _ => Status::Running,
        }
    }

    /// Stop accepting (after taking what waits in the queues), set the
    /// deadline, tell the handler, and close every quiet connection. The
    /// reactor's own state is settled before any handler code runs, so a
    /// handler that panics here leaves a shutdown that goes on.
    fn begin_shutdown(&mut self) {
        self.core.set_lifecycle(Lifecycle::ShuttingDown);
        let timeout = self.core.config().shutdown_timeout;
        let at = self.core.time().after(timeout);
        self.core.wheel().insert(at, TimerEvent::ShutdownDeadline);
        self.queued = self.take_backlog();
        self.listeners.clear();
        let ids = self.core.open_ids();
        self.closing_from = ids.len() + self.queued.len();
        log::info!(
            "shutting down: closing {} connections as they go quiet, and {} taken from the listen queue (deadline {timeout:?})",
            ids.len(),
            self.queued.len()
        );
        self.dispatch(None, |h, cx| h.on_shutdown(cx));
        // Idle pooled connections and warm connects wait for no request:
        // closed now, not left to hold shutdown to its deadline.
        self.core.close_pool();
        self.admit_backlog();
        // A request may sit in a socket whose edge this turn's poll did not
        // report (its event is still in the kernel's list): read every
        // connection once before judging it quiet. One read each, once per
        // shutdown.
        for id in ids {
            if let Some(conn) = self.core.conn_mut(id) {
                conn.readable = true;
            }
            self.serve(id);
        }
    }

    /// During shutdown: closes `id` with FIN (after its output) once
    /// nothing is left to do for it.
    pub(super) fn close_if_quiet(&mut self, id: ConnId) {
        let Some(conn) = self.core.conn(id) else {
            return;
        };
        if conn.state() == State::Handshaking && conn.listener != crate::conn::NO_LISTENER {
            // An accepted TLS connection still in its handshake has asked
            // nothing yet, and its handler has not heard of it: closed
            // now, not left to hold shutdown until its handshake timeout.
            self.core.close(id, CloseReason::Shutdown);
            return;
        }
        // Only these states wait on nothing but the next request: an
        // outbound connect in progress, or a side that sent its FIN and
        // waits for the peer's, is still on its way somewhere.
        let open = matches!(conn.state(), State::Open | State::ReadClosed);
        // Input waiting in the kernel is a request already sent, so not
        // quiet. A connection being read has it read by `serve` (or
        // is on the ready list, still readable); a paused one is asked.
        // Plaintext a TLS session decrypted and the handler has not
        // taken is input too, which no peek of the socket sees.
        let unread = conn.state().may_read()
            && conn.readable
            && (!conn.is_paused() || conn.input_waiting() || self.core.plaintext_waiting(id));
        let quiet = open && !unread && conn.input.is_none() && !conn.has_output();
        if quiet && !self.handler.is_busy(id) {
            self.core.close(id, CloseReason::Shutdown);
            self.core.flush(id);
        }
    }

    /// The deadline passed, or a second signal came: cut what is left,
    /// with RST where an answer may be cut short.
    pub(super) fn cut_remaining(&mut self) {
        let ids = self.core.open_ids();
        if !ids.is_empty() {
            log::warn!(
                "shutdown: cutting {} of {} connections",
                ids.len(),
                self.closing_from
            );
        }
        self.core.counters().shutdown_cut += ids.len() as u64;
        for id in ids {
            self.cut(id);
        }
    }

    /// Closes at the shutdown deadline or a second signal: with RST unless
    /// our FIN already followed the whole answer (lingering), so an answer
    /// cut short never looks complete to the peer.
    fn cut(&mut self, id: ConnId) {
        let Some(conn) = self.core.conn(id) else {
            return;
        };
        if !matches!(conn.state(), State::Lingering(_)) {
            // SO_LINGER 0: the close in step 8 sends RST.
            conn.stream.reset_on_close();
        }
        self.core.abort(id, CloseReason::Shutdown);
    }

    /// Every connection is gone: refuse further posts, and deliver the
    /// messages posted before that (a post that succeeded is never lost).
    fn finish_shutdown(&mut self) {
        let stats = self.core.counters();
        stats.shutdown_closed = (self.closing_from as u64).saturating_sub(stats.shutdown_cut);
        log::info!(
            "shutdown complete: {} connections closed, {} cut",
            stats.shutdown_closed,
            stats.shutdown_cut
        );
        self.core.set_lifecycle(Lifecycle::Stopped);
        let mut late = self.shared.close();
        self.inbox.append(&mut late);
        while let Some(command) = self.inbox.pop_front() {
            if let Command::Post(message) = command {
                self.dispatch(None, |h, cx| h.on_message(cx, message));
            }
        }
    }

    /// After a panic in the middle of a turn: the work lists and the
    /// events of the turn were cut off, so every connection is treated as
    /// ready in both directions (a read or write that finds nothing costs
    /// one `WouldBlock`; a lost edge would cost a connection forever), and
    /// the connection whose callback panicked is reset. Costs one pass
    /// over the connections, only after a panic.
    pub(super) fn recover(&mut self) {
        if self.events.capacity() == 0 {
            self.events = Events::with_capacity(EVENTS_CAPACITY);
        }
        if let Some(id) = self.core.dispatching() {
            self.core.set_dispatching(None);
            log::error!("conn {id}: handler panicked: resetting the connection");
            self.core.abort(id, CloseReason::HandlerPanic);
        }
        // The waker's and the signal pipe's edges may have been among the
        // events cut off: take what they announced now.
        self.shared.take_into(&mut self.inbox);
        self.on_signals();
        self.core.clear_lists();
        for id in self.core.all_ids() {
            if let Some(conn) = self.core.conn_mut(id) {
                conn.readable = true;
                conn.writable = true;
            }
            self.core.push_ready(id);
            self.core.push_flush(id);
        }
        // A buffer in the handler's hands when it panicked was dropped.
        self.core.recount_buffers();
        for l in self.listeners.iter_mut().flatten() {
            l.pending = true;
        }
    }
}
