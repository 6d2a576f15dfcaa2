//! kv2jobs under bad input and faults, against the Marathon, Chronos and Consul doubles.
//!
//! The payload is what git2consul leaves under `jobs/main/` (handlers/kv2jobs/README.md): two
//! Marathon apps, one Chronos job, and the branch's `.ref` key written last.

use std::time::Duration;

use devstack::chronos::{Chronos, ChronosOptions};
use devstack::consul::{Consul, ConsulOptions};
use devstack::http::Fault;
use devstack::marathon::{Marathon, MarathonOptions};
use serde_json::{json, Value};

use crate::badinput::{decoder_cases, huge_prefix, huge_value, refused};
use crate::ensure;
use crate::faults::status;
use crate::gitrepo::{kv, payload};
use crate::harness::{Check, Invocation, Report};

pub const PREFIX: &str = "jobs/main/";

pub struct Stack {
    pub marathon: Marathon,
    pub chronos: Chronos,
    pub consul: Consul,
    pub home: tempfile::TempDir,
}

fn api(tag: &str) -> Value {
    json!({"id": "/sami/api", "instances": 2, "cpus": 0.25, "mem": 128,
           "container": {"type": "DOCKER", "docker": {"image": format!("registry.local:5000/sami/api:{tag}")}},
           "labels": {"consul": "true"}})
}

fn web() -> Value {
    json!({"id": "/sami/web", "instances": 1, "cpus": 0.1, "mem": 64, "cmd": "python -m http.server $PORT0"})
}

fn report_job() -> Value {
    json!({"name": "report", "schedule": "R/2026-01-01T00:00:00Z/PT1H", "command": "python report.py",
           "owner": "ops@example.org", "epsilon": "PT60S",
           "container": {"type": "DOCKER", "image": "python:3.11"}})
}

/// The git2consul mirror of the desired state (configs, then `.ref` with the highest index).
pub fn desired_payload(tag: &str) -> Vec<u8> {
    payload(&desired_entries(tag))
}

fn desired_entries(tag: &str) -> Vec<Value> {
    vec![
        kv(
            &format!("{PREFIX}marathon/api.json"),
            api(tag).to_string().as_bytes(),
            10,
        ),
        kv(
            &format!("{PREFIX}marathon/web.json"),
            web().to_string().as_bytes(),
            11,
        ),
        kv(
            &format!("{PREFIX}chronos/report.json"),
            report_job().to_string().as_bytes(),
            12,
        ),
        kv(
            "jobs/main.ref",
            b"0123456789abcdef0123456789abcdef01234567",
            13,
        ),
    ]
}

impl Stack {
    pub fn start() -> Stack {
        Stack {
            marathon: Marathon::start(MarathonOptions {
                bind: "127.0.0.1:0".into(),
                deploy_duration: Duration::ZERO,
                hosts: vec!["10.0.0.1".into()],
                ..Default::default()
            })
            .unwrap(),
            chronos: Chronos::start(ChronosOptions {
                bind: "127.0.0.1:0".into(),
                api_v2: false,
                basic_auth: None,
            })
            .unwrap(),
            consul: Consul::start(ConsulOptions::default()).unwrap(),
            home: tempfile::tempdir().unwrap(),
        }
    }

    pub fn run(&self, payload: impl Into<Vec<u8>>) -> Invocation {
        Invocation::new("kv2jobs", self.home.path())
            .env("MARATHON_URL", self.marathon.url())
            .env("CHRONOS_URL", self.chronos.url())
            .env("CONSUL_HTTP_ADDR", self.consul.url())
            .args([
                "--prefix",
                PREFIX,
                "--timeout",
                "20s",
                "--deploy-timeout",
                "3s",
            ])
            .stdin(payload)
    }

    pub fn writes(&self) -> (u64, u64, u64) {
        (
            self.marathon.write_count(),
            self.chronos.write_count(),
            self.consul.write_count(),
        )
    }

