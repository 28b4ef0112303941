//! `GET /metrics`: counters, gauges and histograms in Prometheus' text format (version
//! 0.0.4), written by hand: a few dozen lines, no registry. The HTTP side counts requests;
//! the engine thread counts tokens and sets the gauges after each step.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds of the latency buckets, in seconds (software adapters are slow, GPUs fast).
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Upper bounds of the batch-size buckets (generations per step).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// A Prometheus histogram: cumulative counts per upper bound, a sum and a count.
#[derive(Clone, Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&mut self.counts) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// The engine's state after a step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Generations waiting for a place in the batch.
    pub queue_depth: usize,
    /// Generations running.
    pub running: usize,
    pub kv_blocks_used: u32,
    pub kv_blocks_free: u32,
    /// Blocks that hold a cached prefix and no running generation.
    pub kv_blocks_cached: u32,
}

struct State {
    /// Requests by (endpoint, status code).
    requests: BTreeMap<(String, u16), u64>,
    prompt_tokens: u64,
    generated_tokens: u64,
    preemptions: u64,
    drafted_tokens: u64,
    accepted_drafts: u64,
    gauges: Gauges,
    time_to_first_token: Histogram,
    inter_token_latency: Histogram,
    batch_size: Histogram,
}

pub struct Metrics {
    state: Mutex<State>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            state: Mutex::new(State {
                requests: BTreeMap::new(),
                prompt_tokens: 0,
                generated_tokens: 0,
                preemptions: 0,
                drafted_tokens: 0,
                accepted_drafts: 0,
                gauges: Gauges::default(),
                time_to_first_token: Histogram::new(LATENCY_BUCKETS),
                inter_token_latency: Histogram::new(LATENCY_BUCKETS),
                batch_size: Histogram::new(BATCH_BUCKETS),
            }),
        }
    }
}

impl Metrics {
    /// A poisoned lock only means a panic elsewhere mid-update: the numbers are still
    /// worth serving.
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn request(&self, endpoint: &str, status: u16) {
        *self
            .state()
            .requests
            .entry((endpoint.to_string(), status))
            .or_default() += 1;
    }

    pub fn prompt_tokens(&self, n: usize) {
        self.state().prompt_tokens += n as u64;
    }

    pub fn first_token(&self, seconds: f64) {
        self.state().time_to_first_token.observe(seconds);
    }

    /// A token after the first of its generation, `seconds` after the one before it.
    pub fn next_token(&self, seconds: f64) {
        self.state().inter_token_latency.observe(seconds);
    }

    /// One step: how many generations it held, how many tokens it sampled, and how many
    /// drafted tokens it verified and kept.
    pub fn step(&self, batch: usize, sampled: usize, drafted: usize, accepted: usize) {
        let mut s = self.state();
        s.batch_size.observe(batch as f64);
        s.generated_tokens += sampled as u64;
        s.drafted_tokens += drafted as u64;
        s.accepted_drafts += accepted as u64;
    }

    /// Sets the preemption counter to the scheduler's running total.
    pub fn preemptions(&self, total: u64) {
        let mut s = self.state();
        s.preemptions = s.preemptions.max(total);
    }

    pub fn gauges(&self, gauges: Gauges) {
        self.state().gauges = gauges;
    }

    /// The text `GET /metrics` serves.
    pub fn render(&self) -> String {
        let s = self.state();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP wisp_requests_total HTTP requests by endpoint and status code.\n\
             # TYPE wisp_requests_total counter"
        );
        for ((endpoint, status), n) in &s.requests {
            let _ = writeln!(
                out,
                "wisp_requests_total{{endpoint=\"{}\",status=\"{status}\"}} {n}",
                escape(endpoint)
            );
        }
        let counters = [
            (
                "wisp_prompt_tokens_total",
                "Prompt tokens of the requests run.",
                s.prompt_tokens,
            ),
            (
                "wisp_generated_tokens_total",
                "Tokens sampled.",
                s.generated_tokens,
            ),
            (
                "wisp_preemptions_total",
                "Generations preempted to free KV blocks.",
                s.preemptions,
            ),
            (
                "wisp_draft_tokens_total",
                "Drafted tokens verified (speculative decoding).",
                s.drafted_tokens,
            ),
            (
                "wisp_draft_tokens_accepted_total",
                "Drafted tokens the model kept.",
                s.accepted_drafts,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let g = s.gauges;
        let gauges = [
            (
                "wisp_queue_depth",
                "Generations waiting to run.",
                g.queue_depth as u64,
            ),
            ("wisp_running", "Generations running.", g.running as u64),
            (
                "wisp_kv_blocks_used",
                "KV cache blocks in use.",
                u64::from(g.kv_blocks_used),
            ),
            (
                "wisp_kv_blocks_free",
                "KV cache blocks free.",
                u64::from(g.kv_blocks_free),
            ),
            (
                "wisp_kv_blocks_cached",
                "KV cache blocks holding a cached prefix only.",
                u64::from(g.kv_blocks_cached),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        s.time_to_first_token.write(
            &mut out,
            "wisp_time_to_first_token_seconds",
            "From a request's arrival to its first sampled token.",
        );
        s.inter_token_latency.write(
            &mut out,
            "wisp_inter_token_latency_seconds",
            "Between consecutive tokens of one generation.",
        );
        s.batch_size.write(
            &mut out,
            "wisp_batch_size",
            "Generations in each engine step.",
        );
        out
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format requires.
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
    fn the_text_format_has_every_family() {
        let m = Metrics::default();
        m.request("/v1/chat/completions", 200);
        m.request("/v1/chat/completions", 200);
        m.request("/v1/completions", 400);
        m.prompt_tokens(12);
        m.step(3, 2, 4, 3);
        m.first_token(0.3);
        m.next_token(0.02);
        m.gauges(Gauges {
            queue_depth: 1,
            running: 3,
            kv_blocks_used: 10,
            kv_blocks_free: 6,
            kv_blocks_cached: 2,
        });
        let text = m.render();
        for line in [
            "# TYPE wisp_requests_total counter",
            "wisp_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 2",
            "wisp_requests_total{endpoint=\"/v1/completions\",status=\"400\"} 1",
            "wisp_prompt_tokens_total 12",
            "wisp_generated_tokens_total 2",
            "wisp_preemptions_total 0",
            "wisp_draft_tokens_total 4",
            "wisp_draft_tokens_accepted_total 3",
            "# TYPE wisp_queue_depth gauge",
            "wisp_queue_depth 1",
            "wisp_running 3",
            "wisp_kv_blocks_used 10",
            "wisp_kv_blocks_free 6",
            "wisp_kv_blocks_cached 2",
            "# TYPE wisp_time_to_first_token_seconds histogram",
            "wisp_time_to_first_token_seconds_bucket{le=\"0.25\"} 0",
            "wisp_time_to_first_token_seconds_bucket{le=\"0.5\"} 1",
            "wisp_time_to_first_token_seconds_bucket{le=\"+Inf\"} 1",
            "wisp_time_to_first_token_seconds_count 1",
            "wisp_inter_token_latency_seconds_bucket{le=\"0.025\"} 1",
            "wisp_batch_size_bucket{le=\"2\"} 0",
            "wisp_batch_size_bucket{le=\"4\"} 1",
            "wisp_batch_size_sum 3",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
