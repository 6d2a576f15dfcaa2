//! `PUT /v1/txn` with Consul's KV verbs, as v1.14.11 answers them (agent/txn_endpoint.go,
//! agent/consul/state/txn.go; compared with the real agent by tests/consul_conformance.rs).
//!
//! - at most 128 operations (more: 413 "Transaction contains too many operations (N > 128)");
//! - all operations run against one snapshot with ONE index; every failing operation is reported
//!   (`{"Results":null,"Errors":[{"OpIndex":i,"What":"…"}]}`, 409) and nothing is applied;
//! - success: `{"Results":[{"KV":{…}}…],"Errors":null}`; results of writes carry no Value, `get`
//!   and `get-tree` results do; deletes and `check-not-exists` give no result;
//! - a transaction without writes is a read: it carries X-Consul-KnownLeader/LastContact.
//!
//! Not modelled: the `lock`, `unlock` and `check-session` verbs and the Node/Service/Check/Session
//! operations: they fail as an operation error naming that (409), so nothing half-applies.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{json, Value};

use super::state::{KvEntry, State};

/// agent/txn_endpoint.go maxTxnOps (128 in v1.14.11).
pub const MAX_TXN_OPS: usize = 128;

/// One KV operation of a transaction (api.KVTxnOp).
#[derive(Debug, Clone)]
pub struct KvOp {
    pub verb: String,
    pub key: String,
    pub value: Vec<u8>,
    pub flags: u64,
    pub index: u64,
}

/// One parsed operation: a KV op, or another kind the double does not model (its name).
#[derive(Debug, Clone)]
pub enum Op {
    Kv(KvOp),
    Unsupported(String),
}

/// Parses the body (a JSON array of operations); `Err` is the 400 reason.
pub fn parse(body: &[u8]) -> Result<Vec<Op>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        if e.is_eof() {
            "Failed to parse body: unexpected EOF".to_string()
        } else {
            format!("Failed to parse body: {e}")
        }
    })?;
    let ops = match v {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        other => {
            return Err(format!(
                "Failed to parse body: json: cannot unmarshal {} into Go value of type api.TxnOps",
                go_kind(&other)
            ))
        }
    };
    ops.iter().map(parse_op).collect()
}

fn go_kind(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "object",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        Value::Null => "null",
    }
}

fn parse_op(op: &Value) -> Result<Op, String> {
    let Some(m) = op.as_object() else {
        return Err(format!(
            "Failed to parse body: json: cannot unmarshal {} into Go value of type api.TxnOp",
            go_kind(op)
        ));
    };
    let Some(kv) = m.get("KV").filter(|v| !v.is_null()) else {
        let kind = ["Node", "Service", "Check", "Session"]
            .into_iter()
            .find(|k| m.get(*k).is_some_and(|v| !v.is_null()))
            .unwrap_or("empty");
        return Ok(Op::Unsupported(kind.to_string()));
    };
    let s = |k: &str| kv.get(k).and_then(Value::as_str).unwrap_or_default();
    let n = |k: &str| kv.get(k).and_then(Value::as_u64).unwrap_or(0);
    let value = match kv.get("Value") {
        Some(Value::String(b)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| format!("Failed to parse body: illegal base64 data ({e})"))?,
        _ => Vec::new(),
    };
    Ok(Op::Kv(KvOp {
        verb: s("Verb").to_string(),
        key: s("Key").to_string(),
        value,
        flags: n("Flags"),
        index: n("Index"),
    }))
}

/// Whether the operation writes (txn_endpoint.go isWrite).
pub fn is_write(op: &Op) -> bool {
    match op {
        Op::Kv(k) => matches!(
            k.verb.as_str(),
            "set" | "delete" | "delete-cas" | "delete-tree" | "cas" | "lock" | "unlock"
        ),
        Op::Unsupported(_) => true,
    }
}

/// A result entry: DirEntry with the value kept (reads) or blanked (writes).
fn result(e: &KvEntry, keep_value: bool) -> Value {
    let mut e = e.clone();
    if !keep_value {
        e.value.clear();
    }
    json!({ "KV": e.to_json() })
}

