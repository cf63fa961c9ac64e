//! Lambda's resource model for an execution environment: a CPU share by memory size, a private
//! `/tmp` of the ephemeral-storage size, and one memory limit for the function and its extensions.
//!
//! What Lambda documents, and what is done here for each environment (one generation):
//! * CPU: "Lambda allocates CPU power in proportion to the amount of memory configured ... at
//!   1,769 MB, a function has the equivalent of one vCPU", up to 6 vCPUs at 10 240 MB (Lambda
//!   developer guide, "Configuring Lambda function memory" and "Lambda quotas"). Every process of the
//!   environment joins one cgroup whose CFS quota is `memory / 1 769` of one CPU per period (v1
//!   `cpu.cfs_quota_us`, v2 `cpu.max`), at most the CPUs online and 6.
//! * Memory: the function's memory size is shared by the runtime and the extensions ("permissions,
//!   resources, credentials, and environment variables are shared between the function and the
//!   extensions", "Lambda execution environment"). The same cgroup has a memory limit of the memory
//!   size (v1 `memory.limit_in_bytes`, v2 `memory.max`); past it the kernel's OOM killer kills the
//!   largest process of the cgroup, and the sandbox reports `Runtime.OutOfMemory`.
//! * `/tmp`: each environment gets its own `/tmp` of the configured ephemeral storage (512 MB by
//!   default, 512-10 240 MB; "Configuring ephemeral storage"). A holder process is started in a
//!   private mount namespace (`unshare -m --propagation private`) with a tmpfs of that size at
//!   `/tmp`; the function and the extensions are started inside it, so they share it, as in Lambda. Paths under the host's `/tmp` that the function needs (its command, working
//!   directory, the extensions directory, environment values) are bind-mounted back at the same path.
//!   The namespace, and so every mount in it, ends with its last process: nothing is left behind.
//!
//! Every process of the environment is spawned by one thread of the sandbox that entered the
//! namespace and the cgroups when the environment was created ([`Spawner`]), so it is born in them:
//! starting a process costs what a plain spawn costs, not a move between cgroups (an RCU grace
//! period, 7-20 ms on a 2-core VM) nor a wrapper's extra execs.
//!
//! Difference from Lambda: the tmpfs pages are memory, and the kernel charges them to the memory
//! cgroup of the process that writes them, so on this sandbox what the function keeps in `/tmp`
//! counts toward its memory limit (in Lambda `/tmp` is disk).
//!
//! Where the machine does not allow a part (no root, no writable cgroup, no `unshare`), the
//! environment runs without it; [`ResourceReport`] says which part and why, and the sandbox logs it
//! once at start.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use serde::Serialize;

use crate::config::SandboxConfig;

/// Memory size that buys one vCPU (Lambda developer guide: "At 1,769 MB, a function has the
/// equivalent of one vCPU").
pub const MB_PER_VCPU: u64 = 1769;
/// Lambda's largest function gets 6 vCPUs (10 240 MB).
pub const MAX_VCPUS: u64 = 6;
/// Lambda's default and smallest ephemeral storage, and its largest (MB).
pub const EPHEMERAL_DEFAULT_MB: u64 = 512;
pub const EPHEMERAL_MAX_MB: u64 = 10_240;
/// CFS period used for the quota (the kernel's default, 100 ms).
const CFS_PERIOD_US: u64 = 100_000;
/// Smallest CFS quota the kernel accepts.
const CFS_MIN_QUOTA_US: u64 = 1_000;
/// CPU weight of an environment's cgroup relative to the host's default (v1 `cpu.shares` 1024, v2
/// `cpu.weight` 100): the quota is a ceiling, and this weight makes it a floor too on a busy host
/// (Lambda's vCPU share is not taken by other work), so that the ratio between memory sizes holds
/// while other builds run. It never gives more than the quota.
const CPU_WEIGHT_FACTOR: u64 = 64;
/// Name of the sandbox's parent cgroup (one child per environment).
const CGROUP_PARENT: &str = "perfmon-sandbox";
/// Where the holder sees the host's `/tmp` while it lays out the private one (unmounted after).
const HOST_TMP_VIEW: &str = "/run/perfmon-sandbox/host-tmp";

/// One part of the model: applied, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Part {
    pub applied: bool,
    /// What was applied (e.g. `cgroup v1 cpu.cfs_quota_us 7236/100000`), or why it was not.
    pub detail: String,
}

impl Part {
    fn on(detail: String) -> Self {
        Self { applied: true, detail }
    }
    fn off(detail: String) -> Self {
        Self { applied: false, detail }
    }
}

/// Which parts of Lambda's resource model the sandbox applies (`--json`: `resources`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceReport {
    /// Whether the model was asked for (`--no-resource-limits` / [`SandboxConfig::resource_limits`]).
    pub enabled: bool,
    pub cpu: Part,
    pub memory: Part,
    pub tmp: Part,
}

