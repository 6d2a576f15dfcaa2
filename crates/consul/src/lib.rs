//! consul: the Consul HTTP API client the handlers share (KV, sessions and locks, events,
//! catalog, agent, health), over `runtime::http::HttpClient` (timeouts, retries, redaction).
//!
//! For: typed calls that return what Consul answered, with errors that name the key or service.
//! Not for: deciding what to register or deploy (handlers), or decoding watch payloads (`watch`).

pub mod agent;
pub mod catalog;
mod error;
mod event;
mod kv;
pub mod lock;
mod session;
pub mod txn;

use runtime::http::HttpClient;
pub use runtime::http::{encode_path, encode_query};

pub use error::ConsulError;
pub use kv::validate_key;
pub use txn::{TxnError, TxnOp, TxnOutcome, Verb};
pub use watch::KvPair;

/// A Consul client. `Send + Sync`: the lock's renewal thread shares it.
#[derive(Debug)]
pub struct Consul {
    http: HttpClient,
}

impl Consul {
    pub fn new(http: HttpClient) -> Consul {
        Consul { http }
    }

    pub fn http(&self) -> &HttpClient {
        &self.http
    }
}
