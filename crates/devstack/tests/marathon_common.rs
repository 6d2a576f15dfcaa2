//! Helpers shared by the Marathon double's tests (included with `#[path]`, not a test itself).
#![allow(dead_code)]

use devstack::marathon::{Marathon, MarathonOptions};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(0)
        .max_redirects_will_error(false)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn reply(
    method: &str,
    url: &str,
    res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Reply {
    let mut resp = res.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(h, v)| {
            (
                h.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

/// Any status is an answer.
pub fn call(method: &str, url: &str, body: Option<&Value>) -> Reply {
    call_with(method, url, body, &[])
}

pub fn call_with(method: &str, url: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Reply {
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = match body {
        Some(b) => agent().run(
            req.header("Content-Type", "application/json")
                .body(serde_json::to_vec(b).unwrap())
                .unwrap(),
        ),
        None => agent().run(req.body(()).unwrap()),
    };
    reply(method, url, res)
}

pub fn raw_body(method: &str, url: &str, body: &str) -> Reply {
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .unwrap();
    let mut r = reply(method, url, agent().run(req));
    r.headers.clear();
    r
}

pub fn start() -> Marathon {
    Marathon::start(MarathonOptions::default()).unwrap()
}

/// A Marathon whose deployments never finish on their own (tests call finish_deployments()).
pub fn start_slow() -> Marathon {
    Marathon::start(MarathonOptions {
        deploy_duration: Duration::from_secs(3600),
        ..MarathonOptions::default()
    })
    .unwrap()
}

/// A raw SSE connection, for byte-exact framing checks.
pub struct Stream {
    pub conn: TcpStream,
    pub buf: String,
}

impl Stream {
    pub fn open(addr: std::net::SocketAddr, path: &str, accept: &str) -> Stream {
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n"
        )
        .unwrap();
        Stream {
            conn,
            buf: String::new(),
        }
    }

    /// Reads until `needle` occurs in the received bytes (panics after 10 s).
    pub fn wait_for(&mut self, needle: &str) -> &str {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut chunk = [0u8; 8192];
        while !self.buf.contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in stream: {:?}",
                self.buf
            );
            match self.conn.read(&mut chunk) {
                Ok(0) => panic!("stream closed before {needle:?}: {:?}", self.buf),
                Ok(n) => self.buf.push_str(&String::from_utf8_lossy(&chunk[..n])),
                Err(_) => {}
            }
        }
        &self.buf
    }

    /// One read (up to the 100 ms read timeout): whatever arrived, possibly nothing.
    pub fn read_some(&mut self) {
        let mut chunk = [0u8; 8192];
        if let Ok(n) = self.conn.read(&mut chunk) {
            self.buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }

    /// Reads until EOF (panics after 10 s).
    pub fn wait_closed(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut chunk = [0u8; 8192];
        loop {
            assert!(
                Instant::now() < deadline,
                "stream still open: {:?}",
                self.buf
            );
            match self.conn.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => self.buf.push_str(&String::from_utf8_lossy(&chunk[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
                Err(_) => {}
            }
        }
    }

    /// The `data:` payloads of every complete frame of `event_type` received so far.
    pub fn events(&self, event_type: &str) -> Vec<Value> {
        let marker = format!("event: {event_type}\r\ndata: ");
        self.buf
            .match_indices(&marker)
            .filter_map(|(i, _)| {
                let rest = &self.buf[i + marker.len()..];
                rest.split_once("\r\n\r\n")
                    .map(|(d, _)| serde_json::from_str(d).unwrap())
            })
            .collect()
    }
}
