//! Issue 12 ("No silent stalls") for tag2git, end to end: the built binary against real bare
//! repositories (and devstack's HTTP doubles for the remotes that misbehave).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const WORKER_KEY: &str = "images/registry.local:5000/sami/worker";
const JUNK_KEY: &str = "images/registry.local:5000/sami/junk";

/// A repository whose jobs run sami/worker, sami/api and nginx.
fn repo() -> Repo {
    let app = |id: &str, image: &str| {
        format!(
            "{{\n  \"id\": \"{id}\",\n  \"container\": {{ \"docker\": {{ \"image\": \"{image}\" }} }}\n}}\n"
        )
        .into_bytes()
    };
    Repo::with_files(&[
        (
            "apps/worker.json".into(),
            app("/sami/worker", "registry.local:5000/sami/worker:2.0.0"),
        ),
        (
            "apps/api.json".into(),
            app("/sami/api", "registry.local:5000/sami/api:1.4.1"),
        ),
        ("apps/edge.json".into(), app("/edge", "nginx:1.25")),
    ])
}

fn trailers(repo: &Repo, rev: &str) -> String {
    repo.git(&["log", "-1", "--format=%(trailers)", rev])
        .trim()
        .to_string()
}

/// (status, detail) of the action on `target`.
fn action(run: &Run, target: &str) -> (String, String) {
    let v = run.json();
    let a = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["target"] == target)
        .unwrap_or_else(|| panic!("no action on {target}: {}", run.stdout));
    (
        a["status"].as_str().unwrap().into(),
        a["detail"].as_str().unwrap().into(),
    )
}

/// A list of strings from the summary (`warnings` is left out when empty).
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

// ---- item 1: one bad value under images/ never blocks the others ----

#[test]
fn one_bad_entry_is_reported_and_every_good_one_is_committed_and_pushed() {
    let repo = repo();
    let before = repo.commit_count("main");
    let payload = json!([
        kv(JUNK_KEY, "Not A Valid Tag!!", 40),
        kv(WORKER_KEY, "2.1.0", 41),
        // A value with no tag or digest, and an uppercase repository.
        kv("images/sami/notag", "registry.local:5000/sami/api", 42),
        kv("images/registry.local:5000/Sami/API", "1.5.0", 43),
        kv("images/nginx", "1.27", 44),
    ]);
    let run = repo.run(&payload, &[]);
    assert_eq!(run.code, 65, "{}\n{}", run.stdout, run.stderr);
    // The good entries are committed and pushed, in one commit.
    assert_eq!(repo.commit_count("main"), before + 1);
    assert!(repo
        .show_str("main", "apps/worker.json")
        .contains("registry.local:5000/sami/worker:2.1.0"));
    assert!(repo
        .show_str("main", "apps/edge.json")
        .contains("\"nginx:1.27\""));
    assert!(repo
        .show_str("main", "apps/api.json")
        .contains("sami/api:1.4.1"));
    let t = trailers(&repo, "main");
    assert!(t.contains(&format!("Consul-Key: {WORKER_KEY}\n")), "{t}");
    assert!(t.contains("Consul-Key: images/nginx\n"), "{t}");
    assert_eq!(t.matches("Consul-Key:").count(), 2, "{t}");
    // Each bad entry is failed, with a reason naming its key.
    for (key, why) in [
        (JUNK_KEY, ""),
        ("images/sami/notag", "neither a tag nor a digest"),
        ("images/registry.local:5000/Sami/API", ""),
    ] {
        let (status, detail) = action(&run, key);
        assert_eq!(status, "failed", "{key}: {detail}");
        assert!(detail.contains(&format!("key {key:?}")), "{detail}");
        assert!(detail.contains(why), "{detail}");
    }
    assert_eq!(
        action(&run, "apps/worker.json#/container/docker/image").0,
        "applied"
    );
    let errors = strings(&run.json()["errors"]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("invalid payload: 3 invalid entries not applied (the others are): ")
            && errors[0].contains(JUNK_KEY),
        "{errors:?}"
    );
    // The readable form names the key and the reason.
    let text = repo.run(&payload, &["--output", "text"]);
    assert_eq!(text.code, 65, "{}", text.stderr);
    let line = text
        .stdout
        .lines()
        .find(|l| l.contains("failed") && l.contains(JUNK_KEY))
        .unwrap_or_else(|| panic!("{}", text.stdout));
    assert!(line.contains("\"Not A Valid Tag!!\""), "{line}");
    // The keyprefix watch re-delivers the bad key on every change: the replay still exits 65
    // and commits nothing new (the good entries are recorded).
    assert_eq!(
        repo.commit_count("main"),
        before + 1,
        "replay commits nothing"
    );
}

