//! HTTP endpoints of the Consul double. Error bodies are plain text as agent/http.go writes
//! them; successful reads carry X-Consul-Index, X-Consul-KnownLeader and X-Consul-LastContact.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::state::{
    self, Behavior, Check, Node, Service, Session, State, UserEvent, CHECKS, NODES, SERVICES,
    SESSIONS,
};
use super::util::{parse_go_duration, random_u64, uuid};
use super::Shared;
use crate::http::{Handler, Request, Response};

/// Consul's default `kv_max_value_size` (raft's suggested max, 512 KiB).
const KV_MAX_VALUE_SIZE: usize = 512 * 1024;
/// Blocking query defaults (api-docs/features/blocking.mdx): 5 minutes, capped at 10.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
const MAX_WAIT: Duration = Duration::from_secs(600);
/// Consul's session TTL maximum (structs.SessionTTLMax).
const SESSION_TTL_MAX: Duration = Duration::from_secs(86400);
/// The anonymous token's accessor ID (acl/acl.go AnonymousTokenID).
const ANONYMOUS_ACCESSOR: &str = "00000000-0000-0000-0000-000000000002";

pub(super) struct Api {
    pub shared: Arc<Shared>,
}

type Result<T> = std::result::Result<T, Response>;

fn text(status: u16, body: &str) -> Response {
    Response::text(status, body)
}

fn bool_json(b: bool) -> Response {
    Response::json(200, &json!(b))
}

fn method_not_allowed(method: &str, allow: &str) -> Response {
    text(405, &format!("method {method} not allowed")).with_header("Allow", allow)
}

impl Handler for Api {
    fn handle(&self, req: Request) -> Response {
        let resp = match self.check_acl(&req) {
            Err(denied) => return denied,
            Ok(Access::Filtered) => self.filtered_read(&req),
            Ok(Access::Allowed) => self.route(&req),
        };
        if req.method != "GET" && resp.status() == Some(200) {
            self.shared.writes.fetch_add(1, Ordering::SeqCst);
        }
        resp
    }
}

impl Api {
    fn route(&self, req: &Request) -> Response {
        let p = req.path.as_str();
        if let Some(dc) = req.query("dc").filter(|d| !d.is_empty()) {
            if dc != self.shared.opts.datacenter {
                // agent/consul/rpc.go forwardDC: an unknown datacenter (single-DC double).
                return text(500, "No path to datacenter");
            }
        }
        let out = if let Some(key) = p.strip_prefix("/v1/kv/") {
            self.kv(req, key)
        } else if p == "/v1/kv" {
            self.kv(req, "")
        } else if let Some(rest) = p.strip_prefix("/v1/session/") {
            self.session(req, rest)
        } else if let Some(rest) = p.strip_prefix("/v1/catalog/") {
            self.catalog(req, rest)
        } else if let Some(rest) = p.strip_prefix("/v1/health/") {
            self.health(req, rest)
        } else if let Some(rest) = p.strip_prefix("/v1/agent/") {
            self.agent(req, rest)
        } else if let Some(rest) = p.strip_prefix("/v1/event/") {
            self.event(req, rest)
        } else if p == "/v1/txn" {
            self.txn(req)
        } else if p == "/v1/status/leader" {
            Ok(Response::json(200, &json!("127.0.0.1:8300")))
        } else if p == "/v1/status/peers" {
            Ok(Response::json(200, &json!(["127.0.0.1:8300"])))
        } else if p.starts_with("/v1/") {
            // agent/http.go: an API path no endpoint serves (seen against v1.14.11).
            Ok(text(
                404,
                "Invalid URL path: not a recognized HTTP API endpoint",
            ))
        } else {
            // Go's http.NotFound.
            Ok(text(404, "404 page not found\n"))
        };
        out.unwrap_or_else(|e| e)
    }

    // ------------------------------------------------------------ ACLs

    /// Default-deny ACLs with one management token. Unknown tokens get "ACL not found"; no
    /// token means the anonymous token, which lacks every permission (acl/errors.go format).
    /// List-type reads are not refused but filtered to nothing, as Consul filters results by
    /// ACL: a watch without a token then sees an empty result forever (consul#3392, #3470).
    fn check_acl(&self, req: &Request) -> Result<Access> {
        let Some(master) = &self.shared.opts.acl_master_token else {
            return Ok(Access::Allowed);
        };
        if req.path.starts_with("/v1/status/") {
            return Ok(Access::Allowed);
        }
        let token = req
            .header("X-Consul-Token")
            .map(str::to_string)
            .or_else(|| {
                req.header("Authorization")
                    .and_then(|a| a.strip_prefix("Bearer "))
                    .map(|t| t.trim().to_string())
            })
            .or_else(|| req.query("token").map(str::to_string))
            .filter(|t| !t.is_empty());
        match token {
            Some(t) if &t == master => Ok(Access::Allowed),
            Some(_) => Err(text(403, "ACL not found")),
            None if is_filtered_read(req) => Ok(Access::Filtered),
            // agent/event_endpoint.go writes acl.ErrPermissionDenied itself.
            None if req.path.starts_with("/v1/event/fire/") => Err(text(403, "Permission denied")),
            None => {
                let (resource, level, name) = self.permission_for(req);
                let mut msg = format!(
                    "Permission denied: token with AccessorID '{ANONYMOUS_ACCESSOR}' lacks permission '{resource}:{level}'"
                );
                if !name.is_empty() {
                    msg.push_str(&format!(" on \"{name}\""));
                }
                Err(text(403, &msg))
            }
        }
    }

    /// A list-type read by the anonymous token: everything filtered out, but still a
    /// (blocking) read with Consul's headers.
    fn filtered_read(&self, req: &Request) -> Response {
        let p = req.path.as_str();
        let out = if p == "/v1/event/list" {
            self.blocking(
                req,
                |idx, min| idx == min,
                |_| (1, Response::json(200, &json!([]))),
            )
        } else {
            let kind = if p.starts_with("/v1/kv/") {
                0
            } else if p == "/v1/catalog/services" || p.starts_with("/v1/agent/") {
                1
            } else {
                2
            };
            self.read(req, move |st| {
                let resp = match kind {
                    0 => Response::empty(404),
                    1 => Response::json(200, &json!({})),
                    _ => Response::json(200, &json!([])),
                };
                (st.index.max(1), resp)
            })
        };
        out.unwrap_or_else(|e| e)
    }

