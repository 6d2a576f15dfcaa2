//! Faults: remotes that fail, slow down, reset or refuse, a git remote that rejects pushes,
//! disappears or races with concurrent writers. Each case: the documented exit code while the
//! fault lasts, nothing half-written, then one replay after the fault clears converges to the
//! desired state with nothing lost or duplicated.

use devstack::consul::{Consul, ConsulOptions};
use devstack::http::Fault;

use crate::ensure;
use crate::gitrepo::{kv, payload, Repo, API_KEY, IMAGES};
use crate::harness::{Check, Outcome, Report};

/// The state a converged tag2git run leaves: the file holds `image`, and exactly one commit
/// carries the key with that ModifyIndex.
fn converged(repo: &Repo, file: &str, image: &str, key: &str, index: u64) -> Check {
    let text = repo.file(file);
    ensure!(
        text.contains(&format!("\"{image}\"")),
        "{file} does not hold {image}:\n{text}"
    );
    let keys = repo.trailer_values("Consul-Key");
    let n = keys.iter().filter(|k| *k == key).count();
    ensure!(
        n == 1,
        "key {key} appears in {n} commits' trailers (want exactly 1): {keys:?}"
    );
    let indexes = repo.trailer_values("Consul-Modify-Index");
    ensure!(
        indexes.iter().any(|i| *i == index.to_string()),
        "no commit carries Consul-Modify-Index {index}: {indexes:?}"
    );
    Ok(())
}

fn api_payload(tag: &str, index: u64) -> Vec<u8> {
    payload(&[kv(API_KEY, tag.as_bytes(), index)])
}

const API_FILE: &str = "marathon/sami/api.json";

/// Replays a payload after a fault cleared: exit 0, one commit, converged; a second replay
/// commits nothing.
fn replay_converges(repo: &Repo, body: &[u8], tag: &str, index: u64) -> Check {
    let before = repo.commit_count();
    let out = repo.tag2git(body.to_vec()).run();
    out.expect(0, &[])?;
    ensure!(
        repo.commit_count() == before + 1,
        "the replay made {} commits (want 1)\n{}",
        repo.commit_count() - before,
        out.show()
    );
    converged(
        repo,
        API_FILE,
        &format!("registry.local:5000/sami/api:{tag}"),
        API_KEY,
        index,
    )?;
    let again = repo.tag2git(body.to_vec()).run();
    again.expect(0, &[])?;
    ensure!(
        repo.commit_count() == before + 1,
        "a second replay committed again (duplicate)\n{}",
        again.show()
    );
    Ok(())
}

fn unchanged(repo: &Repo, before: &str, out: &Outcome) -> Check {
    ensure!(
        repo.refs() == before,
        "the remote changed during a failed run\n{}",
        out.show()
    );
    Ok(())
}

