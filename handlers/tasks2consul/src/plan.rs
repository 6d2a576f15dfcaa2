//! The sync plan: which registrations Marathon's apps and tasks call for (desired), which
//! registrations tasks2consul owns in Consul (read from their meta), and the difference between
//! the two as register/deregister changes. Pure functions over the reduced Marathon apps
//! ([`crate::app`]) and Consul's JSON, no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::app::{App, HealthCheck, Task};
use crate::catalog;

/// Service meta keys. `external-source` follows Consul's convention for registrations that come
/// from another system (consul-k8s writes `external-source=kubernetes`).
pub const META_APP_ID: &str = "marathon-app-id";
pub const META_TASK_ID: &str = "marathon-task-id";
pub const META_APP_VERSION: &str = "marathon-app-version";
pub const META_PORT_INDEX: &str = "marathon-port-index";
pub const META_SOURCE: &str = "external-source";
pub const SOURCE: &str = "marathon";
/// Which Marathon cluster a registration (service meta) or an external node (node meta) belongs
/// to. Without it, ownership was `external-source=marathon` alone, and two clusters sharing a
/// Consul deregistered each other's services (marathon-consul #29, #261; issue 11).
pub const META_CLUSTER: &str = "marathon-cluster";
/// The cluster of registrations made without [`META_CLUSTER`] (by older versions).
pub const DEFAULT_CLUSTER: &str = "default";

/// A run that would remove every owned registration is held back (whatever the cap) only when
/// more than this many would go: the death of the only task or two of a small cluster is real
/// and must be deregistered; an empty answer for a larger one is far more likely a Marathon
/// between leaders (issue 11).
pub const ALL_GONE_MIN: usize = 3;

/// `--max-deregister N|P%`: the most owned registrations one run may deregister.
///
/// The rule: a percentage is of the owned registrations (this cluster and mode), rounded down
/// but never below 1, so the death of 1 of 2 tasks is still deregistered; a count is used as
/// given. Independently, a run that would leave none of more than [`ALL_GONE_MIN`] owned
/// registrations is held back. `100%` turns both checks off (a real empty cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxDeregister {
    Count(usize),
    Percent(u8),
}

impl Default for MaxDeregister {
    fn default() -> Self {
        MaxDeregister::Percent(50)
    }
}

impl std::fmt::Display for MaxDeregister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxDeregister::Count(n) => write!(f, "{n}"),
            MaxDeregister::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for MaxDeregister {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad =
            || format!("{s:?} is neither a count (20) nor a percentage from 0% to 100% (50%)");
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= 100 => Ok(MaxDeregister::Percent(p)),
                _ => Err(bad()),
            },
            None => s.parse().map(MaxDeregister::Count).map_err(|_| bad()),
        }
    }
}

impl MaxDeregister {
    /// `100%`: no cap, and a run may leave none.
    pub fn is_off(self) -> bool {
        self == MaxDeregister::Percent(100)
    }

    /// How many of `owned` registrations one run may deregister.
    pub fn cap(self, owned: usize) -> usize {
        match self {
            MaxDeregister::Count(n) => n,
            MaxDeregister::Percent(p) => (owned * p as usize / 100).max(1),
        }
    }

    /// Why `losses` deregistrations out of `owned` must be held back, if they must.
    pub fn exceeded(self, losses: usize, owned: usize) -> Option<String> {
        if self.is_off() || losses == 0 {
            return None;
        }
        let cap = self.cap(owned);
        if losses > cap {
            return Some(format!(
                "{losses} of {owned} owned registration(s) would be deregistered, more than --max-deregister {self} allows ({cap})"
            ));
        }
        if losses >= owned && losses > ALL_GONE_MIN {
            return Some(format!(
                "all {owned} owned registration(s) would be deregistered (an empty or partial answer from Marathon?)"
            ));
        }
        None
    }
}

/// The check that mirrors Marathon's health in catalog mode: `<service id>:marathon-health`.
pub const MIRROR_CHECK_SUFFIX: &str = ":marathon-health";

/// Where registrations go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `/v1/catalog/register` on an external node per Mesos host (no agent needed there).
    Catalog,
    /// `/v1/agent/service/register` on the Consul agent of the task's host.
    Agent,
}

