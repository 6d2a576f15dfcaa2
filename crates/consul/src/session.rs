//! Sessions: create (TTL, behavior, lock-delay), renew, destroy.

use std::time::Duration;

use runtime::http::HttpRequest;
use serde_json::json;

use crate::{encode_path, Consul, ConsulError};

impl Consul {
    /// Creates a session with a TTL (Consul accepts 10s to 86400s and answers an error for
    /// anything else) and no health checks, so that
    /// only the TTL (not this node's serfHealth) decides when a crashed holder's lock is freed.
    pub fn session_create(
        &self,
        name: &str,
        ttl: Duration,
        lock_delay: Duration,
    ) -> Result<String, ConsulError> {
        let body = json!({
            "Name": name,
            "TTL": go_duration(ttl),
            "Behavior": "release",
            "LockDelay": go_duration(lock_delay),
            "Checks": [],
            "NodeChecks": [],
        });
        let resp = self
            .http
            .send(HttpRequest::new("PUT", "/v1/session/create").json(&body))?;
        if !resp.is_success() {
            return Err(ConsulError::from_response("session create", &resp));
        }
        let v: serde_json::Value = resp.json()?;
        v.get("ID")
            .and_then(|i| i.as_str())
            .map(str::to_string)
            .ok_or_else(|| ConsulError::Unexpected {
                what: "session create".into(),
                reason: "no ID in the answer".into(),
            })
    }

    /// Renews a session; `false` when Consul no longer knows it (expired).
    pub fn session_renew(&self, id: &str) -> Result<bool, ConsulError> {
        let resp = self.http.send(HttpRequest::new(
            "PUT",
            &format!("/v1/session/renew/{}", encode_path(id)),
        ))?;
        match resp.status {
            404 => Ok(false),
            s if (200..300).contains(&s) => Ok(true),
            _ => Err(ConsulError::from_response("session renew", &resp)),
        }
    }

    /// Destroys a session (idempotent).
    pub fn session_destroy(&self, id: &str) -> Result<(), ConsulError> {
        let resp = self.http.send(HttpRequest::new(
            "PUT",
            &format!("/v1/session/destroy/{}", encode_path(id)),
        ))?;
        if !resp.is_success() {
            return Err(ConsulError::from_response("session destroy", &resp));
        }
        Ok(())
    }
}

/// A duration as Go's time.ParseDuration reads it (`15s`, `1500ms`).
fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
