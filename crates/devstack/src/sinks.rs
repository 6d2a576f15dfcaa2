//! Where notifications land in the devstack: an SMTP sink and a webhook sink, both on loopback,
//! recording every message; the demo shows them and tests read them from Rust or over HTTP.
//!
//! - [`SmtpSink`]: speaks enough SMTP (RFC 5321: `EHLO`/`HELO`, `AUTH PLAIN`/`LOGIN`, `MAIL`,
//!   `RCPT`, `DATA` with dot-stuffing, `RSET`, `NOOP`, `QUIT`) for a real client such as lettre.
//!   It offers no `STARTTLS`, so a client that requires TLS fails against it, as it should.
//!   `GET <http_url>/messages` lists what it received as JSON.
//! - [`WebhookSink`]: records every request (`POST` bodies and headers); `GET /_sink/requests`
//!   lists them. `fail_next(n)` makes it answer 500.
//!
//! Not a mail server: nothing is relayed or stored beyond the process.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::http::{Request, Response, Server};

/// One message the SMTP sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The user that authenticated (`AUTH`), if any. The password is never kept.
    pub auth_user: Option<String>,
    /// The message as sent (headers and body, dot-stuffing removed).
    pub data: String,
}

impl Mail {
    /// The value of header `name` (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = found.as_mut() {
                if line.starts_with(' ') || line.starts_with('\t') {
                    // Unfolding removes the CRLF only (RFC 5322 §2.2.3): the space stays.
                    v.push_str(line);
                    continue;
                }
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case(name) {
                    found = Some(v.trim().to_string());
                }
            }
        }
        found
    }

    /// The body (after the blank line), with quoted-printable soft line breaks joined.
    pub fn body(&self) -> String {
        let body = self
            .data
            .split_once("\r\n\r\n")
            .map(|x| x.1)
            .unwrap_or_default();
        body.replace("=\r\n", "")
    }

    fn to_json(&self) -> Value {
        json!({"from": self.from, "to": self.to, "auth_user": self.auth_user,
               "subject": self.header("Subject"), "data": self.data})
    }
}

/// A loopback SMTP server that records messages.
pub struct SmtpSink {
    addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    stop: Arc<AtomicBool>,
    http: Server,
}

impl SmtpSink {
    pub fn start() -> std::io::Result<SmtpSink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        {
            let mails = Arc::clone(&mails);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("smtp-sink".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        let mails = Arc::clone(&mails);
                        std::thread::spawn(move || {
                            let _ = smtp_session(conn, &mails);
                        });
                    }
                })?;
        }
        let http = {
            let mails = Arc::clone(&mails);
            Server::start(
                "127.0.0.1:0",
                Arc::new(
                    move |req: Request| match (req.method.as_str(), req.path.as_str()) {
                        ("GET", "/messages") => {
                            let list: Vec<Value> =
                                mails.lock().unwrap().iter().map(Mail::to_json).collect();
                            Response::json(200, &Value::Array(list))
                        }
                        ("DELETE", "/messages") => {
                            mails.lock().unwrap().clear();
                            Response::empty(204)
                        }
                        _ => Response::text(404, "GET or DELETE /messages"),
                    },
                ),
            )?
        };
        Ok(SmtpSink {
            addr,
            mails,
            stop,
            http,
        })
    }

    pub fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Where `GET /messages` lists the messages.
    pub fn http_url(&self) -> String {
        self.http.url()
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn smtp_session(conn: TcpStream, mails: &Mutex<Vec<Mail>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    let say = |w: &mut TcpStream, s: &str| w.write_all(format!("{s}\r\n").as_bytes());
    say(&mut w, "220 devstack-smtp ESMTP ready")?;
    let (mut from, mut to, mut auth_user) = (String::new(), Vec::new(), None);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            say(&mut w, "250-devstack-smtp")?;
            say(&mut w, "250-AUTH PLAIN LOGIN")?;
            say(&mut w, "250 8BITMIME")?;
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            say(&mut w, "250 ok")?;
        } else if upper.starts_with("AUTH PLAIN") {
            let arg = cmd.get(10..).unwrap_or_default().trim().to_string();
            let arg = if arg.is_empty() {
                say(&mut w, "334 ")?;
                let mut l = String::new();
                r.read_line(&mut l)?;
                l.trim().to_string()
            } else {
                arg
            };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(arg)
                .unwrap_or_default();
            let parts: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
            auth_user = parts
                .get(1)
                .map(|u| String::from_utf8_lossy(u).into_owned());
            say(&mut w, "235 2.7.0 authenticated")?;
        } else if upper.starts_with("AUTH LOGIN") {
            say(&mut w, "334 VXNlcm5hbWU6")?;
            let mut u = String::new();
            r.read_line(&mut u)?;
            say(&mut w, "334 UGFzc3dvcmQ6")?;
            let mut p = String::new();
            r.read_line(&mut p)?;
            let user = base64::engine::general_purpose::STANDARD
                .decode(u.trim())
                .unwrap_or_default();
            auth_user = Some(String::from_utf8_lossy(&user).into_owned());
            say(&mut w, "235 2.7.0 authenticated")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = addr_of(&cmd[10..]);
            to.clear();
            say(&mut w, "250 ok")?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(addr_of(&cmd[8..]));
            say(&mut w, "250 ok")?;
        } else if upper == "DATA" {
            say(&mut w, "354 end with <CRLF>.<CRLF>")?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l)? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" || l == ".\n" {
                    break;
                }
                data.push_str(
                    l.strip_prefix('.')
                        .filter(|_| l.starts_with(".."))
                        .unwrap_or(&l),
                );
            }
            mails.lock().unwrap().push(Mail {
                from: from.clone(),
                to: std::mem::take(&mut to),
                auth_user: auth_user.clone(),
                data,
            });
            say(&mut w, "250 2.0.0 queued")?;
        } else if upper == "RSET" {
            to.clear();
            say(&mut w, "250 ok")?;
        } else if upper == "QUIT" {
            say(&mut w, "221 bye")?;
            return Ok(());
        } else {
            say(&mut w, "502 5.5.2 command not implemented")?;
        }
    }
}

