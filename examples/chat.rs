//! A chat server: every line goes to everyone else.
//!
//! ```sh
//! cargo run --release --example chat -- --addr 127.0.0.1:7070
//! nc 127.0.0.1 7070      # in two terminals; type away
//! ```
//!
//! Commands: `/nick NAME`, `/who`, `/quit`. Joins and leaves are
//! announced.
//!
//! What it teaches beyond echo: **writing to connections other than the
//! one being served** (a broadcast: the reactor queues each copy and
//! flushes them all in step 6 of the turn), and **the slow consumer**: a
//! member who stops reading cannot make the server buffer without end,
//! nor slow the room down. Past the soft output limit for the grace period,
//! or past the hard limit at once, the reactor disconnects them.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use clap::Parser;
use evloop::{CloseReason, ConnId, Context, Handler, Reactor};

#[derive(Parser, Debug)]
#[command(about = "Chat server on the evloop reactor")]
struct Cli {
    #[command(flatten)]
    server: common::ServerArgs,
}

/// Longest line accepted: a chat line is a sentence, not a file.
const MAX_LINE: usize = 4 * 1024;
/// Longest name.
const MAX_NAME: usize = 32;
/// A member more than this far behind for `SOFT_GRACE` is dropped: 256 KiB
/// is thousands of lines nobody is reading.
const SOFT_LIMIT: usize = 256 * 1024;
const SOFT_GRACE: Duration = Duration::from_secs(5);
/// ... and at once past 1 MiB, so a room of 10,000 cannot hold 10 GiB of
/// unread chat.
const HARD_LIMIT: usize = 1024 * 1024;

struct Member {
    id: ConnId,
    name: String,
}

#[derive(Default)]
struct Chat {
    members: Vec<Option<Member>>,
    names: HashSet<String>,
    guests: u64,
}

impl Chat {
    fn member(&self, conn: ConnId) -> Option<&Member> {
        self.members
            .get(conn.index())?
            .as_ref()
            .filter(|m| m.id == conn)
    }

    /// Sends `line` to everyone but `except`.
    fn broadcast(&self, cx: &mut Context<'_>, except: Option<ConnId>, line: &str) {
        for m in self.members.iter().flatten() {
            if Some(m.id) != except {
                // A member past the hard limit is closed by this write;
                // the rest of the room is unaffected.
                let _ = cx.write(m.id, line.as_bytes());
            }
        }
    }

    fn tell(cx: &mut Context<'_>, conn: ConnId, line: &str) {
        let _ = cx.write(conn, line.as_bytes());
    }

    fn line(&mut self, cx: &mut Context<'_>, conn: ConnId, line: &str) {
        let Some(name) = self.member(conn).map(|m| m.name.clone()) else {
            return;
        };
        let (command, arg) = line.split_once(' ').unwrap_or((line, ""));
        match command {
            "/nick" => self.rename(cx, conn, &name, arg.trim()),
            "/who" => {
                let mut names: Vec<&str> = self
                    .members
                    .iter()
                    .flatten()
                    .map(|m| m.name.as_str())
                    .collect();
                names.sort_unstable();
                Self::tell(cx, conn, &format!("* online: {}\n", names.join(", ")));
            }
            "/quit" => {
                Self::tell(cx, conn, "* bye\n");
                cx.close(conn);
            }
            c if c.starts_with('/') => {
                Self::tell(cx, conn, "* commands: /nick NAME, /who, /quit\n")
            }
            _ if line.is_empty() => {}
            _ => self.broadcast(cx, Some(conn), &format!("{name}: {line}\n")),
        }
    }

    fn rename(&mut self, cx: &mut Context<'_>, conn: ConnId, old: &str, new: &str) {
        let valid = !new.is_empty()
            && new.len() <= MAX_NAME
            && new
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Self::tell(
                cx,
                conn,
                &format!("* a name is 1 to {MAX_NAME} letters, digits, _ or -\n"),
            );
        }
        if self.names.contains(new) {
            return Self::tell(cx, conn, &format!("* {new} is taken\n"));
        }
        self.names.remove(old);
        self.names.insert(new.to_owned());
        if let Some(Some(m)) = self.members.get_mut(conn.index()) {
            m.name = new.to_owned();
        }
        self.broadcast(cx, None, &format!("* {old} is now {new}\n"));
    }
}

impl Handler for Chat {
    type Message = ();

    fn on_open(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        self.guests += 1;
        let name = format!("guest{}", self.guests);
        Self::tell(
            cx,
            conn,
            &format!("* welcome, {name}. Commands: /nick NAME, /who, /quit\n"),
        );
        self.broadcast(cx, None, &format!("* {name} joined\n"));
        if self.members.len() <= conn.index() {
            self.members.resize_with(conn.index() + 1, || None);
        }
        self.names.insert(name.clone());
        self.members[conn.index()] = Some(Member { id: conn, name });
    }

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        // Whole lines only; the reactor keeps a partial one.
        let Some(end) = input.iter().rposition(|&b| b == b'\n') else {
            if input.len() >= MAX_LINE {
                Self::tell(cx, conn, "* line too long\n");
                cx.close(conn);
                return input.len();
            }
            return 0;
        };
        for raw in input[..end].split(|&b| b == b'\n') {
            if raw.len() > MAX_LINE {
                Self::tell(cx, conn, "* line too long\n");
                cx.close(conn);
                return input.len();
            }
            let line = String::from_utf8_lossy(raw);
            self.line(cx, conn, line.trim_end_matches('\r'));
        }
        end + 1
    }

    fn on_close(&mut self, cx: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        let Some(m) = self.members.get_mut(conn.index()).and_then(Option::take) else {
            return;
        };
        self.names.remove(&m.name);
        let why = match reason {
            CloseReason::SlowConsumer => " (too far behind)",
            CloseReason::IdleTimeout => " (idle)",
            _ => "",
        };
        self.broadcast(cx, None, &format!("* {} left{why}\n", m.name));
    }
}

fn main() -> std::io::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    common::init();
    let mut config = cli.server.config();
    config.soft_limit = SOFT_LIMIT;
    config.soft_grace = SOFT_GRACE;
    config.hard_limit = HARD_LIMIT;
    config.max_input = MAX_LINE + 1;
    let mut reactor = Reactor::new(Chat::default(), config)?;
    reactor.listen(cli.server.addr)?;
    reactor.handle_signals()?;
    reactor.run()?;
    Ok(common::exit_code(&reactor.stats()))
}
