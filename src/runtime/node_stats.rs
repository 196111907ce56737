//! The node's counters and latencies: frames in, answered, dropped and why, for the log and
//! `/diagnostics`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::pipeline::StageTimings;

/// Why a received frame produced no output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The image or depth message was malformed (bad encoding, step, size, ...).
    Malformed,
    /// Live mode: a newer frame replaced it before the worker got to it.
    Superseded,
    /// Every-frame mode: the queue was full.
    QueueFull,
    /// The network or post-processing failed on it.
    InferenceFailed,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [
        Self::Malformed,
        Self::Superseded,
        Self::QueueFull,
        Self::InferenceFailed,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Self::Malformed => "dropped_malformed",
            Self::Superseded => "dropped_superseded",
            Self::QueueFull => "dropped_queue_full",
            Self::InferenceFailed => "dropped_inference_failed",
        }
    }
}

/// How many recent samples rates and latencies are computed over.
const WINDOW: usize = 100;

/// Counters and latency windows of a running node; what `/diagnostics` reports.
pub struct NodeStats {
    images_received: u64,
    depths_received: u64,
    frames_processed: u64,
    dropped: [u64; DropReason::ALL.len()],
    arrivals: VecDeque<Instant>,
    preprocess: VecDeque<Duration>,
    inference: VecDeque<Duration>,
    postprocess: VecDeque<Duration>,
    publish: VecDeque<Duration>,
    /// From the image's arrival at the node to the end of publishing its outputs.
    end_to_end: VecDeque<Duration>,
}

/// One reading of [`NodeStats`].
#[derive(Clone, Debug, PartialEq)]
pub struct StatsSnapshot {
    pub input_rate_hz: f64,
    pub images_received: u64,
    pub depths_received: u64,
    pub frames_processed: u64,
    pub dropped: Vec<(DropReason, u64)>,
    /// (stage, mean ms, max ms) over the recent window.
    pub latency_ms: Vec<(&'static str, f64, f64)>,
}

impl Default for NodeStats {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeStats {
    pub fn new() -> Self {
        Self {
            images_received: 0,
            depths_received: 0,
            frames_processed: 0,
            dropped: [0; DropReason::ALL.len()],
            arrivals: VecDeque::new(),
            preprocess: VecDeque::new(),
            inference: VecDeque::new(),
            postprocess: VecDeque::new(),
            publish: VecDeque::new(),
            end_to_end: VecDeque::new(),
        }
    }

    pub fn image_received(&mut self, at: Instant) {
        self.images_received += 1;
        push_window(&mut self.arrivals, at);
    }

    pub fn depth_received(&mut self) {
        self.depths_received += 1;
    }

    pub fn dropped(&mut self, reason: DropReason) {
        self.dropped[reason as usize] += 1;
    }

    pub fn processed(&mut self, timings: &StageTimings, publish: Duration, end_to_end: Duration) {
        self.frames_processed += 1;
        push_window(&mut self.preprocess, timings.preprocess);
        push_window(&mut self.inference, timings.inference);
        push_window(&mut self.postprocess, timings.postprocess);
        push_window(&mut self.publish, publish);
        push_window(&mut self.end_to_end, end_to_end);
    }

    pub fn snapshot(&self, now: Instant) -> StatsSnapshot {
        StatsSnapshot {
            input_rate_hz: rate_hz(&self.arrivals, now),
            images_received: self.images_received,
            depths_received: self.depths_received,
            frames_processed: self.frames_processed,
            dropped: DropReason::ALL
                .iter()
                .map(|r| (*r, self.dropped[*r as usize]))
                .collect(),
            latency_ms: vec![
                (
                    "preprocess",
                    mean_ms(&self.preprocess),
                    max_ms(&self.preprocess),
                ),
                (
                    "inference",
                    mean_ms(&self.inference),
                    max_ms(&self.inference),
                ),
                (
                    "postprocess",
                    mean_ms(&self.postprocess),
                    max_ms(&self.postprocess),
                ),
                ("publish", mean_ms(&self.publish), max_ms(&self.publish)),
                (
                    "end_to_end",
                    mean_ms(&self.end_to_end),
                    max_ms(&self.end_to_end),
                ),
            ],
        }
    }
}

impl StatsSnapshot {
    pub fn count(&self, reason: DropReason) -> u64 {
        self.dropped
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|(_, n)| n).sum()
    }

