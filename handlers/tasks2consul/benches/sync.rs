//! Benchmark (issue 6): a sync of 10,000 tasks across 1,000 apps against the devstack doubles.
//! Prints wall time, Consul writes and requests for: the first full sync, a replay (no change),
//! a full sync after 10 tasks changed health (must write exactly those 10), a full sync after 10
//! tasks were replaced (10 deregistrations + 10 registrations), and the same replacement scoped
//! by an event payload naming the 10 apps.
//!
//! Run: `cargo bench -p tasks2consul` (or `cargo run --release -p tasks2consul --bench sync`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use runtime::{ConsulArgs, MarathonArgs, Summary};
use serde_json::{json, Value};
use tasks2consul::{Clients, Config, Scope, Stats};

const APPS: usize = 1_000;
const TASKS_PER_APP: u64 = 10;

fn main() {
    let marathon = devstack::marathon::Marathon::start(devstack::marathon::MarathonOptions {
        bind: "127.0.0.1:0".into(),
        deploy_duration: Duration::ZERO,
        hosts: (1..=50)
            .map(|i| format!("10.0.{}.{}", i / 250, i % 250))
            .collect(),
        ..Default::default()
    })
    .expect("marathon double");
    let consul = devstack::consul::Consul::start(devstack::consul::ConsulOptions::default())
        .expect("consul double");
    let apps: Vec<Value> = (0..APPS)
        .map(|i| {
            json!({"id": format!("/bench/app-{i:04}"), "cmd": "sleep 1000", "cpus": 0.01,
                   "mem": 16, "instances": TASKS_PER_APP,
                   "labels": {"consul": "true", "public": "tag"},
                   "portDefinitions": [{"port": 0, "protocol": "tcp"}],
                   "healthChecks": [{"protocol": "TCP", "portIndex": 0}]})
        })
        .collect();
    let t = Instant::now();
    marathon.seed_apps(apps);
    println!(
        "seeded {APPS} apps x {TASKS_PER_APP} tasks in {:?}",
        t.elapsed()
    );
    let clients = Clients {
        marathon: MarathonArgs {
            marathon_urls: Some(marathon.url()),
        },
        consul: ConsulArgs {
            consul_addr: Some(consul.url()),
            ..ConsulArgs::default()
        },
        cfg: Config::default(),
        agent: None,
        timeout: Duration::from_secs(600),
    };
    let run = |label: &str, scope: &Scope| -> Stats {
        let writes = consul.write_count();
        let m_req = marathon.request_count();
        let t = Instant::now();
        let mut summary = Summary::new("tasks2consul", false, None);
        let (stats, consul_requests) = clients
            .with_syncer_until(
                runtime::Deadline::after(Duration::from_secs(600)),
                &mut |s| {
                    let stats = s.run(scope, false, &mut summary);
                    (stats, s.consul.http().request_count())
                },
            )
            .expect("clients");
        let stats = stats.expect("sync");
        let elapsed = t.elapsed();
        println!(
            "{label:<48} {:>9.1} ms  consul writes {:>6} (requests {:>6})  marathon requests {:>3}  applied {:>6}  failed {}  unchanged {}",
            elapsed.as_secs_f64() * 1000.0,
            consul.write_count() - writes,
            consul_requests,
            marathon.request_count() - m_req,
            stats.applied,
            stats.failed,
            stats.unchanged
        );
        stats
    };
    let first = run("first full sync (10,000 tasks)", &Scope::All);
    assert_eq!(first.applied, APPS * TASKS_PER_APP as usize);
    let replay = run("replay (nothing changed)", &Scope::All);
    assert_eq!(replay.applied, 0);

    // 10 tasks in 10 apps turn unhealthy: exactly 10 writes (their checks go critical).
    let all = marathon.apps();
    let victims: Vec<(String, String)> = all
        .iter()
        .step_by(APPS / 10)
        .take(10)
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_string(),
                a["tasks"][0]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (_, task) in &victims {
        marathon.set_task_alive(task, false);
    }
    let health = run("full sync, 10 tasks changed health", &Scope::All);
    assert_eq!(health.applied, 10);

    // The same 10 tasks are replaced: 10 deregistrations + 10 registrations.
    for (_, task) in &victims {
        marathon.kill_task(task, "TASK_FAILED");
    }
    let replaced = run("full sync, 10 tasks replaced", &Scope::All);
    assert_eq!(replaced.applied, 20);

    // Another 10 replaced, sync scoped by the event payload naming their apps.
    let all = marathon.apps();
    let mut scope = BTreeSet::new();
    for (app, _) in &victims {
        let a = all.iter().find(|a| a["id"] == app.as_str()).unwrap();
        marathon.kill_task(a["tasks"][1]["id"].as_str().unwrap(), "TASK_KILLED");
        scope.insert(app.clone());
    }
    let scoped = run(
        "event-scoped sync (10 apps), 10 tasks replaced",
        &Scope::Apps(scope),
    );
    assert_eq!(scoped.applied, 20);
}
