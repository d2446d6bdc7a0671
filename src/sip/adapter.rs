//! The one module that speaks rsipstack. Everything else in acd sees acd's
//! own types: [`Request`] summaries of out-of-dialog requests with a
//! [`TxId`] to answer them by, [`SipEvent`]s per [`LegId`], and plain
//! methods to answer, invite, cancel and hang up.
//!
//! What it owns: the endpoint (UDP and TCP listeners, transactions), the
//! dialog layer, the server transactions still waiting for an answer, and
//! the map between rsipstack dialogs and acd legs. What always holds: every
//! dialog it creates is removed from the dialog layer once it terminates
//! (`remove_dialog`, the rsipstack trap), and every outgoing leg produces
//! exactly one final report (answered, failed, or cancelled) for the core.
//!
//! In-dialog requests (ACK, BYE, re-INVITE, INFO...) are matched to their
//! dialog here and handled by rsipstack; only their effect reaches the core.

use crate::callctl::{LegId, SipEvent};
use crate::config::SipSettings;
use rsipstack::dialog::dialog::{Dialog, DialogState, DialogStateReceiver, DialogStateSender, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::dialog::DialogId;
use rsipstack::platform::CancellationToken;
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Header, Method as RMethod, StatusCode};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, TcpListenerConnection, TransportLayer};
use rsipstack::EndpointBuilder;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// An out-of-dialog request waiting for our answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxId(u64);

