//! The routes: GET pages, POST actions (each behind the CSRF check and read-only mode),
//! the SSE feed, the static assets.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::StreamExt;
use serde::Deserialize;

use crate::aijob::{self, Failed};
use crate::live::now_ms;
use crate::security::{self, Posted};
use crate::state::{AppState, BulkRetry};
use crate::views::{self, Ctx};

/// Jobs per page of a queue.
const PAGE: usize = 25;
/// Most records a filtered page looks at (group or schedule filters are applied to pages
/// of JOB.LIST, so a page's work stays bounded).
const FILTER_SCAN: usize = 500;
/// Groups checked per queue for "at cap" on the overview (the first page of QUEUE.GROUPS).
const CAP_CHECK: usize = 100;
/// Jobs retried per batch by "retry all failed".
const RETRY_BATCH: usize = 100;
/// Events-stream entries a job page reads from each of the job's instants (at most four).
const HISTORY_WINDOW: usize = 250;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/q/{q}", get(queue_page))
        .route("/q/{q}/job/{id}", get(job_page))
        .route("/q/{q}/find", get(find_job))
        .route("/q/{q}/schedules", get(schedules_page))
        .route("/q/{q}/groups", get(groups_page))
        .route("/q/{q}/purge", get(purge_page).post(purge))
        .route("/q/{q}/pause", post(pause))
        .route("/q/{q}/resume", post(resume))
        .route("/q/{q}/jobs", post(job_actions))
        .route("/q/{q}/retry-failed", post(retry_failed))
        .route("/q/{q}/groupcap", post(group_cap))
        .route("/q/{q}/schedules/{name}/{action}", post(schedule_action))
        .route("/ratelimits", get(ratelimits_page))
        .route("/live/{q}", get(live))
        .route("/static/app.css", get(|| asset("text/css; charset=utf-8", include_str!("../assets/app.css"))))
        .route("/static/app.js", get(|| asset("text/javascript; charset=utf-8", include_str!("../assets/app.js"))))
        .route("/static/favicon.svg", get(|| asset("image/svg+xml", views::FAVICON)))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), security::refuse_changes_when_read_only))
        .layer(axum::middleware::from_fn(security::headers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), security::require_credential))
        .with_state(state)
}

async fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=300")], body).into_response()
}

/// A page that could not be made: its status and why, rendered as a page.
pub struct PageError(StatusCode, String, Ctx);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = match self.0 {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::BAD_REQUEST => "Bad request",
            _ => "Redis did not answer as expected",
        };
        (self.0, Html(views::error_page(&self.2, title, &self.1).into_string())).into_response()
    }
}

impl Ctx {
    fn fail(self, e: Failed) -> PageError {
        PageError(StatusCode::BAD_GATEWAY, e.0, self)
    }
    fn bad(self, why: impl Into<String>) -> PageError {
        PageError(StatusCode::BAD_REQUEST, why.into(), self)
    }
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let query: Vec<(String, String)> =
            serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).unwrap_or_default();
        let flash = query.iter().find_map(|(k, v)| match k.as_str() {
            "msg" => Some((false, views::clip(v, 200))),
            "err" => Some((true, views::clip(v, 200))),
            _ => None,
        });
        Ok(Ctx {
            csrf: security::csrf_for(&parts.headers, &parts.extensions),
            read_only: state.config.read_only,
            cluster: state.backend.is_cluster(),
            flash,
            now_ms: now_ms(),
        })
    }
}

