//! Debian's baresip as an agent's softphone, driven through its stdin menu:
//! one driver for `tests/baresip.rs` and `tests/transfer.rs`.

use super::{free_port, free_rtp_range};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Baresip {
    child: Child,
    pub dir: std::path::PathBuf,
}

/// Options for [`Baresip::agent`] beyond the account.
#[derive(Default)]
pub struct Audio {
    /// A WAV file baresip sends as its microphone (silence without).
    pub source: Option<std::path::PathBuf>,
    /// Load `sndfile`: baresip writes what it receives to `dump-*-dec.wav`.
    pub dump: bool,
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether baresip is on this machine (the README's test command installs it).
pub fn installed() -> bool {
    Command::new("baresip").arg("-h").output().is_ok()
}

impl Baresip {
    /// baresip as agent `user` with `password`, registering to acd on
    /// `port`; everything else baresip's defaults apart from the audio
    /// (files, no sound card) and auto answer. `tag` keeps the scratch dirs
    /// of different test binaries apart.
    pub fn agent(tag: &str, user: &str, password: &str, port: u16, audio: Audio) -> Baresip {
        let dir = std::env::temp_dir().join(format!("acd-{tag}-baresip-{}-{user}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sip_port = free_port();
        let rtp = free_rtp_range(4);
        std::fs::write(
            dir.join("accounts"),
            format!("<sip:{user}@127.0.0.1:{port}>;auth_pass={password};regint=600;answermode=auto\n"),
        )
        .unwrap();
        std::fs::write(
            dir.join("config"),
            format!(
                "sip_listen 127.0.0.1:{sip_port}\nmodule_path /usr/lib/baresip/modules\nmodule account.so\nmodule stdio.so\nmodule g711.so\nmodule aufile.so\n{dump}module_app menu.so\naudio_player aufile,/dev/null\naudio_source aufile,{source}\nsnd_path {dir}\nrtp_ports {rtp}-{rtp_end}\n",
                dump = if audio.dump { "module sndfile.so\n" } else { "" },
                source = audio.source.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "/dev/null".into()),
                dir = dir.display(),
                rtp_end = rtp + 7,
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("out.log")).unwrap_or_default()
    }

    /// A menu command on baresip's stdin (`/hold`, `/resume`, `/hangup`,
    /// `/transfer <uri>`).
    pub fn command(&mut self, cmd: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("baresip stdin");
        writeln!(stdin, "{cmd}").expect("baresip stdin");
        stdin.flush().ok();
    }

    /// Waits until baresip's output contains `text` `count` times.
    pub fn wait_for(&self, text: &str, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.log().matches(text).count() < count {
            assert!(Instant::now() < deadline, "baresip never printed {text:?} ({count}x):\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The WAV sndfile wrote of what baresip received (decoded).
    pub fn received_wav(&self) -> Option<std::path::PathBuf> {
        std::fs::read_dir(&self.dir).ok()?.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("dump-") && n.ends_with("-dec.wav"))
        })
    }
}
