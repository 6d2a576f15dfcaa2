//! `PUT /v1/txn` with Consul's KV and catalog (`Node`, `Service`, `Check`) verbs, as v1.14.11
//! answers them (agent/txn_endpoint.go, agent/consul/txn_endpoint.go, agent/consul/state/txn.go;
//! compared with the real agent by tests/consul_conformance.rs).
//!
//! - at most 128 operations (more: 413 "Transaction contains too many operations (N > 128)"); the
//!   limit is `ConsulOptions::max_txn_ops` (64 models a Consul before 1.14, hashicorp/consul
//!   PR #14599);
//! - the body is decoded strictly: an unknown field (`Session` operations, a `NodeMeta` in a
//!   `Node`) or a wrong type is a 400 "Failed to parse body: …"; an operation naming no kind
//!   (`{}`) is dropped;
//! - pre-checks first (a service ID without a service name, an "any" service address): when one
//!   fails, only those errors are answered;
//! - then all operations run in order against one snapshot with ONE index; every failing
//!   operation is reported (`{"Results":null,"Errors":[{"OpIndex":i,"What":"…"}]}`, 409) and
//!   nothing is applied (KV and catalog alike);
//! - success: `{"Results":[{"KV":{…}}|{"Node":{…}}|{"Service":{…}}|{"Check":{…}}…],"Errors":null}`;
//!   results of KV writes carry no Value, `get` and `get-tree` results do; catalog `set`/`cas`/
//!   `get` give the entry as stored; deletes and `check-not-exists` give no result;
//! - catalog verbs: `set`, `cas` (ModifyIndex 0: only if absent), `get`, `delete`, `delete-cas`;
//!   a service or check on a missing node is "Missing node registration", a check of a missing
//!   service "Missing service registration", service meta is validated as the catalog does;
//! - a transaction without writes is a read: it carries X-Consul-KnownLeader/LastContact.
//!
//! Not modelled: the `lock`, `unlock` and `check-session` KV verbs (an operation error naming
//! that, 409, so nothing half-applies); ACL checks per operation (the management token or none).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use serde_json::{json, Value};

use super::state::{Check, KvEntry, Node, Service, State};

/// agent/txn_endpoint.go maxTxnOps (128 in v1.14.11, 64 before 1.14): the default of
/// `ConsulOptions::max_txn_ops`.
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

/// One parsed operation (api.TxnOp). Catalog operations carry the entry as given; its
/// `modify_index` is the CAS index.
#[derive(Debug, Clone)]
pub enum Op {
    Kv(KvOp),
    Node {
        verb: String,
        node: Node,
    },
    Service {
        verb: String,
        node: String,
        service: Service,
    },
    Check {
        verb: String,
        check: Check,
    },
}

impl Op {
    /// The node a catalog operation is about.
    fn catalog_node(&self) -> Option<&str> {
        match self {
            Op::Kv(_) => None,
            Op::Node { node, .. } => Some(&node.node),
            Op::Service { node, .. } => Some(node),
            Op::Check { check, .. } => Some(&check.node),
        }
    }
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
    let mut out = Vec::new();
    for op in &ops {
        out.extend(parse_op(op).map_err(|e| format!("Failed to parse body: json: {e}"))?);
    }
    Ok(out)
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

/// Field names of the API types (Go's decoder matches them case-insensitively and, for
/// /v1/txn, refuses any other: seen against v1.14.11).
const OP_FIELDS: &[&str] = &["KV", "Node", "Service", "Check"];
const KV_FIELDS: &[&str] = &[
    "Verb",
    "Key",
    "Value",
    "Flags",
    "Index",
    "Session",
    "Namespace",
    "Partition",
];
const NODE_OP_FIELDS: &[&str] = &["Verb", "Node"];
const NODE_FIELDS: &[&str] = &[
    "ID",
    "Node",
    "Address",
    "Datacenter",
    "TaggedAddresses",
    "Meta",
    "CreateIndex",
    "ModifyIndex",
    "Partition",
    "PeerName",
];
const SERVICE_OP_FIELDS: &[&str] = &["Verb", "Node", "Service"];
const SERVICE_FIELDS: &[&str] = &[
    "Kind",
    "ID",
    "Service",
    "Tags",
    "Meta",
    "Port",
    "Address",
    "SocketPath",
    "TaggedAddresses",
    "Weights",
    "EnableTagOverride",
    "CreateIndex",
    "ModifyIndex",
    "ContentHash",
    "Proxy",
    "Connect",
    "PeerName",
    "Namespace",
    "Partition",
    "Datacenter",
    "LocallyRegisteredAsSidecar",
];
const CHECK_OP_FIELDS: &[&str] = &["Verb", "Check"];
const CHECK_FIELDS: &[&str] = &[
    "Node",
    "CheckID",
    "Name",
    "Status",
    "Notes",
    "Output",
    "ServiceID",
    "ServiceName",
    "ServiceTags",
    "Type",
    "Namespace",
    "Partition",
    "ExposedPort",
    "PeerName",
    "Definition",
    "Interval",
    "Timeout",
    "CreateIndex",
    "ModifyIndex",
];

/// A JSON object of an API type: its fields, looked up case-insensitively.
struct Obj<'a> {
    m: &'a serde_json::Map<String, Value>,
    ty: &'static str,
}

