//! From Consul KV pairs to validated image updates.
//!
//! Every entry is validated before anything touches Git. An invalid entry is set aside with its
//! reason (reported as `failed`, exit 65) and never blocks the others: the keyprefix watch delivers
//! the whole prefix on every change, so one bad key must not stop every release.

use gitops::imageref::{parse_bare_version, ImageRef};
use watch::KvPair;

/// One image update requested through Consul.
///
/// Compact on purpose (issue 13 item 5): a keyprefix payload can hold a million entries, each
/// held for the whole run, so an update is 40 bytes and two strings: the key and the new
/// reference as one normalized string (`docker.io/library/python:3.12`), not a parsed
/// [`ImageRef`] of five.
#[derive(Debug, Clone)]
pub struct Update {
    /// Consul key.
    key: Box<str>,
    /// The key's ModifyIndex (the replay identity, with the key).
    pub modify_index: u64,
    /// The normalized repository, then `:tag` and/or `@digest`.
    reference: Box<str>,
}

impl Update {
    /// An update of `key` (written at `modify_index`) to `image`.
    pub fn new(key: String, modify_index: u64, image: &ImageRef) -> Update {
        Update {
            key: key.into_boxed_str(),
            modify_index,
            reference: image
                .with_written_name(&image.repository())
                .into_boxed_str(),
        }
    }

    /// The Consul key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Moves the key out (into the action that reports it), leaving it empty.
    pub fn take_key(&mut self) -> String {
        std::mem::take(&mut self.key).into()
    }

    /// Where the repository ends: at the tag's `:` (the only `:` after the last `/`: a port's
    /// comes before the path) or at the digest's `@`.
    fn repo_len(&self) -> usize {
        let name = self.reference.split('@').next().unwrap_or_default();
        match (name.rfind(':'), name.rfind('/')) {
            (Some(colon), Some(slash)) if colon > slash => colon,
            (Some(colon), None) => colon,
            _ => name.len(),
        }
    }

    /// The value as recorded in the `Consul-Value` trailer: the normalized repository with the tag
    /// and/or digest (`docker.io/library/python:3.12`), so two spellings of one value compare equal.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The normalized repository (`docker.io/library/python`): jobs running it are updated.
    pub fn repository(&self) -> &str {
        &self.reference[..self.repo_len()]
    }

    /// `:tag`, `@digest` or `:tag@digest`: what follows the repository.
    fn version_suffix(&self) -> &str {
        &self.reference[self.repo_len()..]
    }

    /// The new tag, if any (a tag holds neither `:` nor `@`).
    pub fn tag(&self) -> Option<&str> {
        let tag = self.version_suffix().strip_prefix(':')?;
        Some(tag.split_once('@').map_or(tag, |(t, _)| t))
    }

    /// The new tag and digest with `name` in front: a file's reference rewritten in the file's own
    /// spelling of the repository.
    pub fn with_written_name(&self, name: &str) -> String {
        format!("{name}{}", self.version_suffix())
    }

    /// The reference parsed again (for commit subjects); it was built from a parsed one.
    pub fn image(&self) -> Option<ImageRef> {
        ImageRef::parse(&self.reference).ok()
    }
}

/// An entry that is valid but will not be applied, with the reason.
#[derive(Debug, Clone)]
pub struct Ignored {
    /// Consul key.
    pub key: String,
    /// Why.
    pub reason: String,
}

/// An entry that is not a valid image update, with the reason (which names the key).
#[derive(Debug, Clone)]
pub struct Rejected {
    /// Consul key (as delivered, possibly with control characters: shown with `{:?}`).
    pub key: String,
    /// `key "…": why`.
    pub reason: String,
}

/// Validated updates (at most one per repository) and the entries set aside.
#[derive(Debug, Default)]
pub struct Entries {
    /// Updates to apply, in payload order.
    pub updates: Vec<Update>,
    /// Folder keys, empty values, superseded entries.
    pub ignored: Vec<Ignored>,
    /// Invalid entries: reported as failed, the others still applied.
    pub rejected: Vec<Rejected>,
}

/// Checks shared by keys and values: nothing that could be taken for an option or a path escape.
pub fn check_text(what: &str, s: &str) -> Result<(), String> {
    if s.chars().any(char::is_control) {
        return Err(format!("{what} contains control characters"));
    }
    if s.starts_with('-') {
        return Err(format!("{what} starts with '-'"));
    }
    if s.split('/').any(|part| part == "..") || s.contains("..") {
        return Err(format!("{what} contains '..'"));
    }
    Ok(())
}

