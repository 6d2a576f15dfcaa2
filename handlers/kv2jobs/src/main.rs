//! kv2jobs: deploys the job configs that git2consul mirrors into Consul KV to Marathon and
//! Chronos (see README.md for flags, examples and the ownership marks).

use std::time::Duration;

use clap::Parser;
use kv2jobs::{Options, Remotes};
use marathon::{Chronos, Marathon};
use runtime::{ChronosArgs, CommonArgs, ConsulArgs, MarathonArgs};

#[derive(Debug, Parser)]
#[command(
    name = "kv2jobs",
    version,
    about = "Deploy job configs from Consul KV to Marathon and Chronos",
    after_help = GUARDS
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    marathon: MarathonArgs,
    #[command(flatten)]
    chronos: ChronosArgs,
    #[command(flatten)]
    consul: ConsulArgs,

    /// Only keys under this prefix are configs, and --prune only deletes apps/jobs whose
    /// source key is under it (use it when several watches share a Marathon). Whole path
    /// segments: `jobs/main` means `jobs/main/`, never `jobs/main-canary/`.
    #[arg(long, value_name = "PREFIX", default_value = "")]
    prefix: String,

    /// Delete apps and jobs that kv2jobs manages (ownership mark) whose config is gone, behind
    /// the delete guards below.
    #[arg(long)]
    prune: bool,

    /// With --prune: let a branch snapshot with no job config at all (its .ref, no file) delete
    /// every managed app/job of that branch.
    #[arg(long)]
    allow_empty: bool,

    /// Override deployments that lock an app (Marathon `?force=true`) instead of waiting.
    #[arg(long)]
    force: bool,

    /// Follow the deployments this run started until they finish or --deploy-timeout.
    #[arg(long)]
    wait: bool,

    /// With --wait: when a deployment this run started fails or times out, put back the
    /// version that was live before (Marathon's rollback); both are reported, exit 75.
    #[arg(long, requires = "wait")]
    rollback_on_failure: bool,

    /// How long to wait for a locking deployment (409) or, with --wait, for ours.
    #[arg(long, value_name = "DUR", default_value = "2m", value_parser = runtime::parse_duration)]
    deploy_timeout: Duration,

    /// Fire this Consul user event (JSON list of changed app ids) after a successful run.
    #[arg(long, value_name = "NAME")]
    fire_event: Option<String>,

    /// With --prune: the most deletes one run may make, a count (7) or a percentage of the
    /// managed apps and jobs (20%, at least 5). Above it nothing is deleted (exit 75).
    /// `100%` turns the cap off.
    #[arg(long, value_name = "N|P%", default_value = "20%", value_parser = kv2jobs::plan::MaxDelete::parse)]
    max_delete: kv2jobs::plan::MaxDelete,

    /// When files are newer than their branch's .ref (git2consul mid-sync, a hand edit in KV):
    /// how long to wait for the .ref (Consul blocking query) before exiting 75.
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = runtime::parse_duration)]
    ref_wait: Duration,

    /// Keep in DIR which live apps matched their config, at which Marathon app version, so that
    /// the next run reads an app still at that version for its id only instead of normalizing
    /// and comparing it again (a branch of 10,000 apps runs several times faster). Any change
    /// to an app in Marathon gives it a new version, so drift is still repaired. Safe to delete;
    /// not written by --dry-run.
    #[arg(long, value_name = "DIR", env = "SHIPWATCH_CACHE_DIR")]
    cache_dir: Option<std::path::PathBuf>,

    /// Marathon writes in flight at once.
    #[arg(long, value_name = "N", default_value_t = 4, hide = true)]
    parallel: usize,

    /// Changed apps per bulk `PUT /v2/apps` (one Marathon deployment each, so a change to many
    /// apps stays within Marathon's --max_running_deployments); 1 writes app by app.
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    batch_size: u64,
}

/// The delete guards, in `--help` (the README has the same table).
const GUARDS: &str = "\
Delete guards (--prune): a delete is held back (reported `skipped`, the rest still deployed) when
  - the payload is not a complete snapshot of the key's branch: no <repo>/<branch>.ref, or
    CONSUL_INDEX above the newest .ref (a key deleted since, e.g. a rename in progress):
    warning, exit 0, no override (the next consistent run prunes)
  - its config key is still in the payload but holds no job config ({} or a typo): the config
    is rejected (`failed`), exit 65; fix the file
  - the run would delete more than --max-delete (default 20% of the managed apps and jobs,
    at least 5): no delete at all, exit 75; override: --max-delete N or 100%
  - the payload is empty (no job config): override --allow-empty (the .ref is still needed)
  - the live app is labelled shipwatch.prune=false or shipwatch.sync=false (Chronos job:
    SHIPWATCH_PRUNE / SHIPWATCH_SYNC environment variable = false): never deleted
Files newer than their branch's .ref: wait up to --ref-wait for git2consul, then exit 75.
Lists in Marathon `apps`/Chronos jobs that are not arrays: exit 69, nothing written there.";

fn main() {
    let args: Args = runtime::parse_args();
    let opts = Options {
        prefix: args.prefix.clone(),
        prune: args.prune,
        allow_empty: args.allow_empty,
        force: args.force,
        wait: args.wait,
        deploy_timeout: args.deploy_timeout,
        fire_event: args.fire_event.clone(),
        parallel: args.parallel,
        batch_size: args.batch_size as usize,
        max_delete: args.max_delete,
        ref_wait: args.ref_wait,
        rollback_on_failure: args.rollback_on_failure,
        cache_dir: args.cache_dir.clone(),
        cache_key: args.marathon.marathon_urls.clone().unwrap_or_default(),
    };
    consul::lock::run_locked("kv2jobs", &args.common, &args.consul, |ctx| {
        let marathon = args
            .marathon
            .client(ctx.deadline)
            .map(Marathon::new)
            .map_err(|e| e.to_string());
        let chronos = args.chronos.client(ctx.deadline)?.map(Chronos::new);
        let deadline = ctx.deadline;
        let consul_args = args.consul.clone();
        let make_consul = move || consul_args.client(deadline).map(consul::Consul::new);
        let remotes = Remotes {
            marathon: marathon.as_ref().map_err(Clone::clone),
            chronos: chronos.as_ref(),
            consul: Some(&make_consul),
        };
        kv2jobs::run(ctx, &opts, &remotes)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        super::Args::command().debug_assert();
    }
}
