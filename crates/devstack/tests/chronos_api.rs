//! Chronos double: reference §3 and shared/fixtures/chronos/.

#[path = "marathon_common.rs"]
mod common;

use common::*;
use devstack::chronos::{Chronos, ChronosOptions};
use serde_json::{json, Value};

fn start() -> Chronos {
    Chronos::start(ChronosOptions::default()).unwrap()
}

fn docker_job() -> Value {
    serde_json::from_str(include_str!("../../../fixtures/chronos/job-docker.json")).unwrap()
}

#[test]
fn iso8601_creates_or_replaces_with_204_and_get_adds_defaults_and_counters() {
    let c = start();
    let url = format!("{}/v1/scheduler/iso8601", c.url());
    let r = call("POST", &url, Some(&docker_job()));
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(r.body, "");
    let jobs = call("GET", &format!("{}/v1/scheduler/jobs", c.url()), None).json();
    let j = &jobs[0];
    assert_eq!(j["name"], "dockerjob");
    assert_eq!(j["schedule"], "R/2014-09-25T17:22:00Z/PT2M");
    assert_eq!(j["cpus"], 0.5);
    assert_eq!(j["mem"], 512.0);
    assert_eq!(j["successCount"], 0);
    assert_eq!(j["errorCount"], 0);
    assert_eq!(j["lastSuccess"], "");
    assert_eq!(j["lastError"], "");
    assert_eq!(j["errorsSinceLastSuccess"], 0);
    assert_eq!(j["retries"], 2);
    assert_eq!(j["shell"], true);
    assert_eq!(j["container"]["image"], "libmesos/ubuntu");
    assert_ne!(j, &docker_job());
    // Same name replaces.
    let mut changed = docker_job();
    changed["command"] = json!("true");
    assert_eq!(call("POST", &url, Some(&changed)).status, 204);
    let jobs = c.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["command"], "true");
    assert_eq!(c.write_count(), 2);
}

#[test]
fn bad_schedule_name_or_uris_with_fetch_are_400() {
    let c = start();
    let url = format!("{}/v1/scheduler/iso8601", c.url());
    let r = call(
        "POST",
        &url,
        Some(&json!({"name": "j", "command": "x", "schedule": "daily"})),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "Cannot parse schedule 'daily' (wtf bro)"
    );
    let r = call(
        "POST",
        &url,
        Some(
            &json!({"name": "bad name!", "command": "x", "schedule": "R/2030-01-01T00:00:00Z/PT1H"}),
        ),
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("the job's name is invalid"));
    let r = call(
        "POST",
        &url,
        Some(
            &json!({"name": "u", "command": "x", "schedule": "R/2030-01-01T00:00:00Z/PT1H",
            "uris": ["http://a/b"], "fetch": [{"uri": "http://a/b"}]}),
        ),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "Tried to add both uri (deprecated) and fetch parameters on u"
    );
    assert!(c.jobs().is_empty());
}

#[test]
fn dependency_needs_existing_parents() {
    let c = start();
    let dep = format!("{}/v1/scheduler/dependency", c.url());
    let child = json!({"name": "child", "command": "x", "parents": ["parent"]});
    assert_eq!(call("POST", &dep, Some(&child)).status, 500);
    assert_eq!(
        call(
            "POST",
            &dep,
            Some(&json!({"name": "orphan", "command": "x", "parents": []}))
        )
        .status,
        500
    );
    let parent =
        json!({"name": "parent", "command": "x", "schedule": "R/2030-01-01T00:00:00Z/PT1H"});
    call(
        "POST",
        &format!("{}/v1/scheduler/iso8601", c.url()),
        Some(&parent),
    );
    assert_eq!(call("POST", &dep, Some(&child)).status, 204);
    let got = call("GET", &format!("{}/v1/scheduler/job/child", c.url()), None).json();
    assert_eq!(got["parents"], json!(["parent"]));
    assert!(got.get("schedule").is_none());
}

#[test]
fn delete_unknown_is_400_and_children_are_rewired() {
    let c = start();
    let r = call(
        "DELETE",
        &format!("{}/v1/scheduler/job/nope", c.url()),
        None,
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("JobSchedule 'nope' not found"));
    let sched = "R/2030-01-01T00:00:00Z/PT1H";
    call(
        "POST",
        &format!("{}/v1/scheduler/iso8601", c.url()),
        Some(&json!({"name": "p", "command": "x", "schedule": sched})),
    );
    call(
        "POST",
        &format!("{}/v1/scheduler/dependency", c.url()),
        Some(&json!({"name": "k", "command": "x", "parents": ["p"]})),
    );
    let r = call("DELETE", &format!("{}/v1/scheduler/job/p", c.url()), None);
    assert_eq!(r.status, 204);
    let jobs = c.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["name"], "k");
    assert_eq!(jobs[0]["schedule"], sched, "child took over the schedule");
    assert!(jobs[0].get("parents").is_none());
}

