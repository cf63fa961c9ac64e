//! perfmon's HTTP(S) client for the AWS SDK (feature `tls-ring`): hyper 1 + hyper-rustls + rustls with
//! ring, implementing the SDK's `HttpClient` / `HttpConnector` traits (aws-smithy-runtime-api).
//!
//! Why not `aws-smithy-http-client`'s `build_https()`: it keeps every DER certificate of the system's
//! CA bundle in a process-wide static (`NATIVE_ROOTS`) for the life of the process, parses them again
//! into a new `RootCertStore` for every connector it builds (one per distinct connect/read timeout, plus
//! one more that `validate_base_client_config` builds and drops when a client is configured), and
//! measured about 550 kB of perfmon's anonymous memory (docs/benchmarks.md, "Memory, after"). Here:
//!
//! * the trust is the same: the roots are what `rustls-native-certs` finds (`SSL_CERT_FILE`,
//!   `SSL_CERT_DIR`, else the system's bundle and directory through `openssl-probe`), the same function
//!   the SDK's client calls, with rustls' WebPKI verifier and the SDK's cipher-suite list;
//! * they are parsed into one `RootCertStore` once per [`Client`], and the DER copies are dropped
//!   as soon as they are parsed;
//! * every connector of the client (one per connect/read timeout pair, as the SDK's) shares that one
//!   rustls configuration; a connector is built on first use, none ahead of it, and the roots at
//!   the client's first `https://` connection, not when an SDK client is configured with it (the
//!   SDK's client loads them in `validate_base_client_config`), and never for a client that only
//!   reaches plain `http://` endpoints (a local CloudWatch or moto). In the extension that is the
//!   first flush, on the event loop, instead of the blocking thread that builds the client at the
//!   first INVOKE: measured on the layer binary (`scripts/rss-probe.sh`), loading them on that
//!   thread, beside the invoke the event loop is handling, raised the peak RSS by 0.55 MB
//!   (docs/benchmarks.md, "Memory, after");
//! * no proxy (the SDK's client had none configured either) and HTTP/1.1 only (PutMetricData and
//!   GetMetricData are single request/response calls).
//!
//! Errors are sorted as the SDK's client sorts them (timeout, I/O, user, other), so that its retry
//! strategy and perfmon's outcome classifier (`extension/src/sinks/cloudwatch.rs`) see the same kinds:
//! a failure to connect stays a `hyper_util::client::legacy::Error` with `is_connect()` in the chain.

use std::error::Error as StdError;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;

/// The TLS 1.3 and 1.2 suites the SDK's own rustls client allows (aws-smithy-http-client,
/// `restrict_ciphers`), in its order of preference.
const CIPHER_SUITES: [rustls::CipherSuite; 7] = [
    rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
    rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// The system's trusted roots as `rustls-native-certs` finds them, parsed into a root store; the DER
/// copies are dropped here. Certificates that cannot be parsed are skipped (and counted in the log),
/// as the SDK's client does.
pub fn native_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    if !found.errors.is_empty() {
        tracing::warn!(errors = ?found.errors, "loading the system's root CA certificates");
    }
    let mut roots = RootCertStore::empty();
    let (valid, invalid) = roots.add_parsable_certificates(found.certs);
    if valid == 0 {
        tracing::warn!("no root CA certificate found: HTTPS to CloudWatch will fail");
    }
    tracing::debug!(valid, invalid, "root CA certificates loaded");
    roots
}

/// A rustls client configuration over `roots` with ring, TLS 1.3 and 1.2, the SDK's cipher suites and
/// ALPN `http/1.1`.
pub fn tls_config(roots: RootCertStore) -> Result<rustls::ClientConfig, rustls::Error> {
    let base = rustls::crypto::ring::default_provider();
    let cipher_suites =
        CIPHER_SUITES.iter().filter_map(|s| base.cipher_suites.iter().find(|c| c.suite() == *s).copied()).collect();
    let provider = rustls::crypto::CryptoProvider { cipher_suites, ..base };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The TLS configuration of a [`Client`], shared by its connectors and built at the first
/// `https://` connection any of them makes: a client that only ever reaches plain `http://`
/// endpoints (a local CloudWatch, moto) never loads the system's roots (a few ms of CPU: reading the
/// CA bundle and directory, docs/benchmarks.md, "CPU per invoke, fourth pass").
type LazyTls = Arc<OnceLock<Option<Arc<rustls::ClientConfig>>>>;

/// The configuration of `tls`, built now if it was not yet (`None`: it cannot be built; warned once).
fn load(tls: &LazyTls) -> Option<Arc<rustls::ClientConfig>> {
    tls.get_or_init(|| match tls_config(native_roots()) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            tracing::warn!(error = %e, "no TLS configuration: only plain HTTP endpoints can be reached");
            None
        }
    })
    .clone()
}

