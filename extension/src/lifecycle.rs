//! The extension's life: Init (register, bind, subscribe), the INVOKE loop, SHUTDOWN.
//!
//! Init does only what cannot wait: register for INVOKE and SHUTDOWN, bind the telemetry listener,
//! subscribe. Nothing builds the CloudWatch client or TLS before the first flush needs them.
//!
//! Modes (docs/reference.md §8): on Lambda Managed Instances (`AWS_LAMBDA_INITIALIZATION_TYPE=
//! lambda-managed-instances`) Lambda refuses a registration for INVOKE, so perfmon registers for
//! SHUTDOWN only, subscribes with schema `2025-01-29`, follows invokes from telemetry alone and
//! flushes on a timer every `PERFMON_FLUSH_INTERVAL_S` ([`Trigger::Timer`]). In any mode a refused
//! registration is retried with fewer events ([`REGISTRATION_FALLBACK`]), never turned into an init
//! failure; without INVOKE events the timer flush takes over.
//!
//! On INVOKE the flush decision ([`crate::flush::decide`]) says:
//! * `Background`: spawn a flush now and go straight back to `/next`: it overlaps the function;
//! * `AtEnd`: wait for this invoke's `platform.runtimeDone` (bounded by the invoke's deadline),
//!   flush, then `/next` (never wait for `platform.report`: it only exists after our `/next`);
//! * `AtEndEmf`: the same, but the flush writes everything as EMF lines (no network); with
//!   `PERFMON_SPARSE_FLUSH=auto` and no proxy in use, the first such invoke also says once in the
//!   log how long it waited and how to turn the wrapper on;
//! * `AtResponseEmf` (the runtime talks through [`crate::runtime_proxy`]): wait until Lambda took
//!   the runtime's `/response` or `/error` (bounded by the deadline), write EMF lines, then `/next`;
//! * `Skip`: straight back to `/next`.
//!
//! While perfmon waits in `/next` and an invoke runs, a ticker ([`invoke_ticker`], every policy but
//! `shutdown`) asks the same decision with [`FlushEvent::Tick`]: an invoke running longer than the
//! flush interval gets a background flush every interval ([`Trigger::DuringInvoke`]), through the
//! same sinks, budget, breaker and retry backlog. The function never waits on it.
//!
//! On SHUTDOWN, in this order, all before `deadlineMs`:
//! 1. wait briefly (≤ [`REPORT_WAIT`], less when the deadline is near) for the `platform.report`
//!    of every invoke started, then close the others from their `platform.runtimeDone`;
//! 2. bring the deadline of a running background flush forward, and wait for it to end;
//! 3. final flush; what CloudWatch did not take is written as EMF;
//! 4. exit 0 (the caller exits the process explicitly).

use std::sync::Arc;
use std::time::Duration;

use perfmon_protocol::contract::defaults;
use perfmon_protocol::extensions::{EventType, InvokeEvent, NextEvent, RegisterResponse, ShutdownEvent};
use perfmon_protocol::telemetry::{SCHEMA_DEFAULT, SCHEMA_MANAGED_INSTANCES};
use tokio::time::Instant;

use crate::aggregate::Limits;
use crate::config::{Config, ConfigWarning, FlushPolicy, SparseFlush};
use crate::flush::{decide, FlushDecision, FlushEvent};
use crate::lambda_api::{ApiError, ExtensionsApi};
use crate::platform::Mode;
use crate::sinks::{Flusher, Trigger, FINAL_EMF_MARGIN, FLUSH_BUDGET};
use crate::state::{now_ms, Phase, Shared};
use crate::system::read::Paths;
use crate::system::sampler::Sampler;

/// Longest wait at SHUTDOWN for the last invokes' `platform.report`.
pub const REPORT_WAIT: Duration = Duration::from_millis(300);
/// Registration attempts per event set on transient errors, before trying the next set.
pub const REGISTER_ATTEMPTS: u32 = 5;
/// The event sets tried in order when Lambda refuses one (4xx): Managed Instances refuse INVOKE;
/// an extension registered for nothing still keeps its telemetry and timer flushes alive. Only if
/// every set fails does perfmon exit (without registration there is no SHUTDOWN to wait for).
pub const REGISTRATION_FALLBACK: [&[EventType]; 3] =
    [&[EventType::Invoke, EventType::Shutdown], &[EventType::Shutdown], &[]];
