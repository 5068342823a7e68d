//! Reaching the reactor from other threads.
//!
//! The reactor's thread is asleep in `epoll_wait` most of the time, so
//! another thread cannot just call into it. A [`Handle`] pushes a command on
//! a mutex-guarded queue and then wakes the poll through a [`mio::Waker`]
//! (an `eventfd` registered with the poll). The reactor takes the whole queue in
//! the turn that wakes it. This is the only lock in the crate, and the
//! reactor's thread takes it only when the waker fires.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use mio::Waker;

use crate::admission::Cidr;
use crate::conn::ConnId;
use crate::reactor::Found;

/// What other threads can ask of the reactor.
#[derive(Debug)]
pub(crate) enum Command<M> {
    /// Begin graceful shutdown.
    Shutdown,
    /// Stop at once: cut every connection (what a second signal does).
    Stop,
    /// Deliver a message to the handler's `on_message`.
    Post(M),
    /// Change who may connect, and how many.
    Admit(AdmitChange),
    /// The resolver thread found a connection's addresses (or did not).
    Resolved(ConnId, Found),
}

/// A change to admission, made from another thread while the reactor runs.
#[derive(Debug)]
pub(crate) enum AdmitChange {
    MaxConns(usize),
    Allow(Vec<Cidr>),
    Deny(Vec<Cidr>),
    MaxPerIp(Option<usize>),
}

#[derive(Debug)]
struct Queue<M> {
    commands: VecDeque<Command<M>>,
    /// The reactor stopped: nothing more is taken. Set under the lock, so
    /// a post either lands before the reactor's last look or is refused.
    closed: bool,
}

#[derive(Debug)]
pub(crate) struct Shared<M> {
    waker: Waker,
    queue: Mutex<Queue<M>>,
    /// Messages `try_post` lets wait (`Config::post_queue`).
    limit: usize,
}

impl<M> Shared<M> {
    pub(crate) fn new(waker: Waker, limit: usize) -> Self {
        Shared {
            waker,
            queue: Mutex::new(Queue {
                commands: VecDeque::new(),
                closed: false,
            }),
            limit,
        }
    }

    /// A poisoned lock (a thread panicked while pushing) still holds a
    /// valid queue, so it is used as is.
    fn lock(&self) -> MutexGuard<'_, Queue<M>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves every queued command to the back of `into`.
    pub(crate) fn take_into(&self, into: &mut VecDeque<Command<M>>) {
        into.append(&mut self.lock().commands);
    }

    /// The reactor stopped: refuse what comes from now on, and hand back
    /// what was posted but not yet taken.
    pub(crate) fn close(&self) -> VecDeque<Command<M>> {
        let mut queue = self.lock();
        queue.closed = true;
        std::mem::take(&mut queue.commands)
    }

    /// A lookup's result, from the resolver thread; `false` (and dropped)
    /// if the reactor has stopped.
    pub(crate) fn push_found(&self, id: ConnId, found: Found) -> bool {
        self.push(Command::Resolved(id, found), false).is_ok()
    }

    fn push(&self, command: Command<M>, bounded: bool) -> Result<(), PostError<Command<M>>> {
        {
            let mut queue = self.lock();
            if queue.closed {
                return Err(PostError::Stopped(command));
            }
            if bounded && queue.commands.len() >= self.limit {
                return Err(PostError::Full(command));
            }
            queue.commands.push_back(command);
        }
        if let Err(e) = self.waker.wake() {
            // An eventfd write fails only if its counter is saturated, which
            // means the reactor will wake anyway.
            log::warn!("waking the reactor failed: {e}");
        }
        Ok(())
    }
}

/// Why [`Handle::try_post`] gave a message back.
#[derive(Debug, PartialEq, Eq)]
pub enum PostError<M> {
    /// [`Config::post_queue`](crate::Config::post_queue) messages already
    /// wait: the reactor is behind. Try again later, or drop it.
    Full(M),
    /// The reactor has stopped (or was dropped): it will never run.
    Stopped(M),
}

impl<M> PostError<M> {
    /// The message that was not posted.
    pub fn into_inner(self) -> M {
        match self {
            PostError::Full(m) | PostError::Stopped(m) => m,
        }
    }

    fn map<N>(self, f: impl FnOnce(M) -> N) -> PostError<N> {
        match self {
            PostError::Full(m) => PostError::Full(f(m)),
            PostError::Stopped(m) => PostError::Stopped(f(m)),
        }
    }
}

impl<M> fmt::Display for PostError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PostError::Full(_) => "the reactor's message queue is full",
            PostError::Stopped(_) => "the reactor has stopped",
        })
    }
}

