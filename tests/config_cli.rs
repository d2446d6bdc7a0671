//! The config as an admin meets it: the shipped example validates, every
//! kind of mistake is reported with file, key and reason, and
//! `acd check-config` exits 64 on a bad file without starting anything.

use acd::config::{from_toml_str, load, ConfigError, OverflowTarget, Strategy};
use std::path::Path;
use std::process::Command;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/acd.toml");

/// The example's text, with its sound paths (relative to `config/`) made
/// absolute so the text works from anywhere.
fn example_text() -> String {
    let sounds = format!("\"{}/config/sounds/", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(EXAMPLE).unwrap().replace("\"sounds/", &sounds)
}

/// The example config on a free SIP port with metrics and admin off, written
/// to a scratch dir named `tag`: a test that runs the daemon must not take
/// the example's fixed ports (a daemon may be running on them beside the
/// tests).
fn example_on_free_ports(tag: &str) -> std::path::PathBuf {
    // A port free for both UDP and TCP (the daemon listens on both).
    let port = loop {
        let p = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            break p;
        }
    };
    let dir = std::env::temp_dir().join(format!("acd-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("acd.toml");
    let text = example_text()
        .replace("127.0.0.1:5060", &format!("127.0.0.1:{port}"))
        .replace("listen = \"127.0.0.1:9464\"", "listen = \"\"")
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"\"");
    // The example's own ports must all be gone (a daemon may run on them).
    for fixed in [":5060", ":9464", ":8080"] {
        assert!(!text.contains(&format!("127.0.0.1{fixed}")), "the example's {fixed} was not rewritten");
    }
    std::fs::write(&path, &text).unwrap();
    path
}

#[test]
fn the_shipped_example_is_valid_and_builds_what_it_says() {
    let cfg = load(Path::new(EXAMPLE)).expect("config/acd.toml is valid");
    let names: Vec<&str> = cfg.queues.iter().map(|q| q.name.as_str()).collect();
    for q in
        ["support-fi", "support-el", "support-ar", "support-ru", "support-en", "billing", "tech", "sales", "complaints"]
    {
        assert!(names.contains(&q), "example has queue {q}");
    }
    let fi = cfg.queue("support-fi").unwrap();
    assert_eq!(fi.strategy, Strategy::Skills);
    assert_eq!(fi.required_skills[0].skill, "lang.fi");
    assert_eq!(fi.ring_timeout_secs, 15, "inherited from [defaults]");
    assert_eq!(fi.overflow, Some(OverflowTarget::Queue("support-en".into())));
    assert_eq!(cfg.queue("billing").unwrap().wrap_up_secs, 30, "queue value beats [defaults]");
    let sofia = cfg.agent("sofia").unwrap();
    assert!(sofia.skills.contains(&("lang.ru".to_string(), 5)), "nested skill tables become dotted names");
    assert_eq!(sofia.wrap_up_secs, Some(20));
    assert!(!cfg.agent("hanna").unwrap().auto_login);
    assert_eq!(cfg.caller_priority("+358401234567"), 10, "VIP number");
    assert_eq!(cfg.caller_priority("+3589876543"), 5, "business prefix");
    assert_eq!(cfg.caller_priority("+3581111111"), 0, "everyone else");
}

/// Applies `edit` to the example and returns the error it produces.
fn error_after(edit: impl Fn(String) -> String) -> ConfigError {
    let text = edit(example_text());
    from_toml_str("acd.toml", &text).expect_err("the edited config must be refused")
}

fn invalid(key: &str, reason_part: &str, e: ConfigError) {
    match &e {
        ConfigError::Invalid { file, key: k, reason } => {
            assert_eq!(file, "acd.toml");
            assert_eq!(k, key, "{e}");
            assert!(reason.contains(reason_part), "reason {reason:?} should mention {reason_part:?}");
        }
        other => panic!("expected a key error for {key}, got {other}"),
    }
}

#[test]
fn mistakes_name_the_key_and_the_reason() {
    invalid(
        "queue[support-ar].strategy",
        "unknown strategy \"fastest\"; expected one of: random, weighted-random",
        error_after(|t| t.replace("strategy = \"round-robin\"", "strategy = \"fastest\"")),
    );
    invalid(
        "agent[omar].skills.lang.ar",
        "skill level 11 is out of range 1..=10",
        error_after(|t| t.replace("lang.ar = 5, lang.en = 4", "lang.ar = 11, lang.en = 4")),
    );
    invalid(
        "agent[omar].skills.lang.xx",
        "unknown skill \"lang.xx\"",
        error_after(|t| t.replace("lang.ar = 5, lang.en = 4", "lang.ar = 5, lang.xx = 4")),
    );
    invalid(
        "queue[support-fi].overflow",
        "overflow to queue \"nowhere\", which does not exist",
        error_after(|t| t.replacen("overflow = \"queue:support-en\"", "overflow = \"queue:nowhere\"", 1)),
    );
    invalid(
        "agent[omar].id",
        "duplicate agent \"omar\"",
        error_after(|t| t.replace("id = \"yusuf\"", "id = \"omar\"")),
    );
    invalid(
        "queue[billing].name",
        "duplicate queue \"billing\"",
        error_after(|t| t.replace("name = \"tech\"", "name = \"billing\"")),
    );
    invalid(
        "queue[support-el].members[0].agent",
        "no agent with id \"elena\"",
        error_after(|t| t.replace("members = [{ agent = \"eleni\" }", "members = [{ agent = \"elena\" }")),
    );
    invalid(
        "sip.workers",
        "65 is out of range 0..=64",
        error_after(|t| t.replacen("workers = 0 ", "workers = 65 ", 1)),
    );
    invalid(
        "defaults.ring_timeout_secs",
        "0 is out of range 1..=600",
        error_after(|t| t.replace("ring_timeout_secs = 15        # default", "ring_timeout_secs = 0 #")),
    );
    invalid(
        // Reported at the first queue of the loop in file order.
        "queue[support-fi].overflow",
        "overflow loops: support-fi -> support-en -> support-fi",
        error_after(|t| t.replace("overflow = \"sip:voicemail@pbx.example.com\"", "overflow = \"queue:support-fi\"")),
    );
    invalid(
        "queue[sales].overflow",
        "is not an overflow target",
        error_after(|t| t.replace("overflow = \"reject:486\"", "overflow = \"voicemail\"")),
    );
    invalid(
        "queue[sales].overflow",
        "not a SIP final error status",
        error_after(|t| t.replace("overflow = \"reject:486\"", "overflow = \"reject:200\"")),
    );
    invalid(
        "engine.cross_queue_policy",
        "unknown policy",
        error_after(|t| t.replace("cross_queue_policy = \"oldest-caller\"", "cross_queue_policy = \"fifo\"")),
    );
    invalid(
        "queue[complaints].tiers[0].tier",
        "tier 1 is always open",
        error_after(|t| {
            t.replace("tiers = [{ tier = 2, open_after_secs = 60 }]", "tiers = [{ tier = 1, open_after_secs = 60 }]")
        }),
    );
    invalid(
        "caller_rule[1].callers[0]",
        "prefix ending in a single '*'",
        error_after(|t| t.replace("\"+35898765*\"", "\"*35898765*\"")),
    );
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_with_the_key() {
    let e = error_after(|t| {
        t.replace("ring_timeout_secs = 20\nwrap_up_secs = 30", "ring_timout_secs = 20\nwrap_up_secs = 30")
    });
    let msg = e.to_string();
    assert!(msg.contains("unknown field `ring_timout_secs`"), "{msg}");
    let e = error_after(|t| t.replace("max_waiting = 400", "max_waiting = \"lots\""));
    let msg = e.to_string();
    assert!(msg.contains("max_waiting") && msg.contains("lots"), "{msg}");
}

#[test]
fn max_wait_without_overflow_is_explained() {
    let e = from_toml_str(
        "x.toml",
        "[[agent]]\nid = \"a\"\n[[queue]]\nname = \"q\"\nmax_wait_secs = 30\nmembers = [{ agent = \"a\" }]\n",
    )
    .unwrap_err();
    invalid("queue[q].max_wait_secs", "needs somewhere to send the caller", {
        match e {
            ConfigError::Invalid { key, reason, .. } => ConfigError::Invalid { file: "acd.toml".into(), key, reason },
            e => e,
        }
    });
}

fn acd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_acd"))
}

#[test]
fn check_config_prints_a_summary_and_exits_zero() {
    let out = acd().args(["check-config", EXAMPLE]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("OK"), "{text}");
    assert!(text.contains("9 queues, 15 agents, 10 skills"), "{text}");
    assert!(text.contains("queue support-fi") && text.contains("strategy skills"), "{text}");
}

#[test]
fn check_config_exits_64_naming_file_key_and_reason() {
    let dir = std::env::temp_dir().join(format!("acd-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, example_text().replace("strategy = \"round-robin\"", "strategy = \"fastest\"")).unwrap();
    let out = acd().args(["check-config"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(&bad.display().to_string()), "names the file: {err}");
    assert!(err.contains("queue[support-ar].strategy"), "names the key: {err}");
    assert!(err.contains("unknown strategy \"fastest\""), "says why: {err}");
    // `acd run` refuses the same file before starting anything.
    let out = acd().args(["run", "--config"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let missing = acd().args(["check-config", "/nonexistent/acd.toml"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(64));
    assert!(String::from_utf8(missing.stderr).unwrap().contains("/nonexistent/acd.toml: cannot read"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn environment_overrides_apply_and_are_validated() {
    let out = acd().args(["check-config", EXAMPLE]).env("ACD_ENGINE__SEED", "7").output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains("routing seed 7"));
    let out = acd().args(["check-config", EXAMPLE]).env("ACD_ENGINE__CROSS_QUEUE_POLICY", "fifo").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8(out.stderr).unwrap().contains("engine.cross_queue_policy"));
}

#[test]
fn the_daemon_starts_on_the_example_logs_what_it_built_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let path = example_on_free_ports("example-run");
    let mut child = acd()
        .args(["run", "--config", path.to_str().unwrap()])
        .env("ACD_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    // Bounded: the daemon prints its summary at once; give up after 200 lines.
    for _ in 0..200 {
        let Some(Ok(line)) = lines.next() else { break };
        let running = line.contains("acd running");
        seen.push(line);
        if running {
            break;
        }
    }
    let log = seen.join("\n");
    assert!(log.contains("9 queues, 15 agents"), "{log}");
    assert!(log.contains("queue complaints") && log.contains("agent hanna"), "{log}");
    assert!(log.contains("acd running"), "{log}");
    assert!(!log.contains('\u{1b}'), "no colour codes in logs that go to a pipe: {log}");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let code = child.wait().unwrap();
    assert!(code.success(), "SIGTERM is a clean stop: {code:?}");
    assert!(rest.iter().any(|l| l.contains("acd stopped")), "{rest:?}");
}

#[test]
fn sighup_and_a_file_change_reload_the_running_daemon_and_a_bad_edit_changes_nothing() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let path = example_on_free_ports("hup");
    let dir = path.parent().unwrap().to_path_buf();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut child = acd()
        .args(["run", "--config", path.to_str().unwrap()])
        .env("ACD_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let seen = std::cell::RefCell::new(Vec::<String>::new());
    let wait_line = |what: &str| -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains(what) => return l,
                Ok(l) => seen.borrow_mut().push(l),
                Err(_) => panic!("no log line with {what:?}; the daemon said:\n{}", seen.borrow().join("\n")),
            }
        }
    };
    wait_line("acd running");
    let kill =
        |sig: &str| assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success());
    kill("-HUP");
    wait_line("config reloaded");
    // An edit with a mistake: the watcher picks it up, nothing changes.
    std::fs::write(&path, text.replacen("strategy = \"skills\"", "strategy = \"fastest\"", 1)).unwrap();
    let refused = wait_line("reload refused");
    assert!(refused.contains("nothing changed") && refused.contains("queue[support-fi].strategy"), "{refused}");
    kill("-TERM");
    wait_line("acd stopped");
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sip_and_operations_mistakes_name_the_key_and_the_reason() {
    invalid(
        "admin.listen",
        "reachable from other machines; set admin.token",
        error_after(|t| t.replace("listen = \"127.0.0.1:8080\"", "listen = \"0.0.0.0:8080\"")),
    );
    invalid(
        "admin.token",
        "at least 16 characters",
        error_after(|t| t.replace("# token = \"a long random string\"", "token = \"short\"")),
    );
    invalid(
        "trunk[local-pbx].sources[0]",
        "not an IP address or network",
        error_after(|t| t.replace("sources = [\"127.0.0.1\", \"::1\"]", "sources = [\"localhost\"]")),
    );
    invalid(
        "number[100].queue",
        "no queue named \"nope\"",
        error_after(|t| t.replacen("queue = \"support-en\"\n", "queue = \"nope\"\n", 1)),
    );
    invalid(
        "sip.digest_algorithms[0]",
        "unknown algorithm \"SHA-1\"",
        error_after(|t| t.replace("digest_algorithms = [\"MD5\", \"SHA-256\"]", "digest_algorithms = [\"SHA-1\"]")),
    );
    invalid(
        "engine.removed_queue_callers",
        "expected \"overflow\" or \"stay\"",
        error_after(|t| t.replace("removed_queue_callers = \"overflow\"", "removed_queue_callers = \"drop\"")),
    );
    // A non-loopback admin API is fine with a token.
    let ok = example_text()
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"0.0.0.0:8080\"")
        .replace("# token = \"a long random string\"", "token = \"0123456789abcdef0123\"");
    from_toml_str("acd.toml", &ok).expect("a token allows any address");
}

#[test]
fn media_mistakes_name_the_key_and_the_reason() {
    let dir = std::env::temp_dir().join(format!("acd-media-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A CD-quality file where 8 kHz mono is required.
    let cd = dir.join("cd.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&cd, spec).unwrap();
    for i in 0..4410 {
        w.write_sample((i % 100) as i16).unwrap();
        w.write_sample((i % 100) as i16).unwrap();
    }
    w.finalize().unwrap();
    let music_line = |t: String, path: &str| {
        let abs = format!("{}/config/sounds/music/default.wav", env!("CARGO_MANIFEST_DIR"));
        t.replace(&abs, path)
    };
    invalid(
        "music.default.file",
        "44100 Hz, 2 channel(s), 16-bit PCM: sound files must be 8000 Hz mono 16-bit PCM WAV",
        error_after(|t| music_line(t, cd.to_str().unwrap())),
    );
    invalid(
        "music.default.file",
        "cannot read",
        error_after(|t| music_line(t, dir.join("missing.wav").to_str().unwrap())),
    );
    invalid(
        "queue[sales].music",
        "no music class \"jazz\"",
        error_after(|t| t.replace("music = \"ringback\"", "music = \"jazz\"")),
    );
    invalid(
        "media.prompts",
        "does not exist",
        error_after(|t| t.replace("/config/sounds/prompts/en\"", "/config/sounds/prompts/xx\"")),
    );
    invalid("media.timeout_secs", "under 5 s", error_after(|t| t.replace("timeout_secs = 30", "timeout_secs = 2")));
    invalid(
        "media.rtp_port_max",
        "leaves no RTP/RTCP pair",
        error_after(|t| t.replace("rtp_port_max = 30000", "rtp_port_max = 20001")),
    );
    invalid(
        "media.rtp_address",
        "wildcard",
        error_after(|t| t.replace("# rtp_address = \"192.0.2.10\"", "rtp_address = \"0.0.0.0\"")),
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Business hours: a wrong zone, day, time or date names its key; a queue
/// naming a schedule that does not exist is refused; check-config prints
/// the queue's hours with its next change in local time.
#[test]
fn business_hours_mistakes_name_the_key_and_check_config_prints_the_next_change() {
    invalid(
        "schedule.office.time_zone",
        "unknown time zone \"Europe/Helsinky\"",
        error_after(|t| t.replace("\"Europe/Helsinki\"", "\"Europe/Helsinky\"")),
    );
    invalid(
        "schedule.office.hours[0]",
        "\"mondays\" is not a day",
        error_after(|t| t.replace("\"mon-fri 08:00-18:00\"", "\"mondays 08:00-18:00\"")),
    );
    invalid(
        "schedule.office.hours[1]",
        "the end must be after the start",
        error_after(|t| t.replace("\"sat 10:00-14:00\"", "\"sat 14:00-10:00\"")),
    );
    invalid(
        "schedule.office.holidays[1]",
        "is not a date YYYY-MM-DD",
        error_after(|t| t.replace("\"2026-12-25\"", "\"2026-12-32\"")),
    );
    invalid(
        "queue[complaints].schedule",
        "no [schedule.offices] (defined: office)",
        error_after(|t| t.replace("schedule = \"office\"", "schedule = \"offices\"")),
    );
    invalid(
        "queue[complaints].when_closed",
        "queue \"nowhere\" does not exist",
        error_after(|t| t.replace("when_closed = \"queue:support-en\"", "when_closed = \"queue:nowhere\"")),
    );
    let out = acd().args(["check-config", EXAMPLE]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().find(|l| l.contains("hours office")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("(Europe/Helsinki)"), "{line}");
    assert!(line.contains("opens ") || line.contains("closes "), "{line}");
    assert!(line.contains("EET") || line.contains("EEST"), "local time: {line}");
    assert!(line.contains("closed -> queue:support-en"), "{line}");
}

const STATE_KEY_COMMENTED: &str = "# callback_state_file = \"/var/lib/acd/callbacks.json\"";

#[test]
fn callback_state_file_needs_a_writable_directory_and_is_relative_to_the_config() {
    assert!(example_text().contains(STATE_KEY_COMMENTED), "the example documents the key");
    let e = error_after(|t| {
        t.replacen(STATE_KEY_COMMENTED, "callback_state_file = \"/nonexistent-acd-dir/callbacks.json\"", 1)
    });
    invalid("engine.callback_state_file", "/nonexistent-acd-dir is not a directory", e);
    let dir = std::env::temp_dir().join(format!("acd-state-key-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let path = dir.join("acd.toml");
    let text = example_text().replacen(STATE_KEY_COMMENTED, "callback_state_file = \"state/callbacks.json\"", 1);
    std::fs::write(&path, text).unwrap();
    let cfg = load(&path).expect("valid");
    assert_eq!(cfg.engine.callback_state_file, Some(dir.join("state/callbacks.json")));
    assert_eq!(std::fs::read_dir(dir.join("state")).unwrap().count(), 0, "the write probe is removed");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_daemon_moves_a_corrupt_callback_state_file_aside_and_still_starts() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let path = example_on_free_ports("corrupt-state");
    let dir = path.parent().unwrap().to_path_buf();
    let state = dir.join("callbacks.json");
    std::fs::write(&state, "{\"version\": 1, \"callbacks\": [ not json").unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen(STATE_KEY_COMMENTED, "callback_state_file = \"callbacks.json\"", 1)).unwrap();
    let mut child = acd()
        .args(["run", "--config", path.to_str().unwrap()])
        .env("ACD_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    for _ in 0..200 {
        let Some(Ok(line)) = lines.next() else { break };
        let running = line.contains("acd running");
        seen.push(line);
        if running {
            break;
        }
    }
    let log = seen.join("\n");
    assert!(log.contains("acd running"), "the daemon starts anyway: {log}");
    assert!(
        log.contains("ERROR") && log.contains(&format!("callback state file {}", state.display())),
        "an error naming the file: {log}"
    );
    assert!(!state.exists(), "moved aside");
    assert!(dir.join("callbacks.json.bad").exists(), "kept as .bad");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let _rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().unwrap().success());
    assert!(!state.exists(), "nothing pending at shutdown: no file written");
    std::fs::remove_dir_all(&dir).ok();
}
