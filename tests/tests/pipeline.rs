//! End to end: the built handler binaries run by devstack's watch runner exactly as a Consul agent
//! runs them (the watches in consul-config/), against the Consul, Marathon and Chronos doubles and
//! a real bare Git repository. Each test ends by itself; waits poll with deadlines.
//!
//! These need the handler binaries built: `cargo test --workspace` builds them (or set
//! SHIPWATCH_BIN_DIR).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use devstack::http::{Request, Response, Server};
use devstack::pipeline::{wait_until, Pipeline, PipelineOptions, API_IMAGE_KEY};

const T: Duration = Duration::from_secs(60);
const API: &str = "/sami/api";

fn api_image(p: &Pipeline) -> Option<String> {
    p.marathon_image(API)
}

fn file_at_head(p: &Pipeline, path: &str) -> String {
    p.git_bare(&["show", &format!("main:{path}")]).unwrap()
}

/// Starts the pipeline and waits for the agent-start invocations to settle (apps deployed and
/// registered).
fn start(opts: PipelineOptions) -> Pipeline {
    let p = Pipeline::start(opts).unwrap();
    wait_until("initial deploy", T, || {
        api_image(&p).as_deref() == Some("registry.local:5000/sami/api:1.4.1")
            && p.marathon_image("/sami/web").is_some()
    })
    .unwrap();
    wait_until("initial registration", T, || {
        let mut tasks = p.marathon_tasks(API);
        tasks.sort();
        !tasks.is_empty() && p.consul_task_ids(API) == tasks
    })
    .unwrap();
    p
}

/// Publishes, lets tag2git commit, mirrors with git2consul, and waits for Marathon to run `tag`.
fn release(p: &Pipeline, tag: &str) {
    p.ci_publish(API_IMAGE_KEY, tag);
    let want = format!("registry.local:5000/sami/api:{tag}");
    wait_until("tag2git commit", T, || {
        file_at_head(p, "marathon/sami/api.json").contains(&want)
    })
    .unwrap();
    p.git2consul().unwrap();
    wait_until("kv2jobs deploy", T, || {
        api_image(p).as_deref() == Some(want.as_str())
    })
    .unwrap();
}

#[test]
fn the_demo_walks_a_release_through_every_step() {
    let opts = PipelineOptions::for_tests().unwrap();
    devstack::demo::run(devstack::demo::DemoOptions {
        bin_dir: opts.bin_dir,
        config_dir: opts.config_dir,
        keep: false,
        consul_bin: None,
    })
    .unwrap();
}

#[test]
fn release_updates_only_the_changed_app_and_reregisters_its_tasks() {
    let p = start(PipelineOptions::for_tests().unwrap());
    let web_version = p.stack.marathon.app("/sami/web").unwrap()["version"].clone();
    let old_tasks = p.marathon_tasks(API);
    release(&p, "1.4.2");
    assert_eq!(
        p.stack.marathon.app("/sami/web").unwrap()["version"],
        web_version
    );
    wait_until("tasks2consul re-registration", T, || {
        let mut tasks = p.marathon_tasks(API);
        tasks.sort();
        !tasks.is_empty() && tasks != old_tasks && p.consul_task_ids(API) == tasks
    })
    .unwrap();
    // The Chronos job that runs the same image follows (kv2jobs writes Chronos after Marathon,
    // so under load the re-registration above can be seen first: poll, do not assume).
    wait_until("the Chronos job follows the image", T, || {
        p.stack
            .chronos
            .jobs()
            .iter()
            .find(|j| j["name"] == "api-cleanup")
            .is_some_and(|j| j["container"]["image"] == "registry.local:5000/sami/api:1.4.2")
    })
    .unwrap();
}

#[test]
fn a_release_of_an_image_used_by_two_apps_and_a_job_updates_all_three() {
    let p = start(PipelineOptions::for_tests().unwrap());
    let worker = r#"{
  "id": "/sami/worker",
  "cmd": "api-worker",
  "instances": 1,
  "container": { "type": "DOCKER", "docker": { "image": "registry.local:5000/sami/api:1.4.1" } }
}
"#;
    p.human_commit("marathon/sami/worker.json", worker, "Add the worker")
        .unwrap();
    p.git2consul().unwrap();
    wait_until("worker deployed", T, || {
        p.marathon_image("/sami/worker").is_some()
    })
    .unwrap();
    release(&p, "1.5.0");
    let want = "registry.local:5000/sami/api:1.5.0";
    wait_until("worker updated", T, || {
        p.marathon_image("/sami/worker").as_deref() == Some(want)
    })
    .unwrap();
    let msg = p.git_bare(&["log", "-1", "--format=%B"]).unwrap();
    assert!(
        msg.contains("Consul-Key: images/registry.local:5000/sami/api"),
        "{msg}"
    );
    let files = p
        .git_bare(&["show", "--name-only", "--format=", "HEAD"])
        .unwrap();
    for f in [
        "marathon/sami/api.json",
        "marathon/sami/worker.json",
        "chronos/api-cleanup.json",
    ] {
        assert!(files.contains(f), "{f} not in the commit: {files}");
    }
}

