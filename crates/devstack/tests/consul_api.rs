//! The Consul double's HTTP behaviour, pinned against ../shared/reference/consul-watches-and-api.md.

use std::time::{Duration, Instant};

use devstack::consul::{Consul, ConsulOptions};
use serde_json::{json, Value};

struct Resp {
    status: u16,
    index: Option<u64>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn call(method: &str, url: &str, body: &[u8], headers: &[(&str, &str)]) -> Resp {
    let r = devstack::http::call(method, url, headers, body, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    let index = r.header("X-Consul-Index").and_then(|i| i.parse().ok());
    Resp {
        status: r.status,
        index,
        headers: r.headers,
        body: r.body,
    }
}

fn get(c: &Consul, path: &str) -> Resp {
    call("GET", &format!("{}{path}", c.url()), b"", &[])
}
fn put(c: &Consul, path: &str, body: &[u8]) -> Resp {
    call("PUT", &format!("{}{path}", c.url()), body, &[])
}
fn delete(c: &Consul, path: &str) -> Resp {
    call("DELETE", &format!("{}{path}", c.url()), b"", &[])
}

fn start() -> Consul {
    Consul::start(ConsulOptions::default()).unwrap()
}

// ------------------------------------------------------------------ KV

#[test]
fn kv_get_missing_is_404_with_empty_body_and_index() {
    let c = start();
    let r = get(&c, "/v1/kv/nope");
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());
    assert!(r.index.unwrap() >= 1);
    assert_eq!(r.header("X-Consul-KnownLeader"), Some("true"));
    assert_eq!(r.header("X-Consul-LastContact"), Some("0"));
}

#[test]
fn kv_put_then_get_returns_an_array_with_consul_fields() {
    let c = start();
    let r = put(&c, "/v1/kv/foo/bar?flags=42", b"hey");
    assert_eq!((r.status, r.json()), (200, json!(true)));
    let r = get(&c, "/v1/kv/foo/bar");
    assert_eq!(r.status, 200);
    let v = r.json();
    let e = &v[0];
    assert_eq!(e["Key"], "foo/bar");
    assert_eq!(e["Value"], "aGV5");
    assert_eq!(e["Flags"], 42);
    assert_eq!(e["LockIndex"], 0);
    // structs.DirEntry's Session is omitempty on the HTTP API (consul_conformance, v1.14.11).
    assert!(e.get("Session").is_none(), "{e}");
    assert_eq!(e["CreateIndex"], e["ModifyIndex"]);
    assert_eq!(r.index, e["ModifyIndex"].as_u64());
    // The field order is api.KVPair's.
    let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "Key",
            "CreateIndex",
            "ModifyIndex",
            "LockIndex",
            "Flags",
            "Value"
        ]
    );
    // An update keeps CreateIndex and moves ModifyIndex.
    put(&c, "/v1/kv/foo/bar", b"two");
    let e2 = get(&c, "/v1/kv/foo/bar").json()[0].clone();
    assert_eq!(e2["CreateIndex"], e["CreateIndex"]);
    assert!(e2["ModifyIndex"].as_u64() > e["ModifyIndex"].as_u64());
    assert_eq!(e2["Flags"], 0);
}

#[test]
fn kv_empty_value_is_null_and_raw_returns_bytes() {
    let c = start();
    put(&c, "/v1/kv/dir/", b"");
    assert_eq!(get(&c, "/v1/kv/dir/").json()[0]["Value"], Value::Null);
    put(&c, "/v1/kv/raw", b"\x00bin");
    let r = get(&c, "/v1/kv/raw?raw");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"\x00bin");
    assert!(r.header("Content-Type").unwrap().starts_with("text/plain"));
}

#[test]
fn kv_recurse_and_keys() {
    let c = start();
    assert_eq!(get(&c, "/v1/kv/app?recurse").status, 404);
    for k in ["app/a", "app/b/c", "app/b/d", "other"] {
        put(&c, &format!("/v1/kv/{k}"), b"x");
    }
    let r = get(&c, "/v1/kv/app/?recurse");
    let keys: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["app/a", "app/b/c", "app/b/d"]);
    assert_eq!(r.index, c.kv_get("app/b/d").map(|e| e.modify_index));
    assert_eq!(
        get(&c, "/v1/kv/app/?keys&separator=/").json(),
        json!(["app/a", "app/b/"])
    );
    assert_eq!(
        get(&c, "/v1/kv/app/?keys").json(),
        json!(["app/a", "app/b/c", "app/b/d"])
    );
    assert_eq!(get(&c, "/v1/kv/zzz/?keys").status, 404);
}

#[test]
fn kv_missing_key_name_is_400() {
    let c = start();
    let r = get(&c, "/v1/kv/");
    assert_eq!((r.status, r.text()), (400, "Missing key name".to_string()));
    assert_eq!(put(&c, "/v1/kv/", b"x").status, 400);
}

#[test]
fn kv_over_512k_is_413_with_consuls_message() {
    let c = start();
    let ok = vec![b'a'; 512 * 1024];
    assert_eq!(put(&c, "/v1/kv/big", &ok).status, 200);
    let big = vec![b'a'; 512 * 1024 + 1];
    let r = put(&c, "/v1/kv/big", &big);
    assert_eq!(r.status, 413);
    assert!(
        r.text()
            .starts_with("Request body(524289 bytes) too large, max size: 524288 bytes."),
        "{}",
        r.text()
    );
    assert_eq!(c.kv_get("big").unwrap().value.len(), 512 * 1024);
}

