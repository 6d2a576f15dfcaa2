//! Keeping credentials embedded in repository URLs out of logs, errors and commit messages: the
//! URL has to reach git, but nothing tag2git prints may contain the token. Every error built from
//! git's stderr and every command line shown goes through a [`Redactor`] (the shared one from
//! `runtime::redact`).

pub use runtime::redact::{redact_url, Redactor};