/// The SDK's `HttpClient`: connectors by timeouts, over one TLS configuration built at the first
/// `https://` connection.
#[derive(Debug, Default)]
pub struct Client {
    tls: LazyTls,
    connectors: Mutex<Vec<(Timeouts, SharedHttpConnector)>>,
}

type Timeouts = (Option<Duration>, Option<Duration>);

impl Client {
    pub fn new() -> Self {
        Self::default()
    }

    /// A client over a TLS configuration of the caller's (tests: a root store of their own).
    pub fn with_tls(config: rustls::ClientConfig) -> Self {
        Self { tls: Arc::new(OnceLock::from(Some(Arc::new(config)))), connectors: Mutex::default() }
    }

    fn connector(&self, timeouts: Timeouts) -> SharedHttpConnector {
        let mut known = self.connectors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = known.iter().find(|(t, _)| *t == timeouts) {
            return c.clone();
        }
        let c = SharedHttpConnector::new(Connector::new(Arc::clone(&self.tls), timeouts));
        known.push((timeouts, c.clone()));
        c
    }
}

impl HttpClient for Client {
    fn http_connector(&self, settings: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        self.connector((settings.connect_timeout(), settings.read_timeout()))
    }
}

type Hyper = hyper_util::client::legacy::Client<Transport, SdkBody>;

/// Plain `http://` always; `https://` through rustls over the client's [`LazyTls`], the HTTPS
/// connector being made (and the configuration built, if no connector of the client did yet) at the
/// first `https://` connection.
#[derive(Debug, Clone)]
struct Transport {
    tcp: TcpConnector,
    tls: LazyTls,
    https: Arc<OnceLock<Option<hyper_rustls::HttpsConnector<TcpConnector>>>>,
}

impl Transport {
    fn new(tcp: TcpConnector, tls: LazyTls) -> Self {
        Self { tcp, tls, https: Arc::default() }
    }
}

impl tower_service::Service<http::Uri> for Transport {
    type Response = hyper_rustls::MaybeHttpsStream<hyper_util::rt::TokioIo<tokio::net::TcpStream>>;
    type Error = Box<dyn StdError + Send + Sync>;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        // Both ways connect through `tcp` (the HTTPS connector wraps a clone of it), always ready.
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        if uri.scheme() != Some(&http::uri::Scheme::HTTPS) {
            let connecting = self.tcp.call(uri);
            return Box::pin(async move { Ok(hyper_rustls::MaybeHttpsStream::Http(connecting.await?)) });
        }
        let https = self
            .https
            .get_or_init(|| {
                load(&self.tls).map(|config| hyper_rustls::HttpsConnector::from((self.tcp.clone(), config)))
            })
            .clone();
        match https {
            Some(mut c) => c.call(uri),
            None => {
                Box::pin(async { Err("https:// endpoint, but no TLS configuration (see the warning above)".into()) })
            }
        }
    }
}

/// One hyper client (its own connection pool) with one pair of timeouts.
#[derive(Debug)]
struct Connector {
    client: Hyper,
    read_timeout: Option<Duration>,
}

impl Connector {
    fn new(tls: LazyTls, (connect_timeout, read_timeout): Timeouts) -> Self {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(connect_timeout);
        let transport = Transport::new(tcp, tls);
        let mut builder = hyper_util::client::legacy::Builder::new(TokioExecutor::new());
        // Without a timer the pool's idle timeout is not enforced (hyper-util documents this).
        builder.pool_timer(TokioTimer::new());
        Self { client: builder.build(transport), read_timeout }
    }
}

/// The read timeout ran out before the answer's head arrived.
#[derive(Debug)]
struct ReadTimeout(Duration);

impl std::fmt::Display for ReadTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no answer within the read timeout of {:?}", self.0)
    }
}

impl StdError for ReadTimeout {}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(r) => r,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let answer = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let answer = match read_timeout {
                Some(t) => match tokio::time::timeout(t, answer).await {
                    Ok(a) => a,
                    Err(_) => return Err(ConnectorError::timeout(Box::new(ReadTimeout(t)))),
                },
                None => answer.await,
            };
            match answer {
                Ok(response) => HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                    .map_err(|e| ConnectorError::other(e.into(), None)),
                Err(e) => Err(classify(e)),
            }
        })
    }
}

