//! Large watch payloads for benchmarks and memory tests, written entry by entry (issue 13 item
//! 5): a 100 MB keyprefix built as `serde_json::Value`s would cost its writer gigabytes.

use std::io::{self, Write};

use base64::Engine;

/// Writes one KV entry as the Consul agent does (Go's encoding/json of api.KVPair: compact,
/// this field order, `Value` in base64).
pub fn write_kv(w: &mut impl Write, key: &str, value: &[u8], index: u64) -> io::Result<()> {
    w.write_all(b"{\"Key\":")?;
    serde_json::to_writer(&mut *w, key)?;
    write!(
        w,
        ",\"CreateIndex\":{index},\"ModifyIndex\":{index},\"LockIndex\":0,\"Flags\":0,\"Value\":\"{}\",\"Session\":\"\"}}",
        base64::engine::general_purpose::STANDARD.encode(value)
    )
}

/// Counts the bytes written through it.
struct Counted<W> {
    inner: W,
    bytes: usize,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a keyprefix payload (a JSON array) of at least `bytes` bytes: entry `i` is `entry(i)`
/// = (key, value, ModifyIndex) for `i` = 0, 1, ... until the size is reached, then the entries
/// of `last` (git2consul's `.ref`, say). Returns the bytes written and the entry count.
pub fn write_keyprefix(
    w: impl Write,
    bytes: usize,
    mut entry: impl FnMut(usize) -> (String, Vec<u8>, u64),
    last: &[(String, Vec<u8>, u64)],
) -> io::Result<(usize, usize)> {
    let mut w = Counted { inner: w, bytes: 0 };
    w.write_all(b"[")?;
    let mut n = 0;
    while w.bytes < bytes {
        if n > 0 {
            w.write_all(b",")?;
        }
        let (key, value, index) = entry(n);
        write_kv(&mut w, &key, &value, index)?;
        n += 1;
    }
    for (key, value, index) in last {
        if n > 0 {
            w.write_all(b",")?;
        }
        write_kv(&mut w, key, value, *index)?;
        n += 1;
    }
    w.write_all(b"]")?;
    w.flush()?;
    Ok((w.bytes, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_what_the_agent_writes() {
        let mut out = Vec::new();
        let (bytes, n) = write_keyprefix(
            &mut out,
            300,
            |i| (format!("images/a{i}"), b"1.0".to_vec(), i as u64),
            &[("ref".into(), b"abc".to_vec(), 99)],
        )
        .unwrap();
        assert_eq!(bytes, out.len());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let entries = v.as_array().unwrap();
        assert_eq!(entries.len(), n);
        assert!(bytes >= 300 && n >= 3, "{bytes} bytes, {n} entries");
        assert_eq!(
            entries[1],
            serde_json::json!({"Key":"images/a1","CreateIndex":1,"ModifyIndex":1,"LockIndex":0,
                               "Flags":0,"Value":"MS4w","Session":""})
        );
        assert_eq!(entries[n - 1]["Key"], "ref");
        assert!(out.starts_with(br#"[{"Key":"images/a0","CreateIndex":0,"#));
    }
}