    /// The permission a request needs (resource, level, resource name).
    fn permission_for(&self, req: &Request) -> (&'static str, &'static str, String) {
        let p = req.path.as_str();
        let write = req.method != "GET";
        let level = if write { "write" } else { "read" };
        let after = |prefix: &str| p.strip_prefix(prefix).unwrap_or("").to_string();
        if p.starts_with("/v1/kv/") {
            ("key", level, after("/v1/kv/"))
        } else if p.starts_with("/v1/event/fire/") {
            ("event", "write", after("/v1/event/fire/"))
        } else if p.starts_with("/v1/event/") {
            ("event", "read", req.query("name").unwrap_or("").to_string())
        } else if p.starts_with("/v1/session/") {
            ("session", level, self.shared.opts.node_name.clone())
        } else if p.starts_with("/v1/catalog/service/") {
            ("service", "read", after("/v1/catalog/service/"))
        } else if p.starts_with("/v1/health/service/") {
            ("service", "read", after("/v1/health/service/"))
        } else if p.starts_with("/v1/agent/service/") {
            ("service", "write", String::new())
        } else if p.starts_with("/v1/agent/self") {
            ("agent", "read", self.shared.opts.node_name.clone())
        } else if write {
            ("node", "write", String::new())
        } else {
            ("node", "read", String::new())
        }
    }

    // ------------------------------------------------------------ blocking reads

