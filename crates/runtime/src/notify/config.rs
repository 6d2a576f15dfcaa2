//! `--notify-config FILE` (env `SHIPWATCH_NOTIFY_CONFIG`): named channels and the routes that
//! send each team the part of a run that concerns its own apps and jobs. JSON, or TOML when the
//! file name ends in `.toml`. The format is documented in the README ("Notifications").
//!
//! Secrets (webhook URLs, bearer tokens, the SMTP password) are read from the environment or a
//! file named in the configuration, so the configuration itself can be world-readable; they are
//! never printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::redact::Secret;
use crate::{Action, ActionMeta, Status};

/// The label that names an app's team (`--notify-config`'s `team_label` overrides it).
pub const DEFAULT_TEAM_LABEL: &str = "team";
/// The label with which an app names its own recipients: channel names or email addresses.
pub const NOTIFY_LABEL: &str = "shipwatch.notify";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    #[serde(default)]
    pub channels: BTreeMap<String, Channel>,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Where actions that no route matches go (none: they are not sent).
    #[serde(default)]
    pub default: Option<Target>,
    #[serde(default)]
    pub smtp: Option<Smtp>,
    #[serde(default)]
    pub templates: Templates,
    #[serde(default = "default_team_label")]
    pub team_label: String,
}

fn default_team_label() -> String {
    DEFAULT_TEAM_LABEL.to_string()
}

/// Where a secret comes from: the value itself (discouraged), an environment variable, or a file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub file: Option<PathBuf>,
}

impl SecretSource {
    fn is_set(&self) -> bool {
        self.value.is_some() || self.env.is_some() || self.file.is_some()
    }

    /// The secret; the error names where it was looked for, never its value.
    pub fn resolve(&self, what: &str) -> Result<Option<Secret>, String> {
        if let Some(v) = &self.value {
            return Ok(Some(Secret::new(v.clone())));
        }
        if let Some(name) = &self.env {
            return match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(Some(Secret::new(v))),
                _ => Err(format!("{what}: environment variable {name} is not set")),
            };
        }
        if let Some(path) = &self.file {
            return std::fs::read_to_string(path)
                .map(|v| Some(Secret::new(v.trim().to_string())))
                .map_err(|e| format!("{what}: cannot read {}: {e}", path.display()));
        }
        Ok(None)
    }
}

/// One place messages go.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Channel {
    /// A Slack-compatible incoming webhook (`{"text": ...}`); its URL is the secret.
    Slack { url: SecretSource },
    /// A generic JSON webhook: the team's part of the summary document, with an optional bearer
    /// token.
    Webhook {
        url: SecretSource,
        #[serde(default)]
        token: SecretSource,
    },
    /// Email over the `smtp` server to these addresses.
    Email { to: Vec<String> },
}

/// Which actions a route takes: every condition given must hold (at least one must be given).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// A name for messages and templates (`{team}`); default: the first condition.
    #[serde(default)]
    pub name: Option<String>,
    /// App or job id prefix, matched by whole path segments (`/payments` takes `/payments/api`,
    /// not `/payments-v2`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// The value of the team label (`team_label`, default `team`).
    #[serde(default)]
    pub team: Option<String>,
    /// A Chronos job's `owner` (an email address).
    #[serde(default)]
    pub owner: Option<String>,
    pub channels: Vec<String>,
    /// Only failures (and held-back actions) are sent on this route.
    #[serde(default)]
    pub only_failures: bool,
}

/// The default route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub channels: Vec<String>,
    #[serde(default)]
    pub only_failures: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// `STARTTLS` after connecting (port 587); the server must offer it.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on loopback (refused with a password).
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    /// PEM file of the CA that signed the server's certificate (default: the web roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: SecretSource,
    /// `Name <address>`.
    pub from: String,
}