/// Shortest timer-flush period, whatever `PERFMON_FLUSH_INTERVAL_S` says.
pub const MIN_TIMER_INTERVAL: Duration = Duration::from_millis(250);
/// The long-invoke ticker's period: a tenth of the flush interval, within these bounds (a flush
/// during an invoke starts at most this late; a tick costs one timer wake-up and one lock).
pub const TICK_MIN: Duration = Duration::from_millis(50);
pub const TICK_MAX: Duration = Duration::from_secs(1);

/// Everything an event handler needs.
#[derive(Debug, Clone)]
pub struct Context {
    pub policy: FlushPolicy,
    /// `PERFMON_SPARSE_FLUSH`: what `adaptive` does for a sparse invoke.
    pub sparse_flush: SparseFlush,
    pub interval_ms: i64,
    pub shared: Arc<Shared>,
    pub flusher: Arc<Flusher>,
    /// Telemetry arrives (listener bound and subscription accepted): `AtEnd` may wait for it.
    pub telemetry: bool,
    /// The custom-metric listeners: StatsD datagrams still queued are drained before the
    /// end-of-invoke and final flushes (`None` in tests without listeners).
    pub ingest: Option<Arc<crate::ingest::Ingest>>,
    /// The system metrics' sampler thread (`None` with `PERFMON_SYSTEM_METRICS=false`).
    pub system: Option<Arc<Sampler>>,
    /// The Runtime API proxy (`None` when off or not bound).
    pub proxy: Option<crate::runtime_proxy::RuntimeProxy>,
    /// `AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`: the first INVOKE follows a restore.
    pub snap_start: bool,
}

/// The name to register with: the executable's file name (Lambda requires it), else `perfmon`.
pub fn extension_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| std::path::Path::new(&a).file_name().and_then(|f| f.to_str()).map(str::to_owned))
        .unwrap_or_else(|| perfmon_protocol::contract::EXTENSION_NAME.to_owned())
}

/// Instant at epoch-ms `deadline_ms` (now if it is past).
pub fn instant_at(deadline_ms: i64) -> Instant {
    Instant::now() + Duration::from_millis((deadline_ms - now_ms()).max(0) as u64)
}

