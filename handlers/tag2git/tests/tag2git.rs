//! tag2git against real bare repositories (issue 4's test list).

mod common;

use common::*;
use serde_json::{json, Value};

fn api_payload(value: &str, idx: u64) -> Value {
    kv("images/registry.local:5000/sami/api", value, idx)
}

/// Every file except `changed` is byte-identical to the seed; changed files equal the seed with
/// `from` replaced by `to` at the image sites only.
fn assert_only(repo: &Repo, changed: &[(&str, &str, &str)]) {
    for (path, original) in fixture_files() {
        let now = repo.show("main", &path);
        match changed.iter().find(|(p, _, _)| *p == path) {
            Some((_, from, to)) => {
                let expected = String::from_utf8(original).unwrap().replace(from, to);
                assert_eq!(String::from_utf8(now).unwrap(), expected, "{path}");
            }
            None => assert_eq!(now, original, "{path} must be untouched"),
        }
    }
}

#[test]
fn bare_tag_updates_every_job_of_the_repository_byte_exactly() {
    let repo = Repo::new();
    let before = repo.commit_count("main");
    let run = repo.run(&api_payload("1.4.2", 101), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut actions = run.actions();
    actions.sort();
    assert_eq!(
        actions,
        vec![
            (
                "applied".into(),
                "groups/prod.json#/groups/0/apps/0/container/docker/image".into()
            ),
            (
                "applied".into(),
                "jobs/api.json#/container/docker/image".into()
            ),
            (
                "applied".into(),
                "jobs/worker.json#/container/docker/image".into()
            ),
        ]
    );
    assert_eq!(
        repo.commit_count("main"),
        before + 1,
        "one commit per invocation"
    );
    // CRLF, compact, pretty and nested-group files: only the image bytes changed.
    assert_only(
        &repo,
        &[
            (
                "jobs/api.json",
                "registry.local:5000/sami/api:1.4.1",
                "registry.local:5000/sami/api:1.4.2",
            ),
            (
                "jobs/worker.json",
                "registry.local:5000/sami/api:1.4.1",
                "registry.local:5000/sami/api:1.4.2",
            ),
            (
                "groups/prod.json",
                "registry.local:5000/sami/api:1.4.0",
                "registry.local:5000/sami/api:1.4.2",
            ),
        ],
    );
    // git diff of the commit shows exactly the image lines (1 line per file; the compact file is one line).
    let numstat = repo.git(&["show", "--format=", "--numstat", "main"]);
    for line in numstat.lines() {
        assert!(line.starts_with("1\t1\t"), "{numstat}");
    }
    let msg = repo.message("main");
    assert!(msg.starts_with("sami/api -> 1.4.2 (3 jobs)\n"), "{msg}");
    assert!(msg.contains("jobs/api.json#/container/docker/image (/sami/api): registry.local:5000/sami/api:1.4.1 -> registry.local:5000/sami/api:1.4.2"), "{msg}");
    let trailers = repo.git(&["log", "-1", "--format=%(trailers)", "main"]);
    assert_eq!(
        trailers.trim(),
        "Consul-Key: images/registry.local:5000/sami/api\nConsul-Modify-Index: 101\nConsul-Value: registry.local:5000/sami/api:1.4.2\nConsul-Index: 4242"
    );
    let author = repo.git(&["log", "-1", "--format=%an <%ae>", "main"]);
    assert_eq!(author.trim(), AUTHOR);
}

#[test]
fn single_job_subject_names_old_and_new() {
    let repo = Repo::new();
    let run = repo.run(&kv("images/nginx", "1.27", 5), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        repo.message("main").lines().next().unwrap(),
        "nginx 1.25 -> 1.27"
    );
}

#[test]
fn full_reference_matches_with_docker_normalization_and_keeps_each_files_spelling() {
    let repo = Repo::new();
    // Not under --key-prefix: a full reference names its own repository.
    let run = repo.run(
        &kv("ci/python", "index.docker.io/library/python:3.12", 7),
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.actions().len(), 2, "{}", run.stdout);
    // broken.json also names python:3 but is not valid JSON: skipped with a warning, left alone.
    assert!(
        run.stderr
            .contains("skipping broken.json: invalid JSON at line 1"),
        "{}",
        run.stderr
    );
    assert_only(
        &repo,
        &[
            ("jobs/web.json", "\"python:3\"", "\"python:3.12\""),
            (
                "groups/prod.json",
                "docker.io/library/python:3.10",
                "docker.io/library/python:3.12",
            ),
        ],
    );
}

#[test]
fn digest_references() {
    let repo = Repo::new();
    let run = repo.run(&api_payload(&format!("1.4.2@{DIGEST}"), 9), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let api = repo.show_str("main", "jobs/api.json");
    assert!(
        api.contains(&format!(
            "\"registry.local:5000/sami/api:1.4.2@{DIGEST}\",\r\n"
        )),
        "{api}"
    );
    // A digest-only value replaces tag and digest.
    let run = repo.run(&kv("images/redis", &format!("@{DIGEST}"), 10), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(repo
        .show_str("main", "groups/prod.json")
        .contains(&format!("\"redis@{DIGEST}\"")));
    assert!(
        repo.message("main")
            .starts_with("redis 7.2 -> @sha256:7cc4b5aefd1d"),
        "{}",
        repo.message("main")
    );
}

#[test]
fn chronos_job_image() {
    let repo = Repo::new();
    let run = repo.run(&kv("images/libmesos/ubuntu", "14.04", 3), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.actions(),
        vec![("applied".into(), "jobs/cron.json#/container/image".into())]
    );
    assert_only(
        &repo,
        &[(
            "jobs/cron.json",
            "\"libmesos/ubuntu\"",
            "\"libmesos/ubuntu:14.04\"",
        )],
    );
}

#[test]
fn replaying_the_same_payload_changes_nothing_even_from_a_fresh_workdir() {
    let repo = Repo::new();
    let payload = api_payload("1.4.2", 101);
    let wd = repo.workdir();
    assert_eq!(repo.run_in(&wd, &payload, &[]).code, 0);
    let head = repo.head("main");
    let again = repo.run_in(&wd, &payload, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        again.actions(),
        vec![(
            "skipped".into(),
            "images/registry.local:5000/sami/api".into()
        )]
    );
    let fresh = repo.run(&payload, &[]);
    assert_eq!(fresh.code, 0, "{}", fresh.stderr);
    assert_eq!(repo.head("main"), head, "no new commit on replay");
}

#[test]
fn files_already_holding_the_image_make_no_empty_commit() {
    let repo = Repo::new();
    let head = repo.head("main");
    let run = repo.run(&kv("images/nginx", "1.25", 50), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.actions(),
        vec![(
            "unchanged".into(),
            "groups/prod.json#/apps/0/container/docker/image".into()
        )]
    );
    assert_eq!(repo.head("main"), head);
}

#[test]
fn start_or_reload_full_prefix_does_not_overwrite_a_manual_pin() {
    let repo = Repo::new();
    let api = api_payload("1.4.2", 101);
    assert_eq!(repo.run(&json!([api]), &[]).code, 0);
    // Someone pins jobs/api.json back by hand.
    repo.human_edit("jobs/api.json", |t| {
        t.replace("sami/api:1.4.2", "sami/api:1.4.1")
    });
    // Agent reload: the whole prefix is delivered again, with one new entry.
    let prefix = json!([api, kv("images/nginx", "1.27", 140)]);
    let run = repo.run(&prefix, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        repo.show_str("main", "jobs/api.json")
            .contains("sami/api:1.4.1"),
        "pin kept"
    );
    assert!(
        repo.show_str("main", "groups/prod.json")
            .contains("\"nginx:1.27\""),
        "new entry applied"
    );
    assert!(run.actions().contains(&(
        "skipped".into(),
        "images/registry.local:5000/sami/api".into()
    )));
    // --all re-applies regardless of history.
    let run = repo.run(&prefix, &["--all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(repo
        .show_str("main", "jobs/api.json")
        .contains("sami/api:1.4.2"));
}

/// Issue 12 item 1 changed this: an invalid entry no longer rejects the whole payload; it is
/// reported as failed (exit 65) and the valid entries beside it are still committed.
#[test]
fn bad_entries_exit_65_and_do_not_block_the_good_ones() {
    let repo = Repo::new();
    let bad_values = [
        "Sami/API:1".to_string(),
        "python@sha256:1234".to_string(),
        "-rf".to_string(),
        "1..2".to_string(),
        "1.4\u{7}".to_string(),
        "registry.local:5000/sami/api".to_string(), // no tag, no digest
    ];
    for (i, value) in bad_values.iter().enumerate() {
        let head = repo.head("main");
        let nginx = format!("1.{}", 27 + i);
        let run = repo.run(
            &json!([
                kv("images/nginx", &nginx, 10 + i as u64),
                api_payload(value, 2)
            ]),
            &[],
        );
        assert_eq!(run.code, 65, "{value:?}: {}", run.stdout);
        let errors = run.json()["errors"].to_string();
        assert!(
            errors.contains("images/registry.local:5000/sami/api"),
            "{errors}"
        );
        assert!(run.actions().contains(&(
            "failed".to_string(),
            "images/registry.local:5000/sami/api".to_string()
        )));
        assert_ne!(
            repo.head("main"),
            head,
            "{value:?}: the good entry is committed"
        );
        assert!(repo
            .show_str("main", "groups/prod.json")
            .contains(&format!("\"nginx:{nginx}\"")));
        assert!(repo
            .show_str("main", "jobs/api.json")
            .contains("sami/api:1.4.1"));
    }
    // Payloads that are not a list of KV entries at all, or hold only bad entries: nothing committed.
    let head = repo.head("main");
    for raw in [
        "{\"Key\":".to_string(),
        "[1,2]".to_string(),
        "\"text\"".to_string(),
        r#"{"Key":"images/nginx","ModifyIndex":1,"Value":"!!notbase64"}"#.to_string(),
        json!([kv("images/../etc/passwd", "1.0", 1)]).to_string(),
        json!([kv("-images/x", "1.0", 1)]).to_string(),
        json!([kv("other/nginx", "1.0", 1)]).to_string(), // bare tag outside the prefix
    ] {
        let run = run_cmd(repo.command(&repo.workdir(), &[]), raw.as_bytes(), None);
        assert_eq!(run.code, 65, "{raw}: {}", run.stdout);
    }
    assert_eq!(repo.head("main"), head, "nothing committed");
}

#[test]
fn null_payload_is_nothing_to_do() {
    let repo = Repo::new();
    let wd = repo.workdir();
    let run = repo.run_in(&wd, &Value::Null, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["actions"], json!([]));
    assert!(!wd.exists(), "no clone for an empty payload");
}

#[test]
fn dry_run_shows_a_diff_and_commits_nothing() {
    let repo = Repo::new();
    let head = repo.head("main");
    let mut cmd = repo.command(&repo.workdir(), &["--dry-run", "--output", "text"]);
    cmd.env("RUST_LOG", "warn");
    let run = run_cmd(
        cmd,
        kv("images/python", "3.12", 8).to_string().as_bytes(),
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("--- a/jobs/web.json\n+++ b/jobs/web.json\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("\n-      \"image\": \"python:3\"\n+      \"image\": \"python:3.12\"\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("planned"), "{}", run.stdout);
    assert_eq!(repo.head("main"), head);
    let json_run = repo.run(&kv("images/python", "3.12", 8), &["--dry-run"]);
    assert_eq!(json_run.json()["dry_run"], json!(true));
    assert!(json_run.actions().iter().all(|(s, _)| s == "planned"));
}

#[test]
fn no_job_uses_the_repository_is_a_warning_and_exit_0() {
    let repo = Repo::new();
    let run = repo.run(&kv("images/sami/unknown", "2.0", 4), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.actions(),
        vec![("skipped".into(), "images/sami/unknown".into())]
    );
    assert!(
        run.stderr.contains("no job runs docker.io/sami/unknown"),
        "{}",
        run.stderr
    );
}

#[test]
fn allow_tags_refuses_non_matching_tags() {
    let repo = Repo::new();
    let head = repo.head("main");
    let semver = r"^\d+\.\d+\.\d+$";
    let run = repo.run(&api_payload("latest-dev", 3), &["--allow-tags", semver]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.actions(),
        vec![(
            "skipped".into(),
            "images/registry.local:5000/sami/api".into()
        )]
    );
    assert_eq!(repo.head("main"), head);
    assert_eq!(
        repo.run(&api_payload("1.5.0", 4), &["--allow-tags", semver])
            .code,
        0
    );
    assert_ne!(repo.head("main"), head);
    assert_eq!(
        repo.run(&api_payload("1.5.0", 4), &["--allow-tags", "("])
            .code,
        64
    );
}

#[test]
fn path_limits_the_files_and_cannot_leave_the_repository() {
    let repo = Repo::new();
    let run = repo.run(
        &api_payload("1.4.2", 5),
        &["--path", "jobs", "--path", "./jobs/"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.actions().len(), 2, "{}", run.stdout);
    assert!(repo
        .show_str("main", "groups/prod.json")
        .contains("sami/api:1.4.0"));
    for bad in ["../outside", "/etc", "jobs/../../x"] {
        let run = repo.run(&api_payload("1.4.3", 6), &["--path", bad]);
        assert_eq!(run.code, 64, "{bad}: {}", run.stdout);
    }
}

#[test]
fn push_branch_for_review_flows() {
    let repo = Repo::new();
    let main = repo.head("main");
    assert_eq!(
        repo.run(
            &api_payload("1.4.2", 5),
            &["--push-branch", "tag2git/review"]
        )
        .code,
        0
    );
    assert_eq!(repo.head("main"), main, "main untouched");
    assert!(repo
        .show_str("tag2git/review", "jobs/api.json")
        .contains("1.4.2"));
    // A second update stacks on the review branch; the first one is recognised there.
    let run = repo.run(
        &json!([api_payload("1.4.2", 5), kv("images/nginx", "1.27", 6)]),
        &["--push-branch", "tag2git/review"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        repo.commit_count("tag2git/review"),
        repo.commit_count("main") + 2
    );
}

#[test]
fn message_template() {
    let repo = Repo::new();
    let template = "deploy({repository}): {old} => {new} [{keys}] idx={consul_index} n={count} {{x}}\n\n{body}";
    let run = repo.run(
        &kv("images/nginx", "1.27", 12),
        &["--message-template", template],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let msg = repo.message("main");
    assert!(msg.starts_with("deploy(nginx): 1.25 => 1.27 [images/nginx] idx=4242 n=1 {x}\n\n- groups/prod.json#/apps/0/container/docker/image"), "{msg}");
    assert!(
        msg.trim_end()
            .ends_with("Consul-Key: images/nginx\nConsul-Modify-Index: 12\nConsul-Value: docker.io/library/nginx:1.27\nConsul-Index: 4242"),
        "{msg}"
    );
    assert_eq!(
        repo.run(
            &kv("images/nginx", "1.28", 13),
            &["--message-template", "{bogus}"]
        )
        .code,
        64
    );
}

#[test]
fn unreachable_remote_exits_69_and_a_replay_completes_the_update() {
    let repo = Repo::new();
    let wd = repo.workdir();
    assert_eq!(
        repo.run_in(&wd, &kv("images/nginx", "1.27", 1), &[]).code,
        0
    );
    // The remote goes away.
    let away = repo.tmp.path().join("away.git");
    std::fs::rename(&repo.bare, &away).unwrap();
    let payload = api_payload("1.4.2", 2);
    let run = repo.run_in(&wd, &payload, &[]);
    assert_eq!(run.code, 69, "{}\n{}", run.stdout, run.stderr);
    assert!(!run.json()["errors"].as_array().unwrap().is_empty());
    // Back again: the replay of the same payload lands it.
    std::fs::rename(&away, &repo.bare).unwrap();
    let run = repo.run_in(&wd, &payload, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(repo
        .show_str("main", "jobs/api.json")
        .contains("sami/api:1.4.2"));
}

#[test]
fn credentials_in_the_repo_url_never_show() {
    let repo = Repo::new();
    // Port 1 on loopback refuses connections immediately.
    let run = repo.run_remote(
        "http://deploy:s3cr3t-t0ken@127.0.0.1:1/jobs.git",
        "json",
        &kv("images/nginx", "1.27", 1),
    );
    assert_eq!(run.code, 69, "{}\n{}", run.stdout, run.stderr);
    assert!(
        !run.stdout.contains("s3cr3t") && !run.stderr.contains("s3cr3t"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout.contains("http://***@127.0.0.1:1/jobs.git"),
        "{}",
        run.stdout
    );
}

#[test]
fn rejected_pushes_that_never_succeed_exit_75_and_change_nothing() {
    let repo = Repo::new();
    let hook = repo.bare.join("hooks/pre-receive");
    std::fs::write(&hook, "#!/bin/sh\necho 'frozen by policy' >&2\nexit 1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let head = repo.head("main");
    let run = repo.run(&api_payload("1.4.2", 3), &["--push-attempts", "2"]);
    assert_eq!(run.code, 75, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.actions().iter().all(|(s, _)| s == "failed"),
        "{}",
        run.stdout
    );
    assert_eq!(repo.head("main"), head);
}

#[test]
fn concurrent_runs_on_separate_machines_all_land() {
    // Five apps, five images, five tag2git processes with their own workdirs racing to push.
    let mut files = Vec::new();
    for i in 0..5 {
        let app = format!("{{\n  \"id\": \"/svc{i}\",\n  \"container\": {{ \"docker\": {{ \"image\": \"registry.local/team/svc{i}:1.0.0\" }} }}\n}}\n");
        files.push((format!("apps/svc{i}.json"), app.into_bytes()));
    }
    let repo = Repo::with_files(&files);
    let children: Vec<_> = (0..5)
        .map(|i| {
            let payload = kv(
                &format!("images/registry.local/team/svc{i}"),
                "2.0.0",
                100 + i,
            );
            spawn(
                repo.command(&repo.workdir(), &["--push-attempts", "20"]),
                payload.to_string().as_bytes(),
                Some(7),
            )
        })
        .collect();
    for child in children {
        let run = finish(child.wait_with_output().unwrap());
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    }
    for i in 0..5 {
        let app = repo.show_str("main", &format!("apps/svc{i}.json"));
        assert!(
            app.contains(&format!("svc{i}:2.0.0")),
            "update {i} lost:\n{app}"
        );
    }
    assert_eq!(
        repo.commit_count("main"),
        6,
        "one commit per run, linear history"
    );
    assert_eq!(
        repo.git(&["rev-list", "--merges", "--count", "main"])
            .trim(),
        "0"
    );
}

#[test]
fn concurrent_runs_on_one_workdir_serialize() {
    let repo = Repo::new();
    let wd = repo.workdir();
    let a = spawn(
        repo.command(&wd, &[]),
        kv("images/nginx", "1.27", 1).to_string().as_bytes(),
        None,
    );
    let b = spawn(
        repo.command(&wd, &[]),
        kv("images/redis", "7.4", 2).to_string().as_bytes(),
        None,
    );
    for child in [a, b] {
        let run = finish(child.wait_with_output().unwrap());
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    }
    let group = repo.show_str("main", "groups/prod.json");
    assert!(
        group.contains("\"nginx:1.27\"") && group.contains("\"redis:7.4\""),
        "{group}"
    );
}

#[test]
fn keyprefix_with_folders_and_several_images_makes_one_commit() {
    let repo = Repo::new();
    let before = repo.commit_count("main");
    let payload = json!([
        {"Key":"images/","CreateIndex":1,"ModifyIndex":1,"LockIndex":0,"Flags":0,"Value":null,"Session":""},
        kv("images/nginx", "1.27", 20),
        kv("images/redis", "7.4", 21),
        api_payload("1.4.2", 22),
    ]);
    let run = repo.run(&payload, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(repo.commit_count("main"), before + 1);
    let msg = repo.message("main");
    assert!(msg.starts_with("Update 3 images"), "{msg}");
    assert_eq!(msg.matches("Consul-Key: ").count(), 3, "{msg}");
}

#[test]
fn usage_errors_exit_64() {
    let repo = Repo::new();
    for extra in [
        &["--branch", "-x"][..],
        &["--author", "nobody"][..],
        &["--push-branch", "a..b"][..],
    ] {
        let run = repo.run(&kv("images/nginx", "1.27", 1), extra);
        assert_eq!(run.code, 64, "{extra:?}: {}", run.stdout);
    }
    let run = repo.run(&kv("images/nginx", "1.27", 1), &["--branch", "nope"]);
    assert_eq!(run.code, 64, "{}", run.stdout);
}

#[test]
fn sign_uses_the_users_git_signing_configuration() {
    use std::os::unix::fs::PermissionsExt;
    let repo = Repo::new();
    // A stand-in for gpg that speaks git's protocol (status line on fd 2, armored signature on stdout).
    let gpg = repo.tmp.path().join("fake-gpg");
    std::fs::write(
        &gpg,
        "#!/bin/sh\ncat >/dev/null\nprintf '\\n[GNUPG:] SIG_CREATED D 1 8 00 1 ABC\\n' >&2\nprintf -- '-----BEGIN PGP SIGNATURE-----\\n\\nZmFrZQ==\\n-----END PGP SIGNATURE-----\\n'\n",
    )
    .unwrap();
    std::fs::set_permissions(&gpg, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = repo.tmp.path().join("gitconfig");
    std::fs::write(
        &config,
        format!(
            "[gpg]\n\tprogram = {}\n[user]\n\tsigningkey = ABC\n",
            gpg.display()
        ),
    )
    .unwrap();
    let mut cmd = repo.command(&repo.workdir(), &["--sign"]);
    cmd.env("GIT_CONFIG_GLOBAL", &config);
    let run = run_cmd(
        cmd,
        kv("images/nginx", "1.27", 1).to_string().as_bytes(),
        None,
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let raw = repo.git(&["cat-file", "commit", "main"]);
    assert!(
        raw.contains("gpgsig -----BEGIN PGP SIGNATURE-----"),
        "{raw}"
    );
    // Without --sign the same setup makes an unsigned commit.
    let mut cmd = repo.command(&repo.workdir(), &[]);
    cmd.env("GIT_CONFIG_GLOBAL", &config);
    assert_eq!(
        run_cmd(
            cmd,
            kv("images/redis", "7.4", 2).to_string().as_bytes(),
            None
        )
        .code,
        0
    );
    assert!(!repo.git(&["cat-file", "commit", "main"]).contains("gpgsig"));
}

#[test]
fn lock_needs_consul_and_dry_run_takes_no_lock() {
    let repo = Repo::new();
    let head = repo.head("main");
    let lock = [
        "--lock",
        "shipwatch/locks/tag2git",
        "--consul",
        "127.0.0.1:1",
    ];
    let run = repo.run(&kv("images/nginx", "1.27", 1), &lock);
    assert_eq!(run.code, 69, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(repo.head("main"), head);
    let mut dry = lock.to_vec();
    dry.push("--dry-run");
    let run = repo.run(&kv("images/nginx", "1.27", 1), &dry);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.actions(),
        vec![(
            "planned".into(),
            "groups/prod.json#/apps/0/container/docker/image".into()
        )]
    );
}

#[test]
fn a_killed_run_leaves_no_lasting_damage() {
    let repo = Repo::new();
    let wd = repo.workdir();
    assert_eq!(
        repo.run_in(&wd, &kv("images/nginx", "1.27", 1), &[]).code,
        0
    );
    // What a run killed mid-way leaves behind: git's index lock and an edited, uncommitted file.
    std::fs::write(wd.join(".git/index.lock"), "").unwrap();
    std::fs::write(wd.join("jobs/web.json"), "garbage").unwrap();
    let run = repo.run_in(&wd, &kv("images/redis", "7.4", 2), &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("removed stale git lock"),
        "{}",
        run.stderr
    );
    assert_eq!(
        repo.show("main", "jobs/web.json"),
        fixture_files()[0].1,
        "leftover edit not committed"
    );
    assert!(repo
        .show_str("main", "groups/prod.json")
        .contains("\"redis:7.4\""));
}

#[test]
fn symlinked_job_files_are_never_followed_or_edited() {
    let repo = Repo::new();
    let n = repo.workdir();
    let dir = repo.tmp.path().join(n.file_name().unwrap());
    repo.git_in(
        repo.tmp.path(),
        &["clone", "--quiet", "jobs.git", dir.to_str().unwrap()],
    );
    std::os::unix::fs::symlink("web.json", dir.join("jobs/web-link.json")).unwrap();
    repo.git_in(&dir, &["add", "jobs/web-link.json"]);
    repo.git_in(&dir, &["commit", "--quiet", "-m", "link"]);
    repo.git_in(&dir, &["push", "--quiet", "origin", "HEAD:main"]);
    let run = repo.run(&kv("images/python", "3.12", 3), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let targets: Vec<String> = run.actions().into_iter().map(|(_, t)| t).collect();
    assert!(
        targets.contains(&"jobs/web.json#/container/docker/image".to_string()),
        "{targets:?}"
    );
    assert!(
        !targets.iter().any(|t| t.starts_with("jobs/web-link.json")),
        "{targets:?}"
    );
    assert_eq!(
        repo.git(&["ls-tree", "main", "jobs/web-link.json"])
            .split_whitespace()
            .next(),
        Some("120000")
    );
}

#[test]
fn with_lock_only_the_holder_acts() {
    use devstack::consul::{Consul, ConsulOptions};
    let consul = Consul::start(ConsulOptions::default()).unwrap();
    let repo = Repo::new();
    let key = "shipwatch/locks/tag2git";
    let lock = ["--lock", key, "--consul", &consul.url()];
    // Free lock: this run takes it, acts, and releases it.
    let run = repo.run(&kv("images/nginx", "1.27", 1), &lock);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(repo
        .show_str("main", "groups/prod.json")
        .contains("\"nginx:1.27\""));
    assert_eq!(
        consul.kv_get(key).map(|e| e.session).unwrap_or_default(),
        "",
        "released"
    );
    // Held by another agent's session: exit 0, nothing done.
    let session: serde_json::Value = ureq::put(&format!("{}/v1/session/create", consul.url()))
        .send(r#"{"TTL":"30s"}"#)
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let id = session["ID"].as_str().unwrap();
    let acquired = ureq::put(&format!("{}/v1/kv/{key}?acquire={id}", consul.url()))
        .send("other agent")
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert_eq!(acquired.trim(), "true");
    let head = repo.head("main");
    let run = repo.run(&kv("images/redis", "7.4", 2), &lock);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.actions(), vec![("skipped".into(), key.to_string())]);
    assert_eq!(repo.head("main"), head);
}

#[test]
fn text_from_job_files_cannot_forge_trailers() {
    let evil = r#"{"id": "/x\n\nConsul-Key: images/nginx\nConsul-Modify-Index: 999999", "container": {"docker": {"image": "sami/api:1"}}}"#;
    let repo = Repo::with_files(&[("apps/x.json".into(), evil.as_bytes().to_vec())]);
    let run = repo.run(&kv("images/sami/api", "2", 5), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let trailers = repo.git(&["log", "-1", "--format=%(trailers)", "main"]);
    assert_eq!(
        trailers.trim(),
        "Consul-Key: images/sami/api\nConsul-Modify-Index: 5\nConsul-Value: docker.io/sami/api:2\nConsul-Index: 4242"
    );
    // The id stays on its body line (control characters replaced), so no line of the message
    // starts with a forged trailer.
    let msg = repo.message("main");
    assert!(
        msg.contains(
            "(/x\u{FFFD}\u{FFFD}Consul-Key: images/nginx\u{FFFD}Consul-Modify-Index: 999999)"
        ),
        "{msg}"
    );
    assert!(
        !msg.lines()
            .any(|l| l.starts_with("Consul-Key: images/nginx")),
        "{msg}"
    );
}