impl Smtp {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Templates {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
}

impl NotifyConfig {
    /// Reads and checks a configuration file (exit 64 on any problem, naming the file).
    pub fn load(path: &Path) -> Result<NotifyConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--notify-config {}: {e}", path.display()))?;
        let cfg: NotifyConfig = if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str(&text).map_err(|e| format!("--notify-config {}: {e}", path.display()))?
        } else {
            serde_json::from_str(&text)
                .map_err(|e| format!("--notify-config {}: {e}", path.display()))?
        };
        cfg.check()
            .map_err(|e| format!("--notify-config {}: {e}", path.display()))?;
        Ok(cfg)
    }

    /// Every route names known channels and at least one condition; email needs `smtp`;
    /// webhooks need a URL; a password is never sent in the clear.
    pub fn check(&self) -> Result<(), String> {
        let known = |names: &[String], whose: &str| -> Result<(), String> {
            match names.iter().find(|n| !self.channels.contains_key(*n)) {
                Some(n) => Err(format!("{whose} names unknown channel {n:?}")),
                None => Ok(()),
            }
        };
        for (i, r) in self.routes.iter().enumerate() {
            let whose = format!("route #{} ({})", i + 1, r.display_name());
            if r.prefix.is_none() && r.team.is_none() && r.owner.is_none() {
                return Err(format!("{whose} has no prefix, team or owner"));
            }
            known(&r.channels, &whose)?;
        }
        if let Some(d) = &self.default {
            known(&d.channels, "the default route")?;
        }
        for (name, c) in &self.channels {
            match c {
                Channel::Email { .. } if self.smtp.is_none() => {
                    return Err(format!("email channel {name:?} needs an [smtp] section"))
                }
                Channel::Slack { url } | Channel::Webhook { url, .. } if !url.is_set() => {
                    return Err(format!(
                        "channel {name:?} needs url.env, url.file or url.value"
                    ))
                }
                _ => {}
            }
        }
        if let Some(s) = &self.smtp {
            if s.tls == SmtpTls::None && s.password.is_set() {
                return Err("smtp: a password is never sent without TLS (tls = \"none\")".into());
            }
        }
        Ok(())
    }
}

impl Route {
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.team.clone())
            .or_else(|| self.prefix.clone())
            .or_else(|| self.owner.clone())
            .unwrap_or_else(|| "route".into())
    }

    fn matches(&self, target: &str, meta: Option<&ActionMeta>, team_label: &str) -> bool {
        let prefix_ok = self
            .prefix
            .as_deref()
            .is_none_or(|p| segment_prefix(target, p));
        let team_ok = self.team.as_deref().is_none_or(|t| {
            meta.and_then(|m| m.labels.get(team_label))
                .is_some_and(|v| v == t)
        });
        let owner_ok = self.owner.as_deref().is_none_or(|o| {
            meta.and_then(|m| m.owner.as_deref())
                .is_some_and(|v| v.split(',').any(|x| x.trim().eq_ignore_ascii_case(o)))
        });
        prefix_ok && team_ok && owner_ok
    }
}

/// `target` is `prefix` or below it by whole `/` segments.
fn segment_prefix(target: &str, prefix: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    target == p || target.strip_prefix(p).is_some_and(|r| r.starts_with('/')) || p.is_empty()
}

/// Who gets one message: a route's name and its channels, or an app's own address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Recipient {
    Channel(String),
    Address(String),
}

/// One message to send: the team (route name), where it goes, and its actions.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    pub team: String,
    pub recipients: Vec<Recipient>,
    pub actions: Vec<&'a Action>,
}

/// True for actions a team is told about: what was applied, what failed, what was held back.
fn newsworthy(a: &Action) -> bool {
    matches!(a.status, Status::Applied | Status::Failed | Status::Skipped)
}

fn is_failure(a: &Action) -> bool {
    matches!(a.status, Status::Failed | Status::Skipped)
}

/// Groups a run's actions by team: each route (and each app's own `shipwatch.notify` list) gets
/// exactly the actions that concern it, in one delivery.
pub fn route<'a>(
    cfg: &NotifyConfig,
    actions: &'a [Action],
    meta: &BTreeMap<String, ActionMeta>,
) -> Vec<Delivery<'a>> {
    let mut groups: BTreeMap<(usize, String), Delivery<'a>> = BTreeMap::new();
    let mut push = |order: usize, team: String, recipients: Vec<Recipient>, a: &'a Action| {
        groups
            .entry((order, team.clone()))
            .or_insert_with(|| Delivery {
                team,
                recipients,
                actions: Vec::new(),
            })
            .actions
            .push(a);
    };
    for a in actions.iter().filter(|a| newsworthy(a)) {
        let m = meta.get(&a.target);
        let mut matched = false;
        for (i, r) in cfg.routes.iter().enumerate() {
            if r.matches(&a.target, m, &cfg.team_label) {
                matched = true;
                if !r.only_failures || is_failure(a) {
                    let rs = r.channels.iter().cloned().map(Recipient::Channel).collect();
                    push(i, r.display_name(), rs, a);
                }
            }
        }
        if let Some(own) = m.and_then(|m| m.labels.get(NOTIFY_LABEL)) {
            for who in own.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                matched = true;
                let r = if who.contains('@') {
                    Recipient::Address(who.to_string())
                } else {
                    Recipient::Channel(who.to_string())
                };
                push(usize::MAX - 1, who.to_string(), vec![r], a);
            }
        }
        if let (false, Some(d)) = (matched, &cfg.default) {
            if !d.only_failures || is_failure(a) {
                let rs = d.channels.iter().cloned().map(Recipient::Channel).collect();
                push(usize::MAX, "default".into(), rs, a);
            }
        }
    }
    groups.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
