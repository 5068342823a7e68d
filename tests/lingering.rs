//! A connection entering `Lingering` reads and discards the input that
//! arrived while it was closing, even if its handler had paused reading: left
//! unread, that input makes the kernel answer our close with RST, which
//! destroys output the peer has not read yet.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::PATIENCE;
use evloop::{CloseReason, Config, ConnId, Context, Handler, Reactor, Stats};

const ANSWER: usize = 1 << 20;
const JUNK: usize = 32 * 1024;

/// Answers the first line with a large answer, stops reading, and closes.
struct AnswerAndClose {
    closed: Arc<Mutex<Option<(CloseReason, Stats)>>>,
}

impl Handler for AnswerAndClose {
    type Message = ();

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&b| b == b'\n') else {
            return 0;
        };
        cx.pause_read(conn);
        let _ = cx.write(conn, &vec![b'a'; ANSWER]);
        cx.close(conn);
        end + 1
    }

    fn on_close(&mut self, cx: &mut Context<'_>, _conn: ConnId, reason: CloseReason) {
        *self.closed.lock().unwrap() = Some((reason, cx.stats()));
    }
}

#[test]
fn lingering_discards_input_that_came_while_paused_and_closing() {
    let closed = Arc::new(Mutex::new(None));
    let handler = AnswerAndClose {
        closed: Arc::clone(&closed),
    };
    let mut reactor = Reactor::new(handler, Config::default()).unwrap();
    let listener = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = reactor.listener_addr(listener).unwrap();
    let handle = reactor.handle();
    let server = thread::spawn(move || reactor.run().unwrap());
    // A small receive window keeps most of the answer in the server while
    // the junk arrives: the connection is closing, with reading paused.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut c: TcpStream = socket.into();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    c.write_all(b"go\n").unwrap();
    thread::sleep(Duration::from_millis(50));
    c.write_all(&vec![b'j'; JUNK]).unwrap();
    // Read the whole answer, to the server's FIN, then send ours.
    let mut got = Vec::new();
    c.read_to_end(&mut got)
        .expect("the answer ended with an error");
    assert_eq!(got.len(), ANSWER);
    c.shutdown(Shutdown::Write).unwrap();
    let end = Instant::now() + PATIENCE;
    let (reason, stats) = loop {
        if let Some(done) = closed.lock().unwrap().take() {
            break done;
        }
        assert!(Instant::now() < end, "the server never closed");
        thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(reason, CloseReason::Closed);
    // The junk was read (and dropped) by the lingering close.
    assert_eq!(stats.bytes_in, (3 + JUNK) as u64, "{stats}");
    assert!(handle.shutdown());
    server.join().unwrap();
}