impl ResourceReport {
    /// The parts that were asked for and could not be applied, as `name: reason`.
    pub fn not_applied(&self) -> Vec<String> {
        if !self.enabled {
            return Vec::new();
        }
        [("cpu", &self.cpu), ("memory", &self.memory), ("tmp", &self.tmp)]
            .into_iter()
            .filter(|(_, p)| !p.applied)
            .map(|(n, p)| format!("{n}: {}", p.detail))
            .collect()
    }
}

/// CFS quota (µs per [`CFS_PERIOD_US`]) for a memory size: `memory / 1 769` of one CPU, at most
/// `min(cpus, 6)` CPUs, at least the kernel's minimum.
pub fn cpu_quota_us(memory_mb: u64, cpus_online: u64) -> u64 {
    let cap = CFS_PERIOD_US * cpus_online.clamp(1, MAX_VCPUS);
    let quota = (CFS_PERIOD_US as u128 * u128::from(memory_mb) + u128::from(MB_PER_VCPU) / 2) / u128::from(MB_PER_VCPU);
    u64::try_from(quota).unwrap_or(u64::MAX).clamp(CFS_MIN_QUOTA_US, cap)
}

/// The cgroup hierarchy in use.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hierarchy {
    /// Unified (v2): one directory per cgroup with `cpu.max` and `memory.max`.
    V2 { root: PathBuf },
    /// v1: separate `cpu` and `memory` hierarchies.
    V1 { cpu: PathBuf, memory: PathBuf },
}

/// What was found at start: the hierarchy usable for cgroups, whether `unshare` works.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub report: ResourceReport,
    hierarchy: Option<Hierarchy>,
    /// A CPU share by memory size (not on Managed Instances, which get the instance's CPUs).
    cpu_share: bool,
    tmp: bool,
    memory_mb: u64,
    ephemeral_mb: u64,
    cpus: u64,
}

/// A unique name for a cgroup (several sandboxes per process, several environments per sandbox).
fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}-{}", std::process::id(), id.get(..12).unwrap_or(&id))
}

fn cpus_online() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("write {value:?} to {}: {e}", path.display()))
}

/// Finds the cgroup hierarchy: v2 when `/sys/fs/cgroup` is the unified one with the `cpu` and
/// `memory` controllers, else v1's `cpu` and `memory` hierarchies.
fn detect_hierarchy(base: &Path) -> Result<Hierarchy, String> {
    let controllers = base.join("cgroup.controllers");
    if let Ok(list) = std::fs::read_to_string(&controllers) {
        let has = |c: &str| list.split_whitespace().any(|x| x == c);
        if has("cpu") && has("memory") {
            return Ok(Hierarchy::V2 { root: base.to_path_buf() });
        }
        return Err(format!("cgroup v2 at {} lacks the cpu or memory controller ({list:?})", base.display()));
    }
    let cpu = ["cpu", "cpu,cpuacct"].iter().map(|d| base.join(d)).find(|d| d.join("cpu.cfs_quota_us").exists());
    let memory = base.join("memory");
    match cpu {
        Some(cpu) if memory.join("memory.limit_in_bytes").exists() => Ok(Hierarchy::V1 { cpu, memory }),
        _ => Err(format!("no cgroup v2 nor v1 cpu and memory controllers under {}", base.display())),
    }
}

/// A cgroup of one environment: the directories to join and remove.
#[derive(Debug)]
struct Cgroup {
    hierarchy: Hierarchy,
    /// v2: one directory; v1: the cpu one and the memory one.
    dirs: Vec<PathBuf>,
}

