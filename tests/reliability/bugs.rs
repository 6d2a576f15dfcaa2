//! Regression tests for the bugs the reliability suite found (secrets echoed back in a Consul 403
//! body, in base64 basic auth, by a git remote, or in ureq's debug log; config keys with `..` or a
//! leading `-` deployed; no JSON document on a usage error with --output json). Each failed before
//! its fix.
//!
//! Needs the handler binaries built, like the suite.

#![allow(dead_code)]

#[path = "gitrepo.rs"]
mod gitrepo;
#[path = "harness.rs"]
mod harness;
#[path = "secrets.rs"]
mod secrets;

use harness::{Invocation, Outcome};
use secrets::{all_secrets, Echo, CONSUL_TOKEN, GIT_PASS, MARATHON_PASS};

fn assert_no_leak(out: &Outcome) {
    out.sane().unwrap_or_else(|e| panic!("{e}"));
    out.no_secrets(&all_secrets())
        .unwrap_or_else(|e| panic!("{e}"));
}

/// crates/consul/src/error.rs `ConsulError::from_response`: a 403 keeps the raw body
/// (`resp.text()`), not the redacted one (`resp.error()` scrubs), so a proxy or server that echoes
/// the request puts the ACL token into the summary and the log.
#[test]
fn bug_consul_403_body_is_not_redacted() {
    let consul = Echo::start(&[403]);
    let home = tempfile::tempdir().unwrap();
    let out = Invocation::new("tasks2consul", home.path())
        .env("MARATHON_URL", "http://127.0.0.1:9")
        .env("CONSUL_HTTP_ADDR", consul.url())
        .env("CONSUL_HTTP_TOKEN", CONSUL_TOKEN)
        .args(["--lock", "shipwatch/lock", "--timeout", "10s"])
        .stdin(b"null".to_vec())
        .run();
    assert_no_leak(&out);
}

/// crates/runtime/src/redact.rs: for Basic auth (MARATHON_USERNAME/MARATHON_PASSWORD, or
/// `user:pass@` in a URL) the redactor knows the password but not the `base64(user:pass)` that
/// goes on the wire, so an error body echoing the Authorization header leaks a usable credential.
#[test]
fn bug_basic_auth_echoed_in_base64_is_not_redacted() {
    let marathon = Echo::start(&[500]);
    let home = tempfile::tempdir().unwrap();
    let out = Invocation::new("tasks2consul", home.path())
        .env("MARATHON_URL", marathon.url())
        .env("MARATHON_USERNAME", "deploy")
        .env("MARATHON_PASSWORD", MARATHON_PASS)
        .env("CONSUL_HTTP_ADDR", "http://127.0.0.1:9")
        .args(["--timeout", "10s"])
        .stdin(b"null".to_vec())
        .run();
    assert_no_leak(&out);
}

/// gitops (git's stderr through runtime's Redactor::for_url): git prints a 401 body of the remote
/// as `remote: …`; the Basic header it echoes is not scrubbed (only the password is).
#[test]
fn bug_git_remote_echo_of_basic_auth_is_not_redacted() {
    let git = Echo::start(&[401]);
    let home = tempfile::tempdir().unwrap();
    let out = Invocation::new("tag2git", home.path())
        .arg("--repo")
        .arg(format!("{}/ops/jobs.git", git.url_with("ci", GIT_PASS)))
        .args(["--push-attempts", "1", "--timeout", "10s", "--workdir"])
        .arg(home.path().join("wd"))
        .stdin(gitrepo::payload(&[gitrepo::kv(
            gitrepo::API_KEY,
            b"1.4.2",
            5,
        )]))
        .run();
    assert_no_leak(&out);
}

/// runtime::init_logging: with `RUST_LOG=debug` (what an operator sets to troubleshoot) ureq
/// logs every request prelude; it masks `Authorization` but not `X-Consul-Token`, which is how
/// the Consul token is sent. Either send it as `Authorization: Bearer` or cap ureq at `warn`.
#[test]
fn bug_debug_log_prints_the_consul_token() {
    let consul = Echo::start(&[500]);
    let home = tempfile::tempdir().unwrap();
    let out = Invocation::new("tasks2consul", home.path())
        .env("RUST_LOG", "debug")
        .env("MARATHON_URL", "http://127.0.0.1:9")
        .env("CONSUL_HTTP_ADDR", consul.url())
        .env("CONSUL_HTTP_TOKEN", CONSUL_TOKEN)
        .args(["--lock", "shipwatch/lock", "--timeout", "10s"])
        .stdin(b"null".to_vec())
        .run();
    assert_no_leak(&out);
}

#[path = "badinput.rs"]
mod badinput;
#[path = "faults.rs"]
mod faults;
#[path = "jobs.rs"]
mod jobs;

/// handlers/kv2jobs: config keys are checked for control characters but not for `..`, so
/// `jobs/main/../dev/api.json` passes `--prefix jobs/main/` textually, is deployed, and is
/// recorded as the app's `shipwatch.source-key` (what `--prune` scopes on). It names another
/// branch's path; COMMON.md: keys with `..` are rejected. Expected: the config rejected (exit 65,
/// the key named), nothing written.
#[test]
fn bug_kv2jobs_deploys_config_keys_with_dotdot() {
    let s = jobs::Stack::start();
    let key = "jobs/main/../dev/api.json";
    let out = s
        .run(gitrepo::payload(&[gitrepo::kv(
            key,
            br#"{"id":"/sami/web","cmd":"x"}"#,
            5,
        )]))
        .run();
    let before = "writes (marathon, chronos, consul) (0, 0, 0), apps [], jobs []";
    badinput::refused(&out, 65, &[key], before, &s.snapshot()).unwrap_or_else(|e| panic!("{e}"));
}

/// handlers/kv2jobs: a key with a leading `-` (`-rf/api.json`) is deployed when no `--prefix`
/// is given (control characters are refused, a leading `-` is not; COMMON.md: keys with a leading
/// `-` are rejected). Expected: exit 65 naming the key, nothing written.
#[test]
fn bug_kv2jobs_accepts_keys_with_leading_dash() {
    let s = jobs::Stack::start();
    let key = "-rf/api.json";
    let out = harness::Invocation::new("kv2jobs", s.home.path())
        .env("MARATHON_URL", s.marathon.url())
        .args(["--timeout", "10s"])
        .stdin(gitrepo::payload(&[gitrepo::kv(
            key,
            br#"{"id":"/sami/web","cmd":"x"}"#,
            5,
        )]))
        .run();
    let before = "writes (marathon, chronos, consul) (0, 0, 0), apps [], jobs []";
    badinput::refused(&out, 65, &[key], before, &s.snapshot()).unwrap_or_else(|e| panic!("{e}"));
}

/// crates/runtime/src/cli.rs `parse_args`: a usage error exits 64 with clap's message on stderr
/// but prints nothing on stdout even when `--output json` was given, so a script reading the
/// summary (issue 2: "exactly one JSON document on stdout") gets no document. Minor: the format is
/// known from argv even when another flag is bad.
#[test]
fn bug_usage_error_with_output_json_prints_no_summary() {
    let home = tempfile::tempdir().unwrap();
    for h in ["tag2git", "kv2jobs", "tasks2consul"] {
        let out = Invocation::new(h, home.path())
            .args(["--bogus-flag"])
            .stdin(b"null".to_vec())
            .run();
        assert_eq!(out.code, Some(64), "{}", out.show());
        harness::one_json_document(&out.stdout).unwrap_or_else(|e| panic!("{h}: {e}"));
    }
}