pub fn tag2git(r: &Report) {
    r.case("faults/tag2git/push-rejected-by-hook-then-replay", || {
        let repo = Repo::new();
        repo.install_rejecting_hook();
        repo.reject_all(true);
        let body = api_payload("1.5.0", 31);
        let before = repo.refs();
        let out = repo
            .tag2git(body.clone())
            .args(["--push-attempts", "3"])
            .run();
        r.faults(3);
        out.expect(75, &["push"])?;
        unchanged(&repo, &before, &out)?;
        repo.reject_all(false);
        replay_converges(&repo, &body, "1.5.0", 31)
    });

    r.case(
        "faults/tag2git/push-rejected-twice-then-accepted-in-one-run",
        || {
            let repo = Repo::new();
            repo.install_rejecting_hook();
            repo.reject_next(2);
            r.faults(2);
            let body = api_payload("1.5.1", 32);
            let before = repo.commit_count();
            let out = repo.tag2git(body).run();
            out.expect(0, &[])?;
            ensure!(
                repo.commit_count() == before + 1,
                "want one commit\n{}",
                out.show()
            );
            converged(
                &repo,
                API_FILE,
                "registry.local:5000/sami/api:1.5.1",
                API_KEY,
                32,
            )
        },
    );

    r.case(
        "faults/tag2git/push-rejected-then-replay-from-the-same-workdir",
        || {
            // The workdir keeps the commit that could not be pushed; the replay must neither push it
            // twice nor lose it.
            let repo = Repo::new();
            repo.install_rejecting_hook();
            repo.reject_all(true);
            let wd = repo.workdir();
            let body = api_payload("1.5.3", 34);
            let out = repo
                .tag2git_in(&wd, body.clone())
                .args(["--push-attempts", "2"])
                .run();
            r.faults(2);
            let doc = out.expect(75, &[])?;
            ensure!(
                doc["actions"].to_string().contains("\"failed\""),
                "a commit that was not pushed must be reported failed\n{}",
                out.show()
            );
            repo.reject_all(false);
            let before = repo.commit_count();
            repo.tag2git_in(&wd, body.clone()).run().expect(0, &[])?;
            ensure!(repo.commit_count() == before + 1, "want one commit");
            repo.tag2git_in(&wd, body).run().expect(0, &[])?;
            ensure!(repo.commit_count() == before + 1, "replay duplicated");
            converged(
                &repo,
                API_FILE,
                "registry.local:5000/sami/api:1.5.3",
                API_KEY,
                34,
            )
        },
    );

    r.case("faults/tag2git/remote-disappears-mid-run-at-push", || {
        // Clone and commit succeed, then the remote vanishes during the push.
        let repo = Repo::new();
        repo.install_rejecting_hook();
        repo.vanish_on_next_push();
        let wd = repo.workdir();
        let body = api_payload("1.5.4", 35);
        let out = repo
            .tag2git_in(&wd, body.clone())
            .args(["--push-attempts", "2"])
            .run();
        r.faults(1);
        let gone = !repo.bare.exists();
        repo.come_back();
        ensure!(gone, "the hook did not move the repository away");
        out.sane()?;
        ensure!(
            matches!(out.code, Some(69) | Some(75)),
            "want 69 (unreachable) or 75 (push failed)\n{}",
            out.show()
        );
        let before = repo.commit_count();
        repo.tag2git_in(&wd, body.clone()).run().expect(0, &[])?;
        ensure!(repo.commit_count() == before + 1, "want one commit");
        repo.tag2git(body).run().expect(0, &[])?;
        ensure!(repo.commit_count() == before + 1, "replay duplicated");
        converged(
            &repo,
            API_FILE,
            "registry.local:5000/sami/api:1.5.4",
            API_KEY,
            35,
        )
    });

    r.case("faults/tag2git/remote-disappears-then-returns", || {
        let repo = Repo::new();
        let moved = repo.tmp.path().join("moved-away.git");
        // A workdir that already has a clone: the remote vanishes between runs.
        let wd = repo.workdir();
        repo.tag2git_in(&wd, b"null".to_vec())
            .run()
            .expect(0, &[])?;
        std::fs::rename(&repo.bare, &moved).unwrap();
        r.faults(1);
        let body = api_payload("1.5.2", 33);
        let out = repo
            .tag2git_in(&wd, body.clone())
            .args(["--push-attempts", "2"])
            .run();
        let fresh = repo
            .tag2git(body.clone())
            .args(["--push-attempts", "2"])
            .run();
        std::fs::rename(&moved, &repo.bare).unwrap();
        out.expect(69, &["unreachable"])?;
        fresh.expect(69, &["unreachable"])?;
        // The kept workdir and a fresh one both converge.
        let before = repo.commit_count();
        repo.tag2git_in(&wd, body.clone()).run().expect(0, &[])?;
        ensure!(repo.commit_count() == before + 1, "want one commit");
        converged(
            &repo,
            API_FILE,
            "registry.local:5000/sami/api:1.5.2",
            API_KEY,
            33,
        )?;
        repo.tag2git(body).run().expect(0, &[])?;
        ensure!(
            repo.commit_count() == before + 1,
            "replay from a fresh workdir duplicated the commit"
        );
        Ok(())
    });

    r.case(
        "faults/tag2git/5-concurrent-writers-different-images",
        || {
            let repo = Repo::new();
            let before = repo.commit_count();
            let bodies: Vec<(usize, Vec<u8>)> = IMAGES
                .iter()
                .enumerate()
                .map(|(i, (key, _, _))| (i, payload(&[kv(key, b"9.9.9", 100 + i as u64)])))
                .collect();
            let runs = concurrently(&repo, &bodies);
            r.faults(5);
            for out in &runs {
                out.expect(0, &[])?;
            }
            ensure!(
                repo.commit_count() == before + 5,
                "want 5 commits, got {}",
                repo.commit_count() - before
            );
            for (i, (key, file, image)) in IMAGES.iter().enumerate() {
                let name = image.rsplit_once(':').unwrap().0;
                converged(&repo, file, &format!("{name}:9.9.9"), key, 100 + i as u64)?;
            }
            // Everyone replays at once: nothing more.
            let again = concurrently(&repo, &bodies);
            for out in &again {
                out.expect(0, &[])?;
            }
            ensure!(
                repo.commit_count() == before + 5,
                "concurrent replays committed again"
            );
            Ok(())
        },
    );

    r.case("faults/tag2git/5-concurrent-writers-same-payload", || {
        let repo = Repo::new();
        let before = repo.commit_count();
        let body = api_payload("2.0.0", 40);
        let bodies: Vec<(usize, Vec<u8>)> = (0..5).map(|i| (i, body.clone())).collect();
        let runs = concurrently(&repo, &bodies);
        r.faults(5);
        for out in &runs {
            out.expect(0, &[])?;
        }
        ensure!(
            repo.commit_count() == before + 1,
            "5 deliveries of one payload made {} commits (want 1)",
            repo.commit_count() - before
        );
        converged(
            &repo,
            API_FILE,
            "registry.local:5000/sami/api:2.0.0",
            API_KEY,
            40,
        )
    });

    r.case("faults/tag2git/human-push-between-runs-is-kept", || {
        let repo = Repo::new();
        repo.install_rejecting_hook();
        repo.reject_all(true);
        let body = api_payload("1.6.0", 50);
        let out = repo
            .tag2git(body.clone())
            .args(["--push-attempts", "1"])
            .run();
        r.faults(1);
        out.expect(75, &[])?;
        repo.reject_all(false);
        repo.human_commit("README.md", "jobs, edited by a human\n");
        replay_converges(&repo, &body, "1.6.0", 50)?;
        ensure!(
            repo.file("README.md") == "jobs, edited by a human\n",
            "the human's commit was lost"
        );
        Ok(())
    });

    lock_faults(r);
}

