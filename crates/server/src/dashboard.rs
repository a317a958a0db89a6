//! The web dashboard: a read-only view, in a browser, of what the API serves — the fleet's
//! clusters and how busy they are, the caller's jobs by state, and a job's events and output.
//!
//! Pages are rendered on the server as plain HTML and carry no script: a strict
//! Content-Security-Policy forbids any, and every value that came from a user (job names,
//! reasons, commands, output lines) is escaped. A browser signs in with HTTP Basic auth whose
//! password is an API token (the user name is ignored), so the same tenant walls apply as on
//! `/v1`: a tenant sees its own jobs, an admin everyone's.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use switchyard_store::{JobFilter, JobRecord, JobState, LogQuery, StoreRead};

use crate::http::{ApiError, AppState, Auth, QueryParams};
use crate::leader::utc;

/// Jobs on one page of the overview.
const JOBS_PER_PAGE: i64 = 100;
/// Output lines on one page of a job.
const LINES_PER_PAGE: i64 = 500;
/// Events on one page of a job.
const EVENTS_PER_PAGE: i64 = 500;
/// How often the overview reloads itself, seconds.
const REFRESH_S: u32 = 10;

/// The dashboard's routes: `/dashboard` and `/dashboard/jobs/{id}`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(overview))
        .route(
            "/dashboard/",
            get(|| async { Redirect::permanent("/dashboard") }),
        )
        .route("/dashboard/jobs/{id}", get(job_page))
        // Anything else under /dashboard is a page too, not the API's JSON.
        .route("/dashboard/{*rest}", any(no_such_page))
}

async fn no_such_page(method: axum::http::Method) -> axum::response::Response {
    if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        Page::from(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such page: the dashboard has /dashboard and /dashboard/jobs/ID",
        ))
        .into_response()
    } else {
        let mut res = Page::from(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "the dashboard is read-only: its pages answer GET",
        ))
        .into_response();
        res.headers_mut().insert(
            axum::http::header::ALLOW,
            axum::http::HeaderValue::from_static("GET,HEAD"),
        );
        res
    }
}

/// An HTML page, or an error shown as one.
struct Page {
    status: StatusCode,
    title: String,
    body: String,
    refresh: bool,
    /// Ask the browser for credentials (a 401).
    challenge: bool,
}

impl Page {
    fn ok(title: impl Into<String>, body: String) -> Page {
        Page {
            status: StatusCode::OK,
            title: title.into(),
            body,
            refresh: false,
            challenge: false,
        }
    }
}

