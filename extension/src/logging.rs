//! The extension's own logs: `tracing` to stderr (stdout carries EMF), one line per event, at the
//! level of `PERFMON_LOG` (a `tracing` filter, default `warn`). Hot paths log sparingly (first
//! occurrence, powers of two, or `debug`), so a broken dependency never floods the log group.

use perfmon_protocol::contract::{defaults, env};
use tracing::Level;
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Installs the subscriber from `PERFMON_LOG`; an invalid filter is reported (variable and value)
/// and `warn` is used instead.
pub fn init_from_env() {
    init(std::env::var(env::LOG).ok().filter(|v| !v.trim().is_empty()).as_deref());
}

/// Installs the subscriber with `filter` (or the default).
pub fn init(filter: Option<&str>) {
    let (f, bad) = match filter.map(EnvFilter::try_new) {
        None => (EnvFilter::new(defaults::LOG), None),
        Some(Ok(f)) => (f, None),
        Some(Err(e)) => (EnvFilter::new(defaults::LOG), Some(e)),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .without_time()
        .with_filter(f.and(filter_fn(|meta| is_shown(meta.target(), *meta.level()))));
    let installed = tracing_subscriber::registry().with(layer).try_init();
    if let (Some(e), Ok(())) = (bad, installed) {
        tracing::warn!(
            variable = env::LOG,
            value = filter.unwrap_or_default(),
            error = %e,
            "{}={:?} ignored: not a tracing filter; using {}",
            env::LOG,
            filter.unwrap_or_default(),
            defaults::LOG
        );
    }
}

/// Whether an event or span may be written at all, whatever `PERFMON_LOG` enables: perfmon's own
/// (`perfmon`, `perfmon_protocol`) at any level, other crates' (the AWS SDK, hyper, rustls) at
/// `info` and above only. The SDK's `debug`/`trace` output holds credentials (at `trace` it prints
/// the resolved identity with the access key id; signing steps print canonical requests with
/// `x-amz-security-token`), and perfmon must never write a credential (`tests/tests/suite/security.rs`).
pub fn is_shown(target: &str, level: Level) -> bool {
    target.starts_with("perfmon") || level <= Level::INFO
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_crates_are_capped_at_info() {
        assert!(is_shown("perfmon::sinks", Level::TRACE));
        assert!(is_shown("perfmon_protocol::telemetry", Level::DEBUG));
        assert!(is_shown("aws_smithy_runtime::client::orchestrator", Level::INFO));
        assert!(is_shown("aws_config", Level::WARN));
        assert!(!is_shown("aws_smithy_runtime::client::orchestrator", Level::DEBUG));
        assert!(!is_shown("aws_sigv4::http_request::sign", Level::TRACE));
        assert!(!is_shown("hyper_util::client", Level::DEBUG));
    }
}
