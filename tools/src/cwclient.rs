//! The one CloudWatch client builder of the `perfmon` binary, used by the extension's PutMetricData
//! sink and by `perfmon recommend|compare`: the loader's chains for region and credentials (with
//! `us-east-1` when no region is configured anywhere), the caller's retries and timeouts, and the TLS
//! backend chosen by this crate's features (the extension's `tls-ring` / `tls-aws-lc` forward here).

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};

#[cfg(all(feature = "tls-ring", not(feature = "tls-aws-lc")))]
pub mod https;

#[cfg(not(any(feature = "tls-ring", feature = "tls-aws-lc")))]
compile_error!("perfmon needs a TLS backend for CloudWatch: feature `tls-ring` (default) or `tls-aws-lc`");

/// The region when none is configured anywhere.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Retries and timeouts of one client; where to connect.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Attempts per call (the first one included), with exponential backoff between them.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub connect_timeout: Duration,
    pub attempt_timeout: Duration,
    pub operation_timeout: Duration,
    /// `--endpoint-url` (else the loader's: `AWS_ENDPOINT_URL_CLOUDWATCH`, `AWS_ENDPOINT_URL`, ...).
    pub endpoint_url: Option<String>,
    /// `--region` (else the loader's chain, else [`DEFAULT_REGION`]).
    pub region: Option<String>,
}

/// The SDK's default HTTPS client: hyper 1 + rustls with aws-lc-rs (feature `tls-aws-lc`, which wins
/// when both are on).
#[cfg(feature = "tls-aws-lc")]
fn with_http_client(loader: aws_config::ConfigLoader) -> aws_config::ConfigLoader {
    loader
}

/// hyper 1 + rustls with ring (feature `tls-ring`, the default; docs/design.md, TLS backend): perfmon's
/// own HTTPS client ([`https`]), one rustls configuration for the process, its roots parsed once.
#[cfg(all(feature = "tls-ring", not(feature = "tls-aws-lc")))]
fn with_http_client(loader: aws_config::ConfigLoader) -> aws_config::ConfigLoader {
    loader.http_client(https::Client::new())
}

/// A CloudWatch client configuration; the caller may add to it (e.g. a retry classifier) and builds
/// the client. The loader's own region chain (environment, profile, IMDS) is used, so that IMDS goes
/// through the loader's HTTP client: a region provider built outside it has none with `tls-ring` (no
/// SDK default client) and panics when `AWS_REGION` is unset.
pub async fn config(settings: &Settings) -> aws_sdk_cloudwatch::config::Builder {
    let mut loader = with_http_client(aws_config::defaults(BehaviorVersion::latest()))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(settings.max_attempts)
                .with_initial_backoff(settings.initial_backoff)
                .with_max_backoff(settings.max_backoff),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(settings.connect_timeout)
                .operation_attempt_timeout(settings.attempt_timeout)
                .operation_timeout(settings.operation_timeout)
                .build(),
        );
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let conf = loader.load().await;
    let mut builder = aws_sdk_cloudwatch::config::Builder::from(&conf);
    if conf.region().is_none() {
        builder = builder.region(Region::from_static(DEFAULT_REGION));
    }
    builder
}
