//! Early dialogs with callers (queue while ringing): a 180 or a 183 with SDP
//! to a caller's INVITE that stays unanswered while the caller waits, then
//! the 200 when an agent answers or a final error if it never is.
//!
//! The dialog is created at the provisional, so the 180/183 and the final
//! response share one To-tag, and rsipstack's `handle` (spawned here) runs
//! the INVITE server transaction: a CANCEL from the caller is answered 200
//! + 487 there and reported as `CallerCancelled`. No PRACK (RFC 3262) is
//! required of the caller; the provisional is sent unreliably, and again
//! every [`PROVISIONAL_EVERY`] (RFC 3261 §13.3.1.1: a UAS that takes long
//! to answer MUST send a provisional every minute, or a proxy's 3-minute
//! Timer C cancels the INVITE).
//!
//! What always holds: an early caller's leg is a `LegHandle::Caller` whose
//! dialog is not confirmed, with its INVITE's source in `early_sources`
//! until it is answered or rejected.

use super::*;
use std::time::Instant;

/// How often an early caller's provisional response is sent again.
pub const PROVISIONAL_EVERY: Duration = Duration::from_secs(60);

/// An early caller as the adapter keeps it.
pub(super) struct Early {
    /// Where its INVITE came from (the unacked-answer budget, once answered).
    ip: IpAddr,
    /// The 183's SDP (`None`: a 180).
    sdp: Option<Vec<u8>>,
    last_sent: Instant,
}

impl SipStack {
    /// 183 Session Progress with `sdp` (early media), or 180 Ringing
    /// without, to a caller not answered yet; the caller leg's dialog is
    /// created here. Later: [`SipStack::answer_caller`] or
    /// [`SipStack::reject_caller`].
    pub fn early_caller(&mut self, leg: LegId, sdp: Option<Vec<u8>>) {
        let Some((mut tx, dialog)) = self.caller_dialog(leg, "early media") else { return };
        let id = dialog.id();
        let sdp_copy = sdp.clone();
        let headers = sdp.as_ref().map(|_| vec![Header::ContentType("application/sdp".into())]);
        if let Err(e) = dialog.ringing(headers, sdp) {
            warn!(error = %e, "provisional response failed");
        }
        let ip = source_addr(&tx).map(|a| a.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
        self.early_sources.insert(leg, Early { ip, sdp: sdp_copy, last_sent: Instant::now() });
        self.link(id, leg);
        let mut server = dialog.clone();
        self.legs.insert(leg, LegHandle::Caller(dialog));
        tokio::spawn(async move {
            if let Err(e) = server.handle(&mut tx).await {
                debug!(error = %e, "caller INVITE transaction");
            }
        });
    }

    /// The 200 to an early caller (its dialog exists): `false` when the
    /// leg is not one.
    pub(super) fn answer_early(&mut self, leg: LegId, sdp: &[u8], extra: &[(String, String)]) -> bool {
        let Some(Early { ip, .. }) = self.early_sources.remove(&leg) else { return false };
        let Some(LegHandle::Caller(dialog)) = self.legs.get(&leg) else { return false };
        let mut headers = vec![Header::ContentType("application/sdp".into())];
        headers.extend(extra.iter().map(|(n, v)| to_header(n, v.clone())));
        if let Err(e) = dialog.accept(Some(headers), Some(sdp.to_vec())) {
            warn!(error = %e, "accept failed");
        }
        if !ip.is_unspecified() {
            self.unacked.push_back((Instant::now(), leg, ip));
            *self.unacked_per_source.entry(ip).or_default() += 1;
        }
        true
    }

    /// A final error to an early caller: `false` when the leg is not one.
    /// The leg is forgotten at once (its dialog's end reports nothing).
    pub(super) fn reject_early(&mut self, leg: LegId, status: u16, retry_after: Option<u32>) -> bool {
        if self.early_sources.remove(&leg).is_none() {
            return false;
        }
        let Some(LegHandle::Caller(dialog)) = self.legs.remove(&leg) else { return false };
        self.unlink(leg);
        // rsipstack's reject carries no Retry-After (only a 503 at shutdown
        // would have one): the status alone.
        if retry_after.is_some() {
            debug!(%leg, status, "early caller rejected without its Retry-After");
        }
        dialog.reject(Some(StatusCode::from(status)), None).ok();
        true
    }

    /// Sends the provisional again to every early caller that has had none
    /// for [`PROVISIONAL_EVERY`]; the shell calls it every few seconds.
    pub fn repeat_provisionals(&mut self, now: Instant) {
        for leg in due(self.early_sources.iter().map(|(l, e)| (*l, e.last_sent)), now, PROVISIONAL_EVERY) {
            let (Some(e), Some(LegHandle::Caller(d))) = (self.early_sources.get_mut(&leg), self.legs.get(&leg)) else {
                continue;
            };
            e.last_sent = now;
            let headers = e.sdp.as_ref().map(|_| vec![Header::ContentType("application/sdp".into())]);
            debug!(%leg, "early caller still waiting: provisional again");
            d.ringing(headers, e.sdp.clone()).ok();
        }
    }
}

/// The legs whose last provisional is `every` old or older.
fn due(last: impl Iterator<Item = (LegId, Instant)>, now: Instant, every: Duration) -> Vec<LegId> {
    last.filter(|(_, at)| now.saturating_duration_since(*at) >= every).map(|(l, _)| l).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provisional_is_due_again_after_a_minute_of_waiting_not_before() {
        let t0 = Instant::now();
        let legs = [(LegId(1), t0), (LegId(2), t0 + Duration::from_secs(30))];
        assert!(due(legs.into_iter(), t0 + Duration::from_secs(59), PROVISIONAL_EVERY).is_empty());
        assert_eq!(due(legs.into_iter(), t0 + Duration::from_secs(60), PROVISIONAL_EVERY), [LegId(1)]);
        let mut both = due(legs.into_iter(), t0 + Duration::from_secs(95), PROVISIONAL_EVERY);
        both.sort();
        assert_eq!(both, [LegId(1), LegId(2)]);
    }
}
