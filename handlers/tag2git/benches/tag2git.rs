//! Benchmark (issue 4): one tag update in a repository of 5,000 job files, and a keyprefix payload of
//! 500 changed images in one run, each through the real binary against a local bare repository
//! (fetch, scan, edit, commit, push). Prints the median of a few runs; a 50-file repository gives the
//! baseline that shows what the repository size adds (the file scan).
//!
//! Run: `cargo bench -p tag2git` (about a minute).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

const RUNS: usize = 5;

fn git(dir: &Path, home: &Path, args: &[&str]) {
    let out = env(Command::new("git").args(args).current_dir(dir), home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn env<'a>(cmd: &'a mut Command, home: &Path) -> &'a mut Command {
    cmd.env("HOME", home)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.org")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.org")
        .env("RUST_LOG", "warn")
}

/// A bare repository with `n` Marathon app files (pretty-printed, one image each) in 50 directories.
fn repo(root: &Path, n: usize) -> PathBuf {
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    git(
        root,
        &home,
        &["init", "-q", "--bare", "--initial-branch=main", "jobs.git"],
    );
    git(root, &home, &["clone", "-q", "jobs.git", "seed"]);
    let seed = root.join("seed");
    for i in 0..n {
        let dir = seed.join(format!("apps/team{}", i % 50));
        std::fs::create_dir_all(&dir).unwrap();
        let app = format!(
            "{{\n  \"id\": \"/team{}/svc{i}\",\n  \"cpus\": 0.25,\n  \"mem\": 128.0,\n  \"instances\": 2,\n  \"container\": {{\n    \"type\": \"DOCKER\",\n    \"docker\": {{ \"image\": \"registry.local:5000/team/svc{i}:1.0.0\" }}\n  }},\n  \"env\": {{ \"MODE\": \"prod\" }},\n  \"labels\": {{ \"consul\": \"true\" }}\n}}\n",
            i % 50
        );
        std::fs::write(dir.join(format!("svc{i}.json")), app).unwrap();
    }
    git(&seed, &home, &["add", "--all"]);
    git(&seed, &home, &["commit", "-q", "-m", "seed"]);
    git(&seed, &home, &["push", "-q", "origin", "HEAD:main"]);
    root.join("jobs.git")
}

fn kv(i: usize, tag: &str, idx: u64) -> String {
    let v = base64::engine::general_purpose::STANDARD.encode(tag);
    format!(
        r#"{{"Key":"images/registry.local:5000/team/svc{i}","CreateIndex":{idx},"ModifyIndex":{idx},"LockIndex":0,"Flags":0,"Value":"{v}","Session":""}}"#
    )
}

fn run(bare: &Path, workdir: &Path, home: &Path, payload: &str) -> Duration {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tag2git"));
    cmd.arg("--repo")
        .arg(bare)
        .arg("--workdir")
        .arg(workdir)
        .args(["--author", "bench <bench@example.org>", "--output", "json"]);
    env(&mut cmd, home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(payload.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"applied\""), "nothing applied: {stdout}");
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn one_update(files: usize) -> (Duration, Duration) {
    let tmp = tempfile::tempdir().unwrap();
    let bare = repo(tmp.path(), files);
    let home = tmp.path().join("home");
    let wd = tmp.path().join("wd");
    let first = run(&bare, &wd, &home, &kv(42, "1.0.1", 1));
    let times = (0..RUNS)
        .map(|r| {
            run(
                &bare,
                &wd,
                &home,
                &kv(42, &format!("1.1.{r}"), 10 + r as u64),
            )
        })
        .collect();
    (first, median(times))
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: skip the slow part there.
    if !std::env::args().any(|a| a == "--bench") {
        println!("tag2git bench: run with `cargo bench -p tag2git`");
        return;
    }
    let (first_small, small) = one_update(50);
    println!(
        "one tag update, 50 job files:      median {} of {RUNS} (first run incl. clone {})",
        ms(small),
        ms(first_small)
    );
    let (first_big, big) = one_update(5000);
    println!(
        "one tag update, 5,000 job files:   median {} of {RUNS} (first run incl. clone {})",
        ms(big),
        ms(first_big)
    );

    let tmp = tempfile::tempdir().unwrap();
    let bare = repo(tmp.path(), 5000);
    let home = tmp.path().join("home");
    let wd = tmp.path().join("wd");
    run(&bare, &wd, &home, &kv(0, "1.0.1", 1));
    let rounds = 3;
    let mut times = Vec::new();
    for r in 0..rounds {
        let entries: Vec<String> = (0..500)
            .map(|i| kv(i * 10, &format!("2.{r}.0"), 100 + r as u64))
            .collect();
        times.push(run(&bare, &wd, &home, &format!("[{}]", entries.join(","))));
    }
    println!(
        "keyprefix of 500 changed images, 5,000 job files: median {} of {rounds} (one commit each)",
        ms(median(times))
    );
}