/// What selects and names registrations.
#[derive(Debug, Clone)]
pub struct Config {
    /// The app label that opts an app in and names its service (default `consul`).
    pub label: String,
    pub mode: Mode,
    /// Catalog mode: the external node of host `h` is `<node_prefix><h>`. Never the host's own
    /// node name, or that host's agent would remove the registrations by anti-entropy
    /// (hashicorp/consul#7513).
    pub node_prefix: String,
    /// Catalog mode: node meta `external-probe` (consul-esm pings such nodes and fails all their
    /// services when the ping fails). Off by default: Marathon is the source of task health, and
    /// where ICMP is filtered a probing consul-esm would fail every service.
    pub external_probe: bool,
    /// `--cluster`: written to service and node meta [`META_CLUSTER`]; only registrations of
    /// this cluster are owned.
    pub cluster: String,
    /// `--max-deregister`: the mass-deregistration guard.
    pub max_deregister: MaxDeregister,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            label: "consul".into(),
            mode: Mode::Catalog,
            node_prefix: "marathon-".into(),
            external_probe: false,
            cluster: DEFAULT_CLUSTER.into(),
            max_deregister: MaxDeregister::default(),
        }
    }
}

impl Config {
    pub fn node_for_host(&self, host: &str) -> String {
        format!("{}{}", self.node_prefix, host)
    }
}

/// Health as Marathon reports it for a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Passing,
    Critical,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Passing => "passing",
            Health::Critical => "critical",
        }
    }
}

/// A Consul check translated from a Marathon health check (agent mode; Consul runs it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckDef {
    pub id: String,
    pub name: String,
    /// `("HTTP", url)` or `("TCP", host:port)`.
    pub kind: &'static str,
    pub target: String,
    pub interval: String,
    pub timeout: String,
}

/// One service registration, as tasks2consul writes it and as it reads its own back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// `marathon:<task id>:<port>` (see [`service_id`]).
    pub id: String,
    pub name: String,
    /// Sorted, so that label order in Marathon never causes a write.
    pub tags: Vec<String>,
    pub address: String,
    pub port: u16,
    pub meta: BTreeMap<String, String>,
    /// The Mesos host that runs the task (external node address / agent host).
    pub host: String,
    /// Catalog mode: the mirror check's status.
    pub health: Health,
    /// Agent mode: checks Consul runs.
    pub checks: Vec<CheckDef>,
}

impl Registration {
    pub fn app_id(&self) -> &str {
        self.meta.get(META_APP_ID).map(String::as_str).unwrap_or("")
    }

    pub fn task_id(&self) -> &str {
        self.meta
            .get(META_TASK_ID)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The cluster that made it (meta [`META_CLUSTER`], `default` without it).
    pub fn cluster(&self) -> &str {
        cluster_in(&self.meta)
    }

    pub fn mirror_check_id(&self) -> String {
        format!("{}{}", self.id, MIRROR_CHECK_SUFFIX)
    }

    /// The `Service` object of a catalog registration / the body of an agent registration.
    fn service_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("ID".into(), json!(self.id));
        m.insert("Tags".into(), json!(self.tags));
        m.insert("Address".into(), json!(self.address));
        m.insert("Port".into(), json!(self.port));
        m.insert("Meta".into(), json!(self.meta));
        m
    }

    /// `PUT /v1/catalog/register` body: the external node (node meta `external-node` and
    /// `external-probe` as consul-esm expects them, hashicorp/consul-esm README), the service and
    /// a check whose status mirrors Marathon's.
    pub fn catalog_body(&self, node: &str, external_probe: bool) -> Value {
        let cluster = self.cluster();
        let mut service = self.service_fields();
        service.insert("Service".into(), json!(self.name));
        let output = match self.health {
            Health::Passing => "Marathon reports the task running and healthy",
            Health::Critical => "Marathon reports a failing health check for the task",
        };
        json!({
            "Node": node,
            "Address": self.host,
            "NodeMeta": {
                "external-node": "true",
                "external-probe": if external_probe { "true" } else { "false" },
                META_SOURCE: SOURCE,
                META_CLUSTER: cluster,
            },
            "Service": Value::Object(service),
            "Check": {
                "Node": node,
                "CheckID": self.mirror_check_id(),
                "Name": "Marathon task health",
                "Status": self.health.as_str(),
                "ServiceID": self.id,
                "Output": output,
            },
        })
    }

