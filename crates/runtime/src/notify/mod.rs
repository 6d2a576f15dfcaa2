//! `--notify URL`: a JSON summary posted to webhooks after a run that changed or failed
//! something. The body has a Slack-compatible `text` field, so a chat webhook works as is, plus
//! the same facts as data. No-op runs and dry runs send nothing. Webhook URLs are secrets
//! (Slack's carry a token in the path): messages name a webhook by its position only.

//!
//! `--notify-config FILE` adds routing to teams ([`config`]): named Slack, JSON-webhook and
//! email channels, routes by app/job id prefix, team label or Chronos owner, and one message per
//! team per run ([`send_routed`]), written from templates ([`message`]).

pub mod config;
pub mod message;

use serde_json::{json, Value};

use crate::http::{Auth, HttpClient, HttpConfig, HttpRequest};
use crate::redact::Secret;
use crate::{Backoff, Deadline, Status, Summary};

pub use config::NotifyConfig;

/// True when the run changed or failed something (the only runs that notify).
pub fn worth_notifying(s: &Summary) -> bool {
    s.actions
        .iter()
        .any(|a| matches!(a.status, Status::Applied | Status::Failed))
        || !s.errors.is_empty()
        || !s.warnings.is_empty()
}

/// The webhook body: a Slack-compatible `text`, plus the same facts as data: the first
/// [`message::MAX_LISTED_ACTIONS`] applied and failed actions each, `more_actions` counting the
/// others (a large payload's run may fail a million entries).
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
            .take(message::MAX_LISTED_ACTIONS)
            .map(|a| json!({"kind": a.kind, "target": a.target, "status": a.status.as_str(), "detail": a.detail}))
            .collect()
    };
    let more = [&applied, &failed]
        .iter()
        .map(|v| v.len().saturating_sub(message::MAX_LISTED_ACTIONS))
        .sum::<usize>();
    let mut body = json!({
        "text": text,
        "handler": s.handler,
        "consul_index": s.consul_index,
        "applied": pick(&applied),
        "failed": pick(&failed),
        "errors": s.errors,
        "warnings": s.warnings,
        "exit": s.exit().code(),
    });
    if more > 0 {
        body["more_actions"] = more.into();
    }
    body
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
        cfg.secret_path = true;
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

/// Sends each team its message (routes of `cfg`). Returns the delivery failures, each naming the
/// channel (never a URL, token or password); they never change the exit code.
pub fn send_routed(cfg: &NotifyConfig, s: &Summary, deadline: Deadline) -> Vec<String> {
    let mut errors = Vec::new();
    for d in config::route(cfg, &s.actions, &s.meta) {
        let facts = message::Facts {
            summary: s,
            team: &d.team,
            actions: &d.actions,
            meta: &s.meta,
        };
        let subject = facts.render(
            cfg.templates
                .subject
                .as_deref()
                .unwrap_or(message::DEFAULT_SUBJECT),
        );
        let body = facts.render(
            cfg.templates
                .body
                .as_deref()
                .unwrap_or(message::DEFAULT_BODY),
        );
        let mut emails: Vec<String> = Vec::new();
        for r in &d.recipients {
            let result = match r {
                config::Recipient::Address(a) => {
                    emails.push(a.clone());
                    continue;
                }
                config::Recipient::Channel(name) => match cfg.channels.get(name) {
                    None => Err(format!(
                        "notify {}: label {} names unknown channel {name:?}",
                        d.team,
                        config::NOTIFY_LABEL
                    )),
                    Some(config::Channel::Email { to }) => {
                        emails.extend(to.iter().cloned());
                        continue;
                    }
                    Some(config::Channel::Slack { url }) => post(
                        name,
                        url,
                        &config::SecretSource::default(),
                        &json!({ "text": format!("{subject}\n{body}") }),
                        deadline,
                    ),
                    Some(config::Channel::Webhook { url, token }) => {
                        let doc = team_document(s, &facts, &subject);
                        post(name, url, token, &doc, deadline)
                    }
                },
            };
            if let Err(e) = result {
                errors.push(e);
            }
        }
        emails.sort();
        emails.dedup();
        if !emails.is_empty() {
            if let Err(e) = send_email(cfg, &d.team, &emails, &subject, &body, deadline) {
                errors.push(e);
            }
        }
    }
    errors
}

/// The JSON webhook's body: the team's part of the summary, with subject and sources. Lists the
/// actions a message lists ([`message::Facts::listed`]); `more_actions` counts the others.
fn team_document(s: &Summary, facts: &message::Facts<'_>, subject: &str) -> Value {
    let (listed, more) = facts.listed();
    let actions: Vec<Value> = listed
        .iter()
        .map(|a| {
            let m = s.meta.get(&a.target);
            json!({"kind": a.kind, "target": a.target, "status": a.status.as_str(),
                   "detail": a.detail,
                   "source": m.and_then(|m| m.source.clone()),
                   "commit": m.and_then(|m| m.commit.clone())})
        })
        .collect();
    let mut doc = json!({
        "team": facts.team,
        "subject": subject,
        "handler": s.handler,
        "consul_index": s.consul_index,
        "dry_run": s.dry_run,
        "actions": actions,
        "errors": s.errors,
        "warnings": s.warnings,
        "exit": s.exit().code(),
    });
    if more > 0 {
        doc["more_actions"] = more.into();
    }
    doc
}

