//! The `--fire-event` Consul user event for tasks2consul (`--notify` webhooks are posted by
//! `runtime::notify` for every handler).

use runtime::{Status, Summary};
use serde_json::json;

const WRITE_KINDS: &[&str] = &[
    "create-app",
    "update-app",
    "delete-app",
    "create-job",
    "update-job",
    "delete-job",
];

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
    fn event_payload_fits_the_serf_limit() {
        let mut s = Summary::new("kv2jobs", false, Some(7));
        s.push(Action::new("update-app", "/a", Status::Applied, ""));
        let p: serde_json::Value = serde_json::from_slice(&event_payload(&s, 6).unwrap()).unwrap();
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
        let p: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(p["truncated"], json!(true));
        assert_eq!(p["count"], json!(201));
        let mut none = Summary::new("kv2jobs", false, None);
        none.push(Action::new("update-app", "/a", Status::Unchanged, ""));
        assert!(event_payload(&none, 6).is_none());
    }
}
