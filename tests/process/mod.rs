//! Running an example server as a real process: start it, wait for it to
//! listen, signal it, read its log and CPU time.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// target/<profile>/examples/<name>: `cargo test` builds the examples
/// beside the test binaries.
pub fn example(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("examples").join(name);
    assert!(path.exists(), "{} not built", path.display());
    path
}

/// A client socket to a server on loopback, with a read timeout so a
/// test that waits for an answer that never comes fails instead of hanging.
pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Sends `request` on a new connection and reads until the server closes.
pub fn exchange(port: u16, request: &[u8]) -> String {
    let mut s = connect(port);
    let _ = s.write_all(request);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process, killed if the test ends early.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    pub port: u16,
}

impl Proc {
    /// Runs `prefix... example --addr 127.0.0.1:PORT args...`, logging to a
    /// temporary file, and waits until it listens.
    pub fn start(prefix: &[&str], name: &str, args: &[&str]) -> Proc {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("evloop-{name}-{port}.log"));
        let exe = example(name);
        let mut argv: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        argv.push(exe.display().to_string());
        argv.extend(["--addr".into(), format!("127.0.0.1:{port}")]);
        argv.extend(args.iter().map(|s| s.to_string()));
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {argv:?}: {e}"));
        let proc = Proc { child, log, port };
        let end = Instant::now() + Duration::from_secs(20);
        while !proc
            .log()
            .contains(&format!("listening on 127.0.0.1:{port}"))
        {
            assert!(Instant::now() < end, "{name} never listened");
            thread::sleep(Duration::from_millis(10));
        }
        proc
    }

    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill (procps) not installed")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits for exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < end, "still running after {limit:?}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// User + system CPU seconds so far.
    pub fn cpu_seconds(&self) -> f64 {
        self.cpu_ticks() as f64 / 100.0 // USER_HZ is 100 on Linux
    }

    /// User + system CPU time so far, in clock ticks (1/100 s).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// Resident memory, in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS");
        kb * 1024
    }

    /// A `key=value` figure from the last line of the log that has it.
    pub fn logged(&self, key: &str) -> Option<u64> {
        let log = self.log();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains(&format!(" {key}=")))?;
        let rest = line.split(&format!(" {key}=")).nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `tool` is installed: a missing one fails under CI (`.ci/run`
/// installs it) and skips with a message elsewhere.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} not installed: .ci/run must install it"
        );
        eprintln!("skipped: {tool} not installed");
    }
    found
}

/// Runs `cmd args...`: its stdout, its stderr, and whether it succeeded.
pub fn run(cmd: &str, args: &[&str]) -> (String, String, bool) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}
