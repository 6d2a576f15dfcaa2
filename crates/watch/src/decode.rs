//! Decoding of every watch type's payload, with errors that point at the entry and field.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use serde_json::Value;

use crate::types::{HealthCheck, KvPair, Node, ServiceEntry, UserEvent, WireKvPair, WireUserEvent};

/// The watch types a Consul agent can run a script handler for (connect_* are refused in agent
/// config; agent/agent.go reloadWatches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchType {
    Key,
    KeyPrefix,
    Services,
    Nodes,
    Service,
    Checks,
    Event,
}

impl WatchType {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchType::Key => "key",
            WatchType::KeyPrefix => "keyprefix",
            WatchType::Services => "services",
            WatchType::Nodes => "nodes",
            WatchType::Service => "service",
            WatchType::Checks => "checks",
            WatchType::Event => "event",
        }
    }

    fn shape(self) -> &'static str {
        match self {
            WatchType::Key => "a key payload (one KV object, or null)",
            WatchType::KeyPrefix => "a keyprefix payload (an array of KV objects, or null)",
            WatchType::Services => "a services payload (an object of service name -> tags)",
            WatchType::Nodes => "a nodes payload (an array of nodes)",
            WatchType::Service => "a service payload (an array of health entries)",
            WatchType::Checks => "a checks payload (an array of health checks)",
            WatchType::Event => "an event payload (an array of user events)",
        }
    }
}

impl fmt::Display for WatchType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WatchType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "key" => WatchType::Key,
            "keyprefix" => WatchType::KeyPrefix,
            "services" => WatchType::Services,
            "nodes" => WatchType::Nodes,
            "service" => WatchType::Service,
            "checks" => WatchType::Checks,
            "event" => WatchType::Event,
            other => return Err(format!("unknown watch type {other:?}")),
        })
    }
}

/// A decoded payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A key watch: `None` when the key is missing or was deleted.
    Key(Option<KvPair>),
    /// A keyprefix watch: empty when nothing is under the prefix (the agent sends `null`).
    KeyPrefix(Vec<KvPair>),
    Services(BTreeMap<String, Vec<String>>),
    Nodes(Vec<Node>),
    Service(Vec<ServiceEntry>),
    Checks(Vec<HealthCheck>),
    Event(Vec<UserEvent>),
    /// `null` or `[]` when the watch type was not declared: nothing to act on.
    Empty,
}

impl Payload {
    /// The KV entries of a key or keyprefix payload (empty for other types).
    pub fn kv_pairs(&self) -> &[KvPair] {
        match self {
            Payload::Key(Some(p)) => std::slice::from_ref(p),
            Payload::KeyPrefix(v) => v,
            _ => &[],
        }
    }
}

/// What was wrong with a payload, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is empty: expected JSON (a Consul agent always sends at least `null`)")]
    Empty,
    #[error("payload is not valid JSON (line {line}, column {column}): {reason}")]
    Json {
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("expected {expected}, found {found}")]
    WrongType {
        expected: &'static str,
        found: &'static str,
    },
    /// `index` counts from 1, as a person reads a list.
    #[error("entry {index}{}: {reason}", key.as_ref().map(|k| format!(" (key {k:?})")).unwrap_or_default())]
    Entry {
        index: usize,
        key: Option<String>,
        reason: String,
    },
}

fn parse_json(bytes: &[u8]) -> Result<Value, DecodeError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(DecodeError::Empty);
    }
    serde_json::from_slice(bytes).map_err(|e| DecodeError::Json {
        line: e.line(),
        column: e.column(),
        reason: strip_position(&e.to_string()),
    })
}

/// serde_json appends " at line X column Y"; the error already carries both.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong(expected: WatchType, found: &Value) -> DecodeError {
    DecodeError::WrongType {
        expected: expected.shape(),
        found: kind_of(found),
    }
}

fn decode_b64(field: &str, s: Option<String>) -> Result<Option<Vec<u8>>, String> {
    match s {
        None => Ok(None),
        Some(s) => base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(Some)
            .map_err(|e| format!("{field} is not valid base64 ({e})")),
    }
}

fn key_of(v: &Value) -> Option<String> {
    v.get("Key").and_then(Value::as_str).map(str::to_string)
}

fn kv_entry(index: usize, v: Value) -> Result<KvPair, DecodeError> {
    let key = key_of(&v);
    let entry_err = |reason: String| DecodeError::Entry {
        index,
        key: key.clone(),
        reason,
    };
    if !v.is_object() {
        return Err(entry_err(format!(
            "expected a KV object, found {}",
            kind_of(&v)
        )));
    }
    let wire: WireKvPair = serde_json::from_value(v).map_err(|e| entry_err(e.to_string()))?;
    let value = decode_b64("Value", wire.value).map_err(entry_err)?;
    Ok(KvPair {
        key: wire.key,
        create_index: wire.create_index,
        modify_index: wire.modify_index,
        lock_index: wire.lock_index,
        flags: wire.flags,
        value,
        session: wire.session,
    })
}