impl Cgroup {
    fn create(h: &Hierarchy, memory_mb: Option<u64>, cpu_quota_us: u64) -> Result<Self, String> {
        let name = unique("env");
        let mut cg = Cgroup { hierarchy: h.clone(), dirs: Vec::new() };
        let made = match h {
            Hierarchy::V2 { root } => {
                let parent = root.join(CGROUP_PARENT);
                // The controllers must be enabled for the children of the root and of the parent.
                let _ = write(&root.join("cgroup.subtree_control"), "+cpu +memory");
                mkdir(&parent)?;
                write(&parent.join("cgroup.subtree_control"), "+cpu +memory")?;
                write(&parent.join("cpu.weight"), &(100 * CPU_WEIGHT_FACTOR).to_string())?;
                let dir = parent.join(&name);
                mkdir(&dir)?;
                cg.dirs.push(dir.clone());
                write(&dir.join("cpu.max"), &format!("{cpu_quota_us} {CFS_PERIOD_US}"))
                    .and_then(|()| write(&dir.join("cpu.weight"), &(100 * CPU_WEIGHT_FACTOR).to_string()))
                    .and_then(|()| match memory_mb {
                        Some(mb) => {
                            write(&dir.join("memory.max"), &(mb * 1024 * 1024).to_string())?;
                            // No swap beyond the limit (absent when the kernel has no swap support).
                            let _ = write(&dir.join("memory.swap.max"), "0");
                            Ok(())
                        }
                        None => Ok(()),
                    })
            }
            Hierarchy::V1 { cpu, memory } => {
                // Nested under the sandbox's own cgroups (the host's accounting stays whole).
                let cpu_parent = own_v1_cgroup(cpu, "cpu").join(CGROUP_PARENT);
                mkdir(&cpu_parent)?;
                write(&cpu_parent.join("cpu.shares"), &(1024 * CPU_WEIGHT_FACTOR).to_string())?;
                let cpu_dir = cpu_parent.join(&name);
                mkdir(&cpu_dir)?;
                cg.dirs.push(cpu_dir.clone());
                let r = write(&cpu_dir.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())
                    .and_then(|()| write(&cpu_dir.join("cpu.cfs_quota_us"), &cpu_quota_us.to_string()))
                    .and_then(|()| write(&cpu_dir.join("cpu.shares"), &(1024 * CPU_WEIGHT_FACTOR).to_string()));
                r.and_then(|()| match memory_mb {
                    Some(mb) => {
                        let mem_dir = own_v1_cgroup(memory, "memory").join(CGROUP_PARENT).join(&name);
                        mkdir(&mem_dir)?;
                        cg.dirs.push(mem_dir.clone());
                        write(&mem_dir.join("memory.limit_in_bytes"), &(mb * 1024 * 1024).to_string())?;
                        let _ = write(&mem_dir.join("memory.memsw.limit_in_bytes"), &(mb * 1024 * 1024).to_string());
                        Ok(())
                    }
                    None => Ok(()),
                })
            }
        };
        match made {
            Ok(()) => Ok(cg),
            Err(e) => {
                cg.remove();
                Err(e)
            }
        }
    }

    /// The `cgroup.procs` files a process writes its pid into to join.
    fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// The files one thread writes its id into to join alone: v1's `tasks`. None in v2, where a
    /// thread of a domain cgroup goes with its process.
    fn thread_files(&self) -> Vec<PathBuf> {
        match self.hierarchy {
            Hierarchy::V1 { .. } => self.dirs.iter().map(|d| d.join("tasks")).collect(),
            Hierarchy::V2 { .. } => Vec::new(),
        }
    }

    fn memory_dir(&self) -> Option<&Path> {
        match &self.hierarchy {
            Hierarchy::V2 { .. } => self.dirs.first().map(PathBuf::as_path),
            Hierarchy::V1 { memory, .. } => self.dirs.iter().find(|d| d.starts_with(memory)).map(PathBuf::as_path),
        }
    }

    /// Processes of the cgroup killed by the OOM killer so far (`oom_kill` of v2 `memory.events`,
    /// of v1 `memory.oom_control`).
    fn oom_kills(&self) -> u64 {
        let Some(dir) = self.memory_dir() else { return 0 };
        let file = match self.hierarchy {
            Hierarchy::V2 { .. } => "memory.events",
            Hierarchy::V1 { .. } => "memory.oom_control",
        };
        std::fs::read_to_string(dir.join(file)).ok().and_then(|s| parse_oom_kill(&s)).unwrap_or(0)
    }

    /// Removes the cgroups (they must be empty: every process reaped). Retries briefly, as the
    /// kernel may still be tearing the last exited task down.
    fn remove(&mut self) {
        for dir in self.dirs.drain(..) {
            for attempt in 0..50 {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) => {
                        if attempt == 49 {
                            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the environment's cgroup");
                        }
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                }
            }
        }
    }
}

/// The directory of this process's own cgroup in the v1 hierarchy mounted at `mount` for
/// `controller` (from `/proc/self/cgroup`); the mount point when unknown.
fn own_v1_cgroup(mount: &Path, controller: &str) -> PathBuf {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|s| own_v1_path(&s, controller));
    match own {
        Some(rel) => mount.join(rel.trim_start_matches('/')),
        None => mount.to_path_buf(),
    }
}

/// The path of `controller`'s line (`N:cpu,cpuacct:/path`) in `/proc/self/cgroup` content.
fn own_v1_path(text: &str, controller: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        ctrls.split(',').any(|c| c == controller).then(|| path.to_owned())
    })
}

fn mkdir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))
}

/// The `oom_kill N` line of `memory.events` / `memory.oom_control`.
pub(crate) fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
}

