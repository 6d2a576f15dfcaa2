//! tag2git: a Consul `key`/`keyprefix` watch handler that writes the image CI just published into the
//! Marathon and Chronos job files of a Git repository, commits with an audit trail and pushes.
//!
//! Git stays the single source of truth: every deployment is a commit whose trailers name the Consul
//! key, ModifyIndex and value it came from, and replays (agent start/reload, re-fired watches) are
//! recognised from those trailers. See README.md next to this file for flags, exit codes and examples.

mod entries;
mod history;
mod message;
mod run;
mod scan;

use std::path::PathBuf;

use clap::Parser;
use runtime::{CommonArgs, ConsulArgs, Exit, ToExit};

/// Commit new image tags from Consul KV into Marathon/Chronos job files in Git.
#[derive(Debug, Parser)]
#[command(name = "tag2git", version, about, long_about = None)]
pub struct Args {
    /// Git repository to update: URL (https://, ssh://, git@host:path, file://) or local path.
    #[arg(long, env = "TAG2GIT_REPO", value_name = "URL-OR-PATH")]
    pub repo: String,

    /// Branch holding the job files.
    #[arg(long, default_value = "main")]
    pub branch: String,

    /// Prefix of the watched keys; the rest of a key names the repository for bare-tag values
    /// (`images/registry.local:5000/sami/api` = `1.4.2`).
    #[arg(long, default_value = "images/", value_name = "PREFIX")]
    pub key_prefix: String,

    /// Only update `*.json` files under this directory of the repository (repeatable; default: all).
    #[arg(long = "path", value_name = "DIR")]
    pub paths: Vec<String>,

    /// Working clone to reuse between runs (default: a directory under $XDG_CACHE_HOME or
    /// ~/.cache/shipwatch/tag2git/, else a temporary clone per run).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,

    /// Commit author, "Name <email>" (default: git's configured user).
    #[arg(long, value_name = "NAME <EMAIL>")]
    pub author: Option<String>,

    /// Commit message template; placeholders {subject} {body} {repository} {old} {new} {keys}
    /// {count} {images} {consul_index}; trailers are always appended.
    #[arg(long, value_name = "TEMPLATE")]
    pub message_template: Option<String>,

    /// Push to this branch instead of --branch (review flows); commits stack on it if it exists.
    #[arg(long, value_name = "BRANCH")]
    pub push_branch: Option<String>,

    /// Sign the commit with the user's git signing configuration (git commit -S).
    #[arg(long)]
    pub sign: bool,

    /// Only apply tags matching this regular expression (others are reported as skipped).
    #[arg(long, value_name = "REGEX")]
    pub allow_tags: Option<String>,

    /// Re-apply every entry, even those whose key, ModifyIndex and value are already in the history.
    #[arg(long)]
    pub all: bool,

    /// Push attempts (a rejected push fetches, re-applies on the new tip and retries).
    #[arg(long, default_value_t = 6, value_name = "N")]
    pub push_attempts: u32,

    #[command(flatten)]
    pub common: CommonArgs,

    /// Consul address, used only for `--lock`.
    #[command(flatten)]
    pub consul: ConsulArgs,
}

/// Why a run ended without a summary of its own.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags or configuration (64).
    #[error("{0}")]
    Usage(String),
    /// Invalid payload (65); nothing was changed.
    #[error("invalid payload: {0}")]
    Payload(String),
    /// The workdir lock stayed busy until the deadline (75).
    #[error(transparent)]
    Lock(#[from] gitops::LockError),
    /// Git failed in a way that is not about reaching the remote (1).
    #[error(transparent)]
    Git(#[from] gitops::GitError),
    /// The remote stayed unreachable (69).
    #[error("git remote {repo} unreachable: {source}")]
    Unreachable {
        /// Repository, credentials redacted.
        repo: String,
        /// Last error.
        source: gitops::GitError,
    },
    /// Local I/O (1).
    #[error("{0}")]
    Io(String),
}

impl ToExit for Error {
    fn exit(&self) -> Exit {
        match self {
            Error::Usage(_) => Exit::Usage,
            Error::Payload(_) => Exit::DataErr,
            Error::Lock(gitops::LockError::Busy { .. }) => Exit::TempFail,
            Error::Unreachable { .. } => Exit::Unavailable,
            Error::Lock(_) | Error::Git(_) | Error::Io(_) => Exit::Software,
        }
    }
}

fn main() {
    let args: Args = runtime::parse_args();
    // --lock KEY (several agents run this watch): only the run holding the Consul session lock acts.
    consul::lock::run_locked("tag2git", &args.common, &args.consul, |ctx| {
        run::run(&args, ctx)
    })
}
