//! [`RateLimiter`]: a fixed-window count per key, bounded in memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Allows `rate` events per key per window. At most `max_keys` keys are tracked per window;
/// past that, unknown keys are refused until the window ends, so memory stays bounded
/// whatever arrives.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: u32,
    window: Duration,
    max_keys: usize,
    started: Option<Instant>,
    counts: HashMap<K, u32>,
}

impl<K: Eq + Hash> RateLimiter<K> {
    /// A limiter of `rate` per `window`.
    pub fn new(rate: u32, window: Duration, max_keys: usize) -> Self {
        RateLimiter {
            rate,
            window,
            max_keys,
            started: None,
            counts: HashMap::new(),
        }
    }

    /// Counts one event for `key`; `false` when it is over the rate.
    pub fn allow(&mut self, now: Instant, key: K) -> bool {
        match self.started {
            Some(s) if now.saturating_duration_since(s) < self.window => {}
            _ => {
                self.started = Some(now);
                self.counts.clear();
            }
        }
        let full = self.counts.len() >= self.max_keys;
        match self.counts.get_mut(&key) {
            Some(n) if *n >= self.rate => false,
            Some(n) => {
                *n += 1;
                true
            }
            None if full => false,
            None => {
                self.counts.insert(key, 1);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key_and_resets_per_window() {
        let t = Instant::now();
        let mut l = RateLimiter::new(2, Duration::from_secs(1), 2);
        assert!(l.allow(t, 1));
        assert!(l.allow(t, 1));
        assert!(!l.allow(t, 1));
        assert!(l.allow(t, 2));
        assert!(!l.allow(t, 3), "too many keys this window");
        assert!(l.allow(t + Duration::from_secs(1), 1));
        assert!(l.allow(t + Duration::from_secs(1), 3));
    }
}
