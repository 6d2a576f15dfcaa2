//! kv2jobs: deploys the job configs that git2consul mirrors into Consul KV to Marathon (apps and
//! groups) and Chronos (jobs), writing only what differs.
//!
//! For: the `kv2jobs` binary and its tests: classify a keyprefix payload ([`config`]), plan
//! desired vs live ([`plan`]), apply with Marathon's realities ([`apply`]), report ([`report`]).
//! Not for: the HTTP protocols themselves (the `marathon` and `consul` crates) or the CLI
//! conventions (`runtime`).

pub mod apply;
pub mod cache;
pub mod config;
pub mod meta;
pub mod plan;
pub mod refwait;
pub mod report;
pub mod rules;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use marathon::{Chronos, ChronosError, Marathon, MarathonError};
use runtime::http::ConfigError;
use runtime::text::{capped_str, MAX_LISTED};
use runtime::{stop, Action, Context, Exit, Status, Summary, ToExit};

use crate::apply::{ApplyOptions, Outcome};
use crate::cache::Cache;
use crate::config::{segment_prefix, Snapshot};
use crate::plan::{MaxDelete, Op, Plan, PlanOptions};
use crate::refwait::Settled;

/// What can stop a run before any action (each maps to an exit code).
#[derive(Debug, thiserror::Error)]
pub enum Kv2jobsError {
    #[error("invalid payload: {0}")]
    Decode(#[from] watch::DecodeError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("reading the live apps: {0}")]
    Marathon(#[from] MarathonError),
    #[error("reading the live jobs: {0}")]
    Chronos(#[from] ChronosError),
}

impl ToExit for Kv2jobsError {
    fn exit(&self) -> Exit {
        match self {
            Kv2jobsError::Decode(e) => e.exit(),
            Kv2jobsError::Config(e) => e.exit(),
            Kv2jobsError::Marathon(e) => e.exit(),
            Kv2jobsError::Chronos(e) => e.exit(),
        }
    }
}

/// The handler's own flags.
#[derive(Debug, Clone)]
pub struct Options {
    pub prefix: String,
    pub prune: bool,
    pub allow_empty: bool,
    pub force: bool,
    pub wait: bool,
    pub deploy_timeout: Duration,
    pub fire_event: Option<String>,
    pub parallel: usize,
    /// `--batch-size`: changed apps per bulk `PUT /v2/apps` (one Marathon deployment each).
    pub batch_size: usize,
    /// `--max-delete`: the most deletes one run may make.
    pub max_delete: MaxDelete,
    /// `--ref-wait`: how long to wait for git2consul's `.ref` when files are newer than it.
    pub ref_wait: Duration,
    /// `--rollback-on-failure` (with `--wait`): put back the version that was live before a
    /// deployment of this run that failed or timed out.
    pub rollback_on_failure: bool,
    /// `--cache-dir`: where verdicts are kept between runs (see [`cache`]).
    pub cache_dir: Option<std::path::PathBuf>,
    /// What the cache file of this watch is keyed by, besides `prefix` (the `--marathon` list).
    pub cache_key: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            prefix: String::new(),
            prune: false,
            allow_empty: false,
            force: false,
            wait: false,
            deploy_timeout: Duration::from_secs(120),
            fire_event: None,
            parallel: 4,
            batch_size: 50,
            max_delete: MaxDelete::default(),
            ref_wait: Duration::from_secs(60),
            rollback_on_failure: false,
            cache_dir: None,
            cache_key: String::new(),
        }
    }
}

/// The remotes a run talks to.
pub struct Remotes<'a> {
    /// `Err` holds why no Marathon client could be made (no URL, bad URL): only an error when
    /// the payload needs Marathon (app configs or --prune), so a payload without apps can be
    /// checked with --dry-run and no Marathon.
    pub marathon: Result<&'a Marathon, String>,
    pub chronos: Option<&'a Chronos>,
    /// Built only when needed: to fire an event, or to wait for git2consul's `.ref`.
    pub consul: Option<&'a dyn Fn() -> Result<consul::Consul, ConfigError>>,
}

fn config_action(key: &str, status: Status, detail: String) -> Action {
    Action::new("config", key, status, detail)
}

