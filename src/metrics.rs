//! A client's counters in the Prometheus text exposition format (version 0.0.4, what
//! `/metrics` endpoints serve as `text/plain; version=0.0.4`): a `# HELP` and a `# TYPE`
//! line per metric, counters named `bulkhead_<name>_total`, gauges without a suffix, and
//! an optional `client="<name>"` label from the `name` configuration key.

use std::fmt::Write as _;

use crate::stats::Stats;

/// Renders `stats`; `name` becomes the `client` label.
pub fn render(stats: &Stats, name: Option<&str>) -> String {
    let label = name
        .map(|n| format!("{{client=\"{}\"}}", escape(n)))
        .unwrap_or_default();
    let counters: [(&str, &str, u64); 18] = [
        (
            "enqueued",
            "Events accepted into the queue.",
            stats.enqueued,
        ),
        (
            "dropped_queue_full",
            "Events refused because the queue-size guard was full.",
            stats.dropped_queue_full,
        ),
        (
            "dropped_too_large",
            "Events refused for exceeding max_event_bytes.",
            stats.dropped_too_large,
        ),
        (
            "dropped_invalid",
            "Events refused as invalid.",
            stats.dropped_invalid,
        ),
        (
            "dropped_shutdown",
            "Events still pending when a close or shutdown deadline passed (included in failed).",
            stats.dropped_shutdown,
        ),
        ("sent", "Events accepted by the server.", stats.sent),
        ("rejected", "Events refused by the server.", stats.rejected),
        (
            "failed",
            "Events given up after retries, the retry budget, or at shutdown.",
            stats.failed,
        ),
        ("retries", "Retry attempts made.", stats.retries),
        ("requests", "HTTP requests made.", stats.requests),
        (
            "bytes_sent",
            "Request body bytes sent (after compression).",
            stats.bytes_sent,
        ),
        (
            "errors_overwritten",
            "Delivery errors dropped from the ring of max_recent_errors.",
            stats.errors_overwritten,
        ),
        ("spooled", "Events written to the disk spool.", stats.spooled),
        (
            "replayed",
            "Events read back from the spool into delivery.",
            stats.replayed,
        ),
        (
            "spool_expired",
            "Spooled events removed unsent for being older than spool_max_age_ms.",
            stats.spool_expired,
        ),
        (
            "spool_corrupt",
            "Corrupt or torn spool records skipped.",
            stats.spool_corrupt,
        ),
        (
            "dropped_spool_full",
            "Events the spool could not take: spool_max_bytes reached or disk full (included in failed).",
            stats.dropped_spool_full,
        ),
        (
            "dropped_spool_error",
            "Events the spool could not write for another reason (included in failed).",
            stats.dropped_spool_error,
        ),
    ];
    let gauges: [(&str, &str, u64); 7] = [
        (
            "queue_len",
            "Events accepted and not yet resolved.",
            stats.queue_len,
        ),
        (
            "queue_bytes",
            "Memory held by those events, in bytes.",
            stats.queue_bytes,
        ),
        (
            "in_flight",
            "Events in an HTTP request or waiting to retry one.",
            stats.in_flight,
        ),
        (
            "circuit_state",
            "Circuit breaker: 0 closed, 1 open, 2 half-open.",
            stats.circuit_state as u64,
        ),
        (
            "spool_pending",
            "Overflow events waiting for the spool's writer.",
            stats.spool_pending,
        ),
        (
            "spool_bytes",
            "Bytes in the spool directory's segments.",
            stats.spool_bytes,
        ),
        (
            "spool_records",
            "Spooled records this client has not yet replayed or expired.",
            stats.spool_records,
        ),
    ];
    let mut out = String::with_capacity(4096);
    for (name, help, value) in counters {
        let _ = writeln!(out, "# HELP bulkhead_{name}_total {help}");
        let _ = writeln!(out, "# TYPE bulkhead_{name}_total counter");
        let _ = writeln!(out, "bulkhead_{name}_total{label} {value}");
    }
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP bulkhead_{name} {help}");
        let _ = writeln!(out, "# TYPE bulkhead_{name} gauge");
        let _ = writeln!(out, "bulkhead_{name}{label} {value}");
    }
    out
}

/// A label value: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_label() {
        let stats = Stats {
            sent: 7,
            queue_len: 3,
            errors_overwritten: 2,
            ..Stats::default()
        };
        let text = render(&stats, Some("web \"1\""));
        assert!(
            text.contains("# TYPE bulkhead_sent_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("bulkhead_sent_total{client=\"web \\\"1\\\"\"} 7\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE bulkhead_queue_len gauge\n"), "{text}");
        assert!(
            text.contains("bulkhead_queue_len{client=\"web \\\"1\\\"\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("bulkhead_errors_overwritten_total{client="),
            "{text}"
        );
        let bare = render(&stats, None);
        assert!(bare.contains("\nbulkhead_sent_total 7\n"), "{bare}");
        // Every sample line is preceded by its HELP and TYPE.
        for line in bare.lines().filter(|l| !l.starts_with('#')) {
            let metric = line.split(' ').next().unwrap();
            assert!(bare.contains(&format!("# TYPE {metric} ")), "{line}");
        }
    }
}