impl TxId {
    /// A made-up id, for front-door tests that build requests by hand.
    #[cfg(test)]
    pub(crate) fn test(n: u64) -> TxId {
        TxId(n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Invite,
    Register,
    Options,
    /// Any other method rsipstack parses (SUBSCRIBE, MESSAGE, ...).
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// An out-of-dialog request, as acd sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub tx: TxId,
    pub method: Method,
    pub method_name: String,
    /// Where the packet came from (the transport's peer address).
    pub source: SocketAddr,
    pub transport: Transport,
    /// Request-URI, as text, and its user part (the dialled number).
    pub uri: String,
    pub uri_user: String,
    pub from_user: String,
    pub to_user: String,
    pub call_id: String,
    pub cseq: u32,
    /// Every Contact value (split on commas), raw; `*` included as is.
    pub contacts: Vec<ContactValue>,
    pub expires: Option<u32>,
    /// The `Authorization` header's value, if any.
    pub authorization: Option<String>,
    /// Other headers `(name, value)`, for IVR headers.
    pub headers: Vec<(String, String)>,
    pub has_body: bool,
    /// The message body (an INVITE's SDP offer).
    pub body: Vec<u8>,
    /// Max-Forwards, when present (validated as a number).
    pub max_forwards: Option<u32>,
    /// Every option tag of every `Require` header.
    pub require: Vec<String>,
    /// Every option tag of every `Supported` header.
    pub supported: Vec<String>,
    pub user_agent: Option<String>,
    /// How long the request waited between the transport and the daemon
    /// loop: the loop's lag, which the front door's admission reads.
    pub queued_for: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactValue {
    Star,
    Uri { uri: String, expires: Option<u32> },
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What the adapter reports to the shell.
#[derive(Debug)]
pub enum Inbound {
    Request(Box<Request>),
    Leg(SipEvent),
    /// A 2xx on an outgoing leg, with its SDP answer (empty if none): the
    /// shell sets up media, then hands `SipEvent::Answered` to the core.
    Answered {
        leg: LegId,
        sdp: Vec<u8>,
    },
    /// A re-INVITE or UPDATE on an established leg (hold, resume, a new
    /// address, an RFC 4028 refresh): the shell answers it with
    /// [`Reinvite::answer`] or [`Reinvite::reject`]. `sdp` is empty for an
    /// UPDATE without an offer; `headers` are the request's header fields
    /// the session timer reads (`Session-Expires`, `Min-SE`, `Supported`,
    /// `Require`, ...).
    Reinvite {
        leg: LegId,
        /// An UPDATE (answered without SDP when it carried none), not a
        /// re-INVITE (acd offers in its 200 when it carried none).
        update: bool,
        sdp: Vec<u8>,
        headers: Vec<(String, String)>,
        reply: Reinvite,
    },
    /// The final answer to acd's own session refresh (an UPDATE): `None`
    /// for none at all; the response's header fields.
    RefreshDone {
        leg: LegId,
        status: Option<u16>,
        headers: Vec<(String, String)>,
    },
    /// An OPTIONS keep-alive finished: `reachable` when any response came.
    KeepAlive {
        user: String,
        contact: String,
        reachable: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("cannot listen on {addr} ({transport}): {reason}")]
    Listen { addr: SocketAddr, transport: &'static str, reason: String },
    #[error("SIP stack: {0}")]
    Stack(String),
    #[error("cannot start the SIP thread: {0}")]
    Thread(String),
}

enum LegHandle {
    /// A caller's INVITE not answered yet (no dialog created).
    PendingCaller(Box<Transaction>),
    Caller(InviteDialog),
    /// An outgoing INVITE and the dialog ids it has had (early, confirmed).
    Out {
        dialog: InviteDialog,
        answered: bool,
    },
}

/// Counts for tests and metrics: nothing may outlive its call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StackCounts {
    pub legs: usize,
    pub dialogs: usize,
    pub pending_requests: usize,
    pub running_transactions: usize,
    /// Finished transactions kept for retransmissions (32 s), and answered
    /// INVITEs whose ACK route is still registered.
    pub finished_transactions: usize,
    pub waiting_acks: usize,
}

pub struct SipStack {
    endpoint_inner: rsipstack::transaction::endpoint::EndpointInnerRef,
    dialog_layer: Arc<DialogLayer>,
    state_tx: DialogStateSender,
    cancel: CancellationToken,
    /// Where our own Contact points (first listener).
    contact: rsipstack::sip::Uri,
    local_host: String,
    pending: HashMap<TxId, Transaction>,
    next_tx: u64,
    legs: HashMap<LegId, LegHandle>,
    dialogs: HashMap<DialogId, LegId>,
    /// The reverse of `dialogs` (an outgoing leg has its early and its
    /// confirmed id), so ending a leg does not scan every dialog.
    leg_dialogs: HashMap<LegId, Vec<DialogId>>,
    /// Caller legs answered with 200 and not ACKed yet, oldest first, with
    /// the address the INVITE came from (a per-source budget and Timer H).
    unacked: std::collections::VecDeque<(std::time::Instant, LegId, IpAddr)>,
    unacked_per_source: HashMap<IpAddr, u32>,
    /// Callers in an early dialog (early.rs), with their INVITE's source.
    early_sources: HashMap<LegId, early::Early>,
    /// Offers forked to several contacts of one agent (fork.rs).
    forks: HashMap<LegId, fork::Fork>,
    /// Final reports the adapter makes itself, synchronously (a dialog it
    /// could not create, an INVITE it could not send). They never go
    /// through the bounded inbound queue: a full queue would drop a leg's
    /// only final report and the core would keep that leg forever. The
    /// shell drains them with [`SipStack::poll_report`] after each turn.
    reports: std::collections::VecDeque<Raw>,
    raw_tx: mpsc::Sender<Raw>,
    /// REFERs the core has not answered yet, by leg (one at a time: a newer
    /// one replaces, and so refuses, the older).
    refers: HashMap<LegId, rsipstack::dialog::dialog::TransactionHandle>,
    /// Each leg's transfer task, which sends the steps of its REFERs' answers in order.
    refer_tasks: HashMap<LegId, mpsc::Sender<(ReferStep, Option<rsipstack::dialog::dialog::TransactionHandle>)>>,
}

/// The Warning of the 501 to a REFER with Replaces (attended transfer).
pub const REPLACES_UNSUPPORTED: &str =
    "399 acd \"attended transfer (Refer-To with Replaces) is not supported; use a blind transfer\"";

/// A step of acd's answer to a REFER ([`SipStack::refer_step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferStep {
    /// 202 Accepted, NOTIFY `SIP/2.0 100 Trying` (subscription active).
    Trying,
    /// (202 and 100 Trying if not sent yet) NOTIFY `SIP/2.0 200 OK`
    /// (terminated), then BYE: the leg ends.
    Done,
    /// NOTIFY `SIP/2.0 <status>` (terminated): the transfer failed after
    /// the 202; the leg goes on.
    Failed(u16),
    /// A final `status` to the REFER itself; the leg goes on.
    Refused(u16),
    /// A final `status` with a Warning saying why (an attended transfer
    /// acd cannot make); the leg goes on.
    Declined(u16, &'static str),
}

type ReferHandle = rsipstack::dialog::dialog::TransactionHandle;

/// Carries out one leg's transfer steps, each after the one before ended.
async fn refer_task(
    d: InviteDialog,
    layer: Arc<DialogLayer>,
    mut rx: mpsc::Receiver<(ReferStep, Option<ReferHandle>)>,
) {
    let notify = |frag: String, state: &'static str| {
        let d = d.clone();
        async move {
            let headers = vec![
                Header::Event("refer".into()),
                Header::SubscriptionState(state.into()),
                Header::ContentType("message/sipfrag;version=2.0".into()),
            ];
            if let Err(e) = d.notify(Some(headers), Some(format!("{frag}\r\n").into_bytes())).await {
                debug!(error = %e, "NOTIFY of a transfer");
            }
        }
    };
    let mut trying_sent = false;
    while let Some((step, handle)) = rx.recv().await {
        match step {
            ReferStep::Refused(status) => {
                if let Some(h) = handle {
                    // 501 is only ever an attended transfer: say so.
                    let why = (status == 501).then(|| vec![Header::Warning(REPLACES_UNSUPPORTED.into())]);
                    h.respond(StatusCode::from(status), why, None).await.ok();
                }
            }
            ReferStep::Declined(status, why) => {
                if let Some(h) = handle {
                    h.respond(StatusCode::from(status), Some(vec![attended::declined_warning(why)]), None).await.ok();
                }
            }
            ReferStep::Trying | ReferStep::Done if !trying_sent || handle.is_some() => {
                if let Some(h) = handle {
                    h.reply(StatusCode::Accepted).await.ok();
                    // `reply` only hands the 202 to the REFER's transaction
                    // task; without a pause the first NOTIFY left before it
                    // (allowed by RFC 6665 §4.1.2.4, but phones read it more
                    // easily in order).
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                trying_sent = true;
                notify("SIP/2.0 100 Trying".into(), "active;expires=60").await;
                if step == ReferStep::Done {
                    notify("SIP/2.0 200 OK".into(), "terminated;reason=noresource").await;
                }
            }
            ReferStep::Trying => {}
            ReferStep::Done => notify("SIP/2.0 200 OK".into(), "terminated;reason=noresource").await,
            ReferStep::Failed(status) => {
                let reason = StatusCode::from(status).text().to_string();
                notify(format!("SIP/2.0 {status} {reason}"), "terminated;reason=noresource").await;
                trying_sent = false;
            }
        }
        if step == ReferStep::Done {
            // The phone may hang up itself on the final NOTIFY: then the
            // dialog is over and this BYE is not sent.
            if let Err(e) = d.bye().await {
                debug!(error = %e, "BYE after a transfer");
            }
            layer.remove_dialog(&d.id());
            break;
        }
    }
}

/// Overload guard: the adapter's queue to the core. A full queue means the
/// core is behind; new requests are answered 503 at once.
const INBOUND_CAPACITY: usize = 4096;

/// RFC 3261 Timer H (64·T1): how long a 200 to an INVITE waits for its ACK.
const TIMER_H: Duration = Duration::from_secs(32);

/// The SIP UDP socket, built here rather than by rsipstack's
/// `create_connection`, which leaves the kernel's default receive buffer
/// (212 KB): a burst of a few thousand INVITEs a second overflowed it and the
/// datagrams were dropped before the stack saw them. The kernel caps the
/// request at `net.core.rmem_max`.
fn udp_socket(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = socket.set_recv_buffer_size(UDP_RECV_BUFFER) {
        warn!(error = %e, "cannot enlarge the SIP receive buffer");
    }
    socket.set_send_buffer_size(UDP_RECV_BUFFER / 2).ok();
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

const UDP_RECV_BUFFER: usize = 8 << 20;

/// The host part of every Call-ID acd makes (see `SipStack::start`).
pub const CALL_ID_SUFFIX: &str = "acd.invalid";

/// The listeners bound and the endpoint built, not yet serving. Must run on
/// the runtime that will serve it: tokio sockets belong to the reactor they
/// were made on.
async fn build_endpoint(
    settings: &SipSettings,
    cancel: CancellationToken,
    wait: &super::socket::SocketWait,
) -> Result<rsipstack::transaction::Endpoint, SipError> {
    let transport_layer = TransportLayer::new(cancel.clone());
    for addr in &settings.listen_udp {
        let listen_err = |e: std::io::Error| SipError::Listen { addr: *addr, transport: "udp", reason: e.to_string() };
        let socket = udp_socket(*addr).map_err(listen_err)?;
        let conn = UdpConnection::from_socket(
            Arc::new(super::socket::TimedUdpSocket::new(socket, wait.clone())),
            None,
            Some(cancel.child_token()),
        )
        .await
        .map_err(|e| SipError::Listen { addr: *addr, transport: "udp", reason: e.to_string() })?;
        transport_layer.add_transport(conn.into());
    }
    for addr in &settings.listen_tcp {
        // Binds and listens here (vendored patch 4), so a port in use is
        // reported before start-up ends and a client connecting just
        // after it is not refused.
        let conn = TcpListenerConnection::new(*addr, None).await.map_err(|e| SipError::Listen {
            addr: *addr,
            transport: "tcp",
            reason: e.to_string(),
        })?;
        transport_layer.add_transport(conn.into());
    }
    let user_agent = format!("acd/{}", env!("CARGO_PKG_VERSION"));
    Ok(EndpointBuilder::new()
        .with_cancel_token(cancel)
        .with_transport_layer(transport_layer)
        .with_user_agent(&user_agent)
        // Call-IDs acd makes end in `@acd.invalid`, not rsipstack's
        // `@restsend.com`: the UUID makes them unique, and a reserved
        // name (RFC 6761) says who made them without putting a listen
        // address (often 0.0.0.0 or a private one) on every trunk.
        .with_option(rsipstack::transaction::endpoint::EndpointOption {
            callid_suffix: Some(CALL_ID_SUFFIX.into()),
            // acd patch 6: an agent's answered INVITE ends with its ACK; the
            // ACK is kept (compactly) to answer a retransmitted 2xx. Holding
            // the transaction and its dialog 32 s cost ~10 KB per call.
            drain_accepted_invites: false,
            ..Default::default()
        })
        .with_allows(vec![
            RMethod::Invite,
            RMethod::Ack,
            RMethod::Cancel,
            RMethod::Bye,
            RMethod::Options,
            RMethod::Register,
        ])
        .build())
}

/// `sip.io_thread`: the endpoint is built and served on a thread of its own
/// (`acd-sip`, a current-thread runtime), so socket reads, parsing,
/// transaction matching and retransmission timers use the second core.
/// What comes back is what the adapter needs on the daemon's runtime: the
/// endpoint's shared state (transactions are then driven by the adapter's
/// tasks there) and the queue of new server transactions. The thread ends
/// when `cancel` stops the endpoint.
async fn launch_on_io_thread(
    settings: SipSettings,
    cancel: CancellationToken,
    wait: super::socket::SocketWait,
) -> Result<(rsipstack::transaction::endpoint::EndpointInnerRef, rsipstack::transaction::TransactionReceiver), SipError>
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("acd-sip".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(SipError::Thread(e.to_string())));
                    return;
                }
            };
            rt.block_on(async move {
                let endpoint = match build_endpoint(&settings, cancel, &wait).await {
                    Ok(endpoint) => endpoint,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                match endpoint.incoming_transactions() {
                    Ok(incoming) => {
                        if tx.send(Ok((endpoint.inner.clone(), incoming))).is_ok() {
                            endpoint.serve().await;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(SipError::Stack(e.to_string())));
                    }
                }
            });
        })
        .map_err(|e| SipError::Thread(e.to_string()))?;
    rx.await.map_err(|_| SipError::Thread("it ended during start-up".into()))?
}

impl SipStack {
    /// Binds the listeners and starts the endpoint. Returns the stack and the
    /// receiver of everything that arrives.
    pub async fn start(settings: &SipSettings) -> Result<(SipStack, mpsc::Receiver<Raw>), SipError> {
        let cancel = CancellationToken::new();
        let wait = super::socket::SocketWait::default();
        let (endpoint_inner, incoming) = if settings.io_thread {
            launch_on_io_thread(settings.clone(), cancel.clone(), wait.clone()).await?
        } else {
            let endpoint = build_endpoint(settings, cancel.clone(), &wait).await?;
            let incoming = endpoint.incoming_transactions().map_err(|e| SipError::Stack(e.to_string()))?;
            let inner = endpoint.inner.clone();
            tokio::spawn(async move {
                endpoint.serve().await;
            });
            (inner, incoming)
        };
        let first =
            settings.listen_udp.first().or(settings.listen_tcp.first()).copied().expect("validated: a listener");
        let contact: rsipstack::sip::Uri = rsipstack::sip::Uri::try_from(format!("sip:acd@{first}").as_str())
            .map_err(|e| SipError::Stack(e.to_string()))?;
        let dialog_layer = Arc::new(DialogLayer::new(endpoint_inner.clone()));
        let (state_tx, state_rx) = dialog_layer.new_dialog_state_channel();
        let (raw_tx, raw_rx) = mpsc::channel::<Raw>(INBOUND_CAPACITY);
        spawn_incoming(incoming, raw_tx.clone(), settings.retry_after_transient_secs, wait);
        spawn_states(state_rx, raw_tx.clone());

        let stack = SipStack {
            endpoint_inner,
            dialog_layer,
            state_tx,
            cancel,
            contact,
            local_host: first.to_string(),
            pending: HashMap::new(),
            next_tx: 1,
            legs: HashMap::new(),
            dialogs: HashMap::new(),
            leg_dialogs: HashMap::new(),
            unacked: Default::default(),
            unacked_per_source: HashMap::new(),
            early_sources: HashMap::new(),
            forks: HashMap::new(),
            reports: Default::default(),
            raw_tx,
            refers: HashMap::new(),
            refer_tasks: HashMap::new(),
        };
        Ok((stack, raw_rx))
    }

    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// The next report the adapter made synchronously (see `reports`).
    #[must_use]
    pub fn poll_report(&mut self) -> Option<Raw> {
        self.reports.pop_front()
    }

