//! Docker image references: parsing, validation and Docker's normalization.
//!
//! The grammar and the normalization rules follow `distribution/reference` (the package Docker, containerd
//! and the registry use): `regexp.go` for the grammar and `normalize.go` (`ParseNormalizedNamed`,
//! `splitDockerDomain`) for how a familiar name such as `python` becomes `docker.io/library/python`.
//!
//! ```text
//! reference      := name [ ":" tag ] [ "@" digest ]
//! name           := [ domain "/" ] path-component ( "/" path-component )*
//! domain         := host [ ":" port ]          host := dns-ish name | "[" ipv6 "]"
//! path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag            := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! digest         := algorithm ":" hex        (sha256: 64, sha384: 96, sha512: 128 lowercase hex digits)
//! ```
//!
//! Normalization (normalize.go): a first component is a domain only if it is `localhost`, or contains
//! `.` or `:`, or has an uppercase letter; otherwise the domain is `docker.io`. `index.docker.io` (the
//! legacy Docker Hub domain) becomes `docker.io`; single-component names on Docker Hub get the `library/`
//! prefix. Note that `registry-1.docker.io` is *not* folded into `docker.io`: normalize.go only documents
//! it as Docker Hub's actual registry host and keeps it a distinct domain, and so do we.
//!
//! Deliberate differences from Docker, all stricter: a domain-looking first component that is not a valid
//! domain (`a.b_c/x`) is rejected instead of silently parsed without a domain; and because values from
//! Consul end up in files and commit messages, `..` anywhere is refused.

use std::fmt;

use thiserror::Error;

/// Docker Hub's canonical domain (normalize.go `defaultDomain`).
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The legacy "Docker Index" domain, canonicalized to [`DEFAULT_DOMAIN`] (normalize.go `legacyDefaultDomain`).
pub const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// Namespace of official images on Docker Hub (normalize.go `officialRepoPrefix`).
pub const OFFICIAL_REPO_PREFIX: &str = "library/";
/// Longest name (domain + path) Docker accepts (reference.go `NameTotalLengthMax`).
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// Why a string is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct ImageRefError {
    /// The offending input (truncated to 200 characters; printed with escapes, so control characters
    /// are visible and harmless in logs).
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ImageRefError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        ImageRefError {
            input: input.chars().take(200).collect(),
            reason: reason.into(),
        }
    }
}

/// A parsed, normalized image reference.
///
/// Equality of repositories is [`ImageRef::repository`] equality (normalized `domain/path`); tag and
/// digest are separate. The name exactly as it was written is kept so that an edit can change only the
/// tag/digest part of a file's reference and keep the spelling of the repository that the file uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
    written_name: String,
}

