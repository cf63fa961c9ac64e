//! The StatsD/DogStatsD listener (docs/reference.md §5) on UDP 127.0.0.1:`PERFMON_STATSD_PORT`, and on a
//! Unix datagram socket at `PERFMON_STATSD_SOCKET` when set.
//!
//! One task per socket receives into a reused 64 KiB buffer (larger than any UDP datagram, and
//! than the 8 KiB DogStatsD clients send over a Unix socket), parses with
//! [`perfmon_protocol::statsd`] (borrowing, no allocation per line) and records each datagram's
//! valid lines in one call to the sink. Malformed lines, unsupported types and timestamps outside
//! CloudWatch's window are counted as dropped by reason; they never stop the other lines.
//!
//! Sample rates (`|@r`): a counter's value is scaled by 1/r; a distribution's value is recorded
//! round(1/r) times (at most [`MAX_REPLICAS`]), because the aggregator takes plain values, not
//! weighted ones: so count, sum and percentiles estimate the unsampled stream (exactly when 1/r is
//! an integer). A gauge ignores the rate.
//!
//! **Bursts.** A UDP datagram that arrives while the socket's receive queue is full is discarded by
//! the kernel, and the sender is not told (udp(7)). The queue is made as large as the system allows
//! ([`size_receive_buffer`]: SO_RCVBUF up to `net.core.rmem_max`, socket(7)), and what the kernel
//! still drops is read from the socket's `drops` column in `/proc/net/udp` ([`KernelDrops`]):
//! shown in `/v1/health`, logged once per flush window and sent as the `StatsdDatagramsDropped`
//! metric. A sender on the Unix datagram socket is never dropped on: when perfmon's queue is full a
//! blocking `send` waits and a non-blocking one gets `EAGAIN` (unix(7)), which DogStatsD clients
//! retry or count.
//!
//! A flush window reads the table only if a datagram arrived since the last reading. The kernel
//! drops a datagram only when the queue is full, so a drop always has queued datagrams behind it,
//! and receiving them (at the latest in the drain before the SHUTDOWN flush) triggers the next
//! reading: the drop is sent a window later at most, never lost. A window without StatsD traffic
//! costs no read of the table, whose cost grows with the host's UDP hash table, not with perfmon's
//! socket.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use perfmon_protocol::cloudwatch::Dimension;
use perfmon_protocol::custom::{self, Kind, MetricEntry, Resolution, Validator};
use perfmon_protocol::procfs::{parse_udp_socket, UdpSocketLine};
use perfmon_protocol::statsd::{parse_datagram_with, Line};
use tokio::net::{UdpSocket, UnixDatagram};

use super::{SampleSink, Stats};

/// Receive buffer: the largest UDP payload fits.
pub const BUFFER_BYTES: usize = 65_536;
/// Most copies of one distribution value a sample rate can ask for (rate 0.001).
pub const MAX_REPLICAS: usize = 1_000;
/// Where Linux says how large a receive buffer SO_RCVBUF may ask for (socket(7)).
pub const RMEM_MAX_PATH: &str = "/proc/sys/net/core/rmem_max";
/// The kernel's table of IPv4 UDP sockets, with each one's drop counter (proc(5)).
pub const PROC_NET_UDP: &str = "/proc/net/udp";

/// A StatsD socket: UDP, or the Unix datagram socket of `PERFMON_STATSD_SOCKET`.
#[derive(Debug)]
pub enum Socket {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl Socket {
    /// Receives one datagram into `buf`'s spare capacity (`buf` is cleared first): the kernel
    /// writes only the datagram's bytes, so a 64 KiB buffer costs the memory its datagrams touch,
    /// not 64 KiB zeroed for every buffer.
    async fn recv(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        buf.clear();
        match self {
            Socket::Udp(s) => s.recv_buf(buf).await,
            Socket::Unix(s) => s.recv_buf(buf).await,
        }
    }

