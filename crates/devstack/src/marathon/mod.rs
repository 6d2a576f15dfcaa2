//! The Marathon double (apps, deployments, tasks, events, leader proxy, auth).
//!
//! Behaves like Marathon 1.5-1.7 as documented in
//! `shared/reference/marathon-chronos-and-registrars.md` (§1, §2): definitions are normalized
//! and answered with server fields, deployments lock apps for a configurable time (409 unless
//! `force=true`), validation errors come back in Marathon's 422/400 shapes, tasks are simulated
//! per instance and reported on the `/v2/events` SSE stream with Jetty's CRLF framing.
//! Not a scheduler: there are no offers, agents or pods; hosts are a round-robin list.

mod normalize;
mod state;
pub(crate) mod util;

use crate::http::{Faults, Handler, Request, Response, Server};
use serde_json::{json, Map, Value};
use state::State;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How to start a Marathon double.
#[derive(Clone)]
pub struct MarathonOptions {
    /// `127.0.0.1:0` for an ephemeral port.
    pub bind: String,
    /// How long a deployment runs before it completes (ZERO: at the next request).
    pub deploy_duration: Duration,
    /// Agent hosts tasks are placed on, round robin.
    pub hosts: Vec<String>,
    /// `--http_credentials user:pass`: Jetty BASIC auth on every path.
    pub basic_auth: Option<(String, String)>,
    /// A bearer token accepted as `Authorization: token=<t>` (DC/OS) or `Bearer <t>`.
    pub token: Option<String>,
    /// Leader URL: this instance is a standby that proxies every request to it.
    pub proxy_to: Option<String>,
    /// Interval of the bare `\r\n` heartbeat on event streams (Jetty: 10 s).
    pub heartbeat: Duration,
    /// `--max_running_deployments` (Marathon's default 100): a change that would start a
    /// deployment while this many run is refused with 403 (reference "Deployment limit").
    pub max_running_deployments: usize,
}

/// Credentials are redacted: options may end up in logs.
impl std::fmt::Debug for MarathonOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarathonOptions")
            .field("bind", &self.bind)
            .field("deploy_duration", &self.deploy_duration)
            .field("hosts", &self.hosts)
            .field(
                "basic_auth",
                &self.basic_auth.as_ref().map(|(u, _)| (u, "<redacted>")),
            )
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("proxy_to", &self.proxy_to)
            .field("heartbeat", &self.heartbeat)
            .field("max_running_deployments", &self.max_running_deployments)
            .finish()
    }
}

impl Default for MarathonOptions {
    fn default() -> Self {
        MarathonOptions {
            bind: "127.0.0.1:0".into(),
            deploy_duration: Duration::ZERO,
            hosts: vec!["10.0.0.1".into(), "10.0.0.2".into(), "10.0.0.3".into()],
            basic_auth: None,
            token: None,
            proxy_to: None,
            heartbeat: Duration::from_secs(10),
            max_running_deployments: 100,
        }
    }
}

/// Who this instance thinks leads (switchable while running, to reproduce a leader election or
/// failover between two instances: `POST /_devstack/marathon/leader`, [`Marathon::set_leader`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leader {
    /// This instance leads and answers from its own state.
    Me,
    /// A standby: every request is proxied to this leader URL (`http://host:port`).
    Other(String),
    /// No leader (an election): `GET /v2/leader` answers 404 `{"message":"There is no
    /// leader"}`, other API requests 503 "Could not determine the current leader" (reference
    /// §1.1, §1.2; Marathon ≤1.6).
    None,
}

impl Leader {
    /// The JSON form of the admin endpoint: `"self"`, `null` or the leader URL.
    fn to_json(&self) -> Value {
        match self {
            Leader::Me => json!("self"),
            Leader::Other(u) => json!(u),
            Leader::None => Value::Null,
        }
    }

    fn from_json(v: Option<&Value>) -> Result<Leader, String> {
        match v {
            Some(Value::Null) => Ok(Leader::None),
            Some(Value::String(s)) if s == "self" => Ok(Leader::Me),
            Some(Value::String(s)) if s.starts_with("http://") || s.starts_with("https://") => {
                Ok(Leader::Other(s.clone()))
            }
            Some(Value::String(s)) if !s.is_empty() => Ok(Leader::Other(format!("http://{s}"))),
            _ => Err(r#""leader" must be "self", null, or the leader's URL or host:port"#.into()),
        }
    }
}

/// The current leader and a switch that happens once a request under a path has been served
/// (so a test can change the leader between two reads of one run).
struct LeaderState {
    now: Leader,
    after: Option<(String, Leader)>,
}

/// The admin endpoint that switches the leader.
pub const LEADER_PATH: &str = "/_devstack/marathon/leader";

struct Inner {
    leader: Mutex<LeaderState>,
    opts: MarathonOptions,
    state: Mutex<State>,
    wake: Condvar,
    stopped: AtomicBool,
    /// Open event streams write nothing, not even heartbeats (a stalled stream).
    silent: AtomicBool,
    requests: AtomicU64,
    writes: AtomicU64,
    /// `127.0.0.1:port`, known once the listener is bound.
    addr: OnceLock<String>,
}

impl Inner {
    /// Locks the state and completes deployments that are due (lazy, so tests need no sleeps).
    fn lock(&self) -> MutexGuard<'_, State> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.tick();
        st
    }

    fn addr(&self) -> &str {
        self.addr.get().map(String::as_str).unwrap_or("127.0.0.1:0")
    }

