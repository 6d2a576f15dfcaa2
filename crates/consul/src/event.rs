//! User events: fire.

use runtime::http::HttpRequest;

use crate::{encode_path, Consul, ConsulError};

impl Consul {
    /// Fires user event `name` with `payload`; returns the event ID.
    pub fn event_fire(&self, name: &str, payload: &[u8]) -> Result<String, ConsulError> {
        if name.is_empty() || name.starts_with('_') || name.chars().any(char::is_control) {
            return Err(ConsulError::InvalidKey {
                key: name.to_string(),
                reason: "event names must be non-empty and not start with _",
            });
        }
        let resp = self.http.send(
            HttpRequest::new("PUT", &format!("/v1/event/fire/{}", encode_path(name)))
                .body(payload.to_vec(), "application/octet-stream"),
        )?;
        if !resp.is_success() {
            return Err(ConsulError::from_response(
                &format!("event fire {name:?}"),
                &resp,
            ));
        }
        let v: serde_json::Value = resp.json()?;
        Ok(v.get("ID")
            .and_then(|i| i.as_str())
            .unwrap_or_default()
            .to_string())
    }
}
