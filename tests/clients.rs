//! The protocol examples checked by clients nobody here wrote: curl and
//! wrk against `http`, redis-cli and redis-benchmark against `kv`, nc
//! against `chat`; plus malformed and oversized input over raw sockets.
//! `.ci/run` installs the clients; elsewhere a missing one skips its test
//! with a message, and under CI it fails.

mod process;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use process::{connect, exchange, have, run, Proc};

// ---- http -----------------------------------------------------------

#[test]
fn curl_get_keepalive_post_head_404() {
    if !have("curl") {
        return;
    }
    let server = Proc::start(&[], "http", &[]);
    let url = format!("http://127.0.0.1:{}", server.port);
    let (body, trace, ok) = run("curl", &["-sv", &format!("{url}/"), &format!("{url}/")]);
    assert!(ok);
    assert_eq!(body, "Hello, World!Hello, World!");
    assert!(
        trace.contains("Re-using existing connection"),
        "no keep-alive reuse:\n{trace}"
    );
    let (body, _, _) = run("curl", &["-s", "-d", "posted body", &format!("{url}/echo")]);
    assert_eq!(body, "posted body");
    let (head, _, _) = run("curl", &["-sI", &format!("{url}/")]);
    assert!(
        head.starts_with("HTTP/1.1 200 OK") && head.contains("Content-Length: 13"),
        "{head}"
    );
    assert!(head.contains("Date: "), "{head}");
    let (code, _, _) = run(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{url}/nope"),
        ],
    );
    assert_eq!(code, "404");
}

#[test]
fn wrk_runs_with_zero_errors() {
    if !have("wrk") {
        return;
    }
    let server = Proc::start(&[], "http", &[]);
    let url = format!("http://127.0.0.1:{}/", server.port);
    let (out, err, ok) = run("wrk", &["-t1", "-c16", "-d2s", &url]);
    assert!(ok, "{err}");
    assert!(out.contains("requests in"), "{out}");
    assert!(
        !out.contains("Socket errors") && !out.contains("Non-2xx"),
        "{out}"
    );
}

#[test]
fn http_limits_are_answered_and_others_still_served() {
    let server = Proc::start(
        &[],
        "http",
        &["--header-timeout", "1", "--max-body", "1000"],
    );
    let p = server.port;
    assert!(exchange(p, b"this is not http\r\n\r\n").starts_with("HTTP/1.1 400"));
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Fill: {}\r\n\r\n",
        "a".repeat(9000)
    );
    assert!(exchange(p, big_head.as_bytes()).starts_with("HTTP/1.1 431"));
    let big_body = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n";
    assert!(exchange(p, big_body).starts_with("HTTP/1.1 413"));
    let gzip = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n";
    assert!(exchange(p, gzip).starts_with("HTTP/1.1 501"));
    // Slowloris: half a head, then nothing. 408 after the header timeout.
    let started = Instant::now();
    let slow = exchange(p, b"GET / HTTP/1.1\r\nHost: x\r\n");
    assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Pipelined: three requests in one write, three answers.
    let mut s = connect(p);
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    assert_eq!(all.matches("Hello, World!").count(), 3, "{all}");
}

// ---- kv -------------------------------------------------------------

fn redis_cli(port: u16, args: &[&str]) -> String {
    let port = port.to_string();
    let mut all = vec!["-p", &port];
    all.extend_from_slice(args);
    run("redis-cli", &all).0.trim_end().to_string()
}

