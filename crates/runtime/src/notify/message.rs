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

    fn actions_text(&self) -> String {
        let mut out = String::new();
        for a in self.actions {
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
