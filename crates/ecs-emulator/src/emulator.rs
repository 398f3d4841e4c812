//! The emulator as a library: [`Emulator`] starts the HTTP endpoint in-process and gives tests
//! and the sandbox direct control (instances, faults, call log, settings, reset). Its state,
//! [`Shared`], is what the gateway, the actions and the admin API work on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::call_log::{CallLog, CallRecord};
use crate::config::{Config, OidcConfig};
use crate::credentials::{AccessKey, KeyRing};
use crate::faults::{Fault, FaultEntry, FaultSet};
use crate::server::Server;
use crate::signature::nonce::NonceCache;
use crate::state::store::InstanceStore;
use crate::state::{Instance, Status, StoppedMode};
use crate::throttle::{RateLimits, Throttle};

/// Locks a mutex, recovering the data if a holder panicked (the state stays usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A uniform number in [0, 1) for probabilistic faults.
pub(crate) fn roll() -> f64 {
    rand::random::<f64>()
}

/// Why the emulator refused something.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The configuration is not valid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An instance, fault or setting given at run time is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The instance does not exist.
    #[error("instance {0} does not exist")]
    NoSuchInstance(String),
}

/// Everything the endpoint serves from.
#[derive(Debug)]
pub(crate) struct Shared {
    pub store: Mutex<InstanceStore>,
    pub faults: Mutex<FaultSet>,
    pub keys: Mutex<KeyRing>,
    pub nonces: Mutex<NonceCache>,
    pub throttle: Mutex<Throttle>,
    pub log: Mutex<CallLog>,
    pub oidc: Mutex<Option<OidcConfig>>,
    pub timestamp_window: Duration,
    /// `CreationTime` of every instance (seconds since the epoch): when the emulator started.
    pub created_at: i64,
    initial: Config,
}

impl Shared {
    /// State from a validated configuration.
    pub(crate) fn new(config: Config) -> Self {
        let shared = Self {
            store: Mutex::new(InstanceStore::new(
                config.transition_delay,
                config.default_stopped_mode,
            )),
            faults: Mutex::new(FaultSet::default()),
            keys: Mutex::new(KeyRing::default()),
            nonces: Mutex::new(NonceCache::new(config.timestamp_window.saturating_mul(2))),
            throttle: Mutex::new(Throttle::new(
                config.qps.clone(),
                config.rate_limits.clone(),
            )),
            log: Mutex::new(CallLog::new(config.call_log_capacity)),
            oidc: Mutex::new(None),
            timestamp_window: config.timestamp_window,
            created_at: jiff::Timestamp::now().as_second(),
            initial: config,
        };
        shared.reset();
        shared
    }

    /// Back to the configuration it started with: instances, faults, keys (issued STS keys
    /// are dropped), limits and settings; the call log is emptied.
    pub(crate) fn reset(&self) {
        let config = &self.initial;
        let now = Instant::now();
        {
            let mut store = lock(&self.store);
            store.clear();
            store.set_transition_delay(config.transition_delay);
            store.set_default_stopped_mode(config.default_stopped_mode);
            for instance in &config.instances {
                store.upsert(instance.clone(), now);
            }
        }
        {
            let mut faults = lock(&self.faults);
            faults.clear();
            for fault in &config.faults {
                faults.add(fault.clone());
            }
        }
        *lock(&self.keys) = KeyRing::new(&config.access_keys);
        {
            let mut throttle = lock(&self.throttle);
            throttle.set_qps(config.qps.clone());
            throttle.set_rate_limits(config.rate_limits.clone());
        }
        lock(&self.log).clear();
        lock(&self.oidc).clone_from(&config.oidc);
    }

    pub(crate) fn upsert_instance(&self, instance: Instance) -> Result<(), EmulatorError> {
        instance.validate().map_err(EmulatorError::Invalid)?;
        lock(&self.store).upsert(instance, Instant::now());
        Ok(())
    }

