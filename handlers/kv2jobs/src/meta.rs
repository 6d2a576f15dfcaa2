//! The routing facts of each app and job (issue 16): the job file's labels, a Chronos job's
//! `owner`, the KV key the config came from and the git commit git2consul wrote in the
//! branch's `.ref`. `runtime::notify` routes each team's message by them.

use std::collections::{BTreeMap, BTreeSet};

use runtime::ActionMeta;
use serde_json::Value;
use watch::KvPair;

use crate::config::{app_owner, job_owner, Desired};

/// The commit of each git2consul branch in the payload: (`<repo>/<branch>/`, the `.ref` value,
/// which git2consul sets to the SHA of the commit it mirrored), innermost branch first.
#[derive(Debug, Default)]
pub struct Commits(Vec<(String, String)>);

impl Commits {
    pub fn of(pairs: &[KvPair]) -> Commits {
        let mut v: Vec<(String, String)> = pairs
            .iter()
            .filter(|p| p.key.ends_with(".ref") && !p.is_folder())
            .filter_map(|p| {
                let sha = p.value_str().ok()?.trim();
                // A commit SHA, not a whole document someone stored under a `.ref` name.
                (!sha.is_empty() && sha.len() <= 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| (format!("{}/", &p.key[..p.key.len() - 4]), sha.to_string()))
            })
            .collect();
        v.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Commits(v)
    }

    /// The commit of the branch that holds `key`.
    pub fn of_key(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(prefix, _)| key.starts_with(prefix.as_str()))
            .map(|(_, sha)| sha.clone())
    }
}

fn labels_of(app: &Value) -> BTreeMap<String, String> {
    app.get("labels")
        .and_then(Value::as_object)
        .map(|l| {
            l.iter()
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn owner_of(job: &Value) -> Option<String> {
    job.get("owner")
        .and_then(Value::as_str)
        .filter(|o| !o.trim().is_empty())
        .map(str::to_string)
}

/// The facts of the configured apps and jobs the plan names (`targets`: only these can be in a
/// team's message). They take the place of what the live app said.
pub fn of_desired(
    d: &Desired,
    targets: &BTreeSet<&str>,
    commits: &Commits,
    meta: &mut BTreeMap<String, ActionMeta>,
) {
    for a in d.apps.iter().filter(|a| targets.contains(a.id.as_str())) {
        meta.insert(
            a.id.clone(),
            ActionMeta {
                labels: labels_of(&a.body()),
                owner: None,
                source: Some(a.key.clone()),
                commit: commits.of_key(&a.key),
            },
        );
    }
    for j in d.jobs.iter().filter(|j| targets.contains(j.name.as_str())) {
        meta.insert(
            j.name.clone(),
            ActionMeta {
                labels: BTreeMap::new(),
                owner: owner_of(&j.body),
                source: Some(j.key.clone()),
                commit: commits.of_key(&j.key),
            },
        );
    }
}

/// The facts of live apps that the plan names (`targets`) and that have no config in this
/// payload (a prune): their live labels and the source key of their ownership mark.
pub fn of_live_apps(
    live: &[Value],
    targets: &BTreeSet<&str>,
    commits: &Commits,
    meta: &mut BTreeMap<String, ActionMeta>,
) {
    for app in live {
        let Some(id) = app.get("id").and_then(Value::as_str) else {
            continue;
        };
        if meta.contains_key(id) || !targets.contains(id) {
            continue;
        }
        let source = app_owner(app).map(str::to_string);
        meta.insert(
            id.to_string(),
            ActionMeta {
                labels: labels_of(app),
                owner: None,
                commit: source.as_deref().and_then(|k| commits.of_key(k)),
                source,
            },
        );
    }
}

/// Like [`of_live_apps`] for Chronos jobs (their `owner`).
pub fn of_live_jobs(
    live: &[Value],
    targets: &BTreeSet<&str>,
    commits: &Commits,
    meta: &mut BTreeMap<String, ActionMeta>,
) {
    for job in live {
        let Some(name) = job.get("name").and_then(Value::as_str) else {
            continue;
        };
        if meta.contains_key(name) || !targets.contains(name) {
            continue;
        }
        let source = job_owner(job).map(str::to_string);
        meta.insert(
            name.to_string(),
            ActionMeta {
                labels: BTreeMap::new(),
                owner: owner_of(job),
                commit: source.as_deref().and_then(|k| commits.of_key(k)),
                source,
            },
        );
    }
}
