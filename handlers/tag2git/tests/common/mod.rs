//! Test harness: real bare repositories in temp dirs, the built tag2git binary run as the Consul agent
//! runs it (payload on stdin, CONSUL_INDEX in env), and git isolated from the host's configuration.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use serde_json::{json, Value};

pub const AUTHOR: &str = "CI Bot <ci@example.org>";
pub const DIGEST: &str = "sha256:7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa";

/// Environment that makes git hermetic (no global/system config, fixed identities).
pub fn git_env(cmd: &mut Command, home: &Path) {
    cmd.env("HOME", home)
        .env_remove("XDG_CACHE_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Human")
        .env("GIT_AUTHOR_EMAIL", "human@example.org")
        .env("GIT_COMMITTER_NAME", "Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.org")
        .env_remove("CONSUL_INDEX")
        .env("RUST_LOG", "info");
}

/// A KV entry as the agent writes it.
pub fn kv(key: &str, value: &str, modify_index: u64) -> Value {
    json!({"Key": key, "CreateIndex": modify_index, "ModifyIndex": modify_index, "LockIndex": 0, "Flags": 0,
           "Value": base64::engine::general_purpose::STANDARD.encode(value), "Session": ""})
}

/// The fixture job files every repository starts with (path, bytes).
pub fn fixture_files() -> Vec<(String, Vec<u8>)> {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let read = |p: &str| std::fs::read(shared.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let crlf_api = "{\r\n  \"id\": \"/sami/api\",\r\n  \"instances\": 3,\r\n  \"cpus\": 0.50,\r\n  \"mem\": 1.28e2,\r\n  \"container\": {\r\n    \"type\": \"DOCKER\",\r\n    \"docker\": {\r\n      \"image\": \"registry.local:5000/sami/api:1.4.1\",\r\n      \"forcePullImage\": false\r\n    }\r\n  },\r\n  \"env\": { \"GREETING\": \"h\\u00e9llo \\\"w\\\"\" }\r\n}\r\n";
    let compact_worker = r#"{"id":"/sami/worker","cmd":"./worker --queue=jobs","container":{"docker":{"image":"registry.local:5000/sami/api:1.4.1","parameters":[{"key":"log-driver","value":"none"}]},"type":"DOCKER"},"cpus":1.0,"mem":256,"labels":{"z":"1","a":"2"}}"#;
    let group = r#"{
    "id": "/prod",
    "groups": [
        {
            "id": "/prod/backend",
            "apps": [
                { "id": "/prod/backend/api", "container": { "type": "DOCKER", "docker": { "image": "registry.local:5000/sami/api:1.4.0" } } },
                { "id": "/prod/backend/py", "container": { "type": "DOCKER", "docker": { "image": "docker.io/library/python:3.10" } } }
            ],
            "groups": [
                { "id": "/prod/backend/deep", "apps": [ { "id": "/prod/backend/deep/cache", "container": { "docker": { "image": "redis:7.2" } } } ] }
            ]
        }
    ],
    "apps": [ { "id": "/prod/edge", "container": { "docker": { "image": "nginx:1.25" } } } ]
}"#;
    vec![
        ("jobs/web.json".into(), read("marathon/app-docker-1.5.json")),
        ("jobs/simple.json".into(), read("marathon/app-simple.json")),
        ("jobs/cron.json".into(), read("chronos/job-docker.json")),
        ("jobs/api.json".into(), crlf_api.as_bytes().to_vec()),
        (
            "jobs/worker.json".into(),
            compact_worker.as_bytes().to_vec(),
        ),
        ("groups/prod.json".into(), group.as_bytes().to_vec()),
        (
            "responses/get-app.json".into(),
            read("marathon/get-app-response.json"),
        ),
        (
            "broken.json".into(),
            b"{\"id\": \"/broken\", \"container\": {\"docker\": {\"image\": \"python:3\"}},}"
                .to_vec(),
        ),
        (
            "package.json".into(),
            br#"{"name":"x","image":"python:3"}"#.to_vec(),
        ),
        ("README.md".into(), b"image: python:3\n".to_vec()),
    ]
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// A bare repository seeded with files, plus a scratch area.
pub struct Repo {
    pub tmp: tempfile::TempDir,
    pub bare: PathBuf,
}

/// What a tag2git run produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// (status, target) of every action.
    pub fn actions(&self) -> Vec<(String, String)> {
        self.json()["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["status"].as_str().unwrap().to_string(),
                    a["target"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

impl Repo {
    pub fn new() -> Repo {
        Repo::with_files(&fixture_files())
    }

    pub fn with_files(files: &[(String, Vec<u8>)]) -> Repo {
        let tmp = tempfile::tempdir().unwrap();
        let bare = tmp.path().join("jobs.git");
        let repo = Repo { tmp, bare };
        repo.git_in(
            repo.tmp.path(),
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                "jobs.git",
            ],
        );
        let seed = repo.tmp.path().join("seed");
        repo.git_in(repo.tmp.path(), &["clone", "--quiet", "jobs.git", "seed"]);
        for (path, bytes) in files {
            let p = seed.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        repo.git_in(&seed, &["add", "--all"]);
        repo.git_in(&seed, &["commit", "--quiet", "-m", "jobs"]);
        repo.git_in(&seed, &["push", "--quiet", "origin", "HEAD:main"]);
        repo
    }

    pub fn home(&self) -> PathBuf {
        let h = self.tmp.path().join("home");
        std::fs::create_dir_all(&h).unwrap();
        h
    }

    pub fn git_in(&self, dir: &Path, args: &[&str]) -> String {
        let mut cmd = Command::new("git");
        cmd.args(args).current_dir(dir);
        git_env(&mut cmd, &self.home());
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// git against the bare repository.
    pub fn git(&self, args: &[&str]) -> String {
        self.git_in(&self.bare, args)
    }

    pub fn show(&self, rev: &str, path: &str) -> Vec<u8> {
        let mut cmd = Command::new("git");
        cmd.args(["show", &format!("{rev}:{path}")])
            .current_dir(&self.bare);
        git_env(&mut cmd, &self.home());
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "git show {rev}:{path}");
        out.stdout
    }

    pub fn show_str(&self, rev: &str, path: &str) -> String {
        String::from_utf8(self.show(rev, path)).unwrap()
    }

    pub fn head(&self, branch: &str) -> String {
        self.git(&["rev-parse", &format!("refs/heads/{branch}")])
            .trim()
            .to_string()
    }

    pub fn commit_count(&self, branch: &str) -> usize {
        self.git(&["rev-list", "--count", &format!("refs/heads/{branch}")])
            .trim()
            .parse()
            .unwrap()
    }

    pub fn message(&self, rev: &str) -> String {
        self.git(&["log", "-1", "--format=%B", rev])
    }

    /// A human edits a file and pushes to main.
    pub fn human_edit(&self, path: &str, edit: impl Fn(&str) -> String) {
        let n = RUNS.fetch_add(1, Ordering::SeqCst);
        let name = format!("human{n}");
        self.git_in(self.tmp.path(), &["clone", "--quiet", "jobs.git", &name]);
        let dir = self.tmp.path().join(&name);
        let text = std::fs::read_to_string(dir.join(path)).unwrap();
        std::fs::write(dir.join(path), edit(&text)).unwrap();
        self.git_in(&dir, &["commit", "--quiet", "-am", "pin by hand"]);
        self.git_in(&dir, &["push", "--quiet", "origin", "HEAD:main"]);
    }

    /// A fresh workdir path (never shared unless a test passes the same one on purpose).
    pub fn workdir(&self) -> PathBuf {
        let n = RUNS.fetch_add(1, Ordering::SeqCst);
        self.tmp.path().join(format!("wd{n}"))
    }

    /// The command for one run with a fresh workdir; callers add flags.
    pub fn command(&self, workdir: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tag2git"));
        cmd.arg("--repo")
            .arg(&self.bare)
            .arg("--workdir")
            .arg(workdir)
            .args(["--author", AUTHOR, "--timeout", "60s"])
            .args(extra);
        if !extra.contains(&"--output") {
            cmd.args(["--output", "json"]);
        }
        git_env(&mut cmd, &self.home());
        cmd
    }

    /// A run against another remote (`url`, e.g. one with credentials), with a fresh workdir and
    /// a short deadline.
    pub fn run_remote(&self, url: &str, output: &str, payload: &Value) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tag2git"));
        cmd.args(["--repo", url, "--workdir"])
            .arg(self.workdir())
            .args(["--output", output, "--timeout", "20s"]);
        git_env(&mut cmd, &self.home());
        run_cmd(cmd, payload.to_string().as_bytes(), None)
    }

    pub fn run(&self, payload: &Value, extra: &[&str]) -> Run {
        self.run_in(&self.workdir(), payload, extra)
    }

    pub fn run_in(&self, workdir: &Path, payload: &Value, extra: &[&str]) -> Run {
        run_cmd(
            self.command(workdir, extra),
            payload.to_string().as_bytes(),
            Some(4242),
        )
    }
}

pub fn spawn(mut cmd: Command, payload: &[u8], consul_index: Option<u64>) -> std::process::Child {
    if let Some(i) = consul_index {
        cmd.env("CONSUL_INDEX", i.to_string());
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(payload).unwrap();
    child
}

pub fn finish(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn run_cmd(cmd: Command, payload: &[u8], consul_index: Option<u64>) -> Run {
    finish(
        spawn(cmd, payload, consul_index)
            .wait_with_output()
            .unwrap(),
    )
}
