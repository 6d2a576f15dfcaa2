//! Issue 11 (never destroy on doubtful evidence) and issue 12 (no silent stalls), end to end:
//! the built kv2jobs binary against the devstack Marathon, Chronos and Consul doubles. Each test
//! asserts the exit code, what was (not) deleted, and the one line that says why; the controls
//! (a real removal from Git with a consistent snapshot, the cap's override) still delete.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::{action, actions, app, count, kv, parse_output, recorder, Stack};
use devstack::consul::{Consul, ConsulOptions};
use devstack::http::Fault;
use serde_json::{json, Value};

fn deploy(s: &Stack, payload: &[u8]) {
    let (code, sum, err) = s.run(payload, &[]);
    assert_eq!(code, 0, "{sum}\n{err}");
    s.settle();
}

fn pairs(entries: &[(String, u64, Option<String>)]) -> Vec<u8> {
    let v: Vec<Value> = entries
        .iter()
        .map(|(k, i, v)| kv(k, *i, v.as_deref()))
        .collect();
    serde_json::to_vec(&v).unwrap()
}

fn file(key: String, index: u64, doc: &Value) -> (String, u64, Option<String>) {
    (key, index, Some(doc.to_string()))
}

fn detail(a: &Value) -> &str {
    a["detail"].as_str().unwrap()
}

fn warnings(sum: &Value) -> String {
    sum["warnings"].to_string()
}

// ------------------------------------------------------------------ issue 11: kv2jobs --prune

#[test]
fn a_payload_without_the_ref_holds_deletes_back_and_a_complete_snapshot_prunes() {
    let s = Stack::new("noref");
    let files = [
        ("a.json", app("/noref/a", "x")),
        ("b.json", app("/noref/b", "x")),
        ("c.json", app("/noref/c", "x")),
    ];
    deploy(&s, &s.payload(&files));
    // A wiped prefix being re-mirrored: git2consul has written a.json, no .ref yet.
    let partial = pairs(&[file(s.key("a.json"), s.next_index(), &files[0].1)]);
    let (code, sum, err) = s.run(&partial, &["--prune", "--prefix", &s.prefix]);
    assert_eq!(code, 0, "{sum}\n{err}");
    for id in ["/noref/b", "/noref/c"] {
        let a = action(&sum, id);
        assert_eq!(a["status"], "skipped", "{a}");
        assert!(detail(a).contains("no git2consul .ref"), "{a}");
        assert!(
            s.live_app(id).is_some(),
            "{id} deleted on a partial payload"
        );
    }
    assert!(warnings(&sum).contains("2 delete(s) held back"), "{sum}");
    // Control: the complete snapshot (a.json and the .ref) prunes b and c.
    let (code, sum, err) = s.run(&s.payload(&files[..1]), &["--prune", "--prefix", &s.prefix]);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(actions(&sum, "delete-app").len(), 2, "{sum}");
    assert_eq!(count(&sum, "applied"), 2, "{sum}");
    s.settle();
    assert!(s.live_app("/noref/b").is_none() && s.live_app("/noref/c").is_none());
    assert!(s.live_app("/noref/a").is_some());
}

