//! tasks2consul: registers running Marathon tasks as Consul services and deregisters dead ones.
//! See README.md for flags, the service ID format, ownership and the exit codes.

use std::io::BufRead;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use runtime::{CommonArgs, ConsulArgs, Exit, MarathonArgs, Summary, ToExit};
use tasks2consul::{events, follow, scope, AgentAddr, Clients, Config, Mode, SyncError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Catalog,
    Agent,
}

#[derive(Debug, Parser)]
#[command(
    name = "tasks2consul",
    version,
    about = "Register running Marathon tasks as Consul services, deregister dead ones"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    marathon: MarathonArgs,
    #[command(flatten)]
    consul: ConsulArgs,

    /// catalog: /v1/catalog/register on an external node per Mesos host (no agent needed
    /// there); agent: the Consul agent on the task's host (see --agent-port/--agent-url).
    #[arg(long, value_enum, default_value_t = ModeArg::Catalog)]
    mode: ModeArg,

    /// App label that opts an app in; its value names the service ("true" or empty: derived
    /// from the app id, /sami/api -> sami-api).
    #[arg(long, default_value = "consul", value_name = "LABEL")]
    label: String,

    /// Catalog mode: external node name = PREFIX + Mesos host.
    #[arg(long, default_value = "marathon-", value_name = "PREFIX")]
    node_prefix: String,

    /// Catalog mode: mark the external nodes `external-probe=true` so that consul-esm pings
    /// them (a host that stops answering fails all its services). Default: false.
    #[arg(long)]
    external_probe: bool,

    /// Agent mode: port of the Consul agent on each Mesos host (URL http(s)://<host>:PORT,
    /// the scheme of --consul).
    #[arg(long, default_value_t = 8500, value_name = "PORT")]
    agent_port: u16,

    /// Agent mode: agent URL template, `{host}` = the task's host, e.g. https://{host}:8501.
    /// Overrides --agent-port.
    #[arg(long, value_name = "TEMPLATE")]
    agent_url: Option<String>,

    /// Read Marathon's event stream (SSE or NDJSON) from stdin / --input and apply it as it
    /// arrives, with full resyncs at start, every --resync-interval and on stream gaps.
    #[arg(long)]
    events: bool,

    /// Run as a registrar: connect to Marathon's event stream (GET /v2/events over the
    /// --marathon URL set), apply it as it arrives, full syncs on every (re)connection and
    /// every --resync-interval; reconnect with backoff (capped at 30 s) until SIGTERM/SIGINT
    /// (exit 0). With --lock KEY only the holder of the Consul lock acts.
    #[arg(long, conflicts_with = "events")]
    follow: bool,

    /// --events/--follow: time between full resyncs.
    #[arg(long, default_value = "5m", value_name = "DUR", value_parser = runtime::parse_duration)]
    resync_interval: Duration,

    /// --follow: reconnect (and resync) when the stream sends nothing at all, not even
    /// Marathon's 10 s heartbeat, for this long.
    #[arg(long, default_value = "60s", value_name = "DUR", value_parser = runtime::parse_duration)]
    stream_timeout: Duration,

    /// --follow: serve GET /health (200 while connected to the stream with a full sync within
    /// 2 x --resync-interval + 60 s, else 503 and why) and GET /metrics (Prometheus text) on
    /// this address, e.g. 127.0.0.1:9102.
    #[arg(long, value_name = "ADDR", requires = "follow")]
    listen: Option<String>,

    /// The Marathon cluster this run speaks for, written to service and node meta
    /// `marathon-cluster`. Only registrations of this cluster are owned (one without that meta
    /// is `default`'s), so clusters sharing one Consul never touch each other's services.
    #[arg(
        long,
        env = "SHIPWATCH_CLUSTER",
        default_value = "default",
        value_name = "NAME"
    )]
    cluster: String,

    /// Mass-deregistration guard: the most owned registrations one run may deregister, a count
    /// (20) or a percentage of the owned ones (never below 1). Above it, or when a run would
    /// remove all of more than 3, nothing is deregistered (each reported skipped), registrations
    /// are still made, exit 75. `100%` turns the guard off (a cluster really emptied).
    /// Deregistrations are also held back (exit 75) when Marathon's leader (GET /v2/leader) is
    /// missing or changes during the read, and for an app listing fewer running tasks than its
    /// tasksRunning count.
    #[arg(long, default_value = "50%", value_name = "N|P%")]
    max_deregister: tasks2consul::plan::MaxDeregister,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("invalid payload: {0}")]
    Decode(#[from] watch::DecodeError),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ToExit for Error {
    fn exit(&self) -> Exit {
        match self {
            Error::Decode(e) => e.exit(),
            Error::Config(_) => Exit::Usage,
            Error::Sync(e) => e.exit(),
        }
    }
}

