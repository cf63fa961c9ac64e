//! Processes of the sandbox: spawned as their own process-group leaders with a clean environment,
//! stdout/stderr captured line by line (into the logs and, as `function`/`extension` records, to
//! telemetry subscribers), reaped by `wait4` in a watcher thread for the exit status and peak RSS.
//! A process that ends while the environment is not shutting down is a fatal error (§1.10).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

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
    let mut cmd = Command::new(s.program);
    cmd.args(s.args).env_clear().envs(s.env.iter().map(|(k, v)| (k, v)));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    if let Some(dir) = s.cwd {
        cmd.current_dir(dir);
    }
    let spawned_at = Instant::now();
    let mut child = cmd.spawn()?;
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
    let fatal_type = {
        let Some(p) = st.procs.get_mut(idx) else { return };
        let r = reaped.unwrap_or(sys::Reaped { code: None, signal: None, max_rss_kb: 0 });
        p.exit = Some(Exit { code: r.code, signal: r.signal, max_rss_kb: r.max_rss_kb, at: Instant::now() });
        tracing::debug!(pid, role = ?p.role, code = ?r.code, signal = ?r.signal, "process exited");
        match &p.role {
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

/// `VmHWM` (peak RSS) of a live process in KiB, from `/proc/<pid>/status`.
pub(crate) fn vm_hwm_kb(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Peak RSS of a process record: `ru_maxrss` once reaped, else the live `VmHWM`.
pub(crate) fn peak_rss_kb(p: &Proc) -> Option<u64> {
    match &p.exit {
        Some(e) if e.max_rss_kb > 0 => Some(e.max_rss_kb),
        Some(_) => None,
        None => vm_hwm_kb(p.pid),
    }
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
