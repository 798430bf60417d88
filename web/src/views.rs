//! The HTML of every page (maud: everything interpolated is escaped). Pages work without
//! JavaScript; `app.js` only refreshes the parts marked live.

use maud::{html, Markup, DOCTYPE};

use crate::aijob::{int, text, Group, Record, STATUSES};
use crate::live::Sample;
use crate::time::{ago, utc};

/// What every page needs to know about the request.
pub struct Ctx {
    pub csrf: String,
    pub read_only: bool,
    pub cluster: bool,
    pub flash: Option<(bool, String)>,
    pub now_ms: i64,
}

pub fn layout(ctx: &Ctx, title: &str, active: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · aijob" }
                link rel="stylesheet" href="/static/app.css";
                link rel="icon" href="/static/favicon.svg" type="image/svg+xml";
                script src="/static/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { span.logo { "◆" } " aijob" }
                    nav {
                        a href="/" class=[(active == "queues").then_some("active")] { "Queues" }
                        a href="/ratelimits" class=[(active == "ratelimits").then_some("active")] { "Rate limits" }
                    }
                    span.spacer {}
                    @if ctx.cluster { span.pill.info title="Redis Cluster: every master is asked" { "cluster" } }
                    @if ctx.read_only { span.pill.warn title="--read-only: no action is possible" { "read-only" } }
                    span #live-badge.pill.muted {}
                }
                main {
                    @if let Some((err, msg)) = &ctx.flash {
                        div class={ "flash " (if *err { "bad" } else { "good" }) } role="status" { (msg) }
                    }
                    (body)
                }
                footer { "aijob-web · rendered " (utc(ctx.now_ms)) " UTC" }
            }
        }
    }
}

/// A one-button POST form with the CSRF token; hidden in read-only mode.
pub fn button(ctx: &Ctx, action: &str, label: &str, class: &str, fields: &[(&str, &str)]) -> Markup {
    if ctx.read_only {
        return html! {};
    }
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf" value=(ctx.csrf);
            @for (k, v) in fields { input type="hidden" name=(k) value=(v); }
            button type="submit" class=(class) { (label) }
        }
    }
}

pub fn status_badge(status: &str) -> Markup {
    html! { span class={ "badge s-" (status) } { (status) } }
}

/// A count on the overview, linking to the queue's jobs in that status when there are any.
fn count_cell(q: &str, status: &str, n: i64, class: &str) -> Markup {
    html! {
        td class={ "num" @if n == 0 { " zero" } @else if !class.is_empty() { " " (class) } } {
            @if n > 0 { a.count-link href={ "/q/" (q) "?status=" (status) } { (n) } } @else { (n) }
        }
    }
}

pub struct QueueRow {
    pub name: String,
    pub stats: std::collections::BTreeMap<String, i64>,
    pub samples: Vec<Sample>,
    pub capped: Vec<Group>,
    pub groups_checked: usize,
}

fn stat(st: &std::collections::BTreeMap<String, i64>, k: &str) -> i64 {
    st.get(k).copied().unwrap_or(0)
}

/// Percent with no decimals, or a dash when nothing was counted.
fn pct(part: i64, whole: i64) -> String {
    if whole <= 0 {
        "–".into()
    } else {
        format!("{:.0}%", part as f64 * 100.0 / whole as f64)
    }
}

