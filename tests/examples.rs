//! The echo and client examples as a user runs them: real processes, real
//! sockets, exit codes checked.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// target/<profile>/examples/<name>: `cargo test` builds the examples
/// beside the test binaries.
fn example(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("examples").join(name);
    assert!(path.exists(), "{} not built", path.display());
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_echo(port: u16) -> Running {
    let child = Command::new(example("echo"))
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .expect("start echo");
    let end = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "echo never listened");
        thread::sleep(Duration::from_millis(20));
    }
    Running(child)
}

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
    let port = free_port();
    let _echo = start_echo(port);
    let out = client(port, &["hello", "non-blocking world"], None);
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
    let port = free_port();
    let _echo = start_echo(port);
    let out = client(port, &[], Some("one\ntwo\nthree\n"));
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\nthree\n");
}

#[test]
fn client_fails_clearly_when_nothing_listens() {
    let port = free_port();
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