impl ImageRef {
    /// Parses and normalizes a reference (`ParseNormalizedNamed` semantics).
    pub fn parse(input: &str) -> Result<ImageRef, ImageRefError> {
        check_safe(input)?;
        if input.len() == 64
            && input
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ImageRefError::new(
                input,
                "a 64-character hexadecimal string is an image ID, not a repository name",
            ));
        }
        // Split off the digest first: the digest is the only part that may contain a second ':'.
        let (before_digest, digest) = match input.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (input, None),
        };
        let (domain, remainder) = split_docker_domain(before_digest);
        // normalize.go checks the remainder up to its first ':' for uppercase.
        let remote_for_case = remainder.split(':').next().unwrap_or_default();
        if remote_for_case.to_lowercase() != remote_for_case {
            return Err(ImageRefError::new(
                input,
                format!("repository name {remote_for_case:?} must be lowercase"),
            ));
        }
        let (path, tag) = match remainder.split_once(':') {
            Some((path, tag)) => (path, Some(tag)),
            None => (remainder.as_str(), None),
        };
        if !is_domain(&domain) {
            return Err(ImageRefError::new(
                input,
                format!("invalid registry host {domain:?}"),
            ));
        }
        if !is_remote_name(path) {
            return Err(ImageRefError::new(
                input,
                format!("invalid repository path {path:?} (lowercase letters, digits, separators . _ __ -)"),
            ));
        }
        if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ImageRefError::new(
                input,
                format!("repository name longer than {NAME_TOTAL_LENGTH_MAX} characters"),
            ));
        }
        if let Some(tag) = tag {
            validate_tag(tag).map_err(|reason| ImageRefError::new(input, reason))?;
        }
        if let Some(digest) = digest {
            validate_digest(digest).map_err(|reason| ImageRefError::new(input, reason))?;
        }
        let written_name = match tag {
            Some(tag) => &before_digest[..before_digest.len() - tag.len() - 1],
            None => before_digest,
        };
        Ok(ImageRef {
            domain,
            path: path.to_string(),
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
            written_name: written_name.to_string(),
        })
    }

    /// Parses a repository name without tag or digest (for example the part of a Consul key after the
    /// key prefix: `registry.local:5000/sami/api`).
    pub fn parse_name(input: &str) -> Result<ImageRef, ImageRefError> {
        let parsed = ImageRef::parse(input)?;
        if parsed.tag.is_some() || parsed.digest.is_some() {
            return Err(ImageRefError::new(
                input,
                "expected a repository name without tag or digest",
            ));
        }
        Ok(parsed)
    }

    /// Registry host (with port), normalized: `docker.io` for Docker Hub.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Repository path inside the registry, normalized: `library/python` for `python`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:…`), if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The repository name as it was written in the input (`python`, `docker.io/library/python`, …).
    pub fn written_name(&self) -> &str {
        &self.written_name
    }

    /// The normalized repository: `docker.io/library/python`. Two references run the same image
    /// repository when their `repository()` are equal.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The familiar repository name Docker shows: `python`, `sami/api`, `registry.local:5000/sami/api`.
    pub fn familiar_repository(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.repository();
        }
        match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => self.path.clone(),
        }
    }

    /// Tag and digest as shown to humans: `1.4.2`, `1.4.2@sha256:…`, `@sha256:…`, or `latest` (implied).
    pub fn version(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(t), Some(d)) => format!("{t}@{d}"),
            (Some(t), None) => t.clone(),
            (None, Some(d)) => format!("@{d}"),
            (None, None) => "latest".to_string(),
        }
    }

    /// Short human form of [`ImageRef::version`] (digests cut to 12 hex digits), for commit subjects.
    pub fn short_version(&self) -> String {
        let short = |d: &str| match d.split_once(':') {
            Some((alg, hex)) => format!("{alg}:{}", &hex[..hex.len().min(12)]),
            None => d.to_string(),
        };
        match (&self.tag, &self.digest) {
            (Some(t), Some(d)) => format!("{t}@{}", short(d)),
            (None, Some(d)) => format!("@{}", short(d)),
            _ => self.version(),
        }
    }

    /// This reference's tag and digest with `name` in front: used to rewrite a file's reference keeping
    /// the file's own spelling of the repository.
    pub fn with_written_name(&self, name: &str) -> String {
        let mut out = name.to_string();
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest);
        }
        out
    }

    /// A copy with the given tag and digest (used for bare-tag values resolved against a key's name).
    pub fn with_version(&self, tag: Option<&str>, digest: Option<&str>) -> ImageRef {
        ImageRef {
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
            ..self.clone()
        }
    }
}

impl fmt::Display for ImageRef {
    /// The reference with the name as written: round-trips the input of [`ImageRef::parse`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_written_name(&self.written_name))
    }
}

/// The tag and/or digest of a bare value (at least one is present).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BareVersion {
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest (`sha256:…`), if any.
    pub digest: Option<String>,
}

/// What a bare Consul value (no `/`, no `:` before an `@`) means: a tag and/or digest for the repository
/// named by the key. Returns `None` when the value is a full reference.
///
/// `1.4.2`, `1.4.2@sha256:…` and `@sha256:…` are bare; `python:3.12`, `sami/api:1.0` are full.
pub fn parse_bare_version(value: &str) -> Result<Option<BareVersion>, ImageRefError> {
    let (tag_part, digest) = match value.split_once('@') {
        Some((t, d)) => (t, Some(d)),
        None => (value, None),
    };
    if tag_part.contains('/') || tag_part.contains(':') {
        return Ok(None);
    }
    check_safe(value)?;
    let tag = if tag_part.is_empty() {
        if digest.is_none() {
            return Err(ImageRefError::new(value, "empty value"));
        }
        None
    } else {
        validate_tag(tag_part).map_err(|reason| ImageRefError::new(value, reason))?;
        Some(tag_part.to_string())
    };
    if let Some(d) = digest {
        validate_digest(d).map_err(|reason| ImageRefError::new(value, reason))?;
    }
    Ok(Some(BareVersion {
        tag,
        digest: digest.map(str::to_string),
    }))
}

/// Rejections that apply to any string from Consul before it is interpreted at all.
fn check_safe(input: &str) -> Result<(), ImageRefError> {
    if input.is_empty() {
        return Err(ImageRefError::new(input, "empty value"));
    }
    if input.chars().any(char::is_control) {
        return Err(ImageRefError::new(input, "contains control characters"));
    }
    if input.chars().any(char::is_whitespace) {
        return Err(ImageRefError::new(input, "contains whitespace"));
    }
    if input.starts_with('-') {
        return Err(ImageRefError::new(input, "starts with '-'"));
    }
    if input.contains("..") {
        return Err(ImageRefError::new(input, "contains '..'"));
    }
    Ok(())
}

