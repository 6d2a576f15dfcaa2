//! `--lock KEY`: one of several agents running the same watch acts; the others exit 0.
//!
//! The lock is Consul's session lock recipe (docs: "Application leader election with sessions"):
//! a session with a TTL and no health checks, `PUT kv/KEY?acquire=SESSION`, renewed at a third of
//! the TTL while the handler works, released and destroyed at the end. A holder that crashes
//! stops renewing; Consul invalidates the session after the TTL (and up to twice that, per
//! session.mdx) and releases the key, so the next run is blocked no longer than that.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Consul, ConsulError};

/// Lock-delay for our sessions: short, because our handlers are idempotent (a late second holder
/// converges to the same state); Consul's default of 15s would only delay the next run.
const LOCK_DELAY: Duration = Duration::from_secs(1);

/// The result of asking for the lock.
pub enum LockOutcome {
    Acquired(LockGuard),
    /// Another session holds it; `holder` is what that holder wrote (who and since when).
    HeldElsewhere {
        holder: String,
    },
}

/// Holds the lock until dropped (release + destroy, renewal stopped).
pub struct LockGuard {
    consul: Arc<Consul>,
    key: String,
    session: String,
    stop: Arc<(Mutex<bool>, Condvar)>,
    renewer: Option<JoinHandle<()>>,
}

impl LockGuard {
    pub fn key(&self) -> &str {
        &self.key
    }
    pub fn session(&self) -> &str {
        &self.session
    }
}

/// Tells a background thread waiting on `stop` to end, and waits for it.
fn stop_thread(stop: &(Mutex<bool>, Condvar), thread: Option<JoinHandle<()>>) {
    let (flag, cv) = stop;
    *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
    cv.notify_all();
    if let Some(h) = thread {
        let _ = h.join();
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        stop_thread(&self.stop, self.renewer.take());
        // Release first: an explicit release does not trigger lock-delay, destroy would.
        if let Err(e) = self.consul.kv_release(&self.key, &self.session) {
            log::warn!("releasing lock {:?}: {e}", self.key);
        }
        if let Err(e) = self.consul.session_destroy(&self.session) {
            log::warn!("destroying lock session: {e}");
        }
        log::info!("released lock {:?}", self.key);
    }
}