pub fn overview(ctx: &Ctx, rows: &[QueueRow], error: Option<&str>) -> Markup {
    let sum = |k: &str| rows.iter().map(|r| stat(&r.stats, k)).sum::<i64>();
    let hour: Vec<(i64, i64)> = rows.iter().map(|r| hour_totals(&r.samples, ctx.now_ms)).collect();
    let (done_h, failed_h) = hour.iter().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let body = html! {
        div #overview data-refresh="5000" {
            div.cards {
                div.card { div.k { "Queues" } div.v { (rows.len()) } }
                div.card { div.k { "Queued" } div.v { (sum("queued")) } }
                div.card { div.k { "Running" } div.v { (sum("running")) } }
                div.card.bad-if[sum("error") > 0] { div.k { "Failed (kept)" } div.v { (sum("error")) } }
                div.card { div.k { "Done, last hour" } div.v { (done_h) } }
                div.card { div.k { "Failure rate, last hour" } div.v { (pct(failed_h, done_h + failed_h)) } }
            }
            @if let Some(e) = error { div.flash.bad { "Could not read the queues: " (e) } }
            @if rows.is_empty() && error.is_none() {
                div.empty { p { "No queue yet. Create a job, e.g.:" } pre { "redis-cli JOB.CREATE default PAYLOAD '{\"provider\":\"echo\",\"request\":{\"text\":\"hi\"}}'" } }
            } @else {
                table.grid {
                    thead { tr {
                        th { "Queue" } th.num { "waiting" } th.num { "queued" } th.num { "delayed" } th.num { "running" } th.num { "done" }
                        th.num { "error" } th.num { "canceled" } th { "last hour (per minute)" } th.num { "done/h" }
                        th.num { "fail %" } th.num { "cache saved" } th.num { "oldest queued" } th { "groups at cap" }
                    } }
                    tbody {
                        @for (r, (d, f)) in rows.iter().zip(&hour) {
                            tr {
                                td.name {
                                    a href={ "/q/" (r.name) } { (r.name) }
                                    @if stat(&r.stats, "paused") == 1 { " " span.badge.paused { "paused" } }
                                }
                                (count_cell(&r.name, "waiting", stat(&r.stats, "waiting"), ""))
                                (count_cell(&r.name, "queued", stat(&r.stats, "queued"), "hl"))
                                (count_cell(&r.name, "delayed", stat(&r.stats, "delayed"), ""))
                                (count_cell(&r.name, "running", stat(&r.stats, "running"), "hl"))
                                (count_cell(&r.name, "done", stat(&r.stats, "done"), ""))
                                (count_cell(&r.name, "error", stat(&r.stats, "error"), "bad"))
                                (count_cell(&r.name, "canceled", stat(&r.stats, "canceled"), ""))
                                td { (chart(&r.samples, ctx.now_ms, 120, 26)) }
                                td.num { (d) }
                                td class={ "num" @if *f > 0 { " bad" } } { (pct(*f, d + f)) }
                                td.num { (cache_ratio(&r.stats)) }
                                td.num { (duration(stat(&r.stats, "oldest_queued_ms"))) }
                                td {
                                    @for g in &r.capped { span.badge.capped title={ (g.running) " running of cap " (g.cap) } { (group_name(&g.name)) } " " }
                                    @if r.capped.is_empty() { span.muted { "none" } }
                                }
                            }
                        }
                    }
                }
                p.note { "Throughput is sampled from QUEUE.STATS every 10 s while this dashboard runs; a bar is one minute (green done, red failed). Cache saved: hits and coalesced requests over all lookups. Groups at cap: of the first " (rows.first().map_or(0, |r| r.groups_checked)) " groups of each queue." }
            }
        }
    };
    layout(ctx, "Queues", "queues", body)
}

fn cache_ratio(st: &std::collections::BTreeMap<String, i64>) -> String {
    let saved = stat(st, "hits") + stat(st, "coalesced");
    pct(saved, saved + stat(st, "misses"))
}

fn group_name(g: &str) -> String {
    if g.is_empty() {
        "(no group)".into()
    } else {
        g.to_string()
    }
}

