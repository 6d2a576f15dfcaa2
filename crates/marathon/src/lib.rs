//! marathon: clients for Marathon (apps, deployments) and Chronos (scheduled jobs), their
//! documents, and the normalization that makes desired and live definitions comparable.
//!
//! For: typed calls over `runtime::http::HttpClient` (fail-over across an HA set, retries,
//! redaction) that turn Marathon's answers into errors a person can act on (409 locked vs 409
//! exists, 422 details per field). Documents stay `serde_json::Value` so unknown fields survive.
//! Not for: reading Consul KV or deciding what to deploy (kv2jobs) or register (tasks2consul).

mod client;
mod error;

pub use client::{DeployResult, Marathon};
pub use error::{FieldError, MarathonError};
