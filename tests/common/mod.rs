//! Shared harness for the tests that run the daemon against real SIP stacks:
//! pjsua2 user agents (`tests/interop/ua.py`), free loopback ports, a test
//! config, and the "nothing outlived its call" check.
#![allow(dead_code)]

pub mod audio;
pub mod baresip;

use acd::config::{from_toml_str, Config};
use acd::shell::{DaemonHandle, Snapshot};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// pjsua2 processes are heavy for 2 cores: one scenario at a time.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn python() -> PathBuf {
    let p =
        std::env::var_os("ACD_INTEROP_PYTHON").map(PathBuf::from).unwrap_or_else(|| root().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "{} not found: run the README test command (scripts/test), which installs pjsua2 into .venv",
        p.display()
    );
    p
}

pub fn free_port() -> u16 {
    // UDP and TCP on the same number: take a UDP port and check TCP too.
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// An even base port with `pairs` RTP/RTCP pairs free above it, outside the
/// range pjsua2 takes its own media ports from (20000..40000).
pub fn free_rtp_range(pairs: u16) -> u16 {
    let start = 41000 + (std::process::id() % 500) as u16 * 16;
    for base in (start..60000).step_by(8) {
        if (base..base + 2 * pairs).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no free RTP range");
}

/// A config for one scenario: `queues` holds `[[queue]]`/`[[agent]]`/
/// `[[number]]` tables; the SIP section and trunk are added here.
pub fn config(port: u16, body: &str) -> Config {
    let text = config_text(port, body);
    from_toml_str("interop.toml", &text).unwrap_or_else(|e| panic!("test config: {e}"))
}

/// The text behind [`config`], for tests that write it to a file. `body`
/// may set `[metrics]`/`[admin]`/`[event_log]` itself only if it removes
/// the defaults here (use [`config_text_with`]).
pub fn config_text(port: u16, body: &str) -> String {
    config_text_with(port, "[metrics]\nlisten = \"\"\n\n[admin]\nlisten = \"\"\n", body)
}

pub fn config_text_with(port: u16, ops: &str, body: &str) -> String {
    format!(
        r#"
[sip]
listen_udp = ["127.0.0.1:{port}"]
listen_tcp = ["127.0.0.1:{port}"]
register_min_expires = 10
options_interval_secs = 0

{ops}
[[trunk]]
name = "test-trunk"
sources = ["127.0.0.1"]
trust_headers = true

[defaults]
wrap_up_secs = 0
ring_timeout_secs = 4

{body}
"#
    )
}

pub struct Ua {
    pub name: String,
    pub child: Child,
    pub stdin: ChildStdin,
    pub events: Receiver<Value>,
    pub seen: Vec<Value>,
}

impl Ua {
    pub fn spawn(name: &str, args: &[&str]) -> Ua {
        let mut cmd = Command::new(python());
        cmd.arg(root().join("tests/interop/ua.py")).args(["--name", name, "--port", "0"]).args(args);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start ua.py");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let mut ua = Ua { name: name.to_string(), child, stdin, events: rx, seen: Vec::new() };
        ua.expect("ready", Duration::from_secs(20));
        ua
    }

    /// An agent phone registered with digest to acd.
    pub fn agent(name: &str, port: u16, password: &str, behaviour: &str) -> Ua {
        let registrar = format!("127.0.0.1:{port}");
        let mut ua = Ua::spawn(
            name,
            &["--registrar", &registrar, "--user", name, "--password", password, "--behaviour", behaviour],
        );
        let ev = ua.expect_any(&["registered", "register_failed"], Duration::from_secs(10));
        assert_eq!(ev["event"], "registered", "{name}: {ev}");
        ua
    }

    pub fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("ua stdin");
        self.stdin.flush().ok();
    }

    pub fn expect(&mut self, event: &str, within: Duration) -> Value {
        self.expect_any(&[event], within)
    }

    /// Waits for the next event whose name is one of `events`; earlier
    /// events are kept in `seen`.
    pub fn expect_any(&mut self, events: &[&str], within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if events.iter().any(|e| v["event"] == *e) {
                        return v;
                    }
                }
                Err(_) => panic!("{}: no {events:?} within {within:?}; saw {:?}", self.name, self.seen),
            }
        }
    }

    /// Asserts no event named `event` arrives within `d`.
    pub fn quiet(&mut self, event: &str, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok(v) = self.events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            assert_ne!(v["event"], event, "{}: unexpected {v}", self.name);
            self.seen.push(v);
        }
    }
}

