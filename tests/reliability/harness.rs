//! The suite's plumbing: counting cases and injected faults, running the built handler binaries as
//! the Consul agent runs them (payload piped on stdin, a clean environment), bounding every run by
//! a deadline, and the checks every single run must pass whatever the case (no panic, exactly one
//! JSON document on stdout, stdin drained, no secret in the output).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A failed expectation, with what was seen.
pub type Check = Result<(), String>;

/// Fails with a message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Totals of one suite run (shared by the section threads).
#[derive(Default)]
pub struct Report {
    cases: AtomicUsize,
    faults: AtomicUsize,
    failures: Mutex<Vec<String>>,
    filter: Vec<String>,
    skip: Vec<String>,
}

impl Report {
    pub fn new(filter: Vec<String>, skip: Vec<String>) -> Report {
        Report {
            filter,
            skip,
            ..Report::default()
        }
    }

    /// Whether a case name is selected by the command-line filters (`cargo test -- NAME`,
    /// `--skip NAME`).
    pub fn selected(&self, name: &str) -> bool {
        (self.filter.is_empty() || self.filter.iter().any(|f| name.contains(f.as_str())))
            && !self.skip.iter().any(|f| name.contains(f.as_str()))
    }

    /// Runs one case: counts it, records its failure (a returned error or a panic of the test code
    /// itself) and prints one line, as libtest does.
    pub fn case(&self, name: &str, body: impl FnOnce() -> Check) {
        if !self.selected(name) {
            return;
        }
        self.cases.fetch_add(1, Ordering::SeqCst);
        let start = Instant::now();
        let outcome = match catch_unwind(AssertUnwindSafe(body)) {
            Ok(r) => r,
            Err(p) => Err(format!(
                "the test code panicked: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        };
        let ms = start.elapsed().as_millis();
        match outcome {
            Ok(()) => println!("case {name} ... ok ({ms} ms)"),
            Err(e) => {
                println!(
                    "case {name} ... FAILED ({ms} ms)\n    {}",
                    e.replace('\n', "\n    ")
                );
                self.failures.lock().unwrap().push(format!("{name}: {e}"));
            }
        }
    }

    /// Counts faults injected into a double, a git remote or the environment.
    pub fn faults(&self, n: usize) {
        self.faults.fetch_add(n, Ordering::SeqCst);
    }

    pub fn totals(&self) -> (usize, usize, Vec<String>) {
        (
            self.cases.load(Ordering::SeqCst),
            self.faults.load(Ordering::SeqCst),
            self.failures.lock().unwrap().clone(),
        )
    }
}

/// Where the built handlers are (target/<profile>/, or SHIPWATCH_BIN_DIR).
pub fn bin(handler: &str) -> PathBuf {
    let dir = devstack::bins::handler_dir().unwrap_or_else(|e| panic!("{e}"));
    dir.join(handler)
}

/// One handler invocation.
pub struct Invocation {
    pub handler: &'static str,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    pub stdin: Vec<u8>,
    /// Killed (and the case failed) past this: a handler must bound itself.
    pub limit: Duration,
    pub cwd: Option<PathBuf>,
}

/// What one invocation did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub handler: &'static str,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Whether the whole payload was written to the handler's stdin (it drained it).
    pub drained: bool,
    pub hung: bool,
    pub elapsed: Duration,
}

impl Invocation {
    pub fn new(handler: &'static str, home: &Path) -> Invocation {
        Invocation {
            handler,
            args: Vec::new(),
            env: hermetic_env(home),
            stdin: Vec::new(),
            limit: Duration::from_secs(40),
            cwd: None,
        }
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.retain(|(name, _)| name != k);
        self.env.push((k.to_string(), v.into()));
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = bytes.into();
        self
    }

    /// Runs the handler with `--output json` (unless the case set `--output`).
    pub fn run(self) -> Outcome {
        let mut cmd = Command::new(bin(self.handler));
        cmd.args(&self.args);
        if !self.args.iter().any(|a| a == "--output") {
            cmd.args(["--output", "json"]);
        }
        cmd.env_clear();
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.handler));
        let mut stdin = child.stdin.take().unwrap();
        let payload = self.stdin;
        let writer = std::thread::spawn(move || {
            let ok = stdin.write_all(&payload).is_ok();
            drop(stdin);
            ok
        });
        let out_reader = reader(child.stdout.take().unwrap());
        let err_reader = reader(child.stderr.take().unwrap());
        let deadline = start + self.limit;
        let mut hung = false;
        let status = loop {
            match child.try_wait().unwrap() {
                Some(s) => break Some(s),
                None if Instant::now() >= deadline => {
                    hung = true;
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        let elapsed = start.elapsed();
        Outcome {
            handler: self.handler,
            code: status.and_then(|s| s.code()),
            stdout: out_reader.join().unwrap(),
            stderr: err_reader.join().unwrap(),
            drained: writer.join().unwrap(),
            hung,
            elapsed,
        }
    }
}

fn reader(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// A clean environment: nothing inherited (no stray MARATHON_URL or token of the developer's), git
/// isolated from the host's configuration, logs at info.
pub fn hermetic_env(home: &Path) -> Vec<(String, String)> {
    let mut env = vec![
        ("HOME".to_string(), home.display().to_string()),
        ("GIT_CONFIG_GLOBAL".into(), "/dev/null".into()),
        ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ("GIT_AUTHOR_NAME".into(), "Human".into()),
        ("GIT_AUTHOR_EMAIL".into(), "human@example.org".into()),
        ("GIT_COMMITTER_NAME".into(), "Committer".into()),
        ("GIT_COMMITTER_EMAIL".into(), "committer@example.org".into()),
        ("RUST_LOG".into(), "info".into()),
        ("CONSUL_INDEX".into(), "4242".into()),
    ];
    if let Ok(path) = std::env::var("PATH") {
        env.push(("PATH".into(), path));
    }
    env
}

impl Outcome {
    /// What a failure message shows of this run.
    pub fn show(&self) -> String {
        format!(
            "{} exit {:?} after {} ms{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.handler,
            self.code,
            self.elapsed.as_millis(),
            if self.hung { " (KILLED: hung)" } else { "" },
            clip(&self.stdout),
            clip(&self.stderr)
        )
    }

    /// The checks every run passes whatever the input: it ended by itself, did not panic,
    /// drained stdin, and printed exactly one JSON document in the shared shape.
    pub fn sane(&self) -> Result<Value, String> {
        ensure!(!self.hung, "did not end by itself\n{}", self.show());
        ensure!(
            self.code != Some(101) && !self.stderr.contains("panicked"),
            "PANIC\n{}",
            self.show()
        );
        ensure!(self.code.is_some(), "killed by a signal\n{}", self.show());
        ensure!(
            self.drained,
            "did not drain stdin (the agent logs a broken pipe)\n{}",
            self.show()
        );
        let doc = one_json_document(&self.stdout).map_err(|e| format!("{e}\n{}", self.show()))?;
        ensure!(
            doc["handler"] == self.handler,
            "summary names handler {} \n{}",
            doc["handler"],
            self.show()
        );
        ensure!(
            doc["actions"].is_array() && doc["errors"].is_array() && doc["dry_run"].is_boolean(),
            "summary lacks actions/errors/dry_run\n{}",
            self.show()
        );
        Ok(doc)
    }

    /// `sane()`, the exit code, and (for failures) a message containing every `needles` entry
    /// (case-insensitive) in the summary's errors.
    pub fn expect(&self, code: i32, needles: &[&str]) -> Result<Value, String> {
        let doc = self.sane()?;
        ensure!(
            self.code == Some(code),
            "expected exit {code}\n{}",
            self.show()
        );
        let errors = doc["errors"].to_string().to_lowercase();
        for n in needles {
            ensure!(
                errors.contains(&n.to_lowercase()),
                "the errors do not say {n:?}\n{}",
                self.show()
            );
        }
        if code != 0 {
            ensure!(
                doc["errors"].as_array().is_some_and(|e| !e.is_empty()),
                "exit {code} without any message in errors\n{}",
                self.show()
            );
        }
        Ok(doc)
    }

    /// No secret (nor its base64 forms inside a Basic header) anywhere in stdout or stderr.
    pub fn no_secrets(&self, secrets: &[String]) -> Check {
        for s in secrets {
            for (stream, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
                ensure!(
                    !text.contains(s.as_str()),
                    "SECRET {s:?} LEAKED on {stream}\n{}",
                    self.show()
                );
            }
        }
        Ok(())
    }
}

/// stdout must be exactly one JSON document (whitespace around it allowed).
pub fn one_json_document(stdout: &str) -> Result<Value, String> {
    let mut docs = serde_json::Deserializer::from_str(stdout).into_iter::<Value>();
    let first = match docs.next() {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Err(format!("stdout is not JSON: {e}")),
        None => return Err("stdout is empty, expected one JSON document".into()),
    };
    match docs.next() {
        None => Ok(first),
        Some(_) => Err("stdout holds more than one JSON document".into()),
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 3000;
    if s.len() <= MAX {
        s.to_string()
    } else {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes in all)", &s[..end], s.len())
    }
}
