//! Properties of the normalization: arbitrary JSON never panics, and a document always compares
//! equal to itself (a server that stores exactly what we send is never seen as different).

use marathon::normalize::{apps_equal, canonical_app, canonical_job, jobs_equal};
use marathon::schedule::same_schedule;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        (-1.0e6f64..1.0e6).prop_map(|f| json!(f)),
        "[a-zA-Z0-9/._-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop_oneof![
            Just("id".to_string()),
            Just("cmd".to_string()),
            Just("container".to_string()),
            Just("docker".to_string()),
            Just("network".to_string()),
            Just("portMappings".to_string()),
            Just("portDefinitions".to_string()),
            Just("healthChecks".to_string()),
            Just("ports".to_string()),
            Just("uris".to_string()),
            Just("fetch".to_string()),
            Just("dependencies".to_string()),
            Just("ipAddress".to_string()),
            Just("networks".to_string()),
            Just("schedule".to_string()),
            Just("parents".to_string()),
            Just("environmentVariables".to_string()),
            Just("cpus".to_string()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((keys, inner), 0..6)
                .prop_map(|kvs| Value::Object(kvs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #[test]
    fn normalizing_never_panics_and_a_document_equals_itself(v in arb_json()) {
        let _ = canonical_app(&v);
        let _ = canonical_job(&v);
        prop_assert!(apps_equal(&v, &v));
        prop_assert!(jobs_equal(&v, &v));
    }

    #[test]
    fn schedules_never_panic(a in "R[0-9]{0,3}/[0-9T:Z.+-]{0,26}/P[0-9YMWDTHS.]{0,8}", b in ".{0,40}") {
        let _ = same_schedule(&a, &b);
        prop_assert!(same_schedule(&a, &a));
    }
}
