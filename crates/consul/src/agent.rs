//! Agent: local service registration on the agent this client talks to (agent mode).
//!
//! api-docs/agent/service.mdx (shared/reference/consul-watches-and-api.md §4): register answers
//! 200 with an empty body; deregister of an unknown ID answers 404 on current Consul ("Unknown
//! service ID") although the docs say "no action is taken", so 404 counts as done.

use runtime::http::HttpRequest;
use serde_json::{Map, Value};

use crate::{encode_path, Consul, ConsulError};

impl Consul {
    /// `PUT /v1/agent/service/register[?replace-existing-checks=true]` with an
    /// `AgentServiceRegistration` body (`ID`, `Name`, `Tags`, `Address`, `Port`, `Meta`,
    /// `Check`/`Checks`). With `replace_checks`, checks of the service missing from the body
    /// are removed, so a registration converges to exactly what was sent (the official Go client
    /// sends it as `replace-existing-checks=true`, hashicorp/consul api/agent.go serviceRegister).
    pub fn agent_service_register(
        &self,
        body: &Value,
        replace_checks: bool,
    ) -> Result<(), ConsulError> {
        let id = body
            .get("ID")
            .or_else(|| body.get("Name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let path = if replace_checks {
            "/v1/agent/service/register?replace-existing-checks=true"
        } else {
            "/v1/agent/service/register"
        };
        let resp = self.http().send(HttpRequest::new("PUT", path).json(body))?;
        if !resp.is_success() {
            return Err(ConsulError::from_response(
                &format!("agent registration of service {id:?}"),
                &resp,
            ));
        }
        Ok(())
    }

    /// `PUT /v1/agent/service/deregister/<id>`. Returns false when the agent did not know the
    /// service (404), which callers treat as already done.
    pub fn agent_service_deregister(&self, service_id: &str) -> Result<bool, ConsulError> {
        let resp = self.http().send(HttpRequest::new(
            "PUT",
            &format!("/v1/agent/service/deregister/{}", encode_path(service_id)),
        ))?;
        if resp.status == 404 {
            return Ok(false);
        }
        if !resp.is_success() {
            return Err(ConsulError::from_response(
                &format!("agent deregistration of service {service_id:?}"),
                &resp,
            ));
        }
        Ok(true)
    }

    /// `GET /v1/agent/services`: service ID → `AgentService` (`ID`, `Service`, `Tags`, `Meta`,
    /// `Port`, `Address`, …) registered on this agent.
    pub fn agent_services(&self) -> Result<Map<String, Value>, ConsulError> {
        let resp = self.http().get("/v1/agent/services")?;
        if !resp.is_success() {
            return Err(ConsulError::from_response("agent service list", &resp));
        }
        match resp.json::<Value>()? {
            Value::Object(m) => Ok(m),
            Value::Null => Ok(Map::new()),
            _ => Err(ConsulError::Unexpected {
                what: "agent service list".into(),
                reason: "not a JSON object".into(),
            }),
        }
    }

    /// `PUT /v1/agent/check/{pass|warn|fail}/<check_id>[?note=]` for TTL checks.
    pub fn agent_check_update(
        &self,
        check_id: &str,
        status: &str,
        note: Option<&str>,
    ) -> Result<(), ConsulError> {
        let verb = match status {
            "passing" | "pass" => "pass",
            "warning" | "warn" => "warn",
            _ => "fail",
        };
        let mut path = format!("/v1/agent/check/{verb}/{}", encode_path(check_id));
        if let Some(n) = note {
            path.push_str(&format!("?note={}", crate::encode_query(n)));
        }
        let resp = self.http().send(HttpRequest::new("PUT", &path))?;
        if !resp.is_success() {
            return Err(ConsulError::from_response(
                &format!("agent check update {check_id:?}"),
                &resp,
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use runtime::http::{HttpClient, HttpConfig};
    use serde_json::json;

    use crate::Consul;

    #[test]
    fn register_list_and_deregister_twice() {
        let d = devstack::consul::Consul::start(Default::default()).unwrap();
        let mut cfg = HttpConfig::new("consul");
        cfg.backoff.attempts = 1;
        let c = Consul::new(HttpClient::new(&[d.url()], cfg).unwrap());
        let body = json!({"ID": "api-1", "Name": "api", "Port": 8080,
            "Checks": [{"CheckID": "api-1:ttl", "Name": "ttl", "TTL": "30s"}]});
        c.agent_service_register(&body, true).unwrap();
        assert!(c.agent_services().unwrap().contains_key("api-1"));
        c.agent_check_update("api-1:ttl", "passing", Some("ok"))
            .unwrap();
        assert!(c.agent_service_deregister("api-1").unwrap());
        assert!(!c.agent_service_deregister("api-1").unwrap());
        assert!(c
            .agent_service_register(&json!({"ID": "x"}), false)
            .is_err());
    }
}
