//! The sync plan over canned Marathon and Consul JSON (no servers).

use std::collections::BTreeSet;

use serde_json::{json, Value};
use tasks2consul::app::App;
use tasks2consul::plan::{
    self, owned_from_health_entry, service_id, Change, Config, Gate, Health, Mode, Owned,
};

fn task(id: &str, host: &str, ports: &[u16], state: &str) -> Value {
    json!({"id": id, "host": host, "ports": ports, "state": state,
           "version": "2026-11-24T10:00:00.000Z", "startedAt": "2026-11-24T10:00:01.000Z"})
}

/// The apps as tasks2consul reads them (reduced as Marathon's answer is decoded).
fn typed(apps: &[Value]) -> Vec<App> {
    apps.iter().cloned().map(App::from).collect()
}

fn app(id: &str, label: &str, tasks: Vec<Value>) -> Value {
    json!({"id": id, "labels": {"consul": label, "public": "tag", "team": "sami"},
           "version": "2026-11-24T10:00:00.000Z",
           "portDefinitions": [{"port": 10000, "protocol": "tcp"}],
           "tasks": tasks})
}

/// What Consul's /v1/health/service answers for a registration written from `change`.
fn health_entry(reg: &tasks2consul::Registration, node: &str, external: bool) -> Value {
    let node_meta = if external {
        json!({"external-node": "true", "external-probe": "false", "external-source": "marathon"})
    } else {
        json!({"consul-network-segment": ""})
    };
    json!({
        "Node": {"Node": node, "Address": reg.host, "Meta": node_meta},
        "Service": {"ID": reg.id, "Service": reg.name, "Tags": reg.tags, "Address": reg.address,
                    "Port": reg.port, "Meta": reg.meta, "Weights": {"Passing": 1, "Warning": 1}},
        "Checks": [
            {"Node": node, "CheckID": "serfHealth", "Status": "passing", "ServiceID": ""},
            {"Node": node, "CheckID": reg.mirror_check_id(), "Status": reg.health.as_str(),
             "ServiceID": reg.id}
        ]
    })
}

/// Applies a plan to a fake owned set (what Consul would hold afterwards).
fn apply(owned: &mut Vec<Owned>, changes: &[Change], cfg: &Config) {
    for c in changes {
        match c {
            Change::Register { reg, node, .. } => {
                owned.retain(|o| !(o.reg.id == reg.id && o.node == *node));
                let e = health_entry(reg, node, cfg.mode == Mode::Catalog);
                owned.push(owned_from_health_entry(&e).unwrap());
            }
            Change::Deregister { owned: gone, .. } => {
                owned.retain(|o| !(o.reg.id == gone.reg.id && o.node == gone.node));
            }
        }
    }
}

/// Plans from `owned` and applies the changes to it.
fn settle(owned: &mut Vec<Owned>, apps: &[Value], cfg: &Config) {
    let p = plan::plan(&typed(apps), owned, None, cfg);
    apply(owned, &p.changes, cfg);
}

