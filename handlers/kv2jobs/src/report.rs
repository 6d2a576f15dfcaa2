//! Telling the team: `--notify` webhooks (Slack-compatible) and the `--fire-event` Consul user
//! event for tasks2consul.

use runtime::http::{HttpClient, HttpConfig, HttpRequest};
use runtime::{Backoff, Deadline, Status, Summary};
use serde_json::{json, Value};

const WRITE_KINDS: &[&str] = &[
    "create-app",
    "update-app",
    "delete-app",
    "create-job",
    "update-job",
    "delete-job",
];

/// True when the run changed or failed something (the only runs that notify).
pub fn worth_notifying(s: &Summary) -> bool {
    s.actions
        .iter()
        .any(|a| matches!(a.status, Status::Applied | Status::Failed))
        || !s.errors.is_empty()
}

/// The webhook body: a Slack-compatible `text`, plus the same facts as data.
pub fn notification(s: &Summary) -> Value {
    let applied: Vec<&runtime::Action> = s
        .actions
        .iter()
        .filter(|a| a.status == Status::Applied)
        .collect();
    let failed: Vec<&runtime::Action> = s
        .actions
        .iter()
        .filter(|a| a.status == Status::Failed)
        .collect();
    let mut text = format!(
        "kv2jobs: {} change(s) applied, {} failed, {} error(s)",
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
    for e in s.errors.iter().take(10) {
        text.push_str(&format!("\n• error: {e}"));
    }
    let pick = |v: &[&runtime::Action]| -> Vec<Value> {
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

/// Serf's default `UserEventSizeLimit` is 512 bytes for name + payload (hashicorp/serf
/// `DefaultConfig`); stay well below it.
pub const EVENT_BUDGET: usize = 480;

/// The `--fire-event` payload: `{"handler":"kv2jobs","apps":[changed app ids],"jobs":[changed
/// job names],"consul_index":N,"truncated":false}`. When the ids do not fit the event size
/// limit, as many as fit are listed, `truncated` is true and `count` says how many changed:
/// consumers then resynchronize everything.
pub fn event_payload(s: &Summary, name_len: usize) -> Option<Vec<u8>> {
    let changed = |suffix: &str| -> Vec<String> {
        s.actions
            .iter()
            .filter(|a| {
                a.status == Status::Applied
                    && a.kind.ends_with(suffix)
                    && WRITE_KINDS.contains(&a.kind.as_str())
            })
            .map(|a| a.target.clone())
            .collect()
    };
    let apps = changed("-app");
    let jobs = changed("-job");
    if apps.is_empty() && jobs.is_empty() {
        return None;
    }
    let count = apps.len() + jobs.len();
    let budget = EVENT_BUDGET.saturating_sub(name_len);
    let build = |a: &[String], j: &[String], truncated: bool| {
        serde_json::to_vec(
            &json!({"handler":"kv2jobs","apps":a,"jobs":j,"consul_index":s.consul_index,
            "count":count,"truncated":truncated}),
        )
        .unwrap_or_default()
    };
    let full = build(&apps, &jobs, false);
    if full.len() <= budget {
        return Some(full);
    }
    let (mut na, mut nj) = (apps.len(), jobs.len());
    loop {
        let p = build(&apps[..na], &jobs[..nj], true);
        if p.len() <= budget || (na == 0 && nj == 0) {
            return Some(p);
        }
        if nj > 0 {
            nj -= 1;
        } else {
            na -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::Action;

    #[test]
    fn notification_has_slack_text_and_only_changes() {
        let mut s = Summary::new("kv2jobs", false, Some(42));
        s.push(Action::new(
            "update-app",
            "/a",
            Status::Applied,
            "from k; 1 field(s) differ\ncmd: x -> y",
        ));
        s.push(Action::new(
            "update-app",
            "/b",
            Status::Unchanged,
            "no change",
        ));
        s.push(Action::new(
            "create-app",
            "/c",
            Status::Failed,
            "marathon rejected app /c",
        ));
        assert!(worth_notifying(&s));
        let n = notification(&s);
        let text = n["text"].as_str().unwrap();
        assert!(
            text.starts_with("kv2jobs: 1 change(s) applied, 1 failed"),
            "{text}"
        );
        assert!(text.contains("• applied update-app /a"), "{text}");
        assert!(!text.contains("/b"));
        let mut quiet = Summary::new("kv2jobs", false, None);
        quiet.push(Action::new("update-app", "/b", Status::Unchanged, ""));
        assert!(!worth_notifying(&quiet));
    }

    #[test]
    fn event_payload_fits_the_serf_limit() {
        let mut s = Summary::new("kv2jobs", false, Some(7));
        s.push(Action::new("update-app", "/a", Status::Applied, ""));
        let p: Value = serde_json::from_slice(&event_payload(&s, 6).unwrap()).unwrap();
        assert_eq!(p["apps"], json!(["/a"]));
        assert_eq!(p["truncated"], json!(false));
        for i in 0..200 {
            s.push(Action::new(
                "create-app",
                format!("/team/app-{i}"),
                Status::Applied,
                "",
            ));
        }
        let raw = event_payload(&s, 6).unwrap();
        assert!(raw.len() <= EVENT_BUDGET - 6);
        let p: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(p["truncated"], json!(true));
        assert_eq!(p["count"], json!(201));
        let mut none = Summary::new("kv2jobs", false, None);
        none.push(Action::new("update-app", "/a", Status::Unchanged, ""));
        assert!(event_payload(&none, 6).is_none());
    }
}
