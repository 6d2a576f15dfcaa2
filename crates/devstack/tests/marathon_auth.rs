//! Marathon double: basic auth / token (reference §1.1 401) and the standby proxy (§1.2).

#[path = "marathon_common.rs"]
mod common;

use common::*;
use devstack::marathon::{Marathon, MarathonOptions};
use serde_json::json;

#[test]
fn basic_auth_challenges_with_the_mesosphere_realm() {
    let m = Marathon::start(MarathonOptions {
        basic_auth: Some(("ops".into(), "s3cret".into())),
        ..MarathonOptions::default()
    })
    .unwrap();
    let r = call("GET", &format!("{}/v2/apps", m.url()), None);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Basic realm=\"Mesosphere\"")
    );
    let r = call_with(
        "GET",
        &format!("{}/v2/apps", m.url()),
        None,
        &[("Authorization", "Basic b3BzOndyb25n")],
    );
    assert_eq!(r.status, 401);
    // base64("ops:s3cret")
    let r = call_with(
        "GET",
        &format!("{}/v2/apps", m.url()),
        None,
        &[("Authorization", "Basic b3BzOnMzY3JldA==")],
    );
    assert_eq!(r.status, 200);
}

#[test]
fn token_auth_accepts_token_and_bearer_forms() {
    let m = Marathon::start(MarathonOptions {
        token: Some("t0k".into()),
        ..MarathonOptions::default()
    })
    .unwrap();
    let url = format!("{}/v2/apps", m.url());
    assert_eq!(call("GET", &url, None).status, 401);
    assert_eq!(
        call_with("GET", &url, None, &[("Authorization", "token=t0k")]).status,
        200
    );
    assert_eq!(
        call_with("GET", &url, None, &[("Authorization", "Bearer t0k")]).status,
        200
    );
    assert_eq!(
        call_with("GET", &url, None, &[("Authorization", "Bearer no")]).status,
        401
    );
}

#[test]
fn standby_proxies_to_the_leader_and_redirects_events() {
    let leader = start();
    let standby = Marathon::start(MarathonOptions {
        proxy_to: Some(leader.url()),
        ..MarathonOptions::default()
    })
    .unwrap();
    let r = call(
        "PUT",
        &format!("{}/v2/apps/via", standby.url()),
        Some(&json!({"cmd": "x"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.header("Marathon-Deployment-Id").is_some());
    assert_eq!(r.header("X-Marathon-Leader"), Some(leader.url().as_str()));
    assert_eq!(
        r.header("X-Marathon-Via"),
        Some(format!("1.1 {}", standby.addr()).as_str())
    );
    assert!(leader.app("/via").is_some());
    assert_eq!(leader.write_count(), 1);
    let r = call("GET", &format!("{}/v2/leader", standby.url()), None);
    assert_eq!(r.json()["leader"], leader.addr().to_string());
    // A request that already went through this standby is a loop.
    let r = call_with(
        "GET",
        &format!("{}/v2/apps", standby.url()),
        None,
        &[("X-Marathon-Via", &format!("1.1 {}", standby.addr()))],
    );
    assert_eq!(r.status, 502);
    assert_eq!(r.body, "Detected proxying loop.");
    let r = call("GET", &format!("{}/v2/apps/nope", standby.url()), None);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "App '/nope' does not exist");
    let r = call(
        "GET",
        &format!("{}/v2/events?event_type=status_update_event", standby.url()),
        None,
    );
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("Location"),
        Some(format!("{}/v2/events?event_type=status_update_event", leader.url()).as_str())
    );
}

#[test]
fn standby_without_a_reachable_leader_answers_502() {
    let gone = start();
    let url = gone.url();
    drop(gone);
    let standby = Marathon::start(MarathonOptions {
        proxy_to: Some(url),
        ..MarathonOptions::default()
    })
    .unwrap();
    let r = call("GET", &format!("{}/v2/apps", standby.url()), None);
    assert_eq!(r.status, 502);
}

#[test]
fn options_debug_redacts_credentials() {
    let o = MarathonOptions {
        basic_auth: Some(("ops".into(), "s3cret".into())),
        token: Some("t0k".into()),
        ..MarathonOptions::default()
    };
    let d = format!("{o:?}");
    assert!(
        d.contains("ops") && !d.contains("s3cret") && !d.contains("t0k"),
        "{d}"
    );
    let c = devstack::chronos::ChronosOptions {
        basic_auth: Some(("u".into(), "pw-secret".into())),
        ..Default::default()
    };
    assert!(!format!("{c:?}").contains("pw-secret"));
}
