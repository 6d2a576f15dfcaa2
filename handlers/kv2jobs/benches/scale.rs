//! kv2jobs at scale, against the devstack Marathon double (issue 5 "Benchmark"):
//! 1. 10,000 app configs already deployed (seeded), one changed: must make exactly one write;
//! 2. the same payload replayed: zero writes;
//! 3. the first full deploy of 10,000 apps.
//!
//! Each prints wall time, the handler's peak memory (max RSS of the child process, from
//! `/usr/bin/time -v` when present, else VmHWM polled from /proc/<pid>/status) and the Marathon
//! writes/requests the double saw. `BENCH_APPS=N` changes the size.
//!
//! Run: `cargo bench -p kv2jobs --bench scale`

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use devstack::marathon::{Marathon, MarathonOptions};
use serde_json::{json, Value};

const PREFIX: &str = "jobs/master/";

fn config(i: usize, cmd: &str) -> Value {
    json!({"id": format!("/bench/team-{}/app-{i:05}", i % 50), "cmd": cmd, "cpus": 0.01, "mem": 32,
        "instances": 1, "env": {"INDEX": i.to_string()}, "labels": {"team": format!("t{}", i % 50)},
        "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0}]})
}

/// What kv2jobs PUTs for `config(i)`: the config plus its ownership labels.
fn marked(i: usize, cmd: &str) -> Value {
    let mut v = config(i, cmd);
    v["labels"]["shipwatch.managed-by"] = json!("kv2jobs");
    v["labels"]["shipwatch.source-key"] = json!(key(i));
    v
}

fn key(i: usize) -> String {
    format!("{PREFIX}app-{i:05}.json")
}

fn payload(n: usize, changed: Option<usize>) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut pairs: Vec<Value> = (0..n)
        .map(|i| {
            let cmd = if Some(i) == changed {
                "sleep 2"
            } else {
                "sleep 1"
            };
            json!({"Key": key(i), "CreateIndex": 10 + i, "ModifyIndex": 10 + i, "LockIndex": 0,
                "Flags": 0, "Value": b64.encode(config(i, cmd).to_string()), "Session": ""})
        })
        .collect();
    pairs.push(
        json!({"Key": "jobs/master.ref", "CreateIndex": 5, "ModifyIndex": 20 + n,
        "LockIndex": 0, "Flags": 0, "Value": b64.encode("0123abcd"), "Session": ""}),
    );
    serde_json::to_vec(&pairs).unwrap()
}

struct Run {
    code: i32,
    wall: Duration,
    peak_kib: Option<u64>,
    summary: Value,
}

fn vm_hwm(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn run(marathon: &Marathon, payload: &[u8]) -> Run {
    let bin = env!("CARGO_BIN_EXE_kv2jobs");
    let time_v = std::path::Path::new("/usr/bin/time").exists();
    let mut cmd = if time_v {
        let mut c = Command::new("/usr/bin/time");
        c.args(["-v", bin]);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(["--output", "json", "--timeout", "10m", "--prefix", PREFIX])
        .env("MARATHON_URL", marathon.url())
        .env_remove("CHRONOS_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn kv2jobs");
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let data = payload.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    // Poll VmHWM as a fallback (the high-water mark only grows, so the last read is close).
    let mut polled = None;
    while child.try_wait().ok().flatten().is_none() && !time_v {
        polled = vm_hwm(pid).or(polled);
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let wall = start.elapsed();
    writer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let peak_kib = if time_v {
        stderr
            .lines()
            .find(|l| l.contains("Maximum resident set size"))
            .and_then(|l| l.rsplit(':').next())
            .and_then(|v| v.trim().parse().ok())
    } else {
        polled
    };
    let summary = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("kv2jobs printed no JSON summary ({e}); stderr:\n{stderr}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        wall,
        peak_kib,
        summary,
    }
}

fn count(summary: &Value, status: &str) -> usize {
    summary["actions"]
        .as_array()
        .map(|a| a.iter().filter(|x| x["status"] == json!(status)).count())
        .unwrap_or(0)
}

fn report(name: &str, r: &Run, writes: u64, requests: u64) {
    println!(
        "{name:<44} exit {:>2}  wall {:>8.2}s  peak {:>8}  marathon writes {:>6}  requests {:>6}  applied {:>6}  unchanged {:>6}",
        r.code,
        r.wall.as_secs_f64(),
        r.peak_kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or_else(|| "n/a".into()),
        writes,
        requests,
        count(&r.summary, "applied"),
        count(&r.summary, "unchanged"),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this as a smoke test.
    let smoke = std::env::args().all(|a| a != "--bench");
    let n: usize = std::env::var("BENCH_APPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 200 } else { 10_000 });
    let opts = MarathonOptions {
        deploy_duration: Duration::from_millis(1),
        ..Default::default()
    };
    println!(
        "kv2jobs benchmark: {n} app configs (payload {} KiB)",
        payload(n, None).len() / 1024
    );

    // 1. One changed config among n deployed apps.
    let m = Marathon::start(opts.clone()).unwrap();
    m.seed_apps((0..n).map(|i| marked(i, "sleep 1")).collect());
    let body = ureq::get(&format!("{}/v2/apps", m.url()))
        .call()
        .unwrap()
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap();
    println!(
        "GET /v2/apps with {n} apps: {:.1} MiB",
        body.len() as f64 / 1048576.0
    );
    drop(body);
    let p = payload(n, Some(n / 2));
    let (w0, q0) = (m.write_count(), m.request_count());
    let r = run(&m, &p);
    let (w, q) = (m.write_count() - w0, m.request_count() - q0);
    report(&format!("{n} configs, 1 changed"), &r, w, q);
    assert_eq!(r.code, 0, "{}", r.summary["errors"]);
    assert_eq!(w, 1, "exactly one write");
    m.finish_deployments();

    // 2. The same payload again: nothing to do.
    let (w0, q0) = (m.write_count(), m.request_count());
    let r = run(&m, &p);
    let (w, q) = (m.write_count() - w0, m.request_count() - q0);
    report(&format!("{n} configs, replay (no change)"), &r, w, q);
    assert_eq!(w, 0, "a replay writes nothing");
    drop(m);

    // 3. First full deploy.
    let m = Marathon::start(opts).unwrap();
    let p = payload(n, None);
    let r = run(&m, &p);
    let (w, q) = (m.write_count(), m.request_count());
    report(&format!("{n} configs, first full deploy"), &r, w, q);
    assert_eq!(r.code, 0, "{}", r.summary["errors"]);
    assert_eq!(w as usize, n);
}
