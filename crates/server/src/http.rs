//! The HTTP API: routes, bearer-token authentication, tenant scoping and error answers.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use switchyard_core::fleet::Fleet;
use switchyard_sched::Scheduler;
use switchyard_store::{
    AnyStore, JobFilter, JobState, LogQuery, NewJob, Principal, StoreError, StoreRead, StoreWrite,
};
use tokio::sync::Notify;

use crate::api::{self, *};
use crate::leader::now_ms;
use crate::metrics::Metrics;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: AnyStore,
    pub fleet: Arc<Fleet>,
    /// A scheduler holding no jobs, to check submissions against the fleet.
    pub validator: Arc<Mutex<Scheduler>>,
    pub metrics: Arc<Metrics>,
    pub wake: Arc<Notify>,
    /// The node agents' registry and desired state, when this server runs agents.
    pub agents: Option<crate::agents::AgentHub>,
    tokens: Arc<Mutex<HashMap<String, CachedToken>>>,
}

/// What the store last said about a token (by hash), and when.
#[derive(Debug, Clone)]
struct CachedToken {
    principal: Principal,
    checked: Instant,
    /// When the recheck with the store under way began (one per token at a time).
    recheck_since: Option<Instant>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store.kind())
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(
        store: AnyStore,
        fleet: Arc<Fleet>,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> Self {
        let validator = Scheduler::new(&fleet, Default::default(), Default::default());
        AppState {
            store,
            fleet,
            validator: Arc::new(Mutex::new(validator)),
            metrics,
            wake,
            agents: None,
            tokens: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Serves the agent protocol from `hub`.
    pub fn with_agents(mut self, hub: crate::agents::AgentHub) -> Self {
        self.agents = Some(hub);
        self
    }
}

/// An error answer: status and `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub(crate) fn not_found(what: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no {what}"))
    }
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError {
            status: StatusCode::from_u16(r.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
            code: r.code,
            message: r.message,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            StoreError::ClusterFull { .. } => {
                ApiError::new(StatusCode::CONFLICT, "cluster_full", e.to_string())
            }
            other => {
                tracing::error!(error = %other, "store error while answering a request");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the store is unavailable; nothing was changed, retry later",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: self.code.into(),
                    message: self.message,
                },
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // A client that keeps its connection comes back to this replica, which cannot
            // serve it (not the leader, no store): closed, its retry connects afresh, and a
            // load balancer in front sends it where it can be served.
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl Auth {
    /// Whether the caller may use the agent protocol.
    pub(crate) fn may_act_as_agent(&self) -> bool {
        self.0.may_act_as_agent()
    }

    /// Refuses agent tokens: they act for the fleet's nodes, not for a tenant, so the tenant
    /// API (`/v1/jobs…`, `/v1/tenants`) is not theirs.
    pub(crate) fn tenant_api(&self) -> Result<(), ApiError> {
        if self.0.may_use_tenant_api() {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this is a node agent's token: it may use the agent endpoints (/v1/agent/…) only; \
                 use a tenant token (`switchyard token create --tenant NAME`) for jobs",
            ))
        }
    }

    /// The tenant reads are scoped to (`None` for admins: everyone).
    pub(crate) fn scope(&self) -> Option<&str> {
        if self.0.admin {
            None
        } else {
            Some(&self.0.tenant)
        }
    }
}

/// How long the store's word on a token is taken without asking again: what a revocation waits.
const TOKEN_CACHE: Duration = Duration::from_secs(30);
/// How long a request waits for the store to recheck a token whose cached word is older than
/// [`TOKEN_CACHE`] before it takes that word: an agent's heartbeat must not wait out the pool's
/// 10 s on a stalled store connection, or its node is declared lost.
const TOKEN_RECHECK_WAIT: Duration = Duration::from_secs(1);
/// The oldest word on a token still taken while the store cannot answer.
const TOKEN_STALE_MAX: Duration = Duration::from_secs(600);
/// How long a recheck may take before it is given up (its query hangs) and the next request
/// starts another.
const TOKEN_RECHECK_MAX: Duration = Duration::from_secs(10);

/// The token an `Authorization` header carries: `Bearer TOKEN`, or with `basic` `Basic`
/// credentials whose password is the token (what a browser sends for the dashboard; the user
/// name is ignored). Schemes are case-insensitive (RFC 9110 §11.1).
fn token_of(header: &str, basic: bool) -> Option<String> {
    use base64::Engine as _;
    let (scheme, rest) = header.trim_start().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(rest.trim().to_owned())
    } else if basic && scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        // user-id ":" password (RFC 7617); the user name, whatever its bytes, is ignored —
        // unless the password is empty and the token was typed as the user name.
        let colon = decoded.iter().position(|&b| b == b':')?;
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        let token = std::str::from_utf8(password).ok()?.trim();
        if token.is_empty() {
            Some(std::str::from_utf8(user).ok()?.trim().to_owned())
        } else {
            Some(token.to_owned())
        }
    } else {
        None
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "missing `Authorization: Bearer TOKEN` (create one with `switchyard token create`)",
            ));
        };
        // Two credentials: which one acts is a guess a proxy and this server could make
        // differently.
        if parts
            .headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .nth(1)
            .is_some()
        {
            return Err(ApiError::bad(
                "the request has more than one Authorization header; send one",
            ));
        }
        // Basic credentials only for the dashboard's read-only pages: a browser attaches them
        // to every request to the origin, cross-site ones too, so on the API (which changes
        // state) they would open it to cross-site request forgery.
        let path = parts.uri.path();
        let basic = path == "/dashboard" || path.starts_with("/dashboard/");
        let token = value
            .to_str()
            .ok()
            .and_then(|v| token_of(v, basic))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                unauthorized(if basic {
                    "the Authorization header must be `Bearer TOKEN`, or Basic with the token as \
                     the password"
                } else {
                    "the Authorization header must be `Bearer TOKEN`"
                })
            })?;
        let hash = switchyard_store::hash_token(&token);
        let mut recheck = None;
        if let Ok(mut cache) = state.tokens.lock()
            && let Some(c) = cache.get_mut(&hash)
        {
            let age = c.checked.elapsed();
            if age < TOKEN_CACHE {
                return Ok(Auth(c.principal.clone()));
            }
            if age < TOKEN_STALE_MAX {
                if c.recheck_since
                    .is_some_and(|since| since.elapsed() < TOKEN_RECHECK_MAX)
                {
                    // Another request is asking the store: take the last word meanwhile.
                    return Ok(Auth(c.principal.clone()));
                }
                // (A recheck older than that was abandoned: its query hangs.)
                let since = Instant::now();
                c.recheck_since = Some(since);
                recheck = Some((c.principal.clone(), since));
            }
        }
        let Some((stale, since)) = recheck else {
            let principal = lookup_token(state, &hash, None).await?;
            return principal
                .map(Auth)
                .ok_or_else(|| unauthorized("unknown or revoked token"));
        };
        // Rechecked in a task of its own, which records the answer whenever it comes (within
        // TOKEN_RECHECK_MAX); this request waits for it a moment only.
        let recheck = {
            let state = state.clone();
            async move {
                tokio::time::timeout(TOKEN_RECHECK_MAX, lookup_token(&state, &hash, Some(since)))
                    .await
            }
        };
        match spawned_within(TOKEN_RECHECK_WAIT, recheck).await {
            Some(Ok(Ok(Some(p)))) => Ok(Auth(p)),
            Some(Ok(Ok(None))) => Err(unauthorized("unknown or revoked token")),
            Some(Ok(Err(e))) => {
                tracing::warn!(error = %e, "the store could not recheck a token; taking its last word");
                Ok(Auth(stale))
            }
            Some(Err(_)) | None => {
                tracing::warn!("the store did not recheck a token in time; taking its last word");
                Ok(Auth(stale))
            }
        }
    }
}

