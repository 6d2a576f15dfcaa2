//! `--follow` (issue 14): the built binary as a long-lived registrar on the Marathon double's
//! event stream, with no Consul watch involved: scale-downs deregistered within 2 s, leader
//! changes and stalled streams reconnected and resynced, tasks that died while it was
//! disconnected repaired by the resync, SIGTERM ending it with exit 0.

mod common;

use std::time::{Duration, Instant};

use common::*;
use devstack::daemon::Daemon;
use devstack::marathon::{Leader, Marathon, MarathonOptions};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(15);

/// Doubles only: these tests need the Marathon double's controls (leader switch, silence),
/// and short session TTLs for `--lock` (Consul's session_ttl_min is 10s).
fn stack(heartbeat: Duration) -> Stack {
    Stack::doubles(
        MarathonOptions {
            heartbeat,
            ..Default::default()
        },
        devstack::consul::ConsulOptions {
            session_ttl_min: Duration::from_millis(500),
            ..Default::default()
        },
    )
}

/// A running follower (killed on drop if a test fails before stopping it).
struct Follower(Daemon);

impl Follower {
    fn spawn(s: &Stack, marathon_urls: &str, args: &[&str]) -> Follower {
        let mut cmd = s.cmd();
        cmd.env("MARATHON_URL", marathon_urls)
            .env("RUST_LOG", "info")
            .args(["--follow", "--output", "json", "--timeout", "10s"])
            .args(args);
        Follower(Daemon::spawn(&mut cmd).unwrap())
    }

    /// SIGTERM (as `systemctl stop`), then the exit code within a deadline.
    fn terminate(&mut self) -> i32 {
        let code = self.0.terminate(LIMIT);
        let code = code.unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
        code.unwrap_or(-1)
    }
}

impl std::ops::Deref for Follower {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.0
    }
}

impl std::ops::DerefMut for Follower {
    fn deref_mut(&mut self) -> &mut Daemon {
        &mut self.0
    }
}

fn converged(s: &Stack, apps: &[&str]) -> bool {
    let want = s.expected_ids(apps);
    !want.is_empty() && s.registered_ids() == want
}