    pub fn counts(&self) -> StackCounts {
        let stats = self.endpoint_inner.get_stats();
        StackCounts {
            // A leg still linked to a dialog counts, so a leak there shows too.
            legs: self.legs.len().max(self.leg_dialogs.len()).max(self.forks.len()),
            dialogs: self.dialog_layer.len(),
            pending_requests: self.pending.len(),
            running_transactions: stats.running_transactions,
            finished_transactions: stats.finished_transactions,
            waiting_acks: stats.waiting_ack,
        }
    }

    /// Turns one raw item into what the shell handles, or handles it here
    /// (in-dialog requests, bad requests). Returns `None` when nothing is
    /// left for the shell.
    pub fn absorb(&mut self, raw: Raw) -> Option<Inbound> {
        match raw.0 {
            RawInbound::Tx(tx, received) => self.incoming(*tx, received),
            RawInbound::State(state) => self.dialog_state(*state),
            RawInbound::InviteDone { leg, status, body } => self.invite_done(leg, status, body),
            RawInbound::BranchDone { leg, branch, status, body } => self.branch_done(leg, branch, status, body),
            RawInbound::KeepAlive { user, contact, reachable } => Some(Inbound::KeepAlive { user, contact, reachable }),
            RawInbound::CallerGone { leg } => Some(Inbound::Leg(SipEvent::CallerHungUp { leg })),
            RawInbound::RefreshDone { leg, status, headers } => Some(Inbound::RefreshDone { leg, status, headers }),
        }
    }

