//! Wire types of the watch payloads, as Go's encoding/json writes the api package's structs.

use std::borrow::Cow;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One KV entry (api.KVPair). `value` is the base64-decoded `Value`; `None` for a folder key or an
/// empty value (the agent writes `"Value":null` for both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPair {
    pub key: String,
    pub create_index: u64,
    pub modify_index: u64,
    pub lock_index: u64,
    pub flags: u64,
    pub value: Option<Vec<u8>>,
    pub session: String,
}

impl KvPair {
    /// A folder key: it ends in `/` and has no value (git2consul and the UI create these).
    pub fn is_folder(&self) -> bool {
        self.key.ends_with('/') && self.value.as_deref().is_none_or(|v| v.is_empty())
    }

    /// The value as UTF-8 text (empty for no value).
    pub fn value_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(self.value.as_deref().unwrap_or_default())
    }

    /// Re-encodes the pair as the agent does (for replay tools and the watch runner).
    pub fn to_wire(&self) -> Value {
        serde_json::json!({
            "Key": self.key,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
            "LockIndex": self.lock_index,
            "Flags": self.flags,
            "Value": self.value.as_ref().map(|v| base64::engine::general_purpose::STANDARD.encode(v)),
            "Session": self.session,
        })
    }
}

/// The raw shape of a KVPair on the wire, before base64 decoding; strings borrowed from the
/// payload where they hold no escape.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct WireKvPair<'a> {
    #[serde(borrow)]
    pub key: Cow<'a, str>,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
    #[serde(default)]
    pub lock_index: u64,
    #[serde(default)]
    pub flags: u64,
    #[serde(default, borrow)]
    pub value: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub session: Cow<'a, str>,
}

/// A catalog node (api.Node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    #[serde(default, rename = "ID")]
    pub id: String,
    pub node: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub datacenter: String,
    #[serde(default)]
    pub tagged_addresses: Option<Map<String, Value>>,
    #[serde(default)]
    pub meta: Option<Map<String, Value>>,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

/// One entry of a `service` watch (api.ServiceEntry). The agent's field set varies by version, so
/// the service and checks are kept as JSON objects with the common fields read leniently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceEntry {
    pub node: Node,
    pub service: Map<String, Value>,
    #[serde(default)]
    pub checks: Option<Vec<HealthCheck>>,
}

/// A health check (api.HealthCheck).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheck {
    #[serde(default)]
    pub node: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
    #[serde(default)]
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub notes: String,
    #[serde(default)]
    pub output: String,
    #[serde(default, rename = "ServiceID")]
    pub service_id: String,
    #[serde(default)]
    pub service_name: String,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A user event (api.UserEvent), with `payload` base64-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEvent {
    pub id: String,
    pub name: String,
    pub payload: Option<Vec<u8>>,
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
    pub version: u64,
    pub ltime: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct WireUserEvent<'a> {
    #[serde(rename = "ID", borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(default, borrow)]
    pub payload: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub node_filter: Cow<'a, str>,
    #[serde(default, borrow)]
    pub service_filter: Cow<'a, str>,
    #[serde(default, borrow)]
    pub tag_filter: Cow<'a, str>,
    #[serde(default)]
    pub version: u64,
    #[serde(default, rename = "LTime")]
    pub ltime: u64,
}
