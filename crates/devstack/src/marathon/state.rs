//! The Marathon double's state: apps (normalized, with version history), tasks, deployments,
//! and event-stream subscribers. Everything runs under one mutex; deployments complete lazily
//! (on every request and from a background thread) once their configured duration has passed.

use super::normalize::{self, PortAllocator};
use super::util::{now_iso, now_ms, uuid};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

pub(crate) type App = Map<String, Value>;

#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub id: String,
    pub instance_id: String,
    pub app_id: String,
    pub host: String,
    pub slave_id: String,
    pub ports: Vec<u64>,
    pub service_ports: Vec<u64>,
    pub state: String,
    pub staged_at: String,
    pub started_at: Option<String>,
    /// App version the task was launched with.
    pub version: String,
    /// `versionInfo.lastConfigChangeAt` at launch: tasks of an older config get replaced.
    pub config_version: String,
    pub alive: bool,
    pub first_success: Option<String>,
    pub last_success: Option<String>,
    pub last_failure: Option<String>,
    pub seq: u64,
}

pub(crate) struct AppEntry {
    pub app: App,
    pub tasks: Vec<Task>,
    pub last_task_failure: Option<Value>,
    /// Stored versions, oldest first (for `/versions` and rollback).
    pub versions: Vec<App>,
}

/// One app's share of a deployment.
pub(crate) struct Part {
    pub app_id: String,
    pub actions: Vec<&'static str>,
    /// The app before this deployment (None: it did not exist), for rollback.
    pub original: Option<App>,
}

/// A deployment plan: one per change request, covering one app or (bulk PUT) several.
pub(crate) struct Deployment {
    pub id: String,
    pub version: String,
    pub parts: Vec<Part>,
    pub deadline: Instant,
}

impl Deployment {
    fn touches(&self, app_id: &str) -> bool {
        self.parts.iter().any(|p| p.app_id == app_id)
    }

    /// Steps as Marathon orders them: the n-th action of every app in step n.
    fn steps(&self) -> Vec<Vec<Value>> {
        let n = self
            .parts
            .iter()
            .map(|p| p.actions.len())
            .max()
            .unwrap_or(0);
        (0..n)
            .map(|i| {
                self.parts
                    .iter()
                    .filter_map(|p| {
                        p.actions
                            .get(i)
                            .map(|a| json!({"action": a, "app": p.app_id}))
                    })
                    .collect()
            })
            .collect()
    }
}

pub(crate) struct Subscriber {
    pub tx: Sender<String>,
    pub filter: Vec<String>,
}

pub(crate) struct State {
    pub apps: BTreeMap<String, AppEntry>,
    pub deployments: Vec<Deployment>,
    pub subscribers: Vec<Subscriber>,
    pub hosts: Vec<String>,
    pub down_hosts: HashSet<String>,
    pub deploy_duration: Duration,
    /// App ids or image substrings whose tasks never become healthy: a deployment that starts
    /// such an app never finishes (until cancelled, forced over or rolled back).
    pub never_healthy: Vec<String>,
    /// `--max_running_deployments`: changes beyond it are refused (403).
    pub max_running: usize,
    /// Deployments started since the double started (a test's and the bench's counter).
    pub started: u64,
    next_service_port: u64,
    next_host_port: u64,
    rr: usize,
    last_version_ms: i64,
    /// The root group's versions, oldest first: every change to an app (create, update, scale,
    /// restart, delete, rollback) makes a new root group version in Marathon (GroupManager
    /// updates the root with the deployment's version), listed by `GET /v2/groups/versions`.
    pub root_versions: Vec<String>,
    task_seq: u64,
}

/// Marathon's `--zk_max_versions` default (MarathonConf: 50).
const ROOT_VERSIONS_KEPT: usize = 50;

/// Service-port allocation as GroupManager.assignDynamicServicePorts does it: an app that
/// replaces an older version first gets the old version's dynamic ports back ("if the app uses
/// dynamic ports (0), it will get always the same ports assigned"), then fresh ones.
struct Ports<'a> {
    next: &'a mut u64,
    reuse: std::collections::VecDeque<u64>,
}