    pub fn snapshot(&self) -> String {
        let mut apps: Vec<String> = self
            .marathon
            .apps()
            .iter()
            .map(|a| a["id"].to_string())
            .collect();
        apps.sort();
        let mut jobs: Vec<String> = self
            .chronos
            .jobs()
            .iter()
            .map(|j| j["name"].to_string())
            .collect();
        jobs.sort();
        format!(
            "writes (marathon, chronos, consul) {:?}, apps {apps:?}, jobs {jobs:?}",
            self.writes()
        )
    }

    /// Marathon runs exactly /sami/api (at `tag`) and /sami/web, Chronos exactly `report`.
    pub fn converged(&self, tag: &str) -> Check {
        let apps = self.marathon.apps();
        let mut ids: Vec<&str> = apps.iter().filter_map(|a| a["id"].as_str()).collect();
        ids.sort();
        ensure!(
            ids == ["/sami/api", "/sami/web"],
            "Marathon apps {ids:?}, want /sami/api and /sami/web once each"
        );
        let image = self.marathon.app("/sami/api").unwrap()["container"]["docker"]["image"].clone();
        ensure!(
            image == format!("registry.local:5000/sami/api:{tag}"),
            "/sami/api runs {image}, want tag {tag}"
        );
        let jobs = self.chronos.jobs();
        let names: Vec<&str> = jobs.iter().filter_map(|j| j["name"].as_str()).collect();
        ensure!(names == ["report"], "Chronos jobs {names:?}, want [report]");
        Ok(())
    }
}

/// One invalid config value (valid JSON or not) under a plausible key.
fn invalid_configs() -> Vec<(&'static str, String, &'static str)> {
    let app = |v: Value| v.to_string();
    vec![
        (
            "app-id-uppercase",
            app(json!({"id": "/Sami/API", "cmd": "x"})),
            "/Sami/API",
        ),
        (
            "app-id-leading-dash",
            app(json!({"id": "-rf", "cmd": "x"})),
            "-rf",
        ),
        (
            "app-id-control",
            app(json!({"id": "/sami/a\u{7}pi", "cmd": "x"})),
            "id",
        ),
        (
            "app-id-query",
            app(json!({"id": "/sami/api?force=true", "cmd": "x"})),
            "id",
        ),
        (
            "app-id-ends-restart",
            app(json!({"id": "/sami/restart", "cmd": "x"})),
            "restart",
        ),
        ("app-no-cmd", app(json!({"id": "/sami/nocmd"})), "cmd"),
        (
            "app-instances-string",
            app(json!({"id": "/sami/n", "cmd": "x", "instances": "three"})),
            "instances",
        ),
        (
            "app-label-not-string",
            app(json!({"id": "/sami/l", "cmd": "x", "labels": {"a": 1}})),
            "label",
        ),
        (
            "job-name-injection",
            app(
                json!({"name": "r; rm -rf /", "command": "x", "schedule": "R/2026-01-01T00:00:00Z/PT1H"}),
            ),
            "name",
        ),
        (
            "job-bad-schedule",
            app(json!({"name": "r2", "command": "x", "schedule": "$(reboot)"})),
            "schedule",
        ),
        (
            "job-schedule-and-parents",
            app(
                json!({"name": "r3", "command": "x", "schedule": "R/2026-01-01T00:00:00Z/PT1H", "parents": ["report"]}),
            ),
            "parents",
        ),
        (
            "job-unknown-parent",
            app(json!({"name": "r4", "command": "x", "parents": ["nope"]})),
            "nope",
        ),
        (
            "job-no-schedule",
            app(json!({"name": "r5", "command": "x"})),
            "schedule",
        ),
        (
            "invalid-json-value",
            "{\"id\": \"/sami/api\", ".into(),
            "json",
        ),
        ("empty-value", String::new(), "empty"),
    ]
}

