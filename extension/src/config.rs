//! Configuration from the function's environment variables (docs/reference.md §2).
//!
//! [`Config::from_lookup`] reads through an injected lookup so tests never touch the process
//! environment. A value that does not parse never stops the extension: it becomes a
//! [`ConfigWarning`] naming the variable and the value, and the documented default is used
//! (users remember extensions that crashed sandboxes over a typo).

use std::time::Duration;

use perfmon_protocol::contract::{self, defaults, env};
use perfmon_protocol::extensions::RUNTIME_API_ENV;

/// Where flushed metrics go (`PERFMON_SINK`). Defaults to [`defaults::SINK`] (`cloudwatch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// PutMetricData.
    CloudWatch,
    /// Embedded Metric Format lines on stdout.
    Emf,
    /// Both of the above, for every flush.
    Both,
}

impl Sink {
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cloudwatch" => Some(Self::CloudWatch),
            "emf" => Some(Self::Emf),
            "both" => Some(Self::Both),
            _ => None,
        }
    }
    /// Whether PutMetricData is used.
    pub fn cloudwatch(self) -> bool {
        matches!(self, Self::CloudWatch | Self::Both)
    }
    /// Whether EMF lines are written on every flush.
    pub fn emf(self) -> bool {
        matches!(self, Self::Emf | Self::Both)
    }
}

/// When to flush (`PERFMON_FLUSH`). Defaults to [`defaults::FLUSH`] (`adaptive`). See [`crate::flush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    Adaptive,
    Background,
    End,
    Shutdown,
}

impl FlushPolicy {
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "adaptive" => Some(Self::Adaptive),
            "background" => Some(Self::Background),
            "end" => Some(Self::End),
            "shutdown" => Some(Self::Shutdown),
            _ => None,
        }
    }
}

/// What `adaptive` does for a sparse invoke (`PERFMON_SPARSE_FLUSH`). Defaults to
/// [`defaults::SPARSE_FLUSH`] (`auto`). See [`crate::flush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SparseFlush {
    /// With the runtime talking through perfmon's Runtime API proxy: everything pending as EMF the
    /// moment Lambda took the runtime's `/response` (or `/error`), no wait for telemetry; else `End`.
    Auto,
    /// Wait for `platform.runtimeDone`, flush to the configured sink, then `/next`.
    End,
    /// The same wait, then everything pending as EMF lines on stdout (no network on the invoke's clock).
    Emf,
    /// Nothing at the end: the data goes out with the next invoke's background flush, or at SHUTDOWN.
    Defer,
}

impl SparseFlush {
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(Self::Auto),
            "end" => Some(Self::End),
            "emf" => Some(Self::Emf),
            "defer" => Some(Self::Defer),
            _ => None,
        }
    }
}

/// Function name used when neither `AWS_LAMBDA_FUNCTION_NAME` nor the register response has one.
pub const UNKNOWN_FUNCTION: &str = "unknown";

/// Longest `PERFMON_STATSD_SOCKET`: `sun_path` holds 108 bytes with the terminating NUL (unix(7)).
pub const MAX_SOCKET_PATH: usize = 107;
/// Largest `PERFMON_STATSD_RCVBUF` taken (1 GiB): the kernel caps it at `net.core.rmem_max` anyway.
pub const MAX_RCVBUF: usize = 1 << 30;