/// normalize.go `splitDockerDomain`, applied to a name that may still carry a `:tag`.
fn split_docker_domain(name: &str) -> (String, String) {
    let Some((maybe_domain, maybe_remote)) = name.split_once('/') else {
        return (
            DEFAULT_DOMAIN.to_string(),
            format!("{OFFICIAL_REPO_PREFIX}{name}"),
        );
    };
    let (domain, mut remote) = if maybe_domain == "localhost" {
        (maybe_domain.to_string(), maybe_remote.to_string())
    } else if maybe_domain == LEGACY_DEFAULT_DOMAIN {
        (DEFAULT_DOMAIN.to_string(), maybe_remote.to_string())
    } else if maybe_domain.contains(['.', ':']) || maybe_domain.to_lowercase() != maybe_domain {
        (maybe_domain.to_string(), maybe_remote.to_string())
    } else {
        (DEFAULT_DOMAIN.to_string(), name.to_string())
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        remote = format!("{OFFICIAL_REPO_PREFIX}{remote}");
    }
    (domain, remote)
}

/// regexp.go `domainAndPort`: host (DNS-ish components or bracketed IPv6) and an optional numeric port.
fn is_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return false;
        };
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    match host {
        None => true,
        Some(host) => !host.is_empty() && host.split('.').all(is_domain_component),
    }
}

/// regexp.go `domainNameComponent`: `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn is_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
}

/// regexp.go `remoteName`: one or more path components separated by `/`.
fn is_remote_name(path: &str) -> bool {
    !path.is_empty() && path.split('/').all(is_path_component)
}