#[test]
fn redis_cli_commands_and_pipe_mass_insertion() {
    if !have("redis-cli") {
        return;
    }
    let server = Proc::start(&[], "kv", &[]);
    let p = server.port;
    assert_eq!(redis_cli(p, &["ping"]), "PONG");
    assert_eq!(redis_cli(p, &["set", "k", "v"]), "OK");
    assert_eq!(redis_cli(p, &["get", "k"]), "v");
    assert_eq!(redis_cli(p, &["incr", "n"]), "1");
    assert_eq!(redis_cli(p, &["set", "short", "x", "px", "200"]), "OK");
    assert_eq!(redis_cli(p, &["exists", "short", "k", "none"]), "2");
    thread::sleep(Duration::from_millis(400));
    assert_eq!(
        redis_cli(p, &["get", "short"]),
        "",
        "expired key still there"
    );
    assert_eq!(
        redis_cli(p, &["dbsize"]),
        "2",
        "the expiry timer removed the key"
    );

    let mut pipe = Vec::new();
    for i in 0..10_000 {
        let (k, v) = (format!("key:{i}"), format!("value:{i}"));
        pipe.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
                k.len(),
                v.len()
            )
            .as_bytes(),
        );
    }
    let mut child = Command::new("redis-cli")
        .args(["-p", &p.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&pipe).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("errors: 0, replies: 10000"), "{text}");
    assert_eq!(redis_cli(p, &["dbsize"]), "10002");
    assert_eq!(redis_cli(p, &["get", "key:9999"]), "value:9999");
}

#[test]
fn redis_benchmark_runs_with_zero_errors() {
    if !have("redis-benchmark") {
        return;
    }
    let server = Proc::start(&[], "kv", &[]);
    let (out, err, ok) = run(
        "redis-benchmark",
        &[
            "-p",
            &server.port.to_string(),
            "-q",
            "-n",
            "5000",
            "-P",
            "4",
            "-t",
            "ping_inline,set,get",
        ],
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out
        .split(['\r', '\n'])
        .filter(|l| l.contains("requests per second"))
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        !out.contains("ERR") && !err.contains("WARNING"),
        "{out}\n{err}"
    );
}

#[test]
fn malformed_resp_is_answered_with_err_and_others_still_served() {
    let server = Proc::start(&[], "kv", &[]);
    let answer = exchange(server.port, b"*1\r\n$99999999\r\n");
    assert!(answer.starts_with("-ERR Protocol error"), "{answer}");
    let answer = exchange(server.port, b"*2\r\n$3\r\nGET\r\n:1\r\n");
    assert!(answer.starts_with("-ERR Protocol error"), "{answer}");
    let mut ok = connect(server.port);
    ok.write_all(b"*1\r\n$4\r\nPING\r\nPING\r\n").unwrap();
    let mut buf = [0; 14];
    ok.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"+PONG\r\n+PONG\r\n");
}

/// A RESP array of bulk strings, as clients send commands.
fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads exactly `expected.len()` bytes and compares.
fn expect_reply(s: &mut TcpStream, expected: &[u8]) {
    let mut got = vec![0; expected.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected)
    );
}

#[test]
fn an_mset_past_one_bulks_limit_is_served_and_one_past_the_command_limit_refused() {
    let server = Proc::start(&[], "kv", &[]);
    // 12 MiB in one command: more than one bulk string's limit (8 MiB),
    // less than the command limit (16 MiB; examples/kv/resp.rs,
    // MAX_BULK and MAX_COMMAND).
    let value = vec![b'v'; 6 << 20];
    let mut s = connect(server.port);
    s.write_all(&resp_command(&[b"MSET", b"a", &value, b"b", &value]))
        .unwrap();
    expect_reply(&mut s, b"+OK\r\n");
    s.write_all(&resp_command(&[b"DBSIZE"])).unwrap();
    expect_reply(&mut s, b":2\r\n");
    // Three such values pass MAX_COMMAND: refused when the third value's
    // header arrives, answered in the protocol, then closed.
    let too_big = resp_command(&[b"MSET", b"a", &value, b"b", &value, b"c", &value]);
    let answer = exchange(server.port, &too_big);
    assert!(
        answer.starts_with("-ERR Protocol error: command too large"),
        "{answer}"
    );
    s.write_all(b"PING\r\n").unwrap();
    expect_reply(&mut s, b"+PONG\r\n");
}

