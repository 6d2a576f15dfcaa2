//! Parsing and validating the `watches` array of a Consul agent JSON config, with the agent's
//! own error texts (api/watch/watch.go ParseExempt, api/watch/funcs.go, agent/agent.go).

use std::path::Path;

use serde_json::{Map, Value};

use super::RunnerError;

/// One watch from an agent config, validated as the agent does.
#[derive(Clone)]
pub struct WatchSpec {
    /// key, keyprefix, services, nodes, service, checks or event.
    pub watch_type: String,
    /// The type-specific parameters after validation: `key`, `prefix`, `service`, `tag`
    /// (always an array), `passingonly`, `state` (defaults to "any" for checks), `name`,
    /// `stale`.
    pub params: Map<String, Value>,
    /// The handler's argument vector (`args`; run without a shell).
    pub args: Vec<String>,
    /// The watch's ACL token (sent as X-Consul-Token); never logged.
    pub token: Option<String>,
    /// The watch's `datacenter` (sent as `?dc=`).
    pub datacenter: Option<String>,
}

impl std::fmt::Debug for WatchSpec {
    // Manual impl: the token is a secret and must not reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchSpec")
            .field("watch_type", &self.watch_type)
            .field("params", &self.params)
            .field("args", &self.args)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("datacenter", &self.datacenter)
            .finish()
    }
}

impl WatchSpec {
    /// The watch as an object of an agent config's `watches` (what a real agent is given).
    pub fn to_agent_json(&self) -> Value {
        let mut m = self.params.clone();
        m.insert("type".into(), Value::from(self.watch_type.clone()));
        m.insert("handler_type".into(), Value::from("script"));
        m.insert("args".into(), Value::from(self.args.clone()));
        if let Some(t) = &self.token {
            m.insert("token".into(), Value::from(t.clone()));
        }
        if let Some(dc) = &self.datacenter {
            m.insert("datacenter".into(), Value::from(dc.clone()));
        }
        Value::Object(m)
    }
}

/// Reads an agent JSON config file and parses its `watches`.
pub fn load_watches(path: &Path) -> Result<Vec<WatchSpec>, RunnerError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunnerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let config: Value = serde_json::from_str(&text).map_err(|source| RunnerError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    parse_watches(&config)
}

/// Parses the `watches` array of an agent config (no `watches` key: no watches).
pub fn parse_watches(config: &Value) -> Result<Vec<WatchSpec>, RunnerError> {
    let Some(obj) = config.as_object() else {
        return Err(RunnerError::Config(
            "agent config must be a JSON object".into(),
        ));
    };
    let watches = match obj.get("watches") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(RunnerError::Config(
                "`watches` must be an array of objects".into(),
            ))
        }
    };
    watches
        .iter()
        .enumerate()
        .map(|(index, w)| match w {
            Value::Object(m) => {
                parse_watch(m.clone()).map_err(|message| RunnerError::Invalid { index, message })
            }
            _ => Err(RunnerError::Invalid {
                index,
                message: "Failed to parse watch: not an object".into(),
            }),
        })
        .collect()
}

fn take_string(p: &mut Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match p.remove(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("Expecting {name} to be a string")),
    }
}

fn take_bool(p: &mut Map<String, Value>, name: &str) -> Result<Option<bool>, String> {
    match p.remove(name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(format!("Expecting {name} to be a boolean")),
    }
}

fn take_string_slice(
    p: &mut Map<String, Value>,
    name: &str,
) -> Result<Option<Vec<String>>, String> {
    match p.remove(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![s])),
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(format!("Expecting {name} to be a string slice")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(format!("Expecting {name} to be a string slice")),
    }
}

