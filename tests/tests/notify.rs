//! Issue 16: teams are told. `--notify-config` routes one message per team per run to its chat
//! channel (Slack-compatible webhook) and its email address (SMTP), each about its own apps only;
//! delivery failures never change the exit code and never print a secret.

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use devstack::marathon::{Marathon, MarathonOptions};
use devstack::sinks::{SmtpSink, WebhookSink};
use serde_json::{json, Value};

fn kv(key: &str, index: u64, value: &str) -> Value {
    json!({"Key": key, "CreateIndex": index, "ModifyIndex": index, "LockIndex": 0, "Flags": 0,
           "Value": base64::engine::general_purpose::STANDARD.encode(value), "Session": ""})
}

fn app(id: &str, image: &str, team: &str) -> Value {
    json!({"id": id, "cmd": "serve", "cpus": 0.1, "mem": 64, "instances": 1,
           "labels": {"team": team},
           "container": {"type": "DOCKER", "docker": {"image": image}}})
}

/// A git2consul snapshot of `jobs/main/` holding `apps`, then its `.ref`.
fn payload(apps: &[(&str, Value)]) -> Vec<u8> {
    let mut pairs: Vec<Value> = apps
        .iter()
        .enumerate()
        .map(|(i, (f, v))| kv(&format!("jobs/main/{f}"), 10 + i as u64, &v.to_string()))
        .collect();
    pairs.push(kv("jobs/main.ref", 50, "0123abcd4567"));
    serde_json::to_vec(&pairs).unwrap()
}

/// Like [`payload`], with any job file and the commit git2consul wrote in the `.ref`.
fn payload_at(files: &[(&str, Value)], commit: &str) -> Vec<u8> {
    let mut pairs: Vec<Value> = files
        .iter()
        .enumerate()
        .map(|(i, (f, v))| kv(&format!("jobs/main/{f}"), 10 + i as u64, &v.to_string()))
        .collect();
    pairs.push(kv("jobs/main.ref", 50, commit));
    serde_json::to_vec(&pairs).unwrap()
}

fn run(
    marathon: &Marathon,
    config: &std::path::Path,
    stdin: &[u8],
    env: &[(&str, &str)],
) -> (i32, Value, String) {
    run_args(marathon, config, stdin, env, &[])
}

fn run_args(
    marathon: &Marathon,
    config: &std::path::Path,
    stdin: &[u8],
    env: &[(&str, &str)],
    args: &[&str],
) -> (i32, Value, String) {
    let bin = devstack::bins::handler_dir().unwrap().join("kv2jobs");
    let mut child = Command::new(bin)
        .args([
            "--prefix",
            "jobs/main/",
            "--output",
            "json",
            "--timeout",
            "60s",
        ])
        .args(args)
        .arg("--notify-config")
        .arg(config)
        .env("MARATHON_URL", marathon.url())
        .env_remove("CHRONOS_URL")
        .env_remove("SHIPWATCH_NOTIFY")
        .env("CONSUL_INDEX", "60")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}); stderr: {stderr}"));
    (out.status.code().unwrap_or(-1), doc, stderr)
}