/// Rejected configs: each a `failed` action (exit 65); `errors` names the first
/// [`MAX_LISTED`] (a payload of a million bad keys must not become a huge error line).
fn reject_all(summary: &mut Summary, rejected: &[(String, String)]) {
    for (i, (key, why)) in rejected.iter().enumerate() {
        summary.reject("config", key, format!("rejected: {why}"));
        if i < MAX_LISTED {
            summary.error(capped_str(&format!("{key}: {why}"), 500));
        }
    }
    if rejected.len() > MAX_LISTED {
        summary.error(format!(
            "and {} more rejected config(s): each is a failed config action",
            rejected.len() - MAX_LISTED
        ));
    }
}

/// One whole run over a payload: decode, wait for a consistent snapshot, classify, read live
/// state (one request per remote), plan, guard the deletes, apply (unless dry run), follow, fire
/// the event (runtime posts `--notify`).
///
/// For a large payload (or `--prune`) the live apps are read on a second thread as soon as the
/// snapshot is known to be consistent, while the configs are parsed (issue 13): for a large
/// branch the two take about as long, and the plan needs both. The reader compares each live
/// app with its config as it decodes it (what to compare with reaches it by a channel), so
/// unchanged apps are never held whole.
pub fn run(ctx: &Context, opts: &Options, remotes: &Remotes<'_>) -> Result<Summary, Kv2jobsError> {
    std::thread::scope(|s| run_with(ctx, opts, remotes, s))
}

/// Payloads from which reading the live apps while the configs are parsed pays off (about 100
/// configs): below this, there is too little work to hide the read behind.
const EARLY_READ_MIN_BYTES: usize = 32 * 1024;

/// The live read started with the run.
struct EarlyRead<'s> {
    handle: std::thread::ScopedJoinHandle<'s, Result<plan::LiveApps, MarathonError>>,
    /// What to compare the live apps with; dropped unsent when the read is not needed.
    expected: std::sync::mpsc::Sender<plan::Expected>,
}

impl EarlyRead<'_> {
    /// Hands the reader what to compare with (nothing: the answer is not needed) and waits
    /// for it.
    fn finish(self, expected: Option<plan::Expected>) -> Result<plan::LiveApps, MarathonError> {
        if let Some(e) = expected {
            let _ = self.expected.send(e);
        }
        drop(self.expected);
        join_or_resume(self.handle)
    }
}

