//! The sampler: every `/proc` read of the system metrics happens in this one task on perfmon's event
//! loop, which owns the [`Reader`]. The INVOKE handler only sends it a message; the task yields
//! until perfmon's next `/next` is written, so the INVOKE snapshot (tens of microseconds of reads)
//! is taken beside the function, as the peak samples are, and never before that call.
//!
//! It takes the INVOKE snapshot when told, then the peak samples of that invoke
//! ([`PEAK_INTERVALS_MS`]) until its `platform.runtimeDone` is in, the Runtime API proxy has seen
//! Lambda answer its response, or another invoke starts (a first sample that fires at a thaw is
//! not taken: [`FIRST_PEAK_LATE_MS`]); on
//! Managed Instances a sample every [`WINDOW_SAMPLE_MS`] and the window's end when the timer flush
//! asks. It stops at SHUTDOWN.
//!
//! Why not a thread of its own (as it was): a thread that sleeps is still woken when Lambda freezes
//! and thaws the sandbox (each freeze stops every thread; the local sandbox's SIGSTOP/SIGCONT and
//! the cgroup freezer alike), and each message or timer was a wake-up of a second thread. Measured
//! in docs/benchmarks.md ("CPU per invoke, second pass"): the thread took 2.4 context switches
//! per invoke, and a sampler on the event loop costs less CPU per invoke in every policy.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::read::{Depth, Paths, Reader};
use super::{FIRST_PEAK_LATE_MS, PEAK_INTERVALS_MS, WINDOW_SAMPLE_MS};
use crate::state::{now_ms, Phase, Shared};

/// Longest wait for the sampler's answer at a window end or SHUTDOWN.
pub const REPLY_WAIT: Duration = Duration::from_millis(200);

enum Msg {
    Invoke(String),
    WindowEnd(oneshot::Sender<()>),
    Shutdown { invoke_events: bool, reply: oneshot::Sender<()> },
}

/// Handle of the sampler task.
#[derive(Debug)]
pub struct Sampler {
    tx: mpsc::UnboundedSender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Invoke(_) => "Invoke",
            Msg::WindowEnd(_) => "WindowEnd",
            Msg::Shutdown { .. } => "Shutdown",
        })
    }
}

impl Sampler {
    /// Starts the task (on the current tokio runtime); `windows`: sample every
    /// [`WINDOW_SAMPLE_MS`] (no INVOKE events).
    pub fn start(shared: Arc<Shared>, paths: Paths, windows: bool) -> Sampler {
        let (tx, rx) = mpsc::unbounded_channel();
        crate::spawn_logged("system-sampler", run(rx, shared, paths, windows));
        Sampler { tx }
    }

    /// INVOKE for `request_id` arrived (returns at once).
    pub fn on_invoke(&self, request_id: &str) {
        let _ = self.tx.send(Msg::Invoke(request_id.to_owned()));
    }

    /// Managed Instances: closes the flush window (waits at most [`REPLY_WAIT`]).
    pub async fn window_end(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::WindowEnd(reply)).is_ok() {
            let _ = tokio::time::timeout(REPLY_WAIT, rx).await;
        }
    }

    /// SHUTDOWN: closes the last invoke (or window) and stops the task.
    pub async fn shutdown(&self, invoke_events: bool) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown { invoke_events, reply }).is_ok() {
            let _ = tokio::time::timeout(REPLY_WAIT, rx).await;
        }
    }
}

/// The invoke the peak samples are for, and when the next one is due.
struct Peak {
    request_id: String,
    due: Instant,
    index: usize,
    /// A sample of this invoke has looked for processes the function started.
    walked: bool,
}

/// What a due peak timer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeakStep {
    /// Sample, and schedule the next one.
    Sample,
    /// Schedule the next one without sampling ([`FIRST_PEAK_LATE_MS`]).
    Skip,
    /// The invoke is over: no more samples.
    Stop,
}

