//! Full and scoped syncs run through the binary, against the devstack doubles (or real servers
//! when CONSUL_HTTP_ADDR and MARATHON_URL are set).

mod common;

use common::*;
use serde_json::{json, Value};

#[test]
fn first_sync_registers_every_running_task_and_replay_writes_nothing() {
    let s = Stack::start();
    s.create_apps(vec![
        web_app("/sami/api", "true", 3, 1),
        web_app("/sami/web", "frontend", 2, 1),
        json!({"id": "/unlabelled", "cmd": "sleep 1", "instances": 1, "cpus": 0.01, "mem": 16}),
    ]);
    let (code, summary, err) = s.run("null", &[]);
    assert_eq!(code, 0, "{summary}\n{err}");
    let expected = s.expected_ids(&["/sami/api", "/sami/web"]);
    assert_eq!(expected.len(), 5);
    assert_eq!(targets(&summary, "register", "applied"), expected);
    assert_eq!(s.registered_ids(), expected);
    // Names, tags, meta, external node, mirrored health.
    for e in s.mine() {
        let app = e["Service"]["Meta"]["marathon-app-id"].as_str().unwrap();
        let name = e["Service"]["Service"].as_str().unwrap();
        if app.ends_with("/sami/api") {
            assert_eq!(name, tasks2consul::plan::default_name(&s.id("/sami/api")));
        } else {
            assert_eq!(name, "frontend");
        }
        assert_eq!(e["Service"]["Tags"], json!(["public"]));
        assert_eq!(e["Service"]["Meta"]["external-source"], "marathon");
        assert!(e["Service"]["Meta"]["marathon-app-version"].is_string());
        assert_eq!(e["Node"]["Meta"]["external-node"], "true");
        assert_eq!(e["Node"]["Meta"]["external-probe"], "false");
        let node = e["Node"]["Node"].as_str().unwrap();
        assert!(
            node.starts_with("marathon-10.0.0.") || s.consul.is_none(),
            "{node}"
        );
        assert!(e["Checks"].as_array().unwrap().iter().any(|c| c["CheckID"]
            .as_str()
            .unwrap()
            .ends_with(":marathon-health")
            && c["Status"] == "passing"));
    }
    // Replay: nothing to write.
    let before = s.consul_writes();
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 0);
    assert_eq!(count(&summary, "applied"), 0, "{summary}");
    assert_eq!(s.consul_writes(), before);
}

#[test]
fn scale_up_and_down_and_app_deletion() {
    let s = Stack::start();
    s.create_apps(vec![
        web_app("/a", "true", 2, 1),
        web_app("/b", "true", 1, 1),
    ]);
    assert_eq!(s.run("null", &[]).0, 0);
    s.update_app("/a", json!({"instances": 4}));
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(targets(&summary, "register", "applied").len(), 2);
    assert_eq!(s.registered_ids(), s.expected_ids(&["/a", "/b"]));
    s.update_app("/a", json!({"instances": 1}));
    // 3 of the 5 registrations at once is more than the default --max-deregister 50% (issue
    // 11): held back, exit 75; the operator's override makes them.
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 75, "{summary}");
    assert_eq!(targets(&summary, "deregister", "skipped").len(), 3);
    assert_eq!(s.registered_ids().len(), 5);
    let (code, summary, _) = s.run("null", &["--max-deregister", "100%"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(
        targets(&summary, "deregister", "applied").len(),
        3,
        "{summary}"
    );
    assert_eq!(s.registered_ids(), s.expected_ids(&["/a", "/b"]));
    s.delete_app("/b");
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 0);
    assert_eq!(
        targets(&summary, "deregister", "applied").len(),
        1,
        "{summary}"
    );
    assert_eq!(s.registered_ids(), s.expected_ids(&["/a"]));
}

#[test]
fn task_failure_and_replacement() {
    let s = Stack::start();
    let Some(m) = s.double("task_failure_and_replacement") else {
        return;
    };
    s.create_apps(vec![web_app("/a", "true", 2, 1)]);
    assert_eq!(s.run("null", &[]).0, 0);
    let victim = s.running_tasks("/a")[0]["id"].as_str().unwrap().to_string();
    m.kill_task(&victim, "TASK_FAILED");
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 0);
    let dereg = targets(&summary, "deregister", "applied");
    assert_eq!(dereg.len(), 1);
    assert!(dereg[0].contains(&victim));
    assert_eq!(targets(&summary, "register", "applied").len(), 1);
    assert_eq!(s.registered_ids(), s.expected_ids(&["/a"]));
}