/// Done and failed over the last hour from the samples.
pub fn hour_totals(samples: &[Sample], now_ms: i64) -> (i64, i64) {
    crate::live::per_minute(samples, now_ms, 60).into_iter().flatten().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// A small bar chart of the last hour, one bar per minute: done (green) over failed (red).
pub fn chart(samples: &[Sample], now_ms: i64, w: u32, h: u32) -> Markup {
    let minutes = crate::live::per_minute(samples, now_ms, 60);
    let top = minutes.iter().flatten().map(|(d, f)| d + f).max().unwrap_or(0).max(1);
    let bar = w as f64 / 60.0;
    let label = {
        let (d, f) = hour_totals(samples, now_ms);
        format!("last hour: {d} done, {f} failed")
    };
    html! {
        svg.chart width=(w) height=(h) viewBox={ "0 0 " (w) " " (h) } role="img" aria-label=(label) {
            title { (label) }
            rect.base x="0" y=(h - 1) width=(w) height="1" {}
            @for (i, m) in minutes.iter().enumerate() {
                @if let Some((d, f)) = m {
                    @let x = i as f64 * bar;
                    @let hd = (*d as f64 / top as f64 * (h - 1) as f64).round();
                    @let hf = (*f as f64 / top as f64 * (h - 1) as f64).round();
                    @if *d > 0 { rect.ok x=(format!("{x:.1}")) y=(format!("{:.0}", (h - 1) as f64 - hd)) width=(format!("{:.1}", bar * 0.8)) height=(format!("{hd:.0}")) {} }
                    @if *f > 0 { rect.fail x=(format!("{x:.1}")) y=(format!("{:.0}", (h - 1) as f64 - hd - hf)) width=(format!("{:.1}", bar * 0.8)) height=(format!("{hf:.0}")) {} }
                }
            }
        }
    }
}

/// A duration in ms as the largest sensible unit.
pub fn duration(ms: i64) -> String {
    match ms {
        ..=0 => "–".into(),
        1..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min", ms / 60_000),
        3_600_000..=86_399_999 => format!("{:.1} h", ms as f64 / 3_600_000.0),
        _ => format!("{:.1} d", ms as f64 / 86_400_000.0),
    }
}

/// The tabs of a queue's pages and its header with the queue-wide actions.
pub fn queue_head(ctx: &Ctx, q: &str, stats: &std::collections::BTreeMap<String, i64>, tab: &str) -> Markup {
    let paused = stat(stats, "paused") == 1;
    let back = format!("/q/{q}");
    html! {
        div.crumbs { a href="/" { "Queues" } " / " }
        div.head {
            h1 { (q) @if paused { " " span.badge.paused { "paused" } } }
            div.actions {
                @if paused {
                    (button(ctx, &format!("/q/{q}/resume"), "Resume", "primary", &[("next", &back)]))
                } @else {
                    (button(ctx, &format!("/q/{q}/pause"), "Pause", "", &[("next", &back)]))
                }
                @if stat(stats, "error") > 0 {
                    (button(ctx, &format!("/q/{q}/retry-failed"), &format!("Retry all {} failed", stat(stats, "error")), "", &[]))
                }
                @if !ctx.read_only { a.btn.danger href={ "/q/" (q) "/purge" } { "Purge…" } }
            }
        }
        nav.tabs {
            a href={ "/q/" (q) } class=[(tab == "jobs").then_some("active")] { "Jobs" }
            a href={ "/q/" (q) "/schedules" } class=[(tab == "schedules").then_some("active")] { "Schedules " span.count { (stat(stats, "schedules")) } }
            a href={ "/q/" (q) "/groups" } class=[(tab == "groups").then_some("active")] { "Groups " span.count { (stat(stats, "groups")) } }
        }
    }
}

pub struct JobsView<'a> {
    pub q: &'a str,
    pub stats: &'a std::collections::BTreeMap<String, i64>,
    pub samples: &'a [Sample],
    pub status: Option<&'a str>,
    pub group: &'a str,
    pub schedule: &'a str,
    pub cursor: &'a str,
    pub next: &'a str,
    pub jobs: &'a [Record],
    pub scanned: usize,
    pub bulk: Option<crate::state::BulkRetry>,
}

fn filter_href(v: &JobsView, status: Option<&str>) -> String {
    let mut qs: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = status {
        qs.push(("status", s));
    }
    if !v.group.is_empty() {
        qs.push(("group", v.group));
    }
    if !v.schedule.is_empty() {
        qs.push(("schedule", v.schedule));
    }
    let query = serde_urlencoded::to_string(&qs).unwrap_or_default();
    if query.is_empty() {
        format!("/q/{}", v.q)
    } else {
        format!("/q/{}?{query}", v.q)
    }
}

fn unfiltered_href(q: &str, status: Option<&str>) -> String {
    match status {
        Some(s) => format!("/q/{q}?status={s}"),
        None => format!("/q/{q}"),
    }
}

