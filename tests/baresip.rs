//! Debian's baresip against acd's default SIP settings: it must register
//! (baresip 1.0 failed acd's former MD5 + SHA-256 double challenge with
//! "Register: Function not implemented") and be refused with a wrong
//! password. Answering, hold/resume and hang-up with baresip are not
//! covered yet (see issue 12's note). Skipped with a message when `baresip` is not installed (the
//! README test command installs it).

mod common;

use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Baresip {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Baresip {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("out.log")).unwrap_or_default()
    }
}

/// baresip as agent `user` with `password`, registering to acd on `port`,
/// everything else baresip's defaults apart from the audio (files, no
/// sound card) and auto answer.
fn baresip(user: &str, password: &str, port: u16) -> Baresip {
    let dir = std::env::temp_dir().join(format!("acd-baresip-{}-{user}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sip_port = free_port();
    std::fs::write(
        dir.join("accounts"),
        format!("<sip:{user}@127.0.0.1:{port}>;auth_pass={password};regint=600;answermode=auto\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("config"),
        format!(
            "sip_listen 127.0.0.1:{sip_port}\nmodule_path /usr/lib/baresip/modules\nmodule account.so\nmodule stdio.so\nmodule g711.so\nmodule aufile.so\nmodule_app menu.so\naudio_player aufile,/dev/null\naudio_source aufile,/dev/null\nrtp_ports 43000-43100\n"
        ),
    )
    .unwrap();
    let out = std::fs::File::create(dir.join("out.log")).unwrap();
    let child = Command::new("baresip")
        .args(["-f", dir.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("baresip runs");
    Baresip { child, dir }
}

fn installed() -> bool {
    Command::new("baresip").arg("-h").output().is_ok()
}

#[test]
fn baresip_registers_with_the_defaults_and_a_wrong_password_is_refused() {
    if !installed() {
        eprintln!("baresip not installed: skipped (scripts/test installs it)");
        return;
    }
    let (_g, port, d) = daemon_q(r#"members = [{ agent = "anna" }]"#);
    // Wrong password: never registered, and baresip says why.
    let wrong = baresip("bert", "nope", port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !wrong.log().contains("403") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(wrong.log().contains("403"), "{}", wrong.log());
    assert_eq!(d.snapshot().registered_contacts, 0);
    drop(wrong);

    let anna = baresip("anna", "anna-pw", port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.snapshot().registered_contacts == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(d.snapshot().registered_contacts, 1, "baresip did not register:\n{}", anna.log());

    // Unregisters on exit: the binding goes.
    drop(anna);
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.snapshot().registered_contacts != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_drained(&d);
}
