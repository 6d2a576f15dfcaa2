use runtime::http::{HttpError, HttpResponse};
use runtime::{Exit, ToExit};
use serde_json::Value;

/// One entry of a 422's `details`: the field path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum MarathonError {
    #[error(transparent)]
    Http(#[from] HttpError),
    /// 409 with `deployments`: a running deployment holds the app (reference §1.1).
    #[error("marathon app {app_id} is locked by deployment(s) {}", deployments.join(", "))]
    Locked {
        app_id: String,
        deployments: Vec<String>,
    },
    /// 409 without `deployments`: POST of an app that exists.
    #[error("marathon app {app_id} already exists")]
    Exists { app_id: String },
    /// 422 (or 400 "Invalid JSON"): the definition is invalid; details per field.
    #[error("marathon rejected app {app_id}: {message}{}", fmt_details(details))]
    Invalid {
        app_id: String,
        message: String,
        details: Vec<FieldError>,
    },
    #[error("marathon app {app_id} does not exist")]
    NotFound { app_id: String },
    #[error("marathon denied access ({status}): check MARATHON_USERNAME/MARATHON_PASSWORD or MARATHON_TOKEN")]
    Unauthorized { status: u16 },
}

fn fmt_details(details: &[FieldError]) -> String {
    if details.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = details
        .iter()
        .map(|d| format!("{}: {}", d.path, d.errors.join("; ")))
        .collect();
    format!(" ({})", parts.join(", "))
}

impl ToExit for MarathonError {
    fn exit(&self) -> Exit {
        match self {
            MarathonError::Http(e) => e.exit(),
            MarathonError::Invalid { .. } => Exit::DataErr,
            MarathonError::Unauthorized { .. } => Exit::Usage,
            MarathonError::Locked { .. }
            | MarathonError::Exists { .. }
            | MarathonError::NotFound { .. } => Exit::TempFail,
        }
    }
}

impl MarathonError {
    /// Interprets a non-success answer about `app_id`.
    pub fn from_response(app_id: &str, resp: &HttpResponse) -> MarathonError {
        let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        let message = body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match resp.status {
            // TooManyRunningDeploymentsException (--max_running_deployments, default 100) is a
            // 403 too: "Max number (100) of running deployments is achieved. Wait for existing
            // deployments to complete or cancel one..." (MarathonExceptionMapper). Not an auth
            // problem: kept as the server's answer, see `is_too_many_deployments`.
            403 if message.contains("running deployments") => MarathonError::Http(resp.error()),
            401 | 403 => MarathonError::Unauthorized {
                status: resp.status,
            },
            404 => MarathonError::NotFound {
                app_id: app_id.to_string(),
            },
            409 => match body.get("deployments").and_then(Value::as_array) {
                Some(ds) => MarathonError::Locked {
                    app_id: app_id.to_string(),
                    deployments: ds
                        .iter()
                        .filter_map(|d| d.get("id").and_then(Value::as_str).map(str::to_string))
                        .collect(),
                },
                None => MarathonError::Exists {
                    app_id: app_id.to_string(),
                },
            },
            400 | 422 => MarathonError::Invalid {
                app_id: app_id.to_string(),
                message: if message.is_empty() {
                    resp.text().chars().take(300).collect()
                } else {
                    message
                },
                details: parse_details(body.get("details")),
            },
            _ => MarathonError::Http(resp.error()),
        }
    }
}

impl MarathonError {
    /// Interprets a non-success answer to a *read* (`GET /v2/apps`, an app, deployments). A
    /// 400/422 there says nothing about the payload (the handler sent none): Marathon is not
    /// answering as it should, so it is reported as unavailable (69), not as bad input (65).
    pub fn from_read(resp: &HttpResponse) -> MarathonError {
        match resp.status {
            401 | 403 | 404 | 409 => MarathonError::from_response("*", resp),
            // A server error after retries stays a temporary failure (75), as for writes.
            500.. => MarathonError::Http(resp.error()),
            _ => MarathonError::Http(HttpError::Unavailable {
                service: resp.service,
                method: resp.method.clone(),
                url: resp.url.clone(),
                reason: match resp.error() {
                    HttpError::Status { status, body, .. } => {
                        format!("answered HTTP {status}: {body}")
                    }
                    other => other.to_string(),
                },
            }),
        }
    }

    /// N of Marathon's "Max number (N) of running deployments is achieved" (403), when it is one.
    pub fn deployment_limit(&self) -> Option<usize> {
        if !self.is_too_many_deployments() {
            return None;
        }
        let MarathonError::Http(HttpError::Status { body, .. }) = self else {
            return None;
        };
        let rest = &body[body.find("Max number (")? + "Max number (".len()..];
        rest[..rest.find(')')?].trim().parse().ok()
    }

    /// True for a 4xx answer about the request itself (invalid, locked, exists, not found,
    /// denied, or any other 4xx): what a one-app request would isolate.
    pub fn is_refusal(&self) -> bool {
        match self {
            MarathonError::Http(HttpError::Status { status, .. }) => (400..500).contains(status),
            MarathonError::Http(_) => false,
            _ => true,
        }
    }

    /// True for Marathon's "Max number (N) of running deployments is achieved" (403): waiting for
    /// a deployment to finish and trying again is the remedy.
    pub fn is_too_many_deployments(&self) -> bool {
        matches!(self, MarathonError::Http(HttpError::Status { status: 403, body, .. })
            if body.contains("running deployments"))
    }
}

/// `details` is an array of `{path, errors}` (1.1+), of `{attribute, error}` (≤0.15), or a plain
/// string for JSON syntax errors (reference §1.1): accept all three.
fn parse_details(details: Option<&Value>) -> Vec<FieldError> {
    match details {
        Some(Value::Array(items)) => items
            .iter()
            .map(|d| FieldError {
                path: d
                    .get("path")
                    .or_else(|| d.get("attribute"))
                    .and_then(Value::as_str)
                    .unwrap_or("/")
                    .to_string(),
                errors: match d.get("errors").or_else(|| d.get("error")) {
                    Some(Value::Array(es)) => es
                        .iter()
                        .map(|e| {
                            e.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| e.to_string())
                        })
                        .collect(),
                    Some(Value::String(s)) => vec![s.clone()],
                    Some(other) => vec![other.to_string()],
                    None => Vec::new(),
                },
            })
            .collect(),
        Some(Value::String(s)) => vec![FieldError {
            path: "/".into(),
            errors: vec![s.clone()],
        }],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployment_limit_is_read_from_marathons_403() {
        // Exception.scala's text, missing space after "one" included (reference "Deployment limit").
        let body = r#"{"message": "Max number (7) of running deployments is achieved. Wait for existing deployments to complete or cancel oneusing force=true parameter."}"#;
        let e = MarathonError::Http(HttpError::Status {
            service: "marathon",
            method: "PUT".into(),
            url: "http://m/v2/apps".into(),
            status: 403,
            body: body.into(),
        });
        assert!(e.is_too_many_deployments());
        assert_eq!(e.deployment_limit(), Some(7));
        assert!(e.is_refusal());
        let locked = MarathonError::Locked {
            app_id: "/a".into(),
            deployments: vec![],
        };
        assert_eq!(locked.deployment_limit(), None);
    }
}
