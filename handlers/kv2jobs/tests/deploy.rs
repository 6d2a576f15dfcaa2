//! kv2jobs end to end: the binary, a keyprefix payload on stdin, Marathon and Chronos doubles
//! (or real servers when MARATHON_URL / CHRONOS_URL are set).

mod common;

use std::time::Duration;

use common::{action, actions, app, count, kv, recorder, Stack};
use devstack::chronos::ChronosOptions;
use devstack::http::Fault;
use devstack::marathon::MarathonOptions;
use serde_json::{json, Value};

#[test]
fn first_deploy_then_replay_makes_zero_writes() {
    let s = Stack::new("first");
    let files = [
        ("api.json", app("/first/api", "sleep 100")),
        (
            "web.json",
            json!({"id":"/first/web","cmd":"python3 -m http.server","mem":64.0,"cpus":0.25,
            "healthChecks":[{"protocol":"HTTP","path":"/health","portIndex":0}],
            "env":{"A":"1"},"labels":{"team":"x"}}),
        ),
        ("README.md", json!("not json")),
    ];
    let payload = s.payload(&files);
    let (code, sum, err) = s.run(&payload, &[]);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(actions(&sum, "create-app").len(), 2, "{sum}");
    assert_eq!(count(&sum, "applied"), 2);
    assert_eq!(action(&sum, &s.key("README.md"))["status"], "skipped");
    assert_eq!(action(&sum, &s.ref_key())["status"], "skipped");
    let api = s.live_app("/first/api").expect("created");
    assert_eq!(api["labels"]["shipwatch.managed-by"], "kv2jobs");
    assert_eq!(
        api["labels"]["shipwatch.source-key"],
        json!(s.key("api.json"))
    );
    s.settle();
    let writes = s.marathon_writes();
    let (code, sum, err) = s.run(&payload, &[]);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(count(&sum, "unchanged"), 2, "{sum}");
    assert_eq!(count(&sum, "applied"), 0, "{sum}");
    assert_eq!(s.marathon_writes(), writes, "a replay must not write");
}