team_label = "team"
[channels.payments-chat]
type = "slack"
url = { env = "PAYMENTS_SLACK" }
[channels.payments-mail]
type = "email"
to = ["payments@example.com"]
[channels.ops]
type = "webhook"
url = { env = "OPS_HOOK" }
token = { file = "/etc/shipwatch/ops.token" }
[smtp]
host = "smtp.example.com"
from = "shipwatch <shipwatch@example.com>"
username = "shipwatch"
password = { env = "SMTP_PASSWORD" }
[[routes]]
name = "payments"
team = "payments"
channels = ["payments-chat", "payments-mail"]
[[routes]]
prefix = "/batch"
channels = ["ops"]
only_failures = true
[default]
channels = ["ops"]
"#;

    fn meta(team: &str) -> ActionMeta {
        let mut m = ActionMeta::default();
        m.labels.insert("team".into(), team.into());
        m
    }

    #[test]
    fn toml_and_json_configs_load_and_are_checked() {
        let cfg: NotifyConfig = toml::from_str(TOML).unwrap();
        cfg.check().unwrap();
        assert_eq!(cfg.smtp.as_ref().unwrap().port(), 587);
        let bad: NotifyConfig =
            serde_json::from_str(r#"{"channels":{},"routes":[{"team":"x","channels":["nope"]}]}"#)
                .unwrap();
        assert!(bad
            .check()
            .unwrap_err()
            .contains("unknown channel \"nope\""));
        let no_smtp: NotifyConfig =
            serde_json::from_str(r#"{"channels":{"m":{"type":"email","to":["a@b"]}}}"#).unwrap();
        assert!(no_smtp.check().unwrap_err().contains("smtp"));
        assert!(serde_json::from_str::<NotifyConfig>(r#"{"chanels":{}}"#).is_err());
    }

    #[test]
    fn each_team_gets_only_its_own_actions() {
        let cfg: NotifyConfig = toml::from_str(TOML).unwrap();
        let actions = vec![
            Action::new(
                "update-app",
                "/payments/api",
                Status::Applied,
                "image a -> b",
            ),
            Action::new("update-app", "/search/api", Status::Applied, "image c -> d"),
            Action::new(
                "update-app",
                "/batch/nightly",
                Status::Applied,
                "cpus 1 -> 2",
            ),
            Action::new("update-app", "/batch/hourly", Status::Failed, "422"),
            Action::new("update-app", "/quiet", Status::Unchanged, ""),
        ];
        let mut meta = BTreeMap::new();
        meta.insert("/payments/api".to_string(), meta_for("payments"));
        meta.insert("/search/api".to_string(), meta_for("search"));
        let ds = route(&cfg, &actions, &meta);
        let by_team: BTreeMap<_, Vec<&str>> = ds
            .iter()
            .map(|d| {
                (
                    d.team.as_str(),
                    d.actions.iter().map(|a| a.target.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(by_team["payments"], vec!["/payments/api"]);
        // only_failures: the applied nightly change is not sent to /batch's route, and since
        // that route matched it, it does not fall through to the default either.
        assert_eq!(by_team["/batch"], vec!["/batch/hourly"]);
        assert_eq!(by_team["default"], vec!["/search/api"]);
        assert_eq!(ds.len(), 3);
    }

    fn meta_for(team: &str) -> ActionMeta {
        meta(team)
    }

    #[test]
    fn an_app_can_name_its_own_recipients() {
        let cfg: NotifyConfig = toml::from_str(TOML).unwrap();
        let actions = vec![Action::new("update-app", "/x", Status::Applied, "")];
        let mut m = ActionMeta::default();
        m.labels
            .insert(NOTIFY_LABEL.into(), "payments-chat, dev@example.com".into());
        let meta = BTreeMap::from([("/x".to_string(), m)]);
        let ds = route(&cfg, &actions, &meta);
        let rs: Vec<_> = ds.iter().flat_map(|d| d.recipients.clone()).collect();
        assert!(rs.contains(&Recipient::Channel("payments-chat".into())));
        assert!(rs.contains(&Recipient::Address("dev@example.com".into())));
        assert!(ds.iter().all(|d| d.team != "default"));
    }

    #[test]
    fn prefixes_match_whole_segments_and_owners_chronos_jobs() {
        assert!(segment_prefix("/payments/api", "/payments"));
        assert!(segment_prefix("/payments", "/payments/"));
        assert!(!segment_prefix("/payments-v2/api", "/payments"));
        let r = Route {
            name: None,
            prefix: None,
            team: None,
            owner: Some("ops@example.com".into()),
            channels: vec![],
            only_failures: false,
        };
        let m = ActionMeta {
            owner: Some("dev@example.com, OPS@example.com".into()),
            ..Default::default()
        };
        assert!(r.matches("nightly", Some(&m), "team"));
        assert!(!r.matches("nightly", None, "team"));
    }
}
