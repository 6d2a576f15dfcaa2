//! Real bare Git repositories in temp dirs for tag2git: seeded with job files, with helpers to
//! snapshot every ref (to prove "nothing changed"), read trailers, and install server-side hooks
//! that reject pushes (a remote refusing writes, as a protected branch does).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use serde_json::{json, Value};

use crate::harness::{hermetic_env, Invocation};

pub const API_KEY: &str = "images/registry.local:5000/sami/api";

/// The images of the seed repository: (key under images/, file, image before).
pub const IMAGES: [(&str, &str, &str); 5] = [
    (
        "images/registry.local:5000/sami/api",
        "marathon/sami/api.json",
        "registry.local:5000/sami/api:1.4.1",
    ),
    (
        "images/registry.local:5000/sami/web",
        "marathon/sami/web.json",
        "registry.local:5000/sami/web:2.0.0",
    ),
    ("images/nginx", "marathon/edge.json", "nginx:1.25"),
    ("images/redis", "marathon/cache.json", "redis:7.2"),
    ("images/python", "chronos/report.json", "python:3.11"),
];

fn seed_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = IMAGES
        .iter()
        .filter(|(_, f, _)| f.starts_with("marathon/"))
        .map(|(_, file, image)| {
            let id = file
                .trim_start_matches("marathon")
                .trim_end_matches(".json");
            (
                file.to_string(),
                format!(
                    "{{\n  \"id\": \"{id}\",\n  \"instances\": 2,\n  \"cpus\": 0.25,\n  \"mem\": 128,\n  \"container\": {{\n    \"type\": \"DOCKER\",\n    \"docker\": {{ \"image\": \"{image}\" }}\n  }}\n}}\n"
                ),
            )
        })
        .collect();
    files.push((
        "chronos/report.json".into(),
        "{\"name\":\"report\",\"schedule\":\"R/2026-01-01T00:00:00Z/PT1H\",\"command\":\"python report.py\",\"container\":{\"type\":\"DOCKER\",\"image\":\"python:3.11\"}}\n".into(),
    ));
    files.push(("README.md".into(), "jobs\n".into()));
    files
}

static N: AtomicUsize = AtomicUsize::new(0);

/// A bare repository (branch main) plus a scratch area for workdirs and clones.
pub struct Repo {
    pub tmp: tempfile::TempDir,
    pub bare: PathBuf,
}