#[test]
fn a_single_field_change_is_one_write_with_a_readable_diff() {
    let s = Stack::new("single");
    let (code, _, err) = s.run(
        &s.payload(&[
            ("a.json", app("/single/a", "sleep 1")),
            ("b.json", app("/single/b", "sleep 1")),
        ]),
        &[],
    );
    assert_eq!(code, 0, "{err}");
    s.settle();
    let before = s.marathon_writes();
    let payload = s.payload(&[
        ("a.json", app("/single/a", "sleep 2")),
        ("b.json", app("/single/b", "sleep 1")),
    ]);
    // Dry run first: the plan with a per-field diff, and no write.
    let (code, sum, _) = s.run(&payload, &["--dry-run"]);
    assert_eq!(code, 0);
    let a = action(&sum, "/single/a");
    assert_eq!(a["status"], "planned");
    assert!(
        a["detail"]
            .as_str()
            .unwrap()
            .contains(r#"cmd: "sleep 1" -> "sleep 2""#),
        "{a}"
    );
    assert_eq!(s.marathon_writes(), before);
    let (code, sum, _) = s.run(&payload, &[]);
    assert_eq!(code, 0, "{sum}");
    assert_eq!(action(&sum, "/single/a")["status"], "applied");
    assert_eq!(action(&sum, "/single/b")["status"], "unchanged");
    if let (Some(b), Some(a)) = (before, s.marathon_writes()) {
        assert_eq!(a - b, 1, "exactly one write");
    }
    assert_eq!(s.live_app("/single/a").unwrap()["cmd"], "sleep 2");
}

#[test]
fn removing_a_field_in_git_removes_it_in_marathon() {
    let s = Stack::new("removal");
    let mut full = app("/removal/a", "sleep 1");
    full["healthChecks"] = json!([{"protocol":"HTTP","path":"/","portIndex":0}]);
    full["constraints"] = json!([["hostname", "UNIQUE"]]);
    let (code, _, err) = s.run(&s.payload(&[("a.json", full)]), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        s.live_app("/removal/a").unwrap()["healthChecks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    s.settle();
    let mut less = app("/removal/a", "sleep 1");
    less["constraints"] = json!([["hostname", "UNIQUE"]]);
    let (code, sum, _) = s.run(&s.payload(&[("a.json", less.clone())]), &[]);
    assert_eq!(code, 0, "{sum}");
    let a = action(&sum, "/removal/a");
    assert_eq!(a["status"], "applied", "{a}");
    assert!(
        a["detail"].as_str().unwrap().contains("healthChecks"),
        "{a}"
    );
    let live = s.live_app("/removal/a").unwrap();
    assert!(
        live["healthChecks"].as_array().is_none_or(|h| h.is_empty()),
        "{live}"
    );
    s.settle();
    let (_, sum, _) = s.run(&s.payload(&[("a.json", less)]), &[]);
    assert_eq!(count(&sum, "applied"), 0, "{sum}");
}

#[test]
fn group_files_deploy_apps_with_full_ids() {
    let s = Stack::new("group");
    let group = json!({"id":"/group/prod","apps":[{"id":"web","cmd":"w","mem":32,"cpus":0.1}],
        "groups":[{"id":"db","apps":[{"id":"pg","cmd":"p","mem":32,"cpus":0.1}]}]});
    let payload = s.payload(&[("prod.json", group)]);
    let (code, sum, err) = s.run(&payload, &[]);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert!(s.live_app("/group/prod/web").is_some());
    assert!(s.live_app("/group/prod/db/pg").is_some());
    assert_eq!(
        s.live_app("/group/prod/db/pg").unwrap()["labels"]["shipwatch.source-key"],
        json!(s.key("prod.json"))
    );
    s.settle();
    let (_, sum, _) = s.run(&payload, &[]);
    assert_eq!(count(&sum, "unchanged"), 2, "{sum}");
}

#[test]
fn docker_networking_in_the_14_form_matches_a_15_server() {
    let s = Stack::new("net14");
    let app14 = json!({"id":"/net14/bridged-webapp","cmd":"python3 -m http.server 8080","cpus":0.5,"mem":64.0,
        "instances":2,"container":{"type":"DOCKER","docker":{"image":"python:3","network":"BRIDGE",
        "portMappings":[{"containerPort":8080,"hostPort":0,"servicePort":9000,"protocol":"tcp"},
                        {"containerPort":161,"hostPort":0,"protocol":"udp"}]}},
        "healthChecks":[{"protocol":"HTTP","portIndex":0,"path":"/","gracePeriodSeconds":5,
                         "intervalSeconds":20,"maxConsecutiveFailures":3}]});
    let payload = s.payload(&[("web.json", app14)]);
    let (code, sum, err) = s.run(&payload, &[]);
    assert_eq!(code, 0, "{sum}\n{err}");
    let live = s.live_app("/net14/bridged-webapp").unwrap();
    assert!(
        live.get("networks").is_some(),
        "the server answers in the 1.5 form: {live}"
    );
    s.settle();
    let writes = s.marathon_writes();
    let (code, sum, _) = s.run(&payload, &[]);
    assert_eq!(code, 0);
    assert_eq!(
        action(&sum, "/net14/bridged-webapp")["status"],
        "unchanged",
        "{sum}"
    );
    assert_eq!(s.marathon_writes(), writes);
}

/// Issue 12 item 3 changed this from "skipped, exit 0" (which waited forever when the .ref never
/// moved): with no time to wait (`--ref-wait 0`) a mid-sync payload exits 75, names the newer
/// key, and makes no request. Waiting for the .ref is tested in tests/guards.rs.
#[test]
fn mid_sync_payload_without_time_to_wait_exits_75_and_makes_no_request() {
    let s = Stack::new("midsync");
    // git2consul wrote the .ref at 10, then started a new sync: a.json at 11.
    let payload = serde_json::to_vec(&json!([
        kv(&s.ref_key(), 10, Some("oldsha")),
        kv(
            &s.key("a.json"),
            11,
            Some(&app("/midsync/a", "sleep 1").to_string())
        ),
    ]))
    .unwrap();
    let (code, sum, _) = s.run(&payload, &["--prune", "--ref-wait", "0s"]);
    assert_eq!(code, 75, "{sum}");
    assert_eq!(sum["actions"].as_array().unwrap().len(), 1, "{sum}");
    let why = sum["errors"][0].as_str().unwrap();
    assert!(
        why.contains(&s.key("a.json")) && why.contains("hand edit"),
        "{why}"
    );
    if let Some(m) = s.double() {
        assert_eq!(m.request_count(), 0, "not even a read");
    }
    assert!(s.live_app("/midsync/a").is_none());
    let done = serde_json::to_vec(&json!([
        kv(&s.ref_key(), 12, Some("newsha")),
        kv(
            &s.key("a.json"),
            11,
            Some(&app("/midsync/a", "sleep 1").to_string())
        ),
    ]))
    .unwrap();
    let (code, sum, _) = s.run(&done, &[]);
    assert_eq!(code, 0, "{sum}");
    assert!(s.live_app("/midsync/a").is_some());
}

#[test]
fn prune_deletes_only_managed_apps_whose_config_is_gone() {
    let s = Stack::new("prune");
    // An app created by hand (no ownership mark) must survive.
    ureq::put(&format!("{}/v2/apps/prune/manual", s.marathon_url))
        .send_json(app("/prune/manual", "sleep 1"))
        .unwrap();
    let (code, _, err) = s.run(
        &s.payload(&[
            ("a.json", app("/prune/a", "x")),
            ("b.json", app("/prune/b", "x")),
        ]),
        &[],
    );
    assert_eq!(code, 0, "{err}");
    s.settle();
    let only_a = s.payload(&[("a.json", app("/prune/a", "x"))]);
    // Without --prune nothing is deleted.
    let (code, sum, _) = s.run(&only_a, &[]);
    assert_eq!(code, 0);
    assert!(actions(&sum, "delete-app").is_empty(), "{sum}");
    assert!(s.live_app("/prune/b").is_some());
    let (code, sum, _) = s.run(&only_a, &["--prune", "--prefix", &s.prefix]);
    assert_eq!(code, 0, "{sum}");
    let deletes = actions(&sum, "delete-app");
    assert_eq!(deletes.len(), 1, "{sum}");
    assert_eq!(deletes[0]["target"], "/prune/b");
    assert_eq!(deletes[0]["status"], "applied");
    s.settle();
    assert!(s.live_app("/prune/b").is_none());
    assert!(
        s.live_app("/prune/manual").is_some(),
        "unmanaged apps are never pruned"
    );
    assert!(s.live_app("/prune/a").is_some());
}

/// `--allow-empty` lets an emptied branch (git2consul deleted every file, then wrote the .ref)
/// delete its apps; a `null` payload (the whole prefix gone, .ref included) never does: it is
/// no snapshot of any branch (issue 11).
#[test]
fn an_empty_payload_never_prunes_without_allow_empty() {
    let s = Stack::new("empty");
    let (code, _, _) = s.run(&s.payload(&[("a.json", app("/empty/a", "x"))]), &[]);
    assert_eq!(code, 0);
    s.settle();
    for payload in [b"null".to_vec(), b"[]".to_vec(), s.payload(&[])] {
        let (code, sum, _) = s.run(&payload, &["--prune", "--prefix", &s.prefix]);
        assert_eq!(code, 0, "{sum}");
        assert!(actions(&sum, "delete-app").is_empty(), "{sum}");
        assert_eq!(actions(&sum, "prune")[0]["status"], "skipped", "{sum}");
    }
    assert!(s.live_app("/empty/a").is_some());
    let (code, sum, _) = s.run(
        b"null",
        &["--prune", "--allow-empty", "--prefix", &s.prefix],
    );
    assert_eq!(code, 0, "{sum}");
    let held = actions(&sum, "delete-app");
    assert_eq!(held.len(), 1, "{sum}");
    assert_eq!(held[0]["status"], "skipped", "{sum}");
    assert!(s.live_app("/empty/a").is_some(), "no .ref, no delete");
    let (code, sum, _) = s.run(
        &s.payload(&[]),
        &["--prune", "--allow-empty", "--prefix", &s.prefix],
    );
    assert_eq!(code, 0, "{sum}");
    assert_eq!(actions(&sum, "delete-app")[0]["status"], "applied", "{sum}");
    s.settle();
    assert!(s.live_app("/empty/a").is_none());
}

#[test]
fn a_locked_app_waits_for_its_deployment_or_is_forced() {
    let s = Stack::with(
        "locked",
        MarathonOptions {
            deploy_duration: Duration::from_millis(600),
            ..Default::default()
        },
        ChronosOptions::default(),
    );
    if s.double().is_none() {
        return;
    }
    let (code, _, err) = s.run(&s.payload(&[("a.json", app("/locked/a", "v1"))]), &[]);
    assert_eq!(code, 0, "{err}");
    // The first deployment still runs: the next change gets 409, waits, then applies.
    let t = std::time::Instant::now();
    let (code, sum, err) = s.run(&s.payload(&[("a.json", app("/locked/a", "v2"))]), &[]);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(action(&sum, "/locked/a")["status"], "applied", "{sum}");
    assert!(err.contains("locked"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(s.live_app("/locked/a").unwrap()["cmd"], "v2");
    // With --force the running deployment is overridden at once.
    let (code, sum, err) = s.run(
        &s.payload(&[("a.json", app("/locked/a", "v3"))]),
        &["--force"],
    );
    assert_eq!(code, 0, "{sum}\n{err}");
    assert!(!err.contains("locked by"), "{err}");
    assert_eq!(s.live_app("/locked/a").unwrap()["cmd"], "v3");
    // A lock that outlasts --deploy-timeout fails the action (75), nothing is forced.
    let (code, sum, _) = s.run(
        &s.payload(&[("a.json", app("/locked/a", "v4"))]),
        &["--deploy-timeout", "100ms"],
    );
    assert_eq!(code, 75, "{sum}");
    assert!(
        action(&sum, "/locked/a")["detail"]
            .as_str()
            .unwrap()
            .contains("--deploy-timeout"),
        "{sum}"
    );
}

#[test]
fn marathons_running_deployments_limit_is_waited_out() {
    let s = Stack::new("toomany");
    let Some(m) = s.double() else { return };
    // MarathonExceptionMapper: TooManyRunningDeploymentsException -> 403.
    let body = json!({"message": "Max number (100) of running deployments is achieved. Wait for existing deployments to complete or cancel one using force=true parameter."});
    m.faults().fail_next_on(
        "/v2/apps/toomany/a",
        1,
        Fault::Status {
            status: 403,
            body: body.to_string(),
        },
    );
    let (code, sum, err) = s.run(&s.payload(&[("a.json", app("/toomany/a", "x"))]), &[]);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(action(&sum, "/toomany/a")["status"], "applied");
    assert!(err.contains("running-deployments limit"), "{err}");
}

#[test]
fn marathon_validation_errors_are_reported_per_field() {
    let s = Stack::new("invalid422");
    let mut bad = app("/invalid422/a", "x");
    bad["upgradeStrategy"] = json!({"minimumHealthCapacity": 2});
    let (code, sum, _) = s.run(
        &s.payload(&[("a.json", bad), ("b.json", app("/invalid422/b", "x"))]),
        &[],
    );
    assert_eq!(code, 75, "{sum}");
    let a = action(&sum, "/invalid422/a");
    assert_eq!(a["status"], "failed");
    let detail = a["detail"].as_str().unwrap();
    assert!(
        detail.contains("/upgradeStrategy/minimumHealthCapacity: is greater than 1"),
        "{detail}"
    );
    assert_eq!(action(&sum, "/invalid422/b")["status"], "applied");
}

#[test]
fn several_marathon_urls_fail_over() {
    let s = Stack::new("failover");
    let Some(m) = s.double() else { return };
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let urls = format!("{dead_url},{}", m.url());
    let (code, sum, err) = s.run(
        &s.payload(&[("a.json", app("/failover/a", "x"))]),
        &["--marathon", &urls],
    );
    assert_eq!(code, 0, "{sum}\n{err}");
    assert!(s.live_app("/failover/a").is_some());
    // A 503 from a standby is retried too.
    m.faults().fail_next(
        1,
        Fault::Status {
            status: 503,
            body: "Could not determine the current leader".into(),
        },
    );
    let (code, sum, _) = s.run(&s.payload(&[("a.json", app("/failover/a", "y"))]), &[]);
    assert_eq!(code, 0, "{sum}");
    // Unreachable everywhere: 69, nothing lost.
    m.faults().set_refuse(true);
    let (code, sum, _) = s.run(&s.payload(&[("a.json", app("/failover/a", "z"))]), &[]);
    m.faults().set_refuse(false);
    assert_eq!(code, 69, "{sum}");
}

#[test]
fn chronos_parents_first_and_schedule_rewrite_is_not_a_change() {
    let s = Stack::new("chronos");
    let parent = json!({"name":"chronos-parent","command":"echo p","schedule":"R/2014-09-25T17:22:00Z/PT2M",
        "cpus":"0.5","mem":"512","owner":"ops@example.com"});
    let child = json!({"name":"chronos-child","command":"echo c","parents":["chronos-parent"]});
    // The child's key sorts first: order must still be parent, then child.
    let payload = s.payload(&[("a-child.json", child), ("b-parent.json", parent)]);
    let (code, sum, err) = s.run(&payload, &[]);
    assert_eq!(code, 0, "{sum}\n{err}");
    let creates: Vec<&str> = actions(&sum, "create-job")
        .iter()
        .map(|a| a["target"].as_str().unwrap())
        .collect();
    assert_eq!(creates, vec!["chronos-parent", "chronos-child"]);
    assert_eq!(count(&sum, "applied"), 2);
    let jobs = s.live_jobs();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let Some(c) = &s.chronos else { return };
    let writes = c.write_count();
    c.run_job("chronos-parent");
    c.run_job("chronos-parent");
    let (code, sum, _) = s.run(&payload, &[]);
    assert_eq!(code, 0, "{sum}");
    assert_eq!(count(&sum, "unchanged"), 2, "{sum}");
    assert_eq!(
        c.write_count(),
        writes,
        "an advanced schedule is not a change"
    );
    // A real schedule change is.
    let moved = json!({"name":"chronos-parent","command":"echo p","schedule":"R/2014-09-25T17:23:00Z/PT2M",
        "cpus":"0.5","mem":"512","owner":"ops@example.com"});
    let child = json!({"name":"chronos-child","command":"echo c","parents":["chronos-parent"]});
    let (_, sum, _) = s.run(
        &s.payload(&[("a-child.json", child), ("b-parent.json", moved)]),
        &[],
    );
    assert_eq!(action(&sum, "chronos-parent")["status"], "applied", "{sum}");
    assert_eq!(
        action(&sum, "chronos-child")["status"],
        "unchanged",
        "{sum}"
    );
}

#[test]
fn chronos_2x_is_reached_at_scheduler_and_jobs_are_pruned_children_first() {
    let s = Stack::with(
        "chronos2",
        MarathonOptions::default(),
        ChronosOptions {
            api_v2: true,
            ..Default::default()
        },
    );
    if s.chronos.is_none() {
        return;
    }
    let p = json!({"name":"c2-parent","command":"x","schedule":"R//PT1H"});
    let c = json!({"name":"c2-child","command":"x","parents":["c2-parent"]});
    let (code, sum, err) = s.run(&s.payload(&[("p.json", p), ("c.json", c)]), &[]);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(s.live_jobs().len(), 2);
    let keep = json!({"name":"c2-other","command":"x","schedule":"R//PT1H"});
    let (code, sum, err) = s.run(
        &s.payload(&[("o.json", keep)]),
        &["--prune", "--prefix", &s.prefix],
    );
    assert_eq!(code, 0, "{sum}\n{err}");
    let deletes: Vec<&str> = actions(&sum, "delete-job")
        .iter()
        .map(|a| a["target"].as_str().unwrap())
        .collect();
    assert_eq!(deletes, vec!["c2-child", "c2-parent"]);
    let names: Vec<String> = s
        .live_jobs()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["c2-other"]);
}

#[test]
fn notification_is_sent_on_change_and_not_on_a_no_op() {
    let s = Stack::new("notify");
    let (hook, seen) = recorder(200);
    let url = format!("{}/services/T000/B000/secret", hook.url());
    let payload = s.payload(&[("a.json", app("/notify/a", "x"))]);
    let (code, sum, err) = s.run(&payload, &["--notify", &url]);
    assert_eq!(code, 0, "{sum}\n{err}");
    {
        let got = seen.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].method, "POST");
        assert_eq!(got[0].path, "/services/T000/B000/secret");
        let body: Value = serde_json::from_slice(&got[0].body).unwrap();
        let text = body["text"].as_str().unwrap();
        assert!(
            text.starts_with("kv2jobs: 1 change(s) applied, 0 failed"),
            "{text}"
        );
        assert!(text.contains("create-app /notify/a"), "{text}");
        assert_eq!(body["applied"][0]["target"], "/notify/a");
        assert_eq!(body["consul_index"], 42);
    }
    assert!(!err.contains("secret"), "webhook URLs are secrets: {err}");
    s.settle();
    let (code, _, _) = s.run(&payload, &["--notify", &url]);
    assert_eq!(code, 0);
    assert_eq!(seen.lock().unwrap().len(), 1, "no-op runs send nothing");
    // A failing webhook is listed in errors but the deployment stands.
    let (bad, _) = recorder(500);
    let (code, sum, _) = s.run(
        &s.payload(&[("a.json", app("/notify/a", "y"))]),
        &["--notify", &bad.url()],
    );
    assert_eq!(code, 0, "{sum}");
    assert!(
        sum["errors"][0].as_str().unwrap().contains("--notify #1"),
        "{sum}"
    );
}

#[test]
fn a_consul_event_lists_the_changed_apps_after_a_successful_run() {
    let s = Stack::new("event");
    let (consul, seen) = recorder(200);
    let payload = s.payload(&[
        ("a.json", app("/event/a", "x")),
        ("b.json", app("/event/b", "x")),
    ]);
    let (code, sum, err) = s.run_env(
        &payload,
        &["--fire-event", "apps-changed"],
        &[("CONSUL_HTTP_ADDR", &consul.url())],
    );
    assert_eq!(code, 0, "{sum}\n{err}");
    {
        let got = seen.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].method, "PUT");
        assert_eq!(got[0].path, "/v1/event/fire/apps-changed");
        let p: Value = serde_json::from_slice(&got[0].body).unwrap();
        assert_eq!(p["apps"], json!(["/event/a", "/event/b"]));
        assert_eq!(p["truncated"], false);
    }
    s.settle();
    let (code, _, _) = s.run_env(
        &payload,
        &["--fire-event", "apps-changed"],
        &[("CONSUL_HTTP_ADDR", &consul.url())],
    );
    assert_eq!(code, 0);
    assert_eq!(seen.lock().unwrap().len(), 1, "nothing changed, no event");
}