/// The holder of an environment's private mount namespace: a shell waiting on a pipe from the
/// sandbox. It is detached (started in the background by a shell that exits at once), so it is not
/// among the sandbox's children, where perfmon, measuring its parent's descendants, would count it.
/// It ends when the sandbox closes the pipe (or dies), or by SIGKILL to its process group.
#[derive(Debug)]
struct Holder {
    /// The write end of the holder's stdin.
    stdin: Option<std::process::ChildStdin>,
    pid: i32,
    pgid: i32,
}

impl Holder {
    const SCRIPT: &'static str = r#"set -e
view="$1"; size="$2"; shift 2
mkdir -p "$view"
mount --rbind /tmp "$view"
mount -t tmpfs -o "size=${size}m,mode=1777" perfmon-sandbox-tmp /tmp
for d in "$@"; do
  if [ -d "$view/$d" ]; then mkdir -p "/tmp/$d"; elif [ -e "$view/$d" ]; then : > "/tmp/$d"; else continue; fi
  mount --bind "$view/$d" "/tmp/$d"
done
umount -l "$view"
echo ready
exec 1>&- 2>&-
read -r _ || true
"#;
    /// Starts [`Self::SCRIPT`] in a new mount namespace, in the background, with the caller's stdin
    /// (an explicit redirection: a background job's stdin is otherwise /dev/null), prints its pid.
    const LAUNCH: &'static str = r#"exec 3<&0
unshare -m --propagation private sh -c "$0" sh "$@" <&3 &
echo "$!"
"#;

    fn start(size_mb: u64, keep: &[String]) -> Result<Self, String> {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", Self::LAUNCH, Self::SCRIPT, HOST_TMP_VIEW])
            .arg(size_mb.to_string())
            .args(keep)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| format!("cannot run sh: {e}"))?;
        let pgid = i32::try_from(child.id()).unwrap_or(0);
        let stdin = child.stdin.take();
        let mut lines = Vec::new();
        if let Some(out) = child.stdout.take() {
            let mut r = BufReader::new(out);
            for _ in 0..2 {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                lines.push(line.trim().to_owned());
            }
        }
        let pid = lines.first().and_then(|l| l.parse::<i32>().ok()).unwrap_or(0);
        if lines.get(1).map(String::as_str) != Some("ready") || pid <= 0 {
            drop(stdin);
            crate::sys::signal_group(pgid, crate::sys::Signal::Kill);
            let err = child.wait_with_output().map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned());
            return Err(format!("unshare -m with a tmpfs at /tmp failed: {}", err.unwrap_or_default()));
        }
        // The launching shell has exited (or does now): reap it.
        let _ = child.wait();
        Ok(Self { stdin, pid, pgid })
    }

    /// Ends the holder: its stdin closed, SIGKILL to its group. The namespace and its mounts go
    /// with the last process in it.
    fn stop(mut self) {
        drop(self.stdin.take());
        crate::sys::signal_group(self.pgid, crate::sys::Signal::Kill);
    }
}

/// A request to the spawner thread: the command, and where to send the child.
type Job = (Command, mpsc::Sender<std::io::Result<Child>>);

/// A thread of the sandbox that lives in an environment's resources: in its mount namespace and (v1)
/// in its cgroups. Every process of the environment is forked from it, and a fork copies the forking
/// thread's cgroups and namespaces (cgroups(7): "a child process created via fork(2) inherits its
/// parent's cgroup memberships"; in v1 each thread has its own, "tasks"), so the processes are
/// born inside: nothing is moved on the spawn path. Moving a process between cgroups takes the
/// kernel's cgroup threadgroup lock for writing, which waits for an RCU grace period when no move
/// happened just before (measured here: 7-20 ms per move, against 0.6 ms for a fork); the thread
/// pays that once when the environment is created. It still is the sandbox's thread, so the
/// processes are the sandbox's children (reaped by `wait4`).
///
/// In cgroup v2 a thread cannot be in a domain cgroup apart from its process (the memory controller
/// is not threaded), so there each child joins before its exec ([`sys::join_cgroups_before_exec`]).
#[derive(Debug)]
struct Spawner {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// The sandbox's working directory: a child with none of its own starts there (the thread's
    /// own is the namespace's root after `setns`).
    cwd: Option<PathBuf>,
}

/// What the spawner thread managed to do when it started.
struct SpawnerStart {
    in_namespace: Result<(), String>,
    in_cgroups: Result<(), String>,
}