impl Drop for Ua {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until every call has ended inside acd: no call, leg, dialog,
/// pending request or RTP port left, and no call-control error.
pub fn assert_drained(d: &DaemonHandle) -> Snapshot {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = d.snapshot();
        let clean = s.calls == 0
            && s.legs == 0
            && s.engine_calls == 0
            && s.stack.legs == 0
            && s.stack.dialogs == 0
            && s.stack.pending_requests == 0
            && s.media_legs == 0
            && s.rtp_ports_in_use == 0;
        if clean {
            assert_eq!(s.errors, 0, "call control recorded errors: {s:?}");
            return s;
        }
        assert!(Instant::now() < deadline, "something outlived its call: {s:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn trunk() -> Ua {
    Ua::spawn("trunk", &[])
}

pub fn uri(number: &str, port: u16) -> String {
    format!("sip:{number}@127.0.0.1:{port}")
}

pub const TWO_AGENTS: &str = r#"
[[agent]]
id = "anna"
password = "anna-pw"

[[agent]]
id = "bert"
password = "bert-pw"
"#;

/// A minimal HTTP/1.1 client for the admin API and the metrics endpoint:
/// returns (status, body).
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { unchunk(rest) } else { rest.to_string() };
    (status, body)
}

fn unchunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Two agents (anna, bert) and one queue `q` with `settings` (strategy,
/// members, timeouts...), reached by dialling 100.
pub fn queue_q(settings: &str) -> String {
    format!("{TWO_AGENTS}\n[[queue]]\nname = \"q\"\n{settings}\n\n[[number]]\nnumber = \"100\"\nqueue = \"q\"\n")
}

/// The usual start of a scenario: take the serial lock, pick a port, and
/// run a daemon on [`queue_q`]`(settings)`. Keep the guard for the test's
/// whole length.
pub fn daemon_q(settings: &str) -> (std::sync::MutexGuard<'static, ()>, u16, DaemonHandle) {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let d = DaemonHandle::spawn(config(port, &queue_q(settings))).expect("daemon");
    (guard, port, d)
}

/// Records `secs` of what `ua`'s call `call` receives; returns the samples
/// (the first 300 ms dropped: jitter buffer start-up) and the rate.
pub fn record(ua: &mut Ua, call: i64, path: &std::path::Path, secs: f32) -> (Vec<f32>, u32) {
    ua.send(&format!("record {call} {}", path.display()));
    ua.expect("recording", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs_f32(secs));
    ua.send(&format!("stoprecord {call}"));
    ua.expect("recorded", Duration::from_secs(5));
    let (s, rate) = audio::read_wav(path);
    let skip = (rate as usize * 3 / 10).min(s.len());
    (s[skip..].to_vec(), rate)
}

/// How much of `freq` `ua`'s call `call` hears over 1.5 s (the recording is
/// kept in `dir` as `<label>.wav`).
pub fn hears(ua: &mut Ua, call: i64, dir: &std::path::Path, label: &str, freq: f32) -> f32 {
    let (heard, rate) = record(ua, call, &dir.join(format!("{label}.wav")), 1.5);
    audio::tone_ratio(&heard, rate, freq)
}

/// Two queues, each with one agent: "front" (anna, number 100, plus
/// `front_extra` keys) and "tech" (bert, number 200): a floor for
/// escalations from the front line.
pub fn front_and_tech(front_extra: &str) -> String {
    format!(
        r#"
[[agent]]
id = "anna"
password = "anna-pw"

[[agent]]
id = "bert"
password = "bert-pw"

[[queue]]
name = "front"
members = [{{ agent = "anna" }}]
{front_extra}

[[queue]]
name = "tech"
members = [{{ agent = "bert" }}]

[[number]]
number = "100"
queue = "front"

[[number]]
number = "200"
queue = "tech"
"#
    )
}