impl PortAllocator for Ports<'_> {
    fn service_port(&mut self) -> u64 {
        if let Some(p) = self.reuse.pop_front() {
            return p;
        }
        let p = *self.next;
        *self.next = if p >= 20000 { 10000 } else { p + 1 };
        p
    }
}

/// Task id prefix for an app: `/group/app` → `group_app` (core/task/Task.scala).
fn id_prefix(app_id: &str) -> String {
    app_id.trim_start_matches('/').replace('/', "_")
}

impl State {
    pub(crate) fn new(hosts: Vec<String>, deploy_duration: Duration) -> State {
        State {
            apps: BTreeMap::new(),
            deployments: Vec::new(),
            subscribers: Vec::new(),
            hosts,
            down_hosts: HashSet::new(),
            deploy_duration,
            never_healthy: Vec::new(),
            max_running: 100,
            started: 0,
            next_service_port: 10000,
            next_host_port: 31000,
            rr: 0,
            last_version_ms: 0,
            root_versions: Vec::new(),
            task_seq: 0,
        }
    }

    /// A fresh version timestamp, strictly increasing (versions are keys in Marathon).
    pub(crate) fn next_version(&mut self) -> String {
        let ms = now_ms().max(self.last_version_ms + 1);
        self.last_version_ms = ms;
        let version = super::util::iso_ms(ms);
        // "every change to every application creates 2 new objects in zk: the version of the
        // app and group at that point in time"; at most --zk_max_versions (default 50, "applies
        // to every store") are kept, oldest dropped first (MarathonConf maxVersions).
        self.root_versions.push(version.clone());
        if self.root_versions.len() > ROOT_VERSIONS_KEPT {
            self.root_versions.remove(0);
        }
        version
    }

    pub(crate) fn normalize(&mut self, app: App) -> App {
        let id = normalize::absolute_id(app.get("id").and_then(Value::as_str).unwrap_or(""));
        let explicit = normalize::explicit_service_ports(&app);
        let reuse = self
            .apps
            .get(&id)
            .map(|e| normalize::service_ports(&e.app))
            .unwrap_or_default()
            .into_iter()
            .filter(|p| (10000..=20000).contains(p) && !explicit.contains(p))
            .collect();
        let mut ports = Ports {
            next: &mut self.next_service_port,
            reuse,
        };
        normalize::normalize(app, &mut ports)
    }

    // ---- events ----

    /// Sends an event to every subscribed stream (dropping streams that went away).
    pub(crate) fn emit(&mut self, event_type: &str, mut data: Value) {
        if self.subscribers.is_empty() {
            return;
        }
        if let Some(o) = data.as_object_mut() {
            o.insert("eventType".into(), json!(event_type));
            o.insert("timestamp".into(), json!(now_iso()));
        }
        let frame = format!("event: {event_type}\r\ndata: {data}\r\n\r\n");
        self.subscribers.retain(|s| {
            if !s.filter.is_empty() && !s.filter.iter().any(|f| f == event_type) {
                return true;
            }
            s.tx.send(frame.clone()).is_ok()
        });
    }

    fn status_event(&mut self, t: &Task, status: &str, message: &str) {
        let ev = json!({
            "slaveId": t.slave_id, "taskId": t.id, "taskStatus": status, "message": message,
            "appId": t.app_id, "host": t.host,
            "ipAddresses": [{"ipAddress": t.host, "protocol": "IPv4"}],
            "ports": t.ports, "version": t.version,
        });
        self.emit("status_update_event", ev);
    }

    fn health_event(&mut self, t: &Task) {
        let ev = json!({"appId": t.app_id, "instanceId": t.instance_id, "version": t.version,
            "alive": t.alive});
        self.emit("health_status_changed_event", ev);
    }

    // ---- tasks ----