impl<M: fmt::Debug> std::error::Error for PostError<M> {}

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
    /// Asks the reactor to shut down gracefully: stop accepting, answer
    /// what was asked, close connections, return from `run` (see
    /// [`Reactor::run`]). Asking again changes nothing. Returns `false` if
    /// the reactor has already stopped.
    ///
    /// [`Reactor::run`]: crate::Reactor::run
    pub fn shutdown(&self) -> bool {
        self.shared.push(Command::Shutdown, false).is_ok()
    }

    /// Asks the reactor to stop at once, as a second signal does: every
    /// connection is cut at the end of its next turn (see
    /// [`Reactor::stop`]). Returns `false` if the reactor has already
    /// stopped.
    ///
    /// [`Reactor::stop`]: crate::Reactor::stop
    pub fn stop(&self) -> bool {
        self.shared.push(Command::Stop, false).is_ok()
    }

    /// Delivers `message` to the handler's `on_message` on the reactor's
    /// thread, in order with other posts. Gives the message back if the
    /// reactor has stopped. A message accepted here is delivered, even if
    /// the reactor stops before its next turn.
    ///
    /// The queue has no bound: a thread that posts faster than the
    /// reactor handles messages should use [`try_post`](Self::try_post).
    pub fn post(&self, message: M) -> Result<(), M> {
        self.shared
            .push(Command::Post(message), false)
            .map_err(|e| e.map(unwrap_post).into_inner())
    }

    /// Like [`post`](Self::post), but gives the message back when
    /// [`Config::post_queue`](crate::Config::post_queue) messages already
    /// wait.
    pub fn try_post(&self, message: M) -> Result<(), PostError<M>> {
        self.shared
            .push(Command::Post(message), true)
            .map_err(|e| e.map(unwrap_post))
    }
}

/// Who may connect, and how many: changed while the reactor runs, from
/// any thread. Each takes effect at the reactor's next turn, for the
/// connections accepted from then on; connections already open stay.
/// Each returns `false` if the reactor has stopped.
impl<M> Handle<M> {
    /// Accept at most `n` connections at once (at least 1: a reactor
    /// that may accept nothing is [`Reactor::pause_listener`]'s job).
    /// Lowering it below the connections open stops accepting until
    /// enough close; raising it reopens listeners at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use evloop::Cidr;
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Message = ();
    /// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { let _ = cx.write(c, i); i.len() }
    /// # }
    /// let mut reactor = Reactor::new(Echo, Config::default())?;
    /// reactor.listen("127.0.0.1:0".parse().unwrap())?;
    /// // Each thread takes its own handle (they are Clone and Send).
    /// let admin = reactor.handle();
    /// // An operator's thread tightens admission while the loop runs.
    /// let operator = std::thread::spawn(move || -> Result<(), evloop::CidrError> {
    ///     admin.set_max_conns(1_000);
    ///     admin.set_max_per_ip(Some(16));
    ///     admin.set_deny(vec!["203.0.113.0/24".parse::<Cidr>()?]);
    ///     Ok(())
    /// });
    /// operator.join().expect("operator thread")?;
    /// // The reactor's next turn applies them, for connections accepted from then on.
    /// reactor.run_once(Some(Duration::ZERO))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// [`Reactor::pause_listener`]: crate::Reactor::pause_listener
    pub fn set_max_conns(&self, n: usize) -> bool {
        self.admit(AdmitChange::MaxConns(n.max(1)))
    }

    /// Only these networks may connect (empty: everyone not denied).
    ///
    /// ```
    /// use evloop::Cidr;
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Message = ();
    /// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { let _ = cx.write(c, i); i.len() }
    /// # }
    /// # let reactor = Reactor::new(Echo, Config::default())?;
    /// let handle = reactor.handle();
    /// // The office network and this host, from a config file's lines.
    /// let allow = ["192.0.2.0/24", "127.0.0.1", "::1"]
    ///     .iter()
    ///     .map(|line| line.parse::<Cidr>())
    ///     .collect::<Result<Vec<_>, _>>()?;
    /// assert!(handle.set_allow(allow));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_allow(&self, allow: Vec<Cidr>) -> bool {
        self.admit(AdmitChange::Allow(allow))
    }

    /// These networks may not connect; the deny list wins over the allow
    /// list.
    ///
    /// ```
    /// use evloop::Cidr;
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Message = ();
    /// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { let _ = cx.write(c, i); i.len() }
    /// # }
    /// # let reactor = Reactor::new(Echo, Config::default())?;
    /// let handle = reactor.handle();
    /// // A scanner's network: refused even if the allow list names it.
    /// let scanner: Cidr = "198.51.100.0/24".parse()?;
    /// assert!(handle.set_deny(vec![scanner]));
    /// // An empty list denies nobody again.
    /// handle.set_deny(Vec::new());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_deny(&self, deny: Vec<Cidr>) -> bool {
        self.admit(AdmitChange::Deny(deny))
    }

    /// At most this many connections from one address (`None`: no cap).
    /// Connections are counted per address only while a cap is set, so a
    /// cap set at run time counts the connections opened from then on.
    ///
    /// ```
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Message = ();
    /// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { let _ = cx.write(c, i); i.len() }
    /// # }
    /// # let reactor = Reactor::new(Echo, Config::default())?;
    /// let handle = reactor.handle();
    /// assert!(handle.set_max_per_ip(Some(8)));
    /// handle.set_max_per_ip(None); // no cap again
    /// // Once the reactor is gone, nothing is taken.
    /// drop(reactor);
    /// assert!(!handle.set_max_per_ip(Some(8)));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_max_per_ip(&self, cap: Option<usize>) -> bool {
        self.admit(AdmitChange::MaxPerIp(cap))
    }

    fn admit(&self, change: AdmitChange) -> bool {
        self.shared.push(Command::Admit(change), false).is_ok()
    }
}

fn unwrap_post<M>(command: Command<M>) -> M {
    match command {
        Command::Post(message) => message,
        _ => unreachable!("push gives back the command it was given"),
    }
}
