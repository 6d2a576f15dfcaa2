//! Carrying out the plan: Marathon writes (a few in parallel), 409-locked waits, Chronos writes in
//! order, and `--wait` following the deployments that were started.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use marathon::normalize::apps_equal;
use marathon::{Chronos, Marathon, MarathonError};
use runtime::{stop, Backoff, Deadline, Status};
use serde_json::Value;

use crate::plan::{AppDoc, Item, Op};

/// Settings for applying.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub force: bool,
    pub deploy_timeout: Duration,
    /// Marathon writes in flight at once.
    pub parallel: usize,
    /// Changed apps per bulk `PUT /v2/apps` (one deployment each); 1 writes app by app.
    pub batch_size: usize,
}

/// The outcome of one item.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    pub detail: String,
    /// The Marathon deployment this write started.
    pub deployment: Option<String>,
    pub version: Option<String>,
}

impl Outcome {
    fn new(status: Status, detail: String) -> Outcome {
        Outcome {
            status,
            detail,
            deployment: None,
            version: None,
        }
    }
}

/// Polls `/v2/deployments` until none of `ids` is running, or `until`, or a stop signal (then
/// the ones still running are returned).
pub fn wait_deployments(
    m: &Marathon,
    ids: &BTreeSet<String>,
    until: Instant,
) -> Result<BTreeSet<String>, MarathonError> {
    let backoff = Backoff {
        attempts: u32::MAX,
        base: Duration::from_millis(50),
        max: Duration::from_secs(2),
    };
    let mut attempt = 1;
    loop {
        let running: BTreeSet<String> = m
            .deployments()?
            .iter()
            .filter_map(|d| d.get("id").and_then(Value::as_str))
            .filter(|id| ids.contains(*id))
            .map(str::to_string)
            .collect();
        if running.is_empty() {
            return Ok(running);
        }
        let wait = backoff.delay(attempt.min(10));
        let now = Instant::now();
        if now >= until || !stop::sleep(wait.min(until - now)) {
            return Ok(running);
        }
        attempt += 1;
    }
}

fn stopped_while(what: String) -> Outcome {
    Outcome::new(
        Status::Skipped,
        format!("not applied: stopped by a signal while {what}"),
    )
}

/// PUT with the 409 policy: `--force` overrides; otherwise wait for the deployments that hold
/// the app (up to the deploy timeout), re-check whether a concurrent run already applied the
/// same definition, and try again.
fn put_app(
    m: &Marathon,
    body: &Value,
    id: &str,
    opts: &ApplyOptions,
    deadline: Deadline,
) -> Outcome {
    let until = Instant::now() + deadline.cap(opts.deploy_timeout);
    loop {
        match m.put_app(body, opts.force) {
            Ok(r) => return deployed(r, None),
            Err(MarathonError::Locked { deployments, .. }) => {
                let ids: BTreeSet<String> = deployments.into_iter().collect();
                log::info!("{id} is locked by deployment(s) {ids:?}; waiting (or use --force)");
                match wait_deployments(m, &ids, until) {
                    Ok(_) if stop::requested() => {
                        return stopped_while(format!(
                            "waiting for deployment(s) {} that lock the app",
                            runtime::text::capped_list(&ids)
                        ))
                    }
                    Ok(still) if !still.is_empty() => {
                        return Outcome::new(
                            Status::Failed,
                            format!(
                                "locked by deployment(s) {} for longer than --deploy-timeout; replay later or use --force",
                                runtime::text::capped_list(&still)
                            ),
                        )
                    }
                    Ok(_) => {}
                    Err(e) => return Outcome::new(Status::Failed, e.to_string()),
                }
                // A concurrent kv2jobs run may have written the same definition meanwhile.
                if let Ok(Some(live)) = m.get_app(id) {
                    if apps_equal(body, &live) {
                        return Outcome::new(
                            Status::Unchanged,
                            "already applied (by a concurrent run) while waiting for its deployment"
                                .into(),
                        );
                    }
                }
                if Instant::now() >= until {
                    return Outcome::new(Status::Failed, "still locked at --deploy-timeout".into());
                }
            }
            Err(e) if e.is_too_many_deployments() => {
                log::info!("{id}: Marathon's running-deployments limit is reached; waiting");
                if let Err(o) = wait_for_slot(m, &e, until) {
                    return o;
                }
            }
            Err(e) => return Outcome::new(Status::Failed, e.to_string()),
        }
    }
}

