//! Desired vs live → the list of writes (and of what stays as it is), before anything is sent.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use marathon::app::absolute_id;
use marathon::diff::field_diff;
use marathon::job::{parents_first, parents_of};
use marathon::normalize::{
    canonical_app, canonical_app_owned, canonical_apps_match, comparable_apps_canonical,
    comparable_jobs,
};
use serde_json::Value;

use crate::config::{app_owner, job_owner, Desired, Evidence};
use crate::rules::{Rules, ENV_PRUNE, ENV_SYNC, LABEL_PRUNE, LABEL_SYNC};

/// An app definition to write, as compact JSON text: a first deploy of 200,000 apps holds
/// 200,000 of them until they are written (as trees they took about five times the payload;
/// issue 13 item 5). Serialized as it is (a bulk `PUT /v2/apps` body is a list of them).
#[derive(Debug, Clone)]
pub struct AppDoc(std::sync::Arc<str>);

impl AppDoc {
    pub fn of(app: &Value) -> AppDoc {
        AppDoc(
            serde_json::to_string(app)
                .unwrap_or_else(|_| "{}".into())
                .into(),
        )
    }

    /// `text`: the compact JSON of a definition, written from a value (shared, not copied).
    pub(crate) fn from_text(text: std::sync::Arc<str>) -> AppDoc {
        AppDoc(text)
    }

    /// The definition as a value (parsed anew).
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or_default()
    }
}

impl PartialEq for AppDoc {
    fn eq(&self, other: &AppDoc) -> bool {
        self.value() == other.value()
    }
}

impl serde::Serialize for AppDoc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // As the JSON it is (not as a string).
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

/// What to do for one target.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    PutApp(AppDoc),
    DeleteApp,
    PutJob(Value),
    DeleteJob,
    /// Nothing to write (unchanged, skipped, refused).
    Nothing,
}

/// One line of the plan.
#[derive(Debug, Clone)]
pub struct Item {
    /// `create-app`, `update-app`, `delete-app`, `create-job`, `update-job`, `delete-job`,
    /// `config` (a key), `prune` (a refusal).
    pub kind: &'static str,
    pub target: String,
    pub op: Op,
    /// For `Op::Nothing`: unchanged (true) or skipped (false).
    pub unchanged: bool,
    pub detail: String,
}

impl Item {
    fn write(kind: &'static str, target: &str, op: Op, detail: String) -> Item {
        Item {
            kind,
            target: target.to_string(),
            op,
            unchanged: false,
            detail,
        }
    }

    fn nothing(kind: &'static str, target: &str, unchanged: bool, detail: String) -> Item {
        Item {
            kind,
            target: target.to_string(),
            op: Op::Nothing,
            unchanged,
            detail,
        }
    }

    pub fn is_write(&self) -> bool {
        !matches!(self.op, Op::Nothing)
    }
}

/// Settings that shape the plan.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    pub prefix: String,
    pub prune: bool,
    pub allow_empty: bool,
}

/// The plan, plus configs rejected while planning (unknown parents, cycles, a config key that
/// now holds no job config): (key, reason).
#[derive(Debug, Default)]
pub struct Plan {
    pub items: Vec<Item>,
    pub rejected: Vec<(String, String)>,
    /// Live apps and jobs with the ownership mark under `--prefix` (the base of
    /// `--max-delete`'s percentage).
    pub managed: usize,
    /// Deletes held back because the payload is not a complete, consistent snapshot:
    /// why → how many.
    pub held_back: BTreeMap<String, usize>,
}

impl Plan {
    pub fn writes(&self) -> usize {
        self.items.iter().filter(|i| i.is_write()).count()
    }

    /// Every app id and job name the plan names.
    /// The targets of the items that are not "unchanged": those a team's message can name.
    pub fn news_targets(&self) -> BTreeSet<&str> {
        self.items
            .iter()
            .filter(|i| !i.unchanged)
            .map(|i| i.target.as_str())
            .collect()
    }

    pub fn deletes(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i.op, Op::DeleteApp | Op::DeleteJob))
            .count()
    }

    /// The delete cap: when the plan deletes more than `max` allows, no delete is made; each is
    /// turned into a skipped item naming the guard and the override. Returns the warning.
    pub fn cap_deletes(&mut self, max: MaxDelete) -> Option<String> {
        let deletes = self.deletes();
        let cap = max.cap(self.managed);
        if deletes <= cap {
            return None;
        }
        let why = format!(
            "{deletes} deletes exceed --max-delete {max} (at most {cap} of {} managed apps and jobs)",
            self.managed
        );
        for it in self
            .items
            .iter_mut()
            .filter(|i| matches!(i.op, Op::DeleteApp | Op::DeleteJob))
        {
            it.op = Op::Nothing;
            it.detail = format!(
                "{}; not deleted: {why}; if these removals are intended, rerun with --max-delete {deletes} (or 100%)",
                it.detail
            );
        }
        Some(format!(
            "delete cap: {why}; nothing was deleted (rerun with --max-delete {deletes}, or 100%, if intended)"
        ))
    }
}

