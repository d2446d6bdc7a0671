//! The admin HTTP API: JSON over HTTP/1.1 on its own listener.
//!
//! Handlers never touch the core: each request becomes an [`AdminRequest`]
//! sent to the daemon loop over a bounded channel, and the loop answers with
//! an [`AdminReply`] (status + JSON). A full channel answers 503 at once.
//! Engine events reach `/events` subscribers as server-sent events through a
//! broadcast channel; a subscriber that falls behind skips events and is
//! told how many (`event: lagged`).
//!
//! Every endpoint but `/live` and `/ready` needs `Authorization: Bearer
//! <admin.token>` when a token is configured (config validation refuses a
//! non-loopback listener without one). Errors are `{"error": "..."}`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

/// What an admin asks of the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRequest {
    Ready,
    Queues,
    Agents,
    Calls,
    Agent {
        agent: String,
        action: AgentAction,
    },
    MoveCall {
        call: u64,
        queue: String,
    },
    /// A bridged call to a queue or to an agent (exactly one of the two).
    TransferCall {
        call: u64,
        queue: Option<String>,
        agent: Option<String>,
    },
    WithdrawCall {
        call: u64,
        status: u16,
    },
    Schedules,
    /// `None` clears the switch.
    Emergency {
        schedule: String,
        state: Option<crate::engine::schedule::Emergency>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAction {
    Login,
    Logout,
    Pause { reason: String },
    Ready,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminReply {
    pub status: u16,
    pub body: Value,
}

impl AdminReply {
    pub fn ok(body: Value) -> AdminReply {
        AdminReply { status: 200, body }
    }
    pub fn error(status: u16, message: impl Into<String>) -> AdminReply {
        AdminReply { status, body: json!({ "error": message.into() }) }
    }
}

pub type AdminSender = mpsc::Sender<(AdminRequest, oneshot::Sender<AdminReply>)>;

#[derive(Clone)]
struct Ctx {
    tx: AdminSender,
    events: broadcast::Sender<Arc<str>>,
    token: Option<Arc<str>>,
}

pub fn router(tx: AdminSender, event_feed: broadcast::Sender<Arc<str>>, token: Option<String>) -> Router {
    let ctx = Ctx { tx, events: event_feed, token: token.map(Arc::from) };
    Router::new()
        .route("/live", get(live))
        .route("/ready", get(ready))
        .route("/queues", get(queues))
        .route("/agents", get(agents))
        .route("/calls", get(calls))
        .route("/agents/{id}/login", post(login))
        .route("/agents/{id}/logout", post(logout))
        .route("/agents/{id}/ready", post(agent_ready))
        .route("/agents/{id}/pause", post(pause))
        .route("/calls/{id}/move", post(move_call))
        .route("/calls/{id}/transfer", post(transfer_call))
        .route("/calls/{id}/withdraw", post(withdraw))
        .route("/schedules", get(schedules))
        .route("/schedules/{name}/emergency", post(emergency))
        .route("/events", get(events))
        .fallback(|| async { reply(AdminReply::error(404, "no such endpoint; see the README's admin API table")) })
        .with_state(ctx)
}

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) {
    if let Err(e) = axum::serve(listener, router).await {
        tracing::warn!("admin API stopped: {e}");
    }
}

fn reply(r: AdminReply) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(r.body)).into_response()
}

/// Constant-time comparison, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(ctx: &Ctx, headers: &HeaderMap) -> Result<(), Response> {
    let Some(token) = &ctx.token else { return Ok(()) };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if same(g.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(reply(AdminReply::error(403, "wrong token"))),
        None => {
            let mut r = reply(AdminReply::error(401, "send Authorization: Bearer <admin.token>"));
            r.headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, "Bearer realm=\"acd\"".parse().expect("static"));
            Err(r)
        }
    }
}

async fn ask(ctx: &Ctx, req: AdminRequest) -> Response {
    let (tx, rx) = oneshot::channel();
    if ctx.tx.try_send((req, tx)).is_err() {
        return reply(AdminReply::error(503, "acd is busy; retry shortly"));
    }
    match tokio::time::timeout(Duration::from_secs(5), rx).await {
        Ok(Ok(r)) => reply(r),
        _ => reply(AdminReply::error(503, "acd did not answer in time")),
    }
}

async fn guarded(ctx: Ctx, headers: HeaderMap, req: AdminRequest) -> Response {
    match authorized(&ctx, &headers) {
        Ok(()) => ask(&ctx, req).await,
        Err(r) => r,
    }
}

async fn live() -> Response {
    reply(AdminReply::ok(json!({ "status": "live" })))
}

async fn ready(State(ctx): State<Ctx>) -> Response {
    ask(&ctx, AdminRequest::Ready).await
}

async fn queues(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    guarded(ctx, headers, AdminRequest::Queues).await
}

async fn agents(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    guarded(ctx, headers, AdminRequest::Agents).await
}

