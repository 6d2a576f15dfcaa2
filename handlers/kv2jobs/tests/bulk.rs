//! Issue 13 item 3: changed apps go to Marathon in bulk `PUT /v2/apps` requests (one deployment
//! per batch of 50), within Marathon's `--max_running_deployments` (403 "Max number (N) of
//! running deployments is achieved", reference "Deployment limit"), a refused batch is put app
//! by app so one bad app is isolated. The built binary against the Marathon double.

mod common;

use std::time::Duration;

use common::{action, actions, app, count, Stack};
use devstack::chronos::ChronosOptions;
use devstack::marathon::MarathonOptions;
use serde_json::{json, Value};

fn docker_app(id: &str, image: &str) -> Value {
    let mut a = app(id, "run");
    a["container"] = json!({"type": "DOCKER", "docker": {"image": image}});
    a
}

fn fleet(s: &Stack, n: usize, bumped: usize) -> Vec<u8> {
    let files: Vec<(String, Value)> = (0..n)
        .map(|i| {
            let base = if i < bumped { "base-2" } else { "base-1" };
            (
                format!("svc{i:04}.json"),
                docker_app(
                    &format!("/fleet/svc{i:04}"),
                    &format!("reg/svc{i:04}:{base}"),
                ),
            )
        })
        .collect();
    let refs: Vec<(&str, Value)> = files.iter().map(|(f, v)| (f.as_str(), v.clone())).collect();
    s.payload(&refs)
}

fn no_limit_error(sum: &Value) {
    // (Not a bare "403": deployment ids are UUIDs, which may hold those digits.)
    let text = sum.to_string();
    assert!(
        !text.contains("Max number")
            && !text.contains("running-deployments limit")
            && !text.contains("403 Forbidden")
            && !text.contains("answered HTTP 403"),
        "Marathon's limit reached the user: {}",
        &text[..text.len().min(2000)]
    );
    assert_eq!(
        sum["errors"],
        json!([]),
        "{}",
        &text[..text.len().min(2000)]
    );
    assert_eq!(count(sum, "failed"), 0);
}

/// A base-image bump touching 1,000 of 2,000 apps, against a Marathon allowing 5 running
/// deployments that each take 200 ms: every app is updated, no 403 reaches the summary, and at
/// most one deployment per 50 changed apps is started (the per-app PUTs of before started
/// 1,000). The first deploy of the 2,000 is held to the same bound.
#[test]
fn a_base_image_bump_of_1000_of_2000_apps_stays_within_the_deployment_limit() {
    let s = Stack::with(
        "fleet",
        MarathonOptions {
            deploy_duration: Duration::from_millis(200),
            max_running_deployments: 5,
            ..Default::default()
        },
        ChronosOptions::default(),
    );
    let Some(m) = s.double() else { return };
    let (d0, w0) = (m.deployment_count(), m.write_count());
    let (code, sum, err) = s.run(&fleet(&s, 2000, 0), &["--deploy-timeout", "60s"]);
    assert_eq!(code, 0, "{}\n{err}", &sum.to_string()[..2000]);
    assert_eq!(actions(&sum, "create-app").len(), 2000);
    assert_eq!(count(&sum, "applied"), 2000);
    no_limit_error(&sum);
    let first = m.deployment_count() - d0;
    assert!(first <= 2000 / 50, "{first} deployments for 2,000 new apps");

    let (d1, w1) = (m.deployment_count(), m.write_count());
    let (code, sum, err) = s.run(&fleet(&s, 2000, 1000), &["--deploy-timeout", "60s"]);
    assert_eq!(code, 0, "{}\n{err}", &sum.to_string()[..2000]);
    let updates = actions(&sum, "update-app");
    assert_eq!(
        updates.len(),
        2000,
        "unchanged apps are update-app actions too"
    );
    assert_eq!(count(&sum, "applied"), 1000);
    assert_eq!(count(&sum, "unchanged"), 1000);
    no_limit_error(&sum);
    let started = m.deployment_count() - d1;
    assert!(
        started <= 1000 / 50,
        "{started} deployments for 1,000 changed apps"
    );
    // The limit was met (refused writes) and waited out.
    assert!(
        m.write_count() - w1 > started || m.write_count() - w0 > first + started,
        "the limit of 5 was never reached: the test proves nothing"
    );
    assert!(err.contains("running-deployments limit"), "{err}");
    // Each app's action names the bulk's deployment.
    let a = action(&sum, "/fleet/svc0007");
    assert!(
        a["detail"]
            .as_str()
            .unwrap()
            .contains("one bulk PUT of 50 apps"),
        "{a}"
    );
    s.settle();
    let live = s.live_apps();
    assert_eq!(live.len(), 2000);
    for a in &live {
        let id = a["id"].as_str().unwrap();
        let n: usize = id["/fleet/svc".len()..].parse().unwrap();
        let want = if n < 1000 { "base-2" } else { "base-1" };
        let image = a["container"]["docker"]["image"].as_str().unwrap();
        assert!(image.ends_with(want), "{id}: {image}");
    }
}

