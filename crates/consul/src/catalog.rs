//! Catalog and health: register/deregister on (external) nodes, list services, read the
//! instances of one service with their node and checks.
//!
//! Wire shapes: api-docs/catalog.mdx and health.mdx (shared/reference/consul-watches-and-api.md
//! §4). Catalog registrations are not run by any agent: a check registered here keeps the status
//! it was written with ("does not setup the script, TTL, or HTTP check").

use std::collections::BTreeMap;

use runtime::http::{HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::{encode_path, encode_query, Consul, ConsulError};

impl Consul {
    /// `PUT /v1/catalog/register` with a `CatalogRegistration` body (`Node`, `Address`,
    /// `NodeMeta`, `Service{ID, Service, Tags, Address, Port, Meta}`, `Check`/`Checks`, …).
    /// Consul answers `true`; `service` names the registration in errors.
    pub fn catalog_register(&self, service: &str, body: &Value) -> Result<(), ConsulError> {
        let resp = self
            .http()
            .send(HttpRequest::new("PUT", "/v1/catalog/register").json(body))?;
        if !resp.is_success() {
            return Err(ConsulError::from_response(
                &format!("catalog registration of service {service:?}"),
                &resp,
            ));
        }
        Ok(())
    }

    /// `PUT /v1/catalog/deregister` of one service on `node` (its checks go with it). Consul
    /// answers `true` also when the service was not there, so this is idempotent.
    pub fn catalog_deregister_service(
        &self,
        node: &str,
        service_id: &str,
    ) -> Result<(), ConsulError> {
        let body = json!({ "Node": node, "ServiceID": service_id });
        let resp = self
            .http()
            .send(HttpRequest::new("PUT", "/v1/catalog/deregister").json(&body))?;
        if !resp.is_success() {
            return Err(ConsulError::from_response(
                &format!("catalog deregistration of service {service_id:?} on node {node:?}"),
                &resp,
            ));
        }
        Ok(())
    }

    /// `PUT /v1/catalog/deregister` of a whole node with every service and check on it.
    pub fn catalog_deregister_node(&self, node: &str) -> Result<(), ConsulError> {
        let body = json!({ "Node": node });
        let resp = self
            .http()
            .send(HttpRequest::new("PUT", "/v1/catalog/deregister").json(&body))?;
        if !resp.is_success() {
            return Err(ConsulError::from_response(
                &format!("catalog deregistration of node {node:?}"),
                &resp,
            ));
        }
        Ok(())
    }

    /// `GET /v1/catalog/services[?node-meta=k:v]`: service name → tags. The node-meta filter
    /// narrows the answer to services on nodes carrying that meta (servers that ignore it return
    /// every service, which is only slower).
    pub fn catalog_services(
        &self,
        node_meta: Option<(&str, &str)>,
    ) -> Result<BTreeMap<String, Vec<String>>, ConsulError> {
        let path = match node_meta {
            Some((k, v)) => format!(
                "/v1/catalog/services?node-meta={}",
                encode_query(&format!("{k}:{v}"))
            ),
            None => "/v1/catalog/services".to_string(),
        };
        let resp = self.http().get(&path)?;
        if !resp.is_success() {
            return Err(ConsulError::from_response("catalog service list", &resp));
        }
        let v: Value = resp.json()?;
        let Value::Object(map) = v else {
            return Err(ConsulError::Unexpected {
                what: "catalog service list".into(),
                reason: "not a JSON object".into(),
            });
        };
        Ok(map
            .into_iter()
            .map(|(name, tags)| {
                let tags = tags
                    .as_array()
                    .map(|t| {
                        t.iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                (name, tags)
            })
            .collect())
    }

    /// `GET /v1/health/service/<name>`: every instance as `{Node, Service, Checks}` (all states).
    pub fn health_service(&self, name: &str) -> Result<Vec<Value>, ConsulError> {
        let resp = self
            .http()
            .get(&format!("/v1/health/service/{}", encode_path(name)))?;
        if resp.status == 404 {
            return Ok(Vec::new());
        }
        if !resp.is_success() {
            return Err(ConsulError::from_response(
                &format!("health of service {name:?}"),
                &resp,
            ));
        }
        match resp.json::<Value>()? {
            Value::Array(items) => Ok(items),
            Value::Null => Ok(Vec::new()),
            _ => Err(ConsulError::Unexpected {
                what: format!("health of service {name:?}"),
                reason: "not a JSON array".into(),
            }),
        }
    }

    /// `GET /v1/catalog/nodes[?node-meta=k:v]`: every node (`Node`, `Address`, `Meta`, …). The
    /// node-meta filter is applied by Consul; servers that ignore it return every node.
    ///
    /// This read and the other catalog/health lists decode into the caller's `T`: a `Value`,
    /// or a struct of just the fields it reads, so a large answer is never held as a `Value`
    /// tree (issue 13 item 4).
    pub fn catalog_nodes<T: DeserializeOwned>(
        &self,
        node_meta: Option<(&str, &str)>,
    ) -> Result<Vec<T>, ConsulError> {
        let path = match node_meta {
            Some((k, v)) => format!(
                "/v1/catalog/nodes?node-meta={}",
                encode_query(&format!("{k}:{v}"))
            ),
            None => "/v1/catalog/nodes".to_string(),
        };
        let resp = self.http().get(&path)?;
        if !resp.is_success() {
            return Err(ConsulError::from_response("catalog node list", &resp));
        }
        list(&resp, "catalog node list")
    }

    /// `GET /v1/health/state/<state>` (`any`, `passing`, `warning`, `critical`): every check in
    /// that state across the datacenter (`Node`, `CheckID`, `Status`, `ServiceID`, …).
    pub fn health_state<T: DeserializeOwned>(&self, state: &str) -> Result<Vec<T>, ConsulError> {
        let resp = self
            .http()
            .get(&format!("/v1/health/state/{}", encode_path(state)))?;
        if !resp.is_success() {
            return Err(ConsulError::from_response(
                &format!("checks in state {state:?}"),
                &resp,
            ));
        }
        list(&resp, "health state")
    }

    /// `GET /v1/catalog/node/<node>`: `{Node, Services}` or `None` when the node is unknown.
    pub fn catalog_node<T: DeserializeOwned>(&self, node: &str) -> Result<Option<T>, ConsulError> {
        let resp = self
            .http()
            .get(&format!("/v1/catalog/node/{}", encode_path(node)))?;
        if resp.status == 404 {
            return Ok(None);
        }
        if !resp.is_success() {
            return Err(ConsulError::from_response(
                &format!("catalog node {node:?}"),
                &resp,
            ));
        }
        Ok(resp.json::<Option<T>>()?)
    }
}

/// A JSON array answer decoded into `T`s, straight from the body (`null`: none). Any other
/// JSON is an unexpected answer; what is not JSON at all, a decode error.
fn list<T: DeserializeOwned>(resp: &HttpResponse, what: &str) -> Result<Vec<T>, ConsulError> {
    match resp.body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[' | b'n') => Ok(resp.json::<Option<Vec<T>>>()?.unwrap_or_default()),
        _ => {
            resp.json::<Value>()?;
            Err(ConsulError::Unexpected {
                what: what.to_string(),
                reason: "not a JSON array".into(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::http::{HttpClient, HttpConfig};

    fn client(url: String) -> Consul {
        let mut cfg = HttpConfig::new("consul");
        cfg.backoff.attempts = 1;
        Consul::new(HttpClient::new(&[url], cfg).unwrap())
    }

    #[test]
    fn register_read_back_and_deregister_on_an_external_node() {
        let d = devstack::consul::Consul::start(Default::default()).unwrap();
        let c = client(d.url());
        let body = json!({
            "Node": "ext-1", "Address": "10.0.0.1",
            "NodeMeta": {"external-node": "true"},
            "Service": {"ID": "web-1", "Service": "web", "Port": 80, "Meta": {"k": "v"}},
            "Check": {"Node": "ext-1", "CheckID": "web-1:h", "Name": "h", "Status": "critical",
                      "ServiceID": "web-1"}
        });
        c.catalog_register("web-1", &body).unwrap();
        assert!(c.catalog_services(None).unwrap().contains_key("web"));
        let nodes: Vec<Value> = c.catalog_nodes(Some(("external-node", "true"))).unwrap();
        assert!(nodes.iter().any(|n| n["Node"] == "ext-1"));
        let node: Value = c.catalog_node("ext-1").unwrap().unwrap();
        assert_eq!(node["Services"]["web-1"]["Meta"]["k"], "v");
        let health = c.health_service("web").unwrap();
        assert_eq!(health[0]["Checks"][0]["Status"], "critical");
        assert!(c
            .health_state::<Value>("critical")
            .unwrap()
            .iter()
            .any(|c| c["CheckID"] == "web-1:h"));
        c.catalog_deregister_service("ext-1", "web-1").unwrap();
        assert!(c.health_service("web").unwrap().is_empty());
        c.catalog_deregister_node("ext-1").unwrap();
        assert!(c.catalog_node::<Value>("ext-1").unwrap().is_none());
        // Consul takes any state name but refuses an empty one (400).
        assert!(c.health_state::<Value>("bogus").unwrap().is_empty());
        assert!(c.health_state::<Value>("").is_err());
    }
}