/// Marathon refused a deployment with its limit (403, `e`): polls `GET /v2/deployments` with
/// jittered backoff until fewer than its N run (N read from the answer; when it cannot be
/// read, until fewer run than at the first poll), then the caller tries again. Ends early on a
/// stop signal, and at `until` (`--deploy-timeout`): both an outcome for the app(s) waiting.
fn wait_for_slot(m: &Marathon, e: &MarathonError, until: Instant) -> Result<(), Outcome> {
    let backoff = Backoff {
        attempts: u32::MAX,
        base: Duration::from_millis(50),
        max: Duration::from_secs(2),
    };
    let mut limit = e.deployment_limit();
    let mut attempt = 1;
    loop {
        // Pause before each look (the first too): a slot freed since the 403 must not turn
        // into a hot loop of writes.
        let now = Instant::now();
        if !stop::sleep(
            backoff
                .delay(attempt.min(10))
                .min(until.saturating_duration_since(now)),
        ) {
            return Err(stopped_while(
                "waiting for Marathon's running-deployments limit".into(),
            ));
        }
        let running = m
            .deployments()
            .map_err(|e| Outcome::new(Status::Failed, e.to_string()))?
            .len();
        // Without N in the answer: until fewer run than at the first look (or none did).
        let max = *limit.get_or_insert(running.max(1));
        if running < max {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(Outcome::new(
                Status::Failed,
                format!("Marathon's running-deployments limit ({max}) still reached at --deploy-timeout; replay later"),
            ));
        }
        attempt += 1;
    }
}

/// The outcome of a write Marathon accepted.
fn deployed(r: marathon::DeployResult, bulk: Option<usize>) -> Outcome {
    let detail = match (&r.deployment_id, bulk) {
        (Some(d), Some(n)) => format!("deployment {d} (one bulk PUT of {n} apps)"),
        (Some(d), None) => format!("deployment {d}"),
        (None, _) => "applied".into(),
    };
    Outcome {
        status: Status::Applied,
        detail,
        deployment: r.deployment_id,
        version: r.version,
    }
}

/// The apps (ids) that the running deployments `ids` hold, from `GET /v2/deployments`
/// (`affectedApps`).
fn held_by(m: &Marathon, ids: &BTreeSet<String>) -> Result<BTreeSet<String>, MarathonError> {
    Ok(m.deployments()?
        .iter()
        .filter(|d| {
            d.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| ids.contains(id))
        })
        .flat_map(|d| {
            d.get("affectedApps")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
        })
        .collect())
}

