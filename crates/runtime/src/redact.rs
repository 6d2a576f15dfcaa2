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
    /// (secret, replacement), longest first so a whole URL is replaced before its parts.
    secrets: Vec<(String, String)>,
}

impl Redactor {
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// A redactor for the credentials in `url`: the whole URL (shown redacted), its userinfo and
    /// the password (or a lone token) raw and percent-decoded. A URL without credentials gives a
    /// redactor that changes nothing. (`https://<token>@host/repo.git` is a common way to hand a
    /// push token to a headless job.)
    pub fn for_url(url: &str) -> Redactor {
        let mut r = Redactor::default();
        let (_, creds) = split_userinfo(url);
        if let Some((user, password)) = creds {
            r.add_with(url, &redact_url(url));
            let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
            if let Some(at) = url[scheme_end..].find('@') {
                r.add_with(&url[scheme_end..scheme_end + at], "***");
                if let Some((_, raw_pass)) = url[scheme_end..scheme_end + at].split_once(':') {
                    r.add_with(raw_pass, "***");
                }
            }
            if password.expose().is_empty() {
                // A lone userinfo is usually a token.
                r.add_with(&user, "***");
            } else {
                r.add_with(password.expose(), "***");
            }
            r.add_basic_auth(&user, password.expose());
        }
        r
    }

    /// Adds the forms in which basic-auth credentials travel and servers echo them back: the
    /// password and the base64 of `user:password` (the `Authorization: Basic` value).
    pub fn add_basic_auth(&mut self, user: &str, password: &str) {
        use base64::Engine;
        self.add(password);
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.add_with(&b64, "***");
        // Without padding too (some servers re-encode it).
        self.add_with(b64.trim_end_matches('='), "***");
    }

    /// Adds a secret; values shorter than 4 characters are ignored (they would mask ordinary
    /// words and protect nothing).
    pub fn add(&mut self, secret: &str) {
        if secret.len() >= 4 {
            self.add_with(secret, "***");
        }
    }

    /// Adds a secret with its replacement.
    pub fn add_with(&mut self, secret: &str, replacement: &str) {
        if secret.is_empty() || self.secrets.iter().any(|(s, _)| s == secret) {
            return;
        }
        self.secrets
            .push((secret.to_string(), replacement.to_string()));
        self.secrets
            .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
    }

    /// `text` with every known secret replaced.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (secret, replacement) in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), replacement);
            }
        }
        out
    }

    /// Same as [`Redactor::scrub`].
    pub fn redact(&self, text: &str) -> String {
        self.scrub(text)
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

    #[test]
    fn url_redactor_scrubs_every_form() {
        let url = "https://bot:s3cr%40t@git.example/r.git";
        let r = Redactor::for_url(url);
        let text =
            format!("fatal: unable to access '{url}': auth for bot:s3cr%40t / s3cr@t failed");
        let out = r.redact(&text);
        assert!(!out.contains("s3cr"), "{out}");
        assert!(out.contains("https://***@git.example/r.git"), "{out}");
        assert_eq!(
            Redactor::for_url("/srv/x").redact("a /srv/x b"),
            "a /srv/x b"
        );
        let t = Redactor::for_url("https://tok3n@git.example/r.git");
        assert_eq!(t.redact("token tok3n"), "token ***");
        assert_eq!(
            redact_url("https://git.example/a@b"),
            "https://git.example/a@b"
        );
        assert_eq!(
            redact_url("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
    }
}
