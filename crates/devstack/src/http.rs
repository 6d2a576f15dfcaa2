//! Shared HTTP plumbing for the doubles: a loopback HTTP/1.1 server on an ephemeral (or fixed)
//! port, one thread per request (blocking queries and event streams hold their request open), a
//! small request/response model, and fault injection that every double supports the same way.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A decoded request, with the body read in full.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path without the query string, percent-decoded.
    pub path: String,
    /// Query parameters in order, percent-decoded; a bare `?recurse` has an empty value.
    pub query: Vec<(String, String)>,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of query parameter `name` (`Some("")` for a bare flag).
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated query parameter.
    pub fn query_all(&self, name: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn has_query(&self, name: &str) -> bool {
        self.query(name).is_some()
    }

    /// A header value by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Writes a raw response (status line, headers, body) to the connection.
pub type RawWriter = Box<dyn FnOnce(&mut dyn Write) + Send>;

/// What a double answers.
pub enum Response {
    /// A complete response.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// A raw stream: the double writes status line, headers and body itself to the socket
    /// (used for Marathon's SSE stream, which Jetty sends with `Connection: close` and no chunking).
    Raw(RawWriter),
    /// Close the connection without a byte written (a reset, as a crashed server would do).
    Drop,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response::Full {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response::new(status, "application/json", value.to_string())
    }

    pub fn text(status: u16, body: &str) -> Response {
        Response::new(
            status,
            "text/plain; charset=utf-8",
            body.as_bytes().to_vec(),
        )
    }

    pub fn empty(status: u16) -> Response {
        Response::Full {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header to a full response (no effect on raw or dropped ones).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        if let Response::Full { headers, .. } = &mut self {
            headers.push((name.to_string(), value.into()));
        }
        self
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Response::Full { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// One thing that a double answers.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request) -> Response;
}

impl<F> Handler for F
where
    F: Fn(Request) -> Response + Send + Sync + 'static,
{
    fn handle(&self, req: Request) -> Response {
        self(req)
    }
}

/// A scripted fault, applied to the next requests in order.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and body instead of the real handler.
    Status { status: u16, body: String },
    /// Close the connection without answering.
    Reset,
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Answer with this status, content type and body (`200 {}` for a list, an HTML page).
    Answer {
        status: u16,
        content_type: String,
        body: String,
    },
}

/// Fault injection shared by all doubles: `fail_next(n, fault)` queues faults; `latency` slows
/// every request; `refuse` makes the server drop every connection until cleared.
#[derive(Default)]
pub struct Faults {
    queue: Mutex<VecDeque<(Option<String>, Fault)>>,
    /// Faults that apply to every matching request until cleared (a leader election that lasts).
    standing: Mutex<Vec<(String, Fault)>>,
    latency: Mutex<Duration>,
    refuse: AtomicBool,
}

impl Faults {
    /// The next `n` requests (any path) get `fault`.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        let mut q = self.queue.lock().unwrap();
        for _ in 0..n {
            q.push_back((None, fault.clone()));
        }
    }

    /// The next `n` requests whose path starts with `prefix` get `fault`.
    pub fn fail_next_on(&self, prefix: &str, n: usize, fault: Fault) {
        let mut q = self.queue.lock().unwrap();
        for _ in 0..n {
            q.push_back((Some(prefix.to_string()), fault.clone()));
        }
    }

    /// Every request whose path starts with `prefix` gets `fault` until [`Faults::clear`].
    pub fn fail_always_on(&self, prefix: &str, fault: Fault) {
        self.standing
            .lock()
            .unwrap()
            .push((prefix.to_string(), fault));
    }

    pub fn set_latency(&self, latency: Duration) {
        *self.latency.lock().unwrap() = latency;
    }

    /// While set, every connection is closed without an answer.
    pub fn set_refuse(&self, refuse: bool) {
        self.refuse.store(refuse, Ordering::SeqCst);
    }

    pub fn clear(&self) {
        self.queue.lock().unwrap().clear();
        self.standing.lock().unwrap().clear();
        *self.latency.lock().unwrap() = Duration::ZERO;
        self.set_refuse(false);
    }

    /// The fault for this request, if any (consumes one queued fault).
    fn take(&self, path: &str) -> Option<Fault> {
        if self.refuse.load(Ordering::SeqCst) {
            return Some(Fault::Reset);
        }
        let mut q = self.queue.lock().unwrap();
        if let Some(pos) = q
            .iter()
            .position(|(prefix, _)| prefix.as_deref().is_none_or(|p| path.starts_with(p)))
        {
            return q.remove(pos).map(|(_, f)| f);
        }
        drop(q);
        let standing = self.standing.lock().unwrap();
        standing
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, f)| f.clone())
    }

    /// The admin endpoint every double serves, so that tests in any language and operators with
    /// `curl` can script faults (documented in the devstack README):
    /// - `POST /_devstack/faults` `{"path": "/v2/apps", "count": 1, "status": 200,
    ///   "content_type": "application/json", "body": "{}"}`: the next `count` requests under
    ///   `path` get that answer (`"count": "always"`: until cleared); instead of `status`,
    ///   `"reset": true` drops the connection and `"delay_ms": N` delays it;
    ///   `{"latency_ms": N}` slows every request, `{"refuse": true}` drops every connection.
    /// - `DELETE /_devstack/faults`: clears them all.
    fn admin(&self, req: &Request) -> Response {
        if req.method == "DELETE" {
            self.clear();
            return Response::json(200, &serde_json::json!({"cleared": true}));
        }
        if req.method != "POST" && req.method != "PUT" {
            return Response::text(405, "use POST to add a fault, DELETE to clear them");
        }
        let spec: serde_json::Value = match serde_json::from_slice(&req.body) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => return Response::text(400, "the body must be a JSON object"),
        };
        let num = |k: &str| spec.get(k).and_then(serde_json::Value::as_u64);
        if let Some(ms) = num("latency_ms") {
            self.set_latency(Duration::from_millis(ms));
            return Response::json(200, &spec);
        }
        if let Some(refuse) = spec.get("refuse").and_then(serde_json::Value::as_bool) {
            self.set_refuse(refuse);
            return Response::json(200, &spec);
        }
        let fault = if spec.get("reset").and_then(serde_json::Value::as_bool) == Some(true) {
            Fault::Reset
        } else if let Some(ms) = num("delay_ms") {
            Fault::Delay(Duration::from_millis(ms))
        } else if let Some(status) = num("status").and_then(|s| u16::try_from(s).ok()) {
            Fault::Answer {
                status,
                content_type: spec
                    .get("content_type")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("application/json")
                    .to_string(),
                body: spec
                    .get("body")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            }
        } else {
            return Response::text(400, "a fault needs status, reset or delay_ms");
        };
        let path = spec.get("path").and_then(serde_json::Value::as_str);
        match (spec.get("count"), path) {
            (Some(serde_json::Value::String(a)), Some(p)) if a == "always" => {
                self.fail_always_on(p, fault)
            }
            (Some(serde_json::Value::String(_)), _) => {
                return Response::text(400, "\"count\": \"always\" needs a \"path\"")
            }
            (count, Some(p)) => self.fail_next_on(p, count_of(count), fault),
            (count, None) => self.fail_next(count_of(count), fault),
        }
        Response::json(200, &spec)
    }

    fn latency(&self) -> Duration {
        *self.latency.lock().unwrap()
    }
}

