//! The end-to-end suite, one test binary: one compile and one link against the AWS SDK instead of one
//! per file. Each module is what used to be a test binary of its own; the helpers they share are the
//! `perfmon_tests` library (`tests/src/`). One module: `cargo test -p perfmon-tests --test suite MODULE::`.
//!
//! The tests run on the test harness's threads (one per core by default; `make test` runs six, since most
//! tests wait on processes and sockets rather than on the CPU), so none may rely on running alone: ports
//! come from `common::free_port` (or port 0), files from `common::TempDir`, and no test changes the process
//! environment (a child gets its variables through `Command::env`).
//!
//! The exception is a test whose assertions measure CPU time or the duration of CPU-bound work (the
//! resource model's CPU share, the invoke log's CPU time under known loads, `recommend` on a measured
//! memory sweep): its name ends in `_measured_alone`, and `make test` runs those after the rest, one at a
//! time (`-- --skip _measured_alone`, then `--test suite -- _measured_alone --test-threads 1`, both with
//! `--workspace` so that the features and so the binary are the same), because the processes of
//! another test would take the CPU they measure.

mod cardinality_budget;
mod cloudwatch_alarms;
mod cloudwatch_cbor;
mod cloudwatch_embedded;
mod cloudwatch_faults;
mod cloudwatch_network;
mod cloudwatch_rate_limit;
mod custom_abuse;
mod custom_bad_input;
mod custom_e2e;
mod custom_metrics;
mod custom_readme;
mod examples;
mod extension_e2e;
mod extension_modes;
mod extension_overhead;
mod fixtures_runtimes;
mod infra_helpers;
mod layer_e2e;
mod layer_template;
mod long_invoke;
mod otlp_e2e;
mod runtime_proxy;
mod sandbox_events;
mod sandbox_lifecycle;
mod sandbox_modes;
mod sandbox_refusals;
mod sandbox_resources;
mod security;
mod slo_e2e;
mod snapstart;
mod sparse_flush;
mod statsd_burst;
mod system_metrics;
mod tools_cli;
mod tools_readback;
mod tools_references;
mod tools_validate;
mod triggers_e2e;
mod wrapper_attach;
