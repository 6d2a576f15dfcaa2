//! The watch runner: runs the script handlers of a Consul agent config's `watches` exactly as
//! the agent does (api/watch/plan.go, agent/watch_handler.go; reference §1.9 and §2):
//!
//! - one thread per watch doing blocking queries over HTTP (so it also works against a real
//!   Consul, e.g. `CONSUL_HTTP_ADDR`), with the watch's `token`;
//! - the first successful query always runs the handler (`null` for a missing key or empty
//!   prefix, `[]` for no events); afterwards only when the index moved AND the decoded result
//!   differs (reflect.DeepEqual); changes made while a handler runs are coalesced;
//! - a handler is `args` run without a shell, stdin = the result as one compact Go-style JSON
//!   line + `\n`, environment = the simulated agent's environment + `CONSUL_INDEX`;
//! - exit codes are only logged and recorded, never retried; invocations of one watch never
//!   overlap (different watches may run concurrently);
//! - query errors back off `retry_base × failures²`, capped at 36 × retry_base (the agent: 5s
//!   and 180s), and make the plan forget its index, so the first successful query after an
//!   error runs the handler again even when nothing changed (plan.go);
//! - an index that goes backwards resets the plan's index to 0 (WaitIndexVal.Next). For event
//!   watches, whose index is derived from random event IDs, this means a new event whose index
//!   is lower than the previous one is delivered twice: first pruned to the new events, then
//!   (after the non-blocking re-query) the whole buffer — the behaviour reported in
//!   hashicorp/consul#3742.
//!
//! Differences, on purpose: the deprecated `handler` field (run by the agent via `/bin/sh -c`)
//! and `handler_type: "http"` are rejected with a clear error; blocking queries use a short
//! `query_wait` (default 5s) instead of the server's 5 minutes, which changes nothing for the
//! handler (an unchanged index never runs it) but lets `stop()` return promptly. Only
//! `http://` and `https://` Consul addresses are supported (no `unix://`).
//!
//! ```no_run
//! use std::time::Duration;
//! use devstack::consul::{Consul, ConsulOptions};
//! use devstack::runner::{load_watches, Runner, RunnerOptions};
//!
//! let consul = Consul::start(ConsulOptions::default()).unwrap();
//! let specs = load_watches("consul-config/kv2jobs.json".as_ref()).unwrap();
//! let runner = Runner::start(
//!     specs,
//!     RunnerOptions {
//!         consul_url: consul.url(),
//!         env: vec![("PATH".into(), "/usr/bin:/bin".into())],
//!         retry_base: Duration::from_millis(50),
//!         ..RunnerOptions::default()
//!     },
//! )
//! .unwrap();
//! consul.kv_put("jobs/main.ref", b"0123abc");
//! assert!(runner.wait_for_invocations(0, 2, Duration::from_secs(5)));
//! for inv in runner.invocations() {
//!     println!("CONSUL_INDEX={} exit={:?}", inv.consul_index, inv.exit_code);
//! }
//! runner.stop();
//! ```

mod query;
mod spec;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use query::encode_path;
pub use spec::{load_watches, parse_watches, WatchSpec};

use crate::consul::util::go_json;

/// Errors loading watches or starting the runner.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("cannot read agent config {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("agent config {path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("agent config: {0}")]
    Config(String),
    /// A watch the agent would refuse (its message, e.g. "Must define a watch handler").
    #[error("watches[{index}]: {message}")]
    Invalid { index: usize, message: String },
    #[error("cannot start watch thread: {0}")]
    Spawn(std::io::Error),
}

/// How the runner reaches Consul and what the simulated agent's process looks like.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Consul's HTTP address (`http://127.0.0.1:8500`; a bare `host:port` means http).
    pub consul_url: String,
    /// The agent's environment, passed to every handler (plus CONSUL_INDEX). Its PATH is used
    /// to find a bare `args[0]`. Default: this process's environment.
    pub env: Vec<(String, String)>,
    /// Directories searched for a bare `args[0]` before the PATH in `env`.
    pub path: Vec<PathBuf>,
    /// Base of the error backoff (the agent uses 5s); tests scale it down.
    pub retry_base: Duration,
    /// `?wait=` of each blocking query (see the module doc).
    pub query_wait: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            consul_url: "http://127.0.0.1:8500".into(),
            env: std::env::vars().collect(),
            path: Vec::new(),
            retry_base: Duration::from_secs(5),
            query_wait: Duration::from_secs(5),
        }
    }
}

