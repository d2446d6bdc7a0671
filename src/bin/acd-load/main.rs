//! `acd-load`: drives acd with real SIP over UDP from both sides, and real
//! RTP, and reports what callers and agents saw.
//!
//! - The trunk side places calls at `--rate` per second (`--calls` in all),
//!   answers acd's 200 with an ACK and hangs up `--duration` seconds later.
//! - `--agents` simulated phones register with digest auth (the passwords
//!   `acd-load gen-config` writes) and answer acd's INVITEs after
//!   `--ring-delay-ms`; a `--busy` share answers 486 and a `--no-answer`
//!   share only rings.
//! - Both sides send a 20 ms G.711 frame per stream and check each frame
//!   received (see `rtp.rs`).
//! - Retransmissions (timers A/E for requests, timer G for our 200s) are the
//!   tool's own, so a lost message costs what it costs a real phone, and every
//!   duplicate received is counted.
//!
//! It prints one line a second and a final report; `--json` writes the report
//! for scripts (`scripts/load-series`). It stops after `--calls` calls end or
//! `--time-limit` seconds, and refuses a non-loopback target without
//! `--allow-remote`.

mod msg;
mod rtp;
mod stats;

use clap::{Args, Parser, Subcommand};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use msg::Msg;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rtp::{Cmd, Live, Side};
use serde_json::json;
use stats::Histogram;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const TIMER_B: Duration = Duration::from_secs(32);
const RTP_SOCKETS: usize = 16;

#[derive(Parser)]
#[command(
    name = "acd-load",
    version,
    about = "SIP + RTP load for acd: a trunk placing calls and agents answering them"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Sub {
    /// Print an acd config that matches the tool's defaults: a trunk on
    /// loopback, number 100 → queue "load", and `--agents` agents with the
    /// passwords the tool uses.
    GenConfig(GenArgs),
}

#[derive(Args)]
struct GenArgs {
    /// Agents to define (a00001 ...).
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// acd's SIP address.
    #[arg(long, default_value = "127.0.0.1:5060")]
    listen: SocketAddr,
    /// Routing strategy of the queue.
    #[arg(long, default_value = "longest-idle")]
    strategy: String,
    /// `sip.max_calls`.
    #[arg(long, default_value_t = 20_000)]
    max_calls: u32,
    /// `media.rtcp` (off: one socket per leg, for the 20,000 open-file limit).
    #[arg(long, default_value_t = false)]
    rtcp: bool,
    /// Music file (8 kHz mono WAV); the built-in ringback tone when absent.
    #[arg(long)]
    music: Option<std::path::PathBuf>,
    /// Prometheus exposition address ("" = off).
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics: String,
    /// Size the RTP range for this many calls per second (with
    /// `--call-secs`); without it the range is the widest, 20000-60000.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds a call is up (wait + talk), for `--rate`.
    #[arg(long, default_value_t = 5.0)]
    call_secs: f64,
}

/// The RTP range for `rate` calls/s of `call_secs` s, both legs bridged:
/// calls up at once = rate x (call_secs + 1 s of set-up and tear-down), two
/// legs each, a quarter spare; never under 1,000 pairs, never past 65535.
/// Returns (min, max, pairs).
fn rtp_range_for(rate: f64, call_secs: f64) -> (u16, u16, u32) {
    const MIN: u32 = 20_000;
    let pairs = (rate * (call_secs + 1.0) * 2.0 * 1.25).ceil().max(1000.0) as u32;
    let pairs = pairs.min((65_534 - MIN) / 2);
    (MIN as u16, (MIN + 2 * pairs) as u16, pairs)
}