    /// `PUT /v1/agent/service/register` body with the translated checks, initially passing
    /// because only tasks Marathon already reports healthy are registered (allegro/
    /// marathon-consul#122 registered them critical and caused a routing gap).
    pub fn agent_body(&self) -> Value {
        let mut body = self.service_fields();
        body.insert("Name".into(), json!(self.name));
        let checks: Vec<Value> = self
            .checks
            .iter()
            .map(|c| {
                json!({
                    "CheckID": c.id,
                    "Name": c.name,
                    c.kind: c.target,
                    "Interval": c.interval,
                    "Timeout": c.timeout,
                    "Status": "passing",
                })
            })
            .collect();
        body.insert("Checks".into(), Value::Array(checks));
        Value::Object(body)
    }

    /// One line for plans and logs.
    pub fn describe(&self) -> String {
        format!(
            "{} {}:{} task {} app {}{}",
            self.name,
            self.address,
            self.port,
            self.task_id(),
            self.app_id(),
            if self.health == Health::Critical {
                " (critical)"
            } else {
                ""
            }
        )
    }
}

/// A registration found in Consul that tasks2consul owns (by its meta), and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub reg: Registration,
    pub node: String,
    pub node_address: String,
    /// True when the node is one of tasks2consul's external nodes (catalog mode).
    pub external: bool,
    /// Agent mode: the IDs of the service's checks (compared with the desired ones; empty for
    /// a service on an external node).
    pub check_ids: BTreeSet<String>,
    /// Catalog mode: the node's `external-probe` meta (rewritten when `--external-probe` changes).
    pub node_probe: Option<String>,
}

/// The deterministic service ID: `marathon:<task id>:<port>`. Marathon task ids are unique for
/// the life of a cluster and use `[A-Za-z0-9._-]`, so the ID never collides and re-registering
/// the same task port always hits the same service (registrator's hostname-based IDs duplicated
/// services when its hostname changed, gliderlabs/registrator#181).
pub fn service_id(task_id: &str, port: u16) -> String {
    format!("marathon:{task_id}:{port}")
}

/// `/sami/api` → `sami-api`.
pub fn default_name(app_id: &str) -> String {
    app_id
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Why an app could not be planned (its registrations are left as they are).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("app {app_id}: {reason}")]
pub struct AppError {
    pub app_id: String,
    pub reason: String,
}

/// Whether a desired registration may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Running and (if the app has health checks) alive in every result.
    Ready,
    /// Running but failing a health check, or not yet checked: registered only if it already
    /// is (then its check turns critical), never newly registered.
    Unhealthy,
}

/// The desired registrations of one app, and the state of each of its tasks (for reasons).
#[derive(Debug, Clone, Default)]
pub struct AppDesired {
    pub regs: Vec<(Registration, Gate)>,
    pub task_states: HashMap<String, String>,
}

/// Consul accepts any service name, but DNS and consul-template need something sane: no
/// control characters, no whitespace, no `/`, at most 128 characters.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.len() > 128 {
        return Err("is longer than 128 characters");
    }
    if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '/')
    {
        return Err("contains whitespace, control characters or /");
    }
    Ok(())
}

/// A Mesos host as it may appear in a node name, an address and an agent URL: a DNS name, an
/// IPv4 address or a bracketed IPv6 address. Anything else (`/`, `@`, spaces…) could redirect an
/// agent-mode request elsewhere, so such tasks are not registered.
pub fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && !host.starts_with('-')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'))
}

/// Marathon's verdict: no health checks = healthy; otherwise every result alive (and at least
/// one result: a task in its grace period has none yet).
fn task_health(app_has_checks: bool, task: &Task) -> Health {
    if !app_has_checks {
        return Health::Passing;
    }
    match &task.health_results {
        Some(results) if !results.is_empty() && results.iter().all(|alive| *alive) => {
            Health::Passing
        }
        _ => Health::Critical,
    }
}

