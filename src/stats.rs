//! Counters and gauges the daemon keeps about itself, and their Prometheus text rendering.
//!
//! Hot-path counting stays cheap: consumers count per partition in their own state and
//! publish per batch; everything else is an atomic add per batch or per request.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Fixed-bucket histogram of durations (seconds).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

const LATENCY_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            bounds: LATENCY_BOUNDS,
            buckets: LATENCY_BOUNDS.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

/// Bucket bounds for end-to-end latency (seconds): from a tenth of a second to a day.
pub const END_TO_END_BOUNDS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0,
    86400.0,
];

/// An end-to-end latency histogram ([`END_TO_END_BOUNDS`]).
#[derive(Debug)]
pub struct EndToEnd(pub Histogram);

impl Default for EndToEnd {
    fn default() -> Self {
        EndToEnd(Histogram::with_bounds(END_TO_END_BOUNDS))
    }
}

/// Observations gathered locally (per batch), added to a [`Histogram`] in one go.
#[derive(Debug, Default)]
pub struct Tally {
    buckets: Vec<u64>,
    sum_micros: u64,
    count: u64,
}

impl Tally {
    /// One observation of `ms` milliseconds against `bounds` (negative: 0, a clock ahead).
    #[inline]
    pub fn observe_ms(&mut self, bounds: &[f64], ms: i64) {
        if self.buckets.len() != bounds.len() {
            self.buckets.resize(bounds.len(), 0);
        }
        let ms = ms.max(0);
        let s = ms as f64 / 1000.0;
        if let Some(i) = bounds.iter().position(|&b| s <= b) {
            self.buckets[i] += 1;
        }
        self.sum_micros = self.sum_micros.saturating_add(ms as u64 * 1000);
        self.count += 1;
    }
}

