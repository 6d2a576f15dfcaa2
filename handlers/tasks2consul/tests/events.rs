//! `--events`: Marathon's event stream on stdin, live from the double and as replays with
//! dropped and reordered events that converge after a resync.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn spawn(s: &Stack, args: &[&str]) -> (Child, ChildStdin) {
    let mut child = s
        .cmd()
        .args(["--events", "--output", "json"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

fn finish(child: Child) -> (i32, Value, String) {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let v: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{stderr}"));
    (out.status.code().unwrap_or(-1), v, stderr)
}

fn frame(event_type: &str, data: Value) -> String {
    let mut data = data;
    data["eventType"] = json!(event_type);
    format!("event: {event_type}\r\ndata: {data}\r\n\r\n")
}

fn status(task: &Value, state: &str) -> String {
    frame(
        "status_update_event",
        json!({"slaveId": "S0", "taskId": task["id"], "taskStatus": state, "message": "",
               "appId": task["appId"], "host": task["host"], "ports": task["ports"],
               "version": task["version"], "timestamp": "2026-11-24T10:00:00.000Z"}),
    )
}

fn send(stdin: &mut ChildStdin, text: &str) {
    stdin.write_all(text.as_bytes()).unwrap();
    stdin.flush().unwrap();
}

const LIMIT: Duration = Duration::from_secs(15);

#[test]
fn replay_with_reordered_and_dropped_events_converges() {
    let s = Stack::start();
    let Some(m) = s.double("event replay") else {
        return;
    };
    s.create_apps(vec![web_app("/ev", "true", 2, 1)]);
    let (child, mut stdin) = spawn(&s, &["--resync-interval", "1h"]);
    send(
        &mut stdin,
        &frame(
            "event_stream_attached",
            json!({"remoteAddress": "127.0.0.1"}),
        ),
    );
    // The start resync registers what runs.
    poll(LIMIT, || s.registered_ids() == s.expected_ids(&["/ev"]));
    let tasks = s.running_tasks("/ev");
    let (t0, t1) = (tasks[0].clone(), tasks[1].clone());

    // Reordered: t0's death arrives before a stale TASK_RUNNING of t0; the replacement's
    // TASK_RUNNING arrives last. t0 must end deregistered, the replacement registered.
    m.kill_task(t0["id"].as_str().unwrap(), "TASK_KILLED");
    let replacement = s
        .running_tasks("/ev")
        .into_iter()
        .find(|t| t["id"] != t1["id"])
        .unwrap();
    send(&mut stdin, &status(&t0, "TASK_KILLED"));
    send(&mut stdin, &status(&t0, "TASK_RUNNING"));
    send(&mut stdin, &status(&replacement, "TASK_RUNNING"));
    poll(LIMIT, || s.registered_ids() == s.expected_ids(&["/ev"]));
    assert!(!s
        .registered_ids()
        .iter()
        .any(|id| id.contains(t0["id"].as_str().unwrap())));

    // Dropped: t1 dies and its events never arrive; Consul still has it...
    m.kill_task(t1["id"].as_str().unwrap(), "TASK_LOST");
    assert!(s
        .registered_ids()
        .iter()
        .any(|id| id.contains(t1["id"].as_str().unwrap())));
    // ...until the stream reconnects (a new event_stream_attached): resync, converged.
    send(
        &mut stdin,
        &frame(
            "event_stream_attached",
            json!({"remoteAddress": "127.0.0.1"}),
        ),
    );
    poll(LIMIT, || s.registered_ids() == s.expected_ids(&["/ev"]));

    // NDJSON works too, and health events update checks.
    let mut app = web_app("/hc", "true", 1, 1);
    app["healthChecks"] = json!([{"protocol": "TCP", "portIndex": 0}]);
    s.create_apps(vec![app]);
    let hc_task = s.running_tasks("/hc")[0].clone();
    m.set_task_alive(hc_task["id"].as_str().unwrap(), false);
    // The app is new to the loop: it reads it from Marathon, sees it failing, registers nothing.
    let mut ev = json!({"eventType": "status_update_event", "taskId": hc_task["id"],
        "taskStatus": "TASK_RUNNING", "appId": hc_task["appId"], "host": hc_task["host"],
        "ports": hc_task["ports"], "version": hc_task["version"]});
    send(&mut stdin, &format!("{ev}\n"));
    m.set_task_alive(hc_task["id"].as_str().unwrap(), true);
    ev = json!({"eventType": "health_status_changed_event", "appId": hc_task["appId"],
        "instanceId": hc_task["id"].as_str().unwrap().trim_end_matches("._app.1"),
        "version": hc_task["version"], "alive": true});
    send(&mut stdin, &format!("{ev}\n"));
    poll(LIMIT, || {
        s.registered_ids() == {
            let mut all = s.expected_ids(&["/ev", "/hc"]);
            all.sort();
            all
        }
    });
    drop(stdin);
    let (code, summary, err) = finish(child);
    assert_eq!(code, 0, "{summary}\n{err}");
    assert!(count(&summary, "applied") >= 5, "{summary}");
}

#[test]
fn resync_interval_repairs_missed_events() {
    let s = Stack::start();
    let Some(m) = s.double("resync interval") else {
        return;
    };
    s.create_apps(vec![web_app("/ri", "true", 2, 1)]);
    let (child, stdin) = spawn(&s, &["--resync-interval", "1s"]);
    poll(LIMIT, || s.registered_ids() == s.expected_ids(&["/ri"]));
    let victim = s.running_tasks("/ri")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    m.kill_task(&victim, "TASK_FAILED");
    poll(LIMIT, || s.registered_ids() == s.expected_ids(&["/ri"]));
    drop(stdin);
    let (code, summary, _) = finish(child);
    assert_eq!(code, 0, "{summary}");
}

/// `curl -N -H 'Accept: text/event-stream' $MARATHON_URL/v2/events | tasks2consul --events`
#[test]
fn live_stream_from_marathon() {
    let s = Stack::start();
    let Some(m) = s.double("live stream") else {
        return;
    };
    s.create_apps(vec![web_app("/live", "true", 2, 1)]);
    let (child, mut stdin) = spawn(&s, &["--resync-interval", "1h"]);
    poll(LIMIT, || s.registered_ids() == s.expected_ids(&["/live"]));
    // Pipe the SSE body of /v2/events into the handler.
    let mut conn = std::net::TcpStream::connect(m.addr()).unwrap();
    write!(
        conn,
        "GET /v2/events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        m.addr()
    )
    .unwrap();
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "stream closed in the headers");
        if line == "\r\n" {
            break;
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let pump = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut attached = false;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !attached && String::from_utf8_lossy(&buf[..n]).contains("event_stream_attached") {
                attached = true;
                let _ = tx.send(());
            }
            if stdin.write_all(&buf[..n]).is_err() {
                break;
            }
            let _ = stdin.flush();
        }
        // EOF of the stream closes the handler's stdin.
    });
    rx.recv_timeout(LIMIT).expect("no event_stream_attached");
    let victim = s.running_tasks("/live")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    m.kill_task(&victim, "TASK_KILLED");
    poll(LIMIT, || s.registered_ids() == s.expected_ids(&["/live"]));
    s.update_app("/live", json!({"instances": 3}));
    poll(LIMIT, || s.registered_ids() == s.expected_ids(&["/live"]));
    // Stopping Marathon ends the stream: the handler ends cleanly at EOF.
    let mut s = s;
    s.marathon = None;
    pump.join().unwrap();
    let (code, summary, err) = finish(child);
    // The final summary has no failures (Marathon is gone but nothing else was to be done).
    assert_eq!(code, 0, "{summary}\n{err}");
    assert_eq!(count(&summary, "failed"), 0);
}

