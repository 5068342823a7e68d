//! Helpers for tests that bring their own handler instead of the probe in
//! `common`: a reactor on its own thread, a record shared between the
//! handler and the test, and a bounded `run_once` loop for tests that
//! drive the reactor on their own thread. A test file using it declares
//! `mod common;` too.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use evloop::{Config, Handle, Handler, Reactor, Status};

use crate::common::PATIENCE;

/// What a handler saw, shared with the test.
pub struct Shared<T>(Arc<Mutex<T>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<T: Default> Default for Shared<T> {
    fn default() -> Self {
        Shared(Arc::new(Mutex::new(T::default())))
    }
}

impl<T> Shared<T> {
    pub fn lock(&self) -> MutexGuard<'_, T> {
        // A handler that panicked on purpose may have poisoned it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (on another thread's reactor) until `cond` holds.
    pub fn wait_for(&self, what: &str, cond: impl Fn(&T) -> bool) {
        let end = Instant::now() + PATIENCE;
        while Instant::now() < end {
            if cond(&self.lock()) {
                return;
            }
            thread::sleep(Duration::from_millis(2));
        }
        panic!("timed out waiting for {what}");
    }
}

/// A reactor running a test's handler on its own thread.
pub struct Running<H: Handler> {
    pub addr: SocketAddr,
    pub handle: Handle<H::Message>,
    thread: Option<JoinHandle<Reactor<H>>>,
}

/// Starts `handler` listening on 127.0.0.1 (a free port) on a new thread.
pub fn spawn<H>(handler: H, config: Config) -> Running<H>
where
    H: Handler + Send + 'static,
{
    let _ = env_logger::builder().is_test(true).try_init();
    let mut reactor = Reactor::new(handler, config).expect("reactor");
    let listener = reactor
        .listen("127.0.0.1:0".parse().unwrap())
        .expect("listen");
    let addr = reactor.listener_addr(listener).expect("bound");
    let handle = reactor.handle();
    let thread = thread::spawn(move || {
        reactor.run().expect("reactor run");
        reactor
    });
    Running {
        addr,
        handle,
        thread: Some(thread),
    }
}

impl<H: Handler> Running<H> {
    /// Graceful shutdown; returns the reactor once `run` has returned.
    pub fn stop(mut self) -> Reactor<H> {
        self.handle.shutdown();
        self.join()
    }

    /// Waits for `run` to return (someone asked for shutdown).
    pub fn join(&mut self) -> Reactor<H> {
        crate::common::join_within(self.thread.take().expect("joined twice"))
    }
}

impl<H: Handler> Drop for Running<H> {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.handle.shutdown();
        }
    }
}

/// Runs turns on this thread until `cond` holds of the reactor; fails
/// after [`PATIENCE`]. Returns the last status.
pub fn turn_until<H: Handler>(
    reactor: &mut Reactor<H>,
    what: &str,
    mut cond: impl FnMut(&Reactor<H>) -> bool,
) -> Status {
    let end = Instant::now() + PATIENCE;
    let mut status = Status::Running;
    while !cond(reactor) {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        status = reactor
            .run_once(Some(Duration::from_millis(5)))
            .expect("run_once");
    }
    status
}

/// The first `\n`-terminated line of `input`, with its `\n`.
pub fn first_line(input: &[u8]) -> Option<&[u8]> {
    input.iter().position(|&b| b == b'\n').map(|i| &input[..=i])
}
