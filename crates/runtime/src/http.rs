//! The one HTTP client every remote call goes through: per-request timeouts bounded by the
//! invocation's deadline, bounded jittered retries, fail-over across several base URLs (Marathon
//! and Chronos run as HA sets), authentication, TLS verification on by default (optionally with
//! the operator's CA file), and errors that name the service and URL without credentials.

use std::io::Read;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;

use crate::deadline::Deadline;
use crate::exit::{Exit, ToExit};
use crate::redact::{redact_url, split_userinfo, Redactor, Secret};
use crate::retry::Backoff;

mod tls;

/// How requests authenticate.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    #[default]
    None,
    /// HTTP basic auth (Marathon `--http_credentials`, Chronos).
    Basic { user: String, password: Secret },
    /// `Authorization: Bearer <token>` (Consul accepts it too).
    Bearer(Secret),
    /// `Authorization: token=<token>` (DC/OS ACS tokens for Marathon).
    DcosToken(Secret),
    /// `X-Consul-Token: <token>`.
    ConsulToken(Secret),
}

impl Auth {
    fn secret(&self) -> Option<&str> {
        match self {
            Auth::None => None,
            Auth::Basic { password, .. } => Some(password.expose()),
            Auth::Bearer(s) | Auth::DcosToken(s) | Auth::ConsulToken(s) => Some(s.expose()),
        }
    }

    fn header(&self) -> Option<(&'static str, String)> {
        match self {
            Auth::None => None,
            Auth::Basic { user, password } => Some((
                "Authorization",
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{user}:{}", password.expose()))
                ),
            )),
            Auth::Bearer(s) => Some(("Authorization", format!("Bearer {}", s.expose()))),
            Auth::DcosToken(s) => Some(("Authorization", format!("token={}", s.expose()))),
            Auth::ConsulToken(s) => Some(("X-Consul-Token", s.expose().to_string())),
        }
    }
}

/// Settings of one client.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The remote's name in messages ("consul", "marathon", "chronos").
    pub service: &'static str,
    /// Per-request timeout (reading the whole answer), capped by the deadline.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub backoff: Backoff,
    pub auth: Auth,
    /// PEM file with the CA certificates to trust instead of the system's web roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// A directory of PEM CA files (Consul's CONSUL_CAPATH), trusted with `ca_file`.
    pub ca_path: Option<std::path::PathBuf>,
    /// Client certificate and key (PEM) for servers that verify clients (Consul's
    /// `verify_incoming`, a Marathon behind a TLS proxy).
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// The name to verify the server's certificate against instead of the URL's host
    /// (CONSUL_TLS_SERVER_NAME): still a full verification, against that name.
    pub server_name: Option<String>,
    /// Query parameters added to every request (Consul's `dc`, `ns`, `partition`).
    pub default_query: Vec<(String, String)>,
    /// Statuses that mean "try again / try the next server" (Marathon's standbys answer 502,
    /// 503 or 504 when the leader is unreachable; reference §1.2).
    pub retry_statuses: Vec<u16>,
    /// Largest answer read (the rest is an error, not an allocation).
    pub max_body: u64,
    /// The URLs' paths are secrets (a Slack webhook's path is its token): messages show only
    /// the scheme, host and port.
    pub secret_path: bool,
}

impl HttpConfig {
    pub fn new(service: &'static str) -> HttpConfig {
        HttpConfig {
            service,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            backoff: Backoff::default(),
            auth: Auth::None,
            ca_file: None,
            ca_path: None,
            client_cert: None,
            server_name: None,
            default_query: Vec::new(),
            retry_statuses: vec![429, 502, 503, 504],
            max_body: 512 * 1024 * 1024,
            secret_path: false,
        }
    }
}

/// A configuration problem (exit 64).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
}

impl ToExit for ConfigError {
    fn exit(&self) -> Exit {
        Exit::Usage
    }
}

