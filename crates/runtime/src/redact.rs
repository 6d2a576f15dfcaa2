//! Keeping secrets out of logs, errors, summaries and commit messages.

use std::fmt;

/// A secret value (token, password). Its Debug and Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The value, for the one place that must send it (an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Splits `scheme://user:pass@host/...` into the URL without credentials and the credentials.
pub fn split_userinfo(url: &str) -> (String, Option<(String, Secret)>) {
    let Some(scheme_end) = url.find("://") else {
        return (url.to_string(), None);
    };
    let after = &url[scheme_end + 3..];
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = &after[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return (url.to_string(), None);
    };
    let userinfo = &authority[..at];
    let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let clean = format!(
        "{}{}{}",
        &url[..scheme_end + 3],
        &authority[at + 1..],
        &after[authority_end..]
    );
    (
        clean,
        Some((percent_decode(user), Secret::new(percent_decode(pass)))),
    )
}

/// A URL with any `user:password@` replaced by `***@`, and secret-looking query parameters
/// (`token`, `password`, `access_token`) masked.
pub fn redact_url(url: &str) -> String {
    let (clean, creds) = split_userinfo(url);
    let mut out = match creds {
        Some(_) => {
            let i = clean.find("://").map(|i| i + 3).unwrap_or(0);
            format!("{}***@{}", &clean[..i], &clean[i..])
        }
        None => clean,
    };
    for key in ["token=", "password=", "access_token=", "secret="] {
        let mut from = 0;
        while let Some(pos) = out[from..].find(key) {
            let start = from + pos + key.len();
            let boundary = out[..from + pos]
                .chars()
                .last()
                .is_none_or(|c| c == '?' || c == '&');
            let end = out[start..]
                .find(['&', '#', ' '])
                .map(|e| start + e)
                .unwrap_or(out.len());
            if boundary && end > start {
                out.replace_range(start..end, "***");
                from = start + 3;
            } else {
                from = start;
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(h) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(h);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Scrubs known secret values from free text (remote error bodies, git's stderr).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Adds a secret; values shorter than 4 characters are ignored (they would mask ordinary
    /// words and protect nothing).
    pub fn add(&mut self, secret: &str) {
        if secret.len() >= 4 && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_string());
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "***");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("https://admin:s3cr%40t@marathon.local:8080/v2/apps"),
            "https://***@marathon.local:8080/v2/apps"
        );
        assert_eq!(
            redact_url("http://host:8500/v1/kv/a"),
            "http://host:8500/v1/kv/a"
        );
        assert_eq!(
            redact_url("http://h/v1/kv/a?token=abcd&recurse"),
            "http://h/v1/kv/a?token=***&recurse"
        );
        let (clean, creds) = split_userinfo("https://admin:s3cr%40t@m:8080/x");
        assert_eq!(clean, "https://m:8080/x");
        let (u, p) = creds.unwrap();
        assert_eq!((u.as_str(), p.expose()), ("admin", "s3cr@t"));
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter22");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        let mut r = Redactor::new();
        r.add("hunter22");
        r.add("ab");
        assert_eq!(r.scrub("token hunter22 ab"), "token *** ab");
    }
}