    fn incoming(&mut self, mut tx: Transaction, received: std::time::Instant) -> Option<Inbound> {
        let req = &tx.original;
        // In-dialog: a To tag. Match the dialog and let rsipstack handle it.
        let in_dialog = req.to_header().ok().and_then(|t| t.tag().ok().flatten()).is_some();
        if in_dialog && req.method != RMethod::Ack {
            match self.dialog_layer.match_dialog(&tx) {
                Some(Dialog::Invite(mut d)) => {
                    tokio::spawn(async move {
                        if let Err(e) = d.handle(&mut tx).await {
                            debug!(error = %e, "in-dialog request");
                        }
                    });
                }
                Some(_) | None => reply_spawn(tx, 481, vec![], None),
            }
            return None;
        }
        if req.method == RMethod::Ack {
            return None;
        }
        let summary = match summarize(&tx) {
            Ok(s) => s,
            Err(why) => {
                debug!(%why, "400 Bad Request");
                reply_spawn(tx, 400, vec![Header::Warning(format!("399 acd \"{why}\"").into())], None);
                return None;
            }
        };
        let id = TxId(self.next_tx);
        self.next_tx += 1;
        self.pending.insert(id, tx);
        Some(Inbound::Request(Box::new(Request { tx: id, queued_for: received.elapsed(), ..summary })))
    }

    /// Answers a pending request with a final status and extra headers.
    pub fn reply(&mut self, tx: TxId, status: u16, headers: Vec<(String, String)>) {
        let Some(t) = self.pending.remove(&tx) else { return };
        let headers = headers.into_iter().map(|(n, v)| to_header(&n, v)).collect();
        reply_spawn(t, status, headers, None);
    }

    /// Answers a pending request with 200 and a body (e.g. OPTIONS).
    pub fn reply_ok_with(&mut self, tx: TxId, headers: Vec<(String, String)>, body: Option<(String, Vec<u8>)>) {
        let Some(t) = self.pending.remove(&tx) else { return };
        let mut hs: Vec<Header> = headers.into_iter().map(|(n, v)| to_header(&n, v)).collect();
        let body = body.map(|(ct, b)| {
            hs.push(Header::ContentType(ct.into()));
            b
        });
        reply_spawn(t, 200, hs, body);
    }

    /// Ties a pending INVITE to a caller leg. The core answers it in the
    /// same turn ([`SipStack::answer_caller`] or [`SipStack::reject_caller`]).
    pub fn bind_caller(&mut self, tx: TxId, leg: LegId) {
        if let Some(t) = self.pending.remove(&tx) {
            self.legs.insert(leg, LegHandle::PendingCaller(Box::new(t)));
        }
    }

