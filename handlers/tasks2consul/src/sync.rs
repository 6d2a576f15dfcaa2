//! Reading Marathon and Consul, and writing the plan's changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use consul::{Consul, ConsulError, TxnOutcome};
use marathon::{Marathon, MarathonError};
use runtime::http::{HttpClient, HttpConfig, HttpError};
use runtime::{Action, Exit, Status, Summary, ToExit};
use serde_json::Value;

use crate::app::App;
use crate::catalog;
use crate::plan::{self, Change, Config, Mode, Owned, Plan, META_SOURCE, SOURCE};
use crate::scope::Scope;
use crate::txn;

/// The outcome of one write: `Ok(Some(note))` when it succeeded in a way worth mentioning.
type WriteResult = Result<Option<String>, ConsulError>;

/// What stops a sync before anything is written (Marathon or Consul unreadable).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("reading Marathon: {0}")]
    Marathon(#[from] MarathonError),
    #[error("reading Consul: {0}")]
    Consul(#[from] ConsulError),
    /// A 200 that is not a complete Marathon answer (an app without its `tasks` array): the
    /// remote is not answering as Marathon, nothing is written (exit 69).
    #[error("Marathon is not answering as Marathon ({0}); nothing written, replay is safe")]
    NotMarathon(String),
}

impl ToExit for SyncError {
    fn exit(&self) -> Exit {
        match self {
            SyncError::Marathon(e) => e.exit(),
            SyncError::Consul(e) => e.exit(),
            SyncError::NotMarathon(_) => Exit::Unavailable,
        }
    }
}

/// Marathon embeds `tasks` in every app when asked (`embed=apps.tasks`) and always on
/// `GET /v2/apps/<id>` (AppsResource.show); an app without them says nothing about its tasks and
/// must never read as "no tasks" (issue 11).
fn require_tasks(app: &Value, what: &str) -> Result<(), SyncError> {
    match app.get("tasks") {
        Some(Value::Array(_)) => Ok(()),
        _ => Err(SyncError::NotMarathon(format!(
            "app {} in {what} has no \"tasks\" array",
            app.get("id").and_then(Value::as_str).unwrap_or("(no id)")
        ))),
    }
}

/// What one sync read: the selected apps, the owned registrations, the external nodes (catalog
/// mode), and what was wrong with Marathon's leader around the apps read (if anything).
pub struct Snapshot {
    pub apps: Vec<App>,
    pub owned: Vec<Owned>,
    pub nodes: BTreeMap<String, usize>,
    pub leader_problem: Option<String>,
}

/// The leader Marathon names, for comparing before and after a read: `Err(problem)` when it
/// names none or cannot say.
fn leader_of(m: &Marathon) -> Result<String, String> {
    match m.leader() {
        Ok(Some(l)) => Ok(l),
        Ok(None) => Err("GET /v2/leader: There is no leader".into()),
        Err(e) => Err(format!("GET /v2/leader: {e}")),
    }
}

/// How to reach the Consul agent of a Mesos host (agent mode): a URL template where `{host}` is
/// replaced by the task's host (or the node address of an existing registration), e.g.
/// `http://{host}:8500` (the default, from `--agent-port`) or `https://{host}:8501`.
#[derive(Debug, Clone)]
pub struct AgentAddr {
    pub template: String,
}

impl AgentAddr {
    pub fn url(&self, host: &str) -> String {
        self.template.replace("{host}", host)
    }
}

/// Consul agents by URL, created on first use with the same token and CA as `--consul`.
pub struct AgentPool {
    addr: AgentAddr,
    cfg: HttpConfig,
    deadline: runtime::Deadline,
    agents: Mutex<HashMap<String, std::sync::Arc<Consul>>>,
}

impl AgentPool {
    /// `base` is the `--consul` client's configuration (token, TLS, datacenter): every agent is
    /// reached the same way.
    pub fn new(
        addr: AgentAddr,
        mut cfg: HttpConfig,
        deadline: runtime::Deadline,
    ) -> Result<AgentPool, String> {
        cfg.service = "consul agent";
        // A dead host's agent must not hold the whole sync for long: fewer tries.
        cfg.backoff.attempts = 2;
        cfg.connect_timeout = std::time::Duration::from_secs(3);
        Ok(AgentPool {
            addr,
            cfg,
            deadline,
            agents: Mutex::new(HashMap::new()),
        })
    }

    pub fn agent(&self, host: &str) -> Result<std::sync::Arc<Consul>, ConsulError> {
        if !plan::valid_host(host) {
            return Err(ConsulError::Unexpected {
                what: "agent address".into(),
                reason: format!("invalid host {host:?}"),
            });
        }
        let url = self.addr.url(host);
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = agents.get(&url) {
            return Ok(a.clone());
        }
        let client = HttpClient::new(std::slice::from_ref(&url), self.cfg.clone())
            .map_err(|e| ConsulError::Unexpected {
                what: format!("agent of host {host}"),
                reason: e.to_string(),
            })?
            .with_deadline(self.deadline);
        let a = std::sync::Arc::new(Consul::new(client));
        agents.insert(url, a.clone());
        Ok(a)
    }
}

/// One sync's inputs.
pub struct Syncer<'a> {
    pub marathon: &'a Marathon,
    pub consul: &'a Consul,
    pub cfg: &'a Config,
    /// Agent mode only.
    pub agents: Option<&'a AgentPool>,
}

