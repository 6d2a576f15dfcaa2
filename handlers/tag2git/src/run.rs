//! One tag2git invocation: validate, lock the workdir, fetch, compute edits, commit, push (retrying a
//! lost push race on the new tip), report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gitops::redact::redact_url;
use gitops::{CommitOptions, FailureKind, Git, GitError, Redactor, WorkdirLock};
use regex::Regex;
use runtime::text::capped_list;
use runtime::{Action, Backoff, Context, Exit, Status, Summary};

use crate::entries::{self, check_text, Rejected, Update};
use crate::history::{History, Seen};
use crate::message;
use crate::scan::{self, Scan};
use crate::{Args, Error};

/// Action kind in the summary.
pub const KIND: &str = "update-image";
/// Newest commits whose trailers are read for the replay check.
pub const HISTORY_LIMIT: usize = 10_000;
/// Longest a single network git command may take (within the overall deadline).
const NETWORK_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a local git command may take (within the overall deadline).
const LOCAL_TIMEOUT: Duration = Duration::from_secs(60);
/// Retries of clone/fetch when the remote is unreachable.
const FETCH_BACKOFF: Backoff = Backoff {
    attempts: 3,
    base: Duration::from_millis(300),
    max: Duration::from_secs(4),
};

/// Validated configuration.
struct Config {
    repo: String,
    shown_repo: String,
    branch: String,
    push_branch: String,
    paths: Vec<String>,
    allow_tags: Option<Regex>,
    commit: CommitOptions,
    template: Option<String>,
    push_backoff: Backoff,
}

/// The whole run; errors before any remote work map to 64/65. Invalid entries are reported as
/// failed (exit 65) and the valid ones still applied.
pub fn run(args: &Args, ctx: &Context) -> Result<Summary, Error> {
    let cfg = config(args)?;
    // The decoded pairs are consumed into entries at once (issue 13 item 5: never the payload's
    // entries twice in memory).
    let pairs = watch::decode_kv(&ctx.payload).map_err(|e| Error::Payload(e.to_string()))?;
    let entries = entries::from_pairs(pairs, &args.key_prefix);
    let mut summary = ctx.summary();
    report_rejected(&mut summary, entries.rejected);
    for ignored in entries.ignored {
        summary.push(Action::new(
            KIND,
            ignored.key,
            Status::Skipped,
            ignored.reason,
        ));
    }
    let mut updates = entries.updates;
    if let Some(re) = &cfg.allow_tags {
        let mut log = CappedLog::new("entries refused by --allow-tags");
        updates.retain(|u| {
            let tag = u.tag().unwrap_or_default();
            if re.is_match(tag) {
                return true;
            }
            // The operator's filter (e.g. CI of feature branches also publishes): deliberately
            // not applied, so `skipped`, not `failed`.
            let detail = format!(
                "tag {tag:?} of {} does not match --allow-tags",
                u.repository()
            );
            log.warn(|| format!("{}: {detail}", u.key()));
            summary.push(Action::new(KIND, u.key(), Status::Skipped, detail));
            false
        });
        log.finish();
    }
    if updates.is_empty() {
        log::info!("nothing to do");
        return Ok(summary);
    }
    if runtime::stop::requested() {
        return Ok(stopped(summary, updates.len()));
    }
    let workdir = Workdir::resolve(args)?;
    let _lock = WorkdirLock::acquire(&workdir.lock, ctx.deadline.remaining())?;
    let git = prepare(&cfg, &workdir, ctx)?;
    Cycle {
        cfg: &cfg,
        ctx,
        git: &git,
        all: args.all,
    }
    .run(&mut updates, summary)
}

/// Each invalid entry is a failed action naming its key; one capped error line says how many
/// (a payload with a million bad keys must not become a 128 MB line in the agent's log); exit 65.
fn report_rejected(summary: &mut Summary, rejected: Vec<Rejected>) {
    if rejected.is_empty() {
        return;
    }
    let msg = format!(
        "invalid payload: {} invalid entr{} not applied (the others are): {}",
        rejected.len(),
        if rejected.len() == 1 { "y" } else { "ies" },
        capped_list(rejected.iter().map(|r| &r.reason))
    );
    for r in rejected {
        summary.reject(KIND, r.key, r.reason);
    }
    log::error!("{msg}");
    summary.error(msg);
}