pub fn bad_input(r: &Report) {
    let s = Stack::start();
    let key = format!("{PREFIX}marathon/api.json");
    let mut cases = decoder_cases(&key);
    cases.push((
        "50MiB-prefix-bad-base64",
        huge_prefix(&key),
        vec!["base64".into()],
    ));
    for (name, bytes, needles) in cases {
        r.case(&format!("bad-input/kv2jobs/{name}"), || {
            let before = s.snapshot();
            let out = s.run(bytes).run();
            let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
            refused(&out, 65, &needles, &before, &s.snapshot())
        });
    }
    r.case("bad-input/kv2jobs/50MiB-config-value", || {
        let before = s.snapshot();
        let out = s.run(huge_value(&key)).run();
        refused(&out, 65, &[&key], &before, &s.snapshot())
    });
    r.case("bad-input/kv2jobs/invalid-utf8-config-value", || {
        let before = s.snapshot();
        let out = s
            .run(payload(&[kv(&key, b"{\"id\":\"/sami/\xff\"}", 5)]))
            .run();
        refused(&out, 65, &[&key], &before, &s.snapshot())
    });
    // Each invalid config alone: 65, named by its key, nothing written anywhere.
    for (name, value, needle) in invalid_configs() {
        r.case(&format!("bad-input/kv2jobs/{name}"), || {
            let k = format!("{PREFIX}bad/{name}.json");
            let before = s.snapshot();
            let out = s.run(payload(&[kv(&k, value.as_bytes(), 5)])).run();
            refused(&out, 65, &[&k, needle], &before, &s.snapshot())
        });
    }
    // Marathon itself accepts `.`/`..` segments in app ids and canonicalizes them
    // (shared/reference Marathon "App id rules", state/PathId.scala): kv2jobs may do the same, but
    // no `..` may reach a request path or an app id.
    r.case("bad-input/kv2jobs/app-id-dotdot-is-canonicalized", || {
        let k = format!("{PREFIX}bad/dotdot.json");
        let out = s
            .run(payload(&[kv(
                &k,
                br#"{"id":"/sami/../../v2/leader","cmd":"x"}"#,
                5,
            )]))
            .run();
        let doc = out.sane()?;
        ensure!(
            matches!(out.code, Some(0) | Some(65)),
            "want 0 or 65
{}",
            out.show()
        );
        ensure!(
            !doc["actions"].to_string().contains("/.."),
            "an id with `..` reached an action
{}",
            out.show()
        );
        let ids: Vec<Value> = s.marathon.apps().iter().map(|a| a["id"].clone()).collect();
        ensure!(
            !ids.iter().any(|id| id.to_string().contains("..")),
            "Marathon holds an app id with `..`: {ids:?}"
        );
        Ok(())
    });
    // Valid JSON that is no job config at all is skipped (README "Keys"), not deployed.
    r.case("bad-input/kv2jobs/json-array-value-is-skipped", || {
        let k = format!("{PREFIX}bad/array.json");
        let before = s.snapshot();
        let out = s.run(payload(&[kv(&k, b"[1,2,3]", 5)])).run();
        out.expect(0, &[])?;
        ensure!(
            before == s.snapshot(),
            "STATE CHANGED
{}",
            out.show()
        );
        Ok(())
    });
    // Keys that must not be trusted as paths or options.
    let keys = [
        ("key-dotdot", format!("{PREFIX}../dev/api.json")),
        ("key-control", format!("{PREFIX}marathon/a\u{7}pi.json")),
        (
            "key-newline",
            format!("{PREFIX}marathon/api.json\nshipwatch.managed-by"),
        ),
        ("key-leading-dash", "-jobs/main/api.json".to_string()),
    ];
    for (name, k) in keys {
        r.case(&format!("bad-input/kv2jobs/{name}"), || {
            let before = s.snapshot();
            let out = s
                .run(payload(&[kv(&k, web().to_string().as_bytes(), 5)]))
                .run();
            // Either refused (65) or not a config under --prefix (skipped, 0): never deployed.
            out.sane()?;
            ensure!(
                matches!(out.code, Some(0) | Some(65)),
                "want 0 or 65\n{}",
                out.show()
            );
            ensure!(
                before == s.snapshot(),
                "STATE CHANGED by key {k:?}\n{}",
                out.show()
            );
            Ok(())
        });
    }
    // One bad config among good ones: the good ones deploy, the bad one is named, exit 65, and
    // a replay after fixing it converges without duplicates.
    r.case("bad-input/kv2jobs/one-bad-config-among-good", || {
        let t = Stack::start();
        let mut entries = desired_entries("1.4.1");
        entries.insert(
            0,
            kv(
                &format!("{PREFIX}marathon/evil.json"),
                br#"{"id":"/Evil","cmd":"x"}"#,
                9,
            ),
        );
        let out = t.run(payload(&entries)).run();
        out.expect(65, &["marathon/evil.json"])?;
        t.converged("1.4.1")?;
        let out = t.run(desired_payload("1.4.1")).run();
        out.expect(0, &[])?;
        let w = t.writes();
        t.run(desired_payload("1.4.1")).run().expect(0, &[])?;
        ensure!(
            t.writes() == w,
            "replay wrote again: {:?} -> {:?}",
            w,
            t.writes()
        );
        t.converged("1.4.1")
    });
}

