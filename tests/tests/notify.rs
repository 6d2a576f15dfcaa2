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

fn run(
    marathon: &Marathon,
    config: &std::path::Path,
    stdin: &[u8],
    env: &[(&str, &str)],
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
