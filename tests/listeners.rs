//! Listeners with ids: two protocols from one reactor, a listener paused,
//! resumed and closed at run time, from the program and from a callback;
//! a listener and a connection adopted already made. The reactor runs on
//! the test's thread (`turn_until`), so each step is seen in order.

mod common;
mod harness;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::PATIENCE;
use evloop::{Config, ConnId, Context, Handler, ListenerId, Reactor};
use harness::turn_until;

/// Answers each read with which listener accepted the connection, and
/// the local address it was reached on: `web 127.0.0.1:port\n`.
#[derive(Default)]
struct Which {
    web: Option<ListenerId>,
    /// Pause the web listener from the first `on_open` it accepts.
    pause_from_callback: bool,
    opened: Vec<ConnId>,
}

impl Handler for Which {
    type Message = ();

    fn on_open(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        self.opened.push(conn);
        if self.pause_from_callback {
            if let Some(web) = self.web {
                cx.pause_listener(web);
            }
        }
    }

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        let name = match cx.listener(conn) {
            Some(l) if Some(l) == self.web => "web",
            Some(_) => "admin",
            None => "none",
        };
        let local = cx.local_addr(conn).expect("local address");
        let _ = cx.write(conn, format!("{name} {local}\n").as_bytes());
        input.len()
    }
}

fn client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

/// Sends a byte and reads the one-line answer, turning the reactor.
fn ask(reactor: &mut Reactor<Which>, s: &mut TcpStream) -> String {
    s.write_all(b"?").unwrap();
    s.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    turn_until(reactor, "an answer", |_| {
        let mut buf = [0; 128];
        if let Ok(n) = s.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        got.ends_with(b"\n")
    });
    s.set_nonblocking(false).unwrap();
    String::from_utf8(got).unwrap()
}

fn reactor() -> (Reactor<Which>, ListenerId, SocketAddr) {
    let mut reactor = Reactor::new(Which::default(), Config::default()).unwrap();
    let web = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    reactor.handler_mut().web = Some(web);
    let addr = reactor.listener_addr(web).unwrap();
    (reactor, web, addr)
}

#[test]
fn each_connection_knows_its_listener_and_local_address() {
    let (mut reactor, web, web_addr) = reactor();
    let admin = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let admin_addr = reactor.listener_addr(admin).unwrap();
    assert_ne!(web, admin);
    assert_eq!((web.index(), admin.index()), (0, 1));
    let mut a = client(web_addr);
    let mut b = client(admin_addr);
    assert_eq!(ask(&mut reactor, &mut a), format!("web {web_addr}\n"));
    assert_eq!(ask(&mut reactor, &mut b), format!("admin {admin_addr}\n"));
}

#[test]
fn a_paused_listener_keeps_its_queue_until_resumed() {
    let (mut reactor, web, addr) = reactor();
    assert!(reactor.pause_listener(web));
    // The kernel completes the handshake and queues the connection.
    let mut s = client(addr);
    s.write_all(b"?").unwrap();
    for _ in 0..20 {
        reactor.run_once(Some(Duration::from_millis(5))).unwrap();
    }
    assert!(reactor.handler().opened.is_empty(), "accepted while paused");
    assert!(reactor.resume_listener(web));
    turn_until(&mut reactor, "the waiting connection", |r| {
        r.handler().opened.len() == 1
    });
    assert_eq!(ask(&mut reactor, &mut s).split(' ').next(), Some("web"));
}

#[test]
fn a_callback_can_pause_its_listener() {
    let (mut reactor, web, addr) = reactor();
    reactor.handler_mut().pause_from_callback = true;
    let _first = client(addr);
    turn_until(&mut reactor, "the first", |r| r.handler().opened.len() == 1);
    let _second = client(addr);
    for _ in 0..20 {
        reactor.run_once(Some(Duration::from_millis(5))).unwrap();
    }
    assert_eq!(
        reactor.handler().opened.len(),
        1,
        "accepted after the pause"
    );
    reactor.handler_mut().pause_from_callback = false;
    reactor.resume_listener(web);
    turn_until(&mut reactor, "the second", |r| {
        r.handler().opened.len() == 2
    });
}

#[test]
fn a_closed_listener_refuses_and_its_connections_live_on() {
    let (mut reactor, web, addr) = reactor();
    let mut s = client(addr);
    assert_eq!(ask(&mut reactor, &mut s).split(' ').next(), Some("web"));
    assert!(reactor.close_listener(web));
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(reactor.listener_addr(web), None);
    assert!(!reactor.pause_listener(web), "a closed listener paused");
    let refused = TcpStream::connect(addr).map_err(|e| e.kind());
    assert_eq!(refused.err(), Some(ErrorKind::ConnectionRefused));
    // The connection it accepted is served as before.
    assert_eq!(ask(&mut reactor, &mut s).split(' ').next(), Some("web"));
}

#[test]
fn an_adopted_listener_is_served_like_its_own() {
    let (mut reactor, _, _) = reactor();
    let std_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let adopted = reactor.adopt_listener(std_listener).unwrap();
    assert_eq!(reactor.listener_addr(adopted), Some(addr));
    let mut s = client(addr);
    assert_eq!(ask(&mut reactor, &mut s), format!("admin {addr}\n"));
}

#[test]
fn an_adopted_connection_opens_without_a_listener() {
    let (mut reactor, _, _) = reactor();
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    let ours = TcpStream::connect(elsewhere.local_addr().unwrap()).unwrap();
    let local = ours.local_addr().unwrap();
    let (mut peer, _) = elsewhere.accept().unwrap();
    peer.set_read_timeout(Some(PATIENCE)).unwrap();
    // Bytes sent before the adoption are read too: no edge announces them.
    peer.write_all(b"?").unwrap();
    let conn = reactor.adopt_stream(ours).unwrap();
    assert_eq!(reactor.handler().opened, [conn]);
    let mut got = Vec::new();
    peer.set_nonblocking(true).unwrap();
    turn_until(&mut reactor, "the answer", |_| {
        let mut buf = [0; 128];
        if let Ok(n) = peer.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        got.ends_with(b"\n")
    });
    assert_eq!(String::from_utf8(got).unwrap(), format!("none {local}\n"));
}