/// Marathon HTTP/TCP health checks → Consul checks on the task's host and port (agent mode),
/// as marathon-consul translates them (reference §4.1). COMMAND checks run inside the
/// container and have no Consul equivalent; they are left to Marathon.
fn translate_checks(
    checks: &[HealthCheck],
    sid: &str,
    port_index: usize,
    host: &str,
    ports: &[u16],
) -> Vec<CheckDef> {
    let mut out = Vec::new();
    for (k, hc) in checks.iter().enumerate() {
        let protocol = hc.protocol.as_deref().unwrap_or("HTTP");
        // A fixed `port` applies to the first service; `portIndex` (default 0) to its port.
        let (applies, port) = match hc.port {
            Some(p) => (port_index == 0, p as u16),
            None => {
                let idx = hc.port_index.unwrap_or(0) as usize;
                (idx == port_index, ports.get(idx).copied().unwrap_or(0))
            }
        };
        if !applies || port == 0 {
            continue;
        }
        let (kind, target) = match protocol {
            "HTTP" | "MESOS_HTTP" | "HTTPS" | "MESOS_HTTPS" => {
                let scheme = if protocol.ends_with("HTTPS") {
                    "https"
                } else {
                    "http"
                };
                let path = hc.path.as_deref().unwrap_or("/");
                let path = if path.starts_with('/') {
                    path.to_string()
                } else {
                    format!("/{path}")
                };
                ("HTTP", format!("{scheme}://{host}:{port}{path}"))
            }
            "TCP" | "MESOS_TCP" => ("TCP", format!("{host}:{port}")),
            _ => continue,
        };
        let secs = |value: Option<u64>, default: u64| format!("{}s", value.unwrap_or(default));
        out.push(CheckDef {
            id: format!("{sid}:hc{k}"),
            name: format!("Marathon health check {k} ({protocol})"),
            kind,
            target,
            interval: secs(hc.interval_seconds, 60),
            timeout: secs(hc.timeout_seconds, 20),
        });
    }
    out
}

/// Is the app opted in, and under which name?
pub fn app_selected(app: &App, cfg: &Config) -> bool {
    app.label(&cfg.label).is_some()
}

/// The registrations one app calls for: every port of every running task.
pub fn desired_for_app(app: &App, cfg: &Config) -> Result<AppDesired, AppError> {
    let app_id = app.id.clone();
    let err = |reason: String| AppError {
        app_id: app_id.clone(),
        reason,
    };
    if app_id.is_empty() {
        return Err(err("has no id".into()));
    }
    let base = match app.label(&cfg.label) {
        Some(v) if !v.is_empty() && v != "true" => v.to_string(),
        _ => default_name(&app_id),
    };
    check_name(&base).map_err(|why| err(format!("service name {base:?} {why}")))?;
    let app_tags: Vec<&str> = app
        .labels
        .iter()
        .filter(|(_, v)| v == "tag")
        .map(|(k, _)| k.as_str())
        .collect();
    let has_checks = !app.health_checks.is_empty();
    let mut out = AppDesired::default();
    for task in app.tasks() {
        let Some(task_id) = task.id.as_deref() else {
            continue;
        };
        out.task_states
            .insert(task_id.to_string(), task.state.clone());
        if !task.is_running() {
            continue;
        }
        let host = task.host.clone().unwrap_or_default();
        if !valid_host(&host) {
            log::warn!("app {app_id}: task {task_id} has an invalid host {host:?}; not registered");
            continue;
        }
        // Without host ports (USER/container networks) the task is reached on its own IP and
        // the container ports.
        let (address, ports) = if !task.ports.is_empty() {
            (host.clone(), task.ports.clone())
        } else {
            let cports: Vec<u16> = app
                .ports
                .iter()
                .filter_map(|s| s.container_port)
                .filter(|p| *p > 0)
                .map(|p| p as u16)
                .collect();
            match &task.ip {
                Some(ip) if !cports.is_empty() => (ip.clone(), cports),
                _ => continue,
            }
        };
        let health = task_health(has_checks, task);
        let gate = if health == Health::Passing {
            Gate::Ready
        } else {
            Gate::Unhealthy
        };
        let version = task
            .version
            .as_deref()
            .or(app.version.as_deref())
            .unwrap_or_default();
        let several = ports.len() > 1;
        for (i, port) in ports.iter().copied().enumerate() {
            let spec = app.ports.get(i);
            let port_labels = spec.map_or(&[][..], |s| &s.labels[..]);
            let port_name = spec
                .and_then(|s| s.name.as_deref())
                .filter(|n| !n.is_empty());
            let name = match port_labels.iter().find(|(k, _)| *k == cfg.label) {
                Some((_, v)) if !v.is_empty() && v != "true" => v.clone(),
                _ if several => format!(
                    "{base}-{}",
                    port_name
                        .map(str::to_string)
                        .unwrap_or_else(|| i.to_string())
                ),
                _ => base.clone(),
            };
            check_name(&name)
                .map_err(|why| err(format!("port {i}: service name {name:?} {why}")))?;
            let mut tags: Vec<String> = app_tags
                .iter()
                .copied()
                .chain(
                    port_labels
                        .iter()
                        .filter(|(_, v)| v == "tag")
                        .map(|(k, _)| k.as_str()),
                )
                .map(str::to_string)
                .collect();
            tags.sort();
            tags.dedup();
            let sid = service_id(task_id, port);
            let mut meta = BTreeMap::new();
            meta.insert(META_APP_ID.to_string(), app_id.clone());
            meta.insert(META_TASK_ID.to_string(), task_id.to_string());
            meta.insert(META_APP_VERSION.to_string(), version.to_string());
            meta.insert(META_PORT_INDEX.to_string(), i.to_string());
            meta.insert(META_SOURCE.to_string(), SOURCE.to_string());
            meta.insert(META_CLUSTER.to_string(), cfg.cluster.clone());
            let checks = if cfg.mode == Mode::Agent {
                translate_checks(&app.health_checks, &sid, i, &address, &ports)
            } else {
                Vec::new()
            };
            out.regs.push((
                Registration {
                    id: sid,
                    name,
                    tags,
                    address: address.clone(),
                    port,
                    meta,
                    host: host.clone(),
                    health,
                    checks,
                },
                gate,
            ));
        }
    }
    Ok(out)
}

