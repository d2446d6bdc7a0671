//! Forking an agent's offer to all its registered contacts (desk phone and
//! softphone): one core leg, one INVITE branch per contact, all sent at
//! once with the same SDP offer. The first 2xx wins and becomes the leg's
//! dialog (`LegHandle::Out`); the other branches get CANCEL at once and
//! stop mapping to the leg; a loser whose 2xx crossed that CANCEL is ACKed
//! by rsipstack and BYEd here. Only when every branch failed does the leg
//! fail, with the best final status (RFC 3261 §16.7: a 6xx, else a 486,
//! else the first other status, else none). The core never knows: to it the
//! agent rang once, so an agent on two devices is one ringing agent.
//!
//! What always holds: a leg is in `forks` from its INVITEs until its last
//! branch's final response; a branch dialog maps to the leg in `dialogs`
//! only while no other branch has won.

use super::*;

/// One forked offer's branches.
pub(super) struct Fork {
    branches: Vec<Branch>,
    winner: Option<usize>,
    /// The leg was cancelled (the core let go): no branch may win.
    cancelled: bool,
}

struct Branch {
    dialog: InviteDialog,
    /// The id it was linked with (the dialog's id changes once a To-tag comes).
    first: DialogId,
    status: Option<Option<u16>>,
}

impl SipStack {
    /// The INVITE to `target` as rsipstack takes it; `None` for a bad URI.
    pub(super) fn invite_option(
        &self,
        target: &str,
        destination: Option<(SocketAddr, Transport)>,
        caller: &str,
        sdp: Vec<u8>,
    ) -> Option<InviteOption> {
        let callee = match rsipstack::sip::Uri::try_from(target) {
            Ok(u) => u,
            Err(e) => {
                warn!(%target, error = %e, "bad target URI");
                return None;
            }
        };
        let caller_user: String =
            caller.chars().filter(|c| c.is_ascii_alphanumeric() || "+-_.*#".contains(*c)).collect();
        let caller_user = if caller_user.is_empty() { "anonymous".to_string() } else { caller_user };
        let caller_uri = rsipstack::sip::Uri::try_from(format!("sip:{caller_user}@{}", self.local_host).as_str())
            .unwrap_or_else(|_| self.contact.clone());
        Some(InviteOption {
            caller: caller_uri,
            callee,
            destination: destination.map(|(addr, t)| sip_addr(addr, t)),
            content_type: Some("application/sdp".into()),
            offer: Some(sdp),
            contact: self.contact.clone(),
            ..Default::default()
        })
    }

    /// INVITEs to every one of an agent's `contacts` (contact URI and where
    /// to send), as one leg; one contact is a plain [`SipStack::invite`].
    pub fn invite_all(
        &mut self,
        leg: LegId,
        contacts: Vec<(String, Option<(SocketAddr, Transport)>)>,
        caller: &str,
        sdp: Vec<u8>,
    ) {
        if contacts.len() <= 1 {
            let Some((target, dest)) = contacts.into_iter().next() else {
                self.reports.push_back(Raw(RawInbound::InviteDone { leg, status: None, body: Vec::new() }));
                return;
            };
            return self.invite(leg, &target, dest, caller, sdp);
        }
        let mut branches = Vec::new();
        for (target, dest) in contacts {
            let Some(opt) = self.invite_option(&target, dest, caller, sdp.clone()) else { continue };
            match self.dialog_layer.do_invite_async(opt, self.state_tx.clone()) {
                Ok((dialog, handle)) => {
                    let first = dialog.id();
                    self.link(first.clone(), leg);
                    let branch = branches.len();
                    branches.push(Branch { dialog, first, status: None });
                    let raw_tx = self.raw_tx.clone();
                    tokio::spawn(async move {
                        let (status, body) = match handle.await {
                            Ok(Ok((_, Some(resp)))) => (Some(resp.status_code.code()), resp.body),
                            _ => (None, Vec::new()),
                        };
                        raw_tx.send(Raw(RawInbound::BranchDone { leg, branch, status, body })).await.ok();
                    });
                }
                Err(e) => warn!(%target, error = %e, "cannot send INVITE"),
            }
        }
        if branches.is_empty() {
            self.reports.push_back(Raw(RawInbound::InviteDone { leg, status: None, body: Vec::new() }));
            return;
        }
        debug!(%leg, branches = branches.len(), "offer forked to every contact");
        self.forks.insert(leg, Fork { branches, winner: None, cancelled: false });
    }

