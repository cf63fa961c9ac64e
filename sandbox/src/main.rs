//! `perfmon-sandbox`: run a function and its extensions in the local Lambda sandbox.
fn main() -> std::process::ExitCode {
    perfmon_sandbox::cli::main(std::env::args().skip(1).collect())
}
