//! Marathon app documents: id rules, group flattening, and the checks Marathon would otherwise
//! answer with a 422 (reference §1.3 "App id rules"; `state/PathId.scala`).

use serde_json::{Map, Value};

/// Resolves `id` against the group `base` (absolute, e.g. `/` or `/prod/web`), the way Marathon
/// resolves relative ids: `api` in `/prod` is `/prod/api`, `../db` in `/prod/web` is `/prod/db`.
/// The result is absolute, without a trailing `/` (except the root).
pub fn absolute_id(id: &str, base: &str) -> String {
    let mut parts: Vec<&str> = if id.starts_with('/') {
        Vec::new()
    } else {
        base.split('/').filter(|s| !s.is_empty()).collect()
    };
    for seg in id.split('/').filter(|s| !s.is_empty()) {
        match seg {
            "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The group that contains `app_id` (`/a/b` → `/a`).
pub fn parent_of(app_id: &str) -> &str {
    match app_id.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &app_id[..i],
    }
}

fn valid_segment(seg: &str) -> bool {
    // `^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$`:
    // dot-separated labels of [a-z0-9-] that neither start nor end with '-'.
    !seg.is_empty()
        && seg.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Checks an absolute app id against Marathon's rules; the error says which segment is wrong.
pub fn validate_app_id(id: &str) -> Result<(), String> {
    if !id.starts_with('/') || id == "/" {
        return Err(format!(
            "app id {id:?} must name an app, not the root group"
        ));
    }
    let segs: Vec<&str> = id[1..].split('/').collect();
    for seg in &segs {
        if !valid_segment(seg) {
            return Err(format!(
                "app id {id:?}: segment {seg:?} must be lowercase letters, digits, '-' and '.', \
                 not starting or ending with '-'"
            ));
        }
    }
    if let Some(last) = segs.last() {
        if matches!(*last, "restart" | "tasks" | "versions") {
            return Err(format!(
                "app id {id:?}: the last segment may not be {last:?} (reserved by the API)"
            ));
        }
    }
    Ok(())
}

/// Checks what Marathon rejects for a whole app (beyond the id) with a reason a person can fix.
/// `app` must already carry its absolute id.
pub fn validate_app(app: &Value) -> Result<(), String> {
    let obj = app
        .as_object()
        .ok_or_else(|| "an app must be a JSON object".to_string())?;
    let id = match obj.get("id") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Err("\"id\" must be a string".into()),
    };
    validate_app_id(id)?;
    let has = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
    // AppDefinition validation: "must either contain one of 'cmd' or 'args', and/or a 'container'".
    if !(has("cmd") || has("args") || has("container")) {
        return Err(format!(
            "app {id}: needs \"cmd\", \"args\" or \"container\""
        ));
    }
    for (field, min) in [
        ("instances", 0.0),
        ("cpus", 0.0),
        ("mem", 0.0),
        ("disk", 0.0),
    ] {
        match obj.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_f64().is_some_and(|f| f >= min) => {}
            Some(other) => {
                return Err(format!(
                    "app {id}: \"{field}\" must be a number >= {min}, got {other}"
                ))
            }
        }
    }
    if let Some(v) = obj.get("instances") {
        if v.as_f64().is_some_and(|f| f.fract() != 0.0) {
            return Err(format!("app {id}: \"instances\" must be a whole number"));
        }
    }
    match obj.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            if let Some((k, _)) = m.iter().find(|(_, v)| !v.is_string()) {
                return Err(format!("app {id}: label {k:?} must have a string value"));
            }
        }
        Some(_) => return Err(format!("app {id}: \"labels\" must be an object")),
    }
    match obj.get("env") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(_) => return Err(format!("app {id}: \"env\" must be an object")),
    }
    Ok(())
}

/// The apps of a group document (`{"id", "apps": [...], "groups": [...]}`), nested groups
/// included, each with its full absolute id. Group-level settings (group `dependencies`) are not
/// apps and are not returned.
pub fn flatten_group(group: &Value) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    flatten_into(group, "/", 0, &mut out)?;
    Ok(out)
}