/// Runs `work` in a task of its own and waits for it `wait` at most: `None` if it has not
/// finished by then (it goes on; what it records, it records later) or it panicked. For store
/// writes and reads a request must not wait out a stalled store for.
pub(crate) async fn spawned_within<T: Send + 'static>(
    wait: Duration,
    work: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    tokio::time::timeout(wait, tokio::spawn(work))
        .await
        .ok()?
        .ok()
}

/// Asks the store about a token and records the answer in the cache: a token it no longer
/// knows leaves the cache. The answer to a recheck begun at `recheck` is recorded only while
/// that recheck is the entry's latest, so that a late answer never overwrites a newer one (or
/// brings back a token whose revocation was seen meanwhile).
async fn lookup_token(
    state: &AppState,
    hash: &str,
    recheck: Option<Instant>,
) -> Result<Option<Principal>, switchyard_store::StoreError> {
    let asked = Instant::now();
    let principal = state.store.principal(hash).await;
    let Ok(mut cache) = state.tokens.lock() else {
        return principal;
    };
    // A recheck's answer counts while it is the entry's latest; a first lookup's always.
    let latest = recheck.is_none() || cache.get(hash).map(|c| c.recheck_since) == Some(recheck);
    match &principal {
        Ok(None) => {
            cache.remove(hash);
        }
        Ok(Some(p)) if latest => {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(
                hash.to_owned(),
                CachedToken {
                    principal: p.clone(),
                    checked: asked,
                    recheck_since: None,
                },
            );
        }
        Err(_) if latest => {
            if let Some(c) = cache.get_mut(hash) {
                c.recheck_since = None;
            }
        }
        _ => {}
    }
    principal
}

/// The router of the whole API.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/scale", post(scale))
        .route("/v1/jobs/{id}/events", get(events))
        .route("/v1/jobs/{id}/logs", get(logs))
        .route("/v1/fleet", get(fleet))
        .route("/v1/tenants", get(tenants))
        .merge(crate::agents::routes())
        .merge(crate::dashboard::routes())
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(api::MAX_BODY_BYTES))
        .with_state(state);
    // Around the whole router, not each route (what `Router::layer` does): a route answers a
    // wrong method with 405 and sets `Allow` outside its own layers, and the rewrite needs it.
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn(crate::listen::body_within_limits))
        .layer(axum::middleware::map_response(json_errors))
        .layer(answer_panics())
}

/// The layer that turns a handler's panic into a `500 internal` answer ([`panicked`]).
fn answer_panics() -> tower_http::catch_panic::CatchPanicLayer<fn(PanicPayload) -> Response> {
    tower_http::catch_panic::CatchPanicLayer::custom(panicked as fn(PanicPayload) -> Response)
}

type PanicPayload = Box<dyn std::any::Any + Send + 'static>;

/// A request that hit a bug in this server is answered, not dropped unanswered: the client
/// learns that nothing it sent was wrong, and the log keeps what happened.
fn panicked(payload: PanicPayload) -> Response {
    let what = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    tracing::error!(panic = what, "a request hit a bug in the server");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the server failed on this request (a bug; its log says where); retrying may fail the \
         same way",
    )
    .into_response()
}