    /// Runs a read, holding it while `unchanged(index, min_index)` and the wait has not run
    /// out (agent/consul/rpc.go blockingQuery; the state condvar is notified on every change).
    fn blocking(
        &self,
        req: &Request,
        unchanged: fn(u64, u64) -> bool,
        read: impl Fn(&State) -> (u64, Response),
    ) -> Result<Response> {
        // The event list is agent-local (event_endpoint.go): no default 5m and no jitter; the
        // wait is the 10m maximum unless given.
        let agent_local = req.path == "/v1/event/list";
        let (min_index, wait) = parse_blocking(req, agent_local)?;
        let deadline = Instant::now() + wait;
        let mut st = self.shared.lock();
        loop {
            let (index, resp) = read(&st);
            let now = Instant::now();
            if min_index == 0 || !unchanged(index, min_index) || now >= deadline || st.shutdown {
                // The agent-local event list sets only X-Consul-Index (event_endpoint.go
                // setIndex; no KnownLeader/LastContact, seen against v1.14.11).
                return Ok(if agent_local {
                    resp.with_header("X-Consul-Index", index.to_string())
                } else {
                    with_meta(resp, index)
                });
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn read(&self, req: &Request, read: impl Fn(&State) -> (u64, Response)) -> Result<Response> {
        self.blocking(req, |idx, min| idx <= min, read)
    }

    // ------------------------------------------------------------ KV

    fn kv(&self, req: &Request, key: &str) -> Result<Response> {
        if self.shared.opts.strict_kv_keys && !key.is_empty() {
            validate_kv_key(key).map_err(|e| text(400, e))?;
        }
        match req.method.as_str() {
            "GET" => self.kv_get(req, key),
            "PUT" => self.kv_put(req, key),
            "DELETE" => self.kv_delete(req, key),
            m => Err(method_not_allowed(m, "GET,PUT,DELETE")),
        }
    }

    fn kv_get(&self, req: &Request, key: &str) -> Result<Response> {
        if req.has_query("keys") {
            // Both spellings, "due to historic spelling error" (kvs_endpoint.go).
            let sep = req
                .query("separator")
                .or(req.query("seperator"))
                .unwrap_or("")
                .to_string();
            let prefix = key.to_string();
            return self.read(req, move |st| {
                let (idx, entries) = st.kv_list(&prefix);
                let mut keys: Vec<String> = Vec::new();
                for e in entries {
                    let rest = &e.key[prefix.len()..];
                    let k = match (sep.is_empty(), rest.find(&sep)) {
                        (false, Some(i)) => format!("{prefix}{}", &rest[..i + sep.len()]),
                        _ => e.key.clone(),
                    };
                    if keys.last() != Some(&k) {
                        keys.push(k);
                    }
                }
                if keys.is_empty() && !prefix.is_empty() {
                    return (idx, Response::empty(404));
                }
                (idx, Response::json(200, &json!(keys)))
            });
        }
        if req.has_query("recurse") {
            let prefix = key.to_string();
            return self.read(req, move |st| {
                let (idx, entries) = st.kv_list(&prefix);
                if entries.is_empty() {
                    return (idx, Response::empty(404));
                }
                let arr: Vec<Value> = entries.iter().map(|e| e.to_json()).collect();
                (idx, Response::json(200, &Value::Array(arr)))
            });
        }
        if key.is_empty() {
            return Err(text(400, "Missing key name"));
        }
        let raw = req.has_query("raw");
        let key = key.to_string();
        self.read(req, move |st| {
            let idx = st.kv_get_index(&key);
            match st.kv.get(&key) {
                None => (idx, Response::empty(404)),
                Some(e) if raw => (
                    idx,
                    Response::new(200, "text/plain", e.value.clone())
                        .with_header("X-Content-Type-Options", "nosniff")
                        .with_header("Content-Security-Policy", "sandbox"),
                ),
                Some(e) => (idx, Response::json(200, &json!([e.to_json()]))),
            }
        })
    }

    fn kv_put(&self, req: &Request, key: &str) -> Result<Response> {
        if key.is_empty() {
            return Err(text(400, "Missing key name"));
        }
        conflicting_flags(req, &["cas", "acquire", "release"])?;
        if req.body.len() > KV_MAX_VALUE_SIZE {
            return Err(text(
                413,
                &format!(
                    "Request body({} bytes) too large, max size: {} bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size.",
                    req.body.len(),
                    KV_MAX_VALUE_SIZE
                ),
            ));
        }
        let flags = match req.query("flags") {
            None | Some("") => 0,
            Some(f) => parse_uint(f)?,
        };
        let cas = req.query("cas").map(parse_uint).transpose()?;
        let value = req.body.clone();
        let result = self.shared.mutate(|st| {
            if let Some(s) = req.query("acquire") {
                st.kv_acquire(key, value, flags, s)
            } else if let Some(s) = req.query("release") {
                st.kv_release(key, value, flags, s)
            } else if let Some(cas) = cas {
                Ok(st.kv_cas(key, value, flags, cas))
            } else {
                st.kv_set(key, value, flags);
                Ok(true)
            }
        });
        match result {
            Ok(b) => Ok(bool_json(b)),
            Err(e) => Err(text(500, &e)),
        }
    }

    fn kv_delete(&self, req: &Request, key: &str) -> Result<Response> {
        conflicting_flags(req, &["recurse", "cas"])?;
        if req.has_query("recurse") {
            self.shared.mutate(|st| st.kv_delete_tree(key));
            return Ok(bool_json(true));
        }
        if key.is_empty() {
            return Err(text(400, "Missing key name"));
        }
        if let Some(c) = req.query("cas") {
            let cas = parse_uint(c)?;
            return Ok(bool_json(
                self.shared.mutate(|st| st.kv_delete_cas(key, cas)),
            ));
        }
        self.shared.mutate(|st| st.kv_delete(key));
        Ok(bool_json(true))
    }

    // ------------------------------------------------------------ sessions

    fn session(&self, req: &Request, rest: &str) -> Result<Response> {
        let (op, arg) = rest.split_once('/').unwrap_or((rest, ""));
        let put_only = |r: &Request| {
            if r.method == "PUT" {
                Ok(())
            } else {
                Err(method_not_allowed(&r.method, "PUT"))
            }
        };
        match op {
            "create" => {
                put_only(req)?;
                self.session_create(req)
            }
            "destroy" => {
                put_only(req)?;
                if arg.is_empty() {
                    return Err(text(400, "Missing session"));
                }
                self.shared.mutate(|st| st.session_destroy(arg));
                Ok(bool_json(true))
            }
            "renew" => {
                put_only(req)?;
                if arg.is_empty() {
                    return Err(text(400, "Missing session"));
                }
                match self.shared.mutate(|st| st.session_renew(arg)) {
                    Some(s) => Ok(Response::json(200, &json!([s]))),
                    None => Err(text(404, &format!("Session id '{arg}' not found"))),
                }
            }
            "info" if arg.is_empty() => Err(text(400, "Missing session")),
            "node" if arg.is_empty() => Err(text(400, "Missing node name")),
            "info" => {
                let id = arg.to_string();
                self.read(req, move |st| {
                    let list: Vec<Value> = st
                        .sessions
                        .get(&id)
                        .map(|s| s.to_json())
                        .into_iter()
                        .collect();
                    (
                        st.tables_max(&[SESSIONS]),
                        Response::json(200, &Value::Array(list)),
                    )
                })
            }
            "list" | "node" => {
                let node = (op == "node").then(|| arg.to_string());
                self.read(req, move |st| {
                    let list: Vec<Value> = st
                        .sessions
                        .values()
                        .filter(|s| node.as_ref().is_none_or(|n| &s.node == n))
                        .map(|s| s.to_json())
                        .collect();
                    (
                        st.tables_max(&[SESSIONS]),
                        Response::json(200, &Value::Array(list)),
                    )
                })
            }
            _ => Ok(text(404, "404 page not found\n")),
        }
    }

    fn session_create(&self, req: &Request) -> Result<Response> {
        let body = if req.body.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            decode_object(&req.body)?
        };
        let opts = &self.shared.opts;
        let node = get_str(&body, "Node")?.unwrap_or_else(|| opts.node_name.clone());
        let name = get_str(&body, "Name")?.unwrap_or_default();
        let behavior = match get_str(&body, "Behavior")?.as_deref() {
            None | Some("") | Some("release") => Behavior::Release,
            Some("delete") => Behavior::Delete,
            Some(other) => return Err(text(500, &format!("Invalid Behavior setting '{other}'"))),
        };
        // api/session.go FixupLockDelay: strings are Go durations, numbers nanoseconds; values
        // below 1000 are taken as seconds.
        let lock_delay = match lookup(&body, "LockDelay") {
            None | Some(Value::Null) => Duration::from_secs(15),
            Some(Value::String(s)) => {
                let d = parse_go_duration(s).ok_or_else(|| {
                    text(
                        400,
                        &format!("Request decode failed: time: invalid duration \"{s}\""),
                    )
                })?;
                if d.as_nanos() < 1000 {
                    Duration::from_secs(d.as_nanos() as u64)
                } else {
                    d
                }
            }
            Some(Value::Number(n)) => {
                let ns = n.as_f64().unwrap_or(0.0).max(0.0) as u64;
                if ns < 1000 {
                    Duration::from_secs(ns)
                } else {
                    Duration::from_nanos(ns)
                }
            }
            Some(_) => return Err(text(400, "Request decode failed: LockDelay")),
        };
        let ttl = get_str(&body, "TTL")?.unwrap_or_default();
        let ttl_dur = if ttl.is_empty() {
            None
        } else {
            let d = parse_go_duration(&ttl).ok_or_else(|| {
                text(
                    500,
                    &format!("Session TTL '{ttl}' invalid: time: invalid duration \"{ttl}\""),
                )
            })?;
            if !d.is_zero() && (d < opts.session_ttl_min || d > SESSION_TTL_MAX) {
                return Err(text(
                    500,
                    &format!(
                        "Invalid Session TTL '{}', must be between [{}={}]",
                        d.as_nanos(),
                        super::util::format_go_duration(opts.session_ttl_min),
                        super::util::format_go_duration(SESSION_TTL_MAX)
                    ),
                ));
            }
            (!d.is_zero()).then_some(d)
        };
        let node_checks = match lookup(&body, "NodeChecks").or_else(|| lookup(&body, "Checks")) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => vec!["serfHealth".to_string()],
        };
        let service_checks = lookup(&body, "ServiceChecks").cloned();
        let id = uuid();
        let session = Session {
            id,
            name,
            node: node.clone(),
            lock_delay,
            behavior,
            ttl,
            ttl_dur,
            expires: None,
            node_checks,
            service_checks,
            create_index: 0,
            modify_index: 0,
        };
        let created = self.shared.mutate(|st| {
            if !st.nodes.contains_key(&node) {
                return Err("Missing node registration".to_string());
            }
            Ok(st.session_create(session))
        });
        match created {
            Ok(id) => Ok(Response::json(200, &json!({ "ID": id }))),
            Err(e) => Err(text(500, &e)),
        }
    }

    // ------------------------------------------------------------ transactions

    /// `PUT /v1/txn` (see txn.rs).
    fn txn(&self, req: &Request) -> Result<Response> {
        if req.method != "PUT" {
            return Err(method_not_allowed(&req.method, "PUT"));
        }
        let mut ops = super::txn::parse(&req.body).map_err(|reason| text(400, &reason))?;
        // convertOps: a node without a datacenter is in the agent's.
        for op in ops.iter_mut() {
            if let super::txn::Op::Node { node, .. } = op {
                if node.datacenter.is_empty() {
                    node.datacenter = self.shared.opts.datacenter.clone();
                }
            }
        }
        let max = self
            .shared
            .max_txn_ops
            .load(std::sync::atomic::Ordering::SeqCst);
        if ops.len() > max {
            self.shared
                .txn_too_many_ops
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Err(text(
                413,
                &format!(
                    "Transaction contains too many operations ({} > {max})",
                    ops.len(),
                ),
            ));
        }
        let read_only = !ops.iter().any(super::txn::is_write);
        let out = self.shared.mutate(|st| st.txn(&ops));
        let (status, mut body) = match out {
            Ok(results) => (200, json!({"Results": results, "Errors": null})),
            Err(errors) => (409, json!({"Results": null, "Errors": errors})),
        };
        if read_only {
            // A read answers structs.TxnReadResponse, which embeds QueryMeta: its fields are
            // part of the body (seen against v1.14.11).
            for (k, v) in [
                ("Index", json!(1)),
                ("LastContact", json!(0)),
                ("KnownLeader", json!(true)),
                ("ConsistencyLevel", json!("")),
                ("NotModified", json!(false)),
                ("Backend", json!(0)),
                ("ResultsFilteredByACLs", json!(false)),
            ] {
                body[k] = v;
            }
        }
        let resp = Response::json(status, &body);
        // Txn.Read sets KnownLeader and LastContact; Txn.Apply sets nothing.
        Ok(if read_only {
            resp.with_header("X-Consul-KnownLeader", "true")
                .with_header("X-Consul-LastContact", "0")
        } else {
            resp
        })
    }

    // ------------------------------------------------------------ catalog

    fn catalog(&self, req: &Request, rest: &str) -> Result<Response> {
        let (op, arg) = rest.split_once('/').unwrap_or((rest, ""));
        let dc = self.shared.opts.datacenter.clone();
        match op {
            "register" => {
                if req.method != "PUT" {
                    return Err(method_not_allowed(&req.method, "PUT"));
                }
                self.catalog_register(req)
            }
            "deregister" => {
                if req.method != "PUT" {
                    return Err(method_not_allowed(&req.method, "PUT"));
                }
                self.catalog_deregister(req)
            }
            "datacenters" => Ok(Response::json(200, &json!([dc]))),
            "services" => {
                let meta = node_meta_filter(req);
                // state/catalog.go Services: the services table's index; with a node-meta
                // filter (ServicesByNodeMeta) the nodes table's too (v1.14.11).
                let tables: &[&str] = if meta.is_empty() {
                    &[SERVICES]
                } else {
                    &[NODES, SERVICES]
                };
                self.read(req, move |st| {
                    (
                        st.tables_max(tables),
                        Response::json(200, &st.services_map(&meta)),
                    )
                })
            }
            "nodes" => {
                let meta = node_meta_filter(req);
                self.read(req, move |st| {
                    let nodes: Vec<Value> = st
                        .nodes
                        .values()
                        .filter(|n| node_meta_matches(n, &meta))
                        .map(Node::to_json)
                        .collect();
                    (
                        st.tables_max(&[NODES]),
                        Response::json(200, &Value::Array(nodes)),
                    )
                })
            }
            "service" => {
                let name = arg.to_string();
                let tags: Vec<String> =
                    req.query_all("tag").into_iter().map(String::from).collect();
                self.read(req, move |st| {
                    let list: Vec<Value> = st
                        .instances(&name)
                        .into_iter()
                        .filter(|s| tags.iter().all(|t| s.tags.contains(t)))
                        .filter_map(|s| st.nodes.get(&s.node).map(|n| s.catalog_json(n)))
                        .collect();
                    (
                        st.service_index(&name),
                        Response::json(200, &Value::Array(list)),
                    )
                })
            }
            "node" => {
                let node = arg.to_string();
                self.read(req, move |st| {
                    // state/catalog.go nodeServices: the node's own last change (v1.14.11). An
                    // unknown node: the catalog's index (Consul answers 1 for a node that never
                    // existed; allow-listed in consul_conformance).
                    let Some(n) = st.nodes.get(&node) else {
                        return (
                            st.tables_max(&[NODES, SERVICES]),
                            Response::json(200, &Value::Null),
                        );
                    };
                    let idx = st.node_index(n);
                    let services: Map<String, Value> = st
                        .services
                        .values()
                        .filter(|s| s.node == node)
                        .map(|s| (s.id.clone(), s.agent_json(None)))
                        .collect();
                    (
                        idx,
                        Response::json(200, &json!({"Node": n.to_json(), "Services": services})),
                    )
                })
            }
            _ => Ok(text(404, "404 page not found\n")),
        }
    }

    fn catalog_register(&self, req: &Request) -> Result<Response> {
        let body = decode_object(&req.body)?;
        let node = get_str(&body, "Node")?.unwrap_or_default();
        if node.is_empty() {
            return Err(text(500, "Must provide node"));
        }
        let skip = get_bool(&body, "SkipNodeUpdate")?;
        let address = get_str(&body, "Address")?.unwrap_or_default();
        if address.is_empty() && !skip {
            return Err(text(
                500,
                "Must provide address if SkipNodeUpdate is not set",
            ));
        }
        let dc = self.shared.opts.datacenter.clone();
        let new_node = Node {
            id: get_str(&body, "ID")?.unwrap_or_default(),
            node: node.clone(),
            address,
            datacenter: dc,
            tagged_addresses: get_map(&body, "TaggedAddresses")?,
            meta: get_map(&body, "NodeMeta")?,
            create_index: 0,
            modify_index: 0,
        };
        let service = match lookup(&body, "Service") {
            None | Some(Value::Null) => None,
            Some(Value::Object(s)) => {
                let svc = parse_service(s, &node, "Service")?;
                // agent/consul/catalog_endpoint.go Register.
                if svc.service.is_empty() {
                    return Err(text(500, "Must provide service name with ID"));
                }
                if ["0.0.0.0", "::", "[::]"].contains(&svc.address.as_str()) {
                    return Err(text(500, "Invalid service address"));
                }
                // state/catalog.go ensureServiceTxn (seen against v1.14.11).
                if let Some(meta) = &svc.meta {
                    super::txn::validate_service_meta(meta).map_err(|e| {
                        text(
                            500,
                            &format!(
                                "failed inserting service: Invalid Service Meta for node {node} and serviceID {}: {e}",
                                svc.id
                            ),
                        )
                    })?;
                }
                Some(svc)
            }
            Some(_) => return Err(decode_err("Service", "object", "structs.NodeService")),
        };
        let mut checks = Vec::new();
        if let Some(Value::Object(c)) = lookup(&body, "Check") {
            checks.push(parse_catalog_check(c, &node)?);
        }
        if let Some(Value::Array(cs)) = lookup(&body, "Checks") {
            for c in cs {
                match c {
                    Value::Object(c) => checks.push(parse_catalog_check(c, &node)?),
                    _ => return Err(decode_err("Checks", "array", "structs.HealthCheck")),
                }
            }
        }
        self.shared.mutate(|st| {
            st.one_write(|st| {
                if !skip || !st.nodes.contains_key(&node) {
                    st.ensure_node(new_node);
                }
                if let Some(s) = service {
                    st.ensure_service(s);
                }
                for c in checks {
                    st.ensure_check(c);
                }
            })
        });
        Ok(bool_json(true))
    }

    fn catalog_deregister(&self, req: &Request) -> Result<Response> {
        let body = decode_object(&req.body)?;
        let node = get_str(&body, "Node")?.unwrap_or_default();
        if node.is_empty() {
            return Err(text(500, "Must provide node"));
        }
        let service_id = get_str(&body, "ServiceID")?.unwrap_or_default();
        let check_id = get_str(&body, "CheckID")?.unwrap_or_default();
        self.shared.mutate(|st| {
            if !service_id.is_empty() {
                st.delete_service(&node, &service_id);
            } else if !check_id.is_empty() {
                st.delete_check(&node, &check_id);
            } else {
                st.delete_node(&node);
            }
        });
        Ok(bool_json(true))
    }

    // ------------------------------------------------------------ health

    fn health(&self, req: &Request, rest: &str) -> Result<Response> {
        let (op, arg) = rest.split_once('/').unwrap_or((rest, ""));
        let arg = arg.to_string();
        match op {
            "service" => {
                let passing = req.has_query("passing")
                    && !matches!(req.query("passing"), Some("false") | Some("0"));
                let tags: Vec<String> =
                    req.query_all("tag").into_iter().map(String::from).collect();
                self.read(req, move |st| {
                    let mut out = Vec::new();
                    for s in st.instances(&arg) {
                        if !tags.iter().all(|t| s.tags.contains(t)) {
                            continue;
                        }
                        let Some(n) = st.nodes.get(&s.node) else {
                            continue;
                        };
                        let checks = st.checks_for(s);
                        if passing && checks.iter().any(|c| c.status != "passing") {
                            continue;
                        }
                        out.push(json!({
                            "Node": n.to_json(),
                            "Service": s.agent_json(None),
                            "Checks": checks.iter().map(|c| c.to_json()).collect::<Vec<_>>(),
                        }));
                    }
                    (
                        st.service_index(&arg),
                        Response::json(200, &Value::Array(out)),
                    )
                })
            }
            "checks" => self.read(req, move |st| {
                let list: Vec<Value> = st
                    .checks
                    .values()
                    .filter(|c| c.service_name == arg)
                    .map(Check::to_json)
                    .collect();
                // state/catalog.go ServiceChecks: the checks table's index (v1.14.11).
                (
                    st.tables_max(&[CHECKS]),
                    Response::json(200, &Value::Array(list)),
                )
            }),
            "state" => {
                // v1.14.11 takes any state: an unknown one matches only checks registered with
                // that status (the catalog accepts any status string); seen by consul_conformance.
                // Only an empty one is refused (health_endpoint.go HealthChecksInState).
                if arg.is_empty() {
                    return Err(text(400, "Missing check state"));
                }
                let tags: Vec<String> =
                    req.query_all("tag").into_iter().map(String::from).collect();
                self.read(req, move |st| {
                    let list: Vec<Value> = st
                        .checks
                        .values()
                        .filter(|c| arg == "any" || c.status == arg)
                        .filter(|c| tags.iter().all(|t| c.service_tags.contains(t)))
                        .map(Check::to_json)
                        .collect();
                    (
                        st.tables_max(&[CHECKS]),
                        Response::json(200, &Value::Array(list)),
                    )
                })
            }
            "node" => self.read(req, move |st| {
                let list: Vec<Value> = st
                    .checks
                    .values()
                    .filter(|c| c.node == arg)
                    .map(Check::to_json)
                    .collect();
                (
                    st.tables_max(&[CHECKS]),
                    Response::json(200, &Value::Array(list)),
                )
            }),
            _ => Ok(text(404, "404 page not found\n")),
        }
    }

    // ------------------------------------------------------------ agent

    fn agent(&self, req: &Request, rest: &str) -> Result<Response> {
        let node = self.shared.opts.node_name.clone();
        let dc = self.shared.opts.datacenter.clone();
        let require_put = |r: &Request| {
            if r.method == "PUT" {
                Ok(())
            } else {
                Err(method_not_allowed(&r.method, "PUT"))
            }
        };
        if rest == "service/register" {
            require_put(req)?;
            return self.agent_register(req);
        }
        if let Some(id) = rest.strip_prefix("service/deregister/") {
            require_put(req)?;
            let id = id.to_string();
            let found = self.shared.mutate(|st| {
                if !st.agent_services.remove(&id) {
                    return false;
                }
                let check_ids: Vec<String> = st
                    .checks
                    .values()
                    .filter(|c| c.node == node && c.service_id == id)
                    .map(|c| c.check_id.clone())
                    .collect();
                for c in check_ids {
                    st.agent_checks.remove(&c);
                    st.check_deadlines.remove(&c);
                }
                st.delete_service(&node, &id);
                true
            });
            if !found {
                return Err(text(
                    404,
                    &format!("Unknown service ID \"{id}\". Ensure that the service ID is passed, not the service name."),
                ));
            }
            return Ok(Response::empty(200));
        }
        for (op, status) in [
            ("pass", "passing"),
            ("warn", "warning"),
            ("fail", "critical"),
        ] {
            if let Some(id) = rest.strip_prefix(&format!("check/{op}/")) {
                require_put(req)?;
                return self.agent_update_check(id, status, req.query("note").unwrap_or(""));
            }
        }
        if let Some(id) = rest.strip_prefix("service/") {
            // GET /v1/agent/service/<id>: the agent's definition plus its ContentHash (a 16-hex
            // hash of the definition; Consul's is hashstructure's, compared by shape).
            if req.method != "GET" {
                return Err(method_not_allowed(&req.method, "GET"));
            }
            let st = self.shared.lock();
            let found = st
                .agent_services
                .contains(id)
                .then(|| st.services.get(&(node.clone(), id.to_string())))
                .flatten();
            let Some(s) = found else {
                return Err(text(404, &format!("unknown service ID: {id}")));
            };
            let mut v = s.agent_json(Some(&dc));
            let hash = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                v.to_string().hash(&mut h);
                h.finish()
            };
            v["ContentHash"] = json!(format!("{hash:016x}"));
            return Ok(Response::json(200, &v));
        }
        match rest {
            "services" => {
                let st = self.shared.lock();
                let map: Map<String, Value> = st
                    .agent_services
                    .iter()
                    .filter_map(|id| st.services.get(&(node.clone(), id.clone())))
                    .map(|s| (s.id.clone(), s.agent_json(Some(&dc))))
                    .collect();
                Ok(Response::json(200, &Value::Object(map)))
            }
            "checks" => {
                let st = self.shared.lock();
                let map: Map<String, Value> = st
                    .agent_checks
                    .iter()
                    .filter_map(|id| st.checks.get(&(node.clone(), id.clone())))
                    .map(|c| {
                        let mut v = c.to_json();
                        if let Some(o) = v.as_object_mut() {
                            o.remove("CreateIndex");
                            o.remove("ModifyIndex");
                        }
                        (c.check_id.clone(), v)
                    })
                    .collect();
                Ok(Response::json(200, &Value::Object(map)))
            }
            "self" => Ok(Response::json(
                200,
                &json!({
                    "Config": {
                        "Datacenter": dc,
                        "NodeName": node,
                        "NodeID": self.shared.node_id,
                        "Server": true,
                        "Revision": "devstack",
                        "Version": "1.16.0",
                    },
                    "Member": {"Name": node, "Addr": "127.0.0.1", "Port": 8301, "Status": 1},
                    "Meta": {"consul-network-segment": ""},
                }),
            )),
            "members" => Ok(Response::json(
                200,
                &json!([{"Name": node, "Addr": "127.0.0.1", "Port": 8301, "Status": 1}]),
            )),
            _ => Ok(text(404, "404 page not found\n")),
        }
    }