/// Per-entry warnings of one kind: the first [`runtime::text::MAX_LISTED`] are logged, then one
/// line counts the rest (a payload of a million keys must not become a million log lines; the
/// summary still has one action per entry).
struct CappedLog {
    what: &'static str,
    seen: usize,
}

impl CappedLog {
    fn new(what: &'static str) -> CappedLog {
        CappedLog { what, seen: 0 }
    }

    fn warn(&mut self, msg: impl FnOnce() -> String) {
        if self.seen < runtime::text::MAX_LISTED {
            log::warn!("{}", msg());
        }
        self.seen += 1;
    }

    fn finish(self) {
        if let Some(more) = self.seen.checked_sub(runtime::text::MAX_LISTED) {
            if more > 0 {
                log::warn!("and {more} more {} (each reported skipped)", self.what);
            }
        }
    }
}

/// A stop signal arrived before anything was committed: nothing more is started (`runtime::run`
/// then adds its error and exits 75); the next delivery applies the entries.
fn stopped(mut summary: Summary, not_started: usize) -> Summary {
    let msg = runtime::stop::stopped_message(not_started);
    log::warn!("{msg}");
    summary.error(msg);
    summary.raise_exit(Exit::TempFail);
    summary
}

fn config(args: &Args) -> Result<Config, Error> {
    let usage = |m: String| Error::Usage(m);
    check_text("--repo", &args.repo).map_err(usage)?;
    if args.repo.trim().is_empty() {
        return Err(usage("--repo is empty".into()));
    }
    let repo = absolutize_local(&args.repo)?;
    check_branch("--branch", &args.branch)?;
    let push_branch = args
        .push_branch
        .clone()
        .unwrap_or_else(|| args.branch.clone());
    check_branch("--push-branch", &push_branch)?;
    let mut paths = Vec::new();
    for p in &args.paths {
        paths.push(check_path(p)?);
    }
    if paths.iter().any(|p| p.is_empty()) {
        paths.clear(); // "." = the whole repository
    }
    let allow_tags = match &args.allow_tags {
        Some(re) => Some(Regex::new(re).map_err(|e| usage(format!("--allow-tags: {e}")))?),
        None => None,
    };
    if let Some(author) = &args.author {
        if author.chars().any(char::is_control) || gitops::git::split_ident(author).is_none() {
            return Err(usage(format!(
                "--author {author:?} must look like \"Name <email>\""
            )));
        }
    }
    if let Some(t) = &args.message_template {
        message::validate_template(t).map_err(usage)?;
    }
    if args.push_attempts == 0 {
        return Err(usage("--push-attempts must be at least 1".into()));
    }
    Ok(Config {
        shown_repo: redact_url(&repo),
        repo,
        branch: args.branch.clone(),
        push_branch,
        paths,
        allow_tags,
        commit: CommitOptions {
            author: args.author.clone(),
            sign: args.sign,
        },
        template: args.message_template.clone(),
        push_backoff: Backoff {
            attempts: args.push_attempts,
            base: Duration::from_millis(200),
            max: Duration::from_secs(5),
        },
    })
}

/// A local repository path is made absolute (git runs from the workdir's parent); URLs and scp-like
/// `host:path` are kept.
fn absolutize_local(repo: &str) -> Result<String, Error> {
    let is_url = repo.contains("://");
    let scp_like = repo
        .split_once(':')
        .is_some_and(|(host, _)| !host.contains('/'));
    if is_url || scp_like {
        return Ok(repo.to_string());
    }
    std::path::absolute(repo)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| Error::Usage(format!("--repo {repo:?}: {e}")))
}