fn kinds(p: &plan::Plan) -> Vec<(String, String)> {
    let mut v: Vec<_> = p
        .changes
        .iter()
        .map(|c| (c.kind().to_string(), c.target().to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn names_tags_ids_and_meta_follow_the_labels() {
    let cfg = Config::default();
    let a = app(
        "/sami/api",
        "true",
        vec![task("sami_api.1", "10.0.0.1", &[31000], "TASK_RUNNING")],
    );
    let d = plan::desired_for_app(&App::from(a.clone()), &cfg).unwrap();
    let (reg, gate) = &d.regs[0];
    assert_eq!(*gate, Gate::Ready);
    assert_eq!(reg.name, "sami-api");
    assert_eq!(reg.id, "marathon:sami_api.1:31000");
    assert_eq!(reg.tags, vec!["public".to_string()]);
    assert_eq!(reg.meta["marathon-app-id"], "/sami/api");
    assert_eq!(reg.meta["marathon-task-id"], "sami_api.1");
    assert_eq!(reg.meta["marathon-app-version"], "2026-11-24T10:00:00.000Z");
    assert_eq!(reg.meta["external-source"], "marathon");
    assert_eq!(reg.address, "10.0.0.1");
    let named = app(
        "/sami/api",
        "billing",
        vec![task("t", "h", &[1], "TASK_RUNNING")],
    );
    assert_eq!(
        plan::desired_for_app(&App::from(named.clone()), &cfg)
            .unwrap()
            .regs[0]
            .0
            .name,
        "billing"
    );
    let empty = app("/x/y", "", vec![task("t", "h", &[1], "TASK_RUNNING")]);
    assert_eq!(
        plan::desired_for_app(&App::from(empty.clone()), &cfg)
            .unwrap()
            .regs[0]
            .0
            .name,
        "x-y"
    );
}

#[test]
fn every_port_is_registered_with_per_port_names() {
    let cfg = Config::default();
    let a = json!({"id": "/web", "labels": {"consul": "web"},
        "portDefinitions": [
            {"port": 0, "name": "http"},
            {"port": 0, "labels": {"consul": "web-admin", "internal": "tag"}},
            {"port": 0}
        ],
        "tasks": [task("web.1", "h1", &[31001, 31002, 31003], "TASK_RUNNING")]});
    let d = plan::desired_for_app(&App::from(a.clone()), &cfg).unwrap();
    let names: Vec<_> = d.regs.iter().map(|(r, _)| r.name.clone()).collect();
    assert_eq!(names, vec!["web-http", "web-admin", "web-2"]);
    let ids: Vec<_> = d.regs.iter().map(|(r, _)| r.id.clone()).collect();
    assert_eq!(
        ids,
        vec![
            service_id("web.1", 31001),
            service_id("web.1", 31002),
            service_id("web.1", 31003)
        ]
    );
    assert_eq!(d.regs[1].0.tags, vec!["internal".to_string()]);
    assert!(d.regs[0].0.tags.is_empty());
}

#[test]
fn bridge_port_mappings_and_user_networks() {
    let cfg = Config::default();
    // 1.5 container.portMappings with a name: one port keeps the bare name.
    let a = json!({"id": "/b", "labels": {"consul": ""},
        "container": {"type": "DOCKER", "portMappings": [{"containerPort": 8080, "hostPort": 0, "name": "http"}]},
        "tasks": [task("b.1", "h1", &[31005], "TASK_RUNNING")]});
    let d = plan::desired_for_app(&App::from(a.clone()), &cfg).unwrap();
    assert_eq!(d.regs[0].0.name, "b");
    assert_eq!(d.regs[0].0.port, 31005);
    // No host ports: the task's own IP and the container port.
    let u = json!({"id": "/u", "labels": {"consul": ""},
        "container": {"type": "DOCKER", "portMappings": [{"containerPort": 8080}]},
        "tasks": [{"id": "u.1", "host": "h1", "ports": [], "state": "TASK_RUNNING",
                   "ipAddresses": [{"ipAddress": "172.17.0.4", "protocol": "IPv4"}]}]});
    let d = plan::desired_for_app(&App::from(u.clone()), &cfg).unwrap();
    assert_eq!(
        (d.regs[0].0.address.as_str(), d.regs[0].0.port),
        ("172.17.0.4", 8080)
    );
    assert_eq!(d.regs[0].0.host, "h1");
}

#[test]
fn only_running_and_healthy_tasks_are_ready() {
    let cfg = Config::default();
    let mut a = app(
        "/h",
        "true",
        vec![
            task("h.ok", "h1", &[1], "TASK_RUNNING"),
            task("h.sick", "h1", &[2], "TASK_RUNNING"),
            task("h.grace", "h1", &[3], "TASK_RUNNING"),
            task("h.staging", "h1", &[4], "TASK_STAGING"),
            task("h.killed", "h1", &[5], "TASK_KILLED"),
        ],
    );
    a["healthChecks"] = json!([{"protocol": "HTTP", "path": "/health", "portIndex": 0}]);
    a["tasks"][0]["healthCheckResults"] = json!([{"alive": true}]);
    a["tasks"][1]["healthCheckResults"] = json!([{"alive": false}]);
    let d = plan::desired_for_app(&App::from(a.clone()), &cfg).unwrap();
    let gates: Vec<_> = d
        .regs
        .iter()
        .map(|(r, g)| (r.task_id().to_string(), *g))
        .collect();
    assert_eq!(
        gates,
        vec![
            ("h.ok".to_string(), Gate::Ready),
            ("h.sick".to_string(), Gate::Unhealthy),
            ("h.grace".to_string(), Gate::Unhealthy),
        ]
    );
    // A plan from nothing registers only the healthy one; the others wait.
    let p = plan::plan(&typed(&[a]), &[], None, &cfg);
    assert_eq!(kinds(&p), vec![("register".into(), service_id("h.ok", 1))]);
    assert_eq!(p.waiting, 2);
}

#[test]
fn full_sync_then_replay_writes_nothing() {
    let cfg = Config::default();
    let apps = vec![
        app(
            "/a",
            "true",
            vec![
                task("a.1", "h1", &[1], "TASK_RUNNING"),
                task("a.2", "h2", &[2], "TASK_RUNNING"),
            ],
        ),
        app("/b", "bee", vec![task("b.1", "h1", &[3], "TASK_RUNNING")]),
    ];
    let mut owned = Vec::new();
    let p = plan::plan(&typed(&apps), &owned, None, &cfg);
    assert_eq!(p.changes.len(), 3);
    for c in &p.changes {
        if let Change::Register { node, reg, .. } = c {
            assert_eq!(*node, format!("marathon-{}", reg.host));
        }
    }
    apply(&mut owned, &p.changes, &cfg);
    let again = plan::plan(&typed(&apps), &owned, None, &cfg);
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(again.unchanged.len(), 3);
}

#[test]
fn scale_down_failure_and_app_deletion_deregister() {
    let cfg = Config::default();
    let mut apps = vec![
        app(
            "/a",
            "true",
            vec![
                task("a.1", "h1", &[1], "TASK_RUNNING"),
                task("a.2", "h2", &[2], "TASK_RUNNING"),
            ],
        ),
        app("/b", "true", vec![task("b.1", "h1", &[3], "TASK_RUNNING")]),
    ];
    let mut owned = Vec::new();
    settle(&mut owned, &apps, &cfg);
    // a.2 failed and was replaced by a.3; /b was deleted.
    apps[0]["tasks"][1]["state"] = json!("TASK_FAILED");
    apps[0]["tasks"]
        .as_array_mut()
        .unwrap()
        .push(task("a.3", "h3", &[4], "TASK_RUNNING"));
    apps.pop();
    let p = plan::plan(&typed(&apps), &owned, None, &cfg);
    assert_eq!(
        kinds(&p),
        vec![
            ("deregister".into(), service_id("a.2", 2)),
            ("deregister".into(), service_id("b.1", 3)),
            ("register".into(), service_id("a.3", 4)),
        ]
    );
    let details: Vec<String> = p.changes.iter().map(Change::detail).collect();
    assert!(
        details.iter().any(|d| d.contains("task is TASK_FAILED")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d.contains("app /b is gone")),
        "{details:?}"
    );
}

#[test]
fn unhealthy_registered_task_turns_critical_not_deregistered() {
    let cfg = Config::default();
    let mut a = app("/h", "true", vec![task("h.1", "h1", &[1], "TASK_RUNNING")]);
    a["healthChecks"] = json!([{"protocol": "TCP", "portIndex": 0}]);
    a["tasks"][0]["healthCheckResults"] = json!([{"alive": true}]);
    let mut owned = Vec::new();
    settle(&mut owned, std::slice::from_ref(&a), &cfg);
    a["tasks"][0]["healthCheckResults"] = json!([{"alive": false}]);
    let p = plan::plan(&typed(std::slice::from_ref(&a)), &owned, None, &cfg);
    match &p.changes[..] {
        [Change::Register { reg, .. }] => assert_eq!(reg.health, Health::Critical),
        other => panic!("{other:?}"),
    }
    apply(&mut owned, &p.changes, &cfg);
    assert_eq!(owned[0].reg.health, Health::Critical);
    assert!(plan::plan(&typed(&[a]), &owned, None, &cfg)
        .changes
        .is_empty());
}

#[test]
fn foreign_services_are_never_owned() {
    let foreign = json!({
        "Node": {"Node": "h1", "Address": "10.0.0.1", "Meta": {}},
        "Service": {"ID": "redis", "Service": "redis", "Tags": [], "Port": 6379, "Meta": {}},
        "Checks": []
    });
    assert!(owned_from_health_entry(&foreign).is_none());
    let other_source = json!({
        "Node": {"Node": "k8s-sync", "Address": "10.0.0.9", "Meta": {"external-source": "kubernetes"}},
        "Service": {"ID": "api-1", "Service": "api", "Port": 80,
                    "Meta": {"external-source": "kubernetes", "marathon-task-id": "x", "marathon-app-id": "/x"}},
        "Checks": []
    });
    assert!(owned_from_health_entry(&other_source).is_none());
    let no_meta = json!({"Node": {"Node": "n", "Address": "a"}, "Service": {"ID": "s", "Service": "s", "Meta": null}});
    assert!(owned_from_health_entry(&no_meta).is_none());
}

#[test]
fn scope_limits_the_plan_to_the_named_apps() {
    let cfg = Config::default();
    let apps = vec![
        app("/a", "true", vec![task("a.1", "h1", &[1], "TASK_RUNNING")]),
        app("/b", "true", vec![task("b.1", "h1", &[2], "TASK_RUNNING")]),
    ];
    let mut owned = Vec::new();
    settle(&mut owned, &apps, &cfg);
    // Both apps lost their tasks, but the payload named only /a, and Marathon was asked only
    // about /a (so /b is absent from `apps` without being gone).
    let scoped_apps = vec![app("/a", "true", vec![])];
    let scope: BTreeSet<String> = ["/a".to_string()].into();
    let p = plan::plan(&typed(&scoped_apps), &owned, Some(&scope), &cfg);
    assert_eq!(kinds(&p), vec![("deregister".into(), service_id("a.1", 1))]);
    // A named app that Marathon no longer has: everything of it goes.
    let scope: BTreeSet<String> = ["/b".to_string()].into();
    let p = plan::plan(&typed(&[]), &owned, Some(&scope), &cfg);
    assert_eq!(kinds(&p), vec![("deregister".into(), service_id("b.1", 2))]);
}

#[test]
fn label_change_renames_in_place_and_moved_tasks_leave_the_old_node() {
    let cfg = Config::default();
    let mut apps = vec![app(
        "/a",
        "old",
        vec![task("a.1", "h1", &[1], "TASK_RUNNING")],
    )];
    let mut owned = Vec::new();
    settle(&mut owned, &apps, &cfg);
    apps[0]["labels"]["consul"] = json!("new");
    let p = plan::plan(&typed(&apps), &owned, None, &cfg);
    match &p.changes[..] {
        [Change::Register { reg, reason, .. }] => {
            assert_eq!(reg.name, "new");
            assert!(reason.contains("name old -> new"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The same service ID found on another node (e.g. an older --node-prefix) is removed.
    let mut stray = owned[0].clone();
    stray.node = "old-prefix-h1".into();
    owned.push(stray);
    let p = plan::plan(&typed(&apps), &owned, None, &cfg);
    assert!(p
        .changes
        .iter()
        .any(|c| matches!(c, Change::Deregister { owned, .. } if owned.node == "old-prefix-h1")));
}

#[test]
fn a_bad_app_is_reported_and_its_registrations_kept() {
    let cfg = Config::default();
    let good = app("/a", "true", vec![task("a.1", "h1", &[1], "TASK_RUNNING")]);
    let bad_before = app("/b", "true", vec![task("b.1", "h1", &[2], "TASK_RUNNING")]);
    let mut owned = Vec::new();
    settle(&mut owned, &[good.clone(), bad_before], &cfg);
    let bad = app(
        "/b",
        "has spaces",
        vec![task("b.1", "h1", &[2], "TASK_RUNNING")],
    );
    let p = plan::plan(&typed(&[good, bad]), &owned, None, &cfg);
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    assert_eq!(p.errors.len(), 1);
    assert!(p.errors[0].to_string().contains("/b"), "{}", p.errors[0]);
}

#[test]
fn agent_mode_translates_health_checks_and_ignores_catalog_registrations() {
    let cfg = Config {
        mode: Mode::Agent,
        ..Config::default()
    };
    let mut a = app(
        "/h",
        "true",
        vec![task("h.1", "h1", &[31000, 31001], "TASK_RUNNING")],
    );
    a["portDefinitions"] = json!([{"port": 0}, {"port": 0}]);
    a["healthChecks"] = json!([
        {"protocol": "MESOS_HTTP", "path": "health", "portIndex": 0, "intervalSeconds": 5, "timeoutSeconds": 2},
        {"protocol": "TCP", "portIndex": 1},
        {"protocol": "COMMAND", "command": {"value": "true"}}
    ]);
    a["tasks"][0]["healthCheckResults"] =
        json!([{"alive": true}, {"alive": true}, {"alive": true}]);
    let d = plan::desired_for_app(&App::from(a.clone()), &cfg).unwrap();
    let c0 = &d.regs[0].0.checks;
    assert_eq!(c0.len(), 1);
    assert_eq!(
        (
            c0[0].kind,
            c0[0].target.as_str(),
            c0[0].interval.as_str(),
            c0[0].timeout.as_str()
        ),
        ("HTTP", "http://h1:31000/health", "5s", "2s")
    );
    let c1 = &d.regs[1].0.checks;
    assert_eq!((c1[0].kind, c1[0].target.as_str()), ("TCP", "h1:31001"));
    let body = d.regs[0].0.agent_body();
    assert_eq!(body["Checks"][0]["HTTP"], "http://h1:31000/health");
    assert_eq!(body["Name"], "h-0");
    // A catalog-mode (external node) copy is not this mode's business.
    let catalog_copy =
        owned_from_health_entry(&health_entry(&d.regs[0].0, "marathon-h1", true)).unwrap();
    let p = plan::plan(&typed(&[a]), &[catalog_copy], None, &cfg);
    assert_eq!(p.changes.len(), 2);
    assert!(p
        .changes
        .iter()
        .all(|c| matches!(c, Change::Register { .. })));
}

#[test]
fn catalog_body_marks_the_external_node_and_mirrors_health() {
    let cfg = Config::default();
    let a = app("/a", "true", vec![task("a.1", "h1", &[1], "TASK_RUNNING")]);
    let reg = plan::desired_for_app(&App::from(a.clone()), &cfg)
        .unwrap()
        .regs
        .remove(0)
        .0;
    let body = reg.catalog_body("marathon-h1", false);
    assert_eq!(body["Node"], "marathon-h1");
    assert_eq!(body["Address"], "h1");
    assert_eq!(body["NodeMeta"]["external-node"], "true");
    assert_eq!(body["NodeMeta"]["external-probe"], "false");
    assert_eq!(
        reg.catalog_body("marathon-h1", true)["NodeMeta"]["external-probe"],
        "true"
    );
    assert_eq!(body["Service"]["Service"], "a");
    assert_eq!(body["Service"]["Meta"]["marathon-task-id"], "a.1");
    assert_eq!(body["Check"]["Status"], "passing");
    assert_eq!(body["Check"]["ServiceID"], reg.id);
}

#[test]
fn switching_external_probe_rewrites_the_registrations() {
    let cfg = Config::default();
    let apps = vec![app(
        "/a",
        "true",
        vec![task("a.1", "h1", &[1], "TASK_RUNNING")],
    )];
    let mut owned = Vec::new();
    settle(&mut owned, &apps, &cfg);
    assert!(plan::plan(&typed(&apps), &owned, None, &cfg)
        .changes
        .is_empty());
    let probing = Config {
        external_probe: true,
        ..Config::default()
    };
    let p = plan::plan(&typed(&apps), &owned, None, &probing);
    match &p.changes[..] {
        [Change::Register { reason, .. }] => assert!(reason.contains("external-probe"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

// The mass-deregistration guard's arithmetic (issue 11): a percentage never caps below 1, a
// count is used as given, "would leave none" holds back only beyond a handful, 100% is off.
#[test]
fn max_deregister_parses_and_caps() {
    use tasks2consul::plan::MaxDeregister;
    let p50: MaxDeregister = "50%".parse().unwrap();
    assert_eq!(p50, MaxDeregister::Percent(50));
    assert_eq!(
        "20".parse::<MaxDeregister>().unwrap(),
        MaxDeregister::Count(20)
    );
    for bad in ["", "x", "101%", "-1", "1.5"] {
        assert!(bad.parse::<MaxDeregister>().is_err(), "{bad}");
    }
    assert_eq!(p50.cap(9), 4);
    assert_eq!(p50.cap(2), 1);
    assert_eq!(p50.cap(1), 1);
    // A real death of 1 of 2, or of the only task: allowed.
    assert!(p50.exceeded(1, 2).is_none());
    assert!(p50.exceeded(1, 1).is_none());
    assert!(p50.exceeded(0, 0).is_none());
    // An empty answer for 9: held.
    assert!(p50.exceeded(9, 9).unwrap().contains("9 of 9"));
    assert!(p50.exceeded(5, 9).is_some());
    let c20 = MaxDeregister::Count(20);
    assert!(c20.exceeded(9, 30).is_none());
    assert!(c20.exceeded(9, 9).unwrap().contains("all 9"));
    assert!(c20.exceeded(3, 3).is_none(), "a handful may go");
    assert!(MaxDeregister::Percent(100).exceeded(9, 9).is_none());
}

#[test]
fn losses_net_out_replacements_and_the_guard_holds_every_deregistration() {
    let cfg = Config::default();
    let mut owned = Vec::new();
    let apps = vec![
        app(
            "/a",
            "true",
            vec![
                task("a.1", "h1", &[31000], "TASK_RUNNING"),
                task("a.2", "h2", &[31001], "TASK_RUNNING"),
            ],
        ),
        app(
            "/b",
            "true",
            vec![task("b.1", "h1", &[31002], "TASK_RUNNING")],
        ),
    ];
    settle(&mut owned, &apps, &cfg);
    // /a's tasks replaced by a deployment, /b gone: one loss (b), not three.
    let apps2 = vec![app(
        "/a",
        "true",
        vec![
            task("a.3", "h1", &[31003], "TASK_RUNNING"),
            task("a.4", "h2", &[31004], "TASK_RUNNING"),
        ],
    )];
    let mut p = plan::plan(&typed(&apps2), &owned, None, &cfg);
    assert_eq!(p.losses(), 1);
    p.guard(owned.len(), None, &cfg);
    assert!(p.held.is_empty());
    // The same plan while the leader changed: every deregistration held, registrations kept.
    let mut p = plan::plan(&typed(&apps2), &owned, None, &cfg);
    p.guard(owned.len(), Some("leader changed"), &cfg);
    assert_eq!(p.held.len(), 3);
    assert!(p.changes.iter().all(|c| c.kind() == "register"));
    assert!(p.warnings[0].contains("leader changed"));
}

#[test]
fn an_app_counting_more_running_tasks_than_it_lists_keeps_its_registrations() {
    let cfg = Config::default();
    let mut owned = Vec::new();
    let full = vec![app(
        "/a",
        "true",
        vec![
            task("a.1", "h1", &[31000], "TASK_RUNNING"),
            task("a.2", "h2", &[31001], "TASK_RUNNING"),
        ],
    )];
    settle(&mut owned, &full, &cfg);
    let mut partial = full.clone();
    partial[0]["tasks"] = json!([]);
    partial[0]["tasksRunning"] = json!(2);
    let p = plan::plan(&typed(&partial), &owned, None, &cfg);
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    assert_eq!(p.held.len(), 2);
    assert!(p.warnings[0].contains("tasksRunning"), "{:?}", p.warnings);
}

// --cluster: a registration of another cluster is never owned; one without the meta is the
// default cluster's.
#[test]
fn only_registrations_of_this_cluster_are_owned() {
    let east = Config {
        cluster: "east".into(),
        ..Config::default()
    };
    let mut owned = Vec::new();
    let apps = vec![app(
        "/a",
        "true",
        vec![task("a.1", "h1", &[31000], "TASK_RUNNING")],
    )];
    settle(&mut owned, &apps, &east);
    assert_eq!(owned[0].reg.cluster(), "east");
    let body = owned[0].reg.catalog_body("marathon-h1", false);
    assert_eq!(body["NodeMeta"]["marathon-cluster"], "east");
    // West sees nothing of it: no deregistration even with no apps.
    let p = plan::plan(
        &typed(&[]),
        &owned,
        None,
        &Config {
            cluster: "west".into(),
            ..Config::default()
        },
    );
    assert!(p.changes.is_empty());
    let p = plan::plan(&typed(&[]), &owned, None, &Config::default());
    assert!(p.changes.is_empty());
    let mut legacy = owned[0].clone();
    legacy.reg.meta.remove("marathon-cluster");
    assert_eq!(legacy.reg.cluster(), "default");
    let p = plan::plan(&typed(&[]), &[legacy], None, &Config::default());
    assert_eq!(p.changes.len(), 1);
}
