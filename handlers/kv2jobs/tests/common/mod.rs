//! Test harness: runs the built `kv2jobs` binary the way the Consul agent does (payload on
//! stdin, endpoints in the environment) against the devstack doubles, or against real servers
//! when MARATHON_URL / CHRONOS_URL are set in the test's environment.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use devstack::chronos::{Chronos, ChronosOptions};
use devstack::http::{Request, Response, Server};
use devstack::marathon::{Marathon, MarathonOptions};
use serde_json::{json, Value};

pub struct Stack {
    pub marathon: Option<Marathon>,
    pub chronos: Option<Chronos>,
    pub marathon_url: String,
    pub chronos_url: String,
    /// `<test>/master/`: the branch prefix of this test's keys (unique per test, so tests can
    /// share a real server).
    pub prefix: String,
    /// `<test>`: the repo part (the .ref key is `<repo>/master.ref`).
    pub repo: String,
    index: AtomicU64,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Stack {
    pub fn new(test: &str) -> Stack {
        Stack::with(test, MarathonOptions::default(), ChronosOptions::default())
    }

    pub fn with(test: &str, mopts: MarathonOptions, copts: ChronosOptions) -> Stack {
        let (marathon, marathon_url) = match env("MARATHON_URL") {
            Some(u) => (None, u),
            None => {
                let m = Marathon::start(mopts).expect("start marathon double");
                let u = m.url();
                (Some(m), u)
            }
        };
        let (chronos, chronos_url) = match env("CHRONOS_URL") {
            Some(u) => (None, u),
            None => {
                let c = Chronos::start(copts).expect("start chronos double");
                let u = c.url();
                (Some(c), u)
            }
        };
        let repo = format!("kv2jobs-test-{test}");
        Stack {
            marathon,
            chronos,
            marathon_url,
            chronos_url,
            prefix: format!("{repo}/master/"),
            repo,
            index: AtomicU64::new(100),
        }
    }

    /// The Marathon double, or `None` (with a note) when the suite runs against a real server.
    pub fn double(&self) -> Option<&Marathon> {
        if self.marathon.is_none() {
            eprintln!("skipped: needs the Marathon double's controls (MARATHON_URL is set)");
        }
        self.marathon.as_ref()
    }

    pub fn key(&self, file: &str) -> String {
        format!("{}{file}", self.prefix)
    }

    pub fn ref_key(&self) -> String {
        format!("{}/master.ref", self.repo)
    }

    /// A ModifyIndex larger than every earlier one.
    pub fn next_index(&self) -> u64 {
        self.index.fetch_add(1, Ordering::Relaxed)
    }

    /// A keyprefix payload of `files` (name → JSON), each at a fresh index, then the `.ref`.
    pub fn payload(&self, files: &[(&str, Value)]) -> Vec<u8> {
        let mut pairs: Vec<Value> = files
            .iter()
            .map(|(f, v)| kv(&self.key(f), self.next_index(), Some(&v.to_string())))
            .collect();
        pairs.push(kv(&self.ref_key(), self.next_index(), Some("0123abcd")));
        serde_json::to_vec(&pairs).unwrap()
    }

    /// Runs kv2jobs with `payload` on stdin; returns (exit code, JSON summary, stderr).
    pub fn run(&self, payload: &[u8], args: &[&str]) -> (i32, Value, String) {
        self.run_env(payload, args, &[])
    }

    pub fn run_env(
        &self,
        payload: &[u8],
        args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> (i32, Value, String) {
        let child = self.spawn(payload, args, extra_env);
        let out = child.wait_with_output().unwrap();
        parse_output(out)
    }

    /// Starts kv2jobs as [`Stack::run_env`] does, payload written, without waiting for it.
    pub fn spawn(&self, payload: &[u8], args: &[&str], extra_env: &[(&str, &str)]) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kv2jobs"));
        cmd.args(["--output", "json", "--timeout", "60s"])
            .args(args)
            .env_remove("MARATHON_URL")
            .env_remove("CHRONOS_URL")
            .env_remove("CONSUL_HTTP_ADDR")
            .env("MARATHON_URL", &self.marathon_url)
            .env("CHRONOS_URL", &self.chronos_url)
            .env("CONSUL_INDEX", "42")
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn kv2jobs");
        child.stdin.take().unwrap().write_all(payload).unwrap();
        child
    }

    /// Live apps via one `GET /v2/apps` (works for the double and a real server).
    pub fn live_apps(&self) -> Vec<Value> {
        let v: Value = ureq::get(&format!(
            "{}/v2/apps",
            self.marathon_url.split(',').next().unwrap()
        ))
        .timeout(Duration::from_secs(10))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
        v["apps"].as_array().cloned().unwrap_or_default()
    }

    pub fn live_app(&self, id: &str) -> Option<Value> {
        self.live_apps().into_iter().find(|a| a["id"] == json!(id))
    }

    pub fn live_jobs(&self) -> Vec<Value> {
        let base = self.chronos_url.split(',').next().unwrap().to_string();
        for prefix in ["/v1/scheduler", "/scheduler"] {
            if let Ok(r) = ureq::get(&format!("{base}{prefix}/jobs")).call() {
                return r.into_json().unwrap();
            }
        }
        panic!("no Chronos jobs list");
    }

    /// Marathon writes so far (double only).
    pub fn marathon_writes(&self) -> Option<u64> {
        self.marathon.as_ref().map(|m| m.write_count())
    }

    /// Lets every running deployment finish (double), or waits for them (real server).
    pub fn settle(&self) {
        if let Some(m) = &self.marathon {
            m.finish_deployments();
            return;
        }
        let until = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < until {
            let d: Value = ureq::get(&format!("{}/v2/deployments", self.marathon_url))
                .call()
                .unwrap()
                .into_json()
                .unwrap();
            if d.as_array().is_none_or(|a| a.is_empty()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// (exit code, JSON summary, stderr) of a finished run.
pub fn parse_output(out: Output) -> (i32, Value, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("stdout is not one JSON document ({e}): {stdout}\nstderr: {stderr}")
    });
    (out.status.code().unwrap_or(-1), summary, stderr)
}

/// A webhook (or Consul agent) stand-in that records what it receives.
pub fn recorder(status: u16) -> (Server, Arc<Mutex<Vec<Request>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let server = Server::start(
        "127.0.0.1:0",
        Arc::new(move |r: Request| {
            let fire = r.path.starts_with("/v1/event/fire/");
            s2.lock().unwrap().push(r);
            if fire {
                Response::json(
                    200,
                    &json!({"ID":"b54f","Name":"deploy","Payload":null,"Version":1,"LTime":0}),
                )
            } else {
                Response::text(status, "ok")
            }
        }),
    )
    .unwrap();
    (server, seen)
}

/// A small Marathon app definition.
pub fn app(id: &str, cmd: &str) -> Value {
    json!({"id": id, "cmd": cmd, "cpus": 0.1, "mem": 32, "instances": 1})
}

/// One KV pair as the agent writes it.
pub fn kv(key: &str, index: u64, value: Option<&str>) -> Value {
    json!({"Key": key, "CreateIndex": index, "ModifyIndex": index, "LockIndex": 0, "Flags": 0,
        "Value": value.map(|v| base64::engine::general_purpose::STANDARD.encode(v)), "Session": ""})
}

/// The actions of a summary with the given kind.
pub fn actions<'a>(summary: &'a Value, kind: &str) -> Vec<&'a Value> {
    summary["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == json!(kind))
        .collect()
}

/// The action for `target`.
pub fn action<'a>(summary: &'a Value, target: &str) -> &'a Value {
    summary["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["target"] == json!(target))
        .unwrap_or_else(|| panic!("no action for {target}: {summary}"))
}

/// Actions with the given status.
pub fn count(summary: &Value, status: &str) -> usize {
    summary["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == json!(status))
        .count()
}
