//! From a keyprefix payload to the desired state: classify every key, parse and check the job
//! configs, add the ownership mark, and decide whether git2consul is still mid-sync.

use std::collections::{BTreeMap, BTreeSet};

use marathon::app::{absolute_id, flatten_group, validate_app};
use marathon::job::{validate_job, JobKind};
use serde_json::{Map, Value};
use watch::KvPair;

use crate::cache::Cache;
use crate::rules::Rules;

/// Marathon label: which tool manages the app.
pub const LABEL_MANAGED_BY: &str = "shipwatch.managed-by";
/// Marathon label: the KV key the app's config came from.
pub const LABEL_SOURCE_KEY: &str = "shipwatch.source-key";
/// The value of the managed-by mark.
pub const MANAGER: &str = "kv2jobs";
/// Chronos has no labels: the mark is two environment variables of the job (stored and returned
/// by Chronos like any other field, and harmless to the task).
pub const ENV_MANAGED_BY: &str = "SHIPWATCH_MANAGED_BY";
pub const ENV_SOURCE_KEY: &str = "SHIPWATCH_SOURCE_KEY";

/// A Marathon app to deploy. Held as compact JSON text, parsed again where a write or a diff
/// needs it: a branch of 10,000 apps as trees took about 27 MB, as text about 3 MB (issue 13).
#[derive(Debug, Clone)]
pub struct DesiredApp {
    pub id: String,
    pub key: String,
    /// The definition to PUT (absolute id, ownership labels added).
    text: AppText,
    /// Its `shipwatch.*` labels.
    pub rules: Result<Rules, String>,
    /// Its rules are plain (synced, nothing ignored) and `--cache-dir` knows no verdict for it:
    /// a live app is compared with its normalized form as it is read (`plan::expected`).
    pub compared_early: bool,
    /// [`cache::config_hash`] of `text`.
    pub config: String,
    /// The live version at which `--cache-dir` last found this very config deployed (plain
    /// rules only): a live app still at that version needs no comparison.
    pub cached_version: Option<String>,
    /// `cache::source_hash` of the KV key and value, when this app is the key's only one.
    pub source: Option<String>,
}

/// How a [`DesiredApp`] holds its definition.
#[derive(Debug, Clone)]
enum AppText {
    /// Compact JSON of the checked and marked definition (shared with the write that carries
    /// it, `plan::AppDoc`).
    Json(std::sync::Arc<str>),
    /// The file as it is in KV, known from `--cache-dir` (the same bytes were checked before):
    /// parsed, made absolute and marked only if the definition is needed.
    File(Vec<u8>),
}

fn json_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl DesiredApp {
    /// An app `--cache-dir` knows from the very same KV key and value (`source`): no parsing.
    fn known(id: &str, key: &str, value: &[u8], entry: &crate::cache::Entry) -> DesiredApp {
        DesiredApp {
            id: id.to_string(),
            key: key.to_string(),
            text: AppText::File(value.to_vec()),
            // It had a verdict, which only apps with plain rules get.
            rules: Ok(Rules::default()),
            compared_early: false,
            config: entry.config.clone(),
            cached_version: Some(entry.version.clone()),
            source: entry.source.clone(),
        }
    }

    /// A validated app definition, marked as managed by kv2jobs from `key`; `cache` may know
    /// its verdict.
    pub fn new(mut body: Value, key: &str, cache: &Cache) -> DesiredApp {
        mark_app(&mut body, key);
        let id = body["id"].as_str().unwrap_or_default().to_string();
        let rules = Rules::of_app(&body);
        // serde_json::to_string, not Display: a plain buffer, no fmt machinery (10,000 apps).
        let text = json_text(&body);
        let config = crate::cache::config_hash(&text);
        let plain = matches!(&rules, Ok(r) if r.sync && r.ignore.is_empty());
        let cached_version = plain
            .then(|| cache.version_of(&id, &config).map(str::to_string))
            .flatten();
        DesiredApp {
            id,
            key: key.to_string(),
            compared_early: plain && cached_version.is_none(),
            text: AppText::Json(text.into()),
            rules,
            config,
            cached_version,
            source: None,
        }
    }

    /// The definition to PUT, as the write carries it (the text as it is, when there is one).
    pub fn doc(&self) -> crate::plan::AppDoc {
        match &self.text {
            AppText::Json(text) => crate::plan::AppDoc::from_text(text.clone()),
            AppText::File(_) => crate::plan::AppDoc::of(&self.body()),
        }
    }

    /// The definition through `normalize::canonical_app`, as compact JSON.
    pub fn form(&self) -> String {
        json_text(&marathon::normalize::canonical_app_owned(self.body()))
    }

    /// The definition to PUT.
    pub fn body(&self) -> Value {
        match &self.text {
            // Written from a Value: it always parses.
            AppText::Json(text) => serde_json::from_str(text).unwrap_or_default(),
            // The bytes a run checked before: made into the definition as classify does.
            AppText::File(bytes) => {
                let mut body: Value = serde_json::from_slice(bytes).unwrap_or_default();
                if let Some(Value::String(id)) = body.get("id") {
                    let abs = absolute_id(id, "/");
                    body["id"] = Value::String(abs);
                }
                mark_app(&mut body, &self.key);
                body
            }
        }
    }
}