fn flatten_into(
    group: &Value,
    base: &str,
    depth: usize,
    out: &mut Vec<Value>,
) -> Result<(), String> {
    if depth > 32 {
        return Err("groups are nested more than 32 levels deep".into());
    }
    let obj = group
        .as_object()
        .ok_or_else(|| "a group must be a JSON object".to_string())?;
    let gid = match obj.get("id") {
        None | Some(Value::Null) => base.to_string(),
        Some(Value::String(s)) => absolute_id(s, base),
        Some(other) => return Err(format!("group \"id\" must be a string, got {other}")),
    };
    match obj.get("apps") {
        None | Some(Value::Null) => {}
        Some(Value::Array(apps)) => {
            for (i, app) in apps.iter().enumerate() {
                let mut app: Map<String, Value> = app
                    .as_object()
                    .cloned()
                    .ok_or_else(|| format!("group {gid}: apps[{i}] must be an object"))?;
                let id = match app.get("id") {
                    Some(Value::String(s)) => absolute_id(s, &gid),
                    _ => return Err(format!("group {gid}: apps[{i}] needs a string \"id\"")),
                };
                app.insert("id".into(), Value::String(id));
                out.push(Value::Object(app));
            }
        }
        Some(_) => return Err(format!("group {gid}: \"apps\" must be an array")),
    }
    match obj.get("groups") {
        None | Some(Value::Null) => {}
        Some(Value::Array(groups)) => {
            for g in groups {
                flatten_into(g, &gid, depth + 1, out)?;
            }
        }
        Some(_) => return Err(format!("group {gid}: \"groups\" must be an array")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_resolve_like_marathon() {
        assert_eq!(absolute_id("api", "/"), "/api");
        assert_eq!(absolute_id("api", "/prod"), "/prod/api");
        assert_eq!(absolute_id("/x/y/", "/prod"), "/x/y");
        assert_eq!(absolute_id("../db", "/prod/web"), "/prod/db");
        assert_eq!(parent_of("/a/b"), "/a");
        assert_eq!(parent_of("/a"), "/");
    }

    #[test]
    fn id_rules() {
        assert!(validate_app_id("/prod/api-v2").is_ok());
        assert!(validate_app_id("/prod/a.b").is_ok());
        assert!(validate_app_id("/Prod").is_err());
        assert!(validate_app_id("/-x").is_err());
        assert!(validate_app_id("/x-").is_err());
        assert!(validate_app_id("/a//b").is_err());
        assert!(validate_app_id("/a/tasks").is_err());
        assert!(validate_app_id("/a_b").is_err());
        assert!(validate_app_id("/").is_err());
    }

    #[test]
    fn app_checks() {
        assert!(validate_app(&json!({"id":"/a","cmd":"x"})).is_ok());
        assert!(validate_app(&json!({"id":"/a"}))
            .unwrap_err()
            .contains("cmd"));
        assert!(validate_app(&json!({"id":"/a","cmd":"x","instances":"2"})).is_err());
        assert!(validate_app(&json!({"id":"/a","cmd":"x","labels":{"a":1}})).is_err());
        assert!(validate_app(&json!({"id":"/a","cmd":"x","instances":1.5})).is_err());
    }

    #[test]
    fn groups_flatten_with_full_ids() {
        let g = json!({"id":"/prod","apps":[{"id":"web","cmd":"w"}],
            "groups":[{"id":"db","apps":[{"id":"pg","cmd":"p"},{"id":"/abs","cmd":"a"}]}]});
        let ids: Vec<String> = flatten_group(&g)
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, vec!["/prod/web", "/prod/db/pg", "/abs"]);
        assert!(flatten_group(&json!({"id":"/p","apps":[{"cmd":"x"}]})).is_err());
        assert!(flatten_group(&json!({"id":"/p","apps":{}})).is_err());
    }
}
