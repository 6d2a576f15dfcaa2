//! Per-app rules in the job file (issue 16): `shipwatch.ignore` fields are left as they are
//! live, `shipwatch.prune=false` apps survive `--prune`, `shipwatch.sync=false` apps are paused;
//! Chronos jobs carry the same rules as `SHIPWATCH_*` environment variables.

mod common;

use std::time::Duration;

use common::{action, app, count, Stack};
use serde_json::{json, Value};

/// A live change made by hand (an autoscaler, an operator): a partial PUT, then settled.
fn change_live(s: &Stack, id: &str, body: Value) {
    ureq::put(&format!("{}/v2/apps{id}?force=true", s.marathon_url))
        .config()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .send_json(body)
        .unwrap();
    s.settle();
}

fn detail(sum: &Value, target: &str) -> String {
    action(sum, target)["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn an_ignored_instances_change_made_live_is_left_alone_and_kept_on_the_next_write() {
    let s = Stack::new("ignore");
    let def = |image: &str| {
        json!({"id": "/ignore/api", "cmd": "serve", "cpus": 0.1, "mem": 32, "instances": 1,
               "env": {"A": "1"},
               "labels": {"shipwatch.ignore": "instances, env.FEATURE_X"},
               "container": {"type": "DOCKER", "docker": {"image": image}}})
    };
    let (code, sum, err) = s.run(&s.payload(&[("api.json", def("reg/api:1"))]), &[]);
    assert_eq!(code, 0, "{sum}\n{err}");
    s.settle();
    // The autoscaler scales to 3 and an operator turns a feature flag on, live.
    change_live(
        &s,
        "/ignore/api",
        json!({"instances": 3, "env": {"A": "1", "FEATURE_X": "on"}}),
    );
    let writes = s.marathon_writes();
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("kv2jobs.prom");
    let (code, sum, err) = s.run(
        &s.payload(&[("api.json", def("reg/api:1"))]),
        &["--metrics-file", metrics.to_str().unwrap()],
    );
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        prom.contains("shipwatch_last_run_drift{handler=\"kv2jobs\"} 0"),
        "no drift: {prom}"
    );
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(
        action(&sum, "/ignore/api")["status"],
        "unchanged",
        "an ignored live change is no drift: {sum}"
    );
    assert_eq!(count(&sum, "applied"), 0, "{sum}");
    assert_eq!(s.marathon_writes(), writes, "nothing written back");
    // A new image is written with the live instance count and flag, never the file's.
    let (code, sum, err) = s.run(&s.payload(&[("api.json", def("reg/api:2"))]), &[]);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(action(&sum, "/ignore/api")["status"], "applied", "{sum}");
    let d = detail(&sum, "/ignore/api");
    assert!(d.contains("reg/api:2"), "{d}");
    assert!(
        !d.contains("instances"),
        "ignored fields are not diffed: {d}"
    );
    s.settle();
    let live = s.live_app("/ignore/api").unwrap();
    assert_eq!(live["container"]["docker"]["image"], "reg/api:2");
    assert_eq!(live["instances"], 3, "{live}");
    assert_eq!(live["env"], json!({"A": "1", "FEATURE_X": "on"}), "{live}");
}

#[test]
fn a_paused_app_is_skipped_with_the_reason_and_nothing_is_written() {
    let s = Stack::new("paused");
    let (code, _, err) = s.run(&s.payload(&[("a.json", app("/paused/a", "sleep 1"))]), &[]);
    assert_eq!(code, 0, "{err}");
    s.settle();
    let writes = s.marathon_writes();
    let mut paused = app("/paused/a", "sleep 2");
    paused["labels"] = json!({"shipwatch.sync": "false"});
    let mut new = app("/paused/new", "sleep 2");
    new["labels"] = json!({"shipwatch.sync": "false"});
    let (code, sum, err) = s.run(
        &s.payload(&[("a.json", paused), ("new.json", new)]),
        &["--prune"],
    );
    assert_eq!(code, 0, "{sum}\n{err}");
    for id in ["/paused/a", "/paused/new"] {
        let a = action(&sum, id);
        assert_eq!(a["status"], "skipped", "{sum}");
        assert!(
            a["detail"]
                .as_str()
                .unwrap()
                .contains("paused (label shipwatch.sync=false)"),
            "{a}"
        );
    }
    assert_eq!(
        s.marathon_writes(),
        writes,
        "nothing written for a paused app"
    );
    assert_eq!(s.live_app("/paused/a").unwrap()["cmd"], "sleep 1");
    assert!(s.live_app("/paused/new").is_none());
}

