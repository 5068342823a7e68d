//! What an embedder sees from outside the loop: `Reactor::connect` called
//! between turns measures its connect timeout from the call, not from the
//! last turn; `Context::peer_addr` still answers in `on_close`; and the
//! `Handle`'s queue gives messages back when it is full or the reactor has
//! stopped, and delivers a message posted while shutdown completes.

mod common;
mod harness;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use common::*;
use evloop::{CloseReason, Config, ConnId, Context, Handle, Handler, PostError, Reactor, Status};
use harness::{spawn, turn_until, Shared};

/// What an outbound connection did.
#[derive(Default)]
struct Outbound {
    opened: Vec<ConnId>,
    closed: Vec<(ConnId, CloseReason)>,
}

impl Handler for Outbound {
    type Message = ();

    fn on_open(&mut self, _cx: &mut Context<'_>, conn: ConnId) {
        self.opened.push(conn);
    }

    fn on_data(&mut self, _cx: &mut Context<'_>, _conn: ConnId, input: &[u8]) -> usize {
        input.len()
    }

    fn on_close(&mut self, _cx: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        self.closed.push((conn, reason));
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// Between the last turn and the connect: longer than the timeout.
const GAP: Duration = Duration::from_secs(1);

/// A reactor that ran one turn and then sat idle for [`GAP`].
fn idle_reactor() -> Reactor<Outbound> {
    let config = Config {
        connect_timeout: CONNECT_TIMEOUT,
        ..Config::default()
    };
    let mut reactor = Reactor::new(Outbound::default(), config).expect("reactor");
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    thread::sleep(GAP);
    reactor
}

#[test]
fn connect_after_a_long_gap_between_turns_opens() {
    // The kernel completes the handshake; nobody needs to accept.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut reactor = idle_reactor();
    let conn = reactor.connect(listener.local_addr().unwrap()).unwrap();
    turn_until(&mut reactor, "the connect to finish", |r| {
        !r.handler().opened.is_empty() || !r.handler().closed.is_empty()
    });
    assert_eq!(reactor.handler().closed, []);
    assert_eq!(reactor.handler().opened, [conn]);
}

#[test]
fn connect_timeout_counts_from_the_call_not_from_the_last_turn() {
    // A listener whose accept queue is full (backlog 0, one connection
    // waiting): Linux drops further SYNs, so a connect stays pending until
    // the client gives up.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let listener: TcpListener = socket.into();
    let addr = listener.local_addr().unwrap();
    let _waiting = TcpStream::connect(addr).unwrap();

    let mut reactor = idle_reactor();
    let conn = reactor.connect(addr).unwrap();
    // The first turn after the call: a timeout counted from the last turn,
    // a second ago, would already have passed.
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(reactor.handler().closed, [], "timed out at once");
    turn_until(&mut reactor, "the connect timeout", |r| {
        !r.handler().closed.is_empty()
    });
    assert_eq!(
        reactor.handler().opened,
        [],
        "the connect was not held back"
    );
    assert_eq!(
        reactor.handler().closed,
        [(conn, CloseReason::ConnectTimeout)]
    );
}

/// Where each connection came from, asked in `on_open` and in `on_close`.
#[derive(Default)]
struct Peers {
    at_open: Vec<Option<SocketAddr>>,
    at_close: Vec<Option<SocketAddr>>,
}

struct PeerLog {
    peers: Shared<Peers>,
}

impl Handler for PeerLog {
    type Message = ();

    fn on_open(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        self.peers.lock().at_open.push(cx.peer_addr(conn));
    }

    fn on_data(&mut self, _cx: &mut Context<'_>, _conn: ConnId, input: &[u8]) -> usize {
        input.len()
    }

    fn on_close(&mut self, cx: &mut Context<'_>, conn: ConnId, _reason: CloseReason) {
        self.peers.lock().at_close.push(cx.peer_addr(conn));
    }
}

#[test]
fn peer_addr_answers_in_on_close() {
    let peers = Shared::<Peers>::default();
    let server = spawn(
        PeerLog {
            peers: peers.clone(),
        },
        Config::default(),
    );
    let s = client(server.addr);
    let me = s.local_addr().unwrap();
    peers.wait_for("open", |p| !p.at_open.is_empty());
    drop(s);
    peers.wait_for("close", |p| !p.at_close.is_empty());
    let peers = peers.lock();
    assert_eq!(peers.at_open, [Some(me)]);
    assert_eq!(peers.at_close, [Some(me)]);
}

/// Collects messages; posts one more through its own handle when
/// shutdown begins.
#[derive(Default)]
struct Inbox {
    got: Vec<u32>,
    handle: Option<Handle<u32>>,
    late_post: Option<Result<(), u32>>,
}

impl Handler for Inbox {
    type Message = u32;

    fn on_data(&mut self, _cx: &mut Context<'_>, _conn: ConnId, input: &[u8]) -> usize {
        input.len()
    }

    fn on_message(&mut self, _cx: &mut Context<'_>, message: u32) {
        self.got.push(message);
    }

    fn on_shutdown(&mut self, _cx: &mut Context<'_>) {
        if let Some(handle) = &self.handle {
            self.late_post = Some(handle.post(99));
        }
    }
}

#[test]
fn try_post_gives_the_message_back_when_the_queue_is_full() {
    let config = Config {
        post_queue: 2,
        ..Config::default()
    };
    let mut reactor = Reactor::new(Inbox::default(), config).expect("reactor");
    let handle = reactor.handle();
    // No turn runs: nothing drains the queue.
    assert_eq!(handle.try_post(1), Ok(()));
    assert_eq!(handle.try_post(2), Ok(()));
    assert_eq!(handle.try_post(3), Err(PostError::Full(3)));
    // `post` has no bound; `try_post` still counts what it queued.
    assert_eq!(handle.post(4), Ok(()));
    assert_eq!(
        handle.try_post(5).map_err(PostError::into_inner),
        Err(5),
        "the message comes back"
    );
    turn_until(&mut reactor, "the posts", |r| r.handler().got.len() == 3);
    assert_eq!(reactor.handler().got, [1, 2, 4]);
    // Drained: room again.
    assert_eq!(handle.try_post(6), Ok(()));
    turn_until(&mut reactor, "the last post", |r| {
        r.handler().got.len() == 4
    });
    assert_eq!(reactor.handler().got, [1, 2, 4, 6]);
}

#[test]
fn post_after_run_returned_gives_the_message_back() {
    let mut reactor = Reactor::new(Inbox::default(), Config::default()).expect("reactor");
    let handle = reactor.handle();
    reactor.shutdown();
    reactor.run().unwrap();
    assert_eq!(handle.post(7), Err(7));
    assert_eq!(handle.try_post(8), Err(PostError::Stopped(8)));
    assert!(!handle.shutdown(), "shutdown of a stopped reactor");
    drop(reactor);
    assert_eq!(handle.post(9), Err(9));
    assert_eq!(handle.try_post(10), Err(PostError::Stopped(10)));
}

#[test]
fn message_posted_while_shutdown_completes_is_delivered() {
    let mut reactor = Reactor::new(Inbox::default(), Config::default()).expect("reactor");
    reactor.handler_mut().handle = Some(reactor.handle());
    reactor.shutdown();
    // No connections: the turn that begins shutdown also completes it,
    // after the handler posted from `on_shutdown` (past this turn's look
    // at the queue).
    let status = reactor.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(status, Status::Stopped);
    assert_eq!(reactor.handler().late_post, Some(Ok(())));
    assert_eq!(reactor.handler().got, [99], "an accepted post was dropped");
}
