//! A readable per-field diff of two comparable (normalized) documents, for dry runs and action
//! details: `cmd: "sleep 1" -> "sleep 2"`, `healthChecks: [...] -> (absent)`.
//!
//! Normalization drops empty members (`0`, `false`, `""`, `[]`, `{}`) because Marathon and
//! Chronos report every field, empty or not. So a live member missing where the desired side
//! has a value is shown as that empty value of the desired value's type (`disk: 0 -> 100`,
//! `constraints: [] -> [...]`), which is what the server reports; `(absent)` is only said of the
//! desired side (a field not in Git).

use serde_json::Value;

/// One changed field; `None` = absent on that side.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    /// Dotted path: `container.docker.image`, `healthChecks[0].path`.
    pub path: String,
    pub live: Option<Value>,
    pub desired: Option<Value>,
}

impl std::fmt::Display for FieldChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} -> {}",
            self.path,
            show(self.live.as_ref()),
            show(self.desired.as_ref())
        )
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".to_string(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 160 {
                format!("{}…", s.chars().take(160).collect::<String>())
            } else {
                s
            }
        }
    }
}

/// The empty value of `v`'s type: what a server reports for a member normalization dropped.
fn empty_like(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Bool(_) => Some(Value::Bool(false)),
        Value::Number(_) => Some(Value::from(0)),
        Value::String(_) => Some(Value::String(String::new())),
        Value::Array(_) => Some(Value::Array(Vec::new())),
        Value::Object(_) => Some(Value::Object(serde_json::Map::new())),
    }
}

/// The fields that differ between `live` and `desired` (both normalized), in path order.
pub fn field_diff(live: &Value, desired: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    walk("", Some(live), Some(desired), &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(path: &str, live: Option<&Value>, desired: Option<&Value>, out: &mut Vec<FieldChange>) {
    match (live, desired) {
        (Some(Value::Object(l)), Some(Value::Object(d))) => {
            let mut keys: Vec<&String> = l.keys().chain(d.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                walk(&join(path, k), l.get(k), d.get(k), out);
            }
        }
        (Some(Value::Array(l)), Some(Value::Array(d)))
            if l.len() == d.len() && l.iter().chain(d).all(|v| v.is_object()) =>
        {
            for (i, (le, de)) in l.iter().zip(d).enumerate() {
                walk(&format!("{path}[{i}]"), Some(le), Some(de), out);
            }
        }
        (l, d) if l != d => out.push(FieldChange {
            path: if path.is_empty() {
                "(document)".into()
            } else {
                path.to_string()
            },
            live: l.cloned().or_else(|| d.and_then(empty_like)),
            desired: d.cloned(),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_changed_added_and_removed_fields() {
        let live = json!({"cmd":"a","mem":64,"container":{"docker":{"image":"x:1"}},"healthChecks":[{"path":"/"}]});
        let desired =
            json!({"cmd":"b","mem":64,"container":{"docker":{"image":"x:2"}},"env":{"A":"1"}});
        let lines: Vec<String> = field_diff(&live, &desired)
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            lines,
            vec![
                r#"cmd: "a" -> "b""#,
                r#"container.docker.image: "x:1" -> "x:2""#,
                r#"env: {} -> {"A":"1"}"#,
                r#"healthChecks: [{"path":"/"}] -> (absent)"#,
            ]
        );
        assert!(field_diff(&desired, &desired).is_empty());
    }

    #[test]
    fn values_the_server_reports_empty_are_shown_as_themselves() {
        let live = json!({"cmd":"a"});
        let desired =
            json!({"cmd":"a","disk":100,"requirePorts":true,"user":"u","constraints":[["a"]]});
        let lines: Vec<String> = field_diff(&live, &desired)
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            lines,
            vec![
                r#"constraints: [] -> [["a"]]"#,
                "disk: 0 -> 100",
                "requirePorts: false -> true",
                r#"user: "" -> "u""#,
            ]
        );
    }
}