impl<'a> Obj<'a> {
    fn new(v: &'a Value, ty: &'static str, known: &[&str]) -> Result<Option<Obj<'a>>, String> {
        let m = match v {
            Value::Null => return Ok(None),
            Value::Object(m) => m,
            other => {
                return Err(format!(
                    "cannot unmarshal {} into Go value of type {ty}",
                    go_kind(other)
                ))
            }
        };
        if let Some(k) = m
            .keys()
            .find(|k| !known.iter().any(|f| f.eq_ignore_ascii_case(k)))
        {
            return Err(format!("unknown field \"{k}\""));
        }
        Ok(Some(Obj { m, ty }))
    }

    fn get(&self, f: &str) -> Option<&'a Value> {
        self.m
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(f))
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }

    fn wrong(&self, f: &str, v: &Value, want: &str) -> String {
        format!(
            "cannot unmarshal {} into Go struct field {}.{f} of type {want}",
            go_kind(v),
            self.ty
        )
    }

    fn str(&self, f: &str) -> Result<String, String> {
        match self.get(f) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(self.wrong(f, v, "string")),
        }
    }

    fn u64(&self, f: &str) -> Result<u64, String> {
        match self.get(f) {
            None => Ok(0),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64().unwrap_or(0)),
            Some(v) => Err(self.wrong(f, v, "uint64")),
        }
    }

    fn bool(&self, f: &str) -> Result<bool, String> {
        match self.get(f) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.wrong(f, v, "bool")),
        }
    }

    fn map(&self, f: &str) -> Result<Option<serde_json::Map<String, Value>>, String> {
        match self.get(f) {
            None => Ok(None),
            Some(Value::Object(o)) if o.values().all(Value::is_string) => Ok(Some(o.clone())),
            Some(v) => Err(self.wrong(f, v, "map[string]string")),
        }
    }

    fn strings(&self, f: &str) -> Result<Vec<String>, String> {
        match self.get(f) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => Ok(a
                .iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()),
            Some(v) => Err(self.wrong(f, v, "[]string")),
        }
    }

    fn obj(&self, f: &str, ty: &'static str, known: &[&str]) -> Result<Option<Obj<'a>>, String> {
        match self.get(f) {
            None => Ok(None),
            Some(v) => Obj::new(v, ty, known),
        }
    }
}

