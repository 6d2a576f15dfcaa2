//! Issue 11 (tasks2consul): never deregister on doubtful evidence. Each scenario runs the built
//! binary against the devstack doubles after a good sync of 9 registrations (4 apps), makes
//! Marathon answer as it does during an election, a restart or behind a proxy, and checks the
//! exit code, that nothing (or only the right things) was deregistered, and that the reason is
//! one readable line. The controls (a real death, a real empty cluster with the override, two
//! clusters sharing a Consul) still deregister what they should.

mod common;

use common::*;
use devstack::http::Fault;
use devstack::marathon::{Leader, Marathon, MarathonOptions};
use runtime::http::HttpRequest;
use serde_json::{json, Value};

/// 4 apps, 9 registrations, synced once (exit 0).
fn nine(s: &Stack) -> Vec<String> {
    s.create_apps(vec![
        web_app("/a", "true", 3, 1),
        web_app("/b", "true", 2, 1),
        web_app("/c", "true", 2, 1),
        web_app("/d", "true", 2, 1),
    ]);
    let (code, summary, err) = s.run("null", &[]);
    assert_eq!(code, 0, "{summary}\n{err}");
    let ids = s.registered_ids();
    assert_eq!(ids.len(), 9);
    ids
}

/// Every request under `/v2/apps` is answered 200 with `body` (until cleared).
fn answer_apps(m: &Marathon, content_type: &str, body: String) {
    m.faults().fail_always_on(
        "/v2/apps",
        Fault::Answer {
            status: 200,
            content_type: content_type.into(),
            body,
        },
    );
}

/// The real `GET /v2/apps?embed=apps.tasks` answer, with each app passed through `f` (`None`
/// drops it): a truncated or doctored list as Marathon gives it during a restart.
fn doctored_list(m: &Marathon, f: impl Fn(Value) -> Option<Value>) -> String {
    let apps: Vec<Value> = m.apps().into_iter().filter_map(f).collect();
    json!({ "apps": apps }).to_string()
}

fn app_is(app: &Value, s: &Stack, id: &str) -> bool {
    app["id"] == s.id(id)
}

/// The summary's warnings and errors: the reason, each one line.
fn reasons(summary: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for k in ["warnings", "errors"] {
        for w in summary[k].as_array().into_iter().flatten() {
            let w = w.as_str().unwrap().to_string();
            assert!(!w.contains('\n'), "not one line: {w}");
            out.push(w);
        }
    }
    out
}

fn has_reason(summary: &Value, needle: &str) -> bool {
    reasons(summary).iter().any(|r| r.contains(needle))
}