    /// A pending caller's INVITE transaction and its dialog, created now,
    /// with the dialog's To-tag put on the request (rsipstack trap: a 487
    /// after a CANCEL would otherwise carry a fresh To-tag unlike the
    /// dialog's). `None` when the leg is not pending, or when the dialog
    /// cannot be made (then the caller got 500 and is reported gone).
    pub(super) fn caller_dialog(&mut self, leg: LegId, what: &str) -> Option<(Transaction, InviteDialog)> {
        let Some(LegHandle::PendingCaller(tx)) = self.legs.remove(&leg) else {
            warn!(%leg, "{what} for a caller leg that is not pending");
            return None;
        };
        let mut tx = *tx;
        let dialog = match self.dialog_layer.get_or_create_server_invite(
            &tx,
            self.state_tx.clone(),
            None,
            Some(self.contact.clone()),
        ) {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "cannot create the caller's dialog");
                reply_spawn(tx, 500, vec![], None);
                self.reports.push_back(Raw(RawInbound::CallerGone { leg }));
                return None;
            }
        };
        let tag = dialog.id().local_tag.clone();
        if let Ok(to) = tx.original.to_header() {
            if let Ok(typed) = to.typed() {
                tx.original.headers.unique_push(typed.with_tag(tag.into()).into());
            }
        }
        Some((tx, dialog))
    }

    /// 200 OK with `sdp` and `extra` header fields (the session timer's) to
    /// the caller; the dialog is created here.
    pub fn answer_caller(&mut self, leg: LegId, sdp: Vec<u8>, extra: Vec<(String, String)>) {
        if self.answer_early(leg, &sdp, &extra) {
            return;
        }
        let Some((mut tx, dialog)) = self.caller_dialog(leg, "answer") else { return };
        let id = dialog.id();
        let mut server = dialog.clone();
        let mut headers = vec![Header::ContentType("application/sdp".into())];
        headers.extend(extra.into_iter().map(|(n, v)| to_header(&n, v)));
        if let Err(e) = server.accept(Some(headers), Some(sdp)) {
            warn!(error = %e, "accept failed");
        }
        if let Some(ip) = source_addr(&tx).map(|a| a.ip()) {
            self.unacked.push_back((std::time::Instant::now(), leg, ip));
            *self.unacked_per_source.entry(ip).or_default() += 1;
        }
        self.link(id, leg);
        self.legs.insert(leg, LegHandle::Caller(dialog));
        tokio::spawn(async move {
            if let Err(e) = server.handle(&mut tx).await {
                debug!(error = %e, "caller INVITE transaction");
            }
        });
    }

    /// A final error to a caller not answered yet.
    pub fn reject_caller(&mut self, leg: LegId, status: u16, retry_after: Option<u32>) {
        if self.reject_early(leg, status, retry_after) {
            return;
        }
        let Some(LegHandle::PendingCaller(tx)) = self.legs.remove(&leg) else {
            warn!(%leg, "reject for a caller leg that is not pending");
            return;
        };
        let tx = *tx;
        let headers = retry_after.map(|s| vec![Header::RetryAfter(s.to_string().into())]).unwrap_or_default();
        reply_spawn(tx, status, headers, None);
    }

    /// A new INVITE to `target` (a registered contact or an overflow URI),
    /// sent to `destination` when given (the address the phone registered
    /// from, so NATed phones are reached).
    pub fn invite(
        &mut self,
        leg: LegId,
        target: &str,
        destination: Option<(SocketAddr, Transport)>,
        caller: &str,
        sdp: Vec<u8>,
    ) {
        let Some(opt) = self.invite_option(target, destination, caller, sdp) else {
            self.reports.push_back(Raw(RawInbound::InviteDone { leg, status: None, body: Vec::new() }));
            return;
        };
        match self.dialog_layer.do_invite_async(opt, self.state_tx.clone()) {
            Ok((dialog, handle)) => {
                self.link(dialog.id(), leg);
                self.legs.insert(leg, LegHandle::Out { dialog, answered: false });
                let raw_tx = self.raw_tx.clone();
                tokio::spawn(async move {
                    let (status, body) = match handle.await {
                        Ok(Ok((_, Some(resp)))) => (Some(resp.status_code.code()), resp.body),
                        _ => (None, Vec::new()),
                    };
                    raw_tx.send(Raw(RawInbound::InviteDone { leg, status, body })).await.ok();
                });
            }
            Err(e) => {
                warn!(%target, error = %e, "cannot send INVITE");
                self.reports.push_back(Raw(RawInbound::InviteDone { leg, status: None, body: Vec::new() }));
            }
        }
    }

    pub fn cancel(&mut self, leg: LegId) {
        if self.cancel_fork(leg) {
            return;
        }
        if let Some(LegHandle::Out { dialog, answered: false }) = self.legs.get(&leg) {
            let d = dialog.clone();
            tokio::spawn(async move {
                if let Err(e) = d.cancel().await {
                    debug!(error = %e, "CANCEL");
                }
            });
        }
    }

    /// One step of the answer to an agent's REFER on `leg` (RFC 3515),
    /// carried out in order by the leg's transfer task: the 202 and the
    /// implicit subscription's NOTIFYs (`message/sipfrag`) in its dialog.
    pub fn refer_step(&mut self, leg: LegId, step: ReferStep) {
        let handle = self.refers.remove(&leg);
        let dialog = match self.legs.get(&leg) {
            Some(LegHandle::Caller(d) | LegHandle::Out { dialog: d, .. }) => Some(d.clone()),
            _ => None,
        };
        if let ReferStep::Done = step {
            // The leg ends with the transfer, as by `bye` (the task BYEs).
            self.legs.remove(&leg);
            self.unlink(leg);
            self.acked(leg);
        }
        let Some(dialog) = dialog else {
            if let Some(h) = handle {
                tokio::spawn(async move { h.reply(StatusCode::CallTransactionDoesNotExist).await.ok() });
            }
            return;
        };
        let tx = match self.refer_tasks.get(&leg) {
            Some(tx) if !tx.is_closed() => tx.clone(),
            _ => {
                let (tx, rx) = mpsc::channel(8);
                tokio::spawn(refer_task(dialog, self.dialog_layer.clone(), rx));
                self.refer_tasks.insert(leg, tx.clone());
                tx
            }
        };
        if matches!(step, ReferStep::Done) {
            self.refer_tasks.remove(&leg);
        }
        if tx.try_send((step, handle)).is_err() {
            warn!(%leg, "transfer steps queue full: step dropped");
        }
    }

    /// BYE an answered leg (caller or outgoing); the leg is forgotten here
    /// and its dialog removed from the layer once the BYE is done.
    pub fn bye(&mut self, leg: LegId) {
        self.refers.remove(&leg);
        self.refer_tasks.remove(&leg);
        match self.legs.remove(&leg) {
            Some(LegHandle::Caller(d)) | Some(LegHandle::Out { dialog: d, .. }) => {
                let id = d.id();
                self.unlink(leg);
                self.acked(leg);
                let layer = self.dialog_layer.clone();
                tokio::spawn(async move {
                    if let Err(e) = d.bye().await {
                        debug!(error = %e, "BYE");
                    }
                    layer.remove_dialog(&id);
                    layer.remove_dialog(&d.id());
                });
            }
            Some(LegHandle::PendingCaller(tx)) => reply_spawn(*tx, 480, vec![], None),
            None => {}
        }
    }

    /// acd's RFC 4028 refresh of a caller's dialog: an UPDATE with
    /// `headers`; the outcome comes back as [`Inbound::RefreshDone`].
    pub fn refresh(&mut self, leg: LegId, headers: Vec<(String, String)>) {
        let Some(LegHandle::Caller(d)) = self.legs.get(&leg) else { return };
        let d = d.clone();
        let raw_tx = self.raw_tx.clone();
        let headers = headers.into_iter().map(|(n, v)| to_header(&n, v)).collect();
        tokio::spawn(async move {
            let (status, headers) = match d.update(Some(headers), None).await {
                Ok(Some(resp)) => (Some(resp.status_code.code()), header_pairs(&resp.headers)),
                _ => (None, Vec::new()),
            };
            raw_tx.send(Raw(RawInbound::RefreshDone { leg, status, headers })).await.ok();
        });
    }

    /// Sends OPTIONS to a registered contact; the answer (or silence for
    /// `timeout`) comes back as [`Inbound::KeepAlive`].
    pub fn keep_alive(&self, user: String, contact: String, destination: (SocketAddr, Transport), timeout: Duration) {
        let Ok(uri) = rsipstack::sip::Uri::try_from(contact.as_str()) else { return };
        let endpoint = self.endpoint_inner.clone();
        let raw_tx = self.raw_tx.clone();
        let from_uri = self.contact.clone();
        let dest = sip_addr(destination.0, destination.1);
        tokio::spawn(async move {
            let reachable = async {
                let via = endpoint.get_via(None, None).ok()?;
                let from = rsipstack::sip::typed::From {
                    display_name: None,
                    uri: from_uri.clone(),
                    params: vec![rsipstack::sip::Param::Tag(rsipstack::transaction::make_tag())],
                };
                let to = rsipstack::sip::typed::To { display_name: None, uri: uri.clone(), params: vec![] };
                let mut req = endpoint.make_request(RMethod::Options, uri, via, from, to, 1, None);
                req.headers.unique_push(Header::ContentLength(0u32.into()));
                let key = TransactionKey::from_request(&req, TransactionRole::Client).ok()?;
                let mut tx = Transaction::new_client(key, req, endpoint.clone(), None);
                tx.destination = Some(dest);
                tx.send().await.ok()?;
                while let Some(msg) = tx.receive().await {
                    if let rsipstack::sip::SipMessage::Response(r) = msg {
                        if r.status_code.kind() != rsipstack::sip::StatusCodeKind::Provisional {
                            return Some(());
                        }
                    }
                }
                None
            };
            let reachable = tokio::time::timeout(timeout, reachable).await.ok().flatten().is_some();
            raw_tx.send(Raw(RawInbound::KeepAlive { user, contact, reachable })).await.ok();
        });
    }

    /// Answers a feature-code call: 200 OK, then BYE shortly after.
    pub fn answer_and_hang_up(&mut self, tx: TxId, sdp: Vec<u8>, after: Duration) {
        let Some(mut t) = self.pending.remove(&tx) else { return };
        let dialog = match self.dialog_layer.get_or_create_server_invite(
            &t,
            self.state_tx.clone(),
            None,
            Some(self.contact.clone()),
        ) {
            Ok(d) => d,
            Err(_) => return reply_spawn(t, 500, vec![], None),
        };
        let mut server = dialog.clone();
        server.accept(Some(vec![Header::ContentType("application/sdp".into())]), Some(sdp)).ok();
        let layer = self.dialog_layer.clone();
        tokio::spawn(async move {
            let id = dialog.id();
            let handled = tokio::spawn(async move {
                server.handle(&mut t).await.ok();
            });
            tokio::time::sleep(after).await;
            dialog.bye().await.ok();
            handled.await.ok();
            layer.remove_dialog(&id);
        });
    }

    /// Caller legs from `ip` answered and not ACKed yet.
    pub fn unacked_from(&self, ip: IpAddr) -> u32 {
        self.unacked_per_source.get(&ip).copied().unwrap_or(0)
    }

    /// When the oldest un-ACKed answer reaches Timer H (64·T1 = 32 s).
    pub fn next_ack_deadline(&self) -> Option<std::time::Instant> {
        self.unacked.front().map(|(at, ..)| *at + TIMER_H)
    }

    /// Caller legs whose 200 has gone unACKed for Timer H at `now`: RFC 3261
    /// §13.3.1.4 says end the session with BYE, and their RTP ports go back
    /// to the pool. The shell BYEs them and tells the core.
    pub fn expire_unacked(&mut self, now: std::time::Instant) -> Vec<LegId> {
        let mut out = Vec::new();
        while let Some(&(at, leg, _)) = self.unacked.front() {
            if now < at + TIMER_H {
                break;
            }
            self.acked(leg);
            out.push(leg);
        }
        out
    }

    /// The caller leg is no longer waiting for its ACK (it came, or the leg
    /// ended).
    fn acked(&mut self, leg: LegId) {
        let Some(pos) = self.unacked.iter().position(|(_, l, _)| *l == leg) else { return };
        let (_, _, ip) = self.unacked.remove(pos).expect("position is in range");
        if let Some(n) = self.unacked_per_source.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.unacked_per_source.remove(&ip);
            }
        }
    }

    fn link(&mut self, id: DialogId, leg: LegId) {
        let ids = self.leg_dialogs.entry(leg).or_default();
        if !ids.contains(&id) {
            ids.push(id.clone());
        }
        self.dialogs.insert(id, leg);
    }

    fn unlink(&mut self, leg: LegId) {
        for id in self.leg_dialogs.remove(&leg).unwrap_or_default() {
            if self.dialogs.get(&id) == Some(&leg) {
                self.dialogs.remove(&id);
            }
        }
    }

    fn dialog_state(&mut self, state: DialogState) -> Option<Inbound> {
        match state {
            DialogState::Early(id, resp) => {
                let leg = *self.dialogs.get(&id)?;
                if matches!(self.legs.get(&leg), Some(LegHandle::Caller(_))) {
                    return None; // acd's own 180/183 to an early caller (early.rs)
                }
                Some(Inbound::Leg(SipEvent::Progress { leg, status: resp.status_code.code() }))
            }
            DialogState::Confirmed(id, resp) => {
                let leg = *self.dialogs.get(&id)?;
                match self.legs.get_mut(&leg) {
                    Some(LegHandle::Out { answered, .. }) if !*answered => {
                        *answered = true;
                        Some(Inbound::Answered { leg, sdp: resp.body.clone() })
                    }
                    Some(LegHandle::Caller(_)) => {
                        self.acked(leg);
                        None
                    }
                    _ => None,
                }
            }
            DialogState::Updated(id, req, handle) => {
                let leg = *self.dialogs.get(&id)?;
                if !matches!(req.method, RMethod::Invite | RMethod::Update) {
                    return None; // other in-dialog updates: rsipstack's answer
                }
                let headers = header_pairs(&req.headers);
                let update = req.method == RMethod::Update;
                Some(Inbound::Reinvite { leg, update, sdp: req.body.clone(), headers, reply: Reinvite(handle) })
            }
            DialogState::Refer(id, req, handle) => {
                let leg = *self.dialogs.get(&id)?;
                let refer_to = req.headers.iter().find_map(|h| match h {
                    Header::ReferTo(v) => Some(v.value().to_string()),
                    _ => None,
                });
                let Some(refer_to) = refer_to else {
                    tokio::spawn(async move { handle.reply(StatusCode::BadRequest).await.ok() });
                    return None;
                };
                self.refers.insert(leg, handle);
                if let Some(consult) = self.replaced_leg(&refer_to) {
                    return Some(Inbound::Leg(SipEvent::ReferReplaces { leg, consult }));
                }
                Some(Inbound::Leg(SipEvent::Refer { leg, refer_to }))
            }
            DialogState::Terminated(id, reason) => {
                let leg = self.dialogs.remove(&id);
                if let Some(l) = leg {
                    if let Some(ids) = self.leg_dialogs.get_mut(&l) {
                        ids.retain(|d| *d != id);
                        if ids.is_empty() {
                            self.leg_dialogs.remove(&l);
                        }
                    }
                }
                // Every terminated dialog leaves the layer (rsipstack trap).
                self.dialog_layer.remove_dialog(&id);
                let leg = leg?;
                self.refers.remove(&leg);
                self.refer_tasks.remove(&leg);
                match self.legs.get(&leg) {
                    Some(LegHandle::Caller(_)) => {
                        self.legs.remove(&leg);
                        self.unlink(leg);
                        self.acked(leg);
                        self.early_sources.remove(&leg);
                        Some(Inbound::Leg(match reason {
                            TerminatedReason::UacCancel => SipEvent::CallerCancelled { leg },
                            _ => SipEvent::CallerHungUp { leg },
                        }))
                    }
                    Some(LegHandle::Out { answered: true, .. }) => {
                        self.legs.remove(&leg);
                        self.unlink(leg);
                        Some(Inbound::Leg(SipEvent::RemoteBye { leg }))
                    }
                    // Unanswered outgoing legs end through `invite_done`.
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn invite_done(&mut self, leg: LegId, status: Option<u16>, body: Vec<u8>) -> Option<Inbound> {
        let handle = self.legs.get_mut(&leg)?;
        let LegHandle::Out { dialog, answered } = handle else { return None };
        let id = dialog.id();
        match status {
            Some(code) if (200..300).contains(&code) => {
                if matches!(dialog.state(), DialogState::Terminated(..)) {
                    // A 2xx after our CANCEL: rsipstack ACKed and BYEd it.
                    self.legs.remove(&leg);
                    self.unlink(leg);
                    self.dialog_layer.remove_dialog(&id);
                    return Some(Inbound::Leg(SipEvent::Failed { leg, status: Some(487) }));
                }
                let first = !*answered;
                *answered = true;
                self.link(id, leg);
                first.then_some(Inbound::Answered { leg, sdp: body })
            }
            other => {
                self.legs.remove(&leg);
                self.unlink(leg);
                self.dialog_layer.remove_dialog(&id);
                Some(Inbound::Leg(SipEvent::Failed { leg, status: other }))
            }
        }
    }
}

fn sip_addr(addr: SocketAddr, t: Transport) -> SipAddr {
    SipAddr {
        r#type: Some(match t {
            Transport::Udp => rsipstack::sip::Transport::Udp,
            Transport::Tcp => rsipstack::sip::Transport::Tcp,
        }),
        addr: addr.into(),
    }
}

/// The pending answer to a re-INVITE. Dropped unanswered, rsipstack sends 501.
#[derive(Debug)]
pub struct Reinvite(rsipstack::dialog::dialog::TransactionHandle);

impl Reinvite {
    /// 200 OK with acd's SDP for the leg (none when `sdp` is empty: an
    /// UPDATE that only refreshed the session) and `extra` header fields.
    pub fn answer(self, sdp: Vec<u8>, extra: Vec<(String, String)>) {
        tokio::spawn(async move {
            let mut headers: Vec<Header> = extra.into_iter().map(|(n, v)| to_header(&n, v)).collect();
            let body = (!sdp.is_empty()).then(|| {
                headers.push(Header::ContentType("application/sdp".into()));
                sdp
            });
            self.0.respond(StatusCode::OK, Some(headers), body).await.ok();
        });
    }
    /// A final error (e.g. 488 for an offer acd cannot take, 422 for a
    /// session interval below acd's minimum) with `extra` header fields.
    pub fn reject(self, status: u16, extra: Vec<(String, String)>) {
        tokio::spawn(async move {
            let headers = extra.into_iter().map(|(n, v)| to_header(&n, v)).collect();
            self.0.respond(StatusCode::from(status), Some(headers), None).await.ok();
        });
    }
}

/// Header fields as `(name, value)` pairs: the ones acd's session timer and
/// IVR read (extension headers, `Supported`, `Require`).
fn header_pairs(headers: &rsipstack::sip::Headers) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|h| match h {
            Header::Other(n, v) => Some((n.clone(), v.clone())),
            Header::Supported(v) => Some(("Supported".into(), v.value().to_string())),
            Header::Require(v) => Some(("Require".into(), v.value().to_string())),
            Header::SessionExpires(v) => Some(("Session-Expires".into(), v.value().to_string())),
            Header::MinSE(v) => Some(("Min-SE".into(), v.value().to_string())),
            _ => None,
        })
        .collect()
}

