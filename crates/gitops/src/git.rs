//! A small wrapper around the `git` command line.
//!
//! Every call runs `git` with an argument vector (never a shell), a timeout, no terminal prompts
//! (`GIT_TERMINAL_PROMPT=0`, ssh in batch mode unless the operator configured ssh themselves), stdin
//! closed unless data is passed, and the C locale so that failures can be classified from stderr. A
//! non-zero exit becomes a [`GitError`] carrying the command and git's stderr, both scrubbed of
//! credentials by the [`Redactor`] the wrapper was built with.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::redact::{redact_url, Redactor};

/// What kind of failure a git command hit; drives retries and exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The remote could not be reached or refused us (network, DNS, auth, missing repository, timeout).
    Unreachable,
    /// A push was rejected because the remote branch moved (non-fast-forward) or a hook declined it.
    Rejected,
    /// A ref asked for does not exist on the remote.
    MissingRef,
    /// `git commit` found nothing to commit.
    NothingToCommit,
    /// Anything else.
    Other,
}

/// A failed git invocation.
#[derive(Debug, Error)]
pub enum GitError {
    /// `git` could not be started at all.
    #[error("cannot run git: {0}")]
    Spawn(#[source] std::io::Error),
    /// The command did not finish in time and was killed.
    #[error("`{command}` timed out after {after:?}")]
    Timeout {
        /// The command line, redacted.
        command: String,
        /// How long it was given.
        after: Duration,
    },
    /// The command exited non-zero.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line, redacted.
        command: String,
        /// Exit status as text.
        status: String,
        /// git's stderr (and stdout for push), redacted and trimmed.
        stderr: String,
        /// Classification of the failure.
        kind: FailureKind,
    },
    /// The command succeeded but printed something unexpected.
    #[error("`{command}`: unexpected output: {detail}")]
    Output {
        /// The command line, redacted.
        command: String,
        /// What was wrong.
        detail: String,
    },
}

impl GitError {
    /// The failure class ([`FailureKind::Unreachable`] for timeouts: a hung remote is an unreachable one).
    pub fn kind(&self) -> FailureKind {
        match self {
            GitError::Timeout { .. } => FailureKind::Unreachable,
            GitError::Failed { kind, .. } => *kind,
            _ => FailureKind::Other,
        }
    }
}

/// What a successful command printed.
#[derive(Debug, Clone)]
pub struct GitOutput {
    /// Raw stdout.
    pub stdout: Vec<u8>,
    /// stderr, redacted.
    pub stderr: String,
}

impl GitOutput {
    /// stdout as (lossy) UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// One git file entry from the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedFile {
    /// Path relative to the repository root, `/`-separated.
    pub path: String,
    /// Git file mode (`100644`, `100755`, `120000` for symlinks, `160000` for submodules).
    pub mode: String,
}

/// A trailer set from a commit message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    /// Commit id.
    pub commit: String,
    /// Trailer key as written.
    pub key: String,
    /// Trailer value (unfolded).
    pub value: String,
}

/// Options for [`Git::commit`].
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `Name <email>` for `--author`.
    pub author: Option<String>,
    /// Sign with the user's git signing configuration (`git commit -S`).
    pub sign: bool,
}

/// A git working directory (a clone) plus the settings every command runs with.
#[derive(Debug, Clone)]
pub struct Git {
    dir: PathBuf,
    redactor: Redactor,
}

/// Environment every git command gets, on top of the inherited one.
fn base_env() -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vec![
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
        ("LC_ALL".into(), "C".into()),
        ("LANGUAGE".into(), "C".into()),
        // Never open an editor or a pager.
        ("GIT_EDITOR".into(), "true".into()),
        ("GIT_PAGER".into(), "cat".into()),
    ];
    if std::env::var_os("GIT_SSH_COMMAND").is_none() && std::env::var_os("GIT_SSH").is_none() {
        // git runs this string itself; it is a constant, never built from input.
        env.push((
            "GIT_SSH_COMMAND".into(),
            "ssh -o BatchMode=yes -o ConnectTimeout=30".into(),
        ));
    }
    env
}

impl Git {
    /// A wrapper for an existing working directory.
    pub fn open(dir: impl Into<PathBuf>, redactor: Redactor) -> Git {
        Git {
            dir: dir.into(),
            redactor,
        }
    }

