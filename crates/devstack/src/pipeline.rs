//! The delivery pipeline assembled from devstack's parts, for the demo and the end-to-end tests:
//! the doubles, a bare Git repository with sample Marathon and Chronos job files, the git2consul
//! stand-in, and the Consul watches from `consul-config/` run by the watch runner exactly as an
//! agent runs them, with the built handler binaries.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::git2consul::{self, MirrorReport};
use crate::runner::{self, Invocation, Runner, RunnerOptions, WatchSpec};
use crate::stack::{Stack, StackOptions};

/// The git2consul repository name and branch (KV prefix `jobs/main/`, ref key `jobs/main.ref`).
pub const REPO_NAME: &str = "jobs";
pub const BRANCH: &str = "main";
/// The KV key CI writes for the demo's API image (a bare tag resolves against it).
pub const API_IMAGE_KEY: &str = "images/registry.local:5000/sami/api";

/// Sample job files: two Marathon apps (one image each, both registered in Consul), one Chronos
/// job that runs the api image too, and a file that is not a job.
pub fn sample_files() -> Vec<(&'static str, String)> {
    vec![
        (
            "marathon/sami/api.json",
            r#"{
  "id": "/sami/api",
  "instances": 2,
  "cpus": 0.25,
  "mem": 128,
  "container": {
    "type": "DOCKER",
    "docker": {
      "image": "registry.local:5000/sami/api:1.4.1"
    },
    "portMappings": [
      { "containerPort": 8080, "hostPort": 0, "name": "http" }
    ]
  },
  "networks": [ { "mode": "container/bridge" } ],
  "labels": { "consul": "sami-api", "public": "tag" }
}
"#
            .to_string(),
        ),
        (
            "marathon/sami/web.json",
            r#"{
  "id": "/sami/web",
  "instances": 1,
  "cpus": 0.1,
  "mem": 64,
  "container": {
    "type": "DOCKER",
    "docker": { "image": "registry.local:5000/sami/web:2.0.0" }
  },
  "portDefinitions": [ { "port": 0, "name": "http" } ],
  "labels": { "consul": "true" }
}
"#
            .to_string(),
        ),
        (
            "chronos/api-cleanup.json",
            r#"{
  "name": "api-cleanup",
  "schedule": "R/2026-01-01T03:00:00Z/PT24H",
  "command": "api-cli cleanup --older-than 30d",
  "owner": "sami@example.com",
  "container": {
    "type": "DOCKER",
    "image": "registry.local:5000/sami/api:1.4.1"
  },
  "cpus": 0.1,
  "mem": 128
}
"#
            .to_string(),
        ),
        (
            "README.md",
            "# jobs\n\nMarathon apps and Chronos jobs, deployed by shipwatch.\n".to_string(),
        ),
    ]
}

#[derive(Debug, thiserror::Error)]
#[error("{step}: {reason}")]
pub struct PipelineError {
    pub step: String,
    pub reason: String,
}

pub fn fail(step: &str, reason: impl std::fmt::Display) -> PipelineError {
    PipelineError {
        step: step.to_string(),
        reason: reason.to_string(),
    }
}

/// Settings for [`Pipeline::start`].
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub stack: StackOptions,
    /// Where the handler binaries are (see `bins::handler_dir`).
    pub bin_dir: PathBuf,
    /// The repository's `consul-config/` directory.
    pub config_dir: PathBuf,
    /// Extra environment for the handlers (the simulated agent's environment).
    pub env: Vec<(String, String)>,
    /// Extra flags appended to a handler's `args`, by handler name.
    pub extra_args: Vec<(String, Vec<String>)>,
}

impl PipelineOptions {
    /// Defaults for tests: quick deployments, binaries next to the running test executable,
    /// the repository's consul-config/.
    pub fn for_tests() -> Result<PipelineOptions, PipelineError> {
        Ok(PipelineOptions {
            stack: StackOptions::default(),
            bin_dir: crate::bins::handler_dir().map_err(|e| fail("find handler binaries", e))?,
            config_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../consul-config"),
            env: vec![("RUST_LOG".into(), "info".into())],
            extra_args: Vec::new(),
        })
    }
}

/// A running pipeline. Dropping it stops the runner and the doubles and removes the temp dir.
pub struct Pipeline {
    pub runner: Runner,
    specs: Vec<WatchSpec>,
    runner_options: RunnerOptions,
    pub stack: Stack,
    pub bare: PathBuf,
    pub work: PathBuf,
    /// Indexes of the watches in `runner`, by handler name.
    pub watch_index: Vec<(String, usize)>,
    _dir: tempfile::TempDir,
}