    /// Replaces an instance's fields but keeps its status and any transition in flight, unless
    /// `status` is given, which is then set as by [`Shared::set_status`].
    pub(crate) fn update_instance(
        &self,
        instance: Instance,
        status: Option<Status>,
    ) -> Result<(), EmulatorError> {
        instance.validate().map_err(EmulatorError::Invalid)?;
        let now = Instant::now();
        let mut store = lock(&self.store);
        let id = instance.id.clone();
        let current = store
            .observe(&id, now)
            .ok_or_else(|| EmulatorError::NoSuchInstance(id.clone()))?;
        let kept = current.status;
        *current = instance;
        current.status = kept;
        if let Some(status) = status {
            store.set_status(&id, status, now);
        }
        Ok(())
    }

    pub(crate) fn instance(&self, id: &str) -> Option<Instance> {
        lock(&self.store)
            .observe(id, Instant::now())
            .map(|i| i.clone())
    }

    pub(crate) fn instances(&self) -> Vec<Instance> {
        lock(&self.store).snapshot(Instant::now())
    }

    pub(crate) fn add_fault(&self, fault: Fault) -> Result<u64, EmulatorError> {
        fault.validate().map_err(EmulatorError::Invalid)?;
        Ok(lock(&self.faults).add(fault))
    }

    pub(crate) fn set_qps(&self, limits: BTreeMap<String, u32>) -> Result<(), EmulatorError> {
        if let Some(bad) = limits
            .keys()
            .find(|a| *a != "*" && !crate::actions::is_known(a))
        {
            return Err(EmulatorError::Invalid(format!(
                "qps names {bad:?}, which is not an action the emulator serves"
            )));
        }
        lock(&self.throttle).set_qps(limits);
        Ok(())
    }

    pub(crate) fn set_rate_limits(&self, limits: RateLimits) -> Result<(), EmulatorError> {
        limits.validate().map_err(EmulatorError::Invalid)?;
        lock(&self.throttle).set_rate_limits(limits);
        Ok(())
    }

    pub(crate) fn add_access_key(&self, key: AccessKey) -> Result<(), EmulatorError> {
        key.validate().map_err(EmulatorError::Invalid)?;
        lock(&self.keys).add(key);
        Ok(())
    }
}

/// A running emulator endpoint.
///
/// ```no_run
/// # async fn demo() -> Result<(), ecs_emulator::EmulatorError> {
/// use ecs_emulator::{Config, Emulator, Fault, Instance, Status};
/// let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), Config::sandbox_default()).await?;
/// emu.upsert_instance(Instance::new("i-x", "cn-hangzhou", Status::Stopped))?;
/// emu.add_fault(Fault::error("OperationDenied.NoStock").for_instance("i-x").times(1))?;
/// println!("ECS endpoint at {}", emu.url());
/// let starts = emu.call_log().iter().filter(|c| c.action == "StartInstance").count();
/// # let _ = starts;
/// emu.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Server,
}