/// `--max-delete N|P%`: how many deletes one run may make.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxDelete {
    Count(usize),
    /// A percentage of the managed apps and jobs, at least [`MaxDelete::FLOOR`].
    Percent(f64),
}

impl MaxDelete {
    /// A percentage never allows fewer deletes than this (a small cluster can still prune).
    pub const FLOOR: usize = 5;

    pub fn cap(self, managed: usize) -> usize {
        match self {
            MaxDelete::Count(n) => n,
            MaxDelete::Percent(p) if p >= 100.0 => usize::MAX,
            MaxDelete::Percent(p) => {
                ((managed as f64 * p / 100.0).floor() as usize).max(Self::FLOOR)
            }
        }
    }

    /// Parses `20%` or `7` (clap value parser).
    pub fn parse(s: &str) -> Result<MaxDelete, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a percentage like 20%"))?;
            if !(0.0..=100.0).contains(&v) || v.is_nan() {
                return Err(format!("{s:?}: a percentage is between 0% and 100%"));
            }
            return Ok(MaxDelete::Percent(v));
        }
        s.parse()
            .map(MaxDelete::Count)
            .map_err(|_| format!("{s:?} is neither a count (7) nor a percentage (20%)"))
    }
}

impl Default for MaxDelete {
    fn default() -> Self {
        MaxDelete::Percent(20.0)
    }
}

impl std::fmt::Display for MaxDelete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxDelete::Count(n) => write!(f, "{n}"),
            MaxDelete::Percent(p) => write!(f, "{p}%"),
        }
    }
}

fn diff_detail(key: &str, live_c: &Value, desired_c: &Value) -> String {
    let changes = field_diff(live_c, desired_c);
    let mut s = format!("from {key}; {} field(s) differ", changes.len());
    for c in changes {
        s.push('\n');
        s.push_str(&c.to_string());
    }
    s
}

/// What the reader of the live apps compares them with, as it decodes them (issue 13): only
/// configs whose rules are plain (synced, nothing ignored); the others are compared by
/// [`plan_apps`] itself.
#[derive(Debug, Default)]
pub struct Expected {
    /// App id → the config through `normalize::canonical_app`, as compact JSON text (a tenth
    /// of its size as a tree).
    pub forms: HashMap<String, String>,
    /// App id → the live version at which `--cache-dir` found this very config deployed: a
    /// live app still at that version is equal without a comparison.
    pub versions: HashMap<String, String>,
    /// The other configured apps (rules that pause or ignore fields): `plan_apps` compares them.
    pub others: Vec<String>,
    /// Some `.json` key holds no job config: the plan looks for live apps that came from it,
    /// which needs every live app (see `reject_non_configs`).
    pub needs_every_app: bool,
}

/// The live apps of the one bulk `GET /v2/apps`, each through `normalize::canonical_app`, except
/// those found equal to their config as they were read (ids in `same`): of these only `id` and
/// `labels` are kept (ownership and routing need no more), so 10,000 unchanged apps are never
/// held whole (issue 13).
#[derive(Debug, Default)]
pub struct LiveApps {
    pub apps: Vec<Value>,
    pub same: HashSet<String>,
    /// The live `version` of each app that has a config in [`Expected`] (for `--cache-dir`).
    pub versions: HashMap<String, String>,
    /// Apps found equal by their version alone (`--cache-dir`).
    pub cached: usize,
    /// Marathon's newest root group version read before the apps (`--cache-dir`).
    pub root: Option<String>,
    /// Only the apps without a verdict were read (`GET /v2/apps/{id}`): Marathon had not
    /// changed since the verdicts were written; the others are `id` only.
    pub unchanged_since_cache: bool,
}

impl LiveApps {
    /// Whether `app` is known equal to its live app without planning it: found so as the live
    /// apps were read, or (Marathon unchanged since the cache was written) it has a verdict.
    /// Only apps whose rules are plain get either.
    pub fn known_equal(&self, app: &crate::config::DesiredApp) -> bool {
        let plain = matches!(&app.rules, Ok(r) if r.sync && r.ignore.is_empty());
        plain
            && (self.same.contains(&app.id)
                || (self.unchanged_since_cache && app.cached_version.is_some()))
    }

