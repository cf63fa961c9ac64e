//! The lifecycle of the execution environment: Init in the order of docs/reference.md §16.1.5, invokes (dispatch, wait
//! for the runtime and the extensions, report, freeze), and the shutdown sequence of docs/reference.md §16.1.8 — used
//! both for the final shutdown and for the reset after a timeout or a crash (docs/reference.md §16.1.10).

use std::sync::Arc;
use std::time::{Duration, Instant};

use perfmon_protocol::extensions::{EventType, InvokeEvent, NextEvent, ShutdownEvent, ShutdownReason, Tracing};
use perfmon_protocol::telemetry::{
    DurationMetrics, ExtensionState, InitReport, InitRuntimeDone, InitStart, Record, Status, TraceContext,
};

use crate::config::{SHUTDOWN_WINDOW_EXTERNAL, SHUTDOWN_WINDOW_INTERNAL};
use crate::env;
use crate::mode::Mode;
use crate::platform::{emit_report, emit_runtime_done, round3};
use crate::process::{self, list_extensions, peak_rss_kb, ru_maxrss_kb, Spawn};
use crate::records::{ExtensionShutdown, InitOutcome, InvokeOutcome, RuntimeDelivery, ShutdownOutcome};
use crate::state::{epoch_ms, ms_between, Ext, Inner, Invoke, Phase, Posted, Role, RuntimeSide, State};
use crate::stats::{percentile, ExtensionStats};
use crate::sys::Signal;

/// Error type of an invoke that ran past the function timeout.
pub(crate) const TIMEOUT_ERROR: &str = "Sandbox.Timeout";

pub(crate) fn freeze(st: &mut State, sigstop: bool) {
    st.frozen = true;
    if sigstop {
        st.signal_all(Signal::Stop);
    }
}

pub(crate) fn thaw(st: &mut State) {
    st.signal_all(Signal::Cont);
    st.frozen = false;
}

enum Gate {
    Ok,
    Failed(String),
}

fn fatal_gate(st: &State) -> Option<Gate> {
    st.fatal.as_ref().map(|f| Gate::Failed(f.error_type.clone()))
}