/// True for tasks2consul's external nodes (catalog mode) and other external nodes: node meta
/// `external-node=true` or `external-source=marathon`.
pub fn is_external_node(node: &catalog::Node) -> bool {
    let meta = &node.meta;
    meta.get("external-node").map(String::as_str) == Some("true")
        || meta.get(META_SOURCE).map(String::as_str) == Some(SOURCE)
}

/// True for the external nodes tasks2consul creates for `cluster` (node meta
/// `external-source=marathon` and `marathon-cluster`, `default` without it).
pub fn is_our_node(node: &catalog::Node, cluster: &str) -> bool {
    node.meta.get(META_SOURCE).map(String::as_str) == Some(SOURCE)
        && cluster_in(&node.meta) == cluster
}

/// The cluster named by service or node meta (`default` without [`META_CLUSTER`]).
fn cluster_in(meta: &BTreeMap<String, String>) -> &str {
    meta.get(META_CLUSTER)
        .map_or(DEFAULT_CLUSTER, String::as_str)
}

/// True when a service's meta says tasks2consul wrote it (for any cluster).
fn is_marathon_service(meta: &BTreeMap<String, String>) -> bool {
    meta.get(META_SOURCE).map(String::as_str) == Some(SOURCE)
        && meta.contains_key(META_TASK_ID)
        && meta.contains_key(META_APP_ID)
}

/// True when a service's meta says tasks2consul wrote it for `cluster`.
pub fn is_owned_service(service: &catalog::Service, cluster: &str) -> bool {
    is_marathon_service(&service.meta) && cluster_in(&service.meta) == cluster
}

/// Reads one `/v1/health/service/<name>` entry (`{Node, Service, Checks}`). `None` unless
/// tasks2consul owns it: Service meta `external-source=marathon` with a task and app id.
/// Everything else is foreign and never touched.
pub fn owned_from_health_entry(entry: &Value) -> Option<Owned> {
    let e = catalog::HealthEntry::deserialize(entry).ok()?;
    owned_from(&e.node?, e.service?, &e.checks.iter().collect::<Vec<_>>())
}

/// The registration `service` on `node` is, with `checks` (any; those of the service are
/// used), if tasks2consul owns it (see [`owned_from_health_entry`]).
pub fn owned_from(
    node: &catalog::Node,
    service: catalog::Service,
    checks: &[&catalog::Check],
) -> Option<Owned> {
    if !is_marathon_service(&service.meta) {
        return None;
    }
    let node_name = node.node.clone()?;
    let node_address = node.address.clone().unwrap_or_default();
    let external = is_external_node(node);
    let id = service.id?;
    let mut tags = service.tags;
    tags.sort();
    tags.dedup();
    let checks: Vec<&catalog::Check> = checks
        .iter()
        .copied()
        .filter(|c| c.service_id.as_deref() == Some(id.as_str()))
        .collect();
    let mirror = format!("{id}{MIRROR_CHECK_SUFFIX}");
    let health = match checks
        .iter()
        .find(|c| c.check_id.as_deref() == Some(mirror.as_str()))
    {
        Some(c) if c.status.as_deref() == Some("passing") => Health::Passing,
        Some(_) => Health::Critical,
        // No mirror check: not what we write, so the comparison forces a rewrite.
        None => Health::Critical,
    };
    // Only agent mode compares check IDs (catalog mode mirrors one check it names itself):
    // not kept for the external nodes' 10,000s of services.
    let check_ids = if external {
        BTreeSet::new()
    } else {
        checks.iter().filter_map(|c| c.check_id.clone()).collect()
    };
    let address = service
        .address
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| node_address.clone());
    Some(Owned {
        reg: Registration {
            id,
            name: service.service.unwrap_or_default(),
            tags,
            address,
            port: service.port as u16,
            meta: service.meta,
            host: node_address.clone(),
            health,
            checks: Vec::new(),
        },
        node: node_name,
        node_address,
        external,
        check_ids,
        node_probe: node.meta.get("external-probe").cloned(),
    })
}