    fn agent_update_check(&self, id: &str, status: &str, note: &str) -> Result<Response> {
        let node = self.shared.opts.node_name.clone();
        let result = self.shared.mutate(|st| {
            if !st.agent_checks.contains(id) {
                return Err(404);
            }
            let Some(mut c) = st.checks.get(&(node.clone(), id.to_string())).cloned() else {
                return Err(404);
            };
            if c.ttl.is_none() {
                return Err(500);
            }
            c.status = status.into();
            c.output = note.into();
            if let Some(ttl) = c.ttl {
                st.check_deadlines
                    .insert(id.to_string(), Instant::now() + ttl);
            }
            st.ensure_check(c);
            Ok(())
        });
        match result {
            Ok(()) => Ok(Response::empty(200)),
            Err(404) => Err(text(
                404,
                &format!("Unknown check ID \"{id}\". Ensure that the check ID is passed, not the check name."),
            )),
            Err(_) => Err(text(500, &format!("CheckID \"{id}\" does not have associated TTL"))),
        }
    }

    fn agent_register(&self, req: &Request) -> Result<Response> {
        let body = decode_object(&req.body)?;
        let node = self.shared.opts.node_name.clone();
        let name = get_str(&body, "Name")?.unwrap_or_default();
        if name.is_empty() {
            return Err(text(400, "Missing service name"));
        }
        let mut svc = parse_service(&body, &node, "")?;
        svc.service = name.clone();
        if svc.id.is_empty() {
            svc.id = name.clone();
        }
        if ["0.0.0.0", "::", "[::]"].contains(&svc.address.as_str()) {
            return Err(text(400, "Invalid service address"));
        }
        if let Some(meta) = &svc.meta {
            for k in meta.keys() {
                if k.starts_with("consul-") {
                    return Err(text(
                        400,
                        "Invalid Service Meta: Key prefix 'consul-' is reserved for internal use",
                    ));
                }
            }
        }
        if svc.weights.0 < 1 {
            return Err(text(400, "Invalid Weights: Passing must be greater than 0"));
        }
        // Checks: `Check` and `Checks`, IDs "service:<id>" or "service:<id>:<n>" (agent.go).
        let mut defs: Vec<&Map<String, Value>> = Vec::new();
        if let Some(Value::Object(c)) = lookup(&body, "Check") {
            defs.push(c);
        }
        if let Some(Value::Array(cs)) = lookup(&body, "Checks") {
            for c in cs {
                match c {
                    Value::Object(c) => defs.push(c),
                    _ => return Err(decode_err("Checks", "array", "structs.CheckType")),
                }
            }
        }
        let mut checks = Vec::new();
        for (i, def) in defs.iter().enumerate() {
            let default_id = if defs.len() == 1 {
                format!("service:{}", svc.id)
            } else {
                format!("service:{}:{}", svc.id, i + 1)
            };
            checks.push(parse_agent_check(def, &node, &svc, default_id)?);
        }
        let replace = req.has_query("replace-existing-checks");
        self.shared.mutate(|st| {
            if replace {
                let old: Vec<String> = st
                    .checks
                    .values()
                    .filter(|c| c.node == node && c.service_id == svc.id)
                    .map(|c| c.check_id.clone())
                    .filter(|id| !checks.iter().any(|c: &Check| &c.check_id == id))
                    .collect();
                for id in old {
                    st.agent_checks.remove(&id);
                    st.check_deadlines.remove(&id);
                    st.delete_check(&node, &id);
                }
            }
            st.agent_services.insert(svc.id.clone());
            st.ensure_service(svc);
            for c in checks {
                st.agent_checks.insert(c.check_id.clone());
                match c.ttl {
                    Some(ttl) => st
                        .check_deadlines
                        .insert(c.check_id.clone(), Instant::now() + ttl),
                    None => st.check_deadlines.remove(&c.check_id),
                };
                st.ensure_check(c);
            }
        });
        Ok(Response::empty(200))
    }

