//! `perfmon-bench proxy-hop`: what perfmon's Runtime API proxy adds to one Runtime API call (issue
//! 14, design a). One kept-alive HTTP/1.1 connection straight to an upstream and one through
//! [`perfmon::runtime_proxy`] to the same upstream, used alternately; per request the time from the
//! first byte written to the last byte of the answer read. The upstream is the sandbox's embedded
//! CloudWatch server (hyper, loopback, no simulated delay): what it answers does not matter, the
//! difference between the two paths is the proxy's hop. Requests: `GET …/invocation/next` and
//! `POST …/invocation/{id}/response` with a 1 KiB body, the two calls a runtime makes per invoke.

use std::time::{Duration, Instant};

use perfmon_sandbox::cloudwatch::CloudWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Percentiles of one request kind, microseconds.
#[derive(Debug, Clone)]
pub struct Hop {
    pub what: &'static str,
    pub direct_p50_us: f64,
    pub direct_p99_us: f64,
    pub proxied_p50_us: f64,
    pub proxied_p99_us: f64,
}

/// Sends `req` and reads one answer (Content-Length framed) on a kept-alive connection.
async fn exchange(s: &mut TcpStream, req: &[u8], buf: &mut Vec<u8>) -> std::io::Result<Duration> {
    let t = Instant::now();
    s.write_all(req).await?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Ok(t.elapsed());
            }
        }
    }
}

fn pct(v: &[f64], q: f64) -> f64 {
    crate::stats::percentile(v, q).unwrap_or(f64::NAN)
}

/// Measures `n` requests of each kind on each path.
pub async fn measure(n: usize) -> Result<Vec<Hop>, String> {
    let cw = CloudWatch::start().await.map_err(|e| e.to_string())?;
    let upstream = cw.addr().to_string();
    let proxy = perfmon::runtime_proxy::RuntimeProxy::start(0, &upstream)
        .await
        .ok_or_else(|| "cannot start the proxy".to_owned())?;
    let mut direct = TcpStream::connect(&upstream).await.map_err(|e| e.to_string())?;
    let mut proxied = TcpStream::connect(("127.0.0.1", proxy.port)).await.map_err(|e| e.to_string())?;
    let _ = (direct.set_nodelay(true), proxied.set_nodelay(true));
    let body = vec![b'x'; 1024];
    let mut post = format!(
        "POST /2018-06-01/runtime/invocation/bench-id/response HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    post.extend_from_slice(&body);
    let get = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for (what, req) in [("GET /next", &get), ("POST /response (1 KiB)", &post)] {
        let (mut d, mut p) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n + 100 {
            let a = exchange(&mut direct, req, &mut buf).await.map_err(|e| e.to_string())?;
            let b = exchange(&mut proxied, req, &mut buf).await.map_err(|e| e.to_string())?;
            if i >= 100 {
                // The first 100 warm both paths up.
                d.push(a.as_secs_f64() * 1e6);
                p.push(b.as_secs_f64() * 1e6);
            }
        }
        out.push(Hop {
            what,
            direct_p50_us: pct(&d, 50.0),
            direct_p99_us: pct(&d, 99.0),
            proxied_p50_us: pct(&p, 50.0),
            proxied_p99_us: pct(&p, 99.0),
        });
    }
    proxy.remove_marker();
    Ok(out)
}

/// The markdown table of [`measure`]'s result.
pub fn table(hops: &[Hop], n: usize, load: &str) -> String {
    let mut s = format!(
        "Runtime API proxy hop: {n} requests per kind and path, kept-alive loopback connections, load average {load}\n\n\
         | request | direct p50 / p99 (µs) | through the proxy p50 / p99 (µs) | added p50 / p99 (µs) |\n|---|---|---|---|\n"
    );
    for h in hops {
        s += &format!(
            "| {} | {:.0} / {:.0} | {:.0} / {:.0} | {:.0} / {:.0} |\n",
            h.what,
            h.direct_p50_us,
            h.direct_p99_us,
            h.proxied_p50_us,
            h.proxied_p99_us,
            h.proxied_p50_us - h.direct_p50_us,
            h.proxied_p99_us - h.direct_p99_us
        );
    }
    s
}
