//! `large-payload` (issue 13 item 5): each handler's peak RSS on a large watch payload, against
//! the budget of 4x the payload size plus 32 MiB. Two sizes (by default about 10 and 100 MiB)
//! show the slope: what a handler keeps per byte of payload, apart from its fixed cost.
//!
//! - tag2git: an `images/` keyprefix of bare tags for services 0, 1, 2, ... (about 150 bytes per
//!   entry); the 5,000-file jobs repository runs the first 5,000 of them (all get a new tag, one
//!   commit), the rest are images no job runs (each reported `skipped`).
//! - kv2jobs: a git2consul keyprefix of app files (about 600 bytes per entry) and its `.ref`,
//!   `--dry-run` against an empty Marathon: every app is read, validated, normalized and
//!   planned as a create, nothing is written (the Marathon double would need minutes to take
//!   100,000 apps).
//! - tasks2consul: the same keyprefix as its trigger (a keyprefix watch on `jobs/` resyncs the
//!   catalog after every deploy); a full sync of 10 apps x 2 tasks, so the payload dominates
//!   (the 10,000-task sync has its own target, issue 13 item 4, and a fixed cost above 32 MiB).
//!
//! Not in the default run (it takes minutes and needs about 1 GB of free memory for the bench's
//! own copies of the payloads); `--only large-payload` runs it, one run per handler and size.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::cases::{self, Case, Contestant, Kind, Prepare, Prepared, SharedRepo};
use crate::payloads;
use crate::proc::Outcome;
use crate::run::Row;
use crate::stats::{fmt_duration, fmt_kib, render_table};
use crate::tools::Tools;

pub const ID: &str = "large-payload";
/// Payload sizes measured by default, in MiB.
pub const DEFAULT_SIZES_MIB: [u64; 2] = [10, 100];

/// Issue 13 item 5: peak RSS at most 4x the payload plus 32 MiB.
pub fn budget_kib(payload_bytes: usize) -> u64 {
    4 * payload_bytes as u64 / 1024 + 32 * 1024
}

/// What the table says about each contestant besides its run: the payload it got.
pub struct Input {
    pub bytes: usize,
    pub entries: usize,
}

/// The case (one contestant per handler and size) and each contestant's payload, in order.
pub fn case(tools: &Tools, repo: &SharedRepo, sizes_mib: &[u64]) -> (Case, Vec<Input>) {
    let mut contestants = Vec::new();
    let mut inputs = Vec::new();
    for (round, &mib) in sizes_mib.iter().enumerate() {
        let bytes = (mib as usize) << 20;
        // A tag no earlier run of this repository set, so the jobs change and one commit is made.
        let tag = format!("3.{round}.0");
        let (images, n) = payloads::large_image_keyprefix(bytes, &tag, 5000 + round as u64);
        inputs.push(Input {
            bytes: images.len(),
            entries: n,
        });
        contestants.push(tag2git(tools, repo, Arc::new(images), mib));
        let (apps, n) = payloads::large_app_keyprefix(bytes, "1.0.0");
        let apps = Arc::new(apps);
        for _ in 0..2 {
            inputs.push(Input {
                bytes: apps.len(),
                entries: n + 1,
            });
        }
        contestants.push(kv2jobs(tools, Arc::clone(&apps), n, mib));
        contestants.push(tasks2consul(tools, apps, mib));
    }
    let sizes: Vec<String> = sizes_mib.iter().map(|m| format!("{m} MiB")).collect();
    let case = Case {
        id: ID,
        title: format!(
            "large payloads ({}): peak RSS vs 4x payload + 32 MiB",
            sizes.join(", ")
        ),
        contestants,
    };
    (case, inputs)
}

fn tag2git(tools: &Tools, repo: &SharedRepo, stdin: Arc<Vec<u8>>, mib: u64) -> Contestant {
    let prepare = tools.tag2git.clone().and_then(|bin| {
        tools.git.clone()?;
        let repo = Rc::clone(repo);
        Ok(Box::new(move |timeout: Duration| {
            cases::ensure_repo(&repo, &bin, timeout)?;
            let guard = repo.borrow();
            let r = guard.as_ref().ok_or("no repository")?;
            let before = cases::head(r);
            let mut spec = cases::tag2git_spec(&bin, r, Vec::new());
            spec.stdin = Arc::clone(&stdin);
            Ok(Prepared {
                spec,
                marathon: None,
                consul: None,
                check: cases::check_pushed(Rc::clone(&repo), before),
            })
        }) as Prepare)
    });
    Contestant {
        label: format!("tag2git, {mib} MiB images/ keyprefix"),
        kind: Kind::Shipwatch,
        prepare,
    }
}

