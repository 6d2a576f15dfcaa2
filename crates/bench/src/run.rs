//! Running the cases: repetitions alternate between contestants, every run gets a fresh world,
//! the doubles' counters are diffed around the measured process, and a global budget bounds it
//! all.

use std::time::{Duration, Instant};

use crate::cases::{Case, Kind};
use crate::proc;
use crate::stats::{fmt_duration, fmt_kib, fmt_ratio, median, median_duration};

pub struct Settings {
    pub reps: usize,
    pub deadline: Instant,
    pub budget: Duration,
    pub run_timeout: Duration,
    /// A contestant whose run took longer than this is not repeated.
    pub slow: Duration,
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub wall: Duration,
    pub rss_kib: Option<u64>,
    pub marathon_requests: Option<u64>,
    pub marathon_writes: Option<u64>,
    pub consul_writes: Option<u64>,
    pub result: String,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub case: String,
    pub label: String,
    pub kind: Kind,
    pub samples: Vec<Sample>,
    /// Why this contestant did not run (or stopped early).
    pub skipped: Option<String>,
}

/// Runs one case: `reps` rounds, each running every contestant once in order (so a slow
/// minute on the shared machine hits all of them, not one).
pub fn run_case(case: &Case, s: &Settings) -> Vec<Row> {
    let mut rows: Vec<Row> = case
        .contestants
        .iter()
        .map(|c| Row {
            case: case.title.clone(),
            label: c.label.clone(),
            kind: c.kind,
            samples: Vec::new(),
            skipped: c.prepare.as_ref().err().cloned(),
        })
        .collect();
    let mut done = vec![false; rows.len()];
    for rep in 0..s.reps {
        for (i, c) in case.contestants.iter().enumerate() {
            if done[i] {
                continue;
            }
            let Ok(prepare) = &c.prepare else {
                done[i] = true;
                continue;
            };
            let left = s.deadline.saturating_duration_since(Instant::now());
            if left < Duration::from_secs(1) {
                if rows[i].samples.is_empty() {
                    rows[i].skipped = Some(format!(
                        "time budget used up (--budget {} s)",
                        s.budget.as_secs()
                    ));
                }
                done[i] = true;
                continue;
            }
            let timeout = s.run_timeout.min(left);
            let prepared = match prepare(timeout) {
                Ok(p) => p,
                Err(e) => {
                    rows[i].skipped = Some(format!("setup failed: {e}"));
                    done[i] = true;
                    continue;
                }
            };
            let m0 = prepared
                .marathon
                .as_ref()
                .map(|m| (m.request_count(), m.write_count()));
            let c0 = prepared.consul.as_ref().map(|c| c.write_count());
            let outcome = match proc::run(&prepared.spec, timeout) {
                Ok(o) => o,
                Err(e) => {
                    rows[i].skipped = Some(format!("could not start: {e}"));
                    done[i] = true;
                    continue;
                }
            };
            let m1 = prepared
                .marathon
                .as_ref()
                .map(|m| (m.request_count(), m.write_count()));
            let c1 = prepared.consul.as_ref().map(|c| c.write_count());
            let result = (prepared.check)(&prepared, &outcome);
            let sample = Sample {
                wall: outcome.wall,
                rss_kib: outcome.max_rss_kib,
                marathon_requests: m0.zip(m1).map(|(a, b)| b.0 - a.0),
                marathon_writes: m0.zip(m1).map(|(a, b)| b.1 - a.1),
                consul_writes: c0.zip(c1).map(|(a, b)| b - a),
                result,
            };
            eprintln!(
                "  {:<34} run {}/{}: {:>9}  {}",
                c.label,
                rep + 1,
                s.reps,
                fmt_duration(sample.wall),
                sample.result
            );
            // A wrong end state (stale registrations) is still timed every round; a process that
            // failed or was slow is not repeated: one such run says what it has to say.
            if outcome.wall > s.slow || !outcome.success() {
                done[i] = true;
            }
            rows[i].samples.push(sample);
            // Drop the doubles (and their threads) before the next contestant starts.
            drop(prepared);
        }
    }
    rows
}

