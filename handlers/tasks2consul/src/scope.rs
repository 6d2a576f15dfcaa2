//! What a watch payload asks for: a full sync, or a sync limited to some apps.
//!
//! kv2jobs `--fire-event NAME` fires a Consul user event whose payload lists the app ids it
//! changed. Accepted payloads: `{"apps":["/a","/b"]}` or a plain JSON array `["/a","/b"]`.
//! Ids are made absolute (`a/b` → `/a/b`).
//!
//! An event watch may deliver the agent's whole event buffer (hashicorp/consul#3742) and
//! re-deliver old events after a restart (#1256), so the scope is the union over every event:
//! syncing an app again is harmless. Anything that does not name apps (a key or keyprefix
//! payload, `null`, an event without payload, a payload that is not such a list) means a full
//! sync, which is always correct; an unreadable event payload is reported but never blocks the
//! sync (the agent re-delivers the buffer, so a bad event must not poison every later run).

use std::collections::BTreeSet;

use serde_json::Value;
use watch::{Payload, UserEvent};

/// Which apps to sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Apps(BTreeSet<String>),
}

impl Scope {
    pub fn apps(&self) -> Option<&BTreeSet<String>> {
        match self {
            Scope::All => None,
            Scope::Apps(a) => Some(a),
        }
    }
}

/// The scope of a payload, and complaints about event payloads that could not be read.
pub fn scope_of(payload: &Payload) -> (Scope, Vec<String>) {
    match payload {
        Payload::Event(events) if !events.is_empty() => scope_of_events(events),
        _ => (Scope::All, Vec::new()),
    }
}

fn scope_of_events(events: &[UserEvent]) -> (Scope, Vec<String>) {
    let mut apps = BTreeSet::new();
    let mut errors = Vec::new();
    for ev in events {
        let Some(bytes) = ev.payload.as_deref().filter(|b| !b.is_empty()) else {
            return (Scope::All, errors);
        };
        match app_ids(bytes) {
            Ok(ids) => apps.extend(ids),
            Err(why) => {
                errors.push(format!(
                    "event {} ({:?}): payload {why}; doing a full sync",
                    ev.id, ev.name
                ));
                return (Scope::All, errors);
            }
        }
    }
    (Scope::Apps(apps), errors)
}

/// Parses `{"apps":[…]}` or `[…]` into absolute app ids.
pub fn app_ids(bytes: &[u8]) -> Result<Vec<String>, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("is not JSON ({e})"))?;
    let list = match &v {
        Value::Array(a) => a,
        Value::Object(o) => match o.get("apps") {
            Some(Value::Array(a)) => a,
            _ => return Err("has no \"apps\" array".into()),
        },
        _ => return Err("is neither {\"apps\":[…]} nor a JSON array of app ids".into()),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let Some(id) = item.as_str() else {
            return Err(format!("entry {} is not a string", i + 1));
        };
        let id = id.trim();
        if id.is_empty() || id.chars().any(char::is_control) || id.split('/').any(|s| s == "..") {
            return Err(format!("entry {} ({id:?}) is not a valid app id", i + 1));
        }
        out.push(format!("/{}", id.trim_start_matches('/')));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, payload: Option<&[u8]>) -> UserEvent {
        let body = serde_json::json!([{
            "ID": id, "Name": "jobs-deployed",
            "Payload": payload.map(base64_encode),
            "NodeFilter": "", "ServiceFilter": "", "TagFilter": "", "Version": 1, "LTime": 3
        }]);
        match watch::detect(body.to_string().as_bytes()).unwrap() {
            Payload::Event(mut v) => v.remove(0),
            other => panic!("{other:?}"),
        }
    }

    fn base64_encode(b: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    #[test]
    fn both_payload_forms_name_apps() {
        assert_eq!(
            app_ids(br#"{"apps":["/a","b/c"]}"#).unwrap(),
            vec!["/a", "/b/c"]
        );
        assert_eq!(app_ids(br#"["/x"]"#).unwrap(), vec!["/x"]);
        assert!(app_ids(br#"{"app":"/x"}"#).is_err());
        assert!(app_ids(br#"[1]"#).is_err());
        assert!(app_ids(br#"["../etc"]"#).is_err());
        assert!(app_ids(b"nope").is_err());
    }

    #[test]
    fn events_union_their_apps() {
        let p = Payload::Event(vec![
            event("e1", Some(br#"{"apps":["/a"]}"#)),
            event("e2", Some(br#"["/b","/a"]"#)),
        ]);
        let (scope, errors) = scope_of(&p);
        assert!(errors.is_empty());
        assert_eq!(
            scope,
            Scope::Apps(["/a", "/b"].iter().map(|s| s.to_string()).collect())
        );
    }

    #[test]
    fn anything_else_is_a_full_sync() {
        assert_eq!(scope_of(&Payload::Empty).0, Scope::All);
        assert_eq!(scope_of(&Payload::KeyPrefix(vec![])).0, Scope::All);
        let p = Payload::Event(vec![event("e1", None)]);
        assert_eq!(scope_of(&p).0, Scope::All);
        let p = Payload::Event(vec![event("e9", Some(b"{not json"))]);
        let (scope, errors) = scope_of(&p);
        assert_eq!(scope, Scope::All);
        assert!(errors[0].contains("e9"), "{errors:?}");
    }
}