    /// The live version of a configured app, as read or (Marathon unchanged since the cache
    /// was written) as the cache knows it.
    pub fn version_of<'a>(&'a self, app: &'a crate::config::DesiredApp) -> Option<&'a str> {
        match self.versions.get(&app.id) {
            Some(v) => Some(v),
            None if self.unchanged_since_cache => app.cached_version.as_deref(),
            None => None,
        }
    }
}

impl From<Vec<Value>> for LiveApps {
    fn from(apps: Vec<Value>) -> Self {
        LiveApps {
            apps,
            ..LiveApps::default()
        }
    }
}

/// See [`Expected`]: the forms are made now, after the payload's decoded values are dropped
/// (a first deploy of 200,000 apps never holds both; issue 13 item 5).
pub fn expected(desired: &Desired) -> Expected {
    let mut e = Expected {
        needs_every_app: !desired.non_configs.is_empty(),
        ..Expected::default()
    };
    for a in &desired.apps {
        if a.compared_early {
            e.forms.insert(a.id.clone(), a.form());
        } else if let Some(v) = &a.cached_version {
            e.versions.insert(a.id.clone(), v.clone());
        } else {
            e.others.push(a.id.clone());
        }
    }
    e
}

/// The live apps when Marathon has not changed since `--cache-dir`'s verdicts were written
/// (its newest root group version is the one they were written at): the apps with a verdict
/// are equal (`id` only), the others are read one by one. `None` when that does not serve:
/// more than `max` apps to read, or a plan that needs every live app.
pub fn read_unverified(
    m: &marathon::Marathon,
    expected: &Expected,
    max: usize,
) -> Result<Option<LiveApps>, marathon::MarathonError> {
    let singles: Vec<&String> = expected.forms.keys().chain(&expected.others).collect();
    if expected.needs_every_app || singles.len() > max {
        return Ok(None);
    }
    // The apps with a verdict are known equal by `LiveApps::known_equal` (and their version by
    // `version_of`): nothing is held for them.
    let mut live = LiveApps {
        unchanged_since_cache: true,
        cached: expected.versions.len(),
        ..LiveApps::default()
    };
    for id in singles {
        let Some(app) = m.get_app(id)? else {
            continue;
        };
        if let Some(v) = app.get("version").and_then(Value::as_str) {
            if expected.forms.contains_key(id) {
                live.versions.insert(id.clone(), v.to_string());
            }
        }
        let app = reduce_live_app(app, &expected.forms, &mut live.same);
        live.apps.push(app);
    }
    Ok(Some(live))
}

/// The fields of a live app read before deciding whether the rest is needed.
#[derive(serde::Deserialize)]
struct AppHead<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    version: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    labels: Option<serde_json::Map<String, Value>>,
}

/// One live app as it is read (see [`LiveApps`]), from its raw JSON: still at the version the
/// cache knows equal → `id` and `labels` only; else normalized, compared with its config's
/// form when there is one, and cut down to `id` and `labels` when they are equal.
pub fn reduce_live_raw(
    raw: &serde_json::value::RawValue,
    expected: &Expected,
    live: &mut LiveApps,
) -> Value {
    let head = serde_json::from_str::<AppHead<'_>>(raw.get()).ok();
    if let Some(mut h) = head {
        let (id, version) = (absolute_id(&h.id, "/"), h.version.as_deref());
        if let Some(v) = version
            .filter(|_| expected.forms.contains_key(&id) || expected.versions.contains_key(&id))
        {
            live.versions.insert(id.clone(), v.to_string());
        }
        if version.is_some() && expected.versions.get(&id).map(String::as_str) == version {
            let mut stub = serde_json::Map::new();
            stub.insert("id".into(), Value::String(id.clone()));
            if let Some(l) = h.labels.take() {
                stub.insert("labels".into(), Value::Object(l));
            }
            live.same.insert(id);
            live.cached += 1;
            return Value::Object(stub);
        }
    }
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(app) => reduce_live_app(app, &expected.forms, &mut live.same),
        Err(_) => Value::Null,
    }
}

/// One live app as it is read (see [`LiveApps`]): normalized, compared with its config's form
/// when there is one, and cut down to `id` and `labels` when they are equal.
pub fn reduce_live_app(
    app: Value,
    forms: &HashMap<String, String>,
    same: &mut HashSet<String>,
) -> Value {
    let live = canonical_app_owned(app);
    let Some(id) = live.get("id").and_then(Value::as_str) else {
        return live;
    };
    let equal = forms
        .get(id)
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .is_some_and(|d| canonical_apps_match(&d, &live));
    if !equal {
        return live;
    }
    same.insert(id.to_string());
    let mut stub = serde_json::Map::new();
    if let Value::Object(mut o) = live {
        for k in ["id", "labels"] {
            if let Some(v) = o.remove(k) {
                stub.insert(k.to_string(), v);
            }
        }
    }
    Value::Object(stub)
}

