//! Attended transfer (RFC 3515 REFER with an RFC 3891 `Replaces`): the
//! agent consulted another agent through acd, then hands its caller over.
//!
//! ```text
//!   call X: Bridged(A, leg a)      the customer C (on hold: music) and agent A
//!   call K: Bridged(B, leg b)      A's consultation: caller leg k = A's phone,
//!                                  routed by the number dialled, B answered
//!   REFER on a, Refer-To: <...?Replaces=<k's dialog>>  (SipEvent::ReferReplaces,
//!   the adapter found leg k by Call-ID and tags)
//!        │ engine AttendedTransfer { X, K } accepted:
//!        │   a: ReferAccepted (202, NOTIFY 100, NOTIFY 200 OK, BYE)
//!        │   k: BYE (A's consultation leg)
//!        │   b moves from K to X; C: StopHold, Bridge(C, b)
//!        ▼
//!   call X: Bridged(B, leg b)      K is gone (a consultation, transferred)
//!
//!   refused (ReferDeclined: 4xx/6xx + Warning; both calls stay as they were):
//!     REFER not on the agent leg of a bridged call      403
//!     Replaces names no dialog acd has                   404
//!     names a dialog that is not a consultation of A's   403
//!     the consultation is not answered yet (ringing)     603
//!     a transfer already rings for one of the calls      491
//! ```
//!
//! What always holds: a REFER is answered exactly once; on a refusal no
//! leg changes hands and the customer stays bridged (or held) with A; on
//! success B's leg changes calls inside one input, so no command ever
//! names B's leg under the consultation after it.
//!
//! A consultation's call id is taken on its agent's customer's media
//! shard (`media.threads`, read once at start like the plane does), so
//! that the two legs to bridge are relayed by one shard thread.

use super::{CallCtlError, CallState, CallerEnd, Command, Core, LegId, Next};
use crate::engine::{AgentState, CallId, EngineError, Input, NewCall, Time};
use tracing::{debug, info};

/// The dialog a `Replaces` names (RFC 3891 §6.1), percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
}