/// Takes the lock on `key` or reports who holds it. `who` names this run (written as the value).
/// When the key is free but Consul refuses (lock-delay after a crashed holder), it retries for a
/// few seconds before reporting.
pub fn acquire(
    consul: Arc<Consul>,
    key: &str,
    who: &str,
    ttl: Duration,
) -> Result<LockOutcome, ConsulError> {
    crate::validate_key(key)?;
    let session = consul.session_create(&format!("shipwatch lock {key}"), ttl, LOCK_DELAY)?;
    let value = serde_json::json!({
        "Holder": who,
        "Since": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    })
    .to_string();
    let give_up = Instant::now() + LOCK_DELAY * 3;
    loop {
        let acquired = match consul.kv_acquire(key, value.as_bytes(), &session) {
            Ok(a) => a,
            Err(e) => {
                let _ = consul.session_destroy(&session);
                return Err(e);
            }
        };
        if acquired {
            log::info!("acquired lock {key:?}");
            return Ok(LockOutcome::Acquired(start_renewal(
                consul, key, session, ttl,
            )));
        }
        let current = consul.kv_get(key).ok().flatten();
        let held = current.as_ref().is_some_and(|kv| !kv.session.is_empty());
        if held || Instant::now() >= give_up {
            let _ = consul.session_destroy(&session);
            let holder = current
                .and_then(|kv| kv.value_str().ok().map(str::to_string))
                .unwrap_or_else(|| "unknown".into());
            return Ok(LockOutcome::HeldElsewhere { holder });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_renewal(consul: Arc<Consul>, key: &str, session: String, ttl: Duration) -> LockGuard {
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let renewer = {
        let consul = Arc::clone(&consul);
        let stop = Arc::clone(&stop);
        let session = session.clone();
        let key = key.to_string();
        std::thread::Builder::new()
            .name("lock-renew".into())
            .spawn(move || {
                let (flag, cv) = &*stop;
                let mut stopped = flag.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    let (guard, _) = cv
                        .wait_timeout(stopped, ttl / 3)
                        .unwrap_or_else(|e| e.into_inner());
                    stopped = guard;
                    if *stopped {
                        return;
                    }
                    match consul.session_renew(&session) {
                        Ok(true) => log::debug!("renewed lock session for {key:?}"),
                        Ok(false) => {
                            log::error!(
                                "lock session for {key:?} expired; another run may act too"
                            );
                            return;
                        }
                        Err(e) => log::warn!("renewing lock session for {key:?}: {e}"),
                    }
                }
            })
            .ok()
    };
    LockGuard {
        consul,
        key: key.to_string(),
        session,
        stop,
        renewer,
    }
}

/// A lock held for the life of a long-running process (`tasks2consul --follow --lock KEY`):
/// a background thread takes the key when it is free, renews the session at TTL/2 and, once
/// the lock is lost (session invalidated, or no successful renew for a whole TTL: a Consul
/// partition), tries to take it again every half second. Only [`Standing::held`] says whether
/// the holder may act; it turns false at once when the lock is lost. Dropping it releases the
/// key (no lock-delay for the next holder) and destroys the session.
pub struct Standing {
    shared: Arc<StandingShared>,
    worker: Option<JoinHandle<()>>,
}

struct StandingShared {
    /// When the lock was last confirmed ours (acquired or renewed); `None` while not held.
    confirmed: Mutex<Option<Instant>>,
    ttl: Duration,
    stop: (Mutex<bool>, Condvar),
}

impl Standing {
    /// Starts contending for `key` (never blocks; see [`Standing::held`]).
    pub fn start(
        consul: Arc<Consul>,
        key: &str,
        who: &str,
        ttl: Duration,
    ) -> Result<Standing, ConsulError> {
        crate::validate_key(key)?;
        let shared = Arc::new(StandingShared {
            confirmed: Mutex::new(None),
            ttl,
            stop: (Mutex::new(false), Condvar::new()),
        });
        let worker = {
            let shared = Arc::clone(&shared);
            let (key, who) = (key.to_string(), who.to_string());
            std::thread::Builder::new()
                .name("lock-standing".into())
                .spawn(move || standing_loop(&consul, &key, &who, &shared))
                .ok()
        };
        Ok(Standing { shared, worker })
    }

    /// True while the lock is ours: acquired and confirmed (renewed) less than a TTL ago.
    pub fn held(&self) -> bool {
        self.shared.held()
    }
}

impl StandingShared {
    fn held(&self) -> bool {
        self.confirmed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() < self.ttl)
    }

    fn set(&self, confirmed: Option<Instant>) {
        *self.confirmed.lock().unwrap_or_else(|e| e.into_inner()) = confirmed;
    }

    /// Waits `d` or until stopped; true when stopped.
    fn wait(&self, d: Duration) -> bool {
        let (flag, cv) = &self.stop;
        let stopped = flag.lock().unwrap_or_else(|e| e.into_inner());
        let (stopped, _) = cv
            .wait_timeout_while(stopped, d, |s| !*s)
            .unwrap_or_else(|e| e.into_inner());
        *stopped
    }
}

fn standing_loop(consul: &Consul, key: &str, who: &str, shared: &StandingShared) {
    const RETRY: Duration = Duration::from_millis(500);
    let value = serde_json::json!({"Holder": who}).to_string();
    let mut session: Option<String> = None;
    let mut renewed = Instant::now();
    loop {
        let Some(id) = session.clone() else {
            match consul.session_create(&format!("shipwatch lock {key}"), shared.ttl, LOCK_DELAY) {
                Ok(id) => {
                    session = Some(id);
                    renewed = Instant::now();
                }
                Err(e) => log::warn!("--lock {key:?}: creating a session: {e}"),
            }
            if session.is_none() && shared.wait(RETRY) {
                break;
            }
            continue;
        };
        let was_held = shared.held();
        // Renew at TTL/2 (a holder that stops renewing loses the key after the TTL).
        if renewed.elapsed() >= shared.ttl / 2 {
            match consul.session_renew(&id) {
                Ok(true) => {
                    renewed = Instant::now();
                    if was_held {
                        shared.set(Some(renewed));
                    }
                }
                Ok(false) => {
                    if was_held {
                        log::error!("lock {key:?} lost: its session was invalidated");
                    }
                    shared.set(None);
                    session = None;
                    continue;
                }
                Err(e) => log::warn!("--lock {key:?}: renewing the session: {e}"),
            }
        }
        if was_held && !shared.held() {
            log::error!(
                "lock {key:?} lost: no successful renew for {:?}",
                shared.ttl
            );
        }
        if !shared.held() {
            match consul.kv_acquire(key, value.as_bytes(), &id) {
                Ok(true) => {
                    renewed = Instant::now();
                    shared.set(Some(renewed));
                    log::info!("acquired lock {key:?}");
                }
                Ok(false) => shared.set(None),
                Err(e) => log::warn!("--lock {key:?}: acquiring: {e}"),
            }
        }
        let next = if shared.held() {
            (shared.ttl / 2)
                .saturating_sub(renewed.elapsed())
                .max(Duration::from_millis(50))
        } else {
            RETRY
        };
        if shared.wait(next) {
            break;
        }
    }
    if let Some(id) = session {
        if shared.held() {
            if let Err(e) = consul.kv_release(key, &id) {
                log::warn!("releasing lock {key:?}: {e}");
            } else {
                log::info!("released lock {key:?}");
            }
        }
        shared.set(None);
        if let Err(e) = consul.session_destroy(&id) {
            log::warn!("destroying lock session: {e}");
        }
    }
}

impl Drop for Standing {
    fn drop(&mut self) {
        stop_thread(&self.shared.stop, self.worker.take());
    }
}

/// `handler@host pid N`: who holds a lock, for the other runs' logs.
pub fn holder_name(handler: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{handler}@{host} pid {}", std::process::id())
}

/// An error of a locked run: taking the lock, or the handler's own.
#[derive(Debug, thiserror::Error)]
pub enum LockedError<E: std::error::Error + 'static> {
    #[error("--lock: {0}")]
    Lock(#[source] ConsulError),
    #[error(transparent)]
    Inner(E),
}

impl<E: std::error::Error + runtime::ToExit + 'static> runtime::ToExit for LockedError<E> {
    fn exit(&self) -> runtime::Exit {
        match self {
            LockedError::Lock(e) => e.exit(),
            LockedError::Inner(e) => e.exit(),
        }
    }
}