/// Plans Marathon apps. `live` is the one bulk `GET /v2/apps` (see [`LiveApps`]).
/// The bodies of apps to write are moved out of `desired` (10,000 configs must not be held
/// twice).
pub fn plan_apps(desired: &mut Desired, live: &LiveApps, opts: &PlanOptions, plan: &mut Plan) {
    let all = live;
    let live = &live.apps[..];
    let by_id: HashMap<&str, &Value> = live
        .iter()
        .filter_map(|a| a.get("id").and_then(Value::as_str).map(|id| (id, a)))
        .collect();
    for app in desired.apps.iter_mut() {
        if all.known_equal(app) {
            // Found equal as the live apps were read, or known so from --cache-dir (issue 13).
            plan.items.push(Item::nothing(
                "update-app",
                &app.id,
                true,
                format!("from {}; no change", app.key),
            ));
            continue;
        }
        let live = by_id.get(app.id.as_str());
        let kind = if live.is_some() {
            "update-app"
        } else {
            "create-app"
        };
        let rules = match &app.rules {
            Ok(r) => r,
            Err(e) => {
                plan.rejected
                    .push((app.key.clone(), format!("app {}: {e}", app.id)));
                continue;
            }
        };
        if !rules.sync {
            plan.items.push(Item::nothing(
                kind,
                &app.id,
                false,
                format!(
                    "from {}; paused (label {LABEL_SYNC}=false): nothing written",
                    app.key
                ),
            ));
            continue;
        }
        match live {
            None => plan.items.push(Item::write(
                kind,
                &app.id,
                Op::PutApp(app.doc()),
                format!("from {}", app.key),
            )),
            Some(l)
                if rules.ignore.is_empty()
                    && canonical_apps_match(&canonical_app(&app.body()), l) =>
            {
                // Checked without copying the live app (issue 13).
                plan.items.push(Item::nothing(
                    kind,
                    &app.id,
                    true,
                    format!("from {}; no change", app.key),
                ));
            }
            Some(l) => {
                let mut body = app.body();
                let (mut d, mut lc) = comparable_apps_canonical(&body, l);
                // Ignored fields are compared on neither side, so a live change to them is no
                // drift, and a write for another change carries their live values.
                rules.strip(&mut d);
                rules.strip(&mut lc);
                if d == lc {
                    plan.items.push(Item::nothing(
                        kind,
                        &app.id,
                        true,
                        format!("from {}; no change", app.key),
                    ));
                } else {
                    rules.keep_live(&mut body, l);
                    plan.items.push(Item::write(
                        kind,
                        &app.id,
                        Op::PutApp(AppDoc::of(&body)),
                        diff_detail(&app.key, &lc, &d),
                    ));
                }
            }
        }
    }
    let wanted: BTreeSet<&str> = desired.apps.iter().map(|a| a.id.as_str()).collect();
    let managed: Vec<(&str, &str)> = live
        .iter()
        .filter_map(|a| Some((a.get("id")?.as_str()?, app_owner(a)?)))
        .filter(|(_, key)| key.starts_with(&opts.prefix))
        .collect();
    plan.managed += managed.len();
    let mut unwanted: Vec<(&str, &str)> = managed
        .into_iter()
        .filter(|(id, _)| !wanted.contains(id))
        .collect();
    unwanted.sort();
    reject_non_configs(desired, &unwanted, "app", plan);
    if !prune_allowed(desired, opts, plan) {
        return;
    }
    let rejected = desired.rejected_keys();
    for (id, key) in unwanted {
        let fate = if rejected.contains(key) {
            Fate::Keep(format!("kept: its config {key} was rejected this run"))
        } else if let Some(why) = by_id.get(id).and_then(|l| kept_by_rules(Rules::of_app(l))) {
            Fate::Keep(why)
        } else {
            prune_fate(desired, key, plan)
        };
        match fate {
            Fate::Delete => plan.items.push(Item::write(
                "delete-app",
                id,
                Op::DeleteApp,
                format!("managed by kv2jobs, config {key} is gone"),
            )),
            Fate::Keep(why) => plan.items.push(Item::nothing("delete-app", id, false, why)),
            Fate::Ignore => {}
        }
    }
}