/// One watch: generic params, handler type, type-specific params, then exempt handler/args, then
/// "Invalid parameters" for anything left (the order of ParseExempt).
fn parse_watch(mut p: Map<String, Value>) -> Result<WatchSpec, String> {
    let fail = |m: String| format!("Failed to parse watch: {m}");
    let datacenter = take_string(&mut p, "datacenter").map_err(fail)?;
    let token = take_string(&mut p, "token").map_err(fail)?;
    let watch_type = take_string(&mut p, "type")
        .map_err(fail)?
        .unwrap_or_default();
    if watch_type.is_empty() {
        return Err(fail("Watch type must be specified".into()));
    }
    let handler_type = take_string(&mut p, "handler_type")
        .map_err(fail)?
        .unwrap_or_else(|| "script".into());
    match handler_type.as_str() {
        "script" => {}
        "http" => return Err(
            "handler_type \"http\" is not supported by the devstack runner (script handlers only)"
                .into(),
        ),
        other => return Err(fail(format!("Handler type '{other}' not recognized"))),
    }
    if watch_type.starts_with("connect_") {
        return Err(format!(
            "Watch type {watch_type} is not allowed in agent config"
        ));
    }
    let mut params = Map::new();
    let stale = take_bool(&mut p, "stale").map_err(fail)?;
    match watch_type.as_str() {
        "key" => {
            let key = take_string(&mut p, "key")
                .map_err(fail)?
                .unwrap_or_default();
            if key.is_empty() {
                return Err(fail("Must specify a single key to watch".into()));
            }
            params.insert("key".into(), key.into());
        }
        "keyprefix" => {
            let prefix = take_string(&mut p, "prefix")
                .map_err(fail)?
                .unwrap_or_default();
            if prefix.is_empty() {
                return Err(fail("Must specify a single prefix to watch".into()));
            }
            params.insert("prefix".into(), prefix.into());
        }
        "services" | "nodes" => {}
        "service" => {
            let service = take_string(&mut p, "service")
                .map_err(fail)?
                .unwrap_or_default();
            if service.is_empty() {
                return Err(fail("Must specify a single service to watch".into()));
            }
            params.insert("service".into(), service.into());
            let tags = take_string_slice(&mut p, "tag")
                .map_err(fail)?
                .unwrap_or_default();
            params.insert("tag".into(), tags.into());
            let passing = take_bool(&mut p, "passingonly")
                .map_err(fail)?
                .unwrap_or(false);
            params.insert("passingonly".into(), passing.into());
        }
        "checks" => {
            let service = take_string(&mut p, "service")
                .map_err(fail)?
                .unwrap_or_default();
            let state = take_string(&mut p, "state")
                .map_err(fail)?
                .unwrap_or_default();
            if !service.is_empty() && !state.is_empty() {
                return Err(fail("Cannot specify service and state".into()));
            }
            if service.is_empty() {
                let state = if state.is_empty() {
                    "any".to_string()
                } else {
                    state
                };
                params.insert("state".into(), state.into());
            } else {
                params.insert("service".into(), service.into());
            }
            // Newer funcs.go checksWatch: `tag` filters state queries (health.StateTags).
            let tags = take_string_slice(&mut p, "tag")
                .map_err(fail)?
                .unwrap_or_default();
            params.insert("tag".into(), tags.into());
        }
        "event" => {
            if stale.is_some() {
                // eventWatch does not read `stale`: it is left over, as the agent reports.
                p.insert("stale".into(), Value::Bool(stale.unwrap_or(false)));
            }
            let name = take_string(&mut p, "name")
                .map_err(fail)?
                .unwrap_or_default();
            params.insert("name".into(), name.into());
        }
        other => return Err(fail(format!("Unsupported watch type: {other}"))),
    }
    if watch_type != "event" {
        params.insert("stale".into(), stale.unwrap_or(false).into());
    }
    let handler = p.remove("handler");
    let args = p.remove("args");
    if !p.is_empty() {
        let mut bad: Vec<&String> = p.keys().collect();
        bad.sort();
        let bad: Vec<&str> = bad.iter().map(|s| s.as_str()).collect();
        return Err(fail(format!("Invalid parameters: [{}]", bad.join(" "))));
    }
    if handler.as_ref().is_some_and(|h| !h.is_string()) {
        return Err("Watch handler must be a string".into());
    }
    let args = match args {
        None => None,
        // parseWatchArgs: a single string is a one-element list.
        Some(Value::String(s)) => Some(vec![s]),
        Some(Value::Array(a)) => Some(
            a.into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err("Watch args must be a list of strings".to_string()),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err("Watch args must be a list of strings".into()),
    };
    match (handler, args) {
        (Some(_), Some(_)) => Err("Only one watch handler allowed".into()),
        (None, None) => Err("Must define a watch handler".into()),
        // The agent runs `handler` through /bin/sh -c (deprecated since Consul 1.0); the
        // runner never uses a shell, so it asks for `args` instead.
        (Some(_), None) => Err(
            "The 'handler' field in watches has been deprecated and replaced with the 'args' field; the devstack runner does not run shell handlers, use \"args\": [\"sh\", \"-c\", \"...\"] explicitly".into(),
        ),
        (None, Some(args)) if args.is_empty() || args[0].is_empty() => {
            Err("Watch args must name a program".into())
        }
        (None, Some(args)) => Ok(WatchSpec {
            watch_type,
            params,
            args,
            token: token.filter(|t| !t.is_empty()),
            datacenter: datacenter.filter(|d| !d.is_empty()),
        }),
    }
}