    fn pick_host(&mut self) -> Option<String> {
        let n = self.hosts.len();
        for _ in 0..n {
            let h = self.hosts[self.rr % n].clone();
            self.rr = self.rr.wrapping_add(1);
            if !self.down_hosts.contains(&h) {
                return Some(h);
            }
        }
        None
    }

    fn new_task(&mut self, app: &App, running: bool) -> Option<Task> {
        let host = self.pick_host()?;
        let app_id = app["id"].as_str().unwrap_or_default().to_string();
        let instance_id = format!("{}.instance-{}", id_prefix(&app_id), uuid());
        let ports = normalize::host_port_requests(app)
            .into_iter()
            .map(|p| {
                if p != 0 {
                    return p;
                }
                let p = self.next_host_port;
                self.next_host_port = if p >= 32000 { 31000 } else { p + 1 };
                p
            })
            .collect();
        let host_index = self.hosts.iter().position(|h| *h == host).unwrap_or(0);
        let now = now_iso();
        self.task_seq += 1;
        let version = app["version"].as_str().unwrap_or_default().to_string();
        let config_version = app["versionInfo"]["lastConfigChangeAt"]
            .as_str()
            .unwrap_or(&version)
            .to_string();
        Some(Task {
            id: format!("{instance_id}._app.1"),
            instance_id,
            app_id,
            slave_id: format!("5c3c2ee9-7b2c-4bd0-9d1b-31f8b8e0e5a1-S{host_index}"),
            host,
            ports,
            service_ports: normalize::service_ports(app),
            state: if running {
                "TASK_RUNNING"
            } else {
                "TASK_STAGING"
            }
            .into(),
            staged_at: now.clone(),
            started_at: running.then(|| now.clone()),
            version,
            config_version,
            alive: true,
            first_success: running.then(|| now.clone()),
            last_success: running.then_some(now),
            last_failure: None,
            seq: self.task_seq,
        })
    }

    fn has_health_checks(app: &App) -> bool {
        app.get("healthChecks")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    }

    /// Marks a staged task running and emits its status (and health) events.
    fn start_task(&mut self, app_id: &str, idx: usize) {
        let Some(entry) = self.apps.get_mut(app_id) else {
            return;
        };
        let hc = Self::has_health_checks(&entry.app);
        let t = &mut entry.tasks[idx];
        let now = now_iso();
        t.state = "TASK_RUNNING".into();
        t.started_at = Some(now.clone());
        t.first_success = Some(now.clone());
        t.last_success = Some(now);
        let t = t.clone();
        self.status_event(&t, "TASK_RUNNING", "");
        if hc {
            self.health_event(&t);
        }
    }

    fn launch_running(&mut self, app_id: &str) -> bool {
        let Some(app) = self.apps.get(app_id).map(|e| e.app.clone()) else {
            return false;
        };
        let Some(t) = self.new_task(&app, true) else {
            return false;
        };
        let hc = Self::has_health_checks(&app);
        self.status_event(&t, "TASK_RUNNING", "");
        if hc {
            self.health_event(&t);
        }
        if let Some(e) = self.apps.get_mut(app_id) {
            e.tasks.push(t);
        }
        true
    }

    /// Stages tasks of the current config until the app has `instances` of them.
    fn stage_missing(&mut self, app_id: &str) {
        let Some(entry) = self.apps.get(app_id) else {
            return;
        };
        let app = entry.app.clone();
        let cur = Self::config_version(&app);
        let have = entry
            .tasks
            .iter()
            .filter(|t| t.config_version == cur)
            .count();
        let want = app["instances"].as_u64().unwrap_or(0) as usize;
        for _ in have..want {
            let Some(t) = self.new_task(&app, false) else {
                break;
            };
            self.apps.get_mut(app_id).unwrap().tasks.push(t);
        }
    }

