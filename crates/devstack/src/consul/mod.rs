//! The Consul double: KV, blocking queries, sessions and locks, catalog, health, agent services
//! and checks, user events, `/v1/status/leader` and management-token ACLs, served over HTTP on
//! loopback. Behaviour follows ../shared/reference/consul-watches-and-api.md (Consul's
//! agent/*_endpoint.go and state store); each rule cites its source next to the code.
//!
//! ACLs: one management token allows everything; without a token (the anonymous token) writes
//! and single-object reads are refused with 403 and Consul's message, while list reads are
//! answered with their results filtered away (as Consul filters by ACL); an unknown token gets
//! 403 "ACL not found".
//!
//! Not modelled: multiple datacenters (`?dc=` for another one answers 500 "No path to
//! datacenter"), ACL policies and tokens other than the management token, check
//! execution (HTTP/TCP/script checks keep the status they were registered with, `critical` by
//! default; TTL checks change through `/v1/agent/check/pass|warn|fail` and go critical with
//! "TTL expired" when not updated in time), anti-entropy, prepared queries, Connect; of
//! `/v1/txn` the KV lock verbs are not (txn.rs).
//!
//! Time: Consul's `session_ttl_min` (10s) is an option here, so tests can use short TTLs; a TTL
//! session is invalidated 2×TTL after its last renew (SessionTTLMultiplier), releasing (or
//! deleting) its locks and putting a lock-delay on them.

mod endpoints;
mod state;
mod txn;
pub mod util;

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Map;

pub use state::KvEntry;
use state::{Check, Node, Service, State, UserEvent};

use crate::http::{Faults, Server};

/// How to start the double.
#[derive(Debug, Clone)]
pub struct ConsulOptions {
    /// Listen address; `127.0.0.1:0` (the default) picks an ephemeral port.
    pub bind: String,
    /// When set, ACLs are on with default-deny: only requests carrying this token (header
    /// `X-Consul-Token`, `Authorization: Bearer`, or `?token=`) are allowed.
    pub acl_master_token: Option<String>,
    /// The agent's node name (default "devstack").
    pub node_name: String,
    /// The datacenter (default "dc1").
    pub datacenter: String,
    /// Consul's `session_ttl_min` server option (default 10s, as Consul). Lower it in tests to
    /// use short session TTLs.
    pub session_ttl_min: Duration,
    /// Apply the KV key validation of the newest Consul sources (only `[A-Za-z0-9,-_./]`, no
    /// leading `/`, no `..`, no web/file extensions such as `.json`). Off by default: the first
    /// release that has it is UNCONFIRMED, and it would refuse git2consul-style file keys.
    pub strict_kv_keys: bool,
    /// The most operations one `PUT /v1/txn` may hold (more: 413 "Transaction contains too many
    /// operations (N > max)"). Default 128, as v1.14.11; 64 models a Consul
    /// before 1.14 (hashicorp/consul PR #14599 raised it). Changeable while running with
    /// [`Consul::set_max_txn_ops`].
    pub max_txn_ops: usize,
}

impl Default for ConsulOptions {
    fn default() -> Self {
        ConsulOptions {
            bind: "127.0.0.1:0".into(),
            acl_master_token: None,
            node_name: "devstack".into(),
            datacenter: "dc1".into(),
            session_ttl_min: Duration::from_secs(10),
            strict_kv_keys: false,
            max_txn_ops: txn::MAX_TXN_OPS,
        }
    }
}

/// A service instance in the catalog (a snapshot for tests and the demo).
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogService {
    pub node: String,
    pub node_address: String,
    pub id: String,
    pub service: String,
    pub tags: Vec<String>,
    pub address: String,
    pub port: u64,
    pub meta: Map<String, serde_json::Value>,
}