/// Runs git with an argument vector; stdout on success.
pub fn git(cwd: &Path, args: &[&str]) -> Result<String, PipelineError> {
    let out = Command::new("git")
        .current_dir(cwd)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Sam Ops")
        .env("GIT_AUTHOR_EMAIL", "sam@example.com")
        .env("GIT_COMMITTER_NAME", "Sam Ops")
        .env("GIT_COMMITTER_EMAIL", "sam@example.com")
        .output()
        .map_err(|e| fail("git", e))?;
    if !out.status.success() {
        return Err(fail(
            &format!("git {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `cond` until it holds or `timeout` passes (the runner and the doubles work in their
/// own threads; there is nothing to block on).
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<(), PipelineError> {
    let end = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if cond() {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(fail(what, format!("not reached within {timeout:?}")));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Loads the three handlers' watches and points them at this pipeline's repository and workdir,
/// and at the built handlers (the configs call `/usr/local/bin/<handler>`).
fn load_watches(
    config_dir: &Path,
    bin_dir: &Path,
    bare: &Path,
    workdir: &Path,
) -> Result<Vec<(String, WatchSpec)>, PipelineError> {
    let mut out = Vec::new();
    for handler in crate::bins::HANDLERS {
        let path = config_dir.join(format!("{handler}.json"));
        let mut specs = runner::load_watches(&path).map_err(|e| fail("load consul-config", e))?;
        crate::bins::use_local_handlers(&mut specs, bin_dir);
        for mut spec in specs {
            spec.token = None;
            set_flag(&mut spec.args, "--repo", &bare.display().to_string());
            set_flag(&mut spec.args, "--workdir", &workdir.display().to_string());
            out.push((handler.to_string(), spec));
        }
    }
    Ok(out)
}

fn set_flag(args: &mut [String], flag: &str, value: &str) {
    if let Some(i) = args.iter().position(|a| a == flag) {
        if i + 1 < args.len() {
            args[i + 1] = value.to_string();
        }
    }
}

impl Pipeline {
    /// Starts everything and seeds the repository and KV (git2consul's first sync). The watches
    /// then fire as an agent's do at start: kv2jobs deploys the sample jobs, tasks2consul
    /// registers their tasks.
    pub fn start(opts: PipelineOptions) -> Result<Pipeline, PipelineError> {
        let stack = Stack::start(opts.stack.clone()).map_err(|e| fail("start devstack", e))?;
        let dir = tempfile::tempdir().map_err(|e| fail("temp dir", e))?;
        let bare = dir.path().join("jobs.git");
        let work = dir.path().join("seed");
        git(
            dir.path(),
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch",
                BRANCH,
                "jobs.git",
            ],
        )?;
        git(
            dir.path(),
            &[
                "clone",
                "--quiet",
                bare.to_str().unwrap_or_default(),
                "seed",
            ],
        )?;
        git(&work, &["checkout", "--quiet", "-B", BRANCH])?;
        for (path, body) in sample_files() {
            let p = work.join(path);
            std::fs::create_dir_all(p.parent().unwrap_or(&work)).map_err(|e| fail("seed", e))?;
            std::fs::write(&p, body).map_err(|e| fail("seed", e))?;
        }
        git(&work, &["add", "-A"])?;
        git(&work, &["commit", "--quiet", "-m", "Initial jobs"])?;
        git(&work, &["push", "--quiet", "origin", BRANCH])?;
        git2consul::mirror(&bare, REPO_NAME, BRANCH, &stack.consul.url())
            .map_err(|e| fail("git2consul first sync", e))?;

        let workdir = dir.path().join("tag2git-work");
        let mut watches = load_watches(&opts.config_dir, &opts.bin_dir, &bare, &workdir)?;
        for (handler, spec) in &mut watches {
            for (h, extra) in &opts.extra_args {
                if h == handler {
                    spec.args.extend(extra.iter().cloned());
                }
            }
        }
        let watch_index = watches
            .iter()
            .enumerate()
            .map(|(i, (h, _))| (h.clone(), i))
            .collect();
        // The agent's environment (PATH, HOME, ...) minus anything that would point the handlers
        // elsewhere, plus this stack's endpoints.
        let mut env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| {
                !(k.starts_with("CONSUL_")
                    || k.starts_with("MARATHON_")
                    || k.starts_with("CHRONOS_"))
            })
            .collect();
        env.extend(stack.env());
        env.extend(opts.env.clone());
        env.push(("GIT_COMMITTER_NAME".into(), "tag2git".into()));
        env.push(("GIT_COMMITTER_EMAIL".into(), "tag2git@example.com".into()));
        let specs: Vec<WatchSpec> = watches.into_iter().map(|(_, s)| s).collect();
        let runner_options = RunnerOptions {
            consul_url: stack.consul.url(),
            env,
            path: vec![opts.bin_dir.clone()],
            retry_base: Duration::from_millis(200),
            ..RunnerOptions::default()
        };
        let runner = Runner::start(specs.clone(), runner_options.clone())
            .map_err(|e| fail("start the watch runner", e))?;
        Ok(Pipeline {
            runner,
            specs,
            runner_options,
            stack,
            bare,
            work,
            watch_index,
            _dir: dir,
        })
    }

    /// What `consul reload` or an agent restart does: every watch plan is stopped and started
    /// again, and each fires at once with the current data. Earlier invocations are forgotten.
    pub fn restart_agent(&mut self) -> Result<(), PipelineError> {
        let fresh = Runner::start(self.specs.clone(), self.runner_options.clone())
            .map_err(|e| fail("restart the watch runner", e))?;
        let old = std::mem::replace(&mut self.runner, fresh);
        old.stop();
        Ok(())
    }

    /// The runner's index of `handler`'s watch.
    pub fn watch(&self, handler: &str) -> usize {
        self.watch_index
            .iter()
            .find(|(h, _)| h == handler)
            .map(|(_, i)| *i)
            .unwrap_or(usize::MAX)
    }

    /// Finished invocations of `handler`'s watch, oldest first.
    pub fn invocations(&self, handler: &str) -> Vec<Invocation> {
        let w = self.watch(handler);
        self.runner
            .invocations()
            .into_iter()
            .filter(|i| i.watch == w && i.exit_code.is_some())
            .collect()
    }

    /// CI's step: writes an image reference (or a bare tag) into KV.
    pub fn ci_publish(&self, key: &str, value: &str) {
        self.stack.consul.kv_put(key, value.as_bytes());
    }

    /// git2consul's step: mirrors the branch into KV (files first, `.ref` last).
    pub fn git2consul(&self) -> Result<MirrorReport, PipelineError> {
        git2consul::mirror(&self.bare, REPO_NAME, BRANCH, &self.stack.consul.url())
            .map_err(|e| fail("git2consul", e))
    }

    /// git in the bare repository.
    pub fn git_bare(&self, args: &[&str]) -> Result<String, PipelineError> {
        let mut full = vec!["--git-dir", self.bare.to_str().unwrap_or_default()];
        full.extend_from_slice(args);
        git(&self.work, &full)
    }

    /// A person's commit in the seed clone, pushed (e.g. pinning a tag back by hand).
    pub fn human_commit(&self, path: &str, body: &str, message: &str) -> Result<(), PipelineError> {
        git(
            &self.work,
            &["pull", "--quiet", "--ff-only", "origin", BRANCH],
        )?;
        let p = self.work.join(path);
        std::fs::create_dir_all(p.parent().unwrap_or(&self.work))
            .map_err(|e| fail("human commit", e))?;
        std::fs::write(&p, body).map_err(|e| fail("human commit", e))?;
        git(&self.work, &["add", "-A"])?;
        git(&self.work, &["commit", "--quiet", "-m", message])?;
        git(&self.work, &["push", "--quiet", "origin", BRANCH])?;
        Ok(())
    }

    /// The image of a Marathon app as Marathon reports it.
    pub fn marathon_image(&self, app_id: &str) -> Option<String> {
        self.stack.marathon.app(app_id).and_then(|a| {
            a.pointer("/container/docker/image")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
    }

    /// Running task ids of a Marathon app.
    pub fn marathon_tasks(&self, app_id: &str) -> Vec<String> {
        self.stack
            .marathon
            .app(app_id)
            .and_then(|a| a.get("tasks").and_then(Value::as_array).cloned())
            .unwrap_or_default()
            .iter()
            .filter(|t| {
                t.get("state")
                    .and_then(Value::as_str)
                    .is_none_or(|s| s == "TASK_RUNNING")
            })
            .filter_map(|t| t.get("id").and_then(Value::as_str).map(str::to_string))
            .collect()
    }

    /// `marathon-task-id` meta of every Consul service registered for `app_id`.
    pub fn consul_task_ids(&self, app_id: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .stack
            .consul
            .catalog_services()
            .iter()
            .filter(|s| s.meta.get("marathon-app-id").and_then(Value::as_str) == Some(app_id))
            .filter_map(|s| {
                s.meta
                    .get("marathon-task-id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}