/// The `Replaces` header of a Refer-To URI (`<sip:x@h?Replaces=cid%3Bto-tag%3Da%3Bfrom-tag%3Db>`),
/// `None` when it has none or it lacks a Call-ID or a tag.
pub fn parse_replaces(refer_to: &str) -> Option<Replaces> {
    let v = refer_to.trim();
    let uri = match (v.find('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v,
    };
    let (_, headers) = uri.split_once('?')?;
    let value = headers.split('&').find_map(|h| {
        let (name, value) = h.split_once('=')?;
        name.trim().eq_ignore_ascii_case("replaces").then_some(value)
    })?;
    let value = percent_decode(value)?;
    let mut parts = value.split(';');
    let call_id = parts.next()?.trim().to_string();
    let (mut to_tag, mut from_tag) = (None, None);
    for p in parts {
        match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("to-tag") => to_tag = Some(v.trim().to_string()),
            Some((k, v)) if k.trim().eq_ignore_ascii_case("from-tag") => from_tag = Some(v.trim().to_string()),
            _ => {} // early-only and extensions
        }
    }
    let (to_tag, from_tag) = (to_tag?, from_tag?);
    (!call_id.is_empty() && !to_tag.is_empty() && !from_tag.is_empty()).then_some(Replaces {
        call_id,
        to_tag,
        from_tag,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(s.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether a dialog (Call-ID and the two tags, in either order: acd may be
/// the UAS or the UAC of it) is the one `r` names.
pub fn names_dialog(r: &Replaces, call_id: &str, local_tag: &str, remote_tag: &str) -> bool {
    r.call_id == call_id
        && ((r.to_tag == local_tag && r.from_tag == remote_tag) || (r.to_tag == remote_tag && r.from_tag == local_tag))
}

impl Core {
    /// The id for a new call; a consultation from `agent` takes one on the
    /// media shard of the customer that agent is on a call with.
    pub(super) fn new_call_id(&mut self, agent: Option<&str>) -> CallId {
        let customer = agent.and_then(|a| self.engine.agent_id(a)).and_then(|a| match self.engine.agent_state(a) {
            Some(AgentState::OnCall { call, .. }) => Some(*call),
            _ => None,
        });
        let shards = self.media_shards.max(1);
        if let Some(c) = customer {
            while self.next_call % shards != c.0 % shards {
                self.next_call += 1;
            }
        }
        let id = CallId(self.next_call);
        self.next_call += 1;
        id
    }

    /// The engine input for a new call: a consultation when an agent's
    /// phone placed it (its event records `consult_by`).
    pub(super) fn arrival(&self, mut new: NewCall, agent: Option<&str>) -> Input {
        match agent.and_then(|a| self.engine.agent_id(a)) {
            Some(by) => {
                new.attributes.push(("consult_by".to_string(), agent.unwrap_or_default().to_string()));
                Input::ConsultArrived { call: new, by }
            }
            None => Input::CallArrived(new),
        }
    }

    /// A REFER with `Replaces` on `leg` of call `call_id`; `consult` is the
    /// leg whose dialog the Replaces names, if acd has it.
    pub(super) fn refer_replaces(
        &mut self,
        now: Time,
        call_id: CallId,
        leg: LegId,
        consult: Option<LegId>,
    ) -> Result<(), CallCtlError> {
        let state = self.calls[&call_id].state;
        let CallState::Bridged { agent: a, leg: agent_leg } = state else {
            return self.decline(call_id, leg, 403, "only the agent of a bridged call can transfer it");
        };
        if agent_leg != leg {
            return self.decline(call_id, leg, 403, "only the agent of a bridged call can transfer it");
        }
        let Some(k_leg) = consult else {
            return self.decline(call_id, leg, 404, "Replaces names no call acd knows");
        };
        let k = match self.legs.get(&k_leg) {
            Some(&k) if self.calls.get(&k).is_some_and(|c| c.caller_leg == k_leg) => k,
            _ => return self.decline(call_id, leg, 404, "Replaces names no consultation call acd knows"),
        };
        let CallState::Bridged { agent: b, leg: b_leg } = self.calls[&k].state else {
            return self.decline(call_id, leg, 603, "the consultation call is not answered yet");
        };
        match self.engine.handle(now, Input::AttendedTransfer { call: call_id, consult: k }) {
            Ok(()) => {}
            Err(EngineError::ConsultNotAnswered(_)) => {
                return self.decline(call_id, leg, 603, "the consultation call is not answered yet")
            }
            Err(EngineError::NotConsultation(..)) => {
                return self.decline(call_id, leg, 403, "Replaces names a call that is not this agent's consultation")
            }
            Err(EngineError::TransferPending(_)) => {
                return self.decline(call_id, leg, 491, "a transfer is already ringing for this call")
            }
            Err(e) => {
                self.bug(e.into());
                return self.decline(call_id, leg, 500, "the transfer could not be made");
            }
        }
        info!(call = %call_id, consult = %k, from = %a, to = %b, "attended transfer");
        // A's leg of the customer's call: 202, NOTIFY 100 and 200, BYE.
        self.take_leg(call_id, leg, "attended transfer");
        self.commands.push_back(Command::ReferAccepted { call: call_id, leg });
        // B's leg changes calls; the consultation ends on A's side.
        let kc = self.calls.get_mut(&k).expect("consultation exists");
        let i = kc.legs.iter().position(|l| l.leg == b_leg).expect("bridged leg listed");
        let b_out = kc.legs.remove(i);
        self.legs.insert(b_leg, call_id);
        self.end_call(None, k, CallerEnd::Bye, "its caller was handed over (attended transfer)")?;
        let call = self.calls.get_mut(&call_id).expect("customer's call exists");
        call.legs.push(b_out);
        call.refused_refer = None;
        let caller = call.caller_leg;
        self.set_state(call_id, Next::To(CallState::Bridged { agent: b, leg: b_leg }), "attended transfer");
        // The customer may be on hold (music): the bridge replaces it.
        self.commands.push_back(Command::StopHold { call: call_id, leg: caller });
        self.commands.push_back(Command::Bridge { call: call_id, caller, other: b_leg });
        Ok(())
    }

    fn decline(&mut self, call_id: CallId, leg: LegId, status: u16, why: &'static str) -> Result<(), CallCtlError> {
        debug!(call = %call_id, %leg, status, "attended transfer refused: {why}");
        self.commands.push_back(Command::ReferDeclined { call: call_id, leg, status, why });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_forms() {
        let r = parse_replaces("<sip:200@127.0.0.1:5060?Replaces=abc%40host%3Bto-tag%3D7a%3Bfrom-tag%3D9b>").unwrap();
        assert_eq!(r, Replaces { call_id: "abc@host".into(), to_tag: "7a".into(), from_tag: "9b".into() });
        // Tags in any order, early-only, other URI headers, case.
        let r = parse_replaces("sip:x@h?Subject=x&replaces=c1%3Bfrom-tag%3Df%3Bearly-only%3Bto-tag%3Dt").unwrap();
        assert_eq!((r.call_id.as_str(), r.to_tag.as_str(), r.from_tag.as_str()), ("c1", "t", "f"));
        assert_eq!(parse_replaces("<sip:200@acd>"), None, "a blind transfer");
        assert_eq!(parse_replaces("<sip:200@acd?Replaces=c1%3Bto-tag%3Dt>"), None, "no from-tag");
        assert_eq!(parse_replaces("<sip:200@acd?Replaces=%zz>"), None);
    }

    #[test]
    fn a_dialog_is_named_from_either_side() {
        let r = Replaces { call_id: "c".into(), to_tag: "acd".into(), from_tag: "phone".into() };
        assert!(names_dialog(&r, "c", "acd", "phone"), "acd as the UAS of the consultation");
        assert!(names_dialog(&r, "c", "phone", "acd"), "the tags seen from the other side");
        assert!(!names_dialog(&r, "c", "acd", "other"));
        assert!(!names_dialog(&r, "d", "acd", "phone"));
    }
}
