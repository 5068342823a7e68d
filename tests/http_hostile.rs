//! The http example against clients that bend the protocol: a
//! Content-Length that is not plain digits, both framings at once (the
//! request-smuggling shapes), requests split across packets over longer
//! than the header timeout, a slow but steady upload, and a stalled one.
//! The server as a real process, raw sockets.

mod process;

use std::io::{Read, Write};
use std::thread;
use std::time::Duration;

use process::{connect, exchange, Proc};

fn status(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

fn post(length_headers: &str, body: &str) -> Vec<u8> {
    format!("POST /echo HTTP/1.1\r\nHost: x\r\n{length_headers}Connection: close\r\n\r\n{body}")
        .into_bytes()
}

#[test]
fn a_content_length_that_is_not_plain_digits_is_refused() {
    let http = Proc::start(&[], "http", &[]);
    for bad in [
        "Content-Length: +5\r\n",
        "Content-Length: -5\r\n",
        "Content-Length: 5 5\r\n",
        "Content-Length: 5,5\r\n",
        "Content-Length: 0x5\r\n",
        "Content-Length: \r\n",
        "Content-Length: 5\u{a0}\r\n",
        "Content-Length: \u{0665}\r\n", // an Arabic-Indic digit five
        "Content-Length: 99999999999999999999999\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
    ] {
        let answer = exchange(http.port, &post(bad, "hello"));
        assert_eq!(
            status(&answer),
            "HTTP/1.1 400 Bad Request",
            "{bad:?} got: {answer}"
        );
    }
    // Plain digits, surrounding spaces, and a repeated equal value are fine.
    for good in [
        "Content-Length: 5\r\n",
        "Content-Length:   5  \r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 005\r\n",
    ] {
        let answer = exchange(http.port, &post(good, "hello"));
        assert_eq!(status(&answer), "HTTP/1.1 200 OK", "{good:?} got: {answer}");
        assert!(answer.ends_with("hello"), "{good:?} got: {answer}");
    }
}

#[test]
fn transfer_encoding_beside_content_length_is_refused() {
    let http = Proc::start(&[], "http", &[]);
    let both = post(
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "0\r\n\r\n",
    );
    assert_eq!(
        status(&exchange(http.port, &both)),
        "HTTP/1.1 400 Bad Request"
    );
    // Codings other than chunked are not understood; "chunked" twice is
    // a smuggling trick.
    for coding in ["gzip, chunked", "chunked, chunked", "identity"] {
        let other = post(&format!("Transfer-Encoding: {coding}\r\n"), "0\r\n\r\n");
        assert_eq!(
            status(&exchange(http.port, &other)),
            "HTTP/1.1 501 Not Implemented",
            "{coding}"
        );
    }
    // The refusal closes only that connection.
    let ok = exchange(
        http.port,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&ok), "HTTP/1.1 200 OK");
}

#[test]
fn pipelined_requests_split_across_packets_each_get_their_own_header_deadline() {
    let http = Proc::start(&[], "http", &["--header-timeout", "1"]);
    let mut s = connect(http.port);
    // Five requests over 2.4 s, each packet ending inside the next
    // request's head: no head takes longer than 0.4 s, but the first head
    // began 2.4 s before the last request completes.
    let request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let stream = request.repeat(5);
    let cut = request.len() / 2;
    let mut sent = 0;
    for i in 0..6 {
        let end = (cut + i * request.len()).min(stream.len());
        s.write_all(&stream.as_bytes()[sent..end]).unwrap();
        sent = end;
        thread::sleep(Duration::from_millis(400));
    }
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 6, "{answer}");
    assert!(!answer.contains("408"), "{answer}");
}

#[test]
fn a_slow_but_steady_upload_is_not_cut_and_a_stalled_one_is() {
    let http = Proc::start(
        &[],
        "http",
        &[
            "--header-timeout",
            "1",
            "--body-timeout",
            "1",
            "--body-min-rate",
            "1",
        ],
    );
    let mut s = connect(http.port);
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    // One byte every 0.4 s: 2.4 s in all, longer than either timeout.
    for b in b"steady" {
        thread::sleep(Duration::from_millis(400));
        s.write_all(&[*b]).unwrap();
    }
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("steady"), "{answer}");

    // A body that stops coming is cut at the body timeout.
    let mut stalled = connect(http.port);
    stalled
        .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nst")
        .unwrap();
    let mut answer = String::new();
    stalled.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout"),
        "{answer}"
    );
}

#[test]
fn a_client_that_connects_and_sends_nothing_gets_the_header_timeout() {
    // Even with idle timeouts off: the first request's head deadline
    // runs from the connect.
    let http = Proc::start(
        &[],
        "http",
        &["--header-timeout", "1", "--idle-timeout", "0"],
    );
    let mut s = connect(http.port);
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout"),
        "{answer}"
    );
}

#[test]
fn a_body_that_trickles_below_the_minimum_rate_is_cut_though_it_never_stalls() {
    // A byte every 0.3 s never stalls for the 1 s body timeout, but after
    // that grace it must average 100 bytes a second: it is cut a little
    // after 1 s, long before its 64 bytes could come.
    let http = Proc::start(
        &[],
        "http",
        &["--body-timeout", "1", "--body-min-rate", "100"],
    );
    let mut s = connect(http.port);
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 64\r\n\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    let reader = s.try_clone().unwrap();
    let answer = thread::spawn(move || {
        let mut answer = String::new();
        let _ = (&reader).read_to_string(&mut answer);
        answer
    });
    for _ in 0..64 {
        thread::sleep(Duration::from_millis(300));
        if s.write_all(b"x").is_err() {
            break;
        }
        if answer.is_finished() {
            break;
        }
    }
    let answer = answer.join().unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout"),
        "{answer}"
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "cut only after {took:?}");

    // The same trickle with the rate check off (0) is served.
    let http = Proc::start(
        &[],
        "http",
        &["--body-timeout", "1", "--body-min-rate", "0"],
    );
    let mut s = connect(http.port);
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    for _ in 0..8 {
        thread::sleep(Duration::from_millis(300));
        s.write_all(b"x").unwrap();
    }
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("xxxxxxxx"), "{answer}");
}
