//! The shared state of a sandbox: one `std::sync::Mutex` (never held across `.await`) and one
//! `Notify` that every change wakes. The lifecycle, the API handlers, the process watchers and the
//! delivery tasks all read and write it; waits are "check a condition, else sleep until a change".

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use perfmon_protocol::extensions::{EventType, NextEvent};
use perfmon_protocol::telemetry::{Event, Record, Report, TraceContext};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use crate::batching::Limits;
use crate::config::SandboxConfig;
use crate::records::{DeliveredNext, LogLine, Refusal, RuntimeDelivery, ShutdownOutcome};
use crate::sys::{self, Signal};

/// Epoch milliseconds now (telemetry `time`, `deadlineMs`).
pub(crate) fn epoch_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Milliseconds between two instants, as a float (0 when `b` is before `a`).
pub(crate) fn ms_between(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64() * 1000.0
}

/// Epoch ms of a past instant, given a reference pair taken together.
pub(crate) fn epoch_of(at: Instant, ref_instant: Instant, ref_epoch_ms: i64) -> i64 {
    if at >= ref_instant {
        ref_epoch_ms + (at - ref_instant).as_millis() as i64
    } else {
        ref_epoch_ms - (ref_instant - at).as_millis() as i64
    }
}

pub(crate) struct Inner {
    pub cfg: SandboxConfig,
    pub addr: SocketAddr,
    /// Which parts of Lambda's resource model this machine lets the sandbox apply.
    pub resources: crate::resources::Plan,
    state: Mutex<State>,
    pub changed: Notify,
    pub tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Inner {
    pub fn new(cfg: SandboxConfig, addr: SocketAddr, resources: crate::resources::Plan) -> Self {
        Self {
            cfg,
            addr,
            resources,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            tasks: Mutex::new(Vec::new()),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes every waiter to re-check its condition.
    pub fn touch(&self) {
        self.changed.notify_waiters();
    }

    pub fn keep_task(&self, task: JoinHandle<()>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Waits until `f` returns `Some`, re-checking on every change; `None` once `deadline` passed.
    pub async fn wait_until<T>(
        &self,
        deadline: Option<Instant>,
        mut f: impl FnMut(&mut State) -> Option<T>,
    ) -> Option<T> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = f(&mut self.lock()) {
                return Some(v);
            }
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d.into(), notified).await.is_err() {
                        return f(&mut self.lock());
                    }
                }
                None => notified.await,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Phase {
    /// No processes: the next invoke inits.
    #[default]
    Uninit,
    Init,
    /// Initialized, every process parked in `/next` (frozen).
    Ready,
    Invoking,
    ShuttingDown,
    /// `shutdown()` done: nothing more runs.
    Down,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    Runtime,
    Extension(String),
}

impl Role {
    pub fn source(&self) -> String {
        match self {
            Self::Runtime => "runtime".to_owned(),
            Self::Extension(n) => format!("extension:{n}"),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// `ru_maxrss` from `wait4`: on Linux it includes the high-water mark of the address space the
    /// process had before exec (the sandbox's own, through fork/vfork), so it is not the peak.
    pub ru_maxrss_kb: u64,
    pub at: Instant,
}

pub(crate) struct Proc {
    pub generation: u32,
    pub role: Role,
    pub pid: i32,
    pub spawned_at: Instant,
    pub exit: Option<Exit>,
    /// The sandbox sent SIGKILL (deadline, or not registered for SHUTDOWN).
    pub killed: bool,
    /// stdout and stderr readers finished (every line captured).
    pub streams_open: u8,
    /// The highest `VmHWM` sampled from `/proc/<pid>/status` (API calls, SHUTDOWN, shutdown poller).
    pub peak_hwm_kb: Option<u64>,
}

impl Proc {
    pub fn alive(&self) -> bool {
        self.exit.is_none()
    }
    /// Folds a `VmHWM` sample into the recorded peak.
    pub fn note_hwm(&mut self, kb: u64) {
        self.peak_hwm_kb = Some(self.peak_hwm_kb.map_or(kb, |p| p.max(kb)));
    }
    pub fn signal(&self, s: Signal) {
        if self.alive() {
            sys::signal_group(self.pid, s);
        }
    }
}

/// One extension of the current generation: an external process (registered or not yet) or an
/// internal extension (registered under a name that is no file in the directory).
#[derive(Default)]
pub(crate) struct Ext {
    pub name: String,
    pub external: bool,
    pub proc_idx: Option<usize>,
    pub exec_at: Option<Instant>,
    pub id: Option<String>,
    pub events: Vec<EventType>,
    pub registered_at: Option<Instant>,
    pub first_next_at: Option<Instant>,
    pub parked: Option<oneshot::Sender<NextEvent>>,
    pub pending: Option<NextEvent>,
    /// Got an INVOKE and has not called `/next` since.
    pub awaiting_next: bool,
    pub invoke_next_at: Option<Instant>,
    pub overheads_ms: Vec<f64>,
    pub shutdown_sent_at: Option<Instant>,
    pub subscribed: Option<usize>,
}

impl Ext {
    pub fn is_parked(&self) -> bool {
        self.parked.as_ref().is_some_and(|t| !t.is_closed())
    }
    pub fn registered(&self) -> bool {
        self.id.is_some()
    }
    pub fn wants(&self, e: EventType) -> bool {
        self.events.contains(&e)
    }
    /// Hands `ev` to the parked `/next`, or keeps it for the next one.
    pub fn give(&mut self, ev: NextEvent) {
        let ev = match self.parked.take() {
            Some(tx) => match tx.send(ev) {
                Ok(()) => return,
                Err(ev) => ev,
            },
            None => ev,
        };
        self.pending = Some(ev);
    }
}

/// A request handed to the runtime's `/next`.
pub(crate) type RuntimeSlot = oneshot::Sender<RuntimeDelivery>;

/// The runtime side: one worker process, or `max_concurrency` of them on Managed Instances, all
/// polling the same `/runtime/invocation/next`. Each pending invoke goes to one waiting worker.
#[derive(Default)]
pub(crate) struct RuntimeSide {
    /// The first worker's process (the only one outside Managed Instances).
    pub proc_idx: Option<usize>,
    /// Every worker's process.
    pub workers: Vec<usize>,
    pub exec_at: Option<Instant>,
    /// Workers waiting in `/next`, oldest first.
    pub parked: VecDeque<RuntimeSlot>,
    /// Invokes no worker has taken yet, oldest first.
    pub pending: VecDeque<RuntimeDelivery>,
    pub awaiting_next: bool,
    pub init_error: Option<String>,
    /// The runtime waits in `/runtime/restore/next` (SnapStart runtime hooks, e.g. awslambdaric).
    pub restore_parked: Option<oneshot::Sender<()>>,
    /// The runtime reported `/runtime/restore/error` (its errorType).
    pub restore_error: Option<String>,
}

impl RuntimeSide {
    pub fn is_parked(&self) -> bool {
        self.parked.iter().any(|t| !t.is_closed())
    }
    /// Workers currently waiting in `/next`.
    pub fn parked_count(&self) -> usize {
        self.parked.iter().filter(|t| !t.is_closed()).count()
    }
    pub fn restore_waiting(&self) -> bool {
        self.restore_parked.as_ref().is_some_and(|t| !t.is_closed())
    }
    /// Hands `d` to the longest-waiting worker, or queues it for the next `/next`.
    pub fn give(&mut self, d: RuntimeDelivery) {
        let mut d = d;
        while let Some(tx) = self.parked.pop_front() {
            match tx.send(d) {
                Ok(()) => return,
                Err(back) => d = back,
            }
        }
        self.pending.push_back(d);
    }
}

/// What the runtime posted for the current invoke.
#[derive(Debug, Clone)]
pub(crate) enum Posted {
    Response(Vec<u8>),
    Error { error_type: String, body: Vec<u8> },
}

pub(crate) struct Invoke {
    pub request_id: String,
    pub dispatch_at: Instant,
    pub tracing: Option<TraceContext>,
    pub cold_init_ms: Option<f64>,
    pub response_head_at: Option<Instant>,
    pub response_end_at: Option<Instant>,
    pub posted: Option<Posted>,
    pub runtime_next_at: Option<Instant>,
    pub runtime_done_emitted: bool,
    pub runtime_duration_ms: Option<f64>,
    /// Tenant isolation: the invoke's tenant (`tenantId`, `Lambda-Runtime-Aws-Tenant-Id`).
    pub tenant_id: Option<String>,
    /// A worker took it with `/next` (Managed Instances: counts as running until answered).
    pub delivered_at: Option<Instant>,
    /// The runtime posted with `Lambda-Runtime-Function-Response-Mode: streaming`.
    pub streamed: bool,
    /// SnapStart: the restore that preceded this invoke (`restoreDurationMs` of its report).
    pub restore_ms: Option<f64>,
}

impl Invoke {
    pub fn new(request_id: String, dispatch_at: Instant, tracing: Option<TraceContext>) -> Self {
        Self {
            request_id,
            dispatch_at,
            tracing,
            cold_init_ms: None,
            response_head_at: None,
            response_end_at: None,
            posted: None,
            runtime_next_at: None,
            runtime_done_emitted: false,
            runtime_duration_ms: None,
            tenant_id: None,
            delivered_at: None,
            streamed: false,
            restore_ms: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubApi {
    Telemetry,
    /// Legacy Logs API (`/2020-08-15/logs`): legacy record shapes (docs/reference.md §16.2.9).
    Logs,
}

pub(crate) struct Queued {
    pub event: Event,
    pub json: String,
    pub at: Instant,
}

pub(crate) struct Subscriber {
    pub generation: u32,
    pub ext_name: String,
    pub api: SubApi,
    pub types: Vec<String>,
    pub limits: Limits,
    pub port: u16,
    pub path: String,
    pub queue: VecDeque<Queued>,
    pub closed: bool,
    pub dropped_records: u64,
    pub dropped_bytes: u64,
}

impl Subscriber {
    fn wants(&self, ev: &Event) -> bool {
        self.types.iter().any(|t| t == ev.record.stream())
    }
    /// Encodes and queues `ev` if this subscription wants it (legacy Logs subscribers get legacy shapes).
    pub fn offer(&mut self, ev: &Event) {
        if self.closed || !self.wants(ev) {
            return;
        }
        let now = Instant::now();
        match self.api {
            SubApi::Telemetry => {
                if let Ok(json) = serde_json::to_string(ev) {
                    self.queue.push_back(Queued { event: ev.clone(), json, at: now });
                }
            }
            SubApi::Logs => {
                for json in [crate::legacy::encode(ev), crate::legacy::end_marker(ev)].into_iter().flatten() {
                    self.queue.push_back(Queued { event: ev.clone(), json, at: now });
                }
            }
        }
    }
}

/// The first fatal error of the current generation (it resets the environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fatal {
    pub error_type: String,
}

#[derive(Default)]
pub(crate) struct State {
    pub phase: Phase,
    pub generation: u32,
    pub registration_open: bool,
    pub subscriptions_open: bool,
    pub frozen: bool,
    pub flush_all: bool,
    pub exts: Vec<Ext>,
    pub runtime: RuntimeSide,
    pub procs: Vec<Proc>,
    pub invoke: Option<Invoke>,
    /// Managed Instances: the invokes in flight, in dispatch order.
    pub concurrent: Vec<Invoke>,
    /// Managed Instances: invokes a worker took and has not answered; the most seen at once.
    pub running: usize,
    pub max_running: usize,
    /// Tenant isolation: the tenant this environment serves (set by its first invoke).
    pub env_tenant: Option<String>,
    /// Invokes started so far (all generations), for the round-robin tenant assignment.
    pub invokes_started: usize,
    /// When the current generation's Init ended successfully, and invokes it served so far.
    pub init_done_at: Option<Instant>,
    pub generation_invokes: u32,
    /// SnapStart: a restore must run before the next invoke; restores attempted so far.
    pub restore_pending: bool,
    pub restores: u32,
    pub fatal: Option<Fatal>,
    pub subs: Vec<Subscriber>,
    pub init_events: Vec<Event>,
    pub in_init: bool,
    pub events: Vec<Event>,
    pub reports: Vec<Report>,
    pub logs: Vec<LogLine>,
    pub delivered: Vec<(String, Event)>,
    pub batches: Vec<crate::records::DeliveredBatch>,
    pub refusals: Vec<Refusal>,
    pub next_events: Vec<DeliveredNext>,
    pub runtime_deliveries: Vec<RuntimeDelivery>,
    pub shutdowns: Vec<ShutdownOutcome>,
    pub finished_stats: Vec<crate::stats::ExtensionStats>,
    /// The current environment's cgroup and `/tmp` namespace (empty without the resource model).
    pub env_res: crate::resources::EnvResources,
    /// The OOM killer killed a process of the current environment.
    pub oom_killed: bool,
}

impl State {
    /// Emits a telemetry event now: recorded, and queued for every subscriber that wants it.
    pub fn emit(&mut self, record: Record) {
        self.emit_at(epoch_ms(), record);
    }

    pub fn emit_at(&mut self, time_ms: i64, record: Record) {
        let ev = Event::new(time_ms, record);
        if let Record::Report(r) = &ev.record {
            self.reports.push(r.clone());
        }
        let generation = self.generation;
        for sub in self.subs.iter_mut().filter(|s| s.generation == generation) {
            sub.offer(&ev);
        }
        if self.in_init {
            self.init_events.push(ev.clone());
        }
        self.events.push(ev);
    }

    /// The in-flight invoke `id` (the current one, or one of the concurrent ones).
    pub fn invoke_by_id_mut(&mut self, id: &str) -> Option<&mut Invoke> {
        if self.invoke.as_ref().is_some_and(|i| i.request_id == id) {
            return self.invoke.as_mut();
        }
        self.concurrent.iter_mut().find(|i| i.request_id == id)
    }

    pub fn ext_by_id(&self, id: &str) -> Option<usize> {
        self.exts.iter().position(|e| e.id.as_deref() == Some(id))
    }

    pub fn live_procs(&self) -> impl Iterator<Item = &Proc> {
        let generation = self.generation;
        self.procs.iter().filter(move |p| p.generation == generation && p.alive())
    }

    pub fn signal_all(&self, s: Signal) {
        for p in self.live_procs() {
            p.signal(s);
        }
    }

    pub fn proc_of(&self, idx: Option<usize>) -> Option<&Proc> {
        idx.and_then(|i| self.procs.get(i))
    }
}