/// A batch of app puts (`indices` into `items`) as bulk `PUT /v2/apps?partialUpdate=false`
/// requests: one deployment for the batch. Marathon's limit (403): wait for a free slot and
/// try again. Locked apps (409): without `--force`, wait for the deployments that hold them;
/// those that a concurrent run brought to the same definition meanwhile are `unchanged`, those
/// still locked at `--deploy-timeout` fail, and the rest is tried again. Any other 4xx (an
/// invalid app refuses the whole bulk): every app of the batch is put on its own, so the bad
/// one is reported alone and the others deploy. Every app gets its own outcome.
fn put_batch(
    m: &Marathon,
    items: &[Item],
    indices: &[usize],
    opts: &ApplyOptions,
    deadline: Deadline,
) -> Vec<(usize, Outcome)> {
    let until = Instant::now() + deadline.cap(opts.deploy_timeout);
    let mut pending: Vec<usize> = indices.to_vec();
    let mut out = Vec::new();
    while pending.len() > 1 {
        if stop::requested() {
            // No new write (those left are reported as not started).
            return out;
        }
        let bodies: Vec<&AppDoc> = pending
            .iter()
            .filter_map(|&i| match &items[i].op {
                Op::PutApp(b) => Some(b),
                _ => None,
            })
            .collect();
        let all = |o: Outcome, pending: &[usize]| -> Vec<(usize, Outcome)> {
            pending.iter().map(|&i| (i, o.clone())).collect()
        };
        match m.put_apps(&bodies, opts.force) {
            Ok(r) => {
                let o = deployed(r, Some(pending.len()));
                out.extend(all(o, &pending));
                return out;
            }
            Err(e) if e.is_too_many_deployments() => {
                log::info!(
                    "a bulk of {} apps: Marathon's running-deployments limit is reached; waiting",
                    pending.len()
                );
                if let Err(o) = wait_for_slot(m, &e, until) {
                    out.extend(all(o, &pending));
                    return out;
                }
            }
            Err(MarathonError::Locked { deployments, .. }) => {
                let ids: BTreeSet<String> = deployments.into_iter().collect();
                let held = match held_by(m, &ids) {
                    Ok(h) => h,
                    Err(e) => {
                        out.extend(all(Outcome::new(Status::Failed, e.to_string()), &pending));
                        return out;
                    }
                };
                let locked: Vec<usize> = pending
                    .iter()
                    .copied()
                    .filter(|&i| held.contains(&items[i].target))
                    .collect();
                log::info!(
                    "{} app(s) of a bulk are locked by deployment(s) {}; waiting (or use --force)",
                    locked.len(),
                    runtime::text::capped_list(&ids)
                );
                match wait_deployments(m, &ids, until) {
                    Ok(_) if stop::requested() => {
                        let o = stopped_while(format!(
                            "waiting for deployment(s) {} that lock apps of its bulk",
                            runtime::text::capped_list(&ids)
                        ));
                        out.extend(all(o, &pending));
                        return out;
                    }
                    Ok(still) if !still.is_empty() => {
                        let o = Outcome::new(
                            Status::Failed,
                            format!(
                                "locked by deployment(s) {} for longer than --deploy-timeout; replay later or use --force",
                                runtime::text::capped_list(&still)
                            ),
                        );
                        if locked.is_empty() {
                            out.extend(all(o, &pending));
                            return out;
                        }
                        out.extend(all(o, &locked));
                        pending.retain(|i| !locked.contains(i));
                    }
                    Ok(_) => {
                        // A concurrent kv2jobs run may have written the same definitions.
                        for &i in &locked {
                            let Op::PutApp(body) = &items[i].op else {
                                continue;
                            };
                            if let Ok(Some(live)) = m.get_app(&items[i].target) {
                                if apps_equal(&body.value(), &live) {
                                    out.push((i, Outcome::new(
                                        Status::Unchanged,
                                        "already applied (by a concurrent run) while waiting for its deployment".into(),
                                    )));
                                }
                            }
                        }
                        pending.retain(|i| !out.iter().any(|(j, _)| j == i));
                    }
                    Err(e) => {
                        out.extend(all(Outcome::new(Status::Failed, e.to_string()), &pending));
                        return out;
                    }
                }
                if locked.is_empty() {
                    // The 409 named deployments that ended since: pause, not a hot loop.
                    let left = until.saturating_duration_since(Instant::now());
                    stop::sleep(Duration::from_millis(50).min(left));
                }
                if Instant::now() >= until && !pending.is_empty() {
                    let o = Outcome::new(Status::Failed, "still locked at --deploy-timeout".into());
                    out.extend(all(o, &pending));
                    return out;
                }
            }
            Err(e) if e.is_refusal() => {
                log::warn!(
                    "Marathon refused a bulk of {} apps ({e}); putting them one by one to find the bad one(s)",
                    pending.len()
                );
                break;
            }
            Err(e) => {
                out.extend(all(Outcome::new(Status::Failed, e.to_string()), &pending));
                return out;
            }
        }
    }
    // One app left, or the bulk was refused: app by app (each with the 409 and 403 waits).
    for i in pending {
        if stop::requested() {
            break;
        }
        let Op::PutApp(body) = &items[i].op else {
            continue;
        };
        out.push((
            i,
            put_app(m, &body.value(), &items[i].target, opts, deadline),
        ));
    }
    out
}

fn delete_app(m: &Marathon, id: &str) -> Outcome {
    match m.delete_app(id) {
        Ok(r) => Outcome {
            status: Status::Applied,
            detail: r
                .deployment_id
                .as_ref()
                .map(|d| format!("deployment {d}"))
                .unwrap_or_else(|| "deleted".into()),
            deployment: r.deployment_id,
            version: r.version,
        },
        Err(MarathonError::NotFound { .. }) => {
            Outcome::new(Status::Unchanged, "already deleted".into())
        }
        Err(e) => Outcome::new(Status::Failed, e.to_string()),
    }
}

fn apply_marathon_item(
    m: &Marathon,
    item: &Item,
    opts: &ApplyOptions,
    deadline: Deadline,
) -> Outcome {
    match &item.op {
        Op::PutApp(body) => put_app(m, &body.value(), &item.target, opts, deadline),
        Op::DeleteApp => delete_app(m, &item.target),
        _ => Outcome::new(Status::Skipped, String::new()),
    }
}