/// One change to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Register {
        reg: Registration,
        /// Where it goes: the external node (catalog mode) or the agent host (agent mode).
        node: String,
        reason: String,
    },
    Deregister {
        owned: Owned,
        reason: String,
    },
}

impl Change {
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Register { .. } => "register",
            Change::Deregister { .. } => "deregister",
        }
    }

    pub fn target(&self) -> &str {
        match self {
            Change::Register { reg, .. } => &reg.id,
            Change::Deregister { owned, .. } => &owned.reg.id,
        }
    }

    pub fn detail(&self) -> String {
        match self {
            Change::Register { reg, node, reason } => {
                format!("{} on {node}: {reason}", reg.describe())
            }
            Change::Deregister { owned, reason } => {
                format!("{} on {}: {reason}", owned.reg.describe(), owned.node)
            }
        }
    }
}

/// A deregistration a guard held back, and why (reported `skipped` with the override).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub change: Change,
    pub why: String,
}

/// The result of planning: the changes, the registrations already right, and apps that could
/// not be planned (their registrations are left alone).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Registrations already right (listed and counted as `unchanged`).
    pub unchanged: Vec<Registration>,
    /// Ready-to-register tasks that are not healthy yet (not registered).
    pub waiting: usize,
    pub errors: Vec<AppError>,
    /// Deregistrations held back by a guard (not made).
    pub held: Vec<Held>,
    /// One readable line per guard that held something back (the run exits 75).
    pub warnings: Vec<String>,
    /// New registrations per app id (tasks that replace dead ones in a deployment).
    pub new_by_app: BTreeMap<String, usize>,
}

impl Plan {
    /// Deregistrations that shrink the catalog: not a moved or duplicate copy of a service that
    /// stays registered, and, per app, beyond the new registrations the same run makes for it
    /// (a deployment replacing every task of an app is not a loss). What the
    /// mass-deregistration guard counts.
    pub fn losses(&self) -> usize {
        let kept: BTreeSet<&str> = self
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Register { reg, .. } => Some(reg.id.as_str()),
                Change::Deregister { .. } => None,
            })
            .chain(self.unchanged.iter().map(|r| r.id.as_str()))
            .collect();
        let mut by_app: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &self.changes {
            if let Change::Deregister { owned, .. } = c {
                if !kept.contains(owned.reg.id.as_str()) {
                    *by_app.entry(owned.reg.app_id()).or_default() += 1;
                }
            }
        }
        by_app
            .into_iter()
            .map(|(app, n)| n.saturating_sub(self.new_by_app.get(app).copied().unwrap_or(0)))
            .sum()
    }

    /// Moves every deregistration to `held` with `why`; registrations stay.
    pub fn hold_deregistrations(&mut self, why: &str) -> usize {
        let (dereg, keep): (Vec<Change>, Vec<Change>) = std::mem::take(&mut self.changes)
            .into_iter()
            .partition(|c| matches!(c, Change::Deregister { .. }));
        self.changes = keep;
        let n = dereg.len();
        self.held.extend(dereg.into_iter().map(|change| Held {
            change,
            why: why.to_string(),
        }));
        n
    }

    /// The guards that need the whole read: a stable Marathon leader (`leader_problem` says
    /// what was wrong), then the mass-deregistration cap over `owned` registrations.
    pub fn guard(&mut self, owned: usize, leader_problem: Option<&str>, cfg: &Config) {
        if let Some(problem) = leader_problem {
            let n = self.hold_deregistrations(&format!(
                "held back: Marathon leader not stable ({problem}); the next sync with a stable leader deregisters it"
            ));
            self.warnings.push(format!(
                "Marathon leader not stable ({problem}): {n} deregistration(s) held back, registrations made; replay once Marathon has a stable leader"
            ));
            return;
        }
        let losses = self.losses();
        if let Some(why) = cfg.max_deregister.exceeded(losses, owned) {
            let n = self.hold_deregistrations(&format!(
                "held back by the mass-deregistration guard (--max-deregister {}); override: --max-deregister 100%",
                cfg.max_deregister
            ));
            self.warnings.push(format!(
                "mass-deregistration guard: {why}: none of the {n} deregistration(s) made, registrations made; if Marathon's answer is right, rerun with --max-deregister 100% (or a larger count)"
            ));
        }
    }
}