/// Counters of one sync, for logs and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub apps: usize,
    pub owned: usize,
    pub unchanged: usize,
    pub waiting: usize,
    pub applied: usize,
    pub failed: usize,
}

impl Syncer<'_> {
    /// The selected apps with their tasks, strictly: the list must hold an `apps` array and
    /// every app a `tasks` array (anything else is [`SyncError::NotMarathon`] or a Marathon read
    /// error, exit 69). Full sync: one bulk read (`/v2/apps?embed=apps.tasks&label=<label>`).
    /// Scoped: one read per named app (`/v2/apps/<id>?embed=app.tasks`); a 404 is confirmed
    /// with the full list (a leader failover answers 404 for apps that exist): an app in the
    /// list is synced from it, only one missing from both is gone.
    ///
    /// Each app is reduced to an [`App`] as it is decoded (the list is never held whole as
    /// JSON).
    pub fn read_apps(&self, scope: &Scope) -> Result<Vec<App>, SyncError> {
        match scope {
            Scope::All => self.list_apps(),
            Scope::Apps(ids) => {
                let mut apps = Vec::new();
                let mut missing = BTreeSet::new();
                for id in ids {
                    match self.marathon.get_app(id)? {
                        Some(app) => {
                            require_tasks(&app, &format!("GET /v2/apps{id}"))?;
                            apps.push(App::from(app));
                        }
                        None => {
                            missing.insert(id.as_str());
                        }
                    }
                }
                if missing.is_empty() {
                    return Ok(apps);
                }
                let listed = self.list_apps()?;
                for app in listed {
                    let id = app.id.as_str();
                    if missing.remove(id) {
                        log::warn!(
                            "app {id} answered 404 but is in the full list (a leader failover?): synced from the list"
                        );
                        apps.push(app);
                    }
                }
                if !missing.is_empty() {
                    log::info!(
                        "app(s) {} answered 404 and are not in the full list: gone",
                        runtime::text::capped_list(&missing)
                    );
                }
                Ok(apps)
            }
        }
    }

    fn list_apps(&self) -> Result<Vec<App>, SyncError> {
        let what = "GET /v2/apps?embed=apps.tasks";
        let apps = self
            .marathon
            .list_apps_map(true, Some(&self.cfg.label), |app| {
                require_tasks(&app, what).map(|()| App::from(app))
            })?;
        apps.into_iter().collect()
    }

    /// [`Syncer::read_apps`] between two reads of Marathon's leader: `Some(problem)` unless
    /// Marathon named the same leader before and after (deregistrations need it, issue 11).
    pub fn read_apps_with_leader(
        &self,
        scope: &Scope,
    ) -> Result<(Vec<App>, Option<String>), SyncError> {
        let before = leader_of(self.marathon);
        let apps = self.read_apps(scope)?;
        let after = leader_of(self.marathon);
        let problem = match (before, after) {
            (Ok(b), Ok(a)) if a == b => None,
            (Ok(b), Ok(a)) => Some(format!(
                "leader changed during the read: {b} before, {a} after"
            )),
            (Err(e), _) => Some(format!("before the read, {e}")),
            (Ok(_), Err(e)) => Some(format!("after the read, {e}")),
        };
        Ok((apps, problem))
    }

    /// Every registration tasks2consul owns, in few reads whatever the number of services: the
    /// nodes of this mode (catalog mode: `GET /v1/catalog/nodes?node-meta=external-source:marathon`,
    /// agent mode: every node without that mark), each node's services with their meta
    /// (`GET /v1/catalog/node/<node>`), then, if any is owned, every check in one read
    /// (`GET /v1/health/state/any`) for the mirrored health and the check IDs. Only services
    /// whose meta says tasks2consul wrote them are kept.
    pub fn read_owned(&self) -> Result<Vec<Owned>, SyncError> {
        Ok(self.read_owned_nodes()?.0)
    }

    /// [`Syncer::read_owned`], plus (catalog mode) the number of services, owned or not, on
    /// each of tasks2consul's external nodes.
    pub fn read_owned_nodes(&self) -> Result<(Vec<Owned>, BTreeMap<String, usize>), SyncError> {
        let mut node_counts = BTreeMap::new();
        let filter = match self.cfg.mode {
            Mode::Catalog => Some((META_SOURCE, SOURCE)),
            Mode::Agent => None,
        };
        // Owned services by node, decoded into compact structs (catalog.rs); their checks are
        // read afterwards, only when there is any.
        let mut found: Vec<(catalog::Node, Vec<catalog::Service>)> = Vec::new();
        for node in self.consul.catalog_nodes::<catalog::Node>(filter)? {
            let external = plan::is_external_node(&node);
            if external != (self.cfg.mode == Mode::Catalog) {
                continue;
            }
            let Some(name) = node.node.clone() else {
                continue;
            };
            let Some(detail) = self.consul.catalog_node::<catalog::NodeServices>(&name)? else {
                continue;
            };
            let node = detail.node.unwrap_or(node);
            if self.cfg.mode == Mode::Catalog && plan::is_our_node(&node, &self.cfg.cluster) {
                node_counts.insert(name, detail.services.len());
            }
            let services: Vec<catalog::Service> = detail
                .services
                .into_values()
                .filter(|svc| plan::is_owned_service(svc, &self.cfg.cluster))
                .collect();
            if !services.is_empty() {
                found.push((node, services));
            }
        }
        if found.is_empty() {
            return Ok((Vec::new(), node_counts));
        }
        let mut checks: HashMap<(String, String), Vec<catalog::Check>> = HashMap::new();
        for c in self.consul.health_state::<catalog::Check>("any")? {
            let (Some(node), Some(sid)) = (c.node.clone(), c.service_id.clone()) else {
                continue;
            };
            if !sid.is_empty() {
                checks.entry((node, sid)).or_default().push(c);
            }
        }
        let mut owned = Vec::with_capacity(found.iter().map(|(_, s)| s.len()).sum());
        for (node, services) in found {
            let name = node.node.clone().unwrap_or_default();
            for svc in services {
                let key = (name.clone(), svc.id.clone().unwrap_or_default());
                let cs = checks.remove(&key).unwrap_or_default();
                owned.extend(plan::owned_from(&node, svc, &cs.iter().collect::<Vec<_>>()));
            }
        }
        Ok((owned, node_counts))
    }

    /// Reads Marathon (between two leader reads) and Consul, plans, and applies the guards:
    /// deregistrations are held back when the leader was not stable or too many would go.
    pub fn prepare(&self, scope: &Scope) -> Result<(Snapshot, Plan), SyncError> {
        let (apps, leader_problem) = self.read_apps_with_leader(scope)?;
        let (owned, nodes) = self.read_owned_nodes()?;
        let mut p = plan::plan(&apps, &owned, scope.apps(), self.cfg);
        let mine = owned
            .iter()
            .filter(|o| o.external == (self.cfg.mode == Mode::Catalog))
            .count();
        p.guard(mine, leader_problem.as_deref(), self.cfg);
        Ok((
            Snapshot {
                apps,
                owned,
                nodes,
                leader_problem,
            },
            p,
        ))
    }

    /// Plans and applies (or, dry run, lists) the changes into `summary`.
    pub fn run(
        &self,
        scope: &Scope,
        dry_run: bool,
        summary: &mut Summary,
    ) -> Result<Stats, SyncError> {
        let (snap, mut p) = self.prepare(scope)?;
        let Snapshot {
            apps, owned, nodes, ..
        } = snap;
        let mut stats = Stats {
            apps: apps.len(),
            owned: owned.len(),
            unchanged: p.unchanged.len(),
            waiting: p.waiting,
            ..Stats::default()
        };
        // What was read is planned: not held through the writes (issue 13, peak RSS).
        drop(apps);
        drop(owned);
        log::info!(
            "{} app(s), {} owned registration(s): {} change(s), {} unchanged, {} waiting for health, {} held back",
            stats.apps,
            stats.owned,
            p.changes.len(),
            p.unchanged.len(),
            p.waiting,
            p.held.len()
        );
        for r in std::mem::take(&mut p.unchanged) {
            let detail = r.describe();
            summary.push(Action::new("register", r.id, Status::Unchanged, detail));
        }
        let done = self.execute(&p, &nodes, dry_run, summary);
        stats.applied = done.iter().filter(|d| **d == Some(true)).count();
        stats.failed = done.iter().filter(|d| **d == Some(false)).count();
        Ok(stats)
    }

    /// Reports the plan's rejected apps, held-back deregistrations and guard warnings, applies
    /// its changes and removes external nodes left empty. Returns what [`Syncer::apply_each`]
    /// returns.
    pub fn execute(
        &self,
        p: &Plan,
        nodes: &BTreeMap<String, usize>,
        dry_run: bool,
        summary: &mut Summary,
    ) -> Vec<Option<bool>> {
        report_rejected(&p.errors, summary);
        for h in &p.held {
            summary.push(Action::new(
                h.change.kind(),
                h.change.target(),
                Status::Skipped,
                format!("{}; {}", h.change.detail(), h.why),
            ));
        }
        for w in &p.warnings {
            log::warn!("{w}");
            summary.warn(w.clone());
            summary.raise_exit(Exit::TempFail);
        }
        let done = self.apply_each(&p.changes, dry_run, summary);
        if !nodes.is_empty() {
            self.remove_empty_nodes(nodes, &p.changes, &done, dry_run, summary);
        }
        done
    }

    /// Writes `changes` one by one; a failed one never stops the others (mesos-consul#59),
    /// except when Consul itself is unreachable: then the rest is skipped and the run exits 69
    /// (a replay completes it). Returns (applied, failed).
    pub fn apply(
        &self,
        changes: &[Change],
        dry_run: bool,
        summary: &mut Summary,
    ) -> (usize, usize) {
        let done = self.apply_each(changes, dry_run, summary);
        let applied = done.iter().filter(|d| **d == Some(true)).count();
        let failed = done.iter().filter(|d| **d == Some(false)).count();
        (applied, failed)
    }

    /// Like [`Syncer::apply`], telling for each change whether it was written (`Some(true)`),
    /// failed (`Some(false)`) or not attempted (`None`: dry run, Consul unreachable, or a stop
    /// signal: no new write starts after it).
    pub fn apply_each(
        &self,
        changes: &[Change],
        dry_run: bool,
        summary: &mut Summary,
    ) -> Vec<Option<bool>> {
        if dry_run {
            for c in changes {
                summary.push(Action::new(
                    c.kind(),
                    c.target(),
                    Status::Planned,
                    c.detail(),
                ));
            }
            return vec![None; changes.len()];
        }
        let results = self.write_all(changes);
        let mut done = Vec::with_capacity(changes.len());
        let mut unreachable: Option<String> = None;
        for (change, result) in changes.iter().zip(results) {
            let (kind, target, detail) = (change.kind(), change.target(), change.detail());
            match result {
                None => {
                    let why = if runtime::stop::requested() {
                        "stopped by a signal"
                    } else {
                        "Consul unreachable"
                    };
                    summary.push(Action::new(
                        kind,
                        target,
                        Status::Skipped,
                        format!("{detail} (not attempted: {why})"),
                    ));
                    done.push(None);
                }
                Some(Ok(note)) => {
                    done.push(Some(true));
                    let detail = match note {
                        Some(n) => format!("{detail} ({n})"),
                        None => detail,
                    };
                    log::info!("{kind} {target}: {detail}");
                    summary.push(Action::new(kind, target, Status::Applied, detail));
                }
                Some(Err(e)) => {
                    done.push(Some(false));
                    log::error!("{kind} {target}: {e}");
                    if self.stops_the_run(change, &e) && unreachable.is_none() {
                        unreachable = Some(e.to_string());
                        summary.raise_exit(Exit::Unavailable);
                    }
                    summary.push(Action::new(
                        kind,
                        target,
                        Status::Failed,
                        format!("{detail}: {e}"),
                    ));
                }
            }
        }
        if let Some(why) = unreachable {
            summary.error(format!(
                "Consul unreachable, remaining changes not attempted: {why}"
            ));
        }
        done
    }

    /// Writes `changes`: the catalog writes to `--consul` in transactions of at most
    /// [`txn::limit`] operations (128, or the lower limit an older Consul named: one request,
    /// one Raft entry, for up to 63 registrations), everything else (agent mode, and what a
    /// transaction could not take) one request per change. `None` for a change not attempted (Consul unreachable, or a stop
    /// signal: no new request starts after it).
    fn write_all(&self, changes: &[Change]) -> Vec<Option<WriteResult>> {
        let slots: Vec<Mutex<Option<WriteResult>>> =
            changes.iter().map(|_| Mutex::new(None)).collect();
        let stop = AtomicBool::new(false);
        let singles = self.write_batched(changes, &slots, &stop);
        self.write_each(changes, &singles, &slots, &stop);
        slots
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
            .collect()
    }

    /// Writes the changes at `which` one request each, with up to `WORKERS` requests in flight
    /// (Consul commits every catalog write through Raft, so thousands of them one at a time
    /// would take minutes).
    fn write_each(
        &self,
        changes: &[Change],
        which: &[usize],
        slots: &[Mutex<Option<WriteResult>>],
        stop: &AtomicBool,
    ) {
        parallel(which.len(), stop, |k| {
            let i = which[k];
            let result = self.write(&changes[i]);
            if let Err(e) = &result {
                if self.stops_the_run(&changes[i], e) {
                    stop.store(true, Ordering::Relaxed);
                }
            }
            *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        });
    }

    /// Writes the changes a transaction can carry (catalog registrations and deregistrations
    /// on `--consul`) through `/v1/txn`; returns the indexes of the changes left for single
    /// writes: the others, those of a transaction that could not be used, and the
    /// registrations that shared a transaction with a failed operation (Consul rolled the
    /// whole transaction back; the failed one is reported, the rest are written alone).
    ///
    /// The first transaction goes alone: a Consul with a lower operation limit than
    /// [`txn::limit`] (one before 1.14) names it once, and the others are split to it before
    /// they are sent.
    fn write_batched(
        &self,
        changes: &[Change],
        slots: &[Mutex<Option<WriteResult>>],
        stop: &AtomicBool,
    ) -> Vec<usize> {
        let (batchable, mut singles): (Vec<usize>, Vec<usize>) = (0..changes.len())
            .partition(|&i| self.txn_op_count(&changes[i]).is_some() && !txn::refused());
        let cost = |i: usize| self.txn_cost(&changes[i]);
        let limit = txn::limit();
        let mut batches = txn::batches(&batchable, limit, cost);
        let retry = Mutex::new(Vec::new());
        if batches.len() > 1 && !txn::refused() {
            let first = batches.remove(0);
            retry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(self.write_txn(changes, &first, slots, stop));
            if txn::limit() < limit {
                let rest: Vec<usize> = batches.into_iter().flatten().collect();
                batches = txn::batches(&rest, txn::limit(), cost);
            }
        }
        parallel(batches.len(), stop, |b| {
            let batch = &batches[b];
            let again = if txn::refused() {
                batch.clone()
            } else {
                self.write_txn(changes, batch, slots, stop)
            };
            retry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(again);
        });
        singles.extend(retry.into_inner().unwrap_or_else(|e| e.into_inner()));
        singles.sort_unstable();
        singles
    }

    /// What [`txn::batches`] needs of a change: its own operations, its node, and whether it
    /// needs the node's `Node` operation.
    fn txn_cost(&self, change: &Change) -> (usize, String, bool) {
        (
            self.txn_op_count(change).unwrap_or(0),
            txn_node(change).to_string(),
            matches!(change, Change::Register { .. }),
        )
    }

    /// Operations a change takes in a transaction, `None` when it is not written to the
    /// catalog of `--consul` (agent mode registrations and agent deregistrations).
    fn txn_op_count(&self, change: &Change) -> Option<usize> {
        match (self.cfg.mode, change) {
            (Mode::Catalog, Change::Register { .. }) => Some(2),
            (_, Change::Deregister { owned, .. }) if owned.external => Some(1),
            _ => None,
        }
    }

    /// One transaction of the changes at `batch`. Returns those to write singly.
    fn write_txn(
        &self,
        changes: &[Change],
        batch: &[usize],
        slots: &[Mutex<Option<WriteResult>>],
        stop: &AtomicBool,
    ) -> Vec<usize> {
        let built = txn::build(batch.iter().map(|&i| (i, &changes[i])), self.cfg);
        let set = |i: usize, r: WriteResult| {
            *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        };
        match self.consul.txn(&built.ops) {
            Ok(TxnOutcome::Applied(results)) if results.len() == built.results => {
                for &i in batch {
                    set(i, Ok(None));
                }
                Vec::new()
            }
            Ok(TxnOutcome::Applied(results)) => {
                txn::refuse(&format!(
                    "it answered {} result(s) for {} catalog write(s): it ignores the catalog verbs",
                    results.len(),
                    built.results
                ));
                batch.to_vec()
            }
            Ok(TxnOutcome::RolledBack(errors)) => {
                if let Some(e) = errors.iter().find(|e| txn::is_unknown_verb(&e.what)) {
                    txn::refuse(&format!("it does not know the catalog verbs ({})", e.what));
                    return batch.to_vec();
                }
                let failed = built.failed(&errors);
                for (&i, what) in &failed {
                    set(
                        i,
                        Err(ConsulError::Unexpected {
                            what: format!("transaction writing {}", changes[i].target()),
                            reason: what.clone(),
                        }),
                    );
                }
                batch
                    .iter()
                    .copied()
                    .filter(|i| !failed.contains_key(i))
                    .collect()
            }
            Ok(TxnOutcome::TooManyOps { sent, max }) => {
                if !txn::adopt(sent, max) {
                    return batch.to_vec();
                }
                // Nothing was applied: the same changes again, in transactions Consul takes.
                let mut again = Vec::new();
                for sub in txn::batches(batch, txn::limit(), |i| self.txn_cost(&changes[i])) {
                    if stop.load(Ordering::Relaxed) || runtime::stop::requested() {
                        break;
                    }
                    again.extend(self.write_txn(changes, &sub, slots, stop));
                }
                again
            }
            Err(ConsulError::Http(h)) if matches!(h.status(), Some(400 | 404 | 405)) => {
                txn::refuse(&format!("PUT /v1/txn: {h}"));
                batch.to_vec()
            }
            Err(e) => {
                if matches!(&e, ConsulError::Http(h) if h.is_unavailable()) {
                    // Consul itself is unreachable: the rest would only time out.
                    stop.store(true, Ordering::Relaxed);
                    for &i in batch {
                        set(i, Err(e.clone()));
                    }
                    return Vec::new();
                }
                // Anything else (a denial, a 413 over the body size limit, an error of the
                // server): each change alone gets its own answer.
                log::warn!(
                    "PUT /v1/txn of {} change(s): {e}; writing them one by one",
                    batch.len()
                );
                batch.to_vec()
            }
        }
    }

    /// Consul itself (not one host's agent) cannot be reached: the remaining changes would only
    /// time out one by one.
    fn stops_the_run(&self, change: &Change, e: &ConsulError) -> bool {
        matches!(e, ConsulError::Http(h) if h.is_unavailable())
            && self.write_goes_to_main_consul(change)
    }

    /// Catalog mode: removes tasks2consul's external nodes (node meta `external-source=marathon`)
    /// left without any service after `changes`, so that a dead or drained host's node does not
    /// linger (and, with consul-esm, is not probed forever).
    pub fn remove_empty_nodes(
        &self,
        nodes: &BTreeMap<String, usize>,
        changes: &[Change],
        done: &[Option<bool>],
        dry_run: bool,
        summary: &mut Summary,
    ) {
        let mut left = nodes.clone();
        for (c, d) in changes.iter().zip(done) {
            let counts = *d == Some(true) || (dry_run && d.is_none());
            match c {
                Change::Register { node, .. } => {
                    // A failed registration may still have created the node: keep it.
                    *left.entry(node.clone()).or_default() += 1;
                }
                Change::Deregister { owned, .. } if counts => {
                    if let Some(n) = left.get_mut(&owned.node) {
                        *n = n.saturating_sub(1);
                    }
                }
                Change::Deregister { owned, .. } => {
                    *left.entry(owned.node.clone()).or_default() += 1;
                }
            }
        }
        for (node, n) in left {
            if n > 0 || !nodes.contains_key(&node) {
                continue;
            }
            let target = format!("node:{node}");
            let detail = format!("external node {node} has no services left");
            if !dry_run && runtime::stop::requested() {
                summary.push(Action::new(
                    "deregister",
                    target,
                    Status::Skipped,
                    format!("{detail} (not attempted: stopped by a signal)"),
                ));
                continue;
            }
            if dry_run {
                summary.push(Action::new("deregister", target, Status::Planned, detail));
                continue;
            }
            match self.consul.catalog_deregister_node(&node) {
                Ok(()) => summary.push(Action::new("deregister", target, Status::Applied, detail)),
                Err(e) => summary.push(Action::new(
                    "deregister",
                    target,
                    Status::Failed,
                    format!("{detail}: {e}"),
                )),
            }
        }
    }

    fn write_goes_to_main_consul(&self, change: &Change) -> bool {
        // In agent mode each write goes to the host's own agent: one dead host is a failure
        // of its changes only.
        self.cfg.mode == Mode::Catalog
            || matches!(change, Change::Deregister { owned, .. } if owned.external)
    }

    /// One write. `Ok(Some(note))` when it succeeded in a way worth mentioning.
    fn write(&self, change: &Change) -> WriteResult {
        match (self.cfg.mode, change) {
            (Mode::Catalog, Change::Register { reg, node, .. }) => {
                self.consul
                    .catalog_register(&reg.id, &reg.catalog_body(node, self.cfg.external_probe))?;
                Ok(None)
            }
            (_, Change::Deregister { owned, .. }) if owned.external => {
                self.consul
                    .catalog_deregister_service(&owned.node, &owned.reg.id)?;
                Ok(None)
            }
            (Mode::Agent, Change::Register { reg, .. }) => {
                let agent = self.agent(&reg.host)?;
                agent.agent_service_register(&reg.agent_body(), true)?;
                Ok(None)
            }
            (_, Change::Deregister { owned, .. }) => self.agent_deregister(owned),
        }
    }

    fn agent(&self, host: &str) -> Result<std::sync::Arc<Consul>, ConsulError> {
        match self.agents {
            Some(pool) => pool.agent(host),
            None => Err(ConsulError::Unexpected {
                what: "agent mode".into(),
                reason: "no agent address configured".into(),
            }),
        }
    }

    /// Agent registrations are removed through their agent (the catalog copy would come back
    /// by anti-entropy, gliderlabs/registrator#277). When the host's agent is unreachable (dead
    /// host), the catalog copy is removed through `--consul` instead, so nothing routes to it;
    /// should that agent come back with the service, the next sync removes it there.
    fn agent_deregister(&self, owned: &Owned) -> Result<Option<String>, ConsulError> {
        let via_agent = self
            .agent(&owned.node_address)
            .and_then(|a| a.agent_service_deregister(&owned.reg.id));
        match via_agent {
            Ok(true) => Ok(None),
            Ok(false) => Ok(Some("the agent no longer had it".into())),
            Err(ConsulError::Http(h)) if is_unreachable(&h) => {
                log::warn!(
                    "agent of {} unreachable ({h}); removing {} from the catalog instead",
                    owned.node_address,
                    owned.reg.id
                );
                self.consul
                    .catalog_deregister_service(&owned.node, &owned.reg.id)?;
                Ok(Some(format!(
                    "agent on {} unreachable, removed from the catalog",
                    owned.node_address
                )))
            }
            Err(e) => Err(e),
        }
    }
}

