//! perfmon: an AWS Lambda external extension that reports platform metrics (from the Telemetry
//! API) and custom metrics to CloudWatch, as PutMetricData or as EMF lines on stdout.
//!
//! What users rely on (names, environment variables, formats) is docs/reference.md; its strings and
//! rules are in [`perfmon_protocol::contract`]. The binary is a shell (`main.rs`); everything is here.
//!
//! # Layout
//! * [`config`]: settings from the environment, over an injected lookup; bad values warn and fall
//!   back to the documented defaults.
//! * [`logging`]: `tracing` to stderr at `PERFMON_LOG`, one line per event.
//! * [`ingest`]: the custom-metric listeners (HTTP `/v1/metrics` and `/v1/operations`, StatsD over
//!   UDP and a Unix socket, OTLP/HTTP), all on 127.0.0.1.
//! * [`listener`]: the one accept loop of the HTTP listeners (connection cap, back-off on accept
//!   errors, named tasks, panics logged and counted).
//! * [`lambda_api`]: our Extensions API client (register, `/next` retried forever, subscribe).
//! * [`telemetry`]: the Telemetry API listener; batches decoded record by record.
//! * [`platform`]: pure: telemetry events → platform metric samples, per invoke, report lag aware.
//! * [`aggregate`]: pure: series, log-bucketed histograms (≤ 0.8 % percentile error, exact sums),
//!   counters, gauges; memory caps with counted drops. [`state::Shared::record`] is the entry
//!   point for custom metrics.
//! * [`flush`]: pure: the flush policy as a function of state, event and clock.
//! * [`sinks`]: the flusher, PutMetricData ([`sinks::cloudwatch`]) and EMF ([`sinks::emf`]).
//! * [`state`]: state shared between the loop, the listeners and the flusher; health counters.
//! * [`lifecycle`]: Init, the INVOKE loop, SHUTDOWN.
//! * [`runtime_proxy`]: the Runtime API pass-through proxy used with `/opt/perfmon-wrapper`.
//! * [`triggers`]: pure: per-trigger metrics (docs/reference.md §14) from what the proxy read of each event and
//!   answer, joined with the platform report by request id.
//! * [`system`]: system metrics (docs/reference.md §10) from `/proc`, `/tmp` and the cgroup; [`invoke_log`]: one
//!   JSON line per invoke (docs/reference.md §9).
//!
//! The tools (`perfmon dashboard|alarms`; a subcommand turns the binary into a tool) are the
//! `perfmon-tools` crate (`tools/`), linked by the binary but not part of the sidecar.
//!
//! # How the `lambda-extension` crate is used
//! The do-nothing baseline (`fixtures/noop-extension`) is built on it, and its telemetry types were
//! the reference for ours; perfmon itself does not link it. Its loop returns (and the process
//! exits: `Extension.Crash`) on the first `/next` error, it subscribes with schema `2022-07-01` only,
//! and it decodes a batch with a closed enum, so one unknown record type (SnapStart restore events,
//! Managed Instances records, future types) makes it answer 400 for the whole batch. perfmon has its
//! own small client ([`lambda_api`]) and decodes record by record
//! ([`perfmon_protocol::telemetry::decode_batch`]).

pub mod aggregate;
pub mod config;
pub mod flush;
pub mod ingest;
pub mod invoke_log;
pub mod lambda_api;
pub mod lifecycle;
pub mod listener;
pub mod logging;
pub mod platform;
pub mod runtime_proxy;
pub mod sinks;
pub mod state;
pub mod system;
pub mod telemetry;
pub mod triggers;

use std::process::ExitCode;

pub use aggregate::{Kind, MetricSample, RecordError, Resolution};
pub use state::Shared;

pub use listener::spawn_logged;

/// Runs the extension (no arguments given): a current-thread runtime (small, fast to start) until
/// SHUTDOWN has been handled, then exits the process explicitly.
pub fn run() -> ExitCode {
    let (cfg, warnings) = config::Config::from_env();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(lifecycle::run(cfg, warnings));
    // Exit without dropping the runtime: nothing is left to do, and a blocking task (DNS lookup)
    // must not delay the exit past the SHUTDOWN deadline.
    std::process::exit(code)
}
