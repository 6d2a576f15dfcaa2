//! One overall deadline per invocation: every remote call and retry loop is bounded by it.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    pub fn after(timeout: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + timeout,
        }
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    pub fn expired(&self) -> bool {
        self.remaining().is_zero()
    }

    /// `d`, shortened so it does not run past the deadline.
    pub fn cap(&self, d: Duration) -> Duration {
        d.min(self.remaining())
    }
}