/// Queue names, ids, group and schedule names: aijob's alphabet, checked before use.
fn valid_name(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

fn check_queue(ctx: Ctx, q: &str) -> Result<Ctx, PageError> {
    if valid_name(q) {
        Ok(ctx)
    } else {
        Err(ctx.bad("a queue name is 1 to 128 characters of [A-Za-z0-9_.:-]"))
    }
}

type Page = Result<Html<String>, PageError>;

async fn overview(State(app): State<AppState>, ctx: Ctx) -> Page {
    let (names, error) = match aijob::queues(&app.backend, 1_000).await {
        Ok(n) => (n, None),
        Err(e) => (Vec::new(), Some(e.0)),
    };
    // one QUEUE.STATS (and for queues with groups one QUEUE.GROUPS page) per queue, sent
    // together over the multiplexed connection
    let rows =
        futures::stream::iter(names.into_iter().map(|q| queue_row(&app, q))).buffered(64).collect::<Vec<_>>().await;
    let rows = match rows.into_iter().collect::<Result<Vec<_>, Failed>>() {
        Ok(r) => r,
        Err(e) => return Err(ctx.fail(e)),
    };
    Ok(Html(views::overview(&ctx, &rows, error.as_deref()).into_string()))
}

async fn queue_row(app: &AppState, q: String) -> Result<views::QueueRow, Failed> {
    let stats = aijob::stats(&app.backend, &q).await?;
    let capped = if stats.get("groups").copied().unwrap_or(0) > 0 {
        aijob::groups(&app.backend, &q, "0", CAP_CHECK).await?.1.into_iter().filter(|g| g.at_cap()).collect()
    } else {
        Vec::new()
    };
    let samples = samples_until_now(app, &q, &stats);
    Ok(views::QueueRow { name: q, stats, samples, capped, groups_checked: CAP_CHECK })
}

/// The sampled history, plus the totals this very page read: the chart's last minute is
/// as fresh as the page.
fn samples_until_now(
    app: &AppState,
    q: &str,
    stats: &std::collections::BTreeMap<String, i64>,
) -> Vec<crate::live::Sample> {
    crate::live::first_look(&app.backend, &app.history, q);
    let mut samples = app.history.samples(q);
    samples.push(crate::live::Sample {
        at_ms: now_ms(),
        completed: stats.get("completed").copied().unwrap_or(0),
        failed: stats.get("failed").copied().unwrap_or(0),
    });
    samples
}

#[derive(Deserialize)]
struct JobsQuery {
    status: Option<String>,
    cursor: Option<String>,
    group: Option<String>,
    schedule: Option<String>,
}

async fn queue_page(State(app): State<AppState>, Path(q): Path<String>, Query(p): Query<JobsQuery>, ctx: Ctx) -> Page {
    let ctx = check_queue(ctx, &q)?;
    let status = p.status.filter(|s| !s.is_empty());
    if status.as_deref().is_some_and(|s| !aijob::STATUSES.contains(&s)) {
        return Err(ctx.bad(aijob::bad_status()));
    }
    let cursor =
        p.cursor.filter(|c| c.bytes().all(|b| b.is_ascii_digit()) && !c.is_empty()).unwrap_or_else(|| "0".into());
    let group = p.group.unwrap_or_default().trim().to_string();
    let schedule = p.schedule.unwrap_or_default().trim().to_string();
    let stats = match aijob::stats(&app.backend, &q).await {
        Ok(s) => s,
        Err(e) => return Err(ctx.fail(e)),
    };
    let filtered = !group.is_empty() || !schedule.is_empty();
    let mut jobs = Vec::new();
    let mut next = cursor.clone();
    let mut scanned = 0;
    loop {
        let want = if filtered { 100 } else { PAGE };
        let (n, page) = match aijob::jobs(&app.backend, &q, status.as_deref(), &next, want).await {
            Ok(r) => r,
            Err(e) => return Err(ctx.fail(e)),
        };
        scanned += page.len();
        next = n;
        jobs.extend(page.into_iter().filter(|j| {
            (group.is_empty() || aijob::text(j, "group") == group)
                && (schedule.is_empty() || aijob::text(j, "schedule") == schedule)
        }));
        if !filtered || jobs.len() >= PAGE || next == "0" || scanned >= FILTER_SCAN {
            break;
        }
    }
    let bulk = app.bulk.lock().ok().and_then(|m| m.get(&q).cloned());
    let samples = samples_until_now(&app, &q, &stats);
    let view = views::JobsView {
        q: &q,
        stats: &stats,
        samples: &samples,
        status: status.as_deref(),
        group: &group,
        schedule: &schedule,
        cursor: &cursor,
        next: &next,
        jobs: &jobs,
        scanned,
        bulk,
    };
    Ok(Html(views::queue_jobs(&ctx, &view).into_string()))
}

async fn job_page(State(app): State<AppState>, Path((q, id)): Path<(String, String)>, ctx: Ctx) -> Page {
    let ctx = check_queue(ctx, &q)?;
    if !valid_name(&id) {
        return Err(ctx.bad("a job id is 1 to 128 characters of [A-Za-z0-9_.:-]"));
    }
    let job = match aijob::job(&app.backend, &q, &id).await {
        Ok(Some(j)) => j,
        Ok(None) => {
            let why = format!("There is no job {id} in queue {q}: it was deleted, or its retention ended.");
            return Err(PageError(StatusCode::NOT_FOUND, why, ctx));
        }
        Err(e) => return Err(ctx.fail(e)),
    };
    let at = |k: &str| job.get(k).and_then(|v| v.as_i64()).unwrap_or(0);
    let instants = [at("created_at"), at("started_at"), at("updated_at"), at("finished_at")];
    let (history, read) = aijob::history(&app.backend, &q, &id, &instants, HISTORY_WINDOW).await.unwrap_or_default();
    Ok(Html(views::job(&ctx, &q, &id, &job, &history, read).into_string()))
}

#[derive(Deserialize)]
struct FindQuery {
    id: Option<String>,
}

/// "Open a job by its id": the job's page (which says so when there is no such job).
async fn find_job(Path(q): Path<String>, Query(p): Query<FindQuery>, ctx: Ctx) -> Result<Response, PageError> {
    let ctx = check_queue(ctx, &q)?;
    let id = p.id.unwrap_or_default().trim().to_string();
    if !valid_name(&id) {
        return Err(ctx.bad("a job id is 1 to 128 characters of [A-Za-z0-9_.:-]"));
    }
    Ok(Redirect::to(&format!("/q/{q}/job/{id}")).into_response())
}

async fn schedules_page(State(app): State<AppState>, Path(q): Path<String>, ctx: Ctx) -> Page {
    let ctx = check_queue(ctx, &q)?;
    let stats = aijob::stats(&app.backend, &q).await;
    let list = aijob::schedules(&app.backend, &q).await;
    match (stats, list) {
        (Ok(s), Ok(l)) => Ok(Html(views::schedules(&ctx, &q, &s, &l).into_string())),
        (Err(e), _) | (_, Err(e)) => Err(ctx.fail(e)),
    }
}

#[derive(Deserialize)]
struct CursorQuery {
    cursor: Option<String>,
}

async fn groups_page(
    State(app): State<AppState>,
    Path(q): Path<String>,
    Query(p): Query<CursorQuery>,
    ctx: Ctx,
) -> Page {
    let ctx = check_queue(ctx, &q)?;
    let cursor =
        p.cursor.filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit())).unwrap_or_else(|| "0".into());
    let stats = aijob::stats(&app.backend, &q).await;
    let groups = aijob::groups(&app.backend, &q, &cursor, 50).await;
    match (stats, groups) {
        (Ok(s), Ok((next, g))) => Ok(Html(views::groups(&ctx, &q, &s, &g, &cursor, &next).into_string())),
        (Err(e), _) | (_, Err(e)) => Err(ctx.fail(e)),
    }
}