#[derive(Args, Clone)]
struct RunArgs {
    /// acd's SIP address (UDP).
    #[arg(long, default_value = "127.0.0.1:5060")]
    target: SocketAddr,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    allow_remote: bool,
    /// Dialled number (the Request-URI user).
    #[arg(long, default_value = "100")]
    number: String,
    /// New calls per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Calls to place in all.
    #[arg(long, default_value_t = 100)]
    calls: u64,
    /// Seconds from acd's 200 OK until the trunk hangs up.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Stop after this many seconds whatever is left (calls up are hung up).
    #[arg(long, default_value_t = 300.0)]
    time_limit: f64,
    /// Agents to register (a00001 ... with password "<user>-pw").
    #[arg(long, default_value_t = 10)]
    agents: usize,
    /// Agent user prefix.
    #[arg(long, default_value = "a")]
    agent_prefix: String,
    /// REGISTERs per second while signing agents in.
    #[arg(long, default_value_t = 1000.0)]
    register_rate: f64,
    /// Agents answer this long after the INVITE.
    #[arg(long, default_value_t = 0)]
    ring_delay_ms: u64,
    /// Share of offers the agent answers 486 Busy Here.
    #[arg(long, default_value_t = 0.0)]
    busy: f64,
    /// Share of offers the agent lets ring (acd's ring timeout cancels them).
    #[arg(long, default_value_t = 0.0)]
    no_answer: f64,
    /// X-Priority header on every call.
    #[arg(long)]
    priority: Option<i32>,
    /// X-Skills header on every call, e.g. "lang.fi:3, billing".
    #[arg(long)]
    skills: Option<String>,
    /// Share of calls that carry RTP (both sides send and check it).
    #[arg(long, default_value_t = 1.0)]
    rtp_share: f64,
    /// Callers send RTP while they wait in the queue, not only once bridged.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    rtp_while_waiting: bool,
    /// A stream whose frames arrive slower than this many a second (50 is
    /// full rate at 20 ms ptime) is slow, and a slow stream fails the run;
    /// 0 turns the check off.
    #[arg(long, default_value_t = 47.5)]
    min_frame_rate: f64,
    /// Write the final report as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Report this process's CPU and memory (acd's pid) each second.
    #[arg(long)]
    acd_pid: Option<u32>,
    /// No per-second lines.
    #[arg(long)]
    quiet: bool,
    /// Seed for the busy / no-answer draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Sub::GenConfig(g)) => print!("{}", gen_config(&g)),
        None => {
            let a = cli.run;
            if let Err(e) = check_args(&a) {
                eprintln!("acd-load: {e}");
                std::process::exit(2);
            }
            match Load::new(a).and_then(|l| l.run()) {
                Ok(ok) => std::process::exit(if ok { 0 } else { 1 }),
                Err(e) => {
                    eprintln!("acd-load: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
}

fn check_args(a: &RunArgs) -> Result<(), String> {
    if !a.target.ip().is_loopback() && !a.allow_remote {
        return Err(format!(
            "target {} is not a loopback address; load on a real network needs --allow-remote",
            a.target
        ));
    }
    if !(a.rate > 0.0 && a.rate.is_finite()) {
        return Err("--rate must be above 0".into());
    }
    for (name, v) in [("--busy", a.busy), ("--no-answer", a.no_answer), ("--rtp-share", a.rtp_share)] {
        if !(0.0..=1.0).contains(&v) {
            return Err(format!("{name} is a share between 0 and 1, not {v}"));
        }
    }
    if a.busy + a.no_answer > 1.0 {
        return Err("--busy + --no-answer cannot pass 1".into());
    }
    if !(a.min_frame_rate >= 0.0 && a.min_frame_rate <= rtp::FRAME_RATE) {
        return Err(format!("--min-frame-rate is frames a second between 0 and 50, not {}", a.min_frame_rate));
    }
    if a.time_limit <= 0.0 || a.duration < 0.0 {
        return Err("--time-limit must be above 0 and --duration not below 0".into());
    }
    Ok(())
}

fn agent_user(prefix: &str, i: usize) -> String {
    format!("{prefix}{:05}", i + 1)
}

fn gen_config(g: &GenArgs) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# acd config for acd-load: `acd-load gen-config --agents {}`.", g.agents);
    let _ = writeln!(s, "[defaults]\nstrategy = \"{}\"\nring_timeout_secs = 5\nwrap_up_secs = 0", g.strategy);
    let _ = writeln!(s, "max_waiting = 100000\nannounce_every_secs = 0\nwhen_no_agents = \"join\"\n");
    let _ = writeln!(s, "[engine]\nauto_pause_after_misses = 0\n");
    let _ =
        writeln!(s, "[engine.backoff_secs]\nno_answer = 1\nbusy = 1\nunavailable = 1\ndeclined = 1\nunreachable = 5\n");
    let _ = writeln!(s, "[sip]\nlisten_udp = [\"{}\"]\nlisten_tcp = []", g.listen);
    let _ = writeln!(s, "max_calls = {}\noptions_interval_secs = 0\n", g.max_calls);
    let _ = writeln!(s, "[[trunk]]\nname = \"load\"\nsources = [\"127.0.0.1\", \"::1\"]\ntrust_headers = true\n");
    let _ = writeln!(s, "[[number]]\nnumber = \"100\"\nqueue = \"load\"\n");
    let (lo, hi) = match g.rate {
        Some(rate) => {
            let (lo, hi, pairs) = rtp_range_for(rate, g.call_secs);
            let fds = pairs * if g.rtcp { 2 } else { 1 };
            let _ = writeln!(
                s,
                "# RTP sized for {rate} calls/s of {} s: {pairs} port pairs; the open-file limit must allow {fds} sockets.",
                g.call_secs
            );
            (lo, hi)
        }
        None => (20_000, 60_000),
    };
    let _ = writeln!(s, "[media]\nrtp_port_min = {lo}\nrtp_port_max = {hi}\nrtcp = {}\ntimeout_secs = 30\n", g.rtcp);
    if let Some(m) = &g.music {
        let _ = writeln!(s, "[music.default]\nfile = {:?}\n", m.display().to_string());
    }
    let _ = writeln!(s, "[metrics]\nlisten = \"{}\"\n\n[admin]\nlisten = \"\"\n", g.metrics);
    let _ = writeln!(s, "[[queue]]\nname = \"load\"\nmembers = [");
    for i in 0..g.agents {
        let _ = writeln!(s, "  {{ agent = \"{}\" }},", agent_user("a", i));
    }
    let _ = writeln!(s, "]\n");
    for i in 0..g.agents {
        let u = agent_user("a", i);
        let _ = writeln!(s, "[[agent]]\nid = \"{u}\"\npassword = \"{u}-pw\"\n");
    }
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    InviteRetx(usize, u32),
    InviteTimeout(usize),
    Hangup(usize),
    ByeRetx(usize, u32),
    ByeTimeout(usize),
    RegisterRetx(usize, u32, u32),
    AgentAnswer(u64),
    OkRetx(u64, u32),
    OfferForget(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    Idle,
    Inviting,
    Early,
    Up,
    Byeing,
    Done,
}

struct Call {
    state: CallState,
    started: Instant,
    answered: Option<Instant>,
    agent_answered: Option<Instant>,
    invite: Vec<u8>,
    ack: Vec<u8>,
    bye: Vec<u8>,
    to_tag: String,
    remote_target: String,
    rtp: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OfferState {
    Ringing,
    Answered,
    Confirmed,
    Rejected,
    Ended,
}

struct Offer {
    key: u64,
    call: Option<usize>,
    state: OfferState,
    branch: String,
    last: Vec<u8>,
    src: SocketAddr,
    /// The request's Via / From / To / Call-ID / CSeq lines, for responses.
    vias: Vec<String>,
    from: String,
    to: String,
    call_id: String,
    cseq: u32,
    tag: String,
    bye_ok: Vec<u8>,
    stream: Option<u32>,
    /// acd's RTP address for this leg, from the INVITE's SDP.
    remote: Option<SocketAddr>,
}

#[derive(Default)]
struct Reg {
    cseq: u32,
    done: bool,
    last: Vec<u8>,
}

#[derive(Default)]
struct Counts {
    attempted: u64,
    answered: u64,
    agent_answered: u64,
    completed: u64,
    failed: BTreeMap<String, u64>,
    hung_up_by_acd: u64,
    retx_seen: u64,
    retx_sent: u64,
    offers: u64,
    offers_busy: u64,
    offers_no_answer: u64,
    offers_cancelled: u64,
    registered: u64,
    register_failed: BTreeMap<String, u64>,
    unparsed: u64,
    unfinished: u64,
}

struct Load {
    a: RunArgs,
    poll: Poll,
    trunk: UdpSocket,
    agent: UdpSocket,
    trunk_addr: SocketAddr,
    agent_addr: SocketAddr,
    run_id: u32,
    calls: Vec<Call>,
    offers: HashMap<String, Offer>,
    offer_keys: HashMap<u64, String>,
    next_offer: u64,
    regs: Vec<Reg>,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    tseq: u64,
    rtp_tx: Option<mpsc::Sender<Cmd>>,
    rtp_ports: Vec<u16>,
    rtp_ip: IpAddr,
    live: Arc<Live>,
    rtp_thread: Option<std::thread::JoinHandle<rtp::Totals>>,
    c: Counts,
    setup: Histogram,
    queue: Histogram,
    rng: ChaCha8Rng,
    start: Instant,
    series: Vec<serde_json::Value>,
    proc_prev: Option<(Instant, u64, u64)>,
    acd_cpu_total: (f64, f64),
    acd_rss_max: u64,
    self_cpu_start: u64,
}

fn udp(bind: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let domain = if bind.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Bursts of a thousand calls a second overflow the default 212 KB.
    let _ = s.set_recv_buffer_size(8 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&bind.into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

impl Load {
    fn new(a: RunArgs) -> Result<Load, String> {
        let ip: IpAddr = if a.target.is_ipv4() { "127.0.0.1".parse().unwrap() } else { "::1".parse().unwrap() };
        let ip = if a.target.ip().is_loopback() { ip } else { local_ip_towards(a.target)? };
        let poll = Poll::new().map_err(|e| e.to_string())?;
        let mut trunk = UdpSocket::from_std(udp(SocketAddr::new(ip, 0)).map_err(|e| format!("bind: {e}"))?);
        let mut agent = UdpSocket::from_std(udp(SocketAddr::new(ip, 0)).map_err(|e| format!("bind: {e}"))?);
        poll.registry().register(&mut trunk, Token(0), Interest::READABLE).map_err(|e| e.to_string())?;
        poll.registry().register(&mut agent, Token(1), Interest::READABLE).map_err(|e| e.to_string())?;
        let trunk_addr = trunk.local_addr().map_err(|e| e.to_string())?;
        let agent_addr = agent.local_addr().map_err(|e| e.to_string())?;
        let mut socks = Vec::new();
        let mut rtp_ports = Vec::new();
        for _ in 0..RTP_SOCKETS {
            let s = udp(SocketAddr::new(ip, 0)).map_err(|e| format!("bind RTP: {e}"))?;
            rtp_ports.push(s.local_addr().map_err(|e| e.to_string())?.port());
            socks.push(s);
        }
        let live = Arc::new(Live::default());
        let media = rtp::Media::new(socks, live.clone(), a.min_frame_rate).map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel();
        let rtp_thread =
            std::thread::Builder::new().name("rtp".into()).spawn(move || media.run(rx)).map_err(|e| e.to_string())?;
        let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
        let run_id = rand::random::<u32>();
        let calls = Vec::with_capacity(a.calls.min(1_000_000) as usize);
        let regs = (0..a.agents).map(|_| Reg::default()).collect();
        let _ = rng.random::<u32>();
        Ok(Load {
            poll,
            trunk,
            agent,
            trunk_addr,
            agent_addr,
            run_id,
            calls,
            offers: HashMap::new(),
            offer_keys: HashMap::new(),
            next_offer: 1,
            regs,
            timers: BinaryHeap::new(),
            tseq: 0,
            rtp_tx: Some(tx),
            rtp_ports,
            rtp_ip: ip,
            live,
            rtp_thread: Some(rtp_thread),
            c: Counts::default(),
            setup: Histogram::default(),
            queue: Histogram::default(),
            rng,
            start: Instant::now(),
            series: Vec::new(),
            proc_prev: None,
            acd_cpu_total: (0.0, 0.0),
            acd_rss_max: 0,
            self_cpu_start: proc_cpu_ticks(std::process::id()).unwrap_or(0),
            a,
        })
    }

    fn at(&mut self, when: Instant, t: Timer) {
        self.tseq += 1;
        self.timers.push(Reverse((when, self.tseq, t)));
    }

    fn send_trunk(&mut self, bytes: &[u8]) {
        let _ = self.trunk.send_to(bytes, self.a.target);
    }

    fn send_agent(&mut self, bytes: &[u8], to: SocketAddr) {
        let _ = self.agent.send_to(bytes, to);
    }

    fn rtp(&self, c: Cmd) {
        if let Some(tx) = &self.rtp_tx {
            let _ = tx.send(c);
        }
    }

    fn rtp_addr(&self, stream: u32) -> SocketAddr {
        SocketAddr::new(self.rtp_ip, self.rtp_ports[stream as usize % RTP_SOCKETS])
    }

    /// Returns whether the run was clean (every call answered by acd, none
    /// failed, no RTP lost, crossed or slow).
    fn run(mut self) -> Result<bool, String> {
        let limit = self.start + Duration::from_secs_f64(self.a.time_limit);
        let mut events = Events::with_capacity(512);
        let mut buf = vec![0u8; 65536];
        // Phase 1: sign the agents in.
        let mut next_reg = 0usize;
        let reg_start = Instant::now();
        let mut last_tick = Instant::now();
        while self.regs.iter().any(|r| !r.done) {
            let now = Instant::now();
            if now >= limit {
                break;
            }
            let due = ((now - reg_start).as_secs_f64() * self.a.register_rate) as usize + 1;
            while next_reg < self.regs.len() && next_reg < due {
                self.register(next_reg, None);
                next_reg += 1;
            }
            self.turn(&mut events, &mut buf, Duration::from_millis(5))?;
            if now - last_tick >= Duration::from_secs(1) {
                last_tick = now;
                if !self.a.quiet {
                    println!(
                        "[{:>5.1}s] registering: {} of {} agents signed in",
                        self.start.elapsed().as_secs_f64(),
                        self.c.registered,
                        self.regs.len()
                    );
                }
            }
        }
        if !self.a.quiet && !self.regs.is_empty() {
            println!(
                "[{:>5.1}s] {} of {} agents signed in{}",
                self.start.elapsed().as_secs_f64(),
                self.c.registered,
                self.regs.len(),
                if self.c.register_failed.is_empty() {
                    String::new()
                } else {
                    format!(", refused: {:?}", self.c.register_failed)
                }
            );
        }
        // Phase 2: calls.
        let calls_start = Instant::now();
        let mut next_call: u64 = 0;
        let mut tick = calls_start + Duration::from_secs(1);
        let mut stopping = false;
        let mut drain_from: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if !stopping && now >= limit {
                stopping = true;
                self.hang_up_all();
            }
            if !stopping {
                let due = ((now - calls_start).as_secs_f64() * self.a.rate).floor() as u64 + 1;
                let mut n = 0;
                while next_call < self.a.calls && next_call < due && n < 200 {
                    self.place_call(now);
                    next_call += 1;
                    n += 1;
                }
            }
            if now >= tick {
                self.second(now - calls_start);
                tick += Duration::from_secs(1);
            }
            let all_placed = next_call >= self.a.calls;
            let active = self
                .calls
                .iter()
                .any(|c| matches!(c.state, CallState::Inviting | CallState::Early | CallState::Up | CallState::Byeing));
            // Calls are over once the trunk side is; the agents stay a
            // little longer for acd's BYEs of their legs (a phone that is
            // gone would leave acd retransmitting into the void).
            if (all_placed || stopping) && !active {
                let drain_until = *drain_from.get_or_insert(now) + Duration::from_secs(3);
                let agents_up =
                    self.offers.values().any(|o| matches!(o.state, OfferState::Answered | OfferState::Confirmed));
                if !agents_up || now >= drain_until {
                    break;
                }
            }
            if stopping && now >= limit + Duration::from_secs(3) {
                break;
            }
            let wait = if all_placed || stopping {
                Duration::from_millis(5)
            } else {
                let next_call_at = calls_start + Duration::from_secs_f64((next_call as f64) / self.a.rate);
                next_call_at.saturating_duration_since(now).min(Duration::from_millis(5))
            };
            self.turn(&mut events, &mut buf, wait)?;
        }
        let elapsed = calls_start.elapsed();
        for c in &self.calls {
            if c.state != CallState::Done && c.state != CallState::Idle {
                self.c.unfinished += 1;
            }
        }
        // Media: stop every stream, then collect.
        let ids: Vec<u32> = self.offers.values().filter_map(|o| o.stream).collect();
        for id in ids {
            self.rtp(Cmd::Stop { id });
        }
        for n in 0..self.calls.len() {
            self.rtp(Cmd::Stop { id: caller_stream(n) });
        }
        self.rtp_tx = None;
        let media = self.rtp_thread.take().map(|t| t.join().unwrap_or_default()).unwrap_or_default();
        Ok(self.report(elapsed, &media))
    }

    /// One pass of the event loop: timers due, then datagrams, waiting at
    /// most `wait`.
    fn turn(&mut self, events: &mut Events, buf: &mut [u8], wait: Duration) -> Result<(), String> {
        let now = Instant::now();
        while let Some(Reverse((when, _, _))) = self.timers.peek() {
            if *when > now {
                break;
            }
            let Reverse((_, _, t)) = self.timers.pop().unwrap();
            self.fire(t, now);
        }
        let wait = match self.timers.peek() {
            Some(Reverse((when, _, _))) => wait.min(when.saturating_duration_since(now)),
            None => wait,
        };
        match self.poll.poll(events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
        let (mut t, mut ag) = (false, false);
        for ev in events.iter() {
            match ev.token().0 {
                0 => t = true,
                _ => ag = true,
            }
        }
        if t {
            loop {
                match self.trunk.recv_from(buf) {
                    Ok((len, _)) => {
                        let data = buf[..len].to_vec();
                        self.on_trunk(&data);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
        }
        if ag {
            loop {
                match self.agent.recv_from(buf) {
                    Ok((len, from)) => {
                        let data = buf[..len].to_vec();
                        self.on_agent(&data, from);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ trunk side

    fn call_id(&self, n: usize) -> String {
        format!("c{n}-{:08x}@acd-load", self.run_id)
    }

    fn call_index(&self, call_id: &str) -> Option<usize> {
        let rest = call_id.strip_prefix('c')?;
        let (n, run) = rest.split_once('-')?;
        if run.get(..8)? != format!("{:08x}", self.run_id) {
            return None;
        }
        n.parse().ok()
    }

    fn place_call(&mut self, now: Instant) {
        let n = self.calls.len();
        let share = self.a.rtp_share;
        let rtp = ((n as f64 + 1.0) * share).floor() > (n as f64 * share).floor();
        let t = self.a.target;
        let me = self.trunk_addr;
        let sdp = msg::sdp(self.rtp_addr(caller_stream(n)), n as u64);
        let mut extra = String::new();
        if let Some(p) = self.a.priority {
            let _ = write!(extra, "X-Priority: {p}\r\n");
        }
        if let Some(s) = &self.a.skills {
            let _ = write!(extra, "X-Skills: {s}\r\n");
        }
        let invite = format!(
            "INVITE sip:{num}@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-i{n}-{run:x};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:L{n}@{me}>;tag=f{n}\r\nTo: <sip:{num}@{t}>\r\nCall-ID: {cid}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:L{n}@{me}>\r\n{extra}User-Agent: acd-load\r\n\
             Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            num = self.a.number,
            run = self.run_id,
            cid = self.call_id(n),
            len = sdp.len(),
        );
        self.calls.push(Call {
            state: CallState::Inviting,
            started: now,
            answered: None,
            agent_answered: None,
            invite: invite.into_bytes(),
            ack: Vec::new(),
            bye: Vec::new(),
            to_tag: String::new(),
            remote_target: String::new(),
            rtp,
        });
        self.c.attempted += 1;
        let bytes = std::mem::take(&mut self.calls[n].invite);
        self.send_trunk(&bytes);
        self.calls[n].invite = bytes;
        self.at(now + T1, Timer::InviteRetx(n, 1));
        self.at(now + TIMER_B, Timer::InviteTimeout(n));
    }

    fn fail(&mut self, n: usize, why: String) {
        self.calls[n].state = CallState::Done;
        self.calls[n].invite = Vec::new();
        *self.c.failed.entry(why).or_default() += 1;
    }

    fn on_trunk(&mut self, data: &[u8]) {
        let Some(m) = Msg::parse(data) else {
            self.c.unparsed += 1;
            return;
        };
        let Some(n) = self.call_index(m.call_id) else { return };
        if n >= self.calls.len() {
            return;
        }
        let now = Instant::now();
        if let Some(code) = m.status {
            if m.cseq_method == "INVITE" {
                self.invite_response(n, code, &m, now);
            } else if m.cseq_method == "BYE" && code >= 200 {
                if self.calls[n].state == CallState::Byeing {
                    self.calls[n].state = CallState::Done;
                    if code < 300 {
                        self.c.completed += 1;
                    } else {
                        *self.c.failed.entry(format!("BYE {code}")).or_default() += 1;
                    }
                } else {
                    self.c.retx_seen += 1;
                }
            }
            return;
        }
        // A request from acd in the caller's dialog.
        match m.method {
            "BYE" => {
                let ok = response(&m, 200, "OK", None, "");
                self.send_trunk(ok.as_bytes());
                match self.calls[n].state {
                    CallState::Up | CallState::Byeing => {
                        self.c.hung_up_by_acd += 1;
                        self.calls[n].state = CallState::Done;
                        self.rtp(Cmd::Stop { id: caller_stream(n) });
                    }
                    CallState::Done => self.c.retx_seen += 1,
                    _ => {}
                }
            }
            "ACK" => {}
            _ => {
                let ok = response(&m, 200, "OK", None, "");
                self.send_trunk(ok.as_bytes());
            }
        }
    }

    fn invite_response(&mut self, n: usize, code: u16, m: &Msg, now: Instant) {
        let state = self.calls[n].state;
        if code < 200 {
            if state == CallState::Inviting {
                self.calls[n].state = CallState::Early;
            }
            return;
        }
        let fresh = matches!(state, CallState::Inviting | CallState::Early);
        if !fresh {
            // A retransmitted final response: our ACK was lost or late.
            self.c.retx_seen += 1;
            let ack = self.calls[n].ack.clone();
            if !ack.is_empty() {
                self.send_trunk(&ack);
            }
            return;
        }
        let to_tag = m.to_tag().unwrap_or("").to_string();
        let me = self.trunk_addr;
        let t = self.a.target;
        let cid = self.call_id(n);
        if code >= 300 {
            // ACK for a failure: same branch as the INVITE (RFC 3261 17.1.1.3).
            let ack = format!(
                "ACK sip:{num}@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-i{n}-{run:x};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:L{n}@{me}>;tag=f{n}\r\nTo: {to}\r\nCall-ID: {cid}\r\n\
                 CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                num = self.a.number,
                run = self.run_id,
                to = m.to,
            );
            self.send_trunk(ack.as_bytes());
            self.calls[n].ack = ack.into_bytes();
            self.fail(n, code.to_string());
            return;
        }
        self.setup.record(now - self.calls[n].started);
        self.c.answered += 1;
        let target =
            if m.contact_uri().is_empty() { format!("sip:{}@{t}", self.a.number) } else { m.contact_uri().into() };
        let ack = format!(
            "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-a{n}-{run:x};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:L{n}@{me}>;tag=f{n}\r\nTo: {to}\r\nCall-ID: {cid}\r\n\
             CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            run = self.run_id,
            to = m.to,
        );
        self.send_trunk(ack.as_bytes());
        let call = &mut self.calls[n];
        call.ack = ack.into_bytes();
        call.invite = Vec::new();
        call.state = CallState::Up;
        call.answered = Some(now);
        call.to_tag = to_tag;
        call.remote_target = target;
        let rtp = call.rtp;
        if rtp {
            if let Some(remote) = m.sdp_rtp() {
                let send = self.a.rtp_while_waiting || self.calls[n].agent_answered.is_some();
                self.rtp(Cmd::Start { id: caller_stream(n), tag: n as u32, side: Side::Caller, remote, send });
            }
        }
        self.at(now + Duration::from_secs_f64(self.a.duration), Timer::Hangup(n));
    }

    fn hang_up(&mut self, n: usize, now: Instant) {
        let me = self.trunk_addr;
        let call = &self.calls[n];
        let bye = format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-b{n}-{run:x};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:L{n}@{me}>;tag=f{n}\r\nTo: <sip:{num}@{t}>;tag={tag}\r\n\
             Call-ID: {cid}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            target = call.remote_target,
            run = self.run_id,
            num = self.a.number,
            t = self.a.target,
            tag = call.to_tag,
            cid = self.call_id(n),
        );
        self.rtp(Cmd::Stop { id: caller_stream(n) });
        self.send_trunk(bye.as_bytes());
        self.calls[n].bye = bye.into_bytes();
        self.calls[n].state = CallState::Byeing;
        self.at(now + T1, Timer::ByeRetx(n, 1));
        self.at(now + TIMER_B, Timer::ByeTimeout(n));
    }

    fn hang_up_all(&mut self) {
        let now = Instant::now();
        for n in 0..self.calls.len() {
            if self.calls[n].state == CallState::Up {
                self.hang_up(n, now);
            }
        }
    }

    // ------------------------------------------------------------ agent side

    fn register(&mut self, i: usize, challenge: Option<&str>) {
        let user = agent_user(&self.a.agent_prefix, i);
        let t = self.a.target;
        let me = self.agent_addr;
        let reg = &mut self.regs[i];
        reg.cseq += 1;
        let cseq = reg.cseq;
        let uri = format!("sip:{t}");
        let mut auth = String::new();
        if let Some(ch) = challenge {
            let realm = msg::auth_param(ch, "realm").unwrap_or("").to_string();
            let nonce = msg::auth_param(ch, "nonce").unwrap_or("").to_string();
            let alg = msg::auth_param(ch, "algorithm").unwrap_or("MD5");
            let algorithm = if alg.eq_ignore_ascii_case("SHA-256") {
                acd::sip::digest::Algorithm::Sha256
            } else {
                acd::sip::digest::Algorithm::Md5
            };
            let qop = msg::auth_param(ch, "qop").map(|_| "auth".to_string());
            let opaque = msg::auth_param(ch, "opaque").map(str::to_string);
            let cnonce = format!("{:08x}", self.rng.random::<u32>());
            let d = acd::sip::digest::DigestResponse {
                username: user.clone(),
                realm: realm.clone(),
                nonce: nonce.clone(),
                uri: uri.clone(),
                response: String::new(),
                algorithm,
                cnonce: qop.as_ref().map(|_| cnonce.clone()),
                nc: qop.as_ref().map(|_| 1),
                qop: qop.clone(),
                opaque: opaque.clone(),
            };
            let resp = acd::sip::digest::expected_response(&d, "REGISTER", &format!("{user}-pw"));
            let _ = write!(
                auth,
                "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
                 response=\"{resp}\", algorithm={}",
                algorithm.as_str()
            );
            if qop.is_some() {
                let _ = write!(auth, ", qop=auth, nc=00000001, cnonce=\"{cnonce}\"");
            }
            if let Some(o) = opaque {
                let _ = write!(auth, ", opaque=\"{o}\"");
            }
            auth.push_str("\r\n");
        }
        let text = format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-r{i}-{cseq}-{run:x};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{t}>;tag=r{i}\r\nTo: <sip:{user}@{t}>\r\n\
             Call-ID: r{i}-{run:08x}@acd-load\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{me}>\r\n\
             Expires: 3600\r\n{auth}User-Agent: acd-load\r\nContent-Length: 0\r\n\r\n",
            run = self.run_id,
        );
        let bytes = text.into_bytes();
        self.send_agent(&bytes, t);
        self.regs[i].last = bytes;
        self.at(Instant::now() + T1, Timer::RegisterRetx(i, cseq, 1));
    }

    fn on_register_response(&mut self, m: &Msg, code: u16) {
        let Some(i) =
            m.call_id.strip_prefix('r').and_then(|r| r.split('-').next()).and_then(|n| n.parse::<usize>().ok())
        else {
            return;
        };
        if i >= self.regs.len() || self.regs[i].done || m.cseq_num != self.regs[i].cseq || code < 200 {
            if i < self.regs.len() && m.cseq_num < self.regs[i].cseq {
                self.c.retx_seen += 1;
            }
            return;
        }
        match code {
            200..=299 => {
                self.regs[i].done = true;
                self.c.registered += 1;
            }
            401 | 407 if self.regs[i].cseq < 4 => {
                let ch = m.www_auth.to_string();
                self.register(i, Some(&ch));
            }
            _ => {
                self.regs[i].done = true;
                *self.c.register_failed.entry(code.to_string()).or_default() += 1;
            }
        }
    }

    fn on_agent(&mut self, data: &[u8], from: SocketAddr) {
        let Some(m) = Msg::parse(data) else {
            self.c.unparsed += 1;
            return;
        };
        if let Some(code) = m.status {
            if m.cseq_method == "REGISTER" {
                self.on_register_response(&m, code);
            }
            return;
        }
        let now = Instant::now();
        match m.method {
            "INVITE" => self.on_offer(&m, from, now),
            "ACK" => {
                if let Some(o) = self.offers.get_mut(m.call_id) {
                    match o.state {
                        OfferState::Answered => o.state = OfferState::Confirmed,
                        OfferState::Rejected => {
                            o.state = OfferState::Ended;
                            let key = o.key;
                            self.at(now + TIMER_B, Timer::OfferForget(key));
                        }
                        _ => {}
                    }
                }
            }
            "CANCEL" => {
                let ok = response(&m, 200, "OK", None, "");
                self.send_agent(ok.as_bytes(), from);
                let Some(o) = self.offers.get_mut(m.call_id) else { return };
                if o.state == OfferState::Ringing {
                    o.state = OfferState::Rejected;
                    let r = offer_response(o, 487, "Request Terminated", None, "");
                    o.last = r.into_bytes();
                    let bytes = o.last.clone();
                    self.c.offers_cancelled += 1;
                    self.send_agent(&bytes, from);
                }
            }
            "BYE" => {
                let ok = response(&m, 200, "OK", None, "");
                self.send_agent(ok.as_bytes(), from);
                let Some(o) = self.offers.get_mut(m.call_id) else { return };
                if o.state == OfferState::Ended && !o.bye_ok.is_empty() {
                    self.c.retx_seen += 1;
                    return;
                }
                o.bye_ok = ok.into_bytes();
                o.state = OfferState::Ended;
                let (key, stream) = (o.key, o.stream);
                if let Some(id) = stream {
                    self.rtp(Cmd::Stop { id });
                }
                self.at(now + TIMER_B, Timer::OfferForget(key));
            }
            _ => {
                let ok = response(&m, 200, "OK", None, "");
                self.send_agent(ok.as_bytes(), from);
            }
        }
    }

    fn on_offer(&mut self, m: &Msg, from: SocketAddr, now: Instant) {
        if let Some(o) = self.offers.get(m.call_id) {
            if o.branch == m.branch() {
                // Retransmitted INVITE: repeat our last answer.
                self.c.retx_seen += 1;
                let bytes = o.last.clone();
                let src = o.src;
                self.send_agent(&bytes, src);
            } else {
                // A re-INVITE: accept with the same SDP.
                let r = response(m, 200, "OK", None, "");
                self.send_agent(r.as_bytes(), from);
            }
            return;
        }
        self.c.offers += 1;
        let key = self.next_offer;
        self.next_offer += 1;
        let call =
            m.caller_user().strip_prefix('L').and_then(|n| n.parse::<usize>().ok()).filter(|n| *n < self.calls.len());
        let mut o = Offer {
            key,
            call,
            state: OfferState::Ringing,
            branch: m.branch().to_string(),
            last: Vec::new(),
            src: from,
            vias: m.vias.iter().map(|s| s.to_string()).collect(),
            from: m.from.to_string(),
            to: m.to.to_string(),
            call_id: m.call_id.to_string(),
            cseq: m.cseq_num,
            tag: format!("g{key}"),
            bye_ok: Vec::new(),
            stream: None,
            remote: m.sdp_rtp(),
        };
        let draw: f64 = self.rng.random();
        if draw < self.a.busy {
            self.c.offers_busy += 1;
            o.state = OfferState::Rejected;
            o.last = offer_response(&o, 486, "Busy Here", None, "").into_bytes();
        } else {
            o.last = offer_response(&o, 180, "Ringing", None, "").into_bytes();
            if draw < self.a.busy + self.a.no_answer {
                self.c.offers_no_answer += 1;
            } else {
                self.at(now + Duration::from_millis(self.a.ring_delay_ms), Timer::AgentAnswer(key));
            }
        }
        let bytes = o.last.clone();
        self.send_agent(&bytes, from);
        self.offer_keys.insert(key, o.call_id.clone());
        self.offers.insert(o.call_id.clone(), o);
    }
}

fn caller_stream(n: usize) -> u32 {
    (n as u32).wrapping_mul(2)
}

fn agent_stream(n: usize) -> u32 {
    (n as u32).wrapping_mul(2) + 1
}

/// A response to request `m`, echoing its Vias, From, To (plus `to_tag` when
/// the To has none), Call-ID and CSeq.
fn response(m: &Msg, code: u16, reason: &str, to_tag: Option<&str>, body: &str) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for v in &m.vias {
        let _ = write!(s, "Via: {v}\r\n");
    }
    let to = match (to_tag, m.to_tag()) {
        (Some(t), None) => format!("{};tag={t}", m.to),
        _ => m.to.to_string(),
    };
    let _ = write!(
        s,
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {} {}\r\n",
        m.from, m.call_id, m.cseq_num, m.cseq_method
    );
    finish(s, body)
}

fn offer_response(o: &Offer, code: u16, reason: &str, contact: Option<SocketAddr>, body: &str) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for v in &o.vias {
        let _ = write!(s, "Via: {v}\r\n");
    }
    let _ = write!(
        s,
        "From: {}\r\nTo: {};tag={}\r\nCall-ID: {}\r\nCSeq: {} INVITE\r\n",
        o.from, o.to, o.tag, o.call_id, o.cseq
    );
    if let Some(c) = contact {
        let _ = write!(s, "Contact: <sip:agent@{c}>\r\n");
    }
    finish(s, body)
}

fn finish(mut s: String, body: &str) -> String {
    if body.is_empty() {
        s.push_str("Content-Length: 0\r\n\r\n");
    } else {
        let _ = write!(s, "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    }
    s
}

fn local_ip_towards(target: SocketAddr) -> Result<IpAddr, String> {
    let bind: SocketAddr = if target.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
    let s = std::net::UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    s.connect(target).map_err(|e| format!("no route to {target}: {e}"))?;
    Ok(s.local_addr().map_err(|e| e.to_string())?.ip())
}

/// utime + stime of a process, in clock ticks (USER_HZ, 100 on Linux).
fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Resident set size in bytes.
fn proc_rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl Load {
    fn fire(&mut self, t: Timer, now: Instant) {
        match t {
            Timer::InviteRetx(n, k) => {
                if self.calls[n].state == CallState::Inviting {
                    let bytes = std::mem::take(&mut self.calls[n].invite);
                    self.send_trunk(&bytes);
                    self.calls[n].invite = bytes;
                    self.c.retx_sent += 1;
                    self.at(now + T1 * 2u32.pow(k.min(6)), Timer::InviteRetx(n, k + 1));
                }
            }
            Timer::InviteTimeout(n) => {
                if matches!(self.calls[n].state, CallState::Inviting | CallState::Early) {
                    self.fail(n, "timeout".into());
                }
            }
            Timer::Hangup(n) => {
                if self.calls[n].state == CallState::Up {
                    self.hang_up(n, now);
                }
            }
            Timer::ByeRetx(n, k) => {
                if self.calls[n].state == CallState::Byeing {
                    let bytes = self.calls[n].bye.clone();
                    self.send_trunk(&bytes);
                    self.c.retx_sent += 1;
                    self.at(now + (T1 * 2u32.pow(k.min(6))).min(T2), Timer::ByeRetx(n, k + 1));
                }
            }
            Timer::ByeTimeout(n) => {
                if self.calls[n].state == CallState::Byeing {
                    self.calls[n].state = CallState::Done;
                    *self.c.failed.entry("BYE timeout".into()).or_default() += 1;
                }
            }
            Timer::RegisterRetx(i, cseq, k) => {
                let r = &self.regs[i];
                if r.done || r.cseq != cseq {
                    return;
                }
                if k >= 7 {
                    self.regs[i].done = true;
                    *self.c.register_failed.entry("timeout".into()).or_default() += 1;
                    return;
                }
                let bytes = r.last.clone();
                self.send_agent(&bytes, self.a.target);
                self.c.retx_sent += 1;
                self.at(now + (T1 * 2u32.pow(k)).min(T2), Timer::RegisterRetx(i, cseq, k + 1));
            }
            Timer::AgentAnswer(key) => self.answer_offer(key, now),
            Timer::OkRetx(key, k) => {
                let Some(cid) = self.offer_keys.get(&key) else { return };
                let Some(o) = self.offers.get(cid) else { return };
                if o.state != OfferState::Answered {
                    return;
                }
                if k >= 7 {
                    *self.c.failed.entry("no ACK for agent 200".into()).or_default() += 1;
                    return;
                }
                let (bytes, src) = (o.last.clone(), o.src);
                self.send_agent(&bytes, src);
                self.c.retx_sent += 1;
                self.at(now + (T1 * 2u32.pow(k)).min(T2), Timer::OkRetx(key, k + 1));
            }
            Timer::OfferForget(key) => {
                if let Some(cid) = self.offer_keys.remove(&key) {
                    self.offers.remove(&cid);
                }
            }
        }
    }

    fn answer_offer(&mut self, key: u64, now: Instant) {
        let Some(cid) = self.offer_keys.get(&key).cloned() else { return };
        let Some(o) = self.offers.get(&cid) else { return };
        if o.state != OfferState::Ringing {
            return;
        }
        let stream = match o.call {
            Some(n) => agent_stream(n),
            None => u32::MAX / 2 + key as u32,
        };
        let local = self.rtp_addr(stream);
        let body = msg::sdp(local, key);
        let contact = self.agent_addr;
        let (call, remote, src) = (o.call, o.remote, o.src);
        let text = offer_response(o, 200, "OK", Some(contact), &body);
        let bytes = text.into_bytes();
        self.send_agent(&bytes, src);
        let o = self.offers.get_mut(&cid).unwrap();
        o.last = bytes;
        o.state = OfferState::Answered;
        self.at(now + T1, Timer::OkRetx(key, 1));
        let Some(n) = call else { return };
        if self.calls[n].agent_answered.is_some() {
            return;
        }
        self.calls[n].agent_answered = Some(now);
        self.c.agent_answered += 1;
        let since = self.calls[n].answered.unwrap_or(self.calls[n].started);
        self.queue.record(now.saturating_duration_since(since));
        if self.calls[n].rtp {
            if let Some(remote) = remote {
                self.offers.get_mut(&cid).unwrap().stream = Some(stream);
                self.rtp(Cmd::Start { id: stream, tag: n as u32, side: Side::Agent, remote, send: true });
            }
            if !self.a.rtp_while_waiting {
                self.rtp(Cmd::Send { id: caller_stream(n), on: true });
            }
        }
    }

    fn active(&self) -> (u64, u64) {
        let mut up = 0;
        let mut waiting = 0;
        for c in &self.calls {
            if c.state == CallState::Up {
                up += 1;
                if c.agent_answered.is_none() {
                    waiting += 1;
                }
            }
        }
        (up, waiting)
    }

    fn failed_total(&self) -> u64 {
        self.c.failed.values().sum()
    }

    fn second(&mut self, elapsed: Duration) {
        let (up, waiting) = self.active();
        let mut acd = String::new();
        let mut acd_cpu = None;
        let mut acd_rss = None;
        if let Some(pid) = self.a.acd_pid {
            let now = Instant::now();
            if let (Some(ticks), Some(rss)) = (proc_cpu_ticks(pid), proc_rss(pid)) {
                if let Some((at, prev, _)) = self.proc_prev {
                    let secs = (now - at).as_secs_f64();
                    let cpu = (ticks - prev) as f64 / 100.0 / secs;
                    acd_cpu = Some(cpu);
                    self.acd_cpu_total.0 += (ticks - prev) as f64 / 100.0;
                    self.acd_cpu_total.1 += secs;
                    let _ = write!(acd, " | acd cpu {:.0}% rss {} MB", cpu * 100.0, rss >> 20);
                }
                self.proc_prev = Some((now, ticks, rss));
                self.acd_rss_max = self.acd_rss_max.max(rss);
                acd_rss = Some(rss);
            }
        }
        let sent = self.live.sent.load(Ordering::Relaxed);
        let recv = self.live.received.load(Ordering::Relaxed);
        let lost = self.live.lost.load(Ordering::Relaxed);
        let cross = self.live.crosstalk.load(Ordering::Relaxed);
        let slow = self.live.slow.load(Ordering::Relaxed);
        let slow_now = self.live.slow_now.load(Ordering::Relaxed);
        if !self.a.quiet {
            println!(
                "[{:>5.1}s] calls {} answered {} by agent {} failed {} | up {} waiting {} | setup p99 {:.1} ms queue p99 {:.1} ms | retx {} | rtp tx {} rx {} lost {} crossed {} slow {} (+{} playing){acd}",
                elapsed.as_secs_f64(),
                self.c.attempted,
                self.c.answered,
                self.c.agent_answered,
                self.failed_total(),
                up,
                waiting,
                self.setup.quantile_ms(0.99),
                self.queue.quantile_ms(0.99),
                self.c.retx_seen,
                sent,
                recv,
                lost,
                cross,
                slow,
                slow_now,
            );
        }
        self.series.push(json!({
            "t": elapsed.as_secs_f64(), "attempted": self.c.attempted, "answered": self.c.answered,
            "agent_answered": self.c.agent_answered, "failed": self.failed_total(), "up": up, "waiting": waiting,
            "rtp_sent": sent, "rtp_received": recv, "rtp_slow": slow, "rtp_slow_now": slow_now, "acd_cpu": acd_cpu, "acd_rss": acd_rss,
        }));
    }

    fn report(&mut self, elapsed: Duration, media: &rtp::Totals) -> bool {
        let c = &self.c;
        let failed: u64 = c.failed.values().sum();
        let pacing = media.pacing.clone().unwrap_or_default();
        let self_cpu =
            proc_cpu_ticks(std::process::id()).unwrap_or(0).saturating_sub(self.self_cpu_start) as f64 / 100.0;
        let secs = elapsed.as_secs_f64().max(1e-9);
        let acd_cpu = if self.acd_cpu_total.1 > 0.0 { Some(self.acd_cpu_total.0 / self.acd_cpu_total.1) } else { None };
        println!("\nacd-load report ({:.1} s of calls, target {})", secs, self.a.target);
        println!(
            "  calls      attempted {}  answered by acd {}  answered by an agent {}  completed {}",
            c.attempted, c.answered, c.agent_answered, c.completed
        );
        println!(
            "             failed {}{}  hung up by acd {}  unfinished {}",
            failed,
            if c.failed.is_empty() { String::new() } else { format!(" {:?}", c.failed) },
            c.hung_up_by_acd,
            c.unfinished
        );
        println!(
            "  agents     signed in {} of {}{}  offers {} (busy {}, let ring {}, cancelled {})",
            c.registered,
            self.regs.len(),
            if c.register_failed.is_empty() { String::new() } else { format!(" refused {:?}", c.register_failed) },
            c.offers,
            c.offers_busy,
            c.offers_no_answer,
            c.offers_cancelled
        );
        println!(
            "  setup      INVITE→200 p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            self.setup.quantile_ms(0.5),
            self.setup.quantile_ms(0.99),
            self.setup.max_ms()
        );
        println!(
            "  queue      200→agent answer p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            self.queue.quantile_ms(0.5),
            self.queue.quantile_ms(0.99),
            self.queue.max_ms()
        );
        println!("  sip        retransmissions seen {}  sent {}  unparsable {}", c.retx_seen, c.retx_sent, c.unparsed);
        println!("  rtp        streams {}  sent {}  received {}  lost {}  relayed ok {}  crosstalk {}  acd audio {} (silent {})  stray {}",
            media.streams, media.sent, media.received, media.lost, media.relayed, media.crosstalk, media.acd_audio, media.acd_silent, media.stray);
        println!(
            "  pacing     acd audio gap-20ms p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms (tool's late send slots {})",
            pacing.quantile_ms(0.5),
            pacing.quantile_ms(0.99),
            pacing.max_ms(),
            media.late_slots
        );
        let min = media.min_frame_rate;
        for (kind, r) in [("music", &media.music_rate), ("relayed", &media.relayed_rate)] {
            if r.count() == 0 {
                println!("  {kind:<10} frames/s: no stream judged ({} under 1 s)", r.short);
                continue;
            }
            println!(
                "  {kind:<10} frames/s p1 {:.1}  p50 {:.1}  slow (< {min}/s) {} of {} streams ({:.1} %)  not judged (under 1 s) {}",
                r.quantile(0.01),
                r.quantile(0.5),
                r.below,
                r.count(),
                r.below_share() * 100.0,
                r.short
            );
        }
        let received: u64 = media.received;
        println!(
            "  frames     slow streams {}  received {} of {:.0} expected at 50/s over the streams' lives ({:.1} %)",
            media.slow_streams,
            received,
            media.expected,
            received as f64 * 100.0 / media.expected.max(1.0)
        );
        if let Some(cpu) = acd_cpu {
            let rate = c.attempted as f64 / secs;
            println!(
                "  acd        cpu {:.2} s/s ({:.3} s per 100 calls/s)  rss max {} MB",
                cpu,
                cpu / (rate / 100.0).max(1e-9),
                self.acd_rss_max >> 20
            );
        }
        println!("  acd-load   cpu {:.2} s/s", self_cpu / secs);
        let clean = failed == 0
            && c.unfinished == 0
            && c.answered == c.attempted
            && media.lost == 0
            && media.crosstalk == 0
            && media.slow_streams == 0;
        let rates = |r: &stats::Rates| {
            json!({"judged": r.count(), "p1": r.quantile(0.01), "p50": r.quantile(0.5), "min": r.quantile(0.0),
                   "slow": r.below, "slow_share": r.below_share(), "short": r.short})
        };
        if let Some(path) = &self.a.json {
            let v = json!({
                "rate": self.a.rate, "calls": self.a.calls, "duration": self.a.duration, "agents": self.a.agents,
                "elapsed_secs": secs,
                "attempted": c.attempted, "answered": c.answered, "agent_answered": c.agent_answered,
                "completed": c.completed, "failed": failed, "failed_by_status": c.failed,
                "hung_up_by_acd": c.hung_up_by_acd, "unfinished": c.unfinished,
                "registered": c.registered, "register_failed": c.register_failed,
                "offers": c.offers, "offers_busy": c.offers_busy, "offers_no_answer": c.offers_no_answer,
                "offers_cancelled": c.offers_cancelled,
                "retransmissions_seen": c.retx_seen, "retransmissions_sent": c.retx_sent, "unparsable": c.unparsed,
                "setup_ms": {"p50": self.setup.quantile_ms(0.5), "p99": self.setup.quantile_ms(0.99), "max": self.setup.max_ms(), "count": self.setup.count()},
                "queue_ms": {"p50": self.queue.quantile_ms(0.5), "p99": self.queue.quantile_ms(0.99), "max": self.queue.max_ms(), "count": self.queue.count()},
                "rtp": {"streams": media.streams, "sent": media.sent, "received": media.received, "lost": media.lost,
                        "relayed": media.relayed, "crosstalk": media.crosstalk, "acd_audio": media.acd_audio,
                        "acd_silent": media.acd_silent, "stray": media.stray, "late_slots": media.late_slots},
                "frame_rate": {"min_frame_rate": media.min_frame_rate, "slow_streams": media.slow_streams,
                               "music": rates(&media.music_rate), "relayed": rates(&media.relayed_rate),
                               "received": media.received, "expected": media.expected},
                "pacing_ms": {"p50": pacing.quantile_ms(0.5), "p99": pacing.quantile_ms(0.99), "max": pacing.max_ms(), "count": pacing.count()},
                "acd_cpu": acd_cpu, "acd_rss_max": self.acd_rss_max, "self_cpu": self_cpu / secs,
                "clean": clean,
                "seconds": self.series,
            });
            if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&v).unwrap_or_default()) {
                eprintln!("acd-load: cannot write {}: {e}", path.display());
            }
        }
        clean
    }
}
