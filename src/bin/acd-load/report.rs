//! The one-line-a-second progress and the final report (text and `--json`).

use super::*;

impl Load {
    pub(crate) fn active(&self) -> (u64, u64) {
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

    pub(crate) fn failed_total(&self) -> u64 {
        self.c.failed.values().sum()
    }

    pub(crate) fn second(&mut self, elapsed: Duration) {
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

    pub(crate) fn report(&mut self, elapsed: Duration, media: &rtp::Totals) -> bool {
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

/// utime + stime of a process, in clock ticks (USER_HZ, 100 on Linux).
pub(crate) fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Resident set size in bytes.
pub(crate) fn proc_rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
