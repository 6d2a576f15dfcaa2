//! Chronos REST calls (reference §3): jobs list, create-or-replace (scheduled jobs to `iso8601`,
//! dependent jobs to `dependency`), delete. Chronos 3.x serves `/v1/scheduler/*`, 2.x
//! `/scheduler/*`: the first 404 on `/v1` switches this client to the 2.x prefix.

use std::sync::atomic::{AtomicBool, Ordering};

use runtime::http::{HttpClient, HttpError, HttpRequest, HttpResponse};
use runtime::{Exit, ToExit};
use serde_json::Value;

use crate::job::{job_kind, JobKind};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ChronosError {
    #[error(transparent)]
    Http(#[from] HttpError),
    /// 400 (bad schedule, bad name, unknown job, ...) or 500 with a message: Chronos's
    /// message is kept (plain text in 2.x, `{"message","status"}` in 3.x).
    #[error("chronos rejected job {job}: HTTP {status}: {message}")]
    Rejected {
        job: String,
        status: u16,
        message: String,
    },
    #[error("chronos denied access ({status}): check CHRONOS_USERNAME/CHRONOS_PASSWORD")]
    Unauthorized { status: u16 },
}

impl ToExit for ChronosError {
    fn exit(&self) -> Exit {
        match self {
            ChronosError::Http(e) => e.exit(),
            ChronosError::Rejected { .. } => Exit::TempFail,
            ChronosError::Unauthorized { .. } => Exit::Usage,
        }
    }
}

/// A Chronos client (one HA set).
#[derive(Debug)]
pub struct Chronos {
    http: HttpClient,
    /// True once `/v1/scheduler` answered 404 (Chronos 2.x).
    legacy: AtomicBool,
}

/// Job names are `[\w.-]+` (JobUtils.jobNamePattern); encode anything else anyway.
fn name_path(name: &str) -> String {
    runtime::http::encode_query(name)
}

impl Chronos {
    pub fn new(http: HttpClient) -> Chronos {
        Chronos {
            http,
            legacy: AtomicBool::new(false),
        }
    }

    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// `/v1/scheduler` (3.x) or `/scheduler` (2.x, after a 404).
    pub fn prefix(&self) -> &'static str {
        if self.legacy.load(Ordering::Relaxed) {
            "/scheduler"
        } else {
            "/v1/scheduler"
        }
    }

    /// Sends `method {prefix}{rest}`, retrying once with the 2.x prefix on a 404 from `/v1`.
    fn call(
        &self,
        method: &str,
        rest: &str,
        body: Option<&Value>,
    ) -> Result<HttpResponse, HttpError> {
        let send = |prefix: &str| {
            let path = format!("{prefix}{rest}");
            let mut req = HttpRequest::new(method, &path);
            if let Some(b) = body {
                req = req.json(b);
            }
            self.http.send(req)
        };
        let resp = send(self.prefix())?;
        if resp.status == 404 && !self.legacy.load(Ordering::Relaxed) {
            let old = send("/scheduler")?;
            if old.status != 404 {
                log::info!("chronos: /v1/scheduler not found, using the 2.x API at /scheduler");
                self.legacy.store(true, Ordering::Relaxed);
                return Ok(old);
            }
        }
        Ok(resp)
    }

    fn error(job: &str, resp: &HttpResponse) -> ChronosError {
        if matches!(resp.status, 401 | 403) {
            return ChronosError::Unauthorized {
                status: resp.status,
            };
        }
        if resp.status > 500 {
            return ChronosError::Http(resp.error());
        }
        let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        let message = body
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| resp.text().trim().chars().take(300).collect());
        ChronosError::Rejected {
            job: job.to_string(),
            status: resp.status,
            message: if message.is_empty() {
                "(empty answer)".into()
            } else {
                message.lines().next().unwrap_or_default().to_string()
            },
        }
    }

    /// `GET .../jobs`: every job in one request.
    pub fn list_jobs(&self) -> Result<Vec<Value>, ChronosError> {
        let resp = self.call("GET", "/jobs", None)?;
        if !resp.is_success() {
            return Err(Self::error("*", &resp));
        }
        // Strict: `{}`, `null` or an HTML page with 200 is not "no jobs" (issue 11).
        match resp.json::<Value>()? {
            Value::Array(jobs) => Ok(jobs),
            _ => Err(ChronosError::Http(
                resp.decode_error("expected a JSON array of jobs"),
            )),
        }
    }

    /// Creates or replaces `job`: `POST .../iso8601` for a scheduled job, `POST .../dependency`
    /// for a dependent one (Chronos answers 204).
    pub fn put_job(&self, job: &Value) -> Result<(), ChronosError> {
        let name = job.get("name").and_then(Value::as_str).unwrap_or_default();
        let rest = match job_kind(job) {
            Some(JobKind::Dependent) => "/dependency",
            _ => "/iso8601",
        };
        let resp = self.call("POST", rest, Some(job))?;
        if !resp.is_success() {
            return Err(Self::error(name, &resp));
        }
        Ok(())
    }

    /// `DELETE .../job/{name}`. An unknown job (Chronos answers 400 "not found") is `Ok(false)`.
    pub fn delete_job(&self, name: &str) -> Result<bool, ChronosError> {
        let resp = self.call("DELETE", &format!("/job/{}", name_path(name)), None)?;
        if resp.is_success() {
            return Ok(true);
        }
        if matches!(resp.status, 400 | 404)
            && resp.text().to_ascii_lowercase().contains("not found")
        {
            return Ok(false);
        }
        Err(Self::error(name, &resp))
    }
}