/// `runtime::run` with `--lock KEY` honoured: without `--lock` it is `runtime::run`; with it, the
/// handler's logic runs only while this run holds the lock, and a run that finds the lock held
/// elsewhere exits 0 with a `lock` action marked skipped (the holder acts, and the agent that
/// runs the holder's watch delivers the latest data to it next). A dry run takes no lock.
pub fn run_locked<E>(
    handler: &'static str,
    common: &runtime::CommonArgs,
    consul: &runtime::ConsulArgs,
    logic: impl FnOnce(&runtime::Context) -> Result<runtime::Summary, E>,
) -> !
where
    E: std::error::Error + runtime::ToExit + 'static,
{
    runtime::run(handler, common, |ctx| {
        let Some(key) = common.lock.as_deref().filter(|_| !ctx.dry_run) else {
            return logic(ctx).map_err(LockedError::Inner);
        };
        let client = consul.client(ctx.deadline).map_err(|e| {
            LockedError::Lock(ConsulError::Unexpected {
                what: "configuration".into(),
                reason: e.to_string(),
            })
        })?;
        let consul = Arc::new(Consul::new(client));
        match acquire(consul, key, &holder_name(handler), common.lock_ttl)
            .map_err(LockedError::Lock)?
        {
            LockOutcome::Acquired(guard) => {
                let result = logic(ctx).map_err(LockedError::Inner);
                drop(guard);
                result
            }
            LockOutcome::HeldElsewhere { holder } => {
                log::info!("lock {key:?} is held by {holder}: that run acts; exiting");
                let mut summary = ctx.summary();
                summary.push(runtime::Action::new(
                    "lock",
                    key,
                    runtime::Status::Skipped,
                    format!("held by {holder}; it acts on the latest data"),
                ));
                Ok(summary)
            }
        }
    })
}