/// One kv2jobs fault case: deploy 1.4.1 cleanly (unless `fresh`), inject, deliver 1.4.2 (expect
/// one of `codes`), clear, replay (0, converged on 1.4.2), replay again (no write).
fn fault_case(
    r: &Report,
    name: &str,
    fresh: bool,
    inject: impl Fn(&Stack) -> usize,
    codes: &[i32],
    extra: &[&str],
) {
    r.case(&format!("faults/kv2jobs/{name}"), || {
        let s = Stack::start();
        if !fresh {
            s.run(desired_payload("1.4.1")).run().expect(0, &[])?;
            s.converged("1.4.1")?;
        }
        r.faults(inject(&s));
        let out = s
            .run(desired_payload("1.4.2"))
            .args(extra.iter().copied())
            .run();
        out.sane()?;
        ensure!(
            out.code.is_some_and(|c| codes.contains(&c)),
            "want exit {codes:?}\n{}",
            out.show()
        );
        s.marathon.faults().clear();
        s.chronos.faults().clear();
        s.consul.faults().clear();
        s.marathon.finish_deployments();
        let replay = s
            .run(desired_payload("1.4.2"))
            .args(extra.iter().copied())
            .run();
        replay.expect(0, &[])?;
        s.converged("1.4.2")?;
        let w = s.writes();
        s.run(desired_payload("1.4.2")).run().expect(0, &[])?;
        ensure!(
            s.writes() == w,
            "a replay after convergence wrote again: {:?} -> {:?}",
            w,
            s.writes()
        );
        Ok(())
    });
}