/// regexp.go `pathComponent`: `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        // One run of alphanumerics.
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // One separator: ".", "_", "__" or "-"+.
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// regexp.go `tag`: `[\w][\w.-]{0,127}` with ASCII `\w` (Go's regexp is ASCII-only).
fn validate_tag(tag: &str) -> Result<(), String> {
    let b = tag.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    if b.is_empty() {
        return Err("empty tag".into());
    }
    if b.len() > TAG_MAX {
        return Err(format!("tag longer than {TAG_MAX} characters"));
    }
    if !word(b[0]) {
        return Err(format!(
            "tag {tag:?} must start with a letter, digit or '_'"
        ));
    }
    if !b.iter().all(|&x| word(x) || x == b'.' || x == b'-') {
        return Err(format!(
            "tag {tag:?} may only contain letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}

/// go-digest `Parse` + `Validate` for the algorithms it registers (sha256, sha384, sha512):
/// the encoded part must be lowercase hex of the algorithm's exact length.
fn validate_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(format!(
            "digest {digest:?} must look like sha256:<64 hex digits>"
        ));
    };
    let expected = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "unsupported digest algorithm {algorithm:?} (sha256, sha384, sha512)"
            ))
        }
    };
    if hex.len() != expected
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "{algorithm} digest must be {expected} lowercase hex digits"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa";

    fn repo(s: &str) -> String {
        ImageRef::parse(s).unwrap().repository()
    }

    // Cases from distribution/reference normalize_test.go (TestParseNormalizedNamed / familiar names).
    #[test]
    fn normalizes_like_docker() {
        assert_eq!(repo("python"), "docker.io/library/python");
        assert_eq!(repo("python:3"), "docker.io/library/python");
        assert_eq!(repo("library/python"), "docker.io/library/python");
        assert_eq!(repo("docker.io/python"), "docker.io/library/python");
        assert_eq!(
            repo("docker.io/library/python:3"),
            "docker.io/library/python"
        );
        assert_eq!(
            repo("index.docker.io/library/python"),
            "docker.io/library/python"
        );
        assert_eq!(repo("index.docker.io/python"), "docker.io/library/python");
        assert_eq!(repo("sami/api"), "docker.io/sami/api");
        assert_eq!(repo("localhost/foo"), "localhost/foo");
        assert_eq!(repo("localhost:5000/foo:1"), "localhost:5000/foo");
        assert_eq!(
            repo("registry.local:5000/sami/api:1.4.2"),
            "registry.local:5000/sami/api"
        );
        assert_eq!(repo("[::1]:5000/foo"), "[::1]:5000/foo");
        assert_eq!(repo("Foo/bar"), "Foo/bar");
        // registry-1.docker.io stays distinct (normalize.go keeps only index.docker.io as an alias).
        assert_eq!(
            repo("registry-1.docker.io/library/python"),
            "registry-1.docker.io/library/python"
        );
    }

    #[test]
    fn familiar_names() {
        let f = |s: &str| ImageRef::parse(s).unwrap().familiar_repository();
        assert_eq!(f("docker.io/library/python:3"), "python");
        assert_eq!(f("index.docker.io/sami/api"), "sami/api");
        assert_eq!(f("docker.io/library/a/b"), "library/a/b");
        assert_eq!(
            f("registry.local:5000/sami/api"),
            "registry.local:5000/sami/api"
        );
    }

    #[test]
    fn tags_digests_and_written_names() {
        let r = ImageRef::parse(&format!("registry.local:5000/sami/api:1.4.2@{D}")).unwrap();
        assert_eq!(r.domain(), "registry.local:5000");
        assert_eq!(r.path(), "sami/api");
        assert_eq!(r.tag(), Some("1.4.2"));
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.written_name(), "registry.local:5000/sami/api");
        assert_eq!(
            r.to_string(),
            format!("registry.local:5000/sami/api:1.4.2@{D}")
        );
        assert_eq!(r.short_version(), "1.4.2@sha256:7cc4b5aefd1d");

        let r = ImageRef::parse(&format!("python@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.written_name(), "python");
        assert_eq!(r.version(), format!("@{D}"));
        let r = ImageRef::parse("localhost:5000/foo").unwrap();
        assert_eq!((r.tag(), r.written_name()), (None, "localhost:5000/foo"));
        assert_eq!(r.version(), "latest");
        let new = ImageRef::parse("docker.io/library/python:3.12").unwrap();
        assert_eq!(new.with_written_name("python"), "python:3.12");
    }

    #[test]
    fn rejects_invalid_references() {
        for bad in [
            "",
            "Python",
            "sami/API:1",
            "python:",
            "python:-1",
            "python:1 2",
            "python:a/b",
            "foo@sha256:abc",
            "foo@sha256:7CC4B5AEFD1D0CADF8D97D4350462BA51C694EBCA145B08D7D41B41ACC8DB5AA",
            "foo@md5:0123456789abcdef0123456789abcdef",
            "foo@",
            "-foo",
            "foo/../bar",
            "foo\n",
            "foo\u{7}bar",
            "foo//bar",
            "foo/",
            "/foo",
            "a.b_c/x",
            "host:port/x",
            "foo___bar",
            "foo-",
            "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa",
            "[zz]:5000/foo",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let long_tag = format!("foo:{}", "a".repeat(129));
        assert!(ImageRef::parse(&long_tag).is_err());
        let long_name = format!("{}/x", "a".repeat(260));
        assert!(ImageRef::parse(&long_name).is_err());
    }

    #[test]
    fn accepts_docker_separators() {
        for ok in [
            "a_b",
            "a__b",
            "a---b",
            "a.b/c",
            "a-b.c_d__e",
            "ns/a-b.c_d__e/f",
            "foo:Tag_1.0-rc1",
            "foo:_x",
        ] {
            assert!(ImageRef::parse(ok).is_ok(), "{ok:?} should be accepted");
        }
    }

    #[test]
    fn error_names_input_and_reason() {
        let err = ImageRef::parse("Sami/API:1").unwrap_err();
        assert_eq!(err.input, "Sami/API:1");
        assert!(err.to_string().contains("lowercase"), "{err}");
    }

    #[test]
    fn parse_name_rejects_tags() {
        assert!(ImageRef::parse_name("registry.local:5000/sami/api").is_ok());
        assert!(ImageRef::parse_name("sami/api:1").is_err());
    }

    #[test]
    fn bare_versions() {
        assert_eq!(
            parse_bare_version("1.4.2").unwrap(),
            Some(BareVersion {
                tag: Some("1.4.2".into()),
                digest: None
            })
        );
        assert_eq!(
            parse_bare_version(&format!("1.4.2@{D}")).unwrap(),
            Some(BareVersion {
                tag: Some("1.4.2".into()),
                digest: Some(D.into())
            })
        );
        assert_eq!(
            parse_bare_version(&format!("@{D}")).unwrap(),
            Some(BareVersion {
                tag: None,
                digest: Some(D.into())
            })
        );
        assert_eq!(parse_bare_version("python:3").unwrap(), None);
        assert_eq!(parse_bare_version("sami/api").unwrap(), None);
        assert!(parse_bare_version("-1").is_err());
        assert!(parse_bare_version("1..2").is_err());
        assert!(parse_bare_version("@").is_err());
        assert!(parse_bare_version("@sha256:12").is_err());
        assert!(parse_bare_version(".1").is_err());
    }
}
