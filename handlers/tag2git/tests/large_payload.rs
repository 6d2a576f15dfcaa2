//! Issue 13 item 5: tag2git's peak RSS on a large `images/` keyprefix stays within 4x the
//! payload plus 32 MiB (before: about 12x, from a `serde_json::Value` tree of the payload plus
//! parsed copies of every entry).
//!
//! The payload (20 MiB, about 145,000 keys: small enough for a debug build in a few seconds, and
//! twice the fixed 32 MiB allowance so the per-byte cost decides) names one repository the
//! fixture jobs run and ~145,000 that no job runs. The handler's peak RSS is the kernel's
//! `ru_maxrss` from wait4(2), not a timing: the test fails on the old code whatever the
//! machine's speed.

mod common;

use std::fs::File;
use std::io::BufWriter;
use std::process::Stdio;

use common::Repo;

const PAYLOAD_BYTES: usize = 20 << 20;

/// The budget of issue 13 item 5, in KiB.
fn budget_kib(payload_bytes: usize) -> u64 {
    4 * payload_bytes as u64 / 1024 + 32 * 1024
}

/// Waits for `child` and returns its exit code and peak RSS in KiB. The peak covers this
/// process's RSS when it spawned the child (Linux carries the parent's high-water mark across
/// fork and exec), which is why the payload is written to a file rather than held here.
fn wait_with_peak_rss(child: std::process::Child) -> (i32, u64) {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our unreaped child; both pointers are valid for the call.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "wait4: {e}");
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    (code, usage.ru_maxrss as u64)
}

/// This process's own high-water mark (KiB), to show it is not what was measured.
fn own_peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn a_large_keyprefix_peaks_within_4x_the_payload_plus_32_mib() {
    let repo = Repo::new();
    let dir = repo.tmp.path();
    let payload = dir.join("images.json");
    let changed = "images/registry.local:5000/sami/api";
    let (bytes, entries) = devstack::payload::write_keyprefix(
        BufWriter::new(File::create(&payload).unwrap()),
        PAYLOAD_BYTES,
        |i| {
            (
                format!("images/registry.local:5000/team/svc{i}"),
                b"2.0.0".to_vec(),
                100 + i as u64,
            )
        },
        &[(changed.to_string(), b"1.4.2".to_vec(), 7)],
    )
    .unwrap();
    let stdout = dir.join("stdout.json");
    let stderr = dir.join("stderr.txt");
    let mut cmd = repo.command(&repo.workdir(), &["--input", payload.to_str().unwrap()]);
    cmd.stdin(Stdio::null())
        .stdout(File::create(&stdout).unwrap())
        .stderr(File::create(&stderr).unwrap());
    let own = own_peak_kib();
    let (code, peak_kib) = wait_with_peak_rss(cmd.spawn().unwrap());
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(code, 0, "stderr:\n{log}");

    // The run did its work: the one job image committed, every other entry reported.
    assert!(
        repo.show_str("main", "jobs/api.json")
            .contains("registry.local:5000/sami/api:1.4.2"),
        "{log}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&stdout).unwrap()).unwrap();
    let actions = summary["actions"].as_array().unwrap();
    let skipped = actions.iter().filter(|a| a["status"] == "skipped").count();
    assert_eq!(skipped, entries - 1, "every image no job runs is reported");
    assert!(
        log.lines().count() < 200,
        "per-entry warnings are capped: {} lines",
        log.lines().count()
    );

    let budget = budget_kib(bytes);
    let mib = |kib: u64| kib as f64 / 1024.0;
    eprintln!(
        "payload {:.1} MiB ({entries} entries): tag2git peak RSS {:.1} MiB ({:.2}x), budget {:.1} MiB; this test process {:.1} MiB",
        mib(bytes as u64 / 1024),
        mib(peak_kib),
        peak_kib as f64 * 1024.0 / bytes as f64,
        mib(budget),
        mib(own)
    );
    // The measurement is the handler's: it read the whole payload into memory.
    assert!(peak_kib > bytes as u64 / 1024, "{peak_kib} KiB");
    assert!(
        peak_kib <= budget,
        "tag2git peaked at {:.1} MiB on a {:.1} MiB payload: over 4x + 32 MiB = {:.1} MiB",
        mib(peak_kib),
        mib(bytes as u64 / 1024),
        mib(budget)
    );
}