impl State {
    /// Runs the operations atomically at one new index: `Ok(results)` (applied) or
    /// `Err(errors)` (nothing applied).
    pub fn txn(&mut self, ops: &[Op]) -> Result<Vec<Value>, Vec<Value>> {
        let idx = self.index + 1;
        let mut kv: BTreeMap<String, KvEntry> = self.kv.clone();
        let mut deleted: Vec<String> = Vec::new();
        let mut changed = false;
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let out = match op {
                Op::Kv(k) => kv_op(&mut kv, &mut deleted, &mut changed, idx, k),
                Op::Unsupported(kind) => Err(format!(
                    "the devstack Consul double does not implement {kind} operations in /v1/txn"
                )),
            };
            match out {
                Ok(r) => results.extend(r),
                Err(what) => errors.push(json!({"OpIndex": i, "What": what})),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        if changed {
            self.index = idx;
            self.kv = kv;
            for k in deleted {
                if !self.kv.contains_key(&k) {
                    self.record_tombstone(&k, idx);
                }
            }
            self.touch_kvs(idx);
        }
        Ok(results)
    }
}

/// `set` (and a successful `cas`): kvsSetTxn; an unchanged entry is not written.
fn set_entry(kv: &mut BTreeMap<String, KvEntry>, changed: &mut bool, idx: u64, op: &KvOp) -> Value {
    let key = op.key.as_str();
    let entry = match kv.get(key) {
        Some(old) if old.value == op.value && old.flags == op.flags => old.clone(),
        Some(old) => KvEntry {
            modify_index: idx,
            flags: op.flags,
            value: op.value.clone(),
            ..old.clone()
        },
        None => KvEntry {
            key: key.to_string(),
            create_index: idx,
            modify_index: idx,
            lock_index: 0,
            flags: op.flags,
            value: op.value.clone(),
            session: String::new(),
        },
    };
    if entry.modify_index == idx {
        *changed = true;
    }
    kv.insert(key.to_string(), entry.clone());
    result(&entry, false)
}

fn remove_key(
    kv: &mut BTreeMap<String, KvEntry>,
    deleted: &mut Vec<String>,
    changed: &mut bool,
    k: &str,
) {
    if kv.remove(k).is_some() {
        deleted.push(k.to_string());
        *changed = true;
    }
}

/// One KV verb against the transaction's working copy (state/txn.go txnKVS).
fn kv_op(
    kv: &mut BTreeMap<String, KvEntry>,
    deleted: &mut Vec<String>,
    changed: &mut bool,
    idx: u64,
    op: &KvOp,
) -> Result<Vec<Value>, String> {
    let key = op.key.as_str();
    let mut set = |kv: &mut BTreeMap<String, KvEntry>| set_entry(kv, changed, idx, op);
    match op.verb.as_str() {
        "set" => Ok(vec![set(kv)]),
        "cas" => {
            let ok = match kv.get(key) {
                None => op.index == 0,
                Some(e) => op.index != 0 && e.modify_index == op.index,
            };
            if !ok {
                return Err(format!("failed to set key {key:?}, index is stale"));
            }
            Ok(vec![set(kv)])
        }
        "get" => kv
            .get(key)
            .map(|e| vec![result(e, true)])
            .ok_or_else(|| format!("key {key:?} doesn't exist")),
        "get-tree" => Ok(kv
            .range(key.to_string()..)
            .take_while(|(k, _)| k.starts_with(key))
            .map(|(_, e)| result(e, true))
            .collect()),
        "check-index" => match kv.get(key) {
            None => Err(format!("failed to check index, key {key:?} doesn't exist")),
            Some(e) if e.modify_index != op.index => Err(format!(
                "failed index check for key {key:?}, current modify index {} != {}",
                e.modify_index, op.index
            )),
            Some(e) => Ok(vec![result(e, false)]),
        },
        "check-not-exists" => match kv.get(key) {
            Some(_) => Err(format!("key {key:?} exists")),
            None => Ok(Vec::new()),
        },
        "delete" => {
            remove_key(kv, deleted, changed, key);
            Ok(Vec::new())
        }
        "delete-cas" => match kv.get(key).map(|e| e.modify_index) {
            Some(m) if m != op.index => {
                Err(format!("failed to delete key {key:?}, index is stale"))
            }
            _ => {
                remove_key(kv, deleted, changed, key);
                Ok(Vec::new())
            }
        },
        "delete-tree" => {
            let keys: Vec<String> = kv
                .range(key.to_string()..)
                .take_while(|(k, _)| k.starts_with(key))
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                remove_key(kv, deleted, changed, &k);
            }
            Ok(Vec::new())
        }
        "lock" | "unlock" | "check-session" => Err(format!(
            "the devstack Consul double does not implement the KV verb {:?} in /v1/txn",
            op.verb
        )),
        other => Err(format!("unknown KV verb {other:?}")),
    }
}