#[test]
fn bad_configs_are_rejected_while_good_ones_deploy() {
    let s = Stack::new("mixed");
    let mut pairs = vec![
        kv(
            &s.key("good.json"),
            5,
            Some(&app("/mixed/good", "x").to_string()),
        ),
        kv(
            &s.key("broken.json"),
            5,
            Some("{\"id\": \"/mixed/broken\", "),
        ),
        kv(
            &s.key("badid.json"),
            5,
            Some(&app("/mixed/Bad_Id", "x").to_string()),
        ),
        kv(&s.key("nocmd.json"), 5, Some(r#"{"id":"/mixed/nocmd"}"#)),
        kv(
            &s.key("dup1.json"),
            5,
            Some(&app("/mixed/dup", "x").to_string()),
        ),
        kv(
            &s.key("dup2.json"),
            5,
            Some(&app("/mixed/dup", "y").to_string()),
        ),
        kv(
            &s.key("job.json"),
            5,
            Some(r#"{"name":"mixed job","command":"x","schedule":"R//PT1H"}"#),
        ),
        kv(&s.key("sub/"), 5, None),
    ];
    pairs.push(kv(&s.ref_key(), 6, Some("sha")));
    let (code, sum, err) = s.run(&serde_json::to_vec(&pairs).unwrap(), &[]);
    assert_eq!(code, 65, "{sum}\n{err}");
    assert_eq!(action(&sum, "/mixed/good")["status"], "applied");
    // Issue 12 item 5: a rejected config is `failed` (jq select(.status=="failed") finds it).
    for file in [
        "broken.json",
        "badid.json",
        "nocmd.json",
        "dup1.json",
        "dup2.json",
        "job.json",
    ] {
        assert_eq!(
            action(&sum, &s.key(file))["status"],
            "failed",
            "{file}: {sum}"
        );
    }
    let errors: Vec<&str> = sum["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 6, "{errors:?}");
    for (file, why) in [
        ("broken.json", "invalid JSON"),
        ("badid.json", "Bad_Id"),
        ("nocmd.json", "cmd"),
        ("dup1.json", "more than once"),
        ("dup2.json", "more than once"),
        ("job.json", "job name"),
    ] {
        let key = s.key(file);
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&key) && e.contains(why)),
            "{key}: {why} in {errors:?}"
        );
    }
    assert_eq!(action(&sum, &s.key("sub/"))["status"], "skipped");
    assert!(s.live_app("/mixed/dup").is_none());
}

#[test]
fn wait_follows_deployments_and_reports_timeouts() {
    let s = Stack::with(
        "wait",
        MarathonOptions {
            deploy_duration: Duration::from_millis(300),
            ..Default::default()
        },
        ChronosOptions::default(),
    );
    if s.double().is_none() {
        return;
    }
    let (code, sum, err) = s.run(&s.payload(&[("a.json", app("/wait/a", "x"))]), &["--wait"]);
    assert_eq!(code, 0, "{sum}\n{err}");
    let d = action(&sum, "/wait/a")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(d.contains("finished"), "{d}");
    let slow = Stack::with(
        "wait-slow",
        MarathonOptions {
            deploy_duration: Duration::from_secs(30),
            ..Default::default()
        },
        ChronosOptions::default(),
    );
    let (code, sum, _) = slow.run(
        &slow.payload(&[("a.json", app("/wait/slow", "x"))]),
        &["--wait", "--deploy-timeout", "300ms"],
    );
    assert_eq!(code, 75, "{sum}");
    let a = action(&sum, "/wait/slow");
    assert_eq!(a["status"], "failed");
    assert!(
        a["detail"].as_str().unwrap().contains("still running"),
        "{a}"
    );
}

#[test]
fn two_concurrent_runs_do_not_fight() {
    let s = Stack::new("concurrent");
    let payload = s.payload(&[
        ("a.json", app("/concurrent/a", "x")),
        ("b.json", app("/concurrent/b", "x")),
    ]);
    let (r1, r2) = std::thread::scope(|sc| {
        let h1 = sc.spawn(|| s.run(&payload, &[]));
        let h2 = sc.spawn(|| s.run(&payload, &[]));
        (h1.join().unwrap(), h2.join().unwrap())
    });
    assert_eq!(r1.0, 0, "{}\n{}", r1.1, r1.2);
    assert_eq!(r2.0, 0, "{}\n{}", r2.1, r2.2);
    s.settle();
    let writes = s.marathon_writes();
    let (code, sum, _) = s.run(&payload, &[]);
    assert_eq!(code, 0);
    assert_eq!(count(&sum, "unchanged"), 2, "{sum}");
    assert_eq!(s.marathon_writes(), writes);
}

#[test]
fn malformed_payloads_exit_65_without_touching_marathon() {
    let s = Stack::new("malformed");
    for bad in [
        &b"{\"Key\": "[..],
        b"42",
        b"[{\"Key\":\"a.json\",\"Value\":\"!!notbase64\"}]",
    ] {
        let (code, sum, _) = s.run(bad, &[]);
        assert_eq!(code, 65, "{sum}");
        assert!(!sum["errors"].as_array().unwrap().is_empty());
    }
    if let Some(m) = s.double() {
        assert_eq!(m.request_count(), 0);
    }
}

#[test]
fn basic_auth_from_the_environment_and_no_secret_in_output() {
    let s = Stack::with(
        "auth",
        MarathonOptions {
            basic_auth: Some(("admin".into(), "hunter22".into())),
            ..Default::default()
        },
        ChronosOptions::default(),
    );
    if s.double().is_none() {
        return;
    }
    let payload = s.payload(&[("a.json", app("/auth/a", "x"))]);
    let good = [
        ("MARATHON_USERNAME", "admin"),
        ("MARATHON_PASSWORD", "hunter22"),
    ];
    let (code, sum, err) = s.run_env(&payload, &[], &good);
    assert_eq!(code, 0, "{sum}\n{err}");
    let bad = [
        ("MARATHON_USERNAME", "admin"),
        ("MARATHON_PASSWORD", "wrong-pass"),
    ];
    let (code, sum, err) = s.run_env(&payload, &[], &bad);
    assert_eq!(code, 64, "{sum}\n{err}");
    for text in [sum.to_string(), err] {
        assert!(
            !text.contains("hunter22") && !text.contains("wrong-pass"),
            "{text}"
        );
    }
}

#[test]
fn wait_reports_a_deployment_cancelled_by_someone_else_as_failed() {
    let s = Stack::with(
        "cancelled",
        MarathonOptions {
            deploy_duration: Duration::from_secs(2),
            ..Default::default()
        },
        ChronosOptions::default(),
    );
    if s.double().is_none() {
        return;
    }
    let payload = s.payload(&[("a.json", app("/cancelled/a", "ours"))]);
    let (code, sum, _) = std::thread::scope(|sc| {
        let h = sc.spawn(|| s.run(&payload, &["--wait", "--deploy-timeout", "20s"]));
        // Once our deployment runs, an operator forces another definition over it.
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while s.live_app("/cancelled/a").is_none() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        ureq::put(&format!(
            "{}/v2/apps/cancelled/a?force=true",
            s.marathon_url
        ))
        .send_json(app("/cancelled/a", "theirs"))
        .unwrap();
        h.join().unwrap()
    });
    assert_eq!(code, 75, "{sum}");
    let a = action(&sum, "/cancelled/a");
    assert_eq!(a["status"], "failed");
    assert!(
        a["detail"]
            .as_str()
            .unwrap()
            .contains("cancelled or superseded"),
        "{a}"
    );
}

/// `--rollback-on-failure` never rolls back over someone else's newer change: a deployment
/// superseded by an operator's forced PUT is failed, and its rollback skipped.
#[test]
fn rollback_never_undoes_a_change_made_since() {
    let s = Stack::with(
        "superseded",
        MarathonOptions {
            deploy_duration: Duration::from_secs(2),
            ..Default::default()
        },
        ChronosOptions::default(),
    );
    let Some(m) = s.double() else { return };
    let (code, sum, _) = s.run(
        &s.payload(&[("a.json", app("/superseded/a", "v1"))]),
        &["--rollback-on-failure"],
    );
    assert_eq!(code, 64, "--rollback-on-failure needs --wait: {sum}");
    assert_eq!(m.write_count(), 0);
    let (code, _, err) = s.run(&s.payload(&[("a.json", app("/superseded/a", "v1"))]), &[]);
    assert_eq!(code, 0, "{err}");
    m.finish_deployments();
    let payload = s.payload(&[("a.json", app("/superseded/a", "ours"))]);
    let args = ["--wait", "--rollback-on-failure", "--deploy-timeout", "20s"];
    let (code, sum, _) = std::thread::scope(|sc| {
        let h = sc.spawn(|| s.run(&payload, &args));
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while s
            .live_app("/superseded/a")
            .is_none_or(|a| a["cmd"] != "ours")
            && std::time::Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        ureq::put(&format!(
            "{}/v2/apps/superseded/a?force=true",
            s.marathon_url
        ))
        .send_json(app("/superseded/a", "theirs"))
        .unwrap();
        h.join().unwrap()
    });
    assert_eq!(code, 75, "{sum}");
    assert_eq!(action(&sum, "/superseded/a")["status"], "failed", "{sum}");
    let rb = actions(&sum, "rollback-app");
    assert_eq!(rb.len(), 1, "{sum}");
    assert_eq!(rb[0]["status"], "skipped", "{sum}");
    assert!(
        rb[0]["detail"].as_str().unwrap().contains("changed since"),
        "{sum}"
    );
    m.finish_deployments();
    assert_eq!(s.live_app("/superseded/a").unwrap()["cmd"], "theirs");
}

#[test]
fn payloads_without_apps_need_no_marathon_but_apps_do() {
    let s = Stack::new("nomarathon");
    let fixtures = format!("{}/../../fixtures/consul", env!("CARGO_MANIFEST_DIR"));
    for f in [
        "key.json",
        "keyprefix.json",
        "keyprefix-with-folder.json",
        "key-missing.json",
        "keyprefix-empty.json",
    ] {
        let payload = std::fs::read(format!("{fixtures}/{f}")).unwrap();
        let (code, sum, err) = s.run_env(&payload, &["--dry-run"], &[("MARATHON_URL", "")]);
        assert_eq!(code, 0, "{f}: {sum}\n{err}");
        assert_eq!(sum["handler"], "kv2jobs");
    }
    let (code, sum, _) = s.run_env(
        &s.payload(&[("a.json", app("/nomarathon/a", "x"))]),
        &["--dry-run"],
        &[("MARATHON_URL", "")],
    );
    assert_eq!(code, 64, "{sum}");
    assert!(
        sum["errors"][0].as_str().unwrap().contains("MARATHON_URL"),
        "{sum}"
    );
}

#[test]
fn an_unreachable_chronos_does_not_hold_up_marathon() {
    let s = Stack::new("chronosdown");
    let Some(c) = &s.chronos else {
        eprintln!("skipped: needs the Chronos double's controls (CHRONOS_URL is set)");
        return;
    };
    c.faults().set_refuse(true);
    let job = json!({"name":"down-job","command":"x","schedule":"R//PT1H"});
    let (code, sum, err) = s.run(
        &s.payload(&[("a.json", app("/chronosdown/a", "x")), ("j.json", job)]),
        &[],
    );
    c.faults().set_refuse(false);
    assert_eq!(code, 69, "{sum}\n{err}");
    assert_eq!(action(&sum, "/chronosdown/a")["status"], "applied");
    let e = sum["errors"][0].as_str().unwrap();
    assert!(e.contains("1 job config(s) not deployed"), "{e}");
}
