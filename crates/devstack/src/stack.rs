//! The whole stack in one value (Consul, Marathon and Chronos doubles on ephemeral loopback
//! ports), and the endpoint choice every integration test makes: real servers from
//! `CONSUL_HTTP_ADDR` / `MARATHON_URL` / `CHRONOS_URL` when set, the doubles otherwise.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::agent::{Agent, AgentError, AgentOptions};
use crate::chronos::{Chronos, ChronosOptions};
use crate::consul::{CatalogService, Consul, ConsulOptions};
use crate::marathon::{Marathon, MarathonOptions};

/// Settings for [`Stack::start`].
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// How long a Marathon deployment takes.
    pub deploy_duration: Duration,
    /// Fixed ports (`devstack up --port-base`), or ephemeral when `None`.
    pub port_base: Option<u16>,
    /// A real Consul binary (`--consul-bin`): run `consul agent -dev` instead of the double.
    pub consul_bin: Option<PathBuf>,
    /// Extra environment of the real agent (its handlers inherit it), on top of this process's
    /// environment less `CONSUL_*`/`MARATHON_*`/`CHRONOS_*` and the stack's endpoints.
    pub agent_env: Vec<(String, String)>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            deploy_duration: Duration::from_millis(200),
            port_base: None,
            consul_bin: None,
            agent_env: Vec::new(),
        }
    }
}

/// Consul in a stack: the double, or a real agent (`--consul-bin`).
pub enum ConsulServer {
    Double(Consul),
    Agent(Agent),
}

fn http_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl ConsulServer {
    pub fn url(&self) -> String {
        match self {
            ConsulServer::Double(d) => d.url(),
            ConsulServer::Agent(a) => a.url(),
        }
    }

    /// The double (controls such as faults need it).
    pub fn double(&self) -> Option<&Consul> {
        match self {
            ConsulServer::Double(d) => Some(d),
            ConsulServer::Agent(_) => None,
        }
    }

    pub fn agent(&self) -> Option<&Agent> {
        match self {
            ConsulServer::Double(_) => None,
            ConsulServer::Agent(a) => Some(a),
        }
    }

    /// Writes a key as a plain PUT does (on the agent: over HTTP).
    pub fn kv_put(&self, key: &str, value: &[u8]) -> std::io::Result<()> {
        match self {
            ConsulServer::Double(d) => {
                d.kv_put(key, value);
                Ok(())
            }
            ConsulServer::Agent(a) => ureq::put(&format!(
                "{}/v1/kv/{}",
                a.url(),
                crate::runner::encode_path(key)
            ))
            .config()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .send(value)
            .map(|_| ())
            .map_err(http_err),
        }
    }

    /// Every service instance in the catalog (on the agent: `/v1/catalog/services` then each
    /// `/v1/catalog/service/<name>`).
    pub fn catalog_services(&self) -> std::io::Result<Vec<CatalogService>> {
        let a = match self {
            ConsulServer::Double(d) => return Ok(d.catalog_services()),
            ConsulServer::Agent(a) => a,
        };
        let get = |path: &str| -> std::io::Result<Value> {
            ureq::get(&format!("{}{path}", a.url()))
                .config()
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .call()
                .map_err(http_err)?
                .body_mut()
                .with_config()
                .limit(1 << 30)
                .read_json()
                .map_err(http_err)
        };
        let names = get("/v1/catalog/services")?;
        let mut out = Vec::new();
        for name in names.as_object().into_iter().flat_map(|m| m.keys()) {
            let entries = get(&format!(
                "/v1/catalog/service/{}",
                crate::runner::encode_path(name)
            ))?;
            for e in entries.as_array().into_iter().flatten() {
                let s = |k: &str| {
                    e.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                out.push(CatalogService {
                    node: s("Node"),
                    node_address: s("Address"),
                    id: s("ServiceID"),
                    service: s("ServiceName"),
                    tags: e
                        .get("ServiceTags")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect(),
                    address: s("ServiceAddress"),
                    port: e.get("ServicePort").and_then(Value::as_u64).unwrap_or(0),
                    meta: e
                        .get("ServiceMeta")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }
}

/// The three servers. Dropping the stack stops them.
pub struct Stack {
    pub consul: ConsulServer,
    pub marathon: Marathon,
    pub chronos: Chronos,
}

fn bind(port_base: Option<u16>, offset: u16) -> String {
    match port_base {
        Some(p) => format!("127.0.0.1:{}", p + offset),
        None => "127.0.0.1:0".to_string(),
    }
}

impl Stack {
    pub fn start(opts: StackOptions) -> std::io::Result<Stack> {
        let marathon = Marathon::start(MarathonOptions {
            bind: bind(opts.port_base, 1),
            deploy_duration: opts.deploy_duration,
            ..MarathonOptions::default()
        })?;
        let chronos = Chronos::start(ChronosOptions {
            bind: bind(opts.port_base, 2),
            ..ChronosOptions::default()
        })?;
        let consul = match &opts.consul_bin {
            None => ConsulServer::Double(Consul::start(ConsulOptions {
                bind: bind(opts.port_base, 0),
                ..ConsulOptions::default()
            })?),
            Some(bin) => {
                let mut a = AgentOptions::new(bin);
                a.env = agent_env(&marathon, &chronos, &opts.agent_env);
                ConsulServer::Agent(Agent::start(a).map_err(|e| match e {
                    AgentError::Io(e) => e,
                    e => http_err(e),
                })?)
            }
        };
        Ok(Stack {
            consul,
            marathon,
            chronos,
        })
    }

    /// The environment a handler needs to reach this stack (what an operator puts into the
    /// Consul agent's environment).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("CONSUL_HTTP_ADDR".into(), self.consul.url()),
            ("MARATHON_URL".into(), self.marathon.url()),
            ("CHRONOS_URL".into(), self.chronos.url()),
        ]
    }
}

/// The agent's environment: this process's, minus anything that would point the handlers
/// elsewhere, plus Marathon's and Chronos's addresses and `extra`.
fn agent_env(
    marathon: &Marathon,
    chronos: &Chronos,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            !(k.starts_with("CONSUL_") || k.starts_with("MARATHON_") || k.starts_with("CHRONOS_"))
        })
        .collect();
    env.push(("MARATHON_URL".into(), marathon.url()));
    env.push(("CHRONOS_URL".into(), chronos.url()));
    env.extend(extra.iter().cloned());
    env
}

/// Blocks until SIGINT or SIGTERM arrives, then returns so the caller drops its stack: a real
/// agent started with `--consul-bin` is killed with it instead of being left running.
pub fn wait_for_stop_signal() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let flag = std::sync::Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, std::sync::Arc::clone(&flag)) {
            log::warn!("cannot handle signal {sig}: {e}");
        }
    }
    while !flag.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A server a test talks to: a real one named by the environment, or a double it started.