#[test]
fn a_config_key_that_holds_no_config_any_more_is_rejected_and_its_app_kept() {
    let s = Stack::new("truncated");
    let job = json!({"name":"truncated-job","command":"x","schedule":"R//PT1H"});
    deploy(
        &s,
        &s.payload(&[
            ("a.json", app("/truncated/a", "x")),
            ("b.json", app("/truncated/b", "x")),
            ("c.json", app("/truncated/c", "x")),
            ("j.json", job),
        ]),
    );
    let writes = s.marathon_writes();
    // b.json truncated to {}, c.json with a typo "ID", the job file truncated too.
    let payload = s.payload(&[
        ("a.json", app("/truncated/a", "x")),
        ("b.json", json!({})),
        ("c.json", json!({"ID": "/truncated/c", "cmd": "x"})),
        ("j.json", json!({})),
    ]);
    let (code, sum, err) = s.run(&payload, &["--prune", "--prefix", &s.prefix]);
    assert_eq!(code, 65, "{sum}\n{err}");
    for f in ["b.json", "c.json", "j.json"] {
        let a = action(&sum, &s.key(f));
        assert_eq!(a["status"], "failed", "{a}");
        assert!(
            detail(a).contains("holds no job config") || detail(a).contains("not a job config"),
            "{a}"
        );
        assert!(detail(a).contains("came from it: kept"), "{a}");
    }
    assert!(
        sum["errors"].to_string().contains(&s.key("b.json")),
        "{sum}"
    );
    assert!(actions(&sum, "delete-app")
        .iter()
        .all(|a| a["status"] == "skipped"));
    assert!(actions(&sum, "delete-job")
        .iter()
        .all(|a| a["status"] == "skipped"));
    assert!(s.live_app("/truncated/b").is_some() && s.live_app("/truncated/c").is_some());
    assert_eq!(s.live_jobs().len(), 1, "the job must be kept");
    assert_eq!(s.marathon_writes(), writes, "nothing written or deleted");
    // Control: a key that still holds a valid config but no longer defines an app (a member
    // removed from a group file) is a removal in Git, and prunes.
    let group = |apps: Value| json!({"id": "/truncated/g", "apps": apps});
    let two = group(json!([app("x", "x"), app("y", "x")]));
    let (code, sum, _) = s.run(
        &s.payload(&[
            ("a.json", app("/truncated/a", "x")),
            ("b.json", json!({})),
            ("c.json", json!({})),
            ("j.json", json!({})),
            ("g.json", two),
        ]),
        &[],
    );
    assert_eq!(code, 65, "b.json and c.json are still rejected: {sum}");
    s.settle();
    let one = group(json!([app("x", "x")]));
    let (code, sum, err) = s.run(
        &s.payload(&[
            ("a.json", app("/truncated/a", "x")),
            ("b.json", json!({})),
            ("c.json", json!({})),
            ("j.json", json!({})),
            ("g.json", one),
        ]),
        &["--prune", "--prefix", &s.prefix],
    );
    assert_eq!(code, 65, "{sum}\n{err}");
    assert_eq!(action(&sum, "/truncated/g/y")["status"], "applied", "{sum}");
    assert_eq!(action(&sum, "/truncated/b")["status"], "skipped", "{sum}");
    s.settle();
    assert!(s.live_app("/truncated/g/y").is_none() && s.live_app("/truncated/g/x").is_some());
    // Without --prune the broken config is still rejected (it is bad input either way).
    let (code, sum, _) = s.run(&payload, &[]);
    assert_eq!(code, 65, "{sum}");
    assert_eq!(action(&sum, &s.key("b.json"))["status"], "failed");
}

#[test]
fn a_rename_in_progress_keeps_the_app_and_the_completed_rename_updates_it() {
    let s = Stack::new("rename");
    let a = app("/rename/a", "x");
    let b = app("/rename/b", "x");
    deploy(
        &s,
        &pairs(&[
            file(s.key("a.json"), 100, &a),
            file(s.key("b.json"), 101, &b),
            (s.ref_key(), 102, Some("sha1".into())),
        ]),
    );
    // git2consul renames a.json to a2.json: it deleted a.json (index 103), has not written
    // a2.json nor the .ref yet. CONSUL_INDEX 103 is carried by no key of the payload.
    let mid = pairs(&[
        file(s.key("b.json"), 101, &b),
        (s.ref_key(), 102, Some("sha1".into())),
    ]);
    let (code, sum, err) = s.run_env(
        &mid,
        &["--prune", "--prefix", &s.prefix],
        &[("CONSUL_INDEX", "103")],
    );
    assert_eq!(code, 0, "{sum}\n{err}");
    let held = action(&sum, "/rename/a");
    assert_eq!(held["status"], "skipped", "{held}");
    assert!(detail(held).contains("CONSUL_INDEX 103"), "{held}");
    assert!(warnings(&sum).contains("held back"), "{sum}");
    assert!(s.live_app("/rename/a").is_some(), "deleted mid-rename");
    // The rename completes in the same commit that removes b.json: /rename/a is updated (new
    // source key), never deleted; b.json's removal is a real one and prunes (control).
    let done = pairs(&[
        file(s.key("a2.json"), 104, &a),
        (s.ref_key(), 105, Some("sha2".into())),
    ]);
    let (code, sum, err) = s.run_env(
        &done,
        &["--prune", "--prefix", &s.prefix],
        &[("CONSUL_INDEX", "105")],
    );
    assert_eq!(code, 0, "{sum}\n{err}");
    let upd = action(&sum, "/rename/a");
    assert_eq!(upd["kind"], "update-app", "{upd}");
    assert_eq!(upd["status"], "applied", "{upd}");
    let del = action(&sum, "/rename/b");
    assert_eq!(
        (del["kind"].as_str(), del["status"].as_str()),
        (Some("delete-app"), Some("applied"))
    );
    s.settle();
    assert!(s.live_app("/rename/b").is_none());
    assert_eq!(
        s.live_app("/rename/a").unwrap()["labels"]["shipwatch.source-key"],
        json!(s.key("a2.json"))
    );
}

