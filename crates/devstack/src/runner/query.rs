//! The watch functions of api/watch/funcs.go: one blocking query per watch type, decoded the
//! way the Go API client decodes it (only the struct's fields, in struct order), so that the
//! payload re-encoded for the handler matches what a real agent writes.

use std::time::Duration;

use serde_json::{Map, Value};

use super::spec::WatchSpec;
use crate::consul::util::uuid_to_u64;

/// A failed query (logged as "Watch errored" and retried with backoff).
#[derive(Debug)]
pub struct QueryError(pub String);

/// Runs the watch's query with `?index=<wait_index>&wait=<wait>`; returns the response's
/// index and the decoded result. For event watches `last_index` prunes to the new events.
pub fn run(
    agent: &ureq::Agent,
    base: &str,
    spec: &WatchSpec,
    wait_index: u64,
    wait: Duration,
    last_index: Option<u64>,
) -> Result<(u64, Value), QueryError> {
    let p = &spec.params;
    let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut query: Vec<(String, String)> = Vec::new();
    let path = match spec.watch_type.as_str() {
        "key" => format!("/v1/kv/{}", encode_path(&s("key"))),
        "keyprefix" => {
            query.push(("recurse".into(), String::new()));
            format!("/v1/kv/{}", encode_path(&s("prefix")))
        }
        "services" => "/v1/catalog/services".into(),
        "nodes" => "/v1/catalog/nodes".into(),
        "service" => {
            for t in p.get("tag").and_then(Value::as_array).into_iter().flatten() {
                query.push(("tag".into(), t.as_str().unwrap_or("").into()));
            }
            if p.get("passingonly").and_then(Value::as_bool) == Some(true) {
                query.push(("passing".into(), "1".into()));
            }
            format!("/v1/health/service/{}", encode_path(&s("service")))
        }
        "checks" => match p.get("service").and_then(Value::as_str) {
            Some(svc) => format!("/v1/health/checks/{}", encode_path(svc)),
            None => {
                // As `tag=` parameters (how api.Health.StateTags encodes them is UNCONFIRMED;
                // the double filters /v1/health/state by ServiceTags).
                for t in p.get("tag").and_then(Value::as_array).into_iter().flatten() {
                    query.push(("tag".into(), t.as_str().unwrap_or("").into()));
                }
                format!("/v1/health/state/{}", encode_path(&s("state")))
            }
        },
        "event" => {
            if !s("name").is_empty() {
                query.push(("name".into(), s("name")));
            }
            "/v1/event/list".into()
        }
        other => return Err(QueryError(format!("unsupported watch type {other}"))),
    };
    if p.get("stale").and_then(Value::as_bool) == Some(true) {
        query.push(("stale".into(), String::new()));
    }
    if let Some(dc) = &spec.datacenter {
        query.push(("dc".into(), dc.clone()));
    }
    if wait_index > 0 {
        query.push(("index".into(), wait_index.to_string()));
        query.push(("wait".into(), format!("{}ms", wait.as_millis())));
    }
    let url = format!("{base}{path}{}", encode_query(&query));
    let mut req = agent
        .get(&url)
        .config()
        // The server may hold the request for wait + wait/16 jitter.
        .timeout_global(Some(wait + wait / 16 + Duration::from_secs(10)))
        .build();
    if let Some(t) = &spec.token {
        req = req.header("X-Consul-Token", t.as_str());
    }
    let mut resp = req
        .call()
        .map_err(|e| QueryError(format!("GET {base}{path}: {e}")))?;
    let status = resp.status().as_u16();
    let index = resp
        .headers()
        .get("X-Consul-Index")
        .and_then(|i| i.to_str().ok())
        .and_then(|i| i.parse::<u64>().ok())
        .unwrap_or(0);
    let body = resp
        .body_mut()
        .with_config()
        .limit(512 << 20)
        .read_to_string()
        .map_err(|e| QueryError(format!("GET {base}{path}: reading body: {e}")))?;
    let missing_ok = matches!(spec.watch_type.as_str(), "key" | "keyprefix");
    if status == 404 && missing_ok {
        // api.KV.Get / List return nil on 404: the handler gets `null`.
        return Ok((index, Value::Null));
    }
    if status != 200 {
        return Err(QueryError(format!(
            "GET {base}{path}: Unexpected response code: {status} ({})",
            body.trim()
        )));
    }
    if index == 0 {
        // api.parseQueryMeta requires the header.
        return Err(QueryError(format!(
            "GET {base}{path}: missing X-Consul-Index"
        )));
    }
    let raw: Value = serde_json::from_str(&body)
        .map_err(|e| QueryError(format!("GET {base}{path}: invalid JSON: {e}")))?;
    let result = match spec.watch_type.as_str() {
        "key" => match raw {
            Value::Array(mut a) if !a.is_empty() => kv_pair(&a.remove(0)),
            _ => Value::Null,
        },
        "keyprefix" => match raw {
            Value::Array(a) => Value::Array(a.iter().map(kv_pair).collect()),
            _ => Value::Null,
        },
        "services" => sort_map(&raw),
        "nodes" => map_array(&raw, node),
        "service" => map_array(&raw, service_entry),
        "checks" => map_array(&raw, health_check),
        "event" => {
            let mut events: Vec<Value> = match map_array(&raw, user_event) {
                Value::Array(a) => a,
                _ => Vec::new(),
            };
            // eventWatch: "Prune to only the new events".
            if let Some(last) = last_index {
                if let Some(pos) = events.iter().position(|e| {
                    uuid_to_u64(e.get("ID").and_then(Value::as_str).unwrap_or("")) == last
                }) {
                    events.drain(..=pos);
                }
            }
            Value::Array(events)
        }
        _ => raw,
    };
    Ok((index, result))
}

