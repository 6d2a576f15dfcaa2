//! A real Consul agent (`consul agent -dev`, built by `tools/consul/build`) on loopback
//! ephemeral ports, in place of the Consul double: devstack's `--consul-bin`, the conformance
//! suite and the real-agent end-to-end tests.
//!
//! The agent reads a config directory (`-config-dir`): `ports.json` (every listener on a free
//! loopback port, update checks off) and, once [`Agent::set_watches`] wrote it, `watches.json`
//! followed by `consul reload`: the agent then starts the watch plans and runs the handlers
//! itself, with its own environment plus `CONSUL_INDEX` (agent/watch_handler.go).
//!
//! Dropping an [`Agent`] kills the process and waits for it; the temp dir goes with it.

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The environment variable naming the built Consul binary for the tests (`tools/consul/build`
/// prints it; `.ci/run` sets it).
pub const CONSUL_BIN_ENV: &str = "SHIPWATCH_CONSUL_BIN";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("consul agent: {0}")]
    Io(#[from] std::io::Error),
    #[error("consul agent did not become ready within {timeout:?}: {reason}\n--- agent log (tail) ---\n{log}")]
    NotReady {
        timeout: Duration,
        reason: String,
        log: String,
    },
    #[error("consul agent: {0}")]
    Http(String),
}

/// How to start the agent.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The `consul` binary.
    pub bin: PathBuf,
    /// `node_name` (default "devstack", the double's).
    pub node_name: String,
    /// The agent process's environment (the handlers inherit it); `CONSUL_HTTP_ADDR` is set to
    /// the agent's own HTTP address on top.
    pub env: Vec<(String, String)>,
    /// Consul's `session_ttl_min` (Consul's default is 10s; tests lower it).
    pub session_ttl_min: Duration,
    /// How long to wait for a leader and the agent's own node in the catalog.
    pub ready_timeout: Duration,
}

impl AgentOptions {
    pub fn new(bin: impl Into<PathBuf>) -> AgentOptions {
        AgentOptions {
            bin: bin.into(),
            node_name: "devstack".into(),
            env: std::env::vars()
                .filter(|(k, _)| !k.starts_with("CONSUL_"))
                .collect(),
            session_ttl_min: Duration::from_secs(10),
            ready_timeout: Duration::from_secs(60),
        }
    }
}

/// A running `consul agent -dev`.
pub struct Agent {
    child: Child,
    http_port: u16,
    dir: tempfile::TempDir,
}

/// Free loopback ports for `n` listeners: TCP and UDP both free (serf listens on both). The
/// sockets are held until all are chosen so the same port is never handed out twice.
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let tcp = TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) {
            ports.push(port);
            held.push((tcp, udp));
        }
    }
    Ok(ports)
}

fn tail(path: &Path, max: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let start = s.len().saturating_sub(max);
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    s[start..].to_string()
}