pub fn queue_jobs(ctx: &Ctx, v: &JobsView) -> Markup {
    let q = v.q;
    let here = match v.cursor {
        "0" => filter_href(v, v.status),
        c => format!(
            "{}{}cursor={c}",
            filter_href(v, v.status),
            if filter_href(v, v.status).contains('?') { "&" } else { "?" }
        ),
    };
    let filtered = !v.group.is_empty() || !v.schedule.is_empty();
    let body = html! {
        div #queue-main data-live-queue=(q) {
            (queue_head(ctx, q, v.stats, "jobs"))
            div #queue-stats {
                nav.statuses {
                    a href=(filter_href(v, None)) class=[v.status.is_none().then_some("active")] { "all" }
                    @for s in STATUSES {
                        a href=(filter_href(v, Some(s))) class=[(v.status == Some(s)).then_some("active")] {
                            span class={ "dot s-" (s) } {} (s) " " span.count { (stat(v.stats, s)) }
                        }
                    }
                    span.spacer {}
                    span.chartbox {
                        span.muted { "last hour " }
                        @let (d, f) = hour_totals(v.samples, ctx.now_ms);
                        span.hourly { (d) " done · " span class=[(f > 0).then_some("bad")] { (f) " failed" } }
                        (chart(v.samples, ctx.now_ms, 180, 26))
                    }
                }
                @if let Some(b) = &v.bulk {
                    div #bulk-progress.progressbox data-refresh=[(!b.finished).then_some("1000")] {
                        @if b.finished { "Retry of failed jobs finished: " (b.retried) " retried" @if let Some(e) = &b.error { ", stopped: " (e) } "." }
                        @else { "Retrying failed jobs in batches of 100: " (b.retried) " of " (b.total) " so far…" }
                        progress max=(b.total.max(1)) value=(b.retried) {}
                    }
                }
            }
            form.filters method="get" action={ "/q/" (q) } {
                @if let Some(s) = v.status { input type="hidden" name="status" value=(s); }
                label { "group " input type="text" name="group" value=(v.group) placeholder="any" size="14"; }
                label { "schedule " input type="text" name="schedule" value=(v.schedule) placeholder="any" size="14"; }
                button type="submit" { "Filter" }
                @if filtered { a href=(unfiltered_href(q, v.status)) { "clear" } }
            }
            form.filters.find method="get" action={ "/q/" (q) "/find" } {
                label { "job id " input type="text" name="id" placeholder="open a job by its id" size="38" required; }
                button type="submit" { "Open" }
            }
            @if ctx.read_only {
                div #jobs { (jobs_table(ctx, v)) }
            } @else {
                form #jobs method="post" action={ "/q/" (q) "/jobs" } {
                    input type="hidden" name="csrf" value=(ctx.csrf);
                    input type="hidden" name="next" value=(here);
                    div.bulkbar {
                        span.muted { "Selected: " }
                        button type="submit" name="action" value="retry" { "Retry" }
                        button type="submit" name="action" value="cancel" { "Cancel" }
                        button.danger type="submit" name="action" value="delete" data-confirm="Delete the selected jobs?" { "Delete" }
                    }
                    (jobs_table(ctx, v))
                }
            }
            div.pager {
                @if v.cursor != "0" { a.btn href=(filter_href(v, v.status)) { "⇤ First page" } }
                @if v.next != "0" {
                    @let base = filter_href(v, v.status);
                    a.btn href={ (base) (if base.contains('?') { "&" } else { "?" }) "cursor=" (v.next) } { "Next page →" }
                }
                @if filtered { span.muted { "Filtered: this page looked at " (v.scanned) " jobs (at most 500 per page)." } }
            }
        }
    };
    layout(ctx, q, "queues", body)
}

