//! Waiting for git2consul (issue 12 item 3): when files of a branch are newer than its `.ref`,
//! git2consul is mid-sync, or died after writing files, or someone edited a key by hand. Instead
//! of skipping forever (exit 0), kv2jobs waits for the `.ref` to move with a Consul blocking
//! query on that key (`GET /v1/kv/<ref>?index=N&wait=...`, api-docs/features/blocking.mdx), then
//! re-reads the prefix and acts on the consistent snapshot; a `.ref` that does not move within
//! `--ref-wait` ends the run with exit 75 and a message naming the newer keys.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use consul::{Consul, ConsulError, KvPair};
use runtime::{stop, Deadline};

use crate::config::{Snapshot, Stale};

/// How the wait ended.
pub enum Settled {
    /// No file is newer than its `.ref` (any more): act on these pairs. `index` is the
    /// `X-Consul-Index` of the re-read (`None` when the payload was consistent as delivered).
    Consistent {
        pairs: Vec<KvPair>,
        index: Option<u64>,
    },
    /// `--ref-wait` ran out: the files still newer than their `.ref`.
    Stuck(Vec<Stale>),
    /// A stop signal arrived while waiting.
    Stopped,
    /// Consul could not be asked.
    Failed(ConsulError),
}

/// The longest common prefix of the payload's keys: what the watch delivered is under it, so a
/// re-read of it is within the watch's scope (a watch on `jobs/` holding only `jobs/main…` keys
/// re-reads `jobs/main`).
pub fn common_prefix(pairs: &[KvPair]) -> String {
    let mut it = pairs.iter().map(|p| p.key.as_str());
    let Some(first) = it.next() else {
        return String::new();
    };
    let mut len = first.len();
    for k in it {
        len = first
            .bytes()
            .zip(k.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count();
    }
    while !first.is_char_boundary(len) {
        len -= 1;
    }
    first[..len].to_string()
}

/// Waits (up to `wait`, within the deadline) until no file under a branch overlapping `prefix`
/// is newer than that branch's `.ref`.
pub fn settle(
    pairs: Vec<KvPair>,
    prefix: &str,
    wait: Duration,
    consul: Option<Arc<Consul>>,
    deadline: Deadline,
) -> Settled {
    // Leave a quarter of what is left of --timeout for the run itself (and the blocking
    // query's jitter), so a long --ref-wait ends as "not moved", not as a timed-out request.
    let until = Instant::now() + wait.min(deadline.remaining() * 3 / 4);
    let scope = common_prefix(&pairs);
    let mut pairs = pairs;
    let mut index = None;
    loop {
        let stale = Snapshot::of(&pairs, prefix, None).stale;
        let Some(first) = stale.first().cloned() else {
            return Settled::Consistent { pairs, index };
        };
        let now = Instant::now();
        let Some(consul) = consul.as_ref().filter(|_| now < until) else {
            return Settled::Stuck(stale);
        };
        log::info!(
            "{} file(s) newer than {} (ModifyIndex {}): waiting up to {:?} for git2consul to write it",
            stale.len(),
            first.ref_key,
            first.ref_index,
            until - now
        );
        let asked = Instant::now();
        let moved = match blocking_get(
            Arc::clone(consul),
            &first.ref_key,
            first.ref_index.max(1),
            until - now,
        ) {
            None => return Settled::Stopped,
            Some(Err(e)) => return Settled::Failed(e),
            // Gone, or rewritten: either way the snapshot changed; read it again.
            Some(Ok((None, _))) => true,
            Some(Ok((Some(r), _))) => r.modify_index > first.ref_index,
        };
        if moved {
            match consul.kv_list(&scope, None) {
                Ok((p, i)) => {
                    pairs = p;
                    index = Some(i);
                }
                Err(e) => return Settled::Failed(e),
            }
        } else if asked.elapsed() < Duration::from_millis(100)
            && !stop::sleep(Duration::from_millis(100))
        {
            // An unchanged answer that came back at once: never a hot loop.
            return Settled::Stopped;
        }
    }
}

/// One blocking read of `key`, in a thread so that a stop signal ends the wait at once
/// (`None`); the abandoned request ends with the process.
fn blocking_get(
    consul: Arc<Consul>,
    key: &str,
    index: u64,
    wait: Duration,
) -> Option<Result<(Option<KvPair>, u64), ConsulError>> {
    let (tx, rx) = mpsc::channel();
    let key = key.to_string();
    std::thread::Builder::new()
        .name("ref-wait".into())
        .spawn(move || {
            let _ = tx.send(consul.kv_get_blocking(&key, index, wait));
        })
        .ok()?;
    loop {
        if stop::requested() {
            return None;
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(r) => return Some(r),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                return Some(Err(ConsulError::Unexpected {
                    what: "blocking read".into(),
                    reason: "the reading thread ended without an answer".into(),
                }))
            }
        }
    }
}

/// The message for a `.ref` that did not move: the newer keys (capped) and the likely causes.
pub fn stuck_message(stale: &[Stale], waited: Duration) -> String {
    let refs: std::collections::BTreeSet<String> = stale
        .iter()
        .map(|s| format!("{} (ModifyIndex {})", s.ref_key, s.ref_index))
        .collect();
    format!(
        "git2consul snapshot incomplete: {} key(s) newer than {} after waiting {:?} (--ref-wait): {}. \
         Likely a hand edit in KV (git2consul never reverts those: restore the key from Git or \
         commit the change) or a git2consul that stopped after writing files (check its log; it \
         writes the .ref last); nothing was deployed or deleted",
        stale.len(),
        runtime::text::capped_list(&refs),
        waited,
        runtime::text::capped_list(stale.iter().map(|s| format!("{} ({})", s.key, s.index)))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str) -> KvPair {
        KvPair {
            key: key.into(),
            create_index: 1,
            modify_index: 1,
            lock_index: 0,
            flags: 0,
            value: None,
            session: String::new(),
        }
    }

    #[test]
    fn the_re_read_stays_within_what_was_delivered() {
        assert_eq!(
            common_prefix(&[kv("jobs/main.ref"), kv("jobs/main/a.json")]),
            "jobs/main"
        );
        assert_eq!(
            common_prefix(&[kv("jobs/main.ref"), kv("jobs/dev/a.json")]),
            "jobs/"
        );
        assert_eq!(common_prefix(&[]), "");
        assert_eq!(common_prefix(&[kv("a/é"), kv("a/è")]), "a/");
    }

    #[test]
    fn the_stuck_message_is_bounded_and_names_the_causes() {
        let stale: Vec<Stale> = (0..1000)
            .map(|i| Stale {
                key: format!("jobs/main/app-{i}.json"),
                index: 100 + i,
                ref_key: "jobs/main.ref".into(),
                ref_index: 50,
            })
            .collect();
        let m = stuck_message(&stale, Duration::from_secs(60));
        assert!(m.len() < 2000, "{}", m.len());
        assert!(m.contains("and 980 more"), "{m}");
        assert!(m.contains("hand edit in KV"), "{m}");
        assert!(m.contains("1000 key(s) newer than jobs/main.ref"), "{m}");
    }
}
