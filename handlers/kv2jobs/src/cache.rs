//! `--cache-dir`: which live apps a run found equal to their config, and at which Marathon app
//! version, so the next run does not normalize and compare them again (issue 13).
//!
//! An entry says "the live app at `version` matched the config whose text hashes to
//! `config`". It is used only when both still hold: Marathon gives an app a new `version` on
//! every change to it (a deploy, a scale, an edit in its UI: drift is still seen and repaired),
//! and any change to the config changes its hash. An app that matches is then read for its
//! `id`, `version` and `labels` only.
//!
//! The file also keeps Marathon's newest root group version at the time ([`Cache::root`]):
//! Marathon makes a new root group version on every change to any app. When the next run finds
//! the same newest root version, nothing changed in Marathon, and without `--prune` it reads
//! only the apps whose config has no entry (`GET /v2/apps/{id}`) instead of every app. The hash is salted with the shipwatch version (a new
//! normalization never trusts an old verdict); each watch (Marathon URLs and `--prefix`) has its
//! own file, and the file names neither (URLs may hold credentials). Entries are written only
//! after a run that was not `--dry-run`, for the apps it found unchanged. The cache is only an
//! optimization: a missing, unreadable or foreign file is a cold start, a failed write a
//! warning; deleting the directory is always safe.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bumped when the meaning of an entry changes.
const FORMAT: u32 = 1;

/// One verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The live app's Marathon `version` when it was found equal.
    pub version: String,
    /// [`config_hash`] of the config it was equal to.
    pub config: String,
    /// [`source_hash`] of the KV key and value the config came from, when it was that key's
    /// only app: the same bytes again need no parsing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    shipwatch: String,
    /// The newest root group version of Marathon when the entries were true (see [`Cache::root`]).
    #[serde(default)]
    root: Option<String>,
    apps: HashMap<String, Entry>,
}

/// The cache of one watch (empty when `--cache-dir` is not set).
#[derive(Debug, Default)]
pub struct Cache {
    path: Option<PathBuf>,
    root: Option<String>,
    apps: HashMap<String, Entry>,
    /// [`Entry::source`] → app id.
    sources: HashMap<String, String>,
}

fn hash_hex(parts: &[&str]) -> String {
    // std's SipHasher with fixed keys: the same across runs of one build, and the file is
    // salted with the build's version.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    FORMAT.hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    for p in parts {
        p.hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

/// The hash a config's text is known by.
pub fn config_hash(text: &str) -> String {
    hash_hex(&[text])
}

/// The hash a KV key and its value (a file as git2consul mirrors it) are known by.
pub fn source_hash(key: &str, value: &[u8]) -> String {
    hash_hex(&[key, &String::from_utf8_lossy(value)])
}

impl Cache {
    /// The cache of the watch on `marathon` (its `--marathon` list) and `prefix` in `dir`. Never
    /// fails: anything wrong with the file is a cold start (logged).
    pub fn open(dir: &Path, marathon: &str, prefix: &str) -> Cache {
        let path = dir.join(format!("kv2jobs-{}.json", hash_hex(&[marathon, prefix])));
        let (root, apps) = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<CacheFile>(&bytes) {
                Ok(f) if f.format == FORMAT && f.shipwatch == env!("CARGO_PKG_VERSION") => {
                    (f.root, f.apps)
                }
                Ok(_) => {
                    log::info!("{}: written by another version; not used", path.display());
                    (None, HashMap::new())
                }
                Err(e) => {
                    log::warn!("{}: not a kv2jobs cache ({e}); not used", path.display());
                    (None, HashMap::new())
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, HashMap::new()),
            Err(e) => {
                log::warn!("{}: {e}; not used", path.display());
                (None, HashMap::new())
            }
        };
        let sources = apps
            .iter()
            .filter_map(|(id, e): (&String, &Entry)| Some((e.source.clone()?, id.clone())))
            .collect();
        Cache {
            path: Some(path),
            root,
            apps,
            sources,
        }
    }

    /// The app a KV key and value defined when they were last seen, and its entry: the same
    /// bytes (and the same shipwatch version) classify the same, so they need no parsing.
    pub fn known_source(&self, source: &str) -> Option<(&str, &Entry)> {
        let id = self.sources.get(source)?;
        Some((id.as_str(), self.apps.get(id)?))
    }

    /// Marathon's newest root group version when the entries were written, if nothing but
    /// kv2jobs's own writes changed Marathon during that run: while it is still the newest,
    /// nothing in Marathon has changed since, and the entries describe it as it is.
    pub fn root(&self) -> Option<&str> {
        self.root.as_deref()
    }

    pub fn is_enabled(&self) -> bool {
        self.path.is_some()
    }

    /// The live version at which app `id` matched a config hashing to `config`, if it did.
    pub fn version_of(&self, id: &str, config: &str) -> Option<&str> {
        self.apps
            .get(id)
            .filter(|e| e.config == config)
            .map(|e| e.version.as_str())
    }

    /// Replaces the file with `apps` and `root` (written to a temporary file, then renamed).
    pub fn save(&self, apps: HashMap<String, Entry>, root: Option<String>) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let file = CacheFile {
            format: FORMAT,
            shipwatch: env!("CARGO_PKG_VERSION").to_string(),
            root,
            apps,
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer(std::io::BufWriter::new(tmp.as_file_mut()), &file)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// The file, for messages.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_holds_only_for_the_same_config_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path(), "http://m:8080", "jobs/main/");
        assert!(c.version_of("/a", &config_hash("{}")).is_none());
        let mut apps = HashMap::new();
        apps.insert(
            "/a".to_string(),
            Entry {
                version: "v1".into(),
                config: config_hash(r#"{"id":"/a"}"#),
                source: Some(source_hash("jobs/main/a.json", br#"{"id":"a"}"#)),
            },
        );
        c.save(apps, Some("2026-11-27T10:00:00.000Z".into()))
            .unwrap();
        let c = Cache::open(dir.path(), "http://m:8080", "jobs/main/");
        assert_eq!(c.root(), Some("2026-11-27T10:00:00.000Z"));
        assert_eq!(
            c.version_of("/a", &config_hash(r#"{"id":"/a"}"#)),
            Some("v1")
        );
        assert_eq!(
            c.version_of("/a", &config_hash(r#"{"id":"/a","x":1}"#)),
            None
        );
        // Another watch (prefix or Marathon) has a file of its own.
        let other = Cache::open(dir.path(), "http://m:8080", "jobs/canary/");
        assert!(other
            .version_of("/a", &config_hash(r#"{"id":"/a"}"#))
            .is_none());
    }

    #[test]
    fn a_bad_file_is_a_cold_start_and_names_no_url() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path(), "http://user:secret@m:8080", "");
        let path = c.path().unwrap().to_path_buf();
        assert!(!path.display().to_string().contains("secret"));
        std::fs::write(&path, b"not json").unwrap();
        let c = Cache::open(dir.path(), "http://user:secret@m:8080", "");
        assert!(c.is_enabled());
        assert!(c.version_of("/a", "x").is_none());
    }
}
