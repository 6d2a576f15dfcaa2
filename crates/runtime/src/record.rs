//! Durable records of a run, beyond the Consul agent's debug log (which keeps only the last 4 KiB
//! of a handler's output): `--metrics-file` (Prometheus text format for node-exporter's textfile
//! collector) and `--journal` (one JSON line per run, size-capped with one rotation).
//!
//! Neither may change the outcome of a run: a failure to write is logged and listed in `errors`,
//! never a different exit code.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Status, Summary};

/// What the records need to know about a finished run.
pub struct RunRecord<'a> {
    pub summary: &'a Summary,
    pub started: SystemTime,
    pub duration: Duration,
}

/// Where `--metrics-file PATH` writes: PATH itself, or `PATH/shipwatch_<handler>.prom` when
/// PATH is a directory (the textfile collector reads every `*.prom` in its directory, and each
/// handler needs its own file: they run independently).
pub fn metrics_path(path: &Path, handler: &str) -> PathBuf {
    if path.is_dir() {
        path.join(format!("shipwatch_{handler}.prom"))
    } else {
        path.to_path_buf()
    }
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Escapes a label value as the text format requires (`\`, `"` and newlines).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The value of `name{handler="h"}` in an earlier metrics file, if any (to carry the last
/// success time across failed runs).
fn previous_value(text: &str, name: &str, handler: &str) -> Option<f64> {
    let prefix = format!("{name}{{handler=\"{}\"}} ", label(handler));
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// The metrics of one run in Prometheus text format (exposition format 0.0.4).
pub fn metrics_text(rec: &RunRecord<'_>, previous: Option<&str>) -> String {
    let s = rec.summary;
    let h = label(&s.handler);
    let exit = s.exit().code();
    let now = secs(rec.started + rec.duration);
    let last_success = if exit == 0 {
        Some(now)
    } else {
        previous
            .and_then(|p| previous_value(p, "shipwatch_last_success_timestamp_seconds", &s.handler))
    };
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{{handler=\"{h}\"{labels}}} {v}");
        }
    };
    gauge(
        "shipwatch_last_run_timestamp_seconds",
        "When the last run ended (Unix time).",
        &[(String::new(), now)],
    );
    gauge(
        "shipwatch_last_run_duration_seconds",
        "How long the last run took.",
        &[(String::new(), rec.duration.as_secs_f64())],
    );
    gauge(
        "shipwatch_last_run_exit_code",
        "Exit code of the last run (0 ok, 64 usage, 65 bad payload, 69 unavailable, 75 partial).",
        &[(String::new(), f64::from(exit))],
    );
    if let Some(t) = last_success {
        gauge(
            "shipwatch_last_success_timestamp_seconds",
            "When a run last ended with exit 0 (Unix time).",
            &[(String::new(), t)],
        );
    }
    let mut by_kind: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
    for a in &s.actions {
        *by_kind.entry((&a.kind, a.status.as_str())).or_default() += 1;
    }
    let actions: Vec<(String, f64)> = by_kind
        .iter()
        .map(|((k, st), n)| (format!(",kind=\"{}\",status=\"{st}\"", label(k)), *n as f64))
        .collect();
    gauge(
        "shipwatch_last_run_actions",
        "Actions of the last run by kind and status.",
        &actions,
    );
    gauge(
        "shipwatch_last_run_errors",
        "Errors reported by the last run.",
        &[(String::new(), s.errors.len() as f64)],
    );
    gauge(
        "shipwatch_last_run_warnings",
        "Warnings reported by the last run (held-back deletes, an index that went backwards).",
        &[(String::new(), s.warnings.len() as f64)],
    );
    // Drift: what the run found different from what it should be (writes applied, or planned
    // in a dry run). A non-zero value on a replay means the live state drifted.
    let drift = s
        .actions
        .iter()
        .filter(|a| matches!(a.status, Status::Applied | Status::Planned))
        .count();
    gauge(
        "shipwatch_last_run_drift",
        "Targets the last run found different from the desired state (applied or planned writes).",
        &[(String::new(), drift as f64)],
    );
    out
}

/// Writes the metrics file atomically (a temporary file in the same directory, then rename), so
/// the collector never reads half a file.
pub fn write_metrics(path: &Path, rec: &RunRecord<'_>) -> Result<(), String> {
    let target = metrics_path(path, &rec.summary.handler);
    let previous = std::fs::read_to_string(&target).ok();
    let text = metrics_text(rec, previous.as_deref());
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("metrics"),
        std::process::id()
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("--metrics-file {}: {e}", target.display())
    })
}

/// The journal line of a run: the JSON summary with `timestamp` (RFC 3339, UTC), `duration_ms`
/// and `exit`.
pub fn journal_line(rec: &RunRecord<'_>) -> String {
    /// The summary's fields, then the run's: serialized straight into the line (a
    /// `serde_json::Value` of a large summary costs several times the summary).
    #[derive(serde::Serialize)]
    struct Line<'a> {
        #[serde(flatten)]
        summary: &'a Summary,
        timestamp: String,
        duration_ms: u64,
        exit: i32,
    }
    let line = Line {
        summary: rec.summary,
        timestamp: jiff::Timestamp::try_from(rec.started)
            .map(|t| t.to_string())
            .unwrap_or_default(),
        duration_ms: rec.duration.as_millis() as u64,
        exit: rec.summary.exit().code(),
    };
    let mut line = serde_json::to_string(&line).unwrap_or_else(|_| "{}".to_string());
    line.push('\n');
    line
}