/// Every error is JSON: answers the framework makes itself (a wrong method, a path that is not
/// UTF-8, an unreadable body) come as plain text or nothing, and are rewritten here.
async fn json_errors(res: Response) -> Response {
    let status = res.status();
    // JSON, or a dashboard page (which says what went wrong in HTML), is left as it is.
    let is_ours = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_ours {
        return res;
    }
    let allow = res.headers().get(header::ALLOW).cloned();
    let text = axum::body::to_bytes(res.into_body(), 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    if status == StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = allow
    {
        let methods = allow.to_str().unwrap_or_default().replace(',', ", ");
        let mut res = ApiError::new(
            status,
            "method_not_allowed",
            format!("this path takes {methods} only"),
        )
        .into_response();
        res.headers_mut().insert(header::ALLOW, allow);
        return res;
    }
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_client_error() => "invalid_request",
        _ => "internal",
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_owned()
    } else {
        text
    };
    ApiError::new(status, code, message).into_response()
}

async fn fallback(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {method} {}; see /v1/openapi.json", uri.path()),
    )
}

async fn healthz(q: QueryParams) -> Result<Json<serde_json::Value>, ApiError> {
    query(q, &[])?;
    Ok(Json(serde_json::json!({ "status": "ok" })))
}

/// A follower whose leader runs another fleet refuses what it would check against its own.
fn fleet_agrees(s: &AppState) -> Result<(), ApiError> {
    match s.metrics.fleet_conflict() {
        Some(why) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "fleet_conflict",
            why,
        )),
        None => Ok(()),
    }
}

async fn readyz(State(s): State<AppState>, q: QueryParams) -> Response {
    if let Err(e) = query(q, &[]).and_then(|_| fleet_agrees(&s)) {
        return e.into_response();
    }
    let role = if s.metrics.holds_lease(now_ms()) {
        "leader"
    } else {
        "follower"
    };
    // A probe gives up long before the pool's own 10 s: answer within its patience.
    let answer = match tokio::time::timeout(READY_PING_TIMEOUT, s.store.ping()).await {
        Ok(answer) => answer.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "no answer within {} s",
            READY_PING_TIMEOUT.as_secs()
        )),
    };
    match answer {
        Ok(()) => {
            Json(serde_json::json!({ "status": "ready", "role": role, "store": s.store.kind() }))
                .into_response()
        }
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the store is not ready: {e}"),
        )
        .into_response(),
    }
}

/// How long `/readyz` waits for the store before answering 503.
const READY_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long `/metrics` waits for the store's figures before answering without them.
const METRICS_STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Any token may scrape: fleet-wide series for everyone, per-tenant series for the token's own
/// tenant only (every tenant for admins, none for agents), so that tenants' names and load are
/// not anyone's to read.
async fn metrics(
    State(s): State<AppState>,
    auth: Auth,
    q: QueryParams,
) -> Result<Response, ApiError> {
    // No filters: a scraper asking for one (`?tenant=`) must not get every series unawares.
    query(q, &[])?;
    // A scrape must answer while the store stalls (a scraper's timeout is about 10 s, the
    // store's own 10 s): what comes from the store waits [`METRICS_STORE_WAIT`] at most.
    let read = async {
        Ok::<_, switchyard_store::StoreError>((
            s.store.tenant_usage().await?,
            s.store.cluster_usage().await?,
        ))
    };
    let usage = match tokio::time::timeout(METRICS_STORE_WAIT, read).await {
        Ok(Ok(usage)) => Some(usage),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "/metrics: the store's figures are left out");
            None
        }
        Err(_) => {
            tracing::warn!("/metrics: the store did not answer in time; its figures are left out");
            None
        }
    };
    let usage = usage.map(|(mut tenants, clusters)| {
        if !auth.0.admin {
            let own = auth
                .0
                .may_use_tenant_api()
                .then_some(auth.0.tenant.as_str());
            tenants.retain(|t| Some(t.tenant.as_str()) == own);
        }
        (tenants, clusters)
    });
    let mut text = s.metrics.render(
        &s.fleet,
        usage.as_ref().map(|(t, c)| (t.as_slice(), c.as_slice())),
    );
    if let Some(hub) = &s.agents {
        text.push_str(&crate::agents::render_metrics(&hub.nodes()));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

async fn openapi(q: QueryParams) -> Result<Response, ApiError> {
    query(q, &[])?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::DOCUMENT,
    )
        .into_response())
}

/// A request that takes no body (`what`: "a cancellation") has none, or an empty JSON object:
/// anything else (a reason, options) would be ignored while the request went ahead.
fn no_body(body: Result<Bytes, BytesRejection>, what: &str) -> Result<(), ApiError> {
    let body =
        body.map_err(|r| crate::listen::body_rejected(&r, "request body", api::MAX_BODY_BYTES))?;
    let empty = body.iter().all(u8::is_ascii_whitespace)
        || serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body)
            .is_ok_and(|m| m.is_empty());
    if empty {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "{what} takes no request body (send none, or `{{}}`)"
        )))
    }
}

