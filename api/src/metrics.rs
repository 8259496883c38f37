//! `GET /api/v1/metrics`: the node's figures in the Prometheus text format, for the operators'
//! monitoring (no personal data: heights, queue lengths, per-source sync health and counters).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;

use crate::ApiContext;

/// One metric family: help, type and samples (labels, value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

/// A source label; source ids are catalog ids (`[a-z0-9._]`), escaped anyway.
fn source_label(id: &str) -> String {
    let escaped = id.replace('\\', "\\\\").replace('"', "\\\"");
    format!("{{source=\"{escaped}\"}}")
}

/// Renders the metrics of `ctx`; `sync` is the connectors' status, if any.
pub fn render(ctx: &ApiContext, sync: Option<&Value>) -> String {
    let tip = *ctx.tip.borrow();
    let mut out = String::new();
    let one = |v: f64| vec![(String::new(), v)];
    family(
        &mut out,
        "govchain_height",
        "gauge",
        "Committed chain height.",
        &one(tip.height.0 as f64),
    );
    family(
        &mut out,
        "govchain_mempool_txs",
        "gauge",
        "Transactions waiting in the mempool.",
        &one(ctx.mempool_len.load(Ordering::Relaxed) as f64),
    );
    family(
        &mut out,
        "govchain_audit_backlog",
        "gauge",
        "Audit entries waiting for the chain.",
        &one(crate::audit::backlog(ctx) as f64),
    );
    family(
        &mut out,
        "govchain_audit_quarantined",
        "gauge",
        "Audit entries the chain refused, kept in the node's quarantine (alert when above 0).",
        &one(ctx.security.audit.quarantined() as f64),
    );
    family(
        &mut out,
        "govchain_audit_fail_closed",
        "gauge",
        "1 while personal-data reads are refused because the audit backlog is over its limit.",
        &one(f64::from(u8::from(ctx.security.audit.over_limit()))),
    );
    let sources: &[Value] = sync
        .and_then(|s| s["sources"].as_array())
        .map_or(&[], |v| v.as_slice());
    let per = |field: &str| -> Vec<(String, f64)> {
        sources
            .iter()
            .map(|s| {
                let v = match &s[field] {
                    Value::Bool(b) => f64::from(u8::from(*b)),
                    v => v.as_f64().unwrap_or(0.0),
                };
                (source_label(s["source"].as_str().unwrap_or_default()), v)
            })
            .collect()
    };
    for (name, kind, help, field) in [
        (
            "govchain_sync_healthy",
            "gauge",
            "1 while the department system answers, 0 once it keeps failing.",
            "healthy",
        ),
        (
            "govchain_sync_consecutive_failures",
            "gauge",
            "Failed requests in a row.",
            "consecutive_failures",
        ),
        (
            "govchain_sync_failures_total",
            "counter",
            "Failed requests since the node started.",
            "failures_total",
        ),
        (
            "govchain_sync_rejected_total",
            "counter",
            "Records refused as invalid for their source.",
            "rejected_total",
        ),
        (
            "govchain_sync_rejected",
            "gauge",
            "Refused records kept for the operator to list and retry (R-SYN-3).",
            "rejected",
        ),
        (
            "govchain_sync_rejected_dropped_total",
            "counter",
            "Refused records dropped, oldest first, because the kept list was full.",
            "rejected_dropped",
        ),
        (
            "govchain_sync_pending",
            "gauge",
            "Records waiting in the outbox (in flight included).",
            "pending",
        ),
        (
            "govchain_sync_inflight_txs",
            "gauge",
            "SubmitRecords transactions waiting for commit.",
            "inflight_txs",
        ),
        (
            "govchain_sync_committed_total",
            "counter",
            "Records committed since the node started.",
            "committed_since_start",
        ),
        (
            "govchain_sync_cursor",
            "gauge",
            "Position in the department system's change feed.",
            "cursor",
        ),
        (
            "govchain_sync_running",
            "gauge",
            "1 while a run is in progress.",
            "running",
        ),
    ] {
        if !sources.is_empty() {
            family(&mut out, name, kind, help, &per(field));
        }
    }
    out
}

/// `GET /api/v1/metrics`.
#[utoipa::path(get, path = "/api/v1/metrics", security(()), responses((status = 200, body = String, content_type = "text/plain", description = "Prometheus text format: height, mempool, audit backlog, and per data source the sync health, failures, refused records kept and dropped, queue, commits and cursor")))]
pub async fn metrics(State(ctx): State<ApiContext>) -> impl IntoResponse {
    let sync = ctx.sync.as_ref().map(|s| s.status());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&ctx, sync.as_ref()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_in_the_text_format_with_source_labels() {
        let mut out = String::new();
        family(
            &mut out,
            "govchain_sync_healthy",
            "gauge",
            "Health.",
            &[(source_label("gaj.jzz"), 1.0), (source_label("a\"b"), 0.0)],
        );
        assert_eq!(
            out,
            "# HELP govchain_sync_healthy Health.\n# TYPE govchain_sync_healthy gauge\n\
             govchain_sync_healthy{source=\"gaj.jzz\"} 1\ngovchain_sync_healthy{source=\"a\\\"b\"} 0\n"
        );
    }
}
