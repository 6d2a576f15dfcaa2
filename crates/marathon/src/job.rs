//! Chronos job documents: kind (scheduled vs dependent), validation, and the order that posts
//! parents before children (reference §3: a dependent job's parents must exist).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::schedule;

/// Where a job is posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Has a `schedule`: `POST .../iso8601`.
    Scheduled,
    /// Has `parents`: `POST .../dependency`.
    Dependent,
}

fn non_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    }
}

/// The kind of a job document, or `None` when it has neither `schedule` nor `parents`.
pub fn job_kind(job: &Value) -> Option<JobKind> {
    if non_empty(job.get("parents")) {
        Some(JobKind::Dependent)
    } else if non_empty(job.get("schedule")) {
        Some(JobKind::Scheduled)
    } else {
        None
    }
}

/// True for a valid Chronos job name (`[\w.-]+`, JobUtils.jobNamePattern).
pub fn valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks a job; the error names the field.
pub fn validate_job(job: &Value) -> Result<JobKind, String> {
    let obj = job
        .as_object()
        .ok_or_else(|| "a job must be a JSON object".to_string())?;
    let name = match obj.get("name") {
        Some(Value::String(s)) if valid_job_name(s) => s.as_str(),
        Some(Value::String(s)) => {
            return Err(format!(
                "job name {s:?} may only hold letters, digits, '_', '.' and '-'"
            ))
        }
        _ => return Err("a Chronos job needs a string \"name\"".into()),
    };
    match obj.get("command") {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        _ => return Err(format!("job {name}: needs a non-empty string \"command\"")),
    }
    if non_empty(obj.get("schedule")) && non_empty(obj.get("parents")) {
        return Err(format!(
            "job {name}: has both \"schedule\" and \"parents\"; a job is either scheduled or dependent"
        ));
    }
    if non_empty(obj.get("uris")) && non_empty(obj.get("fetch")) {
        return Err(format!(
            "job {name}: \"uris\" and \"fetch\" cannot both be set"
        ));
    }
    match job_kind(job) {
        Some(JobKind::Scheduled) => {
            let s = obj
                .get("schedule")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("job {name}: \"schedule\" must be a string"))?;
            schedule::parse(s).map_err(|e| format!("job {name}: {e}"))?;
            Ok(JobKind::Scheduled)
        }
        Some(JobKind::Dependent) => {
            let parents = obj
                .get("parents")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("job {name}: \"parents\" must be an array of names"))?;
            for p in parents {
                match p.as_str() {
                    Some(p) if valid_job_name(p) && p != name => {}
                    _ => return Err(format!("job {name}: bad parent {p}")),
                }
            }
            Ok(JobKind::Dependent)
        }
        None => Err(format!("job {name}: needs a \"schedule\" or \"parents\"")),
    }
}

/// The parents of a job document.
pub fn parents_of(job: &Value) -> Vec<String> {
    job.get("parents")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Orders job names so that every parent in the set comes before its children (parents outside
/// the set are assumed to exist). `Err` names the jobs caught in a cycle.
pub fn parents_first(jobs: &BTreeMap<String, Vec<String>>) -> Result<Vec<String>, Vec<String>> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut order = Vec::new();
    loop {
        let ready: Vec<String> = jobs
            .iter()
            .filter(|(n, ps)| {
                !done.contains(*n) && ps.iter().all(|p| done.contains(p) || !jobs.contains_key(p))
            })
            .map(|(n, _)| n.clone())
            .collect();
        if ready.is_empty() {
            break;
        }
        for n in ready {
            done.insert(n.clone());
            order.push(n);
        }
    }
    if order.len() == jobs.len() {
        Ok(order)
    } else {
        Err(jobs
            .keys()
            .filter(|n| !done.contains(*n))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_and_validation() {
        let docker: Value =
            serde_json::from_str(include_str!("../../../fixtures/chronos/job-docker.json"))
                .unwrap();
        assert_eq!(validate_job(&docker), Ok(JobKind::Scheduled));
        let dep = json!({"name":"child","command":"x","parents":["a"]});
        assert_eq!(validate_job(&dep), Ok(JobKind::Dependent));
        assert!(validate_job(&json!({"name":"a b","command":"x","schedule":"R//PT1H"})).is_err());
        assert!(validate_job(&json!({"name":"a","schedule":"R//PT1H"}))
            .unwrap_err()
            .contains("command"));
        assert!(validate_job(&json!({"name":"a","command":"x","schedule":"daily"})).is_err());
        assert!(validate_job(
            &json!({"name":"a","command":"x","schedule":"R//PT1H","parents":["b"]})
        )
        .is_err());
        assert!(validate_job(&json!({"command":"x","schedule":"R//PT1H"})).is_err());
    }

    #[test]
    fn parents_come_first_and_cycles_are_named() {
        let mut g = BTreeMap::new();
        g.insert("c".to_string(), vec!["b".to_string()]);
        g.insert("b".to_string(), vec!["a".to_string()]);
        g.insert("a".to_string(), vec![]);
        g.insert("d".to_string(), vec!["outside".to_string()]);
        assert_eq!(parents_first(&g).unwrap(), vec!["a", "d", "b", "c"]);
        g.insert("a".to_string(), vec!["c".to_string()]);
        assert_eq!(parents_first(&g).unwrap_err(), vec!["a", "b", "c"]);
    }
}
