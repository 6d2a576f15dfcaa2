//! The command-line conventions every handler shares.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::exit::Exit;

/// `--output text|json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// Flags every handler takes (flatten into the handler's own clap parser).
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Read the watch payload from this file instead of stdin ("-" = stdin).
    #[arg(long, value_name = "PATH")]
    pub input: Option<PathBuf>,

    /// Change nothing; compute and show the plan.
    #[arg(long)]
    pub dry_run: bool,

    /// What to print on stdout at the end: a readable summary, or exactly one JSON document.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Overall deadline for this invocation (the Consul agent never kills a hung handler).
    #[arg(long, value_name = "DUR", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Take a Consul session lock on this KV key before acting, so that only one of several
    /// agents running the same watch acts (the others exit 0).
    #[arg(long, value_name = "KEY")]
    pub lock: Option<String>,

    /// TTL of the --lock session: a crashed holder blocks other runs at most this long (Consul
    /// may take up to twice the TTL to reap it; minimum 10s).
    #[arg(long, value_name = "DUR", default_value = "15s", value_parser = parse_duration)]
    pub lock_ttl: Duration,

    /// Post a JSON summary (Slack-compatible `text`) to this webhook after a run that changed or
    /// failed something (repeatable). Webhook URLs are secrets: prefer SHIPWATCH_NOTIFY
    /// (comma-separated) over the flag, which shows in `ps`.
    #[arg(
        long = "notify",
        value_name = "URL",
        env = "SHIPWATCH_NOTIFY",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub notify: Vec<String>,

    /// Route notifications to teams: named Slack, JSON-webhook and email channels, routes by
    /// app/job id prefix, team label or Chronos owner (JSON, or TOML for `*.toml`; see README).
    #[arg(long, value_name = "FILE", env = "SHIPWATCH_NOTIFY_CONFIG")]
    pub notify_config: Option<PathBuf>,

    /// After each run, write Prometheus text-format metrics here (atomically) for node-exporter's
    /// textfile collector; a directory gets `shipwatch_<handler>.prom`.
    #[arg(long, value_name = "PATH", env = "SHIPWATCH_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,

    /// Append the run's JSON summary (with timestamp and duration) as one line to this file.
    #[arg(long, value_name = "PATH", env = "SHIPWATCH_JOURNAL")]
    pub journal: Option<PathBuf>,

    /// Rotate the --journal file to PATH.1 (one rotation) before it grows past this size.
    #[arg(long, value_name = "SIZE", default_value = "16M", env = "SHIPWATCH_JOURNAL_MAX_SIZE",
          value_parser = crate::record::parse_size)]
    pub journal_max_size: u64,

    /// Format of the log lines on stderr: text, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SHIPWATCH_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// `--log-format text|json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Parses Go-style durations (Go's `time.ParseDuration`) as operators write them for Consul and
/// Marathon: `300ms`, `10s`, `5m`, `1h`, `1h30m`, `1.5h`, `250us`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("invalid duration {s:?}: missing unit (ms, s, m, h)"))?;
        if num_end == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let value: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("invalid duration {s:?}: unknown unit {other:?}")),
        };
        total += Duration::from_secs_f64(value * unit);
        rest = &rest[unit_end..];
    }
    Ok(total)
}

/// Parses the handler's flags. `--help`/`--version` print and exit 0; any usage error prints
/// clap's message and exits 64 (EX_USAGE) instead of clap's default 2.
pub fn parse_args<P: clap::Parser>() -> P {
    // Packaging hook, outside the clap definition so it is in no man page or completion:
    // `HANDLER --generate-docs DIR` writes DIR/man/HANDLER.1 and DIR/completions/* and exits.
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if raw.len() == 3 && raw[1] == "--generate-docs" {
        let code = match generate_docs(P::command(), std::path::Path::new(&raw[2])) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("--generate-docs: {e}");
                Exit::Software.code()
            }
        };
        std::process::exit(code);
    }
    match P::try_parse() {
        Ok(p) => p,
        Err(e) => {
            let code = if e.use_stderr() {
                Exit::Usage.code()
            } else {
                0
            };
            let _ = e.print();
            // Drain stdin so the agent's write of the payload never fails with EPIPE.
            if code != 0 {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
                // --output json promises exactly one JSON document, usage errors included.
                if wants_json(std::env::args()) {
                    let name = P::command().get_name().to_string();
                    let mut summary = crate::Summary::new(&name, false, None);
                    summary.error(e.kind().to_string());
                    println!("{}", summary.to_json());
                }
            }
            std::process::exit(code);
        }
    }
}

/// Writes the man page (`man/NAME.1`) and bash, zsh and fish completions (`completions/`) of
/// `cmd` under `dir`.
pub fn generate_docs(mut cmd: clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
    use clap_complete::Shell;
    let name = cmd.get_name().to_string();
    std::fs::create_dir_all(dir.join("man"))?;
    std::fs::create_dir_all(dir.join("completions"))?;
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(dir.join("man").join(format!("{name}.1")), page)?;
    for (shell, file) in [
        (Shell::Bash, name.clone()),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, name.clone(), &mut out);
        std::fs::write(dir.join("completions").join(file), out)?;
    }
    Ok(())
}

/// Whether the command line asks for `--output json` (read before clap could parse it).
fn wants_json(args: impl Iterator<Item = String>) -> bool {
    let args: Vec<String> = args.collect();
    args.iter().any(|a| a == "--output=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--output" && w[1] == "json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_output_is_recognised_before_parsing() {
        let v = |s: &[&str]| {
            s.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .into_iter()
        };
        assert!(wants_json(v(&["kv2jobs", "--bogus", "--output", "json"])));
        assert!(wants_json(v(&["kv2jobs", "--output=json"])));
        assert!(!wants_json(v(&["kv2jobs", "--output", "text"])));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
    }
}
