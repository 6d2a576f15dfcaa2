//! `--follow`: tasks2consul reads Marathon's event stream itself and never ends on its own.
//!
//! A stream thread keeps one `GET /v2/events` open over the HA URL set and feeds the loop of
//! [`crate::events`] with the events and with its connection changes: every (re)connection asks
//! for a full sync (events are lost across reconnects and leader changes, go-marathon#336,
//! reference §2.1), a stream that ends, fails or stays silent for `--stream-timeout` (not even
//! the heartbeat Marathon writes every 10 s) is reopened with jittered exponential backoff
//! capped at 30 s. The loop subscribes first and syncs second, so nothing that happens between
//! the list and the subscription is missed (registrator#73).

use std::io::BufReader;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtime::http::HttpClient;
use runtime::Backoff;
use watch::{EventStream, StreamError};

use crate::events::Feed;

/// The events tasks2consul applies, as Marathon's filter parameter (repeated `event_type`,
/// Marathon 1.3.7+, reference §2.1): fewer bytes on a busy cluster.
pub const EVENT_TYPES: [&str; 6] = [
    "event_stream_attached",
    "status_update_event",
    "health_status_changed_event",
    "instance_health_changed_event",
    "app_terminated_event",
    "api_post_event",
];

/// `/v2/events?event_type=...` for [`EVENT_TYPES`].
pub fn events_path() -> String {
    let filter: Vec<String> = EVENT_TYPES
        .iter()
        .map(|t| format!("event_type={t}"))
        .collect();
    format!("/v2/events?{}", filter.join("&"))
}

/// How the stream thread connects.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    pub path: String,
    /// `--stream-timeout`: the longest silence (no byte at all) before the stream is reopened.
    pub idle: Duration,
    /// Waits between connection attempts (jittered, doubled per failure).
    pub backoff: Backoff,
}

impl StreamOptions {
    pub fn new(idle: Duration) -> StreamOptions {
        StreamOptions {
            path: events_path(),
            idle,
            backoff: Backoff {
                attempts: u32::MAX,
                base: Duration::from_millis(250),
                max: Duration::from_secs(30),
            },
        }
    }
}

/// Starts the stream thread. It ends when a stop is requested or the loop is gone.
pub fn spawn_stream(client: HttpClient, opts: StreamOptions, tx: SyncSender<Feed>) {
    let spawned = std::thread::Builder::new()
        .name("marathon-events".into())
        .spawn(move || stream_loop(&client, &opts, &tx));
    if let Err(e) = spawned {
        log::error!("cannot start the event stream thread: {e}");
    }
}

fn stream_loop(client: &HttpClient, opts: &StreamOptions, tx: &SyncSender<Feed>) {
    let accept = [("Accept", "text/event-stream".to_string())];
    let mut failures = 0u32;
    while !runtime::stop::requested() {
        match client.open_stream(&opts.path, &accept, opts.idle) {
            Ok(stream) => {
                let since = Instant::now();
                // The URL without the long filter, for logs.
                let url = stream.url.split('?').next().unwrap_or_default().to_string();
                if tx.send(Feed::Connected(url.clone())).is_err() {
                    return;
                }
                let Some(why) = pump(stream.reader, tx, opts.idle, &url) else {
                    return;
                };
                if tx.send(Feed::Lost(why)).is_err() {
                    return;
                }
                // A stream that lived a while was a good connection: start the backoff
                // again; one that ends at once (an abdicating leader) keeps growing it.
                if since.elapsed() >= Duration::from_secs(30) {
                    failures = 0;
                }
            }
            Err(e) => log::warn!("event stream: cannot connect: {e}"),
        }
        failures = failures.saturating_add(1);
        if !runtime::stop::sleep(opts.backoff.delay(failures)) {
            return;
        }
    }
}

/// Forwards the events of one connection; returns why it ended (`None`: the loop is gone).
fn pump(
    reader: Box<dyn std::io::Read + Send>,
    tx: &SyncSender<Feed>,
    idle: Duration,
    url: &str,
) -> Option<String> {
    for item in EventStream::new(BufReader::new(reader)) {
        let item = match item {
            Err(StreamError::Io { source, .. }) => {
                return Some(match source.kind() {
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                        format!("stalled: no byte from {url} for {idle:?} (--stream-timeout)")
                    }
                    _ => format!("read from {url} failed: {source}"),
                });
            }
            other => other.map_err(|e| e.to_string()),
        };
        tx.send(Feed::Event(item)).ok()?;
    }
    Some(format!("closed by {url} (a leader change?)"))
}

/// What `--listen` serves and what the loop counts, shared between threads.
#[derive(Debug, Default)]
pub struct Metrics {
    pub events_applied: AtomicU64,
    pub syncs: AtomicU64,
    pub sync_failures: AtomicU64,
    pub registrations: AtomicU64,
    pub deregistrations: AtomicU64,
    pub held_back: AtomicU64,
    pub reconnects: AtomicU64,
    /// Unix seconds of the last successful full sync (0: none yet).
    pub last_sync: AtomicI64,
    pub connected: AtomicBool,
    pub lock_held: AtomicBool,
    /// Set when `--lock` is in use (the metric is then meaningful).
    pub lock_used: AtomicBool,
}