/// `running`: the invoke is still the one measured, not shutting down, and neither its
/// `platform.runtimeDone` nor (with the Runtime API proxy) Lambda's answer to its response is in.
fn peak_step(running: bool, index: usize, due: Instant, now: Instant) -> PeakStep {
    if !running {
        PeakStep::Stop
    } else if index == 0 && now.saturating_duration_since(due) > Duration::from_millis(FIRST_PEAK_LATE_MS) {
        PeakStep::Skip
    } else {
        PeakStep::Sample
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<Msg>, shared: Arc<Shared>, paths: Paths, windows: bool) {
    let mut reader = Reader::new(paths, std::process::id());
    // The reader was made during perfmon's Init, before Lambda started the runtime: the first
    // INVOKE walks the whole tree again.
    let mut walked_since_init = false;
    let mut peak: Option<Peak> = None;
    let window_period = Duration::from_millis(WINDOW_SAMPLE_MS);
    let mut next_window = windows.then(|| Instant::now() + window_period);
    if windows {
        // Managed Instances: the first window opens now, so the CPU of invokes that run before the
        // first periodic sample (or flush) is counted.
        let snap = snapshot(&mut reader, Depth::Environment, Walk::Whole);
        shared.on_system_window(snap, false, reader.unreadable());
    }
    loop {
        let due = match (peak.as_ref().map(|p| p.due), next_window) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // `None`: a sample is due.
        let msg = match due {
            Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok(),
            None => Some(rx.recv().await),
        };
        match msg {
            Some(Some(Msg::Invoke(id))) => {
                // The INVOKE handler sent this, and its end lets perfmon's main loop call `/next`;
                // the call is written by the Extensions API connection's task, which is woken after
                // this one. Going to the back of the queue twice (once for the main loop, once for
                // that task) puts the snapshot after the write, so it never delays perfmon's
                // `/next` (when it ran first, the bench's overhead p99 without flush was +0.14 ms over
                // the floor in the worst case, against +0.05 with a sampler thread).
                for _ in 0..2 {
                    tokio::task::yield_now().await;
                }
                let walk = if walked_since_init { Walk::IfNone } else { Walk::Whole };
                walked_since_init = true;
                let snap = snapshot(&mut reader, Depth::Full, walk);
                shared.on_system_invoke(&id, snap, reader.unreadable());
                peak = Some(Peak {
                    request_id: id,
                    due: Instant::now() + Duration::from_millis(PEAK_INTERVALS_MS[0]),
                    index: 0,
                    walked: false,
                });
            }
            Some(Some(Msg::WindowEnd(reply))) => {
                let snap = snapshot(&mut reader, Depth::Environment, Walk::Whole);
                shared.on_system_window(snap, true, reader.unreadable());
                let _ = reply.send(());
            }
            Some(Some(Msg::Shutdown { invoke_events, reply })) => {
                if invoke_events {
                    let snap = snapshot(&mut reader, Depth::Full, Walk::IfNone);
                    shared.on_system_shutdown(&snap);
                } else {
                    let snap = snapshot(&mut reader, Depth::Environment, Walk::Whole);
                    shared.on_system_window(snap, true, reader.unreadable());
                }
                let _ = reply.send(());
                return;
            }
            Some(None) => return,
            None => {
                let now = Instant::now();
                if let Some(p) = peak.as_mut().filter(|p| p.due <= now) {
                    let running = {
                        let g = shared.lock();
                        g.phase != Phase::ShuttingDown
                            && g.system.current() == Some(p.request_id.as_str())
                            && !g.platform.runtime_done_seen(&p.request_id)
                    } && !shared.runtime_answered(&p.request_id);
                    match peak_step(running, p.index, p.due, now) {
                        PeakStep::Stop => peak = None,
                        step => {
                            if step == PeakStep::Sample {
                                // The invoke's first sample also looks for processes the function started.
                                let walk = if p.walked { Walk::IfNone } else { Walk::Subtrees };
                                let snap = snapshot(&mut reader, Depth::Levels, walk);
                                shared.on_system_peak(&p.request_id, &snap);
                                p.walked = true;
                            }
                            p.index += 1;
                            let gap = PEAK_INTERVALS_MS[p.index.min(PEAK_INTERVALS_MS.len() - 1)];
                            p.due = Instant::now() + Duration::from_millis(gap);
                        }
                    }
                }
                if let Some(w) = next_window.filter(|w| *w <= now) {
                    let snap = snapshot(&mut reader, Depth::Environment, Walk::Whole);
                    shared.on_system_window(snap, false, reader.unreadable());
                    next_window = Some((w + window_period).max(Instant::now()));
                }
            }
        }
    }
}

/// Which walk of the process tree comes before a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// The whole tree (the parent's threads too): the runtime has started since the last one. On
    /// Managed Instances every sample (once a second): no INVOKE tells when the runtime's workers
    /// have all started.
    Whole,
    /// Below the processes already found (new processes of the function's own).
    Subtrees,
    /// Only when no process was found yet.
    IfNone,
}

fn snapshot(reader: &mut Reader, depth: Depth, walk: Walk) -> super::Snapshot {
    match walk {
        Walk::Whole => reader.refresh_processes(),
        Walk::Subtrees => reader.refresh_subtrees(),
        Walk::IfNone if reader.processes().is_empty() => reader.refresh_processes(),
        Walk::IfNone => {}
    }
    reader.snapshot(now_ms(), depth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_sample_due_before_a_freeze_is_not_taken_at_the_thaw() {
        let due = Instant::now();
        let ms = |n| due + Duration::from_millis(n);
        assert_eq!(peak_step(true, 0, due, ms(1)), PeakStep::Sample, "on time");
        assert_eq!(peak_step(true, 0, due, ms(FIRST_PEAK_LATE_MS)), PeakStep::Sample, "late, within the slack");
        assert_eq!(peak_step(true, 0, due, ms(FIRST_PEAK_LATE_MS + 1)), PeakStep::Skip, "fired at a thaw");
        assert_eq!(peak_step(true, 1, due, ms(90)), PeakStep::Sample, "later samples are taken however late");
        assert_eq!(peak_step(false, 0, due, ms(0)), PeakStep::Stop, "the invoke is over");
        assert_eq!(peak_step(false, 3, due, ms(500)), PeakStep::Stop);
    }
}
