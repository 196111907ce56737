//! Rate-limited logging that counts the lines it held back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// At most one log line per key and period; counts what it held back, so the next line can
/// say how many similar events were not logged.
pub struct LogThrottle {
    period: Duration,
    last: HashMap<String, (Instant, u64)>,
}

impl LogThrottle {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: HashMap::new(),
        }
    }

    /// `Some(suppressed_since_last_line)` when a line for `key` may be logged now.
    pub fn allow(&mut self, key: &str, now: Instant) -> Option<u64> {
        match self.last.get_mut(key) {
            Some((at, suppressed)) if now.duration_since(*at) < self.period => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let held_back = *suppressed;
                *at = now;
                *suppressed = 0;
                Some(held_back)
            }
            None => {
                self.last.insert(key.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_suppressed_count() {
        let mut t = LogThrottle::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(t.allow("step", t0), Some(0));
        assert_eq!(t.allow("step", t0 + Duration::from_secs(1)), None);
        assert_eq!(t.allow("step", t0 + Duration::from_secs(2)), None);
        assert_eq!(t.allow("other", t0 + Duration::from_secs(2)), Some(0));
        assert_eq!(t.allow("step", t0 + Duration::from_secs(6)), Some(2));
    }
}
