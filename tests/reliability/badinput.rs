//! The bad-input matrix: every handler gets malformed payloads (the decoder's cases, shared by all)
//! and semantically bad ones (its own: keys and values that must never reach a command line or a
//! file). Each case: the documented exit code, a message naming the problem, no panic, stdin
//! drained, one JSON document on stdout, and nothing changed anywhere (snapshot before/after).

use serde_json::{json, Value};

use crate::ensure;
use crate::gitrepo::{kv, payload, Repo, API_KEY};
use crate::harness::{Check, Report};

/// A malformed payload shared by every KV handler: (case, bytes, words the message must contain).
pub type BadPayload = (&'static str, Vec<u8>, Vec<String>);

/// Payloads the decoder must refuse (exit 65), built around one plausible `key`.
pub fn decoder_cases(key: &str) -> Vec<BadPayload> {
    let w = |words: &[&str]| words.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let good = payload(&[kv(key, b"x", 7)]);
    let truncated = good[..good.len() / 2].to_vec();
    let mut invalid_utf8 = format!(r#"[{{"Key":"{key}"#).into_bytes();
    invalid_utf8.extend_from_slice(b"\xff\xfe\"");
    invalid_utf8.extend_from_slice(br#","ModifyIndex":7,"Value":null}]"#);
    vec![
        ("empty-stdin", Vec::new(), w(&["empty"])),
        ("truncated-json", truncated, w(&["json"])),
        ("invalid-json", b"[{\"Key\": images}]".to_vec(), w(&["json"])),
        ("trailing-garbage", [good.clone(), b" ]".to_vec()].concat(), w(&["json"])),
        ("two-documents", [good.clone(), good.clone()].concat(), w(&["json"])),
        ("number", b"42".to_vec(), w(&["found"])),
        ("string", b"\"images/x\"".to_vec(), w(&["found"])),
        (
            "wrong-watch-type-services",
            br#"{"consul":[],"web":["v1","blue"]}"#.to_vec(),
            w(&["key"]),
        ),
        (
            "wrong-watch-type-event",
            br#"[{"ID":"1d3c0c5a-0c1b-4b5e-9f0a-000000000001","Name":"deploy","Payload":"MS40LjI=","NodeFilter":"","ServiceFilter":"","TagFilter":"","Version":1,"LTime":3}]"#
                .to_vec(),
            w(&["key"]),
        ),
        (
            "wrong-watch-type-nodes",
            br#"[{"ID":"n1","Node":"n1","Address":"10.0.0.1","Datacenter":"dc1"}]"#.to_vec(),
            w(&["key"]),
        ),
        (
            "bad-base64",
            serde_json::to_vec(&json!([{"Key": key, "ModifyIndex": 7, "Value": "!!!not base64!!!"}]))
                .unwrap(),
            w(&["base64", key]),
        ),
        (
            "value-not-a-string",
            serde_json::to_vec(&json!([{"Key": key, "ModifyIndex": 7, "Value": {"image": "x"}}]))
                .unwrap(),
            w(&[key]),
        ),
        ("invalid-utf8-in-json", invalid_utf8, w(&["json"])),
        ("deep-nesting", "[".repeat(100_000).into_bytes(), w(&["json"])),
        ("nul-bytes", vec![0u8; 1024], w(&["json"])),
    ]
}

/// ~50 MiB: one entry whose value is 37.5 MiB (base64: 50 MiB). The message must name the key
/// without echoing the value.
pub fn huge_value(key: &str) -> Vec<u8> {
    payload(&[kv(key, &vec![b'a'; 75 * 512 * 1024], 7)])
}

/// ~50 MiB of folder keys, then one entry with bad base64: the whole payload is read and refused.
pub fn huge_prefix(key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(51 << 20);
    out.push(b'[');
    let mut i = 0u64;
    while out.len() < 50 << 20 {
        out.extend_from_slice(
            format!(r#"{{"Key":"pad/{i:08}/","CreateIndex":{i},"ModifyIndex":{i},"LockIndex":0,"Flags":0,"Value":null,"Session":""}},"#)
                .as_bytes(),
        );
        i += 1;
    }
    out.extend_from_slice(
        format!(r#"{{"Key":"{key}","ModifyIndex":7,"Value":"%%%"}}]"#).as_bytes(),
    );
    out
}

/// The checks of one bad-input run: code, message, bounded output, and the caller's "nothing
/// changed" snapshot.
pub fn refused(
    out: &crate::harness::Outcome,
    code: i32,
    needles: &[&str],
    before: &str,
    after: &str,
) -> Check {
    out.expect(code, needles)?;
    ensure!(
        out.stdout.len() < 64 * 1024 && out.stderr.len() < 256 * 1024,
        "the output is {} + {} bytes: a message must not echo the payload\n{}",
        out.stdout.len(),
        out.stderr.len(),
        out.show()
    );
    ensure!(
        before == after,
        "STATE CHANGED by a refused payload:\nbefore: {before}\nafter:  {after}\n{}",
        out.show()
    );
    Ok(())
}

/// tag2git: a shared repository that no case may change, plus a positive control that does.
pub fn tag2git(r: &Report) {
    let repo = Repo::new();
    let canary = repo.tmp.path().join("PWNED");
    let c = canary.display().to_string();
    let run_refused = |name: &str, bytes: Vec<u8>, code: i32, needles: &[&str]| {
        r.case(&format!("bad-input/tag2git/{name}"), || {
            let before = repo.refs();
            let out = repo.tag2git(bytes).run();
            refused(&out, code, needles, &before, &repo.refs())?;
            ensure!(
                !canary.exists(),
                "INJECTION: {c} was created\n{}",
                out.show()
            );
            Ok(())
        })
    };
    for (name, bytes, needles) in decoder_cases(API_KEY) {
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        run_refused(name, bytes, 65, &needles);
    }
    run_refused("50MiB-value", huge_value(API_KEY), 65, &[API_KEY]);
    run_refused("50MiB-prefix", huge_prefix(API_KEY), 65, &["base64"]);

    // Keys and values that must never reach git's command line, a path or a commit message.
    let one = |key: &str, value: &str| payload(&[kv(key, value.as_bytes(), 11)]);
    let keys: [(&str, &str, &str); 6] = [
        ("key-dotdot", "images/../../etc/passwd", ".."),
        (
            "key-dotdot-middle",
            "images/registry.local:5000/../sami/api",
            "..",
        ),
        (
            "key-control-bell",
            "images/registry.local:5000/sami/api\u{7}",
            "control",
        ),
        (
            "key-control-newline",
            "images/sami/api\nConsul-Modify-Index: 1",
            "control",
        ),
        (
            "key-leading-dash",
            "--upload-pack=touch /tmp/x",
            "starts with '-'",
        ),
        ("key-escape", "images/\u{1b}[31mred", "control"),
    ];
    for (name, key, needle) in keys {
        run_refused(name, one(key, "1.4.2"), 65, &[needle]);
    }
    let values: Vec<(&str, String)> = vec![
        ("value-semicolon-rm", "; rm -rf /".into()),
        ("value-tag-semicolon", format!("1.4.2; touch {c}")),
        ("value-command-substitution", format!("$(touch {c})")),
        ("value-backticks", format!("`touch {c}`")),
        ("value-upload-pack", format!("--upload-pack=touch {c}")),
        ("value-leading-dash", "-1.4.2".into()),
        (
            "value-newline-trailer",
            "1.4.2\nConsul-Modify-Index: 999999".into(),
        ),
        ("value-crlf", "1.4.2\r\nSigned-off-by: mallory".into()),
        ("value-nul", "1.4.2\u{0}".into()),
        (
            "value-pipe",
            format!("registry.local:5000/sami/api:1.4.2|touch {c}"),
        ),
        (
            "value-and",
            format!("registry.local:5000/sami/api:1.4.2 && touch {c}"),
        ),
        (
            "value-dotdot",
            "registry.local:5000/../../sami/api:1.4.2".into(),
        ),
        (
            "value-uppercase",
            "registry.local:5000/Sami/API:1.4.2".into(),
        ),
        ("value-bad-digest", "1.4.2@sha256:xyz".into()),
        ("value-no-tag", "registry.local:5000/sami/api".into()),
        (
            "value-json-job",
            r#"{"id":"/sami/api","container":{}}"#.into(),
        ),
        ("value-bidi-override", "1.4.2\u{202e}2.4.1".into()),
        ("value-long-tag", "1".repeat(200)),
    ];
    for (name, value) in values {
        run_refused(name, one(API_KEY, &value), 65, &[API_KEY]);
    }
    run_refused(
        "value-invalid-utf8",
        payload(&[kv(API_KEY, b"1.4.\xff\xfe", 11)]),
        65,
        &["utf-8"],
    );
    // One bad entry among good ones (issue 12 item 1): the bad one is refused (failed, exit 65,
    // never executed), the good ones are committed in one commit; a replay commits nothing more.
    // Its own repository: the shared one must stay unchanged.
    r.case("bad-input/tag2git/one-bad-among-good", || {
        let own = Repo::new();
        let before = own.commit_count();
        let body = payload(&[
            kv(API_KEY, b"1.4.2", 12),
            kv("images/nginx", b"1.27", 13),
            kv("images/redis", format!("$(touch {c})").as_bytes(), 14),
        ]);
        let out = own.tag2git(body.clone()).run();
        let doc = out.expect(65, &["images/redis"])?;
        ensure!(
            !canary.exists(),
            "INJECTION: {c} was created\n{}",
            out.show()
        );
        ensure!(
            own.commit_count() == before + 1,
            "expected one commit of the good entries\n{}",
            out.show()
        );
        ensure!(
            own.file("marathon/edge.json").contains("\"nginx:1.27\""),
            "nginx not committed\n{}",
            out.show()
        );
        let failed: Vec<&Value> = doc["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["status"] == "failed")
            .collect();
        ensure!(
            failed.len() == 1 && failed[0]["target"] == "images/redis",
            "expected the redis entry failed\n{}",
            out.show()
        );
        let again = own.tag2git(body).run();
        again.expect(65, &["images/redis"])?;
        ensure!(
            own.commit_count() == before + 1,
            "a replay committed again\n{}",
            again.show()
        );
        Ok(())
    });

    // Positive control: the same harness sees a valid payload change the repository, so the
    // "nothing changed" checks above can fail.
    r.case("bad-input/tag2git/control-valid-payload-commits", || {
        let before = repo.commit_count();
        let body = payload(&[kv(API_KEY, b"1.4.2", 20)]);
        let out = repo.tag2git(body.clone()).run();
        out.expect(0, &[])?;
        ensure!(
            repo.commit_count() == before + 1,
            "expected one commit\n{}",
            out.show()
        );
        let again = repo.tag2git(body).run();
        again.expect(0, &[])?;
        ensure!(
            repo.commit_count() == before + 1,
            "a replay committed again\n{}",
            again.show()
        );
        Ok(())
    });
}

/// Usage errors of every handler: exit 64, no panic, stdin drained (the agent still writes the
/// payload), stderr says what is wrong. An unreadable `--input` is reported in the JSON summary.
pub fn usage(r: &Report) {
    let home = tempfile::tempdir().unwrap();
    let base = |h: &'static str| {
        crate::harness::Invocation::new(h, home.path())
            .env("MARATHON_URL", "http://127.0.0.1:9")
            .env(
                "TAG2GIT_REPO",
                home.path().join("none.git").display().to_string(),
            )
            .stdin(vec![b' '; 1 << 20])
    };
    for h in ["tag2git", "kv2jobs", "tasks2consul"] {
        let flag_cases: [(&str, &[&str], &str); 4] = [
            ("unknown-flag", &["--bogus-flag"], "--bogus-flag"),
            ("bad-timeout", &["--timeout", "banana"], "banana"),
            ("bad-output", &["--output", "yaml"], "yaml"),
            (
                "flag-injection-in-value",
                &["--timeout", "--upload-pack=x"],
                "--upload-pack",
            ),
        ];
        for (name, args, needle) in flag_cases {
            r.case(&format!("bad-input/{h}/usage-{name}"), || {
                let out = base(h).args(args.iter().copied()).run();
                ensure!(
                    out.code == Some(64) && !out.hung,
                    "want exit 64\n{}",
                    out.show()
                );
                ensure!(!out.stderr.contains("panicked"), "PANIC\n{}", out.show());
                ensure!(out.drained, "stdin not drained\n{}", out.show());
                ensure!(
                    out.stderr.contains(needle),
                    "stderr does not name {needle:?}\n{}",
                    out.show()
                );
                Ok(())
            });
        }
        r.case(&format!("bad-input/{h}/usage-input-file-missing"), || {
            let out = base(h).args(["--input", "/nonexistent/payload.json"]).run();
            out.expect(64, &["/nonexistent/payload.json"])?;
            Ok(())
        });
    }
}
