//! The fault admin endpoint every double serves (`/_devstack/faults`): scripted answers that tests
//! in any language and operators with `curl` use to reproduce a production fault (issue 11).

#[path = "marathon_common.rs"]
mod common;

use common::*;
use serde_json::json;

#[test]
fn a_scripted_answer_replaces_the_next_list_then_the_real_one_returns() {
    let m = start();
    let admin = format!("{}/_devstack/faults", m.url());
    let r = call(
        "POST",
        &admin,
        Some(&json!({"path": "/v2/apps", "count": 1, "status": 200, "body": "{}"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let faulty = call("GET", &format!("{}/v2/apps", m.url()), None);
    assert_eq!((faulty.status, faulty.body.as_str()), (200, "{}"));
    assert_eq!(faulty.header("Content-Type"), Some("application/json"));
    let real = call("GET", &format!("{}/v2/apps", m.url()), None);
    assert_eq!(real.json()["apps"], json!([]));
}

#[test]
fn a_standing_fault_lasts_until_cleared_and_only_on_its_path() {
    let m = start();
    let admin = format!("{}/_devstack/faults", m.url());
    let html = "<html><body>502 Bad Gateway</body></html>";
    call(
        "POST",
        &admin,
        Some(
            &json!({"path": "/v2/apps", "count": "always", "status": 200,
                     "content_type": "text/html", "body": html}),
        ),
    );
    for _ in 0..3 {
        let r = call("GET", &format!("{}/v2/apps", m.url()), None);
        assert_eq!(r.body, html);
        assert_eq!(r.header("Content-Type"), Some("text/html"));
    }
    assert_eq!(
        call("GET", &format!("{}/v2/info", m.url()), None).status,
        200
    );
    assert_eq!(call("DELETE", &admin, None).status, 200);
    let r = call("GET", &format!("{}/v2/apps", m.url()), None);
    assert_eq!(r.json()["apps"], json!([]));
}

#[test]
fn malformed_fault_specs_are_refused() {
    let m = start();
    let admin = format!("{}/_devstack/faults", m.url());
    assert_eq!(call("POST", &admin, Some(&json!([1]))).status, 400);
    assert_eq!(
        call("POST", &admin, Some(&json!({"path": "/x"}))).status,
        400
    );
    assert_eq!(
        call(
            "POST",
            &admin,
            Some(&json!({"count": "always", "status": 500}))
        )
        .status,
        400
    );
    assert_eq!(
        call("GET", &format!("{}/v2/apps", m.url()), None).status,
        200
    );
}
