//! Calls from agents' own phones (a consultation before an attended
//! transfer: the agent holds its caller and dials another team's number).
//!
//! The rule: an INVITE is an agent's call when its From user is an agent's
//! SIP user **and** it comes from the very address (IP and port, same
//! transport) that agent's phone registered from. Such an INVITE must then
//! pass digest as that agent, exactly as its REGISTER did (401, then the
//! agent's password); it is routed by the number dialled like a trunk's
//! call, without trusting any header. Anything else is judged as before: a
//! trunk's call (a carrier presenting a caller id that happens to equal an
//! agent's user name is not challenged), or 403 from an address that is no
//! trunk, so an unregistered source is never let in by a From header.

use super::FrontDoor;
use crate::sip::adapter::{Request, Transport};
use crate::sip::registrar;

impl FrontDoor {
    /// The agent (its id in the config) whose registered phone sent `r`,
    /// when `r` comes from one of that agent's current bindings.
    pub(super) fn registered_agent_caller(&self, r: &Request) -> Option<String> {
        let (agent, _) = self.settings.agents.get(&r.from_user)?;
        let transport = match r.transport {
            Transport::Udp => registrar::Transport::Udp,
            Transport::Tcp => registrar::Transport::Tcp,
        };
        self.registrar
            .contacts(&r.from_user)
            .any(|b| {
                b.transport == transport
                    && b.source.port() == r.source.port()
                    && super::same_ip(b.source.ip(), r.source.ip())
            })
            .then(|| agent.clone())
    }
}
