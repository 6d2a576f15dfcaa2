//! Bad input never panics: random keys and values through classification and planning.

use kv2jobs::config::classify;
use kv2jobs::plan::{plan_apps, plan_jobs, Plan, PlanOptions};
use proptest::prelude::*;
use serde_json::json;
use watch::KvPair;

fn arb_value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Some),
        Just(Some(br#"{"id":"a","cmd":"x"}"#.to_vec())),
        Just(Some(br#"{"id":"/g","apps":[{"id":"a","cmd":"x"},{"id":"a","cmd":"y"}],"groups":[{"id":"x"}]}"#.to_vec())),
        Just(Some(br#"{"name":"j","command":"x","parents":["j2"]}"#.to_vec())),
        Just(Some(br#"{"name":"j2","command":"x","parents":["j"]}"#.to_vec())),
        Just(Some(br#"{"name":"s","command":"x","schedule":"R5//P1M"}"#.to_vec())),
        Just(Some(br#"{"id":7,"apps":"no"}"#.to_vec())),
        Just(Some(b"[1,2]".to_vec())),
    ]
}

fn arb_pair() -> impl Strategy<Value = KvPair> {
    (
        "[a-c]{1,2}(/[a-c]{0,2}){0,2}(\\.json|\\.ref|/|\\.md|)",
        0u64..20,
        arb_value(),
    )
        .prop_map(|(key, idx, value)| KvPair {
            key,
            create_index: idx,
            modify_index: idx,
            lock_index: 0,
            flags: 0,
            value,
            session: String::new(),
        })
}

proptest! {
    #[test]
    fn classification_and_planning_never_panic(pairs in prop::collection::vec(arb_pair(), 0..12), prune: bool, single: bool) {
        let mut d = classify(&pairs, "", single);
        let live = vec![json!({"id":"/a","cmd":"x","labels":{"shipwatch.managed-by":"kv2jobs","shipwatch.source-key":"a.json"}})];
        let jobs = vec![json!({"name":"j","command":"x","schedule":"R//PT1H","environmentVariables":[{"name":"SHIPWATCH_MANAGED_BY","value":"kv2jobs"},{"name":"SHIPWATCH_SOURCE_KEY","value":"b.json"}]})];
        let opts = PlanOptions { prefix: String::new(), prune, allow_empty: false };
        let mut plan = Plan::default();
        plan_jobs(&d, Some(&jobs), &opts, &mut plan);
        plan_apps(&mut d, &live, &opts, &mut plan);
        // Every key is accounted for: skipped, rejected, or the source of an app/job.
        for p in &pairs {
            let seen = d.skipped.iter().any(|(k, _)| k == &p.key)
                || d.rejected.iter().any(|(k, _)| k == &p.key)
                || d.apps.iter().any(|a| a.key == p.key)
                || d.jobs.iter().any(|j| j.key == p.key);
            prop_assert!(seen, "key {} not reported", p.key);
        }
    }
}