#[derive(Deserialize)]
struct PurgeQuery {
    status: Option<String>,
}

async fn purge_page(State(app): State<AppState>, Path(q): Path<String>, Query(p): Query<PurgeQuery>, ctx: Ctx) -> Page {
    let ctx = check_queue(ctx, &q)?;
    let status = p.status.unwrap_or_else(|| "queued".into());
    if !aijob::STATUSES.contains(&status.as_str()) {
        return Err(ctx.bad(aijob::bad_status()));
    }
    match aijob::stats(&app.backend, &q).await {
        Ok(s) => Ok(Html(views::purge_confirm(&ctx, &q, &s, &status).into_string())),
        Err(e) => Err(ctx.fail(e)),
    }
}

#[derive(Deserialize)]
struct PeekQuery {
    keys: Option<String>,
}

async fn ratelimits_page(State(app): State<AppState>, Query(p): Query<PeekQuery>, ctx: Ctx) -> Page {
    let spec = p.keys.unwrap_or_default();
    let mut rows = Vec::new();
    // at most 50 keys a page: each is one PEEK
    for line in spec.lines().map(str::trim).filter(|l| !l.is_empty()).take(50) {
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let reply = aijob::peek(&app.backend, &words).await.map_err(|e| e.0);
        rows.push(views::PeekRow { line: line.to_string(), reply });
    }
    Ok(Html(views::ratelimits(&ctx, &spec, &rows).into_string()))
}

// ---- actions ----

/// Where to go after an action: the form's `next` (a path of this site only), with a
/// message for the page to show.
fn back(form: &Posted, fallback: &str, outcome: Result<String, String>) -> Response {
    let next = form.get("next").filter(|n| local_path(n));
    let next = next.unwrap_or(fallback);
    let (k, v) = match outcome {
        Ok(m) => ("msg", m),
        Err(e) => ("err", e),
    };
    let sep = if next.contains('?') { '&' } else { '?' };
    let q = serde_urlencoded::to_string([(k, v)]).unwrap_or_default();
    Redirect::to(&format!("{next}{sep}{q}")).into_response()
}