#[test]
fn a_prefix_without_a_slash_never_prunes_a_sibling_branch() {
    let s = Stack::new("segments");
    let main = |f: &str| format!("{}/main/{f}", s.repo);
    let canary = |f: &str| format!("{}/main-canary/{f}", s.repo);
    deploy(
        &s,
        &pairs(&[
            file(main("a.json"), 10, &app("/segments/a", "x")),
            file(main("b.json"), 10, &app("/segments/b", "x")),
            (format!("{}/main.ref", s.repo), 11, Some("sha".into())),
            file(canary("c.json"), 12, &app("/segments/canary", "x")),
            (
                format!("{}/main-canary.ref", s.repo),
                13,
                Some("sha".into()),
            ),
        ]),
    );
    // main without b.json; the watch config says `--prefix <repo>/main` (no trailing slash).
    let payload = pairs(&[
        file(main("a.json"), 10, &app("/segments/a", "x")),
        (format!("{}/main.ref", s.repo), 14, Some("sha2".into())),
    ]);
    let prefix = format!("{}/main", s.repo);
    let (code, sum, err) = s.run_env(
        &payload,
        &["--prune", "--prefix", &prefix],
        &[("CONSUL_INDEX", "14")],
    );
    assert_eq!(code, 0, "{sum}\n{err}");
    let deletes: Vec<&str> = actions(&sum, "delete-app")
        .iter()
        .map(|a| a["target"].as_str().unwrap())
        .collect();
    assert_eq!(deletes, vec!["/segments/b"], "{sum}");
    s.settle();
    assert!(
        s.live_app("/segments/canary").is_some(),
        "main-canary pruned by --prefix main"
    );
    assert!(
        s.live_app("/segments/b").is_none(),
        "control: main's removal prunes"
    );
}

#[test]
fn a_payload_of_one_branch_never_prunes_another_branchs_apps() {
    let s = Stack::new("branches");
    let key = |b: &str, f: &str| format!("{}/{b}/{f}", s.repo);
    let refk = |b: &str| format!("{}/{b}.ref", s.repo);
    deploy(
        &s,
        &pairs(&[
            file(key("main", "m.json"), 10, &app("/branches/main", "x")),
            (refk("main"), 11, Some("sha".into())),
            file(key("dev", "d.json"), 12, &app("/branches/dev", "x")),
            file(key("dev", "d2.json"), 12, &app("/branches/dev2", "x")),
            (refk("dev"), 13, Some("sha".into())),
        ]),
    );
    // A watch on <repo>/dev/ ... run with --prefix <repo>/: the payload holds dev only.
    let dev = pairs(&[
        file(key("dev", "d.json"), 12, &app("/branches/dev", "x")),
        (refk("dev"), 14, Some("sha2".into())),
    ]);
    let prefix = format!("{}/", s.repo);
    let (code, sum, err) = s.run_env(
        &dev,
        &["--prune", "--prefix", &prefix],
        &[("CONSUL_INDEX", "14")],
    );
    assert_eq!(code, 0, "{sum}\n{err}");
    assert!(
        !sum["actions"].to_string().contains("/branches/main"),
        "main's app is outside this payload: {sum}"
    );
    assert_eq!(action(&sum, "/branches/dev2")["status"], "applied", "{sum}");
    s.settle();
    assert!(s.live_app("/branches/main").is_some());
    assert!(
        s.live_app("/branches/dev2").is_none(),
        "control: dev's removal prunes"
    );
}

