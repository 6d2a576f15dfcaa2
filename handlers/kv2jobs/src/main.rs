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
    about = "Deploy job configs from Consul KV to Marathon and Chronos"
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
    /// source key is under it (use it when several watches share a Marathon).
    #[arg(long, value_name = "PREFIX", default_value = "")]
    prefix: String,

    /// Delete apps and jobs that kv2jobs manages (ownership mark) whose config is gone.
    #[arg(long)]
    prune: bool,

    /// With --prune: let an empty payload (no job config at all) delete every managed app/job.
    #[arg(long)]
    allow_empty: bool,

    /// Override deployments that lock an app (Marathon `?force=true`) instead of waiting.
    #[arg(long)]
    force: bool,

    /// Follow the deployments this run started until they finish or --deploy-timeout.
    #[arg(long)]
    wait: bool,

    /// How long to wait for a locking deployment (409) or, with --wait, for ours.
    #[arg(long, value_name = "DUR", default_value = "2m", value_parser = runtime::parse_duration)]
    deploy_timeout: Duration,

    /// Fire this Consul user event (JSON list of changed app ids) after a successful run.
    #[arg(long, value_name = "NAME")]
    fire_event: Option<String>,

    /// Marathon writes in flight at once.
    #[arg(long, value_name = "N", default_value_t = 4, hide = true)]
    parallel: usize,
}

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
