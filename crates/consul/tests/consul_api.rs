//! The Consul client against the devstack Consul double (or a real Consul when
//! CONSUL_HTTP_ADDR is set; tests that need double-only controls skip then).

use std::sync::Arc;
use std::time::{Duration, Instant};

use consul::lock::{acquire, LockOutcome};
use consul::{Consul, ConsulError};
use devstack::consul::{Consul as ConsulDouble, ConsulOptions};
use devstack::stack::Endpoint;
use runtime::http::{HttpClient, HttpConfig};
use runtime::Backoff;

fn client(url: &str) -> Consul {
    let mut cfg = HttpConfig::new("consul");
    cfg.backoff = Backoff {
        attempts: 3,
        base: Duration::from_millis(5),
        max: Duration::from_millis(20),
    };
    Consul::new(HttpClient::new(&[url.to_string()], cfg).unwrap())
}

/// A unique key prefix per test, so tests can share a real Consul.
fn prefix(name: &str) -> String {
    format!(
        "shipwatch-test/{name}-{}-{}/",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    )
}

#[test]
fn kv_round_trip_and_missing_key() {
    let ep = Endpoint::consul();
    let c = client(&ep.url());
    let p = prefix("kv");
    assert_eq!(c.kv_get(&format!("{p}missing")).unwrap(), None);
    assert!(c.kv_put(&format!("{p}a"), b"one").unwrap());
    assert!(c.kv_put(&format!("{p}b/c"), b"two").unwrap());
    let got = c.kv_get(&format!("{p}a")).unwrap().unwrap();
    assert_eq!(got.value.as_deref(), Some(&b"one"[..]));
    let (all, index) = c.kv_list(&p, None).unwrap();
    assert_eq!(all.len(), 2);
    assert!(index > 0);
    // cas=0 creates only when absent
    assert!(!c.kv_put_cas(&format!("{p}a"), b"x", 0).unwrap());
    assert!(c.kv_put_cas(&format!("{p}new"), b"x", 0).unwrap());
    assert!(c.kv_delete(&format!("{p}a")).unwrap());
    assert_eq!(c.kv_get(&format!("{p}a")).unwrap(), None);
}

#[test]
fn blocking_list_returns_when_the_prefix_changes() {
    let ep = Endpoint::consul();
    let c = Arc::new(client(&ep.url()));
    let p = prefix("block");
    c.kv_put(&format!("{p}a"), b"1").unwrap();
    let (_, index) = c.kv_list(&p, None).unwrap();
    let writer = {
        let c = Arc::clone(&c);
        let key = format!("{p}a");
        std::thread::spawn(move || c.kv_put(&key, b"2").unwrap())
    };
    let (pairs, new_index) = c
        .kv_list(&p, Some((index, Duration::from_secs(30))))
        .unwrap();
    writer.join().unwrap();
    assert!(new_index > index, "{new_index} > {index}");
    assert_eq!(pairs[0].value.as_deref(), Some(&b"2"[..]));
}

#[test]
fn blocking_get_returns_when_the_key_changes_or_the_wait_ends() {
    let ep = Endpoint::consul();
    let c = Arc::new(client(&ep.url()));
    let key = format!("{}main.ref", prefix("blockget"));
    c.kv_put(&key, b"sha1").unwrap();
    let first = c.kv_get(&key).unwrap().unwrap();
    // Unchanged: the wait runs out and the same key comes back.
    let t = Instant::now();
    let (same, index) = c
        .kv_get_blocking(&key, first.modify_index, Duration::from_millis(200))
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(same.unwrap().modify_index, first.modify_index);
    assert_eq!(index, first.modify_index);
    let writer = {
        let c = Arc::clone(&c);
        let key = key.clone();
        std::thread::spawn(move || c.kv_put(&key, b"sha2").unwrap())
    };
    let (moved, _) = c
        .kv_get_blocking(&key, first.modify_index, Duration::from_secs(30))
        .unwrap();
    writer.join().unwrap();
    let moved = moved.unwrap();
    assert!(moved.modify_index > first.modify_index);
    assert_eq!(moved.value.as_deref(), Some(&b"sha2"[..]));
}

#[test]
fn invalid_keys_never_reach_consul() {
    let c = client("http://127.0.0.1:1");
    for key in ["/abs", "a/../b", "a\u{0}b", ""] {
        assert!(
            matches!(c.kv_get(key), Err(ConsulError::InvalidKey { .. })),
            "{key:?}"
        );
    }
}

