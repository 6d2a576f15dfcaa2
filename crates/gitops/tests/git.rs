//! The git wrapper against real repositories in temp dirs (git isolated from the host's config).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use gitops::{CommitOptions, FailureKind, Git, GitError, Redactor};

const T: Duration = Duration::from_secs(30);

/// The wrapper inherits the process environment, so the isolation is set there, exactly once and
/// before any test of this file starts a process (each calls this first and waits on the Once).
fn isolate() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var("GIT_CONFIG_GLOBAL", "/dev/null");
        std::env::set_var("GIT_CONFIG_NOSYSTEM", "1");
        std::env::set_var("GIT_COMMITTER_NAME", "Committer");
        std::env::set_var("GIT_COMMITTER_EMAIL", "committer@example.org");
        std::env::set_var("GIT_AUTHOR_NAME", "Author");
        std::env::set_var("GIT_AUTHOR_EMAIL", "author@example.org");
    });
}

fn sh_git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bare repository with one commit on main, and a clone of it through the wrapper.
fn setup() -> (tempfile::TempDir, Git) {
    isolate();
    let tmp = tempfile::tempdir().unwrap();
    sh_git(
        tmp.path(),
        &["init", "-q", "--bare", "--initial-branch=main", "r.git"],
    );
    sh_git(tmp.path(), &["clone", "-q", "r.git", "seed"]);
    let seed = tmp.path().join("seed");
    std::fs::create_dir_all(seed.join("jobs")).unwrap();
    std::fs::write(seed.join("jobs/a.json"), "{}").unwrap();
    std::fs::write(seed.join("outside.json"), "{}").unwrap();
    std::os::unix::fs::symlink("../outside.json", seed.join("jobs/link.json")).unwrap();
    sh_git(&seed, &["add", "-A"]);
    sh_git(&seed, &["commit", "-q", "-m", "seed"]);
    sh_git(&seed, &["push", "-q", "origin", "HEAD:main"]);
    let url = tmp.path().join("r.git").to_string_lossy().into_owned();
    let git = Git::clone_repo(&url, &tmp.path().join("wd"), Redactor::for_url(&url), T).unwrap();
    assert!(git.fetch_branch("main", T).unwrap());
    git.reset_to("refs/remotes/origin/main", T).unwrap();
    (tmp, git)
}

#[test]
fn ls_files_reports_modes_so_symlinks_can_be_skipped() {
    let (_tmp, git) = setup();
    let mut files = git.ls_files(&["jobs".into()], T).unwrap();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let got: Vec<_> = files
        .iter()
        .map(|f| (f.path.as_str(), f.mode.as_str()))
        .collect();
    assert_eq!(
        got,
        [("jobs/a.json", "100644"), ("jobs/link.json", "120000")]
    );
    assert_eq!(git.ls_files(&[], T).unwrap().len(), 3);
}

#[test]
fn missing_branch_is_not_an_error_for_fetch() {
    let (_tmp, git) = setup();
    assert!(!git.fetch_branch("nope", T).unwrap());
}

#[test]
fn commit_trailers_and_push_rejection() {
    let (tmp, git) = setup();
    std::fs::write(git.dir().join("jobs/a.json"), "{\"x\":1}").unwrap();
    git.add(&["jobs/a.json".into()], T).unwrap();
    let msg = "subject\n\nbody\n\nConsul-Key: images/a\nConsul-Modify-Index: 7\nConsul-Key: images/b\nConsul-Modify-Index: 9\n";
    let opts = CommitOptions {
        author: Some("Bot <bot@example.org>".into()),
        sign: false,
    };
    let first = git.commit(msg, &opts, T).unwrap();
    // Nothing staged: git refuses, classified as such (callers never make empty commits).
    match git.commit("again", &opts, T) {
        Err(e) => assert_eq!(e.kind(), FailureKind::NothingToCommit, "{e}"),
        Ok(c) => panic!("empty commit {c}"),
    }
    git.push("main", T).unwrap();
    let trailers = git
        .trailers(
            &["HEAD"],
            &["Consul-Key", "Consul-Modify-Index"],
            "^Consul-Modify-Index:",
            100,
            T,
        )
        .unwrap();
    let pairs: Vec<_> = trailers
        .iter()
        .map(|t| (t.commit.as_str(), t.key.as_str(), t.value.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            (first.as_str(), "Consul-Key", "images/a"),
            (first.as_str(), "Consul-Modify-Index", "7"),
            (first.as_str(), "Consul-Key", "images/b"),
            (first.as_str(), "Consul-Modify-Index", "9"),
        ]
    );
    // Someone else pushes first: our next push is rejected, not forced.
    let url = tmp.path().join("r.git").to_string_lossy().into_owned();
    let other = Git::clone_repo(&url, &tmp.path().join("other"), Redactor::default(), T).unwrap();
    other.fetch_branch("main", T).unwrap();
    other.reset_to("refs/remotes/origin/main", T).unwrap();
    std::fs::write(other.dir().join("jobs/a.json"), "{\"x\":2}").unwrap();
    other.add(&["jobs/a.json".into()], T).unwrap();
    other.commit("other", &opts, T).unwrap();
    other.push("main", T).unwrap();
    std::fs::write(git.dir().join("jobs/a.json"), "{\"x\":3}").unwrap();
    git.add(&["jobs/a.json".into()], T).unwrap();
    git.commit("ours", &opts, T).unwrap();
    let err = git.push("main", T).unwrap_err();
    assert_eq!(err.kind(), FailureKind::Rejected, "{err}");
}

#[test]
fn unreachable_remotes_are_classified_and_redacted() {
    isolate();
    let tmp = tempfile::tempdir().unwrap();
    let url = "http://bot:hunter2@127.0.0.1:1/r.git";
    match Git::clone_repo(url, &tmp.path().join("wd"), Redactor::for_url(url), T) {
        Err(e @ GitError::Failed { .. }) => {
            assert_eq!(e.kind(), FailureKind::Unreachable, "{e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let missing = tmp
        .path()
        .join("missing.git")
        .to_string_lossy()
        .into_owned();
    let err =
        Git::clone_repo(&missing, &tmp.path().join("wd2"), Redactor::default(), T).unwrap_err();
    assert_eq!(err.kind(), FailureKind::Unreachable, "{err}");
}

#[test]
fn stale_locks_are_removed() {
    let (_tmp, git) = setup();
    std::fs::write(git.dir().join(".git/index.lock"), "").unwrap();
    std::fs::write(git.dir().join(".git/refs/heads/main.lock"), "").unwrap();
    assert_eq!(git.remove_stale_locks().len(), 2);
    git.reset_to("refs/remotes/origin/main", T).unwrap();
}
