//! What Marathon does to an app definition before storing it: JSON type checks (400 "Invalid
//! JSON"), validation (422 "Object is not valid"), and normalization (absolute id, defaults,
//! 1.4 → 1.5 networking, assigned service ports). Sources: reference §1.3 (AppNormalization.scala,
//! raml/Apps.scala, state/PathId.scala, AppValidation.scala) and the real 1.5 dump quoted there.

use serde_json::{json, Map, Value};

/// Why a definition was refused, as Marathon answers it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rejection {
    /// 400 `{"message":"Invalid JSON","details":[{path, errors}]}` (JSON type errors).
    InvalidJson(Vec<(String, String)>),
    /// 422 `{"message":"Object is not valid","details":[{path, errors}]}`.
    Invalid(Vec<(String, String)>),
}

impl Rejection {
    pub(crate) fn status(&self) -> u16 {
        match self {
            Rejection::InvalidJson(_) => 400,
            Rejection::Invalid(_) => 422,
        }
    }

    pub(crate) fn body(&self) -> Value {
        let (message, details) = match self {
            Rejection::InvalidJson(d) => ("Invalid JSON", d),
            Rejection::Invalid(d) => ("Object is not valid", d),
        };
        // Marathon groups errors by path: one detail per path with all its errors.
        let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
        for (path, err) in details {
            match grouped.iter_mut().find(|(p, _)| p == path) {
                Some((_, errs)) => errs.push(err.clone()),
                None => grouped.push((path.clone(), vec![err.clone()])),
            }
        }
        let details: Vec<Value> = grouped
            .into_iter()
            .map(|(path, errors)| json!({"path": path, "errors": errors}))
            .collect();
        json!({"message": message, "details": details})
    }
}

/// The PathId segment pattern, printed in the validation message (state/PathId.scala).
pub(crate) const ID_SEGMENT_PATTERN: &str = r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])|(\.|\.\.)$";

/// Last segments Marathon reserves for its own sub-resources (state/PathId.scala).
const RESERVED: [&str; 5] = ["restart", "tasks", "versions", ".", ".."];

/// Fields Marathon computes and ignores on input (AppInfo and read-only RAML fields).
pub(crate) const SERVER_FIELDS: [&str; 13] = [
    "version",
    "versionInfo",
    "tasks",
    "tasksStaged",
    "tasksRunning",
    "tasksHealthy",
    "tasksUnhealthy",
    "deployments",
    "lastTaskFailure",
    "readinessCheckResults",
    "tasksStats",
    "taskStats",
    "role",
];