/// The extension's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `PERFMON_NAMESPACE`. Defaults to [`defaults::NAMESPACE`].
    pub namespace: String,
    /// `PERFMON_DIMENSIONS`, in the order given. Defaults to none.
    pub dimensions: Vec<(String, String)>,
    /// `AWS_LAMBDA_FUNCTION_NAME` (the `FunctionName` dimension), when set.
    pub function_name: Option<String>,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, MB, when set (reports carry it too).
    pub memory_mb: Option<u64>,
    pub sink: Sink,
    pub flush: FlushPolicy,
    /// `PERFMON_FLUSH_INTERVAL_S`. Defaults to [`defaults::FLUSH_INTERVAL_S`]; fractions accepted.
    pub flush_interval: Duration,
    /// `PERFMON_SPARSE_FLUSH`: what `adaptive` does for a sparse invoke.
    pub sparse_flush: SparseFlush,
    /// `PERFMON_HTTP_PORT`. Defaults to [`defaults::HTTP_PORT`]. `0` is accepted (the listener's
    /// owner decides what it means: a free port).
    pub http_port: u16,
    /// `PERFMON_STATSD_PORT`; `None` when set to `0` (off). Defaults to [`defaults::STATSD_PORT`].
    pub statsd_port: Option<u16>,
    /// `PERFMON_STATSD_SOCKET`: a Unix datagram socket for StatsD (an absolute path, at most
    /// [`MAX_SOCKET_PATH`] bytes). Defaults to none.
    pub statsd_socket: Option<std::path::PathBuf>,
    /// `PERFMON_STATSD_RCVBUF`: the UDP socket's SO_RCVBUF in bytes. Defaults to `None`: as large
    /// as `net.core.rmem_max` allows.
    pub statsd_rcvbuf: Option<usize>,
    /// `PERFMON_TELEMETRY_PORT`. Defaults to [`defaults::TELEMETRY_PORT`]. `0` picks a free port
    /// (perfmon subscribes with the port it got), which is what parallel tests use.
    pub telemetry_port: u16,
    /// `PERFMON_RUNTIME_PROXY_PORT`; `None` when set to `0` (off). Defaults to
    /// [`defaults::RUNTIME_PROXY_PORT`]. See [`crate::runtime_proxy`].
    pub runtime_proxy_port: Option<u16>,
    /// `PERFMON_PRICE_GB_S`. Defaults to the us-east-1 price of this binary's architecture.
    pub price_gb_s: f64,
    /// `PERFMON_LOG` (a `tracing` filter). Defaults to [`defaults::LOG`]; validated by [`crate::logging`].
    pub log: String,
    /// `AWS_LAMBDA_RUNTIME_API` (`host:port`), when set.
    pub runtime_api: Option<String>,
    /// `AWS_LAMBDA_INITIALIZATION_TYPE` as Lambda set it (docs/reference.md §8); unset or unknown is on-demand.
    pub initialization_type: Option<String>,
    /// `PERFMON_TENANT_DIMENSION` (docs/reference.md §8). Defaults to `false`.
    pub tenant_dimension: bool,
    /// `PERFMON_MAX_SERIES_PER_METRIC` (docs/reference.md §12). Defaults to [`defaults::MAX_SERIES_PER_METRIC`].
    pub max_series_per_metric: usize,
    /// `PERFMON_OTLP_PORT` (docs/reference.md §13); `None` when set to `0` (off). Defaults to [`defaults::OTLP_PORT`].
    pub otlp_port: Option<u16>,
    /// `PERFMON_OTLP_RESOURCE_ATTRIBUTES`: resource attribute keys added as dimensions to OTLP
    /// metrics. Defaults to none.
    pub otlp_resource_attributes: Vec<String>,
    /// `PERFMON_SYSTEM_METRICS` (docs/reference.md §10). Defaults to `true`.
    pub system_metrics: bool,
    /// `PERFMON_INVOKE_LOG` (docs/reference.md §9). Defaults to `false`.
    pub invoke_log: bool,
    /// `PERFMON_TRIGGER_METRICS` (docs/reference.md §14). Defaults to `true` (they need the Runtime API proxy).
    pub trigger_metrics: bool,
    /// `PERFMON_ROUTES` (docs/reference.md §14): route patterns for ALB and Function URL paths. Defaults to none.
    pub routes: perfmon_protocol::trigger::Routes,
}

/// A setting that could not be used; the default was used instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub variable: &'static str,
    pub value: String,
    pub reason: String,
    /// What was used instead.
    pub using: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={:?} ignored: {}; using {}", self.variable, self.value, self.reason, self.using)
    }
}