#[test]
fn unhealthy_tasks_are_not_registered_and_registered_ones_turn_critical() {
    let s = Stack::start();
    let Some(m) = s.double("unhealthy_tasks") else {
        return;
    };
    let mut app = web_app("/h", "true", 2, 1);
    app["healthChecks"] = json!([{"protocol": "HTTP", "path": "/health", "portIndex": 0}]);
    s.create_apps(vec![app]);
    let tasks = s.running_tasks("/h");
    let (t0, t1) = (
        tasks[0]["id"].as_str().unwrap().to_string(),
        tasks[1]["id"].as_str().unwrap().to_string(),
    );
    m.set_task_alive(&t1, false);
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 0, "{summary}");
    let regs = targets(&summary, "register", "applied");
    assert_eq!(regs.len(), 1);
    assert!(regs[0].contains(&t0), "{regs:?}");
    // The registered one fails its check: it stays, critical, and leaves the passing set.
    m.set_task_alive(&t0, false);
    let (_, summary, _) = s.run("null", &[]);
    assert_eq!(
        targets(&summary, "register", "applied").len(),
        1,
        "{summary}"
    );
    let e = &s.mine()[0];
    let check = e["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ServiceID"] == e["Service"]["ID"])
        .unwrap()
        .clone();
    assert_eq!(check["Status"], "critical");
    // Healthy again: passing, one write; the never-healthy task registers once healthy.
    m.set_task_alive(&t0, true);
    m.set_task_alive(&t1, true);
    let (_, summary, _) = s.run("null", &[]);
    assert_eq!(
        targets(&summary, "register", "applied").len(),
        2,
        "{summary}"
    );
    assert_eq!(s.registered_ids(), s.expected_ids(&["/h"]));
}

