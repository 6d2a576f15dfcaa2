//! Issue 2's contract for every handler: with `--dry-run --output json` the key and keyprefix
//! fixtures are accepted (exit 0, one JSON document on stdout), and malformed payloads are
//! rejected with exit 65 and a message naming the problem — nothing is changed either way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use devstack::stack::{Stack, StackOptions};
use serde_json::Value;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/consul")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn bare_repo(dir: &Path) -> PathBuf {
    let bare = dir.join("jobs.git");
    let ok = Command::new("git")
        .args(["init", "--quiet", "--bare", "--initial-branch", "main"])
        .arg(&bare)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let seed = dir.join("seed");
    std::fs::create_dir_all(seed.join("apps")).unwrap();
    std::fs::write(
        seed.join("apps/a.json"),
        r#"{"id":"/a","cmd":"x","container":{"type":"DOCKER","docker":{"image":"sami/api:1"}}}"#,
    )
    .unwrap();
    for args in [
        vec!["init", "--quiet", "--initial-branch", "main"],
        vec!["add", "-A"],
        vec![
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "--quiet",
            "-m",
            "seed",
        ],
        vec!["push", "--quiet", bare.to_str().unwrap(), "main"],
    ] {
        assert!(Command::new("git")
            .current_dir(&seed)
            .args(&args)
            .status()
            .unwrap()
            .success());
    }
    bare
}

/// Runs a handler; returns (exit code, the one JSON document, stderr).
fn run(bin: &str, args: &[&str], env: &[(String, String)], stdin: &[u8]) -> (i32, Value, String) {
    let path = devstack::bins::handler_dir().unwrap().join(bin);
    let mut child = Command::new(path)
        .args(args)
        .args(["--dry-run", "--output", "json"])
        .envs(env.iter().cloned())
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@e")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{bin}: stdout is not one JSON document ({e}); stderr: {stderr}")
    });
    assert!(!stderr.contains("panicked"), "{bin}: {stderr}");
    (out.status.code().unwrap_or(-1), doc, stderr)
}