#[test]
fn a_prune_false_app_survives_prune_and_says_why() {
    let s = Stack::new("keep");
    let mut kept = app("/keep/legacy", "sleep 1");
    kept["labels"] = json!({"shipwatch.prune": "false"});
    let (code, _, err) = s.run(
        &s.payload(&[
            ("legacy.json", kept),
            ("old.json", app("/keep/old", "sleep 1")),
            ("stay.json", app("/keep/stay", "sleep 1")),
        ]),
        &[],
    );
    assert_eq!(code, 0, "{err}");
    s.settle();
    // Both files are removed from Git.
    let (code, sum, err) = s.run(
        &s.payload(&[("stay.json", app("/keep/stay", "sleep 1"))]),
        &["--prune"],
    );
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(action(&sum, "/keep/old")["status"], "applied", "{sum}");
    let a = action(&sum, "/keep/legacy");
    assert_eq!(a["status"], "skipped", "{sum}");
    assert!(a["detail"].as_str().unwrap().contains("never prune"), "{a}");
    s.settle();
    assert!(s.live_app("/keep/legacy").is_some());
    assert!(s.live_app("/keep/old").is_none());
}

#[test]
fn chronos_jobs_carry_the_rules_as_environment_variables() {
    let s = Stack::new("jobrules");
    let job = |cmd: &str, env: Value| {
        json!({"name": "jobrules-nightly", "command": cmd, "schedule": "R/2030-01-01T00:00:00Z/PT24H",
               "owner": "ops@example.com", "environmentVariables": env})
    };
    let (code, sum, err) = s.run(
        &s.payload(&[("nightly.json", job("echo 1", json!([])))]),
        &[],
    );
    assert_eq!(code, 0, "{sum}\n{err}");
    let paused = job(
        "echo 2",
        json!([{"name": "SHIPWATCH_SYNC", "value": "false"}]),
    );
    let (code, sum, err) = s.run(&s.payload(&[("nightly.json", paused)]), &[]);
    assert_eq!(code, 0, "{sum}\n{err}");
    let a = action(&sum, "jobrules-nightly");
    assert_eq!(a["status"], "skipped", "{sum}");
    assert!(
        a["detail"]
            .as_str()
            .unwrap()
            .contains("SHIPWATCH_SYNC=false"),
        "{a}"
    );
    let live = s.live_jobs();
    assert_eq!(live[0]["command"], "echo 1", "{live:?}");
    // An ignored field: the command is left as it is live.
    let ignored = job(
        "echo 3",
        json!([{"name": "SHIPWATCH_IGNORE", "value": "command"}]),
    );
    let (_, sum, _) = s.run(&s.payload(&[("nightly.json", ignored)]), &[]);
    // The rule itself is new (an environment variable): one write, with the live command.
    assert_eq!(
        action(&sum, "jobrules-nightly")["status"],
        "applied",
        "{sum}"
    );
    assert!(
        !detail(&sum, "jobrules-nightly").contains("echo 3"),
        "{sum}"
    );
    let live = s.live_jobs();
    assert_eq!(live[0]["command"], "echo 1", "{live:?}");
}

#[test]
fn a_rule_that_does_not_parse_rejects_its_config_only() {
    let s = Stack::new("badrule");
    let mut bad = app("/badrule/a", "x");
    bad["labels"] = json!({"shipwatch.sync": "maybe"});
    let (code, sum, _) = s.run(
        &s.payload(&[("a.json", bad), ("b.json", app("/badrule/b", "x"))]),
        &[],
    );
    assert_eq!(code, 65, "{sum}");
    let a = action(&sum, &s.key("a.json"));
    assert_eq!(a["status"], "failed");
    assert!(
        a["detail"]
            .as_str()
            .unwrap()
            .contains("shipwatch.sync is \"maybe\""),
        "{a}"
    );
    assert_eq!(action(&sum, "/badrule/b")["status"], "applied");
}