fn clients(args: &Args) -> Result<Clients, Error> {
    let mode = match args.mode {
        ModeArg::Catalog => Mode::Catalog,
        ModeArg::Agent => Mode::Agent,
    };
    if args.label.is_empty() || args.label.chars().any(|c| c.is_control() || c == '&') {
        return Err(Error::Config(format!("invalid --label {:?}", args.label)));
    }
    let cluster_ok = |c: &str| {
        !c.is_empty()
            && c.len() <= 128
            && c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_'))
    };
    if !cluster_ok(&args.cluster) {
        return Err(Error::Config(format!(
            "invalid --cluster {:?}: use 1 to 128 letters, digits, '.', '-' or '_'",
            runtime::text::capped_str(&args.cluster, 64)
        )));
    }
    if args.node_prefix.chars().any(char::is_control) {
        return Err(Error::Config("invalid --node-prefix".into()));
    }
    let agent = match mode {
        Mode::Catalog => None,
        Mode::Agent => Some(AgentAddr {
            template: match &args.agent_url {
                Some(t) if t.starts_with("http://") || t.starts_with("https://") => t.clone(),
                Some(t) => {
                    return Err(Error::Config(format!(
                        "--agent-url {t:?} must start with http:// or https://"
                    )))
                }
                None => {
                    let consul = runtime::config::consul_url(args.consul.consul_addr.as_deref())
                        .map_err(|e| Error::Config(e.to_string()))?;
                    let scheme = if consul.starts_with("https://") {
                        "https"
                    } else {
                        "http"
                    };
                    format!("{scheme}://{{host}}:{}", args.agent_port)
                }
            },
        }),
    };
    Ok(Clients {
        marathon: args.marathon.clone(),
        consul: args.consul.clone(),
        cfg: Config {
            label: args.label.clone(),
            mode,
            node_prefix: args.node_prefix.clone(),
            external_probe: args.external_probe,
            cluster: args.cluster.clone(),
            max_deregister: args.max_deregister,
        },
        agent,
        timeout: args.common.timeout,
    })
}

fn main() {
    let args: Args = runtime::parse_args();
    if args.events {
        run_events(&args);
    }
    if args.follow {
        run_follow(&args);
    }
    // `--lock KEY`: when several agents run the same watch, one acts, the others exit 0.
    consul::lock::run_locked("tasks2consul", &args.common, &args.consul, |ctx| {
        // Only the scope is kept: the decoded payload (a keyprefix watch delivers every entry
        // with its value) is freed before the sync (issue 13 item 5).
        let (scope, complaints) = scope::scope_of(&watch::detect(&ctx.payload)?);
        let clients = clients(&args)?;
        let mut summary = ctx.summary();
        for c in complaints {
            log::warn!("{c}");
            summary.error(c);
        }
        if let scope::Scope::Apps(apps) = &scope {
            log::info!("sync limited to {} app(s) named by the event", apps.len());
        }
        let result = clients
            .with_syncer_until(ctx.deadline, &mut |s| {
                s.run(&scope, ctx.dry_run, &mut summary)
            })
            .map_err(Error::Config)?;
        result?;
        Ok::<_, Error>(summary)
    })
}

/// `--events`: stdin (or --input) is a stream, read as it arrives rather than to EOF first.
fn run_events(args: &Args) -> ! {
    runtime::init_logging_as(args.common.log_format);
    let started = std::time::SystemTime::now();
    let started_at = std::time::Instant::now();
    runtime::stop::install();
    if args.common.lock.is_some() {
        log::warn!("--lock is not supported with --events (run one event consumer); ignored");
    }
    let consul_index = watch::consul_index_from_env();
    let mut summary = Summary::new("tasks2consul", args.common.dry_run, consul_index);
    let clients = match clients(args) {
        Ok(c) => c,
        Err(e) => {
            summary.error(e.to_string());
            summary.raise_exit(e.exit());
            runtime::finish(&summary, args.common.output);
        }
    };
    let input: Box<dyn BufRead + Send> = match args.common.input.as_deref() {
        Some(p) if p != std::path::Path::new("-") => match std::fs::File::open(p) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => {
                summary.error(format!("cannot read --input {}: {e}", p.display()));
                summary.raise_exit(Exit::Usage);
                runtime::finish(&summary, args.common.output);
            }
        },
        _ => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let opts = events::Options {
        resync_interval: args.resync_interval.max(Duration::from_secs(1)),
        dry_run: args.common.dry_run,
        max_actions: 10_000,
        follow: false,
    };
    let cfg = clients.cfg.clone();
    let mut summary = events::run(input, &clients, &cfg, &opts, summary);
    runtime::record(&args.common, &mut summary, started, started_at.elapsed());
    runtime::finish(&summary, args.common.output)
}

