//! What the daemon writes to its log when a phone sends credentials: the
//! shipped binary, a REGISTER with an Authorization header over loopback,
//! the whole log read back.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/acd.toml");
/// A digest response nobody could mistake for anything else in a log.
const SECRET: &str = "5ec2e75ec2e75ec2e75ec2e75ec2e7aa";

/// Runs the daemon on a copy of the example (free port, no admin/metrics
/// listeners), sends one REGISTER with credentials, stops it; its log.
fn log_of_one_register(acd_log: Option<&str>) -> String {
    let port = loop {
        let p = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            break p;
        }
    };
    let dir = std::env::temp_dir().join(format!("acd-log-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The example's sounds are relative to its directory.
    let sounds = dir.join("sounds");
    if !sounds.exists() {
        std::os::unix::fs::symlink(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sounds"), &sounds).unwrap();
    }
    let path = dir.join("acd.toml");
    let text = std::fs::read_to_string(EXAMPLE)
        .unwrap()
        .replace("127.0.0.1:5060", &format!("127.0.0.1:{port}"))
        .replace("listen = \"127.0.0.1:9464\"", "listen = \"\"")
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"\"");
    // The example's own ports must all be gone (a daemon may run on them).
    for fixed in [":5060", ":9464", ":8080"] {
        assert!(!text.contains(&format!("127.0.0.1{fixed}")), "the example's {fixed} was not rewritten");
    }
    std::fs::write(&path, &text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_acd"));
    cmd.args(["run", "--config", path.to_str().unwrap()]).stdout(Stdio::piped()).env_remove("ACD_LOG");
    if let Some(level) = acd_log {
        cmd.env("ACD_LOG", level);
    }
    let mut child = cmd.spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(10)).expect("the daemon starts");
        let running = line.contains("acd running");
        log.push(line);
        if running {
            break;
        }
    }
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = sock.local_addr().unwrap();
    let register = format!(
        "REGISTER sip:127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-log-1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:aino@127.0.0.1>;tag=log1\r\n\
         To: <sip:aino@127.0.0.1>\r\n\
         Call-ID: log-test-1\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:aino@{me}>\r\n\
         Authorization: Digest username=\"aino\", realm=\"acd\", nonce=\"0000000000000001ffffffffffffffffffffffffffffffff\", uri=\"sip:127.0.0.1:{port}\", response=\"{SECRET}\", algorithm=MD5\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sock.send_to(register.as_bytes(), ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).expect("acd answers the REGISTER");
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("SIP/2.0 401"), "an unknown nonce gets a fresh challenge: {answer}");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        let stopped = line.contains("acd stopped");
        log.push(line);
        if stopped {
            break;
        }
    }
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
    log.join("\n")
}

#[test]
fn the_default_log_has_no_sip_messages_and_no_credentials() {
    let log = log_of_one_register(None);
    assert!(log.contains("acd stopped"), "{log}");
    assert!(!log.contains(SECRET), "a digest response reached the default log:\n{log}");
    assert!(!log.contains("raw_message"), "rsipstack's per-message lines are off by default:\n{log}");
}

#[test]
fn at_debug_the_messages_are_logged_with_their_credentials_redacted() {
    let log = log_of_one_register(Some("debug"));
    assert!(log.contains("raw_message"), "at debug the SIP messages are there:\n{log}");
    assert!(log.contains("Authorization: <redacted>"), "{log}");
    assert!(!log.contains(SECRET), "a digest response reached the debug log:\n{log}");
}