fn skipped_details(summary: &Value) -> Vec<String> {
    summary["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "deregister" && a["status"] == "skipped")
        .map(|a| a["detail"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_list_without_apps_exits_69_and_writes_nothing() {
    let s = Stack::start();
    let Some(m) = s.double("a_list_without_apps") else {
        return;
    };
    let before = nine(&s);
    for (ct, body) in [
        ("application/json", "{}"),
        ("application/json", "null"),
        ("application/json", r#"{"apps":null}"#),
        (
            "text/html",
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        ),
    ] {
        // Over HTTP, as an operator with curl would.
        let spec = json!({"path": "/v2/apps", "count": "always", "status": 200,
                          "content_type": ct, "body": body});
        let r = client("marathon", &s.marathon_url)
            .send(HttpRequest::new("POST", "/_devstack/faults").json(&spec))
            .unwrap();
        assert_eq!(r.status, 200);
        let writes = s.consul_writes();
        let (code, summary, _) = s.run("null", &[]);
        assert_eq!(code, 69, "{body}: {summary}");
        assert_eq!(s.consul_writes(), writes, "{body}: something was written");
        assert_eq!(s.registered_ids(), before);
        assert!(
            reasons(&summary).iter().any(|r| r.contains("/v2/apps")),
            "{summary}"
        );
        m.faults().clear();
    }
}

#[test]
fn an_empty_list_deregisters_nothing_and_exits_75() {
    let s = Stack::start();
    let Some(m) = s.double("an_empty_list") else {
        return;
    };
    let before = nine(&s);
    answer_apps(m, "application/json", r#"{"apps":[]}"#.into());
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 75, "{summary}");
    assert_eq!(s.registered_ids(), before);
    assert!(targets(&summary, "deregister", "applied").is_empty());
    let held = skipped_details(&summary);
    assert_eq!(held.len(), 9, "{summary}");
    assert!(
        held.iter()
            .all(|d| d.contains("mass-deregistration guard") && d.contains("--max-deregister 100%")),
        "{held:?}"
    );
    assert!(
        has_reason(
            &summary,
            "9 of 9 owned registration(s) would be deregistered"
        ),
        "{summary}"
    );
}

#[test]
fn a_truncated_list_deregisters_nothing_but_still_registers() {
    let s = Stack::start();
    let Some(m) = s.double("a_truncated_list") else {
        return;
    };
    let before = nine(&s);
    // A new app appears; the list Marathon gives holds it and 1 of the 4 others.
    s.create_apps(vec![web_app("/e", "true", 1, 1)]);
    let e_ids = s.expected_ids(&["/e"]);
    let body = doctored_list(m, |a| {
        (app_is(&a, &s, "/a") || app_is(&a, &s, "/e")).then_some(a)
    });
    answer_apps(m, "application/json", body);
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 75, "{summary}");
    assert_eq!(targets(&summary, "register", "applied"), e_ids);
    assert_eq!(skipped_details(&summary).len(), 6, "{summary}");
    let mut want = before.clone();
    want.extend(e_ids);
    want.sort();
    assert_eq!(s.registered_ids(), want);
    assert!(has_reason(&summary, "6 of 9"), "{summary}");
}

#[test]
fn apps_without_a_tasks_array_exit_69_and_write_nothing() {
    let s = Stack::start();
    let Some(m) = s.double("apps_without_tasks") else {
        return;
    };
    let before = nine(&s);
    let body = doctored_list(m, |mut a| {
        a.as_object_mut().unwrap().remove("tasks");
        Some(a)
    });
    answer_apps(m, "application/json", body);
    let writes = s.consul_writes();
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 69, "{summary}");
    assert_eq!(s.consul_writes(), writes);
    assert_eq!(s.registered_ids(), before);
    assert!(has_reason(&summary, "no \"tasks\" array"), "{summary}");
}

#[test]
fn an_app_listing_fewer_tasks_than_it_counts_keeps_its_registrations() {
    let s = Stack::start();
    let Some(m) = s.double("fewer_tasks_than_counted") else {
        return;
    };
    nine(&s);
    // A real death elsewhere in the same run: still deregistered, its replacement registered.
    let victim = s.running_tasks(&s.id("/a"))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    m.kill_task(&victim, "TASK_FAILED");
    let b_ids = s.expected_ids(&["/b"]);
    let body = doctored_list(m, |mut a| {
        if app_is(&a, &s, "/b") {
            a["tasks"] = json!([]);
            assert_eq!(a["tasksRunning"], 2);
        }
        Some(a)
    });
    answer_apps(m, "application/json", body);
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 75, "{summary}");
    let dereg = targets(&summary, "deregister", "applied");
    assert_eq!(dereg.len(), 1, "{summary}");
    assert!(dereg[0].contains(&victim));
    assert_eq!(targets(&summary, "register", "applied").len(), 1);
    assert_eq!(targets(&summary, "deregister", "skipped"), b_ids);
    let ids = s.registered_ids();
    assert!(b_ids.iter().all(|id| ids.contains(id)), "{ids:?}");
    assert!(has_reason(&summary, "tasksRunning"), "{summary}");
}

#[test]
fn an_event_scoped_404_during_failover_is_confirmed_by_the_full_list() {
    let s = Stack::start();
    let Some(m) = s.double("event_scoped_404") else {
        return;
    };
    let before = nine(&s);
    let b = s.id("/b");
    m.faults().fail_next_on(
        &format!("/v2/apps{b}"),
        1,
        Fault::Answer {
            status: 404,
            content_type: "application/json".into(),
            body: json!({"message": format!("App '{b}' does not exist")}).to_string(),
        },
    );
    let payload = event_payload(&json!({"apps": [b]}).to_string());
    let (code, summary, _) = s.run(&payload, &[]);
    assert_eq!(code, 0, "{summary}");
    assert!(
        targets(&summary, "deregister", "applied").is_empty(),
        "{summary}"
    );
    assert_eq!(s.registered_ids(), before);
    // Control: the app really is gone (404 and not in the list): deregistered.
    s.delete_app("/b");
    let (code, summary, _) = s.run(&payload, &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(targets(&summary, "deregister", "applied").len(), 2);
    assert_eq!(s.registered_ids(), s.expected_ids(&["/a", "/c", "/d"]));
}

/// A task dies (a deregistration to make), then Marathon's leader misbehaves around the read.
fn leader_case(name: &str, fault: impl FnOnce(&Marathon, &Marathon)) {
    let s = Stack::start();
    let Some(m) = s.double(name) else {
        return;
    };
    nine(&s);
    let other = Marathon::start(MarathonOptions::default()).unwrap();
    let victim = s.running_tasks(&s.id("/c"))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    m.kill_task(&victim, "TASK_KILLED");
    fault(m, &other);
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 75, "{name}: {summary}");
    assert!(
        targets(&summary, "deregister", "applied").is_empty(),
        "{summary}"
    );
    let held = skipped_details(&summary);
    assert_eq!(held.len(), 1, "{summary}");
    assert!(held[0].contains("Marathon leader not stable"), "{held:?}");
    // Registrations are still made (the replacement task).
    assert_eq!(targets(&summary, "register", "applied").len(), 1);
    assert!(s.registered_ids().iter().any(|id| id.contains(&victim)));
    assert!(
        has_reason(&summary, "Marathon leader not stable"),
        "{summary}"
    );
    // Stable again: the dead task goes.
    m.faults().clear();
    m.set_leader(Leader::Me);
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(targets(&summary, "deregister", "applied").len(), 1);
}

#[test]
fn a_leader_change_between_the_reads_holds_deregistrations() {
    leader_case("leader_change", |m, other| {
        m.set_leader_after("/v2/apps", Leader::Other(other.url()))
    });
}

#[test]
fn no_leader_after_the_read_holds_deregistrations() {
    leader_case("no_leader", |m, _| {
        m.set_leader_after("/v2/apps", Leader::None)
    });
}

#[test]
fn a_leader_endpoint_answering_503_holds_deregistrations() {
    leader_case("leader_503", |m, _| {
        m.faults().fail_always_on(
            "/v2/leader",
            Fault::Answer {
                status: 503,
                content_type: "text/plain".into(),
                body: "Could not determine the current leader".into(),
            },
        )
    });
}

#[test]
fn control_a_real_death_of_1_of_2_tasks_is_deregistered() {
    let s = Stack::start();
    s.create_apps(vec![web_app("/pair", "true", 2, 1)]);
    assert_eq!(s.run("null", &[]).0, 0);
    s.update_app("/pair", json!({"instances": 1}));
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(targets(&summary, "deregister", "applied").len(), 1);
    assert_eq!(s.registered_ids(), s.expected_ids(&["/pair"]));
}

#[test]
fn control_a_real_empty_cluster_needs_the_override_then_deregisters_everything() {
    let s = Stack::start();
    if s.double("real_empty_cluster").is_none() {
        return;
    }
    nine(&s);
    for a in ["/a", "/b", "/c", "/d"] {
        s.delete_app(a);
    }
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 75, "{summary}");
    assert_eq!(s.registered_ids().len(), 9);
    // A count above 9 still refuses to leave none of more than a handful.
    let (code, summary, _) = s.run("null", &["--max-deregister", "20"]);
    assert_eq!(code, 75, "{summary}");
    assert!(
        has_reason(&summary, "all 9 owned registration(s)"),
        "{summary}"
    );
    assert_eq!(s.registered_ids().len(), 9);
    let (code, summary, _) = s.run("null", &["--max-deregister", "100%"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(targets(&summary, "deregister", "applied").len(), 9);
    assert!(s.registered_ids().is_empty());
    assert!(
        s.node_names().iter().all(|n| !n.starts_with("marathon-")),
        "{:?}",
        s.node_names()
    );
}

#[test]
fn two_clusters_sharing_one_consul_never_touch_each_other() {
    let s = Stack::start();
    if s.double("two_clusters").is_none() {
        return;
    }
    // Cluster "east" is the stack's Marathon; "west" another one on other hosts.
    s.create_apps(vec![web_app("/e1", "true", 2, 1)]);
    let west = Marathon::start(MarathonOptions {
        hosts: vec!["10.0.2.1".into(), "10.0.2.2".into()],
        ..Default::default()
    })
    .unwrap();
    west.seed_apps(vec![
        web_app("/w1", "true", 2, 1),
        web_app("/w2", "true", 1, 1),
    ]);
    let east_args = ["--cluster", "east", "--max-deregister", "100%"];
    let west_args = [
        "--cluster",
        "west",
        "--max-deregister",
        "100%",
        "--marathon",
    ];
    let (code, summary, _) = s.run("null", &east_args);
    assert_eq!(code, 0, "{summary}");
    let mut west_cmd: Vec<&str> = west_args.to_vec();
    let west_url = west.url();
    west_cmd.push(&west_url);
    let (code, summary, _) = s.run("null", &west_cmd);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(targets(&summary, "register", "applied").len(), 3);
    assert!(
        targets(&summary, "deregister", "applied").is_empty(),
        "{summary}"
    );
    let all = s.mine();
    assert_eq!(all.len(), 5);
    for e in &all {
        let cluster = e["Service"]["Meta"]["marathon-cluster"].as_str().unwrap();
        assert_eq!(e["Node"]["Meta"]["marathon-cluster"], cluster, "{e}");
        assert_eq!(e["Service"]["Meta"]["external-source"], "marathon");
    }
    // Each cluster's replay, even with the guard off, leaves the other's services and nodes.
    let (code, summary, _) = s.run("null", &east_args);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(count(&summary, "applied"), 0, "{summary}");
    let (code, summary, _) = s.run("null", &west_cmd);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(count(&summary, "applied"), 0, "{summary}");
    assert_eq!(s.mine().len(), 5);
    assert!(s.node_names().contains(&"marathon-10.0.2.1".to_string()));
    // West really empties: only west's go, with their nodes.
    west.faults().fail_always_on(
        "/v2/apps",
        Fault::Answer {
            status: 200,
            content_type: "application/json".into(),
            body: r#"{"apps":[]}"#.into(),
        },
    );
    let (code, summary, _) = s.run("null", &west_cmd);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(targets(&summary, "deregister", "applied").len(), 3);
    let left = s.mine();
    assert_eq!(left.len(), 2);
    assert!(left
        .iter()
        .all(|e| e["Service"]["Meta"]["marathon-cluster"] == "east"));
    assert!(!s
        .node_names()
        .iter()
        .any(|n| n.starts_with("marathon-10.0.2.")));
}

#[test]
fn a_registration_without_cluster_meta_is_the_default_clusters() {
    let s = Stack::start();
    if s.double("no_cluster_meta").is_none() {
        return;
    }
    s.create_apps(vec![web_app("/old", "true", 1, 1)]);
    assert_eq!(s.run("null", &[]).0, 0);
    // As an older tasks2consul wrote it: no marathon-cluster meta.
    let e = s.mine().remove(0);
    let mut meta = e["Service"]["Meta"].clone();
    meta.as_object_mut().unwrap().remove("marathon-cluster");
    let body = json!({"Node": e["Node"]["Node"], "Address": e["Node"]["Address"],
        "NodeMeta": {"external-node": "true", "external-source": "marathon"},
        "Service": {"ID": e["Service"]["ID"], "Service": e["Service"]["Service"],
                    "Port": e["Service"]["Port"], "Address": e["Service"]["Address"],
                    "Tags": e["Service"]["Tags"], "Meta": meta}});
    let r = client("consul", &s.consul_url)
        .send(HttpRequest::new("PUT", "/v1/catalog/register").json(&body))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    s.delete_app("/old");
    // Another cluster never touches it; the default cluster owns it and removes it.
    let (code, summary, _) = s.run("null", &["--cluster", "other"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(s.registered_ids().len(), 1);
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(targets(&summary, "deregister", "applied").len(), 1);
    assert!(s.registered_ids().is_empty());
}