fn count_of(v: Option<&serde_json::Value>) -> usize {
    v.and_then(serde_json::Value::as_u64).unwrap_or(1) as usize
}

/// The path of the fault admin endpoint on every double.
pub const FAULTS_PATH: &str = "/_devstack/faults";

/// A running server. Dropping it stops accepting and joins the accept thread.
///
/// A hand-rolled HTTP/1.1 server on `std::net` rather than a framework: the doubles need to
/// reset connections, hold requests open and write raw streams, which frameworks hide. Every
/// response closes its connection (`Connection: close`); clients reconnect as they do with a
/// real server that drops idle keep-alive connections.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    faults: Arc<Faults>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `handler` on `bind` (`127.0.0.1:0` for an ephemeral port).
    pub fn start(bind: &str, handler: Arc<dyn Handler>) -> std::io::Result<Server> {
        let listener = TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        let faults = Arc::new(Faults::default());
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let faults = Arc::clone(&faults);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(format!("devstack-{}", addr.port()))
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        // As the real servers accept: Jetty's ServerConnector (Marathon,
                        // Chronos) has acceptedTcpNoDelay = true, Go's net package (Consul)
                        // turns Nagle off on every TCP connection. Without it a response written
                        // as head then body waits for the client's delayed ACK (~40 ms on
                        // Linux), which no real server makes a client pay.
                        let _ = conn.set_nodelay(true);
                        let handler = Arc::clone(&handler);
                        let faults = Arc::clone(&faults);
                        let _ = std::thread::Builder::new()
                            .name("devstack-req".into())
                            .spawn(move || serve_connection(conn, &*handler, &faults));
                    }
                })?
        };
        Ok(Server {
            addr,
            stop,
            faults,
            accept: Some(accept),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the stop flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Largest request head and body the doubles accept (Consul's own limit on KV values is far
/// below; the reliability suite sends 50 MiB payloads to handlers, not to the doubles).
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 128 * 1024 * 1024;

fn serve_connection(conn: TcpStream, handler: &dyn Handler, faults: &Faults) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let req = match read_request(&mut reader) {
        Ok(Some(req)) => req,
        Ok(None) => return,
        Err(msg) => {
            write_full(
                conn,
                400,
                &[("Content-Type".into(), "text/plain".into())],
                msg.as_bytes(),
            );
            return;
        }
    };
    if req.path == FAULTS_PATH {
        let response = faults.admin(&req);
        if let Response::Full {
            status,
            headers,
            body,
        } = response
        {
            write_full(conn, status, &headers, &body);
        }
        return;
    }
    let latency = faults.latency();
    if !latency.is_zero() {
        std::thread::sleep(latency);
    }
    let response = match faults.take(&req.path) {
        Some(Fault::Reset) => Response::Drop,
        Some(Fault::Status { status, body }) => Response::text(status, &body),
        Some(Fault::Answer {
            status,
            content_type,
            body,
        }) => Response::new(status, &content_type, body),
        Some(Fault::Delay(d)) => {
            std::thread::sleep(d);
            handler.handle(req)
        }
        None => handler.handle(req),
    };
    match response {
        Response::Full {
            status,
            headers,
            body,
        } => write_full(conn, status, &headers, &body),
        Response::Raw(write) => {
            let mut w = conn;
            write(&mut w);
            let _ = w.flush();
            let _ = w.shutdown(Shutdown::Both);
        }
        Response::Drop => {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Result<Option<Request>, String> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader
            .by_ref()
            .take((MAX_HEAD - head.len().min(MAX_HEAD)) as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err("truncated request".into())
            };
        }
        if head.len() + line.len() > MAX_HEAD {
            return Err("request head too large".into());
        }
        let blank = line == b"\r\n" || line == b"\n";
        head.extend_from_slice(&line);
        if blank {
            break;
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.lines();
    let start = lines.next().unwrap_or_default();
    let mut parts = start.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err("malformed request line".into());
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut body = Vec::new();
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        read_chunked(reader, &mut body)?;
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().map_err(|_| "bad Content-Length".to_string())?;
        if len > MAX_BODY {
            return Err("request body too large".into());
        }
        body.resize(len, 0);
        reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    }
    let (path, query) = split_url(target);
    Ok(Some(Request {
        method: method.to_ascii_uppercase(),
        path,
        query,
        headers,
        body,
    }))
}

fn read_chunked(reader: &mut BufReader<TcpStream>, body: &mut Vec<u8>) -> Result<(), String> {
    loop {
        let mut size_line = String::new();
        reader
            .read_line(&mut size_line)
            .map_err(|e| e.to_string())?;
        let size_hex = size_line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| "bad chunk size".to_string())?;
        if body.len() + size > MAX_BODY {
            return Err("request body too large".into());
        }
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                let mut l = String::new();
                let n = reader.read_line(&mut l).map_err(|e| e.to_string())?;
                if n == 0 || l == "\r\n" || l == "\n" {
                    return Ok(());
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|e| e.to_string())?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).map_err(|e| e.to_string())?;
    }
}

fn write_full(mut conn: TcpStream, status: u16, headers: &[(String, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {} {}\r\n", status, reason(status));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
    let _ = conn.flush();
    let _ = conn.shutdown(Shutdown::Write);
}

/// The reason phrase for a status code (clients ignore it; humans reading curl -v do not).
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Request Entity Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Splits `/v1/kv/a%20b?recurse&index=3` into a decoded path and decoded query pairs.
pub fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let pairs = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    (percent_decode(path), pairs)
}

/// An answer read in full by [`call`].
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One request to a double (or a real server on loopback) where any status is an answer, for
/// tests and the devstack's own tools: no redirects followed, the whole exchange bounded by
/// `timeout`, an empty GET/DELETE sent without a body. `Err` only when no answer came.
pub fn call(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Reply, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let sent = if body.is_empty() && matches!(method, "GET" | "DELETE") {
        req.body(())
            .map_err(ureq::Error::from)
            .and_then(|r| agent.run(r))
    } else {
        req.body(body.to_vec())
            .map_err(ureq::Error::from)
            .and_then(|r| agent.run(r))
    };
    let mut r = sent.map_err(|e| format!("{method} {url}: {e}"))?;
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = r
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .map_err(|e| format!("{method} {url}: reading the answer: {e}"))?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// Percent-decoding (and `+` as space in query strings is not applied: Consul keys may hold `+`).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_url_decodes_path_and_query() {
        let (p, q) = split_url("/v1/kv/a%20b?recurse&index=3&wait=5s");
        assert_eq!(p, "/v1/kv/a b");
        assert_eq!(
            q,
            vec![
                ("recurse".to_string(), String::new()),
                ("index".to_string(), "3".to_string()),
                ("wait".to_string(), "5s".to_string())
            ]
        );
    }

    #[test]
    fn server_answers_and_injects_faults() {
        let srv = Server::start(
            "127.0.0.1:0",
            Arc::new(|r: Request| Response::text(200, &format!("{} {}", r.method, r.path))),
        )
        .unwrap();
        let body = ureq::get(&format!("{}/x", srv.url()))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        assert_eq!(body, "GET /x");
        srv.faults().fail_next(
            1,
            Fault::Status {
                status: 503,
                body: "down".into(),
            },
        );
        match ureq::get(&format!("{}/x", srv.url())).call() {
            Err(ureq::Error::StatusCode(503)) => {}
            other => panic!("expected 503, got {other:?}"),
        }
        srv.faults().fail_next(1, Fault::Reset);
        assert!(matches!(
            ureq::get(&format!("{}/x", srv.url())).call(),
            Err(ureq::Error::Io(_) | ureq::Error::Protocol(_) | ureq::Error::ConnectionFailed)
        ));
    }
}