impl Histogram {
    /// With its own bucket bounds (seconds, ascending).
    pub fn with_bounds(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// Adds what `t` gathered (against this histogram's bounds).
    pub fn add(&self, t: &Tally) {
        for (b, &n) in self.buckets.iter().zip(&t.buckets) {
            if n > 0 {
                b.fetch_add(n, Ordering::Relaxed);
            }
        }
        self.sum_micros.fetch_add(t.sum_micros, Ordering::Relaxed);
        self.count.fetch_add(t.count, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|&b| s <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders as a Prometheus histogram.
    pub fn render_to(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        self.render_samples(out, name, "");
    }

    /// The samples alone (after a `# TYPE … histogram` header), each with `labels`
    /// (`key="value"`, or empty) before `le`.
    pub fn render_samples(&self, out: &mut String, name: &str, labels: &str) {
        let (with, only) = if labels.is_empty() {
            (String::new(), String::new())
        } else {
            (format!("{labels},"), format!("{{{labels}}}"))
        };
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.buckets) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{with}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{with}le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{only} {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{only} {count}");
    }
}

/// Labelled counters or gauges, updated in bulk (per batch), read by the admin endpoint.
#[derive(Debug, Default)]
pub struct Labelled<K: Ord> {
    values: Mutex<BTreeMap<K, i64>>,
}

impl<K: Ord + Clone> Labelled<K> {
    pub fn add(&self, k: K, v: i64) {
        if let Ok(mut m) = self.values.lock() {
            *m.entry(k).or_insert(0) += v;
        }
    }

    pub fn set(&self, k: K, v: i64) {
        if let Ok(mut m) = self.values.lock() {
            m.insert(k, v);
        }
    }

    /// Drops the series (a gauge whose subject went away, e.g. a revoked partition's lag).
    pub fn remove(&self, k: &K) {
        if let Ok(mut m) = self.values.lock() {
            m.remove(k);
        }
    }

    pub fn snapshot(&self) -> Vec<(K, i64)> {
        self.values
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    pub fn sum(&self) -> i64 {
        self.values.lock().map(|m| m.values().sum()).unwrap_or(0)
    }
}

/// Seconds, accumulated in microseconds.
#[derive(Debug, Default)]
pub struct Seconds(AtomicU64);

impl Seconds {
    pub fn add(&self, d: Duration) {
        self.0.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn get(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 / 1e6
    }
}

/// A `# HELP`/`# TYPE` header.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample with no labels.
pub fn sample(out: &mut String, name: &str, kind: &str, help: &str, v: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {v}");
}

/// Escapes a label value.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// At most `max` events per `window`; reports how many were suppressed before the next one
/// it lets through.
#[derive(Debug)]
pub struct RateLimit {
    max: u32,
    window: Duration,
    start: Instant,
    seen: u32,
    suppressed: u64,
}

impl RateLimit {
    pub fn new(max: u32, window: Duration) -> Self {
        RateLimit {
            max,
            window,
            start: Instant::now(),
            seen: 0,
            suppressed: 0,
        }
    }

    /// `Some(suppressed before this one)` when this event may be logged.
    pub fn allow(&mut self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    /// [`Self::allow`] with the clock passed in (tests drive it).
    fn allow_at(&mut self, now: Instant) -> Option<u64> {
        if now.saturating_duration_since(self.start) >= self.window {
            self.start = now;
            self.seen = 0;
        }
        if self.seen < self.max {
            self.seen += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// The names the daemon gives its threads. The admin endpoint groups CPU time by thread name
/// (`admin::procfs`), so whoever names a thread and whoever reads the name use these.
pub mod thread_names {
    /// The metrics pipeline; its consumer threads are `metrics-N`.
    pub const METRICS: &str = "metrics";
    /// The alarm-history pipeline; its consumer threads are `alarms-N`.
    pub const ALARMS: &str = "alarms";
    /// The tokio runtime's worker threads (HTTP writes, dead letters, the admin endpoint).
    pub const IO_RUNTIME: &str = "persister-io";

    /// A consumer thread's name, also its label in logs and `/metrics`: `<pipeline>-<index>`.
    pub fn consumer(pipeline: &str, index: usize) -> String {
        format!("{pipeline}-{index}")
    }

    /// Whether `name` is a consumer thread's: a pipeline, `-`, and digits only.
    pub fn is_consumer(name: &str) -> bool {
        [METRICS, ALARMS].iter().any(|p| {
            name.strip_prefix(p)
                .and_then(|n| n.strip_prefix('-'))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_consumer_s_name_reads_back_as_a_consumer_s() {
            for pipeline in [METRICS, ALARMS] {
                assert!(is_consumer(&consumer(pipeline, 0)));
                assert!(is_consumer(&consumer(pipeline, 17)));
                assert!(!is_consumer(&format!("{}-close", consumer(pipeline, 3))));
            }
            assert!(!is_consumer(IO_RUNTIME));
        }
    }
}

#[cfg(test)]
mod end_to_end_tests {
    use super::*;

    #[test]
    fn a_tally_lands_in_its_buckets_and_renders_with_labels() {
        let h = Histogram::with_bounds(&[1.0, 10.0]);
        let mut t = Tally::default();
        for ms in [500, 1000, 1001, 20_000, -50] {
            t.observe_ms(h.bounds(), ms);
        }
        h.add(&t);
        let mut out = String::new();
        h.render_samples(&mut out, "x", "pipeline=\"metrics\"");
        assert_eq!(
            out,
            "x_bucket{pipeline=\"metrics\",le=\"1\"} 3\n\
             x_bucket{pipeline=\"metrics\",le=\"10\"} 4\n\
             x_bucket{pipeline=\"metrics\",le=\"+Inf\"} 5\n\
             x_sum{pipeline=\"metrics\"} 22.501\n\
             x_count{pipeline=\"metrics\"} 5\n"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(2));
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_secs(60));
        let mut s = String::new();
        h.render_to(&mut s, "x", "help");
        assert!(s.contains("x_bucket{le=\"0.0025\"} 1\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"0.025\"} 2\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"30\"} 2\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"+Inf\"} 3\n"), "{s}");
        assert!(s.contains("x_count 3\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn rate_limit_lets_max_through_per_window_and_counts_the_rest() {
        let mut r = RateLimit::new(2, Duration::from_secs(10));
        let t0 = r.start;
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(r.allow_at(at(0)), Some(0));
        assert_eq!(r.allow_at(at(1)), Some(0));
        assert_eq!(r.allow_at(at(2)), None);
        assert_eq!(r.allow_at(at(9)), None);
        // A new window: the first event through reports the two suppressed.
        assert_eq!(r.allow_at(at(10)), Some(2));
        assert_eq!(r.allow_at(at(11)), Some(0));
        assert_eq!(r.allow_at(at(12)), None);
        assert_eq!(r.allow_at(at(25)), Some(1));
    }
}