/// A remote call that did not give a usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    /// Connection failures or retryable statuses on every server, every try.
    #[error("{service} unavailable: {method} {url}: {reason}")]
    Unavailable {
        service: &'static str,
        method: String,
        url: String,
        reason: String,
    },
    /// The invocation's deadline passed.
    #[error("{service} {method} {url}: gave up, the handler's --timeout was reached")]
    Deadline {
        service: &'static str,
        method: String,
        url: String,
    },
    /// The server answered, with a status the caller treats as an error.
    #[error("{service} {method} {url} answered HTTP {status}: {body}")]
    Status {
        service: &'static str,
        method: String,
        url: String,
        status: u16,
        body: String,
    },
    /// The answer could not be read or decoded.
    #[error("{service} {method} {url}: invalid answer: {reason}")]
    Decode {
        service: &'static str,
        method: String,
        url: String,
        reason: String,
    },
}

impl HttpError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for errors where the remote could not be reached at all.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            HttpError::Unavailable { .. } | HttpError::Deadline { .. }
        )
    }
}

impl ToExit for HttpError {
    fn exit(&self) -> Exit {
        match self {
            HttpError::Unavailable { .. } => Exit::Unavailable,
            HttpError::Deadline { .. } | HttpError::Status { .. } => Exit::TempFail,
            // The server answered, but not as the service does (an HTML page from a proxy, `{}`
            // where a list belongs): it is not usable as that service, and nothing was decided
            // on its answer (69).
            HttpError::Decode { .. } => Exit::Unavailable,
        }
    }
}

/// An answer, read in full.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `METHOD url` (credentials removed), for messages.
    pub method: String,
    pub url: String,
    pub service: &'static str,
    redactor: Redactor,
}

impl HttpResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| self.decode_error(&e.to_string()))
    }

    /// An answer that is not what the service sends: the reason, the content type and the first
    /// bytes of the body (scrubbed of secrets), so an operator sees the proxy page or the `{}`.
    pub fn decode_error(&self, reason: &str) -> HttpError {
        let ctype = self.header("Content-Type").unwrap_or("no content type");
        let head: String = self.text().chars().take(80).collect();
        let head = self.redactor.scrub(head.trim());
        HttpError::Decode {
            service: self.service,
            method: self.method.clone(),
            url: self.url.clone(),
            reason: format!(
                "{reason} (HTTP {}, {ctype}, body starts {head:?})",
                self.status
            ),
        }
    }

    /// This answer as an error (body shortened and scrubbed of secrets).
    pub fn error(&self) -> HttpError {
        let mut body = self.redactor.scrub(self.text().trim());
        if body.len() > 600 {
            let mut cut = 600;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push('…');
        }
        HttpError::Status {
            service: self.service,
            method: self.method.clone(),
            url: self.url.clone(),
            status: self.status,
            body,
        }
    }

    /// Ok(self) for 2xx, the error otherwise.
    pub fn success(self) -> Result<HttpResponse, HttpError> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(self.error())
        }
    }
}

/// One request.
#[derive(Debug, Clone)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// Path and query, starting with `/` (appended to the base URL).
    pub path: &'a str,
    pub body: Option<Vec<u8>>,
    pub content_type: &'a str,
    /// Overrides the client's per-request timeout (Consul blocking queries wait minutes).
    pub timeout: Option<Duration>,
    pub headers: Vec<(&'a str, String)>,
}

impl<'a> HttpRequest<'a> {
    pub fn new(method: &'a str, path: &'a str) -> HttpRequest<'a> {
        HttpRequest {
            method,
            path,
            body: None,
            content_type: "application/json",
            timeout: None,
            headers: Vec::new(),
        }
    }

    pub fn json(mut self, value: &serde_json::Value) -> Self {
        self.body = Some(serde_json::to_vec(value).unwrap_or_default());
        self
    }

    pub fn body(mut self, bytes: Vec<u8>, content_type: &'a str) -> Self {
        self.body = Some(bytes);
        self.content_type = content_type;
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// The client. Cheap to share by reference; counts the requests it sends.
pub struct HttpClient {
    agent: ureq::Agent,
    bases: Vec<String>,
    cfg: HttpConfig,
    deadline: Option<Deadline>,
    preferred: AtomicUsize,
    requests: AtomicU64,
    redactor: Redactor,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("service", &self.cfg.service)
            .field("bases", &self.bases)
            .finish()
    }
}

