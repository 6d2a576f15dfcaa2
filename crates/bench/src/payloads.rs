//! The inputs: Marathon app definitions, git2consul-style keyprefix payloads, labelled apps for
//! tasks2consul and a 5,000-file jobs repository for tag2git. Deterministic, so every contestant
//! and every repetition sees the same bytes.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use watch::KvPair;

/// git2consul's layout: `<repo>/<branch>/<path>` per file, `<repo>/<branch>.ref` written last.
pub const KV_PREFIX: &str = "jobs/main/";
pub const REF_KEY: &str = "jobs/main.ref";

pub fn app_key(i: usize) -> String {
    format!("{KV_PREFIX}apps/app-{i:05}.json")
}

/// App `i` as it is in Git; `tag` is its image tag.
pub fn app(i: usize, tag: &str) -> Value {
    json!({
        "id": format!("/bench/app-{i:05}"),
        "cmd": "sleep 1000",
        "cpus": 0.01,
        "mem": 16,
        "instances": 1,
        "container": {"type": "DOCKER",
                      "docker": {"image": format!("registry.local:5000/bench/app-{i:05}:{tag}")}},
        "env": {"MODE": "prod"},
        "labels": {"team": "bench"}
    })
}

/// App `i` as kv2jobs deploys it: with its ownership labels (kv2jobs README, "Ownership"), so a
/// Marathon seeded with these holds exactly what a previous kv2jobs run left.
pub fn deployed_app(i: usize, tag: &str) -> Value {
    let mut a = app(i, tag);
    a["labels"]["shipwatch.managed-by"] = json!("kv2jobs");
    a["labels"]["shipwatch.source-key"] = json!(app_key(i));
    a
}

fn kv(key: String, value: &[u8], index: u64) -> Value {
    KvPair {
        key,
        create_index: index,
        modify_index: index,
        lock_index: 0,
        flags: 0,
        value: Some(value.to_vec()),
        session: String::new(),
    }
    .to_wire()
}

/// A keyprefix payload of `n` app files where app 0 has tag `1.0.1` (the change) and the rest
/// `1.0.0`, plus the branch's `.ref` key. As git2consul writes them: app 0 was written last of
/// the files (its ModifyIndex is the highest of them, which the indexed shell baseline relies
/// on), then the `.ref` (the highest of all, so kv2jobs sees a consistent snapshot).
pub fn keyprefix(n: usize) -> Vec<u8> {
    let mut entries: Vec<Value> = (0..n)
        .map(|i| {
            let tag = if i == 0 { "1.0.1" } else { "1.0.0" };
            let body = serde_json::to_vec_pretty(&app(i, tag)).expect("json");
            let index = if i == 0 {
                100 + n as u64
            } else {
                100 + i as u64
            };
            kv(app_key(i), &body, index)
        })
        .collect();
    entries.push(kv(
        REF_KEY.into(),
        b"4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        101 + n as u64,
    ));
    // Consul returns keyprefix entries sorted by key.
    entries.sort_by(|a, b| a["Key"].as_str().cmp(&b["Key"].as_str()));
    serde_json::to_vec(&entries).expect("json")
}

/// A keyprefix payload of `n` app files where apps `0..changed` have tag `1.0.1` (a base-image
/// bump) and the rest `1.0.0`. The changed files were written last (ModifyIndex above
/// `99 + n`, the indexed baseline's state before the bump), then the `.ref`.
pub fn keyprefix_changed(n: usize, changed: usize) -> Vec<u8> {
    let mut entries: Vec<Value> = (0..n)
        .map(|i| {
            let (tag, index) = if i < changed {
                ("1.0.1", 100 + (n + i) as u64)
            } else {
                ("1.0.0", 100 + i as u64)
            };
            let body = serde_json::to_vec_pretty(&app(i, tag)).expect("json");
            kv(app_key(i), &body, index)
        })
        .collect();
    entries.push(kv(
        REF_KEY.into(),
        b"4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        100 + (n + changed) as u64,
    ));
    entries.sort_by(|a, b| a["Key"].as_str().cmp(&b["Key"].as_str()));
    serde_json::to_vec(&entries).expect("json")
}