    // ------------------------------------------------------------ events

    fn event(&self, req: &Request, rest: &str) -> Result<Response> {
        if let Some(name) = rest.strip_prefix("fire") {
            if req.method != "PUT" {
                return Err(method_not_allowed(&req.method, "PUT"));
            }
            let name = name.trim_start_matches('/');
            if name.is_empty() {
                return Err(text(400, "Missing name"));
            }
            let tag = req.query("tag").unwrap_or("").to_string();
            let service = req.query("service").unwrap_or("").to_string();
            if !tag.is_empty() && service.is_empty() {
                return Err(text(
                    500,
                    "Cannot provide tag filter without service filter",
                ));
            }
            let ev = UserEvent {
                id: uuid(),
                name: name.into(),
                payload: req.body.clone(),
                node_filter: req.query("node").unwrap_or("").into(),
                service_filter: service,
                tag_filter: tag,
                ltime: 0,
            };
            let mut out = ev.to_json();
            self.shared.mutate(|st| st.push_event(ev));
            // The fire response carries LTime 0: the Lamport time is assigned on gossip.
            out["LTime"] = json!(0);
            return Ok(Response::json(200, &out));
        }
        if rest == "list" {
            let name = req
                .query("name")
                .filter(|n| !n.is_empty())
                .map(String::from);
            // The index is uuid-derived, so the list blocks while it is *equal* to ?index.
            return self.blocking(
                req,
                |idx, min| idx == min,
                move |st| {
                    let (idx, events) = st.event_list(name.as_deref());
                    let list: Vec<Value> = events.iter().map(|e| e.to_json()).collect();
                    (idx, Response::json(200, &Value::Array(list)))
                },
            );
        }
        Ok(text(404, "404 page not found\n"))
    }
}