fn jobs_table(ctx: &Ctx, v: &JobsView) -> Markup {
    let q = v.q;
    html! {
                table.grid.jobs {
                    thead { tr {
                        @if !ctx.read_only { th.check { input type="checkbox" data-select-all="id" aria-label="select all"; } }
                        th { "Job" } th { "status" } th { "priority" } th { "group" } th.num { "attempts" }
                        th { "progress" } th { "created" } th { "updated" } th { "error" }
                        @if !ctx.read_only { th {} }
                    } }
                    tbody {
                        @for j in v.jobs {
                            @let id = text(j, "id");
                            @let status = text(j, "status");
                            tr {
                                @if !ctx.read_only { td.check { input type="checkbox" name="id" value=(id) aria-label="select"; } }
                                td.id { a href={ "/q/" (q) "/job/" (id) } { (short_id(&id)) } @let sch = text(j, "schedule"); @if !sch.is_empty() { " " span.tag title="schedule" { "⟳ " (sch) } } }
                                td { (status_badge(&status)) }
                                td { span class={ "prio p-" (text(j, "priority")) } { (text(j, "priority")) } }
                                td { (text(j, "group")) }
                                td.num { (int(j, "attempts").unwrap_or(0)) "/" (int(j, "max_attempts").unwrap_or(0)) }
                                td.progress {
                                    @if let (Some(p), "running") = (int(j, "percent"), status.as_str()) { progress max="100" value=(p) {} " " (p) "%" }
                                    " " span.muted { (clip(&text(j, "progress"), 40)) }
                                }
                                td.time title=(utc(int(j, "created_at").unwrap_or(0))) { (ago(int(j, "created_at").unwrap_or(0), ctx.now_ms)) }
                                td.time title=(utc(int(j, "updated_at").unwrap_or(0))) { (ago(int(j, "updated_at").unwrap_or(0), ctx.now_ms)) }
                                td class={ "err" @if status != "error" { " earlier" } } title=[(status != "error").then_some("the last error, of an earlier attempt")] {
                    @let e = text(j, "error");
                    @if !e.is_empty() { @let c = text(j, "error_class"); @if !c.is_empty() { span.cls { (c) } " " } (clip(&e, 60)) }
                }
                                @if !ctx.read_only {
                                    td.rowacts {
                                        @if matches!(status.as_str(), "error" | "canceled") { button.small type="submit" name="one" value={ "retry " (id) } { "Retry" } }
                                        @if matches!(status.as_str(), "queued" | "delayed" | "running") { button.small type="submit" name="one" value={ "cancel " (id) } { "Cancel" } }
                                        button.small.danger type="submit" name="one" value={ "delete " (id) } data-confirm="Delete this job?" { "Delete" }
                                    }
                                }
                            }
                        }
                        @if v.jobs.is_empty() { tr { td.empty colspan="11" { "No job here." } } }
                    }
                }
    }
}

pub fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

fn short_id(id: &str) -> String {
    // UUIDv7s share their first digits within a second; the tail tells them apart
    if id.len() == 36 && id.as_bytes().get(8) == Some(&b'-') {
        format!("…{}", &id[24..])
    } else {
        id.to_string()
    }
}

fn json_pretty(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
    }
}

/// A row of the job's fields; a field the job does not have shows a dash, as the times do.
fn field_row(label: &str, value: Markup) -> Markup {
    html! { tr { th { (label) } td { @if value.0.is_empty() { span.muted { "–" } } @else { (value) } } } }
}

fn when(ms: Option<i64>, now: i64) -> Markup {
    match ms {
        Some(t) if t > 0 => html! { (utc(t)) " " span.muted { "(" (ago(t, now)) ")" } },
        _ => html! { span.muted { "–" } },
    }
}