/// Appends the run's line to the journal, rotating it to `PATH.1` first when it would grow past
/// `max_bytes` (one rotation: the older `PATH.1` is replaced). Concurrent runs are serialized by
/// an exclusive lock on `PATH.lock`, and each line is one `write` on an `O_APPEND` file.
pub fn append_journal(path: &Path, max_bytes: u64, rec: &RunRecord<'_>) -> Result<(), String> {
    let line = journal_line(rec);
    let err = |e: std::io::Error| format!("--journal {}: {e}", path.display());
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(err)?;
    lock.lock().map_err(err)?;
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size > 0 && size + line.len() as u64 > max_bytes {
        let rotated = PathBuf::from(format!("{}.1", path.display()));
        std::fs::rename(path, &rotated).map_err(err)?;
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(err)?;
    f.write_all(line.as_bytes()).map_err(err)?;
    drop(f);
    let _ = lock.unlock();
    Ok(())
}

/// Parses a size: bytes, or with a `K`, `M`, `G` suffix (powers of 1024; `KiB`, `MB` accepted).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(format!("invalid size {s:?}: use bytes or K, M, G")),
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("invalid size {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Exit};

    fn summary() -> Summary {
        let mut s = Summary::new("kv2jobs", false, Some(42));
        s.push(Action::new("update-app", "/a", Status::Applied, "x"));
        s.push(Action::new("update-app", "/b", Status::Unchanged, ""));
        s.push(Action::new(
            "delete-app",
            "/c",
            Status::Skipped,
            "held back",
        ));
        s
    }

    fn rec(s: &Summary) -> RunRecord<'_> {
        RunRecord {
            summary: s,
            started: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            duration: Duration::from_millis(250),
        }
    }

    /// Every sample line is `name{labels} value`, every family has HELP and TYPE (the text
    /// exposition format the textfile collector reads).
    #[test]
    fn metrics_are_in_the_text_format() {
        let s = summary();
        let text = metrics_text(&rec(&s), None);
        assert!(text.contains(
            "shipwatch_last_run_actions{handler=\"kv2jobs\",kind=\"update-app\",status=\"applied\"} 1"
        ));
        assert!(text.contains("shipwatch_last_run_exit_code{handler=\"kv2jobs\"} 0"));
        assert!(text.contains("shipwatch_last_run_drift{handler=\"kv2jobs\"} 1"));
        assert!(text.contains("shipwatch_last_run_duration_seconds{handler=\"kv2jobs\"} 0.25"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name_labels, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(name_labels.ends_with('}'), "{line}");
        }
    }

    #[test]
    fn a_failed_run_keeps_the_last_success_time() {
        let ok = summary();
        let first = metrics_text(&rec(&ok), None);
        let mut bad = summary();
        bad.raise_exit(Exit::Unavailable);
        let r = RunRecord {
            started: UNIX_EPOCH + Duration::from_secs(1_800_000_100),
            ..rec(&bad)
        };
        let second = metrics_text(&r, Some(&first));
        assert!(second.contains("shipwatch_last_run_exit_code{handler=\"kv2jobs\"} 69"));
        assert!(second.contains(
            "shipwatch_last_success_timestamp_seconds{handler=\"kv2jobs\"} 1800000000.25"
        ));
    }

    #[test]
    fn metrics_file_is_replaced_and_a_directory_gets_one_file_per_handler() {
        let dir = tempfile::tempdir().unwrap();
        let s = summary();
        write_metrics(dir.path(), &rec(&s)).unwrap();
        let f = dir.path().join("shipwatch_kv2jobs.prom");
        assert!(std::fs::read_to_string(&f)
            .unwrap()
            .contains("shipwatch_last_run_errors"));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn journal_lines_are_json_with_time_and_rotate_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let s = summary();
        let line_len = journal_line(&rec(&s)).len() as u64;
        for _ in 0..5 {
            append_journal(&path, line_len * 3, &rec(&s)).unwrap();
        }
        let cur = std::fs::read_to_string(&path).unwrap();
        let old = std::fs::read_to_string(dir.path().join("journal.jsonl.1")).unwrap();
        assert_eq!(cur.lines().count(), 2);
        assert_eq!(old.lines().count(), 3);
        let first = cur.lines().next().unwrap();
        assert!(
            first.starts_with(
                r#"{"handler":"kv2jobs","dry_run":false,"consul_index":42,"actions":["#
            ) && first.ends_with(r#""duration_ms":250,"exit":0}"#),
            "the summary's fields, then the run's: {first}"
        );
        let v: serde_json::Value = serde_json::from_str(first).unwrap();
        assert_eq!(v["handler"], "kv2jobs");
        assert_eq!(v["timestamp"], "2027-01-15T08:00:00Z");
        assert_eq!(v["duration_ms"], 250);
        assert_eq!(v["exit"], 0);
        assert_eq!(v["actions"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn concurrent_appends_never_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let s = summary();
        std::thread::scope(|sc| {
            for _ in 0..8 {
                sc.spawn(|| {
                    for _ in 0..25 {
                        append_journal(&path, 1 << 30, &rec(&s)).unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 200);
        for l in text.lines() {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10M").unwrap(), 10 << 20);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert!(parse_size("0").is_err());
        assert!(parse_size("5x").is_err());
    }
}
