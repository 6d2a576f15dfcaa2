//! Bounded fuzzing (proptest; `cargo fuzz` needs nightly, which is absent) of the three parsers
//! that take untrusted bytes, through their public APIs: the watch payload decoder, the Docker
//! image-reference parser and the in-place JSON editor. Each property runs `FUZZ_CASES` cases
//! (default 256; raise it for a longer run). A failing property prints the minimal input: add it
//! to tests/corpus/ so that it is replayed on every run.
//!
//! The corpus (tests/corpus/<target>/{ok,err}-*.…) is replayed first: `ok-` inputs must be
//! accepted, `err-` inputs refused, and nothing may panic.

use std::path::{Path, PathBuf};

use base64::Engine;
use gitops::imageref::{parse_bare_version, ImageRef};
use gitops::jsonedit::{self, Edit, Node};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

use crate::ensure;
use crate::harness::Report;

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Runs one property for the bounded number of cases as one suite case.
fn property<S: Strategy>(
    r: &Report,
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    r.case(&format!("fuzz/{name}"), || {
        let mut runner = TestRunner::new(Config {
            cases: cases(),
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&strategy, test)
            .map_err(|e| format!("{e}\n(add the minimal input to tests/corpus/)"))
    });
}

// ---------------------------------------------------------------------------------------------
// The watch payload decoder.

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// KV entries as (key, value, ModifyIndex).
fn kv_entries() -> impl Strategy<Value = Vec<(String, Option<Vec<u8>>, u64)>> {
    let key = prop_oneof![
        "[a-z0-9/._:-]{1,40}",
        "\\PC{0,24}",
        any::<String>().prop_map(|s| s.chars().take(24).collect()),
    ];
    let value = prop::option::of(prop::collection::vec(any::<u8>(), 0..48));
    prop::collection::vec((key, value, any::<u64>()), 0..8)
}

fn encode_kv(entries: &[(String, Option<Vec<u8>>, u64)]) -> Vec<u8> {
    let arr: Vec<Value> = entries
        .iter()
        .map(|(k, v, i)| {
            json!({"Key": k, "CreateIndex": i, "ModifyIndex": i, "LockIndex": 0, "Flags": 0,
                   "Value": v.as_deref().map(b64), "Session": ""})
        })
        .collect();
    serde_json::to_vec(&arr).unwrap()
}

fn decoder(r: &Report) {
    property(
        r,
        "payload/agent-encoding-round-trips",
        kv_entries(),
        |entries| {
            let bytes = encode_kv(&entries);
            let got = watch::decode_kv(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got.len(), entries.len());
            for (g, (k, v, i)) in got.iter().zip(&entries) {
                prop_assert_eq!(&g.key, k);
                prop_assert_eq!(g.modify_index, *i);
                prop_assert_eq!(
                    g.value.clone().unwrap_or_default(),
                    v.clone().unwrap_or_default()
                );
            }
            let typed = watch::decode(watch::WatchType::KeyPrefix, &bytes)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(typed.kv_pairs(), &got[..]);
            Ok(())
        },
    );

    property(
        r,
        "payload/every-truncation-is-an-error",
        (kv_entries(), any::<prop::sample::Index>()),
        |(entries, cut)| {
            let bytes = encode_kv(&entries);
            let cut = cut.index(bytes.len());
            // Any strict prefix of a JSON array is invalid JSON; whitespace-only is "empty".
            prop_assert!(
                watch::decode_kv(&bytes[..cut]).is_err(),
                "{:?}",
                &bytes[..cut]
            );
            prop_assert!(watch::detect(&bytes[..cut]).is_err());
            Ok(())
        },
    );

    property(
        r,
        "payload/mutations-never-panic",
        (
            kv_entries(),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        ),
        |(entries, flips)| {
            let mut bytes = encode_kv(&entries);
            for (at, b) in flips {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            let _ = watch::decode_kv(&bytes);
            let _ = watch::detect(&bytes);
            for wt in [
                "key",
                "keyprefix",
                "services",
                "nodes",
                "service",
                "checks",
                "event",
            ] {
                let _ = watch::decode(wt.parse().unwrap(), &bytes);
            }
            Ok(())
        },
    );

    property(
        r,
        "payload/bad-base64-names-the-entry",
        (kv_entries(), any::<prop::sample::Index>(), "[!*%$]{1,4}"),
        |(mut entries, at, junk)| {
            entries.push(("extra".into(), None, 1));
            let i = at.index(entries.len());
            let mut v: Value = serde_json::from_slice(&encode_kv(&entries)).unwrap();
            v[i]["Value"] = Value::String(junk);
            let err = watch::decode_kv(&serde_json::to_vec(&v).unwrap())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            // The first entry with bad base64 is reported by its 1-based position.
            prop_assert!(err.contains(&format!("entry {}", i + 1)), "{}", err);
            prop_assert!(err.contains("base64"), "{}", err);
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Docker image references.

/// Characters that would mean something to a shell, git's option parser or a commit message.
const HOSTILE: [&str; 22] = [
    ";", "$(", "`", "|", "&", " ", "\n", "\r", "\t", "\0", "'", "\"", "<", ">", "\\", "*", "?",
    "!", "{", "..", "\u{202e}", "\u{7f}",
];

fn reference() -> impl Strategy<Value = String> {
    let comp = "[a-z0-9]{1,6}([._-][a-z0-9]{1,6}){0,2}";
    let domain = prop_oneof![
        Just(String::new()),
        Just("localhost/".to_string()),
        "[a-z0-9]{1,8}\\.[a-z]{2,5}(:[1-9][0-9]{1,4})?/",
        "[a-z0-9]{1,8}:[1-9][0-9]{1,4}/",
    ];
    let path = prop::collection::vec(comp, 1..4).prop_map(|v| v.join("/"));
    let tag = prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}");
    let digest = prop::option::of("[0-9a-f]{64}");
    (domain, path, tag, digest).prop_map(|(d, p, t, dg)| {
        let mut s = format!("{d}{p}");
        if let Some(t) = t {
            s.push(':');
            s.push_str(&t);
        }
        if let Some(dg) = dg {
            s.push_str("@sha256:");
            s.push_str(&dg);
        }
        s
    })
}

/// Whatever is accepted can be put on a command line, in a file and in a commit message.
fn shell_safe(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && !s.contains("..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:/@[]".contains(c))
}

fn imageref(r: &Report) {
    property(
        r,
        "imageref/generated-references-round-trip",
        reference(),
        |s| {
            // `..` cannot be generated here; everything else in the grammar is valid unless the
            // name is too long, a 64-hex image id, or a tag with `..` in it.
            match ImageRef::parse(&s) {
                Ok(r) => {
                    prop_assert_eq!(r.to_string(), s.clone());
                    let again = ImageRef::parse(&r.to_string()).unwrap();
                    prop_assert_eq!(&again, &r);
                    let familiar = ImageRef::parse(&r.familiar_repository()).unwrap();
                    prop_assert_eq!(familiar.repository(), r.repository());
                    prop_assert!(shell_safe(&s));
                }
                // Deliberately stricter than Docker (imageref.rs docs): a domain-looking first
                // component that is not a valid host (`a.a_0/x`) is refused.
                Err(e) => prop_assert!(
                    s.len() > 200
                        || s.contains("..")
                        || e.reason.contains("longer")
                        || e.reason.contains("registry host"),
                    "a grammatical reference was refused: {}",
                    e
                ),
            }
            Ok(())
        },
    );

    property(
        r,
        "imageref/hostile-characters-are-always-refused",
        (
            reference(),
            any::<prop::sample::Index>(),
            prop::sample::select(HOSTILE.to_vec()),
        ),
        |(s, at, bad)| {
            let mut i = at.index(s.len() + 1);
            while !s.is_char_boundary(i) {
                i -= 1;
            }
            let evil = format!("{}{bad}{}", &s[..i], &s[i..]);
            prop_assert!(ImageRef::parse(&evil).is_err(), "accepted {:?}", evil);
            prop_assert!(
                !matches!(parse_bare_version(&evil), Ok(Some(_))),
                "bare version accepted {:?}",
                evil
            );
            Ok(())
        },
    );

    property(
        r,
        "imageref/whatever-is-accepted-is-shell-safe",
        "[a-zA-Z0-9._:/@;$`|& '\"<>\\\\-]{0,40}",
        |s| {
            if let Ok(r) = ImageRef::parse(&s) {
                prop_assert!(shell_safe(&s), "accepted {:?} as {:?}", s, r);
            }
            if let Ok(Some(v)) = parse_bare_version(&s) {
                prop_assert!(shell_safe(&s), "bare version {:?} from {:?}", v, s);
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The in-place JSON editor.

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        "\\PC{0,10}".prop_map(Value::String),
        any::<String>().prop_map(|s| Value::String(s.chars().take(8).collect())),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("\\PC{0,6}", inner), 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every string value's (JSON pointer, span), keys excluded, last duplicate key only.
fn string_sites(node: &Node, pointer: String, out: &mut Vec<(String, std::ops::Range<usize>)>) {
    match node {
        Node::Str { span, .. } => out.push((pointer, span.clone())),
        Node::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                string_sites(item, format!("{pointer}/{i}"), out);
            }
        }
        Node::Object(members) => {
            for (i, (k, v)) in members.iter().enumerate() {
                if members[i + 1..].iter().any(|(k2, _)| k2 == k) {
                    continue;
                }
                let key = k.replace('~', "~0").replace('/', "~1");
                string_sites(v, format!("{pointer}/{key}"), out);
            }
        }
        Node::Scalar { .. } => {}
    }
}

fn render(v: &Value, style: u8) -> String {
    match style % 3 {
        0 => serde_json::to_string(v).unwrap(),
        1 => serde_json::to_string_pretty(v).unwrap(),
        _ => serde_json::to_string_pretty(v)
            .unwrap()
            .replace('\n', "\r\n"),
    }
}

fn jsonedit(r: &Report) {
    property(
        r,
        "jsonedit/many-edits-at-once-change-only-those-strings",
        (
            json_value(),
            any::<u8>(),
            prop::collection::vec(any::<bool>(), 0..64),
            prop::collection::vec(any::<String>(), 64),
        ),
        |(v, style, pick, news)| {
            let text = render(&v, style);
            let doc = jsonedit::parse(text.as_bytes())
                .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            let mut sites = Vec::new();
            string_sites(&doc, String::new(), &mut sites);
            let mut expected = v.clone();
            let mut edits = Vec::new();
            for (n, (pointer, span)) in sites.iter().enumerate() {
                if !pick.get(n).copied().unwrap_or(false) {
                    continue;
                }
                let new: String = news[n % news.len()].chars().take(12).collect();
                *expected.pointer_mut(pointer).unwrap() = Value::String(new.clone());
                edits.push(Edit {
                    span: span.clone(),
                    replacement: jsonedit::escape(&new),
                });
            }
            let out = jsonedit::apply(text.as_bytes(), &edits)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let got: Value = serde_json::from_slice(&out).map_err(|e| {
                TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&out)))
            })?;
            prop_assert_eq!(got, expected);
            // Outside the edited spans, every byte is the original's, in order.
            let mut spans: Vec<_> = edits.iter().map(|e| e.span.clone()).collect();
            spans.sort_by_key(|s| s.start);
            let mut kept = Vec::new();
            let mut pos = 0;
            for s in &spans {
                kept.extend_from_slice(&text.as_bytes()[pos..s.start]);
                pos = s.end;
            }
            kept.extend_from_slice(&text.as_bytes()[pos..]);
            let mut out_kept = Vec::new();
            let mut sorted = edits.clone();
            sorted.sort_by_key(|e| e.span.start);
            let mut opos = 0;
            let mut ipos = 0;
            for e in &sorted {
                let gap = e.span.start - ipos;
                out_kept.extend_from_slice(&out[opos..opos + gap]);
                opos += gap + e.replacement.len();
                ipos = e.span.end;
            }
            out_kept.extend_from_slice(&out[opos..]);
            prop_assert_eq!(kept, out_kept);
            Ok(())
        },
    );

    property(
        r,
        "jsonedit/arbitrary-spans-never-panic",
        (
            "\\PC{0,40}",
            prop::collection::vec((0usize..60, 0usize..60, "\\PC{0,4}"), 0..4),
        ),
        |(text, raw)| {
            let edits: Vec<Edit> = raw
                .into_iter()
                .map(|(a, b, s)| Edit {
                    span: a..b,
                    replacement: s,
                })
                .collect();
            if let Ok(out) = jsonedit::apply(text.as_bytes(), &edits) {
                prop_assert!(edits
                    .iter()
                    .all(|e| e.span.start <= e.span.end && e.span.end <= text.len()));
                let _ = out;
            }
            Ok(())
        },
    );

    property(
        r,
        "jsonedit/mutated-documents-agree-with-serde",
        (
            json_value(),
            any::<u8>(),
            prop::collection::vec(
                (
                    any::<prop::sample::Index>(),
                    prop::sample::select(b"{}[]\",:\\ 0e-.tnfu\x01\xff".to_vec()),
                ),
                1..4,
            ),
        ),
        |(v, style, muts)| {
            let mut bytes = render(&v, style).into_bytes();
            for (at, b) in muts {
                let i = at
                    .index(bytes.len().max(1))
                    .min(bytes.len().saturating_sub(1));
                if !bytes.is_empty() {
                    bytes[i] = b;
                }
            }
            let ours = jsonedit::parse(&bytes).is_ok();
            let serde = serde_json::from_slice::<Value>(&bytes);
            // RFC 8259 numbers have no range; serde_json refuses those beyond f64 (the editor
            // only skips numbers, so accepting them is right for it).
            let out_of_range = matches!(&serde, Err(e) if e.to_string().contains("out of range"));
            if !out_of_range {
                prop_assert_eq!(ours, serde.is_ok(), "{:?}", String::from_utf8_lossy(&bytes));
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The corpus.

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn corpus(target: &str) -> Vec<(String, bool, Vec<u8>)> {
    let dir = corpus_dir().join(target);
    let mut out: Vec<(String, bool, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let ok = name.starts_with("ok-");
            assert!(
                ok || name.starts_with("err-"),
                "{name}: name must start with ok- or err-"
            );
            (name, ok, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn replay(r: &Report) {
    for (name, ok, bytes) in corpus("payload") {
        r.case(&format!("corpus/payload/{name}"), || {
            let kv = watch::decode_kv(&bytes);
            let any = watch::detect(&bytes);
            // ok-: some handler's decoder accepts it; err-: every decoder refuses it.
            ensure!(
                (kv.is_ok() || any.is_ok()) == ok,
                "decode_kv: {kv:?}\ndetect: {any:?}"
            );
            if let Err(e) = kv {
                ensure!(e.to_string().len() < 1000, "message too long: {e}");
            }
            Ok(())
        });
    }
    for (name, ok, bytes) in corpus("imageref") {
        r.case(&format!("corpus/imageref/{name}"), || {
            let s = String::from_utf8_lossy(&bytes).into_owned();
            let parsed = ImageRef::parse(&s);
            let bare = parse_bare_version(&s);
            let accepted = parsed.is_ok() || matches!(bare, Ok(Some(_)));
            ensure!(
                accepted == ok,
                "{s:?}: parse {parsed:?}, bare {bare:?} (want {})",
                if ok { "accepted" } else { "refused" }
            );
            if let Ok(r) = parsed {
                ensure!(r.to_string() == s, "{s:?} displays as {r}");
                ensure!(shell_safe(&s), "{s:?} accepted but not shell-safe");
            }
            Ok(())
        });
    }
    for (name, ok, bytes) in corpus("jsonedit") {
        r.case(&format!("corpus/jsonedit/{name}"), || {
            let parsed = jsonedit::parse(&bytes);
            ensure!(parsed.is_ok() == ok, "parse: {parsed:?}");
            let serde = serde_json::from_slice::<Value>(&bytes);
            let bom = bytes.starts_with(b"\xEF\xBB\xBF");
            let out_of_range = matches!(&serde, Err(e) if e.to_string().contains("out of range"));
            let serde = serde.is_ok();
            ensure!(
                bom || out_of_range || serde == ok,
                "serde_json {} it, jsonedit {}",
                if serde { "accepts" } else { "refuses" },
                if ok { "accepts" } else { "refuses" }
            );
            if let Ok(doc) = parsed {
                // Rewriting every string to "x" keeps the document valid and changes only them.
                let mut sites = Vec::new();
                string_sites(&doc, String::new(), &mut sites);
                let edits: Vec<Edit> = sites
                    .iter()
                    .map(|(_, s)| Edit {
                        span: s.clone(),
                        replacement: jsonedit::escape("x"),
                    })
                    .collect();
                let out = jsonedit::apply(&bytes, &edits).map_err(|e| e.to_string())?;
                ensure!(
                    jsonedit::parse(&out).is_ok(),
                    "edited document no longer parses"
                );
            }
            Ok(())
        });
    }
}

pub fn all(r: &Report) {
    replay(r);
    decoder(r);
    imageref(r);
    jsonedit(r);
}