#[test]
fn the_delete_cap_holds_every_delete_back_and_its_override_deletes() {
    let s = Stack::new("cap");
    let files: Vec<(String, Value)> = (0..8)
        .map(|i| (format!("a{i}.json"), app(&format!("/cap/a{i}"), "x")))
        .collect();
    let refs: Vec<(&str, Value)> = files.iter().map(|(f, v)| (f.as_str(), v.clone())).collect();
    deploy(&s, &s.payload(&refs));
    // 6 of 8 removed in one commit: above the default cap (20% of 8, at least 5).
    let (hook, seen) = recorder(200);
    let (code, sum, err) = s.run(
        &s.payload(&refs[..2]),
        &["--prune", "--prefix", &s.prefix, "--notify", &hook.url()],
    );
    assert_eq!(code, 75, "{sum}\n{err}");
    // The held-back deletes reach the team (--notify carries the warnings).
    let note: Value = serde_json::from_slice(&seen.lock().unwrap()[0].body).unwrap();
    assert!(
        note["text"].as_str().unwrap().contains("delete cap"),
        "{note}"
    );
    let held = actions(&sum, "delete-app");
    assert_eq!(held.len(), 6, "{sum}");
    for a in &held {
        assert_eq!(a["status"], "skipped", "{a}");
        assert!(detail(a).contains("--max-delete"), "{a}");
    }
    assert!(
        warnings(&sum).contains("delete cap: 6 deletes exceed --max-delete 20%"),
        "{sum}"
    );
    assert_eq!(
        s.live_apps()
            .iter()
            .filter(|a| a["id"].as_str().unwrap().starts_with("/cap/"))
            .count(),
        8
    );
    // The override named in the message deletes (control).
    let (code, sum, err) = s.run(
        &s.payload(&refs[..2]),
        &["--prune", "--prefix", &s.prefix, "--max-delete", "100%"],
    );
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(count(&sum, "applied"), 6, "{sum}");
    s.settle();
    assert_eq!(
        s.live_apps()
            .iter()
            .filter(|a| a["id"].as_str().unwrap().starts_with("/cap/"))
            .count(),
        2
    );
}

/// Issue 11 "Both" and issue 12 item 6: a list that is not a list, or a read Marathon refuses,
/// is an unusable remote (69): nothing deleted, nothing written to it.
#[test]
fn a_marathon_list_that_is_not_a_list_exits_69_and_deletes_nothing() {
    let s = Stack::new("strict");
    let Some(m) = s.double() else { return };
    let files = [
        ("a.json", app("/strict/a", "x")),
        ("b.json", app("/strict/b", "x")),
    ];
    deploy(&s, &s.payload(&files));
    let only_a = s.payload(&[("a.json", app("/strict/a", "y"))]);
    let answers = [
        (200, "application/json", "{}", "apps"),
        (200, "application/json", "null", "apps"),
        (
            200,
            "text/html",
            "<html><body>Bad Gateway</body></html>",
            "text/html",
        ),
        (
            400,
            "application/json",
            r#"{"message":"bad request"}"#,
            "400",
        ),
        (
            422,
            "application/json",
            r#"{"message":"Object is not valid"}"#,
            "422",
        ),
    ];
    for (status, ctype, body, says) in answers {
        m.faults().fail_next_on(
            "/v2/apps",
            1,
            Fault::Answer {
                status,
                content_type: ctype.into(),
                body: body.into(),
            },
        );
        let writes = s.marathon_writes();
        let (code, sum, err) = s.run(&only_a, &["--prune", "--prefix", &s.prefix]);
        assert_eq!(code, 69, "{status} {body}: {sum}\n{err}");
        let e = sum["errors"][0].as_str().unwrap();
        assert!(
            e.contains("reading the live apps") && e.contains(says),
            "{e}"
        );
        assert!(e.contains("nothing pruned"), "{e}");
        assert_eq!(s.marathon_writes(), writes, "{status} {body}: a write");
        assert!(s.live_app("/strict/b").is_some());
    }
}

