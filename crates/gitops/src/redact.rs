//! Keeping credentials embedded in repository URLs out of logs, errors and commit messages.
//!
//! `https://user:token@host/repo.git` is a common way to hand a push token to a headless job. The URL has
//! to reach git, but nothing tag2git prints may contain the token: every error built from git's stderr
//! and every command line shown goes through a [`Redactor`].

/// Placeholder for removed secrets.
pub const MASK: &str = "***";

/// `scheme://user:password@host/…` → `scheme://***@host/…`; other URLs (scp-like `git@host:repo`, paths)
/// are returned unchanged because they carry no secret (a user name alone is not one).
pub fn redact_url(url: &str) -> String {
    match userinfo(url) {
        Some((start, end)) => format!("{}{MASK}{}", &url[..start], &url[end..]),
        None => url.to_string(),
    }
}

/// Byte range of the userinfo (`user:password`) of a `scheme://userinfo@host` URL.
fn userinfo(url: &str) -> Option<(usize, usize)> {
    let scheme_end = url.find("://")? + 3;
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |p| scheme_end + p);
    let at = url[scheme_end..authority_end].rfind('@')? + scheme_end;
    Some((scheme_end, at))
}

/// Scrubs known secrets from text.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// (secret, replacement), longest first so a URL is replaced before its parts.
    secrets: Vec<(String, String)>,
}

impl Redactor {
    /// A redactor for the credentials in `url` (the whole URL, its userinfo, the password in raw and
    /// percent-decoded form). A URL without credentials gives a redactor that changes nothing.
    pub fn for_url(url: &str) -> Redactor {
        let mut r = Redactor::default();
        if let Some((start, end)) = userinfo(url) {
            r.add(url, &redact_url(url));
            let info = &url[start..end];
            r.add(info, MASK);
            if let Some((_, password)) = info.split_once(':') {
                r.add(password, MASK);
                r.add(&percent_decode(password), MASK);
            } else {
                // A lone userinfo is often a token (`https://<token>@host`): treat it as secret too.
                r.add(&percent_decode(info), MASK);
            }
        }
        r
    }

    /// Adds a secret to scrub.
    pub fn add(&mut self, secret: &str, replacement: &str) {
        if secret.is_empty() || self.secrets.iter().any(|(s, _)| s == secret) {
            return;
        }
        self.secrets
            .push((secret.to_string(), replacement.to_string()));
        self.secrets
            .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
    }

    /// `text` with every known secret replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (secret, replacement) in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), replacement);
            }
        }
        out
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() && s.is_char_boundary(i + 3) {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            redact_url("https://bot:s3cr%40t@git.example/r.git"),
            "https://***@git.example/r.git"
        );
        assert_eq!(
            redact_url("https://tok@git.example/r.git"),
            "https://***@git.example/r.git"
        );
        assert_eq!(
            redact_url("https://git.example/a@b"),
            "https://git.example/a@b"
        );
        assert_eq!(
            redact_url("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
        assert_eq!(redact_url("/srv/git/jobs.git"), "/srv/git/jobs.git");
    }

    #[test]
    fn scrubs_every_form() {
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
    }
}