/// A path of this site: no scheme, no other host (`//x`, `/\\x`), nothing a browser
/// would strip or turn into a host.
fn local_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.starts_with("//")
        && p.len() <= 2_000
        && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_.:-?=&%+~".contains(&b))
}

fn refuse(why: &str) -> Response {
    (StatusCode::BAD_REQUEST, format!("aijob-web: {why}\n")).into_response()
}

async fn pause(State(app): State<AppState>, Path(q): Path<String>, form: Posted) -> Response {
    queue_switch(&app, &q, &form, "QUEUE.PAUSE", "paused: claims hand out nothing").await
}

async fn resume(State(app): State<AppState>, Path(q): Path<String>, form: Posted) -> Response {
    queue_switch(&app, &q, &form, "QUEUE.RESUME", "resumed").await
}

async fn queue_switch(app: &AppState, q: &str, form: &Posted, command: &str, done: &str) -> Response {
    if !valid_name(q) {
        return refuse("bad queue name");
    }
    let r = aijob::act(&app.backend, command, &[q]).await.map(|_| format!("Queue {q} {done}.")).map_err(|e| e.0);
    back(form, &format!("/q/{q}"), r)
}

/// Retry, cancel or delete: one job (`one` = "action id") or the selected ones.
async fn job_actions(State(app): State<AppState>, Path(q): Path<String>, form: Posted) -> Response {
    if !valid_name(&q) {
        return refuse("bad queue name");
    }
    let (action, ids): (String, Vec<String>) = match form.get("one").and_then(|o| o.split_once(' ')) {
        Some((a, id)) => (a.to_string(), vec![id.to_string()]),
        None => {
            (form.get("action").unwrap_or("").to_string(), form.all("id").into_iter().map(str::to_string).collect())
        }
    };
    let command = match action.as_str() {
        "retry" => "JOB.RETRY",
        "cancel" => "JOB.CANCEL",
        "delete" => "JOB.DELETE",
        _ => return refuse("action must be retry, cancel or delete"),
    };
    if ids.is_empty() {
        return back(&form, &format!("/q/{q}"), Err("Select at least one job.".into()));
    }
    if ids.len() > 1_000 || !ids.iter().all(|i| valid_name(i)) {
        return refuse("ids must be at most 1000 valid job ids");
    }
    let (mut changed, mut errors) = (0, Vec::new());
    for id in &ids {
        match aijob::act(&app.backend, command, &[&q, id]).await {
            Ok(r) if r == "1" => changed += 1,
            Ok(_) => {}
            Err(e) => errors.push(format!("{id}: {e}")),
        }
    }
    let verb = match action.as_str() {
        "retry" => "retried",
        "cancel" => "canceled",
        _ => "deleted",
    };
    let msg = format!("{changed} of {} job{} {verb}.", ids.len(), if ids.len() == 1 { "" } else { "s" });
    let outcome = if errors.is_empty() { Ok(msg) } else { Err(format!("{msg} {}", errors.join("; "))) };
    back(&form, &format!("/q/{q}"), outcome)
}

/// Retry every failed job of the queue, in batches, in the background; the queue page
/// shows the progress.
async fn retry_failed(State(app): State<AppState>, Path(q): Path<String>, form: Posted) -> Response {
    if !valid_name(&q) {
        return refuse("bad queue name");
    }
    let running = app.bulk.lock().map(|m| m.get(&q).is_some_and(|b| !b.finished)).unwrap_or(false);
    if !running {
        let total = aijob::stats(&app.backend, &q).await.ok().and_then(|s| s.get("error").copied()).unwrap_or(0);
        if let Ok(mut m) = app.bulk.lock() {
            m.insert(q.clone(), BulkRetry { total, ..Default::default() });
        }
        tokio::spawn(retry_all(app.clone(), q.clone(), total));
    }
    back(&form, &format!("/q/{q}?status=error"), Ok("Retrying the failed jobs in batches; progress below.".into()))
}