impl From<ApiError> for Page {
    fn from(e: ApiError) -> Page {
        let status = e.status();
        Page {
            status,
            title: format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ),
            body: format!(
                "<p class=\"error\">{}</p>{}",
                // The browser asks for a password, not a header.
                esc(
                    if status == StatusCode::UNAUTHORIZED && e.message().starts_with("missing") {
                        "not signed in: no token was given"
                    } else {
                        e.message()
                    }
                ),
                if status == StatusCode::UNAUTHORIZED {
                    "<p>Sign in with an API token as the password (any user name); create one \
                     with <code>switchyard token create --tenant NAME</code>.</p>"
                } else {
                    "<p><a href=\"/dashboard\">Back to the dashboard</a></p>"
                }
            ),
            refresh: false,
            challenge: status == StatusCode::UNAUTHORIZED,
        }
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let refresh = if self.refresh {
            format!("<meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">")
        } else {
            String::new()
        };
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{refresh}\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title} · Switchyard</title><style>{STYLE}</style></head>\
             <body><header><a href=\"/dashboard\">Switchyard</a></header><main>\
             <h1>{title}</h1>{body}</main></body></html>\n",
            title = esc(&self.title),
            body = self.body,
        );
        let mut res = (self.status, html).into_response();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        // No script, no frames, nothing fetched from elsewhere: injected markup could do nothing.
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; \
                 form-action 'none'; base-uri 'none'",
            ),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"switchyard\", charset=\"UTF-8\""),
            );
        }
        res
    }
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2327}\
header{background:#1d2327;padding:.6em 1.2em}header a{color:#fff;font-weight:600;\
text-decoration:none}main{padding:0 1.2em 2em}table{border-collapse:collapse;margin:.5em 0 1.5em}\
th,td{border-bottom:1px solid #dcdcde;padding:.3em .7em;text-align:left;vertical-align:top}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}.bar{background:#dcdcde;width:8em;\
height:.8em;display:inline-block}.bar span{background:#2271b1;height:100%;display:block}\
.error{color:#b32d2e;font-weight:600}nav a{margin-right:.8em}nav a.on{font-weight:700;\
text-decoration:none;color:#1d2327}pre{background:#f6f7f7;padding:.6em;overflow-x:auto}\
.state-running{color:#00a32a}.state-failed,.state-rejected{color:#b32d2e}.muted{color:#787c82}";

/// `text` with the characters HTML gives a meaning to replaced by references, and control
/// characters (a NUL, a terminal's escape sequences) shown as U+FFFD rather than sent raw.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A non-negative cursor parameter (`after`, `events_after`), 0 when absent.
fn cursor(q: &HashMap<String, String>, name: &str) -> Result<i64, ApiError> {
    crate::http::int_param(q, name, 0, "a cursor from a page's `next` or `more` link")
        .map(Option::unwrap_or_default)
}

/// The caller, for a page: the token's principal, which must not be a node agent's (that is a
/// 401, so that the browser asks for other credentials).
fn signed_in(auth: Result<Auth, ApiError>) -> Result<Auth, ApiError> {
    let auth = auth?;
    if auth.tenant_api().is_err() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this is a node agent's token: the dashboard needs a tenant or admin token",
        ));
    }
    Ok(auth)
}

/// Which jobs the overview lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Show {
    /// Pending and running (the default).
    Active,
    All,
    Only(JobState),
}

impl Show {
    const CHOICES: [(&'static str, Show); 8] = [
        ("active", Show::Active),
        ("pending", Show::Only(JobState::Pending)),
        ("running", Show::Only(JobState::Running)),
        ("done", Show::Only(JobState::Done)),
        ("failed", Show::Only(JobState::Failed)),
        ("cancelled", Show::Only(JobState::Cancelled)),
        ("rejected", Show::Only(JobState::Rejected)),
        ("all", Show::All),
    ];

    fn parse(text: Option<&str>) -> Result<Show, ApiError> {
        let Some(text) = text else {
            return Ok(Show::Active);
        };
        Self::CHOICES
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, show)| *show)
            .ok_or_else(|| {
                ApiError::bad(format!(
                    "show must be one of {}",
                    Self::CHOICES.map(|(name, _)| name).join(", ")
                ))
            })
    }

    fn name(self) -> &'static str {
        Self::CHOICES
            .iter()
            .find(|(_, show)| *show == self)
            .map_or("active", |(name, _)| name)
    }

    fn states(self) -> Vec<JobState> {
        match self {
            Show::Active => vec![JobState::Pending, JobState::Running],
            Show::All => Vec::new(),
            Show::Only(state) => vec![state],
        }
    }
}

async fn overview(State(s): State<AppState>, auth: Result<Auth, ApiError>, q: QueryParams) -> Page {
    match render_overview(&s, auth, q).await {
        Ok(page) => page,
        Err(e) => e.into(),
    }
}

