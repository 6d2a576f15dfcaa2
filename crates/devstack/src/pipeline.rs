//! The delivery pipeline assembled from devstack's parts, for the demo and the end-to-end tests:
//! the doubles, a bare Git repository with sample Marathon and Chronos job files, the git2consul
//! stand-in, and the Consul watches from `consul-config/` run by the watch runner exactly as an
//! agent runs them, with the built handler binaries.
//!
//! With `stack.consul_bin` set, a real `consul agent -dev` replaces the Consul double and runs
//! the watches itself; each handler is then started through a tiny recorder script (written into
//! the pipeline's temp dir) that keeps what the agent gave it (stdin, `CONSUL_INDEX`) and what it
//! answered (stdout, stderr, exit code), so [`Pipeline::invocations`] reads the same either way.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::git2consul::{self, MirrorReport};
use crate::runner::{self, Invocation, Runner, RunnerOptions, WatchSpec};
use crate::stack::{ConsulServer, Stack, StackOptions};

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

/// Who runs the watches.
pub enum Watches {
    /// devstack's watch runner (against the Consul double).
    Runner(Runner),
    /// The real agent; invocations are read from the recorder's directory. `since` (ns since the
    /// epoch) forgets the invocations before the last reload.
    Agent { record_dir: PathBuf, since: u128 },
}

/// The recorder the real agent runs in front of each handler: `recorder DIR WATCH HANDLER ARGS…`
/// keeps stdin, CONSUL_INDEX, stdout, stderr and the exit code (written last) in a new directory
/// `DIR/<start ns>-<pid>`, and exits with the handler's code. The handler gets the same stdin,
/// arguments and environment as without it.
const RECORDER: &str = r#"#!/bin/sh
dir=$1; watch=$2; shift 2
inv="$dir/$(date +%s%N)-$$"
mkdir -p "$inv" || exit 1
printf '%s' "$watch" > "$inv/watch"
printf '%s' "${CONSUL_INDEX-}" > "$inv/index"
cat > "$inv/stdin"
"$@" < "$inv/stdin" > "$inv/stdout" 2> "$inv/stderr"
code=$?
printf '%s' "$code" > "$inv/exit.tmp" && mv "$inv/exit.tmp" "$inv/exit"
exit $code
"#;

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Finished invocations recorded in `dir` (started at or after `since`), oldest first.
pub fn recorded_invocations(dir: &Path, since: u128) -> Vec<Invocation> {
    let mut names: Vec<(u128, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let ns: u128 = name.split('-').next()?.parse().ok()?;
            (ns >= since).then(|| (ns, e.path()))
        })
        .collect();
    names.sort();
    let read = |p: &Path, f: &str| std::fs::read(p.join(f)).unwrap_or_default();
    let text = |p: &Path, f: &str| String::from_utf8_lossy(&read(p, f)).into_owned();
    names
        .into_iter()
        .filter_map(|(_, p)| {
            let exit: i32 = text(&p, "exit").trim().parse().ok()?;
            let now = Instant::now();
            Some(Invocation {
                watch: text(&p, "watch").trim().parse().ok()?,
                consul_index: text(&p, "index").trim().parse().unwrap_or(0),
                stdin: read(&p, "stdin"),
                exit_code: Some(exit),
                stdout: text(&p, "stdout"),
                stderr: text(&p, "stderr"),
                started: now,
                finished: now,
            })
        })
        .collect()
}

