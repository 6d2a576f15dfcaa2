//! bench: side-by-side benchmarks of the shipwatch handlers against the handlers operators write
//! today (bash with jq/base64/curl, Python with the standard library), on the same devstack
//! doubles and the same payloads, in one run, alternating. Prints a table of medians.
//!
//! For: issue 8's numbers, reproducible with `cargo run --release -p bench` (see README.md).
//! Not for: correctness testing (that is the test suite; the bench only reports whether each run
//! reached the expected state) or the test command: it is never run by `cargo test`.

mod cases;
mod large;
mod payloads;
mod proc;
mod run;
mod stats;
mod tools;

use std::io::Read;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Benchmarks: shipwatch handlers vs bash/Python baselines on devstack doubles"
)]
struct Args {
    /// Runs of each contestant per case (medians are printed).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Time budget of the whole run in seconds; cases that do not fit are printed as skipped.
    #[arg(long, default_value_t = 420)]
    budget: u64,
    /// Timeout of one measured process, in seconds.
    #[arg(long, default_value_t = 120)]
    run_timeout: u64,
    /// A contestant whose run took longer than this (seconds) is not repeated.
    #[arg(long, default_value_t = 20)]
    slow: u64,
    /// Only the cases whose id contains one of these (repeatable); see --list.
    #[arg(long)]
    only: Vec<String>,
    /// List the case ids and exit.
    #[arg(long)]
    list: bool,
    /// Payload sizes of the `large-payload` case in MiB (repeatable; default 10 and 100).
    #[arg(long, value_name = "MIB")]
    large_mib: Vec<u64>,
    /// Where the handler binaries are (default: SHIPWATCH_BIN_DIR, else this binary's directory).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where the baseline scripts are.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/baselines"))]
    baselines: PathBuf,
    /// Under `cargo run`, do not build the handlers first.
    #[arg(long)]
    no_build: bool,
    /// Drain stdin and exit 0 (the Rust floor; used by the bench itself).
    #[arg(long, hide = true)]
    noop: bool,
}

/// A case is built only when selected (the 10,000-app payloads take a moment).
type MakeCase<'a> = Box<dyn Fn() -> cases::Case + 'a>;