impl Emulator {
    /// Validates the configuration, binds `addr` (port 0 picks a free port) and serves.
    ///
    /// # Errors
    /// [`EmulatorError::Config`] or [`EmulatorError::Bind`].
    pub async fn start(addr: SocketAddr, config: Config) -> Result<Self, EmulatorError> {
        config.validate()?;
        let shared = Arc::new(Shared::new(config));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| EmulatorError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind { addr, source })?;
        let server = Server::spawn(listener, crate::server::router(Arc::clone(&shared)));
        Ok(Self {
            addr: local,
            shared,
            server,
        })
    }

    /// The bound address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`, the ECS endpoint (and the admin API under `/_emulator/`).
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds or replaces an instance (a Starting/Stopping status begins that transition).
    ///
    /// # Errors
    /// [`EmulatorError::Invalid`] when the instance does not validate.
    pub fn upsert_instance(&self, instance: Instance) -> Result<(), EmulatorError> {
        self.shared.upsert_instance(instance)
    }

    /// Removes an instance; false when it did not exist.
    pub fn remove_instance(&self, id: &str) -> bool {
        lock(&self.shared.store).remove(id)
    }

    /// Sets an instance's status now, cancelling any transition; false when it does not exist.
    pub fn set_status(&self, id: &str, status: Status) -> bool {
        lock(&self.shared.store).set_status(id, status, Instant::now())
    }

    /// Replaces an instance's operation locks.
    ///
    /// # Errors
    /// [`EmulatorError::NoSuchInstance`], or [`EmulatorError::Invalid`] for an empty reason.
    pub fn set_locks(&self, id: &str, locks: Vec<String>) -> Result<(), EmulatorError> {
        let mut instance = self
            .instance(id)
            .ok_or_else(|| EmulatorError::NoSuchInstance(id.to_owned()))?;
        instance.locks = locks;
        self.shared.update_instance(instance, None)
    }

    /// An instance as it is now.
    #[must_use]
    pub fn instance(&self, id: &str) -> Option<Instance> {
        self.shared.instance(id)
    }

    /// Every instance as it is now, in id order.
    #[must_use]
    pub fn instances(&self) -> Vec<Instance> {
        self.shared.instances()
    }

    /// Adds a fault and returns its id.
    ///
    /// # Errors
    /// [`EmulatorError::Invalid`] when the fault does not validate.
    pub fn add_fault(&self, fault: Fault) -> Result<u64, EmulatorError> {
        self.shared.add_fault(fault)
    }

    /// Removes one fault; false when there is none with that id.
    pub fn remove_fault(&self, id: u64) -> bool {
        lock(&self.shared.faults).remove(id)
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// The active faults (their `times` count down as they fire).
    #[must_use]
    pub fn faults(&self) -> Vec<FaultEntry> {
        lock(&self.shared.faults).list()
    }

    /// Every request received (within the log's capacity), oldest first.
    #[must_use]
    pub fn call_log(&self) -> Vec<CallRecord> {
        lock(&self.shared.log).since(0)
    }

    /// Requests with `seq > since`.
    #[must_use]
    pub fn call_log_since(&self, since: u64) -> Vec<CallRecord> {
        lock(&self.shared.log).since(since)
    }

    /// Empties the call log (sequence numbers continue).
    pub fn clear_call_log(&self) {
        lock(&self.shared.log).clear();
    }

    /// Changes the default transition delay (transitions in flight keep theirs).
    pub fn set_transition_delay(&self, delay: Duration) {
        lock(&self.shared.store).set_transition_delay(delay);
    }

    /// Changes the StoppedMode of stops that name none.
    pub fn set_default_stopped_mode(&self, mode: StoppedMode) {
        lock(&self.shared.store).set_default_stopped_mode(mode);
    }

    /// Replaces the QPS limits (`*` = every other action).
    ///
    /// # Errors
    /// [`EmulatorError::Invalid`] for an action the emulator does not serve.
    pub fn set_qps(&self, limits: BTreeMap<String, u32>) -> Result<(), EmulatorError> {
        self.shared.set_qps(limits)
    }

    /// Replaces the per-(account, region, action) rate limits and forgets their buckets and
    /// minute windows.
    ///
    /// # Errors
    /// [`EmulatorError::Invalid`] for an action the emulator does not serve.
    pub fn set_rate_limits(&self, limits: RateLimits) -> Result<(), EmulatorError> {
        self.shared.set_rate_limits(limits)
    }

    /// The per-(account, region, action) rate limits in force.
    #[must_use]
    pub fn rate_limits(&self) -> RateLimits {
        lock(&self.shared.throttle).rate_limits().clone()
    }

    /// Accepts another access key.
    ///
    /// # Errors
    /// [`EmulatorError::Invalid`] for an empty id or secret or a non-numeric `accountId`.
    pub fn add_access_key(&self, key: AccessKey) -> Result<(), EmulatorError> {
        self.shared.add_access_key(key)
    }

    /// Back to the starting configuration (see the README: what reset restores).
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Stops accepting, lets open requests finish, and waits for the server to end.
    pub async fn shutdown(&self) {
        self.server.shutdown().await;
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.server.signal_shutdown();
    }
}
