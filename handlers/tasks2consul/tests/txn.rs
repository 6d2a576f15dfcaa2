//! Issue 13 item 4: a full sync writes the catalog through `PUT /v1/txn` (at most 128
//! operations per transaction, as Consul 1.14+; a Consul before 1.14 that answers 413 "too many
//! operations (N > 64)" gets 64 from then on), reports a failed operation for its registration
//! only, and falls back to single registrations on a Consul without catalog transactions. Run
//! through the binary against the devstack doubles.

mod common;

use common::*;
use serde_json::{json, Value};

/// 100 apps x 10 instances on 20 hosts.
fn big_stack() -> Stack {
    big_stack_on(Default::default())
}

/// [`big_stack`] with these Consul double options (its transaction limit).
fn big_stack_on(consul: devstack::consul::ConsulOptions) -> Stack {
    let hosts = (1..=20).map(|i| format!("10.0.1.{i}")).collect();
    let s = Stack::doubles(
        devstack::marathon::MarathonOptions {
            hosts,
            ..Default::default()
        },
        consul,
    );
    let apps = (0..100)
        .map(|i| web_app(&format!("/fleet/app{i:03}"), "true", 10, 1))
        .collect();
    s.create_apps(apps);
    s
}

fn app_ids() -> Vec<String> {
    (0..100).map(|i| format!("/fleet/app{i:03}")).collect()
}

/// What a registration looks like in Consul, without the indexes (which differ run to run).
fn registrations(s: &Stack) -> Vec<Value> {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.retain(|k, _| !k.ends_with("Index"));
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut out: Vec<Value> = s
        .consul_entries()
        .into_iter()
        .filter(|e| e["Service"]["Meta"]["external-source"] == "marathon")
        .map(|mut e| {
            strip(&mut e);
            // Node IDs are the only per-run value left.
            e["Node"]["ID"] = Value::Null;
            e
        })
        .collect();
    out.sort_by_key(|e| e["Service"]["ID"].as_str().unwrap_or_default().to_string());
    out
}

fn post_fault(s: &Stack, fault: Value) {
    let c = client("consul", &s.consul_url);
    let r = c
        .send(runtime::http::HttpRequest::new("POST", "/_devstack/faults").json(&fault))
        .unwrap();
    assert!(r.is_success(), "{}", r.text());
}

