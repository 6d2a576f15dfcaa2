//! Leader elections and failovers between two Marathon doubles, switchable over HTTP
//! (`/_devstack/marathon/leader`) and from Rust (issue 11): `GET /v2/leader` answers like
//! Marathon (200 `{"leader":"host:port"}`, 404 `{"message":"There is no leader"}`; reference
//! §1.1, leader.raml).

#[path = "marathon_common.rs"]
mod common;

use common::*;
use devstack::marathon::{Leader, Marathon, MarathonOptions};
use serde_json::json;

#[test]
fn leader_answers_like_marathon_and_switches_over_http() {
    let a = start();
    let b = start();
    let host_a = a.url().trim_start_matches("http://").to_string();
    let host_b = b.url().trim_start_matches("http://").to_string();
    let r = call("GET", &format!("{}/v2/leader", a.url()), None);
    assert_eq!((r.status, r.json()), (200, json!({"leader": host_a})));
    let admin = format!("{}/_devstack/marathon/leader", a.url());
    // An election: no leader.
    assert_eq!(
        call("POST", &admin, Some(&json!({"leader": null}))).status,
        200
    );
    let r = call("GET", &format!("{}/v2/leader", a.url()), None);
    assert_eq!(
        (r.status, r.json()),
        (404, json!({"message": "There is no leader"}))
    );
    assert_eq!(
        call("GET", &format!("{}/v2/apps", a.url()), None).status,
        503
    );
    // B won: A is a standby that proxies to B.
    call("POST", &admin, Some(&json!({"leader": host_b})));
    let r = call("GET", &format!("{}/v2/leader", a.url()), None);
    assert_eq!((r.status, r.json()), (200, json!({"leader": host_b})));
    assert_eq!(call("GET", &admin, None).json()["leader"], b.url());
    call("POST", &admin, Some(&json!({"leader": "self"})));
    assert_eq!(a.leader(), Leader::Me);
    assert_eq!(
        call("POST", &admin, Some(&json!({"leader": 3}))).status,
        400
    );
}

#[test]
fn a_switch_after_a_read_changes_the_leader_between_two_reads() {
    let a = start();
    let b = Marathon::start(MarathonOptions::default()).unwrap();
    let host_b = b.url().trim_start_matches("http://").to_string();
    a.set_leader_after("/v2/apps", Leader::Other(b.url()));
    let before = call("GET", &format!("{}/v2/leader", a.url()), None).json();
    assert_ne!(before["leader"], host_b);
    assert_eq!(
        call("GET", &format!("{}/v2/apps", a.url()), None).status,
        200
    );
    let after = call("GET", &format!("{}/v2/leader", a.url()), None).json();
    assert_eq!(after["leader"], host_b);
    assert_eq!(a.leader(), Leader::Other(b.url()));
}
