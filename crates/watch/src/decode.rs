//! Decoding of every watch type's payload, with errors that point at the entry and field.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
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

/// The top level of a payload, split without building a `serde_json::Value` tree: entries stay
/// borrowed slices of the payload (`RawValue`) and each is decoded into its typed form on its
/// own. A payload of 100 MB is then held once, plus the decoded values, never as a tree of
/// small allocations (issue 13 item 5: a tree costs about 10x the text).
enum Top<'a> {
    Null,
    Object(&'a RawValue),
    Array(Vec<&'a RawValue>),
    /// A string, number or boolean at the top: never a watch payload.
    Scalar(&'static str),
}

fn json_error(e: &serde_json::Error) -> DecodeError {
    DecodeError::Json {
        line: e.line(),
        column: e.column(),
        reason: strip_position(&e.to_string()),
    }
}

fn parse_top(bytes: &[u8]) -> Result<Top<'_>, DecodeError> {
    let Some(first) = bytes.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Err(DecodeError::Empty);
    };
    match first {
        b'[' => serde_json::from_slice::<Vec<&RawValue>>(bytes)
            .map(Top::Array)
            .map_err(|e| json_error(&e)),
        b'{' => serde_json::from_slice::<&RawValue>(bytes)
            .map(Top::Object)
            .map_err(|e| json_error(&e)),
        _ => {
            let raw = serde_json::from_slice::<&RawValue>(bytes).map_err(|e| json_error(&e))?;
            match kind_of(raw) {
                "null" => Ok(Top::Null),
                kind => Ok(Top::Scalar(kind)),
            }
        }
    }
}

fn kind_of_top(top: &Top<'_>) -> &'static str {
    match top {
        Top::Null => "null",
        Top::Object(_) => "an object",
        Top::Array(_) => "an array",
        Top::Scalar(kind) => kind,
    }
}

/// serde_json appends " at line X column Y"; the error already carries both (and inside one
/// entry the position is relative to the entry, which would mislead).
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// The JSON kind of a valid raw value, from its first byte.
fn kind_of(v: &RawValue) -> &'static str {
    match v.get().as_bytes().first() {
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(b'"') => "a string",
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        _ => "a number",
    }
}

fn wrong(expected: WatchType, top: &Top<'_>) -> DecodeError {
    DecodeError::WrongType {
        expected: expected.shape(),
        found: kind_of_top(top),
    }
}

fn decode_b64(field: &str, s: Option<&str>) -> Result<Option<Vec<u8>>, String> {
    match s {
        None => Ok(None),
        Some(s) => base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(Some)
            .map_err(|e| format!("{field} is not valid base64 ({e})")),
    }
}

/// A string field of an entry, for error messages only (the entry failed to decode).
fn field_of(v: &RawValue, field: &str) -> Option<String> {
    let obj: BTreeMap<String, Value> = serde_json::from_str(v.get()).ok()?;
    obj.get(field).and_then(Value::as_str).map(str::to_string)
}

fn entry_error(index: usize, v: &RawValue, name_field: &str, reason: String) -> DecodeError {
    DecodeError::Entry {
        index,
        key: field_of(v, name_field),
        reason,
    }
}

fn kv_entry(index: usize, v: &RawValue) -> Result<KvPair, DecodeError> {
    if kind_of(v) != "an object" {
        return Err(DecodeError::Entry {
            index,
            key: None,
            reason: format!("expected a KV object, found {}", kind_of(v)),
        });
    }
    let wire: WireKvPair<'_> = serde_json::from_str(v.get())
        .map_err(|e| entry_error(index, v, "Key", strip_position(&e.to_string())))?;
    let value =
        decode_b64("Value", wire.value.as_deref()).map_err(|reason| DecodeError::Entry {
            index,
            key: Some(wire.key.to_string()),
            reason,
        })?;
    Ok(KvPair {
        key: wire.key.into_owned(),
        create_index: wire.create_index,
        modify_index: wire.modify_index,
        lock_index: wire.lock_index,
        flags: wire.flags,
        value,
        session: wire.session.into_owned(),
    })
}