/// Why a live app/job's own rules keep it from `--prune` (`shipwatch.prune=false`, or paused);
/// rules that do not parse keep it too (never destroy on doubtful evidence).
fn kept_by_rules(rules: Result<Rules, String>) -> Option<String> {
    match rules {
        Ok(r) if !r.prune => Some(format!(
            "kept: its rules say never prune ({LABEL_PRUNE}=false / {ENV_PRUNE}=false)"
        )),
        Ok(r) if !r.sync => Some(format!(
            "kept: paused ({LABEL_SYNC}=false / {ENV_SYNC}=false), nothing is written for it"
        )),
        Ok(_) => None,
        Err(e) => Some(format!("kept: its rules do not parse ({e})")),
    }
}

/// What `--prune` does with a live app/job whose config is not in this payload.
enum Fate {
    Delete,
    /// Reported as skipped, with why.
    Keep(String),
    /// Its branch is not part of this payload: not considered at all.
    Ignore,
}

/// The guards every delete passes (issue 11): a source key still in the payload keeps its
/// apps whatever it holds, and a delete needs a complete, consistent snapshot of its branch.
fn prune_fate(desired: &Desired, key: &str, plan: &mut Plan) -> Fate {
    if desired.non_configs.contains_key(key) {
        return Fate::Keep(format!(
            "kept: its config {key} is still in the payload but holds no job config (rejected)"
        ));
    }
    match desired.snapshot.evidence(key) {
        Evidence::Complete => Fate::Delete,
        Evidence::OutOfScope => Fate::Ignore,
        Evidence::Doubtful(why) => {
            *plan.held_back.entry(why.clone()).or_default() += 1;
            Fate::Keep(format!(
                "not deleted (config {key} not in the payload): {why}; held back until a complete \
                 snapshot (no override: the next consistent run prunes)"
            ))
        }
    }
}

/// A key that defined live apps/jobs and is still in the payload but now holds no job config
/// (a typo `"ID"`, a file truncated to `{}`) is a broken config, not a removal: rejected (65).
fn reject_non_configs(desired: &Desired, unwanted: &[(&str, &str)], what: &str, plan: &mut Plan) {
    let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, key) in unwanted {
        if desired.non_configs.contains_key(*key) {
            by_key.entry(key).or_default().push(id);
        }
    }
    for (key, ids) in by_key {
        let why = &desired.non_configs[key];
        plan.rejected.push((
            key.to_string(),
            format!(
                "{why}, but live {what}(s) {} came from it: kept; fix the file (removing it from Git deletes {})",
                runtime::text::capped_list(&ids),
                if ids.len() == 1 { "it" } else { "them" }
            ),
        ));
    }
}

/// Prune only runs over a whole, non-empty prefix (or with --allow-empty).
fn prune_allowed(desired: &Desired, opts: &PlanOptions, plan: &mut Plan) -> bool {
    if !opts.prune {
        return false;
    }
    if desired.single_key {
        if !plan.items.iter().any(|i| i.kind == "prune") {
            plan.items.push(Item::nothing(
                "prune",
                &opts.prefix,
                false,
                "not pruning: the payload is a single key, not the whole prefix".into(),
            ));
        }
        return false;
    }
    if desired.is_empty() && !opts.allow_empty {
        if !plan.items.iter().any(|i| i.kind == "prune") {
            plan.items.push(Item::nothing(
                "prune",
                &opts.prefix,
                false,
                "not pruning: the payload holds no job config (pass --allow-empty to delete every managed app and job)".into(),
            ));
        }
        return false;
    }
    true
}