#[test]
fn a_payload_of_only_bad_entries_exits_65_and_clones_nothing() {
    let repo = repo();
    let wd = repo.workdir();
    let run = repo.run_in(&wd, &json!([kv(JUNK_KEY, "Not A Valid Tag!!", 3)]), &[]);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert_eq!(
        run.actions(),
        vec![("failed".to_string(), JUNK_KEY.to_string())]
    );
    assert!(!wd.exists(), "no clone when nothing is valid");
}

// ---- item 4: capped messages, every action in the JSON summary ----

#[test]
fn many_bad_keys_make_a_short_error_line_and_the_summary_keeps_every_action() {
    let repo = repo();
    let mut payload: Vec<Value> = (0..500)
        .map(|i| kv(&format!("images/bad/k{i:03}"), "Not A Tag!!", 100 + i))
        .collect();
    payload.push(kv(WORKER_KEY, "2.1.0", 999));
    let run = repo.run(&Value::Array(payload.clone()), &[]);
    assert_eq!(run.code, 65, "{}", run.stderr);
    let v = run.json();
    let failed = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == "failed")
        .count();
    assert_eq!(failed, 500, "every bad key is in the summary");
    let errors = strings(&v["errors"]);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].ends_with(" and 480 more"), "{}", errors[0]);
    assert!(errors[0].len() < 4096, "{} bytes", errors[0].len());
    assert!(errors[0].contains("images/bad/k000") && !errors[0].contains("images/bad/k499"));
    // Logs too: no stderr line lists them all.
    assert!(
        run.stderr.lines().all(|l| l.len() < 4096),
        "a log line is {} bytes",
        run.stderr.lines().map(str::len).max().unwrap_or(0)
    );
    assert!(repo
        .show_str("main", "apps/worker.json")
        .contains("sami/worker:2.1.0"));
}

// ---- item 2: a Consul restore must not make tag2git skip new tags ----

const API_KEY: &str = "images/registry.local:5000/sami/api";

#[test]
fn after_a_consul_restore_a_new_value_at_a_lower_index_is_applied_with_a_warning() {
    let repo = repo();
    let run = repo.run(&kv(API_KEY, "1.4.2", 500), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        trailers(&repo, "main"),
        format!("Consul-Key: {API_KEY}\nConsul-Modify-Index: 500\nConsul-Value: registry.local:5000/sami/api:1.4.2\nConsul-Index: 4242")
    );
    // Snapshot restore: CI publishes 1.5.0 and the key's ModifyIndex is now 120.
    let restored = kv(API_KEY, "1.5.0", 120);
    let run = repo.run(&restored, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(repo
        .show_str("main", "apps/api.json")
        .contains("sami/api:1.5.0"));
    assert_eq!(
        trailers(&repo, "main"),
        format!("Consul-Key: {API_KEY}\nConsul-Modify-Index: 120\nConsul-Value: registry.local:5000/sami/api:1.5.0\nConsul-Index: 4242")
    );
    let warnings = strings(&run.json()["warnings"]);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("ModifyIndex went backwards for 1 key(s) (a Consul snapshot restore, or another cluster")
            && warnings[0].contains(&format!("{API_KEY} = registry.local:5000/sami/api:1.5.0 at 120 (history has 500)")),
        "{warnings:?}"
    );
    let head = repo.head("main");
    // Replays of the new write are recognised (key, index and value recorded)...
    let replay = repo.run(&restored, &[]);
    assert_eq!(replay.code, 0, "{}", replay.stderr);
    let (status, detail) = action(&replay, API_KEY);
    assert_eq!(status, "skipped");
    assert!(
        detail.contains("key, ModifyIndex and value recorded in the history"),
        "{detail}"
    );
    assert!(strings(&replay.json()["warnings"]).is_empty());
    assert_eq!(repo.head("main"), head);
    // ... and agent restarts still never undo a tag pinned back by hand.
    repo.human_edit("apps/api.json", |t| t.replace("1.5.0", "1.4.9"));
    let pinned = repo.head("main");
    let replay = repo.run(&restored, &[]);
    assert_eq!(replay.code, 0, "{}", replay.stderr);
    assert_eq!(repo.head("main"), pinned, "the pin is kept");
    // An old write that a restore brings back is recognised too: it does not undo newer tags.
    let old = repo.run(&kv(API_KEY, "1.4.2", 500), &[]);
    assert_eq!(old.code, 0, "{}", old.stderr);
    assert_eq!(action(&old, API_KEY).0, "skipped");
    assert_eq!(repo.head("main"), pinned);
}

