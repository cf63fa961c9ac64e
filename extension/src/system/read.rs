//! Reads [`Snapshot`]s of the function's processes from `/proc`, `/tmp` and the cgroup. Thin I/O:
//! the parsing is [`perfmon_protocol::procfs`]'s.
//!
//! **Which processes.** In a Lambda sandbox the runtime is not perfmon's child: Lambda's init
//! (`/var/rapid/init`) starts the runtime and every extension. The function's processes are
//! therefore the descendants of perfmon's parent, perfmon itself excluded (its own share is the
//! one that can be told apart; another extension's cannot, and counts as the function's). The
//! tree is walked through `/proc/<pid>/task/<tid>/children`, or, where the kernel lacks that
//! file, by scanning every `/proc/<pid>/stat` for parent ids. The local sandbox starts the
//! runtime and the extensions the same way (children of the sandbox), so the same rule holds.
//!
//! Every source is optional: one that is missing, unreadable or malformed is logged once (warn)
//! and its metrics are left out; nothing here returns an error or panics.
//!
//! **What a sample costs.** The sampler reads these files once per INVOKE and a few times while an
//! invoke runs, so the reads are kept to the syscalls that return data (docs/benchmarks.md, "CPU
//! per invoke"):
//! * `/proc/<pid>/stat` of each process and `/proc/net/dev` are opened once and re-read with
//!   `pread` at offset 0, which makes the kernel generate the file afresh (`seq_read_iter`, fs/seq_file.c,
//!   restarts at offset 0). A held `/proc/<pid>/stat` stays bound to its process: once that process
//!   is gone the read fails with `ESRCH` (`proc_single_show`, fs/proc/base.c), so a reused pid is
//!   never read as the old process. No path lookup, `statx` or `close` per read.
//! * A read that returns less than the buffer offered is the whole file, as procps-ng's
//!   `file2str` (library/readproc.c) takes it; one buffer is reused for every file.
//! * The process tree: the parent's threads (Lambda's init has many) are walked once the runtime
//!   exists (the first INVOKE) and again only when one of the processes found then is gone; the
//!   walks looking for processes the function started cover those processes' own subtrees only.
//!   Lambda's init starts the runtime and the extensions during Init and no process afterwards
//!   (a runtime that exits ends the environment), so the parent's direct children do not change.
//! * Every walk (three syscalls per thread of each process walked: a runtime with many threads
//!   pays more) is skipped while the last pid of `/proc/loadavg` is the one read before the last
//!   walk and none of the parent's children found then is gone: no process and no thread has been
//!   created since in perfmon's pid namespace, which in Lambda is the sandbox's own. Where other
//!   processes come and go (the local sandbox shares the machine's), the value moves and the walks
//!   happen as before; without the file, too. A process of the function that exits meanwhile is
//!   left out of the snapshots when its `stat` fails.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use rustix::fs::{Mode, OFlags, RawDir, SeekFrom};

use perfmon_protocol::procfs::{self, PidStat};

use super::Snapshot;

/// Where the sources are: `/proc`, the temporary directory (`$TMPDIR`, else `/tmp`: Lambda sets
/// no `TMPDIR`, and the function and its extensions see the same environment), `/sys/fs/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub proc_root: PathBuf,
    pub tmp_dir: PathBuf,
    pub cgroup_root: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            proc_root: PathBuf::from("/proc"),
            tmp_dir: std::env::temp_dir(),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        }
    }
}

/// Source names, as logged and listed in `/v1/health`.
pub mod source {
    pub const SELF_STAT: &str = "proc_self_stat";
    pub const PROCESS_TREE: &str = "process_tree";
    pub const PID_STAT: &str = "proc_pid_stat";
    pub const PID_FD: &str = "proc_pid_fd";
    pub const NET_DEV: &str = "proc_net_dev";
    pub const TMP: &str = "tmp_statvfs";
    pub const PROC_STAT: &str = "proc_stat";
    pub const MEMORY: &str = "memory";
}

/// What a snapshot reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// CPU, network and the levels (INVOKE, SHUTDOWN, window ends).
    Full,
    /// The levels only: `/tmp`, fds, threads (the peak sampler).
    Levels,
    /// Full plus the environment's CPU and memory (Managed Instances).
    Environment,
}

/// Initial size of the read buffer: `/proc/<pid>/stat`, a `children` file and `/proc/net/dev` of a
/// sandbox fit (it grows for a larger file, up to [`MAX_READ`]).
const READ_BUF: usize = 4096;
/// Largest `/proc` file read; a larger one is treated as unreadable.
const MAX_READ: usize = 1 << 20;

