//! Test stack: the devstack doubles, or real servers when CONSUL_HTTP_ADDR and MARATHON_URL are
//! set; helpers to run the built binary as the Consul agent does and to read Consul back.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use runtime::http::{HttpClient, HttpConfig, HttpRequest};
use serde_json::{json, Value};

pub struct Stack {
    pub marathon_url: String,
    pub consul_url: String,
    pub marathon: Option<devstack::marathon::Marathon>,
    pub consul: Option<devstack::consul::Consul>,
    /// Prefix for app ids so that tests sharing real servers do not see each other.
    pub ns: String,
}

pub fn client(service: &'static str, url: &str) -> HttpClient {
    let mut cfg = HttpConfig::new(service);
    cfg.timeout = Duration::from_secs(10);
    cfg.backoff.attempts = 1;
    HttpClient::new(&[url.to_string()], cfg).unwrap()
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Stack {
    /// Real servers from the environment, else fresh doubles.
    pub fn start() -> Stack {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let (Some(c), Some(m)) = (env("CONSUL_HTTP_ADDR"), env("MARATHON_URL")) {
            let c = if c.starts_with("http") {
                c
            } else {
                format!("http://{c}")
            };
            return Stack {
                marathon_url: m,
                consul_url: c,
                marathon: None,
                consul: None,
                ns: format!("/{}", unique()),
            };
        }
        Stack::doubles(Default::default(), Default::default())
    }

    /// Fresh doubles with these options (their defaults: instant deployments, hosts
    /// 10.0.0.1-3).
    pub fn doubles(
        marathon: devstack::marathon::MarathonOptions,
        consul: devstack::consul::ConsulOptions,
    ) -> Stack {
        let marathon = devstack::marathon::Marathon::start(marathon).unwrap();
        let consul = devstack::consul::Consul::start(consul).unwrap();
        Stack {
            marathon_url: marathon.url(),
            consul_url: consul.url(),
            marathon: Some(marathon),
            consul: Some(consul),
            ns: String::new(),
        }
    }

    /// The Marathon double, or `None` (and a note) against real servers.
    pub fn double(&self, test: &str) -> Option<&devstack::marathon::Marathon> {
        if self.marathon.is_none() {
            eprintln!("{test}: skipped against real servers (needs the devstack Marathon double's controls)");
        }
        self.marathon.as_ref()
    }

    pub fn id(&self, app: &str) -> String {
        format!("{}{}", self.ns, app)
    }

    /// Creates apps with running tasks: `seed_apps` on the double; POST and wait on a real
    /// Marathon.
    pub fn create_apps(&self, apps: Vec<Value>) {
        let apps: Vec<Value> = apps
            .into_iter()
            .map(|mut a| {
                let id = self.id(a["id"].as_str().unwrap());
                a["id"] = json!(id);
                a
            })
            .collect();
        if let Some(m) = &self.marathon {
            m.seed_apps(apps);
            return;
        }
        let c = client("marathon", &self.marathon_url);
        for a in &apps {
            let r = c
                .send(HttpRequest::new("POST", "/v2/apps").json(a))
                .unwrap();
            assert!(r.is_success(), "{}", r.text());
        }
        for a in &apps {
            let id = a["id"].as_str().unwrap().to_string();
            let want = a["instances"].as_u64().unwrap_or(1) as usize;
            poll(Duration::from_secs(120), || {
                self.running_tasks(&id).len() == want
            });
        }
    }

    /// `PUT /v2/apps/<id>?force=true` with a partial definition (scale, labels).
    pub fn update_app(&self, app: &str, patch: Value) {
        let c = client("marathon", &self.marathon_url);
        let id = self.id(app);
        let r = c
            .send(HttpRequest::new("PUT", &format!("/v2/apps{id}?force=true")).json(&patch))
            .unwrap();
        assert!(r.is_success(), "{}", r.text());
        self.settle();
    }

    pub fn delete_app(&self, app: &str) {
        let c = client("marathon", &self.marathon_url);
        let id = self.id(app);
        let r = c
            .send(HttpRequest::new(
                "DELETE",
                &format!("/v2/apps{id}?force=true"),
            ))
            .unwrap();
        assert!(r.is_success(), "{}", r.text());
        self.settle();
    }

    /// Lets deployments finish.
    pub fn settle(&self) {
        if let Some(m) = &self.marathon {
            m.finish_deployments();
        }
    }

    pub fn app(&self, app: &str) -> Option<Value> {
        let c = client("marathon", &self.marathon_url);
        let r = c
            .get(&format!("/v2/apps{}?embed=app.tasks", self.id(app)))
            .unwrap();
        if r.status == 404 {
            return None;
        }
        let v: Value = r.json().unwrap();
        Some(v["app"].clone())
    }

    pub fn running_tasks(&self, app_id: &str) -> Vec<Value> {
        let c = client("marathon", &self.marathon_url);
        let r = c.get(&format!("/v2/apps{app_id}?embed=app.tasks")).unwrap();
        if !r.is_success() {
            return Vec::new();
        }
        let v: Value = r.json().unwrap();
        v["app"]["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .collect()
    }

    /// Every service instance in Consul with its node and checks, read over HTTP:
    /// `(service name, /v1/health/service entry)`.
    pub fn consul_entries(&self) -> Vec<Value> {
        let c = client("consul", &self.consul_url);
        let names: Value = c.get("/v1/catalog/services").unwrap().json().unwrap();
        let mut out = Vec::new();
        for name in names.as_object().unwrap().keys() {
            let r = c.get(&format!("/v1/health/service/{name}")).unwrap();
            let v: Value = r.json().unwrap();
            out.extend(v.as_array().cloned().unwrap_or_default());
        }
        out
    }

    /// The registrations of this test's apps: sorted service IDs.
    pub fn registered_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .mine()
            .iter()
            .map(|e| e["Service"]["ID"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    }

    /// Entries whose meta names one of this test's apps.
    pub fn mine(&self) -> Vec<Value> {
        self.consul_entries()
            .into_iter()
            .filter(|e| {
                e["Service"]["Meta"]["marathon-app-id"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(&format!("{}/", self.ns)))
            })
            .collect()
    }

    /// The service IDs the running tasks of `apps` call for (one per task port).
    pub fn expected_ids(&self, apps: &[&str]) -> Vec<String> {
        let mut ids = Vec::new();
        for a in apps {
            for t in self.running_tasks(&self.id(a)) {
                for p in t["ports"].as_array().unwrap() {
                    ids.push(format!("marathon:{}:{}", t["id"].as_str().unwrap(), p));
                }
            }
        }
        ids.sort();
        ids
    }

    /// Node names in the catalog.
    pub fn node_names(&self) -> Vec<String> {
        let c = client("consul", &self.consul_url);
        let v: Value = c.get("/v1/catalog/nodes").unwrap().json().unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n["Node"].as_str().unwrap().to_string())
            .collect()
    }

    /// Registers a service that tasks2consul does not own.
    pub fn register_foreign(&self, node: &str, id: &str, name: &str) {
        let c = client("consul", &self.consul_url);
        let body = json!({"Node": node, "Address": "10.9.9.9",
            "Service": {"ID": id, "Service": name, "Port": 6379, "Tags": ["primary"]}});
        let r = c
            .send(HttpRequest::new("PUT", "/v1/catalog/register").json(&body))
            .unwrap();
        assert!(r.is_success(), "{}", r.text());
    }

    pub fn consul_writes(&self) -> Option<u64> {
        self.consul.as_ref().map(|c| c.write_count())
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tasks2consul"));
        for v in [
            "CONSUL_HTTP_TOKEN",
            "CONSUL_HTTP_TOKEN_FILE",
            "CONSUL_CACERT",
            "CONSUL_HTTP_SSL",
            "MARATHON_USERNAME",
            "MARATHON_PASSWORD",
            "MARATHON_TOKEN",
            "CONSUL_INDEX",
        ] {
            c.env_remove(v);
        }
        c.env("MARATHON_URL", &self.marathon_url)
            .env("CONSUL_HTTP_ADDR", &self.consul_url)
            .env("RUST_LOG", "warn");
        c
    }

    /// Runs the handler with `payload` on stdin; returns (exit code, summary JSON, stderr).
    pub fn run(&self, payload: &str, args: &[&str]) -> (i32, Value, String) {
        let mut cmd = self.cmd();
        cmd.args(["--output", "json"]);
        if !args.contains(&"--timeout") {
            cmd.args(["--timeout", "20s"]);
        }
        let out = run_with_stdin(cmd.args(args), payload.as_bytes());
        let code = out.status.code().unwrap_or(-1);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!("stdout is not one JSON document ({e}): {stdout}\nstderr: {stderr}")
        });
        (code, v, stderr)
    }
}

pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// Service actions (not `node:` ones) of a summary with the given kind and status, as sorted
/// targets.
pub fn targets(summary: &Value, kind: &str, status: &str) -> Vec<String> {
    let mut v: Vec<String> = summary["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind && a["status"] == status)
        .filter(|a| !a["target"].as_str().unwrap().starts_with("node:"))
        .map(|a| a["target"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// The actions of a summary with the given status.
pub fn with_status<'a>(summary: &'a Value, status: &str) -> Vec<&'a Value> {
    summary["actions"]
        .as_array()
        .map(|a| a.iter().filter(|a| a["status"] == status).collect())
        .unwrap_or_default()
}

pub fn count(summary: &Value, status: &str) -> usize {
    summary["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == status)
        .count()
}

/// Polls `f` until true or the deadline passes (then panics).
pub fn poll(limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    let mut wait = Duration::from_millis(5);
    while !f() {
        assert!(
            Instant::now() < end,
            "condition not reached within {limit:?}"
        );
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_millis(100));
    }
}

/// A labelled app with `n` instances and `ports` dynamic host ports.
pub fn web_app(id: &str, label: &str, n: u64, ports: usize) -> Value {
    let defs: Vec<Value> = (0..ports)
        .map(|_| json!({"port": 0, "protocol": "tcp"}))
        .collect();
    json!({"id": id, "cmd": "sleep 1000", "cpus": 0.01, "mem": 16, "instances": n,
           "labels": {"consul": label, "public": "tag"},
           "portDefinitions": defs})
}

/// A user event payload as an `event` watch delivers it (base64 Payload).
pub fn event_payload(payload: &str) -> String {
    use base64::Engine;
    json!([{"ID": "3f2a6d2c-0000-0000-0000-000000000001", "Name": "jobs-deployed",
            "Payload": base64::engine::general_purpose::STANDARD.encode(payload),
            "NodeFilter": "", "ServiceFilter": "", "TagFilter": "", "Version": 1, "LTime": 7}])
    .to_string()
}
