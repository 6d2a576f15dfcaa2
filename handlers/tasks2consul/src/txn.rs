//! Catalog writes as Consul transactions (`PUT /v1/txn`, issue 13): how changes are grouped
//! into transactions of at most [`limit`] operations, the operations of each, which
//! registration a failed operation belongs to, the operation limit of the server, and the
//! switch to single writes for a Consul that cannot take them.
//!
//! The limit starts at Consul 1.14's 128 ([`MAX_TXN_OPS`]); a Consul before 1.14 takes 64 and
//! answers a larger transaction with 413 `Transaction contains too many operations (N > 64)`
//! (agent/txn_endpoint.go; hashicorp/consul PR #14599 raised it). That answer is adopted for the
//! rest of the process ([`adopt`]): the refused transaction and every later one are split to it,
//! so nothing is lost or reported failed and the question is asked once.
//!
//! A registration is its external node (`Node` set, once per node and transaction), its
//! service (`Service` set) and its mirror check (`Check` set): what one
//! `PUT /v1/catalog/register` writes. A deregistration is a `Service` delete (its checks go
//! with it, as with `/v1/catalog/deregister`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use consul::txn::MAX_TXN_OPS;
use consul::{TxnError, TxnOp, Verb};
use serde_json::json;

use crate::plan::{Change, Config};

/// Set once a Consul answered that it cannot take catalog transactions: every later write of
/// this process goes one request per change.
static REFUSED: AtomicBool = AtomicBool::new(false);

/// Whether transactions were given up for this process.
pub fn refused() -> bool {
    REFUSED.load(Ordering::Relaxed)
}

/// Gives transactions up for the rest of the process, saying why once.
pub fn refuse(why: &str) {
    if !REFUSED.swap(true, Ordering::Relaxed) {
        log::warn!(
            "Consul cannot take catalog writes in transactions ({why}); writing one registration per request from now on"
        );
    }
}

/// The most operations a transaction may hold, for the rest of the process (with `--follow`,
/// across syncs): [`MAX_TXN_OPS`] until a Consul names a lower limit ([`adopt`]).
static LIMIT: AtomicUsize = AtomicUsize::new(MAX_TXN_OPS);

/// Operations of the largest single change (a registration: `Node`, `Service` and `Check`): a
/// server that takes fewer cannot take tasks2consul's transactions at all.
pub const MIN_USEFUL_OPS: usize = 3;

/// The operation limit in use.
pub fn limit() -> usize {
    LIMIT.load(Ordering::Relaxed)
}

/// A Consul answered that a transaction of `sent` operations is over its limit of `max`
/// (413 `Transaction contains too many operations (sent > max)`). Adopts `max` for the rest of
/// the process, saying so once; returns whether transactions split to it may be sent. `false`
/// when the answer makes no sense (`max` not below `sent`: the caller writes that transaction's
/// changes one by one) or `max` cannot hold one registration (transactions are given up).
pub fn adopt(sent: usize, max: usize) -> bool {
    if max >= sent {
        log::warn!(
            "Consul refused a transaction of {sent} operation(s) as over its limit of {max}; writing its changes one by one"
        );
        return false;
    }
    if max < MIN_USEFUL_OPS {
        refuse(&format!(
            "it takes at most {max} operation(s) per transaction, a registration needs {MIN_USEFUL_OPS}"
        ));
        return false;
    }
    let before = LIMIT.fetch_min(max, Ordering::Relaxed);
    if max < before {
        log::warn!(
            "Consul takes at most {max} operations per transaction (a Consul before 1.14 takes 64, 1.14 and later 128): the transaction of {sent} is split and resent, and no later transaction holds more than {max}"
        );
    }
    true
}

/// An operation error that says the server does not know the catalog operations (a Consul
/// before 1.4, whose /v1/txn took KV only).
pub fn is_unknown_verb(what: &str) -> bool {
    what.starts_with("unknown Node verb")
        || what.starts_with("unknown Service verb")
        || what.starts_with("unknown Check verb")
        || what == "no operation specified"
}