#[test]
fn a_chronos_list_that_is_not_a_list_exits_69_and_writes_nothing_there() {
    let s = Stack::new("strictjobs");
    let Some(c) = &s.chronos else { return };
    let job = |cmd: &str| json!({"name":"strict-job","command":cmd,"schedule":"R//PT1H"});
    let gone = json!({"name":"strict-gone","command":"x","schedule":"R//PT1H"});
    deploy(&s, &s.payload(&[("j.json", job("x")), ("g.json", gone)]));
    for body in ["{}", "null", "<html>proxy</html>"] {
        c.faults().fail_next_on(
            "/v1/scheduler/jobs",
            1,
            Fault::Answer {
                status: 200,
                content_type: if body.starts_with('<') {
                    "text/html"
                } else {
                    "application/json"
                }
                .into(),
                body: body.into(),
            },
        );
        let writes = c.write_count();
        let (code, sum, err) = s.run(
            &s.payload(&[("j.json", job("y")), ("a.json", app("/strictjobs/a", "x"))]),
            &["--prune", "--prefix", &s.prefix],
        );
        assert_eq!(code, 69, "{body}: {sum}\n{err}");
        assert!(
            sum["errors"][0]
                .as_str()
                .unwrap()
                .contains("reading the live jobs"),
            "{sum}"
        );
        assert_eq!(c.write_count(), writes, "{body}: a Chronos write");
        assert_eq!(s.live_jobs().len(), 2, "nothing deleted");
        // Marathon is another remote: its app still deploys.
        assert!(s.live_app("/strictjobs/a").is_some(), "{sum}");
        s.settle();
    }
}

// ------------------------------------------------------------------ issue 12

/// The keys under `prefix` as a keyprefix watch delivers them, and the X-Consul-Index.
fn watch_payload(consul: &Consul, prefix: &str) -> (Vec<u8>, String) {
    let mut r = ureq::get(&format!("{}/v1/kv/{prefix}?recurse", consul.url()))
        .call()
        .unwrap();
    let index = r.headers()["X-Consul-Index"].to_str().unwrap().to_string();
    let body = r
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap();
    (body, index)
}

/// Streams a child's stderr lines to a channel (and keeps them).
fn stderr_lines(child: &mut std::process::Child) -> Receiver<String> {
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_line(rx: &Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            let hit = l.contains(needle);
            seen.push(l);
            if hit {
                return;
            }
        }
    }
    panic!("no stderr line with {needle:?}: {seen:#?}");
}

fn sigterm(child: &std::process::Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM");
}

/// A git2consul sync under way in the Consul double: a.json and the .ref written, then b.json
/// of the next commit. Returns the watch payload and CONSUL_INDEX.
fn mid_sync(s: &Stack, consul: &Consul) -> (Vec<u8>, String) {
    let tag = s.repo.trim_start_matches("kv2jobs-test-");
    consul.kv_put(
        &s.key("a.json"),
        app(&format!("/{tag}/a"), "x").to_string().as_bytes(),
    );
    consul.kv_put(&s.ref_key(), b"sha1");
    consul.kv_put(
        &s.key("b.json"),
        app(&format!("/{tag}/b"), "x").to_string().as_bytes(),
    );
    watch_payload(consul, &format!("{}/", s.repo))
}

#[test]
fn files_newer_than_the_ref_wait_for_git2consul_then_deploy_the_snapshot() {
    let s = Stack::new("refwait");
    let consul = Consul::start(ConsulOptions::default()).unwrap();
    let (payload, index) = mid_sync(&s, &consul);
    let mut child = s.spawn(
        &payload,
        &["--ref-wait", "30s"],
        &[
            ("CONSUL_HTTP_ADDR", &consul.url()),
            ("CONSUL_INDEX", &index),
        ],
    );
    let rx = stderr_lines(&mut child);
    let mut seen = Vec::new();
    wait_line(&rx, "waiting up to", &mut seen);
    assert!(s.live_app("/refwait/a").is_none(), "acted before the .ref");
    // git2consul finishes: the .ref is written last.
    consul.kv_put(&s.ref_key(), b"sha2");
    let (code, sum, _) = parse_output(child.wait_with_output().unwrap());
    seen.extend(rx.try_iter());
    assert_eq!(code, 0, "{sum}\n{seen:#?}");
    assert!(s.live_app("/refwait/a").is_some() && s.live_app("/refwait/b").is_some());
    assert!(
        seen.iter().any(|l| l.contains("re-read snapshot")),
        "{seen:#?}"
    );
}