/// Items from rsipstack's tasks to the shell's loop; opaque outside.
pub struct Raw(RawInbound);

enum RawInbound {
    /// A new server transaction and when it left the transport.
    Tx(Box<Transaction>, std::time::Instant),
    State(Box<DialogState>),
    InviteDone {
        leg: LegId,
        status: Option<u16>,
        body: Vec<u8>,
    },
    /// One branch of a forked INVITE ended (fork.rs).
    BranchDone {
        leg: LegId,
        branch: usize,
        status: Option<u16>,
        body: Vec<u8>,
    },
    KeepAlive {
        user: String,
        contact: String,
        reachable: bool,
    },
    RefreshDone {
        leg: LegId,
        status: Option<u16>,
        headers: Vec<(String, String)>,
    },
    CallerGone {
        leg: LegId,
    },
}

fn spawn_incoming(
    mut incoming: rsipstack::transaction::TransactionReceiver,
    raw_tx: mpsc::Sender<Raw>,
    retry_after: u32,
    wait: super::socket::SocketWait,
) {
    tokio::spawn(async move {
        while let Some(tx) = incoming.recv().await {
            // Received when the kernel queued it, as near as acd can tell:
            // now less the kernel wait of the datagram read last (this one,
            // or one read just after it). `queued_for` then covers the
            // socket buffer too, so the front door's `overload_queue_delay`
            // gate sees queueing where it starts.
            let now = std::time::Instant::now();
            let received = now.checked_sub(wait.latest()).unwrap_or(now);
            if let Err(mpsc::error::TrySendError::Full(Raw(RawInbound::Tx(tx, _)))) =
                raw_tx.try_send(Raw(RawInbound::Tx(Box::new(tx), received)))
            {
                // The core is behind: answer at once rather than queue more.
                if tx.original.method != RMethod::Ack {
                    let headers = vec![
                        Header::RetryAfter(retry_after.to_string().into()),
                        Header::Warning("399 acd \"overloaded\"".into()),
                    ];
                    reply_spawn(*tx, 503, headers, None);
                }
            }
        }
    });
}