/// Applies the Marathon items (`indices` into `items`) with a small worker pool: app puts in
/// batches of `--batch-size` (one bulk request and one deployment each, [`put_batch`]),
/// deletes one by one. Outcomes come back by index so the summary keeps the plan's order.
pub fn apply_marathon(
    m: &Marathon,
    items: &[Item],
    indices: &[usize],
    opts: &ApplyOptions,
    deadline: Deadline,
) -> BTreeMap<usize, Outcome> {
    let (puts, others): (Vec<usize>, Vec<usize>) = indices
        .iter()
        .partition(|&&i| matches!(items[i].op, Op::PutApp(_)));
    let units: Vec<&[usize]> = puts
        .chunks(opts.batch_size.max(1))
        .chain(others.chunks(1))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(BTreeMap::new());
    let workers = opts.parallel.clamp(1, 16).min(units.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&unit) = units.get(k) else {
                    break;
                };
                // A stop signal: no new write starts (writes in flight finish); the items left
                // without an outcome are reported as not started.
                if stop::requested() {
                    break;
                }
                let out: Vec<(usize, Outcome)> = if deadline.expired() {
                    let o = Outcome::new(
                        Status::Failed,
                        "not attempted: the handler's --timeout was reached".into(),
                    );
                    unit.iter().map(|&i| (i, o.clone())).collect()
                } else if matches!(items[unit[0]].op, Op::PutApp(_)) {
                    put_batch(m, items, unit, opts, deadline)
                } else {
                    unit.iter()
                        .map(|&i| (i, apply_marathon_item(m, &items[i], opts, deadline)))
                        .collect()
                };
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(out);
            });
        }
    });
    results.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Applies one Chronos item.
pub fn apply_chronos_item(c: &Chronos, item: &Item) -> Outcome {
    match &item.op {
        Op::PutJob(body) => match c.put_job(body) {
            Ok(()) => Outcome::new(Status::Applied, format!("posted to {}", c.prefix())),
            Err(e) => Outcome::new(Status::Failed, e.to_string()),
        },
        Op::DeleteJob => match c.delete_job(&item.target) {
            Ok(true) => Outcome::new(Status::Applied, "deleted".into()),
            Ok(false) => Outcome::new(Status::Unchanged, "already deleted".into()),
            Err(e) => Outcome::new(Status::Failed, e.to_string()),
        },
        _ => Outcome::new(Status::Skipped, String::new()),
    }
}

/// `--wait`: follows the deployments started by this run; each that is still running at the
/// deploy timeout, or that ended with the app not at the version this run wrote (cancelled or
/// superseded), turns its action into a failure.
pub fn follow(
    m: &Marathon,
    items: &[Item],
    outcomes: &mut BTreeMap<usize, Outcome>,
    timeout: Duration,
    deadline: Deadline,
) {
    let started: BTreeSet<String> = outcomes
        .values()
        .filter(|o| o.status == Status::Applied)
        .filter_map(|o| o.deployment.clone())
        .collect();
    if started.is_empty() {
        return;
    }
    let t0 = Instant::now();
    let until = t0 + deadline.cap(timeout);
    let running = match wait_deployments(m, &started, until) {
        Ok(_) if stop::requested() => {
            for o in outcomes.values_mut().filter(|o| o.deployment.is_some()) {
                o.detail = format!("{}; not followed (--wait): stopped by a signal", o.detail);
            }
            return;
        }
        Ok(r) => r,
        Err(e) => {
            for o in outcomes.values_mut().filter(|o| o.deployment.is_some()) {
                o.status = Status::Failed;
                o.detail = format!("{}; could not follow the deployment: {e}", o.detail);
            }
            return;
        }
    };
    let live: Option<BTreeMap<String, Value>> = m.list_apps(false, None).ok().map(|apps| {
        apps.into_iter()
            .filter_map(|a| Some((a.get("id")?.as_str()?.to_string(), a)))
            .collect()
    });
    for (i, o) in outcomes.iter_mut() {
        let Some(dep) = o.deployment.clone() else {
            continue;
        };
        if running.contains(&dep) {
            o.status = Status::Failed;
            o.detail = format!(
                "deployment {dep} still running after {}s (--deploy-timeout)",
                t0.elapsed().as_secs()
            );
            continue;
        }
        let item = &items[*i];
        let Some(live) = &live else {
            o.detail = format!("deployment {dep} finished");
            continue;
        };
        let app = live.get(&item.target);
        match (&item.op, app) {
            (Op::DeleteApp, None) => o.detail = format!("deployment {dep} finished; app removed"),
            (Op::DeleteApp, Some(_)) => {
                o.status = Status::Failed;
                o.detail = format!("deployment {dep} ended but the app still exists");
            }
            (_, None) => {
                o.status = Status::Failed;
                o.detail = format!("deployment {dep} ended but the app is gone");
            }
            (_, Some(a)) => {
                let now = a.get("version").and_then(Value::as_str);
                match (&o.version, now) {
                    (Some(ours), Some(now)) if ours != now => {
                        o.status = Status::Failed;
                        o.detail = format!(
                            "deployment {dep} was cancelled or superseded (app now at version {now})"
                        );
                    }
                    _ => o.detail = format!("deployment {dep} finished"),
                }
            }
        }
    }
}