impl HttpClient {
    /// A client for one service reachable at any of `urls` (tried in order, the last one that
    /// worked first). Credentials embedded in a URL become basic auth and leave the URL.
    pub fn new(urls: &[String], mut cfg: HttpConfig) -> Result<HttpClient, ConfigError> {
        let mut bases = Vec::new();
        for raw in urls.iter().map(|u| u.trim()).filter(|u| !u.is_empty()) {
            let (clean, creds) = split_userinfo(raw);
            if !(clean.starts_with("http://") || clean.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "{} URL {} must start with http:// or https://",
                    cfg.service,
                    redact_url(raw)
                )));
            }
            if let (Some((user, password)), Auth::None) = (creds, &cfg.auth) {
                cfg.auth = Auth::Basic { user, password };
            }
            bases.push(clean.trim_end_matches('/').to_string());
        }
        if bases.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "no {} URL given",
                cfg.service
            )));
        }
        // ureq 3 with our own TLS step (tls.rs): the operator's CA, client certificate and
        // server name, verification always on. Statuses are answers, not errors; redirects are
        // answers too (a leader proxy never redirects; anything else is reported as it is).
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(cfg.connect_timeout))
            .max_redirects(0)
            .max_redirects_will_error(false)
            .http_status_as_error(false)
            .user_agent(concat!("shipwatch/", env!("CARGO_PKG_VERSION")))
            .build();
        use ureq::unversioned::transport::Connector as _;
        let connector =
            ureq::unversioned::transport::TcpConnector::default().chain(tls::Tls::new(&cfg)?);
        let agent = ureq::Agent::with_parts(
            config,
            connector,
            ureq::unversioned::resolver::DefaultResolver::default(),
        );
        let mut redactor = Redactor::new();
        match &cfg.auth {
            Auth::Basic { user, password } => redactor.add_basic_auth(user, password.expose()),
            other => {
                if let Some(s) = other.secret() {
                    redactor.add(s);
                }
            }
        }
        if cfg.secret_path {
            for b in &bases {
                if let Some(path) = b.splitn(4, '/').nth(3).filter(|p| !p.is_empty()) {
                    redactor.add_with(&format!("/{path}"), "/***");
                }
            }
        }
        Ok(HttpClient {
            agent,
            bases,
            cfg,
            deadline: None,
            preferred: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            redactor,
        })
    }

    /// A URL as messages show it: no credentials, no secret path.
    fn show(&self, url: &str) -> String {
        self.redactor.scrub(&redact_url(url))
    }

    /// Bounds every request and retry by `deadline`.
    pub fn with_deadline(mut self, deadline: Deadline) -> HttpClient {
        self.deadline = Some(deadline);
        self
    }

    pub fn service(&self) -> &'static str {
        self.cfg.service
    }

    /// The base URL in use (the last that answered).
    pub fn base(&self) -> &str {
        &self.bases[self.preferred.load(Ordering::Relaxed) % self.bases.len()]
    }

    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    /// Requests sent so far (including retries).
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn get(&self, path: &str) -> Result<HttpResponse, HttpError> {
        self.send(HttpRequest::new("GET", path))
    }

    /// Sends `req`, failing over and retrying on connection errors and `retry_statuses`. Any
    /// other status is returned as `Ok` for the caller to interpret (404, 409 and 422 mean
    /// different things to different callers).
    pub fn send(&self, req: HttpRequest<'_>) -> Result<HttpResponse, HttpError> {
        let start = self.preferred.load(Ordering::Relaxed);
        let n = self.bases.len();
        let mut last_reason = String::new();
        let mut last_url = format!("{}{}", self.bases[start % n], req.path);
        let attempts = self.cfg.backoff.attempts.max(1);
        for attempt in 1..=attempts {
            for k in 0..n {
                let i = (start + k) % n;
                let url = format!("{}{}", self.bases[i], req.path);
                last_url = url.clone();
                if self.deadline.is_some_and(|d| d.expired()) {
                    return Err(self.deadline_error(&req, &url));
                }
                match self.send_once(&req, &url) {
                    Ok(resp) if self.cfg.retry_statuses.contains(&resp.status) => {
                        last_reason = format!(
                            "HTTP {} {}",
                            resp.status,
                            self.redactor
                                .scrub(resp.text().trim())
                                .chars()
                                .take(200)
                                .collect::<String>()
                        );
                        log::warn!(
                            "{} {} {}: {} (try {attempt}/{attempts})",
                            self.cfg.service,
                            req.method,
                            self.show(&url),
                            last_reason
                        );
                    }
                    Ok(resp) => {
                        self.preferred.store(i, Ordering::Relaxed);
                        return Ok(resp);
                    }
                    Err(reason) => {
                        log::warn!(
                            "{} {} {}: {} (try {attempt}/{attempts})",
                            self.cfg.service,
                            req.method,
                            self.show(&url),
                            reason
                        );
                        last_reason = reason;
                    }
                }
            }
            if attempt < attempts {
                let wait = self.cfg.backoff.delay(attempt);
                if self.deadline.is_some_and(|d| d.remaining() <= wait) {
                    return Err(self.deadline_error(&req, &last_url));
                }
                std::thread::sleep(wait);
            }
        }
        Err(HttpError::Unavailable {
            service: self.cfg.service,
            method: req.method.to_string(),
            url: self.show(&last_url),
            reason: last_reason,
        })
    }

    fn deadline_error(&self, req: &HttpRequest<'_>, url: &str) -> HttpError {
        HttpError::Deadline {
            service: self.cfg.service,
            method: req.method.to_string(),
            url: self.show(url),
        }
    }

    /// One try against one server. `Err` is a transport failure, as text.
    fn send_once(&self, req: &HttpRequest<'_>, url: &str) -> Result<HttpResponse, String> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut timeout = req.timeout.unwrap_or(self.cfg.timeout);
        if let Some(d) = &self.deadline {
            timeout = d.cap(timeout).max(Duration::from_millis(1));
        }
        let mut full = url.to_string();
        for (k, v) in &self.cfg.default_query {
            // A parameter the caller set itself wins.
            let set = url.contains(&format!("?{k}=")) || url.contains(&format!("&{k}="));
            if !set {
                full.push(if full.contains('?') { '&' } else { '?' });
                full.push_str(&format!("{}={}", encode_query(k), encode_query(v)));
            }
        }
        let mut b = ureq::http::Request::builder()
            .method(req.method)
            .uri(full.as_str());
        if let Some((name, value)) = self.cfg.auth.header() {
            b = b.header(name, value);
        }
        for (name, value) in &req.headers {
            b = b.header(*name, value.as_str());
        }
        let result = match &req.body {
            Some(body) => b
                .header("Content-Type", req.content_type)
                .body(body.clone())
                .map_err(|e| e.to_string())
                .and_then(|r| self.run(r, timeout)),
            None => b
                .body(())
                .map_err(|e| e.to_string())
                .and_then(|r| self.run(r, timeout)),
        };
        let mut resp = result?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        // Sized from Content-Length when the server sends one (at most 64 MiB up front): a
        // 10 MB answer (10,000 tasks) is read into one allocation instead of a series of
        // doublings whose freed buffers stay in the heap (issue 13, peak RSS).
        let expected = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            .min(self.cfg.max_body)
            .min(64 << 20);
        let mut body = Vec::with_capacity(expected as usize);
        let read = std::io::Read::read_to_end(
            &mut resp
                .body_mut()
                .with_config()
                .limit(self.cfg.max_body)
                .reader(),
            &mut body,
        )
        // A limit or transport error comes back wrapped in io::Error: unwrapped as read_to_vec
        // does.
        .map_err(ureq::Error::from);
        let mut body = match read {
            Ok(_) => body,
            Err(ureq::Error::BodyExceedsLimit(_)) => {
                return Err(format!("answer larger than {} bytes", self.cfg.max_body))
            }
            Err(e) => {
                return Err(format!(
                    "reading the answer failed: {}",
                    transport_reason(&e)
                ))
            }
        };
        if body.len() as u64 > self.cfg.max_body {
            return Err(format!("answer larger than {} bytes", self.cfg.max_body));
        }
        if !(200..300).contains(&status) {
            // Error bodies only ever become messages; servers and proxies echo requests back
            // (headers included), so scrub them once here for every caller.
            if let Ok(text) = std::str::from_utf8(&body) {
                let clean = self.redactor.scrub(text);
                if clean != text {
                    body = clean.into_bytes();
                }
            }
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
            method: req.method.to_string(),
            url: self.show(url),
            service: self.cfg.service,
            redactor: self.redactor.clone(),
        })
    }
}

