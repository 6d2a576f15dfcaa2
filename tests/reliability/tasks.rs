//! tasks2consul under bad input and faults, against the Marathon and Consul doubles.
//!
//! "Desired state" is computed from the Marathon double: one Consul service `marathon:<task id>:<port>`
//! per port of every running task of a labelled app (handlers/tasks2consul/README.md, "Service ID").

use std::collections::BTreeSet;
use std::time::Duration;

use devstack::consul::{Consul, ConsulOptions};
use devstack::http::Fault;
use devstack::marathon::{Marathon, MarathonOptions};
use serde_json::{json, Value};

use crate::badinput::{decoder_cases, huge_value, refused};
use crate::ensure;
use crate::faults::status;
use crate::harness::{Check, Invocation, Report};

pub struct Stack {
    pub marathon: Marathon,
    pub consul: Consul,
    pub home: tempfile::TempDir,
}

fn app(id: &str, label: &str, n: u64, ports: usize) -> Value {
    let defs: Vec<Value> = (0..ports)
        .map(|_| json!({"port": 0, "protocol": "tcp"}))
        .collect();
    json!({"id": id, "cmd": "sleep 1000", "cpus": 0.01, "mem": 16, "instances": n,
           "labels": {"consul": label, "public": "tag"}, "portDefinitions": defs})
}

impl Stack {
    pub fn start() -> Stack {
        let marathon = Marathon::start(MarathonOptions {
            bind: "127.0.0.1:0".into(),
            deploy_duration: Duration::ZERO,
            hosts: vec!["10.0.0.1".into(), "10.0.0.2".into()],
            ..Default::default()
        })
        .unwrap();
        marathon.seed_apps(vec![
            app("/sami/api", "true", 3, 1),
            app("/sami/web", "frontend", 2, 2),
            json!({"id": "/unlabelled", "cmd": "sleep 1", "instances": 1, "cpus": 0.01, "mem": 16}),
        ]);
        Stack {
            marathon,
            consul: Consul::start(ConsulOptions::default()).unwrap(),
            home: tempfile::tempdir().unwrap(),
        }
    }

    pub fn run(&self, payload: impl Into<Vec<u8>>) -> Invocation {
        Invocation::new("tasks2consul", self.home.path())
            .env("MARATHON_URL", self.marathon.url())
            .env("CONSUL_HTTP_ADDR", self.consul.url())
            .args(["--timeout", "20s"])
            .stdin(payload)
    }

    /// The service ids the running tasks call for.
    pub fn desired(&self) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for a in self.marathon.apps() {
            if a["labels"]["consul"].is_null() {
                continue;
            }
            for t in a["tasks"].as_array().cloned().unwrap_or_default() {
                if t["state"] != "TASK_RUNNING" {
                    continue;
                }
                for p in t["ports"].as_array().cloned().unwrap_or_default() {
                    ids.insert(format!("marathon:{}:{}", t["id"].as_str().unwrap(), p));
                }
            }
        }
        ids
    }

    /// The service ids tasks2consul owns in the catalog (a list, to see duplicates).
    pub fn registered(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .consul
            .catalog_services()
            .into_iter()
            .filter(|s| s.meta.get("external-source").and_then(Value::as_str) == Some("marathon"))
            .map(|s| s.id)
            .collect();
        ids.sort();
        ids
    }

    pub fn snapshot(&self) -> String {
        format!(
            "consul writes {}, marathon writes {}, registered {:?}",
            self.consul.write_count(),
            self.marathon.write_count(),
            self.registered()
        )
    }

    /// Registered = desired, each exactly once.
    pub fn converged(&self) -> Check {
        let desired: Vec<String> = self.desired().into_iter().collect();
        ensure!(
            !desired.is_empty(),
            "no running labelled task in the double"
        );
        let got = self.registered();
        ensure!(
            got == desired,
            "Consul is not converged:\n registered {got:?}\n desired    {desired:?}"
        );
        Ok(())
    }
}

fn event(payload: &[u8]) -> Vec<u8> {
    use base64::Engine;
    serde_json::to_vec(
        &json!([{"ID": "3f2a6d2c-0000-0000-0000-000000000001", "Name": "jobs-deployed",
        "Payload": base64::engine::general_purpose::STANDARD.encode(payload),
        "NodeFilter": "", "ServiceFilter": "", "TagFilter": "", "Version": 1, "LTime": 7}]),
    )
    .unwrap()
}

