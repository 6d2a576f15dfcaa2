//! The Consul double's state store: one Raft-like index shared by KV, sessions and catalog, the
//! per-table indexes blocking queries compare against (as Consul's memdb tables do), and the
//! agent-local user event buffer. Every mutation bumps the index and wakes blocked queries.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::util::{format_go_duration, uuid_to_u64};

/// Size of the agent's user event ring buffer (`eventBuf: make([]*UserEvent, 256)` in agent.go).
pub const EVENT_BUFFER: usize = 256;

/// One KV entry with Consul's fields (api.KVPair).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub key: String,
    pub create_index: u64,
    pub modify_index: u64,
    pub lock_index: u64,
    pub flags: u64,
    pub value: Vec<u8>,
    pub session: String,
}

/// A Go `[]byte` as encoding/json writes it: base64, or `null` for an empty (nil) slice.
fn bytes_json(bytes: &[u8]) -> Value {
    use base64::Engine;
    if bytes.is_empty() {
        Value::Null
    } else {
        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

impl KvEntry {
    /// The wire form: an empty value is `null`, as Consul stores a nil byte slice for an empty
    /// PUT body.
    /// `Session` is left out when empty: the HTTP API encodes structs.DirEntry, whose Session
    /// is `omitempty` (seen against Consul v1.14.11 by tests/consul_conformance.rs). Watch
    /// payloads re-encode api.KVPair and always carry it (the runner adds it back).
    pub fn to_json(&self) -> Value {
        let value = bytes_json(&self.value);
        let mut v = json!({
            "Key": self.key,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
            "LockIndex": self.lock_index,
            "Flags": self.flags,
            "Value": value,
        });
        if !self.session.is_empty() {
            v["Session"] = json!(self.session);
        }
        v
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    Release,
    Delete,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub name: String,
    pub node: String,
    pub lock_delay: Duration,
    pub behavior: Behavior,
    pub ttl: String,
    pub ttl_dur: Option<Duration>,
    pub expires: Option<Instant>,
    pub node_checks: Vec<String>,
    pub service_checks: Option<Value>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Session {
    pub fn to_json(&self) -> Value {
        json!({
            "ID": self.id,
            "Name": self.name,
            "Node": self.node,
            "LockDelay": self.lock_delay.as_nanos() as u64,
            "Behavior": match self.behavior { Behavior::Release => "release", Behavior::Delete => "delete" },
            "TTL": self.ttl,
            "NodeChecks": self.node_checks,
            "ServiceChecks": self.service_checks.clone().unwrap_or(Value::Null),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: Option<Map<String, Value>>,
    pub meta: Option<Map<String, Value>>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Node {
    pub fn to_json(&self) -> Value {
        json!({
            "ID": self.id,
            "Node": self.node,
            "Address": self.address,
            "Datacenter": self.datacenter,
            "TaggedAddresses": opt_map(&self.tagged_addresses),
            "Meta": opt_map(&self.meta),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }

    fn same(&self, other: &Node) -> bool {
        self.id == other.id
            && self.address == other.address
            && self.tagged_addresses == other.tagged_addresses
            && self.meta == other.meta
    }
}

/// Go encodes maps with sorted keys; nil maps as `null`.
pub fn opt_map(m: &Option<Map<String, Value>>) -> Value {
    match m {
        None => Value::Null,
        Some(m) => sorted(m),
    }
}

pub fn sorted(m: &Map<String, Value>) -> Value {
    let b: BTreeMap<&String, &Value> = m.iter().collect();
    Value::Object(b.into_iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// A service instance registered on a node (catalog and, for the agent's node, agent state).
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub node: String,
    pub id: String,
    pub service: String,
    pub tags: Vec<String>,
    pub address: String,
    pub port: u64,
    pub meta: Option<Map<String, Value>>,
    pub tagged_addresses: Option<Map<String, Value>>,
    pub weights: (i64, i64),
    pub enable_tag_override: bool,
    pub kind: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Service {
    fn same(&self, o: &Service) -> bool {
        let mut a = self.clone();
        a.create_index = o.create_index;
        a.modify_index = o.modify_index;
        a == *o
    }

    /// api.AgentService (used by the health endpoint, /v1/catalog/node and /v1/agent/services).
    pub fn agent_json(&self, datacenter: Option<&str>) -> Value {
        let mut m = Map::new();
        if !self.kind.is_empty() {
            m.insert("Kind".into(), json!(self.kind));
        }
        m.insert("ID".into(), json!(self.id));
        m.insert("Service".into(), json!(self.service));
        m.insert("Tags".into(), json!(self.tags));
        m.insert("Meta".into(), opt_map(&self.meta));
        m.insert("Port".into(), json!(self.port));
        m.insert("Address".into(), json!(self.address));
        if let Some(t) = &self.tagged_addresses {
            m.insert("TaggedAddresses".into(), sorted(t));
        }
        m.insert(
            "Weights".into(),
            json!({"Passing": self.weights.0, "Warning": self.weights.1}),
        );
        m.insert("EnableTagOverride".into(), json!(self.enable_tag_override));
        if let Some(dc) = datacenter {
            m.insert("Datacenter".into(), json!(dc));
        } else {
            m.insert("CreateIndex".into(), json!(self.create_index));
            m.insert("ModifyIndex".into(), json!(self.modify_index));
            // Non-nil empty structs in catalog/health answers (fixtures/consul/service.json).
            m.insert("Proxy".into(), json!({"MeshGateway": {}, "Expose": {}}));
            m.insert("Connect".into(), json!({}));
        }
        Value::Object(m)
    }

    /// One element of /v1/catalog/service/<name> (structs.ServiceNode).
    pub fn catalog_json(&self, node: &Node) -> Value {
        json!({
            "ID": node.id,
            "Node": node.node,
            "Address": node.address,
            "Datacenter": node.datacenter,
            "TaggedAddresses": opt_map(&node.tagged_addresses),
            "NodeMeta": opt_map(&node.meta),
            "ServiceKind": self.kind,
            "ServiceID": self.id,
            "ServiceName": self.service,
            "ServiceTags": self.tags,
            "ServiceAddress": self.address,
            "ServiceWeights": {"Passing": self.weights.0, "Warning": self.weights.1},
            // Consul answers {} for a service registered without Meta, and leaves out empty
            // ServiceTaggedAddresses (omitempty); seen against v1.14.11 (consul_conformance).
            "ServiceMeta": self.meta.clone().unwrap_or_default(),
            "ServicePort": self.port,
            "ServiceEnableTagOverride": self.enable_tag_override,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
        .as_object()
        .cloned()
        .map(|mut m| {
            if let Some(t) = &self.tagged_addresses {
                m.insert("ServiceTaggedAddresses".into(), Value::Object(t.clone()));
            }
            Value::Object(m)
        })
        .unwrap_or(Value::Null)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub node: String,
    pub check_id: String,
    pub name: String,
    pub status: String,
    pub notes: String,
    pub output: String,
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    pub check_type: String,
    pub definition: Value,
    /// TTL of an agent TTL check (updated through /v1/agent/check/pass|warn|fail).
    pub ttl: Option<Duration>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Check {
    fn same(&self, o: &Check) -> bool {
        let mut a = self.clone();
        a.create_index = o.create_index;
        a.modify_index = o.modify_index;
        a == *o
    }

    pub fn to_json(&self) -> Value {
        json!({
            "Node": self.node,
            "CheckID": self.check_id,
            "Name": self.name,
            "Status": self.status,
            "Notes": self.notes,
            "Output": self.output,
            "ServiceID": self.service_id,
            "ServiceName": self.service_name,
            "ServiceTags": self.service_tags,
            "Type": self.check_type,
            "Definition": self.definition,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }
}

/// The zero `Definition` Consul shows for checks without one (see fixtures/consul/service.json).
pub fn empty_definition() -> Value {
    json!({
        "Interval": "0s",
        "Timeout": "0s",
        "DeregisterCriticalServiceAfter": "0s",
        "HTTP": "",
        "Header": null,
        "Method": "",
        "Body": "",
        "TLSServerName": "",
        "TLSSkipVerify": false,
        "TCP": "",
        "GRPC": "",
        "GRPCUseTLS": false
    })
}

#[derive(Debug, Clone)]
pub struct UserEvent {
    pub id: String,
    pub name: String,
    pub payload: Vec<u8>,
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
    pub ltime: u64,
}

impl UserEvent {
    pub fn to_json(&self) -> Value {
        let payload = bytes_json(&self.payload);
        json!({
            "ID": self.id,
            "Name": self.name,
            "Payload": payload,
            "NodeFilter": self.node_filter,
            "ServiceFilter": self.service_filter,
            "TagFilter": self.tag_filter,
            "Version": 1,
            "LTime": self.ltime,
        })
    }
}

/// Everything behind the double's one lock.
#[derive(Default)]
pub struct State {
    pub index: u64,
    tables: HashMap<String, u64>,
    pub kv: BTreeMap<String, KvEntry>,
    /// Deleted keys and the index of their deletion (Consul's graveyard), so a prefix's index
    /// moves on deletes.
    tombstones: BTreeMap<String, u64>,
    lock_delays: HashMap<String, Instant>,
    /// Agent TTL checks: when each goes critical unless updated (agent/checks CheckTTL).
    pub check_deadlines: HashMap<String, Instant>,
    pub sessions: BTreeMap<String, Session>,
    pub nodes: BTreeMap<String, Node>,
    /// Keyed by (node, service id).
    pub services: BTreeMap<(String, String), Service>,
    /// Keyed by (node, check id).
    pub checks: BTreeMap<(String, String), Check>,
    /// Service and check IDs registered through the agent API (agent-local state).
    pub agent_services: BTreeSet<String>,
    pub agent_checks: BTreeSet<String>,
    pub events: VecDeque<UserEvent>,
    ltime: u64,
    pub shutdown: bool,
    /// Set while [`State::one_write`] runs: the index all its changes get.
    one_write: Option<u64>,
}

/// See [`State::catalog_snapshot`].
pub(super) struct CatalogSnapshot {
    index: u64,
    tables: HashMap<String, u64>,
    nodes: Vec<(String, Option<Node>)>,
    services: Vec<((String, String), Service)>,
    checks: Vec<((String, String), Check)>,
    touched: BTreeSet<String>,
    #[allow(clippy::type_complexity)]
    sessions: Option<(
        BTreeMap<String, Session>,
        BTreeMap<String, KvEntry>,
        BTreeMap<String, u64>,
        HashMap<String, Instant>,
    )>,
}

pub const KVS: &str = "kvs";
pub const SESSIONS: &str = "sessions";
pub const NODES: &str = "nodes";
pub const SERVICES: &str = "services";
pub const CHECKS: &str = "checks";

fn service_table(name: &str) -> String {
    format!("service.{name}")
}

impl State {
    /// The next Raft index (every state change consumes one).
    fn next(&mut self) -> u64 {
        if let Some(i) = self.one_write {
            self.index = i;
            return i;
        }
        self.index += 1;
        self.index
    }

    /// Runs `f` as ONE Raft write: every change it makes gets the same index (a catalog
    /// register of node, service and checks is one Raft entry in Consul; seen against v1.14.11,
    /// where they share CreateIndex). Nothing changed: the index does not move.
    pub fn one_write<T>(&mut self, f: impl FnOnce(&mut State) -> T) -> T {
        self.one_write = Some(self.index + 1);
        let out = f(self);
        self.one_write = None;
        out
    }

    fn touch(&mut self, table: &str, idx: u64) {
        self.tables.insert(table.to_string(), idx);
    }

    /// A transaction's KV writes (consul/txn.rs) moved the kvs table to `idx`.
    pub(super) fn touch_kvs(&mut self, idx: u64) {
        self.touch(KVS, idx);
    }

    /// A key deleted at `idx` (Consul's graveyard, so a prefix's index moves on deletes).
    pub(super) fn record_tombstone(&mut self, key: &str, idx: u64) {
        self.tombstones.insert(key.into(), idx);
    }

    pub fn table(&self, table: &str) -> u64 {
        self.tables.get(table).copied().unwrap_or(0)
    }

    /// The max index of several tables, never 0 (Consul returns 1 rather than 0 so clients
    /// never spin on index 0).
    pub fn tables_max(&self, tables: &[&str]) -> u64 {
        tables
            .iter()
            .map(|t| self.table(t))
            .max()
            .unwrap_or(0)
            .max(1)
    }

    // ---------------------------------------------------------------- KV

    /// Index for a single-key read: the key's ModifyIndex, else the table index (kvs_endpoint.go
    /// Get: "Must provide non-zero index to prevent blocking").
    pub fn kv_get_index(&self, key: &str) -> u64 {
        match self.kv.get(key) {
            Some(e) => e.modify_index,
            None => self.tables_max(&[KVS]),
        }
    }

    /// Entries under a prefix and the prefix's index (max ModifyIndex of entries and of
    /// tombstones under the prefix; the table index when the prefix is empty or never used).
    pub fn kv_list(&self, prefix: &str) -> (u64, Vec<&KvEntry>) {
        let entries: Vec<&KvEntry> = self
            .kv
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, e)| e)
            .collect();
        if prefix.is_empty() {
            return (self.tables_max(&[KVS]), entries);
        }
        let mut idx = entries.iter().map(|e| e.modify_index).max().unwrap_or(0);
        let grave = self
            .tombstones
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, i)| *i)
            .max()
            .unwrap_or(0);
        idx = idx.max(grave);
        if idx == 0 {
            idx = self.tables_max(&[KVS]);
        }
        (idx, entries)
    }

    fn kv_store(&mut self, key: &str, value: Vec<u8>, flags: u64, session: Option<String>) -> u64 {
        // kvsSetTxn: an entry that would not change (same value, flags and session) is not
        // written, so its ModifyIndex and the table index stay put and no watch fires (seen
        // against v1.14.11 by consul_conformance).
        if let Some(old) = self.kv.get(key) {
            let same_session = session.as_ref().is_none_or(|s| *s == old.session);
            if old.value == value && old.flags == flags && same_session {
                return old.modify_index;
            }
        }
        let idx = self.next();
        let entry = match self.kv.get(key) {
            Some(old) => KvEntry {
                key: key.into(),
                create_index: old.create_index,
                modify_index: idx,
                lock_index: old.lock_index,
                flags,
                value,
                session: session.unwrap_or_else(|| old.session.clone()),
            },
            None => KvEntry {
                key: key.into(),
                create_index: idx,
                modify_index: idx,
                lock_index: 0,
                flags,
                value,
                session: session.unwrap_or_default(),
            },
        };
        self.kv.insert(key.into(), entry);
        self.tombstones.remove(key);
        self.touch(KVS, idx);
        idx
    }

    /// Plain PUT: always succeeds; a held lock keeps its session (kvsSetTxn).
    pub fn kv_set(&mut self, key: &str, value: Vec<u8>, flags: u64) -> u64 {
        self.kv_store(key, value, flags, None)
    }

    /// `?cas=N`: 0 creates only when absent; otherwise the ModifyIndex must match.
    pub fn kv_cas(&mut self, key: &str, value: Vec<u8>, flags: u64, cas: u64) -> bool {
        let ok = match self.kv.get(key) {
            None => cas == 0,
            Some(e) => cas != 0 && e.modify_index == cas,
        };
        if ok {
            self.kv_store(key, value, flags, None);
        }
        ok
    }

    /// `?acquire=<session>`. Errors are Consul's RPC errors (HTTP 500).
    pub fn kv_acquire(
        &mut self,
        key: &str,
        value: Vec<u8>,
        flags: u64,
        session: &str,
    ) -> Result<bool, String> {
        // kvs_endpoint.go Apply: a lock-delay in effect refuses the acquire.
        if let Some(until) = self.lock_delays.get(key) {
            if *until > Instant::now() {
                return Ok(false);
            }
        }
        if !self.sessions.contains_key(session) {
            return Err(format!("invalid session \"{session}\""));
        }
        match self.kv.get(key).map(|e| e.session.clone()) {
            Some(holder) if holder == session => {
                // Re-acquire by the holder: update value, keep LockIndex.
                self.kv_store(key, value, flags, Some(session.into()));
            }
            Some(holder) if !holder.is_empty() => return Ok(false),
            _ => {
                self.kv_store(key, value, flags, Some(session.into()));
                if let Some(e) = self.kv.get_mut(key) {
                    e.lock_index += 1;
                }
            }
        }
        Ok(true)
    }

    /// `?release=<session>`: only the holder can release; no lock-delay (that is only applied
    /// on session invalidation).
    pub fn kv_release(
        &mut self,
        key: &str,
        value: Vec<u8>,
        flags: u64,
        session: &str,
    ) -> Result<bool, String> {
        if !self.sessions.contains_key(session) {
            return Err(format!("invalid session \"{session}\""));
        }
        match self.kv.get(key) {
            Some(e) if e.session == session => {
                self.kv_store(key, value, flags, Some(String::new()));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    pub fn kv_delete(&mut self, key: &str) {
        if self.kv.contains_key(key) {
            let idx = self.next();
            self.kv.remove(key);
            self.tombstones.insert(key.into(), idx);
            self.touch(KVS, idx);
        }
    }

    /// DELETE ?cas: a missing key counts as deleted (kvsDeleteCASTxn returns `entry == nil`).
    pub fn kv_delete_cas(&mut self, key: &str, cas: u64) -> bool {
        match self.kv.get(key) {
            None => true,
            Some(e) if e.modify_index == cas => {
                self.kv_delete(key);
                true
            }
            Some(_) => false,
        }
    }

    pub fn kv_delete_tree(&mut self, prefix: &str) {
        let keys: Vec<String> = self
            .kv
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return;
        }
        let idx = self.next();
        for k in keys {
            self.kv.remove(&k);
            self.tombstones.insert(k, idx);
        }
        self.touch(KVS, idx);
    }

    // ---------------------------------------------------------------- sessions

    pub fn session_create(&mut self, mut s: Session) -> String {
        let idx = self.next();
        s.create_index = idx;
        s.modify_index = idx;
        s.expires = s.ttl_dur.map(|t| Instant::now() + t * 2);
        let id = s.id.clone();
        self.sessions.insert(id.clone(), s);
        self.touch(SESSIONS, idx);
        id
    }

    /// Renew resets the timer to 2×TTL (SessionTTLMultiplier).
    pub fn session_renew(&mut self, id: &str) -> Option<Value> {
        let s = self.sessions.get_mut(id)?;
        s.expires = s.ttl_dur.map(|t| Instant::now() + t * 2);
        Some(s.to_json())
    }

    /// Destroys/invalidates a session: held locks are released (or deleted, Behavior=delete)
    /// and a lock-delay is set on each of them (state store deleteSessionTxn).
    pub fn session_destroy(&mut self, id: &str) {
        let Some(s) = self.sessions.remove(id) else {
            return;
        };
        let idx = self.next();
        self.touch(SESSIONS, idx);
        let held: Vec<String> = self
            .kv
            .values()
            .filter(|e| e.session == id)
            .map(|e| e.key.clone())
            .collect();
        if held.is_empty() {
            return;
        }
        let until = Instant::now() + s.lock_delay;
        for key in held {
            if !s.lock_delay.is_zero() {
                self.lock_delays.insert(key.clone(), until);
            }
            match s.behavior {
                Behavior::Release => {
                    if let Some(e) = self.kv.get_mut(&key) {
                        e.session.clear();
                        e.modify_index = idx;
                    }
                }
                Behavior::Delete => {
                    self.kv.remove(&key);
                    self.tombstones.insert(key, idx);
                }
            }
        }
        self.touch(KVS, idx);
    }

    /// Invalidates every TTL session whose timer ran out; returns the next expiry, if any.
    pub fn expire_sessions(&mut self, now: Instant) -> Option<Instant> {
        let expired: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.expires.is_some_and(|e| e <= now))
            .map(|s| s.id.clone())
            .collect();
        for id in expired {
            log::debug!("consul double: session {id} expired");
            self.session_destroy(&id);
        }
        self.sessions.values().filter_map(|s| s.expires).min()
    }

    /// Turns agent TTL checks whose TTL ran out critical with output "TTL expired" (the
    /// agent's CheckTTL timer; it is re-armed by the next pass/warn/fail). Returns the next
    /// deadline, if any.
    pub fn expire_checks(&mut self, node: &str, now: Instant) -> Option<Instant> {
        let expired: Vec<String> = self
            .check_deadlines
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.check_deadlines.remove(&id);
            if let Some(mut c) = self.checks.get(&(node.to_string(), id.clone())).cloned() {
                log::debug!("consul double: check {id} TTL expired");
                c.status = "critical".into();
                c.output = "TTL expired".into();
                self.ensure_check(c);
            }
        }
        self.check_deadlines.values().min().copied()
    }

    // ---------------------------------------------------------------- txn rollback

    /// What a transaction's catalog operations on `nodes` may change, to be put back when one
    /// of its operations fails (Consul aborts the whole memdb transaction). Only the touched
    /// nodes' entries are copied, so a transaction costs what it touches, not the catalog's size.
    pub(super) fn catalog_snapshot(
        &self,
        nodes: &BTreeSet<String>,
        sessions: bool,
    ) -> CatalogSnapshot {
        CatalogSnapshot {
            index: self.index,
            tables: self.tables.clone(),
            nodes: nodes
                .iter()
                .map(|n| (n.clone(), self.nodes.get(n).cloned()))
                .collect(),
            services: nodes
                .iter()
                .flat_map(|n| {
                    self.services
                        .range((n.clone(), String::new())..)
                        .take_while(move |((sn, _), _)| sn == n)
                        .map(|(k, v)| (k.clone(), v.clone()))
                })
                .collect(),
            checks: nodes
                .iter()
                .flat_map(|n| {
                    self.checks
                        .range((n.clone(), String::new())..)
                        .take_while(move |((cn, _), _)| cn == n)
                        .map(|(k, v)| (k.clone(), v.clone()))
                })
                .collect(),
            touched: nodes.clone(),
            // A node delete destroys the node's sessions, which releases their locks.
            sessions: sessions.then(|| {
                (
                    self.sessions.clone(),
                    self.kv.clone(),
                    self.tombstones.clone(),
                    self.lock_delays.clone(),
                )
            }),
        }
    }

    /// Puts back what [`State::catalog_snapshot`] copied.
    pub(super) fn catalog_restore(&mut self, snap: CatalogSnapshot) {
        self.index = snap.index;
        self.tables = snap.tables;
        for (n, node) in snap.nodes {
            match node {
                Some(node) => self.nodes.insert(n, node),
                None => self.nodes.remove(&n),
            };
        }
        self.services.retain(|(n, _), _| !snap.touched.contains(n));
        self.services.extend(snap.services);
        self.checks.retain(|(n, _), _| !snap.touched.contains(n));
        self.checks.extend(snap.checks);
        if let Some((sessions, kv, tombstones, lock_delays)) = snap.sessions {
            self.sessions = sessions;
            self.kv = kv;
            self.tombstones = tombstones;
            self.lock_delays = lock_delays;
        }
    }

    /// Runs `f` with every change at index `idx` (a transaction's one Raft index).
    pub(super) fn at_index<T>(&mut self, idx: u64, f: impl FnOnce(&mut State) -> T) -> T {
        self.one_write = Some(idx);
        let out = f(self);
        self.one_write = None;
        out
    }

    // ---------------------------------------------------------------- catalog

    /// Bumps the per-service indexes of every service on a node (a node or node-check change
    /// changes their health results).
    fn touch_node_services(&mut self, node: &str, idx: u64) {
        let names: BTreeSet<String> = self
            .services
            .values()
            .filter(|s| s.node == node)
            .map(|s| s.service.clone())
            .collect();
        for n in names {
            self.touch(&service_table(&n), idx);
        }
    }

    /// Creates or updates a node; unchanged nodes are left alone (no index bump).
    pub fn ensure_node(&mut self, mut n: Node) {
        if let Some(old) = self.nodes.get(&n.node) {
            if n.id.is_empty() {
                n.id = old.id.clone();
            }
            if old.same(&n) {
                return;
            }
            n.create_index = old.create_index;
        }
        let idx = self.next();
        if n.create_index == 0 {
            n.create_index = idx;
        }
        n.modify_index = idx;
        let name = n.node.clone();
        self.nodes.insert(name.clone(), n);
        self.touch(NODES, idx);
        self.touch_node_services(&name, idx);
    }

    pub fn ensure_service(&mut self, mut s: Service) {
        let key = (s.node.clone(), s.id.clone());
        let old_name = self.services.get(&key).map(|o| o.service.clone());
        if let Some(old) = self.services.get(&key) {
            if s.same(old) {
                return;
            }
            s.create_index = old.create_index;
        }
        let idx = self.next();
        if s.create_index == 0 {
            s.create_index = idx;
        }
        s.modify_index = idx;
        self.touch(SERVICES, idx);
        self.touch(&service_table(&s.service), idx);
        if let Some(n) = old_name {
            self.touch(&service_table(&n), idx);
        }
        // Checks of the service carry its name and tags.
        for c in self.checks.values_mut() {
            if c.node == s.node && c.service_id == s.id {
                c.service_name = s.service.clone();
                c.service_tags = s.tags.clone();
            }
        }
        self.services.insert(key, s);
    }

    pub fn ensure_check(&mut self, mut c: Check) {
        if !c.service_id.is_empty() {
            if let Some(s) = self.services.get(&(c.node.clone(), c.service_id.clone())) {
                c.service_name = s.service.clone();
                c.service_tags = s.tags.clone();
            }
        }
        let key = (c.node.clone(), c.check_id.clone());
        if let Some(old) = self.checks.get(&key) {
            if c.same(old) {
                return;
            }
            c.create_index = old.create_index;
        }
        let idx = self.next();
        if c.create_index == 0 {
            c.create_index = idx;
        }
        c.modify_index = idx;
        self.touch(CHECKS, idx);
        if c.service_name.is_empty() {
            let node = c.node.clone();
            self.touch_node_services(&node, idx);
        } else {
            self.touch(&service_table(&c.service_name), idx);
        }
        self.checks.insert(key, c);
    }

    pub fn delete_check(&mut self, node: &str, check_id: &str) {
        let Some(c) = self
            .checks
            .remove(&(node.to_string(), check_id.to_string()))
        else {
            return;
        };
        let idx = self.next();
        self.touch(CHECKS, idx);
        if c.service_name.is_empty() {
            self.touch_node_services(node, idx);
        } else {
            self.touch(&service_table(&c.service_name), idx);
        }
    }

    pub fn delete_service(&mut self, node: &str, service_id: &str) {
        let Some(s) = self
            .services
            .remove(&(node.to_string(), service_id.to_string()))
        else {
            return;
        };
        let idx = self.next();
        self.touch(SERVICES, idx);
        self.touch(&service_table(&s.service), idx);
        let before = self.checks.len();
        self.checks
            .retain(|(n, _), c| !(n == node && c.service_id == service_id));
        if self.checks.len() != before {
            self.touch(CHECKS, idx);
        }
    }

    pub fn delete_node(&mut self, node: &str) {
        if !self.nodes.contains_key(node) {
            return;
        }
        let idx = self.next();
        self.touch_node_services(node, idx);
        self.nodes.remove(node);
        self.services.retain(|(n, _), _| n != node);
        self.checks.retain(|(n, _), _| n != node);
        self.touch(NODES, idx);
        self.touch(SERVICES, idx);
        self.touch(CHECKS, idx);
        // Sessions on a deregistered node are invalidated.
        let ids: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.node == node)
            .map(|s| s.id.clone())
            .collect();
        for id in ids {
            self.session_destroy(&id);
        }
    }

    /// Index of a service's results: its own index, else the services table's.
    pub fn service_index(&self, name: &str) -> u64 {
        match self.tables.get(&service_table(name)) {
            Some(i) => *i,
            // maxIndexAndWatchChForService: a service that never existed answers the catalog's
            // max index (nodes and services; v1.14.11).
            None => self.tables_max(&[NODES, SERVICES]),
        }
    }

    /// state/catalog.go catalogNodeMaxIndex: the last change to a node, its services or its
    /// checks (deletions on the node are not tracked here).
    pub fn node_index(&self, node: &Node) -> u64 {
        let services = self.services.values().filter(|s| s.node == node.node);
        let checks = self.checks.values().filter(|c| c.node == node.node);
        services
            .map(|s| s.modify_index)
            .chain(checks.map(|c| c.modify_index))
            .chain([node.modify_index, 1])
            .max()
            .unwrap_or(1)
    }

    /// /v1/catalog/services: name → unique tags, sorted like Go's map encoding.
    /// `/v1/catalog/services`: names and tags of the services on nodes whose meta matches
    /// `node_meta` (all pairs; empty = every node).
    pub fn services_map(&self, node_meta: &[(String, String)]) -> Value {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in self.services.values().filter(|s| {
            self.nodes
                .get(&s.node)
                .is_some_and(|n| super::endpoints::node_meta_matches(n, node_meta))
        }) {
            let tags = out.entry(s.service.clone()).or_default();
            for t in &s.tags {
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
        }
        json!(out)
    }

    pub fn instances(&self, name: &str) -> Vec<&Service> {
        self.services
            .values()
            .filter(|s| s.service == name)
            .collect()
    }

    /// Node-level and the instance's own checks (a health entry's `Checks`).
    pub fn checks_for(&self, s: &Service) -> Vec<&Check> {
        self.checks
            .values()
            .filter(|c| c.node == s.node && (c.service_id.is_empty() || c.service_id == s.id))
            .collect()
    }

    // ---------------------------------------------------------------- events

    pub fn push_event(&mut self, mut e: UserEvent) -> UserEvent {
        self.ltime += 1;
        e.ltime = self.ltime;
        self.events.push_back(e.clone());
        while self.events.len() > EVENT_BUFFER {
            self.events.pop_front();
        }
        e
    }

    /// Events (optionally by name) and the list's index: the last event's uuid-derived value,
    /// or 1 when empty "to prevent a hot query loop" (agent/event_endpoint.go).
    pub fn event_list(&self, name: Option<&str>) -> (u64, Vec<&UserEvent>) {
        let events: Vec<&UserEvent> = self
            .events
            .iter()
            .filter(|e| name.is_none_or(|n| e.name == n))
            .collect();
        let idx = events.last().map(|e| uuid_to_u64(&e.id)).unwrap_or(1);
        (idx, events)
    }
}

/// Definition echo for an agent check body (durations as Go strings).
pub fn definition_from(body: &Map<String, Value>) -> Value {
    let mut d = empty_definition();
    let get = |k: &str| body.get(k).cloned();
    if let Some(obj) = d.as_object_mut() {
        for k in ["HTTP", "Method", "Body", "TLSServerName", "TCP", "GRPC"] {
            if let Some(Value::String(s)) = get(k) {
                obj.insert(k.into(), json!(s));
            }
        }
        for k in ["Interval", "Timeout", "DeregisterCriticalServiceAfter"] {
            if let Some(Value::String(s)) = get(k) {
                let norm = super::util::parse_go_duration(&s)
                    .map(format_go_duration)
                    .unwrap_or(s);
                obj.insert(k.into(), json!(norm));
            }
        }
        if let Some(h) = get("Header") {
            obj.insert("Header".into(), h);
        }
        if let Some(Value::Bool(b)) = get("TLSSkipVerify") {
            obj.insert("TLSSkipVerify".into(), json!(b));
        }
    }
    d
}
