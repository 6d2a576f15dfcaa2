//! The Marathon and Chronos clients against the devstack doubles.

use std::time::Duration;

use devstack::chronos::{Chronos as ChronosDouble, ChronosOptions};
use devstack::marathon::{Marathon as MarathonDouble, MarathonOptions};
use marathon::{Chronos, Marathon, MarathonError};
use runtime::http::{HttpClient, HttpConfig};
use runtime::Backoff;
use serde_json::json;

fn client(url: &str, service: &'static str) -> HttpClient {
    let mut cfg = HttpConfig::new(service);
    cfg.backoff = Backoff {
        attempts: 2,
        base: Duration::from_millis(1),
        max: Duration::from_millis(2),
    };
    HttpClient::new(&[url.to_string()], cfg).unwrap()
}

#[test]
fn list_apps_with_tasks_and_labels_and_the_streaming_form_agree() {
    let d = MarathonDouble::start(MarathonOptions::default()).unwrap();
    d.seed_apps(vec![
        json!({"id":"/a","cmd":"x","instances":2,"labels":{"consul":"true"}}),
        json!({"id":"/b","cmd":"x"}),
    ]);
    let m = Marathon::new(client(&d.url(), "marathon"));
    let all = m.list_apps(false, None).unwrap();
    assert_eq!(all.len(), 2);
    let labelled = m.list_apps(true, Some("consul")).unwrap();
    assert_eq!(labelled.len(), 1);
    assert_eq!(labelled[0]["tasks"].as_array().unwrap().len(), 2);
    let ids = m
        .list_apps_map(false, None, |a| a["id"].as_str().unwrap().to_string())
        .unwrap();
    assert_eq!(ids, vec!["/a", "/b"]);
}

#[test]
fn locked_invalid_and_missing_apps_map_to_their_errors() {
    let d = MarathonDouble::start(MarathonOptions {
        deploy_duration: Duration::from_secs(30),
        ..Default::default()
    })
    .unwrap();
    let m = Marathon::new(client(&d.url(), "marathon"));
    let r = m.put_app(&json!({"id":"/a","cmd":"v1"}), false).unwrap();
    assert!(r.deployment_id.is_some());
    match m.put_app(&json!({"id":"/a","cmd":"v2"}), false) {
        Err(MarathonError::Locked { deployments, .. }) => {
            assert_eq!(deployments, vec![r.deployment_id.clone().unwrap()])
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert_eq!(m.deployments().unwrap().len(), 1);
    assert!(m.put_app(&json!({"id":"/a","cmd":"v3"}), true).is_ok());
    match m.put_app(
        &json!({"id":"/b","cmd":"x","upgradeStrategy":{"minimumHealthCapacity":2}}),
        false,
    ) {
        Err(MarathonError::Invalid { details, .. }) => {
            assert_eq!(details[0].path, "/upgradeStrategy/minimumHealthCapacity");
            assert_eq!(details[0].errors, vec!["is greater than 1"]);
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(m.get_app("/nope").unwrap().is_none());
    assert!(matches!(
        m.delete_app("/nope"),
        Err(MarathonError::NotFound { .. })
    ));
}

#[test]
fn chronos_falls_back_to_the_2x_prefix_and_posts_by_kind() {
    for api_v2 in [false, true] {
        let d = ChronosDouble::start(ChronosOptions {
            api_v2,
            ..Default::default()
        })
        .unwrap();
        let c = Chronos::new(client(&d.url(), "chronos"));
        assert!(c.list_jobs().unwrap().is_empty());
        assert_eq!(
            c.prefix(),
            if api_v2 {
                "/scheduler"
            } else {
                "/v1/scheduler"
            }
        );
        c.put_job(&json!({"name":"p","command":"x","schedule":"R//PT1H"}))
            .unwrap();
        c.put_job(&json!({"name":"c","command":"x","parents":["p"]}))
            .unwrap();
        let jobs = d.jobs();
        assert_eq!(jobs.len(), 2);
        assert!(c
            .put_job(&json!({"name":"bad","command":"x","schedule":"nope"}))
            .is_err());
        assert!(c.delete_job("c").unwrap());
        assert!(!c.delete_job("c").unwrap(), "unknown job: already gone");
    }
}

// GET /v2/leader: 200 {"leader":"host:port"}, 404 {"message":"There is no leader"} during an
// election (reference §1.1, leader.raml); a standby names the instance it proxies to.
#[test]
fn leader_names_the_leader_or_none_during_an_election() {
    use devstack::marathon::Leader;
    let d = MarathonDouble::start(MarathonOptions::default()).unwrap();
    let other = MarathonDouble::start(MarathonOptions::default()).unwrap();
    let m = Marathon::new(client(&d.url(), "marathon"));
    let host = d.url().trim_start_matches("http://").to_string();
    assert_eq!(m.leader().unwrap(), Some(host));
    d.set_leader(Leader::None);
    assert_eq!(m.leader().unwrap(), None);
    d.set_leader(Leader::Other(other.url()));
    let other_host = other.url().trim_start_matches("http://").to_string();
    assert_eq!(m.leader().unwrap(), Some(other_host));
}
