//! kv2jobs on branches large enough that the live apps are read while the configs are parsed,
//! and compared as they are decoded (issue 13): the same plan, the same writes, the same
//! replay as the small branches of deploy.rs.

mod common;

use common::{action, actions, app, count, Stack};
use serde_json::{json, Value};

/// More configs than kv2jobs needs before it reads Marathon early (64).
const APPS: usize = 120;

fn files(cmd_of: impl Fn(usize) -> String) -> Vec<(String, Value)> {
    (0..APPS)
        .map(|i| {
            let id = format!("/large/app-{i:03}");
            (format!("apps/app-{i:03}.json"), app(&id, &cmd_of(i)))
        })
        .collect()
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
    let a7 = action(&sum, "/large/app-007");
    assert!(
        a7["detail"]
            .as_str()
            .unwrap()
            .contains(r#"cmd: "sleep 1" -> "sleep 2""#),
        "{a7}"
    );
    let a50 = action(&sum, "/large/app-050");
    assert!(
        a50["detail"].as_str().unwrap().contains("labels.team"),
        "{a50}"
    );
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
    // Many .json files make kv2jobs read Marathon before it knows they are Chronos jobs: that
    // read failing must not matter when no app needs it.
    let mut s = Stack::new("large-jobs");
    s.marathon_url = "http://127.0.0.1:9".into();
    let jobs: Vec<(String, Value)> = (0..APPS)
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
    assert_eq!(actions(&sum, "create-job").len(), APPS, "{sum}");
    assert_eq!(count(&sum, "applied"), APPS, "{sum}");
    assert!(sum["errors"].as_array().unwrap().is_empty(), "{sum}");
}
