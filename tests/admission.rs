//! Who gets in: `max_conns` with and without a reject line, allow and deny
//! lists, the per-address cap. Every rejection is counted by reason and
//! happens before the handler hears of the connection.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use evloop::{Config, RejectReason};

/// A client connecting from `source` (any 127.0.0.0/8 address works on
/// loopback).
fn client_from(source: &str, server: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&format!("{source}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.connect(&server.into()).unwrap();
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

/// The server closed this connection without answering: EOF or RST.
fn turned_away(mut s: TcpStream) -> bool {
    let _ = s.write_all(b"hello?");
    let mut buf = [0; 16];
    match s.read(&mut buf) {
        Ok(0) => true,
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

/// No answer within a short wait (the connection waits in the queue).
fn unanswered(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0; 1];
    let silent = matches!(s.read(&mut buf), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    silent
}

#[test]
fn max_conns_without_reject_line_queues_then_resumes_below_90_percent() {
    let server = Server::start(Config {
        max_conns: 4,
        ..Config::default()
    });
    let mut held: Vec<_> = (0..4).map(|_| client(server.addr)).collect();
    for s in &mut held {
        round_trip(s, b"in");
    }
    let mut waiting = client(server.addr); // completes in the kernel's queue
    waiting.write_all(b"x").unwrap();
    assert!(unanswered(&mut waiting), "served past max_conns");
    // 4 × 90 % = 3: accepting resumes below 3 connections.
    held.truncate(3);
    assert!(unanswered(&mut waiting), "resumed at 3 of 4: no hysteresis");
    held.truncate(2);
    assert_eq!(read_n(&mut waiting, 1), b"x", "not served once below 90 %");
    assert_eq!(server.record().opened.len(), 5);
}

#[test]
fn max_conns_with_reject_line_answers_and_closes() {
    let server = Server::start(Config {
        max_conns: 2,
        reject_line: Some(b"-ERR max number of clients reached\r\n".to_vec()),
        ..Config::default()
    });
    let mut held: Vec<_> = (0..2).map(|_| client(server.addr)).collect();
    for s in &mut held {
        round_trip(s, b"in");
    }
    let mut extra = client(server.addr);
    let mut answer = String::new();
    extra.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "-ERR max number of clients reached\r\n");
    let stats = server.stats();
    assert_eq!(stats.rejected_for(RejectReason::MaxConns), 1);
    assert_eq!(
        stats.accepted, 2,
        "the handler never heard of the rejected one"
    );
    assert_eq!(server.record().opened.len(), 2);
}

#[test]
fn deny_list_turns_addresses_away() {
    let server = Server::start(Config {
        deny: vec!["127.0.0.2".parse().unwrap()],
        ..Config::default()
    });
    assert!(turned_away(client_from("127.0.0.2", server.addr)));
    round_trip(&mut client_from("127.0.0.3", server.addr), b"welcome");
    let stats = server.stats();
    assert_eq!(stats.rejected_for(RejectReason::Denied), 1);
    assert_eq!(stats.accepted, 1);
}

#[test]
fn allow_list_admits_only_its_networks() {
    let server = Server::start(Config {
        allow: vec!["127.0.0.0/30".parse().unwrap()], // 127.0.0.0 - 127.0.0.3
        ..Config::default()
    });
    round_trip(&mut client_from("127.0.0.2", server.addr), b"inside");
    assert!(turned_away(client_from("127.0.0.4", server.addr)));
    assert_eq!(server.stats().rejected_for(RejectReason::NotAllowed), 1);
}

#[test]
fn per_ip_cap_limits_one_address_not_others() {
    let server = Server::start(Config {
        max_per_ip: Some(2),
        ..Config::default()
    });
    let mut a1 = client_from("127.0.0.5", server.addr);
    let mut a2 = client_from("127.0.0.5", server.addr);
    round_trip(&mut a1, b"1");
    round_trip(&mut a2, b"2");
    assert!(turned_away(client_from("127.0.0.5", server.addr)));
    let mut other = client_from("127.0.0.6", server.addr);
    round_trip(&mut other, b"other address");
    assert_eq!(server.stats().rejected_for(RejectReason::PerIpLimit), 1);
    // Once one closes, the address may connect again. (Only a1 closes
    // here, so the first close recorded is a1's.)
    drop(a1);
    server.wait_for("a1's close", |r| r.closed.len() == 1);
    round_trip(&mut client_from("127.0.0.5", server.addr), b"again");
}