#[test]
fn get_and_run_unknown_job_are_400() {
    let c = start();
    let r = call("GET", &format!("{}/v1/scheduler/job/nope", c.url()), None);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Job 'nope' not found"), "{}", r.body);
    let r = call("PUT", &format!("{}/v1/scheduler/job/nope", c.url()), None);
    assert_eq!(r.status, 400);
}

#[test]
fn runs_update_counters_and_rewrite_the_schedule() {
    let c = start();
    call(
        "POST",
        &format!("{}/v1/scheduler/iso8601", c.url()),
        Some(&json!({"name": "r", "command": "x", "schedule": "R3/2015-01-01T00:00:00Z/PT24H"})),
    );
    c.run_job("r");
    let j = &c.jobs()[0];
    assert_eq!(j["schedule"], "R2/2015-01-02T00:00:00.000Z/PT24H");
    assert_eq!(j["successCount"], 1);
    assert!(j["lastSuccess"].as_str().unwrap().ends_with('Z'));
    // Manual run (PUT) counts but keeps the schedule.
    let r = call("PUT", &format!("{}/v1/scheduler/job/r", c.url()), None);
    assert_eq!(r.status, 204);
    let j = &c.jobs()[0];
    assert_eq!(j["successCount"], 2);
    assert_eq!(j["schedule"], "R2/2015-01-02T00:00:00.000Z/PT24H");
    // Replacing a job keeps its server counters.
    call(
        "POST",
        &format!("{}/v1/scheduler/iso8601", c.url()),
        Some(&json!({"name": "r", "command": "y", "schedule": "R3/2015-01-01T00:00:00Z/PT24H"})),
    );
    assert_eq!(c.jobs()[0]["successCount"], 2);
}

#[test]
fn api_v2_serves_only_the_old_prefix() {
    let c = Chronos::start(ChronosOptions {
        api_v2: true,
        ..ChronosOptions::default()
    })
    .unwrap();
    let job = json!({"name": "old", "command": "x", "schedule": "R/2030-01-01T00:00:00Z/PT1H"});
    let r = call(
        "POST",
        &format!("{}/v1/scheduler/iso8601", c.url()),
        Some(&job),
    );
    assert_eq!(r.status, 404);
    assert_eq!(
        call("GET", &format!("{}/v1/scheduler/jobs", c.url()), None).status,
        404
    );
    let r = call(
        "POST",
        &format!("{}/scheduler/iso8601", c.url()),
        Some(&job),
    );
    assert_eq!(r.status, 204);
    let jobs = call("GET", &format!("{}/scheduler/jobs", c.url()), None).json();
    assert_eq!(jobs[0]["name"], "old");
    // No single-job GET before 3.0; bad schedule is an empty 400; errors are plain text.
    assert_eq!(
        call("GET", &format!("{}/scheduler/job/old", c.url()), None).status,
        404
    );
    let r = call(
        "POST",
        &format!("{}/scheduler/iso8601", c.url()),
        Some(&json!({"name": "b", "command": "x", "schedule": "nope"})),
    );
    assert_eq!((r.status, r.body.as_str()), (400, ""));
    let r = call("DELETE", &format!("{}/scheduler/job/nope", c.url()), None);
    assert_eq!(r.status, 400);
    assert_eq!(r.body, "requirement failed: Job 'nope' not found");
}

#[test]
fn basic_auth_and_faults() {
    let c = Chronos::start(ChronosOptions {
        basic_auth: Some(("u".into(), "p".into())),
        ..ChronosOptions::default()
    })
    .unwrap();
    let url = format!("{}/v1/scheduler/jobs", c.url());
    let r = call("GET", &url, None);
    assert_eq!(r.status, 401);
    assert!(r
        .header("WWW-Authenticate")
        .unwrap()
        .starts_with("Basic realm="));
    // base64("u:p")
    let ok = call_with("GET", &url, None, &[("Authorization", "Basic dTpw")]);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json(), json!([]));
    c.faults().fail_next(
        1,
        devstack::http::Fault::Status {
            status: 500,
            body: "boom".into(),
        },
    );
    assert_eq!(
        call_with("GET", &url, None, &[("Authorization", "Basic dTpw")]).status,
        500
    );
    assert_eq!(c.request_count(), 2);
}
