//! Marathon double: apps CRUD, normalization, validation, deployments and locks.
//! Expected values come from shared/reference/marathon-chronos-and-registrars.md §1 and
//! shared/fixtures/marathon/.

#[path = "marathon_common.rs"]
mod common;

use common::*;
use serde_json::{json, Value};

fn simple() -> Value {
    serde_json::from_str(include_str!("../../../fixtures/marathon/app-simple.json")).unwrap()
}

#[test]
fn post_answers_201_with_location_deployment_id_and_zero_counts() {
    let m = start();
    let r = call("POST", &format!("{}/v2/apps", m.url()), Some(&simple()));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.header("Location"),
        Some(format!("{}/simple", m.url()).as_str())
    );
    let dep = r.header("Marathon-Deployment-Id").unwrap().to_string();
    let b = r.json();
    assert_eq!(b["id"], "/simple");
    assert_eq!(b["deployments"], json!([{ "id": dep }]));
    for k in [
        "tasksStaged",
        "tasksRunning",
        "tasksHealthy",
        "tasksUnhealthy",
    ] {
        assert_eq!(b[k], 0, "{k}");
    }
    assert_eq!(m.write_count(), 1);
}

#[test]
fn post_existing_id_is_409_without_deployments_key() {
    let m = start();
    let url = format!("{}/v2/apps", m.url());
    assert_eq!(call("POST", &url, Some(&simple())).status, 201);
    let r = call("POST", &url, Some(&json!({"id": "simple", "cmd": "x"})));
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json(),
        json!({"message": "An app with id [/simple] already exists."})
    );
}