fn wait_for(f: &Follower, limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < end,
            "{what}: not reached within {limit:?}\nfollower log:\n{}",
            f.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn scale_to_zero_through_the_api_is_deregistered_within_two_seconds() {
    let s = stack(Duration::from_secs(10));
    s.create_apps(vec![
        web_app("/fw", "true", 2, 1),
        web_app("/keep", "true", 2, 1),
    ]);
    let f = Follower::spawn(&s, &s.marathon_url, &["--resync-interval", "1h"]);
    wait_for(&f, LIMIT, "start sync", || converged(&s, &["/fw", "/keep"]));
    let keep = s.expected_ids(&["/keep"]);

    // An operator scales /fw to 0 (the Marathon UI does this PUT); no Consul watch runs.
    let t = Instant::now();
    s.update_app("/fw", json!({"instances": 0}));
    wait_for(&f, Duration::from_secs(2), "scale-down reflected", || {
        s.registered_ids() == keep
    });
    eprintln!("scale-down reflected in Consul after {:?}", t.elapsed());
    // One line per change (logged right after the write: poll), one per sync; none for the
    // unchanged tasks.
    wait_for(&f, LIMIT, "a line per deregistration", || {
        f.lines_with("] deregister marathon:fw.") == 2
    });
    let log = f.log();
    assert_eq!(f.lines_with("full sync ("), 1, "{log}");
    assert!(!log.contains("unchanged marathon:"), "{log}");
}

#[test]
fn the_stream_is_authenticated_like_every_request() {
    let s = Stack::doubles(
        MarathonOptions {
            basic_auth: Some(("shipwatch".into(), "s3cret-pw".into())),
            ..Default::default()
        },
        Default::default(),
    );
    let m = s.marathon.as_ref().unwrap();
    // Seeded from Rust: the double's API needs the credentials too.
    m.seed_apps(vec![web_app("/au", "true", 2, 1)]);
    let f = Follower(
        Daemon::spawn(
            s.cmd()
                .env("MARATHON_USERNAME", "shipwatch")
                .env("MARATHON_PASSWORD", "s3cret-pw")
                .env("RUST_LOG", "info")
                .args(["--follow", "--resync-interval", "1h"]),
        )
        .unwrap(),
    );
    let registered = |n: usize| {
        let services = s.consul.as_ref().unwrap().catalog_services();
        services
            .iter()
            .filter(|x| x.meta.get("marathon-app-id") == Some(&json!("/au")))
            .count()
            == n
    };
    wait_for(&f, LIMIT, "start sync", || registered(2));
    assert_eq!(f.lines_with("event stream connected"), 1, "{}", f.log());
    let dead = m.app("/au").unwrap()["tasks"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    m.kill_task(&dead, "TASK_KILLED");
    // The death arrives on the (authenticated) stream: deregistered, the replacement registered.
    wait_for(&f, Duration::from_secs(2), "event applied", || {
        f.lines_with(&format!("] deregister marathon:{dead}")) == 1
    });
    assert!(!f.log().contains("s3cret-pw"), "{}", f.log());
}

#[test]
fn a_new_healthy_task_is_registered_from_its_event() {
    let s = stack(Duration::from_secs(10));
    s.create_apps(vec![web_app("/up", "true", 1, 1)]);
    let f = Follower::spawn(&s, &s.marathon_url, &["--resync-interval", "1h"]);
    wait_for(&f, LIMIT, "start sync", || converged(&s, &["/up"]));
    s.update_app("/up", json!({"instances": 3}));
    wait_for(&f, Duration::from_secs(2), "scale-up reflected", || {
        converged(&s, &["/up"]) && s.registered_ids().len() == 3
    });
    assert_eq!(f.lines_with("full sync ("), 1, "{}", f.log());
}

#[test]
fn leader_change_reconnects_through_the_ha_set_and_resyncs() {
    let s = stack(Duration::from_millis(200));
    let m1 = s.marathon.as_ref().unwrap();
    // A standby listed first: it proxies the API and answers /v2/events with a 302 to the
    // leader (Marathon 1.7+, reference §1.2).
    let m2 = Marathon::start(MarathonOptions {
        proxy_to: Some(m1.url()),
        ..Default::default()
    })
    .unwrap();
    s.create_apps(vec![web_app("/lc", "true", 2, 1)]);
    let urls = format!("{},{}", m2.url(), m1.url());
    let f = Follower::spawn(&s, &urls, &["--resync-interval", "1h"]);
    wait_for(&f, LIMIT, "start sync", || converged(&s, &["/lc"]));
    assert_eq!(f.lines_with("event stream connected"), 1, "{}", f.log());

    // An election: the leader steps down (its streams close), then leads again.
    m1.set_leader(Leader::None);
    wait_for(&f, LIMIT, "stream lost", || {
        f.lines_with("event stream lost") >= 1
    });
    m1.set_leader(Leader::Me);
    wait_for(&f, LIMIT, "reconnected and resynced", || {
        f.lines_with("event stream connected") >= 2 && f.lines_with("full sync (") >= 2
    });
    assert!(converged(&s, &["/lc"]), "{}", f.log());
    // Still following: a death after the reconnection arrives as an event.
    let dead = s.running_tasks("/lc")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    m1.kill_task(&dead, "TASK_FAILED");
    wait_for(&f, Duration::from_secs(2), "death after reconnect", || {
        converged(&s, &["/lc"]) && !s.registered_ids().iter().any(|id| id.contains(&dead))
    });
}

#[test]
fn task_killed_while_disconnected_is_deregistered_by_the_resync_after_reconnect() {
    let s = stack(Duration::from_millis(200));
    let m = s.double("disconnected").unwrap();
    s.create_apps(vec![web_app("/dc", "true", 2, 1)]);
    let f = Follower::spawn(&s, &s.marathon_url, &["--resync-interval", "1h"]);
    wait_for(&f, LIMIT, "start sync", || converged(&s, &["/dc"]));

    m.set_leader(Leader::None);
    wait_for(&f, LIMIT, "stream lost", || {
        f.lines_with("event stream lost") >= 1
    });
    // The task dies while nobody listens: its event is lost for good.
    let dead = s.running_tasks_direct(m, "/dc")[0].clone();
    m.kill_task(&dead, "TASK_LOST");
    assert!(s.registered_ids().iter().any(|id| id.contains(&dead)));
    m.set_leader(Leader::Me);
    wait_for(&f, LIMIT, "resync after reconnect", || {
        converged(&s, &["/dc"]) && !s.registered_ids().iter().any(|id| id.contains(&dead))
    });
    assert!(f.lines_with("event stream connected") >= 2, "{}", f.log());
}

#[test]
fn a_consul_before_1_14_is_asked_once_for_the_life_of_the_follower() {
    // 64 operations per transaction, as a Consul before 1.14 (issue 13 item 4).
    let s = Stack::doubles(
        MarathonOptions {
            heartbeat: Duration::from_millis(200),
            ..Default::default()
        },
        devstack::consul::ConsulOptions {
            max_txn_ops: 64,
            ..Default::default()
        },
    );
    let m = s.double("limit").unwrap();
    let c = s.consul.as_ref().unwrap();
    let ids: Vec<String> = (0..40).map(|i| format!("/tl/a{i:02}")).collect();
    let apps: Vec<&str> = ids.iter().map(String::as_str).collect();
    // 40 registrations: 80 operations and the nodes', more than 64.
    s.create_apps(apps.iter().map(|id| web_app(id, "true", 1, 1)).collect());
    let f = Follower::spawn(&s, &s.marathon_url, &["--resync-interval", "1h"]);
    wait_for(&f, LIMIT, "start sync", || converged(&s, &apps));
    assert_eq!(c.txn_too_many_ops_count(), 1, "{}", f.log());

    // The catalog is emptied behind its back (a restore), then a reconnection resyncs: every
    // registration is written again, in transactions of 64 from the start.
    m.set_leader(Leader::None);
    wait_for(&f, LIMIT, "stream lost", || {
        f.lines_with("event stream lost") >= 1
    });
    let consul = client("consul", &s.consul_url);
    for node in s.node_names() {
        if node.starts_with("marathon-") {
            let body = json!({ "Node": node });
            let r = consul
                .send(runtime::http::HttpRequest::new("PUT", "/v1/catalog/deregister").json(&body))
                .unwrap();
            assert!(r.is_success(), "{}", r.text());
        }
    }
    assert!(s.registered_ids().is_empty());
    m.set_leader(Leader::Me);
    wait_for(&f, LIMIT, "resync after reconnect", || {
        f.lines_with("full sync (") >= 2 && converged(&s, &apps)
    });
    assert_eq!(c.txn_too_many_ops_count(), 1, "{}", f.log());
    assert_eq!(
        f.lines_with("Consul takes at most 64 operations per transaction"),
        1,
        "{}",
        f.log()
    );
}

#[test]
fn stalled_stream_is_detected_reconnected_and_resynced() {
    // Heartbeats every 200 ms keep a healthy stream well inside --stream-timeout 1s.
    let s = stack(Duration::from_millis(200));
    let m = s.double("stall").unwrap();
    s.create_apps(vec![web_app("/st", "true", 2, 1)]);
    let f = Follower::spawn(
        &s,
        &s.marathon_url,
        &["--resync-interval", "1h", "--stream-timeout", "1s"],
    );
    wait_for(&f, LIMIT, "start sync", || converged(&s, &["/st"]));
    // The stream goes silent (no events, no heartbeat) and a task dies unseen.
    m.set_streams_silent(true);
    let dead = s.running_tasks_direct(m, "/st")[0].clone();
    m.kill_task(&dead, "TASK_KILLED");
    wait_for(&f, LIMIT, "stall detected and resynced", || {
        f.lines_with("stalled: no byte") >= 1
            && !s.registered_ids().iter().any(|id| id.contains(&dead))
    });
    m.set_streams_silent(false);
    wait_for(&f, LIMIT, "converged", || converged(&s, &["/st"]));
}

#[test]
fn a_failed_sync_is_retried_later_not_in_a_loop() {
    let s = stack(Duration::from_millis(200));
    s.create_apps(vec![web_app("/rt", "true", 1, 1)]);
    // Consul drops every connection: the start sync fails (after its bounded retries).
    s.consul.as_ref().unwrap().faults().set_refuse(true);
    let f = Follower::spawn(&s, &s.marathon_url, &["--resync-interval", "1h"]);
    wait_for(&f, LIMIT, "start sync failed", || {
        f.lines_with("full sync (start) failed") == 1
    });
    s.consul.as_ref().unwrap().faults().set_refuse(false);
    // Retried 10 s later: not at once in a loop, not at the next interval an hour away.
    wait_for(&f, Duration::from_secs(30), "retried", || {
        converged(&s, &["/rt"]) && f.lines_with("full sync (retry):") == 1
    });
    let log = f.log();
    assert_eq!(f.lines_with("failed:"), 1, "{log}");
    let at = |text: &str| {
        let line = log.lines().find(|l| l.contains(text)).unwrap();
        // "[2026-11-27T12:43:52.642Z ...": seconds of the day.
        let hms: Vec<f64> = line[12..24]
            .split(':')
            .map(|x| x.parse().unwrap())
            .collect();
        hms[0] * 3600.0 + hms[1] * 60.0 + hms[2]
    };
    let waited = at("full sync (retry):") - at("full sync (start) failed");
    assert!(
        (9.0..20.0).contains(&waited),
        "retried after {waited} s\n{log}"
    );
}

#[test]
fn sigterm_exits_zero() {
    let s = stack(Duration::from_secs(10));
    s.create_apps(vec![web_app("/sig", "true", 1, 1)]);
    let mut f = Follower::spawn(&s, &s.marathon_url, &["--resync-interval", "1h"]);
    wait_for(&f, LIMIT, "start sync", || converged(&s, &["/sig"]));
    let code = f.terminate();
    assert_eq!(code, 0, "{}", f.log());
    assert!(f.log().contains("stopping on a signal"), "{}", f.log());
}

const LOCK_KEY: &str = "shipwatch/locks/tasks2consul";
/// A follower with `--lock` and a 1 s session TTL (events only: no interval resync).
const LOCK_ARGS: [&str; 6] = [
    "--resync-interval",
    "1h",
    "--lock",
    LOCK_KEY,
    "--lock-ttl",
    "1s",
];

/// The session holding `LOCK_KEY`, if any.
fn lock_session(s: &Stack) -> Option<String> {
    let r = client("consul", &s.consul_url)
        .get(&format!("/v1/kv/{LOCK_KEY}"))
        .unwrap();
    if r.status == 404 {
        return None;
    }
    let v: serde_json::Value = r.json().unwrap();
    v[0]["Session"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Service writes in a follower's log (one info line per change).
fn writes(f: &Follower) -> usize {
    f.lines_with("] register marathon:") + f.lines_with("] deregister marathon:")
}

#[test]
fn two_followers_with_lock_never_both_write_and_the_standby_takes_over() {
    let s = stack(Duration::from_millis(200));
    let m = s.double("lock").unwrap();
    s.create_apps(vec![web_app("/lk", "true", 2, 1)]);
    let args = LOCK_ARGS;
    let mut a = Follower::spawn(&s, &s.marathon_url, &args);
    wait_for(&a, LIMIT, "a holds the lock and synced", || {
        a.lines_with("acquired lock") == 1 && converged(&s, &["/lk"])
    });
    let b = Follower::spawn(&s, &s.marathon_url, &args);
    wait_for(&b, LIMIT, "b connected as a standby", || {
        b.lines_with("event stream connected") == 1
    });
    // A death while both follow: only the holder writes.
    let t0 = s.running_tasks_direct(m, "/lk")[0].clone();
    m.kill_task(&t0, "TASK_FAILED");
    wait_for(&a, LIMIT, "death applied", || {
        converged(&s, &["/lk"]) && !s.registered_ids().iter().any(|id| id.contains(&t0))
    });
    assert_eq!(writes(&b), 0, "the standby wrote:\n{}", b.log());
    assert_eq!(b.lines_with("full sync ("), 0, "{}", b.log());
    assert_eq!(b.lines_with("acquired lock"), 0, "{}", b.log());

    // The holder crashes (no release): its session expires (2 x TTL in Consul), the lock-delay
    // passes, the standby takes the lock, resyncs and repairs what happened meanwhile.
    let crashed = Instant::now();
    a.crash();
    let t1 = s.running_tasks_direct(m, "/lk")[0].clone();
    m.kill_task(&t1, "TASK_KILLED");
    wait_for(&b, LIMIT, "takeover", || {
        b.lines_with("acquired lock") == 1
            && converged(&s, &["/lk"])
            && !s.registered_ids().iter().any(|id| id.contains(&t1))
    });
    eprintln!(
        "standby took over and resynced {:?} after the holder crashed",
        crashed.elapsed()
    );
    assert!(
        b.lines_with("full sync (lock acquired)") == 1,
        "{}",
        b.log()
    );
}

#[test]
fn a_lost_lock_stops_the_writes_and_is_resynced_after_reacquiring() {
    let s = stack(Duration::from_millis(200));
    s.create_apps(vec![web_app("/ll", "true", 1, 1)]);
    let args = LOCK_ARGS;
    let f = Follower::spawn(&s, &s.marathon_url, &args);
    wait_for(&f, LIMIT, "holds the lock", || {
        converged(&s, &["/ll"]) && lock_session(&s).is_some()
    });
    // An operator (or Consul after a partition) invalidates the session.
    let session = lock_session(&s).unwrap();
    let r = client("consul", &s.consul_url)
        .send(runtime::http::HttpRequest::new(
            "PUT",
            &format!("/v1/session/destroy/{session}"),
        ))
        .unwrap();
    assert!(r.is_success());
    wait_for(&f, LIMIT, "lost, reacquired, resynced", || {
        f.lines_with("lock lost: writing nothing") == 1
            && f.lines_with("full sync (lock acquired)") == 2
    });
    // The loss stopped the writes; the second holding started with a full sync.
    let log = f.log();
    let lost = log.find("lock lost: writing nothing").unwrap();
    let again = log.rfind("lock acquired: resyncing before acting").unwrap();
    let resync = log.rfind("full sync (lock acquired)").unwrap();
    assert!(lost < again && again < resync, "{log}");
}

#[test]
fn sigterm_with_lock_exits_zero_and_releases_the_lock() {
    let s = stack(Duration::from_secs(10));
    s.create_apps(vec![web_app("/rl", "true", 1, 1)]);
    let args = LOCK_ARGS;
    let mut f = Follower::spawn(&s, &s.marathon_url, &args);
    wait_for(&f, LIMIT, "holds the lock", || {
        converged(&s, &["/rl"]) && lock_session(&s).is_some()
    });
    assert_eq!(f.terminate(), 0, "{}", f.log());
    // Released at once (not left to expire): the key has no session.
    assert_eq!(lock_session(&s), None, "{}", f.log());
    assert!(f.log().contains("released lock"), "{}", f.log());
}

/// GET on the follower's --listen address: (status, body).
fn get(base: &str, path: &str) -> (u16, String) {
    let mut cfg = runtime::http::HttpConfig::new("tasks2consul");
    cfg.backoff.attempts = 1;
    cfg.retry_statuses.clear(); // a 503 is an answer here
    let c = runtime::http::HttpClient::new(&[base.to_string()], cfg).unwrap();
    let r = c.get(path).unwrap();
    (r.status, r.text())
}

/// The value of one Prometheus sample.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// The `--listen` address the follower logged (`--listen 127.0.0.1:0` picks a port).
fn listen_base(f: &Follower) -> String {
    wait_for(f, LIMIT, "listening", || {
        f.lines_with("serving /health and /metrics on") == 1
    });
    f.log()
        .lines()
        .find_map(|l| l.split("serving /health and /metrics on ").nth(1))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn every_resync_keeps_the_guards() {
    let s = stack(Duration::from_millis(200));
    let m = s.double("guards").unwrap();
    s.create_apps(vec![web_app("/gd", "true", 3, 1)]);
    let f = Follower::spawn(
        &s,
        &s.marathon_url,
        &["--resync-interval", "1h", "--listen", "127.0.0.1:0"],
    );
    let base = listen_base(&f);
    wait_for(&f, LIMIT, "start sync", || converged(&s, &["/gd"]));
    let before = s.registered_ids();
    // A leader election; the new leader's first list is empty (issue 11: a Marathon restarting).
    m.set_leader(Leader::None);
    wait_for(&f, LIMIT, "stream lost", || {
        f.lines_with("event stream lost") == 1
    });
    m.faults().fail_next_on(
        "/v2/apps",
        1,
        devstack::http::Fault::Answer {
            status: 200,
            content_type: "application/json".into(),
            body: r#"{"apps": []}"#.into(),
        },
    );
    m.set_leader(Leader::Me);
    wait_for(&f, LIMIT, "resync after the reconnection", || {
        f.lines_with("full sync (stream reconnected)") == 1
    });
    // Nothing deregistered, each held back and counted, one readable warning.
    assert_eq!(s.registered_ids(), before, "{}", f.log());
    assert!(f.log().contains("mass-deregistration guard"), "{}", f.log());
    let (_, text) = get(&base, "/metrics");
    assert_eq!(
        sample(&text, "tasks2consul_held_back_deregistrations_total"),
        3.0,
        "{text}"
    );
    assert_eq!(sample(&text, "tasks2consul_deregistrations_total"), 0.0);
}

#[test]
fn health_and_metrics_answer_as_documented() {
    let s = stack(Duration::from_millis(200));
    let m = s.double("listen").unwrap();
    s.create_apps(vec![web_app("/hm", "true", 2, 1)]);
    let f = Follower::spawn(
        &s,
        &s.marathon_url,
        &["--resync-interval", "1h", "--listen", "127.0.0.1:0"],
    );
    let base = listen_base(&f);
    wait_for(&f, LIMIT, "healthy", || {
        converged(&s, &["/hm"]) && get(&base, "/health").0 == 200
    });
    let dead = s.running_tasks_direct(m, "/hm")[0].clone();
    m.kill_task(&dead, "TASK_FAILED");
    wait_for(&f, LIMIT, "death applied", || {
        converged(&s, &["/hm"]) && !s.registered_ids().iter().any(|id| id.contains(&dead))
    });
    let (status, text) = get(&base, "/metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains("# TYPE tasks2consul_events_applied_total counter"),
        "{text}"
    );
    assert_eq!(sample(&text, "tasks2consul_syncs_total"), 1.0, "{text}");
    // 2 at start + the replacement; the dead task's deregistration.
    assert_eq!(
        sample(&text, "tasks2consul_registrations_total"),
        3.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "tasks2consul_deregistrations_total"),
        1.0,
        "{text}"
    );
    assert!(
        sample(&text, "tasks2consul_events_applied_total") >= 2.0,
        "{text}"
    );
    assert_eq!(sample(&text, "tasks2consul_stream_connected"), 1.0);
    assert_eq!(sample(&text, "tasks2consul_stream_reconnects_total"), 0.0);
    assert_eq!(
        sample(&text, "tasks2consul_held_back_deregistrations_total"),
        0.0
    );
    assert_eq!(sample(&text, "tasks2consul_lock_held"), 1.0);
    assert!(sample(&text, "tasks2consul_last_sync_timestamp_seconds") > 1.7e9);

    // Disconnected (no leader): 503 with the reason; back to 200 after the reconnection.
    m.set_leader(Leader::None);
    wait_for(&f, LIMIT, "unhealthy", || get(&base, "/health").0 == 503);
    assert!(get(&base, "/health").1.contains("not connected"));
    m.set_leader(Leader::Me);
    wait_for(&f, LIMIT, "healthy again, resynced", || {
        get(&base, "/health").0 == 200
            && sample(&get(&base, "/metrics").1, "tasks2consul_syncs_total") == 2.0
    });
    let (_, text) = get(&base, "/metrics");
    assert_eq!(
        sample(&text, "tasks2consul_stream_reconnects_total"),
        1.0,
        "{text}"
    );
    assert_eq!(sample(&text, "tasks2consul_syncs_total"), 2.0, "{text}");
    assert_eq!(get(&base, "/nope").0, 404);
}

trait Direct {
    fn running_tasks_direct(&self, m: &Marathon, app: &str) -> Vec<String>;
}

impl Direct for Stack {
    /// Task ids read from the double itself (works while it has no leader).
    fn running_tasks_direct(&self, m: &Marathon, app: &str) -> Vec<String> {
        m.app(app)
            .and_then(|a| a["tasks"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    }
}
