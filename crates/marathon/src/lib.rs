//! marathon: clients for Marathon (apps, deployments) and Chronos (scheduled jobs), their
//! documents, and the normalization that makes desired and live definitions comparable.
//!
//! For: typed calls over `runtime::http::HttpClient` (fail-over across an HA set, retries,
//! redaction) that turn Marathon's answers into errors a person can act on (409 locked vs 409
//! exists, 422 details per field); app id rules and group flattening ([`app`]); Chronos job
//! checks and parents-first ordering ([`job`]); schedule equality that survives Chronos's own
//! rewriting ([`schedule`]); normalization for diffs ([`normalize`]) and readable per-field
//! diffs ([`diff`]). Documents stay `serde_json::Value` so unknown fields survive.
//! Not for: reading Consul KV or deciding what to deploy (kv2jobs) or register (tasks2consul).

pub mod app;
mod chronos;
mod client;
pub mod diff;
mod error;
pub mod job;
pub mod normalize;
pub mod schedule;

pub use chronos::{Chronos, ChronosError};
pub use client::{DeployResult, Marathon};
pub use error::{FieldError, MarathonError};