fn parse_op(op: &Value) -> Result<Option<Op>, String> {
    let Some(o) = Obj::new(op, "api.TxnOp", OP_FIELDS)? else {
        return Ok(None);
    };
    if let Some(kv) = o.obj("KV", "api.KVTxnOp", KV_FIELDS)? {
        return parse_kv(&kv).map(Some);
    }
    if let Some(n) = o.obj("Node", "api.NodeTxnOp", NODE_OP_FIELDS)? {
        let node = match n.obj("Node", "api.Node", NODE_FIELDS)? {
            Some(x) => Node {
                id: x.str("ID")?,
                node: x.str("Node")?,
                address: x.str("Address")?,
                datacenter: x.str("Datacenter")?,
                tagged_addresses: x.map("TaggedAddresses")?,
                meta: x.map("Meta")?,
                create_index: 0,
                modify_index: x.u64("ModifyIndex")?,
            },
            None => empty_node(),
        };
        return Ok(Some(Op::Node {
            verb: n.str("Verb")?,
            node,
        }));
    }
    if let Some(so) = o.obj("Service", "api.ServiceTxnOp", SERVICE_OP_FIELDS)? {
        let node = so.str("Node")?;
        let service = match so.obj("Service", "api.AgentService", SERVICE_FIELDS)? {
            Some(x) => {
                let weights = match x.get("Weights") {
                    Some(Value::Object(w)) => (
                        w.get("Passing").and_then(Value::as_i64).unwrap_or(0),
                        w.get("Warning").and_then(Value::as_i64).unwrap_or(0),
                    ),
                    _ => (1, 1),
                };
                Service {
                    node: node.clone(),
                    id: x.str("ID")?,
                    service: x.str("Service")?,
                    tags: x.strings("Tags")?,
                    address: x.str("Address")?,
                    port: x.u64("Port")?,
                    meta: x.map("Meta")?,
                    tagged_addresses: None,
                    weights,
                    enable_tag_override: x.bool("EnableTagOverride")?,
                    // txn_endpoint.go convertOps copies no Kind: always a typical service.
                    kind: String::new(),
                    create_index: 0,
                    modify_index: x.u64("ModifyIndex")?,
                }
            }
            None => empty_service(&node),
        };
        return Ok(Some(Op::Service {
            verb: so.str("Verb")?,
            node,
            service,
        }));
    }
    if let Some(co) = o.obj("Check", "api.CheckTxnOp", CHECK_OP_FIELDS)? {
        let check = match co.obj("Check", "api.HealthCheck", CHECK_FIELDS)? {
            Some(x) => Check {
                node: x.str("Node")?,
                check_id: x.str("CheckID")?,
                name: x.str("Name")?,
                status: x.str("Status")?,
                notes: x.str("Notes")?,
                output: x.str("Output")?,
                service_id: x.str("ServiceID")?,
                service_name: String::new(),
                service_tags: Vec::new(),
                check_type: String::new(),
                definition: match x.get("Definition") {
                    Some(Value::Object(d)) => super::state::definition_from(d),
                    _ => super::state::empty_definition(),
                },
                ttl: None,
                create_index: 0,
                modify_index: x.u64("ModifyIndex")?,
            },
            None => empty_check(),
        };
        return Ok(Some(Op::Check {
            verb: co.str("Verb")?,
            check,
        }));
    }
    // txn_endpoint.go convertOps skips an operation of no known kind.
    Ok(None)
}

fn empty_node() -> Node {
    Node {
        id: String::new(),
        node: String::new(),
        address: String::new(),
        datacenter: String::new(),
        tagged_addresses: None,
        meta: None,
        create_index: 0,
        modify_index: 0,
    }
}

fn empty_service(node: &str) -> Service {
    Service {
        node: node.to_string(),
        id: String::new(),
        service: String::new(),
        tags: Vec::new(),
        address: String::new(),
        port: 0,
        meta: None,
        tagged_addresses: None,
        weights: (1, 1),
        enable_tag_override: false,
        kind: String::new(),
        create_index: 0,
        modify_index: 0,
    }
}

fn empty_check() -> Check {
    Check {
        node: String::new(),
        check_id: String::new(),
        name: String::new(),
        status: String::new(),
        notes: String::new(),
        output: String::new(),
        service_id: String::new(),
        service_name: String::new(),
        service_tags: Vec::new(),
        check_type: String::new(),
        definition: super::state::empty_definition(),
        ttl: None,
        create_index: 0,
        modify_index: 0,
    }
}

fn parse_kv(kv: &Obj<'_>) -> Result<Op, String> {
    let value = match kv.get("Value") {
        Some(Value::String(b)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| format!("illegal base64 data ({e})"))?,
        _ => Vec::new(),
    };
    Ok(Op::Kv(KvOp {
        verb: kv.str("Verb")?,
        key: kv.str("Key")?,
        value,
        flags: kv.u64("Flags")?,
        index: kv.u64("Index")?,
    }))
}

/// structs.ValidateMetadata as ensureServiceTxn applies it to service meta (v1.14.11):
/// at most 64 pairs, keys of `[A-Za-z0-9_-]` up to 128 characters not starting with
/// `consul-`, values up to 512 characters.
pub fn validate_service_meta(meta: &serde_json::Map<String, Value>) -> Result<(), String> {
    if meta.len() > 64 {
        return Err("Node metadata cannot contain more than 64 key/value pairs".into());
    }
    for (k, v) in meta {
        let v = v.as_str().unwrap_or_default();
        let why = if k.is_empty() {
            Some("Key cannot be blank".to_string())
        } else if !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            Some("Key contains invalid characters".into())
        } else if k.len() > 128 {
            Some("Key is too long (limit: 128 characters)".into())
        } else if k.starts_with("consul-") {
            Some("Key prefix 'consul-' is reserved for internal use".into())
        } else if v.len() > 512 {
            Some("Value is too long (limit: 512 characters)".into())
        } else {
            None
        };
        if let Some(why) = why {
            return Err(format!("Couldn't load metadata pair ('{k}', '{v}'): {why}"));
        }
    }
    Ok(())
}

