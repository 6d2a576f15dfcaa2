//! A stop signal ends the wait for a busy workdir lock (issue 12 item 8: "end wait loops early").
//! Its own test binary: `runtime::stop::request()` is process-wide.

use std::time::{Duration, Instant};

use gitops::{LockError, WorkdirLock};

#[test]
fn a_stop_request_ends_the_wait_for_a_busy_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wd.lock");
    let _held = WorkdirLock::acquire(&path, Duration::from_secs(1)).unwrap();
    let waiter = {
        let path = path.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            (
                WorkdirLock::acquire(&path, Duration::from_secs(120)),
                start.elapsed(),
            )
        })
    };
    runtime::stop::request();
    let (result, waited) = waiter.join().unwrap();
    assert!(matches!(result, Err(LockError::Busy { .. })), "{result:?}");
    assert!(waited < Duration::from_secs(30), "waited {waited:?}");
}
