//! `--events`: apply Marathon's event stream as it arrives, with full resyncs.
//!
//! Marathon's stream is a cache-invalidation hint, not a log: its docs say ordering is not
//! guaranteed, clients miss events across reconnects and leader changes (reference §2.1, §4.4,
//! go-marathon#336). So:
//! - a full sync runs at start, every `--resync-interval`, when the stream shows a gap (a new
//!   `event_stream_attached`, i.e. a reconnection, or an undecodable frame), and its result
//!   replaces everything the events taught;
//! - between syncs, events update an in-memory copy of the selected apps and of the owned
//!   registrations, and only the affected app is re-planned (no Consul reads per event);
//! - a task seen in a terminal state is never registered again by a late `TASK_RUNNING`
//!   (reordering) until a full sync says otherwise.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::BufRead;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use std::sync::atomic::Ordering;

use runtime::{Exit, Status, Summary};
use serde_json::Value;
use watch::{EventStream, StreamEvent};

use crate::app::{App, Task};
use crate::follow::Metrics;
use crate::plan::{self, Change, Config, Mode, Owned};
use crate::scope::Scope;
use crate::sync::{SyncError, Syncer};

/// Mesos task states after which a task never runs again (Marathon docs call FINISHED, FAILED,
/// KILLED, LOST terminal; newer Mesos adds the others). TASK_KILLING deregisters early so that
/// traffic drains before the kill, as marathon-consul does.
pub fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "TASK_FINISHED"
            | "TASK_FAILED"
            | "TASK_KILLED"
            | "TASK_KILLING"
            | "TASK_LOST"
            | "TASK_ERROR"
            | "TASK_DROPPED"
            | "TASK_UNREACHABLE"
            | "TASK_GONE"
            | "TASK_GONE_BY_OPERATOR"
            | "TASK_UNKNOWN"
    )
}

