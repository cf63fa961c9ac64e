//! Managed Instances invokes (`lambda-managed-instances`): up to K invokes in flight at once over
//! the runtime's `max_concurrency` worker processes, no INVOKE to extensions, no freeze, and per
//! invoke only `platform.start` and a 2025-01-29 `platform.report` (no `platform.runtimeDone`).
//! A timed-out invoke gets its report (status `timeout`) but does not reset the environment: its
//! worker keeps running the handler, and a late `/response` is refused as an unknown request id.
//! A process that dies (runtime worker or extension) ends the environment: every invoke in flight
//! fails and the environment is reset, as on on-demand.

use std::sync::Arc;
use std::time::Instant;

use perfmon_protocol::extensions::ShutdownReason;
use perfmon_protocol::telemetry::{Record, Start, Status};

use crate::lifecycle::{
    failed_before_dispatch, first_invoke_delay, init, shutdown_sequence, trace_context, End, TIMEOUT_ERROR,
};
use crate::platform::emit_concurrent_report;
use crate::records::{InvokeOutcome, RuntimeDelivery};
use crate::state::{epoch_ms, ms_between, Inner, Invoke, Phase, Posted};

/// Runs `payloads` with at most `in_flight` at once (cold init first when needed); outcomes in the
/// order of `payloads`. `None` when the environment is shut down or busy.
pub(crate) async fn invoke_many(
    inner: &Arc<Inner>,
    payloads: Vec<Vec<u8>>,
    in_flight: usize,
) -> Option<Vec<InvokeOutcome>> {
    if !crate::lifecycle::admit(inner).await {
        return None;
    }
    let ran_init = inner.lock().phase == Phase::Uninit;
    if ran_init {
        let init = init(inner).await;
        if init.status != Status::Success {
            let out = payloads
                .iter()
                .map(|_| {
                    let id = uuid::Uuid::new_v4().to_string();
                    let status = init.status.clone();
                    failed_before_dispatch(id, status, init.error_type.clone(), Some(init.duration_ms), None)
                })
                .collect();
            return Some(out);
        }
    }
    first_invoke_delay(inner).await;
    inner.lock().phase = Phase::Invoking;
    let total = payloads.len();
    let mut outcomes: Vec<Option<InvokeOutcome>> = vec![None; total];
    let mut queue = payloads.into_iter().enumerate();
    let mut running = tokio::task::JoinSet::new();
    let limit = in_flight.max(1);
    loop {
        while running.len() < limit {
            let Some((i, payload)) = queue.next() else { break };
            let inner = inner.clone();
            running.spawn(async move { (i, one(&inner, payload).await) });
        }
        match running.join_next().await {
            Some(Ok((i, out))) => {
                if let Some(slot) = outcomes.get_mut(i) {
                    *slot = Some(out);
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "an invoke task ended abnormally"),
            None => break,
        }
    }
    let fatal = inner.lock().fatal.is_some();
    if fatal {
        tracing::info!("a process of the environment died: resetting it");
        shutdown_sequence(inner, ShutdownReason::Failure, false).await;
    } else {
        inner.lock().phase = Phase::Ready;
        inner.touch();
    }
    let mut out: Vec<InvokeOutcome> = outcomes.into_iter().flatten().collect();
    if let Some(first) = out.first_mut() {
        first.cold = ran_init;
    }
    if fatal {
        for o in out.iter_mut().filter(|o| o.status == Status::Failure || o.status == Status::Error) {
            o.reset = true;
        }
    }
    Some(out)
}

/// One invoke among many: `platform.start`, handed to a free worker, waited for by request id.
async fn one(inner: &Arc<Inner>, payload: Vec<u8>) -> InvokeOutcome {
    let cfg = &inner.cfg;
    let request_id = uuid::Uuid::new_v4().to_string();
    let dispatch_at = Instant::now();
    let deadline = dispatch_at + cfg.timeout;
    let deadline_ms = u64::try_from(epoch_ms()).unwrap_or(0) + cfg.timeout.as_millis() as u64;
    let tracing_ctx = cfg.tracing.then(trace_context);
    {
        let mut st = inner.lock();
        st.generation_invokes += 1;
        st.invokes_started += 1;
        st.concurrent.push(Invoke::new(request_id.clone(), dispatch_at, tracing_ctx.clone()));
        st.emit(Record::Start(Start {
            request_id: request_id.clone(),
            version: Some(cfg.function_version.clone()),
            tenant_id: None,
            function_arn: None,
            tracing: tracing_ctx.clone(),
        }));
        st.runtime.give(RuntimeDelivery {
            request_id: request_id.clone(),
            deadline_ms,
            trace_id: tracing_ctx.as_ref().map(|t| t.value.clone()),
            tenant_id: None,
            payload,
        });
    }
    inner.touch();
    let id = request_id.clone();
    let end = inner
        .wait_until(Some(deadline), |st| {
            if let Some(f) = &st.fatal {
                return Some(End::Fatal(f.error_type.clone()));
            }
            let inv = st.concurrent.iter().find(|i| i.request_id == id)?;
            match (&inv.posted, inv.response_end_at) {
                (Some(_), Some(at)) => Some(End::Done(at)),
                _ => None,
            }
        })
        .await
        .unwrap_or(End::Timeout);
    let mut st = inner.lock();
    let Some(pos) = st.concurrent.iter().position(|i| i.request_id == request_id) else {
        drop(st);
        return failed_before_dispatch(request_id, Status::Failure, Some("Sandbox.Lost".to_owned()), None, None);
    };
    let inv = st.concurrent.remove(pos);
    st.runtime.pending.retain(|d| d.request_id != request_id);
    let unanswered = inv.posted.is_none() && inv.delivered_at.is_some();
    let (status, error_type, end_at) = match end {
        End::Done(at) => match &inv.posted {
            Some(Posted::Error { error_type, .. }) => (Status::Error, Some(error_type.clone()), at),
            _ => (Status::Success, None, at),
        },
        End::Timeout => (Status::Timeout, Some(TIMEOUT_ERROR.to_owned()), deadline),
        End::Fatal(t) => {
            let status = if t.starts_with("Sandbox.") { Status::Failure } else { Status::Error };
            (status, Some(t), Instant::now())
        }
    };
    if unanswered {
        st.running = st.running.saturating_sub(1);
    }
    let duration_ms = emit_concurrent_report(&mut st, &inv, status.clone(), error_type.clone(), end_at);
    drop(st);
    inner.touch();
    let response = match inv.posted {
        Some(Posted::Response(b)) => b,
        Some(Posted::Error { body, .. }) => body,
        None => Vec::new(),
    };
    InvokeOutcome {
        request_id,
        status,
        error_type,
        response,
        duration_ms,
        runtime_duration_ms: inv.response_end_at.map(|e| crate::platform::round3(ms_between(inv.dispatch_at, e))),
        cold: false,
        init_duration_ms: None,
        reset: false,
        restore_duration_ms: None,
        tenant_id: None,
    }
}