fn config(
    dir: &std::path::Path,
    hooks: &str,
    smtp_port: u16,
    smtp_extra: Value,
) -> std::path::PathBuf {
    let mut smtp = json!({"host": "127.0.0.1", "port": smtp_port, "tls": "none",
                          "from": "shipwatch <shipwatch@example.com>"});
    for (k, v) in smtp_extra.as_object().unwrap() {
        smtp[k] = v.clone();
    }
    let cfg = json!({
        "channels": {
            "payments-chat": {"type": "slack", "url": {"env": "PAYMENTS_HOOK"}},
            "payments-mail": {"type": "email", "to": ["payments@example.com"]},
            "search-chat": {"type": "slack", "url": {"value": format!("{hooks}/search-room")}},
            "search-mail": {"type": "email", "to": ["search@example.com"]}
        },
        "smtp": smtp,
        "routes": [
            {"name": "payments", "prefix": "/payments", "channels": ["payments-chat", "payments-mail"]},
            {"name": "search", "prefix": "/search", "channels": ["search-chat", "search-mail"]}
        ]
    });
    let path = dir.join("notify.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    path
}

#[test]
fn each_team_gets_exactly_its_own_apps_by_chat_and_email() {
    let marathon = Marathon::start(MarathonOptions::default()).unwrap();
    let hooks = WebhookSink::start().unwrap();
    let smtp = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &hooks.url(), smtp.port(), json!({}));
    let secret_hook = format!("{}/T000/B000/payments-secret-path", hooks.url());
    let env = [("PAYMENTS_HOOK", secret_hook.as_str())];
    let first = payload(&[
        (
            "payments/api.json",
            app("/payments/api", "reg/pay:1", "payments"),
        ),
        (
            "search/api.json",
            app("/search/api", "reg/search:1", "search"),
        ),
    ]);
    let (code, doc, stderr) = run(&marathon, &cfg, &first, &env);
    assert_eq!(code, 0, "{doc} {stderr}");
    // The first run creates both; clear and change both images in one release.
    let (hooks0, mails0) = (hooks.hooks().len(), smtp.mails().len());
    assert_eq!(
        (hooks0, mails0),
        (2, 2),
        "one chat message and one email per team"
    );
    let second = payload(&[
        (
            "payments/api.json",
            app("/payments/api", "reg/pay:2", "payments"),
        ),
        (
            "search/api.json",
            app("/search/api", "reg/search:2", "search"),
        ),
    ]);
    let (code, doc, stderr) = run(&marathon, &cfg, &second, &env);
    assert_eq!(code, 0, "{doc} {stderr}");
    let hooks = &hooks.hooks()[hooks0..];
    let mails = &smtp.mails()[mails0..];
    assert_eq!(hooks.len(), 2, "exactly one chat message per team");
    assert_eq!(mails.len(), 2, "exactly one email per team");
    for (team, path, other) in [
        ("payments", "/T000/B000/payments-secret-path", "/search/api"),
        ("search", "/search-room", "/payments/api"),
    ] {
        let hook = hooks.iter().find(|h| h.path == path).unwrap();
        let text = hook.json()["text"].as_str().unwrap().to_string();
        assert!(text.contains(&format!("/{team}/api")), "{text}");
        assert!(
            text.contains(&format!(
                "reg/{}:2",
                if team == "payments" { "pay" } else { "search" }
            )),
            "the diff: {text}"
        );
        assert!(!text.contains(other), "{team} must not see {other}: {text}");
        let mail = mails
            .iter()
            .find(|m| m.to == vec![format!("{team}@example.com")])
            .unwrap();
        let subject = mail.header("Subject").unwrap();
        assert!(subject.contains(&format!("for {team}")), "{subject}");
        let body = mail.body();
        assert!(body.contains(&format!("update-app /{team}/api")), "{body}");
        assert!(!body.contains(other), "{body}");
        assert_eq!(mail.from, "shipwatch@example.com");
    }
    assert!(!stderr.contains("payments-secret-path"), "{stderr}");
    assert!(!doc.to_string().contains("payments-secret-path"), "{doc}");
}

#[test]
fn delivery_failures_are_listed_and_never_change_the_exit_code_or_leak_secrets() {
    let marathon = Marathon::start(MarathonOptions::default()).unwrap();
    let hooks = WebhookSink::start().unwrap();
    hooks.fail_next(100);
    // A port with nothing listening: take one and let it go.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &hooks.url(),
        dead_port,
        json!({"tls": "starttls", "username": "shipwatch", "password": {"env": "SMTP_PASSWORD"}}),
    );
    let secret_hook = format!("{}/T000/B000/payments-secret-path", hooks.url());
    let env = [
        ("PAYMENTS_HOOK", secret_hook.as_str()),
        ("SMTP_PASSWORD", "hunter2-smtp-password"),
    ];
    let p = payload(&[(
        "payments/api.json",
        app("/payments/api", "reg/pay:1", "payments"),
    )]);
    let (code, doc, stderr) = run(&marathon, &cfg, &p, &env);
    assert_eq!(code, 0, "the deployment stands: {doc} {stderr}");
    assert_eq!(doc["actions"][0]["status"], "applied", "{doc}");
    let errors = doc["errors"].to_string();
    assert!(
        errors.contains(
            "notify channel \\\"payments-chat\\\": unreachable, or answering server errors"
        ),
        "{errors}"
    );
    assert!(errors.contains("notify email for payments"), "{errors}");
    assert!(hooks.hooks().len() >= 2, "the webhook was retried");
    for secret in ["hunter2-smtp-password", "payments-secret-path"] {
        assert!(!stderr.contains(secret), "{secret} in stderr: {stderr}");
        assert!(
            !doc.to_string().contains(secret),
            "{secret} in summary: {doc}"
        );
    }
}

