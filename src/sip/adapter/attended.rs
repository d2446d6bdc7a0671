//! The adapter's part of an attended transfer: finding the leg whose dialog
//! a REFER's `Replaces` names (RFC 3891), and refusing with a Warning.
//!
//! A `Replaces` names a dialog by Call-ID, to-tag and from-tag as the
//! transferring phone sees it; acd may be either end of that dialog (the
//! UAS of an agent's consultation call, the UAC of a leg it rang), so the
//! tags are matched both ways round ([`crate::callctl::names_dialog`]).
//! The lookup walks the dialogs acd holds: an attended transfer is a rare,
//! human-paced event, unlike the per-packet paths.

use super::*;
use crate::callctl::{names_dialog, parse_replaces};

impl SipStack {
    /// For a Refer-To with `Replaces`: `Some(leg)` when acd has the dialog
    /// it names, `Some(None)` when it has not; `None` without `Replaces`.
    pub(super) fn replaced_leg(&self, refer_to: &str) -> Option<Option<LegId>> {
        let has_header = refer_to.split_once('?').is_some_and(|(_, h)| h.to_ascii_lowercase().contains("replaces="));
        let Some(r) = parse_replaces(refer_to) else {
            // A Replaces acd cannot read names no dialog it knows.
            return has_header.then_some(None);
        };
        Some(
            self.dialogs
                .iter()
                .find(|(id, _)| names_dialog(&r, &id.call_id, &id.local_tag, &id.remote_tag))
                .map(|(_, leg)| *leg),
        )
    }
}

/// The Warning of a refused attended transfer.
pub(super) fn declined_warning(why: &str) -> Header {
    Header::Warning(format!("399 acd \"{why}\"").into())
}
