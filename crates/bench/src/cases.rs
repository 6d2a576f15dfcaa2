//! The benchmark cases of issue 8: for each, the contestants (shipwatch, the baselines, the
//! floor) and how to prepare a fresh world for one run of each (new devstack doubles, seeded).

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use devstack::consul::{Consul, ConsulOptions};
use devstack::marathon::{Marathon, MarathonOptions};
use serde_json::Value;

use crate::payloads;
use crate::proc::{self, End, Outcome, Spec};
use crate::tools::Tools;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Shipwatch,
    Baseline,
    Floor,
}

/// The world of one run: the process to measure, the doubles it talks to (their counters are
/// diffed around the run) and how to judge the result.
pub struct Prepared {
    pub spec: Spec,
    pub marathon: Option<Marathon>,
    pub consul: Option<Consul>,
    pub check: Check,
}

pub type Check = Box<dyn Fn(&Prepared, &Outcome) -> String>;
/// Builds a fresh world; the argument is the timeout for any unmeasured setup run.
pub type Prepare = Box<dyn Fn(Duration) -> Result<Prepared, String>>;

pub struct Contestant {
    pub label: String,
    pub kind: Kind,
    /// `Err(why)`: printed as `skipped: why`.
    pub prepare: Result<Prepare, String>,
}

pub struct Case {
    pub id: &'static str,
    pub title: String,
    pub contestants: Vec<Contestant>,
}

/// Builds the command for a contestant once the doubles' URLs are known (marathon, consul).
pub type MakeSpec = Rc<dyn Fn(&str, &str) -> Spec>;

const APP0: &str = "/bench/app-00000";

pub fn marathon(seed: Vec<Value>) -> Result<Marathon, String> {
    let m = Marathon::start(MarathonOptions {
        deploy_duration: Duration::ZERO,
        hosts: payloads::hosts(),
        ..Default::default()
    })
    .map_err(|e| format!("marathon double: {e}"))?;
    if !seed.is_empty() {
        m.seed_apps(seed);
    }
    Ok(m)
}

pub fn consul() -> Result<Consul, String> {
    Consul::start(ConsulOptions::default()).map_err(|e| format!("consul double: {e}"))
}

/// `ok`, or why not: a failed exit with the last line of stderr.
pub fn exit_problem(o: &Outcome) -> Option<String> {
    match o.end {
        End::Code(0) => None,
        End::Code(c) => Some(format!("exit {c}: {}", o.stderr_tail())),
        End::Signal(s) => Some(format!("killed by signal {s}")),
        End::TimedOut => Some("timed out".into()),
    }
}

fn floor(tools: &Tools, stdin: &Arc<Vec<u8>>) -> Vec<Contestant> {
    let mut v = Vec::new();
    let cat = tools.cat.clone().map(|cat| {
        let stdin = Arc::clone(stdin);
        Box::new(move |_: Duration| {
            Ok(Prepared {
                spec: Spec::new(&cat, Arc::clone(&stdin)).discard_stdout(),
                marathon: None,
                consul: None,
                check: Box::new(|_, o| exit_problem(o).unwrap_or_else(|| "ok".into())),
            })
        }) as Prepare
    });
    v.push(Contestant {
        label: "floor: cat > /dev/null".into(),
        kind: Kind::Floor,
        prepare: cat,
    });
    v
}

