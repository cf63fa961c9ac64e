//! The extension's life: Init (register, bind, subscribe), the INVOKE loop, SHUTDOWN.
//!
//! Init does only what cannot wait: register for INVOKE and SHUTDOWN, bind the telemetry listener,
//! subscribe. Nothing builds the CloudWatch client or TLS before the first flush needs them.
//!
//! On INVOKE the flush decision ([`crate::flush::decide`]) says:
//! * `Background`: spawn a flush now and go straight back to `/next`: it overlaps the function;
//! * `AtEnd`: wait for this invoke's `platform.runtimeDone` (bounded by the invoke's deadline),
//!   flush, then `/next` (never wait for `platform.report`: it only exists after our `/next`);
//! * `Skip`: straight back to `/next`.
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
use perfmon_protocol::extensions::{InvokeEvent, NextEvent, ShutdownEvent};
use tokio::time::Instant;

use crate::aggregate::Limits;
use crate::config::{Config, ConfigWarning, FlushPolicy};
use crate::flush::{decide, FlushDecision, FlushEvent};
use crate::lambda_api::ExtensionsApi;
use crate::sinks::{Flusher, Trigger, FINAL_EMF_MARGIN, FLUSH_BUDGET};
use crate::state::{now_ms, Phase, Shared};

/// Longest wait at SHUTDOWN for the last invokes' `platform.report`.
pub const REPORT_WAIT: Duration = Duration::from_millis(300);
/// Registration attempts before giving up (the only case in which perfmon exits before SHUTDOWN:
/// without registration there is no SHUTDOWN to wait for).
pub const REGISTER_ATTEMPTS: u32 = 5;

/// Everything an event handler needs.
#[derive(Debug, Clone)]
pub struct Context {
    pub policy: FlushPolicy,
    pub interval_ms: i64,
    pub shared: Arc<Shared>,
    pub flusher: Arc<Flusher>,
    /// Telemetry arrives (listener bound and subscription accepted): `AtEnd` may wait for it.
    pub telemetry: bool,
    /// The custom-metric listeners: StatsD datagrams still queued are drained before the
    /// end-of-invoke and final flushes (`None` in tests without listeners).
    pub ingest: Option<Arc<crate::ingest::Ingest>>,
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
    let name = extension_name();
    let mut api = ExtensionsApi::new(&addr);
    let mut attempt = 0;
    let registered = loop {
        attempt += 1;
        match api.register(&name).await {
            Ok(r) => break r,
            Err(e) if e.is_transient() && attempt < REGISTER_ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "register failed; retrying");
                tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, name, "cannot register with the Extensions API");
                return 1;
            }
        }
    };
    let shared = Arc::new(Shared::new(
        &cfg,
        Some(&registered.function_name),
        Limits { max_series_per_metric: cfg.max_series_per_metric, ..Limits::default() },
        now_ms(),
    ));

    let telemetry = match crate::telemetry::bind(cfg.telemetry_port).await {
        Ok(listener) => {
            let port = listener.local_addr().map(|a| a.port()).unwrap_or(cfg.telemetry_port);
            crate::telemetry::serve(listener, Arc::clone(&shared));
            match api.subscribe_telemetry(port, defaults::TELEMETRY_TIMEOUT_MS).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(error = %e, "Telemetry API subscription failed: no platform metrics");
                    false
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot bind the telemetry listener: no platform metrics");
            false
        }
    };
    let ingest = Arc::new(ingest.serve(Arc::clone(&shared) as Arc<dyn crate::ingest::SampleSink>));

    let flusher = Arc::new(Flusher::new(cfg.sink, &cfg.namespace, Arc::clone(&shared)));
    let ctx = Context {
        policy: cfg.flush,
        interval_ms: cfg.flush_interval.as_millis() as i64,
        shared,
        flusher,
        telemetry,
        ingest: Some(ingest),
    };
    tracing::debug!(function = %registered.function_name, ?cfg.sink, ?cfg.flush, "registered");

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
    let now = now_ms();
    ctx.shared.on_invoke(&inv.request_id, now);
    let decision = {
        let mut g = ctx.shared.lock();
        let d = decide(ctx.policy, ctx.interval_ms, &g.flush, FlushEvent::Invoke, now);
        g.flush.last_invoke_ms = Some(now);
        d
    };
    if ctx.policy != FlushPolicy::Shutdown {
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
        FlushDecision::AtEnd => {
            let invoke_deadline = instant_at(inv.deadline_ms as i64);
            if ctx.telemetry {
                let id = inv.request_id.clone();
                let seen =
                    wait_for(&ctx.shared, invoke_deadline, move |s| s.lock().platform.runtime_done_seen(&id)).await;
                if !seen {
                    tracing::debug!(request_id = %inv.request_id, "no platform.runtimeDone before the invoke deadline");
                }
            }
            // StatsD lines the function sent just before returning go out with this invoke.
            if let Some(ingest) = &ctx.ingest {
                ingest.drain_statsd();
            }
            let budget = (Instant::now() + FLUSH_BUDGET).min(invoke_deadline.max(Instant::now() + FINAL_EMF_MARGIN));
            ctx.flusher.flush(Trigger::End, budget).await;
        }
    }
}

/// Handles SHUTDOWN: see the module documentation for the order.
pub async fn on_shutdown(ctx: Context, sd: ShutdownEvent) {
    let started = Instant::now();
    let deadline = instant_at(sd.deadline_ms as i64);
    ctx.shared.lock().phase = Phase::ShuttingDown;
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
    let health = ctx.shared.health();
    tracing::info!(
        reason = sd.shutdown_reason.as_str(),
        all_reported,
        report_wait_ms = waited_ms,
        datums = report.datums,
        cloudwatch_sent = report.cloudwatch_sent,
        emf = report.emf_written,
        dropped = health.samples_dropped.values().sum::<u64>(),
        telemetry_skipped = health.telemetry.skipped.values().sum::<u64>(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "shutdown flush done"
    );
}
