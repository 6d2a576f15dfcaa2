//! Per-app rules written in the job file (issue 16): fields kv2jobs leaves as they are live
//! (`shipwatch.ignore`), apps `--prune` never deletes (`shipwatch.prune=false`), and paused apps
//! (`shipwatch.sync=false`).
//!
//! Marathon apps carry them as labels. Chronos has no labels, so a job carries them as
//! `environmentVariables` (`SHIPWATCH_IGNORE`, `SHIPWATCH_PRUNE`, `SHIPWATCH_SYNC`): Chronos's
//! `JobSerializer` writes `environmentVariables[{name,value}]` back on GET as it was posted
//! (mesos/chronos `utils/JobSerializer.scala`, `scheduler/jobs/EnvironmentVariable.scala`;
//! shared/reference/marathon-chronos-and-registrars.md §3 "Job fields"; the ownership mark of
//! [`crate::config::ENV_MANAGED_BY`] relies on the same round trip), unlike `schedule`, which
//! Chronos rewrites as the job runs.

use serde_json::Value;

pub const LABEL_IGNORE: &str = "shipwatch.ignore";
pub const LABEL_PRUNE: &str = "shipwatch.prune";
pub const LABEL_SYNC: &str = "shipwatch.sync";
pub const ENV_IGNORE: &str = "SHIPWATCH_IGNORE";
pub const ENV_PRUNE: &str = "SHIPWATCH_PRUNE";
pub const ENV_SYNC: &str = "SHIPWATCH_SYNC";

/// Fields that can never be ignored: the identity and the ownership mark.
const NEVER_IGNORED: &[&str] = &["id", "name", "labels", "environmentVariables"];

/// The rules of one app or job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Dotted paths into the definition (`instances`, `env.FEATURE_X`).
    pub ignore: Vec<String>,
    /// False: `--prune` never deletes it.
    pub prune: bool,
    /// False: paused, nothing is written for it.
    pub sync: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            ignore: Vec::new(),
            prune: true,
            sync: true,
        }
    }
}

fn flag(name: &str, v: Option<&str>) -> Result<bool, String> {
    match v.map(str::trim) {
        None => Ok(true),
        Some(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(s) => Err(format!("{name} is {s:?}: true or false")),
    }
}

impl Rules {
    fn parse(names: [&str; 3], get: impl Fn(&str) -> Option<String>) -> Result<Rules, String> {
        let [ignore, prune, sync] = names;
        let fields: Vec<String> = get(ignore)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(f) = fields
            .iter()
            .find(|f| NEVER_IGNORED.contains(&f.split('.').next().unwrap_or_default()))
        {
            return Err(format!(
                "{ignore} names {f:?}: the id, labels and environment variables are never ignored"
            ));
        }
        Ok(Rules {
            ignore: fields,
            prune: flag(prune, get(prune).as_deref())?,
            sync: flag(sync, get(sync).as_deref())?,
        })
    }

    /// The rules in a Marathon app's labels.
    pub fn of_app(app: &Value) -> Result<Rules, String> {
        let labels = app.get("labels");
        Rules::parse([LABEL_IGNORE, LABEL_PRUNE, LABEL_SYNC], |n| {
            labels
                .and_then(|l| l.get(n))
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
        })
    }

    /// The rules in a Chronos job's environment variables.
    pub fn of_job(job: &Value) -> Result<Rules, String> {
        let envs = job.get("environmentVariables").and_then(Value::as_array);
        Rules::parse([ENV_IGNORE, ENV_PRUNE, ENV_SYNC], |n| {
            envs?
                .iter()
                .find(|e| e.get("name").and_then(Value::as_str) == Some(n))
                .and_then(|e| e.get("value"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
    }

    /// Removes the ignored fields (apply to both sides of a comparison).
    pub fn strip(&self, v: &mut Value) {
        for f in &self.ignore {
            let _ = take_path(v, f);
        }
    }

    /// Sets each ignored field of `body` (about to be written) to its value in `live`, or removes
    /// it when `live` has none: a write for another change never carries the file's value.
    pub fn keep_live(&self, body: &mut Value, live: &Value) {
        for f in &self.ignore {
            match get_path(live, f) {
                Some(v) => set_path(body, f, v.clone()),
                None => {
                    let _ = take_path(body, f);
                }
            }
        }
    }
}

/// Splits a dotted path at an object: the whole rest when it is a key (`labels` keys hold dots),
/// else its first segment.
fn step<'p>(o: &serde_json::Map<String, Value>, path: &'p str) -> (&'p str, Option<&'p str>) {
    if o.contains_key(path) {
        return (path, None);
    }
    match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    }
}

fn get_path<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    let o = v.as_object()?;
    match step(o, path) {
        (k, None) => o.get(k),
        (k, Some(rest)) => get_path(o.get(k)?, rest),
    }
}

fn take_path(v: &mut Value, path: &str) -> Option<Value> {
    let o = v.as_object_mut()?;
    match step(o, path) {
        (k, None) => o.remove(k),
        (k, Some(rest)) => take_path(o.get_mut(k)?, rest),
    }
}

fn set_path(v: &mut Value, path: &str, value: Value) {
    let Some(o) = v.as_object_mut() else {
        return;
    };
    match step(o, path) {
        (k, None) => {
            o.insert(k.to_string(), value);
        }
        (k, Some(rest)) => {
            let child = o
                .entry(k.to_string())
                .or_insert_with(|| Value::Object(Default::default()));
            set_path(child, rest, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_and_environment_variables_carry_the_rules() {
        let app = json!({"id": "/a", "labels": {"shipwatch.ignore": "instances, env.FEATURE_X",
                                               "shipwatch.prune": "false"}});
        let r = Rules::of_app(&app).unwrap();
        assert_eq!(r.ignore, vec!["instances", "env.FEATURE_X"]);
        assert!(!r.prune && r.sync);
        let job = json!({"name": "j", "environmentVariables": [
            {"name": "SHIPWATCH_SYNC", "value": "FALSE"}]});
        let r = Rules::of_job(&job).unwrap();
        assert!(!r.sync && r.prune && r.ignore.is_empty());
        assert_eq!(
            Rules::of_app(&json!({"id": "/b"})).unwrap(),
            Rules::default()
        );
    }

    #[test]
    fn bad_rules_are_named() {
        let e = Rules::of_app(&json!({"labels": {"shipwatch.sync": "nope"}})).unwrap_err();
        assert!(e.contains("shipwatch.sync is \"nope\""), "{e}");
        let e = Rules::of_app(&json!({"labels": {"shipwatch.ignore": "labels.team"}})).unwrap_err();
        assert!(e.contains("never ignored"), "{e}");
    }

    #[test]
    fn ignored_fields_are_stripped_and_kept_from_live() {
        let r = Rules {
            ignore: vec!["instances".into(), "env.FEATURE_X".into()],
            ..Rules::default()
        };
        let mut body = json!({"id": "/a", "instances": 1, "env": {"FEATURE_X": "on", "B": "1"}});
        let live = json!({"id": "/a", "instances": 5, "env": {"B": "0"}});
        r.keep_live(&mut body, &live);
        assert_eq!(body, json!({"id": "/a", "instances": 5, "env": {"B": "1"}}));
        let mut v = json!({"instances": 3, "env": {"FEATURE_X": "x"}, "cpus": 1});
        r.strip(&mut v);
        assert_eq!(v, json!({"env": {}, "cpus": 1}));
    }
}