async fn render_overview(
    s: &AppState,
    auth: Result<Auth, ApiError>,
    q: QueryParams,
) -> Result<Page, ApiError> {
    let auth = signed_in(auth)?;
    let q = crate::http::query(q, &["show", "after"])?;
    let show = Show::parse(q.get("show").map(String::as_str))?;
    let after = cursor(&q, "after")?;
    let scope = auth.scope().map(str::to_owned);
    let mut body = String::new();
    let who = match &scope {
        Some(tenant) => format!("tenant <b>{}</b>", esc(tenant)),
        None => format!("<b>{}</b> (admin: every tenant)", esc(&auth.0.tenant)),
    };
    let _ = write!(
        body,
        "<p>Fleet <b>{}</b> · signed in as {who} · reloads every {REFRESH_S} s · \
         <span class=\"muted\">{} UTC</span></p>",
        esc(&s.fleet.name),
        utc(crate::leader::now_ms())
    );

    // The clusters: what the whole fleet holds and uses (as `GET /v1/fleet`).
    let usage = s.store.cluster_usage().await?;
    body.push_str(
        "<h2>Clusters</h2><table><tr><th>cluster</th><th>provider</th><th>region</th>\
         <th>accelerator</th><th class=\"n\">nodes</th><th class=\"n\">accelerators</th>\
         <th class=\"n\">busy</th><th>use</th><th class=\"n\">running jobs</th></tr>",
    );
    for c in &s.fleet.clusters {
        let u = usage.iter().find(|u| u.cluster == c.name);
        let busy = u.map_or(0, |u| u.allocated);
        let total = c.accelerators();
        let share = if total == 0 {
            0.0
        } else {
            (busy as f64 / total as f64).clamp(0.0, 1.0)
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{total}</td><td class=\"n\">{busy}</td><td><span class=\"bar\" \
             title=\"{:.1}%\"><span style=\"width:{:.1}%\"></span></span> {:.1}%</td>\
             <td class=\"n\">{}</td></tr>",
            esc(&c.name),
            esc(&c.provider),
            esc(&c.region),
            esc(c.accelerator.name),
            c.nodes,
            share * 100.0,
            share * 100.0,
            share * 100.0,
            u.map_or(0, |u| u.running),
        );
    }
    body.push_str("</table>");

    // The teams the caller may see: what they run and hold, and their quotas.
    let teams = crate::http::tenant_states(s, &auth).await?;
    body.push_str(
        "<h2>Teams</h2><table><tr><th>team</th><th>organisation</th><th class=\"n\">pending</th>\
         <th class=\"n\">running</th><th class=\"n\">accelerators held</th><th>quotas</th></tr>",
    );
    for t in &teams {
        let quotas = t
            .quotas
            .iter()
            .map(|q| {
                format!(
                    "{}: {} guaranteed, {}",
                    esc(q.cluster.as_deref().unwrap_or("fleet-wide")),
                    q.accelerators,
                    q.borrowing_limit.map_or_else(
                        || "may borrow any idle".to_owned(),
                        |b| format!("may borrow {b} more")
                    )
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&t.tenant),
            esc(t.organisation.as_deref().unwrap_or("")),
            t.pending,
            t.running,
            t.allocated,
            if quotas.is_empty() {
                "<span class=\"muted\">none</span>".to_owned()
            } else {
                quotas
            }
        );
    }
    body.push_str("</table>");

    // The caller's jobs.
    body.push_str("<h2>Jobs <span class=\"muted\">(latest submitted first)</span></h2><nav>");
    for (name, choice) in Show::CHOICES {
        let _ = write!(
            body,
            "<a href=\"/dashboard?show={name}\"{}>{name}</a>",
            if choice == show { " class=\"on\"" } else { "" }
        );
    }
    body.push_str("</nav>");
    let filter = JobFilter {
        tenant: scope.clone(),
        states: show.states(),
        after: (after > 0).then_some(after),
        newest_first: true,
        limit: JOBS_PER_PAGE,
        spec_bytes: Some(crate::api::LIST_SPEC_BYTES),
        ..JobFilter::default()
    };
    let rows = s.store.list_jobs(&filter.with_lookahead()).await?;
    let (jobs, next) = filter.page(rows);
    if jobs.is_empty() {
        let _ = write!(
            body,
            "<p class=\"muted\">No {} jobs{}.</p>",
            if show == Show::All { "" } else { show.name() },
            if after > 0 { " after this point" } else { "" }
        );
    } else {
        jobs_table(&mut body, &jobs, scope.is_none());
    }
    if let Some(next) = next {
        let _ = write!(
            body,
            "<p><a href=\"/dashboard?show={}&amp;after={next}\">Next page →</a></p>",
            show.name(),
        );
    }
    let mut page = Page::ok("Fleet and jobs", body);
    page.refresh = true;
    Ok(page)
}

fn jobs_table(body: &mut String, jobs: &[JobRecord], with_tenant: bool) {
    let _ = write!(
        body,
        "<table><tr><th>job</th><th>name</th>{}<th>kind</th><th>state</th>\
         <th class=\"n\">accelerators</th><th>cluster</th><th>why</th><th>submitted (UTC)</th></tr>",
        if with_tenant { "<th>tenant</th>" } else { "" }
    );
    for j in jobs {
        let _ = write!(
            body,
            "<tr><td><a href=\"/dashboard/jobs/{id}\">{id}</a></td><td>{}</td>{}<td>{}</td>\
             <td class=\"state-{state}\">{state}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td>\
             <td>{}</td></tr>",
            esc(j.name.as_deref().unwrap_or("")),
            if with_tenant {
                format!("<td>{}</td>", esc(&j.tenant))
            } else {
                String::new()
            },
            esc(&j.kind),
            if j.state == JobState::Running {
                format!("{} of {}", j.allocated, j.accelerators)
            } else {
                j.accelerators.to_string()
            },
            esc(j.cluster.as_deref().unwrap_or("")),
            esc(&j.reason),
            utc(j.submitted_ms),
            id = esc(&j.id),
            state = j.state.as_str(),
        );
    }
    body.push_str("</table>");
}

async fn job_page(
    State(s): State<AppState>,
    auth: Result<Auth, ApiError>,
    id: Result<Path<String>, PathRejection>,
    q: QueryParams,
) -> Page {
    let Ok(Path(id)) = id else {
        return ApiError::not_found("job with such an id").into();
    };
    match render_job(&s, auth, &id, q).await {
        Ok(page) => page,
        Err(e) => e.into(),
    }
}

async fn render_job(
    s: &AppState,
    auth: Result<Auth, ApiError>,
    id: &str,
    q: QueryParams,
) -> Result<Page, ApiError> {
    let auth = signed_in(auth)?;
    let q = crate::http::query(q, &["after", "events_after"])?;
    let after = cursor(&q, "after")?;
    let events_after = cursor(&q, "events_after")?;
    crate::http::check_id(id)?;
    // Another tenant's job is not found, as on /v1.
    let job = s
        .store
        .get_job(id, auth.scope())
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("job {id}")))?;
    let mut body = String::new();
    let field = |body: &mut String, name: &str, value: String| {
        let _ = write!(body, "<tr><th>{name}</th><td>{value}</td></tr>");
    };
    body.push_str("<table>");
    field(&mut body, "id", esc(&job.id));
    field(&mut body, "name", esc(job.name.as_deref().unwrap_or("")));
    field(&mut body, "tenant", esc(&job.tenant));
    field(&mut body, "kind", esc(&job.kind));
    field(
        &mut body,
        "state",
        format!(
            "<span class=\"state-{s}\">{s}</span>{}",
            if job.cancel_requested && !job.state.is_final() {
                " (cancellation requested)"
            } else {
                ""
            },
            s = job.state.as_str()
        ),
    );
    field(&mut body, "why", esc(&job.reason));
    field(
        &mut body,
        "accelerators",
        format!("{} ({} held now)", job.accelerators, job.allocated),
    );
    field(
        &mut body,
        "cluster",
        esc(job.cluster.as_deref().unwrap_or("")),
    );
    field(&mut body, "priority", job.priority.to_string());
    field(&mut body, "restarts", job.restarts.to_string());
    if job.kind == "training" && job.work_done > 0.0 {
        field(
            &mut body,
            "progress kept",
            format!(
                "{:.1}% <span class=\"muted\">(checkpointed, as the scheduler predicts it)</span>",
                job.work_done * 100.0
            ),
        );
    }
    field(
        &mut body,
        "submitted",
        format!("{} UTC", utc(job.submitted_ms)),
    );
    if let Some(ms) = job.started_ms {
        field(&mut body, "first started", format!("{} UTC", utc(ms)));
    }
    if let Some(ms) = job.finished_ms {
        field(&mut body, "finished", format!("{} UTC", utc(ms)));
    }
    body.push_str("</table>");
    let _ = write!(
        body,
        "<h2>Submission</h2><pre>{}</pre>",
        esc(&serde_json::from_str::<serde_json::Value>(&job.spec)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| job.spec.clone()))
    );

    let events = s
        .store
        .events(&job.id, auth.scope(), events_after, EVENTS_PER_PAGE)
        .await?
        .unwrap_or_default();
    // Each section pages on its own cursor; a link to one keeps the other where it is.
    let job_link = |events_after: i64, after: i64| {
        format!(
            "/dashboard/jobs/{}?events_after={events_after}&amp;after={after}",
            esc(&job.id)
        )
    };
    body.push_str(
        "<h2>Events</h2><table><tr><th>at (UTC)</th><th>event</th><th>cluster</th>\
         <th>what</th></tr>",
    );
    for e in &events {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            utc(e.at_ms),
            esc(&e.kind),
            esc(e.cluster.as_deref().unwrap_or("")),
            esc(&e.message)
        );
    }
    body.push_str("</table>");
    if events.is_empty() && events_after > 0 {
        body.push_str("<p class=\"muted\">No more events yet.</p>");
    }
    if let Some(last) = events
        .last()
        .filter(|_| events.len() as i64 == EVENTS_PER_PAGE)
    {
        let _ = write!(
            body,
            "<p><a href=\"{}\">More events →</a></p>",
            job_link(last.cursor, after)
        );
    }

    let lines = s
        .store
        .logs(&LogQuery {
            after,
            limit: LINES_PER_PAGE,
            ..LogQuery::new(job.id.clone())
        })
        .await?;
    body.push_str("<h2>Output</h2>");
    if lines.is_empty() {
        body.push_str(if after > 0 {
            "<p class=\"muted\">No more output yet.</p>"
        } else {
            "<p class=\"muted\">No output stored (jobs without a command, and runs on Slurm \
             before their output is read, have none).</p>"
        });
    } else {
        body.push_str("<pre>");
        for l in &lines {
            // A service's lines say which replica wrote them, as `switchyard logs` does.
            let whose = match switchyard_store::replica_of_assignment(&l.assignment_id) {
                Some(replica) => format!("replica {} rank {}", esc(replica), l.rank),
                None => format!("attempt {} rank {}", l.attempt, l.rank),
            };
            let _ = writeln!(
                body,
                "<span class=\"muted\">[{whose} {}]</span> {}",
                esc(&l.stream),
                esc(&l.line)
            );
        }
        body.push_str("</pre>");
        if let Some(last) = lines
            .last()
            .filter(|_| lines.len() as i64 == LINES_PER_PAGE)
        {
            let _ = write!(
                body,
                "<p><a href=\"{}\">More output →</a></p>",
                job_link(events_after, last.cursor)
            );
        }
    }
    // The page that reaches the end of the output so far is followed while the job is live.
    let at_the_end = (lines.len() as i64) < LINES_PER_PAGE;
    let mut page = Page::ok(
        format!("Job {}", job.name.as_deref().unwrap_or(&job.id)),
        body,
    );
    // A job still pending or running is followed on the page that shows its latest output.
    page.refresh = at_the_end && !job.state.is_final();
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            esc("<script>alert('x' & \"y\")</script>"),
            "&lt;script&gt;alert(&#39;x&#39; &amp; &quot;y&quot;)&lt;/script&gt;"
        );
        assert_eq!(esc("plain ü"), "plain ü");
        assert_eq!(esc("a\u{0}b\u{1b}[31m\tc\n"), "a\u{fffd}b\u{fffd}[31m\tc\n");
    }

    /// A job page shows a page of events at a time and links to the next, keeping the
    /// output's place; the last page says there are no more.
    #[tokio::test]
    async fn events_page_on_their_own_cursor() {
        use switchyard_store::{Batch, NewEvent, Principal, StoreRead as _, StoreWrite as _};
        let store = switchyard_store::connect("sqlite::memory:")
            .await
            .expect("store");
        let job = store
            .insert_job(&switchyard_store::testing::batch_job(
                "j-0000000000000001",
                "research",
                "{}",
                0,
            ))
            .await
            .expect("job");
        let lease = store
            .acquire_lease("test", "", 1_000_000, 60_000)
            .await
            .expect("lease")
            .expect("free");
        // The submission wrote the job's first events already.
        let written = store
            .events(&job.id, None, 0, 100)
            .await
            .expect("events")
            .expect("the job")
            .len() as i64;
        let total = EVENTS_PER_PAGE + 20;
        let events = (1..=total)
            .map(|n| NewEvent {
                job_id: job.id.clone(),
                at_ms: n,
                kind: "waiting".into(),
                cluster: None,
                message: format!("event number {n}."),
            })
            .collect();
        store
            .apply(
                &lease,
                &Batch {
                    events,
                    ..Batch::default()
                },
            )
            .await
            .expect("events");
        let fleet = std::sync::Arc::new(switchyard_core::Fleet::default_fleet());
        let state = AppState::new(store, fleet, Default::default(), Default::default());
        let auth = || {
            Ok(Auth(Principal {
                tenant: "research".into(),
                admin: false,
                agent: false,
            }))
        };
        let params = |pairs: &[(&str, &str)]| {
            Ok(axum::extract::Query(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ))
        };
        let first = render_job(&state, auth(), &job.id, params(&[("after", "7")]))
            .await
            .expect("page");
        // Event number n is the job's event (cursor) written + n.
        let last_shown = EVENTS_PER_PAGE - written;
        assert!(first.body.contains("event number 1."));
        assert!(first.body.contains(&format!("event number {last_shown}.")));
        assert!(
            !first
                .body
                .contains(&format!("event number {}.", last_shown + 1))
        );
        let next = format!("?events_after={EVENTS_PER_PAGE}&amp;after=7\">More events");
        assert!(first.body.contains(&next), "no link to the next events");

        let cursor = EVENTS_PER_PAGE.to_string();
        let second = render_job(
            &state,
            auth(),
            &job.id,
            params(&[("events_after", &cursor), ("after", "7")]),
        )
        .await
        .expect("page");
        assert!(!second.body.contains("event number 1."));
        assert!(second.body.contains(&format!("event number {total}.")));
        assert!(!second.body.contains("More events"));

        let past = (written + total).to_string();
        let end = render_job(&state, auth(), &job.id, params(&[("events_after", &past)]))
            .await
            .expect("page");
        assert!(end.body.contains("No more events yet."));
        let bad = render_job(&state, auth(), &job.id, params(&[("events_after", "x")])).await;
        assert!(bad.is_err());
    }

    #[test]
    fn every_choice_of_jobs_parses_back() {
        for (name, show) in Show::CHOICES {
            assert_eq!(Show::parse(Some(name)).ok(), Some(show));
            assert_eq!(show.name(), name);
        }
        assert_eq!(Show::parse(None).ok(), Some(Show::Active));
        assert!(Show::parse(Some("runing")).is_err());
    }
}
