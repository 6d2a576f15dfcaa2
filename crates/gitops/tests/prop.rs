//! Property tests: random input never panics the parsers, and in-place edits round-trip.

use gitops::imageref::{parse_bare_version, ImageRef};
use gitops::jsonedit::{apply, escape, parse, Edit, Node};
use proptest::prelude::*;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((".{0,6}", inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// Every string token in document order, with the JSON pointer of its value (keys excluded).
fn strings(node: &Node, pointer: String, out: &mut Vec<(String, std::ops::Range<usize>)>) {
    match node {
        Node::Str { span, .. } => out.push((pointer, span.clone())),
        Node::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                strings(item, format!("{pointer}/{i}"), out);
            }
        }
        Node::Object(members) => {
            // serde_json (preserve_order) keeps the last duplicate; skip earlier duplicates.
            for (i, (k, v)) in members.iter().enumerate() {
                if members[i + 1..].iter().any(|(k2, _)| k2 == k) {
                    continue;
                }
                let key = k.replace('~', "~0").replace('/', "~1");
                strings(v, format!("{pointer}/{key}"), out);
            }
        }
        Node::Scalar { .. } => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn imageref_parse_never_panics(s in "\\PC{0,80}") {
        let _ = ImageRef::parse(&s);
        let _ = parse_bare_version(&s);
    }

    #[test]
    fn imageref_grammar_shaped_input(s in "([a-zA-Z0-9.:_\\[\\]-]{1,12}/){0,3}[a-z0-9._-]{1,12}(:[A-Za-z0-9_.-]{1,10})?(@sha256:[0-9a-f]{64})?") {
        if let Ok(r) = ImageRef::parse(&s) {
            // Display gives back the input, and re-parsing is stable.
            prop_assert_eq!(r.to_string(), s.clone());
            let again = ImageRef::parse(&r.to_string()).unwrap();
            prop_assert_eq!(again.repository(), r.repository());
            // The familiar name normalizes to the same repository.
            prop_assert_eq!(ImageRef::parse(&r.familiar_repository()).unwrap().repository(), r.repository());
        }
    }

    #[test]
    fn json_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn json_parse_agrees_with_serde_on_text(s in "[\\[\\]{}\":,0-9a-z .eE+\\-\\\\\\n]{0,40}") {
        let ours = parse(s.as_bytes()).is_ok();
        let serde = serde_json::from_str::<Value>(&s).is_ok();
        prop_assert_eq!(ours, serde, "{:?}", s);
    }

    #[test]
    fn edit_changes_only_the_string(v in json_value(), pretty in any::<bool>(), crlf in any::<bool>(),
                                    pick in any::<prop::sample::Index>(), new in "\\PC{0,16}") {
        let mut text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { serde_json::to_string(&v).unwrap() };
        if crlf { text = text.replace('\n', "\r\n"); }
        let doc = parse(text.as_bytes()).unwrap();
        let mut sites = Vec::new();
        strings(&doc, String::new(), &mut sites);
        prop_assume!(!sites.is_empty());
        let (pointer, span) = sites[pick.index(sites.len())].clone();
        let out = apply(text.as_bytes(), &[Edit { span: span.clone(), replacement: escape(&new) }]).unwrap();
        // Bytes before and after the token are untouched.
        prop_assert_eq!(&out[..span.start], &text.as_bytes()[..span.start]);
        prop_assert_eq!(&out[out.len() - (text.len() - span.end)..], &text.as_bytes()[span.end..]);
        // The document means the same except for that one string.
        let mut expected = v.clone();
        *expected.pointer_mut(&pointer).unwrap() = Value::String(new.clone());
        let got: Value = serde_json::from_slice(&out).unwrap();
        prop_assert_eq!(got, expected);
    }
}
