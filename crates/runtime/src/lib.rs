//! runtime: the conventions every shipwatch handler shares, so each handler is only its logic.
//!
//! For: flags (`--input`, `--dry-run`, `--output text|json`, `--timeout`, `--lock`), endpoints
//! from flags and the ecosystem's environment variables, logging to stderr, reading (and always
//! draining) the payload, one overall deadline, bounded jittered retries, the HTTP client with
//! fail-over and redaction, the summary (text or the JSON contract) and the exit codes.
//! Not for: any handler's logic, or the Consul/Marathon protocols beyond HTTP (see the `consul`
//! and `marathon` crates).

mod cli;
pub mod config;
mod deadline;
mod exit;
pub mod http;
mod input;
pub mod notify;
pub mod record;
pub mod redact;
mod retry;
pub mod stop;
mod summary;
pub mod text;

use std::io::Write;

pub use cli::{parse_args, parse_duration, CommonArgs, LogFormat, OutputFormat};
pub use config::{ChronosArgs, ConsulArgs, MarathonArgs};
pub use deadline::Deadline;
pub use exit::{Exit, ToExit};
pub use input::{read_payload, InputError};
pub use retry::Backoff;
pub use summary::{Action, ActionMeta, Status, Summary};

/// What a handler's logic gets.
#[derive(Debug)]
pub struct Context {
    pub handler: &'static str,
    /// The whole payload (stdin was read to EOF).
    pub payload: Vec<u8>,
    pub consul_index: Option<u64>,
    pub deadline: Deadline,
    pub dry_run: bool,
    pub output: OutputFormat,
    /// `--notify-config` is set: messages are routed to teams by `Summary::meta`, which a
    /// handler need not gather otherwise (200,000 creates' routing facts are ~100 MB).
    pub routes_notifications: bool,
}

impl Context {
    /// An empty summary for this invocation.
    pub fn summary(&self) -> Summary {
        Summary::new(self.handler, self.dry_run, self.consul_index)
    }
}

/// Initializes logging to stderr (`RUST_LOG`, default `info`). Safe to call twice.
pub fn init_logging() {
    init_logging_as(LogFormat::Text)
}

/// Like [`init_logging`], with `--log-format json`: one object per line,
/// `{"ts","level","target","msg"}`, for log shippers.
pub fn init_logging_as(format: LogFormat) {
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    // ureq's debug log prints request headers (X-Consul-Token among them): never below warn.
    b.filter_module("ureq", log::LevelFilter::Warn)
        .filter_module("rustls", log::LevelFilter::Warn)
        .target(env_logger::Target::Stderr)
        .format_timestamp_millis();
    if format == LogFormat::Json {
        b.format(|buf, record| {
            let line = serde_json::json!({
                "ts": jiff::Timestamp::now().to_string(),
                "level": record.level().as_str(),
                "target": record.target(),
                "msg": record.args().to_string(),
            });
            writeln!(buf, "{line}")
        });
    }
    let _ = b.try_init();
}

/// Runs a handler: logging, payload, deadline, the handler's logic, the summary on stdout, and
/// the process exit code. Never returns.
pub fn run<E>(
    handler: &'static str,
    common: &CommonArgs,
    logic: impl FnOnce(&Context) -> Result<Summary, E>,
) -> !
where
    E: std::error::Error + ToExit,
{
    init_logging_as(common.log_format);
    stop::install();
    let started = std::time::SystemTime::now();
    let started_at = std::time::Instant::now();
    let consul_index = watch::consul_index_from_env();
    let deadline = Deadline::after(common.timeout);
    let notify_config = common
        .notify_config
        .as_deref()
        .map(notify::NotifyConfig::load)
        .transpose();
    let outcome = match (read_payload(common.input.as_deref()), &notify_config) {
        (Err(e), _) => Err((e.to_string(), e.exit())),
        // A configuration that cannot be read stops the run before it acts (64): its
        // notifications could not be sent.
        (Ok(_), Err(e)) => Err((e.clone(), Exit::Usage)),
        (Ok(payload), Ok(_)) => {
            let ctx = Context {
                handler,
                payload,
                consul_index,
                deadline,
                dry_run: common.dry_run,
                output: common.output,
                routes_notifications: common.notify_config.is_some(),
            };
            logic(&ctx).map_err(|e| (e.to_string(), e.exit()))
        }
    };
    let mut summary = match outcome {
        Ok(s) => s,
        Err((msg, exit)) => {
            log::error!("{msg}");
            let mut s = Summary::new(handler, common.dry_run, consul_index);
            s.error(msg);
            s.raise_exit(exit);
            s
        }
    };
    if stop::requested() {
        // The handler wound down early (it started no new write): say so, and exit 75 so the
        // agent's log and any supervisor see that a replay is needed.
        log::warn!("stopped by a signal; the summary lists what was done");
        summary.error("stopped by a signal before the run completed; replay the payload");
        summary.raise_exit(Exit::TempFail);
    }
    // Like `--notify`: a run that changed, failed and warned nothing (a watch replay, a paused
    // app's `skipped` line) tells no team.
    if let (Ok(Some(cfg)), false, true) = (
        &notify_config,
        common.dry_run,
        notify::worth_notifying(&summary),
    ) {
        for e in notify::send_routed(
            cfg,
            &summary,
            Deadline::after(std::time::Duration::from_secs(30)),
        ) {
            log::warn!("{e}");
            summary.error(e);
        }
    }
    if !common.notify.is_empty() && !common.dry_run && notify::worth_notifying(&summary) {
        // Failures to notify are reported but do not change the outcome of the run.
        for e in notify::notify(
            &common.notify,
            &summary,
            Deadline::after(std::time::Duration::from_secs(30)),
        ) {
            log::warn!("{e}");
            summary.error(e);
        }
    }
    record(common, &mut summary, started, started_at.elapsed());
    finish(&summary, common.output)
}

/// `--journal` and `--metrics-file`: written after the run (dry runs included: they are runs);
/// a failure to write is listed in `errors` and never changes the exit code.
pub fn record(
    common: &CommonArgs,
    summary: &mut Summary,
    started: std::time::SystemTime,
    duration: std::time::Duration,
) {
    let mut failures = Vec::new();
    {
        let rec = record::RunRecord {
            summary,
            started,
            duration,
        };
        if let Some(path) = &common.journal {
            if let Err(e) = record::append_journal(path, common.journal_max_size, &rec) {
                failures.push(e);
            }
        }
        if let Some(path) = &common.metrics_file {
            if let Err(e) = record::write_metrics(path, &rec) {
                failures.push(e);
            }
        }
    }
    for e in failures {
        log::warn!("{e}");
        summary.error(e);
    }
}

/// Prints the summary and exits with its code. The summary is written as it is serialized, never
/// built as one string first (issue 13 item 5: with one action per entry of a large payload it
/// is as large as the payload).
pub fn finish(summary: &Summary, output: OutputFormat) -> ! {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let _ = match output {
        OutputFormat::Json => summary.write_json(&mut out),
        OutputFormat::Text => summary.write_text(&mut out),
    };
    let _ = out.flush();
    drop(out);
    std::process::exit(summary.exit().code())
}