fn label_ok(l: &str) -> bool {
    let b = l.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether one path segment fully matches `ID_SEGMENT_PATTERN`.
pub(crate) fn segment_ok(s: &str) -> bool {
    s == "." || s == ".." || s.split('.').all(label_ok)
}

/// `foo/bar` → `/foo/bar` (Marathon makes ids absolute against the root group).
pub(crate) fn absolute_id(id: &str) -> String {
    let segs: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", segs.join("/"))
}

/// Validation errors for an app id (path `/id`).
pub(crate) fn id_errors(id: &str) -> Vec<(String, String)> {
    let segs: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
    let mut errs = Vec::new();
    if segs.is_empty() {
        errs.push((
            "/id".to_string(),
            "Path must contain at least one path element".to_string(),
        ));
        return errs;
    }
    if !segs.iter().all(|s| segment_ok(s)) {
        errs.push((
            "/id".to_string(),
            format!("must fully match regular expression '{ID_SEGMENT_PATTERN}'"),
        ));
    }
    if segs.last().is_some_and(|l| RESERVED.contains(l)) {
        errs.push((
            "/id".to_string(),
            format!(
                "must not end with any of the following reserved keywords: {}",
                RESERVED.join(", ")
            ),
        ));
    }
    errs
}

/// Play-JSON style type errors for the fields Marathon reads with a fixed type.
pub(crate) fn type_errors(app: &Map<String, Value>) -> Vec<(String, String)> {
    const STRINGS: [&str; 4] = ["id", "cmd", "executor", "killSelection"];
    const NUMBERS: [&str; 8] = [
        "instances",
        "cpus",
        "mem",
        "disk",
        "gpus",
        "backoffSeconds",
        "backoffFactor",
        "maxLaunchDelaySeconds",
    ];
    const OBJECTS: [&str; 5] = [
        "env",
        "labels",
        "container",
        "upgradeStrategy",
        "unreachableStrategy",
    ];
    const ARRAYS: [&str; 10] = [
        "args",
        "constraints",
        "healthChecks",
        "portDefinitions",
        "ports",
        "uris",
        "fetch",
        "dependencies",
        "networks",
        "storeUrls",
    ];
    let mut errs = Vec::new();
    for (k, v) in app {
        if v.is_null() {
            continue;
        }
        let expected = if STRINGS.contains(&k.as_str()) && !v.is_string() {
            Some("error.expected.jsstring")
        } else if NUMBERS.contains(&k.as_str()) && !v.is_number() {
            Some("error.expected.jsnumber")
        } else if OBJECTS.contains(&k.as_str()) && !v.is_object() {
            Some("error.expected.jsobject")
        } else if ARRAYS.contains(&k.as_str()) && !v.is_array() {
            Some("error.expected.jsarray")
        } else if k == "requirePorts" && !v.is_boolean() {
            Some("error.expected.jsboolean")
        } else {
            None
        };
        if let Some(e) = expected {
            errs.push((format!("/{k}"), e.to_string()));
        }
    }
    if let Some(n) = app.get("instances").filter(|v| v.is_number()) {
        if n.as_i64().is_none() && n.as_f64().is_some_and(|f| f.fract() != 0.0) {
            errs.push(("/instances".into(), "error.expected.int".into()));
        }
    }
    errs
}

/// Semantic validation (AppValidation.scala) of a definition whose types are right.
pub(crate) fn validation_errors(app: &Map<String, Value>) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    if let Some(id) = app.get("id").and_then(Value::as_str) {
        errs.extend(id_errors(id));
    } else {
        errs.push(("/id".into(), "error.path.missing".into()));
    }
    if let Some(n) = app.get("instances").and_then(Value::as_f64) {
        if n < 0.0 {
            errs.push((
                "/instances".into(),
                format!("got {}, expected 0 or more", n as i64),
            ));
        }
    }
    for k in ["cpus", "mem", "disk"] {
        if app.get(k).and_then(Value::as_f64).is_some_and(|f| f < 0.0) {
            errs.push((
                format!("/{k}"),
                "got a negative value, expected 0 or more".into(),
            ));
        }
    }
    let non_empty = |k: &str| match app.get(k) {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        _ => false,
    };
    let cmd = non_empty("cmd");
    let args = non_empty("args");
    let container = app.get("container").is_some_and(Value::is_object);
    // Exactly one of cmd/args, or neither with a container (AppValidation.containsCmdArgsOrContainer).
    if !((cmd ^ args) || (!(cmd || args) && container)) {
        errs.push((
            "/".into(),
            "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."
                .into(),
        ));
    }
    if let Some(us) = app.get("upgradeStrategy").and_then(Value::as_object) {
        for k in ["minimumHealthCapacity", "maximumOverCapacity"] {
            if let Some(f) = us.get(k).and_then(Value::as_f64) {
                if f > 1.0 {
                    errs.push((format!("/upgradeStrategy/{k}"), "is greater than 1".into()));
                } else if f < 0.0 {
                    errs.push((format!("/upgradeStrategy/{k}"), "is less than 0".into()));
                }
            }
        }
    }
    errs
}

/// Allocates service ports (10000-20000, as `--local_port_min/max`).
pub(crate) trait PortAllocator {
    fn service_port(&mut self) -> u64;
}

fn set_default(m: &mut Map<String, Value>, k: &str, v: Value) {
    if m.get(k).is_none_or(Value::is_null) {
        m.insert(k.to_string(), v);
    }
}

fn as_float(m: &mut Map<String, Value>, k: &str) {
    if let Some(f) = m.get(k).and_then(Value::as_f64) {
        m.insert(k.to_string(), json!(f));
    }
}

