//! Pure parsers of the few `/proc` files the system metrics read (docs/reference.md §10). No I/O: the
//! extension reads the files (`extension/src/system/read.rs`) and hands the text here.
//!
//! Every parser returns `None` (or skips a line) on input it does not understand, never panics:
//! a missing or odd field costs one metric, not the extension. Formats: proc(5) of the Linux
//! man-pages (`/proc/pid/stat`, `/proc/net/dev`, `/proc/stat`, `/proc/meminfo`) and the kernel's
//! cgroup v2 documentation (`memory.current`, `memory.max`), and the socket table `/proc/net/udp`
//! (its columns are printed by the kernel's `udp4_format_sock`, net/ipv4/udp.c).
//!
//! Hand-written rather than `procfs`/`procfs-core`: five small formats, a few fields each; the
//! crates parse every field of every file (52 of `/proc/pid/stat` alone) and bring their own
//! dependencies into a layer that has a size budget.

/// What the system metrics use of `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PidStat {
    /// Field 4.
    pub ppid: u32,
    /// Fields 14 + 15 (`utime` + `stime`), clock ticks: every thread, dead ones included.
    pub cpu_ticks: u64,
    /// Fields 16 + 17 (`cutime` + `cstime`): children that exited and were waited for.
    pub children_cpu_ticks: u64,
    /// Field 20.
    pub num_threads: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself contain
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_pid_stat(text: &str) -> Option<PidStat> {
    let rest = &text[text.rfind(')')? + 1..];
    // rest starts at field 3 (state): index i here is field i + 3. Fields 3..=20, borrowed (no
    // allocation: the sampler parses this once per process per sample).
    let mut f = [""; 18];
    let mut it = rest.split_ascii_whitespace();
    for slot in &mut f {
        *slot = it.next()?;
    }
    let num = |field: usize| -> Option<u64> { f.get(field.checked_sub(3)?)?.parse().ok() };
    Some(PidStat {
        ppid: u32::try_from(num(4)?).ok()?,
        cpu_ticks: num(14)?.checked_add(num(15)?)?,
        children_cpu_ticks: num(16)?.checked_add(num(17)?)?,
        num_threads: num(20)?,
    })
}

/// Pids in a `/proc/<pid>/task/<tid>/children` file (space separated).
pub fn parse_children(text: &str) -> Vec<u32> {
    text.split_ascii_whitespace().filter_map(|p| p.parse().ok()).collect()
}

/// The pid most recently allocated in the reader's pid namespace: the last field of `/proc/loadavg`
/// (`idr_get_cursor(&task_active_pid_ns(current)->idr) - 1`, fs/proc/loadavg.c). Every new process
/// and every new thread takes a pid, so the same value twice means neither was created in between.
/// `None` for 0 too: no kernel that has started a process reports it, and a `/proc` that is only
/// emulated (one with a constant `loadavg`) must not make a caller believe nothing ever starts.
pub fn parse_loadavg_last_pid(text: &str) -> Option<u64> {
    text.split_ascii_whitespace().nth(4)?.parse().ok().filter(|pid| *pid > 0)
}

/// Received and transmitted bytes over the interfaces of `/proc/net/dev` except the loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetBytes {
    pub rx: u64,
    pub tx: u64,
}

/// Parses `/proc/net/dev`: two header lines, then `iface: rx_bytes packets ... tx_bytes ...`
/// (receive bytes is the 1st number, transmit bytes the 9th). `None` when no interface line parses.
pub fn parse_net_dev(text: &str) -> Option<NetBytes> {
    let mut total = NetBytes::default();
    let mut any = false;
    for line in text.lines() {
        let Some((name, data)) = line.split_once(':') else { continue };
        let name = name.trim();
        let nums: Vec<u64> = data.split_ascii_whitespace().map_while(|n| n.parse().ok()).collect();
        if nums.len() < 9 {
            continue;
        }
        any = true;
        if name == "lo" {
            continue;
        }
        total.rx = total.rx.saturating_add(nums[0]);
        total.tx = total.tx.saturating_add(nums[8]);
    }
    any.then_some(total)
}

/// Whole-machine (environment) CPU time from the `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTotals {
    /// Everything but `idle` and `iowait`.
    pub busy: u64,
    pub total: u64,
}

/// Parses the first line of `/proc/stat` (`cpu  user nice system idle iowait irq softirq steal ...`;
/// `guest` and `guest_nice` are already inside `user` and `nice`, so only the first 8 count).
pub fn parse_proc_stat(text: &str) -> Option<CpuTotals> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let nums: Vec<u64> =
        line.split_ascii_whitespace().skip(1).take(8).map(|n| n.parse().ok()).collect::<Option<_>>()?;
    if nums.len() < 4 {
        return None;
    }
    let total = nums.iter().try_fold(0u64, |a, n| a.checked_add(*n))?;
    let idle = nums[3].saturating_add(nums.get(4).copied().unwrap_or(0));
    Some(CpuTotals { busy: total.saturating_sub(idle), total })
}

/// `(MemTotal, MemAvailable)` in kB from `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))?;
        line[key.len() + 1..].split_ascii_whitespace().next()?.parse().ok()
    };
    let total = field("MemTotal").filter(|t| *t > 0)?;
    Some((total, field("MemAvailable")?.min(total)))
}

/// A cgroup v2 `memory.max` (`max` or a byte count): `None` for no limit or bad input.
pub fn parse_cgroup_limit(text: &str) -> Option<u64> {
    text.trim().parse().ok().filter(|n| *n > 0)
}