fn median_u64(v: &[Option<u64>]) -> String {
    let xs: Vec<f64> = v.iter().flatten().map(|x| *x as f64).collect();
    match median(&xs) {
        Some(m) => format!("{}", m.round() as u64),
        None => "-".into(),
    }
}

pub const HEADER: [&str; 10] = [
    "case",
    "contestant",
    "n",
    "wall (median)",
    "shipwatch/this",
    "Marathon req",
    "Marathon writes",
    "Consul writes",
    "peak RSS",
    "result",
];

/// The printed table cells, one row per contestant.
pub fn table_rows(rows: &[Row]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut last_case = String::new();
    for r in rows {
        let reference = rows
            .iter()
            .find(|x| x.case == r.case && x.kind == Kind::Shipwatch);
        let shipwatch = reference.and_then(|x| median_duration(&walls(x)));
        let case = if r.case == last_case {
            String::new()
        } else {
            r.case.clone()
        };
        last_case = r.case.clone();
        if r.samples.is_empty() {
            let why = r.skipped.clone().unwrap_or_else(|| "not run".into());
            let mut cells = vec![case, r.label.clone()];
            cells.extend(["0", "-", "-", "-", "-", "-", "-"].map(String::from));
            cells.push(format!("skipped: {why}"));
            out.push(cells);
            continue;
        }
        let wall = median_duration(&walls(r));
        let ratio = if reference.is_some_and(|x| std::ptr::eq(x, r)) {
            String::new()
        } else {
            fmt_ratio(shipwatch, wall)
        };
        let mut results: Vec<String> = Vec::new();
        for s in &r.samples {
            if !results.contains(&s.result) {
                results.push(s.result.clone());
            }
        }
        let rss = r.samples.iter().filter_map(|s| s.rss_kib).max();
        let col = |f: fn(&Sample) -> Option<u64>| {
            median_u64(&r.samples.iter().map(f).collect::<Vec<_>>())
        };
        out.push(vec![
            case,
            r.label.clone(),
            r.samples.len().to_string(),
            wall.map(fmt_duration).unwrap_or_else(|| "-".into()),
            ratio,
            col(|s| s.marathon_requests),
            col(|s| s.marathon_writes),
            col(|s| s.consul_writes),
            rss.map(fmt_kib).unwrap_or_else(|| "-".into()),
            results.join("; "),
        ]);
    }
    out
}

fn walls(r: &Row) -> Vec<Duration> {
    r.samples.iter().map(|s| s.wall).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64) -> Sample {
        Sample {
            wall: Duration::from_millis(ms),
            rss_kib: Some(ms),
            marathon_requests: Some(2),
            marathon_writes: Some(1),
            consul_writes: None,
            result: "ok".into(),
        }
    }

    #[test]
    fn rows_show_medians_ratio_and_skips() {
        let rows = vec![
            Row {
                case: "c".into(),
                label: "sw".into(),
                kind: Kind::Shipwatch,
                samples: vec![sample(10), sample(30), sample(20)],
                skipped: None,
            },
            Row {
                case: "c".into(),
                label: "bash".into(),
                kind: Kind::Baseline,
                samples: vec![sample(400)],
                skipped: None,
            },
            Row {
                case: "c".into(),
                label: "py".into(),
                kind: Kind::Baseline,
                samples: vec![],
                skipped: Some("`python3` is not on PATH".into()),
            },
        ];
        let t = table_rows(&rows);
        assert_eq!(
            t[0],
            ["c", "sw", "3", "20.0 ms", "", "2", "1", "-", "30 KiB", "ok"]
        );
        assert_eq!(t[1][0], "", "the case is named once");
        assert_eq!(t[1][3], "400.0 ms");
        assert_eq!(t[1][4], "0.050");
        assert_eq!(t[2][2], "0");
        assert_eq!(t[2][9], "skipped: `python3` is not on PATH");
    }
}