/// Normalizes a valid definition the way Marathon stores and answers it.
pub(crate) fn normalize(
    mut app: Map<String, Value>,
    ports: &mut dyn PortAllocator,
) -> Map<String, Value> {
    for k in SERVER_FIELDS {
        app.remove(k);
    }
    app.retain(|_, v| !v.is_null());
    let id = absolute_id(app.get("id").and_then(Value::as_str).unwrap_or(""));
    app.insert("id".into(), json!(id));

    convert_14_networking(&mut app);

    set_default(&mut app, "instances", json!(1));
    set_default(&mut app, "cpus", json!(1.0));
    set_default(&mut app, "mem", json!(128.0));
    set_default(&mut app, "disk", json!(0.0));
    set_default(&mut app, "gpus", json!(0));
    // Doubles come back as doubles: `"mem": 16` is answered as `16.0`.
    for k in ["cpus", "mem", "disk"] {
        as_float(&mut app, k);
    }
    if let Some(i) = app.get("instances").and_then(Value::as_f64) {
        app.insert("instances".into(), json!(i as i64));
    }
    set_default(&mut app, "executor", json!(""));
    set_default(&mut app, "requirePorts", json!(false));
    set_default(&mut app, "killSelection", json!("YOUNGEST_FIRST"));
    set_default(&mut app, "backoffSeconds", json!(1));
    set_default(&mut app, "backoffFactor", json!(1.15));
    // 3600 up to 1.7 (1.8 changed it to 300; reference §1.3).
    set_default(&mut app, "maxLaunchDelaySeconds", json!(3600));
    let mut us = app
        .get("upgradeStrategy")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    set_default(&mut us, "minimumHealthCapacity", json!(1.0));
    set_default(&mut us, "maximumOverCapacity", json!(1.0));
    as_float(&mut us, "minimumHealthCapacity");
    as_float(&mut us, "maximumOverCapacity");
    app.insert("upgradeStrategy".into(), Value::Object(us));
    let mut unr = app
        .get("unreachableStrategy")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    set_default(&mut unr, "inactiveAfterSeconds", json!(0));
    set_default(&mut unr, "expungeAfterSeconds", json!(0));
    app.insert("unreachableStrategy".into(), Value::Object(unr));
    for k in ["labels", "env"] {
        set_default(&mut app, k, json!({}));
    }
    for k in ["constraints", "dependencies", "healthChecks"] {
        set_default(&mut app, k, json!([]));
    }
    migrate_uris(&mut app);
    normalize_health_checks(&mut app);
    normalize_container(&mut app);
    normalize_ports(&mut app, ports);
    app
}