fn event_entry(index: usize, v: &RawValue) -> Result<UserEvent, DecodeError> {
    let wire: WireUserEvent<'_> = serde_json::from_str(v.get())
        .map_err(|e| entry_error(index, v, "Name", strip_position(&e.to_string())))?;
    let payload =
        decode_b64("Payload", wire.payload.as_deref()).map_err(|reason| DecodeError::Entry {
            index,
            key: Some(wire.name.to_string()),
            reason,
        })?;
    Ok(UserEvent {
        id: wire.id.into_owned(),
        name: wire.name.into_owned(),
        payload,
        node_filter: wire.node_filter.into_owned(),
        service_filter: wire.service_filter.into_owned(),
        tag_filter: wire.tag_filter.into_owned(),
        version: wire.version,
        ltime: wire.ltime,
    })
}

fn array_of<T>(
    wt: WatchType,
    top: Top<'_>,
    mut each: impl FnMut(usize, &RawValue) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    match top {
        Top::Null => Ok(Vec::new()),
        Top::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                out.push(each(i + 1, item)?);
            }
            Ok(out)
        }
        other => Err(wrong(wt, &other)),
    }
}

fn typed<T: serde::de::DeserializeOwned>(index: usize, v: &RawValue) -> Result<T, DecodeError> {
    serde_json::from_str(v.get()).map_err(|e| DecodeError::Entry {
        index,
        key: None,
        reason: strip_position(&e.to_string()),
    })
}

/// Decodes a payload of a declared watch type.
pub fn decode(wt: WatchType, bytes: &[u8]) -> Result<Payload, DecodeError> {
    let top = parse_top(bytes)?;
    decode_top(wt, top)
}

fn decode_top(wt: WatchType, top: Top<'_>) -> Result<Payload, DecodeError> {
    Ok(match wt {
        WatchType::Key => match top {
            Top::Null => Payload::Key(None),
            Top::Object(v) => Payload::Key(Some(kv_entry(1, v)?)),
            other => return Err(wrong(wt, &other)),
        },
        WatchType::KeyPrefix => Payload::KeyPrefix(array_of(wt, top, kv_entry)?),
        WatchType::Services => match top {
            Top::Null => Payload::Services(BTreeMap::new()),
            Top::Object(v) => Payload::Services(
                typed::<BTreeMap<String, Option<Vec<String>>>>(1, v)?
                    .into_iter()
                    .map(|(k, tags)| (k, tags.unwrap_or_default()))
                    .collect(),
            ),
            other => return Err(wrong(wt, &other)),
        },
        WatchType::Nodes => Payload::Nodes(array_of(wt, top, typed)?),
        WatchType::Service => Payload::Service(array_of(wt, top, typed)?),
        WatchType::Checks => Payload::Checks(array_of(wt, top, typed)?),
        WatchType::Event => Payload::Event(array_of(wt, top, event_entry)?),
    })
}

/// Decodes a payload that must be a key or keyprefix watch's (the two handlers that read KV take
/// either): one object, an array, or `null`.
pub fn decode_kv(bytes: &[u8]) -> Result<Vec<KvPair>, DecodeError> {
    match parse_top(bytes)? {
        Top::Object(v) => Ok(vec![kv_entry(1, v)?]),
        top @ (Top::Array(_) | Top::Null) => array_of(WatchType::KeyPrefix, top, kv_entry),
        other => Err(DecodeError::WrongType {
            expected: "a key or keyprefix payload (a KV object, an array of them, or null)",
            found: kind_of_top(&other),
        }),
    }
}

/// The member names of an object (values skipped), to recognise a payload by shape; empty for
/// anything but an object.
fn member_names(v: &RawValue) -> BTreeMap<String, IgnoredAny> {
    serde_json::from_str(v.get()).unwrap_or_default()
}

/// Decodes a payload whose watch type was not declared, recognising it by shape (used by
/// tasks2consul, which may be run from a key, keyprefix or event watch). `null` and `[]` are
/// `Payload::Empty`.
pub fn detect(bytes: &[u8]) -> Result<Payload, DecodeError> {
    let top = parse_top(bytes)?;
    let wt = match &top {
        Top::Null => return Ok(Payload::Empty),
        Top::Array(items) if items.is_empty() => return Ok(Payload::Empty),
        Top::Object(o) if member_names(o).contains_key("Key") => WatchType::Key,
        Top::Object(_) => WatchType::Services,
        Top::Array(items) => {
            let first = member_names(items[0]);
            let has = |k: &str| first.contains_key(k);
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
        Top::Scalar(kind) => {
            return Err(DecodeError::WrongType {
                expected: "a Consul watch payload (JSON object, array or null)",
                found: kind,
            })
        }
    };
    decode_top(wt, top)
}