/// Price per GB-second for the architecture this binary was built for.
pub fn default_price_gb_s() -> f64 {
    if cfg!(target_arch = "aarch64") {
        defaults::PRICE_GB_S_ARM64
    } else {
        defaults::PRICE_GB_S_X86_64
    }
}

impl Config {
    /// Reads every setting through `lookup`; never fails.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> (Config, Vec<ConfigWarning>) {
        let mut warnings = Vec::new();
        let mut warn = |variable: &'static str, value: &str, reason: String, using: String| {
            warnings.push(ConfigWarning { variable, value: value.to_owned(), reason, using })
        };
        // Empty values count as unset, as with most Lambda settings.
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let namespace = match get(env::NAMESPACE) {
            None => defaults::NAMESPACE.to_owned(),
            Some(v) => match contract::validate_namespace(&v) {
                Ok(()) => v,
                Err(reason) => {
                    warn(env::NAMESPACE, &v, reason.to_string(), defaults::NAMESPACE.to_owned());
                    defaults::NAMESPACE.to_owned()
                }
            },
        };

        let mut dimensions = Vec::new();
        if let Some(v) = get(env::DIMENSIONS) {
            match contract::parse_dimensions(&v) {
                Ok(d) => dimensions = d,
                Err(reason) => warn(env::DIMENSIONS, &v, reason.to_string(), "no extra dimensions".to_owned()),
            }
        }

        let sink = match get(env::SINK) {
            None => Sink::CloudWatch,
            Some(v) => Sink::parse(&v).unwrap_or_else(|| {
                warn(env::SINK, &v, "expected cloudwatch, emf or both".to_owned(), defaults::SINK.to_owned());
                Sink::CloudWatch
            }),
        };
        let flush = match get(env::FLUSH) {
            None => FlushPolicy::Adaptive,
            Some(v) => FlushPolicy::parse(&v).unwrap_or_else(|| {
                warn(
                    env::FLUSH,
                    &v,
                    "expected adaptive, background, end or shutdown".to_owned(),
                    defaults::FLUSH.to_owned(),
                );
                FlushPolicy::Adaptive
            }),
        };
        let sparse_flush = match get(env::SPARSE_FLUSH) {
            None => SparseFlush::Auto,
            Some(v) => SparseFlush::parse(&v).unwrap_or_else(|| {
                warn(
                    env::SPARSE_FLUSH,
                    &v,
                    "expected auto, end, emf or defer".to_owned(),
                    defaults::SPARSE_FLUSH.to_owned(),
                );
                SparseFlush::Auto
            }),
        };
        let default_interval = Duration::from_secs(defaults::FLUSH_INTERVAL_S);
        let flush_interval = match get(env::FLUSH_INTERVAL_S) {
            None => default_interval,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => Duration::from_secs_f64(s),
                _ => {
                    warn(
                        env::FLUSH_INTERVAL_S,
                        &v,
                        "expected a number of seconds between 0 and 86400".to_owned(),
                        format!("{}", defaults::FLUSH_INTERVAL_S),
                    );
                    default_interval
                }
            },
        };

        let mut port = |variable: &'static str, default: u16| -> u16 {
            match get(variable) {
                None => default,
                Some(v) => match v.trim().parse::<u16>() {
                    Ok(0) => 0,
                    Ok(p) if p != 0 && p != 9001 => p,
                    _ => {
                        warn(variable, &v, "expected a port 0-65535 (not 9001)".to_owned(), default.to_string());
                        default
                    }
                },
            }
        };
        let http_port = port(env::HTTP_PORT, defaults::HTTP_PORT);
        let statsd_port = Some(port(env::STATSD_PORT, defaults::STATSD_PORT)).filter(|p| *p != 0);
        let telemetry_port = port(env::TELEMETRY_PORT, defaults::TELEMETRY_PORT);
        let runtime_proxy_port = Some(port(env::RUNTIME_PROXY_PORT, defaults::RUNTIME_PROXY_PORT)).filter(|p| *p != 0);
        let otlp_port = Some(port(env::OTLP_PORT, defaults::OTLP_PORT)).filter(|p| *p != 0);
        let statsd_socket = get(env::STATSD_SOCKET).and_then(|v| {
            let path = std::path::PathBuf::from(v.trim());
            if path.is_absolute() && v.trim().len() <= MAX_SOCKET_PATH {
                Some(path)
            } else {
                let reason = format!("expected an absolute path of at most {MAX_SOCKET_PATH} bytes");
                warn(env::STATSD_SOCKET, &v, reason, "no Unix socket".to_owned());
                None
            }
        });
        let statsd_rcvbuf = get(env::STATSD_RCVBUF).and_then(|v| match v.trim().parse::<usize>() {
            Ok(n) if (4_096..=MAX_RCVBUF).contains(&n) => Some(n),
            _ => {
                let reason = format!("expected a number of bytes from 4096 to {MAX_RCVBUF}");
                warn(env::STATSD_RCVBUF, &v, reason, "as large as net.core.rmem_max allows".to_owned());
                None
            }
        });
        let otlp_resource_attributes: Vec<String> = get(env::OTLP_RESOURCE_ATTRIBUTES)
            .map(|v| v.split(',').map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();

        let price_gb_s = match get(env::PRICE_GB_S) {
            None => default_price_gb_s(),
            Some(v) => match v.trim().parse::<f64>() {
                Ok(p) if p.is_finite() && p >= 0.0 => p,
                _ => {
                    warn(
                        env::PRICE_GB_S,
                        &v,
                        "expected a non-negative number of dollars per GB-second".to_owned(),
                        default_price_gb_s().to_string(),
                    );
                    default_price_gb_s()
                }
            },
        };

        let mut flag = |variable: &'static str, default: bool| match get(variable) {
            None => default,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => {
                    warn(variable, &v, "expected true or false".to_owned(), default.to_string());
                    default
                }
            },
        };
        let tenant_dimension = flag(env::TENANT_DIMENSION, false);
        let system_metrics = flag(env::SYSTEM_METRICS, true);
        let invoke_log = flag(env::INVOKE_LOG, false);
        let trigger_metrics = flag(env::TRIGGER_METRICS, true);
        let routes = match get(env::ROUTES) {
            None => perfmon_protocol::trigger::Routes::default(),
            Some(v) => {
                let (routes, refused) = perfmon_protocol::trigger::Routes::parse(&v);
                if !refused.is_empty() {
                    warn(
                        env::ROUTES,
                        &v,
                        format!("patterns must start with '/' (at most 256 characters): {}", refused.join(", ")),
                        "the other patterns".to_owned(),
                    );
                }
                routes
            }
        };

        let memory_mb = get(env::FUNCTION_MEMORY_SIZE).and_then(|v| v.trim().parse::<u64>().ok()).filter(|m| *m > 0);
        let max_series_per_metric = match get(env::MAX_SERIES_PER_METRIC) {
            None => defaults::MAX_SERIES_PER_METRIC,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=1_000_000).contains(&n) => n,
                _ => {
                    warn(
                        env::MAX_SERIES_PER_METRIC,
                        &v,
                        "expected a whole number from 1 to 1000000".to_owned(),
                        defaults::MAX_SERIES_PER_METRIC.to_string(),
                    );
                    defaults::MAX_SERIES_PER_METRIC
                }
            },
        };
        let cfg = Config {
            namespace,
            dimensions,
            function_name: get(env::FUNCTION_NAME),
            memory_mb,
            sink,
            flush,
            flush_interval,
            sparse_flush,
            http_port,
            statsd_port,
            statsd_socket,
            statsd_rcvbuf,
            telemetry_port,
            runtime_proxy_port,
            price_gb_s,
            log: get(env::LOG).unwrap_or_else(|| defaults::LOG.to_owned()),
            runtime_api: get(RUNTIME_API_ENV),
            initialization_type: get(env::INITIALIZATION_TYPE),
            tenant_dimension,
            max_series_per_metric,
            otlp_port,
            otlp_resource_attributes,
            system_metrics,
            invoke_log,
            trigger_metrics,
            routes,
        };
        (cfg, warnings)
    }

    /// From the process environment.
    pub fn from_env() -> (Config, Vec<ConfigWarning>) {
        Self::from_lookup(|k| std::env::var(k).ok())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> (Config, Vec<ConfigWarning>) {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::from_lookup(move |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let (c, w) = cfg(&[]);
        assert!(w.is_empty());
        assert_eq!(c.namespace, "Perfmon");
        assert_eq!(c.sink, Sink::CloudWatch);
        assert_eq!(c.flush, FlushPolicy::Adaptive);
        assert_eq!(c.flush_interval, Duration::from_secs(60));
        assert_eq!(c.sparse_flush, SparseFlush::Auto);
        assert_eq!(c.runtime_proxy_port, Some(9009));
        assert_eq!((c.http_port, c.statsd_port, c.telemetry_port), (4280, Some(8125), 4281));
        assert_eq!(c.price_gb_s, default_price_gb_s());
        assert_eq!(c.log, "warn");
        assert!(c.dimensions.is_empty() && c.function_name.is_none() && c.runtime_api.is_none());
    }

    #[test]
    fn statsd_socket_and_receive_buffer() {
        let (c, w) = cfg(&[]);
        assert_eq!((c.statsd_socket, c.statsd_rcvbuf, w.len()), (None, None, 0));
        let (c, w) =
            cfg(&[("PERFMON_STATSD_SOCKET", " /tmp/perfmon-statsd.sock "), ("PERFMON_STATSD_RCVBUF", "8388608")]);
        assert_eq!(c.statsd_socket.as_deref(), Some(std::path::Path::new("/tmp/perfmon-statsd.sock")));
        assert_eq!((c.statsd_rcvbuf, w.len()), (Some(8 << 20), 0));
        let long = format!("/tmp/{}", "s".repeat(MAX_SOCKET_PATH));
        for bad in ["relative.sock", long.as_str()] {
            let (c, w) = cfg(&[("PERFMON_STATSD_SOCKET", bad)]);
            assert_eq!((c.statsd_socket, w.len()), (None, 1), "{bad}");
            assert_eq!(w[0].variable, "PERFMON_STATSD_SOCKET");
        }
        for bad in ["100", "lots", "2147483648"] {
            let (c, w) = cfg(&[("PERFMON_STATSD_RCVBUF", bad)]);
            assert_eq!((c.statsd_rcvbuf, w.len()), (None, 1), "{bad}");
        }
    }

    #[test]
    fn sparse_flush_values() {
        for (v, want) in [("end", SparseFlush::End), ("EMF", SparseFlush::Emf), (" defer ", SparseFlush::Defer)] {
            let (c, w) = cfg(&[("PERFMON_SPARSE_FLUSH", v)]);
            assert!(w.is_empty(), "{w:?}");
            assert_eq!(c.sparse_flush, want);
        }
        let (c, w) = cfg(&[("PERFMON_SPARSE_FLUSH", "later")]);
        assert_eq!((c.sparse_flush, w.len()), (SparseFlush::Auto, 1));
        let (c, w) = cfg(&[("PERFMON_SPARSE_FLUSH", "auto"), ("PERFMON_RUNTIME_PROXY_PORT", "0")]);
        assert_eq!((c.sparse_flush, c.runtime_proxy_port, w.len()), (SparseFlush::Auto, None, 0));
    }

    #[test]
    fn good_values_are_used() {
        let (c, w) = cfg(&[
            ("PERFMON_NAMESPACE", "My/App"),
            ("PERFMON_DIMENSIONS", "Environment=prod, Service=chat"),
            ("PERFMON_SINK", "Both"),
            ("PERFMON_FLUSH", "end"),
            ("PERFMON_FLUSH_INTERVAL_S", "0.5"),
            ("PERFMON_HTTP_PORT", "5000"),
            ("PERFMON_STATSD_PORT", "0"),
            ("PERFMON_TELEMETRY_PORT", "0"),
            ("PERFMON_PRICE_GB_S", "0.00002"),
            ("AWS_LAMBDA_FUNCTION_NAME", "fn"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.namespace, "My/App");
        assert_eq!(c.dimensions, vec![("Environment".into(), "prod".into()), ("Service".into(), "chat".into())]);
        assert_eq!((c.sink, c.flush), (Sink::Both, FlushPolicy::End));
        assert_eq!(c.flush_interval, Duration::from_millis(500));
        assert_eq!((c.http_port, c.statsd_port, c.telemetry_port), (5000, None, 0));
        assert_eq!(c.price_gb_s, 0.00002);
        assert_eq!(c.function_name.as_deref(), Some("fn"));
        assert_eq!(c.memory_mb, Some(256));
        assert_eq!(c.runtime_api.as_deref(), Some("127.0.0.1:9001"));
    }

    #[test]
    fn bad_values_warn_with_variable_and_value_and_fall_back() {
        let table: &[(&str, &str)] = &[
            ("PERFMON_NAMESPACE", "AWS/Lambda"),
            ("PERFMON_NAMESPACE", ":x"),
            ("PERFMON_DIMENSIONS", "Environment"),
            ("PERFMON_DIMENSIONS", "FunctionName=x"),
            ("PERFMON_DIMENSIONS", "A=1,A=2"),
            ("PERFMON_SINK", "kinesis"),
            ("PERFMON_FLUSH", "sometimes"),
            ("PERFMON_FLUSH_INTERVAL_S", "-1"),
            ("PERFMON_FLUSH_INTERVAL_S", "NaN"),
            ("PERFMON_HTTP_PORT", "9001"),
            ("PERFMON_HTTP_PORT", "70000"),
            ("PERFMON_STATSD_PORT", "udp"),
            ("PERFMON_TELEMETRY_PORT", "9001"),
            ("PERFMON_PRICE_GB_S", "cheap"),
        ];
        let (default, _) = cfg(&[]);
        for (var, val) in table {
            let (c, w) = cfg(&[(var, val)]);
            assert_eq!(w.len(), 1, "{var}={val}: {w:?}");
            assert_eq!(w[0].variable, *var);
            assert_eq!(w[0].value, *val);
            let line = w[0].to_string();
            assert!(line.contains(var) && line.contains(val), "{line}");
            assert_eq!(c, default, "{var}={val} must fall back to the default");
        }
    }

    #[test]
    fn otlp_settings() {
        assert_eq!((cfg(&[]).0.otlp_port, cfg(&[]).0.otlp_resource_attributes.len()), (Some(4318), 0));
        assert_eq!(cfg(&[("PERFMON_OTLP_PORT", "0")]).0.otlp_port, None);
        let (c, w) =
            cfg(&[("PERFMON_OTLP_PORT", "x"), ("PERFMON_OTLP_RESOURCE_ATTRIBUTES", " service.name, ,cloud.region")]);
        assert_eq!(c.otlp_port, Some(4318));
        assert_eq!(w.len(), 1);
        assert_eq!(c.otlp_resource_attributes, ["service.name", "cloud.region"]);
    }

    #[test]
    fn max_series_per_metric_is_read_and_checked() {
        assert_eq!(cfg(&[]).0.max_series_per_metric, 1_000);
        assert_eq!(cfg(&[("PERFMON_MAX_SERIES_PER_METRIC", " 50 ")]).0.max_series_per_metric, 50);
        for bad in ["0", "-3", "lots", "1e3"] {
            let (c, w) = cfg(&[("PERFMON_MAX_SERIES_PER_METRIC", bad)]);
            assert_eq!(c.max_series_per_metric, 1_000, "{bad}");
            assert_eq!(w.len(), 1, "{bad}");
            assert_eq!(w[0].variable, "PERFMON_MAX_SERIES_PER_METRIC");
        }
    }
}