/// Runs Init (docs/reference.md §16.1.5): initStart, extensions exec'd in parallel, all registered, runtime started,
/// registration closed at the runtime's first `/next`, every extension in `/next`, subscriptions
/// closed, initRuntimeDone / platform.extension / initReport, freeze. On failure the environment is
/// reset (shutdown with reason `failure`).
pub(crate) async fn init(inner: &Arc<Inner>) -> InitOutcome {
    let cfg = &inner.cfg;
    // The environment's resources (cgroup, `/tmp` namespace) come first: in Lambda the execution
    // environment exists before its Init phase starts, and Init's duration does not include making it.
    let task_root = cfg
        .runtime
        .cwd
        .clone()
        .or_else(|| std::env::current_dir().ok())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let fenv = env::function_env(cfg, &inner.addr.to_string(), &task_root);
    let xenv = env::extension_env(&fenv);
    let env_res = inner.resources.create_env(&host_tmp_paths(cfg, &fenv));
    {
        let mut st = inner.lock();
        st.env_res = env_res;
        st.oom_killed = false;
    }
    let start = Instant::now();
    let deadline = start + cfg.init_timeout;
    let phase_label = {
        let mut st = inner.lock();
        let label = if st.generation == 0 { "init" } else { "invoke" };
        st.generation += 1;
        st.phase = Phase::Init;
        st.registration_open = true;
        st.subscriptions_open = true;
        st.frozen = false;
        st.flush_all = false;
        st.exts.clear();
        st.runtime = RuntimeSide::default();
        st.invoke = None;
        st.concurrent.clear();
        st.running = 0;
        st.init_done_at = None;
        st.generation_invokes = 0;
        st.restore_pending = false;
        st.fatal = None;
        st.init_events.clear();
        st.in_init = true;
        // Managed Instances report the instance's memory in bytes (2025-01-29 schema).
        let max_memory =
            if cfg.mode.is_managed_instances() { cfg.memory_mb.saturating_mul(1024 * 1024) } else { cfg.memory_mb };
        st.emit(Record::InitStart(InitStart {
            initialization_type: cfg.mode.init_type(),
            phase: label.to_owned(),
            function_name: Some(cfg.function_name.clone()),
            function_version: Some(cfg.function_version.clone()),
            instance_id: Some(uuid::Uuid::new_v4().to_string()),
            instance_max_memory: Some(max_memory),
            runtime_version: None,
            runtime_version_arn: None,
        }));
        label.to_owned()
    };
    inner.touch();

    let mut gate = launch_extensions(inner, &xenv);
    if matches!(gate, Gate::Ok) {
        // (3) every external extension registered (or one died / reported an error).
        gate = inner
            .wait_until(Some(deadline), |st| {
                fatal_gate(st)
                    .or_else(|| st.exts.iter().filter(|e| e.external).all(Ext::registered).then_some(Gate::Ok))
            })
            .await
            .unwrap_or(Gate::Failed(TIMEOUT_ERROR.to_owned()));
    }
    let mut runtime_start_delay_ms = 0.0;
    let workers = cfg.mode.workers();
    if matches!(gate, Gate::Ok) {
        // (4) start the runtime: one process, or one per worker on Managed Instances.
        runtime_start_delay_ms = ms_between(start, Instant::now());
        let (program, args) = exec_wrapped(&fenv, &cfg.runtime.program, &cfg.runtime.args);
        for _ in 0..workers {
            let spawned = process::spawn(
                inner,
                Spawn {
                    role: Role::Runtime,
                    program: &program,
                    args: &args,
                    cwd: cfg.runtime.cwd.as_deref(),
                    env: &fenv,
                },
            );
            match spawned {
                Ok(idx) => {
                    let mut st = inner.lock();
                    st.runtime.proc_idx.get_or_insert(idx);
                    st.runtime.workers.push(idx);
                    st.runtime.exec_at.get_or_insert_with(Instant::now);
                }
                Err(e) => {
                    tracing::warn!(error = %e, program = %cfg.runtime.program.display(), "cannot start the runtime");
                    gate = Gate::Failed("Runtime.InvalidEntrypoint".to_owned());
                    break;
                }
            }
        }
    }
    if matches!(gate, Gate::Ok) {
        // (5)-(6) the runtime asks for its first event (registration closes in the handler), and
        // every registered extension is in `/next`.
        gate = inner
            .wait_until(Some(deadline), |st| {
                fatal_gate(st).or_else(|| {
                    // Every worker in `/next` (a SnapStart runtime with hooks waits in `/restore/next`).
                    let runtime_ready = st.runtime.parked_count() >= workers || st.runtime.restore_waiting();
                    let ready = runtime_ready
                        && st.exts.iter().filter(|e| e.registered()).all(|e| e.is_parked() || e.pending.is_some());
                    ready.then_some(Gate::Ok)
                })
            })
            .await
            .unwrap_or(Gate::Failed(TIMEOUT_ERROR.to_owned()));
    }
    let (status, error_type) = match &gate {
        Gate::Ok => (Status::Success, None),
        Gate::Failed(t) if t == TIMEOUT_ERROR => (Status::Timeout, Some(t.clone())),
        Gate::Failed(t) => (Status::Error, Some(t.clone())),
    };
    let duration_ms = round3(ms_between(start, Instant::now()));
    {
        let mut st = inner.lock();
        st.registration_open = false;
        st.subscriptions_open = false;
        st.emit(Record::InitRuntimeDone(InitRuntimeDone {
            initialization_type: cfg.mode.init_type(),
            phase: phase_label.clone(),
            status: status.clone(),
            error_type: error_type.clone(),
            spans: Vec::new(),
        }));
        let ready: Vec<(String, Vec<String>)> = st
            .exts
            .iter()
            .filter(|e| e.registered())
            .map(|e| (e.name.clone(), e.events.iter().map(|ev| event_name(*ev).to_owned()).collect()))
            .collect();
        for (name, events) in ready {
            st.emit(Record::Extension(ExtensionState { name, state: "Ready".to_owned(), events, error_type: None }));
        }
        st.emit(Record::InitReport(InitReport {
            initialization_type: cfg.mode.init_type(),
            phase: phase_label.clone(),
            status: Some(status.clone()),
            error_type: error_type.clone(),
            metrics: DurationMetrics { duration_ms },
            spans: Vec::new(),
        }));
        st.in_init = false;
        if status == Status::Success {
            st.phase = Phase::Ready;
            st.init_done_at = Some(Instant::now());
            // SnapStart: this freeze is the snapshot; the first invoke restores it.
            st.restore_pending = matches!(cfg.mode, Mode::SnapStart { .. });
            if cfg.mode.freezes() {
                freeze(&mut st, cfg.freeze_with_sigstop);
            }
        }
    }
    inner.touch();
    if status != Status::Success {
        tracing::info!(?error_type, "init failed: resetting the environment");
        shutdown_sequence(inner, ShutdownReason::Failure, false).await;
    }
    InitOutcome { status, error_type, duration_ms, phase: phase_label, runtime_start_delay_ms }
}

