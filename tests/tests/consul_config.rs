//! Every agent config in consul-config/ is valid for the Consul agent's watch schema, and the JSON
//! and HCL forms say the same thing.
//!
//! The schema rules are the agent's own (shared/reference/consul-watches-and-api.md §2-3, from
//! api/watch/watch.go and agent/watch_handler.go): a known `type`; its required parameter; only
//! known parameters ("Invalid parameters"); strings and booleans of the right type ("Expecting %s
//! to be a string"); `args` as a list of strings, never the deprecated shell `handler`
//! ("Only one watch handler allowed"); `handler_type` "script" or omitted.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../consul-config")
}

fn configs() -> BTreeMap<String, (Value, Value)> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(config_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let hcl_path = path.with_extension("hcl");
        let hcl_text = std::fs::read_to_string(&hcl_path)
            .unwrap_or_else(|e| panic!("{} has no HCL twin: {e}", path.display()));
        let hcl: Value =
            hcl::from_str(&hcl_text).unwrap_or_else(|e| panic!("{}: {e}", hcl_path.display()));
        out.insert(stem, (json, hcl));
    }
    out
}

/// Parameters per watch type (api/watch/funcs.go), plus the ones every watch takes.
fn allowed_params(watch_type: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    // (required, optional)
    Some(match watch_type {
        "key" => (&["key"], &["stale"]),
        "keyprefix" => (&["prefix"], &["stale"]),
        "services" => (&[], &["stale"]),
        "nodes" => (&[], &["stale"]),
        "service" => (&["service"], &["tag", "passingonly", "stale"]),
        "checks" => (&[], &["service", "state", "tag", "stale"]),
        "event" => (&[], &["name"]),
        _ => return None,
    })
}

const GLOBAL: &[&str] = &["type", "datacenter", "token", "args", "handler_type"];

fn check_watch(file: &str, i: usize, w: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let at = format!("{file} watch {i}");
    let Some(obj) = w.as_object() else {
        return vec![format!("{at}: not an object")];
    };
    let Some(watch_type) = obj.get("type").and_then(Value::as_str) else {
        return vec![format!("{at}: Watch type must be specified")];
    };
    let Some((required, optional)) = allowed_params(watch_type) else {
        return vec![format!("{at}: Unsupported watch type: {watch_type}")];
    };
    for r in required {
        match obj.get(*r) {
            Some(Value::String(s)) if !s.is_empty() => {}
            _ => problems.push(format!("{at}: Must specify a single {r} to watch")),
        }
    }
    for (k, v) in obj {
        if !(GLOBAL.contains(&k.as_str())
            || required.contains(&k.as_str())
            || optional.contains(&k.as_str()))
        {
            problems.push(format!("{at}: Invalid parameters: [{k}]"));
        }
        let want_bool = matches!(k.as_str(), "stale" | "passingonly");
        match (k.as_str(), v) {
            ("args", Value::Array(a)) => {
                if a.is_empty() || !a.iter().all(Value::is_string) {
                    problems.push(format!("{at}: args must be a non-empty list of strings"));
                }
            }
            ("args", _) => problems.push(format!("{at}: args must be a list")),
            ("tag", Value::Array(a)) if a.iter().all(Value::is_string) => {}
            (_, Value::Bool(_)) if want_bool => {}
            (_, _) if want_bool => problems.push(format!("{at}: Expecting {k} to be a boolean")),
            (_, Value::String(_)) => {}
            (_, _) => problems.push(format!("{at}: Expecting {k} to be a string")),
        }
    }
    if obj.contains_key("handler") {
        problems.push(format!(
            "{at}: uses the deprecated shell `handler`; use `args`"
        ));
    }
    if !obj.contains_key("args") {
        problems.push(format!("{at}: Must define a watch handler"));
    }
    match obj.get("handler_type").and_then(Value::as_str) {
        None | Some("script") => {}
        Some(other) => problems.push(format!("{at}: Handler type '{other}' not recognized")),
    }
    problems
}

#[test]
fn every_config_is_valid_for_the_agent() {
    let all = configs();
    assert!(all.len() >= 3, "expected configs for the three handlers");
    let mut problems = Vec::new();
    for (name, (json, _)) in &all {
        let watches = json.get("watches").and_then(Value::as_array);
        let Some(watches) = watches else {
            problems.push(format!("{name}.json: no watches array"));
            continue;
        };
        for (i, w) in watches.iter().enumerate() {
            problems.extend(check_watch(name, i, w));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn json_and_hcl_say_the_same() {
    for (name, (json, hcl)) in configs() {
        assert_eq!(json, hcl, "{name}.json and {name}.hcl differ");
    }
}

#[test]
fn the_checker_rejects_what_the_agent_rejects() {
    let bad = [
        serde_json::json!({"type": "keyprefix", "args": ["x"]}),
        serde_json::json!({"type": "key", "key": "a", "handler": "echo hi"}),
        serde_json::json!({"type": "key", "key": "a", "args": "x"}),
        serde_json::json!({"type": "key", "key": "a", "args": ["x"], "prefix": "b"}),
        serde_json::json!({"type": "connect_roots", "args": ["x"]}),
        serde_json::json!({"type": "service", "service": "a", "passingonly": "yes", "args": ["x"]}),
        serde_json::json!({"type": "event", "args": ["x"], "handler_type": "http"}),
    ];
    for w in bad {
        assert!(!check_watch("t", 0, &w).is_empty(), "accepted {w}");
    }
    let good =
        serde_json::json!({"type": "event", "name": "x", "args": ["tasks2consul"], "token": "t"});
    assert!(check_watch("t", 0, &good).is_empty());
}