/// Redirects [`HttpClient::open_stream`] follows (a standby's 302 to the leader is one).
const MAX_REDIRECTS: usize = 3;

/// An answer whose body is read as it arrives (Marathon's `/v2/events`), not read in full.
pub struct HttpStream {
    pub status: u16,
    /// The URL that answered (credentials removed), for messages.
    pub url: String,
    pub reader: Box<dyn Read + Send>,
}

impl HttpClient {
    /// Opens a long-lived `GET path` whose body is an endless stream: each base URL is tried
    /// once, from the last that worked (a standby of an HA set may refuse or answer 502/503),
    /// and a redirect is followed (Marathon 1.7+ standbys answer `/v2/events` with a 302 to
    /// the leader; the credentials are sent again, as marathon-python does, but never from
    /// https down to http). No overall timeout: a read that waits longer than `idle` for any
    /// byte fails with `io::ErrorKind::TimedOut` or `WouldBlock` (a stalled stream). Errors:
    /// `Unavailable` when no server answered 2xx, `Status` for any other answer.
    pub fn open_stream(
        &self,
        path: &str,
        headers: &[(&str, String)],
        idle: Duration,
    ) -> Result<HttpStream, HttpError> {
        // An agent of its own: no overall timeout, an idle limit per read instead.
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(self.cfg.connect_timeout))
            .timeout_per_read(Some(idle))
            .max_redirects(0)
            .max_redirects_will_error(false)
            .http_status_as_error(false)
            .user_agent(concat!("shipwatch/", env!("CARGO_PKG_VERSION")))
            .build();
        use ureq::unversioned::transport::Connector as _;
        let tls = tls::Tls::new(&self.cfg).map_err(|e| HttpError::Unavailable {
            service: self.cfg.service,
            method: "GET".into(),
            url: self.show(&format!("{}{}", self.bases[0], path)),
            reason: e.to_string(),
        })?;
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::TcpConnector::default().chain(tls),
            ureq::unversioned::resolver::DefaultResolver::default(),
        );
        let start = self.preferred.load(Ordering::Relaxed);
        let n = self.bases.len();
        let mut reasons = Vec::new();
        for k in 0..n {
            let i = (start + k) % n;
            let mut url = format!("{}{}", self.bases[i], path);
            for hop in 0..=MAX_REDIRECTS {
                if hop == MAX_REDIRECTS {
                    reasons.push(format!(
                        "{}: more than {MAX_REDIRECTS} redirects",
                        self.show(&url)
                    ));
                    break;
                }
                self.requests.fetch_add(1, Ordering::Relaxed);
                let mut r = agent.get(&url);
                if let Some((name, value)) = self.cfg.auth.header() {
                    r = r.header(name, value.as_str());
                }
                for (name, value) in headers {
                    r = r.header(*name, value.as_str());
                }
                let resp = match r.call() {
                    Ok(resp) => resp,
                    Err(e) => {
                        let reason = self.redactor.scrub(&transport_reason(&e));
                        reasons.push(format!("{}: {reason}", self.show(&url)));
                        break;
                    }
                };
                let status = resp.status().as_u16();
                if (300..400).contains(&status) {
                    let next = resp
                        .headers()
                        .get("Location")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let downgrade = url.starts_with("https://") && next.starts_with("http://");
                    if !(next.starts_with("http://") || next.starts_with("https://")) || downgrade {
                        reasons.push(format!(
                            "{}: HTTP {status} to {} (not followed)",
                            self.show(&url),
                            self.show(&next)
                        ));
                        break;
                    }
                    url = next;
                    continue;
                }
                let (_, body) = resp.into_parts();
                if (200..300).contains(&status) {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(HttpStream {
                        status,
                        url: self.show(&url),
                        reader: Box::new(IdleAsTimedOut(body.into_reader())),
                    });
                }
                let mut text = String::new();
                let _ = body.into_reader().take(600).read_to_string(&mut text);
                let text = self.redactor.scrub(text.trim());
                if self.cfg.retry_statuses.contains(&status) {
                    reasons.push(format!("{}: HTTP {status} {text}", self.show(&url)));
                    break;
                }
                return Err(HttpError::Status {
                    service: self.cfg.service,
                    method: "GET".into(),
                    url: self.show(&url),
                    status,
                    body: text,
                });
            }
        }
        Err(HttpError::Unavailable {
            service: self.cfg.service,
            method: "GET".into(),
            url: self.show(&format!("{}{}", self.bases[start % n], path)),
            reason: reasons.join("; "),
        })
    }
}