/// A Chronos job to deploy.
#[derive(Debug, Clone)]
pub struct DesiredJob {
    pub name: String,
    pub key: String,
    pub kind: JobKind,
    /// The job to POST, ownership mark added.
    pub body: Value,
}

/// What the payload asks for.
#[derive(Debug, Default)]
pub struct Desired {
    pub apps: Vec<DesiredApp>,
    pub jobs: Vec<DesiredJob>,
    /// Keys reported as skipped (folders, `.ref`, non-job files): (key, why).
    pub skipped: Vec<(String, String)>,
    /// Configs rejected: (key, reason). Their apps/jobs are neither written nor pruned.
    pub rejected: Vec<(String, String)>,
    /// `.json` keys that hold no job config (`{}`, `{"ID": ...}`, `package.json`): (key, why).
    /// When a live app or job came from one of them, that config is rejected and the app kept.
    pub non_configs: BTreeMap<String, String>,
    /// The payload was a single key (a `key` watch), not a whole prefix.
    pub single_key: bool,
    /// What the payload says about git2consul's snapshots (for `--prune`).
    pub snapshot: Snapshot,
}

impl Desired {
    /// Keys whose config was rejected (their apps/jobs must not be pruned).
    pub fn rejected_keys(&self) -> BTreeSet<&str> {
        self.rejected.iter().map(|(k, _)| k.as_str()).collect()
    }

    /// No job config at all (null payload, empty prefix, only folders/README/.ref).
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty() && self.jobs.is_empty() && self.rejected.is_empty()
    }
}

/// `--prefix` by whole path segments: `deploy/main` means `deploy/main/`, never
/// `deploy/main-canary/` (the same greedy-prefix trap as breser/git2consul#128).
pub fn segment_prefix(prefix: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    }
}

/// A git2consul branch present in the payload: `<repo>/<branch>/` and its `<repo>/<branch>.ref`
/// (written last, only after every file of the sync; shared/reference
/// marathon-chronos-and-registrars.md "Last processed ref").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    /// `<repo>/<branch>/`.
    pub prefix: String,
    pub ref_key: String,
    pub ref_index: u64,
}

/// A file key newer than its branch's `.ref`: git2consul is mid-sync, or the key was edited by
/// hand in KV, or git2consul died after writing files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    pub key: String,
    pub index: u64,
    pub ref_key: String,
    pub ref_index: u64,
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (ModifyIndex {} > {} {})",
            self.key, self.index, self.ref_key, self.ref_index
        )
    }
}

/// The evidence `--prune` needs: which branches the payload holds completely.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Branches with their `.ref` in the payload that overlap `--prefix`.
    pub branches: Vec<Branch>,
    /// Files newer than their branch's `.ref` (branches overlapping `--prefix`).
    pub stale: Vec<Stale>,
    /// Set when `CONSUL_INDEX` is above the newest `.ref` and no key of the payload carries it:
    /// only a deletion after git2consul's last complete sync explains it (a rename in progress).
    pub unexplained_deletion: Option<String>,
}

/// Whether the deletes of apps/jobs from one source key may be made on this payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// The key's branch is in the payload, complete and consistent.
    Complete,
    /// The key's branch is not part of this payload (another branch's watch): not considered.
    OutOfScope,
    /// The key's branch may be incomplete: hold the deletes back (why).
    Doubtful(String),
}

fn overlaps(branch: &str, prefix: &str) -> bool {
    branch.starts_with(prefix) || prefix.starts_with(branch)
}