impl Metrics {
    pub fn synced_now(&self) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.last_sync.store(unix_now(), Ordering::Relaxed);
    }

    /// Healthy: connected to the stream and a full sync succeeded within `max_age` (with
    /// `--lock`, a standby that does not hold the lock is healthy while connected: it is ready).
    pub fn healthy(&self, max_age: Duration) -> Result<(), String> {
        if !self.connected.load(Ordering::Relaxed) {
            return Err("not connected to Marathon's event stream".into());
        }
        if self.lock_used.load(Ordering::Relaxed) && !self.lock_held.load(Ordering::Relaxed) {
            return Ok(());
        }
        let last = self.last_sync.load(Ordering::Relaxed);
        if last == 0 {
            return Err("no full sync has succeeded yet".into());
        }
        let age = unix_now().saturating_sub(last);
        if age as u64 > max_age.as_secs() {
            return Err(format!("last successful full sync {age} s ago"));
        }
        Ok(())
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        let flag = |a: &AtomicBool| u8::from(a.load(Ordering::Relaxed)).to_string();
        let lock_held = if self.lock_used.load(Ordering::Relaxed) {
            flag(&self.lock_held)
        } else {
            "1".into()
        };
        let metrics: [(&str, &str, &str, String); 10] = [
            (
                "events_applied_total",
                "counter",
                "Marathon events applied.",
                n(&self.events_applied),
            ),
            (
                "syncs_total",
                "counter",
                "Successful full syncs.",
                n(&self.syncs),
            ),
            (
                "sync_failures_total",
                "counter",
                "Full syncs that could not read Marathon or Consul.",
                n(&self.sync_failures),
            ),
            (
                "registrations_total",
                "counter",
                "Services registered.",
                n(&self.registrations),
            ),
            (
                "deregistrations_total",
                "counter",
                "Services deregistered.",
                n(&self.deregistrations),
            ),
            (
                "held_back_deregistrations_total",
                "counter",
                "Deregistrations held back by a guard.",
                n(&self.held_back),
            ),
            (
                "stream_reconnects_total",
                "counter",
                "Event stream connections after the first.",
                n(&self.reconnects),
            ),
            (
                "last_sync_timestamp_seconds",
                "gauge",
                "Unix time of the last successful full sync (0: none).",
                self.last_sync.load(Ordering::Relaxed).to_string(),
            ),
            (
                "stream_connected",
                "gauge",
                "1 while the event stream is connected.",
                flag(&self.connected),
            ),
            (
                "lock_held",
                "gauge",
                "1 while this process holds the --lock session (always 1 without --lock).",
                lock_held,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in metrics {
            out.push_str(&format!(
                "# HELP tasks2consul_{name} {help}\n# TYPE tasks2consul_{name} {kind}\ntasks2consul_{name} {value}\n"
            ));
        }
        out
    }
}

/// `--listen ADDR`: serves `GET /health` (200 `ok`, or 503 and the reason, see
/// [`Metrics::healthy`]) and `GET /metrics` (Prometheus text) from a thread until the process
/// ends. Returns the bound address (port 0 picks one).
pub fn serve(
    addr: &str,
    metrics: Arc<Metrics>,
    max_age: Duration,
) -> Result<std::net::SocketAddr, String> {
    let server =
        tiny_http::Server::http(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| format!("--listen {addr}: not an IP address"))?;
    std::thread::Builder::new()
        .name("listen".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                let (status, ctype, body) = answer(req.method(), req.url(), &metrics, max_age);
                let header = tiny_http::Header::from_bytes("Content-Type", ctype)
                    .expect("a valid static header");
                let resp = tiny_http::Response::from_string(body)
                    .with_status_code(status)
                    .with_header(header);
                if let Err(e) = req.respond(resp) {
                    log::debug!("--listen: answering: {e}");
                }
            }
        })
        .map_err(|e| format!("--listen: {e}"))?;
    Ok(bound)
}

fn answer(
    method: &tiny_http::Method,
    url: &str,
    metrics: &Metrics,
    max_age: Duration,
) -> (u16, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let path = url.split('?').next().unwrap_or_default();
    if !matches!(method, tiny_http::Method::Get | tiny_http::Method::Head) {
        return (405, TEXT, "use GET\n".into());
    }
    match path {
        "/health" => match metrics.healthy(max_age) {
            Ok(()) => (200, TEXT, "ok\n".into()),
            Err(why) => (503, TEXT, format!("{why}\n")),
        },
        "/metrics" => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.prometheus(),
        ),
        _ => (404, TEXT, "GET /health or /metrics\n".into()),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_names_every_event_type() {
        let p = events_path();
        assert!(p.starts_with("/v2/events?event_type=event_stream_attached&"));
        for t in EVENT_TYPES {
            assert!(p.contains(&format!("event_type={t}")), "{p}");
        }
    }

    #[test]
    fn prometheus_text_has_help_type_and_value() {
        let m = Metrics::default();
        m.deregistrations.store(3, Ordering::Relaxed);
        let text = m.prometheus();
        assert!(text.contains("# TYPE tasks2consul_deregistrations_total counter\ntasks2consul_deregistrations_total 3\n"), "{text}");
        assert!(text.contains("tasks2consul_lock_held 1\n"), "{text}");
    }

    #[test]
    fn health_needs_a_connection_and_a_recent_sync() {
        let m = Metrics::default();
        assert!(m.healthy(Duration::from_secs(60)).is_err());
        m.connected.store(true, Ordering::Relaxed);
        assert!(m.healthy(Duration::from_secs(60)).is_err());
        m.synced_now();
        assert!(m.healthy(Duration::from_secs(60)).is_ok());
        m.last_sync.store(unix_now() - 600, Ordering::Relaxed);
        assert!(m.healthy(Duration::from_secs(60)).is_err());
    }
}
