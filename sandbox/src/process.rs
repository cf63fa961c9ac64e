//! Processes of the sandbox: spawned as their own process-group leaders with a clean environment,
//! stdout/stderr captured line by line (into the logs and, as `function`/`extension` records, to
//! telemetry subscribers), reaped by `wait4` in a watcher thread for the exit status.
//! A process that ends while the environment is not shutting down is a fatal error (docs/reference.md §16.1.10).
//!
//! Peak RSS is the highest `VmHWM` sampled from `/proc/<pid>/status` while the process lives: at
//! each API call it makes (register, `/next`, errors), when SHUTDOWN is released, and every
//! [`PEAK_POLL_INTERVAL`] during the shutdown window ([`poll_peaks`]) so the final flush is seen.
//! `ru_maxrss` is not used for it: on Linux exec folds the pre-exec address space's high-water mark
//! (the sandbox's own RSS, through fork/vfork) into it, which over-reports small processes.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use perfmon_protocol::extensions::error_type;
use perfmon_protocol::telemetry::Record;

use crate::records::LogLine;
use crate::state::{Exit, Fatal, Inner, Phase, Proc, Role};
use crate::sys;

/// What to start.
pub(crate) struct Spawn<'a> {
    pub role: Role,
    pub program: &'a Path,
    pub args: &'a [String],
    pub cwd: Option<&'a Path>,
    pub env: &'a [(String, String)],
}

/// Starts a process of the current generation; returns its index in `State::procs`.
pub(crate) fn spawn(inner: &Arc<Inner>, s: Spawn<'_>) -> std::io::Result<usize> {
    // Inside the environment's cgroup and `/tmp` namespace when the resource model applies.
    let spawner = inner.lock().env_res.spawn_handle();
    let mut cmd = Command::new(s.program);
    cmd.args(s.args).env_clear().envs(s.env.iter().map(|(k, v)| (k, v)));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    if let Some(dir) = s.cwd {
        cmd.current_dir(dir);
    }
    let spawned_at = Instant::now();
    let mut child = spawner.spawn(cmd)?;
    let pid = i32::try_from(child.id()).unwrap_or(0);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let idx = {
        let mut st = inner.lock();
        let generation = st.generation;
        st.procs.push(Proc {
            generation,
            role: s.role.clone(),
            pid,
            spawned_at,
            exit: None,
            killed: false,
            streams_open: 2,
            peak_hwm_kb: None,
        });
        st.procs.len() - 1
    };
    // `child` is dropped without waiting: the watcher below reaps it with wait4.
    drop(child);
    if let Some(out) = stdout {
        read_lines(inner.clone(), idx, "stdout", out);
    }
    if let Some(err) = stderr {
        read_lines(inner.clone(), idx, "stderr", err);
    }
    let watcher = inner.clone();
    std::thread::Builder::new().name(format!("reap-{pid}")).spawn(move || reap(&watcher, idx, pid))?;
    Ok(idx)
}

fn read_lines(inner: Arc<Inner>, idx: usize, stream: &'static str, pipe: impl Read + Send + 'static) {
    let _ = std::thread::Builder::new().name(format!("{stream}-{idx}")).spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_owned();
                    record_line(&inner, idx, stream, line);
                }
            }
        }
        let mut st = inner.lock();
        if let Some(p) = st.procs.get_mut(idx) {
            p.streams_open = p.streams_open.saturating_sub(1);
        }
        drop(st);
        inner.touch();
    });
}

fn record_line(inner: &Inner, idx: usize, stream: &'static str, line: String) {
    let mut st = inner.lock();
    let Some(p) = st.procs.get(idx) else { return };
    let (role, generation) = (p.role.clone(), p.generation);
    st.logs.push(LogLine { source: role.source(), stream, line: line.clone(), generation });
    if generation == st.generation {
        let record = match role {
            Role::Runtime => Record::FunctionLog(serde_json::Value::String(line)),
            Role::Extension(_) => Record::ExtensionLog(serde_json::Value::String(line)),
        };
        st.emit(record);
    }
    drop(st);
    inner.touch();
}

fn reap(inner: &Inner, idx: usize, pid: i32) {
    let reaped = sys::wait4(pid);
    let mut st = inner.lock();
    let oom = {
        let Some(p) = st.procs.get(idx) else { return };
        let r = reaped.as_ref();
        // Killed by SIGKILL, not by the sandbox, with the environment's OOM count up: the kernel's
        // OOM killer ended it at the memory limit.
        r.is_some_and(|r| r.signal == Some(libc::SIGKILL)) && !p.killed && st.env_res.oom_killed()
    };
    if oom {
        st.oom_killed = true;
    }
    let fatal_type = {
        let Some(p) = st.procs.get_mut(idx) else { return };
        let r = reaped.unwrap_or(sys::Reaped { code: None, signal: None, ru_maxrss_kb: 0 });
        p.exit = Some(Exit { code: r.code, signal: r.signal, ru_maxrss_kb: r.ru_maxrss_kb, at: Instant::now() });
        tracing::debug!(pid, role = ?p.role, code = ?r.code, signal = ?r.signal, "process exited");
        match &p.role {
            // Lambda's errorType for a function that ran out of memory (it covers the whole
            // environment's memory, extensions included).
            _ if oom => "Runtime.OutOfMemory",
            Role::Runtime => "Runtime.ExitError",
            Role::Extension(_) => error_type::CRASH,
        }
    };
    let generation = st.procs.get(idx).map(|p| p.generation);
    if generation == Some(st.generation) && matches!(st.phase, Phase::Init | Phase::Ready | Phase::Invoking) {
        st.fatal.get_or_insert(Fatal { error_type: fatal_type.to_owned() });
    }
    drop(st);
    inner.touch();
}