#[test]
fn get_app_adds_defaults_and_server_fields_so_naive_equality_fails() {
    let m = start();
    let posted = json!({"id": "web", "cmd": "serve", "mem": 16});
    call("POST", &format!("{}/v2/apps", m.url()), Some(&posted));
    let r = call("GET", &format!("{}/v2/apps/web", m.url()), None);
    assert_eq!(r.status, 200);
    // Doubles come back as doubles.
    assert!(r.body.contains("\"mem\":16.0"), "{}", r.body);
    assert!(r.body.contains("\"cpus\":1.0"), "{}", r.body);
    let app = &r.json()["app"];
    assert_ne!(app, &posted);
    assert_eq!(app["id"], "/web");
    assert_eq!(app["instances"], 1);
    assert_eq!(app["disk"], 0.0);
    assert_eq!(app["gpus"], 0);
    assert_eq!(app["executor"], "");
    assert_eq!(app["requirePorts"], false);
    assert_eq!(app["killSelection"], "YOUNGEST_FIRST");
    assert_eq!(app["backoffSeconds"], 1);
    assert_eq!(app["backoffFactor"], 1.15);
    assert_eq!(app["maxLaunchDelaySeconds"], 3600);
    assert_eq!(
        app["upgradeStrategy"],
        json!({"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0})
    );
    assert_eq!(
        app["unreachableStrategy"],
        json!({"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0})
    );
    for k in ["labels", "env"] {
        assert_eq!(app[k], json!({}), "{k}");
    }
    for k in ["constraints", "fetch", "dependencies", "healthChecks"] {
        assert_eq!(app[k], json!([]), "{k}");
    }
    assert_eq!(app["networks"], json!([{"mode": "host"}]));
    let pd = &app["portDefinitions"][0];
    assert_eq!(pd["name"], "default");
    assert_eq!(pd["protocol"], "tcp");
    let port = pd["port"].as_u64().unwrap();
    assert!((10000..=20000).contains(&port), "{port}");
    let version = app["version"].as_str().unwrap();
    assert_eq!(app["versionInfo"]["lastConfigChangeAt"], version);
    assert_eq!(app["versionInfo"]["lastScalingAt"], version);
    // Always embedded on this endpoint.
    assert!(app["tasks"].is_array());
    assert!(app["deployments"].is_array());
    assert_eq!(app["tasksRunning"], 1);
}

#[test]
fn unknown_app_is_404_with_marathon_message() {
    let m = start();
    let r = call("GET", &format!("{}/v2/apps/x", m.url()), None);
    assert_eq!(r.status, 404);
    assert_eq!(r.json(), json!({"message": "App '/x' does not exist"}));
    let r = call("DELETE", &format!("{}/v2/apps/x", m.url()), None);
    assert_eq!(r.status, 404);
}

#[test]
fn networking_14_is_answered_in_15_form() {
    let m = start();
    let app = json!({
        "id": "bridged-webapp", "cmd": "python3 -m http.server 8080", "instances": 2,
        "container": {"type": "DOCKER", "docker": {"image": "python:3", "network": "BRIDGE",
            "portMappings": [
                {"containerPort": 8080, "hostPort": 0, "servicePort": 9000, "protocol": "tcp"},
                {"containerPort": 161, "hostPort": 0, "protocol": "udp"}]}}
    });
    assert_eq!(
        call("POST", &format!("{}/v2/apps", m.url()), Some(&app)).status,
        201
    );
    let got = m.app("/bridged-webapp").unwrap();
    assert_eq!(got["networks"], json!([{"mode": "container/bridge"}]));
    let docker = &got["container"]["docker"];
    assert!(docker.get("network").is_none() && docker.get("portMappings").is_none());
    assert_eq!(docker["forcePullImage"], false);
    assert_eq!(docker["privileged"], false);
    assert_eq!(docker["parameters"], json!([]));
    assert_eq!(got["container"]["volumes"], json!([]));
    let pms = got["container"]["portMappings"].as_array().unwrap();
    assert_eq!(pms[0]["servicePort"], 9000);
    assert_eq!(pms[1]["protocol"], "udp");
    assert!(pms[1]["servicePort"].as_u64().unwrap() >= 10000);
    assert!(got.get("portDefinitions").is_none());
    // One host port per mapping on each task.
    assert_eq!(got["tasks"][0]["ports"].as_array().unwrap().len(), 2);
}

#[test]
fn put_creates_201_then_updates_200_with_deployment_id_and_version() {
    let m = start();
    let url = format!("{}/v2/apps/a/b", m.url());
    let r = call("PUT", &url, Some(&json!({"cmd": "x"})));
    assert_eq!(r.status, 201, "{}", r.body);
    let b = r.json();
    assert_eq!(
        b["deploymentId"].as_str(),
        r.header("Marathon-Deployment-Id")
    );
    assert!(b["version"].as_str().unwrap().ends_with('Z'));
    assert_eq!(b.as_object().unwrap().len(), 2);
    let r = call("PUT", &url, Some(&json!({"cmd": "y"})));
    assert_eq!(r.status, 200);
    assert_eq!(m.app("/a/b").unwrap()["cmd"], "y");
}

#[test]
fn partial_update_is_the_default_and_false_replaces() {
    let m = start();
    let url = format!("{}/v2/apps/p", m.url());
    let full = json!({"cmd": "x", "labels": {"consul": "p"},
        "healthChecks": [{"protocol": "HTTP", "path": "/health"}]});
    call("PUT", &url, Some(&full));
    let hc = &m.app("/p").unwrap()["healthChecks"][0];
    assert_eq!(hc["gracePeriodSeconds"], 300);
    assert_eq!(hc["intervalSeconds"], 60);
    assert_eq!(hc["timeoutSeconds"], 20);
    assert_eq!(hc["maxConsecutiveFailures"], 3);
    assert_eq!(hc["portIndex"], 0);
    // Leaving healthChecks out keeps them (partialUpdate defaults to true)...
    call("PUT", &url, Some(&json!({"cmd": "x2"})));
    let app = m.app("/p").unwrap();
    assert_eq!(app["cmd"], "x2");
    assert_eq!(app["healthChecks"].as_array().unwrap().len(), 1);
    assert_eq!(app["labels"], json!({"consul": "p"}));
    // ...and partialUpdate=false replaces the definition.
    let r = call(
        "PUT",
        &format!("{url}?partialUpdate=false"),
        Some(&json!({"cmd": "x3"})),
    );
    assert_eq!(r.status, 200);
    let app = m.app("/p").unwrap();
    assert_eq!(app["healthChecks"], json!([]));
    assert_eq!(app["labels"], json!({}));
}

#[test]
fn put_with_version_and_other_fields_is_422() {
    let m = start();
    let url = format!("{}/v2/apps/v", m.url());
    call("PUT", &url, Some(&json!({"cmd": "x"})));
    let mut got = m.app("/v").unwrap();
    got["cmd"] = json!("changed");
    let r = call("PUT", &url, Some(&got));
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["details"][0]["errors"][0],
        "The 'version' field may only be combined with the 'id' field."
    );
}

#[test]
fn identical_put_keeps_tasks_and_config_version() {
    let m = start();
    let url = format!("{}/v2/apps/same", m.url());
    call("PUT", &url, Some(&json!({"cmd": "x", "instances": 2})));
    let before = m.app("/same").unwrap();
    let r = call("PUT", &url, Some(&json!({"cmd": "x", "instances": 2})));
    assert_eq!(r.status, 200);
    let after = m.app("/same").unwrap();
    assert_eq!(before["tasks"], after["tasks"]);
    assert_eq!(before["versionInfo"], after["versionInfo"]);
}

#[test]
fn change_while_deploying_is_409_locked_unless_force() {
    let m = start_slow();
    let url = format!("{}/v2/apps/locked", m.url());
    let r = call("PUT", &url, Some(&json!({"cmd": "x"})));
    let dep = r.json()["deploymentId"].as_str().unwrap().to_string();
    let r = call("PUT", &url, Some(&json!({"cmd": "y"})));
    assert_eq!(r.status, 409);
    let fixture: Value = serde_json::from_str(include_str!(
        "../../../fixtures/marathon/error-409-locked.json"
    ))
    .unwrap();
    assert_eq!(r.json()["message"], fixture["message"]);
    assert_eq!(r.json()["deployments"], json!([{ "id": dep }]));
    assert_eq!(m.app("/locked").unwrap()["cmd"], "x");
    // force=true cancels the running deployment and starts a new one.
    let r = call(
        "PUT",
        &format!("{url}?force=true"),
        Some(&json!({"cmd": "y"})),
    );
    assert_eq!(r.status, 200);
    let dep2 = r.json()["deploymentId"].as_str().unwrap().to_string();
    let deps = call("GET", &format!("{}/v2/deployments", m.url()), None).json();
    assert_eq!(deps.as_array().unwrap().len(), 1);
    assert_eq!(deps[0]["id"], dep2.as_str());
    assert_eq!(deps[0]["affectedApps"], json!(["/locked"]));
    // After the deployment the app is free again.
    m.finish_deployments();
    assert_eq!(call("PUT", &url, Some(&json!({"cmd": "z"}))).status, 200);
}

#[test]
fn delete_forces_by_default_but_not_with_force_false() {
    let m = start_slow();
    let url = format!("{}/v2/apps/gone", m.url());
    call("PUT", &url, Some(&json!({"cmd": "x", "instances": 2})));
    let r = call("DELETE", &format!("{url}?force=false"), None);
    assert_eq!(r.status, 409);
    assert!(r.json().get("deployments").is_some());
    let r = call("DELETE", &url, None);
    assert_eq!(r.status, 200);
    assert!(r.header("Marathon-Deployment-Id").is_some());
    assert!(r.json()["deploymentId"].is_string());
    assert_eq!(call("GET", &url, None).status, 404);
}

#[test]
fn validation_errors_have_marathons_422_shape() {
    let m = start();
    let url = format!("{}/v2/apps", m.url());
    let r = call("POST", &url, Some(&json!({"id": "Bad_Id", "cmd": "x"})));
    assert_eq!(r.status, 422);
    let b = r.json();
    assert_eq!(b["message"], "Object is not valid");
    assert_eq!(b["details"][0]["path"], "/id");
    assert!(b["details"][0]["errors"][0]
        .as_str()
        .unwrap()
        .starts_with("must fully match regular expression '^(([a-z0-9]|"));
    let r = call("POST", &url, Some(&json!({"id": "/a/tasks", "cmd": "x"})));
    assert_eq!(r.status, 422);
    assert!(r.body.contains("reserved keywords"), "{}", r.body);
    let r = call(
        "POST",
        &url,
        Some(&json!({"id": "neg", "cmd": "x", "instances": -1})),
    );
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["details"],
        json!([{"path": "/instances", "errors": ["got -1, expected 0 or more"]}])
    );
    let r = call("POST", &url, Some(&json!({"id": "nocmd"})));
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["details"],
        json!([{"path": "/", "errors":
            ["AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."]}])
    );
    let r = call(
        "POST",
        &url,
        Some(&json!({"id": "us", "cmd": "x", "upgradeStrategy": {"minimumHealthCapacity": 2}})),
    );
    let fixture: Value = serde_json::from_str(include_str!(
        "../../../fixtures/marathon/error-422-invalid.json"
    ))
    .unwrap();
    assert_eq!(r.json(), fixture);
    // Nothing was stored.
    assert!(m.apps().is_empty());
}

#[test]
fn bad_json_is_400_invalid_json() {
    let m = start();
    let url = format!("{}/v2/apps", m.url());
    let r = raw_body("POST", &url, "{\"id\": ");
    assert_eq!(r.status, 400);
    let b = r.json();
    assert_eq!(b["message"], "Invalid JSON");
    assert!(
        b["details"].is_string(),
        "syntax errors carry a string: {b}"
    );
    let r = call("POST", &url, Some(&json!({"id": 5, "cmd": "x"})));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"message": "Invalid JSON",
               "details": [{"path": "/id", "errors": ["error.expected.jsstring"]}]})
    );
}