    /// CANCEL every branch still ringing; `false` when `leg` is not forked
    /// or already has a winner (a plain leg's CANCEL then applies).
    pub(super) fn cancel_fork(&mut self, leg: LegId) -> bool {
        let Some(fork) = self.forks.get_mut(&leg) else { return false };
        if fork.winner.is_some() {
            return false;
        }
        fork.cancelled = true;
        for b in fork.branches.iter().filter(|b| b.status.is_none()) {
            let d = b.dialog.clone();
            tokio::spawn(async move { d.cancel().await.ok() });
        }
        true
    }

    /// One branch's final response.
    pub(super) fn branch_done(
        &mut self,
        leg: LegId,
        branch: usize,
        status: Option<u16>,
        body: Vec<u8>,
    ) -> Option<Inbound> {
        let fork = self.forks.get_mut(&leg)?;
        fork.branches.get_mut(branch)?.status = Some(status);
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        let won = ok && fork.winner.is_none() && !fork.cancelled;
        if ok && !won {
            // A 2xx that crossed our CANCEL (or came second): end it.
            let d = fork.branches[branch].dialog.clone();
            let layer = self.dialog_layer.clone();
            self.dialogs.remove(&d.id());
            self.dialogs.remove(&fork.branches[branch].first);
            tokio::spawn(async move {
                d.bye().await.ok();
                layer.remove_dialog(&d.id());
            });
        }
        let mut out = None;
        if won {
            fork.winner = Some(branch);
            let dialog = fork.branches[branch].dialog.clone();
            // The losers stop ringing and stop mapping to the leg.
            let mut loser_ids = Vec::new();
            for (i, b) in fork.branches.iter().enumerate().filter(|(i, _)| *i != branch) {
                loser_ids.push(b.first.clone());
                loser_ids.push(b.dialog.id());
                if b.status.is_none() {
                    let d = b.dialog.clone();
                    debug!(%leg, branch = i, "another device answered: CANCEL");
                    tokio::spawn(async move { d.cancel().await.ok() });
                }
            }
            for id in &loser_ids {
                if self.dialogs.get(id) == Some(&leg) {
                    self.dialogs.remove(id);
                }
            }
            if let Some(ids) = self.leg_dialogs.get_mut(&leg) {
                ids.retain(|id| !loser_ids.contains(id));
            }
            self.legs.insert(leg, LegHandle::Out { dialog, answered: false });
            out = self.invite_done(leg, status, body);
        }
        let fork = self.forks.get(&leg)?;
        if fork.branches.iter().all(|b| b.status.is_some()) {
            let fork = self.forks.remove(&leg)?;
            for (i, b) in fork.branches.iter().enumerate() {
                if Some(i) != fork.winner {
                    for id in [b.first.clone(), b.dialog.id()] {
                        self.dialog_layer.remove_dialog(&id);
                        if self.dialogs.get(&id) == Some(&leg) {
                            self.dialogs.remove(&id);
                        }
                    }
                }
            }
            if fork.winner.is_none() {
                self.unlink(leg);
                // A 2xx here crossed a CANCEL and was BYEd: not a status to report.
                let best = best_status(fork.branches.iter().filter_map(|b| b.status.flatten()).filter(|s| *s >= 300));
                return Some(Inbound::Leg(SipEvent::Failed { leg, status: best }));
            }
        }
        out
    }
}

/// The final status a forked leg reports when every branch failed.
fn best_status(statuses: impl Iterator<Item = u16> + Clone) -> Option<u16> {
    let all: Vec<u16> = statuses.collect();
    all.iter()
        .copied()
        .find(|s| *s >= 600)
        .or_else(|| all.iter().copied().find(|s| *s == 486))
        .or_else(|| all.iter().copied().find(|s| *s != 487))
        .or_else(|| all.first().copied())
}

#[cfg(test)]
mod tests {
    use super::best_status;

    #[test]
    fn a_decline_beats_busy_beats_other_failures_beats_the_cancel() {
        assert_eq!(best_status([480, 603, 486].into_iter()), Some(603));
        assert_eq!(best_status([480, 486].into_iter()), Some(486));
        assert_eq!(best_status([487, 480].into_iter()), Some(480));
        assert_eq!(best_status([487, 487].into_iter()), Some(487));
        assert_eq!(best_status(std::iter::empty()), None);
    }
}
