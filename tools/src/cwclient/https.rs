//! perfmon's HTTP(S) client for the AWS SDK (feature `tls-ring`): hyper 1 + hyper-rustls + rustls with
//! ring, implementing the SDK's `HttpClient` / `HttpConnector` traits (aws-smithy-runtime-api).
//!
//! Why not `aws-smithy-http-client`'s `build_https()`: it keeps every DER certificate of the system's
//! CA bundle in a process-wide static (`NATIVE_ROOTS`) for the life of the process, parses them again
//! into a new `RootCertStore` for every connector it builds (one per distinct connect/read timeout, plus
//! one more that `validate_base_client_config` builds and drops when a client is configured), and
//! measured about 550 kB of perfmon's anonymous memory (docs/benchmarks.md, "Memory, after"). Here:
//!
//! * the trust is the same: the roots are read from the files `rustls-native-certs` (which the SDK's
//!   client calls) reads (`SSL_CERT_FILE`, `SSL_CERT_DIR`, else the system's bundle and directory
//!   through `openssl-probe`), verified by rustls' WebPKI verifier, with the SDK's cipher-suite list;
//!   a test checks that the trust anchors are the same set;
//! * they are parsed into one `RootCertStore` once per [`Client`], one certificate at a time: no DER
//!   copy outlives its own parse (rustls-native-certs returns every certificate of the bundle and of
//!   the directory at once, 0.3 MB on Debian, the peak of perfmon's heap when it was measured);
//! * every connector of the client (one per connect/read timeout pair, as the SDK's) shares that one
//!   rustls configuration; a connector is built on first use, none ahead of it;
//! * no proxy (the SDK's client had none configured either) and HTTP/1.1 only (PutMetricData and
//!   GetMetricData are single request/response calls).
//!
//! Errors are sorted as the SDK's client sorts them (timeout, I/O, user, other), so that its retry
//! strategy and perfmon's outcome classifier (`extension/src/sinks/cloudwatch.rs`) see the same kinds:
//! a failure to connect stays a `hyper_util::client::legacy::Error` with `is_connect()` in the chain.

use std::error::Error as StdError;
use std::path::{Path, PathBuf};
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
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
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

/// Where the trusted roots are read from, as rustls-native-certs 0.8 (`load_native_certs`, the function
/// the SDK's client calls) chooses: `SSL_CERT_FILE` and `SSL_CERT_DIR` (`:`-separated) when either is
/// set, else the bundle file and the directories that `openssl_probe::probe()` finds (e.g. Debian's
/// `/etc/ssl/certs/ca-certificates.crt` and `/etc/ssl/certs`, Amazon Linux's `/etc/pki/tls/certs/ca-bundle.crt`).
fn root_paths() -> (Option<PathBuf>, Vec<PathBuf>) {
    let file = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let dirs: Vec<PathBuf> = std::env::var_os("SSL_CERT_DIR")
        .map(|d| std::env::split_paths(&d).filter(|p| !p.as_os_str().is_empty()).collect())
        .unwrap_or_default();
    if file.is_some() || !dirs.is_empty() {
        return (file, dirs);
    }
    let probed = openssl_probe::probe();
    (probed.cert_file, probed.cert_dir)
}

/// What [`native_roots`] read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RootsLoaded {
    /// Trust anchors kept (distinct).
    pub roots: usize,
    /// Certificates read again from another file (the bundle and the directory hold the same ones).
    pub duplicates: usize,
    /// Certificates rustls cannot parse (skipped), files or PEM sections that could not be read.
    pub invalid: usize,
    pub errors: usize,
}

/// The system's trusted roots, read from the files rustls-native-certs would read ([`root_paths`]) and
/// parsed into a root store one certificate at a time: no certificate's DER is kept beyond its own
/// parse, so the only copy held is the store's trust anchors (subject, public key, name constraints).
/// Like rustls-native-certs: a directory's entries are followed through symlinks, each file read once
/// (by device and inode), and the same certificate found twice is kept once; certificates rustls
/// cannot parse are skipped, as the SDK's client skips them.
pub fn native_roots() -> (RootCertStore, RootsLoaded) {
    let (file, dirs) = root_paths();
    roots_from(file.as_deref(), &dirs)
}

/// [`native_roots`] over the given bundle file and directories.
pub fn roots_from(file: Option<&Path>, dirs: &[PathBuf]) -> (RootCertStore, RootsLoaded) {
    use std::os::unix::fs::MetadataExt;
    let mut store = RootCertStore::empty();
    let mut loaded = RootsLoaded::default();
    let mut seen = std::collections::HashSet::new();
    let read = |path: &Path, store: &mut RootCertStore, loaded: &mut RootsLoaded| {
        let iter = match CertificateDer::pem_file_iter(path) {
            Ok(iter) => iter,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "reading root CA certificates");
                loaded.errors += 1;
                return;
            }
        };
        for cert in iter {
            let Ok(cert) = cert else {
                loaded.errors += 1;
                continue;
            };
            if store.add(cert).is_err() {
                loaded.invalid += 1;
                continue;
            }
            let n = store.roots.len();
            if store.roots[..n - 1].contains(&store.roots[n - 1]) {
                store.roots.pop();
                loaded.duplicates += 1;
            }
        }
    };
    if let Some(f) = file {
        if let Ok(m) = std::fs::metadata(f) {
            seen.insert((m.dev(), m.ino()));
        }
        read(f, &mut store, &mut loaded);
    }
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(path = %dir.display(), error = %e, "reading root CA certificates");
                loaded.errors += 1;
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // Through symlinks: `openssl rehash` makes the directory's hash names symlinks.
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() && seen.insert((m.dev(), m.ino())) => read(&path, &mut store, &mut loaded),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => loaded.errors += 1,
            }
        }
    }
    store.roots.shrink_to_fit();
    loaded.roots = store.roots.len();
    if loaded.roots == 0 {
        tracing::warn!("no root CA certificate found: HTTPS to CloudWatch will fail");
    }
    tracing::debug!(?loaded, "root CA certificates loaded");
    (store, loaded)
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