struct Setup {
    stack: Stack,
    _dir: tempfile::TempDir,
    handlers: Vec<(&'static str, Vec<String>)>,
}

fn setup() -> Setup {
    let stack = Stack::start(StackOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bare = bare_repo(dir.path());
    let workdir = dir.path().join("work");
    let handlers = vec![
        (
            "tag2git",
            vec![
                "--repo".to_string(),
                bare.display().to_string(),
                // The fixtures' keys are repositories themselves.
                "--key-prefix".into(),
                String::new(),
                "--workdir".into(),
                workdir.display().to_string(),
            ],
        ),
        ("kv2jobs", vec![]),
        ("tasks2consul", vec![]),
    ];
    Setup {
        stack,
        _dir: dir,
        handlers,
    }
}

#[test]
fn key_and_keyprefix_fixtures_are_accepted_by_every_handler() {
    let s = setup();
    let env = s.stack.env();
    for (bin, args) in &s.handlers {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        for f in [
            "key.json",
            "key-missing.json",
            "keyprefix.json",
            "keyprefix-with-folder.json",
            "keyprefix-empty.json",
        ] {
            let (code, doc, stderr) = run(bin, &args, &env, &fixture(f));
            assert_eq!(code, 0, "{bin} < {f}: {doc} {stderr}");
            assert_eq!(doc["handler"], *bin);
            assert_eq!(doc["dry_run"], true);
            assert!(
                doc["actions"].is_array() && doc["errors"].is_array(),
                "{doc}"
            );
        }
    }
    assert_eq!(s.stack.marathon.write_count(), 0);
    assert_eq!(s.stack.consul.double().unwrap().write_count(), 0);
}

#[test]
fn malformed_payloads_are_rejected_with_65_and_a_message() {
    let s = setup();
    let env = s.stack.env();
    let cases: [(&[u8], &str); 5] = [
        (br#"[{"Key":"foo/a","Value":"aGV5"#, "not valid JSON"),
        (b"", "empty"),
        (b"\"a string\"", "expected"),
        (br#"[{"Key":"foo/a","Value":"!!!"}]"#, "base64"),
        (b"[{\"Key\":\"foo/\xff\"}]", "not valid JSON"),
    ];
    for (bin, args) in &s.handlers {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        for (payload, needle) in cases {
            let (code, doc, stderr) = run(bin, &args, &env, payload);
            assert_eq!(
                code,
                65,
                "{bin} < {:?}: {doc} {stderr}",
                String::from_utf8_lossy(payload)
            );
            let errors = doc["errors"].to_string();
            assert!(errors.contains(needle), "{bin}: {errors} lacks {needle:?}");
        }
    }
    assert_eq!(s.stack.marathon.write_count(), 0);
}

/// Issue 17: `--metrics-file` (Prometheus text format, parsed here by a Prometheus text parser)
/// and `--journal` (one JSON line per run) from every handler, for a good and a bad payload.
#[test]
fn every_handler_writes_metrics_and_a_journal_line() {
    let s = setup();
    let env = s.stack.env();
    let out = tempfile::tempdir().unwrap();
    let journal = out.path().join("journal.jsonl");
    for (bin, args) in &s.handlers {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        let journal_s = journal.display().to_string();
        let metrics_s = out.path().display().to_string();
        args.extend(["--journal", &journal_s, "--metrics-file", &metrics_s]);
        for (payload, want) in [(fixture("keyprefix.json"), 0), (b"\"x\"".to_vec(), 65)] {
            let (code, doc, stderr) = run(bin, &args, &env, &payload);
            assert_eq!(code, want, "{bin}: {doc} {stderr}");
            let prom =
                std::fs::read_to_string(out.path().join(format!("shipwatch_{bin}.prom"))).unwrap();
            let scrape =
                prometheus_parse::Scrape::parse(prom.lines().map(|l| Ok(l.to_string()))).unwrap();
            let value = |name: &str| {
                scrape
                    .samples
                    .iter()
                    .find(|s| s.metric == name && s.labels.get("handler") == Some(bin))
                    .map(|s| match s.value {
                        prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => {
                            v
                        }
                        _ => f64::NAN,
                    })
                    .unwrap_or_else(|| panic!("{bin}: no {name} in {prom}"))
            };
            assert_eq!(value("shipwatch_last_run_exit_code"), f64::from(want));
            assert!(value("shipwatch_last_run_timestamp_seconds") > 1.6e9);
            assert!(value("shipwatch_last_run_duration_seconds") >= 0.0);
            assert_eq!(
                value("shipwatch_last_run_errors"),
                doc["errors"].as_array().unwrap().len() as f64
            );
            let last = std::fs::read_to_string(&journal).unwrap();
            let line: Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
            assert_eq!(line["handler"], *bin);
            assert_eq!(line["exit"], want);
            assert_eq!(line["actions"], doc["actions"]);
            assert!(line["timestamp"].as_str().unwrap().ends_with('Z'), "{line}");
            assert!(line["duration_ms"].is_u64(), "{line}");
        }
    }
    let lines = std::fs::read_to_string(&journal).unwrap().lines().count();
    assert_eq!(lines, 6, "one line per run");
}

/// Issue 17: `--log-format json` makes every stderr line one JSON object.
#[test]
fn json_logs_are_one_object_per_line() {
    let s = setup();
    let mut env = s.stack.env();
    env.push(("RUST_LOG".into(), "debug".into()));
    let (code, _, stderr) = run(
        "kv2jobs",
        &["--log-format", "json"],
        &env,
        &fixture("keyprefix.json"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.lines().count() > 0);
    for line in stderr.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["msg"].is_string() && v["ts"].is_string(),
            "{v}"
        );
    }
}