impl Spawner {
    /// Starts the thread: into the mount namespace `ns`, its id into each of `tasks` (v1 `tasks`).
    fn start(ns: Option<std::fs::File>, tasks: Vec<PathBuf>) -> Result<(Self, SpawnerStart), String> {
        let cwd = std::env::current_dir().ok();
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<SpawnerStart>();
        let thread = std::thread::Builder::new()
            .name("env-spawner".to_owned())
            .spawn(move || {
                let in_namespace = match &ns {
                    Some(f) => crate::sys::enter_mount_namespace(f)
                        .map_err(|e| format!("cannot enter the environment's mount namespace: {e}")),
                    None => Ok(()),
                };
                drop(ns);
                let tid = crate::sys::gettid().to_string();
                let in_cgroups = tasks.iter().try_for_each(|t| write(t, &tid));
                let _ = ready_tx.send(SpawnerStart { in_namespace, in_cgroups });
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .map_err(|e| format!("cannot start the environment's spawner thread: {e}"))?;
        let started = ready_rx.recv().map_err(|_| "the environment's spawner thread ended at start".to_owned())?;
        Ok((Self { tx: Some(tx), thread: Some(thread), cwd }, started))
    }

    /// Ends the thread (the channel closed) and waits for it, so that it has left the cgroups.
    fn stop(mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts processes inside an environment (see [`Spawner`]); a copy taken out of the sandbox's lock.
#[derive(Debug, Clone, Default)]
pub(crate) struct SpawnHandle {
    tx: Option<mpsc::Sender<Job>>,
    cwd: Option<PathBuf>,
    /// `cgroup.procs` files each child writes itself into before its exec (v2, or where the thread
    /// could not join).
    before_exec: Option<Arc<Vec<std::fs::File>>>,
}

impl SpawnHandle {
    /// Spawns `cmd` in the environment.
    pub fn spawn(&self, mut cmd: Command) -> std::io::Result<Child> {
        if let Some(files) = &self.before_exec {
            crate::sys::join_cgroups_before_exec(&mut cmd, files.iter().map(AsRawFd::as_raw_fd).collect());
        }
        let Some(tx) = &self.tx else { return cmd.spawn() };
        if cmd.get_current_dir().is_none() {
            if let Some(d) = &self.cwd {
                cmd.current_dir(d);
            }
        }
        let (reply_tx, reply_rx) = mpsc::channel();
        let gone = || std::io::Error::other("the environment's spawner thread has ended");
        tx.send((cmd, reply_tx)).map_err(|_| gone())?;
        // `files` (held by `self`) stay open until the child has exec'd: `spawn` returns after that.
        reply_rx.recv().map_err(|_| gone())?
    }
}

/// The resources of one environment (one generation): its cgroup and its `/tmp` namespace.
#[derive(Debug, Default)]
pub(crate) struct EnvResources {
    cgroup: Option<Cgroup>,
    holder: Option<Holder>,
    spawner: Option<Spawner>,
    /// `cgroup.procs` of the cgroups the spawner thread is not in (opened once).
    join_before_exec: Option<Arc<Vec<std::fs::File>>>,
    /// OOM kills counted when the environment started (a fresh cgroup: 0).
    oom_base: u64,
}

impl Plan {
    /// Decides what can be applied on this machine for `cfg` (probes once: a cgroup created and
    /// removed, a private namespace with a tmpfs started and ended).
    pub fn probe(cfg: &SandboxConfig) -> Self {
        let memory_mb = cfg.memory_mb;
        let ephemeral_mb = cfg.ephemeral_storage_mb;
        let cpus = cpus_online();
        let mut plan = Plan {
            report: ResourceReport {
                enabled: cfg.resource_limits,
                cpu: Part::off("resource limits off".to_owned()),
                memory: Part::off("resource limits off".to_owned()),
                tmp: Part::off("resource limits off".to_owned()),
            },
            hierarchy: None,
            cpu_share: !cfg.mode.is_managed_instances(),
            tmp: false,
            memory_mb,
            ephemeral_mb,
            cpus,
        };
        if !cfg.resource_limits {
            return plan;
        }
        match detect_hierarchy(Path::new("/sys/fs/cgroup")).and_then(|h| {
            Cgroup::create(&h, Some(memory_mb), cpu_quota_us(memory_mb, cpus)).map(|mut cg| {
                cg.remove();
                h
            })
        }) {
            Ok(h) => {
                let version = match h {
                    Hierarchy::V2 { .. } => "cgroup v2 cpu.max",
                    Hierarchy::V1 { .. } => "cgroup v1 cpu.cfs_quota_us",
                };
                let quota = cpu_quota_us(memory_mb, cpus);
                plan.report.cpu = if plan.cpu_share {
                    Part::on(format!(
                        "{version} {quota}/{CFS_PERIOD_US} ({:.1} % of one CPU for {memory_mb} MB)",
                        quota as f64 * 100.0 / CFS_PERIOD_US as f64
                    ))
                } else {
                    // Managed Instances: the function gets the instance's CPUs, not a share by memory size.
                    Part::on("no quota: Managed Instances use the instance's CPUs".to_owned())
                };
                let mem_file = match h {
                    Hierarchy::V2 { .. } => "cgroup v2 memory.max",
                    Hierarchy::V1 { .. } => "cgroup v1 memory.limit_in_bytes",
                };
                plan.report.memory =
                    Part::on(format!("{mem_file} {memory_mb} MB for the function and its extensions together"));
                plan.hierarchy = Some(h);
            }
            Err(e) => {
                let why = format!("cannot use cgroups ({e}); running without a limit");
                plan.report.cpu = Part::off(why.clone());
                plan.report.memory = Part::off(why);
            }
        }
        match Holder::start(ephemeral_mb, &[]) {
            Ok(h) => {
                h.stop();
                plan.tmp = true;
                plan.report.tmp = Part::on(format!("private mount namespace with a {ephemeral_mb} MB tmpfs at /tmp"));
            }
            Err(e) => plan.report.tmp = Part::off(format!("{e}; the function sees the host's /tmp")),
        }
        plan
    }

    /// Sets up a new environment's resources; a part that fails now is logged and left out.
    pub fn create_env(&self, keep_under_tmp: &[String]) -> EnvResources {
        let mut env = EnvResources::default();
        if let Some(h) = &self.hierarchy {
            let quota =
                if self.cpu_share { cpu_quota_us(self.memory_mb, self.cpus) } else { CFS_PERIOD_US * self.cpus };
            match Cgroup::create(h, Some(self.memory_mb), quota) {
                Ok(cg) => {
                    env.oom_base = cg.oom_kills();
                    env.cgroup = Some(cg);
                }
                Err(e) => tracing::warn!(error = %e, "cannot create the environment's cgroup: running without limits"),
            }
        }
        if self.tmp {
            match Holder::start(self.ephemeral_mb, keep_under_tmp) {
                Ok(h) => env.holder = Some(h),
                Err(e) => tracing::warn!(error = %e, "cannot give the environment its own /tmp"),
            }
        }
        env.start_spawner();
        env
    }
}

impl EnvResources {
    /// Starts the spawner thread in the namespace and the cgroups; whatever it cannot join is
    /// joined by each child before its exec (cgroups), or logged and left out (namespace).
    fn start_spawner(&mut self) {
        let thread_files = self.cgroup.as_ref().map(Cgroup::thread_files).unwrap_or_default();
        let ns = match &self.holder {
            Some(h) => match std::fs::File::open(format!("/proc/{}/ns/mnt", h.pid)) {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the environment's mount namespace: the host's /tmp");
                    None
                }
            },
            None => None,
        };
        let mut thread_joined = false;
        if ns.is_some() || !thread_files.is_empty() {
            let wants_cgroups = !thread_files.is_empty();
            match Spawner::start(ns, thread_files) {
                Ok((sp, started)) => {
                    if let Err(e) = started.in_namespace {
                        tracing::warn!(error = %e, "the environment's processes see the host's /tmp");
                    }
                    match started.in_cgroups {
                        Ok(()) => thread_joined = wants_cgroups,
                        Err(e) => tracing::warn!(error = %e, "the spawner thread cannot join the environment's cgroup"),
                    }
                    self.spawner = Some(sp);
                }
                Err(e) => tracing::warn!(error = %e, "the environment's processes start outside its namespace"),
            }
        }
        let Some(cg) = &self.cgroup else { return };
        if thread_joined {
            return;
        }
        let opened: Result<Vec<_>, String> = cg
            .procs_files()
            .iter()
            .map(|f| std::fs::OpenOptions::new().write(true).open(f).map_err(|e| format!("open {}: {e}", f.display())))
            .collect();
        match opened {
            Ok(files) => self.join_before_exec = Some(Arc::new(files)),
            Err(e) => tracing::warn!(error = %e, "cannot join the environment's cgroup: running without limits"),
        }
    }

    /// What starts this environment's processes: from its spawner thread, or directly.
    pub fn spawn_handle(&self) -> SpawnHandle {
        match &self.spawner {
            Some(s) => SpawnHandle { tx: s.tx.clone(), cwd: s.cwd.clone(), before_exec: self.join_before_exec.clone() },
            None => SpawnHandle { tx: None, cwd: None, before_exec: self.join_before_exec.clone() },
        }
    }

    /// Whether the OOM killer killed a process of this environment.
    pub fn oom_killed(&self) -> bool {
        self.cgroup.as_ref().is_some_and(|c| c.oom_kills() > self.oom_base)
    }

    /// Ends the namespace and removes the cgroups (call once every process was reaped).
    pub fn release(&mut self) {
        if let Some(s) = self.spawner.take() {
            s.stop();
        }
        self.join_before_exec = None;
        if let Some(h) = self.holder.take() {
            h.stop();
        }
        if let Some(mut cg) = self.cgroup.take() {
            cg.remove();
        }
    }
}

impl Drop for EnvResources {
    fn drop(&mut self) {
        self.release();
    }
}

/// The first component under `/tmp` of every absolute path in `values` (`:`-separated lists too):
/// what the private `/tmp` must show from the host's.
pub(crate) fn host_tmp_entries<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        for part in v.split(':') {
            let Some(rest) = part.strip_prefix("/tmp/") else { continue };
            let Some(first) = rest.split('/').next().filter(|f| !f.is_empty() && *f != "." && *f != "..") else {
                continue;
            };
            if !first.contains('\'') && !out.iter().any(|o| o == first) {
                out.push(first.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_follows_lambdas_memory_to_cpu_ratio() {
        // 128 MB: 7.2 % of a CPU; 1 769 MB: one CPU; 10 240 MB: 6 CPUs, capped by the CPUs online.
        assert_eq!(cpu_quota_us(128, 2), 7_236);
        assert_eq!(cpu_quota_us(1769, 2), 100_000);
        assert_eq!(cpu_quota_us(3008, 2), 170_040);
        assert_eq!(cpu_quota_us(10_240, 2), 200_000);
        assert_eq!(cpu_quota_us(10_240, 64), 578_858);
        assert_eq!(cpu_quota_us(10_240 * 2, 64), 600_000);
        assert_eq!(cpu_quota_us(1, 2), CFS_MIN_QUOTA_US);
    }

    #[test]
    fn oom_kill_counter() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_oom_kill(v1), Some(3));
        let v2 = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(v2), Some(1));
        assert_eq!(parse_oom_kill("oom_kill_disable 0\n"), None);
    }

    #[test]
    fn own_cgroup_path_per_controller() {
        let text = "4:memory:/process_api/abc\n2:cpu,cpuacct:/\n0::/user.slice\n";
        assert_eq!(own_v1_path(text, "memory").as_deref(), Some("/process_api/abc"));
        assert_eq!(own_v1_path(text, "cpu").as_deref(), Some("/"));
        assert_eq!(own_v1_path(text, "pids"), None);
    }

    #[test]
    fn host_tmp_entries_are_first_components() {
        let got =
            host_tmp_entries(["/tmp/.tmpAb/ext/perfmon", "/usr/bin/x", "/a:/tmp/venv/bin", "/tmp/", "/tmp/.tmpAb"]);
        assert_eq!(got, vec![".tmpAb".to_owned(), "venv".to_owned()]);
    }

    #[test]
    fn no_cgroup_controllers_is_a_plain_reason() {
        let dir = std::env::temp_dir().join(format!("perfmon-no-cgroup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let err = detect_hierarchy(&dir).err().unwrap_or_default();
        assert!(err.contains("no cgroup v2 nor v1 cpu and memory controllers"), "{err}");
        std::fs::write(dir.join("cgroup.controllers"), "cpuset io pids").unwrap_or_default();
        let err = detect_hierarchy(&dir).err().unwrap_or_default();
        assert!(err.contains("lacks the cpu or memory controller"), "{err}");
        std::fs::write(dir.join("cgroup.controllers"), "cpuset cpu io memory pids").unwrap_or_default();
        assert_eq!(detect_hierarchy(&dir), Ok(Hierarchy::V2 { root: dir.clone() }));
        let _ = std::fs::remove_dir_all(&dir);
        let report = ResourceReport {
            enabled: true,
            cpu: Part::off("cannot use cgroups (x)".to_owned()),
            memory: Part::on("m".to_owned()),
            tmp: Part::off("unshare failed".to_owned()),
        };
        assert_eq!(
            report.not_applied(),
            vec!["cpu: cannot use cgroups (x)".to_owned(), "tmp: unshare failed".to_owned()]
        );
        assert!(ResourceReport { enabled: false, ..report }.not_applied().is_empty());
    }

    #[test]
    fn spawn_without_resources_is_a_plain_spawn() {
        let env = EnvResources::default();
        let h = env.spawn_handle();
        assert!(h.tx.is_none() && h.before_exec.is_none());
        let out = h.spawn(Command::new("true")).and_then(Child::wait_with_output);
        assert!(out.is_ok_and(|o| o.status.success()));
    }

    /// A temporary directory laid out as a cgroupfs mount (plain files: the kernel's side of the
    /// files, migration and limits, is not exercised here).
    fn fake_cgroupfs(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("perfmon-fake-cgroupfs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_default();
        dir
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// cgroup v2 (`cpu.max`, `memory.max`, `memory.events`), on files only: this machine's v2
    /// hierarchy has no cpu or memory controller (they are bound to v1), so the kernel's v2 path is
    /// not run by any test here.
    #[test]
    fn v2_files_written_and_read() {
        let root = fake_cgroupfs("v2");
        std::fs::write(root.join("cgroup.controllers"), "cpuset cpu io memory pids").unwrap_or_default();
        let h = detect_hierarchy(&root);
        assert_eq!(h, Ok(Hierarchy::V2 { root: root.clone() }));
        let Ok(h) = h else { return };
        let cg = Cgroup::create(&h, Some(128), cpu_quota_us(128, 2));
        let Ok(cg) = cg else { panic!("{cg:?}") };
        assert_eq!(read(&root.join("cgroup.subtree_control")), "+cpu +memory");
        let parent = root.join(CGROUP_PARENT);
        assert_eq!(read(&parent.join("cgroup.subtree_control")), "+cpu +memory");
        assert_eq!(read(&parent.join("cpu.weight")), "6400");
        let [dir] = cg.dirs.as_slice() else { panic!("{:?}", cg.dirs) };
        let dir = dir.clone();
        assert!(dir.starts_with(&parent));
        assert_eq!(read(&dir.join("cpu.max")), "7236 100000");
        assert_eq!(read(&dir.join("cpu.weight")), "6400");
        assert_eq!(read(&dir.join("memory.max")), (128u64 << 20).to_string());
        assert_eq!(read(&dir.join("memory.swap.max")), "0");
        assert_eq!(cg.memory_dir(), Some(dir.as_path()));
        assert_eq!(cg.procs_files(), vec![dir.join("cgroup.procs")]);
        // A v2 thread cannot join a domain cgroup apart from its process.
        assert!(cg.thread_files().is_empty());
        assert_eq!(cg.oom_kills(), 0);
        std::fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 40\noom 2\noom_kill 2\n").unwrap_or_default();
        assert_eq!(cg.oom_kills(), 2);

        // The environment's processes join before their exec: each child writes "0" (itself) into
        // `cgroup.procs` (here a plain file, so the write is what is checked, not the move).
        std::fs::write(dir.join("cgroup.procs"), "").unwrap_or_default();
        let mut env = EnvResources::default();
        env.cgroup = Some(cg);
        env.start_spawner();
        assert!(env.spawner.is_none(), "no namespace and no thread files: no spawner thread");
        assert_eq!(env.join_before_exec.as_ref().map(|f| f.len()), Some(1));
        let out = env.spawn_handle().spawn(Command::new("true")).and_then(Child::wait_with_output);
        assert!(out.is_ok_and(|o| o.status.success()));
        assert_eq!(read(&dir.join("cgroup.procs")), "0");
        env.cgroup = None;
        env.release();
        let _ = std::fs::remove_dir_all(&root);
    }

    /// cgroup v1 on files: the limits written, and the spawner thread's id in each `tasks` file
    /// (so no child moves; the kernel's v1 path runs in tests/tests/sandbox_resources.rs).
    #[test]
    fn v1_files_written_and_the_spawner_thread_joins() {
        let root = fake_cgroupfs("v1");
        for (d, f) in [("cpu,cpuacct", "cpu.cfs_quota_us"), ("memory", "memory.limit_in_bytes")] {
            std::fs::create_dir_all(root.join(d)).unwrap_or_default();
            std::fs::write(root.join(d).join(f), "-1").unwrap_or_default();
        }
        let h = detect_hierarchy(&root);
        let Ok(h) = h else { panic!("{h:?}") };
        let cg = Cgroup::create(&h, Some(3008), cpu_quota_us(3008, 2));
        let Ok(cg) = cg else { panic!("{cg:?}") };
        let [cpu, mem] = cg.dirs.as_slice() else { panic!("{:?}", cg.dirs) };
        assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "170040");
        assert_eq!(read(&cpu.join("cpu.shares")), "65536");
        assert_eq!(read(&mem.join("memory.limit_in_bytes")), (3008u64 << 20).to_string());
        assert_eq!(cg.thread_files(), vec![cpu.join("tasks"), mem.join("tasks")]);
        std::fs::write(mem.join("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
            .unwrap_or_default();
        assert_eq!(cg.oom_kills(), 1);
        let (cpu, mem) = (cpu.clone(), mem.clone());
        let mut env = EnvResources::default();
        env.cgroup = Some(cg);
        env.start_spawner();
        assert!(env.spawner.is_some() && env.join_before_exec.is_none());
        let tid = read(&cpu.join("tasks"));
        assert!(tid.parse::<i32>().is_ok_and(|t| t > 0), "{tid:?}");
        assert_eq!(read(&mem.join("tasks")), tid);
        let out = env.spawn_handle().spawn(Command::new("true")).and_then(Child::wait_with_output);
        assert!(out.is_ok_and(|o| o.status.success()));
        env.cgroup = None;
        env.release();
        let _ = std::fs::remove_dir_all(&root);
    }
}
