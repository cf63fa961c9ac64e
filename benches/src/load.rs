//! Load generators, blocking and small so that their own cost is known: an HTTP/1.1 client that
//! keeps `depth` requests in flight on one keep-alive `TcpStream` (depth 1 = request/response, as
//! a function posts), and a UDP sender for StatsD. Both target 127.0.0.1 only, and stop by
//! themselves after a bounded duration or count.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("only 127.0.0.1 is a valid target, not {0}")]
    NotLoopback(SocketAddr),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed HTTP response: {0}")]
    Http(String),
    #[error("the server closed the connection")]
    Closed,
}

/// What one HTTP load run achieved (generator side).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpOutcome {
    /// Responses received, and how many of them were 202.
    pub responses: u64,
    pub accepted_202: u64,
    pub elapsed: Duration,
}

fn check_loopback(addr: SocketAddr) -> Result<(), LoadError> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(LoadError::NotLoopback(addr))
    }
}

/// A `POST path` request with a JSON body, keep-alive.
pub fn post_request(port: u16, path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A `POST path` request with a binary body of `content_type`, keep-alive.
pub fn post_binary(port: u16, path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Incremental parser of HTTP/1.1 responses with `Content-Length` bodies.
#[derive(Debug, Default)]
pub struct ResponseReader {
    buf: Vec<u8>,
}

impl ResponseReader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The status of the next complete response, removed from the buffer; `None` if incomplete.
    pub fn next_status(&mut self) -> Result<Option<u16>, LoadError> {
        let Some(head_end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|e| LoadError::Http(e.to_string()))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| LoadError::Http(format!("status line {status_line:?}")))?;
        let mut length = 0usize;
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().map_err(|_| LoadError::Http(format!("content-length {v:?}")))?;
                }
            }
        }
        let total = head_end + 4 + length;
        if self.buf.len() < total {
            return Ok(None);
        }
        self.buf.drain(..total);
        Ok(Some(status))
    }
}

/// Sends the `requests` (cycled) on one keep-alive connection to `addr`, `depth` in flight, until
/// `duration` has passed or `max_requests` were sent; then waits for the outstanding answers.
pub fn http_run(
    addr: SocketAddr,
    requests: &[Vec<u8>],
    depth: usize,
    duration: Duration,
    max_requests: u64,
) -> Result<HttpOutcome, LoadError> {
    check_loopback(addr)?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let depth = depth.max(1);
    let mut reader = ResponseReader::default();
    let mut out = HttpOutcome::default();
    let mut sent: u64 = 0;
    let mut next = 0usize;
    let mut batch: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let started = Instant::now();
    let mut in_flight = 0usize;
    loop {
        let sending = started.elapsed() < duration && sent < max_requests;
        if sending && in_flight < depth {
            batch.clear();
            while in_flight < depth && sent < max_requests {
                batch.extend_from_slice(&requests[next % requests.len()]);
                next += 1;
                sent += 1;
                in_flight += 1;
            }
            stream.write_all(&batch)?;
        }
        if in_flight == 0 {
            break;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(LoadError::Closed);
        }
        reader.push(&chunk[..n]);
        while let Some(status) = reader.next_status()? {
            in_flight -= 1;
            out.responses += 1;
            if status == 202 {
                out.accepted_202 += 1;
            }
        }
    }
    out.elapsed = started.elapsed();
    Ok(out)
}

/// [`http_run`] on `connections` connections at once (one thread each); outcomes summed, elapsed
/// is the longest.
pub fn http_parallel(
    addr: SocketAddr,
    requests: &[Vec<u8>],
    connections: usize,
    depth: usize,
    duration: Duration,
    max_requests_each: u64,
) -> Result<HttpOutcome, LoadError> {
    let results: Vec<Result<HttpOutcome, LoadError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..connections)
            .map(|_| s.spawn(|| http_run(addr, requests, depth, duration, max_requests_each)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(Err(LoadError::Closed))).collect()
    });
    let mut total = HttpOutcome::default();
    for r in results {
        let r = r?;
        total.responses += r.responses;
        total.accepted_202 += r.accepted_202;
        total.elapsed = total.elapsed.max(r.elapsed);
    }
    Ok(total)
}

/// What one StatsD run sent (generator side).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UdpOutcome {
    pub datagrams: u64,
    pub lines: u64,
    pub elapsed: Duration,
}

/// Sends the `datagrams` (cycled; each holds `lines_each` lines) to 127.0.0.1:`port` until
/// `duration` has passed or `max_datagrams` were sent. `pace`: at most this many datagrams per
/// second (0 = as fast as the socket takes them).
pub fn udp_run(
    port: u16,
    datagrams: &[Vec<u8>],
    lines_each: u64,
    duration: Duration,
    max_datagrams: u64,
    pace: u64,
) -> Result<UdpOutcome, LoadError> {
    let target = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    check_loopback(target)?;
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    socket.connect(target)?;
    let started = Instant::now();
    let mut out = UdpOutcome::default();
    let mut i = 0usize;
    while out.datagrams < max_datagrams {
        let elapsed = started.elapsed();
        if elapsed >= duration {
            break;
        }
        if pace > 0 {
            let due = (elapsed.as_secs_f64() * pace as f64) as u64;
            if out.datagrams >= due {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
        }
        match socket.send(&datagrams[i % datagrams.len()]) {
            Ok(_) => {
                out.datagrams += 1;
                out.lines += lines_each;
            }
            // ECONNREFUSED after an ICMP from a port nobody listens on: keep going (bounded anyway).
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e.into()),
        }
        i += 1;
    }
    out.elapsed = started.elapsed();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_split_across_reads() {
        let mut r = ResponseReader::default();
        let two = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 14\r\n\r\n{\"accepted\":1}HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n{}";
        r.push(&two[..30]);
        assert_eq!(r.next_status().ok().flatten(), None);
        r.push(&two[30..95]);
        assert_eq!(r.next_status().ok().flatten(), Some(202));
        assert_eq!(r.next_status().ok().flatten(), None);
        r.push(&two[95..]);
        assert_eq!(r.next_status().ok().flatten(), Some(400));
        assert_eq!(r.next_status().ok().flatten(), None);
    }

    #[test]
    fn malformed_status_is_an_error() {
        let mut r = ResponseReader::default();
        r.push(b"garbage\r\n\r\n");
        assert!(r.next_status().is_err());
    }

    #[test]
    fn pipelined_against_a_tiny_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
            let mut buf = vec![0u8; 65536];
            let mut seen = Vec::new();
            let mut answered = 0;
            while answered < 10 {
                let n = s.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).into_owned();
                let complete = text.matches("{}").count();
                while answered < complete {
                    let _ = s.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\nok");
                    answered += 1;
                }
            }
        });
        let req = post_request(addr.port(), "/v1/metrics", "{}");
        let out = http_run(addr, &[req], 4, Duration::from_secs(5), 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((out.responses, out.accepted_202), (10, 10));
        let _ = server.join();
    }

    #[test]
    fn refuses_non_loopback_targets() {
        let addr: SocketAddr = "192.0.2.1:80".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(http_run(addr, &[vec![]], 1, Duration::ZERO, 1), Err(LoadError::NotLoopback(_))));
    }
}
