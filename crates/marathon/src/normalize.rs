//! Normalization for diffs: turn a desired definition (from Git) and a live one (from the server)
//! into comparable values, so that an unchanged config compares equal to what the server returns
//! (reference §1.3 "Fields Marathon adds on GET", "Defaults Marathon fills in", 1.4 vs 1.5
//! networking; §3 Chronos counters and schedule rewriting).
//!
//! The rules, applied to both sides the same way:
//! - server-only fields are dropped (`version`, `versionInfo`, task counts, `deployments`, ...);
//! - ids are absolute; 1.4 networking (`container.docker.network`, `docker.portMappings`,
//!   `ipAddress.networkName`) is rewritten into the 1.5 form; `uris` become `fetch`; `ports`
//!   become `portDefinitions`;
//! - documented defaults are filled in (`instances:1`, `cpus:1`, `mem:128`, health check
//!   defaults, ...);
//! - numbers that are whole are integers (`32` = `32.0`);
//! - members that are `null`, `false`, `0`, `""`, `[]` or `{}` are dropped (after defaults are
//!   filled, so a non-default value never disappears), except inside `env` and `labels` and
//!   except fields whose default is not falsy (`instances: 0` is a scaled-down app, not "the
//!   default": it stays, and a diff shows `instances: 0 -> 2`);
//! - set-like arrays (`constraints`, `healthChecks`, `dependencies`, `acceptedResourceRoles`,
//!   Chronos `parents` and `environmentVariables`) are sorted.
//!
//! Then the live side is masked: values the server assigns or whose default differs between
//! versions are ignored unless the desired side sets them (`role`, `maxLaunchDelaySeconds`,
//! `unreachableStrategy`, assigned `portDefinitions`/`servicePort`s, fetch `extract`, ...), and
//! unknown live-only top-level fields are ignored (a newer server's additions must not cause an
//! update on every run). Removing such a field in Git is applied with the next real change (the
//! PUT replaces the whole definition).

use serde_json::{Map, Number, Value};

use crate::app::{absolute_id, parent_of};
use crate::schedule;

/// Fields Marathon adds on GET that are not part of a definition.
const APP_SERVER_FIELDS: &[&str] = &[
    "version",
    "versionInfo",
    "tasksStaged",
    "tasksRunning",
    "tasksHealthy",
    "tasksUnhealthy",
    "deployments",
    "tasks",
    "lastTaskFailure",
    "readinessCheckResults",
    "tasksStats",
    "taskStats",
    "counts",
    "overdue",
];

/// Top-level app fields a person sets and whose removal must be applied.
const APP_USER_FIELDS: &[&str] = &[
    "id",
    "cmd",
    "args",
    "user",
    "env",
    "instances",
    "cpus",
    "mem",
    "disk",
    "gpus",
    "executor",
    "constraints",
    "fetch",
    "storeUrls",
    "requirePorts",
    "backoffSeconds",
    "backoffFactor",
    "container",
    "healthChecks",
    "readinessChecks",
    "dependencies",
    "upgradeStrategy",
    "labels",
    "acceptedResourceRoles",
    "ipAddress",
    "residency",
    "secrets",
    "taskKillGracePeriodSeconds",
    "killSelection",
    "networks",
    "check",
    "tty",
];

/// Chronos fields that only the server maintains.
const JOB_SERVER_FIELDS: &[&str] = &[
    "successCount",
    "errorCount",
    "lastSuccess",
    "lastError",
    "errorsSinceLastSuccess",
];

/// Chronos fields a person sets and whose removal must be applied.
const JOB_USER_FIELDS: &[&str] = &[
    "name",
    "command",
    "arguments",
    "schedule",
    "scheduleTimeZone",
    "parents",
    "container",
    "constraints",
    "environmentVariables",
    "fetch",
    "uris",
    "description",
    "owner",
    "ownerName",
    "disabled",
    "concurrent",
    "softError",
    "highPriority",
    "dataProcessingJobType",
    "shell",
    "retries",
    "executor",
    "executorFlags",
    "maxCompletionTime",
    "taskInfoData",
];