/// Running tasks an app lists (`tasks` with state `TASK_RUNNING`).
fn running_listed(app: &App) -> usize {
    app.tasks().iter().filter(|t| t.is_running()).count()
}

/// `Some((listed, tasksRunning))` when an app lists fewer running tasks than its own
/// `tasksRunning` count says it has (Marathon always embeds the counts, AppsResource.index): an
/// incomplete answer, not dead tasks.
pub fn incomplete_tasks(app: &App) -> Option<(usize, u64)> {
    let counted = app.tasks_running?;
    let listed = running_listed(app);
    (counted > listed as u64).then_some((listed, counted))
}

/// What to compare: fields tasks2consul writes. Catalog mode also compares the mirrored status;
/// agent mode compares the set of check IDs (Consul owns the status).
fn same(desired: &Registration, owned: &Owned, cfg: &Config) -> Result<(), String> {
    let d = desired;
    let o = &owned.reg;
    let mut diffs = Vec::new();
    if d.name != o.name {
        diffs.push(format!("name {} -> {}", o.name, d.name));
    }
    if d.tags != o.tags {
        diffs.push(format!(
            "tags [{}] -> [{}]",
            runtime::text::capped_list(&o.tags),
            runtime::text::capped_list(&d.tags)
        ));
    }
    if d.address != o.address || d.port != o.port {
        diffs.push(format!(
            "address {}:{} -> {}:{}",
            o.address, o.port, d.address, d.port
        ));
    }
    if d.meta != o.meta {
        diffs.push("meta".to_string());
    }
    match cfg.mode {
        Mode::Catalog => {
            let probe = if cfg.external_probe { "true" } else { "false" };
            if owned.node_probe.as_deref() != Some(probe) {
                diffs.push(format!("node meta external-probe -> {probe}"));
            }
            if d.health != o.health {
                diffs.push(format!(
                    "health {} -> {}",
                    o.health.as_str(),
                    d.health.as_str()
                ));
            }
            if owned.node_address != d.host {
                diffs.push(format!("host {} -> {}", owned.node_address, d.host));
            }
        }
        Mode::Agent => {
            let want: BTreeSet<String> = d.checks.iter().map(|c| c.id.clone()).collect();
            if want != owned.check_ids {
                diffs.push("checks".to_string());
            }
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join(", "))
    }
}

