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

use runtime::http::HttpClient;

pub use error::ConsulError;
pub use kv::validate_key;
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

/// Percent-encodes a KV key or other path segment(s) for a URL path, keeping `/`.
pub fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Percent-encodes a query parameter value.
pub fn encode_query(s: &str) -> String {
    encode_path(s).replace('/', "%2F")
}