fn run_with<'s>(
    ctx: &'s Context,
    opts: &'s Options,
    remotes: &'s Remotes<'_>,
    scope: &'s std::thread::Scope<'s, '_>,
) -> Result<Summary, Kv2jobsError> {
    let pairs = watch::decode_kv(&ctx.payload)?;
    let single_key = ctx
        .payload
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let prefix = segment_prefix(&opts.prefix);
    let mut summary = ctx.summary();
    let mut consul_index = ctx.consul_index;
    let pairs = if Snapshot::of(&pairs, &prefix, None).stale.is_empty() {
        pairs
    } else {
        let consul = match remotes.consul.map(|make| make()).transpose() {
            Ok(c) => c.map(Arc::new),
            Err(e) => return Err(e.into()),
        };
        let t0 = std::time::Instant::now();
        match refwait::settle(pairs, &prefix, opts.ref_wait, consul, ctx.deadline) {
            Settled::Consistent { pairs, index } => {
                log::info!("git2consul finished its sync; acting on the re-read snapshot");
                consul_index = index.or(consul_index);
                pairs
            }
            Settled::Stuck(stale) => {
                let msg = refwait::stuck_message(&stale, t0.elapsed());
                log::error!("{msg}");
                let target = stale.first().map(|s| s.ref_key.clone()).unwrap_or_default();
                summary.push(Action::new("snapshot", target, Status::Failed, msg.clone()));
                summary.error(msg);
                return Ok(summary);
            }
            Settled::Stopped => {
                summary.error(
                    "stopped by a signal while waiting for git2consul's .ref; nothing was deployed or deleted",
                );
                return Ok(summary);
            }
            Settled::Failed(e) => {
                summary.error(format!(
                    "waiting for git2consul's .ref (files are newer than it): {e}; nothing was deployed or deleted"
                ));
                summary.raise_exit(e.exit());
                return Ok(summary);
            }
        }
    };
    let cache = match &opts.cache_dir {
        Some(dir) => Cache::open(dir, &opts.cache_key, &prefix),
        None => Cache::default(),
    };
    let roots = RootCheck {
        track: cache.is_enabled(),
        // A prune needs every live app: never read only some.
        cached: cache.root().filter(|_| !opts.prune).map(str::to_string),
    };
    let early = marathon_of(remotes)
        .filter(|_| opts.prune || ctx.payload.len() >= EARLY_READ_MIN_BYTES)
        .map(|m| {
            let (expected, rx) = std::sync::mpsc::channel();
            let roots = roots.clone();
            EarlyRead {
                handle: scope.spawn(move || read_live_apps(m, &rx, &roots)),
                expected,
            }
        });
    let mut desired = config::classify_with(&pairs, &prefix, single_key, &cache);
    desired.snapshot = Snapshot::of(&pairs, &prefix, consul_index);
    let commits = meta::Commits::of(&pairs);
    // The decoded values are parsed: not held while the comparison forms are made.
    drop(pairs);
    let needed = !desired.apps.is_empty() || opts.prune;
    // Not needed (a large branch of Chronos jobs only): the answer is dropped, whatever it is.
    let early_live = early
        .map(|e| e.finish(needed.then(|| plan::expected(&desired))))
        .filter(|_| needed);
    let popts = PlanOptions {
        prefix: prefix.clone(),
        prune: opts.prune,
        allow_empty: opts.allow_empty,
    };
    let mut plan = Plan::default();
    let mut live_apps: Option<plan::LiveApps> = None;
    // One remote being unreachable does not hold up the other: its configs are reported as not
    // deployed (exit 69 or 75) and a replay completes them.
    if !desired.apps.is_empty() || opts.prune {
        let m = remotes
            .marathon
            .as_ref()
            .map_err(|e| ConfigError::Invalid(e.clone()))?;
        let live = match early_live {
            Some(live) => live,
            None => {
                let (forms_tx, forms_rx) = std::sync::mpsc::channel();
                let _ = forms_tx.send(plan::expected(&desired));
                read_live_apps(m, &forms_rx, &roots)
            }
        };
        match live {
            Ok(live) => {
                plan::plan_apps(&mut desired, &live, &popts, &mut plan);
                let targets = plan.news_targets();
                if ctx.routes_notifications {
                    meta::of_live_apps(&live.apps, &targets, &commits, &mut summary.meta);
                }
                drop(targets);
                live_apps = Some(live);
            }
            Err(e) if e.exit() == Exit::Usage => return Err(e.into()),
            Err(e) => {
                summary.error(format!(
                    "reading the live apps: {e}; {} app config(s) not deployed, nothing pruned",
                    desired.apps.len()
                ));
                summary.raise_exit(e.exit().worst(Exit::TempFail));
            }
        }
    }
    if !desired.jobs.is_empty() || (opts.prune && remotes.chronos.is_some()) {
        match remotes.chronos.map(Chronos::list_jobs).transpose() {
            Ok(live) => {
                plan::plan_jobs(&desired, live.as_deref(), &popts, &mut plan);
                let targets = plan.news_targets();
                let live = live.unwrap_or_default();
                if ctx.routes_notifications {
                    meta::of_live_jobs(&live, &targets, &commits, &mut summary.meta);
                }
            }
            Err(e) if e.exit() == Exit::Usage => return Err(e.into()),
            Err(e) => {
                summary.error(format!(
                    "reading the live jobs: {e}; {} job config(s) not deployed, nothing pruned",
                    desired.jobs.len()
                ));
                summary.raise_exit(e.exit().worst(Exit::TempFail));
            }
        }
    }
    if ctx.routes_notifications {
        meta::of_desired(&desired, &plan.news_targets(), &commits, &mut summary.meta);
    }
    // Keys that plan rejected (a former config that now holds none) are not "skipped" too.
    let rejected_in_plan: std::collections::BTreeSet<&str> =
        plan.rejected.iter().map(|(k, _)| k.as_str()).collect();
    for (key, why) in &desired.skipped {
        if !rejected_in_plan.contains(key.as_str()) {
            summary.push(config_action(key, Status::Skipped, why.clone()));
        }
    }
    let mut rejected = std::mem::take(&mut desired.rejected);
    rejected.append(&mut plan.rejected);
    reject_all(&mut summary, &rejected);
    guard_deletes(opts, &mut plan, &mut summary);
    log::info!(
        "{} config(s), {} write(s) planned",
        desired.apps.len() + desired.jobs.len(),
        plan.writes()
    );
    let (outcomes, rollbacks) = if ctx.dry_run {
        (BTreeMap::new(), Vec::new())
    } else {
        execute(ctx, opts, remotes, &plan)
    };
    if let (false, Some(live), Some(m)) = (ctx.dry_run, &live_apps, marathon_of(remotes)) {
        let root = root_after(m, live.root.clone(), &plan, &outcomes, &rollbacks);
        save_cache(&cache, &desired, live, &plan, root);
    }
    let mut not_started = 0;
    summary.actions.reserve(plan.items.len());
    for (i, item) in plan.items.iter().enumerate() {
        let (status, detail) = match outcomes.get(&i) {
            Some(o) => (o.status, join_detail(&item.detail, &o.detail)),
            None if item.is_write() && ctx.dry_run => (Status::Planned, item.detail.clone()),
            None if item.is_write() => {
                // Only a stop signal leaves a write without an outcome.
                not_started += 1;
                (
                    Status::Skipped,
                    join_detail(&item.detail, "not started: stopped by a signal"),
                )
            }
            None if item.unchanged => (Status::Unchanged, item.detail.clone()),
            None => (Status::Skipped, item.detail.clone()),
        };
        summary.push(Action::new(item.kind, &item.target, status, detail));
    }
    for a in rollbacks {
        summary.push(a);
    }
    if not_started > 0 {
        summary.warn(stop::stopped_message(not_started));
    }
    if !ctx.dry_run {
        tell(opts, remotes, &mut summary);
    }
    Ok(summary)
}

