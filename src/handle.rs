//! Reaching the reactor from other threads.
//!
//! The reactor's thread is asleep in `epoll_wait` most of the time, so
//! another thread cannot just call into it. A [`Handle`] pushes a command on
//! a mutex-guarded queue and then wakes the poll through a [`mio::Waker`]
//! (an `eventfd` registered with the poll). The reactor drains the queue in
//! the turn that wakes it. This is the only lock in the crate, and the
//! reactor's thread takes it only when the waker fires.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mio::Waker;

/// What other threads can ask of the reactor.
#[derive(Debug)]
pub(crate) enum Command<M> {
    /// Begin graceful shutdown.
    Shutdown,
    /// Deliver a message to the handler's `on_message`.
    Post(M),
}

#[derive(Debug)]
pub(crate) struct Shared<M> {
    pub(crate) waker: Waker,
    pub(crate) queue: Mutex<VecDeque<Command<M>>>,
    /// Set when the reactor is dropped: posts fail instead of piling up.
    pub(crate) gone: AtomicBool,
}

impl<M> Shared<M> {
    /// Takes every queued command. A poisoned lock (a thread panicked while
    /// pushing) still holds a valid queue, so it is used as is.
    pub(crate) fn drain(&self) -> VecDeque<Command<M>> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *queue)
    }

    fn push(&self, command: Command<M>) -> Result<(), Command<M>> {
        if self.gone.load(Ordering::Acquire) {
            return Err(command);
        }
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(command);
        if let Err(e) = self.waker.wake() {
            // An eventfd write fails only if its counter is saturated, which
            // means the reactor will wake anyway.
            log::warn!("waking the reactor failed: {e}");
        }
        Ok(())
    }
}

/// A `Send + Clone` handle to a running reactor: stop it, or post messages
/// to its handler, from any thread. Get one from [`Reactor::handle`].
///
/// [`Reactor::handle`]: crate::Reactor::handle
#[derive(Debug)]
pub struct Handle<M> {
    pub(crate) shared: Arc<Shared<M>>,
}

impl<M> Clone for Handle<M> {
    fn clone(&self) -> Self {
        Handle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M> Handle<M> {
    /// Asks the reactor to shut down gracefully: stop accepting, flush and
    /// close connections, return from `run` (see [`Reactor::run`]). Returns
    /// `false` if the reactor is already gone.
    ///
    /// [`Reactor::run`]: crate::Reactor::run
    pub fn shutdown(&self) -> bool {
        self.shared.push(Command::Shutdown).is_ok()
    }

    /// Delivers `message` to the handler's `on_message` on the reactor's
    /// thread, in order with other posts. Gives the message back if the
    /// reactor is gone.
    pub fn post(&self, message: M) -> Result<(), M> {
        self.shared
            .push(Command::Post(message))
            .map_err(|command| match command {
                Command::Post(message) => message,
                Command::Shutdown => unreachable!("push returns what it was given"),
            })
    }
}
