//! The only `unsafe` of the sandbox: `wait4(2)` (exit status and `ru_maxrss` of a child), `kill(2)`
//! on a child's process group (freeze, thaw, SIGTERM, SIGKILL), and what puts an environment's
//! processes into its resources: `gettid(2)`, `unshare(2)` + `setns(2)` of a thread into a mount
//! namespace, and a `write(2)` in a forked child before it execs.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;

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

/// The calling thread's id (what a cgroup v1 `tasks` file takes).
pub(crate) fn gettid() -> i32 {
    // SAFETY: `gettid` has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// Moves the calling thread into the mount namespace `ns` (an open `/proc/<pid>/ns/mnt`). A thread
/// shares its filesystem attributes (root, cwd) with the process's other threads, which `setns`
/// refuses for a mount namespace (setns(2): EINVAL), so it first takes a private copy of them
/// (`unshare(CLONE_FS)`); the rest of the process keeps its namespace. Afterwards the thread's root
/// and working directory are the namespace's root.
pub(crate) fn enter_mount_namespace(ns: &std::fs::File) -> std::io::Result<()> {
    // SAFETY: `unshare` and `setns` take plain integers; `ns` is an open descriptor borrowed for the call.
    unsafe {
        if libc::unshare(libc::CLONE_FS) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Makes `cmd`'s child write `0` ("the writing process", cgroups(7)) to each of `fds` (open
/// `cgroup.procs` files) after the fork and before the exec, so that it runs in those cgroups
/// from its first instruction. The descriptors must stay open until `spawn` returns.
pub(crate) fn join_cgroups_before_exec(cmd: &mut std::process::Command, fds: Vec<RawFd>) {
    let join = move || -> std::io::Result<()> {
        for &fd in &fds {
            // SAFETY: `write(2)` is async-signal-safe; the buffer is a static byte string.
            if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the closure only calls `write(2)` (async-signal-safe), allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(join);
    }
}