/// One socket's line of `/proc/net/udp`: how much waits in its receive queue and how many
/// datagrams the kernel dropped on it (`sk_drops`: receive buffer full, or no memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UdpSocketLine {
    /// `rx_queue`: bytes (of buffer accounting) waiting to be read.
    pub rx_queue: u64,
    /// `drops`: datagrams dropped since the socket was created.
    pub drops: u64,
}

/// Finds the socket with inode `inode` in `/proc/net/udp` (or `/proc/net/udp6`): a header line, then
/// `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ref
/// pointer drops`, whitespace separated (`tx_queue:rx_queue` in hex, the rest decimal). `None` when
/// no line has that inode or its line does not parse.
pub fn parse_udp_socket(text: &str, inode: u64) -> Option<UdpSocketLine> {
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.get(9)?.parse::<u64>().ok()? != inode {
            return None;
        }
        let (_, rx) = f.get(4)?.split_once(':')?;
        Some(UdpSocketLine { rx_queue: u64::from_str_radix(rx, 16).ok()?, drops: f.get(12)?.parse().ok()? })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STAT: &str = "4242 (my (odd) name) S 4100 4242 4242 0 -1 4194560 812 0 0 0 37 12 5 2 20 0 3 0 9182 \
                        12345678 900 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn pid_stat_counts_fields_from_the_last_parenthesis() {
        let s = parse_pid_stat(STAT).unwrap();
        assert_eq!(s, PidStat { ppid: 4100, cpu_ticks: 49, children_cpu_ticks: 7, num_threads: 3 });
        assert_eq!(parse_pid_stat("12 (x) S 1 2"), None, "truncated");
        assert_eq!(parse_pid_stat("no parenthesis here"), None);
        assert_eq!(parse_pid_stat(&STAT.replace(" 37 ", " x ")), None, "non-numeric utime");
    }

    #[test]
    fn net_dev_sums_every_interface_but_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
 lo: 9000      10    0    0    0     0          0         0     9000      10    0    0    0     0       0          0\n\
vinternal_1: 1500 12 0 0 0 0 0 0 2500 13 0 0 0 0 0 0\n  \
Ceth1:   100    1    0    0    0     0          0         0      200      2    0    0    0     0       0          0\n";
        assert_eq!(parse_net_dev(text), Some(NetBytes { rx: 1600, tx: 2700 }));
        assert_eq!(parse_net_dev("garbage\nmore: 1 2"), None);
        assert_eq!(parse_net_dev(""), None);
    }

    #[test]
    fn proc_stat_busy_excludes_idle_and_iowait() {
        let text = "cpu  100 5 50 800 40 3 2 0 7 0\ncpu0 50 2 25 400 20 1 1 0 0 0\nintr 1 2\n";
        assert_eq!(parse_proc_stat(text), Some(CpuTotals { busy: 160, total: 1000 }));
        assert_eq!(parse_proc_stat("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 2 x 4\n"), None);
    }

    #[test]
    fn meminfo_and_cgroup_limit() {
        let text = "MemTotal:        2048000 kB\nMemFree:  10 kB\nMemAvailable:    1536000 kB\n";
        assert_eq!(parse_meminfo(text), Some((2_048_000, 1_536_000)));
        assert_eq!(parse_meminfo("MemTotal: 0 kB\nMemAvailable: 0 kB"), None);
        assert_eq!(parse_meminfo("MemTotalX: 5 kB\n"), None);
        assert_eq!(parse_cgroup_limit("max\n"), None);
        assert_eq!(parse_cgroup_limit("1073741824\n"), Some(1 << 30));
        assert_eq!(parse_children("12 345 \n"), vec![12, 345]);
        // proc(5): "the PID of the process that was most recently created on the system".
        assert_eq!(parse_loadavg_last_pid("0.00 0.01 0.05 1/123 4567\n"), Some(4567));
        assert_eq!(parse_loadavg_last_pid("0.00 0.01 0.05 1/123\n"), None);
        assert_eq!(parse_loadavg_last_pid("0.00 0.01 0.05 1/123 x\n"), None);
        assert_eq!(parse_loadavg_last_pid("0.00 0.00 0.00 0/0 0\n"), None);
    }

    #[test]
    fn udp_socket_line_by_inode() {
        // Header and lines as a 6.x kernel prints them (the header has trailing spaces).
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            \n\
13328: 0100007F:D530 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 46054 2 000000006a01efb9 0         \n\
13400: 0100007F:1FBD 00000000:0000 07 00000000:0003A980 00:00000000 00000000   993        0 77001 2 00000000deadbeef 4123      \n";
        assert_eq!(parse_udp_socket(text, 46054), Some(UdpSocketLine { rx_queue: 0, drops: 0 }));
        assert_eq!(parse_udp_socket(text, 77001), Some(UdpSocketLine { rx_queue: 0x3A980, drops: 4123 }));
        assert_eq!(parse_udp_socket(text, 5), None, "no such inode");
        assert_eq!(parse_udp_socket("header\n1: a b 07 00:zz 0 0 0 0 9 2 p 1\n", 9), None, "bad rx_queue");
        assert_eq!(parse_udp_socket("header\n1: a b 07 00:00 0 0 0 0 9 2 p\n", 9), None, "no drops column");
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = parse_pid_stat(&s);
            let _ = parse_net_dev(&s);
            let _ = parse_proc_stat(&s);
            let _ = parse_meminfo(&s);
            let _ = parse_cgroup_limit(&s);
            let _ = parse_children(&s);
            let _ = parse_udp_socket(&s, 1);
        }
    }
}