/// The SDK's `HttpClient`: connectors by timeouts, over one TLS configuration built at the first
/// connector.
#[derive(Debug, Default)]
pub struct Client {
    tls: OnceLock<Option<Arc<rustls::ClientConfig>>>,
    connectors: Mutex<Vec<(Timeouts, SharedHttpConnector)>>,
}

type Timeouts = (Option<Duration>, Option<Duration>);

impl Client {
    pub fn new() -> Self {
        Self::default()
    }

    /// A client over a TLS configuration of the caller's (tests: a root store of their own).
    pub fn with_tls(config: rustls::ClientConfig) -> Self {
        Self { tls: OnceLock::from(Some(Arc::new(config))), connectors: Mutex::default() }
    }

    fn tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.tls
            .get_or_init(|| match tls_config(native_roots().0) {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    tracing::warn!(error = %e, "no TLS configuration: only plain HTTP endpoints can be reached");
                    None
                }
            })
            .clone()
    }

    fn connector(&self, timeouts: Timeouts) -> SharedHttpConnector {
        let mut known = self.connectors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = known.iter().find(|(t, _)| *t == timeouts) {
            return c.clone();
        }
        let c = SharedHttpConnector::new(Connector::new(self.tls(), timeouts));
        known.push((timeouts, c.clone()));
        c
    }
}

impl HttpClient for Client {
    fn http_connector(&self, settings: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        self.connector((settings.connect_timeout(), settings.read_timeout()))
    }

    /// Called when an SDK client is configured with this one (`Client::from_conf`): the roots are read
    /// there, as the SDK's own client does, not at the first request (the extension builds its client
    /// on a blocking thread, and flushes on its event loop).
    fn validate_base_client_config(
        &self,
        _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder,
        _: &aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.tls();
        Ok(())
    }
}

type Hyper = hyper_util::client::legacy::Client<Transport, SdkBody>;

/// `https://` through rustls when there is a TLS configuration, plain `http://` always.
#[derive(Debug, Clone)]
enum Transport {
    Tls(hyper_rustls::HttpsConnector<TcpConnector>),
    Plain(TcpConnector),
}

impl tower_service::Service<http::Uri> for Transport {
    type Response = hyper_rustls::MaybeHttpsStream<hyper_util::rt::TokioIo<tokio::net::TcpStream>>;
    type Error = Box<dyn StdError + Send + Sync>;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        match self {
            Transport::Tls(c) => c.poll_ready(cx),
            Transport::Plain(c) => c.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        match self {
            Transport::Tls(c) => c.call(uri),
            Transport::Plain(c) => {
                let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
                let connecting = c.call(uri);
                Box::pin(async move {
                    if https {
                        return Err("https:// endpoint, but no TLS configuration (see the warning above)".into());
                    }
                    Ok(hyper_rustls::MaybeHttpsStream::Http(connecting.await?))
                })
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
    fn new(tls: Option<Arc<rustls::ClientConfig>>, (connect_timeout, read_timeout): Timeouts) -> Self {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(connect_timeout);
        let transport = match tls {
            Some(config) => Transport::Tls(hyper_rustls::HttpsConnector::from((tcp, config))),
            None => Transport::Plain(tcp),
        };
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
        let (roots, loaded) = native_roots();
        assert!(roots.len() > 50, "{} roots", roots.len());
        assert_eq!(loaded.roots, roots.len());
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

    /// The same roots as rustls-native-certs finds, each once: the set of trust anchors is equal.
    #[test]
    fn the_same_trust_anchors_as_rustls_native_certs() {
        let (ours, _) = native_roots();
        let mut theirs = RootCertStore::empty();
        theirs.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let key = |a: &rustls::pki_types::TrustAnchor<'_>| {
            (a.subject.to_vec(), a.subject_public_key_info.to_vec(), a.name_constraints.as_ref().map(|n| n.to_vec()))
        };
        let mut a: Vec<_> = ours.roots.iter().map(key).collect();
        let mut b: Vec<_> = theirs.roots.iter().map(key).collect();
        a.sort();
        b.sort();
        b.dedup();
        assert_eq!(a.len(), ours.roots.len(), "no duplicates kept");
        assert_eq!(a, b);
    }

    /// A bundle and a directory holding the same certificate (a hash-named symlink and a copy), a
    /// non-certificate file, a dangling symlink: one root, the copy counted as a duplicate.
    #[test]
    fn bundle_and_directory_read_once_each_certificate_kept_once() {
        let dir = std::env::temp_dir().join(format!("perfmon-roots-{}", std::process::id()));
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        let bundle = dir.join("bundle.pem");
        std::fs::write(&bundle, CERT).unwrap();
        std::os::unix::fs::symlink(&bundle, certs.join("0a1b2c3d.0")).unwrap();
        std::fs::write(certs.join("copy.pem"), CERT).unwrap();
        std::fs::write(certs.join("README"), "not a certificate").unwrap();
        std::os::unix::fs::symlink(dir.join("missing"), certs.join("dangling.0")).unwrap();
        let (store, loaded) = roots_from(Some(&bundle), std::slice::from_ref(&certs));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(store.len(), 1);
        assert_eq!(loaded, RootsLoaded { roots: 1, duplicates: 1, invalid: 0, errors: 0 });
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