/// kvs_endpoint.go conflictingFlags: 400 with `url.Values.Encode()` of the whole query (keys
/// sorted, values escaped) and a newline.
fn conflicting_flags(req: &Request, flags: &[&str]) -> Result<()> {
    if flags.iter().filter(|f| req.has_query(f)).count() < 2 {
        return Ok(());
    }
    let mut pairs = req.query.clone();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect();
    Err(text(
        400,
        &format!("Conflicting flags: {}\n", encoded.join("&")),
    ))
}

/// Go's url.QueryEscape.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// strconv.ParseUint errors are returned as plain errors (HTTP 500) by the KV endpoint.
fn parse_uint(s: &str) -> Result<u64> {
    s.parse::<u64>().map_err(|_| {
        text(
            500,
            &format!("strconv.ParseUint: parsing \"{s}\": invalid syntax"),
        )
    })
}

/// validateKVKey of the newest kvs_endpoint.go (BUSL-era source; the first release carrying
/// it is UNCONFIRMED). Opt-in through `ConsulOptions::strict_kv_keys`: it refuses keys such
/// as `apps/web.json` ("suspicious file extension"), which git2consul-style mirrors produce.
fn validate_kv_key(key: &str) -> std::result::Result<(), &'static str> {
    if key.starts_with('/') {
        return Err("key must not begin with a '/'");
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b',' | b'-' | b'_' | b'.' | b'/'))
    {
        return Err(
            "key contains invalid characters. Only alphanumeric characters and ,-_./ are allowed",
        );
    }
    if key.contains("../") || key.starts_with("..") || key.ends_with("..") {
        return Err("key contains path traversal sequence");
    }
    const EXTENSIONS: &[&str] = &[
        "js", "css", "htm", "html", "xml", "json", "txt", "log", "php", "asp", "jsp", "cgi", "pl",
        "py", "rb", "sh", "exe", "dll", "bat", "cmd", "com", "scr", "vbs", "pdf", "doc", "docx",
        "xls", "xlsx", "ppt", "pptx", "zip", "rar", "tar", "gz", "7z", "bz2", "jpg", "jpeg", "png",
        "gif", "svg", "ico", "bmp", "mp3", "mp4", "avi", "mov", "wmv", "flv", "swf", "woff",
        "woff2", "ttf", "eot", "otf",
    ];
    if let Some((_, ext)) = key.rsplit_once('.') {
        if EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) {
            return Err(
                "key contains suspicious file extension that may be cached by proxies or exploited",
            );
        }
    }
    Ok(())
}