fn post(
    name: &str,
    url: &config::SecretSource,
    token: &config::SecretSource,
    body: &Value,
    deadline: Deadline,
) -> Result<(), String> {
    let what = format!("notify channel {name:?}");
    let url = url
        .resolve(&what)?
        .ok_or_else(|| format!("{what}: no URL"))?;
    let mut cfg = HttpConfig::new("notify");
    cfg.timeout = std::time::Duration::from_secs(10);
    cfg.backoff = Backoff {
        attempts: 3,
        ..Backoff::default()
    };
    // A chat service's 500 is usually passing: retried like the gateway errors.
    cfg.retry_statuses.push(500);
    cfg.secret_path = true;
    if let Some(t) = token.resolve(&what)? {
        cfg.auth = Auth::Bearer(t);
    }
    let client = HttpClient::new(std::slice::from_ref(&url.expose().to_string()), cfg)
        .map_err(|_| format!("{what}: not an http(s) URL"))?
        .with_deadline(deadline);
    match client.send(HttpRequest::new("POST", "").json(body)) {
        Ok(r) if r.is_success() => {
            log::info!("notified {name}");
            Ok(())
        }
        Ok(r) => Err(format!("{what}: answered HTTP {}", r.status)),
        // The error itself names the URL, whose path is the secret of a Slack webhook.
        Err(e) if e.is_unavailable() => Err(format!(
            "{what}: unreachable, or answering server errors, on every try"
        )),
        Err(_) => Err(format!("{what}: the call failed")),
    }
}

/// One email to `to` over the configured SMTP server, retried with backoff within the deadline.
fn send_email(
    cfg: &NotifyConfig,
    team: &str,
    to: &[String],
    subject: &str,
    body: &str,
    deadline: Deadline,
) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{Message, SmtpTransport, Transport};

    let what = format!("notify email for {team}");
    let smtp = cfg
        .smtp
        .as_ref()
        .ok_or_else(|| format!("{what}: no [smtp] configured"))?;
    let mut msg = Message::builder()
        .from(
            smtp.from
                .parse()
                .map_err(|e| format!("{what}: smtp.from {:?}: {e}", smtp.from))?,
        )
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for addr in to {
        msg = msg.to(addr
            .parse()
            .map_err(|e| format!("{what}: address {addr:?}: {e}"))?);
    }
    let msg = msg
        .body(body.to_string())
        .map_err(|e| format!("{what}: {e}"))?;
    let tls = || -> Result<TlsParameters, String> {
        let mut b = TlsParameters::builder(smtp.host.clone());
        if let Some(ca) = &smtp.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("{what}: smtp.ca_file {}: {e}", ca.display()))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("{what}: smtp.ca_file {}: {e}", ca.display()))?;
            b = b.add_root_certificate(cert);
        }
        b.build_rustls().map_err(|e| format!("{what}: TLS: {e}"))
    };
    let mut builder = SmtpTransport::builder_dangerous(smtp.host.as_str())
        .port(smtp.port())
        .timeout(Some(deadline.cap(std::time::Duration::from_secs(15))));
    builder = match smtp.tls {
        config::SmtpTls::Starttls => builder.tls(Tls::Required(tls()?)),
        config::SmtpTls::Tls => builder.tls(Tls::Wrapper(tls()?)),
        config::SmtpTls::None => builder.tls(Tls::None),
    };
    if let Some(user) = &smtp.username {
        let password: Secret = smtp
            .password
            .resolve(&what)?
            .ok_or_else(|| format!("{what}: smtp.username needs a password (env or file)"))?;
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose().to_string(),
        ));
    }
    let transport = builder.build();
    let backoff = Backoff {
        attempts: 3,
        ..Backoff::default()
    };
    // lettre's errors can quote the server's reply, never the credentials; still, only their
    // kind is reported, as for webhooks.
    backoff
        .retry(
            Some(&deadline),
            |e: &lettre::transport::smtp::Error| !e.is_permanent(),
            |_| transport.send(&msg),
        )
        .map(|_| log::info!("emailed {team} ({} recipient(s))", to.len()))
        .map_err(|e| {
            let kind = if e.is_permanent() {
                "the server refused the message"
            } else if e.is_timeout() {
                "timed out"
            } else if e.is_tls() {
                "TLS failed"
            } else {
                "the SMTP server is unreachable or failed"
            };
            format!("{what}: {kind} ({}:{})", smtp.host, smtp.port())
        })
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

    #[test]
    fn a_run_of_a_million_failures_posts_a_bounded_body() {
        let mut s = Summary::new("tag2git", false, None);
        for i in 0..250 {
            s.reject("update-image", format!("images/x{i}"), "invalid");
        }
        s.push(Action::new(
            "update-image",
            "a.json#/i",
            Status::Applied,
            "",
        ));
        let body = notification(&s);
        assert_eq!(
            body["failed"].as_array().unwrap().len(),
            message::MAX_LISTED_ACTIONS
        );
        assert_eq!(body["applied"].as_array().unwrap().len(), 1);
        assert_eq!(body["more_actions"], 250 - message::MAX_LISTED_ACTIONS);
        assert!(notification(&Summary::new("x", false, None))
            .get("more_actions")
            .is_none());
    }
}
