//! The extension's own logs: `tracing` to stderr (stdout carries EMF), one line per event, at the
//! level of `PERFMON_LOG` (a `tracing` filter, default `warn`). Hot paths log sparingly (first
//! occurrence, powers of two, or `debug`), so a broken dependency never floods the log group.

use perfmon_protocol::contract::{defaults, env};
use tracing_subscriber::EnvFilter;

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
    let installed = tracing_subscriber::fmt()
        .with_env_filter(f)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .without_time()
        .try_init();
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