#[test]
fn list_embeds_counts_always_tasks_on_request_and_filters() {
    let m = start();
    let url = format!("{}/v2/apps", m.url());
    call(
        "POST",
        &url,
        Some(&json!({"id": "a", "cmd": "x", "labels": {"consul": "web"}})),
    );
    call(
        "POST",
        &url,
        Some(&json!({"id": "b", "cmd": "x", "labels": {"consul": "api"}})),
    );
    call("POST", &url, Some(&json!({"id": "c", "cmd": "x"})));
    let all = call("GET", &url, None).json();
    assert_eq!(all["apps"].as_array().unwrap().len(), 3);
    assert_eq!(all["apps"][0]["tasksRunning"], 1);
    assert!(all["apps"][0]["deployments"].is_array());
    assert!(all["apps"][0].get("tasks").is_none());
    let ids = |v: &Value| -> Vec<String> {
        v["apps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    let r = call("GET", &format!("{url}?embed=apps.tasks&label=consul"), None).json();
    assert_eq!(ids(&r), ["/a", "/b"]);
    assert_eq!(r["apps"][0]["tasks"].as_array().unwrap().len(), 1);
    let r = call("GET", &format!("{url}?label=consul%3D%3Dapi"), None).json();
    assert_eq!(ids(&r), ["/b"]);
    let r = call("GET", &format!("{url}?id=c"), None).json();
    assert_eq!(ids(&r), ["/c"]);
}

#[test]
fn deployments_roll_back_or_cancel_with_force() {
    let m = start_slow();
    let url = format!("{}/v2/apps/r", m.url());
    call("PUT", &url, Some(&json!({"cmd": "v1"})));
    m.finish_deployments();
    let dep = call("PUT", &url, Some(&json!({"cmd": "v2"}))).json()["deploymentId"]
        .as_str()
        .unwrap()
        .to_string();
    let r = call("DELETE", &format!("{}/v2/deployments/{dep}", m.url()), None);
    assert_eq!(r.status, 200);
    assert_ne!(r.json()["deploymentId"], dep.as_str());
    assert_eq!(m.app("/r").unwrap()["cmd"], "v1", "rolled back");
    let rb = r.json()["deploymentId"].as_str().unwrap().to_string();
    let r = call(
        "DELETE",
        &format!("{}/v2/deployments/{rb}?force=true", m.url()),
        None,
    );
    assert_eq!(r.status, 202);
    assert_eq!(r.body, "");
    let r = call("DELETE", &format!("{}/v2/deployments/{rb}", m.url()), None);
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["message"],
        format!("DeploymentPlan {rb} does not exist")
    );
}

#[test]
fn leader_info_and_ping() {
    let m = start();
    let r = call("GET", &format!("{}/v2/leader", m.url()), None);
    assert_eq!(r.json(), json!({"leader": m.addr().to_string()}));
    assert_eq!(r.header("X-Marathon-Leader"), Some(m.url().as_str()));
    let info = call("GET", &format!("{}/v2/info", m.url()), None).json();
    assert_eq!(info["name"], "marathon");
    assert_eq!(info["elected"], true);
    assert_eq!(info["http_config"]["http_port"], m.addr().port());
    let r = call("GET", &format!("{}/ping", m.url()), None);
    assert_eq!(r.body, "pong");
    assert!(r.header("Content-Type").unwrap().starts_with("text/plain"));
    assert_eq!(
        call("GET", &format!("{}/v2/ping", m.url()), None).status,
        404
    );
}

#[test]
fn faults_and_counters() {
    let m = start();
    m.faults().fail_next(
        1,
        devstack::http::Fault::Status {
            status: 503,
            body: "down".into(),
        },
    );
    assert_eq!(
        call("GET", &format!("{}/v2/apps", m.url()), None).status,
        503
    );
    assert_eq!(
        call("GET", &format!("{}/v2/apps", m.url()), None).status,
        200
    );
    assert_eq!(m.request_count(), 1);
    assert_eq!(m.write_count(), 0);
    call(
        "PUT",
        &format!("{}/v2/apps/w", m.url()),
        Some(&json!({"cmd": "x"})),
    );
    assert_eq!(m.write_count(), 1);
}

#[test]
fn ten_thousand_seeded_apps_list_quickly() {
    let m = start();
    let apps: Vec<Value> = (0..10_000)
        .map(|i| json!({"id": format!("/bench/app-{i}"), "cmd": "x", "labels": {"consul": "b"}}))
        .collect();
    m.seed_apps(apps);
    let t = std::time::Instant::now();
    let r = call("GET", &format!("{}/v2/apps?label=consul", m.url()), None);
    let took = t.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["apps"].as_array().unwrap().len(), 10_000);
    // Generous for an unoptimized build on a shared 2-core machine.
    eprintln!("GET took {took:?}");
    assert!(took < std::time::Duration::from_secs(3), "{took:?}");
}

