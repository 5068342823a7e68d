//! The chat example against members who try to break the room: names are
//! unique (guest names too), lines are stripped of control characters
//! and terminal escapes before they are relayed, and a member's flood is
//! taken in pieces without losing or reordering a line. Raw sockets, the
//! server as a real process.

mod process;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use process::Proc;

struct Member {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    name: String,
}

impl Member {
    fn join(port: u16) -> Member {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut m = Member {
            writer: s.try_clone().unwrap(),
            reader: BufReader::new(s),
            name: String::new(),
        };
        let welcome = m.line();
        m.name = welcome
            .strip_prefix("* welcome, ")
            .and_then(|rest| rest.split('.').next())
            .unwrap_or_else(|| panic!("no welcome: {welcome}"))
            .to_string();
        m
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("a line");
        assert!(!line.is_empty(), "the server closed");
        line.trim_end_matches('\n').to_string()
    }

    /// Reads lines until one contains `what`.
    fn until(&mut self, what: &str) -> String {
        loop {
            let line = self.line();
            if line.contains(what) {
                return line;
            }
        }
    }

    fn say(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }
}

#[test]
fn a_guest_name_taken_with_nick_is_not_given_to_the_next_guest() {
    let chat = Proc::start(&[], "chat", &[]);
    let mut a = Member::join(chat.port);
    let n: u64 = a.name.trim_start_matches("guest").parse().unwrap();
    let next = format!("guest{}", n + 1);
    a.say(format!("/nick {next}\n").as_bytes());
    a.until(&format!("is now {next}"));
    let b = Member::join(chat.port);
    assert_ne!(b.name, next, "two members are called {next}");
    a.say(b"/who\n");
    let who = a.until("online");
    assert!(who.contains(&next) && who.contains(&b.name), "{who}");
}

#[test]
fn control_characters_and_terminal_escapes_are_not_relayed() {
    let chat = Proc::start(&[], "chat", &[]);
    let mut a = Member::join(chat.port);
    let mut b = Member::join(chat.port);
    a.until("joined");
    // A clear-screen, a colour, a bell, a carriage return that would let
    // the line overwrite its own "name:" prefix, a NUL and a DEL.
    a.say(b"hi \x1b[2J\x1b[31mred\x1b[0m\x07\rbob: fake\x00\x7f!\r\n");
    let got = b.until("hi");
    assert_eq!(got, format!("{}: hi redbob: fake!", a.name));
    assert!(
        got.chars().all(|c| !c.is_control()),
        "control characters relayed: {got:?}"
    );
}

#[test]
fn a_flood_is_taken_in_pieces_with_every_line_relayed_in_order() {
    let chat = Proc::start(&[], "chat", &[]);
    let mut flooder = Member::join(chat.port);
    let mut listener = Member::join(chat.port);
    let _third = Member::join(chat.port);
    flooder.until("joined");
    listener.until("joined");
    // 40,000 lines in one go: with three members, more than one call's
    // work (`WORK_PER_CALL` writes), so the rest comes from the ready list.
    let lines = 40_000;
    let mut flood = String::new();
    for i in 0..lines {
        flood += &format!("{i}\n");
    }
    flooder.say(flood.as_bytes());
    let prefix = format!("{}: ", flooder.name);
    let mut expect = 0;
    while expect < lines {
        let line = listener.line();
        if let Some(n) = line.strip_prefix(&prefix) {
            assert_eq!(n, expect.to_string(), "a line lost or out of order");
            expect += 1;
        }
    }
}

#[test]
fn one_members_burst_does_not_drop_a_member_who_reads_at_full_speed() {
    // 64 KiB of short lines at once from a long-named member: relayed in
    // one go, they are 1.2 MB for the other member, past its hard limit
    // (1 MiB) before it could read a byte. Taken a bounded share per call,
    // with the outputs flushed in between, a fast reader keeps up.
    let chat = Proc::start(&[], "chat", &[]);
    let mut flooder = Member::join(chat.port);
    let long = "n".repeat(32);
    flooder.say(format!("/nick {long}\n").as_bytes());
    flooder.until("is now");
    let mut reader = Member::join(chat.port);
    flooder.until("joined");
    let mut flood = Vec::new();
    while flood.len() < 64 * 1024 {
        flood.extend_from_slice(b"a\n");
    }
    flood.extend_from_slice(b"END\n");
    flooder.say(&flood);
    let end = reader.until("END");
    assert_eq!(end, format!("{long}: END"));
}
