//! gitops: the Git side of shipwatch's tag2git handler.
//!
//! What it is for:
//! - [`imageref`]: Docker image references with Docker's grammar and normalization
//!   (`python` = `docker.io/library/python`);
//! - [`jsonedit`]: a strict JSON parser that records byte spans, and byte-exact in-place edits of string
//!   values, so a changed image is the only changed byte range in a file;
//! - [`jobs`]: where images sit in Marathon apps, Marathon groups and Chronos jobs;
//! - [`git`]: the `git` CLI (clone, fetch, reset, ls-files, trailers from history, commit, push) run with
//!   argument vectors, timeouts, no prompts, failures classified from stderr and credentials redacted;
//! - [`lock`]: an exclusive lock so two runs on one working directory serialize;
//! - [`redact`]: scrubbing credentials embedded in repository URLs.
//!
//! Not for: anything about Consul (payload decoding and exit codes live in `watch`/`runtime` and the
//! handler), retries and deadlines policy (the caller passes timeouts per call), or libgit2-style object
//! access.

pub mod git;
pub mod imageref;
pub mod jobs;
pub mod jsonedit;
pub mod lock;
pub mod redact;

pub use git::{CommitOptions, FailureKind, Git, GitError, TrackedFile, Trailer};
pub use imageref::{ImageRef, ImageRefError};
pub use jobs::{image_sites, ImageSite, JobKind};
pub use jsonedit::{Edit, JsonError, Node};
pub use lock::{LockError, WorkdirLock};
pub use redact::{redact_url, Redactor};