/// Validates the payload's pairs; invalid ones go to [`Entries::rejected`], each naming its key.
/// Consumes the pairs: each key moves into its entry and each value is freed once read, so a
/// large payload is not held twice.
pub fn from_pairs(pairs: Vec<KvPair>, key_prefix: &str) -> Entries {
    // Sized once: growing a vector of a million entries copies it several times over, and the
    // copies' freed space stays in the process.
    let mut entries = Entries {
        updates: Vec::with_capacity(pairs.len()),
        ..Entries::default()
    };
    for pair in pairs {
        if pair.is_folder() {
            log::debug!("ignoring folder key {:?}", pair.key);
            continue;
        }
        match update_from_pair(&pair, key_prefix) {
            Ok(Some(image)) => {
                entries
                    .updates
                    .push(Update::new(pair.key, pair.modify_index, &image))
            }
            Ok(None) => entries.ignored.push(Ignored {
                key: pair.key,
                reason: "empty value".into(),
            }),
            Err(e) => entries.rejected.push(Rejected {
                reason: format!("key {:?}: {e}", pair.key),
                key: pair.key,
            }),
        }
    }
    supersede_duplicates(&mut entries);
    entries
}

/// The new image of a pair, `None` for an empty value.
fn update_from_pair(pair: &KvPair, key_prefix: &str) -> Result<Option<ImageRef>, String> {
    check_text("key", &pair.key)?;
    let value = pair
        .value_str()
        .map_err(|_| "value is not UTF-8".to_string())?;
    // `echo 1.4.2 | consul kv put key -` stores the newline too.
    let value = value.trim_matches(|c: char| c == ' ' || c == '\n' || c == '\r' || c == '\t');
    if value.is_empty() {
        return Ok(None);
    }
    check_text("value", value)?;
    let image = match parse_bare_version(value).map_err(|e| e.to_string())? {
        Some(bare) => {
            let name = pair.key.strip_prefix(key_prefix).ok_or_else(|| {
                format!("value {value:?} is a bare tag but the key is not under --key-prefix {key_prefix:?}, so it names no repository")
            })?;
            // `--key-prefix images` (no slash) still means the repository after `images/`.
            let name = name.trim_start_matches('/');
            let repo = ImageRef::parse_name(name).map_err(|e| {
                format!("the key after {key_prefix:?} must name an image repository: {e}")
            })?;
            repo.with_version(bare.tag.as_deref(), bare.digest.as_deref())
        }
        None => {
            let image = ImageRef::parse(value).map_err(|e| e.to_string())?;
            if image.tag().is_none() && image.digest().is_none() {
                return Err(format!("value {value:?} has neither a tag nor a digest"));
            }
            let key_repo = pair
                .key
                .strip_prefix(key_prefix)
                .and_then(|n| ImageRef::parse_name(n.trim_start_matches('/')).ok());
            if let Some(key_repo) = key_repo.filter(|k| k.repository() != image.repository()) {
                // The value decides; the key is only the audit trail. Say so, it is likely a CI slip.
                log::warn!(
                    "key {:?} names {} but its value names {}; updating {}",
                    pair.key,
                    key_repo.repository(),
                    image.repository(),
                    image.repository()
                );
            }
            image
        }
    };
    Ok(Some(image))
}

