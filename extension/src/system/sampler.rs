//! The sampler thread: every `/proc` read of the system metrics happens here, on one thread of
//! its own, so that the INVOKE handler only sends a message and goes straight back to `/next`
//! (the read, tens of microseconds, runs beside the function instead of before perfmon's `/next`),
//! at a lower priority ([`SAMPLER_NICE`]).
//!
//! The thread owns the [`Reader`]. It takes the INVOKE snapshot when told, then the peak samples of
//! that invoke ([`PEAK_INTERVALS_MS`]) until its `platform.runtimeDone` is in or another invoke
//! starts; on Managed Instances a sample every [`WINDOW_SAMPLE_MS`] and the window's end when the
//! timer flush asks. It stops at SHUTDOWN. If the thread cannot be started, system metrics are off
//! (logged), nothing else changes.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::read::{Depth, Paths, Reader};
use super::{PEAK_INTERVALS_MS, WINDOW_SAMPLE_MS};
use crate::state::{now_ms, Phase, Shared};

/// Longest wait for the thread's answer at a window end or SHUTDOWN.
pub const REPLY_WAIT: Duration = Duration::from_millis(200);

enum Msg {
    Invoke(String),
    WindowEnd(oneshot::Sender<()>),
    Shutdown { invoke_events: bool, reply: oneshot::Sender<()> },
}

/// Handle of the sampler thread.
#[derive(Debug)]
pub struct Sampler {
    tx: mpsc::Sender<Msg>,
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
    /// Starts the thread; `windows`: sample every [`WINDOW_SAMPLE_MS`] (no INVOKE events).
    pub fn start(shared: Arc<Shared>, paths: Paths, windows: bool) -> Option<Sampler> {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("perfmon-system".into())
            .stack_size(64 << 10)
            .spawn(move || run(&rx, &shared, paths, windows));
        match spawned {
            Ok(_) => Some(Sampler { tx }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the system-metrics thread: no system metrics");
                None
            }
        }
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

    /// SHUTDOWN: closes the last invoke (or window) and stops the thread.
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
}

/// Nice value of the sampler thread: it wakes when INVOKE arrives, exactly when the runtime and
/// perfmon's own loop want a CPU, and must not preempt them (CFS favours a waking thread).
pub const SAMPLER_NICE: i32 = 10;

fn run(rx: &mpsc::Receiver<Msg>, shared: &Shared, paths: Paths, windows: bool) {
    // On Linux a thread id names one thread for setpriority(PRIO_PROCESS); failure costs nothing.
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), SAMPLER_NICE) {
        tracing::debug!(error = %e, "cannot lower the system-metrics thread's priority");
    }
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
        let msg = match due {
            Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match msg {
            Ok(Msg::Invoke(id)) => {
                let walk = if walked_since_init { Walk::IfNone } else { Walk::Whole };
                walked_since_init = true;
                let snap = snapshot(&mut reader, Depth::Full, walk);
                shared.on_system_invoke(&id, snap, reader.unreadable());
                peak = Some(Peak {
                    request_id: id,
                    due: Instant::now() + Duration::from_millis(PEAK_INTERVALS_MS[0]),
                    index: 0,
                });
            }
            Ok(Msg::WindowEnd(reply)) => {
                let snap = snapshot(&mut reader, Depth::Environment, Walk::Whole);
                shared.on_system_window(snap, true, reader.unreadable());
                let _ = reply.send(());
            }
            Ok(Msg::Shutdown { invoke_events, reply }) => {
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
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                if let Some(p) = peak.as_mut().filter(|p| p.due <= now) {
                    let running = {
                        let g = shared.lock();
                        g.phase != Phase::ShuttingDown
                            && g.system.current() == Some(p.request_id.as_str())
                            && !g.platform.runtime_done_seen(&p.request_id)
                    };
                    if running {
                        // The first peak sample also looks for processes the function started.
                        let walk = if p.index == 0 { Walk::Subtrees } else { Walk::IfNone };
                        let snap = snapshot(&mut reader, Depth::Levels, walk);
                        shared.on_system_peak(&p.request_id, &snap);
                        p.index += 1;
                        let gap = PEAK_INTERVALS_MS[p.index.min(PEAK_INTERVALS_MS.len() - 1)];
                        p.due = Instant::now() + Duration::from_millis(gap);
                    } else {
                        peak = None;
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
