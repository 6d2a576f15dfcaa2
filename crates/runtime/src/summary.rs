//! The plan/summary every handler prints: text for a person replaying by hand, or exactly one
//! JSON document (`--output json`) for scripts and tests:
//! `{"handler","dry_run","consul_index","actions":[{"kind","target","status","detail"}],"errors"}`.

use serde::{Deserialize, Serialize};

use crate::exit::Exit;

/// What happened (or would happen) to one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Applied,
    Planned,
    Unchanged,
    Skipped,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Applied => "applied",
            Status::Planned => "planned",
            Status::Unchanged => "unchanged",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
        }
    }
}

/// One unit of work: kind and target are per handler (`update-app` + app id, `register` +
/// service id, `update-image` + `file#path`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub kind: String,
    pub target: String,
    pub status: Status,
    pub detail: String,
}

impl Action {
    pub fn new(
        kind: impl Into<String>,
        target: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
    ) -> Action {
        Action {
            kind: kind.into(),
            target: target.into(),
            status,
            detail: detail.into(),
        }
    }
}

/// What a handler knows about an action's target that routes its notification to a team (issue
/// 16): the job file's labels (`team`, `shipwatch.notify`), a Chronos job's `owner`, where the
/// config came from (KV key, git commit). Not part of the JSON summary contract.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionMeta {
    pub labels: std::collections::BTreeMap<String, String>,
    pub owner: Option<String>,
    /// The KV key the config came from.
    pub source: Option<String>,
    /// The git commit the config came from (git2consul's `.ref`, or tag2git's commit).
    pub commit: Option<String>,
}

/// The outcome of one invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub handler: String,
    pub dry_run: bool,
    pub consul_index: Option<u64>,
    pub actions: Vec<Action>,
    pub errors: Vec<String>,
    /// Things an operator should know that did not fail the run (an index that went backwards,
    /// deletes held back by a guard): shown in the text summary and sent with `--notify`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Per-target facts for routing notifications (by action target).
    #[serde(skip)]
    pub meta: std::collections::BTreeMap<String, ActionMeta>,
    /// The exit code raised explicitly by the handler (beyond what failed actions imply).
    #[serde(skip)]
    exit: Option<Exit>,
    /// How many of the failed actions are rejected input ([`Summary::reject`]): they imply 65,
    /// not 75.
    #[serde(skip)]
    rejected: usize,
}

impl Summary {
    pub fn new(handler: &str, dry_run: bool, consul_index: Option<u64>) -> Summary {
        Summary {
            handler: handler.to_string(),
            dry_run,
            consul_index,
            actions: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            meta: Default::default(),
            exit: None,
            rejected: 0,
        }
    }

    pub fn push(&mut self, action: Action) {
        self.actions.push(action);
    }

    /// Records an error message (shown in `errors`) without changing the exit code.
    pub fn error(&mut self, msg: impl Into<String>) {
        self.errors.push(msg.into());
    }

    /// Records a warning (shown in `warnings`) without changing the exit code.
    pub fn warn(&mut self, msg: impl Into<String>) {
        self.warnings.push(msg.into());
    }

    /// Raises the exit code to at least `exit` (the most severe outcome wins).
    pub fn raise_exit(&mut self, exit: Exit) {
        self.exit = Some(self.exit.unwrap_or(Exit::Success).worst(exit));
    }

    /// Records an entry of the payload that was rejected as invalid (a bad value, a config that
    /// is not a job): a `failed` action, so `select(.status=="failed")` finds it, that implies
    /// exit 65 rather than 75 (nothing was attempted for it; a replay cannot fix it).
    pub fn reject(
        &mut self,
        kind: impl Into<String>,
        target: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.push(Action::new(kind, target, Status::Failed, detail));
        self.rejected += 1;
        self.raise_exit(Exit::DataErr);
    }

    /// The exit code: the raised one, and 75 when an action failed (other than rejected input).
    pub fn exit(&self) -> Exit {
        let mut e = self.exit.unwrap_or(Exit::Success);
        if self.count(Status::Failed) > self.rejected {
            e = e.worst(Exit::TempFail);
        }
        e
    }

    pub fn count(&self, status: Status) -> usize {
        self.actions.iter().filter(|a| a.status == status).count()
    }

    /// True when something was (or in a dry run would be) changed.
    pub fn changed(&self) -> bool {
        self.actions
            .iter()
            .any(|a| matches!(a.status, Status::Applied | Status::Planned))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }

    /// Writes [`Summary::to_json`] and a newline to `w` without building the string first: the
    /// summary of a large payload (one action per entry) is as large as the payload.
    pub fn write_json(&self, mut w: impl std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer(&mut w, self)?;
        w.write_all(b"\n")
    }