/// `--rollback-on-failure`: after `follow`, each app update whose deployment failed or timed
/// out is put back to the version that was live before it (the newest stored version older
/// than the one this run wrote), with Marathon's rollback (`PUT {"id","version"}`, `force`
/// to replace the stuck deployment), and that deployment is followed. Returns one
/// `rollback-app` action per attempt. A created app has no earlier version: it is left as is.
pub fn rollback_failed(
    m: &Marathon,
    items: &[Item],
    outcomes: &BTreeMap<usize, Outcome>,
    timeout: Duration,
    deadline: Deadline,
) -> Vec<runtime::Action> {
    let mut out = Vec::new();
    for (i, o) in outcomes {
        let item = &items[*i];
        if o.status != Status::Failed || o.deployment.is_none() || item.kind != "update-app" {
            continue;
        }
        if stop::requested() {
            break;
        }
        let (status, detail) = rollback_one(m, &item.target, o, timeout, deadline);
        log::warn!("rollback of {}: {detail}", item.target);
        out.push(runtime::Action::new(
            "rollback-app",
            &item.target,
            status,
            detail,
        ));
    }
    out
}

fn rollback_one(
    m: &Marathon,
    id: &str,
    o: &Outcome,
    timeout: Duration,
    deadline: Deadline,
) -> (Status, String) {
    let Some(ours) = o.version.as_deref() else {
        return (
            Status::Failed,
            "not rolled back: Marathon did not say which version this run wrote".into(),
        );
    };
    // Someone else's newer change (a superseded deployment) is never rolled back over.
    match m.get_app(id) {
        Ok(Some(app)) => match app.get("version").and_then(Value::as_str) {
            Some(now) if now != ours => {
                return (
                    Status::Skipped,
                    format!(
                        "not rolled back: the app is now at version {now}, not the {ours} this run wrote (changed since)"
                    ),
                )
            }
            _ => {}
        },
        Ok(None) => return (Status::Failed, "not rolled back: the app is gone".into()),
        Err(e) => return (Status::Failed, format!("not rolled back: reading the app: {e}")),
    }
    let previous = match m.app_versions(id) {
        Ok(Some(vs)) => vs.into_iter().filter(|v| v.as_str() < ours).max(),
        Ok(None) => return (Status::Failed, "not rolled back: the app is gone".into()),
        Err(e) => {
            return (
                Status::Failed,
                format!("not rolled back: reading its versions: {e}"),
            )
        }
    };
    let Some(previous) = previous else {
        return (
            Status::Failed,
            format!("not rolled back: no version older than {ours} is stored"),
        );
    };
    let r = match m.rollback_app(id, &previous) {
        Ok(r) => r,
        Err(e) => {
            return (
                Status::Failed,
                format!("rollback to {previous} failed: {e}"),
            )
        }
    };
    let Some(dep) = r.deployment_id else {
        return (
            Status::Applied,
            format!("rolled back to version {previous}"),
        );
    };
    let until = Instant::now() + deadline.cap(timeout);
    let ids = BTreeSet::from([dep.clone()]);
    match wait_deployments(m, &ids, until) {
        Ok(still) if still.is_empty() => (
            Status::Applied,
            format!("rolled back to version {previous} (deployment {dep} finished)"),
        ),
        Ok(_) if stop::requested() => (
            Status::Applied,
            format!("rolling back to version {previous} (deployment {dep}; not followed: stopped by a signal)"),
        ),
        Ok(_) => (
            Status::Failed,
            format!("rolling back to version {previous}: deployment {dep} still running after --deploy-timeout"),
        ),
        Err(e) => (
            Status::Failed,
            format!("rolling back to version {previous} (deployment {dep}): could not follow it: {e}"),
        ),
    }
}