#[test]
fn a_first_sync_of_1000_tasks_writes_in_transactions_and_a_replay_writes_nothing() {
    let s = big_stack();
    let ids: Vec<String> = app_ids();
    let apps: Vec<&str> = ids.iter().map(String::as_str).collect();
    let before = s.consul_writes().unwrap();
    let (code, summary, err) = s.run("null", &["--timeout", "60s"]);
    assert_eq!(code, 0, "{err}");
    let expected = s.expected_ids(&apps);
    assert_eq!(expected.len(), 1000);
    assert_eq!(targets(&summary, "register", "applied"), expected);
    assert_eq!(s.registered_ids(), expected);
    // 1,000 services + 1,000 checks + 20 nodes = 2,020 operations: at least 16 transactions of
    // 128 (Consul 1.14+); a node's registrations share its Node operation, so few more are
    // needed.
    let writes = s.consul_writes().unwrap() - before;
    eprintln!("first sync of 1000 tasks: {writes} Consul write requests");
    assert!(writes >= 2020_u64.div_ceil(128), "{writes}");
    assert!(
        writes <= 2020_u64.div_ceil(128) + 3,
        "{writes} write requests for 1,000 registrations"
    );
    let c = s.consul.as_ref().unwrap();
    assert_eq!(c.txn_too_many_ops_count(), 0, "never over 128");
    let nodes: Vec<String> = s
        .node_names()
        .into_iter()
        .filter(|n| n.starts_with("marathon-"))
        .collect();
    assert_eq!(nodes.len(), 20);
    let txn_regs = registrations(&s);
    assert_eq!(txn_regs.len(), 1000);
    for e in &txn_regs {
        assert_eq!(e["Node"]["Meta"]["external-node"], "true", "{e}");
        assert_eq!(e["Node"]["Meta"]["marathon-cluster"], "default", "{e}");
        assert_eq!(e["Checks"][0]["Status"], "passing", "{e}");
        assert_eq!(
            e["Checks"][0]["ServiceName"], e["Service"]["Service"],
            "{e}"
        );
    }

    // Replay: nothing to write.
    let before = s.consul_writes().unwrap();
    let (code, summary, _) = s.run("null", &["--timeout", "60s"]);
    assert_eq!(code, 0);
    assert_eq!(count(&summary, "applied"), 0);
    assert_eq!(count(&summary, "unchanged"), 1000);
    assert_eq!(s.consul_writes().unwrap(), before);

    // The same fleet on a Consul without catalog transactions (404): registered by single
    // writes, exactly as the transactions registered it.
    let old = big_stack();
    post_fault(
        &old,
        json!({"path": "/v1/txn", "count": "always", "status": 404, "body": "404 page not found\n"}),
    );
    let (code, summary, err) = old.run("null", &["--timeout", "60s"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(targets(&summary, "register", "applied").len(), 1000);
    assert_eq!(
        old.consul_writes().unwrap(),
        1000,
        "one request per registration"
    );
    assert_eq!(
        err.matches("cannot take catalog writes in transactions")
            .count(),
        1,
        "said once: {err}"
    );
    let single_regs = registrations(&old);
    assert_eq!(single_regs.len(), 1000);
    // Task IDs differ between the two Marathons; compare what each registration carries.
    let shape = |e: &Value| {
        let mut e = e.clone();
        e["Service"]["ID"] = Value::Null;
        e["Service"]["Meta"]["marathon-task-id"] = Value::Null;
        e["Service"]["Meta"]["marathon-app-version"] = Value::Null;
        e["Service"]["Port"] = Value::Null;
        e["Checks"][0]["CheckID"] = Value::Null;
        e["Checks"][0]["ServiceID"] = Value::Null;
        e
    };
    let mut a: Vec<Value> = txn_regs.iter().map(shape).collect();
    let mut b: Vec<Value> = single_regs.iter().map(shape).collect();
    a.sort_by_key(|v| v.to_string());
    b.sort_by_key(|v| v.to_string());
    assert_eq!(a, b);
}

#[test]
fn a_consul_before_1_14_with_64_operations_is_adopted_after_one_413_and_everything_is_registered() {
    // A Consul before 1.14 takes 64 operations per transaction (hashicorp/consul PR #14599
    // raised it to 128): the first transaction of 128 is answered 413 "Transaction contains too
    // many operations (128 > 64)", and that limit is used from then on.
    let s = big_stack_on(devstack::consul::ConsulOptions {
        max_txn_ops: 64,
        ..Default::default()
    });
    let ids: Vec<String> = app_ids();
    let apps: Vec<&str> = ids.iter().map(String::as_str).collect();
    let (code, summary, err) = s.run("null", &["--timeout", "60s"]);
    assert_eq!(code, 0, "{err}");
    let expected = s.expected_ids(&apps);
    assert_eq!(targets(&summary, "register", "applied"), expected);
    assert_eq!(count(&summary, "failed"), 0, "{summary}");
    assert_eq!(s.registered_ids(), expected);
    let c = s.consul.as_ref().unwrap();
    assert_eq!(c.txn_too_many_ops_count(), 1, "exactly one 413: {err}");
    let writes = c.write_count();
    eprintln!("first sync of 1000 tasks on a 64-operation Consul: {writes} write requests");
    assert!(
        writes <= 2020_u64.div_ceil(64) + 4,
        "{writes} write requests: transactions of 64, not single writes"
    );
    assert_eq!(
        err.matches("Consul takes at most 64 operations per transaction")
            .count(),
        1,
        "said once: {err}"
    );
    assert!(!err.contains("one by one"), "{err}");
}

#[test]
fn a_failed_operation_fails_its_registration_and_the_others_are_written_alone() {
    let s = Stack::start();
    let Some(c) = s.consul.as_ref() else {
        eprintln!("bad operation: skipped against real servers");
        return;
    };
    // An app id so long that its meta value exceeds Consul's 512 characters: Consul refuses
    // that service ("Invalid Service Meta"), in a transaction and alone.
    let long = format!("/{}", "a".repeat(520));
    s.create_apps(vec![
        web_app(&long, "long", 1, 1),
        web_app("/ok", "true", 3, 1),
    ]);
    let (code, summary, err) = s.run("null", &[]);
    assert_eq!(code, 75, "{summary}\n{err}");
    let failed = with_status(&summary, "failed");
    assert_eq!(failed.len(), 1, "{summary}");
    assert!(failed[0]["target"].as_str().unwrap().contains("aaaa"));
    let detail = failed[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("Value is too long (limit: 512 characters)"),
        "{detail}"
    );
    assert!(
        detail.contains("transaction writing"),
        "refused inside a transaction: {detail}"
    );
    let ok = s.expected_ids(&["/ok"]);
    assert_eq!(targets(&summary, "register", "applied"), ok);
    assert_eq!(s.registered_ids(), ok);
    // The rolled-back transaction wrote nothing; the 3 others were written one by one.
    assert_eq!(c.write_count(), 3);
}

#[test]
fn a_consul_that_ignores_catalog_operations_gets_single_writes() {
    let s = Stack::start();
    let Some(c) = s.consul.as_ref() else {
        eprintln!("fallback: skipped against real servers");
        return;
    };
    s.create_apps(vec![
        web_app("/a", "true", 2, 1),
        web_app("/b", "true", 2, 1),
    ]);
    // A Consul before 1.4 drops the operations it does not know and answers an empty read.
    c.faults().fail_always_on(
        "/v1/txn",
        devstack::http::Fault::Answer {
            status: 200,
            content_type: "application/json".into(),
            body: r#"{"Results":[],"Errors":null}"#.into(),
        },
    );
    let (code, summary, err) = s.run("null", &[]);
    assert_eq!(code, 0, "{summary}\n{err}");
    assert!(err.contains("ignores the catalog verbs"), "{err}");
    let want = s.expected_ids(&["/a", "/b"]);
    assert_eq!(targets(&summary, "register", "applied"), want);
    assert_eq!(s.registered_ids(), want);
    assert_eq!(c.write_count(), 4);
}

#[test]
fn deregistrations_go_through_transactions_too() {
    let s = Stack::start();
    let Some(c) = s.consul.as_ref() else {
        return;
    };
    s.create_apps(vec![
        web_app("/a", "true", 4, 1),
        web_app("/b", "true", 4, 1),
    ]);
    let (code, _, err) = s.run("null", &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(c.write_count(), 1, "8 registrations in one transaction");
    s.update_app("/a", json!({"instances": 1}));
    let before = c.write_count();
    let (code, summary, err) = s.run("null", &[]);
    assert_eq!(code, 0, "{summary}\n{err}");
    assert_eq!(targets(&summary, "deregister", "applied").len(), 3);
    assert_eq!(
        c.write_count() - before,
        1,
        "3 deregistrations in one transaction"
    );
    assert_eq!(s.registered_ids(), s.expected_ids(&["/a", "/b"]));
}
