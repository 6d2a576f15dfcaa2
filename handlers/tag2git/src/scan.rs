//! Finding the jobs that run an updated repository and computing byte-exact edits.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use gitops::imageref::ImageRef;
use gitops::jsonedit::{self, Edit};
use gitops::{image_sites, TrackedFile};

use crate::entries::Update;

/// Larger JSON files are data, not job definitions, and are not read.
pub const MAX_FILE_BYTES: u64 = 8 << 20;

/// One job image that runs an updated repository.
#[derive(Debug, Clone)]
pub struct Site {
    /// File, relative to the repository root.
    pub file: String,
    /// JSON pointer of the image string.
    pub pointer: String,
    /// Marathon app id or Chronos job name.
    pub job_id: String,
    /// The image string in the file now.
    pub old: String,
    /// What it becomes (the file's spelling of the repository, the new tag/digest).
    pub new: String,
    /// Parsed old reference.
    pub old_ref: ImageRef,
    /// Index of its update in the `updates` passed to [`scan`].
    pub update: usize,
    span: Range<usize>,
}

impl Site {
    /// `<file>#<json pointer>`, the action target.
    pub fn target(&self) -> String {
        format!("{}#{}", self.file, self.pointer)
    }

    /// Whether the file already holds the new image.
    pub fn is_unchanged(&self) -> bool {
        self.old == self.new
    }
}

/// The result of scanning the repository.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every matching job image, in file order.
    pub sites: Vec<Site>,
    /// Original bytes of files that need an edit.
    originals: BTreeMap<String, Vec<u8>>,
    /// JSON files scanned.
    pub files_scanned: usize,
}

/// Tracked regular `*.json` files (symlinks and submodules are never followed or edited).
pub fn job_files(files: Vec<TrackedFile>) -> Vec<String> {
    files
        .into_iter()
        .filter(|f| f.mode == "100644" || f.mode == "100755")
        .filter(|f| f.path.ends_with(".json"))
        .map(|f| f.path)
        .collect()
}

/// Reads and parses every file, collecting job images whose repository is one of the
/// `pending` updates' (indexes into `updates`; one per repository).
pub fn scan(root: &Path, files: &[String], updates: &[Update], pending: &[u32]) -> Scan {
    let mut result = Scan::default();
    if pending.is_empty() {
        return result;
    }
    // Sorted indexes (4 bytes an update) to look up a job's repository; a map of repository
    // names would cost more than the payload they came from (issue 13 item 5).
    let mut by_repo = pending.to_vec();
    by_repo.sort_unstable_by(|&a, &b| {
        updates[a as usize]
            .repository()
            .cmp(updates[b as usize].repository())
    });
    let find = |repo: &str| {
        by_repo
            .binary_search_by(|&i| updates[i as usize].repository().cmp(repo))
            .ok()
            .map(|pos| by_repo[pos] as usize)
    };
    for file in files {
        let path = root.join(file);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_FILE_BYTES) {
            log::warn!("skipping {file}: larger than {MAX_FILE_BYTES} bytes, not a job definition");
            continue;
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                log::warn!("skipping {file}: {e}");
                continue;
            }
        };
        result.files_scanned += 1;
        // Cheap screen before parsing: a job file names its image under an "image" key.
        if !contains(&bytes, b"\"image\"") {
            continue;
        }
        let doc = match jsonedit::parse(&bytes) {
            Ok(doc) => doc,
            Err(e) => {
                log::warn!("skipping {file}: {e}");
                continue;
            }
        };
        let mut needs_edit = false;
        for site in image_sites(&doc) {
            let Ok(old_ref) = ImageRef::parse(&site.image) else {
                log::debug!(
                    "{file}#{}: not an image reference: {:?}",
                    site.pointer,
                    site.image
                );
                continue;
            };
            let Some(update) = find(&old_ref.repository()) else {
                continue;
            };
            let new = updates[update].with_written_name(old_ref.written_name());
            needs_edit |= new != site.image;
            result.sites.push(Site {
                file: file.clone(),
                pointer: site.pointer,
                job_id: site.job_id,
                old: site.image,
                new,
                old_ref,
                update,
                span: site.span,
            });
        }
        if needs_edit {
            result.originals.insert(file.clone(), bytes);
        }
    }
    result
}

impl Scan {
    /// Sites that change.
    pub fn changes(&self) -> impl Iterator<Item = &Site> {
        self.sites.iter().filter(|s| !s.is_unchanged())
    }

    /// Writes the edited files into the working tree; returns the files written.
    pub fn write(&self, root: &Path) -> Result<Vec<String>, std::io::Error> {
        let mut written = Vec::new();
        for (file, original) in &self.originals {
            let edits: Vec<Edit> = self
                .changes()
                .filter(|s| &s.file == file)
                .map(|s| Edit {
                    span: s.span.clone(),
                    replacement: jsonedit::escape(&s.new),
                })
                .collect();
            let edited = jsonedit::apply(original, &edits)
                .map_err(|e| std::io::Error::other(format!("{file}: {e}")))?;
            std::fs::write(root.join(file), edited)?;
            written.push(file.clone());
        }
        Ok(written)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
