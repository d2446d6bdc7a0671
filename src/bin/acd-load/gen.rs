//! `acd-load gen-config`: an acd config matching the tool's defaults.

use super::*;

#[derive(Args)]
pub(crate) struct GenArgs {
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
pub(crate) fn rtp_range_for(rate: f64, call_secs: f64) -> (u16, u16, u32) {
    const MIN: u32 = 20_000;
    let pairs = (rate * (call_secs + 1.0) * 2.0 * 1.25).ceil().max(1000.0) as u32;
    let pairs = pairs.min((65_534 - MIN) / 2);
    (MIN as u16, (MIN + 2 * pairs) as u16, pairs)
}

pub(crate) fn gen_config(g: &GenArgs) -> String {
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