/// What `--cache-dir` asks of the live read: Marathon's newest root group version (`track`),
/// and the one the cache's verdicts were written at (`cached`; none with `--prune`).
#[derive(Debug, Clone, Default)]
struct RootCheck {
    track: bool,
    cached: Option<String>,
}

/// Most apps read one by one (`GET /v2/apps/{id}`) when Marathon has not changed since the
/// cache was written; with more, the whole list is read.
const SINGLE_READS_MAX: usize = 50;

fn marathon_of<'a>(remotes: &Remotes<'a>) -> Option<&'a Marathon> {
    remotes.marathon.as_ref().ok().copied()
}

/// Marathon's newest root group version, or `None` (logged) when it cannot be read: then every
/// app is read and nothing is recorded.
fn newest_root(m: &Marathon) -> Option<String> {
    match m.root_versions() {
        Ok(v) => v.into_iter().max(),
        Err(e) => {
            log::info!(
                "--cache-dir: reading Marathon's root group versions: {e}; every app is read"
            );
            None
        }
    }
}

/// The live apps, each reduced as it is decoded (see [`plan::LiveApps`]): 10,000 full apps are
/// never held. What to compare them with is awaited when the answer has arrived (the configs
/// are parsed meanwhile); nothing (a closed channel) compares nothing. With `--cache-dir`,
/// Marathon's newest root group version is read first: when it is the one the cache was
/// written at, nothing changed in Marathon since, and only the apps without a verdict are read
/// (see [`plan::read_unverified`]); otherwise `GET /v2/apps`.
fn read_live_apps(
    m: &Marathon,
    expected: &std::sync::mpsc::Receiver<plan::Expected>,
    roots: &RootCheck,
) -> Result<plan::LiveApps, MarathonError> {
    // Read before the apps: a change made while they are read makes a newer one.
    let root = roots.track.then(|| newest_root(m)).flatten();
    let mut received: Option<plan::Expected> = None;
    if root.is_some() && root == roots.cached {
        let e = expected.recv().unwrap_or_default();
        if let Some(mut live) = plan::read_unverified(m, &e, SINGLE_READS_MAX)? {
            log::info!(
                "Marathon unchanged since --cache-dir was written (root group version {}): {} app(s) read, {} known equal",
                root.as_deref().unwrap_or_default(),
                live.apps.len(),
                live.cached
            );
            live.root = root;
            return Ok(live);
        }
        received = Some(e);
    }
    let mut live = plan::LiveApps::default();
    live.apps = m.list_apps_raw(false, None, |raw| {
        let expected = received.get_or_insert_with(|| expected.recv().unwrap_or_default());
        plan::reduce_live_raw(raw, expected, &mut live)
    })?;
    live.root = root;
    log::info!(
        "{} live app(s) read: {} equal to their config, {} of them known from --cache-dir",
        live.apps.len(),
        live.same.len(),
        live.cached
    );
    Ok(live)
}

