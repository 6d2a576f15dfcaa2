//! Marathon double: the `/v2/events` SSE stream (reference §2.1, fixtures/marathon/events.sse).

#[path = "marathon_common.rs"]
mod common;

use common::*;
use devstack::marathon::{Marathon, MarathonOptions};
use serde_json::json;
use std::time::Duration;

#[test]
fn accept_must_be_exactly_text_event_stream() {
    let m = start();
    let mut s = Stream::open(m.addr(), "/v2/events", "text/event-stream, */*");
    s.wait_closed();
    assert!(s.buf.starts_with("HTTP/1.1 405"), "{}", s.buf);
    let r = call("GET", &format!("{}/v2/events", m.url()), None);
    assert_eq!(r.status, 405);
}

#[test]
fn stream_has_jetty_headers_crlf_frames_and_attached_first() {
    let m = start();
    let mut s = Stream::open(m.addr(), "/v2/events", "text/event-stream");
    s.wait_for("event_stream_attached");
    let (head, body) = s.buf.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/event-stream;charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("\r\nConnection: close"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );
    assert!(
        body.starts_with("event: event_stream_attached\r\ndata: {"),
        "{body}"
    );
    // Creating an app shows its task starting, framed like the fixture.
    call(
        "POST",
        &format!("{}/v2/apps", m.url()),
        Some(&json!({"id": "e", "cmd": "x"})),
    );
    s.wait_for("deployment_success");
    let ups = s.events("status_update_event");
    assert_eq!(ups.len(), 1, "{}", s.buf);
    let ev = &ups[0];
    assert_eq!(ev["taskStatus"], "TASK_RUNNING");
    assert_eq!(ev["appId"], "/e");
    assert_eq!(ev["eventType"], "status_update_event");
    for k in [
        "slaveId",
        "taskId",
        "message",
        "host",
        "ipAddresses",
        "ports",
        "version",
        "timestamp",
    ] {
        assert!(ev.get(k).is_some(), "{k} in {ev}");
    }
    assert_eq!(s.events("api_post_event")[0]["appDefinition"]["id"], "/e");
    assert_eq!(s.events("deployment_info").len(), 1);
    // Deleting kills the task.
    call("DELETE", &format!("{}/v2/apps/e", m.url()), None);
    s.wait_for("TASK_KILLED");
    s.wait_for("app_terminated_event");
}

#[test]
fn heartbeat_is_a_bare_crlf_at_the_configured_interval() {
    let m = Marathon::start(MarathonOptions {
        heartbeat: Duration::from_millis(20),
        ..MarathonOptions::default()
    })
    .unwrap();
    let mut s = Stream::open(m.addr(), "/v2/events", "text/event-stream");
    s.wait_for("event_stream_attached");
    // The attached frame ends with "\r\n\r\n"; heartbeats add bare "\r\n"s after it.
    s.wait_for("}\r\n\r\n\r\n\r\n");
}