impl Snapshot {
    /// Reads the snapshot markers of `pairs` for `prefix` (segment form) and `consul_index`.
    pub fn of(pairs: &[KvPair], prefix: &str, consul_index: Option<u64>) -> Snapshot {
        let mut branches: Vec<Branch> = pairs
            .iter()
            .filter(|p| p.key.ends_with(".ref") && !p.is_folder())
            .map(|r| Branch {
                prefix: format!("{}/", &r.key[..r.key.len() - 4]),
                ref_key: r.key.clone(),
                ref_index: r.modify_index,
            })
            .filter(|b| overlaps(&b.prefix, prefix))
            .collect();
        // Longest first: a key belongs to the innermost branch that holds it.
        branches.sort_by_key(|b| std::cmp::Reverse(b.prefix.len()));
        let mut stale = Vec::new();
        for p in pairs {
            let Some(b) = branches.iter().find(|b| p.key.starts_with(&b.prefix)) else {
                continue;
            };
            if p.modify_index > b.ref_index {
                stale.push(Stale {
                    key: p.key.clone(),
                    index: p.modify_index,
                    ref_key: b.ref_key.clone(),
                    ref_index: b.ref_index,
                });
            }
        }
        stale.sort_by(|a, b| b.index.cmp(&a.index).then(a.key.cmp(&b.key)));
        let newest_ref = branches.iter().map(|b| b.ref_index).max();
        let unexplained_deletion = match (consul_index, newest_ref) {
            (Some(ci), Some(r)) if ci > r && !pairs.iter().any(|p| p.modify_index == ci) => {
                Some(format!(
                    "CONSUL_INDEX {ci} is above the newest .ref (ModifyIndex {r}) and no key of \
                     the payload carries it: a key was deleted after git2consul's last complete \
                     sync (a rename in progress?)"
                ))
            }
            _ => None,
        };
        Snapshot {
            branches,
            stale,
            unexplained_deletion,
        }
    }

    /// May the apps/jobs whose config came from `source_key` be deleted on this payload?
    pub fn evidence(&self, source_key: &str) -> Evidence {
        let Some(b) = self
            .branches
            .iter()
            .find(|b| source_key.starts_with(&b.prefix))
        else {
            if self.branches.is_empty() {
                return Evidence::Doubtful(
                    "the payload holds no git2consul .ref marker for its branch (a wiped prefix \
                     being re-mirrored, a new git2consul host?), so it may be incomplete"
                        .into(),
                );
            }
            return Evidence::OutOfScope;
        };
        if let Some(s) = self.stale.iter().find(|s| s.ref_key == b.ref_key) {
            return Evidence::Doubtful(format!("git2consul sync in progress: {s}"));
        }
        if let Some(why) = &self.unexplained_deletion {
            return Evidence::Doubtful(why.clone());
        }
        Evidence::Complete
    }
}

