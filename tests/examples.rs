//! The echo and client examples as a user runs them: real processes, real
//! sockets, exit codes checked.

mod process;

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use process::{example, Proc};

fn client(port: u16, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(example("client"))
        .args(["--addr", &format!("127.0.0.1:{port}"), "--timeout", "2"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start client");
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

#[test]
fn client_echoes_its_arguments_and_exits_zero() {
    let echo = Proc::start(&[], "echo", &[]);
    let out = client(echo.port, &["hello", "non-blocking world"], None);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello\nnon-blocking world\n"
    );
}

#[test]
fn client_echoes_stdin_lines() {
    let echo = Proc::start(&[], "echo", &[]);
    let out = client(echo.port, &[], Some("one\ntwo\nthree\n"));
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\nthree\n");
}

#[test]
fn client_fails_clearly_when_nothing_listens() {
    let port = process::free_port();
    let out = client(port, &["hello"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect"), "stderr: {err}");
}

#[test]
fn client_fails_clearly_when_the_server_does_not_answer() {
    // A listener that accepts (the kernel does) but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    let out = client(port, &["hello"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did not answer"), "stderr: {err}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn every_server_prints_the_buffer_budget_it_uses() {
    for name in ["echo", "http", "kv", "chat"] {
        let server = Proc::start(&[], name, &["--max-buffered", "64M"]);
        let end = Instant::now() + Duration::from_secs(10);
        while !server.log().contains("max buffered: 67108864 bytes") {
            assert!(
                Instant::now() < end,
                "{name} did not print its budget; log:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_malformed_buffer_budget_is_refused_clearly() {
    let out = Command::new(example("echo"))
        .args(["--addr", "127.0.0.1:0", "--max-buffered", "12X"])
        .output()
        .expect("run echo");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a size"), "stderr: {err}");
}