/// The reader; keep one per process (it remembers the process tree and what it already logged).
#[derive(Debug)]
pub struct Reader {
    paths: Paths,
    self_pid: u32,
    parent: Option<u32>,
    pids: Vec<u32>,
    /// The parent's children (perfmon excluded) at the last walk of the parent's threads: the roots
    /// of [`Reader::refresh_subtrees`].
    roots: Vec<u32>,
    /// One of `roots` is gone: the next refresh walks the parent's threads again.
    roots_stale: bool,
    /// `/proc/<pid>/stat` of the processes of `pids`, held open (see the module documentation).
    stat_files: HashMap<u32, File>,
    /// `/proc/<pid>/fd` of the same processes, held open and listed again from offset 0.
    fd_dirs: HashMap<u32, OwnedFd>,
    /// Whether `fstat` of `/proc/<pid>/fd` gives the number of open fds as its size (Linux 6.2 and
    /// later, `proc_fd_getattr` in fs/proc/fd.c; 0 before): learnt by comparing with the listing
    /// ([`count_open_fds`]), not from a listing that raced with an `open` or a `close`.
    fd_size_counts: Option<bool>,
    net_dev: Option<File>,
    /// `/proc/loadavg`, held open from the start (`None`: it cannot be opened or read; then no walk
    /// is skipped).
    loadavg: Option<File>,
    /// The last pid read just before the last walk of the tree or of the subtrees ([`Reader::pid_moved`]).
    walked_at_pid: Option<u64>,
    buf: Vec<u8>,
    dir_buf: Vec<MaybeUninit<u8>>,
    /// Sources that failed at least once (each logged once).
    unreadable: BTreeSet<&'static str>,
}

/// Reads the whole of `file` from offset 0 into `buf`: `None` for an empty file.
fn pread_all<'b>(file: &File, buf: &'b mut Vec<u8>) -> std::io::Result<Option<&'b str>> {
    if buf.len() < READ_BUF {
        buf.resize(READ_BUF, 0);
    }
    let mut n = 0;
    loop {
        let r = match file.read_at(&mut buf[n..], n as u64) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        n += r;
        if r == 0 || n < buf.len() {
            break;
        }
        if buf.len() >= MAX_READ {
            return Err(std::io::Error::other(format!("larger than {MAX_READ} bytes")));
        }
        buf.resize(buf.len() * 2, 0);
    }
    if n == 0 {
        return Ok(None);
    }
    std::str::from_utf8(&buf[..n]).map(Some).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Reads the whole file at `path` into `buf` (opened and closed: for the files read once per walk).
fn read_path<'b>(path: &std::path::Path, buf: &'b mut Vec<u8>) -> std::io::Result<&'b str> {
    let file = File::open(path)?;
    Ok(pread_all(&file, buf)?.unwrap_or(""))
}

/// Open fds in a held `/proc/<pid>/fd` directory: its size where the kernel gives the count
/// there (`by_size`), else its entries listed again from offset 0 (`lseek` + `getdents64`, instead
/// of `open` + `getdents64` + `close` by path).
///
/// `by_size` is learnt by listing until a process with fds is seen: a size equal to the listing's
/// count says the kernel counts (Linux 6.2 and later), a size of 0 beside a non-empty listing says
/// it does not (the size of a procfs directory before 6.2). Any other size is a process that opened
/// or closed an fd between the `fstat` and the listing (a function busy with its connections at
/// INVOKE): nothing is learnt, and the next call compares again. Learning "no" from such a race
/// would list every directory for the rest of the sandbox's life.
fn count_open_fds(
    dir: &OwnedFd,
    buf: &mut Vec<MaybeUninit<u8>>,
    by_size: &mut Option<bool>,
) -> rustix::io::Result<u64> {
    let size = match by_size {
        Some(false) => None,
        _ => Some(u64::try_from(rustix::fs::fstat(dir)?.st_size).unwrap_or(0)),
    };
    if let (Some(true), Some(n)) = (*by_size, size) {
        return Ok(n);
    }
    if buf.len() < READ_BUF {
        buf.resize(READ_BUF, MaybeUninit::uninit());
    }
    rustix::fs::seek(dir, SeekFrom::Start(0))?;
    let mut entries = RawDir::new(dir, buf.as_mut_slice());
    let mut n = 0u64;
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            n += 1;
        }
    }
    if by_size.is_none() {
        *by_size = learn_by_size(size, n);
    }
    Ok(n)
}

/// What a directory's `size` beside its listing's count `listed` says of the kernel ([`count_open_fds`]).
fn learn_by_size(size: Option<u64>, listed: u64) -> Option<bool> {
    match size {
        _ if listed == 0 => None,
        Some(s) if s == listed => Some(true),
        Some(0) => Some(false),
        _ => None,
    }
}

/// Whether an error of a held `/proc/<pid>` file says the process is gone.
fn is_gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error())
}