/// The `VmHWM` field (peak RSS, KiB) of `/proc/<pid>/status` content; `None` when absent (a zombie
/// or a kernel thread has no address space) or malformed.
pub(crate) fn parse_vm_hwm_kb(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// `VmHWM` (peak RSS) of a live process in KiB, from `/proc/<pid>/status`.
pub(crate) fn vm_hwm_kb(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    parse_vm_hwm_kb(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// How often [`poll_peaks`] samples `VmHWM` during a shutdown window.
pub(crate) const PEAK_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Samples `VmHWM` of the processes `idxs` (the live ones) and folds it into their recorded peaks.
/// `/proc` is read outside the lock.
pub(crate) fn sample_peaks(inner: &Inner, idxs: &[usize]) {
    let pids: Vec<(usize, i32)> = {
        let st = inner.lock();
        idxs.iter().filter_map(|&i| st.procs.get(i).filter(|p| p.alive()).map(|p| (i, p.pid))).collect()
    };
    record_samples(inner, &pids);
}

/// [`sample_peaks`] for one process, when known (an extension may call before `spawn` returned).
pub(crate) fn sample_peak(inner: &Inner, idx: Option<usize>) {
    if let Some(i) = idx {
        sample_peaks(inner, &[i]);
    }
}

fn record_samples(inner: &Inner, pids: &[(usize, i32)]) {
    let samples: Vec<(usize, u64)> = pids.iter().filter_map(|&(i, pid)| Some((i, vm_hwm_kb(pid)?))).collect();
    if samples.is_empty() {
        return;
    }
    let mut st = inner.lock();
    for (i, kb) in samples {
        // Kept even if the process was reaped meanwhile: the value was read before it ended.
        if let Some(p) = st.procs.get_mut(i) {
            p.note_hwm(kb);
        }
    }
}

/// Samples `VmHWM` of every live, thawed process of generation `generation` every
/// [`PEAK_POLL_INTERVAL`], until aborted (run during the shutdown window, where the extensions'
/// final flush happens between their last API call and their exit).
pub(crate) async fn poll_peaks(inner: Arc<Inner>, generation: u32) {
    let mut tick = tokio::time::interval(PEAK_POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let pids: Vec<(usize, i32)> = {
            let st = inner.lock();
            if st.frozen {
                continue;
            }
            let live = st.procs.iter().enumerate().filter(|(_, p)| p.generation == generation && p.alive());
            live.map(|(i, p)| (i, p.pid)).collect()
        };
        record_samples(&inner, &pids);
    }
}

/// Peak RSS of a process record: the highest `VmHWM` sampled, and the live `VmHWM` while it runs.
pub(crate) fn peak_rss_kb(p: &Proc) -> Option<u64> {
    let live = if p.alive() { vm_hwm_kb(p.pid) } else { None };
    p.peak_hwm_kb.max(live)
}

/// `ru_maxrss` of a reaped process (includes the sandbox's pre-exec RSS: see the module docs).
pub(crate) fn ru_maxrss_kb(p: &Proc) -> Option<u64> {
    p.exit.as_ref().map(|e| e.ru_maxrss_kb).filter(|&k| k > 0)
}

/// The non-directory entries of an extensions directory, sorted by name.
pub(crate) fn list_extensions(dir: &Path) -> std::io::Result<Vec<(String, std::path::PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.is_dir() {
            continue;
        }
        out.push((entry.file_name().to_string_lossy().into_owned(), path));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_from_status() {
        let status = "Name:\tnoop-extension\nVmPeak:\t   12345 kB\nVmHWM:\t    4096 kB\nVmRSS:\t    3900 kB\n";
        assert_eq!(parse_vm_hwm_kb(status), Some(4096));
        // A zombie's status has no Vm* lines; garbage and a missing unit are refused.
        assert_eq!(parse_vm_hwm_kb("Name:\tz\nState:\tZ (zombie)\n"), None);
        assert_eq!(parse_vm_hwm_kb("VmHWM:\t    lots kB\n"), None);
        assert_eq!(parse_vm_hwm_kb("VmHWM:\t    4096\n"), None);
        assert_eq!(parse_vm_hwm_kb("VmHWMx:\t 1 kB\nVmHWM: 7 kB"), Some(7));
    }

    #[test]
    fn own_vm_hwm_is_readable() {
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        assert!(vm_hwm_kb(me).is_some_and(|k| k > 0));
        assert_eq!(vm_hwm_kb(0), None);
    }
}