pub enum Endpoint<T> {
    Real(String),
    Double(T),
}

impl<T> Endpoint<T> {
    /// The double, when the test runs against one (controls like `kill_task` need it).
    pub fn double(&self) -> Option<&T> {
        match self {
            Endpoint::Double(d) => Some(d),
            Endpoint::Real(_) => None,
        }
    }
}

fn from_env(var: &str) -> Option<String> {
    std::env::var(var)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl Endpoint<Consul> {
    /// `CONSUL_HTTP_ADDR` when set, else a fresh Consul double.
    pub fn consul() -> Endpoint<Consul> {
        match from_env("CONSUL_HTTP_ADDR") {
            Some(a) if a.starts_with("http") => Endpoint::Real(a),
            Some(a) => Endpoint::Real(format!("http://{a}")),
            None => Endpoint::Double(
                Consul::start(ConsulOptions::default()).expect("start the Consul double"),
            ),
        }
    }
    pub fn url(&self) -> String {
        match self {
            Endpoint::Real(u) => u.clone(),
            Endpoint::Double(d) => d.url(),
        }
    }
}

impl Endpoint<Marathon> {
    /// `MARATHON_URL` when set, else a fresh Marathon double with `opts`.
    pub fn marathon(opts: MarathonOptions) -> Endpoint<Marathon> {
        match from_env("MARATHON_URL") {
            Some(u) => Endpoint::Real(u),
            None => Endpoint::Double(Marathon::start(opts).expect("start the Marathon double")),
        }
    }
    pub fn url(&self) -> String {
        match self {
            Endpoint::Real(u) => u.clone(),
            Endpoint::Double(d) => d.url(),
        }
    }
}

impl Endpoint<Chronos> {
    /// `CHRONOS_URL` when set, else a fresh Chronos double.
    pub fn chronos() -> Endpoint<Chronos> {
        match from_env("CHRONOS_URL") {
            Some(u) => Endpoint::Real(u),
            None => Endpoint::Double(
                Chronos::start(ChronosOptions::default()).expect("start the Chronos double"),
            ),
        }
    }
    pub fn url(&self) -> String {
        match self {
            Endpoint::Real(u) => u.clone(),
            Endpoint::Double(d) => d.url(),
        }
    }
}
