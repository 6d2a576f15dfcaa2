//! Marathon double: `--max_running_deployments` (403 with Marathon's body) and bulk
//! `PUT /v2/apps` as one all-or-nothing deployment (issue 13 item 3). Facts:
//! shared/reference/marathon-chronos-and-registrars.md, "Deployment limit".

#[path = "marathon_common.rs"]
mod common;

use common::*;
use devstack::marathon::{Marathon, MarathonOptions};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn limited(max: usize, deploy_duration: Duration) -> Marathon {
    Marathon::start(MarathonOptions {
        deploy_duration,
        max_running_deployments: max,
        ..MarathonOptions::default()
    })
    .unwrap()
}

/// Marathon's exact message (Exception.scala: the missing space after "one" is Marathon's).
fn limit_body(n: usize) -> Value {
    json!({"message": format!("Max number ({n}) of running deployments is achieved. Wait for existing deployments to complete or cancel oneusing force=true parameter. You can increase max deployment number by using --max_running_deployments parameter but be advised that this can have negative effects on the performance.")})
}

fn app(id: &str, cmd: &str) -> Value {
    json!({"id": id, "cmd": cmd, "cpus": 0.1, "mem": 32, "instances": 1})
}

#[test]
fn the_default_limit_is_marathons_100() {
    assert_eq!(MarathonOptions::default().max_running_deployments, 100);
}

#[test]
fn a_change_beyond_the_limit_answers_403_with_marathons_body() {
    let m = limited(2, Duration::from_secs(3600));
    let apps = format!("{}/v2/apps", m.url());
    for id in ["/lim/a", "/lim/b"] {
        let r = call("PUT", &format!("{apps}{id}"), Some(&app(id, "x")));
        assert_eq!(r.status, 201, "{}", r.body);
    }
    assert_eq!(m.running_deployments(), 2);
    let started = m.deployment_count();
    // Every kind of change is refused while 2 run, `force` included (the check comes before
    // the plan and its lock check).
    let refused = [
        call("PUT", &format!("{apps}/lim/c"), Some(&app("/lim/c", "x"))),
        call(
            "PUT",
            &format!("{apps}/lim/a?force=true"),
            Some(&app("/lim/a", "y")),
        ),
        call("POST", &apps, Some(&app("/lim/d", "x"))),
        call("PUT", &apps, Some(&json!([app("/lim/e", "x")]))),
        call("DELETE", &format!("{apps}/lim/a"), None),
        call("POST", &format!("{apps}/lim/b/restart"), None),
    ];
    for r in refused {
        assert_eq!(r.status, 403, "{}", r.body);
        assert_eq!(r.json(), limit_body(2));
    }
    assert_eq!(m.deployment_count(), started, "nothing started");
    assert!(m.app("/lim/c").is_none() && m.app("/lim/d").is_none());
    assert_eq!(m.app("/lim/a").unwrap()["cmd"], "x");
    // A read is never limited.
    assert_eq!(call("GET", &apps, None).status, 200);
}

#[test]
fn the_limit_frees_when_deployments_finish() {
    let m = limited(1, Duration::from_millis(150));
    let apps = format!("{}/v2/apps", m.url());
    assert_eq!(
        call("PUT", &format!("{apps}/free/a"), Some(&app("/free/a", "x"))).status,
        201
    );
    let r = call("PUT", &format!("{apps}/free/b"), Some(&app("/free/b", "x")));
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json(), limit_body(1));
    // Polling with a deadline: the first deployment ends on its own, the slot frees.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let r = call("PUT", &format!("{apps}/free/b"), Some(&app("/free/b", "x")));
        if r.status == 201 {
            break;
        }
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(Instant::now() < until, "the slot never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(m.deployment_count(), 2);
    // finish_deployments frees slots too.
    m.finish_deployments();
    assert_eq!(m.running_deployments(), 0);
}

#[test]
fn a_bulk_of_50_apps_is_one_deployment() {
    let m = limited(1, Duration::from_secs(3600));
    let apps: Vec<Value> = (0..50)
        .map(|i| app(&format!("/bulk50/a{i}"), "x"))
        .collect();
    let r = call(
        "PUT",
        &format!("{}/v2/apps?partialUpdate=false", m.url()),
        Some(&Value::Array(apps)),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(m.deployment_count(), 1);
    let deps = call("GET", &format!("{}/v2/deployments", m.url()), None).json();
    assert_eq!(deps.as_array().unwrap().len(), 1);
    assert_eq!(deps[0]["id"], r.json()["deploymentId"]);
    assert_eq!(deps[0]["affectedApps"].as_array().unwrap().len(), 50);
    assert_eq!(m.apps().len(), 50);
    // At the limit of 1, the next bulk is refused as a whole.
    let r = call(
        "PUT",
        &format!("{}/v2/apps", m.url()),
        Some(&json!([app("/bulk50/z", "x")])),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    m.finish_deployments();
    assert_eq!(m.app("/bulk50/a49").unwrap()["tasksRunning"], 1);
}

#[test]
fn a_bulk_with_one_invalid_app_applies_nothing() {
    let m = limited(100, Duration::from_secs(3600));
    let mut apps: Vec<Value> = (0..50).map(|i| app(&format!("/allor/a{i}"), "x")).collect();
    apps[17]["upgradeStrategy"] = json!({"minimumHealthCapacity": 2});
    let r = call(
        "PUT",
        &format!("{}/v2/apps?partialUpdate=false", m.url()),
        Some(&Value::Array(apps.clone())),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("minimumHealthCapacity"), "{}", r.body);
    // A type error (string for a number): "Invalid JSON", in the double's shape for it.
    apps[17] = json!({"id": "/allor/a17", "cmd": "x", "instances": "two"});
    let r = call(
        "PUT",
        &format!("{}/v2/apps", m.url()),
        Some(&Value::Array(apps)),
    );
    assert!(matches!(r.status, 400 | 422), "{} {}", r.status, r.body);
    assert!(r.body.contains("Invalid JSON"), "{}", r.body);
    assert_eq!(m.deployment_count(), 0);
    assert!(m.apps().is_empty(), "nothing applied");
}

#[test]
fn a_bulk_touching_a_locked_app_is_409_unless_forced() {
    let m = limited(100, Duration::from_secs(3600));
    let url = format!("{}/v2/apps", m.url());
    let r = call("PUT", &format!("{url}/lock/b"), Some(&app("/lock/b", "x")));
    assert_eq!(r.status, 201);
    let holder = r.json()["deploymentId"].clone();
    let bulk = json!([app("/lock/a", "x"), app("/lock/b", "y")]);
    let r = call("PUT", &url, Some(&bulk));
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.json()["deployments"], json!([{ "id": holder }]));
    assert!(m.app("/lock/a").is_none(), "nothing applied");
    assert_eq!(m.deployment_count(), 1);
    let r = call("PUT", &format!("{url}?force=true"), Some(&bulk));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(m.running_deployments(), 1, "the holder was cancelled");
    assert_eq!(m.app("/lock/b").unwrap()["cmd"], "y");
}