pub fn bad_input(r: &Report) {
    let s = Stack::start();
    // Decoder failures: exit 65 and not one registration (Consul starts empty, so a run that
    // went ahead with a full sync would show).
    let skip_valid_for_detect = [
        "wrong-watch-type-services",
        "wrong-watch-type-event",
        "wrong-watch-type-nodes",
    ];
    let mut cases = decoder_cases("jobs/main.ref");
    cases.retain(|(name, _, _)| !skip_valid_for_detect.contains(name));
    cases.push(("50MiB-value", huge_value("jobs/main.ref"), vec![]));
    for (name, bytes, needles) in cases {
        if name == "50MiB-value" {
            continue;
        }
        r.case(&format!("bad-input/tasks2consul/{name}"), || {
            let before = s.snapshot();
            let out = s.run(bytes).run();
            let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
            refused(&out, 65, &needles, &before, &s.snapshot())
        });
    }
    // tasks2consul takes any watch type (README "Syncs"): another type's payload is a full sync.
    r.case(
        "bad-input/tasks2consul/other-watch-types-mean-full-sync",
        || {
            let t = Stack::start();
            for body in [
                &br#"{"consul":[],"web":["v1","blue"]}"#[..],
                br#"[{"ID":"n1","Node":"n1","Address":"10.0.0.1","Datacenter":"dc1"}]"#,
            ] {
                t.run(body.to_vec()).run().expect(0, &[])?;
            }
            t.converged()
        },
    );
    // `--events`: a captured Marathon stream that is garbage, truncated or hostile never crashes
    // the loop; undecodable frames trigger a resync (README "--events"), so Consul converges.
    let streams: Vec<(&str, Vec<u8>)> = vec![
        (
            "events-garbage-frames",
            b"event: status_update_event\r\ndata: {not json\r\n\r\n\xff\xfe garbage\n\ndata: {\"eventType\":\"status_update_event\",\"taskId\":\"../../x\",\"appId\":\"-rf\",\"taskStatus\":\"TASK_RUNNING\"}\n\n".to_vec(),
        ),
        ("events-truncated-frame", b"event: status_update_event\r\ndata: {\"eventType\":\"status_upd".to_vec()),
        ("events-50MiB-line", vec![b'x'; 50 << 20]),
    ];
    for (name, bytes) in streams {
        r.case(&format!("bad-input/tasks2consul/{name}"), || {
            let t = Stack::start();
            let out = t.run(bytes).arg("--events").run();
            out.expect(0, &[])?;
            ensure!(out.stdout.len() < 64 * 1024, "stdout echoes the stream");
            t.converged()
        });
    }
    // A huge payload that decodes (a 37 MiB value is no reason to fail a full sync) is read in
    // full; the run must neither crash nor echo it.
    r.case("bad-input/tasks2consul/50MiB-payload-full-sync", || {
        let out = s.run(huge_value("jobs/main.ref")).run();
        out.expect(0, &[])?;
        ensure!(out.stdout.len() < 64 * 1024, "stdout echoes the payload");
        s.converged()
    });
    // Event payloads naming apps with injection attempts: never a scoped sync on them; a full
    // sync is correct (README "Event payload"), the complaint is reported, nothing is removed.
    let ids = [
        ("event-app-dotdot", r#"{"apps":["/sami/../../v2/leader"]}"#),
        ("event-app-control", "{\"apps\":[\"/sami/api\\u0000\\n\"]}"),
        ("event-app-not-string", r#"{"apps":[{"id":"/sami/api"}]}"#),
        ("event-not-json", "'; DROP TABLE apps; --"),
    ];
    for (name, body) in ids {
        r.case(&format!("bad-input/tasks2consul/{name}"), || {
            let out = s.run(event(body.as_bytes())).run();
            out.sane()?;
            ensure!(
                matches!(out.code, Some(0) | Some(65)),
                "want 0 (full sync) or 65\n{}",
                out.show()
            );
            let doc = out.sane()?;
            ensure!(
                !doc["errors"].as_array().unwrap().is_empty(),
                "the bad event is not reported\n{}",
                out.show()
            );
            s.converged()
        });
    }
    // Labels that cannot be service names: that app is refused (65), the others synced.
    r.case("bad-input/tasks2consul/bad-service-names", || {
        let t = Stack::start();
        t.marathon.seed_apps(vec![
            app("/evil/slash", "a/b", 1, 1),
            app("/evil/space", "rm -rf /", 1, 1),
            app("/evil/newline", "x\ny", 1, 1),
        ]);
        let out = t.run(b"null".to_vec()).run();
        out.expect(65, &["/evil/slash"])?;
        let reg = t.registered();
        ensure!(
            reg.iter().all(|id| !id.contains("evil")),
            "an invalid name was registered: {reg:?}"
        );
        let good: Vec<String> = t
            .desired()
            .into_iter()
            .filter(|id| !id.contains("evil"))
            .collect();
        ensure!(
            reg == good,
            "the valid apps were not synced: {reg:?} vs {good:?}"
        );
        Ok(())
    });
}

/// One tasks2consul fault case: inject, run (expect `code`), clear, replay (0, converged),
/// replay again (no write).
fn fault_case(
    r: &Report,
    name: &str,
    presync: bool,
    inject: impl Fn(&Stack) -> usize,
    codes: &[i32],
) {
    r.case(&format!("faults/tasks2consul/{name}"), || {
        let s = Stack::start();
        if presync {
            s.run(b"null".to_vec()).run().expect(0, &[])?;
            s.converged()?;
            // Tasks change while the remote is sick: one dies, one more is started.
            let victim = s.desired().into_iter().next().unwrap();
            let task = victim.split(':').nth(1).unwrap().to_string();
            s.marathon.kill_task(&task, "TASK_FAILED");
            s.marathon.finish_deployments();
        }
        let before = s.registered();
        r.faults(inject(&s));
        let out = s.run(b"null".to_vec()).run();
        out.sane()?;
        ensure!(
            out.code.is_some_and(|c| codes.contains(&c)),
            "want exit {codes:?}\n{}",
            out.show()
        );
        // Never a mass deregistration because a remote failed.
        let after = s.registered();
        let lost: Vec<&String> = before
            .iter()
            .filter(|id| !after.contains(id) && s.desired().contains(*id))
            .collect();
        ensure!(
            lost.is_empty(),
            "services of running tasks were deregistered during a fault: {lost:?}\n{}",
            out.show()
        );
        s.marathon.faults().clear();
        s.consul.faults().clear();
        let replay = s.run(b"null".to_vec()).run();
        replay.expect(0, &[])?;
        s.converged()?;
        let w = s.consul.write_count();
        s.run(b"null".to_vec()).run().expect(0, &[])?;
        ensure!(
            s.consul.write_count() == w,
            "a replay after convergence wrote again"
        );
        Ok(())
    });
}

pub fn faults(r: &Report) {
    let transient: Vec<(&str, Fault)> = vec![
        ("500", status(500, "No cluster leader")),
        ("502", status(502, "Bad Gateway")),
        ("503", status(503, "Service Unavailable")),
        ("reset", Fault::Reset),
        ("slow", Fault::Delay(Duration::from_millis(1200))),
    ];
    for (name, f) in &transient {
        let f2 = f.clone();
        fault_case(
            r,
            &format!("consul-{name}-once"),
            true,
            move |s| {
                s.consul.faults().fail_next(1, f2.clone());
                1
            },
            &[0],
        );
    }
    for (name, f) in &transient {
        let f2 = f.clone();
        // Marathon's client retries 502/503/504 and connection errors; a 500 is Marathon
        // saying it failed (not retried): no deregistration and a non-zero exit either way.
        let codes: &[i32] = if *name == "500" {
            &[0, 1, 69, 75]
        } else {
            &[0]
        };
        fault_case(
            r,
            &format!("marathon-{name}-once"),
            true,
            move |s| {
                s.marathon.faults().fail_next(1, f2.clone());
                1
            },
            codes,
        );
    }
    fault_case(
        r,
        "marathon-refuses",
        true,
        |s| {
            s.marathon.faults().set_refuse(true);
            1
        },
        &[69],
    );
    fault_case(
        r,
        "marathon-200-html-body",
        true,
        |s| {
            s.marathon
                .faults()
                .fail_next(10, status(200, "<html><body>proxy login</body></html>"));
            10
        },
        &[1, 69, 75],
    );
    fault_case(
        r,
        "consul-refuses",
        true,
        |s| {
            s.consul.faults().set_refuse(true);
            1
        },
        &[69],
    );
    fault_case(
        r,
        "consul-register-503-mid-run",
        false,
        |s| {
            // The reads succeed, then every try of every registration (7 x 4 tries) fails. An
            // older Consul (no catalog verbs in /v1/txn): registrations are single writes.
            s.consul
                .faults()
                .fail_always_on("/v1/txn", status(404, "404 page not found"));
            s.consul
                .faults()
                .fail_next_on("/v1/catalog/register", 28, status(503, "rate limited"));
            28
        },
        &[75, 69],
    );
    fault_case(
        r,
        "consul-deregister-500-mid-run",
        true,
        |s| {
            s.consul
                .faults()
                .fail_always_on("/v1/txn", status(404, "404 page not found"));
            s.consul
                .faults()
                .fail_next_on("/v1/catalog/deregister", 8, status(500, "rpc error"));
            8
        },
        &[75, 69],
    );
    fault_case(
        r,
        "consul-txn-503-every-try",
        false,
        |s| {
            // Every try of every transaction answered 503: Consul is unavailable, the run stops
            // (69) and a replay completes it; nothing half-written is reported as done.
            s.consul
                .faults()
                .fail_always_on("/v1/txn", status(503, "rate limited"));
            1
        },
        &[69],
    );
    fault_case(
        r,
        "consul-slow-every-request",
        false,
        |s| {
            s.consul.faults().set_latency(Duration::from_millis(40));
            1
        },
        &[0],
    );
}

/// Five agents run a full sync at once: every service is registered exactly once.
pub fn concurrency(r: &Report) {
    r.case("faults/tasks2consul/5-concurrent-syncs", || {
        let s = Stack::start();
        let outs: Vec<_> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..5)
                .map(|_| {
                    let inv = s.run(b"null".to_vec());
                    sc.spawn(move || inv.run())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        r.faults(5);
        for out in &outs {
            out.expect(0, &[])?;
        }
        s.converged()?;
        let w = s.consul.write_count();
        s.run(b"null".to_vec()).run().expect(0, &[])?;
        ensure!(s.consul.write_count() == w, "replay wrote again");
        Ok(())
    });
}

/// `--lock KEY` reaches a Consul URL path: a key with `..` or control characters is refused
/// before any request, and URL metacharacters are encoded, so the lock lands on exactly that key
/// (the shared consul::lock::run_locked path of every handler).
pub fn lock_keys(r: &Report) {
    let refused = [
        ("dotdot", "../../v1/acl/bootstrap"),
        ("control", "locks/a\nb"),
    ];
    for (name, key) in refused {
        r.case(&format!("bad-input/tasks2consul/lock-key-{name}"), || {
            let s = Stack::start();
            let out = s.run(b"null".to_vec()).args(["--lock", key]).run();
            // A bad flag value: usage (64) or invalid configuration (65, what consul's key check
            // maps to today).
            let doc = out.sane()?;
            ensure!(
                matches!(out.code, Some(64) | Some(65)),
                "want 64 or 65\n{}",
                out.show()
            );
            ensure!(
                doc["errors"].to_string().contains("invalid Consul key"),
                "no message naming the key\n{}",
                out.show()
            );
            ensure!(
                s.consul.write_count() == 0 && s.registered().is_empty(),
                "something was written\n{}",
                out.show()
            );
            Ok(())
        });
    }
    for (name, key) in [
        ("query", "locks/a?dc=evil&token=x"),
        ("fragment-and-percent", "locks/a#b%2e%2e%2F"),
    ] {
        r.case(
            &format!("bad-input/tasks2consul/lock-key-{name}-is-encoded"),
            || {
                let s = Stack::start();
                let out = s.run(b"null".to_vec()).args(["--lock", key]).run();
                out.expect(0, &[])?;
                s.converged()?;
                let keys: Vec<String> = s.consul.kv_list("").into_iter().map(|e| e.key).collect();
                ensure!(
                    keys == [key.to_string()],
                    "the lock landed on other keys: {keys:?} (want only {key:?})\n{}",
                    out.show()
                );
                Ok(())
            },
        );
    }
}