fn event_entry(index: usize, v: Value) -> Result<UserEvent, DecodeError> {
    let name = v.get("Name").and_then(Value::as_str).map(str::to_string);
    let entry_err = |reason: String| DecodeError::Entry {
        index,
        key: name.clone(),
        reason,
    };
    let wire: WireUserEvent = serde_json::from_value(v).map_err(|e| entry_err(e.to_string()))?;
    let payload = decode_b64("Payload", wire.payload).map_err(entry_err)?;
    Ok(UserEvent {
        id: wire.id,
        name: wire.name,
        payload,
        node_filter: wire.node_filter,
        service_filter: wire.service_filter,
        tag_filter: wire.tag_filter,
        version: wire.version,
        ltime: wire.ltime,
    })
}

fn array_of<T>(
    wt: WatchType,
    v: Value,
    mut each: impl FnMut(usize, Value) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| each(i + 1, item))
            .collect(),
        other => Err(wrong(wt, &other)),
    }
}

fn typed<T: serde::de::DeserializeOwned>(index: usize, v: Value) -> Result<T, DecodeError> {
    serde_json::from_value(v).map_err(|e| DecodeError::Entry {
        index,
        key: None,
        reason: e.to_string(),
    })
}

/// Decodes a payload of a declared watch type.
pub fn decode(wt: WatchType, bytes: &[u8]) -> Result<Payload, DecodeError> {
    let v = parse_json(bytes)?;
    decode_value(wt, v)
}

fn decode_value(wt: WatchType, v: Value) -> Result<Payload, DecodeError> {
    Ok(match wt {
        WatchType::Key => match v {
            Value::Null => Payload::Key(None),
            Value::Object(_) => Payload::Key(Some(kv_entry(1, v)?)),
            other => return Err(wrong(wt, &other)),
        },
        WatchType::KeyPrefix => Payload::KeyPrefix(array_of(wt, v, kv_entry)?),
        WatchType::Services => match v {
            Value::Null => Payload::Services(BTreeMap::new()),
            Value::Object(_) => Payload::Services(
                serde_json::from_value::<BTreeMap<String, Option<Vec<String>>>>(v)
                    .map_err(|e| DecodeError::Entry {
                        index: 1,
                        key: None,
                        reason: e.to_string(),
                    })?
                    .into_iter()
                    .map(|(k, tags)| (k, tags.unwrap_or_default()))
                    .collect(),
            ),
            other => return Err(wrong(wt, &other)),
        },
        WatchType::Nodes => Payload::Nodes(array_of(wt, v, typed)?),
        WatchType::Service => Payload::Service(array_of(wt, v, typed)?),
        WatchType::Checks => Payload::Checks(array_of(wt, v, typed)?),
        WatchType::Event => Payload::Event(array_of(wt, v, event_entry)?),
    })
}

/// Decodes a payload that must be a key or keyprefix watch's (the two handlers that read KV take
/// either): one object, an array, or `null`.
pub fn decode_kv(bytes: &[u8]) -> Result<Vec<KvPair>, DecodeError> {
    let v = parse_json(bytes)?;
    match v {
        Value::Object(_) => Ok(vec![kv_entry(1, v)?]),
        Value::Array(_) | Value::Null => array_of(WatchType::KeyPrefix, v, kv_entry),
        other => Err(DecodeError::WrongType {
            expected: "a key or keyprefix payload (a KV object, an array of them, or null)",
            found: kind_of(&other),
        }),
    }
}

/// Decodes a payload whose watch type was not declared, recognising it by shape (used by
/// tasks2consul, which may be run from a key, keyprefix or event watch). `null` and `[]` are
/// `Payload::Empty`.
pub fn detect(bytes: &[u8]) -> Result<Payload, DecodeError> {
    let v = parse_json(bytes)?;
    let wt = match &v {
        Value::Null => return Ok(Payload::Empty),
        Value::Array(items) if items.is_empty() => return Ok(Payload::Empty),
        Value::Object(o) if o.contains_key("Key") => WatchType::Key,
        Value::Object(_) => WatchType::Services,
        Value::Array(items) => {
            let first = &items[0];
            let has = |k: &str| first.get(k).is_some();
            if has("Key") {
                WatchType::KeyPrefix
            } else if has("LTime") || (has("ID") && has("Name") && has("Payload")) {
                WatchType::Event
            } else if has("CheckID") {
                WatchType::Checks
            } else if has("Service") && has("Node") {
                WatchType::Service
            } else if has("Node") {
                WatchType::Nodes
            } else {
                return Err(DecodeError::WrongType {
                    expected:
                        "a Consul watch payload (KV entries, events, checks, services or nodes)",
                    found: "an array of unrecognised objects",
                });
            }
        }
        other => {
            return Err(DecodeError::WrongType {
                expected: "a Consul watch payload (JSON object, array or null)",
                found: kind_of(other),
            })
        }
    };
    decode_value(wt, v)
}