#[test]
fn unreachable_marathon_at_start_exits_69() {
    let s = Stack::start();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let (child, stdin) = spawn(&s, &["--marathon", &dead_url, "--timeout", "5s"]);
    drop(stdin);
    let (code, summary, _) = finish(child);
    assert_eq!(code, 69, "{summary}");
    assert!(!summary["errors"].as_array().unwrap().is_empty());
}

/// Issue 11: during a leader failover Marathon answers 404 for apps that exist. An event that
/// re-reads one app and gets 404 confirms it with the full list before deregistering anything.
#[test]
fn a_404_for_an_app_during_failover_is_confirmed_before_deregistering() {
    let s = Stack::start();
    let Some(m) = s.double("events 404 failover") else {
        return;
    };
    s.create_apps(vec![
        web_app("/ok", "true", 1, 1),
        web_app("/fo", "true", 2, 1),
    ]);
    let expected = s.expected_ids(&["/ok", "/fo"]);
    let (child, mut stdin) = spawn(&s, &[]);
    poll(LIMIT, || s.registered_ids() == expected);
    let fo = s.id("/fo");
    m.faults().fail_next_on(
        &format!("/v2/apps{fo}"),
        1,
        devstack::http::Fault::Answer {
            status: 404,
            content_type: "application/json".into(),
            body: json!({"message": format!("App '{fo}' does not exist")}).to_string(),
        },
    );
    send(
        &mut stdin,
        &frame(
            "api_post_event",
            json!({"clientIp": "10.0.0.9", "uri": format!("/v2/apps{fo}"),
                                         "appDefinition": {"id": fo}}),
        ),
    );
    drop(stdin);
    let (code, summary, stderr) = finish(child);
    assert_eq!(code, 0, "{summary}\n{stderr}");
    assert!(
        targets(&summary, "deregister", "applied").is_empty(),
        "{summary}"
    );
    assert_eq!(s.registered_ids(), expected);
    assert!(
        stderr.contains("answered 404 but is in the full list"),
        "{stderr}"
    );
}