/// What the ACL check allows.
enum Access {
    Allowed,
    /// Anonymous list read: answered with the results filtered to nothing.
    Filtered,
}

/// Reads whose results Consul filters by ACL instead of refusing them.
fn is_filtered_read(req: &Request) -> bool {
    let p = req.path.as_str();
    req.method == "GET"
        && ((p.starts_with("/v1/kv/") && (req.has_query("recurse") || req.has_query("keys")))
            || p == "/v1/catalog/services"
            || p == "/v1/catalog/nodes"
            || p.starts_with("/v1/catalog/service/")
            || p.starts_with("/v1/health/")
            || p == "/v1/event/list"
            || p == "/v1/agent/services"
            || p == "/v1/agent/checks"
            || p == "/v1/session/list"
            || p.starts_with("/v1/session/node/")
            || p.starts_with("/v1/session/info/"))
}

/// `?index=` and `?wait=` (agent/http.go parseWait): bad values answer 400; wait defaults to
/// 5m, is capped at 10m, and gets up to wait/16 of jitter added, as Consul does.
fn parse_blocking(req: &Request, agent_local: bool) -> Result<(u64, Duration)> {
    let default = if agent_local { MAX_WAIT } else { DEFAULT_WAIT };
    let mut wait = default;
    if let Some(w) = req.query("wait").filter(|w| !w.is_empty()) {
        wait = parse_go_duration(w).ok_or_else(|| text(400, "Invalid wait time"))?;
        if wait.is_zero() {
            wait = default;
        }
    }
    wait = wait.min(MAX_WAIT);
    let jitter = wait.as_nanos() as u64 / 16;
    if jitter > 0 && !agent_local {
        wait += Duration::from_nanos(random_u64() % jitter);
    }
    let index = match req.query("index").filter(|i| !i.is_empty()) {
        None => 0,
        Some(i) => i.parse::<u64>().map_err(|_| text(400, "Invalid index"))?,
    };
    Ok((index, wait))
}

/// `?node-meta=key:value` (repeatable; all must match), as catalog_endpoint.go parses it.
fn node_meta_filter(req: &Request) -> Vec<(String, String)> {
    req.query_all("node-meta")
        .into_iter()
        .map(|kv| {
            let (k, v) = kv.split_once(':').unwrap_or((kv, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

pub(crate) fn node_meta_matches(n: &Node, filter: &[(String, String)]) -> bool {
    filter.iter().all(|(k, v)| {
        n.meta
            .as_ref()
            .and_then(|m| m.get(k))
            .and_then(Value::as_str)
            == Some(v.as_str())
    })
}

fn with_meta(resp: Response, index: u64) -> Response {
    resp.with_header("X-Consul-Index", index.to_string())
        .with_header("X-Consul-KnownLeader", "true")
        .with_header("X-Consul-LastContact", "0")
}

// ------------------------------------------------------------ body decoding

fn decode_object(body: &[u8]) -> Result<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(text(
            400,
            &format!(
                "Request decode failed: json: cannot unmarshal {} into Go value of type structs.RegisterRequest",
                go_type_name(&other)
            ),
        )),
        Err(e) => Err(text(400, &format!("Request decode failed: {e}"))),
    }
}

fn go_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn decode_err(field: &str, got: &str, want: &str) -> Response {
    text(
        400,
        &format!("Request decode failed: json: cannot unmarshal {got} into Go struct field {field} of type {want}"),
    )
}

/// Go's encoding/json matches field names case-insensitively; the agent endpoints also accept
/// snake_case (lib/decode), so `enable_tag_override` finds `EnableTagOverride`.
fn lookup<'a>(m: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    let norm = |s: &str| s.replace('_', "").to_ascii_lowercase();
    let want = norm(field);
    m.get(field)
        .or_else(|| m.iter().find(|(k, _)| norm(k) == want).map(|(_, v)| v))
}

fn get_str(m: &Map<String, Value>, field: &str) -> Result<Option<String>> {
    match lookup(m, field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(decode_err(field, go_type_name(v), "string")),
    }
}

fn get_bool(m: &Map<String, Value>, field: &str) -> Result<bool> {
    match lookup(m, field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(decode_err(field, go_type_name(v), "bool")),
    }
}

fn get_map(m: &Map<String, Value>, field: &str) -> Result<Option<Map<String, Value>>> {
    match lookup(m, field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o.clone())),
        Some(v) => Err(decode_err(field, go_type_name(v), "map[string]string")),
    }
}