/// What a config document is.
enum Doc {
    Job,
    Group,
    App,
    Other(&'static str),
}

fn doc_kind(v: &Value) -> Doc {
    let Some(o) = v.as_object() else {
        return Doc::Other("not a JSON object");
    };
    let has = |k: &str| o.get(k).is_some_and(|v| !v.is_null());
    if has("schedule") || has("parents") {
        Doc::Job
    } else if has("apps") || has("groups") {
        Doc::Group
    } else if has("id") {
        Doc::App
    } else if has("name") && has("command") {
        // Looks like a Chronos job that forgot its schedule: say so rather than skip it.
        Doc::Job
    } else {
        Doc::Other("no \"id\", \"apps\", \"groups\", \"schedule\" or \"parents\"")
    }
}

fn mark_app(app: &mut Value, key: &str) {
    if let Some(o) = app.as_object_mut() {
        let labels = o
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if !labels.is_object() {
            *labels = Value::Object(Map::new());
        }
        if let Some(l) = labels.as_object_mut() {
            l.insert(LABEL_MANAGED_BY.into(), MANAGER.into());
            l.insert(LABEL_SOURCE_KEY.into(), key.into());
        }
    }
}

fn mark_job(job: &mut Value, key: &str) {
    if let Some(o) = job.as_object_mut() {
        let envs = o
            .entry("environmentVariables")
            .or_insert_with(|| Value::Array(Vec::new()));
        if !envs.is_array() {
            *envs = Value::Array(Vec::new());
        }
        if let Some(a) = envs.as_array_mut() {
            a.retain(|e| {
                !matches!(
                    e.get("name").and_then(Value::as_str),
                    Some(ENV_MANAGED_BY | ENV_SOURCE_KEY)
                )
            });
            a.push(serde_json::json!({"name": ENV_MANAGED_BY, "value": MANAGER}));
            a.push(serde_json::json!({"name": ENV_SOURCE_KEY, "value": key}));
        }
    }
}

/// The key a live app/job came from, when kv2jobs manages it.
pub fn app_owner(app: &Value) -> Option<&str> {
    let labels = app.get("labels")?;
    if labels.get(LABEL_MANAGED_BY)?.as_str()? != MANAGER {
        return None;
    }
    labels.get(LABEL_SOURCE_KEY)?.as_str()
}

/// The key a live Chronos job came from, when kv2jobs manages it.
pub fn job_owner(job: &Value) -> Option<&str> {
    let envs = job.get("environmentVariables")?.as_array()?;
    let get = |n: &str| {
        envs.iter()
            .find(|e| e.get("name").and_then(Value::as_str) == Some(n))
            .and_then(|e| e.get("value"))
            .and_then(Value::as_str)
    };
    if get(ENV_MANAGED_BY)? != MANAGER {
        return None;
    }
    get(ENV_SOURCE_KEY)
}

/// The same key rules as every Consul key the handlers touch (consul::validate_key): no control
/// characters, no `..` segment (a key must not escape --prefix, and it is recorded as the source
/// key that --prune relies on), no leading `/` or `-`.
fn check_key(key: &str) -> Result<(), String> {
    if key.chars().any(char::is_control) {
        return Err("the key holds control characters".into());
    }
    if key.split('/').any(|s| s == "..") {
        return Err("the key has a .. segment".into());
    }
    if key.starts_with('-') || key.starts_with('/') {
        return Err("the key starts with '-' or '/'".into());
    }
    Ok(())
}

/// Adds a validated app, marked as managed by kv2jobs from `key`.
fn push_app(d: &mut Desired, body: Value, key: &str, cache: &Cache) {
    d.apps.push(DesiredApp::new(body, key, cache));
}

/// Classifies every pair under `prefix` (all pairs when empty; whole segments, see
/// [`segment_prefix`]). The snapshot is read without `CONSUL_INDEX` (the caller sets it).
pub fn classify(pairs: &[KvPair], prefix: &str, single_key: bool) -> Desired {
    classify_with(pairs, prefix, single_key, &Cache::default())
}

/// [`classify`], with the verdicts `--cache-dir` holds.
pub fn classify_with(pairs: &[KvPair], prefix: &str, single_key: bool, cache: &Cache) -> Desired {
    let prefix = segment_prefix(prefix);
    let prefix = prefix.as_str();
    let mut d = Desired {
        single_key,
        snapshot: Snapshot::of(pairs, prefix, None),
        ..Desired::default()
    };
    for p in pairs.iter().filter(|p| p.key.starts_with(prefix)) {
        if p.is_folder() {
            d.skipped.push((p.key.clone(), "folder key".into()));
            continue;
        }
        if p.key.ends_with(".ref") {
            d.skipped.push((
                p.key.clone(),
                "git2consul .ref marker (sync check only)".into(),
            ));
            continue;
        }
        if !p.key.ends_with(".json") {
            d.skipped
                .push((p.key.clone(), "not a job config (not a .json file)".into()));
            continue;
        }
        if let Err(e) = check_key(&p.key) {
            d.rejected.push((p.key.clone(), e));
            continue;
        }
        let source = cache
            .is_enabled()
            .then(|| crate::cache::source_hash(&p.key, p.value.as_deref().unwrap_or_default()));
        if let Some((id, entry)) = source.as_deref().and_then(|s| cache.known_source(s)) {
            let value = p.value.as_deref().unwrap_or_default();
            d.apps.push(DesiredApp::known(id, &p.key, value, entry));
            continue;
        }
        let text = match p.value_str() {
            Ok(t) => t,
            Err(e) => {
                d.rejected
                    .push((p.key.clone(), format!("value is not UTF-8: {e}")));
                continue;
            }
        };
        let doc: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let why = if text.trim().is_empty() {
                    "empty value, not a JSON document".to_string()
                } else {
                    format!("invalid JSON: {e}")
                };
                d.rejected.push((p.key.clone(), why));
                continue;
            }
        };
        match doc_kind(&doc) {
            Doc::Other(why) => {
                let why = format!("not a job config ({why})");
                d.non_configs.insert(p.key.clone(), why.clone());
                d.skipped.push((p.key.clone(), why));
            }
            Doc::Job => match validate_job(&doc) {
                Ok(kind) => {
                    let mut body = doc;
                    mark_job(&mut body, &p.key);
                    let name = body["name"].as_str().unwrap_or_default().to_string();
                    d.jobs.push(DesiredJob {
                        name,
                        key: p.key.clone(),
                        kind,
                        body,
                    });
                }
                Err(e) => d.rejected.push((p.key.clone(), e)),
            },
            Doc::Group => match flatten_group(&doc).and_then(|apps| {
                apps.into_iter()
                    .map(|a| validate_app(&a).map(|_| a))
                    .collect::<Result<Vec<_>, _>>()
            }) {
                Ok(apps) => {
                    for body in apps {
                        push_app(&mut d, body, &p.key, cache);
                    }
                }
                Err(e) => d.rejected.push((p.key.clone(), e)),
            },
            Doc::App => {
                let mut body = doc;
                if let Some(Value::String(id)) = body.get("id") {
                    let abs = absolute_id(id, "/");
                    body["id"] = Value::String(abs);
                }
                match validate_app(&body) {
                    Ok(()) => {
                        push_app(&mut d, body, &p.key, cache);
                        if let Some(app) = d.apps.last_mut() {
                            app.source = source;
                        }
                    }
                    Err(e) => d.rejected.push((p.key.clone(), e)),
                }
            }
        }
    }
    reject_duplicates(&mut d);
    d
}