/// Whether the operation writes (txn_endpoint.go isWrite).
pub fn is_write(op: &Op) -> bool {
    match op {
        Op::Kv(k) => matches!(
            k.verb.as_str(),
            "set" | "delete" | "delete-cas" | "delete-tree" | "cas" | "lock" | "unlock"
        ),
        Op::Node { verb, .. } | Op::Service { verb, .. } | Op::Check { verb, .. } => verb != "get",
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

/// agent/consul/txn_endpoint.go preCheck (servicePreApply, checkPreApply): normalizes the
/// operations and returns the errors that stop the transaction before it runs.
fn pre_check(ops: &mut [Op]) -> Vec<Value> {
    let mut errors = Vec::new();
    for (i, op) in ops.iter_mut().enumerate() {
        match op {
            Op::Service { verb, service, .. } if verb != "get" => {
                if service.id.is_empty() && !service.service.is_empty() {
                    service.id = service.service.clone();
                }
                let what = if !service.id.is_empty() && service.service.is_empty() {
                    Some("Must provide service name (Service.Service) when service ID is provided")
                } else if ["0.0.0.0", "::", "[::]"].contains(&service.address.as_str()) {
                    Some("Invalid service address")
                } else {
                    None
                };
                if let Some(what) = what {
                    errors.push(json!({"OpIndex": i, "What": what}));
                }
            }
            Op::Check { check, .. } if check.check_id.is_empty() => {
                check.check_id = check.name.clone();
            }
            _ => {}
        }
    }
    errors
}

impl State {
    /// Runs the operations atomically at one new index: `Ok(results)` (applied) or
    /// `Err(errors)` (nothing applied).
    pub fn txn(&mut self, ops: &[Op]) -> Result<Vec<Value>, Vec<Value>> {
        let mut ops = ops.to_vec();
        let errors = pre_check(&mut ops);
        if !errors.is_empty() {
            return Err(errors);
        }
        let idx = self.index + 1;
        let touched: BTreeSet<String> = ops
            .iter()
            .filter_map(Op::catalog_node)
            .map(str::to_string)
            .collect();
        let node_deletes = ops
            .iter()
            .any(|o| matches!(o, Op::Node { verb, .. } if verb.starts_with("delete")));
        let snapshot = (!touched.is_empty()).then(|| self.catalog_snapshot(&touched, node_deletes));
        let mut kv: BTreeMap<String, KvEntry> = self.kv.clone();
        let mut deleted: Vec<String> = Vec::new();
        let mut changed = false;
        let mut results = Vec::new();
        let mut errors = Vec::new();
        self.at_index(idx, |st| {
            for (i, op) in ops.iter().enumerate() {
                let out = match op {
                    Op::Kv(k) => kv_op(&mut kv, &mut deleted, &mut changed, idx, k),
                    Op::Node { verb, node } => st.txn_node(verb, node),
                    Op::Service {
                        verb,
                        node,
                        service,
                    } => st.txn_service(verb, node, service),
                    Op::Check { verb, check } => st.txn_check(verb, check),
                };
                match out {
                    Ok(r) => results.extend(r),
                    Err(what) => errors.push(json!({"OpIndex": i, "What": what})),
                }
            }
        });
        if !errors.is_empty() {
            if let Some(snap) = snapshot {
                self.catalog_restore(snap);
            }
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

    /// state/txn.go txnNode.
    fn txn_node(&mut self, verb: &str, n: &Node) -> Result<Vec<Value>, String> {
        let name = n.node.as_str();
        let current = self.nodes.get(name).map(|x| x.modify_index);
        let set = |st: &mut State| -> Result<Vec<Value>, String> {
            if name.is_empty() {
                return Err("Must provide node".into());
            }
            st.ensure_node(n.clone());
            Ok(st
                .nodes
                .get(name)
                .map(|x| json!({"Node": x.to_json()}))
                .into_iter()
                .collect())
        };
        match verb {
            "get" => self
                .nodes
                .get(name)
                .map(|x| vec![json!({"Node": x.to_json()})])
                .ok_or_else(|| format!("node {name:?} doesn't exist")),
            "set" => set(self),
            "cas" => {
                if !cas_ok(current, n.modify_index) {
                    return Err(format!("failed to set node {name:?}, index is stale"));
                }
                set(self)
            }
            "delete" => {
                self.delete_node(name);
                Ok(Vec::new())
            }
            "delete-cas" => {
                if current.is_none() || current != Some(n.modify_index) {
                    return Err(format!("failed to delete node {name:?}, index is stale"));
                }
                self.delete_node(name);
                Ok(Vec::new())
            }
            other => Err(format!("unknown Node verb {other:?}")),
        }
    }

    /// state/txn.go txnService (ensureServiceTxn: meta validated, the node must exist).
    fn txn_service(&mut self, verb: &str, node: &str, s: &Service) -> Result<Vec<Value>, String> {
        let key = (node.to_string(), s.id.clone());
        let current = self.services.get(&key).map(|x| x.modify_index);
        let result = |st: &State| -> Vec<Value> {
            st.services
                .get(&key)
                .map(|x| json!({"Service": x.agent_json(None)}))
                .into_iter()
                .collect()
        };
        let set = |st: &mut State| -> Result<Vec<Value>, String> {
            if let Some(meta) = &s.meta {
                validate_service_meta(meta).map_err(|e| {
                    format!(
                        "Invalid Service Meta for node {node} and serviceID {}: {e}",
                        s.id
                    )
                })?;
            }
            if !st.nodes.contains_key(node) {
                return Err("Missing node registration".into());
            }
            st.ensure_service(s.clone());
            Ok(result(st))
        };
        match verb {
            "get" => match current {
                Some(_) => Ok(result(self)),
                None => Err(format!("service {:?} on node {node:?} doesn't exist", s.id)),
            },
            "set" => set(self),
            "cas" => {
                if !cas_ok(current, s.modify_index) {
                    return Err(format!(
                        "failed to set service {:?} on node {node:?}, index is stale",
                        s.id
                    ));
                }
                set(self)
            }
            "delete" => {
                self.delete_service(node, &s.id);
                Ok(Vec::new())
            }
            "delete-cas" => {
                if current.is_none() || current != Some(s.modify_index) {
                    return Err(format!(
                        "failed to delete service {:?} on node {node:?}, index is stale",
                        s.id
                    ));
                }
                self.delete_service(node, &s.id);
                Ok(Vec::new())
            }
            other => Err(format!("unknown Service verb {other:?}")),
        }
    }

    /// state/txn.go txnCheck (ensureCheckTxn: the node, and the service if named, must exist;
    /// no status means critical).
    fn txn_check(&mut self, verb: &str, c: &Check) -> Result<Vec<Value>, String> {
        let key = (c.node.clone(), c.check_id.clone());
        let current = self.checks.get(&key).map(|x| x.modify_index);
        let result = |st: &State| -> Vec<Value> {
            st.checks
                .get(&key)
                .map(|x| json!({"Check": x.to_json()}))
                .into_iter()
                .collect()
        };
        let set = |st: &mut State| -> Result<Vec<Value>, String> {
            if !st.nodes.contains_key(&c.node) {
                return Err("Missing node registration".into());
            }
            if !c.service_id.is_empty()
                && !st
                    .services
                    .contains_key(&(c.node.clone(), c.service_id.clone()))
            {
                return Err("Missing service registration".into());
            }
            let mut c = c.clone();
            if c.status.is_empty() {
                c.status = "critical".into();
            }
            st.ensure_check(c);
            Ok(result(st))
        };
        let (id, node) = (&c.check_id, &c.node);
        match verb {
            "get" => match current {
                Some(_) => Ok(result(self)),
                None => Err(format!("check {id:?} on node {node:?} doesn't exist")),
            },
            "set" => set(self),
            "cas" => {
                if !cas_ok(current, c.modify_index) {
                    return Err(format!(
                        "failed to set check {id:?} on node {node:?}, index is stale"
                    ));
                }
                set(self)
            }
            "delete" => {
                self.delete_check(node, id);
                Ok(Vec::new())
            }
            "delete-cas" => {
                if current.is_none() || current != Some(c.modify_index) {
                    return Err(format!(
                        "failed to delete check {id:?} on node {node:?}, index is stale"
                    ));
                }
                self.delete_check(node, id);
                Ok(Vec::new())
            }
            other => Err(format!("unknown Check verb {other:?}")),
        }
    }
}

/// A catalog `cas`: index 0 sets only when absent, any other only over that ModifyIndex.
fn cas_ok(current: Option<u64>, want: u64) -> bool {
    match current {
        None => want == 0,
        Some(m) => want != 0 && m == want,
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