/// The JSON body of a request, read as `what` ("submission", "scale request").
fn decode<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<T, ApiError> {
    let body =
        body.map_err(|r| crate::listen::body_rejected(&r, "request body", api::MAX_BODY_BYTES))?;
    let invalid = |why: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the request body is not a valid {what}: {why}"),
        )
    };
    // serde would read an array as the object's fields in order ("expected a string"): say
    // plainly that an object was expected.
    let found = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => Some("an array"),
        Some(b'"') => Some("a string"),
        Some(b'-' | b'0'..=b'9') => Some("a number"),
        Some(b't' | b'f') => Some("a boolean"),
        Some(b'n') => Some("null"),
        _ => None,
    };
    if let Some(found) = found
        && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok()
    {
        return Err(invalid(format!("expected a JSON object, found {found}")));
    }
    // The error names the field it is about (`kind: unknown variant …`, `replicas.min: …`).
    let mut de = serde_json::Deserializer::from_slice(&body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // "?": serde knows no place (the body ended before its first field).
        if path == "." || path == "?" {
            invalid(inner.to_string())
        } else if inner.to_string().starts_with("expected value")
            && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok()
        {
            // serde_json's word for a null (or other JSON type) where a choice of names goes.
            invalid(format!(
                "{path}: expected one of its names as a string ({inner})"
            ))
        } else {
            invalid(switchyard_core::plain_type_words(&format!(
                "{path}: {inner}"
            )))
        }
    })?;
    de.end().map_err(|e| invalid(e.to_string()))?;
    Ok(value)
}

async fn submit(
    State(s): State<AppState>,
    auth: Auth,
    q: QueryParams,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    auth.tenant_api()?;
    query(q, &[])?;
    fleet_agrees(&s)?;
    let req: SubmitRequest = decode(body, "submission")?;
    let tenant = match (&req.tenant, auth.0.admin) {
        (Some(t), true) => t.clone(),
        (Some(t), false) if *t != auth.0.tenant => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("your token submits for tenant `{}` only", auth.0.tenant),
            ));
        }
        _ => auth.0.tenant.clone(),
    };
    // A name the fleet does not list as a team runs under no quota; an organisation's name
    // (a likely slip at `token create`) would so slip past the organisation's own caps.
    if s.fleet.team(&tenant).is_none()
        && let Some(org) = s.fleet.tenants.iter().find(|o| o.name == tenant)
    {
        let teams: Vec<&str> = org.teams.iter().map(|t| t.name.as_str()).collect();
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "`{tenant}` is an organisation of the fleet, not a team: jobs belong to one of \
                 its teams ({}); make a token for one with `switchyard token create --tenant \
                 {}`",
                teams.join(", "),
                teams.first().copied().unwrap_or("TEAM")
            ),
        ));
    }
    let default_priority = s.fleet.team(&tenant).map_or(0, |(_, t)| t.priority);
    let id = switchyard_store::new_job_id()?;
    let spec = req.to_spec(&id, &tenant, default_priority)?;
    req.check_fleet(&s.fleet)?;
    req.check_quota(&s.fleet, &tenant)?;
    {
        let mut v = s.validator.lock().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "validator unavailable; retry",
            )
        })?;
        v.validate(&spec).map_err(|why| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unschedulable",
                format!("the job can never run on fleet {}: it {why}", s.fleet.name),
            )
        })?;
    }
    let mut stored = req.clone();
    stored.tenant = None;
    let record = s
        .store
        .insert_job(&NewJob {
            id,
            tenant,
            name: req.name.clone(),
            kind: req.kind.as_str().into(),
            priority: i64::from(spec.priority),
            accelerators: i64::from(spec.accelerators),
            spec: serde_json::to_string(&stored).map_err(|e| ApiError::bad(e.to_string()))?,
            reason: "queued; not yet considered".into(),
            submitted_ms: now_ms(),
        })
        .await;
    let record = match record {
        Err(StoreError::Conflict { tenant, name }) => {
            // Say which job holds the name, so that a client retrying after a lost answer
            // learns the id of the job its first attempt created.
            let existing = s.store.job_by_name(&tenant, &name).await?;
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                match existing {
                    Some(j) => {
                        format!("tenant {tenant} already has a job named `{name}`: {}", j.id)
                    }
                    None => format!("tenant {tenant} already has a job named `{name}`"),
                },
            ));
        }
        other => other?,
    };
    s.metrics.submissions.fetch_add(1, Ordering::Relaxed);
    s.wake.notify_one();
    Ok((StatusCode::CREATED, Json(Job::from(&record))))
}

/// A route's query string as its (name, value) pairs, in order; [`query`] checks them.
pub(crate) type QueryParams = Result<Query<Vec<(String, String)>>, QueryRejection>;

pub(crate) fn query(q: QueryParams, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let Query(pairs) = q.map_err(|e| ApiError::bad(format!("bad query string: {e}")))?;
    let mut q = HashMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        if q.contains_key(&k) {
            let k: String = k.chars().take(64).collect();
            return Err(ApiError::bad(format!(
                "query parameter `{k}` is given twice; give it once"
            )));
        }
        q.insert(k, v);
    }
    if let Some(k) = q.keys().find(|k| !allowed.contains(&k.as_str())) {
        let k: String = k.chars().take(64).collect();
        return Err(ApiError::bad(if allowed.is_empty() {
            format!("unknown query parameter `{k}`; this route takes none")
        } else {
            format!(
                "unknown query parameter `{k}`; expected one of {}",
                allowed.join(", ")
            )
        }));
    }
    Ok(q)
}