/// Two keys naming the same repository: the most recently written (highest ModifyIndex) wins; on
/// a tie, the first in the payload. Found by sorting indexes (4 bytes an entry) rather than with
/// a map of repository names, which would cost more than the payload itself.
fn supersede_duplicates(entries: &mut Entries) {
    let updates = &entries.updates;
    let mut order: Vec<u32> = (0..updates.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| {
        let (ua, ub) = (&updates[a as usize], &updates[b as usize]);
        ua.repository()
            .cmp(ub.repository())
            .then(ub.modify_index.cmp(&ua.modify_index))
            .then(a.cmp(&b))
    });
    let mut superseded = vec![false; updates.len()];
    for pair in order.windows(2) {
        if updates[pair[0] as usize].repository() == updates[pair[1] as usize].repository() {
            superseded[pair[1] as usize] = true;
        }
    }
    drop(order);
    if !superseded.contains(&true) {
        return;
    }
    let all = std::mem::take(&mut entries.updates);
    entries.updates = Vec::with_capacity(all.len());
    for (u, lost) in all.into_iter().zip(superseded) {
        if lost {
            entries.ignored.push(Ignored {
                reason: format!("superseded by a newer key for {}", u.repository()),
                key: u.key.into(),
            });
        } else {
            entries.updates.push(u);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(key: &str, value: Option<&str>, idx: u64) -> KvPair {
        KvPair {
            key: key.into(),
            create_index: idx,
            modify_index: idx,
            lock_index: 0,
            flags: 0,
            value: value.map(|v| v.as_bytes().to_vec()),
            session: String::new(),
        }
    }

    #[test]
    fn bare_tags_use_the_key() {
        let e = from_pairs(
            vec![pair(
                "images/registry.local:5000/sami/api",
                Some("1.4.2\n"),
                7,
            )],
            "images/",
        );
        let u = &e.updates[0];
        assert_eq!(u.repository(), "registry.local:5000/sami/api");
        assert_eq!(u.tag(), Some("1.4.2"));
        assert_eq!(u.modify_index, 7);
    }

    #[test]
    fn prefix_without_slash() {
        let e = from_pairs(vec![pair("images/sami/api", Some("2.0"), 1)], "images");
        assert_eq!(e.updates[0].repository(), "docker.io/sami/api");
    }

    #[test]
    fn full_references_and_folders() {
        let e = from_pairs(
            vec![
                pair("images/", None, 1),
                pair("ci/api", Some("python:3.12"), 2),
                pair("images/empty", Some(""), 3),
            ],
            "images/",
        );
        assert_eq!(e.updates.len(), 1);
        assert_eq!(e.updates[0].repository(), "docker.io/library/python");
        assert_eq!(e.ignored.len(), 1);
    }

    #[test]
    fn sets_bad_entries_aside_naming_the_key() {
        for (key, value) in [
            ("images/sami/api", "-rf"),
            ("images/sami/api", "1..2"),
            ("images/sami/api", "bad\u{1}"),
            ("images/../etc", "1.0"),
            ("-images/x", "1.0"),
            ("images/Sami/API", "1.0"),
            ("other/sami/api", "1.0"),
            ("images/sami/api", "sami/api"),
            ("images/sami/api", "sami/api@sha256:00"),
        ] {
            let e = from_pairs(
                vec![
                    pair(key, Some(value), 1),
                    pair("images/sami/worker", Some("2.1.0"), 2),
                ],
                "images/",
            );
            assert_eq!(e.rejected.len(), 1, "{key} = {value:?}");
            assert_eq!(e.rejected[0].key, key);
            assert!(e.rejected[0].reason.contains(key), "{:?}", e.rejected);
            assert_eq!(e.updates.len(), 1, "the good entry is kept");
            assert_eq!(e.updates[0].key(), "images/sami/worker");
        }
    }

    #[test]
    fn the_recorded_reference_is_normalized() {
        let e = from_pairs(
            vec![
                pair("images/python", Some("3.12"), 1),
                pair("ci/api", Some("index.docker.io/sami/api:2@sha256:00"), 2),
            ],
            "images/",
        );
        assert_eq!(e.updates[0].reference(), "docker.io/library/python:3.12");
        assert!(e.rejected[0].reason.contains("ci/api"), "{:?}", e.rejected);
    }

    #[test]
    fn an_update_keeps_one_normalized_reference() {
        let python = ImageRef::parse_name("python")
            .unwrap()
            .with_version(Some("3.12"), Some("sha256:0123"));
        let u = Update::new("images/x".into(), 3, &python);
        assert_eq!(u.repository(), "docker.io/library/python");
        assert_eq!(u.tag(), Some("3.12"));
        assert_eq!(u.reference(), "docker.io/library/python:3.12@sha256:0123");
        assert_eq!(u.with_written_name("python"), "python:3.12@sha256:0123");
        assert_eq!(u.key(), "images/x");
        let port = ImageRef::parse("registry.local:5000/a/b:1.0").unwrap();
        let u = Update::new("images/p".into(), 2, &port);
        assert_eq!(u.repository(), "registry.local:5000/a/b");
        assert_eq!(u.tag(), Some("1.0"));
        let digest_only = ImageRef::parse_name("registry.local:5000/a/b")
            .unwrap()
            .with_version(None, Some("sha256:00"));
        let u = Update::new("images/a/b".into(), 1, &digest_only);
        assert_eq!(u.tag(), None);
        assert_eq!(u.repository(), "registry.local:5000/a/b");
        assert_eq!(
            u.with_written_name("registry.local:5000/a/b"),
            "registry.local:5000/a/b@sha256:00"
        );
    }

    #[test]
    fn duplicates_keep_the_highest_index_then_the_first() {
        let e = from_pairs(
            vec![
                pair("images/a/b", Some("1"), 5),
                pair("images/c/d", Some("1"), 1),
                pair("images/docker.io/a/b", Some("2"), 5),
                pair("images/index.docker.io/a/b", Some("3"), 4),
            ],
            "images/",
        );
        let kept: Vec<&str> = e.updates.iter().map(Update::key).collect();
        assert_eq!(kept, ["images/a/b", "images/c/d"], "payload order kept");
        let lost: Vec<&str> = e.ignored.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(lost, ["images/docker.io/a/b", "images/index.docker.io/a/b"]);
    }

    #[test]
    fn newest_key_wins_per_repository() {
        let e = from_pairs(
            vec![
                pair("images/python", Some("3.11"), 9),
                pair("images/docker.io/library/python", Some("3.12"), 12),
            ],
            "images/",
        );
        assert_eq!(e.updates.len(), 1);
        assert_eq!(e.updates[0].tag(), Some("3.12"));
        assert_eq!(e.ignored[0].key, "images/python");
    }
}
