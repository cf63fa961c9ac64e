//! perfmon's benchmarks: perfmon against the do-nothing floor (`fixtures/noop-extension`) in the
//! local sandbox (`perfmon_sandbox`). `make bench` runs [`cli::run`] with `run`, `make bench-check`
//! with `check`. docs/benchmarks.md explains the method and shows the committed results.
//!
//! * [`cli`]: the command line (`run`, `check`, `table`, ...);
//! * [`runner`]: one fresh sandbox per measurement (per-invoke runs, ingest loads, flush cost);
//! * [`load`]: the load generators (keep-alive HTTP/1.1 over `TcpStream`, StatsD over UDP);
//! * [`procfs`]: CPU time and memory of a process from `/proc`;
//! * [`bench`]: the plan, the A/B alternation, figures and budgets;
//! * [`results`], [`chart`], [`check`]: the JSON document, the SVG, the regression check;
//! * [`stats`], [`machine`]: pure statistics; the machine description and the artefact sizes;
//! * [`soak`]: the soak run (`make soak`): RSS, fds and sample accounting over a long life;
//! * [`simulate`]: many sandboxes against one account's PutMetricData quota (`make simulate`);
//! * [`proxy_hop`]: what the Runtime API proxy adds to the runtime's two calls per invoke.

pub mod bench;
pub mod chart;
pub mod check;
pub mod cli;
pub mod load;
pub mod machine;
pub mod procfs;
pub mod proxy_hop;
pub mod results;
pub mod runner;
pub mod simulate;
pub mod soak;
pub mod stats;