/// Runs the extension until SHUTDOWN has been handled; returns the process exit code.
pub async fn run(cfg: Config, warnings: Vec<ConfigWarning>) -> i32 {
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let Some(addr) = cfg.runtime_api.clone() else {
        tracing::error!(
            "AWS_LAMBDA_RUNTIME_API is not set: without arguments perfmon runs as a Lambda extension (see `perfmon --help` for the tools)"
        );
        return 1;
    };
    // Custom-metric listeners: bound before registering (Lambda starts the runtime once every
    // extension has registered), served once the shared state exists. Bind failures are logged.
    let ingest = crate::ingest::Bound::bind(crate::ingest::IngestConfig::from_config(&cfg)).await;
    // The Runtime API proxy too: the wrapper looks for it when Lambda starts the runtime.
    let proxy = match cfg.runtime_proxy_port {
        Some(port) => crate::runtime_proxy::RuntimeProxy::start(port, &addr).await,
        None => None,
    };
    let name = extension_name();
    let mode = Mode::from_env_value(cfg.initialization_type.as_deref());
    let mut api = ExtensionsApi::new(&addr);
    let Some((registered, events)) = register(&mut api, &name, mode).await else {
        return 1;
    };
    let invoke_events = events.contains(&EventType::Invoke);
    let shared = Arc::new(Shared::new(
        &cfg,
        Some(&registered.function_name),
        Limits { max_series_per_metric: cfg.max_series_per_metric, ..Limits::default() },
        now_ms(),
    ));
    shared.lock().invoke_events = invoke_events;
    if let Some(p) = &proxy {
        shared.attach_runtime_proxy(p.port, Arc::clone(&p.signals));
        if cfg.trigger_metrics {
            p.signals.read_triggers(Arc::clone(&shared), cfg.routes.clone());
        }
    }

    let telemetry = match crate::telemetry::bind(cfg.telemetry_port).await {
        Ok(listener) => {
            let port = listener.local_addr().map(|a| a.port()).unwrap_or(cfg.telemetry_port);
            crate::telemetry::serve(listener, Arc::clone(&shared));
            subscribe(&mut api, mode, port).await
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot bind the telemetry listener: no platform metrics");
            false
        }
    };
    let ingest = Arc::new(ingest.serve(Arc::clone(&shared) as Arc<dyn crate::ingest::SampleSink>));
    if let Some(drops) = ingest.statsd_kernel_drops() {
        shared.attach_statsd_drops(drops);
    }

    let flusher = Arc::new(Flusher::new(cfg.sink, &cfg.namespace, Arc::clone(&shared)));
    let system = if cfg.system_metrics {
        Some(Arc::new(Sampler::start(Arc::clone(&shared), Paths::default(), !invoke_events)))
    } else {
        None
    };
    let ctx = Context {
        policy: cfg.flush,
        sparse_flush: cfg.sparse_flush,
        interval_ms: cfg.flush_interval.as_millis() as i64,
        shared,
        flusher,
        telemetry,
        ingest: Some(ingest),
        system,
        proxy,
        snap_start: mode == Mode::SnapStart,
    };
    tracing::debug!(function = %registered.function_name, ?cfg.sink, ?cfg.flush, ?events, mode = mode.as_str(), "registered");
    if !invoke_events {
        // No INVOKE event will mark the end of Init: the environment is ready once perfmon waits.
        ctx.shared.lock().phase = Phase::Ready;
        if ctx.policy != FlushPolicy::Shutdown {
            crate::spawn_logged("timer-flush", timer_flush(ctx.clone()));
        }
    } else if ctx.policy != FlushPolicy::Shutdown {
        crate::spawn_logged("invoke-ticker", invoke_ticker(ctx.clone()));
    }

    loop {
        match api.next_event().await {
            NextEvent::Invoke(inv) => {
                let handled = crate::spawn_logged("invoke", on_invoke(ctx.clone(), inv));
                let _ = handled.await;
            }
            NextEvent::Shutdown(sd) => {
                let handled = crate::spawn_logged("shutdown", on_shutdown(ctx.clone(), sd));
                let _ = handled.await;
                return 0;
            }
        }
    }
}

/// Registers with the first event set of [`REGISTRATION_FALLBACK`] that Lambda accepts (on Managed
/// Instances, starting without INVOKE); transient errors are retried [`REGISTER_ATTEMPTS`] times.
/// `None` only when every set failed.
pub async fn register(api: &mut ExtensionsApi, name: &str, mode: Mode) -> Option<(RegisterResponse, Vec<EventType>)> {
    let sets =
        REGISTRATION_FALLBACK.iter().filter(|set| !(mode.is_managed_instances() && set.contains(&EventType::Invoke)));
    let mut last: Option<ApiError> = None;
    for events in sets {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match api.register(name, events).await {
                Ok(r) => {
                    if let Some(e) = &last {
                        tracing::warn!(error = %e, ?events, "registration refused with more events; registered with fewer");
                    }
                    return Some((r, events.to_vec()));
                }
                Err(e) if e.is_transient() && attempt < REGISTER_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "register failed; retrying");
                    tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, ?events, "registration refused; trying fewer events");
                    last = Some(e);
                    break;
                }
            }
        }
    }
    tracing::error!(error = ?last.map(|e| e.to_string()), name, "cannot register with the Extensions API");
    None
}

/// Subscribes to platform telemetry with the mode's schema (falling back to the default schema if
/// Lambda refuses `2025-01-29`); returns whether telemetry will arrive.
async fn subscribe(api: &mut ExtensionsApi, mode: Mode, port: u16) -> bool {
    let schemas: &[&str] =
        if mode.is_managed_instances() { &[SCHEMA_MANAGED_INSTANCES, SCHEMA_DEFAULT] } else { &[SCHEMA_DEFAULT] };
    for schema in schemas {
        match api.subscribe_telemetry(schema, port, defaults::TELEMETRY_TIMEOUT_MS).await {
            Ok(()) => return true,
            Err(e) => tracing::error!(error = %e, schema, "Telemetry API subscription failed"),
        }
    }
    tracing::error!("no telemetry subscription: no platform metrics");
    false
}