impl HttpClient {
    /// One request on the agent, bounded by `timeout` as a whole; errors without the URL.
    fn run(
        &self,
        r: ureq::http::Request<impl ureq::AsSendBody>,
        timeout: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, String> {
        let r = self
            .agent
            .configure_request(r)
            .timeout_global(Some(timeout))
            .build();
        self.agent
            .run(r)
            .map_err(|e| self.redactor.scrub(&transport_reason(&e)))
    }
}

/// A stream reader whose idle timeout (ureq's per-read timeout, an `Other` error) reads as
/// `io::ErrorKind::TimedOut`, as a socket's read timeout does.
struct IdleAsTimedOut<R>(R);

impl<R: Read> Read for IdleAsTimedOut<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            let timed_out = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<ureq::Error>())
                .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)));
            if timed_out {
                std::io::Error::new(std::io::ErrorKind::TimedOut, e.to_string())
            } else {
                e
            }
        })
    }
}

/// Percent-encodes a URL path (KV keys, app ids, service ids), keeping `/`: whatever a key or
/// id holds, it cannot add a query string or another path.
pub fn encode_path(s: &str) -> String {
    encode(s, true)
}

/// Percent-encodes one query parameter value.
pub fn encode_query(s: &str) -> String {
    encode(s, false)
}

fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// ureq's error without the URL (which the caller prints, redacted).
fn transport_reason(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::Io(io) => format!("i/o error: {io}"),
        ureq::Error::Rustls(t) => format!("TLS: {t}"),
        ureq::Error::Tls(t) => format!("TLS: {t}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devstack::http::{Fault, Request, Response, Server};
    use std::path::Path;
    use std::sync::Arc;

    fn fast(service: &'static str) -> HttpConfig {
        let mut c = HttpConfig::new(service);
        c.backoff = Backoff {
            attempts: 3,
            base: Duration::from_millis(1),
            max: Duration::from_millis(5),
        };
        c.timeout = Duration::from_secs(5);
        c
    }

    /// Consul's `dc`, `ns` and `partition` go on every request, unless the caller set one.
    #[test]
    fn default_query_parameters_are_added_once() {
        let s = Server::start(
            "127.0.0.1:0",
            Arc::new(|r: Request| {
                let q: Vec<String> = r.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
                Response::text(200, &q.join("&"))
            }),
        )
        .unwrap();
        let mut cfg = fast("consul");
        cfg.default_query = vec![("dc".into(), "dc2".into()), ("ns".into(), "team-a".into())];
        let c = HttpClient::new(&[s.url()], cfg).unwrap();
        assert_eq!(
            c.get("/v1/kv/x?recurse").unwrap().text(),
            "recurse=&dc=dc2&ns=team-a"
        );
        assert_eq!(c.get("/v1/kv/x?dc=dc9").unwrap().text(), "dc=dc9&ns=team-a");
    }

    /// Real TLS with a local CA: a client certificate gets through a listener that requires
    /// one, a missing or foreign one does not, and a configured server name is verified.
    #[test]
    fn client_certificates_and_server_names() {
        let dir = tempfile::tempdir().unwrap();
        let pki = devstack::tls::TestPki::generate(dir.path(), &["consul.test"]).unwrap();
        let backend = echo();
        let front = devstack::tls::TlsFront::start(backend.addr(), &pki, true).unwrap();
        let client = |cert: Option<(&Path, &Path)>, name: Option<&str>| {
            let mut cfg = fast("consul");
            cfg.backoff.attempts = 1;
            cfg.ca_file = Some(pki.ca_cert.clone());
            cfg.client_cert = cert.map(|(c, k)| (c.to_path_buf(), k.to_path_buf()));
            cfg.server_name = name.map(str::to_string);
            HttpClient::new(&[front.url()], cfg).unwrap()
        };
        let mine = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
        let theirs = Some((pki.stranger_cert.as_path(), pki.stranger_key.as_path()));
        // The certificate names consul.test, the URL says 127.0.0.1.
        assert_eq!(
            client(mine, Some("consul.test")).get("/").unwrap().status,
            200
        );
        let e = client(mine, None).get("/").unwrap_err();
        assert!(e.to_string().contains("consul unavailable"), "{e}");
        assert!(client(None, Some("consul.test")).get("/").is_err());
        assert!(client(theirs, Some("consul.test")).get("/").is_err());
        assert!(client(mine, Some("other.test")).get("/").is_err());
        // Certificate and key files that are not PEM are a configuration error.
        let mut cfg = fast("consul");
        cfg.client_cert = Some((pki.ca_cert.clone(), dir.path().join("missing.pem")));
        assert!(HttpClient::new(&[front.url()], cfg).is_err());
    }

    fn echo() -> Server {
        Server::start(
            "127.0.0.1:0",
            Arc::new(|r: Request| Response::text(200, r.header("authorization").unwrap_or("none"))),
        )
        .unwrap()
    }

    /// Marathon's event stream through an HA set: a dead URL, then a standby that redirects
    /// to the leader (302, Marathon 1.7+) with the credentials sent again; the body is read as
    /// it arrives and a silence longer than `idle` is a read timeout.
    #[test]
    fn open_stream_follows_the_standby_redirect_and_times_out_on_silence() {
        use devstack::marathon::{Marathon, MarathonOptions};
        let auth = Some(("u".to_string(), "pw".to_string()));
        let leader = Marathon::start(MarathonOptions {
            basic_auth: auth.clone(),
            ..Default::default()
        })
        .unwrap();
        let standby = Marathon::start(MarathonOptions {
            basic_auth: auth,
            proxy_to: Some(leader.url()),
            ..Default::default()
        })
        .unwrap();
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_url = format!("http://{}", dead.local_addr().unwrap());
        drop(dead);
        let mut cfg = fast("marathon");
        cfg.auth = Auth::Basic {
            user: "u".into(),
            password: Secret::new("pw".to_string()),
        };
        let c = HttpClient::new(&[dead_url, standby.url()], cfg).unwrap();
        let accept = [("Accept", "text/event-stream".to_string())];
        let mut s = c
            .open_stream("/v2/events", &accept, Duration::from_millis(300))
            .unwrap();
        assert_eq!(s.status, 200);
        assert!(s.url.starts_with(&leader.url()), "{}", s.url);
        let mut buf = [0u8; 256];
        let n = s.reader.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("event_stream_attached"));
        // The leader's heartbeat is 10 s: the next read outlasts `idle`.
        let e = loop {
            match s.reader.read(&mut buf) {
                Ok(0) => panic!("stream ended"),
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
            "{e:?}"
        );
        // Without a leader: every URL answers 503, an Unavailable error naming why.
        leader.set_leader(devstack::marathon::Leader::None);
        let e = c
            .open_stream("/v2/events", &accept, Duration::from_millis(300))
            .err()
            .unwrap();
        assert!(matches!(e, HttpError::Unavailable { .. }), "{e}");
        assert!(e.to_string().contains("HTTP 503"), "{e}");
        assert!(!e.to_string().contains("pw"), "{e}");
    }

    #[test]
    fn fails_over_to_the_next_url_on_refused_connections() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_url = format!("http://{}", dead.local_addr().unwrap());
        drop(dead);
        let live = echo();
        let c = HttpClient::new(&[dead_url, live.url()], fast("marathon")).unwrap();
        let r = c.get("/v2/apps").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(c.base(), live.url());
    }

    #[test]
    fn retries_503_then_succeeds() {
        let live = echo();
        live.faults().fail_next(
            2,
            Fault::Status {
                status: 503,
                body: "busy".into(),
            },
        );
        let c = HttpClient::new(&[live.url()], fast("consul")).unwrap();
        assert_eq!(c.get("/x").unwrap().status, 200);
        assert_eq!(c.request_count(), 3);
    }

    #[test]
    fn gives_up_with_unavailable_and_no_credentials_in_the_message() {
        let live = echo();
        live.faults().set_refuse(true);
        let url = format!("http://admin:hunter22@{}", live.addr());
        let c = HttpClient::new(&[url], fast("marathon")).unwrap();
        let err = c.get("/v2/apps").unwrap_err();
        assert!(matches!(err, HttpError::Unavailable { .. }), "{err}");
        assert_eq!(err.exit(), Exit::Unavailable);
        assert!(!err.to_string().contains("hunter22"), "{err}");
        assert!(!err.to_string().contains("admin"), "{err}");
    }

    #[test]
    fn url_credentials_become_basic_auth() {
        let live = echo();
        let url = format!("http://admin:hunter22@{}", live.addr());
        let c = HttpClient::new(&[url], fast("marathon")).unwrap();
        let body = c.get("/").unwrap().text();
        assert_eq!(
            body,
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("admin:hunter22")
            )
        );
        assert!(!format!("{c:?}").contains("hunter22"));
    }

    #[test]
    fn non_retryable_statuses_come_back_to_the_caller() {
        let s = Server::start(
            "127.0.0.1:0",
            Arc::new(|_r: Request| Response::text(409, "locked by token hunter22")),
        )
        .unwrap();
        let mut cfg = fast("marathon");
        cfg.auth = Auth::Bearer(Secret::new("hunter22"));
        let c = HttpClient::new(&[s.url()], cfg).unwrap();
        let r = c.get("/v2/apps/x").unwrap();
        assert_eq!(r.status, 409);
        assert_eq!(c.request_count(), 1);
        let e = r.error();
        assert!(!e.to_string().contains("hunter22"), "{e}");
    }

    #[test]
    fn a_large_answer_is_read_whole_into_one_buffer_and_the_limit_still_holds() {
        let big = "x".repeat(1 << 20);
        let s = Server::start(
            "127.0.0.1:0",
            Arc::new(move |_r: Request| Response::text(200, &big)),
        )
        .unwrap();
        let mut cfg = fast("marathon");
        cfg.max_body = 2 << 20;
        let c = HttpClient::new(&[s.url()], cfg.clone()).unwrap();
        let r = c.get("/v2/apps").unwrap();
        assert_eq!(r.body.len(), 1 << 20);
        // Sized from Content-Length: no doubling left a larger buffer behind.
        assert_eq!(r.body.capacity(), r.body.len());
        cfg.max_body = 1000;
        let c = HttpClient::new(&[s.url()], cfg).unwrap();
        let e = c.get("/v2/apps").unwrap_err();
        assert!(
            e.to_string().contains("answer larger than 1000 bytes"),
            "{e}"
        );
    }

    #[test]
    fn deadline_bounds_retries() {
        let live = echo();
        live.faults().set_refuse(true);
        let mut cfg = fast("chronos");
        cfg.backoff = Backoff {
            attempts: 100,
            base: Duration::from_millis(50),
            max: Duration::from_millis(50),
        };
        let c = HttpClient::new(&[live.url()], cfg)
            .unwrap()
            .with_deadline(Deadline::after(Duration::from_millis(200)));
        let t = std::time::Instant::now();
        let err = c.get("/").unwrap_err();
        assert!(matches!(err, HttpError::Deadline { .. }), "{err}");
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn encoding_keeps_keys_inside_the_path() {
        assert_eq!(encode_path("jobs/main/a b.json"), "jobs/main/a%20b.json");
        assert_eq!(encode_path("a?force=true#x"), "a%3Fforce%3Dtrue%23x");
        assert_eq!(encode_query("a/b&c"), "a%2Fb%26c");
    }

    #[test]
    fn rejects_non_http_urls() {
        assert!(HttpClient::new(&["unix:///tmp/consul.sock".into()], fast("consul")).is_err());
        assert!(HttpClient::new(&[], fast("consul")).is_err());
    }
}