/// Compares what `apps` call for with `owned`, limited to `scope` (app ids) when given.
///
/// - `apps`: the selected apps with their tasks (as `/v2/apps?embed=apps.tasks` returns them).
///   Apps in `scope` but absent from `apps` are gone (deleted, or no longer labelled).
/// - `owned`: every registration tasks2consul owns (any app; out-of-scope ones are ignored).
///
/// Registrations of the other mode (agent ones in catalog mode and vice versa) are not touched.
pub fn plan(apps: &[App], owned: &[Owned], scope: Option<&BTreeSet<String>>, cfg: &Config) -> Plan {
    let in_scope = |app_id: &str| match scope {
        None => true,
        Some(s) => s.contains(app_id),
    };
    let mut out = Plan::default();
    // App id → (desired by service id, task states); apps that failed to plan are recorded so
    // their registrations are kept.
    let mut desired: BTreeMap<String, (Registration, Gate)> = BTreeMap::new();
    let mut task_states: HashMap<String, String> = HashMap::new();
    let mut planned_apps: BTreeSet<String> = BTreeSet::new();
    let mut failed_apps: BTreeSet<String> = BTreeSet::new();
    // Apps listing fewer running tasks than they count: their registrations are kept.
    let mut incomplete: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for app in apps {
        let app_id = app.id.as_str();
        if !in_scope(app_id) || !app_selected(app, cfg) {
            continue;
        }
        if let Some(counts) = incomplete_tasks(app) {
            incomplete.insert(app_id.to_string(), counts);
        }
        match desired_for_app(app, cfg) {
            Ok(d) => {
                planned_apps.insert(app_id.to_string());
                task_states.extend(d.task_states);
                for (reg, gate) in d.regs {
                    desired.insert(reg.id.clone(), (reg, gate));
                }
            }
            Err(e) => {
                failed_apps.insert(app_id.to_string());
                out.errors.push(e);
            }
        }
    }
    // Owned registrations of this mode and cluster, in scope.
    let mine = owned.iter().filter(|o| {
        o.reg.cluster() == cfg.cluster
            && match cfg.mode {
                Mode::Catalog => o.external,
                Mode::Agent => !o.external,
            }
    });
    let mut owned_by_id: BTreeMap<&str, Vec<&Owned>> = BTreeMap::new();
    for o in mine {
        let app_id = o.reg.app_id();
        if !in_scope(app_id) || failed_apps.contains(app_id) {
            continue;
        }
        owned_by_id.entry(o.reg.id.as_str()).or_default().push(o);
    }
    // Consumed: each desired registration moves into its change or the unchanged list.
    for (id, (reg, gate)) in desired {
        let node = match cfg.mode {
            Mode::Catalog => cfg.node_for_host(&reg.host),
            Mode::Agent => reg.host.clone(),
        };
        let mut existing = owned_by_id.remove(id.as_str()).unwrap_or_default();
        // The copy at the right place, if any; every other copy is removed. Catalog mode: the
        // host's external node (another node means the host or --node-prefix changed). Agent
        // mode: an agent's node address is often an IP where Marathon names the host, so any
        // one copy is kept, preferring the one whose node address is the task's host.
        let (here, elsewhere): (Vec<&Owned>, Vec<&Owned>) = match cfg.mode {
            Mode::Catalog => existing.into_iter().partition(|o| o.node == node),
            Mode::Agent => {
                existing.sort_by_key(|o| o.node_address != reg.host);
                let rest = existing.split_off(existing.len().min(1));
                (existing, rest)
            }
        };
        for o in elsewhere {
            out.changes.push(Change::Deregister {
                owned: o.clone(),
                reason: format!("task moved to {node}"),
            });
        }
        match (here.first(), gate) {
            (None, Gate::Unhealthy) => out.waiting += 1,
            (None, Gate::Ready) => {
                *out.new_by_app.entry(reg.app_id().to_string()).or_default() += 1;
                out.changes.push(Change::Register {
                    reg,
                    node,
                    reason: "new running task".into(),
                })
            }
            (Some(o), _) => match same(&reg, o, cfg) {
                Ok(()) => out.unchanged.push(reg),
                Err(diff) => out.changes.push(Change::Register {
                    reg,
                    node,
                    reason: format!("changed: {diff}"),
                }),
            },
        }
        for dup in here.iter().skip(1) {
            out.changes.push(Change::Deregister {
                owned: (*dup).clone(),
                reason: "duplicate".into(),
            });
        }
    }
    let mut kept: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, copies) in owned_by_id {
        for o in copies {
            let app_id = o.reg.app_id();
            if let Some((listed, counted)) = incomplete.get(app_id) {
                *kept.entry(app_id).or_default() += 1;
                out.held.push(Held {
                    change: Change::Deregister {
                        owned: o.clone(),
                        reason: "not in the app's task list".into(),
                    },
                    why: format!(
                        "held back: app {app_id} lists {listed} running task(s) but counts {counted} (tasksRunning): an incomplete answer"
                    ),
                });
                continue;
            }
            let reason = if !planned_apps.contains(app_id) {
                format!("app {app_id} is gone or no longer has the label")
            } else {
                match task_states.get(o.reg.task_id()) {
                    None => "task is gone".to_string(),
                    Some(s) if s == "TASK_RUNNING" => "port no longer exposed".to_string(),
                    Some(s) => format!("task is {s}"),
                }
            };
            out.changes.push(Change::Deregister {
                owned: o.clone(),
                reason,
            });
        }
    }
    for (app_id, (listed, counted)) in &incomplete {
        out.warnings.push(format!(
            "app {app_id}: Marathon lists {listed} running task(s) but counts {counted} (tasksRunning): an incomplete answer, its {} registration(s) missing from the list kept; replay when Marathon lists every task",
            kept.get(app_id.as_str()).copied().unwrap_or(0)
        ));
    }
    out
}