/// What the loop needs from the outside world for each unit of work (a sync or one event): a
/// fresh syncer whose clients are bounded by their own `--timeout` deadline.
pub trait SyncerFactory {
    fn with_syncer<T>(&self, f: &mut dyn FnMut(&Syncer<'_>) -> T) -> Result<T, String>;
}

/// In-memory view between full syncs.
#[derive(Default)]
pub struct State {
    apps: HashMap<String, App>,
    owned: HashMap<String, Owned>,
    tombstones: HashSet<String>,
    /// Apps read from Marathon without the label: their events are ignored until the next
    /// full sync or a change of their definition (most apps of a cluster may be unlabelled).
    unselected: HashSet<String>,
}

impl State {
    /// Records the effect of the changes that were written (failed ones stay as they were: the
    /// next sync repairs them).
    fn record(&mut self, changes: &[Change], done: &[Option<bool>], cfg: &Config) {
        for (c, d) in changes.iter().zip(done) {
            if *d != Some(true) {
                continue;
            }
            match c {
                Change::Register { reg, node, .. } => {
                    self.owned.insert(
                        reg.id.clone(),
                        Owned {
                            reg: reg.clone(),
                            node: node.clone(),
                            node_address: reg.host.clone(),
                            external: cfg.mode == Mode::Catalog,
                            check_ids: reg.checks.iter().map(|c| c.id.clone()).collect(),
                            node_probe: Some(
                                if cfg.external_probe { "true" } else { "false" }.to_string(),
                            ),
                        },
                    );
                }
                Change::Deregister { owned, .. } => {
                    self.owned.remove(&owned.reg.id);
                }
            }
        }
    }
}

/// Options of the loop.
pub struct Options {
    pub resync_interval: Duration,
    pub dry_run: bool,
    /// Most actions kept for the final summary (a live stream runs for weeks).
    pub max_actions: usize,
    /// `--follow`: the feed comes from [`crate::follow`] (a full sync on every connection, a
    /// stop signal is the normal end) rather than from stdin (a sync at start, EOF ends).
    pub follow: bool,
}

/// What feeds the loop: the stream's events and, in `--follow` mode, its connection changes.
#[derive(Debug)]
pub enum Feed {
    Event(Result<StreamEvent, String>),
    /// The stream (re)connected to this URL: a full sync repairs what was missed meanwhile.
    Connected(String),
    /// The stream ended, failed or stalled; the stream thread reconnects.
    Lost(String),
}

/// Runs the loop over `input` until EOF. Returns the summary of everything done.
pub fn run<R: BufRead + Send + 'static>(
    input: R,
    factory: &impl SyncerFactory,
    cfg: &Config,
    opts: &Options,
    summary: Summary,
) -> Summary {
    let (tx, rx) = mpsc::sync_channel::<Feed>(1024);
    std::thread::spawn(move || {
        for item in EventStream::new(input) {
            if tx
                .send(Feed::Event(item.map_err(|e| e.to_string())))
                .is_err()
            {
                break;
            }
        }
    });
    run_feed(
        &rx,
        factory,
        cfg,
        opts,
        summary,
        &Metrics::default(),
        &|| true,
    )
}

/// The loop: applies `feed` until it ends (stdin EOF) or a stop is requested; full syncs at
/// start (stdin) or on every connection (`--follow`), every `resync_interval` and on gaps.
/// Counts what it does in `metrics`; acts only while `may_act()` (`--lock`: only the session
/// holder writes), and after regaining it syncs before anything else.
pub fn run_feed(
    feed: &mpsc::Receiver<Feed>,
    factory: &impl SyncerFactory,
    cfg: &Config,
    opts: &Options,
    mut summary: Summary,
    metrics: &Metrics,
    may_act: &dyn Fn() -> bool,
) -> Summary {
    let mut state = State::default();
    if !opts.follow {
        if let Err(e) = full_sync(
            factory,
            cfg,
            opts,
            &mut state,
            &mut summary,
            metrics,
            "start",
        ) {
            // Nothing could be read at start: stop (exit 69/75), a restart retries.
            summary.error(e);
            return summary;
        }
    }
    // `--follow`: a full sync is due (the first connection, a reconnection, a failed sync, the
    // lock regained); until then events are still applied (they are facts about tasks).
    let mut sync_due: Option<&'static str> = None;
    let mut next_sync = Instant::now() + opts.resync_interval;
    // The last full sync failed: the next one (at `next_sync`) is a retry.
    let mut retry = false;
    let mut attached_seen = false;
    let mut acting = may_act();
    if !acting {
        log::info!("waiting for the lock before acting");
    }
    let mut connections = 0u64;
    let mut events = 0u64;
    loop {
        if runtime::stop::requested() {
            if opts.follow {
                log::info!("stopping on a signal after {events} event(s)");
            } else {
                // Start nothing new; the summary says what was done (exit 75: replay/restart).
                log::warn!("stopped by a signal after {events} event(s)");
                summary.error("stopped by a signal; restart the event consumer");
                summary.raise_exit(Exit::TempFail);
            }
            break;
        }
        // `--lock`: without the lock nothing is written and events are dropped; once it is
        // back, a full sync comes first (what happened meanwhile is unknown).
        let may = may_act();
        metrics.lock_held.store(may, Ordering::Relaxed);
        if may != acting {
            acting = may;
            if acting {
                log::info!("lock acquired: resyncing before acting");
                sync_due = Some("lock acquired");
            } else {
                log::warn!("lock lost: writing nothing until it is held again");
            }
        }
        if acting {
            if let Some(why) = sync_due {
                let before = summary.actions.len();
                let ok = resync(factory, cfg, opts, &mut state, &mut summary, why, metrics);
                tally(&summary, before, metrics);
                trim(&mut summary, opts.max_actions);
                // A failed sync is tried again soon (when `next_sync` comes) rather than at the
                // next interval, and never at once (Marathon or Consul is down: no hot loop).
                sync_due = None;
                retry = !ok;
                next_sync = Instant::now()
                    + if ok {
                        opts.resync_interval
                    } else {
                        opts.resync_interval.min(RETRY_SYNC)
                    };
            }
        }
        // Short waits so that a stop signal or a lock change is seen promptly.
        let wait = next_sync
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(200));
        let item = match feed.recv_timeout(wait) {
            Ok(item) => item,
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < next_sync => continue,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if acting {
                    sync_due = Some(if retry { "retry" } else { "interval" });
                }
                next_sync = Instant::now() + opts.resync_interval;
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let item = match item {
            Feed::Event(item) => item,
            Feed::Connected(url) => {
                metrics.connected.store(true, Ordering::Relaxed);
                connections += 1;
                if connections > 1 {
                    metrics.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                log::info!("event stream connected to {url}");
                sync_due = Some(if connections > 1 {
                    "stream reconnected"
                } else {
                    "start"
                });
                continue;
            }
            Feed::Lost(why) => {
                metrics.connected.store(false, Ordering::Relaxed);
                log::warn!("event stream lost: {why}; reconnecting");
                continue;
            }
        };
        if !acting {
            continue;
        }
        events += 1;
        let ev = match item {
            Ok(ev) => ev,
            Err(e) => {
                log::warn!("{e}; resyncing");
                sync_due = Some("bad frame");
                continue;
            }
        };
        if ev.event_type == "event_stream_attached" {
            // `--follow` knows its connections; stdin shows a reconnection only this way.
            if attached_seen && !opts.follow {
                sync_due = Some("stream reattached");
            }
            attached_seen = true;
            continue;
        }
        let before = summary.actions.len();
        match on_event(&ev, factory, cfg, opts, &mut state, &mut summary) {
            Ok(()) => {
                metrics.events_applied.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                log::error!(
                    "event at line {}: {e}; resyncing at the next interval",
                    ev.line
                );
                summary.error(format!("event at line {}: {e}", ev.line));
                summary.raise_exit(Exit::TempFail);
            }
        }
        tally(&summary, before, metrics);
        trim(&mut summary, opts.max_actions);
    }
    if !opts.follow {
        log::info!("event stream ended after {events} event(s)");
    }
    summary
}

/// How soon a failed full sync is tried again (`--follow`).
const RETRY_SYNC: Duration = Duration::from_secs(10);

/// Counts the actions added since `before` into `metrics`.
fn tally(summary: &Summary, before: usize, metrics: &Metrics) {
    for a in summary.actions.iter().skip(before) {
        let counter = match (a.status, a.kind.as_str()) {
            (Status::Applied, "register") => &metrics.registrations,
            (Status::Applied, "deregister") if !a.target.starts_with("node:") => {
                &metrics.deregistrations
            }
            (Status::Skipped, "deregister") if a.detail.contains("held back") => &metrics.held_back,
            _ => continue,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Keeps the last `max` actions and the last `max / 10` errors and warnings (a registrar runs
/// for weeks; a Marathon down for a day would otherwise grow them without bound).
fn trim(summary: &mut Summary, max: usize) {
    fn keep_last<T>(v: &mut Vec<T>, max: usize) {
        if v.len() > max {
            let drop = v.len() - max;
            v.drain(..drop);
        }
    }
    keep_last(&mut summary.actions, max);
    keep_last(&mut summary.errors, (max / 10).max(1));
    keep_last(&mut summary.warnings, (max / 10).max(1));
}

/// A full sync with one log line saying why and what it did; false when it failed.
fn resync(
    factory: &impl SyncerFactory,
    cfg: &Config,
    opts: &Options,
    state: &mut State,
    summary: &mut Summary,
    why: &str,
    metrics: &Metrics,
) -> bool {
    match full_sync(factory, cfg, opts, state, summary, metrics, why) {
        Ok(()) => true,
        Err(e) => {
            log::error!("full sync ({why}) failed: {e}");
            summary.error(format!("full sync ({why}) failed: {e}"));
            summary.raise_exit(Exit::TempFail);
            metrics.sync_failures.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// One full sync; replaces the in-memory state with what it read and wrote.
fn full_sync(
    factory: &impl SyncerFactory,
    cfg: &Config,
    opts: &Options,
    state: &mut State,
    summary: &mut Summary,
    metrics: &Metrics,
    why: &str,
) -> Result<(), String> {
    let result = factory.with_syncer(&mut |s: &Syncer<'_>| -> Result<(), SyncError> {
        // The same reads and guards as a single run (strict list, stable leader, cap).
        let (snap, p) = s.prepare(&Scope::All)?;
        let crate::sync::Snapshot {
            apps, owned, nodes, ..
        } = snap;
        state.apps = apps
            .into_iter()
            .filter(|a| !a.id.is_empty())
            .map(|a| (a.id.clone(), a))
            .collect();
        state.owned = owned.into_iter().map(|o| (o.reg.id.clone(), o)).collect();
        state.tombstones.clear();
        state.unselected.clear();
        let done = s.execute(&p, &nodes, opts.dry_run, summary);
        state.record(&p.changes, &done, cfg);
        // One line per sync (each change has its own line, unchanged tasks none).
        let applied = done.iter().filter(|d| **d == Some(true)).count();
        let failed = done.iter().filter(|d| **d == Some(false)).count();
        log::info!(
            "full sync ({why}): {} app(s), {} change(s) ({applied} applied, {failed} failed), {} unchanged, {} waiting for health, {} held back",
            state.apps.len(),
            p.changes.len(),
            p.unchanged.len(),
            p.waiting,
            p.held.len()
        );
        metrics.synced_now();
        Ok(())
    });
    // The clients could not be built (no Marathon URL, bad CA file…): a usage error.
    let result = result.inspect_err(|_| summary.raise_exit(Exit::Usage))?;
    result.map_err(|e| {
        summary.raise_exit(runtime::ToExit::exit(&e));
        e.to_string()
    })
}

/// Re-plans one app from the in-memory state and applies.
fn replan_app(
    s: &Syncer<'_>,
    app_id: &str,
    cfg: &Config,
    opts: &Options,
    state: &mut State,
    summary: &mut Summary,
) {
    let scope: BTreeSet<String> = [app_id.to_string()].into();
    let apps: Vec<App> = state.apps.get(app_id).cloned().into_iter().collect();
    // Only this app's registrations are compared (cloning all of them per event would cost
    // O(registrations)).
    let owned: Vec<Owned> = state
        .owned
        .values()
        .filter(|o| o.reg.app_id() == app_id)
        .cloned()
        .collect();
    let p = plan::plan(&apps, &owned, Some(&scope), cfg);
    let done = s.execute(&p, &Default::default(), opts.dry_run, summary);
    state.record(&p.changes, &done, cfg);
}

fn str_of<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn on_event(
    ev: &StreamEvent,
    factory: &impl SyncerFactory,
    cfg: &Config,
    opts: &Options,
    state: &mut State,
    summary: &mut Summary,
) -> Result<(), String> {
    let d = &ev.data;
    match ev.event_type.as_str() {
        "status_update_event" => {
            let (Some(app_id), Some(task_id), Some(status)) = (
                str_of(d, "appId"),
                str_of(d, "taskId"),
                str_of(d, "taskStatus"),
            ) else {
                return Err("status_update_event without appId, taskId or taskStatus".into());
            };
            if is_terminal(status) {
                state.tombstones.insert(task_id.to_string());
                set_task(state, app_id, task_id, status, d);
                // Deregistration needs no app definition: every owned service of the task.
                let changes: Vec<Change> = state
                    .owned
                    .values()
                    .filter(|o| o.reg.task_id() == task_id)
                    .filter(|o| match cfg.mode {
                        Mode::Catalog => o.external,
                        Mode::Agent => !o.external,
                    })
                    .map(|o| Change::Deregister {
                        owned: o.clone(),
                        reason: format!("task is {status}"),
                    })
                    .collect();
                if changes.is_empty() {
                    return Ok(());
                }
                return factory.with_syncer(&mut |s: &Syncer<'_>| {
                    let done = s.apply_each(&changes, opts.dry_run, summary);
                    state.record(&changes, &done, cfg);
                });
            }
            if state.unselected.contains(app_id) && !state.apps.contains_key(app_id) {
                return Ok(());
            }
            if state.tombstones.contains(task_id) {
                log::info!("ignoring {status} of {task_id}: already seen terminal (reordered)");
                return Ok(());
            }
            let cached_version = state.apps.get(app_id).and_then(|a| a.version.clone());
            let known_task = task_known(state, app_id, task_id);
            factory.with_syncer(&mut |s: &Syncer<'_>| -> Result<(), String> {
                // An app we do not know (new, or changed since the sync) is read from Marathon;
                // otherwise the event itself updates the copy.
                let fresh = cached_version.is_none()
                    || (status == "TASK_RUNNING"
                        && !known_task
                        && str_of(d, "version")
                            .is_some_and(|v| Some(v) != cached_version.as_deref()));
                if fresh {
                    refresh_app(s, app_id, state, summary)?;
                } else {
                    set_task(state, app_id, task_id, status, d);
                }
                replan_app(s, app_id, cfg, opts, state, summary);
                Ok(())
            })?
        }
        "health_status_changed_event" | "instance_health_changed_event" => {
            // health_status_changed_event {appId, instanceId (taskId before 1.4), alive};
            // instance_health_changed_event {runSpecId, instanceId, healthy} (reference §2.1).
            let Some(app_id) = str_of(d, "appId").or_else(|| str_of(d, "runSpecId")) else {
                return Err(format!("{} without appId or runSpecId", ev.event_type));
            };
            if state.unselected.contains(app_id) && !state.apps.contains_key(app_id) {
                return Ok(());
            }
            let id = str_of(d, "taskId").or_else(|| str_of(d, "instanceId"));
            let alive = d
                .get("alive")
                .or_else(|| d.get("healthy"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let matched = match id {
                Some(id) => set_health(state, app_id, id, alive),
                None => false,
            };
            factory.with_syncer(&mut |s: &Syncer<'_>| -> Result<(), String> {
                if !matched {
                    refresh_app(s, app_id, state, summary)?;
                }
                replan_app(s, app_id, cfg, opts, state, summary);
                Ok(())
            })?
        }
        "app_terminated_event" => {
            let Some(app_id) = str_of(d, "appId") else {
                return Ok(());
            };
            state.apps.remove(app_id);
            factory
                .with_syncer(&mut |s: &Syncer<'_>| replan_app(s, app_id, cfg, opts, state, summary))
        }
        "api_post_event" => {
            // A changed definition may rename the service or change tags.
            let Some(app_id) = d
                .get("appDefinition")
                .and_then(|a| str_of(a, "id"))
                .map(str::to_string)
            else {
                return Ok(());
            };
            state.unselected.remove(&app_id);
            factory.with_syncer(&mut |s: &Syncer<'_>| -> Result<(), String> {
                refresh_app(s, &app_id, state, summary)?;
                replan_app(s, &app_id, cfg, opts, state, summary);
                Ok(())
            })?
        }
        _ => Ok(()),
    }
}

/// Reads one app from Marathon into the state (removed when gone or no longer labelled). A 404
/// is confirmed with the full list and a stable leader (a failover answers 404 for apps that
/// exist, issue 11); unconfirmed, the cached app is kept and the run exits 75.
fn refresh_app(
    s: &Syncer<'_>,
    app_id: &str,
    state: &mut State,
    summary: &mut Summary,
) -> Result<(), String> {
    let scope = Scope::Apps([app_id.to_string()].into());
    let (apps, leader_problem) = s.read_apps_with_leader(&scope).map_err(|e| e.to_string())?;
    let app = apps.into_iter().next();
    if let (None, Some(problem)) = (&app, &leader_problem) {
        if state.apps.contains_key(app_id) {
            let w = format!(
                "app {app_id} answered 404 while Marathon's leader was not stable ({problem}): its registrations kept; the next full sync decides"
            );
            log::warn!("{w}");
            summary.warn(w);
            summary.raise_exit(Exit::TempFail);
            return Ok(());
        }
    }
    match app {
        Some(app) if plan::app_selected(&app, s.cfg) => {
            // Tasks Marathon still lists but we saw die keep their terminal state.
            let mut app = app;
            for t in app.tasks.iter_mut().flatten() {
                if t.id
                    .as_deref()
                    .is_some_and(|id| state.tombstones.contains(id))
                {
                    t.state = "TASK_KILLED".into();
                }
            }
            state.apps.insert(app_id.to_string(), app);
        }
        _ => {
            state.apps.remove(app_id);
            state.unselected.insert(app_id.to_string());
        }
    }
    Ok(())
}

fn task_known(state: &State, app_id: &str, task_id: &str) -> bool {
    state
        .apps
        .get(app_id)
        .is_some_and(|a| a.tasks().iter().any(|t| t.id.as_deref() == Some(task_id)))
}

/// Upserts a task from a `status_update_event` into the cached app.
fn set_task(state: &mut State, app_id: &str, task_id: &str, status: &str, d: &Value) {
    let Some(app) = state.apps.get_mut(app_id) else {
        return;
    };
    let tasks = app.tasks.get_or_insert_with(Vec::new);
    let i = match tasks.iter().position(|t| t.id.as_deref() == Some(task_id)) {
        Some(i) => i,
        None => {
            // No health result yet: with health checks, not registered until one is alive.
            tasks.push(Task {
                id: Some(task_id.to_string()),
                health_results: Some(Vec::new()),
                ..Task::default()
            });
            tasks.len() - 1
        }
    };
    let task = &mut tasks[i];
    task.state = status.to_string();
    task.update_from(d);
}

/// Marks the task's health. Marathon 1.4+ sends `instanceId` (`app.instance-<uuid>`) where the
/// task id is `app.instance-<uuid>._app.1` (allegro/marathon-consul#296): match both.
fn set_health(state: &mut State, app_id: &str, id: &str, alive: bool) -> bool {
    let Some(app) = state.apps.get_mut(app_id) else {
        return false;
    };
    let mut matched = false;
    for t in app.tasks.iter_mut().flatten() {
        let tid = t.id.as_deref().unwrap_or_default();
        let hit = tid == id
            || (tid.len() > id.len() && tid.starts_with(id) && tid[id.len()..].starts_with('.'));
        if hit {
            t.health_results = Some(vec![alive]);
            matched = true;
        }
    }
    matched
}