fn map_array(v: &Value, f: fn(&Value) -> Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(f).collect()),
        // A Go nil slice.
        _ => Value::Null,
    }
}

fn field(v: &Value, k: &str, zero: Value) -> Value {
    v.get(k).cloned().unwrap_or(zero)
}

/// Builds an object from (field, zero value) pairs in Go struct order; `None` zero marks an
/// `omitempty` field, kept only when present and non-empty. Pointer fields (`Proxy`,
/// `Connect`) are only omitted when nil: a pointer to an empty struct is encoded as `{}`.
fn go_struct(v: &Value, fields: &[(&str, Option<Value>)]) -> Value {
    let mut m = Map::new();
    for (k, zero) in fields {
        match zero {
            Some(z) => {
                m.insert((*k).into(), field(v, k, z.clone()));
            }
            None => {
                let pointer = matches!(*k, "Proxy" | "Connect");
                if let Some(x) = v
                    .get(*k)
                    .filter(|x| if pointer { !x.is_null() } else { !is_empty(x) })
                {
                    m.insert((*k).into(), x.clone());
                }
            }
        }
    }
    Value::Object(m)
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn sort_map(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            let sorted: std::collections::BTreeMap<&String, &Value> = o.iter().collect();
            Value::Object(
                sorted
                    .into_iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

fn s0() -> Option<Value> {
    Some(Value::String(String::new()))
}
fn n0() -> Option<Value> {
    Some(Value::from(0))
}

/// api.KVPair.
fn kv_pair(v: &Value) -> Value {
    go_struct(
        v,
        &[
            ("Key", s0()),
            ("CreateIndex", n0()),
            ("ModifyIndex", n0()),
            ("LockIndex", n0()),
            ("Flags", n0()),
            ("Value", Some(Value::Null)),
            ("Session", s0()),
            ("Namespace", None),
            ("Partition", None),
        ],
    )
}

/// api.Node.
fn node(v: &Value) -> Value {
    let mut n = go_struct(
        v,
        &[
            ("ID", s0()),
            ("Node", s0()),
            ("Address", s0()),
            ("Datacenter", s0()),
            ("TaggedAddresses", Some(Value::Null)),
            ("Meta", Some(Value::Null)),
            ("CreateIndex", n0()),
            ("ModifyIndex", n0()),
            ("Partition", None),
            ("PeerName", None),
        ],
    );
    for k in ["TaggedAddresses", "Meta"] {
        n[k] = sort_map(&n[k]);
    }
    n
}

/// api.UserEvent.
fn user_event(v: &Value) -> Value {
    go_struct(
        v,
        &[
            ("ID", s0()),
            ("Name", s0()),
            ("Payload", Some(Value::Null)),
            ("NodeFilter", s0()),
            ("ServiceFilter", s0()),
            ("TagFilter", s0()),
            ("Version", n0()),
            ("LTime", n0()),
        ],
    )
}

/// api.HealthCheck. Fields that only some Consul versions send (ExposedPort, Namespace, ...)
/// are kept only when the server sent them, so the payload matches that server's version.
fn health_check(v: &Value) -> Value {
    go_struct(
        v,
        &[
            ("Node", s0()),
            ("CheckID", s0()),
            ("Name", s0()),
            ("Status", s0()),
            ("Notes", s0()),
            ("Output", s0()),
            ("ServiceID", s0()),
            ("ServiceName", s0()),
            ("ServiceTags", Some(Value::Null)),
            ("Type", s0()),
            ("Namespace", None),
            ("Partition", None),
            ("ExposedPort", None),
            ("PeerName", None),
            ("Definition", Some(Value::Object(Map::new()))),
            ("CreateIndex", n0()),
            ("ModifyIndex", n0()),
        ],
    )
}

/// api.AgentService.
fn agent_service(v: &Value) -> Value {
    let mut s = go_struct(
        v,
        &[
            ("Kind", None),
            ("ID", s0()),
            ("Service", s0()),
            ("Tags", Some(Value::Null)),
            ("Meta", Some(Value::Null)),
            ("Port", n0()),
            ("Address", s0()),
            ("SocketPath", None),
            ("TaggedAddresses", None),
            (
                "Weights",
                Some(serde_json::json!({"Passing": 0, "Warning": 0})),
            ),
            ("EnableTagOverride", Some(Value::Bool(false))),
            ("CreateIndex", None),
            ("ModifyIndex", None),
            ("ContentHash", None),
            ("Proxy", None),
            ("Connect", None),
            ("PeerName", None),
            ("Namespace", None),
            ("Partition", None),
            ("Datacenter", None),
        ],
    );
    if let Some(m) = s.get("Meta").cloned() {
        s["Meta"] = sort_map(&m);
    }
    s
}

/// api.ServiceEntry.
fn service_entry(v: &Value) -> Value {
    let checks = map_array(&field(v, "Checks", Value::Null), health_check);
    serde_json::json!({
        "Node": match v.get("Node") { Some(n) if !n.is_null() => node(n), _ => Value::Null },
        "Service": match v.get("Service") { Some(s) if !s.is_null() => agent_service(s), _ => Value::Null },
        "Checks": checks,
    })
}

/// Percent-encodes a KV key or name for a URL path (keeps `/` and unreserved characters).
pub fn encode_path(s: &str) -> String {
    encode(s, true)
}

fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/');
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encode_query(q: &[(String, String)]) -> String {
    if q.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = q
        .iter()
        .map(|(k, v)| {
            if v.is_empty() && (k == "recurse" || k == "stale") {
                k.clone()
            } else {
                format!("{}={}", encode(k, false), encode(v, false))
            }
        })
        .collect();
    format!("?{}", parts.join("&"))
}
