//! Foreign sources in the reactor's poll: a UDP socket and a pipe the
//! handler owns, their readiness in `on_ready`, deregistered and stale
//! ids. The reactor runs on the test's thread.

mod common;
mod harness;

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::PATIENCE;
use evloop::{Config, ConnId, Context, Handler, Reactor, Readiness, SourceId};
use harness::turn_until;
use mio::unix::pipe;
use mio::Interest;

/// UDP echo, read until `WouldBlock` on every event.
struct UdpEcho {
    socket: mio::net::UdpSocket,
    id: Option<SourceId>,
    echoed: usize,
}

impl Handler for UdpEcho {
    type Message = ();

    fn on_start(&mut self, cx: &mut Context<'_>) {
        self.id = Some(cx.register(&mut self.socket, Interest::READABLE).unwrap());
    }

    fn on_ready(&mut self, _: &mut Context<'_>, source: SourceId, readiness: Readiness) {
        assert_eq!(Some(source), self.id);
        assert!(readiness.readable);
        let mut buf = [0; 1500];
        while let Ok((n, from)) = self.socket.recv_from(&mut buf) {
            let _ = self.socket.send_to(&buf[..n], from);
            self.echoed += 1;
        }
    }

    fn on_data(&mut self, _: &mut Context<'_>, _: ConnId, input: &[u8]) -> usize {
        input.len()
    }
}

#[test]
fn datagrams_on_a_registered_udp_socket_reach_on_ready() {
    let socket = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let echo = UdpEcho {
        socket,
        id: None,
        echoed: 0,
    };
    let mut reactor = Reactor::new(echo, Config::default()).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    reactor.run_once(Some(Duration::ZERO)).unwrap(); // on_start registers
                                                     // Three datagrams before the reactor looks: one edge, all three read.
    for i in 0..3u8 {
        client.send_to(&[i; 10], addr).unwrap();
    }
    turn_until(&mut reactor, "three echoes", |r| r.handler().echoed == 3);
    let mut buf = [0; 64];
    for i in 0..3u8 {
        let (n, from): (usize, SocketAddr) = client.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&[i; 10][..], addr));
    }
}

/// Records what a pipe's reading end says.
#[derive(Default)]
struct PipeReader {
    seen: Vec<Readiness>,
    bytes: Vec<u8>,
}

impl Handler for PipeReader {
    type Message = ();

    fn on_ready(&mut self, _: &mut Context<'_>, _: SourceId, readiness: Readiness) {
        self.seen.push(readiness);
    }

    fn on_data(&mut self, _: &mut Context<'_>, _: ConnId, input: &[u8]) -> usize {
        input.len()
    }
}

#[test]
fn a_pipe_is_heard_until_deregistered_and_a_stale_id_does_nothing() {
    let (mut tx, mut rx) = pipe::new().unwrap();
    let mut reactor = Reactor::new(PipeReader::default(), Config::default()).unwrap();
    let id = reactor.register(&mut rx, Interest::READABLE).unwrap();
    tx.write_all(b"one").unwrap();
    turn_until(&mut reactor, "an event", |r| !r.handler().seen.is_empty());
    assert!(reactor.handler().seen[0].readable);
    // The reactor read nothing: the bytes wait for the handler's read.
    let mut buf = [0; 16];
    let n = rx.read(&mut buf).unwrap();
    reactor.handler_mut().bytes.extend_from_slice(&buf[..n]);
    assert_eq!(reactor.handler().bytes, b"one");
    // The writer hangs up: the reader hears it.
    drop(tx);
    turn_until(&mut reactor, "the hang-up", |r| {
        r.handler().seen.iter().any(|s| s.read_closed)
    });
    assert!(reactor.deregister(&mut rx, id).unwrap());
    assert!(
        !reactor.deregister(&mut rx, id).unwrap(),
        "a stale id deregistered something"
    );
    // Out of the poll: a new pipe's events under a new id only.
    let (mut tx2, mut rx2) = pipe::new().unwrap();
    let id2 = reactor.register(&mut rx2, Interest::READABLE).unwrap();
    assert_ne!(id, id2, "a reused slot kept its id");
    let before = reactor.handler().seen.len();
    tx2.write_all(b"two").unwrap();
    turn_until(&mut reactor, "the new pipe", |r| {
        r.handler().seen.len() > before
    });
}