impl Reader {
    /// A reader for the processes beside `self_pid` (perfmon: `std::process::id()`).
    pub fn new(paths: Paths, self_pid: u32) -> Self {
        let loadavg = File::open(paths.proc_root.join("loadavg")).ok();
        let mut r = Self {
            paths,
            self_pid,
            parent: None,
            pids: Vec::new(),
            roots: Vec::new(),
            roots_stale: true,
            stat_files: HashMap::new(),
            fd_dirs: HashMap::new(),
            fd_size_counts: None,
            net_dev: None,
            loadavg,
            walked_at_pid: None,
            buf: Vec::new(),
            dir_buf: Vec::new(),
            unreadable: BTreeSet::new(),
        };
        r.parent = r.pid_stat(self_pid, source::SELF_STAT).map(|s| s.ppid).filter(|p| *p > 0);
        r.refresh_processes();
        r
    }

    /// Sources that failed so far.
    pub fn unreadable(&self) -> &BTreeSet<&'static str> {
        &self.unreadable
    }

    /// The function's processes as last discovered.
    pub fn processes(&self) -> &[u32] {
        &self.pids
    }

    /// Milliseconds per clock tick of this kernel.
    pub fn ms_per_tick() -> f64 {
        let hz = rustix::param::clock_ticks_per_second();
        if hz == 0 {
            10.0
        } else {
            1000.0 / hz as f64
        }
    }

    /// Walks the whole process tree again, the parent's threads included (new processes beside
    /// perfmon: the runtime, once Lambda started it), unless no pid was allocated since the last
    /// walk and none of the processes found then is gone (the module's documentation).
    pub fn refresh_processes(&mut self) {
        if !self.pid_moved() && !self.roots_stale && !self.roots.is_empty() {
            return;
        }
        let Some(parent) = self.parent else {
            self.pids.clear();
            self.forget_gone_files();
            return;
        };
        let pids = self.descendants_by_children(parent).or_else(|| self.descendants_by_scan(parent));
        match pids {
            Some((pids, roots)) => {
                self.pids = pids;
                self.roots = roots;
                self.roots_stale = false;
            }
            None => {
                self.degrade(source::PROCESS_TREE, "neither task/*/children nor a scan of /proc worked");
                self.pids.clear();
                self.roots.clear();
                self.roots_stale = true;
            }
        }
        self.forget_gone_files();
    }

    /// Looks for processes the function started: walks the subtrees of the processes found beside
    /// perfmon by the last [`Reader::refresh_processes`] (the whole tree instead when there are
    /// none yet or one of them is gone).
    pub fn refresh_subtrees(&mut self) {
        if self.roots_stale || self.roots.is_empty() || self.parent.is_none() {
            self.refresh_processes();
            return;
        }
        if !self.pid_moved() {
            return;
        }
        let mut out = Vec::new();
        let mut all_walked = true;
        for root in self.roots.clone() {
            match self.subtree(root) {
                Some(sub) => {
                    out.push(root);
                    out.extend(sub);
                }
                None => {
                    all_walked = false;
                    break;
                }
            }
        }
        if !all_walked {
            // A root is gone (or its threads cannot be listed): the parent's walk decides.
            self.roots_stale = true;
            self.refresh_processes();
            return;
        }
        out.sort_unstable();
        out.dedup();
        self.pids = out;
        self.forget_gone_files();
    }

    /// Drops the held files of processes no longer in `pids`.
    fn forget_gone_files(&mut self) {
        let pids = &self.pids;
        self.stat_files.retain(|pid, _| pids.binary_search(pid).is_ok());
        self.fd_dirs.retain(|pid, _| pids.binary_search(pid).is_ok());
    }

    /// Reads a snapshot at `now_ms`.
    pub fn snapshot(&mut self, now_ms: i64, depth: Depth) -> Snapshot {
        let mut snap = Snapshot { at_ms: now_ms, ..Snapshot::default() };
        if self.parent.is_some() {
            let mut cpu = BTreeMap::new();
            let (mut threads, mut fds) = (0u64, Some(0u64));
            let mut stat_ok = true;
            for i in 0..self.pids.len() {
                let pid = self.pids[i];
                match self.read_pid_stat_held(pid) {
                    Ok(Some(s)) => {
                        cpu.insert(pid, s.cpu_ticks.saturating_add(s.children_cpu_ticks));
                        threads = threads.saturating_add(s.num_threads);
                    }
                    Ok(None) => {
                        // Gone since the walk; a root gone means the tree must be walked again.
                        if self.roots.contains(&pid) {
                            self.roots_stale = true;
                        }
                        continue;
                    }
                    Err(e) => {
                        self.degrade(source::PID_STAT, e);
                        stat_ok = false;
                        break;
                    }
                }
                fds = match (fds, self.count_fds(pid)) {
                    (Some(total), Some(n)) => Some(total.saturating_add(n)),
                    _ => None,
                };
            }
            if stat_ok && !self.pids.is_empty() {
                snap.threads = Some(threads);
                snap.fds = fds;
                if depth != Depth::Levels {
                    snap.cpu_ticks = Some(cpu);
                }
            }
        }
        snap.tmp_used = self.tmp_used();
        if depth != Depth::Levels {
            snap.net = self.read_net_dev();
        }
        if depth == Depth::Environment {
            snap.env_cpu = self.read_parsed(&["stat"], source::PROC_STAT, procfs::parse_proc_stat);
            snap.env_memory_pct = self.memory_pct();
        }
        snap
    }

    fn degrade(&mut self, source: &'static str, error: impl std::fmt::Display) {
        if self.unreadable.insert(source) {
            tracing::warn!(source, error = %error, "system metrics: source unreadable; its metrics are left out");
        }
    }

    fn proc_path(&self, parts: &[&str]) -> PathBuf {
        parts.iter().fold(self.paths.proc_root.clone(), |p, part| p.join(part))
    }

    fn read_parsed<T>(&mut self, parts: &[&str], source: &'static str, parse: fn(&str) -> Option<T>) -> Option<T> {
        let path = self.proc_path(parts);
        let parsed = read_path(&path, &mut self.buf).map(parse);
        match parsed {
            Ok(Some(v)) => Some(v),
            Ok(None) => {
                self.degrade(source, format!("{} is malformed", path.display()));
                None
            }
            Err(e) => {
                self.degrade(source, format!("{}: {e}", path.display()));
                None
            }
        }
    }

    /// Whether a pid may have been allocated since the last walk (always, when `/proc/loadavg`
    /// gives no reading): the module's documentation. Remembers this reading for the next call, so
    /// call it just before a walk.
    fn pid_moved(&mut self) -> bool {
        let last_pid = self.last_pid();
        let moved = last_pid.is_none() || last_pid != self.walked_at_pid;
        self.walked_at_pid = last_pid;
        moved
    }

    /// The last pid allocated in perfmon's pid namespace (`/proc/loadavg`); `None` when the file
    /// cannot be opened or read (not a degraded source: walks are then never skipped).
    fn last_pid(&mut self) -> Option<u64> {
        let file = self.loadavg.as_ref()?;
        match pread_all(file, &mut self.buf) {
            Ok(text) => text.and_then(procfs::parse_loadavg_last_pid),
            Err(_) => {
                self.loadavg = None;
                None
            }
        }
    }

    /// `/proc/net/dev` through its held file (opened at the first read, again after an error).
    fn read_net_dev(&mut self) -> Option<procfs::NetBytes> {
        if self.net_dev.is_none() {
            let path = self.proc_path(&["net", "dev"]);
            match File::open(&path) {
                Ok(f) => self.net_dev = Some(f),
                Err(e) => {
                    self.degrade(source::NET_DEV, format!("{}: {e}", path.display()));
                    return None;
                }
            }
        }
        let file = self.net_dev.as_ref()?;
        let parsed = pread_all(file, &mut self.buf).map(|t| t.and_then(procfs::parse_net_dev));
        match parsed {
            Ok(Some(v)) => Some(v),
            Ok(None) => {
                self.degrade(source::NET_DEV, "/proc/net/dev is malformed");
                None
            }
            Err(e) => {
                self.net_dev = None;
                self.degrade(source::NET_DEV, format!("/proc/net/dev: {e}"));
                None
            }
        }
    }

    /// `Ok(None)`: the process is gone. Opens and reads by path (not held).
    fn read_pid_stat(&mut self, pid: u32) -> Result<Option<PidStat>, String> {
        let path = self.proc_path(&[&pid.to_string(), "stat"]);
        match read_path(&path, &mut self.buf) {
            Ok(text) => {
                procfs::parse_pid_stat(text).map(Some).ok_or_else(|| format!("{} is malformed", path.display()))
            }
            Err(e) if is_gone(&e) => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// The same through the held file of `pid` (opened at its first read).
    fn read_pid_stat_held(&mut self, pid: u32) -> Result<Option<PidStat>, String> {
        if !self.stat_files.contains_key(&pid) {
            let path = self.proc_path(&[&pid.to_string(), "stat"]);
            match File::open(&path) {
                Ok(f) => {
                    self.stat_files.insert(pid, f);
                }
                Err(e) if is_gone(&e) => return Ok(None),
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        let Some(file) = self.stat_files.get(&pid) else { return Ok(None) };
        let result = match pread_all(file, &mut self.buf) {
            Ok(Some(text)) => match procfs::parse_pid_stat(text) {
                Some(s) => return Ok(Some(s)),
                None => Err(format!("{}/{pid}/stat is malformed", self.paths.proc_root.display())),
            },
            // An empty read or ESRCH: the process is gone.
            Ok(None) => Ok(None),
            Err(e) if is_gone(&e) => Ok(None),
            Err(e) => Err(format!("{}/{pid}/stat: {e}", self.paths.proc_root.display())),
        };
        self.stat_files.remove(&pid);
        result
    }

    fn pid_stat(&mut self, pid: u32, source: &'static str) -> Option<PidStat> {
        match self.read_pid_stat(pid) {
            Ok(Some(s)) => Some(s),
            Ok(None) => {
                self.degrade(source, format!("no {}/{pid}/stat", self.paths.proc_root.display()));
                None
            }
            Err(e) => {
                self.degrade(source, e);
                None
            }
        }
    }

    /// Open fds of `pid`, through its held `/proc/<pid>/fd` directory (opened at the first count).
    fn count_fds(&mut self, pid: u32) -> Option<u64> {
        if !self.fd_dirs.contains_key(&pid) {
            let path = self.proc_path(&[&pid.to_string(), "fd"]);
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
            match rustix::fs::open(&path, flags, Mode::empty()) {
                Ok(fd) => {
                    self.fd_dirs.insert(pid, fd);
                }
                Err(e) => {
                    self.degrade(source::PID_FD, format!("{}: {e}", path.display()));
                    return None;
                }
            }
        }
        let dir = self.fd_dirs.get(&pid)?;
        match count_open_fds(dir, &mut self.dir_buf, &mut self.fd_size_counts) {
            Ok(n) => Some(n),
            Err(e) => {
                self.fd_dirs.remove(&pid);
                if matches!(e, rustix::io::Errno::NOENT | rustix::io::Errno::SRCH) {
                    return Some(0); // gone since its stat: it holds nothing
                }
                self.degrade(source::PID_FD, format!("{}/{pid}/fd: {e}", self.paths.proc_root.display()));
                None
            }
        }
    }

    fn tmp_used(&mut self) -> Option<u64> {
        match rustix::fs::statvfs(&self.paths.tmp_dir) {
            Ok(s) => Some(s.f_blocks.saturating_sub(s.f_bfree).saturating_mul(s.f_frsize)),
            Err(e) => {
                self.degrade(source::TMP, format!("{}: {e}", self.paths.tmp_dir.display()));
                None
            }
        }
    }

    /// The environment's memory in use: the cgroup's `memory.current` over `memory.max` when the
    /// cgroup has a limit, else `/proc/meminfo`'s (MemTotal − MemAvailable) / MemTotal.
    fn memory_pct(&mut self) -> Option<f64> {
        let read = |name: &str| std::fs::read_to_string(self.paths.cgroup_root.join(name)).ok();
        if let (Some(cur), Some(max)) =
            (read("memory.current").and_then(|c| c.trim().parse::<u64>().ok()), read("memory.max"))
        {
            if let Some(limit) = procfs::parse_cgroup_limit(&max) {
                return Some((cur as f64 / limit as f64 * 100.0).min(100.0));
            }
        }
        let (total, available) = self.read_parsed(&["meminfo"], source::MEMORY, procfs::parse_meminfo)?;
        Some(total.saturating_sub(available) as f64 / total as f64 * 100.0)
    }

    /// The children of `pid` (perfmon excluded) from its threads' `children` files (a child is
    /// listed in the file of the thread that started it); `None` when `pid` has no readable `task`
    /// directory or none of its threads has a `children` file.
    fn children_of(&mut self, pid: u32) -> Option<Vec<u32>> {
        let tasks = std::fs::read_dir(self.proc_path(&[&pid.to_string(), "task"])).ok()?;
        let mut out = Vec::new();
        let mut any_file = false;
        for task in tasks.flatten() {
            let Ok(text) = read_path(&task.path().join("children"), &mut self.buf) else { continue };
            any_file = true;
            out.extend(procfs::parse_children(text).into_iter().filter(|c| *c != self.self_pid));
        }
        any_file.then_some(out)
    }

    /// Descendants of `root` (root excluded) through `task/*/children`; `None` when `root`'s own
    /// threads cannot be listed (gone, or a kernel without these files).
    fn subtree(&mut self, root: u32) -> Option<Vec<u32>> {
        let mut out = Vec::new();
        let mut queue = self.children_of(root)?;
        let mut seen = BTreeSet::from([root]);
        while let Some(pid) = queue.pop() {
            if !seen.insert(pid) {
                continue;
            }
            out.push(pid);
            // A process that exited meanwhile has no children to add.
            queue.extend(self.children_of(pid).unwrap_or_default());
        }
        Some(out)
    }

    /// Descendants of `root` (root and perfmon excluded) through `task/*/children`, sorted, and
    /// `root`'s own children; `None` when the kernel has no such files.
    fn descendants_by_children(&mut self, root: u32) -> Option<(Vec<u32>, Vec<u32>)> {
        let mut roots = self.children_of(root)?;
        roots.sort_unstable();
        roots.dedup();
        let mut out = roots.clone();
        for &r in &roots {
            out.extend(self.subtree(r).unwrap_or_default());
        }
        out.sort_unstable();
        out.dedup();
        Some((out, roots))
    }

    /// The same by reading every `/proc/<pid>/stat` (kernels without `children` files).
    fn descendants_by_scan(&mut self, root: u32) -> Option<(Vec<u32>, Vec<u32>)> {
        let dir = std::fs::read_dir(&self.paths.proc_root).ok()?;
        let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if let Ok(Some(s)) = self.read_pid_stat(pid) {
                children.entry(s.ppid).or_default().push(pid);
            }
        }
        let mut out = Vec::new();
        let mut queue = vec![root];
        let mut seen = BTreeSet::new();
        while let Some(pid) = queue.pop() {
            if !seen.insert(pid) {
                continue;
            }
            for &c in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
                if c != self.self_pid {
                    out.push(c);
                    queue.push(c);
                }
            }
        }
        out.sort_unstable();
        // Without `children` files there are no cheaper walks: every refresh scans (no roots).
        Some((out, Vec::new()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A fake `/proc`: perfmon (pid 50) and the runtime (60, with a child 61) under the sandbox
    /// (pid 40); 70 is elsewhere.
    fn fake_root() -> (tempdir::Dir, Paths) {
        let d = tempdir::Dir::new();
        let stat = |pid: u32, ppid: u32, utime: u64, threads: u64| {
            format!("{pid} (p {pid}) S {ppid} 1 1 0 -1 0 0 0 0 0 {utime} 5 1 1 20 0 {threads} 0 1 1 1")
        };
        let write = |rel: &str, text: &str| {
            let p = d.path().join("proc").join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        for (pid, ppid, utime, threads) in
            [(40, 1, 1, 1), (50, 40, 99, 4), (60, 40, 10, 3), (61, 60, 20, 1), (70, 1, 7, 1)]
        {
            write(&format!("{pid}/stat"), &stat(pid, ppid, utime, threads));
            for fd in 0..(pid / 10) {
                write(&format!("{pid}/fd/{fd}"), "");
            }
        }
        write("40/task/40/children", "50 60 ");
        write("40/task/41/children", "");
        write("60/task/60/children", "61");
        write("61/task/61/children", "");
        write("50/task/50/children", "");
        write("net/dev", "h1\nh2\n  lo: 5 0 0 0 0 0 0 0 5 0 0 0 0 0 0 0\neth0: 100 0 0 0 0 0 0 0 300 0 0 0 0 0 0 0\n");
        write("stat", "cpu  10 0 10 80 0 0 0 0 0 0\n");
        write("meminfo", "MemTotal: 1000 kB\nMemAvailable: 250 kB\n");
        std::fs::create_dir_all(d.path().join("tmp")).unwrap();
        let paths = Paths {
            proc_root: d.path().join("proc"),
            tmp_dir: d.path().join("tmp"),
            cgroup_root: d.path().join("cgroup"),
        };
        (d, paths)
    }

    /// Process `pid` appears in the fake `/proc` under `ppid`: its `stat` and its main thread's empty
    /// `children` file (the parent's `children` file is the caller's to write).
    fn add_process(proc: &std::path::Path, pid: u32, ppid: u32) {
        std::fs::create_dir_all(proc.join(format!("{pid}/task/{pid}"))).unwrap();
        std::fs::write(proc.join(format!("{pid}/task/{pid}/children")), "").unwrap();
        let stat = format!("{pid} (p) S {ppid} 1 1 0 -1 0 0 0 0 0 4 0 0 0 20 0 1 0 1 1 1");
        std::fs::write(proc.join(format!("{pid}/stat")), stat).unwrap();
    }

    #[test]
    fn reads_the_siblings_and_their_children_not_perfmon() {
        let (_d, paths) = fake_root();
        let mut r = Reader::new(paths, 50);
        assert_eq!(r.processes(), &[60, 61]);
        let s = r.snapshot(5, Depth::Environment);
        assert_eq!(s.cpu_ticks.unwrap(), [(60, 10 + 5 + 2), (61, 20 + 5 + 2)].into_iter().collect());
        assert_eq!(s.threads, Some(4));
        assert_eq!(s.fds, Some(6 + 6));
        assert_eq!(s.net.map(|n| (n.rx, n.tx)), Some((100, 300)));
        assert_eq!(s.env_cpu.map(|c| (c.busy, c.total)), Some((20, 100)));
        assert_eq!(s.env_memory_pct, Some(75.0));
        assert!(s.tmp_used.is_some());
        assert!(r.unreadable().is_empty(), "{:?}", r.unreadable());
    }

    #[test]
    fn without_children_files_the_scan_finds_the_same_processes() {
        let (d, paths) = fake_root();
        for pid in [40, 50, 60, 61] {
            std::fs::remove_dir_all(d.path().join(format!("proc/{pid}/task"))).unwrap();
        }
        let r = Reader::new(paths, 50);
        assert_eq!(r.processes(), &[60, 61]);
    }

    #[test]
    fn missing_unreadable_and_malformed_sources_leave_metrics_out() {
        let (d, paths) = fake_root();
        let proc = d.path().join("proc");
        std::fs::write(proc.join("net/dev"), "garbage").unwrap();
        std::fs::remove_file(proc.join("stat")).unwrap();
        std::fs::write(proc.join("meminfo"), "MemTotal: x").unwrap();
        std::fs::remove_dir_all(proc.join("61/fd")).unwrap();
        let mut r = Reader::new(Paths { tmp_dir: d.path().join("no-such-tmp"), ..paths.clone() }, 50);
        let s = r.snapshot(5, Depth::Environment);
        assert!(s.net.is_none() && s.env_cpu.is_none() && s.env_memory_pct.is_none() && s.tmp_used.is_none());
        assert!(s.fds.is_none(), "a process whose fds cannot be counted makes the total unknown");
        assert_eq!(s.threads, Some(4), "the rest is still read");
        let before = r.unreadable().len();
        r.snapshot(6, Depth::Environment);
        assert_eq!(r.unreadable().len(), before, "each source is logged once");
        assert!(r.unreadable().contains(source::NET_DEV) && r.unreadable().contains(source::PID_FD));

        // A malformed process stat: no CPU, threads or fds, no panic.
        std::fs::write(proc.join("60/stat"), "60 (x) S").unwrap();
        let s = r.snapshot(7, Depth::Full);
        assert!(s.cpu_ticks.is_none() && s.threads.is_none());

        // No /proc at all: an empty snapshot.
        let mut r = Reader::new(Paths { proc_root: d.path().join("nothing"), ..paths }, 50);
        let s = r.snapshot(8, Depth::Environment);
        assert_eq!(Snapshot { at_ms: 8, tmp_used: s.tmp_used, ..Snapshot::default() }, s);
        assert!(r.unreadable().contains(source::SELF_STAT));
    }

    #[test]
    fn the_real_proc_sees_a_child_of_the_parent() {
        // This test process plays the sandbox: a child it starts is a sibling of nothing, so use a
        // reader "for" a pid whose parent is us: the child itself.
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let mut sibling = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let r = Reader::new(Paths::default(), child.id());
        assert!(r.processes().contains(&sibling.id()), "{:?}", r.processes());
        assert!(!r.processes().contains(&child.id()));
        let _ = child.kill();
        let _ = sibling.kill();
        let _ = child.wait();
        let _ = sibling.wait();
        assert!(Reader::ms_per_tick() > 0.0);
    }

    #[test]
    fn a_held_stat_file_reads_fresh_values_and_a_gone_process_reads_as_gone() {
        // pread at offset 0 regenerates the file: this thread's CPU time moves while we burn.
        let tid = rustix::thread::gettid().as_raw_nonzero().get();
        let file = File::open(format!("/proc/self/task/{tid}/stat")).unwrap();
        let mut buf = Vec::new();
        let first = procfs::parse_pid_stat(pread_all(&file, &mut buf).unwrap().unwrap()).unwrap().cpu_ticks;
        let started = std::time::Instant::now();
        let mut x = 0u64;
        let changed = loop {
            for i in 0..100_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            let now = procfs::parse_pid_stat(pread_all(&file, &mut buf).unwrap().unwrap()).unwrap().cpu_ticks;
            if now > first {
                break true;
            }
            if started.elapsed() > std::time::Duration::from_secs(20) {
                break false;
            }
        };
        assert!(changed, "a held /proc stat file never showed new CPU time ({x})");

        // A sibling that exits and is reaped: its held file says gone, and the next walk finds the
        // sibling started after it (it was one of the roots).
        let mut me = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let mut gone = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let mut r = Reader::new(Paths::default(), me.id());
        let s = r.snapshot(1, Depth::Full);
        assert!(s.cpu_ticks.unwrap().contains_key(&gone.id()));
        gone.kill().unwrap();
        gone.wait().unwrap();
        let s = r.snapshot(2, Depth::Full);
        assert!(!s.cpu_ticks.unwrap().contains_key(&gone.id()), "a reaped process is not read");
        let mut new = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        r.refresh_subtrees();
        assert!(r.processes().contains(&new.id()), "a gone root makes the next walk a whole one");
        assert!(!r.processes().contains(&gone.id()));
        for c in [&mut me, &mut new] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    #[test]
    fn an_fd_opened_during_the_count_teaches_nothing() {
        assert_eq!(learn_by_size(Some(7), 7), Some(true), "the kernel counts");
        assert_eq!(learn_by_size(Some(0), 7), Some(false), "a kernel before 6.2");
        assert_eq!(learn_by_size(Some(8), 7), None, "an fd closed between fstat and listing");
        assert_eq!(learn_by_size(Some(6), 7), None, "an fd opened between fstat and listing");
        assert_eq!(learn_by_size(Some(0), 0), None, "no fds: nothing to compare");
    }

    #[test]
    fn held_fd_directories_count_what_a_listing_counts_again_and_again() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let path = format!("/proc/{}/fd", child.id());
        let listed = std::fs::read_dir(&path).unwrap().count() as u64;
        assert!(listed >= 3, "stdin, stdout, stderr at least: {listed}");
        let dir = rustix::fs::open(path.as_str(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let mut buf = Vec::new();
        let mut learnt = None;
        for _ in 0..3 {
            assert_eq!(count_open_fds(&dir, &mut buf, &mut learnt).unwrap(), listed);
            assert!(learnt.is_some(), "learnt on the first process with fds");
            assert_eq!(count_open_fds(&dir, &mut buf, &mut Some(false)).unwrap(), listed, "by listing, rewound");
        }
        let _ = child.kill();
        let _ = child.wait();
        let gone = count_open_fds(&dir, &mut buf, &mut Some(false));
        assert!(matches!(gone, Ok(0) | Err(rustix::io::Errno::NOENT | rustix::io::Errno::SRCH)), "{gone:?}");
    }

    #[test]
    fn subtree_walks_find_the_functions_new_processes_not_the_parents() {
        let (d, paths) = fake_root();
        let proc = d.path().join("proc");
        let mut r = Reader::new(paths, 50);
        assert_eq!(r.processes(), &[60, 61]);
        // The runtime (60) starts 62; the sandbox (40) starts 80.
        std::fs::write(proc.join("60/task/60/children"), "61 62").unwrap();
        add_process(&proc, 62, 60);
        std::fs::write(proc.join("40/task/41/children"), "80").unwrap();
        add_process(&proc, 80, 40);
        r.refresh_subtrees();
        assert_eq!(r.processes(), &[60, 61, 62], "below the runtime only");
        r.refresh_processes();
        assert_eq!(r.processes(), &[60, 61, 62, 80]);
        // A root gone: the subtree walk falls back to the whole tree.
        std::fs::remove_dir_all(proc.join("80")).unwrap();
        std::fs::write(proc.join("40/task/41/children"), "").unwrap();
        r.refresh_subtrees();
        assert_eq!(r.processes(), &[60, 61, 62]);
    }

    /// With `/proc/loadavg`, a subtree walk happens only when a pid was allocated since the last one.
    #[test]
    fn subtree_walks_wait_for_a_new_pid() {
        let (d, paths) = fake_root();
        let proc = d.path().join("proc");
        std::fs::write(proc.join("loadavg"), "0.00 0.00 0.00 1/9 100\n").unwrap();
        let mut r = Reader::new(paths, 50);
        assert_eq!(r.processes(), &[60, 61]);
        // The runtime (60) starts 62, but the last pid has not moved: no walk, 62 is not seen.
        std::fs::write(proc.join("60/task/60/children"), "61 62").unwrap();
        add_process(&proc, 62, 60);
        r.refresh_subtrees();
        assert_eq!(r.processes(), &[60, 61]);
        // As the kernel says once 62 exists: the walk finds it, and the next one is skipped again.
        std::fs::write(proc.join("loadavg"), "0.00 0.00 0.00 1/10 101\n").unwrap();
        r.refresh_subtrees();
        assert_eq!(r.processes(), &[60, 61, 62]);
        std::fs::write(proc.join("60/task/60/children"), "61").unwrap();
        std::fs::remove_dir_all(proc.join("62")).unwrap();
        r.refresh_subtrees();
        assert_eq!(r.processes(), &[60, 61, 62], "no new pid: the walk is skipped");
        // 62 is gone: a snapshot skips it, and the next new pid's walk drops it.
        let s = r.snapshot(5, Depth::Full);
        assert_eq!(s.cpu_ticks.unwrap().keys().copied().collect::<Vec<_>>(), vec![60, 61]);
        std::fs::write(proc.join("loadavg"), "0.00 0.00 0.00 1/9 102\n").unwrap();
        r.refresh_subtrees();
        assert_eq!(r.processes(), &[60, 61]);
    }

    /// The whole walk waits for a new pid too, unless one of the parent's children is gone.
    #[test]
    fn whole_walks_wait_for_a_new_pid_or_a_gone_root() {
        let (d, paths) = fake_root();
        let proc = d.path().join("proc");
        std::fs::write(proc.join("loadavg"), "0.00 0.00 0.00 1/9 100\n").unwrap();
        let mut r = Reader::new(paths, 50);
        assert_eq!(r.processes(), &[60, 61]);
        // The sandbox (40) starts 80; the last pid has not moved: no walk.
        std::fs::write(proc.join("40/task/41/children"), "80").unwrap();
        add_process(&proc, 80, 40);
        r.refresh_processes();
        assert_eq!(r.processes(), &[60, 61]);
        std::fs::write(proc.join("loadavg"), "0.00 0.00 0.00 1/10 101\n").unwrap();
        r.refresh_processes();
        assert_eq!(r.processes(), &[60, 61, 80]);
        // 80 exits; no new pid, but a snapshot finds a root gone: the next walk happens.
        std::fs::remove_dir_all(proc.join("80")).unwrap();
        std::fs::write(proc.join("40/task/41/children"), "").unwrap();
        r.snapshot(5, Depth::Full);
        r.refresh_processes();
        assert_eq!(r.processes(), &[60, 61]);
    }

    /// A temporary directory, removed on drop.
    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "perfmon-fakeproc-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Self(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}