/// Flushes every `PERFMON_FLUSH_INTERVAL_S` (at least [`MIN_TIMER_INTERVAL`]) where no INVOKE event
/// gives the flush a moment; stops at SHUTDOWN, which flushes last.
pub async fn timer_flush(ctx: Context) {
    let period = Duration::from_millis(ctx.interval_ms.max(0) as u64).max(MIN_TIMER_INTERVAL);
    let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        {
            let mut g = ctx.shared.lock();
            if g.phase == Phase::ShuttingDown {
                return;
            }
            if g.flush.in_flight {
                continue;
            }
            g.flush.in_flight = true;
        }
        ctx.flusher.warm();
        if let Some(ingest) = &ctx.ingest {
            ingest.drain_statsd();
        }
        if let Some(sampler) = &ctx.system {
            sampler.window_end().await;
        }
        ctx.flusher.flush(Trigger::Timer, Instant::now() + FLUSH_BUDGET).await;
    }
}

/// Flushes in the background while an invoke runs longer than the flush interval
/// ([`FlushEvent::Tick`]); stops at SHUTDOWN. In a frozen sandbox it does not run; after a thaw
/// its first tick sees the previous invoke ended (its `platform.runtimeDone`) or the new one young.
pub async fn invoke_ticker(ctx: Context) {
    let period = Duration::from_millis((ctx.interval_ms.max(0) / 10) as u64).clamp(TICK_MIN, TICK_MAX);
    let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // An invoke is over once the Runtime API proxy saw its response, before any telemetry: a
        // sandbox thawed for the next invoke must not flush for the previous one.
        let proxy = ctx.proxy.as_ref().map(|p| &p.signals);
        let d = ctx.shared.on_tick(
            |id| proxy.is_some_and(|s| s.is_done(id)),
            |state| decide(ctx.policy, ctx.sparse_flush, ctx.interval_ms, state, FlushEvent::Tick, now_ms()),
        );
        if d != FlushDecision::Background {
            if ctx.shared.lock().phase == Phase::ShuttingDown {
                return;
            }
            continue;
        }
        if let Some(ingest) = &ctx.ingest {
            ingest.drain_statsd();
        }
        ctx.flusher.warm();
        ctx.flusher.flush(Trigger::DuringInvoke, Instant::now() + FLUSH_BUDGET).await;
    }
}

/// Waits until `done()` holds after a telemetry batch, or `deadline`; returns whether it held.
pub async fn wait_for(shared: &Shared, deadline: Instant, done: impl Fn(&Shared) -> bool) -> bool {
    let mut rx = shared.subscribe_progress();
    loop {
        rx.borrow_and_update();
        if done(shared) {
            return true;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => return done(shared),
        }
    }
}

/// Handles one INVOKE event (before the next `/next`).
pub async fn on_invoke(ctx: Context, inv: InvokeEvent) {
    if ctx.snap_start {
        after_restore(&ctx);
    }
    let now = now_ms();
    if let Some(sampler) = &ctx.system {
        sampler.on_invoke(&inv.request_id);
    }
    ctx.shared.on_invoke(&inv.request_id, now);
    let decision = {
        let mut g = ctx.shared.lock();
        g.flush.runtime_proxied = ctx.proxy.as_ref().is_some_and(|p| p.signals.in_use());
        let d = decide(ctx.policy, ctx.sparse_flush, ctx.interval_ms, &g.flush, FlushEvent::Invoke, now);
        g.flush.last_invoke_ms = Some(now);
        d
    };
    let proxy = ctx.proxy.as_ref().map(|p| &p.signals);
    if decision == FlushDecision::AtEnd {
        // This invoke ends with a PutMetricData: the client (built at the first one, on a blocking
        // thread) is built now, beside the function, so that the end-of-invoke flush does not wait
        // for it. Every other decision leaves it to the first flush that sends.
        ctx.flusher.warm();
    }
    match decision {
        FlushDecision::Skip | FlushDecision::Final => {}
        FlushDecision::Background => {
            ctx.flusher.mark_in_flight();
            let f = Arc::clone(&ctx.flusher);
            crate::spawn_logged("background-flush", async move {
                f.flush(Trigger::Background, Instant::now() + FLUSH_BUDGET).await;
            });
        }
        FlushDecision::AtResponseEmf => {
            let invoke_deadline = instant_at(inv.deadline_ms as i64);
            if let Some(signals) = proxy {
                if !signals.wait_done(&inv.request_id, invoke_deadline).await {
                    tracing::debug!(request_id = %inv.request_id, "no /response or /error before the invoke deadline");
                }
            }
            ctx.shared.invoke_ended(&inv.request_id);
            if let Some(ingest) = &ctx.ingest {
                ingest.drain_statsd();
            }
            ctx.flusher.flush_as_emf(Trigger::End).await;
        }
        FlushDecision::AtEnd | FlushDecision::AtEndEmf => {
            let invoke_deadline = instant_at(inv.deadline_ms as i64);
            if ctx.telemetry {
                let id = inv.request_id.clone();
                let waiting = Instant::now();
                let seen =
                    wait_for(&ctx.shared, invoke_deadline, move |s| s.lock().platform.runtime_done_seen(&id)).await;
                if !seen {
                    tracing::debug!(request_id = %inv.request_id, "no platform.runtimeDone before the invoke deadline");
                } else if decision == FlushDecision::AtEndEmf && ctx.sparse_flush == SparseFlush::Auto {
                    // `auto`'s fallback without the proxy (never under an explicit policy or value).
                    tell_unwrapped_once(&ctx, waiting.elapsed());
                }
            }
            ctx.shared.invoke_ended(&inv.request_id);
            // StatsD lines the function sent just before returning go out with this invoke.
            if let Some(ingest) = &ctx.ingest {
                ingest.drain_statsd();
            }
            let budget = (Instant::now() + FLUSH_BUDGET).min(invoke_deadline.max(Instant::now() + FINAL_EMF_MARGIN));
            if decision == FlushDecision::AtEndEmf {
                ctx.flusher.flush_as_emf(Trigger::End).await;
            } else {
                ctx.flusher.flush(Trigger::End, budget).await;
            }
        }
    }
}

