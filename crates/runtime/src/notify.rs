//! `--notify URL`: a JSON summary posted to webhooks after a run that changed or failed
//! something. The body has a Slack-compatible `text` field, so a chat webhook works as is, plus
//! the same facts as data. No-op runs and dry runs send nothing. Webhook URLs are secrets
//! (Slack's carry a token in the path): messages name a webhook by its position only.

use serde_json::{json, Value};

use crate::http::{HttpClient, HttpConfig, HttpRequest};
use crate::{Backoff, Deadline, Status, Summary};

/// True when the run changed or failed something (the only runs that notify).
pub fn worth_notifying(s: &Summary) -> bool {
    s.actions
        .iter()
        .any(|a| matches!(a.status, Status::Applied | Status::Failed))
        || !s.errors.is_empty()
        || !s.warnings.is_empty()
}

/// The webhook body: a Slack-compatible `text`, plus the same facts as data.
pub fn notification(s: &Summary) -> Value {
    let applied: Vec<&crate::Action> = s
        .actions
        .iter()
        .filter(|a| a.status == Status::Applied)
        .collect();
    let failed: Vec<&crate::Action> = s
        .actions
        .iter()
        .filter(|a| a.status == Status::Failed)
        .collect();
    let mut text = format!(
        "{}: {} change(s) applied, {} failed, {} error(s)",
        s.handler,
        applied.len(),
        failed.len(),
        s.errors.len()
    );
    if let Some(i) = s.consul_index {
        text.push_str(&format!(" (CONSUL_INDEX {i})"));
    }
    const MAX_LINES: usize = 30;
    for (lines, a) in applied.iter().chain(failed.iter()).enumerate() {
        if lines == MAX_LINES {
            text.push_str("\n• …");
            break;
        }
        let first = a.detail.lines().next().unwrap_or_default();
        text.push_str(&format!(
            "\n• {} {} {}: {}",
            a.status.as_str(),
            a.kind,
            a.target,
            first
        ));
    }
    for w in s.warnings.iter().take(10) {
        text.push_str(&format!("\n• warning: {w}"));
    }
    for e in s.errors.iter().take(10) {
        text.push_str(&format!("\n• error: {e}"));
    }
    let pick = |v: &[&crate::Action]| -> Vec<Value> {
        v.iter()
            .map(|a| json!({"kind": a.kind, "target": a.target, "status": a.status.as_str(), "detail": a.detail}))
            .collect()
    };
    json!({
        "text": text,
        "handler": s.handler,
        "consul_index": s.consul_index,
        "applied": pick(&applied),
        "failed": pick(&failed),
        "errors": s.errors,
        "warnings": s.warnings,
        "exit": s.exit().code(),
    })
}

/// Posts the notification to every URL. Webhook URLs are secrets (Slack's carry the token in the
/// path): messages name the webhook by its position only.
pub fn notify(urls: &[String], s: &Summary, deadline: Deadline) -> Vec<String> {
    let body = notification(s);
    let mut errors = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let mut cfg = HttpConfig::new("notify");
        cfg.timeout = std::time::Duration::from_secs(10);
        cfg.backoff = Backoff {
            attempts: 3,
            ..Backoff::default()
        };
        let client = match HttpClient::new(std::slice::from_ref(url), cfg) {
            Ok(c) => c.with_deadline(deadline),
            Err(_) => {
                errors.push(format!("--notify #{}: not an http(s) URL", i + 1));
                continue;
            }
        };
        match client.send(HttpRequest::new("POST", "").json(&body)) {
            Ok(r) if r.is_success() => log::info!("notified webhook #{}", i + 1),
            Ok(r) => errors.push(format!(
                "--notify #{}: webhook answered HTTP {}",
                i + 1,
                r.status
            )),
            Err(e) if e.is_unavailable() => {
                errors.push(format!("--notify #{}: webhook unreachable", i + 1))
            }
            Err(_) => errors.push(format!("--notify #{}: webhook call failed", i + 1)),
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Action;

    #[test]
    fn only_changes_and_failures_notify() {
        let mut s = Summary::new("kv2jobs", false, Some(7));
        s.push(Action::new("update-app", "/a", Status::Unchanged, ""));
        assert!(!worth_notifying(&s));
        s.push(Action::new(
            "update-app",
            "/b",
            Status::Applied,
            "image 1 -> 2",
        ));
        assert!(worth_notifying(&s));
        let body = notification(&s);
        let text = body["text"].as_str().unwrap();
        assert!(text.starts_with("kv2jobs: 1 change(s) applied"), "{text}");
        assert!(text.contains("/b"), "{text}");
        let mut e = Summary::new("tag2git", false, None);
        e.error("entry 1 (key \"images/x\"): invalid image reference");
        assert!(worth_notifying(&e));
    }
}