#[test]
fn kv_cas_zero_creates_only_and_index_must_match() {
    let c = start();
    assert_eq!(put(&c, "/v1/kv/k?cas=0", b"1").json(), json!(true));
    assert_eq!(put(&c, "/v1/kv/k?cas=0", b"2").json(), json!(false));
    let idx = c.kv_get("k").unwrap().modify_index;
    assert_eq!(
        put(&c, &format!("/v1/kv/k?cas={}", idx + 100), b"3").json(),
        json!(false)
    );
    assert_eq!(
        put(&c, &format!("/v1/kv/k?cas={idx}"), b"4").json(),
        json!(true)
    );
    assert_eq!(c.kv_get("k").unwrap().value, b"4");
    // DELETE ?cas
    let idx = c.kv_get("k").unwrap().modify_index;
    assert_eq!(delete(&c, "/v1/kv/k?cas=1").json(), json!(false));
    assert!(c.kv_get("k").is_some());
    assert_eq!(
        delete(&c, &format!("/v1/kv/k?cas={idx}")).json(),
        json!(true)
    );
    assert!(c.kv_get("k").is_none());
    let r = put(&c, "/v1/kv/k?cas=0&acquire=x", b"");
    assert_eq!(
        (r.status, r.text()),
        (400, "Conflicting flags: acquire=x&cas=0\n".to_string())
    );
    let r = delete(&c, "/v1/kv/k?recurse&cas=1");
    assert_eq!(r.status, 400);
    let r = put(&c, "/v1/kv/k?cas=abc", b"");
    assert_eq!(
        (r.status, r.text()),
        (
            500,
            "strconv.ParseUint: parsing \"abc\": invalid syntax".to_string()
        )
    );
}

#[test]
fn kv_delete_and_recursive_delete() {
    let c = start();
    for k in ["t/a", "t/b", "u"] {
        c.kv_put(k, b"v");
    }
    assert_eq!(delete(&c, "/v1/kv/u").json(), json!(true));
    assert!(c.kv_get("u").is_none());
    assert_eq!(delete(&c, "/v1/kv/t?recurse").json(), json!(true));
    assert_eq!(get(&c, "/v1/kv/t?recurse").status, 404);
    assert_eq!(c.write_count(), 2);
}

// ------------------------------------------------------------------ blocking

#[test]
fn blocking_query_returns_when_the_key_changes() {
    let c = start();
    let idx = c.kv_put("watched", b"1");
    let url = format!("{}/v1/kv/watched?index={idx}&wait=10s", c.url());
    let started = Instant::now();
    let h = std::thread::spawn(move || call("GET", &url, b"", &[]));
    // Unrelated writes do not wake the query with a result.
    c.kv_put("unrelated", b"x");
    // Give the request a moment to be held, then change the key.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && !h.is_finished()
        && started.elapsed() < Duration::from_millis(100)
    {
        std::thread::yield_now();
    }
    assert!(!h.is_finished(), "query should still be blocked");
    let new_idx = c.kv_put("watched", b"2");
    let r = h.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.index, Some(new_idx));
    assert_eq!(r.json()[0]["Value"], "Mg==");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn blocking_query_times_out_with_the_same_index() {
    let c = start();
    let idx = c.kv_put("k", b"1");
    let started = Instant::now();
    let r = get(&c, &format!("/v1/kv/k?index={idx}&wait=150ms"));
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.index, Some(idx));
    assert!(took >= Duration::from_millis(150), "{took:?}");
    // wait + wait/16 jitter at most (+ slack for a loaded machine).
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn blocking_query_on_a_deleted_key_wakes_with_404() {
    let c = start();
    let idx = c.kv_put("gone", b"1");
    let url = format!("{}/v1/kv/gone?index={idx}&wait=10s", c.url());
    let h = std::thread::spawn(move || call("GET", &url, b"", &[]));
    c.kv_delete("gone");
    let r = h.join().unwrap();
    assert_eq!(r.status, 404);
    assert!(r.index.unwrap() > idx);
}

#[test]
fn blocking_parameters_are_validated() {
    let c = start();
    let r = get(&c, "/v1/kv/k?index=1&wait=forever");
    assert_eq!((r.status, r.text()), (400, "Invalid wait time".to_string()));
    let r = get(&c, "/v1/kv/k?index=abc");
    assert_eq!((r.status, r.text()), (400, "Invalid index".to_string()));
}

#[test]
fn prefix_blocking_wakes_on_a_delete_under_the_prefix() {
    let c = start();
    c.kv_put("p/a", b"1");
    let idx = c.kv_put("p/b", b"1");
    let url = format!("{}/v1/kv/p/?recurse&index={idx}&wait=10s", c.url());
    let h = std::thread::spawn(move || call("GET", &url, b"", &[]));
    c.kv_delete("p/b");
    let r = h.join().unwrap();
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    assert!(r.index.unwrap() > idx);
}

// ------------------------------------------------------------------ sessions and locks