/// Groups `items` into transactions: sorted by node (a node's registrations share its `Node`
/// operation), each batch at most `max` operations ([`limit`]). `cost(i)` gives the change's
/// own operations, its node, and whether it needs the node's `Node` operation.
pub fn batches(
    items: &[usize],
    max: usize,
    cost: impl Fn(usize) -> (usize, String, bool),
) -> Vec<Vec<usize>> {
    let mut keyed: Vec<(String, usize, usize, bool)> = items
        .iter()
        .map(|&i| {
            let (n, node, needs_node) = cost(i);
            (node, i, n, needs_node)
        })
        .collect();
    keyed.sort();
    let mut out = Vec::new();
    let mut batch = Vec::new();
    let mut ops = 0;
    let mut nodes: BTreeSet<String> = BTreeSet::new();
    for (node, i, n, needs_node) in keyed {
        let need = |nodes: &BTreeSet<String>| n + usize::from(needs_node && !nodes.contains(&node));
        if !batch.is_empty() && ops + need(&nodes) > max {
            out.push(std::mem::take(&mut batch));
            ops = 0;
            nodes.clear();
        }
        ops += need(&nodes);
        if needs_node {
            nodes.insert(node);
        }
        batch.push(i);
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

/// Who an operation is for: one change, or every registration on a node (its `Node` set).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    Change(usize),
    Node(String),
}

/// The operations of one transaction.
#[derive(Debug)]
pub struct Built {
    pub ops: Vec<TxnOp>,
    /// Results Consul answers when it applied them all (one per `set`).
    pub results: usize,
    owners: Vec<Owner>,
    /// Registrations by node.
    on_node: BTreeMap<String, Vec<usize>>,
}

/// The operations for `changes` (index, change); see the module doc.
pub fn build<'a>(changes: impl Iterator<Item = (usize, &'a Change)>, cfg: &Config) -> Built {
    let mut b = Built {
        ops: Vec::new(),
        results: 0,
        owners: Vec::new(),
        on_node: BTreeMap::new(),
    };
    for (i, change) in changes {
        match change {
            Change::Register { reg, node, .. } => {
                let body = reg.catalog_body(node, cfg.external_probe);
                let regs = b.on_node.entry(node.clone()).or_default();
                if regs.is_empty() {
                    b.ops.push(TxnOp::Node {
                        verb: Verb::Set,
                        // api.Node: the node meta is `Meta` here (`NodeMeta` in catalog/register).
                        node: json!({"Node": node, "Address": body["Address"], "Meta": body["NodeMeta"]}),
                    });
                    b.owners.push(Owner::Node(node.clone()));
                }
                regs.push(i);
                b.ops.push(TxnOp::Service {
                    verb: Verb::Set,
                    node: node.clone(),
                    service: body["Service"].clone(),
                });
                b.ops.push(TxnOp::Check {
                    verb: Verb::Set,
                    check: body["Check"].clone(),
                });
                b.owners.extend([Owner::Change(i), Owner::Change(i)]);
            }
            Change::Deregister { owned, .. } => {
                // servicePreApply wants the name with the ID, even for a delete (v1.14.11).
                b.ops.push(TxnOp::Service {
                    verb: Verb::Delete,
                    node: owned.node.clone(),
                    service: json!({"ID": owned.reg.id, "Service": owned.reg.name}),
                });
                b.owners.push(Owner::Change(i));
            }
        }
    }
    b.results = b
        .ops
        .iter()
        .filter(|o| {
            matches!(
                o,
                TxnOp::Node {
                    verb: Verb::Set,
                    ..
                } | TxnOp::Service {
                    verb: Verb::Set,
                    ..
                } | TxnOp::Check {
                    verb: Verb::Set,
                    ..
                }
            )
        })
        .count();
    b
}