/// Writes the recorder script into `dir` and returns its path.
pub fn write_recorder(dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("record-invocation");
    std::fs::write(&path, RECORDER)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// A running pipeline. Dropping it stops the runner (or the agent) and the doubles and removes
/// the temp dir.
pub struct Pipeline {
    pub watches: Watches,
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

/// Points a watch's handler at the built binary: `args[0]` naming one of the handlers (bare, or
/// an install path such as `/usr/local/bin/kv2jobs`) becomes `bin_dir/<handler>`.
pub fn use_built_handler(spec: &mut WatchSpec, bin_dir: &Path) {
    let Some(arg0) = spec.args.first_mut() else {
        return;
    };
    let name = Path::new(arg0.as_str())
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    if crate::bins::HANDLERS.contains(&name.as_str()) {
        *arg0 = bin_dir.join(name).display().to_string();
    }
}

/// Loads the three handlers' watches and points them at this pipeline's repository, workdir and
/// built handlers.
fn load_watches(
    config_dir: &Path,
    bin_dir: &Path,
    bare: &Path,
    workdir: &Path,
) -> Result<Vec<(String, WatchSpec)>, PipelineError> {
    let mut out = Vec::new();
    for handler in crate::bins::HANDLERS {
        let path = config_dir.join(format!("{handler}.json"));
        let specs = runner::load_watches(&path).map_err(|e| fail("load consul-config", e))?;
        for mut spec in specs {
            spec.token = None;
            use_built_handler(&mut spec, bin_dir);
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

/// The committer identity of tag2git's commits (the agent's environment in production).
fn committer() -> Vec<(String, String)> {
    vec![
        ("GIT_COMMITTER_NAME".into(), "tag2git".into()),
        ("GIT_COMMITTER_EMAIL".into(), "tag2git@example.com".into()),
    ]
}

impl Pipeline {
    /// Starts everything and seeds the repository and KV (git2consul's first sync). The watches
    /// then fire as an agent's do at start: kv2jobs deploys the sample jobs, tasks2consul
    /// registers their tasks.
    pub fn start(opts: PipelineOptions) -> Result<Pipeline, PipelineError> {
        let mut stack_opts = opts.stack.clone();
        stack_opts.agent_env.extend(opts.env.clone());
        stack_opts.agent_env.extend(committer());
        let stack = Stack::start(stack_opts).map_err(|e| fail("start devstack", e))?;
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
        env.extend(committer());
        let specs: Vec<WatchSpec> = watches.into_iter().map(|(_, s)| s).collect();
        let runner_options = RunnerOptions {
            consul_url: stack.consul.url(),
            env,
            path: vec![opts.bin_dir.clone()],
            retry_base: Duration::from_millis(200),
            ..RunnerOptions::default()
        };
        let watches = match &stack.consul {
            ConsulServer::Double(_) => Watches::Runner(
                Runner::start(specs.clone(), runner_options.clone())
                    .map_err(|e| fail("start the watch runner", e))?,
            ),
            ConsulServer::Agent(agent) => {
                let record_dir = dir.path().join("invocations");
                std::fs::create_dir_all(&record_dir).map_err(|e| fail("recorder", e))?;
                let recorder = write_recorder(dir.path()).map_err(|e| fail("recorder", e))?;
                let json: Vec<Value> = specs
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let mut s = s.clone();
                        let mut args = vec![
                            recorder.display().to_string(),
                            record_dir.display().to_string(),
                            i.to_string(),
                        ];
                        args.append(&mut s.args);
                        s.args = args;
                        s.to_agent_json()
                    })
                    .collect();
                let since = now_ns();
                agent
                    .set_watches(&json)
                    .map_err(|e| fail("install the watches in the agent", e))?;
                Watches::Agent { record_dir, since }
            }
        };
        Ok(Pipeline {
            watches,
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
        match (&mut self.watches, &self.stack.consul) {
            (Watches::Agent { since, .. }, ConsulServer::Agent(agent)) => {
                *since = now_ns();
                agent.reload().map_err(|e| fail("consul reload", e))
            }
            (w, _) => {
                let fresh = Runner::start(self.specs.clone(), self.runner_options.clone())
                    .map_err(|e| fail("restart the watch runner", e))?;
                if let Watches::Runner(old) = std::mem::replace(w, Watches::Runner(fresh)) {
                    old.stop();
                }
                Ok(())
            }
        }
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
        let all = match &self.watches {
            Watches::Runner(r) => r.invocations(),
            Watches::Agent { record_dir, since } => recorded_invocations(record_dir, *since),
        };
        all.into_iter()
            .filter(|i| i.watch == w && i.exit_code.is_some())
            .collect()
    }

    /// CI's step: writes an image reference (or a bare tag) into KV.
    pub fn ci_publish(&self, key: &str, value: &str) {
        if let Err(e) = self.stack.consul.kv_put(key, value.as_bytes()) {
            // The step that waits for its effect fails with a deadline naming it.
            log::error!("CI publish of {key}: {e}");
        }
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
            .unwrap_or_else(|e| {
                // Polled: the next poll asks again; a lasting error ends in the step's deadline.
                log::warn!("catalog read: {e}");
                Vec::new()
            })
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