fn create_session(c: &Consul, body: &Value) -> String {
    let r = put(c, "/v1/session/create", body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["ID"].as_str().unwrap().to_string()
}

#[test]
fn acquire_release_and_lock_index() {
    let c = start();
    let s1 = create_session(&c, &json!({"Name": "a"}));
    let s2 = create_session(&c, &json!({}));
    assert_eq!(
        put(&c, &format!("/v1/kv/lock?acquire={s1}"), b"me").json(),
        json!(true)
    );
    let e = c.kv_get("lock").unwrap();
    assert_eq!((e.lock_index, e.session.as_str()), (1, s1.as_str()));
    assert_eq!(
        put(&c, &format!("/v1/kv/lock?acquire={s2}"), b"you").json(),
        json!(false)
    );
    // Re-acquire by the holder keeps LockIndex.
    assert_eq!(
        put(&c, &format!("/v1/kv/lock?acquire={s1}"), b"me2").json(),
        json!(true)
    );
    assert_eq!(c.kv_get("lock").unwrap().lock_index, 1);
    // A plain PUT keeps the lock.
    put(&c, "/v1/kv/lock", b"plain");
    assert_eq!(c.kv_get("lock").unwrap().session, s1);
    assert_eq!(
        put(&c, &format!("/v1/kv/lock?release={s2}"), b"").json(),
        json!(false)
    );
    assert_eq!(
        put(&c, &format!("/v1/kv/lock?release={s1}"), b"free").json(),
        json!(true)
    );
    let e = c.kv_get("lock").unwrap();
    assert_eq!((e.session.as_str(), e.lock_index), ("", 1));
    // Explicit release sets no lock-delay: the other session can acquire at once.
    assert_eq!(
        put(&c, &format!("/v1/kv/lock?acquire={s2}"), b"you").json(),
        json!(true)
    );
    assert_eq!(c.kv_get("lock").unwrap().lock_index, 2);
    // Unknown session: an RPC error (500).
    assert_eq!(put(&c, "/v1/kv/lock2?acquire=nope", b"").status, 500);
}

#[test]
fn session_info_renew_destroy_list() {
    let c = start();
    let id = create_session(
        &c,
        &json!({"Name": "n", "TTL": "30s", "Behavior": "delete", "LockDelay": "5s"}),
    );
    let r = get(&c, &format!("/v1/session/info/{id}"));
    let s = &r.json()[0];
    assert_eq!(s["ID"], id.as_str());
    assert_eq!(s["Name"], "n");
    assert_eq!(s["Node"], "devstack");
    assert_eq!(s["TTL"], "30s");
    assert_eq!(s["Behavior"], "delete");
    assert_eq!(s["LockDelay"], 5_000_000_000u64);
    assert!(r.index.is_some());
    assert_eq!(
        put(&c, &format!("/v1/session/renew/{id}"), b"").json()[0]["ID"],
        id.as_str()
    );
    assert_eq!(
        get(&c, "/v1/session/list").json().as_array().unwrap().len(),
        1
    );
    assert_eq!(
        put(&c, &format!("/v1/session/destroy/{id}"), b"").json(),
        json!(true)
    );
    assert_eq!(get(&c, &format!("/v1/session/info/{id}")).json(), json!([]));
    let r = put(&c, &format!("/v1/session/renew/{id}"), b"");
    assert_eq!(
        (r.status, r.text()),
        (404, format!("Session id '{id}' not found"))
    );
}

#[test]
fn session_ttl_below_the_minimum_is_refused() {
    let c = start();
    let r = put(&c, "/v1/session/create", br#"{"TTL":"1s"}"#);
    assert_eq!(r.status, 500);
    assert!(r.text().starts_with("Invalid Session TTL"), "{}", r.text());
    let r = put(&c, "/v1/session/create", br#"{"Behavior":"explode"}"#);
    assert_eq!(r.status, 500);
}

fn fast_consul() -> Consul {
    Consul::start(ConsulOptions {
        session_ttl_min: Duration::from_millis(10),
        ..ConsulOptions::default()
    })
    .unwrap()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn ttl_expiry_releases_locks_and_applies_lock_delay() {
    let c = fast_consul();
    let created = Instant::now();
    let holder = create_session(&c, &json!({"TTL": "50ms", "LockDelay": "300ms"}));
    let other = create_session(&c, &json!({}));
    assert_eq!(
        put(&c, &format!("/v1/kv/l?acquire={holder}"), b"x").json(),
        json!(true)
    );
    let before = c.kv_get("l").unwrap().modify_index;
    // Invalidated at 2×TTL: the lock is released, the key kept (Behavior release).
    wait_until("session expiry", Duration::from_secs(5), || {
        c.kv_get("l").is_some_and(|e| e.session.is_empty())
    });
    assert!(created.elapsed() >= Duration::from_millis(100));
    let e = c.kv_get("l").unwrap();
    assert!(e.modify_index > before);
    assert_eq!(
        get(&c, &format!("/v1/session/info/{holder}")).json(),
        json!([])
    );
    // Lock-delay: acquiring right after invalidation fails, later succeeds.
    assert_eq!(
        put(&c, &format!("/v1/kv/l?acquire={other}"), b"y").json(),
        json!(false)
    );
    wait_until("lock-delay to pass", Duration::from_secs(5), || {
        put(&c, &format!("/v1/kv/l?acquire={other}"), b"y").json() == json!(true)
    });
}

#[test]
fn ttl_expiry_with_behavior_delete_deletes_held_keys_and_renew_keeps_alive() {
    let c = fast_consul();
    let s = create_session(
        &c,
        &json!({"TTL": "50ms", "Behavior": "delete", "LockDelay": "0s"}),
    );
    assert_eq!(
        put(&c, &format!("/v1/kv/d?acquire={s}"), b"x").json(),
        json!(true)
    );
    let alive = create_session(&c, &json!({"TTL": "100ms"}));
    let start = Instant::now();
    wait_until("delete on expiry", Duration::from_secs(5), || {
        c.kv_get("d").is_none()
    });
    // Keep `alive` renewed for a while beyond its 2×TTL.
    while start.elapsed() < Duration::from_millis(400) {
        assert_eq!(
            put(&c, &format!("/v1/session/renew/{alive}"), b"").status,
            200
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        get(&c, &format!("/v1/session/info/{alive}"))
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

// ------------------------------------------------------------------ catalog, health, agent

#[test]
fn catalog_register_services_and_health() {
    let c = start();
    let body = json!({
        "Node": "web1", "Address": "10.0.0.5", "NodeMeta": {"rack": "a"},
        "Service": {"ID": "web-1", "Service": "web", "Tags": ["v1"], "Address": "10.0.0.5", "Port": 8080, "Meta": {"app": "/web"}},
        "Checks": [{"CheckID": "web-1-alive", "Name": "alive", "Status": "passing", "ServiceID": "web-1"}]
    });
    let r = put(&c, "/v1/catalog/register", body.to_string().as_bytes());
    assert_eq!((r.status, r.json()), (200, json!(true)));
    let svcs = get(&c, "/v1/catalog/services");
    assert_eq!(svcs.json(), json!({"consul": [], "web": ["v1"]}));
    let r = get(&c, "/v1/catalog/service/web");
    let e = &r.json()[0];
    assert_eq!(e["Node"], "web1");
    assert_eq!(e["Address"], "10.0.0.5");
    assert_eq!(e["NodeMeta"], json!({"rack": "a"}));
    assert_eq!(e["ServiceID"], "web-1");
    assert_eq!(e["ServicePort"], 8080);
    assert_eq!(e["ServiceMeta"], json!({"app": "/web"}));
    let h = get(&c, "/v1/health/service/web").json();
    assert_eq!(h[0]["Service"]["ID"], "web-1");
    assert_eq!(h[0]["Node"]["Node"], "web1");
    assert_eq!(h[0]["Checks"][0]["CheckID"], "web-1-alive");
    assert_eq!(h[0]["Checks"][0]["ServiceName"], "web");
    assert_eq!(
        get(&c, "/v1/health/service/web?passing")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        get(&c, "/v1/health/checks/web")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let node = get(&c, "/v1/catalog/node/web1").json();
    assert_eq!(node["Node"]["Address"], "10.0.0.5");
    assert_eq!(node["Services"]["web-1"]["Port"], 8080);
    assert_eq!(get(&c, "/v1/catalog/node/nobody").json(), Value::Null);
    let nodes = get(&c, "/v1/catalog/nodes").json();
    assert_eq!(nodes.as_array().unwrap().len(), 2);

    // A critical check removes the instance from ?passing.
    let crit = json!({"Node": "web1", "SkipNodeUpdate": true, "Check": {"CheckID": "web-1-alive", "Name": "alive", "Status": "critical", "ServiceID": "web-1"}});
    put(&c, "/v1/catalog/register", crit.to_string().as_bytes());
    assert_eq!(get(&c, "/v1/health/service/web?passing").json(), json!([]));
    assert_eq!(
        get(&c, "/v1/health/state/critical").json()[0]["CheckID"],
        "web-1-alive"
    );
    // v1.14.11 takes any state and matches it against the statuses (consul_conformance).
    assert_eq!(get(&c, "/v1/health/state/bogus").json(), json!([]));
    assert_eq!(
        get(&c, "/v1/health/state/critical?tag=v1")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        get(&c, "/v1/health/state/critical?tag=v2").json(),
        json!([])
    );

    // Re-registering an identical service does not move the index.
    let idx = c.index();
    put(&c, "/v1/catalog/register", body.to_string().as_bytes());
    let after = c.index();
    assert!(after - idx <= 1, "only the check status changes back");
    let idx = c.index();
    put(&c, "/v1/catalog/register", body.to_string().as_bytes());
    assert_eq!(c.index(), idx);

    // Deregister the service, then the node.
    let r = put(
        &c,
        "/v1/catalog/deregister",
        br#"{"Node":"web1","ServiceID":"web-1"}"#,
    );
    assert_eq!(r.json(), json!(true));
    assert_eq!(get(&c, "/v1/catalog/service/web").json(), json!([]));
    put(&c, "/v1/catalog/deregister", br#"{"Node":"web1"}"#);
    assert_eq!(
        get(&c, "/v1/catalog/nodes")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn catalog_register_errors_are_plain_text() {
    let c = start();
    let r = put(&c, "/v1/catalog/register", b"{not json");
    assert_eq!(r.status, 400);
    assert!(r.text().starts_with("Request decode failed: "));
    let r = put(&c, "/v1/catalog/register", br#"{"Address":"1.2.3.4"}"#);
    assert_eq!((r.status, r.text()), (500, "Must provide node".to_string()));
    let r = put(&c, "/v1/catalog/register", br#"{"Node":"x"}"#);
    assert_eq!(
        (r.status, r.text()),
        (
            500,
            "Must provide address if SkipNodeUpdate is not set".to_string()
        )
    );
}

#[test]
fn catalog_service_blocking_wakes_on_registration() {
    let c = start();
    let r = get(&c, "/v1/health/service/api");
    assert_eq!(r.json(), json!([]));
    let idx = r.index.unwrap();
    let url = format!("{}/v1/health/service/api?index={idx}&wait=10s", c.url());
    let h = std::thread::spawn(move || call("GET", &url, b"", &[]));
    let reg = json!({"Node": "n", "Address": "1.1.1.1", "Service": {"Service": "api", "Port": 1}});
    put(&c, "/v1/catalog/register", reg.to_string().as_bytes());
    let r = h.join().unwrap();
    assert_eq!(r.json()[0]["Service"]["ID"], "api");
    assert!(r.index.unwrap() > idx);
}

#[test]
fn agent_service_register_deregister_and_ttl_checks() {
    let c = start();
    let body = json!({"Name": "jobs", "ID": "jobs-1", "Tags": ["a"], "Port": 31000, "Address": "10.1.1.1",
        "Meta": {"task": "t1"}, "Check": {"TTL": "30s", "Status": "passing"}});
    let r = put(
        &c,
        "/v1/agent/service/register",
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    let svcs = get(&c, "/v1/agent/services").json();
    assert_eq!(svcs["jobs-1"]["Service"], "jobs");
    assert_eq!(svcs["jobs-1"]["Port"], 31000);
    assert_eq!(svcs["jobs-1"]["Datacenter"], "dc1");
    assert!(svcs.get("consul").is_none());
    // Also in the catalog, on the agent's node.
    let cat = get(&c, "/v1/catalog/service/jobs").json();
    assert_eq!(cat[0]["Node"], "devstack");
    assert_eq!(c.agent_services().len(), 1);
    assert_eq!(c.catalog_services().len(), 2);
    let checks = get(&c, "/v1/agent/checks").json();
    assert_eq!(checks["service:jobs-1"]["Status"], "passing");
    assert_eq!(checks["service:jobs-1"]["Name"], "Service 'jobs' check");
    let r = put(&c, "/v1/agent/check/fail/service:jobs-1?note=down", b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        get(&c, "/v1/agent/checks").json()["service:jobs-1"]["Status"],
        "critical"
    );
    assert_eq!(get(&c, "/v1/health/service/jobs?passing").json(), json!([]));
    put(&c, "/v1/agent/check/pass/service:jobs-1", b"");
    assert_eq!(
        get(&c, "/v1/health/service/jobs?passing")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = put(&c, "/v1/agent/check/warn/nope", b"");
    assert_eq!(r.status, 404);
    assert!(r.text().starts_with("Unknown check ID \"nope\""));

    assert_eq!(
        put(&c, "/v1/agent/service/deregister/jobs-1", b"").status,
        200
    );
    assert_eq!(get(&c, "/v1/agent/services").json(), json!({}));
    assert_eq!(get(&c, "/v1/catalog/service/jobs").json(), json!([]));
    let r = put(&c, "/v1/agent/service/deregister/jobs-1", b"");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.text(),
        "Unknown service ID \"jobs-1\". Ensure that the service ID is passed, not the service name."
    );
    assert_eq!(get(&c, "/v1/agent/service/register").status, 405);
}

#[test]
fn agent_register_validation_errors() {
    let c = start();
    let cases: [(&str, &str); 4] = [
        (r#"{"Port": 80}"#, "Missing service name"),
        (
            r#"{"Name": "x", "Address": "0.0.0.0"}"#,
            "Invalid service address",
        ),
        (
            r#"{"Name": "x", "Check": {"HTTP": "http://x/"}}"#,
            "Invalid check: Interval must be > 0",
        ),
        (
            r#"{"Name": "x", "Check": {"TTL": "10s", "Status": "up"}}"#,
            "Status for checks must",
        ),
    ];
    for (body, want) in cases {
        let r = put(&c, "/v1/agent/service/register", body.as_bytes());
        assert_eq!(r.status, 400, "{body}");
        assert!(r.text().starts_with(want), "{body}: {}", r.text());
    }
    // snake_case is accepted by the agent endpoint.
    let r = put(
        &c,
        "/v1/agent/service/register",
        br#"{"name":"snake","enable_tag_override":true}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        get(&c, "/v1/agent/services").json()["snake"]["EnableTagOverride"],
        true
    );
}

// ------------------------------------------------------------------ events, status, ACL

#[test]
fn events_fire_and_list() {
    let c = start();
    let r = get(&c, "/v1/event/list");
    assert_eq!((r.json(), r.index), (json!([]), Some(1)));
    let r = put(&c, "/v1/event/fire/deploy", b"1609030");
    let ev = r.json();
    assert_eq!(ev["Name"], "deploy");
    assert_eq!(ev["Payload"], "MTYwOTAzMA==");
    assert_eq!(ev["Version"], 1);
    assert_eq!(ev["LTime"], 0);
    let id = ev["ID"].as_str().unwrap().to_string();
    let keys: Vec<&String> = ev.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "ID",
            "Name",
            "Payload",
            "NodeFilter",
            "ServiceFilter",
            "TagFilter",
            "Version",
            "LTime"
        ]
    );
    let none = put(&c, "/v1/event/fire/other", b"").json();
    assert_eq!(none["Payload"], Value::Null);
    let r = get(&c, "/v1/event/list?name=deploy");
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    assert_eq!(r.index, Some(devstack::consul::util::uuid_to_u64(&id)));
    let all = get(&c, "/v1/event/list");
    assert_eq!(all.json().as_array().unwrap().len(), 2);
    let r = put(&c, "/v1/event/fire/", b"");
    assert_eq!((r.status, r.text()), (400, "Missing name".to_string()));
}

#[test]
fn event_list_blocks_while_the_index_is_equal_and_keeps_256() {
    let c = start();
    let first = c.fire_event("e", b"0");
    let idx = devstack::consul::util::uuid_to_u64(&first);
    let url = format!("{}/v1/event/list?index={idx}&wait=10s", c.url());
    let h = std::thread::spawn(move || call("GET", &url, b"", &[]));
    let second = c.fire_event("e", b"1");
    let r = h.join().unwrap();
    assert_eq!(r.index, Some(devstack::consul::util::uuid_to_u64(&second)));
    for i in 0..300 {
        c.fire_event("bulk", i.to_string().as_bytes());
    }
    let list = get(&c, "/v1/event/list").json();
    assert_eq!(list.as_array().unwrap().len(), 256);
    assert_eq!(list[255]["Payload"], "Mjk5"); // "299"
}

#[test]
fn status_leader_and_unknown_paths() {
    let c = start();
    assert_eq!(get(&c, "/v1/status/leader").json(), json!("127.0.0.1:8300"));
    assert_eq!(get(&c, "/v1/nope").status, 404);
    assert_eq!(
        call("POST", &format!("{}/v1/kv/x", c.url()), b"", &[]).status,
        405
    );
}

#[test]
fn acl_management_token_is_required() {
    let c = Consul::start(ConsulOptions {
        acl_master_token: Some("s3cret".into()),
        ..ConsulOptions::default()
    })
    .unwrap();
    let url = format!("{}/v1/kv/foo", c.url());
    let r = call("PUT", &url, b"v", &[]);
    assert_eq!(r.status, 403);
    assert_eq!(
        r.text(),
        "Permission denied: token with AccessorID '00000000-0000-0000-0000-000000000002' lacks permission 'key:write' on \"foo\""
    );
    let r = call("GET", &url, b"", &[("X-Consul-Token", "wrong")]);
    assert_eq!((r.status, r.text()), (403, "ACL not found".to_string()));
    assert_eq!(
        call("PUT", &url, b"v", &[("X-Consul-Token", "s3cret")]).status,
        200
    );
    assert_eq!(
        call("GET", &url, b"", &[("Authorization", "Bearer s3cret")]).status,
        200
    );
    assert_eq!(
        call("GET", &format!("{url}?token=s3cret"), b"", &[]).status,
        200
    );
    assert_eq!(get(&c, "/v1/status/leader").status, 200);
    assert_eq!(c.write_count(), 1);
    // Lists are filtered, not refused: the anonymous token sees nothing.
    let r = get(&c, "/v1/kv/?recurse");
    assert_eq!((r.status, r.body.is_empty()), (404, true));
    assert!(r.index.is_some());
    assert_eq!(get(&c, "/v1/catalog/services").json(), json!({}));
    assert_eq!(get(&c, "/v1/health/service/consul").json(), json!([]));
    c.fire_event("deploy", b"");
    assert_eq!(get(&c, "/v1/event/list").json(), json!([]));
    let r = put(&c, "/v1/event/fire/deploy", b"");
    assert_eq!((r.status, r.text()), (403, "Permission denied".to_string()));
    let r = call(
        "GET",
        &format!("{}/v1/event/list", c.url()),
        b"",
        &[("X-Consul-Token", "s3cret")],
    );
    assert_eq!(r.json().as_array().unwrap().len(), 1);
}

#[test]
fn drop_wakes_blocked_queries() {
    let c = start();
    let idx = c.kv_put("k", b"1");
    let url = format!("{}/v1/kv/k?index={idx}&wait=5m", c.url());
    let started = Instant::now();
    let h = std::thread::spawn(move || {
        ureq::get(&url)
            .config()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .call()
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    });
    // Make sure the request reached the server before dropping.
    wait_until("request held", Duration::from_secs(5), || {
        started.elapsed() > Duration::from_millis(50)
    });
    drop(c);
    let _ = h.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn agent_ttl_check_goes_critical_when_not_updated() {
    let c = start();
    let body = json!({"Name": "ttl", "Check": {"CheckID": "ttl-check", "TTL": "100ms", "Status": "passing"}});
    let registered = Instant::now();
    assert_eq!(
        put(
            &c,
            "/v1/agent/service/register",
            body.to_string().as_bytes()
        )
        .status,
        200
    );
    wait_until("TTL expiry", Duration::from_secs(5), || {
        get(&c, "/v1/agent/checks").json()["ttl-check"]["Status"] == "critical"
    });
    assert!(registered.elapsed() >= Duration::from_millis(100));
    assert_eq!(
        get(&c, "/v1/agent/checks").json()["ttl-check"]["Output"],
        "TTL expired"
    );
    assert_eq!(
        put(&c, "/v1/agent/check/pass/ttl-check?note=ok", b"").status,
        200
    );
    let h = get(&c, "/v1/health/service/ttl?passing").json();
    assert_eq!(h[0]["Checks"][1]["Output"], "ok");
}

#[test]
fn other_datacenters_are_unreachable() {
    let c = start();
    assert_eq!(get(&c, "/v1/kv/x?dc=dc1").status, 404);
    let r = get(&c, "/v1/kv/x?dc=dc2");
    assert_eq!(
        (r.status, r.text()),
        (500, "No path to datacenter".to_string())
    );
}

#[test]
fn strict_kv_keys_is_opt_in() {
    let c = start();
    assert_eq!(put(&c, "/v1/kv/apps/web.json", b"{}").status, 200);
    let c = Consul::start(ConsulOptions {
        strict_kv_keys: true,
        ..ConsulOptions::default()
    })
    .unwrap();
    let r = put(&c, "/v1/kv/apps/web.json", b"{}");
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("suspicious file extension"),
        "{}",
        r.text()
    );
    let r = get(&c, "/v1/kv/a%20b");
    assert_eq!(r.status, 400);
    assert!(r.text().starts_with("key contains invalid characters"));
    assert_eq!(put(&c, "/v1/kv/images/web", b"x").status, 200);
}

/// `/v1/txn` KV verbs as v1.14.11 answers them (agent/txn_endpoint.go, state/txn.go; compared
/// with the real agent by consul_conformance): one index for all writes, every failing
/// operation reported with 409 and nothing applied, at most 128 operations.
#[test]
fn txn_kv_verbs_are_atomic_and_report_every_failing_operation() {
    let c = Consul::start(ConsulOptions::default()).unwrap();
    let txn = |body: &str| call("PUT", &format!("{}/v1/txn", c.url()), body.as_bytes(), &[]);
    let r = txn(
        r#"[{"KV":{"Verb":"set","Key":"t/a","Value":"YQ=="}},{"KV":{"Verb":"set","Key":"t/b"}},{"KV":{"Verb":"get","Key":"t/a"}}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["Errors"], Value::Null);
    let res = v["Results"].as_array().unwrap();
    assert_eq!(res.len(), 3);
    assert_eq!(res[0]["KV"]["Value"], Value::Null, "writes carry no value");
    assert_eq!(res[2]["KV"]["Value"], "YQ==");
    assert_eq!(
        res[0]["KV"]["ModifyIndex"], res[1]["KV"]["ModifyIndex"],
        "one index"
    );
    let idx = res[0]["KV"]["ModifyIndex"].as_u64().unwrap();

    let r = txn(&format!(
        r#"[{{"KV":{{"Verb":"set","Key":"t/c","Value":"Yw=="}}}},{{"KV":{{"Verb":"cas","Key":"t/a","Value":"eA==","Index":{}}}}},{{"KV":{{"Verb":"get","Key":"t/none"}}}}]"#,
        idx + 100
    ));
    assert_eq!(r.status, 409);
    let v = r.json();
    assert_eq!(v["Results"], Value::Null);
    assert_eq!(
        v["Errors"],
        json!([
            {"OpIndex": 1, "What": "failed to set key \"t/a\", index is stale"},
            {"OpIndex": 2, "What": "key \"t/none\" doesn't exist"}
        ])
    );
    assert_eq!(get(&c, "/v1/kv/t/c").status, 404, "nothing applied");
    assert_eq!(c.kv_get("t/a").unwrap().modify_index, idx);

    let ops: Vec<Value> = (0..129)
        .map(|i| json!({"KV": {"Verb": "set", "Key": format!("t/{i}")}}))
        .collect();
    let r = txn(&Value::Array(ops).to_string());
    assert_eq!(r.status, 413);
    assert_eq!(
        r.text(),
        "Transaction contains too many operations (129 > 128)"
    );
    assert_eq!(txn("{").status, 400);
}

/// `/v1/txn` catalog verbs as v1.14.11 answers them (state/txn.go txnNode/txnService/txnCheck,
/// answers captured from the real agent and checked by consul_conformance): node, service and
/// check set in one transaction at one index, results as stored, readable as a catalog
/// registration.
#[test]
fn txn_catalog_verbs_register_node_service_and_check_at_one_index() {
    let c = start();
    let txn = |body: &str| put(&c, "/v1/txn", body.as_bytes());
    let body = r#"[{"Node":{"Verb":"set","Node":{"Node":"ext-1","Address":"10.0.0.1","Meta":{"external-node":"true"}}}},
        {"Service":{"Verb":"set","Node":"ext-1","Service":{"ID":"web-1","Service":"web","Tags":["a"],"Address":"10.0.0.1","Port":31000,"Meta":{"k":"v"}}}},
        {"Check":{"Verb":"set","Check":{"Node":"ext-1","CheckID":"web-1:h","Name":"h","Status":"passing","ServiceID":"web-1","Output":"ok"}}}]"#;
    let r = txn(body);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["Errors"], Value::Null);
    let res = v["Results"].as_array().unwrap();
    assert_eq!(res.len(), 3);
    assert_eq!(res[0]["Node"]["Meta"]["external-node"], "true");
    assert_eq!(res[0]["Node"]["Datacenter"], "dc1");
    assert_eq!(
        res[1]["Service"]["Weights"],
        json!({"Passing": 1, "Warning": 1})
    );
    assert_eq!(
        res[2]["Check"]["ServiceName"], "web",
        "copied from the service"
    );
    assert_eq!(res[2]["Check"]["ServiceTags"], json!(["a"]));
    let idx = res[0]["Node"]["ModifyIndex"].clone();
    assert!(res.iter().all(|r| r
        .as_object()
        .unwrap()
        .values()
        .all(|e| e["CreateIndex"] == idx)));
    let health = get(&c, "/v1/health/service/web").json();
    assert_eq!(health[0]["Node"]["Node"], "ext-1");
    assert_eq!(health[0]["Checks"][0]["Status"], "passing");
    // The same transaction again changes nothing (no index moves).
    let before = c.index();
    assert_eq!(txn(body).status, 200);
    assert_eq!(c.index(), before);
    // Reads are answered as reads (X-Consul-KnownLeader).
    let r = txn(
        r#"[{"Node":{"Verb":"get","Node":{"Node":"ext-1"}}},{"Service":{"Verb":"get","Node":"ext-1","Service":{"ID":"web-1"}}},{"Check":{"Verb":"get","Check":{"Node":"ext-1","CheckID":"web-1:h"}}}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("X-Consul-KnownLeader"), Some("true"));
    assert_eq!(r.json()["Results"].as_array().unwrap().len(), 3);
    // Deletes: the service takes its check with it; missing entries are no error.
    let r = txn(
        r#"[{"Service":{"Verb":"delete","Node":"ext-1","Service":{"ID":"web-1","Service":"web"}}},{"Node":{"Verb":"delete","Node":{"Node":"nope"}}},{"Check":{"Verb":"delete","Check":{"Node":"ext-1","CheckID":"nope"}}}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["Results"], json!([]));
    assert_eq!(get(&c, "/v1/health/service/web").json(), json!([]));
    assert!(!c.catalog_services().iter().any(|s| s.service == "web"));
}

/// A failing catalog operation: 409 with every error, nothing of the transaction applied (KV
/// and catalog); pre-check errors are answered alone; strict decoding and the op limit.
#[test]
fn txn_catalog_failures_roll_back_everything() {
    let c = start();
    let txn = |body: &str| put(&c, "/v1/txn", body.as_bytes());
    let long = "a".repeat(513);
    let body = json!([
        {"KV": {"Verb": "set", "Key": "mix/a", "Value": "YQ=="}},
        {"Node": {"Verb": "set", "Node": {"Node": "ext-1", "Address": "10.0.0.1"}}},
        {"Service": {"Verb": "set", "Node": "ext-1", "Service": {"ID": "ok", "Service": "web"}}},
        {"Service": {"Verb": "set", "Node": "ext-1", "Service": {"ID": "bad", "Service": "web", "Meta": {"k": long}}}},
        {"Check": {"Verb": "set", "Check": {"Node": "ext-1", "CheckID": "c", "ServiceID": "bad"}}},
        {"Service": {"Verb": "set", "Node": "nope", "Service": {"ID": "x", "Service": "x"}}},
        {"Node": {"Verb": "frob", "Node": {"Node": "x"}}}
    ]);
    let r = txn(&body.to_string());
    assert_eq!(r.status, 409, "{}", r.text());
    let v = r.json();
    assert_eq!(v["Results"], Value::Null);
    let errors = v["Errors"].as_array().unwrap();
    let at: Vec<u64> = errors
        .iter()
        .map(|e| e["OpIndex"].as_u64().unwrap())
        .collect();
    assert_eq!(at, vec![3, 4, 5, 6], "{errors:?}");
    assert!(errors[0]["What"].as_str().unwrap().starts_with(
        "Invalid Service Meta for node ext-1 and serviceID bad: Couldn't load metadata pair ('k', 'aaa"
    ));
    assert!(errors[0]["What"]
        .as_str()
        .unwrap()
        .ends_with("Value is too long (limit: 512 characters)"));
    assert_eq!(errors[1]["What"], "Missing service registration");
    assert_eq!(errors[2]["What"], "Missing node registration");
    assert_eq!(errors[3]["What"], "unknown Node verb \"frob\"");
    assert_eq!(get(&c, "/v1/kv/mix/a").status, 404, "KV rolled back");
    assert_eq!(
        get(&c, "/v1/catalog/node/ext-1").json(),
        Value::Null,
        "node rolled back"
    );
    assert!(!c.catalog_services().iter().any(|s| s.service == "web"));

    // Pre-checks (servicePreApply) are answered alone.
    let r = txn(
        r#"[{"Service":{"Verb":"set","Node":"nope","Service":{"ID":"q","Service":"q"}}},{"Service":{"Verb":"delete","Node":"n","Service":{"ID":"q"}}}]"#,
    );
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["Errors"],
        json!([{"OpIndex": 1, "What": "Must provide service name (Service.Service) when service ID is provided"}])
    );
    // A failure over an existing registration puts it back as it was.
    c.kv_put("keep", b"1");
    let reg = r#"[{"Node":{"Verb":"set","Node":{"Node":"n1","Address":"10.0.0.2"}}},{"Service":{"Verb":"set","Node":"n1","Service":{"ID":"s","Service":"s","Port":1}}}]"#;
    assert_eq!(txn(reg).status, 200);
    let before = get(&c, "/v1/catalog/node/n1").json();
    let r = txn(
        r#"[{"Node":{"Verb":"set","Node":{"Node":"n1","Address":"10.9.9.9"}}},{"Service":{"Verb":"delete","Node":"n1","Service":{"ID":"s","Service":"s"}}},{"Check":{"Verb":"set","Check":{"Node":"n1","CheckID":"c","ServiceID":"gone"}}}]"#,
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(get(&c, "/v1/catalog/node/n1").json(), before);

    // Strict decoding (v1.14.11): an unknown field, a Session operation, a wrong type: 400.
    let r = txn(r#"[{"Node":{"Verb":"set","Node":{"Node":"x","NodeMeta":{}}}}]"#);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        "Failed to parse body: json: unknown field \"NodeMeta\""
    );
    let r = txn(r#"[{"Session":{"Verb":"delete","Session":{"ID":"x"}}}]"#);
    assert_eq!(
        r.text(),
        "Failed to parse body: json: unknown field \"Session\""
    );
    let r = txn(
        r#"[{"Service":{"Verb":"set","Node":"n1","Service":{"ID":"s","Service":"s","Port":"x"}}}]"#,
    );
    assert_eq!(r.status, 400);
    // The operation limit counts catalog operations too.
    let ops: Vec<Value> = (0..129)
        .map(|i| json!({"Node": {"Verb": "set", "Node": {"Node": format!("n{i}"), "Address": "10.0.0.1"}}}))
        .collect();
    let r = txn(&Value::Array(ops).to_string());
    assert_eq!(r.status, 413);
    assert_eq!(
        r.text(),
        "Transaction contains too many operations (129 > 128)"
    );
    // A registration with bad service meta fails the same way outside a transaction (500).
    let r = put(
        &c,
        "/v1/catalog/register",
        json!({"Node": "n1", "Address": "10.0.0.2", "Service": {"ID": "b", "Service": "b", "Meta": {"consul-x": "1"}}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 500);
    assert_eq!(
        r.text(),
        "failed inserting service: Invalid Service Meta for node n1 and serviceID b: Couldn't load metadata pair ('consul-x', '1'): Key prefix 'consul-' is reserved for internal use"
    );
}