/// The root group version the cache's verdicts hold at after this run: the one read before the
/// apps when this run changed nothing in Marathon; after its writes, the newest one when every
/// version made since is one its writes made (re-read); `None` (the next run reads every app)
/// when anything else changed Marathon meanwhile, a write's version is unknown, or a rollback
/// ran.
fn root_after(
    m: &Marathon,
    before: Option<String>,
    plan: &Plan,
    outcomes: &BTreeMap<usize, Outcome>,
    rollbacks: &[Action],
) -> Option<String> {
    let before = before?;
    if !rollbacks.is_empty() {
        return None;
    }
    let mut ours = std::collections::HashSet::new();
    let mut wrote = false;
    for (i, item) in plan.items.iter().enumerate() {
        if !matches!(item.op, Op::PutApp(_) | Op::DeleteApp) {
            continue;
        }
        let Some(o) = outcomes.get(&i) else {
            continue;
        };
        wrote = true;
        match &o.version {
            Some(v) => {
                ours.insert(v.clone());
            }
            None if o.status == Status::Applied => return None,
            None => {}
        }
    }
    if !wrote {
        return Some(before);
    }
    let now = m.root_versions().ok()?;
    let foreign = now
        .iter()
        .any(|v| v.as_str() > before.as_str() && !ours.contains(v));
    if foreign {
        log::info!(
            "--cache-dir: Marathon changed besides this run's writes; the next run reads every app"
        );
        return None;
    }
    now.into_iter().max()
}

/// `--cache-dir`: the verdicts of this run (apps found unchanged, at their live version) and
/// the root group version they hold at replace the file. Not after `--dry-run`; a failure is a
/// warning only.
fn save_cache(
    cache: &Cache,
    desired: &config::Desired,
    live: &plan::LiveApps,
    plan: &Plan,
    root: Option<String>,
) {
    if !cache.is_enabled() {
        return;
    }
    let unchanged: std::collections::HashSet<&str> = plan
        .items
        .iter()
        .filter(|i| i.unchanged && i.kind == "update-app")
        .map(|i| i.target.as_str())
        .collect();
    let entries = desired
        .apps
        .iter()
        .filter(|a| unchanged.contains(a.id.as_str()))
        .filter_map(|a| {
            let version = live.version_of(a)?;
            Some((
                a.id.clone(),
                cache::Entry {
                    version: version.to_string(),
                    config: a.config.clone(),
                    source: a.source.clone(),
                },
            ))
        })
        .collect();
    if let Err(e) = cache.save(entries, root) {
        let path = cache
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        log::warn!("--cache-dir: cannot write {path}: {e}; the next run compares every app");
    }
}

/// A scoped thread's result; its panic goes on in this thread.
fn join_or_resume<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// The delete guards' summary lines: deletes held back for want of a complete snapshot (a
/// warning, exit unchanged: the next consistent run prunes), and the delete cap (every delete
/// held back, exit 75). Warnings are sent with `--notify`.
fn guard_deletes(opts: &Options, plan: &mut Plan, summary: &mut Summary) {
    for (why, n) in &plan.held_back {
        summary.warn(format!(
            "{n} delete(s) held back: {why}; creates and updates were made, the next consistent run prunes"
        ));
    }
    if let Some(w) = plan.cap_deletes(opts.max_delete) {
        log::warn!("{w}");
        summary.warn(w);
        summary.raise_exit(Exit::TempFail);
    }
}

