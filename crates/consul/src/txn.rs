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
//! 128) with the body `Transaction contains too many operations (N > M)`, or over the request
//! size with `Request body too large, max size: N bytes` (agent/txn_endpoint.go convertOps);
//! 404/405 from servers without the endpoint.

use runtime::http::HttpRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Consul, ConsulError};

/// The most operations a transaction starts with: the limit of Consul 1.14 and later
/// (agent/txn_endpoint.go `maxTxnOps = 128`, raised from 64 by hashicorp/consul PR #14599
/// "increase the size of txn to support vault", merged 2022-09, first released in 1.14; docs
/// hashicorp/consul PR #22485). An older server answers 413 [`TOO_MANY_OPS`] naming its own limit,
/// and [`TxnOutcome::TooManyOps`] lets the caller adopt it.
pub const MAX_TXN_OPS: usize = 128;

/// The limit of Consul before 1.14 (agent/txn_endpoint.go `maxTxnOps = 64`).
pub const PRE_1_14_TXN_OPS: usize = 64;

/// The start of the 413 body of a transaction over the server's operation limit:
/// `fmt.Fprintf(resp, "Transaction contains too many operations (%d > %d)", size, maxTxnOps)`
/// (agent/txn_endpoint.go, the same text before and after 1.14; seen in the v1.14.11 binary and
/// compared with the devstack double by its conformance suite, step "txn too many ops").
pub const TOO_MANY_OPS: &str = "Transaction contains too many operations";

/// `Some((sent, max))` for the 413 body of a transaction over the operation limit
/// (`Transaction contains too many operations (130 > 64)`), `None` for any other body (a
/// `Request body too large, max size: N bytes` is about bytes, not operations).
pub fn parse_too_many_ops(body: &str) -> Option<(usize, usize)> {
    let rest = body.trim().strip_prefix(TOO_MANY_OPS)?.trim_start();
    let inner = rest.strip_prefix('(')?.split(')').next()?;
    let (sent, max) = inner.split_once('>')?;
    Some((sent.trim().parse().ok()?, max.trim().parse().ok()?))
}

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
    /// 413 `Transaction contains too many operations (sent > max)`: nothing applied; the server
    /// takes at most `max` operations per transaction (a Consul before 1.14: 64).
    TooManyOps { sent: usize, max: usize },
}

#[derive(Deserialize)]
struct TxnAnswer {
    #[serde(rename = "Results", default)]
    results: Option<Vec<Value>>,
    #[serde(rename = "Errors", default)]
    errors: Option<Vec<TxnError>>,
}

impl Consul {
    /// `PUT /v1/txn` with `ops`. A 409 is an answer ([`TxnOutcome::RolledBack`]), and so is a
    /// 413 over the operation limit ([`TxnOutcome::TooManyOps`]); any other non-2xx is an error
    /// (its status tells a server without the endpoint, 404/405, from a refused body, 400, or a
    /// body over the size limit, 413).
    pub fn txn(&self, ops: &[TxnOp]) -> Result<TxnOutcome, ConsulError> {
        let body = serde_json::to_value(ops).map_err(|e| ConsulError::Unexpected {
            what: "transaction".into(),
            reason: e.to_string(),
        })?;
        let resp = self
            .http()
            .send(HttpRequest::new("PUT", "/v1/txn").json(&body))?;
        if resp.status == 413 {
            if let Some((sent, max)) = parse_too_many_ops(&String::from_utf8_lossy(&resp.body)) {
                return Ok(TxnOutcome::TooManyOps { sent, max });
            }
        }
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
    fn the_413_body_over_the_operation_limit_names_the_limit() {
        // agent/txn_endpoint.go: "Transaction contains too many operations (%d > %d)".
        assert_eq!(
            parse_too_many_ops("Transaction contains too many operations (130 > 64)"),
            Some((130, 64))
        );
        assert_eq!(
            parse_too_many_ops("Transaction contains too many operations (129 > 128)\n"),
            Some((129, 128))
        );
        // The other 413 of /v1/txn is about bytes: not an operation limit.
        assert_eq!(
            parse_too_many_ops("Request body too large, max size: 524288 bytes"),
            None
        );
        for bad in [
            "",
            "Transaction contains too many operations",
            "Transaction contains too many operations (x > 64)",
            "Transaction contains too many operations (130 < 64)",
            "Transaction contains too many operations (130 > )",
            "transaction contains too many operations (130 > 64)",
        ] {
            assert_eq!(parse_too_many_ops(bad), None, "{bad:?}");
        }
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

        // A server with a lower limit (a Consul before 1.14 takes 64) names it in its 413.
        d.set_max_txn_ops(4);
        let mut ops = register("ext-4", "web-5", json!({}));
        ops.extend(register("ext-4", "web-6", json!({})));
        assert_eq!(
            c.txn(&ops).unwrap(),
            TxnOutcome::TooManyOps { sent: 6, max: 4 }
        );
        assert_eq!(c.health_service("web").unwrap().len(), 1, "nothing applied");
        // A 413 about the body's size is an error, as before.
        d.faults().fail_next_on(
            "/v1/txn",
            1,
            devstack::http::Fault::Status {
                status: 413,
                body: "Request body too large, max size: 524288 bytes".into(),
            },
        );
        match c.txn(&register("ext-5", "web-7", json!({}))) {
            Err(ConsulError::Http(h)) => assert_eq!(h.status(), Some(413)),
            other => panic!("{other:?}"),
        }
    }
}
