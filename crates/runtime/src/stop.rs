//! Stop signals (SIGTERM from `systemctl stop`, SIGINT from an operator's Ctrl-C).
//!
//! The first signal asks the run to stop: handlers start no new write (they check
//! [`requested`] before each one and in every wait loop), let the writes in flight finish
//! (bounded by the deadline), and `runtime::run` then prints the summary, sends `--notify`,
//! releases `--lock` and exits 75 (a replay completes the rest). A second signal exits at once
//! with 75. Installed by [`crate::run`]; tests and libraries can call [`install`] too (idempotent).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::Exit;

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// Set without a signal (tests, or a handler that decides to wind down).
static LOCAL: AtomicBool = AtomicBool::new(false);

fn flag() -> &'static Arc<AtomicBool> {
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Installs the SIGTERM/SIGINT handlers. Safe to call more than once.
pub fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        use signal_hook::consts::{SIGINT, SIGTERM};
        for sig in [SIGTERM, SIGINT] {
            // Order matters: the conditional exit is registered first, so the first signal only
            // sets the flag and the second (flag already set) exits at once.
            let armed = Arc::clone(flag());
            if let Err(e) =
                signal_hook::flag::register_conditional_shutdown(sig, Exit::TempFail.code(), armed)
            {
                log::warn!("installing the handler for signal {sig}: {e}");
            }
            if let Err(e) = signal_hook::flag::register(sig, Arc::clone(flag())) {
                log::warn!("installing the handler for signal {sig}: {e}");
            }
        }
    });
}

/// True once a stop was asked for: start no new write, end waits early.
pub fn requested() -> bool {
    flag().load(Ordering::SeqCst) || LOCAL.load(Ordering::SeqCst)
}

/// Asks this process to stop as a signal would (for tests and for handlers that wind down).
pub fn request() {
    LOCAL.store(true, Ordering::SeqCst);
}

/// Sleeps for `d`, waking early (returning `false`) when a stop is requested.
pub fn sleep(d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if requested() {
            return false;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// The message a handler records when it stopped early.
pub fn stopped_message(not_started: usize) -> String {
    format!(
        "stopped by a signal: {not_started} write(s) not started; replay the payload to complete them"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_runs_its_course_without_a_request() {
        // No request in this test binary except in the test below, which runs in another
        // process-wide state only after this one checks a short sleep.
        let t = Instant::now();
        let full = sleep(Duration::from_millis(20));
        assert!(full || requested());
        assert!(t.elapsed() >= Duration::from_millis(20) || requested());
    }

    #[test]
    fn message_names_what_was_not_done() {
        assert!(stopped_message(3).contains("3 write(s) not started"));
    }
}