#[test]
fn commands_trickling_in_on_two_connections_are_each_assembled() {
    // Each connection's partial command has its own resume point
    // (resp::Progress): interleaved trickles must not mix.
    let server = Proc::start(&[], "kv", &[]);
    let mut conns = [connect(server.port), connect(server.port)];
    let mut commands = Vec::new();
    for (c, conn) in conns.iter_mut().enumerate() {
        conn.set_nodelay(true).unwrap();
        let mut args: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
        for i in 0..300 {
            args.push(format!("c{c}:k{i}").into_bytes());
            args.push(format!("value {i} from {c}").into_bytes());
        }
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        commands.push(resp_command(&refs));
    }
    let piece = 50;
    let longest = commands.iter().map(Vec::len).max().unwrap();
    for at in (0..longest).step_by(piece) {
        for (conn, command) in conns.iter_mut().zip(&commands) {
            if at < command.len() {
                conn.write_all(&command[at..(at + piece).min(command.len())])
                    .unwrap();
            }
        }
        if at % (piece * 20) == 0 {
            thread::sleep(Duration::from_millis(1)); // let the server see pieces
        }
    }
    for conn in &mut conns {
        expect_reply(conn, b"+OK\r\n");
    }
    let s = &mut conns[0];
    s.write_all(&resp_command(&[b"MGET", b"c0:k299", b"c1:k0", b"c1:k299"]))
        .unwrap();
    expect_reply(
        s,
        b"*3\r\n$16\r\nvalue 299 from 0\r\n$14\r\nvalue 0 from 1\r\n$16\r\nvalue 299 from 1\r\n",
    );
    s.write_all(&resp_command(&[b"DBSIZE"])).unwrap();
    expect_reply(s, b":600\r\n");
}

#[test]
fn past_max_memory_writes_get_oom_and_reads_and_deletes_still_work() {
    let server = Proc::start(&[], "kv", &["--max-memory", "100000"]);
    let mut s = connect(server.port);
    let value = vec![b'x'; 10_000];
    let mut stored = 0;
    loop {
        let key = format!("k{stored}");
        s.write_all(&resp_command(&[b"SET", key.as_bytes(), &value]))
            .unwrap();
        let mut first = [0; 1];
        s.read_exact(&mut first).unwrap();
        if first[0] == b'-' {
            let rest = "OOM command not allowed when used memory > 'maxmemory'.\r\n";
            expect_reply(&mut s, rest.as_bytes());
            break;
        }
        expect_reply(&mut s, b"OK\r\n");
        stored += 1;
        assert!(stored < 100, "no OOM after {stored} values of 10 KB");
    }
    // The limit is checked before a command: at most one past it.
    assert_eq!(stored, 10, "100 kB holds ten 10 kB values and one more");
    s.write_all(&resp_command(&[b"GET", b"k0"])).unwrap();
    let mut reply = b"$10000\r\n".to_vec();
    reply.extend_from_slice(&value);
    reply.extend_from_slice(b"\r\n");
    expect_reply(&mut s, &reply);
    s.write_all(&resp_command(&[b"DEL", b"k0", b"k1"])).unwrap();
    expect_reply(&mut s, b":2\r\n");
    s.write_all(&resp_command(&[b"SET", b"again", b"fits"]))
        .unwrap();
    expect_reply(&mut s, b"+OK\r\n");
}

// ---- chat -----------------------------------------------------------

/// A line reader over a stream, with a deadline per line.
fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn wait_line(rx: &mpsc::Receiver<String>, what: &str) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(what) => return line,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no line containing {what:?}");
}