fn set_default(obj: &mut Map<String, Value>, key: &str, value: Value) {
    match obj.get(key) {
        None | Some(Value::Null) => {
            obj.insert(key.to_string(), value);
        }
        _ => {}
    }
}

/// `32.0` → `32`; recursively.
fn integral_numbers(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    *n = Number::from(f as i64);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(integral_numbers),
        Value::Object(m) => m.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// App fields with a non-falsy default (filled in by [`canonical_app`]): a falsy value there is
/// a real setting (`instances: 0`, `minimumHealthCapacity: 0`, `maxConsecutiveFailures: 0`) and
/// is kept, so both sides show it.
const APP_KEEP_FALSY: &[&str] = &[
    "instances",
    "cpus",
    "mem",
    "backoffSeconds",
    "backoffFactor",
    "minimumHealthCapacity",
    "maximumOverCapacity",
    "gracePeriodSeconds",
    "intervalSeconds",
    "timeoutSeconds",
    "maxConsecutiveFailures",
    "delaySeconds",
];

fn is_falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

/// Drops falsy members (see the module doc) and sorts keys; recursively. `keep_members` marks
/// the objects whose members are user data and are kept as they are; `keep_falsy` names the
/// members kept even when falsy.
fn strip_and_sort(v: &mut Value, keep_members: bool, keep_falsy: &[&str]) {
    match v {
        Value::Array(a) => a
            .iter_mut()
            .for_each(|e| strip_and_sort(e, false, keep_falsy)),
        Value::Object(m) => {
            // In place: sorting and dropping members of a 10,000-app list must not rebuild
            // (and rehash) every map (issue 13).
            m.sort_keys();
            if keep_members {
                return;
            }
            m.retain(|k, val| {
                let user_map = matches!(k.as_str(), "env" | "labels");
                strip_and_sort(val, user_map, keep_falsy);
                !(is_falsy(val) && (val.is_null() || !keep_falsy.contains(&k.as_str())))
            });
        }
        _ => {}
    }
}

fn sort_array(obj: &mut Map<String, Value>, key: &str) {
    if let Some(Value::Array(a)) = obj.get_mut(key) {
        a.sort_by_cached_key(|v| v.to_string());
    }
}

fn obj_mut<'a>(obj: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    obj.get_mut(key).and_then(Value::as_object_mut)
}