fn kv2jobs(tools: &Tools, stdin: Arc<Vec<u8>>, apps: usize, mib: u64) -> Contestant {
    let prepare = cases::kv2jobs_spec(tools).map(|make| {
        Box::new(move |_: Duration| {
            let m = cases::marathon(Vec::new())?;
            let mut spec = make(&m.url(), "").arg("--dry-run");
            spec.stdin = Arc::clone(&stdin);
            Ok(Prepared {
                spec,
                marathon: Some(m),
                consul: None,
                check: Box::new(move |_, o| check_planned(o, apps)),
            })
        }) as Prepare
    });
    Contestant {
        label: format!("kv2jobs --dry-run, {mib} MiB jobs/ keyprefix"),
        kind: Kind::Shipwatch,
        prepare,
    }
}

fn tasks2consul(tools: &Tools, stdin: Arc<Vec<u8>>, mib: u64) -> Contestant {
    let prepare = cases::tasks2consul_spec(tools).map(|make| {
        Box::new(move |_: Duration| {
            let m = cases::marathon(payloads::labelled_apps(10, 2))?;
            let c = cases::consul()?;
            let mut spec = make(&m.url(), &c.url());
            spec.stdin = Arc::clone(&stdin);
            Ok(Prepared {
                spec,
                marathon: Some(m),
                consul: Some(c),
                check: Box::new(cases::check_catalog),
            })
        }) as Prepare
    });
    Contestant {
        label: format!("tasks2consul, {mib} MiB jobs/ keyprefix trigger"),
        kind: Kind::Shipwatch,
        prepare,
    }
}

/// A dry run into an empty Marathon plans one create per app.
fn check_planned(o: &Outcome, apps: usize) -> String {
    if let Some(e) = cases::exit_problem(o) {
        return e;
    }
    let planned = count(&o.stdout, br#""status":"planned""#);
    if planned == apps {
        format!("ok ({} creates planned)", cases::thousands(planned))
    } else {
        format!(
            "WRONG: {} creates planned, want {}",
            cases::thousands(planned),
            cases::thousands(apps)
        )
    }
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| w == &needle)
        .count()
}

pub const HEADER: [&str; 9] = [
    "handler and payload",
    "payload",
    "entries",
    "peak RSS",
    "RSS/payload",
    "budget 4x+32 MiB",
    "",
    "wall",
    "result",
];

/// One line per contestant: payload size, peak RSS, their ratio, the budget and ok/OVER.
pub fn table_rows(rows: &[Row], inputs: &[Input]) -> Vec<Vec<String>> {
    rows.iter()
        .zip(inputs)
        .map(|(r, input)| {
            let payload = fmt_kib(input.bytes as u64 / 1024);
            let entries = cases::thousands(input.entries);
            let budget = budget_kib(input.bytes);
            let Some(s) = r.samples.first() else {
                let why = r.skipped.clone().unwrap_or_else(|| "not run".into());
                return vec![
                    r.label.clone(),
                    payload,
                    entries,
                    "-".into(),
                    "-".into(),
                    fmt_kib(budget),
                    "-".into(),
                    "-".into(),
                    format!("skipped: {why}"),
                ];
            };
            let (rss, ratio, verdict) = match s.rss_kib {
                Some(kib) => (
                    fmt_kib(kib),
                    format!("{:.1}x", kib as f64 * 1024.0 / input.bytes as f64),
                    if kib <= budget { "ok" } else { "OVER" }.to_string(),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            vec![
                r.label.clone(),
                payload,
                entries,
                rss,
                ratio,
                fmt_kib(budget),
                verdict,
                fmt_duration(s.wall),
                s.result.clone(),
            ]
        })
        .collect()
}

pub fn render(rows: &[Row], inputs: &[Input]) -> String {
    render_table(&HEADER, &table_rows(rows, inputs), 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Sample;

    #[test]
    fn rows_compare_peak_rss_with_the_budget() {
        let row = |rss_kib: Option<u64>| Row {
            case: "c".into(),
            label: "tag2git".into(),
            kind: Kind::Shipwatch,
            samples: vec![Sample {
                wall: Duration::from_millis(1500),
                rss_kib,
                marathon_requests: None,
                marathon_writes: None,
                consul_writes: None,
                result: "ok".into(),
            }],
            skipped: None,
        };
        let input = || Input {
            bytes: 100 << 20,
            entries: 700_000,
        };
        assert_eq!(budget_kib(100 << 20), 432 * 1024);
        let t = table_rows(
            &[row(Some(200 * 1024)), row(Some(500 * 1024)), row(None)],
            &[input(), input(), input()],
        );
        assert_eq!(
            t[0],
            [
                "tag2git",
                "100.0 MiB",
                "700,000",
                "200.0 MiB",
                "2.0x",
                "432.0 MiB",
                "ok",
                "1.50 s",
                "ok"
            ]
        );
        assert_eq!(t[1][6], "OVER");
        assert_eq!(t[2][3], "-");
        assert_eq!(
            count(br#""status":"planned","status":"planned""#, b"planned"),
            2
        );
    }
}
