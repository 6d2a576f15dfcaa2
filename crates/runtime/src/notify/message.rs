//! The text of a team's message: subject and body from templates with `{placeholder}`s.
//!
//! Placeholders: `{handler}`, `{team}`, `{result}` (`succeeded`, `FAILED` or `held back`),
//! `{applied}`, `{failed}`, `{held}` (skipped: held back by a guard, paused, not started),
//! `{count}`, `{consul_index}`, `{host}`, `{commit}` (the first known source commit),
//! `{actions}` (one block per action: status, kind, target, source, then its diff, capped),
//! `{errors}`, `{warnings}`. An unknown `{name}` is left as written.

use std::collections::BTreeMap;

use crate::{Action, ActionMeta, Status, Summary};

pub const DEFAULT_SUBJECT: &str =
    "[shipwatch] {handler} {result} for {team}: {applied} applied, {failed} failed, {held} held back";
pub const DEFAULT_BODY: &str =
    "{handler} on {host} (CONSUL_INDEX {consul_index}) for {team}: {result}\n\n{actions}{warnings}{errors}";

/// Lines of one action's detail (its field diff) a message carries.
const MAX_DETAIL_LINES: usize = 20;

/// Actions a message lists one by one; the rest are counted. A run over a large payload reports
/// an action per entry (a million for 100 MB of `images/` keys): listing them all would make a
/// message of that size, held several times over in memory (issue 13 item 5).
pub const MAX_LISTED_ACTIONS: usize = 100;

/// The facts a message is made of.
pub struct Facts<'a> {
    pub summary: &'a Summary,
    pub team: &'a str,
    pub actions: &'a [&'a Action],
    pub meta: &'a BTreeMap<String, ActionMeta>,
}

impl Facts<'_> {
    fn count(&self, s: Status) -> usize {
        self.actions.iter().filter(|a| a.status == s).count()
    }

    pub fn failed(&self) -> bool {
        self.count(Status::Failed) > 0
    }

    fn result(&self) -> &'static str {
        if self.failed() {
            "FAILED"
        } else if self.count(Status::Applied) == 0 && self.count(Status::Skipped) > 0 {
            "held back"
        } else {
            "succeeded"
        }
    }

    fn commit(&self) -> String {
        self.actions
            .iter()
            .find_map(|a| self.meta.get(&a.target).and_then(|m| m.commit.clone()))
            .unwrap_or_else(|| "unknown".into())
    }

    /// The actions a message lists, and how many more it only counts: all of them up to
    /// [`MAX_LISTED_ACTIONS`], in summary order; beyond, the failed and applied ones first (what
    /// a team must know), then the others.
    pub fn listed(&self) -> (Vec<&Action>, usize) {
        let all = self.actions;
        if all.len() <= MAX_LISTED_ACTIONS {
            return (all.to_vec(), 0);
        }
        let rank = |a: &Action| match a.status {
            Status::Failed => 0,
            Status::Applied => 1,
            _ => 2,
        };
        let listed: Vec<&Action> = (0..3)
            .flat_map(|r| all.iter().copied().filter(move |a| rank(a) == r))
            .take(MAX_LISTED_ACTIONS)
            .collect();
        (listed, all.len() - MAX_LISTED_ACTIONS)
    }

    fn actions_text(&self) -> String {
        let mut out = String::new();
        let (listed, more) = self.listed();
        for a in listed {
            out.push_str(&format!("{} {} {}", a.status.as_str(), a.kind, a.target));
            if let Some(m) = self.meta.get(&a.target) {
                match (&m.source, &m.commit) {
                    (Some(s), Some(c)) => out.push_str(&format!(" (from {s} at {c})")),
                    (Some(s), None) => out.push_str(&format!(" (from {s})")),
                    (None, Some(c)) => out.push_str(&format!(" (commit {c})")),
                    (None, None) => {}
                }
            }
            out.push('\n');
            let lines: Vec<&str> = a.detail.lines().collect();
            for l in lines.iter().take(MAX_DETAIL_LINES) {
                out.push_str(&format!("    {l}\n"));
            }
            if lines.len() > MAX_DETAIL_LINES {
                out.push_str(&format!(
                    "    … and {} more line(s)\n",
                    lines.len() - MAX_DETAIL_LINES
                ));
            }
        }
        if more > 0 {
            out.push_str(&format!(
                "… and {more} more action(s) (the run's summary lists every one)\n"
            ));
        }
        out
    }

    fn list(title: &str, items: &[String]) -> String {
        if items.is_empty() {
            return String::new();
        }
        let mut out = format!("\n{title}:\n");
        for i in items.iter().take(crate::text::MAX_LISTED) {
            out.push_str(&format!("  - {i}\n"));
        }
        if items.len() > crate::text::MAX_LISTED {
            out.push_str(&format!(
                "  - and {} more\n",
                items.len() - crate::text::MAX_LISTED
            ));
        }
        out
    }

    fn value(&self, name: &str) -> Option<String> {
        let s = self.summary;
        Some(match name {
            "handler" => s.handler.clone(),
            "team" => self.team.to_string(),
            "result" => self.result().to_string(),
            "applied" => self.count(Status::Applied).to_string(),
            "failed" => self.count(Status::Failed).to_string(),
            "held" => self.count(Status::Skipped).to_string(),
            "count" => self.actions.len().to_string(),
            "consul_index" => s
                .consul_index
                .map(|i| i.to_string())
                .unwrap_or_else(|| "none".into()),
            "host" => host(),
            "commit" => self.commit(),
            "actions" => self.actions_text(),
            "errors" => Self::list("Errors", &s.errors),
            "warnings" => Self::list("Warnings", &s.warnings),
            _ => return None,
        })
    }

    /// Fills `template`'s placeholders.
    pub fn render(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len() * 2);
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            match after.find('}') {
                Some(close)
                    if after[..close]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    let name = &after[..close];
                    match self.value(name) {
                        Some(v) => out.push_str(&v),
                        None => out.push_str(&rest[open..open + close + 2]),
                    }
                    rest = &after[close + 1..];
                }
                _ => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