    /// Flat key/value pairs, the form diagnostic_msgs/KeyValue carries.
    pub fn key_values(&self) -> Vec<(String, String)> {
        let mut kv = vec![
            (
                "input_rate_hz".to_owned(),
                format!("{:.2}", self.input_rate_hz),
            ),
            (
                "images_received".to_owned(),
                self.images_received.to_string(),
            ),
            (
                "depths_received".to_owned(),
                self.depths_received.to_string(),
            ),
            (
                "frames_processed".to_owned(),
                self.frames_processed.to_string(),
            ),
            ("dropped_total".to_owned(), self.dropped_total().to_string()),
        ];
        kv.extend(
            self.dropped
                .iter()
                .map(|(r, n)| (r.key().to_owned(), n.to_string())),
        );
        for (stage, mean, max) in &self.latency_ms {
            kv.push((format!("latency_{stage}_mean_ms"), format!("{mean:.2}")));
            kv.push((format!("latency_{stage}_max_ms"), format!("{max:.2}")));
        }
        kv
    }
}

fn push_window<T>(window: &mut VecDeque<T>, value: T) {
    if window.len() == WINDOW {
        window.pop_front();
    }
    window.push_back(value);
}

/// Arrivals per second over the recent window, 0 when it went quiet for longer than the window
/// spans (a stopped camera reads as 0, not as its last rate).
fn rate_hz(arrivals: &VecDeque<Instant>, now: Instant) -> f64 {
    let (Some(first), Some(last)) = (arrivals.front(), arrivals.back()) else {
        return 0.0;
    };
    let span = last.duration_since(*first).as_secs_f64();
    if arrivals.len() < 2 || span <= 0.0 {
        return 0.0;
    }
    let period = span / (arrivals.len() - 1) as f64;
    if now.duration_since(*last).as_secs_f64() > (3.0 * period).max(1.0) {
        return 0.0;
    }
    1.0 / period
}

fn mean_ms(window: &VecDeque<Duration>) -> f64 {
    if window.is_empty() {
        return 0.0;
    }
    window.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e3 / window.len() as f64
}

fn max_ms(window: &VecDeque<Duration>) -> f64 {
    window.iter().map(Duration::as_secs_f64).fold(0.0, f64::max) * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_counts_and_latencies() {
        let mut s = NodeStats::new();
        let t0 = Instant::now();
        for i in 0..11 {
            s.image_received(t0 + Duration::from_millis(100 * i));
        }
        s.dropped(DropReason::Malformed);
        s.dropped(DropReason::Superseded);
        s.dropped(DropReason::Superseded);
        let timings = StageTimings {
            inference: Duration::from_millis(20),
            ..Default::default()
        };
        s.processed(
            &timings,
            Duration::from_millis(1),
            Duration::from_millis(30),
        );
        s.processed(
            &timings,
            Duration::from_millis(3),
            Duration::from_millis(50),
        );
        let snap = s.snapshot(t0 + Duration::from_millis(1050));
        assert!((snap.input_rate_hz - 10.0).abs() < 1e-6);
        assert_eq!(snap.dropped_total(), 3);
        let kv: std::collections::HashMap<_, _> = snap.key_values().into_iter().collect();
        assert_eq!(kv["dropped_superseded"], "2");
        assert_eq!(kv["latency_end_to_end_mean_ms"], "40.00");
        assert_eq!(kv["latency_publish_max_ms"], "3.00");
        // Ten seconds of silence: the camera stopped, the rate reads 0.
        assert_eq!(s.snapshot(t0 + Duration::from_secs(11)).input_rate_hz, 0.0);
    }
}