/// Plans Chronos jobs (parents before children). `live` is the one jobs list; `None` when no
/// Chronos is configured.
pub fn plan_jobs(desired: &Desired, live: Option<&[Value]>, opts: &PlanOptions, plan: &mut Plan) {
    let Some(live) = live else {
        for j in &desired.jobs {
            plan.items.push(Item::nothing(
                "create-job",
                &j.name,
                false,
                format!(
                    "from {}; skipped: no --chronos / CHRONOS_URL configured",
                    j.key
                ),
            ));
        }
        return;
    };
    let by_name: HashMap<&str, &Value> = live
        .iter()
        .filter_map(|j| j.get("name").and_then(Value::as_str).map(|n| (n, j)))
        .collect();
    // Parents must exist (in Git or in Chronos) and form no cycle.
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let desired_names: BTreeSet<&str> = desired.jobs.iter().map(|j| j.name.as_str()).collect();
    let mut bad: BTreeMap<String, String> = BTreeMap::new();
    for j in &desired.jobs {
        let parents = parents_of(&j.body);
        if let Some(p) = parents
            .iter()
            .find(|p| !desired_names.contains(p.as_str()) && !by_name.contains_key(p.as_str()))
        {
            bad.insert(
                j.name.clone(),
                format!(
                    "job {}: parent {p} is neither in the configs nor in Chronos",
                    j.name
                ),
            );
        }
        graph.insert(j.name.clone(), parents);
    }
    // Children of a rejected job cannot be posted either.
    loop {
        let more: Vec<(String, String)> = graph
            .iter()
            .filter(|(n, ps)| !bad.contains_key(*n) && ps.iter().any(|p| bad.contains_key(p)))
            .map(|(n, ps)| {
                let p = ps
                    .iter()
                    .find(|p| bad.contains_key(*p))
                    .cloned()
                    .unwrap_or_default();
                (n.clone(), format!("job {n}: its parent {p} was rejected"))
            })
            .collect();
        if more.is_empty() {
            break;
        }
        bad.extend(more);
    }
    graph.retain(|n, _| !bad.contains_key(n));
    let order = match parents_first(&graph) {
        Ok(o) => o,
        Err(cycle) => {
            for n in &cycle {
                bad.insert(
                    n.clone(),
                    format!("job {n}: parents form a cycle ({})", cycle.join(", ")),
                );
            }
            graph.retain(|n, _| !cycle.contains(n));
            parents_first(&graph).unwrap_or_default()
        }
    };
    for j in &desired.jobs {
        if let Some(why) = bad.get(&j.name) {
            plan.rejected.push((j.key.clone(), why.clone()));
        }
    }
    let by_desired: HashMap<&str, &crate::config::DesiredJob> =
        desired.jobs.iter().map(|j| (j.name.as_str(), j)).collect();
    for name in &order {
        let Some(j) = by_desired.get(name.as_str()) else {
            continue;
        };
        let live = by_name.get(name.as_str());
        let rules = match Rules::of_job(&j.body) {
            Ok(r) => r,
            Err(e) => {
                plan.rejected
                    .push((j.key.clone(), format!("job {name}: {e}")));
                continue;
            }
        };
        if !rules.sync {
            plan.items.push(Item::nothing(
                if live.is_some() {
                    "update-job"
                } else {
                    "create-job"
                },
                name,
                false,
                format!("from {}; paused ({ENV_SYNC}=false): nothing written", j.key),
            ));
            continue;
        }
        match live {
            None => plan.items.push(Item::write(
                "create-job",
                name,
                Op::PutJob(j.body.clone()),
                format!("from {}", j.key),
            )),
            Some(l) => {
                let (mut d, mut lc) = comparable_jobs(&j.body, l);
                rules.strip(&mut d);
                rules.strip(&mut lc);
                if d == lc {
                    plan.items.push(Item::nothing(
                        "update-job",
                        name,
                        true,
                        format!("from {}; no change", j.key),
                    ));
                } else {
                    let mut body = j.body.clone();
                    rules.keep_live(&mut body, l);
                    plan.items.push(Item::write(
                        "update-job",
                        name,
                        Op::PutJob(body),
                        diff_detail(&j.key, &lc, &d),
                    ));
                }
            }
        }
    }
    let managed: Vec<(&str, &str, &Value)> = live
        .iter()
        .filter_map(|l| Some((l.get("name")?.as_str()?, job_owner(l)?, l)))
        .filter(|(_, key, _)| key.starts_with(&opts.prefix))
        .collect();
    plan.managed += managed.len();
    let unwanted: Vec<(&str, &str, &Value)> = managed
        .into_iter()
        .filter(|(name, _, _)| !desired_names.contains(name))
        .collect();
    let pairs: Vec<(&str, &str)> = unwanted.iter().map(|(n, k, _)| (*n, *k)).collect();
    reject_non_configs(desired, &pairs, "job", plan);
    if !prune_allowed(desired, opts, plan) {
        return;
    }
    let rejected = desired.rejected_keys();
    let rejected_now: BTreeSet<String> = plan.rejected.iter().map(|(k, _)| k.clone()).collect();
    // Parents of a wanted job stay (Chronos would rewire the children on delete).
    let needed: BTreeSet<String> = desired
        .jobs
        .iter()
        .flat_map(|j| parents_of(&j.body))
        .collect();
    let mut gone: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut keys: HashMap<String, String> = HashMap::new();
    for (name, key, l) in unwanted {
        let fate = if rejected.contains(key) || rejected_now.contains(key) {
            Fate::Keep(format!("kept: its config {key} was rejected this run"))
        } else if let Some(why) = kept_by_rules(Rules::of_job(l)) {
            Fate::Keep(why)
        } else if needed.contains(name) {
            Fate::Keep(format!(
                "kept: a configured job names it as a parent (its config {key} is gone)"
            ))
        } else {
            prune_fate(desired, key, plan)
        };
        match fate {
            Fate::Delete => {
                gone.insert(name.to_string(), parents_of(l));
                keys.insert(name.to_string(), key.to_string());
            }
            Fate::Keep(why) => plan
                .items
                .push(Item::nothing("delete-job", name, false, why)),
            Fate::Ignore => {}
        }
    }
    // Children before parents.
    let mut order = parents_first(&gone).unwrap_or_else(|_| gone.keys().cloned().collect());
    order.reverse();
    for name in order {
        let key = keys.get(&name).cloned().unwrap_or_default();
        plan.items.push(Item::write(
            "delete-job",
            &name,
            Op::DeleteJob,
            format!("managed by kv2jobs, config {key} is gone"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::classify;
    use serde_json::json;
    use watch::KvPair;

    fn kv(key: &str, value: &str) -> KvPair {
        KvPair {
            key: key.into(),
            create_index: 5,
            modify_index: 5,
            lock_index: 0,
            flags: 0,
            value: Some(value.as_bytes().to_vec()),
            session: String::new(),
        }
    }

    /// What Marathon 1.5 returns for a body kv2jobs PUT (defaults and server fields added).
    fn served(body: &Value) -> Value {
        let mut v = body.clone();
        let o = v.as_object_mut().unwrap();
        for (k, d) in [
            ("instances", json!(1)),
            ("cpus", json!(1.0)),
            ("mem", json!(128.0)),
            ("disk", json!(0)),
            ("gpus", json!(0)),
            ("backoffSeconds", json!(1)),
            ("backoffFactor", json!(1.15)),
            ("maxLaunchDelaySeconds", json!(300)),
            ("killSelection", json!("YOUNGEST_FIRST")),
            ("networks", json!([{"mode":"host"}])),
            (
                "portDefinitions",
                json!([{"port":10000,"name":"default","protocol":"tcp"}]),
            ),
            (
                "upgradeStrategy",
                json!({"minimumHealthCapacity":1,"maximumOverCapacity":1}),
            ),
            ("version", json!("2026-11-24T22:00:00.000Z")),
            ("tasksRunning", json!(1)),
            ("env", json!({})),
            ("constraints", json!([])),
        ] {
            o.entry(k).or_insert(d);
        }
        v
    }

    fn canon(live: Vec<Value>) -> LiveApps {
        live.iter()
            .map(marathon::normalize::canonical_app)
            .collect::<Vec<_>>()
            .into()
    }

    fn desired(pairs: &[KvPair]) -> Desired {
        classify(pairs, "", false)
    }

    #[test]
    fn first_deploy_then_replay_is_a_no_op() {
        let pairs = [kv("j/b/a.json", r#"{"id":"a","cmd":"sleep 1","mem":32}"#)];
        let mut plan = Plan::default();
        plan_apps(
            &mut desired(&pairs),
            &LiveApps::default(),
            &PlanOptions::default(),
            &mut plan,
        );
        assert_eq!(plan.items[0].kind, "create-app");
        let Op::PutApp(body) = &plan.items[0].op else {
            panic!()
        };
        let live = canon(vec![served(&body.value())]);
        let mut plan = Plan::default();
        // Bodies move into the plan: every run classifies afresh, as the binary does.
        plan_apps(
            &mut desired(&pairs),
            &live,
            &PlanOptions::default(),
            &mut plan,
        );
        assert_eq!(plan.writes(), 0, "{:?}", plan.items);
        assert!(plan.items[0].unchanged);
    }

    #[test]
    fn changes_show_per_field() {
        let mut d = desired(&[kv("j/b/a.json", r#"{"id":"a","cmd":"sleep 2","mem":32}"#)]);
        let old = desired(&[kv(
            "j/b/a.json",
            r#"{"id":"a","cmd":"sleep 1","mem":32,"env":{"X":"1"}}"#,
        )]);
        let live = canon(vec![served(&old.apps[0].body())]);
        let mut plan = Plan::default();
        plan_apps(&mut d, &live, &PlanOptions::default(), &mut plan);
        assert_eq!(plan.items[0].kind, "update-app");
        let detail = &plan.items[0].detail;
        assert!(
            detail.contains(r#"cmd: "sleep 1" -> "sleep 2""#),
            "{detail}"
        );
        assert!(detail.contains(r#"env: {"X":"1"} -> (absent)"#), "{detail}");
    }

    #[test]
    fn prune_only_touches_managed_apps_under_the_prefix() {
        // With the branch's .ref: a complete snapshot of j/b/.
        let mut d = desired(&[
            kv("j/b/a.json", r#"{"id":"a","cmd":"x"}"#),
            kv("j/b.ref", "sha"),
        ]);
        let live = canon(vec![
            served(&d.apps[0].body()),
            json!({"id":"/gone","cmd":"x","labels":{"shipwatch.managed-by":"kv2jobs","shipwatch.source-key":"j/b/gone.json"}}),
            json!({"id":"/other","cmd":"x","labels":{"shipwatch.managed-by":"kv2jobs","shipwatch.source-key":"k/b/o.json"}}),
            json!({"id":"/manual","cmd":"x"}),
        ]);
        let opts = PlanOptions {
            prefix: "j/".into(),
            prune: true,
            allow_empty: false,
        };
        let mut plan = Plan::default();
        plan_apps(&mut d, &live, &opts, &mut plan);
        let deletes: Vec<&str> = plan
            .items
            .iter()
            .filter(|i| i.op == Op::DeleteApp)
            .map(|i| i.target.as_str())
            .collect();
        assert_eq!(deletes, vec!["/gone"]);
        // Empty payload: refused unless --allow-empty.
        let mut empty = desired(&[kv("j/b.ref", "sha")]);
        let mut plan = Plan::default();
        plan_apps(&mut empty, &live, &opts, &mut plan);
        assert_eq!(plan.writes(), 0);
        assert!(plan.items.iter().any(|i| i.kind == "prune"));
        let mut plan = Plan::default();
        plan_apps(
            &mut empty,
            &live,
            &PlanOptions {
                allow_empty: true,
                ..opts.clone()
            },
            &mut plan,
        );
        assert_eq!(plan.writes(), 2);
        // Without the .ref (a wiped prefix being re-mirrored): nothing deleted, held back.
        let mut no_ref = desired(&[kv("j/b/a.json", r#"{"id":"a","cmd":"x"}"#)]);
        let mut plan = Plan::default();
        plan_apps(&mut no_ref, &live, &opts, &mut plan);
        assert_eq!(plan.deletes(), 0);
        assert_eq!(
            plan.held_back.values().sum::<usize>(),
            1,
            "{:?}",
            plan.items
        );
    }

    #[test]
    fn the_delete_cap_holds_back_every_delete() {
        assert_eq!(MaxDelete::parse("20%"), Ok(MaxDelete::Percent(20.0)));
        assert_eq!(MaxDelete::parse("7"), Ok(MaxDelete::Count(7)));
        assert!(MaxDelete::parse("120%").is_err() && MaxDelete::parse("x").is_err());
        assert_eq!(MaxDelete::Percent(20.0).cap(3), 5, "at least 5");
        assert_eq!(MaxDelete::Percent(20.0).cap(100), 20);
        assert_eq!(MaxDelete::Percent(100.0).cap(100), usize::MAX);
        let mut plan = Plan {
            managed: 10,
            ..Plan::default()
        };
        for i in 0..6 {
            plan.items.push(Item::write(
                "delete-app",
                &format!("/a{i}"),
                Op::DeleteApp,
                "gone".into(),
            ));
        }
        let w = plan.cap_deletes(MaxDelete::default()).unwrap();
        assert!(w.contains("--max-delete 6"), "{w}");
        assert_eq!(plan.deletes(), 0);
        assert!(
            plan.items[0].detail.contains("--max-delete"),
            "{:?}",
            plan.items[0]
        );
    }

    #[test]
    fn jobs_parents_first_and_unknown_parents_rejected() {
        let d = desired(&[
            kv(
                "j/b/c.json",
                r#"{"name":"c","command":"x","parents":["b"]}"#,
            ),
            kv(
                "j/b/b.json",
                r#"{"name":"b","command":"x","parents":["a"]}"#,
            ),
            kv(
                "j/b/a.json",
                r#"{"name":"a","command":"x","schedule":"R//PT1H"}"#,
            ),
            kv(
                "j/b/o.json",
                r#"{"name":"o","command":"x","parents":["nowhere"]}"#,
            ),
        ]);
        let mut plan = Plan::default();
        plan_jobs(&d, Some(&[]), &PlanOptions::default(), &mut plan);
        let order: Vec<&str> = plan.items.iter().map(|i| i.target.as_str()).collect();
        assert_eq!(order, vec!["a", "b", "c"]);
        assert_eq!(plan.rejected.len(), 1);
        assert!(plan.rejected[0].1.contains("nowhere"));
    }
}
