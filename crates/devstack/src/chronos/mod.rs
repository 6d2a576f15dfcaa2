//! The Chronos double (scheduler jobs, iso8601, dependency, run, delete).
//!
//! Behaves like Chronos 3.0.x under `/v1/scheduler` or, with `api_v2`, like 2.4/2.5 under
//! `/scheduler` (reference §3; `Iso8601JobResource.scala`, `DependentJobResource.scala`,
//! `JobManagementResource.scala`). Jobs get Chronos' defaults and server counters on GET, and
//! the stored schedule is rewritten as the job runs (`run_job`). Not a scheduler: nothing runs
//! by itself.

use crate::http::{Faults, Request, Response, Server};
use crate::marathon::util::{iso_ms, now_iso, parse_iso, Period};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How to start a Chronos double.
#[derive(Clone)]
pub struct ChronosOptions {
    /// `127.0.0.1:0` for an ephemeral port.
    pub bind: String,
    /// Serve the 2.x API: only `/scheduler/*` exists and `/v1/*` answers 404.
    pub api_v2: bool,
    /// `--http_credentials user:pass` (BASIC auth on every path).
    pub basic_auth: Option<(String, String)>,
}

/// Credentials are redacted: options may end up in logs.
impl std::fmt::Debug for ChronosOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChronosOptions")
            .field("bind", &self.bind)
            .field("api_v2", &self.api_v2)
            .field(
                "basic_auth",
                &self.basic_auth.as_ref().map(|(u, _)| (u, "<redacted>")),
            )
            .finish()
    }
}

impl Default for ChronosOptions {
    fn default() -> Self {
        ChronosOptions {
            bind: "127.0.0.1:0".into(),
            api_v2: false,
            basic_auth: None,
        }
    }
}

struct Inner {
    opts: ChronosOptions,
    /// Jobs by name, in creation order.
    jobs: Mutex<Map<String, Value>>,
    requests: AtomicU64,
    writes: AtomicU64,
}

/// A running Chronos double.
pub struct Chronos {
    inner: Arc<Inner>,
    server: Server,
}

