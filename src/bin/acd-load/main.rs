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

mod agents;
mod gen;
mod msg;
mod report;
mod rtp;
mod stats;
mod trunk;

use gen::{gen_config, GenArgs};
use report::proc_cpu_ticks;

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
}