/// Runs `f(0..n)` on up to `WORKERS` threads; no new item starts once `stop` is set or a stop
/// signal came (the ones in flight finish).
fn parallel(n: usize, stop: &AtomicBool, f: impl Fn(usize) + Sync) {
    const WORKERS: usize = 8;
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n || stop.load(Ordering::Relaxed) || runtime::stop::requested() {
            break;
        }
        f(i);
    };
    let workers = WORKERS.min(n);
    if workers <= 1 {
        work();
    } else {
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(work);
            }
        });
    }
}

/// The node a catalog change writes to.
fn txn_node(c: &Change) -> &str {
    match c {
        Change::Register { node, .. } => node,
        Change::Deregister { owned, .. } => &owned.node,
    }
}

/// Apps whose registrations were rejected (a service name Consul and DNS cannot carry): each is
/// a `failed` register action (issue 12 item 5) and an error; exit 65. Their existing
/// registrations are left as they are.
pub fn report_rejected(errors: &[plan::AppError], summary: &mut Summary) {
    for e in errors {
        log::error!("{e}");
        summary.reject(
            "register",
            e.app_id.as_str(),
            format!("rejected: {}", e.reason),
        );
        summary.error(e.to_string());
    }
}

fn is_unreachable(h: &HttpError) -> bool {
    h.is_unavailable()
}

/// App ids that `changes` touch (for logs).
pub fn apps_of(changes: &[Change]) -> BTreeSet<String> {
    changes
        .iter()
        .map(|c| match c {
            Change::Register { reg, .. } => reg.app_id().to_string(),
            Change::Deregister { owned, .. } => owned.reg.app_id().to_string(),
        })
        .collect()
}
