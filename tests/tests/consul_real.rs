//! End to end on a real Consul agent (issue 15, item 4): the pipeline driven by the real agent's
//! watches (`consul agent -dev`, the pinned build of tools/consul), `--lock` contention through
//! the real session API, and tasks2consul's catalog mode against the real catalog.
//!
//! Needs `SHIPWATCH_CONSUL_BIN` (see tools/consul/build): skipped with a message when unset, a
//! failure when `CI=true`. Marathon and Chronos are the devstack doubles.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use devstack::agent::{consul_bin_for_tests, Agent, AgentOptions};
use devstack::marathon::{Marathon, MarathonOptions};
use devstack::pipeline::{wait_until, Pipeline, PipelineOptions, API_IMAGE_KEY};
use e2e::lock::{finish, payload};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(90);
const API: &str = "/sami/api";

fn bin(name: &str) -> PathBuf {
    devstack::bins::handler_dir().unwrap().join(name)
}

fn http(method: &str, url: &str, body: &[u8]) -> (u16, Value) {
    let r = devstack::http::call(method, url, &[], body, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, text) = (r.status, r.text());
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn real_pipeline(consul_bin: PathBuf) -> Pipeline {
    let mut opts = PipelineOptions::for_tests().unwrap();
    opts.stack.consul_bin = Some(consul_bin);
    let p = Pipeline::start(opts).unwrap();
    wait_until("initial deploy by the agent's kv2jobs watch", T, || {
        p.marathon_image(API).as_deref() == Some("registry.local:5000/sami/api:1.4.1")
            && p.marathon_image("/sami/web").is_some()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent_log(&p)));
    wait_until("initial registration in the real catalog", T, || {
        let mut tasks = p.marathon_tasks(API);
        tasks.sort();
        !tasks.is_empty() && p.consul_task_ids(API) == tasks
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent_log(&p)));
    p
}

fn agent_log(p: &Pipeline) -> String {
    p.stack
        .consul
        .agent()
        .map(|a| a.log_tail())
        .unwrap_or_default()
}

#[test]
fn the_demo_passes_on_the_real_agent() {
    let Some(consul_bin) = consul_bin_for_tests("consul_real::demo") else {
        return;
    };
    let opts = PipelineOptions::for_tests().unwrap();
    devstack::demo::run(devstack::demo::DemoOptions {
        bin_dir: opts.bin_dir,
        config_dir: opts.config_dir,
        keep: false,
        consul_bin: Some(consul_bin),
    })
    .unwrap();
}

/// CI → tag2git → git → git2consul → kv2jobs → Marathon → tasks2consul → the real catalog, every
/// handler run by the real agent's watches; a `consul reload` re-fires them and nothing changes.
#[test]
fn a_release_flows_through_the_real_agents_watches_and_a_reload_changes_nothing() {
    let Some(consul_bin) = consul_bin_for_tests("consul_real::pipeline") else {
        return;
    };
    let mut p = real_pipeline(consul_bin);
    let old_tasks = p.marathon_tasks(API);
    p.ci_publish(API_IMAGE_KEY, "1.4.2");
    let want = "registry.local:5000/sami/api:1.4.2";
    wait_until("tag2git commit", T, || {
        p.git_bare(&["show", "main:marathon/sami/api.json"])
            .is_ok_and(|f| f.contains(want))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent_log(&p)));
    p.git2consul().unwrap();
    wait_until("kv2jobs deploy", T, || {
        p.marathon_image(API).as_deref() == Some(want)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent_log(&p)));
    wait_until("tasks2consul re-registration", T, || {
        let mut tasks = p.marathon_tasks(API);
        tasks.sort();
        !tasks.is_empty() && tasks != old_tasks && p.consul_task_ids(API) == tasks
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent_log(&p)));
    // The agent gave every handler a non-zero CONSUL_INDEX and a payload ending in a newline,
    // and no handler failed.
    for h in devstack::bins::HANDLERS {
        let invs = p.invocations(h);
        assert!(!invs.is_empty(), "{h} never ran");
        for i in &invs {
            assert!(i.consul_index > 0, "{h}: CONSUL_INDEX {}", i.consul_index);
            assert!(i.stdin.ends_with(b"\n"), "{h}: stdin {:?}", i.stdin);
            assert_eq!(i.exit_code, Some(0), "{h}: {}\n{}", i.stdout, i.stderr);
        }
    }
    // A reload fires every watch again with the current data: the handlers are idempotent.
    let writes = p.stack.marathon.write_count();
    let head = p.git_bare(&["rev-parse", "main"]).unwrap();
    p.restart_agent().unwrap();
    wait_until("every watch re-fired by the reload", T, || {
        devstack::bins::HANDLERS
            .iter()
            .all(|h| !p.invocations(h).is_empty())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent_log(&p)));
    for h in devstack::bins::HANDLERS {
        let i = &p.invocations(h)[0];
        assert_eq!(i.exit_code, Some(0), "{h}: {}\n{}", i.stdout, i.stderr);
    }
    assert_eq!(p.stack.marathon.write_count(), writes);
    assert_eq!(p.git_bare(&["rev-parse", "main"]).unwrap(), head);
}

// ---------------------------------------------------------------------------------------------
// --lock through the real session API.

fn spawn_kv2jobs(consul: &str, marathon: &Marathon, extra: &[&str], stdin: &[u8]) -> Child {
    e2e::lock::spawn_kv2jobs(consul, &marathon.url(), extra, stdin)
}

fn has_action(summary: &Value, kind: &str, status: &str) -> bool {
    summary["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|a| a["kind"] == kind && a["status"] == status)
}

fn agent(bin: &Path, ttl_min: Duration) -> Agent {
    let mut opts = AgentOptions::new(bin);
    opts.session_ttl_min = ttl_min;
    Agent::start(opts).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn two_handlers_contend_for_the_lock_through_the_real_session_api() {
    let Some(consul_bin) = consul_bin_for_tests("consul_real::lock") else {
        return;
    };
    let consul = agent(&consul_bin, Duration::from_secs(10));
    let marathon = Marathon::start(MarathonOptions::default()).unwrap();
    // A slow Marathon keeps the holder busy while the other asks for the lock.
    marathon.faults().set_latency(Duration::from_millis(1500));
    let children: Vec<Child> = (0..2)
        .map(|_| spawn_kv2jobs(&consul.url(), &marathon, &[], &payload("/ha/app")))
        .collect();
    let results: Vec<_> = children.into_iter().map(finish).collect();
    for (code, _, stderr) in &results {
        assert_eq!(*code, 0, "{stderr}");
    }
    let actors = results
        .iter()
        .filter(|(_, s, _)| has_action(s, "create-app", "applied"))
        .count();
    let waiters = results
        .iter()
        .filter(|(_, s, _)| has_action(s, "lock", "skipped"))
        .count();
    assert_eq!((actors, waiters), (1, 1), "{results:#?}");
    assert_eq!(marathon.write_count(), 1);
    // Released and destroyed: the key holds no session and no session is left.
    let (_, kv) = http(
        "GET",
        &format!("{}/v1/kv/shipwatch/locks/kv2jobs", consul.url()),
        b"",
    );
    assert_eq!(kv[0]["Session"], Value::Null, "{kv}");
    let (_, sessions) = http("GET", &format!("{}/v1/session/list", consul.url()), b"");
    assert_eq!(sessions, json!([]));
}

/// A holder killed mid-run: the real agent invalidates its session after (up to) 2×TTL, then the
/// 1s lock-delay of kv2jobs' sessions refuses the key a little longer; the next run then acts.
#[test]
fn a_killed_holder_on_the_real_agent_blocks_no_longer_than_ttl_and_lock_delay() {
    let Some(consul_bin) = consul_bin_for_tests("consul_real::killed_holder") else {
        return;
    };
    let consul = agent(&consul_bin, Duration::from_secs(1));
    let marathon = Marathon::start(MarathonOptions::default()).unwrap();
    marathon.faults().set_latency(Duration::from_secs(30));
    let ttl = ["--lock-ttl", "1s"];
    let mut holder = spawn_kv2jobs(&consul.url(), &marathon, &ttl, &payload("/ha/killed"));
    let lock_url = format!("{}/v1/kv/shipwatch/locks/kv2jobs", consul.url());
    wait_until("the holder takes the lock", Duration::from_secs(20), || {
        let (status, kv) = http("GET", &lock_url, b"");
        status == 200 && kv[0]["Session"].is_string()
    })
    .unwrap();
    holder.kill().unwrap();
    let _ = holder.wait();
    let killed_at = Instant::now();
    marathon.faults().set_latency(Duration::ZERO);
    let mut blocked_runs = 0;
    loop {
        let (code, s, stderr) = finish(spawn_kv2jobs(
            &consul.url(),
            &marathon,
            &ttl,
            &payload("/ha/killed"),
        ));
        assert_eq!(code, 0, "{stderr}");
        if has_action(&s, "create-app", "applied") {
            break;
        }
        assert!(has_action(&s, "lock", "skipped"), "{s}");
        blocked_runs += 1;
        // 2×TTL for the invalidation, the 1s lock-delay, plus slack for a loaded machine.
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "still blocked {:?} after the holder died",
            killed_at.elapsed()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        blocked_runs > 0,
        "the dead holder's lock never blocked anyone"
    );
    assert!(marathon.app("/ha/killed").is_some());
}

// ---------------------------------------------------------------------------------------------
// tasks2consul's catalog mode against the real catalog.

/// tasks2consul registers external nodes (one per Mesos host) in the real catalog. A full
/// anti-entropy sync of the agent removes what was registered through the catalog API on the
/// agent's OWN node (hashicorp/consul#7513: the control) but leaves the external nodes alone.
#[test]
fn tasks2consul_catalog_mode_survives_anti_entropy_on_the_real_agent() {
    let Some(consul_bin) = consul_bin_for_tests("consul_real::catalog") else {
        return;
    };
    let consul = agent(&consul_bin, Duration::from_secs(10));
    let marathon = Marathon::start(MarathonOptions::default()).unwrap();
    let app = json!({"id": "/cat/web", "cmd": "sleep 1000", "instances": 2,
        "portDefinitions": [{"port": 0, "name": "http"}], "labels": {"consul": "cat-web"}});
    let (status, _) = http(
        "POST",
        &format!("{}/v2/apps", marathon.url()),
        app.to_string().as_bytes(),
    );
    assert!(status < 300, "create app: {status}");
    wait_until("tasks running", T, || {
        marathon
            .app("/cat/web")
            .is_some_and(|a| a["tasks"].as_array().is_some_and(|t| t.len() == 2))
    })
    .unwrap();
    // What a `services` or first `event` watch would pass: anything but an event payload
    // means a full sync.
    let mut child = Command::new(bin("tasks2consul"))
        .args(["--mode", "catalog", "--output", "json", "--timeout", "60s"])
        .env_remove("CONSUL_HTTP_TOKEN")
        .env("CONSUL_HTTP_ADDR", consul.url())
        .env("MARATHON_URL", marathon.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"[]\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let services = |c: &Agent| -> Vec<Value> {
        http(
            "GET",
            &format!("{}/v1/catalog/service/cat-web", c.url()),
            b"",
        )
        .1
        .as_array()
        .cloned()
        .unwrap_or_default()
    };
    let registered = services(&consul);
    assert_eq!(registered.len(), 2, "{registered:#?}");
    for s in &registered {
        assert_ne!(s["Node"], "devstack", "registered on the agent's node: {s}");
        assert_eq!(s["ServiceMeta"]["external-source"], "marathon", "{s}");
    }
    // The control: a catalog-API registration on the agent's own node.
    let (status, _) = http(
        "PUT",
        &format!("{}/v1/catalog/register", consul.url()),
        br#"{"Node":"devstack","Address":"127.0.0.1","SkipNodeUpdate":true,"Service":{"ID":"control","Service":"control","Port":1}}"#,
    );
    assert_eq!(status, 200);
    // A reload makes the agent sync its state with the catalog in full.
    consul.reload().unwrap();
    wait_until(
        "anti-entropy removes the control from the agent's node",
        T,
        || {
            http(
                "GET",
                &format!("{}/v1/catalog/service/control", consul.url()),
                b"",
            )
            .1
            .as_array()
            .is_some_and(|a| a.is_empty())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", consul.log_tail()));
    let after = services(&consul);
    assert_eq!(after, registered, "anti-entropy touched the external nodes");
}

/// `devstack up --consul-bin`: the agent serves with the config's watch loaded, and SIGTERM to
/// devstack stops the agent too (nothing is left running).
#[test]
fn devstack_up_runs_the_real_agent_with_the_watches_and_stops_it() {
    let Some(consul_bin) = consul_bin_for_tests("consul_real::up") else {
        return;
    };
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../consul-config/kv2jobs.json");
    let mut up = TermOnDrop(
        Command::new(bin("devstack"))
            .arg("up")
            .arg("--consul-bin")
            .arg(&consul_bin)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut out = std::io::BufReader::new(up.0.stdout.take().unwrap());
    let mut addr = String::new();
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0 {
        if let Some(a) = line.trim().strip_prefix("CONSUL_HTTP_ADDR=") {
            addr = a.to_string();
        }
        if line.contains("running 1 watch") {
            break;
        }
        line.clear();
    }
    assert!(
        line.contains("consul agent -dev is running 1 watch"),
        "{line}"
    );
    let (status, me) = http("GET", &format!("{addr}/v1/agent/self"), b"");
    assert_eq!(status, 200);
    assert_eq!(me["Config"]["Version"], "1.14.11");
    assert_eq!(
        me["DebugConfig"]["Watches"].as_array().map(Vec::len),
        Some(1)
    );
    let kill = Command::new("kill")
        .args(["-TERM", &up.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = up.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    wait_until(
        "the agent stopped with devstack",
        Duration::from_secs(20),
        || {
            ureq::get(&format!("{addr}/v1/status/leader"))
                .config()
                .timeout_global(Some(Duration::from_secs(1)))
                .build()
                .call()
                .is_err()
        },
    )
    .unwrap();
}

/// A devstack process that gets SIGTERM (so it stops its agent) if the test ends early.
struct TermOnDrop(Child);

impl Drop for TermOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let _ = self.0.wait();
        }
    }
}