fn addr_of(s: &str) -> String {
    let s = s.trim();
    let s = s.split_whitespace().next().unwrap_or_default();
    s.trim_start_matches('<').trim_end_matches('>').to_string()
}

/// One request the webhook sink received.
#[derive(Debug, Clone)]
pub struct Hook {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Hook {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A loopback webhook receiver (Slack-compatible or generic JSON) that records every request.
pub struct WebhookSink {
    server: Server,
    hooks: Arc<Mutex<Vec<Hook>>>,
    failing: Arc<AtomicUsize>,
}

impl WebhookSink {
    pub fn start() -> std::io::Result<WebhookSink> {
        let hooks: Arc<Mutex<Vec<Hook>>> = Arc::default();
        let failing = Arc::new(AtomicUsize::new(0));
        let server = {
            let hooks = Arc::clone(&hooks);
            let failing = Arc::clone(&failing);
            Server::start(
                "127.0.0.1:0",
                Arc::new(move |req: Request| {
                    if req.method == "GET" && req.path == "/_sink/requests" {
                        let list: Vec<Value> = hooks
                            .lock()
                            .unwrap()
                            .iter()
                            .map(|h| {
                                json!({"method": h.method, "path": h.path,
                                       "body": String::from_utf8_lossy(&h.body)})
                            })
                            .collect();
                        return Response::json(200, &Value::Array(list));
                    }
                    hooks.lock().unwrap().push(Hook {
                        method: req.method.clone(),
                        path: req.path.clone(),
                        headers: req.headers.clone(),
                        body: req.body.clone(),
                    });
                    let fail = failing
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if fail {
                        Response::text(500, "sink told to fail")
                    } else {
                        Response::text(200, "ok")
                    }
                }),
            )?
        };
        Ok(WebhookSink {
            server,
            hooks,
            failing,
        })
    }

    /// `http://127.0.0.1:<port>`: append any path (a Slack-style secret path works).
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn hooks(&self) -> Vec<Hook> {
        self.hooks.lock().unwrap().clone()
    }

    /// The next `n` requests are answered 500 (and still recorded).
    pub fn fail_next(&self, n: usize) {
        self.failing.store(n, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_sink_records_a_plain_session() {
        let sink = SmtpSink::start().unwrap();
        let conn = TcpStream::connect(("127.0.0.1", sink.port())).unwrap();
        let mut w = conn.try_clone().unwrap();
        let mut r = BufReader::new(conn);
        let mut line = String::new();
        let mut expect = |r: &mut BufReader<TcpStream>, code: &str| loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            assert!(line.starts_with(code), "{line}");
            if line.as_bytes().get(3) == Some(&b' ') {
                break;
            }
        };
        expect(&mut r, "220");
        for (cmd, code) in [
            ("EHLO t", "250"),
            ("AUTH PLAIN AHVzZXIAc2VjcmV0", "235"),
            ("MAIL FROM:<a@x>", "250"),
            ("RCPT TO:<b@y>", "250"),
            ("DATA", "354"),
        ] {
            w.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
            expect(&mut r, code);
        }
        w.write_all(b"Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\n")
            .unwrap();
        expect(&mut r, "250");
        w.write_all(b"QUIT\r\n").unwrap();
        expect(&mut r, "221");
        let m = &sink.mails()[0];
        assert_eq!(
            (m.from.as_str(), m.to.clone()),
            ("a@x", vec!["b@y".to_string()])
        );
        assert_eq!(m.auth_user.as_deref(), Some("user"));
        assert_eq!(m.header("subject").as_deref(), Some("hi"));
        assert_eq!(m.body(), ".dot\r\nbody\r\n");
    }

    #[test]
    fn folded_headers_keep_the_space_they_were_folded_at() {
        let m = Mail {
            from: String::new(),
            to: Vec::new(),
            auth_user: None,
            data: "Subject: 0 failed, 0 held\r\n back\r\nTo: x\r\n\r\nbody".into(),
        };
        assert_eq!(
            m.header("Subject").as_deref(),
            Some("0 failed, 0 held back")
        );
    }
}
