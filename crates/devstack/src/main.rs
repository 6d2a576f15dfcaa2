//! `devstack`: serves the Consul, Marathon and Chronos doubles and runs Consul watches against
//! them (`up`), or walks one release through the whole pipeline (`demo`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use devstack::{bins, demo, runner, stack};

#[derive(Parser)]
#[command(
    name = "devstack",
    version,
    about = "Consul, Marathon and Chronos doubles for shipwatch"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the doubles and run the watches of Consul agent config files until interrupted.
    Up {
        /// Consul agent JSON config(s) whose `watches` to run (e.g. consul-config/kv2jobs.json).
        #[arg(long = "config", value_name = "FILE")]
        configs: Vec<PathBuf>,
        /// Serve Consul, Marathon and Chronos on PORT, PORT+1, PORT+2 (default: ephemeral).
        #[arg(long, value_name = "PORT")]
        port_base: Option<u16>,
        /// How long a Marathon deployment takes.
        #[arg(long, value_name = "DUR", default_value = "2s", value_parser = runtime::parse_duration)]
        deploy_duration: Duration,
        /// Run this real Consul binary (`consul agent -dev` on loopback ephemeral ports; see
        /// tools/consul/build) instead of the Consul double; the agent runs the watches itself.
        #[arg(long, value_name = "PATH")]
        consul_bin: Option<PathBuf>,
    },
    /// Walk one release through the whole pipeline on the embedded stack.
    Demo {
        /// Leave the stack running afterwards for exploring with curl.
        #[arg(long)]
        keep: bool,
        /// Run this real Consul binary instead of the Consul double (see tools/consul/build).
        #[arg(long, value_name = "PATH")]
        consul_bin: Option<PathBuf>,
    },
}

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../consul-config")
}

fn main() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .target(env_logger::Target::Stderr)
        .try_init();
    let cli = Cli::parse();
    let release = !cfg!(debug_assertions);
    let code = match cli.command {
        Command::Demo { keep, consul_bin } => {
            if let Err(e) = bins::build_handlers_if_run_by_cargo(release) {
                eprintln!("devstack demo: {e}");
                std::process::exit(1);
            }
            let bin_dir = match bins::handler_dir() {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("devstack demo: {e}");
                    std::process::exit(1);
                }
            };
            match demo::run(demo::DemoOptions {
                bin_dir,
                config_dir: config_dir(),
                keep,
                consul_bin,
            }) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("\ndemo FAILED at step {}: {}", e.step, e.reason);
                    1
                }
            }
        }
        Command::Up {
            configs,
            port_base,
            deploy_duration,
            consul_bin,
        } => up(configs, port_base, deploy_duration, consul_bin),
    };
    std::process::exit(code);
}

fn up(
    configs: Vec<PathBuf>,
    port_base: Option<u16>,
    deploy_duration: Duration,
    consul_bin: Option<PathBuf>,
) -> i32 {
    let stack = match stack::Stack::start(stack::StackOptions {
        deploy_duration,
        port_base,
        consul_bin,
        agent_env: Vec::new(),
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("devstack up: cannot start the stack: {e}");
            return 69;
        }
    };
    println!("CONSUL_HTTP_ADDR={}", stack.consul.url());
    println!("MARATHON_URL={}", stack.marathon.url());
    println!("CHRONOS_URL={}", stack.chronos.url());
    let mut specs = Vec::new();
    for c in &configs {
        match runner::load_watches(c) {
            Ok(s) => specs.extend(s),
            Err(e) => {
                eprintln!("devstack up: {}: {e}", c.display());
                return 64;
            }
        }
    }
    let mut path = Vec::new();
    if let Ok(d) = bins::handler_dir() {
        // The shipped configs call /usr/local/bin/<handler>: run this checkout's builds instead.
        bins::use_local_handlers(&mut specs, &d);
        path.push(d);
    }
    if let stack::ConsulServer::Agent(agent) = &stack.consul {
        // The real agent runs the watches itself: handler names become the built binaries.
        if let Some(dir) = path.first() {
            for s in &mut specs {
                devstack::pipeline::use_built_handler(s, dir);
            }
        }
        let json: Vec<serde_json::Value> = specs.iter().map(|s| s.to_agent_json()).collect();
        if let Err(e) = agent.set_watches(&json) {
            eprintln!("devstack up: {e}");
            return 69;
        }
        println!(
            "consul agent -dev is running {} watch(es); Ctrl-C to stop",
            specs.len()
        );
        stack::wait_for_stop_signal();
        return 0;
    }
    let _runner = if specs.is_empty() {
        None
    } else {
        println!("running {} watch(es); Ctrl-C to stop", specs.len());
        match runner::Runner::start(
            specs,
            runner::RunnerOptions {
                consul_url: stack.consul.url(),
                env: stack.env(),
                path,
                ..runner::RunnerOptions::default()
            },
        ) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("devstack up: {e}");
                return 64;
            }
        }
    };
    stack::wait_for_stop_signal();
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17: durations as Consul and Marathon users write them (Go's syntax), by the one
    /// parser every crate uses.
    #[test]
    fn deploy_durations_take_gos_syntax() {
        for (arg, want) in [("1h", 3600), ("1m30s", 90), ("1.5h", 5400)] {
            let cli = Cli::try_parse_from(["devstack", "up", "--deploy-duration", arg]).unwrap();
            let Command::Up {
                deploy_duration, ..
            } = cli.command
            else {
                panic!("not up");
            };
            assert_eq!(deploy_duration, Duration::from_secs(want), "{arg}");
        }
        assert!(Cli::try_parse_from(["devstack", "up", "--deploy-duration", "5x"]).is_err());
    }
}
