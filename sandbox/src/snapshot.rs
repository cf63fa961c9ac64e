//! SnapStart's hazard made visible: what an extension sent after a restore that it had recorded
//! before the snapshot. Lambda resumes every environment of a SnapStart version from one snapshot
//! ("Lambda SnapStart uses a single snapshot as the initial state for multiple execution
//! environments", AWS's SnapStart uniqueness guidance), so each of those would send it again.
//!
//! The sandbox cannot clone a process (a real multi-restore needs a process snapshot tool; CRIU does
//! not run on these machines): it restores the one environment it initialised. It approximates N
//! restores by counting what that single restored environment sends after its restore that was
//! recorded before the snapshot (a datum's `Timestamp` before the end of Init, or a request on a
//! connection opened before the snapshot): every further restored environment holds the same
//! memory and would send exactly that again.
//!
//! A datum's time is the extension's to choose (perfmon stamps each with the start of its 60 s
//! bucket), so a datum counts as recorded before the snapshot only when its whole period (60 s, or
//! 1 s with `StorageResolution` 1, CloudWatch's resolutions) ended before the restore: nothing runs
//! between the snapshot and the restore, and every sample of that period was recorded before it.
//! Datums whose period spans the restore are counted apart, undetermined. A restore in a later
//! minute than the snapshot (`--first-invoke-delay-ms 60000`, as a version restored minutes after
//! its publish) leaves none undetermined. Connections are exact.

use perfmon_protocol::telemetry::{Event, Record};

use crate::cloudwatch::CloudWatch;

/// What one restored environment repeated from before the snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Repeated {
    /// The end of the snapshotted Init (`platform.initReport`), epoch ms.
    pub snapshot_ms: Option<i64>,
    /// The restore (`platform.restoreStart`), epoch ms.
    pub restore_ms: Option<i64>,
    /// Datums that reached CloudWatch after the restore whose period ended before it: `(metric, count)`.
    pub datums: Vec<(String, usize)>,
    /// Datums that reached CloudWatch after the restore whose period spans it.
    pub undetermined: usize,
    /// Datums that reached CloudWatch before the snapshot (sent once, at publish).
    pub sent_before_snapshot: usize,
    /// PutMetricData requests after the restore on a connection from before the last snapshot.
    pub stale_connection_requests: usize,
    /// Connections open at the snapshot, closed by it.
    pub connections_cut: u64,
    /// Requests answered with an error after the restore.
    pub failed_after_restore: usize,
}

impl Repeated {
    /// The total of repeated datums.
    pub fn datum_count(&self) -> usize {
        self.datums.iter().map(|(_, n)| n).sum()
    }
}

/// Compares the sandbox's telemetry with what the embedded CloudWatch received.
pub fn repeated(events: &[Event], cw: &CloudWatch) -> Repeated {
    let restore_ms = events.iter().find(|e| matches!(e.record, Record::RestoreStart(_))).and_then(Event::time_ms);
    let snapshot_ms = events
        .iter()
        .filter(|e| matches!(e.record, Record::InitReport(_)))
        .filter_map(Event::time_ms)
        .filter(|t| restore_ms.is_none_or(|r| *t <= r))
        .max();
    let mut out =
        Repeated { snapshot_ms, restore_ms, connections_cut: cw.connections_cut_at_snapshot(), ..Default::default() };
    let (Some(snap), Some(restore)) = (snapshot_ms, restore_ms) else { return out };
    for d in cw.store().all_datums() {
        if d.arrival_ms < snap {
            out.sent_before_snapshot += 1;
        }
        if d.arrival_ms < restore {
            continue;
        }
        let period_ms = if d.datum.storage_resolution == Some(1) { 1_000 } else { 60_000 };
        let period_end = d.timestamp_ms() - d.timestamp_ms().rem_euclid(period_ms) + period_ms;
        if period_end > restore {
            if d.timestamp_ms() < restore {
                out.undetermined += 1;
            }
        } else {
            match out.datums.iter_mut().find(|(n, _)| *n == d.datum.metric_name) {
                Some((_, c)) => *c += 1,
                None => out.datums.push((d.datum.metric_name.clone(), 1)),
            }
        }
    }
    let epoch = cw.epoch();
    let log = cw.requests();
    let after: Vec<_> = log.records.iter().filter(|r| r.arrival_ms >= restore).collect();
    out.stale_connection_requests =
        after.iter().filter(|r| r.operation.as_deref() == Some("PutMetricData") && r.connection_epoch < epoch).count();
    out.failed_after_restore = after.iter().filter(|r| r.status >= 400).count();
    out
}