fn event_name(e: EventType) -> &'static str {
    match e {
        EventType::Invoke => "INVOKE",
        EventType::Shutdown => "SHUTDOWN",
    }
}

/// (2) exec every file of the extensions directory, in parallel (no waiting between them).
fn launch_extensions(inner: &Arc<Inner>, xenv: &[(String, String)]) -> Gate {
    let Some(dir) = inner.cfg.extensions_dir.as_deref() else { return Gate::Ok };
    let list = match list_extensions(dir) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot read the extensions directory");
            return Gate::Failed("Extension.LaunchError".to_owned());
        }
    };
    for (name, path) in list {
        // Known before it runs: a fast extension may register before `spawn` returns.
        inner.lock().exts.push(Ext { name: name.clone(), external: true, ..Ext::default() });
        let spawned = process::spawn(
            inner,
            Spawn { role: Role::Extension(name.clone()), program: &path, args: &[], cwd: None, env: xenv },
        );
        match spawned {
            Ok(idx) => {
                let mut st = inner.lock();
                let exec_at = st.procs.get(idx).map(|p| p.spawned_at);
                if let Some(e) = st.exts.iter_mut().find(|e| e.name == name) {
                    e.proc_idx = Some(idx);
                    e.exec_at = exec_at;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, extension = %name, "cannot start extension");
                return Gate::Failed("Extension.LaunchError".to_owned());
            }
        }
    }
    Gate::Ok
}

pub(crate) fn trace_context() -> TraceContext {
    let secs = epoch_ms() / 1000;
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    let parent = b.get(..16).unwrap_or("0000000000000000").to_owned();
    let value = format!("Root=1-{secs:08x}-{};Parent={parent};Sampled=0", a.get(..24).unwrap_or(""));
    TraceContext { span_id: Some(parent), kind: "X-Amzn-Trace-Id".to_owned(), value }
}

pub(crate) enum End {
    Done(Instant),
    Fatal(String),
    Timeout,
}

/// The outcome of an invoke that never reached the runtime (its Init or restore failed).
pub(crate) fn failed_before_dispatch(
    request_id: String,
    status: Status,
    error_type: Option<String>,
    init_duration_ms: Option<f64>,
    tenant_id: Option<String>,
) -> InvokeOutcome {
    InvokeOutcome {
        request_id,
        status,
        error_type,
        response: Vec::new(),
        duration_ms: 0.0,
        runtime_duration_ms: None,
        cold: true,
        init_duration_ms,
        reset: true,
        restore_duration_ms: None,
        tenant_id,
    }
}

/// With [`crate::SandboxConfig::first_invoke_delay`]: waits until that long after the end of Init
/// before the first invoke of the environment (frozen meanwhile, as after any Init).
pub(crate) async fn first_invoke_delay(inner: &Arc<Inner>) {
    let delay = inner.cfg.first_invoke_delay;
    if delay.is_zero() {
        return;
    }
    let until = {
        let st = inner.lock();
        if st.generation_invokes == 0 {
            st.init_done_at.map(|t| t + delay)
        } else {
            None
        }
    };
    if let Some(t) = until {
        tokio::time::sleep_until(t.into()).await;
    }
}

