//! watch: decode what a Consul agent writes to a watch handler's stdin, and replayed Marathon
//! event streams.
//!
//! For: turning stdin bytes into typed values, with errors that say what was wrong and where
//! (`entry 3 (key "jobs/api.json"): Value is not valid base64`). The agent re-encodes the API
//! result with Go's encoding/json (one compact line, PascalCase fields, `[]byte` as base64 or
//! `null`; see shared/reference/consul-watches-and-api.md §1); `null` is a valid payload for a
//! missing key or an empty prefix, and unknown fields are accepted.
//! Not for: any network I/O, reading stdin (the `runtime` crate drains it), or deciding what a
//! payload means to a handler.

mod decode;
mod stream;
mod types;

pub use decode::{decode, decode_kv, detect, DecodeError, Payload, WatchType};
pub use stream::{EventStream, StreamError, StreamEvent};
pub use types::{HealthCheck, KvPair, Node, ServiceEntry, UserEvent};

/// The agent's `CONSUL_INDEX` for this invocation, if set and a valid u64.
///
/// For key/keyprefix watches it is the Raft index of the result; for event watches it is derived
/// from the last event's UUID and is not monotonic (consul api/watch/funcs.go eventWatch), so it
/// must never be compared with `<`.
pub fn consul_index_from_env() -> Option<u64> {
    parse_consul_index(std::env::var("CONSUL_INDEX").ok().as_deref())
}

/// Parses a `CONSUL_INDEX` value; anything but a decimal u64 is treated as absent.
pub fn parse_consul_index(value: Option<&str>) -> Option<u64> {
    value.and_then(|v| v.trim().parse::<u64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consul_index_parses_u64_only() {
        assert_eq!(parse_consul_index(Some("123")), Some(123));
        assert_eq!(
            parse_consul_index(Some("18446744073709551615")),
            Some(u64::MAX)
        );
        assert_eq!(parse_consul_index(Some("-1")), None);
        assert_eq!(parse_consul_index(Some("abc")), None);
        assert_eq!(parse_consul_index(None), None);
    }
}