fn rust_floor(tools: &Tools, stdin: &Arc<Vec<u8>>) -> Contestant {
    let stdin = Arc::clone(stdin);
    Contestant {
        label: "floor: Rust no-op (bench --noop)".into(),
        kind: Kind::Floor,
        prepare: tools.noop.clone().map(|exe| {
            Box::new(move |_: Duration| {
                Ok(Prepared {
                    spec: Spec::new(&exe, Arc::clone(&stdin)).arg("--noop"),
                    marathon: None,
                    consul: None,
                    check: Box::new(|_, o| exit_problem(o).unwrap_or_else(|| "ok".into())),
                })
            }) as Prepare
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// kv2jobs family: keyprefix of app configs -> Marathon

/// A baseline script run by `interpreter`; its environment comes from the world's two
/// addresses (Marathon and, per case, Consul or the indexed baseline's state file).
fn script(
    tools: &Tools,
    interpreter: &Result<PathBuf, String>,
    name: &str,
    env: fn(&str, &str) -> Vec<(&'static str, String)>,
) -> Result<MakeSpec, String> {
    let interpreter = interpreter.clone()?;
    let script = tools.baseline(name)?;
    Ok(Rc::new(move |a: &str, b: &str| {
        env(a, b).into_iter().fold(
            Spec::new(&interpreter, Arc::new(Vec::new())).arg(&script),
            |spec, (k, v)| spec.env(k, v),
        )
    }) as MakeSpec)
}

/// kv2jobs against the Marathon at the first address, the payloads' `--prefix`.
pub fn kv2jobs_spec(tools: &Tools) -> Result<MakeSpec, String> {
    tools.kv2jobs.clone().map(|bin| {
        Rc::new(move |m: &str, _: &str| {
            Spec::new(&bin, Arc::new(Vec::new())).args([
                "--marathon",
                m,
                "--prefix",
                payloads::KV_PREFIX,
                "--output",
                "json",
            ])
        }) as MakeSpec
    })
}

/// The three ways to push job configs to Marathon, each as a command builder.
fn kv_contestants(tools: &Tools) -> Vec<(String, Kind, Result<MakeSpec, String>)> {
    let kv2jobs = kv2jobs_spec(tools);
    let bash = script(tools, &tools.bash, "kv2marathon.sh", |m, _| {
        vec![("MARATHON_URL", m.into())]
    });
    let indexed = script(tools, &tools.bash, "kv2marathon-indexed.sh", |m, state| {
        vec![("MARATHON_URL", m.into()), ("STATE_FILE", state.into())]
    });
    let python = script(tools, &tools.python, "kv2marathon.py", |m, _| {
        vec![("MARATHON_URL", m.into())]
    });
    vec![
        ("shipwatch kv2jobs".into(), Kind::Shipwatch, kv2jobs),
        ("baseline bash+jq+curl".into(), Kind::Baseline, bash),
        (
            "baseline bash indexed (state file)".into(),
            Kind::Baseline,
            indexed,
        ),
        ("baseline python3 (stdlib)".into(), Kind::Baseline, python),
    ]
}

/// Marathon starts with apps `0..seeded` deployed at tag 1.0.0 (as kv2jobs left them); the
/// payload holds `n` configs with app 0 at 1.0.1. Done when Marathon holds `n` apps, app 0 at
/// 1.0.1.
fn kv_case(
    tools: &Tools,
    id: &'static str,
    title: String,
    stdin: Vec<u8>,
    seeded: usize,
    n: usize,
    with_rust_floor: bool,
) -> Case {
    let stdin = Arc::new(stdin);
    let mut contestants: Vec<Contestant> = kv_contestants(tools)
        .into_iter()
        .map(|(label, kind, make)| {
            let stdin = Arc::clone(&stdin);
            Contestant {
                label,
                kind,
                prepare: make.map(|make| {
                    Box::new(move |_: Duration| {
                        let seed = (0..seeded).map(|i| payloads::deployed_app(i, "1.0.0"));
                        let m = marathon(seed.collect())?;
                        // The indexed baseline's state: everything before the change applied
                        // (nothing, for a first deploy). Other contestants ignore it.
                        let state = state_file(if seeded == 0 {
                            0
                        } else {
                            payloads::index_before_change(&stdin)
                        })?;
                        let mut spec = make(&m.url(), &state.display().to_string());
                        spec.stdin = Arc::clone(&stdin);
                        Ok(Prepared {
                            spec,
                            marathon: Some(m),
                            consul: None,
                            check: Box::new(move |p, o| {
                                let _ = std::fs::remove_file(&state);
                                check_apps(p, o, n)
                            }),
                        })
                    }) as Prepare
                }),
            }
        })
        .collect();
    if seeded == n && n > 1 {
        // First: what the package runs (the ratios are to it); the cold kv2jobs row follows.
        contestants.insert(0, kv2jobs_cached(tools, &stdin, n));
    }
    contestants.extend(floor(tools, &stdin));
    if with_rust_floor {
        contestants.push(rust_floor(tools, &stdin));
    }
    Case {
        id,
        title,
        contestants,
    }
}

/// kv2jobs with `--cache-dir`, as it runs in production: its previous run (unmeasured, the
/// branch before the change, all apps as deployed) left its verdicts in the cache, as the
/// indexed baseline's previous runs left their index in its state file.
fn kv2jobs_cached(tools: &Tools, stdin: &Arc<Vec<u8>>, n: usize) -> Contestant {
    let stdin = Arc::clone(stdin);
    let before = Arc::new(payloads::keyprefix_changed(n, 0));
    let prepare = tools.kv2jobs.clone().map(|bin| {
        Box::new(move |setup: Duration| {
            let seed = (0..n).map(|i| payloads::deployed_app(i, "1.0.0"));
            let m = marathon(seed.collect())?;
            let dir = tempfile::tempdir().map_err(|e| format!("cache dir: {e}"))?;
            let spec = |stdin: &Arc<Vec<u8>>| {
                Spec::new(&bin, Arc::clone(stdin)).args([
                    "--marathon".into(),
                    m.url(),
                    "--prefix".into(),
                    payloads::KV_PREFIX.to_string(),
                    "--output".into(),
                    "json".into(),
                    "--cache-dir".into(),
                    dir.path().display().to_string(),
                ])
            };
            let warm = crate::proc::run(&spec(&before), setup)
                .map_err(|e| format!("kv2jobs warm-up: {e}"))?;
            if let Some(e) = exit_problem(&warm) {
                return Err(format!("kv2jobs warm-up: {e}"));
            }
            let spec = spec(&stdin);
            Ok(Prepared {
                spec,
                marathon: Some(m),
                consul: None,
                check: Box::new(move |p, o| {
                    let _ = &dir;
                    check_apps(p, o, n)
                }),
            })
        }) as Prepare
    });
    Contestant {
        label: "shipwatch kv2jobs --cache-dir".into(),
        kind: Kind::Shipwatch,
        prepare,
    }
}

/// A fresh state file for the indexed baseline holding `index`.
fn state_file(index: u64) -> Result<std::path::PathBuf, String> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "shipwatch-bench-{}-{}.state",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&path, format!("{index}\n")).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

fn check_apps(p: &Prepared, o: &Outcome, n: usize) -> String {
    if let Some(e) = exit_problem(o) {
        return e;
    }
    let Some(m) = &p.marathon else {
        return "ok".into();
    };
    let count = m.apps().len();
    let image = m
        .app(APP0)
        .map(|a| {
            let a = a.get("app").cloned().unwrap_or(a);
            a["container"]["docker"]["image"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default();
    if count != n {
        format!("WRONG: {count} apps in Marathon, want {n}")
    } else if !image.ends_with(":1.0.1") {
        format!("WRONG: {APP0} runs {image:?}, want tag 1.0.1")
    } else {
        "ok".into()
    }
}

pub fn one_key(tools: &Tools) -> Case {
    kv_case(
        tools,
        "one-key",
        "one key payload (1 app changed; handler overhead)".into(),
        payloads::one_key(),
        1,
        1,
        true,
    )
}

pub fn keyprefix(tools: &Tools, n: usize) -> Case {
    kv_case(
        tools,
        if n >= 10_000 {
            "keyprefix-10k"
        } else {
            "keyprefix-1k"
        },
        format!("keyprefix of {} apps, 1 changed", thousands(n)),
        payloads::keyprefix(n),
        n,
        n,
        false,
    )
}

pub fn first_deploy(tools: &Tools, n: usize) -> Case {
    kv_case(
        tools,
        "first-deploy-1k",
        format!("first deploy of {} apps", thousands(n)),
        payloads::keyprefix(n),
        0,
        n,
        false,
    )
}

/// Issue 13 item 3: a base-image bump of `changed` of `n` deployed apps against a Marathon with
/// `--max_running_deployments` 100 whose deployments take 50 ms. Reports, besides the
/// requests and writes columns, the deployments started and the writes Marathon refused
/// (403 at the limit; a bulk or app refused for another reason counts too).
pub fn deploy_limit(tools: &Tools, n: usize, changed: usize) -> Case {
    let stdin = Arc::new(payloads::keyprefix_changed(n, changed));
    let contestants = kv_contestants(tools)
        .into_iter()
        .map(|(label, kind, make)| {
            let stdin = Arc::clone(&stdin);
            Contestant {
                label,
                kind,
                prepare: make.map(|make| {
                    Box::new(move |_: Duration| {
                        let m = Marathon::start(MarathonOptions {
                            deploy_duration: Duration::from_millis(50),
                            max_running_deployments: 100,
                            hosts: payloads::hosts(),
                            ..Default::default()
                        })
                        .map_err(|e| format!("marathon double: {e}"))?;
                        m.seed_apps((0..n).map(|i| payloads::deployed_app(i, "1.0.0")).collect());
                        let state = state_file(99 + n as u64)?;
                        let mut spec = make(&m.url(), &state.display().to_string());
                        spec.stdin = Arc::clone(&stdin);
                        Ok(Prepared {
                            spec,
                            marathon: Some(m),
                            consul: None,
                            check: Box::new(move |p, o| {
                                let _ = std::fs::remove_file(&state);
                                check_bump(p, o, n, changed)
                            }),
                        })
                    }) as Prepare
                }),
            }
        })
        .collect();
    Case {
        id: "deploy-limit",
        title: format!(
            "base-image bump of {} of {} apps, max_running_deployments 100",
            thousands(changed),
            thousands(n)
        ),
        contestants,
    }
}

/// `ok`/`WRONG` (every changed app at 1.0.1, no other app touched), then the deployments the
/// run started and the writes Marathon refused (the world is fresh: its counters are the run's).
fn check_bump(p: &Prepared, o: &Outcome, n: usize, changed: usize) -> String {
    let Some(m) = &p.marathon else {
        return exit_problem(o).unwrap_or_else(|| "ok".into());
    };
    let apps = m.apps();
    let bumped = apps
        .iter()
        .filter(|a| {
            a["container"]["docker"]["image"]
                .as_str()
                .is_some_and(|i| i.ends_with(":1.0.1"))
        })
        .count();
    let deployments = m.deployment_count();
    let refused = m.write_count().saturating_sub(deployments);
    let verdict = match exit_problem(o) {
        Some(e) => e,
        None if apps.len() != n || bumped != changed => "WRONG".into(),
        None => "ok".into(),
    };
    format!(
        "{verdict}: {}/{} changed apps updated; {deployments} deployments started; {refused} writes refused",
        thousands(bumped),
        thousands(changed)
    )
}

// ---------------------------------------------------------------------------------------------
// tasks2consul: Marathon tasks -> Consul catalog

pub const T2C_APPS: usize = 1_000;
pub const T2C_INSTANCES: u64 = 10;
pub const T2C_CHANGED: usize = 10;

/// tasks2consul (catalog mode) against the Marathon and Consul at the two addresses.
pub fn tasks2consul_spec(tools: &Tools) -> Result<MakeSpec, String> {
    tools.tasks2consul.clone().map(|bin| {
        Rc::new(move |m: &str, c: &str| {
            Spec::new(&bin, Arc::new(Vec::new())).args([
                "--marathon",
                m,
                "--consul",
                c,
                "--mode",
                "catalog",
                "--output",
                "json",
            ])
        }) as MakeSpec
    })
}

fn t2c_contestants(tools: &Tools) -> Vec<(String, Kind, Result<MakeSpec, String>)> {
    let shipwatch = tasks2consul_spec(tools);
    let python = script(tools, &tools.python, "tasks2consul.py", |m, c| {
        vec![("MARATHON_URL", m.into()), ("CONSUL_HTTP_ADDR", c.into())]
    });
    vec![
        ("shipwatch tasks2consul".into(), Kind::Shipwatch, shipwatch),
        ("baseline python3 (stdlib)".into(), Kind::Baseline, python),
    ]
}

/// `changed == 0`: the first full sync into an empty catalog. Otherwise the contestant first
/// syncs (unmeasured), then `changed` tasks fail and Marathon replaces them, then the measured
/// run syncs again.
pub fn tasks2consul(tools: &Tools, changed: usize) -> Case {
    // An event watch payload with no events: "something changed, sync everything".
    let stdin = Arc::new(b"[]".to_vec());
    let mut contestants: Vec<Contestant> = t2c_contestants(tools)
        .into_iter()
        .map(|(label, kind, make)| {
            let stdin = Arc::clone(&stdin);
            Contestant {
                label,
                kind,
                prepare: make.map(|make| {
                    Box::new(move |setup_timeout: Duration| {
                        let m = marathon(payloads::labelled_apps(T2C_APPS, T2C_INSTANCES))?;
                        let c = consul()?;
                        let mut spec = make(&m.url(), &c.url());
                        spec.stdin = Arc::clone(&stdin);
                        if changed > 0 {
                            let o = proc::run(&spec, setup_timeout)
                                .map_err(|e| format!("setup sync: {e}"))?;
                            if let Some(e) = exit_problem(&o) {
                                return Err(format!("setup sync: {e}"));
                            }
                            fail_tasks(&m, changed);
                        }
                        Ok(Prepared {
                            spec,
                            marathon: Some(m),
                            consul: Some(c),
                            check: Box::new(check_catalog),
                        })
                    }) as Prepare
                }),
            }
        })
        .collect();
    contestants.extend(floor(tools, &stdin));
    let total = T2C_APPS * T2C_INSTANCES as usize;
    Case {
        id: if changed == 0 {
            "tasks2consul-first"
        } else {
            "tasks2consul-changed"
        },
        title: if changed == 0 {
            format!("tasks2consul first full sync, {} tasks", thousands(total))
        } else {
            format!(
                "tasks2consul sync, {} tasks, {changed} replaced",
                thousands(total)
            )
        },
        contestants,
    }
}

/// The first task of `n` apps spread over the list fails; Marathon starts a replacement.
fn fail_tasks(m: &Marathon, n: usize) {
    let apps = m.apps();
    let step = (apps.len() / n.max(1)).max(1);
    for a in apps.iter().step_by(step).take(n) {
        if let Some(t) = a["tasks"][0]["id"].as_str() {
            m.kill_task(t, "TASK_FAILED");
        }
    }
}

/// The catalog must hold every running task and nothing else: registrations whose service ID
/// names no running task are stale (HAProxy would route to a dead task).
pub fn check_catalog(p: &Prepared, o: &Outcome) -> String {
    if let Some(e) = exit_problem(o) {
        return e;
    }
    let (Some(m), Some(c)) = (&p.marathon, &p.consul) else {
        return "ok".into();
    };
    let live: HashSet<String> = m
        .apps()
        .iter()
        .flat_map(|a| a["tasks"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["state"] == "TASK_RUNNING")
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    let mut covered = HashSet::new();
    let mut stale = 0;
    for s in c.catalog_services() {
        if s.service == "consul" {
            continue;
        }
        match s.id.split(':').find(|piece| live.contains(*piece)) {
            Some(t) => {
                covered.insert(t.to_string());
            }
            None => stale += 1,
        }
    }
    let missing = live.len() - covered.len();
    if stale == 0 && missing == 0 {
        "ok".into()
    } else {
        format!("WRONG: {stale} stale, {missing} missing registrations")
    }
}

// ---------------------------------------------------------------------------------------------
// tag2git: images/ keyprefix -> commits in a 5,000-file jobs repository

pub const REPO_FILES: usize = 5_000;

/// One bare repository and one warm workdir for both tag2git cases (created on first use).
pub struct Repo {
    _tmp: tempfile::TempDir,
    bare: PathBuf,
    home: PathBuf,
    workdir: PathBuf,
    /// Bumped per run so every run sets a tag no earlier run set.
    round: usize,
}

pub type SharedRepo = Rc<RefCell<Option<Repo>>>;

pub fn tag2git_spec(bin: &Path, r: &Repo, stdin: Vec<u8>) -> Spec {
    let mut s = Spec::new(bin, Arc::new(stdin))
        .arg("--repo")
        .arg(&r.bare)
        .arg("--workdir")
        .arg(&r.workdir)
        .args([
            "--branch",
            "main",
            "--key-prefix",
            "images/",
            "--author",
            "bench <bench@example.org>",
            "--output",
            "json",
        ]);
    for (k, v) in [
        ("HOME", r.home.to_string_lossy().to_string()),
        ("GIT_CONFIG_GLOBAL", "/dev/null".into()),
        ("GIT_CONFIG_NOSYSTEM", "1".into()),
        ("GIT_COMMITTER_NAME", "bench".into()),
        ("GIT_COMMITTER_EMAIL", "bench@example.org".into()),
    ] {
        s = s.env(k, v);
    }
    s
}

pub fn head(r: &Repo) -> String {
    payloads::git_cmd(&r.home)
        .arg("--git-dir")
        .arg(&r.bare)
        .args(["rev-parse", "main"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn ensure_repo(shared: &SharedRepo, bin: &Path, timeout: Duration) -> Result<(), String> {
    if shared.borrow().is_some() {
        return Ok(());
    }
    let tmp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let home = tmp.path().join("home");
    let bare = payloads::jobs_repo(tmp.path(), &home, REPO_FILES)?;
    let repo = Repo {
        workdir: tmp.path().join("workdir"),
        _tmp: tmp,
        bare,
        home,
        round: 0,
    };
    // Warm the workdir (the clone), as a long-running agent's workdir is.
    let o = proc::run(
        &tag2git_spec(bin, &repo, payloads::image_payload(&[1], "0.9.0", 10)),
        timeout,
    )
    .map_err(|e| format!("tag2git warm-up: {e}"))?;
    if let Some(e) = exit_problem(&o) {
        return Err(format!("tag2git warm-up: {e}"));
    }
    *shared.borrow_mut() = Some(repo);
    Ok(())
}

/// `ok (1 commit pushed)` when the run exited 0 and moved `main` of the shared repository
/// away from `before`.
pub fn check_pushed(shared: SharedRepo, before: String) -> Check {
    Box::new(move |_, o| {
        if let Some(e) = exit_problem(o) {
            return e;
        }
        let after = shared.borrow().as_ref().map(head).unwrap_or_default();
        if after != before && !after.is_empty() {
            "ok (1 commit pushed)".into()
        } else {
            "WRONG: nothing pushed".into()
        }
    })
}

/// `images` services get a new tag per run (one commit each run).
pub fn tag2git(tools: &Tools, shared: &SharedRepo, images: usize) -> Case {
    let ids: Vec<usize> = (0..images).map(|i| (i * 7 + 42) % REPO_FILES).collect();
    let floor_stdin = Arc::new(payloads::image_payload(&ids, "1.1.0", 1001));
    let prepare = tools.tag2git.clone().and_then(|bin| {
        tools.git.clone()?;
        let shared = Rc::clone(shared);
        Ok(Box::new(move |timeout: Duration| {
            ensure_repo(&shared, &bin, timeout)?;
            let mut guard = shared.borrow_mut();
            let r = guard.as_mut().ok_or("no repository")?;
            r.round += 1;
            let tag = format!("1.{}.0", r.round);
            let stdin = payloads::image_payload(&ids, &tag, 1000 + r.round as u64);
            let before = head(r);
            let spec = tag2git_spec(&bin, r, stdin);
            Ok(Prepared {
                spec,
                marathon: None,
                consul: None,
                check: check_pushed(Rc::clone(&shared), before),
            })
        }) as Prepare)
    });
    let mut contestants = vec![
        Contestant {
            label: "shipwatch tag2git".into(),
            kind: Kind::Shipwatch,
            prepare,
        },
        Contestant {
            label: "baseline".into(),
            kind: Kind::Baseline,
            prepare: Err("no baseline (no common operator script edits job files in Git)".into()),
        },
    ];
    contestants.extend(floor(tools, &floor_stdin));
    Case {
        id: if images == 1 {
            "tag2git-one"
        } else {
            "tag2git-500"
        },
        title: format!(
            "tag2git, {} changed in a {}-file repo",
            if images == 1 {
                "1 image".to_string()
            } else {
                format!("{images} images")
            },
            thousands(REPO_FILES)
        ),
        contestants,
    }
}

/// `10000` -> `10,000`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let groups: Vec<&str> = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|g| std::str::from_utf8(g).unwrap_or_default())
        .collect();
    groups.join(",")
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_separator() {
        assert_eq!(super::thousands(5), "5");
        assert_eq!(super::thousands(1_000), "1,000");
        assert_eq!(super::thousands(10_000), "10,000");
        assert_eq!(super::thousands(1_234_567), "1,234,567");
    }
}
