//! The whole stack in one value (Consul, Marathon and Chronos doubles on ephemeral loopback
//! ports), and the endpoint choice every integration test makes: real servers from
//! `CONSUL_HTTP_ADDR` / `MARATHON_URL` / `CHRONOS_URL` when set, the doubles otherwise.

use std::time::Duration;

use crate::chronos::{Chronos, ChronosOptions};
use crate::consul::{Consul, ConsulOptions};
use crate::marathon::{Marathon, MarathonOptions};

/// Settings for [`Stack::start`].
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// How long a Marathon deployment takes.
    pub deploy_duration: Duration,
    /// Fixed ports (`devstack up --port-base`), or ephemeral when `None`.
    pub port_base: Option<u16>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            deploy_duration: Duration::from_millis(200),
            port_base: None,
        }
    }
}

/// The three doubles. Dropping the stack stops them.
pub struct Stack {
    pub consul: Consul,
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
        let consul = Consul::start(ConsulOptions {
            bind: bind(opts.port_base, 0),
            ..ConsulOptions::default()
        })?;
        let marathon = Marathon::start(MarathonOptions {
            bind: bind(opts.port_base, 1),
            deploy_duration: opts.deploy_duration,
            ..MarathonOptions::default()
        })?;
        let chronos = Chronos::start(ChronosOptions {
            bind: bind(opts.port_base, 2),
            ..ChronosOptions::default()
        })?;
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