#[test]
fn multiple_ports_and_label_driven_names_and_tags() {
    let s = Stack::start();
    let app = json!({"id": "/multi", "cmd": "sleep 1000", "cpus": 0.01, "mem": 16, "instances": 1,
    "labels": {"consul": "shop", "edge": "tag", "owner": "team-a"},
    "portDefinitions": [
        {"port": 0, "name": "http"},
        {"port": 0, "labels": {"consul": "shop-metrics", "prometheus": "tag"}},
        {"port": 0}
    ]});
    s.create_apps(vec![app]);
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 0, "{summary}");
    let mut got: Vec<(String, Value, u64)> = s
        .mine()
        .iter()
        .map(|e| {
            (
                e["Service"]["Service"].as_str().unwrap().to_string(),
                e["Service"]["Tags"].clone(),
                e["Service"]["Port"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let ports: Vec<u64> = s.running_tasks(&s.id("/multi"))[0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert_eq!(
        got,
        vec![
            ("shop-2".to_string(), json!(["edge"]), ports[2]),
            ("shop-http".to_string(), json!(["edge"]), ports[0]),
            (
                "shop-metrics".to_string(),
                json!(["edge", "prometheus"]),
                ports[1]
            ),
        ]
    );
    // Renaming through the label re-registers in place (same IDs).
    let ids_before = s.registered_ids();
    s.update_app(
        "/multi",
        json!({"labels": {"consul": "store", "edge": "tag"}}),
    );
    let (_, summary, _) = s.run("null", &[]);
    assert_eq!(code, 0, "{summary}");
    let names: Vec<String> = s
        .mine()
        .iter()
        .map(|e| e["Service"]["Service"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("store") || n == "shop-metrics"),
        "{names:?}"
    );
    assert_eq!(s.registered_ids().len(), ids_before.len());
}

#[test]
fn foreign_services_are_left_alone() {
    let s = Stack::start();
    s.create_apps(vec![web_app("/a", "true", 1, 1)]);
    s.register_foreign("db-1", "redis-main", "redis");
    // Same external-node shape, even a Marathon-looking ID, but no tasks2consul meta.
    s.register_foreign("marathon-10.0.0.1", "marathon:fake.task:1", "fake");
    assert_eq!(s.run("null", &[]).0, 0);
    s.delete_app("/a");
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 0);
    assert_eq!(targets(&summary, "deregister", "applied").len(), 1);
    let ids: Vec<String> = s
        .consul_entries()
        .iter()
        .map(|e| e["Service"]["ID"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&"redis-main".to_string()), "{ids:?}");
    assert!(ids.contains(&"marathon:fake.task:1".to_string()), "{ids:?}");
}

#[test]
fn dead_host_tasks_are_deregistered_without_its_agent() {
    let s = Stack::start();
    let Some(m) = s.double("dead_host") else {
        return;
    };
    // One task per host (the double places tasks round robin).
    s.create_apps(vec![web_app("/a", "true", 3, 1)]);
    assert_eq!(s.run("null", &[]).0, 0);
    m.set_host_down("10.0.0.2");
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(targets(&summary, "deregister", "applied").len(), 1);
    assert!(s
        .mine()
        .iter()
        .all(|e| e["Service"]["Address"] != "10.0.0.2"));
    assert_eq!(s.registered_ids(), s.expected_ids(&["/a"]));
    // The dead host's external node, now empty, is gone too.
    let node_removed = summary["actions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["target"] == "node:marathon-10.0.0.2" && a["status"] == "applied");
    assert!(node_removed, "{summary}");
    assert!(!s.node_names().contains(&"marathon-10.0.0.2".to_string()));
    assert!(s.node_names().contains(&"marathon-10.0.0.1".to_string()));
}

#[test]
fn event_payload_limits_the_sync_to_the_named_apps() {
    let s = Stack::start();
    s.create_apps(vec![
        web_app("/a", "true", 1, 1),
        web_app("/b", "true", 1, 1),
    ]);
    s.update_app("/a", json!({"instances": 2}));
    s.update_app("/b", json!({"instances": 2}));
    let a = s.id("/a");
    let (code, summary, _) = s.run(&event_payload(&json!({"apps": [a]}).to_string()), &[]);
    assert_eq!(code, 0, "{summary}");
    let regs = targets(&summary, "register", "applied");
    assert_eq!(regs, s.expected_ids(&["/a"]));
    // Plain array form.
    let b = s.id("/b");
    let (_, summary, _) = s.run(&event_payload(&json!([b]).to_string()), &[]);
    assert_eq!(
        targets(&summary, "register", "applied"),
        s.expected_ids(&["/b"])
    );
    // A payload that names nothing readable: full sync, reported.
    let (code, summary, _) = s.run(&event_payload("not json"), &[]);
    assert_eq!(code, 0);
    assert!(
        summary["errors"][0].as_str().unwrap().contains("full sync"),
        "{summary}"
    );
}

#[test]
fn dry_run_lists_and_changes_nothing() {
    let s = Stack::start();
    s.create_apps(vec![web_app("/a", "true", 2, 1)]);
    let (code, summary, _) = s.run("null", &["--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(summary["dry_run"], true);
    assert_eq!(
        targets(&summary, "register", "planned"),
        s.expected_ids(&["/a"])
    );
    assert!(s.registered_ids().is_empty());
}

#[test]
fn a_failed_write_exits_75_and_a_replay_completes_it() {
    let s = Stack::start();
    let Some(c) = s.consul.as_ref() else {
        eprintln!("partial failure: skipped against real servers (needs fault injection)");
        return;
    };
    s.create_apps(vec![web_app("/a", "true", 3, 1)]);
    // The transaction is refused as a whole (413 over the body size limit, agent/
    // txn_endpoint.go): each registration is then written alone, and the first of those single
    // writes fails. (A 413 over the operation limit is split and resent instead: tests/txn.rs.)
    c.faults().fail_next_on(
        "/v1/txn",
        1,
        devstack::http::Fault::Status {
            status: 413,
            body: "Request body too large, max size: 524288 bytes".into(),
        },
    );
    c.faults().fail_next_on(
        "/v1/catalog/register",
        1,
        devstack::http::Fault::Status {
            status: 400,
            body: "Request decode failed: injected".into(),
        },
    );
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 75, "{summary}");
    assert_eq!(count(&summary, "failed"), 1);
    assert_eq!(count(&summary, "applied"), 2);
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(count(&summary, "applied"), 1);
    assert_eq!(s.registered_ids(), s.expected_ids(&["/a"]));
}

#[test]
fn unreachable_remotes_exit_69_and_change_nothing() {
    let s = Stack::start();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    s.create_apps(vec![web_app("/a", "true", 1, 1)]);
    let (code, summary, _) = s.run("null", &["--marathon", &dead_url, "--timeout", "5s"]);
    assert_eq!(code, 69, "{summary}");
    let (code, summary, _) = s.run("null", &["--consul", &dead_url, "--timeout", "5s"]);
    assert_eq!(code, 69, "{summary}");
    assert!(s.registered_ids().is_empty());
}

#[test]
fn bad_payload_exits_65() {
    let s = Stack::start();
    let (code, summary, _) = s.run("{not json", &[]);
    assert_eq!(code, 65, "{summary}");
    assert!(summary["errors"][0].as_str().unwrap().contains("JSON"));
}

#[test]
fn agent_mode_registers_with_checks_and_falls_back_to_the_catalog_for_dead_agents() {
    let s = Stack::start();
    let (Some(m), Some(_)) = (s.double("agent_mode"), s.consul.as_ref()) else {
        return;
    };
    let mut app = web_app("/ag", "true", 2, 1);
    app["healthChecks"] =
        json!([{"protocol": "HTTP", "path": "/ping", "portIndex": 0, "intervalSeconds": 7}]);
    s.create_apps(vec![app]);
    // Every host's "agent" is the Consul double.
    let agent = s.consul_url.clone();
    let (code, summary, err) = s.run("null", &["--mode", "agent", "--agent-url", &agent]);
    assert_eq!(code, 0, "{summary}\n{err}");
    assert_eq!(
        targets(&summary, "register", "applied"),
        s.expected_ids(&["/ag"])
    );
    let agent_ids: Vec<String> = s
        .consul
        .as_ref()
        .unwrap()
        .agent_services()
        .iter()
        .map(|c| c.id.clone())
        .collect();
    assert_eq!(agent_ids.len(), 2, "{agent_ids:?}");
    let e = &s.mine()[0];
    let http = e["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ServiceID"] == e["Service"]["ID"])
        .cloned()
        .unwrap();
    assert!(
        http["CheckID"].as_str().unwrap().ends_with(":hc0"),
        "{http}"
    );
    // Replay: nothing; and catalog mode does not touch agent registrations.
    let (_, summary, _) = s.run("null", &["--mode", "agent", "--agent-url", &agent]);
    assert_eq!(count(&summary, "applied"), 0, "{summary}");
    // A task dies while its host's agent is unreachable: removed from the catalog instead.
    let victim = s.running_tasks(&s.id("/ag"))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    m.kill_task(&victim, "TASK_KILLED");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let (code, summary, _) = s.run(
        "null",
        &[
            "--mode",
            "agent",
            "--agent-url",
            &dead_url,
            "--timeout",
            "10s",
        ],
    );
    // The replacement's registration fails (its agent is down too): partial, exit 75.
    assert_eq!(code, 75, "{summary}");
    let dereg: Vec<&Value> = summary["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "deregister")
        .collect();
    assert_eq!(dereg.len(), 1);
    assert_eq!(dereg[0]["status"], "applied");
    assert!(
        dereg[0]["detail"].as_str().unwrap().contains("catalog"),
        "{}",
        dereg[0]
    );
    // With the agent back, everything converges.
    let (code, summary, _) = s.run("null", &["--mode", "agent", "--agent-url", &agent]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(s.registered_ids(), s.expected_ids(&["/ag"]));
}

#[test]
fn with_lock_only_the_holder_acts() {
    let s = Stack::start();
    s.create_apps(vec![web_app("/l", "true", 1, 1)]);
    let key = format!("locks/tasks2consul{}", s.ns.replace('/', "-"));
    let mut cfg = runtime::http::HttpConfig::new("consul");
    cfg.backoff.attempts = 1;
    let client = runtime::http::HttpClient::new(std::slice::from_ref(&s.consul_url), cfg).unwrap();
    let other = std::sync::Arc::new(consul::Consul::new(client));
    let guard = match consul::lock::acquire(
        other,
        &key,
        "another agent",
        std::time::Duration::from_secs(10),
    )
    .unwrap()
    {
        consul::lock::LockOutcome::Acquired(g) => g,
        consul::lock::LockOutcome::HeldElsewhere { holder } => panic!("held by {holder}"),
    };
    let (code, summary, _) = s.run("null", &["--lock", &key]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["actions"][0]["kind"], "lock");
    assert_eq!(summary["actions"][0]["status"], "skipped");
    assert!(s.registered_ids().is_empty());
    drop(guard);
    let (code, summary, _) = s.run("null", &["--lock", &key]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(s.registered_ids(), s.expected_ids(&["/l"]));
}

#[test]
fn text_output_lists_the_changes() {
    let s = Stack::start();
    s.create_apps(vec![web_app("/txt", "true", 1, 1)]);
    let mut cmd = s.cmd();
    cmd.args(["--output", "text", "--dry-run"]);
    let out = run_with_stdin(&mut cmd, b"null");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let id = &s.expected_ids(&["/txt"])[0];
    assert!(text.starts_with("tasks2consul (dry run)"), "{text}");
    assert!(
        text.contains(&format!("planned   register       {id}")),
        "{text}"
    );
    assert!(text.contains("0 applied, 1 planned"), "{text}");
}

// Issue 12 item 10: a replay lists and counts its unchanged registrations, in text as in JSON.
#[test]
fn a_replay_lists_and_counts_unchanged_registrations() {
    let s = Stack::start();
    s.create_apps(vec![web_app("/same", "true", 2, 1)]);
    assert_eq!(s.run("null", &[]).0, 0);
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 0);
    assert_eq!(
        targets(&summary, "register", "unchanged"),
        s.expected_ids(&["/same"])
    );
    let mut cmd = s.cmd();
    cmd.args(["--output", "text"]);
    let out = run_with_stdin(&mut cmd, b"null");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("0 applied, 0 planned, 2 unchanged"), "{text}");
    let id = &s.expected_ids(&["/same"])[0];
    assert!(
        text.contains(&format!("unchanged register       {id}")),
        "{text}"
    );
}

// Issue 12 item 5: a registration refused for its labels is `failed`, not only an error line.
#[test]
fn a_rejected_registration_is_failed() {
    let s = Stack::start();
    s.create_apps(vec![
        web_app("/bad", "has a space", 1, 1),
        web_app("/good", "true", 1, 1),
    ]);
    let (code, summary, _) = s.run("null", &[]);
    assert_eq!(code, 65, "{summary}");
    let failed = with_status(&summary, "failed");
    assert_eq!(failed.len(), 1, "{summary}");
    assert_eq!(failed[0]["kind"], "register");
    assert_eq!(failed[0]["target"], s.id("/bad").as_str());
    assert!(failed[0]["detail"]
        .as_str()
        .unwrap()
        .contains("service name"));
    assert_eq!(
        targets(&summary, "register", "applied"),
        s.expected_ids(&["/good"])
    );
}

// Issue 12 item 8: after SIGTERM no new Consul write starts; the writes in flight finish, the
// summary says what was not started, exit 75.
#[test]
fn a_stop_signal_starts_no_new_write() {
    use std::io::BufRead;
    let s = Stack::start();
    let Some(c) = s.consul.as_ref() else {
        eprintln!("stop signal: skipped against real servers (needs a slow double)");
        return;
    };
    s.create_apps(vec![web_app("/slow", "true", 10, 1)]);
    // Single writes (a Consul without catalog transactions), each slow.
    c.faults().fail_always_on(
        "/v1/txn",
        devstack::http::Fault::Status {
            status: 404,
            body: "404 page not found".into(),
        },
    );
    c.faults().fail_always_on(
        "/v1/catalog/register",
        devstack::http::Fault::Delay(std::time::Duration::from_millis(600)),
    );
    let mut cmd = s.cmd();
    cmd.env("RUST_LOG", "info")
        .args(["--output", "json", "--timeout", "20s"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"null").unwrap();
    }
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("owned registration(s)") {
                let _ = tx.send(());
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    // The plan is made and the writes are about to start (or started): stop.
    if rx.recv_timeout(std::time::Duration::from_secs(20)).is_err() {
        let _ = child.kill();
        panic!(
            "the run never reached its writes:\n{}",
            reader.join().unwrap()
        );
    }
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let log = reader.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(75), "{stdout}\n{log}");
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    let applied = targets(&summary, "register", "applied").len();
    let stopped: Vec<&Value> = summary["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            a["status"] == "skipped"
                && a["detail"]
                    .as_str()
                    .unwrap()
                    .contains("not attempted: stopped by a signal")
        })
        .collect();
    assert_eq!(applied + stopped.len(), 10, "{summary}");
    assert!(stopped.len() >= 2, "at most 8 writes in flight: {summary}");
    assert_eq!(c.write_count() as usize, applied, "{summary}");
}
