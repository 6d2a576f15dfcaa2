//! tasks2consul: makes Consul's catalog match what Marathon runs, so consul-template and DNS
//! find every running task and never route to a dead one.
//!
//! For: planning (Marathon apps and tasks vs the registrations tasks2consul owns in Consul →
//! register/deregister), applying the plan in catalog mode (external nodes) or agent mode, and
//! following Marathon's event stream with periodic full resyncs.
//! Not for: deploying apps (kv2jobs) or decoding watch payloads (`watch`).
//!
//! Library layout: [`app`] and [`catalog`] (what is read of Marathon's apps and Consul's
//! catalog, decoded into compact structs), [`plan`] (pure: desired registrations, ownership,
//! diff), [`scope`] (which
//! apps a payload names), [`sync`] (reads and writes), [`events`] (the event loop of `--events`
//! and `--follow`), [`follow`] (`--follow`: the stream connection, metrics).

pub mod app;
pub mod catalog;
pub mod events;
pub mod follow;
pub mod plan;
pub mod scope;
pub mod sync;
pub mod txn;

use consul::Consul;
use marathon::Marathon;
use runtime::{ConsulArgs, Deadline, MarathonArgs};

pub use plan::{Change, Config, Mode, Plan, Registration};
pub use scope::Scope;
pub use sync::{AgentAddr, AgentPool, Stats, SyncError, Syncer};

/// Builds the clients for one unit of work (one run, or in `--events` mode one sync or event),
/// each bounded by its own deadline.
pub struct Clients {
    pub marathon: MarathonArgs,
    pub consul: ConsulArgs,
    pub cfg: Config,
    pub agent: Option<AgentAddr>,
    pub timeout: std::time::Duration,
}

impl Clients {
    /// Runs `f` with a syncer whose clients stop at `deadline`.
    pub fn with_syncer_until<T>(
        &self,
        deadline: Deadline,
        f: &mut dyn FnMut(&Syncer<'_>) -> T,
    ) -> Result<T, String> {
        let marathon = Marathon::new(self.marathon.client(deadline).map_err(|e| e.to_string())?);
        let consul = Consul::new(self.consul.client(deadline).map_err(|e| e.to_string())?);
        let pool = match (&self.agent, self.cfg.mode) {
            (Some(addr), Mode::Agent) => {
                let cfg = self.consul.http_config().map_err(|e| e.to_string())?;
                Some(AgentPool::new(addr.clone(), cfg, deadline)?)
            }
            _ => None,
        };
        let syncer = Syncer {
            marathon: &marathon,
            consul: &consul,
            cfg: &self.cfg,
            agents: pool.as_ref(),
        };
        Ok(f(&syncer))
    }
}

impl events::SyncerFactory for Clients {
    fn with_syncer<T>(&self, f: &mut dyn FnMut(&Syncer<'_>) -> T) -> Result<T, String> {
        self.with_syncer_until(Deadline::after(self.timeout), f)
    }
}