/// One invalid app in a batch of 50: Marathon refuses the whole bulk (422), kv2jobs puts the
/// 50 one by one: the bad app fails alone with Marathon's field error (exit 75, as for any
/// app Marathon refuses), the other 49 deploy.
#[test]
fn one_invalid_app_in_a_batch_fails_alone_and_the_other_49_deploy() {
    let s = Stack::new("onebad");
    let Some(m) = s.double() else { return };
    let files: Vec<(String, Value)> = (0..50)
        .map(|i| {
            let mut a = app(&format!("/onebad/a{i:02}"), "x");
            if i == 7 {
                a["upgradeStrategy"] = json!({"minimumHealthCapacity": 2});
            }
            (format!("a{i:02}.json"), a)
        })
        .collect();
    let refs: Vec<(&str, Value)> = files.iter().map(|(f, v)| (f.as_str(), v.clone())).collect();
    let (code, sum, err) = s.run(&s.payload(&refs), &[]);
    assert_eq!(code, 75, "{sum}\n{err}");
    let bad = action(&sum, "/onebad/a07");
    assert_eq!(bad["status"], "failed", "{bad}");
    assert!(
        bad["detail"]
            .as_str()
            .unwrap()
            .contains("/upgradeStrategy/minimumHealthCapacity: is greater than 1"),
        "{bad}"
    );
    assert_eq!(count(&sum, "applied"), 49, "{sum}");
    assert_eq!(count(&sum, "failed"), 1, "{sum}");
    assert!(err.contains("putting them one by one"), "{err}");
    s.settle();
    assert_eq!(s.live_apps().len(), 49);
    assert!(s.live_app("/onebad/a07").is_none());
    // A replay: only the bad app is tried again (nothing else written).
    let writes = m.write_count();
    let (code, sum, _) = s.run(&s.payload(&refs), &[]);
    assert_eq!(code, 75, "{sum}");
    assert_eq!(count(&sum, "unchanged"), 49, "{sum}");
    assert_eq!(m.write_count(), writes + 1);
}

/// 409 on a bulk: the apps of a batch locked by a running deployment are waited for (not
/// failed), the bulk is tried again, and `--wait` follows the batch's one deployment.
#[test]
fn a_locked_batch_is_waited_for_and_its_deployment_followed() {
    let s = Stack::with(
        "bulk409",
        MarathonOptions {
            deploy_duration: Duration::from_millis(300),
            ..Default::default()
        },
        ChronosOptions::default(),
    );
    let Some(m) = s.double() else { return };
    let files = |cmd: &str| {
        s.payload(&[
            ("a.json", app("/bulk409/a", cmd)),
            ("b.json", app("/bulk409/b", cmd)),
            ("c.json", app("/bulk409/c", cmd)),
        ])
    };
    let (code, sum, err) = s.run(&files("v1"), &[]);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert_eq!(m.running_deployments(), 1, "one bulk, one deployment");
    let before = m.deployment_count();
    let (code, sum, err) = s.run(&files("v2"), &["--wait", "--deploy-timeout", "20s"]);
    assert_eq!(code, 0, "{sum}\n{err}");
    assert!(err.contains("are locked by deployment"), "{err}");
    for id in ["/bulk409/a", "/bulk409/b", "/bulk409/c"] {
        let a = action(&sum, id);
        assert_eq!(a["status"], "applied", "{a}");
        assert!(a["detail"].as_str().unwrap().contains("finished"), "{a}");
        assert_eq!(s.live_app(id).unwrap()["cmd"], "v2");
    }
    assert_eq!(m.deployment_count(), before + 1);
}