fn main() {
    // The floor must be as cheap as a Rust process can be: no argument parsing beyond this.
    if std::env::args().nth(1).as_deref() == Some("--noop") {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        return;
    }
    let args = Args::parse();
    let start = Instant::now();
    if std::env::var_os("CARGO").is_some() && !args.no_build && args.bin_dir.is_none() {
        // Under `cargo run` the binaries next to this one may be stale (or stubs from before a
        // merge): let cargo bring them up to date (a no-op when they are).
        eprintln!("building the handlers (cargo build -p tag2git -p kv2jobs -p tasks2consul)...");
        if let Err(e) = devstack::bins::build_handlers_if_run_by_cargo(!cfg!(debug_assertions)) {
            eprintln!("warning: {e}; measuring whatever is built");
        }
    }
    let bin_dir = tools::bin_dir(args.bin_dir.clone());
    let tools = tools::Tools::find(&bin_dir, args.baselines.clone());
    match &tools.gnu_time {
        Ok(t) => proc::use_gnu_time(t.clone()),
        Err(e) => eprintln!("warning: {e}: peak RSS is not measured (apt-get install time)"),
    }
    let repo = Rc::new(std::cell::RefCell::new(None));
    let all: Vec<(&str, MakeCase)> = vec![
        ("one-key", Box::new(|| cases::one_key(&tools))),
        ("keyprefix-1k", Box::new(|| cases::keyprefix(&tools, 1_000))),
        (
            "first-deploy-1k",
            Box::new(|| cases::first_deploy(&tools, 1_000)),
        ),
        ("tag2git-one", Box::new(|| cases::tag2git(&tools, &repo, 1))),
        (
            "tag2git-500",
            Box::new(|| cases::tag2git(&tools, &repo, 500)),
        ),
        (
            "tasks2consul-changed",
            Box::new(|| cases::tasks2consul(&tools, cases::T2C_CHANGED)),
        ),
        (
            "tasks2consul-first",
            Box::new(|| cases::tasks2consul(&tools, 0)),
        ),
        (
            "keyprefix-10k",
            Box::new(|| cases::keyprefix(&tools, 10_000)),
        ),
        (
            "deploy-limit",
            Box::new(|| cases::deploy_limit(&tools, 10_000, 1_000)),
        ),
    ];
    if args.list {
        for (id, _) in &all {
            println!("{id}");
        }
        println!(
            "{} (not in the default run: --only {})",
            large::ID,
            large::ID
        );
        return;
    }
    let settings = run::Settings {
        reps: args.reps.max(1),
        deadline: start + Duration::from_secs(args.budget),
        budget: Duration::from_secs(args.budget),
        run_timeout: Duration::from_secs(args.run_timeout.max(1)),
        slow: Duration::from_secs(args.slow),
    };
    let mut rows = Vec::new();
    for (id, make) in &all {
        if !args.only.is_empty() && !args.only.iter().any(|o| id.contains(o.as_str())) {
            continue;
        }
        let case = make();
        eprintln!("[{}] {}", case.id, case.title);
        rows.extend(run::run_case(&case, &settings));
    }
    if !rows.is_empty() || args.only.is_empty() {
        println!(
            "{}",
            stats::render_table(&run::HEADER, &run::table_rows(&rows), 2)
        );
    }
    // Minutes long and a gigabyte of payloads: only when asked for by name.
    if args.only.iter().any(|o| large::ID.contains(o.as_str())) {
        let sizes = if args.large_mib.is_empty() {
            large::DEFAULT_SIZES_MIB.to_vec()
        } else {
            args.large_mib.clone()
        };
        let large_repo = Rc::new(std::cell::RefCell::new(None));
        let (case, inputs) = large::case(&tools, &large_repo, &sizes);
        eprintln!("[{}] {}", case.id, case.title);
        // One run each: peak RSS hardly varies between runs, and each takes seconds.
        let once = run::Settings {
            reps: 1,
            ..settings
        };
        let rows = run::run_case(&case, &once);
        println!("{}", large::render(&rows, &inputs));
        println!("peak RSS: GNU time %M (ru_maxrss) of the handler process, one run per row; budget (issue 13 item 5): 4x the payload size + 32 MiB.");
        print_machine(&bin_dir, start.elapsed());
        return;
    }
    print_notes(&settings, &bin_dir, start.elapsed());
}

fn print_notes(s: &run::Settings, bin_dir: &std::path::Path, took: Duration) {
    println!(
        "wall: process spawn to exit, median of n runs (contestants alternate each round; a run over {} s is not repeated).",
        s.slow.as_secs()
    );
    println!("shipwatch/this: the first shipwatch row's median over this row's (below 1: shipwatch is faster; on a floor row: how many floors shipwatch takes).");
    println!("Marathon req/writes, Consul writes: diffed from the devstack doubles' counters around the run (medians); the Consul double counts writes only.");
    println!("peak RSS: GNU time %M (ru_maxrss of the largest single process of the tree); every process runs under /usr/bin/time, wall times included.");
    println!("floor: the same stdin into a process that only reads it; every world (doubles, seeds) is fresh per run and not timed.");
    print_machine(bin_dir, took);
}

fn print_machine(bin_dir: &std::path::Path, took: Duration) {
    println!(
        "handlers from {}; machine: {}; total bench time {:.0} s.",
        bin_dir.display(),
        machine(),
        took.as_secs_f64()
    );
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mut kernel = String::new();
    if let Ok(mut f) = std::fs::File::open("/proc/sys/kernel/osrelease") {
        let _ = f.read_to_string(&mut kernel);
    }
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpus} cores, {model}, Linux {}; {date}", kernel.trim())
}
