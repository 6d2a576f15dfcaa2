//! `PUT /v1/txn`: several catalog writes applied atomically in one request (one Raft entry).
//!
//! Wire shapes (api-docs/txn.mdx; api/txn.go; answers checked against v1.14.11 by the devstack
//! double's conformance suite): the body is a JSON array of operations, each
//! `{"Node": {"Verb", "Node": api.Node}}`, `{"Service": {"Verb", "Node", "Service":
//! api.AgentService}}` or `{"Check": {"Verb", "Check": api.HealthCheck}}`. Consul decodes it
//! strictly (an unknown field is a 400): a node's meta is `Meta` here, not `NodeMeta` as in
//! `/v1/catalog/register`, and a service delete needs the service name as well as its ID.
//!
//! Answers: 200 `{"Results": [...], "Errors": null}` (each `set` gives the entry as stored,
//! deletes give nothing); 409 `{"Results": null, "Errors": [{"OpIndex", "What"}]}` when any
//! operation failed: then nothing was applied; 413 over the operation limit (64 before v1.14's
//! 128); 404/405 from servers without the endpoint.

use runtime::http::HttpRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Consul, ConsulError};

/// The most operations tasks2consul puts in one transaction: the limit of Consul before v1.14
/// (agent/txn_endpoint.go maxTxnOps = 64; v1.14.11 allows 128), so it works with both.
pub const MAX_TXN_OPS: usize = 64;

/// A catalog verb (api/txn.go NodeOp/ServiceOp/CheckOp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verb {
    #[serde(rename = "set")]
    Set,
    #[serde(rename = "cas")]
    Cas,
    #[serde(rename = "get")]
    Get,
    #[serde(rename = "delete")]
    Delete,
    #[serde(rename = "delete-cas")]
    DeleteCas,
}

/// One operation (api.TxnOp), serialized as Consul expects it (`{"Node": {...}}`, ...). The
/// entries are JSON objects in the API types' shapes (api.Node, api.AgentService,
/// api.HealthCheck).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum TxnOp {
    Node {
        #[serde(rename = "Verb")]
        verb: Verb,
        #[serde(rename = "Node")]
        node: Value,
    },
    Service {
        #[serde(rename = "Verb")]
        verb: Verb,
        #[serde(rename = "Node")]
        node: String,
        #[serde(rename = "Service")]
        service: Value,
    },
    Check {
        #[serde(rename = "Verb")]
        verb: Verb,
        #[serde(rename = "Check")]
        check: Value,
    },
}

/// One failed operation of a rolled-back transaction (structs.TxnError).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TxnError {
    #[serde(rename = "OpIndex")]
    pub op_index: usize,
    #[serde(rename = "What")]
    pub what: String,
}

/// What Consul did with a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum TxnOutcome {
    /// 200: every operation applied; one result per `set`/`cas`/`get` (`{"Node": {...}}`, ...).
    Applied(Vec<Value>),
    /// 409: nothing applied; the operations that failed and why.
    RolledBack(Vec<TxnError>),
}

#[derive(Deserialize)]
struct TxnAnswer {
    #[serde(rename = "Results", default)]
    results: Option<Vec<Value>>,
    #[serde(rename = "Errors", default)]
    errors: Option<Vec<TxnError>>,
}

impl Consul {
    /// `PUT /v1/txn` with `ops`. A 409 is an answer ([`TxnOutcome::RolledBack`]); any other
    /// non-2xx is an error (its status tells a server without the endpoint, 404/405, from a
    /// refused body, 400, or too many operations, 413).
    pub fn txn(&self, ops: &[TxnOp]) -> Result<TxnOutcome, ConsulError> {
        let body = serde_json::to_value(ops).map_err(|e| ConsulError::Unexpected {
            what: "transaction".into(),
            reason: e.to_string(),
        })?;
        let resp = self
            .http()
            .send(HttpRequest::new("PUT", "/v1/txn").json(&body))?;
        if !resp.is_success() && resp.status != 409 {
            return Err(ConsulError::from_response(
                &format!("transaction of {} operation(s)", ops.len()),
                &resp,
            ));
        }
        let answer: TxnAnswer = resp.json()?;
        match (resp.status, answer.errors) {
            (409, Some(errors)) if !errors.is_empty() => Ok(TxnOutcome::RolledBack(errors)),
            (409, _) => Err(ConsulError::Unexpected {
                what: "transaction".into(),
                reason: "409 without Errors".into(),
            }),
            _ => Ok(TxnOutcome::Applied(answer.results.unwrap_or_default())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::http::{HttpClient, HttpConfig};
    use serde_json::json;

    fn client(url: String) -> Consul {
        let mut cfg = HttpConfig::new("consul");
        cfg.backoff.attempts = 1;
        Consul::new(HttpClient::new(&[url], cfg).unwrap())
    }

    fn register(node: &str, id: &str, meta: Value) -> Vec<TxnOp> {
        vec![
            TxnOp::Node {
                verb: Verb::Set,
                node: json!({"Node": node, "Address": "10.0.0.1", "Meta": {"external-node": "true"}}),
            },
            TxnOp::Service {
                verb: Verb::Set,
                node: node.into(),
                service: json!({"ID": id, "Service": "web", "Port": 80, "Meta": meta}),
            },
            TxnOp::Check {
                verb: Verb::Set,
                check: json!({"Node": node, "CheckID": format!("{id}:h"), "Name": "h",
                              "Status": "passing", "ServiceID": id}),
            },
        ]
    }

    #[test]
    fn ops_serialize_as_consul_expects() {
        let op = TxnOp::Service {
            verb: Verb::DeleteCas,
            node: "n".into(),
            service: json!({"ID": "s", "Service": "web"}),
        };
        assert_eq!(
            serde_json::to_value(&op).unwrap(),
            json!({"Service": {"Verb": "delete-cas", "Node": "n", "Service": {"ID": "s", "Service": "web"}}})
        );
    }

    #[test]
    fn applied_rolled_back_and_refused_transactions() {
        let d = devstack::consul::Consul::start(Default::default()).unwrap();
        let c = client(d.url());
        let TxnOutcome::Applied(results) = c.txn(&register("ext-1", "web-1", json!({}))).unwrap()
        else {
            panic!("not applied")
        };
        assert_eq!(results.len(), 3);
        assert_eq!(results[1]["Service"]["ID"], "web-1");
        assert_eq!(c.health_service("web").unwrap().len(), 1);

        let mut ops = register("ext-2", "web-2", json!({}));
        ops.extend(register("ext-2", "web-3", json!({"consul-x": "1"})));
        let TxnOutcome::RolledBack(errors) = c.txn(&ops).unwrap() else {
            panic!("not rolled back")
        };
        assert_eq!(errors[0].op_index, 4, "{errors:?}");
        assert!(
            errors[0].what.contains("Invalid Service Meta"),
            "{errors:?}"
        );
        assert_eq!(c.health_service("web").unwrap().len(), 1, "nothing applied");

        d.faults().fail_next_on(
            "/v1/txn",
            1,
            devstack::http::Fault::Status {
                status: 404,
                body: "404 page not found".into(),
            },
        );
        match c.txn(&register("ext-3", "web-4", json!({}))) {
            Err(ConsulError::Http(h)) => assert_eq!(h.status(), Some(404)),
            other => panic!("{other:?}"),
        }
    }
}