/// One handler run.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Index of the watch in the spec list.
    pub watch: usize,
    /// The CONSUL_INDEX the handler got.
    pub consul_index: u64,
    /// Exactly what was written to its stdin.
    pub stdin: Vec<u8>,
    /// Exit code; `None` when it could not be started or was killed by a signal.
    pub exit_code: Option<i32>,
    pub stdout: String,
    /// Standard error (or the reason it could not be started).
    pub stderr: String,
    pub started: Instant,
    pub finished: Instant,
}

struct Book {
    invocations: Vec<Invocation>,
    running: usize,
    stopped: bool,
}

struct Inner {
    book: Mutex<Book>,
    changed: Condvar,
    opts: RunnerOptions,
    base: String,
}

impl Inner {
    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> bool {
        self.book().stopped
    }

    /// Sleeps for the backoff unless stopped first; returns false when stopped.
    fn backoff(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut book = self.book();
        loop {
            if book.stopped {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            book = self
                .changed
                .wait_timeout(book, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A running set of watches. `stop()` (or drop) prevents further handler runs and waits for
/// running handlers; watch threads still inside a blocking query exit when it returns (at most
/// `query_wait` later) without running anything.
pub struct Runner {
    inner: Arc<Inner>,
}

impl Runner {
    pub fn start(specs: Vec<WatchSpec>, opts: RunnerOptions) -> Result<Runner, RunnerError> {
        for (index, s) in specs.iter().enumerate() {
            if s.args.is_empty() || s.args[0].is_empty() {
                return Err(RunnerError::Invalid {
                    index,
                    message: "Must define a watch handler".into(),
                });
            }
        }
        let base = normalise_base(&opts.consul_url);
        let inner = Arc::new(Inner {
            book: Mutex::new(Book {
                invocations: Vec::new(),
                running: 0,
                stopped: false,
            }),
            changed: Condvar::new(),
            opts,
            base,
        });
        let runner = Runner { inner };
        for (i, spec) in specs.into_iter().enumerate() {
            let inner = Arc::clone(&runner.inner);
            std::thread::Builder::new()
                .name(format!("watch-{i}-{}", spec.watch_type))
                .spawn(move || run_watch(i, &spec, &inner))
                // Dropping `runner` stops the watches already started.
                .map_err(RunnerError::Spawn)?;
        }
        Ok(runner)
    }

    /// Every invocation so far, in completion order.
    pub fn invocations(&self) -> Vec<Invocation> {
        self.inner.book().invocations.clone()
    }

    /// Waits until watch `watch` has completed at least `n` invocations; false on timeout.
    pub fn wait_for_invocations(&self, watch: usize, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut book = self.inner.book();
        loop {
            if book.invocations.iter().filter(|i| i.watch == watch).count() >= n {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            book = self
                .inner
                .changed
                .wait_timeout(book, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Stops the watches and waits for running handlers to finish.
    pub fn stop(self) {
        // Drop does the work.
    }

    fn shutdown(&self) {
        let mut book = self.inner.book();
        book.stopped = true;
        self.inner.changed.notify_all();
        while book.running > 0 {
            book = self
                .inner
                .changed
                .wait(book)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn normalise_base(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

/// One watch plan (plan.go RunWithClientAndHclog).
fn run_watch(i: usize, spec: &WatchSpec, inner: &Inner) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    // plan.go's lastParamVal: the blocking index, the "unchanged" test and (event watches)
    // the pruning point, all in one; reset to 0 when the index goes backwards and to nil on
    // an error, exactly as WaitIndexVal.Next and RunWithClientAndHclog do.
    let mut last: Option<u64> = None;
    let mut last_result: Option<Value> = None;
    let mut failures: u32 = 0;
    loop {
        if inner.stopped() {
            return;
        }
        let res = query::run(
            &agent,
            &inner.base,
            spec,
            last.unwrap_or(0),
            inner.opts.query_wait,
            last,
        );
        let (index, result) = match res {
            Ok(r) => r,
            Err(e) => {
                if inner.stopped() {
                    return;
                }
                // The watch funcs return a nil BlockingParamVal with an error, so the plan
                // forgets the index: the next successful query runs the handler again even if
                // nothing changed.
                last = None;
                failures = failures.saturating_add(1);
                let base = inner.opts.retry_base;
                let retry = base * failures.saturating_mul(failures).min(36);
                log::error!(
                    "watch {i} ({}): Watch errored: {}; retry in {retry:?}",
                    spec.watch_type,
                    e.0
                );
                if !inner.backoff(retry) {
                    return;
                }
                continue;
            }
        };
        failures = 0;
        if last == Some(index) {
            continue;
        }
        let old = last;
        last = Some(match old {
            Some(prev) if prev > index => 0,
            _ => index,
        });
        if old.is_some() && last_result.as_ref() == Some(&result) {
            continue;
        }
        last_result = Some(result.clone());
        if !invoke(i, spec, index, &result, inner) {
            return;
        }
    }
}

/// Runs the handler once (returns false when the runner was stopped before it could start).
fn invoke(i: usize, spec: &WatchSpec, index: u64, result: &Value, inner: &Inner) -> bool {
    {
        let mut book = inner.book();
        if book.stopped {
            return false;
        }
        book.running += 1;
    }
    let mut stdin = go_json(result);
    stdin.push(b'\n');
    let started = Instant::now();
    let (exit_code, stdout, stderr) = match execute(spec, index, &stdin, &inner.opts) {
        Ok(out) => out,
        Err(e) => {
            log::error!(
                "watch {i}: Failed to run watch handler {:?}: {e}",
                spec.args[0]
            );
            (None, String::new(), e)
        }
    };
    match exit_code {
        Some(0) => {}
        code => log::error!(
            "watch {i}: Failed to run watch handler {:?}: exit status {code:?}",
            spec.args[0]
        ),
    }
    log::debug!(
        "watch {i}: watch handler output: {}",
        tail_4k(&format!("{stdout}{stderr}"))
    );
    let inv = Invocation {
        watch: i,
        consul_index: index,
        stdin,
        exit_code,
        stdout,
        stderr,
        started,
        finished: Instant::now(),
    };
    let mut book = inner.book();
    book.invocations.push(inv);
    book.running -= 1;
    inner.changed.notify_all();
    true
}

/// The agent keeps only the last 4 KiB of handler output (WatchBufSize).
fn tail_4k(s: &str) -> String {
    const MAX: usize = 4 * 1024;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut start = s.len() - MAX;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!(
        "Captured {} of {} bytes\n...\n{}",
        MAX,
        s.len(),
        &s[start..]
    )
}

fn execute(
    spec: &WatchSpec,
    index: u64,
    stdin: &[u8],
    opts: &RunnerOptions,
) -> Result<(Option<i32>, String, String), String> {
    let program = resolve(&spec.args[0], opts)?;
    let mut child = Command::new(&program)
        .args(&spec.args[1..])
        .env_clear()
        .envs(opts.env.iter().map(|(k, v)| (k, v)))
        .env("CONSUL_INDEX", index.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("exec {}: {e}", program.display()))?;
    // Write stdin from another thread so a handler that writes a lot before reading cannot
    // deadlock us; a handler that never reads just gets EPIPE on our side (ignored).
    let writer = child.stdin.take().map(|mut pipe| {
        let data = stdin.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let out = child
        .wait_with_output()
        .map_err(|e| format!("wait {}: {e}", program.display()))?;
    if let Some(w) = writer {
        let _ = w.join();
    }
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// exec.LookPath: a name with a `/` is used as is; a bare name is searched in `opts.path`,
/// then in the agent environment's PATH.
fn resolve(name: &str, opts: &RunnerOptions) -> Result<PathBuf, String> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let env_path = opts
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let dirs = opts
        .path
        .iter()
        .cloned()
        .chain(std::env::split_paths(&env_path));
    for dir in dirs {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(format!(
        "exec: {name:?}: executable file not found in $PATH"
    ))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
