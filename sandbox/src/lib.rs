//! A local AWS Lambda environment for tests and the demo.
//!
//! Serves the Runtime, Extensions and Telemetry APIs on one loopback port, runs a function's runtime
//! and its external extensions as real processes, and embeds a CloudWatch endpoint.

pub mod cloudwatch;