fn host() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run with a million skipped entries still tells the team what was applied and failed,
    /// in a message of bounded size.
    #[test]
    fn long_runs_list_failures_and_changes_first_and_count_the_rest() {
        let mut s = Summary::new("tag2git", false, None);
        for i in 0..1_000 {
            s.push(Action::new(
                "update-image",
                format!("images/x{i}"),
                Status::Skipped,
                "no job runs x",
            ));
        }
        s.push(Action::new(
            "update-image",
            "a.json#/i",
            Status::Applied,
            "",
        ));
        s.push(Action::new(
            "update-image",
            "images/bad",
            Status::Failed,
            "",
        ));
        let actions: Vec<&Action> = s.actions.iter().collect();
        let meta = BTreeMap::new();
        let f = Facts {
            summary: &s,
            team: "default",
            actions: &actions,
            meta: &meta,
        };
        let (listed, more) = f.listed();
        assert_eq!(listed.len(), MAX_LISTED_ACTIONS);
        assert_eq!(more, 1_002 - MAX_LISTED_ACTIONS);
        assert_eq!(listed[0].target, "images/bad");
        assert_eq!(listed[1].target, "a.json#/i");
        assert_eq!(listed[2].target, "images/x0");
        let body = f.render(DEFAULT_BODY);
        assert!(body.lines().count() < 3 * MAX_LISTED_ACTIONS, "{body}");
        assert!(body.contains("… and 902 more action(s)"), "{body}");
        assert_eq!(
            f.render(DEFAULT_SUBJECT),
            "[shipwatch] tag2git FAILED for default: 1 applied, 1 failed, 1000 held back",
            "the counts are of every action"
        );
    }

    #[test]
    fn templates_fill_known_placeholders_and_keep_the_rest() {
        let mut s = Summary::new("kv2jobs", false, Some(9));
        s.push(Action::new(
            "update-app",
            "/payments/api",
            Status::Applied,
            "update\ncontainer.docker.image: \"a:1\" -> \"a:2\"",
        ));
        let meta = BTreeMap::from([(
            "/payments/api".to_string(),
            ActionMeta {
                source: Some("jobs/main/payments/api.json".into()),
                commit: Some("1a2b3c4".into()),
                ..Default::default()
            },
        )]);
        let actions: Vec<&Action> = s.actions.iter().collect();
        let f = Facts {
            summary: &s,
            team: "payments",
            actions: &actions,
            meta: &meta,
        };
        let subject = f.render(DEFAULT_SUBJECT);
        assert_eq!(
            subject,
            "[shipwatch] kv2jobs succeeded for payments: 1 applied, 0 failed, 0 held back"
        );
        let body = f.render(DEFAULT_BODY);
        assert!(
            body.contains(
                "applied update-app /payments/api (from jobs/main/payments/api.json at 1a2b3c4)"
            ),
            "{body}"
        );
        assert!(
            body.contains("    container.docker.image: \"a:1\" -> \"a:2\""),
            "{body}"
        );
        assert_eq!(f.render("{commit} {nope} {"), "1a2b3c4 {nope} {");
    }
}