/// An app id (or job name) defined twice is ambiguous: every config defining it is rejected.
fn reject_duplicates(d: &mut Desired) {
    let mut app_keys: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for a in &d.apps {
        app_keys.entry(&a.id).or_default().push(&a.key);
    }
    let mut job_keys: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for j in &d.jobs {
        job_keys.entry(&j.name).or_default().push(&j.key);
    }
    let mut bad: BTreeMap<String, String> = BTreeMap::new();
    for (what, map) in [("app id", &app_keys), ("job name", &job_keys)] {
        for (id, keys) in map.iter().filter(|(_, ks)| ks.len() > 1) {
            let mut uniq: Vec<&str> = keys.clone();
            uniq.sort();
            uniq.dedup();
            for k in &uniq {
                bad.entry(k.to_string()).or_insert_with(|| {
                    format!(
                        "{what} {id} is defined more than once (in {})",
                        runtime::text::capped_list(&uniq)
                    )
                });
            }
        }
    }
    if bad.is_empty() {
        return;
    }
    d.apps.retain(|a| !bad.contains_key(&a.key));
    d.jobs.retain(|j| !bad.contains_key(&j.key));
    d.rejected.extend(bad);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn kv(key: &str, index: u64, value: Option<&str>) -> KvPair {
        KvPair {
            key: key.into(),
            create_index: index,
            modify_index: index,
            lock_index: 0,
            flags: 0,
            value: value.map(|v| v.as_bytes().to_vec()),
            session: String::new(),
        }
    }

    #[test]
    fn classifies_every_kind_of_key() {
        let pairs = vec![
            kv("jobs/master/", 1, None),
            kv("jobs/master.ref", 9, Some("abc123")),
            kv("jobs/master/README.md", 2, Some("# hi")),
            kv("jobs/master/api.json", 3, Some(r#"{"id":"api","cmd":"x"}"#)),
            kv(
                "jobs/master/grp.json",
                3,
                Some(r#"{"id":"/g","apps":[{"id":"a","cmd":"x"}]}"#),
            ),
            kv(
                "jobs/master/cron.json",
                3,
                Some(r#"{"name":"c","command":"x","schedule":"R//PT1H"}"#),
            ),
            kv("jobs/master/package.json", 3, Some(r#"{"version":"1"}"#)),
            kv("jobs/master/bad.json", 3, Some("{nope")),
            kv(
                "jobs/master/badid.json",
                3,
                Some(r#"{"id":"Bad_Id","cmd":"x"}"#),
            ),
            kv(
                "jobs/master/nocmd.json",
                3,
                Some(r#"{"name":"n","command":"","schedule":"R//PT1H"}"#),
            ),
        ];
        let d = classify(&pairs, "", false);
        assert!(d.snapshot.stale.is_empty());
        let ids: Vec<&str> = d.apps.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, vec!["/api", "/g/a"]);
        assert_eq!(d.jobs.len(), 1);
        assert_eq!(d.skipped.len(), 4, "{:?}", d.skipped);
        let rejected: Vec<&str> = d.rejected.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            rejected,
            vec![
                "jobs/master/bad.json",
                "jobs/master/badid.json",
                "jobs/master/nocmd.json"
            ]
        );
        assert_eq!(app_owner(&d.apps[0].body()), Some("jobs/master/api.json"));
        assert_eq!(job_owner(&d.jobs[0].body), Some("jobs/master/cron.json"));
    }

    #[test]
    fn duplicates_reject_every_config_that_defines_them() {
        let pairs = vec![
            kv("r/b/a.json", 3, Some(r#"{"id":"/x","cmd":"x"}"#)),
            kv("r/b/b.json", 3, Some(r#"{"id":"x","cmd":"y"}"#)),
            kv("r/b/c.json", 3, Some(r#"{"id":"/y","cmd":"y"}"#)),
        ];
        let d = classify(&pairs, "", false);
        assert_eq!(d.apps.len(), 1);
        assert_eq!(d.rejected.len(), 2);
        assert!(
            d.rejected[0].1.contains("more than once"),
            "{:?}",
            d.rejected
        );
    }

    #[test]
    fn mid_sync_is_detected_from_the_ref() {
        let pairs = vec![
            kv("jobs/master.ref", 10, Some("abc")),
            kv("jobs/master/a.json", 12, Some("{}")),
            kv("jobs/other/a.json", 15, Some("{}")),
        ];
        let stale = Snapshot::of(&pairs, "", None).stale;
        assert_eq!(stale.len(), 1);
        assert!(
            stale[0].to_string().contains("jobs/master/a.json"),
            "{stale:?}"
        );
        assert_eq!(Snapshot::of(&pairs, "jobs/master/", None).stale.len(), 1);
        assert!(
            Snapshot::of(&pairs, "jobs/other/", None).stale.is_empty(),
            "another branch's sync"
        );
        let done = vec![
            kv("jobs/master.ref", 13, Some("abc")),
            kv("jobs/master/a.json", 12, Some("{}")),
        ];
        let snap = Snapshot::of(&done, "", None);
        assert!(snap.stale.is_empty());
        assert_eq!(snap.evidence("jobs/master/b.json"), Evidence::Complete);
        assert_eq!(snap.evidence("jobs/dev/b.json"), Evidence::OutOfScope);
        // CONSUL_INDEX above every key: a deletion after the .ref.
        let renamed = Snapshot::of(&done, "", Some(14));
        assert!(matches!(
            renamed.evidence("jobs/master/b.json"),
            Evidence::Doubtful(w) if w.contains("CONSUL_INDEX 14")
        ));
        assert_eq!(
            Snapshot::of(&done, "", Some(13)).evidence("jobs/master/b.json"),
            Evidence::Complete
        );
        // No .ref at all: doubtful.
        let no_ref = Snapshot::of(&[kv("jobs/master/a.json", 12, Some("{}"))], "", None);
        assert!(matches!(
            no_ref.evidence("jobs/master/b.json"),
            Evidence::Doubtful(_)
        ));
    }

    #[test]
    fn prefixes_are_whole_segments() {
        assert_eq!(segment_prefix("deploy/main"), "deploy/main/");
        assert_eq!(segment_prefix("deploy/main/"), "deploy/main/");
        assert_eq!(segment_prefix(""), "");
        let pairs = vec![
            kv("deploy/main/a.json", 1, Some(r#"{"id":"a","cmd":"x"}"#)),
            kv(
                "deploy/main-canary/b.json",
                1,
                Some(r#"{"id":"b","cmd":"x"}"#),
            ),
        ];
        let d = classify(&pairs, "deploy/main", false);
        assert_eq!(d.apps.len(), 1);
        assert_eq!(d.apps[0].id, "/a");
    }

    #[test]
    fn prefix_limits_what_is_read_and_marks_replace_user_values() {
        let pairs = vec![
            kv(
                "a/x.json",
                1,
                Some(r#"{"id":"x","cmd":"x","labels":{"shipwatch.managed-by":"me"}}"#),
            ),
            kv("b/y.json", 1, Some(r#"{"id":"y","cmd":"y"}"#)),
        ];
        let d = classify(&pairs, "a/", false);
        assert_eq!(d.apps.len(), 1);
        assert_eq!(
            d.apps[0].body()["labels"],
            json!({"shipwatch.managed-by":"kv2jobs","shipwatch.source-key":"a/x.json"})
        );
    }
}
