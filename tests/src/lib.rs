//! What the end-to-end suite (`tests/tests/suite/`, one test binary) shares:
//!
//! - [`common`]: where things are (binaries, the venv), the sample functions as runtimes, extension
//!   directories, moto behind the CBOR proxy ([`common::Moto`]), ports ([`common::free_port`]),
//!   temp dirs, waiting on a condition;
//! - [`harness`]: one builder for a sandbox with perfmon sending to a CloudWatch
//!   ([`harness::PerfmonSandbox`]) and the `perfmon` CLI run as a user runs it ([`harness::Tool`]);
//! - [`custom_support`]: the custom-metric tests' start-up, CloudWatch read-back and small HTTP/UDP
//!   clients for perfmon's listeners.
//!
//! Binaries are not built here: `make test` builds them first (`cargo build --workspace --bins` and
//! `scripts/build-crate-examples.sh`); a missing one fails the test with the command to run.

pub mod common;
pub mod custom_support;
pub mod harness;
