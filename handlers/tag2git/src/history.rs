//! What the branch history says was already applied: the trailer sets of tag2git's commits.
//!
//! A write in Consul is identified by its key, its ModifyIndex and its value. The index alone is
//! not enough: after a snapshot restore, a rebuilt cluster or a move to another datacenter,
//! ModifyIndex values start lower than those recorded, and comparing with the recorded high-water
//! mark would skip every new tag until the index passes it, possibly for days (issue 12 item 2).
//!
//! Rules (see the README, "Replays, manual pins, `--all`"):
//! - an entry is a replay when a commit records the same key, the same ModifyIndex and the same
//!   value (`Consul-Value`): it is skipped, so agent restarts never undo a tag pinned back by hand;
//! - a commit made before `Consul-Value` existed records only key and index: it matches an entry
//!   with the same key and index, whatever the value (within one cluster, one key's ModifyIndex
//!   names exactly one write);
//! - anything else is a new write and is applied, whatever its index; when its index is lower than
//!   the highest one recorded for the key, the run warns that the index went backwards.

use std::collections::HashMap;

use gitops::Trailer;

use crate::entries::Update;
use crate::message::{TRAILER_KEY, TRAILER_MODIFY_INDEX, TRAILER_VALUE};

/// One recorded write of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    index: u64,
    /// `None` for commits made before the `Consul-Value` trailer existed.
    value: Option<String>,
}

/// Recorded writes per Consul key.
#[derive(Debug, Default)]
pub struct History {
    by_key: HashMap<String, Vec<Record>>,
}

/// What the history says about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Never recorded with this key, index and value: apply it.
    New,
    /// New, but its index is lower than `highest`, the highest recorded for the key (a snapshot
    /// restore, or another cluster): apply it and warn.
    Backwards { highest: u64 },
    /// The same write is recorded (`legacy`: by a commit without `Consul-Value`): skip it.
    Recorded { legacy: bool },
}

impl History {
    /// Builds the history from trailers in `git log` order (each commit's trailers in message
    /// order). A `Consul-Key` starts a record; the `Consul-Modify-Index` and `Consul-Value` that
    /// follow it in the same commit complete it. Records without a valid index are ignored.
    pub fn from_trailers(trailers: &[Trailer]) -> History {
        let mut history = History::default();
        let mut current: Option<(&str, String, Option<u64>, Option<String>)> = None;
        let mut flush = |c: Option<(&str, String, Option<u64>, Option<String>)>| match c {
            Some((_, key, Some(index), value)) => history
                .by_key
                .entry(key)
                .or_default()
                .push(Record { index, value }),
            Some((commit, key, None, _)) => {
                log::debug!("ignoring {TRAILER_KEY} {key:?} without an index in {commit}")
            }
            None => {}
        };
        for t in trailers {
            let same_commit = current.as_ref().is_some_and(|c| c.0 == t.commit);
            if t.key.eq_ignore_ascii_case(TRAILER_KEY) {
                flush(current.take());
                current = Some((&t.commit, t.value.clone(), None, None));
            } else if !same_commit {
                log::debug!("ignoring unpaired trailer {} in {}", t.key, t.commit);
            } else if let Some(c) = current.as_mut() {
                if t.key.eq_ignore_ascii_case(TRAILER_MODIFY_INDEX) && c.2.is_none() {
                    c.2 = t.value.parse().ok();
                } else if t.key.eq_ignore_ascii_case(TRAILER_VALUE) && c.3.is_none() {
                    c.3 = Some(t.value.clone());
                }
            }
        }
        flush(current.take());
        history
    }

    /// Whether `u` was already applied, by the rules in the module doc.
    pub fn seen(&self, u: &Update) -> Seen {
        let Some(records) = self.by_key.get(u.key()) else {
            return Seen::New;
        };
        let value = u.reference();
        for r in records.iter().filter(|r| r.index == u.modify_index) {
            match &r.value {
                Some(v) if *v == value => return Seen::Recorded { legacy: false },
                None => return Seen::Recorded { legacy: true },
                Some(_) => {}
            }
        }
        match records.iter().map(|r| r.index).max() {
            Some(highest) if highest > u.modify_index => Seen::Backwards { highest },
            _ => Seen::New,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitops::imageref::ImageRef;

    fn t(commit: &str, key: &str, value: &str) -> Trailer {
        Trailer {
            commit: commit.into(),
            key: key.into(),
            value: value.into(),
        }
    }

    fn update(key: &str, index: u64, image: &str) -> Update {
        Update::new(key.into(), index, &ImageRef::parse(image).unwrap())
    }

    const K: &str = "images/sami/api";

    #[test]
    fn key_index_and_value_identify_a_write() {
        let h = History::from_trailers(&[
            t("c2", "Consul-Key", K),
            t("c2", "Consul-Modify-Index", "500"),
            t("c2", "Consul-Value", "docker.io/sami/api:2.0"),
            t("c2", "Consul-Index", "510"),
            t("c1", "Consul-Key", K),
            t("c1", "Consul-Modify-Index", "450"),
            t("c1", "Consul-Value", "docker.io/sami/api:1.9"),
        ]);
        assert_eq!(
            h.seen(&update(K, 500, "sami/api:2.0")),
            Seen::Recorded { legacy: false }
        );
        // An older write restored from a snapshot is still recognised.
        assert_eq!(
            h.seen(&update(K, 450, "docker.io/sami/api:1.9")),
            Seen::Recorded { legacy: false }
        );
        // After a restore: a new value at a lower index is applied, with a warning.
        assert_eq!(
            h.seen(&update(K, 120, "sami/api:2.1")),
            Seen::Backwards { highest: 500 }
        );
        // The same index with another value is another write.
        assert_eq!(
            h.seen(&update(K, 500, "sami/api:2.1")),
            Seen::New,
            "not backwards either"
        );
        assert_eq!(h.seen(&update(K, 501, "sami/api:2.1")), Seen::New);
        assert_eq!(h.seen(&update("images/other", 1, "other:1")), Seen::New);
    }

    #[test]
    fn commits_without_a_value_match_key_and_index() {
        let h = History::from_trailers(&[
            t("c1", "Consul-Key", K),
            t("c1", "Consul-Modify-Index", "101"),
            t("c1", "Consul-Index", "4242"),
        ]);
        assert_eq!(
            h.seen(&update(K, 101, "sami/api:anything")),
            Seen::Recorded { legacy: true }
        );
        assert_eq!(
            h.seen(&update(K, 100, "sami/api:1")),
            Seen::Backwards { highest: 101 }
        );
        assert_eq!(h.seen(&update(K, 102, "sami/api:1")), Seen::New);
    }

    #[test]
    fn trailers_pair_within_one_commit_only() {
        let h = History::from_trailers(&[
            t("c2", "Consul-Key", K),
            t("c1", "Consul-Modify-Index", "7"),
            t("c1", "Consul-Value", "docker.io/sami/api:1"),
            t("c0", "Consul-Key", "images/x"),
            t("c0", "Consul-Modify-Index", "not a number"),
        ]);
        assert!(h.by_key.is_empty(), "{h:?}");
    }
}