/// The state an indexed handler keeps after applying every entry before the change: the
/// highest ModifyIndex of `.json` entries in `payload` minus one (`0` for an empty world).
pub fn index_before_change(payload: &[u8]) -> u64 {
    let v: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
    let entries = match v {
        Value::Array(a) => a,
        o @ Value::Object(_) => vec![o],
        _ => Vec::new(),
    };
    entries
        .iter()
        .filter(|e| e["Key"].as_str().is_some_and(|k| k.ends_with(".json")))
        .filter_map(|e| e["ModifyIndex"].as_u64())
        .max()
        .map_or(0, |m| m - 1)
}

/// A `key` watch payload: app 0 with its changed tag.
pub fn one_key() -> Vec<u8> {
    let body = serde_json::to_vec_pretty(&app(0, "1.0.1")).expect("json");
    serde_json::to_vec(&kv(app_key(0), &body, 100)).expect("json")
}

/// `n` apps of `instances` tasks each, opted in to tasks2consul (label `consul`), one port.
pub fn labelled_apps(n: usize, instances: u64) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"id": format!("/bench/svc-{i:04}"), "cmd": "sleep 1000", "cpus": 0.01,
                   "mem": 16, "instances": instances,
                   "labels": {"consul": "true", "public": "tag"},
                   "portDefinitions": [{"port": 0, "protocol": "tcp"}]})
        })
        .collect()
}

/// Fifty agent hosts, as a mid-size cluster.
pub fn hosts() -> Vec<String> {
    (1..=50)
        .map(|i| format!("10.0.{}.{}", i / 250, i % 250))
        .collect()
}

/// git with no user or system configuration, so the machine's settings change nothing.
pub fn git_cmd(home: &Path) -> Command {
    let mut c = Command::new("git");
    c.env("HOME", home)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.org")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.org");
    c
}

