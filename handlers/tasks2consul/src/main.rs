//! tasks2consul: registers running Marathon tasks as Consul services and deregisters dead ones.
//! (Foundation stub: decodes the payload and reports what it received.)

use clap::Parser;
use runtime::{Action, CommonArgs, ConsulArgs, MarathonArgs, Status};

#[derive(Debug, Parser)]
#[command(
    name = "tasks2consul",
    version,
    about = "Register running Marathon tasks as Consul services"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    marathon: MarathonArgs,
    #[command(flatten)]
    consul: ConsulArgs,
}

fn main() {
    let args: Args = runtime::parse_args();
    runtime::run("tasks2consul", &args.common, |ctx| {
        let payload = watch::detect(&ctx.payload)?;
        let mut summary = ctx.summary();
        for kv in payload.kv_pairs() {
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