/// 1.4 networking (`container.docker.network`, `docker.portMappings`, `ipAddress`) → 1.5
/// (`networks`, `container.portMappings`): "1.5+ will always reply with the 1.5 version".
fn convert_14_networking(app: &mut Map<String, Value>) {
    let ip_network = app.remove("ipAddress").and_then(|ip| {
        ip.get("networkName")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let mut networks: Option<Value> = None;
    if let Some(docker) = app
        .get_mut("container")
        .and_then(|c| c.get_mut("docker"))
        .and_then(Value::as_object_mut)
    {
        let network = docker.remove("network");
        let mappings = docker.remove("portMappings");
        networks = match network.as_ref().and_then(Value::as_str) {
            Some("BRIDGE") => Some(json!([{"mode": "container/bridge"}])),
            Some("USER") => Some(match &ip_network {
                Some(n) => json!([{"mode": "container", "name": n}]),
                None => json!([{"mode": "container"}]),
            }),
            Some("HOST") => Some(json!([{"mode": "host"}])),
            _ => None,
        };
        if let Some(m) = mappings.filter(|m| !m.is_null()) {
            if let Some(c) = app.get_mut("container").and_then(Value::as_object_mut) {
                c.entry("portMappings").or_insert(m);
            }
        }
    }
    if let Some(n) = networks {
        app.entry("networks").or_insert(n);
    } else if let Some(n) = ip_network {
        app.entry("networks")
            .or_insert(json!([{"mode": "container", "name": n}]));
    }
    let empty = app
        .get("networks")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty());
    if empty {
        app.insert("networks".into(), json!([{"mode": "host"}]));
    }
}

fn migrate_uris(app: &mut Map<String, Value>) {
    if let Some(Value::Array(uris)) = app.remove("uris") {
        if !uris.is_empty() || app.get("fetch").is_none() {
            let fetch: Vec<Value> = uris
                .iter()
                .filter_map(Value::as_str)
                .map(|u| {
                    let extract = [
                        ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz", ".zip",
                    ]
                    .iter()
                    .any(|e| u.ends_with(e));
                    json!({"uri": u, "extract": extract, "executable": false, "cache": false})
                })
                .collect();
            app.insert("fetch".into(), Value::Array(fetch));
        }
    }
    set_default(app, "fetch", json!([]));
    app.remove("storeUrls");
}

fn normalize_health_checks(app: &mut Map<String, Value>) {
    let Some(Value::Array(hcs)) = app.get_mut("healthChecks") else {
        return;
    };
    for hc in hcs.iter_mut().filter_map(Value::as_object_mut) {
        set_default(hc, "protocol", json!("HTTP"));
        let proto = hc["protocol"].as_str().unwrap_or("HTTP").to_string();
        set_default(hc, "gracePeriodSeconds", json!(300));
        set_default(hc, "intervalSeconds", json!(60));
        set_default(hc, "timeoutSeconds", json!(20));
        set_default(hc, "maxConsecutiveFailures", json!(3));
        set_default(hc, "delaySeconds", json!(15));
        if proto.contains("HTTP") {
            set_default(hc, "path", json!("/"));
            set_default(hc, "ignoreHttp1xx", json!(false));
            set_default(hc, "ipProtocol", json!("IPv4"));
        }
        if proto != "COMMAND" && hc.get("port").is_none() && hc.get("portIndex").is_none() {
            hc.insert("portIndex".into(), json!(0));
        }
    }
}

fn normalize_container(app: &mut Map<String, Value>) {
    let Some(c) = app.get_mut("container").and_then(Value::as_object_mut) else {
        return;
    };
    set_default(c, "type", json!("DOCKER"));
    set_default(c, "volumes", json!([]));
    if let Some(d) = c.get_mut("docker").and_then(Value::as_object_mut) {
        set_default(d, "forcePullImage", json!(false));
        set_default(d, "privileged", json!(false));
        set_default(d, "parameters", json!([]));
    }
}

fn is_host_networking(app: &Map<String, Value>) -> bool {
    app.get("networks")
        .and_then(Value::as_array)
        .is_none_or(|ns| {
            ns.iter()
                .all(|n| n.get("mode").and_then(Value::as_str) == Some("host"))
        })
}

fn normalize_ports(app: &mut Map<String, Value>, ports: &mut dyn PortAllocator) {
    let legacy = app.remove("ports");
    if is_host_networking(app) {
        if app.get("portDefinitions").is_none() {
            let defs = match legacy.as_ref().and_then(Value::as_array) {
                Some(ps) => ps
                    .iter()
                    .map(|p| json!({"port": p.as_u64().unwrap_or(0), "protocol": "tcp"}))
                    .collect(),
                None => vec![json!({"port": 0, "name": "default", "protocol": "tcp"})],
            };
            app.insert("portDefinitions".into(), Value::Array(defs));
        }
        if let Some(Value::Array(defs)) = app.get_mut("portDefinitions") {
            for d in defs.iter_mut().filter_map(Value::as_object_mut) {
                if d.get("port").and_then(Value::as_u64).unwrap_or(0) == 0 {
                    d.insert("port".into(), json!(ports.service_port()));
                }
                set_default(d, "protocol", json!("tcp"));
            }
        }
        if let Some(c) = app.get_mut("container").and_then(Value::as_object_mut) {
            c.remove("portMappings");
        }
        return;
    }
    app.remove("portDefinitions");
    let bridge = app
        .get("networks")
        .and_then(Value::as_array)
        .is_some_and(|ns| ns.iter().any(|n| n["mode"] == "container/bridge"));
    let Some(c) = app.get_mut("container").and_then(Value::as_object_mut) else {
        return;
    };
    if c.get("portMappings").is_none() && bridge {
        c.insert(
            "portMappings".into(),
            json!([{"containerPort": 0, "hostPort": 0, "name": "default", "protocol": "tcp"}]),
        );
    }
    if let Some(Value::Array(pms)) = c.get_mut("portMappings") {
        for pm in pms.iter_mut().filter_map(Value::as_object_mut) {
            if pm.get("servicePort").and_then(Value::as_u64).unwrap_or(0) == 0 {
                pm.insert("servicePort".into(), json!(ports.service_port()));
            }
            set_default(pm, "protocol", json!("tcp"));
            if bridge {
                set_default(pm, "hostPort", json!(0));
            }
        }
    }
}

/// Service ports of a normalized app (portDefinitions or container.portMappings), in order.
pub(crate) fn service_ports(app: &Map<String, Value>) -> Vec<u64> {
    let from = |v: Option<&Value>, key: &str| -> Vec<u64> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.get(key).and_then(Value::as_u64))
                    .collect()
            })
            .unwrap_or_default()
    };
    if is_host_networking(app) {
        from(app.get("portDefinitions"), "port")
    } else {
        from(
            app.get("container").and_then(|c| c.get("portMappings")),
            "servicePort",
        )
    }
}

