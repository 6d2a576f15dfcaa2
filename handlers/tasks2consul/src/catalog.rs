//! What tasks2consul reads of Consul's catalog answers, decoded straight into these compact
//! structs (unknown fields skipped) instead of `serde_json::Value` trees: the owned
//! registrations of a 10,000-task sync are read from 50 `GET /v1/catalog/node/<node>` answers
//! and one `GET /v1/health/state/any` of 10,000 checks (issue 13 item 4, peak RSS).
//!
//! Shapes: api-docs/catalog.mdx ("List Services for Node": `{Node, Services: {id: ...}}`),
//! health.mdx ("List Checks in State"); the Go types (api.Node, api.AgentService,
//! api.HealthCheck) always write these fields, but `Meta`, `Tags` or `Services` may be `null`.
//! As lenient as reading the JSON by hand was: a meta value or tag that is not a string is left
//! out, a port that is not a number reads as 0.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A node (api.Node), as `/v1/catalog/nodes` lists it and `/v1/catalog/node/<n>` names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Node {
    #[serde(rename = "Node", default, deserialize_with = "string")]
    pub node: Option<String>,
    #[serde(rename = "Address", default, deserialize_with = "string")]
    pub address: Option<String>,
    #[serde(rename = "Meta", default, deserialize_with = "string_map")]
    pub meta: BTreeMap<String, String>,
}

/// A service on a node (api.AgentService).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Service {
    #[serde(rename = "ID", default, deserialize_with = "string")]
    pub id: Option<String>,
    #[serde(rename = "Service", default, deserialize_with = "string")]
    pub service: Option<String>,
    #[serde(rename = "Tags", default, deserialize_with = "strings")]
    pub tags: Vec<String>,
    #[serde(rename = "Address", default, deserialize_with = "string")]
    pub address: Option<String>,
    #[serde(rename = "Port", default, deserialize_with = "number")]
    pub port: u64,
    #[serde(rename = "Meta", default, deserialize_with = "string_map")]
    pub meta: BTreeMap<String, String>,
}

/// `GET /v1/catalog/node/<node>`: the node and its services by ID.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NodeServices {
    #[serde(rename = "Node", default)]
    pub node: Option<Node>,
    #[serde(rename = "Services", default, deserialize_with = "services")]
    pub services: BTreeMap<String, Service>,
}

/// A check (api.HealthCheck): the fields that tell a service's mirrored health and its checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Check {
    #[serde(rename = "Node", default, deserialize_with = "string")]
    pub node: Option<String>,
    #[serde(rename = "CheckID", default, deserialize_with = "string")]
    pub check_id: Option<String>,
    #[serde(rename = "Status", default, deserialize_with = "string")]
    pub status: Option<String>,
    #[serde(rename = "ServiceID", default, deserialize_with = "string")]
    pub service_id: Option<String>,
}

/// One `/v1/health/service/<name>` entry (`{Node, Service, Checks}`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HealthEntry {
    #[serde(rename = "Node", default)]
    pub node: Option<Node>,
    #[serde(rename = "Service", default)]
    pub service: Option<Service>,
    #[serde(rename = "Checks", default, deserialize_with = "checks")]
    pub checks: Vec<Check>,
}

/// A string, or `None` for anything else.
fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

fn number<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(Value::deserialize(d)?.as_u64().unwrap_or(0))
}

/// The string elements of an array (none for `null` or anything else).
fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(a) => a
            .into_iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    })
}

/// The string-valued entries of an object (none for `null` or anything else).
fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Object(m) => m
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s)),
                _ => None,
            })
            .collect(),
        _ => BTreeMap::new(),
    })
}

fn services<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Service>, D::Error> {
    Ok(Option::<BTreeMap<String, Service>>::deserialize(d)?.unwrap_or_default())
}

fn checks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Check>, D::Error> {
    Ok(Option::<Vec<Check>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_decode_leniently_into_what_tasks2consul_reads() {
        let n: NodeServices = serde_json::from_value(json!({
            "Node": {"ID": "x", "Node": "marathon-h1", "Address": "10.0.0.1",
                     "TaggedAddresses": {"lan": "10.0.0.1"}, "Meta": {"external-node": "true", "n": 1},
                     "CreateIndex": 5},
            "Services": {"s1": {"ID": "s1", "Service": "web", "Tags": null, "Address": "",
                                "Port": 31000, "Meta": null, "Weights": {"Passing": 1},
                                "Proxy": {"Mode": ""}, "Connect": {}},
                         "s2": {"ID": "s2", "Service": "web", "Tags": ["a", 1], "Port": "x",
                                "Meta": {"k": "v"}}}
        }))
        .unwrap();
        let node = n.node.unwrap();
        assert_eq!(node.node.as_deref(), Some("marathon-h1"));
        assert_eq!(node.meta.len(), 1, "non-string meta left out");
        assert_eq!(n.services["s1"].port, 31000);
        assert!(n.services["s1"].meta.is_empty() && n.services["s1"].tags.is_empty());
        assert_eq!(n.services["s2"].tags, vec!["a".to_string()]);
        assert_eq!(n.services["s2"].port, 0);
        let none: NodeServices =
            serde_json::from_value(json!({"Node": null, "Services": null})).unwrap();
        assert!(none.node.is_none() && none.services.is_empty());
        let checks: Vec<Check> = serde_json::from_value(json!([
            {"Node": "n", "CheckID": "c", "Name": "x", "Status": "passing", "ServiceID": "s",
             "Definition": {}, "ServiceTags": []}
        ]))
        .unwrap();
        assert_eq!(checks[0].status.as_deref(), Some("passing"));
    }
}
