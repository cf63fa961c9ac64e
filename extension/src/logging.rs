//! The extension's own logs: `tracing` to stderr (stdout carries EMF), one line per event, at the
//! level of `PERFMON_LOG` (a `tracing` filter, default `warn`). Hot paths log sparingly (first
//! occurrence, powers of two, or `debug`), so a broken dependency never floods the log group.
//!
//! The filter is `tracing_subscriber`'s [`Targets`]: comma-separated `level`, `target` or
//! `target=level` directives, the subset of `EnvFilter`'s syntax without span and field matching
//! (<https://docs.rs/tracing-subscriber/0.3/tracing_subscriber/filter/targets/struct.Targets.html>).
//! `EnvFilter` needs the `env-filter` feature, which compiles `regex-automata` into the layer binary
//! for the span/field syntax a log level does not use (docs/benchmarks.md, "Layer size").

use perfmon_protocol::contract::{defaults, env};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Installs the subscriber from `PERFMON_LOG`; an invalid filter is reported (variable and value)
/// and `warn` is used instead.
pub fn init_from_env() {
    init(std::env::var(env::LOG).ok().filter(|v| !v.trim().is_empty()).as_deref());
}

/// Installs the subscriber with `filter` (or the default).
pub fn init(filter: Option<&str>) {
    let (f, bad) = match filter.map(parse_filter) {
        None => (default_filter(), None),
        Some(Ok(f)) => (f, None),
        Some(Err(e)) => (default_filter(), Some(e)),
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

/// [`defaults::LOG`] as a filter.
fn default_filter() -> Targets {
    // `warn` is a bare level, which `Targets` always parses; the fallback is the same level.
    defaults::LOG.parse().unwrap_or_else(|_| Targets::new().with_default(Level::WARN))
}

/// Parses a `PERFMON_LOG` value: `Targets` syntax, every target a Rust module path (letters,
/// digits, `_`, `::`). `Targets` itself reads any word that is not a level as a target, so a
/// mistyped `info[[[` would silently enable everything for a target that never matches; it is
/// refused here, as `EnvFilter` refused it.
pub fn parse_filter(value: &str) -> Result<Targets, String> {
    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let target = directive.split_once('=').map_or(directive, |(t, _)| t);
        let is_path =
            target.split("::").all(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if !is_path {
            return Err(format!("directive {directive:?}: the target is not a module path"));
        }
    }
    value.parse::<Targets>().map_err(|e| e.to_string())
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

    #[test]
    fn filters_parse_levels_and_targets_and_refuse_the_rest() {
        let f = parse_filter("warn,perfmon::sinks=debug").expect("valid");
        assert!(f.would_enable("perfmon::sinks::cloudwatch", &Level::DEBUG));
        assert!(!f.would_enable("perfmon::lifecycle", &Level::INFO));
        assert!(f.would_enable("perfmon::lifecycle", &Level::WARN));
        assert!(parse_filter("info").expect("valid").would_enable("perfmon", &Level::INFO));
        assert!(parse_filter("perfmon").expect("valid").would_enable("perfmon::x", &Level::TRACE));
        for bad in ["info[[[", "perfmon=loud", "perfmon[span]=debug", "a b=info", "=info"] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
        assert!(default_filter().would_enable("perfmon", &Level::WARN));
        assert!(!default_filter().would_enable("perfmon", &Level::INFO));
    }
}
