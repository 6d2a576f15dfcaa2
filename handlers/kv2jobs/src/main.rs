//! kv2jobs: deploys the job configs that git2consul mirrors into Consul KV to Marathon and
//! Chronos. (Foundation stub: decodes the payload and reports what it received.)

use clap::Parser;
use runtime::{Action, ChronosArgs, CommonArgs, MarathonArgs, Status};

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
}

fn main() {
    let args: Args = runtime::parse_args();
    runtime::run("kv2jobs", &args.common, |ctx| {
        let pairs = watch::decode_kv(&ctx.payload)?;
        let mut summary = ctx.summary();
        for kv in pairs {
            summary.push(Action::new(
                "received",
                kv.key.clone(),
                Status::Skipped,
                format!("ModifyIndex {}", kv.modify_index),
            ));
        }
        Ok::<_, watch::DecodeError>(summary)
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