fn find<'a, E: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// Sorts a hyper client error as aws-smithy-http-client's `downcast_error` does: a failure to
/// connect (refused, DNS, connect timeout: nothing was sent) and a closed or reset connection are
/// I/O, retryable; hyper's own timeouts are timeouts; a message cut short is transient.
fn classify(err: hyper_util::client::legacy::Error) -> ConnectorError {
    let connect = err.is_connect();
    let boxed: Box<dyn StdError + Send + Sync> = Box::new(err);
    if connect {
        return ConnectorError::io(boxed);
    }
    let kind = match find::<hyper::Error>(boxed.as_ref()) {
        Some(h) if h.is_timeout() => return ConnectorError::timeout(boxed),
        Some(h) if h.is_user() => return ConnectorError::user(boxed),
        Some(h) if h.is_closed() || h.is_canceled() || find::<std::io::Error>(h).is_some() => {
            return ConnectorError::io(boxed)
        }
        Some(h) if h.is_incomplete_message() => Some(ErrorKind::TransientError),
        Some(_) => None,
        None if find::<std::io::Error>(boxed.as_ref()).is_some() => return ConnectorError::io(boxed),
        None => None,
    };
    ConnectorError::other(boxed, kind)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_system_roots_are_parsed_and_the_config_keeps_the_sdk_suites() {
        // The machine's CA bundle (Debian's ca-certificates here, Amazon Linux's in Lambda).
        let roots = native_roots();
        assert!(roots.len() > 50, "{} roots", roots.len());
        let config = tls_config(roots).unwrap();
        let suites: Vec<rustls::CipherSuite> =
            config.crypto_provider().cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(suites, CIPHER_SUITES.to_vec(), "ring has every suite of the list");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn one_connector_per_pair_of_timeouts_over_one_tls_configuration() {
        let client = Client::with_tls(tls_config(RootCertStore::empty()).unwrap());
        client.connector((Some(Duration::from_secs(1)), None));
        client.connector((Some(Duration::from_secs(1)), None));
        assert_eq!(client.connectors.lock().unwrap().len(), 1);
        client.connector((Some(Duration::from_secs(2)), Some(Duration::from_secs(1))));
        assert_eq!(client.connectors.lock().unwrap().len(), 2);
    }

    /// A local HTTPS server with the test certificate of `extension/tests/fixtures` (self-signed,
    /// `localhost`, P-256), answering every request with 200 and `ok`, on a thread of its own.
    fn https_server() -> u16 {
        use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
        let cert = CertificateDer::from_pem_slice(CERT).unwrap();
        let key = PrivateKeyDer::from_pem_slice(include_bytes!("../../../extension/tests/fixtures/tls-localhost.key"))
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (tcp, _) = listener.accept().await.unwrap();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 4096];
                        let mut head = Vec::new();
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match tls.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        let _ = tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                        let _ = tls.shutdown().await;
                    });
                }
            });
        });
        port
    }

    const CERT: &[u8] = include_bytes!("../../../extension/tests/fixtures/tls-localhost.crt");

    async fn get(client: &Client, port: u16) -> Result<HttpResponse, ConnectorError> {
        let request = http::Request::get(format!("https://localhost:{port}/")).body(SdkBody::empty()).unwrap();
        client.connector((Some(Duration::from_secs(5)), None)).call(HttpRequest::try_from(request).unwrap()).await
    }

    /// Plain HTTP connects without the system's roots; the first HTTPS connection loads them.
    #[tokio::test]
    async fn the_roots_are_loaded_at_the_first_https_connection_only() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            }
        });
        let client = Client::new();
        let request = http::Request::get(format!("http://127.0.0.1:{port}/")).body(SdkBody::empty()).unwrap();
        let answer = client
            .connector((Some(Duration::from_secs(5)), None))
            .call(HttpRequest::try_from(request).unwrap())
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200);
        assert!(client.tls.get().is_none(), "plain HTTP loaded the roots");
        // The self-signed server is not trusted by the system's roots, but they were loaded for it.
        let _ = get(&client, https_server()).await.unwrap_err();
        assert!(matches!(client.tls.get(), Some(Some(_))), "the first HTTPS connection did not load the roots");
    }

    #[tokio::test]
    async fn https_to_a_trusted_server_and_refused_to_an_untrusted_one() {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let port = https_server();
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(CERT).unwrap()).unwrap();
        let trusting = Client::with_tls(tls_config(roots).unwrap());
        let answer = get(&trusting, port).await.unwrap();
        assert_eq!(answer.status().as_u16(), 200);
        let body = aws_smithy_types::byte_stream::ByteStream::new(answer.into_body()).collect().await.unwrap();
        assert_eq!(body.into_bytes().as_ref(), b"ok");

        // The system's roots do not include the self-signed test certificate: the handshake fails.
        let system = Client::new();
        let err = get(&system, port).await.unwrap_err();
        assert!(err.is_io(), "a failed handshake is a failure to connect: {err:?}");
        assert!(format!("{err:?}").contains("InvalidCertificate"), "{err:?}");
    }
}