    fn config_version(app: &App) -> String {
        app["versionInfo"]["lastConfigChangeAt"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Removes a task, emitting its terminal status.
    fn remove_task(&mut self, app_id: &str, task_id: &str, status: &str, message: &str) -> bool {
        let Some(entry) = self.apps.get_mut(app_id) else {
            return false;
        };
        let Some(pos) = entry.tasks.iter().position(|t| t.id == task_id) else {
            return false;
        };
        let t = entry.tasks.remove(pos);
        if !matches!(status, "TASK_KILLED" | "TASK_FINISHED" | "TASK_KILLING") {
            entry.last_task_failure = Some(json!({
                "appId": t.app_id, "host": t.host, "message": message, "state": status,
                "taskId": t.id, "timestamp": now_iso(), "version": t.version, "slaveId": t.slave_id,
            }));
        }
        self.status_event(&t, status, message);
        true
    }

    /// Brings an app's tasks to its target: staged tasks start, tasks of an older config and
    /// excess instances are killed, missing instances launched (end of a deployment).
    fn converge(&mut self, app_id: &str) {
        let Some(entry) = self.apps.get(app_id) else {
            return;
        };
        let cur = Self::config_version(&entry.app);
        let want = entry.app["instances"].as_u64().unwrap_or(0) as usize;
        let youngest_first = entry.app["killSelection"] != "OLDEST_FIRST";
        let staged: Vec<usize> = (0..entry.tasks.len())
            .filter(|&i| {
                entry.tasks[i].state == "TASK_STAGING" && entry.tasks[i].config_version == cur
            })
            .collect();
        for i in staged {
            self.start_task(app_id, i);
        }
        let entry = &self.apps[app_id];
        let old: Vec<String> = entry
            .tasks
            .iter()
            .filter(|t| t.config_version != cur)
            .map(|t| t.id.clone())
            .collect();
        for id in old {
            self.remove_task(app_id, &id, "TASK_KILLED", "");
        }
        let mut current: Vec<(u64, String)> = self.apps[app_id]
            .tasks
            .iter()
            .map(|t| (t.seq, t.id.clone()))
            .collect();
        if current.len() > want {
            current.sort();
            if youngest_first {
                current.reverse();
            }
            let excess = current.len() - want;
            for (_, id) in current.into_iter().take(excess) {
                self.remove_task(app_id, &id, "TASK_KILLED", "");
            }
        }
        while self.apps[app_id].tasks.len() < want {
            if !self.launch_running(app_id) {
                break;
            }
        }
    }

    // ---- deployments ----

    pub(crate) fn deployments_of(&self, app_id: &str) -> Vec<String> {
        self.deployments
            .iter()
            .filter(|d| d.touches(app_id))
            .map(|d| d.id.clone())
            .collect()
    }

    fn plan_json(d: &Deployment) -> Value {
        let steps: Vec<Value> = d
            .steps()
            .into_iter()
            .map(|a| json!({ "actions": a }))
            .collect();
        json!({"id": d.id, "version": d.version, "steps": steps})
    }

    pub(crate) fn deployment_json(d: &Deployment) -> Value {
        let steps = d.steps();
        let current: Vec<Value> = steps
            .first()
            .into_iter()
            .flatten()
            .map(|a| {
                let mut a = a.clone();
                a["readinessCheckResults"] = json!([]);
                a
            })
            .collect();
        let affected: Vec<&str> = d.parts.iter().map(|p| p.app_id.as_str()).collect();
        let total = steps.len();
        let steps: Vec<Value> = steps.into_iter().map(|a| json!({ "actions": a })).collect();
        json!({
            "id": d.id, "version": d.version, "affectedApps": affected, "affectedPods": [],
            "steps": steps, "currentActions": current,
            "currentStep": if total == 0 { 0 } else { 1 }, "totalSteps": total,
        })
    }

    /// Cancels the deployments of an app (force=true): they fail, no rollback.
    pub(crate) fn cancel_deployments_of(&mut self, app_id: &str) {
        let (cancelled, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deployments)
            .into_iter()
            .partition(|d| d.touches(app_id));
        self.deployments = kept;
        for d in cancelled {
            let plan = Self::plan_json(&d);
            self.emit("deployment_failed", json!({"id": d.id, "plan": plan}));
        }
    }

    pub(crate) fn start_deployment(&mut self, version: &str, parts: Vec<Part>) -> String {
        let d = Deployment {
            id: uuid(),
            version: version.to_string(),
            parts,
            deadline: Instant::now() + self.deploy_duration,
        };
        let id = d.id.clone();
        let plan = Self::plan_json(&d);
        let step = plan["steps"]
            .get(0)
            .cloned()
            .unwrap_or(json!({"actions": []}));
        self.emit(
            "deployment_info",
            json!({"plan": plan, "currentStep": step}),
        );
        self.deployments.push(d);
        self.started += 1;
        id
    }

    fn complete(&mut self, idx: usize) {
        let d = self.deployments.remove(idx);
        for p in &d.parts {
            self.converge(&p.app_id);
        }
        let plan = Self::plan_json(&d);
        self.emit("deployment_success", json!({"id": d.id, "plan": plan}));
    }

    /// True when the deployment starts an app whose tasks never become healthy
    /// ([`State::never_healthy`]): it never finishes.
    fn stuck(&self, d: &Deployment) -> bool {
        d.parts.iter().any(|p| {
            !p.actions.contains(&"StopApplication")
                && self.apps.get(&p.app_id).is_some_and(|e| {
                    let image = e
                        .app
                        .get("container")
                        .and_then(|c| c["docker"]["image"].as_str())
                        .unwrap_or_default();
                    self.never_healthy
                        .iter()
                        .any(|m| *m == p.app_id || (!m.is_empty() && image.contains(m.as_str())))
                })
        })
    }

    /// Completes every deployment whose time has come.
    pub(crate) fn tick(&mut self) {
        let now = Instant::now();
        while let Some(i) = self
            .deployments
            .iter()
            .position(|d| d.deadline <= now && !self.stuck(d))
        {
            self.complete(i);
        }
    }

    /// Completes every deployment now, except those that never finish.
    pub(crate) fn finish_all(&mut self) {
        while let Some(i) = self.deployments.iter().position(|d| !self.stuck(d)) {
            self.complete(i);
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deployments
            .iter()
            .filter(|d| !self.stuck(d))
            .map(|d| d.deadline)
            .min()
    }

    /// Stores `new` (already normalized, without version) as the app's definition and starts
    /// the deployment. Returns (deploymentId, version).
    pub(crate) fn put_app(&mut self, new: App) -> (String, String) {
        self.put_app_with(new, false)
    }

    /// `put_app`; `restart` forces a new config version (every task replaced).
    pub(crate) fn put_app_with(&mut self, new: App, restart: bool) -> (String, String) {
        let version = self.next_version();
        let part = self.apply(new, restart, &version);
        let dep = self.start_deployment(&version, vec![part]);
        (dep, version)
    }

    /// Stores `new` under `version` and stages its tasks; the caller starts the deployment.
    pub(crate) fn apply(&mut self, new: App, restart: bool, version: &str) -> Part {
        let app_id = new["id"].as_str().unwrap_or_default().to_string();
        let old = self.apps.get(&app_id).map(|e| e.app.clone());
        let strip = |a: &App| {
            let mut a = a.clone();
            for k in ["version", "versionInfo", "instances"] {
                a.remove(k);
            }
            a
        };
        let mut app = new;
        let (actions, info) = match &old {
            None => (
                vec!["StartApplication", "ScaleApplication"],
                json!({"lastScalingAt": version, "lastConfigChangeAt": version}),
            ),
            Some(o) if restart || strip(o) != strip(&app) => (
                vec!["RestartApplication"],
                json!({"lastScalingAt": version, "lastConfigChangeAt": version}),
            ),
            Some(o) if o["instances"] != app["instances"] => (
                vec!["ScaleApplication"],
                json!({"lastScalingAt": version,
                       "lastConfigChangeAt": o["versionInfo"]["lastConfigChangeAt"]}),
            ),
            Some(o) => (Vec::new(), o["versionInfo"].clone()),
        };
        app.insert("version".into(), json!(version));
        app.insert("versionInfo".into(), info);
        match self.apps.get_mut(&app_id) {
            Some(e) => {
                e.app = app.clone();
                e.versions.push(app);
                if e.versions.len() > 50 {
                    e.versions.remove(0);
                }
            }
            None => {
                self.apps.insert(
                    app_id.clone(),
                    AppEntry {
                        app: app.clone(),
                        tasks: Vec::new(),
                        last_task_failure: None,
                        versions: vec![app],
                    },
                );
            }
        }
        self.stage_missing(&app_id);
        Part {
            app_id,
            actions,
            original: old,
        }
    }

    /// Removes an app: its tasks are killed now, the StopApplication deployment stays
    /// observable for the configured duration.
    pub(crate) fn delete_app(&mut self, app_id: &str) -> (String, String) {
        let version = self.next_version();
        let part = self.remove(app_id);
        let dep = self.start_deployment(&version, vec![part]);
        (dep, version)
    }

    /// Removes an app and kills its tasks; the caller starts the deployment.
    fn remove(&mut self, app_id: &str) -> Part {
        let entry = self
            .apps
            .get(app_id)
            .map(|e| (e.app.clone(), e.tasks.clone()));
        if let Some((_, tasks)) = &entry {
            for t in tasks {
                self.remove_task(app_id, &t.id, "TASK_KILLED", "");
            }
        }
        self.apps.remove(app_id);
        self.emit("app_terminated_event", json!({"appId": app_id}));
        Part {
            app_id: app_id.to_string(),
            actions: vec!["StopApplication"],
            original: entry.map(|(a, _)| a),
        }
    }

    /// Rolls back a running deployment: a new deployment restores the original definition.
    pub(crate) fn rollback(&mut self, dep_id: &str) -> Option<(String, String)> {
        let idx = self.deployments.iter().position(|d| d.id == dep_id)?;
        let d = self.deployments.remove(idx);
        let plan = Self::plan_json(&d);
        self.emit("deployment_failed", json!({"id": d.id, "plan": plan}));
        let version = self.next_version();
        let parts: Vec<Part> = d
            .parts
            .into_iter()
            .map(|p| match p.original {
                Some(mut orig) => {
                    orig.remove("version");
                    orig.remove("versionInfo");
                    self.apply(orig, false, &version)
                }
                None => self.remove(&p.app_id),
            })
            .collect();
        let dep = self.start_deployment(&version, parts);
        Some((dep, version))
    }

    /// Cancels a deployment without rollback (`DELETE /v2/deployments/{id}?force=true`).
    pub(crate) fn cancel(&mut self, dep_id: &str) -> bool {
        let Some(idx) = self.deployments.iter().position(|d| d.id == dep_id) else {
            return false;
        };
        let d = self.deployments.remove(idx);
        let plan = Self::plan_json(&d);
        self.emit("deployment_failed", json!({"id": d.id, "plan": plan}));
        true
    }

    /// Creates an app instantly with running tasks, no deployment (benchmark seeding).
    pub(crate) fn seed(&mut self, app: App) {
        let app_id = app["id"].as_str().unwrap_or_default().to_string();
        let version = self.next_version();
        let mut app = app;
        app.insert("version".into(), json!(version));
        app.insert(
            "versionInfo".into(),
            json!({"lastScalingAt": version, "lastConfigChangeAt": version}),
        );
        let n = app["instances"].as_u64().unwrap_or(0);
        let mut tasks = Vec::new();
        for _ in 0..n {
            if let Some(t) = self.new_task(&app, true) {
                tasks.push(t);
            }
        }
        self.apps.insert(
            app_id,
            AppEntry {
                app: app.clone(),
                tasks,
                last_task_failure: None,
                versions: vec![app],
            },
        );
    }

    // ---- test controls ----

    fn find_task(&self, task_id: &str) -> Option<String> {
        self.apps
            .iter()
            .find(|(_, e)| {
                e.tasks
                    .iter()
                    .any(|t| t.id == task_id || t.instance_id == task_id)
            })
            .map(|(id, _)| id.clone())
    }

    /// A task ends in `state`; Marathon launches a replacement (no deployment needed).
    pub(crate) fn kill_task(&mut self, task_id: &str, state: &str) {
        let Some(app_id) = self.find_task(task_id) else {
            return;
        };
        let real_id = self.apps[&app_id]
            .tasks
            .iter()
            .find(|t| t.id == task_id || t.instance_id == task_id)
            .map(|t| t.id.clone())
            .unwrap_or_default();
        let message = match state {
            "TASK_FAILED" => "Command exited with status 1",
            "TASK_LOST" => "Agent lost",
            _ => "",
        };
        self.remove_task(&app_id, &real_id, state, message);
        self.replace_missing(&app_id);
    }

    fn replace_missing(&mut self, app_id: &str) {
        let Some(e) = self.apps.get(app_id) else {
            return;
        };
        let want = e.app["instances"].as_u64().unwrap_or(0) as usize;
        let cur = Self::config_version(&e.app);
        // Old-config tasks still count while a restart deployment runs.
        let deploying = !self.deployments_of(app_id).is_empty();
        let have = e
            .tasks
            .iter()
            .filter(|t| deploying || t.config_version == cur)
            .count();
        for _ in have..want {
            if !self.launch_running(app_id) {
                break;
            }
        }
    }

    pub(crate) fn set_task_alive(&mut self, task_id: &str, alive: bool) {
        let Some(app_id) = self.find_task(task_id) else {
            return;
        };
        let now = now_iso();
        let e = self.apps.get_mut(&app_id).unwrap();
        let Some(t) = e
            .tasks
            .iter_mut()
            .find(|t| t.id == task_id || t.instance_id == task_id)
        else {
            return;
        };
        t.alive = alive;
        if alive {
            t.last_success = Some(now.clone());
            t.first_success.get_or_insert(now);
        } else {
            t.last_failure = Some(now);
        }
        let t = t.clone();
        self.health_event(&t);
    }

    pub(crate) fn set_host_down(&mut self, host: &str) {
        self.down_hosts.insert(host.to_string());
        let lost: Vec<(String, String)> = self
            .apps
            .iter()
            .flat_map(|(a, e)| {
                e.tasks
                    .iter()
                    .filter(|t| t.host == host)
                    .map(move |t| (a.clone(), t.id.clone()))
            })
            .collect();
        for (app_id, task_id) in &lost {
            self.remove_task(app_id, task_id, "TASK_LOST", "Agent lost");
        }
        let apps: HashSet<String> = lost.into_iter().map(|(a, _)| a).collect();
        for a in apps {
            self.replace_missing(&a);
        }
    }

    // ---- rendering ----

    pub(crate) fn task_json(t: &Task, health_checks: usize) -> Value {
        let mut o = json!({
            "id": t.id, "slaveId": t.slave_id, "host": t.host, "state": t.state,
            "stagedAt": t.staged_at,
        });
        let m = o.as_object_mut().unwrap();
        if let Some(s) = &t.started_at {
            m.insert("startedAt".into(), json!(s));
        }
        m.insert("ports".into(), json!(t.ports));
        m.insert("servicePorts".into(), json!(t.service_ports));
        m.insert(
            "ipAddresses".into(),
            json!([{"ipAddress": t.host, "protocol": "IPv4"}]),
        );
        m.insert("version".into(), json!(t.version));
        m.insert("appId".into(), json!(t.app_id));
        m.insert("localVolumes".into(), json!([]));
        if health_checks > 0 && t.state == "TASK_RUNNING" {
            let r = json!({
                "alive": t.alive, "consecutiveFailures": if t.alive { 0 } else { 1 },
                "firstSuccess": t.first_success, "lastSuccess": t.last_success,
                "lastFailure": t.last_failure,
                "lastFailureCause": if t.alive { Value::Null } else { json!("503 Service Unavailable") },
                "instanceId": t.instance_id,
            });
            m.insert("healthCheckResults".into(), json!(vec![r; health_checks]));
        }
        o
    }

    /// The app as `GET /v2/apps` shows it: definition + counts + deployments (+ tasks and
    /// lastTaskFailure when asked).
    pub(crate) fn app_json(
        e: &AppEntry,
        deps: &HashMap<&str, Vec<&str>>,
        tasks: bool,
        failure: bool,
    ) -> Value {
        let mut m = e.app.clone();
        let hcs = e
            .app
            .get("healthChecks")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let running = e.tasks.iter().filter(|t| t.state == "TASK_RUNNING");
        let staged = e.tasks.iter().filter(|t| t.state == "TASK_STAGING").count();
        let (mut n_running, mut healthy, mut unhealthy) = (0, 0, 0);
        for t in running {
            n_running += 1;
            if hcs > 0 {
                if t.alive {
                    healthy += 1
                } else {
                    unhealthy += 1
                }
            }
        }
        m.insert("tasksStaged".into(), json!(staged));
        m.insert("tasksRunning".into(), json!(n_running));
        m.insert("tasksHealthy".into(), json!(healthy));
        m.insert("tasksUnhealthy".into(), json!(unhealthy));
        let id = e.app["id"].as_str().unwrap_or_default();
        let d: Vec<Value> = deps
            .get(id)
            .map(|v| v.iter().map(|d| json!({"id": d})).collect())
            .unwrap_or_default();
        m.insert("deployments".into(), Value::Array(d));
        if tasks {
            let ts: Vec<Value> = e.tasks.iter().map(|t| Self::task_json(t, hcs)).collect();
            m.insert("tasks".into(), Value::Array(ts));
        }
        if failure {
            if let Some(f) = &e.last_task_failure {
                m.insert("lastTaskFailure".into(), f.clone());
            }
        }
        Value::Object(m)
    }

    /// `app_json` written straight into `out` without cloning the definition (the list
    /// endpoint serves 10,000 apps; cloning every map dominated its time).
    pub(crate) fn write_app_json(
        e: &AppEntry,
        deps: &HashMap<&str, Vec<&str>>,
        tasks: bool,
        failure: bool,
        out: &mut String,
    ) {
        let def = serde_json::to_string(&e.app).unwrap_or_else(|_| "{}".into());
        let hcs = e
            .app
            .get("healthChecks")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let (mut staged, mut running, mut healthy, mut unhealthy) = (0, 0, 0, 0);
        for t in &e.tasks {
            match t.state.as_str() {
                "TASK_STAGING" => staged += 1,
                "TASK_RUNNING" => {
                    running += 1;
                    if hcs > 0 {
                        if t.alive {
                            healthy += 1
                        } else {
                            unhealthy += 1
                        }
                    }
                }
                _ => {}
            }
        }
        out.push_str(&def[..def.len() - 1]);
        if def.len() > 2 {
            out.push(',');
        }
        out.push_str(&format!(
            "\"tasksStaged\":{staged},\"tasksRunning\":{running},\"tasksHealthy\":{healthy},\"tasksUnhealthy\":{unhealthy},\"deployments\":["
        ));
        let id = e.app["id"].as_str().unwrap_or_default();
        for (i, d) in deps.get(id).into_iter().flatten().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&json!({ "id": d }).to_string());
        }
        out.push(']');
        if tasks {
            let ts: Vec<Value> = e.tasks.iter().map(|t| Self::task_json(t, hcs)).collect();
            out.push_str(",\"tasks\":");
            out.push_str(&Value::Array(ts).to_string());
        }
        if failure {
            if let Some(f) = &e.last_task_failure {
                out.push_str(",\"lastTaskFailure\":");
                out.push_str(&f.to_string());
            }
        }
        out.push('}');
    }

    pub(crate) fn deployment_index(&self) -> HashMap<&str, Vec<&str>> {
        let mut m: HashMap<&str, Vec<&str>> = HashMap::new();
        for d in &self.deployments {
            for p in &d.parts {
                m.entry(p.app_id.as_str()).or_default().push(d.id.as_str());
            }
        }
        m
    }
}
