//! The only `unsafe` of the sandbox: `wait4(2)` (exit status and `ru_maxrss` of a child) and `kill(2)`
//! on a child's process group (freeze, thaw, SIGTERM, SIGKILL).
#![allow(unsafe_code)]

/// How a child process ended, as `wait4` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reaped {
    /// Exit code when the process exited normally.
    pub code: Option<i32>,
    /// Signal number when the process was killed by a signal.
    pub signal: Option<i32>,
    /// `ru_maxrss` in KiB. On Linux exec folds the pre-exec address space's high-water mark (the
    /// forking sandbox's RSS) into it, so it over-reports small processes: not a peak RSS.
    pub ru_maxrss_kb: u64,
}

/// Blocks until the child `pid` terminates and returns its status and `ru_maxrss`.
/// Returns `None` if `pid` is not a child of this process (or was already reaped).
pub(crate) fn wait4(pid: i32) -> Option<Reaped> {
    let mut status: libc::c_int = 0;
    // SAFETY: all-zero is a valid `rusage` (a plain C struct of integers and timevals).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid, exclusively borrowed out-pointers for the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        if r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return None;
    }
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    Some(Reaped { code, signal, ru_maxrss_kb: u64::try_from(usage.ru_maxrss).unwrap_or(0) })
}

/// Signals a child's whole process group (children are spawned as group leaders). Errors
/// (group already gone) are ignored: the caller learns about exits from `wait4`.
pub(crate) fn signal_group(pgid: i32, signal: Signal) {
    if pgid <= 0 {
        return;
    }
    let sig = match signal {
        Signal::Stop => libc::SIGSTOP,
        Signal::Cont => libc::SIGCONT,
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
    };
    // SAFETY: `kill` has no memory-safety preconditions; a negative pid addresses the process group
    // `pgid`, which is one of our children (pgid > 0 checked above, so never 0 or -1 = "everyone").
    let _ = unsafe { libc::kill(-pgid, sig) };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Stop,
    Cont,
    Term,
    Kill,
}