pub fn faults(r: &Report) {
    let once: Vec<(&str, Fault, &[i32])> = vec![
        ("500", status(500, "Internal Server Error"), &[0, 75, 1]),
        ("502", status(502, "Bad Gateway"), &[0]),
        ("503", status(503, "Service Unavailable"), &[0]),
        ("reset", Fault::Reset, &[0]),
        ("slow", Fault::Delay(Duration::from_millis(1200)), &[0]),
    ];
    for (name, f, codes) in &once {
        let f1 = f.clone();
        fault_case(
            r,
            &format!("marathon-{name}-once"),
            false,
            move |s| {
                s.marathon.faults().fail_next(1, f1.clone());
                1
            },
            codes,
            &[],
        );
        let f2 = f.clone();
        fault_case(
            r,
            &format!("chronos-{name}-once"),
            false,
            move |s| {
                s.chronos.faults().fail_next(1, f2.clone());
                1
            },
            codes,
            &[],
        );
    }
    // A write to one app fails through every retry; the other app and the job still deploy.
    fault_case(
        r,
        "marathon-put-503-mid-run",
        false,
        |s| {
            s.marathon.faults().fail_next_on(
                "/v2/apps/sami/api",
                8,
                status(503, "Service Unavailable"),
            );
            8
        },
        &[75, 69],
        // Per-app writes (a bulk PUT /v2/apps would not meet these per-app faults).
        &["--batch-size", "1"],
    );
    fault_case(
        r,
        "marathon-put-409-locked",
        false,
        |s| {
            s.marathon.faults().fail_next_on(
                "/v2/apps/sami/api",
                2,
                status(
                    409,
                    r#"{"message":"App is locked by one or more deployments. Override with the option '?force=true'.","deployments":[{"id":"5b2c1c1e-0000-0000-0000-000000000001"}]}"#,
                ),
            );
            2
        },
        &[0, 75],
        // Per-app writes (a bulk PUT /v2/apps would not meet these per-app faults).
        &["--batch-size", "1"],
    );
    fault_case(
        r,
        "marathon-put-409-locked-first-deploy",
        true,
        |s| {
            s.marathon.faults().fail_next_on(
                "/v2/apps/sami/web",
                50,
                status(
                    409,
                    r#"{"message":"App is locked by one or more deployments."}"#,
                ),
            );
            50
        },
        &[75],
        // Per-app writes (a bulk PUT /v2/apps would not meet these per-app faults).
        &["--batch-size", "1"],
    );
    fault_case(
        r,
        "marathon-refuses",
        false,
        |s| {
            s.marathon.faults().set_refuse(true);
            1
        },
        &[69],
        &[],
    );
    fault_case(
        r,
        "chronos-refuses",
        false,
        |s| {
            s.chronos.faults().set_refuse(true);
            1
        },
        &[69, 0],
        &[],
    );
    fault_case(
        r,
        "chronos-post-500-mid-run",
        true,
        |s| {
            s.chronos.faults().fail_next_on(
                "/v1/scheduler/iso8601",
                8,
                status(500, "java.lang.NullPointerException"),
            );
            8
        },
        &[75],
        &[],
    );
    fault_case(
        r,
        "marathon-slow-every-request",
        false,
        |s| {
            s.marathon.faults().set_latency(Duration::from_millis(60));
            1
        },
        &[0],
        &[],
    );
    fault_case(
        r,
        "consul-event-fire-503",
        false,
        |s| {
            s.consul
                .faults()
                .fail_next_on("/v1/event/fire", 8, status(503, "No cluster leader"));
            8
        },
        &[0, 69, 75, 1],
        &["--fire-event", "shipwatch-deployed"],
    );
}