fn spawn_states(mut rx: DialogStateReceiver, raw_tx: mpsc::Sender<Raw>) {
    tokio::spawn(async move {
        while let Some(state) = rx.recv().await {
            if raw_tx.send(Raw(RawInbound::State(Box::new(state)))).await.is_err() {
                break;
            }
        }
    });
}

/// Sends a final response on a server transaction and keeps the transaction
/// alive until it ends (absorbing retransmissions and the ACK of an INVITE
/// error response).
fn reply_spawn(mut tx: Transaction, status: u16, headers: Vec<Header>, body: Option<Vec<u8>>) {
    tokio::spawn(async move {
        if let Err(e) = tx.reply_with(StatusCode::from(status), headers, body).await {
            debug!(error = %e, status, "reply failed");
            return;
        }
        while tx.receive().await.is_some() {}
    });
}

fn to_header(name: &str, value: String) -> Header {
    match name.to_ascii_lowercase().as_str() {
        "www-authenticate" => Header::WwwAuthenticate(value.into()),
        "contact" => Header::Contact(value.into()),
        "min-expires" => Header::MinExpires(value.into()),
        "retry-after" => Header::RetryAfter(value.into()),
        "allow" => Header::Allow(value.into()),
        "warning" => Header::Warning(value.into()),
        "expires" => Header::Expires(value.into()),
        "date" => Header::Date(value.into()),
        "supported" => Header::Supported(value.into()),
        _ => Header::Other(name.to_string(), value),
    }
}