    /// The human-readable form: one line per action, then errors, then a count line.
    pub fn to_text(&self) -> String {
        let mut out = Vec::new();
        let _ = self.write_text(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Writes [`Summary::to_text`] to `w`, a line at a time.
    pub fn write_text(&self, mut w: impl std::io::Write) -> std::io::Result<()> {
        let tag = if self.dry_run { " (dry run)" } else { "" };
        let index = self
            .consul_index
            .map(|i| format!(" at CONSUL_INDEX {i}"))
            .unwrap_or_default();
        writeln!(w, "{}{}{}", self.handler, tag, index)?;
        for a in &self.actions {
            write!(w, "  {:<9} {:<14} {}", a.status.as_str(), a.kind, a.target)?;
            if !a.detail.is_empty() {
                for (i, line) in a.detail.lines().enumerate() {
                    if i == 0 {
                        write!(w, "  {line}")?;
                    } else {
                        write!(w, "\n      {line}")?;
                    }
                }
            }
            writeln!(w)?;
        }
        for warning in &self.warnings {
            writeln!(w, "  warning: {warning}")?;
        }
        for e in &self.errors {
            writeln!(w, "  error: {e}")?;
        }
        writeln!(
            w,
            "{} applied, {} planned, {} unchanged, {} skipped, {} failed, {} errors; exit {}",
            self.count(Status::Applied),
            self.count(Status::Planned),
            self.count(Status::Unchanged),
            self.count(Status::Skipped),
            self.count(Status::Failed),
            self.errors.len(),
            self.exit().code()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_input_is_failed_and_exits_65_unless_something_else_failed() {
        let mut s = Summary::new("tag2git", false, None);
        s.reject("update-image", "images/x", "key \"images/x\": bad");
        s.push(Action::new(
            "update-image",
            "a.json#/x",
            Status::Applied,
            "",
        ));
        assert_eq!(s.count(Status::Failed), 1);
        assert_eq!(s.exit(), Exit::DataErr);
        s.push(Action::new("update-image", "b.json#/x", Status::Failed, ""));
        assert_eq!(s.exit(), Exit::TempFail);
    }

    #[test]
    fn json_has_the_contract_shape() {
        let mut s = Summary::new("tag2git", false, Some(123));
        s.push(Action::new(
            "update-image",
            "a.json#/x",
            Status::Applied,
            "1 -> 2",
        ));
        s.error("boom");
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"handler":"tag2git","dry_run":false,"consul_index":123,
                "actions":[{"kind":"update-image","target":"a.json#/x","status":"applied","detail":"1 -> 2"}],
                "errors":["boom"]})
        );
    }

    /// What `finish` streams to stdout is byte for byte what the string forms hold.
    #[test]
    fn written_forms_equal_the_strings() {
        let mut s = Summary::new("kv2jobs", true, Some(7));
        s.push(Action::new(
            "update-app",
            "/a",
            Status::Planned,
            "cpus: 1 -> 2\nmem: 3 -> 4",
        ));
        s.push(Action::new("update-app", "/b", Status::Unchanged, ""));
        s.warn("careful");
        s.error("boom");
        let mut json = Vec::new();
        s.write_json(&mut json).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            format!("{}\n", s.to_json())
        );
        let mut text = Vec::new();
        s.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(text, s.to_text());
        assert!(text.starts_with("kv2jobs (dry run) at CONSUL_INDEX 7\n  planned   update-app     /a  cpus: 1 -> 2\n      mem: 3 -> 4\n"), "{text}");
        assert!(text.ends_with("  warning: careful\n  error: boom\n0 applied, 1 planned, 1 unchanged, 0 skipped, 0 failed, 1 errors; exit 0\n"), "{text}");
    }

    #[test]
    fn failed_action_means_partial_exit() {
        let mut s = Summary::new("kv2jobs", false, None);
        s.push(Action::new("update-app", "/a", Status::Applied, ""));
        assert_eq!(s.exit(), Exit::Success);
        s.push(Action::new("update-app", "/b", Status::Failed, "422"));
        assert_eq!(s.exit(), Exit::TempFail);
        s.raise_exit(Exit::DataErr);
        assert_eq!(s.exit(), Exit::TempFail);
        let mut t = Summary::new("kv2jobs", false, None);
        t.raise_exit(Exit::DataErr);
        assert_eq!(t.exit(), Exit::DataErr);
    }

    #[test]
    fn rejections_are_failed_actions_with_exit_65() {
        let mut s = Summary::new("kv2jobs", false, None);
        s.reject("config", "a.json", "invalid JSON");
        assert_eq!(s.count(Status::Failed), 1);
        assert_eq!(s.exit(), Exit::DataErr);
        s.push(Action::new("update-app", "/b", Status::Failed, "500"));
        assert_eq!(s.exit(), Exit::TempFail);
    }
}