#[test]
fn two_nc_clients_see_each_others_lines() {
    if !have("nc") {
        return;
    }
    let server = Proc::start(&[], "chat", &[]);
    let spawn_nc = || {
        Command::new("nc")
            .args(["127.0.0.1", &server.port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut alice = spawn_nc();
    let alice_out = lines_of(alice.stdout.take().unwrap());
    wait_line(&alice_out, "welcome");
    let mut bob = spawn_nc();
    let bob_out = lines_of(bob.stdout.take().unwrap());
    wait_line(&bob_out, "welcome");
    let mut alice_in = alice.stdin.take().unwrap();
    let mut bob_in = bob.stdin.take().unwrap();
    alice_in.write_all(b"/nick alice\n").unwrap();
    wait_line(&bob_out, "is now alice");
    bob_in.write_all(b"/nick bob\nhello alice\n").unwrap();
    assert_eq!(wait_line(&alice_out, "hello alice"), "bob: hello alice");
    alice_in.write_all(b"hi bob\n/who\n").unwrap();
    assert_eq!(wait_line(&bob_out, "hi bob"), "alice: hi bob");
    assert_eq!(wait_line(&alice_out, "online"), "* online (2): alice, bob");
    bob_in.write_all(b"/quit\n").unwrap();
    wait_line(&alice_out, "bob left");
    for mut nc in [alice, bob] {
        let _ = nc.kill();
        let _ = nc.wait();
    }
}

#[test]
fn a_member_who_stops_reading_is_dropped_without_slowing_the_room() {
    let server = Proc::start(&[], "chat", &[]);
    let p = server.port;
    // The talker floods the room and watches it: a member never receives
    // its own lines, so the talker only hears announcements and can never
    // fall behind itself, however loaded the machine is.
    let mut talker = connect(p);
    let heard = lines_of(talker.try_clone().unwrap());
    wait_line(&heard, "welcome");
    // The slow member: a tiny receive buffer, and it never reads.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket
        .connect(&std::net::SocketAddr::from(([127, 0, 0, 1], p)).into())
        .unwrap();
    let slow: TcpStream = socket.into();
    wait_line(&heard, "joined");
    // 8 MB: more than the slow member's kernel buffers hold (the server's
    // send buffer autotunes to about 4 MB on loopback), so the rest piles
    // up in the server's output buffer until the hard limit (1 MiB).
    let line = format!("{}\n", "x".repeat(1000));
    let started = Instant::now();
    for _ in 0..8000 {
        if talker.write_all(line.as_bytes()).is_err() {
            break;
        }
    }
    // Departures are announced a tick later, so the start-up probe's may
    // come first: wait for the slow member's.
    let left = wait_line(&heard, "too far behind");
    assert!(left.contains("left"), "{left}");
    talker.write_all(b"/who\n").unwrap();
    // Only the talker is left (names are guestN: the start-up probe that
    // waited for the port was a guest too).
    let who = wait_line(&heard, "online");
    assert!(!who.contains(','), "the slow member is still listed: {who}");
    eprintln!(
        "slow member dropped; room still served after {:?}",
        started.elapsed()
    );
    drop(slow);
}

#[test]
fn apachebench_with_and_without_keep_alive_completes_with_zero_errors() {
    if !have("ab") {
        return;
    }
    let server = Proc::start(&[], "http", &[]);
    let url = format!("http://127.0.0.1:{}/", server.port);
    // `-k` is HTTP/1.0 with `Connection: Keep-Alive`: it waits for the
    // server to say `keep-alive`, or for a close.
    for (keep_alive, n) in [(true, 5000u64), (false, 1000)] {
        let n_arg = n.to_string();
        let mut argv = vec!["-n", &n_arg, "-c", "16"];
        if keep_alive {
            argv.insert(0, "-k");
        }
        argv.push(&url);
        let (out, err, ok) = run("ab", &argv);
        assert!(ok, "ab {argv:?}: {err}{out}");
        let count = |key: &str| -> u64 {
            out.lines()
                .find_map(|l| l.strip_prefix(key))
                .map_or(u64::MAX, |v| v.trim().parse().unwrap_or(u64::MAX))
        };
        assert_eq!(count("Complete requests:"), n, "{out}");
        assert_eq!(count("Failed requests:"), 0, "{out}");
        if keep_alive {
            assert_eq!(count("Keep-Alive requests:"), n, "{out}");
        }
        assert!(!out.contains("Non-2xx"), "{out}");
    }
}

#[test]
fn h2load_over_http1_completes_with_zero_errors() {
    if !have("h2load") {
        return;
    }
    let server = Proc::start(&[], "http", &[]);
    let url = format!("http://127.0.0.1:{}/", server.port);
    let (out, err, ok) = run(
        "h2load",
        &["--h1", "-n", "5000", "-c", "10", "-m", "8", &url],
    );
    assert!(ok, "{err}{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("5000 succeeded, 0 failed, 0 errored"),
        "{line}"
    );
    let status = out
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .unwrap();
    assert!(status.contains("5000 2xx"), "{status}");
}

#[test]
fn curl_http10_and_a_chunked_upload_of_unknown_length() {
    if !have("curl") {
        return;
    }
    let server = Proc::start(&[], "http", &[]);
    let base = format!("http://127.0.0.1:{}", server.port);
    let (out, err, ok) = run("curl", &["-sS", "--http1.0", &format!("{base}/")]);
    assert!(ok, "{err}");
    assert_eq!(out, "Hello, World!");
    // `-T -` reads stdin and sends it chunked: the length is unknown.
    let body: String = (0..20_000).map(|i| format!("{i}\n")).collect();
    let mut child = Command::new("curl")
        .args(["-sS", "-T", "-", "-X", "POST", &format!("{base}/echo")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let sent = body.clone();
    let writer = thread::spawn(move || stdin.write_all(sent.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), body);
    // A streamed response, read by curl.
    let (out, err, ok) = run("curl", &["-sS", &format!("{base}/stream?n=100")]);
    assert!(ok, "{err}");
    assert_eq!(out.len(), 100 * 1024);
}

#[test]
fn python_http_client_keeps_one_connection_for_every_kind_of_request() {
    if !have("python3") {
        return;
    }
    let server = Proc::start(&[], "http", &[]);
    let script = format!(
        r#"
import http.client
c = http.client.HTTPConnection("127.0.0.1", {port}, timeout=10)
for _ in range(3):
    c.request("GET", "/")
    r = c.getresponse(); assert r.status == 200 and r.read() == b"Hello, World!"
c.request("POST", "/echo", body=b"x" * 100000)
r = c.getresponse(); assert r.status == 200 and r.read() == b"x" * 100000
# A generator body has no length: http.client sends it chunked.
c.request("POST", "/echo", body=(b"part%d," % i for i in range(1000)), encode_chunked=True)
r = c.getresponse(); assert r.read() == b"".join(b"part%d," % i for i in range(1000))
c.request("HEAD", "/")
r = c.getresponse(); assert r.status == 200 and r.read() == b""
c.request("GET", "/stream?n=50")
r = c.getresponse(); assert r.status == 200 and len(r.read()) == 50 * 1024
c.request("PUT", "/")
r = c.getresponse(); assert r.status == 405 and r.getheader("Allow") == "GET, HEAD, OPTIONS"; r.read()
print("ok", c.sock is not None)
"#,
        port = server.port
    );
    let (out, err, ok) = run("python3", &["-c", &script]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "ok True", "{out}{err}");
}

#[test]
fn with_requirepass_only_auth_gets_through_and_a_large_request_before_it_is_refused() {
    let server = Proc::start(&[], "kv", &["--requirepass", "pw"]);
    let mut s = connect(server.port);
    // Pipelined: refused until AUTH, then served; a wrong password and a
    // user other than the default one are refused.
    s.write_all(b"GET k\r\nAUTH nope\r\nAUTH someone pw\r\nAUTH pw\r\nSET k v\r\nGET k\r\n")
        .unwrap();
    expect_reply(&mut s, b"-NOAUTH Authentication required.\r\n");
    expect_reply(
        &mut s,
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    );
    expect_reply(
        &mut s,
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    );
    expect_reply(&mut s, b"+OK\r\n+OK\r\n$1\r\nv\r\n");
    // Before AUTH, a request larger than AUTH could ever be is not kept.
    let mut s = connect(server.port);
    let mut big = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000\r\n".to_vec();
    big.extend_from_slice(&[b'x'; 100_000]);
    let _ = s.write_all(&big);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("-ERR Protocol error: unauthenticated request too large"),
        "{answer}"
    );
}
