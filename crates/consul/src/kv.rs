//! KV: GET (404 = missing), recurse, PUT with cas/acquire/release, DELETE.

use std::time::Duration;

use runtime::http::HttpRequest;

use crate::{encode_path, encode_query, Consul, ConsulError, KvPair};

/// Keys that may be read or written: not empty, no leading `/` (the Go client refuses it), no
/// `..` segment, no control characters.
pub fn validate_key(key: &str) -> Result<(), ConsulError> {
    let bad = |reason| {
        Err(ConsulError::InvalidKey {
            key: key.chars().take(200).collect(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.starts_with('/') {
        return bad("starts with /");
    }
    if key.split('/').any(|s| s == "..") {
        return bad("has a .. segment");
    }
    if key.chars().any(char::is_control) {
        return bad("has control characters");
    }
    Ok(())
}

impl Consul {
    /// One key, or `None` when it does not exist.
    pub fn kv_get(&self, key: &str) -> Result<Option<KvPair>, ConsulError> {
        validate_key(key)?;
        let resp = self.http.get(&format!("/v1/kv/{}", encode_path(key)))?;
        if resp.status == 404 {
            return Ok(None);
        }
        if !resp.is_success() {
            return Err(ConsulError::from_response(
                &format!("read of key {key:?}"),
                &resp,
            ));
        }
        let mut pairs = decode_pairs(&resp.body, key)?;
        Ok(pairs.pop())
    }

    /// One key (or `None`) and the `X-Consul-Index`, as a blocking query: Consul holds the answer
    /// until the key changes past `index` or `wait` runs out (api-docs/features/blocking.mdx;
    /// for an existing key the index is its ModifyIndex, kvs_endpoint.go). "No guarantee of a
    /// change": callers compare what comes back.
    pub fn kv_get_blocking(
        &self,
        key: &str,
        index: u64,
        wait: Duration,
    ) -> Result<(Option<KvPair>, u64), ConsulError> {
        validate_key(key)?;
        let path = format!(
            "/v1/kv/{}?index={index}&wait={}ms",
            encode_path(key),
            wait.as_millis()
        );
        // Consul adds up to wait/16 of jitter (blocking.mdx).
        let req = HttpRequest::new("GET", &path).timeout(wait + wait / 16 + Duration::from_secs(5));
        let resp = self.http.send(req)?;
        let index = resp
            .header("X-Consul-Index")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if resp.status == 404 {
            return Ok((None, index));
        }
        if !resp.is_success() {
            return Err(ConsulError::from_response(
                &format!("read of key {key:?}"),
                &resp,
            ));
        }
        Ok((decode_pairs(&resp.body, key)?.pop(), index))
    }

    /// Everything under `prefix` and the `X-Consul-Index`. With `index`, a blocking query that
    /// returns when the prefix changes past `index` or `wait` expires.
    pub fn kv_list(
        &self,
        prefix: &str,
        block: Option<(u64, Duration)>,
    ) -> Result<(Vec<KvPair>, u64), ConsulError> {
        let mut path = format!("/v1/kv/{}?recurse", encode_path(prefix));
        let mut req_timeout = None;
        if let Some((index, wait)) = block {
            path.push_str(&format!("&index={index}&wait={}ms", wait.as_millis()));
            // Consul adds up to wait/16 of jitter (blocking.mdx).
            req_timeout = Some(wait + wait / 16 + Duration::from_secs(5));
        }
        let mut req = HttpRequest::new("GET", &path);
        if let Some(t) = req_timeout {
            req = req.timeout(t);
        }
        let resp = self.http.send(req)?;
        let index = resp
            .header("X-Consul-Index")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if resp.status == 404 {
            return Ok((Vec::new(), index));
        }
        if !resp.is_success() {
            return Err(ConsulError::from_response(
                &format!("list of prefix {prefix:?}"),
                &resp,
            ));
        }
        Ok((decode_pairs(&resp.body, prefix)?, index))
    }

    /// Sets a key. Returns Consul's `true`/`false`.
    pub fn kv_put(&self, key: &str, value: &[u8]) -> Result<bool, ConsulError> {
        self.kv_put_with(key, value, "")
    }

    /// Check-and-set: `cas = 0` creates only if absent.
    pub fn kv_put_cas(&self, key: &str, value: &[u8], cas: u64) -> Result<bool, ConsulError> {
        self.kv_put_with(key, value, &format!("?cas={cas}"))
    }

    /// Acquires `key` for `session` (false when another session holds it or lock-delay applies).
    pub fn kv_acquire(&self, key: &str, value: &[u8], session: &str) -> Result<bool, ConsulError> {
        self.kv_put_with(key, value, &format!("?acquire={}", encode_query(session)))
    }

    /// Releases `key` held by `session`.
    pub fn kv_release(&self, key: &str, session: &str) -> Result<bool, ConsulError> {
        self.kv_put_with(key, b"", &format!("?release={}", encode_query(session)))
    }

    fn kv_put_with(&self, key: &str, value: &[u8], query: &str) -> Result<bool, ConsulError> {
        validate_key(key)?;
        let path = format!("/v1/kv/{}{query}", encode_path(key));
        let resp = self.http.send(
            HttpRequest::new("PUT", &path).body(value.to_vec(), "application/octet-stream"),
        )?;
        if !resp.is_success() {
            return Err(ConsulError::from_response(
                &format!("write of key {key:?}"),
                &resp,
            ));
        }
        Ok(resp.text().trim() == "true")
    }

    /// Deletes a key (true also when it did not exist, as Consul answers).
    pub fn kv_delete(&self, key: &str) -> Result<bool, ConsulError> {
        validate_key(key)?;
        let resp = self.http.send(HttpRequest::new(
            "DELETE",
            &format!("/v1/kv/{}", encode_path(key)),
        ))?;
        if !resp.is_success() {
            return Err(ConsulError::from_response(
                &format!("delete of key {key:?}"),
                &resp,
            ));
        }
        Ok(resp.text().trim() == "true")
    }
}

fn decode_pairs(body: &[u8], what: &str) -> Result<Vec<KvPair>, ConsulError> {
    watch::decode_kv(body).map_err(|e| ConsulError::Unexpected {
        what: format!("KV {what:?}"),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        assert!(validate_key("images/sami/api").is_ok());
        assert!(validate_key("images/registry.local:5000/sami/api").is_ok());
        assert!(validate_key("/abs").is_err());
        assert!(validate_key("a/../b").is_err());
        assert!(validate_key("a\nb").is_err());
        assert!(validate_key("").is_err());
    }
}