    /// The working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The redactor used for errors.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// `git clone --no-checkout` of `url` into `dir` (which must not exist or be empty). Line-end
    /// conversion is switched off in the clone so edits stay byte-exact.
    pub fn clone_repo(
        url: &str,
        dir: &Path,
        redactor: Redactor,
        timeout: Duration,
    ) -> Result<Git, GitError> {
        let parent = dir.parent().unwrap_or(Path::new("."));
        let git = Git::open(parent, redactor);
        let mut args: Vec<OsString> = [
            "clone",
            "--quiet",
            "--no-checkout",
            "--no-tags",
            "--origin",
            "origin",
            "--config",
            "core.autocrlf=false",
            "--config",
            "core.safecrlf=false",
            "--",
            url,
        ]
        .iter()
        .map(OsString::from)
        .collect();
        args.push(dir.as_os_str().to_owned());
        git.run_os(&args, None, timeout)?;
        Ok(Git::open(dir, git.redactor))
    }

    /// Whether `dir` holds a git repository whose top level is `dir` itself.
    pub fn is_repo(&self) -> bool {
        self.dir.join(".git").exists()
    }

    /// Removes lock files a killed git process left in `.git` (`index.lock`, `HEAD.lock`,
    /// `refs/**/*.lock`, …). Only safe while the caller holds the workdir lock, i.e. no other git
    /// process can be using this clone; returns the files removed.
    pub fn remove_stale_locks(&self) -> Vec<PathBuf> {
        let git_dir = self.dir.join(".git");
        let mut removed = Vec::new();
        for name in [
            "index.lock",
            "HEAD.lock",
            "config.lock",
            "packed-refs.lock",
            "shallow.lock",
            "ORIG_HEAD.lock",
        ] {
            let p = git_dir.join(name);
            if std::fs::remove_file(&p).is_ok() {
                removed.push(p);
            }
        }
        let mut dirs = vec![git_dir.join("refs")];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let p = entry.path();
                match entry.file_type() {
                    Ok(t) if t.is_dir() => dirs.push(p),
                    Ok(t)
                        if t.is_file()
                            && p.extension().is_some_and(|e| e == "lock")
                            && std::fs::remove_file(&p).is_ok() =>
                    {
                        removed.push(p)
                    }
                    _ => {}
                }
            }
        }
        removed
    }

    /// `git remote get-url origin`.
    pub fn origin_url(&self, timeout: Duration) -> Result<String, GitError> {
        Ok(self
            .run(&["remote", "get-url", "origin"], None, timeout)?
            .text()
            .trim()
            .to_string())
    }

    /// `git remote set-url origin <url>` (e.g. after a token rotation).
    pub fn set_origin_url(&self, url: &str, timeout: Duration) -> Result<(), GitError> {
        self.run(&["remote", "set-url", "origin", url], None, timeout)
            .map(drop)
    }

    /// Fetches `branch` into `refs/remotes/origin/<branch>`. `Ok(false)` when the remote has no such
    /// branch.
    pub fn fetch_branch(&self, branch: &str, timeout: Duration) -> Result<bool, GitError> {
        // The `+` only lets the local remote-tracking ref follow the remote; nothing is forced remotely.
        let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
        match self.run(
            &["fetch", "--quiet", "--no-tags", "origin", &refspec],
            None,
            timeout,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == FailureKind::MissingRef => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Points the local work branch at `rev` and makes index and files match it exactly (discarding any
    /// leftovers of an interrupted run), removing untracked files.
    pub fn reset_to(&self, rev: &str, timeout: Duration) -> Result<(), GitError> {
        self.run(
            &[
                "checkout",
                "--quiet",
                "--force",
                "--no-track",
                "-B",
                "tag2git-work",
                rev,
            ],
            None,
            timeout,
        )?;
        self.run(&["clean", "--quiet", "-ffdx"], None, timeout)?;
        Ok(())
    }

    /// Resolves `rev` to a commit id, `None` if it does not exist.
    pub fn rev_parse(&self, rev: &str, timeout: Duration) -> Result<Option<String>, GitError> {
        let spec = format!("{rev}^{{commit}}");
        match self.run(&["rev-parse", "--verify", "--quiet", &spec], None, timeout) {
            Ok(out) => Ok(Some(out.text().trim().to_string())),
            Err(GitError::Failed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Tracked files under `dirs` (all files when empty), from the index, with their modes.
    pub fn ls_files(
        &self,
        dirs: &[String],
        timeout: Duration,
    ) -> Result<Vec<TrackedFile>, GitError> {
        let mut args: Vec<String> = ["--literal-pathspecs", "ls-files", "-z", "--stage", "--"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(dirs.iter().cloned());
        let out = self.run_os(
            &args.iter().map(OsString::from).collect::<Vec<_>>(),
            None,
            timeout,
        )?;
        let mut files = Vec::new();
        for record in out.stdout.split(|&b| b == 0).filter(|r| !r.is_empty()) {
            // "<mode> <object> <stage>\t<path>"
            let record = String::from_utf8_lossy(record);
            let Some((meta, path)) = record.split_once('\t') else {
                return Err(GitError::Output {
                    command: "git ls-files".into(),
                    detail: format!("unparsable record {record:?}"),
                });
            };
            let mode = meta.split(' ').next().unwrap_or_default().to_string();
            files.push(TrackedFile {
                path: path.to_string(),
                mode,
            });
        }
        Ok(files)
    }

    /// Trailers with one of `keys` from the newest `max_commits` commits reachable from `revs` whose
    /// message contains `grep` (a regex anchored per line by git), oldest trailer order kept per commit.
    pub fn trailers(
        &self,
        revs: &[&str],
        keys: &[&str],
        grep: &str,
        max_commits: usize,
        timeout: Duration,
    ) -> Result<Vec<Trailer>, GitError> {
        let key_opts: Vec<String> = keys.iter().map(|k| format!("key={k}")).collect();
        let format = format!(
            "--format=%x1e%H%x1f%(trailers:{},unfold)",
            key_opts.join(",")
        );
        let max = format!("--max-count={max_commits}");
        let grep = format!("--grep={grep}");
        let mut args = vec![
            "log",
            "--no-color",
            max.as_str(),
            grep.as_str(),
            format.as_str(),
        ];
        args.extend_from_slice(revs);
        args.push("--");
        let out = self.run(&args, None, timeout)?;
        let text = out.text();
        let mut trailers = Vec::new();
        for record in text.split('\x1e').filter(|r| !r.trim().is_empty()) {
            let Some((commit, block)) = record.split_once('\x1f') else {
                continue;
            };
            for line in block.lines() {
                if let Some((key, value)) = line.split_once(':') {
                    trailers.push(Trailer {
                        commit: commit.trim().to_string(),
                        key: key.trim().to_string(),
                        value: value.trim().to_string(),
                    });
                }
            }
        }
        Ok(trailers)
    }

    /// `git add` of exactly these paths.
    pub fn add(&self, paths: &[String], timeout: Duration) -> Result<(), GitError> {
        let mut args: Vec<OsString> = ["--literal-pathspecs", "add", "--"]
            .iter()
            .map(OsString::from)
            .collect();
        args.extend(paths.iter().map(OsString::from));
        self.run_os(&args, None, timeout).map(drop)
    }

    /// Unified diff of the working tree against the index for these paths.
    pub fn diff(&self, paths: &[String], timeout: Duration) -> Result<String, GitError> {
        let mut args: Vec<OsString> = [
            "--literal-pathspecs",
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        args.extend(paths.iter().map(OsString::from));
        Ok(self.run_os(&args, None, timeout)?.text())
    }

    /// Commits the index with `message` (read from stdin, kept verbatim apart from whitespace cleanup).
    /// Returns the new commit id. Without a configured committer identity the author is used as
    /// committer, so a bare CI box only needs `--author`.
    pub fn commit(
        &self,
        message: &str,
        opts: &CommitOptions,
        timeout: Duration,
    ) -> Result<String, GitError> {
        let mut args = vec![
            "commit".to_string(),
            "--quiet".into(),
            "--cleanup=whitespace".into(),
            "-F".into(),
            "-".into(),
        ];
        if let Some(author) = &opts.author {
            args.push(format!("--author={author}"));
        }
        if opts.sign {
            args.push("--gpg-sign".into());
        }
        let mut extra_env = Vec::new();
        if let Some(author) = &opts.author {
            if self
                .run(&["var", "GIT_COMMITTER_IDENT"], None, timeout)
                .is_err()
            {
                if let Some((name, email)) = split_ident(author) {
                    extra_env.push(("GIT_COMMITTER_NAME".to_string(), name));
                    extra_env.push(("GIT_COMMITTER_EMAIL".to_string(), email));
                }
            }
        }
        let os_args: Vec<OsString> = args.iter().map(OsString::from).collect();
        self.run_full(&os_args, Some(message.as_bytes()), timeout, &extra_env)?;
        self.rev_parse("HEAD", timeout)?
            .ok_or_else(|| GitError::Output {
                command: "git commit".into(),
                detail: "HEAD does not resolve after commit".into(),
            })
    }

    /// Pushes `HEAD` to `refs/heads/<branch>` on origin. Never forced: a moved remote branch gives a
    /// [`FailureKind::Rejected`] error.
    pub fn push(&self, branch: &str, timeout: Duration) -> Result<(), GitError> {
        let refspec = format!("HEAD:refs/heads/{branch}");
        self.run(&["push", "--porcelain", "origin", &refspec], None, timeout)
            .map(drop)
    }

    /// Runs `git <args>` in the working directory.
    pub fn run(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<GitOutput, GitError> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        self.run_os(&args, stdin, timeout)
    }

    fn run_os(
        &self,
        args: &[OsString],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<GitOutput, GitError> {
        self.run_full(args, stdin, timeout, &[])
    }

    fn run_full(
        &self,
        args: &[OsString],
        stdin: Option<&[u8]>,
        timeout: Duration,
        extra_env: &[(String, String)],
    ) -> Result<GitOutput, GitError> {
        let shown = self.redactor.redact(&format!(
            "git {}",
            args.iter()
                .map(|a| redact_url(&a.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(" ")
        ));
        log::debug!("running {shown}");
        let mut cmd = Command::new("git");
        cmd.args(args)
            .current_dir(&self.dir)
            .envs(base_env())
            .envs(extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group, so a timeout can kill git's helpers (ssh, remote-https) with it.
            .process_group(0);
        let out = run_with_timeout(cmd, stdin, timeout).map_err(GitError::Spawn)?;
        let stderr = self
            .redactor
            .redact(String::from_utf8_lossy(&out.stderr).trim());
        if out.timed_out {
            return Err(GitError::Timeout {
                command: shown,
                after: timeout,
            });
        }
        if !out.success {
            // `push --porcelain` reports rejections on stdout.
            let stdout = self
                .redactor
                .redact(String::from_utf8_lossy(&out.stdout).trim());
            let text = if stdout.is_empty() {
                stderr.clone()
            } else {
                format!("{stderr}\n{stdout}").trim().to_string()
            };
            return Err(GitError::Failed {
                command: shown,
                status: out.status,
                kind: classify(&text),
                stderr: text,
            });
        }
        Ok(GitOutput {
            stdout: out.stdout,
            stderr,
        })
    }
}

/// Splits `Name <email>`.
pub fn split_ident(ident: &str) -> Option<(String, String)> {
    let (name, rest) = ident.split_once('<')?;
    let email = rest.strip_suffix('>')?;
    let name = name.trim();
    if name.is_empty() || email.is_empty() || email.contains(['<', '>']) {
        return None;
    }
    Some((name.to_string(), email.to_string()))
}

/// Classifies a failure from git's (C-locale) messages.
pub fn classify(stderr: &str) -> FailureKind {
    let s = stderr.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| s.contains(n));
    if any(&[
        "nothing to commit",
        "nothing added to commit",
        "no changes added to commit",
    ]) {
        FailureKind::NothingToCommit
    } else if any(&["couldn't find remote ref", "could not find remote ref"]) {
        FailureKind::MissingRef
    } else if any(&[
        "[rejected]",
        "[remote rejected]",
        "non-fast-forward",
        "fetch first",
        "updates were rejected",
    ]) {
        FailureKind::Rejected
    } else if (s.contains("repository '")
        // A local path that is gone ("does not exist"), or an HTTP remote answering 404
        // ("fatal: repository 'https://host/x.git/' not found", git's http.c).
        && (s.contains("' does not exist") || s.contains("' not found")))
        || any(&[
            "could not read from remote repository",
            "unable to access",
            "could not resolve host",
            "connection refused",
            "connection timed out",
            "operation timed out",
            "does not appear to be a git repository",
            "repository not found",
            "authentication failed",
            "permission denied",
            "could not read username",
            "could not read password",
            "host key verification failed",
            "the remote end hung up",
            "early eof",
            "network is unreachable",
            "no route to host",
        ])
    {
        FailureKind::Unreachable
    } else {
        FailureKind::Other
    }
}

struct RawOutput {
    success: bool,
    status: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    timed_out: bool,
}

/// Runs a prepared command, feeding `stdin`, and kills its process group if it outlives `timeout`.
fn run_with_timeout(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> std::io::Result<RawOutput> {
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let data = data.to_vec();
        thread::spawn(move || {
            // A child that exits early closes the pipe; that is reported through its exit status.
            let _ = pipe.write_all(&data);
        });
    }
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            let _ = tx.send(buf);
        });
        rx
    };
    let out_rx = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err_rx = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let mut nap = Duration::from_micros(200);
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait()? {
            break (Some(status), false);
        }
        if start.elapsed() >= timeout {
            kill_group(&mut child);
            let _ = child.wait();
            break (None, true);
        }
        thread::sleep(nap.min(timeout.saturating_sub(start.elapsed())));
        nap = (nap * 2).min(Duration::from_millis(20));
    };
    // Helpers that inherited the pipes may keep them open after a kill: do not wait for them forever.
    let grace = Duration::from_secs(if timed_out { 1 } else { 30 });
    let stdout = out_rx.recv_timeout(grace).unwrap_or_default();
    let stderr = err_rx.recv_timeout(grace).unwrap_or_default();
    Ok(RawOutput {
        success: status.is_some_and(|s| s.success()),
        status: status.map_or_else(|| "killed".to_string(), |s| s.to_string()),
        stdout,
        stderr,
        timed_out,
    })
}

/// SIGKILL to the child's process group (it leads its own group), falling back to the child alone.
fn kill_group(child: &mut std::process::Child) {
    let group = format!("-{}", child.id());
    let killed = Command::new("kill")
        .args(["-KILL", "--", &group])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !killed {
        let _ = child.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_common_failures() {
        assert_eq!(
            classify(
                " ! [rejected]        HEAD -> main (fetch first)\nerror: failed to push some refs"
            ),
            FailureKind::Rejected
        );
        assert_eq!(
            classify("!\tHEAD:refs/heads/main\t[rejected] (non-fast-forward)"),
            FailureKind::Rejected
        );
        assert_eq!(
            classify("fatal: '/nope' does not appear to be a git repository\nfatal: Could not read from remote repository."),
            FailureKind::Unreachable
        );
        assert_eq!(
            classify("fatal: unable to access 'https://***@x/': Could not resolve host: x"),
            FailureKind::Unreachable
        );
        assert_eq!(
            classify("fatal: repository 'http://127.0.0.1:9/jobs.git/' not found"),
            FailureKind::Unreachable,
            "an HTTP remote answering 404"
        );
        assert_eq!(
            classify("fatal: couldn't find remote ref refs/heads/nope"),
            FailureKind::MissingRef
        );
        assert_eq!(
            classify("nothing to commit, working tree clean"),
            FailureKind::NothingToCommit
        );
        assert_eq!(
            classify("error: gpg failed to sign the data"),
            FailureKind::Other
        );
    }

    #[test]
    fn idents() {
        assert_eq!(
            split_ident("CI Bot <ci@example.org>"),
            Some(("CI Bot".into(), "ci@example.org".into()))
        );
        assert_eq!(split_ident("nobody"), None);
        assert_eq!(split_ident("<a@b>"), None);
    }

    #[test]
    fn timeout_kills_the_command() {
        let mut cmd = Command::new("sleep");
        cmd.arg("5")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let start = Instant::now();
        let out = run_with_timeout(cmd, None, Duration::from_millis(100)).unwrap();
        assert!(out.timed_out);
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn feeds_stdin() {
        let mut cmd = Command::new("cat");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let out = run_with_timeout(cmd, Some(b"hello"), Duration::from_secs(10)).unwrap();
        assert!(out.success);
        assert_eq!(out.stdout, b"hello");
    }
}