async fn list(
    State(s): State<AppState>,
    auth: Auth,
    q: QueryParams,
) -> Result<Json<JobList>, ApiError> {
    auth.tenant_api()?;
    let q = query(q, &["state", "kind", "tenant", "limit", "after"])?;
    let mut filter = JobFilter {
        tenant: auth.scope().map(str::to_owned),
        spec_bytes: Some(api::LIST_SPEC_BYTES),
        ..JobFilter::default()
    };
    if let Some(t) = q.get("tenant") {
        if t.is_empty() {
            return Err(ApiError::bad(
                "tenant is empty: name a tenant, or leave the parameter out",
            ));
        }
        if !api::is_name(t) {
            return Err(ApiError::bad(format!(
                "tenant `{}` is not a tenant name (letters, digits, `-`, `_` and `.`)",
                t.chars()
                    .take(64)
                    .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                    .collect::<String>()
            )));
        }
        if !auth.0.admin && *t != auth.0.tenant {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only admin tokens list other tenants' jobs",
            ));
        }
        filter.tenant = Some(t.clone());
    }
    if let Some(states) = q.get("state") {
        if states.split(',').all(str::is_empty) {
            return Err(ApiError::bad(
                "state is empty: name one or more states, or leave the parameter out",
            ));
        }
        if states.split(',').any(str::is_empty) {
            return Err(ApiError::bad(format!(
                "state `{}` names an empty state: separate states by single commas",
                states.chars().take(64).collect::<String>()
            )));
        }
        for st in states.split(',') {
            // As lenient as `kind`: `Running`, ` pending`.
            let parsed = JobState::parse(&st.trim().to_ascii_lowercase());
            let parsed = parsed.ok_or_else(|| {
                ApiError::bad(format!(
                    "unknown state `{}`; expected pending, running, done, failed, cancelled or rejected",
                    st.chars().take(64).collect::<String>()
                ))
            })?;
            // Each once: a state named again adds nothing, and the query binds one parameter
            // per state (a long enough repeat would pass the database's limit).
            if !filter.states.contains(&parsed) {
                filter.states.push(parsed);
            }
        }
    }
    if let Some(k) = q.get("kind") {
        let kind = switchyard_core::JobKind::parse(k)
            .ok_or_else(|| ApiError::bad("kind must be training, batch or inference"))?;
        filter.kind = Some(kind.as_str().into());
    }
    filter.limit = page_limit(&q, filter.limit)?;
    filter.after = int_param(&q, "after", 0, "a cursor from `next` (0 or more)")?;
    let rows = s.store.list_jobs(&filter.with_lookahead()).await?;
    let (jobs, next) = filter.page(rows);
    let next = next.map(|n| n.to_string());
    Ok(Json(JobList {
        jobs: jobs.iter().map(Job::from).collect(),
        next,
    }))
}

/// A job's or node's id from the path. Axum answers a segment that is not UTF-8 once
/// percent-decoded (`/v1/jobs/j-%ff`) with a plain-text 400 of its own; no id is like that, so
/// the API answers as for any other id it does not have.
pub(crate) struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(PathId(id)),
            // A node's routes answer an id they do not know with `unknown_node`, which agents
            // act on (they register again).
            Err(_) if parts.uri.path().starts_with("/v1/agent/") => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_node",
                "no node with such an id: ids are UTF-8, and this one is not once percent-decoded",
            )),
            Err(_) => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such id: ids are UTF-8, and this one is not once percent-decoded",
            )),
        }
    }
}

pub(crate) fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 64 {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no job with a {}-byte id: job ids are 1 to 64 bytes",
                id.len()
            ),
        ))
    } else if id.chars().any(char::is_control) {
        // No id has one, and PostgreSQL refuses a NUL in a query outright.
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no job with an id holding a control character",
        ))
    } else {
        Ok(())
    }
}

async fn get_job(
    State(s): State<AppState>,
    auth: Auth,
    PathId(id): PathId,
    q: QueryParams,
) -> Result<Json<Job>, ApiError> {
    auth.tenant_api()?;
    query(q, &[])?;
    check_id(&id)?;
    let job = s
        .store
        .get_job(&id, auth.scope())
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("job {id}")))?;
    Ok(Json(Job::from(&job)))
}

async fn cancel(
    State(s): State<AppState>,
    auth: Auth,
    PathId(id): PathId,
    q: QueryParams,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    auth.tenant_api()?;
    query(q, &[])?;
    no_body(body, "a cancellation")?;
    check_id(&id)?;
    let job = s
        .store
        .request_cancel(&id, auth.scope(), now_ms())
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("job {id}")))?;
    if job.state.is_final() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("job {id} is already {}", job.state.as_str()),
        ));
    }
    s.metrics.cancellations.fetch_add(1, Ordering::Relaxed);
    s.wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(Job::from(&job))))
}

/// Why a job cannot be scaled (422 `invalid_request`), or its replica range.
fn scale_range(job: &switchyard_store::JobRecord) -> Result<(i64, i64), ApiError> {
    let refuse = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", m);
    if job.kind != switchyard_core::JobKind::Inference.as_str() {
        return Err(refuse(format!(
            "job {} is a {} job; only inference services scale",
            job.id, job.kind
        )));
    }
    if job.state.is_final() {
        return Err(refuse(format!(
            "job {} is already {}",
            job.id,
            job.state.as_str()
        )));
    }
    let range = serde_json::from_str::<SubmitRequest>(&job.spec)
        .ok()
        .and_then(|r| r.replicas);
    match range {
        Some(r) => Ok((i64::from(r.min), i64::from(r.max))),
        None => Err(refuse(format!(
            "job {} has no replica range in its stored specification",
            job.id
        ))),
    }
}

