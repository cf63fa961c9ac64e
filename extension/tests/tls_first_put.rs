//! What TLS adds to the first PutMetricData of a fresh CloudWatch client, for the TLS backend this
//! build has (`tls-ring`, the default, or `tls-aws-lc`). Not part of `cargo test`: run it by hand,
//! once per backend, optimised and without LTO (docs/design.md, "TLS backend"):
//!
//! ```sh
//! CARGO_PROFILE_RELEASE_LTO=false cargo test --release -p perfmon --test tls_first_put -- --ignored --nocapture
//! CARGO_PROFILE_RELEASE_LTO=false cargo test --release -p perfmon --no-default-features --features tls-aws-lc \
//!     --test tls_first_put -- --ignored --nocapture
//! ```
//!
//! A local HTTPS server (tokio-rustls with the same crypto provider, on its own thread and runtime,
//! answering every request with an empty RPC v2 CBOR body, i.e. a successful PutMetricData) has a
//! self-signed P-256 certificate for `localhost` (`tests/fixtures/tls-localhost.{crt,key}`, test
//! only). The client trusts it through `SSL_CERT_FILE` = the system CA bundle plus that certificate,
//! so its root store is as large as in production. Each round makes a new [`CloudWatchSink`] (the
//! production code path: `aws_config` load, the feature's HTTP client, lazy connector) and times
//!
//! * `https first`: its first `put` over HTTPS: client build, rustls config and root store, TCP
//!   connect, TLS 1.3 handshake, one request;
//! * `https second`: its second `put` (pooled connection: no handshake);
//! * `http first`: the same first `put` over plain HTTP to the same server's second port.
//!
//! `https first - http first` is what TLS costs the first flush; the handshake time includes the
//! server's side of it (same machine).
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use perfmon::sinks::cloudwatch::CloudWatchSink;
use perfmon_protocol::cloudwatch::MetricDatum;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

const CERT: &[u8] = include_bytes!("fixtures/tls-localhost.crt");
const KEY: &[u8] = include_bytes!("fixtures/tls-localhost.key");
const ROUNDS: usize = 30;

// The extension's choice: `tls-aws-lc` when it is on, else `tls-ring` (tools/src/cwclient.rs).
#[cfg(feature = "tls-aws-lc")]
const BACKEND: &str = "aws-lc-rs";
#[cfg(not(feature = "tls-aws-lc"))]
const BACKEND: &str = "ring";

fn provider() -> rustls::crypto::CryptoProvider {
    #[cfg(feature = "tls-aws-lc")]
    return rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(not(feature = "tls-aws-lc"))]
    return rustls::crypto::ring::default_provider();
}

async fn answer(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .header("smithy-protocol", "rpc-v2-cbor")
        .header("content-type", "application/cbor")
        .body(Full::new(Bytes::from_static(&[0xa0])))
        .unwrap())
}

/// Starts the HTTPS and the HTTP server on a thread of their own; returns their ports.
fn start_servers() -> (u16, u16) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let certs = vec![CertificateDer::from_pem_slice(CERT).unwrap()];
            let key = PrivateKeyDer::from_pem_slice(KEY).unwrap();
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send((tls.local_addr().unwrap().port(), plain.local_addr().unwrap().port())).unwrap();
            let serve = |io| {
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(io), hyper::service::service_fn(answer))
                        .await;
                })
            };
            let tls_loop = async {
                loop {
                    let (tcp, _) = tls.accept().await.unwrap();
                    // Without it, Nagle holds the response behind the session tickets for a delayed ACK (40 ms).
                    tcp.set_nodelay(true).unwrap();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(answer))
                                .await;
                        }
                    });
                }
            };
            let plain_loop = async {
                loop {
                    let (tcp, _) = plain.accept().await.unwrap();
                    tcp.set_nodelay(true).unwrap();
                    serve(tcp);
                }
            };
            tokio::join!(tls_loop, plain_loop);
        });
    });
    rx.recv().unwrap()
}

fn datums() -> Vec<MetricDatum> {
    (0..20).map(|i| MetricDatum { metric_name: format!("M{i}"), value: Some(i as f64), ..Default::default() }).collect()
}

async fn put(sink: &CloudWatchSink) -> Duration {
    let (_tx, mut cutoff) = tokio::sync::watch::channel(None);
    let started = Instant::now();
    let out = sink.put(datums(), tokio::time::Instant::now() + Duration::from_secs(5), &mut cutoff).await;
    let took = started.elapsed();
    assert_eq!(out.sent, 20, "{:?}", out.last_error);
    took
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

#[test]
#[ignore = "a measurement: run by hand (see the module doc)"]
fn tls_cost_of_the_first_put() {
    let (tls_port, plain_port) = start_servers();
    let bundle = std::env::temp_dir().join(format!("perfmon-tls-bundle-{}.pem", std::process::id()));
    let mut pem = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    let system_roots = pem.windows(27).filter(|w| w == b"-----BEGIN CERTIFICATE-----").count();
    pem.extend_from_slice(CERT);
    std::fs::write(&bundle, &pem).unwrap();
    std::env::set_var("SSL_CERT_FILE", &bundle);
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_REGION", "us-east-1");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (mut https_first, mut https_second, mut http_first) = (vec![], vec![], vec![]);
    let mut first_in_process = None;
    for round in 0..ROUNDS {
        rt.block_on(async {
            std::env::set_var("AWS_ENDPOINT_URL_CLOUDWATCH", format!("https://localhost:{tls_port}"));
            let sink = CloudWatchSink::new("TlsProbe");
            let first = put(&sink).await;
            let second = put(&sink).await;
            std::env::set_var("AWS_ENDPOINT_URL_CLOUDWATCH", format!("http://127.0.0.1:{plain_port}"));
            let plain = put(&CloudWatchSink::new("TlsProbe")).await;
            if round == 0 {
                first_in_process = Some((first, plain));
            } else {
                https_first.push(first);
                https_second.push(second);
                http_first.push(plain);
            }
        });
    }
    let _ = std::fs::remove_file(&bundle);
    let (f0, p0) = first_in_process.unwrap();
    let (hf, hs, pf) = (median_ms(https_first), median_ms(https_second), median_ms(http_first));
    println!(
        "tls {BACKEND}: root store {system_roots}+1 certs; first round in the process: https first {:.2} ms, \
         http first {:.2} ms; medians of {} later rounds: https first {hf:.2} ms, https second {hs:.2} ms, \
         http first {pf:.2} ms, TLS cost (https first - http first) {:.2} ms",
        f0.as_secs_f64() * 1e3,
        p0.as_secs_f64() * 1e3,
        ROUNDS - 1,
        hf - pf,
    );
}