    fn leader_state(&self) -> MutexGuard<'_, LeaderState> {
        self.leader.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a pending leader switch once a request under its path was answered.
    fn served(&self, path: &str) {
        let mut l = self.leader_state();
        if l.after
            .as_ref()
            .is_some_and(|(p, _)| path.starts_with(p.as_str()))
        {
            if let Some((_, next)) = l.after.take() {
                l.now = next;
            }
        }
        drop(l);
        self.close_streams_unless_leader();
    }

    /// A Marathon that is not (or no longer) the leader closes its event streams (Marathon
    /// closes them on leadership loss, d2iq-archive/marathon#1625): the clients reconnect to
    /// whichever instance leads.
    fn close_streams_unless_leader(&self) {
        if self.leader_state().now != Leader::Me {
            // Dropping the senders ends the streams' writer loops.
            self.state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .subscribers
                .clear();
        }
    }
}

/// A running Marathon double. Dropping it stops the server and ends open event streams.
pub struct Marathon {
    inner: Arc<Inner>,
    server: Server,
}

struct Api(Arc<Inner>);

impl Handler for Api {
    fn handle(&self, req: Request) -> Response {
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        handle(&self.0, req)
    }
}

impl Marathon {
    pub fn start(opts: MarathonOptions) -> std::io::Result<Marathon> {
        let mut state = State::new(opts.hosts.clone(), opts.deploy_duration);
        state.max_running = opts.max_running_deployments;
        let inner = Arc::new(Inner {
            leader: Mutex::new(LeaderState {
                now: opts.proxy_to.clone().map_or(Leader::Me, Leader::Other),
                after: None,
            }),
            state: Mutex::new(state),
            opts,
            wake: Condvar::new(),
            stopped: AtomicBool::new(false),
            silent: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            addr: OnceLock::new(),
        });
        let server = Server::start(&inner.opts.bind, Arc::new(Api(Arc::clone(&inner))))?;
        let _ = inner.addr.set(server.addr().to_string());
        if inner.opts.proxy_to.is_none() && !inner.opts.deploy_duration.is_zero() {
            spawn_ticker(Arc::clone(&inner))?;
        }
        Ok(Marathon { inner, server })
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn faults(&self) -> &Faults {
        self.server.faults()
    }

    /// Who this instance thinks leads now.
    pub fn leader(&self) -> Leader {
        self.inner.leader_state().now.clone()
    }

    /// Switches the leader now (cancels a pending switch).
    /// Losing the leadership closes the open event streams.
    pub fn set_leader(&self, leader: Leader) {
        let mut l = self.inner.leader_state();
        l.now = leader;
        l.after = None;
        drop(l);
        self.inner.close_streams_unless_leader();
    }

    /// While `silent`, open event streams write nothing at all (events are dropped, no
    /// heartbeat): a stalled stream, as behind a buffering proxy or over a half-open TCP
    /// connection. New streams connect (and get their `event_stream_attached` once silence ends).
    pub fn set_streams_silent(&self, silent: bool) {
        self.inner.silent.store(silent, Ordering::SeqCst);
    }

    /// Switches the leader once the next request whose path starts with `path` has been
    /// answered (a failover right after a read: `set_leader_after("/v2/apps", ...)`).
    pub fn set_leader_after(&self, path: &str, leader: Leader) {
        self.inner.leader_state().after = Some((path.to_string(), leader));
    }

    /// All apps as `GET /v2/apps?embed=apps.tasks` shows them.
    pub fn apps(&self) -> Vec<Value> {
        let st = self.inner.lock();
        let deps = st.deployment_index();
        st.apps
            .values()
            .map(|e| State::app_json(e, &deps, true, false))
            .collect()
    }

    /// One app as `GET /v2/apps/{id}` shows it (inside `"app"`).
    pub fn app(&self, id: &str) -> Option<Value> {
        let st = self.inner.lock();
        let deps = st.deployment_index();
        st.apps
            .get(&normalize::absolute_id(id))
            .map(|e| State::app_json(e, &deps, true, true))
    }

    /// Completes every running deployment now.
    pub fn finish_deployments(&self) {
        self.inner.lock().finish_all();
    }

    /// A task ends in `state` (TASK_FAILED, TASK_LOST, TASK_FINISHED, ...); Marathon replaces it.
    pub fn kill_task(&self, task_id: &str, state: &str) {
        self.inner.lock().kill_task(task_id, state);
    }

    /// Sets a task's health-check result (emits `health_status_changed_event`).
    pub fn set_task_alive(&self, task_id: &str, alive: bool) {
        self.inner.lock().set_task_alive(task_id, alive);
    }

    /// Tasks of apps with this id, or whose Docker image contains this substring, never become
    /// healthy: their deployments never finish (so `--wait` times out and a rollback can be
    /// tested). Also `POST /_devstack/marathon/never-healthy` `{"match": "..."}`.
    pub fn set_never_healthy(&self, app_id_or_image: &str) {
        self.inner
            .lock()
            .never_healthy
            .push(app_id_or_image.to_string());
    }

    /// The agent is gone: its tasks are lost (TASK_LOST) and replaced on other hosts.
    pub fn set_host_down(&self, host: &str) {
        self.inner.lock().set_host_down(host);
    }

    /// State-changing requests served (POST/PUT/PATCH/DELETE under `/v2/apps`).
    pub fn write_count(&self) -> u64 {
        self.inner.writes.load(Ordering::Relaxed)
    }

    /// Every request that reached the double (after injected faults).
    pub fn request_count(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Deployments started so far (a bulk `PUT /v2/apps` is one, whatever its size).
    pub fn deployment_count(&self) -> u64 {
        self.inner.lock().started
    }

    /// Deployments running now.
    pub fn running_deployments(&self) -> usize {
        self.inner.lock().deployments.len()
    }

    /// Creates already-deployed apps instantly (running tasks, no deployment, no events).
    /// Panics on a definition Marathon would refuse: this is a test fixture, not an API.
    pub fn seed_apps(&self, apps: Vec<Value>) {
        let mut st = self.inner.lock();
        for app in apps {
            let Value::Object(map) = app else {
                panic!("seed_apps: not a JSON object: {app}");
            };
            let mut errs = normalize::type_errors(&map);
            if errs.is_empty() {
                errs = normalize::validation_errors(&map);
            }
            assert!(errs.is_empty(), "seed_apps: invalid app {map:?}: {errs:?}");
            let app = st.normalize(map);
            st.seed(app);
        }
    }
}

impl Drop for Marathon {
    fn drop(&mut self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        // Dropping the senders ends every open event stream.
        st.subscribers.clear();
        drop(st);
        self.inner.wake.notify_all();
    }
}

/// Completes deployments on time even when no request arrives (so event-stream consumers see
/// `status_update_event`s without polling).
fn spawn_ticker(inner: Arc<Inner>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("marathon-deployments".into())
        .spawn(move || {
            let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            while !inner.stopped.load(Ordering::SeqCst) {
                st.tick();
                let wait = st
                    .next_deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_millis(250))
                    .clamp(Duration::from_millis(1), Duration::from_millis(250));
                st = inner
                    .wake
                    .wait_timeout(st, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        })?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Routing

fn msg(status: u16, message: &str) -> Response {
    Response::json(status, &json!({ "message": message }))
}

fn handle(inner: &Arc<Inner>, req: Request) -> Response {
    if req.path == LEADER_PATH {
        return leader_admin(inner, &req);
    }
    if let Some(resp) = check_auth(&inner.opts, &req) {
        return resp;
    }
    let path = req.path.clone();
    let now = inner.leader_state().now.clone();
    let resp = match now {
        Leader::Other(leader) => proxy(inner, &leader, req),
        Leader::None => match path.trim_end_matches('/') {
            "/ping" => ping(&req),
            "/v2/leader" => msg(404, "There is no leader"),
            _ => msg(503, "Could not determine the current leader"),
        },
        Leader::Me => {
            let leader = format!("http://{}", inner.addr());
            route(inner, req).with_header("X-Marathon-Leader", leader)
        }
    };
    inner.served(&path);
    resp
}

/// `GET /_devstack/marathon/leader`: `{"leader": "self"|null|URL, "pending": ...}`;
/// `POST` `{"leader": "self"|null|"http://host:port", "after": "/v2/apps"}` switches (after the
/// next request under `after` when given).
fn leader_admin(inner: &Inner, req: &Request) -> Response {
    let pending = |l: &LeaderState| {
        l.after
            .as_ref()
            .map(|(p, n)| json!({"after": p, "leader": n.to_json()}))
    };
    if req.method == "GET" {
        let l = inner.leader_state();
        return Response::json(
            200,
            &json!({"leader": l.now.to_json(), "pending": pending(&l)}),
        );
    }
    if req.method != "POST" && req.method != "PUT" {
        return msg(405, "use GET to read the leader, POST to switch it");
    }
    let spec: Value = match serde_json::from_slice(&req.body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return msg(400, "the body must be a JSON object"),
    };
    let next = match Leader::from_json(spec.get("leader")) {
        Ok(l) => l,
        Err(m) => return msg(400, &m),
    };
    let mut l = inner.leader_state();
    match spec.get("after").and_then(Value::as_str) {
        Some(p) => l.after = Some((p.to_string(), next)),
        None => {
            l.now = next;
            l.after = None;
        }
    }
    let body = json!({"leader": l.now.to_json(), "pending": pending(&l)});
    drop(l);
    inner.close_streams_unless_leader();
    Response::json(200, &body)
}

fn route(inner: &Arc<Inner>, req: Request) -> Response {
    let path = req.path.trim_end_matches('/').to_string();
    let m = req.method.as_str();
    match (m, path.as_str()) {
        ("GET", "/ping") => ping(&req),
        ("GET", "/v2/leader") => Response::json(200, &json!({ "leader": inner.addr() })),
        ("GET", "/v2/info") => info(inner),
        ("GET", "/v2/events") => events(inner, &req),
        ("GET", "/v2/apps") => list_apps(inner, &req),
        ("POST", "/v2/apps") => write(inner, || create_app(inner, &req)),
        ("PUT", "/v2/apps") => write(inner, || bulk_update(inner, &req)),
        // docs/rest-api GroupsResource: "It is possible to list all versions of the root group
        // as well: GET /v2/groups/versions" (a JSON array of version timestamps).
        ("GET", "/v2/groups/versions") => {
            let st = inner.lock();
            Response::json(200, &json!(st.root_versions))
        }
        ("GET", "/v2/deployments") => {
            let st = inner.lock();
            let list: Vec<Value> = st.deployments.iter().map(State::deployment_json).collect();
            Response::json(200, &Value::Array(list))
        }
        ("GET", "/v2/tasks") => {
            let st = inner.lock();
            let mut tasks = Vec::new();
            for e in st.apps.values() {
                let hcs = e.app["healthChecks"].as_array().map_or(0, Vec::len);
                tasks.extend(e.tasks.iter().map(|t| State::task_json(t, hcs)));
            }
            Response::json(200, &json!({ "tasks": tasks }))
        }
        (_, p) if p.starts_with("/v2/deployments/") => {
            if m != "DELETE" {
                return msg(405, "HTTP 405 Method Not Allowed");
            }
            delete_deployment(inner, &req, &p["/v2/deployments/".len()..])
        }
        (_, p) if p.starts_with("/v2/apps/") => app_route(inner, &req, &p["/v2/apps".len()..]),
        (_, "/_devstack/marathon/never-healthy") => never_healthy(inner, &req),
        (_, "/v2/apps" | "/v2/leader" | "/v2/info" | "/v2/events" | "/ping") => {
            msg(405, "HTTP 405 Method Not Allowed")
        }
        _ => msg(404, "HTTP 404 Not Found"),
    }
}

/// Test control: `POST {"match": "<app id or image substring>"}` adds a never-healthy match
/// (see [`Marathon::set_never_healthy`]), `DELETE` clears them, `GET` lists them.
fn never_healthy(inner: &Inner, req: &Request) -> Response {
    let mut st = inner.lock();
    match req.method.as_str() {
        "GET" => {}
        "POST" => match serde_json::from_slice::<Value>(&req.body) {
            Ok(v) if v["match"].as_str().is_some_and(|m| !m.is_empty()) => {
                st.never_healthy
                    .push(v["match"].as_str().unwrap_or_default().to_string());
            }
            _ => return msg(400, r#"expected {"match": "<app id or image substring>"}"#),
        },
        "DELETE" => {
            st.never_healthy.clear();
            // Deployments held by a match finish on their own time again.
            st.tick();
        }
        _ => return msg(405, "HTTP 405 Method Not Allowed"),
    }
    Response::json(200, &json!({ "never_healthy": st.never_healthy }))
}

/// Counts a state-changing request on apps; with a zero deploy duration the deployment it
/// started completes right after the answer is built (still observable in that answer).
fn write(inner: &Inner, f: impl FnOnce() -> Response) -> Response {
    inner.writes.fetch_add(1, Ordering::Relaxed);
    let resp = f();
    drop(inner.lock());
    resp
}

fn app_route(inner: &Arc<Inner>, req: &Request, rest: &str) -> Response {
    let m = req.method.as_str();
    if let Some(id) = rest.strip_suffix("/restart") {
        if m == "POST" {
            return write(inner, || restart_app(inner, req, id));
        }
    }
    if let Some(id) = rest.strip_suffix("/tasks") {
        if m == "GET" {
            return app_tasks(inner, id);
        }
    }
    if let Some(id) = rest.strip_suffix("/versions") {
        if m == "GET" {
            return app_versions(inner, id);
        }
    }
    match m {
        "GET" => show_app(inner, rest),
        "PUT" => write(inner, || update_app(inner, req, rest, false)),
        "PATCH" => write(inner, || update_app(inner, req, rest, true)),
        "DELETE" => write(inner, || delete_app(inner, req, rest)),
        _ => msg(405, "HTTP 405 Method Not Allowed"),
    }
}

fn flag(req: &Request, name: &str, default: bool) -> bool {
    match req.query(name) {
        Some("") => true,
        Some(v) => v.eq_ignore_ascii_case("true"),
        None => default,
    }
}

// ---------------------------------------------------------------------------------------------
// Auth

fn check_auth(opts: &MarathonOptions, req: &Request) -> Option<Response> {
    if opts.basic_auth.is_none() && opts.token.is_none() {
        return None;
    }
    let given = req.header("authorization").unwrap_or("");
    if let Some((user, pass)) = &opts.basic_auth {
        use base64::Engine;
        let expected = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        if given
            .strip_prefix("Basic ")
            .is_some_and(|g| g.trim() == expected)
        {
            return None;
        }
    }
    if let Some(token) = &opts.token {
        let t = given
            .strip_prefix("token=")
            .or_else(|| given.strip_prefix("Bearer "))
            .map(str::trim);
        if t == Some(token.as_str()) {
            return None;
        }
    }
    if opts.basic_auth.is_some() {
        // Jetty's BASIC authenticator: challenge plus an HTML error page (not JSON).
        let body = "<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html;charset=ISO-8859-1\"/>\n<title>Error 401 Unauthorized</title>\n</head>\n<body><h2>HTTP ERROR 401</h2>\n<p>Problem accessing ".to_string()
            + &req.path
            + ". Reason:\n<pre>    Unauthorized</pre></p>\n</body>\n</html>\n";
        return Some(
            Response::new(401, "text/html;charset=ISO-8859-1", body)
                .with_header("WWW-Authenticate", "Basic realm=\"Mesosphere\""),
        );
    }
    // Auth plugins (DC/OS) answer JSON (traits.raml `secured`).
    Some(msg(401, "Invalid username or password."))
}

// ---------------------------------------------------------------------------------------------
// Standby: proxy to the leader (api/LeaderProxyFilter.scala)

fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_' | b'.' | b'~' | b'*' | b',' | b':' | b'@' | b'!' | b'(' | b')'
            )
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn target(req: &Request) -> String {
    let mut t = encode(&req.path, true);
    if !req.query.is_empty() {
        let q: Vec<String> = req
            .query
            .iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    encode(k, false)
                } else {
                    format!("{}={}", encode(k, false), encode(v, false))
                }
            })
            .collect();
        t.push('?');
        t.push_str(&q.join("&"));
    }
    t
}

fn proxy(inner: &Inner, leader: &str, req: Request) -> Response {
    let leader = leader.trim_end_matches('/');
    let me = inner.addr();
    if req.path.trim_end_matches('/') == "/v2/events" {
        // 1.7+: the event stream is redirected, not proxied.
        return Response::empty(302).with_header("Location", format!("{leader}{}", target(&req)));
    }
    let via = req.header("x-marathon-via").unwrap_or("");
    if via.split(',').any(|v| v.trim().ends_with(me)) {
        return Response::text(502, "Detected proxying loop.");
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_redirects(0)
        .max_redirects_will_error(false)
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_recv_response(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut r = ureq::http::Request::builder()
        .method(req.method.as_str())
        .uri(format!("{leader}{}", target(&req)));
    for (k, v) in &req.headers {
        if !matches!(
            k.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding" | "x-marathon-via"
        ) {
            r = r.header(k.as_str(), v.as_str());
        }
    }
    let via_value = if via.is_empty() {
        format!("1.1 {me}")
    } else {
        format!("{via},1.1 {me}")
    };
    r = r
        .header("X-Marathon-Via", via_value.as_str())
        .header("X-Forwarded-For", "127.0.0.1");
    let result = if req.body.is_empty() && matches!(req.method.as_str(), "GET" | "DELETE") {
        r.body(())
            .map_err(ureq::Error::from)
            .and_then(|x| agent.run(x))
    } else {
        r.body(req.body.clone())
            .map_err(ureq::Error::from)
            .and_then(|x| agent.run(x))
    };
    let mut resp = match result {
        Ok(resp) => resp,
        Err(ureq::Error::ConnectionFailed) => {
            return Response::text(502, "Connection to leader refused.")
        }
        Err(ureq::Error::Timeout(_)) => {
            return Response::text(504, "Connection to leader timed out.")
        }
        Err(_) => {
            return Response::text(
                502,
                "Failed to successfully establish a connection to the leader.",
            )
        }
    };
    let status = resp.status().as_u16();
    let headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(h, _)| {
            !matches!(
                h.as_str(),
                "content-length" | "connection" | "transfer-encoding"
            )
        })
        .map(|(h, v)| {
            (
                h.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_vec()
        .unwrap_or_default();
    let mut out = Response::Full {
        status,
        headers,
        body,
    };
    out = out.with_header("X-Marathon-Via", via_value);
    out
}

// ---------------------------------------------------------------------------------------------
// System endpoints

fn ping(req: &Request) -> Response {
    if req
        .header("accept")
        .is_some_and(|a| a.contains("application/json"))
    {
        return Response::new(200, "application/json", "\"pong\"");
    }
    Response::new(200, "text/plain", "pong")
}

fn info(inner: &Inner) -> Response {
    let addr = inner.addr();
    let port: u64 = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    Response::json(
        200,
        &json!({
            "name": "marathon",
            "version": "1.7.216",
            "buildref": "9e2a9b579",
            "elected": true,
            "leader": addr,
            "frameworkId": "5c3c2ee9-7b2c-4bd0-9d1b-31f8b8e0e5a1-0000",
            "marathon_config": {
                "master": "zk://127.0.0.1:2181/mesos",
                "failover_timeout": 604800, "framework_name": "marathon", "ha": true,
                "checkpoint": true, "local_port_min": 10000, "local_port_max": 20000,
                "executor": "//cmd", "hostname": "127.0.0.1", "webui_url": null,
                "mesos_role": null, "task_launch_timeout": 300000,
                "task_reservation_timeout": 20000, "reconciliation_initial_delay": 15000,
                "reconciliation_interval": 600000, "mesos_user": "root",
                "leader_proxy_connection_timeout_ms": 5000,
                "leader_proxy_read_timeout_ms": 10000, "features": [],
                "mesos_leader_ui_url": "http://127.0.0.1:5050/"
            },
            "zookeeper_config": {
                "zk": "zk://127.0.0.1:2181/marathon", "zk_timeout": 10000,
                "zk_session_timeout": 10000, "zk_max_versions": 50
            },
            "http_config": { "http_port": port, "https_port": 8443 }
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// Apps

/// `label` selectors (LabelSelectorParsers.scala): `k`, `!k`... subset: `k`, `k==v`, `k!=v`,
/// `k in (a,b)`, `k notin (a,b)`, joined by commas (all must hold).
fn label_matches(selector: &str, labels: &Map<String, Value>) -> Result<bool, String> {
    let mut terms = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in selector.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    terms.push(cur);
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    for term in terms {
        let t = term.trim();
        let ok = if let Some((k, v)) = t.split_once("==") {
            get(k.trim()) == Some(v.trim())
        } else if let Some((k, v)) = t.split_once("!=") {
            get(k.trim()) != Some(v.trim())
        } else if let Some((k, set)) = t.split_once(" notin ") {
            let set = parse_set(set)?;
            get(k.trim()).is_none_or(|v| !set.contains(&v))
        } else if let Some((k, set)) = t.split_once(" in ") {
            let set = parse_set(set)?;
            get(k.trim()).is_some_and(|v| set.contains(&v))
        } else if !t.is_empty()
            && t.chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        {
            labels.contains_key(t)
        } else {
            return Err(format!("Invalid label selector: {selector}"));
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn parse_set(s: &str) -> Result<Vec<&str>, String> {
    let s = s.trim();
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("Invalid label selector set: {s}"))?;
    Ok(inner.split(',').map(str::trim).collect())
}

fn embeds(req: &Request) -> (bool, bool) {
    let e = req.query_all("embed");
    let tasks = e.iter().any(|v| *v == "apps.tasks" || *v == "app.tasks");
    let failure = e.contains(&"apps.lastTaskFailure");
    (tasks, failure)
}

fn list_apps(inner: &Inner, req: &Request) -> Response {
    let (tasks, failure) = embeds(req);
    let id_filter = req.query("id").map(str::to_lowercase);
    let cmd_filter = req.query("cmd");
    let label = req.query("label");
    let st = inner.lock();
    let deps = st.deployment_index();
    let mut out = String::with_capacity(st.apps.len() * 1024 + 16);
    out.push_str("{\"apps\":[");
    let mut first = true;
    for e in st.apps.values() {
        let id = e.app["id"].as_str().unwrap_or_default();
        if id_filter.as_ref().is_some_and(|f| !id.contains(f.as_str())) {
            continue;
        }
        if cmd_filter.is_some_and(|f| !e.app["cmd"].as_str().unwrap_or("").contains(f)) {
            continue;
        }
        if let Some(sel) = label {
            let empty = Map::new();
            let labels = e.app["labels"].as_object().unwrap_or(&empty);
            match label_matches(sel, labels) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(m) => return msg(400, &m),
            }
        }
        if !first {
            out.push(',');
        }
        first = false;
        State::write_app_json(e, &deps, tasks, failure, &mut out);
    }
    out.push_str("]}");
    Response::new(200, "application/json", out)
}

fn not_found(id: &str) -> Response {
    msg(404, &format!("App '{id}' does not exist"))
}

fn show_app(inner: &Inner, raw_id: &str) -> Response {
    let st = inner.lock();
    let deps = st.deployment_index();
    if let Some(group) = raw_id.strip_suffix("/*") {
        let prefix = format!("{}/", normalize::absolute_id(group).trim_end_matches('/'));
        let apps: Vec<Value> = st
            .apps
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, e)| State::app_json(e, &deps, true, true))
            .collect();
        return Response::json(200, &json!({ "*": apps }));
    }
    let id = normalize::absolute_id(raw_id);
    match st.apps.get(&id) {
        // "deprecated. For compatibility": counts, tasks, lastTaskFailure, deployments always.
        Some(e) => Response::json(
            200,
            &json!({ "app": State::app_json(e, &deps, true, true) }),
        ),
        None => not_found(&id),
    }
}

fn app_tasks(inner: &Inner, raw_id: &str) -> Response {
    let st = inner.lock();
    let id = normalize::absolute_id(raw_id);
    match st.apps.get(&id) {
        Some(e) => {
            let hcs = e.app["healthChecks"].as_array().map_or(0, Vec::len);
            let tasks: Vec<Value> = e.tasks.iter().map(|t| State::task_json(t, hcs)).collect();
            Response::json(200, &json!({ "tasks": tasks }))
        }
        None => not_found(&id),
    }
}

fn app_versions(inner: &Inner, raw_id: &str) -> Response {
    let st = inner.lock();
    let id = normalize::absolute_id(raw_id);
    match st.apps.get(&id) {
        Some(e) => {
            let v: Vec<&Value> = e.versions.iter().rev().map(|a| &a["version"]).collect();
            Response::json(200, &json!({ "versions": v }))
        }
        None => not_found(&id),
    }
}

/// Parses a request body as a JSON object, answering like Marathon's JSON reader on failure.
fn parse_body(body: &[u8]) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(normalize::Rejection::InvalidJson(vec![(
            String::new(),
            "error.expected.jsobject".into(),
        )])
        .into()),
        // A syntax error: `details` is the parser's message string, not a list.
        Err(e) => Err(Response::json(
            400,
            &json!({"message": "Invalid JSON", "details": e.to_string()}),
        )),
    }
}

impl From<normalize::Rejection> for Response {
    fn from(r: normalize::Rejection) -> Response {
        Response::json(r.status(), &r.body())
    }
}

/// Type-checks and validates a complete definition.
fn check(app: &Map<String, Value>) -> Result<(), Response> {
    let errs = normalize::type_errors(app);
    if !errs.is_empty() {
        return Err(normalize::Rejection::InvalidJson(errs).into());
    }
    let errs = normalize::validation_errors(app);
    if !errs.is_empty() {
        return Err(normalize::Rejection::Invalid(errs).into());
    }
    Ok(())
}

fn locked(ids: Vec<String>) -> Response {
    let deps: Vec<Value> = ids.into_iter().map(|id| json!({ "id": id })).collect();
    Response::json(
        409,
        &json!({
            "deployments": deps,
            "message": "App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/<DEPLOYMENT_ID>'."
        }),
    )
}

fn deployed(status: u16, dep: &str, version: &str) -> Response {
    Response::json(status, &json!({"deploymentId": dep, "version": version}))
        .with_header("Marathon-Deployment-Id", dep)
}

/// The lock check shared by every change: 409 unless `force`, which cancels the deployment.
fn take_lock(st: &mut State, id: &str, force: bool) -> Result<(), Response> {
    let running = st.deployments_of(id);
    if running.is_empty() {
        return Ok(());
    }
    if !force {
        return Err(locked(running));
    }
    st.cancel_deployments_of(id);
    Ok(())
}

/// Marathon's `--max_running_deployments`: GroupManagerImpl.checkMaxRunningDeployments throws
/// TooManyRunningDeploymentsException before the deployment plan (and its lock check) is made,
/// mapped to 403 by MarathonExceptionMapper; `force` does not lift it. The body is Marathon's,
/// missing space after "one" included (Exception.scala; reference "Deployment limit").
fn check_deployment_limit(st: &State) -> Result<(), Response> {
    let max = st.max_running;
    if st.deployments.len() < max {
        return Ok(());
    }
    Err(msg(
        403,
        &format!(
            "Max number ({max}) of running deployments is achieved. Wait for existing deployments to complete or cancel oneusing force=true parameter. You can increase max deployment number by using --max_running_deployments parameter but be advised that this can have negative effects on the performance."
        ),
    ))
}

fn api_post_event(st: &mut State, uri: &str, app: &Map<String, Value>) {
    st.emit(
        "api_post_event",
        json!({"clientIp": "127.0.0.1", "uri": uri, "appDefinition": app}),
    );
}

fn create_app(inner: &Inner, req: &Request) -> Response {
    let body = match parse_body(&req.body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = check(&body) {
        return r;
    }
    let mut st = inner.lock();
    let app = st.normalize(body);
    let id = app["id"].as_str().unwrap_or_default().to_string();
    if st.apps.contains_key(&id) {
        return msg(409, &format!("An app with id [{id}] already exists."));
    }
    if let Err(r) = check_deployment_limit(&st) {
        return r;
    }
    if let Err(r) = take_lock(&mut st, &id, flag(req, "force", false)) {
        return r;
    }
    let (dep, _version) = st.put_app(app);
    let stored = st.apps[&id].app.clone();
    api_post_event(&mut st, "/v2/apps", &stored);
    let mut out = stored;
    for k in [
        "tasksStaged",
        "tasksRunning",
        "tasksHealthy",
        "tasksUnhealthy",
    ] {
        out.insert(k.into(), json!(0));
    }
    out.insert("deployments".into(), json!([{ "id": dep }]));
    // JAX-RS resolves the relative `Location` against the base URI.
    Response::json(201, &Value::Object(out))
        .with_header("Location", format!("http://{}{}", inner.addr(), id))
        .with_header("Marathon-Deployment-Id", dep)
}

fn update_app(inner: &Inner, req: &Request, raw_id: &str, patch: bool) -> Response {
    let body = match parse_body(&req.body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let id = normalize::absolute_id(raw_id);
    let errs = normalize::id_errors(&id);
    if !errs.is_empty() {
        return normalize::Rejection::Invalid(errs).into();
    }
    let errs = normalize::type_errors(&body);
    if !errs.is_empty() {
        return normalize::Rejection::InvalidJson(errs).into();
    }
    let force = flag(req, "force", false);
    let partial = patch || flag(req, "partialUpdate", true);
    let mut st = inner.lock();
    let existing = st.apps.get(&id).map(|e| e.app.clone());
    if patch && existing.is_none() {
        return not_found(&id);
    }
    if body.contains_key("version") {
        // AppValidation.validateAppUpdateVersion; a lone version is a rollback.
        if body.keys().any(|k| k != "version" && k != "id") {
            return normalize::Rejection::Invalid(vec![(
                "/".into(),
                "The 'version' field may only be combined with the 'id' field.".into(),
            )])
            .into();
        }
        let v = body["version"].as_str().unwrap_or_default();
        let Some(old) = st
            .apps
            .get(&id)
            .and_then(|e| e.versions.iter().find(|a| a["version"] == v).cloned())
        else {
            return not_found(&id);
        };
        if let Err(r) = check_deployment_limit(&st) {
            return r;
        }
        if let Err(r) = take_lock(&mut st, &id, force) {
            return r;
        }
        let (dep, version) = st.put_app(old);
        return deployed(200, &dep, &version);
    }
    let merged = merge(existing.as_ref(), body, partial, &id);
    drop(st);
    if let Err(r) = check(&merged) {
        return r;
    }
    let mut st = inner.lock();
    if let Err(r) = check_deployment_limit(&st) {
        return r;
    }
    if let Err(r) = take_lock(&mut st, &id, force) {
        return r;
    }
    let created = !st.apps.contains_key(&id);
    let app = st.normalize(merged);
    let (dep, version) = st.put_app(app);
    let stored = st.apps[&id].app.clone();
    api_post_event(&mut st, &format!("/v2/apps{id}"), &stored);
    deployed(if created { 201 } else { 200 }, &dep, &version)
}

/// `PUT /v2/apps` with an array: create-or-update several apps in ONE deployment
/// (AppsResource.replaceMultiple); every element needs an `id`. All or nothing: one invalid
/// element refuses the whole request (422/400), one locked app too (409, unless `force`), and
/// nothing is applied.
fn bulk_update(inner: &Inner, req: &Request) -> Response {
    let items = match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Array(items)) => items,
        Ok(_) => {
            return normalize::Rejection::InvalidJson(vec![(
                String::new(),
                "error.expected.jsarray".into(),
            )])
            .into()
        }
        Err(e) => {
            return Response::json(
                400,
                &json!({"message": "Invalid JSON", "details": e.to_string()}),
            )
        }
    };
    let partial = flag(req, "partialUpdate", true);
    let force = flag(req, "force", false);
    let mut st = inner.lock();
    let mut defs = Vec::new();
    for item in items {
        let Value::Object(body) = item else {
            return normalize::Rejection::InvalidJson(vec![(
                String::new(),
                "error.expected.jsobject".into(),
            )])
            .into();
        };
        let Some(id) = body
            .get("id")
            .and_then(Value::as_str)
            .map(normalize::absolute_id)
        else {
            return normalize::Rejection::Invalid(vec![(
                "/id".into(),
                "App Update must have app id set".into(),
            )])
            .into();
        };
        let errs = normalize::id_errors(&id);
        if !errs.is_empty() {
            return normalize::Rejection::Invalid(errs).into();
        }
        let errs = normalize::type_errors(&body);
        if !errs.is_empty() {
            return normalize::Rejection::InvalidJson(errs).into();
        }
        let merged = merge(st.apps.get(&id).map(|e| &e.app), body, partial, &id);
        if let Err(r) = check(&merged) {
            return r;
        }
        defs.push((id, merged));
    }
    if let Err(r) = check_deployment_limit(&st) {
        return r;
    }
    let locked_ids: Vec<String> = defs
        .iter()
        .flat_map(|(id, _)| st.deployments_of(id))
        .collect();
    if !locked_ids.is_empty() {
        if !force {
            return locked(locked_ids);
        }
        for (id, _) in &defs {
            st.cancel_deployments_of(id);
        }
    }
    let version = st.next_version();
    let mut parts = Vec::new();
    for (_, def) in defs {
        let app = st.normalize(def);
        parts.push(st.apply(app, false, &version));
    }
    let dep = st.start_deployment(&version, parts);
    deployed(200, &dep, &version)
}

/// The definition a PUT asks for: merged over the current one when `partial` (the default),
/// else the body alone; the path id wins.
fn merge(
    existing: Option<&Map<String, Value>>,
    body: Map<String, Value>,
    partial: bool,
    id: &str,
) -> Map<String, Value> {
    let mut m = match (existing, partial) {
        (Some(old), true) => {
            let mut m = old.clone();
            m.remove("version");
            m.remove("versionInfo");
            for (k, v) in body {
                if !v.is_null() {
                    m.insert(k, v);
                }
            }
            m
        }
        _ => body,
    };
    m.insert("id".into(), json!(id));
    m
}

fn delete_app(inner: &Inner, req: &Request, raw_id: &str) -> Response {
    let id = normalize::absolute_id(raw_id);
    let mut st = inner.lock();
    if !st.apps.contains_key(&id) {
        return not_found(&id);
    }
    if let Err(r) = check_deployment_limit(&st) {
        return r;
    }
    // `force` defaults to TRUE on DELETE (AppsResource.delete @DefaultValue("true")).
    if let Err(r) = take_lock(&mut st, &id, flag(req, "force", true)) {
        return r;
    }
    let (dep, version) = st.delete_app(&id);
    deployed(200, &dep, &version)
}

fn restart_app(inner: &Inner, req: &Request, raw_id: &str) -> Response {
    let id = normalize::absolute_id(raw_id);
    let mut st = inner.lock();
    let Some(mut app) = st.apps.get(&id).map(|e| e.app.clone()) else {
        return not_found(&id);
    };
    if let Err(r) = check_deployment_limit(&st) {
        return r;
    }
    if let Err(r) = take_lock(&mut st, &id, flag(req, "force", false)) {
        return r;
    }
    // A restart is a new config version: every task is replaced.
    app.remove("version");
    app.remove("versionInfo");
    let (dep, version) = st.put_app_with(app, true);
    deployed(200, &dep, &version)
}

fn delete_deployment(inner: &Inner, req: &Request, dep_id: &str) -> Response {
    let mut st = inner.lock();
    let unknown = || msg(404, &format!("DeploymentPlan {dep_id} does not exist"));
    if flag(req, "force", false) {
        return if st.cancel(dep_id) {
            Response::empty(202)
        } else {
            unknown()
        };
    }
    match st.rollback(dep_id) {
        Some((dep, version)) => deployed(200, &dep, &version),
        None => unknown(),
    }
}

// ---------------------------------------------------------------------------------------------
// Event stream (HttpEventStreamServlet + Jetty EventSourceServlet)

fn events(inner: &Arc<Inner>, req: &Request) -> Response {
    // Jetty compares each Accept value with equals("text/event-stream"); anything else falls
    // through to HttpServlet.doGet, a 405.
    let accepts = req
        .headers
        .iter()
        .any(|(k, v)| k == "accept" && v == "text/event-stream");
    if !accepts {
        return Response::new(
            405,
            "text/html;charset=ISO-8859-1",
            "HTTP method GET is not supported by this URL",
        );
    }
    let filter: Vec<String> = req
        .query_all("event_type")
        .into_iter()
        .map(str::to_string)
        .collect();
    let (tx, rx) = mpsc::channel::<String>();
    {
        let mut st = inner.lock();
        if inner.stopped.load(Ordering::SeqCst) {
            return Response::Drop;
        }
        st.subscribers.push(state::Subscriber { tx, filter });
        st.emit(
            "event_stream_attached",
            json!({"remoteAddress": "127.0.0.1"}),
        );
    }
    let heartbeat = inner.opts.heartbeat.max(Duration::from_millis(1));
    let leader = format!("http://{}", inner.addr());
    let me = Arc::clone(inner);
    Response::Raw(Box::new(move |w: &mut dyn Write| {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream;charset=utf-8\r\nConnection: close\r\nX-Marathon-Leader: {leader}\r\n\r\n"
        );
        if w.write_all(head.as_bytes())
            .and_then(|_| w.flush())
            .is_err()
        {
            return;
        }
        loop {
            let out = match rx.recv_timeout(heartbeat) {
                Ok(frame) => frame,
                Err(mpsc::RecvTimeoutError::Timeout) => "\r\n".to_string(),
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            if me.silent.load(Ordering::SeqCst) {
                continue;
            }
            if w.write_all(out.as_bytes()).and_then(|_| w.flush()).is_err() {
                return;
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors() {
        let labels: Map<String, Value> =
            serde_json::from_value(json!({"consul": "web", "tier": "a"})).unwrap();
        assert!(label_matches("consul", &labels).unwrap());
        assert!(label_matches("consul==web", &labels).unwrap());
        assert!(!label_matches("consul==api", &labels).unwrap());
        assert!(label_matches("consul!=api", &labels).unwrap());
        assert!(label_matches("tier in (a, b),consul", &labels).unwrap());
        assert!(!label_matches("tier notin (a)", &labels).unwrap());
        assert!(!label_matches("missing", &labels).unwrap());
        assert!(label_matches("bad selector !!", &labels).is_err());
    }
}