/// `--follow`: a long-lived registrar on Marathon's event stream. Ends on SIGTERM/SIGINT
/// (after the write in flight) with exit 0, or at once with 64 on bad flags.
fn run_follow(args: &Args) -> ! {
    runtime::init_logging_as(args.common.log_format);
    let started = std::time::SystemTime::now();
    let started_at = std::time::Instant::now();
    runtime::stop::install();
    let mut summary = Summary::new("tasks2consul", args.common.dry_run, None);
    let setup = clients(args).and_then(|c| {
        // The stream's client: the same URLs, credentials and TLS as every request; no overall
        // deadline (the stream lives for days), a read timeout of --stream-timeout instead.
        let stream = args
            .marathon
            .client(runtime::Deadline::after(LIFETIME))
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok((c, stream))
    });
    let (clients, stream_client) = match setup {
        Ok(v) => v,
        Err(e) => {
            summary.error(e.to_string());
            summary.raise_exit(e.exit());
            runtime::finish(&summary, args.common.output);
        }
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(1024);
    let stream_opts =
        follow::StreamOptions::new(args.stream_timeout.max(Duration::from_millis(100)));
    log::info!(
        "following Marathon's event stream (resync every {:?}, stream timeout {:?})",
        args.resync_interval,
        stream_opts.idle
    );
    follow::spawn_stream(stream_client, stream_opts, tx);
    let opts = events::Options {
        resync_interval: args.resync_interval.max(Duration::from_secs(1)),
        dry_run: args.common.dry_run,
        max_actions: 10_000,
        follow: true,
    };
    let metrics = std::sync::Arc::new(follow::Metrics::default());
    if let Some(addr) = &args.listen {
        let max_age = opts.resync_interval * 2 + Duration::from_secs(60);
        match follow::serve(addr, std::sync::Arc::clone(&metrics), max_age) {
            Ok(bound) => log::info!("serving /health and /metrics on http://{bound}"),
            Err(e) => {
                summary.error(e);
                summary.raise_exit(Exit::Usage);
                runtime::finish(&summary, args.common.output);
            }
        }
    }
    // `--lock KEY`: held for the life of the process; only the holder acts. A dry run writes
    // nothing and takes no lock (as every handler).
    let lock = match args.common.lock.as_deref().filter(|_| !args.common.dry_run) {
        Some(key) => match lock_for_life(args, key) {
            Ok(l) => {
                metrics
                    .lock_used
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Some(l)
            }
            Err(e) => {
                summary.error(format!("--lock: {e}"));
                summary.raise_exit(e.exit());
                runtime::finish(&summary, args.common.output);
            }
        },
        None => None,
    };
    let cfg = clients.cfg.clone();
    let may_act = || lock.as_ref().is_none_or(|l| l.held());
    let mut summary = events::run_feed(&rx, &clients, &cfg, &opts, summary, &metrics, &may_act);
    // Released before the exit (process::exit runs no destructors): the standby takes over
    // without waiting for the session TTL.
    drop(lock);
    runtime::record(&args.common, &mut summary, started, started_at.elapsed());
    // A stop signal is how a registrar ends: exit 0 (what failed meanwhile was logged, and
    // the syncs after it repaired it).
    finish_follow(&summary, args.common.output)
}

/// Starts contending for `key` for the life of the process.
fn lock_for_life(args: &Args, key: &str) -> Result<consul::lock::Standing, consul::ConsulError> {
    // No overall deadline: each Consul call is bounded by its own timeout and retries, and
    // the lock counts as lost after a TTL without a successful renew.
    let client = args
        .consul
        .client(runtime::Deadline::after(LIFETIME))
        .map_err(|e| consul::ConsulError::Unexpected {
            what: "configuration".into(),
            reason: e.to_string(),
        })?;
    consul::lock::Standing::start(
        std::sync::Arc::new(consul::Consul::new(client)),
        key,
        &consul::lock::holder_name("tasks2consul"),
        args.common.lock_ttl,
    )
}

/// The "deadline" of clients that live as long as the process (each request still has its
/// own timeout).
const LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);

fn finish_follow(summary: &Summary, output: runtime::OutputFormat) -> ! {
    use std::io::Write;
    let text = match output {
        runtime::OutputFormat::Json => format!("{}\n", summary.to_json()),
        runtime::OutputFormat::Text => summary.to_text(),
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    std::process::exit(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        super::Args::command().debug_assert();
    }
}