#[test]
fn a_bad_notify_config_is_a_usage_error_before_anything_is_done() {
    let marathon = Marathon::start(MarathonOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("notify.toml");
    std::fs::write(&cfg, "[[routes]]\nteam = \"x\"\nchannels = [\"nowhere\"]\n").unwrap();
    let p = payload(&[(
        "payments/api.json",
        app("/payments/api", "reg/pay:1", "payments"),
    )]);
    let (code, doc, _) = run(&marathon, &cfg, &p, &[]);
    assert_eq!(code, 64, "{doc}");
    assert!(
        doc["errors"].to_string().contains("unknown channel"),
        "{doc}"
    );
    assert_eq!(marathon.write_count(), 0);
}

/// Routing by the facts kv2jobs reads from the job files: the `team` label (two apps under one
/// prefix, so a prefix could not tell them apart), a Chronos job's `owner`, and an app that names
/// its own recipients with `shipwatch.notify`. Each message carries the diff and the commit of
/// git2consul's `.ref`.
#[test]
fn teams_are_told_by_team_label_owner_and_own_recipients_with_diff_and_commit() {
    let marathon = Marathon::start(MarathonOptions::default()).unwrap();
    let chronos = devstack::chronos::Chronos::start(Default::default()).unwrap();
    let hooks = WebhookSink::start().unwrap();
    let smtp = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let h = hooks.url();
    let cfg = json!({
        "channels": {
            "payments-chat": {"type": "slack", "url": {"value": format!("{h}/payments-room")}},
            "payments-mail": {"type": "email", "to": ["payments@example.com"]},
            "search-chat": {"type": "slack", "url": {"value": format!("{h}/search-room")}},
            "search-mail": {"type": "email", "to": ["search@example.com"]},
            "ops-mail": {"type": "email", "to": ["ops-team@example.com"]},
            "labs-chat": {"type": "slack", "url": {"value": format!("{h}/labs-room")}}
        },
        "smtp": {"host": "127.0.0.1", "port": smtp.port(), "tls": "none",
                 "from": "shipwatch <shipwatch@example.com>"},
        "routes": [
            {"team": "payments", "channels": ["payments-chat", "payments-mail"]},
            {"team": "search", "channels": ["search-chat", "search-mail"]},
            {"name": "ops", "owner": "ops@example.com", "channels": ["ops-mail"]}
        ]
    });
    let cfg_path = dir.path().join("notify.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let labs = |image: &str| {
        let mut a = app("/shop/labs", image, "labs");
        a["labels"] = json!({"shipwatch.notify": "labs-chat, lab-lead@example.com"});
        a
    };
    let job = |cmd: &str| {
        json!({"name": "nightly-report", "command": cmd, "owner": "ops@example.com",
               "schedule": "R/2030-01-01T00:00:00Z/PT24H"})
    };
    let files = |v: &str| {
        vec![
            (
                "shop/api.json",
                app("/shop/api", &format!("reg/pay:{v}"), "payments"),
            ),
            (
                "shop/finder.json",
                app("/shop/finder", &format!("reg/search:{v}"), "search"),
            ),
            ("shop/labs.json", labs(&format!("reg/labs:{v}"))),
            ("batch/nightly.json", job(&format!("report --v{v}"))),
        ]
    };
    let env = [("CHRONOS_URL", chronos.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, doc, stderr) = run(
        &marathon,
        &cfg_path,
        &payload_at(&files("1"), "0123abcd4567"),
        &env,
    );
    assert_eq!(code, 0, "{doc} {stderr}");
    let (h0, m0) = (hooks.hooks().len(), smtp.mails().len());
    let commit = "feedc0de98765432";
    let (code, doc, stderr) = run(&marathon, &cfg_path, &payload_at(&files("2"), commit), &env);
    assert_eq!(code, 0, "{doc} {stderr}");
    let hooks = &hooks.hooks()[h0..];
    let mails = &smtp.mails()[m0..];
    let all = ["/shop/api", "/shop/finder", "/shop/labs", "nightly-report"];
    // (chat path, email address, the one target it must carry, a line of its diff)
    let expect = [
        (
            Some("/payments-room"),
            "payments@example.com",
            "/shop/api",
            "reg/pay:2",
        ),
        (
            Some("/search-room"),
            "search@example.com",
            "/shop/finder",
            "reg/search:2",
        ),
        (
            Some("/labs-room"),
            "lab-lead@example.com",
            "/shop/labs",
            "reg/labs:2",
        ),
        (
            None,
            "ops-team@example.com",
            "nightly-report",
            "report --v2",
        ),
    ];
    assert_eq!(
        hooks.len(),
        3,
        "one chat message per chat channel: {hooks:?}"
    );
    assert_eq!(mails.len(), 4, "one email per team: {mails:?}");
    for (chat, address, target, diff) in expect {
        let mut texts = Vec::new();
        if let Some(path) = chat {
            let matching: Vec<_> = hooks.iter().filter(|x| x.path == path).collect();
            assert_eq!(matching.len(), 1, "exactly one message in {path}");
            texts.push(matching[0].json()["text"].as_str().unwrap().to_string());
        }
        let matching: Vec<_> = mails
            .iter()
            .filter(|m| m.to == vec![address.to_string()])
            .collect();
        assert_eq!(matching.len(), 1, "exactly one email to {address}");
        texts.push(format!(
            "{}\n{}",
            matching[0].header("Subject").unwrap(),
            matching[0].body()
        ));
        for text in texts {
            assert!(text.contains(target), "{address}: {text}");
            assert!(text.contains(diff), "{address} gets the diff: {text}");
            assert!(text.contains(commit), "{address} gets the commit: {text}");
            for other in all.iter().filter(|o| **o != target) {
                assert!(
                    !text.contains(other),
                    "{address} must not see {other}: {text}"
                );
            }
        }
    }
}

/// `--wait`: a deployment whose tasks never become healthy times out; the team is told it
/// FAILED (exit 75). With `--rollback-on-failure` the version that was live before is put back
/// (Marathon's rollback, reported as a `rollback-app` action) and the team is told both.
#[test]
fn a_failed_deployment_is_notified_and_rolled_back_on_request() {
    let marathon = Marathon::start(MarathonOptions::default()).unwrap();
    let hooks = WebhookSink::start().unwrap();
    let smtp = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &hooks.url(), smtp.port(), json!({}));
    let secret_hook = format!("{}/T000/B000/payments-secret-path", hooks.url());
    let env = [("PAYMENTS_HOOK", secret_hook.as_str())];
    let wait = ["--wait", "--deploy-timeout", "400ms"];
    let files = |v: &str| {
        payload(&[
            (
                "payments/api.json",
                app("/payments/api", &format!("reg/pay:{v}"), "payments"),
            ),
            (
                "payments/web.json",
                app("/payments/web", &format!("reg/web:{v}"), "payments"),
            ),
        ])
    };
    let (code, doc, stderr) = run_args(&marathon, &cfg, &files("1"), &env, &wait);
    assert_eq!(code, 0, "{doc} {stderr}");
    marathon.set_never_healthy(":broken");
    // Without --rollback-on-failure: failed, exit 75, the team told, the broken version stays.
    let broken_api = payload(&[
        (
            "payments/api.json",
            app("/payments/api", "reg/pay:broken", "payments"),
        ),
        (
            "payments/web.json",
            app("/payments/web", "reg/web:1", "payments"),
        ),
    ]);
    let m0 = smtp.mails().len();
    let (code, doc, stderr) = run_args(&marathon, &cfg, &broken_api, &env, &wait);
    assert_eq!(code, 75, "{doc} {stderr}");
    let api = doc["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["target"] == "/payments/api")
        .unwrap();
    assert_eq!(api["status"], "failed", "{doc}");
    assert!(
        api["detail"].as_str().unwrap().contains("still running"),
        "{api}"
    );
    assert!(!doc.to_string().contains("rollback-app"), "{doc}");
    let mail = &smtp.mails()[m0..];
    assert_eq!(mail.len(), 1);
    assert!(
        mail[0].header("Subject").unwrap().contains("FAILED"),
        "{:?}",
        mail[0]
    );
    assert!(
        mail[0].body().contains("still running"),
        "{}",
        mail[0].body()
    );
    assert_eq!(
        marathon.app("/payments/api").unwrap()["container"]["docker"]["image"],
        "reg/pay:broken"
    );
    // With it: the web app's broken release is rolled back to reg/web:1.
    let broken_web = payload(&[
        (
            "payments/api.json",
            app("/payments/api", "reg/pay:broken", "payments"),
        ),
        (
            "payments/web.json",
            app("/payments/web", "reg/web:broken", "payments"),
        ),
    ]);
    let (m1, h1) = (smtp.mails().len(), hooks.hooks().len());
    let mut args = wait.to_vec();
    args.push("--rollback-on-failure");
    let (code, doc, stderr) = run_args(&marathon, &cfg, &broken_web, &env, &args);
    assert_eq!(code, 75, "{doc} {stderr}");
    let of = |kind: &str| {
        doc["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["target"] == "/payments/web" && a["kind"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} of /payments/web: {doc}"))
    };
    assert_eq!(of("update-app")["status"], "failed", "{doc}");
    let rb = of("rollback-app");
    assert_eq!(rb["status"], "applied", "{doc}");
    assert!(
        rb["detail"]
            .as_str()
            .unwrap()
            .contains("rolled back to version"),
        "{rb}"
    );
    assert!(rb["detail"].as_str().unwrap().contains("finished"), "{rb}");
    let web = marathon.app("/payments/web").unwrap();
    assert_eq!(web["container"]["docker"]["image"], "reg/web:1", "{web}");
    assert_eq!(
        web["deployments"],
        json!([]),
        "the rollback finished: {web}"
    );
    let mail = &smtp.mails()[m1..];
    assert_eq!(mail.len(), 1);
    let body = mail[0].body();
    assert!(mail[0].header("Subject").unwrap().contains("FAILED"));
    assert!(body.contains("failed update-app /payments/web"), "{body}");
    assert!(
        body.contains("applied rollback-app /payments/web"),
        "{body}"
    );
    let chat = &hooks.hooks()[h1..];
    assert_eq!(chat.len(), 1);
    assert!(
        chat[0].json()["text"]
            .as_str()
            .unwrap()
            .contains("rollback-app"),
        "{chat:?}"
    );
}

/// A watch replay that changes nothing tells no team, even with a paused app's `skipped` line
/// and a default route that would take it: teams hear about runs that did something.
#[test]
fn a_replay_that_changes_nothing_tells_no_team() {
    let marathon = Marathon::start(MarathonOptions::default()).unwrap();
    let hooks = WebhookSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = json!({
        "channels": {"ops-chat": {"type": "slack", "url": {"value": format!("{}/ops", hooks.url())}}},
        "default": {"channels": ["ops-chat"]}
    });
    let path = dir.path().join("notify.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let mut paused = app("/lab/paused", "reg/lab:2", "lab");
    paused["labels"]["shipwatch.sync"] = json!("false");
    let p = payload(&[
        ("lab/api.json", app("/lab/api", "reg/lab:1", "lab")),
        ("lab/paused.json", paused),
    ]);
    let (code, doc, stderr) = run(&marathon, &path, &p, &[]);
    assert_eq!(code, 0, "{doc} {stderr}");
    let first = hooks.hooks();
    assert_eq!(first.len(), 1, "the first run created /lab/api");
    let text = first[0].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("paused (label shipwatch.sync=false)"),
        "{text}"
    );
    let (code, doc, stderr) = run(&marathon, &path, &p, &[]);
    assert_eq!(code, 0, "{doc} {stderr}");
    assert_eq!(hooks.hooks().len(), 1, "a replay sends nothing: {doc}");
}