/// Five agents deliver the same payload at once (Consul re-delivery, several agents): all succeed,
/// the state converges once, and a replay writes nothing. Then the same with `--lock`.
pub fn concurrency(r: &Report) {
    for lock in [false, true] {
        let name = if lock {
            "5-concurrent-runs-with-lock"
        } else {
            "5-concurrent-runs"
        };
        r.case(&format!("faults/kv2jobs/{name}"), || {
            let s = Stack::start();
            let outs: Vec<_> = std::thread::scope(|sc| {
                let hs: Vec<_> = (0..5)
                    .map(|_| {
                        let mut inv = s.run(desired_payload("1.4.2"));
                        if lock {
                            inv = inv.args(["--lock", "shipwatch/locks/kv2jobs"]);
                        }
                        sc.spawn(move || inv.run())
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            r.faults(5);
            for out in &outs {
                out.expect(0, &[])?;
            }
            s.marathon.finish_deployments();
            s.converged("1.4.2")?;
            let w = s.writes();
            s.run(desired_payload("1.4.2")).run().expect(0, &[])?;
            ensure!(
                s.writes() == w,
                "replay after concurrent runs wrote: {w:?} -> {:?}",
                s.writes()
            );
            Ok(())
        });
    }
}

/// Payloads that must never delete anything, even with `--prune` (README "Ownership and prune"):
/// nothing to read, everything rejected, or git2consul caught mid-sync.
pub fn prune_guards(r: &Report) {
    let mut all_rejected = desired_entries("1.4.2");
    for e in all_rejected.iter_mut().take(3) {
        e["Value"] = Value::String(b64(b"{\"id\": \"/sami/api\", "));
    }
    let mut mid_sync = desired_entries("1.4.3");
    // git2consul wrote api.json after the .ref it is about to replace: not a consistent snapshot.
    mid_sync[0]["ModifyIndex"] = json!(99);
    let only_web = payload(&[
        kv(
            &format!("{PREFIX}marathon/web.json"),
            web().to_string().as_bytes(),
            11,
        ),
        kv(
            "jobs/main.ref",
            b"fedcba9876543210fedcba9876543210fedcba98",
            13,
        ),
    ]);
    // A rename in progress: api.json deleted after the .ref (CONSUL_INDEX 14 is carried by no
    // key), the new key not written yet.
    let renaming = payload(&desired_entries("1.4.2")[1..]);
    // (name, payload, accepted exit codes, extra flags)
    type Case<'a> = (&'a str, Vec<u8>, &'a [i32], &'a [&'a str]);
    let cases: Vec<Case> = vec![
        ("null-payload", b"null".to_vec(), &[0], &[]),
        (
            "null-payload-allow-empty",
            b"null".to_vec(),
            &[0],
            &["--allow-empty"],
        ),
        ("empty-array", b"[]".to_vec(), &[0], &[]),
        (
            "only-folder-keys",
            payload(&[kv(PREFIX, b"", 3)]),
            &[0],
            &[],
        ),
        (
            "only-ref-key",
            payload(&desired_entries("1.4.2")[3..]),
            &[0],
            &[],
        ),
        ("every-config-rejected", payload(&all_rejected), &[65], &[]),
        // Issue 12 item 3: files newer than the .ref wait for git2consul (--ref-wait) and act on
        // Consul's snapshot, or exit 75 naming them (it was exit 0, "sync in progress", forever).
        // This Consul double holds none of these keys: the .ref's blocking read answers 404 and
        // the re-read snapshot is empty (0, nothing done); handlers/kv2jobs/tests/guards.rs has
        // the waits against a Consul that holds the sync.
        (
            "git2consul-mid-sync",
            payload(&mid_sync),
            &[0, 75],
            &["--ref-wait", "200ms"],
        ),
        ("rename-in-progress", renaming, &[0], &[]),
        (
            "single-key-watch",
            serde_json::to_vec(&desired_entries("1.4.2")[1]).unwrap(),
            &[0],
            &[],
        ),
    ];
    for (name, body, codes, extra) in cases {
        r.case(&format!("bad-input/kv2jobs/prune-guard-{name}"), || {
            let s = Stack::start();
            s.run(desired_payload("1.4.2")).run().expect(0, &[])?;
            s.marathon.finish_deployments();
            let before = s.snapshot();
            let out = s
                .run(body.clone())
                .arg("--prune")
                .args(extra.iter().copied())
                .env("CONSUL_INDEX", "14")
                .run();
            out.sane()?;
            ensure!(
                out.code.is_some_and(|c| codes.contains(&c)),
                "want exit {codes:?}\n{}",
                out.show()
            );
            ensure!(
                before == s.snapshot(),
                "STATE CHANGED (something deleted or written):\nbefore: {before}\nafter:  {}\n{}",
                s.snapshot(),
                out.show()
            );
            s.converged("1.4.2")
        });
    }
    // Positive control: a consistent payload without api.json and the job prunes exactly those
    // (CONSUL_INDEX is the .ref's, as the watch reports after git2consul's sync).
    r.case(
        "bad-input/kv2jobs/prune-guard-control-prunes-removed-configs",
        || {
            let s = Stack::start();
            s.run(desired_payload("1.4.2")).run().expect(0, &[])?;
            s.marathon.finish_deployments();
            let out = s
                .run(only_web.clone())
                .arg("--prune")
                .env("CONSUL_INDEX", "13")
                .run();
            out.expect(0, &[])?;
            let ids: Vec<Value> = s.marathon.apps().iter().map(|a| a["id"].clone()).collect();
            ensure!(
                ids == [json!("/sami/web")],
                "after prune: {ids:?}\n{}",
                out.show()
            );
            ensure!(
                s.chronos.jobs().is_empty(),
                "the job was not pruned\n{}",
                out.show()
            );
            Ok(())
        },
    );
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