#[test]
fn acl_denial_is_a_configuration_error() {
    let double = ConsulDouble::start(ConsulOptions {
        acl_master_token: Some("root-token-123".into()),
        ..ConsulOptions::default()
    })
    .unwrap();
    let c = client(&double.url());
    let err = c.kv_put("a", b"x").unwrap_err();
    assert!(matches!(err, ConsulError::Forbidden { .. }), "{err}");
    assert_eq!(runtime::ToExit::exit(&err), runtime::Exit::Usage);
}

/// A proxy in front of Consul that wants credentials answers 401: a configuration problem like
/// Consul's own 403 (issue 12 item 6: `--lock` exited 75 on it).
#[test]
fn a_401_is_an_acl_denial_too() {
    use devstack::http::Fault;
    let double = ConsulDouble::start(ConsulOptions::default()).unwrap();
    double.faults().fail_always_on(
        "/v1/session/create",
        Fault::Status {
            status: 401,
            body: "Unauthorized".into(),
        },
    );
    let c = Arc::new(client(&double.url()));
    let err = match acquire(c, "locks/x", "me", Duration::from_secs(15)) {
        Err(e) => e,
        Ok(_) => panic!("acquired despite the 401"),
    };
    assert!(matches!(err, ConsulError::Forbidden { .. }), "{err}");
    assert_eq!(runtime::ToExit::exit(&err), runtime::Exit::Usage);
    assert!(err.to_string().contains("CONSUL_HTTP_TOKEN"), "{err}");
}

#[test]
fn one_of_three_concurrent_lockers_wins_and_release_frees_the_key() {
    let ep = Endpoint::consul();
    let url = ep.url();
    let key = format!("{}lock", prefix("lock"));
    let results: Vec<bool> = (0..3)
        .map(|i| {
            let url = url.clone();
            let key = key.clone();
            std::thread::spawn(move || {
                let c = Arc::new(client(&url));
                match acquire(c, &key, &format!("runner {i}"), Duration::from_secs(15)).unwrap() {
                    LockOutcome::Acquired(guard) => {
                        // Hold it long enough for the others to find it taken.
                        std::thread::sleep(Duration::from_millis(300));
                        drop(guard);
                        true
                    }
                    LockOutcome::HeldElsewhere { holder } => {
                        assert!(holder.contains("runner"), "{holder}");
                        false
                    }
                }
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(results.iter().filter(|w| **w).count(), 1, "{results:?}");
    // Released: the next run gets it at once.
    let c = Arc::new(client(&url));
    assert!(matches!(
        acquire(c, &key, "next", Duration::from_secs(15)).unwrap(),
        LockOutcome::Acquired(_)
    ));
}

#[test]
fn a_crashed_holder_blocks_the_next_run_no_longer_than_the_ttl() {
    // Double-only: needs a short session TTL minimum (a real Consul's is 10s).
    let double = ConsulDouble::start(ConsulOptions {
        session_ttl_min: Duration::from_millis(100),
        ..ConsulOptions::default()
    })
    .unwrap();
    let c = client(&double.url());
    let key = "locks/crash";
    // A holder that took the lock and died: its session is never renewed.
    let session = c
        .session_create("crashed", Duration::from_millis(300), Duration::ZERO)
        .unwrap();
    assert!(c.kv_acquire(key, b"dead", &session).unwrap());
    let c = Arc::new(c);
    let started = Instant::now();
    let mut outcome = acquire(Arc::clone(&c), key, "next", Duration::from_secs(10)).unwrap();
    while matches!(outcome, LockOutcome::HeldElsewhere { .. }) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still blocked after 2xTTL and lock-delay"
        );
        std::thread::sleep(Duration::from_millis(50));
        outcome = acquire(Arc::clone(&c), key, "next", Duration::from_secs(10)).unwrap();
    }
}

#[test]
fn events_fire_and_names_are_checked() {
    let ep = Endpoint::consul();
    let c = client(&ep.url());
    let id = c
        .event_fire("shipwatch-test", br#"{"apps":["/a"]}"#)
        .unwrap();
    assert!(!id.is_empty());
    assert!(c.event_fire("", b"").is_err());
    assert!(c.event_fire("_reserved", b"").is_err());
    if let Some(d) = ep.double() {
        assert!(d
            .events()
            .iter()
            .any(|(eid, name, _)| *eid == id && name == "shipwatch-test"));
    }
}

#[test]
fn unreachable_consul_is_unavailable_after_retries() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let err = client(&url).kv_get("a").unwrap_err();
    assert_eq!(
        runtime::ToExit::exit(&err),
        runtime::Exit::Unavailable,
        "{err}"
    );
}