async fn calls(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    guarded(ctx, headers, AdminRequest::Calls).await
}

async fn login(State(ctx): State<Ctx>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    guarded(ctx, headers, AdminRequest::Agent { agent: id, action: AgentAction::Login }).await
}

async fn logout(State(ctx): State<Ctx>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    guarded(ctx, headers, AdminRequest::Agent { agent: id, action: AgentAction::Logout }).await
}

async fn agent_ready(State(ctx): State<Ctx>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    guarded(ctx, headers, AdminRequest::Agent { agent: id, action: AgentAction::Ready }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    reason: String,
}

/// A JSON body, or a JSON error naming what is wrong with it.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(bytes).map_err(|e| reply(AdminReply::error(400, format!("bad JSON body: {e}"))))
}

async fn pause(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    if let Err(r) = authorized(&ctx, &headers) {
        return r;
    }
    let b: PauseBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if b.reason.trim().is_empty() {
        return reply(AdminReply::error(400, "give a reason for the pause; supervisors see it"));
    }
    ask(&ctx, AdminRequest::Agent { agent: id, action: AgentAction::Pause { reason: b.reason } }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    queue: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    queue: Option<String>,
    agent: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WithdrawBody {
    status: Option<u16>,
}

/// The checks every call action shares: the token, the call id in the path,
/// and the JSON body (`if_empty` when the body is empty and that is allowed).
fn call_action<T: serde::de::DeserializeOwned>(
    ctx: &Ctx,
    headers: &HeaderMap,
    id: &str,
    bytes: &[u8],
    if_empty: Option<T>,
) -> Result<(u64, T), Response> {
    authorized(ctx, headers)?;
    let call = id
        .strip_prefix("call-")
        .unwrap_or(id)
        .parse()
        .map_err(|_| reply(AdminReply::error(400, format!("\"{id}\" is not a call id (a number from /calls)"))))?;
    let b = match if_empty {
        Some(default) if bytes.is_empty() => default,
        _ => body(bytes)?,
    };
    Ok((call, b))
}

async fn move_call(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    match call_action::<MoveBody>(&ctx, &headers, &id, &bytes, None) {
        Ok((call, b)) => ask(&ctx, AdminRequest::MoveCall { call, queue: b.queue }).await,
        Err(r) => r,
    }
}

async fn transfer_call(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    match call_action::<TransferBody>(&ctx, &headers, &id, &bytes, None) {
        Ok((_, TransferBody { queue: Some(_), agent: Some(_) } | TransferBody { queue: None, agent: None })) => {
            reply(AdminReply::error(400, "give either \"queue\" or \"agent\""))
        }
        Ok((call, b)) => ask(&ctx, AdminRequest::TransferCall { call, queue: b.queue, agent: b.agent }).await,
        Err(r) => r,
    }
}

async fn withdraw(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    let (call, b) = match call_action(&ctx, &headers, &id, &bytes, Some(WithdrawBody::default())) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let status = b.status.unwrap_or(480);
    if !(400..=699).contains(&status) {
        return reply(AdminReply::error(400, format!("status {status} is not a SIP error status (400..=699)")));
    }
    ask(&ctx, AdminRequest::WithdrawCall { call, status }).await
}

async fn schedules(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&ctx, &headers) {
        return r;
    }
    ask(&ctx, AdminRequest::Schedules).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmergencyBody {
    /// `closed`, `open`, or `clear` (back to the schedule's hours).
    state: String,
}

/// The emergency switch of a schedule (a fire drill closes every queue that
/// follows it); kept across reloads, cleared with `{"state": "clear"}`.
async fn emergency(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    if let Err(r) = authorized(&ctx, &headers) {
        return r;
    }
    let b: EmergencyBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    use crate::engine::schedule::Emergency;
    let state = match b.state.as_str() {
        "closed" => Some(Emergency::Closed),
        "open" => Some(Emergency::Open),
        "clear" => None,
        other => {
            return reply(AdminReply::error(
                400,
                format!("state \"{other}\": expected \"closed\", \"open\" or \"clear\""),
            ))
        }
    };
    ask(&ctx, AdminRequest::Emergency { schedule: name, state }).await
}

async fn events(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&ctx, &headers) {
        return r;
    }
    let stream = BroadcastStream::new(ctx.events.subscribe()).map(|item| {
        Ok::<_, Infallible>(match item {
            Ok(line) => SseEvent::default().event("engine").data(line.as_ref()),
            Err(BroadcastStreamRecvError::Lagged(n)) => SseEvent::default().event("lagged").data(n.to_string()),
        })
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn token_comparison() {
        assert!(same(b"abcdefabcdefabcd", b"abcdefabcdefabcd"));
        assert!(!same(b"abcdefabcdefabcd", b"abcdefabcdefabce"));
        assert!(!same(b"abc", b"abcd"));
    }
}
