//! Marathon double: simulated tasks (ids, hosts, ports, health, replacement).
//! Task id format and fields: reference §1.3 "Task IDs" and §2.2.

#[path = "marathon_common.rs"]
mod common;

use common::*;
use serde_json::{json, Value};

fn task_ids(app: &Value) -> Vec<String> {
    app["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn tasks_stage_during_deployment_and_run_after_it() {
    let m = start_slow();
    let app = json!({"id": "/grp/web", "cmd": "x", "instances": 3,
        "portDefinitions": [{"port": 0}, {"port": 0}],
        "healthChecks": [{"protocol": "HTTP"}]});
    call("POST", &format!("{}/v2/apps", m.url()), Some(&app));
    let a = m.app("/grp/web").unwrap();
    assert_eq!(a["tasksStaged"], 3);
    assert_eq!(a["tasksRunning"], 0);
    assert!(a["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["state"] == "TASK_STAGING"));
    m.finish_deployments();
    let a = m.app("/grp/web").unwrap();
    assert_eq!(a["tasksRunning"], 3);
    assert_eq!(a["tasksHealthy"], 3);
    assert_eq!(a["deployments"], json!([]));
    let tasks = a["tasks"].as_array().unwrap();
    let hosts: Vec<&str> = tasks.iter().map(|t| t["host"].as_str().unwrap()).collect();
    assert_eq!(hosts, ["10.0.0.1", "10.0.0.2", "10.0.0.3"], "round robin");
    for t in tasks {
        let id = t["id"].as_str().unwrap();
        // 1.4+ format: group_app.instance-<uuid>._app.<incarnation>
        let uuid = id
            .strip_prefix("grp_web.instance-")
            .and_then(|r| r.strip_suffix("._app.1"))
            .unwrap_or_else(|| panic!("task id {id}"));
        assert_eq!(uuid.len(), 36);
        assert_eq!(t["state"], "TASK_RUNNING");
        assert_eq!(t["appId"], "/grp/web");
        assert_eq!(t["version"], a["version"]);
        assert!(t["startedAt"].is_string() && t["stagedAt"].is_string());
        let ports = t["ports"].as_array().unwrap();
        assert_eq!(ports.len(), 2);
        assert!(ports.iter().all(|p| p.as_u64().unwrap() >= 31000));
        let hc = &t["healthCheckResults"][0];
        assert_eq!(hc["alive"], true);
        assert_eq!(hc["instanceId"], id.strip_suffix("._app.1").unwrap());
    }
}

#[test]
fn scaling_keeps_tasks_and_config_change_replaces_them() {
    let m = start();
    let url = format!("{}/v2/apps/s", m.url());
    call("PUT", &url, Some(&json!({"cmd": "x", "instances": 2})));
    let first = task_ids(&m.app("/s").unwrap());
    call("PUT", &url, Some(&json!({"instances": 3})));
    let a = m.app("/s").unwrap();
    let scaled = task_ids(&a);
    assert_eq!(scaled.len(), 3);
    assert!(
        first.iter().all(|t| scaled.contains(t)),
        "scale-up keeps tasks"
    );
    assert_ne!(
        a["versionInfo"]["lastScalingAt"],
        a["versionInfo"]["lastConfigChangeAt"]
    );
    call("PUT", &url, Some(&json!({"instances": 1})));
    let down = task_ids(&m.app("/s").unwrap());
    assert_eq!(down, [first[0].clone()], "YOUNGEST_FIRST kills the newest");
    call("PUT", &url, Some(&json!({"cmd": "y"})));
    let a = m.app("/s").unwrap();
    let restarted = task_ids(&a);
    assert_eq!(restarted.len(), 1);
    assert_ne!(restarted, down, "config change replaces tasks");
    assert_eq!(a["tasks"][0]["version"], a["version"]);
}

#[test]
fn failed_task_is_replaced_and_recorded_as_last_failure() {
    let m = start();
    call(
        "PUT",
        &format!("{}/v2/apps/f", m.url()),
        Some(&json!({"cmd": "x", "instances": 2})),
    );
    let before = task_ids(&m.app("/f").unwrap());
    m.kill_task(&before[0], "TASK_FAILED");
    let a = m.app("/f").unwrap();
    let after = task_ids(&a);
    assert_eq!(after.len(), 2);
    assert!(!after.contains(&before[0]));
    assert!(after.contains(&before[1]));
    assert_eq!(a["lastTaskFailure"]["taskId"], before[0].as_str());
    assert_eq!(a["lastTaskFailure"]["state"], "TASK_FAILED");
}

#[test]
fn host_down_loses_and_replaces_its_tasks_elsewhere() {
    let m = start();
    call(
        "PUT",
        &format!("{}/v2/apps/h", m.url()),
        Some(&json!({"cmd": "x", "instances": 3})),
    );
    m.set_host_down("10.0.0.2");
    let a = m.app("/h").unwrap();
    let hosts: Vec<&str> = a["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts.len(), 3);
    assert!(!hosts.contains(&"10.0.0.2"), "{hosts:?}");
}

#[test]
fn unhealthy_task_is_counted_and_reported() {
    let m = start();
    let app = json!({"cmd": "x", "instances": 2, "healthChecks": [{"protocol": "TCP"}]});
    call("PUT", &format!("{}/v2/apps/hc", m.url()), Some(&app));
    let ids = task_ids(&m.app("/hc").unwrap());
    m.set_task_alive(&ids[1], false);
    let a = m.app("/hc").unwrap();
    assert_eq!(a["tasksHealthy"], 1);
    assert_eq!(a["tasksUnhealthy"], 1);
    let t = a["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == ids[1].as_str())
        .unwrap()
        .clone();
    assert_eq!(t["healthCheckResults"][0]["alive"], false);
    let r = call("GET", &format!("{}/v2/apps/hc/tasks", m.url()), None).json();
    assert_eq!(r["tasks"].as_array().unwrap().len(), 2);
}

#[test]
fn delete_kills_every_task() {
    let m = start();
    call(
        "PUT",
        &format!("{}/v2/apps/d", m.url()),
        Some(&json!({"cmd": "x", "instances": 2})),
    );
    assert_eq!(
        call("DELETE", &format!("{}/v2/apps/d", m.url()), None).status,
        200
    );
    assert!(m.app("/d").is_none());
    let all = call("GET", &format!("{}/v2/tasks", m.url()), None).json();
    assert_eq!(all["tasks"], json!([]));
}