async fn scale(
    State(s): State<AppState>,
    auth: Auth,
    PathId(id): PathId,
    q: QueryParams,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Job>, ApiError> {
    auth.tenant_api()?;
    query(q, &[])?;
    check_id(&id)?;
    let req: ScaleRequest = decode(body, "scale request")?;
    let job = s
        .store
        .get_job(&id, auth.scope())
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("job {id}")))?;
    let (min, max) = scale_range(&job)?;
    if !(min..=max).contains(&req.replicas) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            format!(
                "replicas = {} is outside job {id}'s range, {min} to {max} (submitted as replicas = {{ min = {min}, max = {max} }})",
                req.replicas
            ),
        ));
    }
    let job = s
        .store
        .request_scale(&id, auth.scope(), req.replicas, now_ms())
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("job {id}")))?;
    // It may have ended since it was read: then nothing was asked.
    scale_range(&job)?;
    s.wake.notify_one();
    Ok(Json(Job::from(&job)))
}

async fn events(
    State(s): State<AppState>,
    auth: Auth,
    PathId(id): PathId,
    q: QueryParams,
) -> Result<Json<JobEvents>, ApiError> {
    auth.tenant_api()?;
    check_id(&id)?;
    let q = query(q, &["after", "limit"])?;
    let after = int_param(&q, "after", 0, "a cursor: an event's `cursor` or `next`")?.unwrap_or(0);
    let limit = page_limit(&q, api::DEFAULT_EVENT_PAGE)?;
    let job = s
        .store
        .get_job(&id, auth.scope())
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("job {id}")))?;
    let events = s
        .store
        .events(&id, auth.scope(), after, limit)
        .await?
        .unwrap_or_default();
    let next = next_cursor(&events, limit, |e| e.cursor);
    Ok(Json(JobEvents {
        job: job.id,
        state: job.state.as_str().into(),
        reason: job.reason,
        next,
        events: events
            .into_iter()
            .map(|e| api::Event {
                cursor: e.cursor,
                at_ms: e.at_ms,
                kind: e.kind,
                cluster: e.cluster,
                message: e.message,
            })
            .collect(),
    }))
}

/// A whole number of a query parameter, at least `min`.
pub(crate) fn int_param(
    q: &HashMap<String, String>,
    name: &str,
    min: i64,
    what: &str,
) -> Result<Option<i64>, ApiError> {
    q.get(name)
        .map(|v| {
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= min && v.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
                .ok_or_else(|| ApiError::bad(format!("{name} must be {what}{}", not_a(v))))
        })
        .transpose()
}

/// What is wrong with a query parameter's `value` that is not a number in range, said after
/// what it must be: a `+5` is in range but signed, a long run of digits past the largest.
fn not_a(value: &str) -> String {
    let shown: String = value.chars().take(40).collect();
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    if digits && value.parse::<i64>().is_err() {
        format!(" (`{shown}` is past the largest, {})", i64::MAX)
    } else if value.contains(' ') {
        format!(" (`{shown}` has a space: in a URL's query a `+` or `%20` stands for one)")
    } else if value.starts_with('+') {
        format!(" (`{shown}`: digits only, without a sign)")
    } else {
        format!(" (not `{shown}`)")
    }
}

/// The `next` of a page: its last item's cursor when the page is full (more may follow).
fn next_cursor<T>(page: &[T], limit: i64, cursor: impl Fn(&T) -> i64) -> Option<i64> {
    page.last()
        .filter(|_| page.len() as i64 == limit)
        .map(cursor)
}

/// The `limit` of a page: 1 to [`api::MAX_PAGE`], `default` when not given.
fn page_limit(q: &HashMap<String, String>, default: i64) -> Result<i64, ApiError> {
    let page = format!("1 to {}", api::MAX_PAGE);
    match int_param(q, "limit", 1, &page)? {
        Some(l) if l > api::MAX_PAGE => Err(ApiError::bad(format!(
            "limit must be {page}{}",
            not_a(&l.to_string())
        ))),
        l => Ok(l.unwrap_or(default)),
    }
}

async fn logs(
    State(s): State<AppState>,
    auth: Auth,
    PathId(id): PathId,
    q: QueryParams,
) -> Result<Json<JobLogs>, ApiError> {
    auth.tenant_api()?;
    check_id(&id)?;
    let q = query(q, &["rank", "attempt", "replica", "after", "limit"])?;
    let rank = int_param(&q, "rank", 0, "a rank: a whole number from 0")?;
    let replica = q.get("replica").cloned();
    if let Some(r) = &replica
        && !switchyard_store::is_replica_name(r)
    {
        return Err(ApiError::bad(format!(
            "replica `{}` is not a replica name: a log line's `replica`, like 18f2c3a4b5c.3",
            r.chars().take(64).collect::<String>()
        )));
    }
    let attempt = int_param(&q, "attempt", 1, "an attempt: a whole number from 1")?;
    let after = int_param(&q, "after", 0, "a cursor: a line's `cursor` or `next`")?.unwrap_or(0);
    let limit = page_limit(&q, api::DEFAULT_LOG_PAGE)?;
    let job = s
        .store
        .get_job(&id, auth.scope())
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("job {id}")))?;
    let lines = s
        .store
        .logs(&LogQuery {
            job_id: job.id.clone(),
            rank,
            attempt,
            replica,
            after,
            limit,
        })
        .await?;
    let next = next_cursor(&lines, limit, |l| l.cursor);
    Ok(Json(JobLogs {
        job: job.id,
        lines: lines
            .into_iter()
            .map(|l| LogEntry {
                cursor: l.cursor,
                attempt: l.attempt,
                rank: l.rank,
                replica: switchyard_store::replica_of_assignment(&l.assignment_id)
                    .map(str::to_owned),
                stream: l.stream,
                at_ms: l.at_ms,
                line: l.line,
            })
            .collect(),
        next,
    }))
}