/// Reads what acd needs from a request; an error names what is wrong (→ 400).
/// Public only for the fuzz targets (`crate::fuzzing`).
#[doc(hidden)]
pub fn summarize(tx: &Transaction) -> Result<Request, String> {
    let req = &tx.original;
    let from = req.from_header().map_err(|e| format!("From: {e}"))?.typed().map_err(|e| format!("From: {e}"))?;
    let to = req.to_header().map_err(|e| format!("To: {e}"))?.typed().map_err(|e| format!("To: {e}"))?;
    let call_id = req.call_id_header().map_err(|e| format!("Call-ID: {e}"))?.value().to_string();
    if call_id.trim().is_empty() {
        return Err("empty Call-ID".into());
    }
    let cseq = req.cseq_header().map_err(|e| format!("CSeq: {e}"))?;
    let seq = cseq.seq().map_err(|e| format!("CSeq: {e}"))?;
    let cseq_method = cseq.method().map_err(|e| format!("CSeq: {e}"))?;
    if cseq_method != req.method {
        return Err(format!("CSeq method {cseq_method} does not match {}", req.method));
    }
    let max_forwards = match req.max_forwards_header() {
        Ok(mf) => Some(mf.value().trim().parse::<u32>().map_err(|_| "Max-Forwards is not a number".to_string())?),
        Err(_) => None,
    };
    let mut require = Vec::new();
    let mut supported = Vec::new();
    let mut user_agent = None;
    let mut contacts = Vec::new();
    let mut expires = None;
    let mut authorization = None;
    let mut headers = Vec::new();
    for h in req.headers.iter() {
        match h {
            Header::Contact(c) => {
                for part in split_contacts(c.value()) {
                    if part.trim() == "*" {
                        contacts.push(ContactValue::Star);
                        continue;
                    }
                    let typed = rsipstack::sip::typed::Contact::parse(&part).map_err(|e| format!("Contact: {e}"))?;
                    contacts.push(ContactValue::Uri { uri: typed.uri.to_string(), expires: typed.expires() });
                }
            }
            Header::Expires(e) => {
                expires = Some(e.value().trim().parse::<u32>().map_err(|_| format!("Expires: \"{}\"", e.value()))?);
            }
            Header::Authorization(a) => authorization = Some(a.value().to_string()),
            Header::Require(r) => {
                require.extend(r.value().split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()))
            }
            Header::Supported(r) => {
                supported.extend(r.value().split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()))
            }
            Header::UserAgent(u) => user_agent = Some(u.value().to_string()),
            Header::SessionExpires(v) => headers.push(("Session-Expires".into(), v.value().to_string())),
            Header::MinSE(v) => headers.push(("Min-SE".into(), v.value().to_string())),
            Header::Other(name, value) => headers.push((name.clone(), value.clone())),
            _ => {}
        }
    }
    let method = match req.method {
        RMethod::Invite => Method::Invite,
        RMethod::Register => Method::Register,
        RMethod::Options => Method::Options,
        // An unknown token (rsipstack's `Method::Extension`) is Other too;
        // `method_name` carries the token, which the front door answers 501.
        RMethod::Extension(_) => Method::Other,
        _ => Method::Other,
    };
    let transport = match tx.connection.as_ref().map(|c| c.transport()) {
        Some(rsipstack::sip::Transport::Tcp) => Transport::Tcp,
        _ => Transport::Udp,
    };
    Ok(Request {
        tx: TxId(0),
        method,
        method_name: req.method.to_string(),
        source: source_addr(tx).ok_or("cannot tell where the request came from")?,
        transport,
        uri: req.uri.to_string(),
        uri_user: req.uri.user().unwrap_or_default().to_string(),
        from_user: from.uri.user().unwrap_or_default().to_string(),
        to_user: to.uri.user().unwrap_or_default().to_string(),
        call_id,
        cseq: seq,
        contacts,
        expires,
        authorization,
        headers,
        has_body: !req.body.is_empty(),
        body: req.body.clone(),
        max_forwards,
        require,
        supported,
        user_agent,
        queued_for: Duration::ZERO,
    })
}

/// The peer address: the TCP connection's peer, or for UDP the address
/// rsipstack recorded in the top Via (`received`/`rport`, else sent-by,
/// which then equals the source).
fn source_addr(tx: &Transaction) -> Option<SocketAddr> {
    if let Some(remote) = tx.connection.as_ref().and_then(|c| c.get_remote_addr()) {
        if let Ok(a) = remote.get_socketaddr() {
            return Some(a);
        }
    }
    let via = tx.original.via_header().ok()?.typed().ok()?;
    let mut host: Option<IpAddr> = via.uri.host_with_port.host.to_string().trim_matches(['[', ']']).parse().ok();
    let mut port: u16 = via.uri.host_with_port.port.as_ref().map(|p| p.value().to_owned()).unwrap_or(5060);
    for p in &via.params {
        match p {
            rsipstack::sip::Param::Received(r) => {
                if let Ok(ip) = r.value().trim_matches(['[', ']']).parse() {
                    host = Some(ip);
                }
            }
            rsipstack::sip::Param::Rport(Some(rp)) => port = *rp,
            _ => {}
        }
    }
    host.map(|h| SocketAddr::new(h, port))
}

/// Splits a Contact header value on commas outside `<...>` and quotes.
fn split_contacts(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut cur) = (0i32, false, String::new());
    for c in v.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

mod attended;
mod early;
mod fork;

#[cfg(test)]
mod tests {
    use super::split_contacts;

    #[test]
    fn contacts_split_outside_brackets_and_quotes() {
        assert_eq!(
            split_contacts("\"A, B\" <sip:a@h;x=1,2>;expires=60, <sip:b@h>"),
            vec!["\"A, B\" <sip:a@h;x=1,2>;expires=60".to_string(), "<sip:b@h>".to_string()]
        );
        assert_eq!(split_contacts("*"), vec!["*".to_string()]);
    }
}
