//! Bounded, jittered exponential backoff (the shape consul-template's `retry` block uses:
//! attempts, base backoff doubled per attempt, a maximum).

use std::time::Duration;

use crate::deadline::Deadline;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Total tries including the first.
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            attempts: 4,
            base: Duration::from_millis(250),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The wait before try number `attempt + 1` (attempt counts from 1): base·2^(attempt-1),
    /// capped at `max`, with "equal jitter" (half fixed, half random) so that several agents
    /// retrying the same remote do not stampede together.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.max);
        let half = capped / 2;
        half + half.mul_f64(jitter_fraction())
    }

    /// Runs `op` until it succeeds, `retryable` says no, tries run out, or the deadline passes.
    pub fn retry<T, E>(
        &self,
        deadline: Option<&Deadline>,
        mut retryable: impl FnMut(&E) -> bool,
        mut op: impl FnMut(u32) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut attempt = 1;
        loop {
            match op(attempt) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if attempt >= self.attempts.max(1) || !retryable(&e) {
                        return Err(e);
                    }
                    let wait = self.delay(attempt);
                    if let Some(d) = deadline {
                        if d.remaining() <= wait {
                            return Err(e);
                        }
                    }
                    std::thread::sleep(wait);
                    attempt += 1;
                }
            }
        }
    }
}

/// A number in [0, 1) that differs between processes and calls (jitter only, not security).
fn jitter_fraction() -> f64 {
    use std::cell::Cell;
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            h.finish() | 1
        });
    }
    STATE.with(|s| {
        // xorshift64
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_and_is_capped() {
        let b = Backoff {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_millis(400),
        };
        for _ in 0..50 {
            let d1 = b.delay(1);
            assert!(d1 >= Duration::from_millis(50) && d1 < Duration::from_millis(100));
            let d5 = b.delay(5);
            assert!(d5 >= Duration::from_millis(200) && d5 < Duration::from_millis(400));
        }
    }

    #[test]
    fn retry_stops_after_attempts_and_on_permanent_errors() {
        let b = Backoff {
            attempts: 3,
            base: Duration::from_millis(1),
            max: Duration::from_millis(2),
        };
        let mut calls = 0;
        let r: Result<(), &str> = b.retry(
            None,
            |_| true,
            |_| {
                calls += 1;
                Err("x")
            },
        );
        assert!(r.is_err());
        assert_eq!(calls, 3);
        let mut calls = 0;
        let _: Result<(), &str> = b.retry(
            None,
            |_| false,
            |_| {
                calls += 1;
                Err("x")
            },
        );
        assert_eq!(calls, 1);
        let r: Result<u32, &str> =
            b.retry(None, |_| true, |a| if a < 2 { Err("x") } else { Ok(a) });
        assert_eq!(r, Ok(2));
    }
}