/// The 1.4 → 1.5 networking migration (docs/docs/upgrade/network-api-migration.md).
fn migrate_networking(app: &mut Map<String, Value>) {
    let mut networks: Option<Value> = None;
    let mut mappings: Option<Value> = None;
    let network_name = app
        .get("ipAddress")
        .and_then(|i| i.get("networkName"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(container) = obj_mut(app, "container") {
        if let Some(docker) = obj_mut(container, "docker") {
            if let Some(Value::String(net)) = docker.remove("network") {
                networks = Some(match net.to_ascii_uppercase().as_str() {
                    "BRIDGE" => serde_json::json!([{"mode": "container/bridge"}]),
                    "USER" => match &network_name {
                        Some(n) => serde_json::json!([{"mode": "container", "name": n}]),
                        None => serde_json::json!([{"mode": "container"}]),
                    },
                    _ => serde_json::json!([{"mode": "host"}]),
                });
            }
            mappings = docker.remove("portMappings");
        }
        if let Some(m) = mappings {
            if container.get("portMappings").is_none_or(Value::is_null) {
                container.insert("portMappings".into(), m);
            }
        }
    }
    if let Some(n) = networks {
        if app.get("networks").is_none_or(Value::is_null) {
            app.insert("networks".into(), n);
        }
        if let Some(ip) = obj_mut(app, "ipAddress") {
            ip.remove("networkName");
        }
    }
}

/// A Marathon app made comparable (see the module doc). Not an object → returned as is.
pub fn canonical_app(app: &Value) -> Value {
    canonical_app_owned(app.clone())
}

/// [`canonical_app`] of an app the caller no longer needs: normalized in place, no copy (the
/// live list of 10,000 apps is reduced this way as it is read).
pub fn canonical_app_owned(app: Value) -> Value {
    let Value::Object(mut a) = app else {
        return app;
    };
    for f in APP_SERVER_FIELDS {
        a.remove(*f);
    }
    let id = match a.get("id") {
        Some(Value::String(s)) => absolute_id(s, "/"),
        _ => String::new(),
    };
    if !id.is_empty() {
        a.insert("id".into(), Value::String(id.clone()));
    }
    migrate_networking(&mut a);
    // uris → fetch (AppNormalization: uris are migrated into fetch).
    if let Some(Value::Array(uris)) = a.remove("uris") {
        let fetch = a.entry("fetch").or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(f) = fetch {
            if f.is_empty() {
                for u in uris {
                    f.push(serde_json::json!({ "uri": u }));
                }
            }
        }
    }
    // ports → portDefinitions.
    let ports = a.remove("ports");
    if a.get("portDefinitions").is_none_or(Value::is_null) {
        if let Some(Value::Array(ports)) = ports {
            let defs = ports
                .into_iter()
                .map(|p| serde_json::json!({ "port": p }))
                .collect();
            a.insert("portDefinitions".into(), Value::Array(defs));
        }
    }
    set_default(&mut a, "instances", 1.into());
    set_default(&mut a, "cpus", 1.into());
    set_default(&mut a, "mem", 128.into());
    set_default(&mut a, "backoffSeconds", 1.into());
    set_default(&mut a, "backoffFactor", serde_json::json!(1.15));
    set_default(&mut a, "killSelection", "YOUNGEST_FIRST".into());
    set_default(&mut a, "networks", serde_json::json!([{"mode": "host"}]));
    if a.get("residency").is_none_or(Value::is_null) {
        set_default(&mut a, "upgradeStrategy", serde_json::json!({}));
        if let Some(u) = obj_mut(&mut a, "upgradeStrategy") {
            set_default(u, "minimumHealthCapacity", 1.into());
            set_default(u, "maximumOverCapacity", 1.into());
        }
    }
    let bridge_like = a
        .get("networks")
        .and_then(Value::as_array)
        .is_some_and(|ns| {
            ns.iter()
                .any(|n| n.get("mode").and_then(Value::as_str) == Some("container/bridge"))
        });
    if let Some(Value::Array(ns)) = a.get_mut("networks") {
        for n in ns.iter_mut().filter_map(Value::as_object_mut) {
            set_default(n, "mode", "container".into());
        }
    }
    if let Some(c) = obj_mut(&mut a, "container") {
        set_default(c, "type", "DOCKER".into());
        if let Some(Value::Array(pms)) = c.get_mut("portMappings") {
            for pm in pms.iter_mut().filter_map(Value::as_object_mut) {
                set_default(pm, "protocol", "tcp".into());
                if bridge_like {
                    set_default(pm, "hostPort", 0.into());
                }
            }
        }
    }
    if let Some(Value::Array(pds)) = a.get_mut("portDefinitions") {
        for pd in pds.iter_mut().filter_map(Value::as_object_mut) {
            set_default(pd, "protocol", "tcp".into());
        }
    }
    if let Some(Value::Array(hcs)) = a.get_mut("healthChecks") {
        for hc in hcs.iter_mut().filter_map(Value::as_object_mut) {
            set_default(hc, "protocol", "HTTP".into());
            set_default(hc, "gracePeriodSeconds", 300.into());
            set_default(hc, "intervalSeconds", 60.into());
            set_default(hc, "timeoutSeconds", 20.into());
            set_default(hc, "maxConsecutiveFailures", 3.into());
            set_default(hc, "delaySeconds", 15.into());
            set_default(hc, "ipProtocol", "IPv4".into());
            let command = hc.get("protocol").and_then(Value::as_str) == Some("COMMAND");
            if !command && hc.get("port").is_none_or(Value::is_null) {
                set_default(hc, "portIndex", 0.into());
            }
        }
    }
    if let Some(Value::Array(fetch)) = a.get_mut("fetch") {
        for f in fetch.iter_mut() {
            if let Value::String(u) = f {
                *f = serde_json::json!({ "uri": u });
            }
        }
    }
    if let Some(Value::Array(deps)) = a.get_mut("dependencies") {
        let base = parent_of(&id).to_string();
        for d in deps.iter_mut() {
            if let Value::String(s) = d {
                *s = absolute_id(s, &base);
            }
        }
    }
    for key in [
        "constraints",
        "healthChecks",
        "dependencies",
        "acceptedResourceRoles",
    ] {
        sort_array(&mut a, key);
    }
    let mut v = Value::Object(a);
    integral_numbers(&mut v);
    strip_and_sort(&mut v, false, APP_KEEP_FALSY);
    // Sorting health checks again: stripping changed their serialization.
    if let Some(obj) = v.as_object_mut() {
        sort_array(obj, "healthChecks");
        sort_array(obj, "constraints");
    }
    v
}

/// Removes from `live` what the server assigns when `desired` leaves it out (see module doc).
fn mask_live_app(desired: &Map<String, Value>, live: &mut Map<String, Value>) {
    let keys: Vec<String> = live.keys().cloned().collect();
    for k in keys {
        if !desired.contains_key(&k) && !APP_USER_FIELDS.contains(&k.as_str()) {
            live.remove(&k);
        }
    }
    mask_ports(
        desired.get("portDefinitions"),
        live,
        "portDefinitions",
        "port",
    );
    if let (Some(dc), Some(lc)) = (
        desired.get("container").and_then(Value::as_object),
        obj_mut(live, "container"),
    ) {
        mask_ports(dc.get("portMappings"), lc, "portMappings", "servicePort");
    } else if desired.get("container").is_none() {
        if let Some(lc) = obj_mut(live, "container") {
            lc.remove("portMappings");
        }
    }
    if let (Some(Value::Array(df)), Some(Value::Array(lf))) =
        (desired.get("fetch"), live.get_mut("fetch"))
    {
        for (d, l) in df.iter().zip(lf.iter_mut()) {
            if d.get("extract").is_none() {
                if let Some(l) = l.as_object_mut() {
                    l.remove("extract");
                }
            }
        }
    }
}

/// Port lists: the whole list when the desired side has none (the server adds a default port),
/// and per entry the assigned port and the default name.
fn mask_ports(desired: Option<&Value>, live: &mut Map<String, Value>, list: &str, port: &str) {
    match (desired, live.get_mut(list)) {
        (None, Some(_)) => {
            live.remove(list);
        }
        (Some(Value::Array(d)), Some(Value::Array(l))) => {
            for (de, le) in d.iter().zip(l.iter_mut()) {
                let Some(le) = le.as_object_mut() else {
                    continue;
                };
                if de.get(port).is_none() {
                    le.remove(port);
                }
                if de.get("name").is_none()
                    && le.get("name").and_then(Value::as_str) == Some("default")
                {
                    le.remove("name");
                }
            }
        }
        _ => {}
    }
}

/// Desired and live apps as comparable values: equal exactly when nothing needs writing.
pub fn comparable_apps(desired: &Value, live: &Value) -> (Value, Value) {
    comparable_apps_canonical(desired, &canonical_app(live))
}

/// Like [`comparable_apps`], with the live app already passed through [`canonical_app`] (so a
/// long app list can be reduced as it is read, see `Marathon::list_apps_map`).
pub fn comparable_apps_canonical(desired: &Value, live_canonical: &Value) -> (Value, Value) {
    let d = canonical_app(desired);
    let mut l = live_canonical.clone();
    if let (Some(dm), Some(lm)) = (d.as_object(), l.as_object_mut()) {
        mask_live_app(dm, lm);
    }
    (d, l)
}

/// True when a live app (through [`canonical_app`]) matches a desired one (through
/// [`canonical_app`]) once masked as [`comparable_apps_canonical`] masks it: the same answer as
/// comparing the two values that function returns, without copying the live app (only its
/// `portDefinitions`, `container` and `fetch`, which the mask edits). For a run over 10,000
/// unchanged apps the copy was most of the work (issue 13).
pub fn canonical_apps_match(desired: &Value, live: &Value) -> bool {
    let (Some(d), Some(l)) = (desired.as_object(), live.as_object()) else {
        return desired == live;
    };
    for (k, lv) in l {
        let dv = d.get(k);
        if dv.is_none() && !APP_USER_FIELDS.contains(&k.as_str()) {
            continue;
        }
        let masked;
        let lv = if mask_edits(k, d, lv) {
            let mut one = Map::new();
            one.insert(k.clone(), lv.clone());
            mask_live_app(d, &mut one);
            match one.remove(k) {
                Some(v) => {
                    masked = v;
                    &masked
                }
                None => continue,
            }
        } else {
            lv
        };
        if dv != Some(lv) {
            return false;
        }
    }
    d.keys().all(|k| l.contains_key(k))
}

/// Whether [`mask_live_app`] can change the live member `key` (so it must be compared masked):
/// `portDefinitions` the desired side lists, a `container` with `portMappings`, a `fetch` list
/// when the desired side has one. Anything else compares as it is.
fn mask_edits(key: &str, desired: &Map<String, Value>, live: &Value) -> bool {
    match key {
        "portDefinitions" | "fetch" => desired.contains_key(key),
        "container" => live.get("portMappings").is_some(),
        _ => false,
    }
}

/// True when `live` already matches `desired`.
pub fn apps_equal(desired: &Value, live: &Value) -> bool {
    let l = canonical_app(live);
    let fast = canonical_apps_match(&canonical_app(desired), &l);
    // Every test that compares apps also checks the fast path against the masked copies.
    debug_assert_eq!(
        fast,
        {
            let (d, l) = comparable_apps_canonical(desired, &l);
            d == l
        },
        "canonical_apps_match disagrees with comparable_apps_canonical"
    );
    fast
}

/// A Chronos job made comparable (see the module doc).
pub fn canonical_job(job: &Value) -> Value {
    let Some(src) = job.as_object() else {
        return job.clone();
    };
    let mut j = src.clone();
    for f in JOB_SERVER_FIELDS {
        j.remove(*f);
    }
    // Chronos accepts "0.5" for cpus/mem/disk (its docs' own example) and answers numbers.
    for k in ["cpus", "mem", "disk"] {
        if let Some(Value::String(s)) = j.get(k) {
            if let Ok(f) = s.trim().parse::<f64>() {
                if let Some(n) = Number::from_f64(f) {
                    j.insert(k.into(), Value::Number(n));
                }
            }
        }
    }
    set_default(&mut j, "shell", true.into());
    set_default(&mut j, "retries", 2.into());
    if let Some(c) = obj_mut(&mut j, "container") {
        set_default(c, "type", "DOCKER".into());
        set_default(c, "network", "HOST".into());
    }
    if let Some(Value::Array(envs)) = j.get_mut("environmentVariables") {
        envs.sort_by_cached_key(|e| {
            e.get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        });
    }
    sort_array(&mut j, "parents");
    sort_array(&mut j, "constraints");
    // A dependent job has no schedule; an empty one is the same as none.
    let mut v = Value::Object(j);
    integral_numbers(&mut v);
    strip_and_sort(&mut v, false, &[]);
    v
}

/// Desired and live jobs as comparable values. Version-dependent fields (`epsilon`, `async`:
/// gone in Chronos 3) and server-defaulted ones (`cpus`, `mem`, `disk`, `runAsUser`) only count
/// when both sides have them or the desired side sets them. The schedule counts as equal when
/// Chronos only advanced it (see [`schedule::same_schedule`]).
pub fn comparable_jobs(desired: &Value, live: &Value) -> (Value, Value) {
    let mut d = canonical_job(desired);
    let mut l = canonical_job(live);
    if let (Some(dm), Some(lm)) = (d.as_object_mut(), l.as_object_mut()) {
        for k in ["epsilon", "async"] {
            if !lm.contains_key(k) {
                dm.remove(k);
            }
        }
        let keys: Vec<String> = lm.keys().cloned().collect();
        for k in keys {
            if !dm.contains_key(&k) && !JOB_USER_FIELDS.contains(&k.as_str()) {
                lm.remove(&k);
            }
        }
        if let (Some(Value::String(ds)), Some(Value::String(ls))) =
            (dm.get("schedule"), lm.get("schedule"))
        {
            if schedule::same_schedule(ds, ls) {
                let ds = ds.clone();
                lm.insert("schedule".into(), Value::String(ds));
            }
        }
    }
    (d, l)
}

/// True when the live job already matches the desired one.
pub fn jobs_equal(desired: &Value, live: &Value) -> bool {
    let (d, l) = comparable_jobs(desired, live);
    d == l
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(path: &str) -> Value {
        let p = format!("{}/../../fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    /// What a Marathon 1.5 server answers for the docs' simple app (reference §1.3 defaults).
    fn served_simple() -> Value {
        json!({"id":"/simple","instances":2,"cmd":"sleep 1000","cpus":0.1,"disk":0.0,"mem":16.0,
            "gpus":0,"executor":"","requirePorts":false,"backoffSeconds":1,"backoffFactor":1.15,
            "maxLaunchDelaySeconds":3600,"killSelection":"YOUNGEST_FIRST",
            "upgradeStrategy":{"minimumHealthCapacity":1.0,"maximumOverCapacity":1.0},
            "unreachableStrategy":{"inactiveAfterSeconds":0,"expungeAfterSeconds":0},
            "labels":{},"env":{},"constraints":[],"fetch":[],"dependencies":[],"healthChecks":[],
            "networks":[{"mode":"host"}],
            "portDefinitions":[{"port":10001,"name":"default","protocol":"tcp"}],
            "version":"2026-01-01T00:00:00.000Z",
            "versionInfo":{"lastScalingAt":"x","lastConfigChangeAt":"x"},
            "tasksStaged":0,"tasksRunning":2,"tasksHealthy":0,"tasksUnhealthy":0,
            "deployments":[],"role":"*"})
    }

    #[test]
    fn simple_app_equals_what_the_server_returns() {
        let desired = fixture("marathon/app-simple.json");
        assert!(apps_equal(&desired, &served_simple()));
    }

    #[test]
    fn a_changed_or_removed_field_is_a_difference() {
        let desired = fixture("marathon/app-simple.json");
        let mut live = served_simple();
        live["cmd"] = json!("sleep 2000");
        assert!(!apps_equal(&desired, &live));
        let mut live = served_simple();
        live["healthChecks"] = json!([{"protocol":"HTTP","path":"/"}]);
        assert!(!apps_equal(&desired, &live), "health check removed in Git");
        let mut live = served_simple();
        live["constraints"] = json!([["hostname", "UNIQUE"]]);
        assert!(!apps_equal(&desired, &live));
        let mut live = served_simple();
        live["instances"] = json!(1);
        assert!(!apps_equal(&desired, &live));
    }

    #[test]
    fn a_scaled_down_app_shows_its_zero() {
        // Issue 12 item 7: /sami/worker scaled to 0 in Marathon, 2 in Git.
        let desired = json!({"id":"/sami/worker","cmd":"w","instances":2,"cpus":0.1,"mem":16});
        let mut live = served_simple();
        live["id"] = json!("/sami/worker");
        live["cmd"] = json!("w");
        live["instances"] = json!(0);
        let (d, l) = comparable_apps(&desired, &live);
        let lines: Vec<String> = crate::diff::field_diff(&l, &d)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            lines.contains(&"instances: 0 -> 2".to_string()),
            "{lines:?}"
        );
        // Scaled to 0 in both: equal.
        let zero = json!({"id":"/sami/worker","cmd":"w","instances":0,"cpus":0.1,"mem":16});
        assert!(apps_equal(&zero, &live));
        // Not set in Git (default 1) vs 0 live: a change, shown as 0 -> 1.
        let unset = json!({"id":"/sami/worker","cmd":"w","cpus":0.1,"mem":16});
        let (d, l) = comparable_apps(&unset, &live);
        let lines: Vec<String> = crate::diff::field_diff(&l, &d)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(lines, vec!["instances: 0 -> 1"]);
        let mut hc = desired.clone();
        hc["upgradeStrategy"] = json!({"minimumHealthCapacity": 0});
        let (d, _) = comparable_apps(&hc, &live);
        assert_eq!(d["upgradeStrategy"]["minimumHealthCapacity"], json!(0));
    }

    #[test]
    fn docker_14_networking_matches_a_15_server() {
        let desired = json!({"id":"bridged-webapp","cmd":"python3 -m http.server 8080","cpus":0.5,
            "mem":64.0,"instances":2,"container":{"type":"DOCKER","docker":{"image":"python:3",
            "network":"BRIDGE","portMappings":[
              {"containerPort":8080,"hostPort":0,"servicePort":9000,"protocol":"tcp"},
              {"containerPort":161,"hostPort":0,"protocol":"udp"}]}},
            "healthChecks":[{"protocol":"HTTP","portIndex":0,"path":"/","gracePeriodSeconds":5,
              "intervalSeconds":20,"maxConsecutiveFailures":3}]});
        let mut live = fixture("marathon/app-docker-1.5.json");
        live["id"] = json!("/bridged-webapp");
        live["container"]["portMappings"][1]["servicePort"] = json!(10002);
        live["container"]["docker"]["forcePullImage"] = json!(false);
        live["container"]["docker"]["privileged"] = json!(false);
        live["container"]["docker"]["parameters"] = json!([]);
        live["container"]["volumes"] = json!([]);
        live["healthChecks"][0]["timeoutSeconds"] = json!(20);
        live["healthChecks"][0]["delaySeconds"] = json!(15);
        live["healthChecks"][0]["ipProtocol"] = json!("IPv4");
        live["healthChecks"][0]["ignoreHttp1xx"] = json!(false);
        live["version"] = json!("2026-01-01T00:00:00Z");
        let (d, l) = comparable_apps(&desired, &live);
        assert_eq!(d, l);
        live["container"]["portMappings"][0]["servicePort"] = json!(9001);
        assert!(!apps_equal(&desired, &live), "a fixed servicePort counts");
    }

    #[test]
    fn old_server_answer_matches_its_definition() {
        let live = fixture("marathon/get-app-response.json")["app"].clone();
        let desired = json!({"id":"myapp","cmd":"env && python -m SimpleHTTPServer $PORT0",
            "instances":2,"cpus":0.1,"mem":32,"ports":[0,1,2,3],
            "healthChecks":[
              {"path":"/custom","protocol":"HTTP","port":8123,"gracePeriodSeconds":10,"intervalSeconds":5,"timeoutSeconds":10},
              {"path":"/","protocol":"HTTP","portIndex":0,"gracePeriodSeconds":10,"intervalSeconds":5,"timeoutSeconds":10}],
            "labels":{"consul":"true","public":"tag"}});
        // The 0.x server predates delaySeconds/ipProtocol; defaults fill both sides alike.
        let (d, l) = comparable_apps(&desired, &live);
        assert_eq!(d, l);
    }

    /// The fast comparison (no copy of the live app) answers exactly what comparing the masked
    /// copies answers, over the masks' cases: assigned ports, default port names, fetch
    /// `extract`, live-only fields, removed containers (issue 13).
    #[test]
    fn fast_comparison_agrees_with_the_masked_copies() {
        let docker = json!({"id":"/w","cmd":"c","container":{"type":"DOCKER","docker":{"image":"i:1"},
            "portMappings":[{"containerPort":80},{"containerPort":81,"name":"admin","servicePort":9001}]},
            "networks":[{"mode":"container/bridge"}],"fetch":[{"uri":"http://x/a.tgz"}]});
        let mut lives = Vec::new();
        let mut live = docker.clone();
        live["container"]["portMappings"][0]["servicePort"] = json!(10000);
        live["container"]["portMappings"][0]["name"] = json!("default");
        live["container"]["portMappings"][1]["servicePort"] = json!(9001);
        live["fetch"][0]["extract"] = json!(true);
        live["role"] = json!("*");
        live["portDefinitions"] = json!([{"port": 10001, "name": "default"}]);
        lives.push(live.clone());
        let mut other = live.clone();
        other["container"]["portMappings"][1]["servicePort"] = json!(9002);
        lives.push(other);
        let mut other = live.clone();
        other["container"]["portMappings"][0]["name"] = json!("web");
        lives.push(other);
        let mut other = live.clone();
        other["fetch"][0]["extract"] = json!(false);
        lives.push(other);
        let mut other = live.clone();
        other["container"]["docker"]["image"] = json!("i:2");
        lives.push(other);
        let mut other = live.clone();
        other["env"] = json!({"A": "1"});
        lives.push(other);
        let mut other = live.clone();
        other.as_object_mut().unwrap().remove("fetch");
        lives.push(other);
        lives.push(served_simple());
        let mut desireds = vec![docker.clone(), fixture("marathon/app-simple.json")];
        let mut no_container = docker.clone();
        no_container.as_object_mut().unwrap().remove("container");
        desireds.push(no_container);
        let mut with_ports = fixture("marathon/app-simple.json");
        with_ports["portDefinitions"] = json!([{"port": 0}]);
        desireds.push(with_ports);
        let mut agreed = (0, 0);
        for d in &desireds {
            for l in &lives {
                let (dm, lm) = comparable_apps(d, l);
                let fast = canonical_apps_match(&canonical_app(d), &canonical_app(l));
                assert_eq!(fast, dm == lm, "desired {d}\nlive {l}");
                if fast {
                    agreed.0 += 1;
                } else {
                    agreed.1 += 1;
                }
            }
        }
        // Both answers occur: the cases are not all equal or all different.
        assert!(agreed.0 >= 2 && agreed.1 >= 10, "{agreed:?}");
    }

    #[test]
    fn unknown_live_fields_are_ignored_but_known_ones_count() {
        let desired = fixture("marathon/app-simple.json");
        let mut live = served_simple();
        live["someFutureField"] = json!({"x": 1});
        assert!(apps_equal(&desired, &live));
        live["acceptedResourceRoles"] = json!(["slave_public"]);
        assert!(!apps_equal(&desired, &live));
    }

    #[test]
    fn chronos_counters_and_string_numbers() {
        let desired = fixture("chronos/job-docker.json");
        let mut live = desired.clone();
        live["cpus"] = json!(0.5);
        live["mem"] = json!(512.0);
        live["successCount"] = json!(4);
        live["errorCount"] = json!(1);
        live["lastSuccess"] = json!("2026-11-24T10:00:00.000Z");
        live["lastError"] = json!("");
        live["epsilon"] = json!("PT60S");
        live["retries"] = json!(2);
        live["shell"] = json!(true);
        live["runAsUser"] = json!("root");
        live["disk"] = json!(256);
        live["schedule"] = json!("R/2026-11-24T22:02:00.000Z/PT2M");
        let (d, l) = comparable_jobs(&desired, &live);
        assert_eq!(d, l);
        live["command"] = json!("true");
        assert!(!jobs_equal(&desired, &live));
    }

    #[test]
    fn chronos_parents_are_a_set() {
        let d = json!({"name":"c","command":"x","parents":["a","b"]});
        let l = json!({"name":"c","command":"x","parents":["b","a"],"schedule":""});
        assert!(jobs_equal(&d, &l));
    }
}
