//! Every payload in shared/fixtures/consul decodes, and malformed payloads fail with errors that
//! name the problem.

use std::path::PathBuf;

use proptest::prelude::*;
use watch::{decode, decode_kv, detect, DecodeError, Payload, WatchType};

fn fixture(name: &str) -> Vec<u8> {
    // fixtures/: a copy of shared/fixtures, kept in the repository so a clean checkout tests alone.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/consul");
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

#[test]
fn key_fixture() {
    let p = decode(WatchType::Key, &fixture("key.json")).unwrap();
    let Payload::Key(Some(kv)) = p else {
        panic!("{p:?}")
    };
    assert_eq!(kv.key, "foo/bar/baz");
    assert_eq!(kv.modify_index, 1793);
    assert_eq!(kv.value.as_deref(), Some(&b"hey"[..]));
}

#[test]
fn key_missing_is_null() {
    assert_eq!(
        decode(WatchType::Key, &fixture("key-missing.json")).unwrap(),
        Payload::Key(None)
    );
    assert!(decode_kv(&fixture("key-missing.json")).unwrap().is_empty());
}

#[test]
fn keyprefix_fixtures() {
    let kvs = decode_kv(&fixture("keyprefix.json")).unwrap();
    assert_eq!(kvs.len(), 3);
    assert!(kvs.iter().all(|k| k.value.is_some()));
    let with_folder = decode_kv(&fixture("keyprefix-with-folder.json")).unwrap();
    assert!(with_folder
        .iter()
        .any(|k| k.is_folder() && k.value.is_none()));
    assert_eq!(
        decode(WatchType::KeyPrefix, &fixture("keyprefix-empty.json")).unwrap(),
        Payload::KeyPrefix(vec![])
    );
}

#[test]
fn catalog_and_health_fixtures() {
    let Payload::Services(s) = decode(WatchType::Services, &fixture("services.json")).unwrap()
    else {
        panic!()
    };
    assert!(s.contains_key("consul"));
    let Payload::Nodes(n) = decode(WatchType::Nodes, &fixture("nodes.json")).unwrap() else {
        panic!()
    };
    assert_eq!(n.len(), 2);
    let Payload::Service(e) = decode(WatchType::Service, &fixture("service.json")).unwrap() else {
        panic!()
    };
    assert_eq!(e[0].service["Service"], "redis");
    let Payload::Checks(c) = decode(WatchType::Checks, &fixture("checks.json")).unwrap() else {
        panic!()
    };
    assert_eq!(c[0].status, "passing");
}

#[test]
fn event_fixtures() {
    let Payload::Event(ev) = decode(WatchType::Event, &fixture("event.json")).unwrap() else {
        panic!()
    };
    assert_eq!(ev[0].name, "web-deploy");
    assert_eq!(ev[0].payload.as_deref(), Some(&b"1609030"[..]));
    let Payload::Event(ev) = decode(WatchType::Event, &fixture("event-null-payload.json")).unwrap()
    else {
        panic!()
    };
    assert_eq!(ev[0].payload, None);
    assert_eq!(
        decode(WatchType::Event, &fixture("event-none.json")).unwrap(),
        Payload::Event(vec![])
    );
}

#[test]
fn detect_recognises_every_fixture() {
    let cases = [
        ("key.json", "Key"),
        ("key-missing.json", "Empty"),
        ("keyprefix.json", "KeyPrefix"),
        ("keyprefix-empty.json", "Empty"),
        ("services.json", "Services"),
        ("nodes.json", "Nodes"),
        ("service.json", "Service"),
        ("checks.json", "Checks"),
        ("event.json", "Event"),
        ("event-none.json", "Empty"),
    ];
    for (name, want) in cases {
        let got = detect(&fixture(name)).unwrap();
        assert!(
            format!("{got:?}").starts_with(want),
            "{name}: {got:?} is not {want}"
        );
    }
}

#[test]
fn truncated_json_names_line_and_column() {
    let err = decode_kv(br#"[{"Key":"a","Value":"aGV5""#).unwrap_err();
    assert!(matches!(err, DecodeError::Json { line: 1, .. }), "{err}");
    assert!(err.to_string().contains("not valid JSON"));
}

#[test]
fn empty_stdin_is_an_error() {
    assert_eq!(decode_kv(b"  \n").unwrap_err(), DecodeError::Empty);
}

#[test]
fn bad_base64_names_entry_and_key() {
    let err = decode_kv(
        br#"[{"Key":"a","Value":null},{"Key":"b","Value":null},{"Key":"jobs/api.json","Value":"!!notbase64"}]"#,
    )
    .unwrap_err();
    assert_eq!(err.to_string().split(" (").next().unwrap(), "entry 3");
    assert!(
        err.to_string()
            .starts_with("entry 3 (key \"jobs/api.json\"): Value is not valid base64"),
        "{err}"
    );
}

#[test]
fn wrong_type_for_declared_watch() {
    let err = decode(WatchType::Key, &fixture("keyprefix.json")).unwrap_err();
    assert!(err.to_string().contains("expected a key payload"), "{err}");
    let err = decode(WatchType::Event, &fixture("services.json")).unwrap_err();
    assert!(err.to_string().contains("found an object"), "{err}");
    let err = decode_kv(b"\"just a string\"").unwrap_err();
    assert!(matches!(err, DecodeError::WrongType { .. }));
    let err = decode_kv(br#"[{"Key":"a","ModifyIndex":"seven"}]"#).unwrap_err();
    assert!(err.to_string().starts_with("entry 1 (key \"a\")"), "{err}");
}

#[test]
fn invalid_utf8_inside_a_value_is_visible_to_the_caller() {
    // base64 of the bytes ff fe: valid base64, not UTF-8; the decoder keeps bytes and the
    // handler that needs JSON reports it.
    let kvs = decode_kv(br#"{"Key":"jobs/x.json","Value":"//4="}"#).unwrap();
    assert!(kvs[0].value_str().is_err());
}

#[test]
fn invalid_utf8_in_the_payload_itself_is_rejected() {
    let err = decode_kv(b"[{\"Key\":\"\xff\"}]").unwrap_err();
    assert!(matches!(err, DecodeError::Json { .. }), "{err}");
}

#[test]
fn huge_payload_decodes() {
    let value =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![b'x'; 4096]);
    let entries: Vec<String> = (0..10_000)
        .map(|i| format!(r#"{{"Key":"jobs/app{i}.json","CreateIndex":{i},"ModifyIndex":{i},"LockIndex":0,"Flags":0,"Value":"{value}","Session":""}}"#))
        .collect();
    let payload = format!("[{}]\n", entries.join(","));
    assert!(payload.len() > 50 * 1024 * 1024);
    let kvs = decode_kv(payload.as_bytes()).unwrap();
    assert_eq!(kvs.len(), 10_000);
}

#[test]
fn unknown_fields_are_accepted() {
    let kvs = decode_kv(
        br#"[{"Key":"a","Value":null,"Namespace":"default","Partition":"x","Brand":"new"}]"#,
    )
    .unwrap();
    assert_eq!(kvs[0].key, "a");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_kv(&bytes);
        let _ = detect(&bytes);
        for wt in [WatchType::Key, WatchType::KeyPrefix, WatchType::Services, WatchType::Nodes,
                   WatchType::Service, WatchType::Checks, WatchType::Event] {
            let _ = decode(wt, &bytes);
        }
        let _: Vec<_> = watch::EventStream::new(&bytes[..]).collect();
    }

    #[test]
    fn json_shaped_garbage_never_panics(s in r#"[\[\]{}",:0-9a-zA-Z"\\ ]{0,200}"#) {
        let _ = decode_kv(s.as_bytes());
        let _ = detect(s.as_bytes());
    }
}

#[test]
fn escaped_strings_decode_like_plain_ones() {
    // JSON allows `\/`; Go never writes it, other encoders (a replay by hand) may: the decoder
    // borrows plain strings from the payload and must unescape the others.
    let kvs = decode_kv(br#"[{"Key":"jobs\/a\u002ejson","Value":"aGV5\/w==","Session":"s\"1"}]"#)
        .unwrap();
    assert_eq!(kvs[0].key, "jobs/a.json");
    assert_eq!(kvs[0].value.as_deref(), Some(&b"hey\xff"[..]));
    assert_eq!(kvs[0].session, "s\"1");
    let Payload::Event(ev) = detect(
        br#"[{"ID":"x","Name":"dep\/loy","Payload":"aGV5","NodeFilter":"","ServiceFilter":"","TagFilter":"","Version":1,"LTime":2}]"#,
    )
    .unwrap() else {
        panic!("not an event payload")
    };
    assert_eq!(ev[0].name, "dep/loy");
    assert_eq!(ev[0].payload.as_deref(), Some(&b"hey"[..]));
}

#[test]
fn entry_errors_name_the_entry_not_a_position_inside_it() {
    let err = decode_kv(br#"[{"Key":"a"},{"Key":"b","Flags":-1}]"#).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("entry 2 (key \"b\"): invalid value"),
        "{msg}"
    );
    assert!(!msg.contains(" at line "), "{msg}");
    let err = decode_kv(br#"[{"Key":"a"}, 7]"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "entry 2: expected a KV object, found a number"
    );
}