#[test]
fn commits_without_consul_value_still_count_for_their_key_and_index() {
    let repo = repo();
    // A commit made by an older tag2git: trailers without Consul-Value.
    let n = repo.workdir();
    let dir = repo.tmp.path().join(n.file_name().unwrap());
    repo.git_in(
        repo.tmp.path(),
        &["clone", "--quiet", "jobs.git", dir.to_str().unwrap()],
    );
    let edge = std::fs::read_to_string(dir.join("apps/edge.json")).unwrap();
    std::fs::write(dir.join("apps/edge.json"), edge.replace("1.25", "1.26")).unwrap();
    repo.git_in(
        &dir,
        &[
            "commit",
            "--quiet",
            "-am",
            "nginx 1.25 -> 1.26\n\nConsul-Key: images/nginx\nConsul-Modify-Index: 300\nConsul-Index: 301",
        ],
    );
    repo.git_in(&dir, &["push", "--quiet", "origin", "HEAD:main"]);
    // Someone pins it back by hand; the same key and index re-delivered: still a replay.
    repo.human_edit("apps/edge.json", |t| t.replace("1.26", "1.24"));
    let head = repo.head("main");
    let replay = repo.run(&kv("images/nginx", "1.26", 300), &[]);
    assert_eq!(replay.code, 0, "{}", replay.stderr);
    let (status, detail) = action(&replay, "images/nginx");
    assert_eq!(status, "skipped");
    assert!(
        detail.contains("a commit from before Consul-Value"),
        "{detail}"
    );
    assert_eq!(repo.head("main"), head);
    // A lower index is a new write (a restore): applied, with the warning.
    let run = repo.run(&kv("images/nginx", "1.27", 200), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(repo
        .show_str("main", "apps/edge.json")
        .contains("\"nginx:1.27\""));
    assert!(
        strings(&run.json()["warnings"])[0]
            .contains("images/nginx = docker.io/library/nginx:1.27 at 200 (history has 300)"),
        "{}",
        run.stdout
    );
}

// ---- item 6: exit codes ----

#[test]
fn a_git_http_remote_answering_404_exits_69_naming_the_remote_without_credentials() {
    use devstack::http::{Response, Server};
    use std::sync::Arc;
    let server = Server::start(
        "127.0.0.1:0",
        Arc::new(|_req| Response::text(404, "Not Found")),
    )
    .unwrap();
    let repo = repo();
    let url = format!("http://deploy:s3cr3t-t0ken@{}/ops/jobs.git", server.addr());
    let run = repo.run_remote(&url, "text", &kv("images/nginx", "1.27", 1));
    assert_eq!(run.code, 69, "{}\n{}", run.stdout, run.stderr);
    let shown = format!("http://***@{}/ops/jobs.git", server.addr());
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("error:"))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(
        line.contains(&format!("git remote {shown} unreachable")),
        "{line}"
    );
    assert!(
        run.stdout.contains(&format!(
            "fatal: repository 'http://{}/ops/jobs.git/' not found",
            server.addr()
        )),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("s3cr3t") && !run.stderr.contains("s3cr3t"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
}

#[test]
fn a_consul_acl_denial_on_lock_exits_64() {
    use devstack::consul::{Consul, ConsulOptions};
    use devstack::http::Fault;
    let consul = Consul::start(ConsulOptions {
        acl_master_token: Some("root".into()),
        ..ConsulOptions::default()
    })
    .unwrap();
    let repo = repo();
    let head = repo.head("main");
    let lock = [
        "--lock",
        "shipwatch/locks/tag2git",
        "--consul",
        &consul.url(),
    ];
    // No token: Consul's 403.
    let run = repo.run(&kv("images/nginx", "1.27", 1), &lock);
    assert_eq!(run.code, 64, "{}\n{}", run.stdout, run.stderr);
    // A proxy asking for credentials: 401.
    consul.faults().fail_always_on(
        "/v1/session/create",
        Fault::Status {
            status: 401,
            body: "Unauthorized".into(),
        },
    );
    let mut cmd = repo.command(&repo.workdir(), &lock);
    cmd.env("CONSUL_HTTP_TOKEN", "root");
    let run = run_cmd(
        cmd,
        kv("images/nginx", "1.27", 1).to_string().as_bytes(),
        None,
    );
    assert_eq!(run.code, 64, "{}\n{}", run.stdout, run.stderr);
    let errors = strings(&run.json()["errors"]);
    assert!(
        errors[0].starts_with("--lock: consul denied session create")
            && errors[0].contains("CONSUL_HTTP_TOKEN"),
        "{errors:?}"
    );
    assert_eq!(repo.head("main"), head);
}

// ---- item 8: a stop signal starts no new write ----

/// A pre-receive hook that counts pushes; the first one signals `started`, waits for `release`
/// (polling, bounded) and is rejected; later ones are accepted.
fn gated_hook(repo: &Repo) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let gate = repo.tmp.path().join("gate");
    std::fs::create_dir_all(&gate).unwrap();
    let g = gate.display();
    let script = format!(
        "#!/bin/sh\ncat >/dev/null\nn=$(cat {g}/count 2>/dev/null || echo 0)\nn=$((n+1))\necho $n > {g}/count\nif [ $n -eq 1 ]; then\n  touch {g}/started\n  i=0\n  while [ ! -e {g}/release ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n  echo 'busy, try again' >&2\n  exit 1\nfi\nexit 0\n"
    );
    let hook = repo.bare.join("hooks/pre-receive");
    std::fs::write(&hook, script).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    gate
}

fn wait_for(what: &str, path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut nap = Duration::from_millis(5);
    while !path.exists() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(100));
    }
}

