//! What tasks2consul reads of a Marathon app: each app of `GET /v2/apps?embed=apps.tasks` (or
//! `GET /v2/apps/<id>?embed=app.tasks`) is reduced to an [`App`] as soon as it is decoded, so a
//! sync of 10,000 tasks never holds Marathon's whole answer as a `serde_json::Value` tree (an
//! app's full definition and every task field, most of which tasks2consul never reads: issue 13
//! item 4, peak RSS).
//!
//! The reduction is as lenient as reading the JSON directly was: a field of an unexpected type
//! reads as absent, exactly as the accessors (`as_str`, `as_u64`, ...) did. Whether an app has
//! its `tasks` array at all is checked on the JSON before (`sync::require_tasks`, issue 11).

use serde_json::Value;

/// One Marathon app, reduced (app definition: docs/rest-api/public/api/v2/types/app.raml).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct App {
    /// `id` (empty when absent: such an app cannot be planned).
    pub id: String,
    /// `version` of the app definition.
    pub version: Option<String>,
    /// `labels` with string values (others can neither opt an app in, name it nor tag it).
    pub labels: Vec<(String, String)>,
    /// `tasksRunning` (Marathon embeds the counts in every app of the list).
    pub tasks_running: Option<u64>,
    /// The port specs in task port order: `container.portMappings` (1.5+),
    /// `container.docker.portMappings` (1.4), else `portDefinitions`.
    pub ports: Vec<PortSpec>,
    /// `healthChecks` (one entry per element, whatever its shape).
    pub health_checks: Vec<HealthCheck>,
    /// `tasks`; `None` when the answer had none (events may add them).
    pub tasks: Option<Vec<Task>>,
}

/// A port spec (portDefinition or portMapping).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSpec {
    pub name: Option<String>,
    pub labels: Vec<(String, String)>,
    pub container_port: Option<u64>,
}

/// A Marathon health check (healthCheck.raml).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthCheck {
    pub protocol: Option<String>,
    pub port: Option<u64>,
    pub port_index: Option<u64>,
    pub path: Option<String>,
    pub interval_seconds: Option<u64>,
    pub timeout_seconds: Option<u64>,
}

/// A task (task.raml).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Task {
    pub id: Option<String>,
    /// `state`; tasks of Marathon 0.x carry none but a `startedAt` once running, so such a
    /// task is `TASK_RUNNING`, else `TASK_STAGING`.
    pub state: String,
    pub host: Option<String>,
    /// `ports` (host ports).
    pub ports: Vec<u16>,
    /// `ipAddresses[0].ipAddress` (USER/container networks).
    pub ip: Option<String>,
    /// `version`: the app version the task runs.
    pub version: Option<String>,
    /// `healthCheckResults`, each `alive == true`; `None` without the array.
    pub health_results: Option<Vec<bool>>,
}

