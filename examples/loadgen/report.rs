//! Counting what happened, and saying it: live progress, the final
//! report, and `--json`.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Everything the run counts.
pub struct Tally {
    /// Latency of every completed request, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Requests completed during the measured (active) period.
    pub ops: u64,
    /// Requests completed in all (warm-up and the wind-down included).
    pub ops_total: u64,
    /// Reply bytes received during the measured period.
    pub bytes: u64,
    /// Reply bytes checked and found right.
    pub verified: u64,
    /// Errors by kind.
    pub errors: BTreeMap<&'static str, u64>,
    /// Most connections up at once.
    pub held: usize,
}

impl Tally {
    pub fn new() -> Self {
        Tally {
            // 1 ns to 60 s at 3 significant digits: a few hundred KiB.
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds"),
            ops: 0,
            ops_total: 0,
            bytes: 0,
            verified: 0,
            errors: BTreeMap::new(),
            held: 0,
        }
    }

    pub fn error(&mut self, kind: &'static str) {
        *self.errors.entry(kind).or_default() += 1;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn record(&mut self, latency: Duration) {
        let ns = (latency.as_nanos() as u64).clamp(1, 60_000_000_000);
        // Within bounds by the clamp; a failure would only drop a sample.
        let _ = self.latency.record(ns);
    }
}

/// The run as figures.
pub struct Summary {
    pub protocol: String,
    pub conns: usize,
    pub idle_conns: usize,
    pub seconds: f64,
    pub size: usize,
    pub depth: usize,
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

pub fn json(summary: &Summary, t: &Tally) -> Value {
    let h = &t.latency;
    json!({
        "protocol": summary.protocol,
        "conns": summary.conns,
        "idle_conns": summary.idle_conns,
        "held": t.held,
        "seconds": summary.seconds,
        "size": summary.size,
        "depth": summary.depth,
        "ops": t.ops,
        "ops_per_s": t.ops as f64 / summary.seconds,
        "mb_per_s": t.bytes as f64 / summary.seconds / 1e6,
        "latency_us": {
            "p50": us(h, 0.50), "p90": us(h, 0.90), "p99": us(h, 0.99),
            "p99_9": us(h, 0.999), "max": h.max() as f64 / 1000.0,
        },
        "errors": t.errors,
        "error_total": t.error_count(),
        "bytes_verified": t.verified,
    })
}

pub fn human(summary: &Summary, t: &Tally) -> String {
    let h = &t.latency;
    let errors = if t.errors.is_empty() {
        "none".to_string()
    } else {
        t.errors
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "loadgen: {} x{} conns (+{} idle), {} B, depth {}, {:.1} s measured\n\
         \x20 held        {} connections\n\
         \x20 throughput  {:.0} ops/s, {:.2} MB/s\n\
         \x20 latency     p50 {:.0} us  p90 {:.0} us  p99 {:.0} us  p99.9 {:.0} us  max {:.0} us\n\
         \x20 verified    {} bytes\n\
         \x20 errors      {}",
        summary.protocol,
        summary.conns,
        summary.idle_conns,
        summary.size,
        summary.depth,
        summary.seconds,
        t.held,
        t.ops as f64 / summary.seconds,
        t.bytes as f64 / summary.seconds / 1e6,
        us(h, 0.5),
        us(h, 0.9),
        us(h, 0.99),
        us(h, 0.999),
        h.max() as f64 / 1000.0,
        t.verified,
        errors
    )
}