fn check_branch(flag: &str, b: &str) -> Result<(), Error> {
    let bad = b.is_empty()
        || b.starts_with(['-', '/'])
        || b.ends_with(['/', '.'])
        || b.ends_with(".lock")
        || b.contains("..")
        || b.contains("//")
        || b.contains("@{")
        || b.chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c));
    if bad {
        return Err(Error::Usage(format!(
            "{flag} {b:?} is not a valid branch name"
        )));
    }
    Ok(())
}

/// `--path` must stay inside the repository: relative, no `..`, no control characters.
fn check_path(p: &str) -> Result<String, Error> {
    let bad = |why: &str| Error::Usage(format!("--path {p:?} {why}"));
    if p.chars().any(char::is_control) {
        return Err(bad("contains control characters"));
    }
    if p.starts_with('-') {
        return Err(bad("starts with '-'"));
    }
    if Path::new(p).is_absolute() {
        return Err(bad("must be relative to the repository root"));
    }
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(bad("leaves the repository"));
    }
    Ok(parts.join("/"))
}

/// Where the working clone lives and its lock file.
struct Workdir {
    path: PathBuf,
    lock: PathBuf,
    /// A per-run clone (no cache directory available); removed at the end.
    _temp: Option<tempfile::TempDir>,
    /// Ours to delete and re-clone if it is broken (the default cache location).
    cache: bool,
}

impl Workdir {
    fn resolve(args: &Args) -> Result<Workdir, Error> {
        if let Some(dir) = &args.workdir {
            // git runs in several directories (the clone, its parent): make the path absolute once.
            let dir = &std::path::absolute(dir)
                .map_err(|e| Error::Usage(format!("--workdir {}: {e}", dir.display())))?;
            let name = dir.file_name().ok_or_else(|| {
                Error::Usage(format!("--workdir {} must name a directory", dir.display()))
            })?;
            let mut lock_name = name.to_os_string();
            lock_name.push(".lock");
            return Ok(Workdir {
                path: dir.clone(),
                lock: dir.with_file_name(lock_name),
                _temp: None,
                cache: false,
            });
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .filter(|p| p.is_absolute());
        let shown = redact_url(&args.repo);
        let slug = slug(&shown);
        let name = format!("{slug}-{:016x}", fnv1a(shown.as_bytes()));
        match cache {
            Some(base) => {
                let dir = base.join("shipwatch").join("tag2git");
                Ok(Workdir {
                    path: dir.join(&name),
                    lock: dir.join(format!("{name}.lock")),
                    _temp: None,
                    cache: true,
                })
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("tag2git-")
                    .tempdir()
                    .map_err(|e| Error::Io(format!("cannot create a temporary workdir: {e}")))?;
                Ok(Workdir {
                    path: temp.path().join(&name),
                    lock: temp.path().join(format!("{name}.lock")),
                    _temp: Some(temp),
                    cache: false,
                })
            }
        }
    }
}

/// Last path segment of the repository, reduced to `[a-z0-9._-]`, for a readable cache name.
fn slug(repo: &str) -> String {
    let last = repo
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("repo");
    let last = last.strip_suffix(".git").unwrap_or(last);
    let s: String = last
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .take(40)
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("repo{s}")
    } else {
        s
    }
}

/// FNV-1a, 64 bit: a stable hash for the cache directory name (std's hasher is not stable across
/// releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// The URL without credentials, to compare clones made with different tokens.
fn without_credentials(url: &str) -> String {
    runtime::redact::split_userinfo(url).0
}

