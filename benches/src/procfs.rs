//! What `/proc` says about a process: CPU time (utime + stime), resident memory, and resetting
//! the peak-RSS mark (`clear_refs` 5) so that the peak of one phase can be measured on its own.

/// Linux's `USER_HZ`, the unit of `utime`/`stime` in `/proc/<pid>/stat` (100 on every ABI).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// `utime + stime` of `/proc/<pid>/stat` content, in clock ticks: the extension's own parser
/// ([`perfmon_protocol::procfs::parse_pid_stat`]), so the bench reads the file as perfmon does.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    perfmon_protocol::procfs::parse_pid_stat(stat).map(|s| s.cpu_ticks)
}

/// CPU time used so far by process `pid` (all threads), in milliseconds (10 ms resolution).
pub fn cpu_ms(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|t| t as f64 * 1000.0 / TICKS_PER_SECOND)
}

/// CPU time of every thread of `pid`, in milliseconds at nanosecond resolution: the sum of the first
/// field (time on a CPU, ns) of `/proc/<pid>/task/*/schedstat`. Threads that already exited are not
/// counted (perfmon's only short-lived threads are the blocking pool's).
pub fn cpu_ms_fine(pid: i32) -> Option<f64> {
    let mut total: u64 = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let text = std::fs::read_to_string(entry.path().join("schedstat")).unwrap_or_default();
        total += text.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    Some(total as f64 / 1e6)
}

/// A `kB` field (`VmRSS`, `VmHWM`) of `/proc/<pid>/status` content.
pub fn parse_status_kb(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
}

fn status_kb(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kb(&status, field)
}

/// Current resident set size in KiB.
pub fn rss_kb(pid: i32) -> Option<u64> {
    status_kb(pid, "VmRSS")
}

/// Peak resident set size in KiB (since start or the last [`reset_peak`]).
pub fn hwm_kb(pid: i32) -> Option<u64> {
    status_kb(pid, "VmHWM")
}

/// Resets the peak-RSS mark of `pid` to its current RSS (`echo 5 > /proc/<pid>/clear_refs`).
pub fn reset_peak(pid: i32) -> std::io::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_command_name() {
        let stat = "4242 (per fmon) S 1 4242 4242 0 -1 4194560 1000 0 0 0 37 12 0 0 20 0 2 0 123 10000 500";
        assert_eq!(parse_cpu_ticks(stat), Some(49));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn status_fields() {
        let status = "Name:\tperfmon\nVmHWM:\t    5120 kB\nVmRSS:\t    4096 kB\n";
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(5120));
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(4096));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id() as i32;
        assert!(cpu_ms(me).is_some());
        assert!(rss_kb(me).unwrap_or(0) > 0);
        assert!(hwm_kb(me).unwrap_or(0) > 0);
        // Compare within one snapshot: other test threads allocate between two separate reads, so
        // RSS read after HWM may exceed it. In one read the kernel reports VmHWM ≥ VmRSS.
        let status = std::fs::read_to_string(format!("/proc/{me}/status")).unwrap_or_default();
        let (hwm, rss) = (parse_status_kb(&status, "VmHWM"), parse_status_kb(&status, "VmRSS"));
        assert!(matches!((hwm, rss), (Some(h), Some(r)) if h >= r), "{hwm:?} {rss:?}");
    }
}
