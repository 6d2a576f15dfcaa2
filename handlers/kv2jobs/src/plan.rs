//! Desired vs live → the list of writes (and of what stays as it is), before anything is sent.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use marathon::diff::field_diff;
use marathon::job::{parents_first, parents_of};
use marathon::normalize::{comparable_apps_canonical, comparable_jobs};
use serde_json::Value;

use crate::config::{app_owner, job_owner, Desired};

/// What to do for one target.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    PutApp(Value),
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

/// The plan, plus configs rejected while planning (unknown parents, cycles): (key, reason).
#[derive(Debug, Default)]
pub struct Plan {
    pub items: Vec<Item>,
    pub rejected: Vec<(String, String)>,
}

impl Plan {
    pub fn writes(&self) -> usize {
        self.items.iter().filter(|i| i.is_write()).count()
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

/// Plans Marathon apps. `live` is the one bulk `GET /v2/apps`, each app already passed through
/// `normalize::canonical_app` (ids and labels survive it).
/// The bodies of apps to write are moved out of `desired` (10,000 configs must not be held
/// twice).
pub fn plan_apps(desired: &mut Desired, live: &[Value], opts: &PlanOptions, plan: &mut Plan) {
    let by_id: HashMap<&str, &Value> = live
        .iter()
        .filter_map(|a| a.get("id").and_then(Value::as_str).map(|id| (id, a)))
        .collect();
    for app in desired.apps.iter_mut() {
        match by_id.get(app.id.as_str()) {
            None => plan.items.push(Item::write(
                "create-app",
                &app.id,
                Op::PutApp(std::mem::take(&mut app.body)),
                format!("from {}", app.key),
            )),
            Some(l) => {
                let (d, lc) = comparable_apps_canonical(&app.body, l);
                if d == lc {
                    plan.items.push(Item::nothing(
                        "update-app",
                        &app.id,
                        true,
                        format!("from {}; no change", app.key),
                    ));
                } else {
                    plan.items.push(Item::write(
                        "update-app",
                        &app.id,
                        Op::PutApp(std::mem::take(&mut app.body)),
                        diff_detail(&app.key, &lc, &d),
                    ));
                }
            }
        }
    }
    if !prune_allowed(desired, opts, plan) {
        return;
    }
    let wanted: BTreeSet<&str> = desired.apps.iter().map(|a| a.id.as_str()).collect();
    let rejected = desired.rejected_keys();
    let mut ids: Vec<(&str, &str)> = live
        .iter()
        .filter_map(|a| Some((a.get("id")?.as_str()?, app_owner(a)?)))
        .filter(|(id, key)| key.starts_with(&opts.prefix) && !wanted.contains(id))
        .collect();
    ids.sort();
    for (id, key) in ids {
        if rejected.contains(key) {
            plan.items.push(Item::nothing(
                "delete-app",
                id,
                false,
                format!("kept: its config {key} was rejected this run"),
            ));
        } else {
            plan.items.push(Item::write(
                "delete-app",
                id,
                Op::DeleteApp,
                format!("managed by kv2jobs, config {key} is gone"),
            ));
        }
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
        match by_name.get(name.as_str()) {
            None => plan.items.push(Item::write(
                "create-job",
                name,
                Op::PutJob(j.body.clone()),
                format!("from {}", j.key),
            )),
            Some(l) => {
                let (d, lc) = comparable_jobs(&j.body, l);
                if d == lc {
                    plan.items.push(Item::nothing(
                        "update-job",
                        name,
                        true,
                        format!("from {}; no change", j.key),
                    ));
                } else {
                    plan.items.push(Item::write(
                        "update-job",
                        name,
                        Op::PutJob(j.body.clone()),
                        diff_detail(&j.key, &lc, &d),
                    ));
                }
            }
        }
    }
    if !prune_allowed(desired, opts, plan) {
        return;
    }
    let rejected = desired.rejected_keys();
    let rejected_now: BTreeSet<&str> = plan.rejected.iter().map(|(k, _)| k.as_str()).collect();
    // Parents of a wanted job stay (Chronos would rewire the children on delete).
    let needed: BTreeSet<String> = desired
        .jobs
        .iter()
        .flat_map(|j| parents_of(&j.body))
        .collect();
    let mut gone: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut keys: HashMap<String, String> = HashMap::new();
    for l in live {
        let (Some(name), Some(key)) = (l.get("name").and_then(Value::as_str), job_owner(l)) else {
            continue;
        };
        if !key.starts_with(&opts.prefix) || desired_names.contains(name) {
            continue;
        }
        if rejected.contains(key) || rejected_now.contains(key) || needed.contains(name) {
            plan.items.push(Item::nothing(
                "delete-job",
                name,
                false,
                format!("kept: its config {key} was rejected, or a configured job depends on it"),
            ));
            continue;
        }
        gone.insert(name.to_string(), parents_of(l));
        keys.insert(name.to_string(), key.to_string());
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

    fn canon(live: Vec<Value>) -> Vec<Value> {
        live.iter()
            .map(marathon::normalize::canonical_app)
            .collect()
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
            &[],
            &PlanOptions::default(),
            &mut plan,
        );
        assert_eq!(plan.items[0].kind, "create-app");
        let Op::PutApp(body) = &plan.items[0].op else {
            panic!()
        };
        let live = canon(vec![served(body)]);
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
        let live = canon(vec![served(&old.apps[0].body)]);
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
        let mut d = desired(&[kv("j/b/a.json", r#"{"id":"a","cmd":"x"}"#)]);
        let live = canon(vec![
            served(&d.apps[0].body),
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
        let mut empty = desired(&[]);
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