/// Non-zero service ports a raw (not yet normalized) definition asks for.
pub(crate) fn explicit_service_ports(app: &Map<String, Value>) -> Vec<u64> {
    let mut out = Vec::new();
    let mut collect = |v: Option<&Value>, key: &str| {
        for p in v.and_then(Value::as_array).into_iter().flatten() {
            let n = if key.is_empty() {
                p.as_u64()
            } else {
                p.get(key).and_then(Value::as_u64)
            };
            out.extend(n.filter(|n| *n != 0));
        }
    };
    collect(app.get("portDefinitions"), "port");
    collect(app.get("ports"), "");
    let container = app.get("container");
    collect(container.and_then(|c| c.get("portMappings")), "servicePort");
    collect(
        container
            .and_then(|c| c.get("docker"))
            .and_then(|d| d.get("portMappings")),
        "servicePort",
    );
    out
}

/// Host ports a task needs: one per port definition, or per port mapping that asks for a host
/// port (bridge mode); a fixed non-zero `hostPort` is kept.
pub(crate) fn host_port_requests(app: &Map<String, Value>) -> Vec<u64> {
    if is_host_networking(app) {
        let n = app
            .get("portDefinitions")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        return vec![0; n];
    }
    app.get("container")
        .and_then(|c| c.get("portMappings"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|pm| pm.get("hostPort").and_then(Value::as_u64))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Seq(u64);
    impl PortAllocator for Seq {
        fn service_port(&mut self) -> u64 {
            self.0 += 1;
            self.0
        }
    }

    #[test]
    fn segments_follow_path_id_rules() {
        for ok in ["a", "a-b", "a.b", "0", "a1.b2-c", ".", ".."] {
            assert!(segment_ok(ok), "{ok}");
        }
        for bad in ["A", "-a", "a-", "a_b", "", "a..b", "a b"] {
            assert!(!segment_ok(bad), "{bad}");
        }
        assert_eq!(id_errors("/good/restart").len(), 1);
        assert_eq!(absolute_id("foo/bar/"), "/foo/bar");
    }

    #[test]
    fn fourteen_networking_is_answered_in_fifteen_form() {
        let app: Map<String, Value> = serde_json::from_value(json!({
            "id": "web", "cmd": "x",
            "container": {"type": "DOCKER", "docker": {"image": "i", "network": "BRIDGE",
                "portMappings": [{"containerPort": 80, "hostPort": 0}]}}
        }))
        .unwrap();
        let n = normalize(app, &mut Seq(9999));
        assert_eq!(n["networks"], json!([{"mode": "container/bridge"}]));
        assert_eq!(
            n["container"]["portMappings"],
            json!([{"containerPort": 80, "hostPort": 0, "servicePort": 10000, "protocol": "tcp"}])
        );
        assert!(n["container"]["docker"].get("network").is_none());
        assert!(n.get("portDefinitions").is_none());
    }
}