/// State shared by the HTTP handler, the session reaper and the direct-access API.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Notified on every state change: blocked queries and the session reaper wait on it.
    changed: Condvar,
    opts: ConsulOptions,
    node_id: String,
    writes: std::sync::atomic::AtomicU64,
    /// [`ConsulOptions::max_txn_ops`], as changed by [`Consul::set_max_txn_ops`].
    pub(crate) max_txn_ops: std::sync::atomic::AtomicUsize,
    /// `PUT /v1/txn` requests answered 413 over that limit.
    pub(crate) txn_too_many_ops: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in the double; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a mutation and wakes every waiter.
    fn mutate<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut st = self.lock();
        let out = f(&mut st);
        drop(st);
        self.changed.notify_all();
        out
    }
}

/// A running Consul double. Dropping it stops the server and wakes every blocked query.
pub struct Consul {
    shared: Arc<Shared>,
    reaper: Option<JoinHandle<()>>,
    // Declared last so the server stops after the shutdown flag wakes blocked queries.
    server: Server,
}

impl Consul {
    /// Starts the double (milliseconds: a listener and two threads).
    pub fn start(opts: ConsulOptions) -> std::io::Result<Consul> {
        let node_id = util::uuid();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            opts: opts.clone(),
            node_id: node_id.clone(),
            writes: Default::default(),
            max_txn_ops: opts.max_txn_ops.into(),
            txn_too_many_ops: Default::default(),
        });
        bootstrap(&shared, &node_id);
        let handler = Arc::new(endpoints::Api {
            shared: Arc::clone(&shared),
        });
        let server = Server::start(&opts.bind, handler)?;
        let reaper = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("consul-session-reaper".into())
                .spawn(move || reap_sessions(&shared))?
        };
        Ok(Consul {
            shared,
            reaper: Some(reaper),
            server,
        })
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn faults(&self) -> &Faults {
        self.server.faults()
    }

    /// Writes a key as a plain PUT would; returns its ModifyIndex.
    pub fn kv_put(&self, key: &str, value: &[u8]) -> u64 {
        self.shared.mutate(|st| st.kv_set(key, value.to_vec(), 0))
    }

    pub fn kv_get(&self, key: &str) -> Option<KvEntry> {
        self.shared.lock().kv.get(key).cloned()
    }

    pub fn kv_delete(&self, key: &str) {
        self.shared.mutate(|st| st.kv_delete(key))
    }

    /// Every key under a prefix, in key order.
    pub fn kv_list(&self, prefix: &str) -> Vec<KvEntry> {
        let st = self.shared.lock();
        st.kv_list(prefix).1.into_iter().cloned().collect()
    }

    /// The current Raft-like index (shared by KV, sessions and catalog).
    pub fn index(&self) -> u64 {
        self.shared.lock().index
    }

    /// Every service instance in the catalog (including the `consul` service and the agent's).
    pub fn catalog_services(&self) -> Vec<CatalogService> {
        let st = self.shared.lock();
        st.services.values().map(|s| snapshot(&st, s)).collect()
    }

    /// The services registered through the agent API (on the agent's node).
    pub fn agent_services(&self) -> Vec<CatalogService> {
        let st = self.shared.lock();
        let node = &self.shared.opts.node_name;
        st.agent_services
            .iter()
            .filter_map(|id| st.services.get(&(node.clone(), id.clone())))
            .map(|s| snapshot(&st, s))
            .collect()
    }

    /// Fires a user event as `PUT /v1/event/fire/<name>` does; returns its ID.
    pub fn fire_event(&self, name: &str, payload: &[u8]) -> String {
        let ev = UserEvent {
            id: util::uuid(),
            name: name.into(),
            payload: payload.to_vec(),
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            ltime: 0,
        };
        self.shared.mutate(|st| st.push_event(ev)).id
    }

    /// Events in the agent's buffer as (ID, name, payload), oldest first.
    pub fn events(&self) -> Vec<(String, String, Vec<u8>)> {
        let st = self.shared.lock();
        st.events
            .iter()
            .map(|e| (e.id.clone(), e.name.clone(), e.payload.clone()))
            .collect()
    }

    /// Number of write requests served: PUT/POST/DELETE answered 200 (a `cas`/`acquire` answered
    /// `false` counts: it was a Raft write in Consul too). Reads and refused requests do not.
    pub fn write_count(&self) -> u64 {
        self.shared.writes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sets the operation limit of `PUT /v1/txn` ([`ConsulOptions::max_txn_ops`]): 64 models a
    /// Consul before 1.14, 128 is v1.14.11's.
    pub fn set_max_txn_ops(&self, max: usize) {
        self.shared
            .max_txn_ops
            .store(max, std::sync::atomic::Ordering::SeqCst);
    }

    /// Number of `PUT /v1/txn` requests answered 413 "Transaction contains too many operations".
    pub fn txn_too_many_ops_count(&self) -> u64 {
        self.shared
            .txn_too_many_ops
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Consul {
    fn drop(&mut self) {
        self.shared.mutate(|st| st.shutdown = true);
        if let Some(h) = self.reaper.take() {
            let _ = h.join();
        }
    }
}

fn snapshot(st: &State, s: &Service) -> CatalogService {
    CatalogService {
        node: s.node.clone(),
        node_address: st
            .nodes
            .get(&s.node)
            .map(|n| n.address.clone())
            .unwrap_or_default(),
        id: s.id.clone(),
        service: s.service.clone(),
        tags: s.tags.clone(),
        address: s.address.clone(),
        port: s.port,
        meta: s.meta.clone().unwrap_or_default(),
    }
}

/// What a fresh single-server cluster holds: the server's node with its `serfHealth` check and
/// the `consul` service (fixtures/consul/services.json lists `"consul":[]`).
fn bootstrap(shared: &Shared, node_id: &str) {
    let opts = &shared.opts;
    let mut st = shared.lock();
    st.ensure_node(Node {
        id: node_id.into(),
        node: opts.node_name.clone(),
        address: "127.0.0.1".into(),
        datacenter: opts.datacenter.clone(),
        tagged_addresses: Some(
            serde_json::json!({"lan": "127.0.0.1", "lan_ipv4": "127.0.0.1", "wan": "127.0.0.1", "wan_ipv4": "127.0.0.1"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        ),
        meta: Some(
            serde_json::json!({"consul-network-segment": ""})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        ),
        create_index: 0,
        modify_index: 0,
    });
    st.ensure_check(Check {
        node: opts.node_name.clone(),
        check_id: "serfHealth".into(),
        name: "Serf Health Status".into(),
        status: "passing".into(),
        notes: String::new(),
        output: "Agent alive and reachable".into(),
        service_id: String::new(),
        service_name: String::new(),
        service_tags: Vec::new(),
        check_type: String::new(),
        definition: state::empty_definition(),
        ttl: None,
        create_index: 0,
        modify_index: 0,
    });
    st.ensure_service(Service {
        node: opts.node_name.clone(),
        id: "consul".into(),
        service: "consul".into(),
        tags: Vec::new(),
        address: String::new(),
        port: 8300,
        meta: Some(Map::new()),
        tagged_addresses: None,
        weights: (1, 1),
        enable_tag_override: false,
        kind: String::new(),
        create_index: 0,
        modify_index: 0,
    });
}

/// Invalidates TTL sessions and fails agent TTL checks when their timers run out; sleeps on the state condvar until the
/// next expiry or a change (no polling).
fn reap_sessions(shared: &Shared) {
    let mut st = shared.lock();
    loop {
        if st.shutdown {
            return;
        }
        let before = st.index;
        let now = Instant::now();
        let next = [
            st.expire_sessions(now),
            st.expire_checks(&shared.opts.node_name, now),
        ]
        .into_iter()
        .flatten()
        .min();
        if st.index != before {
            shared.changed.notify_all();
        }
        st = match next {
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                shared
                    .changed
                    .wait_timeout(st, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => shared.changed.wait(st).unwrap_or_else(|e| e.into_inner()),
        };
    }
}
