//! Small helpers shared by the Consul double and the watch runner: Go duration strings, UUIDs,
//! the event-ID-to-index function and Go-style JSON encoding.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses a Go `time.ParseDuration` string ("5s", "1m30s", "100ms", "0"); negative values and
/// garbage are rejected. Used for `?wait=`, session TTL and LockDelay like Consul does.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() || rest.starts_with('-') {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let num: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per = match &rest[..unit_end] {
            "ns" => 1e0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += num * nanos_per;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return None;
    }
    Some(Duration::from_nanos(total as u64))
}

/// Formats a duration like Go's `time.Duration.String()` for the common cases ("0s", "15s",
/// "1m30s", "100ms").
pub fn format_go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let nanos = d.as_nanos();
    if nanos < 1_000_000_000 {
        if nanos.is_multiple_of(1_000_000) {
            return format!("{}ms", nanos / 1_000_000);
        }
        if nanos.is_multiple_of(1_000) {
            return format!("{}µs", nanos / 1_000);
        }
        return format!("{nanos}ns");
    }
    let secs = d.as_secs();
    let frac = d.subsec_nanos();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if frac == 0 {
        out.push_str(&format!("{s}s"));
    } else {
        let f = format!("{:09}", frac);
        out.push_str(&format!("{s}.{}s", f.trim_end_matches('0')));
    }
    out
}

static RNG: AtomicU64 = AtomicU64::new(0);

/// A fast non-cryptographic random u64 (splitmix64 over a time-seeded counter): IDs only need
/// to be unique within a test run.
pub fn random_u64() -> u64 {
    let mut seed = RNG.load(Ordering::Relaxed);
    if seed == 0 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let _ = RNG.compare_exchange(0, now | 1, Ordering::SeqCst, Ordering::SeqCst);
    }
    seed = RNG.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::SeqCst);
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random UUID in Consul's 8-4-4-4-12 lower-case hex form.
pub fn uuid() -> String {
    let a = random_u64();
    let b = random_u64();
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Consul's `uuidToUint64` (agent/event_endpoint.go) and the watch package's `IDToIndex`: the
/// XOR of the UUID's two halves. The event list's X-Consul-Index is this value for the last
/// event, so it is not monotonic. Returns 0 for an ID that is not a UUID.
pub fn uuid_to_u64(id: &str) -> u64 {
    if id.len() < 36 || !id.is_ascii() {
        return 0;
    }
    let lower = format!("{}{}{}", &id[0..8], &id[9..13], &id[14..18]);
    let upper = format!("{}{}", &id[19..23], &id[24..36]);
    match (
        u64::from_str_radix(&lower, 16),
        u64::from_str_radix(&upper, 16),
    ) {
        (Ok(l), Ok(u)) => l ^ u,
        _ => 0,
    }
}

/// A serde_json formatter that escapes strings as Go's `encoding/json` does by default:
/// `<`, `>`, `&`, U+2028 and U+2029 become `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029`.
struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let esc = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(esc.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Compact JSON exactly as Go's `json.Encoder.Encode` writes it, without the trailing newline.
pub fn go_json(value: &serde_json::Value) -> Vec<u8> {
    use serde::Serialize;
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    // Serialising a Value into a Vec cannot fail.
    let _ = value.serialize(&mut ser);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_go_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("abc"), None);
        assert_eq!(parse_go_duration("-1s"), None);
        assert_eq!(format_go_duration(Duration::from_secs(15)), "15s");
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_go_duration(Duration::from_millis(100)), "100ms");
    }

    #[test]
    fn uuid_index_is_the_xor_of_the_halves() {
        // afe6d0d3c8f7bea6 ^ 03112b3672cdb3fd
        assert_eq!(
            uuid_to_u64("afe6d0d3-c8f7-bea6-0311-2b3672cdb3fd"),
            0xafe6d0d3c8f7bea6 ^ 0x03112b3672cdb3fd
        );
        assert_eq!(uuid().len(), 36);
        assert_ne!(uuid(), uuid());
    }

    #[test]
    fn go_json_escapes_html() {
        let v = serde_json::json!({"a": "<b>&"});
        assert_eq!(go_json(&v), br#"{"a":"\u003cb\u003e\u0026"}"#.to_vec());
    }
}