#[test]
fn event_type_filter_only_delivers_the_requested_types() {
    let m = start();
    let mut s = Stream::open(
        m.addr(),
        "/v2/events?event_type=status_update_event&event_type=health_status_changed_event",
        "text/event-stream",
    );
    s.wait_for("\r\n\r\n");
    let app = json!({"id": "f", "cmd": "x", "healthChecks": [{"protocol": "HTTP"}]});
    call("POST", &format!("{}/v2/apps", m.url()), Some(&app));
    s.wait_for("health_status_changed_event");
    let task = m.app("/f").unwrap()["tasks"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    m.kill_task(&task, "TASK_FAILED");
    s.wait_for("TASK_FAILED");
    let health = s.events("health_status_changed_event");
    assert_eq!(health[0]["alive"], true);
    assert_eq!(
        health[0]["instanceId"].as_str().unwrap(),
        task.strip_suffix("._app.1").unwrap()
    );
    for other in [
        "event_stream_attached",
        "deployment_info",
        "api_post_event",
        "deployment_success",
    ] {
        assert!(!s.buf.contains(other), "{other} leaked: {}", s.buf);
    }
}

#[test]
fn slow_deployment_reports_running_tasks_without_any_request() {
    let m = Marathon::start(MarathonOptions {
        deploy_duration: Duration::from_millis(50),
        ..MarathonOptions::default()
    })
    .unwrap();
    let mut s = Stream::open(
        m.addr(),
        "/v2/events?event_type=status_update_event",
        "text/event-stream",
    );
    s.wait_for("\r\n\r\n");
    call(
        "POST",
        &format!("{}/v2/apps", m.url()),
        Some(&json!({"id": "g", "cmd": "x"})),
    );
    s.wait_for("TASK_RUNNING");
}

#[test]
fn stopping_the_server_ends_open_streams() {
    let m = start();
    let mut s = Stream::open(m.addr(), "/v2/events", "text/event-stream");
    s.wait_for("event_stream_attached");
    drop(m);
    s.wait_closed();
}

#[test]
fn losing_the_leadership_closes_open_streams() {
    // Marathon closes its event streams when it stops leading (d2iq-archive/marathon#1625), so
    // followers reconnect to the new leader.
    let m = start();
    let mut s = Stream::open(m.addr(), "/v2/events", "text/event-stream");
    s.wait_for("event_stream_attached");
    m.set_leader(devstack::marathon::Leader::None);
    s.wait_closed();
    // The same through the admin endpoint, as curl would switch it.
    m.set_leader(devstack::marathon::Leader::Me);
    let mut s = Stream::open(m.addr(), "/v2/events", "text/event-stream");
    s.wait_for("event_stream_attached");
    let r = call(
        "POST",
        &format!("{}{}", m.url(), devstack::marathon::LEADER_PATH),
        Some(&json!({"leader": "127.0.0.1:1"})),
    );
    assert_eq!(r.status, 200);
    s.wait_closed();
}

#[test]
fn scaling_through_the_api_reports_each_killed_task() {
    let m = start();
    call(
        "POST",
        &format!("{}/v2/apps", m.url()),
        Some(&json!({"id": "sc", "cmd": "x", "instances": 3})),
    );
    m.finish_deployments();
    let mut s = Stream::open(
        m.addr(),
        "/v2/events?event_type=status_update_event",
        "text/event-stream",
    );
    s.wait_for("\r\n\r\n");
    let r = call(
        "PUT",
        &format!("{}/v2/apps/sc?force=true", m.url()),
        Some(&json!({"instances": 1})),
    );
    assert_eq!(r.status, 200);
    m.finish_deployments();
    let killed = |s: &Stream| {
        s.events("status_update_event")
            .iter()
            .filter(|e| e["taskStatus"] == "TASK_KILLED" && e["appId"] == "/sc")
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while killed(&s) < 2 {
        assert!(std::time::Instant::now() < deadline, "{}", s.buf);
        s.read_some();
    }
}

#[test]
fn a_silent_stream_writes_nothing_not_even_heartbeats() {
    let m = Marathon::start(MarathonOptions {
        heartbeat: Duration::from_millis(10),
        ..MarathonOptions::default()
    })
    .unwrap();
    let mut s = Stream::open(m.addr(), "/v2/events", "text/event-stream");
    s.wait_for("event_stream_attached");
    m.set_streams_silent(true);
    // Let at most the frames already in flight arrive, then nothing more may come.
    s.read_some();
    let before = s.buf.len();
    call(
        "POST",
        &format!("{}/v2/apps", m.url()),
        Some(&json!({"id": "quiet", "cmd": "x"})),
    );
    m.finish_deployments();
    for _ in 0..5 {
        s.read_some();
    }
    assert!(
        !s.buf[before..].contains("event:"),
        "{:?}",
        &s.buf[before..]
    );
    m.set_streams_silent(false);
    let silent_len = s.buf.len();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.buf.len() == silent_len {
        assert!(
            std::time::Instant::now() < deadline,
            "no heartbeat after the silence"
        );
        s.read_some();
    }
}