pub fn job(
    ctx: &Ctx,
    q: &str,
    id: &str,
    job: &serde_json::Value,
    history: &[serde_json::Value],
    history_read: usize,
) -> Markup {
    let g = |k: &str| job.get(k);
    let s = |k: &str| g(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let n = |k: &str| g(k).and_then(|v| v.as_i64());
    let status = s("status");
    let percent = n("percent");
    let back = format!("/q/{q}/job/{id}");
    let body = html! {
        div #job-main data-live-queue=(q) data-live-job=(id) data-status=(status) {
            div.crumbs { a href="/" { "Queues" } " / " a href={ "/q/" (q) } { (q) } " / " }
            div.head {
                h1 { "Job " code { (id) } " " span #job-status { (status_badge(&status)) } }
                div.actions {
                    @if matches!(status.as_str(), "error" | "canceled") { (button(ctx, &format!("/q/{q}/jobs"), "Retry", "primary", &[("one", &format!("retry {id}")), ("next", &back)])) }
                    @if matches!(status.as_str(), "waiting" | "queued" | "delayed" | "running") { (button(ctx, &format!("/q/{q}/jobs"), "Cancel", "", &[("one", &format!("cancel {id}")), ("next", &back)])) }
                    (button(ctx, &format!("/q/{q}/jobs"), "Delete", "danger", &[("one", &format!("delete {id}")), ("next", &format!("/q/{q}"))]))
                }
            }
            div.progressbox {
                @let shown = if status == "done" { Some(100) } else { percent };
                progress #job-progress max="100" value=(shown.unwrap_or(0)) {}
                span #job-percent.pct { @if let Some(p) = shown { (p) "%" } @else { "–" } }
                span #job-progress-text.muted { (s("progress")) }
            }
            @let err = s("error");
            @if !err.is_empty() {
                div.errorbox { strong { "Error" } @let c = s("error_class"); @if !c.is_empty() { " " span.cls { (c) } } pre { (err) } }
            }
            div.cols {
                table.fields {
                    (field_row("queue", html! { a href={ "/q/" (q) } { (q) } }))
                    (field_row("status", status_badge(&status)))
                    (field_row("priority", html! { (s("priority")) }))
                    (field_row("group", html! { (s("group")) }))
                    (field_row("attempts", html! { (n("attempts").unwrap_or(0)) " of " (n("max_attempts").unwrap_or(0)) }))
                    (field_row("worker", html! { (s("worker")) }))
                    (field_row("lease until", when(n("lease_until"), ctx.now_ms)))
                    (field_row("schedule", html! { @let sch = s("schedule"); @if !sch.is_empty() { a href={ "/q/" (q) "/schedules" } { (sch) } } }))
                    (field_row("cost / usage", html! { (n("cost").map(|c| c.to_string()).unwrap_or_default()) " / " (n("usage").map(|c| c.to_string()).unwrap_or_else(|| "–".into())) }))
                    (field_row("hash", html! { @let h = s("hash"); @if !h.is_empty() { code.small { (h) } } }))
                    @let parents: Vec<&str> = g("parents").and_then(|v| v.as_array()).map(|a| a.iter().filter_map(|p| p.as_str()).collect()).unwrap_or_default();
                    @if !parents.is_empty() {
                        (field_row("after", html! { @for p in &parents { a href={ "/q/" (q) "/job/" (p) } { code.small { (short_id(p)) } } " " } }))
                        (field_row("on parent fail", html! { (s("on_parent_fail")) @if let Some(w) = n("waiting_on") { " · waiting on " (w) } }))
                    }
                    @let by = s("failed_by");
                    @if !by.is_empty() { (field_row("failed by", html! { a href={ "/q/" (q) "/job/" (by) } { code.small { (short_id(&by)) } } })) }
                    @if let Some(d) = n("dependents") { (field_row("dependents", html! { (d) " not ended" })) }
                }
                table.fields {
                    (field_row("created", when(n("created_at"), ctx.now_ms)))
                    (field_row("updated", when(n("updated_at"), ctx.now_ms)))
                    (field_row("started", when(n("started_at"), ctx.now_ms)))
                    (field_row("finished", when(n("finished_at"), ctx.now_ms)))
                    (field_row("run at", when(n("run_at"), ctx.now_ms)))
                    (field_row("deadline", when(n("deadline_at"), ctx.now_ms)))
                    (field_row("kept for", html! { @match n("ttl") { Some(t) if t >= 0 => { (duration(t)) } _ => { span.muted { "while live" } } } }))
                }
            }
            h2 { "Payload" }
            pre.json { (json_pretty(g("payload"))) }
            @if g("result").is_some() { h2 { "Result" } pre.json { (json_pretty(g("result"))) } }
            @if g("meta").is_some() { h2 { "Meta" } pre.json { (json_pretty(g("meta"))) } }
            h2 { "Events" }
            table.grid.events {
                thead { tr { th { "at" } th { "event" } th { "status" } th.num { "%" } th { "detail" } } }
                tbody {
                    @for e in history {
                        tr {
                            td.time { (utc(e.get("at").and_then(|v| v.as_i64()).unwrap_or(0))) }
                            td { span.evt { (e.get("type").and_then(|v| v.as_str()).unwrap_or("")) } }
                            td { (status_badge(e.get("status").and_then(|v| v.as_str()).unwrap_or(""))) }
                            td.num { (e.get("percent").and_then(|v| v.as_i64()).map(|p| p.to_string()).unwrap_or_default()) }
                            td { (clip(&event_detail(e), 120)) }
                        }
                    }
                    @if history.is_empty() { tr { td.empty colspan="5" { "No event of this job in the queue's events stream (it keeps the latest events of the whole queue)." } } }
                }
            }
            p.note { "From the events stream aijob:{" (q) "}:events, read from each instant the job records (" (history_read) " entries looked at); the stream keeps the queue's latest events." }
        }
    };
    layout(ctx, &format!("Job {id}"), "queues", body)
}

fn event_detail(e: &serde_json::Value) -> String {
    for k in ["error", "progress"] {
        if let Some(s) = e.get(k).and_then(|v| v.as_str()) {
            return s.to_string();
        }
    }
    e.get("result").map(|r| r.to_string()).unwrap_or_default()
}

pub fn schedules(ctx: &Ctx, q: &str, stats: &std::collections::BTreeMap<String, i64>, list: &[Record]) -> Markup {
    let back = format!("/q/{q}/schedules");
    let body = html! {
        (queue_head(ctx, q, stats, "schedules"))
        table.grid {
            thead { tr { th { "Schedule" } th { "timetable" } th { "next run" } th { "last run" } th { "last job" } th.num { "runs" } th.num { "skipped" } th { "state" } @if !ctx.read_only { th {} } } }
            tbody {
                @for s in list {
                    @let name = text(s, "name");
                    @let paused = int(s, "paused") == Some(1);
                    tr {
                        td.name { (name) }
                        td { @let c = text(s, "cron"); @if !c.is_empty() { code { (c) } } @else { "every " (duration(int(s, "every").unwrap_or(0))) } }
                        td { @if paused { span.muted { "paused" } } @else { (when(int(s, "next_run_at"), ctx.now_ms)) } }
                        td { (when(int(s, "last_run_at"), ctx.now_ms)) }
                        td { @let j = text(s, "last_job_id"); @if !j.is_empty() { a href={ "/q/" (q) "/job/" (j) } { (short_id(&j)) } } }
                        td.num { (int(s, "runs").unwrap_or(0)) }
                        td.num { (int(s, "skipped").unwrap_or(0)) }
                        td { @if paused { span.badge.paused { "paused" } } @else { span.badge.s-done { "active" } } }
                        @if !ctx.read_only {
                            td.rowacts {
                                @let base = format!("/q/{q}/schedules/{name}");
                                @if paused { (button(ctx, &format!("{base}/resume"), "Resume", "small", &[("next", &back)])) }
                                @else { (button(ctx, &format!("{base}/pause"), "Pause", "small", &[("next", &back)])) }
                                (button(ctx, &format!("{base}/run"), "Run now", "small primary", &[("next", &back)]))
                            }
                        }
                    }
                }
                @if list.is_empty() { tr { td.empty colspan="9" { "No schedule on this queue (SCHEDULE.SET makes one)." } } }
            }
        }
    };
    layout(ctx, &format!("{q} schedules"), "queues", body)
}

pub fn groups(
    ctx: &Ctx,
    q: &str,
    stats: &std::collections::BTreeMap<String, i64>,
    list: &[Group],
    cursor: &str,
    next: &str,
) -> Markup {
    let back = format!("/q/{q}/groups");
    let body = html! {
        (queue_head(ctx, q, stats, "groups"))
        @if !ctx.read_only {
            form.filters method="post" action={ "/q/" (q) "/groupcap" } {
                input type="hidden" name="csrf" value=(ctx.csrf);
                input type="hidden" name="next" value=(back);
                label { "Set the cap of group " input type="text" name="group" required placeholder="tenant, or * for every group" size="26"; }
                label { " to " input type="number" name="cap" min="0" required size="6"; }
                button type="submit" { "Set cap" }
                span.muted { " 0 removes the cap" }
            }
        }
        table.grid {
            thead { tr { th { "Group" } th.num { "queued" } th.num { "running" } th.num { "cap" } th { "" } } }
            tbody {
                @for g in list {
                    tr {
                        td.name { (group_name(&g.name)) }
                        td.num { (g.queued) }
                        td.num { (g.running) }
                        td.num { @if g.cap > 0 { (g.cap) } @else { span.muted { "none" } } }
                        td { @if g.at_cap() { span.badge.capped { "at cap" } } }
                    }
                }
                @if list.is_empty() { tr { td.empty colspan="5" { "No group with queued or running jobs, or a cap." } } }
            }
        }
        div.pager {
            @if cursor != "0" { a.btn href={ "/q/" (q) "/groups" } { "⇤ First page" } }
            @if next != "0" { a.btn href={ "/q/" (q) "/groups?cursor=" (next) } { "Next page →" } }
        }
    };
    layout(ctx, &format!("{q} groups"), "queues", body)
}

pub fn purge_confirm(ctx: &Ctx, q: &str, stats: &std::collections::BTreeMap<String, i64>, status: &str) -> Markup {
    let body = html! {
        (queue_head(ctx, q, stats, ""))
        div.confirm {
            h2 { "Purge " (status) " jobs of " (q) }
            p { "This removes " strong { (stat(stats, status)) } " " (status) " jobs of queue " strong { (q) } " for good, with their records and results. It cannot be undone." }
            form method="get" action={ "/q/" (q) "/purge" } {
                label { "Status to purge " select name="status" {
                    @for s in STATUSES { option value=(s) selected[s == status] { (s) " (" (stat(stats, s)) ")" } }
                } }
                button type="submit" { "Change" }
            }
            form method="post" action={ "/q/" (q) "/purge" } {
                input type="hidden" name="csrf" value=(ctx.csrf);
                input type="hidden" name="status" value=(status);
                label { "Type the queue name to confirm: " input type="text" name="confirm" required autocomplete="off" placeholder="queue name"; }
                button.danger type="submit" { "Purge " (status) " jobs" }
                a.btn href={ "/q/" (q) } { "Keep them" }
            }
        }
    };
    layout(ctx, &format!("Purge {q}"), "queues", body)
}

pub struct PeekRow {
    pub line: String,
    pub reply: Result<Vec<i64>, String>,
}

pub fn ratelimits(ctx: &Ctx, spec: &str, rows: &[PeekRow]) -> Markup {
    let body = html! {
        h1 { "Rate limits" }
        p.muted { "RATELIMIT.PEEK of the keys you name, one per line, with the windows they are hit with: " code { "key LIMIT n PERIOD ms [LIMIT n PERIOD ms ...] [COST c]" } ". A peek consumes nothing." }
        form.stack method="get" action="/ratelimits" {
            textarea name="keys" rows="5" cols="80" placeholder="aijob-rl:{echo}:rpm LIMIT 500 PERIOD 60000" { (spec) }
            div { button.primary type="submit" { "Peek" } }
        }
        @if !rows.is_empty() {
            table.grid {
                thead { tr { th { "key and windows" } th { "admits now" } th.num { "remaining (bar: used)" } th.num { "retry after" } th.num { "all windows empty in" } } }
                tbody {
                    @for r in rows {
                        tr {
                            td { code { (r.line) } }
                            @match r.reply.as_deref() {
                                Ok(&[allowed, remaining, retry_after, reset_after]) => {
                                    td { @if allowed == 1 { span.badge.s-done { "yes" } } @else { span.badge.s-error { "no" } } }
                                    td.num {
                                        @if let Some(limit) = first_limit(&r.line) {
                                            progress.used max=(limit) value=((limit - remaining).max(0)) title="used of the tightest window's limit" {}
                                            " "
                                        }
                                        (remaining)
                                    }
                                    td.num { (duration(retry_after)) }
                                    td.num { (duration(reset_after)) }
                                }
                                Ok(v) => { td colspan="4" { "unexpected reply " (format!("{v:?}")) } }
                                Err(e) => { td.err colspan="4" { (e) } }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(ctx, "Rate limits", "ratelimits", body)
}

/// The LIMIT of a PEEK line's first window.
fn first_limit(line: &str) -> Option<i64> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| w.eq_ignore_ascii_case("LIMIT"))?;
    words.get(at + 1)?.parse().ok().filter(|n| *n > 0)
}

pub fn error_page(ctx: &Ctx, title: &str, detail: &str) -> Markup {
    layout(
        ctx,
        title,
        "",
        html! { div.confirm { h1 { (title) } p { (detail) } p { a href="/" { "Back to the queues" } } } },
    )
}

/// The favicon: a diamond in the brand colour.
pub const FAVICON: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><path d="M8 1l7 7-7 7-7-7z" fill="#2f6fed"/></svg>"##;
