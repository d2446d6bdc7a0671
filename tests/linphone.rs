//! Debian's Linphone (`linphone-cli`, liblinphone 5.x) against acd's default
//! SIP settings: `linphonec` registers as an agent with the right password
//! (one MD5 challenge) and is refused with a wrong one. Skipped with a
//! message when `linphonec` is not installed (the README test command
//! installs it).

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One `linphonec` with its own HOME (liblinphone does not start its SIP
/// transports when it cannot open its database) and its own rc file.
struct Linphonec {
    child: Child,
    lines: mpsc::Receiver<String>,
    out: Vec<String>,
    dir: std::path::PathBuf,
}

impl Linphonec {
    fn spawn(tag: &str) -> Linphonec {
        let dir = std::env::temp_dir().join(format!("acd-linphone-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home/.local/share/linphone")).unwrap();
        let rc = dir.join("linphonerc");
        std::fs::write(&rc, format!("[sip]\nsip_port={}\nsip_tcp_port=0\nsip_tls_port=0\n", free_port())).unwrap();
        let mut child = Command::new("linphonec")
            .args(["-c", rc.to_str().unwrap()])
            .env("HOME", dir.join("home"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("linphonec runs");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            // linphonec prompts without a newline: split on both.
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            while r.read_until(b'\n', &mut buf).map(|n| n > 0).unwrap_or(false) {
                if tx.send(String::from_utf8_lossy(&buf).to_string()).is_err() {
                    break;
                }
                buf.clear();
            }
        });
        Linphonec { child, lines, out: Vec::new(), dir }
    }

    fn command(&mut self, cmd: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
    }

    /// Asks `status register` until the answer contains `want`, or `within`
    /// passes; returns whether it did.
    fn registered_within(&mut self, want: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            self.command("status register");
            let until = Instant::now() + Duration::from_millis(500);
            while let Ok(line) = self.lines.recv_timeout(until.saturating_duration_since(Instant::now())) {
                let hit = line.contains(want);
                self.out.push(line);
                if hit {
                    return true;
                }
            }
        }
        false
    }
}

impl Drop for Linphonec {
    fn drop(&mut self) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = writeln!(stdin, "quit");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn installed() -> bool {
    Command::new("linphonec").arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

#[test]
fn linphone_registers_with_the_defaults_and_a_wrong_password_is_refused() {
    if !installed() {
        eprintln!("linphonec not installed: skipped (scripts/test installs linphone-cli)");
        return;
    }
    let (_g, port, d) = daemon_q(r#"members = [{ agent = "anna" }]"#);

    // A wrong password: acd refuses it (liblinphone then asks its user for
    // another one), and no binding appears.
    let mut wrong = Linphonec::spawn("wrong");
    wrong.command(&format!("register sip:bert@127.0.0.1:{port} sip:127.0.0.1:{port} nope"));
    assert!(!wrong.registered_within("registered, identity", Duration::from_secs(4)), "{:?}", wrong.out);
    assert_eq!(d.snapshot().registered_contacts, 0);
    drop(wrong);

    let mut anna = Linphonec::spawn("anna");
    anna.command(&format!("register sip:anna@127.0.0.1:{port} sip:127.0.0.1:{port} anna-pw"));
    assert!(anna.registered_within("registered, identity", Duration::from_secs(10)), "{:?}", anna.out);
    assert_eq!(d.snapshot().registered_contacts, 1);

    // It unregisters on quit: the binding goes.
    drop(anna);
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.snapshot().registered_contacts != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_drained(&d);
}
