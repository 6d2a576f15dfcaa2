//! HA-safe handlers (`--lock KEY`): when several agents run the same watch, exactly one run acts,
//! the others exit 0 saying who holds the lock, nothing is lost, and a holder that was killed
//! blocks the next run no longer than its session TTL (Consul reaps at up to 2×TTL, session.mdx).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use devstack::consul::{Consul, ConsulOptions};
use devstack::marathon::{Marathon, MarathonOptions};
use e2e::lock::{finish, payload};
use serde_json::Value;

fn bin(name: &str) -> PathBuf {
    devstack::bins::handler_dir().unwrap().join(name)
}

fn spawn_kv2jobs(consul: &Consul, marathon: &Marathon, extra: &[&str], stdin: &[u8]) -> Child {
    e2e::lock::spawn_kv2jobs(&consul.url(), &marathon.url(), extra, stdin)
}

fn acted(summary: &Value) -> bool {
    summary["actions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["kind"] == "create-app" && a["status"] == "applied")
}

fn waited_for_lock(summary: &Value) -> bool {
    summary["actions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["kind"] == "lock" && a["status"] == "skipped")
}

fn concurrent_runs_exactly_one_acts(n: usize) {
    let consul = Consul::start(ConsulOptions::default()).unwrap();
    let marathon = Marathon::start(MarathonOptions::default()).unwrap();
    // A slow Marathon keeps the holder busy while the others ask for the lock.
    marathon.faults().set_latency(Duration::from_millis(400));
    let children: Vec<Child> = (0..n)
        .map(|_| spawn_kv2jobs(&consul, &marathon, &[], &payload("/ha/app")))
        .collect();
    let results: Vec<_> = children.into_iter().map(finish).collect();
    for (code, _, stderr) in &results {
        assert_eq!(*code, 0, "{stderr}");
    }
    let actors = results.iter().filter(|(_, s, _)| acted(s)).count();
    let waiters = results
        .iter()
        .filter(|(_, s, _)| waited_for_lock(s))
        .count();
    assert_eq!((actors, waiters), (1, n - 1), "{results:#?}");
    // Nothing lost: the app is there, written once.
    assert!(marathon.app("/ha/app").is_some());
    assert_eq!(marathon.write_count(), 1);
    // The lock was released: a later run takes it at once and finds nothing to do.
    marathon.faults().set_latency(Duration::ZERO);
    let (code, s, stderr) = finish(spawn_kv2jobs(&consul, &marathon, &[], &payload("/ha/app")));
    assert_eq!(code, 0, "{stderr}");
    assert!(!waited_for_lock(&s), "{s}");
    assert_eq!(marathon.write_count(), 1);
}

#[test]
fn two_concurrent_runs_exactly_one_acts() {
    concurrent_runs_exactly_one_acts(2);
}

#[test]
fn three_concurrent_runs_exactly_one_acts() {
    concurrent_runs_exactly_one_acts(3);
}

#[test]
fn a_killed_holder_blocks_the_next_run_no_longer_than_the_ttl() {
    let consul = Consul::start(ConsulOptions {
        // The double's minimum session TTL, scaled down so the test takes seconds (a real Consul's
        // minimum is 10s).
        session_ttl_min: Duration::from_millis(100),
        ..ConsulOptions::default()
    })
    .unwrap();
    let marathon = Marathon::start(MarathonOptions::default()).unwrap();
    marathon.faults().set_latency(Duration::from_secs(30));
    let ttl = ["--lock-ttl", "1s"];
    let mut holder = spawn_kv2jobs(&consul, &marathon, &ttl, &payload("/ha/killed"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while consul
        .kv_get("shipwatch/locks/kv2jobs")
        .is_none_or(|kv| kv.session.is_empty())
    {
        assert!(Instant::now() < deadline, "the holder never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    holder.kill().unwrap();
    let _ = holder.wait();
    let killed_at = Instant::now();
    marathon.faults().set_latency(Duration::ZERO);
    loop {
        let (code, s, stderr) = finish(spawn_kv2jobs(
            &consul,
            &marathon,
            &ttl,
            &payload("/ha/killed"),
        ));
        assert_eq!(code, 0, "{stderr}");
        if acted(&s) {
            break;
        }
        assert!(waited_for_lock(&s), "{s}");
        // 2×TTL for the reaper plus the 1s lock-delay, plus slack for a loaded machine.
        assert!(
            killed_at.elapsed() < Duration::from_secs(8),
            "still blocked {:?} after the holder died",
            killed_at.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(marathon.app("/ha/killed").is_some());
}

/// An ACL denial when taking `--lock` is a configuration problem: exit 64 with the message, for
/// every handler (issue 12 item 6: it exited 75, "temporary", and looked like a retry would help).
/// Consul's own denial is 403 (default-deny ACLs, no token); a proxy in front of Consul that wants
/// credentials answers 401.
#[test]
fn an_acl_denial_on_lock_exits_64_for_every_handler() {
    use devstack::http::Fault;
    let consul = Consul::start(ConsulOptions {
        acl_master_token: Some("root".into()),
        ..ConsulOptions::default()
    })
    .unwrap();
    let marathon = Marathon::start(MarathonOptions::default()).unwrap();
    let repo = tempfile::tempdir().unwrap();
    let handlers: [(&str, Vec<String>, &[u8]); 3] = [
        (
            "tag2git",
            vec![
                "--repo".into(),
                repo.path().join("jobs.git").display().to_string(),
            ],
            br#"[{"Key":"images/nginx","ModifyIndex":1,"Value":"MS4yNw=="}]"#,
        ),
        (
            "kv2jobs",
            vec!["--prefix".into(), "jobs/main/".into()],
            &payload("/acl/app"),
        ),
        ("tasks2consul", vec![], b""),
    ];
    for (token, fault) in [(None, None), (Some("root"), Some(401))] {
        consul.faults().clear();
        if let Some(status) = fault {
            consul.faults().fail_always_on(
                "/v1/session/create",
                Fault::Status {
                    status,
                    body: "Unauthorized".into(),
                },
            );
        }
        for (handler, args, stdin) in &handlers {
            let mut cmd = Command::new(bin(handler));
            cmd.args(args)
                .args(["--output", "json", "--timeout", "30s"])
                .args(["--lock", &format!("shipwatch/locks/{handler}")])
                .env_remove("CONSUL_HTTP_TOKEN")
                .env_remove("CONSUL_HTTP_TOKEN_FILE")
                .env_remove("CHRONOS_URL")
                .env("CONSUL_HTTP_ADDR", consul.url())
                .env("MARATHON_URL", marathon.url())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if let Some(t) = token {
                cmd.env("CONSUL_HTTP_TOKEN", t);
            }
            let mut child = cmd.spawn().unwrap();
            child.stdin.take().unwrap().write_all(stdin).unwrap();
            let (code, summary, stderr) = finish(child);
            let what = format!("{handler} with fault {fault:?}");
            assert_eq!(code, 64, "{what}: {summary}\n{stderr}");
            let error = summary["errors"][0].as_str().unwrap_or_default();
            assert!(
                error.starts_with("--lock: consul denied ") && error.contains("CONSUL_HTTP_TOKEN"),
                "{what}: {error}"
            );
            assert!(!acted(&summary), "{what}: {summary}");
        }
    }
    assert!(
        marathon.apps().is_empty(),
        "nothing deployed without the lock"
    );
}
