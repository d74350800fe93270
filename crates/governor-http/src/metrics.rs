//! `/metrics` in the Prometheus text format: request counts and latencies
//! per route, and the approval requests waiting.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor_core::{ExecutionQuery, ExecutionStatus};

use crate::problem::Problem;
use crate::state::ApiState;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default)]
struct Series {
    count: u64,
    /// Observations at or below each bucket bound (not cumulative).
    buckets: [u64; BUCKETS.len()],
    sum_seconds: f64,
}

/// Request counters by (method, route, status).
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
    /// Governance outcomes by (metric, label value).
    outcomes: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

/// Counters of what governance decided through this API.
const OUTCOME_HELP: [(&str, &str, &str); 2] = [
    (
        "governor_submissions_total",
        "outcome",
        "Submissions by agents, by outcome.",
    ),
    (
        "governor_decisions_total",
        "verdict",
        "Approval decisions made through the API.",
    ),
];

impl Metrics {
    /// Counts one `value` of `metric` (see [`OUTCOME_HELP`]).
    pub(crate) fn count(&self, metric: &'static str, value: &'static str) {
        if let Ok(mut outcomes) = self.outcomes.lock() {
            *outcomes.entry((metric, value)).or_default() += 1;
        }
    }

    fn render_outcomes(&self, out: &mut String) {
        let Ok(outcomes) = self.outcomes.lock() else {
            return;
        };
        for (metric, label, help) in OUTCOME_HELP {
            let _ = writeln!(out, "# HELP {metric} {help}");
            let _ = writeln!(out, "# TYPE {metric} counter");
            for ((m, value), n) in outcomes.iter() {
                if *m == metric {
                    let _ = writeln!(out, "{metric}{{{label}=\"{value}\"}} {n}");
                }
            }
        }
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        let s = series
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        s.count += 1;
        s.sum_seconds += seconds;
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            s.buckets[i] += 1;
        }
    }

    fn render(&self, out: &mut String) {
        let Ok(series) = self.series.lock() else {
            return;
        };
        out.push_str("# HELP governor_http_requests_total HTTP requests answered.\n");
        out.push_str("# TYPE governor_http_requests_total counter\n");
        for ((method, route, status), s) in series.iter() {
            let _ = writeln!(
                out,
                "governor_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        out.push_str("# HELP governor_http_request_duration_seconds Time to answer, by route.\n");
        out.push_str("# TYPE governor_http_request_duration_seconds histogram\n");
        let mut by_route: BTreeMap<(&str, &str), Series> = BTreeMap::new();
        for ((method, route, _), s) in series.iter() {
            let merged = by_route.entry((method, route)).or_default();
            merged.count += s.count;
            merged.sum_seconds += s.sum_seconds;
            for (m, b) in merged.buckets.iter_mut().zip(s.buckets) {
                *m += b;
            }
        }
        for ((method, route), s) in by_route {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(s.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "governor_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "governor_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "governor_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum_seconds
            );
            let _ = writeln!(
                out,
                "governor_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
    }
}

/// Middleware: counts and times every routed request.
pub(crate) async fn track(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(req).await;
    let seconds = started.elapsed().as_secs_f64();
    state
        .metrics
        .observe(&method, &route, response.status().as_u16(), seconds);
    response
}

/// `GET /metrics`: any valid token may scrape.
pub(crate) async fn metrics(
    State(state): State<ApiState>,
    _scraper: crate::auth::Caller,
) -> Result<Response, Problem> {
    let mut out = String::with_capacity(4096);
    state.metrics.render(&mut out);
    state.metrics.render_outcomes(&mut out);
    let pending = state
        .governor
        .store()
        .count_executions(&ExecutionQuery {
            statuses: vec![ExecutionStatus::AwaitingApproval],
            ..ExecutionQuery::default()
        })
        .await?;
    out.push_str("# HELP governor_approvals_pending Approval requests waiting.\n");
    out.push_str("# TYPE governor_approvals_pending gauge\n");
    let _ = writeln!(out, "governor_approvals_pending {pending}");
    let mut response = out.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counts_add_up() {
        let m = Metrics::default();
        m.observe("GET", "/healthz", 200, 0.0004);
        m.observe("GET", "/healthz", 200, 0.03);
        m.observe("GET", "/healthz", 503, 9.0);
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "governor_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2",
            "governor_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"503\"} 1",
            "governor_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"0.0005\"} 1",
            "governor_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"0.05\"} 2",
            "governor_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"5\"} 2",
            "governor_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"+Inf\"} 3",
            "governor_http_request_duration_seconds_count{method=\"GET\",route=\"/healthz\"} 3",
        ] {
            assert!(out.contains(line), "missing {line} in\n{out}");
        }
    }
}