impl Repo {
    pub fn new() -> Repo {
        let tmp = tempfile::tempdir().unwrap();
        let bare = tmp.path().join("jobs.git");
        let repo = Repo { tmp, bare };
        repo.git_in(
            repo.tmp.path(),
            &["init", "-q", "--bare", "--initial-branch=main", "jobs.git"],
        );
        let seed = repo.tmp.path().join("seed");
        repo.git_in(repo.tmp.path(), &["clone", "-q", "jobs.git", "seed"]);
        for (path, text) in seed_files() {
            let p = seed.join(&path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        repo.git_in(&seed, &["add", "--all"]);
        repo.git_in(&seed, &["commit", "-q", "-m", "jobs"]);
        repo.git_in(&seed, &["push", "-q", "origin", "HEAD:main"]);
        repo
    }

    pub fn home(&self) -> PathBuf {
        let h = self.tmp.path().join("home");
        std::fs::create_dir_all(&h).unwrap();
        h
    }

    pub fn git_in(&self, dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env_clear()
            .envs(hermetic_env(&self.home()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn git(&self, args: &[&str]) -> String {
        self.git_in(&self.bare, args)
    }

    /// Every ref and the object it names: equal snapshots mean nothing was pushed.
    pub fn refs(&self) -> String {
        self.git(&["for-each-ref", "--format=%(refname) %(objectname)"])
    }

    pub fn commit_count(&self) -> usize {
        self.git(&["rev-list", "--count", "refs/heads/main"])
            .trim()
            .parse()
            .unwrap()
    }

    pub fn file(&self, path: &str) -> String {
        self.git(&["show", &format!("main:{path}")])
    }

    /// Every commit message and patch on every ref (where a leaked secret would be kept forever).
    pub fn full_history(&self) -> String {
        self.git(&["log", "--all", "-p", "--format=%H%n%an <%ae>%n%B"])
    }

    /// Values of a trailer over the history of main, newest first.
    pub fn trailer_values(&self, name: &str) -> Vec<String> {
        self.git(&[
            "log",
            &format!("--format=%(trailers:key={name},valueonly)"),
            "main",
        ])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect()
    }

    /// A fresh workdir path.
    pub fn workdir(&self) -> PathBuf {
        self.tmp
            .path()
            .join(format!("wd{}", N.fetch_add(1, Ordering::SeqCst)))
    }

    /// A tag2git invocation against this repository with its own workdir.
    pub fn tag2git(&self, payload: impl Into<Vec<u8>>) -> Invocation {
        self.tag2git_in(&self.workdir(), payload)
    }

    pub fn tag2git_in(&self, workdir: &Path, payload: impl Into<Vec<u8>>) -> Invocation {
        Invocation::new("tag2git", &self.home())
            .arg("--repo")
            .arg(self.bare.as_os_str())
            .arg("--workdir")
            .arg(workdir.as_os_str())
            .args(["--author", "CI Bot <ci@example.org>", "--timeout", "30s"])
            .stdin(payload)
    }

    /// Installs a pre-receive hook that rejects every push while `<tmp>/reject` exists, and the
    /// first `n` pushes after a counter is armed with `reject_next(n)`.
    pub fn install_rejecting_hook(&self) {
        let hook = self.bare.join("hooks/pre-receive");
        let flag = self.tmp.path().join("reject");
        let counter = self.tmp.path().join("reject-count");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\n\
                 cat >/dev/null\n\
                 if [ -e '{flag}' ]; then echo 'protected branch: pushes are frozen' >&2; exit 1; fi\n\
                 if [ -e '{vanish}' ]; then rm -f '{vanish}'; mv '{bare}' '{bare}.gone'; echo 'repository moved' >&2; exit 1; fi\n\
                 if [ -s '{counter}' ]; then n=$(cat '{counter}'); if [ \"$n\" -gt 0 ]; then echo $((n-1)) > '{counter}'; echo 'rejected by hook' >&2; exit 1; fi; fi\n\
                 exit 0\n",
                flag = flag.display(),
                counter = counter.display(),
                vanish = self.tmp.path().join("vanish").display(),
                bare = self.bare.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    pub fn reject_all(&self, on: bool) {
        let flag = self.tmp.path().join("reject");
        if on {
            std::fs::write(flag, "").unwrap();
        } else {
            let _ = std::fs::remove_file(flag);
        }
    }

    /// The next push moves the repository away (the remote disappears mid-run) and fails.
    pub fn vanish_on_next_push(&self) {
        std::fs::write(self.tmp.path().join("vanish"), "").unwrap();
    }

    /// Brings a vanished repository back.
    pub fn come_back(&self) {
        let gone = self.bare.with_extension("git.gone");
        if gone.exists() {
            std::fs::rename(gone, &self.bare).unwrap();
        }
    }

    pub fn reject_next(&self, n: usize) {
        std::fs::write(self.tmp.path().join("reject-count"), n.to_string()).unwrap();
    }

    /// A human pushes an unrelated commit (moves the tip under a running tag2git).
    pub fn human_commit(&self, path: &str, text: &str) {
        let name = format!("human{}", N.fetch_add(1, Ordering::SeqCst));
        self.git_in(self.tmp.path(), &["clone", "-q", "jobs.git", &name]);
        let dir = self.tmp.path().join(&name);
        std::fs::write(dir.join(path), text).unwrap();
        self.git_in(&dir, &["add", "--all"]);
        self.git_in(&dir, &["commit", "-q", "-m", "human change"]);
        self.git_in(&dir, &["push", "-q", "origin", "HEAD:main"]);
    }
}

/// A KV entry as the agent writes it (value base64-encoded).
pub fn kv(key: &str, value: &[u8], modify_index: u64) -> Value {
    json!({"Key": key, "CreateIndex": modify_index, "ModifyIndex": modify_index, "LockIndex": 0,
           "Flags": 0, "Value": base64::engine::general_purpose::STANDARD.encode(value), "Session": ""})
}

/// A keyprefix payload of entries.
pub fn payload(entries: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&Value::Array(entries.to_vec())).unwrap()
}