#[test]
fn a_stop_signal_during_a_push_starts_no_new_push_and_prints_the_summary() {
    let repo = repo();
    let gate = gated_hook(&repo);
    let head = repo.head("main");
    let child = spawn(
        repo.command(&repo.workdir(), &["--push-attempts", "5"]),
        kv(WORKER_KEY, "2.1.0", 7).to_string().as_bytes(),
        Some(9),
    );
    wait_for("the first push", &gate.join("started"));
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // The push in flight finishes (rejected: the remote moved); no second push is started.
    std::fs::write(gate.join("release"), "").unwrap();
    let run = finish(child.wait_with_output().unwrap());
    assert_eq!(run.code, 75, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        std::fs::read_to_string(gate.join("count")).unwrap().trim(),
        "1",
        "a push was started after the stop signal"
    );
    assert_eq!(repo.head("main"), head);
    let errors = strings(&run.json()["errors"]);
    assert!(
        errors.iter().any(|e| e.contains("stopped by a signal")),
        "{errors:?}"
    );
    // The replay (the next delivery) applies it.
    let replay = repo.run(&kv(WORKER_KEY, "2.1.0", 7), &[]);
    assert_eq!(replay.code, 0, "{}", replay.stderr);
    assert!(repo
        .show_str("main", "apps/worker.json")
        .contains("sami/worker:2.1.0"));
}
