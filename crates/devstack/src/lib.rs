//! devstack: faithful HTTP doubles of the Consul, Marathon and Chronos APIs that shipwatch's
//! handlers use, plus a watch runner that invokes handlers exactly as a Consul agent does.
//!
//! For: tests and demos on machines where the real servers cannot be installed. The doubles
//! behave like the real servers (status codes, headers, plain-text or JSON error bodies, blocking
//! queries, deployment locks), not like the handlers expect; every behaviour cites its source.
//! Not for: production code paths. Nothing in `handlers/` depends on this crate outside tests.

pub mod agent;
pub mod bins;
pub mod chronos;
pub mod consul;
pub mod daemon;
pub mod demo;
pub mod git2consul;
pub mod http;
pub mod marathon;
pub mod payload;
pub mod pipeline;
pub mod runner;
pub mod sinks;
pub mod stack;
pub mod tls;