/// `--lock` against a Consul double that fails: transient errors are retried inside one run; an
/// unreachable Consul is exit 69 with nothing pushed; the replay converges.
fn lock_faults(r: &Report) {
    let transient: Vec<(&str, Fault)> = vec![
        ("500", status(500, "No cluster leader")),
        ("502", status(502, "Bad Gateway")),
        ("503", status(503, "rpc error: No cluster leader")),
        ("reset", Fault::Reset),
        ("slow", Fault::Delay(std::time::Duration::from_millis(1500))),
    ];
    for (name, fault) in transient {
        r.case(&format!("faults/tag2git/consul-lock-{name}-once"), || {
            let repo = Repo::new();
            let consul = Consul::start(ConsulOptions::default()).unwrap();
            consul.faults().fail_next(1, fault.clone());
            r.faults(1);
            let body = api_payload("1.7.0", 60);
            let before = repo.commit_count();
            let out = repo
                .tag2git(body)
                .args(["--lock", "shipwatch/tag2git/lock", "--consul"])
                .arg(consul.url())
                .run();
            out.expect(0, &[])?;
            ensure!(
                repo.commit_count() == before + 1,
                "want one commit\n{}",
                out.show()
            );
            converged(
                &repo,
                API_FILE,
                "registry.local:5000/sami/api:1.7.0",
                API_KEY,
                60,
            )
        });
    }
    r.case("faults/tag2git/consul-refuses-then-replay", || {
        let repo = Repo::new();
        let consul = Consul::start(ConsulOptions::default()).unwrap();
        consul.faults().set_refuse(true);
        r.faults(1);
        let body = api_payload("1.7.1", 61);
        let before = repo.refs();
        let lock = |body: Vec<u8>| {
            repo.tag2git(body)
                .args(["--lock", "shipwatch/tag2git/lock", "--consul"])
                .arg(consul.url())
                .run()
        };
        let out = lock(body.clone());
        out.expect(69, &["consul"])?;
        unchanged(&repo, &before, &out)?;
        consul.faults().set_refuse(false);
        let c0 = repo.commit_count();
        lock(body.clone()).expect(0, &[])?;
        ensure!(repo.commit_count() == c0 + 1, "want one commit");
        lock(body).expect(0, &[])?;
        ensure!(repo.commit_count() == c0 + 1, "replay duplicated");
        converged(
            &repo,
            API_FILE,
            "registry.local:5000/sami/api:1.7.1",
            API_KEY,
            61,
        )
    });
}

pub fn status(status: u16, body: &str) -> Fault {
    Fault::Status {
        status,
        body: body.to_string(),
    }
}

/// Starts every run at once (one workdir each) and waits for all.
fn concurrently(repo: &Repo, bodies: &[(usize, Vec<u8>)]) -> Vec<Outcome> {
    std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|(_, body)| {
                let inv = repo.tag2git(body.clone());
                s.spawn(move || inv.run())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}