async fn fleet(
    State(s): State<AppState>,
    auth: Auth,
    q: QueryParams,
) -> Result<Json<FleetState>, ApiError> {
    // Tenants and admins: agent tokens use the agent endpoints only.
    auth.tenant_api()?;
    query(q, &[])?;
    let usage = s.store.cluster_usage().await?;
    Ok(Json(FleetState {
        name: s.fleet.name.clone(),
        clusters: s
            .fleet
            .clusters
            .iter()
            .map(|c| {
                let u = usage.iter().find(|u| u.cluster == c.name);
                ClusterState {
                    name: c.name.clone(),
                    provider: c.provider.clone(),
                    region: c.region.clone(),
                    accelerator: c.accelerator.name.into(),
                    nodes: c.nodes,
                    accelerators: c.accelerators(),
                    busy: u.map_or(0, |u| u.allocated),
                    running_jobs: u.map_or(0, |u| u.running),
                }
            })
            .collect(),
    }))
}

async fn tenants(
    State(s): State<AppState>,
    auth: Auth,
    q: QueryParams,
) -> Result<Json<TenantList>, ApiError> {
    auth.tenant_api()?;
    query(q, &[])?;
    Ok(Json(TenantList {
        tenants: tenant_states(&s, &auth).await?,
    }))
}