impl Built {
    /// The changes whose operations failed, with Consul's reasons (a failed `Node` set fails
    /// every registration on that node).
    pub fn failed(&self, errors: &[TxnError]) -> BTreeMap<usize, String> {
        let mut out: BTreeMap<usize, String> = BTreeMap::new();
        let mut add = |i: usize, what: &str| {
            let e = out.entry(i).or_default();
            if !e.is_empty() {
                e.push_str("; ");
            }
            e.push_str(what);
        };
        for e in errors {
            match self.owners.get(e.op_index) {
                Some(Owner::Change(i)) => add(*i, &e.what),
                Some(Owner::Node(n)) => {
                    for &i in self.on_node.get(n).into_iter().flatten() {
                        add(i, &e.what);
                    }
                }
                None => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::App;
    use crate::plan;

    /// Registrations of `n` tasks spread over `hosts` hosts (one app per task).
    fn changes(n: usize, hosts: usize) -> Vec<Change> {
        let apps: Vec<App> = (0..n)
            .map(|i| {
                App::from(json!({"id": format!("/app{i}"), "labels": {"consul": "true"},
                       "version": "2026-11-24T10:00:00.000Z",
                       "portDefinitions": [{"port": 10000, "protocol": "tcp"}],
                       "tasks": [{"id": format!("app{i}.t"), "host": format!("10.0.0.{}", i % hosts + 1),
                                  "ports": [31000], "state": "TASK_RUNNING",
                                  "version": "2026-11-24T10:00:00.000Z"}]}))
            })
            .collect();
        plan::plan(&apps, &[], None, &Config::default()).changes
    }

    fn node_of(c: &Change) -> String {
        match c {
            Change::Register { node, .. } => node.clone(),
            Change::Deregister { owned, .. } => owned.node.clone(),
        }
    }

    #[test]
    fn batches_hold_at_most_the_limit_and_share_node_operations() {
        let cs = changes(1000, 20);
        assert_eq!(cs.len(), 1000);
        let all: Vec<usize> = (0..cs.len()).collect();
        let cfg = Config::default();
        for max in [MAX_TXN_OPS, consul::txn::PRE_1_14_TXN_OPS, MIN_USEFUL_OPS] {
            let b = batches(&all, max, |i| (2, node_of(&cs[i]), true));
            let mut seen: Vec<usize> = b.iter().flatten().copied().collect();
            seen.sort_unstable();
            assert_eq!(seen, all, "every change in exactly one batch");
            let mut ops = 0;
            for batch in &b {
                let built = build(batch.iter().map(|&i| (i, &cs[i])), &cfg);
                assert!(built.ops.len() <= max, "{} > {max}", built.ops.len());
                assert_eq!(built.results, built.ops.len(), "all sets");
                ops += built.ops.len();
            }
            // 2 per registration, and a Node operation per node and batch.
            assert!(ops < 2000 + 20 + b.len(), "{ops}");
            assert!(
                b.len() <= 2020_usize.div_ceil(max - 1) + 20,
                "{} batches",
                b.len()
            );
        }
    }

    #[test]
    fn a_lower_limit_named_by_consul_is_adopted_once_and_kept() {
        // The limit is process-wide: this is the only unit test that changes it.
        assert_eq!(limit(), MAX_TXN_OPS);
        assert!(
            !adopt(10, 64),
            "a limit not below what was sent makes no sense"
        );
        assert_eq!(limit(), MAX_TXN_OPS);
        assert!(adopt(130, 64));
        assert_eq!(limit(), 64);
        assert!(adopt(128, 100), "a higher limit named later is not taken");
        assert_eq!(limit(), 64);
        assert!(!refused());
    }

    #[test]
    fn a_registration_is_node_service_and_check_with_node_meta_as_meta() {
        let cs = changes(2, 1);
        let built = build(cs.iter().enumerate(), &Config::default());
        let v = serde_json::to_value(&built.ops).unwrap();
        assert_eq!(
            v.as_array().unwrap().len(),
            5,
            "one Node operation for both: {v}"
        );
        assert_eq!(v[0]["Node"]["Verb"], "set");
        assert_eq!(v[0]["Node"]["Node"]["Meta"]["external-source"], "marathon");
        assert!(v[0]["Node"]["Node"].get("NodeMeta").is_none());
        assert_eq!(v[1]["Service"]["Node"], "marathon-10.0.0.1");
        assert_eq!(
            v[2]["Check"]["Check"]["ServiceID"],
            v[1]["Service"]["Service"]["ID"]
        );
    }

    #[test]
    fn failed_operations_name_their_registrations() {
        let cs = changes(3, 1);
        let built = build(cs.iter().enumerate(), &Config::default());
        let err = |op_index: usize, what: &str| TxnError {
            op_index,
            what: what.into(),
        };
        // Ops: node, (svc, check) x 3.
        let f = built.failed(&[err(3, "bad meta"), err(4, "Missing service registration")]);
        assert_eq!(
            f.into_iter().collect::<Vec<_>>(),
            vec![(1, "bad meta; Missing service registration".to_string())]
        );
        let f = built.failed(&[err(0, "Must provide node")]);
        assert_eq!(
            f.len(),
            3,
            "a failed Node operation fails every registration on it"
        );
        assert!(is_unknown_verb("unknown Node verb \"set\""));
        assert!(!is_unknown_verb("Missing node registration"));
    }
}