/// Says once per sandbox, at `warn` (shown with the default `PERFMON_LOG`), that a sparse invoke ran
/// without the Runtime API proxy under `PERFMON_SPARSE_FLUSH=auto`, with what it cost here: the wait
/// for the Telemetry API's `platform.runtimeDone` (buffered for at least 25 ms,
/// <https://docs.aws.amazon.com/lambda/latest/dg/telemetry-api.html>), which the wrapper removes.
fn tell_unwrapped_once(ctx: &Context, waited: Duration) {
    {
        let mut g = ctx.shared.lock();
        if g.unwrapped_notice_given {
            return;
        }
        g.unwrapped_notice_given = true;
    }
    let proxy = match &ctx.proxy {
        Some(_) => "perfmon's Runtime API proxy is listening but the runtime does not go through it",
        None => "perfmon's Runtime API proxy is off (PERFMON_RUNTIME_PROXY_PORT=0) or could not bind its port",
    };
    tracing::warn!(
        waited_ms = waited.as_millis() as u64,
        "sparse invoke without /opt/perfmon-wrapper: this one waited {} ms for the Telemetry API's \
         platform.runtimeDone before perfmon could write its metrics (as EMF) and let the sandbox freeze; \
         set AWS_LAMBDA_EXEC_WRAPPER=/opt/perfmon-wrapper on the function (on provided.al2023, run the \
         binary through it in bootstrap: exec /opt/perfmon-wrapper \"$LAMBDA_TASK_ROOT/my-function\") to bring a sparse invoke \
         to a do-nothing extension's cost ({proxy}; /v1/health runtime_proxy.in_use)",
        waited.as_millis()
    );
}

/// SnapStart (docs/reference.md §8): Lambda resumes every environment of a version from one snapshot taken
/// after the publish-time Init, perfmon's memory included, and an extension's first INVOKE is the
/// first call it gets after a restore (a restore record of the Telemetry API may come before it and
/// mark the restore first). Once per process: drop (and count in `/v1/health`
/// `snap_start`) what was held at the snapshot, and start the CloudWatch client afresh. perfmon
/// keeps no ids or random state of its own; /proc deltas are per invoke, from baselines taken at
/// each INVOKE, so they start at the restore.
/// The held data may already have been dropped by a restore record of the Telemetry API that came
/// first ([`crate::state::Shared::on_telemetry`]); the sinks are started afresh here either way.
fn after_restore(ctx: &Context) {
    let first = match ctx.shared.lock().snap_start.as_mut() {
        Some(ss) if !ss.sinks_restarted => {
            ss.sinks_restarted = true;
            true
        }
        _ => false,
    };
    if !first {
        return;
    }
    ctx.shared.on_restore();
    ctx.flusher.after_restore();
}