fn git(dir: &Path, home: &Path, args: &[&str]) -> Result<(), String> {
    let out = git_cmd(home)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("git {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A bare repository `jobs.git` under `root` with `n` pretty-printed Marathon app files in 50
/// team directories, each running its own image `registry.local:5000/team/svc<i>:1.0.0`.
pub fn jobs_repo(root: &Path, home: &Path, n: usize) -> Result<PathBuf, String> {
    std::fs::create_dir_all(home).map_err(|e| e.to_string())?;
    git(
        root,
        home,
        &["init", "-q", "--bare", "--initial-branch=main", "jobs.git"],
    )?;
    git(root, home, &["clone", "-q", "jobs.git", "seed"])?;
    let seed = root.join("seed");
    for i in 0..n {
        let dir = seed.join(format!("apps/team{}", i % 50));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let app = json!({
            "id": format!("/team{}/svc{i}", i % 50),
            "cpus": 0.25, "mem": 128.0, "instances": 2,
            "container": {"type": "DOCKER",
                          "docker": {"image": format!("registry.local:5000/team/svc{i}:1.0.0")}},
            "env": {"MODE": "prod"},
            "labels": {"consul": "true"}
        });
        let mut text = serde_json::to_string_pretty(&app).map_err(|e| e.to_string())?;
        text.push('\n');
        std::fs::write(dir.join(format!("svc{i}.json")), text).map_err(|e| e.to_string())?;
    }
    git(&seed, home, &["add", "--all"])?;
    git(&seed, home, &["commit", "-q", "-m", "seed"])?;
    git(&seed, home, &["push", "-q", "origin", "HEAD:main"])?;
    Ok(root.join("jobs.git"))
}

/// An `images/` keyprefix payload setting `tag` for services `ids` (bare tags, key names the
/// repository), at ModifyIndex `index`.
pub fn image_payload(ids: &[usize], tag: &str, index: u64) -> Vec<u8> {
    let entries: Vec<Value> = ids
        .iter()
        .map(|i| {
            kv(
                format!("images/registry.local:5000/team/svc{i}"),
                tag.as_bytes(),
                index,
            )
        })
        .collect();
    serde_json::to_vec(&entries).expect("json")
}

/// A git2consul keyprefix of at least `bytes` bytes: app files `apps/app-NNNNN.json` (as
/// [`keyprefix`] writes them, all at tag `tag`), then the branch's `.ref` written last. Returns
/// the payload and the number of apps.
pub fn large_app_keyprefix(bytes: usize, tag: &str) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(bytes + 4096);
    let mut apps = 0;
    let last = [(
        REF_KEY.to_string(),
        b"4b825dc642cb6eb9a060e54bf8d69288fbee4904".to_vec(),
        // Above every app's index: written after the files (a consistent snapshot).
        100 + (bytes / 64) as u64,
    )];
    devstack::payload::write_keyprefix(
        &mut out,
        bytes,
        |i| {
            apps += 1;
            let body = serde_json::to_vec_pretty(&app(i, tag)).expect("json");
            (app_key(i), body, 100 + i as u64)
        },
        &last,
    )
    .expect("writing to memory");
    (out, apps)
}

/// An `images/` keyprefix of at least `bytes` bytes setting `tag` for services 0, 1, ... (bare
/// tags, the key names the repository, as [`image_payload`]); a [`jobs_repo`] of `files` files
/// runs the first `files` of them, the rest are images no job runs. Returns the payload and the
/// entry count.
pub fn large_image_keyprefix(bytes: usize, tag: &str, index: u64) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(bytes + 4096);
    let (_, n) = devstack::payload::write_keyprefix(
        &mut out,
        bytes,
        |i| {
            (
                format!("images/registry.local:5000/team/svc{i}"),
                tag.as_bytes().to_vec(),
                index,
            )
        },
        &[],
    )
    .expect("writing to memory");
    (out, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written entries decode as the agent's do, and reach the requested size.
    #[test]
    fn sized_payloads_decode_as_agent_payloads() {
        let (p, n) = large_image_keyprefix(10_000, "2.0.0", 7);
        assert!(p.len() >= 10_000 && p.len() < 10_300, "{}", p.len());
        let pairs = watch::decode_kv(&p).unwrap();
        assert_eq!(pairs.len(), n);
        assert_eq!(pairs[3].key, "images/registry.local:5000/team/svc3");
        assert_eq!(pairs[3].value.as_deref(), Some(&b"2.0.0"[..]));
        assert_eq!(pairs[3].modify_index, 7);
        let (p, n) = large_app_keyprefix(20_000, "1.0.0");
        let pairs = watch::decode_kv(&p).unwrap();
        assert_eq!(pairs.len(), n + 1, "the apps and the .ref");
        assert_eq!(pairs[n].key, REF_KEY);
        let app: Value = serde_json::from_slice(pairs[1].value.as_deref().unwrap()).unwrap();
        assert_eq!(app, super::app(1, "1.0.0"));
    }

    #[test]
    fn keyprefix_has_ref_last_written_and_one_change() {
        let v: Vec<Value> = serde_json::from_slice(&keyprefix(3)).unwrap();
        assert_eq!(v.len(), 4);
        let max = v.iter().map(|e| e["ModifyIndex"].as_u64().unwrap()).max();
        let r = v.iter().find(|e| e["Key"] == REF_KEY).unwrap();
        assert_eq!(r["ModifyIndex"].as_u64(), max);
        let decoded = watch::decode_kv(&keyprefix(3)).unwrap();
        let app0 = decoded.iter().find(|k| k.key == app_key(0)).unwrap();
        let app0: Value = serde_json::from_slice(app0.value.as_deref().unwrap()).unwrap();
        assert!(app0["container"]["docker"]["image"]
            .as_str()
            .unwrap()
            .ends_with(":1.0.1"));
    }

    /// The indexed baseline's state selects exactly the changed app (git2consul wrote it last).
    #[test]
    fn state_before_the_change_selects_only_app_0() {
        let p = keyprefix(5);
        let last = index_before_change(&p);
        let v: Vec<Value> = serde_json::from_slice(&p).unwrap();
        let newer: Vec<&str> = v
            .iter()
            .filter(|e| e["ModifyIndex"].as_u64().unwrap() > last)
            .map(|e| e["Key"].as_str().unwrap())
            .collect();
        assert_eq!(newer, vec![REF_KEY, app_key(0).as_str()], "sorted by key");
        assert_eq!(index_before_change(&one_key()), 99);
        assert_eq!(index_before_change(b"null"), 0);
    }
}
