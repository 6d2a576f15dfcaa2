//! Bad input never panics: random keys and values through classification and planning.

use kv2jobs::config::classify;
use kv2jobs::plan::{expected, plan_apps, plan_jobs, reduce_live_raw, LiveApps, Plan, PlanOptions};
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
        plan_apps(&mut d, &live.into(), &opts, &mut plan);
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

fn arb_live_app() -> impl Strategy<Value = serde_json::Value> {
    (0usize..3, 0usize..4, prop::bool::ANY, prop::bool::ANY).prop_map(|(id, cmd, port, ignore)| {
        let name = ["a", "b", "c"][id];
        let cmd = ["x", "y", "z", "w"][cmd];
        let mut app = json!({"id": format!("/{name}"), "cmd": cmd,
            "cpus": 1, "mem": 128, "instances": 1, "version": "2026-01-01T00:00:00Z",
            "labels": {"shipwatch.managed-by": "kv2jobs", "shipwatch.source-key": format!("{name}.json")}});
        if port {
            app["portDefinitions"] = json!([{"port": 10000, "name": "default", "protocol": "tcp"}]);
        }
        if ignore {
            app["labels"]["shipwatch.ignore"] = json!("instances");
        }
        app
    })
}

proptest! {
    // Comparing each live app with its config as it is read (and keeping only `id` and
    // `labels` of those found equal) plans exactly what comparing them in `plan_apps` plans
    // (issue 13).
    #[test]
    fn comparing_while_reading_plans_the_same(pairs in prop::collection::vec(arb_pair(), 0..12),
                                              live in prop::collection::vec(arb_live_app(), 0..4),
                                              prune: bool) {
        let opts = PlanOptions { prefix: String::new(), prune, allow_empty: false };
        let mut plain = Plan::default();
        let mut d = classify(&pairs, "", false);
        let canonical: Vec<_> = live.iter().map(marathon::normalize::canonical_app).collect();
        plan_apps(&mut d, &canonical.into(), &opts, &mut plain);
        let mut streamed = Plan::default();
        let mut d = classify(&pairs, "", false);
        let exp = expected(&d);
        let mut reduced = LiveApps::default();
        for a in live {
            let raw = serde_json::value::RawValue::from_string(a.to_string()).unwrap();
            let app = reduce_live_raw(&raw, &exp, &mut reduced);
            reduced.apps.push(app);
        }
        plan_apps(&mut d, &reduced, &opts, &mut streamed);
        let show = |p: &Plan| p.items.iter().map(|i| format!("{} {} {:?} {} {}", i.kind, i.target, i.op, i.unchanged, i.detail)).collect::<Vec<_>>();
        prop_assert_eq!(show(&plain), show(&streamed));
        prop_assert_eq!(plain.managed, streamed.managed);
    }
}