async fn retry_all(app: AppState, q: String, total: i64) {
    let update = |f: &dyn Fn(&mut BulkRetry)| {
        if let Ok(mut m) = app.bulk.lock() {
            if let Some(b) = m.get_mut(&q) {
                f(b);
            }
        }
    };
    let mut retried = 0i64;
    // At most the jobs that had failed when it began: a job that fails again meanwhile
    // is not retried round and round.
    while retried < total {
        let want = RETRY_BATCH.min((total - retried) as usize);
        let page = match aijob::jobs(&app.backend, &q, Some("error"), "0", want).await {
            Ok((_, p)) => p,
            Err(e) => {
                update(&|b| b.error = Some(e.0.clone()));
                break;
            }
        };
        if page.is_empty() {
            break;
        }
        let mut batch = 0;
        for j in &page {
            let id = aijob::text(j, "id");
            if let Ok(r) = aijob::act(&app.backend, "JOB.RETRY", &[&q, &id]).await {
                batch += i64::from(r == "1");
            }
        }
        retried += batch;
        update(&|b| b.retried = retried);
        if batch == 0 {
            break;
        }
    }
    update(&|b| b.finished = true);
}

async fn purge(State(app): State<AppState>, Path(q): Path<String>, form: Posted) -> Response {
    if !valid_name(&q) {
        return refuse("bad queue name");
    }
    let status = form.get("status").unwrap_or("queued");
    if !aijob::STATUSES.contains(&status) {
        return refuse(&aijob::bad_status());
    }
    if form.get("confirm").map(str::trim) != Some(q.as_str()) {
        let page = format!("/q/{q}/purge?status={status}");
        return back(
            &Posted(vec![("next".into(), page.clone())]),
            &page,
            Err("Type the queue's name to confirm the purge.".into()),
        );
    }
    let r = aijob::act(&app.backend, "QUEUE.PURGE", &[&q, "STATUS", status])
        .await
        .map(|n| format!("Purged {n} {status} jobs of {q}."))
        .map_err(|e| e.0);
    back(&Posted(vec![]), &format!("/q/{q}"), r)
}

async fn group_cap(State(app): State<AppState>, Path(q): Path<String>, form: Posted) -> Response {
    if !valid_name(&q) {
        return refuse("bad queue name");
    }
    let group = form.get("group").unwrap_or("").trim().to_string();
    let cap = form.get("cap").unwrap_or("").trim().to_string();
    if group != "*" && !valid_name(&group) {
        return back(
            &form,
            &format!("/q/{q}/groups"),
            Err("group: a name of [A-Za-z0-9_.:-], or * for every group".into()),
        );
    }
    if cap.parse::<u32>().is_err() {
        return back(&form, &format!("/q/{q}/groups"), Err("cap: a whole number, 0 removes the cap".into()));
    }
    let r = aijob::act(&app.backend, "QUEUE.GROUPCAP", &[&q, &group, &cap])
        .await
        .map(|_| format!("Cap of {group} set to {cap}."))
        .map_err(|e| e.0);
    back(&form, &format!("/q/{q}/groups"), r)
}

async fn schedule_action(
    State(app): State<AppState>,
    Path((q, name, action)): Path<(String, String, String)>,
    form: Posted,
) -> Response {
    if !valid_name(&q) || !valid_name(&name) {
        return refuse("bad queue or schedule name");
    }
    let command = match action.as_str() {
        "pause" => "SCHEDULE.PAUSE",
        "resume" => "SCHEDULE.RESUME",
        "run" => "SCHEDULE.RUN",
        _ => return refuse("action must be pause, resume or run"),
    };
    let r = aijob::act(&app.backend, command, &[&q, &name]).await.map_err(|e| e.0).map(|reply| match action.as_str() {
        "run" if reply == "nil" => format!("{name}: held back (its previous run is still live, OVERLAP skip)."),
        "run" => format!("{name}: ran now, job {reply}."),
        _ => format!("{name}: {action}d."),
    });
    back(&form, &format!("/q/{q}/schedules"), r)
}

/// Server-Sent Events of one queue: every event of its stream, as the module wrote it.
async fn live(State(app): State<AppState>, Path(q): Path<String>) -> Response {
    if !valid_name(&q) {
        return refuse("bad queue name");
    }
    let rx = app.hub.subscribe(&app.backend, &q);
    let stream = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(|m| async move {
        // a browser too slow for the stream skips ahead; its page refreshes anyway
        m.ok().map(|data| Ok::<_, Infallible>(Event::default().event("job").data(data.as_ref())))
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}