/// Handles SHUTDOWN: see the module documentation for the order.
pub async fn on_shutdown(ctx: Context, sd: ShutdownEvent) {
    let started = Instant::now();
    let deadline = instant_at(sd.deadline_ms as i64);
    let invoke_events = {
        let mut g = ctx.shared.lock();
        g.phase = Phase::ShuttingDown;
        g.invoke_events
    };
    // The last invoke's (or window's) usage ends here.
    if let Some(sampler) = &ctx.system {
        sampler.shutdown(invoke_events).await;
    }
    let flush_deadline = deadline.checked_sub(FINAL_EMF_MARGIN).unwrap_or(started).max(started);
    // 1. The last reports usually arrive within tens of ms.
    let left = flush_deadline.saturating_duration_since(started);
    let report_wait = REPORT_WAIT.min(left / 4);
    let all_reported = if ctx.telemetry {
        wait_for(&ctx.shared, started + report_wait, |s| s.lock().platform.awaiting_report() == 0).await
    } else {
        true
    };
    let waited_ms = started.elapsed().as_millis() as u64;
    ctx.shared.finish_pending(now_ms());
    // 2. A background flush still running must end before the final one.
    ctx.flusher.cut_off_at(flush_deadline);
    if !ctx.flusher.idle(flush_deadline).await {
        tracing::warn!("a flush was still running at the SHUTDOWN deadline");
    }
    // 3. Final flush, with the StatsD datagrams still queued.
    if let Some(ingest) = &ctx.ingest {
        ingest.drain_statsd();
    }
    let report = ctx.flusher.flush(Trigger::Final, flush_deadline).await;
    if let Some(proxy) = &ctx.proxy {
        proxy.remove_marker();
    }
    if let Some(ingest) = &ctx.ingest {
        ingest.remove_statsd_socket();
    }
    let health = ctx.shared.health();
    tracing::info!(
        reason = sd.shutdown_reason.as_str(),
        all_reported,
        report_wait_ms = waited_ms,
        datums = report.datums,
        cloudwatch_sent = report.cloudwatch_sent,
        emf = report.emf_written,
        cloudwatch_unknown_outcome = health.sinks.cloudwatch_datums_unknown_outcome,
        cloudwatch_unknown_outcome_events = health.sinks.cloudwatch_unknown_outcome_events,
        dropped = health.samples_dropped.values().sum::<u64>(),
        telemetry_skipped = health.telemetry.skipped.values().sum::<u64>(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        runtime_proxy_in_use = health.runtime_proxy.as_ref().is_some_and(|p| p.in_use),
        runtime_proxy_forwarded = health.runtime_proxy.as_ref().map_or(0, |p| p.forwarded),
        runtime_proxy_upstream_errors = health.runtime_proxy.as_ref().map_or(0, |p| p.upstream_errors),
        cloudwatch_requests_failed = health.sinks.cloudwatch_requests_failed,
        snap_start_samples_dropped_at_restore = health.snap_start.as_ref().map_or(0, |s| s.samples_dropped_at_restore),
        snap_start_emf_datums_before_restore = health.snap_start.as_ref().map_or(0, |s| s.emf_datums_before_restore),
        "shutdown flush done"
    );
}

#[cfg(test)]
mod tests {
    /// Size of the future an async fn returns, from the fn item alone (nothing is called).
    fn future_size<A, B, R>(_: fn(A, B) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// The event handlers' futures stay small: the PutMetricData future is boxed inside the flush.
    /// Each of these is made in `run`'s poll frame before it is spawned, so their size is stack the
    /// main thread touches (and keeps resident): about 13 kB each with the request inline took that
    /// frame to 112 kB (docs/benchmarks.md, "Memory, after").
    #[test]
    fn handler_futures_do_not_carry_the_cloudwatch_request() {
        for (name, size) in [
            ("on_invoke", future_size(super::on_invoke as fn(_, _) -> _)),
            ("on_shutdown", future_size(super::on_shutdown as fn(_, _) -> _)),
            ("run", future_size(super::run as fn(_, _) -> _)),
        ] {
            assert!(size <= 4096, "{name}'s future is {size} bytes");
        }
    }
}