    fn try_recv(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        buf.clear();
        match self {
            Socket::Udp(s) => s.try_recv_buf(buf),
            Socket::Unix(s) => s.try_recv_buf(buf),
        }
    }
}

/// The socket and what a datagram needs.
pub struct Receiver {
    pub socket: Socket,
    pub sink: Arc<dyn SampleSink>,
    pub validator: Validator,
    pub clock: fn() -> i64,
    pub stats: Arc<Stats>,
    /// The buffer of [`Receiver::drain_now`], kept between calls (a drain runs before every
    /// end-of-invoke flush; a fresh 64 KiB allocation each time is an `mmap` and a `munmap`).
    pub drain_buf: std::sync::Mutex<Vec<u8>>,
}

/// Receive loop. Errors (e.g. ICMP-induced ones) are logged and the loop goes on after a pause.
pub async fn serve(receiver: Arc<Receiver>) {
    let mut buf = Vec::with_capacity(BUFFER_BYTES);
    loop {
        match receiver.socket.recv(&mut buf).await {
            Ok(n) => receiver.datagram(buf.get(..n).unwrap_or_default()),
            Err(error) => {
                tracing::warn!(%error, "StatsD listener: receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Sets the UDP socket's receive buffer to `wanted` bytes, or else to `net.core.rmem_max` (what an
/// unprivileged process may ask for: SO_RCVBUFFORCE needs CAP_NET_ADMIN, which Lambda does not
/// grant), and returns the size the kernel reports back (it doubles the request for its own
/// bookkeeping, socket(7)). Never fails: a buffer that cannot be set stays as it was, logged.
pub fn size_receive_buffer(socket: &UdpSocket, wanted: Option<usize>) -> Option<usize> {
    let target = wanted.or_else(|| std::fs::read_to_string(RMEM_MAX_PATH).ok()?.trim().parse().ok());
    if let Some(bytes) = target {
        if let Err(error) = rustix::net::sockopt::set_socket_recv_buffer_size(socket, bytes) {
            tracing::warn!(bytes, %error, "StatsD listener: cannot set SO_RCVBUF; keeping the default");
        }
    }
    rustix::net::sockopt::socket_recv_buffer_size(socket).ok()
}

/// The kernel's drop counter of one UDP socket, found by the socket's inode in `/proc/net/udp`.
#[derive(Debug)]
pub struct KernelDrops {
    inode: u64,
    table: PathBuf,
    /// The total at the end of the last flush window.
    reported: AtomicU64,
    /// Datagrams received on the socket ([`KernelDrops::received`]), and that count at the last
    /// window's reading of the table.
    received: AtomicU64,
    received_at_read: AtomicU64,
}

impl KernelDrops {
    /// The counter of `socket`; `None` if its inode cannot be read.
    pub fn of(socket: &UdpSocket) -> Option<KernelDrops> {
        let inode = rustix::fs::fstat(socket).ok()?.st_ino;
        Some(Self::with_table(inode, PathBuf::from(PROC_NET_UDP)))
    }

    /// The counter of the socket with `inode` in the table at `table` (tests use a file of theirs).
    pub fn with_table(inode: u64, table: PathBuf) -> KernelDrops {
        KernelDrops {
            inode,
            table,
            reported: AtomicU64::new(0),
            received: AtomicU64::new(0),
            received_at_read: AtomicU64::new(0),
        }
    }

    /// One datagram was received on the socket.
    pub fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// The socket's line now; `None` if the table cannot be read or has no such socket.
    pub fn read(&self) -> Option<UdpSocketLine> {
        parse_udp_socket(&std::fs::read_to_string(&self.table).ok()?, self.inode)
    }

    /// Ends a flush window: `(dropped during it, dropped in all)`; `None` when unreadable. Without
    /// a datagram received since the last reading, nothing can have been dropped since (see the
    /// module documentation): `(0, the total so far)`, and the table is not read.
    pub fn window(&self) -> Option<(u64, u64)> {
        let received = self.received.load(Ordering::Relaxed);
        if self.received_at_read.swap(received, Ordering::Relaxed) == received {
            return Some((0, self.reported.load(Ordering::Relaxed)));
        }
        let total = self.read()?.drops;
        let before = self.reported.fetch_max(total, Ordering::Relaxed);
        Some((total.saturating_sub(before), total))
    }
}

/// Binds a Unix datagram socket at `path`, removing a socket file left there by an earlier
/// process first (as DogStatsD does); anything else at `path` is left alone and the bind fails.
pub fn bind_unix(path: &Path) -> io::Result<UnixDatagram> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        std::fs::remove_file(path)?;
    }
    UnixDatagram::bind(path)
}

impl Receiver {
    /// Records the datagrams already queued on the socket without waiting; returns how many.
    pub fn drain_now(&self) -> usize {
        let mut buf = self.drain_buf.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        buf.reserve(BUFFER_BYTES);
        let mut n = 0;
        while let Ok(len) = self.socket.try_recv(&mut buf) {
            self.datagram(buf.get(..len).unwrap_or_default());
            n += 1;
        }
        n
    }

    /// Handles one datagram.
    pub fn datagram(&self, bytes: &[u8]) {
        let now_ms = (self.clock)();
        let mut entries = Vec::new();
        let mut skipped_tags = 0;
        for line in parse_datagram_with(bytes, &self.validator) {
            match line {
                Ok(line) => {
                    skipped_tags += line.skipped_tags as u64;
                    if let Some(ts) = line.timestamp_ms {
                        if let Err(e) = custom::check_timestamp(ts, now_ms) {
                            self.stats.drop_n("statsd_timestamp_out_of_window", 1, &e);
                            continue;
                        }
                    }
                    entries.push(entry(&line));
                }
                Err(e) => self.stats.drop_n(e.reason(), 1, &e),
            }
        }
        let kept = entries.len();
        let refused = if entries.is_empty() { Vec::new() } else { self.sink.record(entries, now_ms) };
        for r in &refused {
            tracing::debug!(reason = r.reason, message = %r.message, "StatsD line not kept by the aggregator");
        }
        if let (Socket::Udp(_), Some(k)) = (&self.socket, self.stats.kernel_drops.get()) {
            k.received();
        }
        let mut g = self.stats.lock();
        match self.socket {
            Socket::Udp(_) => g.statsd_datagrams += 1,
            Socket::Unix(_) => g.statsd_unix_datagrams += 1,
        }
        g.statsd_lines_accepted += (kept - refused.len()) as u64;
        g.statsd_tags_skipped += skipped_tags;
    }
}

/// The metric entry of a line, the sample rate applied (see the module doc).
pub fn entry(line: &Line<'_>) -> MetricEntry {
    let values: Vec<f64> = match line.kind {
        Kind::Distribution if line.sample_rate < 1.0 => {
            let copies = (line.weight().round() as usize).clamp(1, MAX_REPLICAS);
            line.values().flat_map(|v| std::iter::repeat_n(v, copies)).collect()
        }
        _ => line.samples().map(|(v, _)| v).collect(),
    };
    let mut dimensions: Vec<Dimension> = line.dimensions().map(|(n, v)| Dimension::new(n, v)).collect();
    dimensions.sort();
    MetricEntry {
        name: line.name.to_owned(),
        values,
        unit: line.unit,
        kind: line.kind,
        dimensions,
        timestamp_ms: line.timestamp_ms,
        resolution: Resolution::Standard,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::VecSink;
    use super::super::{Ingest, IngestConfig};
    use super::*;
    use perfmon_protocol::statsd::parse_datagram;

    fn now() -> i64 {
        1_767_225_600_000
    }

    fn one(line: &str) -> MetricEntry {
        entry(&parse_datagram(line.as_bytes()).next().unwrap().unwrap())
    }

    #[test]
    fn sample_rates_scale_counters_and_replicate_distributions() {
        let c = one("hits:3|c|@0.1");
        assert_eq!((c.kind, c.values.len()), (Kind::Counter, 1));
        assert!((c.values[0] - 30.0).abs() < 1e-9);
        let d = one("lat:4:8|ms|@0.25|#route:/a,env:prod");
        assert_eq!((d.kind, d.unit), (Kind::Distribution, "Milliseconds"));
        assert_eq!(d.values, [4.0, 4.0, 4.0, 4.0, 8.0, 8.0, 8.0, 8.0]);
        assert_eq!(d.dimensions, [Dimension::new("env", "prod"), Dimension::new("route", "/a")]);
        assert_eq!(one("g:7|g|@0.5").values, [7.0]);
        assert_eq!(one("tiny:1|d|@0.00001").values.len(), MAX_REPLICAS);
        assert_eq!(one("t:1|h|@0.3").values.len(), 3);
    }

    async fn send(addr: std::net::SocketAddr, datagrams: &[&[u8]]) {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for d in datagrams {
            client.send_to(d, addr).await.unwrap();
        }
    }

    /// Waits until `cond` holds (the receive loop runs on another task).
    async fn eventually(mut cond: impl FnMut() -> bool) {
        for _ in 0..200 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not met within 2 s");
    }

    #[tokio::test]
    async fn datagrams_are_recorded_and_bad_lines_counted() {
        let sink = Arc::new(VecSink::default());
        let mut cfg = IngestConfig::new(0, Some(0), ["FunctionName"]);
        cfg.clock = now;
        let ingest = Ingest::start(cfg, sink.clone()).await;
        let addr = ingest.statsd_addr().unwrap();
        send(
            addr,
            &[
                b"a:1|c\nb:2|g|#env:prod,bare\r\nbad line\nc:1|s\n",
                b"\xff\xfe garbage",
                b"refuse-me:1|c\nold:1|c|T1000\nd:5|ms\n",
            ],
        )
        .await;
        eventually(|| ingest.counters().statsd_datagrams == 3).await;
        let got = sink.take();
        let names: Vec<&str> = got.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "d"]);
        assert_eq!(got[1].dimensions, [Dimension::new("env", "prod")]);
        let c = ingest.counters();
        assert_eq!(c.statsd_lines_accepted, 3);
        assert_eq!(c.statsd_tags_skipped, 1);
        assert_eq!(c.dropped.get("statsd_missing_value"), Some(&1));
        assert_eq!(c.dropped.get("statsd_set_unsupported"), Some(&1));
        assert_eq!(c.dropped.get("statsd_invalid_utf8"), Some(&1));
        assert_eq!(c.dropped.get("statsd_timestamp_out_of_window"), Some(&1));
        assert_eq!(c.dropped.get("series_cap"), None, "the sink counts its own refusals");
        assert_eq!(c.http_listener.split(' ').next(), Some("listening"));
    }

    #[tokio::test]
    async fn drain_now_takes_what_is_queued() {
        let sink = Arc::new(VecSink::default());
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        // No receive loop: only drain_now reads the socket.
        let r = Receiver {
            socket: Socket::Udp(socket),
            sink: sink.clone(),
            validator: Validator::default(),
            clock: now,
            stats,
            drain_buf: Default::default(),
        };
        send(addr, &[b"x:1|c", b"y:2|c"]).await;
        let mut drained = 0;
        for _ in 0..100 {
            drained += r.drain_now();
            if drained == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(drained, 2);
        assert_eq!(sink.take().len(), 2);
        assert_eq!(r.drain_now(), 0, "nothing left, and no waiting");
    }

    #[tokio::test]
    async fn kernel_drops_come_from_the_sockets_line_and_windows_take_the_increase() {
        // The real table has the real socket, found by its inode, with no drops yet.
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let k = KernelDrops::of(&socket).unwrap();
        assert_eq!(k.read().map(|l| l.drops), Some(0), "{:?}", std::fs::read_to_string(PROC_NET_UDP));
        assert!(size_receive_buffer(&socket, Some(65_536)).unwrap() >= 65_536, "the kernel doubles the request");

        // A table of our own: each window is the increase since the previous one.
        let dir = std::env::temp_dir().join(format!("perfmon-kernel-drops-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let table = dir.join("udp");
        let write = |drops: u64| {
            let line = format!(
                "  1: 0100007F:1FBD 00000000:0000 07 00000000:00000300 00:00000000 00000000 0 0 4242 2 p {drops}"
            );
            std::fs::write(&table, format!("  sl  local_address ...\n{line}\n")).unwrap();
        };
        let k = KernelDrops::with_table(4242, table.clone());
        write(0);
        k.received();
        assert_eq!(k.window(), Some((0, 0)));
        write(17);
        assert_eq!(k.read(), Some(UdpSocketLine { rx_queue: 0x300, drops: 17 }));
        assert_eq!(k.window(), Some((0, 0)), "no datagram since the last reading: the table is not read");
        k.received();
        assert_eq!(k.window(), Some((17, 17)), "the drop is sent once its queued datagrams are received");
        k.received();
        assert_eq!(k.window(), Some((0, 17)), "nothing new");
        write(20);
        k.received();
        assert_eq!(k.window(), Some((3, 20)));
        assert_eq!(k.window(), Some((0, 20)));
        std::fs::remove_file(&table).unwrap();
        k.received();
        assert_eq!(k.window(), None, "unreadable: unknown, not zero");
        std::fs::remove_dir(&dir).unwrap();
    }

    #[tokio::test]
    async fn the_unix_socket_replaces_a_stale_file_records_and_is_removed() {
        let dir = std::env::temp_dir().join(format!("perfmon-uds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("statsd.sock");
        drop(std::os::unix::net::UnixDatagram::bind(&path).unwrap()); // stale, from an "earlier process"
        let sink = Arc::new(VecSink::default());
        let mut cfg = IngestConfig::new(0, None, ["FunctionName"]);
        cfg.statsd_socket = Some(path.clone());
        cfg.clock = now;
        let ingest = Ingest::start(cfg, sink.clone()).await;
        assert_eq!(ingest.counters().statsd_socket_listener, format!("listening on {}", path.display()));
        assert_eq!(ingest.counters().statsd_datagrams_dropped, None, "no UDP socket: unknown");
        let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
        client.send_to(b"u:1|c\nv:2|ms", &path).unwrap();
        eventually(|| ingest.counters().statsd_unix_datagrams == 1).await;
        assert_eq!(ingest.counters().statsd_lines_accepted, 2);
        assert_eq!(ingest.counters().statsd_datagrams, 0, "UDP counts its own");
        ingest.remove_statsd_socket();
        assert!(!path.exists());
        ingest.remove_statsd_socket(); // again: nothing to do, no complaint

        // A regular file at the path is not ours to delete: the bind fails, the rest works.
        std::fs::write(&path, b"user data").unwrap();
        let mut cfg = IngestConfig::new(0, Some(0), ["FunctionName"]);
        cfg.statsd_socket = Some(path.clone());
        let ingest = Ingest::start(cfg, sink).await;
        assert!(ingest.counters().statsd_socket_listener.starts_with("bind failed on "));
        assert!(ingest.statsd_addr().is_some() && ingest.http_addr().is_some());
        drop(ingest);
        assert_eq!(std::fs::read(&path).unwrap(), b"user data");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_listener_that_cannot_bind_leaves_the_other_working() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy_tcp = tcp.local_addr().unwrap().port();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let busy_udp = udp.local_addr().unwrap().port();

        let sink = Arc::new(VecSink::default());
        let ingest = Ingest::start(IngestConfig::new(busy_tcp, Some(0), ["FunctionName"]), sink.clone()).await;
        assert!(ingest.http_addr().is_none());
        assert!(ingest.counters().http_listener.starts_with("bind failed on 127.0.0.1:"));
        send(ingest.statsd_addr().unwrap(), &[b"still:1|c"]).await;
        eventually(|| ingest.counters().statsd_lines_accepted == 1).await;

        let ingest2 = Ingest::start(IngestConfig::new(0, Some(busy_udp), ["FunctionName"]), sink).await;
        assert!(ingest2.statsd_addr().is_none());
        assert!(ingest2.http_addr().is_some());
        assert!(ingest2.counters().statsd_listener.starts_with("bind failed"));
        assert_eq!(ingest2.drain_statsd(), 0);
        drop((tcp, udp));
    }
}
