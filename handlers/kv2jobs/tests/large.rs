//! kv2jobs on branches large enough that the live apps are read while the configs are parsed,
//! and compared as they are decoded (issue 13): the same plan, the same writes, the same
//! replay as the small branches of deploy.rs.

mod common;

use common::{action, actions, app, count, Stack};
use serde_json::{json, Value};

/// Enough configs for a payload above the size from which kv2jobs reads Marathon while it
/// decodes the payload (32 KiB).
const APPS: usize = 120;

fn files(cmd_of: impl Fn(usize) -> String) -> Vec<(String, Value)> {
    (0..APPS)
        .map(|i| {
            let id = format!("/large/app-{i:03}");
            (format!("apps/app-{i:03}.json"), app(&id, &cmd_of(i)))
        })
        .collect()
}

/// The plan line of `id` names this field change.
fn assert_diff(summary: &Value, id: &str, change: &str) {
    let a = action(summary, id);
    let detail = a["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(change), "{id} should show {change}: {a}");
}

fn payload(s: &Stack, files: &[(String, Value)]) -> Vec<u8> {
    let refs: Vec<(&str, Value)> = files.iter().map(|(f, v)| (f.as_str(), v.clone())).collect();
    s.payload(&refs)
}

#[test]
fn a_large_branch_is_compared_as_it_is_read() {
    let s = Stack::new("large");
    let (code, sum, err) = s.run(&payload(&s, &files(|_| "sleep 1".into())), &[]);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(actions(&sum, "create-app").len(), APPS, "{sum}");
    s.settle();
    // Two apps changed in Git; one drifted in Marathon and is repaired; the rest unchanged.
    let mut changed = files(|i| {
        if i == 7 || i == 99 {
            "sleep 2".into()
        } else {
            "sleep 1".into()
        }
    });
    changed[50].1["labels"] = json!({"team": "x"});
    let before = s.marathon_writes();
    let (code, sum, err) = s.run(&payload(&s, &changed), &["--dry-run"]);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(count(&sum, "planned"), 3, "{sum}");
    assert_eq!(count(&sum, "unchanged"), APPS - 3, "{sum}");
    assert_diff(&sum, "/large/app-007", r#"cmd: "sleep 1" -> "sleep 2""#);
    assert_diff(&sum, "/large/app-050", "labels.team");
    assert_eq!(s.marathon_writes(), before, "a dry run writes nothing");
    let (code, sum, err) = s.run(&payload(&s, &changed), &[]);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(count(&sum, "applied"), 3, "{sum}");
    assert_eq!(s.live_app("/large/app-099").unwrap()["cmd"], "sleep 2");
    assert_eq!(s.live_app("/large/app-050").unwrap()["labels"]["team"], "x");
    s.settle();
    let writes = s.marathon_writes();
    let (code, sum, err) = s.run(&payload(&s, &changed), &[]);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(count(&sum, "unchanged"), APPS, "{sum}");
    assert_eq!(s.marathon_writes(), writes, "a replay must not write");
}

#[test]
fn a_large_branch_of_jobs_deploys_when_marathon_is_down() {
    // A large payload makes kv2jobs read Marathon before it knows the files are Chronos jobs:
    // that read failing must not matter when no app needs it.
    let mut s = Stack::new("large-jobs");
    s.marathon_url = "http://127.0.0.1:9".into();
    let jobs: Vec<(String, Value)> = (0..2 * APPS)
        .map(|i| {
            (
                format!("jobs/job-{i:03}.json"),
                json!({"name": format!("large-job-{i:03}"), "command": "true",
                       "schedule": "R/2030-01-01T00:00:00Z/PT1H", "owner": "ops@example.com"}),
            )
        })
        .collect();
    let (code, sum, err) = s.run(&payload(&s, &jobs), &[]);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(actions(&sum, "create-job").len(), 2 * APPS, "{sum}");
    assert_eq!(count(&sum, "applied"), 2 * APPS, "{sum}");
    assert!(sum["errors"].as_array().unwrap().is_empty(), "{sum}");
}

#[test]
fn the_cache_skips_unchanged_apps_and_still_repairs_drift() {
    let s = Stack::new("large-cache");
    let dir = tempfile::tempdir().unwrap();
    let cache = ["--cache-dir", dir.path().to_str().unwrap()];
    let dry = [&cache[..], &["--dry-run"]].concat();
    let same = files(|_| "sleep 1".into());
    let (code, sum, err) = s.run(&payload(&s, &same), &cache);
    assert_eq!(code, 0, "{sum}\n{err}");
    s.settle();
    // The replay finds every app unchanged and records them (one file for this watch).
    let (code, sum, err) = s.run(&payload(&s, &same), &cache);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(count(&sum, "unchanged"), APPS, "{sum}");
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let recorded: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        recorded["apps"].as_object().unwrap().len(),
        APPS,
        "{recorded}"
    );
    assert!(recorded["root"].is_string(), "{recorded}");
    // Git changes app 8; nothing changed in Marathon since: only app 8 is read.
    let changed = files(|i| {
        if i == 8 {
            "sleep 2".into()
        } else {
            "sleep 1".into()
        }
    });
    let requests = s.double().map(|m| m.request_count());
    let (code, sum, err) = s.run(&payload(&s, &changed), &cache);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(count(&sum, "applied"), 1, "{sum}");
    assert_eq!(count(&sum, "unchanged"), APPS - 1, "{sum}");
    assert!(err.contains("1 app(s) read, 119 known equal"), "{err}");
    if let (Some(m), Some(before)) = (s.double(), requests) {
        // Root versions, app 8, its write, root versions again: never the whole list.
        assert_eq!(m.request_count() - before, 4, "{err}");
    }
    assert_eq!(s.live_app("/large/app-008").unwrap()["cmd"], "sleep 2");
    s.settle();
    // Someone edits app 3 in Marathon: Marathon changed, so every app is read again (by
    // version: app 3 has a new one), and the drift is seen.
    let m = s.marathon_url.clone();
    let mut drifted = s.live_app("/large/app-003").unwrap();
    for k in [
        "version",
        "versionInfo",
        "tasksRunning",
        "tasksStaged",
        "tasksHealthy",
        "tasksUnhealthy",
        "deployments",
    ] {
        drifted.as_object_mut().unwrap().remove(k);
    }
    drifted["cmd"] = json!("sleep 3");
    ureq::put(&format!("{m}/v2/apps/large/app-003"))
        .send_json(&drifted)
        .unwrap();
    s.settle();
    let before = std::fs::read(&file).unwrap();
    let (code, sum, err) = s.run(&payload(&s, &changed), &dry);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(count(&sum, "planned"), 1, "{sum}");
    // The drift is seen through the cache.
    assert_diff(&sum, "/large/app-003", r#"cmd: "sleep 3" -> "sleep 1""#);
    assert!(!err.contains("Marathon unchanged"), "{err}");
    assert!(
        err.contains(&format!("{} of them known from --cache-dir", APPS - 2)),
        "apps 3 (drifted) and 8 (written) are compared, the rest are not: {err}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "--dry-run writes no cache"
    );
    let (code, sum, err) = s.run(&payload(&s, &changed), &cache);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(count(&sum, "applied"), 1, "{sum}");
    assert_eq!(s.live_app("/large/app-003").unwrap()["cmd"], "sleep 1");
    s.settle();
    // Only this run's write changed Marathon since it read it: the next run reads app 3 only.
    let (code, sum, err) = s.run(&payload(&s, &changed), &cache);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(count(&sum, "unchanged"), APPS, "{sum}");
    assert!(err.contains("1 app(s) read, 119 known equal"), "{err}");
    // A cache file that is not one is a cold start, not a failure.
    std::fs::write(&file, b"garbage").unwrap();
    let (code, sum, err) = s.run(&payload(&s, &changed), &cache);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(count(&sum, "unchanged"), APPS, "{sum}");
    assert!(!err.contains("Marathon unchanged"), "{err}");
}

#[test]
fn a_prune_with_the_cache_reads_every_live_app() {
    // The cache's shortcut (reading only the apps without a verdict) would not see a live app
    // whose config is gone: --prune never takes it, and deletes on the full list as without
    // a cache.
    let s = Stack::new("large-prune");
    let dir = tempfile::tempdir().unwrap();
    let cache = ["--cache-dir", dir.path().to_str().unwrap()];
    let all = files(|_| "sleep 1".into());
    let (code, sum, err) = s.run(&payload(&s, &all), &cache);
    assert_eq!(code, 0, "{sum}\n{err}");
    s.settle();
    let (code, sum, err) = s.run(&payload(&s, &all), &cache);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(count(&sum, "unchanged"), APPS, "{sum}");
    let fewer = &all[..APPS - 1];
    let (code, sum, err) = s.run(&payload(&s, fewer), &[&cache[..], &["--prune"]].concat());
    assert_eq!(code, 0, "{sum}\n{err}");
    assert!(!err.contains("Marathon unchanged"), "{err}");
    assert!(err.contains(&format!("{APPS} live app(s) read")), "{err}");
    assert_eq!(actions(&sum, "delete-app").len(), 1, "{sum}");
    assert_eq!(action(&sum, "/large/app-119")["status"], "applied", "{sum}");
    assert!(s.live_app("/large/app-119").is_none());
}