/// Opens or (re)creates the working clone.
fn prepare(cfg: &Config, wd: &Workdir, ctx: &Context) -> Result<Git, Error> {
    let redactor = Redactor::for_url(&cfg.repo);
    let git = Git::open(&wd.path, redactor.clone());
    if git.is_repo() {
        // We hold the workdir lock, so no other git process uses this clone: any git lock file is
        // left over from a run that was killed, and would block every later run.
        for stale in git.remove_stale_locks() {
            log::warn!("removed stale git lock {}", stale.display());
        }
        match git.origin_url(ctx.deadline.cap(LOCAL_TIMEOUT)) {
            Ok(url) if url == cfg.repo => return Ok(git),
            Ok(url) if without_credentials(&url) == without_credentials(&cfg.repo) => {
                git.set_origin_url(&cfg.repo, ctx.deadline.cap(LOCAL_TIMEOUT))?;
                return Ok(git);
            }
            Ok(url) => {
                return Err(Error::Usage(format!(
                    "workdir {} is a clone of {}, not {}",
                    wd.path.display(),
                    redact_url(&url),
                    cfg.shown_repo
                )))
            }
            Err(e) if wd.cache => {
                log::warn!("re-cloning broken workdir {}: {e}", wd.path.display());
                std::fs::remove_dir_all(&wd.path)
                    .map_err(|e| Error::Io(format!("cannot remove {}: {e}", wd.path.display())))?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let non_empty = std::fs::read_dir(&wd.path)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if non_empty {
        return Err(Error::Usage(format!(
            "workdir {} exists and is not a clone of {}",
            wd.path.display(),
            cfg.shown_repo
        )));
    }
    if let Some(parent) = wd.path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", parent.display())))?;
    }
    log::info!("cloning {} into {}", cfg.shown_repo, wd.path.display());
    remote(cfg, ctx, || {
        // A failed clone may leave a partial directory behind; start each try clean.
        if wd.path.exists() {
            let _ = std::fs::remove_dir_all(&wd.path);
        }
        Git::clone_repo(
            &cfg.repo,
            &wd.path,
            redactor.clone(),
            ctx.deadline.cap(NETWORK_TIMEOUT),
        )
    })
}

/// Runs a remote operation with bounded jittered retries while the remote is unreachable.
fn remote<T>(
    cfg: &Config,
    ctx: &Context,
    mut op: impl FnMut() -> Result<T, GitError>,
) -> Result<T, Error> {
    FETCH_BACKOFF
        .retry(
            Some(&ctx.deadline),
            |e: &GitError| {
                let retry = e.kind() == FailureKind::Unreachable;
                if retry {
                    log::warn!("{e}; retrying");
                }
                retry
            },
            |_| op(),
        )
        .map_err(|e| match e.kind() {
            FailureKind::Unreachable => Error::Unreachable {
                repo: cfg.shown_repo.clone(),
                source: e,
            },
            _ => Error::Git(e),
        })
}

/// Fetch → reset → compute → commit → push, repeated on a lost push race.
///
/// Stop signals (`runtime::stop`): no new write is started once one arrives. It is checked before
/// each attempt, before the files are edited and committed, and before the push; git commands in
/// flight finish (each bounded by its timeout). A commit made but not pushed stays in the workdir
/// only until the next run resets it to the remote tip and re-applies the entries.
struct Cycle<'a> {
    cfg: &'a Config,
    ctx: &'a Context,
    git: &'a Git,
    all: bool,
}

/// What happened to the computed changes.
enum Outcome {
    Planned,
    Applied(String),
    Failed,
    /// A stop signal arrived before the commit (`committed: false`) or before the push.
    Stopped {
        committed: bool,
    },
}

/// The entries of one attempt, split by what the history says: indexes into the updates (4
/// bytes an entry; the final report moves each key into its action instead of copying it).
struct Split {
    /// To apply.
    pending: Vec<u32>,
    /// Already applied (key, index and value recorded).
    replayed: Vec<(u32, Seen)>,
    /// Pending entries whose index is lower than the highest recorded for their key.
    backwards: Vec<(u32, u64)>,
}

impl Cycle<'_> {
    fn local(&self) -> Duration {
        self.ctx.deadline.cap(LOCAL_TIMEOUT)
    }

    fn split(&self, updates: &[Update], history: &History) -> Split {
        let mut split = Split {
            pending: Vec::new(),
            replayed: Vec::new(),
            backwards: Vec::new(),
        };
        // At most u32::MAX entries: a payload is far smaller (an entry takes dozens of bytes).
        for (i, u) in (0..).zip(updates) {
            match history.seen(u) {
                _ if self.all => split.pending.push(i),
                seen @ Seen::Recorded { .. } => split.replayed.push((i, seen)),
                Seen::Backwards { highest } => {
                    split.pending.push(i);
                    split.backwards.push((i, highest));
                }
                Seen::New => split.pending.push(i),
            }
        }
        split
    }

    /// `updates` is only read until the report, which moves each key it reports into its action.
    fn run(&self, updates: &mut [Update], mut summary: Summary) -> Result<Summary, Error> {
        let mut attempt = 1;
        loop {
            if runtime::stop::requested() {
                return Ok(stopped(summary, updates.len()));
            }
            let (base, history_revs) = self.fetch()?;
            self.git.reset_to(&base, self.local())?;
            let history = self.history(&history_revs)?;
            let split = self.split(updates, &history);
            let files = scan::job_files(self.git.ls_files(&self.cfg.paths, self.local())?);
            if files.is_empty() {
                log::warn!(
                    "no tracked *.json files under {}",
                    if self.cfg.paths.is_empty() {
                        "the repository root".to_string()
                    } else {
                        self.cfg.paths.join(", ")
                    }
                );
            }
            let scan = scan::scan(self.git.dir(), &files, updates, &split.pending);
            log::info!(
                "scanned {} JSON files: {} job images match, {} to change",
                scan.files_scanned,
                scan.sites.len(),
                scan.changes().count()
            );
            let changes: Vec<_> = scan.changes().collect();
            if changes.is_empty() {
                self.report(&mut summary, updates, &split, &scan, &Outcome::Planned);
                return Ok(summary);
            }
            if !self.ctx.dry_run && runtime::stop::requested() {
                return Ok(self.stop(summary, updates, &split, &scan, false));
            }
            let written = scan
                .write(self.git.dir())
                .map_err(|e| Error::Io(e.to_string()))?;
            if self.ctx.dry_run {
                let diff = self.git.diff(&written, self.local())?;
                self.git.reset_to(&base, self.local())?;
                self.show_diff(&diff);
                self.report(&mut summary, updates, &split, &scan, &Outcome::Planned);
                return Ok(summary);
            }
            let msg = message::build(
                updates,
                &changes,
                self.ctx.consul_index,
                self.cfg.template.as_deref(),
            )
            .map_err(Error::Usage)?;
            self.git.add(&written, self.local())?;
            let commit = self.git.commit(&msg, &self.cfg.commit, self.local())?;
            if runtime::stop::requested() {
                log::warn!(
                    "stopped by a signal: commit {} not pushed; the next delivery re-applies it",
                    &commit[..commit.len().min(12)]
                );
                return Ok(self.stop(summary, updates, &split, &scan, true));
            }
            match self.push(&commit) {
                Ok(()) => {
                    log::info!(
                        "pushed {} to {}",
                        &commit[..commit.len().min(12)],
                        self.cfg.push_branch
                    );
                    self.report(
                        &mut summary,
                        updates,
                        &split,
                        &scan,
                        &Outcome::Applied(commit),
                    );
                    return Ok(summary);
                }
                Err(e) if e.kind() == FailureKind::Rejected && self.may_retry(attempt) => {
                    let wait = self.cfg.push_backoff.delay(attempt);
                    log::warn!("push rejected (attempt {attempt}): the remote moved; re-applying on the new tip in {wait:?}");
                    if !runtime::stop::sleep(wait) {
                        return Ok(self.stop(summary, updates, &split, &scan, true));
                    }
                    attempt += 1;
                }
                Err(e) => {
                    let exit = if e.kind() == FailureKind::Unreachable {
                        Exit::Unavailable
                    } else {
                        Exit::TempFail
                    };
                    let msg = format!(
                        "push to {} of {} failed after {attempt} attempt(s): {e}",
                        self.cfg.push_branch, self.cfg.shown_repo
                    );
                    log::error!("{msg}");
                    summary.error(msg);
                    summary.raise_exit(exit);
                    self.report(&mut summary, updates, &split, &scan, &Outcome::Failed);
                    return Ok(summary);
                }
            }
        }
    }

    /// A stop signal ended the run before the commit (`committed: false`) or before the push.
    fn stop(
        &self,
        mut summary: Summary,
        updates: &mut [Update],
        split: &Split,
        scan: &Scan,
        committed: bool,
    ) -> Summary {
        self.report(
            &mut summary,
            updates,
            split,
            scan,
            &Outcome::Stopped { committed },
        );
        summary
    }

    fn may_retry(&self, attempt: u32) -> bool {
        attempt < self.cfg.push_backoff.attempts
            && self.ctx.deadline.remaining()
                > self.cfg.push_backoff.delay(attempt) + Duration::from_secs(1)
    }

    /// Pushes, retrying the same commit while the remote is unreachable (not after a stop signal).
    fn push(&self, commit: &str) -> Result<(), GitError> {
        log::debug!("pushing {commit}");
        let mut attempt = 1;
        loop {
            match self.git.push(
                &self.cfg.push_branch,
                self.ctx.deadline.cap(NETWORK_TIMEOUT),
            ) {
                Err(e) if e.kind() == FailureKind::Unreachable && self.may_retry(attempt) => {
                    log::warn!("{e}; retrying");
                    if !runtime::stop::sleep(self.cfg.push_backoff.delay(attempt)) {
                        return Err(e);
                    }
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Fetches the branch (and the push branch); returns the revision to build on and the revisions
    /// whose history records what was already applied.
    fn fetch(&self) -> Result<(String, Vec<String>), Error> {
        let t = || self.ctx.deadline.cap(NETWORK_TIMEOUT);
        let branch = &self.cfg.branch;
        if !remote(self.cfg, self.ctx, || self.git.fetch_branch(branch, t()))? {
            return Err(Error::Usage(format!(
                "branch {branch:?} does not exist in {}",
                self.cfg.shown_repo
            )));
        }
        let base_ref = format!("refs/remotes/origin/{branch}");
        let push = &self.cfg.push_branch;
        if push == branch {
            return Ok((base_ref.clone(), vec![base_ref]));
        }
        if remote(self.cfg, self.ctx, || self.git.fetch_branch(push, t()))? {
            let push_ref = format!("refs/remotes/origin/{push}");
            Ok((push_ref.clone(), vec![push_ref, base_ref]))
        } else {
            Ok((base_ref.clone(), vec![base_ref]))
        }
    }

    /// The writes recorded in the trailers of the newest [`HISTORY_LIMIT`] tag2git commits.
    fn history(&self, revs: &[String]) -> Result<History, Error> {
        let revs: Vec<&str> = revs.iter().map(String::as_str).collect();
        let trailers = self.git.trailers(
            &revs,
            &[
                message::TRAILER_KEY,
                message::TRAILER_MODIFY_INDEX,
                message::TRAILER_VALUE,
            ],
            &format!("^{}:", message::TRAILER_MODIFY_INDEX),
            HISTORY_LIMIT,
            self.ctx.deadline.cap(NETWORK_TIMEOUT),
        )?;
        Ok(History::from_trailers(&trailers))
    }

    fn show_diff(&self, diff: &str) {
        match self.ctx.output {
            runtime::OutputFormat::Text => print!("{diff}"),
            // stdout carries exactly one JSON document; the diff goes to stderr.
            runtime::OutputFormat::Json => eprint!("{diff}"),
        }
    }

    /// The run's actions. The last use of `updates`: the keys reported move into the summary.
    fn report(
        &self,
        summary: &mut Summary,
        updates: &mut [Update],
        split: &Split,
        scan: &Scan,
        outcome: &Outcome,
    ) {
        let mut has_job = vec![false; updates.len()];
        for s in &scan.sites {
            has_job[s.update] = true;
        }
        let without_job = split
            .pending
            .iter()
            .filter(|&&i| !has_job[i as usize])
            .count();
        // One action per entry: sized once rather than grown (and copied) a million times over.
        summary
            .actions
            .reserve(split.replayed.len() + without_job + scan.sites.len());
        for (i, seen) in &split.replayed {
            let u = &mut updates[*i as usize];
            let how = match seen {
                Seen::Recorded { legacy: true } => {
                    "key and ModifyIndex recorded in the history (a commit from before Consul-Value)"
                }
                _ => "key, ModifyIndex and value recorded in the history",
            };
            let detail = format!(
                "{} at ModifyIndex {} already committed ({how}); not re-applied (use --all to force)",
                u.reference(),
                u.modify_index
            );
            summary.push(Action::new(KIND, u.take_key(), Status::Skipped, detail));
        }
        if !split.backwards.is_empty() {
            let msg = format!(
                "ModifyIndex went backwards for {} key(s) (a Consul snapshot restore, or another cluster writing them): their values are not recorded at these indexes, so they are treated as new writes, not replays: {}",
                split.backwards.len(),
                capped_list(split.backwards.iter().map(|&(i, highest)| {
                    let u = &updates[i as usize];
                    format!("{} = {} at {} (history has {highest})", u.key(), u.reference(), u.modify_index)
                }))
            );
            log::warn!("{msg}");
            summary.warn(msg);
        }
        let mut log = CappedLog::new("entries whose image no job runs");
        for &i in split.pending.iter().filter(|&&i| !has_job[i as usize]) {
            let u = &mut updates[i as usize];
            let detail = format!("no job runs {}", u.repository());
            log.warn(|| format!("{}: {detail}", u.key()));
            summary.push(Action::new(KIND, u.take_key(), Status::Skipped, detail));
        }
        log.finish();
        let mut not_started = 0;
        for s in &scan.sites {
            let change = format!("{} -> {} (job {})", s.old, s.new, s.job_id);
            let action = if s.is_unchanged() {
                Action::new(
                    KIND,
                    s.target(),
                    Status::Unchanged,
                    format!("already {} (job {})", s.new, s.job_id),
                )
            } else {
                match outcome {
                    Outcome::Planned => Action::new(KIND, s.target(), Status::Planned, change),
                    Outcome::Applied(c) => Action::new(
                        KIND,
                        s.target(),
                        Status::Applied,
                        format!("{change}, commit {}", &c[..c.len().min(12)]),
                    ),
                    Outcome::Failed => Action::new(
                        KIND,
                        s.target(),
                        Status::Failed,
                        format!("{change}: not pushed"),
                    ),
                    Outcome::Stopped { committed } => {
                        not_started += 1;
                        let when = if *committed {
                            "committed locally, not pushed"
                        } else {
                            "not committed"
                        };
                        Action::new(
                            KIND,
                            s.target(),
                            Status::Skipped,
                            format!("{change}: {when}: stopped by a signal; the next delivery applies it"),
                        )
                    }
                }
            };
            summary.push(action);
        }
        if not_started > 0 {
            summary.error(runtime::stop::stopped_message(not_started));
            summary.raise_exit(Exit::TempFail);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside() {
        assert_eq!(check_path("./jobs/prod/").unwrap(), "jobs/prod");
        assert_eq!(check_path(".").unwrap(), "");
        for bad in ["../x", "jobs/../../x", "/etc", "-x", "a\nb"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn branches() {
        assert!(check_branch("b", "main").is_ok());
        assert!(check_branch("b", "tag2git/auto").is_ok());
        for bad in ["", "-x", "a..b", "a b", "a:b", "x.lock", "a/", "a\u{1}"] {
            assert!(check_branch("b", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cache_names() {
        assert_eq!(slug("https://***@git.example/ops/jobs.git"), "jobs");
        assert_eq!(slug("git@host:ops/Jobs"), "jobs");
        assert_eq!(slug("/srv/git/.hidden"), "repo.hidden");
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
    }
}