impl Chronos {
    pub fn start(opts: ChronosOptions) -> std::io::Result<Chronos> {
        let inner = Arc::new(Inner {
            opts,
            jobs: Mutex::new(Map::new()),
            requests: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        });
        let h = Arc::clone(&inner);
        let server = Server::start(
            &inner.opts.bind,
            Arc::new(move |req: Request| {
                h.requests.fetch_add(1, Ordering::Relaxed);
                handle(&h, req)
            }),
        )?;
        Ok(Chronos { inner, server })
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    pub fn faults(&self) -> &Faults {
        self.server.faults()
    }

    /// All jobs as `GET .../scheduler/jobs` shows them.
    pub fn jobs(&self) -> Vec<Value> {
        let jobs = self.inner.lock();
        jobs.values().map(render).collect()
    }

    /// Simulates a successful scheduled run: counters updated, and the schedule moved on by one
    /// period with one repetition fewer (`JobUtils.skipForward` / `Iso8601Expressions.create`).
    pub fn run_job(&self, name: &str) {
        let mut jobs = self.inner.lock();
        if let Some(Value::Object(job)) = jobs.get_mut(name) {
            record_success(job);
            let next = job
                .get("schedule")
                .and_then(Value::as_str)
                .and_then(Schedule::parse)
                .map(|s| s.advanced().to_string());
            if let Some(next) = next {
                job.insert("schedule".into(), json!(next));
            }
        }
    }

    /// State-changing requests served (POST/PUT/DELETE under the scheduler prefix).
    pub fn write_count(&self) -> u64 {
        self.inner.writes.load(Ordering::Relaxed)
    }

    /// Every request that reached the double (after injected faults).
    pub fn request_count(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Map<String, Value>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn record_success(job: &mut Map<String, Value>) {
    let n = job.get("successCount").and_then(Value::as_u64).unwrap_or(0);
    job.insert("successCount".into(), json!(n + 1));
    job.insert("lastSuccess".into(), json!(now_iso()));
    job.insert("errorsSinceLastSuccess".into(), json!(0));
}

// ---------------------------------------------------------------------------------------------
// Schedules: `R[n]/<start>/<period>` (Iso8601Expressions.scala, regex `(R[0-9]*)/(.*)/(P.*)`)

#[derive(Debug, Clone)]
struct Schedule {
    /// None: repeat forever (bare `R`).
    reps: Option<u64>,
    start_ms: i64,
    period_text: String,
    period: Period,
}

impl Schedule {
    fn parse(s: &str) -> Option<Schedule> {
        let mut parts = s.splitn(3, '/');
        let r = parts.next()?;
        let start = parts.next()?;
        let period_text = parts.next()?;
        let reps = match r.strip_prefix('R')? {
            "" => None,
            n => Some(n.parse().ok()?),
        };
        // An empty start means now.
        let start_ms = if start.is_empty() {
            crate::marathon::util::now_ms()
        } else {
            parse_iso(start)?
        };
        let period = Period::parse(period_text)?;
        if period.is_zero() {
            return None;
        }
        Some(Schedule {
            reps,
            start_ms,
            period_text: period_text.to_string(),
            period,
        })
    }

    fn advanced(&self) -> Schedule {
        Schedule {
            reps: self.reps.map(|n| n.saturating_sub(1)),
            start_ms: self.period.add_to(self.start_ms),
            ..self.clone()
        }
    }
}

impl std::fmt::Display for Schedule {
    /// Printed the way Chronos re-prints a schedule: start with milliseconds, in UTC.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.reps.map(|n| n.to_string()).unwrap_or_default();
        write!(f, "R{r}/{}/{}", iso_ms(self.start_ms), self.period_text)
    }
}

// ---------------------------------------------------------------------------------------------
// Routing

enum Kind {
    Scheduled,
    Dependent,
}

fn handle(inner: &Inner, req: Request) -> Response {
    if let Some(resp) = check_auth(&inner.opts, &req) {
        return resp;
    }
    let prefix = if inner.opts.api_v2 {
        "/scheduler"
    } else {
        "/v1/scheduler"
    };
    if req.path == "/ping" && req.method == "GET" {
        return Response::new(200, "text/plain", "pong");
    }
    let Some(rest) = req.path.strip_prefix(prefix) else {
        return not_found();
    };
    let rest = rest.trim_end_matches('/').to_string();
    let m = req.method.as_str();
    let write = matches!(m, "POST" | "PUT" | "DELETE");
    if write {
        inner.writes.fetch_add(1, Ordering::Relaxed);
    }
    match (m, rest.as_str()) {
        ("GET", "/jobs") => {
            let jobs = inner.lock();
            Response::json(200, &Value::Array(jobs.values().map(render).collect()))
        }
        ("GET", "/jobs/search") => search(inner, &req),
        ("GET", "/leader") => Response::json(200, &json!({"leader": "127.0.0.1:4400"})),
        ("POST", "/iso8601") => upsert(inner, &req, Kind::Scheduled),
        ("POST", "/dependency") => upsert(inner, &req, Kind::Dependent),
        // 2.x also accepted PUT on these paths.
        ("PUT", "/iso8601") if inner.opts.api_v2 => upsert(inner, &req, Kind::Scheduled),
        ("PUT", "/dependency") => upsert(inner, &req, Kind::Dependent),
        (_, r) if r.starts_with("/job/") => {
            let name = r["/job/".len()..].to_string();
            match m {
                "GET" if !inner.opts.api_v2 => get_job(inner, &name),
                "DELETE" => delete_job(inner, &name),
                "PUT" => run_now(inner, &name),
                _ => not_found(),
            }
        }
        _ => not_found(),
    }
}

fn not_found() -> Response {
    Response::new(
        404,
        "text/html;charset=ISO-8859-1",
        "<html><body><h2>HTTP ERROR 404</h2><p>Not Found</p></body></html>",
    )
}

fn check_auth(opts: &ChronosOptions, req: &Request) -> Option<Response> {
    let (user, pass) = opts.basic_auth.as_ref()?;
    use base64::Engine;
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let ok = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Basic "))
        .is_some_and(|g| g.trim() == expected);
    if ok {
        return None;
    }
    // Jetty BASIC auth; `--http_realm` defaults to "Chronos" (UNCONFIRMED: exact body).
    Some(
        Response::new(
            401,
            "text/html;charset=ISO-8859-1",
            "<html><body><h2>HTTP ERROR 401</h2><p>Unauthorized</p></body></html>",
        )
        .with_header("WWW-Authenticate", "Basic realm=\"Chronos\""),
    )
}

/// A 400 as each version sends it: 3.x wraps the text in `ApiResult` (`{"message","status"}`),
/// 2.x sends the bare exception message.
fn bad_request(inner: &Inner, message: &str) -> Response {
    if inner.opts.api_v2 {
        Response::new(400, "application/json", message.as_bytes().to_vec())
    } else {
        Response::json(400, &json!({"message": message, "status": "Bad Request"}))
    }
}

/// `require(...)` failing inside a 3.x resource: the body carries the stack trace of the
/// IllegalArgumentException (ExceptionUtils.getStackTrace); 2.x sends `ex.getMessage`.
fn required(inner: &Inner, resource: &str, message: &str) -> Response {
    let msg = format!("requirement failed: {message}");
    if inner.opts.api_v2 {
        return bad_request(inner, &msg);
    }
    let trace = format!(
        "java.lang.IllegalArgumentException: {msg}\n\tat scala.Predef$.require(Predef.scala:224)\n\tat org.apache.mesos.chronos.scheduler.api.{resource}\n"
    );
    bad_request(inner, &trace)
}

/// A 500 (`Response.serverError()`): empty in 2.x, ApiResult in 3.x.
fn server_error(inner: &Inner, message: &str) -> Response {
    if inner.opts.api_v2 {
        return Response::empty(500);
    }
    Response::json(
        500,
        &json!({"message": format!("java.lang.Exception: {message}\n"), "status": "Internal Server Error"}),
    )
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '-')
}

fn upsert(inner: &Inner, req: &Request, kind: Kind) -> Response {
    let job = match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => m,
        // Jackson fails to map the entity: Jersey answers 400 before the resource runs.
        _ => return Response::empty(400),
    };
    let name = job
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut jobs = inner.lock();
    let existing = jobs.get(&name).cloned();
    let resource = match kind {
        Kind::Scheduled => "Iso8601JobResource.post(Iso8601JobResource.scala)",
        Kind::Dependent => "DependentJobResource.handleRequest(DependentJobResource.scala)",
    };
    if existing.is_none() && !name_ok(&name) {
        return required(
            inner,
            resource,
            r"the job's name is invalid. Allowed names: '([\w\.-]+)'",
        );
    }
    match kind {
        Kind::Scheduled => {
            let sched = job.get("schedule").and_then(Value::as_str).unwrap_or("");
            let parsed = Schedule::parse(sched);
            let Some(parsed) = parsed else {
                if inner.opts.api_v2 {
                    // 2.x: 400 with an empty body (reference §3).
                    return Response::empty(400);
                }
                return bad_request(inner, &format!("Cannot parse schedule '{sched}' (wtf bro)"));
            };
            if parsed.start_ms < 0 {
                return bad_request(inner, &format!("Cannot parse schedule '{sched}' (wtf bro)"));
            }
        }
        Kind::Dependent => {
            let parents: Vec<String> = job
                .get("parents")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if parents.is_empty() {
                return if existing.is_some() {
                    required(inner, resource, "Error, parent does not exist")
                } else {
                    server_error(inner, "Error, parent does not exist")
                };
            }
            if let Some(p) = parents.iter().find(|p| !jobs.contains_key(p.as_str())) {
                // The job graph throws NoSuchElementException; the resource answers 500.
                return server_error(
                    inner,
                    &format!("Vertex: {p} not found in graph. JobSchedule rejected!"),
                );
            }
        }
    }
    let has = |k: &str| {
        job.get(k)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    if has("uris") && has("fetch") {
        return bad_request(
            inner,
            &format!("Tried to add both uri (deprecated) and fetch parameters on {name}"),
        );
    }
    let stored = store(job, existing.as_ref(), &kind);
    jobs.insert(name, Value::Object(stored));
    Response::empty(204)
}

/// Keeps the submitted fields, drops the other kind's fields and carries the server counters
/// over from the job being replaced.
fn store(mut job: Map<String, Value>, existing: Option<&Value>, kind: &Kind) -> Map<String, Value> {
    match kind {
        Kind::Scheduled => {
            job.remove("parents");
        }
        Kind::Dependent => {
            job.remove("schedule");
            job.remove("scheduleTimeZone");
        }
    }
    // Epsilon and async are not part of 3.x jobs (mesos/chronos#734).
    job.remove("epsilon");
    job.remove("async");
    for k in [
        "successCount",
        "errorCount",
        "lastSuccess",
        "lastError",
        "errorsSinceLastSuccess",
    ] {
        match existing.and_then(|e| e.get(k)) {
            Some(v) => {
                job.insert(k.into(), v.clone());
            }
            None => {
                job.remove(k);
            }
        }
    }
    job
}

fn as_f64(v: Option<&Value>) -> f64 {
    match v {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// A job as Chronos serializes it (JobSerializer): every field present, server counters,
/// numbers as doubles, and fetch/uris mirrored into each other on REST GET.
fn render(stored: &Value) -> Value {
    let j = stored.as_object().cloned().unwrap_or_default();
    let s = |k: &str, d: &str| j.get(k).and_then(Value::as_str).unwrap_or(d).to_string();
    let b = |k: &str, d: bool| j.get(k).and_then(Value::as_bool).unwrap_or(d);
    let a = |k: &str| {
        j.get(k)
            .filter(|v| v.is_array())
            .cloned()
            .unwrap_or(json!([]))
    };
    let u = |k: &str| j.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut fetch = a("fetch");
    let mut uris = a("uris");
    if fetch.as_array().is_some_and(Vec::is_empty) {
        fetch = Value::Array(
            uris.as_array()
                .unwrap()
                .iter()
                .map(|u| json!({"uri": u, "executable": false, "cache": false, "extract": true}))
                .collect(),
        );
    } else {
        uris = Value::Array(
            fetch
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|f| f.get("uri").cloned())
                .collect(),
        );
    }
    let mut o = Map::new();
    o.insert("name".into(), json!(s("name", "")));
    o.insert("command".into(), json!(s("command", "")));
    o.insert("shell".into(), json!(b("shell", true)));
    o.insert("executor".into(), json!(s("executor", "")));
    o.insert("executorFlags".into(), json!(s("executorFlags", "")));
    o.insert("taskInfoData".into(), json!(s("taskInfoData", "")));
    o.insert(
        "retries".into(),
        json!(j.get("retries").and_then(Value::as_u64).unwrap_or(2)),
    );
    o.insert("owner".into(), json!(s("owner", "")));
    o.insert("ownerName".into(), json!(s("ownerName", "")));
    o.insert("description".into(), json!(s("description", "")));
    o.insert("successCount".into(), json!(u("successCount")));
    o.insert("errorCount".into(), json!(u("errorCount")));
    o.insert("lastSuccess".into(), json!(s("lastSuccess", "")));
    o.insert("lastError".into(), json!(s("lastError", "")));
    o.insert(
        "errorsSinceLastSuccess".into(),
        json!(u("errorsSinceLastSuccess")),
    );
    for k in ["cpus", "disk", "mem"] {
        o.insert(k.into(), json!(as_f64(j.get(k))));
    }
    o.insert("disabled".into(), json!(b("disabled", false)));
    o.insert("softError".into(), json!(b("softError", false)));
    o.insert(
        "dataProcessingJobType".into(),
        json!(b("dataProcessingJobType", false)),
    );
    o.insert("fetch".into(), fetch);
    o.insert("uris".into(), uris);
    o.insert("environmentVariables".into(), a("environmentVariables"));
    o.insert("arguments".into(), a("arguments"));
    o.insert("highPriority".into(), json!(b("highPriority", false)));
    o.insert("runAsUser".into(), json!(s("runAsUser", "root")));
    o.insert("concurrent".into(), json!(b("concurrent", false)));
    if let Some(c) = j.get("container").filter(|c| c.is_object()) {
        o.insert("container".into(), c.clone());
    }
    o.insert("constraints".into(), a("constraints"));
    if let Some(p) = j.get("parents") {
        o.insert("parents".into(), p.clone());
    } else {
        o.insert("schedule".into(), json!(s("schedule", "")));
        o.insert("scheduleTimeZone".into(), json!(s("scheduleTimeZone", "")));
    }
    // Fields the serializer does not know are not echoed back.
    Value::Object(o)
}

fn search(inner: &Inner, req: &Request) -> Response {
    let q = |k: &str| req.query(k).unwrap_or("").to_lowercase();
    let (name, command, any) = (q("name"), q("command"), q("any"));
    let jobs = inner.lock();
    let found: Vec<Value> = jobs
        .values()
        .map(render)
        .filter(|j| {
            let n = j["name"].as_str().unwrap_or("").to_lowercase();
            let c = j["command"].as_str().unwrap_or("").to_lowercase();
            let mut valid = (name.is_empty() || n.contains(&name))
                && (command.is_empty() || c.contains(&command));
            if !valid && !any.is_empty() && (n.contains(&any) || c.contains(&any)) {
                valid = true;
            }
            valid
        })
        .take(10)
        .collect();
    Response::json(200, &Value::Array(found))
}

fn get_job(inner: &Inner, name: &str) -> Response {
    let jobs = inner.lock();
    match jobs.get(name) {
        Some(j) => Response::json(200, &render(j)),
        None => required(
            inner,
            "JobManagementResource.trigger(JobManagementResource.scala)",
            &format!("Job '{name}' not found"),
        ),
    }
}

fn run_now(inner: &Inner, name: &str) -> Response {
    let mut jobs = inner.lock();
    match jobs.get_mut(name) {
        Some(Value::Object(job)) => {
            // A manual run succeeds; the schedule is not moved for manual runs.
            record_success(job);
            Response::empty(204)
        }
        _ => required(
            inner,
            "JobManagementResource.trigger(JobManagementResource.scala)",
            &format!("Job '{name}' not found"),
        ),
    }
}

fn delete_job(inner: &Inner, name: &str) -> Response {
    let mut jobs = inner.lock();
    let Some(job) = jobs.get(name).cloned() else {
        // 3.x says "JobSchedule", 2.x "Job" (JobManagementResource.delete).
        let what = if inner.opts.api_v2 {
            "Job"
        } else {
            "JobSchedule"
        };
        return required(
            inner,
            "JobManagementResource.delete(JobManagementResource.scala)",
            &format!("{what} '{name}' not found"),
        );
    };
    // Children are rewired: children of a scheduled job take over its schedule; children of a
    // dependent job inherit its parents.
    let children: Vec<String> = jobs
        .iter()
        .filter(|(_, j)| {
            j.get("parents")
                .and_then(Value::as_array)
                .is_some_and(|ps| ps.iter().any(|p| p == name))
        })
        .map(|(k, _)| k.clone())
        .collect();
    for child in children {
        let Some(Value::Object(c)) = jobs.get_mut(&child) else {
            continue;
        };
        match job.get("parents").and_then(Value::as_array) {
            Some(parents) => {
                let mut np: Vec<Value> = c["parents"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|p| p != name)
                    .collect();
                for p in parents {
                    if !np.contains(p) {
                        np.push(p.clone());
                    }
                }
                c.insert("parents".into(), Value::Array(np));
            }
            None => {
                c.remove("parents");
                c.insert(
                    "schedule".into(),
                    job.get("schedule").cloned().unwrap_or(json!("")),
                );
                if let Some(tz) = job.get("scheduleTimeZone") {
                    c.insert("scheduleTimeZone".into(), tz.clone());
                }
            }
        }
    }
    jobs.shift_remove(name);
    Response::empty(204)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_advance_as_chronos_prints_them() {
        let s = Schedule::parse("R5/2015-01-01T00:00:00Z/PT24H").unwrap();
        assert_eq!(
            s.advanced().to_string(),
            "R4/2015-01-02T00:00:00.000Z/PT24H"
        );
        let s = Schedule::parse("R/2014-09-25T17:22:00Z/PT2M").unwrap();
        assert_eq!(s.advanced().to_string(), "R/2014-09-25T17:24:00.000Z/PT2M");
        assert!(Schedule::parse("every day").is_none());
        assert!(Schedule::parse("R/2015-01-01T00:00:00Z/PT0S").is_none());
        assert!(Schedule::parse("X/2015-01-01T00:00:00Z/PT1H").is_none());
    }
}