#[test]
fn a_ref_that_never_moves_exits_75_naming_the_newer_keys() {
    let s = Stack::new("refstuck");
    let consul = Consul::start(ConsulOptions::default()).unwrap();
    let (payload, index) = mid_sync(&s, &consul);
    let t = Instant::now();
    let (code, sum, err) = s.run_env(
        &payload,
        &["--ref-wait", "300ms", "--prune"],
        &[
            ("CONSUL_HTTP_ADDR", &consul.url()),
            ("CONSUL_INDEX", &index),
        ],
    );
    assert_eq!(code, 75, "{sum}\n{err}");
    assert!(t.elapsed() < Duration::from_secs(20));
    let e = sum["errors"][0].as_str().unwrap();
    assert!(
        e.contains(&s.key("b.json")) && e.contains(&s.ref_key()),
        "{e}"
    );
    assert!(
        e.contains("hand edit in KV") && e.contains("git2consul"),
        "{e}"
    );
    assert_eq!(sum["actions"][0]["status"], "failed", "{sum}");
    if let Some(m) = s.double() {
        assert_eq!(m.request_count(), 0, "nothing read, nothing written");
    }
}

#[test]
fn a_stop_signal_ends_the_wait_for_the_ref_at_once() {
    let s = Stack::new("refstop");
    let consul = Consul::start(ConsulOptions::default()).unwrap();
    let (payload, index) = mid_sync(&s, &consul);
    let mut child = s.spawn(
        &payload,
        &["--ref-wait", "5m"],
        &[
            ("CONSUL_HTTP_ADDR", &consul.url()),
            ("CONSUL_INDEX", &index),
        ],
    );
    let rx = stderr_lines(&mut child);
    let mut seen = Vec::new();
    wait_line(&rx, "waiting up to", &mut seen);
    let t = Instant::now();
    sigterm(&child);
    let (code, sum, _) = parse_output(child.wait_with_output().unwrap());
    assert_eq!(code, 75, "{sum}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(
        sum["errors"].to_string().contains("stopped by a signal"),
        "{sum}"
    );
}

/// Issue 12 item 8: SIGTERM while kv2jobs writes to a slow Marathon.
#[test]
fn sigterm_mid_run_finishes_in_flight_writes_reports_notifies_and_releases_the_lock() {
    let s = Stack::new("sigterm");
    let Some(m) = s.double() else { return };
    let consul = Consul::start(ConsulOptions::default()).unwrap();
    let (hook, seen) = recorder(200);
    m.faults().set_latency(Duration::from_millis(250));
    let files: Vec<(String, Value)> = (0..6)
        .map(|i| (format!("a{i}.json"), app(&format!("/sigterm/a{i}"), "x")))
        .collect();
    let refs: Vec<(&str, Value)> = files.iter().map(|(f, v)| (f.as_str(), v.clone())).collect();
    let lock = "kv2jobs-test/sigterm/lock";
    let child = s.spawn(
        &s.payload(&refs),
        // Batches of 2 (one bulk PUT each): a batch in flight finishes, the others never start.
        &[
            "--parallel",
            "1",
            "--batch-size",
            "2",
            "--lock",
            lock,
            "--notify",
            &hook.url(),
        ],
        &[("CONSUL_HTTP_ADDR", &consul.url())],
    );
    let until = Instant::now() + Duration::from_secs(30);
    while m.apps().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    sigterm(&child);
    let (code, sum, err) = parse_output(child.wait_with_output().unwrap());
    m.faults().clear();
    assert_eq!(code, 75, "{sum}\n{err}");
    let applied = count(&sum, "applied");
    let not_started = sum["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            a["status"] == "skipped" && detail(a).contains("not started: stopped by a signal")
        })
        .count();
    assert!(applied >= 1 && not_started >= 1, "{sum}");
    assert_eq!(applied + not_started, 6, "{sum}");
    assert_eq!(
        m.apps().len(),
        applied,
        "the summary lists exactly the writes made"
    );
    assert!(
        sum["errors"].to_string().contains("stopped by a signal"),
        "{sum}"
    );
    let held = consul.kv_get(lock).map(|e| e.session).unwrap_or_default();
    assert!(held.is_empty(), "--lock not released: session {held}");
    let got = seen.lock().unwrap();
    assert_eq!(got.len(), 1, "one notification");
    let text = serde_json::from_slice::<Value>(&got[0].body).unwrap()["text"].to_string();
    assert!(text.contains("stopped by a signal"), "{text}");
}