fn get_tags(m: &Map<String, Value>, field: &str) -> Result<Vec<String>> {
    match lookup(m, field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| {
                t.as_str()
                    .map(String::from)
                    .ok_or_else(|| decode_err(field, go_type_name(t), "string"))
            })
            .collect(),
        Some(v) => Err(decode_err(field, go_type_name(v), "[]string")),
    }
}

/// A service definition (catalog `Service` object or agent register body; `name_field` is
/// "Service" for the catalog, "" for the agent, whose name is in `Name`).
fn parse_service(s: &Map<String, Value>, node: &str, name_field: &str) -> Result<Service> {
    let port = match lookup(s, "Port") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|p| p <= 65535) => n.as_u64().unwrap_or(0),
        Some(v) => return Err(decode_err("Port", go_type_name(v), "int")),
    };
    let weights = match lookup(s, "Weights") {
        Some(Value::Object(w)) => (
            w.get("Passing").and_then(Value::as_i64).unwrap_or(1),
            w.get("Warning").and_then(Value::as_i64).unwrap_or(1),
        ),
        _ => (1, 1),
    };
    let service = if name_field.is_empty() {
        String::new()
    } else {
        get_str(s, name_field)?.unwrap_or_default()
    };
    let mut id = get_str(s, "ID")?.unwrap_or_default();
    if id.is_empty() {
        id = service.clone();
    }
    Ok(Service {
        node: node.into(),
        id,
        service,
        tags: get_tags(s, "Tags")?,
        address: get_str(s, "Address")?.unwrap_or_default(),
        port,
        meta: get_map(s, "Meta")?,
        tagged_addresses: get_map(s, "TaggedAddresses")?,
        weights,
        enable_tag_override: get_bool(s, "EnableTagOverride")?,
        kind: get_str(s, "Kind")?.unwrap_or_default(),
        create_index: 0,
        modify_index: 0,
    })
}

fn valid_status(status: &str) -> Result<()> {
    if ["passing", "warning", "critical"].contains(&status) {
        Ok(())
    } else {
        Err(text(
            400,
            "Status for checks must 'passing', 'warning', 'critical'",
        ))
    }
}

fn parse_catalog_check(c: &Map<String, Value>, node: &str) -> Result<Check> {
    let name = get_str(c, "Name")?.unwrap_or_default();
    let check_id = get_str(c, "CheckID")?
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| name.clone());
    let status = get_str(c, "Status")?
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "critical".into());
    let def = match lookup(c, "Definition") {
        Some(Value::Object(d)) => state::definition_from(d),
        _ => state::empty_definition(),
    };
    Ok(Check {
        node: get_str(c, "Node")?
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| node.into()),
        check_id,
        name,
        status,
        notes: get_str(c, "Notes")?.unwrap_or_default(),
        output: get_str(c, "Output")?.unwrap_or_default(),
        service_id: get_str(c, "ServiceID")?.unwrap_or_default(),
        service_name: String::new(),
        service_tags: Vec::new(),
        check_type: get_str(c, "Type")?.unwrap_or_default(),
        definition: def,
        ttl: None,
        create_index: 0,
        modify_index: 0,
    })
}

/// An agent check definition (api-docs/agent/check.mdx) validated as CheckType.Validate does.
fn parse_agent_check(
    c: &Map<String, Value>,
    node: &str,
    svc: &Service,
    default_id: String,
) -> Result<Check> {
    let dur = |field: &str| -> Result<Option<Duration>> {
        match get_str(c, field)? {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => parse_go_duration(&s).map(Some).ok_or_else(|| {
                text(
                    400,
                    &format!("Request decode failed: time: invalid duration \"{s}\""),
                )
            }),
        }
    };
    let ttl = dur("TTL")?;
    let interval = dur("Interval")?;
    let kind = if lookup(c, "HTTP").is_some() {
        "http"
    } else if lookup(c, "TCP").is_some() {
        "tcp"
    } else if lookup(c, "GRPC").is_some() {
        "grpc"
    } else if lookup(c, "Args").is_some() || lookup(c, "ScriptArgs").is_some() {
        "script"
    } else if ttl.is_some() || lookup(c, "TTL").is_some() {
        "ttl"
    } else {
        return Err(text(
            400,
            "Invalid check: Must provide TTL or Script/DockerContainerID/HTTP/TCP/H2PING/UDP/GRPC/AliasNode/AliasService/OSService",
        ));
    };
    if kind == "ttl" && ttl.is_none_or(|t| t.is_zero()) {
        return Err(text(400, "Invalid check: TTL must be > 0 for TTL checks"));
    }
    if kind != "ttl" && interval.is_none_or(|i| i.is_zero()) {
        return Err(text(
            400,
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, or TCP checks",
        ));
    }
    let status = get_str(c, "Status")?
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "critical".into());
    valid_status(&status)?;
    let name = get_str(c, "Name")?
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("Service '{}' check", svc.service));
    let check_id = get_str(c, "CheckID")?
        .or(get_str(c, "ID")?)
        .filter(|s| !s.is_empty())
        .unwrap_or(default_id);
    Ok(Check {
        node: node.into(),
        check_id,
        name,
        status,
        notes: get_str(c, "Notes")?.unwrap_or_default(),
        output: String::new(),
        service_id: svc.id.clone(),
        service_name: svc.service.clone(),
        service_tags: svc.tags.clone(),
        check_type: kind.into(),
        definition: state::definition_from(c),
        ttl: if kind == "ttl" { ttl } else { None },
        create_index: 0,
        modify_index: 0,
    })
}