fn take_str(v: &mut Value, key: &str) -> Option<String> {
    match v.get_mut(key).map(Value::take) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn u64_of(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

/// String-valued entries of a labels object.
fn string_map(v: Option<&mut Value>) -> Vec<(String, String)> {
    match v.map(Value::take) {
        Some(Value::Object(m)) => m
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn array(v: Option<&mut Value>) -> Vec<Value> {
    match v.map(Value::take) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    }
}

impl From<Value> for App {
    fn from(mut app: Value) -> App {
        let tasks = match app.get_mut("tasks").map(Value::take) {
            Some(Value::Array(ts)) => Some(ts.into_iter().map(Task::from).collect()),
            _ => None,
        };
        App {
            id: take_str(&mut app, "id").unwrap_or_default(),
            version: take_str(&mut app, "version"),
            labels: string_map(app.get_mut("labels")),
            tasks_running: u64_of(&app, "tasksRunning"),
            ports: port_specs(&mut app)
                .into_iter()
                .map(PortSpec::from)
                .collect(),
            health_checks: array(app.get_mut("healthChecks"))
                .into_iter()
                .map(HealthCheck::from)
                .collect(),
            tasks,
        }
    }
}

/// The first non-empty of `container.portMappings`, `container.docker.portMappings`, else
/// `portDefinitions`.
fn port_specs(app: &mut Value) -> Vec<Value> {
    let container = app.get_mut("container");
    if let Some(c) = container {
        let mappings = array(c.get_mut("portMappings"));
        if !mappings.is_empty() {
            return mappings;
        }
        let docker = array(c.get_mut("docker").and_then(|d| d.get_mut("portMappings")));
        if !docker.is_empty() {
            return docker;
        }
    }
    array(app.get_mut("portDefinitions"))
}

impl From<Value> for PortSpec {
    fn from(mut spec: Value) -> PortSpec {
        PortSpec {
            name: take_str(&mut spec, "name"),
            labels: string_map(spec.get_mut("labels")),
            container_port: u64_of(&spec, "containerPort"),
        }
    }
}

impl From<Value> for HealthCheck {
    fn from(mut hc: Value) -> HealthCheck {
        HealthCheck {
            protocol: take_str(&mut hc, "protocol"),
            port: u64_of(&hc, "port"),
            port_index: u64_of(&hc, "portIndex"),
            path: take_str(&mut hc, "path"),
            interval_seconds: u64_of(&hc, "intervalSeconds"),
            timeout_seconds: u64_of(&hc, "timeoutSeconds"),
        }
    }
}

impl From<Value> for Task {
    fn from(mut task: Value) -> Task {
        let state = match take_str(&mut task, "state") {
            Some(s) => s,
            None if task.get("startedAt").is_some_and(|s| !s.is_null()) => "TASK_RUNNING".into(),
            None => "TASK_STAGING".into(),
        };
        let mut t = Task {
            id: take_str(&mut task, "id"),
            state,
            ..Task::default()
        };
        t.update_from(&task);
        t.health_results = task
            .get("healthCheckResults")
            .and_then(Value::as_array)
            .map(|rs| {
                rs.iter()
                    .map(|r| r.get("alive").and_then(Value::as_bool) == Some(true))
                    .collect()
            });
        t
    }
}

impl Task {
    /// Takes `host`, `ports`, `ipAddresses` and `version` from `v` where present (a task of an
    /// answer, or a `status_update_event`, which carries the same fields).
    pub fn update_from(&mut self, v: &Value) {
        if let Some(h) = v.get("host") {
            self.host = h.as_str().map(str::to_string);
        }
        if let Some(p) = v.get("ports") {
            self.ports = p
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_u64)
                        .map(|p| p as u16)
                        .collect()
                })
                .unwrap_or_default();
        }
        if let Some(ips) = v.get("ipAddresses") {
            self.ip = ips
                .get(0)
                .and_then(|a| a.get("ipAddress"))
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        if let Some(version) = v.get("version") {
            self.version = version.as_str().map(str::to_string);
        }
    }

    pub fn is_running(&self) -> bool {
        self.state == "TASK_RUNNING"
    }
}

impl App {
    /// The value of label `key`, if it is a string.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The tasks (none without the array).
    pub fn tasks(&self) -> &[Task] {
        self.tasks.as_deref().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_app_keeps_what_tasks2consul_reads_and_nothing_else() {
        let app = App::from(json!({
            "id": "/sami/api", "version": "v1", "cmd": "sleep 1000", "instances": 2,
            "labels": {"consul": "true", "public": "tag", "n": 1},
            "tasksRunning": 2,
            "container": {"type": "DOCKER", "portMappings": [],
                          "docker": {"image": "x", "portMappings": [
                              {"containerPort": 8080, "name": "http", "labels": {"consul": "web"}}]}},
            "portDefinitions": [{"port": 10000}],
            "healthChecks": [{"protocol": "HTTP", "path": "/h", "portIndex": 0,
                              "intervalSeconds": 5}, "odd"],
            "tasks": [
                {"id": "a.1", "host": "h1", "ports": [31000, "x"], "state": "TASK_RUNNING",
                 "version": "v1", "slaveId": "s", "healthCheckResults": [{"alive": true}, {}],
                 "ipAddresses": [{"ipAddress": "10.1.1.1", "protocol": "IPv4"}]},
                {"id": "a.2", "startedAt": "2026-11-24T10:00:01.000Z"},
                {"id": "a.3", "startedAt": null, "host": 7}
            ]
        }));
        assert_eq!(app.id, "/sami/api");
        assert_eq!(app.label("consul"), Some("true"));
        assert_eq!(app.label("n"), None, "not a string");
        assert_eq!(app.tasks_running, Some(2));
        assert_eq!(
            app.ports,
            vec![PortSpec {
                name: Some("http".into()),
                labels: vec![("consul".into(), "web".into())],
                container_port: Some(8080),
            }]
        );
        assert_eq!(app.health_checks.len(), 2);
        assert_eq!(app.health_checks[0].path.as_deref(), Some("/h"));
        assert_eq!(app.health_checks[1], HealthCheck::default());
        let ts = app.tasks();
        assert_eq!(ts[0].ports, vec![31000]);
        assert_eq!(ts[0].ip.as_deref(), Some("10.1.1.1"));
        assert_eq!(ts[0].health_results, Some(vec![true, false]));
        assert_eq!(ts[1].state, "TASK_RUNNING", "0.x: started");
        assert_eq!(ts[1].health_results, None);
        assert_eq!(ts[2].state, "TASK_STAGING");
        assert_eq!(ts[2].host, None);
        assert_eq!(App::from(json!({"id": "/x"})).tasks, None);
    }
}