/// Issue 12 item 8: a stop signal ends the wait for a deployment that locks the app (409) at
/// once; the write is not made.
#[test]
fn sigterm_during_the_409_wait_ends_it_without_writing() {
    let s = Stack::with(
        "stop409",
        devstack::marathon::MarathonOptions {
            deploy_duration: Duration::from_secs(60),
            ..Default::default()
        },
        devstack::chronos::ChronosOptions::default(),
    );
    let Some(m) = s.double() else { return };
    deploy_unsettled(&s, &s.payload(&[("a.json", app("/stop409/a", "v1"))]));
    let writes = m.write_count();
    let mut child = s.spawn(&s.payload(&[("a.json", app("/stop409/a", "v2"))]), &[], &[]);
    let rx = stderr_lines(&mut child);
    let mut seen = Vec::new();
    wait_line(&rx, "is locked by deployment", &mut seen);
    let t = Instant::now();
    sigterm(&child);
    let (code, sum, _) = parse_output(child.wait_with_output().unwrap());
    assert_eq!(code, 75, "{sum}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let a = action(&sum, "/stop409/a");
    assert_eq!(a["status"], "skipped", "{a}");
    assert!(
        detail(a).contains("stopped by a signal while waiting"),
        "{a}"
    );
    assert_eq!(m.write_count(), writes + 1, "only the refused PUT");
    assert_eq!(s.live_app("/stop409/a").unwrap()["cmd"], "v1");
}

fn deploy_unsettled(s: &Stack, payload: &[u8]) {
    let (code, sum, err) = s.run(payload, &[]);
    assert_eq!(code, 0, "{sum}\n{err}");
}

/// Issue 12 item 4: many bad keys. Messages stay short; the JSON summary keeps every action.
#[test]
fn many_bad_keys_make_short_messages_and_a_complete_summary() {
    let s = Stack::new("manybad");
    let mut entries: Vec<(String, u64, Option<String>)> = Vec::new();
    for i in 0..150 {
        entries.push(file(
            s.key(&format!("dup-{i:03}.json")),
            5,
            &app("/manybad/dup", "x"),
        ));
        entries.push((
            s.key(&format!("broken-{i:03}.json")),
            5,
            Some("{\"id\": ".into()),
        ));
    }
    entries.push(file(s.key("good.json"), 5, &app("/manybad/good", "x")));
    entries.push((s.ref_key(), 6, Some("sha".into())));
    let (code, sum, err) = s.run(&pairs(&entries), &[]);
    assert_eq!(code, 65, "{sum}");
    assert_eq!(
        count(&sum, "failed"),
        300,
        "every rejected key is an action"
    );
    assert_eq!(action(&sum, "/manybad/good")["status"], "applied");
    let errors = sum["errors"].as_array().unwrap();
    assert!(errors.len() <= 21, "{} error lines", errors.len());
    assert!(
        errors
            .last()
            .unwrap()
            .as_str()
            .unwrap()
            .contains("and 280 more"),
        "{errors:?}"
    );
    for e in errors {
        assert!(e.as_str().unwrap().len() < 1000, "long error line: {e}");
    }
    for a in sum["actions"].as_array().unwrap() {
        assert!(
            detail(a).len() < 2000,
            "long detail ({} bytes)",
            detail(a).len()
        );
    }
    for line in err.lines() {
        assert!(line.len() < 2000, "long log line ({} bytes)", line.len());
    }
}

/// Issue 12 item 7: a value Marathon reports as 0 is shown as 0.
#[test]
fn the_dry_run_shows_a_scaled_down_app_as_zero() {
    let s = Stack::new("zero");
    let mut worker = app("/zero/worker", "x");
    worker["instances"] = json!(2);
    let payload = s.payload(&[("worker.json", worker)]);
    deploy(&s, &payload);
    ureq::put(&format!(
        "{}/v2/apps/zero/worker?force=true",
        s.marathon_url
    ))
    .send_json(json!({"instances": 0}))
    .unwrap();
    s.settle();
    assert_eq!(s.live_app("/zero/worker").unwrap()["instances"], 0);
    let (code, sum, _) = s.run(&payload, &["--dry-run"]);
    assert_eq!(code, 0, "{sum}");
    let a = action(&sum, "/zero/worker");
    assert!(detail(a).contains("instances: 0 -> 2"), "{a}");
}

/// A Marathon at its running-deployments limit (1, held by a deployment that lasts a minute).
fn at_the_limit(test: &str) -> Stack {
    let s = Stack::with(
        test,
        devstack::marathon::MarathonOptions {
            deploy_duration: Duration::from_secs(60),
            max_running_deployments: 1,
            ..Default::default()
        },
        devstack::chronos::ChronosOptions::default(),
    );
    if let Some(m) = s.double() {
        m.seed_apps(vec![app(&format!("/{test}/holder"), "x")]);
        let url = format!("{}/v2/apps/{test}/holder", m.url());
        let r = ureq::put(&url).send_json(app(&format!("/{test}/holder"), "y"));
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(m.running_deployments(), 1);
    }
    s
}

/// Issue 13 item 3: a stop signal ends the wait for a free deployment slot (Marathon's 403
/// "Max number (1) of running deployments is achieved") at once; nothing is written.
#[test]
fn sigterm_during_the_deployment_limit_wait_ends_it_without_writing() {
    let s = at_the_limit("stop403");
    let Some(m) = s.double() else { return };
    let started = m.deployment_count();
    let files = [
        ("a.json", app("/stop403/a", "v1")),
        ("b.json", app("/stop403/b", "v1")),
    ];
    let mut child = s.spawn(&s.payload(&files), &[], &[]);
    let rx = stderr_lines(&mut child);
    let mut seen = Vec::new();
    wait_line(&rx, "running-deployments limit is reached", &mut seen);
    let t = Instant::now();
    sigterm(&child);
    let (code, sum, _) = parse_output(child.wait_with_output().unwrap());
    assert_eq!(code, 75, "{sum}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    for id in ["/stop403/a", "/stop403/b"] {
        let a = action(&sum, id);
        assert_eq!(a["status"], "skipped", "{a}");
        assert!(
            detail(a).contains(
                "stopped by a signal while waiting for Marathon's running-deployments limit"
            ),
            "{a}"
        );
    }
    assert_eq!(m.deployment_count(), started, "nothing deployed");
    assert!(s.live_app("/stop403/a").is_none());
}

/// Issue 13 item 3: a limit that does not free within --deploy-timeout fails the batch's apps
/// (exit 75, "replay later"), it does not wait forever.
#[test]
fn a_deployment_limit_that_never_frees_fails_at_the_deploy_timeout() {
    let s = at_the_limit("full403");
    let Some(m) = s.double() else { return };
    let files = [
        ("a.json", app("/full403/a", "v1")),
        ("b.json", app("/full403/b", "v1")),
    ];
    let (code, sum, _) = s.run(&s.payload(&files), &["--deploy-timeout", "300ms"]);
    assert_eq!(code, 75, "{sum}");
    for id in ["/full403/a", "/full403/b"] {
        let a = action(&sum, id);
        assert_eq!(a["status"], "failed", "{a}");
        assert!(
            detail(a).contains("running-deployments limit (1) still reached at --deploy-timeout"),
            "{a}"
        );
    }
    assert_eq!(m.running_deployments(), 1);
}