/// The teams `auth` may see (an admin: every team of the fleet and every tenant with jobs; a
/// tenant: itself), by name, with their usage and quotas.
pub(crate) async fn tenant_states(s: &AppState, auth: &Auth) -> Result<Vec<TenantState>, ApiError> {
    let usage = s.store.tenant_usage().await?;
    let mut names: Vec<String> = if auth.0.admin {
        let mut n: Vec<String> = s
            .fleet
            .tenants
            .iter()
            .flat_map(|o| o.teams.iter().map(|t| t.name.clone()))
            .collect();
        n.extend(usage.iter().map(|u| u.tenant.clone()));
        n
    } else {
        vec![auth.0.tenant.clone()]
    };
    names.sort();
    names.dedup();
    let quota = |q: &switchyard_core::fleet::Quota| QuotaView {
        cluster: q.cluster.clone(),
        accelerators: q.accelerators,
        borrowing_limit: q.borrowing_limit,
    };
    Ok(names
        .into_iter()
        .map(|name| {
            let u = usage.iter().find(|u| u.tenant == name);
            let team = s.fleet.team(&name);
            TenantState {
                organisation: team.map(|(o, _)| o.name.clone()),
                quotas: team.map_or_else(Vec::new, |(_, t)| t.quotas.iter().map(quota).collect()),
                pending: u.map_or(0, |u| u.pending),
                running: u.map_or(0, |u| u.running),
                allocated: u.map_or(0, |u| u.allocated),
                tenant: name,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replica whose lease ran out unrenewed (it stood still; another may lead by now) says
    /// it follows, on `/readyz` and in `/metrics`, until it notices and steps down.
    #[tokio::test]
    async fn a_leader_past_its_lease_reports_itself_a_follower() {
        let store = switchyard_store::connect("sqlite::memory:")
            .await
            .expect("a store");
        let state = AppState::new(
            store,
            Arc::new(Fleet::default_fleet()),
            Arc::new(Metrics::default()),
            Arc::new(Notify::new()),
        );
        let role = |expires_ms: i64| {
            let state = state.clone();
            async move {
                state.metrics.leader.store(true, Ordering::SeqCst);
                state
                    .metrics
                    .lease_expires_ms
                    .store(expires_ms, Ordering::SeqCst);
                let res = readyz(State(state.clone()), Ok(Query(Vec::new()))).await;
                let body = axum::body::to_bytes(res.into_body(), 1 << 16)
                    .await
                    .expect("a body");
                let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
                let gauge = state
                    .metrics
                    .render(&state.fleet, Some((&[], &[])))
                    .lines()
                    .find(|l| l.starts_with("switchyard_leader "))
                    .map(str::to_owned);
                (body["role"].as_str().map(str::to_owned), gauge)
            }
        };
        assert_eq!(
            role(now_ms() + 60_000).await,
            (Some("leader".into()), Some("switchyard_leader 1".into()))
        );
        assert_eq!(
            role(now_ms() - 1).await,
            (Some("follower".into()), Some("switchyard_leader 0".into()))
        );
    }

    /// `app` served on a loopback port, and the status and body of a GET of each of `paths`
    /// over a real connection (a dropped one fails the test).
    async fn get_each<const N: usize>(app: Router, paths: [&'static str; N]) -> [(u16, String); N] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        tokio::task::spawn_blocking(move || {
            paths.map(|path| {
                let mut res = ureq::get(&format!("{base}{path}"))
                    .config()
                    .http_status_as_error(false)
                    .build()
                    .call()
                    .expect("an answer, not a dropped connection");
                let body = res.body_mut().read_to_string().expect("a body");
                (res.status().as_u16(), body)
            })
        })
        .await
        .expect("the client")
    }

    /// An id that is not UTF-8 once decoded is one the server cannot have: `not_found` on the
    /// job routes, `unknown_node` on a node's (what agents act on).
    #[tokio::test]
    async fn an_id_that_is_not_utf8_is_not_found() {
        async fn echo(PathId(id): PathId) -> String {
            id
        }
        let app = Router::new()
            .route("/v1/jobs/{id}", get(echo))
            .route("/v1/agent/nodes/{id}/heartbeat", get(echo));
        let answers = get_each(
            app,
            [
                "/v1/jobs/j-%ff",
                "/v1/agent/nodes/n-%ff/heartbeat",
                "/v1/jobs/j-1",
            ],
        )
        .await;
        let code = |body: &str| {
            serde_json::from_str::<serde_json::Value>(body).expect("JSON")["error"]["code"]
                .as_str()
                .map(str::to_owned)
        };
        assert_eq!(answers[0].0, 404);
        assert_eq!(code(&answers[0].1).as_deref(), Some("not_found"));
        assert_eq!(answers[1].0, 404);
        assert_eq!(code(&answers[1].1).as_deref(), Some("unknown_node"));
        assert_eq!(answers[2], (200, "j-1".to_owned()));
    }

    /// A handler that panics gets its client an answer that says so, over a real connection.
    #[tokio::test]
    async fn a_request_that_hits_a_panic_is_answered_500() {
        async fn boom() -> &'static str {
            panic!("a bug")
        }
        let app = Router::new()
            .route("/boom", get(boom))
            .layer(answer_panics());
        let [(status, body)] = get_each(app, ["/boom"]).await;
        assert_eq!(status, 500, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(body["error"]["code"], "internal", "{body}");
    }

    #[test]
    fn an_unavailable_replica_closes_the_connection() {
        let closes = |status| {
            ApiError::new(status, "x", "y")
                .into_response()
                .headers()
                .get(header::CONNECTION)
                .is_some_and(|v| v == "close")
        };
        assert!(closes(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!closes(StatusCode::NOT_FOUND));
    }

    async fn authenticate(state: &AppState, token: &str) -> Result<Auth, ApiError> {
        let (mut parts, ()) = axum::http::Request::builder()
            .uri("/v1/agent/nodes")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(())
            .expect("request")
            .into_parts();
        Auth::from_request_parts(&mut parts, state).await
    }

    /// Makes the cached word on `token` older than the cache keeps it.
    fn age(state: &AppState, token: &str) {
        let hash = switchyard_store::hash_token(token);
        let mut cache = state.tokens.lock().expect("cache");
        let c = cache.get_mut(&hash).expect("cached");
        c.checked = Instant::now()
            .checked_sub(TOKEN_CACHE + Duration::from_secs(1))
            .expect("the clock is past 31 s");
    }

    /// A token the store confirmed is taken on its last word when a recheck cannot reach the
    /// store in a moment (a heartbeat that waited the pool's 10 s here made the node lost), and
    /// a token the store no longer knows is refused at its recheck.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_token_is_taken_on_its_last_word_while_the_store_cannot_answer() {
        let Some(url) = crate::test_support::postgres_url() else {
            return;
        };
        use switchyard_store::StoreWrite as _;
        let (store, silent) = crate::test_support::postgres_behind_a_silenceable_proxy(&url).await;
        let state = AppState::new(
            store.clone(),
            Arc::new(Fleet::default_fleet()),
            Arc::new(Metrics::default()),
            Arc::new(Notify::new()),
        );
        let (kept, revoked) = (
            switchyard_store::new_token().expect("token"),
            switchyard_store::new_token().expect("token"),
        );
        for t in [&kept, &revoked] {
            store
                .insert_agent_token(&switchyard_store::hash_token(t), 0)
                .await
                .expect("insert");
            authenticate(&state, t).await.expect("a known token");
        }
        store
            .delete_token(&switchyard_store::hash_token(&revoked))
            .await
            .expect("delete");
        age(&state, &revoked);
        let refused = authenticate(&state, &revoked).await;
        assert!(
            matches!(&refused, Err(e) if e.status == StatusCode::UNAUTHORIZED),
            "{refused:?}"
        );

        silent.store(true, std::sync::atomic::Ordering::SeqCst);
        age(&state, &kept);
        let auth = authenticate(&state, &kept)
            .await
            .expect("taken on its last word");
        assert!(auth.0.agent);
        // While the recheck hangs, later requests do not start another or wait.
        authenticate(&state, &kept).await.expect("still taken");

        // A recheck that hangs past its limit is given up: the next request starts another,
        // and that one's answer counts — here that the token was revoked meanwhile. (The hung
        // one never answers: its connection stays silenced.)
        silent.store(false, std::sync::atomic::Ordering::SeqCst);
        let direct = switchyard_store::connect(&url).await.expect("connect");
        direct
            .delete_token(&switchyard_store::hash_token(&kept))
            .await
            .expect("revoke");
        authenticate(&state, &kept)
            .await
            .expect("still on its last word while the first recheck may yet answer");
        {
            let mut cache = state.tokens.lock().expect("cache");
            let c = cache
                .get_mut(&switchyard_store::hash_token(&kept))
                .expect("cached");
            c.recheck_since =
                Instant::now().checked_sub(TOKEN_RECHECK_MAX + Duration::from_secs(1));
            assert!(c.recheck_since.is_some(), "the clock is past 11 s");
        }
        let refused = authenticate(&state, &kept).await;
        assert!(
            matches!(&refused, Err(e) if e.status == StatusCode::UNAUTHORIZED),
            "{refused:?}"
        );
    }
}
