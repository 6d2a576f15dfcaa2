//! A stand-in for git2consul (an external Node.js tool) for the demo and the end-to-end tests:
//! mirrors one branch of a Git repository into Consul KV with git2consul's layout and order
//! (shared/reference/marathon-chronos-and-registrars.md §5): `<repo>/<branch>/<path>` = the file's
//! contents trimmed, written one key at a time, then `<repo>/<branch>.ref` = the commit SHA,
//! written last and only after every file write succeeded. With a previous `.ref`, only the files
//! that `git diff --no-renames --name-status old new` names are written (A/M/T) or deleted (D).

use std::path::Path;
use std::process::Command;

/// What one mirror run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorReport {
    pub commit: String,
    pub written: Vec<String>,
    pub deleted: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("git {args}: {stderr}")]
    Git { args: String, stderr: String },
    #[error("consul {what}: {reason}")]
    Consul { what: String, reason: String },
}

fn git(repo: &Path, args: &[&str]) -> Result<String, MirrorError> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| MirrorError::Git {
            args: args.join(" "),
            stderr: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(MirrorError::Git {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn kv_url(consul: &str, key: &str) -> String {
    format!("{}/v1/kv/{}", consul.trim_end_matches('/'), key)
}

fn consul_err(what: &str, e: impl std::fmt::Display) -> MirrorError {
    MirrorError::Consul {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

fn kv_get_raw(consul: &str, key: &str) -> Result<Option<String>, MirrorError> {
    match ureq::get(&format!("{}?raw", kv_url(consul, key))).call() {
        Ok(mut r) => Ok(Some(
            r.body_mut()
                .read_to_string()
                .map_err(|e| consul_err(key, e))?,
        )),
        Err(ureq::Error::StatusCode(404)) => Ok(None),
        Err(e) => Err(consul_err(key, e)),
    }
}

fn kv_put(consul: &str, key: &str, value: &[u8]) -> Result<(), MirrorError> {
    ureq::put(&kv_url(consul, key))
        .send(value)
        .map(|_| ())
        .map_err(|e| consul_err(key, e))
}

fn kv_delete(consul: &str, key: &str) -> Result<(), MirrorError> {
    ureq::delete(&kv_url(consul, key))
        .call()
        .map(|_| ())
        .map_err(|e| consul_err(key, e))
}

/// Mirrors `branch` of the (bare or non-bare `.git`) repository at `git_dir` into the Consul at
/// `consul_url` under `repo_name`.
pub fn mirror(
    git_dir: &Path,
    repo_name: &str,
    branch: &str,
    consul_url: &str,
) -> Result<MirrorReport, MirrorError> {
    let commit = git(git_dir, &["rev-parse", &format!("refs/heads/{branch}")])?
        .trim()
        .to_string();
    let ref_key = format!("{repo_name}/{branch}.ref");
    let last = kv_get_raw(consul_url, &ref_key)?;
    let mut report = MirrorReport {
        commit: commit.clone(),
        ..Default::default()
    };
    if last.as_deref().map(str::trim) == Some(commit.as_str()) {
        return Ok(report);
    }
    let changes: Vec<(char, String)> = match last {
        Some(old) => git(
            git_dir,
            &["diff", "--no-renames", "--name-status", old.trim(), &commit],
        )?
        .lines()
        .filter_map(|l| {
            let (status, path) = l.split_once('\t')?;
            Some((status.chars().next()?, path.to_string()))
        })
        .collect(),
        None => git(git_dir, &["ls-tree", "-r", "--name-only", &commit])?
            .lines()
            .map(|p| ('M', p.to_string()))
            .collect(),
    };
    for (status, path) in changes {
        let key = format!("{repo_name}/{branch}/{path}");
        if status == 'D' {
            kv_delete(consul_url, &key)?;
            report.deleted.push(key);
        } else {
            let body = git(git_dir, &["show", &format!("{commit}:{path}")])?;
            kv_put(consul_url, &key, body.trim().as_bytes())?;
            report.written.push(key);
        }
    }
    kv_put(consul_url, &ref_key, commit.as_bytes())?;
    Ok(report)
}