/// Whether an invoke may start now (not while the environment is down, initialising, invoking or
/// shutting down). A process that died while the environment was idle is reset first.
pub(crate) async fn admit(inner: &Arc<Inner>) -> bool {
    let (phase, fatal) = {
        let st = inner.lock();
        (st.phase, st.fatal.is_some())
    };
    match phase {
        Phase::Down | Phase::ShuttingDown | Phase::Init | Phase::Invoking => false,
        Phase::Ready if fatal => {
            shutdown_sequence(inner, ShutdownReason::Failure, false).await;
            true
        }
        _ => true,
    }
}

/// One invoke: init first if needed, then dispatch, wait, report, freeze — or reset on failure.
/// `tenant`: tenant isolation (else the configured round robin, if any).
pub(crate) async fn invoke(inner: &Arc<Inner>, payload: Vec<u8>, tenant: Option<String>) -> Option<InvokeOutcome> {
    let cfg = &inner.cfg;
    if cfg.mode.is_managed_instances() {
        let mut outs = crate::concurrent::invoke_many(inner, vec![payload], 1).await?;
        return outs.pop();
    }
    if !admit(inner).await {
        return None;
    }
    let tenant_id = {
        let mut st = inner.lock();
        let n = st.invokes_started;
        st.invokes_started += 1;
        tenant.or_else(|| (!cfg.tenants.is_empty()).then(|| cfg.tenants[n % cfg.tenants.len()].clone()))
    };
    let other_tenant = {
        let st = inner.lock();
        st.phase == Phase::Ready && tenant_id.is_some() && st.env_tenant.is_some() && st.env_tenant != tenant_id
    };
    if other_tenant {
        // An environment serves one tenant: this invoke needs a new one.
        shutdown_sequence(inner, ShutdownReason::Spindown, false).await;
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut cold_init_ms = None;
    let ran_init = inner.lock().phase == Phase::Uninit;
    if ran_init {
        let init = init(inner).await;
        if init.status != Status::Success {
            let init_ms = Some(init.duration_ms);
            return Some(failed_before_dispatch(request_id, init.status, init.error_type, init_ms, tenant_id));
        }
        inner.lock().env_tenant = tenant_id.clone();
        // Provisioned concurrency and SnapStart reports carry no initDurationMs.
        if cfg.mode == Mode::OnDemand {
            cold_init_ms = Some(init.duration_ms);
        }
    }
    first_invoke_delay(inner).await;
    let mut restore_ms = None;
    if inner.lock().restore_pending {
        match crate::restore::restore(inner).await {
            Ok(ms) => restore_ms = Some(ms),
            Err(error_type) => {
                tracing::info!(%error_type, "restore failed: resetting the environment");
                shutdown_sequence(inner, ShutdownReason::Failure, false).await;
                return Some(failed_before_dispatch(request_id, Status::Failure, Some(error_type), None, tenant_id));
            }
        }
    }
    let dispatch_at = Instant::now();
    let dispatch_epoch_ms = epoch_ms();
    let deadline = dispatch_at + cfg.timeout;
    let deadline_ms = u64::try_from(dispatch_epoch_ms).unwrap_or(0) + cfg.timeout.as_millis() as u64;
    let tracing_ctx = cfg.tracing.then(trace_context);
    {
        let mut st = inner.lock();
        st.phase = Phase::Invoking;
        st.generation_invokes += 1;
        let mut inv = Invoke::new(request_id.clone(), dispatch_at, tracing_ctx.clone());
        inv.cold_init_ms = cold_init_ms;
        inv.tenant_id = tenant_id.clone();
        inv.restore_ms = restore_ms;
        st.invoke = Some(inv);
        // platform.start is queued before delivery resumes, so it travels with the previous
        // invoke's report in the first batch after the thaw (docs/reference.md §16.2.8).
        st.emit(Record::Start(perfmon_protocol::telemetry::Start {
            request_id: request_id.clone(),
            version: Some(cfg.function_version.clone()),
            tenant_id: tenant_id.clone(),
            function_arn: tenant_id.as_ref().map(|_| cfg.function_arn()),
            tracing: tracing_ctx.clone(),
        }));
        thaw(&mut st);
        let ev = InvokeEvent {
            deadline_ms,
            request_id: request_id.clone(),
            invoked_function_arn: cfg.function_arn(),
            tracing: tracing_ctx.as_ref().map(|t| Tracing { kind: t.kind.clone(), value: t.value.clone() }),
        };
        for e in st.exts.iter_mut().filter(|e| e.registered() && e.wants(EventType::Invoke)) {
            e.awaiting_next = true;
            e.invoke_next_at = None;
            e.give(NextEvent::Invoke(ev.clone()));
        }
        st.runtime.awaiting_next = true;
        st.runtime.give(RuntimeDelivery {
            request_id: request_id.clone(),
            deadline_ms,
            trace_id: tracing_ctx.as_ref().map(|t| t.value.clone()),
            tenant_id: tenant_id.clone(),
            payload,
        });
    }
    inner.touch();
    let end = inner
        .wait_until(Some(deadline), |st| {
            if let Some(f) = &st.fatal {
                return Some(End::Fatal(f.error_type.clone()));
            }
            let inv = st.invoke.as_ref()?;
            if !inv.runtime_done_emitted || st.runtime.awaiting_next || st.exts.iter().any(|e| e.awaiting_next) {
                return None;
            }
            let last = st
                .exts
                .iter()
                .filter(|e| e.registered() && e.wants(EventType::Invoke))
                .filter_map(|e| e.invoke_next_at);
            let end = last.chain(inv.runtime_next_at).max()?;
            Some(End::Done(end))
        })
        .await
        .unwrap_or(End::Timeout);

    let (status, error_type, reset, duration_ms, response, runtime_duration_ms) = {
        let mut st = inner.lock();
        let (status, error_type, end_at, reset) = match end {
            End::Done(end_at) => {
                let (status, error_type) = match st.invoke.as_ref().and_then(|i| i.posted.as_ref()) {
                    Some(Posted::Error { error_type, .. }) => (Status::Error, Some(error_type.clone())),
                    _ => (Status::Success, None),
                };
                let runtime_next = st.invoke.as_ref().and_then(|i| i.runtime_next_at);
                if let Some(rn) = runtime_next {
                    for e in st.exts.iter_mut().filter(|e| e.registered() && e.wants(EventType::Invoke)) {
                        if let Some(t) = e.invoke_next_at {
                            e.overheads_ms.push(round3(ms_between(rn, t)));
                        }
                    }
                }
                (status, error_type, end_at, None)
            }
            End::Timeout => {
                emit_runtime_done(&mut st, Status::Timeout, Some(TIMEOUT_ERROR.to_owned()));
                (Status::Timeout, Some(TIMEOUT_ERROR.to_owned()), deadline, Some(ShutdownReason::Timeout))
            }
            End::Fatal(t) => {
                let status = if t.starts_with("Sandbox.") { Status::Failure } else { Status::Error };
                emit_runtime_done(&mut st, status.clone(), Some(t.clone()));
                (status, Some(t), Instant::now(), Some(ShutdownReason::Failure))
            }
        };
        let duration_ms = emit_report(&mut st, cfg, status.clone(), error_type.clone(), end_at);
        let (response, runtime_duration_ms) = match st.invoke.as_ref() {
            Some(inv) => {
                let body = match &inv.posted {
                    Some(Posted::Response(b)) => b.clone(),
                    Some(Posted::Error { body, .. }) => body.clone(),
                    None => Vec::new(),
                };
                (body, inv.runtime_duration_ms)
            }
            None => (Vec::new(), None),
        };
        if reset.is_none() {
            st.phase = Phase::Ready;
            freeze(&mut st, cfg.freeze_with_sigstop);
        }
        (status, error_type, reset, duration_ms, response, runtime_duration_ms)
    };
    inner.touch();
    if let Some(reason) = reset.clone() {
        tracing::info!(?status, ?error_type, "invoke failed: resetting the environment");
        shutdown_sequence(inner, reason, false).await;
    }
    Some(InvokeOutcome {
        request_id,
        status,
        error_type,
        response,
        duration_ms,
        runtime_duration_ms,
        cold: ran_init,
        init_duration_ms: cold_init_ms,
        reset: reset.is_some(),
        restore_duration_ms: restore_ms,
        tenant_id,
    })
}

/// The shutdown sequence (docs/reference.md §16.1.8): thaw, SIGTERM to the runtime and up to `runtime_shutdown` for it,
/// SHUTDOWN (with the window's end as `deadlineMs`) to the extensions registered for it, SIGKILL
/// to the others, telemetry flushed during the window, SIGKILL for anything left at the deadline.
/// `last`: the sandbox is done (else it is a reset and the next invoke re-inits).
pub(crate) async fn shutdown_sequence(inner: &Arc<Inner>, reason: ShutdownReason, last: bool) -> ShutdownOutcome {
    let cfg = &inner.cfg;
    let started = Instant::now();
    let (window, generation) = {
        let mut st = inner.lock();
        st.phase = Phase::ShuttingDown;
        st.registration_open = false;
        st.subscriptions_open = false;
        st.in_init = false;
        st.flush_all = true;
        thaw(&mut st);
        let has_external = st.exts.iter().any(|e| e.external);
        let has_internal = st.exts.iter().any(|e| !e.external && e.registered());
        let window = cfg.shutdown_window.unwrap_or(if has_external {
            SHUTDOWN_WINDOW_EXTERNAL
        } else if has_internal {
            SHUTDOWN_WINDOW_INTERNAL
        } else {
            Duration::ZERO
        });
        for i in st.runtime.workers.clone() {
            if let Some(rt) = st.procs.get_mut(i).filter(|p| p.alive()) {
                if window.is_zero() {
                    rt.killed = true;
                    rt.signal(Signal::Kill);
                } else {
                    rt.signal(Signal::Term);
                }
            }
        }
        (window, st.generation)
    };
    inner.touch();
    // Peak RSS during the window (runtime's SIGTERM handling, extensions' final flush); stopped below
    // once every process was reaped.
    let poller = tokio::spawn(process::poll_peaks(inner.clone(), generation));
    let stop_poller = poller.abort_handle();
    inner.keep_task(poller); // aborted on drop of the sandbox too, should this sequence be cancelled
    let window_end = started + window;
    let runtime_deadline = started + cfg.runtime_shutdown.min(window);
    let runtime_gone =
        |st: &mut State| st.runtime.workers.iter().all(|&i| st.procs.get(i).is_none_or(|p| !p.alive())).then_some(());
    inner.wait_until(Some(runtime_deadline), runtime_gone).await;
    let (deadline_ms, released) = {
        let mut st = inner.lock();
        for i in st.runtime.workers.clone() {
            if let Some(rt) = st.procs.get_mut(i).filter(|p| p.alive()) {
                rt.killed = true;
                rt.signal(Signal::Kill);
            }
        }
        let remaining = window_end.saturating_duration_since(Instant::now());
        let deadline_ms = u64::try_from(epoch_ms()).unwrap_or(0) + remaining.as_millis() as u64;
        let now = Instant::now();
        let mut to_kill = Vec::new();
        let mut released = Vec::new();
        let mut sent = false;
        for e in st.exts.iter_mut() {
            if e.registered() && e.wants(EventType::Shutdown) {
                e.shutdown_sent_at = Some(now);
                e.give(NextEvent::Shutdown(ShutdownEvent { shutdown_reason: reason.clone(), deadline_ms }));
                released.extend(e.proc_idx);
                sent = true;
            } else if let Some(i) = e.proc_idx {
                to_kill.push(i);
            }
        }
        for i in to_kill {
            if let Some(p) = st.procs.get_mut(i).filter(|p| p.alive()) {
                p.killed = true;
                p.signal(Signal::Kill);
            }
        }
        (sent.then_some(deadline_ms), released)
    };
    inner.touch();
    process::sample_peaks(inner, &released);
    let exts_gone =
        |st: &mut State| st.exts.iter().filter_map(|e| st.proc_of(e.proc_idx)).all(|p| !p.alive()).then_some(());
    inner.wait_until(Some(window_end), exts_gone).await;
    {
        let mut st = inner.lock();
        let generation = st.generation;
        for p in st.procs.iter_mut().filter(|p| p.generation == generation && p.alive()) {
            p.killed = true;
            p.signal(Signal::Kill);
        }
    }
    // Wait for the watchers: exit statuses and every output line.
    let reaped = |st: &mut State| {
        let generation = st.generation;
        st.procs.iter().filter(|p| p.generation == generation).all(|p| !p.alive() && p.streams_open == 0).then_some(())
    };
    inner.wait_until(Some(Instant::now() + Duration::from_secs(2)), reaped).await;
    stop_poller.abort();

    let mut st = inner.lock();
    let generation = st.generation;
    let mut undelivered = Vec::new();
    for s in st.subs.iter_mut().filter(|s| s.generation == generation && !s.closed) {
        s.closed = true;
        if !s.queue.is_empty() {
            undelivered.push((s.ext_name.clone(), s.queue.len()));
        }
    }
    let stats = current_stats(&st);
    st.finished_stats.extend(stats);
    let extensions = st
        .exts
        .iter()
        .filter(|e| e.external)
        .filter_map(|e| {
            let p = st.proc_of(e.proc_idx)?;
            let exit = p.exit.as_ref();
            Some(ExtensionShutdown {
                name: e.name.clone(),
                registered_for_shutdown: e.wants(EventType::Shutdown),
                exit_code: exit.and_then(|x| x.code),
                exit_signal: exit.and_then(|x| x.signal),
                exited_before_deadline: exit.is_some() && !p.killed,
                shutdown_to_exit_ms: match (e.shutdown_sent_at, exit) {
                    (Some(s), Some(x)) if !p.killed => Some(round3(ms_between(s, x.at))),
                    _ => None,
                },
                peak_rss_kb: peak_rss_kb(p),
                ru_maxrss_kb: ru_maxrss_kb(p),
            })
        })
        .collect();
    let runtime_proc = st.proc_of(st.runtime.proc_idx);
    let runtime_exit = runtime_proc.and_then(|p| p.exit.clone());
    let runtime_peak_rss_kb = runtime_proc.and_then(peak_rss_kb);
    let outcome = ShutdownOutcome {
        reason,
        deadline_ms,
        runtime_exit_code: runtime_exit.as_ref().and_then(|x| x.code),
        runtime_exit_signal: runtime_exit.as_ref().and_then(|x| x.signal),
        runtime_peak_rss_kb,
        extensions,
        undelivered,
        duration_ms: round3(ms_between(started, Instant::now())),
    };
    st.shutdowns.push(outcome.clone());
    st.phase = if last { Phase::Down } else { Phase::Uninit };
    st.flush_all = false;
    st.invoke = None;
    st.concurrent.clear();
    st.running = 0;
    st.env_tenant = None;
    st.restore_pending = false;
    let mut env_res = std::mem::take(&mut st.env_res);
    drop(st);
    // Every process was reaped (or the wait above gave up): end the `/tmp` namespace, remove the cgroups.
    env_res.release();
    inner.touch();
    outcome
}

/// Paths under the host's `/tmp` the environment needs to see in its own `/tmp`: the runtime's
/// command, arguments and working directory, the extensions directory and where its entries point,
/// and path-like values of the environment.
fn host_tmp_paths(cfg: &crate::config::SandboxConfig, fenv: &[(String, String)]) -> Vec<String> {
    let mut values: Vec<String> = vec![cfg.runtime.program.display().to_string()];
    values.extend(cfg.runtime.args.iter().cloned());
    values.extend(cfg.runtime.cwd.iter().map(|d| d.display().to_string()));
    if let Some(dir) = &cfg.extensions_dir {
        values.push(dir.display().to_string());
        for (_, path) in list_extensions(dir).unwrap_or_default() {
            values.extend(std::fs::canonicalize(&path).ok().map(|p| p.display().to_string()));
        }
    }
    values.extend(fenv.iter().map(|(_, v)| v.clone()));
    crate::resources::host_tmp_entries(values.iter().map(String::as_str))
}

/// Figures of the current generation's extensions (cold start, overhead and memory, as the bench compares them).
pub(crate) fn current_stats(st: &State) -> Vec<ExtensionStats> {
    st.exts
        .iter()
        .map(|e| {
            let p = st.proc_of(e.proc_idx);
            let exit = p.and_then(|p| p.exit.as_ref());
            let after_exec = |t: Option<Instant>| match (e.exec_at, t) {
                (Some(x), Some(t)) => Some(round3(ms_between(x, t))),
                _ => None,
            };
            ExtensionStats {
                name: e.name.clone(),
                generation: st.generation,
                external: e.external,
                events: e.events.iter().map(|ev| event_name(*ev).to_owned()).collect(),
                exec_to_register_ms: after_exec(e.registered_at),
                exec_to_first_next_ms: after_exec(e.first_next_at),
                overhead_ms: e.overheads_ms.clone(),
                overhead_p50_ms: percentile(&e.overheads_ms, 50.0),
                overhead_p99_ms: percentile(&e.overheads_ms, 99.0),
                peak_rss_kb: p.and_then(peak_rss_kb),
                ru_maxrss_kb: p.and_then(ru_maxrss_kb),
                exit_code: exit.and_then(|x| x.code),
                exit_signal: exit.and_then(|x| x.signal),
                exited_before_deadline: match (st.phase, p) {
                    (Phase::ShuttingDown | Phase::Down | Phase::Uninit, Some(p)) if e.shutdown_sent_at.is_some() => {
                        Some(p.exit.is_some() && !p.killed)
                    }
                    _ => None,
                },
            }
        })
        .collect()
}

/// The runtime's command as Lambda runs it: with `AWS_LAMBDA_EXEC_WRAPPER` set (non-empty) in the
/// function's environment, `wrapper <program> <args...>`; else the command itself.
pub(crate) fn exec_wrapped(
    env: &[(String, String)],
    program: &std::path::Path,
    args: &[String],
) -> (std::path::PathBuf, Vec<String>) {
    match env.iter().find(|(k, v)| k == "AWS_LAMBDA_EXEC_WRAPPER" && !v.is_empty()) {
        Some((_, wrapper)) => {
            let mut all = Vec::with_capacity(args.len() + 1);
            all.push(program.display().to_string());
            all.extend(args.iter().cloned());
            (std::path::PathBuf::from(wrapper), all)
        }
        None => (program.to_path_buf(), args.to_vec()),
    }
}

#[cfg(test)]
mod exec_wrapper_tests {
    use super::exec_wrapped;
    use std::path::Path;

    #[test]
    fn wrapper_prepended_only_when_set() {
        let args = vec!["a".to_owned(), "b c".to_owned()];
        let (p, a) = exec_wrapped(&[], Path::new("/bin/fn"), &args);
        assert_eq!((p.as_path(), a.as_slice()), (Path::new("/bin/fn"), args.as_slice()));
        let env = [("AWS_LAMBDA_EXEC_WRAPPER".to_owned(), "/opt/w".to_owned())];
        let (p, a) = exec_wrapped(&env, Path::new("/bin/fn"), &args);
        assert_eq!(p, Path::new("/opt/w"));
        assert_eq!(a, vec!["/bin/fn".to_owned(), "a".to_owned(), "b c".to_owned()]);
        let empty = [("AWS_LAMBDA_EXEC_WRAPPER".to_owned(), String::new())];
        assert_eq!(exec_wrapped(&empty, Path::new("/bin/fn"), &args).0, Path::new("/bin/fn"));
    }
}