impl Agent {
    /// Starts the agent and waits until it has a leader and its node is in the catalog. A port
    /// taken by someone else between choosing and binding makes the agent exit: it is retried
    /// on fresh ports (twice).
    pub fn start(opts: AgentOptions) -> Result<Agent, AgentError> {
        let mut last = None;
        for _ in 0..3 {
            match Agent::start_once(&opts) {
                Ok(a) => return Ok(a),
                Err(e @ AgentError::NotReady { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| AgentError::Http("not started".into())))
    }

    fn start_once(opts: &AgentOptions) -> Result<Agent, AgentError> {
        let dir = tempfile::Builder::new().prefix("consul-agent").tempdir()?;
        let config_dir = dir.path().join("config");
        std::fs::create_dir_all(&config_dir)?;
        let p = free_ports(6)?;
        let config = json!({
            "node_name": opts.node_name,
            "disable_update_check": true,
            "session_ttl_min": format!("{}ms", opts.session_ttl_min.as_millis()),
            "ports": {
                "http": p[0], "dns": p[1], "serf_lan": p[2], "serf_wan": p[3],
                "server": p[4], "grpc": p[5], "grpc_tls": -1, "https": -1,
            },
        });
        std::fs::write(config_dir.join("ports.json"), config.to_string())?;
        let log = std::fs::File::create(dir.path().join("agent.log"))?;
        let url = format!("http://127.0.0.1:{}", p[0]);
        let child = Command::new(&opts.bin)
            .args([
                "agent",
                "-dev",
                "-bind",
                "127.0.0.1",
                "-client",
                "127.0.0.1",
            ])
            .arg("-config-dir")
            .arg(&config_dir)
            .env_clear()
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .env("CONSUL_HTTP_ADDR", &url)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut agent = Agent {
            child,
            http_port: p[0],
            dir,
        };
        agent.wait_ready(&opts.node_name, opts.ready_timeout)?;
        Ok(agent)
    }

    fn wait_ready(&mut self, node: &str, timeout: Duration) -> Result<(), AgentError> {
        let end = Instant::now() + timeout;
        let mut pause = Duration::from_millis(20);
        let mut reason;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                reason = format!("the agent exited ({status})");
                break;
            }
            match (
                self.get("/v1/status/leader"),
                self.get(&format!("/v1/catalog/node/{node}")),
            ) {
                (Ok(leader), Ok(n))
                    if leader.as_str().is_some_and(|l| !l.is_empty()) && !n.is_null() =>
                {
                    return Ok(());
                }
                (Ok(leader), _) => reason = format!("leader {leader}, node not registered yet"),
                (Err(e), _) => reason = e.to_string(),
            }
            if Instant::now() >= end {
                break;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
        Err(AgentError::NotReady {
            timeout,
            reason,
            log: self.log_tail(),
        })
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The last 8 KiB of the agent's log (for failure messages).
    pub fn log_tail(&self) -> String {
        tail(&self.dir.path().join("agent.log"), 8 * 1024)
    }

    fn get(&self, path: &str) -> Result<Value, AgentError> {
        ureq::get(&format!("{}{path}", self.url()))
            .config()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .call()
            .map_err(|e| AgentError::Http(format!("GET {path}: {e}")))?
            .body_mut()
            .read_json()
            .map_err(|e| AgentError::Http(format!("GET {path}: {e}")))
    }

    /// Writes the agent's `watches` (agent config JSON objects) and reloads the agent, which
    /// stops every watch plan and starts the new ones (each fires at once with the current
    /// data, as at agent start).
    pub fn set_watches(&self, watches: &[Value]) -> Result<(), AgentError> {
        let path = self.dir.path().join("config").join("watches.json");
        std::fs::write(&path, json!({ "watches": watches }).to_string())?;
        self.reload()
    }

    /// `consul reload` (`PUT /v1/agent/reload`).
    pub fn reload(&self) -> Result<(), AgentError> {
        ureq::put(&format!("{}/v1/agent/reload", self.url()))
            .config()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .send_empty()
            .map(|_| ())
            .map_err(|e| AgentError::Http(format!("reload: {e}\n{}", self.log_tail())))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Consul binary for tests: `SHIPWATCH_CONSUL_BIN`. When it is unset, `None` with a message
/// on stderr saying the test is skipped, except under CI (`CI=true`), where a missing binary is a
/// failure (panics with how to build it).
pub fn consul_bin_for_tests(test: &str) -> Option<PathBuf> {
    match std::env::var(CONSUL_BIN_ENV) {
        Ok(p) if !p.trim().is_empty() => {
            let p = PathBuf::from(p.trim());
            assert!(
                p.is_file(),
                "{CONSUL_BIN_ENV}={} is not a file (build it with tools/consul/build)",
                p.display()
            );
            Some(p)
        }
        _ if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => panic!(
            "{test}: {CONSUL_BIN_ENV} is not set and CI=true: the real-Consul suites must run in CI \
             (export {CONSUL_BIN_ENV}=\"$(tools/consul/build | tail -1)\")"
        ),
        _ => {
            eprintln!(
                "SKIPPED {test}: the real Consul binary is missing ({CONSUL_BIN_ENV} is not set; \
                 export {CONSUL_BIN_ENV}=\"$(tools/consul/build | tail -1)\" to run it)"
            );
            None
        }
    }
}