fn join_detail(plan: &str, outcome: &str) -> String {
    match (plan.split_once('\n'), outcome.is_empty()) {
        (_, true) => plan.to_string(),
        (Some((first, rest)), false) => format!("{first}; {outcome}\n{rest}"),
        (None, false) => format!("{plan}; {outcome}"),
    }
}

/// Applies the plan: Marathon puts, Chronos puts (parents first), then deletes (Marathon, then
/// Chronos children first); `--wait` follows the Marathon deployments, and
/// `--rollback-on-failure` rolls back those that failed (the rollbacks are extra actions).
fn execute(
    ctx: &Context,
    opts: &Options,
    remotes: &Remotes<'_>,
    plan: &Plan,
) -> (BTreeMap<usize, Outcome>, Vec<Action>) {
    let aopts = ApplyOptions {
        force: opts.force,
        deploy_timeout: opts.deploy_timeout,
        parallel: opts.parallel,
        batch_size: opts.batch_size,
    };
    let select = |f: fn(&Op) -> bool| -> Vec<usize> {
        plan.items
            .iter()
            .enumerate()
            .filter(|(_, it)| f(&it.op))
            .map(|(i, _)| i)
            .collect()
    };
    let mut out = BTreeMap::new();
    // Marathon items exist only when Marathon was read.
    let marathon = remotes.marathon.as_ref().ok().copied();
    if let Some(m) = marathon {
        let puts = select(|op| matches!(op, Op::PutApp(_)));
        out.extend(apply::apply_marathon(
            m,
            &plan.items,
            &puts,
            &aopts,
            ctx.deadline,
        ));
    }
    if let Some(c) = remotes.chronos {
        // On a stop signal no new write starts (those left without an outcome are reported as
        // not started).
        for i in select(|op| matches!(op, Op::PutJob(_))) {
            if stop::requested() {
                break;
            }
            out.insert(i, apply::apply_chronos_item(c, &plan.items[i]));
        }
    }
    if let Some(m) = marathon {
        let deletes = select(|op| matches!(op, Op::DeleteApp));
        out.extend(apply::apply_marathon(
            m,
            &plan.items,
            &deletes,
            &aopts,
            ctx.deadline,
        ));
    }
    if let Some(c) = remotes.chronos {
        for i in select(|op| matches!(op, Op::DeleteJob)) {
            if stop::requested() {
                break;
            }
            out.insert(i, apply::apply_chronos_item(c, &plan.items[i]));
        }
    }
    let mut rollbacks = Vec::new();
    if let (true, Some(m)) = (opts.wait, marathon) {
        apply::follow(m, &plan.items, &mut out, opts.deploy_timeout, ctx.deadline);
        if opts.rollback_on_failure {
            rollbacks =
                apply::rollback_failed(m, &plan.items, &out, opts.deploy_timeout, ctx.deadline);
        }
    }
    (out, rollbacks)
}

/// `--fire-event`. Its failure is listed in `errors` but does not change the
/// exit code (the deployment itself is done; a replay would not resend them).
fn tell(opts: &Options, remotes: &Remotes<'_>, summary: &mut Summary) {
    let Some(name) = &opts.fire_event else {
        return;
    };
    // "After a successful run": nothing failed and no remote was unreachable (rejected configs,
    // exit 65, do not stop the event for what was deployed).
    if !matches!(summary.exit(), Exit::Success | Exit::DataErr) {
        log::info!("not firing {name}: the run did not succeed");
        return;
    }
    let Some(payload) = report::event_payload(summary, name.len()) else {
        return;
    };
    let Some(make) = remotes.consul else {
        return;
    };
    match make().map(|c| c.event_fire(name, &payload)) {
        Ok(Ok(id)) => log::info!("fired Consul event {name} ({id})"),
        Ok(Err(e)) => summary.error(format!("--fire-event {name}: {e}")),
        Err(e) => summary.error(format!("--fire-event {name}: {e}")),
    }
}
