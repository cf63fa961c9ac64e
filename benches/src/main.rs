//! `perfmon-bench`: see `perfmon-bench --help` and docs/benchmarks.md.

fn main() -> std::process::ExitCode {
    perfmon_bench::cli::main(std::env::args().skip(1).collect())
}