#[test]
fn full_replacement_keeps_dynamic_service_ports_and_tasks() {
    // GroupManager.assignDynamicServicePorts: "if the app uses dynamic ports (0), it will get
    // always the same ports assigned", so an identical PUT?partialUpdate=false restarts nothing.
    let m = start();
    let url = format!("{}/v2/apps/stable?partialUpdate=false", m.url());
    let def = json!({"id": "/stable", "cmd": "x", "instances": 2});
    assert_eq!(call("PUT", &url, Some(&def)).status, 201);
    // Another app takes the next free port in between.
    call(
        "PUT",
        &format!("{}/v2/apps/other", m.url()),
        Some(&json!({"cmd": "y"})),
    );
    let before = m.app("/stable").unwrap();
    assert_eq!(call("PUT", &url, Some(&def)).status, 200);
    let after = m.app("/stable").unwrap();
    assert_eq!(before["portDefinitions"], after["portDefinitions"]);
    assert_eq!(before["tasks"], after["tasks"]);
    assert_eq!(before["versionInfo"], after["versionInfo"]);
    assert_ne!(before["version"], after["version"]);
}

#[test]
fn bulk_put_is_one_deployment_for_all_apps() {
    let m = start_slow();
    let url = format!("{}/v2/apps", m.url());
    let r = call(
        "PUT",
        &url,
        Some(&json!([{"id": "/bulk/a", "cmd": "x"}, {"id": "bulk/b", "cmd": "y"}])),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let dep = r.json()["deploymentId"].as_str().unwrap().to_string();
    let deps = call("GET", &format!("{}/v2/deployments", m.url()), None).json();
    assert_eq!(deps.as_array().unwrap().len(), 1);
    assert_eq!(deps[0]["id"], dep.as_str());
    assert_eq!(deps[0]["affectedApps"], json!(["/bulk/a", "/bulk/b"]));
    assert_eq!(
        m.app("/bulk/b").unwrap()["deployments"],
        json!([{ "id": dep }])
    );
    // Locked apps refuse a second bulk change; an element without id is refused.
    assert_eq!(
        call("PUT", &url, Some(&json!([{"id": "/bulk/a", "cmd": "z"}]))).status,
        409
    );
    let r = call("PUT", &url, Some(&json!([{"cmd": "z"}])));
    assert_eq!(r.status, 422);
    assert!(
        r.body.contains("App Update must have app id set"),
        "{}",
        r.body
    );
    m.finish_deployments();
    assert_eq!(m.apps().len(), 2);
    assert_eq!(m.app("/bulk/a").unwrap()["tasksRunning"], 1);
}

#[test]
fn patch_merges_and_restart_replaces_every_task() {
    let m = start();
    let url = format!("{}/v2/apps/pr", m.url());
    assert_eq!(call("PATCH", &url, Some(&json!({"cmd": "x"}))).status, 404);
    call(
        "PUT",
        &url,
        Some(&json!({"cmd": "x", "instances": 2, "env": {"A": "1"}})),
    );
    let r = call("PATCH", &url, Some(&json!({"env": {"B": "2"}})));
    assert_eq!(r.status, 200);
    let app = m.app("/pr").unwrap();
    assert_eq!(app["cmd"], "x");
    assert_eq!(app["env"], json!({"B": "2"}));
    let before: Vec<Value> = app["tasks"].as_array().unwrap().clone();
    let r = call("POST", &format!("{url}/restart"), None);
    assert_eq!(r.status, 200);
    assert!(r.json()["deploymentId"].is_string());
    let after = m.app("/pr").unwrap();
    let after = after["tasks"].as_array().unwrap();
    assert_eq!(after.len(), 2);
    assert!(after
        .iter()
        .all(|t| !before.iter().any(|b| b["id"] == t["id"])));
}

/// Issue 16: an app whose tasks never become healthy keeps its deployment running (so `--wait`
/// times out); Marathon's rollback (`PUT {"version"}` with force) restores the earlier version.
#[test]
fn never_healthy_deployments_never_finish_until_rolled_back_or_cleared() {
    let m = start();
    let admin = format!("{}/_devstack/marathon/never-healthy", m.url());
    let url = format!("{}/v2/apps/nh", m.url());
    let image =
        |i: &str| json!({"cmd": "x", "container": {"type": "DOCKER", "docker": {"image": i}}});
    call("PUT", &url, Some(&image("reg/nh:1")));
    let v1 = m.app("/nh").unwrap()["version"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(call("POST", &admin, Some(&json!({"nope": 1}))).status, 400);
    let r = call("POST", &admin, Some(&json!({"match": ":broken"})));
    assert_eq!(r.json()["never_healthy"], json!([":broken"]));
    call("PUT", &url, Some(&image("reg/nh:broken")));
    m.finish_deployments();
    assert_eq!(
        m.app("/nh").unwrap()["deployments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Marathon's rollback to v1 replaces the stuck deployment and finishes.
    let r = call(
        "PUT",
        &format!("{url}?force=true"),
        Some(&json!({"id": "/nh", "version": v1})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let app = m.app("/nh").unwrap();
    assert_eq!(app["container"]["docker"]["image"], "reg/nh:1");
    assert_eq!(app["deployments"], json!([]));
    // Clearing the matches lets a held deployment finish.
    call("PUT", &url, Some(&image("reg/nh:broken")));
    assert_eq!(
        m.app("/nh").unwrap()["deployments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        call("DELETE", &admin, None).json()["never_healthy"],
        json!([])
    );
    assert_eq!(m.app("/nh").unwrap()["deployments"], json!([]));
    // The same control from Rust, by app id.
    m.set_never_healthy("/nh");
    call("PUT", &url, Some(&image("reg/nh:3")));
    m.finish_deployments();
    assert_eq!(
        m.app("/nh").unwrap()["deployments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// docs/rest-api GroupsResource: `GET /v2/groups/versions` lists the root group's versions;
/// every change to an app (here: create, update, scale, delete) makes one (Marathon stores the
/// app's and the root group's version per change), a read makes none, and the answer to a
/// write names the version it made.
#[test]
fn every_change_makes_a_root_group_version_and_reads_make_none() {
    let m = start();
    let versions = |m: &devstack::marathon::Marathon| -> Vec<String> {
        let r = call("GET", &format!("{}/v2/groups/versions", m.url()), None);
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_value(r.json()).unwrap()
    };
    assert!(versions(&m).is_empty());
    let r = call("POST", &format!("{}/v2/apps", m.url()), Some(&simple()));
    assert_eq!(r.status, 201, "{}", r.body);
    let v = versions(&m);
    assert_eq!(v.len(), 1);
    assert_eq!(r.json()["version"], json!(v[0]));
    let mut app = simple();
    app["cmd"] = json!("sleep 2");
    let r = call(
        "PUT",
        &format!("{}/v2/apps/simple?force=true", m.url()),
        Some(&app),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = versions(&m);
    assert_eq!(v.len(), 2);
    assert_eq!(r.json()["version"], json!(v[1]));
    assert!(v[1] > v[0], "ISO timestamps, increasing: {v:?}");
    let _ = call("GET", &format!("{}/v2/apps", m.url()), None);
    let _ = call("GET", &format!("{}/v2/apps/simple", m.url()), None);
    assert_eq!(versions(&m).len(), 2, "reads make no version");
    let r = call(
        "PUT",
        &format!("{}/v2/apps/simple?force=true", m.url()),
        Some(&json!({"instances": 3})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        "DELETE",
        &format!("{}/v2/apps/simple?force=true", m.url()),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(versions(&m).len(), 4);
}
