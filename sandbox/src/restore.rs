//! SnapStart restore (`snap-start`): the freeze at the end of Init stands for the snapshot; before
//! the first invoke of the environment the sandbox "restores" it: thaw, `platform.restoreStart`,
//! the runtime's after-restore hooks (a runtime waiting in `/runtime/restore/next`, as awslambdaric
//! does, is released and the restore lasts until its next `/runtime/invocation/next`; a runtime
//! without hooks, as `lambda_runtime`, is already waiting there), then `platform.restoreRuntimeDone`
//! and `platform.restoreReport` with `metrics.durationMs`. Shapes: telemetry-schema-reference.

use std::sync::Arc;
use std::time::Instant;

use perfmon_protocol::telemetry::{DurationMetrics, Record, RestoreReport, RestoreRuntimeDone, RestoreStart, Status};

use crate::lifecycle::thaw;
use crate::mode::Mode;
use crate::platform::round3;
use crate::state::{ms_between, Inner};

/// errorType of a restore failed on purpose (`Mode::SnapStart { restore_fails: true }`).
pub(crate) const FORCED_RESTORE_ERROR: &str = "Runtime.RestoreError";
/// errorType of a restore whose hooks did not finish within the init timeout.
pub(crate) const RESTORE_TIMEOUT_ERROR: &str = "Runtime.RestoreTimeout";

enum Outcome {
    Done,
    HookError(String),
    Fatal(String),
}

/// Runs the restore; `Ok(restoreDurationMs)` or `Err(errorType)` (the caller resets the environment).
pub(crate) async fn restore(inner: &Arc<Inner>) -> Result<f64, String> {
    let cfg = &inner.cfg;
    let Mode::SnapStart { restore_fails } = cfg.mode else { return Ok(0.0) };
    let start = Instant::now();
    let deadline = start + cfg.init_timeout;
    let forced = {
        let mut st = inner.lock();
        st.restore_pending = false;
        let first = st.restores == 0;
        st.restores += 1;
        thaw(&mut st);
        st.emit(Record::RestoreStart(RestoreStart {
            function_name: Some(cfg.function_name.clone()),
            function_version: Some(cfg.function_version.clone()),
            instance_id: Some(uuid::Uuid::new_v4().to_string()),
            instance_max_memory: Some(cfg.memory_mb),
            runtime_version: None,
            runtime_version_arn: None,
        }));
        let forced = restore_fails && first;
        if !forced {
            if let Some(tx) = st.runtime.restore_parked.take() {
                let _ = tx.send(());
            }
        }
        forced
    };
    inner.touch();
    let outcome = if forced {
        Some(Outcome::HookError(FORCED_RESTORE_ERROR.to_owned()))
    } else {
        inner
            .wait_until(Some(deadline), |st| {
                if let Some(f) = &st.fatal {
                    return Some(Outcome::Fatal(f.error_type.clone()));
                }
                if let Some(t) = &st.runtime.restore_error {
                    return Some(Outcome::HookError(t.clone()));
                }
                (st.runtime.is_parked() && !st.runtime.restore_waiting()).then_some(Outcome::Done)
            })
            .await
    };
    let duration_ms = round3(ms_between(start, Instant::now()));
    let (status, error_type) = match outcome {
        Some(Outcome::Done) => (Status::Success, None),
        Some(Outcome::HookError(t)) | Some(Outcome::Fatal(t)) => (Status::Failure, Some(t)),
        None => (Status::Timeout, Some(RESTORE_TIMEOUT_ERROR.to_owned())),
    };
    {
        let mut st = inner.lock();
        st.emit(Record::RestoreRuntimeDone(RestoreRuntimeDone {
            status: status.clone(),
            error_type: error_type.clone(),
            spans: Vec::new(),
        }));
        st.emit(Record::RestoreReport(RestoreReport {
            status: status.clone(),
            error_type: error_type.clone(),
            metrics: Some(DurationMetrics { duration_ms }),
            spans: Vec::new(),
        }));
    }
    inner.touch();
    match error_type {
        None => Ok(duration_ms),
        Some(t) => Err(t),
    }
}