#[test]
fn a_second_release_during_a_running_deployment_lands_last() {
    let mut opts = PipelineOptions::for_tests().unwrap();
    opts.stack.deploy_duration = Duration::from_secs(2);
    let p = start(opts);
    p.ci_publish(API_IMAGE_KEY, "1.4.2");
    wait_until("first commit", T, || {
        file_at_head(&p, "marathon/sami/api.json").contains("api:1.4.2")
    })
    .unwrap();
    p.git2consul().unwrap();
    // While 1.4.2 is deploying, CI publishes 1.4.3.
    wait_until("1.4.2 deploying", T, || {
        api_image(&p).as_deref() == Some("registry.local:5000/sami/api:1.4.2")
    })
    .unwrap();
    release(&p, "1.4.3");
    p.stack.marathon.finish_deployments();
    assert_eq!(
        api_image(&p).as_deref(),
        Some("registry.local:5000/sami/api:1.4.3")
    );
}

#[test]
fn a_manual_rollback_in_git_survives_an_agent_restart() {
    let mut p = start(PipelineOptions::for_tests().unwrap());
    release(&p, "1.4.2");
    // An operator pins 1.4.1 back by hand in Git.
    let pinned = file_at_head(&p, "marathon/sami/api.json").replace("api:1.4.2", "api:1.4.1");
    p.human_commit(
        "marathon/sami/api.json",
        &pinned,
        "Roll back sami/api to 1.4.1",
    )
    .unwrap();
    p.git2consul().unwrap();
    wait_until("rollback deployed", T, || {
        api_image(&p).as_deref() == Some("registry.local:5000/sami/api:1.4.1")
    })
    .unwrap();
    let head = p.git_bare(&["rev-parse", "main"]).unwrap();
    // consul reload: every watch fires again with the whole prefix, images/ still says 1.4.2.
    p.restart_agent().unwrap();
    wait_until("tag2git ran after restart", T, || {
        p.invocations("tag2git")
            .iter()
            .any(|i| i.exit_code.is_some())
    })
    .unwrap();
    wait_until("kv2jobs ran after restart", T, || {
        p.invocations("kv2jobs")
            .iter()
            .any(|i| i.exit_code.is_some())
    })
    .unwrap();
    let inv = p.invocations("tag2git");
    assert_eq!(inv[0].exit_code, Some(0), "{}", inv[0].stderr);
    assert_eq!(
        p.git_bare(&["rev-parse", "main"]).unwrap(),
        head,
        "tag2git undid the pin"
    );
    assert_eq!(
        api_image(&p).as_deref(),
        Some("registry.local:5000/sami/api:1.4.1")
    );
}

#[test]
fn marathon_down_during_a_deploy_then_back_loses_nothing() {
    let mut p = start(PipelineOptions::for_tests().unwrap());
    p.stack.marathon.faults().set_refuse(true);
    p.ci_publish(API_IMAGE_KEY, "1.4.2");
    wait_until("commit", T, || {
        file_at_head(&p, "marathon/sami/api.json").contains("api:1.4.2")
    })
    .unwrap();
    let before = p.invocations("kv2jobs").len();
    p.git2consul().unwrap();
    wait_until("kv2jobs gave up", T, || {
        p.invocations("kv2jobs")
            .iter()
            .skip(before)
            .any(|i| i.exit_code == Some(69))
    })
    .unwrap();
    p.stack.marathon.faults().set_refuse(false);
    // The next invocation (here: the agent restarting) completes the deployment.
    p.restart_agent().unwrap();
    wait_until("deployed after recovery", T, || {
        api_image(&p).as_deref() == Some("registry.local:5000/sami/api:1.4.2")
    })
    .unwrap();
}

#[test]
fn a_bad_image_reference_from_ci_is_rejected_and_nothing_is_deployed() {
    let hook = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = {
        let hook = Arc::clone(&hook);
        Server::start(
            "127.0.0.1:0",
            Arc::new(move |r: Request| {
                hook.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&r.body).into_owned());
                Response::text(200, "ok")
            }),
        )
        .unwrap()
    };
    let mut opts = PipelineOptions::for_tests().unwrap();
    opts.extra_args = vec![("tag2git".into(), vec!["--notify".into(), sink.url()])];
    let p = start(opts);
    let head = p.git_bare(&["rev-parse", "main"]).unwrap();
    let before = p.invocations("tag2git").len();
    p.ci_publish(API_IMAGE_KEY, "1.4.2; rm -rf /");
    wait_until("tag2git rejected it", T, || {
        p.invocations("tag2git")
            .iter()
            .skip(before)
            .any(|i| i.exit_code == Some(65))
    })
    .unwrap();
    assert_eq!(p.git_bare(&["rev-parse", "main"]).unwrap(), head);
    assert_eq!(
        api_image(&p).as_deref(),
        Some("registry.local:5000/sami/api:1.4.1")
    );
    wait_until("team notified", T, || !hook.lock().unwrap().is_empty()).unwrap();
    let body = hook.lock().unwrap()[0].clone();
    assert!(body.contains("\"text\""), "{body}");
}
